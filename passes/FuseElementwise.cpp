//===- FuseElementwise.cpp - elementwise fusion that never recomputes -----===//
//
// Upstream's linalg elementwise fusion folds a producer into any generic
// consumer, including a contraction that reads each produced element many
// times: a GELU feeding a broadcasting MatMul would then be evaluated once
// per multiply-add (768x the work in GPT-2's MLP). Kiln fuses a producer
// only into a consumer that reads each of its elements once (the operand's
// indexing map is a permutation of the consumer's loops); everything else
// of upstream's pass (reshape propagation, canonicalization, constant
// folding) is kept.
//
// A transpose is data movement, never arithmetic: it folds into every
// generic that reads it, whatever the reads (a contraction reads the
// transposed operand in place, through the composed indexing map), so
// `q @ k^T` needs no kernel, and no buffer, for `k^T`.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_KILNFUSEELEMENTWISE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// generic(transpose(x)) -> generic(x) with the operand's indexing map
/// composed with the permutation.
struct FoldTransposeIntoGeneric final : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    for (OpOperand *operand : op.getDpsInputOperands()) {
      auto transpose = operand->get().getDefiningOp<linalg::TransposeOp>();
      if (!transpose || !transpose.hasPureTensorSemantics())
        continue;
      // Result dim i is input dim perm[i]: the input's index perm[i] is
      // what the consumer's map gives for result dim i.
      ArrayRef<int64_t> perm = transpose.getPermutation();
      AffineMap map = op.getMatchingIndexingMap(operand);
      SmallVector<AffineExpr> results(perm.size());
      for (auto [i, p] : llvm::enumerate(perm))
        results[p] = map.getResult(i);
      SmallVector<AffineMap> maps = op.getIndexingMapsArray();
      maps[operand->getOperandNumber()] =
          AffineMap::get(map.getNumDims(), map.getNumSymbols(), results,
                         op.getContext());
      rewriter.modifyOpInPlace(op, [&] {
        operand->set(transpose.getInput());
        op.setIndexingMapsAttr(rewriter.getAffineMapArrayAttr(maps));
      });
      if (transpose->use_empty())
        rewriter.eraseOp(transpose);
      return success();
    }
    return failure();
  }
};

/// Ops a gathered producer's body may hold to be recomputed where it is
/// read (index arithmetic, its one read, a few scalar ops).
constexpr unsigned kMaxInlinedOps = 8;

/// tensor.extract %p[i..] inside a generic, where %p is produced by a
/// transpose or by a cheap gather (an all-parallel generic without inputs
/// that reads through one tensor.extract) that only such reads use: the
/// producer's element is computed right there (linalg.index d taken as
/// i_d), so a chain of gathers (RoPE's rotate-half: transpose, two half
/// slices, one negated, and the concatenation) is one kernel instead of
/// one per step. Each element is computed from the same inputs by the same
/// ops, so the numbers do not change.
struct InlineGatheredProducer final : OpRewritePattern<tensor::ExtractOp> {
  using OpRewritePattern::OpRewritePattern;

  static bool readOnlyByGathers(Value value) {
    return llvm::all_of(value.getUsers(), [](Operation *user) {
      return isa<tensor::ExtractOp>(user) &&
             isa_and_nonnull<linalg::GenericOp>(user->getParentOp());
    });
  }

  LogicalResult matchAndRewrite(tensor::ExtractOp extract,
                                PatternRewriter &rewriter) const override {
    if (!isa_and_nonnull<linalg::GenericOp>(extract->getParentOp()))
      return failure();
    Value tensor = extract.getTensor();
    if (!readOnlyByGathers(tensor))
      return failure();
    SmallVector<Value> indices(extract.getIndices());
    if (auto transpose = tensor.getDefiningOp<linalg::TransposeOp>()) {
      if (!transpose.hasPureTensorSemantics())
        return failure();
      // Output dim i is input dim perm[i].
      SmallVector<Value> source(indices.size());
      for (auto [i, p] : llvm::enumerate(transpose.getPermutation()))
        source[p] = indices[i];
      rewriter.replaceOpWithNewOp<tensor::ExtractOp>(
          extract, transpose.getInput(), source);
      return success();
    }
    auto producer = tensor.getDefiningOp<linalg::GenericOp>();
    // Only a gather itself (no inputs: it reads through tensor.extract),
    // so arithmetic over whole tensors (a bias add a GEMM's epilogue would
    // take) is never duplicated into its readers.
    if (!producer || !producer.hasPureTensorSemantics() ||
        producer.getNumDpsInputs() != 0 ||
        producer->getNumResults() != 1 || producer.getNumDpsInits() != 1 ||
        producer.getNumParallelLoops() != producer.getNumLoops())
      return failure();
    OpOperand *init = producer.getDpsInitOperand(0);
    if (!producer.getMatchingIndexingMap(init).isIdentity() ||
        !producer.getMatchingBlockArgument(init).use_empty())
      return failure();
    Block *body = producer.getBody();
    unsigned ops = 0, reads = 0;
    for (Operation &op : body->without_terminator()) {
      if (op.getNumRegions() || (!isPure(&op) && !isa<tensor::ExtractOp>(op)))
        return failure();
      reads += isa<tensor::ExtractOp>(op);
      ++ops;
    }
    if (ops > kMaxInlinedOps || reads > 1)
      return failure();
    IRMapping mapping;
    for (Operation &op : body->without_terminator()) {
      if (auto index = dyn_cast<linalg::IndexOp>(op)) {
        mapping.map(index.getResult(), indices[index.getDim()]);
        continue;
      }
      rewriter.clone(op, mapping);
    }
    Value yielded = body->getTerminator()->getOperand(0);
    rewriter.replaceOp(extract, mapping.lookupOrDefault(yielded));
    return success();
  }
};

struct KilnFuseElementwisePass final
    : kiln::impl::KilnFuseElementwiseBase<KilnFuseElementwisePass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    RewritePatternSet patterns(context);
    linalg::ControlFusionFn singleUse = [](OpOperand *fused) {
      Operation *producer = fused->get().getDefiningOp();
      return producer && producer->hasOneUse();
    };
    linalg::ControlFusionFn readOnce = [](OpOperand *fused) {
      Operation *producer = fused->get().getDefiningOp();
      if (!producer || !producer->hasOneUse())
        return false;
      auto consumer = dyn_cast<linalg::LinalgOp>(fused->getOwner());
      return !consumer ||
             consumer.getMatchingIndexingMap(fused).isPermutation();
    };
    linalg::populateElementwiseOpsFusionPatterns(patterns, readOnce);
    patterns.add<FoldTransposeIntoGeneric, InlineGatheredProducer>(context);
    linalg::populateFoldReshapeOpsByExpansionPatterns(patterns, singleUse);
    tensor::populateBubbleUpExpandShapePatterns(patterns);
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, context);
    linalg::GenericOp::getCanonicalizationPatterns(patterns, context);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, context);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, context);
    context->getLoadedDialect<linalg::LinalgDialect>()
        ->getCanonicalizationPatterns(patterns);
    linalg::populateConstantFoldLinalgOperations(patterns, singleUse);
    (void)applyPatternsGreedily(getOperation(), std::move(patterns),
                                GreedyRewriteConfig().setUseTopDownTraversal());
  }
};

} // namespace
