// NFC (runtime/src/unicode_normalization.cc) on the cases UAX #15 names:
// composition, canonical ordering, blocking, singletons, exclusions,
// Hangul; the tokenizer suite (test_tokenizer.py) compares whole texts with
// Hugging Face tokenizers' NFC.
#include "unicode_normalization.h"

#include <gtest/gtest.h>

namespace kiln::runtime {
namespace {

TEST(UnicodeNormalization, Nfc) {
  struct Case {
    const char *in, *want, *why;
  } cases[] = {
      {"plain ASCII", "plain ASCII", "ASCII is unchanged"},
      {"e\xcc\x81", "\xc3\xa9", "e + acute composes"},
      {"\xc3\xa9", "\xc3\xa9", "precomposed stays"},
      {"\xe2\x84\xab", "\xc3\x85", "U+212B ANGSTROM SIGN is a singleton: A-ring"},
      {"\xe2\x84\xa6", "\xce\xa9", "U+2126 OHM SIGN: Omega"},
      {"a\xcc\x81\xcc\xa3", "\xe1\xba\xa1\xcc\x81",
       "acute (230) and dot below (220) reorder; a + dot below composes"},
      {"d\xcc\x87\xcc\xa3", "\xe1\xb8\x8d\xcc\x87",
       "d + dot above + dot below: d-dot-below + dot above"},
      {"e\xcc\x81\xcc\x81", "\xc3\xa9\xcc\x81",
       "a second acute is blocked by the first (same class)"},
      {"\xe0\xa4\x95\xe0\xa4\xbc", "\xe0\xa4\x95\xe0\xa4\xbc",
       "U+0958 is a composition exclusion: KA + NUKTA stays"},
      {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc",
       "and U+0958 itself decomposes"},
      {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81",
       "Hangul L + V + T: one syllable"},
      {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81", "LV syllable + T"},
      {"\xcc\x81" "a", "\xcc\x81" "a", "a leading mark composes with nothing"},
      {"\xcd\x84", "\xcc\x88\xcc\x81",
       "U+0344 decomposes to two marks and never recomposes"},
      {"A\xff\xcc\x8a", "A\xff\xcc\x8a",
       "an invalid byte breaks the text: the ring does not reach the A"},
      {"", "", "empty"},
  };
  for (const Case &c : cases)
    EXPECT_EQ(toNfc(c.in), c.want) << c.why;
}

TEST(UnicodeNormalization, NfcIsIdempotent) {
  const char *texts[] = {"Cafe\xcc\x81 na\xc3\xafve", "\xe1\x84\x92\xe1\x85\xa1",
                         "q\xcc\x87\xcc\xa3 x\xcc\x9b\xcc\x80"};
  for (const char *text : texts) {
    std::string once = toNfc(text);
    EXPECT_EQ(toNfc(once), once) << text;
  }
}

} // namespace
} // namespace kiln::runtime
