// The C API of the Kiln runtime.
#include "kiln/runtime.h"

#include "artifact.h"
#include "backend.h"
#include "dims.h"
#include "generation.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

struct kiln_status_t {
  std::string message;
};

struct kiln_module_t {
  std::unique_ptr<kiln::runtime::Artifact> artifact;
};

struct kiln_session_t {
  kiln_module *module = nullptr;
  std::unique_ptr<kiln::runtime::Backend> backend;
  /// Runs so far (any entry point): a generator's KV cache is its own only
  /// while nothing else ran on the session since its last run.
  uint64_t runs = 0;
};

namespace {

using kiln::runtime::Artifact;

kiln_status makeStatus(std::string message) {
  return new (std::nothrow) kiln_status_t{std::move(message)};
}

kiln_status fromAbsl(const absl::Status &status) {
  return status.ok() ? nullptr : makeStatus(std::string(status.message()));
}

std::string describe(kiln_dtype dtype, const int64_t *shape, int rank) {
  std::string s = absl::StrCat(kiln_dtype_name(dtype), "[");
  for (int i = 0; i < rank; ++i)
    absl::StrAppend(&s, i ? "," : "", shape[i]);
  return s + "]";
}

std::string describe(const kiln::artifact::TensorSpec &spec) {
  return describe(static_cast<kiln_dtype>(spec.dtype()), spec.shape().data(),
                  spec.shape_size());
}

const kiln::artifact::EntryPoint *findEntry(const kiln_module *module,
                                            const char *name) {
  const auto &m = module->artifact->manifest();
  if (m.entry_points_size() == 0)
    return nullptr;
  if (!name)
    return &m.entry_points(0);
  for (const auto &entry : m.entry_points())
    if (entry.name() == name)
      return &entry;
  return nullptr;
}

kiln_status fillInfo(const kiln::artifact::EntryPoint &entry,
                     const kiln::artifact::TensorSpec &spec, kiln_tensor *info,
                     const char **name) {
  if (!info)
    return makeStatus("kiln_module_*_info: info must not be NULL");
  std::memset(info, 0, sizeof(*info));
  info->dtype = static_cast<kiln_dtype>(spec.dtype());
  info->rank = spec.shape_size();
  for (int i = 0; i < spec.shape_size(); ++i)
    info->shape[i] = spec.shape(i);
  // Checked when the artifact loaded.
  info->size_bytes = *kiln::runtime::tensorBytes(
      spec, *kiln::runtime::checkDimProgram(entry));
  if (name)
    *name = spec.name().c_str();
  return nullptr;
}

// Checks that a caller's tensor matches the entry point's spec.
kiln_status checkTensor(const char *role, size_t index,
                        const kiln::artifact::TensorSpec &spec,
                        const kiln_tensor &tensor,
                        const std::vector<int64_t> &dims) {
  std::vector<int64_t> shape;
  for (int i = 0; i < spec.shape_size(); ++i)
    shape.push_back(kiln::runtime::specDim(spec, i, dims));
  bool same = tensor.dtype == static_cast<kiln_dtype>(spec.dtype()) &&
              tensor.rank == spec.shape_size();
  for (int i = 0; same && i < spec.shape_size(); ++i)
    same = tensor.shape[i] == shape[i];
  if (!same)
    return makeStatus(absl::StrCat(
        role, " #", index, " '", spec.name(), "' must be ",
        describe(static_cast<kiln_dtype>(spec.dtype()), shape.data(),
                 spec.shape_size()),
        ", got ",
        describe(tensor.dtype, tensor.shape,
                 std::min<int>(std::max(tensor.rank, 0), KILN_MAX_RANK))));
  absl::StatusOr<uint64_t> specBytes = kiln::runtime::tensorBytes(spec, dims);
  if (!specBytes.ok())
    return fromAbsl(specBytes.status());
  uint64_t bytes = *specBytes;
  if (tensor.size_bytes < bytes || (!tensor.data && bytes))
    return makeStatus(absl::StrCat(role, " #", index, " '", spec.name(),
                                   "' needs ", bytes, " bytes of data, got ",
                                   tensor.size_bytes));
  return nullptr;
}

}  // namespace

extern "C" {

const char *kiln_status_message(kiln_status status) {
  return status ? status->message.c_str() : "ok";
}

void kiln_status_free(kiln_status status) { delete status; }

size_t kiln_dtype_size(kiln_dtype dtype) {
  return kiln::runtime::dtypeSize(static_cast<kiln::artifact::DType>(dtype));
}

const char *kiln_dtype_name(kiln_dtype dtype) {
  switch (dtype) {
  case KILN_DTYPE_F32: return "f32";
  case KILN_DTYPE_F16: return "f16";
  case KILN_DTYPE_BF16: return "bf16";
  case KILN_DTYPE_F64: return "f64";
  case KILN_DTYPE_I8: return "i8";
  case KILN_DTYPE_I16: return "i16";
  case KILN_DTYPE_I32: return "i32";
  case KILN_DTYPE_I64: return "i64";
  case KILN_DTYPE_BOOL: return "bool";
  case KILN_DTYPE_U8: return "u8";
  case KILN_DTYPE_U16: return "u16";
  case KILN_DTYPE_U32: return "u32";
  case KILN_DTYPE_U64: return "u64";
  case KILN_DTYPE_F8E4M3FN: return "f8e4m3fn";
  case KILN_DTYPE_F8E4M3FNUZ: return "f8e4m3fnuz";
  case KILN_DTYPE_F8E5M2: return "f8e5m2";
  case KILN_DTYPE_F8E5M2FNUZ: return "f8e5m2fnuz";
  case KILN_DTYPE_F8E8M0: return "f8e8m0";
  case KILN_DTYPE_F4E2M1: return "f4e2m1";
  case KILN_DTYPE_I4: return "i4";
  case KILN_DTYPE_U4: return "u4";
  case KILN_DTYPE_I2: return "i2";
  case KILN_DTYPE_U2: return "u2";
  default: return "invalid";
  }
}

namespace {

constexpr uint32_t kKnownLoadFlags = KILN_LOAD_SKIP_WEIGHT_CHECKSUMS;

kiln::runtime::LoadOptions loadOptions(uint32_t flags) {
  kiln::runtime::LoadOptions options;
  options.verifyWeights = !(flags & KILN_LOAD_SKIP_WEIGHT_CHECKSUMS);
  return options;
}

} // namespace

kiln_status kiln_module_load_file_ex(const char *path, uint32_t flags,
                                     kiln_module **out) {
  if (!path || !out)
    return makeStatus("kiln_module_load_file(_ex): path and out must not be "
                      "NULL");
  *out = nullptr;
  if (flags & ~kKnownLoadFlags)
    return makeStatus(absl::StrCat("kiln_module_load_file_ex: unknown flags ",
                                   flags & ~kKnownLoadFlags));
  auto artifact = Artifact::loadFile(path, loadOptions(flags));
  if (!artifact.ok())
    return fromAbsl(artifact.status());
  *out = new kiln_module_t{std::move(*artifact)};
  return nullptr;
}

kiln_status kiln_module_load_memory_ex(const void *data, size_t size,
                                       uint32_t flags, kiln_module **out) {
  if ((!data && size) || !out)
    return makeStatus("kiln_module_load_memory(_ex): data and out must not "
                      "be NULL");
  *out = nullptr;
  if (flags & ~kKnownLoadFlags)
    return makeStatus(absl::StrCat(
        "kiln_module_load_memory_ex: unknown flags ", flags & ~kKnownLoadFlags));
  auto artifact =
      Artifact::loadMemory(data, size, "<memory>", loadOptions(flags));
  if (!artifact.ok())
    return fromAbsl(artifact.status());
  *out = new kiln_module_t{std::move(*artifact)};
  return nullptr;
}

kiln_status kiln_module_load_file(const char *path, kiln_module **out) {
  return kiln_module_load_file_ex(path, 0, out);
}

kiln_status kiln_module_load_memory(const void *data, size_t size,
                                    kiln_module **out) {
  return kiln_module_load_memory_ex(data, size, 0, out);
}

void kiln_module_free(kiln_module *module) { delete module; }

const char *kiln_module_target(const kiln_module *module) {
  return module->artifact->manifest().target().c_str();
}

size_t kiln_module_entry_count(const kiln_module *module) {
  return module->artifact->manifest().entry_points_size();
}

const char *kiln_module_entry_name(const kiln_module *module, size_t entry) {
  const auto &m = module->artifact->manifest();
  return entry < static_cast<size_t>(m.entry_points_size())
             ? m.entry_points(entry).name().c_str()
             : nullptr;
}

size_t kiln_module_input_count(const kiln_module *module, size_t entry) {
  const auto &m = module->artifact->manifest();
  return entry < static_cast<size_t>(m.entry_points_size())
             ? m.entry_points(entry).inputs_size()
             : 0;
}

size_t kiln_module_output_count(const kiln_module *module, size_t entry) {
  const auto &m = module->artifact->manifest();
  return entry < static_cast<size_t>(m.entry_points_size())
             ? m.entry_points(entry).outputs_size()
             : 0;
}

kiln_status kiln_module_input_info(const kiln_module *module, size_t entry,
                                   size_t index, kiln_tensor *info,
                                   const char **name) {
  if (index >= kiln_module_input_count(module, entry))
    return makeStatus(absl::StrCat("no input #", index, " in entry point #",
                                   entry));
  const auto &e = module->artifact->manifest().entry_points(entry);
  return fillInfo(e, e.inputs(index), info, name);
}

kiln_status kiln_module_output_info(const kiln_module *module, size_t entry,
                                    size_t index, kiln_tensor *info,
                                    const char **name) {
  if (index >= kiln_module_output_count(module, entry))
    return makeStatus(absl::StrCat("no output #", index, " in entry point #",
                                   entry));
  const auto &e = module->artifact->manifest().entry_points(entry);
  return fillInfo(e, e.outputs(index), info, name);
}

kiln_status kiln_module_output_shapes(const kiln_module *module,
                                      const char *entryName,
                                      const kiln_tensor *inputs,
                                      size_t inputCount, kiln_tensor *outputs,
                                      size_t outputCount) {
  if (!module || (inputCount && !inputs) || (outputCount && !outputs))
    return makeStatus("kiln_module_output_shapes: module, inputs and outputs "
                      "must not be NULL");
  const auto *entry = findEntry(module, entryName);
  if (!entry)
    return makeStatus(absl::StrCat("no entry point named '",
                                   entryName ? entryName : "<first>", "'"));
  if (inputCount != static_cast<size_t>(entry->inputs_size()) ||
      outputCount != static_cast<size_t>(entry->outputs_size()))
    return makeStatus(absl::StrCat(
        "entry point '", entry->name(), "' takes ", entry->inputs_size(),
        " inputs and ", entry->outputs_size(), " outputs, got ", inputCount,
        " and ", outputCount));
  auto values = kiln::runtime::bindDims(*entry, inputs);
  if (!values.ok())
    return fromAbsl(values.status());
  for (size_t k = 0; k < outputCount; ++k) {
    const auto &spec = entry->outputs(k);
    outputs[k].dtype = static_cast<kiln_dtype>(spec.dtype());
    outputs[k].rank = spec.shape_size();
    for (int i = 0; i < spec.shape_size(); ++i)
      outputs[k].shape[i] = kiln::runtime::specDim(spec, i, *values);
    auto bytes = kiln::runtime::tensorBytes(spec, *values);
    if (!bytes.ok())
      return fromAbsl(bytes.status());
    outputs[k].size_bytes = *bytes;
  }
  return nullptr;
}

size_t kiln_module_dim_count(const kiln_module *module, size_t entry) {
  const auto &m = module->artifact->manifest();
  return entry < static_cast<size_t>(m.entry_points_size())
             ? m.entry_points(entry).dims_size()
             : 0;
}

int kiln_module_input_dim_symbol(const kiln_module *module, size_t entry,
                                 size_t input, int axis) {
  if (input >= kiln_module_input_count(module, entry))
    return -1;
  const auto &e = module->artifact->manifest().entry_points(entry);
  const auto &spec = e.inputs(input);
  if (axis < 0 || axis >= spec.dim_exprs_size() || spec.dim_exprs(axis) < 0)
    return -1;
  // Inputs' symbolic dims are SYMBOL expressions (checked at load).
  return static_cast<int>(e.dim_exprs(spec.dim_exprs(axis)).value());
}

kiln_status kiln_module_dim_info(const kiln_module *module, size_t entry,
                                 size_t index, const char **name, int64_t *min,
                                 int64_t *max) {
  if (index >= kiln_module_dim_count(module, entry))
    return makeStatus(absl::StrCat("no symbolic dim #", index,
                                   " in entry point #", entry));
  const auto &dim =
      module->artifact->manifest().entry_points(entry).dims(index);
  if (name)
    *name = dim.name().c_str();
  if (min)
    *min = dim.min();
  if (max)
    *max = dim.max();
  return nullptr;
}

kiln_status kiln_session_create(kiln_module *module, const char *device,
                                kiln_session **out) {
  if (!module || !out)
    return makeStatus("kiln_session_create: module and out must not be NULL");
  *out = nullptr;
  auto backend = kiln::runtime::createBackend(*module->artifact,
                                              device ? device : "cpu");
  if (!backend.ok())
    return fromAbsl(backend.status());
  *out = new kiln_session_t{module, std::move(*backend)};
  return nullptr;
}

void kiln_session_free(kiln_session *session) { delete session; }

kiln_status kiln_session_set_threads(kiln_session *session, int threads) {
  if (!session)
    return makeStatus("kiln_session_set_threads: session must not be NULL");
  return fromAbsl(session->backend->setThreads(threads));
}

int kiln_session_threads(const kiln_session *session) {
  return session ? session->backend->threads() : 0;
}

namespace {

/// Checks a run's arguments; returns the entry point or the error.
kiln_status validateRun(kiln_session *session, const char *entryName,
                        const kiln_tensor *inputs, size_t inputCount,
                        kiln_tensor *outputs, size_t outputCount,
                        const kiln::artifact::EntryPoint **out,
                        std::vector<int64_t> *dims) {
  if (!session)
    return makeStatus("kiln_session_run: session must not be NULL");
  const Artifact &artifact = *session->module->artifact;
  const auto *entry = findEntry(session->module, entryName);
  if (!entry)
    return makeStatus(absl::StrCat("no entry point named '",
                                   entryName ? entryName : "<first>",
                                   "' in '", artifact.origin(), "'"));
  if (inputCount != static_cast<size_t>(entry->inputs_size()) ||
      outputCount != static_cast<size_t>(entry->outputs_size()))
    return makeStatus(absl::StrCat(
        "entry point '", entry->name(), "' takes ", entry->inputs_size(),
        " inputs and ", entry->outputs_size(), " outputs, got ", inputCount,
        " and ", outputCount));
  if (entry->dim_exprs_size() > 0) {
    // Symbolic dims: bound from the inputs' shapes, then every input and
    // output is checked against its shape for this run.
    if (inputCount && !inputs)
      return makeStatus("kiln_session_run: inputs must not be NULL");
    auto values = kiln::runtime::bindDims(*entry, inputs);
    if (!values.ok())
      return fromAbsl(values.status());
    if (absl::Status st = kiln::runtime::checkRunFits(*entry, *values);
        !st.ok())
      return fromAbsl(st);
    *dims = std::move(*values);
  }
  for (size_t i = 0; i < inputCount; ++i)
    if (kiln_status s =
            checkTensor("input", i, entry->inputs(i), inputs[i], *dims))
      return s;
  for (size_t i = 0; i < outputCount; ++i)
    if (kiln_status s =
            checkTensor("output", i, entry->outputs(i), outputs[i], *dims))
      return s;
  *out = entry;
  return nullptr;
}

}  // namespace

kiln_status kiln_session_run(kiln_session *session, const char *entryName,
                             const kiln_tensor *inputs, size_t inputCount,
                             kiln_tensor *outputs, size_t outputCount) {
  const kiln::artifact::EntryPoint *entry = nullptr;
  std::vector<int64_t> dims;
  if (kiln_status s = validateRun(session, entryName, inputs, inputCount,
                                  outputs, outputCount, &entry, &dims))
    return s;
  ++session->runs;
  return fromAbsl(session->backend->run(*entry, dims, inputs, outputs));
}

kiln_status kiln_session_run_async(kiln_session *session,
                                   const char *entryName,
                                   const kiln_tensor *inputs,
                                   size_t inputCount, kiln_tensor *outputs,
                                   size_t outputCount) {
  const kiln::artifact::EntryPoint *entry = nullptr;
  std::vector<int64_t> dims;
  if (kiln_status s = validateRun(session, entryName, inputs, inputCount,
                                  outputs, outputCount, &entry, &dims))
    return s;
  ++session->runs;
  return fromAbsl(session->backend->runAsync(*entry, dims, inputs, outputs));
}

kiln_status kiln_session_synchronize(kiln_session *session) {
  if (!session)
    return makeStatus("kiln_session_synchronize: session must not be NULL");
  return fromAbsl(session->backend->synchronize());
}

kiln_status kiln_session_profile(kiln_session *session, const char *entryName,
                                 const kiln_tensor *inputs, size_t inputCount,
                                 kiln_tensor *outputs, size_t outputCount,
                                 int iterations, double *launchMs,
                                 size_t capacity, size_t *launchCount) {
  const kiln::artifact::EntryPoint *entry = nullptr;
  std::vector<int64_t> dims;
  if (kiln_status s = validateRun(session, entryName, inputs, inputCount,
                                  outputs, outputCount, &entry, &dims))
    return s;
  if (iterations < 1 || !launchCount || (capacity && !launchMs))
    return makeStatus("kiln_session_profile: iterations must be positive "
                      "and launch_count (and launch_ms) not NULL");
  std::vector<double> times;
  ++session->runs;
  if (absl::Status st = session->backend->profile(*entry, dims, inputs,
                                                  outputs, iterations, times);
      !st.ok())
    return fromAbsl(st);
  *launchCount = times.size();
  for (size_t i = 0; i < times.size() && i < capacity; ++i)
    launchMs[i] = times[i] / iterations;
  return nullptr;
}

size_t kiln_module_launch_count(const kiln_module *module, size_t entry) {
  if (!module || entry >= kiln_module_entry_count(module))
    return 0;
  return module->artifact->manifest().entry_points(entry).launches_size();
}

const char *kiln_module_launch_kernel(const kiln_module *module, size_t entry,
                                      size_t launch) {
  if (launch >= kiln_module_launch_count(module, entry))
    return nullptr;
  const auto &m = module->artifact->manifest();
  const auto &l = m.entry_points(entry).launches(launch);
  if (l.kind() == kiln::artifact::Launch::COPY)
    return "(copy)";
  if (l.kind() == kiln::artifact::Launch::STRIDED_COPY)
    return "(strided copy)";
  return m.kernels(l.kernel()).name().c_str();
}

}  // extern "C"

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

struct kiln_generator_t {
  std::unique_ptr<kiln::runtime::Generator> generator;
};

kiln_status kiln_generator_create(kiln_session *session,
                                  const kiln_sampling *sampling,
                                  kiln_generator **out) {
  if (!session || !out)
    return makeStatus(
        "kiln_generator_create: session and out must not be NULL");
  *out = nullptr;
  auto model = kiln::runtime::generationModel(*session->module->artifact);
  if (!model.ok())
    return fromAbsl(model.status());
  kiln::runtime::SamplingOptions options;
  if (sampling) {
    if (!(sampling->temperature >= 0) || sampling->top_k < 0 ||
        !(sampling->top_p >= 0 && sampling->top_p <= 1))
      return makeStatus(absl::StrCat(
          "kiln_generator_create: sampling needs temperature >= 0, top_k >= "
          "0 and top_p in [0, 1], got ", sampling->temperature, ", ",
          sampling->top_k, ", ", sampling->top_p));
    options.temperature = sampling->temperature;
    options.topK = sampling->top_k;
    options.topP = sampling->top_p > 0 ? sampling->top_p : 1.0;
    options.seed = sampling->seed;
  }
  // The logits of every position come back; the loop reads each row's
  // at `last`. `padding` (each row's left padding) is an input when the
  // entry points take it.
  std::string entryName = model->entry;
  bool takesPadding = model->padding;
  auto paddingTensor = [](const std::vector<int64_t> &padding) {
    kiln_tensor t{};
    t.dtype = KILN_DTYPE_I64;
    t.rank = 1;
    t.shape[0] = int64_t(padding.size());
    t.data = const_cast<int64_t *>(padding.data());
    t.size_bytes = padding.size() * sizeof(int64_t);
    return t;
  };
  // The session's run count after this generator's last run: anything
  // run since (another generator, the application's own runs) may have
  // written the cache, which the generator then fills again.
  auto ownRuns = std::make_shared<uint64_t>(0);
  auto run = [session, ownRuns](const std::string &entry,
                                std::vector<kiln_tensor> &inputs,
                                kiln_tensor &output) -> absl::Status {
    if (kiln_status s = kiln_session_run(session, entry.c_str(),
                                         inputs.data(), inputs.size(),
                                         &output, 1)) {
      std::string message = kiln_status_message(s);
      kiln_status_free(s);
      return absl::InternalError(message);
    }
    *ownRuns = session->runs;
    return absl::OkStatus();
  };
  auto logitsTensor = [](std::vector<float> &buffer, int64_t batch,
                         int64_t length, size_t vocab) {
    kiln_tensor t{};
    t.dtype = KILN_DTYPE_F32;
    t.rank = 3;
    t.shape[0] = batch;
    t.shape[1] = length;
    t.shape[2] = int64_t(vocab);
    buffer.resize(size_t(batch * length) * vocab);
    t.data = buffer.data();
    t.size_bytes = buffer.size() * sizeof(float);
    return t;
  };
  auto forward = [entryName, takesPadding, paddingTensor, run, logitsTensor,
                  vocab = model->vocab, batch = model->batch,
                  logitsBuffer = std::vector<float>()](
                     const std::vector<int64_t> &ids,
                     const std::vector<int64_t> &padding, size_t last,
                     std::vector<float> &logits) mutable -> absl::Status {
    std::vector<kiln_tensor> inputs(1);
    inputs[0].dtype = KILN_DTYPE_I64;
    inputs[0].rank = 2;
    inputs[0].shape[0] = batch;
    inputs[0].shape[1] = int64_t(ids.size()) / batch;
    inputs[0].data = const_cast<int64_t *>(ids.data());
    inputs[0].size_bytes = ids.size() * sizeof(int64_t);
    if (takesPadding)
      inputs.push_back(paddingTensor(padding));
    int64_t length = inputs[0].shape[1];
    kiln_tensor output = logitsTensor(logitsBuffer, batch, length, vocab);
    if (absl::Status st = run(entryName, inputs, output); !st.ok())
      return st;
    for (int64_t r = 0; r < batch; ++r)
      std::copy_n(logitsBuffer.begin() + (size_t(r * length) + last) * vocab,
                  vocab, logits.begin() + size_t(r) * vocab);
    return absl::OkStatus();
  };
  // Decode: one token per row at position `past`, its keys and values
  // appended to the session's cache. KILN_KV_CACHE=0 runs the prefill entry
  // point over the whole sequence instead (to compare).
  kiln::runtime::Decode decode;
  const char *cacheSetting = std::getenv("KILN_KV_CACHE");
  if (!model->decodeEntry.empty() &&
      !(cacheSetting && std::string(cacheSetting) == "0"))
    decode = [entryName = model->decodeEntry, takesPadding, paddingTensor,
              run, logitsTensor, vocab = model->vocab, batch = model->batch,
              logitsBuffer = std::vector<float>()](
                 const std::vector<int64_t> &ids, size_t past,
                 const std::vector<int64_t> &padding,
                 std::vector<float> &logits) mutable -> absl::Status {
      std::vector<kiln_tensor> inputs(2);
      inputs[0].dtype = KILN_DTYPE_I64;
      inputs[0].rank = 2;
      inputs[0].shape[0] = batch;
      inputs[0].shape[1] = 1;
      inputs[0].data = const_cast<int64_t *>(ids.data());
      inputs[0].size_bytes = ids.size() * sizeof(int64_t);
      // `past` carries the count of cached positions in its shape alone.
      inputs[1].dtype = KILN_DTYPE_I8;
      inputs[1].rank = 2;
      inputs[1].shape[0] = int64_t(past);
      inputs[1].shape[1] = 0;
      if (takesPadding)
        inputs.push_back(paddingTensor(padding));
      kiln_tensor output = logitsTensor(logitsBuffer, batch, 1, vocab);
      if (absl::Status st = run(entryName, inputs, output); !st.ok())
        return st;
      std::copy_n(logitsBuffer.begin(), size_t(batch) * vocab,
                  logits.begin());
      return absl::OkStatus();
    };
  *out = new (std::nothrow) kiln_generator_t{
      std::make_unique<kiln::runtime::Generator>(
          *std::move(model), options, std::move(forward), std::move(decode),
          [session, ownRuns] { return session->runs == *ownRuns; })};
  return *out ? nullptr : makeStatus("kiln_generator_create: out of memory");
}

void kiln_generator_free(kiln_generator *generator) { delete generator; }

kiln_status kiln_generator_feed_ids(kiln_generator *generator,
                                    const int64_t *ids, size_t count) {
  if (!generator || (count && !ids))
    return makeStatus(
        "kiln_generator_feed_ids: generator and ids must not be NULL");
  return fromAbsl(generator->generator->feed(ids, count));
}

kiln_status kiln_generator_step(kiln_generator *generator, int64_t *token,
                                int *isEos) {
  if (!generator || !token)
    return makeStatus(
        "kiln_generator_step: generator and token must not be NULL");
  auto next = generator->generator->step();
  if (!next.ok())
    return fromAbsl(next.status());
  *token = *next;
  if (isEos)
    *isEos = generator->generator->isEos(*next) ? 1 : 0;
  return nullptr;
}

kiln_status kiln_generator_run(kiln_generator *generator,
                               size_t maxNewTokens,
                               kiln_token_callback callback, void *userData,
                               size_t *generated) {
  if (generated)
    *generated = 0;
  for (size_t i = 0; i < maxNewTokens; ++i) {
    if (generator && generator->generator->full())
      break;
    int64_t token = 0;
    int eos = 0;
    if (kiln_status s = kiln_generator_step(generator, &token, &eos))
      return s;
    if (generated)
      ++*generated;
    if (eos || (callback && callback(token, userData)))
      break;
  }
  return nullptr;
}

void kiln_generator_reset(kiln_generator *generator) {
  if (generator)
    generator->generator->reset();
}

size_t kiln_generator_rows(const kiln_generator *generator) {
  return generator ? generator->generator->rows() : 0;
}

kiln_status kiln_generator_feed_rows(kiln_generator *generator,
                                     const int64_t *const *ids,
                                     const size_t *counts, size_t rows) {
  if (!generator || (rows && (!ids || !counts)))
    return makeStatus("kiln_generator_feed_rows: generator, ids and counts "
                      "must not be NULL");
  std::vector<std::vector<int64_t>> prompts;
  for (size_t r = 0; r < rows; ++r) {
    if (counts[r] && !ids[r])
      return makeStatus("kiln_generator_feed_rows: a row's ids are NULL");
    prompts.emplace_back(ids[r], ids[r] + counts[r]);
  }
  return fromAbsl(generator->generator->feedRows(prompts));
}

kiln_status kiln_generator_step_rows(kiln_generator *generator,
                                     int64_t *tokens, size_t rows) {
  if (!generator || !tokens)
    return makeStatus(
        "kiln_generator_step_rows: generator and tokens must not be NULL");
  if (rows != generator->generator->rows())
    return makeStatus(absl::StrCat("kiln_generator_step_rows: the model has ",
                                   generator->generator->rows(),
                                   " rows, not ", rows));
  auto next = generator->generator->stepRows();
  if (!next.ok())
    return fromAbsl(next.status());
  std::copy(next->begin(), next->end(), tokens);
  return nullptr;
}

const int64_t *kiln_generator_row_tokens(const kiln_generator *generator,
                                         size_t row, size_t *count) {
  if (!generator || row >= generator->generator->rows()) {
    if (count)
      *count = 0;
    return nullptr;
  }
  const std::vector<int64_t> &tokens = generator->generator->row(row);
  if (count)
    *count = tokens.size();
  return tokens.data();
}

const float *kiln_generator_logits(const kiln_generator *generator,
                                   size_t *count) {
  const std::vector<float> *logits =
      generator ? &generator->generator->logits() : nullptr;
  if (!logits || logits->empty()) {
    if (count)
      *count = 0;
    return nullptr;
  }
  if (count)
    *count = logits->size();
  return logits->data();
}

const int64_t *kiln_generator_tokens(const kiln_generator *generator,
                                     size_t *count) {
  if (!generator) {
    if (count)
      *count = 0;
    return nullptr;
  }
  const std::vector<int64_t> &tokens = generator->generator->tokens();
  if (count)
    *count = tokens.size();
  return tokens.data();
}

size_t kiln_generator_eos_count(const kiln_generator *generator) {
  return generator ? generator->generator->model().eos.size() : 0;
}

int64_t kiln_generator_eos(const kiln_generator *generator, size_t index) {
  if (!generator || index >= generator->generator->model().eos.size())
    return -1;
  return generator->generator->model().eos[index];
}

int kiln_generator_full(const kiln_generator *generator) {
  return generator && generator->generator->full() ? 1 : 0;
}

int kiln_generator_has_tokenizer(const kiln_generator *generator) {
  return generator && generator->generator->model().tokenizer ? 1 : 0;
}

namespace {
kiln_status noTokenizer(const char *what) {
  return makeStatus(absl::StrCat(
      what, ": the artifact carries no tokenizer (its checkpoint folder had "
            "no tokenizer.json); give token ids instead"));
}
}  // namespace

kiln_status kiln_generator_feed_text(kiln_generator *generator,
                                     const char *text, size_t size) {
  if (!generator || (size && !text))
    return makeStatus(
        "kiln_generator_feed_text: generator and text must not be NULL");
  const auto &tokenizer = generator->generator->model().tokenizer;
  if (!tokenizer)
    return noTokenizer("kiln_generator_feed_text");
  auto ids = tokenizer->encode(std::string_view(text, size));
  if (!ids.ok())
    return fromAbsl(ids.status());
  return fromAbsl(generator->generator->feed(ids->data(), ids->size()));
}

kiln_status kiln_generator_decode(const kiln_generator *generator,
                                  const int64_t *ids, size_t count,
                                  int flags, char *text, size_t capacity,
                                  size_t *size) {
  if (!generator || (count && !ids) || (capacity && !text) || !size)
    return makeStatus("kiln_generator_decode: generator, ids, text and size "
                      "must not be NULL");
  const auto &tokenizer = generator->generator->model().tokenizer;
  if (!tokenizer)
    return noTokenizer("kiln_generator_decode");
  bool continuation = flags & KILN_DECODE_CONTINUATION;
  std::string decoded = (flags & KILN_DECODE_RAW)
                            ? tokenizer->decodeBytes(ids, count, continuation)
                            : tokenizer->decode(ids, count, continuation);
  *size = decoded.size();
  if (capacity)
    std::memcpy(text, decoded.data(), std::min(capacity, decoded.size()));
  return nullptr;
}
