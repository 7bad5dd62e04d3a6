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
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kiln::sim {

/// A kernel argument: a buffer (memref) with its byte size.
struct SimBuffer {
  uint8_t *data = nullptr;
  uint64_t bytes = 0;
};

/// A TMA descriptor argument (sm_90a): the tensor a kernel's
/// !nvgpu.tensormap.descriptor argument describes, as the runtime encodes it
/// with cuTensorMapEncodeTiled. Dims, strides and box run innermost first;
/// strides are in bytes for dims after the first (the first is dense).
/// The box's shape and the swizzle come from the argument's type.
struct SimTensorMap {
  uint8_t *data = nullptr;
  uint64_t bytes = 0;  // the buffer the tensor lies in, for bounds checks
  /// Where the tensor's allocation starts (data minus a view's offset): the
  /// counters key its sectors there, so that maps of views into one buffer
  /// (Q, K and V in a QKV projection's rows) count its bytes once. Null:
  /// `data`.
  uint8_t *space = nullptr;
  std::vector<uint64_t> dims, strides;
};

struct LaunchConfig {
  std::array<uint32_t, 3> grid{1, 1, 1};
  std::array<uint32_t, 3> block{1, 1, 1};
};

/// What a launch did, counted as the simulator runs it: a model of the
/// work and the traffic, not a measurement of a GPU. With sampling, the
/// counters cover the simulated blocks only (scale them by
/// totalBlocks / blocks).
struct SimStats {
  uint64_t blocks = 0;      // blocks simulated
  uint64_t totalBlocks = 0; // blocks in the grid
  uint64_t threadOps = 0;   // ops executed, summed over threads
  // Global memory, per warp-level instruction: the 32-byte sectors its
  // active lanes touch (what moves between L2/DRAM and the SM), and the
  // bytes they asked for; uniqueSectors is every sector touched at all,
  // per buffer (keyed by its base address), so that a sample scaled to the
  // grid can be capped at each buffer's size.
  uint64_t globalRequests = 0, globalSectors = 0, globalBytes = 0;
  std::unordered_map<const void *, std::unordered_set<uint64_t>> uniqueSectors;
  // Shared memory, per warp-level instruction: the wavefronts its bank
  // conflicts cost, against the fewest its width allows (conflict-free).
  uint64_t sharedRequests = 0, sharedWavefronts = 0, sharedIdealWavefronts = 0;
  // Tensor cores: warp-level mma.sync instructions (warpgroup-level wgmma
  // ones count once per warpgroup) and their flops.
  uint64_t mmaInstructions = 0, tensorFlops = 0;
  // Float adds, subtracts and multiplies (FMA: 2), summed over threads.
  uint64_t fpFlops = 0;
};

/// Runs `kernel` on `args` (one per memref argument), `tensorMaps` (one per
/// TMA descriptor argument, which follow the memrefs) and `scalars` (one per
/// integer argument, which come last: the sizes of symbolic dims).
/// Returns an empty string, or the error: an out-of-bounds access (kernel,
/// block, thread, buffer, index), a barrier in divergent code, or an op the
/// simulator does not model.
///
/// `sampleBlocks` > 0 runs at most that many blocks, evenly spaced over the
/// grid (the first and the last among them), for `kiln profile`: the
/// outputs are then incomplete, the counters a sample.
std::string simulate(mlir::gpu::GPUFuncOp kernel, const LaunchConfig &config,
                     const std::vector<SimBuffer> &args, SimStats *stats,
                     const std::vector<int64_t> &scalars = {},
                     uint32_t sampleBlocks = 0,
                     const std::vector<SimTensorMap> &tensorMaps = {});

/// Registers `kiln-test-simulate` (kiln-opt only; for lit tests).
void registerTestSimulatePass();

} // namespace kiln::sim

#endif // KILN_CODEGEN_SIM_SIMULATOR_H
