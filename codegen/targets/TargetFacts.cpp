//===- TargetFacts.cpp - the GPU architectures Kiln knows -----------------===//
//
// Figures from NVIDIA's CUDA C++ Programming Guide (compute capabilities
// table) and the PTX ISA guide. `ptxIsa` is the PTX ISA the NVVM backend
// emits for the architecture by default (LLVM's own default is older than
// what sm_80 and sm_90a kernels (cp.async.bulk, wgmma) need); `minPtxIsa`
// the oldest that has the architecture, which `--ptx-isa` may choose to
// reach older drivers.
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
     80, 70, true, false},
    {"sm_86", 86, 32, 1024, 99 * 1024, 100 * 1024, 65536, 255, 84, kAmpere,
     80, 71, true, false},
    {"sm_89", 89, 32, 1024, 99 * 1024, 100 * 1024, 65536, 255, 128, kAmpere,
     80, 78, true, false},
    // sm_90 without the `a` has no wgmma: mma.sync only.
    {"sm_90", 90, 32, 1024, 227 * 1024, 228 * 1024, 65536, 255, 132, kAmpere,
     80, 78, true, true},
    {"sm_90a", 90, 32, 1024, 227 * 1024, 228 * 1024, 65536, 255, 132,
     kHopperA, 80, 80, true, true},
};

// PTX ISA versions and the CUDA releases that brought them (the PTX ISA
// manual's release notes).
const PtxIsaFacts kPtxIsas[] = {
    {70, "11.0"}, {71, "11.1"}, {72, "11.2"}, {73, "11.3"}, {74, "11.4"},
    {75, "11.5"}, {76, "11.6"}, {77, "11.7"}, {78, "11.8"}, {80, "12.0"},
    {81, "12.1"}, {82, "12.2"}, {83, "12.3"}, {84, "12.4"}, {85, "12.5"},
    {86, "12.7"}, {87, "12.8"}, {88, "12.9"}, {90, "13.0"},
};
} // namespace

llvm::ArrayRef<PtxIsaFacts> knownPtxIsas() { return kPtxIsas; }

const PtxIsaFacts *lookupPtxIsa(unsigned version) {
  for (const PtxIsaFacts &isa : kPtxIsas)
    if (isa.version == version)
      return &isa;
  return nullptr;
}

std::string knownPtxIsaList() {
  std::string list;
  for (const PtxIsaFacts &isa : kPtxIsas)
    list += (list.empty() ? "" : ", ") + std::to_string(isa.version / 10) +
            "." + std::to_string(isa.version % 10);
  return list;
}

unsigned driverBranchForCuda(unsigned major) {
  switch (major) {
  case 11:
    return 450;
  case 12:
    return 525;
  case 13:
    return 580;
  }
  return 0;
}

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
