//===- Compile.cpp - kiln compile -----------------------------------------===//
#include "codegen/artifact/ArtifactBuilder.h"
#include "codegen/cpu/HostCodegen.h"
#include "codegen/gpu/GpuCodegen.h"
#include "frontend/onnx/OnnxImporter.h"
#include "manifest.pb.h"
#include "passes/Passes.h"
#include "tools/kiln/Driver.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/IR/AsmState.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>

using namespace mlir;

namespace kiln::driver {
namespace {

const char *kCompileHelp = R"(usage: kiln compile MODEL -o OUT [options]

Compiles an ONNX model into a Kiln artifact (or prints an IR level).

  -o OUT                 output file (the artifact, or the IR for --emit)
  --target T             cpu (default), cuda:sm_80, cuda:sm_90a, or several
                         architectures in one artifact: cuda:sm_80,sm_90a
  --cuda-path DIR        CUDA toolkit with bin/ptxas (default: CUDA_HOME,
                         CUDA_PATH, PATH, /usr/local/cuda)
  --precision fp32       compute precision
  --dim NAME=VALUE       value of a symbolic input dim (repeatable)
  --dim NAME=MIN..MAX    keep the dim symbolic, with these bounds: the
                         artifact runs any size in the range
  --constant-input NAME=@FILE.pb
                         freeze graph input NAME to the ONNX TensorProto in
                         FILE: it becomes a constant of the model (for
                         inputs that decide shapes, such as axes, pads or
                         target shapes), and the artifact no longer takes it
  --cpu host|NAME        CPU to generate code for (default: this machine's)
  --emit KIND            artifact (default), mlir (graph IR as imported),
                         dispatch-mlir (dispatch IR), kernel-mlir (kernel
                         IR: the outlined kernels after bufferization; for
                         cuda the gpu.func kernels), ptx (cuda only)
  --embed-kernel-ir      cuda: also store the kernels' IR (MLIR bytecode),
                         which `kiln run --device sim` executes
  --mlir-print-ir-after-all    print the IR after every pass (stderr)
  --mlir-print-ir-after=PASS   print the IR after the pass with that flag
  --mlir-timing                print the time each pass took
)";

struct CompileOptions {
  std::string model, output, target = "cpu", precision = "fp32";
  std::string emit = "artifact", cpu = "host", printAfter, cudaPath;
  std::vector<std::string> chips; // cuda targets
  bool printAfterAll = false, timing = false, embedKernelIR = false;
  onnx::ImportOptions import;
};

std::optional<CompileOptions> parse(const Args &args, std::string &error) {
  CompileOptions o;
  for (size_t i = 0; i < args.size() && error.empty(); ++i) {
    std::string value;
    const std::string &arg = args[i];
    if (takeOption(args, i, "-o", value, error)) {
      o.output = value;
    } else if (takeOption(args, i, "--target", value, error)) {
      o.target = value;
    } else if (takeOption(args, i, "--precision", value, error)) {
      o.precision = value;
    } else if (takeOption(args, i, "--emit", value, error)) {
      o.emit = value;
    } else if (takeOption(args, i, "--cuda-path", value, error)) {
      o.cudaPath = value;
    } else if (takeOption(args, i, "--cpu", value, error)) {
      o.cpu = value;
    } else if (takeOption(args, i, "--mlir-print-ir-after", value, error)) {
      o.printAfter = value;
    } else if (arg == "--mlir-print-ir-after-all") {
      o.printAfterAll = true;
    } else if (arg == "--embed-kernel-ir") {
      o.embedKernelIR = true;
    } else if (arg == "--mlir-timing") {
      o.timing = true;
    } else if (takeOption(args, i, "--dim", value, error)) {
      size_t eq = value.find('=');
      std::string name = value.substr(0, eq);
      std::string number = eq == std::string::npos ? "" : value.substr(eq + 1);
      auto parse = [](const std::string &text, long long &n) {
        char *end = nullptr;
        n = std::strtoll(text.c_str(), &end, 10);
        return !text.empty() && !*end;
      };
      if (size_t dots = number.find(".."); dots != std::string::npos) {
        long long lo = 0, hi = 0;
        if (name.empty() || !parse(number.substr(0, dots), lo) ||
            !parse(number.substr(dots + 2), hi) || lo < 1 || hi < lo) {
          error = "--dim expects NAME=MIN..MAX with 1 <= MIN <= MAX, got '" +
                  value + "'";
          break;
        }
        if (lo == hi)
          o.import.dims[name] = lo;
        else
          o.import.dimRanges[name] = {lo, hi};
        continue;
      }
      long long n = 0;
      if (name.empty() || !parse(number, n) || n <= 0) {
        error = "--dim expects NAME=VALUE with a positive VALUE, or "
                "NAME=MIN..MAX, got '" + value + "'";
        break;
      }
      o.import.dims[name] = n;
    } else if (takeOption(args, i, "--constant-input", value, error)) {
      size_t at = value.find("=@");
      if (at == std::string::npos || at == 0 || at + 2 == value.size()) {
        error = "--constant-input expects NAME=@FILE.pb, got '" + value + "'";
        break;
      }
      o.import.constantInputs[value.substr(0, at)] = value.substr(at + 2);
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kCompileHelp, stdout);
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      error = "unknown option '" + arg + "' for kiln compile";
    } else if (o.model.empty()) {
      o.model = arg;
    } else {
      error = "unexpected argument '" + arg + "'";
    }
  }
  if (!error.empty())
    return std::nullopt;
  if (o.model.empty()) {
    error = "no model given; usage: kiln compile MODEL -o OUT.kiln";
    return std::nullopt;
  }
  if (o.emit != "artifact" && o.emit != "mlir" && o.emit != "dispatch-mlir" &&
      o.emit != "kernel-mlir" && o.emit != "ptx") {
    error = "--emit " + o.emit +
            " is not one of artifact, mlir, dispatch-mlir, kernel-mlir, ptx";
    return std::nullopt;
  }
  if (o.emit == "artifact" && o.output.empty()) {
    error = "no output file; pass -o OUT.kiln";
    return std::nullopt;
  }
  if (o.target.rfind("cuda:", 0) == 0) {
    static const char *kKnownChips[] = {"sm_80", "sm_86", "sm_89", "sm_90",
                                        "sm_90a"};
    llvm::SmallVector<llvm::StringRef> parts;
    llvm::StringRef(o.target).drop_front(5).split(parts, ',');
    for (llvm::StringRef chip : parts) {
      if (!llvm::is_contained(kKnownChips, chip)) {
        error = "unknown GPU architecture '" + chip.str() + "' in --target " +
                o.target + "; use sm_80, sm_86, sm_89, sm_90 or sm_90a";
        return std::nullopt;
      }
      if (!llvm::is_contained(o.chips, chip.str()))
        o.chips.push_back(chip.str());
    }
  } else if (o.target != "cpu") {
    error = "unknown target '" + o.target +
            "'; use cpu, cuda:sm_80, cuda:sm_90a or cuda:sm_80,sm_90a";
    return std::nullopt;
  }
  if (o.emit == "ptx" && o.chips.empty()) {
    error = "--emit ptx needs a cuda target, e.g. --target cuda:sm_80";
    return std::nullopt;
  }
  if (o.precision != "fp32") {
    error = "--precision " + o.precision + " is not supported yet; use fp32";
    return std::nullopt;
  }
  return o;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

void configurePassManager(PassManager &pm, const CompileOptions &o) {
  if (o.timing)
    pm.enableTiming();
  if (o.printAfterAll || !o.printAfter.empty()) {
    std::string only = o.printAfter;
    pm.enableIRPrinting(
        /*shouldPrintBeforePass=*/[](Pass *, Operation *) { return false; },
        /*shouldPrintAfterPass=*/
        [only](Pass *pass, Operation *) {
          return only.empty() || pass->getArgument() == only;
        },
        /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
  }
}

/// Writes IR text to `-o`, or stdout when no file is given.
int emitText(ModuleOp module, const std::string &output) {
  std::string error;
  auto file = openOutputFile(output.empty() ? "-" : output, &error);
  if (!file)
    return fail(error);
  module.print(file->os());
  file->os() << "\n";
  file->keep();
  return 0;
}

/// The cuda targets: kernels to PTX per architecture, ptxas to cubins, and
/// the artifact (or the PTX, for --emit ptx).
int compileForCuda(MLIRContext &context, ModuleOp module,
                   const CompileOptions &o,
                   std::chrono::steady_clock::time_point start,
                   double importSeconds, bool &failedDiag) {
  std::string error;
  std::string ptxas = codegen::findPtxas(o.cudaPath, error);
  if (ptxas.empty())
    return fail(error);
  PassManager pm(&context);
  configurePassManager(pm, o);
  buildDispatchPipeline(pm);
  pm.addPass(createKilnOutlineDispatches());
  buildGpuKernelPipeline(pm.nest<ModuleOp>());
  auto runPasses = [&](PassManager &passes) -> int {
    if (succeeded(passes.run(module)))
      return 0;
    if (!failedDiag)
      return fail("internal error: a compiler pass failed without saying "
                  "why; rerun with --mlir-print-ir-after-all and report it");
    return 1;
  };
  if (int rc = runPasses(pm))
    return rc;
  ModuleOp kernels;
  for (auto nested : module.getOps<ModuleOp>())
    kernels = nested;
  if (!kernels)
    return fail("the model has no work to compile into kernels");
  // The kernel IR the simulator runs: gpu.funcs before NVVM lowering.
  std::string kernelIR;
  if (o.embedKernelIR) {
    llvm::raw_string_ostream os(kernelIR);
    if (failed(writeBytecodeToFile(kernels, os)))
      return fail("cannot serialize the kernel IR");
  }
  PassManager binaryPm(&context);
  configurePassManager(binaryPm, o);
  buildGpuToBinaryPipeline(binaryPm.nest<ModuleOp>(), o.chips,
                           codegen::toolkitOfPtxas(ptxas));
  if (int rc = runPasses(binaryPm))
    return rc;
  double passSeconds = secondsSince(start) - importSeconds;

  if (o.emit == "ptx") {
    std::string text;
    llvm::raw_string_ostream os(text);
    for (auto binary : kernels.getOps<gpu::BinaryOp>())
      for (Attribute attr : binary.getObjects()) {
        auto object = cast<gpu::ObjectAttr>(attr);
        os << "// kernel " << binary.getName() << ", target "
           << object.getTarget() << "\n"
           << object.getObject().getValue() << "\n";
      }
    auto file = openOutputFile(o.output.empty() ? "-" : o.output, &error);
    if (!file)
      return fail(error);
    file->os() << text;
    file->keep();
    return 0;
  }

  FailureOr<std::vector<codegen::GpuKernelCode>> compiled =
      codegen::compileGpuKernels(kernels, ptxas);
  if (failed(compiled))
    return 1;
  double codegenSeconds = secondsSince(start) - importSeconds - passSeconds;
  FailureOr<codegen::ArtifactContents> contents =
      codegen::buildGpuArtifactContents(module, std::move(*compiled), o.chips);
  if (failed(contents) || failedDiag)
    return 1;
  artifact::Manifest &manifest = *contents->manifest;
  if (o.embedKernelIR) {
    artifact::Section *section = manifest.add_sections();
    section->set_name("kernel_ir");
    section->set_kind(artifact::KERNEL_IR);
    contents->sections.push_back(
        {manifest.sections_size() - 1, std::move(kernelIR)});
  }
  manifest.set_target(o.target);
  manifest.set_compiler_version(KILN_VERSION);
  manifest.set_source_model(o.model);
  manifest.set_model_hash(codegen::hashFile(o.model));
  if (std::string writeError = codegen::writeArtifact(*contents, o.output);
      !writeError.empty())
    return fail(writeError);
  std::fprintf(stderr,
               "kiln: compiled %s -> %s for %s (%d kernels, %d weights) in "
               "%.2f s (import %.2f s, passes %.2f s, ptxas %.2f s)\n",
               o.model.c_str(), o.output.c_str(), o.target.c_str(),
               manifest.kernels_size(), manifest.weights_size(),
               secondsSince(start), importSeconds, passSeconds,
               codegenSeconds);
  return 0;
}

} // namespace

int runCompile(const Args &args) {
  std::string error;
  std::optional<CompileOptions> parsed = parse(args, error);
  if (!parsed)
    return fail(error);
  const CompileOptions &o = *parsed;
  auto start = std::chrono::steady_clock::now();

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<KilnDialect>();
  registerAllGPUToLLVMIRTranslations(registry);
  MLIRContext context(registry);
  // Diagnostics name the node or op; dumping whole functions helps nobody.
  context.printOpOnDiagnostic(false);
  bool failedDiag = false;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    const char *kind = diag.getSeverity() == DiagnosticSeverity::Error
                           ? "error"
                           : diag.getSeverity() == DiagnosticSeverity::Warning
                                 ? "warning"
                                 : "note";
    if (diag.getSeverity() == DiagnosticSeverity::Error)
      failedDiag = true;
    std::string message = diag.str();
    // Messages from the importer name the file and node themselves; other
    // diagnostics get their location.
    std::string where;
    if (message.rfind(o.model, 0) != 0) {
      llvm::raw_string_ostream os(where);
      diag.getLocation().print(os);
    }
    std::fprintf(stderr, "kiln: %s: %s%s%s\n", kind, where.c_str(),
                 where.empty() ? "" : ": ", message.c_str());
    for (Diagnostic &note : diag.getNotes())
      std::fprintf(stderr, "kiln: note: %s\n", note.str().c_str());
    return success();
  });
  if (o.printAfterAll || !o.printAfter.empty())
    context.disableMultithreading();

  OwningOpRef<ModuleOp> module =
      onnx::importModelFile(context, o.model, o.import);
  if (!module)
    return 1;
  double importSeconds = secondsSince(start);

  if (!o.chips.empty() && o.emit != "mlir" && o.emit != "dispatch-mlir" &&
      o.emit != "kernel-mlir")
    return compileForCuda(context, *module, o, start, importSeconds,
                          failedDiag);

  if (o.emit != "artifact") {
    PassManager pm(&context);
    configurePassManager(pm, o);
    // mlir: the graph IR as imported, the input of every pipeline.
    if (o.emit != "mlir") {
      buildDispatchPipeline(pm);
      if (o.emit == "kernel-mlir") {
        pm.addPass(createKilnOutlineDispatches());
        if (o.chips.empty())
          buildCpuKernelPipeline(pm.nest<ModuleOp>());
        else
          buildGpuKernelPipeline(pm.nest<ModuleOp>());
      }
    }
    if (failed(pm.run(*module))) {
      if (!failedDiag)
        return fail("internal error: a compiler pass failed without saying "
                    "why; rerun with --mlir-print-ir-after-all and report it");
      return 1;
    }
    return emitText(*module, o.output);
  }

  // Graph -> dispatch -> kernels, then kernels -> LLVM, all in one run so
  // that the printing and timing flags see every pass.
  PassManager pm(&context);
  configurePassManager(pm, o);
  buildDispatchPipeline(pm);
  pm.addPass(createKilnOutlineDispatches());
  OpPassManager &kernelPm = pm.nest<ModuleOp>();
  buildCpuKernelPipeline(kernelPm);
  buildCpuToLLVMPipeline(kernelPm);
  if (failed(pm.run(*module))) {
    if (!failedDiag)
      return fail("internal error: a compiler pass failed without saying "
                  "why; rerun with --mlir-print-ir-after-all and report it");
    return 1;
  }
  double passSeconds = secondsSince(start) - importSeconds;

  ModuleOp kernels;
  for (auto nested : module->getOps<ModuleOp>())
    kernels = nested;
  std::vector<std::string> kernelNames;
  if (kernels)
    for (auto func : kernels.getOps<LLVM::LLVMFuncOp>())
      if (!func.isExternal())
        kernelNames.push_back(func.getSymName().str());

  codegen::HostTarget target = codegen::resolveHostTarget(
      {/*triple=*/"", /*cpu=*/o.cpu, /*features=*/""});
  std::string sharedObject;
  if (kernels) {
    sharedObject = codegen::emitHostSharedObject(kernels, kernelNames, target);
    if (sharedObject.empty())
      return 1;
  }
  double codegenSeconds = secondsSince(start) - importSeconds - passSeconds;

  codegen::KernelCode code;
  code.kind = artifact::HOST_SHARED_OBJECT;
  code.arch = codegen::archOfTriple(target.triple);
  code.bytes = std::move(sharedObject);
  code.symbolOf = codegen::hostEntrySymbol;
  std::vector<codegen::KernelCode> codes;
  codes.push_back(std::move(code));
  FailureOr<codegen::ArtifactContents> contents =
      codegen::buildArtifactContents(*module, std::move(codes));
  if (failed(contents) || failedDiag)
    return 1;
  artifact::Manifest &manifest = *contents->manifest;
  manifest.set_target("cpu");
  manifest.set_compiler_version(KILN_VERSION);
  manifest.set_source_model(o.model);
  manifest.set_model_hash(codegen::hashFile(o.model));
  manifest.set_host_triple(target.triple);
  manifest.set_host_cpu(target.cpu);
  if (std::string writeError = codegen::writeArtifact(*contents, o.output);
      !writeError.empty())
    return fail(writeError);

  std::fprintf(stderr,
               "kiln: compiled %s -> %s (%d kernels, %d weights) in %.2f s "
               "(import %.2f s, passes %.2f s, codegen %.2f s)\n",
               o.model.c_str(), o.output.c_str(), manifest.kernels_size(),
               manifest.weights_size(), secondsSince(start), importSeconds,
               passSeconds, codegenSeconds);
  return 0;
}

} // namespace kiln::driver
