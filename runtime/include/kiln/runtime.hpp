// Kiln runtime: header-only C++ wrapper over runtime.h. Owns handles with
// RAII and turns a kiln_status into a std::string (empty on success).
#ifndef KILN_RUNTIME_HPP
#define KILN_RUNTIME_HPP

#include "kiln/runtime.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::rt {

inline std::string take(kiln_status status) {
  if (!status)
    return {};
  std::string message = kiln_status_message(status);
  kiln_status_free(status);
  return message;
}

struct TensorInfo {
  std::string name;
  kiln_tensor tensor{};  // data is null
  size_t numElements() const {
    size_t n = 1;
    for (int i = 0; i < tensor.rank; ++i)
      n *= static_cast<size_t>(tensor.shape[i]);
    return n;
  }
};

class Module {
public:
  /// Loads `path`; on failure returns null and sets `error`. `flags`:
  /// KILN_LOAD_* (kiln/runtime.h).
  static std::unique_ptr<Module> load(const std::string &path,
                                      std::string &error,
                                      uint32_t flags = 0) {
    kiln_module *raw = nullptr;
    error = take(kiln_module_load_file_ex(path.c_str(), flags, &raw));
    if (!error.empty())
      return nullptr;
    return std::unique_ptr<Module>(new Module(raw));
  }
  ~Module() { kiln_module_free(module_); }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;

  kiln_module *get() const { return module_; }
  std::string target() const { return kiln_module_target(module_); }
  size_t entryCount() const { return kiln_module_entry_count(module_); }
  std::string entryName(size_t e) const {
    return kiln_module_entry_name(module_, e);
  }
  std::vector<TensorInfo> inputs(size_t e) const {
    return infos(e, kiln_module_input_count(module_, e), true);
  }
  std::vector<TensorInfo> outputs(size_t e) const {
    return infos(e, kiln_module_output_count(module_, e), false);
  }
  /// The outputs of entry point `e` for these inputs (dtype, shape and
  /// size; their symbolic dims resolved); empty with `error` set when the
  /// inputs do not fit.
  std::vector<TensorInfo> outputShapes(size_t e,
                                       const std::vector<kiln_tensor> &inputs,
                                       std::string &error) const {
    std::vector<TensorInfo> result = outputs(e);
    std::vector<kiln_tensor> raw;
    for (const TensorInfo &info : result)
      raw.push_back(info.tensor);
    error = take(kiln_module_output_shapes(
        module_, kiln_module_entry_name(module_, e), inputs.data(),
        inputs.size(), raw.data(), raw.size()));
    if (!error.empty())
      return {};
    for (size_t i = 0; i < raw.size(); ++i)
      result[i].tensor = raw[i];
    return result;
  }
  /// Name and bounds of the symbolic dim at `axis` of input `input`;
  /// false for a static dim.
  bool inputDim(size_t e, size_t input, int axis, std::string &name,
                int64_t &min, int64_t &max) const {
    int symbol = kiln_module_input_dim_symbol(module_, e, input, axis);
    const char *raw = nullptr;
    if (symbol < 0 ||
        kiln_module_dim_info(module_, e, symbol, &raw, &min, &max))
      return false;
    name = raw ? raw : "";
    return true;
  }
  /// The kernel each launch of entry point `e` runs ("(copy)" for copies).
  std::vector<std::string> launchKernels(size_t e) const {
    std::vector<std::string> names;
    for (size_t i = 0, n = kiln_module_launch_count(module_, e); i < n; ++i)
      names.push_back(kiln_module_launch_kernel(module_, e, i));
    return names;
  }

private:
  explicit Module(kiln_module *m) : module_(m) {}
  std::vector<TensorInfo> infos(size_t e, size_t n, bool input) const {
    std::vector<TensorInfo> result(n);
    for (size_t i = 0; i < n; ++i) {
      const char *name = nullptr;
      take(input ? kiln_module_input_info(module_, e, i, &result[i].tensor,
                                          &name)
                 : kiln_module_output_info(module_, e, i, &result[i].tensor,
                                           &name));
      result[i].name = name ? name : "";
    }
    return result;
  }
  kiln_module *module_;
};

class Session {
public:
  static std::unique_ptr<Session> create(Module &module,
                                         const std::string &device,
                                         std::string &error) {
    kiln_session *raw = nullptr;
    error = take(kiln_session_create(module.get(), device.c_str(), &raw));
    if (!error.empty())
      return nullptr;
    return std::unique_ptr<Session>(new Session(raw));
  }
  ~Session() { kiln_session_free(session_); }
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  std::string run(const std::string &entry,
                  const std::vector<kiln_tensor> &inputs,
                  std::vector<kiln_tensor> &outputs) {
    return take(kiln_session_run(session_,
                                 entry.empty() ? nullptr : entry.c_str(),
                                 inputs.data(), inputs.size(), outputs.data(),
                                 outputs.size()));
  }

  /// Mean time per run of each launch over `iterations` runs (ms; CUDA
  /// events on a GPU, wall clock on the CPU).
  std::string profile(const std::string &entry,
                      const std::vector<kiln_tensor> &inputs,
                      std::vector<kiln_tensor> &outputs, int iterations,
                      std::vector<double> &launchMs) {
    size_t count = 0;
    std::string error = take(kiln_session_profile(
        session_, entry.empty() ? nullptr : entry.c_str(), inputs.data(),
        inputs.size(), outputs.data(), outputs.size(), iterations, nullptr, 0,
        &count));
    if (!error.empty())
      return error;
    launchMs.assign(count, 0.0);
    return take(kiln_session_profile(
        session_, entry.empty() ? nullptr : entry.c_str(), inputs.data(),
        inputs.size(), outputs.data(), outputs.size(), iterations,
        launchMs.data(), launchMs.size(), &count));
  }

  /// The threads runs use on the CPU (0: one per CPU the process may use).
  std::string setThreads(int threads) {
    return take(kiln_session_set_threads(session_, threads));
  }
  int threads() const { return kiln_session_threads(session_); }

  kiln_session *get() { return session_; }

private:
  explicit Session(kiln_session *s) : session_(s) {}
  kiln_session *session_;
};

/// Text generation with a decoder model compiled from a checkpoint.
class Generator {
public:
  /// `sampling` null: greedy. The session must outlive the generator.
  static std::unique_ptr<Generator> create(Session &session,
                                           const kiln_sampling *sampling,
                                           std::string &error) {
    kiln_generator *raw = nullptr;
    error = take(kiln_generator_create(session.get(), sampling, &raw));
    if (!error.empty())
      return nullptr;
    return std::unique_ptr<Generator>(new Generator(raw));
  }
  ~Generator() { kiln_generator_free(generator_); }
  Generator(const Generator &) = delete;
  Generator &operator=(const Generator &) = delete;

  std::string feed(const std::vector<int64_t> &ids) {
    return take(kiln_generator_feed_ids(generator_, ids.data(), ids.size()));
  }
  /// The next token; `eos` says whether it ends the sequence.
  std::string step(int64_t &token, bool &eos) {
    int isEos = 0;
    std::string error = take(kiln_generator_step(generator_, &token, &isEos));
    eos = isEos != 0;
    return error;
  }
  /// Steps until end of sequence, `maxNewTokens`, the model's longest
  /// sequence, or `onToken` returning false; appends the tokens to `out`.
  template <typename F>
  std::string run(size_t maxNewTokens, F onToken, size_t *generated = nullptr) {
    struct Thunk {
      static int call(int64_t token, void *user) {
        return (*static_cast<F *>(user))(token) ? 0 : 1;
      }
    };
    return take(kiln_generator_run(generator_, maxNewTokens, &Thunk::call,
                                   &onToken, generated));
  }
  void reset() { kiln_generator_reset(generator_); }
  std::vector<int64_t> tokens() const {
    size_t count = 0;
    const int64_t *ids = kiln_generator_tokens(generator_, &count);
    return std::vector<int64_t>(ids, ids + count);
  }

private:
  explicit Generator(kiln_generator *g) : generator_(g) {}
  kiln_generator *generator_;
};

} // namespace kiln::rt

#endif // KILN_RUNTIME_HPP
