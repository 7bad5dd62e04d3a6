//===- OpsQuantInteger.cpp - integer GEMMs and convolutions ---------------===//
//
// The QOperator form of a statically quantized model: MatMulInteger and
// ConvInteger (i32 results), QLinearMatMul and QLinearConv (requantized to
// 8 bits). The operands minus their zero points are widened to i32 and
// contracted exactly in i32; the requantization multiplies by
// a_scale · b_scale / y_scale (computed in the scales' type, as the
// reference does) in f64, rounds half to even, adds the zero point and
// saturates.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

bool isQuantized8(Type type) { return type.isInteger(8); }

/// Input `i` (8-bit, signedness from the importer) minus its zero point
/// (input `zp`, optional), as i32. A zero point of more than one element
/// lies along dim `axis` of the data (`axis` counted from the front; -1:
/// must be a single value).
Value widenedMinusZeroPoint(NodeContext &ctx, int i, int zp, int64_t axis,
                            StringRef what) {
  Value x = ctx.input(i);
  if (!x)
    return {};
  auto type = ctx.inputType(i);
  if (!isQuantized8(type.getElementType())) {
    ctx.error() << what << " must be int8 or uint8, got " << type;
    return {};
  }
  bool isUnsigned = ctx.inputIsUnsigned(i);
  SmallVector<Value> inputs = {x};
  if (ctx.hasInput(zp)) {
    Value z = ctx.input(zp);
    if (!z)
      return {};
    auto zType = ctx.inputType(zp);
    if (zType.getElementType() != type.getElementType() ||
        ctx.inputIsUnsigned(zp) != isUnsigned) {
      auto name = [](RankedTensorType t, bool u) {
        return t.getElementType().isInteger(8) ? std::string(u ? "uint8" : "int8")
                                                : "another type";
      };
      ctx.error() << what << "'s zero point is " << name(zType, ctx.inputIsUnsigned(zp))
                  << "; it must have " << what << "'s type, "
                  << name(type, isUnsigned);
      return {};
    }
    if (zType.getNumElements() != 1) {
      bool hasAxis = axis >= 0 && axis < type.getRank();
      if (!hasAxis || zType.getRank() != 1 ||
          zType.getDimSize(0) != type.getDimSize(axis)) {
        ctx.error() << what << "'s zero point " << zType << " must be one "
                    << "value"
                    << (!hasAxis ? std::string()
                                 : " or one per element of dim " +
                                       std::to_string(axis) + " of " +
                                       std::to_string(type.getDimSize(axis)));
        return {};
      }
      SmallVector<int64_t> shape(type.getRank() - axis, 1);
      shape[0] = type.getDimSize(axis);
      z = buildReshape(ctx.b(), ctx.getLoc(), z, shape);
    } else {
      z = buildReshape(ctx.b(), ctx.getLoc(), z, {});
    }
    inputs.push_back(z);
  }
  Type i32 = ctx.b().getI32Type();
  return buildElementwise(
      ctx, inputs, i32, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        auto widen = [&](Value v) -> Value {
          if (isUnsigned)
            return arith::ExtUIOp::create(b, loc, i32, v);
          return arith::ExtSIOp::create(b, loc, i32, v);
        };
        Value v = widen(a[0]);
        return a.size() > 1 ? Value(arith::SubIOp::create(b, loc, v, widen(a[1])))
                            : v;
      });
}

/// A float scale input: one value, or (when `axis` >= 0) one per element
/// of dim `axis` of a rank-`rank` result, reshaped to broadcast there.
Value scaleInput(NodeContext &ctx, int i, int64_t rank, int64_t axis,
                 int64_t extent, StringRef what) {
  Value s = ctx.input(i);
  if (!s)
    return {};
  auto type = ctx.inputType(i);
  if (!isa<FloatType>(type.getElementType())) {
    ctx.error() << what << " must be a float tensor, got " << type;
    return {};
  }
  if (type.getNumElements() == 1)
    return buildReshape(ctx.b(), ctx.getLoc(), s, {});
  if (axis < 0 || type.getRank() != 1 || type.getDimSize(0) != extent) {
    ctx.error() << what << " " << type << " must be one value"
                << (axis < 0 ? std::string()
                             : " or " + std::to_string(extent) + " of them");
    return {};
  }
  SmallVector<int64_t> shape(rank - axis, 1);
  shape[0] = extent;
  return buildReshape(ctx.b(), ctx.getLoc(), s, shape);
}

/// round_half_even(acc · (sa · sb / sy)) + zy, saturated to the 8-bit type
/// of input `zyInput` (or of `fallback` without it): the QLinear ops'
/// requantization, in f64 as the reference computes it.
LogicalResult requantize(NodeContext &ctx, Value acc, Value sa, Value sb,
                         Value sy, int zyInput, Type fallback,
                         bool fallbackUnsigned) {
  Type out = fallback;
  bool isUnsigned = fallbackUnsigned;
  SmallVector<Value> inputs = {acc, sa, sb, sy};
  if (ctx.hasInput(zyInput)) {
    Value zy = ctx.input(zyInput);
    if (!zy)
      return failure();
    auto type = ctx.inputType(zyInput);
    if (!isQuantized8(type.getElementType()) || type.getNumElements() != 1)
      return ctx.error() << "y_zero_point must be one int8 or uint8 value, got "
                         << type;
    out = type.getElementType();
    isUnsigned = ctx.inputIsUnsigned(zyInput);
    inputs.push_back(buildReshape(ctx.b(), ctx.getLoc(), zy, {}));
  }
  double lo = isUnsigned ? 0 : -128, hi = isUnsigned ? 255 : 127;
  Type f64 = ctx.b().getF64Type();
  Value y = buildElementwise(
      ctx, inputs, out, [&](OpBuilder &b, Location loc, ValueRange a) -> Value {
        Value scale = arith::DivFOp::create(
            b, loc, arith::MulFOp::create(b, loc, a[1], a[2]), a[3]);
        Value v = arith::MulFOp::create(
            b, loc, arith::SIToFPOp::create(b, loc, f64, a[0]),
            arith::ExtFOp::create(b, loc, f64, scale));
        if (a.size() > 4) {
          Value zy = isUnsigned
                         ? Value(arith::UIToFPOp::create(b, loc, f64, a[4]))
                         : Value(arith::SIToFPOp::create(b, loc, f64, a[4]));
          v = arith::AddFOp::create(b, loc, v, zy);
        }
        v = math::RoundEvenOp::create(b, loc, v);
        v = arith::MinimumFOp::create(
            b, loc, arith::MaximumFOp::create(b, loc, v, scalarConstant(b, loc, f64, lo)),
            scalarConstant(b, loc, f64, hi));
        return arith::TruncIOp::create(
            b, loc, out,
            arith::FPToSIOp::create(b, loc, b.getI32Type(), v).getResult())
            .getResult();
      });
  if (!y)
    return failure();
  ctx.setOutputUnsigned(0, isUnsigned);
  return ctx.setOutputs(y);
}

/// MatMulInteger (10): (A - a_zero_point) @ (B - b_zero_point) in i32; a
/// zero point per row of A or per column of B.
LogicalResult importMatMulInteger(NodeContext &ctx) {
  if (!ctx.input(0) || !ctx.input(1))
    return failure();
  int64_t aRank = ctx.inputType(0).getRank(), bRank = ctx.inputType(1).getRank();
  Value a = widenedMinusZeroPoint(ctx, 0, 2, aRank >= 2 ? aRank - 2 : -1, "A");
  Value b = widenedMinusZeroPoint(ctx, 1, 3, bRank >= 2 ? bRank - 1 : -1, "B");
  if (!a || !b)
    return failure();
  Value y = buildMatmul(ctx, a, b);
  return y ? ctx.setOutputs(y) : failure();
}

/// QLinearMatMul (10, 21): inputs a, a_scale, a_zero_point, b, b_scale,
/// b_zero_point, y_scale, y_zero_point; A's parameters per row, B's per
/// column, y's per row, or one value each.
LogicalResult importQLinearMatMul(NodeContext &ctx) {
  if (!ctx.input(0) || !ctx.input(3))
    return failure();
  auto aType = ctx.inputType(0), bType = ctx.inputType(3);
  if (aType.getRank() < 2 || bType.getRank() < 2)
    return ctx.error() << "QLinearMatMul takes operands of rank 2 or more, got "
                       << aType << " and " << bType;
  int64_t aRows = aType.getRank() - 2, bCols = bType.getRank() - 1;
  Value a = widenedMinusZeroPoint(ctx, 0, 2, aRows, "a");
  Value b = widenedMinusZeroPoint(ctx, 3, 5, bCols, "b");
  if (!a || !b)
    return failure();
  Value acc = buildMatmul(ctx, a, b);
  if (!acc)
    return failure();
  int64_t rank = shapeOf(acc).size();
  int64_t m = aType.getDimSize(aRows), n = bType.getDimSize(bCols);
  Value sa = scaleInput(ctx, 1, rank, rank - 2, m, "a_scale");
  Value sb = scaleInput(ctx, 4, rank, rank - 1, n, "b_scale");
  Value sy = scaleInput(ctx, 6, rank, rank - 2, m, "y_scale");
  if (!sa || !sb || !sy)
    return failure();
  if (elementTypeOf(sa) != elementTypeOf(sb) || elementTypeOf(sa) != elementTypeOf(sy))
    return ctx.error() << "the scales must have one float type";
  return requantize(ctx, acc, sa, sb, sy, 7, aType.getElementType(),
                    ctx.inputIsUnsigned(0));
}

/// ConvInteger (10): Conv of (x - x_zero_point) by (w - w_zero_point) in
/// i32 (w's zero point one value or one per output channel), zero padded
/// after the zero point is taken away.
LogicalResult importConvInteger(NodeContext &ctx) {
  if (!ctx.input(0) || !ctx.input(1))
    return failure();
  Value x = widenedMinusZeroPoint(ctx, 0, 2, -1, "x");
  Value w = widenedMinusZeroPoint(ctx, 1, 3, 0, "w");
  if (!x || !w)
    return failure();
  Value y = buildConv(ctx, x, w);
  return y ? ctx.setOutputs(y) : failure();
}

/// QLinearConv (10): inputs x, x_scale, x_zero_point, w, w_scale,
/// w_zero_point, y_scale, y_zero_point, B (i32 bias, optional); w's scale
/// and zero point one value or one per output channel.
LogicalResult importQLinearConv(NodeContext &ctx) {
  if (!ctx.input(0) || !ctx.input(3))
    return failure();
  Value x = widenedMinusZeroPoint(ctx, 0, 2, -1, "x");
  Value w = widenedMinusZeroPoint(ctx, 3, 5, 0, "w");
  if (!x || !w)
    return failure();
  Value acc = buildConv(ctx, x, w);
  if (!acc)
    return failure();
  int64_t rank = shapeOf(acc).size(), filters = shapeOf(w)[0];
  if (ctx.hasInput(8)) {
    Value bias = ctx.input(8);
    if (!bias)
      return failure();
    auto expected = RankedTensorType::get({filters}, ctx.b().getI32Type());
    if (ctx.inputType(8) != expected)
      return ctx.error() << "the bias must be " << expected << ", got "
                         << bias.getType();
    SmallVector<int64_t> column(rank - 1, 1);
    column[0] = filters;
    acc = buildElementwise(
        ctx, {acc, buildReshape(ctx.b(), ctx.getLoc(), bias, column)},
        ctx.b().getI32Type(),
        [](OpBuilder &b, Location loc, ValueRange a) -> Value {
          return arith::AddIOp::create(b, loc, a[0], a[1]);
        });
    if (!acc)
      return failure();
  }
  Value sx = scaleInput(ctx, 1, rank, -1, 0, "x_scale");
  Value sw = scaleInput(ctx, 4, rank, 1, filters, "w_scale");
  Value sy = scaleInput(ctx, 6, rank, -1, 0, "y_scale");
  if (!sx || !sw || !sy)
    return failure();
  if (elementTypeOf(sx) != elementTypeOf(sw) || elementTypeOf(sx) != elementTypeOf(sy))
    return ctx.error() << "the scales must have one float type";
  return requantize(ctx, acc, sx, sw, sy, 7, ctx.inputType(0).getElementType(),
                    ctx.inputIsUnsigned(0));
}

} // namespace

void registerQuantIntegerOps(OpRegistry &registry) {
  registry.on("MatMulInteger", 10, importMatMulInteger);
  registry.on("QLinearMatMul", 10, importQLinearMatMul);
  registry.on("ConvInteger", 10, importConvInteger);
  registry.on("QLinearConv", 10, importQLinearConv);
}

} // namespace kiln::onnx
