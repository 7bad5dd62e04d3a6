//===- OpsElementwise.cpp - ONNX elementwise ops --------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

bool isFloat(Type type) { return isa<FloatType>(type); }

/// Registers a binary op that has one float and one integer form.
template <typename FloatOp, typename IntOp>
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
    Value result = buildElementwise(
        ctx, {lhs, rhs}, element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          if (isFloat(element))
            return FloatOp::create(b, loc, args[0], args[1]);
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
  if (!isFloat(element))
    return ctx.error() << "Pow supports float bases only, got "
                       << base.getType();
  // x^2 (variance in decomposed norms) and x^0.5 are common enough to
  // deserve exact, cheap forms.
  if (auto constant = ctx.constantElements(1)) {
    auto dense = dyn_cast<DenseElementsAttr>(constant);
    // Only when the exponent cannot grow the result by broadcasting.
    if (dense && dense.isSplat() && isFloat(dense.getElementType()) &&
        dense.getNumElements() == 1 &&
        ctx.inputType(1).getRank() <= ctx.inputType(0).getRank()) {
      double value = dense.getSplatValue<APFloat>().convertToDouble();
      if (value == 2.0 || value == 1.0 || value == 0.5) {
        Value result = buildElementwise(
            ctx, {base}, element,
            [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
              if (value == 2.0)
                return arith::MulFOp::create(b, loc, args[0], args[0]);
              if (value == 0.5)
                return math::SqrtOp::create(b, loc, args[0]);
              return args[0];
            });
        return result ? ctx.setOutputs(result) : failure();
      }
    }
  }
  Value result = buildElementwise(
      ctx, {base, exponent}, element,
      [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value e = castScalar(b, loc, args[1], element);
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
  Type target = toElementType(ctx.b().getContext(), to);
  if (!target)
    return ctx.error() << "cast to " << dataTypeName(to)
                       << " is not supported";
  Value result = buildElementwise(
      ctx, {x}, target, [&](OpBuilder &b, Location loc, ValueRange args) {
        return castScalar(b, loc, args[0], target);
      });
  return result ? ctx.setOutputs(result) : failure();
}

} // namespace

void registerElementwiseOps(OpRegistry &registry) {
  onBinary<arith::AddFOp, arith::AddIOp>(registry, "Add", 7);
  onBinary<arith::SubFOp, arith::SubIOp>(registry, "Sub", 7);
  onBinary<arith::MulFOp, arith::MulIOp>(registry, "Mul", 7);
  onBinary<arith::DivFOp, arith::DivSIOp>(registry, "Div", 7);
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
