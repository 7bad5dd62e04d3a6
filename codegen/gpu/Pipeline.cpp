//===- Pipeline.cpp - the GPU kernel pipeline -----------------------------===//
//
// Outlined kernels -> GPU kernel IR: the same for every GPU architecture;
// what differs per architecture is in the kernels' configurations (chosen
// by kiln-select-strategies from the facts) and in the binary emission.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/Strategy.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace kiln {

void buildGpuKernelPipeline(OpPassManager &pm) {
  // Attention's fallback (attention-fallback), on tensors, as on the CPU;
  // flash-attention kernels keep the op whole through bufferization.
  pm.addNestedPass<func::FuncOp>(createKilnDecomposeAttention());
  // Buffers with symbolic dims: base pointers viewed at their shape, which
  // kiln-gpu-sink-views moves into the launches.
  pm.addNestedPass<func::FuncOp>(createKilnKernelBareAbi());
  pm.addNestedPass<func::FuncOp>(createKilnDecomposeAggregates());
  addKernelBufferization(pm, /*keepWholeOps=*/true);
  // Attention whole (flash-attention-mma-sync), on the buffers it reads
  // and the one its result is copied to.
  pm.addNestedPass<func::FuncOp>(createKilnGpuFlashAttentionWgmma());
  pm.addNestedPass<func::FuncOp>(createKilnGpuFlashAttention());
  // The strategies, each on the kernels whose configuration names it (its
  // own or a part's): contractions get shared-memory tiles and register
  // blocks, row reductions (softmax's max and sum, ReduceMean) a warp per
  // row, elementwise chains vector loads and stores.
  pm.addNestedPass<func::FuncOp>(createKilnGpuGemmWgmma());
  pm.addNestedPass<func::FuncOp>(createKilnGpuGemmMmaSync());
  pm.addNestedPass<func::FuncOp>(createKilnGpuGemmSmallM());
  pm.addNestedPass<func::FuncOp>(createKilnGpuGemm());
  // Norms (and other row-wise kernels): one launch, the row on chip.
  pm.addNestedPass<func::FuncOp>(createKilnGpuRowFused());
  pm.addNestedPass<func::FuncOp>(createKilnGpuRowReduce());
  pm.addNestedPass<func::FuncOp>(createKilnGpuElementwise());
  // Every other linalg op becomes a parallel loop nest (reductions stay
  // sequential inside), which the generic strategy maps onto blocks and
  // threads.
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToParallelLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addNestedPass<func::FuncOp>(createKilnGpuMapToThreads());
  // exp/tanh/erf as polynomials: no libdevice calls to link, and the kernel
  // IR the simulator runs is the one that is compiled.
  pm.addNestedPass<func::FuncOp>(createKilnExpandMath());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // Constants and index math go into the kernels instead of becoming
  // kernel arguments.
  pm.addPass(createGpuLaunchSinkIndexComputationsPass());
  // Views of buffers with symbolic dims go inside the launches, so kernels
  // take base pointers and sizes; then buffers come first, as the launch
  // program passes them.
  pm.addNestedPass<func::FuncOp>(createKilnGpuSinkViews());
  // Which strategy built each launch, for the artifact.
  pm.addNestedPass<func::FuncOp>(createKilnGpuRecordLaunchConfigs());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createKilnGpuOrderKernelArgs());
}

void registerGpuKernelPipeline() {
  PassPipelineRegistration<>(
      "kiln-gpu-kernel-pipeline",
      "Outlined kernels -> GPU kernel IR (the strategies their kiln.config "
      "names, then the generic block/thread mapping)",
      buildGpuKernelPipeline);
}

} // namespace kiln
