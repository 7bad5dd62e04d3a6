//===- kiln-opt.cpp - mlir-opt with every Kiln dialect and pass -----------===//
#include "codegen/gpu/Strategy.h"
#include "codegen/sim/Simulator.h"
#include "codegen/targets/Target.h"
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  kiln::registerKilnPasses();
  kiln::registerPipelines();
  kiln::registerKilnGpuPasses();
  kiln::registerGpuKernelPipeline();
  kiln::targets::registerSelectStrategiesPass();
  kiln::sim::registerTestSimulatePass();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<kiln::KilnDialect>();
  // gpu-module-to-binary translates kernels to LLVM IR in-process.
  mlir::registerAllGPUToLLVMIRTranslations(registry);
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "Kiln optimizer driver\n", registry));
}
