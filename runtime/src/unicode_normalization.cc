// NFC from the tables gen_unicode_normalization.py writes (Python's
// unicodedata), following UAX #15's reference algorithm: no library (ICU,
// libunistring) comes into the runtime for one normal form.
#include "unicode_normalization.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace kiln::runtime {

namespace {

struct CombiningClassRange {
  uint32_t first, last;
  uint8_t combiningClass;
};
struct Decomposition {
  uint32_t composite, first, second;  // second 0: a singleton
};
struct Composition {
  uint32_t first, second, composite;
};

#include "unicode_normalization.inc"

// Hangul syllables, by arithmetic (Unicode 15, section 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7, kLCount = 19, kVCount = 21, kTCount = 28,
                   kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combiningClass(uint32_t cp) {
  if (cp < 0x300)
    return 0;
  auto end = std::end(kCombiningClasses);
  auto it = std::upper_bound(
      std::begin(kCombiningClasses), end, cp,
      [](uint32_t c, const CombiningClassRange &r) { return c < r.first; });
  if (it == std::begin(kCombiningClasses) || cp > (it - 1)->last)
    return 0;
  return (it - 1)->combiningClass;
}

void decompose(uint32_t cp, std::vector<uint32_t> &out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount)
      out.push_back(kTBase + s % kTCount);
    return;
  }
  auto end = std::end(kDecompositions);
  auto it = std::lower_bound(
      std::begin(kDecompositions), end, cp,
      [](const Decomposition &d, uint32_t c) { return d.composite < c; });
  if (it == end || it->composite != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second)
    decompose(it->second, out);
}

/// The primary composite of `first` and `second`, or 0.
uint32_t compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount &&
      (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  auto end = std::end(kCompositions);
  auto it = std::lower_bound(
      std::begin(kCompositions), end, std::make_pair(first, second),
      [](const Composition &c, const std::pair<uint32_t, uint32_t> &key) {
        return std::make_pair(c.first, c.second) < key;
      });
  return it != end && it->first == first && it->second == second
             ? it->composite
             : 0;
}

/// The code point of the valid UTF-8 sequence at `text[i]` and its length,
/// or a length of 0 when the bytes there are not one.
std::pair<uint32_t, size_t> decodeAt(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return uint8_t(text[k]); };
  uint8_t b0 = byte(i);
  size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3
                         : (b0 >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > text.size())
    return {0, 0};
  uint32_t cp = n == 1 ? b0 : b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80)
      return {0, 0};
    cp = cp << 6 | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return {0, 0};
  return {cp, n};
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | cp >> 6);
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | cp >> 12);
    out += char(0x80 | (cp >> 6 & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | cp >> 18);
    out += char(0x80 | (cp >> 12 & 0x3F));
    out += char(0x80 | (cp >> 6 & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

/// NFC of a run of code points, appended to `out` as UTF-8.
void normalizeRun(const std::vector<uint32_t> &run, std::string &out) {
  std::vector<uint32_t> d;
  d.reserve(run.size() + 8);
  for (uint32_t cp : run)
    decompose(cp, d);
  // Canonical ordering: each run of non-starters sorted by class, stably.
  for (size_t i = 0; i < d.size();) {
    if (combiningClass(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combiningClass(d[j]) != 0)
      ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](uint32_t a, uint32_t b) {
                       return combiningClass(a) < combiningClass(b);
                     });
    i = j;
  }
  // Canonical composition (UAX #15, the reference algorithm): a character
  // joins the last starter unless a character between them blocks it.
  std::vector<uint32_t> c;
  c.reserve(d.size());
  size_t starter = 0;
  int lastClass = 256;  // nothing to compose with yet
  for (size_t i = 0; i < d.size(); ++i) {
    uint32_t cp = d[i];
    int cls = combiningClass(cp);
    if (!c.empty() && (lastClass < cls || lastClass == 0))
      if (uint32_t composite = compose(c[starter], cp)) {
        c[starter] = composite;
        continue;
      }
    if (cls == 0) {
      starter = c.size();
    }
    lastClass = cls;
    if (c.empty() && cls != 0)
      lastClass = 256;
    c.push_back(cp);
  }
  for (uint32_t cp : c)
    appendUtf8(out, cp);
}

} // namespace

std::string toNfc(std::string_view text) {
  if (std::all_of(text.begin(), text.end(),
                  [](char ch) { return uint8_t(ch) < 0x80; }))
    return std::string(text);
  std::string out;
  out.reserve(text.size());
  std::vector<uint32_t> run;
  for (size_t i = 0; i < text.size();) {
    auto [cp, n] = decodeAt(text, i);
    if (n == 0) {
      normalizeRun(run, out);
      run.clear();
      out += text[i++];
      continue;
    }
    run.push_back(cp);
    i += n;
  }
  normalizeRun(run, out);
  return out;
}

} // namespace kiln::runtime
