//===- HostCodegen.h - LLVM dialect -> host shared object -------*- C++ -*-===//
#ifndef KILN_CODEGEN_CPU_HOSTCODEGEN_H
#define KILN_CODEGEN_CPU_HOSTCODEGEN_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace kiln::codegen {

struct HostTarget {
  std::string triple;   // empty: this machine's
  std::string cpu;      // empty or "host": this machine's CPU
  std::string features; // empty: the CPU's own
};

/// The resolved triple, CPU and features for `target`.
HostTarget resolveHostTarget(const HostTarget &target);

/// Whether the CPU of `target` (resolved) has `feature` ("avx512f").
bool hostHasFeature(const HostTarget &target, llvm::StringRef feature);

/// The architecture name of a triple as the runtime spells it ("x86_64").
std::string archOfTriple(const std::string &triple);

/// Translates `module` (LLVM dialect, one function per kernel taking bare
/// pointers) to LLVM IR, adds for each kernel a `<name>_entry(void **args,
/// void *ctx)` wrapper the runtime calls, optimizes at O3 for `target`, emits an object
/// in-process and links it into a shared object. Returns the shared
/// object's bytes, or an empty string after reporting an error on `module`.
std::string emitHostSharedObject(mlir::ModuleOp module,
                                 const std::vector<std::string> &kernels,
                                 const HostTarget &target);

/// The symbol the runtime calls for `kernel`.
std::string hostEntrySymbol(const std::string &kernel);

} // namespace kiln::codegen

#endif // KILN_CODEGEN_CPU_HOSTCODEGEN_H
