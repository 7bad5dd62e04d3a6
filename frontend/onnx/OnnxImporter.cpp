//===- OnnxImporter.cpp - ONNX ModelProto -> Kiln graph IR ----------------===//
#include "frontend/onnx/OnnxImporter.h"
#include "frontend/onnx/SymbolicShapes.h"

#include "dialects/kiln/KilnDialect.h"
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/DecoderCache.h"
#include "frontend/onnx/ImportContext.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <google/protobuf/io/coded_stream.h>

using namespace mlir;

namespace kiln::onnx {

/// Initializers and Constant nodes with at most this many elements stay
/// inline (dense attributes the compiler can fold); larger ones become
/// named `dense_resource` weights.
static constexpr int64_t kInlineConstantLimit = 64;

const OpHandler *OpRegistry::lookup(StringRef opType, int64_t opset,
                                    int64_t *oldest) const {
  auto it = handlers.find(opType.str());
  if (it == handlers.end())
    return nullptr;
  *oldest = it->second.begin()->first;
  auto version = it->second.upper_bound(opset);
  if (version == it->second.begin())
    return nullptr;
  return &std::prev(version)->second;
}

namespace {
/// The ai.onnx schema versions of every op (OpVersions.inc).
struct OpVersionTable {
  int64_t maxOpset = 0;
  llvm::StringMap<std::vector<int64_t>> versions;
  OpVersionTable() {
#define KILN_ONNX_MAX_OPSET(n) maxOpset = n;
#define KILN_ONNX_OP(name, ...) versions[name] = std::vector<int64_t> __VA_ARGS__;
#include "frontend/onnx/OpVersions.inc"
#undef KILN_ONNX_OP
#undef KILN_ONNX_MAX_OPSET
  }
};
const OpVersionTable &opVersions() {
  static const OpVersionTable table;
  return table;
}
} // namespace

int64_t maxSupportedOpset() { return opVersions().maxOpset; }

int64_t onnxOpVersion(StringRef opType, int64_t opset) {
  auto it = opVersions().versions.find(opType);
  if (it == opVersions().versions.end())
    return 0;
  int64_t version = 0;
  for (int64_t v : it->second)
    if (v <= opset)
      version = v;
  return version;
}

static LogicalResult importIf(NodeContext &ctx);

static const OpRegistry &getRegistry() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    r.on("If", 1, importIf);
    registerElementwiseOps(r);
    registerShapeOps(r);
    registerLinalgOps(r);
    registerMathOps(r);
    registerReduceOps(r);
    registerTensorOps(r);
    registerNormOps(r);
    registerMoreTensorOps(r);
    registerAttentionOps(r);
    registerQuantOps(r);
    registerPoolOps(r);
    registerResizeOps(r);
    registerSpatialOps(r);
    registerIndexingOps(r);
    registerLinearAttentionOps(r);
    registerControlFlowOps(r);
    registerRecurrentOps(r);
    registerQuantIntegerOps(r);
    registerTfIdfOps(r);
    registerQuantContribOps(r);
    return r;
  }();
  return registry;
}

/// Imports one GraphProto into one func.func.
class GraphImporter {
public:
  GraphImporter(MLIRContext &context, StringRef path,
                const ImportOptions &options)
      : context(context), path(path), options(options),
        baseDir(llvm::sys::path::parent_path(path).str()) {}

  /// Imports `model`; frees each initializer's bytes once the IR holds them.
  /// With `into`, adds the function to that module (and returns null).
  OwningOpRef<ModuleOp> import(kiln_onnx::ModelProto &model,
                               ModuleOp into = {});

  /// Imports the graph as the generation entry point `prefill` or `decode`
  /// of a decoder with a cache (DecoderCache.h): the cache is held in
  /// states, attention_mask and position_ids are computed from the padding
  /// and the cached count. Weights are shared through `weights`.
  /// Whether the last import() completed.
  bool succeeded() const { return imported; }

  void setDecoderEntry(const DecoderCache &cache, bool decode,
                       llvm::StringMap<TypedAttr> &weights) {
    decoder = &cache;
    decoding = decode;
    weightCache = &weights;
  }

  InFlightDiagnostic fileError() {
    return emitError(FileLineColLoc::get(&context, path, 0, 0));
  }

  Value lookup(const std::string &name) const {
    auto it = values.find(name);
    return it == values.end() ? Value() : it->second;
  }
  void bind(const std::string &name, Value value) { values[name] = value; }
  bool isUnsigned(StringRef name) const { return unsignedNames.contains(name); }
  void markUnsigned(StringRef name) { unsignedNames.insert(name); }
  /// The narrow ONNX type a value's i8 elements hold (Tensors.h), or 0.
  int32_t narrowType(StringRef name) const { return narrowNames.lookup(name); }
  void markNarrow(StringRef name, int32_t dataType) {
    if (dataType)
      narrowNames[name] = dataType;
  }
  const std::string &getBaseDir() const { return baseDir; }
  SymbolicShapes *getSymbolicShapes() {
    return symbolic ? &*symbolic : nullptr;
  }
  StringRef getPath() const { return path; }

  /// A constant op for `tensor`, named after it when it becomes a weight.
  Value importTensor(OpBuilder &b, Location loc,
                     const kiln_onnx::TensorProto &tensor, StringRef what);

  /// Imports a subgraph's initializers and nodes in the current scope (the
  /// branch an If with a constant condition takes): its nodes read the
  /// outer graph's values by name, as ONNX scoping says.
  LogicalResult importSubgraph(OpBuilder &b, const kiln_onnx::GraphProto &graph,
                               Location loc) {
    for (const auto &init : graph.initializer()) {
      Value value = importTensor(b, loc, init, "initializer");
      if (!value)
        return failure();
      bind(init.name(), value);
    }
    for (int i = 0; i < graph.node_size(); ++i)
      if (failed(importNode(b, graph.node(i), i)))
        return failure();
    return success();
  }

  /// NodeContext::importBody.
  FailureOr<SmallVector<NodeContext::BodyValue>>
  importBody(OpBuilder &b, const kiln_onnx::GraphProto &body,
             ArrayRef<NodeContext::BodyValue> inputs, Location loc) {
    // What the names the body binds meant before, to restore after.
    struct Saved {
      std::string name;
      Value value;
      bool isUnsigned;
      int32_t narrow;
    };
    SmallVector<Saved> saved;
    llvm::StringSet<> seen;
    auto save = [&](const std::string &name) {
      if (!name.empty() && seen.insert(name).second)
        saved.push_back({name, lookup(name), isUnsigned(name), narrowType(name)});
    };
    for (const auto &input : body.input())
      save(input.name());
    for (const auto &init : body.initializer())
      save(init.name());
    for (const auto &node : body.node())
      for (const std::string &output : node.output())
        save(output);
    auto restore = [&] {
      for (const Saved &s : saved) {
        if (s.value)
          values[s.name] = s.value;
        else
          values.erase(s.name);
        if (s.isUnsigned)
          unsignedNames.insert(s.name);
        else
          unsignedNames.erase(s.name);
        if (s.narrow)
          narrowNames[s.name] = s.narrow;
        else
          narrowNames.erase(s.name);
      }
    };
    for (auto [input, value] : llvm::zip(body.input(), inputs)) {
      bind(input.name(), value.value);
      unsignedNames.erase(input.name());
      narrowNames.erase(input.name());
      if (value.isUnsigned)
        markUnsigned(input.name());
      markNarrow(input.name(), value.narrowType);
    }
    SmallVector<NodeContext::BodyValue> outputs;
    if (failed(importSubgraph(b, body, loc))) {
      restore();
      return failure();
    }
    for (const auto &output : body.output()) {
      Value value = lookup(output.name());
      if (!value) {
        emitError(loc) << path << ": body output '" << output.name()
                       << "' is not computed by the body";
        restore();
        return failure();
      }
      outputs.push_back({value, isUnsigned(output.name()),
                         narrowType(output.name())});
    }
    restore();
    return outputs;
  }

private:
  LogicalResult importNode(OpBuilder &b, const kiln_onnx::NodeProto &node,
                           int nodeIndex);
  void propagateSignedness(NodeContext &ctx);
  void propagateNarrowTypes(NodeContext &ctx);
  std::optional<RankedTensorType> importValueType(
      const kiln_onnx::ValueInfoProto &info, StringRef role,
      SmallVectorImpl<Attribute> *dimNames = nullptr);
  bool checkSymbolicInputs(NodeContext &ctx);
  /// The decoder entry point's arguments and the values of the graph
  /// inputs it computes (setDecoderEntry).
  LogicalResult buildDecoderArgs(OpBuilder &b, Location loc,
                                 SmallVectorImpl<Type> &argTypes);
  void setDecoderArgAttrs(func::FuncOp func);
  LogicalResult bindDecoderInputs(OpBuilder &b, func::FuncOp func);
  /// A node of the decoder's cache (an alias of a past input, or the
  /// Concat writing a present one); `handled` when it was one.
  LogicalResult importCacheNode(OpBuilder &b, const kiln_onnx::NodeProto &node,
                                Location loc, bool &handled);
  /// GroupQueryAttention writing two of the cache's tensors.
  LogicalResult importCachedAttention(OpBuilder &b,
                                      const kiln_onnx::NodeProto &node,
                                      Location loc);

  MLIRContext &context;
  std::string path;
  const ImportOptions &options;
  std::string baseDir;
  llvm::StringMap<Value> values;
  /// The ONNX values holding unsigned integers (signless in the IR).
  llvm::StringSet<> unsignedNames;
  /// The ONNX values of narrow types (float8, float4, int4, int2), held as
  /// i8, by name.
  llvm::StringMap<int32_t> narrowNames;
  /// Symbolic shape arithmetic, with `--dim NAME=MIN..MAX`.
  std::optional<SymbolicShapes> symbolic;
  int64_t opset = 0;
  /// The model's com.microsoft opset (onnxruntime's contrib ops), 1 when
  /// it imports none.
  int64_t microsoftOpset = 1;
  unsigned resourceCounter = 0;

  // A decoder entry point (setDecoderEntry).
  const DecoderCache *decoder = nullptr;
  bool decoding = false;
  llvm::StringMap<TypedAttr> *weightCache = nullptr;
  /// Cached positions before the step (0 in prefill) and new positions.
  Value pastSize, seqSize, totalSize;
  SmallVector<Value> stateArgs, stateResults, pastValues;
  int64_t firstState = 0;
  bool imported = false;
};

/// If with a constant condition (an exporter's test of a static shape or
/// attribute, or a graph input frozen with --constant-input): the branch it
/// takes is imported in place, its outputs the node's. A condition known
/// only at run time runs both branches and selects (importRuntimeIf).
static LogicalResult importIf(NodeContext &ctx) {
  if (!ctx.input(0))
    return failure();
  auto cond = dyn_cast_or_null<DenseElementsAttr>(ctx.constantElements(0));
  if (!cond)
    return importRuntimeIf(ctx);
  if (cond.getNumElements() != 1 || !cond.getElementType().isInteger())
    return ctx.error() << "the If condition must be one bool, got "
                       << cond.getType();
  bool taken = !(*cond.getValues<APInt>().begin()).isZero();
  const char *name = taken ? "then_branch" : "else_branch";
  const kiln_onnx::GraphProto *branch = branchOf(ctx, name);
  if (!branch)
    return failure();
  const kiln_onnx::GraphProto &graph = *branch;
  GraphImporter &importer = ctx.getImporter();
  if (failed(importer.importSubgraph(ctx.b(), graph, ctx.getLoc())))
    return failure();
  SmallVector<Value> outputs;
  for (auto [i, output] : llvm::enumerate(graph.output())) {
    Value value = importer.lookup(output.name());
    if (!value)
      return ctx.error() << name << " output '" << output.name()
                         << "' is not computed by the branch";
    outputs.push_back(value);
    ctx.setOutputUnsigned(i, importer.isUnsigned(output.name()));
  }
  return ctx.setOutputs(outputs);
}

Value GraphImporter::importTensor(OpBuilder &b, Location loc,
                                  const kiln_onnx::TensorProto &tensor,
                                  StringRef what) {
  bool isUnsignedType = false;
  Type element = storageElementType(&context, tensor.data_type(), &isUnsignedType);
  if (isUnsignedType && !tensor.name().empty())
    markUnsigned(tensor.name());
  if (isNarrowType(tensor.data_type()) && !tensor.name().empty())
    markNarrow(tensor.name(), tensor.data_type());
  if (!element) {
    emitError(loc) << path << ": " << what << " '" << tensor.name()
                   << "' has unsupported " << dataTypeName(tensor.data_type());
    return {};
  }
  for (int64_t dim : tensor.dims())
    if (dim < 0) {
      emitError(loc) << path << ": " << what << " '" << tensor.name()
                     << "' has a negative dimension " << dim;
      return {};
    }
  auto type = RankedTensorType::get(tensorShape(tensor), element);
  // raw_data is used in place: the one copy of the bytes is into the IR.
  std::vector<char> converted;
  ArrayRef<char> bytes;
  bool inPlace = tensor.has_raw_data() &&
                 tensor.data_location() != kiln_onnx::TensorProto::EXTERNAL &&
                 !element.isInteger(1) &&
                 narrowTypeBits(tensor.data_type()) % 8 == 0 &&
                 static_cast<int64_t>(tensor.raw_data().size()) ==
                     type.getNumElements() * dataTypeSize(tensor.data_type());
  if (inPlace) {
    bytes = ArrayRef<char>(tensor.raw_data().data(), tensor.raw_data().size());
  } else {
    if (std::string error = readTensorBytes(tensor, baseDir, converted);
        !error.empty()) {
      emitError(loc) << path << ": " << error;
      return {};
    }
    bytes = converted;
  }
  std::string resourceName =
      tensor.name().empty() ? "constant_" + std::to_string(resourceCounter++)
                            : tensor.name();
  ElementsAttr attr =
      makeElementsAttr(type, bytes, resourceName, kInlineConstantLimit);
  return arith::ConstantOp::create(b, loc, cast<TypedAttr>(attr));
}

std::optional<RankedTensorType>
GraphImporter::importValueType(const kiln_onnx::ValueInfoProto &info,
                               StringRef role,
                               SmallVectorImpl<Attribute> *dimNames) {
  if (!info.type().has_tensor_type()) {
    fileError() << path << ": graph " << role << " '" << info.name()
                << "' is not a tensor; sequence, map and optional values are "
                   "not supported (only tensor inputs and outputs are)";
    return std::nullopt;
  }
  const auto &tensorType = info.type().tensor_type();
  bool isUnsignedType = false;
  Type element =
      storageElementType(&context, tensorType.elem_type(), &isUnsignedType);
  if (isUnsignedType)
    markUnsigned(info.name());
  if (isNarrowType(tensorType.elem_type()))
    markNarrow(info.name(), tensorType.elem_type());
  if (!element) {
    fileError() << path << ": graph " << role << " '" << info.name()
                << "' has unsupported " << dataTypeName(tensorType.elem_type());
    return std::nullopt;
  }
  if (!tensorType.has_shape()) {
    fileError() << path << ": graph " << role << " '" << info.name()
                << "' has no shape; Kiln needs the rank and dims of inputs";
    return std::nullopt;
  }
  SmallVector<int64_t> shape;
  for (const auto &dim : tensorType.shape().dim()) {
    if (dim.has_dim_value()) {
      if (dim.dim_value() < 0) {
        fileError() << path << ": graph " << role << " '" << info.name()
                    << "' has a negative dimension " << dim.dim_value();
        return std::nullopt;
      }
      shape.push_back(dim.dim_value());
      if (dimNames)
        dimNames->push_back(StringAttr::get(&context, ""));
      continue;
    }
    std::string name = dim.has_dim_param() ? dim.dim_param() : "";
    if (dimNames && !name.empty() && options.dimRanges.count(name)) {
      shape.push_back(ShapedType::kDynamic);
      dimNames->push_back(StringAttr::get(&context, name));
      continue;
    }
    if (dimNames)
      dimNames->push_back(StringAttr::get(&context, ""));
    auto it = options.dims.find(name);
    if (name.empty() || it == options.dims.end()) {
      fileError() << path << ": graph " << role << " '" << info.name()
                  << "' has a symbolic dim"
                  << (name.empty() ? std::string(" without a name")
                                   : " '" + name + "'")
                  << "; give it a value with --dim "
                  << (name.empty() ? "NAME" : name)
                  << "=VALUE, or bounds with --dim "
                  << (name.empty() ? "NAME" : name) << "=MIN..MAX";
      return std::nullopt;
    }
    shape.push_back(it->second);
  }
  return RankedTensorType::get(shape, element);
}

/// Ops that take unsigned integer inputs: those whose integer semantics do
/// not depend on signedness (data movement, add/sub/mul, bitwise,
/// equality) and those whose handlers pick unsigned arithmetic.
static bool takesUnsignedInputs(StringRef opType) {
  static const llvm::StringSet<> ops = {
      // Signedness-agnostic.
      "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
      "Concat", "Slice", "Gather", "GatherElements", "Expand", "Tile", "Split",
      "Where", "Equal", "Add", "Sub", "Mul", "Sum", "BitwiseAnd", "BitwiseOr",
      "BitwiseXor", "BitwiseNot", "Shape", "Size", "CumSum",
      // Unsigned-aware.
      "Div", "Mod", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Max",
      "Min", "Cast", "CastLike", "BitShift", "DequantizeLinear", "BitCast",
      "QuantizeLinear", "MaxPool", "Pow", "Compress", "MatMulInteger",
      "ConvInteger", "QLinearMatMul", "QLinearConv", "TopK", "QLinearAdd",
      "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat",
      "QLinearGlobalAveragePool", "QLinearAveragePool",
      // Passed through to a body, which tracks them.
      "Scan", "Loop",
      // com.microsoft: packed weights and zero points are uint8.
      "MatMulNBits"};
  return ops.contains(opType);
}

/// Ops that take narrow-typed inputs (held as i8): the conversions, and
/// the ops that move elements without reading them as numbers.
static bool takesNarrowInputs(StringRef opType) {
  static const llvm::StringSet<> ops = {
      "Cast", "CastLike", "DequantizeLinear", "QuantizeLinear", "BitCast",
      "Identity", "Scan", "Loop", "If",
      "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat",
      "Slice", "Gather", "Expand", "Tile", "Split", "Shape", "Size"};
  return ops.contains(opType);
}

/// Ops whose handlers build IR for inputs with symbolic dims (`?` dims
/// from `--dim NAME=MIN..MAX`). The others need static shapes: their shape
/// arithmetic happens at import time.
static bool takesSymbolicDims(StringRef opType) {
  static const llvm::StringSet<> ops = {
      // Elementwise (numpy broadcasting; a symbolic dim is never broadcast).
      "Identity", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum",
      "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Tanh", "Sigmoid",
      "Relu", "LeakyRelu", "Erf", "Gelu", "Cast", "Where", "Equal", "Less",
      "LessOrEqual", "GreaterOrEqual", "IsNaN", "IsInf",
      "Greater", "Not", "And", "Or", "Clip", "Softplus", "Swish", "HardSigmoid",
      "Floor", "Ceil", "Sin", "Cos",
      // Scans along an axis (symbolic or not) with sizes from the input.
      "CumSum",
      // Row-wise over static trailing dims (onnxruntime's norms too).
      "Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization",
      "SimplifiedLayerNormalization", "SkipLayerNormalization",
      "SkipSimplifiedLayerNormalization",
      // Symbolic rows of A over block-quantized weights.
      "MatMulNBits",
      "MatMul",
      "Gemm", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
      "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
      "ReduceLogSumExp",
      // Data movement whose sizes come from the operands.
      "Transpose", "Gather", "Unsqueeze", "Squeeze", "Split", "Trilu", "Concat",
      "GatherND",
      // Symbolic batch, query and key counts of 4-D Q, K and V (the
      // handler says which inputs and attributes it cannot take with them).
      "Attention"};
  return ops.contains(opType);
}

/// Inputs with symbolic dims reach only ops that handle them; the others
/// get an error naming the dim and the way out (a fixed value).
bool GraphImporter::checkSymbolicInputs(NodeContext &ctx) {
  const kiln_onnx::NodeProto &node = ctx.getNode();
  if (takesSymbolicDims(node.op_type()))
    return true;
  for (int i = 0; i < ctx.numInputs(); ++i) {
    if (!ctx.hasInput(i) || !lookup(node.input(i)))
      continue;
    auto type = dyn_cast<RankedTensorType>(lookup(node.input(i)).getType());
    if (!type || type.hasStaticShape())
      continue;
    if (decoder) {
      // Generation needs the sequence and the cached length symbolic.
      ctx.error() << "input #" << i << " '" << node.input(i)
                  << "' has type " << type << ", with a dim that follows "
                  << decoder->seqDim << " or " << decoder->pastDim
                  << "; op '" << node.op_type()
                  << "' does not take symbolic dims yet, so this decoder "
                     "cannot be compiled for generation (--max-seq-len); "
                     "compile it without --max-seq-len, its dims fixed "
                     "with --dim NAME=VALUE (see docs/onnx-coverage.md)";
      return false;
    }
    std::string names;
    for (const auto &range : options.dimRanges)
      names += (names.empty() ? "" : ", ") + range.getKey().str();
    ctx.error() << "input #" << i << " '" << node.input(i) << "' has type "
                << type << ", with a symbolic dim (" << names
                << "); op '" << node.op_type()
                << "' is not supported with symbolic dims yet: give each "
                   "dim a fixed value with --dim NAME=VALUE (see "
                   "docs/onnx-coverage.md)";
    return false;
  }
  return true;
}

/// Marks the node's unsigned outputs: as the handler said, else those of an
/// unsigned input's element type (Shape and Size give signed int64).
void GraphImporter::propagateSignedness(NodeContext &ctx) {
  const kiln_onnx::NodeProto &node = ctx.getNode();
  bool indexOutputs = node.op_type() == "Shape" || node.op_type() == "Size";
  for (int i = 0; i < node.output_size(); ++i) {
    const std::string &output = node.output(i);
    Value value = output.empty() ? Value() : lookup(output);
    if (!value)
      continue;
    auto explicitSign = ctx.getOutputSignedness().find(i);
    if (explicitSign != ctx.getOutputSignedness().end()) {
      if (explicitSign->second)
        markUnsigned(output);
      continue;
    }
    Type element = getElementTypeOrSelf(value.getType());
    if (indexOutputs || !element.isInteger() || element.isInteger(1))
      continue;
    for (int j = 0; j < ctx.numInputs(); ++j)
      if (ctx.hasInput(j) && ctx.inputIsUnsigned(j) &&
          ctx.inputType(j).getElementType() == element) {
        markUnsigned(output);
        break;
      }
  }
}

/// Marks the node's narrow outputs: as the handler said, else (data
/// movement) the narrow type of its first narrow input, for i8 outputs.
void GraphImporter::propagateNarrowTypes(NodeContext &ctx) {
  const kiln_onnx::NodeProto &node = ctx.getNode();
  int32_t moved = 0;
  for (int j = 0; j < ctx.numInputs() && !moved; ++j)
    moved = ctx.inputNarrowType(j);
  for (int i = 0; i < node.output_size(); ++i) {
    const std::string &output = node.output(i);
    Value value = output.empty() ? Value() : lookup(output);
    if (!value)
      continue;
    auto explicitType = ctx.getOutputNarrowTypes().find(i);
    if (explicitType != ctx.getOutputNarrowTypes().end())
      markNarrow(output, explicitType->second);
    else if (getElementTypeOrSelf(value.getType()).isInteger(8))
      markNarrow(output, moved);
  }
}

LogicalResult GraphImporter::importNode(OpBuilder &b,
                                        const kiln_onnx::NodeProto &node,
                                        int nodeIndex) {
  std::string name = node.name().empty()
                         ? node.op_type() + "_" + std::to_string(nodeIndex)
                         : node.name();
  Location loc = NameLoc::get(StringAttr::get(&context, name),
                              FileLineColLoc::get(&context, path, 0, 0));
  if (decoder) {
    bool handled = false;
    if (failed(importCacheNode(b, node, loc, handled)))
      return failure();
    if (handled)
      return success();
  }
  std::string domain = node.domain().empty() ? "ai.onnx" : node.domain();
  if (domain != "ai.onnx" && domain != kMicrosoftDomain) {
    emitError(loc) << path << ": node '" << name << "' (op '" << node.op_type()
                   << "', domain '" << domain << "'): ops of domain '"
                   << domain << "' are not supported; Kiln imports the "
                   << "ai.onnx domain and onnxruntime's com.microsoft ops "
                   << "(docs/onnx-coverage.md)";
    return failure();
  }
  bool microsoft = domain == kMicrosoftDomain;
  int64_t nodeOpset = microsoft ? microsoftOpset : opset;
  int64_t oldest = 0;
  const OpHandler *handler = getRegistry().lookup(
      microsoft ? std::string(kMicrosoftDomain) + "." + node.op_type()
                : node.op_type(),
      nodeOpset, &oldest);
  if (!handler && microsoft) {
    emitError(loc) << path << ": node '" << name << "' (op '"
                   << node.op_type() << "', domain 'com.microsoft', opset "
                   << nodeOpset << "): "
                   << (oldest ? "this version of the op is not supported"
                              : "this onnxruntime contrib op is not "
                                "supported; docs/onnx-coverage.md lists "
                                "the com.microsoft ops Kiln imports");
    return failure();
  }
  if (!handler) {
    InFlightDiagnostic diag = emitError(loc);
    diag << path << ": node '" << name << "' (op '" << node.op_type()
         << "', domain 'ai.onnx', opset " << opset << "): ";
    if (!opVersions().versions.count(node.op_type()))
      diag << "'" << node.op_type() << "' is not an ai.onnx op; check the "
           << "op type and the model's opset imports";
    else if (oldest)
      diag << "op '" << node.op_type() << "' is supported from opset "
           << oldest << " on; re-export the model with a newer opset";
    else
      diag << "unsupported op '" << node.op_type()
           << "'; see docs/onnx-coverage.md for the supported ops";
    return failure();
  }
  NodeContext ctx(*this, node, nodeOpset, b, loc);
  // Integers are signless in the IR: only ops whose handlers are the same
  // for unsigned values, or pick unsigned arithmetic, take them.
  for (int i = 0; i < ctx.numInputs(); ++i)
    if (ctx.hasInput(i) && ctx.inputIsUnsigned(i) &&
        !takesUnsignedInputs(node.op_type())) {
      emitError(loc) << path << ": node '" << name << "' (op '"
                     << node.op_type() << "', opset " << opset << "): input #"
                     << i << " '" << node.input(i)
                     << "' is an unsigned integer; unsigned inputs are not "
                        "supported by this op yet (see docs/onnx-coverage.md)";
      return failure();
    }
  // Narrow types (held as i8) reach only the ops that convert them or move
  // their bytes.
  for (int i = 0; i < ctx.numInputs(); ++i)
    if (int32_t narrow = ctx.inputNarrowType(i);
        narrow && !takesNarrowInputs(node.op_type())) {
      emitError(loc) << path << ": node '" << name << "' (op '"
                     << node.op_type() << "', opset " << opset << "): input #"
                     << i << " '" << node.input(i) << "' is "
                     << dataTypeName(narrow)
                     << ", which this op does not take: Cast it to a wider "
                        "type first (Cast, CastLike, DequantizeLinear and "
                        "the data movement ops take the narrow types)";
      return failure();
    }
  // Shape arithmetic on symbolic dims, and the ops that take its results
  // as shapes (ai.onnx ops alone).
  if (symbolic && !microsoft) {
    bool handled = false;
    if (failed(importSymbolicNode(ctx, *symbolic, handled)))
      return failure();
    if (handled) {
      propagateSignedness(ctx);
      propagateNarrowTypes(ctx);
      return success();
    }
  }
  if (!checkSymbolicInputs(ctx))
    return failure();
  if (failed((*handler)(ctx)))
    return failure();
  propagateSignedness(ctx);
  propagateNarrowTypes(ctx);
  // Small all-constant results (shape arithmetic) become constants, so that
  // the nodes reading them see constants.
  for (const std::string &output : node.output()) {
    if (output.empty())
      continue;
    Value value = lookup(output);
    Value folded = value ? foldToConstant(b, value) : value;
    if (folded != value)
      bind(output, folded);
  }
  return success();
}

OwningOpRef<ModuleOp> GraphImporter::import(kiln_onnx::ModelProto &model,
                                             ModuleOp into) {
  for (const auto &entry : model.opset_import()) {
    if (entry.domain().empty() || entry.domain() == "ai.onnx")
      opset = entry.version();
    else if (entry.domain() == kMicrosoftDomain)
      microsoftOpset = entry.version();
  }
  if (opset == 0) {
    InFlightDiagnostic diag = fileError();
    diag << path << ": the model imports no ai.onnx opset";
    for (const auto &entry : model.opset_import())
      diag << (&entry == &model.opset_import(0) ? " (only '" : "', '")
           << entry.domain();
    if (model.opset_import_size())
      diag << "')";
    diag << "; models of other domains alone (ai.onnx.ml, training) are "
            "not supported: Kiln imports the ai.onnx domain and onnxruntime's "
            "com.microsoft ops";
    return {};
  }
  if (opset < 7 || opset > maxSupportedOpset()) {
    fileError() << path << ": ai.onnx opset " << opset
                << " is not supported; Kiln supports opsets 7 to "
                << maxSupportedOpset();
    return {};
  }
  const kiln_onnx::GraphProto &graph = model.graph();
  Location fileLoc = FileLineColLoc::get(&context, path, 0, 0);
  OwningOpRef<ModuleOp> module;
  if (!into) {
    module = ModuleOp::create(fileLoc);
    into = *module;
  }
  OpBuilder b(into.getBodyRegion());
  b.setInsertionPointToEnd(into.getBody());

  llvm::StringSet<> initializerNames;
  for (const auto &init : graph.initializer())
    initializerNames.insert(init.name());

  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  SmallVector<ArrayAttr> argDimNames;
  llvm::StringSet<> usedRanges;
  // Inputs frozen to constants, imported like initializers below.
  std::vector<kiln_onnx::TensorProto> frozen;
  llvm::StringSet<> graphInputs;
  if (decoder && failed(buildDecoderArgs(b, fileLoc, argTypes)))
    return {};
  for (const auto &input : graph.input()) {
    graphInputs.insert(input.name());
    if (decoder)
      continue; // the entry point's own arguments, or values it computes
    if (initializerNames.contains(input.name()))
      continue; // an initializer listed as an input (IR version < 4)
    SmallVector<Attribute> dimNames;
    auto type = importValueType(input, "input", &dimNames);
    if (!type)
      return {};
    auto constant = options.constantInputs.find(input.name());
    if (constant != options.constantInputs.end()) {
      auto buffer = llvm::MemoryBuffer::getFile(constant->second);
      kiln_onnx::TensorProto tensor;
      if (!buffer || !tensor.ParseFromArray((*buffer)->getBufferStart(),
                                            (*buffer)->getBufferSize())) {
        fileError() << path << ": --constant-input " << input.name()
                    << ": cannot read an ONNX TensorProto from '"
                    << constant->second << "'";
        return {};
      }
      tensor.set_name(input.name());
      bool frozenUnsigned = false;
      Type element =
          storageElementType(&context, tensor.data_type(), &frozenUnsigned);
      auto shape = tensorShape(tensor);
      if (element != type->getElementType() ||
          frozenUnsigned != isUnsigned(input.name()) ||
          (isNarrowType(tensor.data_type()) ? tensor.data_type() : 0) !=
              narrowType(input.name()) ||
          static_cast<int64_t>(shape.size()) != type->getRank() ||
          !llvm::all_of(llvm::zip(shape, type->getShape()), [](auto p) {
            return std::get<1>(p) == ShapedType::kDynamic ||
                   std::get<0>(p) == std::get<1>(p);
          })) {
        fileError() << path << ": --constant-input " << input.name()
                    << ": the tensor in '" << constant->second << "' is "
                    << dataTypeName(tensor.data_type()) << "["
                    << llvm::make_range(shape.begin(), shape.end())
                    << "] but the input is " << *type;
        return {};
      }
      frozen.push_back(std::move(tensor));
      continue;
    }
    argTypes.push_back(*type);
    argNames.push_back(input.name());
    argDimNames.push_back(type->hasStaticShape() ? ArrayAttr()
                                                 : b.getArrayAttr(dimNames));
    for (Attribute name : dimNames)
      if (!cast<StringAttr>(name).getValue().empty())
        usedRanges.insert(cast<StringAttr>(name).getValue());
  }
  for (const auto &range : options.dimRanges)
    if (!usedRanges.contains(range.getKey())) {
      fileError() << path << ": --dim " << range.getKey().str() << "="
                  << range.getValue().first << ".." << range.getValue().second
                  << ": no graph input has a dim named '"
                  << range.getKey().str() << "'";
      return {};
    }
  for (const auto &entry : options.constantInputs)
    if (!graphInputs.contains(entry.getKey())) {
      fileError() << path << ": --constant-input " << entry.getKey().str()
                  << ": the graph has no input of that name";
      return {};
    }
  auto func = func::FuncOp::create(
      b, fileLoc,
      decoder ? (decoding ? "decode" : "prefill") : options.entryName,
      b.getFunctionType(argTypes, {}));
  Block *entry = func.addEntryBlock();
  for (auto [i, name] : llvm::enumerate(argNames)) {
    func.setArgAttr(i, "kiln.name", b.getStringAttr(name));
    if (isUnsigned(name))
      func.setArgAttr(i, "kiln.unsigned", b.getUnitAttr());
    if (int32_t narrow = narrowType(name))
      func.setArgAttr(i, "kiln.dtype", b.getStringAttr(narrowDTypeName(narrow)));
    if (argDimNames[i])
      func.setArgAttr(i, "kiln.dims", argDimNames[i]);
    bind(name, entry->getArgument(i));
  }
  if (!usedRanges.empty()) {
    // The bounds of the symbolic dims: {name = array<i64: min, max>}.
    SmallVector<NamedAttribute> bounds;
    for (const auto &range : options.dimRanges)
      bounds.push_back(b.getNamedAttr(
          range.getKey(), b.getDenseI64ArrayAttr({range.getValue().first,
                                                  range.getValue().second})));
    func->setAttr("kiln.dim_bounds", b.getDictionaryAttr(bounds));
    symbolic.emplace(options.dimRanges);
  }
  if (decoder)
    setDecoderArgAttrs(func);
  b.setInsertionPointToStart(entry);
  if (symbolic)
    symbolic->beginFunction(func, b);
  if (decoder && failed(bindDecoderInputs(b, func)))
    return {};
  for (auto &init : *model.mutable_graph()->mutable_initializer()) {
    Value value;
    // A second entry point of the same graph takes the first one's weights.
    if (auto it = weightCache ? weightCache->find(init.name())
                              : llvm::StringMap<TypedAttr>::iterator();
        weightCache && it != weightCache->end()) {
      bool isUnsignedType = false;
      (void)storageElementType(&context, init.data_type(), &isUnsignedType);
      if (isUnsignedType)
        markUnsigned(init.name());
      if (isNarrowType(init.data_type()))
        markNarrow(init.name(), init.data_type());
      value = arith::ConstantOp::create(b, fileLoc, it->second);
    } else {
      value = importTensor(b, fileLoc, init, "initializer");
      if (!value)
        return {};
      if (weightCache)
        (*weightCache)[init.name()] =
            value.getDefiningOp<arith::ConstantOp>().getValue();
    }
    bind(init.name(), value);
    // The IR has its own copy now: a model's weights are held once, not
    // twice, for the rest of the import.
    std::string().swap(*init.mutable_raw_data());
  }
  for (const auto &tensor : frozen) {
    Value value = importTensor(b, fileLoc, tensor, "constant input");
    if (!value)
      return {};
    bind(tensor.name(), value);
  }
  for (int i = 0; i < graph.node_size(); ++i)
    if (failed(importNode(b, graph.node(i), i)))
      return {};

  SmallVector<Value> results;
  // A decoder entry point returns the logits and the written cache.
  int outputs = decoder ? 1 : graph.output_size();
  for (const auto &output : llvm::make_range(graph.output().begin(),
                                             graph.output().begin() + outputs)) {
    Value value = lookup(output.name());
    if (!value) {
      fileError() << path << ": graph output '" << output.name()
                  << "' is not produced by any node";
      return {};
    }
    results.push_back(value);
  }
  for (auto [i, written] : llvm::enumerate(stateResults)) {
    if (!written) {
      fileError() << path << ": the cache output '"
                  << decoder->pairs[i].present << "' is not computed";
      return {};
    }
    results.push_back(written);
  }
  func::ReturnOp::create(b, fileLoc, results);
  func.setType(b.getFunctionType(argTypes, ValueRange(results).getTypes()));
  for (size_t i = 0; i < stateResults.size(); ++i)
    func.setResultAttr(outputs + i, "kiln.state",
                       func.getArgAttr(firstState + i, "kiln.state"));
  for (auto [i, output] : llvm::enumerate(llvm::make_range(
           graph.output().begin(), graph.output().begin() + outputs))) {
    func.setResultAttr(i, "kiln.name", b.getStringAttr(output.name()));
    // The declared type decides an output's dtype.
    bool declaredUnsigned = false;
    int32_t declared = output.type().has_tensor_type()
                           ? output.type().tensor_type().elem_type()
                           : 0;
    if (declared)
      (void)toElementType(&context, declared, &declaredUnsigned);
    if (declaredUnsigned || isUnsigned(output.name()))
      func.setResultAttr(i, "kiln.unsigned", b.getUnitAttr());
    // A narrow output holds what its declared type says.
    int32_t narrow = narrowType(output.name());
    if ((isNarrowType(declared) || narrow) && declared != narrow) {
      fileError() << path << ": graph output '" << output.name()
                  << "' is declared " << dataTypeName(declared)
                  << " but its value is "
                  << (narrow ? dataTypeName(narrow)
                             : std::string("not of that narrow type"));
      return {};
    }
    if (narrow)
      func.setResultAttr(i, "kiln.dtype",
                         b.getStringAttr(narrowDTypeName(narrow)));
  }
  if (failed(verify(into)))
    return {};
  imported = true;
  return module;
}

LogicalResult GraphImporter::buildDecoderArgs(OpBuilder &b, Location loc,
                                              SmallVectorImpl<Type> &argTypes) {
  int64_t batch = options.decoderBatch, n = options.decoderMaxSequence;
  // input_ids [batch, sequence] (decode: one token per row), decode's
  // `past` carrier (its first dim counts the cached positions; no bytes),
  // a batch's left padding per row, then one state per cache tensor.
  argTypes.push_back(RankedTensorType::get(
      {batch, decoding ? 1 : ShapedType::kDynamic}, b.getI64Type()));
  if (decoding)
    argTypes.push_back(
        RankedTensorType::get({ShapedType::kDynamic, 0}, b.getIntegerType(8)));
  if (batch > 1)
    argTypes.push_back(RankedTensorType::get({batch}, b.getI64Type()));
  firstState = argTypes.size();
  for (const DecoderCache::Pair &pair : decoder->pairs) {
    bool isUnsignedType = false;
    Type element = storageElementType(&context, pair.elemType, &isUnsignedType);
    if (!element)
      return emitError(loc) << path << ": the cache input '" << pair.past
                            << "' has unsupported "
                            << dataTypeName(pair.elemType);
    argTypes.push_back(RankedTensorType::get(
        {batch, pair.heads, n, pair.headDim}, element));
  }
  stateResults.assign(decoder->pairs.size(), Value());
  return success();
}

void GraphImporter::setDecoderArgAttrs(func::FuncOp func) {
  Builder b(&context);
  int64_t batch = options.decoderBatch, n = options.decoderMaxSequence;
  llvm::StringMap<std::pair<int64_t, int64_t>> bounds;
  func.setArgAttr(0, "kiln.name", b.getStringAttr("input_ids"));
  if (decoding) {
    func.setArgAttr(1, "kiln.name", b.getStringAttr("past"));
    func.setArgAttr(1, "kiln.dims",
                    b.getArrayAttr({b.getStringAttr(decoder->pastDim),
                                    b.getStringAttr("")}));
    bounds[decoder->pastDim] = {1, n - 1};
  } else {
    func.setArgAttr(0, "kiln.dims",
                    b.getArrayAttr({b.getStringAttr(""),
                                    b.getStringAttr(decoder->seqDim)}));
    bounds[decoder->seqDim] = {1, n};
  }
  if (batch > 1)
    func.setArgAttr(decoding ? 2 : 1, "kiln.name", b.getStringAttr("padding"));
  for (auto [i, pair] : llvm::enumerate(decoder->pairs))
    func.setArgAttr(firstState + i, "kiln.state", b.getStringAttr(pair.past));
  SmallVector<NamedAttribute> named;
  for (const auto &bound : bounds)
    named.push_back(b.getNamedAttr(
        bound.getKey(), b.getDenseI64ArrayAttr({bound.getValue().first,
                                                bound.getValue().second})));
  func->setAttr("kiln.dim_bounds", b.getDictionaryAttr(named));
  symbolic.emplace(bounds);
}

LogicalResult GraphImporter::bindDecoderInputs(OpBuilder &b,
                                               func::FuncOp func) {
  Block &entry = func.getBody().front();
  Location loc = func.getLoc();
  int64_t batch = options.decoderBatch;
  bind("input_ids", entry.getArgument(0));
  SymPoly past = decoding ? SymPoly::symbol(decoder->pastDim)
                          : SymPoly::constant(0);
  SymPoly seq = decoding ? SymPoly::constant(1)
                         : SymPoly::symbol(decoder->seqDim);
  pastSize = symbolic->materialize(b, loc, past);
  seqSize = symbolic->materialize(b, loc, seq);
  totalSize = symbolic->materialize(b, loc, past + seq);
  Value paddingArg =
      batch > 1 ? entry.getArgument(decoding ? 2 : 1) : Value();
  // Row `row`'s count of left-padding tokens.
  auto padOf = [&](OpBuilder &nb, Location l, Value row) -> Value {
    if (!paddingArg)
      return indexConstant(nb, l, 0);
    Value pad = tensor::ExtractOp::create(nb, l, paddingArg, ValueRange{row});
    return arith::IndexCastOp::create(nb, l, nb.getIndexType(), pad);
  };
  if (!decoder->mask.empty()) {
    // 1 over every cached and new position from the row's first token on,
    // 0 over its left padding: [batch, past + sequence].
    bool isUnsignedType = false;
    Type element =
        storageElementType(&context, decoder->maskType, &isUnsignedType);
    if (!element || !(element.isIntOrFloat()))
      return emitError(loc) << path << ": the input 'attention_mask' has "
                            << "unsupported " << dataTypeName(decoder->maskType);
    bind(decoder->mask,
         buildIndexed(
             b, loc, {batch, ShapedType::kDynamic}, element,
             [&](OpBuilder &nb, Location l, ValueRange iv) -> Value {
               Value keep = arith::CmpIOp::create(
                   nb, l, arith::CmpIPredicate::sge, iv[1], padOf(nb, l, iv[0]));
               return arith::SelectOp::create(
                   nb, l, keep, scalarConstant(nb, l, element, 1),
                   scalarConstant(nb, l, element, 0));
             },
             ValueRange{totalSize}));
  }
  if (!decoder->positions.empty()) {
    // Positions count from the row's first token, as transformers' do from
    // an attention mask (a padding position's is 0: nothing reads it).
    bool isUnsignedType = false;
    Type element =
        storageElementType(&context, decoder->positionsType, &isUnsignedType);
    if (!element || !element.isInteger() || element.isInteger(1))
      return emitError(loc) << path << ": the input 'position_ids' has "
                            << "unsupported "
                            << dataTypeName(decoder->positionsType);
    SmallVector<Value> sizes;
    if (!decoding)
      sizes.push_back(seqSize);
    bind(decoder->positions,
         buildIndexed(
             b, loc, {batch, decoding ? 1 : ShapedType::kDynamic}, element,
             [&](OpBuilder &nb, Location l, ValueRange iv) -> Value {
               Value at = arith::AddIOp::create(nb, l, pastSize, iv[1]);
               at = arith::SubIOp::create(nb, l, at, padOf(nb, l, iv[0]));
               at = arith::MaxSIOp::create(nb, l, at, indexConstant(nb, l, 0));
               return arith::IndexCastOp::create(nb, l, element, at);
             },
             sizes));
  }
  // The past: the cache's first `past` positions (decode), none (prefill).
  for (auto [i, pair] : llvm::enumerate(decoder->pairs)) {
    Value state = entry.getArgument(firstState + i);
    stateArgs.push_back(state);
    SmallVector<OpFoldResult> offsets(4, b.getIndexAttr(0)),
        strides(4, b.getIndexAttr(1));
    SmallVector<OpFoldResult> sizes = {
        b.getIndexAttr(batch), b.getIndexAttr(pair.heads),
        decoding ? OpFoldResult(pastSize) : OpFoldResult(b.getIndexAttr(0)),
        b.getIndexAttr(pair.headDim)};
    Value slice =
        tensor::ExtractSliceOp::create(b, loc, state, offsets, sizes, strides);
    pastValues.push_back(slice);
    bind(pair.past, slice);
  }
  return success();
}

LogicalResult GraphImporter::importCachedAttention(
    OpBuilder &b, const kiln_onnx::NodeProto &node, Location loc) {
  size_t key = decoder->presentNames.lookup(node.output(1));
  size_t value = decoder->presentNames.lookup(node.output(2));
  auto fail = [&]() {
    return emitError(loc) << path << ": node '"
                          << (node.name().empty() ? node.output(0) : node.name())
                          << "' (GroupQueryAttention): ";
  };
  // onnxruntime's seqlens_k semantics (each row's own length) do not fit
  // rows left-padded to one end.
  if (options.decoderBatch > 1)
    return fail() << "a decoder whose attention is GroupQueryAttention is "
                     "compiled for generation with a batch of one (not "
                     "--max-batch " << options.decoderBatch << ")";
  if (node.input_size() < 5 || lookup(node.input(3)) != pastValues[key] ||
      lookup(node.input(4)) != pastValues[value])
    return fail() << "its past key and value are not the cache inputs of "
                     "its present outputs";
  NodeContext ctx(*this, node, microsoftOpset, b, loc);
  CacheStep step;
  step.keyState = stateArgs[key];
  step.valueState = stateArgs[value];
  step.past = pastSize;
  step.seq = seqSize;
  step.total = totalSize;
  step.prefill = !decoding;
  FailureOr<CachedAttention> out = importCachedGroupQueryAttention(ctx, step);
  if (failed(out))
    return failure();
  stateResults[key] = out->key;
  stateResults[value] = out->value;
  bind(node.output(0), out->output);
  return success();
}

LogicalResult GraphImporter::importCacheNode(OpBuilder &b,
                                             const kiln_onnx::NodeProto &node,
                                             Location loc, bool &handled) {
  handled = false;
  if (node.output_size() < 1)
    return success();
  const std::string &out = node.output(0);
  // An alias of a past input (Identity, one-input Concat) is the past.
  if (decoder->pastNames.count(out)) {
    handled = true;
    bind(out, lookup(node.input(0)));
    return success();
  }
  if (node.op_type() == "GroupQueryAttention" && node.output_size() >= 3 &&
      decoder->presentNames.count(node.output(1)) &&
      decoder->presentNames.count(node.output(2))) {
    handled = true;
    return importCachedAttention(b, node, loc);
  }
  auto present = decoder->presentNames.find(out);
  if (present == decoder->presentNames.end())
    return success();
  handled = true;
  size_t i = present->second;
  const DecoderCache::Pair &pair = decoder->pairs[i];
  Value state = stateArgs[i];
  auto stateType = cast<RankedTensorType>(state.getType());
  Value fresh = node.input_size() == 2 ? lookup(node.input(1)) : Value();
  auto type = fresh ? dyn_cast<RankedTensorType>(fresh.getType()) : nullptr;
  if (!type || type.getRank() != 4 ||
      type.getShape()[0] != stateType.getShape()[0] ||
      type.getShape()[1] != pair.heads || type.getShape()[3] != pair.headDim ||
      type.getElementType() != stateType.getElementType() ||
      lookup(node.input(0)) != pastValues[i])
    return emitError(loc) << path << ": the cache output '" << out
                          << "' is not the past '" << pair.past
                          << "' and new positions of the cache's type "
                          << stateType << " (got "
                          << (type ? Type(type) : Type()) << ")";
  // The step's positions are written into the cache at `past`; attention
  // reads the cache's first past + new positions in place (prefill: the
  // new positions themselves).
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0),
                                       pastSize, b.getIndexAttr(0)};
  SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, fresh);
  Value written = tensor::InsertSliceOp::create(b, loc, fresh, state, offsets,
                                                sizes, strides);
  stateResults[i] = written;
  if (!decoding) {
    bind(out, fresh);
    return success();
  }
  sizes[2] = totalSize;
  SmallVector<OpFoldResult> zeros(4, b.getIndexAttr(0));
  bind(out, tensor::ExtractSliceOp::create(b, loc, written, zeros, sizes,
                                           strides));
  return success();
}

//===----------------------------------------------------------------------===//
// NodeContext
//===----------------------------------------------------------------------===//

Value NodeContext::input(int i) {
  if (!hasInput(i)) {
    error() << "required input #" << i << " is missing";
    return {};
  }
  Value value = importer.lookup(node.input(i));
  if (!value)
    error() << "input #" << i << " '" << node.input(i)
            << "' is not produced by any earlier node, initializer or graph "
               "input (the graph must be topologically sorted)";
  return value;
}

RankedTensorType NodeContext::inputType(int i) {
  return cast<RankedTensorType>(importer.lookup(node.input(i)).getType());
}

std::optional<bool> NodeContext::sameSize(Value a, unsigned da, Value b,
                                          unsigned db) {
  SymbolicShapes *shapes = importer.getSymbolicShapes();
  if (!shapes)
    return std::nullopt;
  FailureOr<SymPoly> pa = shapes->dimPoly(a, da), pb = shapes->dimPoly(b, db);
  if (failed(pa) || failed(pb))
    return std::nullopt;
  return *pa == *pb;
}

ElementsAttr NodeContext::constantElements(int i) {
  if (!hasInput(i))
    return {};
  Value value = importer.lookup(node.input(i));
  if (!value)
    return {};
  auto constant = value.getDefiningOp<arith::ConstantOp>();
  return constant ? dyn_cast<ElementsAttr>(constant.getValue())
                  : ElementsAttr();
}

std::optional<std::vector<int64_t>> NodeContext::constantInts(int i) {
  if (!input(i))
    return std::nullopt;
  ElementsAttr attr = constantElements(i);
  if (!attr || !attr.getElementType().isInteger()) {
    error() << "input #" << i << " '" << node.input(i)
            << "' must be a constant integer tensor (an initializer or a "
               "Constant node, or a graph input frozen with "
               "--constant-input); computed shapes are not supported yet"
            << freezeHint(i);
    return std::nullopt;
  }
  std::vector<int64_t> values;
  for (APInt v : attr.getValues<APInt>())
    values.push_back(v.getSExtValue());
  return values;
}

const kiln_onnx::AttributeProto *NodeContext::attr(StringRef name) const {
  for (const auto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

bool NodeContext::hasAttr(StringRef name) const { return attr(name); }

int64_t NodeContext::intAttr(StringRef name, int64_t defaultValue) const {
  const auto *a = attr(name);
  return a ? a->i() : defaultValue;
}

float NodeContext::floatAttr(StringRef name, float defaultValue) const {
  const auto *a = attr(name);
  return a ? a->f() : defaultValue;
}

std::optional<std::vector<int64_t>>
NodeContext::intsAttr(StringRef name) const {
  const auto *a = attr(name);
  if (!a)
    return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

std::string NodeContext::freezeHint(int i) {
  if (!hasInput(i))
    return "";
  Value v = input(i);
  if (!v)
    return "";
  // The slice of `v`: its operands' definitions, and what the regions of
  // those read from outside them, down to the graph's inputs.
  SmallVector<Value> work = {v};
  llvm::DenseSet<Value> seen;
  llvm::SetVector<StringRef> names;
  while (!work.empty()) {
    Value x = work.pop_back_val();
    if (!seen.insert(x).second)
      continue;
    if (seen.size() > 10000)
      return "";
    if (auto arg = dyn_cast<BlockArgument>(x)) {
      auto func = dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp());
      auto name = func ? func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                           "kiln.name")
                       : StringAttr();
      if (!name)
        return "";
      names.insert(name.getValue());
      continue;
    }
    Operation *def = x.getDefiningOp();
    def->walk([&](Operation *inner) {
      for (Value operand : inner->getOperands())
        if (inner == def || !def->isAncestor(operand.getParentBlock()
                                                  ->getParentOp()))
          work.push_back(operand);
    });
  }
  if (names.empty())
    return "";
  std::string quoted, flags;
  for (auto [k, name] : llvm::enumerate(names)) {
    quoted += (k == 0 ? "" : k + 1 == names.size() ? " and " : ", ") +
              ("'" + name + "'").str();
    flags += (" --constant-input " + name + "=@FILE").str();
  }
  bool one = names.size() == 1;
  return "; it is computed from graph input" + std::string(one ? " " : "s ") +
         quoted + " alone: freeze " + (one ? "it" : "them") + " with" + flags;
}

InFlightDiagnostic NodeContext::error() {
  std::string name = node.name().empty() ? "<unnamed>" : node.name();
  return emitError(loc) << importer.getPath() << ": node '" << name
                        << "' (op '" << node.op_type() << "', opset " << opset
                        << "): ";
}

LogicalResult NodeContext::setOutputs(ValueRange values) {
  if (static_cast<int>(values.size()) < node.output_size()) {
    for (int i = values.size(); i < node.output_size(); ++i)
      if (!node.output(i).empty())
        return error() << "optional output #" << i << " '" << node.output(i)
                       << "' is not supported";
  }
  for (int i = 0; i < node.output_size() && i < (int)values.size(); ++i)
    if (!node.output(i).empty())
      importer.bind(node.output(i), values[i]);
  return success();
}

Value importConstantTensor(NodeContext &ctx,
                           const kiln_onnx::TensorProto &tensor) {
  bool isUnsignedType = false;
  (void)toElementType(ctx.b().getContext(), tensor.data_type(), &isUnsignedType);
  ctx.setOutputUnsigned(0, isUnsignedType);
  if (isNarrowType(tensor.data_type()))
    ctx.setOutputNarrowType(0, tensor.data_type());
  return ctx.getImporter().importTensor(ctx.b(), ctx.getLoc(), tensor,
                                        "Constant");
}

FailureOr<SmallVector<NodeContext::BodyValue>>
NodeContext::importBody(const kiln_onnx::GraphProto &body,
                        ArrayRef<BodyValue> inputs) {
  if (body.input_size() != static_cast<int>(inputs.size()))
    return error() << "the body takes " << body.input_size()
                   << " inputs, the node gives it " << inputs.size();
  return importer.importBody(builder, body, inputs, loc);
}

bool NodeContext::inputIsUnsigned(int i) const {
  return hasInput(i) && importer.isUnsigned(node.input(i));
}

int32_t NodeContext::inputNarrowType(int i) const {
  return hasInput(i) ? importer.narrowType(node.input(i)) : 0;
}

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

OwningOpRef<ModuleOp> importModelFile(MLIRContext &context, StringRef path,
                                      const ImportOptions &options) {
  context.loadDialect<KilnDialect, func::FuncDialect, arith::ArithDialect,
                      linalg::LinalgDialect, tensor::TensorDialect,
                      math::MathDialect>();
  Location fileLoc = FileLineColLoc::get(&context, path, 0, 0);
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer) {
    emitError(fileLoc) << "cannot read model file '" << path
                       << "': " << buffer.getError().message();
    return {};
  }
  kiln_onnx::ModelProto model;
  google::protobuf::io::CodedInputStream stream(
      reinterpret_cast<const uint8_t *>((*buffer)->getBufferStart()),
      static_cast<int>((*buffer)->getBufferSize()));
  stream.SetTotalBytesLimit(INT32_MAX);
  if ((*buffer)->getBufferSize() > INT32_MAX ||
      !model.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    emitError(fileLoc) << "'" << path
                       << "' is not a valid ONNX model (protobuf parsing "
                          "failed); check that it is an .onnx file and not "
                          "truncated";
    return {};
  }
  // The parsed model holds its own copy of every byte; the file's pages
  // need not stay resident through the import.
  buffer->reset();
  if (!model.has_graph()) {
    emitError(fileLoc) << "'" << path << "' holds no graph";
    return {};
  }
  if (options.decoderMaxSequence > 0) {
    std::string why;
    std::optional<DecoderCache> cache = findDecoderCache(model.graph(), why);
    if (!cache) {
      emitError(fileLoc) << path << ": --max-seq-len compiles a decoder "
                         << "exported with its KV cache (past_key_values.* "
                         << "inputs, present.* outputs) for generation, but "
                         << why << "; compile other models without "
                         << "--max-seq-len (bound their dims with --dim "
                         << "NAME=MIN..MAX)";
      return {};
    }
    if (cache->positionRows &&
        options.decoderMaxSequence > cache->positionRows) {
      emitError(fileLoc) << path << ": --max-seq-len "
                         << options.decoderMaxSequence << " exceeds the "
                         << cache->positionRows << " positions of the "
                         << "model's position table '" << cache->positionTable
                         << "' (read at position_ids); pass --max-seq-len "
                         << cache->positionRows << " or less";
      return {};
    }
    // Two entry points over one graph; the second takes the first's
    // weights (the bytes are freed as the first imports them).
    llvm::StringMap<TypedAttr> weights;
    GraphImporter prefill(context, path, options);
    prefill.setDecoderEntry(*cache, /*decode=*/false, weights);
    OwningOpRef<ModuleOp> module = prefill.import(model);
    if (!module)
      return {};
    GraphImporter decode(context, path, options);
    decode.setDecoderEntry(*cache, /*decode=*/true, weights);
    (void)decode.import(model, *module);
    if (!decode.succeeded())
      return {};
    return module;
  }
  GraphImporter importer(context, path, options);
  return importer.import(model);
}

void registerImporterDialects(DialectRegistry &registry) {
  registry.insert<KilnDialect, func::FuncDialect, arith::ArithDialect,
                  linalg::LinalgDialect, tensor::TensorDialect,
                  math::MathDialect>();
}

} // namespace kiln::onnx
