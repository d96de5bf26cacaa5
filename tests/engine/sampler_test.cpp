#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace engine {
namespace {

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> logitsOf(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

// One draw; `logits` is copied because sample() uses it as scratch.
TokenChoice draw(Sampler& s, const std::vector<float>& logits) {
  std::vector<float> scratch = logits;
  return s.sample(scratch.data(), static_cast<int32_t>(scratch.size()));
}

std::vector<int32_t> drawMany(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(draw(s, logits).token);
  return ids;
}

std::map<int32_t, int> histogram(const std::vector<int32_t>& ids) {
  std::map<int32_t, int> h;
  for (int32_t id : ids) ++h[id];
  return h;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.has_seed = true;
  p.seed = seed;
  return p;
}

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

std::vector<float> randomLogits(int n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> out(n);
  for (float& x : out) x = normal(rng);
  return out;
}

// log softmax computed independently, in double.
std::vector<double> logSoftmax(const std::vector<float>& logits, size_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(logits[i]));
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(logits[i] - m);
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = logits[i] - m - std::log(sum);
  return out;
}

// The reference nucleus: the smallest set of most likely ids whose mass reaches `top_p`.
std::set<int32_t> nucleus(const std::vector<float>& logits, double top_p) {
  std::vector<double> lp = logSoftmax(logits, logits.size());
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return lp[a] > lp[b]; });
  std::set<int32_t> out;
  double acc = 0;
  for (int32_t id : order) {
    out.insert(id);
    acc += std::exp(lp[id]);
    if (acc >= top_p) break;
  }
  return out;
}

TEST(Sampler, GreedyPicksTheArgmax) {
  Sampler s(greedy(), 1000);
  EXPECT_EQ(draw(s, {0.1f, 2.5f, -1.0f, 2.4f}).token, 1);
  EXPECT_EQ(draw(s, {-5.0f, -4.0f, -3.0f, -7.0f}).token, 2);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = randomLogits(500, seed);
    int32_t expect =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(draw(s, logits).token, expect) << "seed " << seed;
  }
}

TEST(Sampler, SeededSamplingIsReproducibleAndSeedsDiffer) {
  const std::vector<float> flat(16, 0.0f);  // every draw is a fair 1-of-16
  Sampler a(seeded(42), 16), b(seeded(42), 16), c(seeded(43), 16);
  std::vector<int32_t> da = drawMany(a, flat, 200);
  EXPECT_EQ(da, drawMany(b, flat, 200));
  EXPECT_NE(da, drawMany(c, flat, 200));
  // A fair draw actually spreads: all 16 ids show up in 200 draws.
  EXPECT_EQ(histogram(da).size(), 16u);
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  SamplingParams p = seeded(1);
  p.temperature = 1e-4f;
  Sampler s(p, 1000);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = randomLogits(300, 100 + seed);
    int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    logits[argmax] += 0.05f;  // a clear winner: 0.05 / 1e-4 leaves the others at e^-500
    for (int i = 0; i < 10; ++i) EXPECT_EQ(draw(s, logits).token, argmax);
  }
  // At temperature 1 the same logits do not always give the argmax.
  Sampler warm(seeded(1), 1000);
  const std::vector<float> close = {1.0f, 1.1f, 0.9f, 1.05f};
  EXPECT_GT(histogram(drawMany(warm, close, 200)).size(), 1u);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p = seeded(5);
  p.top_k = 1;
  Sampler s(p, 1000);
  Sampler g(greedy(), 1000);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = randomLogits(400, 200 + seed, 0.5f);  // flat: a real draw varies
    int32_t expect = draw(g, logits).token;
    for (int i = 0; i < 10; ++i) EXPECT_EQ(draw(s, logits).token, expect);
  }
}

TEST(Sampler, TopKDrawsOnlyTheKBest) {
  SamplingParams p = seeded(6);
  p.top_k = 3;
  Sampler s(p, 100);
  const std::vector<double> probs = {0.1, 0.3, 0.05, 0.25, 0.2, 0.1};
  std::map<int32_t, int> h = histogram(drawMany(s, logitsOf(probs), 3000));
  EXPECT_EQ(h.size(), 3u);
  for (const auto& [id, count] : h) EXPECT_TRUE(id == 1 || id == 3 || id == 4) << id;
}

TEST(Sampler, TopPKeepsTheSmallestPrefix) {
  SamplingParams p = seeded(7);
  p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.5 + 0.3: the nucleus is {0, 1}
  Sampler s(p, 100);
  std::map<int32_t, int> h = histogram(drawMany(s, logitsOf({0.5, 0.3, 0.15, 0.05}), 4000));
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_EQ(h.count(3), 0u);
  // Inside the nucleus the draw follows the renormalised probabilities 0.625 / 0.375.
  EXPECT_GT(h[0], 0.55 * 4000);
  EXPECT_LT(h[0], 0.70 * 4000);
  EXPECT_GT(h[1], 0.30 * 4000);

  // A top_p just above the first token's mass needs the second one too.
  p.top_p = 0.51f;
  Sampler s2(p, 100);
  std::map<int32_t, int> h2 = histogram(drawMany(s2, logitsOf({0.5, 0.3, 0.15, 0.05}), 2000));
  EXPECT_EQ(h2.size(), 2u);
  // top_p 0 keeps the best token only.
  p.top_p = 0.0f;
  Sampler s3(p, 100);
  EXPECT_EQ(histogram(drawMany(s3, logitsOf({0.3, 0.5, 0.15, 0.05}), 500)),
            (std::map<int32_t, int>{{1, 500}}));
}

// The nucleus is measured against the mass of the whole vocabulary, also when the sampler only
// sorts the head of a large one: 1024 strong ids hold 90% of the mass and 3072 weak ones 10%, so
// top_p 0.85 needs ~94% of the strong ids, not 85% of them.
TEST(Sampler, TopPOnALargeVocabularyUsesTheWholeMass) {
  const int n_strong = 1024, n_weak = 3072, n = n_strong + n_weak;
  std::vector<float> logits(n);
  std::mt19937_64 rng(11);
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);  // the strong ids are scattered over the vocabulary
  const double strong = 0.9 / n_strong, weak = 0.1 / n_weak;
  for (int i = 0; i < n; ++i) {
    // Slightly distinct values so that the nucleus boundary is well defined.
    double pr = (i < n_strong ? strong : weak) * (1.0 + 1e-4 * (i % 7));
    logits[ids[i]] = static_cast<float>(std::log(pr));
  }
  SamplingParams p = seeded(12);
  p.top_p = 0.85f;
  Sampler s(p, n);
  const std::set<int32_t> ref = nucleus(logits, 0.85);
  ASSERT_GT(ref.size(), 940u);
  ASSERT_LT(ref.size(), 1000u);
  std::set<int32_t> seen;
  for (int32_t id : drawMany(s, logits, 8000)) {
    ASSERT_TRUE(ref.count(id)) << "id " << id << " is outside the nucleus";
    seen.insert(id);
  }
  // Nearly every nucleus id is drawn (8000 draws over < 1000 ids), so a nucleus cut too short
  // (~870 ids) shows.
  EXPECT_GT(seen.size(), ref.size() - 10);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p = seeded(13);
  p.min_p = 0.25f;  // threshold 0.25 * 0.5 = 0.125: ids 0, 1, 2 stay
  Sampler s(p, 100);
  std::map<int32_t, int> h = histogram(drawMany(s, logitsOf({0.5, 0.3, 0.15, 0.05}), 4000));
  EXPECT_EQ(h.count(3), 0u);
  EXPECT_GT(h[2], 0);
  EXPECT_GT(h[1], 0);
  // min_p 1 keeps only the best.
  p.min_p = 1.0f;
  Sampler one(p, 100);
  EXPECT_EQ(histogram(drawMany(one, logitsOf({0.3, 0.5, 0.15, 0.05}), 300)),
            (std::map<int32_t, int>{{1, 300}}));
}

// Every id that passes the min-p threshold stays a candidate, however many there are.
TEST(Sampler, MinPOnALargeVocabularyKeepsEveryIdAboveTheThreshold) {
  const int n = 4096;
  std::vector<float> logits(n);
  for (int i = 0; i < n; ++i) logits[i] = i % 2 == 0 ? 0.0f : std::log(0.4f);  // odd: 0.4 x best
  SamplingParams p = seeded(14);
  p.min_p = 0.5f;
  Sampler s(p, n);
  std::set<int32_t> seen;
  for (int32_t id : drawMany(s, logits, 5000)) {
    ASSERT_EQ(id % 2, 0) << "id " << id << " is below the min-p threshold";
    seen.insert(id);
  }
  EXPECT_GT(*seen.rbegin(), 3000);  // ids from the whole vocabulary, not only its first 1024
  EXPECT_GT(seen.size(), 1500u);    // of the 2048 candidates (~1870 expected in 5000 draws)
}

TEST(Sampler, PresencePenaltyChangesTheChoiceAfterAccept) {
  SamplingParams p = greedy();
  p.presence_penalty = 1.0f;
  Sampler s(p, 100);
  const std::vector<float> logits = {2.0f, 1.5f, 0.0f};
  TokenChoice first = draw(s, logits);
  EXPECT_EQ(first.token, 0);
  EXPECT_EQ(draw(s, logits).token, 0);  // nothing accepted yet: no penalty
  s.accept(0);
  TokenChoice second = draw(s, logits);
  EXPECT_EQ(second.token, 1);  // 2.0 - 1.0 < 1.5
  s.accept(0);                 // presence does not grow with the count
  s.accept(1);
  EXPECT_EQ(draw(s, logits).token, 0);  // 1.0 vs 0.5
  // The reported logprob is the raw model's, not the penalised one.
  std::vector<double> lp = logSoftmax(logits, 3);
  EXPECT_NEAR(second.logprob, lp[1], 1e-5);
}

TEST(Sampler, FrequencyPenaltyGrowsWithTheCount) {
  SamplingParams p = greedy();
  p.frequency_penalty = 0.3f;
  Sampler s(p, 100);
  const std::vector<float> logits = {2.0f, 1.5f, 0.0f};
  s.accept(0);
  EXPECT_EQ(draw(s, logits).token, 0);  // 1.7 > 1.5
  s.accept(0);
  EXPECT_EQ(draw(s, logits).token, 1);  // 1.4 < 1.5
  // Penalties also apply when sampling: a heavily repeated token is never drawn again.
  SamplingParams q = seeded(15);
  q.frequency_penalty = 2.0f;
  Sampler t(q, 100);
  for (int i = 0; i < 50; ++i) t.accept(0);
  std::map<int32_t, int> h = histogram(drawMany(t, logits, 500));
  EXPECT_EQ(h.count(0), 0u);
}

TEST(Sampler, LogitBiasForcesAndBans) {
  const std::vector<float> logits = randomLogits(200, 16);
  const int32_t argmax =
      static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const int32_t argmin =
      static_cast<int32_t>(std::min_element(logits.begin(), logits.end()) - logits.begin());
  // +100 forces even the least likely id, when sampling too.
  SamplingParams force = seeded(17);
  force.logit_bias = {{argmin, 100.0f}};
  Sampler f(force, 200);
  EXPECT_EQ(histogram(drawMany(f, logits, 300)), (std::map<int32_t, int>{{argmin, 300}}));
  // The reported logprob stays the raw one (very unlikely).
  std::vector<double> lp = logSoftmax(logits, 200);
  EXPECT_NEAR(draw(f, logits).logprob, lp[argmin], 1e-4);

  // -100 bans the argmax under greedy decoding and sampling.
  SamplingParams ban = greedy();
  ban.logit_bias = {{argmax, -100.0f}};
  Sampler g(ban, 200);
  EXPECT_NE(draw(g, logits).token, argmax);
  SamplingParams ban_s = seeded(18);
  ban_s.logit_bias = {{0, -100.0f}};
  Sampler b(ban_s, 4);
  std::map<int32_t, int> h = histogram(drawMany(b, {0.0f, 0.0f, 0.0f, 0.0f}, 2000));
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_EQ(h.size(), 3u);
  // Ids out of range are ignored rather than written past the logits.
  SamplingParams odd = greedy();
  odd.logit_bias = {{-1, 100.0f}, {5000, 100.0f}};
  Sampler o(odd, 200);
  EXPECT_EQ(draw(o, logits).token, argmax);
}

TEST(Sampler, ReportedStatisticsDescribeTheRawDistribution) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = randomLogits(50, 300 + seed);
    const std::vector<double> lp = logSoftmax(logits, 50);
    double entropy = 0;
    for (double l : lp) entropy -= std::exp(l) * l;
    std::vector<int32_t> order(50);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });

    // Sampling settings must not change what is reported.
    SamplingParams p = seeded(seed);
    p.temperature = 0.7f;
    p.top_k = 10;
    p.top_p = 0.9f;
    p.presence_penalty = 0.5f;
    p.logit_bias = {{order[0], -3.0f}};
    p.top_logprobs = 5;
    Sampler s(p, 50);
    s.accept(order[1]);
    for (int i = 0; i < 20; ++i) {
      TokenChoice c = draw(s, logits);
      ASSERT_GE(c.token, 0);
      ASSERT_LT(c.token, 50);
      EXPECT_NEAR(c.logprob, lp[c.token], 1e-5);
      EXPECT_NEAR(c.entropy, entropy, 1e-5);
      // The confidence signal: the two largest raw logprobs, whatever was drawn.
      EXPECT_NEAR(c.top1_logprob, lp[order[0]], 1e-5);
      EXPECT_NEAR(c.top2_logprob, lp[order[1]], 1e-5);
      ASSERT_EQ(c.top.size(), 5u);
      for (size_t k = 0; k < 5; ++k) {
        EXPECT_EQ(c.top[k].first, order[k]);
        EXPECT_NEAR(c.top[k].second, lp[order[k]], 1e-5);
        if (k > 0) {
          EXPECT_LE(c.top[k].second, c.top[k - 1].second);
        }
      }
    }
  }
}

TEST(Sampler, TopTwoLogprobsWithTiesTailsAndOneDrawableId) {
  const float inf = std::numeric_limits<float>::infinity();
  // Ties: the second largest is the largest again. Every length, so that the vector body, the
  // lane merge and the scalar tail each hold the two largest at some point.
  for (int n = 2; n <= 40; ++n) {
    for (int a = 0; a < n; a += 3) {
      const int b = (a * 7 + 5) % n;
      std::vector<float> logits(n, -2.0f);
      logits[a] = 4.0f;
      logits[b] = b == a ? 4.0f : 3.0f;
      const std::vector<double> lp = logSoftmax(logits, n);
      Sampler s(greedy(), n);
      TokenChoice c = draw(s, logits);
      EXPECT_NEAR(c.top1_logprob, lp[a], 1e-5) << n << " " << a;
      EXPECT_NEAR(c.top2_logprob, b == a ? lp[(a + 1) % n] : lp[b], 1e-5) << n << " " << a;
      logits[b] = 4.0f;  // a tie at the top
      Sampler t(greedy(), n);
      TokenChoice d = draw(t, logits);
      if (b != a) EXPECT_FLOAT_EQ(d.top1_logprob, d.top2_logprob) << n << " " << a;
    }
  }
  // One id can be drawn: the second is impossible.
  Sampler one(greedy(), 5);
  TokenChoice c = draw(one, {-inf, -inf, 2.0f, -inf, -inf});
  EXPECT_EQ(c.token, 2);
  EXPECT_FLOAT_EQ(c.top1_logprob, 0.0f);
  EXPECT_EQ(c.top2_logprob, -inf);
  // Ids past vocab_limit never count, however large their logits.
  Sampler limited(greedy(), 3);
  TokenChoice l = draw(limited, {0.0f, 1.0f, 0.0f, 50.0f, 40.0f});
  const std::vector<double> lp = logSoftmax({0.0f, 1.0f, 0.0f}, 3);
  EXPECT_NEAR(l.top1_logprob, lp[1], 1e-6);
  EXPECT_NEAR(l.top2_logprob, lp[0], 1e-6);
}

TEST(Sampler, TopLogprobsCountAndOrder) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.0f, 1.0f};
  for (int k : {0, 1, 3, 5, 20}) {
    SamplingParams p = greedy();
    p.top_logprobs = k;
    Sampler s(p, 5);
    TokenChoice c = draw(s, logits);
    ASSERT_EQ(c.top.size(), static_cast<size_t>(std::min(k, 5))) << k;
    const std::vector<int32_t> expect = {1, 3, 4, 0, 2};
    for (size_t i = 0; i < c.top.size(); ++i) EXPECT_EQ(c.top[i].first, expect[i]);
  }
}

TEST(Sampler, EntropyOfAUniformDistributionIsLogN) {
  for (int n : {1, 2, 37, 4096}) {
    Sampler s(greedy(), n);
    std::vector<float> logits(n, 1.25f);
    TokenChoice c = draw(s, logits);
    EXPECT_NEAR(c.entropy, std::log(static_cast<double>(n)), 1e-5) << n;
    EXPECT_NEAR(c.logprob, -std::log(static_cast<double>(n)), 1e-5) << n;
  }
  // Two equally likely ids and the rest impossible: log 2, not NaN.
  const float inf = std::numeric_limits<float>::infinity();
  Sampler s(greedy(), 6);
  TokenChoice c = draw(s, {-inf, 0.0f, -inf, 0.0f, -inf, -inf});
  EXPECT_NEAR(c.entropy, std::log(2.0), 1e-6);
  EXPECT_TRUE(c.token == 1 || c.token == 3);
  EXPECT_NEAR(c.logprob, -std::log(2.0), 1e-6);
  Sampler d(seeded(3), 6);
  for (int i = 0; i < 50; ++i) {
    int32_t id = draw(d, {-inf, 0.0f, -inf, 0.0f, -inf, -inf}).token;
    EXPECT_TRUE(id == 1 || id == 3) << id;
  }
}

TEST(Sampler, VocabLimitIsRespected) {
  // Ids 6.. are embedding rows past the tokenizer; they have the largest logits here.
  const std::vector<float> logits = {0.0f, 0.5f, 0.2f, 0.1f, 0.3f, 0.4f, 9.0f, 8.0f, 7.0f, 6.0f};
  SamplingParams gp = greedy();
  gp.top_logprobs = 10;
  Sampler g(gp, 6);
  TokenChoice c = draw(g, logits);
  EXPECT_EQ(c.token, 1);
  ASSERT_EQ(c.top.size(), 6u);
  for (const auto& [id, lp] : c.top) EXPECT_LT(id, 6);
  const std::vector<double> lp6 = logSoftmax(logits, 6);  // normalised over the first 6 only
  EXPECT_NEAR(c.logprob, lp6[1], 1e-5);
  // A bias on an id past the limit is ignored.
  gp.logit_bias = {{7, 100.0f}};
  Sampler gb(gp, 6);
  EXPECT_EQ(draw(gb, logits).token, 1);

  Sampler s(seeded(19), 6);
  std::map<int32_t, int> h = histogram(drawMany(s, logits, 3000));
  EXPECT_EQ(h.size(), 6u);
  for (const auto& [id, count] : h) EXPECT_LT(id, 6);
  // A logits row shorter than the limit bounds the draw as well.
  Sampler short_row(seeded(20), 1000);
  for (int32_t id : drawMany(short_row, logits, 500)) EXPECT_LT(id, 10);
}

// ---- invalid logits -----------------------------------------------------------------------------

TEST(Sampler, NanLogitsAreAnErrorNotTokenZero) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* what;
    std::vector<float> logits;
    const char* message;
  };
  std::vector<float> big = randomLogits(262144, 5);
  big[200001] = nan;
  const Case cases[] = {
      {"all NaN", std::vector<float>(8, nan), "NaN logit (first at token id 0)"},
      {"one NaN", {0.5f, 2.0f, nan, 1.0f, -1.0f}, "NaN logit (first at token id 2)"},
      {"NaN in a large vocabulary", big, "NaN logit (first at token id 200001)"},
      {"+inf", {0.5f, inf, 1.0f}, "+inf logit (token id 1)"},
      {"all -inf", std::vector<float>(5, -inf), "only -inf logits"},
  };
  for (const Case& c : cases) {
    const int n = static_cast<int>(c.logits.size());
    for (float temperature : {0.0f, 1.0f}) {
      SamplingParams p = seeded(1);
      p.temperature = temperature;
      p.top_k = temperature > 0 ? 3 : 0;
      p.top_logprobs = 2;
      Sampler s(p, n);
      TokenChoice choice = draw(s, c.logits);
      EXPECT_FALSE(choice.status.ok()) << c.what;
      EXPECT_EQ(choice.status.code(), api::ErrorCode::kInternal) << c.what;
      EXPECT_EQ(choice.token, -1) << c.what;
      EXPECT_TRUE(choice.top.empty()) << c.what;
      EXPECT_NE(choice.status.message().find(c.message), std::string::npos)
          << c.what << ": " << choice.status.message();
    }
  }
  // A NaN past the vocabulary limit (embedding rows the tokenizer does not have) is not read.
  Sampler s(greedy(), 3);
  TokenChoice ok = draw(s, {0.0f, 1.0f, 0.5f, nan});
  EXPECT_TRUE(ok.status.ok()) << ok.status.message();
  EXPECT_EQ(ok.token, 1);
}

TEST(Sampler, BiasThatLeavesNothingDrawableIsAnError) {
  const float inf = std::numeric_limits<float>::infinity();
  SamplingParams p = seeded(2);
  p.logit_bias = {{1, -inf}};  // the only finite logit
  Sampler s(p, 3);
  TokenChoice c = draw(s, {-inf, 2.0f, -inf});
  EXPECT_EQ(c.token, -1);
  EXPECT_EQ(c.status.code(), api::ErrorCode::kInternal);
}

// ---- repetition penalty -------------------------------------------------------------------------

// vLLM / Hugging Face: a seen id's positive logit is divided by the penalty, a negative one
// multiplied, once per step however often it occurred.
std::vector<float> penalised(std::vector<float> logits, const std::set<int32_t>& seen, float rp) {
  for (int32_t id : seen) logits[id] = logits[id] > 0 ? logits[id] / rp : logits[id] * rp;
  return logits;
}

int32_t argmaxOf(const std::vector<float>& x) {
  return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

TEST(Sampler, RepetitionPenaltyCountsPromptAndOutputOnce) {
  SamplingParams p = greedy();
  p.repetition_penalty = 1.5f;
  // Positive logits are divided: 2.0 / 1.5 = 1.33 < 1.9.
  const std::vector<int32_t> prompt = {0, 0, 0};
  Sampler s(p, 4, prompt);
  EXPECT_EQ(draw(s, {2.0f, 1.9f, -1.0f, -3.0f}).token, 1);
  // Negative logits are multiplied: -1.0 * 1.5 = -1.5 < -1.2.
  Sampler neg(p, 2, prompt);
  EXPECT_EQ(draw(neg, {-1.0f, -1.2f}).token, 1);
  // Output ids count from the step after they are accepted, and only once: 2.0 / 1.5 = 1.33 > 1.0
  // however many times id 0 came (compounding would give 2.0 / 1.5^3 = 0.59).
  Sampler out(p, 2);
  EXPECT_EQ(draw(out, {2.0f, 1.5f}).token, 0);
  out.accept(0);
  EXPECT_EQ(draw(out, {2.0f, 1.5f}).token, 1);
  for (int i = 0; i < 3; ++i) out.accept(0);
  EXPECT_EQ(draw(out, {2.0f, 1.0f}).token, 0);
  // 1 is off; so are values that are not positive (the request parser rejects them).
  for (float off : {1.0f, 0.0f, -2.0f, std::numeric_limits<float>::quiet_NaN()}) {
    p.repetition_penalty = off;
    Sampler o(p, 4, prompt);
    EXPECT_EQ(draw(o, {2.0f, 1.9f, -1.0f, -3.0f}).token, 0) << off;
  }
}

TEST(Sampler, RepetitionPenaltyMatchesTheReferenceAndKeepsRawLogprobs) {
  const int n = 5000;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = randomLogits(n, 400 + seed);
    std::mt19937_64 rng(seed);
    std::vector<int32_t> prompt;
    std::set<int32_t> seen;
    // The best ids are the likeliest to be penalised, so the choice moves.
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    for (int i = 0; i < 40; ++i) prompt.push_back(order[rng() % 60]);
    seen.insert(prompt.begin(), prompt.end());
    SamplingParams p = greedy();
    p.repetition_penalty = 1.3f;
    p.top_logprobs = 3;
    Sampler s(p, n, prompt);
    const int32_t out1 = order[rng() % 60];
    s.accept(out1);
    seen.insert(out1);
    TokenChoice c = draw(s, logits);
    const int32_t expect = argmaxOf(penalised(logits, seen, 1.3f));
    EXPECT_EQ(c.token, expect) << "seed " << seed;
    // What is reported is still the raw distribution.
    const std::vector<double> lp = logSoftmax(logits, n);
    EXPECT_NEAR(c.logprob, lp[expect], 1e-5);
    ASSERT_EQ(c.top.size(), 3u);
    EXPECT_EQ(c.top[0].first, order[0]);
  }
}

TEST(Sampler, RepetitionPenaltyAppliesBeforeTemperatureSampling) {
  // Id 0 dominates unless penalised: 8 / 4 = 2 against 3 for id 1.
  SamplingParams p = seeded(21);
  p.repetition_penalty = 4.0f;
  const std::vector<int32_t> prompt = {0};
  Sampler s(p, 2, prompt);
  std::map<int32_t, int> h = histogram(drawMany(s, {8.0f, 3.0f}, 2000));
  // p(0) = e^2 / (e^2 + e^3) = 0.27.
  EXPECT_GT(h[0], 0.22 * 2000);
  EXPECT_LT(h[0], 0.32 * 2000);
}

// ---- partial selection on a Gemma-sized vocabulary ----------------------------------------------

TEST(Sampler, LargeVocabularyStatisticsMatchDoublePrecision) {
  const int n = 262144;
  const std::vector<float> logits = randomLogits(n, 77, 4.0f);
  const std::vector<double> lp = logSoftmax(logits, n);
  double entropy = 0;
  for (double l : lp) entropy -= std::exp(l) * l;
  SamplingParams p = greedy();
  p.top_logprobs = 20;
  Sampler s(p, n);
  TokenChoice c = draw(s, logits);
  EXPECT_EQ(c.token, argmaxOf(logits));
  EXPECT_NEAR(c.logprob, lp[c.token], 1e-4);
  EXPECT_NEAR(c.entropy, entropy, 1e-4);
  ASSERT_EQ(c.top.size(), 20u);
  EXPECT_NEAR(c.top1_logprob, c.top[0].second, 1e-6);
  EXPECT_NEAR(c.top2_logprob, c.top[1].second, 1e-6);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ(c.top[k].first, order[k]);
    EXPECT_NEAR(c.top[k].second, lp[order[k]], 1e-4);
  }
}

TEST(Sampler, TopKOnALargeVocabularyDrawsOnlyTheKBest) {
  const int n = 262144;
  std::vector<float> logits = randomLogits(n, 78, 0.3f);  // flat: the draw spreads over all k
  SamplingParams p = seeded(22);
  p.top_k = 64;
  p.top_p = 0.95f;
  Sampler s(p, n);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const std::set<int32_t> best(order.begin(), order.begin() + 64);
  std::set<int32_t> seen;
  for (int32_t id : drawMany(s, logits, 3000)) {
    ASSERT_TRUE(best.count(id)) << id;
    seen.insert(id);
  }
  EXPECT_GT(seen.size(), 50u);  // top_p 0.95 of 64 nearly equal ids keeps ~61
}

TEST(Sampler, TopKTiesGoToTheLowerIdsAndMinusInfIsNeverDrawn) {
  SamplingParams p = seeded(23);
  p.top_k = 3;
  Sampler s(p, 5000);
  std::vector<float> flat(5000, 0.5f);
  EXPECT_EQ(histogram(drawMany(s, flat, 600)).size(), 3u);
  for (const auto& [id, count] : histogram(drawMany(s, flat, 600))) EXPECT_LT(id, 3);
  // Fewer finite logits than k.
  const float inf = std::numeric_limits<float>::infinity();
  p.top_k = 4;
  Sampler f(p, 5);
  for (int32_t id : drawMany(f, {-inf, 0.0f, -inf, 0.5f, -inf}, 500)) {
    EXPECT_TRUE(id == 1 || id == 3) << id;
  }
}

}  // namespace
}  // namespace engine
