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
// and buffers are 64-byte aligned. Outer loops may be symbolic (a sequence
// length): their extents are the output's sizes, read on the host side of
// the launch, and the grid is computed from them per run.
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
  if (ShapedType::isDynamic(ranges.back()) || ranges.back() % width ||
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
    return cast<MemRefType>(memref.getType()).getLayout().isIdentity();
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
    bool symbolic = llvm::any_of(ranges, ShapedType::isDynamic);
    int64_t count = 1;
    for (int64_t r : ranges)
      count *= ShapedType::isDynamic(r) ? 1 : r;
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
    // Groups of W elements: each loop's extent (the output's size along it:
    // its map is the identity), the innermost divided by W.
    SmallVector<Value> groupExtents;
    Value groupCount = idx(b, loc, 1);
    for (auto [d, r] : llvm::enumerate(ranges)) {
      Value extent = ShapedType::isDynamic(r)
                         ? memref::DimOp::create(b, loc, out->get(), d).getResult()
                         : idx(b, loc, d + 1 == ranges.size() ? r / kWidth : r);
      groupExtents.push_back(extent);
      groupCount = arith::MulIOp::create(b, loc, groupCount, extent);
    }
    int64_t groups = count / kWidth;
    int64_t threads = symbolic ? kBlock
                               : std::min<int64_t>(kBlock, llvm::alignTo(groups, 32));
    Value one = idx(b, loc, 1);
    Value grid = symbolic ? arith::CeilDivUIOp::create(b, loc, groupCount,
                                                       idx(b, loc, threads))
                                .getResult()
                          : idx(b, loc, llvm::divideCeil(groups, threads));
    Launch built = createLaunch(b, loc, {grid, one, one}, {threads, 1, 1}, config);
    gpu::LaunchOp launch = built.op;
    OpBuilder &in = built.body;
    Value id = arith::AddIOp::create(
        in, loc,
        arith::MulIOp::create(in, loc, launch.getBlockIds().x,
                              idx(in, loc, threads)),
        launch.getThreadIds().x);
    OpBuilder body = guardBelow(in, loc, id, symbolic ? groupCount
                                                      : idx(in, loc, groups));
    gpu::TerminatorOp::create(in, loc);

    // The group's position, innermost fastest.
    SmallVector<Value> ivs(ranges.size());
    Value rest = id;
    for (size_t d = ranges.size(); d-- > 1;) {
      ivs[d] = arith::RemUIOp::create(body, loc, rest, groupExtents[d]);
      rest = arith::DivUIOp::create(body, loc, rest, groupExtents[d]);
    }
    ivs[0] = rest;
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
