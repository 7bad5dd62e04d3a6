//===- SimWarp.cpp - warp collectives in the simulator --------------------===//
//
// A warp is 32 consecutive threads of the block. Threads run in lock step,
// so every lane's operand is available when a collective executes: a
// collective is an ordinary op over the lanes of each warp. Reading a lane
// that is not executing the collective is undefined on the GPU and is
// reported.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

using namespace mlir;

namespace kiln::sim {
namespace {

constexpr unsigned kWarpSize = 32;

/// gpu.shuffle (xor, up, down, idx) within segments of `width` lanes.
bool runShuffle(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<gpu::ShuffleOp>(operation);
  const Lanes &value = runner.get(op.getValue());
  const Lanes &offset = runner.get(op.getOffset());
  const Lanes &width = runner.get(op.getWidth());
  Lanes result(runner.threads, 0), valid(runner.threads, 0);
  for (unsigned t = 0; t < runner.threads; ++t) {
    if (!mask[t])
      continue;
    unsigned w = static_cast<unsigned>(width[t]);
    if (w == 0 || w > kWarpSize || (w & (w - 1))) {
      runner.fail(op, "shuffle width " + std::to_string(w) +
                          " is not a power of two up to 32");
      return false;
    }
    unsigned lane = t % kWarpSize, base = t - lane % w, inSegment = lane % w;
    int64_t src = 0;
    uint64_t o = offset[t];
    switch (op.getMode()) {
    case gpu::ShuffleMode::XOR: src = inSegment ^ o; break;
    case gpu::ShuffleMode::UP: src = static_cast<int64_t>(inSegment) - static_cast<int64_t>(o); break;
    case gpu::ShuffleMode::DOWN: src = inSegment + o; break;
    case gpu::ShuffleMode::IDX: src = o; break;
    }
    if (src < 0 || src >= static_cast<int64_t>(w)) {
      result[t] = value[t];
      continue;
    }
    unsigned from = base + static_cast<unsigned>(src);
    if (from >= runner.threads || !mask[from]) {
      runner.fail(op, "thread " + runner.threadText(t) + " reads lane " +
                          std::to_string(from % kWarpSize) +
                          " of its warp, which is not executing the shuffle");
      return false;
    }
    result[t] = value[from];
    valid[t] = 1;
  }
  runner.values[op.getShuffleResult()] = std::move(result);
  runner.values[op.getValid()] = std::move(valid);
  return true;
}

} // namespace

void registerWarpHandlers(HandlerTable &table) {
  table.add<gpu::ShuffleOp>(runShuffle);
}

} // namespace kiln::sim
