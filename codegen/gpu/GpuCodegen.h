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
