#include "policies/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace policies {
namespace {

using Clock = RateLimiter::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point t0 = Clock::time_point() + std::chrono::hours(1000);

RateLimitPolicy teamLimits(std::optional<int64_t> rpm, std::optional<int64_t> tpm) {
  RateLimitPolicy p;
  p.team.requests_per_minute = rpm;
  p.team.tokens_per_minute = tpm;
  return p;
}

// How many of `n` requests of `tokens` each are admitted at `now`.
int admitMany(RateLimiter& rl, const std::string& team, const std::string& key,
              const RateLimitPolicy& p, int n, int64_t tokens, Clock::time_point now) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += rl.admit(team, key, p, tokens, now).ok() ? 1 : 0;
  return ok;
}

TEST(RateLimiter, NoLimitsAdmitsEverythingAndKeepsNoBuckets) {
  RateLimiter rl;
  EXPECT_EQ(admitMany(rl, "research", "k", RateLimitPolicy{}, 10000, 1'000'000, t0), 10000);
  EXPECT_EQ(rl.bucketCount(), 0u);
}

TEST(RateLimiter, BurstsAMinuteThenRefusesWithRetryAfter) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(600, std::nullopt);
  EXPECT_EQ(admitMany(rl, "research", "notebook", p, 600, 0, t0), 600);
  api::Status s = rl.admit("research", "notebook", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), api::ErrorCode::kRateLimited);
  EXPECT_EQ(s.httpStatusCode(), 429);
  EXPECT_EQ(s.openaiCode(), "rate_limit_exceeded");
  EXPECT_EQ(s.message(),
            "rate limit exceeded: team 'research': 600 requests per minute; try again in 1 s");
  ASSERT_TRUE(s.retryAfterSeconds().has_value());
  EXPECT_NEAR(*s.retryAfterSeconds(), 0.1, 1e-9);  // 600/min refills one every 0.1 s
}

TEST(RateLimiter, RefillsContinuouslyUpToCapacity) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(600, std::nullopt);
  ASSERT_EQ(admitMany(rl, "research", "", p, 600, 0, t0), 600);
  // 50 ms: half a request; not yet.
  api::Status half = rl.admit("research", "", p, 0, t0 + milliseconds(50));
  ASSERT_FALSE(half.ok());
  EXPECT_NEAR(*half.retryAfterSeconds(), 0.05, 1e-9);
  EXPECT_EQ(admitMany(rl, "research", "", p, 5, 0, t0 + milliseconds(100)), 1);
  // 30 s later: 300 more, and no more than that.
  EXPECT_EQ(admitMany(rl, "research", "", p, 1000, 0, t0 + milliseconds(30'100)), 300);
  // Idle for an hour: full again, but never above capacity.
  EXPECT_EQ(admitMany(rl, "research", "", p, 1000, 0, t0 + std::chrono::hours(1)), 600);
}

TEST(RateLimiter, PerKeyLimitsAreSeparateAndTheTeamLimitIsShared) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.requests_per_minute = 10;
  p.per_key.requests_per_minute = 4;
  EXPECT_EQ(admitMany(rl, "research", "a", p, 4, 0, t0), 4);
  api::Status key_refusal = rl.admit("research", "a", p, 0, t0);
  ASSERT_FALSE(key_refusal.ok());
  EXPECT_EQ(key_refusal.message(),
            "rate limit exceeded: key 'a' of team 'research': 4 requests "
            "per minute; try again in 15 s");
  EXPECT_NEAR(*key_refusal.retryAfterSeconds(), 15, 1e-9);

  EXPECT_EQ(admitMany(rl, "research", "b", p, 4, 0, t0), 4);
  EXPECT_EQ(admitMany(rl, "research", "c", p, 2, 0, t0), 2);  // the team's 10 are gone
  api::Status team_refusal = rl.admit("research", "c", p, 0, t0);
  ASSERT_FALSE(team_refusal.ok());
  EXPECT_EQ(team_refusal.message(),
            "rate limit exceeded: team 'research': 10 requests per minute; try again in 6 s");
  EXPECT_NEAR(*team_refusal.retryAfterSeconds(), 6, 1e-9);

  // Another team is not affected.
  EXPECT_EQ(admitMany(rl, "other", "a", p, 4, 0, t0), 4);
}

TEST(RateLimiter, RetryAfterIsTheLongestWaitAndNamesThatLimit) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.requests_per_minute = 2;     // refills one every 30 s
  p.per_key.requests_per_minute = 1;  // refills one every 60 s
  ASSERT_TRUE(rl.admit("t", "k", p, 0, t0).ok());
  ASSERT_TRUE(rl.admit("t", "j", p, 0, t0).ok());
  api::Status s = rl.admit("t", "k", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NEAR(*s.retryAfterSeconds(), 60, 1e-9);
  EXPECT_NE(s.message().find("key 'k' of team 't': 1 requests per minute"), std::string::npos)
      << s.message();
}

TEST(RateLimiter, ARefusedRequestTakesNothing) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.requests_per_minute = 10;
  p.per_key.requests_per_minute = 1;
  ASSERT_TRUE(rl.admit("t", "a", p, 0, t0).ok());
  for (int i = 0; i < 50; ++i) ASSERT_FALSE(rl.admit("t", "a", p, 0, t0).ok());
  // Had the refusals of key a charged the team, these nine would not all fit.
  for (int i = 0; i < 9; ++i) {
    EXPECT_TRUE(rl.admit("t", "key" + std::to_string(i), p, 0, t0).ok()) << i;
  }
  EXPECT_FALSE(rl.admit("t", "key9", p, 0, t0).ok());
}

TEST(RateLimiter, UnauthenticatedCallersShareOnePerKeyBucket) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.per_key.requests_per_minute = 2;
  EXPECT_EQ(admitMany(rl, "local", "", p, 3, 0, t0), 2);
  api::Status s = rl.admit("local", "", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "rate limit exceeded: unauthenticated callers of team 'local': 2 "
            "requests per minute; try again in 30 s");
}

TEST(RateLimiter, TakesEstimatedTokens) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 1000);
  EXPECT_TRUE(rl.admit("t", "k", p, 400, t0).ok());
  EXPECT_TRUE(rl.admit("t", "k", p, 400, t0).ok());
  api::Status s = rl.admit("t", "k", p, 400, t0);  // 200 left
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "rate limit exceeded: team 't': 1000 tokens per minute (this request: "
            "an estimated 400 tokens); try again in 12 s");
  EXPECT_NEAR(*s.retryAfterSeconds(), 12, 1e-9);     // 200 tokens at 1000/min
  EXPECT_TRUE(rl.admit("t", "k", p, 200, t0).ok());  // the 200 that are left
  EXPECT_FALSE(rl.admit("t", "k", p, 1, t0).ok());
}

TEST(RateLimiter, AdjustsByActualMinusEstimate) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 1000);
  ASSERT_TRUE(rl.admit("t", "k", p, 400, t0).ok());  // 600 left
  rl.adjustTokens("t", "k", p, -300, t0);            // it used 100: 900 left
  EXPECT_TRUE(rl.admit("t", "k", p, 900, t0).ok());
  EXPECT_FALSE(rl.admit("t", "k", p, 1, t0).ok());
}

TEST(RateLimiter, UnderestimatesLeaveDebtThatLaterRequestsWaitOut) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(100, 1000);
  ASSERT_TRUE(rl.admit("t", "k", p, 1000, t0).ok());  // 0 left
  rl.adjustTokens("t", "k", p, 500, t0);              // it used 1500: 500 in debt
  api::Status s = rl.admit("t", "k", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NEAR(*s.retryAfterSeconds(), 30, 1e-9);  // 500 tokens at 1000/min
  EXPECT_FALSE(rl.admit("t", "k", p, 0, t0 + milliseconds(29'900)).ok());
  EXPECT_TRUE(rl.admit("t", "k", p, 0, t0 + seconds(30)).ok());
}

TEST(RateLimiter, GivingTokensBackNeverExceedsCapacity) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 1000);
  ASSERT_TRUE(rl.admit("t", "k", p, 100, t0).ok());
  rl.adjustTokens("t", "k", p, -5000, t0);
  EXPECT_TRUE(rl.admit("t", "k", p, 1000, t0).ok());
  EXPECT_FALSE(rl.admit("t", "k", p, 1, t0).ok());
}

TEST(RateLimiter, AdjustsTeamAndPerKeyTokenBuckets) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.tokens_per_minute = 10000;
  p.per_key.tokens_per_minute = 1000;
  ASSERT_TRUE(rl.admit("t", "a", p, 500, t0).ok());
  rl.adjustTokens("t", "a", p, 400, t0);  // key a: 100 left; team: 9100 left
  EXPECT_FALSE(rl.admit("t", "a", p, 101, t0).ok());
  EXPECT_TRUE(rl.admit("t", "a", p, 100, t0).ok());
  // The team lost 900 + 100: key b may take 1000 nine times, then the team has none.
  for (char k = 'b'; k <= 'j'; ++k) {
    EXPECT_TRUE(rl.admit("t", std::string(1, k), p, 1000, t0).ok()) << k;
  }
  api::Status s = rl.admit("t", "z", p, 1, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("team 't': 10000 tokens per minute"), std::string::npos);
}

TEST(RateLimiter, AnEstimateLargerThanTheBucketIsAdmittedWhenFull) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 1000);
  ASSERT_TRUE(rl.admit("t", "k", p, 5000, t0).ok());  // -4000
  api::Status s = rl.admit("t", "k", p, 1, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NEAR(*s.retryAfterSeconds(), 4001 * 60.0 / 1000, 1e-9);
  // A large one again, once the bucket is full.
  api::Status big = rl.admit("t", "k", p, 5000, t0 + seconds(299));
  ASSERT_FALSE(big.ok());
  EXPECT_NEAR(*big.retryAfterSeconds(), 1, 1e-9);  // needs all 1000: 5000 was owed, 4983.3 repaid
  EXPECT_TRUE(rl.admit("t", "k", p, 5000, t0 + seconds(300)).ok());
}

TEST(RateLimiter, NegativeEstimatesCountAsZero) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 100);
  ASSERT_TRUE(rl.admit("t", "k", p, -1000, t0).ok());
  EXPECT_TRUE(rl.admit("t", "k", p, 100, t0).ok());
  EXPECT_FALSE(rl.admit("t", "k", p, 1, t0).ok());
}

TEST(RateLimiter, FollowsAChangedPolicy) {
  RateLimiter rl;
  ASSERT_EQ(admitMany(rl, "t", "k", teamLimits(10, std::nullopt), 2, 0, t0), 2);  // 8 left
  // Lowered to 5: what is left is capped at the new capacity.
  EXPECT_EQ(admitMany(rl, "t", "k", teamLimits(5, std::nullopt), 10, 0, t0), 5);
  // A newly added token limit starts full.
  EXPECT_EQ(admitMany(rl, "t", "k", teamLimits(1000, 300), 10, 100, t0 + seconds(60)), 3);
}

TEST(RateLimiter, AnOlderTimestampCountsAsNoTimePassed) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(60, std::nullopt);  // one a second
  ASSERT_EQ(admitMany(rl, "t", "k", p, 60, 0, t0 + seconds(10)), 60);
  EXPECT_FALSE(rl.admit("t", "k", p, 0, t0).ok());
  EXPECT_FALSE(rl.admit("t", "k", p, 0, t0 + seconds(10)).ok());
  EXPECT_TRUE(rl.admit("t", "k", p, 0, t0 + seconds(11)).ok());
}

TEST(RateLimiter, EvictsBucketsOnceTheyAreFullAgain) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.per_key.requests_per_minute = 10;  // one request refills in 6 s
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(rl.admit("t", "key" + std::to_string(i), p, 0, t0).ok());
  }
  EXPECT_EQ(rl.bucketCount(), 100u);
  rl.evictIdle(t0 + milliseconds(5'999));
  EXPECT_EQ(rl.bucketCount(), 100u);
  rl.evictIdle(t0 + seconds(6));
  EXPECT_EQ(rl.bucketCount(), 0u);
  // A key whose bucket was dropped starts full, as it would have been.
  EXPECT_EQ(admitMany(rl, "t", "key0", p, 20, 0, t0 + seconds(6)), 10);
}

TEST(RateLimiter, AdmitSweepsIdleBucketsAboutOnceAMinute) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.per_key.requests_per_minute = 10;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(rl.admit("t", "key" + std::to_string(i), p, 0, t0).ok());
  }
  ASSERT_EQ(rl.bucketCount(), 100u);
  ASSERT_TRUE(rl.admit("t", "late", p, 0, t0 + seconds(61)).ok());
  EXPECT_EQ(rl.bucketCount(), 1u);  // only "late"
}

TEST(RateLimiter, DebtKeepsABucketFromEviction) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(std::nullopt, 60);  // one token a second
  ASSERT_TRUE(rl.admit("t", "k", p, 60, t0).ok());
  rl.adjustTokens("t", "k", p, 60, t0);  // -60
  rl.evictIdle(t0 + seconds(119));
  EXPECT_EQ(rl.bucketCount(), 1u);
  EXPECT_FALSE(rl.admit("t", "k", p, 60, t0 + seconds(119)).ok());
  rl.evictIdle(t0 + seconds(120));
  EXPECT_EQ(rl.bucketCount(), 0u);
}

// Eight threads, two per key, each trying 2000 requests whose estimates alternate 7 and 13
// tokens at one instant; returns {requests admitted, tokens admitted}.
std::pair<int, int64_t> hammer(RateLimiter& rl, const RateLimitPolicy& p) {
  constexpr int kThreads = 8;
  std::atomic<int> admitted{0};
  std::atomic<int64_t> tokens{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string key = "key" + std::to_string(t / 2);
      for (int i = 0; i < 2000; ++i) {
        int64_t estimate = i % 2 ? 13 : 7;
        if (rl.admit("research", key, p, estimate, t0).ok()) {
          admitted.fetch_add(1);
          tokens.fetch_add(estimate);
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  return {admitted.load(), tokens.load()};
}

TEST(RateLimiter, ConcurrentAdmitsTakeExactlyTheRequestLimit) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.requests_per_minute = 500;
  p.team.tokens_per_minute = 100000;
  p.per_key.requests_per_minute = 300;  // 4 keys: 1200, so the team's 500 binds
  auto [requests, tokens] = hammer(rl, p);
  EXPECT_EQ(requests, 500);
  EXPECT_GE(tokens, 500 * 7);
  EXPECT_LE(tokens, 500 * 13);
}

TEST(RateLimiter, ConcurrentAdmitsNeverExceedTheTokenLimit) {
  RateLimiter rl;
  RateLimitPolicy p;
  p.team.tokens_per_minute = 3000;
  p.per_key.requests_per_minute = 100000;
  auto [requests, tokens] = hammer(rl, p);
  EXPECT_LE(tokens, 3000);
  EXPECT_GT(tokens, 3000 - 7);  // 7-token requests kept coming until fewer than 7 were left
  EXPECT_GE(requests, 3000 / 13);
}

TEST(RateLimiter, ConcurrentAdmitsWithAMovingClockStayWithinCapacityPlusRefill) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(600, std::nullopt);  // 10 a second
  constexpr int kThreads = 4;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int ms = 0; ms < 2000; ++ms) {
        if (rl.admit("t", "k", p, 0, t0 + milliseconds(ms)).ok()) admitted.fetch_add(1);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  // 600 at once, then at most 10 a second over the 1.999 s that the clocks span.
  EXPECT_GE(admitted.load(), 600);
  EXPECT_LE(admitted.load(), 619);
}

// ---- Replicas sharing the limits ----

TEST(RateLimiter, EachReplicaEnforcesItsShareOfTheLimit) {
  RateLimiter rl;
  rl.setReplicas(3);
  RateLimitPolicy p = teamLimits(600, std::nullopt);
  EXPECT_EQ(admitMany(rl, "research", "", p, 1000, 0, t0), 200);
  api::Status s = rl.admit("research", "", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "rate limit exceeded: team 'research': 600 requests per minute (200 on each of 3 "
            "gateway replicas); try again in 1 s");
  EXPECT_NEAR(*s.retryAfterSeconds(), 0.3, 1e-9);  // 200 a minute: one every 0.3 s
  // It refills at its share of the rate too.
  EXPECT_EQ(admitMany(rl, "research", "", p, 1000, 0, t0 + seconds(30)), 100);
}

TEST(RateLimiter, SharesTokenAndPerKeyLimitsToo) {
  RateLimiter rl;
  rl.setReplicas(4);
  RateLimitPolicy p;
  p.team.tokens_per_minute = 4000;
  p.per_key.requests_per_minute = 40;
  EXPECT_EQ(admitMany(rl, "t", "a", p, 100, 100, t0), 10);  // the key's 10
  EXPECT_EQ(admitMany(rl, "t", "b", p, 100, 100, t0), 0);   // the team's 1000 tokens are gone
  api::Status s = rl.admit("t", "b", p, 100, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "rate limit exceeded: team 't': 4000 tokens per minute (1000 on each of 4 gateway "
            "replicas; this request: an estimated 100 tokens); try again in 6 s");
  // Tokens given back fill the share, never more.
  rl.adjustTokens("t", "a", p, -5000, t0);
  EXPECT_EQ(admitMany(rl, "t", "c", p, 100, 100, t0), 10);
}

TEST(RateLimiter, ThreeReplicasTogetherAdmitNoMoreThanOneGateway) {
  // The same stream of requests, round robin over three replicas, and all to one gateway: one
  // request every 25 ms for three minutes.
  for (int64_t limit : {600, 100, 20, 10}) {
    RateLimiter one;
    RateLimiter three[3];
    for (RateLimiter& r : three) r.setReplicas(3);
    RateLimitPolicy p = teamLimits(limit, std::nullopt);
    int alone = 0, shared = 0;
    for (int i = 0; i < 7200; ++i) {
      const Clock::time_point now = t0 + milliseconds(25 * i);
      alone += one.admit("t", "k", p, 0, now).ok() ? 1 : 0;
      shared += three[i % 3].admit("t", "k", p, 0, now).ok() ? 1 : 0;
    }
    // A minute's worth at once, then the rate: 4 minutes' worth in 3 minutes, at most. Three
    // shares admit as much, less the fractions of a request that each replica has left.
    EXPECT_LE(alone, 4 * limit) << limit;
    EXPECT_LE(shared, alone) << limit;
    EXPECT_GE(shared, alone * 0.9) << limit;
  }
}

TEST(RateLimiter, AShareBelowOneRequestAdmitsOneFromAFullBucket) {
  RateLimitPolicy p = teamLimits(2, std::nullopt);
  RateLimiter three[3];
  int admitted = 0;
  for (RateLimiter& r : three) {
    r.setReplicas(3);
    admitted += admitMany(r, "t", "k", p, 5, 0, t0);
  }
  EXPECT_EQ(admitted, 3);  // the documented overshoot of a limit below the replica count
  // Each then owes a request: 2/3 of one a minute repays it and refills the share in 90 s.
  api::Status s = three[0].admit("t", "k", p, 0, t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NEAR(*s.retryAfterSeconds(), 90, 1e-9);
  EXPECT_NE(s.message().find("(0.67 on each of 3 gateway replicas)"), std::string::npos)
      << s.message();
  EXPECT_FALSE(three[0].admit("t", "k", p, 0, t0 + seconds(89)).ok());
  EXPECT_TRUE(three[0].admit("t", "k", p, 0, t0 + seconds(90)).ok());
}

TEST(RateLimiter, FewerReplicasRaiseTheRateFromTheNextRefillWithoutABurst) {
  RateLimitPolicy p = teamLimits(600, std::nullopt);
  {
    RateLimiter rl;
    rl.setReplicas(3);
    ASSERT_EQ(admitMany(rl, "t", "k", p, 200, 0, t0), 200);
    rl.setReplicas(1);  // two replicas gone: the share grows to 600, the bucket stays empty
    EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0), 0);
    EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0 + seconds(1)), 10);  // 600 a minute now
    EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0 + seconds(61)), 600);
  }
  {
    RateLimiter rl;
    rl.setReplicas(3);
    ASSERT_EQ(admitMany(rl, "t", "k", p, 200, 0, t0), 200);
    rl.setReplicas(1);
    // The 3 s before the bucket's next use refill at the old share, 200 a minute...
    EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0 + seconds(3)), 10);
    // ...the time after it at 600.
    EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0 + seconds(4)), 10);
  }
}

TEST(RateLimiter, MoreReplicasCapWhatIsLeftAtTheNewShare) {
  RateLimiter rl;
  RateLimitPolicy p = teamLimits(600, std::nullopt);
  ASSERT_EQ(admitMany(rl, "t", "k", p, 100, 0, t0), 100);  // 500 left of 600
  rl.setReplicas(3);
  EXPECT_EQ(rl.replicas(), 3);
  EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0), 200);
  EXPECT_EQ(admitMany(rl, "t", "k", p, 1000, 0, t0 + seconds(3)), 10);  // 200 a minute now
}

TEST(RateLimiter, AReplicaCountBelowOneCountsAsOne) {
  RateLimiter rl;
  rl.setReplicas(0);
  EXPECT_EQ(rl.replicas(), 1);
  rl.setReplicas(-7);
  EXPECT_EQ(rl.replicas(), 1);
  api::Status s = rl.admit("t", "k", teamLimits(1, std::nullopt), 0, t0);
  EXPECT_TRUE(s.ok());
  s = rl.admit("t", "k", teamLimits(1, std::nullopt), 0, t0);
  EXPECT_EQ(s.message(), "rate limit exceeded: team 't': 1 requests per minute; try again in 60 s");
}

}  // namespace
}  // namespace policies
