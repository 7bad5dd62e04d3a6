// The CPU backend: host kernels compiled into a shared object that travels in
// the artifact, loaded through an anonymous in-memory file, and run launch
// after launch from the calling thread; the parallel loops inside a kernel
// run on the session's thread pool (thread_pool.h).
#ifndef KILN_RUNTIME_SRC_CPU_BACKEND_H
#define KILN_RUNTIME_SRC_CPU_BACKEND_H

#include "artifact.h"
#include "backend.h"
#include "thread_pool.h"

#include "absl/status/statusor.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime {

/// `<kernel>_entry(args, ctx)`: one pointer per argument, and the context
/// for kernels with parallel tasks (others ignore it).
using HostKernelFn = void (*)(void **args, kiln_cpu_context *ctx);

class CpuKernels {
public:
  ~CpuKernels();
  CpuKernels(const CpuKernels &) = delete;
  CpuKernels &operator=(const CpuKernels &) = delete;

  /// Loads every host kernel of `artifact`, resolving each kernel's symbol.
  static absl::StatusOr<std::unique_ptr<CpuKernels>>
  load(const Artifact &artifact);

  HostKernelFn kernel(uint32_t index) const { return kernels_[index]; }

private:
  CpuKernels() = default;
  std::vector<void *> handles_;
  std::vector<HostKernelFn> kernels_;
};

/// A session's side on the CPU: the host kernels, and an arena and states
/// (a KV cache) of its own.
/// Runs are synchronous (runAsync finishes before it returns), and profile
/// times every launch with the wall clock.
class CpuBackend final : public Backend {
public:
  /// `device` is "cpu"; refuses an artifact compiled for another target.
  static absl::StatusOr<std::unique_ptr<Backend>>
  create(const Artifact &artifact, const std::string &device);

  absl::Status run(const artifact::EntryPoint &entry,
                   const std::vector<int64_t> &dims, const kiln_tensor *inputs,
                   kiln_tensor *outputs) override;
  absl::Status runAsync(const artifact::EntryPoint &entry,
                        const std::vector<int64_t> &dims,
                        const kiln_tensor *inputs,
                        kiln_tensor *outputs) override;
  absl::Status synchronize() override;
  absl::Status setThreads(int threads) override;
  int threads() const override { return pool_->threads(); }
  absl::Status profile(const artifact::EntryPoint &entry,
                       const std::vector<int64_t> &dims,
                       const kiln_tensor *inputs, kiln_tensor *outputs,
                       int iterations, std::vector<double> &launchMs) override;

private:
  struct FreeDeleter {
    void operator()(uint8_t *p) const { std::free(p); }
  };

  CpuBackend(const Artifact &artifact, std::unique_ptr<CpuKernels> kernels)
      : artifact_(artifact), kernels_(std::move(kernels)),
        pool_(std::make_unique<ThreadPool>(availableCpus())) {}
  /// Runs the launch program; with `launchMs`, adds each launch's
  /// wall-clock time to its slot.
  void runLaunches(const artifact::EntryPoint &entry,
                   const std::vector<int64_t> &dims, const kiln_tensor *inputs,
                   kiln_tensor *outputs, std::vector<double> *launchMs);

  const Artifact &artifact_;
  std::unique_ptr<CpuKernels> kernels_;
  /// The session's threads: by default one per CPU the process may use.
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<uint8_t, FreeDeleter> arena_;
  /// Manifest.states, zeroed at creation and kept across runs.
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> states_;
};

/// The architecture name this runtime was built for ("x86_64", "aarch64").
const char *hostArch();

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CPU_BACKEND_H
