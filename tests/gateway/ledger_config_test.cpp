// The `ledger:` section: a SQLite file (`path`, the default) or a PostgreSQL database that
// replicas share (`url` and its tuning keys), never both.
#include <gtest/gtest.h>

#include <string>

#include "gateway/config.h"

namespace gateway {
namespace {

api::Status parseError(std::string_view text) {
  auto r = parseConfig(text, "t.yaml");
  return r.ok() ? api::Status() : r.status();
}

TEST(LedgerConfig, PathSelectsSqliteAndUrlPostgres) {
  auto sqlite = parseConfig("ledger:\n  path: data/ledger.db\n", "t.yaml");
  ASSERT_TRUE(sqlite.ok()) << sqlite.status().message();
  EXPECT_EQ((*sqlite)->ledger_path, "data/ledger.db");
  EXPECT_EQ((*sqlite)->ledger_url, "");
  EXPECT_TRUE((*sqlite)->hasLedger());

  auto pg = parseConfig(
      "ledger:\n"
      "  url: postgresql://app:pw@db:5432/ledger\n"
      "  replica: gw-1\n"
      "  pool_size: 4\n"
      "  statement_timeout_ms: 2000\n",
      "t.yaml");
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  const Config& c = **pg;
  EXPECT_EQ(c.ledger_path, "");
  EXPECT_EQ(c.ledger_url, "postgresql://app:pw@db:5432/ledger");
  EXPECT_EQ(c.ledger_replica, "gw-1");
  EXPECT_EQ(c.ledger_pool_size, 4);
  EXPECT_EQ(c.ledger_statement_timeout_ms, 2000);
  EXPECT_TRUE(c.hasLedger());

  auto none = parseConfig("", "t.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE((*none)->hasLedger());
  EXPECT_EQ((*none)->ledger_pool_size, 8);
  EXPECT_EQ((*none)->ledger_statement_timeout_ms, 5000);
}

TEST(LedgerConfig, BothPathAndUrlIsAnErrorNamingThem) {
  api::Status s = parseError(
      "ledger:\n"
      "  path: data/ledger.db\n"
      "  url: postgresql://db/ledger\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), api::ErrorCode::kConfig);
  EXPECT_NE(s.message().find("sets both `path`"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("`url`"), std::string::npos) << s.message();
}

TEST(LedgerConfig, UrlMustBePostgresAndErrorsMaskItsPassword) {
  api::Status s = parseError("ledger:\n  url: mysql://app:s3cret@db/ledger\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), api::ErrorCode::kConfig);
  EXPECT_NE(s.message().find("t.yaml:2: ledger.url: must start with postgresql://"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("mysql://app:***@db/ledger"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("s3cret"), std::string::npos) << s.message();
  EXPECT_TRUE(parseError("ledger:\n  url: postgres://db/ledger\n").ok());
}

TEST(LedgerConfig, PostgresKeysNeedAUrl) {
  for (const char* key : {"replica: gw-1", "pool_size: 4", "statement_timeout_ms: 100"}) {
    api::Status s = parseError(std::string("ledger:\n  path: l.db\n  ") + key + "\n");
    ASSERT_FALSE(s.ok()) << key;
    EXPECT_NE(s.message().find("applies to a PostgreSQL ledger (`url:`) only"), std::string::npos)
        << s.message();
  }
  api::Status s = parseError("ledger:\n  url: postgresql://db/l\n  pool_size: 0\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pool_size"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace gateway
