//===- CollapseContractionLoops.cpp - one K loop for GEMMs that split it --===//
//
// Elementwise fusion propagates reshapes through contractions: when the
// output projection reads the attention result viewed from [B, S, H, D] as
// [B, S, H * D], the reshape moves into the contraction, which then sums
// over two loops (h, d) against weights viewed as [H, D, N]. The
// tensor-core strategies read K as one run (gemm-mma-sync walks a run of
// loops; gemm-small-m and gemm-wgmma take one loop), so a decode-sized
// output projection fell to the SIMT GEMM.
//
// Where the reduction loops are consecutive and every operand reads them
// as one contiguous run of dims (what `linalg::areDimSequencesPreserved`
// checks), they fold back into one loop, the operands viewed through
// collapse_shape: the same contraction with a single K.
//
// The same happens to the parallel loops: a projection whose weight the
// exporter (or fusion) viewed as [K, heads, head_dim] (LLaMA's q/k/v
// projections, reshaped into heads right after) writes [.., M, heads,
// head_dim] over two N loops, which no tensor-core strategy takes either.
// Consecutive static parallel loops that the second operand (the
// weight) reads and the first does not, each operand as one contiguous
// run or not at all, fold into one loop as well: N = heads x head_dim.
// (Row loops the strategies fold into M themselves.)
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUCOLLAPSECONTRACTIONLOOPS
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The contraction's reduction loops as one consecutive run, if they
/// are one.
std::optional<ReassociationIndices> reductionRun(linalg::GenericOp op) {
  ReassociationIndices run;
  for (auto [d, type] : llvm::enumerate(op.getIteratorTypesArray()))
    if (type == utils::IteratorType::reduction)
      run.push_back(d);
  if (run.size() < 2 || run.back() - run.front() + 1 != int64_t(run.size()))
    return std::nullopt;
  return run;
}

/// Runs of two or more consecutive static parallel loops that each
/// indexing map reads as one contiguous run of results, in order, or not
/// at all, and that the second input reads and the first does not (the
/// N loops of a split projection).
SmallVector<ReassociationIndices> parallelRuns(linalg::GenericOp op) {
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  SmallVector<utils::IteratorType> types = op.getIteratorTypesArray();
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  // Whether loop d + 1 continues loop d's run in every map.
  auto continues = [&](unsigned d) {
    for (AffineMap map : maps) {
      std::optional<unsigned> at = map.getResultPosition(
          getAffineDimExpr(d, op.getContext()));
      std::optional<unsigned> next = map.getResultPosition(
          getAffineDimExpr(d + 1, op.getContext()));
      if (at.has_value() != next.has_value() || (at && *next != *at + 1))
        return false;
    }
    return true;
  };
  auto usable = [&](unsigned d) {
    return types[d] == utils::IteratorType::parallel &&
           !ShapedType::isDynamic(ranges[d]);
  };
  SmallVector<ReassociationIndices> runs;
  for (unsigned d = 0; d < types.size(); ++d) {
    if (!usable(d))
      continue;
    ReassociationIndices run = {int64_t(d)};
    while (d + 1 < types.size() && usable(d + 1) && continues(d))
      run.push_back(++d);
    auto reads = [&](AffineMap map) {
      return map.getResultPosition(
                 getAffineDimExpr(run.front(), op.getContext()))
          .has_value();
    };
    if (run.size() > 1 && reads(maps[1]) && !reads(maps[0]))
      runs.push_back(run);
  }
  return runs;
}

struct KilnGpuCollapseContractionLoopsPass final
    : kiln::impl::KilnGpuCollapseContractionLoopsBase<
          KilnGpuCollapseContractionLoopsPass> {
  void runOnOperation() override {
    SmallVector<std::pair<linalg::GenericOp, SmallVector<ReassociationIndices>>>
        found;
    getOperation().walk([&](linalg::GenericOp op) {
      // (Both upstream helpers need projected permutations: a broadcast
      // unit dim read at constant 0 is not one.)
      if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
          !isMultiplyAccumulate(op) ||
          !llvm::all_of(op.getIndexingMapsArray(), [](AffineMap m) {
            return m.isProjectedPermutation();
          }))
        return;
      SmallVector<ReassociationIndices> runs = parallelRuns(op);
      std::optional<ReassociationIndices> run = reductionRun(op);
      // Sizes inside the run must be static for the views.
      SmallVector<int64_t> ranges = op.getStaticLoopRanges();
      if (run && linalg::areDimSequencesPreserved(op.getIndexingMapsArray(),
                                                  {*run}) &&
          llvm::none_of(*run, [&](int64_t d) {
            return ShapedType::isDynamic(ranges[d]);
          }))
        runs.push_back(*run);
      llvm::sort(runs, [](const ReassociationIndices &a,
                          const ReassociationIndices &b) {
        return a.front() < b.front();
      });
      if (runs.empty() ||
          !linalg::areDimSequencesPreserved(op.getIndexingMapsArray(), runs))
        return;
      found.push_back({op, runs});
    });
    IRRewriter rewriter(&getContext());
    llvm::DenseSet<Value> collapsedResults;
    for (auto &[op, runs] : found) {
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::CollapseResult> collapsed =
          linalg::collapseOpIterationDims(cast<linalg::LinalgOp>(*op), runs,
                                          rewriter);
      if (failed(collapsed))
        continue;
      for (Value result : collapsed->collapsedOp->getResults())
        collapsedResults.insert(result);
      rewriter.replaceOp(op, collapsed->results);
    }
    if (found.empty())
      return;
    // The weights' views fold back into the constants they view (the
    // collapse of the expand that fusion made), so later passes that lay
    // out weights see constants; a collapsed result's zero fill becomes a
    // fill of the collapsed tensor again, which dispatch formation keeps
    // with its contraction.
    RewritePatternSet patterns(&getContext());
    linalg::FillOp::getCanonicalizationPatterns(patterns, &getContext());
    // An elementwise consumer of a result whose N loops were collapsed
    // (the rounding of a narrow product) reads it collapsed too, so the
    // GEMM's dispatch can take it as its epilogue.
    linalg::populateFoldReshapeOpsByCollapsingPatterns(
        patterns, [&](OpOperand *operand) {
          auto expand = operand->get().getDefiningOp<tensor::ExpandShapeOp>();
          auto consumer = dyn_cast<linalg::GenericOp>(operand->getOwner());
          return expand && consumer &&
                 collapsedResults.contains(expand.getSrc()) &&
                 consumer.getNumLoops() == consumer.getNumParallelLoops();
        });
    tensor::EmptyOp::getCanonicalizationPatterns(patterns, &getContext());
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, &getContext());
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, &getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
