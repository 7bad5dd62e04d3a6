//===- GpuCodegen.h - PTX from gpu.binary, cubins with ptxas ----*- C++ -*-===//
#ifndef KILN_CODEGEN_GPU_GPUCODEGEN_H
#define KILN_CODEGEN_GPU_GPUCODEGEN_H

#include "codegen/artifact/ArtifactBuilder.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace kiln::codegen {

/// The ptxas to use: `<cudaPath>/bin/ptxas` if `cudaPath` is given, else
/// from CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda. Empty (and `error`
/// set) when there is none.
std::string findPtxas(const std::string &cudaPath, std::string &error);

/// The CUDA toolkit folder a ptxas path lives in.
std::string toolkitOfPtxas(const std::string &ptxas);

/// The CUDA release of `ptxas` ("13.0", from `ptxas --version`), or empty
/// when it does not say.
std::string ptxasRelease(const std::string &ptxas);

/// The attribute on each gpu.launch_func naming the gpu.module its kernel
/// was outlined into, and the module mergeGpuModules makes.
inline constexpr llvm::StringLiteral kKernelModuleAttr = "kiln.kernel_module";
inline constexpr llvm::StringLiteral kMergedModuleName = "kiln_kernels";

/// Moves the kernels of every gpu.module of `kernels` into one, so that
/// ptxas compiles all kernels of an architecture in one run (measured on a
/// GPT-2-124M export: 0.8 s against 1.9 s for a process per kernel, two at
/// a time; bench/ptxas_modes.py). Clashing symbols are renamed; launches
/// are updated and keep their original module's name in
/// `kiln.kernel_module`.
mlir::LogicalResult mergeGpuModules(mlir::ModuleOp kernels);

/// Compiles every gpu.binary of `kernels` (PTX per architecture) to cubins
/// with `ptxas`, collecting the register, shared-memory and spill figures.
/// Kernel names, entries and argument counts come from the gpu.launch_func
/// ops of the host functions. Up to `jobs` ptxas processes run at a time
/// (0: one per core). Reports errors on `kernels`.
mlir::FailureOr<std::vector<GpuKernelCode>>
compileGpuKernels(mlir::ModuleOp kernels, const std::string &ptxas,
                  unsigned jobs = 0);

} // namespace kiln::codegen

#endif // KILN_CODEGEN_GPU_GPUCODEGEN_H
