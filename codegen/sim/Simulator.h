//===- Simulator.h - GPU kernels run on the CPU with CUDA semantics -*- C++ -*-===//
//
// Executes a gpu.func (the kernel IR a cuda artifact carries, before NVVM
// lowering) for a grid of blocks. Inside a block every thread advances in
// lock step: each SSA value holds one slot per thread, divergent scf.if and
// scf.for run under masks, and every memory access is bounds-checked.
// Blocks run one at a time in a shuffled order, so a kernel that depends on
// the order of blocks is caught rather than passing by luck.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_SIM_SIMULATOR_H
#define KILN_CODEGEN_SIM_SIMULATOR_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::sim {

/// A kernel argument: a buffer (memref) with its byte size.
struct SimBuffer {
  uint8_t *data = nullptr;
  uint64_t bytes = 0;
};

struct LaunchConfig {
  std::array<uint32_t, 3> grid{1, 1, 1};
  std::array<uint32_t, 3> block{1, 1, 1};
};

struct SimStats {
  uint64_t blocks = 0;
  uint64_t threadOps = 0; // ops executed, summed over threads
};

/// Runs `kernel` on `args` (one per memref argument) and `scalars` (one per
/// integer argument, which follow the memrefs: the sizes of symbolic dims).
/// Returns an empty string, or the error: an out-of-bounds access (kernel,
/// block, thread, buffer, index), a barrier in divergent code, or an op the
/// simulator does not model.
std::string simulate(mlir::gpu::GPUFuncOp kernel, const LaunchConfig &config,
                     const std::vector<SimBuffer> &args, SimStats *stats,
                     const std::vector<int64_t> &scalars = {});

/// Registers `kiln-test-simulate` (kiln-opt only; for lit tests).
void registerTestSimulatePass();

} // namespace kiln::sim

#endif // KILN_CODEGEN_SIM_SIMULATOR_H
