#include "gateway/live_stats.h"

#include <algorithm>
#include <cmath>

namespace gateway {
namespace {

constexpr double kBinLog2 = 0.4;  // each latency bin is 2^0.4 ≈ 1.32 times the one before
const char* const kOther = "\x01other";  // not a valid team name, so never a clash

// The value at quantile `q` of a histogram, as the geometric middle of its bin.
std::optional<double> quantile(const std::array<int64_t, LiveStats::kLatencyBins>& h, double q,
                               double (*bin_ms)(int)) {
  int64_t total = 0;
  for (int64_t n : h) total += n;
  if (total == 0) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  int64_t seen = 0;
  for (int i = 0; i < LiveStats::kLatencyBins; ++i) {
    seen += h[i];
    if (static_cast<double>(seen) >= rank && h[i] > 0) {
      double hi = bin_ms(i);
      double lo = i == 0 ? 0 : bin_ms(i - 1);
      return i == 0 ? hi / 2 : std::sqrt(lo * hi);
    }
  }
  return bin_ms(LiveStats::kLatencyBins - 1);
}

}  // namespace

LiveStats::LiveStats(const std::vector<std::string>& teams) {
  for (const std::string& t : teams) series_[t];
  series_[kOther];
}

int LiveStats::latencyBin(double ms) {
  if (!(ms >= 1)) return 0;
  int bin = 1 + static_cast<int>(std::floor(std::log2(ms) / kBinLog2));
  return std::clamp(bin, 0, kLatencyBins - 1);
}

double LiveStats::binMs(int bin) { return std::exp2(kBinLog2 * bin); }

void LiveStats::add(const LiveSample& s) {
  const int64_t start = s.unix_ms - s.unix_ms % kBucketMs;
  const int slot = static_cast<int>((start / kBucketMs) % kBuckets);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(s.team);
  if (it == series_.end()) {
    // Teams come from the config and its reloads; past the cap they share one series.
    it = series_.size() < kMaxTeams ? series_.try_emplace(s.team).first : series_.find(kOther);
  }
  Bucket& b = it->second.buckets[slot];
  if (b.start_ms != start) {
    if (b.start_ms > start) return;  // a sample older than the window
    b = Bucket{};
    b.start_ms = start;
  }
  ++b.requests;
  if (s.status >= 400) ++b.errors;
  if (s.decision == "escalated") ++b.escalations;
  if (!s.decision.empty()) ++b.routing[s.decision];
  if (std::isfinite(s.cost_usd)) b.cost_usd += s.cost_usd;
  ++b.latency[latencyBin(s.latency_ms)];
}

LiveSummary LiveStats::summary(const std::optional<std::string>& team, int64_t now_ms) const {
  LiveSummary out;
  const int64_t last = now_ms - now_ms % kBucketMs;
  const int64_t first = last - (kBuckets - 1) * kBucketMs;
  std::array<int64_t, kLatencyBins> all{};
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t start = first; start <= last; start += kBucketMs) {
    const int slot = static_cast<int>((start / kBucketMs) % kBuckets);
    LiveBucket lb;
    lb.unix_ms = start;
    std::array<int64_t, kLatencyBins> h{};
    for (const auto& [name, series] : series_) {
      if (team && name != *team) continue;
      const Bucket& b = series.buckets[slot];
      if (b.start_ms != start) continue;
      lb.requests += b.requests;
      lb.errors += b.errors;
      lb.escalations += b.escalations;
      lb.cost_usd += b.cost_usd;
      for (const auto& [decision, n] : b.routing) out.routing[decision] += n;
      for (int i = 0; i < kLatencyBins; ++i) h[i] += b.latency[i];
    }
    lb.p50_ms = quantile(h, 0.50, &binMs);
    lb.p95_ms = quantile(h, 0.95, &binMs);
    for (int i = 0; i < kLatencyBins; ++i) all[i] += h[i];
    out.requests += lb.requests;
    out.errors += lb.errors;
    out.escalations += lb.escalations;
    out.timeline.push_back(lb);
  }
  out.p50_ms = quantile(all, 0.50, &binMs);
  out.p95_ms = quantile(all, 0.95, &binMs);
  out.p99_ms = quantile(all, 0.99, &binMs);
  return out;
}

}  // namespace gateway
