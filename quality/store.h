// QualityStore: where quality records (quality/record.h) and user feedback are kept. The
// Recorder (quality/recorder.h) writes it off the request path; exports, reports and admin
// endpoints read it. Two implementations behind one interface: SqliteQualityStore (below, a
// file; the default) and the PostgreSQL store (quality/pg_store.h), which many gateway replicas
// share so that reports and exports see the whole cluster. QualityStore::open picks one by
// its argument: a postgresql:// or postgres:// URL, or a file path.
//
// The contract, for both: text is stored as the bytes given (no UTF-8 check) and doubles
// exactly (NaN, infinities and -0.0 included); record ids are never reused, even after a prune
// removed the newest rows, so that a judge result that arrives late cannot land on another
// record; feedback is at most one row per (team, request_id), the latest Feedback sent (the
// greatest unix_ms, ties going to the one added last), and only for a record of that team and
// request: feedback never outgrows the records it rates, and goes with them. The prompt is
// kept as its JSON text; JSON strings that are not valid UTF-8 are replaced on the way in (a
// parsed request has none).
//
// SQLite layout (schema version 2, recorded in the `meta` table beside the key store =
// 'switchyard-quality', which tells this file apart from other Switchyard databases such as
// the ledger):
//   - `records`: one row per record. What filters and reports sort on (unix_ms, team, kind,
//     request_id) and every scalar are columns; the prompt and the feature vectors are JSON text.
//     An optional value is a NULL column when absent, so that "absent" and 0 stay apart.
//     AUTOINCREMENT ids.
//   - `feedback`: the feedback rows.
//   Indexes: records(team, unix_ms), records(unix_ms) (the oldest-first prune and team-less
//   queries), records(request_id), feedback(team, request_id, unix_ms).
// A NaN or -0.0, which a SQLite REAL cannot hold, is stored as its 8 bytes in a BLOB; in the
// feature JSON a non-finite value as the string "NaN", "Infinity" or "-Infinity".
//
// The file is in WAL mode: readers (a read_only open, in this process or another) never wait
// for the writer and see every committed write. It is created with auto_vacuum=INCREMENTAL, so
// that prune() can hand the pages of deleted rows back to the file system (see prune()).
//
// Thread-safe: every method may be called from any thread. Writes share one connection under a
// mutex; query() and stats() use a second, read-only connection, so that a slow report does not
// hold up the writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/status.h"
#include "policies/sqlite.h"
#include "quality/record.h"

namespace quality {

struct RecordFilter {
  std::optional<std::string> team;
  std::optional<int64_t> since_ms;  // inclusive, on unix_ms
  std::optional<int64_t> until_ms;  // exclusive, on unix_ms
  std::optional<RecordKind> kind;
  int64_t limit = 0;          // 0 = all; negative is kInvalidRequest
  bool newest_first = false;  // default oldest first (by unix_ms, then id)
};

// What prune() keeps. Each limit removes the oldest records first (by unix_ms, then id).
// Feedback follows its record: at most one row per record, deleted with it, so that limits on
// records bound feedback too and no team's feedback can push another team's records out.
struct Retention {
  int64_t max_age_days = 90;   // 0 = keep forever
  int64_t max_rows = 1000000;  // records; 0 = unbounded
  // 0 = unbounded. Approximate. SQLite: the pages in use (page_count - freelist_count) *
  // page_size, which counts indexes and feedback too; it is met to within a few pages.
  // PostgreSQL: the bytes of the records' stored text, JSON and numbers plus a fixed
  // per-row overhead (pg_store.h), since the table's disk size only shrinks at VACUUM.
  int64_t max_bytes = 1LL << 30;
};

struct StoreStats {
  int64_t records = 0;
  int64_t feedback = 0;
  // SQLite: page_count * page_size of the database (the WAL not counted); PostgreSQL: the
  // disk size of the store's tables and indexes (pg_total_relation_size).
  int64_t bytes = 0;
};

// The store's interface. Every write is kIo (PostgreSQL: kUnavailable while the database
// cannot be reached or a statement ran past its timeout) naming the store when the store is
// read_only or the database fails (the write then changed nothing).
class QualityStore {
 public:
  // 2: records.sampling_p and feedback.scale. A store of version 1 is migrated when opened
  // for writing (its records read sampling_p = 1, its feedback the "unit" scale) and read as
  // it is when opened read_only.
  static constexpr int kSchemaVersion = 2;

  // A postgresql:// or postgres:// URL opens the PostgreSQL store (quality/pg_store.h, with
  // its default options, except a 10-minute statement timeout when read_only: reports read
  // whole ranges at once); anything else is a SQLite file (SqliteQualityStore::open).
  static api::StatusOr<std::unique_ptr<QualityStore>> open(const std::string& path_or_url,
                                                           bool read_only = false);
  static bool isPostgresUrl(const std::string& s) {
    return s.starts_with("postgresql://") || s.starts_with("postgres://");
  }
  virtual ~QualityStore() = default;
  QualityStore(const QualityStore&) = delete;
  QualityStore& operator=(const QualityStore&) = delete;

  // Stores `r` (with its metrics and judge when set; r.id and r.feedback are ignored) and
  // returns its new id (> 0).
  virtual api::StatusOr<int64_t> insert(const QualityRecord& r) = 0;
  // Set (replace) the record's metrics or judge result; kNotFound for an unknown id.
  virtual api::Status setMetrics(int64_t id, const TextMetrics& m) = 0;
  virtual api::Status setJudge(int64_t id, const JudgeResult& j) = 0;
  // Stores a feedback on the records of (f.team, f.request_id), in place of an older one;
  // one older than what is stored changes nothing. kNotFound (nothing written) when that team
  // has no record of that request.
  virtual api::Status addFeedback(const Feedback& f) = 0;
  // Runs `body` in one transaction: the writes it makes through this store are committed
  // together when it returns OK (the commit's error otherwise) and all rolled back when it
  // returns an error (that error is returned). Other threads' writes wait until it returns.
  // Writes that return kNotFound inside `body` change nothing and do not end the transaction.
  // `body` must not call transaction() again (kInternal).
  virtual api::Status transaction(const std::function<api::Status()>& body) = 0;

  // Records matching the filter, each with the latest feedback of its (team, request_id)
  // attached. kInvalidRequest for a negative limit; kIo when reading fails or a row does not
  // decode (a damaged store).
  virtual api::StatusOr<std::vector<QualityRecord>> query(const RecordFilter& f) const = 0;

  // Applies `r` at `now_ms` and returns the number of records deleted. Records older than
  // max_age_days go, then the oldest ones beyond max_rows, then the oldest ones while the
  // store's size exceeds max_bytes (as each implementation measures it). The feedback of a
  // deleted record goes with it, and feedback older than max_age_days or without a record goes
  // too (not counted in the result). Deletes run in transactions of at most a few thousand
  // rows. kInvalidRequest for a negative limit.
  virtual api::StatusOr<int64_t> prune(const Retention& r, int64_t now_ms) = 0;

  virtual api::StatusOr<StoreStats> stats() const = 0;
  // The file's path, or the URL with its password masked: what errors and logs name.
  const std::string& path() const { return path_; }
  bool readOnly() const { return read_only_; }

 protected:
  QualityStore(std::string path, bool read_only) : path_(std::move(path)), read_only_(read_only) {}
  api::Status readOnlyError() const;
  // Checks a Retention's limits (kInvalidRequest naming a negative one).
  static api::Status checkRetention(const Retention& r);

  const std::string path_;
  const bool read_only_;
};

// The SQLite file.
class SqliteQualityStore final : public QualityStore {
 public:
  // Opens the store at `path`, creating the file (its parent directory must exist) and the
  // schema when absent, unless read_only. Errors name the path:
  //   kIo: missing (read_only), a directory, unreadable, not a SQLite database (random bytes, a
  //        truncated or otherwise corrupt file), locked by another connection for longer than
  //        the busy timeout;
  //   kConfig: a SQLite database that is not a Switchyard quality store (another schema, or an
  //        empty database opened read_only), or one of an unsupported schema version.
  // A store of schema version 1 is migrated to 2 (unless read_only) in the open's transaction.
  // A file that fails to open is left as it was. A read_only open works while another
  // connection, in this process or another, writes the store.
  static api::StatusOr<std::unique_ptr<QualityStore>> open(const std::string& path,
                                                           bool read_only = false);
  ~SqliteQualityStore() override;

  api::StatusOr<int64_t> insert(const QualityRecord& r) override;
  api::Status setMetrics(int64_t id, const TextMetrics& m) override;
  api::Status setJudge(int64_t id, const JudgeResult& j) override;
  api::Status addFeedback(const Feedback& f) override;
  api::Status transaction(const std::function<api::Status()>& body) override;
  api::StatusOr<std::vector<QualityRecord>> query(const RecordFilter& f) const override;
  // SQLite: max_bytes is met on the pages in use; after any deletion the free pages are
  // returned to the file system (PRAGMA incremental_vacuum, then a passive WAL checkpoint,
  // which shrinks the file once no reader holds an older snapshot). Inside transaction(), the
  // pages are not returned.
  api::StatusOr<int64_t> prune(const Retention& r, int64_t now_ms) override;
  api::StatusOr<StoreStats> stats() const override;

 private:
  using Db = policies::sqlite::Db;
  using Stmt = policies::sqlite::Stmt;

  SqliteQualityStore(std::string path, bool read_only) : QualityStore(std::move(path), read_only) {}

  api::Status init();
  api::StatusOr<Db> connect(bool read_only);
  api::Status checkSchema(sqlite3* db, bool may_create);
  api::Status prepareWriteStatements();
  api::Status error(sqlite3* db, const std::string& what) const;
  api::Status exec(sqlite3* db, const char* sql, const std::string& what) const;
  api::StatusOr<Stmt> prepare(sqlite3* db, const char* sql, bool persistent) const;
  api::Status rolledBackError() const;
  api::Status notFound(int64_t id) const;
  // Runs `body` in a transaction of its own, or within transaction()'s when one is open and
  // `outer` is false. Requires write_mu_.
  api::Status inTransaction(const std::function<api::Status()>& body, const std::string& what,
                            bool outer);
  // A write method's frame: refuses on a read-only store, locks, runs `body` in a transaction.
  api::Status write(const std::function<api::Status(sqlite3*)>& body, const std::string& what);
  // Deletes (with their feedback) up to `n` of the oldest records with unix_ms < before_ms, in
  // one transaction; returns how many went.
  api::StatusOr<int64_t> deleteOldest(int64_t before_ms, int64_t n);
  // The integer that a one-row, one-column query gives on the write connection.
  api::StatusOr<int64_t> writeInt(const char* sql);

  std::recursive_mutex write_mu_;  // the write connection and its statements
  Db write_db_;                    // null when read_only
  bool in_transaction_ = false;    // inside transaction()
  Stmt begin_, commit_, rollback_, insert_, set_metrics_, set_judge_;
  Stmt feedback_target_, drop_feedback_, add_feedback_;

  mutable std::mutex read_mu_;  // the read connection
  Db read_db_;
  int schema_version_ = kSchemaVersion;  // 1: a version 1 store opened read_only
};

}  // namespace quality
