//===- Pipelines.cpp - Kiln's named pass pipelines ------------------------===//
//
// Each pipeline reads top to bottom as the design does: graph IR -> dispatch
// IR -> kernel IR -> LLVM. The `kiln` driver and `kiln-opt` run the same
// functions, so what a test checks with kiln-opt is what the compiler does.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"
#include "codegen/targets/TargetFacts.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/OneShotAnalysis.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace kiln {

void buildGraphPipeline(OpPassManager &pm, bool keepNorms,
                        std::optional<KilnRaiseAttentionOptions> raiseAttention) {
  // Exporters' decomposed attention becomes kiln.attention first, while
  // the chain is still the importer's ops (the canonicalizer folds the
  // copies the importer wrote for Expand and the like out of its way).
  pm.addPass(createCanonicalizerPass());
  if (raiseAttention)
    pm.addNestedPass<func::FuncOp>(createKilnRaiseAttention(*raiseAttention));
  // Norms and activations spelled out node by node become the kiln ops they
  // are: a target keeps the norms whole for its row kernel, and the
  // activations lower to one clean generic each.
  pm.addNestedPass<func::FuncOp>(createKilnRaiseNorms());
  pm.addNestedPass<func::FuncOp>(createKilnRaiseActivations());
  pm.addNestedPass<func::FuncOp>(createKilnRaiseRotary());
  // kiln ops without a kernel strategy of their own become linalg first, so
  // that elementwise fusion sees through them; kiln.attention (and the
  // norms, for a target that asks) stays whole and becomes a dispatch of
  // its own.
  KilnLowerGraphToLinalgOptions lower;
  lower.keepNorms = keepNorms;
  pm.addNestedPass<func::FuncOp>(createKilnLowerGraphToLinalg(lower));
  // Weights are laid out once, here, instead of on every run.
  pm.addNestedPass<func::FuncOp>(createKilnFoldConstantTransposes());
  pm.addPass(createCanonicalizerPass());
  // Elementwise chains (bias + GELU, scale + mask) collapse into one generic
  // each, which is what makes them one kernel later.
  pm.addPass(createKilnFuseElementwise());
  // What every reader rounds (the q, k, v a narrow attention reads from
  // the QKV projection) is stored rounded.
  pm.addPass(createKilnNarrowProducers());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildDispatchPipeline(
    OpPassManager &pm,
    const std::function<void(OpPassManager &)> &beforeDispatch,
    bool keepNorms, std::optional<KilnRaiseAttentionOptions> raiseAttention) {
  buildGraphPipeline(pm, keepNorms, raiseAttention);
  if (beforeDispatch)
    beforeDispatch(pm);
  pm.addNestedPass<func::FuncOp>(createKilnFormDispatches());
  pm.addPass(createCSEPass());
}

void addKernelBufferization(OpPassManager &pm, bool keepWholeOps) {
  // tensor.empty feeding a result is replaced by the kernel's output buffer,
  // so the kernel writes its result in place.
  pm.addPass(bufferization::createEmptyTensorEliminationPass());
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = false;
  bufferize.allowUnknownOps = keepWholeOps;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  pm.addPass(createCanonicalizerPass());
  // Temporaries inside a kernel (softmax's row max and sum) get freed.
  bufferization::buildBufferDeallocationPipeline(pm);
}

void buildCpuKernelPipeline(OpPassManager &pm) {
  // Attention as one loop nest with an online softmax (cpu-flash-attention);
  // kernels that no strategy took whole fall back to linalg first, while the
  // kernel is on tensors, so every later stage sees the contractions,
  // reductions and elementwise generics it knows.
  pm.addNestedPass<func::FuncOp>(createKilnCpuFlashAttention());
  pm.addNestedPass<func::FuncOp>(createKilnDecomposeAttention());
  pm.addNestedPass<func::FuncOp>(createKilnDecomposeAggregates());
  // Tiling and vectorization work on tensors, where slices are values and
  // the register block is plain to see.
  pm.addNestedPass<func::FuncOp>(createKilnCpuTileAndVectorize());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  addKernelBufferization(pm);
  pm.addNestedPass<func::FuncOp>(createKilnCpuLowerVectors());
  // bf16 and f16 math and arithmetic run in f32 (exact for the products
  // of --precision's contractions): x86 has no bf16 arithmetic, and LLVM
  // would call compiler-rt helpers for it.
  pm.addPass(math::createMathExtendToSupportedTypes());
  arith::ArithEmulateUnsupportedFloatsOptions emulate;
  emulate.sourceTypeStrs = {"bf16", "f16"};
  pm.addPass(arith::createArithEmulateUnsupportedFloats(emulate));
  // exp/tanh/erf/log as vectorizable polynomials, not scalarized libm calls.
  pm.addNestedPass<func::FuncOp>(createKilnExpandMath());
  // What the vectorizer left (ops it rejects) becomes scalar loops.
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  // Buffers with symbolic dims: base pointers viewed at their shape.
  pm.addNestedPass<func::FuncOp>(createKilnKernelBareAbi());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // Parallel loops at the top of a kernel run as tasks on the runtime's
  // threads.
  pm.addPass(createKilnCpuOutlineTasks());
  pm.addPass(createCanonicalizerPass());
}

void buildCpuToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(memref::createExpandStridedMetadataPass());
  // bf16 conversions as integer arithmetic: no compiler-rt helpers
  // (__truncsfbf2) in the kernels' shared object.
  arith::ArithExpandOpsPassOptions expand;
  expand.includeBf16 = true;
  pm.addPass(arith::createArithExpandOpsPass(expand));
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
  pm.addPass(createKilnCpuLowerTaskCalls());
}

void buildGpuToBinaryPipeline(OpPassManager &pm, ArrayRef<std::string> chips,
                              const std::string &cudaPath, unsigned ptxIsa) {
  // Large shared memory as dynamic, TMA descriptors as pointers.
  pm.addPass(createKilnGpuHopperAbi());
  OpPassManager &device = pm.nest<gpu::GPUModuleOp>();
  // Tensor-core collectives (ldmatrix, mma.sync, cp.async) to NVVM first,
  // on memrefs, as upstream's GPU-to-NVVM pipeline orders it.
  device.addPass(createKilnLowerBf16MmaSync());
  device.addPass(createKilnLowerWarpgroupFragments());
  device.addPass(createConvertNVGPUToNVVMPass());
  device.addPass(memref::createExpandStridedMetadataPass());
  device.addPass(createLowerAffinePass());
  device.addPass(createSCFToControlFlowPass());
  // Kernels take one plain device pointer per buffer (shapes are static),
  // which is what the runtime passes to cuLaunchKernel.
  ConvertGpuOpsToNVVMOpsOptions nvvm;
  nvvm.useBarePtrCallConv = true;
  device.addPass(createConvertGpuOpsToNVVMOps(nvvm));
  // NVVM ops that are PTX templates (mbarrier waits, wgmma fences, TMA
  // copies) become inline assembly.
  device.addPass(createConvertNVVMToLLVMPass());
  device.addPass(createCanonicalizerPass());
  device.addPass(createCSEPass());
  device.addPass(createReconcileUnrealizedCastsPass());
  for (const std::string &chip : chips) {
    GpuNVVMAttachTargetOptions target;
    target.chip = chip;
    // sm_80 and sm_90a need a newer PTX ISA than LLVM's default; the
    // architecture's facts say which, unless the caller chose one.
    if (const targets::GpuArchFacts *facts = targets::lookupGpuArch(chip))
      target.features = "+ptx" + std::to_string(ptxIsa ? ptxIsa : facts->ptxIsa);
    target.optLevel = 3;
    pm.addPass(createGpuNVVMAttachTarget(target));
  }
  GpuModuleToBinaryPassOptions binary;
  binary.toolkitPath = cudaPath;
  binary.compilationTarget = "isa"; // PTX; ptxas runs in codegen/gpu
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

namespace {
struct GpuBinaryPipelineOptions
    : public PassPipelineOptions<GpuBinaryPipelineOptions> {
  ListOption<std::string> chips{*this, "chips",
                                llvm::cl::desc("GPU architectures"),
                                llvm::cl::list_init<std::string>(
                                    {"sm_80", "sm_90a"})};
  Option<std::string> cudaPath{*this, "cuda-path",
                               llvm::cl::desc("CUDA toolkit"),
                               llvm::cl::init("/usr/local/cuda")};
};
} // namespace

void registerPipelines() {
  PassPipelineRegistration<GpuBinaryPipelineOptions>(
      "kiln-gpu-to-binary-pipeline",
      "GPU kernel IR -> gpu.binary with PTX per architecture",
      [](OpPassManager &pm, const GpuBinaryPipelineOptions &options) {
        buildGpuToBinaryPipeline(
            pm, SmallVector<std::string>(options.chips.begin(),
                                         options.chips.end()),
            options.cudaPath);
      });
  PassPipelineRegistration<>(
      "kiln-graph-pipeline",
      "Graph IR -> optimized graph IR (kiln op lowering, elementwise fusion)",
      [](OpPassManager &pm) { buildGraphPipeline(pm); });
  PassPipelineRegistration<>(
      "kiln-dispatch-pipeline",
      "Graph IR -> dispatch IR (graph pipeline, then dispatch formation)",
      [](OpPassManager &pm) { buildDispatchPipeline(pm); });
  PassPipelineRegistration<>(
      "kiln-cpu-kernel-pipeline",
      "Dispatch IR -> CPU kernel IR (outline, tile, vectorize, bufferize)",
      buildCpuKernelPipeline);
  PassPipelineRegistration<>("kiln-cpu-to-llvm-pipeline",
                             "CPU kernel IR -> LLVM dialect",
                             buildCpuToLLVMPipeline);
}

} // namespace kiln
