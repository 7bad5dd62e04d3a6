//===- HostCodegen.cpp - LLVM dialect -> host shared object ---------------===//
#include "codegen/cpu/HostCodegen.h"

#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/TargetParser/Triple.h"

using namespace mlir;

namespace kiln::codegen {

std::string hostEntrySymbol(const std::string &kernel) {
  return kernel + "_entry";
}

HostTarget resolveHostTarget(const HostTarget &target) {
  HostTarget resolved = target;
  if (resolved.triple.empty())
    resolved.triple = llvm::sys::getDefaultTargetTriple();
  if (resolved.cpu.empty() || resolved.cpu == "host") {
    resolved.cpu = llvm::sys::getHostCPUName().str();
    if (resolved.features.empty()) {
      llvm::SubtargetFeatures features;
      for (const auto &feature : llvm::sys::getHostCPUFeatures())
        features.AddFeature(feature.first(), feature.second);
      resolved.features = features.getString();
    }
  }
  return resolved;
}

namespace {

void initializeNativeTarget() {
  static bool initialized = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)initialized;
}

} // namespace

bool hostHasFeature(const HostTarget &requested, llvm::StringRef feature) {
  initializeNativeTarget();
  HostTarget target = resolveHostTarget(requested);
  llvm::Triple triple(target.triple);
  // Only x86 features are asked about; checkFeatures aborts on a feature
  // the target does not know.
  if (!triple.isX86())
    return false;
  std::string error;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget)
    return false;
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      llvmTarget->createMCSubtargetInfo(triple, target.cpu, target.features));
  return info && info->checkFeatures(("+" + feature).str());
}

std::string archOfTriple(const std::string &triple) {
  return llvm::Triple(triple).getArchName().str();
}

namespace {

/// void <kernel>_entry(void **args, void *ctx): loads one pointer per
/// parameter (a buffer, or for an integer parameter a pointer to its int64
/// value: the sizes of symbolic dims) and calls the kernel, so the runtime
/// needs a single calling convention. A kernel with parallel tasks
/// (`kiln-cpu-context`) takes the runtime's context `ctx` last.
void addEntryWrapper(llvm::Module &module, llvm::Function &kernel) {
  llvm::LLVMContext &ctx = module.getContext();
  llvm::Type *ptr = llvm::PointerType::getUnqual(ctx);
  auto *type =
      llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptr, ptr}, false);
  auto *wrapper = llvm::Function::Create(
      type, llvm::GlobalValue::ExternalLinkage,
      hostEntrySymbol(kernel.getName().str()), module);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", wrapper));
  llvm::SmallVector<llvm::Value *> args;
  unsigned fromArray = kernel.arg_size();
  bool takesContext = kernel.hasFnAttribute("kiln-cpu-context");
  if (takesContext)
    --fromArray;
  for (unsigned i = 0; i < fromArray; ++i) {
    llvm::Value *slot = b.CreateConstGEP1_64(ptr, wrapper->getArg(0), i);
    llvm::Value *arg = b.CreateLoad(ptr, slot);
    llvm::Type *param = kernel.getFunctionType()->getParamType(i);
    if (param->isIntegerTy())
      arg = b.CreateTrunc(b.CreateLoad(b.getInt64Ty(), arg), param);
    args.push_back(arg);
  }
  if (takesContext)
    args.push_back(wrapper->getArg(1));
  b.CreateCall(&kernel, args);
  b.CreateRetVoid();
  // The kernel itself is internal: it gets inlined into its wrapper.
  kernel.setLinkage(llvm::GlobalValue::InternalLinkage);
}

std::string findLinker() {
  for (const char *name : {"ld.lld"}) {
    if (auto path = llvm::sys::findProgramByName(name, {KILN_LLVM_TOOLS_DIR}))
      return *path;
    if (auto path = llvm::sys::findProgramByName(name))
      return *path;
  }
  return "";
}

} // namespace

std::string emitHostSharedObject(ModuleOp module,
                                 const std::vector<std::string> &kernels,
                                 const HostTarget &requested) {
  initializeNativeTarget();
  HostTarget target = resolveHostTarget(requested);

  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  module->getContext()->appendDialectRegistry(registry);

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "kiln_kernels");
  if (!llvmModule) {
    module.emitError() << "cannot translate the host kernels to LLVM IR";
    return "";
  }

  std::string error;
  llvm::Triple triple(target.triple);
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget) {
    module.emitError() << "no LLVM target for '" << target.triple
                       << "': " << error;
    return "";
  }
  llvm::TargetOptions options;
  // a * b + c as one FMA (what BLAS libraries and onnxruntime compute):
  // the register blocks multiply and add in separate ops.
  options.AllowFPOpFusion = llvm::FPOpFusion::Fast;
  std::unique_ptr<llvm::TargetMachine> machine(
      llvmTarget->createTargetMachine(triple, target.cpu, target.features,
                                      options, llvm::Reloc::PIC_,
                                      std::nullopt,
                                      llvm::CodeGenOptLevel::Aggressive));
  if (!machine) {
    module.emitError() << "cannot create a code generator for CPU '"
                       << target.cpu << "'";
    return "";
  }
  llvmModule->setDataLayout(machine->createDataLayout());
  llvmModule->setTargetTriple(triple);

  for (const std::string &name : kernels) {
    llvm::Function *kernel = llvmModule->getFunction(name);
    if (!kernel) {
      module.emitError() << "kernel '" << name << "' vanished during lowering";
      return "";
    }
    addEntryWrapper(*llvmModule, *kernel);
  }
  // The kernels' 512-bit vectors stay whole on AVX-512 CPUs (LLVM splits
  // them in two where the CPU's tuning prefers 256 bits).
  bool wide = hostHasFeature(target, "avx512f");
  for (llvm::Function &fn : *llvmModule) {
    if (fn.isDeclaration())
      continue;
    fn.addFnAttr("target-cpu", target.cpu);
    if (!target.features.empty())
      fn.addFnAttr("target-features", target.features);
    if (wide) {
      fn.addFnAttr("prefer-vector-width", "512");
      fn.addFnAttr("min-legal-vector-width", "512");
    }
  }
  if (llvm::verifyModule(*llvmModule, &llvm::errs())) {
    module.emitError() << "internal error: the generated LLVM IR is invalid";
    return "";
  }

  // O3: unrolling, SLP and loop vectorization on top of MLIR's vectors.
  {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder builder(machine.get());
    builder.registerModuleAnalyses(mam);
    builder.registerCGSCCAnalyses(cgam);
    builder.registerFunctionAnalyses(fam);
    builder.registerLoopAnalyses(lam);
    builder.crossRegisterProxies(lam, fam, cgam, mam);
    llvm::ModulePassManager mpm =
        builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    mpm.run(*llvmModule, mam);
  }

  llvm::SmallVector<char, 0> object;
  {
    llvm::raw_svector_ostream stream(object);
    llvm::legacy::PassManager pm;
    if (machine->addPassesToEmitFile(pm, stream, nullptr,
                                     llvm::CodeGenFileType::ObjectFile)) {
      module.emitError() << "the code generator cannot emit objects for '"
                         << target.triple << "'";
      return "";
    }
    pm.run(*llvmModule);
  }

  // Link the object into a shared object the runtime can dlopen.
  std::string linker = findLinker();
  if (linker.empty()) {
    module.emitError() << "cannot find ld.lld to link the host kernels; "
                          "install lld-22 (apt-get install lld-22)";
    return "";
  }
  llvm::SmallString<128> objPath, soPath;
  int objFd;
  if (llvm::sys::fs::createTemporaryFile("kiln-kernels", "o", objFd,
                                         objPath) ||
      llvm::sys::fs::createTemporaryFile("kiln-kernels", "so", soPath)) {
    module.emitError() << "cannot create temporary files for linking";
    return "";
  }
  auto cleanup = llvm::make_scope_exit([&] {
    llvm::sys::fs::remove(objPath);
    llvm::sys::fs::remove(soPath);
  });
  {
    llvm::raw_fd_ostream out(objFd, /*shouldClose=*/true);
    out.write(object.data(), object.size());
  }
  llvm::SmallVector<llvm::StringRef> args = {
      linker, "-shared", "--no-undefined-version", "-O2", "--gc-sections",
      "-o", soPath, objPath};
  std::string linkError;
  int rc = llvm::sys::ExecuteAndWait(linker, args, std::nullopt, {}, 0, 0,
                                     &linkError);
  if (rc != 0) {
    module.emitError() << "linking the host kernels with " << linker
                       << " failed (exit " << rc << ") " << linkError;
    return "";
  }
  auto buffer = llvm::MemoryBuffer::getFile(soPath, /*IsText=*/false);
  if (!buffer) {
    module.emitError() << "cannot read the linked host kernels";
    return "";
  }
  return (*buffer)->getBuffer().str();
}

} // namespace kiln::codegen
