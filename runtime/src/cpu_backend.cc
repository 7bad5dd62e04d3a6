#include "cpu_backend.h"
#include "dims.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <optional>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace kiln::runtime {

const char *hostArch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

CpuKernels::~CpuKernels() {
  for (void *handle : handles_)
    dlclose(handle);
}

namespace {

/// Whether this CPU has the instruction set extension `feature` (LLVM's
/// name); none for a name the runtime cannot check.
std::optional<bool> hostSupports(const std::string &feature) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports takes string literals only.
#define KILN_FEATURE(name) \
  if (feature == name) return __builtin_cpu_supports(name) != 0;
  KILN_FEATURE("sse4.2") KILN_FEATURE("avx") KILN_FEATURE("avx2")
  KILN_FEATURE("fma") KILN_FEATURE("f16c") KILN_FEATURE("bmi")
  KILN_FEATURE("bmi2") KILN_FEATURE("avx512f") KILN_FEATURE("avx512bw")
  KILN_FEATURE("avx512dq") KILN_FEATURE("avx512vl") KILN_FEATURE("avx512cd")
  KILN_FEATURE("avx512vnni") KILN_FEATURE("avx512bf16")
  KILN_FEATURE("avx512fp16") KILN_FEATURE("avx512vbmi")
  KILN_FEATURE("avx512ifma") KILN_FEATURE("avxvnni")
#undef KILN_FEATURE
#endif
  return std::nullopt;
}

/// The host kernels' instruction set extensions this CPU lacks (or the
/// runtime cannot check), comma-separated; empty when it has them all.
std::string missingHostFeatures(const artifact::Manifest &manifest) {
  std::string missing;
  for (const std::string &feature : manifest.host_features())
    if (hostSupports(feature) != true)
      absl::StrAppend(&missing, missing.empty() ? "" : ", ", feature);
  return missing;
}

// dlopen needs a path: hand it an anonymous memory file so nothing is ever
// written to disk and nothing is left behind.
absl::StatusOr<void *> openSharedObject(const Artifact &artifact,
                                        uint32_t sectionIndex) {
  const auto &section = artifact.manifest().sections(sectionIndex);
  int fd = memfd_create("kiln-host-kernels", MFD_CLOEXEC);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("memfd_create failed: ", std::strerror(errno)));
  const uint8_t *bytes = artifact.sectionData(sectionIndex);
  uint64_t left = section.size();
  while (left > 0) {
    ssize_t n = write(fd, bytes, left);
    if (n <= 0) {
      close(fd);
      return absl::InternalError(absl::StrCat(
          "cannot stage host kernels in memory: ", std::strerror(errno)));
    }
    bytes += n;
    left -= static_cast<uint64_t>(n);
  }
  std::string path = absl::StrCat("/proc/self/fd/", fd);
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  close(fd);
  if (!handle)
    return absl::DataLossError(absl::StrCat(
        "cannot load the host kernels of '", artifact.origin(), "' (section '",
        section.name(), "'): ", dlerror(),
        ". Compile the model again with `kiln compile --target cpu`."));
  return handle;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuKernels>>
CpuKernels::load(const Artifact &artifact) {
  const auto &manifest = artifact.manifest();
  std::unique_ptr<CpuKernels> result(new CpuKernels());
  std::map<uint32_t, void *> opened;
  for (const auto &kernel : manifest.kernels()) {
    const auto &section = manifest.sections(kernel.section());
    if (section.kind() != artifact::HOST_SHARED_OBJECT)
      return absl::FailedPreconditionError(absl::StrCat(
          "kernel '", kernel.name(), "' of '", artifact.origin(),
          "' is not host code (the artifact targets '", manifest.target(),
          "'); run it on a device of that target"));
    if (section.arch() != hostArch())
      return absl::FailedPreconditionError(absl::StrCat(
          "'", artifact.origin(), "' holds ", section.arch(),
          " host code but this machine is ", hostArch(),
          "; compile the model on or for this machine"));
    auto it = opened.find(kernel.section());
    if (it == opened.end()) {
      // Code for instructions this CPU lacks would die of SIGILL.
      if (std::string missing = missingHostFeatures(manifest); !missing.empty())
        return absl::FailedPreconditionError(absl::StrCat(
            "the host kernels of '", artifact.origin(), "' were compiled for ",
            manifest.host_cpu(), " and use ", missing,
            ", which this CPU does not have; compile the model on this "
            "machine, or with --cpu NAME for the oldest CPU it must run on"));
      absl::StatusOr<void *> handle =
          openSharedObject(artifact, kernel.section());
      if (!handle.ok())
        return handle.status();
      result->handles_.push_back(*handle);
      it = opened.emplace(kernel.section(), *handle).first;
    }
    void *symbol = dlsym(it->second, kernel.symbol().c_str());
    if (!symbol)
      return absl::DataLossError(absl::StrCat(
          "kernel '", kernel.name(), "' (symbol '", kernel.symbol(),
          "') is missing from the host code of '", artifact.origin(),
          "'; compile the model again"));
    result->kernels_.push_back(reinterpret_cast<HostKernelFn>(symbol));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<Backend>>
CpuBackend::create(const Artifact &artifact, const std::string & /*cpu*/) {
  const auto &m = artifact.manifest();
  if (m.target() != "cpu")
    return absl::FailedPreconditionError(absl::StrCat(
        "'", artifact.origin(), "' was compiled for '", m.target(),
        "', not for the CPU; run it with --device cuda:0 (or sim), or "
        "compile with --target cpu"));
  auto kernels = CpuKernels::load(artifact);
  if (!kernels.ok())
    return kernels.status();
  std::unique_ptr<CpuBackend> backend(
      new CpuBackend(artifact, std::move(*kernels)));
  if (m.arena_bytes() > 0) {
    size_t bytes = (m.arena_bytes() + 63) / 64 * 64;
    backend->arena_.reset(
        static_cast<uint8_t *>(std::aligned_alloc(64, bytes)));
    if (!backend->arena_)
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate the ", m.arena_bytes(),
                       "-byte arena for intermediates"));
  }
  for (const auto &spec : m.states()) {
    size_t bytes = (*tensorBytes(spec) + 63) / 64 * 64;
    backend->states_.emplace_back(static_cast<uint8_t *>(
        std::aligned_alloc(64, std::max<size_t>(bytes, 64))));
    if (!backend->states_.back())
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate the ", bytes, "-byte state '", spec.name(),
          "' (the KV cache); compile with a smaller --max-seq-len"));
    std::memset(backend->states_.back().get(), 0, bytes);
  }
  return backend;
}

KILN_CALLS_GENERATED_CODE
void CpuBackend::runLaunches(const artifact::EntryPoint &entry,
                             const std::vector<int64_t> &dims,
                             const kiln_tensor *inputs, kiln_tensor *outputs,
                             std::vector<double> *launchMs) {
  using artifact::BufferRef;
  auto resolve = [&](const BufferRef &ref) -> uint8_t * {
    switch (ref.kind()) {
    case BufferRef::INPUT:
      return static_cast<uint8_t *>(inputs[ref.index()].data) + ref.offset();
    case BufferRef::OUTPUT:
      return static_cast<uint8_t *>(outputs[ref.index()].data) + ref.offset();
    case BufferRef::WEIGHT:
      return const_cast<uint8_t *>(artifact_.weightData(ref.index())) +
             ref.offset();
    case BufferRef::ARENA:
      return arena_.get() + ref.offset();
    case BufferRef::STATE:
      return states_[ref.index()].get() + ref.offset();
    default:
      return nullptr;  // rejected at load time
    }
  };
  std::vector<void *> args;
  for (int i = 0; i < entry.launches_size(); ++i) {
    const auto &launch = entry.launches(i);
    auto start = std::chrono::steady_clock::now();
    args.clear();
    for (const auto &ref : launch.args())
      args.push_back(resolve(ref));
    // Scalar arguments: a pointer to each int64.
    for (uint32_t e : launch.scalar_args())
      args.push_back(const_cast<int64_t *>(&dims[e]));
    if (launch.kind() == artifact::Launch::COPY) {
      std::memmove(args[0], args[1], refBytes(launch.args(0), dims));
    } else if (launch.kind() == artifact::Launch::STRIDED_COPY) {
      StridedCopy copy = stridedCopy(launch, dims);
      auto *dst = static_cast<uint8_t *>(args[0]) + copy.dst_offset;
      auto *src = static_cast<const uint8_t *>(args[1]);
      for (uint64_t r = 0; r < copy.rows; ++r)
        std::memmove(dst + r * copy.dst_pitch, src + r * copy.row_bytes,
                     copy.row_bytes);
    } else
      kernels_->kernel(launch.kernel())(args.data(), pool_->context());
    if (launchMs)
      (*launchMs)[i] += std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  }
}

absl::Status CpuBackend::run(const artifact::EntryPoint &entry,
                             const std::vector<int64_t> &dims,
                             const kiln_tensor *inputs, kiln_tensor *outputs) {
  runLaunches(entry, dims, inputs, outputs, nullptr);
  return absl::OkStatus();
}

absl::Status CpuBackend::runAsync(const artifact::EntryPoint &entry,
                                  const std::vector<int64_t> &dims,
                                  const kiln_tensor *inputs,
                                  kiln_tensor *outputs) {
  return run(entry, dims, inputs, outputs);
}

absl::Status CpuBackend::synchronize() { return absl::OkStatus(); }

absl::Status CpuBackend::setThreads(int threads) {
  if (threads < 0 || threads > ThreadPool::kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat(
        "the thread count must be 0 (one per CPU this process may use, ",
        availableCpus(), " here) or from 1 to ", ThreadPool::kMaxThreads,
        ", not ", threads));
  int wanted = threads == 0 ? availableCpus() : threads;
  if (wanted != pool_->threads())
    pool_ = std::make_unique<ThreadPool>(wanted);
  return absl::OkStatus();
}

absl::Status CpuBackend::profile(const artifact::EntryPoint &entry,
                                 const std::vector<int64_t> &dims,
                                 const kiln_tensor *inputs,
                                 kiln_tensor *outputs, int iterations,
                                 std::vector<double> &launchMs) {
  launchMs.assign(entry.launches_size(), 0.0);
  for (int i = 0; i < iterations; ++i)
    runLaunches(entry, dims, inputs, outputs, &launchMs);
  return absl::OkStatus();
}

}  // namespace kiln::runtime
