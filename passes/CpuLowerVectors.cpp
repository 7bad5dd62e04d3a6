//===- CpuLowerVectors.cpp - vector ops to LLVM-ready form ----------------===//
#include "passes/Passes.h"

#include "mlir/Conversion/VectorToSCF/VectorToSCF.h"
#include "mlir/Dialect/Linalg/Transforms/Hoisting.h"
#include "mlir/Dialect/MemRef/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/Utils/MemRefUtils.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/Transforms/LoweringPatterns.h"
#include "mlir/Dialect/Vector/Transforms/VectorRewritePatterns.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/LoopInvariantCodeMotionUtils.h"

namespace kiln {
#define GEN_PASS_DEF_KILNCPULOWERVECTORS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

struct KilnCpuLowerVectorsPass final
    : kiln::impl::KilnCpuLowerVectorsBase<KilnCpuLowerVectorsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    // Copies of buffers with symbolic dims or non-contiguous layouts would
    // become calls to a runtime library (memrefCopy) that kernels do not
    // link: they become linalg.copy, which is lowered to loops with the
    // rest.
    func.walk([](memref::CopyOp copy) {
      auto source = cast<MemRefType>(copy.getSource().getType());
      auto target = cast<MemRefType>(copy.getTarget().getType());
      // Contiguous static copies become memcpy in the LLVM lowering.
      if (memref::isStaticShapeAndContiguousRowMajor(source) &&
          memref::isStaticShapeAndContiguousRowMajor(target))
        return;
      OpBuilder b(copy);
      linalg::CopyOp::create(b, copy.getLoc(), copy.getSource(),
                             copy.getTarget());
      copy.erase();
    });
    // Keep matmul accumulators in registers across the reduction loop. The
    // hoisting wants transfers on the base buffer (not on subviews) with
    // loop-invariant indices: fold the subviews into the transfers' indices,
    // then move invariant index math out of the loops.
    {
      RewritePatternSet patterns(&getContext());
      memref::populateFoldMemRefAliasOpPatterns(patterns);
      // Not converging within the iteration limit is not an error here: what
      // is left unlowered is caught by the LLVM conversion, with a message.
      (void)applyPatternsGreedily(func, std::move(patterns));
    }
    func.walk([](LoopLikeOpInterface loop) { moveLoopInvariantCode(loop); });
    linalg::hoistRedundantVectorTransfers(func);

    MLIRContext *ctx = &getContext();
    {
      RewritePatternSet patterns(ctx);
      vector::populateVectorContractLoweringPatterns(
          patterns, vector::VectorContractLowering::OuterProduct);
      vector::populateVectorTransferPermutationMapLoweringPatterns(patterns);
      vector::populateVectorReductionToContractPatterns(patterns);
      // Not converging within the iteration limit is not an error here: what
      // is left unlowered is caught by the LLVM conversion, with a message.
      (void)applyPatternsGreedily(func, std::move(patterns));
    }
    {
      RewritePatternSet patterns(ctx);
      vector::populateVectorOuterProductLoweringPatterns(patterns);
      vector::populateVectorMultiReductionLoweringPatterns(
          patterns, vector::VectorMultiReductionLowering::InnerReduction);
      vector::populateVectorBroadcastLoweringPatterns(patterns);
      // n-D transfers become unrolled 1-D ones, which become loads/stores.
      populateVectorToSCFConversionPatterns(
          patterns,
          VectorTransferToSCFOptions().enableFullUnroll().setTargetRank(1));
      vector::populateVectorTransferLoweringPatterns(patterns,
                                                     /*maxTransferRank=*/1);
      vector::populateVectorTransposeLoweringPatterns(
          patterns, vector::VectorTransposeLowering::EltWise);
      vector::populateVectorShapeCastLoweringPatterns(patterns);
      vector::populateVectorMaskOpLoweringPatterns(patterns);
      // Not converging within the iteration limit is not an error here: what
      // is left unlowered is caught by the LLVM conversion, with a message.
      (void)applyPatternsGreedily(func, std::move(patterns));
    }
  }
};

} // namespace
