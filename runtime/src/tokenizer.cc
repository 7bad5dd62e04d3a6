// Byte-level BPE tokenization.
#include "tokenizer.h"
#include "unicode_normalization.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <functional>
#include <queue>

namespace kiln::runtime {

namespace {

struct CodepointRange {
  uint32_t first, last;
};

#include "unicode_tables.inc"

template <size_t N>
bool inRanges(const CodepointRange (&table)[N], uint32_t cp) {
  const CodepointRange *end = table + N;
  const CodepointRange *it = std::upper_bound(
      table, end, cp,
      [](uint32_t c, const CodepointRange &r) { return c < r.first; });
  return it != table && cp <= (it - 1)->last;
}

bool isLetter(uint32_t cp) {
  return cp < 0x80 ? ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
                   : inRanges(kLetterRanges, cp);
}
bool isNumber(uint32_t cp) {
  return cp < 0x80 ? (cp >= '0' && cp <= '9') : inRanges(kNumberRanges, cp);
}
/// The Unicode White_Space property (the regexes' \s).
bool isSpace(uint32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 ||
         cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}
bool isOther(uint32_t cp) {
  return !isSpace(cp) && !isLetter(cp) && !isNumber(cp);
}
bool isNewline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

/// Length of the valid UTF-8 sequence at `s[i]` (1 to 4), or -k: the
/// first k bytes are a maximal invalid subpart (k >= 1), or 0: the bytes
/// end inside a sequence that could still be valid.
int sequenceAt(std::string_view s, size_t i) {
  uint8_t b0 = uint8_t(s[i]);
  if (b0 < 0x80)
    return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0)
      lo = 0xA0;
    if (b0 == 0xED)
      hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0)
      lo = 0x90;
    if (b0 == 0xF4)
      hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (i + k >= s.size())
      return 0;
    uint8_t b = uint8_t(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
      return -k;
  }
  return need + 1;
}

uint32_t codepointAt(std::string_view s, size_t i, int length) {
  uint8_t b0 = uint8_t(s[i]);
  if (length == 1)
    return b0;
  uint32_t cp = b0 & (0x7F >> length);
  for (int k = 1; k < length; ++k)
    cp = cp << 6 | (uint8_t(s[i + k]) & 0x3F);
  return cp;
}

/// Where the piece starting at `i` ends, for one of the three patterns.
size_t matchPiece(const std::vector<uint32_t> &cp, size_t i,
                  artifact::Tokenizer::Pattern pattern) {
  size_t n = cp.size();
  bool llama = pattern != artifact::Tokenizer::GPT2;
  auto lower = [&](size_t j) {
    return j < n && cp[j] < 0x80 ? cp[j] | (llama ? 0x20 : 0) : 0;
  };
  // 's 't 're 've 'm 'll 'd (case-insensitive for LLaMA 3 and Qwen2).
  if (cp[i] == '\'' && i + 1 < n) {
    uint32_t a = lower(i + 1), b = lower(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
      return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
        (a == 'l' && b == 'l'))
      return i + 3;
  }
  auto letters = [&](size_t j) {
    while (j < n && isLetter(cp[j]))
      ++j;
    return j;
  };
  if (llama) {
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (isLetter(cp[i]))
      return letters(i);
    if (i + 1 < n && !isNewline(cp[i]) && !isLetter(cp[i]) &&
        !isNumber(cp[i]) && isLetter(cp[i + 1]))
      return letters(i + 1);
    // \p{N}{1,3} or \p{N}
    if (isNumber(cp[i])) {
      size_t j = i + 1, most = pattern == artifact::Tokenizer::LLAMA3 ? 3 : 1;
      while (j < n && j - i < most && isNumber(cp[j]))
        ++j;
      return j;
    }
  } else {
    // ' ?\p{L}+', ' ?\p{N}+'
    size_t j = cp[i] == ' ' && i + 1 < n ? i + 1 : i;
    if (isLetter(cp[j]))
      return letters(j);
    if (isNumber(cp[j])) {
      while (j < n && isNumber(cp[j]))
        ++j;
      return j;
    }
  }
  // ' ?[^\s\p{L}\p{N}]+' (then [\r\n]* for LLaMA 3 and Qwen2)
  {
    size_t j = cp[i] == ' ' && i + 1 < n ? i + 1 : i;
    if (isOther(cp[j])) {
      while (j < n && isOther(cp[j]))
        ++j;
      if (llama)
        while (j < n && isNewline(cp[j]))
          ++j;
      return j;
    }
  }
  // Whitespace: cp[i] is whitespace here.
  size_t end = i;
  while (end < n && isSpace(cp[end]))
    ++end;
  if (llama) {
    // \s*[\r\n]+: up to the run's last newline.
    size_t last = end;
    for (size_t j = i; j < end; ++j)
      if (isNewline(cp[j]))
        last = j;
    if (last != end)
      return last + 1;
  }
  // \s+(?!\S), else \s+.
  if (end < n && end - i > 1)
    return end - 1;
  return end;
}

} // namespace

int Tokenizer::utf8SequenceAt(std::string_view s, size_t i) {
  return sequenceAt(s, i);
}

absl::StatusOr<std::unique_ptr<Tokenizer>>
Tokenizer::create(const artifact::Tokenizer &spec) {
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  if (spec.kind() == artifact::Tokenizer::SENTENCEPIECE_BPE) {
    if (absl::Status st = t->createSentencePiece(spec); !st.ok())
      return st;
    return t;
  }
  if (spec.kind() != artifact::Tokenizer::BYTE_LEVEL_BPE)
    return absl::InvalidArgumentError(
        "the artifact's tokenizer is of a kind this runtime does not know; "
        "update the Kiln runtime");
  if (spec.pattern() != artifact::Tokenizer::GPT2 &&
      spec.pattern() != artifact::Tokenizer::LLAMA3 &&
      spec.pattern() != artifact::Tokenizer::QWEN2)
    return absl::InvalidArgumentError(
        "the artifact's tokenizer has an unknown pre-tokenizer pattern; "
        "recompile it with this release of kiln");
  t->pattern_ = spec.pattern();
  size_t size = spec.tokens_size();
  t->tokens_.assign(spec.tokens().begin(), spec.tokens().end());
  for (size_t i = 0; i < size; ++i)
    t->vocab_.emplace(t->tokens_[i], int64_t(i));
  if (spec.merges_size() % 3 != 0 ||
      spec.added_ids_size() != spec.added_special_size())
    return absl::InvalidArgumentError("the artifact's tokenizer is malformed");
  for (int i = 0; i < spec.merges_size(); i += 3) {
    uint32_t a = spec.merges(i), b = spec.merges(i + 1),
             r = spec.merges(i + 2);
    if (a >= size || b >= size || r >= size)
      return absl::InvalidArgumentError(
          "the artifact's tokenizer has a merge of an unknown token");
    t->merges_.emplace(uint64_t(a) << 32 | b,
                       std::make_pair(uint32_t(i / 3), r));
  }
  for (int i = 0; i < spec.added_ids_size(); ++i) {
    if (spec.added_ids(i) >= size)
      return absl::InvalidArgumentError(
          "the artifact's tokenizer has an unknown added token");
    t->added_.push_back({t->tokens_[spec.added_ids(i)], spec.added_ids(i)});
  }
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const auto &x, const auto &y) {
                     return x.first.size() > y.first.size();
                   });
  for (uint32_t id : spec.prefix_ids()) {
    if (id >= size)
      return absl::InvalidArgumentError(
          "the artifact's tokenizer has an unknown prefix token");
    t->prefix_.push_back(id);
  }
  t->addPrefixSpace_ = spec.add_prefix_space();
  t->ignoreMerges_ = spec.ignore_merges();
  if (spec.normalizer() != artifact::Tokenizer::NORMALIZER_NONE &&
      spec.normalizer() != artifact::Tokenizer::NFC)
    return absl::InvalidArgumentError(
        "the artifact's tokenizer has a normalizer this runtime does not "
        "know; update the Kiln runtime");
  t->nfc_ = spec.normalizer() == artifact::Tokenizer::NFC;
  // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
  // others for 256, 257, ... in order.
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    t->byteToCodepoint_[b] = printable ? b : next++;
    t->codepointToByte_[t->byteToCodepoint_[b]] = uint8_t(b);
  }
  return t;
}

void Tokenizer::bpe(const std::vector<uint32_t> &word,
                    std::vector<int64_t> &out) const {
  std::string whole;
  for (uint32_t cp : word)
    appendUtf8(whole, cp);
  if (ignoreMerges_)
    if (auto it = vocab_.find(whole); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  std::vector<uint32_t> symbols;
  for (uint32_t cp : word) {
    std::string one;
    appendUtf8(one, cp);
    if (auto it = vocab_.find(one); it != vocab_.end())
      symbols.push_back(uint32_t(it->second));
  }
  // Merge the pair of lowest rank, leftmost first, until none is left: a
  // heap of candidate pairs over a linked list of symbols, as `tokenizers`
  // does (a pair whose sides changed since it was pushed is skipped).
  size_t n = symbols.size();
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int(i) - 1;
    next[i] = i + 1 < n ? int(i) + 1 : -1;
  }
  struct Candidate {
    uint32_t rank;
    int left;
    uint32_t leftId, rightId, result;
    bool operator>(const Candidate &o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>,
                      std::greater<Candidate>>
      heap;
  auto consider = [&](int left) {
    if (left < 0 || next[size_t(left)] < 0)
      return;
    uint32_t a = symbols[size_t(left)], b = symbols[size_t(next[size_t(left)])];
    auto it = merges_.find(uint64_t(a) << 32 | b);
    if (it != merges_.end())
      heap.push({it->second.first, left, a, b, it->second.second});
  };
  for (size_t i = 0; i + 1 < n; ++i)
    consider(int(i));
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    size_t left = size_t(c.left);
    int right = next[left];
    if (!alive[left] || right < 0 || symbols[left] != c.leftId ||
        symbols[size_t(right)] != c.rightId)
      continue;
    symbols[left] = c.result;
    alive[size_t(right)] = false;
    next[left] = next[size_t(right)];
    if (next[left] >= 0)
      prev[size_t(next[left])] = int(left);
    consider(prev[left]);
    consider(int(left));
  }
  std::vector<uint32_t> merged;
  for (int i = n ? 0 : -1; i >= 0; i = next[size_t(i)])
    merged.push_back(symbols[size_t(i)]);
  symbols.swap(merged);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void Tokenizer::encodeSegment(std::string_view text,
                              std::vector<int64_t> &out) const {
  std::string normalized;
  if (nfc_) {
    normalized = toNfc(text);
    text = normalized;
  }
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < text.size();) {
    int length = sequenceAt(text, i);
    cps.push_back(codepointAt(text, i, length));
    i += size_t(length);
  }
  if (addPrefixSpace_ && !cps.empty() && cps[0] != ' ')
    cps.insert(cps.begin(), ' ');
  std::vector<uint32_t> word;
  for (size_t i = 0; i < cps.size();) {
    size_t end = matchPiece(cps, i, pattern_);
    word.clear();
    std::string bytes;
    for (size_t j = i; j < end; ++j)
      appendUtf8(bytes, cps[j]);
    for (char c : bytes)
      word.push_back(byteToCodepoint_[uint8_t(c)]);
    bpe(word, out);
    i = end;
  }
}

absl::StatusOr<std::vector<int64_t>>
Tokenizer::encode(std::string_view text) const {
  for (size_t i = 0; i < text.size();) {
    int length = sequenceAt(text, i);
    if (length <= 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "the text is not valid UTF-8 (byte ", i, ")"));
    i += size_t(length);
  }
  std::vector<int64_t> out(prefix_.begin(), prefix_.end());
  if (sentencePiece_) {
    encodeSentencePiece(text, out);
    return out;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int64_t> *hit = nullptr;
    for (const auto &added : added_)
      if (!added.first.empty() && text.substr(i, added.first.size()) == added.first) {
        hit = &added;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    encodeSegment(text.substr(start, i - start), out);
    out.push_back(hit->second);
    i += hit->first.size();
    start = i;
  }
  encodeSegment(text.substr(start), out);
  return out;
}

std::string Tokenizer::decodeBytes(const int64_t *ids, size_t count,
                                   bool continuation) const {
  if (sentencePiece_)
    return decodeSentencePiece(ids, count, continuation);
  std::string bytes;
  for (size_t k = 0; k < count; ++k) {
    if (ids[k] < 0 || size_t(ids[k]) >= tokens_.size())
      continue;
    // As the ByteLevel decoder: the token's characters mapped to their
    // bytes, or, when one of them is not in the byte-level alphabet (an
    // added token), the token's own UTF-8.
    std::string_view token = tokens_[size_t(ids[k])];
    std::string mapped;
    bool allMapped = true;
    for (size_t i = 0; i < token.size() && allMapped;) {
      int length = sequenceAt(token, i);
      auto it = length > 0
                    ? codepointToByte_.find(codepointAt(token, i, length))
                    : codepointToByte_.end();
      if (it == codepointToByte_.end()) {
        allMapped = false;
        break;
      }
      mapped += char(it->second);
      i += size_t(length);
    }
    bytes.append(allMapped ? mapped : std::string(token));
  }
  return bytes;
}

namespace {

/// `bytes` with U+FFFD for each maximal invalid subpart, or (`perByte`) for
/// each byte that is not part of a valid sequence.
std::string replaceInvalid(std::string_view bytes, bool perByte) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    int length = sequenceAt(bytes, i);
    if (length > 0) {
      out.append(bytes.substr(i, size_t(length)));
      i += size_t(length);
      continue;
    }
    out += "\xEF\xBF\xBD";
    i += perByte      ? 1
         : length < 0 ? size_t(-length)
                      : bytes.size() - i;
  }
  return out;
}

} // namespace

std::string Tokenizer::lossyUtf8(std::string_view bytes) {
  return replaceInvalid(bytes, /*perByte=*/false);
}

std::string Tokenizer::replaceInvalidBytes(std::string_view bytes) {
  return replaceInvalid(bytes, /*perByte=*/true);
}

size_t Tokenizer::completePrefix(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    int length = sequenceAt(bytes, i);
    if (length == 0)
      return i;
    i += length > 0 ? size_t(length) : size_t(-length);
  }
  return i;
}

} // namespace kiln::runtime
