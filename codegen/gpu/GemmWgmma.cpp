//===- GemmWgmma.cpp - tensor-core GEMM with TMA and wgmma (sm_90a) -------===//
//
// The Hopper GEMM strategy, for contractions C[m, n] = A[m, k] * B[k, n] of
// f16 or bf16 operands summed in f32 with row-major buffers (A may have
// batch dims in front, folded into M when B is shared by every batch: the
// activations x weights products of a transformer). Configured by `tile`
// (BM, BN, BK: 128, 128, 64, the shape MLIR 22's nvgpu lowering supports)
// and `stages` (S):
//
// - one warpgroup (128 threads) per block computes a 128x128 output tile
//   with a vector<128x128xf32> accumulator (two m64n128 fragments in
//   registers);
// - the K loop walks 64-deep slices through an S-stage ring in shared
//   memory: thread 0 loads slice t + S - 1 with TMA (A as one [128][64]
//   box, B as two [64][64] boxes, N-major, all with the 128-byte swizzle;
//   the descriptors are built by the runtime from the manifest's tensor
//   maps, out-of-bounds elements read as zero, so the edges need no code)
//   and counts its bytes on the stage's mbarrier (arrive.expect_tx); every
//   thread waits on the stage's phase (try_wait.parity), and
//   nvgpu.warpgroup.mma (8 wgmma.m64n128k16, B transposed) accumulates,
//   leaving one wgmma group in flight (the stage it reads is refilled only
//   after the next slice's wgmma retired it and a barrier);
// - the epilogue: the accumulators go to a shared f32 tile
//   (warpgroup.mma.store), then each thread reads consecutive elements of a
//   row (coalesced, conflict-free), applies the fused epilogue (bias,
//   activation, residual, cast) or adds the output's old value, and stores
//   them, guarded at the M and N edges.
//
// Shared memory: S * 32 KiB of ring + 68 KiB of tile, more than the 48 KiB
// of static shared memory: kiln-gpu-hopper-abi turns the workgroup
// buffers into views of dynamic shared memory, and the manifest asks for
// it. What is left for the best Hopper kernels (cuBLAS-class): two consumer
// warpgroups and a producer warp (warp specialization with setmaxnreg), a
// persistent tile scheduler, clusters with TMA multicast, a TMA store
// epilogue, and operands other than K-major A and N-major B (the nvgpu
// lowering advances descriptors for those two only).
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUGEMMWGMMA
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kBm = 128, kBn = 128, kBk = 64, kThreads = 128,
                  kTilePad = 8;

/// The contraction's loops by role and the flattened problem.
struct WgmmaShape {
  SmallVector<unsigned> batch;  // folded into M
  SmallVector<int64_t> batchExtents;
  unsigned m = 0, n = 0, k = 0;
  int64_t M = 0, N = 0, K = 0;  // M counts the folded batch
  int64_t rows = 0;             // the M loop's own extent
  Type element;
};

/// Whether `value` is a row-major buffer (contiguous, offset 0 or a
/// multiple of 8 elements: 16 bytes, what TMA wants of a base address).
bool rowMajor(Value value) {
  auto type = dyn_cast<MemRefType>(value.getType());
  if (!type || !type.hasStaticShape())
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
  if (llvm::any_of(ranges, ShapedType::isDynamic))
    return failure();
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
  shape.n = b->back();
  // A [batch..., m, k], B [k, n], C [batch..., m, n].
  if ((*b)[0] != shape.k || c->back() != shape.n ||
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
    shape.M *= e;
  shape.N = ranges[shape.n];
  shape.K = ranges[shape.k];
  Value x = op.getDpsInputs()[0], y = op.getDpsInputs()[1];
  shape.element = getElementTypeOrSelf(x.getType());
  if (!(shape.element.isF16() || shape.element.isBF16()) ||
      getElementTypeOrSelf(y.getType()) != shape.element ||
      !getElementTypeOrSelf(op.getDpsInits()[0].getType()).isF32())
    return failure();
  // TMA: global strides in multiples of 16 bytes.
  if (shape.K % 8 || shape.N % 8)
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
    if (failed(tile) || failed(stagesOr))
      return failure();
    if ((*tile)[0] != kBm || (*tile)[1] != kBn || (*tile)[2] != kBk)
      return config.error() << "gemm-wgmma builds 128x128x64 tiles only";
    if (*stagesOr < 2)
      return config.error() << "the pipeline needs at least 2 stages";
    int64_t kTiles = llvm::divideCeil(shape.K, kBk);
    int64_t stages = std::min(*stagesOr, kTiles + 1);
    int64_t mTiles = llvm::divideCeil(shape.M, kBm);
    int64_t nTiles = llvm::divideCeil(shape.N, kBn);
    if (mTiles > 65535)
      return config.error() << "the grid of " << nTiles << " x " << mTiles
                            << " tiles exceeds the device's limits";

    MLIRContext *ctx = op.getContext();
    Location loc = op.getLoc();
    OpOperand *out = op.getDpsInitOperand(0);
    Value A = op.getDpsInputs()[0], B = op.getDpsInputs()[1];
    Type element = shape.element;
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
    auto descriptor = [&](Value buffer, nvgpu::TensorMapDescriptorType type,
                          ArrayRef<int64_t> dims) {
      Value unranked = memref::CastOp::create(
          b, loc, UnrankedMemRefType::get(element, Attribute()), buffer);
      SmallVector<Value> box;
      for (int64_t d : type.getTensor().getShape())
        box.push_back(constantIndex(b, loc, d));
      auto create =
          nvgpu::TmaCreateDescriptorOp::create(b, loc, type, unranked, box);
      create->setAttr("kiln.tma_dims", b.getDenseI64ArrayAttr(dims));
      return create.getResult();
    };
    auto mapAType = mapType(kBm), mapBType = mapType(kBk);
    Value mapA = descriptor(A, mapAType, {shape.K, shape.M});
    Value mapB = descriptor(B, mapBType, {shape.N, shape.K});

    Launch built = createLaunch(
        b, loc,
        {constantIndex(b, loc, nTiles), constantIndex(b, loc, mTiles),
         constantIndex(b, loc, 1)},
        {kThreads, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    auto c = [&](int64_t v) { return constantIndex(in, loc, v); };
    Value ringA = launch.addWorkgroupAttribution(
        smem({stages, kBm, kBk}, element), loc);
    Value ringB = launch.addWorkgroupAttribution(
        smem({stages, 2, kBk, kBn / 2}, element), loc);
    // The epilogue tile, rows padded by 8 floats: the fragments' stores
    // (8 rows x 4 column pairs per warp) hit 2-way bank conflicts instead
    // of 8-way.
    Value tilePadded = launch.addWorkgroupAttribution(
        smem({kBm, kBn + kTilePad}, in.getF32Type()), loc);

    Value tileC = memref::SubViewOp::create(
        in, loc,
        MemRefType::get({kBm, kBn}, in.getF32Type(),
                        StridedLayoutAttr::get(ctx, 0, {kBn + kTilePad, 1}),
                        workgroup),
        tilePadded, ArrayRef<OpFoldResult>{in.getIndexAttr(0), in.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{in.getIndexAttr(kBm), in.getIndexAttr(kBn)},
        ArrayRef<OpFoldResult>{in.getIndexAttr(1), in.getIndexAttr(1)});
    Value tid = launch.getThreadIds().x;
    Value nBase = arith::MulIOp::create(in, loc, launch.getBlockIds().x, c(kBn));
    Value mBase = arith::MulIOp::create(in, loc, launch.getBlockIds().y, c(kBm));
    Value first = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq, tid,
                                        c(0));
    auto barType = nvgpu::MBarrierGroupType::get(ctx, workgroup, stages);
    Value bars = nvgpu::MBarrierCreateOp::create(in, loc, barType);
    {
      OpBuilder tb =
          scf::IfOp::create(in, loc, first, false).getThenBodyBuilder();
      for (int64_t s = 0; s < stages; ++s)
        nvgpu::MBarrierInitOp::create(tb, loc, bars, constantIndex(tb, loc, 1),
                                      constantIndex(tb, loc, s), Value());
      // The initialized barriers visible to the TMA unit's transactions.
      NVVM::FenceMbarrierInitOp::create(tb, loc);
    }
    gpu::BarrierOp::create(in, loc);

    // Thread 0 loads slice `kt` into `stage`: A's [128][64] box at (k, m),
    // B's two [64][64] boxes at (n, k) and (n + 64, k).
    int64_t stageBytes = (kBm * kBk + kBk * kBn) * 2;
    auto load = [&](OpBuilder &lb, Value kt, Value stage) {
      Value k0 = arith::MulIOp::create(lb, loc, kt, constantIndex(lb, loc, kBk));
      nvgpu::MBarrierArriveExpectTxOp::create(
          lb, loc, bars, constantIndex(lb, loc, stageBytes), stage, Value());
      auto view = [&](Value ring, SmallVector<OpFoldResult> offsets,
                      SmallVector<OpFoldResult> sizes, ArrayRef<int64_t> to) {
        auto type = cast<MemRefType>(ring.getType());
        SmallVector<OpFoldResult> ones(offsets.size(), lb.getIndexAttr(1));
        auto result = cast<MemRefType>(memref::SubViewOp::inferRankReducedResultType(
            to, type, offsets, sizes, ones));
        return memref::SubViewOp::create(lb, loc, result, ring, offsets,
                                         sizes, ones)
            .getResult();
      };
      Value dA = view(ringA, {stage, lb.getIndexAttr(0), lb.getIndexAttr(0)},
                      {lb.getIndexAttr(1), lb.getIndexAttr(kBm),
                       lb.getIndexAttr(kBk)},
                      {kBm, kBk});
      nvgpu::TmaAsyncLoadOp::create(lb, loc, dA, bars, mapA,
                                    ValueRange{k0, mBase}, stage, Value(),
                                    Value());
      for (int64_t half = 0; half < 2; ++half) {
        Value dB = view(ringB,
                        {stage, lb.getIndexAttr(half), lb.getIndexAttr(0),
                         lb.getIndexAttr(0)},
                        {lb.getIndexAttr(1), lb.getIndexAttr(1),
                         lb.getIndexAttr(kBk), lb.getIndexAttr(kBn / 2)},
                        {kBk, kBn / 2});
        Value n0 = arith::AddIOp::create(lb, loc, nBase,
                                         constantIndex(lb, loc, half * kBn / 2));
        nvgpu::TmaAsyncLoadOp::create(lb, loc, dB, bars, mapB,
                                      ValueRange{n0, k0}, stage, Value(),
                                      Value());
      }
    };
    // Prologue: slices 0 .. S-2.
    {
      OpBuilder tb =
          scf::IfOp::create(in, loc, first, false).getThenBodyBuilder();
      for (int64_t s = 0; s + 1 < stages && s < kTiles; ++s)
        load(tb, constantIndex(tb, loc, s), constantIndex(tb, loc, s));
    }
    auto accType = nvgpu::WarpgroupAccumulatorType::get(
        ctx, VectorType::get({kBm, kBn}, in.getF32Type()));
    Value acc0 = nvgpu::WarpgroupMmaInitAccumulatorOp::create(in, loc, accType);
    auto kLoop = scf::ForOp::create(in, loc, c(0), c(kTiles), c(1),
                                    ValueRange{acc0});
    {
      OpBuilder kb = OpBuilder::atBlockBegin(kLoop.getBody());
      auto kc = [&](int64_t v) { return constantIndex(kb, loc, v); };
      Value kt = kLoop.getInductionVar();
      Value stage = arith::RemUIOp::create(kb, loc, kt, kc(stages));
      // The stage's j-th fill completes phase j: wait for parity j % 2.
      Value round = arith::DivUIOp::create(kb, loc, kt, kc(stages));
      Value parity = arith::TruncIOp::create(
          kb, loc, kb.getI1Type(),
          arith::IndexCastOp::create(kb, loc, kb.getI64Type(),
                                     arith::RemUIOp::create(kb, loc, round,
                                                            kc(2))));
      nvgpu::MBarrierTryWaitParityOp::create(kb, loc, bars, parity,
                                             kc(10000000), stage);
      auto aView = MemRefType::get(
          {kBm, kBk}, element,
          StridedLayoutAttr::get(ctx, ShapedType::kDynamic, {kBk, 1}),
          workgroup);
      Value va = memref::SubViewOp::create(
          kb, loc, aView, ringA,
          SmallVector<OpFoldResult>{stage, kb.getIndexAttr(0),
                                    kb.getIndexAttr(0)},
          SmallVector<OpFoldResult>{kb.getIndexAttr(1), kb.getIndexAttr(kBm),
                                    kb.getIndexAttr(kBk)},
          SmallVector<OpFoldResult>(3, kb.getIndexAttr(1)));
      // B's stage as one [64][128] matrix: its two boxes, 8 KiB apart,
      // which the descriptor's leading byte offset steps over.
      auto bView = MemRefType::get(
          {kBk, kBn}, element,
          StridedLayoutAttr::get(ctx, ShapedType::kDynamic, {kBn, 1}),
          workgroup);
      Value bOffset = arith::MulIOp::create(kb, loc, stage, kc(kBk * kBn));
      Value vb = memref::ReinterpretCastOp::create(
          kb, loc, bView, ringB, OpFoldResult(bOffset),
          ArrayRef<OpFoldResult>{kb.getIndexAttr(kBk), kb.getIndexAttr(kBn)},
          ArrayRef<OpFoldResult>{kb.getIndexAttr(kBn), kb.getIndexAttr(1)});
      auto descType = [&](int64_t rows, int64_t cols) {
        return nvgpu::WarpgroupMatrixDescriptorType::get(
            ctx, MemRefType::get({rows, cols}, element,
                                 MemRefLayoutAttrInterface(),
                                 kb.getI64IntegerAttr(3)));
      };
      Value dA = nvgpu::WarpgroupGenerateDescriptorOp::create(
          kb, loc, descType(kBm, kBk), va, mapA);
      Value dB = nvgpu::WarpgroupGenerateDescriptorOp::create(
          kb, loc, descType(kBk, kBn), vb, mapB);
      auto mma = nvgpu::WarpgroupMmaOp::create(
          kb, loc, accType, dA, dB, kb.getI64IntegerAttr(1),
          /*transposeA=*/nullptr, /*transposeB=*/kb.getUnitAttr(),
          kLoop.getRegionIterArgs()[0]);
      // The wgmma of slice kt - 1 has retired (one group stays in flight):
      // its stage is free for slice kt + S - 1 once every thread is here.
      gpu::BarrierOp::create(kb, loc);
      Value next = arith::AddIOp::create(kb, loc, kt, kc(stages - 1));
      Value more = arith::CmpIOp::create(kb, loc, arith::CmpIPredicate::ult,
                                         next, kc(kTiles));
      OpBuilder tb = scf::IfOp::create(
                         kb, loc, arith::AndIOp::create(kb, loc, first, more),
                         false)
                         .getThenBodyBuilder();
      load(tb, next, arith::RemUIOp::create(tb, loc, next,
                                             constantIndex(tb, loc, stages)));
      scf::YieldOp::create(kb, loc, mma.getResult());
    }
    NVVM::WgmmaWaitGroupSyncOp::create(in, loc, 0);
    nvgpu::WarpgroupMmaStoreOp::create(in, loc, kLoop.getResult(0), tileC);
    gpu::BarrierOp::create(in, loc);

    // Epilogue: thread t takes columns t of each row of the tile.
    AffineMap outMap = op.getMatchingIndexingMap(out);
    Value dest = epilogue ? epilogue.getDpsInitOperand(0)->get() : out->get();
    SmallVector<int64_t> mExtents(shape.batchExtents);
    mExtents.push_back(shape.rows);
    auto rowLoop = scf::ForOp::create(in, loc, c(0), c(kBm), c(1));
    {
      OpBuilder rb = OpBuilder::atBlockBegin(rowLoop.getBody());
      Value r = rowLoop.getInductionVar();
      Value row = arith::AddIOp::create(rb, loc, mBase, r);
      Value col = arith::AddIOp::create(rb, loc, nBase, tid);
      Value inside = arith::AndIOp::create(
          rb, loc,
          arith::CmpIOp::create(rb, loc, arith::CmpIPredicate::ult, row,
                                constantIndex(rb, loc, shape.M)),
          arith::CmpIOp::create(rb, loc, arith::CmpIPredicate::ult, col,
                                constantIndex(rb, loc, shape.N)));
      OpBuilder sb = scf::IfOp::create(rb, loc, inside, false)
                         .getThenBodyBuilder();
      Value v = memref::LoadOp::create(sb, loc, tileC, ValueRange{r, tid});
      SmallVector<Value> loops(op.getNumLoops());
      SmallVector<Value> split = delinearize(sb, loc, row, mExtents);
      for (auto [d, value] : llvm::zip(shape.batch, split))
        loops[d] = value;
      loops[shape.m] = split.back();
      loops[shape.n] = col;
      SmallVector<Value> outIndices = indicesFor(sb, loc, outMap, loops);
      if (fillValue) {
        auto attr = cast<FloatAttr>(
            fillValue.getDefiningOp<arith::ConstantOp>().getValue());
        if (!attr.getValue().isZero())
          v = arith::AddFOp::create(
              sb, loc, v,
              arith::ConstantOp::create(sb, loc, sb.getF32FloatAttr(
                                                     attr.getValueAsDouble())));
      } else {
        v = arith::AddFOp::create(
            sb, loc, v, memref::LoadOp::create(sb, loc, out->get(), outIndices));
      }
      if (epilogue) {
        // The epilogue's loops are the output's dims, in order.
        SmallVector<Value> eLoops;
        for (unsigned i = 0; i < outMap.getNumResults(); ++i)
          eLoops.push_back(loops[outMap.getDimPosition(i)]);
        v = applyEpilogue(sb, loc, epilogue, temporary, eLoops, {v}).front();
        AffineMap destMap =
            epilogue.getMatchingIndexingMap(epilogue.getDpsInitOperand(0));
        memref::StoreOp::create(sb, loc, v, dest,
                                indicesFor(sb, loc, destMap, eLoops));
      } else {
        memref::StoreOp::create(sb, loc, v, dest, outIndices);
      }
    }
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
