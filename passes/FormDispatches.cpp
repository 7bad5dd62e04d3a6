//===- FormDispatches.cpp - one kiln.dispatch per kernel ------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/SetVector.h"

namespace kiln {
#define GEN_PASS_DEF_KILNFORMDISPATCHES
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

bool isReshapeView(Operation *op) {
  return isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp>(op);
}

/// A slice written into session state (a KV cache, an argument marked
/// `kiln.state`): the launch program copies it into place, no kernel.
bool isStateWrite(Operation *op) {
  auto insert = dyn_cast<tensor::InsertSliceOp>(op);
  auto arg = insert ? dyn_cast<BlockArgument>(insert.getDest()) : nullptr;
  auto func = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                  : nullptr;
  return func && arg.getOwner()->isEntryBlock() &&
         func.getArgAttr(arg.getArgNumber(), "kiln.state");
}

/// A session state, as an argument or as written by a state write.
bool isStateValue(Value value) {
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    auto func = dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp());
    return func && arg.getOwner()->isEntryBlock() &&
           func.getArgAttr(arg.getArgNumber(), "kiln.state");
  }
  Operation *def = value.getDefiningOp();
  return def && isStateWrite(def);
}

/// Ops that never become the root of a dispatch.
bool isNonCompute(Operation *op) {
  auto slice = dyn_cast<tensor::ExtractSliceOp>(op);
  return isStateWrite(op) || (slice && isStateValue(slice.getSource())) || op->hasTrait<OpTrait::ConstantLike>() || isa<tensor::EmptyOp>(op) ||
         isReshapeView(op) || op->hasTrait<OpTrait::IsTerminator>() ||
         isa<DispatchOp>(op) || !op->getBlock() ||
         llvm::none_of(op->getResultTypes(), llvm::IsaPred<RankedTensorType>);
}

struct KilnFormDispatchesPass final
    : kiln::impl::KilnFormDispatchesBase<KilnFormDispatchesPass> {
  using Base::Base;

  /// Whether `value`'s producer is cheap enough to clone into a dispatch.
  bool isClonable(Value value) {
    Operation *def = value.getDefiningOp();
    if (!def)
      return false;
    if (isa<tensor::EmptyOp>(def))
      return true;
    // Sizes of symbolic dims, and scalars computed from them (the element
    // count a mean divides by): computed inside from the tensors they read.
    if (isa<tensor::DimOp>(def) ||
        (def->getNumResults() == 1 &&
         def->getResult(0).getType().isIntOrIndexOrFloat() && isPure(def)))
      return true;
    if (isReshapeView(def))
      return isClonable(def->getOperand(0));
    // A slice of a session state (the cached prefix of a KV cache): the
    // kernel reads it in place from the whole state.
    if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def))
      return isStateValue(slice.getSource());
    if (auto constant = dyn_cast<arith::ConstantOp>(def)) {
      auto dense = dyn_cast<DenseElementsAttr>(constant.getValue());
      if (!isa<ShapedType>(constant.getType()))
        return true; // scalar
      return dense && (dense.isSplat() ||
                       dense.getNumElements() <= maxInlineConstantElements);
    }
    if (auto fill = dyn_cast<linalg::FillOp>(def))
      return isClonable(fill.getOutputs()[0]) &&
             !isa<ShapedType>(fill.getInputs()[0].getType());
    return false;
  }

  LogicalResult formDispatch(Operation *root) {
    // Collect the producers to clone (transitively, in def order) and the
    // values that become operands.
    llvm::SetVector<Operation *> cloned;
    llvm::SetVector<Value> operands;
    std::function<void(Value)> visit = [&](Value value) {
      if (isClonable(value)) {
        Operation *def = value.getDefiningOp();
        if (cloned.contains(def))
          return;
        for (Value operand : def->getOperands())
          visit(operand);
        cloned.insert(def);
        return;
      }
      operands.insert(value);
    };
    for (Value operand : root->getOperands())
      visit(operand);
    // Values the root's regions capture from above (e.g. a scalar).
    root->walk([&](Operation *nested) {
      if (nested == root)
        return;
      for (Value operand : nested->getOperands())
        if (!root->isAncestor(operand.getParentRegion()->getParentOp()))
          visit(operand);
    });

    for (Value operand : operands)
      if (!isa<RankedTensorType>(operand.getType()))
        return root->emitError()
               << "uses the scalar value of type " << operand.getType()
               << " defined outside it; only tensors and constants can cross "
                  "a dispatch boundary";

    OpBuilder builder(root);
    SmallVector<Value> inputs(operands.begin(), operands.end());
    // The kernel strategy is chosen later, by kiln-select-strategies.
    auto dispatch = DispatchOp::create(builder, root->getLoc(),
                                       root->getResultTypes(), inputs,
                                       /*config=*/nullptr);
    Block *body = builder.createBlock(&dispatch.getBody());
    IRMapping mapping;
    for (Value input : inputs)
      mapping.map(input, body->addArgument(input.getType(), input.getLoc()));
    builder.setInsertionPointToStart(body);
    for (Operation *op : cloned)
      builder.clone(*op, mapping);
    Operation *newRoot = builder.clone(*root, mapping);
    YieldOp::create(builder, root->getLoc(), newRoot->getResults());
    root->replaceAllUsesWith(dispatch.getResults());
    root->erase();
    return success();
  }

  void runOnOperation() override {
    SmallVector<Operation *> roots;
    for (Operation &op : getOperation().getBody().front())
      if (!isNonCompute(&op))
        roots.push_back(&op);
    for (Operation *root : roots) {
      // A fill that only initializes other roots' outputs is cloned into
      // those dispatches instead of becoming a kernel of its own.
      if (auto fill = dyn_cast<linalg::FillOp>(root))
        if (isClonable(fill.getResult(0)) &&
            llvm::all_of(fill->getUsers(), [](Operation *user) {
              return isa<linalg::LinalgOp, linalg::SoftmaxOp>(user);
            }) &&
            !fill->use_empty())
          continue;
      if (failed(formDispatch(root)))
        return signalPassFailure();
    }
    // Sizes of symbolic dims read from reshapes and empty tensors fold to
    // the sizes those were built from, so that nothing but dispatches and
    // views is left to compute between kernels.
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    tensor::DimOp::getCanonicalizationPatterns(patterns, ctx);
    memref::populateResolveRankedShapedTypeResultDimsPatterns(patterns);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, ctx);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, ctx);
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
    // Producers that were cloned into every user are now dead.
    for (Operation &op : llvm::make_early_inc_range(
             llvm::reverse(getOperation().getBody().front())))
      if (isOpTriviallyDead(&op))
        op.erase();
  }
};

} // namespace
