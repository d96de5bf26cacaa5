// Shared fixture of the end-to-end suites: a FakeOpenAI upstream, the real `switchyard`
// binary configured to route models m1 and m2 to it, a client key, and helpers to call the
// gateway and check OpenAI-shaped errors.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {

inline constexpr const char* kClientKey = "sk-e2e-research-6f1c2a9b7d";
inline constexpr const char* kUpstreamKey = "sk-upstream-secret-42";

struct GatewayConfig {
  std::string upstream_url;  // "" means the fixture's FakeOpenAI
  bool allow_unauthenticated = false;
  int64_t max_body_bytes = 1048576;
  int64_t max_header_bytes = 16384;
  double read_timeout_s = 30;
  double idle_timeout_s = 75;
  double shutdown_grace_s = 10;
  double connect_s = 2;
  double first_byte_s = 5;
  double idle_s = 5;
  double total_s = 30;
  // One try per request and no circuit breaker, so that each queued fault reaches the client
  // as such; the resilience tests turn them on.
  int max_attempts = 1;
  int breaker_failures = 0;

  std::string yaml(const std::string& key_sha256) const {
    std::ostringstream y;
    y << "server:\n"
      << "  listen: 127.0.0.1\n"
      << "  port: 0\n"
      << "  threads: 2\n"
      << "  max_body_bytes: " << max_body_bytes << "\n"
      << "  max_header_bytes: " << max_header_bytes << "\n"
      << "  read_timeout_s: " << read_timeout_s << "\n"
      << "  idle_timeout_s: " << idle_timeout_s << "\n"
      << "  shutdown_grace_s: " << shutdown_grace_s << "\n"
      << "auth:\n"
      << "  allow_unauthenticated: " << (allow_unauthenticated ? "true" : "false") << "\n"
      << "  anonymous_team: local\n"
      << "teams:\n"
      << "  - name: research\n"
      << "    keys: [{id: notebook, sha256: " << key_sha256 << "}]\n"
      << "providers:\n"
      << "  up:\n"
      << "    type: openai\n"
      << "    base_url: \"" << upstream_url << "\"\n"
      << "    api_key: \"${UP_KEY:-}\"\n"
      << "    timeouts: {connect_s: " << connect_s << ", first_byte_s: " << first_byte_s
      << ", idle_s: " << idle_s << ", total_s: " << total_s << "}\n"
      << "    retry: {max_attempts: " << max_attempts << ", initial_backoff_s: 0.05}\n"
      << "    circuit_breaker: {failure_threshold: " << breaker_failures << "}\n"
      << "models:\n"
      << "  - {name: m1, provider: up, upstream_model: upstream-m1}\n"
      << "  - {name: m2, provider: up, upstream_model: upstream-m2}\n"
      << "pricing:\n"
      << "  up:\n"
      << "    upstream-m1: {input: 1.0, cached_input: 0.5, output: 2.0}\n"
      << "    upstream-m2: {input: 3.0, output: 4.0}\n";
    return y.str();
  }
};

inline Json userChat(const std::string& text, const std::string& model = "m1") {
  return Json{{"model", model}, {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
}

inline Json streamedChat(const std::string& text, bool include_usage,
                         const std::string& model = "m1") {
  Json body = userChat(text, model);
  body["stream"] = true;
  if (include_usage) body["stream_options"] = {{"include_usage", true}};
  return body;
}

class GatewayE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    key_hash_ = hashKey(kClientKey);
    ASSERT_EQ(key_hash_.size(), 64u) << "switchyard-cli hash-key failed (" << cliBin() << ")";
    ASSERT_NO_FATAL_FAILURE(startGateway(GatewayConfig{}));
  }

  void TearDown() override {
    if (HasFailure() && gw_) {
      std::string err = gw_->stderrText();
      if (err.size() > 6000) err = "..." + err.substr(err.size() - 6000);
      std::cerr << "--- switchyard stderr ---\n" << err << "--- end ---\n";
    }
  }

  // (Re)starts the gateway on `cfg`; fails the test when it does not come up.
  void startGateway(GatewayConfig cfg) {
    gw_.reset();
    if (cfg.upstream_url.empty()) cfg.upstream_url = fake_.baseUrl();
    SwitchyardServer::Options opts;
    opts.env = {{"UP_KEY", kUpstreamKey}};
    std::string error;
    gw_ = SwitchyardServer::start(cfg.yaml(key_hash_), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  std::string url(const std::string& path) const { return gw_->url() + path; }

  static HeaderList auth(HeaderList extra = {}) {
    extra.emplace_back("Authorization", std::string("Bearer ") + kClientKey);
    return extra;
  }

  HttpResponse chat(const Json& body, const HeaderList& headers = auth(),
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    return httpPost(url("/v1/chat/completions"), body.dump(), headers, timeout);
  }

  HttpResponse chatRaw(const std::string& body, const HeaderList& headers = auth()) {
    return httpPost(url("/v1/chat/completions"), body, headers);
  }

  std::string metrics() {
    HttpResponse r = httpGet(url("/metrics"));
    EXPECT_EQ(r.status, 200) << r.error;
    return r.body;
  }

  // /metrics once `ready` holds for it, or the last scrape after 2 s: the gateway may count a
  // request a moment after the client has its answer.
  std::string metricsWhen(const std::function<bool(const std::string&)>& ready) {
    std::string text;
    waitUntil(
        [&] {
          text = metrics();
          return ready(text);
        },
        std::chrono::milliseconds(2000));
    return text;
  }
  std::string metricsWhen(const std::string& name, const std::map<std::string, std::string>& labels,
                          double at_least) {
    return metricsWhen([&](const std::string& text) {
      return metricValue(text, name, labels).value_or(0) >= at_least;
    });
  }

  // Checks an OpenAI-shaped error: `status`, a JSON body {"error":{"message","type","param",
  // "code"}} with the given type and (when given) code. Returns the error object.
  static Json expectError(const HttpResponse& r, int status, const std::string& type,
                          std::optional<std::string> code = std::nullopt) {
    EXPECT_EQ(r.status, status) << r.error << "\n" << r.body;
    EXPECT_NE(r.header("content-type").find("application/json"), std::string::npos)
        << "content-type: " << r.header("content-type") << "\n"
        << r.body;
    Json j = r.json();
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object())
        << "not an OpenAI error body: " << r.body;
    if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return Json::object();
    const Json& e = j["error"];
    EXPECT_TRUE(e.contains("message") && e["message"].is_string() &&
                !e["message"].get<std::string>().empty())
        << r.body;
    EXPECT_EQ(e.value("type", ""), type) << r.body;
    EXPECT_TRUE(e.contains("param")) << "error.param missing: " << r.body;
    EXPECT_TRUE(e.contains("code")) << "error.code missing: " << r.body;
    if (code) {
      EXPECT_EQ(e.value("code", Json()).dump(), Json(*code).dump()) << r.body;
    }
    return e;
  }

  // Parsed data events of an SSE body; fails the test on a payload that is neither JSON nor
  // [DONE].
  static std::vector<Json> jsonEvents(const std::string& body, bool* saw_done = nullptr,
                                      bool* done_is_last = nullptr) {
    std::vector<Json> out;
    auto events = sseEvents(body);
    if (saw_done) *saw_done = false;
    if (done_is_last) *done_is_last = !events.empty() && events.back() == "[DONE]";
    for (const auto& e : events) {
      if (e == "[DONE]") {
        if (saw_done) *saw_done = true;
        continue;
      }
      Json j = Json::parse(e, nullptr, /*allow_exceptions=*/false);
      EXPECT_TRUE(j.is_object()) << "bad SSE event: " << e;
      if (j.is_object()) out.push_back(std::move(j));
    }
    return out;
  }

  FakeOpenAI fake_;
  std::string key_hash_;
  std::unique_ptr<SwitchyardServer> gw_;  // after fake_: stops before the upstream does
};

}  // namespace sytest
