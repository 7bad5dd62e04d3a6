//===- Target.cpp - the target registry and what targets share ------------===//
#include "codegen/targets/Target.h"

#include "passes/Passes.h"

#include "mlir/IR/Diagnostics.h"

using namespace mlir;

namespace kiln::targets {

namespace {

/// Every target Kiln has: the prefix of its spec (before `:`) and the
/// function that makes it from what follows. A new target is one line.
struct Registration {
  llvm::StringLiteral kind;
  std::unique_ptr<Target> (*create)(llvm::StringRef options,
                                    std::string &error);
  llvm::StringLiteral example;
};
const Registration kTargets[] = {
    {"cpu", createCpuTarget, "cpu"},
    {"cuda", createCudaTarget, "cuda:sm_80, cuda:sm_90a, cuda:sm_80,sm_90a"},
};

} // namespace

Target::~Target() = default;

std::optional<KilnRaiseAttentionOptions>
raiseAttentionOptions(const Target &target) {
  Target::GraphRaising raising = target.graphRaising();
  if (!raising.enabled)
    return std::nullopt;
  KilnRaiseAttentionOptions options;
  options.halfOnly = raising.halfOnly;
  options.symbolicDims = raising.symbolic.taken;
  options.symbolicMinHead = raising.symbolic.minHead;
  options.symbolicMaxHead = raising.symbolic.maxHead;
  options.symbolicHeadMultiple = raising.symbolic.headMultiple;
  return options;
}

void Target::buildDispatchPipeline(OpPassManager &pm) const {
  kiln::buildDispatchPipeline(pm, /*beforeDispatch=*/{}, /*keepNorms=*/false,
                              raiseAttentionOptions(*this));
  pm.addPass(createSelectStrategiesPass(spec(), hostCpu()));
}

LogicalResult Target::emit(ModuleOp module, StringRef kind,
                           const CompileOptions &, llvm::raw_ostream &) const {
  return module.emitError() << "--emit " << kind
                            << " is not available for --target " << spec();
}

LogicalResult Target::runPipeline(PassManager &pm, ModuleOp module) {
  bool reported = false;
  ScopedDiagnosticHandler watch(module.getContext(), [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error)
      reported = true;
    return failure(); // pass it on to the driver's handler
  });
  if (succeeded(pm.run(module)))
    return success();
  if (!reported)
    module.emitError("internal error: a compiler pass failed without saying "
                     "why; rerun with --mlir-print-ir-after-all and report it");
  return failure();
}

LogicalResult Target::lowerToKernels(ModuleOp module,
                                     const CompileOptions &options) const {
  PassManager pm(module.getContext());
  if (options.configure)
    options.configure(pm);
  buildDispatchPipeline(pm);
  pm.addPass(createKilnOutlineDispatches());
  buildKernelPipeline(pm.nest<ModuleOp>());
  return runPipeline(pm, module);
}

ModuleOp Target::kernelModule(ModuleOp module) {
  ModuleOp kernels;
  for (auto nested : module.getOps<ModuleOp>())
    kernels = nested;
  return kernels;
}

std::unique_ptr<Target> createTarget(llvm::StringRef spec,
                                     std::string &error) {
  auto [kind, options] = spec.split(':');
  for (const Registration &r : kTargets)
    if (kind == r.kind && (r.kind == spec || !options.empty()))
      return r.create(options, error);
  error = "unknown target '" + spec.str() + "'; use " + targetHelp();
  return nullptr;
}

std::string targetHelp() {
  std::string help;
  for (const Registration &r : kTargets) {
    if (!help.empty())
      help += ", ";
    help += r.example;
  }
  // "a, b, c or d"
  if (size_t comma = help.rfind(", "); comma != std::string::npos)
    help.replace(comma, 2, " or ");
  return help;
}

} // namespace kiln::targets
