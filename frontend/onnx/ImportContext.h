//===- ImportContext.h - what an ONNX op handler sees -----------*- C++ -*-===//
//
// Each ONNX op is imported by a handler registered under its op type and the
// opset version it starts at (`registry.on("Softmax", 13, ...)`). The
// importer picks, for a node, the handler with the newest version that is not
// newer than the model's opset, so a semantic change across versions is a
// second registration, not an `if` in the handler.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_ONNX_IMPORTCONTEXT_H
#define KILN_FRONTEND_ONNX_IMPORTCONTEXT_H

#include "onnx.pb.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/StringMap.h"

#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace kiln::onnx {

class GraphImporter;

/// One node being imported: its inputs, attributes and a place to put its
/// outputs.
class NodeContext {
public:
  NodeContext(GraphImporter &importer, const kiln_onnx::NodeProto &node,
              int64_t opset, mlir::OpBuilder &builder, mlir::Location loc)
      : importer(importer), node(node), opset(opset), builder(builder),
        loc(loc) {}

  const kiln_onnx::NodeProto &getNode() const { return node; }
  int64_t getOpset() const { return opset; }
  mlir::OpBuilder &b() { return builder; }
  mlir::Location getLoc() const { return loc; }

  /// Number of inputs, counting omitted optional ones ("" names).
  int numInputs() const { return node.input_size(); }
  /// Whether optional input `i` is present.
  bool hasInput(int i) const {
    return i < node.input_size() && !node.input(i).empty();
  }
  /// The value of input `i`; reports an error and returns null if missing.
  mlir::Value input(int i);
  /// The ranked tensor type of input `i` (input must be present).
  mlir::RankedTensorType inputType(int i);

  /// Input `i` as a list of integers, if it is a constant (an initializer or
  /// the output of a Constant node); otherwise an error naming the input.
  std::optional<std::vector<int64_t>> constantInts(int i);
  /// Input `i` as a constant elements attribute, or null.
  mlir::ElementsAttr constantElements(int i);
  /// For an input that must be a constant but is computed: when it is
  /// computed from graph inputs and constants alone, a note naming those
  /// inputs and how to freeze them ("; it is computed from graph input
  /// 'n' alone: freeze it with --constant-input n=@FILE"), else "".
  std::string freezeHint(int i);

  bool hasAttr(llvm::StringRef name) const;
  const kiln_onnx::AttributeProto *attr(llvm::StringRef name) const;
  int64_t intAttr(llvm::StringRef name, int64_t defaultValue) const;
  float floatAttr(llvm::StringRef name, float defaultValue) const;
  std::optional<std::vector<int64_t>> intsAttr(llvm::StringRef name) const;

  /// Whether input `i` holds unsigned integers (integers are signless in the
  /// IR; the importer tracks which ONNX values are unsigned).
  bool inputIsUnsigned(int i) const;
  /// Sets whether output `i` holds unsigned integers, overriding the
  /// default (unsigned when an unsigned input has its element type).
  void setOutputUnsigned(int i, bool isUnsigned) {
    outputSignedness[i] = isUnsigned;
  }
  const std::map<int, bool> &getOutputSignedness() const {
    return outputSignedness;
  }

  /// The narrow ONNX type (float8, float4, int4, int2: Tensors.h) input `i`
  /// holds as i8, or 0.
  int32_t inputNarrowType(int i) const;
  /// Sets the narrow type output `i` holds (0: none), overriding the
  /// default (a data movement op's outputs keep their input's).
  void setOutputNarrowType(int i, int32_t dataType) {
    outputNarrowTypes[i] = dataType;
  }
  const std::map<int, int32_t> &getOutputNarrowTypes() const {
    return outputNarrowTypes;
  }

  /// Starts an error about this node: "node 'n' (Op, opset N): ...".
  mlir::InFlightDiagnostic error();

  /// Binds the node's outputs, in order. Missing trailing values are fine
  /// only for optional outputs the graph does not use.
  mlir::LogicalResult setOutputs(mlir::ValueRange values);

  GraphImporter &getImporter() { return importer; }

  /// A value passed into or out of a subgraph, with the ONNX type facts
  /// the IR type does not carry.
  struct BodyValue {
    mlir::Value value;
    bool isUnsigned = false;
    int32_t narrowType = 0;
  };
  /// Imports `body` (a Loop or Scan body, once per iteration) in place:
  /// its inputs bound to `inputs`, its nodes reading the outer scope's
  /// values by name; returns its outputs. The names it binds are unbound
  /// again after, so that each call (iteration) starts afresh and none
  /// leaks to the outer graph.
  mlir::FailureOr<llvm::SmallVector<BodyValue>>
  importBody(const kiln_onnx::GraphProto &body,
             llvm::ArrayRef<BodyValue> inputs);

  /// Whether dim `da` of `a` and dim `db` of `b` (at least one symbolic)
  /// have the same size for every value of the symbolic dims: true, false
  /// (an error to report), or unknown (no symbolic dims being followed, or
  /// a size not followed).
  std::optional<bool> sameSize(mlir::Value a, unsigned da, mlir::Value b,
                               unsigned db);

private:
  GraphImporter &importer;
  const kiln_onnx::NodeProto &node;
  int64_t opset;
  mlir::OpBuilder &builder;
  mlir::Location loc;
  std::map<int, bool> outputSignedness;
  std::map<int, int32_t> outputNarrowTypes;
};

using OpHandler = std::function<mlir::LogicalResult(NodeContext &)>;

/// onnxruntime's contrib ops. Their handlers are registered as
/// "com.microsoft.<op>", by the version of that domain.
inline constexpr const char *kMicrosoftDomain = "com.microsoft";

/// Handlers keyed by op type and the opset version they start at.
class OpRegistry {
public:
  void on(llvm::StringRef opType, int64_t sinceVersion, OpHandler handler) {
    handlers[opType.str()][sinceVersion] = std::move(handler);
  }
  /// The handler for `opType` at `opset`, or null. `oldest` receives the
  /// oldest version with a handler, for the error message.
  const OpHandler *lookup(llvm::StringRef opType, int64_t opset,
                          int64_t *oldest) const;

private:
  std::map<std::string, std::map<int64_t, OpHandler>> handlers;
};

void registerElementwiseOps(OpRegistry &registry);
void registerShapeOps(OpRegistry &registry);
void registerLinalgOps(OpRegistry &registry);
void registerMathOps(OpRegistry &registry);
void registerReduceOps(OpRegistry &registry);
void registerTensorOps(OpRegistry &registry);
void registerNormOps(OpRegistry &registry);
void registerMoreTensorOps(OpRegistry &registry);
void registerAttentionOps(OpRegistry &registry);
void registerQuantOps(OpRegistry &registry);
void registerPoolOps(OpRegistry &registry);
void registerResizeOps(OpRegistry &registry);
void registerSpatialOps(OpRegistry &registry);
void registerIndexingOps(OpRegistry &registry);
void registerLinearAttentionOps(OpRegistry &registry);
void registerControlFlowOps(OpRegistry &registry);

/// The If's branch `name` (then_branch or else_branch), checked to give the
/// node's outputs; null after reporting (OpsControlFlow.cpp).
const kiln_onnx::GraphProto *branchOf(NodeContext &ctx, const char *name);
/// An If whose condition is known only at run time: both branches run and
/// each output selects between them (OpsControlFlow.cpp).
mlir::LogicalResult importRuntimeIf(NodeContext &ctx);
void registerRecurrentOps(OpRegistry &registry);
void registerQuantIntegerOps(OpRegistry &registry);
void registerTfIdfOps(OpRegistry &registry);
void registerQuantContribOps(OpRegistry &registry);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_IMPORTCONTEXT_H
