// Older ledgers are upgraded in place when opened, keeping their rows: version 1 (before
// requests.decision and requests.compute_ms) and version 2 (before durable reservations).
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "policies/ledger.h"

namespace {

std::string query(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::string out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (!out.empty()) out += ";";
    const unsigned char* t = sqlite3_column_text(s, 0);
    out += t ? reinterpret_cast<const char*>(t) : "NULL";
  }
  sqlite3_finalize(s);
  return out;
}

TEST(LedgerMigration, VersionOneGainsDecisionAndComputeColumns) {
  auto dir = std::filesystem::temp_directory_path() /
             ("sy-ledger-mig-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ledger.db").string();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES('schema_version', '1');
      CREATE TABLE requests(id INTEGER PRIMARY KEY, request_id TEXT NOT NULL,
        unix_ms INTEGER NOT NULL, team TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
        route TEXT NOT NULL, kind TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
        cached_prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL);
      CREATE INDEX requests_team_time ON requests(team, unix_ms);
      CREATE TABLE alerts(team TEXT NOT NULL, period TEXT NOT NULL, threshold REAL NOT NULL,
        unix_ms INTEGER NOT NULL, PRIMARY KEY(team, period, threshold));
      INSERT INTO requests VALUES(1, 'r1', 1795446245000, 'acme', 'k', 'gpt-4o', 'openai/gpt-4o',
        'cloud', 10, 0, 5, 0.5, 12.0, 200);)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  {
    auto ledger = policies::openSqliteLedger(path);
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    EXPECT_DOUBLE_EQ((*ledger)->spent("acme", policies::Window::kMonth, 1795446245000).settled_usd,
                     0.5);
    policies::LedgerRow row;
    row.request_id = "r2";
    row.team = "acme";
    row.model = "auto";
    row.route = "local/gemma";
    row.kind = "local";
    row.decision = "cascade";
    row.compute_ms = 42.5;
    row.unix_ms = 1795446246000;
    ASSERT_TRUE((*ledger)->record(row).ok());
    ASSERT_TRUE((*ledger)->flush().ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(query(db, "SELECT value FROM meta WHERE key = 'schema_version'"), "3");
  EXPECT_EQ(query(db, "SELECT request_id || '|' || decision || '|' || compute_ms FROM requests "
                      "ORDER BY id"),
            "r1||0.0;r2|cascade|42.5");
  sqlite3_close(db);
  std::filesystem::remove_all(dir);
}

// A version-2 ledger (every row final, no state or seq) is upgraded in place: its rows are
// settled, count in the sums, and durable reservations work on it.
TEST(LedgerMigration, VersionTwoGainsStateAndDurableReservations) {
  auto dir =
      std::filesystem::temp_directory_path() / ("sy-ledger-mig2-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ledger.db").string();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v2 = R"sql(
      CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES('schema_version', '2');
      CREATE TABLE requests(id INTEGER PRIMARY KEY, request_id TEXT NOT NULL,
        unix_ms INTEGER NOT NULL, team TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
        route TEXT NOT NULL, kind TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
        cached_prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,
        decision TEXT NOT NULL DEFAULT '', compute_ms REAL NOT NULL DEFAULT 0);
      CREATE INDEX requests_team_time ON requests(team, unix_ms);
      CREATE TABLE alerts(team TEXT NOT NULL, period TEXT NOT NULL, threshold REAL NOT NULL,
        unix_ms INTEGER NOT NULL, PRIMARY KEY(team, period, threshold));
      INSERT INTO alerts VALUES('acme', '2026-11', 0.8, 1795446245000);
      INSERT INTO requests VALUES(1, 'r1', 1795446245000, 'acme', 'k', 'gpt-4o', 'openai/gpt-4o',
        'cloud', 10, 0, 5, 0.5, 12.0, 200, 'cloud', 0);
      INSERT INTO requests VALUES(2, 'r2', 1795446245001, 'acme', 'k', 'gpt-4o', 'openai/gpt-4o',
        'cloud', 10, 0, 5, 0.25, 12.0, 200, 'cloud', 0);)sql";
    ASSERT_EQ(sqlite3_exec(db, v2, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  {
    auto ledger = policies::openSqliteLedger(path);
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    policies::Spend s = (*ledger)->spent("acme", policies::Window::kMonth, 1795446245000);
    EXPECT_DOUBLE_EQ(s.settled_usd, 0.75);
    EXPECT_FALSE(*(*ledger)->markAlerted("acme", "2026-11", 0.8, 1795446245000));
    policies::ReservationRequest req;
    req.request_id = "r3";
    req.team = "acme";
    req.max_cost_usd = 0.125;
    req.now_ms = 1795446246000;
    auto id = (*ledger)->reserveDurable(req, nullptr);
    ASSERT_TRUE(id.ok()) << id.status().message();
    ASSERT_TRUE((*ledger)->flush().ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(query(db, "SELECT value FROM meta WHERE key = 'schema_version'"), "3");
  // The pending row r3 was left open at close, so it reads as pending until the next open.
  EXPECT_EQ(query(db,
                  "SELECT request_id || '|' || state || '|' || cost_usd FROM requests "
                  "ORDER BY id"),
            "r1|settled|0.5;r2|settled|0.25;r3|pending|0.125");
  EXPECT_EQ(query(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'requests_pending'"), "1");
  sqlite3_close(db);
  {
    auto ledger = policies::openSqliteLedger(path);
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    EXPECT_DOUBLE_EQ((*ledger)->spent("acme", policies::Window::kMonth, 1795446245000).settled_usd,
                     0.875);
  }
  std::filesystem::remove_all(dir);
}

TEST(LedgerMigration, NegativeComputeIsRefused) {
  auto dir = std::filesystem::temp_directory_path() /
             ("sy-ledger-neg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto ledger = policies::openSqliteLedger((dir / "ledger.db").string());
  ASSERT_TRUE(ledger.ok());
  policies::LedgerRow row;
  row.team = "acme";
  row.compute_ms = -1;
  EXPECT_FALSE((*ledger)->record(row).ok());
  ledger->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
