//===- MemoryPlanner.cpp - arena offsets from buffer lifetimes ------------===//
#include "codegen/artifact/MemoryPlanner.h"

#include <algorithm>
#include <numeric>

namespace kiln::codegen {

ArenaPlan planArena(const std::vector<BufferLifetime> &buffers,
                    uint64_t alignment) {
  auto alignUp = [&](uint64_t x) { return (x + alignment - 1) & ~(alignment - 1); };
  ArenaPlan plan;
  plan.offsets.assign(buffers.size(), 0);
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  // Largest first; ties by earlier start, then index, for a stable plan.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (buffers[a].size != buffers[b].size)
      return buffers[a].size > buffers[b].size;
    return buffers[a].firstStep < buffers[b].firstStep;
  });

  std::vector<size_t> placed;
  for (size_t index : order) {
    const BufferLifetime &buffer = buffers[index];
    // Byte ranges of placed buffers whose lifetimes overlap this one.
    std::vector<std::pair<uint64_t, uint64_t>> busy;
    for (size_t other : placed) {
      const BufferLifetime &o = buffers[other];
      if (o.lastStep < buffer.firstStep || buffer.lastStep < o.firstStep)
        continue;
      busy.emplace_back(plan.offsets[other], plan.offsets[other] + o.size);
    }
    std::sort(busy.begin(), busy.end());
    uint64_t offset = 0;
    for (auto [begin, end] : busy) {
      if (offset + buffer.size <= begin)
        break;
      offset = std::max(offset, alignUp(end));
    }
    plan.offsets[index] = offset;
    plan.arenaBytes = std::max(plan.arenaBytes, alignUp(offset + buffer.size));
    placed.push_back(index);
  }
  return plan;
}

} // namespace kiln::codegen
