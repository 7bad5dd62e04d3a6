//===- TensorBuilders.h - linalg building blocks for kiln ops ---*- C++ -*-===//
//
// Small builders of linalg on tensors, shared by the ONNX importer (which
// checks shapes and reports errors on the node first) and by the
// decompositions of the kiln transformer ops (whose verifiers have checked
// them). None of them reports errors: callers pass shapes that fit. A
// symbolic dim is a `?` dim whose size comes from an operand (tensor.dim);
// it is never broadcast.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_DIALECTS_KILN_TENSORBUILDERS_H
#define KILN_DIALECTS_KILN_TENSORBUILDERS_H

#include "mlir/IR/Builders.h"

namespace kiln {

using ScalarBodyFn = llvm::function_ref<mlir::Value(
    mlir::OpBuilder &, mlir::Location, mlir::ValueRange)>;

/// A linalg.generic over `shape` applying `body` to the elements of
/// `inputs`, each aligned on the right against `shape` with its dims of 1
/// broadcast (numpy rules; the shapes must fit).
mlir::Value buildBroadcast(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::ValueRange inputs,
                           llvm::ArrayRef<int64_t> shape,
                           mlir::Type resultElementType, ScalarBodyFn body);

/// On the generic that decodes block-quantized weights (com.microsoft
/// MatMulNBits): `{bits, block_size}`. Its body reads, in this order, the
/// packed integers (i8 [N, blocks, block bytes]), the scales ([N x blocks]
/// of the element type) and, when there are any, the zero points (i8,
/// packed like the weights, or [N x blocks] of the element type); it yields
/// W[k][n] = (q - zero) * scale. kiln-cpu-pack-weights stores them again in
/// the CPU GEMM's column panels.
inline constexpr llvm::StringLiteral kBlockQuantizedAttr =
    "kiln.block_quantized";

/// A linalg.generic producing `shape` x `element` whose body computes each
/// element from the output indices (linalg.index values), typically by
/// tensor.extract from other tensors: gathers, concatenation, padding.
/// `dynamicSizes` gives the sizes of `shape`'s dynamic dims, in order.
mlir::Value buildIndexed(mlir::OpBuilder &b, mlir::Location loc,
                         llvm::ArrayRef<int64_t> shape, mlir::Type element,
                         ScalarBodyFn body,
                         mlir::ValueRange dynamicSizes = {});

/// `value` reshaped to `shape` (same element count) with collapse/expand
/// reshapes, which are views of contiguous tensors.
mlir::Value buildReshape(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::Value value, llvm::ArrayRef<int64_t> shape);

/// A scalar conversion with ONNX Cast semantics between float, signless
/// integer and i1 types; integers are read and written as unsigned when
/// `fromUnsigned` / `toUnsigned`.
mlir::Value castScalar(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Value value, mlir::Type to,
                       bool fromUnsigned = false, bool toUnsigned = false);

/// `x` converted elementwise to `to` with castScalar (`x` itself when it
/// has that element type already).
mlir::Value convertElements(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::Value x, mlir::Type to);

/// A tensor.empty of `shape` x `element` whose dynamic dims take their
/// sizes (tensor.dim) from the first of `sources` with a dynamic dim at the
/// same position, shapes aligned on the right (numpy broadcasting).
mlir::Value emptyFor(mlir::OpBuilder &b, mlir::Location loc,
                     llvm::ArrayRef<int64_t> shape, mlir::Type element,
                     mlir::ValueRange sources);

/// An index constant.
mlir::Value indexConstant(mlir::OpBuilder &b, mlir::Location loc, int64_t value);

/// The shape and element type of a ranked tensor value.
llvm::ArrayRef<int64_t> shapeOf(mlir::Value tensor);
mlir::Type elementTypeOf(mlir::Value tensor);

/// A scalar constant of `type` (float or integer) holding `value`.
mlir::Value scalarConstant(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::Type type, double value);

/// 1 / (1 + exp(-x)) of a float scalar.
mlir::Value scalarSigmoid(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value x);

enum class ReduceKind {
  Sum, Mean, Max, Min, Prod, SumSquare, L1, L2, LogSum, LogSumExp
};

/// The identity of `kind`'s combiner as a scalar of `type`.
mlir::Value reduceIdentity(mlir::OpBuilder &b, mlir::Location loc,
                           ReduceKind kind, mlir::Type type);

/// A linalg reduction of `x` over the dims marked in `reduced` (which are
/// dropped from the result) with the combiner and prologue of `kind` (Sum,
/// Max, Min, Prod, SumSquare, L1; the other kinds' epilogues are the
/// caller's). With `broadcastOperand` (shaped like the result), each element
/// contributes exp(x - operand) instead: the sum of a stable softmax.
mlir::Value buildReduce(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                        llvm::ArrayRef<bool> reduced, ReduceKind kind,
                        mlir::Value broadcastOperand = {});

/// `reducedValue` (a reduction of a tensor of `shape` over `reduced`)
/// reshaped with the reduced dims kept as 1, so that it broadcasts back.
mlir::Value keepReducedDims(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::Value reducedValue,
                            llvm::ArrayRef<int64_t> shape,
                            llvm::ArrayRef<bool> reduced);

/// The mean and 1/sqrt(variance + epsilon) of float `x` over `reduced`,
/// both with the reduced dims kept as 1 (layer and instance norms).
std::pair<mlir::Value, mlir::Value>
buildMoments(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
             llvm::ArrayRef<bool> reduced, double epsilon);

} // namespace kiln

#endif // KILN_DIALECTS_KILN_TENSORBUILDERS_H
