//===- GptImporter.h - Hugging Face checkpoint -> Kiln graph IR -*- C++ -*-===//
//
// Builds graph IR for a GPT-family checkpoint folder (config.json and
// safetensors): the embedding, norms, rotary embedding, attention, MLP and
// LM head as kiln ops and linalg, so that the raised-op kernels (flash
// attention, fused norms, tensor-core GEMMs with epilogues) apply without
// any raising. The entry point `prefill` maps `input_ids` [batch, sequence]
// to `logits` [batch, sequence, vocab]; with a KV cache, it also writes
// each layer's keys and values into the session's cache (`kiln.state`
// arguments, tied to the results of the same name), and `decode` maps one
// token per sequence and the count of cached positions (the first dim of
// the zero-byte `past` input) to its logits, reading and appending to the
// cache in place.
//
// Weights are views of the mapped checkpoint where they are used as they
// are stored (f32, not transposed), and otherwise converted or transposed
// once, straight from the mapping, whose pages are then released.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_GPT_GPTIMPORTER_H
#define KILN_FRONTEND_GPT_GPTIMPORTER_H

#include "frontend/gpt/Config.h"
#include "frontend/gpt/Safetensors.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringMap.h"

#include <functional>
#include <memory>

namespace kiln::gpt {

struct ImportOptions {
  /// Dims fixed with `--dim NAME=VALUE` (batch, sequence).
  llvm::StringMap<int64_t> dims;
  /// Dims kept symbolic with `--dim NAME=MIN..MAX`.
  llvm::StringMap<std::pair<int64_t, int64_t>> dimRanges;
  /// `--max-batch` and `--max-seq-len` (0: not given). They bound the
  /// symbolic dims unless `--dim` gives them.
  int64_t maxBatch = 0, maxSeqLen = 0;
  /// Whether to emit the KV cache and the `decode` entry point (when the
  /// batch is fixed and the sequence can grow past one token).
  bool kvCache = true;
  /// `--precision` (fp32, fp16, bf16): under a half precision the GEMM
  /// weights are made in that type as they are read.
  std::string precision = "fp32";
  /// The target's attention takes a symbolic key count (cpu; cuda at fp16
  /// and bf16) for the heads sizes `symbolicHeadSizes` accepts (any when
  /// unset): decode attends over the cached prefix alone, not the whole
  /// cache with a mask, and prefill may have symbolic batch and sequence.
  bool symbolicAttention = false;
  std::function<bool(int64_t)> symbolicHeadSizes;
};

/// What a checkpoint import produces: the module, and the checkpoint whose
/// mapped bytes its weights may view (it must outlive every use of the
/// module).
struct ImportedCheckpoint {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::unique_ptr<Checkpoint> weights;
  GptConfig config;
  /// Whether its attention has symbolic counts where the dims are
  /// symbolic (options.symbolicAttention, for this model's head size).
  bool symbolicAttention = false;
  /// The longest sequence the prefill entry point takes.
  int64_t maxSequence = 0;
  /// Whether the module has the `decode` entry point and its KV cache.
  bool decode = false;
};

/// Whether `path` is a folder with a config.json (what `kiln compile`
/// treats as a checkpoint rather than an ONNX file).
bool isCheckpointFolder(llvm::StringRef path);

/// A hash of the checkpoint folder's config.json and safetensors files
/// (hex), for the artifact's model hash.
std::string hashCheckpoint(llvm::StringRef dir);

/// Imports the checkpoint folder `dir`. Problems are reported through the
/// context's diagnostic engine, naming the file (and tensor or field); the
/// module is then null.
ImportedCheckpoint importCheckpoint(mlir::MLIRContext &context,
                                    llvm::StringRef dir,
                                    const ImportOptions &options);

} // namespace kiln::gpt

#endif // KILN_FRONTEND_GPT_GPTIMPORTER_H
