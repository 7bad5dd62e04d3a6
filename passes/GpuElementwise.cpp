//===- GpuElementwise.cpp - elementwise chains with 128-bit accesses ------===//
//
// The elementwise strategy: a fused elementwise/broadcast generic where
// every thread produces 4 consecutive elements along the innermost loop.
// Operands that walk that loop contiguously are read with one aligned
// vector load (ld.v4.f32: 128 bits for 32-bit types), operands broadcast
// along it are read once and reused, and anything else (a transposed
// operand) is gathered element by element. The result leaves in one vector
// store. Rows start aligned because the innermost extent is a multiple of 4
// and buffers are 64-byte aligned.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUELEMENTWISE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

constexpr int64_t kWidth = 4;
constexpr int64_t kBlock = 256;

enum class Access { Vector, Splat, Gather };

struct KilnGpuElementwisePass final
    : kiln::impl::KilnGpuElementwiseBase<KilnGpuElementwisePass> {
  static Value idx(OpBuilder &b, Location loc, int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v);
  }

  static bool hasIdentityLayout(Value memref) {
    auto type = cast<MemRefType>(memref.getType());
    return type.getLayout().isIdentity() && type.hasStaticShape();
  }

  /// How an operand indexed by `map` is read along innermost loop `last`.
  static std::optional<Access> accessFor(AffineMap map, Value memref,
                                         unsigned last) {
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
    if (d && d.getPosition() == last && hasIdentityLayout(memref))
      return Access::Vector;
    return Access::Gather;
  }

  static SmallVector<Value> indicesFor(OpBuilder &b, Location loc,
                                       AffineMap map, ArrayRef<Value> ivs) {
    SmallVector<Value> indices;
    for (AffineExpr e : map.getResults()) {
      if (auto d = dyn_cast<AffineDimExpr>(e))
        indices.push_back(ivs[d.getPosition()]);
      else
        indices.push_back(
            idx(b, loc, cast<AffineConstantExpr>(e).getValue()));
    }
    return indices;
  }

  LogicalResult rewrite(linalg::GenericOp op) {
    if (!op.hasPureBufferSemantics() || op.getNumDpsInits() != 1 ||
        op.getNumParallelLoops() != op.getNumLoops() || op.getNumLoops() == 0)
      return failure();
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    if (llvm::any_of(ranges, ShapedType::isDynamic) ||
        ranges.back() % kWidth != 0)
      return failure();
    int64_t count = 1;
    for (int64_t r : ranges)
      count *= r;
    if (count == 0)
      return failure();
    OpOperand *out = op.getDpsInitOperand(0);
    if (!op.getMatchingIndexingMap(out).isIdentity() ||
        !hasIdentityLayout(out->get()))
      return failure();
    unsigned last = op.getNumLoops() - 1;
    SmallVector<std::pair<OpOperand *, Access>> reads;
    for (OpOperand &operand : op->getOpOperands()) {
      Type elementType = getElementTypeOrSelf(operand.get().getType());
      if (!elementType.isIntOrFloat() || elementType.isInteger(1))
        return failure();
      if (&operand == out &&
          op.getMatchingBlockArgument(out).use_empty())
        continue;
      std::optional<Access> access =
          accessFor(op.getMatchingIndexingMap(&operand), operand.get(), last);
      if (!access)
        return failure();
      reads.emplace_back(&operand, *access);
    }

    Location loc = op.getLoc();
    OpBuilder b(op);
    int64_t groups = count / kWidth;
    int64_t threads = std::min<int64_t>(kBlock, llvm::alignTo(groups, 32));
    Value one = idx(b, loc, 1);
    auto launch = gpu::LaunchOp::create(
        b, loc, idx(b, loc, llvm::divideCeil(groups, threads)), one, one,
        idx(b, loc, threads), one, one);
    OpBuilder in = OpBuilder::atBlockEnd(&launch.getBody().front());
    Value id = arith::AddIOp::create(
        in, loc,
        arith::MulIOp::create(in, loc, launch.getBlockIds().x,
                              idx(in, loc, threads)),
        launch.getThreadIds().x);
    auto guard = scf::IfOp::create(
        in, loc,
        arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult, id,
                              idx(in, loc, groups)),
        /*withElseRegion=*/false);
    gpu::TerminatorOp::create(in, loc);

    OpBuilder body = guard.getThenBodyBuilder();
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
    auto vectorAlignment = [](Type elementType) {
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
    return success();
  }

  void runOnOperation() override {
    rewriteKernelOps<linalg::GenericOp>(getOperation(),
                         [&](linalg::GenericOp op) { return rewrite(op); });
  }
};

} // namespace
