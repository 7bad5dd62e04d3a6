//===- GemmMmaSync.cpp - tensor-core GEMM with mma.sync (sm_80) -----------===//
//
// The GEMM strategy for contractions of f16 or bf16 operands that sum in
// f32 (what `--precision fp16|bf16` makes of every MatMul), configured by
// `tile` (BM, BN, BK), `warps` (WM, WN) and `stages` (S):
//
// - one block of 32*WM*WN threads computes a BMxBN tile of the output (grid
//   x over N tiles, y over M tiles, z over the batch, as gemm-simt); each
//   warp a (BM/WM)x(BN/WN) part of it, as m16n8k16 tiles whose f32
//   accumulators stay in registers for the whole K loop;
// - the K loop walks BK-deep slices through an S-stage ring in shared
//   memory: slice t+S-1 is loaded with cp.async (16-byte chunks along each
//   operand's innermost dimension, coalesced; chunks past an edge
//   zero-filled through the source size) while slice t is computed; a
//   commit group per slice, `device_async_wait` for all but the S-2 newest
//   and one barrier per slice order it;
// - shared tiles are stored in the operand's own orientation (a transposed
//   operand is read in place), with the 16-byte chunks of each row XORed
//   with the row so that the 8 rows an ldmatrix reads sit in 8 different
//   bank groups (no conflicts); `ldmatrix` (transposed where the operand's
//   orientation needs it) fills the fragments, `mma.sync` accumulates;
// - weights decoded where they are read (kiln-fuse-weight-decode: a
//   MatMulNBits weight's 4-bit integers, scales and zero points) are
//   staged by the threads themselves: each decodes its chunks of the B
//   slice (the decoding's body per element) and stores them to the ring,
//   where the copies would have landed;
// - the epilogue stores the accumulators from registers, guarded at the
//   M and N edges. A `linalg.fill` by a constant right before the
//   contraction becomes the accumulators' initial value.
//
// mma.sync exists on every architecture from sm_80 (sm_90a too), so the
// strategy serves both of Kiln's GPU targets; the sm_90a strategy with
// TMA and wgmma comes next to it.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"
#include "codegen/gpu/TileIndex.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/Sequence.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUGEMMMMASYNC
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWarp = 32;
constexpr int64_t kChunk = 8;  // 16-byte chunks of 16-bit elements

struct MmaConfig {
  int64_t bm, bn, bk, wm, wn, stages;
  int64_t splitK = 1;
  int64_t threads() const { return kWarp * wm * wn; }
  int64_t warpM() const { return bm / wm; }
  int64_t warpN() const { return bn / wn; }

  static FailureOr<MmaConfig> read(const StrategyConfig &config) {
    FailureOr<SmallVector<int64_t>> tile = config.getInts("tile", 3);
    FailureOr<SmallVector<int64_t>> warps = config.getInts("warps", 2);
    FailureOr<int64_t> stages = config.getInt("stages");
    if (failed(tile) || failed(warps) || failed(stages))
      return failure();
    MmaConfig c{(*tile)[0], (*tile)[1], (*tile)[2], (*warps)[0], (*warps)[1],
                *stages};
    if (c.bm % (16 * c.wm) || c.bn % (8 * c.wn) || c.bk % 16)
      return config.error() << "each warp's part of the tile must be whole "
                               "m16n8k16 tiles (BM a multiple of 16 * WM, BN "
                               "of 8 * WN, BK of 16)";
    if (c.stages < 2)
      return config.error() << "the pipeline needs at least 2 stages";
    if (config.attr().get("split_k")) {
      FailureOr<int64_t> splitK = config.getInt("split_k");
      if (failed(splitK))
        return failure();
      if (*splitK < 1)
        return config.error() << "split_k must be at least 1";
      c.splitK = *splitK;
    }
    for (int64_t rows : {c.bm, c.bn})
      if ((rows * c.bk / kChunk) % c.threads())
        return config.error() << "every thread must copy the same number of "
                                 "16-byte chunks: BM * BK / 8 and BN * BK / 8 "
                                 "must be multiples of the threads per block";
    return c;
  }
};

/// A contraction with one M, one N and one K loop (and any batch loops).
struct MmaShape {
  SmallVector<unsigned> batch;
  // K may be several reduction loops, adjacent and in the same order in
  // both operands (a reshape of the contraction dim propagated into the
  // contraction): one linearized K; `k` is the innermost of them and stands
  // for the group.
  unsigned m = 0, n = 0, k = 0;
  SmallVector<unsigned> kLoops;
  SmallVector<int64_t> ranges;
  OpOperand *a = nullptr, *b = nullptr;
  bool aKInner = true;   // A's innermost dimension is K (else M)
  bool bNInner = true;   // B's innermost dimension is N (else K)
  int64_t extent(unsigned d) const {
    if (d != k)
      return ranges[d];
    int64_t product = 1;
    for (unsigned l : kLoops)
      product *= ranges[l];
    return product;
  }
  SmallVector<int64_t> kExtents() const {
    SmallVector<int64_t> result;
    for (unsigned l : kLoops)
      result.push_back(ranges[l]);
    return result;
  }
  int64_t batchCount() const {
    int64_t p = 1;
    for (unsigned d : batch)
      p *= ranges[d];
    return p;
  }
  /// With symbolic sizes, the batch loops that B does not read are folded
  /// into M: rows are (folded..., m), outer first, linearized.
  SmallVector<unsigned> folded;
  /// M is a symbolic size (known when the kernel runs).
  bool dynamicM() const {
    return ShapedType::isDynamic(ranges[m]) ||
           llvm::any_of(folded, [&](unsigned d) {
             return ShapedType::isDynamic(ranges[d]);
           });
  }
  /// The loops a linear row index walks, outer first.
  SmallVector<unsigned> rowLoops() const {
    SmallVector<unsigned> loops(folded);
    loops.push_back(m);
    return loops;
  }
};

/// The extents of the row loops at run time (memref.dim of the operand
/// that reads each, a constant where static), outer first; empty when one
/// has no operand to measure it by.
SmallVector<Value> rowExtentsOf(OpBuilder &b, Location loc,
                                linalg::LinalgOp op, const MmaShape &shape) {
  SmallVector<Value> extents;
  for (unsigned loop : shape.rowLoops()) {
    if (!ShapedType::isDynamic(shape.ranges[loop])) {
      extents.push_back(constantIndex(b, loc, shape.ranges[loop]));
      continue;
    }
    Value size;
    for (OpOperand &operand : op->getOpOperands()) {
      AffineMap map = op.getMatchingIndexingMap(&operand);
      for (auto [i, e] : llvm::enumerate(map.getResults()))
        if (auto d = dyn_cast<AffineDimExpr>(e);
            !size && d && d.getPosition() == loop)
          size = memref::DimOp::create(b, loc, operand.get(), i);
    }
    if (!size)
      return {};
    extents.push_back(size);
  }
  return extents;
}

SmallVector<Value> delinearizeBy(OpBuilder &b, Location loc, Value linear,
                                 ArrayRef<Value> extents);

/// loops[row loops] for the linear row `row` (the M loop itself unless
/// batch loops were folded into it).
void assignRows(OpBuilder &b, Location loc, const MmaShape &shape,
                SmallVectorImpl<Value> &loops, Value row,
                ArrayRef<Value> extents) {
  if (shape.folded.empty()) {
    loops[shape.m] = row;
    return;
  }
  for (auto [d, v] :
       llvm::zip(shape.rowLoops(), delinearizeBy(b, loc, row, extents)))
    loops[d] = v;
}

/// One index per extent of a row-major space for `linear` (below the
/// product of the extents, which callers guard).
SmallVector<Value> delinearizeBy(OpBuilder &b, Location loc, Value linear,
                                 ArrayRef<Value> extents) {
  SmallVector<Value> indices(extents.size());
  for (size_t i = extents.size(); i-- > 1;) {
    indices[i] = arith::RemUIOp::create(b, loc, linear, extents[i]);
    linear = arith::DivUIOp::create(b, loc, linear, extents[i]);
  }
  indices[0] = linear;
  return indices;
}

/// The contraction's loops by role: K the one reduction, read by both
/// inputs; M a loop of A's two matrix dims that B does not read; N one of
/// B's that A does not read; every other loop a batch loop (a batch that
/// one operand broadcasts is indexed by a constant 0 there, which linalg's
/// contraction interface does not accept, so the roles are found here).
FailureOr<MmaShape> analyze(linalg::LinalgOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() < 1 || !isMultiplyAccumulate(op))
    return failure();
  MmaShape shape;
  shape.ranges = op.getStaticLoopRanges();
  // Symbolic extents are allowed for the rows (checked below).
  for (AffineMap map : op.getIndexingMapsArray())
    for (AffineExpr e : map.getResults()) {
      auto c = dyn_cast<AffineConstantExpr>(e);
      if (!isa<AffineDimExpr>(e) && !(c && c.getValue() == 0))
        return failure();
    }
  OpOperand *x = op.getDpsInputOperand(0), *y = op.getDpsInputOperand(1);
  // The reduction loops in the order x's map reads them; y must read them
  // as the same run of adjacent results.
  auto kRun = [&](OpOperand *operand) {
    SmallVector<unsigned> run;
    for (AffineExpr e : op.getMatchingIndexingMap(operand).getResults())
      if (auto d = dyn_cast<AffineDimExpr>(e);
          d && op.getIteratorTypesArray()[d.getPosition()] ==
                   utils::IteratorType::reduction)
        run.push_back(d.getPosition());
    return run;
  };
  auto adjacent = [&](OpOperand *operand, ArrayRef<unsigned> loops) {
    ArrayRef<AffineExpr> results =
        op.getMatchingIndexingMap(operand).getResults();
    for (size_t i = 0; i + loops.size() <= results.size(); ++i)
      if (llvm::all_of(llvm::seq<size_t>(0, loops.size()), [&](size_t j) {
            auto d = dyn_cast<AffineDimExpr>(results[i + j]);
            return d && d.getPosition() == loops[j];
          }))
        return true;
    return false;
  };
  shape.kLoops = kRun(x);
  if (shape.kLoops.size() != op.getNumReductionLoops() ||
      kRun(y) != shape.kLoops || !adjacent(x, shape.kLoops) ||
      !adjacent(y, shape.kLoops))
    return failure();
  shape.k = shape.kLoops.back();
  AffineMap out = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (!out.isProjectedPermutation() ||
      llvm::any_of(shape.kLoops,
                   [&](unsigned d) { return out.isFunctionOfDim(d); }))
    return failure();
  auto reads = [&](OpOperand *operand, unsigned d) {
    return op.getMatchingIndexingMap(operand).isFunctionOfDim(d);
  };
  // A loop among the operand's two matrix dims that the other does not read.
  auto matrixLoop = [&](OpOperand *operand,
                        OpOperand *other) -> std::optional<unsigned> {
    // Its results without the K run: the matrix dim is among the last two.
    SmallVector<AffineExpr> results;
    for (AffineExpr e : op.getMatchingIndexingMap(operand).getResults())
      if (auto d = dyn_cast<AffineDimExpr>(e);
          !d || !llvm::is_contained(shape.kLoops, d.getPosition()))
        results.push_back(e);
    // The innermost such dim first: (b, m, k), (b, k, m) and broadcast
    // batches before them all give m.
    for (AffineExpr e : llvm::reverse(
             ArrayRef<AffineExpr>(results).take_back(std::min<size_t>(2, results.size()))))
      if (auto d = dyn_cast<AffineDimExpr>(e);
          d && !llvm::is_contained(shape.kLoops, d.getPosition()) &&
          !reads(other, d.getPosition()) &&
          out.isFunctionOfDim(d.getPosition()))
        return d.getPosition();
    return std::nullopt;
  };
  std::optional<unsigned> mx = matrixLoop(x, y), ny = matrixLoop(y, x);
  if (!mx || !ny || !reads(x, shape.k) || !reads(y, shape.k))
    return failure();
  // A is the operand whose matrix rows are the output's second-innermost.
  auto outDim = [&](unsigned d) {
    for (auto [i, e] : llvm::enumerate(out.getResults()))
      if (cast<AffineDimExpr>(e).getPosition() == d)
        return int64_t(i);
    return int64_t(-1);
  };
  shape.a = x;
  shape.b = y;
  shape.m = *mx;
  shape.n = *ny;
  if (outDim(shape.m) > outDim(shape.n)) {
    std::swap(shape.a, shape.b);
    std::swap(shape.m, shape.n);
  }
  for (unsigned d = 0; d < shape.ranges.size(); ++d)
    if (d != shape.m && d != shape.n && !llvm::is_contained(shape.kLoops, d))
      shape.batch.push_back(d);
  // Symbolic sizes (a batch, a sequence length): the batch loops that B
  // does not read (A and the output do) fold into M, outer first as the
  // output has them; every loop outside the rows must be static.
  if (llvm::any_of(shape.ranges, ShapedType::isDynamic)) {
    for (unsigned d : shape.batch)
      if (reads(shape.b, d) || !reads(shape.a, d))
        return failure();
    shape.folded = shape.batch;
    llvm::sort(shape.folded,
               [&](unsigned p, unsigned q) { return outDim(p) < outDim(q); });
    shape.batch.clear();
    for (unsigned d = 0; d < shape.ranges.size(); ++d)
      if (ShapedType::isDynamic(shape.ranges[d]) &&
          !llvm::is_contained(shape.rowLoops(), d))
        return failure();
  }
  // f16 x f16 or bf16 x bf16, summed in f32.
  Type aType = getElementTypeOrSelf(shape.a->get().getType());
  Type bType = getElementTypeOrSelf(shape.b->get().getType());
  Type cType = getElementTypeOrSelf(op.getDpsInitOperand(0)->get().getType());
  if (aType != bType || !(aType.isF16() || aType.isBF16()) || !cType.isF32())
    return failure();
  std::optional<unsigned> aInner =
      innermostLoop(op.getMatchingIndexingMap(shape.a));
  std::optional<unsigned> bInner =
      innermostLoop(op.getMatchingIndexingMap(shape.b));
  if (!aInner || !bInner || (*aInner != shape.k && *aInner != shape.m) ||
      (*bInner != shape.k && *bInner != shape.n))
    return failure();
  shape.aKInner = *aInner == shape.k;
  shape.bNInner = *bInner == shape.n;
  // Folded rows: A's 16-byte chunks run along K, never across rows.
  if (!shape.folded.empty() && !shape.aKInner)
    return failure();
  if (!chunkable(shape.a->get().getType(), kChunk) ||
      !chunkable(shape.b->get().getType(), kChunk))
    return failure();
  // Tensor-core tiles need at least one m16n8k16 step; smaller products,
  // and M <= 16 (decode: a matrix-vector stream), go elsewhere.
  if ((!shape.dynamicM() && shape.extent(shape.m) <= 16) ||
      shape.extent(shape.n) < 8 || shape.extent(shape.k) < 16)
    return failure();
  return shape;
}

/// The annotation that keeps a loop rolled through LLVM and ptxas (the
/// scf-to-cf lowering hands an scf.for's LLVM attributes to its branch;
/// NVPTX prints `.pragma "nounroll"`).
LLVM::LoopAnnotationAttr noUnroll(MLIRContext *context) {
  auto unroll = LLVM::LoopUnrollAttr::get(
      context, BoolAttr::get(context, true), {}, {}, {}, {}, {}, {});
  return LLVM::LoopAnnotationAttr::get(context, {}, {}, {}, unroll, {}, {},
                                       {}, {}, {}, {}, {}, {}, {}, {}, {});
}

struct KilnGpuGemmMmaSyncPass final
    : kiln::impl::KilnGpuGemmMmaSyncBase<KilnGpuGemmMmaSyncPass> {
  using Base::Base;

  /// One operand's shared ring: [stages][rows][cols], rows the operand's
  /// outer tile dimension, cols its innermost (contiguous) one.
  struct Ring {
    Value buffer;
    OpOperand *operand;
    int64_t rows, cols;
    unsigned rowLoop, colLoop;  // the loops rows and cols walk
    /// The operand's decoding (kiln-fuse-weight-decode), whose body gives
    /// each element; null when the operand is read from memory.
    linalg::GenericOp decode = nullptr;
  };

  /// cp.async of the slice of `ring` at K offset `kBase` into `stage`:
  /// each thread copies rows*cols/8/threads chunks; consecutive threads
  /// take consecutive chunks of a row.
  void loadSlice(Ix &ix, const MmaConfig &c, const MmaShape &shape,
                 linalg::LinalgOp op, const Ring &ring, Value stage,
                 Value tid, Value kBase, Value rowBase, Value colBase,
                 ArrayRef<Value> batchValues, Value enabled, Value mSize,
                 ArrayRef<Value> rowExtents,
                 SmallVectorImpl<Value> &tokens) {
    auto below = [&](Value index, unsigned loop) {
      return loop == shape.m ? ix.ltV(index, mSize)
                             : ix.lt(index, shape.extent(loop));
    };
    int64_t chunksPerRow = ring.cols / kChunk;
    int64_t perThread = ring.rows * chunksPerRow / c.threads();
    AffineMap map = op.getMatchingIndexingMap(ring.operand);
    for (int64_t i = 0; i < perThread; ++i) {
      Value e = ix.add(tid, i * c.threads());
      Value r = ix.div(e, chunksPerRow);
      Value chunk = ix.rem(e, chunksPerRow);
      // Global position of the chunk: the row's loop value and the first
      // column's; one of them is K.
      Value gRow = ix.add(ring.rowLoop == shape.k ? kBase : rowBase, r);
      Value gCol = ix.add(ring.colLoop == shape.k ? kBase : colBase,
                          ix.mul(chunk, kChunk));
      Value inside = ix.andI(below(gRow, ring.rowLoop),
                             below(gCol, ring.colLoop));
      if (enabled)
        inside = ix.andI(inside, enabled);
      // Outside: no bytes read (zero fill), from a clamped address.
      Value zero = ix.c(0);
      // The loop values of the element at (row, column) of the operand's
      // tile, clamped to 0 outside.
      auto loopsAt = [&](Value row, Value col, bool clamp = true) {
        SmallVector<Value> loops(shape.ranges.size());
        for (auto [d, v] : llvm::zip(shape.batch, batchValues))
          loops[d] = v;
        for (auto [loop, value] :
             {std::pair{ring.rowLoop, row}, std::pair{ring.colLoop, col}}) {
          Value clamped = clamp ? ix.select(inside, value, zero) : value;
          if (loop == shape.m) {
            assignRows(ix.b, ix.loc, shape, loops, clamped, rowExtents);
            continue;
          }
          if (loop != shape.k) {
            loops[loop] = clamped;
            continue;
          }
          // A linearized K: one index per reduction loop.
          for (auto [d, v] : llvm::zip(shape.kLoops,
                                       delinearize(ix.b, ix.loc, clamped,
                                                   shape.kExtents())))
            loops[d] = v;
        }
        return loops;
      };
      Value physical = ix.mul(swizzle(ix, r, chunk, chunksPerRow), kChunk);
      if (ring.decode) {
        // Decoded weights: the chunk's 8 elements from the packed bytes
        // (the decoding's body at each one's indices), stored to shared
        // memory by this thread; zero outside. Ordered like the copies:
        // the barrier after the wait publishes them.
        auto type = cast<MemRefType>(ring.buffer.getType());
        Value zeroValue = arith::ConstantOp::create(
            ix.b, ix.loc, ix.b.getZeroAttr(type.getElementType()));
        SmallVector<Value> values;
        // The chunk's start clamped once (a chunk inside K is whole), and
        // its elements along K from the chunk-aligned start, so that they
        // share their packed bytes', scales' and zero points' addresses.
        Value rowAt = ix.select(inside, gRow, zero);
        Value colAt = ix.select(inside, gCol, zero);
        for (int64_t j = 0; j < kChunk; ++j) {
          Value col = ring.colLoop == shape.k
                          ? alignedIndex(ix.b, ix.loc, colAt, kChunk, j)
                          : ix.add(colAt, j);
          Value decoded = evaluateDecoded(
              ix.b, ix.loc, ring.decode,
              indicesFor(ix.b, ix.loc, map,
                         loopsAt(rowAt, col, /*clamp=*/false)));
          values.push_back(ix.select(inside, decoded, zeroValue));
        }
        Value chunkValue = vector::FromElementsOp::create(
            ix.b, ix.loc, VectorType::get({kChunk}, type.getElementType()),
            values);
        vector::StoreOp::create(ix.b, ix.loc, chunkValue, ring.buffer,
                                ValueRange{stage, r, physical});
        continue;
      }
      SmallVector<Value> loops = loopsAt(gRow, gCol);
      Value srcElements = ix.select(inside, ix.c(kChunk), zero);
      tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
          ix.b, ix.loc, nvgpu::DeviceAsyncTokenType::get(ix.b.getContext()),
          /*dst=*/ring.buffer, ValueRange{stage, r, physical},
          /*src=*/ring.operand->get(), indicesFor(ix.b, ix.loc, map, loops),
          ix.b.getIndexAttr(kChunk), srcElements,
          /*bypassL1=*/ix.b.getUnitAttr()));
    }
  }

  /// ldmatrix of `tiles` 8x8 matrices from `ring` at `stage`: lane l gives
  /// the address of stored row `row(l)`, logical chunk `chunk(l)`.
  Value ldmatrix(Ix &ix, const Ring &ring, Value stage, Value row,
                 Value chunk, int64_t tiles, bool transpose, Type element) {
    Value physical =
        ix.mul(swizzle(ix, row, chunk, ring.cols / kChunk), kChunk);
    auto type = VectorType::get({tiles, 2}, element);
    return nvgpu::LdMatrixOp::create(ix.b, ix.loc, type, ring.buffer,
                                     ValueRange{stage, row, physical},
                                     transpose, tiles);
  }

  FailureOr<bool> rewrite(linalg::LinalgOp op, const StrategyConfig &config,
                          FusedEpilogues &fused) {
    if (!op.hasPureBufferSemantics())
      return false;
    FailureOr<MmaShape> analyzed = analyze(op);
    if (failed(analyzed))
      return false;
    FailureOr<MmaConfig> parsed = MmaConfig::read(config);
    if (failed(parsed))
      return failure();
    const MmaConfig &c = *parsed;
    const MmaShape &shape = *analyzed;
    OpOperand *out = op.getDpsInitOperand(0);
    Type element = getElementTypeOrSelf(shape.a->get().getType());
    Location loc = op.getLoc();
    OpBuilder b(op);

    int64_t N = shape.extent(shape.n), K = shape.extent(shape.k);
    int64_t batchCount = shape.batchCount();
    int64_t nTiles = llvm::divideCeil(N, c.bn);
    // A symbolic M: the grid's y is an expression of it (the runtime checks
    // the limit per run).
    int64_t mTiles = shape.dynamicM()
                         ? 1
                         : llvm::divideCeil(shape.extent(shape.m), c.bm);
    int64_t kTiles = llvm::divideCeil(K, c.bk);
    constexpr int64_t kMaxGridX = 0x7fffffff, kMaxGridYZ = 65535;
    bool foldBatch = batchCount > kMaxGridYZ;
    if (mTiles > kMaxGridYZ || (foldBatch && nTiles > kMaxGridX / batchCount))
      return config.error() << "the grid of " << nTiles << " x " << mTiles
                            << " tiles x " << batchCount
                            << " batches exceeds the device's limits";
    Value fillValue;
    if (auto fill = dyn_cast_or_null<linalg::FillOp>(op->getPrevNode()))
      if (fill.getOutputs().front() == out->get() &&
          fill.getInputs().front().getDefiningOp<arith::ConstantOp>()) {
        fillValue = fill.getInputs().front();
        fill.erase();
      }
    // A fused epilogue needs the accumulators' initial value from a
    // constant fill: the temporary it replaces is never read.
    linalg::GenericOp epilogue = fillValue ? fusedEpilogue(op) : nullptr;
    Value temporary = out->get();
    // Split-K: grid z runs over (batch, split), each split sums its run of
    // K slices into a workspace of f32 partials, and a second launch adds
    // them up (with the fill value) and finishes them. It needs the start
    // from a constant fill (the output's old contents would count once per
    // split) and static rows (the workspace's size).
    int64_t splits = 1, perSplit = kTiles;
    if (c.splitK > 1 && fillValue && !shape.dynamicM() && !foldBatch) {
      perSplit = llvm::divideCeil(kTiles, c.splitK);
      splits = llvm::divideCeil(kTiles, perSplit);
      if (batchCount * splits > kMaxGridYZ)
        return config.error() << "split_k " << splits << " x " << batchCount
                              << " batches exceeds the grid's z limit";
    }
    // Fewer slices than the ring: a shorter ring does the same.
    int64_t stages = std::min(c.stages, perSplit + 1);
    int64_t M = shape.dynamicM() ? 0 : shape.extent(shape.m);
    int64_t paddedN = N + N % 2;  // pairs of partials never straddle a row
    Value workspace;
    if (splits > 1)
      workspace = memref::AllocOp::create(
          b, loc,
          MemRefType::get({splits, batchCount, M, paddedN}, b.getF32Type()));

    auto shared = gpu::AddressSpaceAttr::get(
        op.getContext(), gpu::GPUDialect::getWorkgroupAddressSpace());
    SmallVector<Value> rowExtents = rowExtentsOf(b, loc, op, shape);
    if (rowExtents.empty())
      return false;
    Value mSize = rowExtents.front();
    for (Value e : ArrayRef<Value>(rowExtents).drop_front())
      mSize = arith::MulIOp::create(b, loc, mSize, e);
    Value mGrid = shape.dynamicM()
                      ? arith::CeilDivUIOp::create(b, loc, mSize,
                                                   constantIndex(b, loc, c.bm))
                            .getResult()
                      : constantIndex(b, loc, mTiles);
    Launch built = createLaunch(
        b, loc,
        {constantIndex(b, loc, foldBatch ? nTiles * batchCount : nTiles),
         mGrid,
         constantIndex(b, loc, foldBatch ? 1 : batchCount * splits)},
        {c.threads(), 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Ix ix{in, loc};

    // The rings, in each operand's orientation.
    Ring ringA{nullptr, shape.a, shape.aKInner ? c.bm : c.bk,
               shape.aKInner ? c.bk : c.bm, shape.aKInner ? shape.m : shape.k,
               shape.aKInner ? shape.k : shape.m};
    Ring ringB{nullptr, shape.b, shape.bNInner ? c.bk : c.bn,
               shape.bNInner ? c.bn : c.bk, shape.bNInner ? shape.k : shape.n,
               shape.bNInner ? shape.n : shape.k};
    // A B decoded from packed weights is computed where it is staged.
    ringB.decode = decodedOperandProducer(shape.b);
    for (Ring *ring : {&ringA, &ringB})
      ring->buffer = launch.addWorkgroupAttribution(
          MemRefType::get({stages, ring->rows, ring->cols}, element,
                          MemRefLayoutAttrInterface(), shared),
          loc);

    Value tid = launch.getThreadIds().x;
    Value lane = ix.rem(tid, kWarp);
    Value warp = ix.div(tid, kWarp);
    Value warpRow = ix.mul(ix.div(warp, c.wn), c.warpM());
    Value warpCol = ix.mul(ix.rem(warp, c.wn), c.warpN());
    Value nTile = launch.getBlockIds().x, batchId = launch.getBlockIds().z;
    Value split = ix.c(0);
    if (splits > 1) {
      split = ix.rem(batchId, splits);
      batchId = ix.div(batchId, splits);
    }
    // This block's first K slice.
    Value kFirst = ix.mul(split, perSplit);
    // Its slices: perSplit, fewer for the last split.
    Value kCount =
        splits > 1 ? arith::MinUIOp::create(
                         in, loc, ix.c(perSplit),
                         arith::SubIOp::create(in, loc, ix.c(kTiles), kFirst))
                         .getResult()
                   : ix.c(perSplit);
    if (foldBatch) {
      batchId = ix.div(nTile, nTiles);
      nTile = ix.rem(nTile, nTiles);
    }
    Value nBase = ix.mul(nTile, c.bn);
    Value mBase = ix.mul(launch.getBlockIds().y, c.bm);
    SmallVector<int64_t> batchExtents;
    for (unsigned d : shape.batch)
      batchExtents.push_back(shape.ranges[d]);
    SmallVector<Value> batchValues = delinearize(in, loc, batchId, batchExtents);
    auto rowColBase = [&](const Ring &ring) {
      auto base = [&](unsigned loop) {
        return loop == shape.m ? mBase : loop == shape.n ? nBase : Value();
      };
      return std::make_pair(base(ring.rowLoop), base(ring.colLoop));
    };
    auto tokenType = nvgpu::DeviceAsyncTokenType::get(op.getContext());
    // Loads slice kt into `stage` and commits its group; with `enabled`
    // false (past the last slice) the copies read nothing and zero-fill,
    // so every iteration commits one group and the waits count right.
    auto loadStage = [&](Ix &lx, Value kt, Value stage, Value enabled) {
      Value kBase = lx.mul(lx.add(kFirst, kt), c.bk);
      SmallVector<Value> tokens;
      for (const Ring *ring : {&ringA, &ringB}) {
        auto [rowBase, colBase] = rowColBase(*ring);
        loadSlice(lx, c, shape, op, *ring, stage, tid, kBase, rowBase,
                  colBase, batchValues, enabled, mSize, rowExtents, tokens);
      }
      return nvgpu::DeviceAsyncCreateGroupOp::create(lx.b, loc, tokenType,
                                                     tokens)
          .getResult();
    };

    // The output element of accumulator element i of tile (mt, nt) of this
    // lane: row groupID + 8*(i/2), column 2*threadID_in_group + i%2.
    int64_t mt = c.warpM() / 16, nt = c.warpN() / 8;
    Value group = ix.div(lane, 4), inGroup = ix.rem(lane, 4);
    AffineMap outMap = op.getMatchingIndexingMap(out);
    auto outAt = [&](Ix &ox, int64_t i, int64_t j, int64_t e, Value &inside) {
      Value row = ox.add(ox.add(mBase, warpRow), ox.add(group, i * 16 + 8 * (e / 2)));
      Value col = ox.add(ox.add(nBase, warpCol),
                         ox.add(ox.mul(inGroup, 2), j * 8 + e % 2));
      inside = ox.andI(ox.ltV(row, mSize), ox.lt(col, N));
      SmallVector<Value> loops(shape.ranges.size());
      for (auto [d, v] : llvm::zip(shape.batch, batchValues))
        loops[d] = v;
      assignRows(ox.b, ox.loc, shape, loops, row, rowExtents);
      loops[shape.n] = col;
      return loops;
    };

    // Initial accumulators: the fill value, else the output's contents.
    auto accType = VectorType::get({2, 2}, in.getF32Type());
    SmallVector<Value> inits;
    for (int64_t i = 0; i < mt; ++i)
      for (int64_t j = 0; j < nt; ++j) {
        if (fillValue) {
          // Split-K: partials start at 0; the combine adds the fill once.
          auto attr = cast<FloatAttr>(
              fillValue.getDefiningOp<arith::ConstantOp>().getValue());
          APFloat start = splits > 1 ? APFloat::getZero(attr.getValue().getSemantics())
                                     : attr.getValue();
          inits.push_back(arith::ConstantOp::create(
              in, loc, DenseElementsAttr::get(accType, start)));
          continue;
        }
        SmallVector<Value> elements;
        for (int64_t e = 0; e < 4; ++e) {
          Value inside;
          SmallVector<Value> loops = outAt(ix, i, j, e, inside);
          auto load = scf::IfOp::create(in, loc, in.getF32Type(), inside, true);
          OpBuilder tb = load.getThenBodyBuilder();
          scf::YieldOp::create(
              tb, loc,
              memref::LoadOp::create(tb, loc, out->get(),
                                     indicesFor(tb, loc, outMap, loops))
                  .getResult());
          OpBuilder eb = load.getElseBodyBuilder();
          scf::YieldOp::create(
              eb, loc,
              arith::ConstantOp::create(eb, loc, eb.getF32FloatAttr(0.0f))
                  .getResult());
          elements.push_back(load.getResult(0));
        }
        inits.push_back(
            vector::FromElementsOp::create(in, loc, accType, elements));
      }

    // Prologue: slices 0 .. S-2, a commit group each.
    Value token;
    for (int64_t s = 0; s + 1 < stages; ++s)
      token = loadStage(ix, ix.c(s), ix.c(s),
                        splits > 1 ? ix.ltV(ix.c(s), kCount) : Value());
    SmallVector<Value> carried(inits);
    carried.push_back(token);
    auto kLoop = scf::ForOp::create(in, loc, ix.c(0), kCount, ix.c(1),
                                    carried);
    {
      OpBuilder kb = OpBuilder::atBlockBegin(kLoop.getBody());
      Ix kx{kb, loc};
      Value kt = kLoop.getInductionVar();
      ValueRange iter = kLoop.getRegionIterArgs();
      // Slice kt has landed (all but the S-2 newest groups are complete),
      // for every thread (barrier); the barrier also ends the reads of the
      // stage the next load overwrites.
      nvgpu::DeviceAsyncWaitOp::create(kb, loc, iter.back(),
                                       kb.getI32IntegerAttr(stages - 2));
      gpu::BarrierOp::create(kb, loc);
      Value next = kx.add(kt, stages - 1);
      Value nextToken =
          loadStage(kx, next, kx.rem(next, stages),
                    splits > 1 ? kx.ltV(next, kCount) : kx.lt(next, kTiles));
      Value stage = kx.rem(kt, stages);
      SmallVector<Value> accs(iter.drop_back());
      for (int64_t kk = 0; kk < c.bk / 16; ++kk) {
        SmallVector<Value> aFrag, bFrag;
        for (int64_t i = 0; i < mt; ++i) {
          Value m0 = kx.add(warpRow, i * 16);
          Value row, chunk;
          if (shape.aKInner) {  // stored [m][k]: rows m, chunks of k
            row = kx.add(m0, kx.rem(lane, 16));
            chunk = kx.add(kx.div(lane, 16), kk * 2);
          } else {  // stored [k][m]: transposed loads
            row = kx.add(kx.add(kx.rem(lane, 8), kx.mul(kx.div(lane, 16), 8)),
                         kk * 16);
            chunk = kx.add(kx.div(m0, 8), kx.rem(kx.div(lane, 8), 2));
          }
          aFrag.push_back(ldmatrix(kx, ringA, stage, row, chunk, 4,
                                   !shape.aKInner, element));
        }
        for (int64_t j = 0; j < nt; ++j) {
          Value n0 = kx.add(warpCol, j * 8);
          Value row, chunk;
          if (shape.bNInner) {  // stored [k][n]: transposed loads
            row = kx.add(kx.rem(lane, 16), kk * 16);
            chunk = kx.div(n0, 8);
          } else {  // stored [n][k]
            row = kx.add(n0, kx.rem(lane, 8));
            chunk = kx.add(kx.rem(kx.div(lane, 8), 2), kk * 2);
          }
          bFrag.push_back(ldmatrix(kx, ringB, stage, row, chunk, 2,
                                   shape.bNInner, element));
        }
        for (int64_t i = 0; i < mt; ++i)
          for (int64_t j = 0; j < nt; ++j) {
            Value &acc = accs[i * nt + j];
            acc = nvgpu::MmaSyncOp::create(
                kb, loc, aFrag[i], bFrag[j], acc,
                kb.getI64ArrayAttr({16, 8, 16}));
          }
      }
      accs.push_back(nextToken);
      scf::YieldOp::create(kb, loc, accs);
    }

    // Epilogue: the accumulators to the output, guarded at the edges, or
    // through the fused elementwise generic (bias, activation, residual,
    // cast) to its output. A lane's two elements of a row are adjacent
    // columns: where the destination's innermost dimension is N
    // (contiguous, N even, so a pair never straddles the edge) they leave
    // as one 8-byte (f32) or 4-byte (16-bit) store, and a quad of lanes
    // fills a 32-byte sector; the epilogue's other operands are read in
    // pairs where their layout allows.
    Value dest = out->get();
    AffineMap destMap = outMap;
    // The epilogue's loops are the output's dims, in order.
    auto epilogueLoops = [&](ArrayRef<Value> loops) {
      SmallVector<Value> result;
      for (unsigned i = 0; i < outMap.getNumResults(); ++i)
        result.push_back(loops[outMap.getDimPosition(i)]);
      return result;
    };
    unsigned destInner = shape.n;
    if (epilogue) {
      dest = epilogue.getDpsInitOperand(0)->get();
      destMap = epilogue.getMatchingIndexingMap(epilogue.getDpsInitOperand(0));
      destInner = outMap.getNumResults() - 1;
    }
    bool pairs = splits == 1 && N % 2 == 0 &&
                 innermostLoop(outMap) == shape.n &&
                 pairable(dest, destMap, destInner);
    // The values to store for adjacent accumulator elements at `loops`
    // (the first of them).
    auto finish = [&](OpBuilder &sb, ArrayRef<Value> loops,
                      SmallVector<Value> accs) -> SmallVector<Value> {
      if (!epilogue)
        return accs;
      return applyEpilogue(sb, loc, epilogue, temporary, epilogueLoops(loops),
                           accs);
    };
    auto destIndices = [&](OpBuilder &sb, ArrayRef<Value> loops) {
      return epilogue ? indicesFor(sb, loc, destMap, epilogueLoops(loops))
                      : indicesFor(sb, loc, destMap, loops);
    };
    Type destElement = getElementTypeOrSelf(dest.getType());
    // Each of the lane's pairs of adjacent accumulator elements inside the
    // output, with its loops, under a guard.
    auto forEachPair = [&](auto store) {
      for (int64_t i = 0; i < mt; ++i)
        for (int64_t j = 0; j < nt; ++j)
          for (int64_t half = 0; half < 2; ++half) {
            Value inside;
            SmallVector<Value> loops = outAt(ix, i, j, 2 * half, inside);
            OpBuilder sb = scf::IfOp::create(in, loc, inside, false)
                               .getThenBodyBuilder();
            SmallVector<Value> accs;
            for (int64_t e = 0; e < 2; ++e)
              accs.push_back(vector::ExtractOp::create(
                  sb, loc, kLoop.getResult(i * nt + j),
                  ArrayRef<int64_t>{half, e}));
            store(sb, loops, accs);
          }
    };
    if (pairs)
      forEachPair([&](OpBuilder &sb, ArrayRef<Value> loops,
                      SmallVector<Value> accs) {
        Value v = vector::FromElementsOp::create(
            sb, loc, VectorType::get({2}, destElement),
            finish(sb, loops, accs));
        vector::StoreOp::create(
            sb, loc, v, dest, destIndices(sb, loops), /*nontemporal=*/false,
            llvm::MaybeAlign(2 * destElement.getIntOrFloatBitWidth() / 8));
      });
    // Rows contiguous along N, but no pairs (N odd: a row starts anywhere
    // in a sector): each m16 strip of the block's tile goes through
    // shared memory, and then each warp stores 32 adjacent columns of a row
    // per instruction, the windows aligned to the destination's 32-byte
    // sectors where its strides are known (a row of BN columns then costs
    // BN/8 + 1 sectors, not the ~2 per 8 columns of fragment stores).
    int64_t destOffset = 0;
    SmallVector<int64_t> destStrides;
    bool staged = splits == 1 && !pairs && innermostLoop(outMap) == shape.n &&
                  staticRowLayout(dest, destMap, destInner, destStrides,
                                  destOffset);
    if (staged) {
      // The strip: the block's warp rows x 16 rows x BN columns of f32,
      // rows padded by 8 floats so that a quad's 8-byte fragment stores
      // (rows 8 apart in a 16-lane phase) hit 32 different banks. It takes
      // B's ring, done with once the K loop is (its last copies landed and
      // every warp past its last ldmatrix), each f32 as two 16-bit
      // elements; no more shared memory, so the occupancy stays. A ring too
      // short for it (a K of one or two slices) leaves it a buffer of its
      // own.
      int64_t stripRows = c.wm * 16, stripCols = c.bn + 8;
      int64_t stripFloats = stripRows * stripCols;
      bool inRing = 2 * stripFloats <= stages * ringB.rows * ringB.cols;
      Type f32 = in.getF32Type();
      Value strip;
      if (inRing) {
        nvgpu::DeviceAsyncWaitOp::create(in, loc, kLoop.getResults().back(),
                                         in.getI32IntegerAttr(0));
        gpu::BarrierOp::create(in, loc);
        strip = memref::CollapseShapeOp::create(
            in, loc, ringB.buffer,
            ArrayRef<ReassociationIndices>{ReassociationIndices{0, 1, 2}});
      } else {
        // Past 48 KiB with the rings (a 128-tile of one slice: 2 x 16 KiB
        // + 17 KiB), kiln-gpu-hopper-abi makes the buffers dynamic shared
        // memory.
        strip = launch.addWorkgroupAttribution(
            MemRefType::get({stripFloats}, f32, MemRefLayoutAttrInterface(),
                            shared),
            loc);
      }
      // Two adjacent floats at float `at` (even) of the strip, and one.
      auto storePair = [&](OpBuilder &sb, Value at, Value pair) {
        if (inRing) {
          Ix sx{sb, loc};
          pair = vector::BitCastOp::create(
              sb, loc, VectorType::get({4}, element), pair);
          at = sx.mul(at, 2);
        }
        vector::StoreOp::create(sb, loc, pair, strip, at,
                                /*nontemporal=*/false, llvm::MaybeAlign(8));
      };
      auto loadOne = [&](OpBuilder &lb, Value at) -> Value {
        if (!inRing)
          return memref::LoadOp::create(lb, loc, strip, at);
        Ix lx{lb, loc};
        Value halves = vector::LoadOp::create(
            lb, loc, VectorType::get({2}, element), strip, lx.mul(at, 2),
            /*nontemporal=*/false, llvm::MaybeAlign(4));
        Value one = vector::BitCastOp::create(
            lb, loc, VectorType::get({1}, f32), halves);
        return vector::ExtractOp::create(lb, loc, one, ArrayRef<int64_t>{0});
      };
      int64_t elementBytes =
          std::max<int64_t>(1, destElement.getIntOrFloatBitWidth() / 8);
      int64_t sector = std::max<int64_t>(1, 32 / elementBytes);
      // Windows of 32 columns per row, the first shifted left so that it
      // starts on a sector: BN + sector - 1 columns at most to cover.
      int64_t windows = llvm::divideCeil(c.bn + sector - 1, kWarp);
      int64_t warps = c.wm * c.wn, jobs = stripRows * windows;
      Value warpRowIndex = ix.div(warp, c.wn);
      for (int64_t i = 0; i < mt; ++i) {
        for (int64_t j = 0; j < nt; ++j)
          for (int64_t half = 0; half < 2; ++half) {
            Value r = ix.add(ix.mul(warpRowIndex, 16), ix.add(group, 8 * half));
            Value col = ix.add(warpCol, ix.add(ix.mul(inGroup, 2), j * 8));
            SmallVector<Value> pair;
            for (int64_t e = 0; e < 2; ++e)
              pair.push_back(vector::ExtractOp::create(
                  in, loc, kLoop.getResult(i * nt + j),
                  ArrayRef<int64_t>{half, e}));
            storePair(in, ix.add(ix.mul(r, stripCols), col),
                      vector::FromElementsOp::create(
                          in, loc, VectorType::get({2}, f32), pair));
          }
        gpu::BarrierOp::create(in, loc);
        auto jobLoop = scf::ForOp::create(
            in, loc, ix.c(0), ix.c(llvm::divideCeil(jobs, warps)), ix.c(1));
        // Kept a loop: unrolled (ptxas would, 20 copies for a 128 tile),
        // its loads and address arithmetic hoisted together take ~60 more
        // registers than the K loop needs, which halves the occupancy.
        jobLoop->setAttr("loop_annotation", noUnroll(in.getContext()));
        OpBuilder jb = OpBuilder::atBlockBegin(jobLoop.getBody());
        Ix jx{jb, loc};
        Value job = jx.add(warp, jx.mul(jobLoop.getInductionVar(), warps));
        OpBuilder gb = jobs % warps ? guardBelow(jb, loc, job, jx.c(jobs)) : jb;
        Ix gx{gb, loc};
        Value r = gx.div(job, windows), window = gx.rem(job, windows);
        Value row = gx.add(gx.add(mBase, gx.mul(gx.div(r, 16), c.warpM())),
                           gx.add(gx.rem(r, 16), i * 16));
        SmallVector<Value> loops(shape.ranges.size());
        for (auto [d, v] : llvm::zip(shape.batch, batchValues))
          loops[d] = v;
        assignRows(gb, loc, shape, loops, row, rowExtents);
        // The shift: the destination element (row, nBase) within its
        // sector.
        loops[shape.n] = nBase;
        Value shift = gx.c(0);
        if (sector > 1) {
          Value linear = gx.c(destOffset);
          for (auto [index, stride] :
               llvm::zip(destIndices(gb, loops), destStrides))
            linear = gx.add(linear, gx.mul(index, stride));
          shift = gx.rem(linear, sector);
        }
        // Column of the strip; below the shift it wraps around and fails
        // the unsigned bound.
        Value local = arith::SubIOp::create(
            gb, loc, gx.add(gx.mul(window, kWarp), lane), shift);
        Value colAt = gx.add(nBase, local);
        Value inside = gx.andI(gx.andI(gx.lt(local, c.bn), gx.lt(colAt, N)),
                               gx.ltV(row, mSize));
        OpBuilder sb =
            scf::IfOp::create(gb, loc, inside, false).getThenBodyBuilder();
        Ix sx{sb, loc};
        Value v = loadOne(sb, sx.add(sx.mul(r, stripCols), local));
        loops[shape.n] = colAt;
        memref::StoreOp::create(sb, loc, finish(sb, loops, {v}).front(), dest,
                                destIndices(sb, loops));
        // The next strip overwrites this one once every warp has read it.
        if (i + 1 < mt)
          gpu::BarrierOp::create(in, loc);
      }
    }
    // Split-K: each lane's adjacent partial sums to the workspace as one
    // 8-byte store (its rows padded to an even length: every pair whole).
    if (splits > 1)
      forEachPair([&](OpBuilder &sb, ArrayRef<Value> loops,
                      SmallVector<Value> accs) {
        vector::StoreOp::create(
            sb, loc,
            vector::FromElementsOp::create(
                sb, loc, VectorType::get({2}, sb.getF32Type()), accs),
            workspace,
            ValueRange{split, batchId, loops[shape.m], loops[shape.n]},
            /*nontemporal=*/false, llvm::MaybeAlign(8));
      });
    for (int64_t i = 0; splits == 1 && !pairs && !staged && i < mt; ++i)
      for (int64_t j = 0; j < nt; ++j)
        for (int64_t e = 0; e < 4; ++e) {
          Value inside;
          SmallVector<Value> loops = outAt(ix, i, j, e, inside);
          OpBuilder sb = scf::IfOp::create(in, loc, inside, false)
                             .getThenBodyBuilder();
          Value v = vector::ExtractOp::create(
              sb, loc, kLoop.getResult(i * nt + j),
              ArrayRef<int64_t>{e / 2, e % 2});
          memref::StoreOp::create(sb, loc, finish(sb, loops, {v}).front(),
                                  dest, destIndices(sb, loops));
        }
    gpu::TerminatorOp::create(in, loc);
    if (splits > 1) {
      // The combine: a thread per output element adds the fill value and
      // every split's partial (consecutive threads, consecutive columns),
      // then finishes it through the epilogue.
      constexpr int64_t kThreads = 256;
      int64_t elements = M * N;
      Launch combine = createLaunch(
          b, loc,
          {constantIndex(b, loc, llvm::divideCeil(elements, kThreads)),
           constantIndex(b, loc, batchCount), constantIndex(b, loc, 1)},
          {kThreads, 1, 1}, config);
      OpBuilder &cb = combine.body;
      Ix cx{cb, loc};
      Value e = cx.add(cx.mul(combine.op.getBlockIds().x, kThreads),
                       combine.op.getThreadIds().x);
      Value batch = combine.op.getBlockIds().y;
      OpBuilder tb = guardBelow(cb, loc, e, cx.c(elements));
      Ix tx{tb, loc};
      Value row = tx.div(e, N), col = tx.rem(e, N);
      Value sum = arith::ConstantOp::create(
          tb, loc, fillValue.getDefiningOp<arith::ConstantOp>().getValue());
      for (int64_t s = 0; s < splits; ++s)
        sum = arith::AddFOp::create(
            tb, loc, sum,
            memref::LoadOp::create(tb, loc, workspace,
                                   ValueRange{tx.c(s), batch, row, col}));
      SmallVector<Value> loops(shape.ranges.size());
      for (auto [d, v] :
           llvm::zip(shape.batch, delinearize(tb, loc, batch, batchExtents)))
        loops[d] = v;
      loops[shape.m] = row;
      loops[shape.n] = col;
      memref::StoreOp::create(tb, loc, finish(tb, loops, {sum}).front(), dest,
                              destIndices(tb, loops));
      gpu::TerminatorOp::create(cb, loc);
      memref::DeallocOp::create(b, loc, workspace);
    }
    op.erase();
    if (ringB.decode)
      eraseDecoded(ringB.decode);
    // The epilogue and the temporary go once every op of the kernel has
    // been seen (applyStrategy holds them).
    if (epilogue)
      fused.push_back({epilogue, temporary});
    return true;
  }


  void runOnOperation() override {
    if (failed(applyGemmStrategy(
            getOperation(), kGemmMmaSync,
            [&](linalg::LinalgOp op, const StrategyConfig &config,
                FusedEpilogues &fused) { return rewrite(op, config, fused); })))
      return signalPassFailure();
  }
};

} // namespace

std::optional<std::array<int64_t, 4>>
kiln::gemmMmaSyncShape(linalg::LinalgOp op) {
  FailureOr<MmaShape> shape = analyze(op);
  if (failed(shape))
    return std::nullopt;
  return std::array<int64_t, 4>{
      shape->dynamicM() ? ShapedType::kDynamic : shape->extent(shape->m),
      shape->extent(shape->n), shape->batchCount(), shape->extent(shape->k)};
}
