#include "routers/confidence.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>

namespace routers {
namespace {

// The keys of the score built on the sampled token's logprob, and what replaced them.
constexpr std::pair<std::string_view, std::string_view> kReplacedKeys[] = {
    {"window", "tail_fraction (the tails are the lowest share of tokens, not a window)"},
    {"w_mean", "w_top1 and w_margin (the sampled token's logprob moved with temperature)"},
    {"w_worst", "w_top1_tail, w_margin_tail and w_certainty_tail"},
    {"w_entropy", "w_certainty and w_certainty_tail"},
};

}  // namespace

api::StatusOr<ConfidenceConfig> ConfidenceConfig::read(const policies::YamlReader& r) {
  if (!r.isMap() && !r.isNull()) {
    return r.error(
        "expected a map of confidence settings {escalate_below: ..., w_top1: ..., "
        "...}, got " +
        r.describe());
  }
  for (const auto& [key, replacement] : kReplacedKeys) {
    if (r.has(key)) {
      return r.errorAt(key, "no longer read: the confidence is computed from the model's "
                            "distribution, not the sampled token; use " +
                                std::string(replacement) + " (README \"Confidence\")");
    }
  }
  if (api::Status s = r.checkNoUnknownKeys(
          {"min_tokens", "escalate_below", "w_top1", "w_margin", "w_certainty", "w_top1_tail",
           "w_margin_tail", "w_certainty_tail", "tail_fraction", "entropy_scale"});
      !s.ok()) {
    return s;
  }
  ConfidenceConfig c;
  using policies::NumberRange;
  if (api::Status s = r.readInt("min_tokens", &c.min_tokens, 0, 1000000); !s.ok()) return s;
  if (api::Status s = r.readDouble("escalate_below", &c.escalate_below, NumberRange::atLeast(0, 1));
      !s.ok()) {
    return s;
  }
  double sum = 0;
  for (const ConfidenceFeatureField& f : kConfidenceFeatureFields) {
    const std::string key = "w_" + std::string(f.name);
    if (api::Status s = r.readDouble(key, &(c.*f.weight), NumberRange::atLeast(0, 100)); !s.ok()) {
      return s;
    }
    sum += c.*f.weight;
  }
  if (!(sum > 0)) return r.keyError("the six confidence weights w_* must not all be 0");
  if (api::Status s = r.readDouble("tail_fraction", &c.tail_fraction, NumberRange::positive(1));
      !s.ok()) {
    return s;
  }
  if (api::Status s = r.readDouble("entropy_scale", &c.entropy_scale, NumberRange::positive(100));
      !s.ok()) {
    return s;
  }
  return c;
}

std::vector<std::pair<std::string_view, double>> ConfidenceFeatures::named() const {
  std::vector<std::pair<std::string_view, double>> out;
  for (const ConfidenceFeatureField& f : kConfidenceFeatureFields) {
    if ((f.from_entropy ? entropy_tokens : top_tokens) > 0) out.emplace_back(f.name, this->*f.value);
  }
  if (entropy_tokens > 0) out.emplace_back("mean_entropy", mean_entropy);
  return out;
}

std::optional<double> confidenceScore(
    const ConfidenceConfig& config,
    const std::array<std::optional<double>, kConfidenceFeatureFields.size()>& values) {
  double num = 0, den = 0, plain = 0;
  int known = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!values[i] || std::isnan(*values[i])) continue;
    const double v = std::clamp(*values[i], 0.0, 1.0);
    const double w = config.*kConfidenceFeatureFields[i].weight;
    num += w * v;
    den += w;
    plain += v;
    ++known;
  }
  if (known == 0) return std::nullopt;
  return std::clamp(den > 0 ? num / den : plain / known, 0.0, 1.0);
}

void ConfidenceMonitor::View::add(double v) {
  v = std::clamp(v, 0.0, 1.0);
  const int bin = std::min(kBins - 1, static_cast<int>(v * kBins));
  sum += v;
  ++count;
  bin_sum[bin] += v;
  ++bin_count[bin];
}

double ConfidenceMonitor::View::tailMean(double fraction) const {
  if (count == 0) return 0;
  const int want = std::max(1, static_cast<int>(std::ceil(fraction * count - 1e-9)));
  double total = 0;
  int taken = 0;
  for (int b = 0; b < kBins && taken < want; ++b) {
    const int n = bin_count[b];
    if (n == 0) continue;
    const int take = std::min(n, want - taken);
    // A bin taken in part counts at its mean: within one bin's width of its lowest values.
    total += take == n ? bin_sum[b] : bin_sum[b] * take / n;
    taken += take;
  }
  return std::clamp(total / want, 0.0, 1.0);
}

ConfidenceMonitor::ConfidenceMonitor(ConfidenceConfig config) : config_(config) {
  if (!(config_.tail_fraction > 0 && config_.tail_fraction <= 1)) config_.tail_fraction = 1;
  if (!(config_.entropy_scale > 0)) config_.entropy_scale = ConfidenceConfig{}.entropy_scale;
}

void ConfidenceMonitor::onToken(const TokenStats& stats) {
  ++count_;
  if (!std::isnan(stats.top1_logprob)) {
    // exp(-inf) = 0; a positive logprob (rounding) is probability 1.
    const double p1 = std::exp(std::min(0.0, stats.top1_logprob));
    const double p2 = std::isnan(stats.top2_logprob)
                          ? std::min(p1, 1 - p1)
                          : std::exp(std::min(stats.top2_logprob, std::min(0.0, stats.top1_logprob)));
    top1_.add(p1);
    margin_.add(p1 - p2);
  }
  if (!std::isnan(stats.entropy)) {
    const double h = std::clamp(stats.entropy, 0.0, kEntropyCeiling);
    sum_entropy_ += h;
    certainty_.add(1 - std::min(1.0, h / config_.entropy_scale));
  }
}

ConfidenceMonitor::Features ConfidenceMonitor::features() const {
  Features f;
  const double q = config_.tail_fraction;
  f.top_tokens = top1_.count;
  f.entropy_tokens = certainty_.count;
  f.top1 = top1_.mean();
  f.margin = margin_.mean();
  f.certainty = certainty_.mean();
  f.top1_tail = top1_.tailMean(q);
  f.margin_tail = margin_.tailMean(q);
  f.certainty_tail = certainty_.tailMean(q);
  f.mean_entropy = certainty_.count ? sum_entropy_ / certainty_.count : 0;
  return f;
}

std::optional<double> ConfidenceMonitor::score() const {
  if (count_ == 0) return std::nullopt;
  const Features f = features();
  std::array<std::optional<double>, kConfidenceFeatureFields.size()> values;
  for (size_t i = 0; i < values.size(); ++i) {
    const ConfidenceFeatureField& field = kConfidenceFeatureFields[i];
    if ((field.from_entropy ? f.entropy_tokens : f.top_tokens) > 0) values[i] = f.*field.value;
  }
  return confidenceScore(config_, values);
}

bool ConfidenceMonitor::shouldEscalateEarly() const {
  if (count_ < config_.min_tokens) return false;
  const std::optional<double> s = score();
  return s && *s < config_.escalate_below;
}

void ConfidenceMonitor::reset() {
  count_ = 0;
  top1_ = View{};
  margin_ = View{};
  certainty_ = View{};
  sum_entropy_ = 0;
}

}  // namespace routers
