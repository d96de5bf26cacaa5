#include "policies/ledger.h"
#include "tests/policies/ledger_backends.h"
#include "tests/policies/sqlite_test_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using policies::BudgetLimits;
using policies::LedgerRow;
using policies::Spend;
using policies::Window;

// 2026-11-23T15:04:05Z and neighbours.
constexpr int64_t kNov23 = 1795446245000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kNov22 = kNov23 - kDay;
constexpr int64_t kOct31 = 1793491199000;  // 2026-10-31T23:59:59Z
constexpr int64_t kDec1 = 1796083200000;   // 2026-12-01T00:00:00Z

using policies_test::RawDb;
using policies_test::TempDir;

LedgerRow row(const std::string& team, double cost, int64_t unix_ms, std::string model = "gpt-4o",
              std::string route = "smart", std::string kind = "cloud") {
  LedgerRow r;
  r.request_id = "req-" + std::to_string(unix_ms);
  r.team = team;
  r.key_id = "key-1";
  r.model = std::move(model);
  r.route = std::move(route);
  r.kind = std::move(kind);
  r.prompt_tokens = 100;
  r.cached_prompt_tokens = 40;
  r.completion_tokens = 10;
  r.cost_usd = cost;
  r.latency_ms = 12.5;
  r.unix_ms = unix_ms;
  return r;
}

std::unique_ptr<policies::Ledger> mustOpen(const std::string& path) {
  auto l = policies::openSqliteLedger(path);
  EXPECT_TRUE(l.ok()) << l.status().message();
  return l.ok() ? std::move(*l) : nullptr;
}

// The tests of the interface run against both implementations (ledger_backends.h).
using LedgerApi = policies_test::LedgerBackendTest;
INSTANTIATE_TEST_SUITE_P(Backends, LedgerApi,
                         testing::Values(policies_test::Backend::kSqlite,
                                         policies_test::Backend::kPostgres),
                         policies_test::backendName);

// ---- Periods ----

TEST(Period, KeysAndStartsAtUtcBoundaries) {
  using policies::periodKey;
  using policies::periodStartMs;
  EXPECT_EQ(periodKey(Window::kDay, kNov23), "2026-11-23");
  EXPECT_EQ(periodKey(Window::kMonth, kNov23), "2026-11");
  EXPECT_EQ(periodStartMs(Window::kDay, kNov23), 1795392000000);
  EXPECT_EQ(periodStartMs(Window::kMonth, kNov23), 1793491200000);

  // End of a month: the last millisecond of October, then November.
  int64_t oct_last = kOct31 + 999;
  EXPECT_EQ(periodKey(Window::kDay, oct_last), "2026-10-31");
  EXPECT_EQ(periodKey(Window::kMonth, oct_last), "2026-10");
  EXPECT_EQ(periodKey(Window::kDay, oct_last + 1), "2026-11-01");
  EXPECT_EQ(periodKey(Window::kMonth, oct_last + 1), "2026-11");
  EXPECT_EQ(periodStartMs(Window::kMonth, oct_last + 1), oct_last + 1);
  EXPECT_EQ(periodStartMs(Window::kDay, oct_last), oct_last + 1 - kDay);

  // Leap day 2024: February has 29 days.
  int64_t leap_last = 1709251199000 + 999;  // 2024-02-29T23:59:59.999Z
  EXPECT_EQ(periodKey(Window::kDay, leap_last), "2024-02-29");
  EXPECT_EQ(periodKey(Window::kMonth, leap_last), "2024-02");
  EXPECT_EQ(periodStartMs(Window::kMonth, leap_last), 1706745600000);          // 2024-02-01
  EXPECT_EQ(policies::periodEndMs(Window::kMonth, leap_last), 1709251200000);  // 2024-03-01
  EXPECT_EQ(periodKey(Window::kDay, leap_last + 1), "2024-03-01");
  // 2000 is a leap year, 2100 is not.
  EXPECT_EQ(periodKey(Window::kDay, 951804000000), "2000-02-29");
  EXPECT_EQ(periodKey(Window::kDay, 4107499200000 + kDay), "2100-03-01");

  // Year end.
  int64_t year_last = 1798761599000 + 999;  // 2026-12-31T23:59:59.999Z
  EXPECT_EQ(periodKey(Window::kDay, year_last), "2026-12-31");
  EXPECT_EQ(periodKey(Window::kMonth, year_last), "2026-12");
  EXPECT_EQ(periodKey(Window::kDay, year_last + 1), "2027-01-01");
  EXPECT_EQ(periodKey(Window::kMonth, year_last + 1), "2027-01");
  EXPECT_EQ(periodStartMs(Window::kMonth, year_last), kDec1);
  EXPECT_EQ(policies::periodEndMs(Window::kMonth, year_last), year_last + 1);
  EXPECT_EQ(policies::periodEndMs(Window::kDay, year_last), year_last + 1);

  // Before the epoch, periods still start at UTC midnight (floor, not truncation).
  EXPECT_EQ(periodKey(Window::kDay, 0), "1970-01-01");
  EXPECT_EQ(periodKey(Window::kDay, -1), "1969-12-31");
  EXPECT_EQ(periodStartMs(Window::kDay, -1), -kDay);
  EXPECT_EQ(periodStartMs(Window::kMonth, -1), -31 * kDay);
}

TEST(Period, EveryDayOfFourYearsStartsWhereThePreviousEnds) {
  int64_t t = 1704067200000;  // 2024-01-01
  int months = 0;
  for (int day = 0; day < 4 * 365 + 1; ++day, t += kDay) {
    ASSERT_EQ(policies::periodStartMs(Window::kDay, t + kDay - 1), t);
    ASSERT_EQ(policies::periodEndMs(Window::kDay, t), t + kDay);
    if (policies::periodStartMs(Window::kMonth, t) == t) {
      ++months;
      ASSERT_EQ(policies::periodEndMs(Window::kMonth, t - 1), t);
      ASSERT_EQ(policies::periodKey(Window::kDay, t).substr(8), "01");
    }
  }
  EXPECT_EQ(months, 48);
  EXPECT_EQ(policies::periodKey(Window::kDay, t), "2028-01-01");
}

// ---- Budgets ----

TEST_P(LedgerApi, ReserveSettleReleaseArithmetic) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  auto r1 = ledger->reserve("acme", 0.30, {}, kNov23);
  auto r2 = ledger->reserve("acme", 0.20, {}, kNov23);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_NE(*r1, 0u);
  EXPECT_NE(*r1, *r2);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0);
  EXPECT_DOUBLE_EQ(s.reserved_usd, 0.5);

  ASSERT_TRUE(ledger->settle(*r1, row("acme", 0.12, kNov23 + 1000)).ok());
  s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0.12);
  EXPECT_DOUBLE_EQ(s.reserved_usd, 0.20);
  s = ledger->spent("acme", Window::kMonth, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0.12);
  EXPECT_DOUBLE_EQ(s.reserved_usd, 0.20);

  ledger->release(*r2);
  ledger->release(*r2);  // unknown now: ignored
  s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0.12);
  EXPECT_EQ(s.reserved_usd, 0);  // exactly: no rounding residue once none is open

  ASSERT_TRUE(ledger->record(row("acme", 0.03, kNov23 + 2000)).ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0.15);
  s = ledger->spent("other", Window::kDay, kNov23);
  EXPECT_EQ(s.settled_usd, 0);
  EXPECT_EQ(s.reserved_usd, 0);
}

TEST_P(LedgerApi, DailyLimitRefusesWithQuotaExceeded) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  BudgetLimits daily{1.0, std::nullopt};
  auto r1 = ledger->reserve("acme", 0.6, daily, kNov23);
  ASSERT_TRUE(r1.ok());

  auto refused = ledger->reserve("acme", 0.5, daily, kNov23);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kQuotaExceeded);
  EXPECT_EQ(refused.status().openaiCode(), "insufficient_quota");
  EXPECT_EQ(refused.status().httpStatusCode(), 429);
  EXPECT_EQ(refused.status().message(),
            "The budget of team 'acme' is exhausted: its daily limit of $1.00 for 2026-11-23 has "
            "$0.00 spent and $0.60 reserved; this request may cost up to $0.50.");
  // A refusal reserves nothing.
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).reserved_usd, 0.6);

  auto r2 = ledger->reserve("acme", 0.4, daily, kNov23);  // exactly up to the limit
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_FALSE(ledger->reserve("acme", 0.01, daily, kNov23).ok());
  EXPECT_TRUE(ledger->reserve("acme", 0.01, {}, kNov23).ok());    // no limit set
  EXPECT_TRUE(ledger->reserve("beta", 0.9, daily, kNov23).ok());  // budgets are per team

  // Settling for less than reserved gives the difference back.
  ASSERT_TRUE(ledger->settle(*r1, row("acme", 0.1, kNov23)).ok());
  auto r3 = ledger->reserve("acme", 0.49, daily, kNov23);
  ASSERT_TRUE(r3.ok()) << r3.status().message();
  EXPECT_FALSE(ledger->reserve("acme", 0.01, daily, kNov23).ok());
  // The next day the settled spend no longer counts; the open reservations still do.
  EXPECT_TRUE(ledger->reserve("acme", 0.1, daily, kNov23 + kDay).ok());
  auto next_day = ledger->reserve("acme", 0.1, daily, kNov23 + kDay);
  ASSERT_FALSE(next_day.ok());
  EXPECT_NE(next_day.status().message().find("2026-11-24 has $0.00 spent and $1.00 reserved"),
            std::string::npos)
      << next_day.status().message();
}

TEST_P(LedgerApi, MonthlyLimitCountsEarlierDaysOfTheMonthOnly) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  ASSERT_TRUE(ledger->record(row("acme", 0.9, kNov22)).ok());
  ASSERT_TRUE(ledger->record(row("acme", 5.0, kOct31)).ok());  // last month: never counts
  BudgetLimits both{1.0, 1.0};
  auto refused = ledger->reserve("acme", 0.2, both, kNov23);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kQuotaExceeded);
  EXPECT_EQ(refused.status().message(),
            "The budget of team 'acme' is exhausted: its monthly limit of $1.00 for 2026-11 has "
            "$0.90 spent and $0.00 reserved; this request may cost up to $0.20.");
  EXPECT_TRUE(ledger->reserve("acme", 0.1, both, kNov23).ok());
  EXPECT_TRUE(ledger->reserve("acme", 0.5, BudgetLimits{1.0, std::nullopt}, kNov23).ok());
  // In December November's spend is gone; the open reservations (0.6) remain.
  EXPECT_TRUE(ledger->reserve("acme", 0.4, both, kDec1).ok());
  EXPECT_FALSE(ledger->reserve("acme", 0.001, both, kDec1).ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, 0.9);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kOct31).settled_usd, 5.0);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0);
}

TEST_P(LedgerApi, ARowWrittenDuringAReservationCountsOnce) {
  // A recorded row is queued and written in the background (PostgreSQL); a reservation right
  // after it races that write. Each round leaves room for exactly the reservation, so a row
  // counted both as written and as queued would refuse it.
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  const BudgetLimits limits{std::nullopt, 1.0};
  for (int i = 0; i < 150; ++i) {
    const std::string team = "race-" + std::to_string(i);
    ASSERT_TRUE(ledger->record(row(team, 0.5, kNov22 + i)).ok());
    auto r = ledger->reserve(team, 0.4, limits, kNov23);
    ASSERT_TRUE(r.ok()) << "round " << i << ": " << r.status().message();
  }
}

TEST_P(LedgerApi, BadCallsReturnErrorsAndChangeNothing) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(ledger->reserve("acme", -1, {}, kNov23).status().code(), api::ErrorCode::kInternal);
  EXPECT_EQ(ledger->reserve("acme", std::nan(""), {}, kNov23).status().code(),
            api::ErrorCode::kInternal);
  // A NaN limit refuses rather than lets everything through.
  EXPECT_EQ(ledger->reserve("acme", 0.1, BudgetLimits{std::nan(""), std::nullopt}, kNov23)
                .status()
                .code(),
            api::ErrorCode::kQuotaExceeded);

  auto r = ledger->reserve("acme", 0.5, {}, kNov23);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ledger->settle(*r + 100, row("acme", 0.1, kNov23)).code(), api::ErrorCode::kInternal);
  EXPECT_EQ(ledger->settle(*r, row("beta", 0.1, kNov23)).code(), api::ErrorCode::kInternal);
  EXPECT_EQ(ledger->settle(*r, row("acme", -0.1, kNov23)).code(), api::ErrorCode::kInternal);
  EXPECT_EQ(ledger->settle(*r, row("acme", INFINITY, kNov23)).code(), api::ErrorCode::kInternal);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_EQ(s.settled_usd, 0);
  EXPECT_DOUBLE_EQ(s.reserved_usd, 0.5);

  ASSERT_TRUE(ledger->settle(*r, row("acme", 0.7, kNov23)).ok());  // more than reserved: counted
  auto twice = ledger->settle(*r, row("acme", 0.7, kNov23));
  EXPECT_EQ(twice.code(), api::ErrorCode::kInternal);
  EXPECT_NE(twice.message().find("unknown reservation"), std::string::npos);
  s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(s.settled_usd, 0.7);
  EXPECT_EQ(s.reserved_usd, 0);
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests"), 1);
}

TEST_P(LedgerApi, PeriodRolloverRecomputesSettledSums) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  const int64_t nov23 = policies::periodStartMs(Window::kDay, kNov23);
  ASSERT_TRUE(ledger->record(row("acme", 1.0, nov23 + 10 * kHour)).ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, nov23 + 11 * kHour).settled_usd, 1.0);
  // Half committed, half still queued: the sums must not depend on which.
  ASSERT_TRUE(ledger->flush().ok());
  ASSERT_TRUE(ledger->record(row("acme", 2.0, nov23 + kDay + kHour)).ok());  // Nov 24
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, nov23 + kDay + 2 * kHour).settled_usd, 2.0);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, nov23 + kHour).settled_usd, 1.0);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, nov23 + kDay).settled_usd, 3.0);
  // A new month starts at zero.
  EXPECT_EQ(ledger->spent("acme", Window::kMonth, kDec1).settled_usd, 0);
  EXPECT_EQ(ledger->spent("acme", Window::kDay, kDec1).settled_usd, 0);
  ASSERT_TRUE(ledger->record(row("acme", 0.5, kDec1 + kHour)).ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kDec1 + 2 * kHour).settled_usd, 0.5);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kDec1 + 2 * kHour).settled_usd, 0.5);
  // A row queued for a period that is not cached (Nov 24 while Dec 1 is) is found later.
  ASSERT_TRUE(ledger->record(row("acme", 4.0, nov23 + kDay + 3 * kHour)).ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, nov23 + kDay).settled_usd, 6.0);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, 7.0);
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kDec1).settled_usd, 0.5);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, 7.0);
}

TEST_P(LedgerApi, ConcurrentReservationsNeverExceedTheBudget) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  ASSERT_TRUE(ledger->record(row("acme", 0.05, kNov22)).ok());  // counts in the month only
  const BudgetLimits limits{0.5, 0.35};
  constexpr int kThreads = 16, kCycles = 200;
  std::atomic<bool> done{false};
  std::atomic<int64_t> observations{0}, violations{0};
  std::thread observer([&] {
    while (!done.load()) {
      Spend d = ledger->spent("acme", Window::kDay, kNov23);
      Spend m = ledger->spent("acme", Window::kMonth, kNov23);
      if (d.settled_usd + d.reserved_usd > 0.5 + 1e-9) ++violations;
      if (m.settled_usd + m.reserved_usd > 0.35 + 1e-9) ++violations;
      if (d.reserved_usd < -1e-12) ++violations;
      ++observations;
    }
  });
  struct Tally {
    int settled = 0, released = 0, refused = 0, errors = 0;
    double cost = 0;
  };
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      std::uniform_real_distribution<double> max_cost(0.0005, 0.01), frac(0, 1);
      Tally& tally = tallies[t];
      for (int i = 0; i < kCycles; ++i) {
        double max = max_cost(rng);
        auto r = ledger->reserve("acme", max, limits, kNov23);
        if (!r.ok()) {
          tally.refused += r.status().code() == api::ErrorCode::kQuotaExceeded ? 1 : 0;
          tally.errors += r.status().code() == api::ErrorCode::kQuotaExceeded ? 0 : 1;
          continue;
        }
        if (frac(rng) < 0.2) {
          ledger->release(*r);
          ++tally.released;
          continue;
        }
        LedgerRow settled = row("acme", max * frac(rng), kNov23 + i);
        settled.request_id = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (ledger->settle(*r, settled).ok()) {
          ++tally.settled;
          tally.cost += settled.cost_usd;
        } else {
          ++tally.errors;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  done = true;
  observer.join();

  Tally total;
  for (const Tally& t : tallies) {
    total.settled += t.settled;
    total.released += t.released;
    total.refused += t.refused;
    total.errors += t.errors;
    total.cost += t.cost;
  }
  EXPECT_EQ(total.errors, 0);
  EXPECT_EQ(total.settled + total.released + total.refused, kThreads * kCycles);
  EXPECT_GT(total.settled, 20);
  EXPECT_GT(total.refused, 1000);  // the budget is tiny: most requests are refused
  EXPECT_GT(observations.load(), 0);
  EXPECT_EQ(violations.load(), 0);

  Spend d = ledger->spent("acme", Window::kDay, kNov23);
  Spend m = ledger->spent("acme", Window::kMonth, kNov23);
  EXPECT_EQ(d.reserved_usd, 0);  // every reservation was settled or released
  EXPECT_NEAR(d.settled_usd, total.cost, 1e-9);
  EXPECT_NEAR(m.settled_usd, total.cost + 0.05, 1e-9);
  EXPECT_LE(m.settled_usd, 0.35 + 1e-9);

  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM requests"), total.settled + 1);
  EXPECT_NEAR(home().real("SELECT SUM(cost_usd) FROM requests WHERE unix_ms >= " +
                      std::to_string(policies::periodStartMs(Window::kDay, kNov23))),
              total.cost, 1e-9);
}

TEST_P(LedgerApi, RecomputedSumsStayExactWhileTheWriterCommits) {
  // Every spent() below switches period, so it recomputes the sum from committed rows plus
  // queued ones while the writer commits in the background: a row must count exactly once
  // whether it is committed, queued, or in between. Costs are multiples of 2^-10, so sums are
  // exact and compared with ==.
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  int64_t day_a = policies::periodStartMs(Window::kDay, kNov23);
  int64_t day_b = day_a + kDay;
  double want_a = 0, want_b = 0;
  int mismatches = 0;
  for (int i = 0; i < 3000; ++i) {
    bool on_a = i % 2 == 0;
    double cost = (i % 13 + 1) / 1024.0;
    ASSERT_TRUE(ledger->record(row("acme", cost, (on_a ? day_a : day_b) + i)).ok());
    (on_a ? want_a : want_b) += cost;
    double got = ledger->spent("acme", Window::kDay, on_a ? day_b : day_a).settled_usd;
    if (got != (on_a ? want_b : want_a) && ++mismatches <= 3) {
      ADD_FAILURE() << "row " << i << ": got " << got << ", want " << (on_a ? want_b : want_a);
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, want_a + want_b);
}

// ---- Durability ----

TEST_P(LedgerApi, RowsSurviveReopenWithTheirPeriodSums) {
  {
    auto ledger = open();
    ASSERT_NE(ledger, nullptr);
    LedgerRow full;
    full.request_id = "chatcmpl-1";
    full.team = "acme";
    full.key_id = "key-7";
    full.model = "claude-sonnet";
    full.route = "escalate";
    full.kind = "cloud";
    full.prompt_tokens = 1200;
    full.cached_prompt_tokens = 800;
    full.completion_tokens = 345;
    full.cost_usd = 0.25;
    full.latency_ms = 812.25;
    full.status = 200;
    full.unix_ms = kNov23;
    auto r = ledger->reserve("acme", 1.0, {}, kNov23);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(ledger->settle(*r, full).ok());
    ASSERT_TRUE(ledger->record(row("acme", 0.5, kNov22)).ok());
    ASSERT_TRUE(ledger->record(row("acme", 7.0, kOct31)).ok());
    ASSERT_TRUE(ledger->record(row("beta", 0, kNov23, "gemma", "local", "local")).ok());
    // Left open: gone after the restart.
    ASSERT_TRUE(ledger->reserve("acme", 3.0, {}, kNov23).ok());
    // No flush: closing writes everything queued.
  }
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  Spend day = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_DOUBLE_EQ(day.settled_usd, 0.25);
  EXPECT_EQ(day.reserved_usd, 0);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kNov23).settled_usd, 0.75);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kMonth, kOct31).settled_usd, 7.0);
  EXPECT_EQ(ledger->spent("beta", Window::kMonth, kNov23).settled_usd, 0);
  EXPECT_EQ(ledger->teams(), (std::vector<std::string>{"acme", "beta"}));
  // The full budget is available again: the open reservation did not survive.
  EXPECT_TRUE(ledger->reserve("acme", 3.0, BudgetLimits{3.25, std::nullopt}, kNov23).ok());

  // New rows continue after the old ones.
  ASSERT_TRUE(ledger->record(row("gamma", 0.01, kNov23)).ok());
  ASSERT_TRUE(ledger->flush().ok());
  EXPECT_EQ(ledger->teams(), (std::vector<std::string>{"acme", "beta", "gamma"}));
  // (PostgreSQL keeps an in-memory reservation as a 'held' row, so that its money can be given
  // back if its replica dies; SQLite keeps none.)
  EXPECT_EQ(home().column("SELECT team FROM requests WHERE state <> 'held' ORDER BY id"),
            (std::vector<std::string>{"acme", "acme", "acme", "beta", "gamma"}));
  EXPECT_EQ(home().text("SELECT request_id || '|' || unix_ms || '|' || team || '|' || key_id || '|' "
                    "|| model || '|' || route || '|' || kind || '|' || prompt_tokens || '|' || "
                    "cached_prompt_tokens || '|' || completion_tokens || '|' || cost_usd || '|' "
                    "|| latency_ms || '|' || status FROM requests WHERE request_id = 'chatcmpl-1'"),
            "chatcmpl-1|1795446245000|acme|key-7|claude-sonnet|escalate|cloud|1200|800|345|0.25|"
            "812.25|200");
  if (GetParam() == policies_test::Backend::kSqlite) {
    EXPECT_EQ(home().text("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(home().text("SELECT value FROM meta WHERE key = 'schema_version'"), "3");
  }
}

TEST(Ledger, FailedWritesKeepTheRowsAndRetry) {
  TempDir dir;
  const std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  RawDb db(path);
  // A trigger makes every insert of team 'poison' fail, and with it its whole batch.
  db.exec(
      "CREATE TRIGGER poison BEFORE INSERT ON requests WHEN NEW.team = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  ASSERT_TRUE(ledger->record(row("poison", 0.5, kNov23)).ok());
  ASSERT_TRUE(ledger->record(row("acme", 0.25, kNov23)).ok());
  api::Status failed = ledger->flush();
  EXPECT_EQ(failed.code(), api::ErrorCode::kIo);
  EXPECT_NE(failed.message().find("poisoned row"), std::string::npos) << failed.message();
  // The rows still count while they wait.
  EXPECT_DOUBLE_EQ(ledger->spent("poison", Window::kDay, kNov23).settled_usd, 0.5);
  EXPECT_DOUBLE_EQ(ledger->spent("acme", Window::kDay, kNov23).settled_usd, 0.25);

  db.exec("DROP TRIGGER poison");
  api::Status flushed = ledger->flush();
  for (int i = 0; i < 50 && !flushed.ok(); ++i) flushed = ledger->flush();  // a retry may fail
  ASSERT_TRUE(flushed.ok()) << flushed.message();
  EXPECT_EQ(db.column("SELECT id || ':' || team FROM requests ORDER BY id"),
            (std::vector<std::string>{"1:poison", "2:acme"}));

  // A file that keeps failing does not hang the shutdown.
  db.exec(
      "CREATE TRIGGER poison BEFORE INSERT ON requests WHEN NEW.team = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  ASSERT_TRUE(ledger->record(row("poison", 0.5, kNov23)).ok());
  auto start = std::chrono::steady_clock::now();
  ledger.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(db.int64("SELECT COUNT(*) FROM requests"), 2);
}

LedgerRow crashRow(const std::string& prefix, int i) {
  LedgerRow r = row("acme", (i % 97 + 1) * 1e-4, kNov23 + i);
  r.request_id = prefix + std::to_string(i);
  r.prompt_tokens = i;
  r.completion_tokens = 2 * i + 1;
  r.latency_ms = i * 0.5;
  r.status = i % 7 == 0 ? 429 : 200;
  return r;
}

enum class CrashMode { kSigkillMidLoad, kExitWithoutClose };

constexpr int kFlushedRows = 3000;
constexpr int kUnflushedRowsOnExit = 5000;

// The child: writes and flushes kFlushedRows, says so on `fd`, then keeps writing until it dies.
int crashChild(const std::string& path, int fd, CrashMode mode) {
  auto opened = policies::openSqliteLedger(path);
  if (!opened.ok()) return 2;
  policies::Ledger& ledger = **opened;
  for (int i = 0; i < kFlushedRows; ++i) {
    if (!ledger.record(crashRow("pre-", i)).ok()) return 3;
  }
  if (!ledger.flush().ok()) return 4;
  if (!ledger.reserve("acme", 100.0, {}, kNov23).ok()) return 5;  // open at the crash
  if (write(fd, "F", 1) != 1) return 6;
  int more = mode == CrashMode::kSigkillMidLoad ? 50'000'000 : kUnflushedRowsOnExit;
  for (int i = 0; i < more; ++i) {
    if (!ledger.record(crashRow("post-", i)).ok()) return 7;
  }
  return mode == CrashMode::kSigkillMidLoad ? 8 : 0;  // 8: never killed
}

void checkAfterCrash(const std::string& path, CrashMode mode) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    _exit(crashChild(path, fds[1], mode));  // no destructors: nothing is closed cleanly
  }
  close(fds[1]);
  char flushed = 0;
  bool got_flush = read(fds[0], &flushed, 1) == 1;
  close(fds[0]);
  if (mode == CrashMode::kSigkillMidLoad && got_flush) {
    // Kill it once it has committed rows past the flush, so that it dies mid-load.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      RawDb db(path);
      if (db.int64("SELECT COUNT(*) FROM requests") > kFlushedRows + 2000) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid, SIGKILL);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(got_flush) << "child exited early with status " << wstatus;
  if (mode == CrashMode::kSigkillMidLoad) {
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << wstatus;
  } else {
    ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  }

  double db_sum = 0;
  int64_t count = 0;
  {
    RawDb db(path);
    EXPECT_EQ(db.text("PRAGMA integrity_check"), "ok");
    count = db.int64("SELECT COUNT(*) FROM requests");
    EXPECT_GE(count, kFlushedRows);
    if (mode == CrashMode::kSigkillMidLoad) {
      EXPECT_GT(count, kFlushedRows + 2000);
    } else {
      EXPECT_LE(count, kFlushedRows + kUnflushedRowsOnExit);
    }
    // Ids 1..count, and every row whole and in order: the committed rows are a prefix of what
    // was queued.
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.get(),
                                 "SELECT id, request_id, unix_ms, team, key_id, model, route, "
                                 "kind, prompt_tokens, cached_prompt_tokens, completion_tokens, "
                                 "cost_usd, latency_ms, status FROM requests ORDER BY id",
                                 -1, &s, nullptr),
              SQLITE_OK);
    int64_t k = 0;
    int bad = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
      LedgerRow want = k < kFlushedRows ? crashRow("pre-", static_cast<int>(k))
                                        : crashRow("post-", static_cast<int>(k - kFlushedRows));
      auto text = [&](int c) {
        const unsigned char* t = sqlite3_column_text(s, c);
        return t ? std::string(reinterpret_cast<const char*>(t)) : std::string("NULL");
      };
      bool same = sqlite3_column_int64(s, 0) == k + 1 && text(1) == want.request_id &&
                  sqlite3_column_int64(s, 2) == want.unix_ms && text(3) == want.team &&
                  text(4) == want.key_id && text(5) == want.model && text(6) == want.route &&
                  text(7) == want.kind && sqlite3_column_int64(s, 8) == want.prompt_tokens &&
                  sqlite3_column_int64(s, 9) == want.cached_prompt_tokens &&
                  sqlite3_column_int64(s, 10) == want.completion_tokens &&
                  sqlite3_column_double(s, 11) == want.cost_usd &&
                  sqlite3_column_double(s, 12) == want.latency_ms &&
                  sqlite3_column_int(s, 13) == want.status;
      if (!same && ++bad <= 3) ADD_FAILURE() << "row " << k + 1 << " is not " << want.request_id;
      db_sum += sqlite3_column_double(s, 11);
      ++k;
    }
    sqlite3_finalize(s);
    EXPECT_EQ(k, count);
    EXPECT_EQ(bad, 0);
  }

  // Reopened: the sums are the committed rows, the reservation is gone, new rows follow.
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  Spend s = ledger->spent("acme", Window::kDay, kNov23);
  EXPECT_NEAR(s.settled_usd, db_sum, 1e-9);
  EXPECT_EQ(s.reserved_usd, 0);
  ASSERT_TRUE(ledger->record(crashRow("after-", 0)).ok());
  ASSERT_TRUE(ledger->flush().ok());
  RawDb db(path);
  EXPECT_EQ(db.int64("SELECT MAX(id) FROM requests"), count + 1);
}

TEST(Ledger, CommittedRowsSurviveSigkillMidLoad) {
  TempDir dir;
  checkAfterCrash(dir.file("ledger.db"), CrashMode::kSigkillMidLoad);
}

TEST(Ledger, FlushedRowsSurviveExitWithoutClose) {
  TempDir dir;
  checkAfterCrash(dir.file("ledger.db"), CrashMode::kExitWithoutClose);
}

// ---- Alerts, breakdowns, listings ----

TEST_P(LedgerApi, MarkAlertedOncePerTeamPeriodAndThresholdAcrossRestarts) {
  {
    auto ledger = open();
    ASSERT_NE(ledger, nullptr);
    auto first = ledger->markAlerted("acme", "2026-11", 0.8, kNov23);
    ASSERT_TRUE(first.ok()) << first.status().message();
    EXPECT_TRUE(*first);
    EXPECT_FALSE(*ledger->markAlerted("acme", "2026-11", 0.8, kNov23 + 1));
    EXPECT_TRUE(*ledger->markAlerted("acme", "2026-11", 0.9, kNov23));
    EXPECT_TRUE(*ledger->markAlerted("acme", "2026-12", 0.8, kDec1));
    EXPECT_TRUE(*ledger->markAlerted("beta", "2026-11", 0.8, kNov23));
    EXPECT_TRUE(*ledger->markAlerted("acme", "2026-11-23", 0.8, kNov23));
  }
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  EXPECT_FALSE(*ledger->markAlerted("acme", "2026-11", 0.8, kNov23 + 2));
  EXPECT_FALSE(*ledger->markAlerted("acme", "2026-11", 0.9, kNov23 + 2));
  EXPECT_TRUE(*ledger->markAlerted("acme", "2026-11", 0.5, kNov23 + 2));
  ASSERT_TRUE(ledger->flush().ok());  // alerts are written by the writer, like rows
  EXPECT_EQ(home().int64("SELECT COUNT(*) FROM alerts"), 6);
  EXPECT_EQ(home().int64("SELECT unix_ms FROM alerts WHERE team = 'acme' AND period = '2026-11' AND "
                     "threshold = 0.8"),
            kNov23);
}

TEST_P(LedgerApi, BreakdownGroupsCommittedRowsOfThePeriod) {
  auto ledger = open();
  ASSERT_NE(ledger, nullptr);
  auto add = [&](const std::string& team, double cost, int64_t t, const std::string& model,
                 const std::string& route, const std::string& kind, int64_t prompt,
                 int64_t completion) {
    LedgerRow r = row(team, cost, t, model, route, kind);
    r.prompt_tokens = prompt;
    r.completion_tokens = completion;
    ASSERT_TRUE(ledger->record(r).ok());
  };
  add("acme", 0.01, kNov23, "gpt-4o", "smart", "cloud", 100, 10);
  add("acme", 0.01, kNov23 + 1, "gpt-4o", "smart", "cloud", 200, 20);
  add("acme", 0, kNov23 + 2, "gemma-3-1b", "smart", "local", 50, 5);
  add("acme", 0, kNov23 + 3, "gemma-3-1b", "smart", "local", 50, 5);
  add("acme", 0, kNov23 + 4, "gemma-3-1b", "smart", "local", 50, 5);
  add("acme", 0.05, kNov23 + 5, "claude", "smart", "cloud", 1000, 100);
  add("acme", 0.04, kNov22, "gpt-4o", "smart", "cloud", 10, 1);  // same month, other day
  add("acme", 9.0, kOct31, "gpt-4o", "smart", "cloud", 10, 1);   // last month
  add("beta", 1.0, kNov23, "gpt-4o", "smart", "cloud", 10, 1);   // other team
  ASSERT_TRUE(ledger->flush().ok());

  auto day = ledger->breakdown("acme", Window::kDay, kNov23);
  ASSERT_TRUE(day.ok()) << day.status().message();
  ASSERT_EQ(day->size(), 3u);
  EXPECT_EQ((*day)[0].model, "claude");
  EXPECT_EQ((*day)[0].requests, 1);
  EXPECT_DOUBLE_EQ((*day)[0].cost_usd, 0.05);
  EXPECT_EQ((*day)[1].model, "gpt-4o");
  EXPECT_EQ((*day)[1].route, "smart");
  EXPECT_EQ((*day)[1].kind, "cloud");
  EXPECT_EQ((*day)[1].requests, 2);
  EXPECT_EQ((*day)[1].prompt_tokens, 300);
  EXPECT_EQ((*day)[1].completion_tokens, 30);
  EXPECT_DOUBLE_EQ((*day)[1].cost_usd, 0.02);
  EXPECT_EQ((*day)[2].model, "gemma-3-1b");
  EXPECT_EQ((*day)[2].kind, "local");
  EXPECT_EQ((*day)[2].requests, 3);
  EXPECT_EQ((*day)[2].prompt_tokens, 150);
  EXPECT_EQ((*day)[2].completion_tokens, 15);
  EXPECT_EQ((*day)[2].cost_usd, 0);

  auto month = ledger->breakdown("acme", Window::kMonth, kNov23);
  ASSERT_TRUE(month.ok());
  ASSERT_EQ(month->size(), 3u);
  EXPECT_EQ((*month)[0].model, "gpt-4o");  // 0.06 now outranks claude's 0.05
  EXPECT_EQ((*month)[0].requests, 3);
  EXPECT_EQ((*month)[0].prompt_tokens, 310);
  EXPECT_DOUBLE_EQ((*month)[0].cost_usd, 0.06);
  EXPECT_EQ((*month)[1].model, "claude");

  auto october = ledger->breakdown("acme", Window::kMonth, kOct31);
  ASSERT_TRUE(october.ok());
  ASSERT_EQ(october->size(), 1u);
  EXPECT_DOUBLE_EQ((*october)[0].cost_usd, 9.0);
  auto nobody = ledger->breakdown("nobody", Window::kMonth, kNov23);
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->empty());
  EXPECT_EQ(ledger->teams(), (std::vector<std::string>{"acme", "beta"}));
}

// ---- Opening ----

TEST(Ledger, CorruptFileIsAClearIoError) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  std::string junk(64 * 1024, '\0');
  std::mt19937 rng(7);
  for (char& c : junk) c = static_cast<char>(rng());
  { std::ofstream(path, std::ios::binary) << junk; }
  auto l = policies::openSqliteLedger(path);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(l.status().message().find("ledger '" + path + "': not a SQLite database"),
            std::string::npos)
      << l.status().message();
  // Left as it was.
  std::ifstream in(path, std::ios::binary);
  std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(after == junk);
}

TEST(Ledger, DirectoryOrMissingParentIsAClearIoError) {
  TempDir dir;
  auto l = policies::openSqliteLedger(dir.path().string());
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kIo);
  EXPECT_EQ(l.status().message(),
            "ledger '" + dir.path().string() + "': is a directory, expected a database file");

  std::string missing = dir.file("no/such/dir/ledger.db");
  l = policies::openSqliteLedger(missing);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kIo);
  EXPECT_EQ(l.status().message(), "ledger '" + missing +
                                      "': cannot open or create: No such file or directory (its "
                                      "parent directory must exist)");
  EXPECT_EQ(policies::openSqliteLedger("").status().code(), api::ErrorCode::kIo);
}

TEST(Ledger, ForeignDatabaseOrUnknownSchemaVersionIsAConfigError) {
  TempDir dir;
  std::string foreign = dir.file("foreign.db");
  {
    RawDb db(foreign);
    db.exec("CREATE TABLE users(name TEXT)");
  }
  auto l = policies::openSqliteLedger(foreign);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kConfig);
  EXPECT_EQ(l.status().message(), "ledger '" + foreign +
                                      "': a SQLite database that is not a Switchyard ledger (it "
                                      "has tables but no meta table)");

  std::string future = dir.file("future.db");
  ASSERT_NE(mustOpen(future), nullptr);
  {
    RawDb db(future);
    db.exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
  }
  l = policies::openSqliteLedger(future);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kConfig);
  EXPECT_EQ(l.status().message(), "ledger '" + future +
                                      "': schema version '99' is not supported (this build reads "
                                      "version 3)");
}

TEST(Ledger, SecondOwnerOfAFileIsRefused) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto first = mustOpen(path);
  ASSERT_NE(first, nullptr);
  auto second = policies::openSqliteLedger(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(second.status().message().find("in use by another ledger"), std::string::npos);
  first.reset();
  EXPECT_NE(mustOpen(path), nullptr);
}

}  // namespace
