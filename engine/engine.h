// engine::Engine: the embedded Gemma engine as the rest of Switchyard sees it (DESIGN.md seams).
//
// submit() queues a generation; one scheduler thread owns the model and the KV cache and runs
// every admitted request a step at a time (continuous batching). Token events go to the
// request's TokenSink from the scheduler thread, as they are produced; the sink must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/status.h"
#include "engine/sampler.h"

namespace engine {

class Tokenizer;

using Clock = std::chrono::steady_clock;

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids, <bos> included
  int max_tokens = 256;         // generated tokens at most (>= 1)
  SamplingParams sampling;
  std::vector<std::string> stop;      // stop strings (not included in the output)
  std::vector<int32_t> stop_tokens;   // in addition to the model's eos ids
  bool logprobs = false;              // report logprob/top logprobs in TokenEvents
  Clock::time_point deadline = Clock::time_point::max();
};

struct TopToken {
  int32_t id = 0;
  std::string text;  // the token's own text (may be a partial UTF-8 sequence)
  float logprob = 0;
};

struct TokenEvent {
  int32_t id = 0;
  std::string text;  // text delta safe to show: whole UTF-8 sequences, stop strings held back
  std::string token_text;  // the token's own piece (for logprobs)
  float logprob = 0;       // log p(id) under the model's raw distribution
  float entropy = 0;       // nats, of the raw distribution at this step
  float top1_logprob = 0;  // its largest and second largest logprobs (TokenChoice)
  float top2_logprob = 0;
  std::vector<TopToken> top;  // filled when GenerationRequest::logprobs
};

struct Timings {
  double queue_s = 0;    // submit -> admitted
  double prefill_s = 0;  // admitted -> first token sampled
  double decode_s = 0;   // first token -> finish
  // This request's share of the forward passes it took part in: each step's time split over
  // the batch by tokens processed. Summed over requests it is the engine's busy time, so it
  // prices local answers honestly under batching.
  double compute_s = 0;
};

struct FinishEvent {
  // "stop" (eos, end_of_turn, a stop token or string), "length" (max_tokens or context full),
  // or "error" with `status` set (kCancelled, kUpstreamTimeout for a missed deadline, ...).
  std::string finish_reason;
  api::Status status;
  std::string text;  // any text still held back (flushed at the end)
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int preemptions = 0;  // times its KV was taken back and recomputed (the output is unchanged)
  // Prompt tokens whose K/V came from the prefix cache (or, for the choices of submitChoices(),
  // from the one prefill they share) instead of being prefilled for this request: a whole number
  // of KV blocks, never the last prompt token (usage.prompt_tokens_details.cached_tokens).
  int cached_prompt_tokens = 0;
  Timings timings;
};

class TokenSink {
 public:
  virtual ~TokenSink() = default;
  virtual void onToken(const TokenEvent& event) = 0;
  // Exactly once, last.
  virtual void onFinish(const FinishEvent& event) = 0;
};

class GenerationHandle {
 public:
  virtual ~GenerationHandle() = default;
  // Thread-safe, idempotent. The request's KV is freed at the scheduler's next step and the
  // sink gets onFinish with kCancelled (unless it had already finished).
  virtual void cancel() = 0;
};

struct EngineStats {
  int queued = 0;              // waiting for admission
  int running = 0;             // in the batch
  int64_t kv_tokens_used = 0;  // KV positions in use: prompt + tokens generated so far, per request
  int64_t kv_tokens_capacity = 0;
  double decode_tokens_per_s = 0;   // recent, across the batch
  double prefill_tokens_per_s = 0;  // recent
  int64_t requests_rejected = 0;    // queue full
  int64_t tokens_generated = 0;     // since start
  int64_t preemptions = 0;          // since start: running requests whose KV was reclaimed
  int64_t steps = 0;                // forward passes since start
  int max_step_tokens = 0;          // most tokens one forward pass took since start
  int64_t prefix_cache_hit_tokens = 0;  // since start: prompt tokens served from the prefix cache
  int64_t prefix_cache_blocks = 0;      // KV blocks registered in the prefix cache now (all kinds)
};

struct EngineOptions {
  // A Hugging Face model directory, or a Gemma 3 .gguf file (engine/gguf_gemma.h: its tokenizer
  // from its metadata, or tokenizer.json beside it when it has none).
  std::string model_dir;
  std::string backend = "cpu";  // "cpu" ("cuda" and "auto" with the CUDA backend)
  int threads = 0;              // CPU backend threads; 0 = all cores
  int max_batch = 8;            // requests decoded together
  int max_queue = 64;           // waiting requests beyond the batch; more get kUnavailable
  int64_t kv_cache_tokens = 0;  // KV positions for all requests together; 0 = a default
  // Tokens one forward pass takes: every running decode (one each), then chunks of waiting
  // prompts fill the rest, so a long prompt delays running streams by at most one such step.
  // 0 = a default (128, measured: bench/RESULTS.md); raised to max_batch + 1 so that a full
  // batch still leaves room for prefill.
  int step_tokens = 0;
  int max_context = 0;          // per request; 0 = the model's max positions (capped by the KV)
  // "" = weights as stored; "q8_0", "q5_0", "q4_0", "q4_k" or "q6_k": matrices block-quantized on
  // load (engine/quant/quant.h, CpuBackendOptions::quantize).
  std::string quantize;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Loads the model directory and starts the scheduler thread. Errors name the file and tensor.
  static api::StatusOr<std::unique_ptr<Engine>> create(const EngineOptions& options);

  // Queues a request. kInvalidRequest when the prompt does not fit the context, kUnavailable
  // (with a retry-after hint) when the queue is full.
  virtual api::StatusOr<std::shared_ptr<GenerationHandle>> submit(
      GenerationRequest request, std::shared_ptr<TokenSink> sink) = 0;

  // n = sinks.size() choices of one request (1 .. max_batch): the prompt is prefilled once and
  // the choices fork from it on shared KV blocks (engine/kv_cache.h), each then sampling on its
  // own: choice i with request.sampling, its seed + i when has_seed, so that it equals a request
  // submitted alone with that seed. Each sink gets its choice's events and finish; the handle
  // cancels them all. Errors as submit(), and kInvalidRequest for n outside 1 .. max_batch. The
  // default serves n = 1 only.
  virtual api::StatusOr<std::shared_ptr<GenerationHandle>> submitChoices(
      GenerationRequest request, std::vector<std::shared_ptr<TokenSink>> sinks) {
    if (sinks.size() != 1) return api::invalidRequest("n must be 1 for this engine.", "n");
    return submit(std::move(request), std::move(sinks[0]));
  }

  virtual EngineStats stats() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  // Token ids that end generation (eos, end_of_turn).
  virtual const std::vector<int32_t>& eosIds() const = 0;
  virtual int maxContext() const = 0;
  // Sampling settings the checkpoint suggests (generation_config.json) for requests that leave
  // them unset; temperature 1 and no truncation when it suggests nothing.
  virtual SamplingParams defaultSampling() const = 0;
};

}  // namespace engine
