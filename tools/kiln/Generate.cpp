//===- Generate.cpp - kiln generate ---------------------------------------===//
//
// Generates tokens with a decoder model compiled from a checkpoint. On cpu
// and cuda:N it drives the runtime's generator (kiln_generator_*, the API
// applications use); under --device sim the same loop runs the simulator.
//
//===----------------------------------------------------------------------===//
#include "tools/kiln/Driver.h"
#include "tools/kiln/SimRun.h"

#include "artifact.h"
#include "tokenizer.h"
#include "generation.h"
#include "kiln/runtime.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <cstdio>
#include <memory>

namespace kiln::driver {
namespace {

const char *kGenerateHelp = R"(usage: kiln generate OUT.kiln --prompt-ids 1,2,3 [options]

Generates tokens with a decoder model compiled from a checkpoint folder,
streaming each new token to stdout as it comes, then printing the prompt
length, the time to the first token and the decode rate to stderr.

  --prompt-ids IDS       the prompt as comma-separated token ids
  --prompt TEXT          the prompt as text, encoded with the model's
                         tokenizer (from the checkpoint's tokenizer.json);
                         the new tokens then stream as text
  --max-new-tokens N     stop after N new tokens (default 32)
  --temperature T        0 (default) is greedy; otherwise sample
  --top-k K              sample among the K likeliest tokens (0: all)
  --top-p P              sample among the likeliest tokens whose
                         probabilities sum to P (default 1: all)
  --seed S               the sampler's seed (default 0): the same seed
                         gives the same tokens
  --stop-id ID           also stop at this token (repeatable); the model's
                         end-of-sequence tokens always stop
  --device D             cpu (default), cuda:N, or sim (the GPU-kernel
                         simulator, for cuda artifacts with kernel IR)
  --threads N            CPU threads (default 0: one per CPU this process
                         may use); the tokens do not depend on it
  --skip-weight-checksums
                         load without checking the weights' checksums
                         (for files verified elsewhere; the kernel code
                         is always checked)
  --prompt and --prompt-ids may be repeated: a prompt per row of a model
                         compiled with --dim batch=B (B prompts, of any
                         lengths); each row's text is printed on its line
  --json                 print one JSON object at the end instead: the
                         prompt's and the new token ids, why it stopped
                         (eos, stop, length: --max-new-tokens, or
                         max_sequence: the model's --max-seq-len), and the
                         timings
  --logits-out F.npy     write the logits each new token was chosen from,
                         f32[new tokens, vocab], to F.npy
)";

struct GenerateOptions {
  std::string artifact, device = "cpu", prompt, logitsOut;
  int threads = 0;
  std::vector<int64_t> promptIds, stopIds;
  /// Every --prompt-ids and --prompt given: more than one is a batch, a
  /// prompt per row of a model compiled with --dim batch=B.
  std::vector<std::vector<int64_t>> promptRows;
  std::vector<std::string> promptTexts;
  bool havePromptIds = false, havePrompt = false, json = false;
  bool skipWeightChecksums = false;
  size_t maxNewTokens = 32;
  runtime::SamplingOptions sampling;
};

bool parseIds(const std::string &text, std::vector<int64_t> &ids) {
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(text).split(parts, ',', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef part : parts) {
    int64_t id = 0;
    if (part.trim().getAsInteger(10, id))
      return false;
    ids.push_back(id);
  }
  return !ids.empty();
}

std::optional<GenerateOptions> parse(const Args &args, std::string &error) {
  GenerateOptions o;
  for (size_t i = 0; i < args.size() && error.empty(); ++i) {
    std::string value;
    const std::string &arg = args[i];
    auto number = [&](double &out, double lo, double hi) {
      char *end = nullptr;
      out = std::strtod(value.c_str(), &end);
      if (value.empty() || *end || !(out >= lo && out <= hi))
        error = arg + " expects a number in [" + llvm::utostr(uint64_t(lo)) +
                ", " + (hi > 1e9 ? std::string("inf") : llvm::utostr(hi)) +
                "], got '" + value + "'";
    };
    auto count = [&](uint64_t &out) {
      if (!llvm::to_integer(value, out, 10))
        error = arg + " expects a non-negative integer, got '" + value + "'";
    };
    if (takeOption(args, i, "--prompt-ids", value, error)) {
      o.havePromptIds = true;
      o.promptIds.clear();
      if (!parseIds(value, o.promptIds))
        error = "--prompt-ids expects comma-separated token ids, got '" +
                value + "'";
      o.promptRows.push_back(o.promptIds);
    } else if (takeOption(args, i, "--prompt", value, error)) {
      o.havePrompt = true;
      o.prompt = value;
      o.promptTexts.push_back(value);
    } else if (takeOption(args, i, "--max-new-tokens", value, error)) {
      uint64_t n = 0;
      count(n);
      o.maxNewTokens = n;
    } else if (takeOption(args, i, "--temperature", value, error)) {
      number(o.sampling.temperature, 0, 1e300);
    } else if (takeOption(args, i, "--top-k", value, error)) {
      uint64_t n = 0;
      count(n);
      if (error.empty() && n > uint64_t(INT32_MAX))
        error = "--top-k expects at most " + std::to_string(INT32_MAX) +
                ", got '" + value + "'";
      o.sampling.topK = int64_t(n);
    } else if (takeOption(args, i, "--top-p", value, error)) {
      number(o.sampling.topP, 0, 1);
      if (error.empty() && o.sampling.topP == 0)
        error = "--top-p must be above 0";
    } else if (takeOption(args, i, "--seed", value, error)) {
      count(o.sampling.seed);
    } else if (takeOption(args, i, "--stop-id", value, error)) {
      int64_t id = 0;
      if (llvm::StringRef(value).getAsInteger(10, id))
        error = "--stop-id expects a token id, got '" + value + "'";
      o.stopIds.push_back(id);
    } else if (takeOption(args, i, "--device", value, error)) {
      o.device = value;
    } else if (takeOption(args, i, "--threads", value, error)) {
      if (!parseThreads(value, o.threads))
        error = "--threads expects a count (0: one per CPU), got '" + value +
                "'";
    } else if (args[i] == "--skip-weight-checksums") {
      o.skipWeightChecksums = true;
    } else if (takeOption(args, i, "--logits-out", value, error)) {
      o.logitsOut = value;
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kGenerateHelp, stdout);
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      error = "unknown option '" + arg + "' for kiln generate";
    } else if (o.artifact.empty()) {
      o.artifact = arg;
    } else {
      error = "unexpected argument '" + arg + "'";
    }
  }
  if (!error.empty())
    return std::nullopt;
  if (o.artifact.empty()) {
    error = "no artifact given; usage: kiln generate OUT.kiln --prompt-ids "
            "1,2,3";
    return std::nullopt;
  }
  if (o.havePrompt == o.havePromptIds) {
    error = "give the prompts either as text (--prompt TEXT) or as token ids "
            "(--prompt-ids 1,2,3), one of them";
    return std::nullopt;
  }
  return o;
}

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

/// The generation loop over one step function, with the streaming, the
/// stop conditions and the report shared by every device.
struct Loop {
  const GenerateOptions &o;
  /// The prompt's ids (given, or encoded from --prompt).
  std::vector<int64_t> promptIds;
  /// Decodes ids to bytes (`raw`) or text; empty without a tokenizer.
  std::function<std::string(const std::vector<int64_t> &, bool)> decode;
  std::vector<int64_t> newIds;
  /// Bytes of the text shown so far.
  size_t printed = 0;

  /// Prints what `text` (the text of the tokens so far) adds.
  void show(const std::string &text) {
    if (text.size() <= printed)
      return;
    std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
    std::fflush(stdout);
    printed = text.size();
  }
  std::string finish = "length";
  double firstTokenMs = 0, decodeMs = 0;
  /// --logits-out: each step's logits, appended by the step function.
  std::vector<float> logits;
  size_t vocab = 0;

  /// Row 0's logits of `rows` (one prompt: every row holds it).
  void recordLogits(const float *data, size_t count, size_t rows) {
    if (o.logitsOut.empty() || !rows)
      return;
    vocab = count / rows;
    logits.insert(logits.end(), data, data + vocab);
  }

  /// `step` computes the next token (false and `error` on failure);
  /// `isEos` says whether it ends the sequence.
  int run(const std::function<bool(int64_t &, std::string &)> &step,
          const std::function<bool(int64_t)> &isEos,
          const std::function<bool()> &full) {
    auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point firstDone;
    for (size_t i = 0; i < o.maxNewTokens; ++i) {
      if (full()) {
        finish = "max_sequence";
        break;
      }
      int64_t token = 0;
      std::string error;
      if (!step(token, error))
        return fail(error);
      if (i == 0) {
        firstTokenMs = msSince(start);
        firstDone = std::chrono::steady_clock::now();
      }
      newIds.push_back(token);
      bool eos = isEos(token);
      bool stop = llvm::is_contained(o.stopIds, token);
      if (!o.json && !decode) {
        std::printf("%s%lld", i ? " " : "", static_cast<long long>(token));
        std::fflush(stdout);
      } else if (!o.json && !eos) {
        // Text streams as soon as its UTF-8 sequences are complete: the
        // text of every token so far (invalid bytes replaced as the
        // tokenizer replaces them), less what is shown already.
        std::string bytes = decode(newIds, /*raw=*/true);
        if (runtime::Tokenizer::completePrefix(bytes) == bytes.size())
          show(decode(newIds, /*raw=*/false));
      }
      if (eos || stop) {
        finish = eos ? "eos" : "stop";
        break;
      }
    }
    if (!newIds.empty())
      decodeMs = msSince(firstDone);
    if (!o.json && decode) {
      // What is left: an incomplete UTF-8 sequence, shown as U+FFFD.
      std::vector<int64_t> shown = newIds;
      if (finish == "eos")
        shown.pop_back();
      show(decode(shown, /*raw=*/false));
    }
    if (!o.logitsOut.empty()) {
      HostTensor t;
      t.dtype = KILN_DTYPE_F32;
      t.shape = {int64_t(newIds.size()), int64_t(vocab)};
      t.data.resize(logits.size() * sizeof(float));
      std::memcpy(t.data.data(), logits.data(), t.data.size());
      if (std::string error = writeNpy(o.logitsOut, t); !error.empty())
        return fail(error);
    }
    report();
    return 0;
  }

  void report() {
    size_t decoded = newIds.empty() ? 0 : newIds.size() - 1;
    double rate = decodeMs > 0 ? decoded / (decodeMs / 1000.0) : 0;
    if (o.json) {
      llvm::json::Object object{
          {"prompt_ids", llvm::json::Array(promptIds)},
          {"new_ids", llvm::json::Array(newIds)},
          {"finish_reason", finish},
          {"prompt_tokens", int64_t(promptIds.size())},
          {"time_to_first_token_ms", firstTokenMs},
          {"decode_tokens_per_s", rate},
          {"device", o.device},
      };
      if (decode)
        object["text"] = decode(newIds, /*raw=*/false);
      llvm::outs() << llvm::json::Value(std::move(object)) << "\n";
      llvm::outs().flush();
      return;
    }
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr,
                 "kiln: %zu prompt tokens, %zu new (%s); time to first "
                 "token %.2f ms, decode %.1f tokens/s\n",
                 promptIds.size(), newIds.size(), finish.c_str(),
                 firstTokenMs, rate);
  }
};

/// What a batch of prompts needs of a generator (the C API's or the
/// simulator's).
struct RowsDriver {
  std::function<absl::Status(const std::vector<std::vector<int64_t>> &)>
      feedRows;
  std::function<absl::StatusOr<std::vector<int64_t>>()> stepRows;
  std::function<bool()> full;
  std::function<bool(int64_t)> isEos;
  /// Every row's logits of the last step.
  std::function<std::vector<float>()> logits;
  /// Text to ids; empty without a tokenizer.
  std::function<absl::StatusOr<std::vector<int64_t>>(const std::string &)>
      encode;
  /// New tokens to the text that continues a prompt; empty without a
  /// tokenizer.
  std::function<std::string(const std::vector<int64_t> &)> decode;
};

/// A prompt per row: steps until every row ended (an end-of-sequence or
/// stop token), --max-new-tokens, or the model's longest sequence.
int runRows(const GenerateOptions &o, const std::string &artifact,
            RowsDriver &d) {
  std::vector<std::vector<int64_t>> prompts = o.promptRows;
  if (!o.promptTexts.empty()) {
    if (!d.encode)
      return fail("'" + artifact + "' carries no tokenizer, so it cannot "
                  "take text prompts; give them with --prompt-ids");
    prompts.clear();
    for (const std::string &text : o.promptTexts) {
      auto ids = d.encode(text);
      if (!ids.ok())
        return fail("--prompt: " + std::string(ids.status().message()));
      prompts.push_back(*ids);
    }
  }
  if (absl::Status st = d.feedRows(prompts); !st.ok())
    return fail(std::string(st.message()));
  size_t rows = prompts.size();
  std::vector<std::vector<int64_t>> generated(rows);
  std::vector<std::string> finish(rows);
  std::vector<float> logits;
  size_t vocab = 0, steps = 0;
  auto start = std::chrono::steady_clock::now();
  double firstTokenMs = 0;
  for (; steps < o.maxNewTokens; ++steps) {
    bool open = false;
    for (const std::string &f : finish)
      open |= f.empty();
    if (!open)
      break;
    if (d.full()) {
      for (std::string &f : finish)
        if (f.empty())
          f = "max_sequence";
      break;
    }
    auto tokens = d.stepRows();
    if (!tokens.ok())
      return fail(std::string(tokens.status().message()));
    if (steps == 0)
      firstTokenMs = msSince(start);
    if (!o.logitsOut.empty()) {
      std::vector<float> l = d.logits();
      vocab = l.size() / rows;
      logits.insert(logits.end(), l.begin(), l.end());
    }
    for (size_t r = 0; r < rows; ++r) {
      if (!finish[r].empty())
        continue;
      int64_t token = (*tokens)[r];
      generated[r].push_back(token);
      if (d.isEos(token))
        finish[r] = "eos";
      else if (llvm::is_contained(o.stopIds, token))
        finish[r] = "stop";
    }
  }
  for (std::string &f : finish)
    if (f.empty())
      f = "length";
  double totalMs = msSince(start);
  if (!o.logitsOut.empty()) {
    HostTensor t;
    t.dtype = KILN_DTYPE_F32;
    t.shape = {int64_t(steps), int64_t(rows), int64_t(vocab)};
    t.data.resize(logits.size() * sizeof(float));
    std::memcpy(t.data.data(), logits.data(), t.data.size());
    if (std::string error = writeNpy(o.logitsOut, t); !error.empty())
      return fail(error);
  }
  // The text of a row: its new tokens, without an end-of-sequence one.
  auto text = [&](size_t r) {
    std::vector<int64_t> shown = generated[r];
    if (finish[r] == "eos" && !shown.empty())
      shown.pop_back();
    return d.decode(shown);
  };
  double rate = steps > 1 && totalMs > firstTokenMs
                    ? double(steps - 1) * rows /
                          ((totalMs - firstTokenMs) / 1000.0)
                    : 0;
  if (o.json) {
    llvm::json::Array out;
    for (size_t r = 0; r < rows; ++r) {
      llvm::json::Object row{{"prompt_ids", llvm::json::Array(prompts[r])},
                             {"new_ids", llvm::json::Array(generated[r])},
                             {"finish_reason", finish[r]}};
      if (d.decode)
        row["text"] = text(r);
      out.push_back(std::move(row));
    }
    llvm::json::Object object{{"rows", std::move(out)},
                              {"time_to_first_token_ms", firstTokenMs},
                              {"decode_tokens_per_s", rate},
                              {"device", o.device}};
    llvm::outs() << llvm::json::Value(std::move(object)) << "\n";
    llvm::outs().flush();
    return 0;
  }
  for (size_t r = 0; r < rows; ++r) {
    if (d.decode) {
      std::printf("%s\n", text(r).c_str());
      continue;
    }
    for (size_t i = 0; i < generated[r].size(); ++i)
      std::printf("%s%lld", i ? " " : "",
                  static_cast<long long>(generated[r][i]));
    std::printf("\n");
  }
  std::fprintf(stderr,
               "kiln: %zu prompts, %zu steps; time to first tokens %.2f ms, "
               "decode %.1f tokens/s over all rows\n",
               rows, steps, firstTokenMs, rate);
  return 0;
}

int generateOnSimulator(const GenerateOptions &o) {
  runtime::LoadOptions load;
  load.verifyWeights = !o.skipWeightChecksums;
  auto loaded = runtime::Artifact::loadFile(o.artifact, load);
  if (!loaded.ok())
    return fail(std::string(loaded.status().message()));
  auto model = runtime::generationModel(**loaded);
  if (!model.ok())
    return fail(std::string(model.status().message()));
  size_t entry = model->entryIndex, vocab = model->vocab;
  int64_t batch = model->batch;
  std::string path = o.artifact;
  // The session's KV cache, kept from run to run as the runtime keeps it.
  std::vector<std::vector<uint8_t>> states;
  SimOptions simOptions;
  // Each step loads the file again, and checks it again.
  simOptions.verifyWeights = !o.skipWeightChecksums;
  simOptions.states = &states;
  bool takesPadding = model->padding;
  auto paddingTensor = [](const std::vector<int64_t> &padding) {
    HostTensor t;
    t.dtype = KILN_DTYPE_I64;
    t.shape = {int64_t(padding.size())};
    t.data.resize(padding.size() * sizeof(int64_t));
    std::memcpy(t.data.data(), padding.data(), t.data.size());
    return t;
  };
  runtime::Forward forward = [&](const std::vector<int64_t> &ids,
                                 const std::vector<int64_t> &padding,
                                 size_t last,
                                 std::vector<float> &logits) -> absl::Status {
    int64_t length = int64_t(ids.size()) / batch;
    std::vector<HostTensor> inputs(1), outputs(1);
    inputs[0].dtype = KILN_DTYPE_I64;
    inputs[0].shape = {batch, length};
    inputs[0].data.resize(ids.size() * sizeof(int64_t));
    std::memcpy(inputs[0].data.data(), ids.data(), inputs[0].data.size());
    if (takesPadding)
      inputs.push_back(paddingTensor(padding));
    outputs[0].dtype = KILN_DTYPE_F32;
    outputs[0].shape = {batch, length, int64_t(vocab)};
    outputs[0].data.resize(ids.size() * vocab * sizeof(float));
    SimReport report;
    std::string error =
        runOnSimulator(path, entry, inputs, outputs, report, simOptions);
    if (!error.empty())
      return absl::InternalError(error);
    for (int64_t r = 0; r < batch; ++r)
      std::memcpy(logits.data() + size_t(r) * vocab,
                  outputs[0].data.data() +
                      (size_t(r * length) + last) * vocab * sizeof(float),
                  vocab * sizeof(float));
    return absl::OkStatus();
  };
  runtime::Decode decode;
  const char *cacheSetting = std::getenv("KILN_KV_CACHE");
  if (!(cacheSetting && std::string(cacheSetting) == "0"))
    decode = [&](const std::vector<int64_t> &ids, size_t past,
                 const std::vector<int64_t> &padding,
                 std::vector<float> &logits) -> absl::Status {
      std::vector<HostTensor> inputs(2), outputs(1);
      inputs[0].dtype = KILN_DTYPE_I64;
      inputs[0].shape = {batch, 1};
      inputs[0].data.resize(ids.size() * sizeof(int64_t));
      std::memcpy(inputs[0].data.data(), ids.data(), inputs[0].data.size());
      inputs[1].dtype = KILN_DTYPE_I8;
      inputs[1].shape = {int64_t(past), 0};
      if (takesPadding)
        inputs.push_back(paddingTensor(padding));
      outputs[0].dtype = KILN_DTYPE_F32;
      outputs[0].shape = {batch, 1, int64_t(vocab)};
      outputs[0].data.resize(size_t(batch) * vocab * sizeof(float));
      SimReport report;
      std::string error = runOnSimulator(path, model->decodeIndex, inputs,
                                         outputs, report, simOptions);
      if (!error.empty())
        return absl::InternalError(error);
      std::memcpy(logits.data(), outputs[0].data.data(),
                  size_t(batch) * vocab * sizeof(float));
      return absl::OkStatus();
    };
  runtime::Generator generator(*model, o.sampling, forward, decode);
  if (o.promptRows.size() + o.promptTexts.size() > 1) {
    RowsDriver d;
    d.feedRows = [&](const auto &rows) { return generator.feedRows(rows); };
    d.stepRows = [&] { return generator.stepRows(); };
    d.full = [&] { return generator.full(); };
    d.isEos = [&](int64_t t) { return generator.isEos(t); };
    d.logits = [&] { return generator.logits(); };
    if (auto tokenizer = model->tokenizer) {
      d.encode = [tokenizer](const std::string &text) {
        return tokenizer->encode(text);
      };
      d.decode = [tokenizer](const std::vector<int64_t> &ids) {
        return tokenizer->decode(ids.data(), ids.size(),
                                 /*continuation=*/true);
      };
    }
    return runRows(o, o.artifact, d);
  }
  Loop loop{o, o.promptIds};
  if (o.havePrompt) {
    if (!model->tokenizer)
      return fail("'" + o.artifact + "' carries no tokenizer (its checkpoint "
                  "folder had no tokenizer.json), so it cannot take a text "
                  "prompt; give the prompt as token ids with --prompt-ids");
    auto ids = model->tokenizer->encode(o.prompt);
    if (!ids.ok())
      return fail("--prompt: " + std::string(ids.status().message()));
    loop.promptIds = *ids;
  }
  if (model->tokenizer)
    loop.decode = [tokenizer = model->tokenizer](
                      const std::vector<int64_t> &ids, bool raw) {
      return raw ? tokenizer->decodeBytes(ids.data(), ids.size(),
                                          /*continuation=*/true)
                 : tokenizer->decode(ids.data(), ids.size(),
                                     /*continuation=*/true);
    };
  if (absl::Status st =
          generator.feed(loop.promptIds.data(), loop.promptIds.size());
      !st.ok())
    return fail(std::string(st.message()));
  return loop.run(
      [&](int64_t &token, std::string &error) {
        auto next = generator.step();
        if (!next.ok()) {
          error = std::string(next.status().message());
          return false;
        }
        token = *next;
        loop.recordLogits(generator.logits().data(), generator.logits().size(),
                          generator.rows());
        return true;
      },
      [&](int64_t token) { return generator.isEos(token); },
      [&] { return generator.full(); });
}

/// Frees a C API object at scope exit.
template <typename T, void (*Free)(T *)> struct Owned {
  T *p = nullptr;
  ~Owned() {
    if (p)
      Free(p);
  }
};

int failWith(kiln_status status) {
  std::string message = kiln_status_message(status);
  kiln_status_free(status);
  return fail(message);
}

int generateOnRuntime(const GenerateOptions &o) {
  Owned<kiln_module, kiln_module_free> module;
  if (kiln_status s = kiln_module_load_file_ex(
          o.artifact.c_str(),
          o.skipWeightChecksums ? KILN_LOAD_SKIP_WEIGHT_CHECKSUMS : 0,
          &module.p))
    return failWith(s);
  Owned<kiln_session, kiln_session_free> session;
  if (kiln_status s =
          kiln_session_create(module.p, o.device.c_str(), &session.p))
    return failWith(s);
  if (kiln_status s = kiln_session_set_threads(session.p, o.threads))
    return failWith(s);
  kiln_sampling sampling{float(o.sampling.temperature),
                         int32_t(o.sampling.topK), float(o.sampling.topP),
                         o.sampling.seed};
  Owned<kiln_generator, kiln_generator_free> generator;
  if (kiln_status s =
          kiln_generator_create(session.p, &sampling, &generator.p))
    return failWith(s);
  if (o.promptRows.size() + o.promptTexts.size() > 1) {
    kiln_generator *g = generator.p;
    auto status = [](kiln_status s) {
      if (!s)
        return absl::OkStatus();
      std::string message = kiln_status_message(s);
      kiln_status_free(s);
      return absl::InvalidArgumentError(message);
    };
    RowsDriver d;
    d.feedRows = [&](const std::vector<std::vector<int64_t>> &rows) {
      std::vector<const int64_t *> ids;
      std::vector<size_t> counts;
      for (const auto &row : rows) {
        ids.push_back(row.data());
        counts.push_back(row.size());
      }
      return status(
          kiln_generator_feed_rows(g, ids.data(), counts.data(), rows.size()));
    };
    d.stepRows = [&]() -> absl::StatusOr<std::vector<int64_t>> {
      std::vector<int64_t> tokens(kiln_generator_rows(g));
      if (absl::Status st = status(
              kiln_generator_step_rows(g, tokens.data(), tokens.size()));
          !st.ok())
        return st;
      return tokens;
    };
    d.full = [&] { return kiln_generator_full(g) != 0; };
    d.isEos = [&](int64_t token) {
      for (size_t i = 0, e = kiln_generator_eos_count(g); i < e; ++i)
        if (kiln_generator_eos(g, i) == token)
          return true;
      return false;
    };
    d.logits = [&] {
      size_t count = 0;
      const float *logits = kiln_generator_logits(g, &count);
      return std::vector<float>(logits, logits + count);
    };
    if (kiln_generator_has_tokenizer(g)) {
      // Text in through a scratch generator of the same session would
      // reset this one's state: the tokenizer's ids come from feed_text on
      // this generator, read back, then reset.
      d.encode = [&](const std::string &text)
          -> absl::StatusOr<std::vector<int64_t>> {
        kiln_generator_reset(g);
        if (absl::Status st = status(
                kiln_generator_feed_text(g, text.data(), text.size()));
            !st.ok())
          return st;
        size_t count = 0;
        const int64_t *ids = kiln_generator_tokens(g, &count);
        std::vector<int64_t> out(ids, ids + count);
        kiln_generator_reset(g);
        return out;
      };
      d.decode = [&](const std::vector<int64_t> &ids) {
        size_t size = 0;
        std::string text;
        if (kiln_status s = kiln_generator_decode(
                g, ids.data(), ids.size(), KILN_DECODE_CONTINUATION, nullptr,
                0, &size)) {
          kiln_status_free(s);
          return text;
        }
        text.resize(size);
        if (kiln_status s = kiln_generator_decode(
                g, ids.data(), ids.size(), KILN_DECODE_CONTINUATION,
                text.data(), size, &size))
          kiln_status_free(s);
        return text;
      };
    }
    return runRows(o, o.artifact, d);
  }
  Loop loop{o, o.promptIds};
  if (kiln_generator_has_tokenizer(generator.p))
    loop.decode = [g = generator.p](const std::vector<int64_t> &ids,
                                    bool raw) {
      size_t size = 0;
      std::string text;
      // New tokens continue the prompt's text.
      int flags = KILN_DECODE_CONTINUATION | (raw ? KILN_DECODE_RAW : 0);
      if (kiln_status s = kiln_generator_decode(g, ids.data(), ids.size(),
                                                flags, nullptr, 0, &size)) {
        kiln_status_free(s);
        return text;
      }
      text.resize(size);
      if (kiln_status s = kiln_generator_decode(g, ids.data(), ids.size(),
                                                flags, text.data(), size,
                                                &size))
        kiln_status_free(s);
      return text;
    };
  if (o.havePrompt) {
    if (kiln_status s = kiln_generator_feed_text(
            generator.p, o.prompt.data(), o.prompt.size())) {
      std::string message = kiln_status_message(s);
      kiln_status_free(s);
      return fail("--prompt: " + message);
    }
    size_t count = 0;
    const int64_t *ids = kiln_generator_tokens(generator.p, &count);
    loop.promptIds.assign(ids, ids + count);
  } else if (kiln_status s = kiln_generator_feed_ids(
                 generator.p, o.promptIds.data(), o.promptIds.size())) {
    return failWith(s);
  }
  return loop.run(
      [&](int64_t &token, std::string &error) {
        if (kiln_status s = kiln_generator_step(generator.p, &token, nullptr)) {
          error = kiln_status_message(s);
          kiln_status_free(s);
          return false;
        }
        size_t count = 0;
        const float *logits = kiln_generator_logits(generator.p, &count);
        loop.recordLogits(logits, count, kiln_generator_rows(generator.p));
        return true;
      },
      [&](int64_t token) {
        for (size_t i = 0, e = kiln_generator_eos_count(generator.p); i < e;
             ++i)
          if (kiln_generator_eos(generator.p, i) == token)
            return true;
        return false;
      },
      [&] { return kiln_generator_full(generator.p) != 0; });
}

} // namespace

int runGenerate(const Args &args) {
  std::string error;
  std::optional<GenerateOptions> parsed = parse(args, error);
  if (!parsed)
    return fail(error);
  if (parsed->device == "sim")
    return generateOnSimulator(*parsed);
  return generateOnRuntime(*parsed);
}

} // namespace kiln::driver

namespace kiln::driver {

/// kiln tokenize: the artifact's tokenizer alone, for checking prompts.
int runTokenize(const Args &args) {
  std::string artifactPath, text, error;
  std::vector<int64_t> ids;
  bool haveText = false, haveIds = false;
  for (size_t i = 0; i < args.size() && error.empty(); ++i) {
    std::string value;
    if (takeOption(args, i, "--text", value, error)) {
      haveText = true;
      text = value;
    } else if (takeOption(args, i, "--text-file", value, error)) {
      haveText = true;
      auto buffer = llvm::MemoryBuffer::getFile(value, /*IsText=*/false,
                                                /*RequiresNullTerminator=*/false);
      if (!buffer)
        return fail("cannot read '" + value + "': " +
                    buffer.getError().message());
      text = (*buffer)->getBuffer().str();
    } else if (takeOption(args, i, "--ids", value, error)) {
      haveIds = true;
      if (!parseIds(value, ids))
        error = "--ids expects comma-separated token ids, got '" + value + "'";
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::fputs("usage: kiln tokenize OUT.kiln --text TEXT | --text-file F "
                 "| --ids 1,2,3\n\nEncodes text to token ids, or decodes ids "
                 "to text, with the tokenizer the artifact carries; prints "
                 "one JSON object ({\"ids\": [...]} or {\"text\": ...}).\n",
                 stdout);
      return 0;
    } else if (!args[i].empty() && args[i][0] == '-') {
      error = "unknown option '" + args[i] + "' for kiln tokenize";
    } else if (artifactPath.empty()) {
      artifactPath = args[i];
    } else {
      error = "unexpected argument '" + args[i] + "'";
    }
  }
  if (!error.empty())
    return fail(error);
  if (artifactPath.empty() || haveText == haveIds)
    return fail("usage: kiln tokenize OUT.kiln --text TEXT | --text-file F | "
                "--ids 1,2,3");
  auto loaded = runtime::Artifact::loadFile(artifactPath);
  if (!loaded.ok())
    return fail(std::string(loaded.status().message()));
  auto model = runtime::generationModel(**loaded);
  if (!model.ok())
    return fail(std::string(model.status().message()));
  if (!model->tokenizer)
    return fail("'" + artifactPath + "' carries no tokenizer (its checkpoint "
                "folder had no tokenizer.json)");
  llvm::json::Object object;
  if (haveText) {
    auto encoded = model->tokenizer->encode(text);
    if (!encoded.ok())
      return fail(std::string(encoded.status().message()));
    object["ids"] = llvm::json::Array(*encoded);
  } else {
    object["text"] = model->tokenizer->decode(ids.data(), ids.size());
  }
  llvm::outs() << llvm::json::Value(std::move(object)) << "\n";
  return 0;
}

} // namespace kiln::driver
