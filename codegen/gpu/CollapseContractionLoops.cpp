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

struct KilnGpuCollapseContractionLoopsPass final
    : kiln::impl::KilnGpuCollapseContractionLoopsBase<
          KilnGpuCollapseContractionLoopsPass> {
  void runOnOperation() override {
    SmallVector<std::pair<linalg::GenericOp, ReassociationIndices>> found;
    getOperation().walk([&](linalg::GenericOp op) {
      // (Both upstream helpers need projected permutations: a broadcast
      // unit dim read at constant 0 is not one.)
      if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
          !isMultiplyAccumulate(op) ||
          !llvm::all_of(op.getIndexingMapsArray(), [](AffineMap m) {
            return m.isProjectedPermutation();
          }))
        return;
      std::optional<ReassociationIndices> run = reductionRun(op);
      // Sizes inside the run must be static for the views.
      if (!run || !linalg::areDimSequencesPreserved(op.getIndexingMapsArray(),
                                                     {*run}))
        return;
      SmallVector<int64_t> ranges = op.getStaticLoopRanges();
      if (llvm::any_of(*run,
                       [&](int64_t d) { return ShapedType::isDynamic(ranges[d]); }))
        return;
      found.push_back({op, *run});
    });
    IRRewriter rewriter(&getContext());
    for (auto &[op, run] : found) {
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::CollapseResult> collapsed =
          linalg::collapseOpIterationDims(cast<linalg::LinalgOp>(*op), {run},
                                          rewriter);
      if (failed(collapsed))
        continue;
      rewriter.replaceOp(op, collapsed->results);
    }
    if (found.empty())
      return;
    // The weights' views fold back into the constants they view (the
    // collapse of the expand that fusion made), so later passes that lay
    // out weights see constants.
    RewritePatternSet patterns(&getContext());
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, &getContext());
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, &getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
