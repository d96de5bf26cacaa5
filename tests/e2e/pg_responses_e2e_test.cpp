// End-to-end: two `switchyard` processes on one PostgreSQL ledger (the test binary's private
// server, tests/support/postgres.h) in front of the fake OpenAI server keep the Responses API's
// stored responses in that database: a response created through one replica is read, followed
// up with previous_response_id and deleted through the other.
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* const kKey = "sk-responses-pg-e2e-key";

class PgResponsesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!PostgresServer::available(&why)) GTEST_SKIP() << why;
    PostgresServer* server = PostgresServer::shared(&why);
    ASSERT_NE(server, nullptr) << why;
    url_ = server->createDatabase(PostgresServer::databaseNameForTest(), &why);
    ASSERT_FALSE(url_.empty()) << why;
    std::string hash = hashKey(kKey);
    ASSERT_FALSE(hash.empty()) << "switchyard-cli hash-key failed";
    std::ofstream(work_.path() + "/policies.yaml")
        << "defaults:\n"
        << "  routing: {mode: cloud_only, cloud_models: [gpt-4o-mini]}\n"
        << "teams:\n"
        << "  acme:\n"
        << "    keys: [{id: k-acme, sha256: " << hash << "}]\n";
    for (int i = 0; i < 2; ++i) {
      std::ostringstream y;
      y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
        << "auth:\n  allow_unauthenticated: false\n"
        << "providers:\n"
        << "  up: {type: openai, base_url: \"" << fake_.baseUrl()
        << "\", retry: {max_attempts: 1}}\n"
        << "models:\n"
        << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
        << "pricing: {up: {gpt-4o-mini: {input: 1, output: 1}}}\n"
        << "policies: \"" << work_.path() << "/policies.yaml\"\n"
        << "ledger: {url: \"" << url_ << "\", replica: gw-" << i << "}\n";
      SwitchyardServer::Options opts;
      opts.ready_timeout = 30000ms;
      std::string error;
      gws_.push_back(SwitchyardServer::start(y.str(), opts, &error));
      ASSERT_TRUE(gws_.back()) << error;
    }
  }
  void TearDown() override {
    if (!HasFailure()) return;
    for (auto& gw : gws_) {
      if (gw) std::cerr << "--- stderr ---\n" << gw->stderrText() << "\n";
    }
  }
  static HeaderList auth() { return {{"Authorization", std::string("Bearer ") + kKey}}; }

  FakeOpenAI fake_;
  TempDir work_;
  std::string url_;
  std::vector<std::unique_ptr<SwitchyardServer>> gws_;
};

TEST_F(PgResponsesE2E, AResponseCreatedOnOneReplicaIsFollowedUpAndDeletedOnTheOther) {
  Json body = {{"model", "gpt-4o-mini"}, {"input", "first question"}};
  HttpResponse created = httpPost(gws_[0]->url() + "/v1/responses", body.dump(), auth(), 30000ms);
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string id = created.json()["id"];
  ASSERT_EQ(id.rfind("resp_", 0), 0u) << id;

  HttpResponse read = httpGet(gws_[1]->url() + "/v1/responses/" + id, auth());
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.json()["id"], id);

  Json next = {{"model", "gpt-4o-mini"}, {"input", "and then?"}, {"previous_response_id", id}};
  HttpResponse follow = httpPost(gws_[1]->url() + "/v1/responses", next.dump(), auth(), 30000ms);
  ASSERT_EQ(follow.status, 200) << follow.body;
  EXPECT_EQ(follow.json()["previous_response_id"], id);
  // The follow-up carried the first turn: the upstream saw it.
  Json last = fake_.lastChatBody();
  EXPECT_NE(last.dump().find("first question"), std::string::npos) << last.dump();

  HttpClient client;
  HttpResponse gone = client.request("DELETE", gws_[1]->url() + "/v1/responses/" + id, auth());
  EXPECT_EQ(gone.status, 200) << gone.body;
  EXPECT_EQ(httpGet(gws_[0]->url() + "/v1/responses/" + id, auth()).status, 404);
}

}  // namespace
}  // namespace sytest
