// The runtime's tokenizer on hand-built tables: BPE merges, added tokens,
// UTF-8 handling (Hugging Face parity is tested end to end on trained
// tokenizers in test/e2e/test_tokenizer.py).
#include "tokenizer.h"

#include <gtest/gtest.h>

namespace {

using kiln::artifact::Tokenizer;
using Runtime = kiln::runtime::Tokenizer;

const std::string kReplacement = "\xEF\xBF\xBD";

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

} // namespace
