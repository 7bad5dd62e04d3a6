//===- OpsReduce.cpp - ONNX Reduce* and ArgMax/ArgMin ---------------------===//
//
// Every Reduce* op is one linalg.generic reduction (a prologue on each
// element, a combiner, an identity as the initial value) and, for Mean, L2,
// LogSum and LogSumExp, an elementwise epilogue. Axes come from an attribute
// or, from the version where ONNX moved them (13 for ReduceSum, 18 for the
// others), an optional constant input with noop_with_empty_axes.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

using Kind = ReduceKind;

struct ReduceSpec {
  const char *name;
  Kind kind;
  int64_t axesInputSince; // the version where axes became an input
};

bool isFloat(Type t) { return isa<FloatType>(t); }




} // namespace


namespace {

LogicalResult importReduce(NodeContext &ctx, const ReduceSpec &spec,
                           std::vector<int64_t> axes, bool noopWithEmptyAxes) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  bool floatOnly = spec.kind == Kind::Mean || spec.kind == Kind::L2 ||
                   spec.kind == Kind::LogSum || spec.kind == Kind::LogSumExp;
  bool boolOk = spec.kind == Kind::Max || spec.kind == Kind::Min;
  if ((element.isInteger(1) && !boolOk) || (floatOnly && !isFloat(element)))
    return ctx.error() << spec.name << " takes "
                       << (floatOnly ? "float" : "float or integer")
                       << " inputs, got " << type;
  int64_t rank = type.getRank();
  if (axes.empty()) {
    if (noopWithEmptyAxes)
      return ctx.setOutputs(x);
    for (int64_t i = 0; i < rank; ++i)
      axes.push_back(i);
  }
  SmallVector<bool> reduced(rank, false);
  for (int64_t axis : axes) {
    auto normalized = normalizeAxis(ctx, axis, rank);
    if (!normalized)
      return failure();
    reduced[*normalized] = true;
  }
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  // The element count of the reduced dims; over symbolic dims (mean
  // pooling over tokens) it is computed at run time.
  int64_t count = 1;
  Value symbolicCount;
  SmallVector<int64_t> keptShape;
  for (int64_t i = 0; i < rank; ++i) {
    keptShape.push_back(reduced[i] ? 1 : type.getShape()[i]);
    if (!reduced[i])
      continue;
    if (!type.isDynamicDim(i)) {
      count *= type.getShape()[i];
      continue;
    }
    Value size = tensor::DimOp::create(b, loc, x, i);
    symbolicCount = symbolicCount
                        ? arith::MulIOp::create(b, loc, symbolicCount, size)
                              .getResult()
                        : size;
  }
  Value divisor;
  if (symbolicCount && isFloat(element)) {
    if (count != 1)
      symbolicCount = arith::MulIOp::create(
          b, loc, symbolicCount, arith::ConstantIndexOp::create(b, loc, count));
    divisor = arith::UIToFPOp::create(
        b, loc, element,
        arith::IndexCastOp::create(b, loc, b.getI64Type(), symbolicCount));
  }
  Value result;
  if (spec.kind == Kind::LogSumExp) {
    // log(sum(exp(x - m))) + m with m the max, so that large inputs do not
    // overflow; an all -inf (or empty) slice gives -inf.
    Value max = buildReduce(ctx, x, reduced, Kind::Max);
    Value sum = buildReduce(ctx, x, reduced, Kind::Sum, max);
    result = buildElementwise(
        ctx, {sum, max}, element,
        [&](OpBuilder &nb, Location nl, ValueRange args) -> Value {
          Value finite = arith::CmpFOp::create(
              nb, nl, arith::CmpFPredicate::ONE, args[1],
              scalarConstant(nb, nl, element, -INFINITY));
          Value m = arith::SelectOp::create(
              nb, nl, finite, args[1], scalarConstant(nb, nl, element, 0));
          return arith::AddFOp::create(nb, nl, math::LogOp::create(nb, nl, args[0]),
                                       m);
        });
  } else {
    result = buildReduce(ctx, x, reduced, spec.kind);
    if (spec.kind == Kind::Mean || spec.kind == Kind::L2 ||
        spec.kind == Kind::LogSum)
      result = buildElementwise(
          ctx, {result}, element,
          [&](OpBuilder &nb, Location nl, ValueRange args) -> Value {
            if (spec.kind == Kind::L2)
              return math::SqrtOp::create(nb, nl, args[0]);
            if (spec.kind == Kind::LogSum)
              return math::LogOp::create(nb, nl, args[0]);
            return arith::DivFOp::create(
                nb, nl, args[0],
                divisor ? divisor
                        : scalarConstant(nb, nl, element,
                                         static_cast<double>(count)));
          });
  }
  if (!result)
    return failure();
  bool keepDims = ctx.intAttr("keepdims", 1) != 0;
  return ctx.setOutputs(keepDims ? buildReshape(b, loc, result, keptShape)
                                 : result);
}

/// ArgMax/ArgMin along one axis: a reduction carrying (best value, index);
/// select_last_index picks the last of equal values instead of the first.
LogicalResult importArg(NodeContext &ctx, bool isMax) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  if (element.isInteger(1))
    return ctx.error() << (isMax ? "ArgMax" : "ArgMin")
                       << " takes float or integer inputs, got " << type;
  int64_t rank = type.getRank();
  auto axis = normalizeAxis(ctx, ctx.intAttr("axis", 0), std::max<int64_t>(rank, 1));
  if (!axis)
    return failure();
  bool keepDims = ctx.intAttr("keepdims", 1) != 0;
  bool last = ctx.getOpset() >= 12 && ctx.intAttr("select_last_index", 0) != 0;
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  MLIRContext *mctx = b.getContext();
  if (rank == 0)
    return ctx.error() << "ArgMax/ArgMin need an input of rank >= 1";
  if (type.getShape()[*axis] == 0)
    return ctx.error() << "cannot take the arg of an empty axis";
  SmallVector<int64_t> outShape, keptShape;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t i = 0; i < rank; ++i) {
    keptShape.push_back(i == *axis ? 1 : type.getShape()[i]);
    if (i == *axis) {
      iterators.push_back(utils::IteratorType::reduction);
      continue;
    }
    iterators.push_back(utils::IteratorType::parallel);
    outShape.push_back(type.getShape()[i]);
    outExprs.push_back(getAffineDimExpr(i, mctx));
  }
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, mctx);
  Type i64 = b.getI64Type();
  Value bestInit =
      linalg::FillOp::create(b, loc,
                             reduceIdentity(b, loc, isMax ? Kind::Max : Kind::Min, element),
                             tensor::EmptyOp::create(b, loc, outShape, element)
                                 .getResult())
          .getResult(0);
  Value indexInit =
      linalg::FillOp::create(b, loc, scalarConstant(b, loc, i64, -1),
                             tensor::EmptyOp::create(b, loc, outShape, i64)
                                 .getResult())
          .getResult(0);
  auto generic = linalg::GenericOp::create(
      b, loc,
      TypeRange{RankedTensorType::get(outShape, element),
                RankedTensorType::get(outShape, i64)},
      ValueRange{x}, ValueRange{bestInit, indexInit},
      {AffineMap::getMultiDimIdentityMap(rank, mctx), outMap, outMap},
      iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value v = args[0], best = args[1], bestIndex = args[2];
        Value index = arith::IndexCastOp::create(
            nb, nl, i64, linalg::IndexOp::create(nb, nl, *axis));
        Value better, equal;
        if (isFloat(element)) {
          better = arith::CmpFOp::create(
              nb, nl, isMax ? arith::CmpFPredicate::OGT : arith::CmpFPredicate::OLT,
              v, best);
          equal = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, v, best);
        } else {
          better = arith::CmpIOp::create(
              nb, nl, isMax ? arith::CmpIPredicate::sgt : arith::CmpIPredicate::slt,
              v, best);
          equal = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, v, best);
        }
        // The first element always wins (the identity may equal it).
        Value first = arith::CmpIOp::create(
            nb, nl, arith::CmpIPredicate::slt, bestIndex,
            scalarConstant(nb, nl, i64, 0));
        Value take = arith::OrIOp::create(nb, nl, better, first);
        if (last)
          take = arith::OrIOp::create(nb, nl, take, equal);
        linalg::YieldOp::create(
            nb, nl,
            ValueRange{arith::SelectOp::create(nb, nl, take, v, best),
                       arith::SelectOp::create(nb, nl, take, index, bestIndex)});
      });
  Value result = generic.getResult(1);
  return ctx.setOutputs(keepDims ? buildReshape(b, loc, result, keptShape)
                                 : result);
}

} // namespace

void registerReduceOps(OpRegistry &registry) {
  static const ReduceSpec specs[] = {
      {"ReduceSum", Kind::Sum, 13},       {"ReduceMean", Kind::Mean, 18},
      {"ReduceMax", Kind::Max, 18},       {"ReduceMin", Kind::Min, 18},
      {"ReduceProd", Kind::Prod, 18},     {"ReduceSumSquare", Kind::SumSquare, 18},
      {"ReduceL1", Kind::L1, 18},         {"ReduceL2", Kind::L2, 18},
      {"ReduceLogSum", Kind::LogSum, 18}, {"ReduceLogSumExp", Kind::LogSumExp, 18},
  };
  for (const ReduceSpec &spec : specs) {
    registry.on(spec.name, 1, [&spec](NodeContext &ctx) -> LogicalResult {
      auto axes = ctx.intsAttr("axes");
      return importReduce(ctx, spec, axes ? *axes : std::vector<int64_t>{},
                          /*noopWithEmptyAxes=*/false);
    });
    registry.on(spec.name, spec.axesInputSince,
                [&spec](NodeContext &ctx) -> LogicalResult {
                  std::vector<int64_t> axes;
                  if (ctx.hasInput(1)) {
                    auto constant = ctx.constantInts(1);
                    if (!constant)
                      return failure();
                    axes = *constant;
                  }
                  return importReduce(
                      ctx, spec, axes,
                      ctx.intAttr("noop_with_empty_axes", 0) != 0);
                });
  }
  registry.on("ArgMax", 1, [](NodeContext &ctx) { return importArg(ctx, true); });
  registry.on("ArgMin", 1, [](NodeContext &ctx) { return importArg(ctx, false); });
}

} // namespace kiln::onnx
