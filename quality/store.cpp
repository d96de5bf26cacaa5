#include "quality/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>
#include <set>
#include <system_error>
#include <utility>

#include "quality/pg_store.h"
#include "quality/store_codec.h"

namespace quality {
namespace {

// How long a connection waits for another one's lock before a write (or the open) gives up.
constexpr int kBusyTimeoutMs = 5'000;
// Rows deleted per prune transaction: small enough that the writer's lock and the WAL stay
// short, large enough that a big prune is not dominated by commits.
constexpr int64_t kPruneChunkRows = 5'000;
// The WAL file is cut back to this after a checkpoint (a large prune may have grown it).
constexpr int64_t kWalSizeLimitBytes = 64LL << 20;
constexpr int64_t kMsPerDay = 86'400'000;
constexpr const char* kStoreKey = "switchyard-quality";

const char* const kSchemaSql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  team TEXT NOT NULL,
  kind TEXT NOT NULL,                -- escalation | shadow
  model TEXT NOT NULL,
  reason TEXT NOT NULL,
  prompt TEXT,                       -- JSON; NULL for a null prompt (redacted)
  redacted INTEGER NOT NULL,
  local_model TEXT NOT NULL, local_text TEXT NOT NULL, local_complete INTEGER NOT NULL,
  local_finish_reason TEXT NOT NULL, local_prompt_tokens INTEGER NOT NULL,
  local_completion_tokens INTEGER NOT NULL, local_cost_usd REAL NOT NULL,
  local_latency_ms REAL NOT NULL,
  cloud_model TEXT NOT NULL, cloud_text TEXT NOT NULL, cloud_complete INTEGER NOT NULL,
  cloud_finish_reason TEXT NOT NULL, cloud_prompt_tokens INTEGER NOT NULL,
  cloud_completion_tokens INTEGER NOT NULL, cloud_cost_usd REAL NOT NULL,
  cloud_latency_ms REAL NOT NULL,
  complexity REAL,                   -- NULL: absent
  complexity_features TEXT NOT NULL, -- JSON [[name, value], ...]
  confidence REAL,
  confidence_features TEXT NOT NULL,
  -- metrics_exact_match NULL: no metrics (then every metrics_* is NULL)
  metrics_exact_match INTEGER, metrics_token_f1 REAL, metrics_rouge_l REAL,
  metrics_length_ratio REAL, metrics_json_both_parse INTEGER, metrics_json_agree INTEGER,
  -- judge_status NULL: not judged (then every judge_* is NULL)
  judge_status TEXT, judge_model TEXT, judge_delta REAL, judge_agreement INTEGER,
  judge_verdict_ab TEXT, judge_verdict_ba TEXT, judge_detail TEXT, judge_cost_usd REAL,
  judge_unix_ms INTEGER,
  sampling_p REAL NOT NULL DEFAULT 1); -- the record's sampling probability (version 2)
CREATE INDEX records_team_time ON records(team, unix_ms);
CREATE INDEX records_time ON records(unix_ms);
CREATE INDEX records_request ON records(request_id);
CREATE TABLE feedback(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  team TEXT NOT NULL,
  request_id TEXT NOT NULL,
  score REAL NOT NULL,                -- as sent, on `scale`
  comment TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  scale TEXT NOT NULL DEFAULT 'unit'); -- unit | thumbs | stars (version 2)
CREATE INDEX feedback_request ON feedback(team, request_id, unix_ms);
)sql";

// From schema version 1 to 2: the columns version 2 added, with the values version 1 meant
// (every record made always, every feedback score on the unit scale).
const char* const kMigrateV1Sql = R"sql(
ALTER TABLE records ADD COLUMN sampling_p REAL NOT NULL DEFAULT 1;
ALTER TABLE feedback ADD COLUMN scale TEXT NOT NULL DEFAULT 'unit';
UPDATE meta SET value = '2' WHERE key = 'schema_version';
)sql";

using policies::sqlite::Use;
using namespace codec;

// A statement of this file with the codec's verbs (store_codec.h): SQLite keeps every text as
// TEXT.
struct Row : Use {
  using Use::Use;
  void name(int i, std::string_view v) { text(i, v); }
  std::string columnName(int c) const { return columnText(c); }
};

std::string errnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

// ---- Opening ----

api::StatusOr<std::unique_ptr<QualityStore>> QualityStore::open(const std::string& path_or_url,
                                                                bool read_only) {
  if (isPostgresUrl(path_or_url)) {
    policies::PgDatabaseOptions o;
    // A read-only open is a report or an export reading every record of a range at once.
    if (read_only) o.statement_timeout = std::chrono::minutes(10);
    return openPostgresQualityStore(path_or_url, o, read_only);
  }
  return SqliteQualityStore::open(path_or_url, read_only);
}

api::Status QualityStore::readOnlyError() const {
  return api::Status(api::ErrorCode::kIo, "quality store '" + path_ + "': opened read-only");
}

api::Status QualityStore::checkRetention(const Retention& r) {
  for (auto [value, name] : {std::pair<int64_t, const char*>{r.max_age_days, "max_age_days"},
                             {r.max_rows, "max_rows"},
                             {r.max_bytes, "max_bytes"}}) {
    if (value < 0) {
      return api::invalidRequest(std::string("retention ") + name + " must be >= 0 (0: no limit)",
                                 name);
    }
  }
  return {};
}

api::StatusOr<std::unique_ptr<QualityStore>> SqliteQualityStore::open(const std::string& path,
                                                                      bool read_only) {
  if (path.empty()) return api::Status(api::ErrorCode::kIo, "quality store path is empty");
  std::string name = "quality store '" + path + "'";
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return api::Status(api::ErrorCode::kIo, name + ": is a directory, expected a database file");
  }
  // Opened here first for an error that says what is wrong (SQLite only says "unable to open
  // database file"); a writer creates the file.
  // 0600: records hold prompts and answers. SQLite gives the -wal and -shm files the mode of
  // the database file, so they are private too.
  int fd =
      ::open(path.c_str(), read_only ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    std::string msg;
    if (read_only) {
      msg = name + ": cannot open for reading: " + errnoText(err);
    } else {
      msg = name + ": cannot open or create: " + errnoText(err);
      if (err == ENOENT) msg += " (its parent directory must exist)";
    }
    return api::Status(api::ErrorCode::kIo, msg);
  }
  ::close(fd);
  std::unique_ptr<SqliteQualityStore> store(new SqliteQualityStore(path, read_only));
  if (api::Status s = store->init(); !s.ok()) return s;
  return std::unique_ptr<QualityStore>(std::move(store));
}

SqliteQualityStore::~SqliteQualityStore() {
  // Statements before their connection; the writer last, so that it checkpoints the WAL.
  begin_.reset();
  commit_.reset();
  rollback_.reset();
  insert_.reset();
  set_metrics_.reset();
  set_judge_.reset();
  feedback_target_.reset();
  drop_feedback_.reset();
  add_feedback_.reset();
  read_db_.reset();
  write_db_.reset();
}

api::Status SqliteQualityStore::error(sqlite3* db, const std::string& what) const {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_NOMEM;
  std::string detail = db ? sqlite3_errmsg(db) : "out of memory";
  std::string msg = "quality store '" + path_ + "': ";
  switch (code & 0xff) {
    case SQLITE_NOTADB:
      msg += "not a SQLite database (" + detail + ")";
      break;
    case SQLITE_CORRUPT:
      msg += "not a SQLite database, or a corrupt or truncated one (" + what + ": " + detail + ")";
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      msg += "locked by another connection (" + what + ": " + detail + ")";
      break;
    case SQLITE_FULL:
      msg += "disk full (" + what + ": " + detail + ")";
      break;
    default:
      msg += what + ": " + detail;
  }
  return api::Status(api::ErrorCode::kIo, msg);
}

api::Status SqliteQualityStore::exec(sqlite3* db, const char* sql, const std::string& what) const {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return error(db, what);
  return {};
}

api::StatusOr<SqliteQualityStore::Stmt> SqliteQualityStore::prepare(sqlite3* db, const char* sql,
                                                                    bool persistent) const {
  auto s = policies::sqlite::prepare(db, sql, persistent ? SQLITE_PREPARE_PERSISTENT : 0);
  if (!s.ok()) return error(db, "preparing a statement");
  return s;
}

api::StatusOr<SqliteQualityStore::Db> SqliteQualityStore::connect(bool read_only) {
  sqlite3* raw = nullptr;
  // NOMUTEX: each connection is used under its own mutex (see the header).
  int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path_.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) return error(db.get(), "cannot open");
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  return db;
}

api::Status SqliteQualityStore::checkSchema(sqlite3* db, bool may_create) {
  // A writer takes the write lock at once, so that two processes creating one file do not both
  // create the schema; a reader only needs a consistent snapshot.
  if (api::Status s = exec(db, may_create ? "BEGIN IMMEDIATE" : "BEGIN", "reading the schema");
      !s.ok()) {
    return s;
  }
  auto fail = [&](api::Status s) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  };
  std::set<std::string> tables;
  {
    // The first statement that reads the file: one that is not a database fails here.
    auto q = prepare(db, "SELECT name FROM sqlite_master WHERE type = 'table'", false);
    if (!q.ok()) return fail(q.status());
    Use use(q->get());
    int rc;
    while ((rc = use.step()) == SQLITE_ROW) tables.insert(use.columnText(0));
    if (rc != SQLITE_DONE) return fail(error(db, "reading the schema"));
  }
  std::string name = "quality store '" + path_ + "'";
  std::string want = std::to_string(kSchemaVersion);
  if (tables.empty()) {
    if (!may_create) {
      return fail(api::Status(api::ErrorCode::kConfig,
                              name + ": an empty SQLite database, not a Switchyard quality store"));
    }
    if (api::Status s = exec(db, kSchemaSql, "creating the schema"); !s.ok()) return fail(s);
    std::string meta = "INSERT INTO meta(key, value) VALUES('store', '" + std::string(kStoreKey) +
                       "'), ('schema_version', '" + want + "')";
    if (api::Status s = exec(db, meta.c_str(), "creating the schema"); !s.ok()) return fail(s);
    return exec(db, "COMMIT", "creating the schema");
  }
  std::string store_key, version;
  if (tables.count("meta") != 0) {
    // A meta table of another shape (no key or value column) fails to prepare: then this is a
    // foreign database, reported below.
    auto q =
        prepare(db, "SELECT key, value FROM meta WHERE key IN ('store', 'schema_version')", false);
    if (q.ok()) {
      Use use(q->get());
      int rc;
      while ((rc = use.step()) == SQLITE_ROW) {
        (use.columnText(0) == "store" ? store_key : version) = use.columnText(1);
      }
      if (rc != SQLITE_DONE) return fail(error(db, "reading the schema"));
    }
  }
  if (store_key != kStoreKey) {
    std::string list;
    for (const std::string& t : tables) list += (list.empty() ? "" : ", ") + t;
    return fail(api::Status(api::ErrorCode::kConfig,
                            name +
                                ": a SQLite database that is not a Switchyard quality store "
                                "(tables: " +
                                list + ")"));
  }
  if (version == "1") {
    // A store written before sampling_p and feedback scales: a writer migrates it in this
    // transaction; a reader reads it as version 1 (store_codec.h selectColumns).
    if (may_create) {
      if (api::Status s = exec(db, kMigrateV1Sql, "migrating the schema from version 1"); !s.ok()) {
        return fail(s);
      }
    }
    schema_version_ = may_create ? kSchemaVersion : 1;
    return exec(db, "COMMIT", may_create ? "migrating the schema" : "reading the schema");
  }
  if (version != want) {
    return fail(api::Status(api::ErrorCode::kConfig,
                            name + ": schema version " +
                                (version.empty() ? "(none)" : "'" + version + "'") +
                                " is not supported (this build reads version " + want + ")"));
  }
  return exec(db, "COMMIT", "reading the schema");
}

api::Status SqliteQualityStore::init() {
  if (!read_only_) {
    auto w = connect(false);
    if (!w.ok()) return w.status();
    write_db_ = std::move(*w);
    sqlite3* db = write_db_.get();
    // The schema is created or checked before the switch to WAL mode: a file that is not a
    // store is left as it was, and auto_vacuum can only be switched on while the file is
    // empty (on an existing database this pragma does nothing).
    if (api::Status s = exec(db, "PRAGMA auto_vacuum=INCREMENTAL", "configuring"); !s.ok()) {
      return s;
    }
    if (api::Status s = checkSchema(db, true); !s.ok()) return s;
    {
      auto q = prepare(db, "PRAGMA journal_mode=WAL", false);
      if (!q.ok()) return q.status();
      Use use(q->get());
      if (use.step() != SQLITE_ROW) return error(db, "switching to WAL mode");
      if (std::string mode = use.columnText(0); mode != "wal") {
        return api::Status(
            api::ErrorCode::kIo,
            "quality store '" + path_ + "': cannot use WAL mode (journal mode is " + mode + ")");
      }
    }
    // NORMAL: a commit survives a crash of the process; a power loss may undo the last ones,
    // never corrupt the file.
    std::string pragmas = "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=" +
                          std::to_string(kWalSizeLimitBytes);
    if (api::Status s = exec(db, pragmas.c_str(), "configuring"); !s.ok()) return s;
    if (api::Status s = prepareWriteStatements(); !s.ok()) return s;
  }
  auto r = connect(true);
  if (!r.ok()) return r.status();
  read_db_ = std::move(*r);
  if (read_only_) return checkSchema(read_db_.get(), false);
  return {};
}

api::Status SqliteQualityStore::prepareWriteStatements() {
  sqlite3* db = write_db_.get();
  std::string insert = std::string("INSERT INTO records(") + kRecordColumns + ") VALUES(";
  for (int i = 1; i <= kRecordColumnCount; ++i) {
    insert += (i > 1 ? ", ?" : "?") + std::to_string(i);
  }
  insert += ")";
  struct Target {
    Stmt* stmt;
    std::string sql;
  };
  for (Target& t : std::vector<Target>{
           {&begin_, "BEGIN IMMEDIATE"},
           {&commit_, "COMMIT"},
           {&rollback_, "ROLLBACK"},
           {&insert_, insert},
           {&set_metrics_,
            "UPDATE records SET metrics_exact_match = ?2, metrics_token_f1 = ?3, "
            "metrics_rouge_l = ?4, metrics_length_ratio = ?5, metrics_json_both_parse = ?6, "
            "metrics_json_agree = ?7 WHERE id = ?1"},
           {&set_judge_,
            "UPDATE records SET judge_status = ?2, judge_model = ?3, judge_delta = ?4, "
            "judge_agreement = ?5, judge_verdict_ab = ?6, judge_verdict_ba = ?7, "
            "judge_detail = ?8, judge_cost_usd = ?9, judge_unix_ms = ?10 WHERE id = ?1"},
           {&feedback_target_,
            "SELECT EXISTS(SELECT 1 FROM records WHERE request_id = ?2 AND team = ?1)"},
           // One row per (team, request_id): a feedback replaces those not newer than itself
           // and is kept only when none newer is left.
           {&drop_feedback_,
            "DELETE FROM feedback WHERE team = ?1 AND request_id = ?2 AND unix_ms <= ?3"},
           {&add_feedback_,
            "INSERT INTO feedback(team, request_id, score, comment, unix_ms, scale) "
            "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS "
            "(SELECT 1 FROM feedback WHERE team = ?1 AND request_id = ?2)"},
       }) {
    auto s = prepare(db, t.sql.c_str(), true);
    if (!s.ok()) return s.status();
    *t.stmt = std::move(*s);
  }
  return {};
}

// ---- Writes ----

api::Status SqliteQualityStore::rolledBackError() const {
  return api::Status(api::ErrorCode::kIo, "quality store '" + path_ +
                                              "': the transaction was rolled back by an earlier "
                                              "error");
}

api::Status SqliteQualityStore::inTransaction(const std::function<api::Status()>& body,
                                              const std::string& what, bool outer) {
  sqlite3* db = write_db_.get();
  if (in_transaction_ && !outer) {
    // SQLite rolls a transaction back by itself after some errors (a full disk, I/O errors);
    // a write after that must not commit on its own while the caller's batch is reported
    // failed.
    if (sqlite3_get_autocommit(db) != 0) return rolledBackError();
    return body();
  }
  {
    Use begin(begin_.get());
    if (begin.step() != SQLITE_DONE) return error(db, "beginning a transaction");
  }
  in_transaction_ = outer;
  api::Status status = body();
  in_transaction_ = false;
  if (status.ok() && sqlite3_get_autocommit(db) != 0) return rolledBackError();
  if (status.ok()) {
    Use commit(commit_.get());
    if (commit.step() == SQLITE_DONE) return {};
    status = error(db, what);
  }
  if (sqlite3_get_autocommit(db) == 0) {
    Use rollback(rollback_.get());
    rollback.step();
  }
  return status;
}

api::Status SqliteQualityStore::write(const std::function<api::Status(sqlite3*)>& body,
                                      const std::string& what) {
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  return inTransaction([&] { return body(write_db_.get()); }, what, false);
}

api::Status SqliteQualityStore::transaction(const std::function<api::Status()>& body) {
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  if (in_transaction_) return api::Status(api::ErrorCode::kInternal, "nested transaction()");
  return inTransaction(body, "committing", true);
}

api::StatusOr<int64_t> SqliteQualityStore::insert(const QualityRecord& r) {
  int64_t id = 0;
  api::Status s = write(
      [&](sqlite3* db) -> api::Status {
        Row q(insert_.get());
        bindRecord(q, r);
        if (q.step() != SQLITE_DONE) {
          return error(db, "writing the record of request '" + r.request_id + "'");
        }
        id = sqlite3_last_insert_rowid(db);
        return {};
      },
      "committing a record");
  if (!s.ok()) return s;
  return id;
}

api::Status SqliteQualityStore::setMetrics(int64_t id, const TextMetrics& m) {
  bool found = false;
  api::Status s = write(
      [&](sqlite3* db) -> api::Status {
        Row q(set_metrics_.get());
        q.int64(1, id);
        bindMetrics(q, 2, m);
        if (q.step() != SQLITE_DONE) {
          return error(db, "writing metrics of record " + std::to_string(id));
        }
        found = sqlite3_changes(db) > 0;
        return {};
      },
      "committing metrics");
  return s.ok() && !found ? notFound(id) : s;
}

api::Status SqliteQualityStore::setJudge(int64_t id, const JudgeResult& j) {
  bool found = false;
  api::Status s = write(
      [&](sqlite3* db) -> api::Status {
        Row q(set_judge_.get());
        q.int64(1, id);
        bindJudge(q, 2, j);
        if (q.step() != SQLITE_DONE) {
          return error(db, "writing the judge of record " + std::to_string(id));
        }
        found = sqlite3_changes(db) > 0;
        return {};
      },
      "committing a judge result");
  return s.ok() && !found ? notFound(id) : s;
}

api::Status SqliteQualityStore::notFound(int64_t id) const {
  return api::Status(api::ErrorCode::kNotFound,
                     "quality store '" + path_ + "': no record " + std::to_string(id));
}

api::Status SqliteQualityStore::addFeedback(const Feedback& f) {
  bool found = false;
  api::Status s = write(
      [&](sqlite3* db) -> api::Status {
        const std::string what = "writing feedback on request '" + f.request_id + "'";
        {
          Use target(feedback_target_.get());
          target.text(1, f.team);
          target.text(2, f.request_id);
          if (target.step() != SQLITE_ROW) return error(db, what);
          found = target.columnBool(0);
        }
        if (!found) return {};
        {
          Use drop(drop_feedback_.get());
          drop.text(1, f.team);
          drop.text(2, f.request_id);
          drop.int64(3, f.unix_ms);
          if (drop.step() != SQLITE_DONE) return error(db, what);
        }
        Use q(add_feedback_.get());
        q.text(1, f.team);
        q.text(2, f.request_id);
        q.realExact(3, f.score);
        q.text(4, f.comment);
        q.int64(5, f.unix_ms);
        q.text(6, feedbackScaleName(f.scale));
        if (q.step() != SQLITE_DONE) return error(db, what);
        return {};
      },
      "committing feedback");
  if (s.ok() && !found) {
    return api::Status(api::ErrorCode::kNotFound, "quality store '" + path_ +
                                                      "': team '" + f.team +
                                                      "' has no record of request '" +
                                                      f.request_id + "'");
  }
  return s;
}

// ---- Reads ----

api::StatusOr<std::vector<QualityRecord>> SqliteQualityStore::query(const RecordFilter& f) const {
  if (f.limit < 0) {
    return api::invalidRequest("limit must be >= 0 (0: all), got " + std::to_string(f.limit),
                               "limit");
  }
  // The latest feedback of the record's (team, request_id), one index seek per record.
  std::string sql = "SELECT r.id, " + selectColumns("r", schema_version_) + ", " +
                    feedbackColumns("f", schema_version_) +
                    " FROM records r "
                    "LEFT JOIN feedback f ON f.id = (SELECT id FROM feedback "
                    "WHERE team = r.team AND request_id = r.request_id "
                    "ORDER BY unix_ms DESC, id DESC LIMIT 1) WHERE 1";
  if (f.team) sql += " AND r.team = :team";
  if (f.since_ms) sql += " AND r.unix_ms >= :since";
  if (f.until_ms) sql += " AND r.unix_ms < :until";
  if (f.kind) sql += " AND r.kind = :kind";
  sql += f.newest_first ? " ORDER BY r.unix_ms DESC, r.id DESC" : " ORDER BY r.unix_ms, r.id";
  sql += " LIMIT :limit";

  std::lock_guard<std::mutex> lock(read_mu_);
  sqlite3* db = read_db_.get();
  auto stmt = prepare(db, sql.c_str(), false);
  if (!stmt.ok()) return stmt.status();
  Row q(stmt->get());
  if (f.team) q.text(q.param(":team"), *f.team);
  if (f.since_ms) q.int64(q.param(":since"), *f.since_ms);
  if (f.until_ms) q.int64(q.param(":until"), *f.until_ms);
  if (f.kind) q.text(q.param(":kind"), kindName(*f.kind));
  q.int64(q.param(":limit"), f.limit == 0 ? -1 : f.limit);

  std::vector<QualityRecord> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    QualityRecord r;
    r.id = q.columnInt64(0);
    if (std::optional<std::string> wrong = readRecord(q, 1, &r)) {
      return api::Status(api::ErrorCode::kIo, "quality store '" + path_ + "': record " +
                                                  std::to_string(r.id) + " has " + *wrong);
    }
    if (std::optional<std::string> wrong = readFeedback(q, kRecordColumnCount + 1, &r)) {
      return api::Status(api::ErrorCode::kIo, "quality store '" + path_ + "': record " +
                                                  std::to_string(r.id) + " has " + *wrong);
    }
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return error(db, "reading records");
  return out;
}

api::StatusOr<StoreStats> SqliteQualityStore::stats() const {
  std::lock_guard<std::mutex> lock(read_mu_);
  sqlite3* db = read_db_.get();
  // One statement: one snapshot.
  auto q = prepare(db,
                   "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM feedback), "
                   "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())",
                   false);
  if (!q.ok()) return q.status();
  Use use(q->get());
  if (use.step() != SQLITE_ROW) return error(db, "reading statistics");
  return StoreStats{use.columnInt64(0), use.columnInt64(1), use.columnInt64(2)};
}

// ---- Retention ----

api::StatusOr<int64_t> SqliteQualityStore::writeInt(const char* sql) {
  sqlite3* db = write_db_.get();
  auto q = prepare(db, sql, false);
  if (!q.ok()) return q.status();
  Use use(q->get());
  if (use.step() != SQLITE_ROW) return error(db, "measuring the store");
  return use.columnInt64(0);
}

api::StatusOr<int64_t> SqliteQualityStore::deleteOldest(int64_t before_ms, int64_t n) {
  sqlite3* db = write_db_.get();
  int64_t deleted = 0;
  // The victims are chosen by the same subquery twice in one transaction: their feedback
  // first, while the records still name it.
  static const char* const kVictims =
      "SELECT id FROM records WHERE unix_ms < ?1 ORDER BY unix_ms, id LIMIT ?2";
  std::string feedback_sql = std::string(
                                 "DELETE FROM feedback WHERE (team, request_id) IN (SELECT team, "
                                 "request_id FROM records WHERE id IN (") +
                             kVictims + "))";
  std::string records_sql = std::string("DELETE FROM records WHERE id IN (") + kVictims + ")";
  api::Status s = inTransaction(
      [&]() -> api::Status {
        for (const std::string* sql : {&feedback_sql, &records_sql}) {
          auto q = prepare(db, sql->c_str(), false);
          if (!q.ok()) return q.status();
          Use use(q->get());
          use.int64(1, before_ms);
          use.int64(2, n);
          if (use.step() != SQLITE_DONE) return error(db, "deleting old records");
        }
        deleted = sqlite3_changes(db);  // of the last statement: the records
        return {};
      },
      "committing a prune", false);
  if (!s.ok()) return s;
  return deleted;
}

api::StatusOr<int64_t> SqliteQualityStore::prune(const Retention& r, int64_t now_ms) {
  if (api::Status s = checkRetention(r); !s.ok()) return s;
  if (read_only_) return readOnlyError();
  std::lock_guard<std::recursive_mutex> lock(write_mu_);
  sqlite3* db = write_db_.get();
  constexpr int64_t kNoCutoff = std::numeric_limits<int64_t>::max();
  int64_t deleted = 0;

  if (r.max_age_days > 0) {
    // Saturating: an age beyond the clock's range keeps everything.
    int64_t cutoff = std::numeric_limits<int64_t>::min();
    if (r.max_age_days <= std::numeric_limits<int64_t>::max() / kMsPerDay) {
      int64_t age_ms = r.max_age_days * kMsPerDay;
      if (now_ms >= std::numeric_limits<int64_t>::min() + age_ms) cutoff = now_ms - age_ms;
    }
    while (true) {
      auto n = deleteOldest(cutoff, kPruneChunkRows);
      if (!n.ok()) return n.status();
      deleted += *n;
      if (*n < kPruneChunkRows) break;
    }
    auto stmt = prepare(db, "DELETE FROM feedback WHERE unix_ms < ?1", false);
    if (!stmt.ok()) return stmt.status();
    Use del(stmt->get());
    del.int64(1, cutoff);
    if (del.step() != SQLITE_DONE) return error(db, "deleting old feedback");
  }

  // Feedback whose record is gone (written before feedback needed a record, or by a damaged
  // delete) is bounded by nothing else.
  if (api::Status s = exec(db,
                           "DELETE FROM feedback WHERE NOT EXISTS (SELECT 1 FROM records r "
                           "WHERE r.request_id = feedback.request_id AND r.team = feedback.team)",
                           "deleting feedback without a record");
      !s.ok()) {
    return s;
  }

  if (r.max_rows > 0) {
    auto count = writeInt("SELECT COUNT(*) FROM records");
    if (!count.ok()) return count.status();
    for (int64_t excess = *count - r.max_rows; excess > 0;) {
      auto n = deleteOldest(kNoCutoff, std::min(excess, kPruneChunkRows));
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      deleted += *n;
      excess -= *n;
    }
  }

  if (r.max_bytes > 0) {
    while (true) {
      auto used = writeInt(
          "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), "
          "pragma_freelist_count(), pragma_page_size()");
      if (!used.ok()) return used.status();
      if (*used <= r.max_bytes) break;
      auto count = writeInt("SELECT COUNT(*) FROM records");
      if (!count.ok()) return count.status();
      if (*count == 0) break;  // what is left is schema and feedback
      // The share of rows over the limit, as if every row took the same room; the loop
      // measures again, so a low guess only costs another round.
      double share = static_cast<double>(*used - r.max_bytes) / static_cast<double>(*used);
      auto want = static_cast<int64_t>(std::ceil(share * static_cast<double>(*count)));
      auto n = deleteOldest(kNoCutoff, std::clamp<int64_t>(want, 1, kPruneChunkRows));
      if (!n.ok()) return n.status();
      if (*n == 0) break;
      deleted += *n;
    }
  }

  if (deleted > 0 && !in_transaction_) {
    // Hand the freed pages back (the file shrinks at the checkpoint). PASSIVE never waits for
    // readers; pages a reader still needs are copied by a later checkpoint.
    if (api::Status s = exec(db, "PRAGMA incremental_vacuum", "returning free pages"); !s.ok()) {
      return s;
    }
    if (api::Status s = exec(db, "PRAGMA wal_checkpoint(PASSIVE)", "checkpointing"); !s.ok()) {
      return s;
    }
  }
  return deleted;
}

}  // namespace quality
