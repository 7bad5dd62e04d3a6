//===- FlashWgmma.cpp - attention as one TMA + wgmma kernel (sm_90a) -----===//
//
// The Hopper attention strategy for `kiln.attention` of f16 or bf16
// operands with static head counts, configured by `tile` (BM query rows, 64 per
// warpgroup; BN = 64 keys per step) and `stages` (S). FlashAttention-3's
// data path on the ops MLIR 22 has:
//
// - one block of BM/64 warpgroups per BM query rows of one (batch, head):
//   grid x over query tiles, y over query heads, z over the batch; query
//   head h reads KV head h / (Hq / Hkv) in place;
// - thread 0 loads with TMA (`nvgpu.tma.async.load`, 128-byte swizzle):
//   the Q tile once, then K and V tiles of BN keys into an S-stage ring,
//   each stage completing on its mbarrier with the tile's byte count. The
//   tensor maps see each operand as 4-D, innermost first [d, batch, head,
//   row] with the strides of the buffer or of the strided view it is read
//   through (the head split of a QKV projection), so a box is [64 d x 1 x
//   1 x rows]: rows past the sequence and columns past the head read zero.
//   Each map is a `memref.reinterpret_cast` of the buffer in that order,
//   whose sizes and strides the artifact builder turns into the manifest's
//   (expressions of the run's dims where the batch, query or key count is
//   symbolic: the runtime encodes the maps per run);
// - S = Q Kᵀ per warpgroup on `nvgpu.warpgroup.mma` (64 x BN, f32): one
//   k16 step per op, since K in shared memory ([key][d], d innermost) is
//   Kᵀ K-major, and the nvgpu lowering advances B's descriptor by 16 rows
//   (N-major's step) between k16 steps: each step's descriptors start 32
//   bytes further into the 128-byte swizzled rows of Q and K instead
//   (another 64-wide box every 4 steps). The steps chain
//   through the accumulator without waiting (wgmma orders accumulator
//   accesses of one shape); the last waits for all;
// - the scores leave the accumulator as its per-thread registers
//   (`unrealized_conversion_cast` to f32 values, which
//   kiln-lower-warpgroup-fragments turns into the accumulator struct's
//   elements): thread t holds rows 16 (t / 32 % 4) + t % 32 / 4 (+8) and
//   columns 8j + 2 (t % 4) (+1). Scale, softcap, bias, causal and length
//   masks and the online softmax run there as in flash-attention-mma-sync;
//   O's registers are rescaled the same way and go back into its
//   accumulator;
// - P is rounded to the operand type and stored into the warpgroup's
//   [64][64] shared tile in the 128-byte swizzled K-major layout wgmma
//   reads (a quad's 4-byte pairs: conflict-free), made visible to the
//   async proxy (`fence.proxy.async`) and the block (a barrier); then
//   O += P V is one `nvgpu.warpgroup.mma` (4 k16 steps, V N-major as
//   TMA wrote it), left in flight while the next tile's scores start;
// - after the barrier, every warpgroup has retired the products that read
//   the ring's oldest stage, and thread 0 refills it with tile t + S - 1;
// - causal blocks stop at the last tile their rows can see; the end
//   divides O by the row sums (0 for a row that saw no key), rounds it to
//   the result type, stages each warpgroup's tile in V's ring (16-byte
//   chunks XORed with the row) and stores it in 16-byte chunks of whole
//   rows (pairs where the output's rows do not take chunks), guarded at
//   the sequence and head edges.
//
// A Q that a generic computes in the kernel (its rotary embedding, merged
// in by kiln-gpu-fuse-attention-layouts) has no tensor map: the threads
// evaluate it into Q's tile at the places TMA's 128-byte swizzle would
// use, then a proxy fence and a barrier (K and V always come by TMA).
//
// Not yet: a producer warp with setmaxnreg, two consumer warpgroups
// ping-ponging softmax and GEMMs, P kept in registers (wgmma's A from
// registers, which nvgpu does not expose), split-KV for decode
// (flash-attention-mma-sync does it).
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/FlashCommon.h"
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_KILNGPUFLASHATTENTIONWGMMA
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWarpgroup = 128;
constexpr int64_t kRows = 64; // a warpgroup's query rows (wgmma's M)
constexpr int64_t kBn = 64;   // keys per step
constexpr int64_t kAtom = 64; // elements of a 128-byte swizzled row

int64_t roundUp(int64_t x, int64_t to) { return llvm::divideCeil(x, to) * to; }

struct KilnGpuFlashAttentionWgmmaPass final
    : kiln::impl::KilnGpuFlashAttentionWgmmaBase<
          KilnGpuFlashAttentionWgmmaPass> {
  using Base::Base;

  LogicalResult rewrite(AttentionOp op, const StrategyConfig &config) {
    std::optional<FlashShape> maybeShape = flashAttentionShape(op);
    if (!maybeShape || !flashWgmmaAccepts(*maybeShape))
      return op.emitError()
             << "flash-attention-wgmma takes f16 or bf16 attention with "
                "static head counts and heads of at most 128 elements in "
                "multiples of 8";
    const FlashShape &shape = *maybeShape;
    FailureOr<SmallVector<int64_t>> tile = config.getInts("tile", 2);
    FailureOr<int64_t> stagesOr = config.getInt("stages");
    if (failed(tile) || failed(stagesOr))
      return failure();
    int64_t bm = (*tile)[0];
    if (bm % kRows || bm > 2 * kRows || (*tile)[1] != kBn)
      return config.error() << "flash-attention-wgmma takes 64 or 128 query "
                               "rows (a warpgroup per 64) and 64 keys";
    if (*stagesOr < 2)
      return config.error() << "the pipeline needs at least 2 stages";
    int64_t groupsPerBlock = bm / kRows, threads = groupsPerBlock * kWarpgroup;
    MLIRContext *ctx = op.getContext();
    Location loc = op.getLoc();
    OpBuilder b(op);
    Type element = op.getQuery().getType().getElementType();
    Type f32 = b.getF32Type();
    int64_t dq = roundUp(shape.headQK, kAtom), dv = roundUp(shape.headV, kAtom);
    int64_t groups = shape.heads / shape.kvHeads;
    auto isDynamic = [](int64_t n) { return ShapedType::isDynamic(n); };
    // Known at compile time, or only at run time: then 0 here, and the
    // grid limits are the runtime's to check.
    int64_t qTiles =
        isDynamic(shape.queries) ? 0 : llvm::divideCeil(shape.queries, bm);
    int64_t kvTiles =
        isDynamic(shape.keys) ? 0 : llvm::divideCeil(shape.keys, kBn);
    int64_t stages = kvTiles ? std::min(*stagesOr, kvTiles + 1) : *stagesOr;
    if (qTiles > 0x7fffffff || shape.heads > 65535 ||
        (!isDynamic(shape.batch) && shape.batch > 65535))
      return op.emitError() << "the grid of " << qTiles << " x " << shape.heads
                            << " x " << shape.batch
                            << " blocks exceeds the device's limits";

    FailureOr<FlashBuffers> resolved = flashBuffersOf(op, kFlashAttentionWgmma);
    if (failed(resolved))
      return failure();
    FlashBuffers &buffers = *resolved;
    // The counts on the host side of the launch: constants, or the sizes
    // of the buffers (a buffer of symbolic shape is never a view).
    auto countOf = [&](Value buffer, unsigned d, int64_t n) -> Value {
      if (!isDynamic(n))
        return constantIndex(b, loc, n);
      // A temporary's sizes are its allocation's (a computed Q's goes).
      if (auto alloc = buffer.getDefiningOp<memref::AllocOp>())
        return getValueOrCreateConstantIndexOp(b, loc,
                                               alloc.getMixedSizes()[d]);
      return memref::DimOp::create(b, loc, buffer, d);
    };
    Value batchCount = countOf(buffers.q, 0, shape.batch);
    Value queryCount = countOf(buffers.q, 2, shape.queries);
    Value keyCount = countOf(buffers.k, 2, shape.keys);
    std::optional<int64_t> causal = op.getCausalOffset();
    // The causal limit of query i is i + shift: the offset, plus the keys
    // in front of the queries when aligned to the end.
    Value causalShift = constantIndex(b, loc, causal.value_or(0));
    if (causal && op.getCausalFromEnd())
      causalShift = arith::AddIOp::create(
          b, loc, causalShift,
          arith::SubIOp::create(b, loc, keyCount, queryCount));
    auto ceilDiv = [&](Value x, int64_t y) -> Value {
      return arith::CeilDivUIOp::create(b, loc, x, constantIndex(b, loc, y));
    };
    Value qTileCount =
        qTiles ? constantIndex(b, loc, qTiles) : ceilDiv(queryCount, bm);
    Value kvTileCount =
        kvTiles ? constantIndex(b, loc, kvTiles) : ceilDiv(keyCount, kBn);
    resolveFlashViews(op, b, buffers, batchCount, queryCount, /*chunk=*/8);

    // The tensor maps, on the host side: each operand as [d, batch, head,
    // row] (innermost first), a view in that order (outermost first: [row,
    // head, batch, d]) of the buffer it lies in, its sizes and strides
    // static or the run's.
    auto workgroup = gpu::AddressSpaceAttr::get(
        ctx, gpu::GPUDialect::getWorkgroupAddressSpace());
    auto mapType = nvgpu::TensorMapDescriptorType::get(
        ctx,
        MemRefType::get({kBn, 1, 1, kAtom}, element,
                        MemRefLayoutAttrInterface(), b.getI64IntegerAttr(3)),
        nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
        nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
        nvgpu::TensorMapOOBKind::OOB_ZERO,
        nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
    static_assert(kRows == kBn, "Q, K and V boxes share one shape");
    auto tensorMap = [&](Value buffer, const std::optional<StridedView> &view,
                         Value operand) -> Value {
      auto type = cast<ShapedType>(operand.getType());
      // [B, H, S, D]'s sizes and strides (elements), and the first element.
      SmallVector<OpFoldResult> sizes, strides(4);
      for (int64_t d = 0; d < 4; ++d)
        sizes.push_back(type.isDynamicDim(d)
                            ? OpFoldResult(countOf(buffer, d, ShapedType::kDynamic))
                            : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
      Value base = buffer;
      int64_t offset = 0;
      if (view) {
        base = view->base;
        offset = view->offset;
        for (int64_t d = 0; d < 4; ++d)
          strides[d] = b.getIndexAttr(view->strides[d]);
      } else if (auto bufferType = cast<MemRefType>(buffer.getType());
                 !bufferType.getLayout().isIdentity()) {
        // A static view of a kernel buffer (offset and strides in its type).
        SmallVector<int64_t> own;
        if (failed(bufferType.getStridesAndOffset(own, offset)) ||
            ShapedType::isDynamic(offset) ||
            llvm::any_of(own, ShapedType::isDynamic))
          return Value();
        for (int64_t d = 0; d < 4; ++d)
          strides[d] = b.getIndexAttr(own[d]);
      } else {
        // A row-major buffer of its own.
        OpFoldResult stride = b.getIndexAttr(1);
        for (int64_t d = 3; d >= 0; --d) {
          strides[d] = stride;
          if (d == 0)
            break;
          std::optional<int64_t> x = getConstantIntValue(stride),
                                 y = getConstantIntValue(sizes[d]);
          stride = x && y ? OpFoldResult(b.getIndexAttr(*x * *y))
                          : OpFoldResult(arith::MulIOp::create(
                                b, loc, getValueOrCreateConstantIndexOp(
                                            b, loc, stride),
                                getValueOrCreateConstantIndexOp(b, loc,
                                                                sizes[d])));
        }
      }
      // A dim of one element may have any stride (a view's is 0, which
      // TMA does not take): a row's 16-byte multiple.
      for (int64_t d = 0; d < 3; ++d)
        if (!type.isDynamicDim(d) && type.getDimSize(d) == 1)
          strides[d] = b.getIndexAttr(roundUp(type.getDimSize(3), 8));
      SmallVector<int64_t> order = {2, 1, 0, 3};
      SmallVector<OpFoldResult> viewSizes, viewStrides;
      SmallVector<int64_t> staticSizes, staticStrides;
      for (int64_t d : order) {
        viewSizes.push_back(sizes[d]);
        viewStrides.push_back(strides[d]);
        staticSizes.push_back(getConstantIntValue(sizes[d]).value_or(
            ShapedType::kDynamic));
        staticStrides.push_back(getConstantIntValue(strides[d]).value_or(
            ShapedType::kDynamic));
      }
      auto viewType = MemRefType::get(
          staticSizes, element,
          StridedLayoutAttr::get(ctx, offset, staticStrides));
      Value tensor = memref::ReinterpretCastOp::create(
          b, loc, viewType, base, b.getIndexAttr(offset), viewSizes,
          viewStrides);
      Value unranked = memref::CastOp::create(
          b, loc, UnrankedMemRefType::get(element, Attribute()), tensor);
      SmallVector<Value> box;
      for (int64_t d : mapType.getTensor().getShape())
        box.push_back(constantIndex(b, loc, d));
      return nvgpu::TmaCreateDescriptorOp::create(b, loc, mapType, unranked,
                                                  box)
          .getResult();
    };
    // A Q that a generic computes in the kernel (its rotary embedding,
    // merged in by kiln-gpu-fuse-attention-layouts) is evaluated by the
    // threads into Q's tile: TMA copies, it cannot compute.
    linalg::GenericOp computedQ =
        buffers.views[0]
            ? nullptr
            : computedOperand(buffers.q, op.getQuery().getDefiningOp());
    Value mapQ = computedQ ? Value()
                           : tensorMap(buffers.q, buffers.views[0],
                                       op.getQuery());
    Value mapK = tensorMap(buffers.k, buffers.views[1], op.getKey());
    Value mapV = tensorMap(buffers.v, buffers.views[2], op.getValue());
    // The tiles' swizzle and box, for the descriptors: Q's map, or K's
    // (the same shape) when Q is computed.
    if (computedQ)
      mapQ = mapK;
    if (!mapQ || !mapK || !mapV)
      return op.emitError()
             << "flash-attention-wgmma reads its operands through TMA, which "
                "needs their buffers' offsets and strides static; compile for "
                "a target with sm_80 (cuda:sm_80,sm_90a) to use "
                "flash-attention-mma-sync, which reads any layout";

    Launch built = createLaunch(
        b, loc,
        {qTileCount, constantIndex(b, loc, shape.heads), batchCount},
        {threads, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Ix ix{in, loc};
    Value out = buffers.out;
    if (buffers.outView)
      out = buffers.outView->build(
          in, loc, cast<ShapedType>(op.getResult().getType()).getShape());
    auto smem = [&](ArrayRef<int64_t> dims) {
      return launch.addWorkgroupAttribution(
          MemRefType::get(dims, element, MemRefLayoutAttrInterface(),
                          workgroup),
          loc);
    };
    // Each tile as 64-wide boxes of rows ([box][row][64]), each box 1 KiB
    // aligned (8 KiB apart): TMA's and wgmma's swizzled layouts.
    Value qTile = smem({groupsPerBlock, dq / kAtom, kRows, kAtom});
    Value kRing = smem({stages, dq / kAtom, kBn, kAtom});
    Value vRing = smem({stages, dv / kAtom, kBn, kAtom});
    Value pTile = smem({groupsPerBlock, kRows, kBn});

    Value tid = launch.getThreadIds().x;
    Value lane = ix.rem(tid, 32);
    Value warpgroup = ix.div(tid, kWarpgroup);
    Value warpInGroup = ix.rem(ix.div(tid, 32), 4);
    Value quad = ix.div(lane, 4), inQuad = ix.rem(lane, 4);
    Value batch = launch.getBlockIds().z, head = launch.getBlockIds().y;
    Value kvHead = ix.div(head, groups);
    Value qBase = ix.mul(launch.getBlockIds().x, bm);
    Value first =
        arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq, tid, ix.c(0));
    // Barriers 0 .. S-1: the ring's stages; S: the Q tile.
    auto barType = nvgpu::MBarrierGroupType::get(ctx, workgroup, stages + 1);
    Value bars = nvgpu::MBarrierCreateOp::create(in, loc, barType);
    {
      OpBuilder tb = scf::IfOp::create(in, loc, first, false).getThenBodyBuilder();
      for (int64_t s = 0; s <= stages; ++s)
        nvgpu::MBarrierInitOp::create(tb, loc, bars, constantIndex(tb, loc, 1),
                                      constantIndex(tb, loc, s), Value());
      NVVM::FenceMbarrierInitOp::create(tb, loc);
    }
    gpu::BarrierOp::create(in, loc);

    // The [64][1][1][64] view of `ring` at element `elementOffset` that a
    // TMA box lands in; loadBoxes issues `boxes` of them, 64 columns apart
    // in the operand, at (d, batch, head, row).
    auto boxView = [&](OpBuilder &lb, Value ring, Value elementOffset) {
      auto type = MemRefType::get(
          {kBn, 1, 1, kAtom}, element,
          StridedLayoutAttr::get(ctx, ShapedType::kDynamic,
                                 {kAtom, kAtom, kAtom, 1}),
          workgroup);
      return memref::ReinterpretCastOp::create(
          lb, loc, type, ring, OpFoldResult(elementOffset),
          ArrayRef<OpFoldResult>{lb.getIndexAttr(kBn), lb.getIndexAttr(1),
                                 lb.getIndexAttr(1), lb.getIndexAttr(kAtom)},
          ArrayRef<OpFoldResult>{lb.getIndexAttr(kAtom), lb.getIndexAttr(kAtom),
                                 lb.getIndexAttr(kAtom), lb.getIndexAttr(1)})
          .getResult();
    };
    auto loadBoxes = [&](Ix &lx, Value ring, Value map, int64_t boxes,
                         Value boxBase, Value operandHead, Value row,
                         Value barrier) {
      for (int64_t a = 0; a < boxes; ++a) {
        Value at = lx.mul(lx.add(boxBase, a), kBn * kAtom);
        nvgpu::TmaAsyncLoadOp::create(
            lx.b, loc, boxView(lx.b, ring, at), bars, map,
            ValueRange{lx.c(a * kAtom), batch, operandHead, row}, barrier,
            Value(), Value());
      }
    };
    int64_t kvBytes = kBn * (dq + dv) * 2;
    auto loadKV = [&](Ix &lx, Value t, Value stage) {
      nvgpu::MBarrierArriveExpectTxOp::create(lx.b, loc, bars, lx.c(kvBytes),
                                              stage, Value());
      Value row = lx.mul(t, kBn);
      loadBoxes(lx, kRing, mapK, dq / kAtom, lx.mul(stage, dq / kAtom), kvHead,
                row, stage);
      loadBoxes(lx, vRing, mapV, dv / kAtom, lx.mul(stage, dv / kAtom), kvHead,
                row, stage);
    };

    // KV tiles this block reads: with a causal mask, up to the one holding
    // key qBase + BM - 1 + shift (the last any of its rows sees).
    Value kvEnd = kvTileCount;
    if (causal)
      kvEnd = causalTileEnd(ix, ix.add(qBase, ix.add(causalShift, bm)), kBn,
                            kvEnd);

    // Prologue (thread 0): the Q tile, then KV tiles 0 .. S-2.
    if (!computedQ) {
      OpBuilder tb = scf::IfOp::create(in, loc, first, false).getThenBodyBuilder();
      Ix tx{tb, loc};
      nvgpu::MBarrierArriveExpectTxOp::create(
          tb, loc, bars, tx.c(groupsPerBlock * kRows * dq * 2), tx.c(stages),
          Value());
      for (int64_t w = 0; w < groupsPerBlock; ++w)
        loadBoxes(tx, qTile, mapQ, dq / kAtom, tx.c(w * dq / kAtom), head,
                  tx.add(qBase, w * kRows), tx.c(stages));
    }
    for (int64_t s = 0; s + 1 < stages; ++s) {
      Value more = ix.andI(first, ix.ltV(ix.c(s), kvEnd));
      OpBuilder tb = scf::IfOp::create(in, loc, more, false).getThenBodyBuilder();
      Ix tx{tb, loc};
      loadKV(tx, tx.c(s), tx.c(s));
    }
    auto i1Parity = [&](Ix &lx, Value count) {
      return arith::TruncIOp::create(
          lx.b, loc, lx.b.getI1Type(),
          arith::IndexCastOp::create(lx.b, loc, lx.b.getI64Type(),
                                     lx.rem(count, 2)));
    };
    if (computedQ) {
      // Each thread evaluates elements of the Q tile in row-major order (a
      // warp reads consecutive columns) and stores them where TMA would
      // have: [warpgroup][box][row][64], 16-byte chunks XORed with the row
      // (the 128-byte swizzle); zero past the queries and the head. Then
      // the writes are made visible to the tensor cores and the block.
      int64_t total = groupsPerBlock * kRows * dq;
      for (int64_t i = 0; i < llvm::divideCeil(total, threads); ++i) {
        Value e = ix.add(tid, i * threads);
        OpBuilder::InsertionGuard guard(in);
        if ((i + 1) * threads > total)
          in.setInsertionPoint(
              scf::IfOp::create(in, loc, ix.lt(e, total), false)
                  .thenBlock()
                  ->getTerminator());
        Value col = ix.rem(e, dq), rowInBlock = ix.div(e, dq);
        Value w = ix.div(rowInBlock, kRows), r = ix.rem(rowInBlock, kRows);
        Value query = ix.add(qBase, rowInBlock);
        Value inside = ix.andI(ix.ltV(query, queryCount),
                               ix.lt(col, shape.headQK));
        Value value = evaluateOrZero(in, loc, computedQ, inside,
                                     {batch, head, query, col}, element);
        Value inBox = ix.rem(col, kAtom);
        Value chunk = ix.xorI(ix.div(inBox, 8), ix.rem(r, 8));
        memref::StoreOp::create(
            in, loc, value, qTile,
            ValueRange{w, ix.div(col, kAtom), r,
                       ix.add(ix.mul(chunk, 8), ix.rem(inBox, 8))});
      }
      NVVM::FenceProxyOp::create(
          in, loc, NVVM::ProxyKindAttr::get(ctx, NVVM::ProxyKind::async_shared),
          NVVM::SharedSpaceAttr::get(ctx, NVVM::SharedSpace::shared_cta));
      gpu::BarrierOp::create(in, loc);
    } else {
      nvgpu::MBarrierTryWaitParityOp::create(
          in, loc, bars, i1Parity(ix, ix.c(0)), ix.c(10000000), ix.c(stages));
    }

    // wgmma operands: descriptors of shared tiles (the tensor maps only
    // lend their swizzle and box to the encoding).
    auto descType = [&](int64_t rows, int64_t cols) -> Type {
      return nvgpu::WarpgroupMatrixDescriptorType::get(
          ctx, MemRefType::get({rows, cols}, element,
                               MemRefLayoutAttrInterface(),
                               in.getI64IntegerAttr(3)));
    };
    auto descriptor = [&](OpBuilder &lb, Value buffer,
                          ArrayRef<OpFoldResult> offsets, int64_t rows,
                          int64_t cols, int64_t descRows, int64_t descCols,
                          Value map) {
      auto bufferType = cast<MemRefType>(buffer.getType());
      SmallVector<OpFoldResult> sizes(bufferType.getRank(), lb.getIndexAttr(1));
      sizes[sizes.size() - 2] = lb.getIndexAttr(rows);
      sizes.back() = lb.getIndexAttr(cols);
      SmallVector<OpFoldResult> ones(bufferType.getRank(), lb.getIndexAttr(1));
      auto viewType = cast<MemRefType>(memref::SubViewOp::inferRankReducedResultType(
          {rows, cols}, bufferType, offsets, sizes, ones));
      Value view = memref::SubViewOp::create(lb, loc, viewType, buffer, offsets,
                                             sizes, ones);
      return nvgpu::WarpgroupGenerateDescriptorOp::create(
                 lb, loc, descType(descRows, descCols), view, map)
          .getResult();
    };
    // A value built per warpgroup from views of its own tiles (a view is
    // the same for every thread that makes it: one branch per warpgroup).
    Value isFirstGroup = ix.lt(warpgroup, 1);
    auto perWarpgroup = [&](OpBuilder &lb, Type type,
                            function_ref<Value(OpBuilder &, int64_t)> build) {
      if (groupsPerBlock == 1)
        return build(lb, 0);
      auto ifOp = scf::IfOp::create(lb, loc, TypeRange{type}, isFirstGroup,
                                    /*withElseRegion=*/true);
      for (int64_t w = 0; w < 2; ++w) {
        OpBuilder wb = w ? ifOp.getElseBodyBuilder() : ifOp.getThenBodyBuilder();
        scf::YieldOp::create(wb, loc, build(wb, w));
      }
      return ifOp.getResult(0);
    };
    auto sAccType = nvgpu::WarpgroupAccumulatorType::get(
        ctx, VectorType::get({kRows, kBn}, f32));
    auto oAccType = nvgpu::WarpgroupAccumulatorType::get(
        ctx, VectorType::get({kRows, dv}, f32));
    auto f32c = [&](OpBuilder &cb, double value) {
      return arith::ConstantOp::create(cb, loc, cb.getF32FloatAttr(value))
          .getResult();
    };
    // The registers of an accumulator, and back.
    auto registersOf = [&](OpBuilder &cb, Value acc, int64_t count) {
      return SmallVector<Value>(
          UnrealizedConversionCastOp::create(
              cb, loc, SmallVector<Type>(count, f32), ValueRange{acc})
              .getResults());
    };
    auto accumulatorOf = [&](OpBuilder &cb, Type type, ValueRange values) {
      return UnrealizedConversionCastOp::create(cb, loc, TypeRange{type},
                                                values)
          .getResult(0);
    };
    // Register e of a 64-row accumulator: row 16 w + quad + 8 ((e % 4) / 2)
    // of the warpgroup's rows, column 8 (e / 4) + 2 inQuad + e % 2.
    Value warpRow = ix.mul(warpInGroup, 16);
    SmallVector<Value> localRows = {ix.add(warpRow, quad),
                                    ix.add(warpRow, ix.add(quad, 8))};
    auto halfOf = [](int64_t e) { return e % 4 / 2; };
    auto columnOf = [&](Ix &lx, int64_t e) {
      return lx.add(lx.mul(inQuad, 2), 8 * (e / 4) + e % 2);
    };

    Value negInf = f32c(in, -INFINITY);
    Value o0 = nvgpu::WarpgroupMmaInitAccumulatorOp::create(in, loc, oAccType);
    auto loop = scf::ForOp::create(
        in, loc, ix.c(0), kvEnd, ix.c(1),
        ValueRange{o0, negInf, negInf, f32c(in, 0.0), f32c(in, 0.0)});
    {
      OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
      Ix lx{lb, loc};
      Value t = loop.getInductionVar();
      ValueRange iter = loop.getRegionIterArgs();
      Value stage = lx.rem(t, stages);
      nvgpu::MBarrierTryWaitParityOp::create(
          lb, loc, bars, i1Parity(lx, lx.div(t, stages)), lx.c(10000000),
          stage);

      // S = Q Kᵀ, a k16 step per op (descriptors 32 bytes apart in a
      // 128-byte row, another box every 4 steps).
      Value scores =
          nvgpu::WarpgroupMmaInitAccumulatorOp::create(lb, loc, sAccType);
      int64_t steps = dq / 16;
      for (int64_t kk = 0; kk < steps; ++kk) {
        OpFoldResult box = lb.getIndexAttr(kk / 4);
        OpFoldResult col = lb.getIndexAttr(kk % 4 * 16);
        Value dA = perWarpgroup(lb, descType(kRows, 16),
                                [&](OpBuilder &wb, int64_t w) {
          return descriptor(wb, qTile,
                            {wb.getIndexAttr(w), box, wb.getIndexAttr(0), col},
                            kRows, 16, kRows, 16, mapQ);
        });
        Value dB = descriptor(lb, kRing, {stage, box, lb.getIndexAttr(0), col},
                              kBn, 16, 16, kBn, mapK);
        scores = nvgpu::WarpgroupMmaOp::create(
                     lb, loc, sAccType, dA, dB,
                     lb.getI64IntegerAttr(kk + 1 == steps ? 0 : steps + 1),
                     /*transposeA=*/nullptr, /*transposeB=*/nullptr, scores)
                     .getResult();
      }

      // The scores' terms and the online softmax, per register: s[half]
      // are the lane's scores of its row `half`.
      ScoreTerms terms{op.getScale().convertToDouble(),
                       op.getSoftcap().convertToDouble(),
                       buffers.bias,
                       batch,
                       causal.has_value(),
                       causalShift,
                       keyCount,
                       negInf};
      SmallVector<Value> sRegs = registersOf(lb, scores, kBn / 2);
      Value keyBase = lx.mul(t, kBn);
      SmallVector<Value> queries;
      for (Value r : localRows) {
        Value row = lx.add(qBase, lx.add(lx.mul(warpgroup, kRows), r));
        queries.push_back(
            lx.select(lx.ltV(row, queryCount), row, lx.c(0)));
      }
      SmallVector<SmallVector<Value>> s(2);
      for (int64_t e = 0; e < kBn / 2; ++e)
        s[halfOf(e)].push_back(applyScoreTerms(
            lx, terms, sRegs[e], head, queries[halfOf(e)],
            lx.add(keyBase, columnOf(lx, e))));
      SmallVector<RowSoftmax> rows;
      for (int64_t half = 0; half < 2; ++half)
        rows.push_back(onlineSoftmax(lb, loc, s[half], iter[1 + half],
                                     iter[3 + half], negInf));

      // O's registers rescaled (the last P V retired with the scores).
      SmallVector<Value> oRegs = registersOf(lb, iter[0], dv / 2);
      for (int64_t e = 0; e < dv / 2; ++e)
        oRegs[e] = arith::MulFOp::create(lb, loc, oRegs[e],
                                         rows[halfOf(e)].correction);
      Value o = accumulatorOf(lb, oAccType, oRegs);

      // P into the warpgroup's tile: row r's 16-byte chunk c at c ^ (r % 8).
      // Register e is s[half][e / 4 * 2 + e % 2] (s[half] holds the
      // registers of its row in order).
      for (int64_t e = 0; e < kBn / 2; e += 2) {
        int64_t half = halfOf(e);
        Value pair = vector::FromElementsOp::create(
            lb, loc, VectorType::get({2}, element),
            ValueRange{
                arith::TruncFOp::create(lb, loc, element, s[half][e / 4 * 2]),
                arith::TruncFOp::create(lb, loc, element,
                                        s[half][e / 4 * 2 + 1])});
        Value r = localRows[half];
        Value chunk = lx.xorI(lx.c(e / 4), lx.rem(r, 8));
        Value at = lx.add(lx.mul(chunk, 8), lx.mul(inQuad, 2));
        vector::StoreOp::create(lb, loc, pair, pTile,
                                ValueRange{warpgroup, r, at},
                                /*nontemporal=*/false, llvm::MaybeAlign(4));
      }
      NVVM::FenceProxyOp::create(
          lb, loc, NVVM::ProxyKindAttr::get(ctx, NVVM::ProxyKind::async_shared),
          NVVM::SharedSpaceAttr::get(ctx, NVVM::SharedSpace::shared_cta));
      gpu::BarrierOp::create(lb, loc);

      // Every warpgroup has retired the products of tile t - 1: its stage
      // takes tile t + S - 1.
      Value next = lx.add(t, stages - 1);
      {
        OpBuilder tb = scf::IfOp::create(lb, loc,
                                         lx.andI(first, lx.ltV(next, kvEnd)),
                                         false)
                           .getThenBodyBuilder();
        Ix tx{tb, loc};
        loadKV(tx, next, tx.rem(next, stages));
      }

      // O += P V, left in flight: 4 k16 steps, which the lowering takes
      // 32 bytes apart in P's rows and 16 rows (2 KiB) apart in V's boxes
      // of 64 columns.
      static_assert(kBn == kAtom, "P's K is one swizzled row, V's rows 128 B");
      Value dP = perWarpgroup(lb, descType(kRows, kBn),
                              [&](OpBuilder &wb, int64_t w) {
        return descriptor(wb, pTile,
                          {wb.getIndexAttr(w), wb.getIndexAttr(0),
                           wb.getIndexAttr(0)},
                          kRows, kBn, kRows, kBn, mapQ);
      });
      Value dV = descriptor(lb, vRing, {stage, lb.getIndexAttr(0),
                                        lb.getIndexAttr(0), lb.getIndexAttr(0)},
                            kBn, kAtom, kBn, dv, mapV);
      o = nvgpu::WarpgroupMmaOp::create(lb, loc, oAccType, dP, dV,
                                        lb.getI64IntegerAttr(1),
                                        /*transposeA=*/nullptr,
                                        /*transposeB=*/lb.getUnitAttr(), o)
              .getResult();
      scf::YieldOp::create(lb, loc,
                           ValueRange{o, rows[0].max, rows[1].max, rows[0].sum,
                                      rows[1].sum});
    }

    // O / l, rounded to the result type. A quad's pairs would fill half a
    // 32-byte sector per row: where the output's rows take 16-byte chunks,
    // each warpgroup's tile goes through V's ring instead (free once every
    // warpgroup has retired its last product; rows of 16-byte chunks
    // XORed with the row, so the quads' 4-byte stores and the 16-byte
    // reads are conflict-free) and leaves in chunks of whole rows; else as
    // pairs of adjacent columns.
    NVVM::WgmmaWaitGroupSyncOp::create(in, loc, 0);
    SmallVector<Value> inverse;
    for (int64_t half = 0; half < 2; ++half)
      inverse.push_back(
          inverseOrZero(in, loc, rowSum(in, loc, loop.getResult(3 + half))));
    SmallVector<Value> oRegs = registersOf(in, loop.getResult(0), dv / 2);
    auto pairOf = [&](OpBuilder &pb, int64_t e) {
      SmallVector<Value> values;
      for (int64_t i = 0; i < 2; ++i)
        values.push_back(arith::TruncFOp::create(
            pb, loc, element,
            arith::MulFOp::create(pb, loc, oRegs[e + i],
                                  inverse[halfOf(e)])));
      return vector::FromElementsOp::create(
          pb, loc, VectorType::get({2}, element), values);
    };
    Value groupBase = ix.add(qBase, ix.mul(warpgroup, kRows));
    bool staged = (buffers.outView ? buffers.outView->alignedTo(8)
                                   : chunkable(out.getType(), 8)) &&
                  stages >= groupsPerBlock; // a warpgroup's tile per stage
    if (staged) {
      gpu::BarrierOp::create(in, loc);
      Value tile = memref::CollapseShapeOp::create(
          in, loc, vRing,
          ArrayRef<ReassociationIndices>{ReassociationIndices{0, 1, 2, 3}});
      int64_t chunks = dv / 8;
      Value own = ix.mul(warpgroup, kRows * dv);
      auto at = [&](Ix &ax, Value r, Value chunk, Value inChunk) {
        Value physical = ax.xorI(chunk, ax.rem(r, 8));
        return ax.add(own, ax.add(ax.mul(r, dv),
                                  ax.add(ax.mul(physical, 8), inChunk)));
      };
      for (int64_t e = 0; e < dv / 2; e += 2)
        vector::StoreOp::create(
            in, loc, pairOf(in, e), tile,
            at(ix, localRows[halfOf(e)], ix.c(e / 4), ix.mul(inQuad, 2)),
            /*nontemporal=*/false, llvm::MaybeAlign(4));
      gpu::BarrierOp::create(in, loc);
      Value inGroup = ix.rem(tid, kWarpgroup);
      for (int64_t i = 0; i < kRows * chunks / kWarpgroup; ++i) {
        Value e = ix.add(inGroup, i * kWarpgroup);
        Value r = ix.div(e, chunks), chunk = ix.rem(e, chunks);
        Value row = ix.add(groupBase, r);
        Value col = ix.mul(chunk, 8);
        Value inside = ix.andI(ix.ltV(row, queryCount), ix.lt(col, shape.headV));
        OpBuilder sb =
            scf::IfOp::create(in, loc, inside, false).getThenBodyBuilder();
        Ix sx{sb, loc};
        Value values = vector::LoadOp::create(
            sb, loc, VectorType::get({8}, element), tile,
            at(sx, r, chunk, sx.c(0)), /*nontemporal=*/false,
            llvm::MaybeAlign(16));
        vector::StoreOp::create(sb, loc, values, out,
                                ValueRange{batch, head, row, col},
                                /*nontemporal=*/false, llvm::MaybeAlign(16));
      }
    } else {
      for (int64_t e = 0; e < dv / 2; e += 2) {
        Value row = ix.add(groupBase, localRows[halfOf(e)]);
        Value col = columnOf(ix, e);
        Value inside =
            ix.andI(ix.ltV(row, queryCount), ix.lt(col, shape.headV));
        OpBuilder sb =
            scf::IfOp::create(in, loc, inside, false).getThenBodyBuilder();
        vector::StoreOp::create(sb, loc, pairOf(sb, e), out,
                                ValueRange{batch, head, row, col},
                                /*nontemporal=*/false, llvm::MaybeAlign(4));
      }
    }
    gpu::TerminatorOp::create(in, loc);
    eraseFlashAttention(op, buffers);
    if (computedQ)
      eraseDecoded(computedQ);
    return success();
  }

  void runOnOperation() override {
    if (failed(applyFlashStrategy(
            getOperation(), kFlashAttentionWgmma,
            [&](AttentionOp op, const StrategyConfig &config) {
              return rewrite(op, config);
            })))
      signalPassFailure();
  }
};

} // namespace

bool kiln::flashWgmmaAccepts(const FlashShape &shape) {
  return roundUp(shape.headQK, kAtom) <= 128 &&
         roundUp(shape.headV, kAtom) <= 128;
}
