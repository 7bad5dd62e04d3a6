// What a session runs on. A backend owns everything on the device side of a
// session (loaded kernels, weights, the arena, streams) and runs an entry
// point's launch program there. The session code in runtime.cc checks a
// run's arguments and hands it to its backend without ever asking which
// device it is; createBackend is the one place that maps a device string to
// a backend.
#ifndef KILN_RUNTIME_SRC_BACKEND_H
#define KILN_RUNTIME_SRC_BACKEND_H

#include "artifact.h"
#include "kiln/runtime.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime {

/// Runs the launch programs of one artifact on one device. Every run's
/// arguments were checked by the caller: `entry` belongs to the artifact,
/// `dims` is its dim program evaluated for these inputs and fits the planned
/// capacities, and `inputs` and `outputs` hold one host tensor per input and
/// output of `entry`, with its dtype and shape for `dims` and enough bytes.
class Backend {
public:
  virtual ~Backend();

  /// Runs `entry` and waits: the outputs hold the results on return.
  virtual absl::Status run(const artifact::EntryPoint &entry,
                           const std::vector<int64_t> &dims,
                           const kiln_tensor *inputs,
                           kiln_tensor *outputs) = 0;

  /// Starts a run of `entry` and returns; the outputs are valid, and the
  /// inputs may be reused, after synchronize(). A backend without a queue
  /// of its own finishes the run before it returns.
  virtual absl::Status runAsync(const artifact::EntryPoint &entry,
                                const std::vector<int64_t> &dims,
                                const kiln_tensor *inputs,
                                kiln_tensor *outputs) = 0;

  /// Waits for the runs runAsync started; reports the errors of work that
  /// ran since the last wait.
  virtual absl::Status synchronize() = 0;

  /// The threads a run may use (0: one per CPU the process may use). A
  /// device whose kernels are not scheduled on host threads ignores it.
  virtual absl::Status setThreads(int /*threads*/) { return absl::OkStatus(); }
  /// The threads runs use, or 0 where the count means nothing.
  virtual int threads() const { return 0; }

  /// Runs `entry` `iterations` times launch by launch and sets `launchMs`
  /// to one slot per launch of the entry point: that launch's time in
  /// milliseconds, summed over the iterations (device time where the device
  /// measures it, else wall-clock time). The outputs hold the results of
  /// the last run on return.
  virtual absl::Status profile(const artifact::EntryPoint &entry,
                               const std::vector<int64_t> &dims,
                               const kiln_tensor *inputs, kiln_tensor *outputs,
                               int iterations,
                               std::vector<double> &launchMs) = 0;
};

/// The backend for `device` ("cpu", "cuda:N"), with `artifact`'s kernels
/// loaded for it; `artifact` must outlive it. Fails, saying what to do, on
/// an unknown device, on "sim" (the simulator lives in the kiln tool), and
/// when the artifact was compiled for another kind of device.
absl::StatusOr<std::unique_ptr<Backend>>
createBackend(const Artifact &artifact, const std::string &device);

/// N of a numbered device "<kind>:N" (a non-negative integer), or the error
/// "device '<device>' is not of the form <kind>:N".
absl::StatusOr<int> deviceOrdinal(const std::string &device,
                                  const std::string &kind);

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_BACKEND_H
