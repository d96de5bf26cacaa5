// Recorder: writes quality records, judge results and feedback to a QualityStore off the
// request path, and keeps the store within its retention limits.
//
// Callers (request handlers, the shadow sampler, the judge) only push onto bounded queues:
// submit* never blocks and never fails loudly; a full queue drops the item and counts it.
// Records and judge results share one queue; feedback has its own, so that a flood of
// feedback (which clients send at will) can never crowd records out, nor the reverse. A
// feedback is written after every record queued before it, so that feedback sent on an answer
// whose record was queued first finds that record. One writer thread takes whatever is
// queued (up to kMaxBatchItems of each queue), runs `annotate` on each record
// outside any transaction, writes the batch in one transaction, then reports each item: a
// record's `on_stored`, a feedback's `done`. When a batch fails it is rolled back and its
// items are written one by one, so that one bad item costs only itself (unless the failure
// came after a long wait on a lock held elsewhere: then the rest fail at once). An item that
// still fails is counted in `failed` and logged (one JSON line on stderr, at most one per
// kLogInterval with a count of the failures in between); it is not retried (records are
// samples; the queue stays bounded). A store failure never crashes and never blocks callers.
//
// Pruning runs on the writer thread: once at start (before the first batch) and then every
// prune_every_ms of the injected clock, checked whenever the writer wakes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "api/status.h"
#include "quality/record.h"
#include "quality/store.h"

namespace quality {

struct RecorderOptions {
  // Records and judge results waiting to be written; a full queue drops (and counts) and never
  // blocks the caller.
  size_t queue_capacity = 1024;
  // Feedback waiting to be written, in a queue of its own (the same rules).
  size_t feedback_queue_capacity = 256;
  Retention retention;
  // Prune at start and then this often (ms of now_ms()); <= 0: only at start.
  int64_t prune_every_ms = 3600000;
  // Runs on the writer thread before a record is inserted (the gateway computes text metrics
  // here). An exception it throws is logged and the record written as it is.
  std::function<void(QualityRecord&)> annotate;
  // Runs on the writer thread after a record is stored (with its id set); the gateway samples
  // it for the judge here. Must not block long, and must not call flush().
  std::function<void(const QualityRecord&)> on_stored;
  std::function<int64_t()> now_ms;  // injectable clock (ms since the epoch); default system
};

struct RecorderStats {
  uint64_t submitted = 0;  // every submit*() call
  uint64_t written = 0;    // items stored
  uint64_t dropped = 0;    // records and judge results refused at submit: their queue was full
  uint64_t feedback_dropped = 0;  // feedback refused at submit: the feedback queue was full
  uint64_t feedback_refused = 0;  // feedback on a (team, request id) with no record; not stored
  uint64_t failed = 0;     // accepted but not stored (store error, judge of an unknown id)
  uint64_t prunes = 0;     // prune() runs that succeeded
  uint64_t pruned = 0;     // records they deleted
};

class Recorder {
 public:
  static constexpr size_t kMaxBatchItems = 256;
  static constexpr std::chrono::seconds kLogInterval{10};

  // Takes the store (non-null, opened for writing) and starts one writer thread.
  Recorder(std::unique_ptr<QualityStore> store, RecorderOptions options);
  // Writes what is queued, then joins the writer.
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Non-blocking; false (and dropped++) when the queue is full.
  bool submit(QualityRecord r);
  // Non-blocking; the same queue. A judge result for an id that is gone counts as failed.
  bool submitJudge(int64_t id, JudgeResult j);
  // Non-blocking, on the feedback queue; `done` (may be empty) runs on the writer thread with
  // the write's status (kNotFound when the team has no record of the request: see
  // QualityStore::addFeedback), or at once on the caller's with kUnavailable when the feedback
  // queue is full (then false).
  bool submitFeedback(Feedback f, std::function<void(api::Status)> done);
  // Blocks until every item queued before the call is handled (written or failed), and the
  // prune at start has run. Not from the callbacks.
  void flush();
  RecorderStats stats() const;  // thread-safe

  // Read access for admin endpoints and tests, on the store's read connection (never waits
  // for the writer's transactions). Items still queued are not seen: flush() first.
  api::StatusOr<std::vector<QualityRecord>> query(const RecordFilter& f) const;
  const std::string& path() const { return store_->path(); }

 private:
  struct JudgeItem {
    int64_t id = 0;
    JudgeResult judge;
  };
  struct FeedbackItem {
    Feedback feedback;
    std::function<void(api::Status)> done;
    uint64_t after = 0;  // queued_total_ at submit: written after those records
  };
  struct PruneItem {};
  using Item = std::variant<QualityRecord, JudgeItem, FeedbackItem, PruneItem>;

  // Moves `item` into the queue when it fits; false (item untouched) when it is full.
  bool enqueue(Item& item);
  // Moves the feedback items that may go now (their records handled or in `batch`) to `batch`;
  // returns how many. Requires mu_.
  size_t takeFeedback(std::vector<Item>& batch, uint64_t records_through);
  int64_t nowMs() const;
  void writerLoop();
  void prune();
  void writeBatch(std::vector<Item>& batch);
  // Writes one item; kNotFound etc. are per item, kIo aborts a batch.
  api::Status writeOne(Item& item);
  void report(Item& item, const api::Status& s);
  void logFailure(const std::string& msg, const std::string& error);

  std::unique_ptr<QualityStore> store_;
  RecorderOptions options_;

  mutable std::mutex mu_;
  std::condition_variable writer_cv_;   // the writer waits for items or stop_
  std::condition_variable handled_cv_;  // flush() waits for handled_total_
  std::deque<Item> queue_;
  uint64_t queued_total_ = 0;   // items ever queued (the prune at start included)
  uint64_t handled_total_ = 0;  // items handled, in queue order
  std::deque<FeedbackItem> feedback_;
  uint64_t feedback_queued_ = 0;   // feedback ever queued
  uint64_t feedback_handled_ = 0;  // feedback handled, in queue order
  bool stop_ = false;
  std::optional<int64_t> next_prune_ms_;  // writer thread only; set after the first prune

  std::atomic<uint64_t> submitted_{0}, written_{0}, dropped_{0}, failed_{0}, prunes_{0}, pruned_{0};
  std::atomic<uint64_t> feedback_dropped_{0}, feedback_refused_{0};

  // Failure log rate limit; writer thread only.
  std::chrono::steady_clock::time_point last_log_{};
  bool logged_once_ = false;
  uint64_t unlogged_failures_ = 0;

  std::thread writer_;
};

}  // namespace quality
