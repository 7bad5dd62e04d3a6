//===- CpuTileAndVectorize.cpp - register tiles and vectors for CPU kernels ===//
#include "passes/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"

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

/// Marks the tiled ops the pass vectorizes once their shapes are known.
constexpr llvm::StringLiteral kVectorizeMark = "kiln.cpu_vectorize";

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

  /// Tiles `op` (register blocks for contractions, vector-width tiles
  /// otherwise) and marks the tiled ops for vectorization. A contraction
  /// whose N extent has no multiple-of-8 divisor (GPT-2's 50,257-token
  /// vocabulary) takes full register-width tiles anyway, with its tile loop
  /// peeled: full tiles are static and vectorize, the remainder stays scalar.
  void tile(RewriterBase &rewriter, linalg::LinalgOp op) {
    // Bool tensors are one byte per element in memory, but vectors of i1
    // are bit-packed; bf16 arithmetic is emulated in f32 op by op, which
    // vector contractions escape: such ops stay scalar.
    for (Value operand : op->getOperands()) {
      Type element = getElementTypeOrSelf(operand.getType());
      if (element.isInteger(1) || element.isBF16())
        return;
    }
    SmallVector<int64_t> interchange;
    std::optional<SmallVector<int64_t>> sizes = chooseTileSizes(op, interchange);
    if (!sizes)
      return;
    // Which tile loop to peel, if any (its position among the tile loops).
    std::optional<unsigned> peelDim;
    if (linalg::isaContractionOpInterface(op)) {
      FailureOr<linalg::ContractionDimensions> dims =
          linalg::inferContractionDims(op);
      SmallVector<int64_t> ranges = op.getStaticLoopRanges();
      if (succeeded(dims) && !dims->n.empty()) {
        unsigned n = dims->n.back();
        if ((*sizes)[n] < 8 && ranges[n] > nTile) {
          (*sizes)[n] = nTile;
          peelDim = n;
        }
      }
    }
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
    for (Operation *tiledOp : tiled->tiledOps)
      tiledOp->setAttr(kVectorizeMark, rewriter.getUnitAttr());
    if (!peelDim)
      return;
    // The tile loops are the non-unit tile sizes, in interchange order.
    SmallVector<unsigned> order;
    for (unsigned d : interchange.empty()
                          ? llvm::to_vector(llvm::seq<unsigned>(0, sizes->size()))
                          : SmallVector<unsigned>(interchange.begin(), interchange.end()))
      if ((*sizes)[d] != 0)
        order.push_back(d);
    auto position = llvm::find(order, *peelDim) - order.begin();
    if (position >= static_cast<long>(tiled->loops.size()))
      return;
    auto loop = dyn_cast<scf::ForOp>(tiled->loops[position].getOperation());
    if (!loop)
      return;
    scf::ForOp remainder;
    (void)scf::peelForLoopAndSimplifyBounds(rewriter, loop, remainder);
  }

  /// Vectorizes the marked ops whose shapes are static after peeling and
  /// canonicalization; contractions go straight to vector.contract.
  void vectorizeMarked(RewriterBase &rewriter, func::FuncOp func) {
    SmallVector<linalg::LinalgOp> marked;
    func.walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kVectorizeMark))
        marked.push_back(op);
    });
    for (linalg::LinalgOp op : marked) {
      op->removeAttr(kVectorizeMark);
      if (llvm::any_of(op.getStaticLoopRanges(), ShapedType::isDynamic))
        continue; // a peeled remainder: scalar loops
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::VectorizationResult> vectorized = linalg::vectorize(
          rewriter, op, /*inputVectorSizes=*/{},
          /*inputScalableVecDims=*/{}, /*vectorizeNDExtract=*/false,
          /*flatten1DDepthwiseConv=*/false,
          /*assumeDynamicDimsMatchVecSizes=*/false,
          /*createNamedContraction=*/true);
      if (failed(vectorized))
        continue; // stays a tiled linalg op and becomes scalar loops
      if (op->getNumResults())
        rewriter.replaceOp(op, vectorized->replacements);
      else
        rewriter.eraseOp(op);
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
      tile(rewriter, op);
    // Peeled full tiles get static slice shapes.
    RewritePatternSet patterns(&getContext());
    tensor::ExtractSliceOp::getCanonicalizationPatterns(patterns, &getContext());
    tensor::InsertSliceOp::getCanonicalizationPatterns(patterns, &getContext());
    affine::AffineMinOp::getCanonicalizationPatterns(patterns, &getContext());
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, &getContext());
    tensor::CastOp::getCanonicalizationPatterns(patterns, &getContext());
    getContext().getLoadedDialect<linalg::LinalgDialect>()
        ->getCanonicalizationPatterns(patterns);
    (void)applyPatternsGreedily(func, std::move(patterns));
    vectorizeMarked(rewriter, func);
  }
};

} // namespace
