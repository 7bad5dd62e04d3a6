//===- Config.h - a Hugging Face checkpoint's config.json -------*- C++ -*-===//
//
// The architecture of a GPT-family checkpoint, read from `config.json` (and
// `generation_config.json` when present) into one description that the
// graph builder follows. Families: gpt2, llama (LLaMA 2 and 3, rope_scaling
// of type linear and llama3), mistral, qwen2, gemma (1), phi3. A
// `model_type` outside them, or a known field whose value changes the
// computation in a way Kiln does not implement (a rope scaling type, a sliding window shorter than the
// compiled sequence, an activation), is an error naming the field. Fields
// Kiln does not know are ignored: configs carry many that only training or
// the Python API read (dropouts, initializer ranges, label maps).
//
// Both spellings of the rotary parameters are read: `rope_theta` with
// `rope_scaling` (transformers 4) and `rope_parameters` (transformers 5).
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_GPT_CONFIG_H
#define KILN_FRONTEND_GPT_CONFIG_H

#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::gpt {

enum class Family { Gpt2, Llama, Mistral, Qwen2, Gemma, Phi3 };

enum class Activation { GeluTanh, GeluErf, Silu, Relu };

/// The rotary embedding's frequencies.
struct RopeConfig {
  double theta = 10000.0;
  /// "default", "linear" or "llama3".
  std::string type = "default";
  double factor = 1.0;
  // llama3
  double lowFreqFactor = 1.0, highFreqFactor = 4.0;
  int64_t originalMaxPositions = 8192;
  /// Fraction of each head's dims that rotate.
  double partialRotaryFactor = 1.0;
};

struct GptConfig {
  std::string modelType;
  Family family = Family::Llama;
  int64_t hiddenSize = 0, numLayers = 0, numHeads = 0, numKvHeads = 0;
  int64_t headDim = 0, intermediateSize = 0, vocabSize = 0;
  int64_t maxPositions = 0;
  double normEpsilon = 1e-5;
  Activation activation = Activation::Silu;
  bool tieWordEmbeddings = false;
  /// Biases on the q, k, v projections, on the output projection, on the
  /// MLP's projections (LLaMA's attention_bias and mlp_bias; Qwen2 has
  /// q/k/v biases always).
  bool qkvBias = false, outputBias = false, mlpBias = false;
  RopeConfig rope;
  /// Mistral/Qwen2 sliding-window attention: keys further back than this
  /// are not seen (0: none).
  int64_t slidingWindow = 0;
  /// Gemma: the embedding is scaled by sqrt(hidden size) and the norms'
  /// weights w scale by (1 + w).
  bool gemmaScaling = false;
  /// `torch_dtype` / `dtype`: "float32", "float16", "bfloat16" (or empty).
  std::string dtype;
  /// From generation_config.json, else config.json.
  std::vector<int64_t> eosTokenIds;
  int64_t bosTokenId = -1, padTokenId = -1;

  /// Number of rotating dims per head (even).
  int64_t rotaryDims() const {
    return int64_t(double(headDim) * rope.partialRotaryFactor) / 2 * 2;
  }
};

/// Reads `dir/config.json` (and `dir/generation_config.json`). On a problem,
/// returns nullopt and sets `error` to a message naming the file and field.
std::optional<GptConfig> readConfig(llvm::StringRef dir, std::string &error);

/// A model folder's special tokens and model_type, whatever its
/// architecture (an ONNX export's folder, as optimum writes it):
/// config.json, then generation_config.json, each where present.
struct SpecialTokens {
  std::vector<int64_t> eosTokenIds;
  int64_t bosTokenId = -1, padTokenId = -1;
  std::string modelType;
  /// config.json's max_position_embeddings (or GPT-2's n_positions) and
  /// which of the two it was; 0 when absent.
  int64_t maxPositions = 0;
  std::string maxPositionsField;
};
std::optional<SpecialTokens> readSpecialTokens(llvm::StringRef dir,
                                               std::string &error);

/// The rotary inverse frequencies of `config` (`rotaryDims() / 2` of them),
/// computed as transformers computes them (in f32), scaling included.
std::vector<float> rotaryInverseFrequencies(const GptConfig &config);

} // namespace kiln::gpt

#endif // KILN_FRONTEND_GPT_CONFIG_H
