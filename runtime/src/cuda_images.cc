#include "cuda_images.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include <algorithm>

namespace kiln::runtime {

namespace {

/// "sm_90a" -> {90, true}; {0, false} when it is not of that form.
struct Arch {
  int number = 0;
  bool specific = false;
};
Arch parseArch(const std::string &name) {
  Arch arch;
  if (name.rfind("sm_", 0) != 0)
    return arch;
  std::string digits = name.substr(3);
  if (!digits.empty() && digits.back() == 'a') {
    arch.specific = true;
    digits.pop_back();
  }
  if (!absl::SimpleAtoi(digits, &arch.number))
    arch.number = 0;
  return arch;
}

/// "13.0" -> 13000, "12.4" -> 12040 (cuDriverGetVersion's scale); 0 when
/// empty or malformed (an artifact that does not say).
int parseRelease(const std::string &release) {
  std::vector<std::string> parts = absl::StrSplit(release, '.');
  int major = 0, minor = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &major) ||
      !absl::SimpleAtoi(parts[1], &minor))
    return 0;
  return 1000 * major + 10 * minor;
}

std::string releaseText(int version) {
  return absl::StrCat(version / 1000, ".", version % 1000 / 10);
}

bool cubinArchFits(Arch arch, const CudaDeviceInfo &device) {
  int deviceNumber = device.major * 10 + device.minor;
  if (arch.specific)
    return arch.number == deviceNumber;
  return arch.number / 10 == device.major && arch.number % 10 <= device.minor;
}

bool ptxArchFits(Arch arch, const CudaDeviceInfo &device) {
  int deviceNumber = device.major * 10 + device.minor;
  return arch.specific ? arch.number == deviceNumber
                       : arch.number <= deviceNumber;
}

bool cubinDriverFits(const artifact::Manifest &m, const CudaDeviceInfo &device) {
  int release = parseRelease(m.cubin_cuda_release());
  return release == 0 || device.driverVersion / 1000 >= release / 1000;
}

bool ptxDriverFits(const artifact::Manifest &m, const CudaDeviceInfo &device) {
  int release = parseRelease(m.ptx_cuda_release());
  return release == 0 || device.driverVersion >= release;
}

/// Larger is better: the exact architecture first, arch-specific before
/// generic, then the newest.
int rank(Arch arch, const CudaDeviceInfo &device) {
  int exact = arch.number == device.major * 10 + device.minor;
  return exact * 10000 + arch.number * 10 + arch.specific;
}

}  // namespace

std::string describeDevice(const CudaDeviceInfo &device) {
  return absl::StrCat("sm_", device.major, device.minor, " (driver for CUDA ",
                      releaseText(device.driverVersion), ")");
}

std::vector<CudaImageChoice> cudaImageCandidates(
    const artifact::Manifest &manifest, const artifact::Kernel &kernel,
    const CudaDeviceInfo &device) {
  std::vector<std::pair<int, CudaImageChoice>> cubins, ptxs;
  for (const auto &image : kernel.images()) {
    Arch arch = parseArch(image.arch());
    if (!arch.number)
      continue;
    if (image.cubin_size() > 0 && cubinArchFits(arch, device) &&
        cubinDriverFits(manifest, device))
      cubins.push_back({rank(arch, device), {&image, false}});
    if (image.ptx_size() > 0 && ptxArchFits(arch, device) &&
        ptxDriverFits(manifest, device))
      ptxs.push_back({rank(arch, device), {&image, true}});
  }
  auto best = [](const auto &a, const auto &b) { return a.first > b.first; };
  std::stable_sort(cubins.begin(), cubins.end(), best);
  std::stable_sort(ptxs.begin(), ptxs.end(), best);
  std::vector<CudaImageChoice> choices;
  for (const auto &c : cubins)
    choices.push_back(c.second);
  for (const auto &c : ptxs)
    choices.push_back(c.second);
  return choices;
}

std::string noCudaImageMessage(const artifact::Manifest &manifest,
                               const artifact::Kernel &kernel,
                               const CudaDeviceInfo &device) {
  std::string images;
  bool archMatches = false;
  for (const auto &image : kernel.images()) {
    Arch arch = parseArch(image.arch());
    if (image.cubin_size() > 0) {
      absl::StrAppend(&images, images.empty() ? "" : ", ", "cubin ",
                      image.arch());
      if (int release = parseRelease(manifest.cubin_cuda_release()))
        absl::StrAppend(&images, " (needs a CUDA ", release / 1000,
                        " driver)");
      archMatches |= cubinArchFits(arch, device);
    }
    if (image.ptx_size() > 0) {
      absl::StrAppend(&images, images.empty() ? "" : ", ", "PTX ",
                      image.arch());
      if (int release = parseRelease(manifest.ptx_cuda_release()))
        absl::StrAppend(&images, " (needs a CUDA ", releaseText(release),
                        " driver)");
      archMatches |= ptxArchFits(arch, device);
    }
  }
  std::string advice =
      archMatches
          ? absl::StrCat("install a newer driver, or recompile with a PTX ISA "
                         "this driver can JIT (kiln compile --ptx-isa; CUDA ",
                         releaseText(device.driverVersion), " drivers JIT PTX "
                         "ISA up to the one CUDA ",
                         releaseText(device.driverVersion), " brought)")
          : absl::StrCat("recompile for it (kiln compile --target cuda:sm_",
                         device.major, device.minor, "), or for an older "
                         "architecture without the 'a', whose PTX newer "
                         "devices JIT");
  return absl::StrCat("kernel '", kernel.name(), "' has no image ",
                      describeDevice(device), " can load (the artifact has ",
                      images.empty() ? "none" : images, "); ", advice);
}

}  // namespace kiln::runtime
