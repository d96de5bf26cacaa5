// Ledger: the record of every request the gateway answered, and the per-team budgets that
// cloud calls are checked against. One interface; the SQLite implementation (openSqliteLedger)
// lives in ledger.cpp, a PostgreSQL one may follow (budgets that hold across replicas).
//
// Money flow of a cloud call:
//
//     auto r = ledger.reserve(team, max_cost, limits, now);   // refused: kQuotaExceeded
//     ... call the provider ...
//     ledger.settle(*r, row);     // the actual cost replaces the reservation
//     // or ledger.release(*r);   // the call failed before costing anything
//
// Local answers and refused requests are written with record(). Budget checks happen in
// memory under one mutex, so that concurrent requests can never push a team past a hard limit
// and no request waits on disk. Rows are written by one writer thread in batches; a crash loses
// at most the rows not yet committed (flush() waits for them), never a committed one, and
// leaves the database consistent. Reservations live only in memory: a restart releases them.
//
// Periods are UTC calendar days ("2026-11-23") and months ("2026-11"). A row counts in the
// period that contains its `unix_ms` (when the request finished); a reservation counts in every
// period until it is settled or released.
//
// One process owns a ledger file at a time (its budgets are held in that process's memory):
// a second open of the same file, from this process or another, is refused with kIo.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/status.h"

namespace policies {

enum class Window { kDay, kMonth };  // UTC calendar periods

// The key of the period of `w` that contains `unix_ms`: "2026-11-23" (kDay) or "2026-11"
// (kMonth). Years outside 0..9999 are written with as many digits as they need.
std::string periodKey(Window w, int64_t unix_ms);
// The first millisecond (UTC) of the period of `w` that contains `unix_ms`.
int64_t periodStartMs(Window w, int64_t unix_ms);
// The first millisecond of the period after the one that contains `unix_ms`.
int64_t periodEndMs(Window w, int64_t unix_ms);

struct BudgetLimits {  // hard limits in USD; nullopt = none
  std::optional<double> daily_usd;
  std::optional<double> monthly_usd;
};

// One answered (or refused) request.
struct LedgerRow {
  std::string request_id, team, key_id, model, route;
  std::string kind;  // "local" or "cloud"
  // How the gateway chose the target: "direct" (a model asked for by name), "local" or
  // "cloud" (planned), "cascade" (local answer kept), "escalated" (cascade went to the cloud),
  // "shadow" (a sampled cloud comparison), "judge" (an LLM judge call), "" (unknown).
  std::string decision;
  // Local answers: this request's share of the accelerator's busy time, in ms (each engine
  // step's time split over the tokens it processed). 0 for cloud rows.
  double compute_ms = 0;
  int64_t prompt_tokens = 0, cached_prompt_tokens = 0, completion_tokens = 0;
  double cost_usd = 0;    // USD, finite and >= 0
  double latency_ms = 0;  // milliseconds, from arrival to the last byte
  int status = 200;       // the HTTP status answered
  int64_t unix_ms = 0;    // when it finished (ms since the Unix epoch, UTC)
};

struct Spend {
  double settled_usd = 0;   // rows of the period (committed or queued)
  double reserved_usd = 0;  // open reservations of the team
};

// Committed rows of one team and period, grouped by (model, route, kind).
struct SpendBreakdownRow {
  std::string model, route, kind;
  int64_t requests = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double cost_usd = 0;
};

// Thread-safe: every method may be called from any thread.
class Ledger {
 public:
  virtual ~Ledger() = default;

  // Reserves `max_cost_usd` (finite, >= 0) for `team` when, for every limit set,
  //     settled(period of now_ms) + reserved + max_cost_usd <= limit
  // and returns the reservation's id (never 0). Otherwise kQuotaExceeded with OpenAI code
  // "insufficient_quota" and a message naming the team, the window and the amounts; nothing is
  // reserved. kInternal for an invalid amount; kIo when the period's spend could not be read.
  virtual api::StatusOr<uint64_t> reserve(const std::string& team, double max_cost_usd,
                                          const BudgetLimits& limits, int64_t now_ms) = 0;
  // Replaces the reservation by the actual row (its cost counts from now on) and queues the row.
  // `row.team` must be the reservation's team and `row.cost_usd` finite and >= 0 (it may exceed
  // the reserved amount: the money was spent). An unknown (already settled or released)
  // reservation, a mismatched team or an invalid cost is kInternal and changes nothing. kIo
  // when the write queue is full and the database is failing: the cost still counts in memory
  // but the row is not written.
  virtual api::Status settle(uint64_t reservation, const LedgerRow& row) = 0;
  // Drops a reservation (the call failed before costing anything). Unknown ids are ignored.
  virtual void release(uint64_t reservation) = 0;
  // Queues a row without reservation (local answers, refused requests). Errors as settle().
  virtual api::Status record(const LedgerRow& row) = 0;
  // The team's settled spend in the period of `w` containing now_ms, and its open reservations.
  // Both are read under one lock, so their sum is a consistent snapshot.
  virtual Spend spent(const std::string& team, Window w, int64_t now_ms) = 0;
  // Committed rows of the team's period (reads SQLite; for admin endpoints), most costly group
  // first. Rows still queued are not included: flush() first for an exact view. kIo on failure.
  virtual api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, Window w,
                                                                  int64_t now_ms) = 0;
  // Records that `team` crossed `threshold` (e.g. 0.8) in `period` (a periodKey); true only the
  // first time for that (team, period, threshold). Persisted before it returns, so a restart
  // does not alert again. kIo on failure.
  virtual api::StatusOr<bool> markAlerted(const std::string& team, const std::string& period,
                                          double threshold, int64_t now_ms) = 0;
  // Blocks until every row queued before the call is committed. kIo when the writer failed
  // meanwhile (it keeps the rows and retries).
  virtual api::Status flush() = 0;
  // Teams with any row (committed or queued), sorted.
  virtual std::vector<std::string> teams() = 0;
};

// Opens (creating when absent; its parent directory must exist) a SQLite ledger in WAL mode.
// kIo naming the path when the file cannot be opened or created (a directory, a missing
// parent, no permission), is not a SQLite database, or is in use by another Ledger; kConfig
// when it is a SQLite database that is not a ledger or has an unknown schema version.
api::StatusOr<std::unique_ptr<Ledger>> openSqliteLedger(const std::string& path);

}  // namespace policies
