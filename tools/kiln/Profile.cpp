//===- Profile.cpp - kiln profile: GPU performance without a GPU ----------===//
//
// The per-kernel table of `kiln profile M.kiln --device sim`: the
// simulator's counters (SimRun.h; a model of the work and the traffic, not
// a measurement) next to occupancy from ptxas's figures and a roofline
// bound of each kernel's time on a named GPU.
//
// The GPUs' figures (dense, without sparsity) are NVIDIA's datasheets:
// H100 SXM5 and H200 SXM (NVIDIA H100 / H200 Tensor Core GPU datasheets,
// 2023/2024): 132 SMs, 989 TFLOP/s bf16/fp16 tensor, 67 TFLOP/s fp32,
// HBM3 3.35 TB/s and HBM3e 4.8 TB/s; A100 SXM4 80 GB (NVIDIA A100
// datasheet, 2021): 108 SMs, 312 TFLOP/s bf16/fp16 tensor, 19.5 TFLOP/s
// fp32, 2.039 TB/s. Per SM (CUDA C++ Programming Guide, compute
// capabilities 8.0 and 9.0): 65,536 registers, 2,048 threads, 32 blocks,
// 164 KiB (8.0) or 228 KiB (9.0) of shared memory.
//
//===----------------------------------------------------------------------===//
#include "artifact.h"
#include "tools/kiln/Driver.h"
#include "tools/kiln/SimRun.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kiln::driver {
namespace {

struct GpuModel {
  const char *name, *title, *arch;
  double sms, hbmBytesPerSecond, tensorFlops, fp32Flops;
  double sharedPerSM;
};

const GpuModel kGpus[] = {
    {"h100", "H100 SXM5", "sm_90a", 132, 3.35e12, 989e12, 67e12, 228 * 1024},
    {"h200", "H200 SXM", "sm_90a", 132, 4.8e12, 989e12, 67e12, 228 * 1024},
    {"a100", "A100 SXM4 80GB", "sm_80", 108, 2.039e12, 312e12, 19.5e12,
     164 * 1024},
};

}  // namespace

const char *profileGpuNames() { return "h100, h200, a100"; }

bool knownProfileGpu(const std::string &name) {
  return std::any_of(std::begin(kGpus), std::end(kGpus),
                     [&](const GpuModel &g) { return name == g.name; });
}

int printProfile(const std::string &path, const SimReport &report,
                 const std::string &gpuName, uint32_t sampleBlocks) {
  const GpuModel &gpu = *std::find_if(
      std::begin(kGpus), std::end(kGpus),
      [&](const GpuModel &g) { return gpuName == g.name; });
  // The manifest alone is read here; the run checked the whole file.
  runtime::LoadOptions manifestOnly;
  manifestOnly.verifyWeights = false;
  auto loaded = runtime::Artifact::loadFile(path, manifestOnly);
  if (!loaded.ok())
    return fail(std::string(loaded.status().message()));
  const artifact::Manifest &m = (*loaded)->manifest();
  std::printf("profile of '%s' on a model of the %s (%g SMs, %.2f TB/s HBM, "
              "%g TFLOP/s bf16/fp16 tensor, %g TFLOP/s fp32)\n",
              path.c_str(), gpu.title, gpu.sms, gpu.hbmBytesPerSecond / 1e12,
              gpu.tensorFlops / 1e12, gpu.fp32Flops / 1e12);
  std::printf("the simulator's counters: a model of the work and the "
              "traffic, not a measurement%s\n\n",
              sampleBlocks ? (" (at most " + std::to_string(sampleBlocks) +
                              " blocks simulated per launch, counters scaled "
                              "to the grid)")
                                 .c_str()
                           : "");
  std::printf("%-28s %-14s %4s %7s %5s %9s %9s %6s %6s %6s %9s %9s %9s "
              "%10s %s\n",
              "kernel", "strategy", "runs", "blocks", "occ", "moved MB",
              "unique MB", "reuse", "coal", "smem x", "TC inst", "TC GFLOP",
              "FP GFLOP", "bound us", "limit");
  double totalUs = 0, totalBytes = 0, totalTensor = 0, totalFp = 0;
  for (const KernelProfile &k : report.kernels) {
    // Occupancy from ptxas's registers and shared memory for the GPU's
    // architecture (else the first image), and the block of a launch.
    const artifact::Kernel *kernel = nullptr;
    for (const auto &candidate : m.kernels())
      if (candidate.name() == k.name)
        kernel = &candidate;
    double threads = 0;
    for (const auto &entry : m.entry_points())
      for (const auto &launch : entry.launches())
        if (launch.kind() == artifact::Launch::KERNEL &&
            m.kernels(launch.kernel()).name() == k.name &&
            launch.block_size() == 3)
          threads = double(launch.block(0)) * launch.block(1) * launch.block(2);
    double registers = 0, shared = 0;
    if (kernel && kernel->images_size()) {
      const artifact::KernelImage *image = &kernel->images(0);
      for (const auto &candidate : kernel->images())
        if (candidate.arch() == gpu.arch)
          image = &candidate;
      registers = image->registers();
      shared = image->shared_bytes() + kernel->dynamic_shared_bytes();
    }
    double blocksPerSM = 32;
    if (threads > 0) {
      blocksPerSM = std::min(blocksPerSM, std::floor(2048 / threads));
      if (registers > 0)
        blocksPerSM =
            std::min(blocksPerSM, std::floor(65536 / (registers * threads)));
    }
    if (shared > 0)
      blocksPerSM = std::min(blocksPerSM, std::floor(gpu.sharedPerSM / shared));
    double occupancy = threads > 0 ? blocksPerSM * threads / 2048 : 0;
    // The roofline: DRAM sectors at HBM bandwidth, tensor and fp32 flops at
    // their peaks scaled by the SMs the grid can fill (a grid smaller than
    // the GPU leaves SMs idle).
    double perLaunchBlocks = double(k.blocks) / std::max<uint64_t>(1, k.launches);
    double fill = std::min(1.0, perLaunchBlocks / gpu.sms);
    // Every byte the kernel touches comes from DRAM at least once; what it
    // moves beyond that (tiles re-read by other blocks) is L2's to serve.
    double bytes = k.globalSectors * 32, unique = k.uniqueSectors * 32;
    double memUs = unique / gpu.hbmBytesPerSecond * 1e6;
    double tensorUs = k.tensorFlops / (gpu.tensorFlops * fill) * 1e6;
    double fpUs = k.fpFlops / (gpu.fp32Flops * fill) * 1e6;
    double bound = std::max({memUs, tensorUs, fpUs});
    const char *limit = bound == 0          ? "-"
                        : bound == memUs    ? "DRAM"
                        : bound == tensorUs ? "tensor"
                                            : "fp32";
    auto ratio = [](double x, double y) {
      char text[16];
      if (y > 0)
        std::snprintf(text, sizeof(text), "%.2f", x / y);
      else
        std::snprintf(text, sizeof(text), "-");
      return std::string(text);
    };
    std::printf("%-28s %-14s %4llu %7llu %4.0f%% %9.3f %9.3f %6s %6s %6s "
                "%9.0f %9.3f %9.3f %10.2f %s\n",
                k.name.c_str(), k.strategy.c_str(),
                static_cast<unsigned long long>(k.launches),
                static_cast<unsigned long long>(k.blocks), occupancy * 100,
                bytes / 1e6, unique / 1e6, ratio(bytes, unique).c_str(),
                ratio(bytes, k.globalBytes).c_str(),
                ratio(k.sharedWavefronts, k.sharedIdealWavefronts).c_str(),
                k.mmaInstructions, k.tensorFlops / 1e9, k.fpFlops / 1e9,
                bound, limit);
    totalUs += bound;
    totalBytes += unique;
    totalTensor += k.tensorFlops;
    totalFp += k.fpFlops;
  }
  std::printf("\ntotal: %.3f MB from DRAM at least, %.3f tensor GFLOP, %.3f fp32 "
              "GFLOP; roofline bound %.2f us on the %s (the sum of the "
              "kernels' bounds; a model, not a measurement)\n",
              totalBytes / 1e6, totalTensor / 1e9, totalFp / 1e9, totalUs,
              gpu.title);
  std::printf("columns: occ = occupancy (resident threads per SM / 2048, "
              "from ptxas's registers and shared memory); moved MB = the "
              "32-byte sectors the kernel's warps move between L2 and the "
              "SMs; unique MB = the sectors it touches at all (from DRAM at "
              "least once); reuse = moved / unique (tiles re-read by other "
              "blocks, served by L2); coal = moved / bytes the lanes asked "
              "for (1.00: fully coalesced); smem x = shared-memory "
              "wavefronts / conflict-free wavefronts (1.00: no bank "
              "conflicts); bound = max(unique / HBM bandwidth, tensor and "
              "fp32 flops / peak x the SMs the grid fills)\n");
  return 0;
}

}  // namespace kiln::driver
