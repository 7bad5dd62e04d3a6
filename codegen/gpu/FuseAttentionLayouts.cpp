//===- FuseAttentionLayouts.cpp - head splits and merges into flash -------===//
//
// Between a transformer's QKV projection and its attention there is only
// data movement: the projection's [B, S, 3·H·D] result is split into q, k
// and v (gathers), each viewed as [B, S, H, D] and transposed to the
// [B, H, S, D] that kiln.attention takes; after it, the [B, H, S, D] result
// is transposed back for the output projection. After dispatch formation
// each step is a kernel of its own (GPT-2: six per layer before attention,
// one after), each reading and writing the whole tensor.
//
// The flash kernel reads its operands with 16-byte copies at any strides
// and writes its result through any strides, so those steps move into its
// dispatch: a producer dispatch that only moves data (one linalg.transpose,
// or one generic that yields an input element or a tensor.extract at
// indices computed from the loop indices) and that only the flash
// dispatch reads is merged into it, repeatedly, and so is a consumer that
// only permutes the result. Inside the kernel the flash strategy reads
// them as views of the projection's buffer (and writes the destination
// through one); where it cannot (strides it cannot copy in 16-byte
// chunks), they stay as steps of the kernel, as correct as before.
//
// The mma.sync kernel loads its tiles with threads, so it can also compute
// them: a producer whose generic computes each element from reads alone
// (LLaMA's rotary embeddings of q and k: the projection at the element
// and its partner, the cos and sin tables) moves in too, and the kernel
// evaluates it where it loads a tile (FlashAttention.cpp). The Hopper
// kernel's TMA loads cannot; it evaluates a computed Q with its threads
// (Q is loaded once), and takes movers only for K and V.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/BufferViews.h"
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUFUSEATTENTIONLAYOUTS
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The one op of a single-result dispatch that moves data (besides what
/// dispatch formation clones), yielded as its result; null otherwise. With
/// `computed`, also a generic that computes its elements from what it
/// reads with tensor.extract (computesElements with no inputs: a rotary
/// embedding; an elementwise op on whole operands, such as a cast, stays a
/// vectorized kernel of its own).
Operation *moverOf(DispatchOp dispatch, bool computed = false) {
  if (dispatch->getNumResults() != 1)
    return nullptr;
  Operation *mover = nullptr;
  for (Operation &op : dispatch.getBody().front().without_terminator()) {
    if (isa<tensor::EmptyOp, arith::ConstantOp>(op))
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(op);
    if (mover ||
        !(isa<linalg::TransposeOp>(op) ||
          (generic && (movesData(generic) ||
                       (computed && generic.getNumDpsInputs() == 0 &&
                        computesElements(generic))))))
      return nullptr;
    mover = &op;
  }
  Operation *yield = dispatch.getBody().front().getTerminator();
  if (!mover || yield->getOperand(0) != mover->getResult(0))
    return nullptr;
  return mover;
}

struct KilnGpuFuseAttentionLayoutsPass final
    : kiln::impl::KilnGpuFuseAttentionLayoutsBase<
          KilnGpuFuseAttentionLayoutsPass> {
  void runOnOperation() override {
    SmallVector<DispatchOp> flash;
    getOperation().walk([&](DispatchOp dispatch) {
      if (strategyOf(dispatch).starts_with("flash-attention"))
        flash.push_back(dispatch);
    });
    for (DispatchOp attention : flash)
      fuseConsumer(fuseProducers(attention));
  }

  /// Merges the data-movement dispatches only `attention` reads, and those
  /// only they read, into it; returns the dispatch doing its work. The
  /// mma.sync kernel, which loads its tiles with threads, also takes a
  /// producer that computes its elements (a rotary embedding of q or k):
  /// it evaluates it where it loads a tile; the Hopper kernel does so for
  /// q only.
  DispatchOp fuseProducers(DispatchOp attention) {
    bool mmaSync = strategyOf(attention) == kFlashAttentionMmaSync;
    bool changed = true;
    while (changed) {
      changed = false;
      for (auto [i, input] : llvm::enumerate(attention.getInputs())) {
        auto producer = input.getDefiningOp<DispatchOp>();
        // The Hopper kernel computes Q alone (its K and V come by TMA).
        bool computed = mmaSync || isQueryOf(attention, i);
        if (!producer || producer->getBlock() != attention->getBlock() ||
            !moverOf(producer, computed) ||
            llvm::any_of(input.getUsers(), [&](Operation *user) {
              return user != attention.getOperation();
            }))
          continue;
        attention =
            fuseDispatches(producer, attention, attention.getConfigAttr());
        changed = true;
        break;
      }
    }
    return attention;
  }

  /// Whether input `i` of the dispatch is its attention's query.
  static bool isQueryOf(DispatchOp dispatch, size_t i) {
    Value arg = dispatch.getBody().front().getArgument(i);
    return llvm::any_of(arg.getUsers(), [&](Operation *user) {
      auto attention = dyn_cast<AttentionOp>(user);
      return attention && attention.getQuery() == arg;
    });
  }

  /// Merges the dispatch that only permutes `attention`'s result, when it
  /// is the result's only reader.
  void fuseConsumer(DispatchOp attention) {
    if (attention->getNumResults() != 1 || !attention->hasOneUse())
      return;
    auto consumer = dyn_cast<DispatchOp>(*attention->user_begin());
    if (!consumer || consumer->getBlock() != attention->getBlock() ||
        consumer.getInputs().size() != 1)
      return;
    Operation *mover = moverOf(consumer);
    if (!mover)
      return;
    // It reads the whole result as an operand (transpose, permuted copy),
    // not by gathering.
    Value arg = consumer.getBody().front().getArgument(0);
    auto generic = dyn_cast<linalg::GenericOp>(mover);
    if (!arg.hasOneUse() || *arg.user_begin() != mover ||
        (generic && generic.getNumDpsInputs() != 1))
      return;
    fuseDispatches(attention, consumer, attention.getConfigAttr());
  }
};

} // namespace
