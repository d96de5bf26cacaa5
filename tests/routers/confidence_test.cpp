// The confidence monitor (routers/confidence.h): its formula on known token streams against a
// brute-force reference, the tails, independence from the sampled token, early escalation,
// hostile inputs, reset, and its config from YAML.
#include "routers/confidence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using routers::ConfidenceConfig;
using routers::ConfidenceMonitor;
using routers::TokenStats;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TokenStats token(double p1, double p2, double entropy, double logprob = kNaN) {
  TokenStats t;
  t.top1_logprob = std::log(p1);
  t.top2_logprob = std::log(p2);
  t.entropy = entropy;
  t.logprob = logprob;
  return t;
}

// The mean of the lowest `fraction` of `v` (at least one), exactly.
double tailMean(std::vector<double> v, double fraction) {
  std::sort(v.begin(), v.end());
  const size_t k = std::max<size_t>(1, static_cast<size_t>(std::ceil(fraction * v.size() - 1e-9)));
  return std::accumulate(v.begin(), v.begin() + static_cast<long>(k), 0.0) / static_cast<double>(k);
}

double mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// The documented formula, written out independently of the monitor, over per-token views.
double formula(const ConfidenceConfig& c, const std::vector<double>& top1,
               const std::vector<double>& margin, const std::vector<double>& certainty) {
  const double q = c.tail_fraction;
  const double num = c.w_top1 * mean(top1) + c.w_margin * mean(margin) +
                     c.w_certainty * mean(certainty) + c.w_top1_tail * tailMean(top1, q) +
                     c.w_margin_tail * tailMean(margin, q) +
                     c.w_certainty_tail * tailMean(certainty, q);
  return num / (c.w_top1 + c.w_margin + c.w_certainty + c.w_top1_tail + c.w_margin_tail +
                c.w_certainty_tail);
}

TEST(Confidence, NoTokensNoScore) {
  ConfidenceMonitor m;
  EXPECT_EQ(m.tokens(), 0);
  EXPECT_FALSE(m.score());
  EXPECT_FALSE(m.shouldEscalateEarly());
  const ConfidenceMonitor::Features f = m.features();
  EXPECT_EQ(f.top1, 0);
  EXPECT_EQ(f.top_tokens, 0);
  EXPECT_TRUE(f.named().empty());
}

TEST(Confidence, CertainTokensScoreOne) {
  ConfidenceMonitor m;
  for (int i = 0; i < 20; ++i) m.onToken(token(1.0, 0.0, 0.0));
  ASSERT_TRUE(m.score());
  EXPECT_DOUBLE_EQ(*m.score(), 1.0);
  EXPECT_FALSE(m.shouldEscalateEarly());
}

TEST(Confidence, UniformOverALargeVocabularyScoresNearZero) {
  ConfidenceMonitor m;
  const double v = 262144, ln_v = std::log(v);
  for (int i = 0; i < 20; ++i) m.onToken(token(1 / v, 1 / v, ln_v));
  ASSERT_TRUE(m.score());
  EXPECT_LT(*m.score(), 1e-4);
  EXPECT_TRUE(m.shouldEscalateEarly());
  EXPECT_NEAR(m.features().mean_entropy, ln_v, 1e-12);
}

TEST(Confidence, MatchesTheFormulaWithTailsWithinOneBin) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 30; ++trial) {
    ConfidenceConfig c;
    c.tail_fraction = std::vector<double>{0.05, 0.1, 0.25, 1.0}[trial % 4];
    c.w_certainty_tail = trial % 3 == 0 ? 0 : 0.3;
    ConfidenceMonitor m(c);
    std::vector<double> top1, margin, certainty;
    const int n = 1 + static_cast<int>(rng() % 300);
    for (int i = 0; i < n; ++i) {
      const double p1 = 0.05 + 0.95 * u(rng);
      const double p2 = std::min(p1, 1 - p1) * u(rng);
      const double h = 3 * u(rng);
      m.onToken(token(p1, p2, h));
      top1.push_back(p1);
      margin.push_back(p1 - p2);
      certainty.push_back(1 - std::min(1.0, h / c.entropy_scale));
    }
    ASSERT_TRUE(m.score());
    // The tails come from a 256-bin histogram: within a bin's width of the exact ones.
    EXPECT_NEAR(*m.score(), formula(c, top1, margin, certainty), 1.0 / 256) << trial;
    const ConfidenceMonitor::Features f = m.features();
    EXPECT_NEAR(f.top1, mean(top1), 1e-12);
    EXPECT_NEAR(f.margin, mean(margin), 1e-12);
    EXPECT_NEAR(f.certainty, mean(certainty), 1e-12);
    EXPECT_NEAR(f.top1_tail, tailMean(top1, c.tail_fraction), 1.0 / 256);
    EXPECT_NEAR(f.margin_tail, tailMean(margin, c.tail_fraction), 1.0 / 256);
    EXPECT_NEAR(f.certainty_tail, tailMean(certainty, c.tail_fraction), 1.0 / 256);
    EXPECT_LE(f.top1_tail, f.top1 + 1e-12);
    EXPECT_EQ(f.top_tokens, n);
    EXPECT_EQ(f.entropy_tokens, n);
  }
}

TEST(Confidence, TailCatchesABadStretchInAGoodAnswer) {
  ConfidenceConfig c;
  ConfidenceMonitor fluent(c), stretch(c);
  for (int i = 0; i < 200; ++i) {
    fluent.onToken(token(0.95, 0.02, 0.2));
    const bool bad = i >= 100 && i < 110;  // 10 tokens where two continuations compete
    stretch.onToken(bad ? token(0.3, 0.28, 2.5) : token(0.95, 0.02, 0.2));
  }
  const ConfidenceMonitor::Features f = stretch.features();
  // The means barely move; the tails drop to the stretch (the lowest 10% are 20 tokens: 10 bad).
  EXPECT_GT(f.top1, 0.9);
  EXPECT_NEAR(f.top1_tail, (10 * 0.3 + 10 * 0.95) / 20, 1.0 / 256);
  EXPECT_NEAR(f.margin_tail, (10 * 0.02 + 10 * 0.93) / 20, 1.0 / 256);
  EXPECT_LT(*stretch.score(), *fluent.score() - 0.1);
}

TEST(Confidence, TheSampledTokensLogprobDoesNotEnter) {
  // The same distributions, with the sampled token once the likeliest and once a rare one (what
  // a high temperature draws): the same score.
  ConfidenceMonitor greedy, hot;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 100; ++i) {
    const double p1 = 0.2 + 0.8 * u(rng), p2 = std::min(p1, 1 - p1) * u(rng), h = 2 * u(rng);
    greedy.onToken(token(p1, p2, h, std::log(p1)));
    hot.onToken(token(p1, p2, h, std::log(1e-4)));
  }
  EXPECT_DOUBLE_EQ(*greedy.score(), *hot.score());
}

TEST(Confidence, MinTokensGatesEarlyEscalation) {
  ConfidenceConfig c;
  c.min_tokens = 5;
  c.escalate_below = 0.5;
  ConfidenceMonitor m(c);
  for (int i = 0; i < 4; ++i) {
    m.onToken(token(0.05, 0.04, 3.0));
    EXPECT_FALSE(m.shouldEscalateEarly()) << i;
  }
  m.onToken(token(0.05, 0.04, 3.0));
  EXPECT_TRUE(m.shouldEscalateEarly());
  c.min_tokens = 0;
  ConfidenceMonitor z(c);
  EXPECT_FALSE(z.shouldEscalateEarly());  // no score yet, whatever min_tokens says
  z.onToken(token(0.05, 0.04, 3.0));
  EXPECT_TRUE(z.shouldEscalateEarly());
}

TEST(Confidence, HostileInputsAreSanitized) {
  ConfidenceMonitor m;
  TokenStats t;
  t.top1_logprob = -kInf;  // probability 0
  t.top2_logprob = kNaN;
  t.entropy = kInf;  // the ceiling: certainty 0
  m.onToken(t);
  t.top1_logprob = 1e-6;  // rounding above 0: probability 1
  t.top2_logprob = 0.5;   // above the top-1: counts as the top-1 (margin 0)
  t.entropy = -1;         // counts as 0
  m.onToken(t);
  const ConfidenceMonitor::Features f = m.features();
  EXPECT_DOUBLE_EQ(f.top1, 0.5);
  EXPECT_DOUBLE_EQ(f.margin, 0.0);
  EXPECT_DOUBLE_EQ(f.certainty, 0.5);
  EXPECT_DOUBLE_EQ(f.mean_entropy, (ConfidenceMonitor::kEntropyCeiling + 0) / 2);
  ASSERT_TRUE(m.score());
  EXPECT_TRUE(std::isfinite(*m.score()));
  EXPECT_GE(*m.score(), 0);
  EXPECT_LE(*m.score(), 1);
}

TEST(Confidence, AMissingTopTwoNeverOverstatesTheMargin) {
  ConfidenceMonitor m;
  TokenStats t;
  t.top1_logprob = std::log(0.7);  // the rest, 0.3, could all be one token
  m.onToken(t);
  EXPECT_NEAR(m.features().margin, 0.7 - 0.3, 1e-12);
  m.reset();
  t.top1_logprob = std::log(0.3);  // a second token as likely as the first is possible
  m.onToken(t);
  EXPECT_NEAR(m.features().margin, 0.0, 1e-12);
}

TEST(Confidence, UnknownFeaturesAreLeftOutAndTheRestRenormalised) {
  // Entropy never known (a server with a top-1 only): the certainty features are left out.
  ConfidenceConfig c;
  ConfidenceMonitor m(c);
  TokenStats t;
  t.top1_logprob = std::log(0.8);
  t.top2_logprob = std::log(0.1);
  for (int i = 0; i < 10; ++i) m.onToken(t);
  const double want = (c.w_top1 * 0.8 + c.w_margin * 0.7 + c.w_top1_tail * 0.8 +
                       c.w_margin_tail * 0.7) /
                      (c.w_top1 + c.w_margin + c.w_top1_tail + c.w_margin_tail);
  EXPECT_NEAR(*m.score(), want, 1.0 / 256);
  const auto named = m.features().named();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].first, "top1");
  EXPECT_EQ(named[3].first, "margin_tail");

  // Only entropy known, and the certainty weights 0: the plain mean of what is known.
  c.w_certainty = c.w_certainty_tail = 0;
  ConfidenceMonitor e(c);
  TokenStats h;
  h.entropy = 1.0;
  e.onToken(h);
  EXPECT_NEAR(*e.score(), 0.5, 1e-12);
  ASSERT_EQ(e.features().named().size(), 3u);  // certainty, its tail, mean_entropy

  // Nothing known at all: a token is counted, but there is no score.
  ConfidenceMonitor n;
  n.onToken(TokenStats{});
  EXPECT_EQ(n.tokens(), 1);
  EXPECT_FALSE(n.score());
  EXPECT_FALSE(n.shouldEscalateEarly());
}

TEST(Confidence, ResetForgetsEverything) {
  ConfidenceMonitor m;
  for (int i = 0; i < 30; ++i) m.onToken(token(0.1, 0.05, 2.5));
  const double low = *m.score();
  m.reset();
  EXPECT_EQ(m.tokens(), 0);
  EXPECT_FALSE(m.score());
  for (int i = 0; i < 30; ++i) m.onToken(token(1.0, 0.0, 0.0));
  EXPECT_DOUBLE_EQ(*m.score(), 1.0);
  EXPECT_LT(low, 0.5);
}

TEST(Confidence, ScoreFunctionMatchesTheMonitor) {
  ConfidenceMonitor m;
  for (int i = 0; i < 40; ++i) m.onToken(token(0.6 + 0.01 * i, 0.1, 0.5 + 0.02 * i));
  const ConfidenceMonitor::Features f = m.features();
  std::array<std::optional<double>, routers::kConfidenceFeatureFields.size()> values;
  for (size_t i = 0; i < values.size(); ++i) values[i] = f.*routers::kConfidenceFeatureFields[i].value;
  EXPECT_DOUBLE_EQ(*routers::confidenceScore(m.config(), values), *m.score());
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
      "confidence:\n  min_tokens: 4\n  escalate_below: 0.7\n  w_top1: 1\n  w_margin: 2\n"
      "  w_certainty: 0\n  w_top1_tail: 3\n  w_margin_tail: 4\n  w_certainty_tail: 5\n"
      "  tail_fraction: 0.2\n  entropy_scale: 3.5\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->min_tokens, 4);
  EXPECT_EQ(c->escalate_below, 0.7);
  EXPECT_EQ(c->w_top1, 1);
  EXPECT_EQ(c->w_margin, 2);
  EXPECT_EQ(c->w_certainty, 0);
  EXPECT_EQ(c->w_top1_tail, 3);
  EXPECT_EQ(c->w_margin_tail, 4);
  EXPECT_EQ(c->w_certainty_tail, 5);
  EXPECT_EQ(c->tail_fraction, 0.2);
  EXPECT_EQ(c->entropy_scale, 3.5);

  auto d = readConfig("confidence: {escalate_below: 0.5}\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->escalate_below, 0.5);
  EXPECT_EQ(d->min_tokens, 8);
  EXPECT_EQ(d->w_top1, ConfidenceConfig{}.w_top1);
  EXPECT_EQ(d->tail_fraction, 0.1);
  EXPECT_EQ(d->entropy_scale, 2.0);
  for (std::string_view empty : {"", "confidence:\n", "confidence: {}\n"}) {
    auto e = readConfig(empty);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_EQ(e->escalate_below, ConfidenceConfig{}.escalate_below);
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
  check("confidence:\n  w_top: 1\n",
        "router.yaml:2: confidence.w_top: unknown key; did you mean 'w_top1'?");
  check("confidence:\n  min_tokens: -1\n", "router.yaml:2: confidence.min_tokens:");
  check("confidence:\n  escalate_below: 1.5\n",
        "router.yaml:2: confidence.escalate_below: must be <= 1, got 1.5");
  check("confidence:\n  w_margin_tail: -0.1\n",
        "router.yaml:2: confidence.w_margin_tail: must be >= 0");
  check("confidence:\n  entropy_scale: 0\n",
        "router.yaml:2: confidence.entropy_scale: must be > 0, got 0");
  check("confidence:\n  tail_fraction: 0\n", "router.yaml:2: confidence.tail_fraction: must be > 0");
  check("confidence:\n  tail_fraction: 1.5\n", "router.yaml:2: confidence.tail_fraction:");
  check(
      "confidence: {w_top1: 0, w_margin: 0, w_certainty: 0, w_top1_tail: 0, w_margin_tail: 0,\n"
      "             w_certainty_tail: 0}\n",
      "router.yaml:1: confidence: the six confidence weights w_* must not all be 0");
  check("confidence: 0.85\n", "router.yaml:1: confidence: expected a map of confidence settings");
  // The keys of the score built on the sampled token name their replacements.
  check("confidence:\n  min_tokens: 4\n  w_mean: 0.5\n",
        "router.yaml:3: confidence.w_mean: no longer read");
  check("confidence:\n  w_mean: 0.5\n", "use w_top1 and w_margin");
  check("confidence:\n  window: 8\n", "use tail_fraction");
  check("confidence:\n  w_worst: 0.3\n", "use w_top1_tail, w_margin_tail and w_certainty_tail");
  check("confidence:\n  w_entropy: 0.2\n", "use w_certainty and w_certainty_tail");
}

}  // namespace
