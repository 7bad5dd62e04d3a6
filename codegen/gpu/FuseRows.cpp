//===- FuseRows.cpp - elementwise neighbours into row-fused dispatches ----===//
//
// A transformer's residual add, the layer norm after it and the cast of the
// norm's output to the GEMMs' operand type are three kernels after dispatch
// formation: the sum goes to memory and is read back by the norm, whose
// output is read back by the cast. The row-fused strategy holds a row on
// chip through any sequence of row-wise steps, so the elementwise
// neighbours of a row-fused dispatch move into it:
//
// - its elementwise producers (one generic each): the merged dispatch reads
//   the producer's inputs and computes the value in registers; when others
//   read the value too (the residual stream), the dispatch yields it as an
//   extra result, stored from registers as the row goes by;
// - its elementwise consumer (one generic reading the result with the
//   identity map, its only user), as fuse-epilogues does for GEMMs.
//
// Softmax's scale and mask before it fold the same way. And a norm that an
// exporter decomposed (LLaMA's RMSNorm: Pow, ReduceMean, Add, Sqrt, Div,
// Mul) arrives as a row-reduce dispatch (the sum of squares), per-row
// elementwise dispatches and one over the whole rows reading the per-row
// value broadcast: the chain becomes one row-fused dispatch first. The
// merged dispatch sits where the row-fused one was (or where the consumer
// was) and keeps
// the row-fused configuration; a producer is merged only when its other
// users come after that place.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUFUSEROWS
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The dispatch's one elementwise generic (static, all-parallel, identity
/// output map, scalar body), yielded as its only result; the rest of its
/// body is what dispatch formation clones. Null otherwise.
linalg::GenericOp elementwiseOf(DispatchOp dispatch) {
  linalg::GenericOp generic = soleGenericOf(dispatch);
  if (!generic || generic.getNumDpsInits() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops() ||
      !hasScalarBody(generic) ||
      llvm::any_of(generic.getStaticLoopRanges(), ShapedType::isDynamic) ||
      !generic.getMatchingIndexingMap(generic.getDpsInitOperand(0))
           .isIdentity() ||
      !generic.getMatchingBlockArgument(generic.getDpsInitOperand(0))
           .use_empty())
    return nullptr;
  return generic;
}

/// The reduction over the last loop that is a row-reduce dispatch's one
/// generic (static, f32, at most 32 warps of 32 elements per lane: the
/// row-fused strategy's reach), or null.
linalg::GenericOp lastDimReductionOf(DispatchOp dispatch) {
  if (strategyOf(dispatch) != kRowReduce)
    return nullptr;
  // One generic, yielded; its init filled with a scalar.
  linalg::GenericOp generic = soleGenericOf(dispatch, /*allowFills=*/true);
  if (!generic ||
      generic.getNumDpsInits() != 1 || generic.getNumReductionLoops() != 1 ||
      generic.getIteratorTypesArray().back() !=
          utils::IteratorType::reduction ||
      llvm::any_of(generic.getStaticLoopRanges(), ShapedType::isDynamic) ||
      !getElementTypeOrSelf(generic.getDpsInits()[0].getType()).isF32())
    return nullptr;
  int64_t length = generic.getStaticLoopRanges().back();
  if (length <= 1 || length > 32 * 32 * 32)
    return nullptr;
  return generic;
}

struct KilnGpuFuseRowsPass final
    : kiln::impl::KilnGpuFuseRowsBase<KilnGpuFuseRowsPass> {
  void runOnOperation() override {
    // Decomposed norms (an exporter's RMSNorm: a sum of squares, a per-row
    // step, the row scaled) become row-fused dispatches first.
    SmallVector<DispatchOp> reductions;
    getOperation().walk([&](DispatchOp dispatch) {
      if (lastDimReductionOf(dispatch))
        reductions.push_back(dispatch);
    });
    for (DispatchOp reduction : reductions)
      fuseRowChain(reduction);

    SmallVector<DispatchOp> rows;
    getOperation().walk([&](DispatchOp dispatch) {
      if (strategyOf(dispatch) == kRowFused)
        rows.push_back(dispatch);
    });
    for (DispatchOp row : rows) {
      row = fuseProducers(row);
      fuseConsumer(row);
    }
  }

  /// A row reduction (sum of squares) whose per-row result goes through
  /// per-row elementwise steps (mean, + eps, rsqrt) to one elementwise
  /// step over the whole rows that reads it broadcast along the row (x
  /// times it): one row-fused dispatch, the row read once per step from
  /// cache instead of a kernel per step. Nothing changes unless the chain
  /// ends in such a full-row step.
  void fuseRowChain(DispatchOp reduction) {
    linalg::GenericOp generic = lastDimReductionOf(reduction);
    SmallVector<int64_t> ranges = generic.getStaticLoopRanges();
    int64_t length = ranges.back();
    int64_t rows = 1;
    for (int64_t r : ArrayRef<int64_t>(ranges).drop_back())
      rows *= r;
    SmallVector<DispatchOp> chain;
    Value value = reduction->getResult(0);
    while (true) {
      if (!value.hasOneUse())
        return;
      auto consumer = dyn_cast<DispatchOp>(*value.user_begin());
      if (!consumer || consumer->getBlock() != reduction->getBlock() ||
          llvm::count(consumer.getInputs(), value) != 1)
        return;
      linalg::GenericOp step = elementwiseOf(consumer);
      unsigned position = llvm::find(consumer.getInputs(), value) -
                          consumer.getInputs().begin();
      BlockArgument arg = consumer.getBody().front().getArgument(position);
      if (!step || !arg.hasOneUse() || *arg.user_begin() != step.getOperation())
        return;
      OpOperand *read = &*arg.use_begin();
      if (!step.isDpsInput(read))
        return;
      // Every other input comes from outside the chain.
      if (llvm::any_of(consumer.getInputs(), [&](Value v) {
            return v != value &&
                   llvm::any_of(chain, [&](DispatchOp d) {
                     return v.getDefiningOp() == d.getOperation();
                   });
          }))
        return;
      SmallVector<int64_t> stepRanges = step.getStaticLoopRanges();
      if (stepRanges.empty())
        return; // a scalar step: nothing of a row
      int64_t stepRows = 1;
      for (int64_t r : ArrayRef<int64_t>(stepRanges).drop_back())
        stepRows *= r;
      AffineMap map = step.getMatchingIndexingMap(read);
      chain.push_back(consumer);
      if (map.isIdentity() && stepRows * stepRanges.back() == rows) {
        value = consumer->getResult(0); // a per-row step
        continue;
      }
      // The full-row step reads the per-row value at every element of the
      // row: the same loops but the last, which it drops or reads at 0.
      unsigned n = stepRanges.size();
      bool broadcast = stepRanges.back() == length && stepRows == rows &&
                       !map.isFunctionOfDim(n - 1);
      for (auto [i, e] : llvm::enumerate(map.getResults())) {
        auto dim = dyn_cast<AffineDimExpr>(e);
        auto c = dyn_cast<AffineConstantExpr>(e);
        broadcast &= (dim && dim.getPosition() == i && i + 1 < n) ||
                     (c && c.getValue() == 0);
      }
      if (!broadcast)
        return;
      break;
    }
    // warp x rows_per_block threads, as the row-reduce configuration says.
    DictionaryAttr old = reduction.getConfigAttr();
    int64_t warp = cast<IntegerAttr>(old.get("warp")).getInt();
    int64_t perBlock = cast<IntegerAttr>(old.get("rows_per_block")).getInt();
    Builder b(reduction.getContext());
    DictionaryAttr config = rowFusedConfig(b, length, warp, warp * perBlock);
    DispatchOp merged = reduction;
    for (DispatchOp consumer : chain)
      merged = fuseDispatches(merged, consumer, config);
  }

  /// Merges the elementwise dispatches that produce `row`'s inputs; returns
  /// the dispatch that now does `row`'s work.
  DispatchOp fuseProducers(DispatchOp row) {
    bool changed = true;
    while (changed) {
      changed = false;
      for (Value input : row.getInputs()) {
        auto producer = input.getDefiningOp<DispatchOp>();
        if (!producer || producer->getBlock() != row->getBlock() ||
            !elementwiseOf(producer) ||
            strategyOf(producer) != kElementwise)
          continue;
        // Others that read the value must come after the merged dispatch.
        bool others = false, ordered = true;
        for (Operation *user : input.getUsers()) {
          if (user == row.getOperation())
            continue;
          others = true;
          ordered &= row->isBeforeInBlock(user);
        }
        if (!ordered)
          continue;
        unsigned rowResults = row->getNumResults();
        DispatchOp merged =
            mergeDispatches(producer, row, row, {others}, row.getConfigAttr());
        row->replaceAllUsesWith(
            merged->getResults().take_front(rowResults));
        if (others)
          input.replaceAllUsesWith(merged->getResult(rowResults));
        row->erase();
        producer->erase();
        row = merged;
        changed = true;
        break;
      }
    }
    return row;
  }

  /// Merges the elementwise dispatch that is the only reader of one of
  /// `row`'s results.
  void fuseConsumer(DispatchOp row) {
    for (OpResult result : row->getResults()) {
      if (!result.hasOneUse())
        continue;
      auto consumer = dyn_cast<DispatchOp>(*result.user_begin());
      if (!consumer || consumer->getBlock() != row->getBlock() ||
          strategyOf(consumer) != kElementwise || !elementwiseOf(consumer) ||
          llvm::count(consumer.getInputs(), result) != 1)
        continue;
      // The consumer's other inputs must not come from `row`, and it reads
      // the result with the identity map.
      if (llvm::any_of(consumer.getInputs(), [&](Value v) {
            return v != result && v.getDefiningOp() == row.getOperation();
          }))
        continue;
      unsigned position =
          llvm::find(consumer.getInputs(), result) - consumer.getInputs().begin();
      BlockArgument arg = consumer.getBody().front().getArgument(position);
      linalg::GenericOp generic = elementwiseOf(consumer);
      if (!arg.hasOneUse() || *arg.user_begin() != generic.getOperation() ||
          !epilogueAccepts(generic, arg))
        continue;
      // Row's other results are read after the merged dispatch.
      if (llvm::any_of(row->getResults(), [&](OpResult r) {
            return r != result &&
                   llvm::any_of(r.getUsers(), [&](Operation *user) {
                     return !consumer->isBeforeInBlock(user);
                   });
          }))
        continue;
      // Yields: the consumer's result, then row's other results.
      SmallVector<bool> keep;
      for (OpResult r : row->getResults())
        keep.push_back(r != result);
      DispatchOp merged =
          mergeDispatches(row, consumer, consumer, keep, row.getConfigAttr());
      consumer->replaceAllUsesWith(merged->getResults().take_front(1));
      unsigned next = 1;
      for (OpResult r : row->getResults())
        if (r != result)
          r.replaceAllUsesWith(merged->getResult(next++));
      consumer->erase();
      row->erase();
      return;
    }
  }
};

} // namespace
