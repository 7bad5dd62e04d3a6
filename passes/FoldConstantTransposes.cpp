//===- FoldConstantTransposes.cpp - lay out weights at compile time -------===//
#include "passes/Passes.h"

#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_KILNFOLDCONSTANTTRANSPOSES
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Permutes a dense row-major buffer of `shape` (elements of `elementBytes`)
/// so that result dim i is source dim perm[i].
std::vector<char> permuteBytes(ArrayRef<char> source, ArrayRef<int64_t> shape,
                               ArrayRef<int64_t> perm, size_t elementBytes) {
  int64_t rank = shape.size();
  SmallVector<int64_t> sourceStrides(rank, 1);
  for (int64_t i = rank - 2; i >= 0; --i)
    sourceStrides[i] = sourceStrides[i + 1] * shape[i + 1];
  SmallVector<int64_t> resultShape, strideOfResultDim;
  for (int64_t p : perm) {
    resultShape.push_back(shape[p]);
    strideOfResultDim.push_back(sourceStrides[p]);
  }
  int64_t count = 1;
  for (int64_t d : shape)
    count *= d;
  std::vector<char> result(count * elementBytes);
  SmallVector<int64_t> index(rank, 0);
  int64_t sourceOffset = 0;
  for (int64_t linear = 0; linear < count; ++linear) {
    std::memcpy(result.data() + linear * elementBytes,
                source.data() + sourceOffset * elementBytes, elementBytes);
    // Odometer increment over the result index, tracking the source offset.
    for (int64_t d = rank - 1; d >= 0; --d) {
      sourceOffset += strideOfResultDim[d];
      if (++index[d] < resultShape[d])
        break;
      sourceOffset -= strideOfResultDim[d] * resultShape[d];
      index[d] = 0;
    }
  }
  return result;
}

struct FoldTransposeOfConstant final : OpRewritePattern<linalg::TransposeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::TransposeOp op,
                                PatternRewriter &rewriter) const override {
    if (op->getNumResults() != 1)
      return rewriter.notifyMatchFailure(op, "not on tensors");
    auto constant = op.getInput().getDefiningOp<arith::ConstantOp>();
    if (!constant)
      return rewriter.notifyMatchFailure(op, "input is not a constant");
    auto sourceType = cast<RankedTensorType>(constant.getType());
    auto resultType = cast<RankedTensorType>(op->getResult(0).getType());
    Type element = sourceType.getElementType();
    if (!sourceType.hasStaticShape() || !element.isIntOrFloat() ||
        element.getIntOrFloatBitWidth() % 8 != 0)
      return rewriter.notifyMatchFailure(op, "unsupported element type");
    size_t elementBytes = element.getIntOrFloatBitWidth() / 8;

    Attribute folded;
    if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue())) {
      if (dense.isSplat()) {
        folded = dense.resizeSplat(resultType);
      } else {
        std::vector<char> bytes =
            permuteBytes(dense.getRawData(), sourceType.getShape(),
                         op.getPermutation(), elementBytes);
        folded = DenseElementsAttr::getFromRawBuffer(resultType, bytes);
      }
    } else if (auto resource =
                   dyn_cast<DenseResourceElementsAttr>(constant.getValue())) {
      AsmResourceBlob *blob = resource.getRawHandle().getBlob();
      if (!blob)
        return rewriter.notifyMatchFailure(op, "resource without data");
      std::vector<char> bytes =
          permuteBytes(blob->getData(), sourceType.getShape(),
                       op.getPermutation(), elementBytes);
      folded = DenseResourceElementsAttr::get(
          resultType, (resource.getRawHandle().getKey() + ".T").str(),
          HeapAsmResourceBlob::allocateAndCopyWithAlign(
              ArrayRef<char>(bytes.data(), bytes.size()), alignof(uint64_t)));
    } else {
      return rewriter.notifyMatchFailure(op, "unknown constant kind");
    }
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(op, resultType,
                                                   cast<TypedAttr>(folded));
    return success();
  }
};

struct KilnFoldConstantTransposesPass final
    : kiln::impl::KilnFoldConstantTransposesBase<
          KilnFoldConstantTransposesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldTransposeOfConstant>(&getContext());
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace
