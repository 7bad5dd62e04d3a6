//===- ConstantFold.cpp - evaluate small all-constant node results --------===//
//
// Exporters compute shapes in the graph (Shape -> Cast -> Mul -> Concat ->
// Expand, Where on constant masks, ...). Shapes are static in Kiln, so such
// values are constants; the importer evaluates them as soon as a node
// produces them, which lets the next node read them with constantInts().
//
// The evaluator runs the linalg.generic a handler built, element by element,
// through each body op's own folder (arith folds with constant operands),
// for small all-parallel generics whose inputs, and the tensors their body
// reads with tensor.extract, are constants. Reshapes and fills of constants
// fold too. Anything it cannot evaluate is left as it is.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

constexpr int64_t kFoldLimit = 4096;

DenseElementsAttr constantOf(Value v) {
  DenseElementsAttr attr;
  if (v && matchPattern(v, m_Constant(&attr)))
    return attr;
  return {};
}

/// The element of `attr` at `indices` (row-major).
Attribute elementAt(DenseElementsAttr attr, ArrayRef<int64_t> indices) {
  if (attr.isSplat())
    return attr.getSplatValue<Attribute>();
  ArrayRef<int64_t> shape = attr.getType().getShape();
  int64_t linear = 0;
  for (auto [i, extent] : llvm::zip(indices, shape))
    linear = linear * extent + i;
  return attr.getValues<Attribute>()[linear];
}

/// Evaluates `generic` if it is small, all-parallel and all-constant.
DenseElementsAttr evaluate(linalg::GenericOp generic) {
  if (generic.getNumResults() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops())
    return {};
  auto type = cast<RankedTensorType>(generic.getResult(0).getType());
  if (!type.hasStaticShape() || type.getNumElements() > kFoldLimit ||
      type.getNumElements() == 0)
    return {};
  SmallVector<DenseElementsAttr> inputs;
  for (Value input : generic.getDpsInputs()) {
    DenseElementsAttr c = constantOf(input);
    if (!c)
      return {};
    inputs.push_back(c);
  }
  Block *body = generic.getBody();
  if (!body->getArguments().back().use_empty())
    return {}; // reads the (undefined) output
  // Values from above must be constants (scalars, or tensors read with
  // tensor.extract).
  llvm::DenseMap<Value, Attribute> outer;
  bool ok = true;
  generic.getRegion().walk([&](Operation *op) {
    for (Value operand : op->getOperands()) {
      if (generic.getRegion().isAncestor(operand.getParentRegion()))
        continue;
      Attribute attr;
      if (!matchPattern(operand, m_Constant(&attr)))
        ok = false;
      else
        outer[operand] = attr;
    }
  });
  if (!ok)
    return {};

  SmallVector<int64_t> shape(type.getShape());
  int64_t rank = shape.size();
  SmallVector<int64_t> ivs(rank, 0);
  SmallVector<AffineMap> maps = generic.getIndexingMapsArray();
  SmallVector<Attribute> results;
  MLIRContext *ctx = generic.getContext();
  Builder b(ctx);
  for (int64_t n = 0; n < type.getNumElements(); ++n) {
    llvm::DenseMap<Value, Attribute> values(outer);
    for (auto [i, input] : llvm::enumerate(inputs)) {
      SmallVector<int64_t> at;
      for (AffineExpr e : maps[i].getResults()) {
        if (auto d = dyn_cast<AffineDimExpr>(e))
          at.push_back(ivs[d.getPosition()]);
        else if (auto c = dyn_cast<AffineConstantExpr>(e))
          at.push_back(c.getValue());
        else
          return {};
      }
      values[body->getArgument(i)] = elementAt(input, at);
    }
    for (Operation &op : body->without_terminator()) {
      if (auto index = dyn_cast<linalg::IndexOp>(op)) {
        values[index.getResult()] = b.getIndexAttr(ivs[index.getDim()]);
        continue;
      }
      if (auto extract = dyn_cast<tensor::ExtractOp>(op)) {
        auto tensor = dyn_cast_or_null<DenseElementsAttr>(values.lookup(extract.getTensor()));
        if (!tensor)
          return {};
        SmallVector<int64_t> at;
        for (Value i : extract.getIndices()) {
          auto attr = dyn_cast_or_null<IntegerAttr>(values.lookup(i));
          if (!attr)
            return {};
          at.push_back(attr.getInt());
        }
        ArrayRef<int64_t> tshape = tensor.getType().getShape();
        for (auto [i, extent] : llvm::zip(at, tshape))
          if (i < 0 || i >= extent)
            return {};
        values[extract.getResult()] = elementAt(tensor, at);
        continue;
      }
      if (op.getNumRegions() != 0 || op.getNumResults() != 1)
        return {};
      SmallVector<Attribute> operands;
      for (Value operand : op.getOperands())
        operands.push_back(values.lookup(operand));
      SmallVector<OpFoldResult> folded;
      if (failed(op.fold(operands, folded)) || folded.size() != 1)
        return {};
      Attribute result = dyn_cast<Attribute>(folded[0]);
      if (!result) {
        // Folded to one of its operands.
        result = values.lookup(cast<Value>(folded[0]));
        if (!result)
          return {};
      }
      values[op.getResult(0)] = result;
    }
    Attribute yielded = values.lookup(body->getTerminator()->getOperand(0));
    if (!yielded || !isa<IntegerAttr, FloatAttr>(yielded))
      return {};
    results.push_back(yielded);
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++ivs[d] < shape[d])
        break;
      ivs[d] = 0;
    }
  }
  return DenseElementsAttr::get(type, results);
}

} // namespace

Value foldToConstant(OpBuilder &b, Value value) {
  Operation *def = value.getDefiningOp();
  if (!def || constantOf(value))
    return value;
  DenseElementsAttr folded;
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || !type.hasStaticShape())
    return value;
  if (auto generic = dyn_cast<linalg::GenericOp>(def)) {
    folded = evaluate(generic);
  } else if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(def)) {
    // buildReshape goes through rank 1: fold the inner reshape first.
    if (DenseElementsAttr source =
            constantOf(foldToConstant(b, def->getOperand(0))))
      folded = source.reshape(type);
  } else if (auto fill = dyn_cast<linalg::FillOp>(def)) {
    Attribute scalar;
    if (matchPattern(fill.getInputs()[0], m_Constant(&scalar)) &&
        type.getNumElements() <= kFoldLimit)
      folded = DenseElementsAttr::get(type, scalar);
  }
  if (!folded)
    return value;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointAfter(def);
  return arith::ConstantOp::create(b, def->getLoc(), folded);
}

} // namespace kiln::onnx
