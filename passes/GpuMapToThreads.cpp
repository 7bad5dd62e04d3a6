//===- GpuMapToThreads.cpp - generic block/thread mapping of loop nests ---===//
#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUMAPTOTHREADS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Ops that may stay on the host side of a GPU kernel function.
bool isHostSide(Operation *op) {
  return isa<arith::ConstantOp, memref::GetGlobalOp, memref::AllocOp,
             memref::AllocaOp,
             memref::DeallocOp, memref::ExpandShapeOp, memref::CollapseShapeOp,
             memref::CastOp, gpu::LaunchOp, func::ReturnOp>(op);
}

struct KilnGpuMapToThreadsPass final
    : kiln::impl::KilnGpuMapToThreadsBase<KilnGpuMapToThreadsPass> {
  using Base::Base;

  /// A gpu.launch of `blocks` x `threads` whose body gets the linear global
  /// thread id from `buildBody` (which must not add the terminator).
  void createLaunch(OpBuilder &b, Location loc, int64_t blocks,
                    int64_t threads,
                    function_ref<void(OpBuilder &, Value)> buildBody) {
    auto idx = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    Value one = idx(1);
    auto launch = gpu::LaunchOp::create(b, loc, idx(blocks), one, one,
                                        idx(threads), one, one);
    OpBuilder inner = OpBuilder::atBlockEnd(&launch.getBody().front());
    Value blockId = launch.getBlockIds().x;
    Value threadId = launch.getThreadIds().x;
    Value blockDim = launch.getBlockSizeX();
    Value id = arith::AddIOp::create(
        inner, loc, arith::MulIOp::create(inner, loc, blockId, blockDim),
        threadId);
    buildBody(inner, id);
    gpu::TerminatorOp::create(inner, loc);
  }

  LogicalResult mapParallel(scf::ParallelOp loop) {
    Location loc = loop.getLoc();
    SmallVector<int64_t> lbs, steps, extents;
    for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(),
                                         loop.getUpperBound(),
                                         loop.getStep())) {
      APInt l, u, s;
      if (!matchPattern(lb, m_ConstantInt(&l)) ||
          !matchPattern(ub, m_ConstantInt(&u)) ||
          !matchPattern(step, m_ConstantInt(&s)) || s.getSExtValue() <= 0)
        return loop.emitError()
               << "the GPU fallback needs static loop bounds; specialize the "
                  "model's symbolic dims with --dim";
      lbs.push_back(l.getSExtValue());
      steps.push_back(s.getSExtValue());
      extents.push_back(std::max<int64_t>(
          0, llvm::divideCeil(u.getSExtValue() - l.getSExtValue(),
                              s.getSExtValue())));
    }
    if (loop.getNumResults() != 0)
      return loop.emitError() << "parallel loops with reductions are not "
                                 "mapped by the GPU fallback";
    int64_t count = 1;
    for (int64_t e : extents)
      count *= e;
    OpBuilder b(loop);
    if (count == 0) {
      loop.erase();
      return success();
    }
    int64_t threads =
        std::min<int64_t>(blockSize, llvm::alignTo(count, 32));
    int64_t blocks = llvm::divideCeil(count, threads);
    createLaunch(b, loc, blocks, threads, [&](OpBuilder &in, Value id) {
      Value inBounds = arith::CmpIOp::create(
          in, loc, arith::CmpIPredicate::ult, id,
          arith::ConstantIndexOp::create(in, loc, count));
      auto guard = scf::IfOp::create(in, loc, inBounds, /*else=*/false);
      OpBuilder body = guard.getThenBodyBuilder();
      IRMapping mapping;
      SmallVector<Value> positions = delinearize(body, loc, id, extents);
      for (auto [i, iv] : llvm::enumerate(loop.getInductionVars())) {
        Value r = positions[i];
        Value scaled = arith::MulIOp::create(
            body, loc, r, arith::ConstantIndexOp::create(body, loc, steps[i]));
        mapping.map(iv, arith::AddIOp::create(
                            body, loc, scaled,
                            arith::ConstantIndexOp::create(body, loc, lbs[i])));
      }
      for (Operation &op : loop.getBody()->without_terminator())
        body.clone(op, mapping);
    });
    loop.erase();
    return success();
  }

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    // Copies bufferization left become loop nests like everything else.
    SmallVector<memref::CopyOp> copies;
    func.walk([&](memref::CopyOp copy) { copies.push_back(copy); });
    for (memref::CopyOp copy : copies) {
      auto type = cast<MemRefType>(copy.getTarget().getType());
      if (!type.hasStaticShape()) {
        copy.emitError() << "the GPU fallback needs static shapes; specialize "
                            "the model's symbolic dims with --dim";
        return signalPassFailure();
      }
      OpBuilder b(copy);
      Location loc = copy.getLoc();
      if (type.getRank() == 0) {
        Value v = memref::LoadOp::create(b, loc, copy.getSource());
        memref::StoreOp::create(b, loc, v, copy.getTarget());
      } else {
        SmallVector<Value> lbs, ubs, steps;
        for (int64_t dim : type.getShape()) {
          lbs.push_back(arith::ConstantIndexOp::create(b, loc, 0));
          ubs.push_back(arith::ConstantIndexOp::create(b, loc, dim));
          steps.push_back(arith::ConstantIndexOp::create(b, loc, 1));
        }
        scf::ParallelOp::create(
            b, loc, lbs, ubs, steps,
            [&](OpBuilder &in, Location l, ValueRange ivs) {
              Value v = memref::LoadOp::create(in, l, copy.getSource(), ivs);
              memref::StoreOp::create(in, l, v, copy.getTarget(), ivs);
            });
      }
      copy.erase();
    }

    SmallVector<scf::ParallelOp> loops;
    for (Operation &op : func.getBody().front())
      if (auto loop = dyn_cast<scf::ParallelOp>(op))
        loops.push_back(loop);
    for (scf::ParallelOp loop : loops)
      if (failed(mapParallel(loop)))
        return signalPassFailure();

    // Runs of remaining device work (rank-0 ops, copies, loops without
    // parallel dims) each go into a single-thread launch, in order.
    Block &block = func.getBody().front();
    SmallVector<SmallVector<Operation *>> runs(1);
    for (Operation &op : block) {
      if (isHostSide(&op)) {
        if (!runs.back().empty())
          runs.emplace_back();
        continue;
      }
      runs.back().push_back(&op);
    }
    for (ArrayRef<Operation *> run : runs) {
      if (run.empty())
        continue;
      for (Operation *op : run)
        for (Value result : op->getResults())
          for (Operation *user : result.getUsers())
            if (!llvm::is_contained(run, user)) {
              op->emitError() << "produces a value used outside its GPU "
                                 "launch; the GPU fallback cannot map it";
              return signalPassFailure();
            }
      OpBuilder b(run.front());
      createLaunch(b, run.front()->getLoc(), 1, 1,
                   [&](OpBuilder &in, Value) {
                     for (Operation *op : run)
                       op->moveBefore(in.getInsertionBlock(),
                                      in.getInsertionBlock()->end());
                   });
    }

    // Small constants became memref globals: each launch reads its own
    // memref.get_global, so outlining copies the global into the kernel's
    // module instead of passing a host address.
    func.walk([](gpu::LaunchOp launch) {
      Block &body = launch.getBody().front();
      llvm::SmallDenseMap<Operation *, Value> cloned;
      launch.getBody().walk([&](Operation *op) {
        for (OpOperand &use : op->getOpOperands()) {
          auto global = use.get().getDefiningOp<memref::GetGlobalOp>();
          if (!global || launch->isProperAncestor(global))
            continue;
          Value &local = cloned[global];
          if (!local) {
            OpBuilder b = OpBuilder::atBlockBegin(&body);
            local = b.clone(*global)->getResult(0);
          }
          use.set(local);
        }
      });
    });
  }
};

} // namespace

SmallVector<Value> kiln::delinearize(OpBuilder &b, Location loc, Value linear,
                                     ArrayRef<int64_t> extents) {
  int64_t stride = 1;
  for (int64_t extent : extents)
    stride *= extent;
  SmallVector<Value> indices;
  for (auto [i, extent] : llvm::enumerate(extents)) {
    stride /= extent;
    Value index = linear;
    if (stride != 1)
      index = arith::DivUIOp::create(
          b, loc, index, arith::ConstantIndexOp::create(b, loc, stride));
    // The outermost index needs no remainder: linear < the product.
    if (i != 0)
      index = arith::RemUIOp::create(
          b, loc, index, arith::ConstantIndexOp::create(b, loc, extent));
    indices.push_back(index);
  }
  return indices;
}
