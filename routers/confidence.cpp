#include "routers/confidence.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string_view>
#include <utility>

namespace routers {

api::StatusOr<ConfidenceConfig> ConfidenceConfig::read(const policies::YamlReader& r) {
  if (!r.isMap() && !r.isNull()) {
    return r.error(
        "expected a map of confidence settings {window: ..., escalate_below: ..., "
        "...}, got " +
        r.describe());
  }
  if (api::Status s = r.checkNoUnknownKeys({"window", "min_tokens", "escalate_below", "w_mean",
                                            "w_worst", "w_entropy", "entropy_scale"});
      !s.ok()) {
    return s;
  }
  ConfidenceConfig c;
  using policies::NumberRange;
  if (api::Status s = r.readInt("window", &c.window, 1, 4096); !s.ok()) return s;
  if (api::Status s = r.readInt("min_tokens", &c.min_tokens, 0, 1000000); !s.ok()) return s;
  if (api::Status s = r.readDouble("escalate_below", &c.escalate_below, NumberRange::atLeast(0, 1));
      !s.ok()) {
    return s;
  }
  const std::pair<std::string_view, double*> weights[] = {
      {"w_mean", &c.w_mean}, {"w_worst", &c.w_worst}, {"w_entropy", &c.w_entropy}};
  for (const auto& [key, out] : weights) {
    if (api::Status s = r.readDouble(key, out, NumberRange::atLeast(0, 100)); !s.ok()) return s;
  }
  if (!(c.w_mean + c.w_worst + c.w_entropy > 0)) {
    return r.keyError("w_mean + w_worst + w_entropy must be > 0");
  }
  if (api::Status s = r.readDouble("entropy_scale", &c.entropy_scale, NumberRange::positive(100));
      !s.ok()) {
    return s;
  }
  return c;
}

ConfidenceMonitor::ConfidenceMonitor(ConfidenceConfig config)
    : config_(config), ring_(static_cast<size_t>(std::max(1, config_.window)), 0.0) {
  config_.window = static_cast<int>(ring_.size());
}

void ConfidenceMonitor::onToken(double logprob, double entropy) {
  // NaN fails every comparison, so it lands on the floor with -inf.
  if (!(logprob >= kLogprobFloor)) logprob = kLogprobFloor;
  if (logprob > 0) logprob = 0;
  const int window = config_.window;
  sum_logprob_ += logprob;
  if (count_ >= window) window_sum_ -= ring_[head_];
  ring_[head_] = logprob;
  window_sum_ += logprob;
  ++count_;
  if (++head_ == window) {
    head_ = 0;
    // Once per lap, resum the window exactly so that add/subtract rounding never drifts.
    if (count_ >= window) window_sum_ = std::accumulate(ring_.begin(), ring_.end(), 0.0);
  }
  if (count_ >= window) {
    const double mean = window_sum_ / window;
    worst_full_window_ = count_ == window ? mean : std::min(worst_full_window_, mean);
  }

  if (!std::isnan(entropy)) {
    sum_entropy_ += std::clamp(entropy, 0.0, kEntropyCeiling);
    ++entropy_count_;
  }
}

double ConfidenceMonitor::worstWindowMean() const {
  if (count_ == 0) return 0;
  if (count_ < config_.window) return window_sum_ / count_;
  // The mean of all tokens can never be below the worst window by more than rounding; keep the
  // documented order worst <= mean exact.
  return std::min(worst_full_window_, sum_logprob_ / count_);
}

ConfidenceMonitor::Features ConfidenceMonitor::features() const {
  Features f;
  if (count_ == 0) return f;
  f.mean_logprob = sum_logprob_ / count_;
  f.worst_window_logprob = worstWindowMean();
  f.mean_entropy = entropy_count_ > 0 ? sum_entropy_ / entropy_count_ : 0;
  return f;
}

std::optional<double> ConfidenceMonitor::score() const {
  if (count_ == 0) return std::nullopt;
  const Features f = features();
  const ConfidenceConfig& c = config_;
  double num = c.w_mean * std::exp(f.mean_logprob) + c.w_worst * std::exp(f.worst_window_logprob);
  double den = c.w_mean + c.w_worst;
  if (entropy_count_ > 0) {
    num += c.w_entropy * (1 - std::min(1.0, f.mean_entropy / c.entropy_scale));
    den += c.w_entropy;
  }
  if (!(den > 0)) return std::exp(f.mean_logprob);
  return std::clamp(num / den, 0.0, 1.0);
}

bool ConfidenceMonitor::shouldEscalateEarly() const {
  if (count_ < config_.min_tokens) return false;
  const std::optional<double> s = score();
  return s && *s < config_.escalate_below;
}

void ConfidenceMonitor::reset() {
  std::fill(ring_.begin(), ring_.end(), 0.0);
  head_ = 0;
  count_ = 0;
  sum_logprob_ = 0;
  window_sum_ = 0;
  worst_full_window_ = 0;
  sum_entropy_ = 0;
  entropy_count_ = 0;
}

}  // namespace routers
