#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sched.h>
#include <system_error>

namespace kiln::runtime {

int availableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0)
      return count;
  }
  unsigned hardware = std::thread::hardware_concurrency();
  return hardware ? static_cast<int>(hardware) : 1;
}

namespace {

void parallelForThunk(kiln_cpu_context *ctx, kiln_cpu_task_fn task,
                      void *data, int64_t count, int64_t grain) {
  static_cast<ThreadPool *>(ctx->pool)->parallelFor(task, data, count, grain);
}

/// How long a worker keeps looking for the next job before it sleeps: the
/// launches of a run follow each other within microseconds, and waking a
/// sleeping thread costs tens of them. It yields while it looks, so that a
/// machine with more threads than cores loses little.
constexpr std::chrono::microseconds kSpin(100);

}  // namespace

ThreadPool::ThreadPool(int threads)
    : threads_(std::clamp(threads, 1, kMaxThreads)) {
  context_.parallel_for = parallelForThunk;
  context_.pool = this;
  workers_.reserve(threads_ - 1);
  // A system that refuses more threads (a pids limit) gets a pool of the
  // threads it gave.
  try {
    for (int i = 1; i < threads_; ++i)
      workers_.emplace_back([this] { work(); });
  } catch (const std::system_error &) {
    threads_ = int(workers_.size()) + 1;
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    ++generation_;
    posted_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread &worker : workers_)
    worker.join();
}

KILN_CALLS_GENERATED_CODE
void ThreadPool::parallelFor(kiln_cpu_task_fn task, void *data, int64_t count,
                             int64_t grain) {
  if (count <= 0)
    return;
  grain = std::max<int64_t>(1, grain);
  // A few parts per thread balance parts of uneven cost (a peeled panel, a
  // causal attention's short rows), each at least `grain` iterations.
  int64_t parts = std::min<int64_t>(count / grain, int64_t(threads_) * 4);
  if (parts <= 1 || threads_ == 1) {
    task(data, 0, count);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Workers compute in the caller's floating-point environment (rounding,
    // flush-to-zero): which thread runs a part must not change its result.
    fegetenv(&env_);
    task_ = task;
    data_ = data;
    count_ = count;
    parts_ = parts;
    next_ = 0;
    done_ = 0;
    ++generation_;
    posted_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  runParts(/*worker=*/false);
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return done_ == parts_; });
}

KILN_CALLS_GENERATED_CODE
void ThreadPool::runParts(bool worker) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (next_ < parts_) {
    int64_t part = next_++;
    if (worker) {
      fenv_t mine;
      fegetenv(&mine);
      if (std::memcmp(&mine, &env_, sizeof(fenv_t)) != 0)
        fesetenv(&env_);
    }
    kiln_cpu_task_fn task = task_;
    void *data = data_;
    int64_t begin = count_ * part / parts_;
    int64_t end = count_ * (part + 1) / parts_;
    lock.unlock();
    task(data, begin, end);
    lock.lock();
    if (++done_ == parts_)
      finished_.notify_all();
  }
}

void ThreadPool::work() {
  uint64_t seen = 0;
  for (;;) {
    // Look for the next job for a while, then sleep until one comes.
    auto start = std::chrono::steady_clock::now();
    while (posted_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() - start < kSpin)
      std::this_thread::yield();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (stop_)
        return;
    }
    runParts(/*worker=*/true);
  }
}

}  // namespace kiln::runtime
