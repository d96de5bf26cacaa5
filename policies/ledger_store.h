// LedgerStore: the SQLite file under the SQLite Ledger (ledger.cpp). It opens and locks the file,
// creates or checks its schema, inserts batches of rows and answers the reads. Budgets, the
// write queue and the writer thread are the Ledger's; this class does no locking of its own
// except for the admin side. Internal to policies/.
//
// Three connections, so that no kind of caller waits on another's statement:
//   - writer side (insertBatch): one thread at a time, the Ledger's writer;
//   - sum side (lastId, teams, sumCost): one thread at a time, under the Ledger's mutex;
//   - admin side (breakdown, insertAlert): any thread, serialized here.
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

struct sqlite3;
struct sqlite3_stmt;

namespace policies {

// A row with the id it is stored under (ids are given out by the Ledger when a row is queued).
struct StoredRow {
  int64_t id = 0;
  LedgerRow row;
};

class LedgerStore {
 public:
  static constexpr int kSchemaVersion = 2;

  // Opens or creates the file (its parent directory must exist), takes an exclusive flock() on
  // it (a second owner, in this process or another, is refused: budgets are held in the
  // owner's memory and row ids are given out by it), switches it to WAL mode and creates or
  // checks the schema.
  static api::StatusOr<std::unique_ptr<LedgerStore>> open(const std::string& path);
  ~LedgerStore();
  LedgerStore(const LedgerStore&) = delete;
  LedgerStore& operator=(const LedgerStore&) = delete;

  const std::string& path() const { return path_; }

  // Writer side. Inserts `rows` in one transaction: all of them or, on failure, none.
  api::Status insertBatch(const std::vector<const StoredRow*>& rows);

  // Sum side. The highest row id (0 when there is none).
  api::StatusOr<int64_t> lastId();
  // Every team with a row (one index seek per team).
  api::StatusOr<std::vector<std::string>> teams();
  // The cost in USD of the team's rows with start_ms <= unix_ms < end_ms and id <= max_id.
  api::StatusOr<double> sumCost(const std::string& team, int64_t start_ms, int64_t end_ms,
                                int64_t max_id);

  // Admin side. The team's rows with start_ms <= unix_ms < end_ms, grouped by (model, route,
  // kind), most costly first.
  api::StatusOr<std::vector<SpendBreakdownRow>> breakdown(const std::string& team, int64_t start_ms,
                                                          int64_t end_ms);
  // Inserts the alert unless present; true when it was inserted. Committed before it returns.
  api::StatusOr<bool> insertAlert(const std::string& team, const std::string& period,
                                  double threshold, int64_t unix_ms);

 private:
  struct Closer {
    void operator()(sqlite3* db) const;
    void operator()(sqlite3_stmt* stmt) const;
  };
  using Db = std::unique_ptr<sqlite3, Closer>;
  using Stmt = std::unique_ptr<sqlite3_stmt, Closer>;

  LedgerStore(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

  api::Status init();
  api::StatusOr<Db> connect();
  api::Status exec(sqlite3* db, const char* sql, const std::string& what);
  api::StatusOr<Stmt> prepare(sqlite3* db, const char* sql);
  api::Status prepareInto(sqlite3* db, Stmt* out, const char* sql);
  api::Status createOrCheckSchema();
  api::Status error(sqlite3* db, const std::string& what) const;

  std::string path_;
  int lock_fd_;  // holds the flock; closed after every connection (see the destructor)

  Db write_db_;
  Stmt insert_, begin_, commit_, rollback_;
  Db sum_db_;
  Stmt sum_, last_id_, teams_;
  std::mutex admin_mu_;
  Db admin_db_;  // under admin_mu_
  Stmt breakdown_, alert_;
};

}  // namespace policies
