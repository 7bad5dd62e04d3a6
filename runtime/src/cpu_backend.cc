#include "cpu_backend.h"

#include "absl/strings/str_cat.h"

#include <cerrno>
#include <cstring>
#include <dlfcn.h>
#include <map>
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

}  // namespace kiln::runtime
