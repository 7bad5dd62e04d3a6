#include "cuda_driver.h"

#include "absl/strings/str_cat.h"

#include <dlfcn.h>

namespace kiln::runtime {

absl::Status loadCudaDriver(const std::string &libraryName) {
  void *library = dlopen(libraryName.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return absl::UnavailableError(absl::StrCat(
        "no CUDA driver: cannot load ", libraryName, " (", dlerror(),
        "). Run it on a machine with an NVIDIA GPU and its driver"));
  using CuInit = int (*)(unsigned);
  auto cuInit = reinterpret_cast<CuInit>(dlsym(library, "cuInit"));
  if (!cuInit) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        libraryName, " has no cuInit; the NVIDIA driver installation is "
                     "broken"));
  }
  if (int rc = cuInit(0); rc != 0) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        "the CUDA driver failed to initialize (cuInit returned ", rc,
        rc == 34 ? ", CUDA_ERROR_STUB_LIBRARY: this is the toolkit's stub, "
                   "not a driver"
                 : "",
        "); check that a GPU is visible (nvidia-smi)"));
  }
  // The driver is present. Kernel launches come with the CUDA backend.
  dlclose(library);
  return absl::UnimplementedError(
      "a CUDA driver was found, but this runtime's CUDA backend (module "
      "loading, launches, CUDA graphs) is not built yet");
}

}  // namespace kiln::runtime
