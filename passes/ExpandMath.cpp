//===- ExpandMath.cpp - math functions as polynomials ---------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_KILNEXPANDMATH
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

struct KilnExpandMathPass final
    : kiln::impl::KilnExpandMathBase<KilnExpandMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace
