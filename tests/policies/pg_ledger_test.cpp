// What only the PostgreSQL ledger does: replicas that share one database (racing reservations
// against one budget, alerts once across them, a crashed replica's calls billed exactly once),
// the masked URL in errors, a database that goes down and comes back. A real PostgreSQL server
// (tests/support/postgres.h); the tests skip, saying what is missing, where there is none.
#include "policies/pg_ledger.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "policies/ledger.h"
#include "tests/policies/ledger_backends.h"
#include "tests/support/postgres.h"

namespace {

using policies::BudgetLimits;
using policies::LedgerRow;
using policies::PostgresLedgerOptions;
using policies::ReservationRequest;
using policies::Spend;
using policies::Window;
using policies_test::Backend;
using policies_test::LedgerHome;

constexpr int64_t kNov23 = 1795446245000;  // 2026-11-23T15:04:05Z

ReservationRequest request(const std::string& id, double max_cost, BudgetLimits limits = {}) {
  ReservationRequest r;
  r.request_id = id;
  r.team = "acme";
  r.key_id = "key-1";
  r.model = "gpt-4o";
  r.decision = "cloud";
  r.max_cost_usd = max_cost;
  r.limits = limits;
  r.now_ms = kNov23;
  return r;
}

LedgerRow settledRow(const std::string& id, double cost) {
  LedgerRow r;
  r.request_id = id;
  r.team = "acme";
  r.key_id = "key-1";
  r.model = "gpt-4o";
  r.route = "openai/gpt-4o";
  r.kind = "cloud";
  r.cost_usd = cost;
  r.status = 200;
  r.unix_ms = kNov23 + 100;
  return r;
}

std::unique_ptr<policies::Ledger> mustOpen(const std::string& url, PostgresLedgerOptions o) {
  auto l = policies::openPostgresLedger(url, o);
  EXPECT_TRUE(l.ok()) << l.status().message();
  return l.ok() ? std::move(*l) : nullptr;
}

PostgresLedgerOptions replica(const std::string& id) {
  PostgresLedgerOptions o;
  o.replica_id = id;
  return o;
}

uint64_t reserveDurably(policies::Ledger& ledger, const ReservationRequest& r) {
  bool durable = false;
  auto id = ledger.reserveDurable(r, [&](api::Status s) { durable = s.ok(); });
  EXPECT_TRUE(id.ok()) << id.status().message();
  EXPECT_TRUE(durable);  // on_durable runs inline, once the transaction committed
  return id.ok() ? *id : 0;
}

class PgLedger : public testing::Test {
 protected:
  void SetUp() override {
    home_ = std::make_unique<LedgerHome>(Backend::kPostgres);
    if (!home_->skipReason().empty()) GTEST_SKIP() << home_->skipReason();
    ASSERT_EQ(home_->error(), "");
  }
  LedgerHome& home() { return *home_; }
  const std::string& url() { return home_->url(); }

 private:
  std::unique_ptr<LedgerHome> home_;
};

TEST_F(PgLedger, TwoReplicasRacingForOneBudgetNeverOvershoot) {
  auto a = mustOpen(url(), replica("a"));
  auto b = mustOpen(url(), replica("b"));
  ASSERT_TRUE(a && b);
  const BudgetLimits limits{0.5, 2.0};
  constexpr int kThreads = 8, kCycles = 60;
  std::atomic<int> settled{0}, refused{0}, errors{0};
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  std::thread observer([&] {
    while (!done) {
      // The money spent never passes the limit. (Settled plus reserved may, for a moment:
      // a reservation that the other replica settled counts here until its writer wrote the
      // settle, and its settled cost counts already wherever it reserves again.)
      Spend s = b->spent("acme", Window::kDay, kNov23);
      if (s.settled_usd > 0.5 + 1e-9) ++violations;
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      policies::Ledger& ledger = t % 2 == 0 ? *a : *b;  // half the callers on each replica
      std::mt19937 rng(77 + t);
      std::uniform_real_distribution<double> max_cost(0.005, 0.03), frac(0.5, 1.0);
      for (int i = 0; i < kCycles; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        double max = max_cost(rng);
        bool durable = false;
        auto r = ledger.reserveDurable(request(id, max, limits),
                                       [&](api::Status s) { durable = s.ok(); });
        if (!r.ok()) {
          (r.status().code() == api::ErrorCode::kQuotaExceeded ? refused : errors)++;
          continue;
        }
        if (!durable || !ledger.settle(*r, settledRow(id, max * frac(rng))).ok()) ++errors;
        ++settled;
      }
    });
  }
  for (auto& w : workers) w.join();
  done = true;
  observer.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(settled.load(), 10);
  EXPECT_GT(refused.load(), 100);  // the budget runs out early
  EXPECT_EQ(violations.load(), 0);
  // The totals both replicas read agree with the rows, and stay within the limit.
  Spend sa = a->spent("acme", Window::kDay, kNov23), sb = b->spent("acme", Window::kDay, kNov23);
  EXPECT_EQ(sa.settled_usd, sb.settled_usd);
  EXPECT_EQ(sa.reserved_usd, 0);
  EXPECT_LE(sa.settled_usd, 0.5 + 1e-9);
  EXPECT_GT(sa.settled_usd, 0.4);  // and the budget was used, not refused wholesale
  EXPECT_NEAR(home().real("SELECT SUM(cost_usd) FROM requests WHERE state = 'settled'"),
              sa.settled_usd, 1e-9);
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests"), settled.load());
}

TEST_F(PgLedger, CachedSpentFollowsWhatOtherReplicasSpendWithoutARoundTrip) {
  PostgresLedgerOptions o = replica("a");
  o.heartbeat_interval = std::chrono::milliseconds(100);
  auto a = mustOpen(url(), o);
  auto b = mustOpen(url(), replica("b"));
  ASSERT_TRUE(a && b);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_FALSE(a->cachedSpent("acme", Window::kDay, now).has_value());  // never read
  EXPECT_EQ(a->spent("acme", Window::kDay, now).settled_usd, 0);
  ASSERT_TRUE(a->cachedSpent("acme", Window::kDay, now).has_value());
  // A settle here counts at once; a row of the other replica once a heartbeat read it again.
  auto r = a->reserve("acme", 0.5, {}, now);
  ASSERT_TRUE(r.ok()) << r.status().message();
  LedgerRow mine = settledRow("mine", 0.25);
  mine.unix_ms = now;
  ASSERT_TRUE(a->settle(*r, mine).ok());
  std::optional<Spend> s = a->cachedSpent("acme", Window::kDay, now);
  ASSERT_TRUE(s.has_value());
  EXPECT_NEAR(s->settled_usd, 0.25, 1e-9);
  EXPECT_EQ(s->reserved_usd, 0);
  LedgerRow theirs = settledRow("theirs", 0.5);
  theirs.unix_ms = now;
  ASSERT_TRUE(b->record(theirs).ok());
  ASSERT_TRUE(b->flush().ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    s = a->cachedSpent("acme", Window::kDay, now);
    if (s && std::abs(s->settled_usd - 0.75) < 1e-9) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(s.has_value());
  EXPECT_NEAR(s->settled_usd, 0.75, 1e-9);
}

TEST_F(PgLedger, AlertsFireOnceAcrossReplicas) {
  auto a = mustOpen(url(), replica("a"));
  auto b = mustOpen(url(), replica("b"));
  ASSERT_TRUE(a && b);
  std::atomic<int> firsts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      policies::Ledger& l = t % 2 == 0 ? *a : *b;
      auto first = l.markAlerted("acme", "2026-11", 0.8, kNov23 + t);
      EXPECT_TRUE(first.ok()) << first.status().message();
      if (first.ok() && *first) ++firsts;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(firsts.load(), 1);
  EXPECT_TRUE(*b->markAlerted("acme", "2026-11", 0.9, kNov23));
  EXPECT_FALSE(*a->markAlerted("acme", "2026-11", 0.9, kNov23));
}

// The child: a replica that reserves durably (five calls in flight), settles one, says so on
// `fd`, and waits to be killed.
[[noreturn]] void doomedReplica(const std::string& url, const std::string& id, int fd) {
  PostgresLedgerOptions o = replica(id);
  o.heartbeat_interval = std::chrono::milliseconds(100);
  auto l = policies::openPostgresLedger(url, o);
  if (!l.ok()) _exit(2);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = (*l)->reserveDurable(request("doomed-" + std::to_string(i), 0.1), {});
    if (!r.ok()) _exit(3);
    ids.push_back(*r);
  }
  // Settles are written by the ledger's writer thread: flush() waits for this one.
  if (!(*l)->settle(ids[0], settledRow("doomed-0", 0.05)).ok() || !(*l)->flush().ok()) _exit(4);
  if (::write(fd, "k", 1) != 1) _exit(5);
  while (true) ::pause();
}

// Forks the doomed replica, waits until its calls are in flight, and kills it with SIGKILL.
void runAndKill(const std::string& url, const std::string& id) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    doomedReplica(url, id, fds[1]);
  }
  ::close(fds[1]);
  char c = 0;
  ssize_t n = ::read(fds[0], &c, 1);
  ::close(fds[0]);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(n, 1) << "the child replica failed (exit " << WEXITSTATUS(status) << ")";
}

TEST_F(PgLedger, ACrashedReplicasCallsAreBilledExactlyOnceBySurvivors) {
  runAndKill(url(), "doomed");
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests WHERE state = 'pending'"), 4);
  // Two survivors notice the silence at about the same time; each sweeps every 50 ms.
  PostgresLedgerOptions o;
  o.heartbeat_interval = std::chrono::milliseconds(50);
  o.stale_after = std::chrono::milliseconds(600);
  o.replica_id = "s1";
  auto s1 = mustOpen(url(), o);
  o.replica_id = "s2";
  auto s2 = mustOpen(url(), o);
  ASSERT_TRUE(s1 && s2);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (home().int64("SELECT COUNT(*) FROM requests WHERE state = 'pending'") > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // more sweeps: nothing twice
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests WHERE state = 'crashed'"), 4);
  policies::LedgerStats a = s1->stats(), b = s2->stats();
  EXPECT_EQ(a.crashed_reservations + b.crashed_reservations, 4u);
  EXPECT_NEAR(a.crashed_usd + b.crashed_usd, 0.4, 1e-9);
  // The reserved amounts became spend, once: 0.05 settled + 4 x 0.1 crashed.
  Spend s = s1->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.45, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);
  EXPECT_NEAR(s2->spent("acme", Window::kMonth, kNov23).settled_usd, 0.45, 1e-9);
  auto groups = s2->breakdown("acme", Window::kDay, kNov23);
  ASSERT_TRUE(groups.ok()) << groups.status().message();
  ASSERT_FALSE(groups->empty());
  EXPECT_EQ((*groups)[0].pending, 0);
}

TEST_F(PgLedger, ARestartUnderTheSameReplicaIdBillsItsCallsAtOnce) {
  runAndKill(url(), "gw-1");
  PostgresLedgerOptions o = replica("gw-1");
  o.stale_after = std::chrono::hours(1);  // only the own-id rule can bill them
  auto l = mustOpen(url(), o);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->stats().crashed_reservations, 4u);
  EXPECT_NEAR(l->stats().crashed_usd, 0.4, 1e-9);
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests WHERE state = 'pending'"), 0);
  Spend s = l->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.45, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);
  // Another replica id with a fresh heartbeat is left alone.
  auto other = mustOpen(url(), replica("gw-2"));
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->stats().crashed_reservations, 0u);
}

TEST_F(PgLedger, InMemoryReservationsOfAClosedReplicaAreGivenBack) {
  {
    auto l = mustOpen(url(), replica("a"));
    ASSERT_NE(l, nullptr);
    ASSERT_TRUE(l->reserve("acme", 0.3, {}, kNov23).ok());
    uint64_t durable = reserveDurably(*l, request("left-open", 0.2));
    ASSERT_NE(durable, 0u);
    EXPECT_NEAR(l->spent("acme", Window::kDay, kNov23).reserved_usd, 0.5, 1e-9);
  }
  // Closed: the held reservation is gone; the durable one is a call in flight nobody will
  // settle, billed by the next replica that looks (its owner's heartbeat row is gone).
  auto b = mustOpen(url(), replica("b"));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->stats().crashed_reservations, 1u);
  Spend s = b->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.2, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);
}

// Waits up to 10 s for `ledger` to count `n` live replicas.
bool countsReplicas(policies::Ledger& ledger, int n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ledger.liveReplicas() != n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ledger.liveReplicas() == n;
}

TEST_F(PgLedger, CountsLiveReplicasByTheirHeartbeats) {
  runAndKill(url(), "doomed");  // its heartbeat row stays until it is stale
  PostgresLedgerOptions o = replica("a");
  o.heartbeat_interval = std::chrono::milliseconds(50);
  o.stale_after = std::chrono::milliseconds(3000);
  auto a = mustOpen(url(), o);
  ASSERT_NE(a, nullptr);
  // Counted when it opens (before it serves), the killed one still among them.
  EXPECT_EQ(a->liveReplicas(), 2);
  EXPECT_TRUE(countsReplicas(*a, 1)) << a->liveReplicas();  // its heartbeat went stale
  o.replica_id = "b";
  auto b = mustOpen(url(), o);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->liveReplicas(), 2);
  EXPECT_TRUE(countsReplicas(*a, 2)) << a->liveReplicas();  // at a's next heartbeat
  b.reset();  // a replica that closes removes its row: counted out at once
  EXPECT_TRUE(countsReplicas(*a, 1)) << a->liveReplicas();
}

TEST(PgLedgerUrl, ErrorsNameTheUrlWithThePasswordMasked) {
  EXPECT_EQ(policies::maskPostgresUrl("postgresql://app:s3cret@db:5432/ledger"),
            "postgresql://app:***@db:5432/ledger");
  EXPECT_EQ(policies::maskPostgresUrl("postgresql://app@db/ledger?sslmode=require"),
            "postgresql://app@db/ledger?sslmode=require");
  EXPECT_EQ(policies::maskPostgresUrl("host=db user=app password=s3cret dbname=ledger"),
            "host=db user=app password=*** dbname=ledger");
  // Nothing listens on a port just freed: the connection is refused.
  int port = 0;
  {
    std::string why;
    if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
    auto server = sytest::PostgresServer::start(&why);
    ASSERT_NE(server, nullptr) << why;
    port = server->port();
  }
  std::string url = "postgresql://app:s3cret-pw@127.0.0.1:" + std::to_string(port) + "/ledger";
  PostgresLedgerOptions o;
  o.connect_timeout = std::chrono::seconds(2);
  auto l = policies::openPostgresLedger(url, o);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kIo);
  const std::string& msg = l.status().message();
  EXPECT_NE(msg.find("ledger 'postgresql://app:***@127.0.0.1:" + std::to_string(port) + "/ledger'"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("s3cret"), std::string::npos) << msg;
  EXPECT_NE(msg.find("refused"), std::string::npos) << msg;
}

TEST(PgLedgerOutage, ADownDatabaseRefusesCloudCallsKeepsLocalRowsAndRecovers) {
  std::string why;
  if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
  auto server = sytest::PostgresServer::start(&why);  // its own: this test stops it
  ASSERT_NE(server, nullptr) << why;
  std::string url = server->createDatabase("outage", &why);
  ASSERT_FALSE(url.empty()) << why;
  PostgresLedgerOptions o = replica("a");
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.connect_timeout = std::chrono::seconds(2);
  auto l = mustOpen(url, o);
  ASSERT_NE(l, nullptr);
  uint64_t in_flight = reserveDurably(*l, request("before", 0.2));
  ASSERT_NE(in_flight, 0u);

  ASSERT_TRUE(server->stop(&why)) << why;
  auto refused = l->reserveDurable(request("during", 0.1), [](api::Status) {
    ADD_FAILURE() << "on_durable must not run for a refused reservation";
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kUnavailable);
  EXPECT_EQ(refused.status().message().rfind("ledger unavailable: ledger 'postgresql://", 0), 0u)
      << refused.status().message();
  EXPECT_FALSE(l->stats().available);
  // Refused at once from now on, without waiting on the network.
  auto again = l->reserveDurable(request("during-2", 0.1), {});
  EXPECT_EQ(again.status().code(), api::ErrorCode::kUnavailable);
  // Local answers and the call in flight are kept and written once the database is back.
  LedgerRow local = settledRow("local-1", 0);
  local.kind = "local";
  local.model = "gemma";
  EXPECT_TRUE(l->record(local).ok());
  EXPECT_TRUE(l->settle(in_flight, settledRow("before", 0.15)).ok());
  EXPECT_EQ(l->flush().code(), api::ErrorCode::kIo);
  // spent() answers the last values read, with the writes kept since counted.
  Spend down = l->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(down.settled_usd, 0.15, 1e-9);
  EXPECT_EQ(down.reserved_usd, 0);

  ASSERT_TRUE(server->restart(&why)) << why;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!l->stats().available && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(l->stats().available);
  ASSERT_TRUE(l->flush().ok());
  Spend s = l->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, 0.15, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);
  EXPECT_NE(reserveDurably(*l, request("after", 0.1)), 0u);
  auto groups = l->breakdown("acme", Window::kDay, kNov23);
  ASSERT_TRUE(groups.ok()) << groups.status().message();
  int64_t final_rows = 0;
  for (const auto& g : *groups) final_rows += g.requests;
  EXPECT_EQ(final_rows, 2);  // the local row and the settled call
}

TEST_F(PgLedger, ASchemaOfAnotherVersionIsAConfigError) {
  { ASSERT_NE(mustOpen(url(), replica("a")), nullptr); }
  home().exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
  auto l = policies::openPostgresLedger(url(), replica("a"));
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(l.status().message().find("schema version '99'"), std::string::npos)
      << l.status().message();
}

}  // namespace
