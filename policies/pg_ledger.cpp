// The PostgreSQL Ledger (pg_ledger.h): budgets in shared tables, one transaction per call.
//
// Locks are taken in one order everywhere, so that transactions of different replicas never
// wait on each other in a cycle: a request row, then the team's row, then its period rows (day
// before month). A reservation locks the team's row first (an upsert), so that the conditional
// UPDATE after it reads the period sums as they are once every earlier settle of the team has
// committed; a settle, a release and crash recovery change a request row first (only a pending
// or held one: that is what makes each happen once), then the team's totals.
#include "policies/pg_ledger.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "policies/pg_pool.h"

namespace policies {
namespace {

constexpr double kEpsilonUsd = 1e-9;      // as the SQLite ledger: absorbs rounding of sums
constexpr size_t kMaxDeferred = 100'000;  // writes kept for a retry while the database is down
constexpr size_t kMaxBatch = 256;      // queued writes per transaction
constexpr int kMaxAttempts = 3;           // of a transaction that hit a deadlock or lost its link
constexpr int64_t kMsPerDay = 86'400'000;
const char* const kSchemaVersion = "1";
// The database's clock, in ms since the epoch: heartbeats are compared on one clock.
#define SY_DB_NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

const char* const kSchema = R"sql(
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS switchyard.requests(
  id BIGSERIAL PRIMARY KEY,
  request_id TEXT NOT NULL,
  unix_ms BIGINT NOT NULL,
  team TEXT NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  route TEXT NOT NULL,
  kind TEXT NOT NULL,
  prompt_tokens BIGINT NOT NULL,
  cached_prompt_tokens BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  cost_usd DOUBLE PRECISION NOT NULL,
  latency_ms DOUBLE PRECISION NOT NULL,
  status INTEGER NOT NULL,
  decision TEXT NOT NULL DEFAULT '',
  compute_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'settled',  -- held | pending | settled | crashed
  replica TEXT NOT NULL DEFAULT '');      -- who holds a held or pending row
CREATE INDEX IF NOT EXISTS requests_team_time ON switchyard.requests(team, unix_ms);
CREATE INDEX IF NOT EXISTS requests_open ON switchyard.requests(replica)
  WHERE state IN ('held', 'pending');
CREATE TABLE IF NOT EXISTS switchyard.budget_teams(
  team TEXT PRIMARY KEY,
  reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,  -- open reservations, every replica's
  open_reservations BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS switchyard.budget_periods(
  team TEXT NOT NULL,
  period TEXT NOT NULL,                           -- "2026-11-23" or "2026-11"
  spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,  -- final rows (settled, crashed) in it
  PRIMARY KEY(team, period));
CREATE TABLE IF NOT EXISTS switchyard.alerts(
  team TEXT NOT NULL,
  period TEXT NOT NULL,
  threshold DOUBLE PRECISION NOT NULL,
  unix_ms BIGINT NOT NULL,
  PRIMARY KEY(team, period, threshold));
CREATE TABLE IF NOT EXISTS switchyard.replicas(
  id TEXT PRIMARY KEY,
  heartbeat_ms BIGINT NOT NULL,  -- the database's clock
  started_ms BIGINT NOT NULL);
)sql";

std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

void logLine(const char* level, const std::string& msg, const std::string& url,
             const std::string& extra = "") {
  std::fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"%s\",\"url\":\"%s\"%s}\n", level,
               jsonEscape(msg).c_str(), jsonEscape(url).c_str(), extra.c_str());
}

std::string defaultReplicaId() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "host");
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rd() & 0xffff));
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + suffix;
}

// A write kept while the database cannot take it.
struct Deferred {
  enum class Kind { kSettle, kRelease, kRecord } kind = Kind::kRecord;
  int64_t id = 0;  // the reservation's row (kSettle, kRelease)
  std::string team;
  double reserved_usd = 0;
  LedgerRow row;
};

// Gives `count` reservations worth `usd` back to the team's reserved total (never below 0).
void giveBackReserved(pqxx::transaction_base& tx, const std::string& team, double usd,
                      int64_t count) {
  tx.exec_params(
      "UPDATE switchyard.budget_teams SET reserved_usd = CASE WHEN open_reservations <= $3 "
      "THEN 0 ELSE reserved_usd - $2 END, open_reservations = GREATEST(open_reservations - "
      "$3, 0) WHERE team = $1",
      team, usd, count);
}

// Adds `usd` to the team's spend in `period` (a day or month key).
void addPeriodSpend(pqxx::transaction_base& tx, const std::string& team, const std::string& period,
                    double usd) {
  tx.exec_params(
      "INSERT INTO switchyard.budget_periods(team, period, spent_usd) VALUES ($1, $2, $3) "
      "ON CONFLICT (team, period) DO UPDATE SET spent_usd = budget_periods.spent_usd + "
      "EXCLUDED.spent_usd",
      team, period, usd);
}

class PgLedger final : public Ledger {
 public:
  PgLedger(const std::string& url, const PostgresLedgerOptions& o)
      : masked_(maskPostgresUrl(url)),
        password_(pgPasswordOf(url)),
        options_(o),
        replica_(o.replica_id.empty() ? defaultReplicaId() : o.replica_id),
        pool_(pgConnInfo(url, o.connect_timeout), o.pool_size, o.statement_timeout) {}
  ~PgLedger() override;
  api::Status init();

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
  int liveReplicas() override { return live_replicas_.load(std::memory_order_relaxed); }

 private:
  using Body = std::function<api::Status(pqxx::transaction_base&)>;
  // A transaction of several statements (BEGIN ... COMMIT), or one statement on its own
  // (atomic by itself, one round trip instead of three).
  enum class Mode { kTransaction, kOneStatement };
  struct Reservation {
    std::string team;
    double amount_usd = 0;
  };
  struct Cached {
    int64_t start_ms = 0;
    Spend spend;
    std::chrono::steady_clock::time_point read_at;  // when read from the database
  };

  // Runs `body` in one transaction on a pooled connection; commits when it returns ok. A lost
  // link or a deadlock is retried on a fresh attempt. A database that cannot be reached marks
  // the ledger unavailable: kUnavailable "ledger '<masked url>': <what>: <error>"; an SQL error
  // is kIo.
  api::Status transact(const std::string& what, const Body& body, Mode mode = Mode::kTransaction);
  api::Status failure(api::ErrorCode code, const std::string& what, const std::string& error);
  void markDown(const std::string& error);
  api::StatusOr<uint64_t> reserveRow(const ReservationRequest& r, const char* state);
  struct Queued;
  api::Status reserveTx(const ReservationRequest& q, const char* state, const Queued& qd,
                        Spend* d, Spend* m, int64_t* id);
  // Writes a batch of queued writes in one transaction.
  api::Status apply(const std::vector<Deferred>& batch);
  // Counts `d` in the cached totals at once and queues it for the writer thread (kIo when too
  // many are queued already: its money still counts in memory).
  api::Status defer(Deferred d);
  // Applies the queued writes in order; false when one failed (it and the rest stay).
  bool drainDeferred();
  // The writer thread: applies queued writes as they come while the database is reachable.
  void writer();
  // Under mu_: what the queued writes of `team` add to the database's values of the period of
  // `w` containing now_ms, and `d`'s effect on the cached totals.
  Spend withQueued(const std::string& team, Window w, int64_t now_ms, Spend s) const;
  void countInCache(const Deferred& d);
  // This replica's writes of a team still queued, as a reservation counts them on top of the
  // database's sums: rows without reservation by their cost in the day and the month of the
  // reservation (`record_*`; one that commits meanwhile counts twice, never less, and a refusal
  // then is decided again: reserveRow), and settles
  // and releases as SQL arrays (ids, reserved amounts given back, costs in the day and the
  // month) that queuedCte() sums over the ones whose row is still held or pending (not
  // written yet: a write of the team commits before the reservation locks the team's row or
  // waits for it), so that a settle's refund counts at once and nothing counts twice.
  struct Queued {
    double record_day = 0, record_month = 0;
    std::string ids = "{", back = "{", day = "{", month = "{";
  };
  Queued queuedOf(const std::string& team, int64_t now_ms) const;  // under mu_
  // "WITH q AS (...)": the sums (back, sd, sm) of a Queued's arrays passed as the parameters
  // $first .. $first+3.
  static std::string queuedCte(int first);
  // The settled spend of team $1 in `period` (a parameter such as "$3").
  static std::string spentOf(const char* period);
  // Bills pending rows of dead replicas (and of this replica id when `own`) as crashed and
  // gives back their held rows' reservations.
  api::Status recover(bool own);
  api::Status heartbeat();
  void background();
  // Reads again the spend of every team and window cachedSpent() may answer (what other
  // replicas spent), so that it stays fresh.
  void refreshCache();
  // Under mu_: `team`'s write count (writes_seq_).
  uint64_t seqOf(const std::string& team) const;
  // Under mu_: caches and returns the database's values `db` of the period of `w` containing
  // now_ms with the team's queued writes counted, when they were read while its write count
  // stayed `seq` (even); else nullopt (a write was applied meanwhile: `db` may or may not
  // include it).
  std::optional<Spend> remember(const std::string& team, Window w, int64_t now_ms, Spend db,
                                uint64_t seq);

  const std::string masked_, password_;
  const PostgresLedgerOptions options_;
  const std::string replica_;
  PgPool pool_;

  std::mutex mu_;
  std::condition_variable cv_;  // the background thread's sleep
  std::unordered_map<uint64_t, Reservation> reservations_;
  std::map<std::pair<std::string, Window>, Cached> cache_;
  std::deque<Deferred> deferred_;  // queued writes, oldest first
  std::condition_variable work_cv_;  // the writer's sleep
  // Per team, under mu_: odd while one of its writes is being applied, +1 before and after.
  // A read of the database counts the queued writes on top of what it read only when the
  // count was even and unchanged around it (else it may have seen a write that is still
  // queued, or missed one that left the queue).
  std::map<std::string, uint64_t> writes_seq_;
  std::condition_variable seq_cv_;  // a team's write applied
  std::mutex drain_mu_;  // one drainer at a time, so that queued writes stay in order
  LedgerStats stats_;    // under mu_ (but `available`, which is available_)
  std::string last_error_;
  std::atomic<bool> available_{true};
  std::atomic<int> live_replicas_{1};  // counted by each heartbeat
  bool stop_ = false;
  std::thread thread_, writer_;
};

// ---- Transactions ----

api::Status PgLedger::failure(api::ErrorCode code, const std::string& what,
                              const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.failed_commits;
  }
  std::string msg = "ledger '" + masked_ + "': " + what + ": " + pgWithoutSecret(error, password_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return api::Status(code, msg);
}

void PgLedger::markDown(const std::string& error) {
  bool was = available_.exchange(false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = error;
  }
  if (was)
    logLine("error", "ledger: database unreachable; cloud calls refused until it is back", masked_,
            ",\"error\":\"" + jsonEscape(error) + "\"");
  cv_.notify_all();
}

api::Status PgLedger::transact(const std::string& what, const Body& body, Mode mode) {
  for (int attempt = 1;; ++attempt) {
    bool reused = false;
    std::unique_ptr<pqxx::connection> c;
    // Back to the pool, or dropped (`keep` false); nothing when take() failed (it freed the slot).
    auto putBack = [&](bool keep) {
      if (c) pool_.give(keep ? std::move(c) : nullptr);
    };
    try {
      c = pool_.take(&reused);
      api::Status st;
      if (mode == Mode::kOneStatement) {
        pqxx::nontransaction tx(*c);
        st = body(tx);
      } else {
        pqxx::work tx(*c);
        st = body(tx);
        if (st.ok()) tx.commit();
      }
      putBack(true);
      if (!available_.exchange(true)) logLine("info", "ledger: database reachable again", masked_);
      if (st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.commits;
      }
      return st;
    } catch (const pqxx::broken_connection& e) {
      if (c) pool_.dropIdle();  // a restarted server broke the idle ones too
      putBack(false);
      if (reused && attempt < kMaxAttempts) continue;  // try a new link
      api::Status st = failure(api::ErrorCode::kUnavailable, what, e.what());
      markDown(st.message());
      return st;
    } catch (const pqxx::in_doubt_error& e) {
      // The link broke during COMMIT: whether it committed is unknown (a reservation that did
      // is billed when this replica's rows are recovered).
      putBack(false);
      api::Status st = failure(api::ErrorCode::kUnavailable, what, e.what());
      markDown(st.message());
      return st;
    } catch (const pqxx::statement_completion_unknown& e) {
      putBack(false);
      return failure(api::ErrorCode::kUnavailable, what, e.what());
    } catch (const pqxx::transaction_rollback& e) {
      // A deadlock (40P01) or a serialization failure: nothing was done; try again.
      putBack(true);
      if (attempt < kMaxAttempts) continue;
      return failure(api::ErrorCode::kUnavailable, what, e.what());
    } catch (const pqxx::sql_error& e) {
      putBack(true);
      const std::string& state = e.sqlstate();
      // 57014: the statement timeout; 08xxx, 57Pxx: the link or the server went away.
      bool down = state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0;
      api::Status st =
          failure(down || state == "57014" ? api::ErrorCode::kUnavailable : api::ErrorCode::kIo,
                  what, e.what());
      if (down) markDown(st.message());
      return st;
    } catch (const std::exception& e) {
      putBack(true);  // a value that did not convert: the link is fine
      return failure(api::ErrorCode::kIo, what, e.what());
    }
  }
}

// ---- Opening ----

api::Status PgLedger::init() {
  api::Status st = transact("creating the schema", [](pqxx::transaction_base& tx) {
    // Replicas starting together: one creates, the others then find it.
    tx.exec("SET LOCAL synchronous_commit = on");
    tx.exec("SELECT pg_advisory_xact_lock(7365792796172)");
    tx.exec(kSchema);
    tx.exec_params(
        "INSERT INTO switchyard.meta(key, value) VALUES ('schema_version', $1) "
        "ON CONFLICT (key) DO NOTHING",
        std::string(kSchemaVersion));
    return api::Status();
  });
  if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  std::string version;
  st = transact("reading the schema version", [&](pqxx::transaction_base& tx) {
    auto r = tx.exec("SELECT value FROM switchyard.meta WHERE key = 'schema_version'");
    if (!r.empty()) version = r[0][0].as<std::string>();
    return api::Status();
  });
  if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  if (version != kSchemaVersion) {
    return api::Status(api::ErrorCode::kConfig, "ledger '" + masked_ + "': schema version '" +
                                                    version + "', this build knows '" +
                                                    kSchemaVersion + "'");
  }
  if (st = heartbeat(); !st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  if (st = recover(true); !st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  thread_ = std::thread([this] { background(); });
  writer_ = std::thread([this] { writer(); });
  return {};
}

PgLedger::~PgLedger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (writer_.joinable()) writer_.join();
  // In-memory reservations end with the process; durable ones stay pending, and with this
  // replica's heartbeat gone the survivors (or a restart under this id) bill them.
  std::vector<uint64_t> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, r] : reservations_) open.push_back(id);
  }
  if (!available_ || !drainDeferred()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!deferred_.empty()) {
      // Their reservations stay pending in the database: recovery bills them at their
      // reserved amount. Rows without a reservation (local answers) are lost.
      logLine("error",
              "ledger: closing with " + std::to_string(deferred_.size()) +
                  " writes the database did not take: " + last_error_,
              masked_);
    }
    return;
  }
  (void)transact("closing", [&](pqxx::transaction_base& tx) {
    for (uint64_t id : open) {
      auto r = tx.exec_params(
          "DELETE FROM switchyard.requests WHERE id = $1 AND state = 'held' RETURNING team, "
          "cost_usd",
          static_cast<int64_t>(id));
      if (r.empty()) continue;
      giveBackReserved(tx, r[0][0].as<std::string>(), r[0][1].as<double>(), 1);
    }
    tx.exec_params("DELETE FROM switchyard.replicas WHERE id = $1", replica_);
    return api::Status();
  });
}

api::Status PgLedger::heartbeat() {
  return transact(
      "heartbeat",
      [&](pqxx::transaction_base& tx) {
        // The beat, and the count of the other replicas whose heartbeat is not stale (the
        // statement's snapshot does not see its own upsert), in one round trip.
        auto r = tx.exec_params(
            "WITH beat AS (INSERT INTO switchyard.replicas(id, heartbeat_ms, started_ms) VALUES "
            "($1, " SY_DB_NOW_MS ", " SY_DB_NOW_MS
            ") ON CONFLICT (id) DO UPDATE SET heartbeat_ms = EXCLUDED.heartbeat_ms) "
            "SELECT count(*) FROM switchyard.replicas WHERE id <> $1 AND heartbeat_ms "
            ">= " SY_DB_NOW_MS " - $2",
            replica_, static_cast<int64_t>(options_.stale_after.count()));
        const int64_t others = r.empty() ? 0 : r[0][0].as<int64_t>();
        live_replicas_.store(static_cast<int>(std::clamp<int64_t>(others + 1, 1, 1'000'000)),
                             std::memory_order_relaxed);
        return api::Status();
      },
      Mode::kOneStatement);
}

api::Status PgLedger::recover(bool own) {
  int64_t crashed = 0;
  double crashed_usd = 0;
  api::Status st = transact("billing reservations left by a crash", [&](pqxx::transaction_base&
                                                                            tx) {
    crashed = 0;
    crashed_usd = 0;
    const std::string dead =
        " WHERE state = $4 AND ((replica = $1 AND $2) OR (replica <> $1 AND NOT EXISTS (SELECT 1 "
        "FROM switchyard.replicas r WHERE r.id = q.replica AND r.heartbeat_ms >= " SY_DB_NOW_MS
        " - $3)))";
    const int64_t stale = options_.stale_after.count();
    // One statement each: a row another replica moved first no longer matches.
    auto billed = tx.exec_params("UPDATE switchyard.requests q SET state = 'crashed'" + dead +
                                     " RETURNING team, cost_usd, unix_ms",
                                 replica_, own, stale, std::string("pending"));
    auto dropped =
        tx.exec_params("DELETE FROM switchyard.requests q" + dead + " RETURNING team, cost_usd",
                       replica_, own, stale, std::string("held"));
    struct Back {
      double usd = 0;
      int64_t n = 0;
    };
    std::map<std::string, Back> teams;                            // sorted: one lock order
    std::map<std::pair<std::string, std::string>, double> spend;  // (team, period)
    for (const auto& row : billed) {
      std::string team = row[0].as<std::string>();
      double usd = row[1].as<double>();
      int64_t t = row[2].as<int64_t>();
      teams[team].usd += usd;
      ++teams[team].n;
      spend[{team, periodKey(Window::kDay, t)}] += usd;
      spend[{team, periodKey(Window::kMonth, t)}] += usd;
      ++crashed;
      crashed_usd += usd;
    }
    for (const auto& row : dropped) {
      Back& b = teams[row[0].as<std::string>()];
      b.usd += row[1].as<double>();
      ++b.n;
    }
    for (const auto& [team, b] : teams) giveBackReserved(tx, team, b.usd, b.n);
    for (const auto& [key, usd] : spend) addPeriodSpend(tx, key.first, key.second, usd);
    tx.exec_params("DELETE FROM switchyard.replicas WHERE heartbeat_ms < " SY_DB_NOW_MS " - $1",
                   std::max<int64_t>(stale, kMsPerDay));
    return api::Status();
  });
  if (st.ok() && crashed > 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.crashed_reservations += static_cast<uint64_t>(crashed);
      stats_.crashed_usd += crashed_usd;
    }
    char extra[96];
    std::snprintf(extra, sizeof extra, ",\"reservations\":%lld,\"usd\":%.6f",
                  static_cast<long long>(crashed), crashed_usd);
    logLine("warn",
            "ledger: reservations left by a crashed replica settled at their reserved "
            "amount",
            masked_, extra);
  }
  return st;
}

void PgLedger::background() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // While down or holding writes: probe often; else beat at the configured pace.
    bool hurry = !available_ || !deferred_.empty();
    auto pause = hurry ? std::min<std::chrono::milliseconds>(options_.heartbeat_interval,
                                                             std::chrono::milliseconds(250))
                       : options_.heartbeat_interval;
    cv_.wait_for(lock, pause, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    if (heartbeat().ok()) {
      drainDeferred();
      (void)recover(false);
      refreshCache();
    }
    lock.lock();
  }
}

// ---- Budgets ----

uint64_t PgLedger::seqOf(const std::string& team) const {
  auto it = writes_seq_.find(team);
  return it == writes_seq_.end() ? 0 : it->second;
}

std::optional<Spend> PgLedger::remember(const std::string& team, Window w, int64_t now_ms,
                                        Spend db, uint64_t seq) {
  if (seq % 2 != 0 || seqOf(team) != seq) return std::nullopt;
  Spend s = withQueued(team, w, now_ms, db);
  cache_[{team, w}] = Cached{periodStartMs(w, now_ms), s, std::chrono::steady_clock::now()};
  return s;
}

// One reservation transaction over the database's sums plus `qd` (reserveRow): kQuotaExceeded
// naming the limit when it does not fit.
api::Status PgLedger::reserveTx(const ReservationRequest& q, const char* state, const Queued& qd,
                                Spend* d, Spend* m, int64_t* id) {
  const std::string day = periodKey(Window::kDay, q.now_ms);
  const std::string month = periodKey(Window::kMonth, q.now_ms);
  // A NaN limit refuses (PostgreSQL orders NaN above every number, so it is decided here).
  auto limitOf = [](const std::optional<double>& l) { return l ? *l : INFINITY; };
  const double daily = limitOf(q.limits.daily_usd), monthly = limitOf(q.limits.monthly_usd);
  const bool nan_limit = std::isnan(daily) || std::isnan(monthly);
  return transact("reserving", [&](pqxx::transaction_base& tx) -> api::Status {
    // Durable means on the server's disk: a reservation lost to a crash of the database
    // would leave a call unbilled.
    tx.exec("SET LOCAL synchronous_commit = on");
    tx.exec_params(
        "INSERT INTO switchyard.budget_teams(team) VALUES ($1) ON CONFLICT (team) DO UPDATE "
        "SET team = EXCLUDED.team",
        q.team);  // locks the team's row until the commit
    const std::string spent_day = spentOf("$3") + " + $9::float8 + q.sd",
                      spent_month = spentOf("$4") + " + $10::float8 + q.sm",
                      reserved = "GREATEST(t.reserved_usd - q.back, 0)";
    auto r = tx.exec_params(
        queuedCte(11) +
            "UPDATE switchyard.budget_teams t SET reserved_usd = t.reserved_usd + $2, "
            "open_reservations = t.open_reservations + 1 FROM q WHERE t.team = $1 AND NOT $7 "
            "AND " +
            spent_day + " + " + reserved + " + $2 <= $5::float8 + $8 AND " + spent_month + " + " +
            reserved + " + $2 <= $6::float8 + $8 RETURNING t.reserved_usd, " + spentOf("$3") +
            ", " + spentOf("$4"),
        q.team, q.max_cost_usd, day, month, daily, monthly, nan_limit, kEpsilonUsd, qd.record_day,
        qd.record_month, qd.ids, qd.back, qd.day, qd.month);
    if (r.empty()) {
      // Refused: say why with the amounts as they are (the team's row is locked).
      auto now = tx.exec_params(queuedCte(6) + "SELECT " + reserved + ", " + spentOf("$2") +
                                    " + $4::float8 + q.sd, " + spentOf("$3") +
                                    " + $5::float8 + q.sm FROM switchyard.budget_teams t, q "
                                    "WHERE t.team = $1",
                                q.team, day, month, qd.record_day, qd.record_month, qd.ids,
                                qd.back, qd.day, qd.month);
      double reserved_usd = now[0][0].as<double>();
      double s_day = now[0][1].as<double>(), s_month = now[0][2].as<double>();
      bool day_ok =
          !std::isnan(daily) && s_day + reserved_usd + q.max_cost_usd <= daily + kEpsilonUsd;
      Window w = day_ok ? Window::kMonth : Window::kDay;
      return budgetExhausted(q.team, w, day_ok ? monthly : daily, q.now_ms,
                             day_ok ? s_month : s_day, reserved_usd, q.max_cost_usd);
    }
    *d = Spend{r[0][1].as<double>(), r[0][0].as<double>()};
    *m = Spend{r[0][2].as<double>(), r[0][0].as<double>()};
    auto row = tx.exec_params(
        "INSERT INTO switchyard.requests(request_id, unix_ms, team, key_id, model, route, kind, "
        "prompt_tokens, cached_prompt_tokens, completion_tokens, cost_usd, latency_ms, status, "
        "decision, compute_ms, state, replica) VALUES ($1, $2, $3, $4, $5, '', 'cloud', 0, 0, 0, "
        "$6, 0, 0, $7, 0, $8, $9) RETURNING id",
        q.request_id, q.now_ms, q.team, q.key_id, q.model, q.max_cost_usd, q.decision,
        std::string(state), replica_);
    *id = row[0][0].as<int64_t>();
    return api::Status();
  });
}

api::StatusOr<uint64_t> PgLedger::reserveRow(const ReservationRequest& q, const char* state) {
  if (!std::isfinite(q.max_cost_usd) || q.max_cost_usd < 0) {
    return api::Status(api::ErrorCode::kInternal, "reservation of an invalid amount " +
                                                      std::to_string(q.max_cost_usd) +
                                                      " for team '" + q.team + "'");
  }
  int64_t id = 0;
  Spend d, m;
  uint64_t seq;
  api::Status st;
  for (int attempt = 1;; ++attempt) {
    Queued qd;  // this replica's writes still queued for the team, counted on top
    {
      // A write of the team being applied: wait for it (one round trip), so that it is either
      // committed or still queued when the reservation reads.
      std::unique_lock<std::mutex> lock(mu_);
      seq_cv_.wait_for(lock, options_.statement_timeout, [&] { return seqOf(q.team) % 2 == 0; });
      seq = seqOf(q.team);
      qd = queuedOf(q.team, q.now_ms);
    }
    st = reserveTx(q, state, qd, &d, &m, &id);
    if (st.code() != api::ErrorCode::kQuotaExceeded || attempt == kMaxAttempts) break;
    // Refused while a queued row of the team committed (or with a write still being applied
    // when the wait gave up): that row may have counted twice (in the database and as queued),
    // so the refusal may be wrong; decide again.
    std::lock_guard<std::mutex> lock(mu_);
    if (seq % 2 == 0 && seqOf(q.team) == seq) break;
  }
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto [w, db] : {std::pair{Window::kDay, d}, std::pair{Window::kMonth, m}}) {
    if (remember(q.team, w, q.now_ms, db, seq)) continue;
    // A write of the team was applied meanwhile: count the reservation in what is known.
    auto it = cache_.find({q.team, w});
    if (it != cache_.end() && it->second.start_ms == periodStartMs(w, q.now_ms))
      it->second.spend.reserved_usd += q.max_cost_usd;
  }
  reservations_[static_cast<uint64_t>(id)] = Reservation{q.team, q.max_cost_usd};
  return static_cast<uint64_t>(id);
}

api::StatusOr<uint64_t> PgLedger::reserveDurable(const ReservationRequest& request,
                                                 DurableCallback on_durable) {
  if (!available_) {
    std::lock_guard<std::mutex> lock(mu_);
    return api::Status(api::ErrorCode::kUnavailable, "ledger unavailable: " + last_error_);
  }
  auto id = reserveRow(request, "pending");
  if (!id.ok()) {
    const api::Status& s = id.status();
    if (s.code() == api::ErrorCode::kUnavailable || s.code() == api::ErrorCode::kIo) {
      return api::Status(api::ErrorCode::kUnavailable, "ledger unavailable: " + s.message());
    }
    return id;
  }
  // Committed: the pending row is durable.
  if (on_durable) on_durable(api::Status());
  return id;
}

api::StatusOr<uint64_t> PgLedger::reserve(const std::string& team, double max_cost_usd,
                                          const BudgetLimits& limits, int64_t now_ms) {
  if (!available_) {
    std::lock_guard<std::mutex> lock(mu_);
    return api::Status(api::ErrorCode::kIo, "ledger unavailable: " + last_error_);
  }
  ReservationRequest q;
  q.team = team;
  q.max_cost_usd = max_cost_usd;
  q.limits = limits;
  q.now_ms = now_ms;
  return reserveRow(q, "held");
}

api::Status PgLedger::apply(const std::vector<Deferred>& batch) {
  return transact("writing rows", [&](pqxx::transaction_base& tx) {
    // The request rows first, then each team's totals and period sums once for the batch:
    // one lock of a team's row for all its settles (sorted: one lock order).
    std::map<std::string, std::pair<double, int64_t>> back;       // team: given back, count
    std::map<std::pair<std::string, std::string>, double> spend;  // (team, period): cost
    for (const Deferred& d : batch) {
      const LedgerRow& r = d.row;
      bool counts = true;  // a settle of a row a crash recovery billed already counts no more
      if (d.kind == Deferred::Kind::kRecord) {
        tx.exec_params(
            "INSERT INTO switchyard.requests(request_id, unix_ms, team, key_id, model, route, "
            "kind, prompt_tokens, cached_prompt_tokens, completion_tokens, cost_usd, latency_ms, "
            "status, decision, compute_ms, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "$10, $11, $12, $13, $14, $15, 'settled')",
            r.request_id, r.unix_ms, r.team, r.key_id, r.model, r.route, r.kind, r.prompt_tokens,
            r.cached_prompt_tokens, r.completion_tokens, r.cost_usd, r.latency_ms, r.status,
            r.decision, r.compute_ms);
      } else {
        auto moved =
            d.kind == Deferred::Kind::kRelease
                ? tx.exec_params(
                      "DELETE FROM switchyard.requests WHERE id = $1 AND state IN "
                      "('held', 'pending') RETURNING id",
                      d.id)
                : tx.exec_params(
                      "UPDATE switchyard.requests SET request_id = $2, unix_ms = $3, key_id = $4, "
                      "model = $5, route = $6, kind = $7, prompt_tokens = $8, "
                      "cached_prompt_tokens = $9, completion_tokens = $10, cost_usd = $11, "
                      "latency_ms = $12, status = $13, decision = $14, compute_ms = $15, state = "
                      "'settled', replica = '' WHERE id = $1 AND state IN ('held', 'pending') "
                      "RETURNING id",
                      d.id, r.request_id, r.unix_ms, r.key_id, r.model, r.route, r.kind,
                      r.prompt_tokens, r.cached_prompt_tokens, r.completion_tokens, r.cost_usd,
                      r.latency_ms, r.status, r.decision, r.compute_ms);
        counts = !moved.empty();
        if (counts) {
          back[d.team].first += d.reserved_usd;
          ++back[d.team].second;
        }
      }
      if (d.kind != Deferred::Kind::kRelease && counts && r.cost_usd > 0) {
        spend[{r.team, periodKey(Window::kDay, r.unix_ms)}] += r.cost_usd;
        spend[{r.team, periodKey(Window::kMonth, r.unix_ms)}] += r.cost_usd;
      }
    }
    for (const auto& [team, b] : back) giveBackReserved(tx, team, b.first, b.second);
    for (const auto& [key, usd] : spend) addPeriodSpend(tx, key.first, key.second, usd);
    return api::Status();
  });
}

api::Status PgLedger::defer(Deferred d) {
  std::lock_guard<std::mutex> lock(mu_);
  countInCache(d);
  if (deferred_.size() >= kMaxDeferred) {
    ++stats_.dropped_writes;
    return api::Status(api::ErrorCode::kIo,
                       "ledger '" + masked_ + "': " + std::to_string(deferred_.size()) +
                           " writes wait for the database (" + last_error_ + "); row of request '" +
                           d.row.request_id + "' not recorded");
  }
  deferred_.push_back(std::move(d));
  work_cv_.notify_one();
  return {};
}

bool PgLedger::drainDeferred() {
  std::lock_guard<std::mutex> drain(drain_mu_);
  size_t most = kMaxBatch;  // 1 while looking for a write that fails alone
  while (true) {
    std::vector<Deferred> batch;
    std::set<std::string> teams;
    auto count = [&] {
      for (const std::string& team : teams) ++writes_seq_[team];
    };
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (deferred_.empty()) return true;
      for (size_t i = 0; i < deferred_.size() && i < most; ++i) {
        batch.push_back(deferred_[i]);
        teams.insert(deferred_[i].team);
      }
      count();  // odd: being applied
    }
    api::Status st = apply(batch);
    const bool kept = !st.ok() && st.code() == api::ErrorCode::kUnavailable;
    const bool retry_alone = !st.ok() && !kept && batch.size() > 1;
    // Written, or refused by the database for good (logged; retrying cannot help).
    if (!st.ok() && !kept && !retry_alone)
      logLine("error", "ledger: a queued write failed: " + st.message(), masked_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      count();
      if (!kept && !retry_alone) deferred_.erase(deferred_.begin(), deferred_.begin() + batch.size());
    }
    seq_cv_.notify_all();
    if (kept) return false;
    most = retry_alone ? 1 : (st.ok() ? most : kMaxBatch);
  }
}

void PgLedger::writer() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // While the database is down the background thread's probe drains the queue once it is
    // back; the timeout only bounds how late a missed wake-up is noticed.
    work_cv_.wait_for(lock, std::chrono::milliseconds(250),
                      [&] { return stop_ || (available_ && !deferred_.empty()); });
    if (stop_) break;
    if (!available_ || deferred_.empty()) continue;
    lock.unlock();
    drainDeferred();
    lock.lock();
  }
}

Spend PgLedger::withQueued(const std::string& team, Window w, int64_t now_ms, Spend s) const {
  const int64_t start = periodStartMs(w, now_ms);
  for (const Deferred& d : deferred_) {
    if (d.team != team) continue;
    if (d.kind != Deferred::Kind::kRecord) s.reserved_usd -= d.reserved_usd;
    if (d.kind != Deferred::Kind::kRelease && periodStartMs(w, d.row.unix_ms) == start)
      s.settled_usd += d.row.cost_usd;
  }
  if (s.reserved_usd < kEpsilonUsd) s.reserved_usd = 0;  // rounding of what was given back
  return s;
}

PgLedger::Queued PgLedger::queuedOf(const std::string& team, int64_t now_ms) const {
  const int64_t day = periodStartMs(Window::kDay, now_ms);
  const int64_t month = periodStartMs(Window::kMonth, now_ms);
  Queued out;
  auto add = [](std::string& list, const std::string& value) {
    list += (list.size() > 1 ? "," : "") + value;
  };
  auto num = [](double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  for (const Deferred& d : deferred_) {
    if (d.team != team) continue;
    const bool costs = d.kind != Deferred::Kind::kRelease;
    const double in_day = costs && periodStartMs(Window::kDay, d.row.unix_ms) == day
                              ? d.row.cost_usd : 0;
    const double in_month = costs && periodStartMs(Window::kMonth, d.row.unix_ms) == month
                                ? d.row.cost_usd : 0;
    if (d.kind == Deferred::Kind::kRecord) {
      out.record_day += in_day;
      out.record_month += in_month;
      continue;
    }
    add(out.ids, std::to_string(d.id));
    add(out.back, num(d.reserved_usd));
    add(out.day, num(in_day));
    add(out.month, num(in_month));
  }
  for (std::string* list : {&out.ids, &out.back, &out.day, &out.month}) *list += "}";
  return out;
}

std::string PgLedger::queuedCte(int first) {
  auto p = [&](int k, const char* type) { return "$" + std::to_string(first + k) + type; };
  return "WITH q AS (SELECT COALESCE(SUM(u.back), 0) AS back, COALESCE(SUM(u.sd), 0) AS sd, "
         "COALESCE(SUM(u.sm), 0) AS sm FROM unnest(" +
         p(0, "::bigint[]") + ", " + p(1, "::float8[]") + ", " + p(2, "::float8[]") + ", " +
         p(3, "::float8[]") +
         ") AS u(id, back, sd, sm) WHERE EXISTS (SELECT 1 FROM switchyard.requests r WHERE "
         "r.id = u.id AND r.state IN ('held', 'pending'))) ";
}

std::string PgLedger::spentOf(const char* period) {
  return std::string(
             "COALESCE((SELECT spent_usd FROM switchyard.budget_periods WHERE team = $1 AND "
             "period = ") +
         period + "), 0)";
}

void PgLedger::countInCache(const Deferred& d) {
  for (Window w : {Window::kDay, Window::kMonth}) {
    auto it = cache_.find({d.team, w});
    if (it == cache_.end()) continue;
    Spend& s = it->second.spend;
    if (d.kind != Deferred::Kind::kRecord) s.reserved_usd -= d.reserved_usd;
    if (s.reserved_usd < kEpsilonUsd) s.reserved_usd = 0;
    if (d.kind != Deferred::Kind::kRelease && periodStartMs(w, d.row.unix_ms) == it->second.start_ms)
      s.settled_usd += d.row.cost_usd;
  }
}

api::Status PgLedger::settle(uint64_t reservation, const LedgerRow& row) {
  std::string problem = ledgerRowProblem(row);
  if (!problem.empty()) {
    return api::Status(api::ErrorCode::kInternal,
                       "settle of reservation " + std::to_string(reservation) + ": " + problem);
  }
  Deferred d;
  {
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
    d.reserved_usd = it->second.amount_usd;
    reservations_.erase(it);
  }
  d.kind = Deferred::Kind::kSettle;
  d.id = static_cast<int64_t>(reservation);
  d.team = row.team;
  d.row = row;
  return defer(std::move(d));
}

void PgLedger::release(uint64_t reservation) {
  Deferred d;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reservations_.find(reservation);
    if (it == reservations_.end()) return;
    d.team = it->second.team;
    d.reserved_usd = it->second.amount_usd;
    reservations_.erase(it);
  }
  d.kind = Deferred::Kind::kRelease;
  d.id = static_cast<int64_t>(reservation);
  (void)defer(std::move(d));  // dropped when too many wait: a crash recovery gives it back
}

api::Status PgLedger::record(const LedgerRow& row) {
  std::string problem = ledgerRowProblem(row);
  if (!problem.empty()) {
    return api::Status(api::ErrorCode::kInternal,
                       "record of request '" + row.request_id + "': " + problem);
  }
  Deferred d;
  d.kind = Deferred::Kind::kRecord;
  d.team = row.team;
  d.row = row;
  return defer(std::move(d));
}

Spend PgLedger::spent(const std::string& team, Window w, int64_t now_ms) {
  api::Status st;
  std::optional<Spend> read;
  for (int attempt = 0; available_ && attempt < kMaxAttempts; ++attempt) {
    uint64_t seq;
    {
      // A write of the team being applied: wait for it (one round trip), so that the read
      // either sees it committed or finds it still queued.
      std::unique_lock<std::mutex> lock(mu_);
      seq_cv_.wait_for(lock, options_.statement_timeout, [&] { return seqOf(team) % 2 == 0; });
      seq = seqOf(team);
    }
    st = transact(
        "reading spend",
        [&](pqxx::transaction_base& tx) {
          auto r = tx.exec_params(
              "SELECT COALESCE((SELECT spent_usd FROM switchyard.budget_periods WHERE team = $1 "
              "AND period = $2), 0), COALESCE((SELECT reserved_usd FROM switchyard.budget_teams "
              "WHERE team = $1), 0)",
              team, periodKey(w, now_ms));
          read = Spend{r[0][0].as<double>(), r[0][1].as<double>()};
          return api::Status();
        },
        Mode::kOneStatement);
    if (!st.ok()) break;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto s = remember(team, w, now_ms, *read, seq)) return *s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (st.ok() && read) return withQueued(team, w, now_ms, *read);  // writes kept coming
  // No status to return: the last values known, and why.
  logLine("error", "ledger: cannot read spend; answering the last values known", masked_,
          st.ok() ? "" : ",\"error\":\"" + jsonEscape(st.message()) + "\"");
  auto it = cache_.find({team, w});
  if (it == cache_.end() || it->second.start_ms != periodStartMs(w, now_ms)) return Spend{};
  return it->second.spend;
}

std::optional<Spend> PgLedger::cachedSpent(const std::string& team, Window w, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find({team, w});
  if (it == cache_.end() || it->second.start_ms != periodStartMs(w, now_ms)) return std::nullopt;
  // Fresh: read by a reservation, a spent() or the background thread's refresh lately.
  if (std::chrono::steady_clock::now() - it->second.read_at > 3 * options_.heartbeat_interval)
    return std::nullopt;
  return it->second.spend;
}

void PgLedger::refreshCache() {
  std::vector<std::pair<std::string, Window>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, cached] : cache_) keys.push_back(key);
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (const auto& [team, w] : keys) {
    if (!available_) return;
    (void)spent(team, w, now_ms);
  }
}

// ---- Admin reads and alerts ----

api::StatusOr<std::vector<SpendBreakdownRow>> PgLedger::breakdown(const std::string& team, Window w,
                                                                  int64_t now_ms) {
  std::vector<SpendBreakdownRow> out;
  api::Status st = transact(
      "reading the breakdown",
      [&](pqxx::transaction_base& tx) {
        out.clear();
        auto r = tx.exec_params(
            "SELECT model, route, kind, COUNT(*) FILTER (WHERE state <> 'pending'), "
            "SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(CASE WHEN state = 'pending' THEN 0 ELSE cost_usd END) AS cost, "
            "COUNT(*) FILTER (WHERE state = 'pending'), "
            "SUM(CASE WHEN state = 'pending' THEN cost_usd ELSE 0 END) AS pending_cost "
            "FROM switchyard.requests WHERE team = $1 AND unix_ms >= $2 AND unix_ms < $3 AND "
            "state <> 'held' GROUP BY model, route, kind "
            "ORDER BY cost DESC, pending_cost DESC, model COLLATE \"C\", route COLLATE \"C\", "
            "kind COLLATE \"C\"",
            team, periodStartMs(w, now_ms), periodEndMs(w, now_ms));
        for (const auto& row : r) {
          SpendBreakdownRow b;
          b.model = row[0].as<std::string>();
          b.route = row[1].as<std::string>();
          b.kind = row[2].as<std::string>();
          b.requests = row[3].as<int64_t>();
          b.prompt_tokens = row[4].as<int64_t>();
          b.completion_tokens = row[5].as<int64_t>();
          b.cost_usd = row[6].as<double>();
          b.pending = row[7].as<int64_t>();
          b.pending_usd = row[8].as<double>();
          out.push_back(std::move(b));
        }
        return api::Status();
      },
      Mode::kOneStatement);
  if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  return out;
}

api::StatusOr<bool> PgLedger::markAlerted(const std::string& team, const std::string& period,
                                          double threshold, int64_t now_ms) {
  if (!std::isfinite(threshold)) {
    return api::Status(api::ErrorCode::kInternal, "alert threshold must be finite");
  }
  bool first = false;
  // Once per (team, period, threshold) across the cluster: the first insert wins.
  api::Status st = transact(
      "recording an alert",
      [&](pqxx::transaction_base& tx) {
        auto r = tx.exec_params(
            "INSERT INTO switchyard.alerts(team, period, threshold, unix_ms) VALUES ($1, $2, $3, "
            "$4) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            team, period, threshold, now_ms);
        first = !r.empty();
        return api::Status();
      },
      Mode::kOneStatement);
  if (!st.ok()) return st;
  return first;
}

api::Status PgLedger::flush() {
  if (drainDeferred()) return {};
  std::lock_guard<std::mutex> lock(mu_);
  return api::Status(api::ErrorCode::kIo, "ledger '" + masked_ +
                                              "': " + std::to_string(deferred_.size()) +
                                              " writes not committed yet: " + last_error_);
}

std::vector<std::string> PgLedger::teams() {
  std::vector<std::string> out;
  api::Status st = transact(
      "listing teams",
      [&](pqxx::transaction_base& tx) {
        out.clear();
        auto r = tx.exec(
            "SELECT DISTINCT team COLLATE \"C\" AS t FROM switchyard.requests WHERE state <> "
            "'held' "
            "ORDER BY t");
        for (const auto& row : r) out.push_back(row[0].as<std::string>());
        return api::Status();
      },
      Mode::kOneStatement);
  if (!st.ok()) logLine("error", "ledger: cannot list teams: " + st.message(), masked_);
  return out;
}

LedgerStats PgLedger::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  LedgerStats out = stats_;
  out.available = available_;
  return out;
}

}  // namespace

api::StatusOr<std::unique_ptr<Ledger>> openPostgresLedger(const std::string& url,
                                                          const PostgresLedgerOptions& options) {
  if (url.empty()) return api::Status(api::ErrorCode::kConfig, "ledger url is empty");
  std::unique_ptr<PgLedger> ledger(new PgLedger(url, options));
  if (api::Status st = ledger->init(); !st.ok()) return st;
  return std::unique_ptr<Ledger>(std::move(ledger));
}

}  // namespace policies
