//===- ArtifactBuilder.h - launch program, memory plan, .kiln file -*- C++ -*-===//
#ifndef KILN_CODEGEN_ARTIFACT_ARTIFACTBUILDER_H
#define KILN_CODEGEN_ARTIFACT_ARTIFACTBUILDER_H

#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/ArrayRef.h"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln::artifact {
class Manifest;
}

namespace kiln::codegen {

/// A section payload and where the manifest describes it: its `bytes`, or,
/// when `pieces` is not empty, pieces at offsets within the section whose
/// bytes live elsewhere (the IR's weight blobs, which outlive the write),
/// so that a model's weights are not copied once more on their way out.
struct SectionPayload {
  int manifestIndex = 0;
  std::string bytes;
  struct Piece {
    uint64_t offset;
    llvm::ArrayRef<char> data;
  };
  std::vector<Piece> pieces;
  /// Bytes of pieces that had to be made (a splat expanded, booleans).
  std::deque<std::string> ownedPieces;
  uint64_t pieceBytes = 0;

  uint64_t size() const { return pieces.empty() ? bytes.size() : pieceBytes; }
  /// XXH3-64 of the section as written (runtime/src/integrity.h).
  uint64_t checksum() const;
  /// Appends a piece at the next 64-byte aligned offset; returns it.
  uint64_t appendPiece(llvm::ArrayRef<char> data);
  uint64_t appendOwnedPiece(std::string data);
};

/// The manifest under construction and the bytes of its sections.
struct ArtifactContents {
  std::unique_ptr<artifact::Manifest> manifest;
  std::vector<SectionPayload> sections;
  ArtifactContents();
  ~ArtifactContents();
  ArtifactContents(ArtifactContents &&);
};

/// Compiled kernel code for one architecture.
struct KernelCode {
  int kind = 0;       // artifact::SectionKind
  std::string arch;   // "x86_64", "sm_80", ...
  std::string bytes;
  /// Per kernel name, the symbol the runtime looks up.
  std::function<std::string(const std::string &)> symbolOf;
};

/// Builds the manifest's entry points, launch programs, weights and arena
/// plan from `module`: its entry functions hold `kiln.dispatch` ops whose
/// `kernel` attributes name outlined kernels in `module @kernels`. Kernels
/// point at the first code section. Reports errors on `module`.
mlir::FailureOr<ArtifactContents>
buildArtifactContents(mlir::ModuleOp module, std::vector<KernelCode> code);

/// A GPU kernel compiled for one architecture, with what ptxas reported.
struct GpuKernelImage {
  std::string arch;
  /// The PTX and cubin holding this kernel: one module per architecture
  /// that every kernel shares (stored once in the artifact).
  std::shared_ptr<const std::string> ptx, cubin;
  uint32_t registers = 0, sharedBytes = 0, spillStoreBytes = 0,
           spillLoadBytes = 0, stackBytes = 0;
};

/// A GPU kernel: `name` is its gpu.module, `entry` the kernel function.
struct GpuKernelCode {
  std::string name, entry;
  /// The configuration of the strategy that built the launch
  /// (`{strategy = "gemm-simt", tile = ...}`).
  mlir::DictionaryAttr config;
  unsigned numArgs = 0;
  /// Dynamic shared memory each launch asks for (kiln-gpu-hopper-abi).
  uint32_t dynamicSharedBytes = 0;
  std::vector<GpuKernelImage> images;
};

/// As buildArtifactContents, for GPU targets: the dispatches' kernel
/// functions are host code whose gpu.launch_func ops become launches with
/// static grids and blocks; kernels carry one image per architecture.
mlir::FailureOr<ArtifactContents>
buildGpuArtifactContents(mlir::ModuleOp module,
                         std::vector<GpuKernelCode> kernels,
                         llvm::ArrayRef<std::string> archs);

/// Writes `contents` to `path` atomically (a temporary file renamed into
/// place); on failure nothing is left at `path`. Returns an error message,
/// empty on success.
std::string writeArtifact(ArtifactContents &contents, const std::string &path);

/// XXH3-64 of a file, as 16 hex digits ("" if unreadable).
std::string hashFile(const std::string &path);

} // namespace kiln::codegen

#endif // KILN_CODEGEN_ARTIFACT_ARTIFACTBUILDER_H
