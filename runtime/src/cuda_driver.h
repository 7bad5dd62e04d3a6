// The CUDA driver API, loaded at run time with dlopen so that a machine
// without the NVIDIA driver gets a clear error instead of a loader failure,
// and the CUDA backend that runs a cuda artifact's launch program with it.
#ifndef KILN_RUNTIME_SRC_CUDA_DRIVER_H
#define KILN_RUNTIME_SRC_CUDA_DRIVER_H

#include "artifact.h"
#include "kiln/runtime.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime {

struct CudaApi;

/// Loads libcuda.so.1 and initializes the driver; the error says what is
/// missing and what to do. `libraryName` is for tests.
absl::StatusOr<const CudaApi *>
loadCudaDriver(const std::string &libraryName = "libcuda.so.1");

/// A session on one GPU: the primary context, one module per kernel (the
/// cubin for the device's architecture, else PTX for the driver to JIT),
/// weights uploaded once, and the arena.
class CudaSession {
public:
  ~CudaSession();
  CudaSession(const CudaSession &) = delete;
  CudaSession &operator=(const CudaSession &) = delete;

  static absl::StatusOr<std::unique_ptr<CudaSession>>
  create(const Artifact &artifact, int ordinal);

  /// Runs `entry` synchronously: inputs are copied to the device, the
  /// launches run in order, outputs are copied back.
  absl::Status run(const artifact::EntryPoint &entry,
                   const kiln_tensor *inputs, kiln_tensor *outputs);

private:
  CudaSession() = default;
  absl::Status check(int result, const char *what) const;

  const CudaApi *api = nullptr;
  const Artifact *artifact = nullptr;
  int device = 0;
  void *context = nullptr;
  std::vector<void *> modules;
  std::vector<void *> functions;
  std::vector<unsigned long long> weights;
  unsigned long long arena = 0;
};

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CUDA_DRIVER_H
