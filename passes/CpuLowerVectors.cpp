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
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

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
    prefetchPanels(func);
  }

  /// The GEMM's reduction loop reads one row of a weight panel per step
  /// (`vector.load %W[%panel, %k, 0]` of the whole row). The first row
  /// block that reads a panel takes it from memory, the others from L2;
  /// each step also asks for the row kPrefetchRows ahead (clamped to the
  /// last), one prefetch per 64-byte line, so that the stream arrives
  /// before the FMAs need it.
  static void prefetchPanels(func::FuncOp func) {
    constexpr int64_t kPrefetchRows = 16, kLine = 64;
    func.walk([&](scf::ForOp loop) {
      std::optional<int64_t> upper = getConstantIntValue(loop.getUpperBound());
      std::optional<int64_t> step = getConstantIntValue(loop.getStep());
      if (!upper || !step || *step != 1)
        return;
      Value k = loop.getInductionVar();
      SmallVector<vector::LoadOp> rows;
      for (Operation &op : loop.getBody()->without_terminator()) {
        auto load = dyn_cast<vector::LoadOp>(op);
        if (!load)
          continue;
        auto type = dyn_cast<MemRefType>(load.getBase().getType());
        ValueRange indices = load.getIndices();
        if (!type || type.getRank() != 3 || !type.hasStaticShape() ||
            indices.size() != 3 || indices[1] != k ||
            load.getVectorType().getNumElements() != type.getDimSize(2) ||
            !matchPattern(indices[2], m_Zero()))
          continue;
        rows.push_back(load);
      }
      for (vector::LoadOp load : rows) {
        OpBuilder b(load);
        Location loc = load.getLoc();
        auto type = cast<MemRefType>(load.getBase().getType());
        Value ahead = arith::MinUIOp::create(
            b, loc,
            arith::AddIOp::create(
                b, loc, k, arith::ConstantIndexOp::create(b, loc, kPrefetchRows)),
            arith::ConstantIndexOp::create(b, loc, *upper - 1));
        int64_t bytes =
            type.getDimSize(2) * type.getElementTypeBitWidth() / 8;
        int64_t perLine = kLine * 8 / type.getElementTypeBitWidth();
        for (int64_t at = 0; at * kLine < bytes; ++at)
          memref::PrefetchOp::create(
              b, loc, load.getBase(),
              ValueRange{load.getIndices()[0], ahead,
                         arith::ConstantIndexOp::create(b, loc, at * perLine)},
              /*isWrite=*/false, /*localityHint=*/3, /*isDataCache=*/true);
      }
    });
  }
};

} // namespace
