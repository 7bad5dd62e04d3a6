#include "cuda_driver.h"

#include "absl/strings/str_cat.h"

#include <cstring>
#include <dlfcn.h>

namespace kiln::runtime {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using Handle = void *;

// The subset of the driver API the backend uses, resolved by name.
struct CudaApi {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(Handle *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxSetCurrent)(Handle);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuModuleLoadData)(Handle *, const void *);
  CUresult (*cuModuleUnload)(Handle);
  CUresult (*cuModuleGetFunction)(Handle *, Handle, const char *);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
  CUresult (*cuLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, Handle, void **,
                             void **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
};

namespace {

constexpr int kComputeCapabilityMajor = 75;
constexpr int kComputeCapabilityMinor = 76;
constexpr CUresult kOutOfMemory = 2;

template <typename Fn>
bool resolve(void *library, const char *name, Fn &fn) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  return fn != nullptr;
}

}  // namespace

absl::StatusOr<const CudaApi *> loadCudaDriver(const std::string &libraryName) {
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
            resolve(library, "cuCtxSetCurrent", api->cuCtxSetCurrent) &&
            resolve(library, "cuCtxSynchronize", api->cuCtxSynchronize) &&
            resolve(library, "cuModuleLoadData", api->cuModuleLoadData) &&
            resolve(library, "cuModuleUnload", api->cuModuleUnload) &&
            resolve(library, "cuModuleGetFunction", api->cuModuleGetFunction) &&
            resolve(library, "cuMemAlloc_v2", api->cuMemAlloc) &&
            resolve(library, "cuMemFree_v2", api->cuMemFree) &&
            resolve(library, "cuMemcpyHtoD_v2", api->cuMemcpyHtoD) &&
            resolve(library, "cuMemcpyDtoH_v2", api->cuMemcpyDtoH) &&
            resolve(library, "cuMemcpyDtoD_v2", api->cuMemcpyDtoD) &&
            resolve(library, "cuLaunchKernel", api->cuLaunchKernel) &&
            resolve(library, "cuGetErrorString", api->cuGetErrorString);
  if (!ok) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        libraryName, " lacks driver API functions Kiln needs; the NVIDIA "
                     "driver is too old or broken"));
  }
  if (CUresult rc = api->cuInit(0); rc != 0) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat(
        "the CUDA driver failed to initialize (cuInit returned ", rc,
        rc == 34 ? ", CUDA_ERROR_STUB_LIBRARY: this is the toolkit's stub, "
                   "not a driver"
                 : "",
        "); check that a GPU is visible (nvidia-smi)"));
  }
  // The driver stays loaded for the life of the process.
  static std::unique_ptr<CudaApi> loaded;
  loaded = std::move(api);
  return loaded.get();
}

absl::Status CudaSession::check(CUresult result, const char *what) const {
  if (result == 0)
    return absl::OkStatus();
  const char *text = nullptr;
  api->cuGetErrorString(result, &text);
  std::string message = absl::StrCat(what, " failed: ",
                                     text ? text : "unknown CUDA error",
                                     " (", result, ")");
  if (result == kOutOfMemory)
    return absl::ResourceExhaustedError(
        absl::StrCat(message, "; the model needs more device memory than "
                              "is free on cuda:", device));
  return absl::InternalError(message);
}

absl::StatusOr<std::unique_ptr<CudaSession>>
CudaSession::create(const Artifact &artifact, int ordinal) {
  auto api = loadCudaDriver();
  if (!api.ok())
    return api.status();
  std::unique_ptr<CudaSession> s(new CudaSession());
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
  if (absl::Status st =
          s->check(s->api->cuCtxSetCurrent(s->context), "cuCtxSetCurrent");
      !st.ok())
    return st;

  // One module per kernel: the cubin built for this exact architecture
  // (sm_90a on a 9.0 device before sm_90), else the newest PTX the device
  // can JIT.
  const auto &m = artifact.manifest();
  int deviceArch = major * 10 + minor;
  auto archNumber = [](const std::string &arch) {
    return std::atoi(arch.c_str() + 3);  // "sm_90a" -> 90
  };
  for (const auto &kernel : m.kernels()) {
    const artifact::KernelImage *cubin = nullptr, *ptx = nullptr;
    for (const auto &image : kernel.images()) {
      int arch = archNumber(image.arch());
      if (arch == deviceArch &&
          (!cubin || image.arch().back() == 'a'))
        cubin = &image;
      if (arch <= deviceArch && (!ptx || arch > archNumber(ptx->arch())))
        ptx = &image;
    }
    std::string text;
    const void *data = nullptr;
    if (cubin) {
      data = artifact.sectionData(cubin->cubin_section()) + cubin->cubin_offset();
    } else if (ptx) {
      const uint8_t *p = artifact.sectionData(ptx->ptx_section()) + ptx->ptx_offset();
      text.assign(reinterpret_cast<const char *>(p), ptx->ptx_size());
      data = text.c_str();  // the driver wants NUL-terminated PTX
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "kernel '", kernel.name(), "' has no cubin for sm_", deviceArch,
          " and no PTX an sm_", deviceArch, " device can JIT; compile with "
          "--target cuda:sm_", deviceArch));
    }
    void *module = nullptr;
    if (absl::Status st = s->check(s->api->cuModuleLoadData(&module, data),
                                   "cuModuleLoadData");
        !st.ok())
      return st;
    s->modules.push_back(module);
    void *function = nullptr;
    if (absl::Status st = s->check(
            s->api->cuModuleGetFunction(&function, module,
                                        kernel.symbol().c_str()),
            "cuModuleGetFunction");
        !st.ok())
      return st;
    s->functions.push_back(function);
  }
  // Weights go to the device once per session.
  for (int i = 0; i < m.weights_size(); ++i) {
    CUdeviceptr ptr = 0;
    if (absl::Status st = s->check(s->api->cuMemAlloc(&ptr, m.weights(i).size()),
                                   "cuMemAlloc (weights)");
        !st.ok())
      return st;
    s->weights.push_back(ptr);
    if (absl::Status st = s->check(
            s->api->cuMemcpyHtoD(ptr, artifact.weightData(i),
                                 m.weights(i).size()),
            "cuMemcpyHtoD (weights)");
        !st.ok())
      return st;
  }
  if (m.arena_bytes() > 0)
    if (absl::Status st = s->check(s->api->cuMemAlloc(&s->arena, m.arena_bytes()),
                                   "cuMemAlloc (arena)");
        !st.ok())
      return st;
  return s;
}

CudaSession::~CudaSession() {
  if (!api)
    return;
  for (CUdeviceptr w : weights)
    api->cuMemFree(w);
  if (arena)
    api->cuMemFree(arena);
  for (void *module : modules)
    api->cuModuleUnload(module);
  if (context)
    api->cuDevicePrimaryCtxRelease(device);
}

absl::Status CudaSession::run(const artifact::EntryPoint &entry,
                              const kiln_tensor *inputs, kiln_tensor *outputs) {
  if (absl::Status st = check(api->cuCtxSetCurrent(context), "cuCtxSetCurrent");
      !st.ok())
    return st;
  std::vector<CUdeviceptr> in, out;
  auto release = [&] {
    for (CUdeviceptr p : in)
      api->cuMemFree(p);
    for (CUdeviceptr p : out)
      api->cuMemFree(p);
  };
  auto fail = [&](absl::Status st) {
    release();
    return st;
  };
  for (int i = 0; i < entry.inputs_size(); ++i) {
    CUdeviceptr p = 0;
    size_t bytes = inputs[i].size_bytes;
    if (absl::Status st = check(api->cuMemAlloc(&p, bytes ? bytes : 1),
                                "cuMemAlloc (input)");
        !st.ok())
      return fail(st);
    in.push_back(p);
    if (bytes)
      if (absl::Status st = check(api->cuMemcpyHtoD(p, inputs[i].data, bytes),
                                  "cuMemcpyHtoD (input)");
          !st.ok())
        return fail(st);
  }
  for (int i = 0; i < entry.outputs_size(); ++i) {
    CUdeviceptr p = 0;
    size_t bytes = outputs[i].size_bytes;
    if (absl::Status st = check(api->cuMemAlloc(&p, bytes ? bytes : 1),
                                "cuMemAlloc (output)");
        !st.ok())
      return fail(st);
    out.push_back(p);
  }
  auto resolve = [&](const artifact::BufferRef &ref) -> CUdeviceptr {
    switch (ref.kind()) {
    case artifact::BufferRef::INPUT: return in[ref.index()] + ref.offset();
    case artifact::BufferRef::OUTPUT: return out[ref.index()] + ref.offset();
    case artifact::BufferRef::WEIGHT: return weights[ref.index()] + ref.offset();
    case artifact::BufferRef::ARENA: return arena + ref.offset();
    default: return 0;
    }
  };
  std::vector<CUdeviceptr> pointers;
  std::vector<void *> params;
  for (const auto &launch : entry.launches()) {
    if (launch.kind() == artifact::Launch::COPY) {
      if (absl::Status st = check(
              api->cuMemcpyDtoD(resolve(launch.args(0)), resolve(launch.args(1)),
                                launch.args(0).size()),
              "cuMemcpyDtoD");
          !st.ok())
        return fail(st);
      continue;
    }
    pointers.clear();
    for (const auto &ref : launch.args())
      pointers.push_back(resolve(ref));
    params.clear();
    for (CUdeviceptr &p : pointers)
      params.push_back(&p);
    if (absl::Status st = check(
            api->cuLaunchKernel(functions[launch.kernel()], launch.grid(0),
                                launch.grid(1), launch.grid(2), launch.block(0),
                                launch.block(1), launch.block(2), 0, nullptr,
                                params.data(), nullptr),
            "cuLaunchKernel");
        !st.ok())
      return fail(st);
  }
  if (absl::Status st = check(api->cuCtxSynchronize(), "kernel execution");
      !st.ok())
    return fail(st);
  for (int i = 0; i < entry.outputs_size(); ++i)
    if (outputs[i].size_bytes)
      if (absl::Status st = check(api->cuMemcpyDtoH(outputs[i].data, out[i],
                                                    outputs[i].size_bytes),
                                  "cuMemcpyDtoH (output)");
          !st.ok())
        return fail(st);
  release();
  return absl::OkStatus();
}

}  // namespace kiln::runtime
