#include "gateway/live_stats.h"

#include <gtest/gtest.h>

#include <cmath>

namespace gateway {
namespace {

constexpr int64_t kNow = 1795446245000;  // 2026-11-23

LiveSample sample(std::string team, std::string decision, int status, double ms, double cost,
                  int64_t at) {
  return LiveSample{std::move(team), std::move(decision), status, ms, cost, at};
}

TEST(LiveStats, CountsRoutingErrorsAndEscalationsPerTeam) {
  LiveStats stats({"alpha", "beta"});
  stats.add(sample("alpha", "local", 200, 10, 0, kNow));
  stats.add(sample("alpha", "escalated", 200, 900, 0.002, kNow - 61'000));
  stats.add(sample("alpha", "cascade", 200, 20, 0, kNow));
  stats.add(sample("beta", "cloud", 502, 30, 0, kNow));

  LiveSummary all = stats.summary(std::nullopt, kNow);
  EXPECT_EQ(all.requests, 4);
  EXPECT_EQ(all.errors, 1);
  EXPECT_EQ(all.escalations, 1);
  EXPECT_EQ(all.routing["local"], 1);
  EXPECT_EQ(all.routing["escalated"], 1);
  EXPECT_EQ(all.routing["cascade"], 1);
  EXPECT_EQ(all.routing["cloud"], 1);
  ASSERT_EQ(all.timeline.size(), static_cast<size_t>(LiveStats::kBuckets));
  EXPECT_EQ(all.timeline.back().requests, 3);
  EXPECT_EQ(all.timeline[all.timeline.size() - 2].requests, 1);
  EXPECT_NEAR(all.timeline[all.timeline.size() - 2].cost_usd, 0.002, 1e-12);
  EXPECT_FALSE(all.timeline.front().p50_ms.has_value());

  LiveSummary beta = stats.summary(std::string("beta"), kNow);
  EXPECT_EQ(beta.requests, 1);
  EXPECT_EQ(beta.errors, 1);
  EXPECT_EQ(beta.routing.count("local"), 0u);
}

TEST(LiveStats, LatencyPercentilesAreWithinABin) {
  LiveStats stats({"alpha"});
  for (int i = 1; i <= 100; ++i) stats.add(sample("alpha", "local", 200, i * 10.0, 0, kNow));
  LiveSummary s = stats.summary(std::nullopt, kNow);
  ASSERT_TRUE(s.p50_ms && s.p95_ms && s.p99_ms);
  // Bins are 2^0.4 (32%) wide: the reported value is within one bin of the true percentile.
  EXPECT_NEAR(*s.p50_ms, 500, 500 * 0.35);
  EXPECT_NEAR(*s.p95_ms, 950, 950 * 0.35);
  EXPECT_LE(*s.p50_ms, *s.p95_ms);
  EXPECT_LE(*s.p95_ms, *s.p99_ms);
}

TEST(LiveStats, OldBucketsLeaveTheWindow) {
  LiveStats stats({"alpha"});
  stats.add(sample("alpha", "local", 200, 5, 0, kNow - 2 * 3600'000));
  EXPECT_EQ(stats.summary(std::nullopt, kNow).requests, 0);
  stats.add(sample("alpha", "local", 200, 5, 0, kNow));
  // The same ring slot, reused by a newer minute, does not count the old sample.
  stats.add(sample("alpha", "local", 200, 5, 0, kNow - LiveStats::kBuckets * LiveStats::kBucketMs));
  EXPECT_EQ(stats.summary(std::nullopt, kNow).requests, 1);
}

TEST(LiveStats, UnknownTeamsGetTheirOwnSeriesAndOddValuesAreSafe) {
  LiveStats stats({});
  stats.add(sample("gamma", "direct", 200, -5, std::nan(""), kNow));
  stats.add(sample("gamma", "", 200, 1e12, 0, kNow));
  LiveSummary s = stats.summary(std::string("gamma"), kNow);
  EXPECT_EQ(s.requests, 2);
  EXPECT_EQ(s.routing["direct"], 1);
  EXPECT_EQ(s.timeline.back().cost_usd, 0);
}

}  // namespace
}  // namespace gateway
