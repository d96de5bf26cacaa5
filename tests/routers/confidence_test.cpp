// The confidence monitor (routers/confidence.h): its formula on known token streams, the worst
// window, early escalation, hostile inputs, reset, and its config from YAML.
#include "routers/confidence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using routers::ConfidenceConfig;
using routers::ConfidenceMonitor;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The documented formula, written out independently of the monitor.
double formula(const ConfidenceConfig& c, double mean_lp, double worst_lp, double mean_entropy) {
  return (c.w_mean * std::exp(mean_lp) + c.w_worst * std::exp(worst_lp) +
          c.w_entropy * (1 - std::min(1.0, mean_entropy / c.entropy_scale))) /
         (c.w_mean + c.w_worst + c.w_entropy);
}

TEST(Confidence, NoTokensNoScore) {
  ConfidenceMonitor m;
  EXPECT_EQ(m.tokens(), 0);
  EXPECT_FALSE(m.score().has_value());
  EXPECT_FALSE(m.shouldEscalateEarly());
  const ConfidenceMonitor::Features f = m.features();
  EXPECT_EQ(f.mean_logprob, 0);
  EXPECT_EQ(f.worst_window_logprob, 0);
  EXPECT_EQ(f.mean_entropy, 0);
  // Even with no minimum, nothing is escalated before there is something to judge.
  ConfidenceConfig c;
  c.min_tokens = 0;
  EXPECT_FALSE(ConfidenceMonitor(c).shouldEscalateEarly());
}

TEST(Confidence, CertainTokensScoreOne) {
  ConfidenceMonitor m;
  for (int i = 0; i < 50; ++i) m.onToken(0, 0);
  EXPECT_EQ(m.tokens(), 50);
  ASSERT_TRUE(m.score().has_value());
  EXPECT_DOUBLE_EQ(*m.score(), 1.0);
  EXPECT_FALSE(m.shouldEscalateEarly());

  // Nearly certain (p = 0.99, a little entropy): close to 1, above the default threshold.
  ConfidenceMonitor n;
  for (int i = 0; i < 50; ++i) n.onToken(std::log(0.99), 0.06);
  EXPECT_NEAR(*n.score(), 0.5 * 0.99 + 0.3 * 0.99 + 0.2 * (1 - 0.03), 1e-12);
  EXPECT_FALSE(n.shouldEscalateEarly());
}

TEST(Confidence, UniformOverALargeVocabularyScoresNearZero) {
  // Gemma's 262,144-token vocabulary, every token equally likely: logprob = -ln V and
  // entropy = ln V, far past entropy_scale.
  const double ln_v = std::log(262144.0);
  ConfidenceMonitor m;
  for (int i = 0; i < 32; ++i) m.onToken(-ln_v, ln_v);
  EXPECT_NEAR(*m.score(), 0.8 / 262144.0, 1e-12);
  EXPECT_LT(*m.score(), 0.01);
  EXPECT_TRUE(m.shouldEscalateEarly());
  EXPECT_NEAR(m.features().mean_entropy, ln_v, 1e-12);
}

TEST(Confidence, MatchesTheFormulaAndABruteForceWorstWindow) {
  ConfidenceConfig c;
  c.window = 5;
  ConfidenceMonitor m(c);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> lp(-4.0, 0.0), h(0.0, 3.0);
  std::vector<double> lps, hs;
  for (int t = 1; t <= 300; ++t) {
    lps.push_back(lp(rng));
    hs.push_back(h(rng));
    m.onToken(lps.back(), hs.back());
    double sum = 0, hsum = 0;
    for (int i = 0; i < t; ++i) sum += lps[i], hsum += hs[i];
    double worst = sum / t;  // fewer tokens than a window: the mean of them all
    if (t >= c.window) {
      worst = kInf;
      for (int s = 0; s + c.window <= t; ++s) {
        double w = 0;
        for (int i = s; i < s + c.window; ++i) w += lps[i];
        worst = std::min(worst, w / c.window);
      }
    }
    const ConfidenceMonitor::Features f = m.features();
    ASSERT_NEAR(f.mean_logprob, sum / t, 1e-9) << t;
    ASSERT_NEAR(f.worst_window_logprob, worst, 1e-9) << t;
    ASSERT_NEAR(f.mean_entropy, hsum / t, 1e-9) << t;
    ASSERT_NEAR(*m.score(), formula(c, sum / t, worst, hsum / t), 1e-9) << t;
    ASSERT_LE(f.worst_window_logprob, f.mean_logprob) << t;
  }
}

TEST(Confidence, WorstWindowCatchesABadStretchInAGoodAnswer) {
  // 100 confident tokens, 8 where the model guessed (p ≈ 0.05), 100 confident again.
  ConfidenceConfig c;
  ConfidenceMonitor m(c);
  ConfidenceConfig mean_only = c;
  mean_only.w_worst = 0;
  ConfidenceMonitor n(mean_only);
  ConfidenceMonitor clean(c);
  auto feed = [&](double logprob, double entropy) {
    m.onToken(logprob, entropy);
    n.onToken(logprob, entropy);
  };
  for (int i = 0; i < 100; ++i) feed(-0.01, 0.1);
  for (int i = 0; i < 8; ++i) feed(-3.0, 0.1);
  for (int i = 0; i < 100; ++i) feed(-0.01, 0.1);
  for (int i = 0; i < 208; ++i) clean.onToken(-0.01, 0.1);

  const double mean = (200 * -0.01 + 8 * -3.0) / 208;
  EXPECT_NEAR(m.features().mean_logprob, mean, 1e-12);
  EXPECT_NEAR(m.features().worst_window_logprob, -3.0, 1e-12);
  EXPECT_NEAR(*m.score(), formula(c, mean, -3.0, 0.1), 1e-12);        // ≈ 0.646
  EXPECT_NEAR(*clean.score(), formula(c, -0.01, -0.01, 0.1), 1e-12);  // ≈ 0.982
  EXPECT_GT(*clean.score(), c.escalate_below);
  EXPECT_LT(*m.score(), c.escalate_below);
  EXPECT_TRUE(m.shouldEscalateEarly());
  // Without the worst window the same answer would have passed: the mean hides the stretch.
  EXPECT_GT(*n.score(), c.escalate_below);
}

TEST(Confidence, FewerTokensThanAWindowUseTheMeanOfThemAll) {
  ConfidenceMonitor m;  // window 8
  m.onToken(-1, 0);
  m.onToken(-2, 0);
  m.onToken(-6, 0);
  EXPECT_DOUBLE_EQ(m.features().worst_window_logprob, -3.0);
  EXPECT_DOUBLE_EQ(m.features().mean_logprob, -3.0);
}

TEST(Confidence, MinTokensGatesEarlyEscalation) {
  ConfidenceConfig c;
  c.min_tokens = 4;
  ConfidenceMonitor m(c);
  for (int i = 1; i <= 3; ++i) {
    m.onToken(-5, 3);
    EXPECT_LT(*m.score(), c.escalate_below);
    EXPECT_FALSE(m.shouldEscalateEarly()) << i;
  }
  m.onToken(-5, 3);
  EXPECT_TRUE(m.shouldEscalateEarly());

  // A score at the threshold itself does not escalate: only below it does.
  ConfidenceConfig at;
  at.min_tokens = 1;
  at.escalate_below = 1.0;
  ConfidenceMonitor sure(at);
  sure.onToken(0, 0);
  EXPECT_FALSE(sure.shouldEscalateEarly());
  sure.onToken(-0.001, 0);
  EXPECT_TRUE(sure.shouldEscalateEarly());
}

TEST(Confidence, ImpossibleTokensClampToTheFloor) {
  ConfidenceMonitor m;
  m.onToken(-kInf, 0);
  EXPECT_DOUBLE_EQ(m.features().mean_logprob, ConfidenceMonitor::kLogprobFloor);
  m.onToken(kNaN, 0);  // a broken logprob is as bad as an impossible one
  m.onToken(-1e300, 0);
  EXPECT_DOUBLE_EQ(m.features().mean_logprob, -30);
  m.onToken(0.25, 0);  // a positive logprob is rounding: 0
  EXPECT_DOUBLE_EQ(m.features().mean_logprob, -90.0 / 4);
  ASSERT_TRUE(m.score().has_value());
  EXPECT_TRUE(std::isfinite(*m.score()));
  EXPECT_GE(*m.score(), 0);
  EXPECT_LE(*m.score(), 1);
  // A long certain answer after them brings the mean back, but the worst window remembers.
  for (int i = 0; i < 1000; ++i) m.onToken(0, 0);
  EXPECT_DOUBLE_EQ(m.features().worst_window_logprob, -90.0 / 8);
  EXPECT_NEAR(*m.score(), formula(m.config(), -90.0 / 1004, -90.0 / 8, 0), 1e-12);
}

TEST(Confidence, NaNEntropyIsIgnored) {
  ConfidenceMonitor m;
  m.onToken(-0.5, 1.0);
  m.onToken(-0.5, kNaN);
  m.onToken(-0.5, 0.5);
  EXPECT_DOUBLE_EQ(m.features().mean_entropy, 0.75);
  EXPECT_NEAR(*m.score(), formula(m.config(), -0.5, -0.5, 0.75), 1e-12);

  // Out-of-range entropies are clamped: negative to 0, +inf to the ceiling.
  ConfidenceMonitor odd;
  odd.onToken(0, -1);
  EXPECT_EQ(odd.features().mean_entropy, 0);
  odd.onToken(0, kInf);
  EXPECT_DOUBLE_EQ(odd.features().mean_entropy, ConfidenceMonitor::kEntropyCeiling / 2);

  // No entropy at all: the entropy term is left out and the others renormalized.
  ConfidenceMonitor none;
  for (int i = 0; i < 10; ++i) none.onToken(-0.2, kNaN);
  EXPECT_EQ(none.features().mean_entropy, 0);
  EXPECT_NEAR(*none.score(), std::exp(-0.2), 1e-12);  // (0.5 + 0.3) · e^-0.2 / 0.8
  ConfidenceConfig entropy_only;
  entropy_only.w_mean = 0;
  entropy_only.w_worst = 0;
  ConfidenceMonitor e(entropy_only);
  e.onToken(-0.2, kNaN);
  EXPECT_NEAR(*e.score(), std::exp(-0.2), 1e-12);
}

TEST(Confidence, ResetForgetsEverything) {
  ConfidenceMonitor m;
  for (int i = 0; i < 20; ++i) m.onToken(-4, 2);
  ASSERT_TRUE(m.shouldEscalateEarly());
  m.reset();
  EXPECT_EQ(m.tokens(), 0);
  EXPECT_FALSE(m.score().has_value());
  EXPECT_FALSE(m.shouldEscalateEarly());
  EXPECT_EQ(m.features().worst_window_logprob, 0);
  // After a reset it behaves exactly like a new monitor: the bad tokens leave no trace in the
  // window.
  ConfidenceMonitor fresh;
  for (int i = 0; i < 3; ++i) {
    m.onToken(-0.1, 0.2);
    fresh.onToken(-0.1, 0.2);
  }
  EXPECT_EQ(*m.score(), *fresh.score());
  EXPECT_EQ(m.features().worst_window_logprob, fresh.features().worst_window_logprob);
}

TEST(Confidence, LongStreamsDoNotDrift) {
  ConfidenceConfig c;
  c.window = 7;
  ConfidenceMonitor m(c);
  // About a million tokens of a repeating pattern whose window means are all the same.
  const double pattern[] = {-0.1, -0.7, -0.3, -2.9, -0.05, -1.3, -0.4};
  constexpr int kTokens = 7 * 142'857;
  for (int i = 0; i < kTokens; ++i) m.onToken(pattern[i % 7], 0.5);
  double sum = 0;
  for (double p : pattern) sum += p;
  EXPECT_NEAR(m.features().mean_logprob, sum / 7, 1e-9);
  EXPECT_NEAR(m.features().worst_window_logprob, sum / 7, 1e-9);  // every window is a rotation
  EXPECT_EQ(m.tokens(), kTokens);
}

TEST(Confidence, WindowBelowOneCountsAsOne) {
  ConfidenceConfig c;
  c.window = 0;
  ConfidenceMonitor m(c);
  m.onToken(-0.1, 0);
  m.onToken(-2.0, 0);
  m.onToken(-0.1, 0);
  EXPECT_EQ(m.config().window, 1);
  EXPECT_DOUBLE_EQ(m.features().worst_window_logprob, -2.0);
}

// ---- config from YAML ---------------------------------------------------------------------

api::StatusOr<ConfidenceConfig> readConfig(std::string_view yaml) {
  auto root = policies::YamlReader::parse(
      yaml, "router.yaml", [](const std::string&) { return std::optional<std::string>(); });
  if (!root.ok()) return root.status();
  return ConfidenceConfig::read(root->section("confidence"));
}

TEST(ConfidenceConfig, ReadsEveryKeyAndKeepsDefaultsForAbsentOnes) {
  auto c = readConfig(
      "confidence:\n  window: 16\n  min_tokens: 4\n  escalate_below: 0.7\n  w_mean: 1\n"
      "  w_worst: 2\n  w_entropy: 0\n  entropy_scale: 3.5\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->window, 16);
  EXPECT_EQ(c->min_tokens, 4);
  EXPECT_EQ(c->escalate_below, 0.7);
  EXPECT_EQ(c->w_mean, 1);
  EXPECT_EQ(c->w_worst, 2);
  EXPECT_EQ(c->w_entropy, 0);
  EXPECT_EQ(c->entropy_scale, 3.5);

  auto d = readConfig("confidence: {escalate_below: 0.5}\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->escalate_below, 0.5);
  EXPECT_EQ(d->window, 8);
  EXPECT_EQ(d->min_tokens, 8);
  EXPECT_EQ(d->w_mean, 0.5);
  EXPECT_EQ(d->entropy_scale, 2.0);
  for (std::string_view empty : {"", "confidence:\n", "confidence: {}\n"}) {
    auto e = readConfig(empty);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_EQ(e->escalate_below, 0.85);
  }
}

TEST(ConfidenceConfig, ErrorsNameFileLineAndKey) {
  auto check = [](std::string_view yaml, std::string_view want) {
    auto c = readConfig(yaml);
    ASSERT_FALSE(c.ok()) << yaml;
    EXPECT_EQ(c.status().code(), api::ErrorCode::kConfig);
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << "got: " << c.status().message() << "\nwant: " << want;
  };
  check("confidence:\n  windw: 8\n",
        "router.yaml:2: confidence.windw: unknown key; did you mean 'window'?");
  check("confidence:\n  window: 0\n", "router.yaml:2: confidence.window: must be >= 1");
  check("confidence:\n  window: 2.5\n", "router.yaml:2: confidence.window:");
  check("confidence:\n  min_tokens: -1\n", "router.yaml:2: confidence.min_tokens:");
  check("confidence:\n  escalate_below: 1.5\n",
        "router.yaml:2: confidence.escalate_below: must be <= 1, got 1.5");
  check("confidence:\n  w_worst: -0.1\n", "router.yaml:2: confidence.w_worst: must be >= 0");
  check("confidence:\n  entropy_scale: 0\n",
        "router.yaml:2: confidence.entropy_scale: must be > 0, got 0");
  check("confidence:\n  w_mean: 0\n  w_worst: 0\n  w_entropy: 0\n",
        "router.yaml:1: confidence: w_mean + w_worst + w_entropy must be > 0");
  check("confidence: 0.85\n", "router.yaml:1: confidence: expected a map of confidence settings");
}

}  // namespace
