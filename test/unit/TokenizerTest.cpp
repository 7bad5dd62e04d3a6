// The runtime's tokenizer on hand-built tables: BPE merges, added tokens,
// UTF-8 handling, SentencePiece merges by score, byte fallback and
// decoding (parity with Hugging Face `tokenizers` and `sentencepiece` is
// tested end to end on trained tokenizers in test/e2e/test_tokenizer.py
// and test_sentencepiece.py).
#include "tokenizer.h"

#include <gtest/gtest.h>

namespace {

using kiln::artifact::Tokenizer;
using Runtime = kiln::runtime::Tokenizer;

const std::string kReplacement = "\xEF\xBF\xBD";
const std::string kSpace = "\xE2\x96\x81";  // U+2581

TEST(TokenizerUtf8, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(Runtime::lossyUtf8("plain"), "plain");
  EXPECT_EQ(Runtime::lossyUtf8("a\xC3"), "a" + kReplacement);
  EXPECT_EQ(Runtime::lossyUtf8("\xE2\x82"), kReplacement);
  // A surrogate's encoding: each byte is its own invalid subpart.
  EXPECT_EQ(Runtime::lossyUtf8("\xED\xA0\x80"),
            kReplacement + kReplacement + kReplacement);
  EXPECT_EQ(Runtime::lossyUtf8("\xF0\x9F\x98" "A"), kReplacement + "A");
  EXPECT_EQ(Runtime::lossyUtf8("\xC0\xAF"), kReplacement + kReplacement);
  EXPECT_EQ(Runtime::lossyUtf8("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(TokenizerUtf8, CompletePrefixStopsBeforeAnOpenSequence) {
  EXPECT_EQ(Runtime::completePrefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(Runtime::completePrefix("ab\xE2\x82\xAC"), 5u);
  // An invalid byte can never be completed: it is part of the prefix.
  EXPECT_EQ(Runtime::completePrefix("ab\xFF"), 3u);
  EXPECT_EQ(Runtime::completePrefix(""), 0u);
}

Tokenizer tables() {
  Tokenizer t;
  t.set_pattern(Tokenizer::GPT2);
  for (const char *token : {"a", "b", "ab", "aba", "<s>"})
    t.add_tokens(token);
  for (uint32_t m : {0u, 1u, 2u, /* ab + a */ 2u, 0u, 3u})
    t.add_merges(m);
  t.add_added_ids(4);
  t.add_added_special(true);
  return t;
}

TEST(Tokenizer, MergesByRankAndSplitsAddedTokens) {
  auto tokenizer = Runtime::create(tables());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto ids = (*tokenizer)->encode("abab<s>aba");
  ASSERT_TRUE(ids.ok());
  // "abab": ab ab (the second merge needs "ab"+"a"); then <s>; then "aba".
  EXPECT_EQ(*ids, (std::vector<int64_t>{2, 2, 4, 3}));
  // A byte with no token (the space, byte-level 'Ġ') is left out.
  EXPECT_EQ(*(*tokenizer)->encode("a b"), (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE((*tokenizer)->encode("bad \xFF").ok());
  int64_t back[] = {3, 4, 2};
  EXPECT_EQ((*tokenizer)->decode(back, 3), "aba<s>ab");
  int64_t outside[] = {-1, 99, 0};
  EXPECT_EQ((*tokenizer)->decode(outside, 3), "a");
}

TEST(Tokenizer, AnAddedTokenOutsideTheByteAlphabetDecodesAsItself) {
  Tokenizer t = tables();
  // U+00E9 stands for the byte 0xE9 in the byte-level alphabet; U+2581 is
  // not in it, so the whole token is its own UTF-8 (as the ByteLevel
  // decoder does).
  t.add_tokens("\xC3\xA9\xE2\x96\x81");
  auto tokenizer = Runtime::create(t);
  ASSERT_TRUE(tokenizer.ok());
  int64_t ids[] = {5};
  EXPECT_EQ((*tokenizer)->decode(ids, 1), "\xC3\xA9\xE2\x96\x81");
}

TEST(Tokenizer, RejectsMalformedTables) {
  Tokenizer t = tables();
  t.add_merges(7);
  EXPECT_FALSE(Runtime::create(t).ok()) << "merges not in triples";
  t = tables();
  t.add_merges(0);
  t.add_merges(1);
  t.add_merges(9);
  EXPECT_FALSE(Runtime::create(t).ok()) << "a merge into an unknown token";
  t = tables();
  t.set_pattern(Tokenizer::PATTERN_INVALID);
  EXPECT_FALSE(Runtime::create(t).ok());
  t = tables();
  t.add_prefix_ids(12);
  EXPECT_FALSE(Runtime::create(t).ok());
}

/// A SentencePiece BPE model: <unk>, <s>, "▁", "a", "b", "▁a", "ab", "▁ab"
/// (scores favour "ab" over "▁a"), a user-defined "<t>", and the 256 byte
/// pieces.
Tokenizer sentencePiece() {
  Tokenizer t;
  t.set_kind(Tokenizer::SENTENCEPIECE_BPE);
  auto add = [&](const std::string &piece, float score, uint32_t type) {
    t.add_tokens(piece);
    t.add_scores(score);
    t.add_piece_types(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  for (auto [piece, score] : std::vector<std::pair<std::string, float>>{
           {kSpace, -1}, {"a", -2}, {"b", -3}, {kSpace + "a", -5},
           {"ab", -4}, {kSpace + "ab", -6}})
    add(piece, score, 1);
  add("<t>", 0, 4);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    add(name, 0, 6);
  }
  t.set_add_dummy_prefix(true);
  t.set_escape_whitespaces(true);
  t.set_byte_fallback(true);
  t.set_unk_id(0);
  t.set_unk_surface(" ?? ");
  t.add_prefix_ids(1);
  return t;
}

TEST(SentencePiece, MergesTheBestScoringPairFirst) {
  auto tokenizer = Runtime::create(sentencePiece());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // "▁ab": "ab" (-4) merges before "▁a" (-5), then "▁" + "ab" is "▁ab".
  EXPECT_EQ(*(*tokenizer)->encode("ab"), (std::vector<int64_t>{1, 7}));
  // "ba": no merge; "▁b" is no piece.
  EXPECT_EQ(*(*tokenizer)->encode("ba"), (std::vector<int64_t>{1, 2, 4, 3}));
  // A user-defined piece stays whole; "c" is not a piece: its byte.
  int64_t c = 9 + 'c';
  EXPECT_EQ(*(*tokenizer)->encode("a<t>c"),
            (std::vector<int64_t>{1, 5, 8, c}));
  EXPECT_EQ(*(*tokenizer)->encode(""), (std::vector<int64_t>{1}));
}

TEST(SentencePiece, DecodesWithoutTheDummySpaceAndReplacesBadBytes) {
  auto tokenizer = Runtime::create(sentencePiece());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Runtime &t = **tokenizer;
  std::vector<int64_t> ids = {1, 7, 2, 5};  // <s> ▁ab ▁ ▁a
  EXPECT_EQ(t.decode(ids.data(), ids.size()), "ab  a");
  EXPECT_EQ(t.decode(ids.data(), ids.size(), /*continuation=*/true),
            " ab  a");
  // Bytes: C3 A9 is é; E2 82 then 'A' is two bad bytes, each replaced.
  std::vector<int64_t> bytes = {9 + 0xC3, 9 + 0xA9, 9 + 0xE2, 9 + 0x82,
                                9 + 'A', 0};
  EXPECT_EQ(t.decode(bytes.data(), bytes.size()),
            "\xC3\xA9" + kReplacement + kReplacement + "A" + " ?? ");
}

TEST(SentencePiece, RejectsMalformedTables) {
  Tokenizer t = sentencePiece();
  t.mutable_scores()->RemoveLast();
  EXPECT_FALSE(Runtime::create(t).ok()) << "a score missing";
  t = sentencePiece();
  t.set_piece_types(3, 9);
  EXPECT_FALSE(Runtime::create(t).ok()) << "an unknown piece type";
  t = sentencePiece();
  t.set_unk_id(1);
  EXPECT_FALSE(Runtime::create(t).ok()) << "unk is a control piece";
  t = sentencePiece();
  t.set_piece_types(9 + 'x', 1);
  EXPECT_FALSE(Runtime::create(t).ok()) << "a byte piece missing";
  t = sentencePiece();
  t.set_tokens(9 + 'x', "<0xZZ>");
  EXPECT_FALSE(Runtime::create(t).ok()) << "a malformed byte piece";
}

} // namespace
