#include "engine/sampler.h"

#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

// The 8-lane helpers below are always inlined into a target("avx2,fma") function, so the
// calling convention GCC warns about for 32-byte vectors is never used.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace engine {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// e^-87 is about 1.6e-38: below it a term adds nothing to a sum whose largest term is 1, and
// clamping there keeps -inf logits from turning e^z * z into NaN.
constexpr float kExpFloor = -87.0f;
// Without top-k, top-p first looks for its nucleus among this many best ids.
constexpr int kTopPFirstLook = 1024;

#define SY_INLINE inline __attribute__((always_inline))

// N floats (and the N int32s a comparison gives), for GCC's and Clang's vector extensions: 4 is
// one SSE2 / NEON register, the width every x86-64 and arm64 target has; 8 is one AVX2 register,
// used where the CPU has it.
template <int N>
struct Vec;
template <>
struct Vec<4> {
  using F = float __attribute__((vector_size(16)));
  using I = int32_t __attribute__((vector_size(16)));
};
template <>
struct Vec<8> {
  using F = float __attribute__((vector_size(32)));
  using I = int32_t __attribute__((vector_size(32)));
};
using F4 = Vec<4>::F;
using I4 = Vec<4>::I;
constexpr int kLanes = 4;

template <class V>
SY_INLINE V splat(float v) {
  return V{} + v;
}

template <class V>
SY_INLINE V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
SY_INLINE F4 load4(const float* p) { return load<F4>(p); }

// x [0, count) (count < the lane count), padded with -inf.
template <class V>
SY_INLINE V loadTail(const float* x, int32_t count) {
  V v = splat<V>(-kInf);
  for (int32_t i = 0; i < count; ++i) v[i] = x[i];
  return v;
}

// e^z lane-wise for kExpFloor <= z <= 0, without calls or branches so that the loops over the
// vocabulary stay vectorised: z = k ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to r^7
// (relative error about 1e-7, that of expf), 2^k written into the exponent bits.
template <class V, class I>
SY_INLINE V expNonPositive(const V& z) {
  const V t = z * 1.44269504088896341f;
  const V k = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  const V r = (z - k * 0.693145751953125f) - k * 1.428606765330187e-6f;
  V p = splat<V>(1.0f / 5040);
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I bits = (__builtin_convertvector(k, I) + 127) << 23;
  V two_k;
  std::memcpy(&two_k, &bits, sizeof two_k);
  return p * two_k;
}

struct MaxScan {
  float max = -kInf;
  float second = -kInf;  // with kSecond: the second largest value (== max when it is repeated)
  bool nan = false;
};

// The two largest of a multiset, fed one value at a time.
SY_INLINE void pushTop2(float v, float& first, float& second) {
  second = std::max(second, std::min(v, first));
  first = std::max(first, v);
}

// The maximum of x [n], whether a NaN is among them and, with kSecond, the second largest value
// (tracked in the same pass: each lane keeps its own two largest, merged at the end).
template <bool kSecond = false>
MaxScan scanMax(const float* x, int32_t n) {
  F4 mx0 = splat<F4>(-kInf), mx1 = mx0, sc0 = mx0, sc1 = mx0;
  I4 nan = {};
  int32_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    const F4 v0 = load4(x + i), v1 = load4(x + i + kLanes);
    nan |= (v0 != v0) | (v1 != v1);
    if constexpr (kSecond) {
      const F4 lo0 = v0 < mx0 ? v0 : mx0, lo1 = v1 < mx1 ? v1 : mx1;
      sc0 = lo0 > sc0 ? lo0 : sc0;
      sc1 = lo1 > sc1 ? lo1 : sc1;
    }
    mx0 = v0 > mx0 ? v0 : mx0;
    mx1 = v1 > mx1 ? v1 : mx1;
  }
  MaxScan out;
  for (int l = 0; l < kLanes; ++l) {
    out.nan = out.nan || nan[l] != 0;
    if constexpr (kSecond) {
      for (float v : {mx0[l], mx1[l], sc0[l], sc1[l]}) pushTop2(v, out.max, out.second);
    } else {
      out.max = std::max({out.max, mx0[l], mx1[l]});
    }
  }
  for (; i < n; ++i) {
    out.nan = out.nan || std::isnan(x[i]);
    if constexpr (kSecond) {
      if (!std::isnan(x[i])) pushTop2(x[i], out.max, out.second);
    } else if (x[i] > out.max) {
      out.max = x[i];
    }
  }
  return out;
}

// The first id holding `value` (the argmax, ties to the lowest id).
int32_t firstIndexOf(const float* x, int32_t n, float value) {
  int32_t i = 0;
  const F4 v = splat<F4>(value);
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {  // skip blocks of 16 without it
    const I4 hit = (load4(x + i) == v) | (load4(x + i + 4) == v) | (load4(x + i + 8) == v) |
                   (load4(x + i + 12) == v);
    if (hit[0] | hit[1] | hit[2] | hit[3]) break;
  }
  return static_cast<int32_t>(std::find(x + i, x + n, value) - x);
}

struct ExpSums {
  double sum = 0;       // sum of e^z
  double weighted = 0;  // sum of e^z * z
};

// One vector of terms: e^z and e^z * z added to the accumulators, e^z stored with kStore.
template <int N, bool kStore>
SY_INLINE void expTerms(const typename Vec<N>::F& v, float m, float scale, typename Vec<N>::F& acc,
                        typename Vec<N>::F& wacc, float* dst, int32_t count) {
  using V = typename Vec<N>::F;
  V z = (v - m) * scale;
  const V floor = splat<V>(kExpFloor);
  z = z < floor ? floor : z;
  const V e = expNonPositive<V, typename Vec<N>::I>(z);
  acc += e;
  wacc += e * z;
  if constexpr (kStore) std::memcpy(dst, &e, sizeof(float) * count);
}

// Over z = (x - m) * scale for x [n] (all <= m): the sums of e^z and e^z * z, floats within
// blocks of 1024 and doubles across them. With kStore, e^z is also written to out [n].
template <int N, bool kStore>
SY_INLINE ExpSums expSumsBody(const float* x, int32_t n, float m, float scale, float* out) {
  using V = typename Vec<N>::F;
  ExpSums s;
  auto flush = [&s](const float* acc, const float* wacc) {
    for (int l = 0; l < N; ++l) {
      s.sum += acc[l];
      s.weighted += wacc[l];
    }
  };
  float a[N], w[N];
  int32_t i = 0;
  while (i + 2 * N <= n) {
    const int32_t end = i + std::min<int32_t>(1024, (n - i) & ~(2 * N - 1));
    V acc0 = {}, wacc0 = {}, acc1 = {}, wacc1 = {};
    for (; i < end; i += 2 * N) {  // two independent chains: the polynomial is latency-bound
      expTerms<N, kStore>(load<V>(x + i), m, scale, acc0, wacc0, out + (kStore ? i : 0), N);
      expTerms<N, kStore>(load<V>(x + i + N), m, scale, acc1, wacc1, out + (kStore ? i + N : 0), N);
    }
    const V acc = acc0 + acc1, wacc = wacc0 + wacc1;
    std::memcpy(a, &acc, sizeof a);
    std::memcpy(w, &wacc, sizeof w);
    flush(a, w);
  }
  for (; i < n; i += N) {
    V acc = {}, wacc = {};
    const int32_t count = std::min(N, n - i);
    expTerms<N, kStore>(loadTail<V>(x + i, count), m, scale, acc, wacc, out + (kStore ? i : 0),
                        count);
    // The -inf padding added 1.6e-38 per lane: nothing at double precision next to sum >= 1.
    std::memcpy(a, &acc, sizeof a);
    std::memcpy(w, &wacc, sizeof w);
    flush(a, w);
  }
  return s;
}

template <bool kStore>
ExpSums expSumsPortable(const float* x, int32_t n, float m, float scale, float* out) {
  return expSumsBody<4, kStore>(x, n, m, scale, out);
}

#if defined(__x86_64__)
template <bool kStore>
__attribute__((target("avx2,fma"))) ExpSums expSumsAvx2(const float* x, int32_t n, float m,
                                                        float scale, float* out) {
  return expSumsBody<8, kStore>(x, n, m, scale, out);
}
#endif

template <bool kStore>
ExpSums expSums(const float* x, int32_t n, float m, float scale, float* out) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return expSumsAvx2<kStore>(x, n, m, scale, out);
#endif
  return expSumsPortable<kStore>(x, n, m, scale, out);
}

// The k largest of x [n] as (x, id), best first (ties: lower id first), with a bounded min-heap:
// after the first few thousand ids almost every value fails the one comparison with its root.
void topN(const float* x, int32_t n, int k, std::vector<std::pair<float, int32_t>>& best) {
  best.clear();
  k = std::min(k, n);
  if (k <= 0) return;
  best.reserve(static_cast<size_t>(k) + 1);
  for (int32_t i = 0; i < k; ++i) best.emplace_back(x[i], i);
  // A root that is the smallest value and, among equal values, the highest id.
  auto worse = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::make_heap(best.begin(), best.end(), worse);
  float floor = best.front().first;
  for (int32_t i = k; i < n;) {
    const int32_t end = std::min(n, i + 4 * kLanes);
    if (end - i == 4 * kLanes) {  // skip a block of 16 whose maximum cannot enter
      auto vmax = [](F4 a, F4 b) { return a > b ? a : b; };
      const F4 mx =
          vmax(vmax(load4(x + i), load4(x + i + 4)), vmax(load4(x + i + 8), load4(x + i + 12)));
      if (!(std::max({mx[0], mx[1], mx[2], mx[3]}) > floor)) {
        i = end;
        continue;
      }
    }
    for (; i < end; ++i) {
      if (x[i] > floor) {
        std::pop_heap(best.begin(), best.end(), worse);
        best.back() = {x[i], i};
        std::push_heap(best.begin(), best.end(), worse);
        floor = best.front().first;
      }
    }
  }
  std::sort(best.begin(), best.end(), worse);
}

api::Status badLogits(const float* logits, int32_t v, const MaxScan& scan) {
  std::string what;
  if (scan.nan) {
    const int32_t at = static_cast<int32_t>(
        std::find_if(logits, logits + v, [](float x) { return std::isnan(x); }) - logits);
    what = "a NaN logit (first at token id " + std::to_string(at) + ")";
  } else if (scan.max == kInf) {
    what = "a +inf logit (token id " + std::to_string(firstIndexOf(logits, v, kInf)) + ")";
  } else {
    what = v > 0 ? "only -inf logits" : "no logits";
  }
  return api::Status(api::ErrorCode::kInternal,
                     "the local model produced " + what + ": no token can be sampled");
}

}  // namespace

Sampler::Sampler(SamplingParams params, int32_t vocab_limit, std::span<const int32_t> prompt)
    : params_(std::move(params)),
      vocab_limit_(vocab_limit),
      rng_(params_.has_seed ? params_.seed : std::random_device{}()) {
  const float rp = params_.repetition_penalty;
  if (rp > 0 && rp != 1.0f && std::isfinite(rp) && vocab_limit_ > 0) {
    seen_mask_.assign(static_cast<size_t>(vocab_limit_), 0);
    for (int32_t id : prompt) markSeen(id);
  }
  if (params_.grammar && params_.grammar_vocab) {
    matcher_ = std::make_unique<grammar::Matcher>(params_.grammar, params_.grammar_vocab);
    mask_.assign(params_.grammar_vocab->maskWords(), 0);
  }
}

Sampler::~Sampler() = default;

bool Sampler::grammarComplete() const { return matcher_ && matcher_->canEnd(); }

void Sampler::prepareMask() {
  if (!matcher_) return;
  matcher_->fillMask(mask_);
  mask_ready_ = true;
}

void Sampler::applyGrammarMask(float* logits, int32_t v) {
  if (!mask_ready_) matcher_->fillMask(mask_);
  mask_ready_ = false;
  const int32_t covered = std::min<int32_t>(v, static_cast<int32_t>(mask_.size() * 64));
  for (int32_t base = 0; base < covered; base += 64) {
    const uint64_t allowed = mask_[base / 64];
    const int32_t width = std::min(64, covered - base);
    if (allowed == ~uint64_t{0}) continue;
    if (allowed == 0) {
      std::fill(logits + base, logits + base + width, -kInf);
      continue;
    }
    for (uint64_t refused = ~allowed; refused != 0; refused &= refused - 1) {
      const int bit = __builtin_ctzll(refused);
      if (bit < width) logits[base + bit] = -kInf;
    }
  }
  std::fill(logits + covered, logits + v, -kInf);
}

void Sampler::markSeen(int32_t token) {
  if (seen_mask_.empty() || token < 0 || token >= vocab_limit_) return;
  uint8_t& seen = seen_mask_[static_cast<size_t>(token)];
  if (!seen) seen_.push_back(token);
  seen = 1;
}

void Sampler::accept(int32_t token) {
  ++counts_[token];
  markSeen(token);
  mask_ready_ = false;
  if (matcher_) matcher_->accept(token);
}

template <class RawLogprob>
void Sampler::applyBiasAndPenalties(float* logits, int32_t v, RawLogprob raw_logprob,
                                    std::vector<std::pair<int32_t, float>>& saved) {
  auto save = [&](int32_t id) { saved.emplace_back(id, raw_logprob(id)); };
  for (const auto& [id, bias] : params_.logit_bias) {
    if (id < 0 || id >= v) continue;
    save(id);
    logits[id] += bias;
  }
  const float rp = params_.repetition_penalty;
  for (int32_t id : seen_) {
    if (id >= v) continue;
    save(id);
    logits[id] = logits[id] > 0 ? logits[id] / rp : logits[id] * rp;
  }
  if (params_.presence_penalty != 0 || params_.frequency_penalty != 0) {
    for (const auto& [id, count] : counts_) {
      if (id < 0 || id >= v) continue;
      save(id);
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * count;
    }
  }
}

TokenChoice Sampler::sample(float* logits, int32_t n) {
  const int32_t v = std::max(0, std::min(n, vocab_limit_));
  TokenChoice out;
  if (matcher_) applyGrammarMask(logits, v);

  // 1. The raw distribution: its two largest logits (and a check that they are numbers),
  // log-sum-exp, entropy.
  const MaxScan scan = scanMax<true>(logits, v);
  if (scan.nan || scan.max == kInf || scan.max == -kInf) {
    out.status = badLogits(logits, v, scan);
    return out;
  }
  const float max_logit = scan.max;
  const ExpSums sums = expSums<false>(logits, v, max_logit, 1.0f, nullptr);
  const double log_sum = std::log(sums.sum);
  // H = -sum p log p, with log p = z - log_sum: H = log_sum - E[z].
  out.entropy = static_cast<float>(log_sum - sums.weighted / sums.sum);
  out.top1_logprob = static_cast<float>(-log_sum);
  out.top2_logprob = scan.second == -kInf ? -kInf
                                          : static_cast<float>(static_cast<double>(scan.second) -
                                                               max_logit - log_sum);
  auto raw_logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[id]) - max_logit - log_sum);
  };
  if (params_.top_logprobs > 0) {
    topN(logits, v, params_.top_logprobs, cand_);
    for (const auto& [logit, id] : cand_) {
      if (logit > -kInf) out.top.emplace_back(id, raw_logprob(id));  // never a masked id
    }
  }

  // 2. Logit bias and penalties, remembering the raw logprob of whatever they touch.
  std::vector<std::pair<int32_t, float>> saved;
  applyBiasAndPenalties(logits, v, raw_logprob, saved);
  auto finish = [&](int32_t id) {
    out.token = id;
    out.logprob = raw_logprob(id);
    for (const auto& [sid, lp] : saved) {
      if (sid == id) {
        out.logprob = lp;
        break;
      }
    }
    return out;
  };
  const float m = saved.empty() ? max_logit : scanMax(logits, v).max;

  // 3. Greedy (the first id holding the maximum), or temperature, top-k, top-p, min-p and a draw.
  const int32_t id = !(m > -kInf)                  ? -1
                     : params_.temperature <= 0.0f ? firstIndexOf(logits, v, m)
                                                   : draw(logits, v, m);
  if (id < 0 || id >= v) {  // only when bias or penalties pushed everything to -inf
    TokenChoice none;
    none.status = badLogits(logits, v, scanMax(logits, v));
    return none;
  }
  return finish(id);
}

double Sampler::rankedCandidates(const float* logits, int32_t v, float m, float inv_t) {
  auto scaleAll = [&] {  // and drops what cannot be drawn (fewer finite logits than k)
    for (auto& c : cand_) c.first = (c.first - m) * inv_t;
    while (!cand_.empty() && !(cand_.back().first > -80.0f)) cand_.pop_back();
  };
  if (params_.top_k > 0 && params_.top_k < v) {
    // Top-p's reference mass is that of the top-k set (Hugging Face renormalises after top-k),
    // taken before min-p removes anything.
    topN(logits, v, params_.top_k, cand_);
    scaleAll();
    double total = 0;
    for (const auto& c : cand_) total += std::exp(static_cast<double>(c.first));
    return total;
  }
  // Top-p over the whole vocabulary: its mass, then the nucleus, most often inside the best
  // kTopPFirstLook ids; a full sort only when it is not.
  const double total = expSums<false>(logits, v, m, inv_t, nullptr).sum;
  topN(logits, v, kTopPFirstLook, cand_);
  scaleAll();
  double head = 0;
  for (const auto& c : cand_) head += std::exp(static_cast<double>(c.first));
  if (head < static_cast<double>(params_.top_p) * total && static_cast<int32_t>(cand_.size()) < v) {
    cand_.clear();
    for (int32_t i = 0; i < v; ++i) {
      const float s = (logits[i] - m) * inv_t;
      if (s > -80.0f) cand_.emplace_back(s, i);  // e^-80 is below any top-p or float mass
    }
    std::sort(cand_.begin(), cand_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
  }
  return total;
}

int32_t Sampler::draw(const float* logits, int32_t v, float m) {
  const float inv_t = 1.0f / params_.temperature;
  const bool ranked = (params_.top_k > 0 && params_.top_k < v) || params_.top_p < 1.0f;
  if (!ranked && params_.min_p <= 0.0f) {
    // No filter: draw from the whole distribution, e^s stored by the pass that sums it.
    exps_.resize(static_cast<size_t>(v));
    const double mass = expSums<true>(logits, v, m, inv_t, exps_.data()).sum;
    if (!(mass > 0)) return -1;
    double r = std::uniform_real_distribution<double>(0.0, mass)(rng_);
    for (int32_t i = 0; i < v; ++i) {
      if (logits[i] == -kInf) continue;
      r -= exps_[i];
      if (r < 0) return i;
    }
    return firstIndexOf(logits, v, m);  // rounding left a sliver of mass: the likeliest id
  }
  double total = 0;
  if (ranked) {
    total = rankedCandidates(logits, v, m, inv_t);
  } else {
    // Min-p alone: the ids with p / p_max = e^s >= min_p, in id order.
    cand_.clear();
    const float cut = std::log(std::min(1.0f, params_.min_p));
    for (int32_t i = 0; i < v; ++i) {
      const float s = (logits[i] - m) * inv_t;
      if (s >= cut) cand_.emplace_back(s, i);
    }
  }
  if (params_.min_p > 0.0f && ranked) {
    const double threshold = std::min(1.0, static_cast<double>(params_.min_p));
    std::erase_if(
        cand_, [&](const auto& c) { return std::exp(static_cast<double>(c.first)) < threshold; });
  }
  size_t keep = cand_.size();
  if (params_.top_p < 1.0f) {
    // The smallest prefix whose mass reaches top_p (always at least one token).
    const double target = static_cast<double>(params_.top_p) * total;
    double acc = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      acc += std::exp(static_cast<double>(cand_[i].first));
      if (acc >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  if (keep == 0) return -1;
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += std::exp(static_cast<double>(cand_[i].first));
  double r = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= std::exp(static_cast<double>(cand_[i].first));
    if (r < 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace engine
