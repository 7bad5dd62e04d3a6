// A stand-in for libcuda.so.1 that runs on the CPU, for the CUDA backend's
// tests on machines without a GPU (KILN_CUDA_DRIVER=<this library>).
//
// It is strict where the real driver is strict, so that code that only
// works on a lenient driver fails here first:
// - a current context per thread (cuCtxSetCurrent, cuCtxPushCurrent/
//   cuCtxPopCurrent); calls that need one fail with
//   CUDA_ERROR_INVALID_CONTEXT without it;
// - launches are checked against the block (x, y <= 1024, z <= 64,
//   x*y*z <= 1024), grid (x < 2^31, y, z <= 65535) and shared-memory
//   (48 KiB) limits; a zero dimension is CUDA_ERROR_INVALID_VALUE;
// - copies are bounds-checked against their allocations, and zero-byte
//   allocations and copies are refused (stricter than the driver, which
//   accepts a zero-byte copy: the backend must skip them);
// - cuMemcpyHtoD from pageable memory returns before the data lands: it
//   lands at the next cuCtxSynchronize or legacy-stream synchronize, so a
//   kernel on a non-blocking stream that does not wait sees stale memory;
// - after an error of the illegal-address class every later call fails
//   with it (sticky), as the context is lost on a GPU;
// - destroying a handle that was never created is CUDA_ERROR_INVALID_HANDLE
//   (and counted as "invalid_handles").
// - a kernel is looked up in its image: a real cubin's .nv.info sections or
//   PTX's .entry list (MockKernelParams.h) give its parameters, which
//   cuFuncGetParamInfo reports (drivers from 12.4) and launches check
//   (all given, within the 4 KiB / 32,764-byte limit);
// - cuTensorMapEncodeTiled checks what the driver checks (alignment of the
//   map and the address, ranks, extents, 16-byte strides, box sizes, the
//   inner box against the swizzle span) and, stricter, that the tensor
//   lies in one allocation; cuLaunchKernelEx checks cluster launches
//   (sm_90+, the grid a multiple of the cluster, at most 8 blocks).
//
// Device memory is host memory (zeroed) with a budget
// (KILN_MOCK_CUDA_MEMORY_BYTES, default 1 GiB) so that out-of-memory paths
// can be reached; the device's compute capability is KILN_MOCK_CUDA_CC
// (default 80) or kiln_mock_cuda_set_device(major, minor); the driver
// version is KILN_MOCK_CUDA_DRIVER_VERSION (default 13000: CUDA 13.0) or
// kiln_mock_cuda_set_driver_version(v); the fake cubins stand for CUDA 13
// ptxas output, which drivers before 13.0 refuse.
// kiln_mock_cuda_fail(call, code) makes the next call of `call` return
// `code`. Modules are cubins (ELF) or PTX text; PTX that contains
// "mock-invalid-ptx" fails to JIT with a log. Kernels do nothing, except
// `add_one`, which reads 4 floats from its first parameter and writes them
// plus one to its second (`add_one_n`: n of them, n its third), and
// `tma_copy`, which reads the tensor its second parameter's TMA descriptor
// describes and writes it densely to its first. Stream capture records launches and
// device-to-device copies into a graph that cuGraphLaunch replays; host
// copies during capture fail as they do on a GPU with pageable memory.
// Every kernel advances a fake clock by 0.25 ms, which is what events
// measure. kiln_mock_cuda_counter(name) reports what happened.
#include "MockKernelParams.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

using CUresult = int;
using Ptr = unsigned long long;

constexpr CUresult kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2,
                   kInvalidImage = 200, kInvalidContext = 201,
                   kInvalidPtx = 218, kUnsupportedPtxVersion = 222,
                   kInvalidHandle = 400, kNotFound = 500,
                   kIllegalAddress = 700, kLaunchFailed = 719,
                   kNotSupported = 801,
                   kCaptureUnsupported = 900;

struct Module {
  // The kernels of a real cubin or PTX image; nullopt for the unit tests'
  // fake images, whose kernels are the mock's own (kFakeKernels).
  std::optional<kiln::mock::KernelParams> kernels;
};
struct Function {
  std::string symbol;
  unsigned maxDynamicShared = 48 * 1024;  // cuFuncSetAttribute raises it
  std::optional<std::vector<size_t>> params;  // sizes, when known
};
// The parameters of the mock's own kernels (see the file comment).
const std::map<std::string, std::vector<size_t>> kFakeKernels = {
    {"add_one", {8, 8}}, {"add_one_n", {8, 8, 8}}, {"tma_copy", {8, 8}}};

// The mock's encoding of a CUtensorMap (the real one is opaque): what
// cuTensorMapEncodeTiled was given, behind a magic number.
struct MockTensorMap {
  uint32_t magic;
  uint8_t dataType, rank, swizzle, elementBytes;
  Ptr address;
  uint64_t dims[5];
  uint64_t strides[4];
  uint16_t box[5];
  uint8_t elementStrides[5];
};
static_assert(sizeof(MockTensorMap) <= 128, "a CUtensorMap is 128 bytes");
constexpr uint32_t kTensorMapMagic = 0x544d4150;  // TMAP
struct Stream {
  bool capturing = false;
  std::vector<std::function<void()>> captured;
};
struct Graph {
  std::vector<std::function<void()>> ops;
};
struct Event {
  double ms = 0;
};

struct State {
  std::recursive_mutex mutex;
  std::map<Ptr, size_t> allocations;
  size_t used = 0;
  double clockMs = 0;
  std::map<std::string, long> counters;
  int ccOverride = 0;
  int driverVersion = 0;  // 0: KILN_MOCK_CUDA_DRIVER_VERSION or 13000
  CUresult sticky = kSuccess;
  std::map<std::string, CUresult> failNext;
  // Pageable host-to-device copies not yet landed: destination and bytes.
  std::vector<std::pair<Ptr, std::string>> pendingUploads;
  std::set<void *> graphs, graphExecs, streams, events;
} state;

thread_local std::vector<void *> contextStack;

long envNumber(const char *name, long fallback) {
  const char *v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

bool isSticky(CUresult rc) {
  return rc == kIllegalAddress || rc == 702 || (rc >= 714 && rc <= 719);
}

/// What every call but the context-free ones checks first: a sticky error,
/// an injected failure, and (when `needsContext`) a current context.
CUresult enter(const char *call, bool needsContext = true) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  if (state.sticky)
    return state.sticky;
  if (auto it = state.failNext.find(call); it != state.failNext.end()) {
    CUresult rc = it->second;
    state.failNext.erase(it);
    if (isSticky(rc))
      state.sticky = rc;
    return rc;
  }
  if (needsContext && (contextStack.empty() || !contextStack.back())) {
    ++state.counters["invalid_context"];
    return kInvalidContext;
  }
  return kSuccess;
}

#define ENTER(call, ...)                                                       \
  if (CUresult rc_ = enter(call, ##__VA_ARGS__); rc_ != kSuccess)              \
  return rc_

/// Whether [ptr, ptr + bytes) lies in one allocation.
bool inBounds(Ptr ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  auto it = state.allocations.upper_bound(ptr);
  if (it == state.allocations.begin())
    return false;
  --it;
  return ptr >= it->first && ptr - it->first <= it->second &&
         bytes <= it->second - (ptr - it->first);
}

CUresult checkCopy(Ptr ptr, size_t bytes) {
  if (bytes == 0) {
    ++state.counters["zero_size_calls"];
    return kInvalidValue;
  }
  if (!inBounds(ptr, bytes)) {
    ++state.counters["out_of_bounds_copies"];
    return kInvalidValue;
  }
  return kSuccess;
}

void landUploads() {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  for (auto &[dst, bytes] : state.pendingUploads)
    std::memcpy(reinterpret_cast<void *>(dst), bytes.data(), bytes.size());
  state.pendingUploads.clear();
}

/// Runs `op` now, or records it when the stream is capturing.
CUresult submit(void *stream, std::function<void()> op) {
  auto *s = static_cast<Stream *>(stream);
  if (s && s->capturing) {
    s->captured.push_back(std::move(op));
    return kSuccess;
  }
  op();
  return kSuccess;
}

bool capturing(void *stream) {
  return stream && static_cast<Stream *>(stream)->capturing;
}

CUresult destroyHandle(std::set<void *> &live, void *handle) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  if (!live.erase(handle)) {
    ++state.counters["invalid_handles"];
    return kInvalidHandle;
  }
  return kSuccess;
}

int computeCapability() {
  return state.ccOverride ? state.ccOverride
                          : static_cast<int>(envNumber("KILN_MOCK_CUDA_CC", 80));
}

} // namespace

extern "C" {

__attribute__((visibility("default"))) long
kiln_mock_cuda_counter(const char *name) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  if (std::string(name) == "live_allocations")
    return static_cast<long>(state.allocations.size());
  return state.counters[name];
}

/// Forgets counters, overrides, injected failures and the sticky error,
/// and frees what the last test leaked (a lost context frees nothing).
__attribute__((visibility("default"))) void kiln_mock_cuda_reset() {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  for (auto &[ptr, bytes] : state.allocations)
    std::free(reinterpret_cast<void *>(ptr));
  state.allocations.clear();
  state.used = 0;
  state.counters.clear();
  state.ccOverride = 0;
  state.driverVersion = 0;
  state.sticky = kSuccess;
  state.failNext.clear();
  state.pendingUploads.clear();
}

__attribute__((visibility("default"))) void
kiln_mock_cuda_set_device(int major, int minor) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.ccOverride = major * 10 + minor;
}

__attribute__((visibility("default"))) void
kiln_mock_cuda_set_driver_version(int version) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.driverVersion = version;
}

/// The next call of the driver function `call` returns `code`.
__attribute__((visibility("default"))) void
kiln_mock_cuda_fail(const char *call, int code) {
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.failNext[call] = code;
}

CUresult cuInit(unsigned) { return kSuccess; }
static int mockDriverVersion() {
  return state.driverVersion
             ? state.driverVersion
             : static_cast<int>(envNumber("KILN_MOCK_CUDA_DRIVER_VERSION", 13000));
}
CUresult cuDriverGetVersion(int *version) {
  *version = mockDriverVersion();
  return kSuccess;
}
CUresult cuDeviceGetCount(int *count) {
  *count = 1;
  return kSuccess;
}
CUresult cuDeviceGet(int *device, int ordinal) {
  if (ordinal != 0)
    return kInvalidValue;
  *device = 0;
  return kSuccess;
}
/// What a block may opt into per compute capability (the CUDA guide's
/// table): 163 KiB on 8.0, 99 KiB on 8.6 and 8.9, 227 KiB on 9.0 and 10.0.
static int optinSharedBytes(int cc) {
  if (cc == 86 || cc == 89 || cc >= 120)
    return 99 * 1024;
  if (cc >= 90)
    return 227 * 1024;
  if (cc >= 80)
    return 163 * 1024;
  return 48 * 1024;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, int) {
  int cc = computeCapability();
  if (attribute == 75)
    *value = cc / 10;
  else if (attribute == 76)
    *value = cc % 10;
  else if (attribute == 97)  // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    *value = optinSharedBytes(cc);
  else
    *value = 0;
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRetain(void **context, int) {
  static int primary;
  *context = &primary;
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return kSuccess; }
CUresult cuCtxSetCurrent(void *context) {
  ENTER("cuCtxSetCurrent", false);
  if (contextStack.empty())
    contextStack.push_back(context);
  else
    contextStack.back() = context;
  return kSuccess;
}
CUresult cuCtxGetCurrent(void **context) {
  *context = contextStack.empty() ? nullptr : contextStack.back();
  return kSuccess;
}
CUresult cuCtxPushCurrent_v2(void *context) {
  ENTER("cuCtxPushCurrent", false);
  if (!context)
    return kInvalidContext;
  contextStack.push_back(context);
  return kSuccess;
}
CUresult cuCtxPopCurrent_v2(void **context) {
  ENTER("cuCtxPopCurrent", false);
  if (contextStack.empty())
    return kInvalidContext;
  if (context)
    *context = contextStack.back();
  contextStack.pop_back();
  return kSuccess;
}
CUresult cuCtxSynchronize() {
  ENTER("cuCtxSynchronize");
  landUploads();
  return kSuccess;
}

CUresult cuModuleLoadDataEx(void **module, const void *image,
                            unsigned numOptions, int *options,
                            void **optionValues) {
  ENTER("cuModuleLoadData");
  const char *bytes = static_cast<const char *>(image);
  if (std::memcmp(bytes, "\x7f" "ELF", 4) == 0 && mockDriverVersion() < 13000) {
    ++state.counters["cubin_refusals"];
    return kUnsupportedPtxVersion;
  }
  if (std::memcmp(bytes, "\x7f" "ELF", 4) == 0) {
    ++state.counters["cubin_loads"];
  } else if (std::strncmp(bytes, "//", 2) == 0 ||
             std::strncmp(bytes, ".version", 8) == 0) {
    ++state.counters["ptx_loads"];
    if (std::strstr(bytes, "mock-invalid-ptx")) {
      char *log = nullptr;
      size_t logSize = 0;
      for (unsigned i = 0; i < numOptions; ++i) {
        if (options[i] == 5)  // CU_JIT_ERROR_LOG_BUFFER
          log = static_cast<char *>(optionValues[i]);
        if (options[i] == 6)  // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
          logSize = reinterpret_cast<uintptr_t>(optionValues[i]);
      }
      if (log && logSize)
        std::snprintf(log, logSize,
                      "ptxas application ptx input, line 1; error   : "
                      "mock-invalid-ptx is not a PTX instruction");
      return kInvalidPtx;
    }
  } else {
    return kInvalidImage;
  }
  *module = new Module{kiln::mock::readKernelParams(image)};
  return kSuccess;
}
CUresult cuModuleLoadData(void **module, const void *image) {
  return cuModuleLoadDataEx(module, image, 0, nullptr, nullptr);
}
CUresult cuModuleUnload(void *module) {
  ENTER("cuModuleUnload");
  delete static_cast<Module *>(module);
  return kSuccess;
}
CUresult cuFuncSetAttribute(void *function, int attribute, int value) {
  ENTER("cuFuncSetAttribute");
  if (!function)
    return kInvalidHandle;
  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, up to the opt-in limit.
  if (attribute != 8 || value < 0 || value > optinSharedBytes(computeCapability()))
    return kInvalidValue;
  static_cast<Function *>(function)->maxDynamicShared = unsigned(value);
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  ++state.counters["shared_opt_ins"];
  return kSuccess;
}

CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
  ENTER("cuModuleGetFunction");
  if (!module)
    return kInvalidHandle;
  if (!name || !*name)
    return kNotFound;
  // A real image must define the kernel; a fake one has the mock's own.
  const auto &kernels = static_cast<Module *>(module)->kernels;
  std::optional<std::vector<size_t>> params;
  if (kernels) {
    auto it = kernels->find(name);
    if (it == kernels->end())
      return kNotFound;
    params = it->second;
  } else if (auto it = kFakeKernels.find(name); it != kFakeKernels.end()) {
    params = it->second;
  }
  *function = new Function{name, 48 * 1024, params};  // leaked with the module
  return kSuccess;
}

/// CUDA 12.4: a parameter's offset and size; CUDA_ERROR_INVALID_VALUE past
/// the last one; CUDA_ERROR_NOT_SUPPORTED for a fake kernel the mock does
/// not know.
CUresult cuFuncGetParamInfo(void *function, size_t index, size_t *offset,
                            size_t *size) {
  ENTER("cuFuncGetParamInfo");
  if (!function)
    return kInvalidHandle;
  if (mockDriverVersion() < 12040)
    return kNotSupported;
  const auto &params = static_cast<Function *>(function)->params;
  if (!params)
    return kNotSupported;
  if (index >= params->size())
    return kInvalidValue;
  size_t at = 0;
  for (size_t i = 0;; ++i) {
    size_t bytes = (*params)[i];
    size_t align = std::max<size_t>(1, std::min<size_t>(bytes, 8));
    at = (at + align - 1) / align * align;
    if (i == index) {
      *offset = at;
      *size = bytes;
      return kSuccess;
    }
    at += bytes;
  }
}

CUresult cuTensorMapEncodeTiled(void *tensorMap, int dataType, uint32_t rank,
                                void *address, const uint64_t *dims,
                                const uint64_t *strides, const uint32_t *box,
                                const uint32_t *elementStrides, int interleave,
                                int swizzle, int l2Promotion, int oobFill) {
  ENTER("cuTensorMapEncodeTiled", false);
  static const uint8_t kElementBytes[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2};
  Ptr base = reinterpret_cast<Ptr>(address);
  auto refuse = [](const char *why) {
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    ++state.counters["invalid_tensor_maps"];
    ++state.counters[std::string("invalid_tensor_maps.") + why];
    return kInvalidValue;
  };
  if (!tensorMap || reinterpret_cast<uintptr_t>(tensorMap) % 64)
    return refuse("map_alignment");
  if (dataType < 0 || dataType > 9 || rank < 1 || rank > 5 || interleave != 0 ||
      swizzle < 0 || swizzle > 3 || l2Promotion < 0 || l2Promotion > 3 ||
      oobFill < 0 || oobFill > 1)
    return refuse("enum");
  if (base % 16)
    return refuse("address_alignment");
  unsigned elementBytes = kElementBytes[dataType];
  uint64_t lastByte = elementBytes;  // one past the farthest element
  for (uint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t(1) << 32))
      return refuse("dim");
    if (box[i] == 0 || box[i] > 256 || elementStrides[i] == 0 ||
        elementStrides[i] > 8)
      return refuse("box");
    uint64_t stride = i == 0 ? elementBytes : strides[i - 1];
    if (i > 0 && (stride % 16 || stride >= (uint64_t(1) << 40)))
      return refuse("stride");
    lastByte += (dims[i] - 1) * stride;
  }
  uint64_t innerBytes = uint64_t(box[0]) * elementBytes;
  if (innerBytes % 16 || (swizzle && innerBytes > (16u << swizzle)))
    return refuse("inner_box");
  // Stricter than the driver, which cannot know: the tensor lies in one
  // allocation (a TMA load outside it faults on a GPU).
  if (!inBounds(base, lastByte))
    return refuse("out_of_bounds");
  MockTensorMap map = {};
  map.magic = kTensorMapMagic;
  map.dataType = uint8_t(dataType);
  map.rank = uint8_t(rank);
  map.swizzle = uint8_t(swizzle);
  map.elementBytes = uint8_t(elementBytes);
  map.address = base;
  for (uint32_t i = 0; i < rank; ++i) {
    map.dims[i] = dims[i];
    map.box[i] = uint16_t(box[i]);
    map.elementStrides[i] = uint8_t(elementStrides[i]);
    if (i > 0)
      map.strides[i - 1] = strides[i - 1];
  }
  std::memset(tensorMap, 0, 128);
  std::memcpy(tensorMap, &map, sizeof(map));
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  ++state.counters["tensor_maps_encoded"];
  return kSuccess;
}

CUresult cuMemAlloc_v2(Ptr *ptr, size_t bytes) {
  ENTER("cuMemAlloc");
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  size_t budget = static_cast<size_t>(
      envNumber("KILN_MOCK_CUDA_MEMORY_BYTES", 1l << 30));
  if (bytes == 0) {
    ++state.counters["zero_size_calls"];
    return kInvalidValue;
  }
  if (state.used + bytes > budget)
    return kOutOfMemory;
  size_t rounded = (bytes + 255) / 256 * 256;
  void *p = std::aligned_alloc(256, rounded);
  std::memset(p, 0, rounded);
  *ptr = reinterpret_cast<Ptr>(p);
  state.allocations[*ptr] = bytes;
  state.used += bytes;
  ++state.counters["allocations"];
  return kSuccess;
}
CUresult cuMemFree_v2(Ptr ptr) {
  ENTER("cuMemFree");
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  auto it = state.allocations.find(ptr);
  if (it == state.allocations.end()) {
    ++state.counters["invalid_handles"];
    return kInvalidValue;
  }
  state.used -= it->second;
  auto &pending = state.pendingUploads;
  pending.erase(std::remove_if(pending.begin(), pending.end(),
                               [&](const auto &upload) {
                                 return upload.first >= ptr &&
                                        upload.first - ptr < it->second;
                               }),
                pending.end());
  state.allocations.erase(it);
  std::free(reinterpret_cast<void *>(ptr));
  return kSuccess;
}
CUresult cuMemcpyHtoD_v2(Ptr dst, const void *src, size_t bytes) {
  ENTER("cuMemcpyHtoD");
  if (CUresult rc = checkCopy(dst, bytes))
    return rc;
  // Staged, not landed: see the file comment.
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.pendingUploads.emplace_back(
      dst, std::string(static_cast<const char *>(src), bytes));
  return kSuccess;
}
CUresult cuMemcpyHtoDAsync_v2(Ptr dst, const void *src, size_t bytes,
                              void *stream) {
  ENTER("cuMemcpyHtoDAsync");
  if (capturing(stream))
    return kCaptureUnsupported;
  if (CUresult rc = checkCopy(dst, bytes))
    return rc;
  return submit(stream, [=] {
    std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  });
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, Ptr src, size_t bytes, void *stream) {
  ENTER("cuMemcpyDtoHAsync");
  if (capturing(stream))
    return kCaptureUnsupported;
  if (CUresult rc = checkCopy(src, bytes))
    return rc;
  return submit(stream, [=] {
    std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  });
}
CUresult cuMemcpyDtoDAsync_v2(Ptr dst, Ptr src, size_t bytes, void *stream) {
  ENTER("cuMemcpyDtoDAsync");
  if (CUresult rc = checkCopy(dst, bytes))
    return rc;
  if (CUresult rc = checkCopy(src, bytes))
    return rc;
  return submit(stream, [=] {
    std::memmove(reinterpret_cast<void *>(dst),
                 reinterpret_cast<const void *>(src), bytes);
  });
}

struct Memcpy2D {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  Ptr srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  Ptr dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};
// Declared with the parameter types the runtime calls it through (an
// opaque description), as cuLaunchKernelEx is: a call through a pointer of
// another function type is undefined behaviour (UBSan's -fsanitize=function
// found it).
CUresult cuMemcpy2DAsync_v2(const void *description, void *stream) {
  const auto *copy = static_cast<const Memcpy2D *>(description);
  ENTER("cuMemcpy2DAsync");
  ++state.counters["memcpy2d"];
  constexpr int kDevice = 2;
  if (!copy || copy->srcMemoryType != kDevice ||
      copy->dstMemoryType != kDevice || copy->srcXInBytes || copy->srcY ||
      copy->dstXInBytes || copy->dstY || copy->WidthInBytes > copy->srcPitch ||
      copy->WidthInBytes > copy->dstPitch)
    return kInvalidValue;
  Memcpy2D c = *copy;
  for (size_t r = 0; r < c.Height; ++r) {
    if (CUresult rc = checkCopy(c.srcDevice + r * c.srcPitch, c.WidthInBytes))
      return rc;
    if (CUresult rc = checkCopy(c.dstDevice + r * c.dstPitch, c.WidthInBytes))
      return rc;
  }
  return submit(stream, [=] {
    for (size_t r = 0; r < c.Height; ++r)
      std::memmove(reinterpret_cast<void *>(c.dstDevice + r * c.dstPitch),
                   reinterpret_cast<const void *>(c.srcDevice + r * c.srcPitch),
                   c.WidthInBytes);
  });
}

namespace {

/// What cuLaunchKernel and cuLaunchKernelEx share: the checks a GPU makes
/// of a launch, then the kernel (most do nothing; see the file comment).
CUresult launch(void *function, const unsigned grid[3], const unsigned block[3],
                unsigned sharedBytes, void *stream, void **params,
                void **extra) {
  if (!function)
    return kInvalidHandle;
  auto *f = static_cast<Function *>(function);
  bool zero = !grid[0] || !grid[1] || !grid[2] || !block[0] || !block[1] ||
              !block[2];
  bool tooBig = block[0] > 1024 || block[1] > 1024 || block[2] > 64 ||
                uint64_t(block[0]) * block[1] * block[2] > 1024 ||
                grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535 ||
                sharedBytes > f->maxDynamicShared || (params && extra);
  // Kernel parameters: all of them given, within the driver's limit (4 KiB;
  // 32,764 bytes from CUDA 12.1 on sm_70 and newer).
  size_t paramBytes = 0;
  if (f->params)
    for (size_t bytes : *f->params)
      paramBytes += bytes;
  size_t paramLimit = mockDriverVersion() >= 12010 ? 32764 : 4096;
  bool badParams = f->params && ((!f->params->empty() && !params && !extra) ||
                                 paramBytes > paramLimit);
  if (zero || tooBig || badParams) {
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    ++state.counters[zero     ? "zero_size_calls"
                     : tooBig ? "invalid_launches"
                              : "invalid_parameters"];
    return kInvalidValue;
  }
  std::string symbol = f->symbol;
  {
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    state.counters["last_shared_bytes"] = sharedBytes;
  }
  Ptr in = 0, out = 0;
  if (symbol == "add_one" || symbol == "add_one_n" || symbol == "tma_copy") {
    if (!params)
      return kInvalidValue;
    in = *static_cast<Ptr *>(params[0]);
    out = *static_cast<Ptr *>(params[1]);
    if (symbol == "tma_copy")  // (out, descriptor): buffers come first
      std::swap(in, out);
  }
  auto fault = [] {
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    state.sticky = kIllegalAddress;
    return kIllegalAddress;
  };
  if (symbol == "add_one" || symbol == "add_one_n") {
    // A kernel that reads or writes outside its buffers faults on a GPU.
    size_t bytes = symbol == "add_one" ? 16 : 4 * size_t(grid[0]);
    if (!inBounds(in, bytes) || !inBounds(out, bytes))
      return fault();
  }
  if (symbol == "tma_copy") {
    // Reads the whole tensor its descriptor (in device memory) describes
    // and writes it densely to its second parameter; a descriptor that is
    // not in device memory, misaligned or not encoded faults.
    if (in % 64 || !inBounds(in, 128))
      return fault();
    return submit(stream, [=] {
      MockTensorMap map;
      std::memcpy(&map, reinterpret_cast<const void *>(in), sizeof(map));
      std::lock_guard<std::recursive_mutex> lock(state.mutex);
      ++state.counters["kernels_run"];
      if (map.magic != kTensorMapMagic) {
        ++state.counters["unencoded_tensor_maps"];
        state.sticky = kIllegalAddress;
        return;
      }
      uint64_t count = 1;
      for (unsigned i = 0; i < map.rank; ++i)
        count *= map.dims[i];
      if (!inBounds(out, count * map.elementBytes)) {
        state.sticky = kIllegalAddress;
        return;
      }
      for (uint64_t e = 0; e < count; ++e) {
        uint64_t rest = e, at = 0;
        for (unsigned i = 0; i < map.rank; ++i) {
          at += (rest % map.dims[i]) *
                (i == 0 ? map.elementBytes : map.strides[i - 1]);
          rest /= map.dims[i];
        }
        std::memcpy(reinterpret_cast<char *>(out) + e * map.elementBytes,
                    reinterpret_cast<const char *>(map.address) + at,
                    map.elementBytes);
      }
      state.counters["last_tensor_map_elements"] = long(count);
    });
  }
  if (symbol == "add_one_n") {
    // Symbolic size: y[i] = x[i] + 1 for i < n, one block per element.
    int64_t n = *static_cast<int64_t *>(params[2]);
    state.counters["last_grid_x"] = grid[0];
    state.counters["last_size_arg"] = n;
    unsigned blocks = grid[0];
    return submit(stream, [=] {
      ++state.counters["kernels_run"];
      for (int64_t i = 0; i < n && i < static_cast<int64_t>(blocks); ++i)
        reinterpret_cast<float *>(out)[i] =
            reinterpret_cast<const float *>(in)[i] + 1.0f;
    });
  }
  return submit(stream, [=] {
    ++state.counters["kernels_run"];
    state.clockMs += 0.25;
    if (symbol == "add_one")
      for (int i = 0; i < 4; ++i)
        reinterpret_cast<float *>(out)[i] =
            reinterpret_cast<const float *>(in)[i] + 1.0f;
  });
}

// CUlaunchConfig and CUlaunchAttribute as cuda.h lays them out: the mock's
// own copy, not the runtime's, so that a layout mistake in either shows.
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
struct LaunchConfig {
  unsigned grid[3], block[3];
  unsigned sharedMemBytes;
  void *stream;
  LaunchAttribute *attrs;
  unsigned numAttrs;
};
static_assert(sizeof(LaunchAttribute) == 72 && sizeof(LaunchConfig) == 56,
              "cuda.h layouts");

}  // namespace

CUresult cuLaunchKernel(void *function, unsigned gridX, unsigned gridY,
                        unsigned gridZ, unsigned blockX, unsigned blockY,
                        unsigned blockZ, unsigned sharedBytes, void *stream,
                        void **params, void **extra) {
  ENTER("cuLaunchKernel");
  unsigned grid[3] = {gridX, gridY, gridZ}, block[3] = {blockX, blockY, blockZ};
  return launch(function, grid, block, sharedBytes, stream, params, extra);
}

/// CUDA 12.0: a launch with attributes; the mock knows the cluster
/// dimension (4): sm_90 and newer, the grid a multiple of the cluster, at
/// most 8 blocks per cluster (the portable size).
CUresult cuLaunchKernelEx(const void *configBytes, void *function,
                          void **params, void **extra) {
  ENTER("cuLaunchKernelEx");
  if (!configBytes)
    return kInvalidValue;
  const auto *config = static_cast<const LaunchConfig *>(configBytes);
  if (config->numAttrs && !config->attrs)
    return kInvalidValue;
  for (unsigned a = 0; a < config->numAttrs; ++a) {
    if (config->attrs[a].id != 4)
      continue;
    const auto &c = config->attrs[a].value.clusterDim;
    unsigned cluster[3] = {c.x, c.y, c.z};
    bool bad = computeCapability() < 90;
    for (int d = 0; d < 3; ++d)
      bad |= cluster[d] == 0 || config->grid[d] % cluster[d] != 0;
    bad |= uint64_t(c.x) * c.y * c.z > 8;
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    if (bad) {
      ++state.counters["invalid_clusters"];
      return kInvalidValue;
    }
    ++state.counters["cluster_launches"];
    state.counters["last_cluster_blocks"] = long(c.x) * c.y * c.z;
  }
  return launch(function, config->grid, config->block, config->sharedMemBytes,
                config->stream, params, extra);
}

CUresult cuStreamCreate(void **stream, unsigned) {
  ENTER("cuStreamCreate");
  *stream = new Stream();
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.streams.insert(*stream);
  ++state.counters["streams"];
  return kSuccess;
}
CUresult cuStreamDestroy_v2(void *stream) {
  ENTER("cuStreamDestroy");
  if (CUresult rc = destroyHandle(state.streams, stream))
    return rc;
  delete static_cast<Stream *>(stream);
  return kSuccess;
}
CUresult cuStreamSynchronize(void *stream) {
  ENTER("cuStreamSynchronize");
  if (!stream)
    landUploads();  // the legacy stream
  return capturing(stream) ? kCaptureUnsupported : kSuccess;
}
CUresult cuStreamBeginCapture_v2(void *stream, int) {
  ENTER("cuStreamBeginCapture");
  auto *s = static_cast<Stream *>(stream);
  if (!s || s->capturing)
    return kInvalidValue;
  s->capturing = true;
  s->captured.clear();
  ++state.counters["captures"];
  return kSuccess;
}
CUresult cuStreamEndCapture(void *stream, void **graph) {
  ENTER("cuStreamEndCapture");
  auto *s = static_cast<Stream *>(stream);
  if (!s || !s->capturing)
    return kInvalidValue;
  s->capturing = false;
  *graph = new Graph{std::move(s->captured)};
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.graphs.insert(*graph);
  return kSuccess;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph,
                                     unsigned long long) {
  ENTER("cuGraphInstantiate");
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  if (!state.graphs.count(graph))
    return kInvalidHandle;
  *exec = new Graph(*static_cast<Graph *>(graph));
  state.graphExecs.insert(*exec);
  return kSuccess;
}
CUresult cuGraphLaunch(void *exec, void *stream) {
  ENTER("cuGraphLaunch");
  {
    std::lock_guard<std::recursive_mutex> lock(state.mutex);
    if (!state.graphExecs.count(exec))
      return kInvalidHandle;
  }
  ++state.counters["graph_launches"];
  const auto &ops = static_cast<Graph *>(exec)->ops;
  return submit(stream, [ops] {
    for (const auto &op : ops)
      op();
  });
}
CUresult cuGraphExecDestroy(void *exec) {
  ENTER("cuGraphExecDestroy");
  if (CUresult rc = destroyHandle(state.graphExecs, exec))
    return rc;
  ++state.counters["graph_exec_destroys"];
  delete static_cast<Graph *>(exec);
  return kSuccess;
}
CUresult cuGraphDestroy(void *graph) {
  ENTER("cuGraphDestroy");
  if (CUresult rc = destroyHandle(state.graphs, graph))
    return rc;
  delete static_cast<Graph *>(graph);
  return kSuccess;
}

CUresult cuEventCreate(void **event, unsigned) {
  ENTER("cuEventCreate");
  *event = new Event();
  std::lock_guard<std::recursive_mutex> lock(state.mutex);
  state.events.insert(*event);
  return kSuccess;
}
CUresult cuEventDestroy_v2(void *event) {
  ENTER("cuEventDestroy");
  if (CUresult rc = destroyHandle(state.events, event))
    return rc;
  delete static_cast<Event *>(event);
  return kSuccess;
}
CUresult cuEventRecord(void *event, void *stream) {
  ENTER("cuEventRecord");
  return submit(stream, [event] {
    static_cast<Event *>(event)->ms = state.clockMs;
  });
}
CUresult cuEventElapsedTime_v2(float *ms, void *start, void *end) {
  ENTER("cuEventElapsedTime");
  *ms = static_cast<float>(static_cast<Event *>(end)->ms -
                           static_cast<Event *>(start)->ms);
  return kSuccess;
}

CUresult cuGetErrorName(CUresult result, const char **text) {
  switch (result) {
  case kSuccess: *text = "CUDA_SUCCESS"; break;
  case kInvalidValue: *text = "CUDA_ERROR_INVALID_VALUE"; break;
  case kOutOfMemory: *text = "CUDA_ERROR_OUT_OF_MEMORY"; break;
  case kInvalidImage: *text = "CUDA_ERROR_INVALID_IMAGE"; break;
  case kInvalidContext: *text = "CUDA_ERROR_INVALID_CONTEXT"; break;
  case kInvalidPtx: *text = "CUDA_ERROR_INVALID_PTX"; break;
  case kUnsupportedPtxVersion:
    *text = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
    break;
  case kInvalidHandle: *text = "CUDA_ERROR_INVALID_HANDLE"; break;
  case kNotFound: *text = "CUDA_ERROR_NOT_FOUND"; break;
  case kIllegalAddress: *text = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
  case kLaunchFailed: *text = "CUDA_ERROR_LAUNCH_FAILED"; break;
  case kCaptureUnsupported:
    *text = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
    break;
  default: *text = nullptr; return kInvalidValue;
  }
  return kSuccess;
}
CUresult cuGetErrorString(CUresult result, const char **text) {
  switch (result) {
  case kSuccess: *text = "no error"; break;
  case kInvalidValue: *text = "invalid argument"; break;
  case kOutOfMemory: *text = "out of memory"; break;
  case kInvalidImage: *text = "device kernel image is invalid"; break;
  case kInvalidContext: *text = "invalid device context"; break;
  case kInvalidPtx: *text = "a PTX JIT compilation failed"; break;
  case kUnsupportedPtxVersion:
    *text = "the provided PTX was compiled with an unsupported toolchain.";
    break;
  case kInvalidHandle: *text = "invalid resource handle"; break;
  case kNotFound: *text = "named symbol not found"; break;
  case kIllegalAddress:
    *text = "an illegal memory access was encountered";
    break;
  case kLaunchFailed: *text = "unspecified launch failure"; break;
  case kCaptureUnsupported: *text = "operation not permitted when stream is capturing"; break;
  default: *text = nullptr; return kInvalidValue;
  }
  return kSuccess;
}

} // extern "C"
