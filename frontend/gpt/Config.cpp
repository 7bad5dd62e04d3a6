//===- Config.cpp - a Hugging Face checkpoint's config.json ---------------===//
#include "frontend/gpt/Config.h"

#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <tuple>

using namespace llvm;

namespace kiln::gpt {

namespace {

/// Reads fields of one JSON object, recording the first problem.
class Fields {
public:
  Fields(const json::Object &object, std::string file, std::string &error)
      : object(object), file(std::move(file)), error(error) {}

  bool failed() const { return !error.empty(); }

  /// Sets the error (the first one wins) and returns false.
  bool fail(const Twine &message) {
    if (error.empty())
      error = (file + ": " + message).str();
    return false;
  }

  bool has(StringRef key) const {
    const json::Value *value = object.get(key);
    return value && value->kind() != json::Value::Null;
  }

  /// A positive integer field; `fallback` when absent (or null), an error
  /// when required and absent.
  int64_t integer(StringRef key, std::optional<int64_t> fallback = {}) {
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null) {
      if (!fallback)
        fail("field \"" + key + "\" is missing; the checkpoint's config "
             "must give it");
      return fallback.value_or(0);
    }
    std::optional<int64_t> n = value->getAsInteger();
    if (!n || *n <= 0) {
      fail("field \"" + key + "\" must be a positive integer");
      return 0;
    }
    return *n;
  }

  double number(StringRef key, double fallback) {
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null)
      return fallback;
    std::optional<double> n = value->getAsNumber();
    if (!n) {
      fail("field \"" + key + "\" must be a number");
      return fallback;
    }
    return *n;
  }

  bool boolean(StringRef key, bool fallback) {
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null)
      return fallback;
    std::optional<bool> flag = value->getAsBoolean();
    if (!flag) {
      fail("field \"" + key + "\" must be true or false");
      return fallback;
    }
    return *flag;
  }

  std::string string(StringRef key, StringRef fallback = "") {
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null)
      return fallback.str();
    std::optional<StringRef> text = value->getAsString();
    if (!text) {
      fail("field \"" + key + "\" must be a string");
      return fallback.str();
    }
    return text->str();
  }

  /// A token id field: an integer or a list of them (eos_token_id).
  std::vector<int64_t> tokenIds(StringRef key) {
    std::vector<int64_t> ids;
    const json::Value *value = object.get(key);
    if (!value || value->kind() == json::Value::Null)
      return ids;
    if (std::optional<int64_t> id = value->getAsInteger()) {
      ids.push_back(*id);
      return ids;
    }
    if (const json::Array *list = value->getAsArray())
      for (const json::Value &item : *list)
        if (std::optional<int64_t> id = item.getAsInteger())
          ids.push_back(*id);
    return ids;
  }

  /// A field that must have `supported` when present.
  void require(StringRef key, bool supported) {
    if (boolean(key, supported) != supported)
      fail("field \"" + key + "\" = " + (supported ? "false" : "true") +
           " is not supported by Kiln");
  }

  const json::Object &object;

private:
  std::string file;
  std::string &error;
};

std::optional<json::Value> readJson(StringRef path, std::string &error) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> text = MemoryBuffer::getFile(path);
  if (!text) {
    error = (path + ": cannot read the file: " + text.getError().message())
                .str();
    return std::nullopt;
  }
  Expected<json::Value> parsed = json::parse((*text)->getBuffer());
  if (!parsed) {
    error = (path + ": not valid JSON (" + toString(parsed.takeError()) + ")")
                .str();
    return std::nullopt;
  }
  if (!parsed->getAsObject()) {
    error = (path + ": not a JSON object").str();
    return std::nullopt;
  }
  return std::move(*parsed);
}

std::optional<Activation> parseActivation(Fields &f, StringRef key,
                                          StringRef fallback) {
  std::string name = f.string(key, fallback);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" ||
      name == "gelu_fast")
    return Activation::GeluTanh;
  if (name == "gelu")
    return Activation::GeluErf;
  if (name == "silu" || name == "swish")
    return Activation::Silu;
  if (name == "relu")
    return Activation::Relu;
  f.fail("field \"" + key + "\" = \"" + name +
         "\" is not a supported activation (gelu, gelu_new, "
         "gelu_pytorch_tanh, silu, relu)");
  return std::nullopt;
}

/// rope_theta + rope_scaling (transformers 4) or rope_parameters
/// (transformers 5).
void readRope(Fields &f, RopeConfig &rope) {
  const json::Object *params = f.object.getObject("rope_parameters");
  const json::Object *scaling = f.object.getObject("rope_scaling");
  rope.theta = f.number("rope_theta", 10000.0);
  rope.partialRotaryFactor = f.number("partial_rotary_factor", 1.0);
  const json::Object *source = params ? params : scaling;
  if (!source)
    return;
  std::string where = params ? "rope_parameters" : "rope_scaling";
  std::string error;
  Fields s(*source, "", error);
  if (params)
    rope.theta = s.number("rope_theta", rope.theta);
  rope.partialRotaryFactor =
      s.number("partial_rotary_factor", rope.partialRotaryFactor);
  // transformers 4.3x wrote "type" before "rope_type".
  rope.type = s.string("rope_type", s.string("type", "default"));
  if (rope.type == "default")
    return;
  rope.factor = s.number("factor", 1.0);
  if (rope.type == "linear") {
  } else if (rope.type == "llama3") {
    rope.lowFreqFactor = s.number("low_freq_factor", 1.0);
    rope.highFreqFactor = s.number("high_freq_factor", 4.0);
    rope.originalMaxPositions =
        int64_t(s.number("original_max_position_embeddings", 8192));
    if (rope.highFreqFactor <= rope.lowFreqFactor)
      f.fail("field \"" + where + "\": high_freq_factor must exceed "
             "low_freq_factor");
  } else {
    f.fail("field \"" + where + "\" has rope type \"" + rope.type +
           "\", which Kiln does not implement (default, linear and llama3 "
           "are supported)");
    return;
  }
  if (!(rope.factor > 0))
    f.fail("field \"" + where + "\": factor must be positive");
  if (!error.empty())
    f.fail("field \"" + where + "\": " + StringRef(error).drop_front(2));
}

} // namespace

std::optional<GptConfig> readConfig(StringRef dir, std::string &error) {
  SmallString<256> path(dir);
  sys::path::append(path, "config.json");
  if (!sys::fs::exists(path)) {
    error = (dir + ": not a checkpoint folder: it has no config.json").str();
    return std::nullopt;
  }
  std::optional<json::Value> json = readJson(path, error);
  if (!json)
    return std::nullopt;
  Fields f(*json->getAsObject(), path.str().str(), error);
  GptConfig c;
  c.modelType = f.string("model_type");
  if (c.modelType == "gpt2") {
    c.family = Family::Gpt2;
    c.hiddenSize = f.integer("n_embd");
    c.numLayers = f.integer("n_layer");
    c.numHeads = f.integer("n_head");
    c.numKvHeads = c.numHeads;
    c.intermediateSize = f.integer("n_inner", 4 * c.hiddenSize);
    c.vocabSize = f.integer("vocab_size");
    c.maxPositions = f.integer("n_positions");
    c.normEpsilon = f.number("layer_norm_epsilon", 1e-5);
    if (auto act = parseActivation(f, "activation_function", "gelu_new"))
      c.activation = *act;
    c.tieWordEmbeddings = f.boolean("tie_word_embeddings", true);
    c.qkvBias = c.outputBias = c.mlpBias = true;
    f.require("scale_attn_weights", true);
    f.require("scale_attn_by_inverse_layer_idx", false);
    f.require("add_cross_attention", false);
  } else if (c.modelType == "llama" || c.modelType == "mistral" ||
             c.modelType == "qwen2" || c.modelType == "gemma" ||
             c.modelType == "phi3") {
    c.family = c.modelType == "llama"     ? Family::Llama
               : c.modelType == "mistral" ? Family::Mistral
               : c.modelType == "gemma"   ? Family::Gemma
               : c.modelType == "phi3"    ? Family::Phi3
                                          : Family::Qwen2;
    c.hiddenSize = f.integer("hidden_size");
    c.numLayers = f.integer("num_hidden_layers");
    c.numHeads = f.integer("num_attention_heads");
    c.numKvHeads = f.integer("num_key_value_heads", c.numHeads);
    c.intermediateSize = f.integer("intermediate_size");
    c.vocabSize = f.integer("vocab_size");
    c.maxPositions = f.integer("max_position_embeddings");
    c.normEpsilon = f.number("rms_norm_eps", 1e-6);
    if (c.family == Family::Gemma && f.has("hidden_activation")) {
      if (auto act = parseActivation(f, "hidden_activation", "gelu_pytorch_tanh"))
        c.activation = *act;
    } else if (auto act = parseActivation(
                   f, "hidden_act",
                   c.family == Family::Gemma ? "gelu_pytorch_tanh" : "silu")) {
      c.activation = *act;
    }
    c.tieWordEmbeddings =
        f.boolean("tie_word_embeddings", c.family == Family::Gemma);
    c.gemmaScaling = c.family == Family::Gemma;
    if (c.family == Family::Qwen2) {
      c.qkvBias = true;
    } else if (c.family == Family::Llama || c.family == Family::Gemma) {
      c.qkvBias = c.outputBias = f.boolean("attention_bias", false);
      c.mlpBias = f.boolean("mlp_bias", false);
    }
    readRope(f, c.rope);
    if (c.family == Family::Mistral || c.family == Family::Phi3 ||
        (c.family == Family::Qwen2 && f.boolean("use_sliding_window", false)))
      c.slidingWindow = f.has("sliding_window") ? f.integer("sliding_window")
                                                : 0;
  } else {
    error = (path + ": model_type \"" + c.modelType +
             "\" is not supported; Kiln reads gpt2, llama, mistral, qwen2, gemma "
             "and phi3 checkpoints (export other models to ONNX)")
                .str();
    return std::nullopt;
  }
  if (f.failed())
    return std::nullopt;
  c.headDim = f.integer("head_dim", c.hiddenSize / c.numHeads);
  if (f.failed())
    return std::nullopt;
  // Sizes beyond these are a corrupted config, not a model (and would
  // overflow the sizes computed from them).
  for (auto [name, value, most] :
       {std::tuple<const char *, int64_t, int64_t>{"hidden size", c.hiddenSize, 1 << 20},
        {"layer count", c.numLayers, 1 << 12},
        {"head count", c.numHeads, 1 << 12},
        {"key/value head count", c.numKvHeads, 1 << 12},
        {"head dim", c.headDim, 1 << 14},
        {"intermediate size", c.intermediateSize, 1 << 22},
        {"vocabulary size", c.vocabSize, 1 << 24},
        {"position count", c.maxPositions, 1 << 24}})
    if (value > most) {
      f.fail(Twine("the ") + name + " " + Twine(value) +
             " is implausible (at most " + Twine(most) + ")");
      return std::nullopt;
    }
  if (c.hiddenSize % c.numHeads != 0 && !f.has("head_dim")) {
    f.fail("hidden size " + Twine(c.hiddenSize) +
           " is not a multiple of the " + Twine(c.numHeads) + " heads");
    return std::nullopt;
  }
  if (c.numHeads % c.numKvHeads != 0) {
    f.fail("the " + Twine(c.numHeads) + " attention heads are not a "
           "multiple of the " + Twine(c.numKvHeads) + " key/value heads");
    return std::nullopt;
  }
  if (c.family != Family::Gpt2 && c.rotaryDims() == 0) {
    f.fail("partial_rotary_factor leaves no dims to rotate");
    return std::nullopt;
  }
  c.dtype = f.string("dtype", f.string("torch_dtype"));
  c.eosTokenIds = f.tokenIds("eos_token_id");
  std::vector<int64_t> bos = f.tokenIds("bos_token_id");
  std::vector<int64_t> pad = f.tokenIds("pad_token_id");

  SmallString<256> genPath(dir);
  sys::path::append(genPath, "generation_config.json");
  if (sys::fs::exists(genPath)) {
    std::optional<json::Value> gen = readJson(genPath, error);
    if (!gen)
      return std::nullopt;
    Fields g(*gen->getAsObject(), genPath.str().str(), error);
    if (std::vector<int64_t> eos = g.tokenIds("eos_token_id"); !eos.empty())
      c.eosTokenIds = eos;
    if (std::vector<int64_t> id = g.tokenIds("bos_token_id"); !id.empty())
      bos = id;
    if (std::vector<int64_t> id = g.tokenIds("pad_token_id"); !id.empty())
      pad = id;
  }
  c.bosTokenId = bos.empty() ? -1 : bos.front();
  c.padTokenId = pad.empty() ? -1 : pad.front();
  return c;
}

std::optional<SpecialTokens> readSpecialTokens(StringRef dir,
                                               std::string &error) {
  SpecialTokens t;
  std::vector<int64_t> bos, pad;
  for (const char *file : {"config.json", "generation_config.json"}) {
    SmallString<256> path(dir);
    sys::path::append(path, file);
    if (!sys::fs::exists(path))
      continue;
    std::optional<json::Value> json = readJson(path, error);
    if (!json)
      return std::nullopt;
    Fields f(*json->getAsObject(), path.str().str(), error);
    // generation_config.json's ids, read second, win.
    if (std::vector<int64_t> ids = f.tokenIds("eos_token_id"); !ids.empty())
      t.eosTokenIds = ids;
    if (std::vector<int64_t> ids = f.tokenIds("bos_token_id"); !ids.empty())
      bos = ids;
    if (std::vector<int64_t> ids = f.tokenIds("pad_token_id"); !ids.empty())
      pad = ids;
    if (std::string type = f.string("model_type"); !type.empty())
      t.modelType = type;
    for (const char *key : {"max_position_embeddings", "n_positions"})
      if (int64_t n = f.integer(key, 0); n && !t.maxPositions) {
        t.maxPositions = n;
        t.maxPositionsField = key;
      }
    if (!error.empty())
      return std::nullopt;
  }
  t.bosTokenId = bos.empty() ? -1 : bos.front();
  t.padTokenId = pad.empty() ? -1 : pad.front();
  return t;
}

std::vector<float> rotaryInverseFrequencies(const GptConfig &config) {
  int64_t dims = config.rotaryDims();
  const RopeConfig &rope = config.rope;
  std::vector<float> inv(dims / 2);
  // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in f32.
  for (int64_t i = 0; i < dims / 2; ++i)
    inv[i] = 1.0f / std::pow(float(rope.theta),
                             float(2 * i) / float(dims));
  if (rope.type == "linear") {
    for (float &f : inv)
      f = f / float(rope.factor);
  } else if (rope.type == "llama3") {
    float factor = float(rope.factor);
    float oldContext = float(rope.originalMaxPositions);
    float lowWavelen = oldContext / float(rope.lowFreqFactor);
    float highWavelen = oldContext / float(rope.highFreqFactor);
    for (float &f : inv) {
      float wavelen = float(2 * M_PI) / f;
      float scaled = wavelen > lowWavelen ? f / factor : f;
      bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) {
        float smooth = (oldContext / wavelen - float(rope.lowFreqFactor)) /
                       float(rope.highFreqFactor - rope.lowFreqFactor);
        scaled = (1 - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

} // namespace kiln::gpt
