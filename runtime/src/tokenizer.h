// Byte-level BPE tokenization (the tokenizer.json of GPT-2, LLaMA 3 and
// Qwen2), from the tables the compiler put in the manifest, matching
// Hugging Face `tokenizers`: added tokens split out first, the
// pre-tokenizer's pattern (hand-written matchers of the three known
// regexes, with Unicode letter and number tables), bytes mapped to the
// byte-level alphabet, merges by rank; decoding maps back to bytes and
// replaces invalid UTF-8 as `String::from_utf8_lossy` does.
#ifndef KILN_RUNTIME_TOKENIZER_H
#define KILN_RUNTIME_TOKENIZER_H

#include "manifest.pb.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::runtime {

class Tokenizer {
public:
  /// Checks the tables (ids in range, a known pattern).
  static absl::StatusOr<std::unique_ptr<Tokenizer>>
  create(const artifact::Tokenizer &spec);

  /// The ids of `text` (UTF-8), the post-processor's prefix first.
  absl::StatusOr<std::vector<int64_t>> encode(std::string_view text) const;
  /// The bytes `ids` stand for (possibly cut inside a UTF-8 sequence).
  std::string decodeBytes(const int64_t *ids, size_t count) const;
  /// The text `ids` stand for, invalid UTF-8 replaced by U+FFFD.
  std::string decode(const int64_t *ids, size_t count) const {
    return lossyUtf8(decodeBytes(ids, count));
  }
  size_t size() const { return tokens_.size(); }

  /// `bytes` with each maximal invalid subpart replaced by U+FFFD.
  static std::string lossyUtf8(std::string_view bytes);
  /// Length of the longest prefix of `bytes` that does not end inside a
  /// UTF-8 sequence that later bytes could complete (for streaming).
  static size_t completePrefix(std::string_view bytes);

private:
  Tokenizer() = default;
  void bpe(const std::vector<uint32_t> &codepoints,
           std::vector<int64_t> &out) const;
  void encodeSegment(std::string_view text, std::vector<int64_t> &out) const;

  artifact::Tokenizer::Pattern pattern_ = artifact::Tokenizer::GPT2;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> vocab_;
  /// (left << 32 | right) -> (rank, result).
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;
  /// Added tokens, longest first.
  std::vector<std::pair<std::string, int64_t>> added_;
  std::vector<int64_t> prefix_;
  bool addPrefixSpace_ = false, ignoreMerges_ = false;
  /// The byte-level alphabet: byte -> code point, and back.
  uint32_t byteToCodepoint_[256] = {};
  std::unordered_map<uint32_t, uint8_t> codepointToByte_;
};

} // namespace kiln::runtime

#endif // KILN_RUNTIME_TOKENIZER_H
