// The CPU backend: host kernels compiled into a shared object that travels in
// the artifact, loaded through an anonymous in-memory file.
#ifndef KILN_RUNTIME_SRC_CPU_BACKEND_H
#define KILN_RUNTIME_SRC_CPU_BACKEND_H

#include "artifact.h"

#include "absl/status/statusor.h"

#include <memory>
#include <vector>

namespace kiln::runtime {

using HostKernelFn = void (*)(void **buffers);

class CpuKernels {
public:
  ~CpuKernels();
  CpuKernels(const CpuKernels &) = delete;
  CpuKernels &operator=(const CpuKernels &) = delete;

  /// Loads every host kernel of `artifact`, resolving each kernel's symbol.
  static absl::StatusOr<std::unique_ptr<CpuKernels>>
  load(const Artifact &artifact);

  HostKernelFn kernel(uint32_t index) const { return kernels_[index]; }

private:
  CpuKernels() = default;
  std::vector<void *> handles_;
  std::vector<HostKernelFn> kernels_;
};

/// The architecture name this runtime was built for ("x86_64", "aarch64").
const char *hostArch();

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CPU_BACKEND_H
