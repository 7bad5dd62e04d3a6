#include "backend.h"

#include "cpu_backend.h"
#include "cuda_driver.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <algorithm>
#include <iterator>
#include <string_view>

namespace kiln::runtime {

Backend::~Backend() = default;

namespace {

using CreateFn = absl::StatusOr<std::unique_ptr<Backend>> (*)(
    const Artifact &artifact, const std::string &device);

absl::StatusOr<std::unique_ptr<Backend>>
refuseSimulator(const Artifact &, const std::string &) {
  return absl::FailedPreconditionError(
      "device 'sim' (the GPU-kernel simulator) runs in the kiln tool, not "
      "in the runtime library; use `kiln run --device sim`");
}

/// A kind of device a session can be asked for.
struct DeviceKind {
  const char *name;
  /// Written "<name>:N". The device string only has to start with the name
  /// to pick this kind: the backend checks the artifact's target first and
  /// then the ordinal (deviceOrdinal), so a malformed one on an artifact of
  /// another target still gets the more useful target error.
  bool numbered;
  CreateFn create;
};

/// Every device, in the order the unknown-device error lists them. A new
/// backend is one class and one line here.
constexpr DeviceKind kDeviceKinds[] = {
    {"cpu", false, CpuBackend::create},
    {"sim", false, refuseSimulator},
    {"cuda", true, CudaBackend::create},
};

/// "cpu, sim or cuda:N".
std::string deviceForms() {
  std::string forms;
  constexpr size_t count = std::size(kDeviceKinds);
  for (size_t i = 0; i < count; ++i)
    absl::StrAppend(&forms, i == 0 ? "" : i + 1 == count ? " or " : ", ",
                    kDeviceKinds[i].name, kDeviceKinds[i].numbered ? ":N" : "");
  return forms;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>>
createBackend(const Artifact &artifact, const std::string &device) {
  for (const DeviceKind &kind : kDeviceKinds)
    if (kind.numbered ? device.rfind(kind.name, 0) == 0 : device == kind.name)
      return kind.create(artifact, device);
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device '", device, "'; use ", deviceForms()));
}

absl::StatusOr<int> deviceOrdinal(const std::string &device,
                                  const std::string &kind) {
  // "<kind>:" then decimal digits only, within int (no sign, no spaces).
  std::string_view digits;
  if (device.size() > kind.size() + 1 && device.rfind(kind, 0) == 0 &&
      device[kind.size()] == ':')
    digits = std::string_view(device).substr(kind.size() + 1);
  int ordinal = -1;
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()),
                        &ordinal))
    return absl::InvalidArgumentError(absl::StrCat(
        "device '", device, "' is not of the form ", kind, ":N"));
  return ordinal;
}

}  // namespace kiln::runtime
