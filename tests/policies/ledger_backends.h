// The two Ledger implementations as a test parameter: the tests of the interface run against
// a SQLite file in a temporary directory and against a fresh database on the test binary's
// private PostgreSQL server (tests/support/postgres.h). LedgerHome opens ledgers there and
// answers SQL that both dialects share (tables `requests` and `alerts`; PostgreSQL's live in
// the `switchyard` schema, put first on the search path).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "policies/ledger.h"
#include "policies/pg_ledger.h"
#include "tests/policies/sqlite_test_util.h"
#include "tests/support/postgres.h"

namespace policies_test {

enum class Backend { kSqlite, kPostgres };

inline std::string backendName(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "sqlite" : "postgres";
}

class LedgerHome {
 public:
  explicit LedgerHome(Backend b) : backend_(b) {
    if (b == Backend::kSqlite || !sytest::PostgresServer::available(&skip_)) return;
    sytest::PostgresServer* server = sytest::PostgresServer::shared(&error_);
    if (!server) return;
    url_ = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &error_);
  }
  // Non-empty when PostgreSQL cannot be had here: the test skips with it.
  const std::string& skipReason() const { return skip_; }
  // Non-empty when it could be had but did not start: the test fails with it.
  const std::string& error() const { return error_; }
  Backend backend() const { return backend_; }
  const std::string& url() const { return url_; }

  // A ledger on this home. For PostgreSQL, `replica` is its replica id (a reopen after a
  // close uses the same one, as a restarted gateway would).
  std::unique_ptr<policies::Ledger> open(const std::string& replica = "replica-1") {
    api::StatusOr<std::unique_ptr<policies::Ledger>> l =
        api::Status(api::ErrorCode::kInternal, "not opened");
    if (backend_ == Backend::kSqlite) {
      l = policies::openSqliteLedger(dir_.file("ledger.db"));
    } else {
      policies::PostgresLedgerOptions o;
      o.replica_id = replica;
      l = policies::openPostgresLedger(url_, o);
    }
    EXPECT_TRUE(l.ok()) << l.status().message();
    return l.ok() ? std::move(*l) : nullptr;
  }

  // The first column of every row of `sql`, as text.
  std::vector<std::string> column(const std::string& sql) {
    if (backend_ == Backend::kSqlite) return RawDb(dir_.file("ledger.db")).column(sql);
    std::vector<std::string> out;
    try {
      pqxx::connection c(url_);
      pqxx::work tx(c);
      tx.exec("SET search_path = switchyard");
      for (const auto& row : tx.exec(sql)) out.push_back(row[0].c_str());
    } catch (const std::exception& e) {
      ADD_FAILURE() << sql << ": " << e.what();
    }
    return out;
  }
  std::string text(const std::string& sql) {
    auto c = column(sql);
    EXPECT_EQ(c.size(), 1u) << sql;
    return c.empty() ? "" : c[0];
  }
  int64_t int64(const std::string& sql) {
    std::string t = text(sql);
    return t.empty() ? 0 : std::stoll(t);
  }
  double real(const std::string& sql) {
    std::string t = text(sql);
    return t.empty() ? 0 : std::stod(t);
  }
  void exec(const std::string& sql) {
    if (backend_ == Backend::kSqlite) {
      RawDb(dir_.file("ledger.db")).exec(sql);
      return;
    }
    try {
      pqxx::connection c(url_);
      pqxx::work tx(c);
      tx.exec("SET search_path = switchyard");
      tx.exec(sql);
      tx.commit();
    } catch (const std::exception& e) {
      ADD_FAILURE() << sql << ": " << e.what();
    }
  }

 private:
  Backend backend_;
  TempDir dir_;
  std::string url_, skip_, error_;
};

// A test of the Ledger interface, once per implementation.
class LedgerBackendTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    home_ = std::make_unique<LedgerHome>(GetParam());
    if (!home_->skipReason().empty()) GTEST_SKIP() << home_->skipReason();
    ASSERT_EQ(home_->error(), "");
  }
  std::unique_ptr<policies::Ledger> open(const std::string& replica = "replica-1") {
    return home_->open(replica);
  }
  LedgerHome& home() { return *home_; }

 private:
  std::unique_ptr<LedgerHome> home_;
};

}  // namespace policies_test
