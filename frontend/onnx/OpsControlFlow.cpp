//===- OpsControlFlow.cpp - ONNX Scan and Loop, unrolled ------------------===//
//
// Kiln compiles static graphs, so Scan and Loop are unrolled at import: the
// body is imported once per iteration (NodeContext::importBody), its state
// outputs fed to the next iteration's inputs and its scan outputs stacked
// with insert_slice. That needs the iteration count at compile time: a
// Scan's from its scan inputs' shapes, a Loop's from a constant trip count
// and a condition that is constant at every iteration (the exporters' Range
// and counted loops). Each unrolled iteration is a few small kernels, so
// the count is capped (kMaxIterations); past it, or with a condition known
// only at run time, the error says so.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;

namespace kiln::onnx {

Value sliceAlong(OpBuilder &b, Location loc, Value value, int64_t axis,
                 int64_t index) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)),
      sizes, strides(type.getRank(), b.getIndexAttr(1));
  for (int64_t d = 0; d < type.getRank(); ++d)
    sizes.push_back(b.getIndexAttr(d == axis ? 1 : type.getDimSize(d)));
  offsets[axis] = b.getIndexAttr(index);
  Value slice =
      tensor::ExtractSliceOp::create(b, loc, value, offsets, sizes, strides);
  SmallVector<int64_t> shape(type.getShape());
  shape.erase(shape.begin() + axis);
  return buildReshape(b, loc, slice, shape);
}

FailureOr<Value> stackAlong(NodeContext &ctx, ArrayRef<Value> elements,
                            int64_t axis, bool reverse) {
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  auto type = cast<RankedTensorType>(elements.front().getType());
  if (!type.hasStaticShape())
    return ctx.error() << "a stacked value of type " << type
                       << " must have a static shape";
  for (Value e : elements)
    if (e.getType() != type)
      return ctx.error() << "the values stacked change type: "
                         << type << " and " << e.getType();
  SmallVector<int64_t> one(type.getShape()), shape(type.getShape());
  one.insert(one.begin() + axis, 1);
  shape.insert(shape.begin() + axis, static_cast<int64_t>(elements.size()));
  Value out = tensor::EmptyOp::create(b, loc, shape, type.getElementType());
  SmallVector<OpFoldResult> sizes, strides(shape.size(), b.getIndexAttr(1));
  for (int64_t d : one)
    sizes.push_back(b.getIndexAttr(d));
  for (auto [i, e] : llvm::enumerate(elements)) {
    SmallVector<OpFoldResult> offsets(shape.size(), b.getIndexAttr(0));
    int64_t at = reverse ? static_cast<int64_t>(elements.size() - 1 - i) : i;
    offsets[axis] = b.getIndexAttr(at);
    out = tensor::InsertSliceOp::create(b, loc, buildReshape(b, loc, e, one),
                                        out, offsets, sizes, strides);
  }
  return out;
}

namespace {

using BodyValue = NodeContext::BodyValue;

constexpr int64_t kMaxIterations = 256;

const kiln_onnx::GraphProto *bodyOf(NodeContext &ctx) {
  const kiln_onnx::AttributeProto *body = ctx.attr("body");
  if (!body || !body->has_g()) {
    ctx.error() << "missing graph attribute 'body'";
    return nullptr;
  }
  return &body->g();
}

/// Per-input or per-output attribute values (`count` of them, `fallback`
/// when the attribute is absent).
std::optional<std::vector<int64_t>> listAttr(NodeContext &ctx, StringRef name,
                                             size_t count, int64_t fallback) {
  std::optional<std::vector<int64_t>> values = ctx.intsAttr(name);
  if (!values)
    return std::vector<int64_t>(count, fallback);
  if (values->size() != count) {
    ctx.error() << name << " has " << values->size() << " values for "
                << count;
    return std::nullopt;
  }
  return values;
}

bool checkIterations(NodeContext &ctx, int64_t count) {
  if (count <= kMaxIterations)
    return true;
  ctx.error() << "Kiln unrolls " << ctx.getNode().op_type() << " at compile "
              << "time, up to " << kMaxIterations << " iterations; this one "
              << "runs " << count << ": export the model for shorter inputs, "
              << "or run it in pieces that carry the state between them";
  return false;
}

/// The core of Scan (9 and later, and each batch of Scan 8): `states`
/// through `length` iterations over the scan inputs (each sliced along its
/// axis, forward or reversed); returns the final states then the stacked
/// scan outputs.
FailureOr<SmallVector<BodyValue>>
runScan(NodeContext &ctx, const kiln_onnx::GraphProto &body,
        SmallVector<BodyValue> states, ArrayRef<BodyValue> scanInputs,
        ArrayRef<int64_t> inputAxes, ArrayRef<int64_t> inputDirections,
        int64_t length, std::optional<std::vector<int64_t>> outputAxes,
        std::optional<std::vector<int64_t>> outputDirections) {
  size_t numStates = states.size();
  if (body.output_size() < static_cast<int>(numStates))
    return ctx.error() << "the body has " << body.output_size()
                       << " outputs for " << numStates << " states";
  size_t numScanOutputs = body.output_size() - numStates;
  if (!outputAxes)
    outputAxes = std::vector<int64_t>(numScanOutputs, 0);
  if (!outputDirections)
    outputDirections = std::vector<int64_t>(numScanOutputs, 0);
  std::vector<SmallVector<Value>> perIteration(numScanOutputs);
  std::vector<BodyValue> scanKinds(numScanOutputs);
  for (int64_t t = 0; t < length; ++t) {
    SmallVector<BodyValue> inputs(states);
    for (auto [j, input] : llvm::enumerate(scanInputs)) {
      int64_t at = inputDirections[j] ? length - 1 - t : t;
      inputs.push_back({sliceAlong(ctx.b(), ctx.getLoc(), input.value,
                                inputAxes[j], at),
                        input.isUnsigned, input.narrowType});
    }
    FailureOr<SmallVector<BodyValue>> outputs = ctx.importBody(body, inputs);
    if (failed(outputs))
      return failure();
    for (size_t i = 0; i < numStates; ++i) {
      if ((*outputs)[i].value.getType() != states[i].value.getType())
        return ctx.error() << "the body's state output #" << i << " "
                           << (*outputs)[i].value.getType()
                           << " differs from its input "
                           << states[i].value.getType();
      states[i] = (*outputs)[i];
    }
    for (size_t k = 0; k < numScanOutputs; ++k) {
      perIteration[k].push_back((*outputs)[numStates + k].value);
      scanKinds[k] = (*outputs)[numStates + k];
    }
  }
  SmallVector<BodyValue> results(states);
  for (size_t k = 0; k < numScanOutputs; ++k) {
    if (length == 0)
      return ctx.error() << "a scan over 0 iterations with scan outputs is "
                            "not supported";
    int64_t rank =
        cast<RankedTensorType>(perIteration[k].front().getType()).getRank();
    int64_t axis = (*outputAxes)[k] < 0 ? (*outputAxes)[k] + rank + 1
                                        : (*outputAxes)[k];
    if (axis < 0 || axis > rank)
      return ctx.error() << "scan_output_axes value " << (*outputAxes)[k]
                         << " is out of range for rank " << rank + 1;
    FailureOr<Value> stacked =
        stackAlong(ctx, perIteration[k], axis, (*outputDirections)[k] != 0);
    if (failed(stacked))
      return failure();
    results.push_back({*stacked, scanKinds[k].isUnsigned,
                       scanKinds[k].narrowType});
  }
  return results;
}

LogicalResult setResults(NodeContext &ctx, ArrayRef<BodyValue> results) {
  SmallVector<Value> values;
  for (auto [i, r] : llvm::enumerate(results)) {
    values.push_back(r.value);
    ctx.setOutputUnsigned(i, r.isUnsigned);
    ctx.setOutputNarrowType(i, r.narrowType);
  }
  return ctx.setOutputs(values);
}

/// The scan inputs' common length along their axes.
std::optional<int64_t> scanLength(NodeContext &ctx,
                                  ArrayRef<BodyValue> scanInputs,
                                  ArrayRef<int64_t> axes) {
  std::optional<int64_t> length;
  for (auto [j, input] : llvm::enumerate(scanInputs)) {
    auto type = cast<RankedTensorType>(input.value.getType());
    if (!type.hasStaticShape()) {
      ctx.error() << "scan input " << type << " must have a static shape";
      return std::nullopt;
    }
    int64_t n = type.getDimSize(axes[j]);
    if (length && *length != n) {
      ctx.error() << "the scan inputs have different lengths, " << *length
                  << " and " << n;
      return std::nullopt;
    }
    length = n;
  }
  if (!length) {
    ctx.error() << "Scan needs at least one scan input";
    return std::nullopt;
  }
  return checkIterations(ctx, *length) ? length : std::nullopt;
}

SmallVector<BodyValue> bodyInputs(NodeContext &ctx, int from, int to) {
  SmallVector<BodyValue> values;
  for (int i = from; i < to; ++i)
    values.push_back({ctx.input(i), ctx.inputIsUnsigned(i),
                      ctx.inputNarrowType(i)});
  return values;
}

/// Scan (9 and later): states and scan inputs, per-input axes and
/// directions, per-output axes and directions.
LogicalResult importScan(NodeContext &ctx) {
  const kiln_onnx::GraphProto *body = bodyOf(ctx);
  if (!body)
    return failure();
  int64_t numScan = ctx.intAttr("num_scan_inputs", 0);
  int numInputs = ctx.numInputs();
  if (numScan < 1 || numScan > numInputs)
    return ctx.error() << "num_scan_inputs " << numScan << " must be 1 to the "
                       << numInputs << " inputs";
  for (int i = 0; i < numInputs; ++i)
    if (!ctx.input(i))
      return failure();
  int numStates = numInputs - static_cast<int>(numScan);
  SmallVector<BodyValue> states = bodyInputs(ctx, 0, numStates);
  SmallVector<BodyValue> scanInputs = bodyInputs(ctx, numStates, numInputs);
  auto axes = listAttr(ctx, "scan_input_axes", numScan, 0);
  auto directions = listAttr(ctx, "scan_input_directions", numScan, 0);
  if (!axes || !directions)
    return failure();
  for (auto [j, input] : llvm::enumerate(scanInputs)) {
    auto axis = normalizeAxis(
        ctx, (*axes)[j], cast<RankedTensorType>(input.value.getType()).getRank());
    if (!axis)
      return failure();
    (*axes)[j] = *axis;
  }
  std::optional<int64_t> length = scanLength(ctx, scanInputs, *axes);
  if (!length)
    return failure();
  size_t numScanOutputs = ctx.getNode().output_size() - numStates;
  auto outputAxes = listAttr(ctx, "scan_output_axes", numScanOutputs, 0);
  auto outputDirections =
      listAttr(ctx, "scan_output_directions", numScanOutputs, 0);
  if (!outputAxes || !outputDirections)
    return failure();
  FailureOr<SmallVector<BodyValue>> results =
      runScan(ctx, *body, states, scanInputs, *axes, *directions, *length,
              outputAxes, outputDirections);
  return failed(results) ? failure() : setResults(ctx, *results);
}

/// Scan 8: a batch dim in front of everything ([B, ...] states, [B, L, ...]
/// scan inputs and outputs), an optional sequence_lens (refused: every
/// batch runs the full length) and input `directions`.
LogicalResult importScan8(NodeContext &ctx) {
  const kiln_onnx::GraphProto *body = bodyOf(ctx);
  if (!body)
    return failure();
  if (ctx.hasInput(0))
    return ctx.error() << "sequence_lens is not supported: every batch "
                          "runs the full sequence";
  int64_t numScan = ctx.intAttr("num_scan_inputs", 0);
  int numInputs = ctx.numInputs();
  if (numScan < 1 || numScan > numInputs - 1)
    return ctx.error() << "num_scan_inputs " << numScan << " is out of range";
  for (int i = 1; i < numInputs; ++i)
    if (!ctx.input(i))
      return failure();
  int numStates = numInputs - 1 - static_cast<int>(numScan);
  SmallVector<BodyValue> states = bodyInputs(ctx, 1, 1 + numStates);
  SmallVector<BodyValue> scanInputs = bodyInputs(ctx, 1 + numStates, numInputs);
  auto directions = listAttr(ctx, "directions", numScan, 0);
  if (!directions)
    return failure();
  int64_t batch = -1;
  for (const BodyValue &v : llvm::concat<BodyValue>(states, scanInputs)) {
    auto type = cast<RankedTensorType>(v.value.getType());
    if (type.getRank() < 1 || !type.hasStaticShape() ||
        (batch >= 0 && type.getDimSize(0) != batch))
      return ctx.error() << "Scan 8 needs static inputs with one batch dim "
                            "in front, got "
                         << type;
    batch = type.getDimSize(0);
  }
  std::vector<int64_t> axes(numScan, 0);
  std::vector<SmallVector<BodyValue>> perBatch;
  for (int64_t b = 0; b < batch; ++b) {
    auto at = [&](ArrayRef<BodyValue> values) {
      SmallVector<BodyValue> sliced;
      for (const BodyValue &v : values)
        sliced.push_back({sliceAlong(ctx.b(), ctx.getLoc(), v.value, 0, b),
                          v.isUnsigned, v.narrowType});
      return sliced;
    };
    SmallVector<BodyValue> batchInputs = at(scanInputs);
    std::optional<int64_t> length = scanLength(ctx, batchInputs, axes);
    if (!length)
      return failure();
    FailureOr<SmallVector<BodyValue>> results =
        runScan(ctx, *body, at(states), batchInputs, axes, *directions,
                *length, std::nullopt, std::nullopt);
    if (failed(results))
      return failure();
    perBatch.push_back(*results);
  }
  // Each result stacked over the batches.
  SmallVector<BodyValue> results;
  for (size_t r = 0; batch > 0 && r < perBatch.front().size(); ++r) {
    SmallVector<Value> parts;
    for (const auto &results : perBatch)
      parts.push_back(results[r].value);
    FailureOr<Value> stacked = stackAlong(ctx, parts, 0, false);
    if (failed(stacked))
      return failure();
    results.push_back({*stacked, perBatch.front()[r].isUnsigned,
                       perBatch.front()[r].narrowType});
  }
  if (batch == 0)
    return ctx.error() << "Scan 8 over a batch of 0 is not supported";
  return setResults(ctx, results);
}

/// The bool a value holds when it is a constant, else none.
std::optional<bool> constantBool(Value value) {
  DenseElementsAttr attr;
  if (!matchPattern(value, m_Constant(&attr)) || attr.getNumElements() != 1)
    return std::nullopt;
  if (attr.getElementType().isInteger())
    return !(*attr.getValues<APInt>().begin()).isZero();
  return std::nullopt;
}

/// Loop: a constant trip count (or none) and a condition constant at every
/// iteration; loop-carried values, and scan outputs stacked along a new
/// first dim.
LogicalResult importLoop(NodeContext &ctx) {
  const kiln_onnx::GraphProto *body = bodyOf(ctx);
  if (!body)
    return failure();
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  std::optional<int64_t> tripCount;
  if (ctx.hasInput(0)) {
    if (!ctx.input(0))
      return failure();
    auto attr = dyn_cast_or_null<DenseElementsAttr>(ctx.constantElements(0));
    if (!attr || attr.getNumElements() != 1 ||
        !attr.getElementType().isInteger())
      return ctx.error() << "input #0 '" << ctx.getNode().input(0)
                         << "' must be a constant: Kiln unrolls Loop and "
                            "needs its trip count at compile time"
                         << ctx.freezeHint(0);
    tripCount = (*attr.getValues<APInt>().begin()).getSExtValue();
  }
  std::optional<bool> cond = true;
  if (ctx.hasInput(1)) {
    if (!ctx.input(1))
      return failure();
    cond = constantBool(ctx.input(1));
    if (!cond)
      return ctx.error() << "input #1 '" << ctx.getNode().input(1)
                         << "' must be a constant: Kiln unrolls Loop and "
                            "needs its condition at compile time"
                         << ctx.freezeHint(1);
  }
  int numCarried = ctx.numInputs() - 2;
  SmallVector<BodyValue> carried = bodyInputs(ctx, 2, ctx.numInputs());
  for (const BodyValue &v : carried)
    if (!v.value)
      return failure();
  if (body->output_size() < 1 + numCarried)
    return ctx.error() << "the body has " << body->output_size()
                       << " outputs for the condition and " << numCarried
                       << " loop-carried values";
  size_t numScanOutputs = body->output_size() - 1 - numCarried;
  std::vector<SmallVector<Value>> perIteration(numScanOutputs);
  std::vector<BodyValue> scanKinds(numScanOutputs);
  Type i1 = b.getI1Type();
  auto boolTensor = [&](bool v) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(RankedTensorType::get({}, i1), v));
  };
  int64_t i = 0;
  for (; *cond && (!tripCount || i < *tripCount); ++i) {
    if (!checkIterations(ctx, i + 1))
      return failure();
    SmallVector<BodyValue> inputs = {
        {arith::ConstantOp::create(
             b, loc,
             DenseElementsAttr::get(RankedTensorType::get({}, b.getI64Type()),
                                    i)),
         false, 0},
        {boolTensor(*cond), false, 0}};
    inputs.append(carried);
    FailureOr<SmallVector<BodyValue>> outputs = ctx.importBody(*body, inputs);
    if (failed(outputs))
      return failure();
    cond = constantBool(foldToConstant(b, (*outputs)[0].value));
    if (!cond)
      return ctx.error() << "the body's condition output '"
                         << body->output(0).name()
                         << "' is computed at run time; Kiln unrolls Loop "
                            "and needs it at compile time";
    for (int c = 0; c < numCarried; ++c) {
      if ((*outputs)[1 + c].value.getType() != carried[c].value.getType())
        return ctx.error() << "loop-carried value #" << c << " changes type: "
                           << carried[c].value.getType() << " to "
                           << (*outputs)[1 + c].value.getType();
      carried[c] = (*outputs)[1 + c];
    }
    for (size_t k = 0; k < numScanOutputs; ++k) {
      perIteration[k].push_back((*outputs)[1 + numCarried + k].value);
      scanKinds[k] = (*outputs)[1 + numCarried + k];
    }
  }
  SmallVector<BodyValue> results(carried);
  for (size_t k = 0; k < numScanOutputs; ++k) {
    if (i == 0)
      return ctx.error() << "a Loop that runs no iteration with scan outputs "
                            "is not supported";
    FailureOr<Value> stacked = stackAlong(ctx, perIteration[k], 0, false);
    if (failed(stacked))
      return failure();
    results.push_back({*stacked, scanKinds[k].isUnsigned,
                       scanKinds[k].narrowType});
  }
  return setResults(ctx, results);
}

} // namespace

/// The If's branch `name`, checked to give the node's outputs; null after
/// reporting.
const kiln_onnx::GraphProto *branchOf(NodeContext &ctx,
                                             const char *name) {
  const kiln_onnx::AttributeProto *branch = ctx.attr(name);
  if (!branch || !branch->has_g()) {
    ctx.error() << "missing graph attribute '" << name << "'";
    return nullptr;
  }
  if (branch->g().output_size() != ctx.getNode().output_size()) {
    ctx.error() << name << " has " << branch->g().output_size()
                << " outputs for the node's " << ctx.getNode().output_size();
    return nullptr;
  }
  return &branch->g();
}

/// If with a condition known only at run time: both branches are imported
/// (ONNX ops have no side effects) and each output selects between them
/// elementwise, so the branches must give outputs of one type.
LogicalResult importRuntimeIf(NodeContext &ctx) {
  Value cond = ctx.input(0);
  auto condType = ctx.inputType(0);
  if (condType.getNumElements() != 1 || !condType.getElementType().isInteger(1))
    return ctx.error() << "the If condition must be one bool, got " << condType;
  OpBuilder &b = ctx.b();
  Location loc = ctx.getLoc();
  cond = buildReshape(b, loc, cond, {});
  SmallVector<SmallVector<NodeContext::BodyValue>> branches;
  for (const char *name : {"then_branch", "else_branch"}) {
    const kiln_onnx::GraphProto *graph = branchOf(ctx, name);
    if (!graph)
      return failure();
    FailureOr<SmallVector<NodeContext::BodyValue>> outputs =
        ctx.importBody(*graph, {});
    if (failed(outputs))
      return failure();
    branches.push_back(*outputs);
  }
  SmallVector<Value> results;
  for (auto [i, pair] : llvm::enumerate(llvm::zip(branches[0], branches[1]))) {
    auto &[then, otherwise] = pair;
    if (then.value.getType() != otherwise.value.getType() ||
        then.isUnsigned != otherwise.isUnsigned ||
        then.narrowType != otherwise.narrowType)
      return ctx.error() << "output #" << i << " is " << then.value.getType()
                         << " in then_branch and " << otherwise.value.getType()
                         << " in else_branch; Kiln runs both branches of an "
                            "If whose condition is known only at run time "
                            "and selects their outputs, so their types must "
                            "agree"
                         << ctx.freezeHint(0);
    Value out = buildElementwise(
        ctx, {cond, then.value, otherwise.value},
        elementTypeOf(then.value),
        [](OpBuilder &b, Location loc, ValueRange a) -> Value {
          return arith::SelectOp::create(b, loc, a[0], a[1], a[2]);
        });
    if (!out)
      return failure();
    results.push_back(out);
    ctx.setOutputUnsigned(i, then.isUnsigned);
    ctx.setOutputNarrowType(i, then.narrowType);
  }
  return ctx.setOutputs(results);
}

void registerControlFlowOps(OpRegistry &registry) {
  registry.on("Scan", 8, importScan8);
  registry.on("Scan", 9, importScan);
  registry.on("Loop", 1, importLoop);
}

} // namespace kiln::onnx
