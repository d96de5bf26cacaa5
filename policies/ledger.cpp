// The SQLite Ledger: budgets in memory, rows written by one writer thread (the file itself is
// LedgerStore's, ledger_store.cpp).
//
// Budget state lives under one mutex (mu_): per team, the settled sum of one cached day and one
// cached month, and the sum of open reservations. A cached sum is exact by construction: it is
// computed from the final rows committed by writes with seq <= last_committed_seq_ plus the
// final rows still queued (seq > last_committed_seq_: they stay in queue_ until the writer
// publishes their commit under mu_), and every row queued later in the same period is added to
// it under the same lock. A period that is not cached (a new day, a team seen first) is
// computed that way on first access. Pending rows never count there: their money is in the
// team's reserved sum until they are settled.
//
// Every write (a row, a pending row, its removal, an alert) gets a seq when queued; the writer
// applies them in seq order, one transaction per batch of whatever is queued (up to
// kMaxBatchWrites: group commit), so a crash leaves a prefix of the queue. Nothing but the
// writer waits on the file: a full queue drops writes (counted and logged) instead.
//
// A durable reservation is durable once its pending row is in the reservation journal
// (ledger_journal.h: one write() on the caller's thread), so nobody waits for a commit: the
// writer lets writes gather for up to kGroupWindow before it commits them (flush() and a full
// batch cut the wait short), and a pending row settled or released within the same batch is
// not written at all (its settle rewrites the whole row; a release leaves nothing). A cloud
// call thus costs about one journal append on its own thread and a share of one transaction.
#include "policies/ledger.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "policies/ledger_journal.h"
#include "policies/ledger_store.h"

namespace policies {
namespace {

constexpr int64_t kMsPerDay = 86'400'000;
// Times are clamped to +-10^11 days (about 270 million years), so that no period arithmetic
// can overflow.
constexpr int64_t kMaxAbsMs = int64_t{100'000'000'000} * kMsPerDay;
// Writes queued but not committed; beyond this they are dropped (counted and logged: the
// callers run on I/O threads and never wait) and reserveDurable answers kUnavailable.
constexpr size_t kMaxQueuedWrites = 100'000;
// One transaction takes whatever is queued, up to this many writes (group commit).
constexpr size_t kMaxBatchWrites = 1'000;
// How long the writer lets writes gather before it commits them: nobody waits for a commit
// (reservations are durable in the journal), and a request's pending row and its settle then
// usually share one transaction, written as one row. Against 5 ms this halves the writer's CPU
// per request (bench/RESULTS.md); a crash bills the settles of the last window at their
// reservations, which never under-counts.
constexpr std::chrono::milliseconds kGroupWindow{25};
// A reservation may fill a budget to within this much (USD) of its limit: it absorbs the
// rounding of sums of doubles, never a real overspend.
constexpr double kEpsilonUsd = 1e-9;
// Attempts to write the last rows at shutdown while the database is failing.
constexpr int kShutdownWriteAttempts = 3;
// LedgerRow::state values.
const char* const kPending = "pending";
const char* const kSettled = "settled";

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
  *problem = ledgerRowProblem(row);
  return problem->empty();
}

class SqliteLedger final : public Ledger {
 public:
  static api::StatusOr<std::unique_ptr<Ledger>> open(const std::string& path);
  ~SqliteLedger() override;

  api::StatusOr<uint64_t> reserveDurable(const ReservationRequest& request,
                                         DurableCallback on_durable) override;
  api::StatusOr<uint64_t> reserve(const std::string& team, double max_cost_usd,
                                  const BudgetLimits& limits, int64_t now_ms) override;
  api::Status settle(uint64_t reservation, const LedgerRow& row) override;
  void release(uint64_t reservation) override;
  api::Status record(const LedgerRow& row) override;
  Spend spent(const std::string& team, Window w, int64_t now_ms) override;
  std::optional<Spend> cachedSpent(const std::string& team, Window w, int64_t now_ms) override;
  api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, Window w,
                                                          int64_t now_ms) override;
  api::StatusOr<bool> markAlerted(const std::string& team, const std::string& period,
                                  double threshold, int64_t now_ms) override;
  api::Status flush() override;
  std::vector<std::string> teams() override;
  LedgerStats stats() override;

 private:
  struct PeriodSum {
    bool loaded = false;
    int64_t start_ms = 0;    // the cached period
    double settled_usd = 0;  // final rows of the team in it, committed or queued
  };
  struct TeamState {
    PeriodSum day, month;
    double reserved_usd = 0;
    int64_t open_reservations = 0;
    // Cost of rows the full queue dropped, by (window, period start): neither in the file nor
    // queued, so a recomputed sum adds it back. Empty unless the database failed for long.
    std::map<std::pair<Window, int64_t>, double> dropped_usd;
  };
  struct Reservation {
    std::string team;
    double amount_usd = 0;
    int64_t row_id = 0;  // its pending row (durable reservations); 0: in memory only
  };
  explicit SqliteLedger(std::unique_ptr<LedgerStore> store)
      : store_(std::move(store)), path_(store_->path()) {}

  api::Status init();
  // Reservations whose pending rows a crash left in the journal only: written as pending rows
  // (settleCrashed then bills them). Returns how many.
  api::StatusOr<size_t> recoverJournal(std::vector<JournalRecord> records);

  // All *Locked methods require mu_.
  api::StatusOr<double> settledLocked(const std::string& team, TeamState& t, Window w,
                                      int64_t now_ms);
  api::StatusOr<uint64_t> reserveLocked(const std::string& team, double max_cost_usd,
                                        const BudgetLimits& limits, int64_t now_ms);
  void dropReservationLocked(std::unordered_map<uint64_t, Reservation>::iterator it);
  // Queues `w` (giving it the next seq) unless the queue is full; then counts and logs the
  // dropped write and returns false. Never waits.
  bool queueLocked(LedgerWrite w);
  void dropLocked();  // counts and logs a write the full queue could not take
  // Adds the row's cost to the cached sums it falls in and queues it as row `id` (0: a new
  // one), or kIo when the queue is full (the cost counts, the row is not written). Never
  // releases mu_, so that a settled cost replaces its reservation atomically.
  api::Status countAndQueueLocked(const LedgerRow& row, int64_t id);

  void writerLoop();
  // The writer, holding `lock` on mu_, with writes queued: waits up to kGroupWindow for more
  // (unless a flush or the stop waits, or a batch is full already).
  void gatherLocked(std::unique_lock<std::mutex>& lock);
  // The first `n` queued writes as one batch, without the pending rows that a later write of
  // the same batch settles or removes.
  std::vector<const LedgerWrite*> batchLocked(size_t n) const;
  // After the writer's attempt at the first `n` queued writes: publishes them (and empties
  // journal files whose records are all committed), or keeps them all for a retry (the
  // pending rows among them belong to calls that have started: they are in the journal).
  void committedLocked(size_t n);
  void failedLocked(const api::Status& error);

  // Its writer side is used by writerLoop only, its sum side under mu_ (and at open).
  std::unique_ptr<LedgerStore> store_;
  std::string path_;

  std::mutex mu_;
  std::condition_variable writer_cv_;    // the writer waits for writes, failures or stop_
  std::condition_variable progress_cv_;  // flush() waits for the writer
  std::unordered_map<std::string, TeamState> state_;
  std::set<std::string> team_names_;  // teams with any row, committed or queued
  std::unordered_map<uint64_t, Reservation> reservations_;
  uint64_t next_reservation_ = 1;
  std::unique_ptr<ReservationJournal> journal_;  // under mu_
  std::set<AlertKey> alerted_;                   // every alert recorded, in the file or queued
  // Writes with seq > last_committed_seq_, in seq order. The writer reads the front of it
  // without the lock (deque elements do not move on push_back); only the writer removes them.
  std::deque<LedgerWrite> queue_;
  int64_t next_row_id_ = 1;
  int64_t next_seq_ = 1;
  int64_t last_committed_seq_ = 0;
  LedgerStats stats_;
  uint64_t write_failures_ = 0;  // failed attempts (batches and probes) since open
  bool failing_ = false;         // the last attempt failed
  std::string last_error_;
  bool stop_ = false;
  bool writer_done_ = false;
  bool writer_idle_ = false;  // the writer waits for a first write: queueing one wakes it
  int flushes_waiting_ = 0;   // flush() calls waiting: the writer commits at once
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

api::StatusOr<size_t> SqliteLedger::recoverJournal(std::vector<JournalRecord> records) {
  auto last = store_->lastSeq();
  if (!last.ok()) return last.status();
  std::vector<LedgerWrite> writes;
  for (JournalRecord& r : records) {
    if (r.seq <= *last) continue;  // its row (or what became of it) is in the file
    LedgerWrite w;
    w.seq = r.seq;
    w.id = r.id;
    w.row = std::move(r.row);
    writes.push_back(std::move(w));
  }
  if (writes.empty()) return size_t{0};
  std::sort(writes.begin(), writes.end(),
            [](const LedgerWrite& a, const LedgerWrite& b) { return a.seq < b.seq; });
  std::vector<const LedgerWrite*> batch;
  for (const LedgerWrite& w : writes) batch.push_back(&w);
  if (api::Status s = store_->writeBatch(batch); !s.ok()) return s;
  return writes.size();
}

api::Status SqliteLedger::init() {
  // Before anything is summed: a reservation left by a crash becomes spend, whether its
  // pending row reached the file or only the journal.
  std::vector<JournalRecord> journaled;
  auto journal = ReservationJournal::open(path_, &journaled);
  if (!journal.ok()) return journal.status();
  journal_ = std::move(*journal);
  auto recovered = recoverJournal(std::move(journaled));
  if (!recovered.ok()) return recovered.status();
  auto crashed = store_->settleCrashed();
  if (!crashed.ok()) return crashed.status();
  // Every record is in the file now (as a crashed row, or stale).
  if (api::Status s = journal_->clear(); !s.ok()) return s;
  if (crashed->count > 0) {
    std::fprintf(stderr,
                 "{\"level\":\"warn\",\"msg\":\"ledger: reservations left by a crash settled at "
                 "their reserved amount\",\"path\":\"%s\",\"reservations\":%lld,\"usd\":%.6f}\n",
                 jsonEscape(path_).c_str(), static_cast<long long>(crashed->count), crashed->usd);
  }
  auto last = store_->lastId();
  if (!last.ok()) return last.status();
  auto seq = store_->lastSeq();
  if (!seq.ok()) return seq.status();
  auto teams = store_->teams();
  if (!teams.ok()) return teams.status();
  auto alerts = store_->alerts();
  if (!alerts.ok()) return alerts.status();
  // Warm the sums of the current day and month, so that the first requests do not read them.
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.crashed_reservations = static_cast<uint64_t>(crashed->count);
    stats_.crashed_usd = crashed->usd;
    next_row_id_ = *last + 1;
    last_committed_seq_ = *seq;
    next_seq_ = *seq + 1;
    alerted_.insert(alerts->begin(), alerts->end());
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
  // Every reservation's row is in the file: the journal has nothing left to keep.
  if (queue_.empty() && journal_) (void)journal_->clear();
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
    auto committed = store_->sumCost(team, start, end, last_committed_seq_);
    if (!committed.ok()) return committed.status();
    sum = *committed;
  }
  for (const LedgerWrite& q : queue_) {
    const LedgerRow& r = q.row;
    if (q.kind == LedgerWrite::Kind::kRow && r.state == kSettled && r.team == team &&
        r.unix_ms >= start && r.unix_ms < end) {
      sum += r.cost_usd;
    }
  }
  if (auto d = t.dropped_usd.find({w, start}); d != t.dropped_usd.end()) sum += d->second;
  p.loaded = true;
  p.start_ms = start;
  p.settled_usd = sum;
  return sum;
}

api::StatusOr<uint64_t> SqliteLedger::reserveLocked(const std::string& team, double max_cost_usd,
                                                    const BudgetLimits& limits, int64_t now_ms) {
  if (!std::isfinite(max_cost_usd) || max_cost_usd < 0) {
    return api::Status(api::ErrorCode::kInternal, "reservation of an invalid amount " +
                                                      std::to_string(max_cost_usd) + " for team '" +
                                                      team + "'");
  }
  TeamState& t = state_[team];
  struct Check {
    Window w;
    const std::optional<double>& limit;
  };
  for (const Check& c : {Check{Window::kDay, limits.daily_usd},
                         Check{Window::kMonth, limits.monthly_usd}}) {
    if (!c.limit) continue;
    auto settled = settledLocked(team, t, c.w, now_ms);
    if (!settled.ok()) return settled.status();
    // Written so that a NaN limit refuses.
    if (!(*settled + t.reserved_usd + max_cost_usd <= *c.limit + kEpsilonUsd)) {
      return budgetExhausted(team, c.w, *c.limit, now_ms, *settled, t.reserved_usd, max_cost_usd);
    }
  }
  uint64_t id = next_reservation_++;
  reservations_.emplace(id, Reservation{team, max_cost_usd, 0});
  t.reserved_usd += max_cost_usd;
  ++t.open_reservations;
  return id;
}

api::StatusOr<uint64_t> SqliteLedger::reserve(const std::string& team, double max_cost_usd,
                                              const BudgetLimits& limits, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return reserveLocked(team, max_cost_usd, limits, now_ms);
}

api::StatusOr<uint64_t> SqliteLedger::reserveDurable(const ReservationRequest& request,
                                                     DurableCallback on_durable) {
  api::StatusOr<uint64_t> id = api::Status(api::ErrorCode::kInternal, "not reserved");
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Refused before anything is reserved: a call that starts now could not be billed after
    // a crash. The writer's retries and probes clear failing_ once writes work again.
    if (failing_ || writer_done_ || queue_.size() >= kMaxQueuedWrites) {
      std::string why = writer_done_ ? "closing"
                        : failing_   ? last_error_
                                     : std::to_string(queue_.size()) + " writes queued";
      return api::Status(api::ErrorCode::kUnavailable, "ledger unavailable: " + why);
    }
    id = reserveLocked(request.team, request.max_cost_usd, request.limits, request.now_ms);
    if (!id.ok()) return id;
    JournalRecord j;
    j.seq = next_seq_;  // queueLocked gives the pending row this seq
    j.id = next_row_id_;
    LedgerRow& r = j.row;
    r.request_id = request.request_id;
    r.team = request.team;
    r.key_id = request.key_id;
    r.model = request.model;
    r.decision = request.decision;
    r.kind = "cloud";
    r.cost_usd = request.max_cost_usd;  // what a crash settles it at
    r.status = 0;                       // no answer yet
    r.unix_ms = request.now_ms;
    r.state = kPending;
    // Durable from here on: a crash leaves the record, which the next open bills.
    if (api::Status st = journal_->append(j); !st.ok()) {
      dropReservationLocked(reservations_.find(*id));
      logError("ledger: cannot journal a reservation", path_, st.message());
      return api::Status(api::ErrorCode::kUnavailable, "ledger unavailable: " + st.message());
    }
    ++next_row_id_;
    reservations_[*id].row_id = j.id;
    team_names_.insert(request.team);
    LedgerWrite w;
    w.id = j.id;
    w.row = std::move(j.row);
    queueLocked(std::move(w));  // has space: checked above
  }
  if (on_durable) on_durable(api::Status());
  return id;
}

void SqliteLedger::dropReservationLocked(std::unordered_map<uint64_t, Reservation>::iterator it) {
  TeamState& t = state_[it->second.team];
  // Exactly zero when none is left, so that rounding never accumulates.
  t.reserved_usd = --t.open_reservations == 0 ? 0 : t.reserved_usd - it->second.amount_usd;
  reservations_.erase(it);
}

void SqliteLedger::dropLocked() {
  uint64_t dropped = ++stats_.dropped_writes;
  if (dropped == 1 || dropped % 1000 == 0) {
    logError("ledger: write queue full, writes dropped (" + std::to_string(dropped) +
                 " so far; their money still counts in memory)",
             path_, last_error_);
  }
}

bool SqliteLedger::queueLocked(LedgerWrite w) {
  if (queue_.size() >= kMaxQueuedWrites) {
    // Only after the database has failed for long (a healthy writer keeps the queue short):
    // the caller runs on an I/O thread and must not wait.
    dropLocked();
    return false;
  }
  w.seq = next_seq_++;
  queue_.push_back(std::move(w));
  if (writer_idle_) {
    // Only the first write wakes the writer: it then gathers more for a while by itself.
    writer_idle_ = false;
    writer_cv_.notify_one();
  }
  return true;
}

api::Status SqliteLedger::countAndQueueLocked(const LedgerRow& row, int64_t id) {
  TeamState& t = state_[row.team];
  for (PeriodSum* p : {&t.day, &t.month}) {
    Window w = p == &t.day ? Window::kDay : Window::kMonth;
    if (p->loaded && p->start_ms == periodStartMs(w, row.unix_ms)) p->settled_usd += row.cost_usd;
  }
  team_names_.insert(row.team);
  if (queue_.size() >= kMaxQueuedWrites) {
    for (Window w : {Window::kDay, Window::kMonth}) {
      t.dropped_usd[{w, periodStartMs(w, row.unix_ms)}] += row.cost_usd;
    }
    dropLocked();
    return api::Status(api::ErrorCode::kIo,
                       "ledger '" + path_ + "': " + std::to_string(queue_.size()) +
                           " writes wait for a failing database (" + last_error_ +
                           "); row of request '" + row.request_id + "' not recorded");
  }
  LedgerWrite w;
  w.id = id != 0 ? id : next_row_id_++;
  w.row = row;
  w.row.state = kSettled;
  queueLocked(std::move(w));
  return {};
}

api::Status SqliteLedger::settle(uint64_t reservation, const LedgerRow& row) {
  std::string problem;
  if (!validRow(row, &problem)) {
    return api::Status(api::ErrorCode::kInternal,
                       "settle of reservation " + std::to_string(reservation) + ": " + problem);
  }
  std::lock_guard<std::mutex> lock(mu_);
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
  int64_t row_id = it->second.row_id;  // a durable reservation's pending row becomes the row
  dropReservationLocked(it);
  return countAndQueueLocked(row, row_id);
}

void SqliteLedger::release(uint64_t reservation) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = reservations_.find(reservation);
  if (it == reservations_.end()) return;
  if (it->second.row_id != 0) {
    LedgerWrite w;
    w.kind = LedgerWrite::Kind::kRemovePending;
    w.id = it->second.row_id;
    // Dropped when the queue is full: the pending row then stays, and a restart bills it.
    queueLocked(std::move(w));
  }
  dropReservationLocked(it);
}

api::Status SqliteLedger::record(const LedgerRow& row) {
  std::string problem;
  if (!validRow(row, &problem)) {
    return api::Status(api::ErrorCode::kInternal,
                       "record of request '" + row.request_id + "': " + problem);
  }
  std::lock_guard<std::mutex> lock(mu_);
  return countAndQueueLocked(row, 0);
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
    for (const LedgerWrite& q : queue_) {
      const LedgerRow& r = q.row;
      if (q.kind == LedgerWrite::Kind::kRow && r.state == kSettled && r.team == team &&
          r.unix_ms >= start && r.unix_ms < end) {
        out.settled_usd += r.cost_usd;
      }
    }
  }
  return out;
}

std::optional<Spend> SqliteLedger::cachedSpent(const std::string& team, Window w, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = state_.find(team);
  if (it == state_.end()) return std::nullopt;
  const TeamState& t = it->second;
  const PeriodSum& p = w == Window::kDay ? t.day : t.month;
  if (!p.loaded || p.start_ms != periodStartMs(w, now_ms)) return std::nullopt;
  return Spend{p.settled_usd, t.reserved_usd};
}

std::vector<std::string> SqliteLedger::teams() {
  std::lock_guard<std::mutex> lock(mu_);
  return {team_names_.begin(), team_names_.end()};
}

LedgerStats SqliteLedger::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  LedgerStats out = stats_;
  out.failed_commits = write_failures_;
  out.available = !failing_ && !writer_done_;
  return out;
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
  std::lock_guard<std::mutex> lock(mu_);
  // Decided here, in memory: this runs on every settle past a threshold, on an I/O thread.
  if (!alerted_.insert(AlertKey{team, period, threshold}).second) return false;
  LedgerWrite w;
  w.kind = LedgerWrite::Kind::kAlert;
  w.row.team = team;
  w.row.unix_ms = now_ms;
  w.period = period;
  w.threshold = threshold;
  queueLocked(std::move(w));  // dropped when full: a restart may alert once more
  return true;
}

// ---- The writer ----

api::Status SqliteLedger::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  int64_t target = next_seq_ - 1;
  uint64_t failures = write_failures_;
  // Written: nothing at or before target queued.
  auto done = [&] { return queue_.empty() || queue_.front().seq > target; };
  if (done()) return {};
  ++flushes_waiting_;  // the writer commits without gathering
  writer_idle_ = false;
  writer_cv_.notify_one();
  progress_cv_.wait(lock, [&] { return done() || write_failures_ != failures || writer_done_; });
  --flushes_waiting_;
  if (done()) return {};
  int64_t left = 0;
  for (const LedgerWrite& w : queue_) left += w.seq <= target ? 1 : 0;
  return api::Status(api::ErrorCode::kIo, "ledger '" + path_ + "': " + std::to_string(left) +
                                              " writes not committed yet: " + last_error_);
}

void SqliteLedger::committedLocked(size_t n) {
  // Published together under mu_: a period sum reads seqs <= last_committed_seq_ from the
  // database and the rest from queue_.
  last_committed_seq_ = queue_[n - 1].seq;
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
  ++stats_.commits;
  failing_ = false;
  journal_->retire(last_committed_seq_);
  progress_cv_.notify_all();
}

void SqliteLedger::failedLocked(const api::Status& error) {
  ++write_failures_;
  failing_ = true;
  last_error_ = error.message();
  logError("ledger: write failed; rows kept and retried", path_, error.message());
  progress_cv_.notify_all();
}

void SqliteLedger::gatherLocked(std::unique_lock<std::mutex>& lock) {
  auto cut_short = [&] {
    return stop_ || flushes_waiting_ > 0 || queue_.size() >= kMaxBatchWrites;
  };
  if (!cut_short()) writer_cv_.wait_for(lock, kGroupWindow, cut_short);
}

std::vector<const LedgerWrite*> SqliteLedger::batchLocked(size_t n) const {
  // Row ids that a later write of the batch settles or removes: their pending rows would be
  // overwritten in the same transaction.
  std::unordered_set<int64_t> replaced;
  std::vector<const LedgerWrite*> batch;
  batch.reserve(n);
  for (size_t i = n; i-- > 0;) {
    const LedgerWrite& w = queue_[i];
    bool pending = w.kind == LedgerWrite::Kind::kRow && w.row.state == kPending;
    if (pending && replaced.count(w.id) > 0) continue;
    if (w.kind != LedgerWrite::Kind::kAlert && !pending) replaced.insert(w.id);
    batch.push_back(&w);
  }
  std::reverse(batch.begin(), batch.end());
  return batch;
}

void SqliteLedger::writerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  int failures_in_a_row = 0;
  while (true) {
    writer_idle_ = queue_.empty() && !failing_ && !stop_;
    writer_cv_.wait(lock, [&] { return stop_ || failing_ || !queue_.empty(); });
    writer_idle_ = false;
    if (failing_ && !stop_) {
      // Back off (50 ms doubling up to 1.6 s) before the next attempt; at shutdown retry at once.
      auto backoff =
          std::chrono::milliseconds(50 << std::min(std::max(failures_in_a_row, 1) - 1, 5));
      writer_cv_.wait_for(lock, backoff, [&] { return stop_; });
    }
    if (queue_.empty()) {
      if (stop_) break;
      if (!failing_) continue;
      // Failing with nothing to retry: probe, so that reserveDurable is accepted again once
      // writes work (the disk has room again, the file is writable again).
      lock.unlock();
      api::Status st = store_->probe();
      lock.lock();
      if (st.ok()) {
        failing_ = false;
        failures_in_a_row = 0;
      } else {
        ++write_failures_;
        ++failures_in_a_row;
        last_error_ = st.message();
      }
      progress_cv_.notify_all();
      continue;
    }
    if (!failing_) gatherLocked(lock);
    size_t n = std::min(queue_.size(), kMaxBatchWrites);
    std::vector<const LedgerWrite*> batch = batchLocked(n);
    lock.unlock();
    api::Status st = store_->writeBatch(batch);
    lock.lock();
    if (st.ok()) {
      committedLocked(n);
      failures_in_a_row = 0;
      continue;
    }
    failedLocked(st);
    if (++failures_in_a_row >= kShutdownWriteAttempts && stop_) {
      // The journal keeps the reservations among them: the next open bills those.
      logError("ledger: closing with rows not written", path_,
               std::to_string(queue_.size()) + " writes lost: " + st.message());
      break;
    }
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

api::Status budgetExhausted(const std::string& team, Window w, double limit, int64_t now_ms,
                            double settled_usd, double reserved_usd, double max_cost_usd) {
  return api::Status(api::ErrorCode::kQuotaExceeded,
                     "The budget of team '" + team + "' is exhausted: its " +
                         (w == Window::kDay ? "daily" : "monthly") + " limit of " + usd(limit) +
                         " for " + periodKey(w, now_ms) + " has " + usd(settled_usd) +
                         " spent and " + usd(reserved_usd) + " reserved; this request may cost " +
                         "up to " + usd(max_cost_usd) + ".",
                     {}, "insufficient_quota");
}

std::string ledgerRowProblem(const LedgerRow& row) {
  if (!std::isfinite(row.cost_usd) || row.cost_usd < 0) {
    return "cost_usd must be finite and >= 0, got " + std::to_string(row.cost_usd);
  }
  if (!std::isfinite(row.latency_ms)) return "latency_ms must be finite";
  if (!std::isfinite(row.compute_ms) || row.compute_ms < 0) {
    return "compute_ms must be finite and >= 0";
  }
  return "";
}

api::StatusOr<std::unique_ptr<Ledger>> openSqliteLedger(const std::string& path) {
  return SqliteLedger::open(path);
}

}  // namespace policies
