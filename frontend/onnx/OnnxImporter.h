//===- OnnxImporter.h - ONNX ModelProto -> Kiln graph IR --------*- C++ -*-===//
#ifndef KILN_FRONTEND_ONNX_ONNXIMPORTER_H
#define KILN_FRONTEND_ONNX_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringMap.h"

#include <string>

namespace kiln::onnx {

struct ImportOptions {
  /// Values for symbolic input dims (`--dim NAME=VALUE`).
  llvm::StringMap<int64_t> dims;
  /// Symbolic input dims kept symbolic, with their bounds
  /// (`--dim NAME=MIN..MAX`, MIN < MAX).
  llvm::StringMap<std::pair<int64_t, int64_t>> dimRanges;
  /// Graph inputs frozen to constants (`--constant-input NAME=@FILE.pb`):
  /// input name -> path of a serialized TensorProto.
  llvm::StringMap<std::string> constantInputs;
  /// Name of the function the graph becomes.
  std::string entryName = "main";
  /// A decoder exported with its KV cache (past_key_values.* inputs,
  /// present.* outputs) compiled for generation (`--max-seq-len`): the
  /// entry points `prefill` and `decode` over a cache of this many
  /// positions held by the runtime (docs/kv-cache.md). 0: the graph as it
  /// is, one entry point.
  int64_t decoderMaxSequence = 0;
  /// The decoder's fixed batch (`--max-batch`).
  int64_t decoderBatch = 1;
};

/// Reads the ONNX model at `path` and builds graph IR. Every problem (an
/// unreadable or malformed file, an unsupported op, a shape error) is
/// reported through the context's diagnostic engine, naming the file and
/// node; the result is then null.
mlir::OwningOpRef<mlir::ModuleOp> importModelFile(mlir::MLIRContext &context,
                                                  llvm::StringRef path,
                                                  const ImportOptions &options);

/// Registers the dialects the importer emits.
void registerImporterDialects(mlir::DialectRegistry &registry);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_ONNXIMPORTER_H
