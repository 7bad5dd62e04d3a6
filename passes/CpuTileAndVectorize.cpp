//===- CpuTileAndVectorize.cpp - register tiles and vectors for CPU kernels ===//
#include "passes/Passes.h"
#include "dialects/kiln/TensorBuilders.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_KILNCPUTILEANDVECTORIZE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Marks the tiled ops the pass vectorizes once their shapes are known.
constexpr llvm::StringLiteral kVectorizeMark = "kiln.cpu_vectorize";

/// A divisor of `extent` that is at most `limit`. For vector dims, the
/// largest multiple of 8 (whole AVX registers) if there is one, else of 4;
/// otherwise the largest. Tiles that divide their loop evenly need no masks
/// and no remainder loops.
int64_t largestDivisorAtMost(int64_t extent, int64_t limit,
                             bool vectorDim = true) {
  static constexpr int64_t kVectorMultiples[] = {8, 4, 1};
  ArrayRef<int64_t> multiples(kVectorMultiples);
  for (int64_t multiple : vectorDim ? multiples : multiples.take_back())
    for (int64_t size = std::min(extent, limit); size >= multiple; --size)
      if (extent % size == 0 && size % multiple == 0)
        return size;
  return 1;
}

/// Marks the tiled ops whose n-D `tensor.extract`s the vectorizer may turn
/// into vector loads (a panel's decoding of block-quantized weights).
constexpr llvm::StringLiteral kVectorizeExtractsMark = "kiln.cpu_vectorize_extracts";

/// Marks the column panels of contractions (the first tiling level), which
/// the second level packs and tiles into register blocks.
constexpr llvm::StringLiteral kPanelMark = "kiln.cpu_panel";

/// Tiles `op` with `sizes` (0: not tiled) in `interchange` order and
/// replaces it; returns the tiling result.
FailureOr<scf::SCFTilingResult> tileAndReplace(RewriterBase &rewriter,
                                               linalg::LinalgOp op,
                                               ArrayRef<int64_t> sizes,
                                               ArrayRef<int64_t> interchange) {
  rewriter.setInsertionPoint(op);
  scf::SCFTilingOptions options;
  options.setTileSizes(getAsIndexOpFoldResult(op.getContext(), sizes));
  if (!interchange.empty())
    options.setInterchange(interchange);
  SmallVector<unsigned> reductionDims;
  op.getReductionDims(reductionDims);
  options.setReductionDims(reductionDims);
  FailureOr<scf::SCFTilingResult> tiled = scf::tileUsingSCF(
      rewriter, cast<TilingInterface>(op.getOperation()), options);
  if (failed(tiled))
    return failure();
  // Tile loops of parallel dims run their iterations on several threads
  // when they end up at the top of a kernel (kiln-cpu-outline-tasks).
  SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
  SmallVector<int64_t> tiledDims;
  for (int64_t d : interchange.empty()
                       ? llvm::to_vector(llvm::seq<int64_t>(0, sizes.size()))
                       : llvm::to_vector(interchange))
    if (sizes[d] != 0)
      tiledDims.push_back(d);
  for (auto [loop, d] : llvm::zip(tiled->loops, tiledDims))
    if (iterators[d] == utils::IteratorType::parallel)
      loop->setAttr(kParallelLoopAttrName, rewriter.getUnitAttr());
  if (op->getNumResults())
    rewriter.replaceOp(op, tiled->replacements);
  else
    rewriter.eraseOp(op);
  return tiled;
}

/// The contraction's loop roles, when it has at least one M and one N loop.
std::optional<linalg::ContractionDimensions>
contractionRoles(linalg::LinalgOp op) {
  if (!linalg::isaContractionOpInterface(op))
    return std::nullopt;
  FailureOr<linalg::ContractionDimensions> dims =
      linalg::inferContractionDims(op);
  if (failed(dims) || dims->m.empty() || dims->n.empty())
    return std::nullopt;
  return *dims;
}

/// Whether `value` is a slice of a static tensor that is contiguous in it:
/// unit sizes on the leading dims, whole dims after them, unit strides.
bool isContiguousSlice(Value value) {
  auto slice = value.getDefiningOp<tensor::ExtractSliceOp>();
  if (!slice || !slice.getSourceType().hasStaticShape() ||
      !slice.hasUnitStride())
    return false;
  ArrayRef<int64_t> source = slice.getSourceType().getShape();
  SmallVector<OpFoldResult> sizes = slice.getMixedSizes();
  bool whole = false;
  for (auto [size, extent] : llvm::zip(sizes, source)) {
    std::optional<int64_t> s = getConstantIntValue(size);
    if (!s)
      return false;
    if (*s != 1)
      whole = true;
    if (whole && *s != extent)
      return false;
  }
  return true;
}

/// Loop order batch, N, M, K: column panels outermost, so that one panel of
/// the rhs serves every row block of the lhs.
SmallVector<int64_t> panelOrder(const linalg::ContractionDimensions &dims) {
  SmallVector<int64_t> order;
  for (ArrayRef<unsigned> group : {ArrayRef<unsigned>(dims.batch),
                                   ArrayRef<unsigned>(dims.n),
                                   ArrayRef<unsigned>(dims.m),
                                   ArrayRef<unsigned>(dims.k)})
    order.append(group.begin(), group.end());
  return order;
}

struct KilnCpuTileAndVectorizePass final
    : kiln::impl::KilnCpuTileAndVectorizeBase<KilnCpuTileAndVectorizePass> {
  using Base::Base;

  /// Whether `op` stays scalar. Bool tensors are one byte per element in
  /// memory, but vectors of i1 are bit-packed; bf16 arithmetic is emulated
  /// in f32 op by op, which vector contractions escape.
  static bool staysScalar(linalg::LinalgOp op) {
    return llvm::any_of(op->getOperands(), [](Value operand) {
      Type element = getElementTypeOrSelf(operand.getType());
      return element.isInteger(1) || element.isBF16();
    });
  }

  static bool hasStaticNonEmptyRanges(linalg::LinalgOp op) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    return !ranges.empty() && !llvm::any_of(ranges, ShapedType::isDynamic) &&
           !llvm::is_contained(ranges, 0);
  }

  static bool hasStaticInnermostRange(linalg::LinalgOp op) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    return !ranges.empty() && !ShapedType::isDynamic(ranges.back()) &&
           ranges.back() != 0;
  }

  /// Non-contractions: 1 on every loop but the innermost, which gets the
  /// largest divisor of its extent up to the vector width.
  FailureOr<scf::SCFTilingResult> tileForVectors(RewriterBase &rewriter,
                                                 linalg::LinalgOp op) {
    SmallVector<int64_t> sizes(op.getNumLoops(), 1);
    sizes.back() =
        largestDivisorAtMost(op.getStaticLoopRanges().back(), vecWidth);
    FailureOr<scf::SCFTilingResult> tiled =
        tileAndReplace(rewriter, op, sizes, /*interchange=*/{});
    if (succeeded(tiled))
      for (Operation *tiledOp : tiled->tiledOps)
        tiledOp->setAttr(kVectorizeMark, rewriter.getUnitAttr());
    return tiled;
  }

  /// First level for contractions: column panels, `n-tile` wide, batch
  /// loops by 1, M and K whole. An N extent without a multiple-of-8 divisor
  /// up to `n-tile` (GPT-2's 50,257-token vocabulary) takes full-width
  /// panels anyway, with the panel loop peeled: full panels are static and
  /// vectorize.
  void tilePanels(RewriterBase &rewriter, linalg::LinalgOp op,
                  const linalg::ContractionDimensions &dims) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    SmallVector<int64_t> sizes(ranges.size(), 0);
    for (unsigned d : dims.batch)
      sizes[d] = 1;
    for (unsigned d : dims.n)
      sizes[d] = 1;
    unsigned n = dims.n.back();
    // A symbolic N (attention's keys) takes full-width panels and a peeled
    // remainder, as an N without a multiple-of-8 divisor does.
    bool symbolicN = ShapedType::isDynamic(ranges[n]);
    sizes[n] = symbolicN ? blockCols : largestDivisorAtMost(ranges[n], blockCols);
    // Panels whose width is not a whole number of 8-lane vectors (an N of
    // 50,257 = 29 x 1,733 would get 29-wide panels) are full width with
    // the remainder peeled.
    bool peel = symbolicN || (sizes[n] % 8 != 0 && ranges[n] > blockCols);
    if (peel)
      sizes[n] = blockCols;
    // An operand decoded in this kernel (kiln-fuse-weight-decode: packed
    // 4-bit weights) is decoded panel by panel, into a panel-sized buffer.
    std::optional<unsigned> decoded;
    for (OpOperand *input : op.getDpsInputOperands())
      if (isDecodedOperand(input))
        decoded = input->getOperandNumber();
    FailureOr<scf::SCFTilingResult> tiled =
        tileAndReplace(rewriter, op, sizes, panelOrder(dims));
    if (failed(tiled))
      return;
    for (Operation *tiledOp : tiled->tiledOps)
      tiledOp->setAttr(kPanelMark, rewriter.getUnitAttr());
    if (decoded && !tiled->tiledOps.empty() && !tiled->loops.empty())
      fuseDecodedPanel(rewriter, tiled->tiledOps.front()->getOpOperand(*decoded),
                       tiled->loops);
    // The panel loop of the last N dimension is the innermost tile loop.
    if (!peel || tiled->loops.empty())
      return;
    if (auto loop = dyn_cast<scf::ForOp>(tiled->loops.back().getOperation())) {
      scf::ForOp remainder;
      (void)scf::peelForLoopAndSimplifyBounds(rewriter, loop, remainder);
    }
  }

  /// Computes the slice of a decoded operand that a panel reads inside the
  /// panel loops, in place of reading the whole decoded tensor; the
  /// decoding of the whole tensor goes away.
  void fuseDecodedPanel(RewriterBase &rewriter, OpOperand &operand,
                        MutableArrayRef<LoopLikeOpInterface> loops) {
    auto slice = operand.get().getDefiningOp<tensor::ExtractSliceOp>();
    if (!slice)
      return;
    Operation *whole = slice.getSource().getDefiningOp();
    std::optional<scf::SCFFuseProducerOfSliceResult> fused =
        scf::tileAndFuseProducerOfSlice(rewriter, slice, loops);
    if (!fused)
      return;
    if (whole && whole->use_empty())
      rewriter.eraseOp(whole);
    // The panel's decoding writes a tensor of its own (a panel-sized
    // buffer), not a slice of the whole decoded weight's.
    auto producer = fused->tiledAndFusedProducer.getDefiningOp<linalg::LinalgOp>();
    if (!producer || producer.getNumDpsInits() != 1)
      return;
    OpOperand *init = producer.getDpsInitOperand(0);
    auto initSlice = init->get().getDefiningOp<tensor::ExtractSliceOp>();
    if (!initSlice || !initSlice.getSource().getDefiningOp<tensor::EmptyOp>())
      return;
    rewriter.setInsertionPoint(producer);
    SmallVector<OpFoldResult> sizes = initSlice.getMixedSizes();
    Value fresh = tensor::EmptyOp::create(
        rewriter, producer.getLoc(), sizes,
        initSlice.getResultType().getElementType());
    rewriter.modifyOpInPlace(producer, [&] { init->set(fresh); });
    // Weights stored in panels (kiln-cpu-pack-weights: [panel, K, P]) are
    // read contiguously along the panel's columns: vectors of them.
    if (producer->hasAttr(kBlockQuantizedAttr) && producer.getNumLoops() == 3 &&
        hasStaticNonEmptyRanges(producer)) {
      FailureOr<scf::SCFTilingResult> tiled = tileForVectors(rewriter, producer);
      if (succeeded(tiled))
        for (Operation *tiledOp : tiled->tiledOps)
          tiledOp->setAttr(kVectorizeExtractsMark, rewriter.getUnitAttr());
    }
  }

  /// Second level for a column panel: its rhs slice is copied into a
  /// contiguous buffer when more than one row block reads it (one stride
  /// through memory instead of one per row block, and no TLB miss per
  /// reduction step), then the panel is tiled into `m-tile` x panel-width
  /// register blocks with the reduction tiled by 1.
  void tileRegisterBlocks(RewriterBase &rewriter, linalg::LinalgOp op) {
    std::optional<linalg::ContractionDimensions> dims = contractionRoles(op);
    if (!dims)
      return;
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    unsigned m = dims->m.back();
    if (llvm::any_of(dims->n, [&](unsigned d) {
          return ShapedType::isDynamic(ranges[d]);
        }))
      return; // a peeled remainder of unknown width: scalar loops
    if (!hasStaticNonEmptyRanges(op)) {
      // Symbolic M, batch or K.
      tileSymbolicRows(rewriter, op, *dims);
      return;
    }
    int64_t mTileHere = largestDivisorAtMost(ranges[m], blockRows,
                                             /*vectorDim=*/false);
    int64_t rowBlocks = ranges[m] / mTileHere;
    for (unsigned d : ArrayRef<unsigned>(dims->m).drop_back())
      rowBlocks *= ranges[d];
    if (rowBlocks > 1)
      packRhs(rewriter, op, *dims);

    SmallVector<int64_t> sizes(ranges.size(), 0);
    for (unsigned d : dims->m)
      sizes[d] = 1;
    sizes[m] = mTileHere;
    for (unsigned d : dims->k)
      sizes[d] = 1;
    FailureOr<scf::SCFTilingResult> tiled =
        tileAndReplace(rewriter, op, sizes, panelOrder(*dims));
    if (succeeded(tiled))
      for (Operation *tiledOp : tiled->tiledOps)
        tiledOp->setAttr(kVectorizeMark, rewriter.getUnitAttr());
  }

  /// Register blocks for a panel with symbolic M, batch or K loops: `m-tile`
  /// rows per block with the block loop peeled, so that full blocks are
  /// static and vectorize; the rows left over are blocks of one row each.
  /// Outer M and batch loops are tiles of 1, K steps of 1; N (the panel
  /// width) must be static.
  void tileSymbolicRows(RewriterBase &rewriter, linalg::LinalgOp op,
                        const linalg::ContractionDimensions &dims) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    unsigned m = dims.m.back();
    for (unsigned d : dims.n)
      if (ShapedType::isDynamic(ranges[d]) || ranges[d] == 0)
        return;
    // How many row blocks read the panel is known only at run time: the
    // panel is versioned on it, packing its rhs when more than one row
    // reads it (prefill), not for a single row (decode), where the copy
    // would only add traffic over the weights.
    if (ShapedType::isDynamic(ranges[m]) && op->getNumResults() == 1) {
      Location loc = op.getLoc();
      rewriter.setInsertionPoint(op);
      SmallVector<Range> loopRanges = op.createLoopRanges(rewriter, loc);
      Value rows =
          getValueOrCreateConstantIndexOp(rewriter, loc, loopRanges[m].size);
      Value many = arith::CmpIOp::create(
          rewriter, loc, arith::CmpIPredicate::ugt, rows,
          arith::ConstantIndexOp::create(rewriter, loc, 1));
      Operation *packed = nullptr, *plain = nullptr;
      auto ifOp = scf::IfOp::create(
          rewriter, loc, many,
          [&](OpBuilder &b, Location l) {
            packed = b.clone(*op);
            scf::YieldOp::create(b, l, packed->getResults());
          },
          [&](OpBuilder &b, Location l) {
            plain = b.clone(*op);
            scf::YieldOp::create(b, l, plain->getResults());
          });
      rewriter.replaceOp(op, ifOp.getResults());
      tileRows(rewriter, cast<linalg::LinalgOp>(packed), dims, /*pack=*/true);
      tileRows(rewriter, cast<linalg::LinalgOp>(plain), dims, /*pack=*/false);
      return;
    }
    tileRows(rewriter, op, dims, /*pack=*/true);
  }

  /// The row blocks of tileSymbolicRows, the rhs packed first with `pack`.
  void tileRows(RewriterBase &rewriter, linalg::LinalgOp op,
                const linalg::ContractionDimensions &dims, bool pack) {
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    unsigned m = dims.m.back();
    if (pack)
      packRhs(rewriter, op, dims);
    SmallVector<int64_t> sizes(ranges.size(), 0);
    for (unsigned d : dims.batch)
      sizes[d] = 1;
    for (unsigned d : dims.m)
      sizes[d] = 1;
    sizes[m] = blockRows;
    for (unsigned d : dims.k)
      sizes[d] = 1;
    FailureOr<scf::SCFTilingResult> tiled =
        tileAndReplace(rewriter, op, sizes, panelOrder(dims));
    if (failed(tiled))
      return;
    // The loop over row blocks: the last M loop among the tile loops, which
    // come in panel order (batch, M, K; N is not tiled here).
    unsigned rowLoop = dims.batch.size() + dims.m.size() - 1;
    auto loop = rowLoop < tiled->loops.size()
                    ? dyn_cast<scf::ForOp>(tiled->loops[rowLoop].getOperation())
                    : scf::ForOp();
    for (Operation *tiledOp : tiled->tiledOps)
      tiledOp->setAttr(kVectorizeMark, rewriter.getUnitAttr());
    if (!loop)
      return;
    scf::ForOp remainder;
    if (failed(scf::peelForLoopAndSimplifyBounds(rewriter, loop, remainder)) ||
        !remainder)
      return;
    // The remainder's block has fewer than m-tile rows: one row at a time.
    SmallVector<linalg::LinalgOp> partial;
    remainder.walk([&](linalg::LinalgOp inner) {
      if (inner->hasAttr(kVectorizeMark))
        partial.push_back(inner);
    });
    for (linalg::LinalgOp inner : partial) {
      SmallVector<int64_t> rowSizes(inner.getNumLoops(), 0);
      rowSizes[m] = 1;
      FailureOr<scf::SCFTilingResult> rows =
          tileAndReplace(rewriter, inner, rowSizes, /*interchange=*/{});
      if (succeeded(rows))
        for (Operation *rowOp : rows->tiledOps)
          rowOp->setAttr(kVectorizeMark, rewriter.getUnitAttr());
    }
  }

  /// Replaces the rhs of the panel `op` (the input indexed by N loops and
  /// no M loop) by a copy into a fresh tensor, which bufferizes to a
  /// contiguous buffer per panel. The copy is tiled for vectors.
  void packRhs(RewriterBase &rewriter, linalg::LinalgOp op,
               const linalg::ContractionDimensions &dims) {
    for (OpOperand *input : op.getDpsInputOperands()) {
      AffineMap map = op.getMatchingIndexingMap(input);
      auto uses = [&](ArrayRef<unsigned> loops) {
        return llvm::any_of(loops, [&](unsigned d) {
          return map.isFunctionOfDim(d);
        });
      };
      if (!uses(dims.n) || uses(dims.m))
        continue;
      auto type = dyn_cast<RankedTensorType>(input->get().getType());
      if (!type || !type.hasStaticShape() || type.getRank() == 0)
        return;
      // A panel of a weight kiln-cpu-pack-weights stored panel by panel
      // is contiguous already, and so is one decoded for this panel.
      // (the decoding's loop of vectors, or the generic that it is).
      if (isContiguousSlice(input->get()) ||
          isa_and_nonnull<linalg::GenericOp, scf::ForOp>(
              input->get().getDefiningOp()))
        return;
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      // A rhs read transposed (W[n, k], a tied embedding read in place) is
      // packed as [k, n], so the register blocks read it as any other.
      auto generic = dyn_cast<linalg::GenericOp>(op.getOperation());
      if (generic && map.getNumResults() == 2 &&
          llvm::is_contained(dims.k, map.getDimPosition(1)) &&
          llvm::is_contained(dims.n, map.getDimPosition(0))) {
        Value empty = tensor::EmptyOp::create(
            rewriter, loc, {type.getDimSize(1), type.getDimSize(0)},
            type.getElementType());
        auto transpose = linalg::TransposeOp::create(
            rewriter, loc, input->get(), empty, ArrayRef<int64_t>{1, 0});
        SmallVector<AffineMap> maps = generic.getIndexingMapsArray();
        maps[input->getOperandNumber()] = AffineMap::get(
            map.getNumDims(), 0, {map.getResult(1), map.getResult(0)},
            map.getContext());
        rewriter.modifyOpInPlace(op, [&] {
          input->set(transpose->getResult(0));
          generic.setIndexingMapsAttr(rewriter.getAffineMapArrayAttr(maps));
        });
        tileForVectors(rewriter,
                       cast<linalg::LinalgOp>(transpose.getOperation()));
        return;
      }
      Value empty = tensor::EmptyOp::create(rewriter, loc, type.getShape(),
                                            type.getElementType());
      auto copy = linalg::CopyOp::create(rewriter, loc, input->get(), empty);
      rewriter.modifyOpInPlace(op, [&] { input->set(copy.getResult(0)); });
      if (type.getNumElements() > 1)
        tileForVectors(rewriter, cast<linalg::LinalgOp>(copy.getOperation()));
      return;
    }
  }

  /// Vectorizes the marked ops whose shapes are static after peeling and
  /// canonicalization; contractions go straight to vector.contract.
  void vectorizeMarked(RewriterBase &rewriter, func::FuncOp func) {
    SmallVector<linalg::LinalgOp> marked;
    func.walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kVectorizeMark))
        marked.push_back(op);
    });
    for (linalg::LinalgOp op : marked) {
      op->removeAttr(kVectorizeMark);
      bool extracts = op->hasAttr(kVectorizeExtractsMark);
      op->removeAttr(kVectorizeExtractsMark);
      if (llvm::any_of(op.getStaticLoopRanges(), ShapedType::isDynamic))
        continue; // a peeled remainder: scalar loops
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::VectorizationResult> vectorized = linalg::vectorize(
          rewriter, op, /*inputVectorSizes=*/{},
          /*inputScalableVecDims=*/{}, /*vectorizeNDExtract=*/extracts,
          /*flatten1DDepthwiseConv=*/false,
          /*assumeDynamicDimsMatchVecSizes=*/false,
          /*createNamedContraction=*/true);
      if (failed(vectorized))
        continue; // stays a tiled linalg op and becomes scalar loops
      if (op->getNumResults())
        rewriter.replaceOp(op, vectorized->replacements);
      else
        rewriter.eraseOp(op);
    }
  }

  /// Folds the constant bounds that peeling and tiling leave into static
  /// slice shapes.
  void canonicalizeSlices(func::FuncOp func) {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    tensor::ExtractSliceOp::getCanonicalizationPatterns(patterns, ctx);
    tensor::InsertSliceOp::getCanonicalizationPatterns(patterns, ctx);
    affine::AffineMinOp::getCanonicalizationPatterns(patterns, ctx);
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, ctx);
    tensor::CastOp::getCanonicalizationPatterns(patterns, ctx);
    scf::ForOp::getCanonicalizationPatterns(patterns, ctx);
    ctx->getLoadedDialect<linalg::LinalgDialect>()->getCanonicalizationPatterns(
        patterns);
    (void)applyPatternsGreedily(func, std::move(patterns));
  }

  /// This kernel's register block and vector width: its configuration's
  /// (`cpu-gemm`: register_block, vector_width; `cpu-vector`:
  /// vector_width), else the pass options.
  int64_t blockRows = 0, blockCols = 0, vecWidth = 0;

  LogicalResult readConfig(func::FuncOp func) {
    blockRows = mTile;
    blockCols = nTile;
    vecWidth = vectorWidth;
    auto config = func->getAttrOfType<DictionaryAttr>("kiln.config");
    if (!config)
      return success();
    auto positive = [](int64_t v) { return v > 0; };
    if (auto width = config.getAs<IntegerAttr>("vector_width")) {
      if (!positive(width.getInt()))
        return func.emitError() << "kiln.config: vector_width must be positive";
      vecWidth = width.getInt();
    }
    if (auto block = config.getAs<DenseI64ArrayAttr>("register_block")) {
      if (block.size() != 2 || !llvm::all_of(block.asArrayRef(), positive))
        return func.emitError()
               << "kiln.config: register_block must be two positive sizes";
      blockRows = block[0];
      blockCols = block[1];
    }
    return success();
  }

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    if (failed(readConfig(func)))
      return signalPassFailure();
    IRRewriter rewriter(&getContext());

    SmallVector<linalg::LinalgOp> ops;
    func.walk([&](linalg::LinalgOp op) { ops.push_back(op); });
    // Decodings of a contraction's operand are tiled with its panels.
    llvm::SmallPtrSet<Operation *, 4> decodings;
    for (linalg::LinalgOp op : ops)
      if (contractionRoles(op))
        for (OpOperand *input : op.getDpsInputOperands())
          if (linalg::GenericOp producer = decodedOperandProducer(input))
            decodings.insert(producer);
    for (linalg::LinalgOp op : ops) {
      if (staysScalar(op) || decodings.contains(op))
        continue;
      std::optional<linalg::ContractionDimensions> dims = contractionRoles(op);
      if (hasStaticNonEmptyRanges(op)) {
        if (dims)
          tilePanels(rewriter, op, *dims);
        else
          tileForVectors(rewriter, op);
      } else if (dims && !llvm::is_contained(op.getStaticLoopRanges(), 0)) {
        // Symbolic dims: panels as usual (a symbolic N peeled); the register
        // blocks peel the rows that do not fill a block, and a symbolic K
        // is a loop of steps of 1 anyway.
        tilePanels(rewriter, op, *dims);
      } else if (!dims && hasStaticInnermostRange(op)) {
        // Symbolic dims on the outer loops: tiles of 1 there leave static
        // vector tiles.
        tileForVectors(rewriter, op);
      }
    }
    canonicalizeSlices(func);

    SmallVector<linalg::LinalgOp> panels;
    func.walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kPanelMark))
        panels.push_back(op);
    });
    for (linalg::LinalgOp op : panels) {
      op->removeAttr(kPanelMark);
      tileRegisterBlocks(rewriter, op);
    }
    canonicalizeSlices(func);
    vectorizeMarked(rewriter, func);
  }
};

} // namespace
