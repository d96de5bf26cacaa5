// engine::cpu::ThreadPool: every task runs exactly once per job, run() returns only when all of
// them have finished, and short jobs back to back (a decode step's pattern) never leak a task
// into the next job. Run it under TSan (SY_SANITIZE=thread) to check the memory ordering.
#include "engine/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace engine::cpu {
namespace {

TEST(ThreadPool, RunsEveryTaskOnceAndWaitsForAll) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int job = 0; job < 5000; ++job) {
      const int n = 1 + job % 17;
      std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
      std::atomic<int> in_flight{0}, busy_work{0};
      pool.run(n, [&](int t) {
        in_flight.fetch_add(1);
        for (int spin = 0; spin < (t % 4) * 20; ++spin)
          busy_work.fetch_add(1, std::memory_order_relaxed);
        runs[static_cast<size_t>(t)].fetch_add(1);
        in_flight.fetch_sub(1);
      });
      ASSERT_EQ(in_flight.load(), 0) << "run() returned with a task still running";
      for (int t = 0; t < n; ++t) ASSERT_EQ(runs[static_cast<size_t>(t)].load(), 1) << job;
    }
  }
}

TEST(ThreadPool, TakesLvalueCallablesAndEmptyJobs) {
  ThreadPool pool(2);
  std::atomic<int> sum{0};
  auto add = [&](int t) { sum.fetch_add(t); };
  pool.run(10, add);
  pool.run(0, add);
  EXPECT_EQ(sum.load(), 45);
}

TEST(ThreadPool, DestroysWithoutEverRunning) {
  for (int i = 0; i < 50; ++i) ThreadPool pool(3);
}

}  // namespace
}  // namespace engine::cpu
