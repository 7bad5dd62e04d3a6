//===- Tokenizer.h - a checkpoint's tokenizer.json -------------*- C++ -*-===//
//
// Reads a byte-level BPE tokenizer.json (GPT-2, LLaMA 3, Qwen2) into the
// tables the runtime's tokenizer works from (runtime/src/tokenizer.h), to
// be stored in the artifact. What the runtime does not implement (another
// model type, a normalizer, a pre-tokenizer pattern it has no matcher for,
// BPE dropout or subword affixes) is an error naming the field.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_GPT_TOKENIZER_H
#define KILN_FRONTEND_GPT_TOKENIZER_H

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln::gpt {

struct TokenizerTables {
  /// 1: GPT-2's pattern, 2: LLaMA 3's, 3: Qwen2's (artifact::Tokenizer).
  int pattern = 0;
  std::vector<std::string> tokens;
  /// left, right, result per merge, by rank.
  std::vector<uint32_t> merges;
  std::vector<uint32_t> addedIds;
  std::vector<bool> addedSpecial;
  std::vector<uint32_t> prefixIds;
  bool addPrefixSpace = false, ignoreMerges = false;
  /// tokenizer.json's normalizer is NFC (Qwen2).
  bool nfc = false;

  /// A SentencePiece BPE model (tokenizer.model) instead: `tokens` are its
  /// pieces, with their scores and types (artifact::Tokenizer's), and the
  /// normalizer's flags.
  bool sentencePiece = false;
  std::vector<float> scores;
  std::vector<uint32_t> pieceTypes;
  bool addDummyPrefix = false, removeExtraWhitespaces = false,
       escapeWhitespaces = false, byteFallback = false;
  uint32_t unkId = 0;
  std::string unkSurface;
};

/// Reads `dir/tokenizer.model` (SentencePiece): nullopt with an empty
/// `error` when there is none, nullopt with `error` set when it cannot be
/// used (a unigram model, a normalization other than identity, a
/// malformed file).
std::optional<TokenizerTables> readSentencePiece(llvm::StringRef dir,
                                                 std::string &error);

/// Reads the folder's tokenizer: `tokenizer.json` when Kiln can run it,
/// else `tokenizer.model` (LLaMA 2 and Mistral folders carry both, and
/// their tokenizer.json is the SentencePiece model rewritten). nullopt with
/// an empty `error` when there is neither, nullopt with `error` set (saying
/// why for each) when neither can be used.
std::optional<TokenizerTables> readTokenizer(llvm::StringRef dir,
                                             std::string &error);

} // namespace kiln::gpt

#endif // KILN_FRONTEND_GPT_TOKENIZER_H
