//===- Decompositions.h - kiln transformer ops as linalg --------*- C++ -*-===//
//
// Each kiln transformer op has one decomposition into linalg on tensors,
// used by `kiln-lower-graph-to-linalg` for the norms, GELU and rotary
// embedding, by `kiln-decompose-attention` for attention (its fallback
// strategy, inside the kernel), and by the importer when an ONNX node also
// asks for an intermediate (LayerNormalization's Mean, Attention's qk
// output). The builder's insertion point must be before the op; the op is
// not touched.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_DIALECTS_KILN_DECOMPOSITIONS_H
#define KILN_DIALECTS_KILN_DECOMPOSITIONS_H

#include "dialects/kiln/KilnDialect.h"

namespace kiln {

/// Whether the decomposition of the transformer op `op` handles its
/// operands' shapes: static ones always; symbolic dims only outside the
/// normalized dims of the norms (whose element count the decomposition
/// divides by) and anywhere for GELU and SiLU. Rotary embedding and attention need
/// static shapes.
bool decompositionHandlesShapes(mlir::Operation *op);

mlir::Value decomposeGelu(mlir::OpBuilder &b, GeluOp op);
mlir::Value decomposeSilu(mlir::OpBuilder &b, SiluOp op);

struct LayerNormParts {
  mlir::Value result;
  /// Statistics with the normalized dims kept as 1, in f32 for inputs
  /// narrower than f32, else in the element type.
  mlir::Value mean, invStdDev;
};
LayerNormParts decomposeLayerNorm(mlir::OpBuilder &b, LayerNormOp op);

mlir::Value decomposeRmsNorm(mlir::OpBuilder &b, RmsNormOp op);

/// A layer or RMS norm that a target with a row kernel can keep whole:
/// normalized over the last dim only, static but for the input's rows
/// (which may be symbolic), f16, bf16 or f32 elements.
bool isLastDimNorm(mlir::Operation *op);

mlir::Value decomposeRotaryEmbedding(mlir::OpBuilder &b, RotaryEmbeddingOp op);

struct AttentionParts {
  mlir::Value result;
  /// [B, Hq, S, L]: the scaled (and capped) scores, the scores with the
  /// bias and causal mask added, and the softmax of those.
  mlir::Value scores, biasedScores, probabilities;
};
AttentionParts decomposeAttention(mlir::OpBuilder &b, AttentionOp op);

} // namespace kiln

#endif // KILN_DIALECTS_KILN_DECOMPOSITIONS_H
