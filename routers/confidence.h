// ConfidenceMonitor: how sure the local model is of the answer it is writing, token by token,
// as a score in [0, 1]. In a cascade the local engine's tokens feed one monitor per request; a
// low score escalates the request to a cloud model (early, while streaming, through
// shouldEscalateEarly; or at the end, by the team's trigger expression over score()).
//
// Inputs (TokenStats, routers/provider.h) describe the distribution each token was drawn from,
// before temperature, top-k, top-p and penalties: its largest logprob (top-1), its second
// largest (top-2) and its entropy. The sampled token's own logprob is NOT an input: under
// temperature 1 a chat model's sampled tokens have -log p near the entropy, and under
// temperature 0.2 near 0, so a score built on it moves with the client's sampling settings.
// Everything here is the same whatever the sampling settings: the same prefix gives the same
// score at temperature 0.2 and 1.5.
//
// Per token, three views of how peaked the distribution is, each in [0, 1], 1 = certain:
//     top1      = p1                          (the top-1 probability)
//     margin    = p1 − p2                     (top-1 over top-2: small when two continuations
//                                              compete, even if p1 is fair)
//     certainty = 1 − min(1, H / entropy_scale)
// and per answer, six features: the mean of each view over the tokens, and its tail, the mean of
// the lowest `tail_fraction` of that view's per-token values (at least one token). The score is
// their weighted mean:
//
//     score = Σ_f w_f · f / Σ_f w_f,   f ∈ {top1, margin, certainty, top1_tail, margin_tail,
//                                           certainty_tail}
//
// Why a tail: one shaky stretch (a made-up number, a wrong turn in a proof) is averaged away by
// a long fluent answer, while the low tail of token confidence keeps it. DeepConf (Fu et al.
// 2025, "Deep Think with Confidence", arXiv:2508.15260) finds the mean over the least confident
// 10% of a trace ("bottom 10% group confidence") separates right from wrong answers better than
// the mean over the whole trace; tail_fraction 0.1 follows it. The tail is computed over a
// histogram of 256 bins per view (O(1) per token, O(256) per score, no allocation after
// construction): it is within 1/256 of the exact mean of the lowest values.
//
// The score is linear in the six features, so `switchyard-cli quality calibrate` fits the
// weights as it fits the complexity weights (quality/calibrate.h): a logistic regression of
// "the cloud answer was better" on 1 − each feature, weights >= 0, normalised to sum to 1.
//
// Inputs are sanitized, never trusted: a NaN top-1 makes the token's top1 and margin unknown
// (counted in tokens(), not in those features); a top-1 above 0 (rounding) counts as 0 and
// -inf as probability 0; a NaN top-2 (not reported: a server returning one alternative) counts
// as the largest it could be, min(p1, 1 − p1), so the margin is never overstated; a top-2 above
// the top-1 counts as the top-1 (margin 0); -inf is probability 0. A NaN entropy is unknown (not
// in the certainty features), a negative one counts as 0 and +inf as kEntropyCeiling. Features
// with no token behind them are left out of the score and the others renormalised; when the
// weights of every known feature are 0, the score is their plain mean; when no feature is known
// (no token, or tokens with neither a top-1 nor an entropy) there is no score.
//
// Thread-compatible: one monitor per request, fed from one thread at a time; no locks.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "policies/yaml_reader.h"
#include "routers/provider.h"

namespace routers {

struct ConfidenceConfig {
  int min_tokens = 8;             // tokens before any early decision; >= 0
  double escalate_below = 0.45;   // early escalation threshold, in [0, 1]; the team's trigger
                                  // decides at the end
  // Weights of the six features (module comment), each in [0, 100], with a positive sum.
  double w_top1 = 0.25;
  double w_margin = 0.2;
  double w_certainty = 0.15;
  double w_top1_tail = 0.15;
  double w_margin_tail = 0.15;
  double w_certainty_tail = 0.1;
  double tail_fraction = 0.1;  // share of tokens in the tails, in (0, 1]
  double entropy_scale = 2.0;  // nats of entropy mapped to 0 certainty; in (0, 100]

  // Reads an optional map {min_tokens, escalate_below, w_top1, w_margin, w_certainty,
  // w_top1_tail, w_margin_tail, w_certainty_tail, tail_fraction, entropy_scale}; absent keys
  // keep their defaults, a null node is all defaults. Ranges as above. The keys of the earlier
  // score, built on the sampled token's logprob (window, w_mean, w_worst, w_entropy), are
  // kConfig errors naming their replacements; unknown keys and bad values are kConfig errors
  // naming "<file>:<line>: <key.path>: ...".
  static api::StatusOr<ConfidenceConfig> read(const policies::YamlReader& r);
};

// What a score is made of (ConfidenceMonitor::features()).
struct ConfidenceFeatures {
  double top1 = 0, margin = 0, certainty = 0;                 // means over the tokens
  double top1_tail = 0, margin_tail = 0, certainty_tail = 0;  // means over their lowest tails
  double mean_entropy = 0;  // nats, of the tokens with an entropy (reported, not scored)
  int top_tokens = 0;       // tokens with a known top-1 (behind top1, margin and their tails)
  int entropy_tokens = 0;   // tokens with a known entropy (behind the certainty features)

  // The features the score is made of and quality records carry (quality/record.h), by name:
  // the six weighted ones for which a token was seen, then "mean_entropy" when one was.
  std::vector<std::pair<std::string_view, double>> named() const;
};

// The six weighted features: name (the config key without "w_"), weight and value.
struct ConfidenceFeatureField {
  std::string_view name;
  double ConfidenceConfig::*weight;
  double ConfidenceFeatures::*value;
  bool from_entropy;  // known when an entropy was seen (else: when a top-1 was)
};
inline constexpr std::array<ConfidenceFeatureField, 6> kConfidenceFeatureFields = {{
    {"top1", &ConfidenceConfig::w_top1, &ConfidenceFeatures::top1, false},
    {"margin", &ConfidenceConfig::w_margin, &ConfidenceFeatures::margin, false},
    {"certainty", &ConfidenceConfig::w_certainty, &ConfidenceFeatures::certainty, true},
    {"top1_tail", &ConfidenceConfig::w_top1_tail, &ConfidenceFeatures::top1_tail, false},
    {"margin_tail", &ConfidenceConfig::w_margin_tail, &ConfidenceFeatures::margin_tail, false},
    {"certainty_tail", &ConfidenceConfig::w_certainty_tail, &ConfidenceFeatures::certainty_tail,
     true},
}};

// The score of `values` (nullopt = unknown, left out) under `config`'s weights, by the rule of
// the module comment; nullopt when every value is unknown. One formula for the monitor and for
// calibration.
std::optional<double> confidenceScore(
    const ConfidenceConfig& config,
    const std::array<std::optional<double>, kConfidenceFeatureFields.size()>& values);

class ConfidenceMonitor {
 public:
  using Features = ConfidenceFeatures;
  static constexpr double kEntropyCeiling = 50;  // nats; far above ln(any vocabulary size)
  static constexpr int kBins = 256;              // per view, for the tails

  // `config` must be valid (as ConfidenceConfig::read guarantees); a tail_fraction outside
  // (0, 1] counts as 1 and an entropy_scale that is not > 0 as the default.
  explicit ConfidenceMonitor(ConfidenceConfig config = {});

  // Records one generated token (only its distribution's statistics are read). O(1), no
  // allocation.
  void onToken(const TokenStats& stats);

  // Tokens recorded since construction or reset().
  int tokens() const { return count_; }
  // The score in [0, 1]; nullopt before the first token or while no feature is known.
  std::optional<double> score() const;
  // True when at least min_tokens tokens were seen and the score is below escalate_below.
  bool shouldEscalateEarly() const;
  // What the score is made of; all zeros before the first token.
  Features features() const;
  // Forgets every token.
  void reset();

  const ConfidenceConfig& config() const { return config_; }

 private:
  // One per-token view: its sum and a histogram of its values in [0, 1].
  struct View {
    double sum = 0;
    int count = 0;
    std::array<double, kBins> bin_sum{};
    std::array<int, kBins> bin_count{};
    void add(double v);
    double mean() const { return count ? sum / count : 0; }
    double tailMean(double fraction) const;
  };

  ConfidenceConfig config_;
  int count_ = 0;
  View top1_, margin_, certainty_;
  double sum_entropy_ = 0;
};

}  // namespace routers
