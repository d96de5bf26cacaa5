#include "engine/cpu/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SY_CPU_RELAX() _mm_pause()
#else
#define SY_CPU_RELAX() std::this_thread::yield()
#endif

namespace engine::cpu {
namespace {

// How long an idle worker polls before it sleeps. Long enough to bridge the gap between two jobs
// of one decode step, short enough not to steal a shared core for long.
constexpr auto kSpin = std::chrono::microseconds(50);

// Task index of a job that is not open yet: above any task count, so nothing is claimed.
constexpr uint32_t kClosed = 0xffffffffu;

// Polls `pred` for up to kSpin; true when it became true.
template <class Pred>
bool spinUntil(Pred pred) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (pred()) return true;
    SY_CPU_RELAX();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() - start > kSpin) return false;
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) threads = 1;
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  wake_.store(++job_, std::memory_order_release);
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::drain(uint32_t job) {
  for (;;) {
    uint64_t w = work_.load(std::memory_order_acquire);
    if (static_cast<uint32_t>(w >> 32) != job) return;
    // The acquire above makes this job's fields visible. If any of them is already the next
    // job's, runImpl() closed this job before writing it (and the acquires below see that), so
    // the compare-exchange fails: a task is only ever claimed with its own job's fields.
    const int n = n_tasks_.load(std::memory_order_acquire);
    const Call call = call_.load(std::memory_order_acquire);
    void* ctx = ctx_.load(std::memory_order_acquire);
    const uint32_t task = static_cast<uint32_t>(w);  // kClosed while a job is being set up
    if (task >= static_cast<uint32_t>(n)) return;
    if (!work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
    call(ctx, static_cast<int>(task));
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) done_.notify_one();
  }
}

void ThreadPool::runImpl(int n_tasks, Call call, void* ctx) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) call(ctx, t);
    return;
  }
  const uint32_t job = ++job_;
  // Close the previous job first: a worker still holding its counter must not claim a task with
  // the fields written below.
  work_.store(uint64_t{job} << 32 | kClosed, std::memory_order_relaxed);
  n_tasks_.store(n_tasks, std::memory_order_release);
  call_.store(call, std::memory_order_release);
  ctx_.store(ctx, std::memory_order_release);
  done_.store(0, std::memory_order_relaxed);
  work_.store(uint64_t{job} << 32, std::memory_order_release);  // opens it: task 0 is next
  wake_.store(job, std::memory_order_release);
  wake_.notify_all();
  drain(job);
  if (!spinUntil([&] { return done_.load(std::memory_order_acquire) == n_tasks; })) {
    for (int d; (d = done_.load(std::memory_order_acquire)) != n_tasks;) done_.wait(d);
  }
}

void ThreadPool::workerLoop() {
  // Start from the id the pool was built with, not the current one: a job (or the destructor)
  // may already have been posted before this thread got going.
  uint32_t seen = 0;
  for (;;) {
    if (!spinUntil([&] { return wake_.load(std::memory_order_acquire) != seen; })) {
      wake_.wait(seen, std::memory_order_acquire);
    }
    seen = wake_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    drain(seen);
  }
}

}  // namespace engine::cpu
