//===- GemmWgmma.cpp - tensor-core GEMM with TMA and wgmma (sm_90a) -------===//
//
// The Hopper GEMM strategy, for contractions C[m, n] = A[m, k] * B[k, n]
// (B N-major, or K-major: B[n, k], a transposed weight) of
// f16 or bf16 operands summed in f32 with row-major buffers (A may have
// batch dims in front, folded into M when B is shared by every batch: the
// activations x weights products of a transformer). Configured by `tile`
// (BM, BN, BK: 128, 128, 64, the shape MLIR 22's nvgpu lowering supports),
// `stages` (S) and `blocks` (the persistent grid). Warp-specialized and
// persistent, as the best Hopper GEMMs are:
//
// - 384 threads: a producer warpgroup and two consumer warpgroups; the
//   block walks the output tiles blockIdx.x, + gridDim.x, ... and the
//   64-deep K slices of each through an S-stage ring in shared memory,
//   every stage behind two mbarriers: `full` (its bytes landed) and
//   `empty` (both consumers are done with it);
// - the producer gives registers up (setmaxnreg 40); its thread 0 waits for
//   a stage to be empty, counts the slice's bytes on its full barrier
//   (arrive.expect_tx) and loads it with TMA (A as one [128][64] box, B as
//   two [64][64] boxes, N-major, all with the 128-byte swizzle; the
//   descriptors are built by the runtime from the manifest's tensor maps,
//   out-of-bounds elements read as zero, so the edges need no code);
// - each consumer takes registers (setmaxnreg 232) and owns 64 rows of the
//   tile in a vector<64x128xf32> accumulator: it waits for the stage to be
//   full (try_wait.parity), accumulates with nvgpu.warpgroup.mma (4
//   wgmma.m64n128k16, B transposed) leaving one group in flight, and
//   releases the stage of the group that retired (mbarrier.arrive);
// - the epilogue runs from the accumulator's registers: each lane's pairs
//   of adjacent columns get the fill value or the output's old value, the
//   fused epilogue (bias, activation, residual, cast), and leave as one
//   store, guarded at the M edge; meanwhile the producer is loading the
//   next tile.
//
// Shared memory: S * 32 KiB of ring, more than the 48 KiB of static shared
// memory: kiln-gpu-hopper-abi turns the workgroup buffers into views of
// dynamic shared memory, and the manifest asks for it. What is left for
// cuBLAS-class kernels: 128x256 tiles, clusters with TMA multicast, a TMA
// store epilogue, ping-pong consumers; and a batched B.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"
#include "codegen/gpu/TileIndex.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUGEMMWGMMA
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kBm = 128, kBn = 128, kBk = 64, kWarpgroup = 128,
                  kConsumers = 2, kRows = kBm / kConsumers,
                  kThreads = (1 + kConsumers) * kWarpgroup;
// setmaxnreg budgets: 40 for the producer, 232 for each consumer thread
// (128 x 40 + 256 x 232 = 64,512 of the SM's 65,536).
constexpr int32_t kProducerRegisters = 40, kConsumerRegisters = 232;

/// The contraction's loops by role and the flattened problem.
struct WgmmaShape {
  SmallVector<unsigned> batch;  // folded into M
  SmallVector<int64_t> batchExtents;
  unsigned m = 0, n = 0, k = 0;
  int64_t M = 0, N = 0, K = 0;  // M counts the folded batch
  int64_t rows = 0;             // the M loop's own extent
  /// M (the M loop or a folded batch loop) is known only when the kernel
  /// runs (a prompt's length): M and rows are then ShapedType::kDynamic.
  bool dynamicM = false;
  Type element;
  /// B read [n, k] (K innermost: a transposed weight, GPT-2's lm_head)
  /// rather than [k, n].
  bool kMajorB = false;
};

/// Whether `value` is a row-major buffer (contiguous, offset 0 or a
/// multiple of 8 elements: 16 bytes, what TMA wants of a base address); of
/// symbolic shape, with the identity layout.
bool rowMajor(Value value) {
  auto type = dyn_cast<MemRefType>(value.getType());
  if (type && !type.hasStaticShape())
    return type.getLayout().isIdentity();
  if (!type)
    return false;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)) ||
      ShapedType::isDynamic(offset) || offset % 8)
    return false;
  int64_t expect = 1;
  for (int64_t d = type.getRank() - 1; d >= 0; --d) {
    if (strides[d] != expect && type.getDimSize(d) != 1)
      return false;
    expect *= type.getDimSize(d);
  }
  return true;
}

/// The loops the map's results name, or failure when one is not a loop.
FailureOr<SmallVector<unsigned>> loopsOf(AffineMap map) {
  SmallVector<unsigned> loops;
  for (AffineExpr e : map.getResults()) {
    auto d = dyn_cast<AffineDimExpr>(e);
    if (!d)
      return failure();
    loops.push_back(d.getPosition());
  }
  return loops;
}

FailureOr<WgmmaShape> analyze(linalg::LinalgOp op, bool needLayouts) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 1 || !isMultiplyAccumulate(op))
    return failure();
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  FailureOr<SmallVector<unsigned>> a =
      loopsOf(op.getMatchingIndexingMap(op.getDpsInputOperand(0)));
  FailureOr<SmallVector<unsigned>> b =
      loopsOf(op.getMatchingIndexingMap(op.getDpsInputOperand(1)));
  FailureOr<SmallVector<unsigned>> c =
      loopsOf(op.getMatchingIndexingMap(op.getDpsInitOperand(0)));
  if (failed(a) || failed(b) || failed(c) || a->size() < 2 ||
      b->size() != 2 || c->size() != a->size())
    return failure();
  WgmmaShape shape;
  shape.m = (*a)[a->size() - 2];
  shape.k = a->back();
  // A [batch..., m, k], B [k, n] or [n, k], C [batch..., m, n].
  shape.kMajorB = b->back() == shape.k;
  shape.n = shape.kMajorB ? (*b)[0] : b->back();
  if ((*b)[shape.kMajorB ? 1 : 0] != shape.k || c->back() != shape.n ||
      (*c)[c->size() - 2] != shape.m ||
      op.getIteratorTypesArray()[shape.k] != utils::IteratorType::reduction ||
      shape.m == shape.n || shape.m == shape.k || shape.n == shape.k)
    return failure();
  for (size_t i = 0; i + 2 < a->size(); ++i) {
    if ((*a)[i] != (*c)[i] || (*a)[i] == shape.n || (*a)[i] == shape.k)
      return failure();
    shape.batch.push_back((*a)[i]);
    shape.batchExtents.push_back(ranges[(*a)[i]]);
  }
  shape.rows = ranges[shape.m];
  shape.M = shape.rows;
  for (int64_t e : shape.batchExtents)
    shape.M = ShapedType::isDynamic(e) || ShapedType::isDynamic(shape.M)
                  ? ShapedType::kDynamic
                  : shape.M * e;
  shape.dynamicM = ShapedType::isDynamic(shape.M);
  shape.N = ranges[shape.n];
  shape.K = ranges[shape.k];
  // Only the rows may be symbolic.
  if (ShapedType::isDynamic(shape.N) || ShapedType::isDynamic(shape.K))
    return failure();
  Value x = op.getDpsInputs()[0], y = op.getDpsInputs()[1];
  shape.element = getElementTypeOrSelf(x.getType());
  if (!(shape.element.isF16() || shape.element.isBF16()) ||
      getElementTypeOrSelf(y.getType()) != shape.element ||
      !getElementTypeOrSelf(op.getDpsInits()[0].getType()).isF32())
    return failure();
  // TMA: global strides in multiples of 16 bytes (B's rows are N long
  // when it is N-major, K long when K-major).
  if (shape.K % 8 || (!shape.kMajorB && shape.N % 8))
    return failure();
  if (needLayouts && (!rowMajor(x) || !rowMajor(y) ||
                      !rowMajor(op.getDpsInits()[0])))
    return failure();
  return shape;
}

struct KilnGpuGemmWgmmaPass final
    : kiln::impl::KilnGpuGemmWgmmaBase<KilnGpuGemmWgmmaPass> {
  using Base::Base;

  FailureOr<bool> rewrite(linalg::LinalgOp op, const StrategyConfig &config,
                          FusedEpilogues &fused) {
    if (!op.hasPureBufferSemantics())
      return false;
    FailureOr<WgmmaShape> analyzed = analyze(op, /*needLayouts=*/true);
    if (failed(analyzed))
      return false;
    const WgmmaShape &shape = *analyzed;
    FailureOr<SmallVector<int64_t>> tile = config.getInts("tile", 3);
    FailureOr<int64_t> stagesOr = config.getInt("stages");
    FailureOr<int64_t> blocksOr = config.getInt("blocks");
    if (failed(tile) || failed(stagesOr) || failed(blocksOr))
      return failure();
    if ((*tile)[0] != kBm || (*tile)[1] != kBn || (*tile)[2] != kBk)
      return config.error() << "gemm-wgmma builds 128x128x64 tiles only";
    if (*stagesOr < 2)
      return config.error() << "the pipeline needs at least 2 stages";
    int64_t kTiles = llvm::divideCeil(shape.K, kBk);
    int64_t stages = std::min(*stagesOr, kTiles + 1);
    int64_t nTiles = llvm::divideCeil(shape.N, kBn);
    if (*blocksOr > 65535)  // getInt has refused one below 1
      return config.error() << "a persistent grid of " << *blocksOr
                            << " blocks is not launchable (1 to 65535)";
    // With symbolic rows, the grid is the configuration's; blocks past the
    // tiles find none.
    int64_t blocks =
        shape.dynamicM
            ? *blocksOr
            : std::min<int64_t>(*blocksOr,
                                llvm::divideCeil(shape.M, kBm) * nTiles);

    MLIRContext *ctx = op.getContext();
    Location loc = op.getLoc();
    OpOperand *out = op.getDpsInitOperand(0);
    Value A = op.getDpsInputs()[0], B = op.getDpsInputs()[1];
    Type element = shape.element;
    Type f32 = Float32Type::get(ctx);
    OpBuilder b(op);

    Value fillValue;
    if (auto fill = dyn_cast_or_null<linalg::FillOp>(op->getPrevNode()))
      if (fill.getOutputs().front() == out->get() &&
          fill.getInputs().front().getDefiningOp<arith::ConstantOp>()) {
        fillValue = fill.getInputs().front();
        fill.erase();
      }
    linalg::GenericOp epilogue = fillValue ? fusedEpilogue(op) : nullptr;
    Value temporary = out->get();

    // The TMA descriptors, on the host side: the runtime encodes them from
    // the manifest's tensor maps (dims and byte strides innermost first).
    auto workgroup = gpu::AddressSpaceAttr::get(
        ctx, gpu::GPUDialect::getWorkgroupAddressSpace());
    auto smem = [&](ArrayRef<int64_t> shape, Type type) {
      return MemRefType::get(shape, type, MemRefLayoutAttrInterface(),
                             workgroup);
    };
    auto swizzle = nvgpu::TensorMapSwizzleKindAttr::get(
        ctx, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B);
    auto mapType = [&](int64_t rows) {
      return nvgpu::TensorMapDescriptorType::get(
          ctx,
          MemRefType::get({rows, kBk}, element, MemRefLayoutAttrInterface(),
                          b.getI64IntegerAttr(3)),
          swizzle.getValue(), nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
          nvgpu::TensorMapOOBKind::OOB_ZERO,
          nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
    };
    // A descriptor of `buffer` seen as the dense tensor `dims` (innermost
    // first), or, without dims, of `buffer` itself: a view whose sizes the
    // artifact builder reads.
    auto descriptor = [&](Value buffer, nvgpu::TensorMapDescriptorType type,
                          ArrayRef<int64_t> dims) {
      Value unranked = memref::CastOp::create(
          b, loc, UnrankedMemRefType::get(element, Attribute()), buffer);
      SmallVector<Value> box;
      for (int64_t d : type.getTensor().getShape())
        box.push_back(constantIndex(b, loc, d));
      auto create =
          nvgpu::TmaCreateDescriptorOp::create(b, loc, type, unranked, box);
      if (!dims.empty())
        create->setAttr("kiln.tma_dims", b.getDenseI64ArrayAttr(dims));
      return create.getResult();
    };
    // B N-major as two [64 k][64 n] boxes of its [K, N] rows; K-major as one
    // [128 n][64 k] box of its [N, K] rows, as A.
    bool kMajorB = shape.kMajorB;
    auto mapAType = mapType(kBm), mapBType = mapType(kMajorB ? kBn : kBk);
    // The rows at run time: each M-side loop's extent (a constant, or A's
    // size there), their product M, and the tiles along M.
    SmallVector<Value> rowExtents;
    for (auto [i, loop] : llvm::enumerate(llvm::concat<const unsigned>(
             shape.batch, ArrayRef<unsigned>{shape.m}))) {
      int64_t extent = i < shape.batchExtents.size() ? shape.batchExtents[i]
                                                     : shape.rows;
      rowExtents.push_back(ShapedType::isDynamic(extent)
                               ? memref::DimOp::create(b, loc, A, i).getResult()
                               : constantIndex(b, loc, extent));
    }
    Value mSize = rowExtents.front();
    for (Value e : ArrayRef<Value>(rowExtents).drop_front())
      mSize = arith::MulIOp::create(b, loc, mSize, e);
    Value mTilesV = arith::CeilDivUIOp::create(b, loc, mSize,
                                               constantIndex(b, loc, kBm));
    Value tilesV = arith::MulIOp::create(b, loc, mTilesV,
                                         constantIndex(b, loc, nTiles));
    Value mapA;
    if (shape.dynamicM) {
      // A seen as [M, K]: a view whose symbolic size the artifact builder
      // turns into the map's dim expression, encoded per run.
      Value rows2d = memref::ReinterpretCastOp::create(
          b, loc,
          MemRefType::get({ShapedType::kDynamic, shape.K}, element),
          A, OpFoldResult(b.getIndexAttr(0)),
          ArrayRef<OpFoldResult>{mSize, b.getIndexAttr(shape.K)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(shape.K), b.getIndexAttr(1)});
      mapA = descriptor(rows2d, mapAType, {});
    } else {
      mapA = descriptor(A, mapAType, {shape.K, shape.M});
    }
    Value mapB = kMajorB ? descriptor(B, mapBType, {shape.K, shape.N})
                         : descriptor(B, mapBType, {shape.N, shape.K});

    Launch built = createLaunch(
        b, loc,
        {constantIndex(b, loc, blocks), constantIndex(b, loc, 1),
         constantIndex(b, loc, 1)},
        {kThreads, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Ix ix{in, loc};
    Value ringA = launch.addWorkgroupAttribution(
        smem({stages, kBm, kBk}, element), loc);
    Value ringB = launch.addWorkgroupAttribution(
        kMajorB ? smem({stages, kBn, kBk}, element)
                : smem({stages, 2, kBk, kBn / 2}, element),
        loc);
    Value tid = launch.getThreadIds().x;
    Value bid = launch.getBlockIds().x;
    Value warpgroup = ix.div(tid, kWarpgroup);
    Value first = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq, tid,
                                        ix.c(0));
    // full[s]: the stage's bytes landed (the producer's expect_tx and the
    // TMA unit's transactions); empty[s]: both consumers' wgmmas that read
    // it retired (one arrival per consumer warpgroup).
    auto barType = nvgpu::MBarrierGroupType::get(ctx, workgroup, stages);
    Value full = nvgpu::MBarrierCreateOp::create(in, loc, barType);
    Value empty = nvgpu::MBarrierCreateOp::create(in, loc, barType);
    {
      OpBuilder tb =
          scf::IfOp::create(in, loc, first, false).getThenBodyBuilder();
      for (int64_t s = 0; s < stages; ++s) {
        nvgpu::MBarrierInitOp::create(tb, loc, full, constantIndex(tb, loc, 1),
                                      constantIndex(tb, loc, s), Value());
        nvgpu::MBarrierInitOp::create(tb, loc, empty,
                                      constantIndex(tb, loc, kConsumers),
                                      constantIndex(tb, loc, s), Value());
      }
      // The initialized barriers visible to the TMA unit's transactions.
      NVVM::FenceMbarrierInitOp::create(tb, loc);
    }
    gpu::BarrierOp::create(in, loc);

    // The block's tiles: blockIdx.x, + gridDim.x, ... (persistent); tile t
    // is rows (t % mTiles) * 128 and columns (t / mTiles) * 128, so the
    // blocks at work at once share B's column panels. Slice kt of the
    // block's j-th tile is its (j * kTiles + kt)-th: stage it % S, filled
    // for the (it / S)-th time.
    auto tileLoop = [&](OpBuilder &lb,
                        function_ref<void(OpBuilder &, Value, Value, Value)>
                            body) {
      Ix lx{lb, loc};
      auto loop = scf::ForOp::create(lb, loc, bid, tilesV, lx.c(blocks),
                                     ValueRange{lx.c(0)});
      OpBuilder tb = OpBuilder::atBlockBegin(loop.getBody());
      Ix tx{tb, loc};
      Value t = loop.getInductionVar();
      body(tb,
           tx.mul(arith::RemUIOp::create(tb, loc, t, mTilesV), kBm),
           tx.mul(arith::DivUIOp::create(tb, loc, t, mTilesV), kBn),
           loop.getRegionIterArgs()[0]);
      scf::YieldOp::create(tb, loc,
                           ValueRange{tx.add(loop.getRegionIterArgs()[0],
                                             kTiles)});
    };
    auto parityOf = [&](Ix &px, Value round) {
      return arith::TruncIOp::create(
          px.b, loc, px.b.getI1Type(),
          arith::IndexCastOp::create(px.b, loc, px.b.getI64Type(),
                                     px.rem(round, 2)));
    };
    // Slice `it`'s stage, once `barriers`' phase of its (round + shift)-th
    // completion has passed (parity (it / S + shift) % 2).
    auto awaitStage = [&](Ix &kx, Value barriers, Value it, int64_t shift) {
      Value stage = kx.rem(it, stages);
      nvgpu::MBarrierTryWaitParityOp::create(
          kx.b, loc, barriers,
          parityOf(kx, kx.add(kx.div(it, stages), shift)), kx.c(10000000),
          stage);
      return stage;
    };
    auto roles = scf::IfOp::create(in, loc, ix.lt(warpgroup, 1),
                                   /*withElseRegion=*/true);

    // The producer warpgroup: its registers handed to the consumers; thread
    // 0 waits for a stage to be free, arms its full barrier with the
    // slice's bytes, and issues the TMA loads (A's [128][64] box at (k, m),
    // B's two [64][64] boxes at (n, k) and (n + 64, k)).
    {
      OpBuilder pb = roles.getThenBodyBuilder();
      NVVM::SetMaxRegisterOp::create(pb, loc, kProducerRegisters,
                                     NVVM::SetMaxRegisterAction::decrease);
      OpBuilder tb =
          scf::IfOp::create(pb, loc, first, false).getThenBodyBuilder();
      int64_t stageBytes = (kBm * kBk + kBk * kBn) * 2;
      tileLoop(tb, [&](OpBuilder &lb, Value mBase, Value nBase, Value it0) {
        Ix lx{lb, loc};
        auto kLoop = scf::ForOp::create(lb, loc, lx.c(0), lx.c(kTiles),
                                        lx.c(1));
        OpBuilder kb = OpBuilder::atBlockBegin(kLoop.getBody());
        Ix kx{kb, loc};
        Value kt = kLoop.getInductionVar();
        Value it = kx.add(it0, kt);
        // The (r + 1)-th fill waits for the consumers' r-th release, which
        // completed phase r - 1 of empty[s]; the first round passes (the
        // phase before a barrier's first counts as completed).
        Value stage = awaitStage(kx, empty, it, 1);
        nvgpu::MBarrierArriveExpectTxOp::create(kb, loc, full,
                                                kx.c(stageBytes), stage,
                                                Value());
        Value k0 = kx.mul(kt, kBk);
        auto view = [&](Value ring, SmallVector<OpFoldResult> offsets,
                        SmallVector<OpFoldResult> sizes, ArrayRef<int64_t> to) {
          auto type = cast<MemRefType>(ring.getType());
          SmallVector<OpFoldResult> ones(offsets.size(), kb.getIndexAttr(1));
          auto result = cast<MemRefType>(
              memref::SubViewOp::inferRankReducedResultType(to, type, offsets,
                                                            sizes, ones));
          return memref::SubViewOp::create(kb, loc, result, ring, offsets,
                                           sizes, ones)
              .getResult();
        };
        Value dA = view(ringA, {stage, kb.getIndexAttr(0), kb.getIndexAttr(0)},
                        {kb.getIndexAttr(1), kb.getIndexAttr(kBm),
                         kb.getIndexAttr(kBk)},
                        {kBm, kBk});
        nvgpu::TmaAsyncLoadOp::create(kb, loc, dA, full, mapA,
                                      ValueRange{k0, mBase}, stage, Value(),
                                      Value());
        if (kMajorB) {
          Value dB = view(ringB,
                          {stage, kb.getIndexAttr(0), kb.getIndexAttr(0)},
                          {kb.getIndexAttr(1), kb.getIndexAttr(kBn),
                           kb.getIndexAttr(kBk)},
                          {kBn, kBk});
          nvgpu::TmaAsyncLoadOp::create(kb, loc, dB, full, mapB,
                                        ValueRange{k0, nBase}, stage, Value(),
                                        Value());
        }
        for (int64_t half = 0; half < 2 && !kMajorB; ++half) {
          Value dB = view(ringB,
                          {stage, kb.getIndexAttr(half), kb.getIndexAttr(0),
                           kb.getIndexAttr(0)},
                          {kb.getIndexAttr(1), kb.getIndexAttr(1),
                           kb.getIndexAttr(kBk), kb.getIndexAttr(kBn / 2)},
                          {kBk, kBn / 2});
          nvgpu::TmaAsyncLoadOp::create(kb, loc, dB, full, mapB,
                                        ValueRange{kx.add(nBase, half * kBn / 2),
                                                   k0},
                                        stage, Value(), Value());
        }
      });
    }

    // The consumer warpgroups: warpgroup 1 + c computes rows 64c..64c+63
    // of each tile with m64n128k16 wgmmas (B transposed), keeping one group
    // in flight; once the group of slice kt - 1 retired, its stage is
    // released to the producer by the warpgroup's first thread.
    OpBuilder cb = roles.getElseBodyBuilder();
    NVVM::SetMaxRegisterOp::create(cb, loc, kConsumerRegisters,
                                   NVVM::SetMaxRegisterAction::increase);
    Ix cx{cb, loc};
    Value consumer = cx.add(warpgroup, -1);
    Value leader = arith::CmpIOp::create(cb, loc, arith::CmpIPredicate::eq,
                                         cx.rem(tid, kWarpgroup), cx.c(0));
    auto release = [&](OpBuilder &rb, Value stage) {
      OpBuilder lb =
          scf::IfOp::create(rb, loc, leader, false).getThenBodyBuilder();
      nvgpu::MBarrierArriveOp::create(
          lb, loc, nvgpu::MBarrierTokenType::get(ctx), empty, stage);
    };
    auto accType = nvgpu::WarpgroupAccumulatorType::get(
        ctx, VectorType::get({kRows, kBn}, f32));
    auto descType = [&](int64_t rows, int64_t cols) {
      return nvgpu::WarpgroupMatrixDescriptorType::get(
          ctx, MemRefType::get({rows, cols}, element,
                               MemRefLayoutAttrInterface(),
                               b.getI64IntegerAttr(3)));
    };
    // The epilogue's pieces, shared by every tile.
    AffineMap outMap = op.getMatchingIndexingMap(out);
    Value dest = out->get();
    AffineMap destMap = outMap;
    unsigned destInner = shape.n;
    if (epilogue) {
      dest = epilogue.getDpsInitOperand(0)->get();
      destMap = epilogue.getMatchingIndexingMap(epilogue.getDpsInitOperand(0));
      destInner = outMap.getNumResults() - 1;
    }
    bool pairs = shape.N % 2 == 0 && innermostLoop(outMap) == shape.n &&
                 pairable(dest, destMap, destInner) &&
                 (fillValue || pairable(out->get(), outMap, shape.n));
    Type destElement = getElementTypeOrSelf(dest.getType());
    Value lane = cx.rem(tid, 32);
    Value quad = cx.div(lane, 4), inQuad = cx.rem(lane, 4);
    Value warpRow = cx.add(cx.mul(consumer, kRows),
                           cx.mul(cx.rem(cx.div(tid, 32), 4), 16));

    tileLoop(cb, [&](OpBuilder &lb, Value mBase, Value nBase, Value it0) {
      Ix lx{lb, loc};
      Value acc0 = nvgpu::WarpgroupMmaInitAccumulatorOp::create(lb, loc,
                                                                accType);
      auto kLoop = scf::ForOp::create(lb, loc, lx.c(0), lx.c(kTiles), lx.c(1),
                                      ValueRange{acc0});
      {
        OpBuilder kb = OpBuilder::atBlockBegin(kLoop.getBody());
        Ix kx{kb, loc};
        Value kt = kLoop.getInductionVar();
        Value it = kx.add(it0, kt);
        // The stage's r-th fill completes phase r: wait for parity r % 2.
        Value stage = awaitStage(kx, full, it, 0);
        // Each warpgroup's descriptors of A from views of its own rows (a
        // view is the same for every thread that makes it): the whole
        // [64][64] slice, or, with a K-major B, one [64][16] step per k16
        // (descriptors 32 bytes apart in the swizzled rows).
        int64_t steps = kMajorB ? kBk / 16 : 1, stepK = kBk / steps;
        SmallVector<Type> aTypes(steps, descType(kRows, stepK));
        auto perConsumer = scf::IfOp::create(kb, loc, aTypes,
                                             kx.lt(consumer, 1),
                                             /*withElseRegion=*/true);
        for (int64_t c = 0; c < kConsumers; ++c) {
          OpBuilder wb = c ? perConsumer.getElseBodyBuilder()
                           : perConsumer.getThenBodyBuilder();
          auto aView = MemRefType::get(
              {kRows, stepK}, element,
              StridedLayoutAttr::get(ctx, ShapedType::kDynamic, {kBk, 1}),
              workgroup);
          SmallVector<Value> descriptors;
          for (int64_t step = 0; step < steps; ++step) {
            Value va = memref::SubViewOp::create(
                wb, loc, aView, ringA,
                SmallVector<OpFoldResult>{stage, wb.getIndexAttr(c * kRows),
                                          wb.getIndexAttr(step * stepK)},
                SmallVector<OpFoldResult>{wb.getIndexAttr(1),
                                          wb.getIndexAttr(kRows),
                                          wb.getIndexAttr(stepK)},
                SmallVector<OpFoldResult>(3, wb.getIndexAttr(1)));
            descriptors.push_back(nvgpu::WarpgroupGenerateDescriptorOp::create(
                wb, loc, descType(kRows, stepK), va, mapA));
          }
          scf::YieldOp::create(wb, loc, descriptors);
        }
        Value acc = kLoop.getRegionIterArgs()[0];
        if (kMajorB) {
          // B's stage is [128 n][64 k], K-major: MLIR 22's lowering would
          // advance its descriptor by 16 rows (the N-major step), so each
          // k16 step is its own op on a [128][16] view, chained through the
          // accumulator without waiting; the slice's last op lets its own
          // 4 groups stay in flight (the previous slice's retire).
          for (int64_t step = 0; step < steps; ++step) {
            auto bView = MemRefType::get(
                {kBn, stepK}, element,
                StridedLayoutAttr::get(ctx, ShapedType::kDynamic, {kBk, 1}),
                workgroup);
            Value vb = memref::SubViewOp::create(
                kb, loc, bView, ringB,
                SmallVector<OpFoldResult>{stage, kb.getIndexAttr(0),
                                          kb.getIndexAttr(step * stepK)},
                SmallVector<OpFoldResult>{kb.getIndexAttr(1),
                                          kb.getIndexAttr(kBn),
                                          kb.getIndexAttr(stepK)},
                SmallVector<OpFoldResult>(3, kb.getIndexAttr(1)));
            Value dB = nvgpu::WarpgroupGenerateDescriptorOp::create(
                kb, loc, descType(stepK, kBn), vb, mapB);
            acc = nvgpu::WarpgroupMmaOp::create(
                      kb, loc, accType, perConsumer.getResult(step), dB,
                      kb.getI64IntegerAttr(step + 1 == steps ? steps
                                                             : 2 * steps),
                      /*transposeA=*/nullptr, /*transposeB=*/nullptr, acc)
                      .getResult();
          }
        } else {
          // B's stage as one [64][128] matrix: its two boxes, 8 KiB apart,
          // which the descriptor's leading byte offset steps over; one op
          // (4 wgmma), one group in flight.
          auto bView = MemRefType::get(
              {kBk, kBn}, element,
              StridedLayoutAttr::get(ctx, ShapedType::kDynamic, {kBn, 1}),
              workgroup);
          Value vb = memref::ReinterpretCastOp::create(
              kb, loc, bView, ringB, OpFoldResult(kx.mul(stage, kBk * kBn)),
              ArrayRef<OpFoldResult>{kb.getIndexAttr(kBk),
                                     kb.getIndexAttr(kBn)},
              ArrayRef<OpFoldResult>{kb.getIndexAttr(kBn),
                                     kb.getIndexAttr(1)});
          Value dB = nvgpu::WarpgroupGenerateDescriptorOp::create(
              kb, loc, descType(kBk, kBn), vb, mapB);
          acc = nvgpu::WarpgroupMmaOp::create(
                    kb, loc, accType, perConsumer.getResult(0), dB,
                    kb.getI64IntegerAttr(1),
                    /*transposeA=*/nullptr, /*transposeB=*/kb.getUnitAttr(),
                    acc)
                    .getResult();
        }
        // One group stays in flight: slice kt - 1's has retired.
        OpBuilder pb = scf::IfOp::create(
                           kb, loc,
                           arith::CmpIOp::create(kb, loc,
                                                 arith::CmpIPredicate::ugt,
                                                 kt, kx.c(0)),
                           false)
                           .getThenBodyBuilder();
        Ix px{pb, loc};
        release(pb, px.rem(px.add(it, -1), stages));
        scf::YieldOp::create(kb, loc, acc);
      }
      NVVM::WgmmaWaitGroupSyncOp::create(lb, loc, 0);
      release(lb, lx.rem(lx.add(it0, kTiles - 1), stages));

      // Epilogue, from the registers: register e of the 64x128 fragment is
      // row 16 (warp % 4) + quad + 8 ((e % 4) / 2) of the warpgroup's rows,
      // column 8 (e / 4) + 2 inQuad + e % 2. A lane's two adjacent columns
      // leave as one 8-byte (f32) or 4-byte (16-bit) store where the
      // destination's rows are contiguous and even (N is even: a pair is
      // inside or outside as a whole), and a quad of lanes covers 8
      // columns; else as two stores, each guarded (an odd N, as the
      // lm_head's vocabulary). The fill value, or the output's old value,
      // is added, then the fused epilogue (bias, activation, residual,
      // cast).
      SmallVector<Value> regs(
          UnrealizedConversionCastOp::create(
              lb, loc, SmallVector<Type>(kRows * kBn / kWarpgroup, f32),
              ValueRange{kLoop.getResult(0)})
              .getResults());
      for (int64_t e = 0; e < int64_t(regs.size()); e += 2) {
        Value row = lx.add(mBase, lx.add(warpRow, lx.add(quad, 8 * (e % 4 / 2))));
        Value col = lx.add(nBase, lx.add(lx.mul(inQuad, 2), 8 * (e / 4)));
        Value inside = lx.andI(lx.ltV(row, mSize), lx.lt(col, shape.N));
        OpBuilder sb =
            scf::IfOp::create(lb, loc, inside, false).getThenBodyBuilder();
        Ix sx{sb, loc};
        SmallVector<Value> loops(op.getNumLoops());
        // The row's batch indices and its own (row-major over the extents).
        SmallVector<Value> split(rowExtents.size());
        Value rest = row;
        for (size_t i = rowExtents.size(); i-- > 1;) {
          split[i] = arith::RemUIOp::create(sb, loc, rest, rowExtents[i]);
          rest = arith::DivUIOp::create(sb, loc, rest, rowExtents[i]);
        }
        split[0] = rest;
        for (auto [d, value] : llvm::zip(shape.batch, split))
          loops[d] = value;
        loops[shape.m] = split.back();
        SmallVector<SmallVector<Value>> at;  // per element of the pair
        for (int64_t i = 0; i < 2; ++i) {
          loops[shape.n] = sx.add(col, i);
          at.push_back(loops);
        }
        // The epilogue's loops are the output's dims, in order.
        auto epilogueLoops = [&](ArrayRef<Value> loops) {
          SmallVector<Value> result;
          for (unsigned i = 0; i < outMap.getNumResults(); ++i)
            result.push_back(loops[outMap.getDimPosition(i)]);
          return result;
        };
        auto destIndices = [&](OpBuilder &db, ArrayRef<Value> loops) {
          return epilogue ? indicesFor(db, loc, destMap, epilogueLoops(loops))
                          : indicesFor(db, loc, destMap, loops);
        };
        // The accumulator plus the fill value, or the output's old value.
        auto start = [&](OpBuilder &vb, Value v, ArrayRef<Value> loops) {
          if (!fillValue)
            return arith::AddFOp::create(
                       vb, loc, v,
                       memref::LoadOp::create(vb, loc, out->get(),
                                              indicesFor(vb, loc, outMap,
                                                         loops)))
                .getResult();
          auto attr = cast<FloatAttr>(
              fillValue.getDefiningOp<arith::ConstantOp>().getValue());
          if (attr.getValue().isZero())
            return v;
          return arith::AddFOp::create(
                     vb, loc, v,
                     arith::ConstantOp::create(
                         vb, loc,
                         vb.getF32FloatAttr(attr.getValueAsDouble())))
              .getResult();
        };
        if (!pairs) {
          // Each element on its own: the second one guarded too.
          for (int64_t i = 0; i < 2; ++i) {
            OpBuilder eb = sb;
            if (i && shape.N % 2)
              eb = scf::IfOp::create(sb, loc, sx.lt(at[i][shape.n], shape.N),
                                     false)
                       .getThenBodyBuilder();
            Value v = start(eb, regs[e + i], at[i]);
            if (epilogue)
              v = applyEpilogue(eb, loc, epilogue, temporary,
                                epilogueLoops(at[i]), {v})
                      .front();
            memref::StoreOp::create(eb, loc, v, dest, destIndices(eb, at[i]));
          }
          continue;
        }
        SmallVector<Value> values = {regs[e], regs[e + 1]};
        if (fillValue) {
          for (int64_t i = 0; i < 2; ++i)
            values[i] = start(sb, values[i], at[i]);
        } else {
          Value old = vector::LoadOp::create(
              sb, loc, VectorType::get({2}, f32), out->get(),
              indicesFor(sb, loc, outMap, at[0]), /*nontemporal=*/false,
              llvm::MaybeAlign(8));
          for (int64_t i = 0; i < 2; ++i)
            values[i] = arith::AddFOp::create(
                sb, loc, values[i],
                vector::ExtractOp::create(sb, loc, old, ArrayRef<int64_t>{i}));
        }
        if (epilogue)
          values = applyEpilogue(sb, loc, epilogue, temporary,
                                 epilogueLoops(at[0]), values);
        vector::StoreOp::create(
            sb, loc,
            vector::FromElementsOp::create(
                sb, loc, VectorType::get({2}, destElement), values),
            dest, destIndices(sb, at[0]), /*nontemporal=*/false,
            llvm::MaybeAlign(2 * destElement.getIntOrFloatBitWidth() / 8));
      }
    });
    gpu::TerminatorOp::create(in, loc);
    op.erase();
    if (epilogue)
      fused.push_back({epilogue, temporary});
    return true;
  }

  void runOnOperation() override {
    if (failed(applyGemmStrategy(
            getOperation(), kGemmWgmma,
            [&](linalg::LinalgOp op, const StrategyConfig &config,
                FusedEpilogues &fused) { return rewrite(op, config, fused); })))
      return signalPassFailure();
  }
};

} // namespace

std::optional<std::array<int64_t, 3>>
kiln::gemmWgmmaShape(linalg::LinalgOp op) {
  FailureOr<WgmmaShape> shape = analyze(op, /*needLayouts=*/false);
  if (failed(shape))
    return std::nullopt;
  return std::array<int64_t, 3>{shape->M, shape->N, shape->K};
}
