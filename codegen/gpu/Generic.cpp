//===- Generic.cpp - generic block/thread mapping of loop nests -----------===//
//
// The generic strategy: every dispatch can take it, and it takes whatever
// the other strategies left in their kernels. Configured by `threads` (per
// block).
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPUMAPTOTHREADS
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// Ops that may stay on the host side of a GPU kernel function: buffers and
/// their views, and the index arithmetic of symbolic dims (sizes, grids).
/// `onHost` tells whether an earlier op stays on the host side.
bool isHostSide(Operation *op,
                llvm::function_ref<bool(Operation *)> onHost) {
  if (isa<arith::ConstantOp, memref::GetGlobalOp, memref::AllocOp,
          memref::AllocaOp, memref::DeallocOp, memref::ExpandShapeOp,
          memref::CollapseShapeOp, memref::CastOp, memref::ReinterpretCastOp,
          memref::SubViewOp, memref::DimOp, gpu::LaunchOp, func::ReturnOp,
          nvgpu::TmaCreateDescriptorOp>(op))
    return true;
  // Scalars computed from sizes (kiln-gpu-sink-views moves the non-index
  // ones into the launches that read them); not scalars computed from
  // device work (a value loaded from a buffer).
  if (op->getNumResults() != 1 ||
      !op->getResult(0).getType().isIntOrIndexOrFloat() || !isPure(op))
    return false;
  return llvm::all_of(op->getOperands(), [&](Value operand) {
    Operation *def = operand.getDefiningOp();
    return !def || onHost(def);
  });
}

struct KilnGpuMapToThreadsPass final
    : kiln::impl::KilnGpuMapToThreadsBase<KilnGpuMapToThreadsPass> {
  using Base::Base;

  /// A gpu.launch of `blocks` x `threads` whose body gets the linear global
  /// thread id from `buildBody` (which must not add the terminator).
  void createLaunch(OpBuilder &b, Location loc, Value blocks, int64_t threads,
                    function_ref<void(OpBuilder &, Value)> buildBody) {
    auto idx = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    Value one = idx(1);
    auto launch = gpu::LaunchOp::create(b, loc, blocks, one, one,
                                        idx(threads), one, one);
    launch->setAttr(kConfigAttrName,
                    threads == threadsPerBlock || !launchConfig
                        ? launchConfig
                        : b.getDictionaryAttr(
                              {b.getNamedAttr("strategy",
                                              b.getStringAttr(kGeneric)),
                               b.getNamedAttr("threads",
                                              b.getI64IntegerAttr(threads))}));
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
  void createLaunch(OpBuilder &b, Location loc, int64_t blocks,
                    int64_t threads,
                    function_ref<void(OpBuilder &, Value)> buildBody) {
    createLaunch(b, loc, arith::ConstantIndexOp::create(b, loc, blocks),
                 threads, buildBody);
  }

  /// Maps a parallel loop nest onto a 1-D grid of threads, one iteration
  /// each. Bounds that depend on symbolic dims are computed on the host
  /// side: the grid size becomes a launch argument, the trip count a kernel
  /// argument.
  LogicalResult mapParallel(scf::ParallelOp loop) {
    Location loc = loop.getLoc();
    if (loop.getNumResults() != 0)
      return loop.emitError() << "parallel loops with reductions are not "
                                 "mapped by the GPU fallback";
    OpBuilder b(loop);
    SmallVector<int64_t> steps;
    SmallVector<OpFoldResult> extents;
    bool isStatic = true;
    for (auto [lb, ub, step] : llvm::zip(loop.getLowerBound(),
                                         loop.getUpperBound(),
                                         loop.getStep())) {
      APInt l, u, s;
      if (!matchPattern(step, m_ConstantInt(&s)) || s.getSExtValue() <= 0)
        return loop.emitError() << "the GPU fallback needs constant positive "
                                   "loop steps";
      steps.push_back(s.getSExtValue());
      if (matchPattern(lb, m_ConstantInt(&l)) &&
          matchPattern(ub, m_ConstantInt(&u))) {
        extents.push_back(b.getIndexAttr(std::max<int64_t>(
            0, llvm::divideCeil(u.getSExtValue() - l.getSExtValue(),
                                s.getSExtValue()))));
        continue;
      }
      // ceil((ub - lb) / step) on the host; sizes are never negative here.
      isStatic = false;
      Value extent = matchPattern(lb, m_Zero())
                         ? ub
                         : arith::SubIOp::create(b, loc, ub, lb).getResult();
      if (s.getSExtValue() != 1)
        extent = arith::CeilDivUIOp::create(
            b, loc, extent,
            arith::ConstantIndexOp::create(b, loc, s.getSExtValue()));
      extents.push_back(extent);
    }
    if (isStatic) {
      int64_t count = 1;
      SmallVector<int64_t> staticExtents;
      for (OpFoldResult e : extents) {
        staticExtents.push_back(*getConstantIntValue(e));
        count *= staticExtents.back();
      }
      if (count == 0) {
        loop.erase();
        return success();
      }
      int64_t threads =
          std::min<int64_t>(threadsPerBlock, llvm::alignTo(count, 32));
      int64_t blocks = llvm::divideCeil(count, threads);
      createLaunch(b, loc, blocks, threads, [&](OpBuilder &in, Value id) {
        Value inBounds = arith::CmpIOp::create(
            in, loc, arith::CmpIPredicate::ult, id,
            arith::ConstantIndexOp::create(in, loc, count));
        mapBody(in, loc, loop, inBounds,
                [&](OpBuilder &body) {
                  return delinearize(body, loc, id, staticExtents);
                },
                steps);
      });
      loop.erase();
      return success();
    }
    // Symbolic trip counts: a fixed block size and as many blocks as the
    // count needs (at least one, so that the launch is valid at size 0).
    Value count;
    for (OpFoldResult e : extents) {
      Value v = getValueOrCreateConstantIndexOp(b, loc, e);
      count = count ? arith::MulIOp::create(b, loc, count, v).getResult() : v;
    }
    Value threads = arith::ConstantIndexOp::create(b, loc, threadsPerBlock);
    Value blocks = arith::MaxUIOp::create(
        b, loc, arith::CeilDivUIOp::create(b, loc, count, threads),
        arith::ConstantIndexOp::create(b, loc, 1));
    createLaunch(b, loc, blocks, threadsPerBlock, [&](OpBuilder &in, Value id) {
      Value inBounds =
          arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult, id, count);
      mapBody(in, loc, loop, inBounds,
              [&](OpBuilder &body) {
                // Delinearize over the (host-computed) extents.
                SmallVector<Value> positions(extents.size());
                Value rest = id;
                for (int64_t i = extents.size() - 1; i >= 0; --i) {
                  Value e = getValueOrCreateConstantIndexOp(body, loc,
                                                            extents[i]);
                  positions[i] =
                      i == 0 ? rest
                             : arith::RemUIOp::create(body, loc, rest, e)
                                   .getResult();
                  if (i != 0)
                    rest = arith::DivUIOp::create(body, loc, rest, e);
                }
                return positions;
              },
              steps);
    });
    loop.erase();
    return success();
  }

  /// The guarded body of a mapped loop: its induction variables are
  /// lb + position * step.
  void mapBody(OpBuilder &in, Location loc, scf::ParallelOp loop,
               Value inBounds,
               function_ref<SmallVector<Value>(OpBuilder &)> positionsOf,
               ArrayRef<int64_t> steps) {
    auto guard = scf::IfOp::create(in, loc, inBounds, /*else=*/false);
    OpBuilder body = guard.getThenBodyBuilder();
    IRMapping mapping;
    SmallVector<Value> positions = positionsOf(body);
    for (auto [i, iv] : llvm::enumerate(loop.getInductionVars())) {
      Value scaled = arith::MulIOp::create(
          body, loc, positions[i],
          arith::ConstantIndexOp::create(body, loc, steps[i]));
      mapping.map(iv, arith::AddIOp::create(body, loc, scaled,
                                            loop.getLowerBound()[i]));
    }
    for (Operation &op : loop.getBody()->without_terminator())
      body.clone(op, mapping);
  }

  /// The configuration launches of full blocks carry, and its threads.
  DictionaryAttr launchConfig;
  int64_t threadsPerBlock = 0;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    Builder builder(&getContext());
    threadsPerBlock = blockSize;
    launchConfig = configFor(func, kGeneric);
    if (launchConfig) {
      FailureOr<int64_t> threads =
          StrategyConfig(launchConfig, func).getInt("threads");
      if (failed(threads))
        return signalPassFailure();
      threadsPerBlock = *threads;
    } else {
      launchConfig = builder.getDictionaryAttr(
          {builder.getNamedAttr("strategy", builder.getStringAttr(kGeneric)),
           builder.getNamedAttr("threads",
                                builder.getI64IntegerAttr(threadsPerBlock))});
    }
    // Copies bufferization left become loop nests like everything else.
    SmallVector<memref::CopyOp> copies;
    func.walk([&](memref::CopyOp copy) { copies.push_back(copy); });
    for (memref::CopyOp copy : copies) {
      auto type = cast<MemRefType>(copy.getTarget().getType());
      OpBuilder b(copy);
      Location loc = copy.getLoc();
      if (type.getRank() == 0) {
        Value v = memref::LoadOp::create(b, loc, copy.getSource());
        memref::StoreOp::create(b, loc, v, copy.getTarget());
      } else {
        SmallVector<Value> lbs, ubs, steps;
        for (int64_t d = 0; d < type.getRank(); ++d) {
          lbs.push_back(arith::ConstantIndexOp::create(b, loc, 0));
          ubs.push_back(
              type.isDynamicDim(d)
                  ? memref::DimOp::create(b, loc, copy.getTarget(), d)
                        .getResult()
                  : arith::ConstantIndexOp::create(b, loc, type.getDimSize(d))
                        .getResult());
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
    llvm::SmallPtrSet<Operation *, 16> hostOps;
    auto onHost = [&](Operation *op) { return hostOps.contains(op); };
    for (Operation &op : block) {
      if (isHostSide(&op, onHost)) {
        hostOps.insert(&op);
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
