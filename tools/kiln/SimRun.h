//===- SimRun.h - kiln run --device sim --------------------------*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_SIMRUN_H
#define KILN_TOOLS_KILN_SIMRUN_H

#include "tools/kiln/HostTensor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::driver {

/// The simulator's counters of one kernel over all its launches, each
/// launch's scaled from its sampled blocks to its whole grid (Simulator.h
/// says what each counts; a model, not a measurement).
struct KernelProfile {
  std::string name, strategy;
  uint64_t launches = 0, blocks = 0, simulatedBlocks = 0;
  double globalRequests = 0, globalSectors = 0, globalBytes = 0,
         uniqueSectors = 0, sharedRequests = 0, sharedWavefronts = 0,
         sharedIdealWavefronts = 0, mmaInstructions = 0, tensorFlops = 0,
         fpFlops = 0;
};

struct SimReport {
  uint64_t launches = 0, blocks = 0, threadOps = 0;
  /// Per kernel, in the order of their first launch.
  std::vector<KernelProfile> kernels;
};

struct SimOptions {
  /// 0: every block; else at most this many per launch (kiln profile).
  uint32_t sampleBlocks = 0;
  /// The session's states (Manifest.states, a KV cache), kept by the
  /// caller from run to run; sized and zeroed by the first run. Null: fresh
  /// zeroed states for this run only.
  std::vector<std::vector<uint8_t>> *states = nullptr;
  /// Check the weights' checksums when loading (--skip-weight-checksums).
  bool verifyWeights = true;
};

/// Runs entry point `entry` of the cuda artifact at `path` in the GPU-kernel
/// simulator: the launch program as the CUDA runtime would run it, each
/// kernel from the artifact's embedded kernel IR. Returns an error message,
/// empty on success.
std::string runOnSimulator(const std::string &path, size_t entry,
                           std::vector<HostTensor> &inputs,
                           std::vector<HostTensor> &outputs,
                           SimReport &report, const SimOptions &options = {});

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_SIMRUN_H
