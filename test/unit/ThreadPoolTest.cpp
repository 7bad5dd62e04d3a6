// The CPU backend's thread pool: every iteration runs exactly once, in
// parts no smaller than the grain, whatever the thread count.
#include "thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace kiln::runtime {
namespace {

struct Coverage {
  std::vector<std::atomic<int>> hits;
  std::mutex mutex;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::thread::id> threads;
  explicit Coverage(int64_t n) : hits(n) {}
};

void record(void *data, int64_t begin, int64_t end) {
  auto *c = static_cast<Coverage *>(data);
  for (int64_t i = begin; i < end; ++i)
    c->hits[i].fetch_add(1);
  std::lock_guard<std::mutex> lock(c->mutex);
  c->ranges.emplace_back(begin, end);
  c->threads.insert(std::this_thread::get_id());
}

TEST(ThreadPoolTest, EveryIterationRunsOnceInPartsOfAtLeastTheGrain) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int64_t count : {1, 2, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 16, 5000}) {
        Coverage c(count);
        kiln_cpu_context *ctx = pool.context();
        ctx->parallel_for(ctx, record, &c, count, grain);
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(c.hits[i].load(), 1)
              << "iteration " << i << " of " << count << ", grain " << grain
              << ", " << threads << " threads";
        int64_t parts = int64_t(c.ranges.size());
        EXPECT_LE(parts, std::max<int64_t>(1, int64_t(threads) * 4));
        if (parts > 1)
          for (auto [begin, end] : c.ranges)
            EXPECT_GE(end - begin, grain);
        if (threads == 1 || 2 * grain > count)
          EXPECT_EQ(parts, 1) << "no parts for a single thread or one grain";
      }
    }
  }
}

TEST(ThreadPoolTest, ManyJobsInARowUseTheWorkers) {
  // The workers pick up job after job (spinning or woken); a thousand jobs
  // of a hundred parts each finish, each iteration once.
  ThreadPool pool(4);
  Coverage c(100);
  for (int job = 0; job < 1000; ++job)
    pool.parallelFor(record, &c, 100, 1);
  for (int64_t i = 0; i < 100; ++i)
    ASSERT_EQ(c.hits[i].load(), 1000);
  EXPECT_GE(c.threads.size(), 1u);
}

TEST(ThreadPoolTest, NothingToDoReturns) {
  ThreadPool pool(2);
  Coverage c(1);
  pool.parallelFor(record, &c, 0, 1);
  EXPECT_TRUE(c.ranges.empty());
}

TEST(ThreadPoolTest, AvailableCpusFollowsTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(availableCpus(), CPU_COUNT(&set));
}

}  // namespace
}  // namespace kiln::runtime
