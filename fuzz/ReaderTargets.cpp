//===- ReaderTargets.cpp - fuzzing the compiler's and the CLI's readers ---===//
//
// ONNX models (with external data), input tensors (.npy, TensorProto),
// checkpoints (config.json, safetensors) and tokenizers (tokenizer.json,
// tokenizer.model). Each reader must answer any bytes with a result or an
// error, never a crash, a hang or a leak.
//
//===----------------------------------------------------------------------===//
#include "fuzz/FuzzTarget.h"

#include "dialects/kiln/KilnDialect.h"
#include "frontend/gpt/Config.h"
#include "frontend/gpt/GptImporter.h"
#include "frontend/gpt/Safetensors.h"
#include "frontend/gpt/Tokenizer.h"
#include "frontend/onnx/OnnxImporter.h"
#include "tokenizer.h"
#include "tools/kiln/HostTensor.h"
#include "tools/kiln/TokenizerSpec.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <string>

namespace kiln::fuzz {

namespace {

/// A context with the importers' dialects, single-threaded, whose
/// diagnostics go nowhere (a fuzzer's log is no place for them).
struct QuietContext {
  mlir::MLIRContext context;
  mlir::ScopedDiagnosticHandler quiet;
  QuietContext()
      : context(registry(), mlir::MLIRContext::Threading::DISABLED),
        quiet(&context, [](mlir::Diagnostic &) { return mlir::success(); }) {
    context.loadAllAvailableDialects();
  }
  static const mlir::DialectRegistry &registry() {
    static const mlir::DialectRegistry all = [] {
      mlir::DialectRegistry r;
      onnx::registerImporterDialects(r);
      r.insert<KilnDialect>();
      return r;
    }();
    return all;
  }
};

std::string_view view(const std::string &s) { return s; }

} // namespace

int onnxModel(const uint8_t *data, size_t size) {
  std::vector<std::string> parts = splitParts(data, size, 2);
  std::string model = writeScratch("model.onnx", view(parts[0]));
  // The seeds' external tensors name this file.
  writeScratch("weights.bin", view(parts[1]));
  QuietContext quiet;
  onnx::ImportOptions options;
  bool imported = bool(onnx::importModelFile(quiet.context, model, options));
  note(imported ? "imported" : "refused");
  if (imported)
    accepted();
  return 0;
}

int tensorFile(const uint8_t *data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char *>(data), size);
  driver::HostTensor tensor;
  std::string npy = driver::readNpy(writeScratch("x.npy", bytes), tensor);
  driver::HostTensor proto;
  std::string pb = driver::readTensorProto(writeScratch("x.pb", bytes), proto);
  note("npy: " + (npy.empty() ? tensor.describe() : npy));
  note("pb: " + (pb.empty() ? proto.describe() : pb));
  if (npy.empty() || pb.empty())
    accepted();
  return 0;
}

int checkpoint(const uint8_t *data, size_t size) {
  std::vector<std::string> parts = splitParts(data, size, 2);
  writeScratch("config.json", view(parts[0]));
  writeScratch("model.safetensors", view(parts[1]));
  removeScratch("model.safetensors.index.json");
  removeScratch("tokenizer.json");
  removeScratch("tokenizer.model");
  const std::string &dir = scratchDir();
  std::string error;
  std::optional<gpt::GptConfig> config = gpt::readConfig(dir, error);
  std::unique_ptr<gpt::Checkpoint> weights = gpt::Checkpoint::open(dir, error);
  // Every byte of every tensor view is read: a view past its file's end is
  // an out-of-bounds read the sanitizer sees. The sum goes to a volatile
  // so that the loop is not optimized away.
  uint64_t sum = 0;
  if (weights)
    for (const std::string &name : weights->names())
      if (const gpt::TensorView *view = weights->find(name))
        for (char byte : view->bytes)
          sum += uint8_t(byte);
  static volatile uint64_t sink;
  sink = sum;
  if (config && weights) {
    // The whole import: the config's sizes against the tensors' shapes.
    QuietContext quiet;
    gpt::ImportOptions options;
    options.maxSeqLen = 16;
    bool imported =
        bool(gpt::importCheckpoint(quiet.context, dir, options).module);
    note(imported ? "imported" : "import refused");
    if (imported)
      accepted();
  } else {
    note(error);
  }
  return 0;
}

int tokenizer(const uint8_t *data, size_t size) {
  std::vector<std::string> parts = splitParts(data, size, 2);
  removeScratch("config.json");
  removeScratch("model.safetensors");
  if (parts[0].empty())
    removeScratch("tokenizer.json");
  else
    writeScratch("tokenizer.json", view(parts[0]));
  if (parts[1].empty())
    removeScratch("tokenizer.model");
  else
    writeScratch("tokenizer.model", view(parts[1]));
  std::string error;
  std::optional<gpt::TokenizerTables> tables =
      gpt::readTokenizer(scratchDir(), error);
  if (!tables)
    return note(error), 0;
  artifact::Tokenizer spec;
  driver::tokenizerSpec(*tables, spec);
  auto tok = runtime::Tokenizer::create(spec);
  if (!tok.ok())
    return note(std::string(tok.status().message())), 0;
  note("tokenizer of " + std::to_string((*tok)->size()) + " tokens");
  accepted();
  const runtime::Tokenizer &t = **tok;
  for (std::string_view text :
       {std::string_view("Hello, world!  It's 2026: \xc3\xa9t\xc3\xa9 "
                         "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82\n\t x"),
        std::string_view(" \xe2\x96\x81\xe2\x96\x81 <unk> <s></s>"),
        std::string_view("\xff\xfe invalid \xc3")}) {
    auto ids = t.encode(text);
    if (ids.ok())
      (void)t.decode(ids->data(), ids->size());
  }
  std::vector<int64_t> all;
  for (int64_t id = -2; id < int64_t(t.size()) + 2 && id < 8192; ++id)
    all.push_back(id);
  (void)t.decode(all.data(), all.size());
  (void)t.decode(all.data(), all.size(), /*continuation=*/true);
  return 0;
}

} // namespace kiln::fuzz
