#include "gateway/response_store.h"

#include <sqlite3.h>

#include <mutex>
#include <pqxx/pqxx>
#include <utility>

#include "policies/pg_pool.h"
#include "policies/sqlite.h"

namespace gateway {
namespace {

constexpr int kBusyTimeoutMs = 5000;

using policies::sqlite::Use;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS responses ("
    " team TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " response TEXT NOT NULL, input TEXT NOT NULL, conversation TEXT NOT NULL,"
    " bytes INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (team, id));"
    "CREATE INDEX IF NOT EXISTS responses_team_seq ON responses(team, seq);"
    "CREATE INDEX IF NOT EXISTS responses_created ON responses(created_at);";

class SqliteResponseStore final : public ResponseStore {
 public:
  SqliteResponseStore(std::string path, sqlite3* db, int64_t max_bytes);
  api::Status put(const StoredResponse& r, int64_t now) override;
  api::StatusOr<std::optional<StoredResponse>> get(const std::string& team,
                                                   const std::string& id) override;
  api::StatusOr<bool> remove(const std::string& team, const std::string& id) override;
  api::Status error(const std::string& what) const;
  api::Status exec(const char* sql, const std::string& what);

 private:
  const std::string path_;
  policies::sqlite::Db db_;
  const int64_t max_bytes_;
  std::mutex mu_;
};

}  // namespace

api::StatusOr<std::unique_ptr<ResponseStore>> ResponseStore::open(const std::string& path,
                                                                  int64_t max_bytes_per_team) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  auto store = std::make_unique<SqliteResponseStore>(path, db, max_bytes_per_team);
  if (rc != SQLITE_OK) return store->error("cannot open");
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  if (path != ":memory:") {
    // WAL without an fsync per commit: a write is a few pages appended, on the thread that
    // finishes the answer; a crash may lose the last responses, never corrupt the file.
    if (api::Status s =
            store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", "setting WAL mode");
        !s.ok()) {
      return s;
    }
  }
  if (api::Status s = store->exec(kSchema, "creating the schema"); !s.ok()) return s;
  return std::unique_ptr<ResponseStore>(std::move(store));
}

SqliteResponseStore::SqliteResponseStore(std::string path, sqlite3* db, int64_t max_bytes)
    : path_(std::move(path)), db_(db), max_bytes_(max_bytes) {}

api::Status SqliteResponseStore::error(const std::string& what) const {
  std::string detail = db_ ? sqlite3_errmsg(db_.get()) : "out of memory";
  return api::Status(api::ErrorCode::kIo,
                     "response store '" + path_ + "': " + what + ": " + detail);
}

api::Status SqliteResponseStore::exec(const char* sql, const std::string& what) {
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) return error(what);
  return {};
}

api::Status SqliteResponseStore::put(const StoredResponse& r, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (api::Status s = exec("BEGIN IMMEDIATE", "storing a response"); !s.ok()) return s;
  auto fail = [&](const std::string& what) {
    api::Status s = error(what);
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  };
  {
    auto stmt = policies::sqlite::prepare(
        db_.get(),
        "INSERT OR REPLACE INTO responses (team, id, created_at, response, input,"
        " conversation, bytes, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM responses))");
    if (!stmt.ok()) return fail("storing a response");
    Use ins(stmt->get());
    ins.text(1, r.team);
    ins.text(2, r.id);
    ins.int64(3, r.created_at);
    ins.text(4, r.response);
    ins.text(5, r.input);
    ins.text(6, r.conversation);
    ins.int64(7, static_cast<int64_t>(r.response.size() + r.input.size() + r.conversation.size()));
    if (ins.step() != SQLITE_DONE) return fail("storing a response");
  }
  {
    auto stmt = policies::sqlite::prepare(db_.get(), "DELETE FROM responses WHERE created_at < ?1");
    if (!stmt.ok()) return fail("removing expired responses");
    Use expire(stmt->get());
    expire.int64(1, now - kMaxAgeSeconds);
    if (expire.step() != SQLITE_DONE) return fail("removing expired responses");
  }
  if (max_bytes_ > 0) {
    // The team's newest rows whose running total fits; the rest (its oldest) go.
    auto stmt = policies::sqlite::prepare(
        db_.get(),
        "DELETE FROM responses WHERE team = ?1 AND seq IN (SELECT seq FROM (SELECT seq,"
        " SUM(bytes) OVER (ORDER BY seq DESC) AS total FROM responses WHERE team = ?1)"
        " WHERE total > ?2)");
    if (!stmt.ok()) return fail("bounding the team's responses");
    Use bound(stmt->get());
    bound.text(1, r.team);
    bound.int64(2, max_bytes_);
    if (bound.step() != SQLITE_DONE) return fail("bounding the team's responses");
  }
  if (api::Status s = exec("COMMIT", "storing a response"); !s.ok()) return fail("committing");
  return {};
}

api::StatusOr<std::optional<StoredResponse>> SqliteResponseStore::get(const std::string& team,
                                                                      const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto stmt = policies::sqlite::prepare(db_.get(),
                                        "SELECT created_at, response, input, conversation"
                                        " FROM responses WHERE team = ?1 AND id = ?2");
  if (!stmt.ok()) return error("reading a response");
  Use q(stmt->get());
  q.text(1, team);
  q.text(2, id);
  const int rc = q.step();
  if (rc == SQLITE_DONE) return std::optional<StoredResponse>();
  if (rc != SQLITE_ROW) return error("reading a response");
  StoredResponse r;
  r.id = id;
  r.team = team;
  r.created_at = q.columnInt64(0);
  r.response = q.columnText(1);
  r.input = q.columnText(2);
  r.conversation = q.columnText(3);
  return std::optional<StoredResponse>(std::move(r));
}

api::StatusOr<bool> SqliteResponseStore::remove(const std::string& team, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto stmt =
      policies::sqlite::prepare(db_.get(), "DELETE FROM responses WHERE team = ?1 AND id = ?2");
  if (!stmt.ok()) return error("deleting a response");
  Use del(stmt->get());
  del.text(1, team);
  del.text(2, id);
  if (del.step() != SQLITE_DONE) return error("deleting a response");
  return sqlite3_changes(db_.get()) > 0;
}

// ---- PostgreSQL ----

namespace {

const char* const kPgSchema = R"sql(
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE SEQUENCE IF NOT EXISTS switchyard.responses_seq;
CREATE TABLE IF NOT EXISTS switchyard.responses(
  team TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at BIGINT NOT NULL,            -- unix seconds
  response TEXT NOT NULL,
  input TEXT NOT NULL,
  conversation TEXT NOT NULL,
  bytes BIGINT NOT NULL,
  seq BIGINT NOT NULL DEFAULT nextval('switchyard.responses_seq'),  -- write order
  PRIMARY KEY(team, id));
CREATE INDEX IF NOT EXISTS responses_team_seq ON switchyard.responses(team, seq);
CREATE INDEX IF NOT EXISTS responses_created ON switchyard.responses(created_at);
)sql";

class PgResponseStore final : public ResponseStore {
 public:
  PgResponseStore(const std::string& url, int64_t max_bytes)
      : db_("response store", url, options()), max_bytes_(max_bytes) {}
  static policies::PgDatabaseOptions options() {
    policies::PgDatabaseOptions o;
    o.application_name = "switchyard-responses";
    return o;
  }

  api::Status init() {
    api::Status st = db_.transact("creating the schema", [](pqxx::transaction_base& tx) {
      // Replicas starting together: one creates, the others then find it.
      tx.exec("SELECT pg_advisory_xact_lock(7365792796174)");
      tx.exec(kPgSchema);
      return api::Status();
    });
    return st.ok() ? st : api::Status(api::ErrorCode::kIo, st.message());
  }

  api::Status put(const StoredResponse& r, int64_t now) override {
    return db_.transact("storing a response", [&](pqxx::transaction_base& tx) {
      tx.exec_params(
          "INSERT INTO switchyard.responses(team, id, created_at, response, input, "
          "conversation, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (team, id) DO "
          "UPDATE SET created_at = EXCLUDED.created_at, response = EXCLUDED.response, input = "
          "EXCLUDED.input, conversation = EXCLUDED.conversation, bytes = EXCLUDED.bytes, seq = "
          "nextval('switchyard.responses_seq')",
          r.team, r.id, r.created_at, r.response, r.input, r.conversation,
          static_cast<int64_t>(r.response.size() + r.input.size() + r.conversation.size()));
      tx.exec_params("DELETE FROM switchyard.responses WHERE created_at < $1",
                     now - kMaxAgeSeconds);
      if (max_bytes_ > 0) {
        // The team's newest rows whose running total fits; the rest (its oldest) go.
        tx.exec_params(
            "DELETE FROM switchyard.responses WHERE team = $1 AND seq IN (SELECT seq FROM "
            "(SELECT seq, SUM(bytes) OVER (ORDER BY seq DESC) AS total FROM "
            "switchyard.responses WHERE team = $1) t WHERE total > $2)",
            r.team, max_bytes_);
      }
      return api::Status();
    });
  }

  api::StatusOr<std::optional<StoredResponse>> get(const std::string& team,
                                                   const std::string& id) override {
    std::optional<StoredResponse> out;
    api::Status st = db_.transact("reading a response", [&](pqxx::transaction_base& tx) {
      pqxx::result q = tx.exec_params(
          "SELECT created_at, response, input, conversation FROM switchyard.responses WHERE "
          "team = $1 AND id = $2",
          team, id);
      if (q.empty()) return api::Status();
      StoredResponse r;
      r.id = id;
      r.team = team;
      r.created_at = q[0][0].as<int64_t>();
      r.response = q[0][1].as<std::string>();
      r.input = q[0][2].as<std::string>();
      r.conversation = q[0][3].as<std::string>();
      out = std::move(r);
      return api::Status();
    });
    if (!st.ok()) return st;
    return out;
  }

  api::StatusOr<bool> remove(const std::string& team, const std::string& id) override {
    bool removed = false;
    api::Status st = db_.transact("deleting a response", [&](pqxx::transaction_base& tx) {
      removed =
          tx.exec_params("DELETE FROM switchyard.responses WHERE team = $1 AND id = $2", team, id)
              .affected_rows() > 0;
      return api::Status();
    });
    if (!st.ok()) return st;
    return removed;
  }

 private:
  policies::PgDatabase db_;
  const int64_t max_bytes_;
};

}  // namespace

api::StatusOr<std::unique_ptr<ResponseStore>> ResponseStore::openPostgres(
    const std::string& url, int64_t max_bytes_per_team) {
  auto store = std::make_unique<PgResponseStore>(url, max_bytes_per_team);
  if (api::Status s = store->init(); !s.ok()) return s;
  return std::unique_ptr<ResponseStore>(std::move(store));
}

}  // namespace gateway
