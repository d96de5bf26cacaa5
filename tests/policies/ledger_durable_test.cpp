// Durable reservations (journaled before a call starts, committed as pending rows, settled in
// place, billed at their reserved amount after a crash), group commit, a ledger that cannot
// write, alerts decided in memory, and the files' modes. Real SQLite files in a temporary
// directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "policies/ledger.h"
#include "policies/ledger_reader.h"
#include "tests/policies/ledger_backends.h"
#include "tests/policies/sqlite_test_util.h"

namespace {

using policies::BudgetLimits;
using policies::LedgerRow;
using policies::ReservationRequest;
using policies::Spend;
using policies::Window;
using policies_test::RawDb;
using policies_test::TempDir;

constexpr int64_t kNov23 = 1795446245000;  // 2026-11-23T15:04:05Z

std::unique_ptr<policies::Ledger> mustOpen(const std::string& path) {
  auto l = policies::openSqliteLedger(path);
  EXPECT_TRUE(l.ok()) << l.status().message();
  return l.ok() ? std::move(*l) : nullptr;
}

ReservationRequest request(const std::string& id, double max_cost, const std::string& team = "acme",
                           BudgetLimits limits = {}) {
  ReservationRequest r;
  r.request_id = id;
  r.team = team;
  r.key_id = "key-1";
  r.model = "gpt-4o";
  r.decision = "cloud";
  r.max_cost_usd = max_cost;
  r.limits = limits;
  r.now_ms = kNov23;
  return r;
}

LedgerRow settledRow(const std::string& id, double cost, const std::string& team = "acme") {
  LedgerRow r;
  r.request_id = id;
  r.team = team;
  r.key_id = "key-1";
  r.model = "gpt-4o";
  r.route = "openai/gpt-4o";
  r.kind = "cloud";
  r.decision = "cloud";
  r.prompt_tokens = 120;
  r.completion_tokens = 30;
  r.cost_usd = cost;
  r.latency_ms = 40;
  r.status = 200;
  r.unix_ms = kNov23 + 500;
  return r;
}

// What on_durable reported, waited for with a deadline (a hang fails the test, it is not a
// timing assertion).
class Durable {
 public:
  policies::DurableCallback callback() {
    return [this](api::Status s) {
      std::lock_guard<std::mutex> lock(mu_);
      statuses_.push_back(std::move(s));
      cv_.notify_all();
    };
  }
  // Waits for `n` reports in all; false after 30 s.
  bool waitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return statuses_.size() >= n; });
  }
  std::vector<api::Status> statuses() {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::Status> statuses_;
};

// Reserves durably and waits until the pending row is committed.
uint64_t reserveAndWait(policies::Ledger& ledger, const ReservationRequest& req) {
  Durable durable;
  auto id = ledger.reserveDurable(req, durable.callback());
  EXPECT_TRUE(id.ok()) << id.status().message();
  if (!id.ok()) return 0;
  EXPECT_TRUE(durable.waitFor(1));
  auto st = durable.statuses();
  EXPECT_EQ(st.size(), 1u);
  if (!st.empty()) {
    EXPECT_TRUE(st[0].ok()) << st[0].message();
  }
  return *id;
}

// Bytes in a file (-1 when it cannot be read).
int64_t fileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

// Durable reservations through the interface, against both implementations.
using LedgerApiDurable = policies_test::LedgerBackendTest;
INSTANTIATE_TEST_SUITE_P(Backends, LedgerApiDurable,
                         testing::Values(policies_test::Backend::kSqlite,
                                         policies_test::Backend::kPostgres),
                         policies_test::backendName);

TEST(LedgerDurable, ReservationIsJournaledWhenOnDurableRunsAndAPendingRowOnceCommitted) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  // on_durable runs inline, on the caller's thread, once the journal holds the reservation:
  // no hop to the writer thread and no wait for a commit before the call starts.
  std::atomic<int64_t> journal_bytes{-1};
  bool called = false;
  const std::thread::id caller = std::this_thread::get_id();
  auto id = ledger->reserveDurable(request("chatcmpl-1", 0.25), [&](api::Status s) {
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(std::this_thread::get_id(), caller);
    journal_bytes = fileBytes(path + "-pending.0") + fileBytes(path + "-pending.1");
    called = true;
  });
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_TRUE(called);
  EXPECT_GT(journal_bytes.load(), 0);
  // Reserved, not spent.
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_EQ(s.settled_usd, 0);
  EXPECT_DOUBLE_EQ(s.reserved_usd, 0.25);

  // The writer commits it as a pending row; the journal has nothing left to keep then.
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_EQ(fileBytes(path + "-pending.0") + fileBytes(path + "-pending.1"), 0);
  RawDb db(path);
  EXPECT_EQ(db.text("SELECT request_id || '|' || team || '|' || key_id || '|' || model || '|' || "
                    "decision || '|' || kind || '|' || cost_usd || '|' || status || '|' || "
                    "unix_ms || '|' || state FROM requests"),
            "chatcmpl-1|acme|key-1|gpt-4o|cloud|cloud|0.25|0|1795446245000|pending");

  // Readers beside the gateway see it as pending, at its reserved amount.
  auto rows = policies::readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].state, "pending");
  EXPECT_DOUBLE_EQ((*rows)[0].cost_usd, 0.25);
  auto groups = ledger->breakdown("acme", Window::kDay, kNov23);
  ASSERT_TRUE(groups.ok()) << groups.status().message();
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].requests, 0);
  EXPECT_EQ((*groups)[0].cost_usd, 0);
  EXPECT_EQ((*groups)[0].pending, 1);
  EXPECT_DOUBLE_EQ((*groups)[0].pending_usd, 0.25);
}

TEST_P(LedgerApiDurable, SettleRewritesThePendingRowInPlaceAndReleaseRemovesIt) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  uint64_t a = reserveAndWait(*ledger, request("req-a", 0.5));
  uint64_t b = reserveAndWait(*ledger, request("req-b", 0.4));
  ASSERT_TRUE(a != 0 && b != 0);
  ASSERT_TRUE(ledger->flush().ok());
  int64_t pending_id = home().int64("SELECT id FROM requests WHERE request_id = 'req-a'");

  ASSERT_TRUE(ledger->settle(a, settledRow("req-a", 0.125)).ok());
  ledger->release(b);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0.125);
  EXPECT_EQ(s.reserved_usd, 0);
  ASSERT_TRUE(ledger->flush().ok());

  // One row per request: the pending row became the final one.
  EXPECT_EQ(home().column("SELECT id || '|' || request_id || '|' || state || '|' || cost_usd || '|' || "
                      "status || '|' || route || '|' || completion_tokens FROM requests"),
            (std::vector<std::string>{std::to_string(pending_id) +
                                      "|req-a|settled|0.125|200|openai/gpt-4o|30"}));
  // The sums read back from the file after a reopen agree.
  ledger.reset();
  ledger = open();
  ASSERT_NE(ledger, nullptr);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0.125);
  EXPECT_EQ(ledger->stats().crashed_reservations, 0u);
}

// The child: reserves durably, settles one reservation, records a local row, flushes, says
// so on `fd`, and waits to be killed with the others in flight.
int pendingChild(const std::string& path, int fd) {
  auto opened = policies::openSqliteLedger(path);
  if (!opened.ok()) return 2;
  policies::Ledger& ledger = **opened;
  Durable durable;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    auto id = ledger.reserveDurable(request("inflight-" + std::to_string(i), 0.1 * (i + 1)),
                                    durable.callback());
    if (!id.ok()) return 3;
    ids.push_back(*id);
  }
  if (!durable.waitFor(5)) return 4;
  for (const api::Status& s : durable.statuses()) {
    if (!s.ok()) return 5;
  }
  if (!ledger.settle(ids[0], settledRow("inflight-0", 0.02)).ok()) return 6;
  LedgerRow local = settledRow("local-1", 0);
  local.kind = "local";
  if (!ledger.record(local).ok()) return 7;
  if (!ledger.flush().ok()) return 8;
  if (write(fd, "R", 1) != 1) return 9;
  while (true) pause();
}

TEST(LedgerDurable, SigkilledChildsReservationsAreBilledAsCrashedOnTheNextOpen) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    _exit(pendingChild(path, fds[1]));
  }
  close(fds[1]);
  char ready = 0;
  bool got_ready = read(fds[0], &ready, 1) == 1;
  close(fds[0]);
  kill(pid, SIGKILL);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(got_ready) << "child exited early with status " << wstatus;
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << wstatus;
  {
    RawDb db(path);
    EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests WHERE state = 'pending'"), 4);
  }

  // In flight at the kill: 0.2 + 0.3 + 0.4 + 0.5, billed at what was reserved.
  const double crashed = 0.2 + 0.3 + 0.4 + 0.5;
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  policies::LedgerStats stats = ledger->stats();
  EXPECT_EQ(stats.crashed_reservations, 4u);
  EXPECT_NEAR(stats.crashed_usd, crashed, 1e-9);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.02 + crashed, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);  // no reservation survives the restart
  {
    RawDb db(path);
    EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests WHERE state = 'pending'"), 0);
    EXPECT_EQ(db.column("SELECT request_id || '|' || state || '|' || cost_usd FROM requests "
                        "ORDER BY request_id"),
              (std::vector<std::string>{"inflight-0|settled|0.02", "inflight-1|crashed|0.2",
                                        "inflight-2|crashed|0.3", "inflight-3|crashed|0.4",
                                        "inflight-4|crashed|0.5", "local-1|settled|0.0"}));
  }
  auto rows = policies::readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  int crashed_rows = 0;
  for (const LedgerRow& r : *rows) crashed_rows += r.state == "crashed" ? 1 : 0;
  EXPECT_EQ(crashed_rows, 4);

  // Billed once: the next open finds nothing left to settle.
  ledger.reset();
  ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(ledger->stats().crashed_reservations, 0u);
  EXPECT_NEAR(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0.02 + crashed, 1e-9);
}

TEST(LedgerDurable, UnwritableLedgerRefusesDurableReservationsUntilWritesWorkAgain) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  RawDb db(path);
  // Every write of a row fails, as on a full disk or a file turned read-only (the tests run as
  // root, for whom file modes do not stop writes).
  db.exec(
      "CREATE TRIGGER full BEFORE INSERT ON requests "
      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");

  // Accepted before the failure is known: durable in the journal, so its call may start, and
  // its money stays reserved.
  uint64_t first = reserveAndWait(*ledger, request("r1", 0.3));
  ASSERT_NE(first, 0u);
  api::Status flushed = ledger->flush();
  EXPECT_EQ(flushed.code(), api::ErrorCode::kIo);
  EXPECT_NE(flushed.message().find("database or disk is full"), std::string::npos)
      << flushed.message();

  // From now on refused at once, nothing reserved, no callback.
  bool called = false;
  auto refused = ledger->reserveDurable(request("r2", 0.3), [&](api::Status) { called = true; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kUnavailable);
  EXPECT_EQ(refused.status().httpStatusCode(), 503);
  EXPECT_EQ(refused.status().message().rfind("ledger unavailable: ", 0), 0u)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("database or disk is full"), std::string::npos);
  EXPECT_FALSE(called);
  EXPECT_FALSE(ledger->stats().available);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).reserved_usd, 0.3);
  // The first call ends: its settle waits for the file with its pending row. Local answers keep
  // being counted too.
  ASSERT_TRUE(ledger->settle(first, settledRow("r1", 0.1)).ok());
  ASSERT_TRUE(ledger->record(settledRow("local", 0)).ok());

  // Writable again: the writer finds out by itself and reservations are accepted again.
  db.exec("DROP TRIGGER full");
  std::optional<uint64_t> again;
  for (int i = 0; i < 600 && !again; ++i) {
    auto r = ledger->reserveDurable(request("r3", 0.3), nullptr);
    if (r.ok()) {
      again = *r;
    } else {
      ASSERT_EQ(r.status().code(), api::ErrorCode::kUnavailable);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(again.has_value()) << "still unavailable after the file became writable";
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_TRUE(ledger->stats().available);
  EXPECT_EQ(db.column("SELECT request_id || '|' || state || '|' || cost_usd FROM requests "
                      "ORDER BY id"),
            (std::vector<std::string>{"r1|settled|0.1", "local|settled|0.0", "r3|pending|0.3"}));
}

// The child: reserves durably while no row can reach the file, settles one reservation (that
// settle cannot reach the file either), says so on `fd`, and waits to be killed.
int journalOnlyChild(const std::string& path, int fd) {
  auto opened = policies::openSqliteLedger(path);
  if (!opened.ok()) return 2;
  policies::Ledger& ledger = **opened;
  std::vector<uint64_t> ids;
  for (double usd : {0.1, 0.2, 0.4}) {
    Durable durable;
    auto id = ledger.reserveDurable(request("journaled-" + std::to_string(ids.size()), usd),
                                    durable.callback());
    if (!id.ok()) return 3;
    if (!durable.waitFor(1) || !durable.statuses()[0].ok()) return 4;
    ids.push_back(*id);
  }
  if (!ledger.settle(ids[0], settledRow("journaled-0", 0.05)).ok()) return 5;
  if (ledger.flush().ok()) return 6;  // the trigger refuses every row
  if (write(fd, "R", 1) != 1) return 7;
  while (true) pause();
}

TEST(LedgerDurable, ReservationsOnlyInTheJournalAreBilledAsCrashedOnTheNextOpen) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  ASSERT_NE(mustOpen(path), nullptr);  // creates the schema
  {
    RawDb db(path);
    db.exec(
        "CREATE TRIGGER full BEFORE INSERT ON requests "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    _exit(journalOnlyChild(path, fds[1]));
  }
  close(fds[1]);
  char ready = 0;
  bool got_ready = read(fds[0], &ready, 1) == 1;
  close(fds[0]);
  kill(pid, SIGKILL);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(got_ready) << "child exited early with status " << wstatus;
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << wstatus;
  {
    RawDb db(path);
    EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests"), 0);  // nothing reached the file
    db.exec("DROP TRIGGER full");
  }
  ASSERT_GT(fileBytes(path + "-pending.0") + fileBytes(path + "-pending.1"), 0);
  {
    // A record torn by the kill (half written) is recognized and skipped.
    FILE* f = std::fopen((path + "-pending.0").c_str(), "ab");
    ASSERT_NE(f, nullptr);
    std::fwrite("SYRJ\x40\0\0\0torn", 1, 12, f);
    std::fclose(f);
  }

  // Every reservation in flight at the kill is billed at what it reserved: 0.1 + 0.2 + 0.4,
  // the settled one too (its settle at $0.05 was lost: never less than the provider billed).
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  policies::LedgerStats stats = ledger->stats();
  EXPECT_EQ(stats.crashed_reservations, 3u);
  EXPECT_NEAR(stats.crashed_usd, 0.7, 1e-9);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.7, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);  // no reservation survives the restart
  EXPECT_EQ(fileBytes(path + "-pending.0") + fileBytes(path + "-pending.1"), 0);
  {
    RawDb db(path);
    EXPECT_EQ(db.column("SELECT request_id || '|' || state || '|' || cost_usd || '|' || key_id "
                        "|| '|' || model || '|' || unix_ms FROM requests ORDER BY request_id"),
              (std::vector<std::string>{"journaled-0|crashed|0.1|key-1|gpt-4o|1795446245000",
                                        "journaled-1|crashed|0.2|key-1|gpt-4o|1795446245000",
                                        "journaled-2|crashed|0.4|key-1|gpt-4o|1795446245000"}));
  }
  // Billed once, and new rows do not collide with the recovered ones.
  uint64_t next = reserveAndWait(*ledger, request("after", 0.01));
  ASSERT_TRUE(ledger->settle(next, settledRow("after", 0.01)).ok());
  ledger.reset();
  ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(ledger->stats().crashed_reservations, 0u);
  EXPECT_NEAR(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0.71, 1e-9);
}

TEST(LedgerDurable, APendingRowAndItsSettleShareOneTransaction) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  // Sequential calls, as on one keep-alive connection: nobody waits for a commit, so the
  // writer gathers them.
  constexpr int kCalls = 50;
  for (int i = 0; i < kCalls; ++i) {
    std::string id = "seq-" + std::to_string(i);
    uint64_t r = reserveAndWait(*ledger, request(id, 0.01));
    ASSERT_TRUE(ledger->settle(r, settledRow(id, 0.004)).ok());
  }
  ASSERT_TRUE(ledger->flush().ok());
  // One transaction per reservation and one per settle would be 2 * kCalls commits.
  EXPECT_LT(ledger->stats().commits, static_cast<uint64_t>(kCalls / 2))
      << ledger->stats().commits << " commits";
  RawDb db(path);
  EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests WHERE state = 'settled'"), kCalls);
  EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests"), kCalls);
  EXPECT_NEAR(db.real("SELECT SUM(cost_usd) FROM requests"), kCalls * 0.004, 1e-9);
}

TEST(LedgerDurable, ConcurrentReservationsShareCommits) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  constexpr int kThreads = 16, kEach = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        // Like a cloud call: wait until the reservation is durable, then settle.
        Durable durable;
        auto r = ledger->reserveDurable(request(id, 0.001), durable.callback());
        if (!r.ok() || !durable.waitFor(1) || !durable.statuses()[0].ok() ||
            !ledger->settle(*r, settledRow(id, 0.0005)).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_EQ(failures.load(), 0);
  constexpr int kWrites = 2 * kThreads * kEach;  // a pending row and its settle each
  policies::LedgerStats stats = ledger->stats();
  RecordProperty("commits", std::to_string(stats.commits));
  EXPECT_GE(stats.commits, 1u);
  // One transaction per write would be kWrites commits; group commit shares them.
  EXPECT_LT(stats.commits, static_cast<uint64_t>(kWrites / 4)) << stats.commits << " commits";
  RawDb db(path);
  EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests WHERE state = 'settled'"), kThreads * kEach);
  EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests"), kThreads * kEach);
  EXPECT_NEAR(ledger->spent("acme", Window::kDay, kNov23).settled_usd, kThreads * kEach * 0.0005,
              1e-9);
}

TEST_P(LedgerApiDurable, DurableReservationsCountAgainstLimitsLikeReserve) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  BudgetLimits daily{1.0, std::nullopt};
  ASSERT_NE(reserveAndWait(*ledger, request("a", 0.6, "acme", daily)), 0u);
  bool called = false;
  auto refused =
      ledger->reserveDurable(request("b", 0.5, "acme", daily), [&](api::Status) { called = true; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kQuotaExceeded);
  EXPECT_EQ(refused.status().message(),
            "The budget of team 'acme' is exhausted: its daily limit of $1.00 for 2026-11-23 has "
            "$0.00 spent and $0.60 reserved; this request may cost up to $0.50.");
  EXPECT_FALSE(called);
  EXPECT_TRUE(ledger->reserve("acme", 0.4, daily, kNov23).ok());  // in-memory ones share it
  EXPECT_FALSE(ledger->reserve("acme", 0.01, daily, kNov23).ok());
}

TEST(LedgerDurable, FullQueueDropsWritesWithACounterButKeepsTheMoney) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  RawDb db(path);
  db.exec(
      "CREATE TRIGGER full BEFORE INSERT ON requests "
      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
  // Fill the queue while nothing can be written; record() never waits for room.
  int refused = 0;
  double recorded = 0;
  for (int i = 0; i < 100'010; ++i) {
    api::Status s = ledger->record(settledRow("r" + std::to_string(i), 0.001));
    recorded += 0.001;
    if (!s.ok()) {
      EXPECT_EQ(s.code(), api::ErrorCode::kIo);
      ++refused;
    }
  }
  EXPECT_GE(refused, 10);
  EXPECT_EQ(ledger->stats().dropped_writes, static_cast<uint64_t>(refused));
  // Every cost still counts, also in sums computed afresh (another period first, then back).
  EXPECT_NEAR(ledger->spent("acme", Window::kDay, kNov23).settled_usd, recorded, 1e-6);
  EXPECT_EQ(ledger->spent("acme", Window::kDay, kNov23 + 86'400'000).settled_usd, 0);
  EXPECT_NEAR(ledger->spent("acme", Window::kDay, kNov23).settled_usd, recorded, 1e-6);
  EXPECT_NEAR(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, recorded, 1e-6);
  db.exec("DROP TRIGGER full");
}

TEST(LedgerDurable, MarkAlertedDecidesInMemoryWhileTheFileIsLocked) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  {
    auto ledger = mustOpen(path);
    ASSERT_NE(ledger, nullptr);
    {
      // Another connection holds the write lock: a synchronous insert would wait for it and
      // then fail; the decision must not need the file.
      RawDb holder(path);
      holder.exec("BEGIN IMMEDIATE");
      auto first = ledger->markAlerted("acme", "2026-11", 0.8, kNov23);
      ASSERT_TRUE(first.ok()) << first.status().message();
      EXPECT_TRUE(*first);
      auto again = ledger->markAlerted("acme", "2026-11", 0.8, kNov23 + 1);
      ASSERT_TRUE(again.ok());
      EXPECT_FALSE(*again);
      holder.exec("ROLLBACK");
    }
    ASSERT_TRUE(ledger->flush().ok());
    RawDb db(path);
    EXPECT_EQ(db.int64("SELECT COUNT(*) FROM alerts"), 1);
  }
  // Once per (team, period, threshold) across a reopen.
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  EXPECT_FALSE(*ledger->markAlerted("acme", "2026-11", 0.8, kNov23 + 2));
  EXPECT_TRUE(*ledger->markAlerted("acme", "2026-11", 0.9, kNov23 + 2));
  EXPECT_TRUE(*ledger->markAlerted("acme", "2026-12", 0.8, kNov23 + 2));
  EXPECT_FALSE(*ledger->markAlerted("acme", "2026-12", 0.8, kNov23 + 3));
}

TEST(LedgerDurable, CachedSpentNeverReadsTheFile) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  ASSERT_TRUE(ledger->record(settledRow("old", 0.5)).ok());
  ASSERT_TRUE(ledger->flush().ok());
  ledger.reset();
  ledger = mustOpen(path);  // warms only the current day and month, not November 2026's
  ASSERT_NE(ledger, nullptr);
  EXPECT_FALSE(ledger->cachedSpent("acme", Window::kMonth, kNov23).has_value());
  EXPECT_FALSE(ledger->cachedSpent("nobody", Window::kDay, kNov23).has_value());
  // A reservation against a monthly limit loads the month; a settle then keeps it current.
  uint64_t id = reserveAndWait(*ledger, request("r1", 0.25, "acme", BudgetLimits{{}, 10.0}));
  auto month = ledger->cachedSpent("acme", Window::kMonth, kNov23);
  ASSERT_TRUE(month.has_value());
  EXPECT_DOUBLE_EQ(month->settled_usd, 0.5);
  EXPECT_DOUBLE_EQ(month->reserved_usd, 0.25);
  ASSERT_TRUE(ledger->settle(id, settledRow("r1", 0.125)).ok());
  month = ledger->cachedSpent("acme", Window::kMonth, kNov23);
  ASSERT_TRUE(month.has_value());
  EXPECT_DOUBLE_EQ(month->settled_usd, 0.625);
  EXPECT_EQ(month->reserved_usd, 0);
  EXPECT_FALSE(ledger->cachedSpent("acme", Window::kDay, kNov23).has_value());  // no daily limit
}

TEST(LedgerDurable, NewFilesAreReadableByTheOwnerOnly) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  ASSERT_NE(reserveAndWait(*ledger, request("r1", 0.1)), 0u);
  ASSERT_TRUE(ledger->flush().ok());  // the -wal file has content
  for (const std::string& f :
       {path, path + "-wal", path + "-shm", path + "-pending.0", path + "-pending.1"}) {
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
}

}  // namespace
