#include "cuda_driver.h"

#include "cuda_images.h"
#include "cuda_tensor_maps.h"
#include "dims.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <iterator>
#include <map>
#include <mutex>

namespace kiln::runtime {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using Handle = void *;

// The subset of the driver API the backend uses, resolved by name (the
// versioned names cuda.h maps the plain ones to).
struct CudaApi {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(Handle *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxPushCurrent)(Handle);
  CUresult (*cuCtxPopCurrent)(Handle *);
  CUresult (*cuModuleLoadDataEx)(Handle *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleUnload)(Handle);
  CUresult (*cuModuleGetFunction)(Handle *, Handle, const char *);
  CUresult (*cuFuncSetAttribute)(Handle, int, int);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, Handle);
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, Handle);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, Handle);
  CUresult (*cuLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, Handle, void **,
                             void **);
  CUresult (*cuStreamCreate)(Handle *, unsigned);
  CUresult (*cuStreamDestroy)(Handle);
  CUresult (*cuStreamSynchronize)(Handle);
  CUresult (*cuEventCreate)(Handle *, unsigned);
  CUresult (*cuEventDestroy)(Handle);
  CUresult (*cuEventRecord)(Handle, Handle);
  CUresult (*cuEventElapsedTime)(float *, Handle, Handle);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  // CUDA graphs; null when the driver lacks them (runs launch directly).
  CUresult (*cuStreamBeginCapture)(Handle, int) = nullptr;
  CUresult (*cuStreamEndCapture)(Handle, Handle *) = nullptr;
  CUresult (*cuGraphInstantiate)(Handle *, Handle, unsigned long long) = nullptr;
  CUresult (*cuGraphLaunch)(Handle, Handle) = nullptr;
  CUresult (*cuGraphExecDestroy)(Handle) = nullptr;
  CUresult (*cuGraphDestroy)(Handle) = nullptr;
  // Null on drivers without it: image selection then trusts the images.
  CUresult (*cuDriverGetVersion)(int *) = nullptr;
  // CUDA 12.0: TMA descriptors and cluster launches; null on older drivers
  // (an artifact that needs them is refused with what to install).
  CUresult (*cuTensorMapEncodeTiled)(void *, int, uint32_t, void *,
                                     const uint64_t *, const uint64_t *,
                                     const uint32_t *, const uint32_t *, int,
                                     int, int, int) = nullptr;
  CUresult (*cuLaunchKernelEx)(const void *, Handle, void **, void **) = nullptr;
  // CUDA 12.4: the kernel's parameters, checked against the manifest at
  // load; null on older drivers (no check).
  CUresult (*cuFuncGetParamInfo)(Handle, size_t, size_t *, size_t *) = nullptr;
  // A strided copy in one call (CUDA_MEMCPY2D); null: one copy per row.
  CUresult (*cuMemcpy2DAsync)(const void *, Handle) = nullptr;
};

namespace {

constexpr int kComputeCapabilityMajor = 75;
constexpr int kMaxSharedMemoryPerBlockOptin = 97;
constexpr int kFuncMaxDynamicSharedBytes = 8;
constexpr uint32_t kDefaultDynamicSharedBytes = 48 * 1024;
constexpr int kComputeCapabilityMinor = 76;
constexpr CUresult kOutOfMemory = 2;
// The errors after which the context is lost and every later call in the
// process fails with them: CUDA_ERROR_ILLEGAL_ADDRESS (700),
// CUDA_ERROR_LAUNCH_TIMEOUT (702), and CUDA_ERROR_HARDWARE_STACK_ERROR to
// CUDA_ERROR_LAUNCH_FAILED (714-719).
bool isStickyError(CUresult rc) {
  return rc == 700 || rc == 702 || (rc >= 714 && rc <= 719);
}
constexpr int kJitErrorLogBuffer = 5, kJitErrorLogBufferSize = 6;
constexpr size_t kJitLogBytes = 8192;
// The per-axis limits of every architecture Kiln targets (sm_50 on).
constexpr uint64_t kMaxBlock[3] = {1024, 1024, 64};
constexpr uint64_t kMaxBlockThreads = 1024;
constexpr uint64_t kMaxGrid[3] = {0x7fffffff, 65535, 65535};
constexpr unsigned kStreamNonBlocking = 1;
constexpr int kCaptureModeThreadLocal = 1;
constexpr CUresult kInvalidValue = 1;
constexpr int kMemoryTypeDevice = 2;

// cuMemcpy2DAsync's description of a copy, laid out as cuda.h lays out
// CUDA_MEMCPY2D.
struct Memcpy2D {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  unsigned long long srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  unsigned long long dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};
static_assert(sizeof(Memcpy2D) == 128, "CUDA_MEMCPY2D is 128 bytes");

// cuLaunchKernelEx's configuration with one attribute, laid out as cuda.h
// lays out CUlaunchConfig and CUlaunchAttribute (checked by the sizes).
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    struct {
      unsigned x, y, z;
    } clusterDim;
  } value;
};
static_assert(sizeof(LaunchAttribute) == 72, "CUlaunchAttribute layout");
struct LaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ;
  unsigned blockDimX, blockDimY, blockDimZ;
  unsigned sharedMemBytes;
  Handle hStream;
  LaunchAttribute *attrs;
  unsigned numAttrs;
};
static_assert(sizeof(LaunchConfig) == 56, "CUlaunchConfig layout");
constexpr int kLaunchAttributeClusterDimension = 4;

/// "kernel 'k' (launch #i) grid (x, y, z) block (x, y, z)": what an error
/// about a launch names.
std::string describeLaunch(const artifact::Manifest &m,
                           const artifact::Launch &launch, int index,
                           const uint64_t grid[3], const uint64_t block[3]) {
  return absl::StrCat("kernel '", m.kernels(launch.kernel()).name(),
                      "' (launch #", index, ") grid (", grid[0], ", ",
                      grid[1], ", ", grid[2], ") block (", block[0], ", ",
                      block[1], ", ", block[2], ")");
}

template <typename Fn>
bool resolve(void *library, const char *name, Fn &fn) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  return fn != nullptr;
}

}  // namespace

std::string cudaDriverLibrary() {
  const char *override = std::getenv("KILN_CUDA_DRIVER");
  return override && *override ? override : "libcuda.so.1";
}

absl::StatusOr<const CudaApi *> loadCudaDriver(const std::string &libraryName) {
  // A driver is loaded and initialized once per process and stays loaded.
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<CudaApi>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = loaded.find(libraryName); it != loaded.end())
    return it->second.get();
  void *library = dlopen(libraryName.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return absl::UnavailableError(absl::StrCat(
        "no CUDA driver: cannot load ", libraryName, " (", dlerror(),
        "). Run it on a machine with an NVIDIA GPU and its driver"));
  auto api = std::make_unique<CudaApi>();
  bool ok = resolve(library, "cuInit", api->cuInit) &&
            resolve(library, "cuDeviceGetCount", api->cuDeviceGetCount) &&
            resolve(library, "cuDeviceGet", api->cuDeviceGet) &&
            resolve(library, "cuDeviceGetAttribute", api->cuDeviceGetAttribute) &&
            resolve(library, "cuDevicePrimaryCtxRetain",
                    api->cuDevicePrimaryCtxRetain) &&
            resolve(library, "cuDevicePrimaryCtxRelease_v2",
                    api->cuDevicePrimaryCtxRelease) &&
            resolve(library, "cuCtxPushCurrent_v2", api->cuCtxPushCurrent) &&
            resolve(library, "cuCtxPopCurrent_v2", api->cuCtxPopCurrent) &&
            resolve(library, "cuModuleLoadDataEx", api->cuModuleLoadDataEx) &&
            resolve(library, "cuModuleUnload", api->cuModuleUnload) &&
            resolve(library, "cuModuleGetFunction", api->cuModuleGetFunction) &&
            resolve(library, "cuFuncSetAttribute", api->cuFuncSetAttribute) &&
            resolve(library, "cuMemAlloc_v2", api->cuMemAlloc) &&
            resolve(library, "cuMemFree_v2", api->cuMemFree) &&
            resolve(library, "cuMemcpyHtoDAsync_v2", api->cuMemcpyHtoDAsync) &&
            resolve(library, "cuMemcpyDtoHAsync_v2", api->cuMemcpyDtoHAsync) &&
            resolve(library, "cuMemcpyDtoDAsync_v2", api->cuMemcpyDtoDAsync) &&
            resolve(library, "cuLaunchKernel", api->cuLaunchKernel) &&
            resolve(library, "cuStreamCreate", api->cuStreamCreate) &&
            resolve(library, "cuStreamDestroy_v2", api->cuStreamDestroy) &&
            resolve(library, "cuStreamSynchronize", api->cuStreamSynchronize) &&
            resolve(library, "cuEventCreate", api->cuEventCreate) &&
            resolve(library, "cuEventDestroy_v2", api->cuEventDestroy) &&
            resolve(library, "cuEventRecord", api->cuEventRecord) &&
            (resolve(library, "cuEventElapsedTime_v2", api->cuEventElapsedTime) ||
             resolve(library, "cuEventElapsedTime", api->cuEventElapsedTime)) &&
            resolve(library, "cuGetErrorString", api->cuGetErrorString) &&
            resolve(library, "cuGetErrorName", api->cuGetErrorName);
  if (!ok) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        libraryName, " lacks driver API functions Kiln needs; the NVIDIA "
                     "driver is too old or broken"));
  }
  resolve(library, "cuDriverGetVersion", api->cuDriverGetVersion);
  resolve(library, "cuTensorMapEncodeTiled", api->cuTensorMapEncodeTiled);
  resolve(library, "cuLaunchKernelEx", api->cuLaunchKernelEx);
  resolve(library, "cuFuncGetParamInfo", api->cuFuncGetParamInfo);
  resolve(library, "cuMemcpy2DAsync_v2", api->cuMemcpy2DAsync);
  bool graphApi =
      resolve(library, "cuStreamBeginCapture_v2", api->cuStreamBeginCapture) &&
      resolve(library, "cuStreamEndCapture", api->cuStreamEndCapture) &&
      resolve(library, "cuGraphInstantiateWithFlags", api->cuGraphInstantiate) &&
      resolve(library, "cuGraphLaunch", api->cuGraphLaunch) &&
      resolve(library, "cuGraphExecDestroy", api->cuGraphExecDestroy) &&
      resolve(library, "cuGraphDestroy", api->cuGraphDestroy);
  if (!graphApi)
    api->cuStreamBeginCapture = nullptr;
  if (CUresult rc = api->cuInit(0); rc != 0) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        "the CUDA driver failed to initialize (cuInit returned ", rc,
        rc == 34 ? ", CUDA_ERROR_STUB_LIBRARY: this is the toolkit's stub, "
                   "not a driver"
                 : "",
        "); check that a GPU is visible (nvidia-smi)"));
  }
  return (loaded[libraryName] = std::move(api)).get();
}

absl::Status CudaBackend::check(CUresult result, const char *what,
                                const std::string &detail) const {
  if (result == 0)
    return absl::OkStatus();
  const char *text = nullptr, *name = nullptr;
  if (api->cuGetErrorString(result, &text) != 0)
    text = nullptr;
  if (api->cuGetErrorName(result, &name) != 0)
    name = nullptr;
  std::string message = absl::StrCat(
      what, " failed: ", text ? text : "unknown CUDA error", " (",
      name ? name : "CUDA error", ", ", result, ")",
      detail.empty() ? "" : "; ", detail);
  if (result == kOutOfMemory)
    return absl::ResourceExhaustedError(
        absl::StrCat(message, "; the model needs more device memory than "
                              "is free on cuda:", device));
  if (isStickyError(result))
    return absl::InternalError(absl::StrCat(
        message, "; a kernel faulted and the CUDA context of cuda:", device,
        " is lost: every later call in this process fails. Find the kernel "
        "with KILN_CUDA_GRAPHS=0 CUDA_LAUNCH_BLOCKING=1 or compute-sanitizer"));
  return absl::InternalError(message);
}

/// The session's context, current on the calling thread for one call into
/// the backend: pushed on entry and popped on exit, so the thread's own
/// context (another library's, or none) is as it was afterwards.
class CudaBackend::CurrentContext {
public:
  explicit CurrentContext(const CudaBackend &backend)
      : backend(backend),
        status(backend.check(backend.api->cuCtxPushCurrent(backend.context),
                             "cuCtxPushCurrent")) {}
  ~CurrentContext() {
    Handle popped = nullptr;
    if (status.ok())
      backend.api->cuCtxPopCurrent(&popped);
  }
  CurrentContext(const CurrentContext &) = delete;
  CurrentContext &operator=(const CurrentContext &) = delete;

  const CudaBackend &backend;
  const absl::Status status;
};

absl::StatusOr<std::unique_ptr<Backend>>
CudaBackend::create(const Artifact &artifact, const std::string &device) {
  const auto &m = artifact.manifest();
  if (m.target().rfind("cuda", 0) != 0)
    return absl::FailedPreconditionError(absl::StrCat(
        "'", artifact.origin(), "' targets '", m.target(),
        "' and cannot run on device '", device,
        "'; run it with --device cpu, or compile with --target cuda:sm_80"));
  absl::StatusOr<int> ordinal = deviceOrdinal(device, "cuda");
  if (!ordinal.ok())
    return ordinal.status();
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend =
      open(artifact, *ordinal);
  if (!backend.ok())
    return backend.status();
  return std::unique_ptr<Backend>(std::move(*backend));
}

absl::StatusOr<std::unique_ptr<CudaBackend>>
CudaBackend::open(const Artifact &artifact, int ordinal) {
  auto api = loadCudaDriver();
  if (!api.ok())
    return api.status();
  std::unique_ptr<CudaBackend> s(new CudaBackend());
  s->api = *api;
  s->artifact = &artifact;
  int count = 0;
  if (absl::Status st = s->check(s->api->cuDeviceGetCount(&count),
                                 "cuDeviceGetCount");
      !st.ok())
    return st;
  if (ordinal < 0 || ordinal >= count)
    return absl::NotFoundError(absl::StrCat("no device cuda:", ordinal, "; ",
                                            count, " CUDA device(s) visible"));
  CUdevice device = 0;
  int major = 0, minor = 0;
  for (auto [rc, what] :
       {std::pair{s->api->cuDeviceGet(&device, ordinal), "cuDeviceGet"},
        std::pair{s->api->cuDeviceGetAttribute(&major, kComputeCapabilityMajor,
                                               device),
                  "cuDeviceGetAttribute"},
        std::pair{s->api->cuDeviceGetAttribute(&minor, kComputeCapabilityMinor,
                                               device),
                  "cuDeviceGetAttribute"}})
    if (absl::Status st = s->check(rc, what); !st.ok())
      return st;
  s->device = device;
  if (absl::Status st = s->check(
          s->api->cuDevicePrimaryCtxRetain(&s->context, device),
          "cuDevicePrimaryCtxRetain");
      !st.ok())
    return st;
  CurrentContext current(*s);
  if (!current.status.ok())
    return current.status;
  if (absl::Status st = s->check(
          s->api->cuStreamCreate(&s->stream, kStreamNonBlocking),
          "cuStreamCreate");
      !st.ok())
    return st;
  const char *graphSetting = std::getenv("KILN_CUDA_GRAPHS");
  s->graphs = s->api->cuStreamBeginCapture &&
              !(graphSetting && std::string(graphSetting) == "0");
  if (const char *cache = std::getenv("KILN_CUDA_GRAPH_CACHE"))
    s->graphCacheSize = std::max(1, std::atoi(cache));

  // A static grid or block beyond the limits can never launch: the
  // session is refused now rather than on the first run.
  for (const auto &entry : artifact.manifest().entry_points())
    for (int i = 0; i < entry.launches_size(); ++i) {
      const artifact::Launch &launch = entry.launches(i);
      bool symbolic = false;
      for (uint32_t e : launch.grid_exprs())
        symbolic |= e != 0;
      if (launch.kind() != artifact::Launch::KERNEL || symbolic)
        continue;
      uint64_t grid[3], block[3];
      for (int d = 0; d < 3; ++d) {
        grid[d] = launch.grid(d);
        block[d] = launch.block(d);
      }
      if (absl::Status st = s->checkLaunchShape(
              grid, block,
              absl::StrCat("entry point '", entry.name(), "': ",
                           describeLaunch(artifact.manifest(), launch, i,
                                          grid, block)));
          !st.ok())
        return st;
    }

  // Per kernel the images this device and driver can load, best first
  // (cuda_images.h has the rules); an image the driver still refuses (a
  // cubin from a newer toolkit than it knows) falls back to the next one.
  const auto &m = artifact.manifest();
  CudaDeviceInfo info{major, minor, 0};
  if (s->api->cuDriverGetVersion &&
      s->api->cuDriverGetVersion(&info.driverVersion) != 0)
    info.driverVersion = 0;
  if (absl::Status st = s->checkHopperFeatures(info); !st.ok())
    return st;
  std::map<const void *, void *> loaded;
  for (const auto &kernel : m.kernels()) {
    std::vector<CudaImageChoice> choices =
        cudaImageCandidates(m, kernel, info);
    if (choices.empty())
      return absl::FailedPreconditionError(
          noCudaImageMessage(m, kernel, info));
    void *module = nullptr;
    std::string refusals;
    for (const CudaImageChoice &choice : choices) {
      const artifact::KernelImage &image = *choice.image;
      const void *bytes =
          choice.ptx ? artifact.sectionData(image.ptx_section()) +
                           image.ptx_offset()
                     : artifact.sectionData(image.cubin_section()) +
                           image.cubin_offset();
      // Kernels share one module per architecture: it is loaded once.
      if (void *known = loaded[bytes]) {
        module = known;
        break;
      }
      std::string text;
      const void *data = bytes;
      if (choice.ptx) {
        text.assign(reinterpret_cast<const char *>(bytes), image.ptx_size());
        data = text.c_str();  // the driver wants NUL-terminated PTX
      }
      // The JIT's log says what in the PTX (or cubin) it refused.
      std::string log(kJitLogBytes, '\0');
      int options[] = {kJitErrorLogBuffer, kJitErrorLogBufferSize};
      void *values[] = {log.data(), reinterpret_cast<void *>(log.size())};
      CUresult rc =
          s->api->cuModuleLoadDataEx(&module, data, 2, options, values);
      log.resize(std::strlen(log.c_str()));
      if (rc == 0) {
        loaded[bytes] = module;
        s->modules.push_back(module);
        break;
      }
      module = nullptr;
      absl::Status refused = s->check(
          rc, "cuModuleLoadDataEx",
          absl::StrCat("kernel '", kernel.name(), "' (",
                       choice.ptx ? "PTX " : "cubin ", image.arch(), ")",
                       log.empty() ? "" : "; JIT log: ", log));
      // Images the driver cannot use: try the next candidate.
      constexpr CUresult kImageRefusals[] = {200 /*INVALID_IMAGE*/,
                                             209 /*NO_BINARY_FOR_GPU*/,
                                             218 /*INVALID_PTX*/,
                                             221 /*JIT_COMPILER_NOT_FOUND*/,
                                             222 /*UNSUPPORTED_PTX_VERSION*/};
      if (std::find(std::begin(kImageRefusals), std::end(kImageRefusals),
                    rc) == std::end(kImageRefusals))
        return refused;
      absl::StrAppend(&refusals, refusals.empty() ? "" : "; ",
                      refused.message());
    }
    if (!module)
      return absl::FailedPreconditionError(absl::StrCat(
          "the driver refused every image of kernel '", kernel.name(),
          "' for ", describeDevice(info), " (", refusals,
          "); install a newer driver or recompile with an older --ptx-isa"));
    void *function = nullptr;
    if (absl::Status st = s->check(
            s->api->cuModuleGetFunction(&function, module,
                                        kernel.symbol().c_str()),
            "cuModuleGetFunction");
        !st.ok())
      return st;
    // Dynamic shared memory beyond the default 48 KiB is opted into once
    // per function, up to what the device allows a block.
    uint32_t dynamicShared = kernel.dynamic_shared_bytes();
    if (dynamicShared > kDefaultDynamicSharedBytes) {
      int limit = 0;
      if (absl::Status st = s->check(
              s->api->cuDeviceGetAttribute(
                  &limit, kMaxSharedMemoryPerBlockOptin, device),
              "cuDeviceGetAttribute");
          !st.ok())
        return st;
      if (dynamicShared > static_cast<uint32_t>(limit))
        return absl::FailedPreconditionError(absl::StrCat(
            "kernel '", kernel.name(), "' needs ", dynamicShared,
            " bytes of dynamic shared memory per block; ",
            describeDevice(info), " allows ", limit,
            "; recompile for this architecture (kiln compile --target "
            "cuda:sm_", major, minor, ")"));
      if (absl::Status st = s->check(
              s->api->cuFuncSetAttribute(function, kFuncMaxDynamicSharedBytes,
                                         static_cast<int>(dynamicShared)),
              "cuFuncSetAttribute",
              absl::StrCat("kernel '", kernel.name(), "' asks for ",
                           dynamicShared, " bytes of dynamic shared memory"));
          !st.ok())
        return st;
    }
    if (absl::Status st = s->checkParameters(kernel, function); !st.ok())
      return st;
    s->functions.push_back(function);
    s->dynamicShared.push_back(dynamicShared);
  }
  // Weights go to the device once per session, on the session's stream:
  // a synchronous cuMemcpyHtoD from pageable memory may return before the
  // data lands, and the non-blocking stream would not wait for it. The
  // artifact's bytes outlive the session; the wait below makes upload
  // errors load errors. Zero-size weights have no buffer.
  for (int i = 0; i < m.weights_size(); ++i) {
    CUdeviceptr ptr = 0;
    size_t bytes = m.weights(i).size();
    if (bytes)
      if (absl::Status st = s->check(s->api->cuMemAlloc(&ptr, bytes),
                                     "cuMemAlloc (weights)");
          !st.ok())
        return st;
    s->weights.push_back(ptr);
    if (bytes)
      if (absl::Status st = s->check(
              s->api->cuMemcpyHtoDAsync(ptr, artifact.weightData(i), bytes,
                                        s->stream),
              "cuMemcpyHtoDAsync (weights)");
          !st.ok())
        return st;
  }
  if (absl::Status st = s->check(s->api->cuStreamSynchronize(s->stream),
                                 "cuStreamSynchronize (weights)");
      !st.ok())
    return st;
  if (m.arena_bytes() > 0)
    if (absl::Status st = s->check(s->api->cuMemAlloc(&s->arena, m.arena_bytes()),
                                   "cuMemAlloc (arena)");
        !st.ok())
      return st;
  // States (the KV cache) start zeroed: a masked-out position of the cache
  // is multiplied by 0, which NaN garbage would spoil. Zeroed by copies
  // from a host chunk of zeros.
  std::vector<uint8_t> zeros;
  for (const auto &spec : m.states()) {
    size_t bytes = *tensorBytes(spec);
    s->states.push_back(0);
    if (!bytes)
      continue;  // no allocation, as for a zero-size weight
    if (absl::Status st = s->check(s->api->cuMemAlloc(&s->states.back(), bytes),
                                   "cuMemAlloc (state)",
                                   absl::StrCat("state '", spec.name(), "', ",
                                                bytes, " bytes (the KV cache; "
                                                "compile with a smaller "
                                                "--max-seq-len)"));
        !st.ok())
      return st;
    zeros.resize(std::min<size_t>(bytes, size_t(16) << 20));
    for (size_t done = 0; done < bytes; done += zeros.size())
      if (absl::Status st = s->check(
              s->api->cuMemcpyHtoDAsync(s->states.back() + done, zeros.data(),
                                        std::min(zeros.size(), bytes - done),
                                        s->stream),
              "cuMemcpyHtoDAsync (zeroing a state)");
          !st.ok())
        return st;
    // Pageable memory: each copy has taken its bytes when it returns.
  }
  return s;
}

CudaBackend::~CudaBackend() {
  if (!api)
    return;
  if (!context)
    return;
  {
    CurrentContext current(*this);
    if (current.status.ok())
      destroyOnDevice();
  }  // popped before the context is released
  api->cuDevicePrimaryCtxRelease(device);
}

void CudaBackend::destroyOnDevice() {
  if (stream)
    api->cuStreamSynchronize(stream);
  // Only what was created: graphs hold instantiated executables only, and
  // zero-size buffers have no allocation.
  auto release = [&](CUdeviceptr p) {
    if (p)
      api->cuMemFree(p);
  };
  for (auto &[entry, state] : entries) {
    for (auto &[dims, graph] : state.graphs)
      api->cuGraphExecDestroy(graph.exec);
    for (CUdeviceptr p : state.inputs)
      release(p);
    for (CUdeviceptr p : state.outputs)
      release(p);
    release(state.mapTable);
  }
  if (stream)
    api->cuStreamDestroy(stream);
  for (CUdeviceptr w : weights)
    release(w);
  if (arena)
    api->cuMemFree(arena);
  for (CUdeviceptr p : states)
    release(p);
  for (void *module : modules)
    api->cuModuleUnload(module);
}

bool CudaBackend::movesState(const artifact::EntryPoint &entry) {
  for (const auto &launch : entry.launches())
    if (launch.kind() == artifact::Launch::STRIDED_COPY &&
        launch.dst_offset_expr())
      return true;
  return false;
}

absl::StatusOr<CudaBackend::EntryState *>
CudaBackend::prepare(const artifact::EntryPoint &entry) {
  auto [it, inserted] = entries.try_emplace(&entry);
  EntryState &state = it->second;
  if (!inserted)
    return &state;
  state.movesState = movesState(entry);
  // Device buffers for the entry point's inputs and outputs live as long as
  // the session: a captured graph refers to them.
  // Sized for the symbolic dims' upper bounds (checked at load).
  std::vector<int64_t> maxima = *checkDimProgram(entry);
  auto allocate = [&](const auto &specs, std::vector<CUdeviceptr> &out,
                      const char *what) -> absl::Status {
    for (const auto &spec : specs) {
      size_t bytes = *tensorBytes(spec, maxima);
      CUdeviceptr p = 0;
      if (bytes)
        if (absl::Status st = check(api->cuMemAlloc(&p, bytes), what);
            !st.ok())
          return st;
      out.push_back(p);
    }
    return absl::OkStatus();
  };
  absl::Status st = allocate(entry.inputs(), state.inputs, "cuMemAlloc (inputs)");
  if (st.ok())
    st = allocate(entry.outputs(), state.outputs, "cuMemAlloc (outputs)");
  for (const artifact::Launch &launch : entry.launches()) {
    state.firstMap.push_back(state.numMaps);
    state.numMaps += launch.tensor_maps_size();
    for (const artifact::TensorMap &map : launch.tensor_maps())
      state.symbolicMaps |= tensorMapIsSymbolic(map);
  }
  if (st.ok() && state.numMaps) {
    size_t bytes = state.numMaps * kTensorMapBytes;
    state.mapHost.reset(
        static_cast<uint8_t *>(std::aligned_alloc(kTensorMapAlign, bytes)),
        std::free);
    st = state.mapHost ? check(api->cuMemAlloc(&state.mapTable, bytes),
                               "cuMemAlloc (TMA descriptors)")
                       : absl::ResourceExhaustedError(
                             "out of host memory for TMA descriptors");
  }
  if (!st.ok()) {
    for (const auto *buffers : {&state.inputs, &state.outputs})
      for (CUdeviceptr p : *buffers)
        if (p)
          api->cuMemFree(p);
    if (state.mapTable)
      api->cuMemFree(state.mapTable);
    entries.erase(it);
    return st;
  }
  return &state;
}

absl::Status CudaBackend::checkHopperFeatures(const CudaDeviceInfo &info) const {
  const artifact::Manifest &m = artifact->manifest();
  for (const artifact::Kernel &kernel : m.kernels())
    if (kernel.cluster_size()) {
      if (info.major < 9)
        return absl::FailedPreconditionError(absl::StrCat(
            "kernel '", kernel.name(), "' runs in thread-block clusters, "
            "which ", describeDevice(info), " lacks (sm_90 and newer); "
            "recompile with --target cuda:sm_", info.major, info.minor));
      if (!api->cuLaunchKernelEx)
        return absl::FailedPreconditionError(absl::StrCat(
            "kernel '", kernel.name(), "' runs in thread-block clusters and "
            "the driver lacks cuLaunchKernelEx; install a driver for CUDA "
            "12.0 or newer"));
    }
  for (const artifact::EntryPoint &entry : m.entry_points())
    for (const artifact::Launch &launch : entry.launches())
      if (launch.tensor_maps_size()) {
        const std::string &name = m.kernels(launch.kernel()).name();
        if (info.major < 9)
          return absl::FailedPreconditionError(absl::StrCat(
              "kernel '", name, "' loads with TMA descriptors, which ",
              describeDevice(info), " lacks (sm_90 and newer); recompile "
              "with --target cuda:sm_", info.major, info.minor));
        if (!api->cuTensorMapEncodeTiled)
          return absl::FailedPreconditionError(absl::StrCat(
              "kernel '", name, "' loads with TMA descriptors and the driver "
              "lacks cuTensorMapEncodeTiled; install a driver for CUDA 12.0 "
              "or newer"));
      }
  return absl::OkStatus();
}

absl::Status CudaBackend::checkParameters(const artifact::Kernel &kernel,
                                          void *function) const {
  if (!api->cuFuncGetParamInfo)
    return absl::OkStatus();
  // Parameters are counted up to the first index the driver refuses; a
  // driver that cannot tell (an error other than an invalid index on the
  // first parameter) is not second-guessed.
  size_t count = 0;
  for (; count <= kernel.num_args(); ++count) {
    size_t offset = 0, size = 0;
    CUresult rc = api->cuFuncGetParamInfo(function, count, &offset, &size);
    if (rc == kInvalidValue)
      break;
    if (rc != 0)
      return count == 0 ? absl::OkStatus()
                        : check(rc, "cuFuncGetParamInfo",
                                absl::StrCat("kernel '", kernel.name(), "'"));
    if (size != 8)
      return absl::FailedPreconditionError(absl::StrCat(
          "kernel '", kernel.name(), "' takes a ", size,
          "-byte parameter #", count, " where the artifact passes a pointer "
          "or an int64: the artifact does not match its kernels; recompile "
          "it"));
  }
  if (count != kernel.num_args())
    return absl::FailedPreconditionError(absl::StrCat(
        "kernel '", kernel.name(), "' takes ",
        count > kernel.num_args() ? "more than " : "", count,
        " parameters and the artifact passes ", kernel.num_args(),
        ": the artifact does not match its kernels; recompile it"));
  return absl::OkStatus();
}

absl::Status CudaBackend::uploadTensorMaps(const artifact::EntryPoint &entry,
                                           const std::vector<int64_t> &dims,
                                           EntryState &state) {
  if (!state.numMaps ||
      (state.mapsUploaded && (!state.symbolicMaps || state.mapDims == dims)))
    return absl::OkStatus();
  auto resolve = [&](const artifact::BufferRef &ref) -> CUdeviceptr {
    switch (ref.kind()) {
    case artifact::BufferRef::INPUT: return state.inputs[ref.index()];
    case artifact::BufferRef::OUTPUT: return state.outputs[ref.index()];
    case artifact::BufferRef::WEIGHT: return weights[ref.index()];
    case artifact::BufferRef::ARENA: return arena;
    case artifact::BufferRef::STATE: return states[ref.index()];
    default: return 0;
    }
  };
  for (int i = 0; i < entry.launches_size(); ++i) {
    const artifact::Launch &launch = entry.launches(i);
    for (int t = 0; t < launch.tensor_maps_size(); ++t) {
      const artifact::TensorMap &map = launch.tensor_maps(t);
      uint8_t *slot =
          state.mapHost.get() + (state.firstMap[i] + t) * kTensorMapBytes;
      std::memset(slot, 0, kTensorMapBytes);
      CUdeviceptr base = resolve(map.buffer());
      // A zero-size buffer has no address; its launches have no work.
      if (!base)
        continue;
      std::string what = absl::StrCat(
          "kernel '", artifact->manifest().kernels(launch.kernel()).name(),
          "' (launch #", i, ") TMA descriptor #", t, " ",
          describeTensorMap(map));
      absl::StatusOr<TensorMapEncoding> enc =
          encodingFor(map, dims, refBytes(map.buffer(), dims));
      if (!enc.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": ", enc.status().message()));
      if (absl::Status st = check(
              api->cuTensorMapEncodeTiled(
                  slot, enc->dataType, enc->rank,
                  reinterpret_cast<void *>(base + enc->byteOffset), enc->dims,
                  enc->strides, enc->box, enc->elementStrides, enc->interleave,
                  enc->swizzle, enc->l2Promotion, enc->oobFill),
              "cuTensorMapEncodeTiled", what);
          !st.ok())
        return st;
    }
  }
  // Pageable host memory: the copy takes the bytes before it returns, so
  // the next encoding may reuse mapHost.
  if (absl::Status st = check(
          api->cuMemcpyHtoDAsync(state.mapTable, state.mapHost.get(),
                                 state.numMaps * kTensorMapBytes, stream),
          "cuMemcpyHtoDAsync (TMA descriptors)");
      !st.ok())
    return st;
  state.mapsUploaded = true;
  state.mapDims = dims;
  return absl::OkStatus();
}

absl::Status CudaBackend::enqueueLaunches(const artifact::EntryPoint &entry,
                                          const std::vector<int64_t> &dims,
                                          EntryState &state,
                                          std::vector<double> *launchMs) {
  auto resolve = [&](const artifact::BufferRef &ref) -> CUdeviceptr {
    switch (ref.kind()) {
    case artifact::BufferRef::INPUT: return state.inputs[ref.index()] + ref.offset();
    case artifact::BufferRef::OUTPUT: return state.outputs[ref.index()] + ref.offset();
    case artifact::BufferRef::WEIGHT: return weights[ref.index()] + ref.offset();
    case artifact::BufferRef::ARENA: return arena + ref.offset();
    case artifact::BufferRef::STATE: return states[ref.index()] + ref.offset();
    default: return 0;  // rejected at load time
    }
  };
  // Timing: an event pair around every launch.
  std::vector<Handle> events;
  auto destroyEvents = [&] {
    for (Handle e : events)
      api->cuEventDestroy(e);
  };
  if (launchMs) {
    events.resize(2 * entry.launches_size(), nullptr);
    for (Handle &e : events)
      if (absl::Status st = check(api->cuEventCreate(&e, 0), "cuEventCreate");
          !st.ok()) {
        destroyEvents();
        return st;
      }
  }
  std::vector<CUdeviceptr> pointers;
  std::vector<int64_t> scalars;
  std::vector<void *> params;
  absl::Status status;
  for (int i = 0; i < entry.launches_size() && status.ok(); ++i) {
    const artifact::Launch &launch = entry.launches(i);
    if (launchMs)
      status = check(api->cuEventRecord(events[2 * i], stream), "cuEventRecord");
    if (!status.ok())
      break;
    if (launch.kind() == artifact::Launch::COPY) {
      if (uint64_t bytes = refBytes(launch.args(0), dims))
        status = check(api->cuMemcpyDtoDAsync(resolve(launch.args(0)),
                                              resolve(launch.args(1)), bytes,
                                              stream),
                       "cuMemcpyDtoDAsync",
                       absl::StrCat("copy launch #", i, ", ", bytes, " bytes"));
    } else if (launch.kind() == artifact::Launch::STRIDED_COPY) {
      StridedCopy copy = stridedCopy(launch, dims);
      CUdeviceptr dst = resolve(launch.args(0)) + copy.dst_offset;
      CUdeviceptr src = resolve(launch.args(1));
      std::string what = absl::StrCat("strided copy launch #", i, ", ",
                                      copy.rows, " rows of ", copy.row_bytes,
                                      " bytes");
      if (!copy.rows || !copy.row_bytes) {
        // Nothing to copy.
      } else if (copy.rows == 1) {
        status = check(api->cuMemcpyDtoDAsync(dst, src, copy.row_bytes,
                                              stream),
                       "cuMemcpyDtoDAsync", what);
      } else if (api->cuMemcpy2DAsync) {
        Memcpy2D desc{};
        desc.srcMemoryType = desc.dstMemoryType = kMemoryTypeDevice;
        desc.srcDevice = src;
        desc.srcPitch = copy.row_bytes;
        desc.dstDevice = dst;
        desc.dstPitch = copy.dst_pitch;
        desc.WidthInBytes = copy.row_bytes;
        desc.Height = copy.rows;
        status = check(api->cuMemcpy2DAsync(&desc, stream), "cuMemcpy2DAsync",
                       what);
      } else {
        for (uint64_t r = 0; r < copy.rows && status.ok(); ++r)
          status = check(api->cuMemcpyDtoDAsync(dst + r * copy.dst_pitch,
                                                src + r * copy.row_bytes,
                                                copy.row_bytes, stream),
                         "cuMemcpyDtoDAsync", what);
      }
    } else {
      uint64_t grid[3], block[3];
      for (int d = 0; d < 3; ++d) {
        grid[d] = gridDim(launch, d, dims);
        block[d] = launch.block(d);
      }
      std::string shape =
          describeLaunch(artifact->manifest(), launch, i, grid, block);
      // An empty grid (a symbolic dim of 0) has no work: nothing to launch.
      if (!grid[0] || !grid[1] || !grid[2]) {
        if (status.ok() && launchMs)
          status = check(api->cuEventRecord(events[2 * i + 1], stream),
                         "cuEventRecord");
        continue;
      }
      if (absl::Status st = checkLaunchShape(grid, block, shape); !st.ok()) {
        status = st;
        break;
      }
      pointers.clear();
      for (const auto &ref : launch.args())
        pointers.push_back(resolve(ref));
      for (int t = 0; t < launch.tensor_maps_size(); ++t)
        pointers.push_back(state.mapTable +
                           (state.firstMap[i] + t) * kTensorMapBytes);
      scalars.clear();
      for (uint32_t e : launch.scalar_args())
        scalars.push_back(dims[e]);
      params.clear();
      for (CUdeviceptr &p : pointers)
        params.push_back(&p);
      for (int64_t &v : scalars)
        params.push_back(&v);
      const artifact::Kernel &kernel = artifact->manifest().kernels(launch.kernel());
      if (kernel.cluster_size() == 0) {
        status = check(
            api->cuLaunchKernel(functions[launch.kernel()],
                                static_cast<unsigned>(grid[0]),
                                static_cast<unsigned>(grid[1]),
                                static_cast<unsigned>(grid[2]),
                                static_cast<unsigned>(block[0]),
                                static_cast<unsigned>(block[1]),
                                static_cast<unsigned>(block[2]),
                                dynamicShared[launch.kernel()], stream,
                                params.data(), nullptr),
            "cuLaunchKernel", shape);
      } else {
        // Thread-block clusters: the grid must be a multiple of the
        // cluster in every dim (a symbolic grid is checked here).
        for (int d = 0; d < 3 && status.ok(); ++d)
          if (grid[d] % kernel.cluster(d))
            status = absl::InvalidArgumentError(absl::StrCat(
                shape, ": the grid is not a multiple of the kernel's cluster (",
                kernel.cluster(0), ", ", kernel.cluster(1), ", ",
                kernel.cluster(2), ")"));
        if (!status.ok())
          break;
        LaunchAttribute cluster = {};
        cluster.id = kLaunchAttributeClusterDimension;
        cluster.value.clusterDim = {kernel.cluster(0), kernel.cluster(1),
                                    kernel.cluster(2)};
        LaunchConfig config = {static_cast<unsigned>(grid[0]),
                               static_cast<unsigned>(grid[1]),
                               static_cast<unsigned>(grid[2]),
                               static_cast<unsigned>(block[0]),
                               static_cast<unsigned>(block[1]),
                               static_cast<unsigned>(block[2]),
                               dynamicShared[launch.kernel()],
                               stream,
                               &cluster,
                               1};
        status = check(api->cuLaunchKernelEx(&config, functions[launch.kernel()],
                                             params.data(), nullptr),
                       "cuLaunchKernelEx",
                       absl::StrCat(shape, " cluster (", kernel.cluster(0),
                                    ", ", kernel.cluster(1), ", ",
                                    kernel.cluster(2), ")"));
      }
    }
    if (status.ok() && launchMs)
      status = check(api->cuEventRecord(events[2 * i + 1], stream),
                     "cuEventRecord");
  }
  if (status.ok() && launchMs) {
    status = check(api->cuStreamSynchronize(stream), "kernel execution");
    for (int i = 0; i < entry.launches_size() && status.ok(); ++i) {
      float ms = 0;
      status = check(api->cuEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]),
                     "cuEventElapsedTime");
      (*launchMs)[i] += ms;
    }
  }
  destroyEvents();
  return status;
}

absl::Status CudaBackend::copyInputs(const artifact::EntryPoint &entry,
                                     const std::vector<int64_t> &dims,
                                     EntryState &state,
                                     const kiln_tensor *inputs) {
  // The spec's bytes for these dims, never the caller's size_bytes (which
  // may be larger): the device buffer holds exactly the planned tensor.
  for (int i = 0; i < entry.inputs_size(); ++i)
    if (uint64_t bytes = *tensorBytes(entry.inputs(i), dims))
      if (absl::Status st = check(
              api->cuMemcpyHtoDAsync(state.inputs[i], inputs[i].data, bytes,
                                     stream),
              "cuMemcpyHtoDAsync (input)",
              absl::StrCat("input '", entry.inputs(i).name(), "'"));
          !st.ok())
        return st;
  return absl::OkStatus();
}

absl::Status CudaBackend::checkLaunchShape(const uint64_t grid[3],
                                           const uint64_t block[3],
                                           const std::string &shape) const {
  static const char *axis[3] = {"x", "y", "z"};
  for (int d = 0; d < 3; ++d) {
    if (!block[d] || block[d] > kMaxBlock[d])
      return absl::InvalidArgumentError(absl::StrCat(
          shape, ": block ", axis[d], " must be 1..", kMaxBlock[d],
          "; the artifact is malformed, compile it again"));
    if (grid[d] > kMaxGrid[d])
      return absl::InvalidArgumentError(absl::StrCat(
          shape, ": grid ", axis[d], " exceeds the device limit of ",
          kMaxGrid[d], " blocks; the kernel was compiled for a problem this "
          "large without splitting it (reduce the batch or dims)"));
  }
  if (block[0] * block[1] * block[2] > kMaxBlockThreads)
    return absl::InvalidArgumentError(absl::StrCat(
        shape, ": a block of more than ", kMaxBlockThreads,
        " threads; the artifact is malformed, compile it again"));
  return absl::OkStatus();
}

absl::Status CudaBackend::copyOutputs(const artifact::EntryPoint &entry,
                                      const std::vector<int64_t> &dims,
                                      EntryState &state,
                                      kiln_tensor *outputs) {
  for (int i = 0; i < entry.outputs_size(); ++i)
    if (uint64_t bytes = *tensorBytes(entry.outputs(i), dims))
      if (absl::Status st = check(
              api->cuMemcpyDtoHAsync(outputs[i].data, state.outputs[i],
                                     bytes, stream),
              "cuMemcpyDtoHAsync (output)");
          !st.ok())
        return st;
  return absl::OkStatus();
}

absl::Status CudaBackend::enqueue(const artifact::EntryPoint &entry,
                                  const std::vector<int64_t> &dims,
                                  const kiln_tensor *inputs,
                                  kiln_tensor *outputs) {
  absl::StatusOr<EntryState *> prepared = prepare(entry);
  if (!prepared.ok())
    return prepared.status();
  EntryState &state = **prepared;
  if (absl::Status st = copyInputs(entry, dims, state, inputs); !st.ok())
    return st;
  if (absl::Status st = uploadTensorMaps(entry, dims, state); !st.ok())
    return st;
  auto captured = state.graphs.find(dims);
  Handle graphExec = nullptr;
  if (captured != state.graphs.end()) {
    graphExec = captured->second.exec;
    captured->second.lastUse = ++runs;
  }
  // An entry that writes its state at a position that moves from run to run
  // (a decode step) would capture a graph per position: it launches
  // directly.
  bool capture = graphs && !state.movesState;
  if (capture && !graphExec) {
    // A full cache gives up its least recently used graph first (after the
    // stream is done with it).
    if (state.graphs.size() >= graphCacheSize) {
      auto oldest = std::min_element(
          state.graphs.begin(), state.graphs.end(),
          [](const auto &a, const auto &b) {
            return a.second.lastUse < b.second.lastUse;
          });
      if (absl::Status st = check(api->cuStreamSynchronize(stream),
                                  "cuStreamSynchronize");
          !st.ok())
        return st;
      api->cuGraphExecDestroy(oldest->second.exec);
      state.graphs.erase(oldest);
    }
    // First run with these dims: capture the launches into a graph.
    if (absl::Status st = check(
            api->cuStreamBeginCapture(stream, kCaptureModeThreadLocal),
            "cuStreamBeginCapture");
        !st.ok())
      return st;
    absl::Status launched = enqueueLaunches(entry, dims, state, nullptr);
    Handle graph = nullptr;
    absl::Status ended =
        check(api->cuStreamEndCapture(stream, &graph), "cuStreamEndCapture");
    if (!launched.ok() || !ended.ok()) {
      if (graph)
        api->cuGraphDestroy(graph);
      return launched.ok() ? ended : launched;
    }
    Handle exec = nullptr;
    absl::Status instantiated = check(
        api->cuGraphInstantiate(&exec, graph, 0), "cuGraphInstantiate");
    api->cuGraphDestroy(graph);
    if (!instantiated.ok())
      return instantiated;
    state.graphs[dims] = {exec, ++runs};
    graphExec = exec;
  }
  if (graphExec) {
    if (absl::Status st =
            check(api->cuGraphLaunch(graphExec, stream), "cuGraphLaunch");
        !st.ok())
      return st;
  } else if (absl::Status st = enqueueLaunches(entry, dims, state, nullptr);
             !st.ok()) {
    return st;
  }
  if (absl::Status st = copyOutputs(entry, dims, state, outputs); !st.ok())
    return st;
  return absl::OkStatus();
}

absl::Status CudaBackend::runAsync(const artifact::EntryPoint &entry,
                                   const std::vector<int64_t> &dims,
                                   const kiln_tensor *inputs,
                                   kiln_tensor *outputs) {
  CurrentContext current(*this);
  if (!current.status.ok())
    return current.status;
  return enqueue(entry, dims, inputs, outputs);
}

absl::Status CudaBackend::synchronize() {
  CurrentContext current(*this);
  if (!current.status.ok())
    return current.status;
  return check(api->cuStreamSynchronize(stream), "kernel execution");
}

absl::Status CudaBackend::run(const artifact::EntryPoint &entry,
                              const std::vector<int64_t> &dims,
                              const kiln_tensor *inputs, kiln_tensor *outputs) {
  CurrentContext current(*this);
  if (!current.status.ok())
    return current.status;
  if (absl::Status st = enqueue(entry, dims, inputs, outputs); !st.ok()) {
    api->cuStreamSynchronize(stream);
    return st;
  }
  return synchronize();
}

absl::Status CudaBackend::profile(const artifact::EntryPoint &entry,
                                  const std::vector<int64_t> &dims,
                                  const kiln_tensor *inputs,
                                  kiln_tensor *outputs, int iterations,
                                  std::vector<double> &launchMs) {
  CurrentContext current(*this);
  if (!current.status.ok())
    return current.status;
  absl::StatusOr<EntryState *> prepared = prepare(entry);
  if (!prepared.ok())
    return prepared.status();
  EntryState &state = **prepared;
  launchMs.assign(entry.launches_size(), 0.0);
  if (absl::Status st = copyInputs(entry, dims, state, inputs); !st.ok())
    return st;
  if (absl::Status st = uploadTensorMaps(entry, dims, state); !st.ok())
    return st;
  for (int it = 0; it < iterations; ++it)
    if (absl::Status st = enqueueLaunches(entry, dims, state, &launchMs);
        !st.ok())
      return st;
  if (absl::Status st = copyOutputs(entry, dims, state, outputs); !st.ok())
    return st;
  return synchronize();
}

}  // namespace kiln::runtime
