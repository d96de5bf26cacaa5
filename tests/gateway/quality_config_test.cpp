// The `quality:` section's store: a SQLite file (`path`) or a PostgreSQL database that replicas
// share (`url`), never both.
#include <gtest/gtest.h>

#include <string>

#include "gateway/config.h"

namespace gateway {
namespace {

api::Status parseError(std::string_view text) {
  auto r = parseConfig(text, "t.yaml");
  return r.ok() ? api::Status() : r.status();
}

TEST(QualityConfig, PathSelectsSqliteAndUrlPostgres) {
  auto sqlite = parseConfig("quality:\n  path: data/quality.db\n", "t.yaml");
  ASSERT_TRUE(sqlite.ok()) << sqlite.status().message();
  EXPECT_TRUE((*sqlite)->quality.enabled());
  EXPECT_EQ((*sqlite)->quality.location(), "data/quality.db");

  auto pg = parseConfig("quality:\n  url: postgres://app:pw@db:5432/quality\n", "t.yaml");
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  EXPECT_TRUE((*pg)->quality.enabled());
  EXPECT_EQ((*pg)->quality.path, "");
  EXPECT_EQ((*pg)->quality.location(), "postgres://app:pw@db:5432/quality");

  auto none = parseConfig("", "t.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE((*none)->quality.enabled());
}

TEST(QualityConfig, BothPathAndUrlIsAnErrorNamingThem) {
  api::Status s = parseError(
      "quality:\n"
      "  path: data/quality.db\n"
      "  url: postgresql://db/quality\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), api::ErrorCode::kConfig);
  EXPECT_NE(s.message().find("sets both `path`"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("`url`"), std::string::npos) << s.message();
}

TEST(QualityConfig, UrlMustBePostgresAndErrorsMaskItsPassword) {
  api::Status s = parseError("quality:\n  url: mysql://app:s3cret@db/quality\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), api::ErrorCode::kConfig);
  EXPECT_NE(s.message().find("postgresql://"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("s3cret"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace gateway
