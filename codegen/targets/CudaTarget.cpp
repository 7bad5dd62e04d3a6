//===- CudaTarget.cpp - the cuda target: cubins and PTX per architecture --===//
//
// Every dispatch gets a GPU kernel strategy chosen from the facts that hold
// for all the target's architectures (codegen/gpu/Select.cpp); kernels take
// the strategies (codegen/gpu/Pipeline.cpp `buildGpuKernelPipeline`), are
// outlined into gpu.modules, lowered to NVVM
// and to PTX once per architecture (`buildGpuToBinaryPipeline`, with the PTX
// ISA each architecture's facts name), and ptxas turns each PTX into a
// cubin (codegen/gpu/GpuCodegen.cpp). The artifact gets one cubin and one
// PTX section per architecture and, with --embed-kernel-ir, the kernel IR
// the simulator runs.
//
//===----------------------------------------------------------------------===//
#include "codegen/gpu/GpuCodegen.h"
#include "codegen/gpu/Strategy.h"
#include "codegen/targets/Target.h"
#include "codegen/targets/TargetFacts.h"
#include "dialects/kiln/HalfFloat.h"
#include "manifest.pb.h"
#include "passes/Passes.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <chrono>

using namespace mlir;

namespace kiln::targets {

namespace {

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

class CudaTarget final : public Target {
public:
  explicit CudaTarget(std::vector<std::string> chips)
      : chips(std::move(chips)), common(commonFacts(this->chips)) {}

  std::string spec() const override {
    std::string spec = "cuda:";
    for (size_t i = 0; i < chips.size(); ++i)
      spec += (i ? "," : "") + chips[i];
    return spec;
  }

  /// At f32, no: tensor cores take no f32 operands, so the op would run as
  /// attention-fallback (SIMT GEMMs, generic kernels), slower than the
  /// pieces' own strategies (the row-fused softmax among them). Under
  /// --precision its operands are narrowed and flash-attention-mma-sync
  /// takes it whole.
  bool raisesAttention() const override { return false; }
  bool raisesNarrowAttention() const override { return true; }
  /// A model whose attention is already f16 or bf16 (an fp16 export) has
  /// its chains raised at its own precision: only those.
  GraphRaising graphRaising() const override {
    return {true, /*halfOnly=*/true, symbolicAttention("fp16")};
  }
  /// flash-attention-mma-sync reads the batch, query and key counts from
  /// its size parameters; it takes f16 and bf16 operands and heads of at
  /// most 128 elements in multiples of 8, and --precision narrows the
  /// attention of heads of kMinNarrowK or more (a symbolic chain has no
  /// other kernel: the fallback decomposition needs static shapes).
  SymbolicAttention symbolicAttention(llvm::StringRef precision) const override {
    if (precision != "fp16" && precision != "bf16")
      return {};
    return {true, kMinNarrowK, 128, 8};
  }

  /// Weights whose [K, N] rows cannot be copied in 16-byte chunks are
  /// stored [N, K] for the tensor-core GEMM (then folded to constants).
  void buildDispatchPipeline(OpPassManager &pm) const override {
    // Layer and RMS norms stay whole: the row-fused strategy runs each as
    // one kernel.
    kiln::buildDispatchPipeline(
        pm,
        [](OpPassManager &graph) {
          // One K loop for the tensor-core GEMMs where fusion split it.
          graph.addNestedPass<func::FuncOp>(
              createKilnGpuCollapseContractionLoops());
          graph.addNestedPass<func::FuncOp>(
              createKilnTransposeUnalignedWeights());
          graph.addNestedPass<func::FuncOp>(createKilnFoldConstantTransposes());
        },
        /*keepNorms=*/true, raiseAttentionOptions(*this));
    pm.addPass(createSelectStrategiesPass(spec(), hostCpu()));
    // Packed weights (MatMulNBits) are decoded by the GEMM that reads
    // them: in registers as the few-row GEMM streams them, into the shared
    // ring of the tensor-core one.
    KilnFuseWeightDecodeOptions decode;
    decode.strategies = {std::string(kGemmSmallM), std::string(kGemmMmaSync)};
    pm.addNestedPass<func::FuncOp>(createKilnFuseWeightDecode(decode));
    // A GEMM's bias, activation, residual and cast run in its epilogue.
    pm.addNestedPass<func::FuncOp>(createKilnGpuFuseEpilogues());
    // A norm's residual add before it and cast after it, a softmax's scale
    // and mask: in the row-fused kernel.
    pm.addPass(createKilnGpuFuseRows());
    // The head split before a flash attention and the head merge after it
    // are read and written in place by the flash kernel.
    pm.addPass(createKilnGpuFuseAttentionLayouts());
  }

  void buildKernelPipeline(OpPassManager &pm) const override {
    buildGpuKernelPipeline(pm);
  }

  /// One kernel IR serves every architecture of the target, so the choice
  /// uses the facts all of them share (commonFacts).
  DictionaryAttr selectStrategy(Operation *root) const override {
    return selectGpuStrategy(root, common);
  }

  llvm::ArrayRef<llvm::StringRef> extraEmitKinds() const override {
    static const llvm::StringRef kinds[] = {"ptx"};
    return kinds;
  }

  /// `--ptx-isa`: one LLVM can emit and every architecture has.
  LogicalResult checkPtxIsa(ModuleOp module, unsigned isa) const {
    if (!isa)
      return success();
    if (!lookupPtxIsa(isa))
      return module.emitError() << "--ptx-isa " << isa / 10 << "." << isa % 10
                                << " is not a PTX ISA Kiln can emit; use one of "
                                << knownPtxIsaList();
    for (const std::string &chip : chips) {
      const GpuArchFacts &facts = *lookupGpuArch(chip);
      if (isa < facts.minPtxIsa)
        return module.emitError()
               << "--ptx-isa " << isa / 10 << "." << isa % 10 << " has no "
               << chip << "; " << chip << " needs PTX ISA "
               << facts.minPtxIsa / 10 << "." << facts.minPtxIsa % 10
               << " or newer";
    }
    return success();
  }

  /// The PTX ISA the artifact's PTX is in.
  unsigned ptxIsaOf(const CompileOptions &options) const {
    if (options.ptxIsa)
      return options.ptxIsa;
    unsigned isa = 0;
    for (const std::string &chip : chips)
      isa = std::max(isa, lookupGpuArch(chip)->ptxIsa);
    return isa;
  }

  /// Kernel IR -> gpu.binary ops holding PTX per architecture.
  LogicalResult lowerToPtx(ModuleOp module, const CompileOptions &options,
                           const std::string &ptxas,
                           std::string *kernelIR) const {
    if (failed(checkPtxIsa(module, options.ptxIsa)) ||
        failed(lowerToKernels(module, options)))
      return failure();
    ModuleOp kernels = kernelModule(module);
    if (!kernels)
      return module.emitError("the model has no work to compile into kernels");
    // The kernel IR the simulator runs: gpu.funcs before NVVM lowering.
    if (kernelIR) {
      llvm::raw_string_ostream os(*kernelIR);
      if (failed(writeBytecodeToFile(kernels, os)))
        return module.emitError("cannot serialize the kernel IR");
    }
    // One module for all kernels: one ptxas run per architecture.
    if (failed(codegen::mergeGpuModules(kernels)))
      return failure();
    PassManager pm(module.getContext());
    if (options.configure)
      options.configure(pm);
    buildGpuToBinaryPipeline(pm.nest<ModuleOp>(), chips,
                             codegen::toolkitOfPtxas(ptxas), options.ptxIsa);
    return runPipeline(pm, module);
  }

  LogicalResult emit(ModuleOp module, StringRef kind,
                     const CompileOptions &options,
                     llvm::raw_ostream &os) const override {
    if (kind != "ptx")
      return Target::emit(module, kind, options, os);
    std::string error;
    std::string ptxas = codegen::findPtxas(options.cudaPath, error);
    if (ptxas.empty())
      return module.emitError(error);
    if (failed(lowerToPtx(module, options, ptxas, nullptr)))
      return failure();
    for (auto binary : kernelModule(module).getOps<gpu::BinaryOp>())
      for (Attribute attr : binary.getObjects()) {
        auto object = cast<gpu::ObjectAttr>(attr);
        os << "// module " << binary.getName() << ", target "
           << object.getTarget() << "\n"
           << object.getObject().getValue() << "\n";
      }
    return success();
  }

  FailureOr<codegen::ArtifactContents>
  compile(ModuleOp module, const CompileOptions &options,
          CompileTimes &times) const override {
    std::string error;
    std::string ptxas = codegen::findPtxas(options.cudaPath, error);
    if (ptxas.empty())
      return module.emitError(error);
    auto start = std::chrono::steady_clock::now();
    std::string kernelIR;
    if (failed(lowerToPtx(module, options, ptxas,
                          options.embedKernelIR ? &kernelIR : nullptr)))
      return failure();
    times.passes = secondsSince(start);
    start = std::chrono::steady_clock::now();
    FailureOr<std::vector<codegen::GpuKernelCode>> compiled =
        codegen::compileGpuKernels(kernelModule(module), ptxas, options.jobs);
    if (failed(compiled))
      return failure();
    times.codegen = secondsSince(start);
    times.codegenName = "ptxas";
    FailureOr<codegen::ArtifactContents> contents =
        codegen::buildGpuArtifactContents(module, std::move(*compiled), chips);
    if (failed(contents))
      return failure();
    artifact::Manifest &manifest = *contents->manifest;
    if (options.embedKernelIR) {
      artifact::Section *section = manifest.add_sections();
      section->set_name("kernel_ir");
      section->set_kind(artifact::KERNEL_IR);
      codegen::SectionPayload payload;
      payload.manifestIndex = manifest.sections_size() - 1;
      payload.bytes = std::move(kernelIR);
      contents->sections.push_back(std::move(payload));
    }
    manifest.set_target(spec());
    // What the images need from the driver (kiln inspect says it).
    manifest.set_cubin_cuda_release(codegen::ptxasRelease(ptxas));
    manifest.set_ptx_isa(ptxIsaOf(options));
    if (const PtxIsaFacts *isa = lookupPtxIsa(ptxIsaOf(options)))
      manifest.set_ptx_cuda_release(isa->cudaRelease.str());
    return contents;
  }

private:
  /// The facts that hold for every architecture in `chips`: the smallest
  /// limits.
  static GpuArchFacts commonFacts(const std::vector<std::string> &chips) {
    GpuArchFacts common = *lookupGpuArch(chips.front());
    for (const std::string &chip : chips) {
      const GpuArchFacts &f = *lookupGpuArch(chip);
      common.maxThreadsPerBlock =
          std::min(common.maxThreadsPerBlock, f.maxThreadsPerBlock);
      common.sharedBytesPerBlock =
          std::min(common.sharedBytesPerBlock, f.sharedBytesPerBlock);
      common.sharedBytesPerSM =
          std::min(common.sharedBytesPerSM, f.sharedBytesPerSM);
      common.maxRegistersPerThread =
          std::min(common.maxRegistersPerThread, f.maxRegistersPerThread);
      common.smCount = std::min(common.smCount, f.smCount);
    }
    return common;
  }

  std::vector<std::string> chips;
  GpuArchFacts common;
};

} // namespace

std::unique_ptr<Target> createCudaTarget(llvm::StringRef options,
                                         std::string &error) {
  if (options.empty()) {
    error = "--target cuda needs the GPU architectures to compile for, e.g. "
            "cuda:sm_80 or cuda:sm_80,sm_90a (known: " +
            knownGpuArchList() + ")";
    return nullptr;
  }
  std::vector<std::string> chips;
  llvm::SmallVector<llvm::StringRef> parts;
  options.split(parts, ',');
  for (llvm::StringRef chip : parts) {
    if (!lookupGpuArch(chip)) {
      error = "unknown GPU architecture '" + chip.str() +
              "' in --target cuda:" + options.str() + "; use " +
              knownGpuArchList();
      return nullptr;
    }
    if (!llvm::is_contained(chips, chip.str()))
      chips.push_back(chip.str());
  }
  return std::make_unique<CudaTarget>(std::move(chips));
}

} // namespace kiln::targets
