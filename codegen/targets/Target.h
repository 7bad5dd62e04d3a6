//===- Target.h - a compilation target: facts, pipelines, binaries -*- C++ -*-===//
//
// One object per `--target`: it knows its name and options, its facts
// (TargetFacts.h), the kernel pipeline that turns outlined dispatches into
// kernel IR, how that IR becomes binaries, and which artifact sections it
// writes. The driver parses options, looks the target up, imports the
// model and calls `compile`; it never asks which target it holds.
//
// Adding a target (sm_100a is a row in TargetFacts.cpp; an AMD GPU is a new
// class): implement `Target` in a file of this folder and add one line to
// the registry in Target.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_TARGETS_TARGET_H
#define KILN_CODEGEN_TARGETS_TARGET_H

#include "codegen/artifact/ArtifactBuilder.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

#include <functional>
#include <optional>
#include <memory>
#include <string>

namespace kiln {
struct KilnRaiseAttentionOptions;
} // namespace kiln

namespace kiln::targets {

/// What a compilation asks of a target beyond the target spec.
struct CompileOptions {
  std::string model;               ///< the source model's path (manifest)
  std::string cudaPath;            ///< cuda: toolkit with bin/ptxas
  std::string hostCpu = "host";    ///< cpu: the CPU to generate code for
  bool embedKernelIR = false;      ///< cuda: store the kernel IR (sim)
  unsigned jobs = 0;               ///< parallel tool processes; 0: cores
  unsigned ptxIsa = 0;             ///< cuda: PTX ISA x10 (78: 7.8); 0: default
  /// Applies the driver's printing and timing flags to a pass manager.
  std::function<void(mlir::PassManager &)> configure;
};

/// Where the time of a compilation went, for the driver's summary line.
struct CompileTimes {
  double passes = 0;  ///< dispatch and kernel pipelines
  double codegen = 0; ///< binaries: LLVM codegen and link, or ptxas
  const char *codegenName = "codegen";
};

class Target {
public:
  virtual ~Target();

  /// The spec as the user wrote it, normalized: `cpu`, `cuda:sm_80,sm_90a`.
  virtual std::string spec() const = 0;

  /// Graph IR -> dispatch IR: the graph pipeline, dispatch formation and
  /// the kernel-strategy selection for this target (kiln-select-strategies
  /// with this target's spec).
  virtual void buildDispatchPipeline(mlir::OpPassManager &pm) const;

  /// Whether the target raises exporters' decomposed attention into
  /// kiln.attention (kiln-raise-attention): where it has a strategy that
  /// runs the op whole at least as well as the pieces' strategies.
  virtual bool raisesAttention() const { return true; }
  /// The same under `--precision fp16|bf16`, where attention's operands
  /// are narrowed (what tensor cores take).
  virtual bool raisesNarrowAttention() const { return raisesAttention(); }
  /// Whether its attention kernel takes `kiln.attention` whose batch,
  /// query or key counts are symbolic, at `precision` (fp32, fp16, bf16),
  /// and with which head sizes: then exporters' chains with symbolic dims
  /// are raised, and a checkpoint's decode attends over the cached prefix.
  struct SymbolicAttention {
    bool taken = false;
    int64_t minHead = 0;      ///< the smallest head size
    int64_t maxHead = 0;      ///< the largest head size (0: any)
    int64_t headMultiple = 1; ///< head sizes are multiples of this
    bool takes(int64_t head) const {
      return taken && head >= minHead && (!maxHead || head <= maxHead) &&
             head % headMultiple == 0;
    }
  };
  virtual SymbolicAttention
  symbolicAttention(llvm::StringRef precision) const {
    return {};
  }
  /// The same at the model's own precision (the graph pipeline's raising).
  bool raisesSymbolicAttention() const {
    return symbolicAttention("fp32").taken;
  }
  /// kiln-raise-attention in the graph pipeline (the model's own
  /// precision): whether it runs, on which chains, with which symbolic
  /// dims. Default: every chain where raisesAttention(), symbolic ones as
  /// symbolicAttention("fp32") says.
  struct GraphRaising {
    bool enabled = false;
    bool halfOnly = false;
    SymbolicAttention symbolic;
  };
  virtual GraphRaising graphRaising() const {
    return {raisesAttention(), false, symbolicAttention("fp32")};
  }

  /// The kernel strategy and its configuration (`{strategy = ..., ...}`)
  /// for a dispatch whose root op is `root`, from this target's facts.
  virtual mlir::DictionaryAttr selectStrategy(mlir::Operation *root) const = 0;

  /// The CPU that host code is generated for (`--cpu`: "host" or a name);
  /// the cpu target's strategies follow its vector registers.
  virtual void setHostCpu(const std::string &cpu) { hostCpu_ = cpu; }
  const std::string &hostCpu() const { return hostCpu_; }

protected:
  std::string hostCpu_ = "host";

public:

  /// Outlined kernels (`module @kernels`) -> kernel IR, the level
  /// `--emit kernel-mlir` prints.
  virtual void buildKernelPipeline(mlir::OpPassManager &pm) const = 0;

  /// The target-specific `--emit` kinds beyond mlir, dispatch-mlir,
  /// kernel-mlir and artifact (cuda: `ptx`).
  virtual llvm::ArrayRef<llvm::StringRef> extraEmitKinds() const {
    return {};
  }

  /// Graph IR -> the artifact's contents: kernels compiled to this target's
  /// binaries, the launch program, the memory plan and the weights, with
  /// the manifest's target fields set. Errors are reported as diagnostics.
  virtual mlir::FailureOr<codegen::ArtifactContents>
  compile(mlir::ModuleOp module, const CompileOptions &options,
          CompileTimes &times) const = 0;

  /// Writes the `--emit kind` output for an extra kind to `os`.
  virtual mlir::LogicalResult emit(mlir::ModuleOp module, llvm::StringRef kind,
                                   const CompileOptions &options,
                                   llvm::raw_ostream &os) const;

protected:
  /// Runs `pm` on `module`; a failure without a diagnostic becomes one.
  static mlir::LogicalResult runPipeline(mlir::PassManager &pm,
                                         mlir::ModuleOp module);
  /// Graph IR -> kernel IR (dispatch pipeline, outlining, kernel pipeline)
  /// in one pass manager configured by `options`.
  mlir::LogicalResult lowerToKernels(mlir::ModuleOp module,
                                     const CompileOptions &options) const;
  /// The nested `module @kernels` after outlining (null when none).
  static mlir::ModuleOp kernelModule(mlir::ModuleOp module);
};

/// The target `spec` names (`cpu`, `cuda:sm_80`, `cuda:sm_80,sm_90a`), or
/// null with `error` saying which targets there are.
std::unique_ptr<Target> createTarget(llvm::StringRef spec, std::string &error);

/// The targets for `--help` and error messages.
std::string targetHelp();

/// kiln-select-strategies: sets `config` on every kiln.dispatch from the
/// target `spec`'s selectStrategy (kiln-opt: `--kiln-select-strategies=
/// target=cuda:sm_80`).
std::unique_ptr<mlir::Pass>
createSelectStrategiesPass(llvm::StringRef spec, llvm::StringRef cpu = "host");
void registerSelectStrategiesPass();

/// The two targets Kiln has; createTarget is how the driver reaches them.
std::unique_ptr<Target> createCpuTarget(llvm::StringRef options,
                                        std::string &error);
std::unique_ptr<Target> createCudaTarget(llvm::StringRef options,
                                         std::string &error);

/// kiln-raise-attention's options from `target.graphRaising()`, or nothing
/// when the target keeps the exporters' chains (passes/Passes.h).
std::optional<KilnRaiseAttentionOptions>
raiseAttentionOptions(const Target &target);

} // namespace kiln::targets

#endif // KILN_CODEGEN_TARGETS_TARGET_H
