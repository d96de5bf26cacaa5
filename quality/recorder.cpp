#include "quality/recorder.h"

#include <cassert>
#include <cstdio>
#include <exception>
#include <optional>
#include <utility>

namespace quality {
namespace {

// Longest the writer sleeps between looks at the clock, so that a prune falls due on time
// even when the injected clock jumps.
constexpr auto kMaxIdleWait = std::chrono::seconds(60);
// A write that fails after this long waited on a lock (see writeBatch).
constexpr auto kSlowFailure = std::chrono::seconds(1);

int64_t systemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Ordered, so that a line starts with "level" and "msg" like the gateway's other log lines.
void logLine(const nlohmann::ordered_json& line) {
  std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::fprintf(stderr, "%s\n", text.c_str());
}

// Runs a callback of the gateway's; a throw is a bug there, logged rather than fatal here.
template <typename F>
void guarded(const char* what, const std::string& path, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    logLine({{"level", "error"},
             {"msg", std::string("quality recorder: ") + what + " threw"},
             {"path", path},
             {"what", e.what()}});
  } catch (...) {
    logLine({{"level", "error"},
             {"msg", std::string("quality recorder: ") + what + " threw"},
             {"path", path}});
  }
}

}  // namespace

Recorder::Recorder(std::unique_ptr<QualityStore> store, RecorderOptions options)
    : store_(std::move(store)), options_(std::move(options)) {
  assert(store_ && !store_->readOnly());
  // The first prune is an item, so that flush() waits for it.
  queue_.emplace_back(PruneItem{});
  queued_total_ = 1;
  writer_ = std::thread([this] { writerLoop(); });
}

Recorder::~Recorder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  writer_cv_.notify_all();
  writer_.join();  // after it has handled everything queued
}

int64_t Recorder::nowMs() const { return options_.now_ms ? options_.now_ms() : systemNowMs(); }

bool Recorder::enqueue(Item& item) {
  submitted_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() < options_.queue_capacity) {
      queue_.push_back(std::move(item));
      ++queued_total_;
      writer_cv_.notify_one();
      return true;
    }
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool Recorder::submit(QualityRecord r) {
  Item item = std::move(r);
  return enqueue(item);
}

bool Recorder::submitJudge(int64_t id, JudgeResult j) {
  Item item = JudgeItem{id, std::move(j)};
  return enqueue(item);
}

bool Recorder::submitFeedback(Feedback f, std::function<void(api::Status)> done) {
  submitted_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (feedback_.size() < options_.feedback_queue_capacity) {
      feedback_.push_back(FeedbackItem{std::move(f), std::move(done), queued_total_});
      ++feedback_queued_;
      writer_cv_.notify_one();
      return true;
    }
  }
  feedback_dropped_.fetch_add(1, std::memory_order_relaxed);
  if (done) {
    done(api::Status(api::ErrorCode::kUnavailable,
                     "quality store '" + store_->path() +
                         "': the feedback queue is full; feedback on request '" + f.request_id +
                         "' was not recorded"));
  }
  return false;
}

void Recorder::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t target = queued_total_, feedback_target = feedback_queued_;
  handled_cv_.wait(lock, [&] {
    return handled_total_ >= target && feedback_handled_ >= feedback_target;
  });
}

RecorderStats Recorder::stats() const {
  RecorderStats s;
  s.submitted = submitted_.load(std::memory_order_relaxed);
  s.written = written_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.feedback_dropped = feedback_dropped_.load(std::memory_order_relaxed);
  s.feedback_refused = feedback_refused_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.prunes = prunes_.load(std::memory_order_relaxed);
  s.pruned = pruned_.load(std::memory_order_relaxed);
  return s;
}

api::StatusOr<std::vector<QualityRecord>> Recorder::query(const RecordFilter& f) const {
  return store_->query(f);
}

// ---- The writer ----

void Recorder::logFailure(const std::string& msg, const std::string& error) {
  ++unlogged_failures_;
  auto now = std::chrono::steady_clock::now();
  if (logged_once_ && now - last_log_ < kLogInterval) return;
  logLine({{"level", "error"},
           {"msg", msg},
           {"path", store_->path()},
           {"error", error},
           {"failures", unlogged_failures_}});  // this one and those not logged since the last
  logged_once_ = true;
  last_log_ = now;
  unlogged_failures_ = 0;
}

void Recorder::prune() {
  auto n = store_->prune(options_.retention, nowMs());
  if (!n.ok()) {
    logFailure("quality recorder: prune failed", n.status().message());
    return;
  }
  prunes_.fetch_add(1, std::memory_order_relaxed);
  pruned_.fetch_add(static_cast<uint64_t>(*n), std::memory_order_relaxed);
}

api::Status Recorder::writeOne(Item& item) {
  if (auto* r = std::get_if<QualityRecord>(&item)) {
    auto id = store_->insert(*r);
    if (!id.ok()) return id.status();
    r->id = *id;
    return {};
  }
  if (auto* j = std::get_if<JudgeItem>(&item)) return store_->setJudge(j->id, j->judge);
  if (auto* f = std::get_if<FeedbackItem>(&item)) return store_->addFeedback(f->feedback);
  return {};
}

void Recorder::report(Item& item, const api::Status& s) {
  if (std::holds_alternative<PruneItem>(item)) return;
  auto* f = std::get_if<FeedbackItem>(&item);
  if (f && s.code() == api::ErrorCode::kNotFound) {
    // The client named a request its team has no record of: its error, not the store's.
    feedback_refused_.fetch_add(1, std::memory_order_relaxed);
  } else if (s.ok()) {
    written_.fetch_add(1, std::memory_order_relaxed);
  } else {
    failed_.fetch_add(1, std::memory_order_relaxed);
    const char* msg = s.code() == api::ErrorCode::kNotFound
                          ? "quality recorder: judge result of a record that is gone; dropped"
                          : "quality recorder: write failed; item dropped";
    logFailure(msg, s.message());
  }
  if (auto* r = std::get_if<QualityRecord>(&item); r && s.ok() && options_.on_stored) {
    guarded("on_stored", store_->path(), [&] { options_.on_stored(*r); });
  }
  if (f && f->done) {
    guarded("feedback done", store_->path(), [&] { f->done(s); });
  }
}

void Recorder::writeBatch(std::vector<Item>& batch) {
  // Annotations first and outside the transaction: they may be slow (text metrics), and the
  // write lock should be held only for the inserts.
  if (options_.annotate) {
    for (Item& item : batch) {
      if (auto* r = std::get_if<QualityRecord>(&item)) {
        guarded("annotate", store_->path(), [&] { options_.annotate(*r); });
      }
    }
  }
  std::vector<api::Status> statuses(batch.size());
  // A failure that took long (a lock held elsewhere past the busy timeout) is the store's, not
  // an item's: what is left fails with it rather than wait again, item by item.
  std::optional<api::Status> store_down;
  auto start = std::chrono::steady_clock::now();
  auto slow = [&] { return std::chrono::steady_clock::now() - start > kSlowFailure; };
  bool batched = false;
  if (batch.size() > 1) {
    api::Status s = store_->transaction([&]() -> api::Status {
      for (size_t i = 0; i < batch.size(); ++i) {
        statuses[i] = writeOne(batch[i]);
        // A missing record is the item's own outcome; anything else is the store's and
        // undoes the batch.
        if (!statuses[i].ok() && statuses[i].code() != api::ErrorCode::kNotFound) {
          return statuses[i];
        }
      }
      return {};
    });
    batched = s.ok();
    if (!batched && slow()) store_down = s;
  }
  if (!batched) {
    // One at a time, each in its own transaction, so that a bad item fails alone.
    for (size_t i = 0; i < batch.size(); ++i) {
      if (store_down) {
        statuses[i] = *store_down;
        continue;
      }
      start = std::chrono::steady_clock::now();
      statuses[i] = writeOne(batch[i]);
      if (!statuses[i].ok() && statuses[i].code() != api::ErrorCode::kNotFound && slow()) {
        store_down = statuses[i];
      }
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) report(batch[i], statuses[i]);
}

size_t Recorder::takeFeedback(std::vector<Item>& batch, uint64_t records_through) {
  size_t n = 0;
  while (!feedback_.empty() && n < kMaxBatchItems && feedback_.front().after <= records_through) {
    batch.push_back(std::move(feedback_.front()));
    feedback_.pop_front();
    ++n;
  }
  return n;
}

void Recorder::writerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    bool periodic = options_.prune_every_ms > 0;
    auto due = [&] { return periodic && next_prune_ms_ && nowMs() >= *next_prune_ms_; };
    if (queue_.empty() && feedback_.empty() && !stop_ && !due()) {
      std::chrono::milliseconds wait = kMaxIdleWait;
      if (periodic && next_prune_ms_) {
        wait = std::min(wait,
                        std::chrono::milliseconds(std::max<int64_t>(1, *next_prune_ms_ - nowMs())));
      }
      writer_cv_.wait_for(lock, wait);
      continue;
    }
    if (queue_.empty() && feedback_.empty() && stop_) break;
    // Decided under the lock that saw the items: a clock moved before a submit is seen by the
    // batch that holds it.
    bool prune_now = due();
    size_t n = std::min(queue_.size(), kMaxBatchItems);
    std::vector<Item> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    const size_t n_feedback = takeFeedback(batch, handled_total_ + n);
    lock.unlock();

    if (!batch.empty() && std::holds_alternative<PruneItem>(batch.front())) prune_now = true;
    if (prune_now) {
      prune();
      if (periodic) next_prune_ms_ = nowMs() + options_.prune_every_ms;
    }
    writeBatch(batch);

    lock.lock();
    handled_total_ += n;
    feedback_handled_ += n_feedback;
    handled_cv_.notify_all();
  }
}

}  // namespace quality
