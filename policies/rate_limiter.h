// RateLimiter: token buckets per team and per (team, API key), for requests per minute and
// tokens per minute, as RateLimitPolicy sets them.
//
// Each limit is a bucket whose capacity is its per-minute amount and which refills
// continuously at capacity / 60 per second, so a team may burst up to a minute's worth and
// then continues at the steady rate. A request takes 1 from each request bucket and its
// estimated tokens from each token bucket that applies to it, all or nothing. Once the answer
// is known, adjustTokens() corrects the token buckets by actual minus estimate; a bucket may
// go below zero (debt), which later requests wait out.
//
// A request whose estimate exceeds a token bucket's whole capacity is admitted when that
// bucket is full (and leaves it in debt), rather than never.
//
// Across gateway replicas (a shared PostgreSQL ledger) each replica enforces its share of every
// limit: setReplicas(n) divides each bucket's capacity and refill rate by n, the number of live
// replicas, exactly (a fractional share, no rounding), so that n replicas together refill at
// the configured rate and burst at most the configured amount. This is approximate: a replica
// sees only its own traffic (a load balancer that spreads unevenly makes a team hit its
// busiest replica's share first); a full bucket admits one request even when its share is below
// one request (a limit below n admits up to n at once); and membership lags (a replica that
// joins counts for the others at their next heartbeat, one that dies until its heartbeat is
// stale, which errs on the strict side). A new count takes effect at each bucket's next use:
// the time before it refills at the old rate, what is left is kept (capped at the new
// capacity), so that a change never refills a bucket at once.
//
// Buckets are created on first use and dropped once idle long enough to be full again (a
// full bucket is the same as no bucket), so memory follows the number of recently active
// (team, key) pairs. Thread-safe: buckets live in shards by team, one mutex each, and a
// team's buckets share a shard so that admit() is atomic across them. Time is always passed
// in, so tests drive it; a `now` older than a bucket's last update counts as no time passed.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "api/status.h"
#include "policies/policy_set.h"

namespace policies {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter() = default;
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Sets the number of gateway replicas that share every limit (live replicas, this one
  // included); values below 1 count as 1. Cheap (one atomic store): may be called per request.
  void setReplicas(int replicas);
  int replicas() const { return replicas_.load(std::memory_order_relaxed); }

  // Admits one request of team `team` made with key `key_id` ("" for unauthenticated callers)
  // under `p`, taking 1 request and `estimated_tokens` (negative counts as 0) from every
  // applicable bucket; or, when one of them lacks room, takes nothing and returns kRateLimited
  // with openai code "rate_limit_exceeded", a message naming the limit that binds longest
  // ("team 'research': 600 requests per minute", followed by " (200 on each of 3 gateway
  // replicas)" while shared) and withRetryAfter(the exact seconds until every bucket would
  // have room, given no other traffic).
  api::Status admit(const std::string& team, const std::string& key_id, const RateLimitPolicy& p,
                    int64_t estimated_tokens, Clock::time_point now);

  // Takes `delta` more tokens (actual minus estimated; negative gives tokens back, never above
  // a bucket's capacity) from the token buckets of (team, key_id) under `p`. Never refuses.
  void adjustTokens(const std::string& team, const std::string& key_id, const RateLimitPolicy& p,
                    int64_t delta, Clock::time_point now);

  // Drops every bucket that is full again at `now` (admit also does this, once a minute per
  // shard).
  void evictIdle(Clock::time_point now);

  // Buckets held now (each holds a scope's request and token levels), for tests and metrics.
  size_t bucketCount() const;

 private:
  struct Level {
    double capacity = 0;  // this replica's share of the per-minute limit; 0 = not in use
    double level = 0;     // what is left; below 0 is debt
    int64_t limit = 0;    // the configured per-minute limit (for messages)
  };
  struct Bucket {
    Level requests;
    Level tokens;
    Clock::time_point last{};  // when the levels were last refilled
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;  // "t\0<team>" or "k\0<team>\0<key id>"
    Clock::time_point last_sweep{};
  };
  static constexpr size_t kShards = 16;
  static constexpr std::chrono::seconds kSweepInterval{60};

  Shard& shardFor(const std::string& team);
  // The bucket of one scope, created full when absent and refilled to `now`, then given the
  // capacities of `limit` divided by `replicas`. Requires the shard's lock.
  static Bucket& bucket(Shard& shard, const std::string& map_key, const RateLimit& limit,
                        double replicas, Clock::time_point now);
  static void refill(Bucket& b, Clock::time_point now);
  static bool isFull(const Bucket& b);
  static void sweep(Shard& shard, Clock::time_point now);

  std::array<Shard, kShards> shards_;
  std::atomic<int> replicas_{1};
};

}  // namespace policies
