// RankWindows: where a score falls among the recent scores of the same team and local model,
// for the self-calibrating trigger variables `confidence_rank` and `complexity_rank`
// (policies/trigger.h). A rank is scale-free: `confidence_rank < 0.15` escalates the least
// confident 15% of a team's local answers whatever the model and however its confidence is
// scaled, which an absolute threshold cannot promise.
//
// Per (team, local model, score) a bounded ring keeps the last `window` scores. The rank of x
// is the mid-rank of x among them, in [0, 1]:
//
//     rank(x) = (scores strictly below x + 0.5 * scores equal to x) / scores in the window
//
// so 0 is below everything seen, 1 above everything, and a score that ties with every other
// is 0.5 (a model whose confidence is always the same escalates nothing with `< 0.15`). Ranks
// are read BEFORE the new score is added: a request is ranked against the others, not itself.
//
// Warm-up: until `warmup` scores are in the window the rank is unknown (nullopt), so the
// trigger's three-valued logic treats a comparison with it as unknown: `confidence_rank < 0.15`
// alone then never escalates (an undecided cascade keeps the local answer), and a clause on
// absolute variables (`OR confidence < 0.3`) is what decides meanwhile.
//
// Memory is bounded: at most kMaxWindows windows of at most kMaxWindow scores each. Past
// kMaxWindows (teams x local models x 2), a new key's ranks are unknown and its scores are not
// kept. A window whose configured size changes (a policies reload) starts again empty.
// Thread-safe: one short lock per call (a linear scan of the window, no allocation once a
// window exists).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/policy_set.h"

namespace routers {

// policies.yaml `routing.rank`: the window's size and its warm-up, per team.
using RankConfig = policies::RankPolicy;

enum class RankedScore { kConfidence, kComplexity };

// One ring of recent scores. Not thread-safe (RankWindows locks around it).
class RankWindow {
 public:
  explicit RankWindow(size_t capacity);
  // The mid-rank of `x` (see the file comment); nullopt while fewer than `warmup` scores are
  // in or `x` is NaN.
  std::optional<double> rank(double x, size_t warmup) const;
  // Keeps `x` (NaN is ignored), forgetting the oldest score once the ring is full.
  void add(double x);
  size_t size() const { return size_; }
  size_t capacity() const { return scores_.size(); }

 private:
  std::vector<double> scores_;
  size_t next_ = 0;  // where the next score goes
  size_t size_ = 0;
};

class RankWindows {
 public:
  static constexpr size_t kMaxWindows = 4096;
  static constexpr int kMaxWindow = 100000;

  // The rank of `x` among the window's scores, without adding it.
  std::optional<double> rank(std::string_view team, std::string_view model, RankedScore score,
                             double x, const RankConfig& config) const;
  // The rank of `x` read before adding it, then `x` added: one score per request.
  std::optional<double> rankAndAdd(std::string_view team, std::string_view model,
                                   RankedScore score, double x, const RankConfig& config);
  // Scores now in the window (0 for a window that does not exist).
  size_t count(std::string_view team, std::string_view model, RankedScore score) const;
  size_t windows() const;

 private:
  struct Key {
    std::string team, model;
    RankedScore score;
    bool operator<(const Key& o) const;
  };
  struct KeyView {
    std::string_view team, model;
    RankedScore score;
  };
  struct Less {
    using is_transparent = void;
    bool operator()(const Key& a, const Key& b) const { return a < b; }
    bool operator()(const Key& a, const KeyView& b) const;
    bool operator()(const KeyView& a, const Key& b) const;
  };

  // Under mu_: the window of `key` sized for `config`, made when there is room; null otherwise.
  RankWindow* windowFor(const KeyView& key, const RankConfig& config, bool create);

  mutable std::mutex mu_;
  std::map<Key, std::unique_ptr<RankWindow>, Less> windows_;
};

}  // namespace routers
