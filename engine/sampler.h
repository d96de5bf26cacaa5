// Sampler: turns one step's logits into the next token, with the statistics the router needs.
//
// Order of operations (vLLM's penalties, then Hugging Face's warpers): grammar mask ->
// logit_bias ->
// repetition_penalty -> presence/frequency penalties -> temperature -> top-k -> top-p -> min-p ->
// draw. Temperature 0 is greedy. The reported logprob, top logprobs, entropy and the two largest
// logprobs describe the model's own distribution (the log-softmax of the raw logits, before any
// of the above). The entropy and the two largest logprobs are the confidence signal
// (routers/confidence.h): they do not depend on which token was drawn, so they do not change
// with the sampling settings. With a grammar (constrained decoding, engine/grammar/) every
// token the grammar does not allow next has its logit set to -inf first, so sampling parameters
// apply to what the grammar allows, and everything reported is that of the masked distribution
// (the raw one renormalised over the allowed tokens): it says how sure the model was among the
// valid continuations.
//
// Cost per step over a vocabulary of V, all passes vectorised: one for the two largest logits
// (and the NaN check), one for the log-sum-exp and entropy, one for top_logprobs when asked (a
// bounded heap that skips blocks below its smallest entry). Greedy then scans for the first id
// holding the maximum, again after bias or penalties moved it. Top-k and top-p select their few candidates
// with the same bounded heap instead of sorting the vocabulary (top-p without top-k adds one exp
// pass for its mass, and sorts everything only when the best 1024 ids do not reach it).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "api/status.h"

namespace engine {

namespace grammar {
struct Grammar;
class VocabIndex;
class Matcher;
}  // namespace grammar

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // vLLM / Hugging Face repetition penalty: every token id seen in the prompt or in the output so
  // far has a positive logit divided by it and a negative one multiplied by it, once per step
  // however often the id occurred. "Seen" means every id of the prompt as the model reads it
  // (the chat template's <bos>, <start_of_turn> and role tokens included, as in vLLM) and every
  // generated id. 1 = off; values that are not > 0 are treated as 1 (the request parser rejects
  // them).
  float repetition_penalty = 1.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added to its logit
  bool has_seed = false;
  uint64_t seed = 0;
  int top_logprobs = 0;  // how many alternatives to report per step (0..20)
  // Constrained decoding: only tokens that keep the output a valid prefix of `grammar` may be
  // drawn, and where the grammar is complete only its end ids (grammar_vocab->endIds(), which
  // must be among the engine's eos ids so that the answer ends there). Both set or neither.
  std::shared_ptr<const grammar::Grammar> grammar;
  std::shared_ptr<const grammar::VocabIndex> grammar_vocab;
};

struct TokenChoice {
  int32_t token = -1;
  float logprob = 0;                           // log p(token) under the raw distribution
  float entropy = 0;                           // nats, of the raw distribution
  // The raw distribution's largest and second largest logprobs (whatever was drawn): top1 <= 0;
  // top2 <= top1, equal when two ids share the largest logit, -inf when only one id can be drawn
  // (a grammar allowing a single token, a vocabulary of one).
  float top1_logprob = 0;
  float top2_logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // [top_logprobs] (id, logprob), best first
  // kInternal when the logits cannot be sampled: a NaN or +inf among the first vocab_limit, or
  // all of them -inf. Then `token` is -1, nothing else is set, and the caller must end the
  // sequence with this status instead of emitting a token.
  api::Status status;
};

class Sampler {
 public:
  // `vocab_limit`: only ids below it may be drawn (embedding rows past the tokenizer's vocabulary
  // are never sampled, gemma-spec §2.6).
  // `prompt`: the ids the model reads before the first generated one, for repetition_penalty.
  Sampler(SamplingParams params, int32_t vocab_limit, std::span<const int32_t> prompt = {});
  ~Sampler();

  // Picks the next token from `logits` [n] (n >= vocab_limit is allowed; the tail is ignored).
  // `logits` is used as scratch and left modified. Check `status` of the result first.
  TokenChoice sample(float* logits, int32_t n);

  // Records a generated token for the presence, frequency and repetition penalties, and
  // advances the grammar.
  void accept(int32_t token);

  // With a grammar: the output so far is a complete value (an end id may come next).
  bool grammarComplete() const;
  bool hasGrammar() const { return matcher_ != nullptr; }

  // With a grammar: computes the mask of the next step now, from the output so far (it does not
  // depend on the logits), so that a caller can overlap it with the forward pass; the next
  // sample() uses it, and accept() drops it. May run on another thread than the one that then
  // calls sample(), as long as the two do not overlap. Without a grammar: nothing.
  void prepareMask();

  const SamplingParams& params() const { return params_; }

 private:
  using Candidate = std::pair<float, int32_t>;  // (scaled logit, id)
  // Applies logit_bias and the penalties to logits [v]; records the raw logprob of every id it
  // changes in `saved`. `raw_logprob(id)` gives the raw logprob before any change.
  template <class RawLogprob>
  void applyBiasAndPenalties(float* logits, int32_t v, RawLogprob raw_logprob,
                             std::vector<std::pair<int32_t, float>>& saved);
  // Draws a token from logits [v] (bias and penalties applied, maximum `m`) with temperature,
  // top-k, top-p and min-p; -1 when nothing can be drawn.
  int32_t draw(const float* logits, int32_t v, float m);
  // Fills cand_ with the candidates whose scaled logit s = (x - m) / T passes top-k (or, without
  // top-k, the top-p search), best first; returns the top-p reference mass, sum of e^s over
  // them (over the whole vocabulary without top-k).
  double rankedCandidates(const float* logits, int32_t v, float m, float inv_t);
  void markSeen(int32_t token);
  // Sets logits [v] of the ids the grammar does not allow next to -inf.
  void applyGrammarMask(float* logits, int32_t v);

  SamplingParams params_;
  int32_t vocab_limit_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> counts_;
  std::vector<int32_t> seen_;       // distinct ids of the prompt and output (repetition_penalty)
  std::vector<uint8_t> seen_mask_;  // [vocab_limit] 1 for ids in seen_; empty: penalty off
  std::vector<Candidate> cand_;     // scratch
  std::vector<float> exps_;         // scratch [vocab_limit]
  std::unique_ptr<grammar::Matcher> matcher_;  // with a grammar
  std::vector<uint64_t> mask_;                 // scratch: the grammar's token mask
  bool mask_ready_ = false;                    // mask_ is the next step's (prepareMask)
};

}  // namespace engine
