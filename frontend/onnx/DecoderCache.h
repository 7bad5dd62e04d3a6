//===- DecoderCache.h - a decoder exported with its KV cache ----*- C++ -*-===//
//
// The usual Hugging Face export of a decoder with a cache takes input_ids,
// optionally attention_mask and position_ids, and per layer
// past_key_values.L.key/value [batch, kv heads, past, head dim]; it returns
// the logits and present.L.key/value = Concat(past, new) along the
// positions. Compiled for generation (`kiln compile --max-seq-len N`), the
// importer holds that cache in states the runtime keeps, and writes each
// step's keys and values into it in place (docs/kv-cache.md).
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_ONNX_DECODERCACHE_H
#define KILN_FRONTEND_ONNX_DECODERCACHE_H

#include "onnx.pb.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringMap.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::onnx {

struct DecoderCache {
  /// One cache tensor: the graph input and the graph output that is
  /// Concat(input, new) along dim 2.
  struct Pair {
    std::string past, present;
    int64_t heads = 0, headDim = 0;
    int32_t elemType = 0;
  };
  std::vector<Pair> pairs; // in the order of the graph's inputs
  /// Optional graph inputs the entry points compute ("" when absent).
  std::string mask, positions;
  int32_t maskType = 0, positionsType = 0;
  /// The dim_params of input_ids' sequence dim and of the past's length.
  std::string seqDim, pastDim;
  /// Names standing for a past input (the input itself, and Identity or
  /// one-input Concat results of it) -> its pair.
  llvm::StringMap<size_t> pastNames;
  /// Present outputs -> their pair.
  llvm::StringMap<size_t> presentNames;
  /// A table of learned positions that a Gather reads at position_ids
  /// (GPT-2's wpe), its rows: the most positions the model has (0: none).
  std::string positionTable;
  int64_t positionRows = 0;
};

/// `graph` as a decoder with a cache, or nothing with `why` saying which
/// input or output does not fit the pattern.
std::optional<DecoderCache>
findDecoderCache(const kiln_onnx::GraphProto &graph, std::string &why);

class NodeContext;

/// One step of a decoder entry point over its held cache: the states of a
/// layer's keys and values [B, kv heads, N, D], the cached count, the new
/// positions and their sum (index values); prefill: nothing cached.
struct CacheStep {
  mlir::Value keyState, valueState;
  mlir::Value past, seq, total;
  bool prefill = false;
};

/// A layer's attention over the held cache: its output and the states
/// with the new keys and values written.
struct CachedAttention {
  mlir::Value output, key, value;
};

/// GroupQueryAttention's do_rotary: q [B, N, S, H] and k [B, kvN, S, H]
/// rotated with its cos_cache and sin_cache (inputs 7 and 8) at positions
/// start(row) + i; `seqSizes` gives S where it is symbolic. Nothing without
/// do_rotary.
mlir::LogicalResult rotateGroupQueryAttention(
    NodeContext &ctx, mlir::Value &q, mlir::Value &k,
    mlir::ValueRange seqSizes,
    llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                   mlir::Value)>
        start);

/// com.microsoft GroupQueryAttention (onnxruntime-genai's decoders) over
/// the held cache: the new keys and values written at the cached count,
/// one kiln.attention over the cache's prefix, causal from the end.
mlir::FailureOr<CachedAttention>
importCachedGroupQueryAttention(NodeContext &ctx, const CacheStep &step);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_DECODERCACHE_H
