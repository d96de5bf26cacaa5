// The SQLite Ledger: budgets in memory, rows written by one writer thread (the file itself is
// LedgerStore's, ledger_store.cpp).
//
// Budget state lives under one mutex (mu_): per team, the settled sum of one cached day and one
// cached month, and the sum of open reservations. A cached sum is exact by construction: it is
// computed from committed rows (id <= last_committed_id_) plus the queued ones (id >
// last_committed_id_: they stay in queue_ until the writer publishes their commit under mu_),
// and every row queued later in the same period is added to it under the same lock. A period
// that is not cached (a new day, a team seen first) is computed that way on first access.
//
// Rows get their ids when queued; the writer inserts them in id order, one transaction per
// batch of whatever is queued (up to kMaxBatchRows), so a crash leaves a prefix of the queue.
#include "policies/ledger.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "policies/ledger_store.h"

namespace policies {
namespace {

constexpr int64_t kMsPerDay = 86'400'000;
// Times are clamped to +-10^11 days (about 270 million years), so that no period arithmetic
// can overflow.
constexpr int64_t kMaxAbsMs = int64_t{100'000'000'000} * kMsPerDay;
// Rows queued but not committed; beyond this settle/record wait for the writer.
constexpr size_t kMaxQueuedRows = 100'000;
constexpr size_t kMaxBatchRows = 1'000;
// A reservation may fill a budget to within this much (USD) of its limit: it absorbs the
// rounding of sums of doubles, never a real overspend.
constexpr double kEpsilonUsd = 1e-9;
// Attempts to write the last rows at shutdown while the database is failing.
constexpr int kShutdownWriteAttempts = 3;
// How long settle/record wait on a full queue while the writer keeps failing before they give
// up on the row (with a healthy writer they wait as long as it takes).
constexpr auto kFullQueueFailingWait = std::chrono::seconds(2);

// ---- UTC calendar (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms") ----

struct CivilDate {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  auto yoe = static_cast<unsigned>(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

CivilDate civilFromDays(int64_t z) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  auto doe = static_cast<unsigned>(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

int64_t dayNumber(int64_t unix_ms) {
  int64_t ms = std::clamp(unix_ms, -kMaxAbsMs, kMaxAbsMs);
  return ms / kMsPerDay - (ms % kMsPerDay < 0 ? 1 : 0);  // floor division
}

// ---- Formatting ----

// "$4.20", "$0.000123": at least two decimals, at most six.
std::string usd(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  std::string s(buf);
  size_t dot = s.find('.');
  if (dot != std::string::npos) {
    while (s.size() > dot + 3 && s.back() == '0') s.pop_back();
  }
  return "$" + s;
}

std::string jsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

void logError(std::string_view msg, std::string_view path, std::string_view error) {
  std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"%s\",\"path\":\"%s\",\"error\":\"%s\"}\n",
               jsonEscape(msg).c_str(), jsonEscape(path).c_str(), jsonEscape(error).c_str());
}

bool validRow(const LedgerRow& row, std::string* problem) {
  if (!std::isfinite(row.cost_usd) || row.cost_usd < 0) {
    *problem = "cost_usd must be finite and >= 0, got " + std::to_string(row.cost_usd);
    return false;
  }
  if (!std::isfinite(row.latency_ms)) {
    *problem = "latency_ms must be finite";
    return false;
  }
  if (!std::isfinite(row.compute_ms) || row.compute_ms < 0) {
    *problem = "compute_ms must be finite and >= 0";
    return false;
  }
  return true;
}

class SqliteLedger final : public Ledger {
 public:
  static api::StatusOr<std::unique_ptr<Ledger>> open(const std::string& path);
  ~SqliteLedger() override;

  api::StatusOr<uint64_t> reserve(const std::string& team, double max_cost_usd,
                                  const BudgetLimits& limits, int64_t now_ms) override;
  api::Status settle(uint64_t reservation, const LedgerRow& row) override;
  void release(uint64_t reservation) override;
  api::Status record(const LedgerRow& row) override;
  Spend spent(const std::string& team, Window w, int64_t now_ms) override;
  api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, Window w,
                                                          int64_t now_ms) override;
  api::StatusOr<bool> markAlerted(const std::string& team, const std::string& period,
                                  double threshold, int64_t now_ms) override;
  api::Status flush() override;
  std::vector<std::string> teams() override;

 private:
  struct PeriodSum {
    bool loaded = false;
    int64_t start_ms = 0;    // the cached period
    double settled_usd = 0;  // rows of the team in it, committed or queued
  };
  struct TeamState {
    PeriodSum day, month;
    double reserved_usd = 0;
    int64_t open_reservations = 0;
  };
  struct Reservation {
    std::string team;
    double amount_usd = 0;
  };

  explicit SqliteLedger(std::unique_ptr<LedgerStore> store)
      : store_(std::move(store)), path_(store_->path()) {}

  api::Status init();

  // All *Locked methods require mu_.
  api::StatusOr<double> settledLocked(const std::string& team, TeamState& t, Window w,
                                      int64_t now_ms);
  void dropReservationLocked(std::unordered_map<uint64_t, Reservation>::iterator it);
  // Waits (releasing mu_) while the queue is full and the writer makes progress. False when it
  // is still full because the writer has been failing for a while (or has stopped).
  bool waitForQueueSpaceLocked(std::unique_lock<std::mutex>& lock);
  // Adds the row's cost to the cached sums it falls in and, when `has_space`, queues it; else
  // kIo (the cost counts, the row is not written). Never releases mu_, so that a settled cost
  // replaces its reservation atomically.
  api::Status countAndQueueLocked(const LedgerRow& row, bool has_space);

  void writerLoop();

  // Its writer side is used by writerLoop only, its sum side under mu_.
  std::unique_ptr<LedgerStore> store_;
  std::string path_;

  std::mutex mu_;
  std::condition_variable writer_cv_;    // the writer waits for rows or stop_
  std::condition_variable progress_cv_;  // flush() and full-queue waiters wait for the writer
  std::unordered_map<std::string, TeamState> state_;
  std::set<std::string> team_names_;  // teams with any row, committed or queued
  std::unordered_map<uint64_t, Reservation> reservations_;
  uint64_t next_reservation_ = 1;
  // Rows with id > last_committed_id_, in id order. The writer reads the front of it without
  // the lock (deque elements do not move on push_back); only the writer removes rows.
  std::deque<StoredRow> queue_;
  int64_t next_row_id_ = 1;
  int64_t last_committed_id_ = 0;
  uint64_t write_failures_ = 0;  // failed batch attempts since open
  bool failing_ = false;         // the last attempt failed
  std::string last_error_;
  bool stop_ = false;
  bool writer_done_ = false;
  std::thread writer_;
};

// ---- Opening ----

api::StatusOr<std::unique_ptr<Ledger>> SqliteLedger::open(const std::string& path) {
  auto store = LedgerStore::open(path);
  if (!store.ok()) return store.status();
  std::unique_ptr<SqliteLedger> ledger(new SqliteLedger(std::move(*store)));
  if (api::Status s = ledger->init(); !s.ok()) return s;
  return std::unique_ptr<Ledger>(std::move(ledger));
}

api::Status SqliteLedger::init() {
  auto last = store_->lastId();
  if (!last.ok()) return last.status();
  auto teams = store_->teams();
  if (!teams.ok()) return teams.status();
  // Warm the sums of the current day and month, so that the first requests do not read them.
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_committed_id_ = *last;
    next_row_id_ = *last + 1;
    team_names_.insert(teams->begin(), teams->end());
    for (const std::string& team : team_names_) {
      TeamState& t = state_[team];
      for (Window w : {Window::kDay, Window::kMonth}) {
        auto s = settledLocked(team, t, w, now_ms);
        if (!s.ok()) return s.status();
      }
    }
  }
  writer_ = std::thread([this] { writerLoop(); });
  return {};
}

SqliteLedger::~SqliteLedger() {
  if (writer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    writer_cv_.notify_all();
    writer_.join();  // after it has written every queued row (or given up on a failing file)
  }
}

// ---- Budgets ----

api::StatusOr<double> SqliteLedger::settledLocked(const std::string& team, TeamState& t, Window w,
                                                  int64_t now_ms) {
  PeriodSum& p = w == Window::kDay ? t.day : t.month;
  int64_t start = periodStartMs(w, now_ms);
  if (p.loaded && p.start_ms == start) return p.settled_usd;
  int64_t end = periodEndMs(w, now_ms);
  double sum = 0;
  {
    auto committed = store_->sumCost(team, start, end, last_committed_id_);
    if (!committed.ok()) return committed.status();
    sum = *committed;
  }
  for (const StoredRow& r : queue_) {
    if (r.row.team == team && r.row.unix_ms >= start && r.row.unix_ms < end) {
      sum += r.row.cost_usd;
    }
  }
  p.loaded = true;
  p.start_ms = start;
  p.settled_usd = sum;
  return sum;
}

api::StatusOr<uint64_t> SqliteLedger::reserve(const std::string& team, double max_cost_usd,
                                              const BudgetLimits& limits, int64_t now_ms) {
  if (!std::isfinite(max_cost_usd) || max_cost_usd < 0) {
    return api::Status(api::ErrorCode::kInternal, "reservation of an invalid amount " +
                                                      std::to_string(max_cost_usd) + " for team '" +
                                                      team + "'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  TeamState& t = state_[team];
  struct Check {
    Window w;
    const std::optional<double>& limit;
    const char* name;
  };
  for (const Check& c : {Check{Window::kDay, limits.daily_usd, "daily"},
                         Check{Window::kMonth, limits.monthly_usd, "monthly"}}) {
    if (!c.limit) continue;
    auto settled = settledLocked(team, t, c.w, now_ms);
    if (!settled.ok()) return settled.status();
    // Written so that a NaN limit refuses.
    if (!(*settled + t.reserved_usd + max_cost_usd <= *c.limit + kEpsilonUsd)) {
      return api::Status(api::ErrorCode::kQuotaExceeded,
                         "The budget of team '" + team + "' is exhausted: its " + c.name +
                             " limit of " + usd(*c.limit) + " for " + periodKey(c.w, now_ms) +
                             " has " + usd(*settled) + " spent and " + usd(t.reserved_usd) +
                             " reserved; this request may cost up to " + usd(max_cost_usd) + ".",
                         {}, "insufficient_quota");
    }
  }
  uint64_t id = next_reservation_++;
  reservations_.emplace(id, Reservation{team, max_cost_usd});
  t.reserved_usd += max_cost_usd;
  ++t.open_reservations;
  return id;
}

void SqliteLedger::dropReservationLocked(std::unordered_map<uint64_t, Reservation>::iterator it) {
  TeamState& t = state_[it->second.team];
  // Exactly zero when none is left, so that rounding never accumulates.
  t.reserved_usd = --t.open_reservations == 0 ? 0 : t.reserved_usd - it->second.amount_usd;
  reservations_.erase(it);
}

bool SqliteLedger::waitForQueueSpaceLocked(std::unique_lock<std::mutex>& lock) {
  std::optional<std::chrono::steady_clock::time_point> failing_since;
  while (queue_.size() >= kMaxQueuedRows) {
    if (writer_done_) return false;
    if (failing_) {
      auto now = std::chrono::steady_clock::now();
      if (!failing_since) failing_since = now;
      if (now - *failing_since >= kFullQueueFailingWait) return false;
    } else {
      failing_since.reset();
    }
    progress_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  return true;
}

api::Status SqliteLedger::countAndQueueLocked(const LedgerRow& row, bool has_space) {
  TeamState& t = state_[row.team];
  for (PeriodSum* p : {&t.day, &t.month}) {
    Window w = p == &t.day ? Window::kDay : Window::kMonth;
    if (p->loaded && p->start_ms == periodStartMs(w, row.unix_ms)) p->settled_usd += row.cost_usd;
  }
  if (!has_space) {
    return api::Status(api::ErrorCode::kIo,
                       "ledger '" + path_ + "': " + std::to_string(queue_.size()) +
                           " rows wait for a failing database (" + last_error_ +
                           "); row of request '" + row.request_id + "' not recorded");
  }
  queue_.push_back(StoredRow{next_row_id_++, row});
  team_names_.insert(row.team);
  writer_cv_.notify_one();
  return {};
}

api::Status SqliteLedger::settle(uint64_t reservation, const LedgerRow& row) {
  std::string problem;
  if (!validRow(row, &problem)) {
    return api::Status(api::ErrorCode::kInternal,
                       "settle of reservation " + std::to_string(reservation) + ": " + problem);
  }
  std::unique_lock<std::mutex> lock(mu_);
  // Wait before touching the reservation: from its drop to the row's count nobody may see
  // the money as neither reserved nor spent.
  bool has_space = waitForQueueSpaceLocked(lock);
  auto it = reservations_.find(reservation);
  if (it == reservations_.end()) {
    return api::Status(api::ErrorCode::kInternal, "settle of unknown reservation " +
                                                      std::to_string(reservation) +
                                                      " (settled or released already)");
  }
  if (it->second.team != row.team) {
    return api::Status(api::ErrorCode::kInternal,
                       "settle of reservation " + std::to_string(reservation) + " of team '" +
                           it->second.team + "' with a row of team '" + row.team + "'");
  }
  dropReservationLocked(it);
  return countAndQueueLocked(row, has_space);
}

void SqliteLedger::release(uint64_t reservation) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = reservations_.find(reservation);
  if (it != reservations_.end()) dropReservationLocked(it);
}

api::Status SqliteLedger::record(const LedgerRow& row) {
  std::string problem;
  if (!validRow(row, &problem)) {
    return api::Status(api::ErrorCode::kInternal,
                       "record of request '" + row.request_id + "': " + problem);
  }
  std::unique_lock<std::mutex> lock(mu_);
  bool has_space = waitForQueueSpaceLocked(lock);
  return countAndQueueLocked(row, has_space);
}

Spend SqliteLedger::spent(const std::string& team, Window w, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  TeamState& t = state_[team];
  Spend out;
  out.reserved_usd = t.reserved_usd;
  auto settled = settledLocked(team, t, w, now_ms);
  if (settled.ok()) {
    out.settled_usd = *settled;
  } else {
    // No status to return: report what is known (the queued rows) and say why.
    logError("ledger: cannot read spend", path_, settled.status().message());
    int64_t start = periodStartMs(w, now_ms), end = periodEndMs(w, now_ms);
    for (const StoredRow& r : queue_) {
      if (r.row.team == team && r.row.unix_ms >= start && r.row.unix_ms < end) {
        out.settled_usd += r.row.cost_usd;
      }
    }
  }
  return out;
}

std::vector<std::string> SqliteLedger::teams() {
  std::lock_guard<std::mutex> lock(mu_);
  return {team_names_.begin(), team_names_.end()};
}

// ---- Admin reads and alerts ----

api::StatusOr<std::vector<SpendBreakdownRow>> SqliteLedger::breakdown(const std::string& team,
                                                                      Window w, int64_t now_ms) {
  return store_->breakdown(team, periodStartMs(w, now_ms), periodEndMs(w, now_ms));
}

api::StatusOr<bool> SqliteLedger::markAlerted(const std::string& team, const std::string& period,
                                              double threshold, int64_t now_ms) {
  if (!std::isfinite(threshold)) {
    return api::Status(api::ErrorCode::kInternal, "alert threshold must be finite");
  }
  return store_->insertAlert(team, period, threshold, now_ms);
}

// ---- The writer ----

api::Status SqliteLedger::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  int64_t target = next_row_id_ - 1;
  uint64_t failures = write_failures_;
  progress_cv_.wait(lock, [&] {
    return last_committed_id_ >= target || write_failures_ != failures || writer_done_;
  });
  if (last_committed_id_ >= target) return {};
  return api::Status(api::ErrorCode::kIo, "ledger '" + path_ +
                                              "': " + std::to_string(target - last_committed_id_) +
                                              " rows not committed yet: " + last_error_);
}

void SqliteLedger::writerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  int failures_in_a_row = 0;
  while (true) {
    writer_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, and everything is written
    size_t n = std::min(queue_.size(), kMaxBatchRows);
    std::vector<const StoredRow*> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) batch.push_back(&queue_[i]);
    lock.unlock();
    api::Status st = store_->insertBatch(batch);
    lock.lock();
    if (st.ok()) {
      // Published together under mu_: a period sum reads ids <= last_committed_id_ from the
      // database and the rest from queue_.
      last_committed_id_ = batch.back()->id;
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      failing_ = false;
      failures_in_a_row = 0;
      progress_cv_.notify_all();
      continue;
    }
    ++write_failures_;
    failing_ = true;
    last_error_ = st.message();
    progress_cv_.notify_all();
    logError("ledger: write failed; rows kept and retried", path_, st.message());
    ++failures_in_a_row;
    if (stop_ && failures_in_a_row >= kShutdownWriteAttempts) {
      logError("ledger: closing with rows not written", path_,
               std::to_string(queue_.size()) + " rows lost: " + st.message());
      break;
    }
    // Back off (50 ms doubling up to 1.6 s); at shutdown retry at once.
    auto backoff = std::chrono::milliseconds(50 << std::min(failures_in_a_row - 1, 5));
    writer_cv_.wait_for(lock, backoff, [&] { return stop_; });
  }
  writer_done_ = true;
  progress_cv_.notify_all();
}

}  // namespace

// ---- Periods ----

std::string periodKey(Window w, int64_t unix_ms) {
  CivilDate d = civilFromDays(dayNumber(unix_ms));
  char buf[48];
  if (w == Window::kDay) {
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(d.year), d.month,
                  d.day);
  } else {
    std::snprintf(buf, sizeof buf, "%04lld-%02u", static_cast<long long>(d.year), d.month);
  }
  return buf;
}

int64_t periodStartMs(Window w, int64_t unix_ms) {
  int64_t day = dayNumber(unix_ms);
  if (w == Window::kDay) return day * kMsPerDay;
  CivilDate d = civilFromDays(day);
  return daysFromCivil(d.year, d.month, 1) * kMsPerDay;
}

int64_t periodEndMs(Window w, int64_t unix_ms) {
  int64_t day = dayNumber(unix_ms);
  if (w == Window::kDay) return (day + 1) * kMsPerDay;
  CivilDate d = civilFromDays(day);
  return (d.month == 12 ? daysFromCivil(d.year + 1, 1, 1) : daysFromCivil(d.year, d.month + 1, 1)) *
         kMsPerDay;
}

api::StatusOr<std::unique_ptr<Ledger>> openSqliteLedger(const std::string& path) {
  return SqliteLedger::open(path);
}

}  // namespace policies
