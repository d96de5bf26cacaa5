// ConfidenceMonitor: how sure the local model is of the answer it is writing, token by token,
// as a score in [0, 1]. In a cascade the local engine's tokens feed one monitor per request; a
// low score escalates the request to a cloud model (early, while streaming, through
// shouldEscalateEarly; or at the end, by the team's trigger expression over score()).
//
// Inputs are what engine::Sampler reports for each generated token under the model's raw
// distribution: the chosen token's logprob (natural log, <= 0) and the distribution's entropy
// (nats, >= 0). The score blends three views of them:
//
//     score = (w_mean    · exp(mean logprob)
//            + w_worst   · exp(worst-window mean logprob)
//            + w_entropy · (1 − min(1, mean entropy / entropy_scale)))
//           / (w_mean + w_worst + w_entropy)
//
//   - exp(mean logprob) is the geometric mean of the chosen tokens' probabilities (the inverse
//     of the answer's perplexity): 1 when every token was certain.
//   - the worst window is the lowest mean logprob over any `window` consecutive tokens, so a
//     bad stretch (a made-up number, a wrong turn in a proof) is not averaged away by a long,
//     fluent answer around it. With fewer than `window` tokens it is the mean of them all.
//   - mean entropy says how spread the model's distribution was, even where the sampled token
//     happened to be likely; `entropy_scale` nats or more maps to 0.
//
// Inputs are sanitized, never trusted: a logprob of -inf, NaN or below kLogprobFloor counts as
// kLogprobFloor (one impossible token must lower the score, not poison it with NaN), a positive
// logprob (rounding) as 0; a NaN entropy is ignored (not counted in the mean), a negative one
// counts as 0 and +inf as kEntropyCeiling. When no entropy has been seen at all, the entropy
// term is left out and the other two are renormalized by w_mean + w_worst (and if those are 0,
// the score is exp(mean logprob)).
//
// Thread-compatible: one monitor per request, fed from one thread at a time; no locks.
#pragma once

#include <optional>
#include <vector>

#include "api/status.h"
#include "policies/yaml_reader.h"

namespace routers {

struct ConfidenceConfig {
  int window = 8;                // tokens in the worst-window mean; >= 1
  int min_tokens = 8;            // tokens before any early decision; >= 0
  double escalate_below = 0.85;  // early escalation threshold, in [0, 1]; the team's trigger
                                 // decides at the end
  double w_mean = 0.5;           // weight of exp(mean logprob)
  double w_worst = 0.3;          // weight of exp(worst-window mean logprob)
  double w_entropy = 0.2;        // weight of 1 − min(1, mean entropy / entropy_scale)
  double entropy_scale = 2.0;    // nats of mean entropy mapped to 0 confidence; > 0

  // Reads an optional map {window, min_tokens, escalate_below, w_mean, w_worst, w_entropy,
  // entropy_scale}; absent keys keep their defaults, a null node is all defaults. Ranges:
  // window in [1, 4096], min_tokens in [0, 1000000], escalate_below in [0, 1], weights in
  // [0, 100] with a positive sum, entropy_scale in (0, 100]. Unknown keys and bad values are
  // kConfig errors naming "<file>:<line>: <key.path>: ...".
  static api::StatusOr<ConfidenceConfig> read(const policies::YamlReader& r);
};

class ConfidenceMonitor {
 public:
  static constexpr double kLogprobFloor = -30;   // nats; what -inf and NaN logprobs count as
  static constexpr double kEntropyCeiling = 50;  // nats; far above ln(any vocabulary size)

  struct Features {
    double mean_logprob = 0;          // nats per token, <= 0
    double worst_window_logprob = 0;  // nats per token, <= mean_logprob
    double mean_entropy = 0;          // nats; 0 when no entropy was seen
  };

  // `config` must be valid (as ConfidenceConfig::read guarantees); a window below 1 counts as 1.
  explicit ConfidenceMonitor(ConfidenceConfig config = {});

  // Records one generated token. O(1) amortized, no allocation.
  void onToken(double logprob, double entropy);

  // Tokens recorded since construction or reset().
  int tokens() const { return count_; }
  // The score in [0, 1]; nullopt before the first token.
  std::optional<double> score() const;
  // True when at least min_tokens tokens were seen and the score is below escalate_below.
  bool shouldEscalateEarly() const;
  // What the score is made of; all zeros before the first token.
  Features features() const;
  // Forgets every token (the window buffer is kept).
  void reset();

  const ConfidenceConfig& config() const { return config_; }

 private:
  double worstWindowMean() const;

  ConfidenceConfig config_;
  std::vector<double> ring_;  // [window] the last `window` clamped logprobs
  int head_ = 0;              // where the next logprob goes
  int count_ = 0;
  double sum_logprob_ = 0;
  double window_sum_ = 0;         // sum of the ring's live entries
  double worst_full_window_ = 0;  // min mean over full windows; valid once count_ >= window
  double sum_entropy_ = 0;
  int entropy_count_ = 0;
};

}  // namespace routers
