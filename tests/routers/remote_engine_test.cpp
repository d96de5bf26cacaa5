// RemoteEngineProvider (routers/remote_engine.h): an OpenAI-compatible server used as the local
// engine, here the fake OpenAI server over real HTTP on loopback, returning token logprobs. Its
// logprobs must become the same confidence signal the embedded engine feeds the cascade.
#include "routers/remote_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "routers/cascade.h"
#include "routers/confidence.h"
#include "routers/fallback.h"
#include "tests/routers/provider_test_support.h"
#include "tests/support/loopback_server.h"

namespace {

using namespace std::chrono_literals;
using sytest::RecordingSink;

constexpr const char* kPrompt = "a b c d e f g h i j";  // the fake answers 11 tokens

// Records the token stats a provider reports, beside everything RecordingSink keeps.
class StatsSink : public RecordingSink {
 public:
  void onTokenStats(const routers::TokenStats& stats) override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.push_back(stats);
  }
  std::vector<routers::TokenStats> stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<routers::TokenStats> stats_;
};

// The alternatives the fake lists for a token of logprob `lp` when asked for `k`.
std::vector<api::TopLogprob> fakeTop(double lp, int k) {
  std::vector<api::TopLogprob> top = {{"t", lp}};
  const double rest = std::log(std::max(1e-9, (1 - std::exp(lp)) / k));
  for (int i = 1; i < k; ++i) top.push_back({"alt", rest});
  return top;
}

TEST(EntropyFromTop, IsExactWhenTheAlternativesHoldAllTheMass) {
  EXPECT_NEAR(routers::entropyFromTop({{"a", 0.0}}), 0.0, 1e-12);
  EXPECT_NEAR(routers::entropyFromTop({{"a", std::log(0.5)}, {"b", std::log(0.5)}}), std::log(2.0),
              1e-12);
  EXPECT_NEAR(routers::entropyFromTop(
                  {{"a", std::log(0.25)}, {"b", std::log(0.25)}, {"c", std::log(0.5)}}),
              1.5 * std::log(2.0), 1e-12);
}

TEST(EntropyFromTop, SpreadsTheMissingMassOverTokensNoLikelierThanTheLeastListed) {
  // 0.5 listed; the other 0.5 as one token of 0.5: ln 2.
  EXPECT_NEAR(routers::entropyFromTop({{"a", std::log(0.5)}}), std::log(2.0), 1e-12);
  // 0.4 + 0.2 listed; the other 0.4 as two tokens of 0.2.
  const double want = -(0.4 * std::log(0.4) + 3 * 0.2 * std::log(0.2));
  EXPECT_NEAR(routers::entropyFromTop({{"a", std::log(0.4)}, {"b", std::log(0.2)}}), want, 1e-9);
}

TEST(EntropyFromTop, SkipsUnusableAlternativesAndIsNaNWithoutAny) {
  EXPECT_TRUE(std::isnan(routers::entropyFromTop({})));
  EXPECT_TRUE(std::isnan(routers::entropyFromTop({{"a", -9999.0}})));
  EXPECT_TRUE(std::isnan(routers::entropyFromTop({{"a", std::nan("")}})));
  EXPECT_NEAR(routers::entropyFromTop({{"a", 0.0}, {"never", -9999.0}, {"b", -INFINITY}}), 0.0,
              1e-12);
  // A positive logprob (rounding) counts as certain, never as a mass above 1.
  EXPECT_NEAR(routers::entropyFromTop({{"a", 1e-7}}), 0.0, 1e-12);
}

class RemoteEngineTest : public ::testing::Test {
 protected:
  std::unique_ptr<routers::RemoteEngineProvider> makeRemote(int max_in_flight = 0) {
    routers::CloudProviderConfig c;
    c.name = "gpu-box";
    auto upstream = std::make_unique<routers::CloudProvider>(
        c, sytest::makeWire(sytest::Api::kOpenAI, server_.baseUrl()), http_);
    routers::RemoteEngineConfig rc;
    rc.max_in_flight = max_in_flight;
    return std::make_unique<routers::RemoteEngineProvider>(std::move(upstream), rc);
  }

  routers::HttpClient http_;
  sytest::FakeOpenAI server_;  // the remote engine
};

TEST_F(RemoteEngineTest, AsksForLogprobsAndReportsEveryTokensStatsStreamedOrNot) {
  server_.setTokenLogprob(-0.2);
  auto remote = makeRemote();
  for (bool stream : {false, true}) {
    auto sink = std::make_shared<StatsSink>();
    remote->chat(sytest::userRequest(kPrompt, stream), sink, routers::Clock::now() + 10s);
    ASSERT_TRUE(sink->wait());
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    sytest::Json asked = server_.lastChatBody();
    EXPECT_EQ(asked["logprobs"], true);
    EXPECT_EQ(asked["top_logprobs"], 5);
    auto stats = sink->stats();
    ASSERT_EQ(stats.size(), 11u) << "stream " << stream;
    const std::vector<api::TopLogprob> top = fakeTop(-0.2, 5);
    const double entropy = routers::entropyFromTop(top);
    for (const routers::TokenStats& t : stats) {
      EXPECT_DOUBLE_EQ(t.logprob, -0.2);
      EXPECT_NEAR(t.entropy, entropy, 1e-9);
      EXPECT_DOUBLE_EQ(t.top1_logprob, -0.2);
      EXPECT_NEAR(t.top2_logprob, top[1].logprob, 1e-9);
    }
    // The client did not ask for logprobs: it gets none.
    for (const auto& c : sink->chunks()) {
      for (const auto& ch : c.choices) EXPECT_FALSE(ch.logprobs);
    }
    if (!stream) {
      EXPECT_FALSE(sink->result()->choices[0].logprobs);
    }
    // The call's wall time is its compute time.
    ASSERT_TRUE(sink->result()->usage);
    EXPECT_GT(sink->result()->usage->engine_compute_s, 0);
    EXPECT_LT(sink->result()->usage->engine_compute_s, 10);
  }
}

TEST_F(RemoteEngineTest, ClientGetsTheLogprobsItAskedForAndNoMore) {
  server_.setTokenLogprob(-0.5);
  auto remote = makeRemote();
  api::ChatRequest r = sytest::userRequest(kPrompt, false);
  r.logprobs = true;
  r.top_logprobs = 2;
  auto sink = std::make_shared<StatsSink>();
  remote->chat(r, sink, routers::Clock::now() + 10s);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(server_.lastChatBody()["top_logprobs"], 5) << "at least 5 asked, for the entropy";
  const auto& lps = sink->result()->choices[0].logprobs;
  ASSERT_TRUE(lps);
  ASSERT_EQ(lps->size(), 11u);
  for (const auto& t : *lps) {
    EXPECT_DOUBLE_EQ(t.logprob, -0.5);
    EXPECT_EQ(t.top_logprobs.size(), 2u);
  }

  r.top_logprobs = 12;  // more than the default: asked as the client wants
  auto more = std::make_shared<StatsSink>();
  remote->chat(r, more, routers::Clock::now() + 10s);
  ASSERT_TRUE(more->wait());
  EXPECT_EQ(server_.lastChatBody()["top_logprobs"], 12);
  ASSERT_TRUE(more->result().ok());
  EXPECT_EQ((*more->result()->choices[0].logprobs)[0].top_logprobs.size(), 12u);
}

TEST_F(RemoteEngineTest, ServerWithoutLogprobsReportsNoStats) {
  server_.setTokenLogprob(std::nullopt);
  auto remote = makeRemote();
  for (bool stream : {false, true}) {
    auto sink = std::make_shared<StatsSink>();
    remote->chat(sytest::userRequest(kPrompt, stream), sink, routers::Clock::now() + 10s);
    ASSERT_TRUE(sink->wait());
    ASSERT_TRUE(sink->result().ok());
    EXPECT_TRUE(sink->stats().empty());
  }
}

// A server that lists no alternatives (only the chosen token's logprob): the chosen token is
// the top-1 only under greedy decoding; otherwise nothing is reported, as without logprobs.
TEST_F(RemoteEngineTest, ChosenLogprobWithoutAlternativesCountsOnlyUnderTemperatureZero) {
  server_.setTokenLogprob(-0.3);
  server_.setListAlternatives(false);
  auto remote = makeRemote();
  for (bool stream : {false, true}) {
    api::ChatRequest r = sytest::userRequest(kPrompt, stream);
    auto sampled = std::make_shared<StatsSink>();
    remote->chat(r, sampled, routers::Clock::now() + 10s);
    ASSERT_TRUE(sampled->wait());
    ASSERT_TRUE(sampled->result().ok());
    EXPECT_TRUE(sampled->stats().empty()) << "stream " << stream;

    r.temperature = 0;
    auto greedy = std::make_shared<StatsSink>();
    remote->chat(r, greedy, routers::Clock::now() + 10s);
    ASSERT_TRUE(greedy->wait());
    ASSERT_TRUE(greedy->result().ok());
    const auto stats = greedy->stats();
    ASSERT_EQ(stats.size(), 11u) << "stream " << stream;
    for (const routers::TokenStats& t : stats) {
      EXPECT_DOUBLE_EQ(t.top1_logprob, -0.3);
      EXPECT_TRUE(std::isnan(t.top2_logprob));
      EXPECT_TRUE(std::isnan(t.entropy));
    }
  }
}

TEST(TokenStatsFromLogprobs, TopTwoFromTheAlternativesAndTheChosenToken) {
  api::TokenLogprob t;
  t.token = "b";
  t.logprob = -1.5;
  // The chosen token listed among the alternatives (OpenAI, vLLM): not counted twice.
  t.top_logprobs = {{"a", -0.4}, {"b", -1.5}, {"c", -2.0}, {"never", -9999.0}};
  auto s = routers::tokenStatsFromLogprobs(t, false);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->logprob, -1.5);
  EXPECT_DOUBLE_EQ(s->top1_logprob, -0.4);
  EXPECT_DOUBLE_EQ(s->top2_logprob, -1.5);
  EXPECT_NEAR(s->entropy, routers::entropyFromTop(t.top_logprobs), 1e-12);
  // The chosen token not listed (a server listing the others only): it is a candidate.
  t.top_logprobs = {{"a", -2.2}, {"c", -3.0}};
  s = routers::tokenStatsFromLogprobs(t, false);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->top1_logprob, -1.5);
  EXPECT_DOUBLE_EQ(s->top2_logprob, -2.2);
  // One candidate: the top-2 is unknown. Rounding above 0 counts as 0.
  t.token = "a";
  t.logprob = 1e-7;
  t.top_logprobs = {{"a", 1e-7}};
  s = routers::tokenStatsFromLogprobs(t, false);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->top1_logprob, 0.0);
  EXPECT_TRUE(std::isnan(s->top2_logprob));
  // No usable alternative: known only under greedy decoding, and only with a usable logprob.
  t.logprob = -0.7;
  t.top_logprobs = {{"x", std::nan("")}, {"y", -9999.0}};
  EXPECT_FALSE(routers::tokenStatsFromLogprobs(t, false));
  s = routers::tokenStatsFromLogprobs(t, true);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->top1_logprob, -0.7);
  EXPECT_TRUE(std::isnan(s->top2_logprob));
  EXPECT_TRUE(std::isnan(s->entropy));
  t.logprob = -INFINITY;
  EXPECT_FALSE(routers::tokenStatsFromLogprobs(t, true));
}

TEST_F(RemoteEngineTest, FullServerRefusesAtOnceWithoutCountingAsAFailure) {
  auto remote = makeRemote(/*max_in_flight=*/1);
  server_.pushFault(sytest::Fault::delay(400ms));
  auto first = std::make_shared<StatsSink>();
  remote->chat(sytest::userRequest(kPrompt, false), first, routers::Clock::now() + 10s);
  EXPECT_EQ(remote->inFlight(), 1);
  auto second = std::make_shared<StatsSink>();
  remote->chat(sytest::userRequest(kPrompt, false), second, routers::Clock::now() + 10s);
  ASSERT_TRUE(second->wait(100ms)) << "refused inside chat(), not queued";
  ASSERT_FALSE(second->result().ok());
  EXPECT_EQ(second->result().status().code(), api::ErrorCode::kRateLimited);
  EXPECT_NE(second->result().status().message().find("max_in_flight 1"), std::string::npos);
  EXPECT_TRUE(routers::isFallbackable(second->result().status()));
  EXPECT_FALSE(routers::CircuitBreaker::countsAsFailure(second->result().status()));
  ASSERT_TRUE(first->wait());
  EXPECT_TRUE(first->result().ok());
  EXPECT_EQ(remote->inFlight(), 0);
  EXPECT_EQ(server_.chatRequestCount(), 1);
}

TEST_F(RemoteEngineTest, FullServerSpillsToTheNextTargetOfTheChain) {
  auto remote = makeRemote(/*max_in_flight=*/1);
  sytest::FakeOpenAI other;
  routers::CloudProviderConfig c;
  c.name = "other-box";
  routers::RemoteEngineProvider spill(
      std::make_unique<routers::CloudProvider>(
          c, sytest::makeWire(sytest::Api::kOpenAI, other.baseUrl()), http_),
      {});
  routers::TimerThread timer;
  routers::ChainTarget a, b;
  a.provider = remote.get();
  a.label = "gpu-box/m";
  a.api = "local";
  a.retry.max_attempts = 1;
  b = a;
  b.provider = &spill;
  b.label = "other-box/m";
  routers::FallbackChain chain("m", {a, b}, timer, nullptr);
  server_.pushFault(sytest::Fault::delay(400ms));
  auto first = std::make_shared<StatsSink>();
  chain.chat(sytest::userRequest(kPrompt, false), first, routers::Clock::now() + 10s);
  auto second = std::make_shared<StatsSink>();
  chain.chat(sytest::userRequest(kPrompt, false), second, routers::Clock::now() + 10s);
  ASSERT_TRUE(second->wait());
  ASSERT_TRUE(second->result().ok());
  EXPECT_EQ(second->route().label, "other-box/m");
  ASSERT_TRUE(first->wait());
  EXPECT_EQ(first->route().label, "gpu-box/m");
  EXPECT_EQ(other.chatRequestCount(), 1);
}

TEST(PrometheusSum, SumsTheMetricsSamplesOverTheirLabelSets) {
  const std::string text =
      "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"a\"} 3.0\n"
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"b\"} 4\n"
      "vllm:num_requests_waiting_total 100\n"
      "vllm:num_requests_running{model_name=\"a\"} 7.0\n";
  EXPECT_EQ(routers::prometheusSum(text, "vllm:num_requests_waiting"), 7.0);
  EXPECT_EQ(routers::prometheusSum("queue 2\n", "queue"), 2.0);
  EXPECT_FALSE(routers::prometheusSum(text, "vllm:num_requests_swapped"));
  EXPECT_FALSE(routers::prometheusSum("queue NaN\nqueue{x} junk\n", "queue"));
}

TEST_F(RemoteEngineTest, ServerReportingAFullQueueIsRefusedUntilItDrains) {
  std::atomic<int> waiting{5};
  sytest::LoopbackServer metrics([&](const sytest::Request& req, sytest::ResponseWriter& w) {
    if (req.path() != "/metrics") return (void)w.send(404, "");
    w.send(200,
           "vllm:num_requests_waiting{model_name=\"m\"} " + std::to_string(waiting.load()) +
               "\n",
           {}, "text/plain");
  });
  routers::TimerThread timer;
  routers::QueueProbeConfig pc;
  pc.url = "http://127.0.0.1:" + std::to_string(metrics.port()) + "/metrics";
  pc.interval = 50ms;
  auto probe = std::make_shared<routers::QueueProbe>(http_, timer, pc);
  ASSERT_TRUE(sytest::waitUntil([&] { return probe->waiting() == 5.0; }, 5000ms));
  routers::CloudProviderConfig c;
  c.name = "gpu-box";
  routers::RemoteEngineConfig rc;
  rc.probe = probe;
  rc.max_waiting = 4;
  routers::RemoteEngineProvider remote(
      std::make_unique<routers::CloudProvider>(
          c, sytest::makeWire(sytest::Api::kOpenAI, server_.baseUrl()), http_),
      rc);
  auto refused = std::make_shared<StatsSink>();
  remote.chat(sytest::userRequest(kPrompt, false), refused, routers::Clock::now() + 10s);
  ASSERT_TRUE(refused->wait(100ms));
  ASSERT_FALSE(refused->result().ok());
  EXPECT_EQ(refused->result().status().code(), api::ErrorCode::kRateLimited);
  EXPECT_NE(refused->result().status().message().find("5 requests waiting (max_waiting 4)"),
            std::string::npos)
      << refused->result().status().message();
  EXPECT_EQ(server_.chatRequestCount(), 0);

  waiting = 1;
  ASSERT_TRUE(sytest::waitUntil([&] { return probe->waiting() == 1.0; }, 5000ms));
  auto served = std::make_shared<StatsSink>();
  remote.chat(sytest::userRequest(kPrompt, false), served, routers::Clock::now() + 10s);
  ASSERT_TRUE(served->wait());
  EXPECT_TRUE(served->result().ok());

  // An endpoint that stops answering is no reading at all: calls are let through.
  metrics.stop();
  ASSERT_TRUE(sytest::waitUntil([&] { return !probe->waiting(); }, 5000ms));
  timer.shutdown();
}

// The cascade with the remote server as its local side: the fake cloud answers escalations.
class RemoteCascadeTest : public RemoteEngineTest {
 protected:
  RemoteCascadeTest() {
    routers::CloudProviderConfig c;
    c.name = "openai";
    cloud_provider_ = std::make_unique<routers::CloudProvider>(
        c, sytest::makeWire(sytest::Api::kOpenAI, cloud_.baseUrl()), http_);
    remote_ = makeRemote();
  }

  routers::CascadeOptions options() {
    routers::CascadeOptions o;
    o.hold_tokens = 4;
    o.confidence.min_tokens = 4;
    o.decide = [](std::optional<double> conf, bool final, std::string* reason) {
      if (!conf) return final ? routers::Verdict::kKeepLocal : routers::Verdict::kUndecided;
      if (*conf < 0.6) {
        *reason = "confidence below 0.6";
        return routers::Verdict::kEscalate;
      }
      return final ? routers::Verdict::kKeepLocal : routers::Verdict::kUndecided;
    };
    o.escalate = [this](const api::ChatRequest& r, std::shared_ptr<routers::ChatSink> sink,
                        const std::string&) -> api::StatusOr<std::shared_ptr<routers::ProviderCall>> {
      api::ChatRequest cloud = r;
      cloud.model = "gpt-4o-mini";
      return cloud_provider_->chat(cloud, std::move(sink), routers::Clock::now() + 10s);
    };
    return o;
  }

  std::shared_ptr<RecordingSink> run(bool stream) {
    auto sink = std::make_shared<RecordingSink>();
    routers::startCascade(*remote_, sytest::userRequest(kPrompt, stream), sink,
                          routers::Clock::now() + 20s, options());
    EXPECT_TRUE(sink->wait());
    return sink;
  }

  // What the embedded engine would give the cascade for 11 tokens of logprob `lp` with the
  // entropy the remote's alternatives imply: the same monitor, fed directly.
  double embeddedScore(double lp) {
    routers::ConfidenceMonitor m(options().confidence);
    const std::vector<api::TopLogprob> top = fakeTop(lp, 5);
    routers::TokenStats t;
    t.entropy = routers::entropyFromTop(top);
    std::vector<double> sorted;
    for (const api::TopLogprob& alt : top) sorted.push_back(alt.logprob);
    std::sort(sorted.rbegin(), sorted.rend());
    t.top1_logprob = sorted[0];
    t.top2_logprob = sorted[1];
    for (int i = 0; i < 11; ++i) m.onToken(t);
    return *m.score();
  }

  sytest::FakeOpenAI cloud_;
  std::unique_ptr<routers::CloudProvider> cloud_provider_;
  std::unique_ptr<routers::RemoteEngineProvider> remote_;
};

TEST_F(RemoteCascadeTest, ConfidentRemoteAnswerStaysLocal) {
  server_.setTokenLogprob(-0.02);
  for (bool stream : {false, true}) {
    auto sink = run(stream);
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    ASSERT_TRUE(sink->route().confidence);
    EXPECT_NEAR(*sink->route().confidence, embeddedScore(-0.02), 1e-9);
    EXPECT_GT(*sink->route().confidence, 0.6);
    EXPECT_EQ(sink->route().escalation, "");
    const std::string text =
        stream ? sink->text() : sink->result()->choices[0].message.content.joinedText();
    EXPECT_EQ(text, std::string("echo: ") + kPrompt);
    EXPECT_EQ(cloud_.chatRequestCount(), 0);
  }
}

TEST_F(RemoteCascadeTest, UnconfidentRemoteAnswerEscalates) {
  server_.setTokenLogprob(-2.5);
  int escalated = 0;
  for (bool stream : {false, true}) {
    auto sink = run(stream);
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    ++escalated;
    EXPECT_EQ(cloud_.chatRequestCount(), escalated) << "stream " << stream;
    ASSERT_TRUE(sink->route().confidence);
    EXPECT_LT(*sink->route().confidence, 0.6);
    EXPECT_NE(sink->route().escalation.find("confidence below 0.6"), std::string::npos);
    // The score the cascade decided on is the one the embedded engine's signals give.
    if (!stream) {
      EXPECT_NEAR(*sink->route().confidence, embeddedScore(-2.5), 1e-9);
    }
  }
}

TEST_F(RemoteCascadeTest, NoLogprobsLeavesConfidenceUnknownAndTheLocalAnswerStanding) {
  server_.setTokenLogprob(std::nullopt);
  for (bool stream : {false, true}) {
    auto sink = run(stream);
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    EXPECT_FALSE(sink->route().confidence);
    EXPECT_NE(sink->route().escalation.find("confidence unknown"), std::string::npos)
        << sink->route().escalation;
    const std::string text =
        stream ? sink->text() : sink->result()->choices[0].message.content.joinedText();
    EXPECT_EQ(text, std::string("echo: ") + kPrompt);
    EXPECT_EQ(cloud_.chatRequestCount(), 0);
  }
}

}  // namespace
