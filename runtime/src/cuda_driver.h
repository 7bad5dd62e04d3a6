// The CUDA driver API, loaded at run time with dlopen so that a machine
// without the NVIDIA driver gets a clear error instead of a loader failure,
// and the CUDA backend that runs a cuda artifact's launch program with it.
#ifndef KILN_RUNTIME_SRC_CUDA_DRIVER_H
#define KILN_RUNTIME_SRC_CUDA_DRIVER_H

#include "artifact.h"
#include "backend.h"
#include "kiln/runtime.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime {

struct CudaApi;
struct CudaDeviceInfo;

/// The driver library: libcuda.so.1, or $KILN_CUDA_DRIVER when set (a
/// driver in a non-standard place, or the test suite's mock driver).
std::string cudaDriverLibrary();

/// Loads `libraryName` (default: cudaDriverLibrary()) and initializes the
/// driver; the error says what is missing and what to do. A library loads
/// once per process.
absl::StatusOr<const CudaApi *>
loadCudaDriver(const std::string &libraryName = cudaDriverLibrary());

/// A session's side on one GPU: the primary context, a stream of its own,
/// one module per kernel (the cubin for the device's architecture, else PTX
/// for the driver to JIT), weights uploaded once, the arena, and per entry
/// point device buffers for its inputs and outputs plus the CUDA graph of
/// its launches: captured on the first run with a given set of symbolic dim
/// values (one set for a static entry point), replayed afterwards. Buffers
/// are sized for the dims' upper bounds.
///
/// Threads: a session may be called from any thread, one call at a time
/// (calls on one session must not overlap; sessions are independent). Each
/// call pushes the device's primary context for its duration and pops it
/// before it returns, so the calling thread's current context (none, or
/// another library's) is unchanged; work enqueued by runAsync belongs to
/// the session's stream, not to the thread that enqueued it.
class CudaBackend final : public Backend {
public:
  ~CudaBackend() override;
  CudaBackend(const CudaBackend &) = delete;
  CudaBackend &operator=(const CudaBackend &) = delete;

  /// `device` is "cuda:N"; refuses an artifact of another target (before
  /// it looks at N or loads the driver).
  static absl::StatusOr<std::unique_ptr<Backend>>
  create(const Artifact &artifact, const std::string &device);

  /// Runs `entry` and waits: inputs are copied to the device, the launches
  /// run (as a graph), outputs are copied back.
  absl::Status run(const artifact::EntryPoint &entry,
                   const std::vector<int64_t> &dims,
                   const kiln_tensor *inputs, kiln_tensor *outputs) override;

  /// Enqueues the same work on the session's stream and returns.
  absl::Status runAsync(const artifact::EntryPoint &entry,
                        const std::vector<int64_t> &dims,
                        const kiln_tensor *inputs,
                        kiln_tensor *outputs) override;
  absl::Status synchronize() override;

  /// Launch by launch (no graph), with an event pair around every launch:
  /// device time.
  absl::Status profile(const artifact::EntryPoint &entry,
                       const std::vector<int64_t> &dims,
                       const kiln_tensor *inputs, kiln_tensor *outputs,
                       int iterations, std::vector<double> &launchMs) override;

  /// Whether runs replay CUDA graphs ($KILN_CUDA_GRAPHS=0 turns them off).
  bool usesGraphs() const { return graphs; }

private:
  struct EntryState {
    std::vector<unsigned long long> inputs, outputs;
    // CUgraphExec per set of dim values, once captured and instantiated
    // (a failed capture leaves no entry), with the run that last used it:
    // at most graphCacheSize of them, the least recently used evicted. A
    // zero-size buffer is 0.
    struct CachedGraph {
      void *exec = nullptr;
      uint64_t lastUse = 0;
    };
    std::map<std::vector<int64_t>, CachedGraph> graphs;
    // The TMA descriptors of the entry's launches: encoded in host memory
    // (mapHost, kTensorMapAlign-aligned), copied to one device table that
    // the kernels get pointers into, per launch the index of its first
    // descriptor. Encoded when the entry is first run, and again when the
    // run's dims differ from those of the last upload and some descriptor
    // depends on them (the upload is ordered on the stream before the
    // launches, so a replayed graph reads the descriptors of its dims).
    std::vector<uint32_t> firstMap;
    size_t numMaps = 0;
    bool symbolicMaps = false;
    std::shared_ptr<uint8_t> mapHost;
    unsigned long long mapTable = 0;
    bool mapsUploaded = false;
    /// The entry writes a state at an offset that moves from run to run (a
    /// decode step): launched directly, never captured (set by prepare).
    bool movesState = false;
    std::vector<int64_t> mapDims;
  };

  class CurrentContext;

  CudaBackend() = default;
  /// Waits for the stream and frees what the session created on the
  /// device; the context is current.
  void destroyOnDevice();
  /// Opens device cuda:`ordinal` and loads the artifact's kernels for it.
  static absl::StatusOr<std::unique_ptr<CudaBackend>>
  open(const Artifact &artifact, int ordinal);
  /// OK, or the error "<what> failed: <text> (<CUDA_ERROR_NAME>, <code>)",
  /// then `detail` (the kernel, its grid and block; the JIT log).
  absl::Status check(int result, const char *what,
                     const std::string &detail = "") const;
  /// Checks a launch's grid and block against the per-axis limits; the
  /// error starts with `shape` (the kernel, its grid and block).
  absl::Status checkLaunchShape(const uint64_t grid[3], const uint64_t block[3],
                                const std::string &shape) const;
  absl::StatusOr<EntryState *> prepare(const artifact::EntryPoint &entry);
  /// Whether `entry` writes a state at an offset that depends on its dims.
  static bool movesState(const artifact::EntryPoint &entry);
  /// Refuses, with what to do, an artifact that needs what the device or
  /// driver lacks: clusters and TMA descriptors (sm_90, CUDA 12.0).
  absl::Status checkHopperFeatures(const CudaDeviceInfo &device) const;
  /// Checks the kernel's parameters (cuFuncGetParamInfo, CUDA 12.4) against
  /// what the manifest passes it: as many, each 8 bytes.
  absl::Status checkParameters(const artifact::Kernel &kernel,
                               void *function) const;
  /// Encodes the entry's TMA descriptors for `dims` and enqueues their
  /// upload, unless the table already holds them.
  absl::Status uploadTensorMaps(const artifact::EntryPoint &entry,
                                const std::vector<int64_t> &dims,
                                EntryState &state);
  absl::Status enqueueLaunches(const artifact::EntryPoint &entry,
                               const std::vector<int64_t> &dims,
                               EntryState &state,
                               std::vector<double> *launchMs);
  /// Asynchronous copies between the host tensors and the entry's buffers.
  absl::Status copyInputs(const artifact::EntryPoint &entry,
                          const std::vector<int64_t> &dims, EntryState &state,
                          const kiln_tensor *inputs);
  absl::Status copyOutputs(const artifact::EntryPoint &entry,
                           const std::vector<int64_t> &dims, EntryState &state,
                           kiln_tensor *outputs);
  absl::Status enqueue(const artifact::EntryPoint &entry,
                       const std::vector<int64_t> &dims,
                       const kiln_tensor *inputs, kiln_tensor *outputs);

  const CudaApi *api = nullptr;
  const Artifact *artifact = nullptr;
  int device = 0;
  void *context = nullptr;
  void *stream = nullptr;
  bool graphs = true;
  /// Instantiated graphs kept per entry point ($KILN_CUDA_GRAPH_CACHE,
  /// default 8): an artifact with symbolic dims captures one per set of
  /// dim values, and each holds device resources.
  size_t graphCacheSize = 8;
  uint64_t runs = 0;
  std::vector<void *> modules;
  std::vector<void *> functions;
  std::vector<uint32_t> dynamicShared;  // per function, bytes per launch
  std::vector<unsigned long long> weights;
  unsigned long long arena = 0;
  /// Manifest.states (the KV cache), zeroed at creation.
  std::vector<unsigned long long> states;
  std::map<const artifact::EntryPoint *, EntryState> entries;
};

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CUDA_DRIVER_H
