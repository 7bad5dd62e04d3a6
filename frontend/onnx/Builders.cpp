//===- Builders.cpp - IR building helpers shared by the op handlers -------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {

Value buildElementwise(NodeContext &ctx, ValueRange inputs,
                       Type resultElementType, ScalarBodyFn body) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // Multidirectional broadcasting: align shapes on the right; a dim of 1
  // stretches to the other's size.
  int64_t rank = 0;
  for (Value input : inputs)
    rank = std::max(rank, cast<RankedTensorType>(input.getType()).getRank());
  SmallVector<int64_t> shape(rank, 1);
  for (auto [index, input] : llvm::enumerate(inputs)) {
    ArrayRef<int64_t> inShape =
        cast<RankedTensorType>(input.getType()).getShape();
    int64_t offset = rank - static_cast<int64_t>(inShape.size());
    for (auto [i, dim] : llvm::enumerate(inShape)) {
      int64_t &out = shape[offset + i];
      if (dim == out || dim == 1)
        continue;
      if (out != 1) {
        ctx.error() << "input #" << index << " of type " << input.getType()
                    << " does not broadcast with the other inputs "
                    << "(dimension " << offset + i << ": " << dim << " vs "
                    << out << ")";
        return {};
      }
      out = dim;
    }
  }

  MLIRContext *mctx = b.getContext();
  SmallVector<AffineMap> maps;
  for (Value input : inputs) {
    ArrayRef<int64_t> inShape =
        cast<RankedTensorType>(input.getType()).getShape();
    int64_t offset = rank - static_cast<int64_t>(inShape.size());
    SmallVector<AffineExpr> exprs;
    for (auto [i, dim] : llvm::enumerate(inShape))
      exprs.push_back(dim == 1 && shape[offset + i] != 1
                          ? getAffineConstantExpr(0, mctx)
                          : getAffineDimExpr(offset + i, mctx));
    maps.push_back(AffineMap::get(rank, 0, exprs, mctx));
  }
  maps.push_back(AffineMap::getMultiDimIdentityMap(rank, mctx));
  auto resultType = RankedTensorType::get(shape, resultElementType);
  Value init = tensor::EmptyOp::create(b, loc, shape, resultElementType);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, inputs, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        Value result = body(nested, nestedLoc, args.drop_back());
        linalg::YieldOp::create(nested, nestedLoc, result);
      });
  return generic.getResult(0);
}

Value buildReshape(OpBuilder &b, Location loc, Value value,
                   ArrayRef<int64_t> shape) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getShape() == shape)
    return value;
  // Through a rank-1 tensor: collapse all, then expand all. Canonicalization
  // folds the pair into a single reshape where one exists.
  int64_t count = type.getNumElements();
  Value flat = value;
  if (type.getRank() != 1) {
    SmallVector<ReassociationIndices> groups;
    if (type.getRank() > 0) {
      ReassociationIndices all;
      for (int64_t i = 0; i < type.getRank(); ++i)
        all.push_back(i);
      groups.push_back(all);
      flat = tensor::CollapseShapeOp::create(b, loc, value, groups);
    } else {
      flat = tensor::ExpandShapeOp::create(
          b, loc, RankedTensorType::get({1}, type.getElementType()), value,
          groups);
    }
  }
  if (shape.size() == 1)
    return flat;
  auto target = RankedTensorType::get(shape, type.getElementType());
  SmallVector<ReassociationIndices> groups;
  if (!shape.empty()) {
    ReassociationIndices all;
    for (int64_t i = 0, e = shape.size(); i < e; ++i)
      all.push_back(i);
    groups.push_back(all);
    return tensor::ExpandShapeOp::create(b, loc, target, flat, groups);
  }
  (void)count;
  return tensor::CollapseShapeOp::create(b, loc, target, flat, groups);
}

Value castScalar(OpBuilder &b, Location loc, Value value, Type to) {
  Type from = value.getType();
  if (from == to)
    return value;
  auto fromFloat = dyn_cast<FloatType>(from);
  auto toFloat = dyn_cast<FloatType>(to);
  if (fromFloat && toFloat)
    return fromFloat.getWidth() < toFloat.getWidth()
               ? arith::ExtFOp::create(b, loc, to, value).getResult()
               : arith::TruncFOp::create(b, loc, to, value).getResult();
  if (fromFloat) {
    if (to.isInteger(1)) // nonzero -> true
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, value,
                                   scalarConstant(b, loc, from, 0.0));
    return arith::FPToSIOp::create(b, loc, to, value);
  }
  if (toFloat)
    return from.isInteger(1)
               ? arith::UIToFPOp::create(b, loc, to, value).getResult()
               : arith::SIToFPOp::create(b, loc, to, value).getResult();
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  unsigned toWidth = to.getIntOrFloatBitWidth();
  if (to.isInteger(1))
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, value,
                                 scalarConstant(b, loc, from, 0));
  if (fromWidth < toWidth)
    return from.isInteger(1)
               ? arith::ExtUIOp::create(b, loc, to, value).getResult()
               : arith::ExtSIOp::create(b, loc, to, value).getResult();
  return arith::TruncIOp::create(b, loc, to, value);
}

Value scalarConstant(OpBuilder &b, Location loc, Type type, double value) {
  if (auto floatType = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(floatType, value));
  return arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(type, static_cast<int64_t>(value)));
}

Value buildIndexed(
    OpBuilder &b, Location loc, ArrayRef<int64_t> shape, Type element,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  int64_t rank = shape.size();
  auto type = RankedTensorType::get(shape, element);
  Value init = tensor::EmptyOp::create(b, loc, shape, element);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, TypeRange{type}, ValueRange{}, ValueRange{init},
             {AffineMap::getMultiDimIdentityMap(rank, b.getContext())},
             iterators,
             [&](OpBuilder &nb, Location nl, ValueRange) {
               SmallVector<Value> ivs;
               for (int64_t d = 0; d < rank; ++d)
                 ivs.push_back(linalg::IndexOp::create(nb, nl, d));
               linalg::YieldOp::create(nb, nl, body(nb, nl, ivs));
             })
      .getResult(0);
}

Value buildEmptyConstant(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                         Type element) {
  auto type = RankedTensorType::get(shape, element);
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::getFromRawBuffer(type, ArrayRef<char>()));
}

std::optional<int64_t> normalizeAxis(NodeContext &ctx, int64_t axis,
                                     int64_t rank) {
  if (axis < -rank || axis >= rank) {
    ctx.error() << "axis " << axis << " is out of range for a rank-" << rank
                << " input; expected [" << -rank << ", " << rank - 1 << "]";
    return std::nullopt;
  }
  return axis < 0 ? axis + rank : axis;
}

} // namespace kiln::onnx
