// Ledger: the record of every request the gateway answered, and the per-team budgets that
// cloud calls are checked against. One interface; the SQLite implementation (openSqliteLedger)
// lives in ledger.cpp, the PostgreSQL one that many replicas share in pg_ledger.h.
//
// Money flow of a cloud call:
//
//     auto r = ledger.reserveDurable(request, on_durable);  // refused: kQuotaExceeded, or
//                                                            // kUnavailable (cannot persist)
//     ... on_durable(ok): the reservation is durable; call the provider ...
//     ledger.settle(*r, row);     // the actual cost replaces the reservation, in the same row
//     // or ledger.release(*r);   // the call failed before costing anything: the row goes
//
// Local answers and refused requests are written with record(). Budget checks happen in
// memory under one mutex, so that concurrent requests can never push a team past a hard limit
// and no request waits on disk. Rows are written by one writer thread in batches (group commit:
// one transaction for whatever is queued); settle, release and record only queue and never wait.
//
// A durable reservation is a *pending* row (its reserved amount as cost), durable before the
// call starts: appended to the reservation journal next to the file (ledger_journal.h, one
// write() on the caller's thread), then committed to the file by the writer with the other
// queued writes; settling it rewrites that row in place (a settle in the same batch as its
// pending row writes only the final row). Opening a file settles the pending rows a crash left
// behind, in the file or only in the journal, at their reserved amount (state "crashed") and
// logs their count and sum, so that after kill -9 at any moment the ledger holds at least what
// the calls in flight cost, and no reservation survives a restart. A crash loses only what was
// not committed yet: rows (flush() waits for them), never a committed row or a durable
// reservation, and leaves the database consistent. "Durable" means surviving kill -9 of the
// process: commits use WAL with synchronous=NORMAL and the journal is not fsynced, so a power
// loss may undo the last ones. reserve() is the in-memory variant: a crash forgets it.
//
// Periods are UTC calendar days ("2026-11-23") and months ("2026-11"). A row counts in the
// period that contains its `unix_ms` (when the request finished; a crashed row: when it was
// reserved); a reservation counts in every period until it is settled or released.
//
// One process owns a ledger file at a time (its budgets are held in that process's memory):
// a second open of the same file, from this process or another, is refused with kIo. The file
// is created with mode 0600 (its -wal, -shm and -pending.N files follow it): it holds every
// team's spend.
#pragma once

#include <cstdint>
#include <functional>
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
  int status = 200;       // the HTTP status answered (0 in a pending or crashed row: none)
  int64_t unix_ms = 0;    // when it finished (ms since the Unix epoch, UTC)
  // Set by readers (readLedgerRows), ignored by record() and settle(), which write "settled":
  // "settled" a final row; "pending" a durable reservation whose call is in flight, cost_usd
  // being its reserved amount (an upper bound); "crashed" a pending row that a restart found
  // and settled at its reserved amount.
  std::string state = "settled";
};

struct Spend {
  double settled_usd = 0;   // rows of the period (committed or queued)
  double reserved_usd = 0;  // open reservations of the team
};

// Committed rows of one team and period, grouped by (model, route, kind).
struct SpendBreakdownRow {
  std::string model, route, kind;
  int64_t requests = 0;  // final rows (settled or crashed), pending ones excluded
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double cost_usd = 0;  // of the final rows; crashed ones at their reserved amount
  // Durable reservations in flight (pending rows), at their reserved amount: money that is
  // reserved, not spent, so not in cost_usd. Their route is "" (not known before the call).
  int64_t pending = 0;
  double pending_usd = 0;
};

// Counters of a ledger since it was opened, for metrics and tests.
struct LedgerStats {
  uint64_t commits = 0;         // write transactions committed (each a batch: group commit)
  uint64_t failed_commits = 0;  // batches that failed (their rows are kept and retried)
  // Writes not queued because the queue was full: their money still counts in memory, but a
  // row (or a settle, a release, an alert) is missing from the file.
  uint64_t dropped_writes = 0;
  uint64_t crashed_reservations = 0;  // pending rows a crash left, settled when opening
  double crashed_usd = 0;             // their reserved amount, now counted as spent
  bool available = true;  // false while writes fail: reserveDurable answers kUnavailable
};

// What a durable reservation writes in its pending row before the call it pays for starts.
struct ReservationRequest {
  std::string request_id, team, key_id, model, decision;
  double max_cost_usd = 0;  // finite, >= 0
  BudgetLimits limits;
  int64_t now_ms = 0;
};

// Runs once when a durable reservation is durable (ok: the call may start) or cannot be made
// so (kUnavailable "ledger unavailable: <reason>": the reservation is already released). It may
// run inline in reserveDurable, before it returns (the SQLite ledger always does so: its
// journal append is synchronous), or on another thread; it must not block and must not call
// flush().
using DurableCallback = std::function<void(api::Status)>;

// Thread-safe: every method may be called from any thread.
class Ledger {
 public:
  virtual ~Ledger() = default;

  // Checks the limits exactly as reserve() does (kQuotaExceeded, nothing reserved), then makes
  // a pending row for the reservation durable and returns its id; `on_durable` runs exactly
  // once when an id is returned, once the reservation is durable (or failed to be). A crash
  // after that leaves the pending row, which the next open settles at its reserved amount.
  // kUnavailable "ledger unavailable: <reason>" at once (nothing reserved, on_durable not
  // called) while the ledger cannot persist rows (its last write failed: disk full, read-only
  // file; or the journal append failed) or its queue is full: cloud calls must not start
  // unbilled.
  virtual api::StatusOr<uint64_t> reserveDurable(const ReservationRequest& request,
                                                 DurableCallback on_durable) {
    auto id = reserve(request.team, request.max_cost_usd, request.limits, request.now_ms);
    if (id.ok()) on_durable(api::Status());
    return id;
  }

  // Reserves `max_cost_usd` (finite, >= 0) for `team` when, for every limit set,
  //     settled(period of now_ms) + reserved + max_cost_usd <= limit
  // and returns the reservation's id (never 0). Otherwise kQuotaExceeded with OpenAI code
  // "insufficient_quota" and a message naming the team, the window and the amounts; nothing is
  // reserved. kInternal for an invalid amount; kIo when the period's spend could not be read.
  // In memory only: a crash forgets it (calls that can spend use reserveDurable).
  virtual api::StatusOr<uint64_t> reserve(const std::string& team, double max_cost_usd,
                                          const BudgetLimits& limits, int64_t now_ms) = 0;
  // Replaces the reservation by the actual row (its cost counts from now on) and queues the row
  // (a durable reservation's pending row is rewritten in place). Never waits for the writer.
  // `row.team` must be the reservation's team and `row.cost_usd` finite and >= 0 (it may exceed
  // the reserved amount: the money was spent). An unknown (already settled or released)
  // reservation, a mismatched team or an invalid cost is kInternal and changes nothing. kIo
  // when the write queue is full (the database has been failing for long): the cost still
  // counts in memory but the row is not written (counted in stats().dropped_writes).
  virtual api::Status settle(uint64_t reservation, const LedgerRow& row) = 0;
  // Drops a reservation (the call failed before costing anything) and queues the removal of
  // its pending row. Never waits. Unknown ids are ignored.
  virtual void release(uint64_t reservation) = 0;
  // Queues a row without reservation (local answers, refused requests). Errors as settle().
  virtual api::Status record(const LedgerRow& row) = 0;
  // The team's settled spend in the period of `w` containing now_ms, and its open reservations.
  // Both are read under one lock, so their sum is a consistent snapshot.
  virtual Spend spent(const std::string& team, Window w, int64_t now_ms) = 0;
  // spent(), when the period's sum is in memory (it is once a reservation or spent() of that
  // period has loaded it); nullopt when it would have to be read from the file. Never touches
  // the file: for callers on I/O threads that can skip a check (budget alerts after a settle).
  virtual std::optional<Spend> cachedSpent(const std::string& team, Window w, int64_t now_ms) {
    return spent(team, w, now_ms);
  }
  // Committed rows of the team's period (reads SQLite; for admin endpoints), most costly group
  // first; pending rows are counted apart (SpendBreakdownRow::pending). Rows still queued are
  // not included: flush() first for an exact view. kIo on failure.
  virtual api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, Window w,
                                                                  int64_t now_ms) = 0;
  // Records that `team` crossed `threshold` (e.g. 0.8) in `period` (a periodKey); true only the
  // first time for that (team, period, threshold). Decided in memory (the alerts of the file
  // are loaded when it is opened) and written by the writer, so it never waits on disk; a
  // crash before that write may alert once more after the restart. kInternal for a threshold
  // that is not finite.
  virtual api::StatusOr<bool> markAlerted(const std::string& team, const std::string& period,
                                          double threshold, int64_t now_ms) = 0;
  // Blocks until every write queued before the call is committed (the writer commits at once
  // instead of gathering more). kIo when the writer failed meanwhile (it keeps the rows and
  // retries).
  virtual api::Status flush() = 0;
  // Teams with any row (committed or queued), sorted.
  virtual std::vector<std::string> teams() = 0;
  // Counters since the ledger was opened.
  virtual LedgerStats stats() { return {}; }
  // Gateway replicas sharing this ledger that are alive (this one included, >= 1), as last
  // counted: no I/O, so the rate limiter may ask on every request for its share of a limit.
  // 1 for a ledger that one process owns.
  virtual int liveReplicas() { return 1; }
};

// Shared by the implementations. kQuotaExceeded (OpenAI code "insufficient_quota") saying that
// the team's limit of window `w` for the period of now_ms has `settled_usd` spent and
// `reserved_usd` reserved, as reserve() refuses.
api::Status budgetExhausted(const std::string& team, Window w, double limit, int64_t now_ms,
                            double settled_usd, double reserved_usd, double max_cost_usd);
// "" when `row` may be written (cost_usd finite and >= 0, latency_ms finite, compute_ms finite
// and >= 0), else what is wrong with it.
std::string ledgerRowProblem(const LedgerRow& row);

// Opens (creating when absent; its parent directory must exist) a SQLite ledger in WAL mode.
// kIo naming the path when the file cannot be opened or created (a directory, a missing
// parent, no permission), is not a SQLite database, or is in use by another Ledger; kConfig
// when it is a SQLite database that is not a ledger or has an unknown schema version.
api::StatusOr<std::unique_ptr<Ledger>> openSqliteLedger(const std::string& path);

}  // namespace policies
