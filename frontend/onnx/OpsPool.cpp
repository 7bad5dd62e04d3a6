//===- OpsPool.cpp - ONNX MaxPool, AveragePool and LpPool -----------------===//
//
// Each output element folds its window: a loop over the kernel positions
// inside one indexed kernel, skipping positions outside the input (padding
// never contributes to a maximum or a p-norm; an average divides by the
// positions inside the input, or inside the padded extent with
// count_include_pad). Output sizes follow the floor or ceil rule, a last
// window that would start in the end padding dropped.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

enum class PoolKind { Max, Average, Lp };


/// Where step `step` of a window walk (innermost dim fastest) reads X: the
/// positions clamped into X, whether it lies inside X, and whether it lies
/// inside the padded X.
struct WindowTap {
  SmallVector<Value> positions;
  Value inside, inPadded;
};
WindowTap windowTap(OpBuilder &lb, Location loc, ValueRange ivs, Value step,
                    ArrayRef<int64_t> kernel, const WindowAttrs &window,
                    ArrayRef<int64_t> xs) {
  int64_t spatial = kernel.size();
  WindowTap tap;
  tap.positions.resize(spatial);
  tap.inside = arith::ConstantIntOp::create(lb, loc, 1, 1);
  tap.inPadded = tap.inside;
  Value rest = step;
  for (int64_t i = spatial - 1; i >= 0; --i) {
    Value k = arith::RemUIOp::create(lb, loc, rest, indexConstant(lb, loc, kernel[i]));
    rest = arith::DivUIOp::create(lb, loc, rest, indexConstant(lb, loc, kernel[i]));
    // o * stride - pad_begin + k * dilation
    Value pos = arith::AddIOp::create(
        lb, loc,
        arith::SubIOp::create(
            lb, loc,
            arith::MulIOp::create(lb, loc, ivs[2 + i],
                                  indexConstant(lb, loc, window.strides[i])),
            indexConstant(lb, loc, window.pads[i])),
        arith::MulIOp::create(lb, loc, k, indexConstant(lb, loc, window.dilations[i])));
    auto between = [&](int64_t lo, int64_t hi) -> Value {
      return arith::AndIOp::create(
          lb, loc,
          arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::sge, pos,
                                indexConstant(lb, loc, lo)),
          arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::slt, pos,
                                indexConstant(lb, loc, hi)));
    };
    tap.inside = arith::AndIOp::create(lb, loc, tap.inside, between(0, xs[2 + i]));
    tap.inPadded = arith::AndIOp::create(
        lb, loc, tap.inPadded,
        between(-window.pads[i], xs[2 + i] + window.pads[spatial + i]));
    tap.positions[i] = arith::MinSIOp::create(
        lb, loc, arith::MaxSIOp::create(lb, loc, pos, indexConstant(lb, loc, 0)),
        indexConstant(lb, loc, xs[2 + i] - 1));
  }
  return tap;
}

LogicalResult importPool(NodeContext &ctx, PoolKind kind, const char *op) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  RankedTensorType type = ctx.inputType(0);
  Type element = type.getElementType();
  int64_t rank = type.getRank(), spatial = rank - 2;
  bool isFloat = isa<FloatType>(element);
  if (rank < 3 || (!isFloat && (kind != PoolKind::Max || element.isInteger(1))))
    return ctx.error() << op << " takes a float" << (kind == PoolKind::Max ? " or integer" : "")
                       << " tensor [N, C, spatial...], got " << x.getType();
  bool wantIndices =
      ctx.getNode().output_size() > 1 && !ctx.getNode().output(1).empty();
  if (wantIndices && kind != PoolKind::Max)
    return ctx.error() << "only MaxPool has an Indices output";
  int64_t storageOrder = ctx.intAttr("storage_order", 0);
  if (storageOrder != 0 && storageOrder != 1)
    return ctx.error() << "storage_order " << storageOrder << " is not 0 or 1";
  ArrayRef<int64_t> xs = type.getShape();
  auto kernelAttr = ctx.intsAttr("kernel_shape");
  if (!kernelAttr || static_cast<int64_t>(kernelAttr->size()) != spatial)
    return ctx.error() << "kernel_shape must list " << spatial << " sizes";
  std::vector<int64_t> kernel = *kernelAttr;
  if (llvm::any_of(kernel, [](int64_t k) { return k <= 0; }))
    return ctx.error() << "kernel sizes must be positive";
  std::optional<WindowAttrs> window = readWindowAttrs(ctx, spatial);
  if (!window)
    return failure();
  applyForwardAutoPad(*window, xs.drop_front(2), kernel);
  const std::vector<int64_t> &strides = window->strides, &dilations = window->dilations,
                             &pads = window->pads;
  bool ceilMode = ctx.intAttr("ceil_mode", 0) != 0;
  bool countPad = ctx.intAttr("count_include_pad", 0) != 0;
  double p = kind == PoolKind::Lp ? static_cast<double>(ctx.intAttr("p", 2)) : 0;
  SmallVector<int64_t> outShape = {xs[0], xs[1]};
  for (int64_t i = 0; i < spatial; ++i) {
    int64_t extent = dilations[i] * (kernel[i] - 1) + 1;
    int64_t span = xs[2 + i] + pads[i] + pads[spatial + i] - extent;
    if (span < 0)
      return ctx.error() << "spatial dim " << i << " is smaller than the window";
    int64_t out = (ceilMode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1;
    // A window may not start in the end padding.
    if (ceilMode && (out - 1) * strides[i] >= xs[2 + i] + pads[i])
      --out;
    outShape.push_back(out);
  }
  int64_t windowSize = 1;
  for (int64_t k : kernel)
    windowSize *= k;
  Type f = isFloat ? element : Type();
  Value out = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, element,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        // The maximum starts from the lowest value (0 when unsigned).
        Value init = kind == PoolKind::Max && !ctx.inputIsUnsigned(0)
                         ? reduceIdentity(b, loc, ReduceKind::Max, element)
                         : scalarConstant(b, loc, element, 0);
        Value zeroCount = scalarConstant(b, loc, b.getIndexType(), 0);
        auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0), indexConstant(b, loc, windowSize),
                                       indexConstant(b, loc, 1), ValueRange{init, zeroCount});
        {
          OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
          Value acc = loop.getRegionIterArgs()[0];
          Value count = loop.getRegionIterArgs()[1];
          // The window position of this step, innermost dim fastest.
          WindowTap tap = windowTap(lb, loc, ivs, loop.getInductionVar(), kernel,
                                    *window, xs);
          Value inside = tap.inside, inPadded = tap.inPadded;
          SmallVector<Value> at = {ivs[0], ivs[1]};
          at.append(tap.positions.begin(), tap.positions.end());
          Value v = tensor::ExtractOp::create(lb, loc, x, at);
          Value next;
          switch (kind) {
          case PoolKind::Max:
            next = isFloat ? arith::MaximumFOp::create(lb, loc, acc, v).getResult()
                   : ctx.inputIsUnsigned(0)
                       ? arith::MaxUIOp::create(lb, loc, acc, v).getResult()
                       : arith::MaxSIOp::create(lb, loc, acc, v).getResult();
            break;
          case PoolKind::Average:
            next = arith::AddFOp::create(lb, loc, acc, v);
            break;
          case PoolKind::Lp: {
            Value a = math::AbsFOp::create(lb, loc, v);
            Value term = p == 2 ? arith::MulFOp::create(lb, loc, a, a).getResult()
                         : p == 1 ? a
                                  : math::PowFOp::create(lb, loc, a,
                                                         scalarConstant(lb, loc, f, p))
                                        .getResult();
            next = arith::AddFOp::create(lb, loc, acc, term);
            break;
          }
          }
          next = arith::SelectOp::create(lb, loc, inside, next, acc);
          Value counted = countPad ? inPadded : inside;
          Value nextCount = arith::SelectOp::create(
              lb, loc, counted, arith::AddIOp::create(lb, loc, count, indexConstant(lb, loc, 1)),
              count);
          scf::YieldOp::create(lb, loc, ValueRange{next, nextCount});
        }
        Value acc = loop.getResult(0);
        if (kind == PoolKind::Average) {
          Value count = arith::IndexCastOp::create(b, loc, b.getI64Type(), loop.getResult(1));
          return arith::DivFOp::create(b, loc, acc,
                                       arith::SIToFPOp::create(b, loc, element, count));
        }
        if (kind == PoolKind::Lp)
          return p == 2 ? math::SqrtOp::create(b, loc, acc).getResult()
                 : p == 1 ? acc
                          : math::PowFOp::create(b, loc, acc,
                                                 scalarConstant(b, loc, f, 1.0 / p))
                                .getResult();
        return acc;
      });
  if (!wantIndices)
    return ctx.setOutputs(out);
  // Indices: the flat position in X of each window's first maximum (the
  // padding never wins), the spatial dims row-major (storage_order 0) or
  // column-major (1) after the batch and channel.
  Type i64 = ctx.b().getI64Type();
  Value indices = buildIndexed(
      ctx.b(), ctx.getLoc(), outShape, i64,
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value lowest = ctx.inputIsUnsigned(0)
                           ? scalarConstant(b, loc, element, 0)
                           : reduceIdentity(b, loc, ReduceKind::Max, element);
        Value none = arith::ConstantIntOp::create(b, loc, -1, 64);
        auto loop = scf::ForOp::create(
            b, loc, indexConstant(b, loc, 0), indexConstant(b, loc, windowSize),
            indexConstant(b, loc, 1), ValueRange{lowest, none});
        OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
        Value best = loop.getRegionIterArgs()[0];
        Value bestIndex = loop.getRegionIterArgs()[1];
        WindowTap tap = windowTap(lb, loc, ivs, loop.getInductionVar(), kernel,
                                  *window, xs);
        Value inside = tap.inside;
        SmallVector<Value> &positions = tap.positions;
        SmallVector<Value> at = {ivs[0], ivs[1]};
        at.append(positions.begin(), positions.end());
        Value v = tensor::ExtractOp::create(lb, loc, x, at);
        Value greater =
            isFloat ? arith::CmpFOp::create(lb, loc, arith::CmpFPredicate::OGT, v, best)
                          .getResult()
                    : arith::CmpIOp::create(lb, loc,
                                            ctx.inputIsUnsigned(0) ? arith::CmpIPredicate::ugt
                                                                   : arith::CmpIPredicate::sgt,
                                            v, best)
                          .getResult();
        Value first = arith::CmpIOp::create(lb, loc, arith::CmpIPredicate::slt, bestIndex,
                                            arith::ConstantIntOp::create(lb, loc, 0, 64));
        Value takes = arith::AndIOp::create(lb, loc, inside,
                                            arith::OrIOp::create(lb, loc, first, greater));
        // (n * C + c) * plane + the position within the plane.
        Value flat = arith::AddIOp::create(
            lb, loc, arith::MulIOp::create(lb, loc, ivs[0], indexConstant(lb, loc, xs[1])),
            ivs[1]);
        int64_t plane = 1;
        for (int64_t i = 0; i < spatial; ++i)
          plane *= xs[2 + i];
        flat = arith::MulIOp::create(lb, loc, flat, indexConstant(lb, loc, plane));
        Value within = indexConstant(lb, loc, 0);
        for (int64_t j = 0; j < spatial; ++j) {
          int64_t i = storageOrder == 0 ? j : spatial - 1 - j;
          within = arith::AddIOp::create(
              lb, loc, arith::MulIOp::create(lb, loc, within, indexConstant(lb, loc, xs[2 + i])),
              positions[i]);
        }
        flat = arith::IndexCastOp::create(lb, loc, i64,
                                          arith::AddIOp::create(lb, loc, flat, within));
        scf::YieldOp::create(
            lb, loc,
            ValueRange{arith::SelectOp::create(lb, loc, takes, v, best),
                       arith::SelectOp::create(lb, loc, takes, flat, bestIndex)});
        return loop.getResult(1);
      });
  return ctx.setOutputs({out, indices});
}

} // namespace

void registerPoolOps(OpRegistry &registry) {
  registry.on("MaxPool", 1, [](NodeContext &ctx) {
    return importPool(ctx, PoolKind::Max, "MaxPool");
  });
  registry.on("AveragePool", 1, [](NodeContext &ctx) {
    return importPool(ctx, PoolKind::Average, "AveragePool");
  });
  registry.on("LpPool", 2, [](NodeContext &ctx) {
    return importPool(ctx, PoolKind::Lp, "LpPool");
  });
}

} // namespace kiln::onnx
