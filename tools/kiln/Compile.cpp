//===- Compile.cpp - kiln compile -----------------------------------------===//
#include "codegen/artifact/ArtifactBuilder.h"
#include "codegen/targets/Target.h"
#include "frontend/gpt/GptImporter.h"
#include "frontend/gpt/Tokenizer.h"
#include "frontend/onnx/OnnxImporter.h"
#include "manifest.pb.h"
#include "passes/Passes.h"
#include "tools/kiln/Driver.h"
#include "tools/kiln/TokenizerSpec.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>

using namespace mlir;

namespace kiln::driver {
namespace {

const char *kCompileHelp = R"(usage: kiln compile MODEL -o OUT [options]

Compiles an ONNX model, or a Hugging Face checkpoint folder (config.json
and safetensors: gpt2, llama, mistral, qwen2, gemma, phi3), into a Kiln
artifact (or prints an IR level).

  -o OUT                 output file (the artifact, or the IR for --emit)
  --target T             cpu (default), cuda:sm_80, cuda:sm_90a, or several
                         architectures in one artifact: cuda:sm_80,sm_90a
  --cuda-path DIR        CUDA toolkit with bin/ptxas (default: CUDA_HOME,
                         CUDA_PATH, PATH, /usr/local/cuda)
  --precision P          fp32 (default), fp16 or bf16: the operands of
                         matrix products (weights converted once, here;
                         sums, softmax and norms stay in f32; inputs and
                         outputs keep their types)
  --raise-attention on|off
                         recognize the exporter's decomposed attention as
                         one attention op (default on, where the target
                         runs it as one kernel: cpu, cuda under
                         --precision fp16|bf16); off keeps the pieces (to
                         compare, or to work around a wrong match)
  --dim NAME=VALUE       value of a symbolic input dim (repeatable)
  --dim NAME=MIN..MAX    keep the dim symbolic, with these bounds: the
                         artifact runs any size in the range
  --max-seq-len N        checkpoints: the longest sequence the artifact
                         runs (default: the model's positions, at most
                         2048); the dim 'sequence' is 1..N. An ONNX
                         decoder exported with its KV cache
                         (past_key_values.* in, present.* out): compile it
                         for kiln generate, the runtime holding a cache of
                         N positions (docs/kv-cache.md)
  --max-batch B          checkpoints: the largest batch (default 1); the
                         dim 'batch' is 1..B. An ONNX decoder with
                         --max-seq-len: its fixed batch
  --kv-cache on|off      checkpoints with a fixed batch (default on): the
                         session holds each layer's keys and values, and a
                         'decode' entry point runs one new token against
                         them; off: only 'prefill' (each token recomputes
                         the whole sequence)
  --constant-input NAME=@FILE.pb
                         freeze graph input NAME to the ONNX TensorProto in
                         FILE: it becomes a constant of the model (for
                         inputs that decide shapes, such as axes, pads or
                         target shapes), and the artifact no longer takes it
  --cpu host|NAME        CPU to generate code for (default: this machine's)
  --jobs N               tool processes run at a time (ptxas; default: one
                         per core)
  --ptx-isa X.Y          cuda: the PTX ISA of the embedded PTX (default 8.0);
                         an older one (7.0 for sm_80) lets older drivers JIT
                         the PTX when they cannot load the cubins
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
  bool printAfterAll = false, timing = false, embedKernelIR = false;
  bool raiseAttention = true, kvCache = true;
  unsigned jobs = 0, ptxIsa = 0;
  onnx::ImportOptions import;
  int64_t maxSeqLen = 0, maxBatch = 0;
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
    } else if (takeOption(args, i, "--kv-cache", value, error)) {
      if (value != "on" && value != "off")
        error = "--kv-cache " + value + " is not one of on, off";
      o.kvCache = value == "on";
    } else if (takeOption(args, i, "--raise-attention", value, error)) {
      if (value != "on" && value != "off")
        error = "--raise-attention " + value + " is not one of on, off";
      o.raiseAttention = value == "on";
    } else if (takeOption(args, i, "--emit", value, error)) {
      o.emit = value;
    } else if (takeOption(args, i, "--cuda-path", value, error)) {
      o.cudaPath = value;
    } else if (takeOption(args, i, "--cpu", value, error)) {
      o.cpu = value;
    } else if (takeOption(args, i, "--jobs", value, error)) {
      if (!llvm::to_integer(value, o.jobs, 10) || o.jobs == 0) {
        error = "--jobs expects a positive number, got '" + value + "'";
        break;
      }
    } else if (takeOption(args, i, "--max-seq-len", value, error) ||
               takeOption(args, i, "--max-batch", value, error)) {
      bool seqLen = arg == "--max-seq-len";
      int64_t n = 0;
      if (!llvm::to_integer(value, n, 10) || n <= 0) {
        error = arg + " expects a positive number, got '" + value + "'";
        break;
      }
      (seqLen ? o.maxSeqLen : o.maxBatch) = n;
    } else if (takeOption(args, i, "--ptx-isa", value, error)) {
      llvm::StringRef major, minor;
      std::tie(major, minor) = llvm::StringRef(value).split('.');
      unsigned x = 0, y = 0;
      if (major.getAsInteger(10, x) || minor.size() != 1 ||
          minor.getAsInteger(10, y) || x == 0) {
        error = "--ptx-isa expects a version like 8.0, got '" + value + "'";
        break;
      }
      o.ptxIsa = x * 10 + y;
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
  if (o.emit == "artifact" && o.output.empty()) {
    error = "no output file; pass -o OUT.kiln";
    return std::nullopt;
  }
  if (o.precision != "fp32" && o.precision != "fp16" &&
      o.precision != "bf16") {
    error = "--precision " + o.precision + " is not one of fp32, fp16, bf16";
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

} // namespace

int runCompile(const Args &args) {
  std::string error;
  std::optional<CompileOptions> parsed = parse(args, error);
  if (!parsed)
    return fail(error);
  const CompileOptions &o = *parsed;
  std::unique_ptr<targets::Target> target =
      targets::createTarget(o.target, error);
  if (!target)
    return fail(error);
  target->setHostCpu(o.cpu);
  static const llvm::StringRef kCommonEmits[] = {
      "artifact", "mlir", "dispatch-mlir", "kernel-mlir"};
  bool extraEmit = llvm::is_contained(target->extraEmitKinds(), o.emit);
  if (!llvm::is_contained(kCommonEmits, o.emit) && !extraEmit) {
    if (o.emit == "ptx")
      return fail("--emit ptx needs a cuda target, e.g. --target cuda:sm_80");
    return fail("--emit " + o.emit +
                " is not one of artifact, mlir, dispatch-mlir, kernel-mlir, "
                "ptx");
  }
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

  // A checkpoint folder's weights are views of its mapped files: `weights`
  // lives until the artifact is written.
  bool checkpoint = gpt::isCheckpointFolder(o.model);
  gpt::ImportedCheckpoint weights;
  std::optional<gpt::TokenizerTables> tokenizer;
  OwningOpRef<ModuleOp> module;
  int64_t decoderVocab = 0; // an ONNX decoder compiled for generation
  // Its folder (optimum writes config.json, generation_config.json and the
  // tokenizer next to the export) and what its configs say.
  std::string decoderDir, decoderTokensError;
  std::optional<gpt::SpecialTokens> decoderTokens;
  onnx::ImportOptions decoderImport = o.import;
  if (checkpoint) {
    gpt::ImportOptions gptOptions;
    gptOptions.dims = o.import.dims;
    gptOptions.dimRanges = o.import.dimRanges;
    gptOptions.maxSeqLen = o.maxSeqLen;
    gptOptions.maxBatch = o.maxBatch;
    gptOptions.kvCache = o.kvCache;
    gptOptions.precision = o.precision;
    targets::Target::SymbolicAttention symbolic =
        target->symbolicAttention(o.precision);
    gptOptions.symbolicAttention = symbolic.taken;
    gptOptions.symbolicHeadSizes = [symbolic](int64_t head) {
      return symbolic.takes(head);
    };
    if (!o.import.constantInputs.empty())
      return fail("--constant-input applies to ONNX models, not to the "
                  "checkpoint folder '" + o.model + "'");
    std::string tokenizerError;
    tokenizer = gpt::readTokenizer(o.model, tokenizerError);
    weights = gpt::importCheckpoint(context, o.model, gptOptions);
    if (weights.module && tokenizer &&
        tokenizer->tokens.size() > size_t(weights.config.vocabSize)) {
      tokenizerError = o.model + "/tokenizer.json: it has " +
                       std::to_string(tokenizer->tokens.size()) +
                       " tokens, more than the model's vocabulary of " +
                       std::to_string(weights.config.vocabSize);
      tokenizer.reset();
    }
    // A tokenizer Kiln cannot run leaves the model usable with token ids.
    if (!tokenizerError.empty() && weights.module)
      std::fprintf(stderr,
                   "kiln: warning: %s; the artifact carries no tokenizer "
                   "(prompts must be token ids)\n",
                   tokenizerError.c_str());
    module = std::move(weights.module);
    if (module && !weights.symbolicAttention)
      for (auto func : module->getOps<func::FuncOp>())
        for (Type type : func.getArgumentTypes())
          // decode's `past` is a count, not a size attention runs at.
          if (func.getSymName() == "prefill" &&
              !cast<ShapedType>(type).hasStaticShape())
            return fail(
                o.target + " runs this checkpoint's attention at fixed " +
                "sizes only" +
                (symbolic.taken
                     ? " (its head size " +
                           std::to_string(weights.config.headDim) +
                           " is not one the attention kernel takes)"
                     : " at --precision " + o.precision +
                           " (--precision fp16 or bf16 takes symbolic ones)") +
                ": give them with --dim batch=B --dim sequence=S");
  } else {
    if (o.maxBatch && !o.maxSeqLen)
      return fail("--max-batch applies to checkpoint folders and, with "
                  "--max-seq-len, to ONNX decoders exported with their KV "
                  "cache; for other ONNX models bound the dims with --dim "
                  "NAME=MIN..MAX");
    // An ONNX decoder with past_key_values compiled for generation: the
    // runtime holds its cache (docs/kv-cache.md).
    if (o.maxSeqLen) {
      if (o.maxSeqLen < 2)
        return fail("--max-seq-len " + std::to_string(o.maxSeqLen) +
                    " leaves no room for a decode step: give at least 2");
      if (!o.import.dims.empty() || !o.import.dimRanges.empty())
        return fail("--dim does not apply when --max-seq-len compiles an "
                    "ONNX decoder for generation: its sequence and cache "
                    "lengths come from --max-seq-len, its batch from "
                    "--max-batch");
      if (!o.kvCache)
        return fail("--kv-cache off: an ONNX decoder exported with its "
                    "cache runs with it; compile it without --max-seq-len "
                    "to keep the cache as inputs and outputs");
      if (!target->symbolicAttention(o.precision).taken)
        return fail(o.target + " runs attention over a cache of run-time "
                    "length only at --precision fp16 or bf16 (at " +
                    o.precision + " its attention needs fixed sizes): "
                    "compile with --precision fp16 or bf16");
      decoderImport.decoderMaxSequence = o.maxSeqLen;
      decoderImport.decoderBatch = o.maxBatch ? o.maxBatch : 1;
    }
    module = onnx::importModelFile(context, o.model, decoderImport);
    if (module && decoderImport.decoderMaxSequence) {
      auto prefill = module->lookupSymbol<func::FuncOp>("prefill");
      auto logits = dyn_cast<RankedTensorType>(
          prefill.getFunctionType().getResult(0));
      if (!logits || logits.getRank() != 3 || logits.isDynamicDim(2) ||
          !logits.getElementType().isF32())
        return fail(o.model + ": the decoder's first output is not f32 "
                    "logits [batch, sequence, vocab] with a fixed "
                    "vocabulary, which generation samples from");
      decoderVocab = logits.getShape()[2];
      decoderDir = llvm::sys::path::parent_path(o.model).str();
      if (decoderDir.empty())
        decoderDir = ".";
      decoderTokens = gpt::readSpecialTokens(decoderDir, decoderTokensError);
      // The positions the model was trained for, as its folder's config
      // says.
      if (decoderTokens && decoderTokens->maxPositions &&
          o.maxSeqLen > decoderTokens->maxPositions)
        return fail("--max-seq-len " + std::to_string(o.maxSeqLen) +
                    " exceeds the " +
                    std::to_string(decoderTokens->maxPositions) +
                    " positions of the model (" +
                    decoderTokens->maxPositionsField + " in " + decoderDir +
                    "/config.json); pass --max-seq-len " +
                    std::to_string(decoderTokens->maxPositions) + " or less");
    }
  }
  if (!module)
    return 1;
  // kiln-raise-attention leaves a module that says so alone, whichever
  // pipeline runs it.
  if (!o.raiseAttention)
    (*module)->setAttr(kNoRaiseAttentionAttr, UnitAttr::get(&context));
  // --precision: a graph-level rewrite, so every target and every --emit
  // level sees the same numbers.
  if (o.precision != "fp32") {
    PassManager pm(&context);
    configurePassManager(pm, o);
    // Attention is raised before its contractions are narrowed (the
    // conversions would split its chain); the graph pipeline's raising
    // then finds nothing left to do.
    if (target->raisesNarrowAttention()) {
      pm.addPass(createCanonicalizerPass());
      KilnRaiseAttentionOptions raise;
      targets::Target::SymbolicAttention symbolic =
          target->symbolicAttention(o.precision);
      raise.symbolicDims = symbolic.taken;
      raise.symbolicMinHead = symbolic.minHead;
      raise.symbolicMaxHead = symbolic.maxHead;
      raise.symbolicHeadMultiple = symbolic.headMultiple;
      pm.addNestedPass<func::FuncOp>(createKilnRaiseAttention(raise));
      // What the raising left unused (an export's repetition of grouped
      // K/V heads) goes, so that a cache read only by the attention is seen
      // to be (kiln-convert-precision narrows it).
      pm.addPass(createCanonicalizerPass());
    }
    KilnConvertPrecisionOptions precision;
    precision.precision = o.precision;
    pm.addPass(createKilnConvertPrecision(precision));
    if (failed(pm.run(*module)) || failedDiag)
      return 1;
  }
  double importSeconds = secondsSince(start);

  targets::CompileOptions options;
  options.model = o.model;
  options.cudaPath = o.cudaPath;
  options.hostCpu = o.cpu;
  options.embedKernelIR = o.embedKernelIR;
  options.jobs = o.jobs;
  options.ptxIsa = o.ptxIsa;
  options.configure = [&o](PassManager &pm) { configurePassManager(pm, o); };

  if (extraEmit) {
    std::string text;
    llvm::raw_string_ostream os(text);
    if (failed(target->emit(*module, o.emit, options, os)) || failedDiag)
      return 1;
    auto file = openOutputFile(o.output.empty() ? "-" : o.output, &error);
    if (!file)
      return fail(error);
    file->os() << text;
    file->keep();
    return 0;
  }
  if (o.emit != "artifact") {
    PassManager pm(&context);
    configurePassManager(pm, o);
    // mlir: the graph IR as imported, the input of every pipeline.
    if (o.emit != "mlir") {
      target->buildDispatchPipeline(pm);
      if (o.emit == "kernel-mlir") {
        pm.addPass(createKilnOutlineDispatches());
        target->buildKernelPipeline(pm.nest<ModuleOp>());
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

  targets::CompileTimes times;
  FailureOr<codegen::ArtifactContents> contents =
      target->compile(*module, options, times);
  if (failed(contents) || failedDiag)
    return 1;
  artifact::Manifest &manifest = *contents->manifest;
  manifest.set_compiler_version(KILN_VERSION);
  manifest.set_source_model(o.model);
  manifest.set_model_hash(checkpoint ? gpt::hashCheckpoint(o.model)
                                      : codegen::hashFile(o.model));
  if (decoderVocab) {
    // The ONNX decoder's generation: its two entry points, the vocabulary
    // from the logits, and what its folder says (optimum writes
    // config.json, generation_config.json and the tokenizer next to it).
    artifact::Generation &generation = *manifest.mutable_generation();
    generation.set_prefill_entry("prefill");
    generation.set_decode_entry("decode");
    generation.set_vocab_size(uint32_t(decoderVocab));
    generation.set_max_sequence(uint32_t(decoderImport.decoderMaxSequence));
    generation.set_bos_token_id(-1);
    generation.set_pad_token_id(-1);
    generation.set_model_type("onnx");
    const std::string &dir = decoderDir;
    std::string tokenizerError;
    if (const std::optional<gpt::SpecialTokens> &tokens = decoderTokens) {
      for (int64_t id : tokens->eosTokenIds)
        generation.add_eos_token_ids(id);
      generation.set_bos_token_id(tokens->bosTokenId);
      generation.set_pad_token_id(tokens->padTokenId);
      if (!tokens->modelType.empty())
        generation.set_model_type(tokens->modelType);
    } else {
      std::fprintf(stderr, "kiln: warning: %s; the artifact has no end-of-"
                   "sequence tokens (kiln generate stops at --stop or "
                   "--max-new-tokens)\n", decoderTokensError.c_str());
    }
    if (std::optional<gpt::TokenizerTables> t =
            gpt::readTokenizer(dir, tokenizerError)) {
      if (t->tokens.size() <= size_t(decoderVocab))
        tokenizerSpec(*t, *generation.mutable_tokenizer());
      else
        std::fprintf(stderr, "kiln: warning: %s/tokenizer.json has more "
                     "tokens than the model's vocabulary of %lld; the "
                     "artifact carries no tokenizer\n", dir.c_str(),
                     (long long)decoderVocab);
    } else if (!tokenizerError.empty()) {
      std::fprintf(stderr, "kiln: warning: %s; the artifact carries no "
                   "tokenizer (prompts must be token ids)\n",
                   tokenizerError.c_str());
    }
  }
  if (checkpoint) {
    const gpt::GptConfig &config = weights.config;
    artifact::Generation &generation = *manifest.mutable_generation();
    generation.set_prefill_entry("prefill");
    if (weights.decode)
      generation.set_decode_entry("decode");
    generation.set_vocab_size(uint32_t(config.vocabSize));
    generation.set_max_sequence(uint32_t(weights.maxSequence));
    for (int64_t id : config.eosTokenIds)
      generation.add_eos_token_ids(id);
    generation.set_bos_token_id(config.bosTokenId);
    generation.set_pad_token_id(config.padTokenId);
    generation.set_model_type(config.modelType);
    if (tokenizer)
      tokenizerSpec(*tokenizer, *generation.mutable_tokenizer());
  }
  // What raising found (each entry function's `kiln.raised`).
  module->walk([&](func::FuncOp func) {
    if (auto raised = func->getAttrOfType<DictionaryAttr>("kiln.raised"))
      for (NamedAttribute count : raised)
        if (auto value = dyn_cast<IntegerAttr>(count.getValue()))
          (*manifest.mutable_raised_ops())[count.getName().str()] +=
              uint32_t(value.getInt());
  });
  if (std::string writeError = codegen::writeArtifact(*contents, o.output);
      !writeError.empty())
    return fail(writeError);
  std::fprintf(stderr,
               "kiln: compiled %s -> %s for %s (%d kernels, %d weights) in "
               "%.2f s (import %.2f s, passes %.2f s, %s %.2f s)\n",
               o.model.c_str(), o.output.c_str(), manifest.target().c_str(),
               manifest.kernels_size(), manifest.weights_size(),
               secondsSince(start), importSeconds, times.passes,
               times.codegenName, times.codegen);
  return 0;
}

} // namespace kiln::driver
