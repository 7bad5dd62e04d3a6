//===- CpuTarget.cpp - the cpu target: host shared objects ----------------===//
//
// Contractions get the `cpu-gemm` strategy, everything else `cpu-vector`;
// kernels are tiled and vectorized for the host as their configuration says
// (passes/CpuTileAndVectorize.cpp in `buildCpuKernelPipeline`), lowered to the LLVM dialect, compiled in
// process at O3 for the host CPU (or `--cpu NAME`) and linked into one
// shared object that travels in the artifact's `kernels.<arch>` section.
//
//===----------------------------------------------------------------------===//
#include "codegen/cpu/HostCodegen.h"
#include "codegen/targets/Target.h"
#include "codegen/targets/TargetFacts.h"
#include "manifest.pb.h"
#include "passes/Passes.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <chrono>

using namespace mlir;

namespace kiln::targets {

namespace {

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

class CpuTarget final : public Target {
public:
  std::string spec() const override { return "cpu"; }

  void setHostCpu(const std::string &cpu) override {
    Target::setHostCpu(cpu);
    codegen::HostTarget host{/*triple=*/"", cpu, /*features=*/""};
    facts_ = codegen::hostHasFeature(host, "avx512f") ? CpuFacts::avx512()
                                                      : CpuFacts();
  }

  /// cpu-flash-attention takes symbolic batch, query and key counts.
  SymbolicAttention symbolicAttention(llvm::StringRef) const override {
    return {true};
  }

  void buildKernelPipeline(OpPassManager &pm) const override {
    buildCpuKernelPipeline(pm);
  }

  /// Constant GEMM weights are stored in the column panels the GEMM reads.
  void buildDispatchPipeline(OpPassManager &pm) const override {
    int64_t panel = facts_.panelColumns;
    kiln::buildDispatchPipeline(
        pm,
        [panel](OpPassManager &graph) {
          KilnCpuPackWeightsOptions options;
          options.panelColumns = panel;
          graph.addPass(createKilnCpuPackWeights(options));
        },
        /*keepNorms=*/false, raiseAttentionOptions(*this));
    pm.addPass(createSelectStrategiesPass(spec(), hostCpu()));
    // Packed weights (MatMulNBits) are decoded panel by panel in the GEMM.
    KilnFuseWeightDecodeOptions decode;
    decode.strategies = {"cpu-gemm"};
    pm.addNestedPass<func::FuncOp>(createKilnFuseWeightDecode(decode));
  }

  /// Contractions take packed column panels and register blocks
  /// (`cpu-gemm`); attention is one loop nest with an online softmax over
  /// blocks of a vector register's keys (`cpu-flash-attention`, or
  /// `cpu-attention-fallback`, its decomposition, for what that does not
  /// take); everything else is tiled for vectors (`cpu-vector`).
  DictionaryAttr selectStrategy(Operation *root) const override {
    Builder b(root->getContext());
    const CpuFacts &facts = facts_;
    SmallVector<NamedAttribute> config = {
        // The innermost tile: two vector registers of f32.
        b.getNamedAttr("vector_width",
                       b.getI64IntegerAttr(2 * facts.vectorBits / 32))};
    auto op = dyn_cast<linalg::LinalgOp>(root);
    StringRef strategy = "cpu-vector";
    if (op && linalg::isaContractionOpInterface(op))
      strategy = "cpu-gemm";
    // Attention as one loop nest with an online softmax; what that does
    // not take is decomposed, and its GEMMs take register blocks too.
    else if (isa<AttentionOp>(root))
      strategy = cpuFlashAttentionHandles(root) ? "cpu-flash-attention"
                                                : "cpu-attention-fallback";
    // 32 keys per step of the online softmax (four AVX2 registers of f32
    // scores): its per-block work (max, rescale, exp) is spread over more
    // keys. Measured with GPT-2's heads, causal, d64, one thread: 8 keys
    // 6.1 / 1.67 ms at 256 / 128 tokens, 16 keys 5.6 / 1.46 / 88 ms (1,024),
    // 32 keys 5.4 / 1.54 / 81 ms.
    if (strategy == "cpu-flash-attention")
      config.push_back(b.getNamedAttr(
          "key_block", b.getI64IntegerAttr(4 * facts.vectorBits / 32)));
    else if (strategy != "cpu-vector")
      config.push_back(b.getNamedAttr(
          "register_block",
          b.getDenseI64ArrayAttr({int64_t(facts.registerBlockRows),
                                  int64_t(facts.panelColumns)})));
    config.push_back(b.getNamedAttr("strategy", b.getStringAttr(strategy)));
    return b.getDictionaryAttr(config);
  }

  FailureOr<codegen::ArtifactContents>
  compile(ModuleOp module, const CompileOptions &options,
          CompileTimes &times) const override {
    if (options.ptxIsa)
      return module.emitError("--ptx-isa applies to cuda targets; the cpu "
                              "target has no PTX");
    auto start = std::chrono::steady_clock::now();
    // Graph -> dispatch -> kernels -> LLVM in one run, so that the printing
    // and timing flags see every pass.
    PassManager pm(module.getContext());
    if (options.configure)
      options.configure(pm);
    buildDispatchPipeline(pm);
    pm.addPass(createKilnOutlineDispatches());
    OpPassManager &kernelPm = pm.nest<ModuleOp>();
    buildKernelPipeline(kernelPm);
    buildCpuToLLVMPipeline(kernelPm);
    if (failed(runPipeline(pm, module)))
      return failure();
    times.passes = secondsSince(start);
    start = std::chrono::steady_clock::now();

    ModuleOp kernels = kernelModule(module);
    std::vector<std::string> kernelNames;
    if (kernels)
      for (auto func : kernels.getOps<LLVM::LLVMFuncOp>())
        // Internal functions are a kernel's parallel tasks.
        if (!func.isExternal() &&
            func.getLinkage() != LLVM::Linkage::Internal)
          kernelNames.push_back(func.getSymName().str());
    codegen::HostTarget host = codegen::resolveHostTarget(
        {/*triple=*/"", /*cpu=*/options.hostCpu, /*features=*/""});
    std::string sharedObject;
    if (kernels) {
      sharedObject =
          codegen::emitHostSharedObject(kernels, kernelNames, host);
      if (sharedObject.empty())
        return failure();
    }
    times.codegen = secondsSince(start);

    codegen::KernelCode code;
    code.kind = artifact::HOST_SHARED_OBJECT;
    code.arch = codegen::archOfTriple(host.triple);
    code.bytes = std::move(sharedObject);
    code.symbolOf = codegen::hostEntrySymbol;
    std::vector<codegen::KernelCode> codes;
    codes.push_back(std::move(code));
    FailureOr<codegen::ArtifactContents> contents =
        codegen::buildArtifactContents(module, std::move(codes));
    if (failed(contents))
      return failure();
    artifact::Manifest &manifest = *contents->manifest;
    manifest.set_target(spec());
    manifest.set_host_triple(host.triple);
    manifest.set_host_cpu(host.cpu);
    // The extensions the runtime checks before it runs the code (a CPU
    // without one would die of SIGILL).
    static const char *const checked[] = {
        "sse4.2",     "avx",        "avx2",       "fma",        "f16c",
        "bmi",        "bmi2",       "avx512f",    "avx512bw",   "avx512dq",
        "avx512vl",   "avx512cd",   "avx512vnni", "avx512bf16", "avx512fp16",
        "avx512vbmi", "avx512ifma", "avxvnni"};
    for (const char *feature : checked)
      if (codegen::hostHasFeature(host, feature))
        manifest.add_host_features(feature);
    return contents;
  }

private:
  CpuFacts facts_ = [] {
    codegen::HostTarget host;
    return codegen::hostHasFeature(host, "avx512f") ? CpuFacts::avx512()
                                                    : CpuFacts();
  }();
};

} // namespace

std::unique_ptr<Target> createCpuTarget(llvm::StringRef options,
                                        std::string &error) {
  if (!options.empty()) {
    error = "the cpu target takes no options (got 'cpu:" + options.str() +
            "'); pick the CPU with --cpu NAME";
    return nullptr;
  }
  return std::make_unique<CpuTarget>();
}

} // namespace kiln::targets
