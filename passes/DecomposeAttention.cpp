//===- DecomposeAttention.cpp - attention's fallback strategy -------------===//
//
// kiln.attention reaches the kernels whole: dispatch formation makes it the
// root of its own dispatch, so that a kernel strategy can take it as a unit
// (a flash-attention kernel). This pass is the fallback for the kernels no
// such strategy took: the op becomes its decomposition
// (dialects/kiln/Decompositions.cpp, the numerics the graph-level lowering
// had), and its elementwise pieces fuse as the graph pipeline fused them,
// so that the tiling and mapping strategies see the same contractions,
// reductions and elementwise generics as before.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/kiln/Decompositions.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/Passes.h"

namespace kiln {
#define GEN_PASS_DEF_KILNDECOMPOSEATTENTION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

struct KilnDecomposeAttentionPass final
    : kiln::impl::KilnDecomposeAttentionBase<KilnDecomposeAttentionPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    // A strategy that takes attention whole (flash-attention-*) does so
    // after bufferization.
    if (auto config = func->getAttrOfType<DictionaryAttr>("kiln.config"))
      if (auto strategy = config.getAs<StringAttr>("strategy");
          strategy && strategy.getValue().starts_with("flash-attention"))
        return;
    SmallVector<AttentionOp> ops;
    func.walk([&](AttentionOp op) { ops.push_back(op); });
    if (ops.empty())
      return;
    IRRewriter rewriter(&getContext());
    for (AttentionOp op : ops) {
      if (!decompositionHandlesShapes(op)) {
        op.emitError() << "cannot decompose '" << op->getName()
                       << "' with dynamic shapes yet; specialize the model's "
                          "symbolic dims with --dim NAME=VALUE";
        return signalPassFailure();
      }
      rewriter.setInsertionPoint(op);
      rewriter.replaceOp(op, decomposeAttention(rewriter, op).result);
    }
    // The scaling, masking and softmax pieces fuse as they did when the
    // graph pipeline decomposed attention: the same stages, run on this
    // kernel only.
    OpPassManager cleanup(func::FuncOp::getOperationName());
    cleanup.addPass(createCanonicalizerPass());
    cleanup.addPass(createKilnFuseElementwise());
    cleanup.addPass(createCanonicalizerPass());
    cleanup.addPass(createCSEPass());
    if (failed(runPipeline(cleanup, func)))
      return signalPassFailure();
  }
};

} // namespace
