#include "policies/ledger_reader.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "policies/ledger.h"
#include "tests/policies/sqlite_test_util.h"

namespace {

namespace fs = std::filesystem;
using policies::LedgerRow;
using policies::readLedgerRows;

constexpr int64_t kNov23 = 1795446245000;  // 2026-11-23T15:04:05Z
constexpr int64_t kMinute = 60'000;

using policies_test::RawDb;
using policies_test::TempDir;

LedgerRow makeRow(const std::string& id, const std::string& team, int64_t unix_ms) {
  LedgerRow r;
  r.request_id = id;
  r.team = team;
  r.key_id = "notebook";
  r.model = "openai/gpt-4o-mini";
  r.route = "smart";
  r.kind = "cloud";
  r.decision = "escalated";
  r.compute_ms = 0;
  r.prompt_tokens = 120;
  r.cached_prompt_tokens = 20;
  r.completion_tokens = 33;
  r.cost_usd = 0.0125;
  r.latency_ms = 812.5;
  r.status = 200;
  r.unix_ms = unix_ms;
  return r;
}

LedgerRow localRow(const std::string& id, const std::string& team, int64_t unix_ms) {
  LedgerRow r = makeRow(id, team, unix_ms);
  r.model = "gemma-3-local";
  r.kind = "local";
  r.decision = "cascade";
  r.compute_ms = 41.25;
  r.cost_usd = 0;
  return r;
}

std::unique_ptr<policies::Ledger> mustOpen(const std::string& path) {
  auto l = policies::openSqliteLedger(path);
  EXPECT_TRUE(l.ok()) << l.status().message();
  return l.ok() ? std::move(*l) : nullptr;
}

void expectSameRow(const LedgerRow& got, const LedgerRow& want, bool has_new_columns) {
  EXPECT_EQ(got.request_id, want.request_id);
  EXPECT_EQ(got.team, want.team);
  EXPECT_EQ(got.key_id, want.key_id);
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.route, want.route);
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.prompt_tokens, want.prompt_tokens);
  EXPECT_EQ(got.cached_prompt_tokens, want.cached_prompt_tokens);
  EXPECT_EQ(got.completion_tokens, want.completion_tokens);
  EXPECT_DOUBLE_EQ(got.cost_usd, want.cost_usd);
  EXPECT_DOUBLE_EQ(got.latency_ms, want.latency_ms);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.unix_ms, want.unix_ms);
  if (has_new_columns) {
    EXPECT_EQ(got.decision, want.decision);
    EXPECT_DOUBLE_EQ(got.compute_ms, want.compute_ms);
  } else {
    EXPECT_EQ(got.decision, "");
    EXPECT_EQ(got.compute_ms, 0);
  }
}

TEST(LedgerReader, ReadsRowsWhileTheWriterHoldsTheFile) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  // Recorded out of time order: the reader sorts by unix_ms.
  std::vector<LedgerRow> written = {
      makeRow("r3", "research", kNov23 + 2 * kMinute),
      localRow("r1", "support", kNov23),
      makeRow("r2", "research", kNov23 + kMinute),
  };
  written[2].status = 429;
  written[2].cost_usd = 0;
  for (const LedgerRow& r : written) ASSERT_TRUE(ledger->record(r).ok());
  ASSERT_TRUE(ledger->flush().ok());

  // The writer's own schema decides whether decision and compute_ms are stored.
  bool has_new_columns = false;
  {
    RawDb raw(path);
    std::set<std::string> cols = raw.columns("requests");
    has_new_columns = cols.count("decision") && cols.count("compute_ms");
  }

  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 3u);
  expectSameRow((*rows)[0], written[1], has_new_columns);
  expectSameRow((*rows)[1], written[2], has_new_columns);
  expectSameRow((*rows)[2], written[0], has_new_columns);

  // The reader took no lock: the writer goes on, and the next read sees its new row.
  ASSERT_TRUE(ledger->record(makeRow("r4", "research", kNov23 + 3 * kMinute)).ok());
  ASSERT_TRUE(ledger->flush().ok());
  rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ(rows->back().request_id, "r4");
  // And the file still has exactly one owner.
  auto second = policies::openSqliteLedger(path);
  EXPECT_FALSE(second.ok());
}

// The gateway is another process: a forked child owns the ledger (its flock and its open WAL)
// while this process reads.
TEST(LedgerReader, ReadsWhileAnotherProcessOwnsTheLedger) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(ready[0]);
    close(done[1]);
    int code = 1;
    {
      auto ledger = policies::openSqliteLedger(path);
      if (ledger.ok()) {
        bool ok = true;
        for (int i = 0; i < 50; ++i) {
          ok = ok && (*ledger)->record(makeRow("c" + std::to_string(i), "t", kNov23 + i)).ok();
        }
        ok = ok && (*ledger)->flush().ok();
        char c = ok ? 'y' : 'n';
        [[maybe_unused]] ssize_t n = write(ready[1], &c, 1);
        char wait_for = 0;
        n = read(done[0], &wait_for, 1);  // hold the ledger until the parent has read
        code = 0;
      }
    }
    _exit(code);
  }
  close(ready[1]);
  close(done[0]);
  char c = 0;
  bool child_ready = read(ready[0], &c, 1) == 1 && c == 'y';
  close(ready[0]);

  std::optional<api::StatusOr<std::vector<LedgerRow>>> rows;
  if (child_ready) rows.emplace(readLedgerRows(path, kNov23 + 10, std::nullopt));
  // The file is still owned by the child: opening a Ledger here is refused.
  bool second_refused = child_ready && !policies::openSqliteLedger(path).ok();

  char go = 'x';
  [[maybe_unused]] ssize_t n = write(done[1], &go, 1);
  close(done[1]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(child_ready) << "the child could not write its rows";
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  EXPECT_TRUE(second_refused);
  ASSERT_TRUE(rows->ok()) << rows->status().message();
  ASSERT_EQ((*rows)->size(), 40u);
  EXPECT_EQ((*rows)->front().request_id, "c10");
  EXPECT_EQ((*rows)->back().request_id, "c49");
}

TEST(LedgerReader, SinceIsInclusiveAndUntilExclusive) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  auto ledger = mustOpen(path);
  ASSERT_NE(ledger, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ledger->record(makeRow("r" + std::to_string(i), "t", kNov23 + i * kMinute)).ok());
  }
  ASSERT_TRUE(ledger->flush().ok());

  auto ids = [&](std::optional<int64_t> since, std::optional<int64_t> until) {
    std::vector<std::string> out;
    auto rows = readLedgerRows(path, since, until);
    EXPECT_TRUE(rows.ok()) << rows.status().message();
    if (rows.ok()) {
      for (const LedgerRow& r : *rows) out.push_back(r.request_id);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(kNov23 + kMinute, kNov23 + 3 * kMinute), (V{"r1", "r2"}));
  EXPECT_EQ(ids(kNov23 + 3 * kMinute, std::nullopt), (V{"r3", "r4"}));
  EXPECT_EQ(ids(std::nullopt, kNov23 + 1), (V{"r0"}));
  EXPECT_EQ(ids(kNov23 + 10 * kMinute, std::nullopt), V{});
}

TEST(LedgerReader, ReadsANewerSchemasColumnsAndDefaultsNulls) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  {
    auto ledger = mustOpen(path);
    ASSERT_NE(ledger, nullptr);
    ASSERT_TRUE(ledger->record(makeRow("a", "t", kNov23)).ok());
    ASSERT_TRUE(ledger->record(localRow("b", "t", kNov23 + 1)).ok());
    ASSERT_TRUE(ledger->flush().ok());
  }
  {
    // Give the file the columns a later schema has (when the writer did not already), with
    // one row left NULL, as an ALTER TABLE without default leaves old rows.
    RawDb raw(path);
    std::set<std::string> cols = raw.columns("requests");
    if (!cols.count("decision")) raw.exec("ALTER TABLE requests ADD COLUMN decision TEXT");
    if (!cols.count("compute_ms")) raw.exec("ALTER TABLE requests ADD COLUMN compute_ms REAL");
    // This build's writer declares them NOT NULL DEFAULT; other writers may not, so the reader
    // must take NULLs as well: rebuild the table without the constraints first.
    raw.exec("CREATE TABLE requests2 AS SELECT * FROM requests");
    raw.exec("DROP TABLE requests");
    raw.exec("ALTER TABLE requests2 RENAME TO requests");
    raw.exec("UPDATE requests SET decision = NULL, compute_ms = NULL WHERE request_id = 'a'");
    raw.exec("UPDATE requests SET decision = 'cascade', compute_ms = 17.5 WHERE request_id = 'b'");
  }
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].decision, "");
  EXPECT_EQ((*rows)[0].compute_ms, 0);
  EXPECT_EQ((*rows)[1].decision, "cascade");
  EXPECT_DOUBLE_EQ((*rows)[1].compute_ms, 17.5);
  EXPECT_EQ((*rows)[1].kind, "local");
}

TEST(LedgerReader, RowsOfAVersionTwoFileAreSettled) {
  // Written before durable reservations: no state column, every row final.
  TempDir dir;
  std::string path = dir.file("ledger.db");
  {
    RawDb raw(path);
    raw.exec(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '2');"
        "CREATE TABLE requests(id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, unix_ms INTEGER "
        "NOT NULL, team TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, route TEXT NOT "
        "NULL, kind TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, cached_prompt_tokens INTEGER "
        "NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_ms REAL NOT "
        "NULL, status INTEGER NOT NULL, decision TEXT NOT NULL DEFAULT '', compute_ms REAL NOT "
        "NULL DEFAULT 0);"
        "INSERT INTO requests VALUES(1, 'r1', 1795446245000, 'acme', 'k', 'gpt-4o', 'smart', "
        "'cloud', 10, 0, 5, 0.5, 12.0, 200, 'cloud', 0);");
  }
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].state, "settled");
  EXPECT_DOUBLE_EQ((*rows)[0].cost_usd, 0.5);
}

TEST(LedgerReader, ReadsAClosedLedger) {
  TempDir dir;
  std::string path = dir.file("ledger.db");
  {
    auto ledger = mustOpen(path);
    ASSERT_NE(ledger, nullptr);
    ASSERT_TRUE(ledger->record(makeRow("a", "t", kNov23)).ok());
    ASSERT_TRUE(ledger->flush().ok());
  }
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 1u);
  // Reading never leaves the file unusable for its next owner.
  auto ledger = mustOpen(path);
  EXPECT_NE(ledger, nullptr);
}

TEST(LedgerReader, MissingFileIsAnIoErrorNamingThePath) {
  TempDir dir;
  std::string path = dir.file("absent.db");
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(rows.status().message().find(path), std::string::npos) << rows.status().message();
  EXPECT_NE(rows.status().message().find("no such file"), std::string::npos);
  // Nothing was created by looking.
  EXPECT_FALSE(fs::exists(path));
}

TEST(LedgerReader, GarbageFileIsAnIoErrorNamingThePath) {
  TempDir dir;
  std::string path = dir.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 300; ++i) out << "this is not a database, just text " << i << "\n";
  }
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(rows.status().message().find(path), std::string::npos) << rows.status().message();
  EXPECT_NE(rows.status().message().find("not a SQLite database"), std::string::npos)
      << rows.status().message();
}

TEST(LedgerReader, DirectoryIsAnIoError) {
  TempDir dir;
  std::string path = dir.file("sub");
  fs::create_directory(path);
  auto rows = readLedgerRows(path, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(rows.status().message().find(path), std::string::npos);
}

TEST(LedgerReader, OtherSqliteDatabasesAreConfigErrors) {
  TempDir dir;
  std::string other = dir.file("other.db");
  {
    RawDb raw(other);
    raw.exec("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)");
  }
  auto rows = readLedgerRows(other, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(rows.status().message().find(other), std::string::npos);
  EXPECT_NE(rows.status().message().find("not a Switchyard ledger"), std::string::npos);

  // An empty file is an empty SQLite database: not a ledger either.
  std::string empty = dir.file("empty.db");
  { std::ofstream out(empty); }
  rows = readLedgerRows(empty, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kConfig);

  // Meta and requests tables, but a requests table missing a ledger's columns.
  std::string odd = dir.file("odd.db");
  {
    RawDb raw(odd);
    raw.exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    raw.exec("CREATE TABLE requests(id INTEGER PRIMARY KEY, unix_ms INTEGER)");
  }
  rows = readLedgerRows(odd, std::nullopt, std::nullopt);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(rows.status().message().find("request_id"), std::string::npos)
      << rows.status().message();
}

}  // namespace
