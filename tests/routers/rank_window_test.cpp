// Rank windows (routers/rank_window.h) and the trigger decider that reads and fills them
// (routers/router.h triggerDecider): mid-ranks, warm-up, the ring, the bounds, concurrency, and
// the promise of `confidence_rank < 0.2`: 20% of the answers escalate whatever the scale of the
// confidence.
#include "routers/rank_window.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "routers/router.h"

namespace routers {
namespace {

constexpr RankedScore kConf = RankedScore::kConfidence;

TEST(RankWindow, MidRankOfTheScoresBefore) {
  RankWindow w(10);
  for (double x : {0.1, 0.2, 0.3, 0.4}) w.add(x);
  EXPECT_DOUBLE_EQ(*w.rank(0.05, 1), 0.0);    // below everything
  EXPECT_DOUBLE_EQ(*w.rank(0.5, 1), 1.0);     // above everything
  EXPECT_DOUBLE_EQ(*w.rank(0.25, 1), 0.5);    // two of four below
  EXPECT_DOUBLE_EQ(*w.rank(0.2, 1), 0.375);   // one below, one tie counted half: 1.5 / 4
  EXPECT_FALSE(w.rank(std::nan(""), 1));
  w.add(std::nan(""));  // ignored
  EXPECT_EQ(w.size(), 4u);
}

TEST(RankWindow, AllTiesRankInTheMiddle) {
  RankWindow w(100);
  for (int i = 0; i < 100; ++i) w.add(0.7);
  // A model whose confidence never varies: `confidence_rank < 0.15` escalates nothing.
  EXPECT_DOUBLE_EQ(*w.rank(0.7, 50), 0.5);
}

TEST(RankWindow, UnknownDuringWarmUp) {
  RankWindow w(10);
  EXPECT_FALSE(w.rank(0.5, 1));  // empty
  w.add(0.1);
  w.add(0.2);
  EXPECT_FALSE(w.rank(0.5, 3));
  w.add(0.3);
  EXPECT_DOUBLE_EQ(*w.rank(0.5, 3), 1.0);
}

TEST(RankWindow, RingForgetsTheOldest) {
  RankWindow w(3);
  for (double x : {0.9, 0.8, 0.7}) w.add(x);
  EXPECT_DOUBLE_EQ(*w.rank(0.5, 1), 0.0);
  for (double x : {0.1, 0.2, 0.3}) w.add(x);  // the three high scores are gone
  EXPECT_EQ(w.size(), 3u);
  EXPECT_DOUBLE_EQ(*w.rank(0.5, 1), 1.0);
}

TEST(RankWindows, RankIsReadBeforeTheScoreJoins) {
  RankWindows ranks;
  const RankConfig c{.window = 100, .warmup = 2};
  EXPECT_FALSE(ranks.rankAndAdd("a", "gemma", kConf, 0.5, c));  // empty: unknown, then kept
  EXPECT_FALSE(ranks.rankAndAdd("a", "gemma", kConf, 0.6, c));  // one score: still warming up
  EXPECT_DOUBLE_EQ(*ranks.rankAndAdd("a", "gemma", kConf, 0.55, c), 0.5);
  EXPECT_EQ(ranks.count("a", "gemma", kConf), 3u);
  // rank() reads without adding.
  EXPECT_DOUBLE_EQ(*ranks.rank("a", "gemma", kConf, 1.0, c), 1.0);
  EXPECT_EQ(ranks.count("a", "gemma", kConf), 3u);
}

TEST(RankWindows, TeamsModelsAndScoresHaveTheirOwnWindows) {
  RankWindows ranks;
  const RankConfig c{.window = 10, .warmup = 1};
  ranks.rankAndAdd("a", "gemma", kConf, 0.9, c);
  ranks.rankAndAdd("b", "gemma", kConf, 0.1, c);
  ranks.rankAndAdd("a", "other", kConf, 0.1, c);
  ranks.rankAndAdd("a", "gemma", RankedScore::kComplexity, 0.1, c);
  EXPECT_DOUBLE_EQ(*ranks.rank("a", "gemma", kConf, 0.5, c), 0.0);
  EXPECT_DOUBLE_EQ(*ranks.rank("b", "gemma", kConf, 0.5, c), 1.0);
  EXPECT_DOUBLE_EQ(*ranks.rank("a", "other", kConf, 0.5, c), 1.0);
  EXPECT_DOUBLE_EQ(*ranks.rank("a", "gemma", RankedScore::kComplexity, 0.5, c), 1.0);
  EXPECT_FALSE(ranks.rank("c", "gemma", kConf, 0.5, c));
  EXPECT_EQ(ranks.windows(), 4u);
}

TEST(RankWindows, ANewWindowSizeStartsAgain) {
  RankWindows ranks;
  for (int i = 0; i < 20; ++i) ranks.rankAndAdd("a", "m", kConf, i, {.window = 20, .warmup = 1});
  EXPECT_EQ(ranks.count("a", "m", kConf), 20u);
  EXPECT_FALSE(ranks.rank("a", "m", kConf, 5, {.window = 30, .warmup = 1}));
  ranks.rankAndAdd("a", "m", kConf, 5, {.window = 30, .warmup = 1});
  EXPECT_EQ(ranks.count("a", "m", kConf), 1u);
}

TEST(RankWindows, BoundedNumberOfWindows) {
  RankWindows ranks;
  const RankConfig c{.window = 10, .warmup = 1};
  for (size_t i = 0; i < RankWindows::kMaxWindows + 10; ++i) {
    ranks.rankAndAdd("team" + std::to_string(i), "m", kConf, 0.5, c);
  }
  EXPECT_EQ(ranks.windows(), RankWindows::kMaxWindows);
  // Past the cap a new key is never ranked, and an existing one still is.
  const std::string late = "team" + std::to_string(RankWindows::kMaxWindows + 1);
  EXPECT_FALSE(ranks.rankAndAdd(late, "m", kConf, 0.5, c));
  EXPECT_EQ(ranks.count(late, "m", kConf), 0u);
  EXPECT_TRUE(ranks.rankAndAdd("team0", "m", kConf, 0.6, c));
}

TEST(RankWindows, ManyThreadsOneWindow) {
  RankWindows ranks;
  const RankConfig c{.window = 500, .warmup = 1};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::uniform_real_distribution<double> u(0, 1);
      for (int i = 0; i < 2000; ++i) {
        std::optional<double> r = ranks.rankAndAdd("a", "m", kConf, u(rng), c);
        if (r) ASSERT_TRUE(*r >= 0 && *r <= 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ranks.count("a", "m", kConf), 500u);
}

// ---- the trigger decider ----------------------------------------------------------------------

std::shared_ptr<const policies::TeamPolicy> policyWith(const std::string& trigger,
                                                       RankConfig rank) {
  auto p = std::make_shared<policies::TeamPolicy>();
  p->name = "t";
  p->routing.local_model = "gemma";
  auto t = policies::Trigger::parse(trigger);
  EXPECT_TRUE(t.ok()) << t.status().message();
  p->routing.trigger = std::make_shared<const policies::Trigger>(std::move(t).value());
  p->routing.rank = rank;
  return p;
}

// The share of `n` answers whose confidences come from `draw` that `trigger` escalates, after
// `warmup` answers filled the window; each answer decided once, at its end.
template <typename Draw>
double escalatedShare(const std::string& trigger, RankWindows& ranks, int warmup, int n,
                      Draw draw, policies::TriggerVars vars = {}) {
  auto policy = policyWith(trigger, {.window = 1000, .warmup = warmup});
  int escalated = 0;
  for (int i = 0; i < warmup + n; ++i) {
    auto decide = triggerDecider(policy, "t", vars, &ranks, /*stream=*/false);
    std::string reason;
    const Verdict v = decide(draw(), /*final=*/true, &reason);
    if (i >= warmup) escalated += v == Verdict::kEscalate;
    if (i < warmup) EXPECT_EQ(v, Verdict::kKeepLocal) << "warm-up: the rank is unknown";
  }
  return static_cast<double>(escalated) / n;
}

TEST(TriggerDecider, ConfidenceRankBelowPointTwoEscalatesTwentyPercentWhateverTheScale) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0, 1);
  // Three models, three confidence scales: one near 1, one near 0, one in between.
  const std::vector<std::function<double()>> scales = {
      [&] { return 0.97 + 0.03 * u(rng); },
      [&] { return 0.02 * u(rng) * u(rng); },
      [&] { return 1 / (1 + std::exp(-3 * (u(rng) - 0.5))); },
  };
  for (size_t s = 0; s < scales.size(); ++s) {
    RankWindows ranks;
    const double share = escalatedShare("confidence_rank < 0.2", ranks, 50, 1000, scales[s]);
    EXPECT_NEAR(share, 0.20, 0.03) << "scale " << s;
  }
  // The absolute threshold the old default used escalates all or nothing of the same answers.
  RankWindows ranks;
  EXPECT_DOUBLE_EQ(escalatedShare("confidence < 0.85", ranks, 0, 1000, scales[0]), 0.0);
  EXPECT_DOUBLE_EQ(escalatedShare("confidence < 0.85", ranks, 0, 1000, scales[1]), 1.0);
}

TEST(TriggerDecider, BudgetAwareTriggerTightensAsTheBudgetIsUsed) {
  const std::string trigger =
      "(budget_used < 0.5 AND confidence_rank < 0.2) OR (budget_used < 0.8 AND confidence_rank "
      "< 0.1) OR confidence_rank < 0.03";
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  double last = 1;
  for (double used : {0.1, 0.6, 0.9}) {
    RankWindows ranks;
    const double share = escalatedShare(trigger, ranks, 50, 1000, [&] { return u(rng); },
                                        {.budget_used = used});
    EXPECT_LT(share, last) << "budget_used " << used;
    last = share;
  }
  EXPECT_NEAR(last, 0.03, 0.02);
}

TEST(TriggerDecider, RecordsOnceWhenTheCascadeDecides) {
  RankWindows ranks;
  auto policy = policyWith("confidence_rank < 0.15", {.window = 100, .warmup = 1});
  auto decide = triggerDecider(policy, "t", {}, &ranks, /*stream=*/false);
  std::string reason;
  // Early looks that decide nothing (an unknown rank, not final) record nothing.
  EXPECT_EQ(decide(0.4, false, &reason), Verdict::kUndecided);
  EXPECT_EQ(decide(std::nullopt, true, &reason), Verdict::kKeepLocal);
  EXPECT_EQ(ranks.count("t", "gemma", kConf), 0u);
  EXPECT_EQ(decide(0.4, true, &reason), Verdict::kKeepLocal);
  EXPECT_EQ(decide(0.4, true, &reason), Verdict::kKeepLocal);  // asked again: not again
  EXPECT_EQ(ranks.count("t", "gemma", kConf), 1u);
  // A stream decides once, after its held tokens: that look records.
  auto streamed = triggerDecider(policy, "t", {}, &ranks, /*stream=*/true);
  EXPECT_EQ(streamed(0.1, false, &reason), Verdict::kEscalate);
  EXPECT_EQ(ranks.count("t", "gemma", kConf), 2u);
  EXPECT_NE(reason.find("rank 0.000"), std::string::npos) << reason;
  // Without windows the rank is unknown and nothing breaks.
  auto bare = triggerDecider(policy, "t", {}, nullptr, false);
  EXPECT_EQ(bare(0.1, true, &reason), Verdict::kKeepLocal);
}

// ---- complexity_rank at plan time ---------------------------------------------------------------

TEST(Router, ComplexityRankIsKnownAtPlanTimeAndExplainDoesNotRecord) {
  auto policy = policyWith("complexity_rank > 0.9", {.window = 100, .warmup = 3});
  RankWindows ranks;
  auto planFor = [&](const std::string& text, bool record) {
    api::ChatRequest r;
    r.model = "auto";
    api::Message m;
    m.role = api::Role::kUser;
    m.content = api::Content::ofText(text);
    r.messages.push_back(m);
    RouteInputs in;
    in.request = &r;
    in.policy = policy.get();
    in.ranks = &ranks;
    in.team = "t";
    in.record_rank = record;
    return planRoute(in, ComplexityWeights{});
  };
  for (int i = 0; i < 3; ++i) {
    RoutePlan p = planFor("hi", true);
    EXPECT_FALSE(p.vars.complexity_rank) << "warm-up";
    EXPECT_EQ(p.target, RoutePlan::Target::kCascade);  // unknown: the local answer decides
  }
  const std::string hard =
      "Prove that the sum of the first n odd numbers is n squared, then derive a closed form for "
      "the sum of the first n cubes and implement both in C++ with tests. ```code``` step by step";
  RoutePlan p = planFor(hard, false);
  ASSERT_TRUE(p.vars.complexity_rank);
  EXPECT_DOUBLE_EQ(*p.vars.complexity_rank, 1.0);
  EXPECT_EQ(p.target, RoutePlan::Target::kCloud);
  EXPECT_EQ(ranks.count("t", "gemma", RankedScore::kComplexity), 3u);  // explained, not kept
  RoutePlan easy = planFor("hi", true);
  EXPECT_DOUBLE_EQ(*easy.vars.complexity_rank, 0.5);
  EXPECT_EQ(easy.target, RoutePlan::Target::kLocal);
  EXPECT_EQ(ranks.count("t", "gemma", RankedScore::kComplexity), 4u);
}

}  // namespace
}  // namespace routers
