//===- Tokenizer.cpp - a checkpoint's tokenizer.json ----------------------===//
#include "frontend/gpt/Tokenizer.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

using namespace llvm;

namespace kiln::gpt {

namespace {

constexpr const char *kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char *kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char *kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool isNull(const json::Value *v) {
  return !v || v->kind() == json::Value::Null;
}

} // namespace

std::optional<TokenizerTables> readTokenizerJson(StringRef dir,
                                                 std::string &error);

std::optional<TokenizerTables> readTokenizer(StringRef dir,
                                             std::string &error) {
  std::string jsonError, modelError;
  if (std::optional<TokenizerTables> t = readTokenizerJson(dir, jsonError))
    return t;
  if (std::optional<TokenizerTables> t = readSentencePiece(dir, modelError))
    return t;
  if (!jsonError.empty() && !modelError.empty())
    error = jsonError + "; and " + modelError;
  else
    error = jsonError.empty() ? modelError : jsonError;
  return std::nullopt;
}

std::optional<TokenizerTables> readTokenizerJson(StringRef dir,
                                                 std::string &error) {
  SmallString<256> path(dir);
  sys::path::append(path, "tokenizer.json");
  if (!sys::fs::exists(path))
    return std::nullopt;
  auto fail = [&](const Twine &message) {
    error = (path + ": " + message).str();
    return std::nullopt;
  };
  ErrorOr<std::unique_ptr<MemoryBuffer>> text = MemoryBuffer::getFile(path);
  if (!text)
    return fail("cannot read the file: " + text.getError().message());
  Expected<json::Value> parsed = json::parse((*text)->getBuffer());
  if (!parsed)
    return fail("not valid JSON (" + toString(parsed.takeError()) + ")");
  const json::Object *root = parsed->getAsObject();
  const json::Object *model = root ? root->getObject("model") : nullptr;
  if (!model)
    return fail("no \"model\" object");
  TokenizerTables t;
  if (model->getString("type") != StringRef("BPE"))
    return fail("model type \"" +
                model->getString("type").value_or("?") +
                "\" is not supported; Kiln reads byte-level BPE tokenizers "
                "(GPT-2, LLaMA 3, Qwen2)");
  if (!isNull(model->get("dropout")))
    return fail("BPE dropout is not supported");
  for (const char *field : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (auto s = model->getString(field); s && !s->empty())
      return fail("\"" + Twine(field) + "\" is not supported");
  if (model->getBoolean("byte_fallback").value_or(false))
    return fail("byte_fallback is not supported (a SentencePiece-style "
                "tokenizer)");
  t.ignoreMerges = model->getBoolean("ignore_merges").value_or(false);
  if (const json::Value *normalizer = root->get("normalizer");
      normalizer && !isNull(normalizer)) {
    const json::Object *object = normalizer->getAsObject();
    std::optional<StringRef> type =
        object ? object->getString("type") : std::nullopt;
    if (type != StringRef("NFC"))
      return fail("normalizer \"" + type.value_or("?") +
                  "\" is not supported; Kiln applies NFC (Qwen2's) or none");
    t.nfc = true;
  }

  // The pre-tokenizer: ByteLevel with its regex, or a Split with a known
  // regex followed by a ByteLevel without one.
  const json::Object *pre = root->getObject("pre_tokenizer");
  if (!pre)
    return fail("no \"pre_tokenizer\"; Kiln reads byte-level tokenizers");
  std::string pattern;
  const json::Object *byteLevel = nullptr;
  if (pre->getString("type") == StringRef("ByteLevel")) {
    byteLevel = pre;
    if (!byteLevel->getBoolean("use_regex").value_or(true))
      return fail("a ByteLevel pre-tokenizer without its regex needs a Split "
                  "before it");
    pattern = kGpt2Pattern;
  } else if (pre->getString("type") == StringRef("Sequence")) {
    const json::Array *list = pre->getArray("pretokenizers");
    if (!list || list->size() != 2)
      return fail("a Sequence pre-tokenizer must be a Split and a ByteLevel");
    const json::Object *split = (*list)[0].getAsObject();
    byteLevel = (*list)[1].getAsObject();
    const json::Object *regex = split ? split->getObject("pattern") : nullptr;
    if (!split || split->getString("type") != StringRef("Split") || !regex ||
        !regex->getString("Regex") || !byteLevel ||
        byteLevel->getString("type") != StringRef("ByteLevel") ||
        byteLevel->getBoolean("use_regex").value_or(true) ||
        split->getString("behavior") != StringRef("Isolated") ||
        split->getBoolean("invert").value_or(false))
      return fail("a Sequence pre-tokenizer must be a Split (Isolated) by a "
                  "regex and a ByteLevel without its own regex");
    pattern = regex->getString("Regex")->str();
  } else {
    return fail("pre-tokenizer \"" + pre->getString("type").value_or("?") +
                "\" is not supported; Kiln reads byte-level tokenizers");
  }
  if (pattern == kGpt2Pattern)
    t.pattern = 1;
  else if (pattern == kLlama3Pattern)
    t.pattern = 2;
  else if (pattern == kQwen2Pattern)
    t.pattern = 3;
  else
    return fail("the pre-tokenizer's pattern is not one Kiln has a matcher "
                "for (GPT-2's, LLaMA 3's, Qwen2's): " + pattern);
  t.addPrefixSpace = byteLevel->getBoolean("add_prefix_space").value_or(false);

  // The vocabulary and the added tokens, by id.
  const json::Object *vocab = model->getObject("vocab");
  if (!vocab)
    return fail("the model has no \"vocab\"");
  StringMap<uint32_t> ids;
  auto place = [&](StringRef token, int64_t id) {
    if (id < 0 || id > (int64_t(1) << 24))
      return false;
    if (size_t(id) >= t.tokens.size())
      t.tokens.resize(size_t(id) + 1);
    t.tokens[size_t(id)] = token.str();
    ids[token] = uint32_t(id);
    return true;
  };
  for (const auto &entry : *vocab) {
    std::optional<int64_t> id = entry.second.getAsInteger();
    if (!id || !place(entry.first, *id))
      return fail("vocabulary entry '" + StringRef(entry.first) +
                  "' has no valid id");
  }
  if (const json::Array *added = root->getArray("added_tokens"))
    for (const json::Value &value : *added) {
      const json::Object *token = value.getAsObject();
      std::optional<int64_t> id = token ? token->getInteger("id") : std::nullopt;
      std::optional<StringRef> content =
          token ? token->getString("content") : std::nullopt;
      if (!id || !content || !place(*content, *id))
        return fail("an added token has no id or content");
      t.addedIds.push_back(uint32_t(*id));
      t.addedSpecial.push_back(token->getBoolean("special").value_or(false));
    }

  // Merges: "a b" strings (older files) or [a, b] pairs.
  const json::Array *merges = model->getArray("merges");
  if (!merges)
    return fail("the model has no \"merges\"");
  for (const json::Value &merge : *merges) {
    std::string left, right;
    if (std::optional<StringRef> text = merge.getAsString()) {
      auto [a, b] = text->split(' ');
      left = a.str();
      right = b.str();
    } else if (const json::Array *pair = merge.getAsArray();
               pair && pair->size() == 2 && (*pair)[0].getAsString() &&
               (*pair)[1].getAsString()) {
      left = (*pair)[0].getAsString()->str();
      right = (*pair)[1].getAsString()->str();
    } else {
      return fail("a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto a = ids.find(left), b = ids.find(right), r = ids.find(left + right);
    if (a == ids.end() || b == ids.end() || r == ids.end())
      return fail("the merge '" + left + "' + '" + right +
                  "' names a token the vocabulary lacks");
    t.merges.insert(t.merges.end(), {a->second, b->second, r->second});
  }

  // The post-processor's prefix: TemplateProcessing's special tokens before
  // $A (LLaMA 3's <|begin_of_text|>); ByteLevel adds nothing.
  std::vector<const json::Object *> processors;
  if (const json::Object *post = root->getObject("post_processor")) {
    if (post->getString("type") == StringRef("Sequence")) {
      if (const json::Array *list = post->getArray("processors"))
        for (const json::Value &p : *list)
          if (const json::Object *o = p.getAsObject())
            processors.push_back(o);
    } else {
      processors.push_back(post);
    }
  }
  for (const json::Object *p : processors) {
    StringRef type = p->getString("type").value_or("");
    if (type == "ByteLevel")
      continue;
    if (type != "TemplateProcessing")
      return fail("post-processor \"" + type + "\" is not supported");
    const json::Array *single = p->getArray("single");
    if (!single)
      return fail("TemplateProcessing without \"single\"");
    bool seenSequence = false;
    for (const json::Value &piece : *single) {
      const json::Object *o = piece.getAsObject();
      if (o && o->getObject("Sequence")) {
        seenSequence = true;
        continue;
      }
      const json::Object *special = o ? o->getObject("SpecialToken") : nullptr;
      std::optional<StringRef> name =
          special ? special->getString("id") : std::nullopt;
      if (!name || seenSequence || !ids.count(*name))
        return fail("TemplateProcessing: only special tokens before the "
                    "sequence are supported");
      t.prefixIds.push_back(ids[*name]);
    }
  }
  return t;
}

} // namespace kiln::gpt
