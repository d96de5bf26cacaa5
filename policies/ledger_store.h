// LedgerStore: the SQLite file under the SQLite Ledger (ledger.cpp). It opens and locks the file,
// creates, checks or upgrades its schema, settles what a crash left pending, writes batches and
// answers the reads. Budgets, the write queue and the writer thread are the Ledger's; this
// class does no locking of its own except for the admin side. Internal to policies/.
//
// Schema version 3: every row of `requests` has a `state` ('pending' a durable reservation in
// flight, its cost_usd the reserved amount; 'settled'; 'crashed' a pending row found when
// opening) and the `seq` of the write that last changed it. Writes are numbered in queue
// order and meta 'last_seq' is the last committed one, so that a sum can take exactly the rows
// committed up to a given write while later ones are still in the Ledger's queue (a settle
// rewrites an older row in place, so row ids alone cannot say that).
//
// Three connections, so that no kind of caller waits on another's statement:
//   - writer side (writeBatch, probe): one thread at a time, the Ledger's writer;
//   - sum side (open-time reads, teams, sumCost): one thread at a time, under the Ledger's mutex;
//   - admin side (breakdown): any thread, serialized here.
//
// Every error is kIo naming the path ("ledger '<path>': ..."), except a SQLite database that is
// not a ledger or has an unknown schema version, which is kConfig.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/status.h"
#include "policies/ledger.h"
#include "policies/sqlite.h"

namespace policies {

// One write of a batch. Ids and seqs are given out by the Ledger when it queues the write.
struct LedgerWrite {
  enum class Kind {
    kRow,            // inserts or replaces row `id` (row.state: "pending" or "settled")
    kRemovePending,  // deletes row `id` if it is still pending (a released reservation)
    kAlert,          // records (row.team, period, threshold) at row.unix_ms, unless present
  };
  Kind kind = Kind::kRow;
  int64_t seq = 0;  // increasing in queue order
  int64_t id = 0;   // the row's id (kRow, kRemovePending)
  LedgerRow row;
  std::string period;  // kAlert
  double threshold = 0;
};

// Pending rows that a crash left, settled when the file was opened.
struct CrashedRows {
  int64_t count = 0;
  double usd = 0;  // their reserved amounts
};

// A recorded alert (team, period, threshold).
struct AlertKey {
  std::string team, period;
  double threshold = 0;
  bool operator<(const AlertKey& o) const {
    if (team != o.team) return team < o.team;
    if (period != o.period) return period < o.period;
    return threshold < o.threshold;
  }
};

class LedgerStore {
 public:
  static constexpr int kSchemaVersion = 3;

  // Opens or creates the file (its parent directory must exist; a new file gets mode 0600, and
  // SQLite gives its -wal and -shm files the same), takes an exclusive flock() on it (a second
  // owner, in this process or another, is refused: budgets are held in the owner's memory and
  // row ids are given out by it), switches it to WAL mode and creates, checks or upgrades
  // (versions 1 and 2) the schema.
  static api::StatusOr<std::unique_ptr<LedgerStore>> open(const std::string& path);
  ~LedgerStore();
  LedgerStore(const LedgerStore&) = delete;
  LedgerStore& operator=(const LedgerStore&) = delete;

  const std::string& path() const { return path_; }

  // Writer side. Applies `writes` (in order, seqs increasing) in one transaction, with meta
  // 'last_seq' set to the last one's seq: all of them or, on failure, none.
  api::Status writeBatch(const std::vector<const LedgerWrite*>& writes);
  // A write transaction that leaves the file as it was (a row inserted and deleted): whether
  // writes work again after a failure, when nothing is queued to retry.
  api::Status probe();

  // Sum side, at open. Turns every pending row into a crashed one (its cost, the reserved
  // amount, now counts as spent) and says how many and how much.
  api::StatusOr<CrashedRows> settleCrashed();
  // The highest row id (0 when there is none) and the last committed write's seq.
  api::StatusOr<int64_t> lastId();
  api::StatusOr<int64_t> lastSeq();
  // Every recorded alert.
  api::StatusOr<std::vector<AlertKey>> alerts();
  // Every team with a row (one index seek per team).
  api::StatusOr<std::vector<std::string>> teams();
  // The cost in USD of the team's final (not pending) rows with start_ms <= unix_ms < end_ms
  // last written by a write with seq <= max_seq.
  api::StatusOr<double> sumCost(const std::string& team, int64_t start_ms, int64_t end_ms,
                                int64_t max_seq);

  // Admin side. The team's rows with start_ms <= unix_ms < end_ms, grouped by (model, route,
  // kind), most costly first; pending rows counted apart.
  api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, int64_t start_ms,
                                                          int64_t end_ms);

 private:
  using Db = sqlite::Db;
  using Stmt = sqlite::Stmt;

  LedgerStore(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

  api::Status init();
  api::StatusOr<Db> connect();
  api::Status exec(sqlite3* db, const char* sql, const std::string& what);
  api::StatusOr<Stmt> prepare(sqlite3* db, const char* sql);
  api::Status prepareInto(sqlite3* db, Stmt* out, const char* sql);
  api::Status createOrCheckSchema();
  api::Status upgradeSchema(std::string* version);
  api::Status bindAndStep(const LedgerWrite& w);
  api::Status error(sqlite3* db, const std::string& what) const;

  std::string path_;
  int lock_fd_;  // holds the flock; closed after every connection (see the destructor)

  Db write_db_;
  Stmt put_row_, remove_pending_, put_alert_, set_last_seq_, begin_, commit_, rollback_;
  Db sum_db_;
  Stmt sum_, last_id_, teams_;
  std::mutex admin_mu_;
  Db admin_db_;  // under admin_mu_
  Stmt breakdown_;
};

}  // namespace policies
