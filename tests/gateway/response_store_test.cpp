// ResponseStore: stored Responses kept per team, bounded per team and by age; the contract
// runs on both stores (SQLite, and a fresh database on the test binary's private PostgreSQL
// server, tests/support/postgres.h), and two stores on one PostgreSQL database stand for two
// replicas.
#include "gateway/response_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/support/postgres.h"

namespace gateway {
namespace {

constexpr int64_t kNow = 1'800'000'000;

StoredResponse row(const std::string& team, const std::string& id, int64_t created_at = kNow,
                   std::string response = R"({"id":"x","output":[]})") {
  return StoredResponse{id, team, created_at, std::move(response), R"([{"role":"user"}])", "[]"};
}

enum class Backend { kSqlite, kPostgres };

class ResponseStoreBackends : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) return;
    std::string why;
    if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
    sytest::PostgresServer* server = sytest::PostgresServer::shared(&why);
    ASSERT_NE(server, nullptr) << why;
    url_ = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &why);
    ASSERT_FALSE(url_.empty()) << why;
  }
  // A store of this backend (for PostgreSQL, each one another replica on the same database).
  api::StatusOr<std::unique_ptr<ResponseStore>> open(
      int64_t max_bytes = ResponseStore::kMaxBytesPerTeam) {
    if (GetParam() == Backend::kSqlite) return ResponseStore::open(":memory:", max_bytes);
    return ResponseStore::openPostgres(url_, max_bytes);
  }
  std::string url_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ResponseStoreBackends,
                         testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "postgres";
                         });

TEST_P(ResponseStoreBackends, KeepsAResponseForItsTeamOnly) {
  auto store = open();
  ASSERT_TRUE(store.ok()) << store.status().message();
  ASSERT_TRUE((*store)->put(row("a", "resp_1"), kNow).ok());
  auto got = (*store)->get("a", "resp_1");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->response, R"({"id":"x","output":[]})");
  EXPECT_EQ((*got)->input, R"([{"role":"user"}])");
  EXPECT_EQ((*got)->conversation, "[]");
  EXPECT_EQ((*got)->created_at, kNow);
  auto other = (*store)->get("b", "resp_1");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_P(ResponseStoreBackends, DeleteRemovesOnlyTheTeamsOwn) {
  auto store = open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->put(row("a", "resp_1"), kNow).ok());
  auto wrong_team = (*store)->remove("b", "resp_1");
  ASSERT_TRUE(wrong_team.ok());
  EXPECT_FALSE(*wrong_team);
  auto removed = (*store)->remove("a", "resp_1");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_FALSE((*store)->get("a", "resp_1")->has_value());
  EXPECT_FALSE(*(*store)->remove("a", "resp_1"));
}

TEST_P(ResponseStoreBackends, ATeamOverItsBytesLosesItsOldestResponsesNotOtherTeams) {
  const std::string big(400, 'x');
  // Each row is 400 + 17 + 2 bytes of text; 1000 bytes hold two of them.
  auto store = open(1000);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->put(row("b", "resp_b", kNow, big), kNow).ok());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE((*store)->put(row("a", "resp_" + std::to_string(i), kNow, big), kNow).ok());
  }
  EXPECT_FALSE((*store)->get("a", "resp_1")->has_value());
  EXPECT_TRUE((*store)->get("a", "resp_2")->has_value());
  EXPECT_TRUE((*store)->get("a", "resp_3")->has_value());
  EXPECT_TRUE((*store)->get("b", "resp_b")->has_value());
}

TEST_P(ResponseStoreBackends, ResponsesOlderThanThirtyDaysGoAtTheNextWrite) {
  auto store = open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(
      (*store)->put(row("a", "resp_old", kNow - ResponseStore::kMaxAgeSeconds - 1), kNow).ok());
  ASSERT_TRUE(
      (*store)->put(row("a", "resp_kept", kNow - ResponseStore::kMaxAgeSeconds), kNow).ok());
  EXPECT_FALSE((*store)->get("a", "resp_old")->has_value());
  EXPECT_TRUE((*store)->get("a", "resp_kept")->has_value());
}

TEST(ResponseStoreTest, AResponseWrittenThroughOneReplicaIsReadAndDeletedThroughAnother) {
  std::string why;
  if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
  sytest::PostgresServer* server = sytest::PostgresServer::shared(&why);
  ASSERT_NE(server, nullptr) << why;
  std::string url = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &why);
  ASSERT_FALSE(url.empty()) << why;
  auto a = ResponseStore::openPostgres(url);
  auto b = ResponseStore::openPostgres(url);
  ASSERT_TRUE(a.ok() && b.ok()) << (a.ok() ? b.status() : a.status()).message();
  ASSERT_TRUE((*a)->put(row("acme", "resp_1"), kNow).ok());
  auto got = (*b)->get("acme", "resp_1");
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->response, R"({"id":"x","output":[]})");
  EXPECT_FALSE((*b)->get("other", "resp_1")->has_value());  // still the team's own
  // Replaced through b, seen through a.
  ASSERT_TRUE((*b)->put(row("acme", "resp_1", kNow, R"({"id":"y"})"), kNow).ok());
  EXPECT_EQ((*(*a)->get("acme", "resp_1"))->response, R"({"id":"y"})");
  EXPECT_TRUE(*(*b)->remove("acme", "resp_1"));
  EXPECT_FALSE((*a)->get("acme", "resp_1")->has_value());
}

TEST(ResponseStoreTest, AnUnreachableDatabaseIsAnIoErrorWithThePasswordMasked) {
  int port = 0;
  {
    std::string why;
    if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
    auto server = sytest::PostgresServer::start(&why);
    ASSERT_NE(server, nullptr) << why;
    port = server->port();
  }
  auto store = ResponseStore::openPostgres(
      "postgresql://app:s3cret-pw@127.0.0.1:" + std::to_string(port) + "/ledger");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(store.status().message().find("response store 'postgresql://app:***@"),
            std::string::npos)
      << store.status().message();
  EXPECT_EQ(store.status().message().find("s3cret"), std::string::npos);
}

TEST(ResponseStoreTest, SurvivesAReopenOfItsFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sy_response_store_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "responses.db").string();
  {
    auto store = ResponseStore::open(path);
    ASSERT_TRUE(store.ok()) << store.status().message();
    ASSERT_TRUE((*store)->put(row("a", "resp_1"), kNow).ok());
  }
  auto store = ResponseStore::open(path);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->get("a", "resp_1")->has_value());
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST(ResponseStoreTest, AnUnopenableFileIsAnIoErrorNamingIt) {
  auto store = ResponseStore::open("/nonexistent-dir-for-sure/x/responses.db");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(store.status().message().find("responses.db"), std::string::npos);
}

}  // namespace
}  // namespace gateway
