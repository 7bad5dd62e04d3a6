// Text generation over a decoder model's entry point: token ids in, the
// next token out, with greedy or sampled choice. The loop does not know how
// logits are computed: a Forward function gives the logits of the last
// position for a sequence of ids (the CPU or CUDA session; the GPU-kernel
// simulator in `kiln generate --device sim`).
#ifndef KILN_RUNTIME_GENERATION_H
#define KILN_RUNTIME_GENERATION_H

#include "artifact.h"
#include "tokenizer.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace kiln::runtime {

/// temperature 0 is greedy (the first of the largest logits); otherwise the
/// logits are divided by the temperature, cut to the top_k largest (0: all)
/// and to the smallest set whose probability reaches top_p (1: all), and a
/// token is drawn from what is left with a generator seeded by `seed`.
struct SamplingOptions {
  double temperature = 0.0;
  int64_t topK = 0;
  double topP = 1.0;
  uint64_t seed = 0;
};

class Sampler {
public:
  explicit Sampler(const SamplingOptions &options);
  /// Picks a token from `logits[0 .. vocab)`.
  int64_t sample(const float *logits, size_t vocab);
  void reseed() { rng_.seed(options_.seed); }

private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int64_t>> candidates_;
};

/// What the manifest says of a decoder model, checked against its entry
/// point.
struct GenerationModel {
  std::string entry;
  size_t entryIndex = 0;
  size_t vocab = 0;
  /// The longest sequence the entry point takes.
  size_t maxSequence = 0;
  /// The entry point's sequence dim is fixed (cuda): shorter sequences are
  /// padded to it, and the logits of the last real position are read
  /// (attention is causal, so the padding does not change them).
  bool fixedSequence = false;
  /// The entry point's batch size when fixed, else 1. The rows all hold
  /// the one sequence (feed), or a prompt each (feedRows).
  int64_t batch = 1;
  /// The entry points take `padding` i64[batch], each row's count of
  /// left-padding tokens (a fixed batch of more than one row), so that
  /// rows of different lengths end at the same position.
  bool padding = false;
  std::vector<int64_t> eos;
  int64_t pad = 0;
  /// The decode entry point over the session's KV cache (empty: none; each
  /// step runs the prefill entry point over the whole sequence).
  std::string decodeEntry;
  size_t decodeIndex = 0;
  /// The model's tokenizer, when the artifact carries one.
  std::shared_ptr<const Tokenizer> tokenizer;
};

/// The generation model of `artifact`, or an error that says why the
/// artifact cannot generate (an ONNX model, an entry point of another
/// shape).
absl::StatusOr<GenerationModel> generationModel(const Artifact &artifact);

/// Runs the model on `ids` (`batch` rows of `ids.size() / batch`, each
/// left-padded by `padding[row]` tokens, and padded on the right to the
/// entry point's shape when it is fixed) and writes the logits of position
/// `last` of every row to `logits` (batch x vocab floats).
using Forward = std::function<absl::Status(
    const std::vector<int64_t> &ids, const std::vector<int64_t> &padding,
    size_t last, std::vector<float> &logits)>;

/// Runs the decode entry point on one new token per row (`batch` ids) at
/// position `past` (the count of positions the cache holds), appending its
/// keys and values to the cache, and writes every row's logits to `logits`
/// (batch x vocab floats).
using Decode = std::function<absl::Status(
    const std::vector<int64_t> &ids, size_t past,
    const std::vector<int64_t> &padding, std::vector<float> &logits)>;

class Generator {
public:
  /// Without `decode` (or when the model has no decode entry point), each
  /// step runs `forward` over the whole sequence. With it, the first step
  /// runs `forward` over the prompt (which fills the cache) and each later
  /// token is one `decode`.
  /// `cacheIntact` (optional) says whether the session's cache still holds
  /// what this generator's runs wrote; when it does not, the next step
  /// runs prefill again.
  Generator(GenerationModel model, const SamplingOptions &options,
            Forward forward, Decode decode = nullptr,
            std::function<bool()> cacheIntact = nullptr);

  /// Appends prompt tokens (to every row).
  absl::Status feed(const int64_t *ids, size_t count);
  /// Starts one prompt per row (`batch` of them, of any lengths): the
  /// shorter ones are padded on the left. Only on an empty generator.
  absl::Status feedRows(const std::vector<std::vector<int64_t>> &rows);
  /// Computes the next token, appends it and returns it (row 0's).
  absl::StatusOr<int64_t> step();
  /// Computes every row's next token, appends them and returns them.
  absl::StatusOr<std::vector<int64_t>> stepRows();
  bool isEos(int64_t token) const;
  /// Whether the sequence is as long as the model takes: no further step.
  bool full() const { return length() > model_.maxSequence; }
  /// Forgets every token and reseeds the sampler.
  void reset();
  /// Row 0's tokens (prompt and generated), and row `row`'s.
  const std::vector<int64_t> &tokens() const { return row(0); }
  const std::vector<int64_t> &row(size_t row) const {
    return row < rows_.size() ? rows_[row] : empty_;
  }
  size_t rows() const { return size_t(model_.batch); }
  /// Every row's logits the last step sampled from (batch x vocab); empty
  /// before the first step and after reset().
  const std::vector<float> &logits() const { return logits_; }
  const GenerationModel &model() const { return model_; }

private:
  GenerationModel model_;
  Sampler sampler_;
  Forward forward_;
  Decode decode_;
  std::function<bool()> cacheIntact_;
  /// The padded length: every row's left padding and tokens.
  size_t length() const {
    return rows_.empty() ? 0 : size_t(padding_[0]) + rows_[0].size();
  }
  absl::Status checkIds(const int64_t *ids, size_t count) const;

  /// Positions whose keys and values the session's cache holds.
  size_t cached_ = 0;
  /// Each row's tokens (without padding), and its left padding.
  std::vector<std::vector<int64_t>> rows_;
  std::vector<int64_t> padding_, padded_, next_;
  const std::vector<int64_t> empty_;
  std::vector<float> logits_;
};

} // namespace kiln::runtime

#endif // KILN_RUNTIME_GENERATION_H
