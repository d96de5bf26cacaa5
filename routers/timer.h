// TimerThread: runs callbacks after a delay on one shared thread, for retry backoff (DESIGN.md
// "Threads": waiting never holds a thread per request). Callbacks must not block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace routers {

class TimerThread {
 public:
  using Clock = std::chrono::steady_clock;
  using Id = uint64_t;

  TimerThread();
  ~TimerThread();  // drops pending callbacks without running them, joins the thread
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;

  // Runs `fn` on the timer thread at `when` (at once when it is past). Returns an id for
  // cancel() (0, and `fn` is dropped, after shutdown()).
  Id at(Clock::time_point when, std::function<void()> fn);
  Id after(std::chrono::nanoseconds delay, std::function<void()> fn) {
    return at(Clock::now() + delay, std::move(fn));
  }
  // Stops the thread: pending callbacks are dropped unrun, and later at() calls drop theirs.
  // Idempotent; the destructor calls it.
  void shutdown();

  // Drops a pending callback; returns false when it already ran (or is running) or never
  // existed.
  bool cancel(Id id);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::pair<Id, std::function<void()>>> queue_;
  std::map<Id, Clock::time_point> pending_;
  Id next_id_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace routers
