//===- FlashAttention.cpp - attention as one mma.sync kernel -------------===//
//
// The attention strategy for `kiln.attention` of f16 or bf16 operands
// (what `--precision` makes of a raised attention), configured by `tile`
// (BM query rows, BN keys per step) and `stages` (S). FlashAttention-2's
// schedule on mma.sync m16n8k16, the same building blocks as
// gemm-mma-sync:
//
// - one block of BM/16 warps per BM query rows of one (batch, head): grid
//   x over query tiles, y over query heads, z over the batch; each warp
//   owns 16 rows. Query head h reads KV head h / (Hq / Hkv) in place
//   (grouped-query attention: K and V are never repeated);
// - the Q tile goes global -> shared with cp.async once and into mma A
//   fragments (ldmatrix) for the whole kernel; K and V tiles of BN keys
//   stream through an S-stage cp.async ring (16-byte chunks, zero-filled
//   past the sequence and the head size, XOR-swizzled chunks);
// - per KV tile: S = Q Kᵀ on the tensor cores (K read [key][d], which is
//   Kᵀ's "n-major" layout: plain ldmatrix), then in registers the scale,
//   the softcap, the bias (read from global per element), the causal and
//   length masks (-inf), and the online softmax: the row max across the
//   four lanes of a row (two xor shuffles), the running max m and the
//   lane's partial sum l rescaled by exp(m_old - m_new), P = exp(S - m);
//   P is rounded to the operand type and is already the A fragment of the
//   second product (the m16n8 accumulator layout of two adjacent key
//   tiles is the m16k16 A layout), O += P V with V read transposed
//   (ldmatrix.trans);
// - KV tiles entirely above the causal diagonal are never loaded: the
//   loop ends at the last tile a row of this block can see;
// - the end: l summed across the row's lanes, O / l (0 for a row with
//   every key masked, as the op says) rounded to the result type, staged
//   in K's ring and stored in 16-byte chunks of whole rows (pairs where
//   the output's rows do not take chunks), guarded at the sequence and
//   head edges.
//
// Three options of the configuration:
// - `splits` (split-KV, for decode): grid z runs over (batch, split), a
//   block reads its split's share of the key tiles and stores O (not yet
//   divided) and its rows' max and sum in f32 to a workspace; a second
//   launch combines the splits (log-sum-exp);
// - `pack_heads` (decode with grouped-query heads): a block per KV head,
//   whose tile rows are the group's (query head, query) pairs, so each K/V
//   tile is loaded once for the group;
// - none, but the operands: q, k, v that data movement inside the kernel
//   wrote into temporaries (the head split kiln-gpu-fuse-attention-layouts
//   merged in) are read in place through strided views, and the result is
//   written through the permutation after it (BufferViews.h); an operand
//   that a generic computes from reads (a rotary embedding merged in the
//   same way) is evaluated by the threads chunk by chunk where its tiles
//   are loaded, instead of copied with cp.async.
//
// The scores, their softmax and the accumulators are f32 throughout; only
// P is rounded, as the decomposition with softmax_type f32 does.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/FlashCommon.h"
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include "llvm/ADT/SetVector.h"

#include <cmath>
#include <functional>
#include <tuple>

namespace kiln {
#define GEN_PASS_DEF_KILNGPUFLASHATTENTION
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWarp = 32;
constexpr int64_t kChunk = 8; // 16-byte chunks of 16-bit elements

int64_t roundUp(int64_t x, int64_t to) { return llvm::divideCeil(x, to) * to; }

struct FlashConfig {
  int64_t bm, bn, stages, splits = 1;
  bool packHeads = false;
  int64_t warps() const { return bm / 16; }
  int64_t threads() const { return kWarp * warps(); }

  static FailureOr<FlashConfig> read(const StrategyConfig &config) {
    FailureOr<SmallVector<int64_t>> tile = config.getInts("tile", 2);
    FailureOr<int64_t> stages = config.getInt("stages");
    if (failed(tile) || failed(stages))
      return failure();
    FlashConfig c{(*tile)[0], (*tile)[1], *stages};
    if (config.attr().get("splits")) {
      FailureOr<int64_t> splits = config.getInt("splits");
      if (failed(splits))
        return failure();
      if (*splits < 1)
        return config.error() << "splits must be at least 1";
      c.splits = *splits;
    }
    if (config.attr().get("pack_heads")) {
      FailureOr<int64_t> pack = config.getInt("pack_heads");
      if (failed(pack) || (*pack != 0 && *pack != 1))
        return config.error() << "pack_heads must be 0 or 1";
      c.packHeads = *pack;
    }
    if (c.bm % 16 || c.bn % 16)
      return config.error()
             << "the query tile (16 rows per warp) and the key "
                "tile (k16 steps of P V) must be multiples of 16";
    if (c.stages < 2)
      return config.error() << "the pipeline needs at least 2 stages";
    return c;
  }
};

} // namespace

std::optional<kiln::FlashShape> kiln::flashAttentionShape(Operation *root) {
  auto op = dyn_cast<AttentionOp>(root);
  if (!op)
    return std::nullopt;
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  auto k = cast<RankedTensorType>(op.getKey().getType());
  auto v = cast<RankedTensorType>(op.getValue().getType());
  Type element = q.getElementType();
  // Heads and head sizes are static; the batch, query and key counts may
  // be symbolic (a dynamic export), and so may the bias's dims.
  auto headsStatic = [](RankedTensorType t) {
    return !t.isDynamicDim(1) && !t.isDynamicDim(3);
  };
  if (!(element.isF16() || element.isBF16()) || !headsStatic(q) ||
      !headsStatic(k) || !headsStatic(v))
    return std::nullopt;
  if (std::optional<Type> softmax = op.getSoftmaxType();
      softmax && !softmax->isF32())
    return std::nullopt;
  FlashShape shape{q.getDimSize(0), q.getDimSize(1), q.getDimSize(2),
                   q.getDimSize(3), k.getDimSize(1), k.getDimSize(2),
                   v.getDimSize(3)};
  // 16-byte chunks along the head; heads up to 128 (the accumulators of
  // one warp's 16 rows stay in registers).
  if (shape.headQK % kChunk || shape.headV % kChunk ||
      roundUp(shape.headQK, 16) > 128 || roundUp(shape.headV, 16) > 128 ||
      (!ShapedType::isDynamic(shape.keys) && shape.keys < 1) ||
      (!ShapedType::isDynamic(shape.queries) && shape.queries < 1))
    return std::nullopt;
  return shape;
}

int64_t kiln::flashAttentionSharedBytes(const FlashShape &shape, int64_t bm,
                                        int64_t bn, int64_t stages) {
  int64_t dq = roundUp(shape.headQK, 16), dv = roundUp(shape.headV, 16);
  return 2 * (bm * dq + stages * bn * (dq + dv));
}

namespace {

struct KilnGpuFlashAttentionPass final
    : kiln::impl::KilnGpuFlashAttentionBase<KilnGpuFlashAttentionPass> {
  using Base::Base;

  /// A shared tile of `rows` x `width` elements in `stages` stages.
  struct Tile {
    Value buffer;
    int64_t rows, width;
    int64_t chunks() const { return width / kChunk; }
  };

  /// cp.async of `tile.rows` rows of `source` [B, H, rows, cols] (batch
  /// `batch`, head `head`) from row `rowBase` into `stage` of `tile`; rows
  /// past `rowCount` and columns past `cols` are zero-filled (and read
  /// nothing), and every copy is skipped without `enabled`.
  /// With `rowMap`, tile row r reads row rowMap(r).second of head
  /// rowMap(r).first instead (query heads packed into the rows). With
  /// `computed`, the generic that computes `source`'s elements from reads
  /// (a rotary embedding), the elements are evaluated instead (evaluate).
  using RowMap = std::function<std::pair<Value, Value>(Ix &, Value)>;
  void load(Ix &ix, int64_t threads, Value tid, const Tile &tile, Value stage,
            Value source, Value batch, Value head, Value rowBase,
            Value rowCount, int64_t cols, Value enabled,
            SmallVectorImpl<Value> &tokens, const RowMap &rowMap = nullptr,
            linalg::GenericOp computed = nullptr) {
    if (computed)
      return evaluate(ix, threads, tid, tile, stage, computed, batch, head,
                      rowBase, rowCount, cols, enabled, rowMap);
    int64_t total = tile.rows * tile.chunks();
    auto tokenType = nvgpu::DeviceAsyncTokenType::get(ix.b.getContext());
    int64_t rounds = llvm::divideCeil(total, threads);
    for (int64_t i = 0; i < rounds; ++i) {
      Value e = ix.add(tid, i * threads);
      OpBuilder::InsertionGuard guard(ix.b);
      // The last round may have fewer chunks than threads.
      if ((i + 1) * threads > total) {
        auto inRange = scf::IfOp::create(ix.b, ix.loc, ix.lt(e, total), false);
        ix.b.setInsertionPoint(inRange.thenBlock()->getTerminator());
      }
      Value r = ix.div(e, tile.chunks());
      Value chunk = ix.rem(e, tile.chunks());
      Value row = ix.add(rowBase, r);
      Value col = ix.mul(chunk, kChunk);
      Value inside = ix.andI(ix.ltV(row, rowCount), ix.lt(col, cols));
      if (enabled)
        inside = ix.andI(inside, enabled);
      Value zero = ix.c(0);
      Value physical = ix.mul(swizzle(ix, r, chunk, tile.chunks()), kChunk);
      SmallVector<Value> dst = {r, physical};
      if (stage)
        dst.insert(dst.begin(), stage);
      Value sourceHead = head, sourceRow = ix.select(inside, row, zero);
      if (rowMap)
        std::tie(sourceHead, sourceRow) = rowMap(ix, sourceRow);
      Value token = nvgpu::DeviceAsyncCopyOp::create(
          ix.b, ix.loc, tokenType, tile.buffer, dst, source,
          ValueRange{batch, sourceHead, sourceRow,
                     ix.select(inside, col, zero)},
          ix.b.getIndexAttr(kChunk), ix.select(inside, ix.c(kChunk), zero),
          /*bypassL1=*/ix.b.getUnitAttr());
      // A token made under the guard cannot leave it: the group commits
      // every copy issued so far by this thread anyway.
      if ((i + 1) * threads <= total)
        tokens.push_back(token);
    }
  }

  /// load() for an operand that `computed` computes: thread t evaluates
  /// elements t, t + threads, ... of the tile in row-major order (a warp
  /// reads consecutive columns: whole sectors) and stores each where the
  /// chunk swizzle puts it; zero past the rows, the columns and without
  /// `enabled`.
  void evaluate(Ix &ix, int64_t threads, Value tid, const Tile &tile,
                Value stage, linalg::GenericOp computed, Value batch,
                Value head, Value rowBase, Value rowCount, int64_t cols,
                Value enabled, const RowMap &rowMap) {
    Type element = getElementTypeOrSelf(tile.buffer.getType());
    int64_t total = tile.rows * tile.width;
    for (int64_t i = 0; i < llvm::divideCeil(total, threads); ++i) {
      Value e = ix.add(tid, i * threads);
      OpBuilder::InsertionGuard guard(ix.b);
      if ((i + 1) * threads > total) {
        auto inRange = scf::IfOp::create(ix.b, ix.loc, ix.lt(e, total), false);
        ix.b.setInsertionPoint(inRange.thenBlock()->getTerminator());
      }
      Value r = ix.div(e, tile.width), col = ix.rem(e, tile.width);
      Value row = ix.add(rowBase, r);
      Value inside = ix.andI(ix.ltV(row, rowCount), ix.lt(col, cols));
      if (enabled)
        inside = ix.andI(inside, enabled);
      Value sourceHead = head, sourceRow = row;
      if (rowMap)
        std::tie(sourceHead, sourceRow) = rowMap(ix, row);
      Value value = evaluateOrZero(ix.b, ix.loc, computed, inside,
                                   {batch, sourceHead, sourceRow, col},
                                   element);
      Value chunk = swizzle(ix, r, ix.div(col, kChunk), tile.chunks());
      SmallVector<Value> dst = {r, ix.add(ix.mul(chunk, kChunk),
                                          ix.rem(col, kChunk))};
      if (stage)
        dst.insert(dst.begin(), stage);
      memref::StoreOp::create(ix.b, ix.loc, value, tile.buffer, dst);
    }
  }

  Value ldmatrix(Ix &ix, const Tile &tile, Value stage, Value row, Value chunk,
                 int64_t count, bool transpose, Type element) {
    Value physical = ix.mul(swizzle(ix, row, chunk, tile.chunks()), kChunk);
    SmallVector<Value> indices = {row, physical};
    if (stage)
      indices.insert(indices.begin(), stage);
    return nvgpu::LdMatrixOp::create(ix.b, ix.loc,
                                     VectorType::get({count, 2}, element),
                                     tile.buffer, indices, transpose, count);
  }

  /// Split-KV's workspace: [split, batch, head, row, d] partial outputs
  /// and [split, batch, head, row, {max, sum}].
  struct SplitParts {
    Value partO, partML;
  };

  /// The combine launch of split-KV: a thread per output element reads
  /// every split's max, sum and partial output, rescales them to the
  /// largest max (log-sum-exp) and writes O = sum_s e_s O_s / sum_s e_s l_s
  /// (0 for a row that saw no key), rounded to the result type.
  void buildCombine(OpBuilder &b, Location loc, const StrategyConfig &config,
                    const FlashShape &shape, int64_t splits,
                    const SplitParts &parts, Value out,
                    const std::optional<StridedView> &outView, Type element) {
    constexpr int64_t kThreads = 128;
    int64_t elements = shape.queries * shape.headV;
    Launch built = createLaunch(
        b, loc,
        {constantIndex(b, loc, llvm::divideCeil(elements, kThreads)),
         constantIndex(b, loc, shape.heads),
         constantIndex(b, loc, shape.batch)},
        {kThreads, 1, 1}, config);
    OpBuilder &in = built.body;
    Ix ix{in, loc};
    if (outView)
      out = outView->build(
          in, loc, {shape.batch, shape.heads, shape.queries, shape.headV});
    gpu::LaunchOp launch = built.op;
    Value e = ix.add(ix.mul(launch.getBlockIds().x, kThreads),
                     launch.getThreadIds().x);
    Value batch = launch.getBlockIds().z, head = launch.getBlockIds().y;
    auto ifOp = scf::IfOp::create(in, loc, ix.lt(e, elements), false);
    OpBuilder tb = ifOp.getThenBodyBuilder();
    Ix tx{tb, loc};
    Value row = tx.div(e, shape.headV), col = tx.rem(e, shape.headV);
    auto f32c = [&](double value) {
      return arith::ConstantOp::create(tb, loc, tb.getF32FloatAttr(value))
          .getResult();
    };
    SmallVector<Value> maxes;
    Value m = f32c(-INFINITY);
    for (int64_t s = 0; s < splits; ++s) {
      maxes.push_back(memref::LoadOp::create(
          tb, loc, parts.partML,
          ValueRange{tx.c(s), batch, head, row, tx.c(0)}));
      m = arith::MaximumFOp::create(tb, loc, m, maxes.back());
    }
    Value unseen = arith::CmpFOp::create(tb, loc, arith::CmpFPredicate::OEQ, m,
                                         f32c(-INFINITY));
    Value base = arith::SelectOp::create(tb, loc, unseen, f32c(0.0), m);
    Value sum = f32c(0.0), acc = f32c(0.0);
    for (int64_t s = 0; s < splits; ++s) {
      Value weight = math::ExpOp::create(
          tb, loc, arith::SubFOp::create(tb, loc, maxes[s], base));
      Value l = memref::LoadOp::create(
          tb, loc, parts.partML,
          ValueRange{tx.c(s), batch, head, row, tx.c(1)});
      Value o = memref::LoadOp::create(
          tb, loc, parts.partO, ValueRange{tx.c(s), batch, head, row, col});
      sum = arith::AddFOp::create(tb, loc, sum,
                                  arith::MulFOp::create(tb, loc, weight, l));
      acc = arith::AddFOp::create(tb, loc, acc,
                                  arith::MulFOp::create(tb, loc, weight, o));
    }
    Value empty = arith::CmpFOp::create(tb, loc, arith::CmpFPredicate::OEQ, sum,
                                        f32c(0.0));
    Value result = arith::SelectOp::create(
        tb, loc, empty, f32c(0.0), arith::DivFOp::create(tb, loc, acc, sum));
    memref::StoreOp::create(tb, loc,
                            arith::TruncFOp::create(tb, loc, element, result),
                            out, ValueRange{batch, head, row, col});
    gpu::TerminatorOp::create(in, loc);
  }

  LogicalResult rewrite(AttentionOp op, const StrategyConfig &config) {
    std::optional<FlashShape> maybeShape = flashAttentionShape(op);
    if (!maybeShape)
      return op.emitError() << "flash-attention-mma-sync takes f16 or bf16 "
                               "attention with static head counts and heads "
                               "of at most 128 elements in multiples of 8";
    FailureOr<FlashConfig> parsed = FlashConfig::read(config);
    if (failed(parsed))
      return failure();
    const FlashConfig &c = *parsed;
    const FlashShape &shape = *maybeShape;
    MLIRContext *ctx = op.getContext();
    Location loc = op.getLoc();
    OpBuilder b(op);
    Type element = op.getQuery().getType().getElementType();
    Type f32 = b.getF32Type();
    int64_t dq = roundUp(shape.headQK, 16), dv = roundUp(shape.headV, 16);
    int64_t groups = shape.heads / shape.kvHeads;
    // Packed: the rows of a tile are (query head of the group, query), so
    // the group's heads share each K/V tile a block loads (decode with
    // grouped-query heads reads the cache once, not once per query head).
    bool packed = c.packHeads && groups > 1;
    auto isDynamic = [](int64_t n) { return ShapedType::isDynamic(n); };
    // Packing indexes rows by the query count, and split-KV's workspace is
    // sized by the batch and query counts: both need them static.
    if ((packed && isDynamic(shape.queries)) ||
        (c.splits > 1 &&
         (isDynamic(shape.batch) || isDynamic(shape.queries))))
      return config.error() << "pack_heads needs a static query count, and "
                               "splits static batch and query counts";
    std::optional<int64_t> causal = op.getCausalOffset();
    int64_t causalOffset = causal.value_or(0);
    double scale = op.getScale().convertToDouble();
    double softcap = op.getSoftcap().convertToDouble();
    // Known at compile time, or only at run time: then 0 here, and the
    // grid limits are the runtime's to check.
    int64_t qTiles =
        isDynamic(shape.queries)
            ? 0
            : llvm::divideCeil(packed ? groups * shape.queries : shape.queries,
                               c.bm);
    int64_t kvTiles =
        isDynamic(shape.keys) ? 0 : llvm::divideCeil(shape.keys, c.bn);
    int64_t splits = kvTiles ? std::min(c.splits, kvTiles) : c.splits;
    if (qTiles > 0x7fffffff || shape.heads > 65535 ||
        (!isDynamic(shape.batch) && shape.batch * splits > 65535))
      return op.emitError()
             << "the grid of " << qTiles << " x " << shape.heads << " x "
             << shape.batch * splits << " blocks exceeds the device's limits";

    FailureOr<FlashBuffers> resolved =
        flashBuffersOf(op, kFlashAttentionMmaSync);
    if (failed(resolved))
      return failure();
    FlashBuffers &buffers = *resolved;
    Value q = buffers.q, k = buffers.k, v = buffers.v, bias = buffers.bias;
    // The counts on the host side of the launch: constants, or the sizes
    // of the buffers (a buffer of symbolic shape is never a view, so it
    // stays; a computed one's sizes are its allocation's).
    auto countOf = [&](Value buffer, unsigned d, int64_t n) -> Value {
      if (!isDynamic(n))
        return constantIndex(b, loc, n);
      if (auto alloc = buffer.getDefiningOp<memref::AllocOp>())
        return getValueOrCreateConstantIndexOp(b, loc,
                                               alloc.getMixedSizes()[d]);
      return memref::DimOp::create(b, loc, buffer, d);
    };
    Value batchCount = countOf(q, 0, shape.batch);
    Value queryCount = countOf(q, 2, shape.queries);
    Value keyCount = countOf(k, 2, shape.keys);
    // The causal limit of query i is i + shift: the offset, plus the keys
    // in front of the queries when aligned to the end (a past whose length
    // is known at run time).
    Value causalShift = constantIndex(b, loc, causalOffset);
    if (causal && op.getCausalFromEnd())
      causalShift = arith::AddIOp::create(
          b, loc, causalShift,
          arith::SubIOp::create(b, loc, keyCount, queryCount));
    Value rowCount = packed ? constantIndex(b, loc, groups * shape.queries)
                            : queryCount;
    auto ceilDiv = [&](Value x, int64_t y) -> Value {
      return arith::CeilDivUIOp::create(b, loc, x, constantIndex(b, loc, y));
    };
    Value qTileCount = qTiles ? constantIndex(b, loc, qTiles)
                              : ceilDiv(rowCount, c.bm);
    Value kvTileCount = kvTiles ? constantIndex(b, loc, kvTiles)
                                : ceilDiv(keyCount, c.bn);

    resolveFlashViews(op, b, buffers, batchCount, queryCount, kChunk);
    Value out = buffers.out;
    const std::optional<StridedView> &outView = buffers.outView;
    ArrayRef<std::optional<StridedView>> inputViews = buffers.views;
    // Operands a generic computes in the kernel (a rotary embedding that
    // kiln-gpu-fuse-attention-layouts merged in), unless read as views of
    // what it moved: evaluated where their tiles are loaded, their
    // temporaries never written.
    SmallVector<linalg::GenericOp, 3> computed;
    for (auto [operand, buffer, view] :
         llvm::zip(SmallVector<Value>{op.getQuery(), op.getKey(),
                                      op.getValue()},
                   SmallVector<Value>{q, k, v}, inputViews))
      computed.push_back(view ? nullptr
                              : computedOperand(buffer,
                                                operand.getDefiningOp()));

    // Split-KV: each split's unnormalized O, and its rows' max and sum.
    std::optional<SplitParts> split_;
    if (splits > 1) {
      auto f32Buffer = [&](ArrayRef<int64_t> shape) -> Value {
        return memref::AllocOp::create(b, loc, MemRefType::get(shape, f32));
      };
      split_ = SplitParts{
          f32Buffer(
              {splits, shape.batch, shape.heads, shape.queries, shape.headV}),
          f32Buffer({splits, shape.batch, shape.heads, shape.queries, 2})};
    }
    Value gridZ = isDynamic(shape.batch)
                      ? batchCount
                      : constantIndex(b, loc, shape.batch * splits);
    // A symbolic key count: the split's share, computed on the host too.
    int64_t perSplitTiles = kvTiles ? llvm::divideCeil(kvTiles, splits) : 0;
    Value perSplit = perSplitTiles ? constantIndex(b, loc, perSplitTiles)
                     : splits > 1  ? ceilDiv(kvTileCount, splits)
                                   : kvTileCount;
    Launch built = createLaunch(
        b, loc,
        {qTileCount,
         constantIndex(b, loc, packed ? shape.kvHeads : shape.heads), gridZ},
        {c.threads(), 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    auto shapeOf = [](Value value) {
      return cast<ShapedType>(value.getType()).getShape();
    };
    for (auto [buffer, view, operand] : llvm::zip(
             SmallVector<Value *>{&q, &k, &v}, inputViews,
             SmallVector<Value>{op.getQuery(), op.getKey(), op.getValue()}))
      if (view)
        *buffer = view->build(in, loc, shapeOf(operand));
    if (outView)
      out = outView->build(in, loc, shapeOf(op.getResult()));
    Ix ix{in, loc};
    auto shared = gpu::AddressSpaceAttr::get(
        ctx, gpu::GPUDialect::getWorkgroupAddressSpace());
    auto sharedTile = [&](std::optional<int64_t> stages, int64_t rows,
                          int64_t width) {
      SmallVector<int64_t> dims = {rows, width};
      if (stages)
        dims.insert(dims.begin(), *stages);
      return Tile{launch.addWorkgroupAttribution(
                      MemRefType::get(dims, element,
                                      MemRefLayoutAttrInterface(), shared),
                      loc),
                  rows, width};
    };
    int64_t stages = kvTiles ? std::min(c.stages, kvTiles + 1) : c.stages;
    Tile qTile = sharedTile(std::nullopt, c.bm, dq);
    Tile kRing = sharedTile(stages, c.bn, dq);
    Tile vRing = sharedTile(stages, c.bn, dv);

    Value tid = launch.getThreadIds().x;
    Value lane = ix.rem(tid, kWarp), warp = ix.div(tid, kWarp);
    Value group = ix.div(lane, 4), inGroup = ix.rem(lane, 4);
    // With split-KV, grid z runs over (batch, split) and each block reads
    // one split's share of the key tiles.
    Value batch = ix.div(launch.getBlockIds().z, splits),
          split = ix.rem(launch.getBlockIds().z, splits),
          head = launch.getBlockIds().y;
    Value kvHead = packed ? head : ix.div(head, groups);
    Value qBase = ix.mul(launch.getBlockIds().x, c.bm);
    // A tile row's query head and query.
    RowMap rowMap = nullptr;
    if (packed)
      rowMap = [&, kvHead](Ix &rx, Value row) -> std::pair<Value, Value> {
        return {rx.add(rx.mul(kvHead, groups), rx.div(row, shape.queries)),
                rx.rem(row, shape.queries)};
      };
    auto headAndQuery = [&](Ix &rx, Value row) -> std::pair<Value, Value> {
      return rowMap ? rowMap(rx, row) : std::pair<Value, Value>{head, row};
    };
    auto tokenType = nvgpu::DeviceAsyncTokenType::get(ctx);
    auto commit = [&](OpBuilder &cb, SmallVector<Value> &tokens) {
      return nvgpu::DeviceAsyncCreateGroupOp::create(cb, loc, tokenType, tokens)
          .getResult();
    };

    // KV tiles this block reads: with a causal mask, up to the one holding
    // key qBase + BM - 1 + shift (the last any of its rows sees).
    Value kvEnd = kvTileCount;
    if (causal) {
      // ceil(max(0, qBase + BM + offset) / BN), in index arithmetic (the
      // last query, packed: any tile may hold it).
      Value last = packed ? ix.add(causalShift, shape.queries)
                          : ix.add(qBase, ix.add(causalShift, c.bm));
      kvEnd = causalTileEnd(ix, last, c.bn, kvEnd);
    }
    Value kvBegin = arith::MulIOp::create(in, loc, split, perSplit);
    kvEnd = arith::MinUIOp::create(in, loc, ix.add(kvBegin, perSplit), kvEnd);
    auto loadKV = [&](Ix &lx, Value tile, Value stage, Value enabled) {
      SmallVector<Value> tokens;
      Value rowBase = lx.mul(tile, c.bn);
      load(lx, c.threads(), tid, kRing, stage, k, batch, kvHead, rowBase,
           keyCount, shape.headQK, enabled, tokens, nullptr, computed[1]);
      load(lx, c.threads(), tid, vRing, stage, v, batch, kvHead, rowBase,
           keyCount, shape.headV, enabled, tokens, nullptr, computed[2]);
      return commit(lx.b, tokens);
    };

    // Prologue: Q, then KV tiles 0 .. S-2 (a commit group each).
    SmallVector<Value> qTokens;
    load(ix, c.threads(), tid, qTile, Value(), q, batch, head, qBase, rowCount,
         shape.headQK, Value(), qTokens, rowMap, computed[0]);
    Value token = commit(in, qTokens);
    for (int64_t s = 0; s + 1 < stages; ++s) {
      Value tile = ix.add(kvBegin, s);
      token = loadKV(ix, tile, ix.rem(tile, stages), ix.ltV(tile, kvEnd));
    }
    // Q has landed (all but the S-1 newest groups): its fragments, for
    // every k16 step of the head.
    nvgpu::DeviceAsyncWaitOp::create(in, loc, token,
                                     in.getI32IntegerAttr(stages - 1));
    gpu::BarrierOp::create(in, loc);
    Value warpRow = ix.mul(warp, 16);
    SmallVector<Value> qFrags;
    for (int64_t kk = 0; kk < dq / 16; ++kk)
      qFrags.push_back(ldmatrix(ix, qTile, Value(),
                                ix.add(warpRow, ix.rem(lane, 16)),
                                ix.add(ix.div(lane, 16), kk * 2), 4,
                                /*transpose=*/false, element));

    // The loop carries O (dv/8 tiles), the running max and the lane's
    // partial sum of its two rows, and the newest commit group.
    auto accType = VectorType::get({2, 2}, f32);
    auto f32c = [&](OpBuilder &cb, double value) {
      return arith::ConstantOp::create(cb, loc, cb.getF32FloatAttr(value))
          .getResult();
    };
    Value zeroAcc = arith::ConstantOp::create(
        in, loc, DenseElementsAttr::get(accType, APFloat(0.0f)));
    int64_t oTiles = dv / 8, sTiles = c.bn / 8;
    SmallVector<Value> carried(oTiles, zeroAcc);
    Value negInf = f32c(in, -INFINITY);
    carried.append({negInf, negInf, f32c(in, 0.0), f32c(in, 0.0), token});
    auto loop = scf::ForOp::create(in, loc, kvBegin, kvEnd, ix.c(1), carried);
    {
      OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
      Ix lx{lb, loc};
      Value t = loop.getInductionVar();
      ValueRange iter = loop.getRegionIterArgs();
      nvgpu::DeviceAsyncWaitOp::create(lb, loc, iter.back(),
                                       lb.getI32IntegerAttr(stages - 2));
      gpu::BarrierOp::create(lb, loc);
      Value next = lx.add(t, stages - 1);
      Value nextToken =
          loadKV(lx, next, lx.rem(next, stages), lx.ltV(next, kvEnd));
      Value stage = lx.rem(t, stages);

      // S = Q Kᵀ: K stored [key][d] is Kᵀ with n outer.
      SmallVector<Value> scores(sTiles, zeroAcc);
      for (int64_t kk = 0; kk < dq / 16; ++kk)
        for (int64_t j = 0; j < sTiles; ++j) {
          Value kFrag =
              ldmatrix(lx, kRing, stage, lx.add(lx.rem(lane, 8), j * 8),
                       lx.add(lx.rem(lx.div(lane, 8), 2), kk * 2), 2,
                       /*transpose=*/false, element);
          scores[j] =
              nvgpu::MmaSyncOp::create(lb, loc, qFrags[kk], kFrag, scores[j],
                                       lb.getI64ArrayAttr({16, 8, 16}));
        }

      // Scale, softcap, bias and masks, per element: s[j][half][e] is row
      // group + 8*half, key 2*inGroup + e of key tile j.
      Value keyBase = lx.mul(t, c.bn);
      SmallVector<Value> rows = {
          lx.add(qBase, lx.add(warpRow, group)),
          lx.add(qBase, lx.add(warpRow, lx.add(group, 8)))};
      // Each row's query head and query (row 0's past the last row).
      SmallVector<std::pair<Value, Value>> rowHeads;
      for (Value row : rows)
        rowHeads.push_back(
            headAndQuery(lx, lx.select(lx.ltV(row, rowCount), row, lx.c(0))));
      ScoreTerms terms{scale, softcap, bias, batch, causal.has_value(),
                       causalShift, keyCount, negInf};
      SmallVector<SmallVector<Value>> s(2); // [half][j * 2 + e]
      for (int64_t j = 0; j < sTiles; ++j)
        for (int64_t half = 0; half < 2; ++half)
          for (int64_t e = 0; e < 2; ++e) {
            Value x = vector::ExtractOp::create(lb, loc, scores[j],
                                                ArrayRef<int64_t>{half, e});
            auto [rowHead, query] = rowHeads[half];
            Value key = lx.add(keyBase, lx.add(lx.mul(inGroup, 2), j * 8 + e));
            s[half].push_back(
                applyScoreTerms(lx, terms, x, rowHead, query, key));
          }

      // Online softmax per row: the max across the row's four lanes, the
      // running max and sum rescaled, P = exp(s - m).
      SmallVector<Value> newMax(2), corr(2), sums(2);
      for (int64_t half = 0; half < 2; ++half) {
        RowSoftmax row = onlineSoftmax(lb, loc, s[half], iter[oTiles + half],
                                       iter[oTiles + 2 + half], negInf);
        newMax[half] = row.max;
        corr[half] = row.correction;
        sums[half] = row.sum;
      }

      // O = O * corr + P V, P's fragments straight from the scores'.
      SmallVector<Value> o(iter.take_front(oTiles));
      for (Value &acc : o) {
        SmallVector<Value> elements;
        for (int64_t half = 0; half < 2; ++half)
          for (int64_t e = 0; e < 2; ++e)
            elements.push_back(arith::MulFOp::create(
                lb, loc,
                vector::ExtractOp::create(lb, loc, acc,
                                          ArrayRef<int64_t>{half, e}),
                corr[half]));
        acc = vector::FromElementsOp::create(lb, loc, accType, elements);
      }
      auto fragType = VectorType::get({4, 2}, element);
      for (int64_t kk = 0; kk < c.bn / 16; ++kk) {
        // A rows: (group, k 0-7), (group+8, k 0-7), (group, k 8-15),
        // (group+8, k 8-15) = key tiles 2kk and 2kk+1, halves 0 and 1.
        SmallVector<Value> elements;
        for (int64_t j : {2 * kk, 2 * kk + 1})
          for (int64_t half = 0; half < 2; ++half)
            for (int64_t e = 0; e < 2; ++e)
              elements.push_back(arith::TruncFOp::create(lb, loc, element,
                                                         s[half][j * 2 + e]));
        Value pFrag =
            vector::FromElementsOp::create(lb, loc, fragType, elements);
        for (int64_t jd = 0; jd < oTiles; ++jd) {
          // V stored [key][d]: B (k = key, n = d) with n inner, transposed.
          Value vFrag =
              ldmatrix(lx, vRing, stage, lx.add(lx.rem(lane, 16), kk * 16),
                       lx.c(jd), 2, /*transpose=*/true, element);
          o[jd] = nvgpu::MmaSyncOp::create(lb, loc, pFrag, vFrag, o[jd],
                                           lb.getI64ArrayAttr({16, 8, 16}));
        }
      }
      SmallVector<Value> yielded(o);
      yielded.append({newMax[0], newMax[1], sums[0], sums[1], nextToken});
      scf::YieldOp::create(lb, loc, yielded);
    }

    // l summed over the row's four lanes.
    SmallVector<Value> rowSums(2);
    for (int64_t half = 0; half < 2; ++half)
      rowSums[half] = rowSum(in, loc, loop.getResult(oTiles + 2 + half));
    auto rowOf = [&](int64_t half) {
      return ix.add(qBase, ix.add(warpRow, ix.add(group, 8 * half)));
    };
    // O / l (a row that saw no key, l = 0, gives 0) rounded to the result
    // type; a split's part instead: O not yet divided, in f32. Pairs of
    // adjacent columns leave as one store.
    SmallVector<Value> inverse(2);
    if (!split_)
      for (int64_t half = 0; half < 2; ++half)
        inverse[half] = inverseOrZero(in, loc, rowSums[half]);
    Type stored = split_ ? f32 : element;
    // A row's pairs leave a quad as 16 bytes, half a sector: through shared
    // memory instead, O goes out in 16-byte chunks of whole rows. K's ring
    // holds the tile once the loop is done (its last copies landed, every
    // warp past its last ldmatrix), rows padded by 8 elements so that the
    // quads' 4-byte stores are conflict-free. Only where the output's rows
    // take 16-byte chunks and the ring is large enough.
    int64_t oStride = dv + 8;
    bool staged = !split_ &&
                  (outView ? outView->alignedTo(8)
                           : chunkable(out.getType(), 8)) &&
                  c.bm * oStride <= stages * c.bn * dq;
    if (staged) {
      nvgpu::DeviceAsyncWaitOp::create(in, loc, loop.getResults().back(),
                                       in.getI32IntegerAttr(0));
      gpu::BarrierOp::create(in, loc);
      Value tile = memref::CollapseShapeOp::create(
          in, loc, kRing.buffer,
          ArrayRef<ReassociationIndices>{ReassociationIndices{0, 1, 2}});
      for (int64_t jd = 0; jd < oTiles; ++jd)
        for (int64_t half = 0; half < 2; ++half) {
          SmallVector<Value> values;
          for (int64_t e = 0; e < 2; ++e) {
            Value x = vector::ExtractOp::create(in, loc, loop.getResult(jd),
                                                ArrayRef<int64_t>{half, e});
            values.push_back(arith::TruncFOp::create(
                in, loc, element,
                arith::MulFOp::create(in, loc, x, inverse[half])));
          }
          Value r = ix.add(warpRow, ix.add(group, 8 * half));
          Value at = ix.add(ix.mul(r, oStride),
                            ix.add(ix.mul(inGroup, 2), jd * 8));
          vector::StoreOp::create(
              in, loc,
              vector::FromElementsOp::create(
                  in, loc, VectorType::get({2}, element), values),
              tile, at, /*nontemporal=*/false, llvm::MaybeAlign(4));
        }
      gpu::BarrierOp::create(in, loc);
      // Chunk e of the tile: row e / (dv / 8), columns 8 (e % (dv / 8)).
      int64_t chunksPerRow = dv / 8;
      int64_t perThread = c.bm * chunksPerRow / c.threads();
      for (int64_t i = 0; i < perThread; ++i) {
        Value e = ix.add(tid, i * c.threads());
        Value r = ix.div(e, chunksPerRow);
        Value col = ix.mul(ix.rem(e, chunksPerRow), 8);
        Value row = ix.add(qBase, r);
        Value inside =
            ix.andI(ix.ltV(row, rowCount), ix.lt(col, shape.headV));
        OpBuilder sb =
            scf::IfOp::create(in, loc, inside, false).getThenBodyBuilder();
        Ix sx{sb, loc};
        Value chunk = vector::LoadOp::create(
            sb, loc, VectorType::get({8}, element), tile,
            ValueRange{sx.add(sx.mul(r, oStride), col)},
            /*nontemporal=*/false, llvm::MaybeAlign(16));
        auto [rowHead, query] = headAndQuery(sx, row);
        vector::StoreOp::create(sb, loc, chunk, out,
                                ValueRange{batch, rowHead, query, col},
                                /*nontemporal=*/false, llvm::MaybeAlign(16));
      }
    }
    for (int64_t jd = 0; !staged && jd < oTiles; ++jd)
      for (int64_t half = 0; half < 2; ++half) {
        Value row = rowOf(half);
        Value col = ix.add(ix.mul(inGroup, 2), jd * 8);
        Value inside = ix.andI(ix.ltV(row, rowCount), ix.lt(col, shape.headV));
        OpBuilder sb =
            scf::IfOp::create(in, loc, inside, false).getThenBodyBuilder();
        SmallVector<Value> values;
        for (int64_t e = 0; e < 2; ++e) {
          Value x = vector::ExtractOp::create(sb, loc, loop.getResult(jd),
                                              ArrayRef<int64_t>{half, e});
          if (!split_)
            x = arith::TruncFOp::create(
                sb, loc, element,
                arith::MulFOp::create(sb, loc, x, inverse[half]));
          values.push_back(x);
        }
        Value pair = vector::FromElementsOp::create(
            sb, loc, VectorType::get({2}, stored), values);
        Ix sx{sb, loc};
        auto [rowHead, query] = headAndQuery(sx, row);
        SmallVector<Value> at = {batch, rowHead, query, col};
        if (split_)
          at.insert(at.begin(), split);
        vector::StoreOp::create(sb, loc, pair, split_ ? split_->partO : out, at,
                                /*nontemporal=*/false,
                                llvm::MaybeAlign(split_ ? 8 : 4));
      }
    // And the split's rows' max and sum, for the combine launch.
    if (split_)
      for (int64_t half = 0; half < 2; ++half) {
        Value row = rowOf(half);
        Value inside = ix.andI(ix.ltV(row, rowCount), ix.lt(inGroup, 1));
        OpBuilder sb =
            scf::IfOp::create(in, loc, inside, false).getThenBodyBuilder();
        SmallVector<Value> maxAndSum = {loop.getResult(oTiles + half),
                                        rowSums[half]};
        Ix sx{sb, loc};
        auto [rowHead, query] = headAndQuery(sx, row);
        for (auto [i, value] : llvm::enumerate(maxAndSum))
          memref::StoreOp::create(
              sb, loc, value, split_->partML,
              ValueRange{split, batch, rowHead, query,
                         arith::ConstantIndexOp::create(sb, loc, i)});
      }
    gpu::TerminatorOp::create(in, loc);
    if (split_) {
      buildCombine(b, loc, config, shape, splits, *split_, out, outView,
                   element);
      memref::DeallocOp::create(b, loc, split_->partO);
      memref::DeallocOp::create(b, loc, split_->partML);
    }

    eraseFlashAttention(op, buffers);
    // Once each (one generic may be two operands).
    llvm::SetVector<Operation *> evaluated;
    for (linalg::GenericOp generic : computed)
      if (generic)
        evaluated.insert(generic);
    for (Operation *generic : evaluated)
      eraseDecoded(cast<linalg::GenericOp>(generic));
    return success();
  }

  void runOnOperation() override {
    if (failed(applyFlashStrategy(
            getOperation(), kFlashAttentionMmaSync,
            [&](AttentionOp op, const StrategyConfig &config) {
              return rewrite(op, config);
            })))
      signalPassFailure();
  }
};

} // namespace
