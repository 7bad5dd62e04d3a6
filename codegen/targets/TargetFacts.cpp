//===- TargetFacts.cpp - the GPU architectures Kiln knows -----------------===//
//
// Figures from NVIDIA's CUDA C++ Programming Guide (compute capabilities
// table) and the PTX ISA guide. `ptxFeatures` is the PTX ISA the NVVM
// backend must emit for the architecture: LLVM's default is older than
// what sm_80 and sm_90a kernels (cp.async.bulk, wgmma) need.
//
//===----------------------------------------------------------------------===//
#include "codegen/targets/TargetFacts.h"

#include "llvm/ADT/STLExtras.h"

namespace kiln::targets {

namespace {
constexpr MmaGeneration kAmpere[] = {MmaGeneration::MmaSync};
constexpr MmaGeneration kHopperA[] = {MmaGeneration::Wgmma,
                                      MmaGeneration::MmaSync};

// chip, cc, warp, threads/block, smem/block, smem/SM, regs/SM, regs/thread,
// SMs, mma, ptx features, cp.async, TMA.
const GpuArchFacts kArchs[] = {
    {"sm_80", 80, 32, 1024, 163 * 1024, 164 * 1024, 65536, 255, 108, kAmpere,
     "+ptx80", true, false},
    {"sm_86", 86, 32, 1024, 99 * 1024, 100 * 1024, 65536, 255, 84, kAmpere,
     "+ptx80", true, false},
    {"sm_89", 89, 32, 1024, 99 * 1024, 100 * 1024, 65536, 255, 128, kAmpere,
     "+ptx80", true, false},
    // sm_90 without the `a` has no wgmma: mma.sync only.
    {"sm_90", 90, 32, 1024, 227 * 1024, 228 * 1024, 65536, 255, 132, kAmpere,
     "+ptx80", true, true},
    {"sm_90a", 90, 32, 1024, 227 * 1024, 228 * 1024, 65536, 255, 132,
     kHopperA, "+ptx80", true, true},
};
} // namespace

bool GpuArchFacts::has(MmaGeneration g) const {
  return llvm::is_contained(mma, g);
}

llvm::ArrayRef<GpuArchFacts> knownGpuArchs() { return kArchs; }

const GpuArchFacts *lookupGpuArch(llvm::StringRef chip) {
  for (const GpuArchFacts &arch : kArchs)
    if (arch.chip == chip)
      return &arch;
  return nullptr;
}

std::string knownGpuArchList() {
  std::string list;
  for (size_t i = 0; i < std::size(kArchs); ++i) {
    if (i)
      list += i + 1 == std::size(kArchs) ? " or " : ", ";
    list += kArchs[i].chip.str();
  }
  return list;
}

llvm::StringRef mmaGenerationName(MmaGeneration g) {
  switch (g) {
  case MmaGeneration::None:
    return "none";
  case MmaGeneration::MmaSync:
    return "mma.sync";
  case MmaGeneration::Wgmma:
    return "wgmma";
  }
  return "none";
}

} // namespace kiln::targets
