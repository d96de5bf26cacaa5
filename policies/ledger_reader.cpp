#include "policies/ledger_reader.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <limits>
#include <set>
#include <system_error>
#include <utility>

#include "policies/pg_pool.h"
#include "policies/sqlite.h"

namespace policies {
namespace {

// A reader waits this long when the gateway's writer holds the WAL index for a moment (WAL
// recovery after a crash, a checkpoint's brief exclusive section).
constexpr int kBusyTimeoutMs = 5'000;

// Every ledger's requests table has these; `decision` and `compute_ms` came later and are
// optional.
const char* const kRequiredColumns[] = {
    "id",
    "request_id",
    "unix_ms",
    "team",
    "key_id",
    "model",
    "route",
    "kind",
    "prompt_tokens",
    "cached_prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "status",
};

using sqlite::Db;
using sqlite::Stmt;
using sqlite::Use;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)), name_("ledger '" + path_ + "'") {}

  api::StatusOr<std::vector<LedgerRow>> read(std::optional<int64_t> since_ms,
                                             std::optional<int64_t> until_ms) {
    if (path_.empty()) return api::Status(api::ErrorCode::kIo, "ledger path is empty");
    if (api::Status s = checkFile(); !s.ok()) return s;
    if (api::Status s = open(); !s.ok()) return s;
    auto columns = requestColumns();
    if (!columns.ok()) return columns.status();
    return rows(*columns, since_ms, until_ms);
  }

 private:
  // stat() first: SQLite's own message for a missing file ("unable to open database file")
  // does not say which of the many reasons it was.
  api::Status checkFile() const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      int err = errno;
      if (err == ENOENT) return api::Status(api::ErrorCode::kIo, name_ + ": no such file");
      return api::Status(api::ErrorCode::kIo,
                         name_ + ": " + std::error_code(err, std::generic_category()).message());
    }
    if (S_ISDIR(st.st_mode)) {
      return api::Status(api::ErrorCode::kIo, name_ + ": is a directory, expected a database file");
    }
    return {};
  }

  api::Status open() {
    sqlite3* raw = nullptr;
    // Read-only, and no flock(): the owning gateway holds an exclusive flock() on the file, and
    // SQLite's own locks (POSIX record locks) let a WAL reader run beside its writer.
    int rc =
        sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) return error("cannot open");
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs);
    return {};
  }

  api::Status error(const std::string& what) const {
    int code = db_ ? sqlite3_extended_errcode(db_.get()) : SQLITE_NOMEM;
    std::string detail = db_ ? sqlite3_errmsg(db_.get()) : "out of memory";
    switch (code & 0xff) {
      case SQLITE_NOTADB:
        return api::Status(api::ErrorCode::kIo, name_ + ": not a SQLite database (" + detail + ")");
      case SQLITE_CORRUPT:
        return api::Status(api::ErrorCode::kIo,
                           name_ + ": database is corrupt (" + what + ": " + detail + ")");
      case SQLITE_CANTOPEN:
        return api::Status(api::ErrorCode::kIo, name_ + ": " + what + ": " + detail +
                                                    " (a ledger in WAL mode needs its -wal and "
                                                    "-shm files, or a writable directory)");
      default:
        return api::Status(api::ErrorCode::kIo, name_ + ": " + what + ": " + detail);
    }
  }

  api::StatusOr<Stmt> prepare(const std::string& sql, const std::string& what) {
    auto s = sqlite::prepare(db_.get(), sql);
    if (!s.ok()) return error(what);
    return s;
  }

  // The first column of every row of `sql`, as text.
  api::StatusOr<std::set<std::string>> names(const std::string& sql, int column,
                                             const std::string& what) {
    auto q = prepare(sql, what);
    if (!q.ok()) return q.status();
    Use use(q->get());
    std::set<std::string> out;
    int rc;
    while ((rc = use.step()) == SQLITE_ROW) out.insert(use.columnText(column));
    if (rc != SQLITE_DONE) return error(what);
    return out;
  }

  // The columns of the requests table, after checking that this is a ledger.
  api::StatusOr<std::set<std::string>> requestColumns() {
    // The first read of the file: a file that is not a database fails here.
    auto tables =
        names("SELECT name FROM sqlite_master WHERE type = 'table'", 0, "reading the schema");
    if (!tables.ok()) return tables.status();
    if (tables->count("meta") == 0 || tables->count("requests") == 0) {
      return api::Status(api::ErrorCode::kConfig,
                         name_ + ": a SQLite database that is not a Switchyard ledger (" +
                             (tables->empty() ? std::string("it has no tables")
                                              : std::string("no meta or requests table")) +
                             ")");
    }
    auto columns = names("PRAGMA table_info(requests)", 1, "reading the schema");
    if (!columns.ok()) return columns.status();
    for (const char* c : kRequiredColumns) {
      if (columns->count(c) == 0) {
        return api::Status(
            api::ErrorCode::kConfig,
            name_ + ": not a Switchyard ledger: its requests table has no '" + c + "' column");
      }
    }
    return columns;
  }

  api::StatusOr<std::vector<LedgerRow>> rows(const std::set<std::string>& columns,
                                             std::optional<int64_t> since_ms,
                                             std::optional<int64_t> until_ms) {
    // Columns added after the first schema are read when the file has them.
    std::string decision = columns.count("decision") ? "decision" : "''";
    std::string compute = columns.count("compute_ms") ? "compute_ms" : "0.0";
    // Before version 3 every row was final.
    std::string state = columns.count("state") ? "COALESCE(state, 'settled')" : "'settled'";
    std::string sql =
        "SELECT request_id, team, key_id, model, route, kind, " + decision + ", " + compute +
        ", prompt_tokens, cached_prompt_tokens, completion_tokens, cost_usd, latency_ms, status, "
        "unix_ms, " +
        state + " FROM requests WHERE unix_ms >= ?1 AND unix_ms < ?2 ORDER BY unix_ms, id";
    auto q = prepare(sql, "reading rows");
    if (!q.ok()) return q.status();
    Use s(q->get());
    s.int64(1, since_ms.value_or(std::numeric_limits<int64_t>::min()));
    if (until_ms) {
      s.int64(2, *until_ms);
    } else {
      // No upper bound: a row at INT64_MAX must not be lost to an exclusive bound.
      s.real(2, std::numeric_limits<double>::infinity());
    }
    std::vector<LedgerRow> out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      LedgerRow r;
      r.request_id = s.columnText(0);
      r.team = s.columnText(1);
      r.key_id = s.columnText(2);
      r.model = s.columnText(3);
      r.route = s.columnText(4);
      r.kind = s.columnText(5);
      r.decision = s.columnText(6);
      r.compute_ms = s.columnDouble(7);  // NULL (a column added without default): 0
      r.prompt_tokens = s.columnInt64(8);
      r.cached_prompt_tokens = s.columnInt64(9);
      r.completion_tokens = s.columnInt64(10);
      r.cost_usd = s.columnDouble(11);
      r.latency_ms = s.columnDouble(12);
      r.status = static_cast<int>(s.columnInt64(13));
      r.unix_ms = s.columnInt64(14);
      r.state = s.columnText(15);
      out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return error("reading rows");
    return out;
  }

  std::string path_;
  std::string name_;
  Db db_;
};

// The rows of a PostgreSQL ledger, as Reader reads a file's.
api::StatusOr<std::vector<LedgerRow>> readPostgresRows(const std::string& url,
                                                       std::optional<int64_t> since_ms,
                                                       std::optional<int64_t> until_ms) {
  PgDatabaseOptions o;
  o.pool_size = 1;
  o.application_name = "switchyard-cli";
  o.statement_timeout = std::chrono::minutes(10);  // one query reads the whole range
  PgDatabase db("ledger", url, o);
  std::vector<LedgerRow> out;
  bool found = true;
  api::Status st = db.transact("reading rows", [&](pqxx::transaction_base& tx) {
    tx.exec("SET TRANSACTION READ ONLY");
    if (!tx.exec("SELECT to_regclass('switchyard.requests') IS NOT NULL")[0][0].as<bool>()) {
      found = false;
      return api::Status();
    }
    pqxx::result r = tx.exec_params(
        "SELECT request_id, team, key_id, model, route, kind, decision, compute_ms, "
        "prompt_tokens, cached_prompt_tokens, completion_tokens, cost_usd, latency_ms, status, "
        "unix_ms, state FROM switchyard.requests WHERE unix_ms >= $1 AND unix_ms < $2 AND "
        "state <> 'held' ORDER BY unix_ms, id",
        since_ms.value_or(std::numeric_limits<int64_t>::min()),
        until_ms.value_or(std::numeric_limits<int64_t>::max()));
    out.reserve(r.size());
    for (const pqxx::row& row : r) {
      LedgerRow l;
      l.request_id = row[0].as<std::string>();
      l.team = row[1].as<std::string>();
      l.key_id = row[2].as<std::string>();
      l.model = row[3].as<std::string>();
      l.route = row[4].as<std::string>();
      l.kind = row[5].as<std::string>();
      l.decision = row[6].as<std::string>();
      l.compute_ms = row[7].as<double>();
      l.prompt_tokens = row[8].as<int64_t>();
      l.cached_prompt_tokens = row[9].as<int64_t>();
      l.completion_tokens = row[10].as<int64_t>();
      l.cost_usd = row[11].as<double>();
      l.latency_ms = row[12].as<double>();
      l.status = row[13].as<int>();
      l.unix_ms = row[14].as<int64_t>();
      l.state = row[15].as<std::string>();
      out.push_back(std::move(l));
    }
    return api::Status();
  });
  if (!st.ok()) return api::Status(api::ErrorCode::kIo, st.message());
  if (!found) {
    return api::Status(api::ErrorCode::kConfig,
                       "ledger '" + db.masked() + "': the database holds no Switchyard ledger");
  }
  return out;
}

}  // namespace

api::StatusOr<std::vector<LedgerRow>> readLedgerRows(const std::string& path,
                                                     std::optional<int64_t> since_ms,
                                                     std::optional<int64_t> until_ms) {
  if (path.starts_with("postgresql://") || path.starts_with("postgres://")) {
    return readPostgresRows(path, since_ms, until_ms);
  }
  return Reader(path).read(since_ms, until_ms);
}

}  // namespace policies
