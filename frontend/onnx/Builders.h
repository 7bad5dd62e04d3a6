//===- Builders.h - IR building helpers shared by the op handlers -*- C++ -*-===//
#ifndef KILN_FRONTEND_ONNX_BUILDERS_H
#define KILN_FRONTEND_ONNX_BUILDERS_H

#include "frontend/onnx/ImportContext.h"

#include "mlir/IR/Builders.h"

namespace kiln::onnx {

using ScalarBodyFn = llvm::function_ref<mlir::Value(
    mlir::OpBuilder &, mlir::Location, mlir::ValueRange)>;

/// A linalg.generic applying `body` to the elements of `inputs` with ONNX
/// (numpy) multidirectional broadcasting. Reports a shape error on the node
/// and returns null when the shapes do not broadcast.
mlir::Value buildElementwise(NodeContext &ctx, mlir::ValueRange inputs,
                             mlir::Type resultElementType, ScalarBodyFn body);

/// `value` reshaped to `shape` (same element count) with collapse/expand
/// reshapes, which are views of contiguous tensors.
mlir::Value buildReshape(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::Value value, llvm::ArrayRef<int64_t> shape);

/// A scalar conversion with ONNX Cast semantics between float, signless
/// integer and i1 types.
mlir::Value castScalar(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Value value, mlir::Type to);

/// A scalar constant of `type` (float or integer) holding `value`.
mlir::Value scalarConstant(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::Type type, double value);

/// Normalizes an ONNX axis (negative counts from the back) against `rank`;
/// reports an error on the node and returns nullopt if out of range.
std::optional<int64_t> normalizeAxis(NodeContext &ctx, int64_t axis,
                                     int64_t rank);

enum class ReduceKind {
  Sum, Mean, Max, Min, Prod, SumSquare, L1, L2, LogSum, LogSumExp
};

/// A linalg reduction of `x` over the dims marked in `reduced` (which are
/// dropped from the result) with the combiner and prologue of `kind` (Sum,
/// Max, Min, Prod, SumSquare, L1; the other kinds' epilogues are the
/// caller's). With `broadcastOperand` (shaped like the result), each element
/// contributes exp(x - operand) instead: the sum of a stable softmax.
mlir::Value buildReduce(NodeContext &ctx, mlir::Value x,
                        llvm::ArrayRef<bool> reduced, ReduceKind kind,
                        mlir::Value broadcastOperand = {});

/// A linalg.generic producing `shape` x `element` whose body computes each
/// element from the output indices (linalg.index values), typically by
/// tensor.extract from other tensors: gathers, concatenation, padding.
mlir::Value buildIndexed(
    mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<int64_t> shape,
    mlir::Type element,
    llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                   mlir::ValueRange)>
        body);

/// `value` as an arith.constant when it can be evaluated at compile time (a
/// small all-parallel generic over constants, a reshape or fill of
/// constants); otherwise `value` itself.
mlir::Value foldToConstant(mlir::OpBuilder &b, mlir::Value value);

/// A zero-element constant of `shape` (which has a 0 dim).
mlir::Value buildEmptyConstant(mlir::OpBuilder &b, mlir::Location loc,
                               llvm::ArrayRef<int64_t> shape,
                               mlir::Type element);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_BUILDERS_H
