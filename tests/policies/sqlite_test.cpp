// policies/sqlite.h: the project's one SQLite wrapper. Bind and read round trips, the reset
// when a Use goes, the exact encoding of NaN and -0.0 (the quality store's rows), and a
// prepare error that carries SQLite's message. An in-memory database.
#include "policies/sqlite.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace {

using policies::sqlite::Db;
using policies::sqlite::Stmt;
using policies::sqlite::Use;

Db openMemory() {
  sqlite3* raw = nullptr;
  EXPECT_EQ(sqlite3_open(":memory:", &raw), SQLITE_OK);
  return Db(raw);
}

Stmt mustPrepare(sqlite3* db, const std::string& sql) {
  auto s = policies::sqlite::prepare(db, sql);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(*s) : Stmt();
}

void exec(sqlite3* db, const char* sql) {
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
}

TEST(Sqlite, BindsAndReadsEveryTypeBack) {
  Db db = openMemory();
  exec(db.get(), "CREATE TABLE t(s TEXT, i INTEGER, r REAL, b INTEGER, n INTEGER, ob INTEGER)");
  Stmt insert = mustPrepare(db.get(), "INSERT INTO t VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  {
    Use q(insert.get());
    q.text(1, std::string("a\0b", 3));  // bytes as given, NUL included
    q.int64(2, std::numeric_limits<int64_t>::min());
    q.real(3, 0.1);
    q.boolean(4, true);
    q.null(5);
    q.optBool(6, false);
    ASSERT_EQ(q.step(), SQLITE_DONE);
  }
  Stmt select = mustPrepare(db.get(), "SELECT s, i, r, b, n, ob, NULL FROM t");
  Use q(select.get());
  ASSERT_EQ(q.step(), SQLITE_ROW);
  EXPECT_EQ(q.columnText(0), std::string("a\0b", 3));
  EXPECT_EQ(q.columnInt64(1), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(q.columnDouble(2), 0.1);
  EXPECT_TRUE(q.columnBool(3));
  EXPECT_TRUE(q.isNull(4));
  EXPECT_EQ(q.columnText(4), "");
  EXPECT_EQ(q.columnDouble(4), 0.0);
  EXPECT_EQ(q.columnOptBool(4), std::nullopt);
  EXPECT_EQ(q.columnOptBool(5), std::optional<bool>(false));
  EXPECT_EQ(q.columnOptRealExact(6), std::nullopt);
  EXPECT_EQ(q.step(), SQLITE_DONE);
}

TEST(Sqlite, UseResetsAndClearsBindingsWhenItGoes) {
  Db db = openMemory();
  Stmt s = mustPrepare(db.get(), "SELECT :v UNION ALL SELECT 2");
  {
    Use q(s.get());
    EXPECT_EQ(q.param(":v"), 1);
    EXPECT_EQ(q.param(":absent"), 0);
    q.int64(q.param(":v"), 7);
    ASSERT_EQ(q.step(), SQLITE_ROW);
    EXPECT_EQ(q.columnInt64(0), 7);
    // Left after the first row: the next use starts from the first row again.
  }
  EXPECT_FALSE(sqlite3_stmt_busy(s.get()));
  Use q(s.get());
  ASSERT_EQ(q.step(), SQLITE_ROW);
  EXPECT_TRUE(q.isNull(0));  // the binding went with the last use
  ASSERT_EQ(q.step(), SQLITE_ROW);
  EXPECT_EQ(q.columnInt64(0), 2);
  EXPECT_EQ(q.step(), SQLITE_DONE);
}

TEST(Sqlite, RealExactKeepsNanAndNegativeZeroWherePlainRealDoesNot) {
  Db db = openMemory();
  exec(db.get(), "CREATE TABLE t(k INTEGER, x REAL)");
  Stmt insert = mustPrepare(db.get(), "INSERT INTO t VALUES(?1, ?2)");
  const double nan = std::nan("");
  auto put = [&](int k, double v, bool exact) {
    Use q(insert.get());
    q.int64(1, k);
    exact ? q.realExact(2, v) : q.real(2, v);
    EXPECT_EQ(q.step(), SQLITE_DONE);
  };
  put(1, nan, true);
  put(2, -0.0, true);
  put(3, 2.5, true);
  put(4, nan, false);
  put(5, -0.0, false);
  {
    Use q(insert.get());
    q.int64(1, 6);
    q.optRealExact(2, std::nullopt);
    EXPECT_EQ(q.step(), SQLITE_DONE);
  }
  Stmt select = mustPrepare(db.get(), "SELECT x, typeof(x), length(x) FROM t ORDER BY k");
  Use q(select.get());
  ASSERT_EQ(q.step(), SQLITE_ROW);  // NaN: its 8 bytes
  EXPECT_EQ(q.columnText(1), "blob");
  EXPECT_EQ(q.columnInt64(2), 8);
  EXPECT_TRUE(std::isnan(q.columnRealExact(0)));
  ASSERT_EQ(q.step(), SQLITE_ROW);  // -0.0: its 8 bytes, sign kept
  EXPECT_EQ(q.columnText(1), "blob");
  EXPECT_EQ(q.columnRealExact(0), 0.0);
  EXPECT_TRUE(std::signbit(q.columnRealExact(0)));
  ASSERT_EQ(q.step(), SQLITE_ROW);  // any other value: a plain REAL
  EXPECT_EQ(q.columnText(1), "real");
  EXPECT_EQ(q.columnRealExact(0), 2.5);
  EXPECT_EQ(q.columnOptRealExact(0), std::optional<double>(2.5));
  ASSERT_EQ(q.step(), SQLITE_ROW);  // a plain NaN is lost: NULL
  EXPECT_EQ(q.columnText(1), "null");
  EXPECT_EQ(q.columnDouble(0), 0.0);
  ASSERT_EQ(q.step(), SQLITE_ROW);  // a plain -0.0 loses its sign
  EXPECT_FALSE(std::signbit(q.columnDouble(0)));
  ASSERT_EQ(q.step(), SQLITE_ROW);  // absent: NULL
  EXPECT_EQ(q.columnText(1), "null");
  EXPECT_EQ(q.columnOptRealExact(0), std::nullopt);
  EXPECT_EQ(q.step(), SQLITE_DONE);
}

TEST(Sqlite, RealExactReadsTheBytesOfRowsAlreadyStored) {
  // Rows written before the wrapper existed: the 8 bytes in machine order, as SQLite's BLOB.
  Db db = openMemory();
  Stmt select = mustPrepare(db.get(),
                            "SELECT ?1, X'0102', 1.5, 3");  // stored bytes, a short BLOB, others
  Use q(select.get());
  const double negative_zero = -0.0;
  sqlite3_bind_blob(q.get(), 1, &negative_zero, sizeof negative_zero, SQLITE_TRANSIENT);
  ASSERT_EQ(q.step(), SQLITE_ROW);
  EXPECT_TRUE(std::signbit(q.columnRealExact(0)));
  EXPECT_TRUE(std::isnan(q.columnRealExact(1)));  // not 8 bytes: NaN
  EXPECT_EQ(q.columnRealExact(2), 1.5);
  EXPECT_EQ(q.columnRealExact(3), 3.0);  // an integral REAL stored as an integer
}

TEST(Sqlite, PrepareErrorCarriesSqlitesMessage) {
  Db db = openMemory();
  auto s = policies::sqlite::prepare(db.get(), "SELEC 1");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(s.status().message().find("syntax error"), std::string::npos) << s.status().message();
  // The connection keeps the error, for callers that word their own message.
  EXPECT_EQ(sqlite3_errcode(db.get()), SQLITE_ERROR);
  EXPECT_STREQ(sqlite3_errmsg(db.get()), s.status().message().c_str());

  auto missing = policies::sqlite::prepare(db.get(), "SELECT x FROM nowhere");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "no such table: nowhere");
}

TEST(Sqlite, PrepareTakesOnlyTheGivenBytes) {
  Db db = openMemory();
  std::string sql = "SELECT 42; garbage";
  auto s = policies::sqlite::prepare(db.get(), std::string_view(sql).substr(0, 9));
  ASSERT_TRUE(s.ok()) << s.status().message();
  Use q(s->get());
  ASSERT_EQ(q.step(), SQLITE_ROW);
  EXPECT_EQ(q.columnInt64(0), 42);
}

}  // namespace
