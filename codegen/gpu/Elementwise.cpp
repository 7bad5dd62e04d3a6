//===- Elementwise.cpp - elementwise chains with vector accesses ----------===//
//
// The elementwise strategy, configured by `vector_width` (W) and `threads`
// per block: a fused elementwise/broadcast generic where every thread
// produces W consecutive elements along the innermost loop (the default
// selection: 4, which is 128 bits of f32).
// Operands that walk that loop contiguously are read with one aligned
// vector load (ld.v4.f32: 128 bits for 32-bit types), operands broadcast
// along it are read once and reused, and anything else (a transposed
// operand) is gathered element by element. The result leaves in one vector
// store. Rows start aligned because the innermost extent is a multiple of W
// and buffers are 64-byte aligned.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUELEMENTWISE
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

enum class Access { Vector, Splat, Gather };

/// How an operand indexed by `map` is read along innermost loop `last`
/// (a vector read needs the identity layout, checked on buffers).
std::optional<Access> accessFor(AffineMap map, unsigned last) {
  bool usesLast = false;
  for (AffineExpr e : map.getResults()) {
    if (auto d = dyn_cast<AffineDimExpr>(e))
      usesLast |= d.getPosition() == last;
    else if (!isa<AffineConstantExpr>(e))
      return std::nullopt;
  }
  if (!usesLast)
    return Access::Splat;
  auto d = dyn_cast<AffineDimExpr>(map.getResults().back());
  return d && d.getPosition() == last ? Access::Vector : Access::Gather;
}

/// The shape checks, on tensors or buffers.
bool accepts(linalg::LinalgOp op, int64_t width) {
  if (!isa<linalg::GenericOp>(op) || op.getNumDpsInits() != 1 ||
      op.getNumParallelLoops() != op.getNumLoops() || op.getNumLoops() == 0)
    return false;
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  if (llvm::any_of(ranges, ShapedType::isDynamic) || ranges.back() % width ||
      llvm::is_contained(ranges, 0))
    return false;
  OpOperand *out = op.getDpsInitOperand(0);
  if (!op.getMatchingIndexingMap(out).isIdentity())
    return false;
  unsigned last = op.getNumLoops() - 1;
  for (OpOperand &operand : op->getOpOperands()) {
    Type elementType = getElementTypeOrSelf(operand.get().getType());
    if (!elementType.isIntOrFloat() || elementType.isInteger(1))
      return false;
    if (&operand != out && !accessFor(op.getMatchingIndexingMap(&operand), last))
      return false;
  }
  return true;
}

struct KilnGpuElementwisePass final
    : kiln::impl::KilnGpuElementwiseBase<KilnGpuElementwisePass> {
  static Value idx(OpBuilder &b, Location loc, int64_t v) {
    return constantIndex(b, loc, v);
  }

  static bool hasIdentityLayout(Value memref) {
    auto type = cast<MemRefType>(memref.getType());
    return type.getLayout().isIdentity() && type.hasStaticShape();
  }

  FailureOr<bool> rewrite(linalg::GenericOp op, const StrategyConfig &config) {
    FailureOr<int64_t> width = config.getInt("vector_width");
    FailureOr<int64_t> block = config.getInt("threads");
    if (failed(width) || failed(block))
      return failure();
    const int64_t kWidth = *width, kBlock = *block;
    if (!op.hasPureBufferSemantics() || !accepts(op, kWidth))
      return false;
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    int64_t count = 1;
    for (int64_t r : ranges)
      count *= r;
    OpOperand *out = op.getDpsInitOperand(0);
    if (!hasIdentityLayout(out->get()))
      return false;
    unsigned last = op.getNumLoops() - 1;
    SmallVector<std::pair<OpOperand *, Access>> reads;
    for (OpOperand &operand : op->getOpOperands()) {
      if (&operand == out &&
          op.getMatchingBlockArgument(out).use_empty())
        continue;
      Access access = *accessFor(op.getMatchingIndexingMap(&operand), last);
      if (access == Access::Vector && !hasIdentityLayout(operand.get()))
        access = Access::Gather;
      reads.emplace_back(&operand, access);
    }

    Location loc = op.getLoc();
    OpBuilder b(op);
    int64_t groups = count / kWidth;
    int64_t threads = std::min<int64_t>(kBlock, llvm::alignTo(groups, 32));
    Value one = idx(b, loc, 1);
    Launch built =
        createLaunch(b, loc, {idx(b, loc, llvm::divideCeil(groups, threads)), one, one},
                     {threads, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Value id = arith::AddIOp::create(
        in, loc,
        arith::MulIOp::create(in, loc, launch.getBlockIds().x,
                              idx(in, loc, threads)),
        launch.getThreadIds().x);
    OpBuilder body = guardBelow(in, loc, id, idx(in, loc, groups));
    gpu::TerminatorOp::create(in, loc);

    SmallVector<int64_t> groupExtents(ranges);
    groupExtents.back() /= kWidth;
    SmallVector<Value> ivs = delinearize(body, loc, id, groupExtents);
    ivs.back() = arith::MulIOp::create(body, loc, ivs.back(),
                                       idx(body, loc, kWidth));
    auto laneIvs = [&](int64_t lane) {
      SmallVector<Value> shifted(ivs);
      if (lane)
        shifted.back() = arith::AddIOp::create(body, loc, ivs.back(),
                                               idx(body, loc, lane));
      return shifted;
    };
    auto vectorAlignment = [&](Type elementType) {
      return std::min<int64_t>(16, kWidth * elementType.getIntOrFloatBitWidth() / 8);
    };

    // Every lane's value of every block argument that is read.
    SmallVector<IRMapping> mappings(kWidth);
    for (auto [operand, access] : reads) {
      AffineMap map = op.getMatchingIndexingMap(operand);
      BlockArgument arg = op.getMatchingBlockArgument(operand);
      Type elementType = getElementTypeOrSelf(operand->get().getType());
      switch (access) {
      case Access::Vector: {
        auto vector = vector::LoadOp::create(
            body, loc, VectorType::get({kWidth}, elementType), operand->get(),
            indicesFor(body, loc, map, ivs));
        vector.setAlignment(vectorAlignment(elementType));
        for (int64_t lane = 0; lane < kWidth; ++lane)
          mappings[lane].map(arg, vector::ExtractOp::create(
                                      body, loc, vector, ArrayRef<int64_t>{lane}));
        break;
      }
      case Access::Splat: {
        Value v = memref::LoadOp::create(body, loc, operand->get(),
                                         indicesFor(body, loc, map, ivs));
        for (int64_t lane = 0; lane < kWidth; ++lane)
          mappings[lane].map(arg, v);
        break;
      }
      case Access::Gather:
        for (int64_t lane = 0; lane < kWidth; ++lane)
          mappings[lane].map(arg, memref::LoadOp::create(
                                      body, loc, operand->get(),
                                      indicesFor(body, loc, map, laneIvs(lane))));
        break;
      }
    }

    SmallVector<Value> results;
    Block *payload = op.getBody();
    for (int64_t lane = 0; lane < kWidth; ++lane) {
      SmallVector<Value> positions = laneIvs(lane);
      for (Operation &inner : payload->without_terminator()) {
        if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
          mappings[lane].map(index.getResult(), positions[index.getDim()]);
          continue;
        }
        body.clone(inner, mappings[lane]);
      }
      results.push_back(
          mappings[lane].lookupOrDefault(payload->getTerminator()->getOperand(0)));
    }
    Type outType = getElementTypeOrSelf(out->get().getType());
    Value packed = vector::FromElementsOp::create(
        body, loc, VectorType::get({kWidth}, outType), results);
    auto store = vector::StoreOp::create(body, loc, packed, out->get(), ivs);
    store.setAlignment(vectorAlignment(outType));
    op.erase();
    return true;
  }

  void runOnOperation() override {
    if (failed(applyStrategy<linalg::GenericOp>(
            getOperation(), kElementwise,
            [&](linalg::GenericOp op, const StrategyConfig &config) {
              return rewrite(op, config);
            })))
      signalPassFailure();
  }
};

} // namespace

bool kiln::elementwiseAccepts(linalg::LinalgOp op, int64_t vectorWidth) {
  return accepts(op, vectorWidth);
}
