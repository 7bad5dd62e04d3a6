//===- SimGpu.cpp - thread and block ids, barriers in the simulator -------===//
//
// The ids and sizes of the launch, and gpu.barrier: it starts a new epoch
// for the shared-memory race checker, and reaching it under a partial mask
// is an error, as it is undefined behaviour on hardware.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include <algorithm>

using namespace mlir;

namespace kiln::sim {
namespace {

int dimIndex(gpu::Dimension d) {
  return d == gpu::Dimension::x ? 0 : d == gpu::Dimension::y ? 1 : 2;
}

bool runThreadId(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto id = cast<gpu::ThreadIdOp>(op);
  int dim = dimIndex(id.getDimension());
  Lanes &out = runner.def(id);
  runner.forActive(mask,
                   [&](unsigned t) { out[t] = runner.threadCoord(t, dim); });
  return true;
}

/// block_id, block_dim, grid_dim: one value for every thread, `value(runner,
/// dimension)`.
template <typename OpTy>
void addUniform(HandlerTable &table,
                uint32_t (*value)(const BlockRunner &, int dim)) {
  table.add<OpTy>([value](BlockRunner &runner, Operation &op, const Mask &) {
    auto typed = cast<OpTy>(op);
    runner.def(typed).assign(runner.threads,
                             value(runner, dimIndex(typed.getDimension())));
    return true;
  });
}

bool runBarrier(BlockRunner &runner, Operation &op, const Mask &mask) {
  if (std::count(mask.begin(), mask.end(), 1) !=
      static_cast<long>(runner.threads)) {
    runner.fail(&op, "gpu.barrier reached by only some threads of the block "
                     "(barrier in divergent code)");
    return false;
  }
  ++runner.epoch; // accesses on either side are now ordered
  return true;
}

} // namespace

void registerGpuHandlers(HandlerTable &table) {
  table.add<gpu::ThreadIdOp>(runThreadId);
  addUniform<gpu::BlockIdOp>(table, [](const BlockRunner &runner, int dim) {
    return runner.blockId[dim];
  });
  addUniform<gpu::BlockDimOp>(table, [](const BlockRunner &runner, int dim) {
    return runner.config.block[dim];
  });
  addUniform<gpu::GridDimOp>(table, [](const BlockRunner &runner, int dim) {
    return runner.config.grid[dim];
  });
  table.add<gpu::BarrierOp>(runBarrier);
}

} // namespace kiln::sim
