#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace engine {

Sampler::Sampler(SamplingParams params, int32_t vocab_limit)
    : params_(std::move(params)),
      vocab_limit_(vocab_limit),
      rng_(params_.has_seed ? params_.seed : std::random_device{}()) {}

void Sampler::accept(int32_t token) { ++counts_[token]; }

TokenChoice Sampler::sample(float* logits, int32_t n) {
  const int32_t v = std::min(n, vocab_limit_);
  TokenChoice out;

  // 1. Statistics of the raw distribution: log-sum-exp, entropy, top logprobs.
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < v; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0, weighted = 0;
  for (int32_t i = 0; i < v; ++i) {
    double z = static_cast<double>(logits[i]) - max_logit;
    double e = std::exp(z);
    sum += e;
    if (e > 0) weighted += e * z;  // a -inf logit adds nothing (0 * -inf would be NaN)
  }
  const double log_sum = std::log(sum);
  // H = -sum p log p, with log p = z - log_sum: H = log_sum - E[z].
  out.entropy = static_cast<float>(log_sum - weighted / sum);
  auto raw_logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[id]) - max_logit - log_sum);
  };
  std::vector<float> raw_top_scratch;
  if (params_.top_logprobs > 0) {
    int k = std::min<int>(params_.top_logprobs, v);
    std::vector<std::pair<float, int32_t>> best;
    best.reserve(k + 1);
    for (int32_t i = 0; i < v; ++i) {
      if (static_cast<int>(best.size()) < k) {
        best.emplace_back(logits[i], i);
        std::push_heap(best.begin(), best.end(), std::greater<>());
      } else if (logits[i] > best.front().first) {
        std::pop_heap(best.begin(), best.end(), std::greater<>());
        best.back() = {logits[i], i};
        std::push_heap(best.begin(), best.end(), std::greater<>());
      }
    }
    std::sort(best.begin(), best.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (const auto& [logit, id] : best) out.top.emplace_back(id, raw_logprob(id));
  }
  // Remember the raw value of whatever gets chosen before the logits are modified.
  auto finish = [&](int32_t id, float raw) {
    out.token = id;
    out.logprob = raw;
    return out;
  };

  // 2. Logit bias and penalties.
  std::vector<std::pair<int32_t, float>> saved;  // raw logits of ids we modify
  auto modify = [&](int32_t id, float delta) {
    if (id < 0 || id >= v) return;
    saved.emplace_back(id, raw_logprob(id));
    logits[id] += delta;
  };
  for (const auto& [id, bias] : params_.logit_bias) modify(id, bias);
  if (params_.presence_penalty != 0 || params_.frequency_penalty != 0) {
    for (const auto& [id, count] : counts_) {
      modify(id, -(params_.presence_penalty + params_.frequency_penalty * count));
    }
  }
  auto rawOf = [&](int32_t id) {
    for (const auto& [sid, lp] : saved) {
      if (sid == id) return lp;
    }
    return raw_logprob(id);
  };

  // 3. Greedy.
  if (params_.temperature <= 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < v; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    return finish(best, rawOf(best));
  }

  // 4. Temperature, then the candidate set: top-k, top-p, min-p. Each keeps a prefix of the
  // candidates in descending order, so the result is their intersection; only as much of the
  // order as a filter needs is computed (a full sort of a 262k vocabulary per token is slow).
  const float inv_t = 1.0f / params_.temperature;
  float m = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < v; ++i) m = std::max(m, logits[i]);
  cand_.clear();
  cand_.reserve(v);
  for (int32_t i = 0; i < v; ++i) {
    float s = (logits[i] - m) * inv_t;
    if (s > -80.0f) cand_.emplace_back(s, i);  // e^-80 is below any top-p or float mass
  }
  if (cand_.empty()) {  // NaN logits: nothing to draw from, fall back to the first id
    return finish(0, rawOf(0));
  }
  auto desc = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t sorted = 0;  // cand_[0, sorted) is in descending order and precedes the rest
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < cand_.size()) {
    std::partial_sort(cand_.begin(), cand_.begin() + params_.top_k, cand_.end(), desc);
    cand_.resize(params_.top_k);
    sorted = cand_.size();
  }
  // Top-p's reference mass is that of the top-k set (Hugging Face renormalises after top-k),
  // taken before min-p removes anything.
  double total = 0;
  for (const auto& c : cand_) total += std::exp(static_cast<double>(c.first));
  if (params_.min_p > 0.0f) {
    // p / p_max = e^s (the best candidate has s = 0, so it always stays).
    const double threshold = std::min(1.0, static_cast<double>(params_.min_p));
    std::erase_if(
        cand_, [&](const auto& c) { return std::exp(static_cast<double>(c.first)) < threshold; });
    sorted = std::min(sorted, cand_.size());  // erase_if keeps the order
  }
  size_t keep = cand_.size();
  if (params_.top_p < 1.0f) {
    const double target = static_cast<double>(params_.top_p) * total;
    if (sorted < cand_.size()) {
      // Most of the mass sits in the first few hundred: sort a prefix, all only when needed.
      size_t prefix = std::min<size_t>(1024, cand_.size());
      std::partial_sort(cand_.begin(), cand_.begin() + prefix, cand_.end(), desc);
      double head = 0;
      for (size_t i = 0; i < prefix; ++i) head += std::exp(static_cast<double>(cand_[i].first));
      if (head < target) std::sort(cand_.begin() + prefix, cand_.end(), desc);
    }
    // The smallest prefix whose mass reaches top_p (always at least one token).
    double acc = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      acc += std::exp(static_cast<double>(cand_[i].first));
      if (acc >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  std::vector<double> probs(keep);
  for (size_t i = 0; i < keep; ++i) probs[i] = std::exp(static_cast<double>(cand_[i].first));
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += probs[i];
  std::uniform_real_distribution<double> uni(0.0, mass);
  double r = uni(rng_);
  size_t pick = keep - 1;
  for (size_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r < 0) {
      pick = i;
      break;
    }
  }
  int32_t id = cand_[pick].second;
  return finish(id, rawOf(id));
}

}  // namespace engine
