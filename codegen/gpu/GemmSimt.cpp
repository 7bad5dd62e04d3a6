//===- GemmSimt.cpp - tiled SIMT GEMM through shared memory ---------------===//
//
// The GEMM strategy for contractions (matmul, batch_matmul, and the generic
// contractions the importer writes for broadcasting MatMul), configured by
// `tile` (TM, TN, TK), `threads` (X, Y) and `register_block` (RM, RN) with
// TM = Y * RM and TN = X * RN; the default selection is 64x64x16, 16x16,
// 4x4. One block of X*Y threads computes a TMxTN tile of the output; the K
// dimension is walked in steps of TK: the block stages a TMxTK slice of A
// and a TKxTN slice of B in shared memory (coalesced global loads,
// zero-filled past the edges), synchronizes, and every thread accumulates
// an RMxRN register block from it. The register block is strided (rows
// ty + Y*i, columns tx + X*j), so a warp's shared-memory reads of B hit
// consecutive banks and its global stores of C are coalesced.
//
// The kernel is written in scf/memref/gpu ops, the form the simulator runs.
// A tensor-core strategy replaces the inner k loop (the shared-memory tiles
// and the loop structure stay), which is why the staging and the compute
// are built by separate functions.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUGEMM
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The numbers a gemm-simt configuration gives.
struct GemmConfig {
  int64_t tileM, tileN, tileK, threadsX, threadsY, regM, regN;
  int64_t threads() const { return threadsX * threadsY; }

  static FailureOr<GemmConfig> read(const StrategyConfig &config) {
    FailureOr<SmallVector<int64_t>> tile = config.getInts("tile", 3);
    FailureOr<SmallVector<int64_t>> threads = config.getInts("threads", 2);
    FailureOr<SmallVector<int64_t>> reg = config.getInts("register_block", 2);
    if (failed(tile) || failed(threads) || failed(reg))
      return failure();
    GemmConfig c{(*tile)[0],    (*tile)[1], (*tile)[2], (*threads)[0],
                 (*threads)[1], (*reg)[0],  (*reg)[1]};
    if (c.tileM != c.threadsY * c.regM || c.tileN != c.threadsX * c.regN)
      return config.error() << "the tile must be threads x register_block "
                               "(TM = Y * RM, TN = X * RN)";
    if ((c.tileK * c.tileM) % c.threads() || (c.tileK * c.tileN) % c.threads())
      return config.error() << "every thread must stage the same number of "
                               "elements: TK * TM and TK * TN must be "
                               "multiples of the threads per block";
    return c;
  }
};

/// A contraction's loops grouped by role, with their extents.
struct GemmShape {
  SmallVector<unsigned> batch, m, n, k;
  SmallVector<int64_t> ranges;
  int64_t extent(ArrayRef<unsigned> dims) const {
    int64_t product = 1;
    for (unsigned d : dims)
      product *= ranges[d];
    return product;
  }
  SmallVector<int64_t> extents(ArrayRef<unsigned> dims) const {
    SmallVector<int64_t> result;
    for (unsigned d : dims)
      result.push_back(ranges[d]);
    return result;
  }
};

/// The contraction's loops by role, with the operand read along M first;
/// failure when the op is not a contraction this strategy builds.
FailureOr<std::pair<GemmShape, std::pair<OpOperand *, OpOperand *>>>
analyze(linalg::LinalgOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      !linalg::isaContractionOpInterface(op))
    return failure();
  GemmShape shape;
  shape.ranges = op.getStaticLoopRanges();
  if (llvm::any_of(shape.ranges, ShapedType::isDynamic))
    return failure();
  FailureOr<linalg::ContractionDimensions> dims =
      linalg::inferContractionDims(op);
  if (failed(dims) || dims->m.empty() || dims->n.empty() || dims->k.empty())
    return failure();
  shape.batch.assign(dims->batch.begin(), dims->batch.end());
  shape.m.assign(dims->m.begin(), dims->m.end());
  shape.n.assign(dims->n.begin(), dims->n.end());
  shape.k.assign(dims->k.begin(), dims->k.end());
  for (AffineMap map : op.getIndexingMapsArray())
    for (AffineExpr e : map.getResults())
      if (!isa<AffineDimExpr, AffineConstantExpr>(e))
        return failure();
  // A is the input indexed by the M loops, B the one indexed by N.
  OpOperand *lhs = op.getDpsInputOperand(0), *rhs = op.getDpsInputOperand(1);
  if (!op.getMatchingIndexingMap(lhs).isFunctionOfDim(shape.m.front()))
    std::swap(lhs, rhs);
  if (!op.getMatchingIndexingMap(lhs).isFunctionOfDim(shape.m.front()) ||
      !op.getMatchingIndexingMap(rhs).isFunctionOfDim(shape.n.front()))
    return failure();
  // The body is cloned into the kernel per register: only scalar ops.
  if (!hasScalarBody(op) ||
      getElementTypeOrSelf(lhs->get().getType()).isInteger(1))
    return failure();
  // A matrix-vector product would use one row or column of a tile; the
  // row-reduction strategy (a warp per dot product) fits it.
  if (shape.extent(shape.m) == 1 || shape.extent(shape.n) == 1)
    return failure();
  return std::make_pair(shape, std::make_pair(lhs, rhs));
}

struct KilnGpuGemmPass final : kiln::impl::KilnGpuGemmBase<KilnGpuGemmPass> {
  using Base::Base;

  static Value idx(OpBuilder &b, Location loc, int64_t v) {
    return constantIndex(b, loc, v);
  }

  /// Whether the operand's innermost index walks one of `dims`.
  static bool innermostIn(AffineMap map, ArrayRef<unsigned> dims) {
    if (map.getNumResults() == 0)
      return false;
    auto d = dyn_cast<AffineDimExpr>(map.getResults().back());
    return d && llvm::is_contained(dims, d.getPosition());
  }

  /// Stages one operand's tile in shared memory: `rows` (the K slice) x
  /// `cols` (the M or N slice). Each thread copies rows*cols/threads elements;
  /// consecutive threads take consecutive elements of the operand's
  /// innermost dimension, so the global loads coalesce. Elements past the
  /// edges are zero.
  void stageTile(OpBuilder &b, Location loc, const GemmConfig &c, Value tid,
                 Value kBase, Value colBase, int64_t cols,
                 const GemmShape &shape, OpOperand *operand,
                 ArrayRef<unsigned> colDims, Value tile,
                 ArrayRef<Value> batchValues, bool kInnermost) {
    int64_t perThread = c.tileK * cols / c.threads();
    int64_t kTileK = c.tileK;
    AffineMap map = cast<linalg::LinalgOp>(operand->getOwner())
                        .getMatchingIndexingMap(operand);
    Type elementType = getElementTypeOrSelf(operand->get().getType());
    Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(elementType));
    for (int64_t r = 0; r < perThread; ++r) {
      Value e =
          arith::AddIOp::create(b, loc, tid, idx(b, loc, r * c.threads()));
      Value kk, cc;
      if (kInnermost) {
        kk = arith::RemUIOp::create(b, loc, e, idx(b, loc, kTileK));
        cc = arith::DivUIOp::create(b, loc, e, idx(b, loc, kTileK));
      } else {
        cc = arith::RemUIOp::create(b, loc, e, idx(b, loc, cols));
        kk = arith::DivUIOp::create(b, loc, e, idx(b, loc, cols));
      }
      Value gk = arith::AddIOp::create(b, loc, kBase, kk);
      Value gc = arith::AddIOp::create(b, loc, colBase, cc);
      Value inK = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, gk,
                                        idx(b, loc, shape.extent(shape.k)));
      Value inC = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, gc,
                                        idx(b, loc, shape.extent(colDims)));
      Value inside = arith::AndIOp::create(b, loc, inK, inC);
      auto load = scf::IfOp::create(b, loc, elementType, inside,
                                    /*withElse=*/true);
      {
        OpBuilder tb = load.getThenBodyBuilder();
        SmallVector<Value> loopValues(shape.ranges.size());
        for (auto [d, v] : llvm::zip(shape.batch, batchValues))
          loopValues[d] = v;
        for (auto [d, v] :
             llvm::zip(colDims, delinearize(tb, loc, gc, shape.extents(colDims))))
          loopValues[d] = v;
        for (auto [d, v] : llvm::zip(
                 shape.k, delinearize(tb, loc, gk, shape.extents(shape.k))))
          loopValues[d] = v;
        Value v = memref::LoadOp::create(tb, loc, operand->get(),
                                         indicesFor(tb, loc, map, loopValues));
        scf::YieldOp::create(tb, loc, v);
        OpBuilder eb = load.getElseBodyBuilder();
        scf::YieldOp::create(eb, loc, zero);
      }
      memref::StoreOp::create(b, loc, load.getResult(0), tile,
                              ValueRange{kk, cc});
    }
  }

  /// One k step of the register block: acc[i][j] = body(a[i], b[j], acc).
  SmallVector<Value> computeStep(OpBuilder &b, Location loc,
                                 const GemmConfig &c,
                                 linalg::LinalgOp op, OpOperand *lhs,
                                 OpOperand *rhs, Value tileA, Value tileB,
                                 Value kk, Value tx, Value ty,
                                 ValueRange accs) {
    SmallVector<Value> a, bv;
    for (int64_t i = 0; i < c.regM; ++i) {
      Value row = arith::AddIOp::create(b, loc, ty,
                                        idx(b, loc, i * c.threadsY));
      a.push_back(memref::LoadOp::create(b, loc, tileA, ValueRange{kk, row}));
    }
    for (int64_t j = 0; j < c.regN; ++j) {
      Value col = arith::AddIOp::create(b, loc, tx,
                                        idx(b, loc, j * c.threadsX));
      bv.push_back(memref::LoadOp::create(b, loc, tileB, ValueRange{kk, col}));
    }
    Block *body = op.getBlock();
    BlockArgument accArg = op.getMatchingBlockArgument(op.getDpsInitOperand(0));
    SmallVector<Value> next;
    for (int64_t i = 0; i < c.regM; ++i) {
      for (int64_t j = 0; j < c.regN; ++j) {
        IRMapping mapping;
        mapping.map(op.getMatchingBlockArgument(lhs), a[i]);
        mapping.map(op.getMatchingBlockArgument(rhs), bv[j]);
        mapping.map(accArg, accs[i * c.regN + j]);
        for (Operation &inner : body->without_terminator())
          b.clone(inner, mapping);
        next.push_back(
            mapping.lookupOrDefault(body->getTerminator()->getOperand(0)));
      }
    }
    return next;
  }

  FailureOr<bool> rewrite(linalg::LinalgOp op, const StrategyConfig &config) {
    if (!op.hasPureBufferSemantics())
      return false;
    auto analyzed = analyze(op);
    if (failed(analyzed))
      return false;
    FailureOr<GemmConfig> parsed = GemmConfig::read(config);
    if (failed(parsed))
      return failure();
    const GemmConfig &c = *parsed;
    const GemmShape &shape = analyzed->first;
    OpOperand *lhs = analyzed->second.first, *rhs = analyzed->second.second;
    OpOperand *out = op.getDpsInitOperand(0);
    Type accType = getElementTypeOrSelf(out->get().getType());

    Location loc = op.getLoc();
    OpBuilder b(op);
    int64_t mExtent = shape.extent(shape.m), nExtent = shape.extent(shape.n);
    int64_t batchCount = shape.extent(shape.batch);
    // Grid y and z hold at most 65,535 blocks, x 2^31 - 1: a larger batch
    // is folded into x with the N tiles instead of going on z.
    constexpr int64_t kMaxGridX = 0x7fffffff, kMaxGridYZ = 65535;
    int64_t nTiles = llvm::divideCeil(nExtent, c.tileN);
    int64_t mTiles = llvm::divideCeil(mExtent, c.tileM);
    bool foldBatch = batchCount > kMaxGridYZ;
    if (mTiles > kMaxGridYZ ||
        (foldBatch && nTiles > kMaxGridX / batchCount))
      return config.error()
             << "the grid of " << nTiles << " x " << mTiles << " tiles x "
             << batchCount << " batches exceeds the device's limits (x < "
                "2^31 blocks, y and z <= 65535; a batch over 65535 shares x "
                "with the N tiles); use larger tiles or split the operation";
    // A fill of the output right before the contraction becomes the
    // accumulators' initial value instead of a launch of its own.
    Value fillValue;
    if (auto fill = dyn_cast_or_null<linalg::FillOp>(op->getPrevNode())) {
      if (fill.getOutputs().front() == out->get() &&
          fill.getInputs().front().getDefiningOp<arith::ConstantOp>()) {
        fillValue = fill.getInputs().front();
        fill.erase();
      }
    }

    auto sharedSpace = gpu::AddressSpaceAttr::get(
        op.getContext(), gpu::GPUDialect::getWorkgroupAddressSpace());
    auto tileType = [&](OpOperand *operand, int64_t cols) {
      return MemRefType::get({c.tileK, cols},
                             getElementTypeOrSelf(operand->get().getType()),
                             MemRefLayoutAttrInterface(), sharedSpace);
    };
    Launch built = createLaunch(
        b, loc,
        {idx(b, loc, foldBatch ? nTiles * batchCount : nTiles),
         idx(b, loc, mTiles), idx(b, loc, foldBatch ? 1 : batchCount)},
        {c.threads(), 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Value tileA = launch.addWorkgroupAttribution(tileType(lhs, c.tileM), loc);
    Value tileB = launch.addWorkgroupAttribution(tileType(rhs, c.tileN), loc);
    Value tid = launch.getThreadIds().x;
    Value tx = arith::RemUIOp::create(in, loc, tid, idx(in, loc, c.threadsX));
    Value ty = arith::DivUIOp::create(in, loc, tid, idx(in, loc, c.threadsX));
    Value nTile = launch.getBlockIds().x, batchId = launch.getBlockIds().z;
    if (foldBatch) {
      batchId = arith::DivUIOp::create(in, loc, nTile, idx(in, loc, nTiles));
      nTile = arith::RemUIOp::create(in, loc, nTile, idx(in, loc, nTiles));
    }
    Value nBase =
        arith::MulIOp::create(in, loc, nTile, idx(in, loc, c.tileN));
    Value mBase = arith::MulIOp::create(in, loc, launch.getBlockIds().y,
                                        idx(in, loc, c.tileM));
    SmallVector<Value> batchValues =
        delinearize(in, loc, batchId, shape.extents(shape.batch));

    // The output element each accumulator belongs to, and whether it exists.
    AffineMap outMap = op.getMatchingIndexingMap(out);
    auto outIndices = [&](OpBuilder &ob, int64_t i, int64_t j,
                          Value &inside) {
      Value gm = arith::AddIOp::create(
          ob, loc, mBase,
          arith::AddIOp::create(ob, loc, ty, idx(ob, loc, i * c.threadsY)));
      Value gn = arith::AddIOp::create(
          ob, loc, nBase,
          arith::AddIOp::create(ob, loc, tx, idx(ob, loc, j * c.threadsX)));
      inside = arith::AndIOp::create(
          ob, loc,
          arith::CmpIOp::create(ob, loc, arith::CmpIPredicate::ult, gm,
                                idx(ob, loc, mExtent)),
          arith::CmpIOp::create(ob, loc, arith::CmpIPredicate::ult, gn,
                                idx(ob, loc, nExtent)));
      return std::make_pair(gm, gn);
    };
    auto loopValuesAt = [&](OpBuilder &ob, Value gm, Value gn) {
      SmallVector<Value> loopValues(shape.ranges.size());
      for (auto [d, v] : llvm::zip(shape.batch, batchValues))
        loopValues[d] = v;
      for (auto [d, v] :
           llvm::zip(shape.m, delinearize(ob, loc, gm, shape.extents(shape.m))))
        loopValues[d] = v;
      for (auto [d, v] :
           llvm::zip(shape.n, delinearize(ob, loc, gn, shape.extents(shape.n))))
        loopValues[d] = v;
      return loopValues;
    };

    // Initial accumulators: the fill value, else the output's contents.
    SmallVector<Value> inits;
    for (int64_t i = 0; i < c.regM; ++i) {
      for (int64_t j = 0; j < c.regN; ++j) {
        if (fillValue) {
          inits.push_back(in.clone(*fillValue.getDefiningOp())->getResult(0));
          continue;
        }
        Value inside;
        auto [gm, gn] = outIndices(in, i, j, inside);
        auto load = scf::IfOp::create(in, loc, accType, inside, true);
        OpBuilder tb = load.getThenBodyBuilder();
        scf::YieldOp::create(
            tb, loc,
            memref::LoadOp::create(
                tb, loc, out->get(),
                indicesFor(tb, loc, outMap, loopValuesAt(tb, gm, gn)))
                .getResult());
        OpBuilder eb = load.getElseBodyBuilder();
        scf::YieldOp::create(
            eb, loc,
            arith::ConstantOp::create(eb, loc, eb.getZeroAttr(accType))
                .getResult());
        inits.push_back(load.getResult(0));
      }
    }

    int64_t kExtent = shape.extent(shape.k);
    auto kLoop = scf::ForOp::create(in, loc, idx(in, loc, 0),
                                    idx(in, loc, kExtent),
                                    idx(in, loc, c.tileK), inits);
    {
      OpBuilder kb = OpBuilder::atBlockBegin(kLoop.getBody());
      Value kBase = kLoop.getInductionVar();
      bool aKInner = innermostIn(op.getMatchingIndexingMap(lhs), shape.k);
      bool bKInner = innermostIn(op.getMatchingIndexingMap(rhs), shape.k);
      stageTile(kb, loc, c, tid, kBase, mBase, c.tileM, shape, lhs, shape.m,
                tileA, batchValues, aKInner);
      stageTile(kb, loc, c, tid, kBase, nBase, c.tileN, shape, rhs, shape.n,
                tileB, batchValues, bKInner);
      gpu::BarrierOp::create(kb, loc);
      auto inner = scf::ForOp::create(kb, loc, idx(kb, loc, 0),
                                      idx(kb, loc, c.tileK), idx(kb, loc, 1),
                                      kLoop.getRegionIterArgs());
      {
        OpBuilder ib = OpBuilder::atBlockBegin(inner.getBody());
        SmallVector<Value> next =
            computeStep(ib, loc, c, op, lhs, rhs, tileA, tileB,
                        inner.getInductionVar(), tx, ty,
                        inner.getRegionIterArgs());
        scf::YieldOp::create(ib, loc, next);
      }
      // The next k step overwrites the tiles.
      gpu::BarrierOp::create(kb, loc);
      scf::YieldOp::create(kb, loc, inner.getResults());
    }

    for (int64_t i = 0; i < c.regM; ++i) {
      for (int64_t j = 0; j < c.regN; ++j) {
        Value inside;
        auto [gm, gn] = outIndices(in, i, j, inside);
        auto store = scf::IfOp::create(in, loc, inside, false);
        OpBuilder sb = store.getThenBodyBuilder();
        memref::StoreOp::create(
            sb, loc, kLoop.getResult(i * c.regN + j), out->get(),
            indicesFor(sb, loc, outMap, loopValuesAt(sb, gm, gn)));
      }
    }
    gpu::TerminatorOp::create(in, loc);
    op.erase();
    return true;
  }

  void runOnOperation() override {
    if (failed(applyStrategy<linalg::LinalgOp>(
            getOperation(), kGemmSimt,
            [&](linalg::LinalgOp op, const StrategyConfig &config) {
              return rewrite(op, config);
            })))
      signalPassFailure();
  }
};

} // namespace

bool kiln::gemmSimtAccepts(linalg::LinalgOp op) {
  return succeeded(analyze(op));
}
