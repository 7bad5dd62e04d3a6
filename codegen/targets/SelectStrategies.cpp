//===- SelectStrategies.cpp - one kernel strategy per dispatch ------------===//
//
// kiln-select-strategies asks the target for every kiln.dispatch's kernel
// strategy and configuration and records it as the dispatch's `config`.
// The choice is made here and only here; the kernel pipelines build what
// the configurations say.
//
//===----------------------------------------------------------------------===//
#include "codegen/targets/Target.h"

#include "dialects/kiln/KilnDialect.h"

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

namespace kiln::targets {

namespace {

struct SelectStrategiesPass final
    : PassWrapper<SelectStrategiesPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(SelectStrategiesPass)

  SelectStrategiesPass() = default;
  SelectStrategiesPass(const SelectStrategiesPass &other)
      : PassWrapper(other) {}
  SelectStrategiesPass(StringRef spec, StringRef hostCpu) {
    target = spec.str();
    cpu = hostCpu.str();
  }

  StringRef getArgument() const override { return "kiln-select-strategies"; }
  StringRef getDescription() const override {
    return "choose every kiln.dispatch's kernel strategy and configuration "
           "from the target's facts and the dispatch's root op";
  }

  Option<std::string> target{
      *this, "target",
      llvm::cl::desc("the target spec, as --target takes it (cpu, "
                     "cuda:sm_80, cuda:sm_80,sm_90a)"),
      llvm::cl::init("cpu")};
  Option<std::string> cpu{
      *this, "cpu",
      llvm::cl::desc("the CPU host code is for, as --cpu takes it (host, "
                     "x86-64-v3, skylake-avx512)"),
      llvm::cl::init("host")};

  void runOnOperation() override {
    std::string error;
    std::unique_ptr<Target> chosen = createTarget(target, error);
    if (!chosen) {
      getOperation().emitError() << "kiln-select-strategies: " << error;
      return signalPassFailure();
    }
    chosen->setHostCpu(cpu);
    getOperation().walk([&](DispatchOp dispatch) {
      // The root is the last op of the body: dispatch formation clones the
      // producers it inlines before it.
      Operation *root = dispatch.getBody().front().getTerminator();
      if (Operation *prev = root->getPrevNode())
        root = prev;
      dispatch.setConfigAttr(chosen->selectStrategy(root));
    });
  }
};

} // namespace

std::unique_ptr<Pass> createSelectStrategiesPass(StringRef spec,
                                                StringRef cpu) {
  return std::make_unique<SelectStrategiesPass>(spec, cpu);
}

void registerSelectStrategiesPass() { PassRegistration<SelectStrategiesPass>(); }

} // namespace kiln::targets
