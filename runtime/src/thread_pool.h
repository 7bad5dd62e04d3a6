// The CPU backend's threads: a fork-join pool that runs the parallel loops
// of host kernels (kiln-cpu-outline-tasks) over a session's threads.
//
// A kernel calls `kiln_cpu_context::parallel_for(ctx, task, data, count,
// grain)`; the pool cuts [0, count) into parts of at least `grain`
// iterations (a few per thread, so that uneven parts balance), and the
// calling thread and the workers take parts until none is left. The call
// returns when every part is done. Which thread runs a part never changes
// what it computes, so results do not depend on the thread count.
//
// Why a pool of our own: the runtime's contract (docs/embedding.md) is that
// an application links libkiln_runtime alone, with the C++ standard library
// and nothing else; OpenMP would add libgomp to every application (and
// clash with one that uses LLVM's or Intel's OpenMP runtime), oneTBB its
// shared library. A fork-join parallel-for over static ranges is all the
// kernels need: one mutex, two condition variables and a short spin.
#ifndef KILN_RUNTIME_SRC_THREAD_POOL_H
#define KILN_RUNTIME_SRC_THREAD_POOL_H

#include <atomic>
#include <cfenv>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
/// What a host kernel with parallel tasks receives as its last argument.
/// The layout is part of the artifact ABI: `parallel_for` is the first
/// field (kiln-cpu-lower-task-calls loads it from there).
typedef void (*kiln_cpu_task_fn)(void *data, int64_t begin, int64_t end);
typedef struct kiln_cpu_context kiln_cpu_context;
struct kiln_cpu_context {
  void (*parallel_for)(kiln_cpu_context *ctx, kiln_cpu_task_fn task,
                       void *data, int64_t count, int64_t grain);
  void *pool;
};
}

// Calls into generated code (host kernels, their tasks) go through
// pointers to functions LLVM compiled without UBSan's type prologue; the
// -fsanitize=function check would read the bytes before them (unmapped when
// a function starts a page). Those calls opt out of that one check.
#if defined(__clang__)
#define KILN_CALLS_GENERATED_CODE __attribute__((no_sanitize("function")))
#else
#define KILN_CALLS_GENERATED_CODE
#endif

namespace kiln::runtime {

/// The number of CPUs this process may run on (its affinity mask), at
/// least 1.
int availableCpus();

class ThreadPool {
public:
  static constexpr int kMaxThreads = 4096;

  /// `threads` counts the calling thread: threads - 1 workers are started
  /// (fewer if the system refuses to start more; threads() says).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int threads() const { return threads_; }

  /// Runs task(data, begin, end) over [0, count) in parts of at least
  /// `grain` iterations and returns when all are done. Called by one thread
  /// at a time (a session's).
  void parallelFor(kiln_cpu_task_fn task, void *data, int64_t count,
                   int64_t grain);

  /// The context handed to kernels; its pool is this one.
  kiln_cpu_context *context() { return &context_; }

private:
  void work();
  /// Takes parts of the current job until none is left; a worker first
  /// takes on the caller's floating-point environment.
  void runParts(bool worker);

  int threads_;
  std::vector<std::thread> workers_;
  kiln_cpu_context context_;

  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  /// generation_, readable without the lock while workers spin.
  std::atomic<uint64_t> posted_{0};
  // The current job, under mutex_.
  kiln_cpu_task_fn task_ = nullptr;
  void *data_ = nullptr;
  int64_t count_ = 0;
  int64_t parts_ = 0, next_ = 0, done_ = 0;
  fenv_t env_;
};

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_THREAD_POOL_H
