//===- OpsElementwise.cpp - ONNX elementwise ops --------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/NarrowTypes.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

using namespace mlir;

namespace kiln::onnx {
namespace {

bool isFloat(Type type) { return isa<FloatType>(type); }

/// Registers a binary op that has one float and one (signed and unsigned)
/// integer form.
template <typename FloatOp, typename IntOp, typename UnsignedOp = IntOp>
void onBinary(OpRegistry &registry, StringRef opType, int64_t since) {
  registry.on(opType, since, [opType](NodeContext &ctx) -> LogicalResult {
    Value lhs = ctx.input(0), rhs = ctx.input(1);
    if (!lhs || !rhs)
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (element != ctx.inputType(1).getElementType())
      return ctx.error() << "inputs must have the same element type, got "
                         << lhs.getType() << " and " << rhs.getType();
    if (element.isInteger(1))
      return ctx.error() << opType << " does not accept bool inputs";
    bool isUnsigned = ctx.inputIsUnsigned(0) || ctx.inputIsUnsigned(1);
    Value result = buildElementwise(
        ctx, {lhs, rhs}, element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          if (isFloat(element))
            return FloatOp::create(b, loc, args[0], args[1]);
          if (isUnsigned)
            return UnsignedOp::create(b, loc, args[0], args[1]);
          return IntOp::create(b, loc, args[0], args[1]);
        });
    return result ? ctx.setOutputs(result) : failure();
  });
}

/// Registers a unary float op given its scalar body.
void onUnaryFloat(OpRegistry &registry, StringRef opType, int64_t since,
                  std::function<Value(OpBuilder &, Location, Value)> body) {
  registry.on(opType, since, [opType, body](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0);
    if (!x)
      return failure();
    Type element = ctx.inputType(0).getElementType();
    if (!isFloat(element))
      return ctx.error() << opType << " supports float inputs only, got "
                         << x.getType();
    Value result = buildElementwise(
        ctx, {x}, element, [&](OpBuilder &b, Location loc, ValueRange args) {
          return body(b, loc, args[0]);
        });
    return result ? ctx.setOutputs(result) : failure();
  });
}

LogicalResult importPow(NodeContext &ctx) {
  Value base = ctx.input(0), exponent = ctx.input(1);
  if (!base || !exponent)
    return failure();
  Type element = ctx.inputType(0).getElementType();
  bool unsignedExponent = ctx.inputIsUnsigned(1);
  if (ctx.inputIsUnsigned(0))
    return ctx.error() << "Pow supports float and signed integer bases, got "
                          "an unsigned one";
  // An integer base: computed in f64 and truncated to the base's type, as
  // the reference's numpy power then astype does (exact while the result
  // fits in 53 bits).
  if (isa<IntegerType>(element)) {
    Value result = buildElementwise(
        ctx, {base, exponent}, element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Type f64 = b.getF64Type();
          Value x = castScalar(b, loc, args[0], f64);
          Value e = castScalar(b, loc, args[1], f64, unsignedExponent);
          return castScalar(b, loc, math::PowFOp::create(b, loc, x, e),
                            element);
        });
    return result ? ctx.setOutputs(result) : failure();
  }
  if (!isFloat(element))
    return ctx.error() << "Pow supports float and integer bases, got "
                       << base.getType();
  // Constant small integer exponents (x^2 in decomposed variances, x^3 in
  // GPT-2's tanh GELU) become multiplications, and x^0.5 a square root:
  // exact, cheap and vectorizable where powf is a scalar libm call.
  if (auto constant = ctx.constantElements(1)) {
    auto dense = dyn_cast<DenseElementsAttr>(constant);
    // Only when the exponent cannot grow the result by broadcasting.
    if (dense && dense.isSplat() && isFloat(dense.getElementType()) &&
        dense.getNumElements() == 1 &&
        ctx.inputType(1).getRank() <= ctx.inputType(0).getRank()) {
      double value = dense.getSplatValue<APFloat>().convertToDouble();
      bool smallInteger = value == std::trunc(value) && std::abs(value) <= 16;
      if (smallInteger || value == 0.5) {
        Value result = buildElementwise(
            ctx, {base}, element,
            [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
              Value x = args[0];
              if (value == 0.5)
                return math::SqrtOp::create(b, loc, x);
              // Square-and-multiply over |n|; 1 / x^|n| for negative n.
              auto n = static_cast<int64_t>(std::abs(value));
              Value result = scalarConstant(b, loc, element, 1), square = x;
              bool first = true;
              for (; n; n >>= 1) {
                if (n & 1) {
                  result = first ? square
                                 : arith::MulFOp::create(b, loc, result, square).getResult();
                  first = false;
                }
                if (n > 1)
                  square = arith::MulFOp::create(b, loc, square, square);
              }
              if (value < 0)
                result = arith::DivFOp::create(
                    b, loc, scalarConstant(b, loc, element, 1), result);
              return result;
            });
        return result ? ctx.setOutputs(result) : failure();
      }
    }
  }
  Value result = buildElementwise(
      ctx, {base, exponent}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value e = castScalar(b, loc, args[1], element, unsignedExponent);
        return math::PowFOp::create(b, loc, args[0], e);
      });
  return result ? ctx.setOutputs(result) : failure();
}

LogicalResult importCast(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  if (!ctx.hasAttr("to"))
    return ctx.error() << "missing required attribute 'to'";
  int64_t to = ctx.intAttr("to", 0);
  bool toUnsigned = false;
  Type target = storageElementType(ctx.b().getContext(), to, &toUnsigned);
  if (!target)
    return ctx.error() << "cast to " << dataTypeName(to)
                       << " is not supported";
  Value result = buildNarrowableCast(
      ctx, x, isNarrowType(to) ? static_cast<int32_t>(to) : 0, target,
      toUnsigned);
  return result ? ctx.setOutputs(result) : failure();
}

} // namespace

void registerElementwiseOps(OpRegistry &registry) {
  onBinary<arith::AddFOp, arith::AddIOp>(registry, "Add", 7);
  onBinary<arith::SubFOp, arith::SubIOp>(registry, "Sub", 7);
  onBinary<arith::MulFOp, arith::MulIOp>(registry, "Mul", 7);
  onBinary<arith::DivFOp, arith::DivSIOp, arith::DivUIOp>(registry, "Div", 7);
  registry.on("Pow", 7, importPow);
  registry.on("Cast", 6, importCast);

  onUnaryFloat(registry, "Relu", 6, [](OpBuilder &b, Location loc, Value x) {
    return arith::MaximumFOp::create(b, loc, x,
                                     scalarConstant(b, loc, x.getType(), 0));
  });
  onUnaryFloat(registry, "Sigmoid", 6, [](OpBuilder &b, Location loc, Value x) {
    return scalarSigmoid(b, loc, x);
  });
  onUnaryFloat(registry, "Tanh", 6, [](OpBuilder &b, Location loc, Value x) {
    return math::TanhOp::create(b, loc, x);
  });
  onUnaryFloat(registry, "Erf", 9, [](OpBuilder &b, Location loc, Value x) {
    return math::ErfOp::create(b, loc, x);
  });
  onUnaryFloat(registry, "Sqrt", 6, [](OpBuilder &b, Location loc, Value x) {
    return math::SqrtOp::create(b, loc, x);
  });
  registry.on("Identity", 1, [](NodeContext &ctx) -> LogicalResult {
    Value x = ctx.input(0);
    return x ? ctx.setOutputs(x) : failure();
  });
}

} // namespace kiln::onnx
