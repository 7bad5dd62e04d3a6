// SentencePiece BPE tokenization (tokenizer.h), as the `sentencepiece`
// library's BPE model and processor do it.
#include "tokenizer.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <queue>

namespace kiln::runtime {

namespace {

// SentencePiece's piece types.
constexpr uint8_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4,
                  kUnused = 5, kByte = 6;
/// U+2581, which stands for a space once whitespace is escaped.
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";

/// The byte a piece "<0xAB>" stands for, or -1.
int byteOf(std::string_view piece) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>' ||
      hex(piece[3]) < 0 || hex(piece[4]) < 0)
    return -1;
  return hex(piece[3]) * 16 + hex(piece[4]);
}

} // namespace

absl::Status Tokenizer::createSentencePiece(const artifact::Tokenizer &spec) {
  auto malformed = [](const std::string &why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the artifact's SentencePiece tokenizer is malformed (", why,
        "); recompile the checkpoint"));
  };
  size_t size = spec.tokens_size();
  if (size == 0 || size_t(spec.scores_size()) != size ||
      size_t(spec.piece_types_size()) != size)
    return malformed("pieces, scores and types differ in number");
  sentencePiece_ = true;
  tokens_.assign(spec.tokens().begin(), spec.tokens().end());
  scores_.assign(spec.scores().begin(), spec.scores().end());
  std::fill(std::begin(byteIds_), std::end(byteIds_), -1);
  for (size_t i = 0; i < size; ++i) {
    uint32_t type = spec.piece_types(int(i));
    if (type < kNormal || type > kByte)
      return malformed(absl::StrCat("piece ", i, " has type ", type));
    types_.push_back(uint8_t(type));
    const std::string &piece = tokens_[i];
    if (type == kNormal || type == kUserDefined || type == kUnused)
      pieces_.emplace(piece, int64_t(i));
    if (type == kUserDefined && !piece.empty())
      userDefined_.push_back({piece, int64_t(i)});
    if (type == kByte) {
      int byte = byteOf(piece);
      if (byte < 0)
        return malformed(absl::StrCat("byte piece '", piece, "'"));
      byteIds_[byte] = int64_t(i);
    }
  }
  std::stable_sort(userDefined_.begin(), userDefined_.end(),
                   [](const auto &x, const auto &y) {
                     return x.first.size() > y.first.size();
                   });
  byteFallback_ = spec.byte_fallback();
  if (byteFallback_)
    for (int64_t id : byteIds_)
      if (id < 0)
        return malformed("byte fallback without every byte piece");
  if (spec.unk_id() >= size || types_[spec.unk_id()] != kUnknown)
    return malformed("the unknown id is not an unknown piece");
  unkId_ = spec.unk_id();
  unkSurface_ = spec.unk_surface();
  for (uint32_t id : spec.prefix_ids()) {
    if (id >= size)
      return malformed("an unknown prefix token");
    prefix_.push_back(id);
  }
  addDummyPrefix_ = spec.add_dummy_prefix();
  removeExtraWhitespaces_ = spec.remove_extra_whitespaces();
  escapeWhitespaces_ = spec.escape_whitespaces();
  return absl::OkStatus();
}

void Tokenizer::encodeSentencePiece(std::string_view text,
                                    std::vector<int64_t> &out) const {
  // The identity normalizer: nothing but whitespace (the space character
  // alone) changes.
  if (removeExtraWhitespaces_) {
    while (!text.empty() && text.front() == ' ')
      text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ')
      text.remove_suffix(1);
  }
  if (text.empty())
    return;
  std::string_view space = escapeWhitespaces_ ? kSpaceSymbol : " ";
  std::string normalized;
  if (addDummyPrefix_)
    normalized.append(space);
  bool lastSpace = false;
  for (char c : text) {
    if (c != ' ') {
      normalized += c;
      lastSpace = false;
      continue;
    }
    if (!(removeExtraWhitespaces_ && lastSpace))
      normalized.append(space);
    lastSpace = true;
  }

  // Symbols: user-defined pieces whole (they never merge), else one
  // character each.
  struct Symbol {
    size_t begin, size;
    int prev, next;
    bool freeze;
  };
  std::vector<Symbol> symbols;
  std::string_view s = normalized;
  for (size_t i = 0; i < s.size();) {
    size_t length = 0;
    bool freeze = false;
    for (const auto &piece : userDefined_)
      if (s.substr(i, piece.first.size()) == piece.first) {
        length = piece.first.size();
        freeze = true;
        break;
      }
    if (!length) {
      int n = utf8SequenceAt(s, i);
      length = n > 0 ? size_t(n) : 1;
    }
    int index = int(symbols.size());
    symbols.push_back({i, length, index - 1, -1, freeze});
    if (index > 0)
      symbols[size_t(index) - 1].next = index;
    i += length;
  }

  // Merges: the adjacent pair whose concatenation is the best-scoring piece
  // first, the leftmost among equal scores.
  struct Pair {
    int left, right;
    float score;
    size_t size;
  };
  auto worse = [](const Pair &a, const Pair &b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  // Unused pieces a merge made are split back into what made them.
  std::unordered_map<std::string_view, std::pair<std::string_view,
                                                 std::string_view>>
      revMerge;
  auto piece = [&](int i) {
    return s.substr(symbols[size_t(i)].begin, symbols[size_t(i)].size);
  };
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[size_t(left)].freeze ||
        symbols[size_t(right)].freeze)
      return;
    std::string_view merged =
        s.substr(symbols[size_t(left)].begin,
                 symbols[size_t(left)].size + symbols[size_t(right)].size);
    auto it = pieces_.find(std::string(merged));
    if (it == pieces_.end())
      return;
    agenda.push({left, right, scores_[size_t(it->second)], merged.size()});
    if (types_[size_t(it->second)] == kUnused)
      revMerge[merged] = {piece(left), piece(right)};
  };
  for (size_t i = 1; i < symbols.size(); ++i)
    consider(int(i) - 1, int(i));
  while (!agenda.empty()) {
    Pair top = agenda.top();
    agenda.pop();
    Symbol &left = symbols[size_t(top.left)];
    Symbol &right = symbols[size_t(top.right)];
    // Stale: a side merged into something else since.
    if (left.size == 0 || right.size == 0 ||
        left.size + right.size != top.size)
      continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0)
      symbols[size_t(right.next)].prev = top.left;
    consider(left.prev, top.left);
    consider(top.left, left.next);
  }

  // Pieces to ids: an unused piece split back, an unknown one as its bytes
  // (byte fallback) or one unknown id per run of them.
  bool lastUnknown = false;
  std::function<void(std::string_view)> emit = [&](std::string_view w) {
    auto it = pieces_.find(std::string(w));
    int64_t id = it == pieces_.end() ? unkId_ : it->second;
    if (id != unkId_ && types_[size_t(id)] == kUnused) {
      if (auto split = revMerge.find(w); split != revMerge.end()) {
        emit(split->second.first);
        emit(split->second.second);
        return;
      }
    }
    if (id == unkId_ && byteFallback_) {
      for (char c : w)
        out.push_back(byteIds_[uint8_t(c)]);
      lastUnknown = false;
      return;
    }
    if (id == unkId_ && lastUnknown)
      return;
    lastUnknown = id == unkId_;
    out.push_back(id);
  };
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[size_t(i)].next)
    emit(piece(i));
}

std::string Tokenizer::decodeSentencePiece(const int64_t *ids, size_t count,
                                           bool continuation) const {
  std::string out;
  // The text's first piece loses its leading space: the one the dummy
  // prefix put there, or one the normalizer would have removed.
  bool first = !continuation && (addDummyPrefix_ || removeExtraWhitespaces_);
  for (size_t k = 0; k < count; ++k) {
    if (ids[k] < 0 || size_t(ids[k]) >= tokens_.size())
      continue;
    size_t id = size_t(ids[k]);
    switch (types_[id]) {
    case kControl:
      continue;
    case kByte:
      out += char(byteOf(tokens_[id]));
      first = false;
      continue;
    case kUnknown:
      out += unkSurface_;
      first = false;
      continue;
    default:
      break;
    }
    std::string_view piece = tokens_[id];
    if (escapeWhitespaces_) {
      if (first && piece.substr(0, kSpaceSymbol.size()) == kSpaceSymbol)
        piece.remove_prefix(kSpaceSymbol.size());
      for (size_t i = 0; i < piece.size();) {
        if (piece.substr(i, kSpaceSymbol.size()) == kSpaceSymbol) {
          out += ' ';
          i += kSpaceSymbol.size();
        } else {
          out += piece[i++];
        }
      }
    } else {
      if (first && !piece.empty() && piece.front() == ' ')
        piece.remove_prefix(1);
      out.append(piece);
    }
    first = false;
  }
  return out;
}

} // namespace kiln::runtime
