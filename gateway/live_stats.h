// LiveStats: the last hour of answered requests in memory, per team and per minute, for the
// dashboard (GET /admin/v1/dashboard): how many, how they were routed, errors, escalations,
// cost and latency percentiles. Bounded: 60 buckets per team, at most kMaxTeams teams (more
// share one series), a fixed log-spaced latency histogram per bucket.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace gateway {

struct LiveSample {
  std::string team;
  std::string decision;  // "direct", "local", "cloud", "cascade", "escalated" (else ignored)
  int status = 200;
  double latency_ms = 0;
  double cost_usd = 0;
  int64_t unix_ms = 0;
};

struct LiveBucket {
  int64_t unix_ms = 0;  // the bucket's first millisecond
  int64_t requests = 0, errors = 0, escalations = 0;
  double cost_usd = 0;
  std::optional<double> p50_ms, p95_ms;
};

struct LiveSummary {
  std::map<std::string, int64_t> routing;  // decision -> requests
  int64_t requests = 0, errors = 0, escalations = 0;
  std::optional<double> p50_ms, p95_ms, p99_ms;
  std::vector<LiveBucket> timeline;  // oldest first, every bucket of the window
};

class LiveStats {
 public:
  static constexpr int64_t kBucketMs = 60'000;
  static constexpr int kBuckets = 60;
  static constexpr size_t kMaxTeams = 1024;
  static constexpr int kLatencyBins = 48;  // log-spaced, ×1.32 per bin, 1 ms to ~10 min

  // `teams`: the teams of the config (each gets its own series; others are pooled).
  explicit LiveStats(const std::vector<std::string>& teams);

  void add(const LiveSample& s);
  // The window ending at `now_ms`, for one team or (nullopt) all teams together.
  LiveSummary summary(const std::optional<std::string>& team, int64_t now_ms) const;

 private:
  struct Bucket {
    int64_t start_ms = -1;  // -1: empty
    int64_t requests = 0, errors = 0, escalations = 0;
    double cost_usd = 0;
    std::map<std::string, int64_t> routing;
    std::array<int64_t, kLatencyBins> latency{};
  };
  struct Series {
    std::array<Bucket, kBuckets> buckets;
  };

  static int latencyBin(double ms);
  static double binMs(int bin);  // the bin's upper edge

  mutable std::mutex mu_;
  std::map<std::string, Series> series_;  // team (or "other") -> buckets
};

}  // namespace gateway
