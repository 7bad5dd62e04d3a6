//===- OpsQuantContrib.cpp - onnxruntime's QLinear* elementwise ops ------===//
//
// onnxruntime's static quantization (QOperator format) writes, beside the
// standard QLinearConv and QLinearMatMul, contrib ops for the elementwise
// and pooling ops between them: QLinearAdd, QLinearMul, QLinearSigmoid,
// QLinearLeakyRelu, QLinearGlobalAveragePool, QLinearAveragePool,
// QLinearConcat (domain com.microsoft). Each is its float op between
// DequantizeLinear and QuantizeLinear, and is imported as exactly that: a
// small ONNX graph of those standard nodes built here and imported in place
// (NodeContext::importBody), so the float op's handler, its attributes and
// the reference's rounding (half to even) and saturation apply unchanged.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

using BodyValue = NodeContext::BodyValue;

/// A quantized operand of the node: inputs (value, scale, zero point).
struct QuantInput {
  int value, scale, zeroPoint;
};

/// Imports `floatOp` (with the node's attributes but `skip`) on the
/// dequantized `inputs`, its result quantized with the node's inputs
/// `outScale` and `outZeroPoint` (-1: none).
LogicalResult importViaFloat(NodeContext &ctx, StringRef floatOp,
                             ArrayRef<QuantInput> inputs, int outScale,
                             int outZeroPoint,
                             ArrayRef<StringRef> skip = {}) {
  kiln_onnx::GraphProto body;
  SmallVector<BodyValue> bound;
  // Body inputs, one per node input used, named after its position.
  auto bind = [&](int i) -> std::string {
    std::string name = "qlinear_in" + std::to_string(i);
    body.add_input()->set_name(name);
    bound.push_back({ctx.input(i), ctx.inputIsUnsigned(i), ctx.inputNarrowType(i)});
    return name;
  };
  // A required input, present and imported.
  auto need = [&](int i) -> bool {
    if (!ctx.hasInput(i)) {
      ctx.error() << "input #" << i << " is missing";
      return false;
    }
    return bool(ctx.input(i));
  };
  SmallVector<std::string> dequantized;
  for (const QuantInput &in : inputs) {
    if (!need(in.value) || !need(in.scale))
      return failure();
    auto *dq = body.add_node();
    dq->set_op_type("DequantizeLinear");
    dq->add_input(bind(in.value));
    dq->add_input(bind(in.scale));
    if (in.zeroPoint >= 0 && ctx.hasInput(in.zeroPoint)) {
      if (!ctx.input(in.zeroPoint))
        return failure();
      dq->add_input(bind(in.zeroPoint));
    }
    dequantized.push_back("qlinear_float" + std::to_string(dequantized.size()));
    dq->add_output(dequantized.back());
  }
  auto *op = body.add_node();
  op->set_op_type(floatOp.str());
  for (const kiln_onnx::AttributeProto &attr : ctx.getNode().attribute())
    if (!llvm::is_contained(skip, StringRef(attr.name())))
      *op->add_attribute() = attr;
  for (const std::string &name : dequantized)
    op->add_input(name);
  op->add_output("qlinear_result");
  if (!need(outScale))
    return failure();
  auto *q = body.add_node();
  q->set_op_type("QuantizeLinear");
  q->add_input("qlinear_result");
  q->add_input(bind(outScale));
  if (outZeroPoint >= 0 && ctx.hasInput(outZeroPoint)) {
    if (!ctx.input(outZeroPoint))
      return failure();
    q->add_input(bind(outZeroPoint));
  }
  q->add_output("qlinear_out");
  body.add_output()->set_name("qlinear_out");
  FailureOr<SmallVector<BodyValue>> outputs = ctx.importBody(body, bound);
  if (failed(outputs))
    return failure();
  ctx.setOutputUnsigned(0, (*outputs)[0].isUnsigned);
  return ctx.setOutputs((*outputs)[0].value);
}

/// QLinearAdd, QLinearMul: A, A_scale, A_zero_point, B, B_scale,
/// B_zero_point, C_scale, C_zero_point.
OpHandler binary(StringRef floatOp) {
  return [floatOp](NodeContext &ctx) {
    return importViaFloat(ctx, floatOp, {{0, 1, 2}, {3, 4, 5}}, 6, 7);
  };
}

/// QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool,
/// QLinearAveragePool: X, X_scale, X_zero_point, Y_scale, Y_zero_point.
OpHandler unary(StringRef floatOp) {
  return [floatOp](NodeContext &ctx) -> LogicalResult {
    if (ctx.intAttr("channels_last", 0) != 0)
      return ctx.error() << "channels_last = 1 is not supported (NCHW only)";
    return importViaFloat(ctx, floatOp, {{0, 1, 2}}, 3, 4, {"channels_last"});
  };
}

/// QLinearConcat: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point)
/// per input; `axis`.
LogicalResult importQLinearConcat(NodeContext &ctx) {
  int count = ctx.numInputs() - 2;
  if (count < 3 || count % 3)
    return ctx.error() << "QLinearConcat takes Y_scale, Y_zero_point and "
                          "triples (X, X_scale, X_zero_point), got "
                       << ctx.numInputs() << " inputs";
  SmallVector<QuantInput> inputs;
  for (int i = 2; i < ctx.numInputs(); i += 3)
    inputs.push_back({i, i + 1, i + 2});
  return importViaFloat(ctx, "Concat", inputs, 0, 1);
}

} // namespace

void registerQuantContribOps(OpRegistry &registry) {
  registry.on("com.microsoft.QLinearAdd", 1, binary("Add"));
  registry.on("com.microsoft.QLinearMul", 1, binary("Mul"));
  registry.on("com.microsoft.QLinearSigmoid", 1, unary("Sigmoid"));
  registry.on("com.microsoft.QLinearLeakyRelu", 1, unary("LeakyRelu"));
  registry.on("com.microsoft.QLinearGlobalAveragePool", 1,
              unary("GlobalAveragePool"));
  registry.on("com.microsoft.QLinearAveragePool", 1, unary("AveragePool"));
  registry.on("com.microsoft.QLinearConcat", 1, importQLinearConcat);
}

} // namespace kiln::onnx
