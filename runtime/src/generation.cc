// Text generation over a decoder model's entry point.
#include "generation.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>

namespace kiln::runtime {

Sampler::Sampler(const SamplingOptions &options)
    : options_(options), rng_(options.seed) {}

int64_t Sampler::sample(const float *logits, size_t vocab) {
  if (options_.temperature <= 0.0 || options_.topK == 1) {
    size_t best = 0;
    for (size_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best])
        best = i;
    return int64_t(best);
  }
  candidates_.clear();
  for (size_t i = 0; i < vocab; ++i)
    if (!std::isnan(logits[i]))
      candidates_.push_back({logits[i], int64_t(i)});
  if (candidates_.empty())
    return 0;
  // Largest first; equal logits by token id, so that a seed gives the same
  // tokens everywhere.
  auto larger = [](const std::pair<float, int64_t> &a,
                   const std::pair<float, int64_t> &b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = candidates_.size();
  if (options_.topK > 0 && size_t(options_.topK) < keep) {
    keep = size_t(options_.topK);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep,
                      candidates_.end(), larger);
    candidates_.resize(keep);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), larger);
  }
  // An infinite largest logit takes all the probability.
  if (std::isinf(candidates_[0].first))
    return candidates_[0].first > 0 ? candidates_[0].second
                                    : candidates_[keep - 1].second;
  // Softmax of logits / temperature, in double, the largest subtracted
  // first (so that a tiny temperature gives exp(-huge) = 0, not inf/inf).
  std::vector<double> p(keep);
  double top = candidates_[0].first, sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    // expl, not exp: glibc 2.29 versioned exp anew, and the runtime keeps
    // to 2.28 (the GPU bundle's runner runs on older systems).
    p[i] = double(expl((long double)(double(candidates_[i].first) - top) /
                       options_.temperature));
    sum += p[i];
  }
  for (double &x : p)
    x /= sum;
  if (options_.topP < 1.0) {
    double cumulative = 0;
    size_t n = 0;
    while (n < keep && (n == 0 || cumulative < options_.topP))
      cumulative += p[n++];
    keep = n;
    sum = cumulative;
  } else {
    sum = 1.0;
  }
  double u = double(rng_() >> 11) * 0x1.0p-53 * sum;
  for (size_t i = 0; i < keep; ++i) {
    if (u < p[i])
      return candidates_[i].second;
    u -= p[i];
  }
  return candidates_[keep - 1].second;
}

absl::StatusOr<GenerationModel> generationModel(const Artifact &artifact) {
  const artifact::Manifest &m = artifact.manifest();
  if (!m.has_generation() || m.generation().prefill_entry().empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "'", artifact.origin(),
        "' is not a decoder model compiled from a checkpoint: it cannot "
        "generate (compile a Hugging Face checkpoint folder with kiln "
        "compile DIR; run other models with kiln run)"));
  const artifact::Generation &g = m.generation();
  GenerationModel model;
  model.entry = g.prefill_entry();
  model.vocab = g.vocab_size();
  model.maxSequence = g.max_sequence();
  model.eos.assign(g.eos_token_ids().begin(), g.eos_token_ids().end());
  model.pad = g.pad_token_id() >= 0 ? g.pad_token_id() : 0;
  const artifact::EntryPoint *entry = nullptr;
  for (int i = 0; i < m.entry_points_size(); ++i)
    if (m.entry_points(i).name() == model.entry) {
      entry = &m.entry_points(i);
      model.entryIndex = size_t(i);
    }
  auto malformed = [&](const std::string &why) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", artifact.origin(), "': its generation entry point '",
                     model.entry, "' ", why, "; recompile the checkpoint"));
  };
  if (!entry)
    return malformed("is missing");
  // A second input: each row's left padding, i64[batch].
  model.padding = entry->inputs_size() == 2 &&
                  entry->inputs(1).name() == "padding" &&
                  entry->inputs(1).dtype() == artifact::I64 &&
                  entry->inputs(1).shape_size() == 1 &&
                  entry->inputs(0).shape_size() == 2 &&
                  entry->inputs(1).shape(0) == entry->inputs(0).shape(0);
  if (entry->inputs_size() != (model.padding ? 2 : 1) ||
      entry->outputs_size() != 1 ||
      entry->inputs(0).dtype() != artifact::I64 ||
      entry->inputs(0).shape_size() != 2 ||
      entry->outputs(0).dtype() != artifact::F32 ||
      entry->outputs(0).shape_size() != 3 ||
      entry->outputs(0).shape(2) != int64_t(model.vocab) ||
      model.vocab == 0 || model.maxSequence == 0)
    return malformed("does not map i64[batch, sequence] token ids to f32 "
                     "[batch, sequence, vocab] logits");
  if (g.has_tokenizer()) {
    auto tokenizer = Tokenizer::create(g.tokenizer());
    if (!tokenizer.ok())
      return tokenizer.status();
    if ((*tokenizer)->size() > model.vocab)
      return malformed("has a tokenizer larger than its vocabulary");
    model.tokenizer = std::move(*tokenizer);
  }
  if (!g.decode_entry().empty()) {
    model.decodeEntry = g.decode_entry();
    const artifact::EntryPoint *decode = nullptr;
    for (int i = 0; i < m.entry_points_size(); ++i)
      if (m.entry_points(i).name() == model.decodeEntry) {
        decode = &m.entry_points(i);
        model.decodeIndex = size_t(i);
      }
    const artifact::TensorSpec &ids = entry->inputs(0);
    if (!decode || decode->inputs_size() != (model.padding ? 3 : 2) ||
        decode->outputs_size() != 1 ||
        decode->inputs(0).dtype() != artifact::I64 ||
        decode->inputs(0).shape_size() != 2 ||
        decode->inputs(0).shape(0) <= 0 ||
        decode->inputs(0).shape(0) != ids.shape(0) ||
        decode->inputs(0).shape(1) != 1 ||
        decode->inputs(1).shape_size() != 2 ||
        decode->inputs(1).shape(1) != 0 ||
        decode->outputs(0).dtype() != artifact::F32 ||
        decode->outputs(0).shape_size() != 3 ||
        decode->outputs(0).shape(2) != int64_t(model.vocab) ||
        m.states_size() == 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "'", artifact.origin(), "': its decode entry point '",
          model.decodeEntry, "' does not map input_ids i64[batch, 1] and "
          "past i8[past, 0] to logits f32[batch, 1, vocab] over a KV cache; "
          "recompile the checkpoint"));
  }
  const artifact::TensorSpec &ids = entry->inputs(0);
  if (ids.shape(0) > 0)
    model.batch = ids.shape(0);
  if (ids.shape(1) > 0) {
    model.fixedSequence = true;
    model.maxSequence = size_t(ids.shape(1));
  }
  return model;
}

Generator::Generator(GenerationModel model, const SamplingOptions &options,
                     Forward forward, Decode decode,
                     std::function<bool()> cacheIntact)
    : model_(std::move(model)), sampler_(options),
      forward_(std::move(forward)),
      decode_(model_.decodeEntry.empty() ? nullptr : std::move(decode)),
      cacheIntact_(std::move(cacheIntact)) {}

absl::Status Generator::checkIds(const int64_t *ids, size_t count) const {
  for (size_t i = 0; i < count; ++i)
    if (ids[i] < 0 || size_t(ids[i]) >= model_.vocab)
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", ids[i], " is outside the vocabulary of ",
                       model_.vocab, " tokens"));
  return absl::OkStatus();
}

absl::Status Generator::feed(const int64_t *ids, size_t count) {
  if (length() + count > model_.maxSequence)
    return absl::OutOfRangeError(absl::StrCat(
        "the sequence would be ", length() + count,
        " tokens, longer than the ", model_.maxSequence,
        " the model was compiled for (kiln compile --max-seq-len)"));
  if (absl::Status st = checkIds(ids, count); !st.ok())
    return st;
  if (rows_.empty()) {
    rows_.assign(size_t(model_.batch), {});
    padding_.assign(size_t(model_.batch), 0);
  }
  for (std::vector<int64_t> &row : rows_)
    row.insert(row.end(), ids, ids + count);
  return absl::OkStatus();
}

absl::Status
Generator::feedRows(const std::vector<std::vector<int64_t>> &rows) {
  if (!rows_.empty())
    return absl::FailedPreconditionError(
        "prompts per row start a generation: reset the generator first");
  if (rows.size() != size_t(model_.batch))
    return absl::InvalidArgumentError(absl::StrCat(
        rows.size(), " prompts for a model compiled for a batch of ",
        model_.batch, " (kiln compile --dim batch=", rows.size(), ")"));
  size_t longest = 0;
  for (const std::vector<int64_t> &row : rows) {
    if (row.empty())
      return absl::InvalidArgumentError("a prompt has no tokens");
    if (absl::Status st = checkIds(row.data(), row.size()); !st.ok())
      return st;
    longest = std::max(longest, row.size());
  }
  if (longest > model_.maxSequence)
    return absl::OutOfRangeError(absl::StrCat(
        "a prompt is ", longest, " tokens, longer than the ",
        model_.maxSequence,
        " the model was compiled for (kiln compile --max-seq-len)"));
  for (const std::vector<int64_t> &row : rows)
    if (row.size() != longest && !model_.padding)
      return absl::InvalidArgumentError(
          "prompts of different lengths need a model that takes padding "
          "(compile the checkpoint again with this release of kiln)");
  rows_ = rows;
  padding_.clear();
  for (const std::vector<int64_t> &row : rows)
    padding_.push_back(int64_t(longest - row.size()));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Generator::step() {
  absl::StatusOr<std::vector<int64_t>> tokens = stepRows();
  if (!tokens.ok())
    return tokens.status();
  return tokens->front();
}

absl::StatusOr<std::vector<int64_t>> Generator::stepRows() {
  size_t length = this->length(), batch = size_t(model_.batch);
  if (rows_.empty() || rows_[0].empty())
    return absl::FailedPreconditionError(
        "no prompt: feed at least one token before generating");
  if (length > model_.maxSequence)
    return absl::OutOfRangeError(absl::StrCat(
        "the sequence is past the ", model_.maxSequence,
        " tokens the model was compiled for (kiln compile --max-seq-len)"));
  logits_.resize(batch * model_.vocab);
  if (cached_ > 0 && cacheIntact_ && !cacheIntact_())
    cached_ = 0;  // something else wrote the cache: fill it again
  if (decode_ && cached_ > 0) {
    // One decode per position the cache lacks (the tokens sampled last, and
    // any fed since), each appending its keys and values.
    while (cached_ < length) {
      padded_.clear();
      for (size_t r = 0; r < batch; ++r)
        padded_.push_back(rows_[r][cached_ - size_t(padding_[r])]);
      if (absl::Status status = decode_(padded_, cached_, padding_, logits_);
          !status.ok()) {
        cached_ = 0;  // the cache is in an unknown state: prefill again
        return status;
      }
      ++cached_;
    }
  } else {
    // Each row left-padded to the same end, then (a fixed sequence dim)
    // padded on the right to the entry point's length.
    size_t width = model_.fixedSequence ? model_.maxSequence : length;
    padded_.assign(batch * width, model_.pad);
    for (size_t r = 0; r < batch; ++r)
      std::copy(rows_[r].begin(), rows_[r].end(),
                padded_.begin() + r * width + size_t(padding_[r]));
    if (absl::Status status = forward_(padded_, padding_, length - 1, logits_);
        !status.ok())
      return status;
    // The prefill entry point wrote the keys and values of every position.
    cached_ = length;
  }
  next_.clear();
  for (size_t r = 0; r < batch; ++r) {
    next_.push_back(
        sampler_.sample(logits_.data() + r * model_.vocab, model_.vocab));
    rows_[r].push_back(next_.back());
  }
  return next_;
}

bool Generator::isEos(int64_t token) const {
  return std::find(model_.eos.begin(), model_.eos.end(), token) !=
         model_.eos.end();
}

void Generator::reset() {
  rows_.clear();
  padding_.clear();
  logits_.clear();
  cached_ = 0;
  sampler_.reseed();
}

} // namespace kiln::runtime
