// Sampler: turns one step's logits into the next token, with the statistics the router needs.
//
// Order of operations (OpenAI's penalties, then Hugging Face's warpers): logit_bias and
// presence/frequency penalties -> temperature -> top-k -> top-p -> min-p -> draw. Temperature 0
// is greedy. The reported logprob, top logprobs and entropy describe the model's own
// distribution (the raw logits, before any of the above): that is the confidence signal, and it
// does not change with the sampling settings.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace engine {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added to its logit
  bool has_seed = false;
  uint64_t seed = 0;
  int top_logprobs = 0;  // how many alternatives to report per step (0..20)
};

struct TokenChoice {
  int32_t token = -1;
  float logprob = 0;  // log p(token) under the raw distribution
  float entropy = 0;  // nats, of the raw distribution
  std::vector<std::pair<int32_t, float>> top;  // [top_logprobs] (id, logprob), best first
};

class Sampler {
 public:
  // `vocab_limit`: only ids below it may be drawn (embedding rows past the tokenizer's vocabulary
  // are never sampled, gemma-spec §2.6).
  Sampler(SamplingParams params, int32_t vocab_limit);

  // Picks the next token from `logits` [n] (n >= vocab_limit is allowed; the tail is ignored).
  // `logits` is used as scratch and left modified.
  TokenChoice sample(float* logits, int32_t n);

  // Records a generated token for the presence and frequency penalties.
  void accept(int32_t token);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  int32_t vocab_limit_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> counts_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch
};

}  // namespace engine
