//===- TargetFacts.h - what a compilation target is ------------*- C++ -*-===//
//
// The facts a kernel strategy or a pipeline may ask of a target, in one
// place: warp size, shared memory, registers, the tensor-core generations a
// GPU has, the PTX ISA it needs. Pure data with no MLIR in it, so passes,
// the driver and the runtime-side tools can all read it. A new GPU is one
// more row in TargetFacts.cpp; a new kind of target (AMD) is a new `Kind`
// and its rows.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_TARGETS_TARGETFACTS_H
#define KILN_CODEGEN_TARGETS_TARGETFACTS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::targets {

/// The tensor-core instruction families a GPU architecture has.
enum class MmaGeneration : uint8_t {
  None,
  MmaSync,  ///< warp-level mma.sync (sm_80+: m16n8k16 f16/bf16, m16n8k8 tf32)
  Wgmma,    ///< warpgroup wgmma.mma_async with TMA (sm_90a only)
};

/// One GPU architecture (`sm_80`, `sm_90a`, ...).
struct GpuArchFacts {
  llvm::StringRef chip;          ///< the name ptxas and NVVM take
  unsigned computeCapability;    ///< 80, 86, 89, 90
  unsigned warpSize;             ///< threads in a warp
  unsigned maxThreadsPerBlock;
  unsigned sharedBytesPerBlock;  ///< the opt-in maximum per block
  unsigned sharedBytesPerSM;
  unsigned registersPerSM;       ///< 32-bit registers
  unsigned maxRegistersPerThread;
  unsigned smCount;              ///< of the flagship part (A100, H100)
  llvm::ArrayRef<MmaGeneration> mma; ///< best first
  unsigned ptxIsa;               ///< the PTX ISA emitted by default, x10 (80: 8.0)
  unsigned minPtxIsa;            ///< the oldest PTX ISA with this target, x10
  bool hasAsyncCopy;             ///< cp.async
  bool hasTma;                   ///< cp.async.bulk.tensor and mbarrier tx
  /// Whether the architecture has tensor-core generation `g`.
  bool has(MmaGeneration g) const;
};

/// The host CPU facts the CPU strategies use. The defaults are AVX2's: 16
/// vector registers of 256 bits, a register block of 6 rows x 2 registers.
struct CpuFacts {
  unsigned vectorBits = 256;  ///< the widest vector register used
  unsigned registerBlockRows = 6, panelColumns = 16;

  /// AVX-512: 32 registers of 512 bits; blocks of 8 rows x 2 registers
  /// (16 accumulators: enough FMAs in flight for two FMA units).
  static CpuFacts avx512() { return CpuFacts{512, 8, 32}; }
};

/// The GPU architectures Kiln compiles for, in a stable order.
llvm::ArrayRef<GpuArchFacts> knownGpuArchs();

/// The facts of `chip`, or null when Kiln does not know it.
const GpuArchFacts *lookupGpuArch(llvm::StringRef chip);

/// "sm_80, sm_86, sm_89, sm_90 or sm_90a": for error messages.
std::string knownGpuArchList();

/// The name of a tensor-core generation (`mma.sync`, `wgmma`, `none`).
llvm::StringRef mmaGenerationName(MmaGeneration g);

/// A PTX ISA version (x10: 80 is 8.0) and the CUDA release that brought
/// it: a driver must support that release (or a newer one) to JIT the PTX.
struct PtxIsaFacts {
  unsigned version;
  llvm::StringRef cudaRelease;
};
/// The PTX ISA versions Kiln can emit (those LLVM's NVPTX backend has).
llvm::ArrayRef<PtxIsaFacts> knownPtxIsas();
const PtxIsaFacts *lookupPtxIsa(unsigned version);
/// "7.0, 7.1, ..., 9.0".
std::string knownPtxIsaList();

/// The Linux driver branch that first supports CUDA `major` (11: R450,
/// 12: R525, 13: R580); 0 for a major it does not know.
unsigned driverBranchForCuda(unsigned major);

} // namespace kiln::targets

#endif // KILN_CODEGEN_TARGETS_TARGETFACTS_H
