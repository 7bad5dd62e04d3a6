// A stand-in for libcuda.so.1 that runs on the CPU, for the CUDA backend's
// tests on machines without a GPU (KILN_CUDA_DRIVER=<this library>).
//
// Device memory is host memory with a budget (KILN_MOCK_CUDA_MEMORY_BYTES,
// default 1 GiB) so that out-of-memory paths can be reached; the device's
// compute capability is KILN_MOCK_CUDA_CC (default 80), its driver version
// KILN_MOCK_CUDA_DRIVER_VERSION (default 13000: CUDA 13.0). Modules are cubins
// (ELF) or PTX text. Kernels do nothing, except `add_one`, which reads 4
// floats from its first parameter and writes them plus one to its second.
// Stream capture records launches and device-to-device copies into a graph
// that cuGraphLaunch replays; host copies during capture fail as they do on
// a GPU with pageable memory. Every kernel advances a fake clock by 0.25 ms,
// which is what events measure. kiln_mock_cuda_counter(name) reports what
// happened.
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using CUresult = int;
using Ptr = unsigned long long;

constexpr CUresult kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2,
                   kInvalidImage = 200, kNotFound = 500,
                   kCaptureUnsupported = 900;

struct Function {
  std::string symbol;
};
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
  std::mutex mutex;
  std::map<Ptr, size_t> allocations;
  size_t used = 0;
  double clockMs = 0;
  std::map<std::string, long> counters;
} state;

long envNumber(const char *name, long fallback) {
  const char *v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
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

} // namespace

extern "C" {

__attribute__((visibility("default"))) long
kiln_mock_cuda_counter(const char *name) {
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.counters[name];
}

__attribute__((visibility("default"))) void kiln_mock_cuda_reset() {
  std::lock_guard<std::mutex> lock(state.mutex);
  state.counters.clear();
}

CUresult cuInit(unsigned) { return kSuccess; }
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
CUresult cuDeviceGetAttribute(int *value, int attribute, int) {
  long cc = envNumber("KILN_MOCK_CUDA_CC", 80);
  if (attribute == 75)
    *value = static_cast<int>(cc / 10);
  else if (attribute == 76)
    *value = static_cast<int>(cc % 10);
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
CUresult cuCtxSetCurrent(void *) { return kSuccess; }

CUresult cuDriverGetVersion(int *version) {
  *version = static_cast<int>(envNumber("KILN_MOCK_CUDA_DRIVER_VERSION", 13000));
  return 0;
}

CUresult cuModuleLoadData(void **module, const void *image) {
  const char *bytes = static_cast<const char *>(image);
  // The fake cubins stand for CUDA 13 ptxas output, which older drivers
  // refuse (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
  if (std::memcmp(bytes, "\x7f" "ELF", 4) == 0 &&
      envNumber("KILN_MOCK_CUDA_DRIVER_VERSION", 13000) < 13000) {
    ++state.counters["cubin_refusals"];
    return 222;
  }
  if (std::memcmp(bytes, "\x7f" "ELF", 4) == 0)
    ++state.counters["cubin_loads"];
  else if (std::strncmp(bytes, "//", 2) == 0 ||
           std::strncmp(bytes, ".version", 8) == 0)
    ++state.counters["ptx_loads"];
  else
    return kInvalidImage;
  *module = new int(0);
  return kSuccess;
}
CUresult cuModuleUnload(void *module) {
  delete static_cast<int *>(module);
  return kSuccess;
}
CUresult cuModuleGetFunction(void **function, void *, const char *name) {
  if (!name || !*name)
    return kNotFound;
  *function = new Function{name}; // leaked with the module, as on a GPU
  return kSuccess;
}

CUresult cuMemAlloc_v2(Ptr *ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(state.mutex);
  size_t budget = static_cast<size_t>(
      envNumber("KILN_MOCK_CUDA_MEMORY_BYTES", 1l << 30));
  if (bytes == 0)
    return kInvalidValue;
  if (state.used + bytes > budget)
    return kOutOfMemory;
  void *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  *ptr = reinterpret_cast<Ptr>(p);
  state.allocations[*ptr] = bytes;
  state.used += bytes;
  ++state.counters["allocations"];
  return kSuccess;
}
CUresult cuMemFree_v2(Ptr ptr) {
  std::lock_guard<std::mutex> lock(state.mutex);
  auto it = state.allocations.find(ptr);
  if (it == state.allocations.end())
    return kInvalidValue;
  state.used -= it->second;
  state.allocations.erase(it);
  std::free(reinterpret_cast<void *>(ptr));
  return kSuccess;
}
CUresult cuMemcpyHtoD_v2(Ptr dst, const void *src, size_t bytes) {
  std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  return kSuccess;
}
CUresult cuMemcpyHtoDAsync_v2(Ptr dst, const void *src, size_t bytes,
                              void *stream) {
  if (capturing(stream))
    return kCaptureUnsupported;
  return submit(stream, [=] {
    std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  });
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, Ptr src, size_t bytes, void *stream) {
  if (capturing(stream))
    return kCaptureUnsupported;
  return submit(stream, [=] {
    std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  });
}
CUresult cuMemcpyDtoDAsync_v2(Ptr dst, Ptr src, size_t bytes, void *stream) {
  return submit(stream, [=] {
    std::memmove(reinterpret_cast<void *>(dst),
                 reinterpret_cast<const void *>(src), bytes);
  });
}

CUresult cuLaunchKernel(void *function, unsigned gridX, unsigned, unsigned,
                        unsigned, unsigned, unsigned, unsigned, void *stream,
                        void **params, void **) {
  std::string symbol = static_cast<Function *>(function)->symbol;
  Ptr in = 0, out = 0;
  if (symbol == "add_one" || symbol == "add_one_n") {
    in = *static_cast<Ptr *>(params[0]);
    out = *static_cast<Ptr *>(params[1]);
  }
  if (symbol == "add_one_n") {
    // Symbolic size: y[i] = x[i] + 1 for i < n, one block per element.
    int64_t n = *static_cast<int64_t *>(params[2]);
    state.counters["last_grid_x"] = gridX;
    state.counters["last_size_arg"] = n;
    return submit(stream, [=] {
      ++state.counters["kernels_run"];
      for (int64_t i = 0; i < n && i < static_cast<int64_t>(gridX); ++i)
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

CUresult cuStreamCreate(void **stream, unsigned) {
  *stream = new Stream();
  ++state.counters["streams"];
  return kSuccess;
}
CUresult cuStreamDestroy_v2(void *stream) {
  delete static_cast<Stream *>(stream);
  return kSuccess;
}
CUresult cuStreamSynchronize(void *stream) {
  return capturing(stream) ? kCaptureUnsupported : kSuccess;
}
CUresult cuStreamBeginCapture_v2(void *stream, int) {
  auto *s = static_cast<Stream *>(stream);
  if (!s || s->capturing)
    return kInvalidValue;
  s->capturing = true;
  s->captured.clear();
  ++state.counters["captures"];
  return kSuccess;
}
CUresult cuStreamEndCapture(void *stream, void **graph) {
  auto *s = static_cast<Stream *>(stream);
  if (!s || !s->capturing)
    return kInvalidValue;
  s->capturing = false;
  *graph = new Graph{std::move(s->captured)};
  return kSuccess;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph,
                                     unsigned long long) {
  *exec = new Graph(*static_cast<Graph *>(graph));
  return kSuccess;
}
CUresult cuGraphLaunch(void *exec, void *stream) {
  ++state.counters["graph_launches"];
  const auto &ops = static_cast<Graph *>(exec)->ops;
  return submit(stream, [ops] {
    for (const auto &op : ops)
      op();
  });
}
CUresult cuGraphExecDestroy(void *exec) {
  delete static_cast<Graph *>(exec);
  return kSuccess;
}
CUresult cuGraphDestroy(void *graph) {
  delete static_cast<Graph *>(graph);
  return kSuccess;
}

CUresult cuEventCreate(void **event, unsigned) {
  *event = new Event();
  return kSuccess;
}
CUresult cuEventDestroy_v2(void *event) {
  delete static_cast<Event *>(event);
  return kSuccess;
}
CUresult cuEventRecord(void *event, void *stream) {
  return submit(stream, [event] {
    static_cast<Event *>(event)->ms = state.clockMs;
  });
}
CUresult cuEventElapsedTime_v2(float *ms, void *start, void *end) {
  *ms = static_cast<float>(static_cast<Event *>(end)->ms -
                           static_cast<Event *>(start)->ms);
  return kSuccess;
}

CUresult cuGetErrorString(CUresult result, const char **text) {
  switch (result) {
  case kOutOfMemory: *text = "out of memory"; break;
  case kInvalidImage: *text = "device kernel image is invalid"; break;
  case kCaptureUnsupported: *text = "operation not permitted when stream is capturing"; break;
  default: *text = "mock CUDA error"; break;
  }
  return kSuccess;
}

} // extern "C"
