//===- RowReduce.cpp - one warp per row, warp-shuffle combine -------------===//
//
// The row-reduction strategy, configured by `warp` (lanes per row: the
// target's warp size) and `rows_per_block`.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUROWREDUCE
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Whether `op` is a row reduction this strategy builds: the last loop is
/// the only reduction, the output is indexed by the others in order, and
/// the body folds f32 values with one add, mul, max or min.
bool accepts(linalg::LinalgOp linalgOp) {
  auto op = dyn_cast<linalg::GenericOp>(linalgOp.getOperation());
  if (!op || op.getNumDpsInits() != 1)
    return false;
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  unsigned loops = ranges.size();
  if (loops < 1 || llvm::any_of(ranges, ShapedType::isDynamic))
    return false;
  auto iterators = op.getIteratorTypesArray();
  for (unsigned i = 0; i + 1 < loops; ++i)
    if (iterators[i] != utils::IteratorType::parallel)
      return false;
  if (iterators.back() != utils::IteratorType::reduction)
    return false;
  AffineMap outMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (outMap.getNumResults() != loops - 1)
    return false;
  for (unsigned i = 0; i + 1 < loops; ++i)
    if (outMap.getResult(i) != getAffineDimExpr(i, op.getContext()))
      return false;
  for (OpOperand *input : op.getDpsInputOperands())
    for (AffineExpr e : op.getMatchingIndexingMap(input).getResults())
      if (!isa<AffineDimExpr, AffineConstantExpr>(e))
        return false;
  // Warp shuffles move 32-bit values; the body is cloned into the kernel.
  Type elementType = op.getBody()->getArguments().back().getType();
  return matchCombiner(op) && elementType.isF32() && hasScalarBody(op);
}

struct KilnGpuRowReducePass final
    : kiln::impl::KilnGpuRowReduceBase<KilnGpuRowReducePass> {
  FailureOr<bool> rewrite(linalg::GenericOp op, const StrategyConfig &config) {
    if (!op.hasPureBufferSemantics() || !accepts(op))
      return false;
    FailureOr<int64_t> warpSize = config.getInt("warp");
    FailureOr<int64_t> rowsPerBlock = config.getInt("rows_per_block");
    if (failed(warpSize) || failed(rowsPerBlock))
      return failure();
    const int64_t kWarp = *warpSize, kRowsPerBlock = *rowsPerBlock;
    if (!llvm::isPowerOf2_64(kWarp))
      return config.error() << "'warp' must be a power of two (the shuffle "
                               "butterfly halves it)";
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    unsigned loops = ranges.size();
    std::optional<Combiner> combiner = matchCombiner(op);
    Type elementType = op.getBody()->getArguments().back().getType();

    int64_t rows = 1;
    for (unsigned i = 0; i + 1 < loops; ++i)
      rows *= ranges[i];
    int64_t reduction = ranges.back();
    Location loc = op.getLoc();
    OpBuilder b(op);
    auto idx = [&](OpBuilder &builder, int64_t v) {
      return arith::ConstantIndexOp::create(builder, loc, v).getResult();
    };
    Value one = idx(b, 1);
    Launch built =
        createLaunch(b, loc, {idx(b, llvm::divideCeil(rows, kRowsPerBlock)), one, one},
                     {kRowsPerBlock * kWarp, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Value tid = launch.getThreadIds().x;
    Value lane = arith::RemUIOp::create(in, loc, tid, idx(in, kWarp));
    Value warp = arith::DivUIOp::create(in, loc, tid, idx(in, kWarp));
    Value row = arith::AddIOp::create(
        in, loc,
        arith::MulIOp::create(in, loc, launch.getBlockIds().x,
                              idx(in, kRowsPerBlock)),
        warp);
    // Warp-uniform guard: whole warps skip, so the shuffles below always
    // run with all 32 lanes.
    OpBuilder body = guardBelow(in, loc, row, idx(in, rows));
    SmallVector<Value> ivs = delinearize(
        body, loc, row, ArrayRef<int64_t>(ranges).drop_back());
    // Each lane folds every 32nd element of the row.
    Value init = identityOf(body, loc, combiner->op, elementType);
    auto loop = scf::ForOp::create(body, loc, lane, idx(body, reduction),
                                   idx(body, kWarp), ValueRange{init});
    {
      OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
      // The row's indices, then the reduction loop's.
      SmallVector<Value> loopValues(ivs);
      loopValues.push_back(loop.getInductionVar());
      IRMapping mapping;
      for (OpOperand *input : op.getDpsInputOperands()) {
        Value loaded = memref::LoadOp::create(
            lb, loc, input->get(),
            indicesFor(lb, loc, op.getMatchingIndexingMap(input), loopValues));
        mapping.map(op.getMatchingBlockArgument(input), loaded);
      }
      for (Operation &inner : op.getBody()->without_terminator())
        if (&inner != combiner->op)
          lb.clone(inner, mapping);
      Value next =
          combineWith(lb, loc, combiner->op, loop.getRegionIterArgs()[0],
                      mapping.lookupOrDefault(combiner->contribution));
      scf::YieldOp::create(lb, loc, next);
    }
    // Butterfly: after log2(32) xor shuffles every lane holds the total.
    Value partial = loop.getResult(0);
    Value width = arith::ConstantIntOp::create(body, loc, kWarp, 32);
    for (int64_t offset = kWarp / 2; offset >= 1; offset /= 2) {
      auto shuffle = gpu::ShuffleOp::create(
          body, loc, partial,
          arith::ConstantIntOp::create(body, loc, offset, 32), width,
          gpu::ShuffleMode::XOR);
      partial = combineWith(body, loc, combiner->op, partial,
                            shuffle.getShuffleResult());
    }
    Value isLeader = arith::CmpIOp::create(
        body, loc, arith::CmpIPredicate::eq, lane, idx(body, 0));
    auto store = scf::IfOp::create(body, loc, isLeader, /*else=*/false);
    {
      OpBuilder sb = store.getThenBodyBuilder();
      Value out = op.getDpsInitOperand(0)->get();
      SmallVector<Value> outIndices(ivs.begin(), ivs.end());
      Value initial = memref::LoadOp::create(sb, loc, out, outIndices);
      Value total = combineWith(sb, loc, combiner->op, initial, partial);
      memref::StoreOp::create(sb, loc, total, out, outIndices);
    }
    gpu::TerminatorOp::create(in, loc);
    op.erase();
    return true;
  }

  void runOnOperation() override {
    if (failed(applyStrategy<linalg::GenericOp>(
            getOperation(), kRowReduce,
            [&](linalg::GenericOp op, const StrategyConfig &config) {
              return rewrite(op, config);
            })))
      signalPassFailure();
  }
};

} // namespace

bool kiln::rowReduceAccepts(linalg::LinalgOp op) { return accepts(op); }
