//===- SimRun.h - kiln run --device sim --------------------------*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_SIMRUN_H
#define KILN_TOOLS_KILN_SIMRUN_H

#include "tools/kiln/HostTensor.h"

#include <string>
#include <vector>

namespace kiln::driver {

struct SimReport {
  uint64_t launches = 0, blocks = 0, threadOps = 0;
};

/// Runs entry point `entry` of the cuda artifact at `path` in the GPU-kernel
/// simulator: the launch program as the CUDA runtime would run it, each
/// kernel from the artifact's embedded kernel IR. Returns an error message,
/// empty on success.
std::string runOnSimulator(const std::string &path, size_t entry,
                           std::vector<HostTensor> &inputs,
                           std::vector<HostTensor> &outputs,
                           SimReport &report);

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_SIMRUN_H
