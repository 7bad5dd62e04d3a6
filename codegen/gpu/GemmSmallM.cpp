//===- GemmSmallM.cpp - GEMM with few rows: stream the weights ------------===//
//
// The GEMM strategy for M <= 16 (decoding a token, or a few): the product
// is bound by reading B (the weights) once, not by arithmetic, so the
// kernel is built to stream B at the memory's bandwidth. Configured by
// `warps` (per block) and `columns` (per warp):
//
// - B is read K-innermost ([N, K]: kiln-transpose-unaligned-weights stores
//   the weights of small-M products that way at compile time); each warp
//   owns `columns` output columns, and its lanes walk K in 16-byte chunks
//   (8 f16/bf16 or 4 f32 elements), so a warp's load of one column is 512
//   contiguous bytes and every byte of B is read exactly once;
// - the lanes read the same chunks of A's M rows (A is small and stays in
//   L1/L2), multiply in f32 and accumulate M x columns partial sums in
//   registers;
// - an xor-shuffle butterfly sums the 32 lanes' partials, and lane m
//   stores row m of each column, through the fused epilogue when there is
//   one (bias, activation, residual, cast).
//
// Grid: x over column groups of warps * columns, z over the batch. There
// is no shared memory and no barrier; loads in flight per SM come from the
// warps and the columns per warp.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUGEMMSMALLM
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWarp = 32;
constexpr int64_t kChunkBytes = 16;
constexpr int64_t kMaxRows = 16;

/// The loops of a small-M contraction by role.
struct SmallMShape {
  SmallVector<unsigned> mLoops;  // read by A and the output (linearized M)
  SmallVector<unsigned> batch;   // read by the output and both inputs
  unsigned n = 0, k = 0;
  SmallVector<int64_t> ranges;
  OpOperand *a = nullptr, *b = nullptr;
  int64_t chunk = 0;  // elements per 16-byte chunk
  bool decoded = false;  // B is decoded from packed weights as it is read
  int64_t rows() const {
    int64_t p = 1;
    for (unsigned d : mLoops)
      p *= ranges[d];
    return p;
  }
  int64_t batchCount() const {
    int64_t p = 1;
    for (unsigned d : batch)
      p *= ranges[d];
    return p;
  }
};

FailureOr<SmallMShape> analyze(linalg::LinalgOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 1 || !isMultiplyAccumulate(op))
    return failure();
  SmallMShape shape;
  shape.ranges = op.getStaticLoopRanges();
  if (llvm::any_of(shape.ranges, ShapedType::isDynamic))
    return failure();
  for (AffineMap map : op.getIndexingMapsArray())
    for (AffineExpr e : map.getResults()) {
      auto c = dyn_cast<AffineConstantExpr>(e);
      if (!isa<AffineDimExpr>(e) && !(c && c.getValue() == 0))
        return failure();
    }
  for (unsigned d = 0; d < shape.ranges.size(); ++d)
    if (op.getIteratorTypesArray()[d] == utils::IteratorType::reduction)
      shape.k = d;
  OpOperand *x = op.getDpsInputOperand(0), *y = op.getDpsInputOperand(1);
  AffineMap out = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (!out.isProjectedPermutation() || out.isFunctionOfDim(shape.k))
    return failure();
  // Both inputs K-innermost, but for weights decoded as they are read
  // (kiln-fuse-weight-decode), whose layout is the packed one.
  for (OpOperand *input : {x, y})
    if (!isDecodedOperand(input) &&
        innermostLoop(op.getMatchingIndexingMap(input)) != shape.k)
      return failure();
  auto reads = [&](OpOperand *operand, unsigned d) {
    return op.getMatchingIndexingMap(operand).isFunctionOfDim(d);
  };
  // B is the input with exactly one loop of its own (N); A's own loops are
  // M. With both having one, the larger is N (the weights).
  auto own = [&](OpOperand *operand, OpOperand *other) {
    SmallVector<unsigned> loops;
    for (unsigned d = 0; d < shape.ranges.size(); ++d)
      if (d != shape.k && reads(operand, d) && !reads(other, d))
        loops.push_back(d);
    return loops;
  };
  SmallVector<unsigned> xOwn = own(x, y), yOwn = own(y, x);
  auto rows = [&](ArrayRef<unsigned> loops) {
    int64_t p = 1;
    for (unsigned d : loops)
      p *= shape.ranges[d];
    return p;
  };
  bool yIsB = yOwn.size() == 1 &&
              (xOwn.size() != 1 || shape.ranges[yOwn[0]] >= rows(xOwn));
  bool xIsB = !yIsB && xOwn.size() == 1;
  if (!yIsB && !xIsB)
    return failure();
  shape.a = yIsB ? x : y;
  shape.b = yIsB ? y : x;
  shape.n = yIsB ? yOwn[0] : xOwn[0];
  shape.mLoops = yIsB ? xOwn : yOwn;
  if (rows(shape.mLoops) > kMaxRows || shape.ranges[shape.n] < 2)
    return failure();
  // Every loop the output reads is M, N or a batch loop both inputs read
  // (or broadcast with a constant 0); the output reads all of them.
  for (unsigned d = 0; d < shape.ranges.size(); ++d) {
    if (d == shape.k || d == shape.n || llvm::is_contained(shape.mLoops, d))
      continue;
    shape.batch.push_back(d);
  }
  for (unsigned d = 0; d < shape.ranges.size(); ++d)
    if (d != shape.k && !out.isFunctionOfDim(d))
      return failure();
  Type aType = getElementTypeOrSelf(shape.a->get().getType());
  Type bType = getElementTypeOrSelf(shape.b->get().getType());
  Type cType = getElementTypeOrSelf(op.getDpsInitOperand(0)->get().getType());
  if (aType != bType || !(aType.isF16() || aType.isBF16() || aType.isF32()) ||
      !cType.isF32())
    return failure();
  shape.chunk = kChunkBytes / (aType.getIntOrFloatBitWidth() / 8);
  shape.decoded = isDecodedOperand(shape.b);
  if (shape.ranges[shape.k] % shape.chunk || isDecodedOperand(shape.a) ||
      !chunkable(shape.a->get().getType(), shape.chunk) ||
      (!shape.decoded && !chunkable(shape.b->get().getType(), shape.chunk)))
    return failure();
  return shape;
}

struct KilnGpuGemmSmallMPass final
    : kiln::impl::KilnGpuGemmSmallMBase<KilnGpuGemmSmallMPass> {
  using Base::Base;


  FailureOr<bool> rewrite(linalg::LinalgOp op, const StrategyConfig &config,
                          FusedEpilogues &fused) {
    if (!op.hasPureBufferSemantics())
      return false;
    FailureOr<SmallMShape> analyzed = analyze(op);
    if (failed(analyzed))
      return false;
    const SmallMShape &shape = *analyzed;
    FailureOr<int64_t> warps = config.getInt("warps");
    FailureOr<int64_t> columns = config.getInt("columns");
    if (failed(warps) || failed(columns))
      return failure();
    if (*warps < 1 || *warps > 32 || *columns < 1 || *columns > 8)
      return config.error() << "'warps' must be 1..32 and 'columns' 1..8";
    // The accumulators start at a constant fill (the importer's zero);
    // anything else is left to the generic mapping.
    auto fill = dyn_cast_or_null<linalg::FillOp>(op->getPrevNode());
    OpOperand *out = op.getDpsInitOperand(0);
    if (!fill || fill.getOutputs().front() != out->get() ||
        !fill.getInputs().front().getDefiningOp<arith::ConstantOp>())
      return false;
    Value fillValue = fill.getInputs().front();
    fill.erase();
    linalg::GenericOp epilogue = fusedEpilogue(op);
    Value temporary = out->get();
    linalg::GenericOp decode =
        shape.decoded ? decodedOperandProducer(shape.b) : nullptr;

    Location loc = op.getLoc();
    OpBuilder b(op);
    int64_t perBlock = *warps * *columns;
    int64_t N = shape.ranges[shape.n], K = shape.ranges[shape.k];
    int64_t M = shape.rows(), batchCount = shape.batchCount();
    int64_t groups = llvm::divideCeil(N, perBlock);
    if (batchCount > 65535)
      return config.error() << "a batch of " << batchCount
                            << " exceeds the grid's z limit";
    Launch built = createLaunch(
        b, loc,
        {constantIndex(b, loc, groups), constantIndex(b, loc, 1),
         constantIndex(b, loc, batchCount)},
        {kWarp * *warps, 1, 1}, config);
    OpBuilder &in = built.body;
    auto c = [&](int64_t v) { return constantIndex(in, loc, v); };
    Value tid = built.op.getThreadIds().x;
    Value lane = arith::RemUIOp::create(in, loc, tid, c(kWarp));
    Value warp = arith::DivUIOp::create(in, loc, tid, c(kWarp));
    Value nBase = arith::AddIOp::create(
        in, loc, arith::MulIOp::create(in, loc, built.op.getBlockIds().x, c(perBlock)),
        arith::MulIOp::create(in, loc, warp, c(*columns)));
    SmallVector<int64_t> batchExtents, mExtents;
    for (unsigned d : shape.batch)
      batchExtents.push_back(shape.ranges[d]);
    for (unsigned d : shape.mLoops)
      mExtents.push_back(shape.ranges[d]);
    SmallVector<Value> batchValues =
        delinearize(in, loc, built.op.getBlockIds().z, batchExtents);

    // Column j of this warp, whether it exists, and a safe address for it.
    SmallVector<Value> cols, valid, colAddr;
    for (int64_t j = 0; j < *columns; ++j) {
      Value n = arith::AddIOp::create(in, loc, nBase, c(j));
      Value inside = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult,
                                           n, c(N));
      cols.push_back(n);
      valid.push_back(inside);
      colAddr.push_back(arith::SelectOp::create(in, loc, inside, n, c(0)));
    }
    // The loop values of output row `row` (0 <= row < M) and column `n`.
    auto loopsAt = [&](OpBuilder &lb, int64_t row, Value n, Value k) {
      SmallVector<Value> loops(shape.ranges.size());
      for (auto [d, v] : llvm::zip(shape.batch, batchValues))
        loops[d] = v;
      int64_t rest = row;
      for (int64_t i = mExtents.size() - 1; i >= 0; --i) {
        loops[shape.mLoops[i]] = constantIndex(lb, loc, rest % mExtents[i]);
        rest /= mExtents[i];
      }
      loops[shape.n] = n;
      loops[shape.k] = k;
      return loops;
    };

    Type element = getElementTypeOrSelf(shape.a->get().getType());
    Type f32 = in.getF32Type();
    auto chunkType = VectorType::get({shape.chunk}, element);
    Value start = arith::ConstantOp::create(
        in, loc, cast<TypedAttr>(
                     fillValue.getDefiningOp<arith::ConstantOp>().getValue()));
    SmallVector<Value> inits(M * *columns, start);
    auto loop = scf::ForOp::create(
        in, loc, arith::MulIOp::create(in, loc, lane, c(shape.chunk)), c(K),
        c(kWarp * shape.chunk), inits);
    {
      OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
      Value k = loop.getInductionVar();
      AffineMap aMap = op.getMatchingIndexingMap(shape.a);
      AffineMap bMap = op.getMatchingIndexingMap(shape.b);
      auto scalar = [&](Value chunk, int64_t e) -> Value {
        Value v = vector::ExtractOp::create(lb, loc, chunk, ArrayRef<int64_t>{e});
        return element.isF32() ? v : arith::ExtFOp::create(lb, loc, f32, v);
      };
      // All loads first: the column chunks of B (the stream), then A's rows.
      // Decoded weights: each element of the chunk from the packed bytes,
      // its scale and zero point (the decoding's body, at its indices).
      SmallVector<Value> bChunks, aChunks;
      SmallVector<SmallVector<Value>> bDecoded;
      for (int64_t j = 0; j < *columns; ++j) {
        if (decode) {
          SmallVector<Value> values;
          for (int64_t e = 0; e < shape.chunk; ++e) {
            Value ke = alignedIndex(lb, loc, k, shape.chunk, e);
            Value v = evaluateDecoded(
                lb, loc, decode,
                indicesFor(lb, loc, bMap, loopsAt(lb, 0, colAddr[j], ke)));
            values.push_back(element.isF32() ? v
                                             : arith::ExtFOp::create(lb, loc, f32, v));
          }
          bDecoded.push_back(values);
          continue;
        }
        bChunks.push_back(vector::LoadOp::create(
            lb, loc, chunkType, shape.b->get(),
            indicesFor(lb, loc, bMap, loopsAt(lb, 0, colAddr[j], k)),
            /*nontemporal=*/false, llvm::MaybeAlign(kChunkBytes)));
      }
      for (int64_t row = 0; row < M; ++row)
        aChunks.push_back(vector::LoadOp::create(
            lb, loc, chunkType, shape.a->get(),
            indicesFor(lb, loc, aMap, loopsAt(lb, row, c(0), k)),
            /*nontemporal=*/false, llvm::MaybeAlign(kChunkBytes)));
      SmallVector<Value> accs(loop.getRegionIterArgs());
      for (int64_t row = 0; row < M; ++row)
        for (int64_t j = 0; j < *columns; ++j) {
          Value &acc = accs[row * *columns + j];
          for (int64_t e = 0; e < shape.chunk; ++e) {
            Value x = scalar(aChunks[row], e);
            Value y = decode ? bDecoded[j][e] : scalar(bChunks[j], e);
            acc = arith::AddFOp::create(
                lb, loc, acc, arith::MulFOp::create(lb, loc, x, y));
          }
        }
      scf::YieldOp::create(lb, loc, accs);
    }

    // Butterfly: after log2(32) xor shuffles every lane holds each total.
    Value width = arith::ConstantIntOp::create(in, loc, kWarp, 32);
    SmallVector<Value> totals(loop.getResults());
    for (int64_t offset = kWarp / 2; offset >= 1; offset /= 2) {
      Value step = arith::ConstantIntOp::create(in, loc, offset, 32);
      for (Value &total : totals)
        total = arith::AddFOp::create(
            in, loc, total,
            gpu::ShuffleOp::create(in, loc, total, step, width,
                                   gpu::ShuffleMode::XOR)
                .getShuffleResult());
    }
    // Lane `row` stores row `row` of each column.
    AffineMap outMap = op.getMatchingIndexingMap(out);
    Value dest = epilogue ? epilogue.getDpsInitOperand(0)->get() : out->get();
    for (int64_t row = 0; row < M; ++row)
      for (int64_t j = 0; j < *columns; ++j) {
        Value mine = arith::AndIOp::create(
            in, loc, valid[j],
            arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq, lane,
                                  c(row)));
        OpBuilder sb =
            scf::IfOp::create(in, loc, mine, false).getThenBodyBuilder();
        SmallVector<Value> loops = loopsAt(sb, row, cols[j], Value());
        Value value = totals[row * *columns + j];
        if (!epilogue) {
          memref::StoreOp::create(sb, loc, value, dest,
                                  indicesFor(sb, loc, outMap, loops));
          continue;
        }
        // The epilogue's loops are the output's dims, in order.
        SmallVector<Value> outLoops;
        for (unsigned i = 0; i < outMap.getNumResults(); ++i)
          outLoops.push_back(loops[outMap.getDimPosition(i)]);
        Value finished =
            applyEpilogue(sb, loc, epilogue, temporary, outLoops, {value})
                .front();
        memref::StoreOp::create(sb, loc, finished, dest, outLoops);
      }
    gpu::TerminatorOp::create(in, loc);
    op.erase();
    if (decode)
      eraseDecoded(decode);
    if (epilogue)
      fused.push_back({epilogue, temporary});
    return true;
  }

  void runOnOperation() override {
    if (failed(applyGemmStrategy(
            getOperation(), kGemmSmallM,
            [&](linalg::LinalgOp op, const StrategyConfig &config,
                FusedEpilogues &fused) { return rewrite(op, config, fused); })))
      return signalPassFailure();
  }
};

} // namespace

std::optional<std::array<int64_t, 3>>
kiln::gemmSmallMShape(linalg::LinalgOp op) {
  FailureOr<SmallMShape> shape = analyze(op);
  if (failed(shape))
    return std::nullopt;
  return std::array<int64_t, 3>{shape->rows(), shape->ranges[shape->n],
                                shape->batchCount()};
}
