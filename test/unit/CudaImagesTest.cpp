// Which image each device and driver loads: the whole matrix of the CUDA
// binary-compatibility rules (runtime/src/cuda_images.h), without a GPU.
#include "cuda_images.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

using kiln::runtime::CudaDeviceInfo;

/// A kernel with an image per arch (cubin and PTX), as `kiln compile
/// --target cuda:sm_80,sm_90a` writes it with the CUDA 13.0 ptxas and PTX
/// ISA 8.0 (brought by CUDA 12.0).
kiln::artifact::Manifest manifest(std::initializer_list<const char *> archs,
                                  const char *cubinRelease = "13.0",
                                  const char *ptxRelease = "12.0") {
  kiln::artifact::Manifest m;
  m.set_cubin_cuda_release(cubinRelease);
  m.set_ptx_isa(80);
  m.set_ptx_cuda_release(ptxRelease);
  auto *kernel = m.add_kernels();
  kernel->set_name("k");
  for (const char *arch : archs) {
    auto *image = kernel->add_images();
    image->set_arch(arch);
    image->set_cubin_size(100);
    image->set_ptx_size(100);
  }
  return m;
}

/// "cubin sm_80", "PTX sm_80" or "none": what the device loads first.
std::string firstChoice(const kiln::artifact::Manifest &m,
                        CudaDeviceInfo device) {
  auto choices = kiln::runtime::cudaImageCandidates(m, m.kernels(0), device);
  if (choices.empty())
    return "none";
  return (choices[0].ptx ? "PTX " : "cubin ") + choices[0].image->arch();
}

TEST(CudaImages, DeviceAndDriverMatrix) {
  kiln::artifact::Manifest m = manifest({"sm_80", "sm_90a"});
  struct Row {
    int major, minor;
    const char *driver124, *driver130;
  } rows[] = {
      // An sm_80 cubin runs on every 8.x; a 12.4 driver rejects CUDA 13
      // cubins and JITs the PTX (ISA 8.0: CUDA 12.0).
      {8, 0, "PTX sm_80", "cubin sm_80"},
      {8, 6, "PTX sm_80", "cubin sm_80"},
      {8, 9, "PTX sm_80", "cubin sm_80"},
      // sm_90a images only on 9.0 itself, before the generic sm_80 PTX.
      {9, 0, "PTX sm_90a", "cubin sm_90a"},
      // Newer GPUs get the newest PTX that is not arch-specific.
      {10, 0, "PTX sm_80", "PTX sm_80"},
      {12, 0, "PTX sm_80", "PTX sm_80"},
  };
  std::printf("device  driver 12.4    driver 13.0\n");
  for (const Row &row : rows) {
    std::string at124 = firstChoice(m, {row.major, row.minor, 12040});
    std::string at130 = firstChoice(m, {row.major, row.minor, 13000});
    std::string cc = std::to_string(row.major) + "." + std::to_string(row.minor);
    std::printf("%-7s %-14s %s\n", cc.c_str(), at124.c_str(), at130.c_str());
    EXPECT_EQ(at124, row.driver124) << row.major << "." << row.minor;
    EXPECT_EQ(at130, row.driver130) << row.major << "." << row.minor;
  }
}

TEST(CudaImages, ACubinTheDriverRejectsFallsBackToPtx) {
  // The cubin first, then the PTX of the same image: the backend tries
  // the PTX when the driver refuses the cubin.
  kiln::artifact::Manifest m = manifest({"sm_80"});
  auto choices =
      kiln::runtime::cudaImageCandidates(m, m.kernels(0), {8, 6, 13000});
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_FALSE(choices[0].ptx);
  EXPECT_TRUE(choices[1].ptx);
}

TEST(CudaImages, AnOlderDriverThanThePtxNeedsLoadsNothing) {
  // PTX ISA 8.5 (CUDA 12.5) on a 12.4 driver: nothing fits, and the error
  // says what to do.
  kiln::artifact::Manifest m = manifest({"sm_80"}, "13.0", "12.5");
  CudaDeviceInfo device{8, 0, 12040};
  EXPECT_EQ(firstChoice(m, device), "none");
  EXPECT_EQ(kiln::runtime::noCudaImageMessage(m, m.kernels(0), device),
            "kernel 'k' has no image sm_80 (driver for CUDA 12.4) can load "
            "(the artifact has cubin sm_80 (needs a CUDA 13 driver), PTX sm_80 "
            "(needs a CUDA 12.5 driver)); install a newer driver, or recompile with a "
            "PTX ISA this driver can JIT (kiln compile --ptx-isa; CUDA 12.4 "
            "drivers JIT PTX ISA up to the one CUDA 12.4 brought)");
}

TEST(CudaImages, AnArchSpecificArtifactOnAnotherDeviceSaysWhatToCompile) {
  kiln::artifact::Manifest m = manifest({"sm_90a"});
  CudaDeviceInfo device{8, 6, 13000};
  EXPECT_EQ(firstChoice(m, device), "none");
  EXPECT_EQ(kiln::runtime::noCudaImageMessage(m, m.kernels(0), device),
            "kernel 'k' has no image sm_86 (driver for CUDA 13.0) can load "
            "(the artifact has cubin sm_90a (needs a CUDA 13 driver), PTX sm_90a "
            "(needs a CUDA 12.0 driver)); recompile for it (kiln compile --target "
            "cuda:sm_86), or for an older architecture without the 'a', whose "
            "PTX newer devices JIT");
}

TEST(CudaImages, ArtifactsThatDoNotSayTheirReleasesStillLoad) {
  // Artifacts from before the release fields: only the architecture rules.
  kiln::artifact::Manifest m = manifest({"sm_80"}, "", "");
  EXPECT_EQ(firstChoice(m, {8, 0, 12000}), "cubin sm_80");
}

}  // namespace
