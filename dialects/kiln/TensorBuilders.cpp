//===- TensorBuilders.cpp - linalg building blocks for kiln ops -----------===//
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln {
namespace {

using Kind = ReduceKind;

bool isFloat(Type t) { return isa<FloatType>(t); }

Value combine(OpBuilder &b, Location loc, ReduceKind kind, Value acc, Value x) {
  bool f = isFloat(acc.getType());
  switch (kind) {
  case Kind::Max:
    if (acc.getType().isInteger(1))
      return arith::OrIOp::create(b, loc, acc, x);
    return f ? arith::MaximumFOp::create(b, loc, acc, x).getResult()
             : arith::MaxSIOp::create(b, loc, acc, x).getResult();
  case Kind::Min:
    if (acc.getType().isInteger(1))
      return arith::AndIOp::create(b, loc, acc, x);
    return f ? arith::MinimumFOp::create(b, loc, acc, x).getResult()
             : arith::MinSIOp::create(b, loc, acc, x).getResult();
  case Kind::Prod:
    return f ? arith::MulFOp::create(b, loc, acc, x).getResult()
             : arith::MulIOp::create(b, loc, acc, x).getResult();
  default:
    return f ? arith::AddFOp::create(b, loc, acc, x).getResult()
             : arith::AddIOp::create(b, loc, acc, x).getResult();
  }
}

Value prologue(OpBuilder &b, Location loc, ReduceKind kind, Value x) {
  bool f = isFloat(x.getType());
  switch (kind) {
  case Kind::SumSquare:
  case Kind::L2:
    return f ? arith::MulFOp::create(b, loc, x, x).getResult()
             : arith::MulIOp::create(b, loc, x, x).getResult();
  case Kind::L1:
    return f ? math::AbsFOp::create(b, loc, x).getResult()
             : math::AbsIOp::create(b, loc, x).getResult();
  default:
    return x;
  }
}

} // namespace

Value reduceIdentity(OpBuilder &b, Location loc, ReduceKind kind, Type type) {
  switch (kind) {
  case Kind::Max:
    if (isFloat(type))
      return scalarConstant(b, loc, type, -INFINITY);
    if (type.isInteger(1))
      return arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
    return arith::ConstantOp::create(
        b, loc, b.getIntegerAttr(type, APInt::getSignedMinValue(
                                           type.getIntOrFloatBitWidth())));
  case Kind::Min:
    if (isFloat(type))
      return scalarConstant(b, loc, type, INFINITY);
    if (type.isInteger(1))
      return arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
    return arith::ConstantOp::create(
        b, loc, b.getIntegerAttr(type, APInt::getSignedMaxValue(
                                           type.getIntOrFloatBitWidth())));
  case Kind::Prod:
    return scalarConstant(b, loc, type, 1);
  case Kind::LogSumExp:
    // Sum of exp(x - max) needs the max first; handled by the caller.
  default:
    return scalarConstant(b, loc, type, 0);
  }
}

Value buildReduce(OpBuilder &b, Location loc, Value x, ArrayRef<bool> reduced,
                  ReduceKind kind, Value broadcastOperand) {
  MLIRContext *mctx = b.getContext();
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  SmallVector<int64_t> outShape;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t i = 0; i < rank; ++i) {
    if (reduced[i]) {
      iterators.push_back(utils::IteratorType::reduction);
      continue;
    }
    iterators.push_back(utils::IteratorType::parallel);
    outShape.push_back(type.getShape()[i]);
    outExprs.push_back(getAffineDimExpr(i, mctx));
  }
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, mctx);
  SmallVector<Value> outSizes;
  for (int64_t i = 0; i < rank; ++i)
    if (!reduced[i] && type.isDynamicDim(i))
      outSizes.push_back(tensor::DimOp::create(b, loc, x, i));
  Value init =
      linalg::FillOp::create(
          b, loc, reduceIdentity(b, loc, kind, element),
          tensor::EmptyOp::create(b, loc, outShape, element, outSizes)
              .getResult())
          .getResult(0);
  // Nothing to fold over an empty slice: the identity is the result.
  if (type.hasStaticShape() && type.getNumElements() == 0) {
    auto outType = RankedTensorType::get(outShape, element);
    Attribute fill =
        reduceIdentity(b, loc, kind, element).getDefiningOp<arith::ConstantOp>().getValue();
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(outType, fill));
  }
  SmallVector<Value> inputs = {x};
  SmallVector<AffineMap> maps = {AffineMap::getMultiDimIdentityMap(rank, mctx)};
  if (broadcastOperand) {
    inputs.push_back(broadcastOperand);
    maps.push_back(outMap);
  }
  maps.push_back(outMap);
  return linalg::GenericOp::create(
             b, loc, TypeRange{RankedTensorType::get(outShape, element)}, inputs,
             ValueRange{init}, maps, iterators,
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               Value v = args[0];
               if (broadcastOperand) // exp(x - max) for LogSumExp
                 v = math::ExpOp::create(
                     nb, nl, arith::SubFOp::create(nb, nl, v, args[1]));
               v = prologue(nb, nl, kind, v);
               linalg::YieldOp::create(
                   nb, nl, combine(nb, nl, kind, args.back(), v));
             })
      .getResult(0);
}

Value buildBroadcast(OpBuilder &b, Location loc, ValueRange inputs,
                     ArrayRef<int64_t> shape, Type resultElementType,
                     ScalarBodyFn body) {
  int64_t rank = shape.size();
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
  Value init = emptyFor(b, loc, shape, resultElementType, inputs);
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
  if (!type.hasStaticShape()) {
    // Symbolic dims: one collapse or expand whose groups each hold at most
    // one of them (the callers reshape only between such shapes).
    auto target = RankedTensorType::get(shape, type.getElementType());
    if (target.getRank() < type.getRank()) {
      auto groups = getReassociationIndicesForCollapse(type.getShape(), shape);
      assert(groups && "no collapse between the shapes");
      return tensor::CollapseShapeOp::create(b, loc, target, value, *groups);
    }
    auto groups = getReassociationIndicesForCollapse(shape, type.getShape());
    assert(groups && "no expand between the shapes");
    return tensor::ExpandShapeOp::create(b, loc, target, value, *groups);
  }
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

Value convertElements(OpBuilder &b, Location loc, Value x, Type to) {
  if (elementTypeOf(x) == to)
    return x;
  return buildBroadcast(b, loc, {x}, shapeOf(x), to,
                        [&](OpBuilder &nb, Location l, ValueRange a) {
                          return castScalar(nb, l, a[0], to);
                        });
}

Value castScalar(OpBuilder &b, Location loc, Value value, Type to,
                 bool fromUnsigned, bool toUnsigned) {
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
    return toUnsigned ? arith::FPToUIOp::create(b, loc, to, value).getResult()
                      : arith::FPToSIOp::create(b, loc, to, value).getResult();
  }
  if (toFloat)
    return from.isInteger(1) || fromUnsigned
               ? arith::UIToFPOp::create(b, loc, to, value).getResult()
               : arith::SIToFPOp::create(b, loc, to, value).getResult();
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  unsigned toWidth = to.getIntOrFloatBitWidth();
  if (to.isInteger(1))
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, value,
                                 scalarConstant(b, loc, from, 0));
  if (fromWidth < toWidth)
    return from.isInteger(1) || fromUnsigned
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
    function_ref<Value(OpBuilder &, Location, ValueRange)> body,
    ValueRange dynamicSizes) {
  int64_t rank = shape.size();
  auto type = RankedTensorType::get(shape, element);
  Value init = tensor::EmptyOp::create(b, loc, shape, element, dynamicSizes);
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

Value emptyFor(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
               Type element, ValueRange sources) {
  SmallVector<Value> sizes;
  int64_t rank = shape.size();
  for (int64_t i = 0; i < rank; ++i) {
    if (!ShapedType::isDynamic(shape[i]))
      continue;
    Value size;
    for (Value source : sources) {
      ArrayRef<int64_t> srcShape = shapeOf(source);
      int64_t j = i - (rank - static_cast<int64_t>(srcShape.size()));
      if (j >= 0 && ShapedType::isDynamic(srcShape[j])) {
        size = tensor::DimOp::create(b, loc, source, j);
        break;
      }
    }
    assert(size && "a dynamic dim without a source");
    sizes.push_back(size);
  }
  return tensor::EmptyOp::create(b, loc, shape, element, sizes);
}

Value indexConstant(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

ArrayRef<int64_t> shapeOf(Value tensor) {
  return cast<RankedTensorType>(tensor.getType()).getShape();
}

Type elementTypeOf(Value tensor) {
  return cast<RankedTensorType>(tensor.getType()).getElementType();
}

Value scalarSigmoid(OpBuilder &b, Location loc, Value x) {
  Value one = scalarConstant(b, loc, x.getType(), 1);
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one, arith::AddFOp::create(b, loc, one, e));
}

Value keepReducedDims(OpBuilder &b, Location loc, Value reducedValue,
                      ArrayRef<int64_t> shape, ArrayRef<bool> reduced) {
  SmallVector<int64_t> kept;
  for (auto [dim, isReduced] : llvm::zip(shape, reduced))
    kept.push_back(isReduced ? 1 : dim);
  return buildReshape(b, loc, reducedValue, kept);
}

std::pair<Value, Value> buildMoments(OpBuilder &b, Location loc, Value x,
                                     ArrayRef<bool> reduced, double epsilon) {
  auto type = cast<RankedTensorType>(x.getType());
  ArrayRef<int64_t> shape = type.getShape();
  Type element = type.getElementType();
  int64_t count = 1;
  for (auto [dim, isReduced] : llvm::zip(shape, reduced))
    if (isReduced)
      count *= dim;
  auto reduceKept = [&](Value v) {
    return keepReducedDims(b, loc, buildReduce(b, loc, v, reduced, ReduceKind::Sum),
                           shape, reduced);
  };
  Value sum = reduceKept(x);
  ArrayRef<int64_t> keptShape = cast<RankedTensorType>(sum.getType()).getShape();
  Value mean = buildBroadcast(
      b, loc, {sum}, keptShape, element, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::DivFOp::create(nb, l, a[0], scalarConstant(nb, l, element, count));
      });
  Value centered = buildBroadcast(
      b, loc, {x, mean}, shape, element, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value d = arith::SubFOp::create(nb, l, a[0], a[1]);
        return arith::MulFOp::create(nb, l, d, d);
      });
  Value sq = reduceKept(centered);
  Value invStd = buildBroadcast(
      b, loc, {sq}, keptShape, element, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value var = arith::DivFOp::create(nb, l, a[0], scalarConstant(nb, l, element, count));
        return math::RsqrtOp::create(
            nb, l, arith::AddFOp::create(nb, l, var, scalarConstant(nb, l, element, epsilon)));
      });
  return {mean, invStd};
}

} // namespace kiln
