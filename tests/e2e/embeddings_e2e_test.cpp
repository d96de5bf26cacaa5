// End-to-end: POST /v1/embeddings through the real `switchyard` binary, with the fake OpenAI and
// Gemini servers behind it speaking their embeddings APIs. Vectors in float and base64, the
// ledger row and its cost, the data rules (allow_cloud, allowed_models), budget refusals, a
// storm of concurrent requests against a small budget (the provider never serves more than the
// budget pays for), and hostile bodies answered with OpenAI-shaped 400s.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "api/embeddings.h"
#include "tests/support/fake_gemini.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* kTeams[] = {"research", "secure", "picky", "broke", "storm"};

std::string keyOf(const std::string& team) { return "sk-" + team + "-embeddings-e2e"; }

class EmbeddingsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* t : kTeams) hashes_[t] = hashKey(keyOf(t));
  }

  void SetUp() override {
    ASSERT_EQ(hashes_["research"].size(), 64u) << "switchyard-cli hash-key failed";
    std::ostringstream p;
    auto team = [&](const char* t) {
      p << "  " << t << ":\n    keys: [{id: k-" << t << ", sha256: " << hashes_[t] << "}]\n";
    };
    p << "defaults:\n  routing: {mode: cascade, local_model: chatty, cloud_models: [chatty]}\n"
      << "teams:\n";
    team("research");
    team("secure");
    p << "    allow_cloud: false\n";
    team("picky");
    p << "    allowed_models: [small]\n";
    team("broke");
    p << "    budget: {monthly_usd: 0.0, when_exhausted: reject}\n";
    team("storm");
    p << "    budget: {monthly_usd: 0.05, when_exhausted: reject}\n";
    std::ofstream(work_.path() + "/policies.yaml") << p.str();

    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "providers:\n"
      << "  up: {type: openai, base_url: \"" << openai_.baseUrl()
      << "\", api_key: sk-up, retry: {max_attempts: 1}}\n"
      << "  gem: {type: gemini, base_url: \"" << gemini_.baseUrl()
      << "\", api_key: gem-key, retry: {max_attempts: 1}}\n"
      << "  claude: {type: anthropic, base_url: \"http://127.0.0.1:9\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: small, provider: up, upstream_model: text-embedding-3-small}\n"
      << "  - {name: large, provider: up, upstream_model: text-embedding-3-large}\n"
      << "  - {name: gem-embed, provider: gem, upstream_model: gemini-embedding-001}\n"
      << "  - {name: chatty, provider: up, upstream_model: gpt-x}\n"
      << "  - {name: sonnet, provider: claude, upstream_model: claude-x}\n"
      << "pricing:\n"
      << "  up: {text-embedding-3-small: {input: 1000, embedding: true},\n"
      << "       text-embedding-3-large: {input: 1000, embedding: true},\n"
      << "       gpt-x: {input: 1, output: 1}}\n"
      << "  gem: {gemini-embedding-001: {input: 1000, embedding: true}}\n"
      << "  claude: {claude-x: {input: 1, output: 1}}\n"
      << "policies: \"" << work_.path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << work_.path() << "/ledger.db\"}\n";
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), {}, &error);
    ASSERT_TRUE(gw_) << error;
  }

  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- stderr ---\n" << gw_->stderrText() << "\n";
  }

  HttpResponse embed(const std::string& team, const std::string& body) {
    return httpPost(gw_->url() + "/v1/embeddings", body,
                    {{"Authorization", "Bearer " + keyOf(team)}}, 10000ms);
  }
  HttpResponse embedJson(const std::string& team, const Json& body) {
    return embed(team, body.dump());
  }

  // The team's month rows once `requests` final rows are committed (or the last read).
  Json spendOf(const std::string& team, int requests) {
    Json j;
    waitUntil(
        [&] {
          HttpResponse r = httpGet(gw_->url() + "/admin/v1/teams/" + team + "/spend",
                                   {{"Authorization", "Bearer " + keyOf(team)}});
          j = r.json();
          int n = 0;
          if (j.is_object() && j["month"].contains("by_model_and_route")) {
            for (const Json& row : j["month"]["by_model_and_route"])
              n += row["requests"].get<int>();
          }
          return n >= requests;
        },
        3000ms);
    return j;
  }

  static void expectOpenAIError(const HttpResponse& r, int status, const std::string& param,
                                const std::string& type = "invalid_request_error") {
    EXPECT_EQ(r.status, status) << r.body;
    Json j = r.json();
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    EXPECT_EQ(j["error"]["type"], type) << r.body;
    if (!param.empty()) {
      EXPECT_EQ(j["error"]["param"], param) << r.body;
    }
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
  }

  static inline std::map<std::string, std::string> hashes_;
  TempDir work_;
  FakeOpenAI openai_;
  FakeGemini gemini_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(EmbeddingsE2E, OpenAIFloatVectorsWithCostAndALedgerRow) {
  HttpResponse r = embedJson("research", Json{{"model", "small"}, {"input", {"one two", "three"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "small");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][1]["index"], 1);
  std::vector<float> got;
  for (const Json& x : j["data"][0]["embedding"]) got.push_back(x.get<float>());
  EXPECT_EQ(got, FakeEmbeddings::vectorFor(Json("one two"), FakeEmbeddings::kDefaultDimensions));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(r.header("x-switchyard-route"), "up/text-embedding-3-small");
  EXPECT_EQ(r.header("x-switchyard-cost-usd"), "0.00300000");
  EXPECT_FALSE(r.hasHeader("x-switchyard-cost-estimated"));
  Json sent = openai_.embeddings().lastBody();
  EXPECT_EQ(sent["model"], "text-embedding-3-small");
  EXPECT_EQ(openai_.embeddings().lastBody()["encoding_format"], "float");
  EXPECT_EQ(openai_.server().requests().back().header("authorization"), "Bearer sk-up");

  Json spend = spendOf("research", 1);
  ASSERT_EQ(spend["month"]["by_model_and_route"].size(), 1u) << spend;
  const Json& row = spend["month"]["by_model_and_route"][0];
  EXPECT_EQ(row["model"], "small");
  EXPECT_EQ(row["route"], "up/text-embedding-3-small");
  EXPECT_EQ(row["kind"], "cloud");
  EXPECT_EQ(row["prompt_tokens"], 3);
  EXPECT_EQ(row["completion_tokens"], 0);
  EXPECT_NEAR(row["cost_usd"].get<double>(), 0.003, 1e-12);
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_EQ(metricValue(metrics, "switchyard_requests_total",
                        {{"team", "research"}, {"model", "small"}, {"status", "200"}}),
            1.0)
      << metrics;
}

TEST_F(EmbeddingsE2E, Base64AndTokenIdsAndDimensions) {
  HttpResponse r = embed("research", R"({"model":"large","input":[[1,2,3],[4]],)"
                                     R"("dimensions":5,"encoding_format":"base64"})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  ASSERT_TRUE(j["data"][0]["embedding"].is_string()) << r.body;
  auto v = api::floatsFromBase64(j["data"][0]["embedding"].get<std::string>());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, FakeEmbeddings::vectorFor(Json::parse("[1,2,3]"), 5));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 4);
  Json sent = openai_.embeddings().lastBody();
  EXPECT_EQ(sent["input"], Json::parse("[[1,2,3],[4]]"));
  EXPECT_EQ(sent["dimensions"], 5);
}

TEST_F(EmbeddingsE2E, GeminiBatchEmbedContentsIsBilledAtTheBound) {
  HttpResponse r =
      embedJson("research", Json{{"model", "gem-embed"}, {"input", "hello"}, {"dimensions", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  std::vector<float> got;
  for (const Json& x : j["data"][0]["embedding"]) got.push_back(x.get<float>());
  EXPECT_EQ(got, FakeEmbeddings::vectorFor(Json("hello"), 3));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);  // bytes: Gemini reports no token count
  EXPECT_EQ(r.header("x-switchyard-cost-estimated"), "true");
  EXPECT_EQ(r.header("x-switchyard-cost-usd"), "0.00500000");
  EXPECT_EQ(gemini_.server().requests().back().path(),
            "/v1beta/models/gemini-embedding-001:batchEmbedContents");
  // Token ids cannot reach Gemini: a 400 naming `input`, and no call.
  expectOpenAIError(embed("research", R"({"model":"gem-embed","input":[1,2]})"), 400, "input");
  EXPECT_EQ(gemini_.embeddings().requestCount(), 1);
}

TEST_F(EmbeddingsE2E, ModelsThatCannotEmbedAre400s) {
  expectOpenAIError(embed("research", R"({"model":"auto","input":"x"})"), 400, "model");
  expectOpenAIError(embed("research", R"({"model":"chatty","input":"x"})"), 400, "model");
  HttpResponse anthropic = embed("research", R"({"model":"sonnet","input":"x"})");
  expectOpenAIError(anthropic, 400, "model");
  EXPECT_NE(anthropic.body.find("Anthropic"), std::string::npos) << anthropic.body;
  expectOpenAIError(embed("research", R"({"model":"nope","input":"x"})"), 404, "model");
  // An embedding model serves no chat.
  HttpResponse chat = httpPost(gw_->url() + "/v1/chat/completions",
                               R"({"model":"small","messages":[{"role":"user","content":"hi"}]})",
                               {{"Authorization", "Bearer " + keyOf("research")}});
  expectOpenAIError(chat, 400, "model");
  EXPECT_EQ(openai_.embeddings().requestCount(), 0);
  EXPECT_EQ(openai_.chatRequestCount(), 0);
}

TEST_F(EmbeddingsE2E, DataRulesAndBudgetsHold) {
  HttpResponse secure = embed("secure", R"({"model":"small","input":"secret"})");
  expectOpenAIError(secure, 403, "model", "permission_error");
  EXPECT_NE(secure.body.find("cloud_not_allowed"), std::string::npos) << secure.body;
  expectOpenAIError(embed("picky", R"({"model":"large","input":"x"})"), 403, "model",
                    "permission_error");
  EXPECT_EQ(embed("picky", R"({"model":"small","input":"x"})").status, 200);
  HttpResponse broke = embed("broke", R"({"model":"small","input":"x"})");
  expectOpenAIError(broke, 429, "", "insufficient_quota");
  EXPECT_EQ(openai_.embeddings().requestCount(), 1);  // picky's only
  HttpResponse unauth = httpPost(gw_->url() + "/v1/embeddings", R"({"model":"small","input":"x"})",
                                 {{"Authorization", "Bearer sk-unknown"}});
  expectOpenAIError(unauth, 401, "", "authentication_error");
}

TEST_F(EmbeddingsE2E, UpstreamErrorsCostNothing) {
  openai_.embeddings().pushError(500, "boom");
  HttpResponse r = embed("research", R"({"model":"small","input":"x"})");
  EXPECT_EQ(r.status, 502) << r.body;
  Json spend = spendOf("research", 1);
  double cost = 0;
  for (const Json& row : spend["month"]["by_model_and_route"])
    cost += row["cost_usd"].get<double>();
  EXPECT_EQ(cost, 0.0) << spend;
  EXPECT_EQ(spend["month"]["reserved_usd"], 0.0) << spend;
}

// A client that leaves before the answer cancels the upstream call, which is billed at its
// reservation: the provider may have done the work.
TEST_F(EmbeddingsE2E, AClientThatLeavesIsBilledItsReservation) {
  openai_.embeddings().setLatency(3000ms);
  HttpResponse r =
      httpPost(gw_->url() + "/v1/embeddings", R"({"model":"small","input":"hi there"})",
               {{"Authorization", "Bearer " + keyOf("research")}}, 300ms);
  EXPECT_FALSE(r.ok());
  Json spend = spendOf("research", 1);
  ASSERT_EQ(spend["month"]["by_model_and_route"].size(), 1u) << spend;
  EXPECT_NEAR(spend["month"]["by_model_and_route"][0]["cost_usd"].get<double>(), 0.008, 1e-12)
      << spend;
  EXPECT_EQ(spend["month"]["reserved_usd"], 0.0) << spend;
  EXPECT_EQ(httpGet(gw_->url() + "/healthz").status, 200);
}

// Many concurrent requests against a small budget: every one is reserved at its worst case
// (8 bytes = $0.008) before its call, so what the provider serves never passes the budget.
TEST_F(EmbeddingsE2E, AStormNeverPassesTheBudget) {
  openai_.embeddings().setLatency(20ms);
  constexpr int kRequests = 96;
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += 16) {
        HttpResponse r = embed("storm", R"({"model":"small","input":"hi there"})");
        if (r.status == 200) {
          ++ok;
        } else if (r.status == 429 && r.body.find("insufficient_quota") != std::string::npos) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_EQ(openai_.embeddings().requestCount(), ok.load());
  // What the provider served (2 tokens a call at $1000/M) is within the budget.
  EXPECT_LE(openai_.embeddings().tokensServed() * 0.001, 0.05 + 1e-9);
  Json spend = spendOf("storm", ok.load());
  const double spent = spend["month"]["spent_usd"].get<double>();
  EXPECT_LE(spent, 0.05 + 1e-9) << spend;
  EXPECT_NEAR(spent, ok.load() * 0.002, 1e-9) << spend;
  EXPECT_EQ(spend["month"]["reserved_usd"], 0.0) << spend;
}

TEST_F(EmbeddingsE2E, HostileBodiesGetOpenAIShaped400s) {
  const std::pair<std::string, std::string> cases[] = {
      {"{", ""},
      {"[]", ""},
      {"null", ""},
      {R"({"model":"small"})", "input"},
      {R"({"model":"small","input":{"$gt":""}})", "input"},
      {R"({"model":"small","input":[1,"a"]})", "input[1]"},
      {R"({"model":"small","input":[[1],[-1]]})", "input[1][0]"},
      {R"({"model":"small","input":"x","dimensions":"big"})", "dimensions"},
      {R"({"model":"small","input":"x","dimensions":1e300})", "dimensions"},
      {R"({"model":"small","input":"x","encoding_format":"utf8"})", "encoding_format"},
      {R"({"model":["small"],"input":"x"})", "model"},
      {R"({"model":"small","input":"x","stream":true})", "stream"},
      {R"({"model":"small","input":)" + std::string(300, '[') + std::string(300, ']') + "}", ""},
  };
  for (const auto& [body, param] : cases) {
    HttpResponse r = embed("research", body);
    expectOpenAIError(r, 400, param);
  }
  // More inputs than OpenAI takes.
  std::string many = R"({"model":"small","input":[)";
  for (int i = 0; i < 2049; ++i) many += i ? ",\"w\"" : "\"w\"";
  expectOpenAIError(embed("research", many + "]}"), 400, "input");
  // A huge array of token ids is bounded by the JSON value count before it is built.
  std::string huge = R"({"model":"small","input":[)";
  for (int i = 0; i < 150000; ++i) huge += i ? ",1" : "1";
  expectOpenAIError(embed("research", huge + "]}"), 400, "");
  HttpResponse get =
      httpGet(gw_->url() + "/v1/embeddings", {{"Authorization", "Bearer " + keyOf("research")}});
  EXPECT_EQ(get.status, 405) << get.body;
  EXPECT_EQ(openai_.embeddings().requestCount(), 0);
  EXPECT_EQ(httpGet(gw_->url() + "/healthz").status, 200);
}

}  // namespace
}  // namespace sytest
