#include "quality/recorder.h"
#include "tests/support/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using quality::JudgeResult;
using quality::JudgeStatus;
using quality::QualityRecord;
using quality::QualityStore;
using quality::Recorder;
using quality::RecorderOptions;
using quality::RecorderStats;
using quality::RecordFilter;
using quality::RecordKind;
using quality::TextMetrics;

constexpr int64_t kT0 = 1795446245000;  // 2026-11-23T15:04:05Z
constexpr int64_t kDayMs = 86'400'000;

using sytest::TempDir;

// A gate the writer thread can be held at: wait() blocks until open(); reached() tells the
// test that the writer is inside.
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void awaitReached(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

// A clock the test moves.
struct FakeClock {
  std::atomic<int64_t> now{kT0};
  std::function<int64_t()> fn() {
    return [this] { return now.load(); };
  }
};

std::unique_ptr<QualityStore> mustOpen(const std::string& path, bool read_only = false) {
  auto s = QualityStore::open(path, read_only);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<QualityRecord> mustQuery(const Recorder& rec, const RecordFilter& f = {}) {
  auto r = rec.query(f);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : std::vector<QualityRecord>{};
}

QualityRecord record(const std::string& team, const std::string& request_id,
                     int64_t unix_ms = kT0) {
  QualityRecord r;
  r.request_id = request_id;
  r.team = team;
  r.unix_ms = unix_ms;
  r.kind = RecordKind::kShadow;
  r.prompt = api::Json::array({{{"role", "user"}, {"content", "q " + request_id}}});
  r.local.text = "local " + request_id;
  r.cloud.text = "cloud " + request_id;
  return r;
}

RecorderOptions options(FakeClock* clock = nullptr) {
  RecorderOptions o;
  o.retention = {0, 0, 0};  // keep everything unless a test says otherwise
  if (clock) o.now_ms = clock->fn();
  return o;
}

TEST(Recorder, ConcurrentSubmittersAreAllWritten) {
  TempDir dir;
  RecorderOptions o = options();
  o.queue_capacity = 10'000;
  o.feedback_queue_capacity = 10'000;
  Recorder rec(mustOpen(dir.file("q.db")), o);
  constexpr uint64_t kThreads = 8, kEach = 250;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> refused{0};
  for (uint64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kEach; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        // Every fifth is feedback on the record this thread queued just before.
        std::string previous = "t" + std::to_string(t) + "-" + std::to_string(i - 1);
        bool ok = i % 5 == 4 ? rec.submitFeedback({previous, "acme", 1, "", kT0}, nullptr)
                             : rec.submit(record("acme", id, kT0 + static_cast<int64_t>(i)));
        if (!ok) ++refused;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  rec.flush();
  EXPECT_EQ(refused.load(), 0);
  RecorderStats s = rec.stats();
  EXPECT_EQ(s.submitted, kThreads * kEach);
  EXPECT_EQ(s.written, kThreads * kEach);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.feedback_refused, 0u);
  auto got = mustQuery(rec);
  ASSERT_EQ(got.size(), kThreads * kEach * 4 / 5);
  std::set<std::string> ids;
  size_t with_feedback = 0;
  for (const QualityRecord& r : got) {
    ids.insert(r.request_id);
    with_feedback += r.feedback.has_value();
  }
  EXPECT_EQ(ids.size(), got.size());
  EXPECT_EQ(with_feedback, kThreads * kEach / 5);
}

TEST(Recorder, AFullQueueDropsAndCountsWithoutBlocking) {
  TempDir dir;
  Gate gate;
  RecorderOptions o = options();
  o.queue_capacity = 3;
  o.annotate = [&](QualityRecord& r) {
    if (r.request_id == "first") gate.wait();
  };
  Recorder rec(mustOpen(dir.file("q.db")), o);
  ASSERT_TRUE(rec.submit(record("acme", "first")));
  gate.awaitReached(1);  // the writer holds "first"; the queue is empty
  EXPECT_TRUE(rec.submit(record("acme", "a")));
  EXPECT_TRUE(rec.submitJudge(12345, JudgeResult{}));
  EXPECT_TRUE(rec.submit(record("acme", "b")));
  // Full: each of these returns at once (the writer is still held).
  EXPECT_FALSE(rec.submit(record("acme", "c")));
  EXPECT_FALSE(rec.submitJudge(1, JudgeResult{}));
  RecorderStats s = rec.stats();
  EXPECT_EQ(s.submitted, 6u);
  EXPECT_EQ(s.dropped, 2u);
  EXPECT_EQ(s.written, 0u);

  gate.open();
  rec.flush();
  s = rec.stats();
  EXPECT_EQ(s.written, 3u);  // first, a, b
  EXPECT_EQ(s.failed, 1u);   // the judge result of a record that does not exist
  EXPECT_EQ(s.dropped, 2u);
  EXPECT_EQ(s.submitted, s.written + s.failed + s.dropped);
  std::vector<std::string> ids;
  for (const QualityRecord& r : mustQuery(rec)) ids.push_back(r.request_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"first", "a", "b"}));
  // Room again.
  EXPECT_TRUE(rec.submit(record("acme", "d")));
  rec.flush();
  EXPECT_EQ(rec.stats().written, 4u);
}

// Feedback is what clients send at will: a flood of it fills its own queue, never the one of
// records, and the reverse.
TEST(Recorder, FeedbackHasAQueueOfItsOwn) {
  TempDir dir;
  Gate gate;
  RecorderOptions o = options();
  o.queue_capacity = 2;
  o.feedback_queue_capacity = 3;
  o.annotate = [&](QualityRecord& r) {
    if (r.request_id == "first") gate.wait();
  };
  Recorder rec(mustOpen(dir.file("q.db")), o);
  ASSERT_TRUE(rec.submit(record("acme", "first")));
  gate.awaitReached(1);  // the writer holds "first"; both queues are empty
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(rec.submitFeedback({"first", "acme", 1, "", kT0 + i}, nullptr)) << i;
  }
  api::Status refused;
  bool called = false;
  std::thread::id caller = std::this_thread::get_id(), called_on;
  EXPECT_FALSE(rec.submitFeedback({"first", "acme", 1, "", kT0 + 9}, [&](const api::Status& s) {
    called = true;
    called_on = std::this_thread::get_id();
    refused = s;
  }));
  EXPECT_TRUE(called);
  EXPECT_EQ(called_on, caller);
  EXPECT_EQ(refused.code(), api::ErrorCode::kUnavailable);
  // The feedback queue is full; records still have room.
  EXPECT_TRUE(rec.submit(record("acme", "a")));
  EXPECT_TRUE(rec.submit(record("acme", "b")));
  EXPECT_FALSE(rec.submit(record("acme", "c")));
  // And a full record queue leaves feedback alone.
  RecorderStats s = rec.stats();
  EXPECT_EQ(s.feedback_dropped, 1u);
  EXPECT_EQ(s.dropped, 1u);

  gate.open();
  rec.flush();
  s = rec.stats();
  EXPECT_EQ(s.written, 6u);  // first, a, b and three feedback
  EXPECT_EQ(s.failed, 0u);
  std::vector<std::string> ids;
  for (const QualityRecord& r : mustQuery(rec)) ids.push_back(r.request_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"first", "a", "b"}));
}

TEST(Recorder, FeedbackOnAnUnknownRequestIsRefusedNotFailed) {
  TempDir dir;
  Recorder rec(mustOpen(dir.file("q.db")), options());
  ASSERT_TRUE(rec.submit(record("acme", "r1")));
  std::vector<api::Status> results(3);
  ASSERT_TRUE(rec.submitFeedback({"r1", "acme", 1, "", kT0},
                                 [&](const api::Status& s) { results[0] = s; }));
  ASSERT_TRUE(rec.submitFeedback({"r1", "beta", 1, "", kT0},
                                 [&](const api::Status& s) { results[1] = s; }));
  ASSERT_TRUE(rec.submitFeedback({"r2", "acme", 1, "", kT0},
                                 [&](const api::Status& s) { results[2] = s; }));
  rec.flush();
  EXPECT_TRUE(results[0].ok()) << results[0].message();
  EXPECT_EQ(results[1].code(), api::ErrorCode::kNotFound);
  EXPECT_EQ(results[2].code(), api::ErrorCode::kNotFound);
  RecorderStats s = rec.stats();
  EXPECT_EQ(s.written, 2u);
  EXPECT_EQ(s.feedback_refused, 2u);
  EXPECT_EQ(s.failed, 0u);
}

TEST(Recorder, AnnotatesBeforeAndReportsAfterStoring) {
  TempDir dir;
  std::mutex mu;
  std::vector<QualityRecord> stored;
  std::thread::id test_thread = std::this_thread::get_id();
  std::atomic<bool> off_thread{true};
  RecorderOptions o = options();
  o.annotate = [&](QualityRecord& r) {
    if (std::this_thread::get_id() == test_thread) off_thread = false;
    EXPECT_EQ(r.id, 0);
    TextMetrics m;
    m.token_f1 = 0.5;
    m.json_agree = r.request_id == "json";
    r.metrics = m;
  };
  o.on_stored = [&](const QualityRecord& r) {
    if (std::this_thread::get_id() == test_thread) off_thread = false;
    std::lock_guard<std::mutex> lock(mu);
    stored.push_back(r);
  };
  Recorder rec(mustOpen(dir.file("q.db")), o);
  ASSERT_TRUE(rec.submit(record("acme", "plain")));
  ASSERT_TRUE(rec.submit(record("acme", "json")));
  rec.flush();
  EXPECT_TRUE(off_thread.load());
  auto got = mustQuery(rec);
  ASSERT_EQ(got.size(), 2u);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(stored.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GT(stored[i].id, 0);
    EXPECT_EQ(stored[i].id, got[i].id);
    EXPECT_EQ(stored[i].request_id, got[i].request_id);
    ASSERT_TRUE(stored[i].metrics && got[i].metrics);
    EXPECT_EQ(got[i].metrics->token_f1, 0.5);
  }
  EXPECT_EQ(got[1].metrics->json_agree, std::optional<bool>(true));

  // The judge result lands on the stored id.
  JudgeResult j;
  j.status = JudgeStatus::kOk;
  j.delta = 0.75;
  ASSERT_TRUE(rec.submitJudge(stored[0].id, j));
  rec.flush();
  got = mustQuery(rec);
  ASSERT_TRUE(got[0].judge.has_value());
  EXPECT_EQ(got[0].judge->delta, 0.75);
  EXPECT_FALSE(got[1].judge.has_value());
}

TEST(Recorder, ThrowingCallbacksAreContained) {
  TempDir dir;
  RecorderOptions o = options();
  o.annotate = [](QualityRecord&) { throw std::runtime_error("annotate bug"); };
  o.on_stored = [](const QualityRecord&) { throw 42; };
  Recorder rec(mustOpen(dir.file("q.db")), o);
  ASSERT_TRUE(rec.submit(record("acme", "r1")));
  ASSERT_TRUE(rec.submitFeedback({"r1", "acme", 1, "", kT0},
                                 [](const api::Status&) { throw std::logic_error("done bug"); }));
  rec.flush();
  EXPECT_EQ(rec.stats().written, 2u);
  auto got = mustQuery(rec);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].feedback.has_value());
}

TEST(Recorder, FeedbackDoneRunsOnTheWriterWithTheStatus) {
  TempDir dir;
  Recorder rec(mustOpen(dir.file("q.db")), options());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<api::Status> results;
  std::thread::id test_thread = std::this_thread::get_id();
  std::atomic<bool> off_thread{true};
  auto done = [&](const api::Status& s) {
    if (std::this_thread::get_id() == test_thread) off_thread = false;
    std::lock_guard<std::mutex> lock(mu);
    results.push_back(s);
    cv.notify_all();
  };
  // Two after its record; the latest wins.
  ASSERT_TRUE(rec.submit(record("acme", "r1")));
  ASSERT_TRUE(rec.submitFeedback({"r1", "acme", -1, "bad", kT0 + 1}, done));
  ASSERT_TRUE(rec.submitFeedback({"r1", "acme", 1, "good after all", kT0 + 2}, done));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return results.size() == 2; });  // without flush()
  }
  EXPECT_TRUE(off_thread.load());
  for (const api::Status& s : results) EXPECT_TRUE(s.ok()) << s.message();
  rec.flush();
  auto got = mustQuery(rec);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].feedback.has_value());
  EXPECT_EQ(got[0].feedback->comment, "good after all");
  // A shadow sample: a good local answer, no cloud needed.
  EXPECT_EQ(got[0].feedbackDelta(), -1.0);
}

TEST(Recorder, DestructorWritesWhatIsQueued) {
  TempDir dir;
  std::string path = dir.file("q.db");
  Gate gate;
  {
    RecorderOptions o = options();
    o.annotate = [&](QualityRecord& r) {
      if (r.request_id == "r0") gate.wait();
    };
    Recorder rec(mustOpen(path), o);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(rec.submit(record("acme", "r" + std::to_string(i))));
    gate.awaitReached(1);
    gate.open();
    // No flush: the destructor drains.
  }
  auto store = mustOpen(path, true);
  ASSERT_NE(store, nullptr);
  auto got = store->query({});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), 100u);
}

TEST(Recorder, PrunesAtStartAndThenOnSchedule) {
  TempDir dir;
  std::string path = dir.file("q.db");
  {
    auto store = mustOpen(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->insert(record("acme", "ancient", kT0 - 40 * kDayMs)).ok());
    ASSERT_TRUE(store->insert(record("acme", "recent", kT0 - 20 * kDayMs)).ok());
  }
  FakeClock clock;
  RecorderOptions o = options(&clock);
  o.retention.max_age_days = 30;
  o.prune_every_ms = kDayMs;
  Recorder rec(mustOpen(path), o);
  rec.flush();  // waits for the prune at start
  auto ids = [&] {
    std::vector<std::string> out;
    for (const QualityRecord& r : mustQuery(rec)) out.push_back(r.request_id);
    return out;
  };
  EXPECT_EQ(ids(), (std::vector<std::string>{"recent"}));
  EXPECT_EQ(rec.stats().prunes, 1u);
  EXPECT_EQ(rec.stats().pruned, 1u);

  // Not due yet: nothing more goes.
  clock.now += kDayMs / 2;
  ASSERT_TRUE(rec.submit(record("acme", "now", clock.now)));
  rec.flush();
  EXPECT_EQ(rec.stats().prunes, 1u);
  // Eleven days on, "recent" is 31 days old; the prune runs before the next batch.
  clock.now += 11 * kDayMs;
  ASSERT_TRUE(rec.submit(record("acme", "later", clock.now)));
  rec.flush();
  EXPECT_EQ(rec.stats().prunes, 2u);
  EXPECT_EQ(rec.stats().pruned, 2u);
  EXPECT_EQ(ids(), (std::vector<std::string>{"now", "later"}));
}

// A raw connection adds a trigger that refuses some rows: a store error the writer sees, as
// root too (file permissions do not stop root).
TEST(Recorder, StoreErrorsAreCountedAndCostOnlyTheirItems) {
  TempDir dir;
  std::string path = dir.file("q.db");
  Gate gate;
  std::atomic<int> stored{0};
  RecorderOptions o = options();
  o.annotate = [&](QualityRecord& r) {
    if (r.request_id == "hold") gate.wait();
  };
  o.on_stored = [&](const QualityRecord&) { ++stored; };
  Recorder rec(mustOpen(path), o);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TRIGGER poison_r BEFORE INSERT ON records WHEN "
                           "NEW.team = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned record'); END;"
                           "CREATE TRIGGER poison_f BEFORE INSERT ON feedback WHEN "
                           "NEW.comment = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned feedback'); "
                           "END;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  // Held, so that the rest queue up and go as one batch with the bad ones in the middle.
  ASSERT_TRUE(rec.submit(record("acme", "hold")));
  gate.awaitReached(1);
  ASSERT_TRUE(rec.submit(record("acme", "good1")));
  ASSERT_TRUE(rec.submit(record("poison", "bad1")));
  api::Status bad_feedback, good_feedback;
  // On a stored record, but with the comment that the trigger refuses.
  ASSERT_TRUE(rec.submitFeedback({"good1", "acme", 1, "poison", kT0},
                                 [&](const api::Status& s) { bad_feedback = s; }));
  ASSERT_TRUE(rec.submitFeedback({"good1", "acme", 1, "", kT0},
                                 [&](const api::Status& s) { good_feedback = s; }));
  ASSERT_TRUE(rec.submit(record("acme", "good2")));
  gate.open();
  rec.flush();

  RecorderStats s = rec.stats();
  EXPECT_EQ(s.failed, 2u);
  EXPECT_EQ(s.written, 4u);
  EXPECT_EQ(s.submitted, 6u);
  EXPECT_EQ(stored.load(), 3);
  EXPECT_EQ(bad_feedback.code(), api::ErrorCode::kIo);
  EXPECT_NE(bad_feedback.message().find("quality store '" + path + "'"), std::string::npos);
  EXPECT_NE(bad_feedback.message().find("poisoned feedback"), std::string::npos);
  EXPECT_TRUE(good_feedback.ok()) << good_feedback.message();
  std::vector<std::string> ids;
  for (const QualityRecord& r : mustQuery(rec)) ids.push_back(r.request_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"hold", "good1", "good2"}));
}

// Another connection holds the write lock past the busy timeout (someone's sqlite3 shell, say):
// the batch fails once, after one wait, not after one wait per item.
TEST(Recorder, ALockHeldElsewhereFailsTheBatchAfterOneWait) {
  TempDir dir;
  std::string path = dir.file("q.db");
  Gate gate;
  RecorderOptions o = options();
  o.on_stored = [&](const QualityRecord& r) {
    if (r.request_id == "hold") gate.wait();
  };
  Recorder rec(mustOpen(path), o);
  ASSERT_TRUE(rec.submit(record("acme", "hold")));
  gate.awaitReached(1);  // written; the writer is held after its transaction
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(rec.submit(record("acme", "r" + std::to_string(i))));
  gate.open();
  rec.flush();
  RecorderStats s = rec.stats();
  EXPECT_EQ(s.failed, 20u);
  EXPECT_EQ(s.written, 1u);
  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  // The lock gone, writes go through again.
  ASSERT_TRUE(rec.submit(record("acme", "after")));
  rec.flush();
  EXPECT_EQ(rec.stats().written, 2u);
  EXPECT_EQ(mustQuery(rec).size(), 2u);
}

// The child: a store on a file that may not grow past a limit (RLIMIT_FSIZE, as a full disk
// would). Exit status 0 when the recorder counted failures, kept going and shut down.
int fullDiskChild(const std::string& path) {
  auto store = QualityStore::open(path);
  if (!store.ok()) return 2;
  signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of killing us
  struct rlimit limit {};
  limit.rlim_cur = limit.rlim_max = rlim_t{512} * 1024;
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
  RecorderOptions o;
  o.retention = {0, 0, 0};
  Recorder rec(std::move(*store), o);
  constexpr int kRecords = 100;
  for (int i = 0; i < kRecords; ++i) {
    QualityRecord r = record("acme", "r" + std::to_string(i));
    r.cloud.text.assign(20'000, 'x');
    if (!rec.submit(r)) return 4;
    if (i % 10 == 9) rec.flush();  // small batches, so that some fit before the limit
  }
  rec.flush();
  RecorderStats s = rec.stats();
  if (s.failed == 0) return 5;
  if (s.written == 0) return 6;
  if (s.written + s.failed != kRecords) return 7;
  auto got = rec.query({});
  if (!got.ok() || got->size() != s.written) return 8;
  return 0;
}

TEST(Recorder, AFullDiskIsCountedNotFatal) {
  TempDir dir;
  std::string path = dir.file("q.db");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(fullDiskChild(path));
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child died: " << wstatus;
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  // What was committed is intact.
  auto store = mustOpen(path, true);
  ASSERT_NE(store, nullptr);
  auto got = store->query({});
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_GT(got->size(), 0u);
  EXPECT_LT(got->size(), 100u);
}

}  // namespace
