//===- DecomposeAggregates.cpp - softmax and friends into generics --------===//
#include "passes/Passes.h"

#include "dialects/kiln/Decompositions.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_KILNDECOMPOSEAGGREGATES
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

struct KilnDecomposeAggregatesPass final
    : kiln::impl::KilnDecomposeAggregatesBase<KilnDecomposeAggregatesPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    SmallVector<linalg::AggregatedOpInterface> aggregates;
    func.walk([&](linalg::AggregatedOpInterface op) {
      aggregates.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::AggregatedOpInterface op : aggregates) {
      rewriter.setInsertionPoint(op);
      FailureOr<SmallVector<Value>> replacements =
          op.decomposeOperation(rewriter);
      if (failed(replacements)) {
        op.emitError() << "cannot decompose '" << op->getName()
                       << "' into structured ops";
        return signalPassFailure();
      }
      rewriter.replaceOp(op, *replacements);
    }
    // Norms a target kept whole (kiln-lower-graph-to-linalg keep-norms):
    // their generics, for the kernel's strategy to run together.
    SmallVector<Operation *> norms;
    func.walk([&](Operation *op) {
      if (isa<LayerNormOp, RmsNormOp>(op))
        norms.push_back(op);
    });
    for (Operation *op : norms) {
      rewriter.setInsertionPoint(op);
      Value result = isa<LayerNormOp>(op)
                         ? decomposeLayerNorm(rewriter, cast<LayerNormOp>(op)).result
                         : decomposeRmsNorm(rewriter, cast<RmsNormOp>(op));
      rewriter.replaceOp(op, result);
    }
  }
};

} // namespace
