// The CUDA driver API, loaded at run time with dlopen so that a machine
// without the NVIDIA driver gets a clear error instead of a loader failure.
#ifndef KILN_RUNTIME_SRC_CUDA_DRIVER_H
#define KILN_RUNTIME_SRC_CUDA_DRIVER_H

#include "absl/status/status.h"

#include <string>

namespace kiln::runtime {

/// Loads libcuda.so.1 and initializes the driver; the error says what is
/// missing and what to do. `libraryName` is for tests.
absl::Status loadCudaDriver(const std::string &libraryName = "libcuda.so.1");

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CUDA_DRIVER_H
