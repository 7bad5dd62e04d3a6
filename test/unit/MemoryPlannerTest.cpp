#include "codegen/artifact/MemoryPlanner.h"

#include <gtest/gtest.h>

using kiln::codegen::ArenaPlan;
using kiln::codegen::BufferLifetime;
using kiln::codegen::planArena;

namespace {

bool overlaps(const BufferLifetime &a, uint64_t aOff, const BufferLifetime &b,
              uint64_t bOff) {
  bool liveTogether = !(a.lastStep < b.firstStep || b.lastStep < a.firstStep);
  bool bytesShared = aOff < bOff + b.size && bOff < aOff + a.size;
  return liveTogether && bytesShared;
}

void expectValid(const std::vector<BufferLifetime> &buffers,
                 const ArenaPlan &plan, uint64_t alignment) {
  ASSERT_EQ(plan.offsets.size(), buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_EQ(plan.offsets[i] % alignment, 0u) << "buffer " << i;
    EXPECT_LE(plan.offsets[i] + buffers[i].size, plan.arenaBytes);
    for (size_t j = i + 1; j < buffers.size(); ++j)
      EXPECT_FALSE(overlaps(buffers[i], plan.offsets[i], buffers[j],
                            plan.offsets[j]))
          << "buffers " << i << " and " << j << " share live bytes";
  }
}

TEST(MemoryPlanner, ChainReusesMemory) {
  // a -> b -> c -> d: each buffer dies when the next one is written, so
  // two slots suffice.
  std::vector<BufferLifetime> chain = {
      {1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}, {1000, 3, 4}};
  ArenaPlan plan = planArena(chain, 64);
  expectValid(chain, plan, 64);
  EXPECT_EQ(plan.arenaBytes, 2u * 1024u);
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
}

TEST(MemoryPlanner, LiveTogetherNeverShare) {
  std::vector<BufferLifetime> buffers = {
      {100, 0, 5}, {200, 1, 4}, {300, 2, 3}, {50, 3, 6}};
  ArenaPlan plan = planArena(buffers, 64);
  expectValid(buffers, plan, 64);
}

TEST(MemoryPlanner, RandomizedPlansAreValid) {
  uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1664525u + 1013904223u; };
  for (int round = 0; round < 200; ++round) {
    std::vector<BufferLifetime> buffers;
    int n = 1 + next() % 20;
    for (int i = 0; i < n; ++i) {
      int64_t first = next() % 30;
      buffers.push_back({1 + next() % 5000, first, first + next() % 10});
    }
    ArenaPlan plan = planArena(buffers, 64);
    expectValid(buffers, plan, 64);
  }
}

TEST(MemoryPlanner, EmptyPlan) {
  ArenaPlan plan = planArena({}, 64);
  EXPECT_EQ(plan.arenaBytes, 0u);
}

} // namespace
