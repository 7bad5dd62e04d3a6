//===- MemoryPlanner.h - arena offsets from buffer lifetimes -----*- C++ -*-===//
//
// Pure C++ (no MLIR) so that it is unit-tested on its own and shared by the
// CPU and GPU targets.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_ARTIFACT_MEMORYPLANNER_H
#define KILN_CODEGEN_ARTIFACT_MEMORYPLANNER_H

#include <cstdint>
#include <vector>

namespace kiln::codegen {

/// A buffer live from the step that writes it to the last step that reads
/// it, both inclusive.
struct BufferLifetime {
  uint64_t size = 0;
  int64_t firstStep = 0;
  int64_t lastStep = 0;
};

struct ArenaPlan {
  std::vector<uint64_t> offsets; // one per buffer, aligned
  uint64_t arenaBytes = 0;
};

/// Places buffers in one arena so that two buffers share bytes only when
/// their lifetimes do not overlap. Greedy by decreasing size, each buffer at
/// the lowest aligned offset that fits between the live ones it conflicts
/// with. `alignment` must be a power of two.
ArenaPlan planArena(const std::vector<BufferLifetime> &buffers,
                    uint64_t alignment = 64);

} // namespace kiln::codegen

#endif // KILN_CODEGEN_ARTIFACT_MEMORYPLANNER_H
