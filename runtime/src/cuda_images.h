// Which of a kernel's images a device and driver can load, by the CUDA
// binary-compatibility rules. Pure logic on the manifest: the CUDA backend
// tries the candidates in order (a cubin the driver rejects falls back to
// the PTX), and the tests run the whole device x driver matrix without a
// GPU.
//
// - A cubin for sm_XY runs on devices of major X and minor >= Y (an sm_80
//   cubin on sm_86 and sm_89); an arch-specific one (sm_90a) on sm_90 only.
//   Its driver must be of the CUDA major release of the ptxas that made it
//   (minor-version compatibility within a major).
// - PTX for sm_XY is JIT-compiled for any device of compute capability
//   >= XY, arch-specific PTX only for that exact device; the driver must
//   support the CUDA release that brought the PTX's ISA.
// - Preference: a cubin for the device's exact architecture (the
//   arch-specific one first), then the closest older cubin of the same
//   major, then the PTX of the newest architecture the device can JIT.
#ifndef KILN_RUNTIME_SRC_CUDA_IMAGES_H
#define KILN_RUNTIME_SRC_CUDA_IMAGES_H

#include "manifest.pb.h"

#include <string>
#include <vector>

namespace kiln::runtime {

/// A device as the driver describes it.
struct CudaDeviceInfo {
  int major = 0, minor = 0;  ///< compute capability
  int driverVersion = 0;     ///< cuDriverGetVersion: 1000 * major + 10 * minor
};

/// One way to load a kernel: an image and whether to use its PTX.
struct CudaImageChoice {
  const artifact::KernelImage *image = nullptr;
  bool ptx = false;
};

/// "sm_86 (driver for CUDA 12.4)".
std::string describeDevice(const CudaDeviceInfo &device);

/// The images `device` can load for `kernel`, best first; empty when none.
std::vector<CudaImageChoice> cudaImageCandidates(
    const artifact::Manifest &manifest, const artifact::Kernel &kernel,
    const CudaDeviceInfo &device);

/// Why nothing fits, for an error: the device, the kernel's images and what
/// to recompile with (or which driver to install).
std::string noCudaImageMessage(const artifact::Manifest &manifest,
                               const artifact::Kernel &kernel,
                               const CudaDeviceInfo &device);

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CUDA_IMAGES_H
