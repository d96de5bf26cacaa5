// ResponseStore: stored Responses kept per team in SQLite, bounded per team and by age.
#include "gateway/response_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace gateway {
namespace {

constexpr int64_t kNow = 1'800'000'000;

StoredResponse row(const std::string& team, const std::string& id, int64_t created_at = kNow,
                   std::string response = R"({"id":"x","output":[]})") {
  return StoredResponse{id, team, created_at, std::move(response), R"([{"role":"user"}])", "[]"};
}

TEST(ResponseStoreTest, KeepsAResponseForItsTeamOnly) {
  auto store = ResponseStore::open(":memory:");
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

TEST(ResponseStoreTest, DeleteRemovesOnlyTheTeamsOwn) {
  auto store = ResponseStore::open(":memory:");
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

TEST(ResponseStoreTest, ATeamOverItsBytesLosesItsOldestResponsesNotOtherTeams) {
  const std::string big(400, 'x');
  // Each row is 400 + 17 + 2 bytes of text; 1000 bytes hold two of them.
  auto store = ResponseStore::open(":memory:", 1000);
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

TEST(ResponseStoreTest, ResponsesOlderThanThirtyDaysGoAtTheNextWrite) {
  auto store = ResponseStore::open(":memory:");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(
      (*store)->put(row("a", "resp_old", kNow - ResponseStore::kMaxAgeSeconds - 1), kNow).ok());
  ASSERT_TRUE(
      (*store)->put(row("a", "resp_kept", kNow - ResponseStore::kMaxAgeSeconds), kNow).ok());
  EXPECT_FALSE((*store)->get("a", "resp_old")->has_value());
  EXPECT_TRUE((*store)->get("a", "resp_kept")->has_value());
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
