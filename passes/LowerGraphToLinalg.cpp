//===- LowerGraphToLinalg.cpp - kiln graph ops to linalg ------------------===//
#include "passes/Passes.h"

#include "dialects/kiln/Decompositions.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_KILNLOWERGRAPHTOLINALG
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// A zero-filled tensor of `type`, the init of a contraction; `sizes` has
/// one value per dim (only the dynamic ones are read).
Value createZeroInit(OpBuilder &b, Location loc, RankedTensorType type,
                     ArrayRef<OpFoldResult> sizes = {}) {
  SmallVector<Value> dynamic;
  for (int64_t i = 0; i < type.getRank(); ++i)
    if (type.isDynamicDim(i))
      dynamic.push_back(cast<Value>(sizes[i]));
  Value empty = tensor::EmptyOp::create(b, loc, type.getShape(),
                                        type.getElementType(), dynamic);
  Value zero = arith::ConstantOp::create(
      b, loc, b.getZeroAttr(type.getElementType()));
  return linalg::FillOp::create(b, loc, zero, empty).getResult(0);
}

/// Collapses all leading dims of `value` into one, keeping the last
/// `keep` dims: [a, b, c, d] with keep = 2 -> [a*b, c, d].
Value collapseLeading(OpBuilder &b, Location loc, Value value, int64_t keep) {
  auto type = cast<RankedTensorType>(value.getType());
  int64_t rank = type.getRank();
  if (rank - keep == 1)
    return value;
  SmallVector<ReassociationIndices> groups;
  ReassociationIndices lead;
  for (int64_t i = 0; i <= rank - keep - 1; ++i)
    lead.push_back(i);
  if (lead.empty())
    lead.push_back(0);
  groups.push_back(lead);
  for (int64_t i = lead.back() + 1; i < rank; ++i)
    groups.push_back({i});
  return tensor::CollapseShapeOp::create(b, loc, value, groups);
}

/// Expands the leading dim of `value` back to the leading dims of `type`,
/// whose sizes are `sizes`.
Value expandLeading(OpBuilder &b, Location loc, Value value,
                    RankedTensorType type, int64_t keep,
                    ArrayRef<OpFoldResult> sizes) {
  if (value.getType() == type)
    return value;
  int64_t rank = type.getRank();
  SmallVector<ReassociationIndices> groups;
  ReassociationIndices lead;
  for (int64_t i = 0; i < rank - keep; ++i)
    lead.push_back(i);
  groups.push_back(lead);
  for (int64_t i = rank - keep; i < rank; ++i)
    groups.push_back({i});
  return tensor::ExpandShapeOp::create(b, loc, type, value, groups, sizes);
}

/// The sizes of `op`'s result: static dims as attributes, symbolic ones
/// as tensor.dim of the operand dim they come from (batch dims from the
/// operand that does not broadcast them, M from lhs, N from rhs).
SmallVector<OpFoldResult> matmulResultSizes(OpBuilder &b, Location loc,
                                            MatmulOp op) {
  RankedTensorType resultType = op.getType();
  int64_t rank = resultType.getRank();
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < rank; ++d) {
    if (!resultType.isDynamicDim(d)) {
      sizes.push_back(b.getIndexAttr(resultType.getDimSize(d)));
      continue;
    }
    Value size;
    for (Value operand : {op.getLhs(), op.getRhs()}) {
      auto type = cast<RankedTensorType>(operand.getType());
      int64_t j = d - (rank - type.getRank());
      if (d == rank - 1 && operand == op.getLhs())
        continue; // N comes from rhs
      if (d == rank - 2 && operand == op.getRhs())
        continue; // M comes from lhs
      if (j >= 0 && type.isDynamicDim(j)) {
        size = tensor::DimOp::create(b, loc, operand, j);
        break;
      }
    }
    sizes.push_back(size);
  }
  return sizes;
}

/// `sum` (accumulated in a wider float type) rounded to `element`, once.
Value roundTo(OpBuilder &b, Location loc, Value sum, Type element) {
  return convertElements(b, loc, sum, element);
}

struct LowerMatmul final : OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MatmulOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value lhs = op.getLhs(), rhs = op.getRhs();
    auto lhsType = cast<RankedTensorType>(lhs.getType());
    auto rhsType = cast<RankedTensorType>(rhs.getType());
    RankedTensorType resultType = op.getType();
    int64_t resultRank = resultType.getRank();
    SmallVector<OpFoldResult> sizes = matmulResultSizes(rewriter, loc, op);
    ArrayRef<int64_t> lhsBatch = lhsType.getShape().drop_back(2);
    ArrayRef<int64_t> rhsBatch = rhsType.getShape().drop_back(2);
    int64_t m = lhsType.getShape()[lhsType.getRank() - 2];
    int64_t n = rhsType.getShape().back();
    Type elementType = resultType.getElementType();
    // Products are summed in the accumulator type (linalg's named
    // contractions extend their operands to the init's element type), then
    // rounded to the element type.
    Type accType = op.getAccumulatorType();
    auto accResultType = RankedTensorType::get(resultType.getShape(), accType);

    // [..., M, K] x [K, N]: fold the batch into M (a view) and use one GEMM.
    if (rhsType.getRank() == 2) {
      Value flatLhs = collapseLeading(rewriter, loc, lhs, 1);
      int64_t rows = cast<RankedTensorType>(flatLhs.getType()).getShape()[0];
      auto flatType = RankedTensorType::get({rows, n}, accType);
      SmallVector<OpFoldResult> flatSizes = {
          tensor::getMixedSize(rewriter, loc, flatLhs, 0), sizes.back()};
      Value product =
          linalg::MatmulOp::create(
              rewriter, loc, ValueRange{flatLhs, rhs},
              createZeroInit(rewriter, loc, flatType, flatSizes))
              .getResult(0);
      product = roundTo(rewriter, loc, product, elementType);
      rewriter.replaceOp(
          op, expandLeading(rewriter, loc, product, resultType, 1, sizes));
      return success();
    }

    // Identical batch dims: fold them into one and use a batched GEMM.
    if (lhsBatch == rhsBatch) {
      Value flatLhs = collapseLeading(rewriter, loc, lhs, 2);
      Value flatRhs = collapseLeading(rewriter, loc, rhs, 2);
      int64_t batch = cast<RankedTensorType>(flatLhs.getType()).getShape()[0];
      auto flatType = RankedTensorType::get({batch, m, n}, accType);
      SmallVector<OpFoldResult> flatSizes = {
          tensor::getMixedSize(rewriter, loc, flatLhs, 0),
          sizes[resultRank - 2], sizes[resultRank - 1]};
      Value product = linalg::BatchMatmulOp::create(
                          rewriter, loc, ValueRange{flatLhs, flatRhs},
                          createZeroInit(rewriter, loc, flatType, flatSizes))
                          .getResult(0);
      product = roundTo(rewriter, loc, product, elementType);
      rewriter.replaceOp(
          op, expandLeading(rewriter, loc, product, resultType, 2, sizes));
      return success();
    }

    // Broadcasting batch dims: a generic contraction whose indexing maps
    // read a size-1 batch dim at index 0, so nothing is materialized.
    MLIRContext *ctx = rewriter.getContext();
    int64_t numLoops = resultRank + 1; // batch..., m, n, k
    AffineExpr mDim = getAffineDimExpr(resultRank - 2, ctx);
    AffineExpr nDim = getAffineDimExpr(resultRank - 1, ctx);
    AffineExpr kDim = getAffineDimExpr(resultRank, ctx);
    auto operandMap = [&](ArrayRef<int64_t> batch, AffineExpr row,
                          AffineExpr col) {
      SmallVector<AffineExpr> exprs;
      int64_t offset = (resultRank - 2) - static_cast<int64_t>(batch.size());
      for (auto [i, size] : llvm::enumerate(batch)) {
        int64_t resultDim = offset + static_cast<int64_t>(i);
        bool broadcast =
            size == 1 && resultType.getShape()[resultDim] != 1;
        exprs.push_back(broadcast ? getAffineConstantExpr(0, ctx)
                                  : getAffineDimExpr(resultDim, ctx));
      }
      exprs.push_back(row);
      exprs.push_back(col);
      return AffineMap::get(numLoops, 0, exprs, ctx);
    };
    SmallVector<AffineExpr> resultExprs;
    for (int64_t i = 0; i < resultRank; ++i)
      resultExprs.push_back(getAffineDimExpr(i, ctx));
    SmallVector<AffineMap> maps = {operandMap(lhsBatch, mDim, kDim),
                                   operandMap(rhsBatch, kDim, nDim),
                                   AffineMap::get(numLoops, 0, resultExprs, ctx)};
    SmallVector<utils::IteratorType> iterators(numLoops,
                                               utils::IteratorType::parallel);
    iterators.back() = utils::IteratorType::reduction;
    bool isFloat = isa<FloatType>(elementType);
    auto generic = linalg::GenericOp::create(
        rewriter, loc, TypeRange{accResultType}, ValueRange{lhs, rhs},
        ValueRange{createZeroInit(rewriter, loc, accResultType, sizes)}, maps,
        iterators,
        [&](OpBuilder &b, Location nested, ValueRange args) {
          Value l = castScalar(b, nested, args[0], accType);
          Value r = castScalar(b, nested, args[1], accType);
          Value product =
              isFloat ? arith::MulFOp::create(b, nested, l, r).getResult()
                      : arith::MulIOp::create(b, nested, l, r).getResult();
          Value sum =
              isFloat ? arith::AddFOp::create(b, nested, args[2], product)
                            .getResult()
                      : arith::AddIOp::create(b, nested, args[2], product)
                            .getResult();
          linalg::YieldOp::create(b, nested, sum);
        });
    rewriter.replaceOp(
        op, roundTo(rewriter, loc, generic.getResult(0), elementType));
    return success();
  }
};

struct LowerSoftmax final : OpRewritePattern<SoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SoftmaxOp op,
                                PatternRewriter &rewriter) const override {
    RankedTensorType type = op.getType();
    Value empty = emptyFor(rewriter, op.getLoc(), type.getShape(),
                           type.getElementType(), op.getInput());
    rewriter.replaceOpWithNewOp<linalg::SoftmaxOp>(
        op, type, op.getInput(), empty, op.getNormalizedAxis());
    return success();
  }
};

/// A transformer op replaced by its decomposition (Decompositions.cpp).
template <typename OpT, auto Decompose>
struct LowerByDecomposition final : OpRewritePattern<OpT> {
  LowerByDecomposition(MLIRContext *context, bool keepNorms)
      : OpRewritePattern<OpT>(context), keepNorms(keepNorms) {}

  bool keepNorms;

  LogicalResult matchAndRewrite(OpT op,
                                PatternRewriter &rewriter) const override {
    if (!decompositionHandlesShapes(op))
      return rewriter.notifyMatchFailure(op, "dynamic shapes");
    if (keepNorms && isLastDimNorm(op))
      return rewriter.notifyMatchFailure(op, "kept whole for its kernel");
    rewriter.replaceOp(op, resultOf(Decompose(rewriter, op)));
    return success();
  }

  static Value resultOf(Value value) { return value; }
  template <typename Parts>
  static Value resultOf(const Parts &parts) {
    return parts.result;
  }
};

struct KilnLowerGraphToLinalgPass final
    : kiln::impl::KilnLowerGraphToLinalgBase<KilnLowerGraphToLinalgPass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<LowerMatmul, LowerSoftmax>(&getContext());
    patterns.add<LowerByDecomposition<GeluOp, decomposeGelu>,
                 LowerByDecomposition<SiluOp, decomposeSilu>,
                 LowerByDecomposition<LayerNormOp, decomposeLayerNorm>,
                 LowerByDecomposition<RmsNormOp, decomposeRmsNorm>,
                 LowerByDecomposition<RotaryEmbeddingOp, decomposeRotaryEmbedding>>(
        &getContext(), keepNorms.getValue());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    // Whatever is left has dynamic shapes, which this lowering does not
    // handle yet: say so instead of leaving kiln ops for codegen to trip on.
    // Attention stays whole, whatever its shapes: it is a dispatch of its
    // own, and its kernel strategy (or the fallback decomposition, which
    // needs static shapes) says what it cannot take.
    WalkResult result = getOperation().walk([&](Operation *op) {
      if (keepNorms && isLastDimNorm(op))
        return WalkResult::advance();
      if (isa<MatmulOp, SoftmaxOp, GeluOp, SiluOp, LayerNormOp, RmsNormOp,
              RotaryEmbeddingOp>(op)) {
        op->emitError() << "cannot lower '" << op->getName()
                        << "' with dynamic shapes yet; specialize the "
                           "model's symbolic dims with --dim NAME=VALUE";
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
