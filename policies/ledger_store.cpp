#include "policies/ledger_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <system_error>
#include <utility>

namespace policies {
namespace {

// Version 1 lacked requests.decision and requests.compute_ms; opening it for writing adds them.
const char* const kMigrateV1Sql = R"sql(
ALTER TABLE requests ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN compute_ms REAL NOT NULL DEFAULT 0;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
)sql";

// Version 2 had no durable reservations: every row is final, and written before any seq.
const char* const kMigrateV2Sql = R"sql(
ALTER TABLE requests ADD COLUMN state TEXT NOT NULL DEFAULT 'settled';
ALTER TABLE requests ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_pending ON requests(id) WHERE state = 'pending';
UPDATE meta SET value = '3' WHERE key = 'schema_version';
)sql";

// How long a connection waits for another one's write lock (the writer's batch, an alert).
constexpr int kBusyTimeoutMs = 5'000;

const char* const kSchemaSql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests(
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  team TEXT NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  route TEXT NOT NULL,
  kind TEXT NOT NULL,           -- local | cloud
  prompt_tokens INTEGER NOT NULL,
  cached_prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost_usd REAL NOT NULL,
  latency_ms REAL NOT NULL,
  status INTEGER NOT NULL,
  decision TEXT NOT NULL DEFAULT '',  -- direct | local | cloud | cascade | escalated | shadow | judge
  compute_ms REAL NOT NULL DEFAULT 0,  -- local answers: share of the accelerator's busy time
  state TEXT NOT NULL DEFAULT 'settled',  -- pending | settled | crashed
  seq INTEGER NOT NULL DEFAULT 0);  -- the write that last changed the row (meta 'last_seq')
CREATE INDEX requests_team_time ON requests(team, unix_ms);
-- Few rows at any time (the calls in flight): finding them when opening costs no scan.
CREATE INDEX requests_pending ON requests(id) WHERE state = 'pending';
CREATE TABLE alerts(
  team TEXT NOT NULL,
  period TEXT NOT NULL,
  threshold REAL NOT NULL,
  unix_ms INTEGER NOT NULL,
  PRIMARY KEY(team, period, threshold));
)sql";

using sqlite::Use;

}  // namespace

api::StatusOr<std::unique_ptr<LedgerStore>> LedgerStore::open(const std::string& path) {
  if (path.empty()) return api::Status(api::ErrorCode::kIo, "ledger path is empty");
  std::string name = "ledger '" + path + "'";
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return api::Status(api::ErrorCode::kIo, name + ": is a directory, expected a database file");
  }
  // Opened (and created) here rather than by SQLite, for a clear error and for the lock.
  // 0600: the file holds every team's spend. SQLite creates -wal and -shm with its mode.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    std::string msg = name + ": cannot open or create: " +
                      std::error_code(err, std::generic_category()).message();
    if (err == ENOENT) msg += " (its parent directory must exist)";
    return api::Status(api::ErrorCode::kIo, msg);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return api::Status(api::ErrorCode::kIo,
                         name +
                             ": in use by another ledger (one process owns a ledger file: "
                             "budgets are held in its memory)");
    }
    return api::Status(
        api::ErrorCode::kIo,
        name + ": cannot lock: " + std::error_code(err, std::generic_category()).message());
  }
  std::unique_ptr<LedgerStore> store(new LedgerStore(path, fd));
  if (api::Status s = store->init(); !s.ok()) return s;
  return store;
}

LedgerStore::~LedgerStore() {
  // Statements before their connections, and the lock fd last: closing any fd of the file
  // drops the POSIX locks this process holds on it, which SQLite relies on.
  put_row_.reset();
  remove_pending_.reset();
  put_alert_.reset();
  set_last_seq_.reset();
  begin_.reset();
  commit_.reset();
  rollback_.reset();
  sum_.reset();
  last_id_.reset();
  teams_.reset();
  breakdown_.reset();
  admin_db_.reset();
  sum_db_.reset();
  write_db_.reset();  // the last connection checkpoints the WAL into the database
  ::close(lock_fd_);
}

api::Status LedgerStore::error(sqlite3* db, const std::string& what) const {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_NOMEM;
  std::string detail = db ? sqlite3_errmsg(db) : "out of memory";
  std::string msg = "ledger '" + path_ + "': ";
  switch (code & 0xff) {
    case SQLITE_NOTADB:
      msg += "not a SQLite database (" + detail + ")";
      break;
    case SQLITE_CORRUPT:
      msg += "database is corrupt (" + what + ": " + detail + ")";
      break;
    default:
      msg += what + ": " + detail;
  }
  return api::Status(api::ErrorCode::kIo, msg);
}

api::Status LedgerStore::exec(sqlite3* db, const char* sql, const std::string& what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return error(db, what);
  return {};
}

api::StatusOr<LedgerStore::Stmt> LedgerStore::prepare(sqlite3* db, const char* sql) {
  auto s = sqlite::prepare(db, sql, SQLITE_PREPARE_PERSISTENT);
  if (!s.ok()) return error(db, "preparing a statement");
  return s;
}

api::Status LedgerStore::prepareInto(sqlite3* db, Stmt* out, const char* sql) {
  auto s = prepare(db, sql);
  if (!s.ok()) return s.status();
  *out = std::move(*s);
  return {};
}

api::StatusOr<LedgerStore::Db> LedgerStore::connect() {
  sqlite3* raw = nullptr;
  // NOMUTEX: each connection is used by one thread at a time (see the header).
  int rc =
      sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) return error(db.get(), "cannot open");
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  // WAL + NORMAL: a commit survives a crash of the process (a power loss may undo the last
  // ones, never corrupt the file).
  if (api::Status s = exec(db.get(), "PRAGMA synchronous=NORMAL", "configuring"); !s.ok()) {
    return s;
  }
  return db;
}

api::Status LedgerStore::createOrCheckSchema() {
  sqlite3* db = write_db_.get();
  if (api::Status s = exec(db, "BEGIN IMMEDIATE", "reading the schema"); !s.ok()) return s;
  auto fail = [&](api::Status s) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  };
  std::set<std::string> tables;
  {
    auto q = prepare(db, "SELECT name FROM sqlite_master WHERE type = 'table'");
    if (!q.ok()) return fail(q.status());
    Use use(q->get());
    int rc;
    while ((rc = use.step()) == SQLITE_ROW) tables.insert(use.columnText(0));
    if (rc != SQLITE_DONE) return fail(error(db, "reading the schema"));
  }
  std::string name = "ledger '" + path_ + "'";
  std::string want = std::to_string(kSchemaVersion);
  if (tables.count("meta") == 0) {
    if (!tables.empty()) {
      return fail(api::Status(api::ErrorCode::kConfig,
                              name + ": a SQLite database that is not a Switchyard ledger (it "
                                     "has tables but no meta table)"));
    }
    if (api::Status s = exec(db, kSchemaSql, "creating the schema"); !s.ok()) return fail(s);
    std::string meta = "INSERT INTO meta(key, value) VALUES('schema_version', '" + want + "')";
    if (api::Status s = exec(db, meta.c_str(), "creating the schema"); !s.ok()) return fail(s);
  } else {
    std::string version;
    {
      auto q = prepare(db, "SELECT value FROM meta WHERE key = 'schema_version'");
      if (!q.ok()) return fail(q.status());
      Use use(q->get());
      int rc = use.step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(error(db, "reading the schema"));
      if (rc == SQLITE_ROW) version = use.columnText(0);
    }
    if (api::Status s = upgradeSchema(&version); !s.ok()) return fail(s);
    if (version != want) {
      return fail(api::Status(api::ErrorCode::kConfig,
                              name + ": schema version " +
                                  (version.empty() ? "(none)" : "'" + version + "'") +
                                  " is not supported (this build reads version " + want + ")"));
    }
  }
  return exec(db, "COMMIT", "creating the schema");
}

// Within createOrCheckSchema's transaction: one step at a time, up to this build's version.
api::Status LedgerStore::upgradeSchema(std::string* version) {
  sqlite3* db = write_db_.get();
  if (*version == "1") {
    if (api::Status s = exec(db, kMigrateV1Sql, "upgrading the schema from version 1"); !s.ok()) {
      return s;
    }
    *version = "2";
  }
  if (*version == "2") {
    if (api::Status s = exec(db, kMigrateV2Sql, "upgrading the schema from version 2"); !s.ok()) {
      return s;
    }
    *version = "3";
  }
  return {};
}

api::Status LedgerStore::init() {
  auto w = connect();
  if (!w.ok()) return w.status();
  write_db_ = std::move(*w);
  {
    // The first statement that reads the file: one that is not a database fails here.
    auto q = prepare(write_db_.get(), "PRAGMA journal_mode=WAL");
    if (!q.ok()) return q.status();
    Use use(q->get());
    if (use.step() != SQLITE_ROW) return error(write_db_.get(), "switching to WAL mode");
    if (std::string mode = use.columnText(0); mode != "wal") {
      return api::Status(
          api::ErrorCode::kIo,
          "ledger '" + path_ + "': cannot use WAL mode (journal mode is " + mode + ")");
    }
  }
  if (api::Status s = createOrCheckSchema(); !s.ok()) return s;

  auto sum = connect();
  if (!sum.ok()) return sum.status();
  sum_db_ = std::move(*sum);
  auto admin = connect();
  if (!admin.ok()) return admin.status();
  admin_db_ = std::move(*admin);
  // Checkpoints are the writer's job (after its commits).
  for (sqlite3* db : {sum_db_.get(), admin_db_.get()}) {
    if (api::Status s = exec(db, "PRAGMA wal_autocheckpoint=0", "configuring"); !s.ok()) return s;
  }

  sqlite3* wdb = write_db_.get();
  sqlite3* sdb = sum_db_.get();
  sqlite3* adb = admin_db_.get();
  for (api::Status s : {
           // REPLACE: settling a durable reservation rewrites its pending row, same id.
           prepareInto(wdb, &put_row_,
                       "INSERT OR REPLACE INTO requests(id, request_id, unix_ms, team, key_id, "
                       "model, route, kind, prompt_tokens, cached_prompt_tokens, "
                       "completion_tokens, cost_usd, latency_ms, status, decision, compute_ms, "
                       "state, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
                       "?13, ?14, ?15, ?16, ?17, ?18)"),
           prepareInto(wdb, &remove_pending_,
                       "DELETE FROM requests WHERE id = ?1 AND state = 'pending'"),
           prepareInto(wdb, &put_alert_,
                       "INSERT OR IGNORE INTO alerts(team, period, threshold, unix_ms) "
                       "VALUES(?1, ?2, ?3, ?4)"),
           prepareInto(wdb, &set_last_seq_,
                       "INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?1)"),
           prepareInto(wdb, &begin_, "BEGIN IMMEDIATE"),
           prepareInto(wdb, &commit_, "COMMIT"),
           prepareInto(wdb, &rollback_, "ROLLBACK"),
           prepareInto(sdb, &sum_,
                       "SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE team = ?1 AND "
                       "unix_ms >= ?2 AND unix_ms < ?3 AND seq <= ?4 AND state != 'pending'"),
           prepareInto(sdb, &last_id_, "SELECT COALESCE(MAX(id), 0) FROM requests"),
           // A skip scan of the (team, unix_ms) index: one seek per team, not one per row.
           prepareInto(sdb, &teams_,
                       "WITH RECURSIVE t(team) AS (SELECT MIN(team) FROM requests UNION ALL "
                       "SELECT (SELECT MIN(team) FROM requests WHERE team > t.team) FROM t "
                       "WHERE t.team IS NOT NULL) SELECT team FROM t WHERE team IS NOT NULL"),
           prepareInto(adb, &breakdown_,
                       "SELECT model, route, kind, SUM(state != 'pending'), "
                       "SUM(prompt_tokens), SUM(completion_tokens), "
                       "SUM(CASE WHEN state = 'pending' THEN 0 ELSE cost_usd END), "
                       "SUM(state = 'pending'), "
                       "SUM(CASE WHEN state = 'pending' THEN cost_usd ELSE 0 END) FROM requests "
                       "WHERE team = ?1 AND unix_ms >= ?2 AND unix_ms < ?3 "
                       "GROUP BY model, route, kind ORDER BY 7 DESC, 9 DESC, 1, 2, 3"),
       }) {
    if (!s.ok()) return s;
  }
  return {};
}

api::Status LedgerStore::bindAndStep(const LedgerWrite& w) {
  const LedgerRow& r = w.row;
  switch (w.kind) {
    case LedgerWrite::Kind::kRow: {
      Use q(put_row_.get());
      q.int64(1, w.id);
      q.text(2, r.request_id);
      q.int64(3, r.unix_ms);
      q.text(4, r.team);
      q.text(5, r.key_id);
      q.text(6, r.model);
      q.text(7, r.route);
      q.text(8, r.kind);
      q.int64(9, r.prompt_tokens);
      q.int64(10, r.cached_prompt_tokens);
      q.int64(11, r.completion_tokens);
      q.real(12, r.cost_usd);
      q.real(13, r.latency_ms);
      q.int64(14, r.status);
      q.text(15, r.decision);
      q.real(16, r.compute_ms);
      q.text(17, r.state);
      q.int64(18, w.seq);
      if (q.step() != SQLITE_DONE) return error(write_db_.get(), "writing rows");
      return {};
    }
    case LedgerWrite::Kind::kRemovePending: {
      Use q(remove_pending_.get());
      q.int64(1, w.id);
      if (q.step() != SQLITE_DONE) return error(write_db_.get(), "removing a reservation");
      return {};
    }
    case LedgerWrite::Kind::kAlert: {
      Use q(put_alert_.get());
      q.text(1, r.team);
      q.text(2, w.period);
      q.real(3, w.threshold);
      q.int64(4, r.unix_ms);
      if (q.step() != SQLITE_DONE) return error(write_db_.get(), "recording an alert");
      return {};
    }
  }
  return {};
}

api::Status LedgerStore::writeBatch(const std::vector<const LedgerWrite*>& writes) {
  sqlite3* db = write_db_.get();
  {
    Use begin(begin_.get());
    if (begin.step() != SQLITE_DONE) return error(db, "beginning a transaction");
  }
  api::Status status;
  for (const LedgerWrite* w : writes) {
    status = bindAndStep(*w);
    if (!status.ok()) break;
  }
  if (status.ok() && !writes.empty()) {
    Use q(set_last_seq_.get());
    q.int64(1, writes.back()->seq);
    if (q.step() != SQLITE_DONE) status = error(db, "writing rows");
  }
  if (status.ok()) {
    Use commit(commit_.get());
    if (commit.step() == SQLITE_DONE) return {};
    status = error(db, "committing rows");
  }
  if (sqlite3_get_autocommit(db) == 0) {
    Use rollback(rollback_.get());
    rollback.step();
  }
  return status;
}

api::Status LedgerStore::probe() {
  // Through the same statements as real rows, so that whatever makes them fail (a full disk,
  // a read-only file, a trigger) makes the probe fail too. Row ids start at 1: 0 is free.
  LedgerWrite w;
  w.id = 0;
  w.row.state = "pending";
  w.seq = 0;
  LedgerWrite remove = w;
  remove.kind = LedgerWrite::Kind::kRemovePending;
  sqlite3* db = write_db_.get();
  {
    Use begin(begin_.get());
    if (begin.step() != SQLITE_DONE) return error(db, "beginning a transaction");
  }
  api::Status status = bindAndStep(w);
  if (status.ok()) status = bindAndStep(remove);
  if (status.ok()) {
    Use commit(commit_.get());
    if (commit.step() == SQLITE_DONE) return {};
    status = error(db, "committing rows");
  }
  if (sqlite3_get_autocommit(db) == 0) {
    Use rollback(rollback_.get());
    rollback.step();
  }
  return status;
}

api::StatusOr<CrashedRows> LedgerStore::settleCrashed() {
  sqlite3* db = sum_db_.get();
  if (api::Status s = exec(db, "BEGIN IMMEDIATE", "settling crashed reservations"); !s.ok()) {
    return s;
  }
  CrashedRows out;
  {
    auto q = prepare(db,
                     "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM requests "
                     "WHERE state = 'pending'");
    if (!q.ok()) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return q.status();
    }
    Use use(q->get());
    if (use.step() != SQLITE_ROW) {
      api::Status s = error(db, "settling crashed reservations");
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return s;
    }
    out.count = use.columnInt64(0);
    out.usd = use.columnDouble(1);
  }
  if (out.count == 0) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return out;
  }
  const char* sql = "UPDATE requests SET state = 'crashed' WHERE state = 'pending'; COMMIT";
  if (api::Status s = exec(db, sql, "settling crashed reservations"); !s.ok()) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  }
  return out;
}

api::StatusOr<int64_t> LedgerStore::lastId() {
  Use q(last_id_.get());
  if (q.step() != SQLITE_ROW) return error(sum_db_.get(), "reading the last row id");
  return q.columnInt64(0);
}

api::StatusOr<int64_t> LedgerStore::lastSeq() {
  auto q = prepare(sum_db_.get(), "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq'");
  if (!q.ok()) return q.status();
  Use use(q->get());
  int rc = use.step();
  if (rc == SQLITE_DONE) return int64_t{0};  // nothing written since version 3
  if (rc != SQLITE_ROW) return error(sum_db_.get(), "reading the last write");
  return use.columnInt64(0);
}

api::StatusOr<std::vector<AlertKey>> LedgerStore::alerts() {
  auto q = prepare(sum_db_.get(), "SELECT team, period, threshold FROM alerts");
  if (!q.ok()) return q.status();
  Use use(q->get());
  std::vector<AlertKey> out;
  int rc;
  while ((rc = use.step()) == SQLITE_ROW) {
    out.push_back(AlertKey{use.columnText(0), use.columnText(1), use.columnDouble(2)});
  }
  if (rc != SQLITE_DONE) return error(sum_db_.get(), "reading the alerts");
  return out;
}

api::StatusOr<std::vector<std::string>> LedgerStore::teams() {
  Use q(teams_.get());
  std::vector<std::string> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(q.columnText(0));
  if (rc != SQLITE_DONE) return error(sum_db_.get(), "listing teams");
  return out;
}

api::StatusOr<double> LedgerStore::sumCost(const std::string& team, int64_t start_ms,
                                           int64_t end_ms, int64_t max_seq) {
  Use q(sum_.get());
  q.text(1, team);
  q.int64(2, start_ms);
  q.int64(3, end_ms);
  q.int64(4, max_seq);
  if (q.step() != SQLITE_ROW) return error(sum_db_.get(), "reading the spend of '" + team + "'");
  return q.columnDouble(0);
}

api::StatusOr<std::vector<SpendBreakdownRow>> LedgerStore::breakdown(const std::string& team,
                                                                     int64_t start_ms,
                                                                     int64_t end_ms) {
  std::lock_guard<std::mutex> lock(admin_mu_);
  Use q(breakdown_.get());
  q.text(1, team);
  q.int64(2, start_ms);
  q.int64(3, end_ms);
  std::vector<SpendBreakdownRow> rows;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    SpendBreakdownRow r;
    r.model = q.columnText(0);
    r.route = q.columnText(1);
    r.kind = q.columnText(2);
    r.requests = q.columnInt64(3);
    r.prompt_tokens = q.columnInt64(4);
    r.completion_tokens = q.columnInt64(5);
    r.cost_usd = q.columnDouble(6);
    r.pending = q.columnInt64(7);
    r.pending_usd = q.columnDouble(8);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return error(admin_db_.get(), "reading the breakdown of '" + team + "'");
  return rows;
}

}  // namespace policies
