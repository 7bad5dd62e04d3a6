//===- NarrowTypes.h - float8, float4, int4 and int2 elements ---*- C++ -*-===//
//
// ONNX's narrow types are held one element per byte, as i8 in the IR
// (Tensors.h says which). These build the scalar conversions between them
// and the ordinary types, in integer arithmetic that every target runs (no
// backend needs an f8 type): the float formats' encodings round to nearest
// even as ml_dtypes (the reference of ONNX's Cast) does, with or without
// saturation, and FLOAT8E8M0 rounds as its `round_mode` says.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_ONNX_NARROWTYPES_H
#define KILN_FRONTEND_ONNX_NARROWTYPES_H

#include "mlir/IR/Builders.h"

namespace kiln::onnx {

/// Whether a narrow type is one of the float formats (float8, float4).
bool isNarrowFloat(int32_t dataType);

/// The i8 element of narrow type `to` for the f32 scalar `x`, with Cast's
/// semantics: float formats round to nearest even; out of range gives the
/// largest finite value when `saturate`, else infinity or NaN as the format
/// has them (FLOAT4E2M1 always saturates); FLOAT8E8M0 rounds by
/// `roundMode` ("up", "down", "nearest"); the integer types truncate toward
/// zero and give 0 out of range or for NaN.
mlir::Value encodeNarrow(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                         int32_t to, bool saturate = true,
                         llvm::StringRef roundMode = "up");

/// The f32 value of an i8 element of narrow type `from` (exact).
mlir::Value decodeNarrow(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::Value code, int32_t from);

/// ONNX Cast of scalar `value` where the source (`from`) or the target
/// (`to`) is a narrow type (the other one 0): to `target`, the IR type of
/// the result (i8 for a narrow `to`). Integer targets wrap as Cast's do.
mlir::Value castNarrow(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Value value, int32_t from, bool fromUnsigned,
                       int32_t to, mlir::Type target, bool toUnsigned,
                       bool saturate, llvm::StringRef roundMode);

class NodeContext;

/// Cast (and CastLike) of input 0, `x`, to `target` (the IR type: i8 for a
/// narrow type), `narrowTo` the narrow ONNX type or 0: elementwise, with
/// the node's `saturate` and `round_mode` attributes; marks the output's
/// signedness and narrow type. Null after reporting on the node.
mlir::Value buildNarrowableCast(NodeContext &ctx, mlir::Value x,
                                int32_t narrowTo, mlir::Type target,
                                bool toUnsigned);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_NARROWTYPES_H
