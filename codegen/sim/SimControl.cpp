//===- SimControl.cpp - structured control flow in the simulator ----------===//
//
// scf.if runs both regions under masks when threads disagree on the
// condition; scf.for runs under a shrinking mask when threads have
// different trip counts; scf.parallel (without reductions) runs as a
// sequential nest inside each thread. The terminators (scf.yield,
// scf.reduce, gpu.return) end BlockRunner::runBlock.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;

namespace kiln::sim {
namespace {

// Loop-carried and branch values may be scalars (one Lanes) or vectors
// (one Lanes per element, BlockRunner::vectors; wgmma accumulators too):
// these move either.

bool heldAsVectors(Value v) {
  return isa<VectorType, nvgpu::WarpgroupAccumulatorType>(v.getType());
}

/// `to` = `from` for every thread.
void copyValue(BlockRunner &runner, Value to, Value from) {
  if (heldAsVectors(from)) {
    std::vector<Lanes> copy = runner.vectors[from];  // may rehash
    runner.vectors[to] = std::move(copy);
  } else {
    Lanes copy = runner.get(from);
    runner.values[to] = std::move(copy);
  }
}

/// `to` = `from` for the threads in `mask`; `to` keeps the others'.
void updateValue(BlockRunner &runner, Value to, Value from, const Mask &mask) {
  auto update = [&](Lanes &current, const Lanes &updated) {
    if (current.size() != updated.size())
      current.assign(updated.size(), 0);
    for (unsigned t = 0; t < runner.threads; ++t)
      if (mask[t])
        current[t] = updated[t];
  };
  if (heldAsVectors(from)) {
    std::vector<Lanes> updated = runner.vectors[from];
    std::vector<Lanes> &current = runner.vectors[to];
    current.resize(updated.size());
    for (size_t e = 0; e < updated.size(); ++e)
      update(current[e], updated[e]);
  } else {
    Lanes updated = runner.get(from);
    update(runner.values[to], updated);
  }
}

bool runIf(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto ifOp = cast<scf::IfOp>(op);
  unsigned n = runner.threads;
  const Lanes &cond = runner.get(ifOp.getCondition());
  Mask thenMask(n, 0), elseMask(n, 0);
  runner.forActive(mask, [&](unsigned t) {
    (cond[t] & 1 ? thenMask : elseMask)[t] = 1;
  });
  SmallVector<Value> thenValues, elseValues;
  bool thenRuns = llvm::is_contained(thenMask, 1);
  bool elseRuns =
      !ifOp.getElseRegion().empty() && llvm::is_contained(elseMask, 1);
  if (thenRuns && elseRuns) {
    // The else-region waits its turn; should the then-region wait on it
    // (a warp-specialized kernel's roles), it starts as a role.
    Roles::Deferred deferred{&ifOp.getElseRegion().front(), &elseMask,
                             &elseValues};
    runner.roles->push(&deferred);
    bool ok = runner.runBlock(ifOp.getThenRegion().front(), thenMask,
                              &thenValues);
    runner.roles->pop();
    if (deferred.role >= 0) {
      if (!runner.roles->join(deferred)) {
        runner.fail(&op, "its regions wait for each other forever (a "
                         "deadlock between the roles)");
        return false;
      }
    } else if (ok) {
      ok = runner.runBlock(*deferred.block, elseMask, &elseValues);
    }
    if (!ok)
      return false;
  } else if (thenRuns) {
    if (!runner.runBlock(ifOp.getThenRegion().front(), thenMask, &thenValues))
      return false;
  } else if (elseRuns &&
             !runner.runBlock(ifOp.getElseRegion().front(), elseMask,
                              &elseValues)) {
    return false;
  }
  for (auto [i, result] : llvm::enumerate(ifOp.getResults())) {
    if (isa<VectorType>(result.getType())) {
      if (i < thenValues.size() && llvm::is_contained(thenMask, 1))
        updateValue(runner, result, thenValues[i], thenMask);
      if (i < elseValues.size() && llvm::is_contained(elseMask, 1))
        updateValue(runner, result, elseValues[i], elseMask);
      continue;
    }
    Lanes merged(n, 0);
    for (unsigned t = 0; t < n; ++t) {
      if (thenMask[t] && i < thenValues.size())
        merged[t] = runner.get(thenValues[i])[t];
      else if (elseMask[t] && i < elseValues.size())
        merged[t] = runner.get(elseValues[i])[t];
    }
    runner.values[result] = std::move(merged);
  }
  return true;
}

bool runFor(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto forOp = cast<scf::ForOp>(op);
  unsigned n = runner.threads;
  Block &body = *forOp.getBody();
  Value iv = forOp.getInductionVar();
  Lanes ivLanes = runner.get(forOp.getLowerBound());
  const Lanes ub = runner.get(forOp.getUpperBound());
  const Lanes stepLanes = runner.get(forOp.getStep());
  unsigned w = bitWidth(iv.getType());
  for (auto [arg, init] :
       llvm::zip(forOp.getRegionIterArgs(), forOp.getInitArgs()))
    copyValue(runner, arg, init);
  Mask active = mask;
  while (true) {
    bool any = false;
    for (unsigned t = 0; t < n; ++t) {
      if (active[t] && sext(ivLanes[t], w) >= sext(ub[t], w))
        active[t] = 0;
      any |= active[t] != 0;
    }
    if (!any)
      break;
    runner.values[iv] = ivLanes;
    SmallVector<Value> next;
    if (!runner.runBlock(body, active, &next))
      return false;
    for (auto [arg, value] : llvm::zip(forOp.getRegionIterArgs(), next))
      updateValue(runner, arg, value, active);
    for (unsigned t = 0; t < n; ++t)
      if (active[t])
        ivLanes[t] = truncTo(ivLanes[t] + stepLanes[t], w);
  }
  for (auto [result, arg] :
       llvm::zip(forOp.getResults(), forOp.getRegionIterArgs()))
    copyValue(runner, result, arg);
  return true;
}

/// Dimension `dim` of a parallel loop, and the ones inside it.
bool runParallelDim(BlockRunner &runner, scf::ParallelOp loop, unsigned dim,
                    const Mask &mask) {
  if (dim == loop.getNumLoops())
    return runner.runBlock(*loop.getBody(), mask, nullptr);
  Value iv = loop.getInductionVars()[dim];
  Lanes ivLanes = runner.get(loop.getLowerBound()[dim]);
  const Lanes ub = runner.get(loop.getUpperBound()[dim]);
  const Lanes step = runner.get(loop.getStep()[dim]);
  Mask active = mask;
  while (true) {
    bool any = false;
    for (unsigned t = 0; t < runner.threads; ++t) {
      if (active[t] && sext(ivLanes[t], 64) >= sext(ub[t], 64))
        active[t] = 0;
      any |= active[t] != 0;
    }
    if (!any)
      return true;
    runner.values[iv] = ivLanes;
    if (!runParallelDim(runner, loop, dim + 1, active))
      return false;
    for (unsigned t = 0; t < runner.threads; ++t)
      if (active[t])
        ivLanes[t] += step[t];
  }
}

/// Inside a thread a parallel loop (without reductions) runs as a
/// sequential nest, as it does after lowering to the GPU.
bool runParallel(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto parallel = cast<scf::ParallelOp>(op);
  if (parallel.getNumResults() != 0) {
    runner.fail(&op, "parallel loops with reductions are not modelled");
    return false;
  }
  return runParallelDim(runner, parallel, 0, mask);
}

} // namespace

void registerControlHandlers(HandlerTable &table) {
  table.add<scf::IfOp>(runIf);
  table.add<scf::ForOp>(runFor);
  table.add<scf::ParallelOp>(runParallel);
}

} // namespace kiln::sim
