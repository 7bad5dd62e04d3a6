//===- FoldConstantTransposes.cpp - lay out weights at compile time -------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineExpr.h"
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

} // namespace

TypedAttr kiln::permuteConstant(Attribute value, RankedTensorType sourceType,
                                ArrayRef<int64_t> permutation,
                                RankedTensorType resultType,
                                StringRef keySuffix) {
  Type element = sourceType.getElementType();
  if (!sourceType.hasStaticShape() || !element.isIntOrFloat() ||
      element.getIntOrFloatBitWidth() % 8 != 0)
    return nullptr;
  size_t elementBytes = element.getIntOrFloatBitWidth() / 8;
  if (auto dense = dyn_cast<DenseElementsAttr>(value)) {
    if (dense.isSplat())
      return dense.resizeSplat(resultType);
    std::vector<char> bytes = permuteBytes(
        dense.getRawData(), sourceType.getShape(), permutation, elementBytes);
    return DenseElementsAttr::getFromRawBuffer(resultType, bytes);
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return nullptr;
    std::vector<char> bytes = permuteBytes(
        blob->getData(), sourceType.getShape(), permutation, elementBytes);
    return DenseResourceElementsAttr::get(
        resultType, (resource.getRawHandle().getKey() + keySuffix).str(),
        HeapAsmResourceBlob::allocateAndCopyWithAlign(
            ArrayRef<char>(bytes.data(), bytes.size()), alignof(uint64_t)));
  }
  return nullptr;
}

namespace {

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
    TypedAttr folded =
        permuteConstant(constant.getValue(), sourceType, op.getPermutation(),
                        resultType, ".T");
    if (!folded)
      return rewriter.notifyMatchFailure(op, "unknown constant kind");
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(op, resultType, folded);
    return success();
  }
};

/// The raw bytes and element size of a constant whose elements are whole
/// bytes, dense or a resource blob; none for a splat or another kind.
std::optional<std::pair<ArrayRef<char>, size_t>>
constantBytes(arith::ConstantOp constant) {
  auto type = dyn_cast<RankedTensorType>(constant.getType());
  if (!type || !type.hasStaticShape() || !type.getElementType().isIntOrFloat() ||
      type.getElementType().getIntOrFloatBitWidth() % 8 != 0)
    return std::nullopt;
  size_t elementBytes = type.getElementType().getIntOrFloatBitWidth() / 8;
  if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue())) {
    if (dense.isSplat())
      return std::nullopt;
    return std::make_pair(dense.getRawData(), elementBytes);
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue()))
    if (AsmResourceBlob *blob = resource.getRawHandle().getBlob())
      return std::make_pair(blob->getData(), elementBytes);
  return std::nullopt;
}

/// A constant of `type` holding `bytes`, of the kind `like` is (a resource
/// named after it with `suffix`, or a dense attribute).
TypedAttr constantLike(arith::ConstantOp like, RankedTensorType type,
                       ArrayRef<char> bytes, StringRef suffix) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(like.getValue()))
    return DenseResourceElementsAttr::get(
        type, (resource.getRawHandle().getKey() + suffix).str(),
        HeapAsmResourceBlob::allocateAndCopyWithAlign(bytes, alignof(uint64_t)));
  return DenseElementsAttr::getFromRawBuffer(type, bytes);
}

/// A static slice of a constant becomes a constant (per-direction weights
/// of a recurrent layer, per-gate biases): otherwise a dispatch of its own
/// copies it on every run. Only when the slices do not duplicate bytes:
/// every user of the constant is a slice, or the slice is small.
struct FoldSliceOfConstant final : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp op,
                                PatternRewriter &rewriter) const override {
    auto constant = op.getSource().getDefiningOp<arith::ConstantOp>();
    if (!constant)
      return rewriter.notifyMatchFailure(op, "source is not a constant");
    auto resultType = op.getResultType();
    if (!resultType.hasStaticShape() || ShapedType::isDynamicShape(
                                            op.getStaticOffsets()) ||
        ShapedType::isDynamicShape(op.getStaticSizes()) ||
        ShapedType::isDynamicShape(op.getStaticStrides()))
      return rewriter.notifyMatchFailure(op, "dynamic slice");
    constexpr int64_t kSmall = 1 << 16;
    if (resultType.getNumElements() > kSmall &&
        !llvm::all_of(constant->getUsers(),
                      llvm::IsaPred<tensor::ExtractSliceOp>))
      return rewriter.notifyMatchFailure(op, "would duplicate a weight");
    auto source = constantBytes(constant);
    if (!source)
      return rewriter.notifyMatchFailure(op, "unknown constant kind");
    auto [bytes, elementBytes] = *source;
    auto sourceType = cast<RankedTensorType>(constant.getType());
    int64_t rank = sourceType.getRank();
    SmallVector<int64_t> sourceStrides(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d)
      sourceStrides[d] = sourceStrides[d + 1] * sourceType.getDimSize(d + 1);
    ArrayRef<int64_t> offsets = op.getStaticOffsets(),
                      sizes = op.getStaticSizes(),
                      strides = op.getStaticStrides();
    int64_t count = 1;
    for (int64_t size : sizes)
      count *= size;
    std::vector<char> result(count * elementBytes);
    SmallVector<int64_t> index(rank, 0);
    for (int64_t linear = 0; linear < count; ++linear) {
      int64_t at = 0;
      for (int64_t d = 0; d < rank; ++d)
        at += (offsets[d] + index[d] * strides[d]) * sourceStrides[d];
      std::memcpy(result.data() + linear * elementBytes,
                  bytes.data() + at * elementBytes, elementBytes);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++index[d] < sizes[d])
          break;
        index[d] = 0;
      }
    }
    // The slice may drop unit dims: the bytes are the same.
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(
        op, resultType,
        constantLike(constant, resultType,
                     ArrayRef<char>(result.data(), result.size()), ".slice"));
    return success();
  }
};

/// A reshape of a resource constant read nowhere else is the same bytes
/// under the new shape (the canonicalizer folds dense ones itself).
template <typename ReshapeOp>
struct FoldReshapeOfResource final : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern<ReshapeOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(ReshapeOp op,
                                PatternRewriter &rewriter) const override {
    auto constant = op.getSrc().template getDefiningOp<arith::ConstantOp>();
    if (!constant || !constant->hasOneUse() ||
        !isa<DenseResourceElementsAttr>(constant.getValue()))
      return rewriter.notifyMatchFailure(op, "not a resource read once");
    auto resultType = cast<RankedTensorType>(op.getResultType());
    if (!resultType.hasStaticShape())
      return rewriter.notifyMatchFailure(op, "dynamic shape");
    auto resource = cast<DenseResourceElementsAttr>(constant.getValue());
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(
        op, resultType,
        DenseResourceElementsAttr::get(resultType, resource.getRawHandle()));
    return success();
  }
};

/// The bytes of a weight held as a resource blob (empty when it is not).
ArrayRef<char> resourceBytes(arith::ConstantOp constant) {
  auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue());
  if (!resource)
    return {};
  AsmResourceBlob *blob = resource.getRawHandle().getBlob();
  return blob ? blob->getData() : ArrayRef<char>();
}

/// Whether the row-major [rows x cols] `a` is the transpose of `b`.
bool isTransposeOf(ArrayRef<char> a, ArrayRef<char> b, int64_t rows,
                   int64_t cols, size_t elementBytes) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if (std::memcmp(a.data() + (i * cols + j) * elementBytes,
                      b.data() + (j * rows + i) * elementBytes,
                      elementBytes) != 0)
        return false;
  return true;
}

/// A weight that is the transpose of another weight (the exporter's copy
/// of a tied embedding for the lm_head) becomes a transpose of it, so the
/// bytes are stored once.
void shareTransposedWeights(func::FuncOp func) {
  SmallVector<arith::ConstantOp> matrices;
  func.walk([&](arith::ConstantOp constant) {
    auto type = dyn_cast<RankedTensorType>(constant.getType());
    if (type && type.getRank() == 2 && type.hasStaticShape() &&
        type.getElementType().isIntOrFloat() &&
        type.getElementType().getIntOrFloatBitWidth() % 8 == 0 &&
        !resourceBytes(constant).empty())
      matrices.push_back(constant);
  });
  for (size_t i = 0; i < matrices.size(); ++i) {
    auto a = cast<RankedTensorType>(matrices[i].getType());
    for (size_t j = i + 1; j < matrices.size(); ++j) {
      arith::ConstantOp copy = matrices[j];
      auto b = cast<RankedTensorType>(copy.getType());
      if (copy.use_empty() || a.getElementType() != b.getElementType() ||
          a.getDimSize(0) != b.getDimSize(1) ||
          a.getDimSize(1) != b.getDimSize(0) ||
          !isTransposeOf(resourceBytes(copy), resourceBytes(matrices[i]),
                         b.getDimSize(0), b.getDimSize(1),
                         a.getElementType().getIntOrFloatBitWidth() / 8))
        continue;
      OpBuilder builder(copy);
      builder.setInsertionPointAfter(matrices[i]->isBeforeInBlock(copy)
                                         ? copy.getOperation()
                                         : matrices[i].getOperation());
      Value empty = tensor::EmptyOp::create(builder, copy.getLoc(),
                                            b.getShape(), b.getElementType());
      auto transpose = linalg::TransposeOp::create(
          builder, copy.getLoc(), matrices[i].getResult(), empty,
          ArrayRef<int64_t>{1, 0});
      copy.getResult().replaceAllUsesWith(transpose->getResult(0));
    }
  }
}

/// `linalg.matmul(x, transpose(w))` as a contraction that reads `w` where it
/// is: C[m, n] += A[m, k] * W[n, k]. Null when the matmul is not a plain
/// floating-point one.
Operation *contractWithTransposed(OpBuilder &builder, linalg::MatmulOp matmul,
                                  Value weight) {
  auto resultType = cast<RankedTensorType>(matmul->getResult(0).getType());
  Type element = resultType.getElementType();
  if (!isa<FloatType>(element) || !matmul.hasPureTensorSemantics() ||
      getElementTypeOrSelf(matmul.getInputs()[0].getType()) != element ||
      getElementTypeOrSelf(weight.getType()) != element ||
      !matmul.getIndexingMapsArray()[1].isProjectedPermutation() ||
      matmul.getIndexingMapsArray() !=
          matmul.getDefaultIndexingMaps(matmul.getContext()))
    return nullptr;
  MLIRContext *context = matmul.getContext();
  AffineExpr m, n, k;
  bindDims(context, m, n, k);
  auto map = [&](ArrayRef<AffineExpr> results) {
    return AffineMap::get(3, 0, results, context);
  };
  SmallVector<AffineMap> maps = {map({m, k}), map({n, k}), map({m, n})};
  SmallVector<utils::IteratorType> iterators = {
      utils::IteratorType::parallel, utils::IteratorType::parallel,
      utils::IteratorType::reduction};
  builder.setInsertionPoint(matmul);
  auto generic = linalg::GenericOp::create(
      builder, matmul.getLoc(), TypeRange{resultType},
      ValueRange{matmul.getInputs()[0], weight}, matmul.getOutputs(), maps,
      iterators, [](OpBuilder &b, Location loc, ValueRange args) {
        Value product = arith::MulFOp::create(b, loc, args[0], args[1]);
        Value sum = arith::AddFOp::create(b, loc, args[2], product);
        linalg::YieldOp::create(b, loc, sum);
      });
  return generic;
}

/// A transpose of a weight that is also read as it is (a tied embedding):
/// its matmuls read the weight in place. Returns whether it did.
bool readTransposeInPlace(linalg::TransposeOp transpose) {
  auto constant = transpose.getInput().getDefiningOp<arith::ConstantOp>();
  if (!constant || transpose.getPermutation() != ArrayRef<int64_t>{1, 0} ||
      llvm::all_of(constant->getUsers(), llvm::IsaPred<linalg::TransposeOp>))
    return false;
  Value result = transpose->getResult(0);
  for (OpOperand &use : result.getUses()) {
    auto matmul = dyn_cast<linalg::MatmulOp>(use.getOwner());
    if (!matmul || use.getOperandNumber() != 1)
      return false;
  }
  SmallVector<linalg::MatmulOp> matmuls;
  for (Operation *user : result.getUsers())
    matmuls.push_back(cast<linalg::MatmulOp>(user));
  OpBuilder builder(transpose);
  SmallVector<std::pair<linalg::MatmulOp, Operation *>> rewrites;
  for (linalg::MatmulOp matmul : matmuls) {
    Operation *generic =
        contractWithTransposed(builder, matmul, constant.getResult());
    if (!generic) {
      for (auto &[_, made] : rewrites)
        made->erase();
      return false;
    }
    rewrites.push_back({matmul, generic});
  }
  for (auto &[matmul, generic] : rewrites) {
    matmul->replaceAllUsesWith(generic->getResults());
    matmul->erase();
  }
  transpose->erase();
  return true;
}

struct KilnFoldConstantTransposesPass final
    : kiln::impl::KilnFoldConstantTransposesBase<
          KilnFoldConstantTransposesPass> {
  void runOnOperation() override {
    shareTransposedWeights(getOperation());
    SmallVector<linalg::TransposeOp> transposes;
    getOperation().walk(
        [&](linalg::TransposeOp op) { transposes.push_back(op); });
    for (linalg::TransposeOp transpose : transposes)
      (void)readTransposeInPlace(transpose);
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldTransposeOfConstant, FoldSliceOfConstant,
                 FoldReshapeOfResource<tensor::ExpandShapeOp>,
                 FoldReshapeOfResource<tensor::CollapseShapeOp>>(&getContext());
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace
