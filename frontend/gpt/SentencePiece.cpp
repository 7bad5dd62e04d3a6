//===- SentencePiece.cpp - a checkpoint's tokenizer.model -----------------===//
//
// Reads a SentencePiece model (the protobuf `ModelProto` that
// sentencepiece_model.proto describes) with a reader of the wire format of
// its own: the fields Kiln needs are few (the pieces with their scores and
// types, the trainer's model type, byte fallback and special ids, the
// normalizer's flags), and the compiler then needs no second copy of
// SentencePiece's schema.
//
//===----------------------------------------------------------------------===//
#include "frontend/gpt/Tokenizer.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cstring>
#include <functional>

using namespace llvm;

namespace kiln::gpt {

namespace {

/// Protobuf's wire format, read field by field. Every read is bounded;
/// `ok` turns false at the first malformed byte and stays false.
class WireReader {
public:
  explicit WireReader(StringRef bytes)
      : p(bytes.bytes_begin()), end(bytes.bytes_end()) {}

  bool done() const { return !ok || p == end; }
  bool ok = true;

  /// The next field's number and wire type.
  bool next(uint32_t &number, uint32_t &wireType) {
    uint64_t key = varint();
    number = uint32_t(key >> 3);
    wireType = uint32_t(key & 7);
    return ok && number != 0;
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end)
        return fail();
      uint8_t byte = *p++;
      value |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80))
        return value;
    }
    return fail();
  }
  StringRef bytes() {
    uint64_t size = varint();
    if (!ok || size > uint64_t(end - p))
      return fail(), StringRef();
    StringRef result(reinterpret_cast<const char *>(p), size_t(size));
    p += size;
    return result;
  }
  float fixed32() {
    if (end - p < 4)
      return float(fail());
    uint32_t bits = uint32_t(p[0]) | uint32_t(p[1]) << 8 |
                    uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    p += 4;
    float value;
    std::memcpy(&value, &bits, 4);
    return value;
  }
  void skip(uint32_t wireType) {
    switch (wireType) {
    case 0: varint(); return;
    case 1: advance(8); return;
    case 2: bytes(); return;
    case 5: advance(4); return;
    default: fail(); return;  // groups (3, 4) are not in this schema
    }
  }

private:
  uint64_t fail() {
    ok = false;
    return 0;
  }
  void advance(size_t n) {
    if (size_t(end - p) < n)
      fail();
    else
      p += n;
  }
  const uint8_t *p, *end;
};

/// Reads the message `bytes`, calling `field(number, wireType, reader)` for
/// each field; `field` returns false for the fields it does not take, which
/// are skipped.
bool readMessage(StringRef bytes,
                 const std::function<bool(uint32_t, uint32_t, WireReader &)>
                     &field) {
  WireReader r(bytes);
  uint32_t number, wireType;
  while (!r.done()) {
    if (!r.next(number, wireType))
      return false;
    if (!field(number, wireType, r))
      r.skip(wireType);
  }
  return r.ok;
}

// sentencepiece_model.proto's field numbers and enums.
enum : uint32_t {
  kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3,
  kPiecePiece = 1, kPieceScore = 2, kPieceType = 3,
  kTrainerModelType = 3, kTrainerTreatWhitespaceAsSuffix = 24,
  kTrainerByteFallback = 35, kTrainerUnkId = 40, kTrainerBosId = 41,
  kTrainerUnkSurface = 44,
  kNormalizerName = 1, kNormalizerCharsmap = 2, kNormalizerAddDummyPrefix = 3,
  kNormalizerRemoveExtraWhitespaces = 4, kNormalizerEscapeWhitespaces = 5,
  kNormalizerRuleTsv = 6,
};
constexpr uint32_t kModelTypeBpe = 2, kModelTypeUnigram = 1;
constexpr uint32_t kTypeNormal = 1, kTypeUnknown = 2, kTypeByte = 6;

/// `add_bos_token` of the folder's tokenizer_config.json (what Hugging
/// Face's LLaMA tokenizer puts in front of every text); true when absent.
bool addsBos(StringRef dir) {
  SmallString<256> path(dir);
  sys::path::append(path, "tokenizer_config.json");
  ErrorOr<std::unique_ptr<MemoryBuffer>> text = MemoryBuffer::getFile(path);
  if (!text)
    return true;
  Expected<json::Value> parsed = json::parse((*text)->getBuffer());
  if (!parsed) {
    consumeError(parsed.takeError());
    return true;
  }
  const json::Object *root = parsed->getAsObject();
  return !root || root->getBoolean("add_bos_token").value_or(true);
}

} // namespace

std::optional<TokenizerTables> readSentencePiece(StringRef dir,
                                                 std::string &error) {
  SmallString<256> path(dir);
  sys::path::append(path, "tokenizer.model");
  if (!sys::fs::exists(path))
    return std::nullopt;
  auto fail = [&](const Twine &message) {
    error = (path + ": " + message).str();
    return std::nullopt;
  };
  ErrorOr<std::unique_ptr<MemoryBuffer>> file = MemoryBuffer::getFile(path);
  if (!file)
    return fail("cannot read the file: " + file.getError().message());
  TokenizerTables t;
  t.sentencePiece = true;
  // The proto's defaults, for fields the file leaves out.
  uint32_t modelType = kModelTypeUnigram;
  int64_t unkId = 0, bosId = 1;
  bool suffix = false;
  t.addDummyPrefix = t.removeExtraWhitespaces = t.escapeWhitespaces = true;
  t.unkSurface = " \xE2\x81\x87 ";  // " ⁇ "
  std::string normalizer;
  bool rules = false;
  bool ok = readMessage((*file)->getBuffer(), [&](uint32_t number,
                                                  uint32_t wireType,
                                                  WireReader &r) {
    if (wireType != 2 || (number != kModelPieces &&
                          number != kModelTrainerSpec &&
                          number != kModelNormalizerSpec))
      return false;  // skipped by readMessage
    StringRef message = r.bytes();
    if (number == kModelPieces) {
      std::string piece;
      float score = 0;
      uint32_t type = kTypeNormal;
      if (!readMessage(message, [&](uint32_t n, uint32_t w, WireReader &f) {
            if (n == kPiecePiece && w == 2)
              piece = f.bytes().str();
            else if (n == kPieceScore && w == 5)
              score = f.fixed32();
            else if (n == kPieceType && w == 0)
              type = uint32_t(f.varint());
            else
              return false;
            return true;
          }))
        r.ok = false;
      t.tokens.push_back(std::move(piece));
      t.scores.push_back(score);
      t.pieceTypes.push_back(type);
    } else if (number == kModelTrainerSpec) {
      if (!readMessage(message, [&](uint32_t n, uint32_t w, WireReader &f) {
            if (w == 0 && n == kTrainerModelType)
              modelType = uint32_t(f.varint());
            else if (w == 0 && n == kTrainerTreatWhitespaceAsSuffix)
              suffix = f.varint() != 0;
            else if (w == 0 && n == kTrainerByteFallback)
              t.byteFallback = f.varint() != 0;
            else if (w == 0 && n == kTrainerUnkId)
              unkId = int32_t(f.varint());
            else if (w == 0 && n == kTrainerBosId)
              bosId = int32_t(f.varint());
            else if (w == 2 && n == kTrainerUnkSurface)
              t.unkSurface = f.bytes().str();
            else
              return false;
            return true;
          }))
        r.ok = false;
    } else if (number == kModelNormalizerSpec) {
      if (!readMessage(message, [&](uint32_t n, uint32_t w, WireReader &f) {
            if (w == 2 && n == kNormalizerName)
              normalizer = f.bytes().str();
            else if (w == 2 &&
                     (n == kNormalizerCharsmap || n == kNormalizerRuleTsv))
              rules |= !f.bytes().empty();
            else if (w == 0 && n == kNormalizerAddDummyPrefix)
              t.addDummyPrefix = f.varint() != 0;
            else if (w == 0 && n == kNormalizerRemoveExtraWhitespaces)
              t.removeExtraWhitespaces = f.varint() != 0;
            else if (w == 0 && n == kNormalizerEscapeWhitespaces)
              t.escapeWhitespaces = f.varint() != 0;
            else
              return false;
            return true;
          }))
        r.ok = false;
    }
    return true;
  });
  if (!ok)
    return fail("not a SentencePiece model (malformed protobuf)");
  if (t.tokens.empty())
    return fail("the model has no pieces");
  if (modelType != kModelTypeBpe)
    return fail(modelType == kModelTypeUnigram
                    ? "a unigram SentencePiece model is not supported yet; "
                      "Kiln runs BPE models (LLaMA 2, Mistral)"
                    : "only BPE SentencePiece models are supported");
  if (rules || (!normalizer.empty() && normalizer != "identity"))
    return fail("normalization \"" + normalizer +
                "\" is not supported yet; Kiln runs the identity rules "
                "(LLaMA 2, Mistral)");
  if (suffix)
    return fail("treat_whitespace_as_suffix is not supported");
  if (unkId < 0 || size_t(unkId) >= t.tokens.size() ||
      t.pieceTypes[size_t(unkId)] != kTypeUnknown)
    return fail("the unknown piece's id " + Twine(unkId) +
                " is not an unknown piece");
  t.unkId = uint32_t(unkId);
  // A byte piece is "<0xAB>"; with byte fallback each of the 256 is there
  // once (the runtime checks the same when it loads the artifact).
  bool seen[256] = {};
  unsigned bytes = 0;
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    if (t.pieceTypes[i] != kTypeByte)
      continue;
    unsigned value = 0;
    StringRef piece = t.tokens[i];
    if (!piece.consume_front("<0x") || !piece.consume_back(">") ||
        piece.size() != 2 ||
        piece.find_first_not_of("0123456789ABCDEF") != StringRef::npos ||
        piece.getAsInteger(16, value) || value > 255 ||
        seen[value])
      return fail("byte piece '" + t.tokens[i] + "' is not <0x00>..<0xFF> "
                  "once each");
    seen[value] = true;
    ++bytes;
  }
  if (t.byteFallback && bytes != 256)
    return fail("byte_fallback without the 256 byte pieces");
  if (bosId >= 0 && size_t(bosId) < t.tokens.size() && addsBos(dir))
    t.prefixIds.push_back(uint32_t(bosId));
  return t;
}

} // namespace kiln::gpt
