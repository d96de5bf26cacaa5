#include "routers/timer.h"

namespace routers {

TimerThread::TimerThread() : thread_([this] { run(); }) {}

TimerThread::~TimerThread() { shutdown(); }

void TimerThread::shutdown() {
  decltype(queue_) dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    dropped.swap(queue_);
    pending_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

TimerThread::Id TimerThread::at(Clock::time_point when, std::function<void()> fn) {
  Id id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return 0;  // `fn` is destroyed on return, outside the lock
    id = next_id_++;
    queue_.emplace(when, std::make_pair(id, std::move(fn)));
    pending_.emplace(id, when);
  }
  cv_.notify_all();
  return id;
}

bool TimerThread::cancel(Id id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return false;
  auto range = queue_.equal_range(it->second);
  for (auto q = range.first; q != range.second; ++q) {
    if (q->second.first == id) {
      queue_.erase(q);
      break;
    }
  }
  pending_.erase(it);
  return true;
}

void TimerThread::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = queue_.begin();
    if (first->first > Clock::now()) {
      cv_.wait_until(lock, first->first);
      continue;
    }
    std::function<void()> fn = std::move(first->second.second);
    pending_.erase(first->second.first);
    queue_.erase(first);
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace routers
