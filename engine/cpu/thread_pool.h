// A small persistent thread pool for the CPU backend: run(n_tasks, fn) calls fn(task) for every
// task in [0, n_tasks) on the calling thread and the workers, and returns when all are done.
//
// Tasks are handed out dynamically (an atomic counter), so a worker the OS delays (two cores
// shared with other processes) holds nobody up: the caller runs whatever is left itself. Workers
// spin briefly between jobs (a decode step issues hundreds of short jobs back to back) and then
// sleep on a futex (std::atomic::wait) so an idle engine costs no CPU. run() is not reentrant and
// must be called from one thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace engine::cpu {

class ThreadPool {
 public:
  // `threads` >= 1 counts the caller: threads - 1 workers are started.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  template <class F>
  void run(int n_tasks, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    auto call = [](void* ctx, int task) { (*static_cast<Fn*>(ctx))(task); };
    runImpl(n_tasks, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Call = void (*)(void*, int);
  void runImpl(int n_tasks, Call call, void* ctx);
  void workerLoop();
  void drain(uint32_t job);

  std::vector<std::thread> workers_;
  uint32_t job_ = 0;               // caller only: id of the latest job
  std::atomic<uint32_t> wake_{0};  // latest job id; idle workers sleep until it changes
  // (job id << 32) | index of the next unclaimed task. A worker claims a task only while the job
  // id still matches, so one that wakes late never runs a task of a job that has moved on, and
  // the caller waits for tasks, not for workers.
  std::atomic<uint64_t> work_{0};
  std::atomic<int> done_{0};  // tasks of the current job finished
  std::atomic<int> n_tasks_{0};
  std::atomic<Call> call_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<bool> stop_{false};
};

}  // namespace engine::cpu
