//===- TransposeUnalignedWeights.cpp - K-innermost weights for the GPU ----===//
//
// Two GPU GEMM strategies want a constant weight W stored [N, K] (K
// innermost) rather than the [K, N] that MatMul reads:
//
// - tensor-core GEMMs copy operands in 16-byte chunks along their
//   innermost dimension, which needs rows that are multiples of 8 16-bit
//   elements. A [K, N] weight with N not a multiple of 8 (GPT-2's tied
//   lm_head: 768 x 50257) has no such rows, but stored [N, K] it does when
//   K is;
// - the small-M GEMM (M <= 16, decoding) streams each weight column along
//   K in 16-byte chunks, so every small-M product's weight (f16, bf16 or
//   f32, K a multiple of the chunk) is stored [N, K].
//
// This pass rewrites `linalg.matmul(A, W)` with such a W into a
// contraction that reads `transpose(W)` with the transposed indexing map;
// kiln-fold-constant-transposes then stores the transposed bytes. A W that
// a generic computes from its indices alone (MatMulNBits' decoding, whose
// packed bytes run along K) is computed [N, K] instead, its body's two
// indices swapped. The cuda target runs it after the graph pipeline.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_KILNTRANSPOSEUNALIGNEDWEIGHTS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

constexpr int64_t kChunkElements = 8;  // 16 bytes of 16-bit elements
constexpr int64_t kChunkBytes = 16;
constexpr int64_t kSmallRows = 16;     // gemm-small-m's M

/// The product of the ranges of the loops that `op`'s output reads and
/// input `weight` does not (M, with batches the weight broadcasts).
int64_t rowsBesides(linalg::LinalgOp op, unsigned weight) {
  AffineMap w = op.getMatchingIndexingMap(op.getDpsInputOperand(weight));
  AffineMap out = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  int64_t rows = 1;
  for (unsigned d = 0; d < ranges.size(); ++d)
    if (out.isFunctionOfDim(d) && !w.isFunctionOfDim(d)) {
      if (ShapedType::isDynamic(ranges[d]))
        return ShapedType::kDynamic;
      rows *= ranges[d];
    }
  return rows;
}

/// A weight computed element by element from its indices alone (the
/// decoding of block-quantized integers: a generic with no inputs that reads
/// constants at computed indices), of static shape [K, N], read once.
linalg::GenericOp indexComputed(Value value) {
  auto generic = value.getDefiningOp<linalg::GenericOp>();
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!generic || !value.hasOneUse() || !type || !type.hasStaticShape() ||
      type.getRank() != 2 || generic.getNumDpsInputs() != 0 ||
      generic.getNumDpsInits() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops() ||
      !generic.getDpsInitOperand(0)->get().getDefiningOp<tensor::EmptyOp>() ||
      !generic.getIndexingMapsArray().front().isIdentity())
    return nullptr;
  for (Operation &op : generic.getBlock()->without_terminator())
    if (op.getNumRegions())
      return nullptr;
  return generic;
}

struct TransposeUnalignedWeights final
    : kiln::impl::KilnTransposeUnalignedWeightsBase<TransposeUnalignedWeights> {
  /// The input of `op` that is such a weight, read [k, n] with n innermost.
  static std::optional<unsigned> unalignedWeight(linalg::LinalgOp op) {
    if (op->getNumResults() != 1 || !op.hasPureTensorSemantics() ||
        op.getNumDpsInputs() != 2 || op.getNumReductionLoops() == 0)
      return std::nullopt;
    for (unsigned i = 0; i < 2; ++i) {
      OpOperand *operand = op.getDpsInputOperand(i);
      auto type = dyn_cast<RankedTensorType>(operand->get().getType());
      AffineMap map = op.getMatchingIndexingMap(operand);
      bool decoded = indexComputed(operand->get()) != nullptr;
      if ((!operand->get().getDefiningOp<arith::ConstantOp>() && !decoded) ||
          !type || !type.hasStaticShape() || type.getRank() != 2 ||
          !map.isProjectedPermutation())
        continue;
      Type element = type.getElementType();
      bool narrow = element.isF16() || element.isBF16();
      // A decoded weight (MatMulNBits) is decoded [N, K] whatever M: its
      // packed bytes, scales and zero points run along K, so a GEMM's
      // chunk along K shares them.
      bool decodedAlongK = decoded && (narrow || element.isF32()) &&
                           type.getDimSize(0) % kChunkElements == 0;
      int64_t rows = rowsBesides(op, i);
      bool smallM = (narrow || element.isF32()) &&
                    !ShapedType::isDynamic(rows) && rows <= kSmallRows &&
                    type.getDimSize(0) %
                            (kChunkBytes / (element.getIntOrFloatBitWidth() / 8)) ==
                        0;
      bool unaligned = narrow && type.getDimSize(1) % kChunkElements != 0 &&
                       type.getDimSize(0) % kChunkElements == 0;
      if (!smallM && !unaligned && !decodedAlongK)
        continue;
      // Its outer dim is a reduction loop (K), its inner one is not.
      auto iterators = op.getIteratorTypesArray();
      unsigned outer = cast<AffineDimExpr>(map.getResult(0)).getPosition();
      unsigned inner = cast<AffineDimExpr>(map.getResult(1)).getPosition();
      if (iterators[outer] == utils::IteratorType::reduction &&
          iterators[inner] == utils::IteratorType::parallel)
        return i;
    }
    return std::nullopt;
  }

  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) {
      if (isa<linalg::MatmulOp, linalg::GenericOp>(op) && unalignedWeight(op))
        ops.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp named : ops) {
      rewriter.setInsertionPoint(named);
      FailureOr<linalg::GenericOp> generic =
          isa<linalg::GenericOp>(named)
              ? FailureOr<linalg::GenericOp>(cast<linalg::GenericOp>(named))
              : linalg::generalizeNamedOp(rewriter, named);
      if (failed(generic))
        continue;
      linalg::GenericOp op = *generic;
      unsigned input = *unalignedWeight(op);
      OpOperand *operand = op.getDpsInputOperand(input);
      Location loc = op.getLoc();
      auto type = cast<RankedTensorType>(operand->get().getType());
      rewriter.setInsertionPoint(op);
      Value init = tensor::EmptyOp::create(
          rewriter, loc, ArrayRef<int64_t>{type.getDimSize(1), type.getDimSize(0)},
          type.getElementType());
      Operation *old = operand->get().getDefiningOp();
      Value transposed;
      if (linalg::GenericOp decode = indexComputed(operand->get())) {
        // Computed transposed: the same body with its two indices swapped.
        init.getDefiningOp()->moveBefore(decode);
        rewriter.setInsertionPoint(decode);
        auto swapped = linalg::GenericOp::create(
            rewriter, decode.getLoc(), TypeRange{init.getType()}, ValueRange{},
            ValueRange{init}, decode.getIndexingMapsArray(),
            decode.getIteratorTypesArray());
        swapped->setDiscardableAttrs(decode->getDiscardableAttrDictionary());
        rewriter.cloneRegionBefore(decode.getRegion(), swapped.getRegion(),
                                   swapped.getRegion().end());
        swapped.getRegion().walk([&](linalg::IndexOp index) {
          index.setDim(1 - index.getDim());
        });
        transposed = swapped->getResult(0);
        rewriter.setInsertionPoint(op);
      } else {
        transposed = linalg::TransposeOp::create(rewriter, loc, operand->get(),
                                                 init, ArrayRef<int64_t>{1, 0})
                         ->getResult(0);
      }
      // The same loops read the transposed bytes: swap the map's results.
      SmallVector<AffineMap> maps = op.getIndexingMapsArray();
      AffineMap map = maps[operand->getOperandNumber()];
      maps[operand->getOperandNumber()] =
          AffineMap::get(map.getNumDims(), 0,
                         {map.getResult(1), map.getResult(0)}, &getContext());
      rewriter.modifyOpInPlace(op, [&] {
        operand->set(transposed);
        op.setIndexingMapsAttr(rewriter.getAffineMapArrayAttr(maps));
      });
      if (isa<linalg::GenericOp>(old) && old->use_empty())
        rewriter.eraseOp(old);
    }
  }
};

} // namespace
