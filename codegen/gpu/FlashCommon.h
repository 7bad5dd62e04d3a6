//===- FlashCommon.h - what the flash attention strategies share -*- C++ -*-===//
//
// flash-attention-mma-sync (FlashAttention.cpp) and flash-attention-wgmma
// (FlashWgmma.cpp) build different kernels around the same pieces: the
// buffers a bufferized `kiln.attention` reads and writes (in place through
// the data movement around it where that is static), the per-score terms
// (scale, softcap, bias, masks) and the online softmax of one row.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_GPU_FLASHCOMMON_H
#define KILN_CODEGEN_GPU_FLASHCOMMON_H

#include "codegen/gpu/BufferViews.h"
#include "codegen/gpu/TileIndex.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"

#include <optional>

namespace kiln {

/// The buffers of a bufferized attention and the steps around it.
struct FlashBuffers {
  /// The operands' buffers (null bias when the op has none).
  mlir::Value q, k, v, bias;
  /// Per operand (q, k, v): read in place as a strided view of a kernel
  /// buffer (the data movement that wrote its temporary then dies), or
  /// nullopt to read the buffer itself.
  llvm::SmallVector<std::optional<StridedView>, 3> views;
  /// Where the result goes: `out` (a kernel buffer or a temporary the
  /// following step reads), or the view `outView` of a kernel buffer.
  mlir::Value out;
  std::optional<StridedView> outView;
  mlir::bufferization::ToBufferOp resultBuffer;
  mlir::Operation *resultStep = nullptr;
  Movement movement;
};

/// The buffers of `op`: its operands' and the one its result is stored
/// to. Fails (with an error naming `strategy`) on IR that is not the
/// bufferized kernel.
mlir::FailureOr<FlashBuffers> flashBuffersOf(AttentionOp op,
                                             llvm::StringRef strategy);

/// The generic that computes `buffer` when its elements can be evaluated
/// where a kernel loads its tile (computesElements, reading only through
/// tensor.extract/memref.load: a rotary embedding or a gather): `buffer` is
/// a temporary that only it writes and only `reader` (the attention's
/// operand, with no other use) reads, and nothing between the generic and
/// `reader` writes what it reads; null otherwise.
mlir::linalg::GenericOp computedOperand(mlir::Value buffer,
                                        mlir::Operation *reader);

/// The element of `computed` (a computedOperand) at `indices` where
/// `inside`, else zero of `element`: what a flash kernel stores into a
/// tile for an operand it evaluates.
mlir::Value evaluateOrZero(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::linalg::GenericOp computed,
                           mlir::Value inside,
                           llvm::ArrayRef<mlir::Value> indices,
                           mlir::Type element);

/// Fills `views`, `out` and `outView` (builder `b` on the host side of the
/// launch): operands whose rows stay aligned to `chunk` elements are read
/// in place, and the result is written through the permutation that
/// follows it when pairs of elements stay aligned, else to a temporary
/// ([batchCount, heads, queryCount, d]) the following step reads.
void resolveFlashViews(AttentionOp op, mlir::OpBuilder &b,
                       FlashBuffers &buffers, mlir::Value batchCount,
                       mlir::Value queryCount, int64_t chunk);

/// The pass body both flash strategies share: `rewrite` on each
/// `kiln.attention` of a kernel whose configuration names `strategy`.
mlir::LogicalResult applyFlashStrategy(
    mlir::func::FuncOp func, llvm::StringRef strategy,
    llvm::function_ref<mlir::LogicalResult(AttentionOp,
                                           const StrategyConfig &)>
        rewrite);

/// Erases `op`, the step that moved its result and the data movement its
/// views made dead.
void eraseFlashAttention(AttentionOp op, FlashBuffers &buffers);

/// The terms a score takes in registers.
struct ScoreTerms {
  double scale = 1.0, softcap = 0.0;
  mlir::Value bias;  // a buffer broadcast over any of its dims, or null
  mlir::Value batch; // the block's batch row (the bias's index)
  bool causal = false;
  mlir::Value causalShift; // key <= query + shift is visible
  mlir::Value keyCount;
  mlir::Value negInf;
};

/// Score `x` (f32) of (rowHead, query) against `key`: scaled, capped, the
/// bias added, -inf where the key is past the keys or the causal limit.
mlir::Value applyScoreTerms(Ix &ix, const ScoreTerms &terms, mlir::Value x,
                            mlir::Value rowHead, mlir::Value query,
                            mlir::Value key);

/// `value` combined over the four lanes that hold a row of an mma or
/// wgmma accumulator (xor shuffles by 1 and 2).
mlir::Value rowMaximum(mlir::OpBuilder &b, mlir::Location loc,
                       mlir::Value value);
mlir::Value rowSum(mlir::OpBuilder &b, mlir::Location loc, mlir::Value value);

/// One row's step of the online softmax over the lane's scores `s` (the
/// row's other scores lie in the three other lanes of its quad): the new
/// running max, the factor exp(m_old - m_new) that rescales O and the sum,
/// and the lane's new partial sum; `s` becomes P = exp(s - m_new). A row
/// with no key seen keeps m = -inf and exponentiates against 0.
struct RowSoftmax {
  mlir::Value max, correction, sum;
};
RowSoftmax onlineSoftmax(mlir::OpBuilder &b, mlir::Location loc,
                         llvm::MutableArrayRef<mlir::Value> s,
                         mlir::Value oldMax, mlir::Value oldSum,
                         mlir::Value negInf);

/// 1 / l, or 0 for a row that saw no key (l = 0).
mlir::Value inverseOrZero(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value sum);

/// The last KV tile (exclusive) a causal block sees: ceil(max(0, last + 1)
/// / bn) for `lastVisible` = the last key index + 1 any row of the block
/// may see, capped at `tiles`.
mlir::Value causalTileEnd(Ix &ix, mlir::Value lastVisible, int64_t bn,
                          mlir::Value tiles);

} // namespace kiln

#endif // KILN_CODEGEN_GPU_FLASHCOMMON_H
