//===- Pipelines.cpp - Kiln's named pass pipelines ------------------------===//
//
// Each pipeline reads top to bottom as the design does: graph IR -> dispatch
// IR -> kernel IR -> LLVM. The `kiln` driver and `kiln-opt` run the same
// functions, so what a test checks with kiln-opt is what the compiler does.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/OneShotAnalysis.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace kiln {

void buildGraphPipeline(OpPassManager &pm) {
  // kiln ops without a kernel strategy of their own become linalg first, so
  // that elementwise fusion sees through them.
  pm.addNestedPass<func::FuncOp>(createKilnLowerGraphToLinalg());
  // Weights are laid out once, here, instead of on every run.
  pm.addNestedPass<func::FuncOp>(createKilnFoldConstantTransposes());
  pm.addPass(createCanonicalizerPass());
  // Elementwise chains (bias + GELU, scale + mask) collapse into one generic
  // each, which is what makes them one kernel later.
  pm.addPass(createLinalgElementwiseOpFusionPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildDispatchPipeline(OpPassManager &pm) {
  buildGraphPipeline(pm);
  pm.addNestedPass<func::FuncOp>(createKilnFormDispatches());
  pm.addPass(createCSEPass());
}

void buildCpuKernelPipeline(OpPassManager &pm) {
  // Tiling and vectorization work on tensors, where slices are values and
  // the register block is plain to see.
  pm.addNestedPass<func::FuncOp>(createKilnCpuTileAndVectorize());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // tensor.empty feeding a result is replaced by the kernel's output buffer,
  // so the kernel writes its result in place.
  pm.addPass(bufferization::createEmptyTensorEliminationPass());
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = false;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  pm.addPass(createCanonicalizerPass());
  // Temporaries inside a kernel (softmax's row max and sum) get freed.
  bufferization::buildBufferDeallocationPipeline(pm);
  pm.addNestedPass<func::FuncOp>(createKilnCpuLowerVectors());
  // What the vectorizer left (ops it rejects) becomes scalar loops.
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildCpuToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  // Kernels take bare pointers: shapes are static, and the runtime passes
  // one pointer per buffer.
  ConvertFuncToLLVMPassOptions funcOptions;
  funcOptions.useBarePtrCallConv = true;
  pm.addPass(createConvertFuncToLLVMPass(funcOptions));
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void registerPipelines() {
  PassPipelineRegistration<>(
      "kiln-graph-pipeline",
      "Graph IR -> optimized graph IR (kiln op lowering, elementwise fusion)",
      buildGraphPipeline);
  PassPipelineRegistration<>(
      "kiln-dispatch-pipeline",
      "Graph IR -> dispatch IR (graph pipeline, then dispatch formation)",
      buildDispatchPipeline);
  PassPipelineRegistration<>(
      "kiln-cpu-kernel-pipeline",
      "Dispatch IR -> CPU kernel IR (outline, tile, vectorize, bufferize)",
      buildCpuKernelPipeline);
  PassPipelineRegistration<>("kiln-cpu-to-llvm-pipeline",
                             "CPU kernel IR -> LLVM dialect",
                             buildCpuToLLVMPipeline);
}

} // namespace kiln
