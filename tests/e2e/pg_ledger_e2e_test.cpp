// End-to-end: three `switchyard` processes sharing one PostgreSQL ledger (a private server,
// tests/support/postgres.h) in front of the fake OpenAI server, which bills what it serves
// (4 prompt + 2 completion tokens per call, $0.006 at the configured $1000/M). A storm of
// cloud-bound requests spread over the replicas against one $0.05 budget: the provider never
// serves more than the budget pays for, and its bill equals the ledger's; a replica killed
// with -9 mid-storm leaves no spend unbilled once it restarts. A team's rate limit, shared by
// the replicas (each enforces its share), admits at most 10% past it in a burst spread over them.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

constexpr double kBudget = 0.05;
constexpr double kCallUsd = 0.006;  // 6 tokens at $1000 per million
const char* const kKey = "sk-storm-pg-e2e-key";
const char* const kAdmin = "sk-admin-pg-e2e";

class PgLedgerE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!PostgresServer::available(&why)) GTEST_SKIP() << why;
    PostgresServer* server = PostgresServer::shared(&why);
    ASSERT_NE(server, nullptr) << why;
    url_ = server->createDatabase(PostgresServer::databaseNameForTest(), &why);
    ASSERT_FALSE(url_.empty()) << why;
    work_ = std::make_unique<TempDir>();
    key_hash_ = hashKey(kKey);
    admin_hash_ = hashKey(kAdmin);
    ASSERT_FALSE(key_hash_.empty() || admin_hash_.empty()) << "switchyard-cli hash-key failed";
    std::ofstream(work_->path() + "/policies.yaml")
        << "defaults:\n"
        << "  routing: {mode: cloud_only, cloud_models: [gpt-4o-mini]}\n"
        << "teams:\n"
        << "  storm:\n"
        << "    keys: [{id: k-storm, sha256: " << key_hash_ << "}]\n"
        << "    budget: {monthly_usd: " << kBudget << ", when_exhausted: reject}\n";
    for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(start(i));
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (auto& gw : gws_) {
      if (gw) std::cerr << "--- stderr ---\n" << gw->stderrText() << "\n";
    }
  }

  // Replica `i` (replica id gw-<i>), started or started again.
  void start(int i) {
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth:\n  allow_unauthenticated: false\n"
      << "  admin_keys: [{id: ops, sha256: " << admin_hash_ << "}]\n"
      << "providers:\n"
      << "  up: {type: openai, base_url: \"" << fake_.baseUrl() << "\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1000, output: 1000}}}\n"
      << "policies: \"" << work_->path() << "/policies.yaml\"\n"
      << "ledger: {url: \"" << url_ << "\", replica: gw-" << i << "}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    if (gws_.size() <= static_cast<size_t>(i)) gws_.resize(i + 1);
    gws_[i] = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gws_[i]) << error;
  }

  HttpResponse chat(int i, bool stream) {
    Json body = {{"model", "gpt-4o-mini"},
                 {"max_tokens", 6},
                 {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
    if (stream) body["stream"] = true;
    return httpPost(gws_[i]->url() + "/v1/chat/completions", body.dump(),
                    {{"Authorization", std::string("Bearer ") + kKey}}, 30000ms);
  }

  // The month's spend of team `storm` as replica `i`'s admin endpoint reports it.
  Json spend(int i) {
    HttpResponse r = httpGet(gws_[i]->url() + "/admin/v1/teams/storm/spend",
                             {{"Authorization", std::string("Bearer ") + kAdmin}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? r.json()["month"] : Json::object();
  }

  FakeOpenAI fake_;
  std::string url_, key_hash_, admin_hash_;
  std::unique_ptr<TempDir> work_;
  std::vector<std::unique_ptr<SwitchyardServer>> gws_;
};

TEST_F(PgLedgerE2E, ThreeReplicasNeverLetTheProviderServePastTheBudget) {
  constexpr int kRequests = 600, kThreads = 30;
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += kThreads) {
        HttpResponse r = chat(i % 3, i % 2 == 0);
        if (r.status == 200) {
          ++ok;
        } else if (r.status == 429 && r.body.find("insufficient_quota") != std::string::npos) {
          ++refused;
        } else {
          ++other;
          if (other <= 3) ADD_FAILURE() << r.status << ": " << r.body;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(ok + refused, kRequests);
  // What the provider billed stays within the budget and equals the ledger's spend, which
  // every replica reads alike.
  double provider_usd = fake_.chatRequestCount() * kCallUsd;
  EXPECT_LE(provider_usd, kBudget + 1e-9);
  EXPECT_EQ(fake_.chatRequestCount(), ok.load());
  for (int i = 0; i < 3; ++i) {
    Json m = spend(i);
    EXPECT_NEAR(m.value("spent_usd", -1.0), provider_usd, 1e-9) << m.dump();
    EXPECT_EQ(m.value("reserved_usd", -1.0), 0.0) << m.dump();
  }
}

TEST_F(PgLedgerE2E, AReplicaKilledMidStormLeavesNoSpendUnbilled) {
  // Slow streams (each piece 300 ms apart): the budget's first calls are still in flight
  // when replica 0 is killed.
  fake_.setDefaultInterval(300ms);
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  auto storm = [&](int replica) {
    for (int t = 0; t < 3; ++t) {
      load.emplace_back([&, replica] {
        while (!stop) chat(replica, true);
      });
    }
  };
  storm(0);  // replica 0 first, until the provider serves some of its calls
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fake_.chatRequestCount() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(fake_.chatRequestCount(), 2) << "no call reached the provider";
  storm(1);
  storm(2);
  std::this_thread::sleep_for(100ms);
  ::kill(gws_[0]->process().pid(), SIGKILL);
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : load) t.join();
  fake_.setDefaultInterval(0ms);
  // The restart under the same replica id bills the dead one's calls in flight at their
  // reserved amount.
  gws_[0].reset();
  ASSERT_NO_FATAL_FAILURE(start(0));
  std::string metrics = httpGet(gws_[0]->url() + "/metrics").body;
  EXPECT_GE(metricValue(metrics, "switchyard_ledger_state", {{"what", "crashed_reservations"}})
                .value_or(0),
            1.0)
      << metrics;
  double provider_usd = fake_.chatRequestCount() * kCallUsd;
  EXPECT_LE(provider_usd, kBudget + 1e-9);
  for (int i = 0; i < 3; ++i) {
    Json m = spend(i);
    EXPECT_EQ(m.value("reserved_usd", -1.0), 0.0) << m.dump();
    EXPECT_GE(m.value("spent_usd", -1.0) + 1e-12, provider_usd) << m.dump();
    EXPECT_LE(m.value("spent_usd", 1.0), kBudget + 1e-9) << m.dump();
  }
}

TEST_F(PgLedgerE2E, ThreeReplicasTogetherKeepARateLimitWithinTenPercent) {
  // Team `paced` (60 requests per minute) joins the policies; every replica reloads them.
  constexpr int kLimit = 60, kRequests = 300, kThreads = 15;
  const char* const paced_key = "sk-paced-pg-e2e-key";
  const std::string paced_hash = hashKey(paced_key);
  ASSERT_FALSE(paced_hash.empty());
  std::ofstream(work_->path() + "/policies.yaml", std::ios::app)
      << "  paced:\n"
      << "    keys: [{id: k-paced, sha256: " << paced_hash << "}]\n"
      << "    rate_limits: {requests_per_minute: " << kLimit << "}\n";
  for (int i = 0; i < 3; ++i) {
    HttpResponse r = httpPost(gws_[i]->url() + "/admin/v1/reload", "",
                              {{"Authorization", std::string("Bearer ") + kAdmin}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // Each replica counts the three by their heartbeats (every 2 s).
  for (int i = 0; i < 3; ++i) {
    std::optional<double> live;
    auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      live = metricValue(httpGet(gws_[i]->url() + "/metrics").body, "switchyard_ledger_state",
                         {{"what", "live_replicas"}});
      if (live == 3.0) break;
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_EQ(live, 3.0) << "replica " << i;
  }
  // A burst spread round robin over the three: each admits its share (20) and refuses the rest.
  std::atomic<int> ok{0}, limited{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += kThreads) {
        Json body = {{"model", "gpt-4o-mini"},
                     {"max_tokens", 6},
                     {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
        HttpResponse r = httpPost(gws_[i % 3]->url() + "/v1/chat/completions", body.dump(),
                                  {{"Authorization", std::string("Bearer ") + paced_key}}, 30000ms);
        if (r.status == 200) {
          ++ok;
        } else if (r.status == 429 && r.body.find("rate_limit_exceeded") != std::string::npos) {
          ++limited;
          if (limited == 1) {
            EXPECT_NE(r.body.find("60 requests per minute (20 on each of 3 gateway replicas)"),
                      std::string::npos)
                << r.body;
            EXPECT_TRUE(r.hasHeader("retry-after"));
          }
        } else {
          ++other;
          if (other <= 3) ADD_FAILURE() << r.status << ": " << r.body;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + limited, kRequests);
  // Three shares of 20, and what they refill while the burst lasts (one per replica every 3 s).
  EXPECT_GE(ok.load(), kLimit * 9 / 10);
  EXPECT_LE(ok.load(), kLimit * 11 / 10);
}

}  // namespace
}  // namespace sytest
