//===- Builders.h - IR building helpers shared by the op handlers -*- C++ -*-===//
#ifndef KILN_FRONTEND_ONNX_BUILDERS_H
#define KILN_FRONTEND_ONNX_BUILDERS_H

#include "dialects/kiln/TensorBuilders.h"
#include "frontend/onnx/ImportContext.h"

#include "mlir/IR/Builders.h"

namespace kiln::onnx {

/// A linalg.generic applying `body` to the elements of `inputs` with ONNX
/// (numpy) multidirectional broadcasting. Reports a shape error on the node
/// and returns null when the shapes do not broadcast.
mlir::Value buildElementwise(NodeContext &ctx, mlir::ValueRange inputs,
                             mlir::Type resultElementType, ScalarBodyFn body);

/// ONNX MatMul (numpy semantics: batched, broadcast batch dims, rank-1
/// operands); reports on the node and returns null on bad operands.
mlir::Value buildMatmul(NodeContext &ctx, mlir::Value lhs, mlir::Value rhs);

/// Normalizes an ONNX axis (negative counts from the back) against `rank`;
/// reports an error on the node and returns nullopt if out of range.
std::optional<int64_t> normalizeAxis(NodeContext &ctx, int64_t axis,
                                     int64_t rank);
/// The node's `axes` attribute, normalized against `rank` (every axis when
/// absent); reports an error and returns nullopt for one out of range.
std::optional<std::vector<int64_t>> axesAttr(NodeContext &ctx, int64_t rank);

/// kiln::buildReduce at the node's builder and location.
inline mlir::Value buildReduce(NodeContext &ctx, mlir::Value x,
                               llvm::ArrayRef<bool> reduced, ReduceKind kind,
                               mlir::Value broadcastOperand = {}) {
  return kiln::buildReduce(ctx.b(), ctx.getLoc(), x, reduced, kind,
                           broadcastOperand);
}

/// The sliding-window attributes of Conv, ConvTranspose and the pools over
/// `spatial` dims, defaults filled in (strides and dilations 1, pads 0),
/// checked for their lengths and signs; `pads` lists the begins, then the
/// ends. `autoPad` is NOTSET, SAME_UPPER, SAME_LOWER or VALID.
struct WindowAttrs {
  std::vector<int64_t> strides, dilations, pads;
  std::string autoPad;
  bool same() const { return autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER"; }
  /// Sets dim `i`'s pads to `total` split for auto_pad: SAME_UPPER puts the
  /// smaller half first, SAME_LOWER the larger.
  void splitPads(int64_t i, int64_t total);
};
std::optional<WindowAttrs> readWindowAttrs(NodeContext &ctx, int64_t spatial);

/// Resolves auto_pad for a forward window (Conv, pools) on input dims `in`
/// with `kernel`: SAME pads give ceil(in / stride) outputs, VALID none.
void applyForwardAutoPad(WindowAttrs &w, llvm::ArrayRef<int64_t> in,
                         llvm::ArrayRef<int64_t> kernel);

/// `value` as an arith.constant when it can be evaluated at compile time (a
/// small all-parallel generic over constants, a reshape or fill of
/// constants); otherwise `value` itself.
mlir::Value foldToConstant(mlir::OpBuilder &b, mlir::Value value);

/// The fill value of a ConstantOfShape node (its `value` attribute, else a
/// float 0), typed; reports an error on the node for an unsupported type.
mlir::FailureOr<mlir::TypedAttr> constantOfShapeValue(NodeContext &ctx);

/// A zero-element constant of `shape` (which has a 0 dim).
mlir::Value buildEmptyConstant(mlir::OpBuilder &b, mlir::Location loc,
                               llvm::ArrayRef<int64_t> shape,
                               mlir::Type element);

/// `inputs` (one rank and element type, equal sizes outside `axis`)
/// joined along `axis`, which may be symbolic in any of them (a cache of
/// past tokens and the new ones); empty inputs are dropped.
mlir::Value buildConcat(mlir::OpBuilder &b, mlir::Location loc,
                        llvm::ArrayRef<mlir::Value> inputs, int64_t axis);

/// `value` at `index` along `axis`, that dim dropped (a slice and a
/// collapse, both views).
mlir::Value sliceAlong(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Value value, int64_t axis, int64_t index);

/// `elements` (of one static type) stacked along a new dim `axis`, element
/// i at position i (or size-1-i when `reverse`), with insert_slice.
mlir::FailureOr<mlir::Value> stackAlong(NodeContext &ctx,
                                        llvm::ArrayRef<mlir::Value> elements,
                                        int64_t axis, bool reverse);

/// The convolution of `x` [N, C, spatial...] by `w` [M, C/group,
/// kernel...] with the node's Conv attributes (strides, dilations, pads,
/// auto_pad, group), zero padded, in x's element type: float, or i32 for
/// the integer convolutions; null after reporting on the node.
mlir::Value buildConv(NodeContext &ctx, mlir::Value x, mlir::Value w);

/// log(1 + exp(x)) of a float scalar, as max(x, 0) + log1p(exp(-|x|)) so
/// that large inputs do not overflow.
mlir::Value scalarSoftplus(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::Value x);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_BUILDERS_H
