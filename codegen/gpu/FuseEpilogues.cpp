//===- FuseEpilogues.cpp - elementwise consumers into the GEMM dispatch ---===//
//
// After dispatch formation a GEMM's bias, activation, residual add and
// output cast are a second kernel that reads the GEMM's f32 result back
// from memory. When the GEMM's strategy applies an epilogue in registers
// (gemm-mma-sync, gemm-small-m), that consumer moves into the GEMM's dispatch: one
// kernel, and the f32 intermediate never reaches memory.
//
// The consumer must be one elementwise generic (epilogueAccepts) that is
// the GEMM result's only user; what else its dispatch holds is what
// dispatch formation clones (empty tensors, constants, views). The merged
// dispatch sits where the consumer was (its operands are all defined
// there) and keeps the GEMM's configuration.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUFUSEEPILOGUES
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

bool kiln::epilogueAccepts(linalg::GenericOp consumer, Value acc) {
  // Loops may be symbolic (a GEMM with a symbolic M guards its stores).
  if (consumer.getNumDpsInits() != 1 ||
      consumer.getNumParallelLoops() != consumer.getNumLoops() ||
      !hasScalarBody(consumer))
    return false;
  OpOperand *init = consumer.getDpsInitOperand(0);
  if (!consumer.getMatchingIndexingMap(init).isIdentity() ||
      !consumer.getMatchingBlockArgument(init).use_empty())
    return false;
  unsigned reads = 0;
  for (OpOperand *input : consumer.getDpsInputOperands()) {
    AffineMap map = consumer.getMatchingIndexingMap(input);
    for (AffineExpr e : map.getResults()) {
      auto c = dyn_cast<AffineConstantExpr>(e);
      if (!isa<AffineDimExpr>(e) && !(c && c.getValue() == 0))
        return false;
    }
    if (input->get() != acc)
      continue;
    if (!map.isIdentity())
      return false;
    ++reads;
  }
  return reads == 1;
}

linalg::GenericOp kiln::soleGenericOf(DispatchOp dispatch, bool allowFills) {
  if (dispatch->getNumResults() != 1)
    return nullptr;
  linalg::GenericOp generic;
  for (Operation &op : dispatch.getBody().front().without_terminator()) {
    if (auto g = dyn_cast<linalg::GenericOp>(op)) {
      if (generic)
        return nullptr;
      generic = g;
      continue;
    }
    if (allowFills && isa<linalg::FillOp>(op))
      continue;
    if (op.getNumRegions() || isa<linalg::LinalgOp>(op))
      return nullptr;
  }
  auto yield = cast<YieldOp>(dispatch.getBody().front().getTerminator());
  if (!generic || yield->getOperand(0) != generic.getResult(0))
    return nullptr;
  return generic;
}

namespace {

/// The single generic of `dispatch`'s body that takes the place of the
/// block argument `arg` in an epilogue.
linalg::GenericOp epilogueOf(DispatchOp dispatch, BlockArgument arg) {
  linalg::GenericOp generic = soleGenericOf(dispatch);
  if (!generic || !arg.hasOneUse() || *arg.user_begin() != generic ||
      !epilogueAccepts(generic, arg))
    return nullptr;
  return generic;
}

struct KilnGpuFuseEpiloguesPass final
    : kiln::impl::KilnGpuFuseEpiloguesBase<KilnGpuFuseEpiloguesPass> {
  void runOnOperation() override {
    SmallVector<DispatchOp> gemms;
    getOperation().walk([&](DispatchOp dispatch) {
      StringRef strategy = strategyOf(dispatch);
      if ((strategy == kGemmMmaSync || strategy == kGemmSmallM ||
           strategy == kGemmWgmma) &&
          dispatch->getNumResults() == 1)
        gemms.push_back(dispatch);
    });
    for (DispatchOp gemm : gemms)
      fuse(gemm);
  }

  void fuse(DispatchOp gemm) {
    Value result = gemm->getResult(0);
    if (!result.hasOneUse())
      return;
    auto consumer = dyn_cast<DispatchOp>(*result.user_begin());
    if (!consumer || consumer->getBlock() != gemm->getBlock())
      return;
    // The consumer's block argument for the GEMM's result (it reads it as
    // one operand).
    auto position = llvm::find(consumer.getInputs(), result) -
                    consumer.getInputs().begin();
    if (llvm::count(consumer.getInputs(), result) != 1)
      return;
    Block &consumerBody = consumer.getBody().front();
    if (!epilogueOf(consumer, consumerBody.getArgument(position)))
      return;

    fuseDispatches(gemm, consumer, gemm.getConfigAttr());
  }
};

} // namespace
