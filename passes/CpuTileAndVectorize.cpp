//===- CpuTileAndVectorize.cpp - register tiles and vectors for CPU kernels ===//
#include "passes/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_KILNCPUTILEANDVECTORIZE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// A divisor of `extent` that is at most `limit`. For vector dims, the
/// largest multiple of 8 (whole AVX registers) if there is one, else of 4;
/// otherwise the largest. Tiles that divide their loop evenly need no masks
/// and no remainder loops.
int64_t largestDivisorAtMost(int64_t extent, int64_t limit,
                             bool vectorDim = true) {
  static constexpr int64_t kVectorMultiples[] = {8, 4, 1};
  ArrayRef<int64_t> multiples(kVectorMultiples);
  for (int64_t multiple : vectorDim ? multiples : multiples.take_back())
    for (int64_t size = std::min(extent, limit); size >= multiple; --size)
      if (extent % size == 0 && size % multiple == 0)
        return size;
  return 1;
}

struct KilnCpuTileAndVectorizePass final
    : kiln::impl::KilnCpuTileAndVectorizeBase<KilnCpuTileAndVectorizePass> {
  using Base::Base;

  /// Tile sizes for `op`, one per loop, or nothing if the op is not tiled.
  /// Sets `interchange` to the order of the tile loops (empty: as is).
  std::optional<SmallVector<int64_t>>
  chooseTileSizes(linalg::LinalgOp op, SmallVector<int64_t> &interchange) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    if (ranges.empty() || llvm::any_of(ranges, ShapedType::isDynamic) ||
        llvm::is_contained(ranges, 0))
      return std::nullopt;
    SmallVector<int64_t> sizes(ranges.size(), 1);
    if (linalg::isaContractionOpInterface(op)) {
      FailureOr<linalg::ContractionDimensions> dims =
          linalg::inferContractionDims(op);
      if (succeeded(dims) && !dims->m.empty() && !dims->n.empty()) {
        unsigned m = dims->m.back(), n = dims->n.back();
        sizes[m] = largestDivisorAtMost(ranges[m], mTile, /*vectorDim=*/false);
        sizes[n] = largestDivisorAtMost(ranges[n], nTile);
        // Column strips outermost: one strip of the rhs (K x n-tile) stays
        // in cache while every row block of the lhs passes over it.
        interchange.clear();
        for (ArrayRef<unsigned> group : {ArrayRef<unsigned>(dims->batch),
                                         ArrayRef<unsigned>(dims->n),
                                         ArrayRef<unsigned>(dims->m),
                                         ArrayRef<unsigned>(dims->k)})
          interchange.append(group.begin(), group.end());
        return sizes;
      }
    }
    sizes.back() = largestDivisorAtMost(ranges.back(), vectorWidth);
    return sizes;
  }

  void tileAndVectorize(RewriterBase &rewriter, linalg::LinalgOp op) {
    // Bool tensors are one byte per element in memory, but vectors of i1
    // are bit-packed: such ops stay scalar.
    for (Value operand : op->getOperands())
      if (getElementTypeOrSelf(operand.getType()).isInteger(1))
        return;
    SmallVector<int64_t> interchange;
    std::optional<SmallVector<int64_t>> sizes = chooseTileSizes(op, interchange);
    if (!sizes)
      return;
    rewriter.setInsertionPoint(op);
    scf::SCFTilingOptions options;
    options.setTileSizes(getAsIndexOpFoldResult(op.getContext(), *sizes));
    if (interchange.size() == sizes->size())
      options.setInterchange(interchange);
    SmallVector<unsigned> reductionDims;
    op.getReductionDims(reductionDims);
    options.setReductionDims(reductionDims);
    FailureOr<scf::SCFTilingResult> tiled = scf::tileUsingSCF(
        rewriter, cast<TilingInterface>(op.getOperation()), options);
    if (failed(tiled))
      return;
    if (op->getNumResults())
      rewriter.replaceOp(op, tiled->replacements);
    else
      rewriter.eraseOp(op);
    for (Operation *tiledOp : tiled->tiledOps) {
      rewriter.setInsertionPoint(tiledOp);
      // Contractions go straight to vector.contract.
      FailureOr<linalg::VectorizationResult> vectorized = linalg::vectorize(
          rewriter, tiledOp, /*inputVectorSizes=*/{},
          /*inputScalableVecDims=*/{}, /*vectorizeNDExtract=*/false,
          /*flatten1DDepthwiseConv=*/false,
          /*assumeDynamicDimsMatchVecSizes=*/false,
          /*createNamedContraction=*/true);
      if (failed(vectorized))
        continue; // stays a tiled linalg op and becomes scalar loops
      if (tiledOp->getNumResults())
        rewriter.replaceOp(tiledOp, vectorized->replacements);
      else
        rewriter.eraseOp(tiledOp);
    }
  }

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    IRRewriter rewriter(&getContext());

    SmallVector<linalg::LinalgOp> ops;
    func.walk([&](linalg::LinalgOp op) { ops.push_back(op); });
    for (linalg::LinalgOp op : ops)
      tileAndVectorize(rewriter, op);
  }
};

} // namespace
