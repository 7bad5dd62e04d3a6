// Tokenization from the tables the compiler put in the manifest.
//
// Byte-level BPE (the tokenizer.json of GPT-2, LLaMA 3 and Qwen2), matching
// Hugging Face `tokenizers`: added tokens split out first, the
// pre-tokenizer's pattern (hand-written matchers of the three known
// regexes, with Unicode letter and number tables), bytes mapped to the
// byte-level alphabet, merges by rank; decoding maps back to bytes and
// replaces invalid UTF-8 as `String::from_utf8_lossy` does.
//
// SentencePiece BPE (the tokenizer.model of LLaMA 2 and Mistral;
// tokenizer_sentencepiece.cc), matching the `sentencepiece` library: the
// identity normalizer's whitespace handling, user-defined pieces kept
// whole, merges of the best-scoring adjacent pair first, byte fallback;
// decoding drops control pieces and the dummy prefix's space and replaces
// each invalid byte by U+FFFD.
#ifndef KILN_RUNTIME_TOKENIZER_H
#define KILN_RUNTIME_TOKENIZER_H

#include "manifest.pb.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <functional>
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
  /// `continuation`: the ids follow earlier text, so a SentencePiece
  /// decoder keeps the space it otherwise drops from the first piece.
  std::string decodeBytes(const int64_t *ids, size_t count,
                          bool continuation = false) const;
  /// The text `ids` stand for, invalid UTF-8 replaced by U+FFFD (by
  /// maximal subparts, or byte by byte for SentencePiece, as each library
  /// does).
  std::string decode(const int64_t *ids, size_t count,
                     bool continuation = false) const {
    std::string bytes = decodeBytes(ids, count, continuation);
    return sentencePiece_ ? replaceInvalidBytes(bytes) : lossyUtf8(bytes);
  }
  size_t size() const { return tokens_.size(); }
  bool isSentencePiece() const { return sentencePiece_; }

  /// `bytes` with each maximal invalid subpart replaced by U+FFFD.
  static std::string lossyUtf8(std::string_view bytes);
  /// `bytes` with each byte that is not part of a valid UTF-8 sequence
  /// replaced by U+FFFD.
  static std::string replaceInvalidBytes(std::string_view bytes);
  /// Length of the longest prefix of `bytes` that does not end inside a
  /// UTF-8 sequence that later bytes could complete (for streaming).
  static size_t completePrefix(std::string_view bytes);
  /// The UTF-8 sequence at `i`: its length when valid, 0 when `s` ends
  /// inside it, -k when it is invalid at its k-th byte.
  static int utf8SequenceAt(std::string_view s, size_t i);

private:
  Tokenizer() = default;
  void bpe(const std::vector<uint32_t> &codepoints,
           std::vector<int64_t> &out) const;
  void encodeSegment(std::string_view text, std::vector<int64_t> &out) const;
  absl::Status createSentencePiece(const artifact::Tokenizer &spec);
  void encodeSentencePiece(std::string_view text,
                           std::vector<int64_t> &out) const;
  std::string decodeSentencePiece(const int64_t *ids, size_t count,
                                  bool continuation) const;

  artifact::Tokenizer::Pattern pattern_ = artifact::Tokenizer::GPT2;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> vocab_;
  /// (left << 32 | right) -> (rank, result).
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;
  /// Added tokens, longest first.
  std::vector<std::pair<std::string, int64_t>> added_;
  std::vector<int64_t> prefix_;
  bool addPrefixSpace_ = false, ignoreMerges_ = false;
  /// Text between added tokens is put in NFC first (Qwen2's normalizer).
  bool nfc_ = false;
  // SentencePiece: pieces that merge (normal, user-defined, unused) by
  // text, their scores and types, user-defined pieces longest first, the
  // byte pieces, the normalizer's flags.
  bool sentencePiece_ = false;
  std::unordered_map<std::string, int64_t> pieces_;
  std::vector<float> scores_;
  std::vector<uint8_t> types_;
  std::vector<std::pair<std::string, int64_t>> userDefined_;
  int64_t byteIds_[256] = {};
  int64_t unkId_ = 0;
  std::string unkSurface_;
  bool addDummyPrefix_ = false, removeExtraWhitespaces_ = false,
       escapeWhitespaces_ = false, byteFallback_ = false;
  /// The byte-level alphabet: byte -> code point, and back.
  uint32_t byteToCodepoint_[256] = {};
  std::unordered_map<uint32_t, uint8_t> codepointToByte_;
};

} // namespace kiln::runtime

#endif // KILN_RUNTIME_TOKENIZER_H
