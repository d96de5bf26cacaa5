// The engine's scheduler: one thread owns the model and every KV cache, and runs all admitted
// requests one step at a time (continuous batching).
//
// Each step is one forward pass of at most `step_tokens` tokens: one for every running decode,
// then chunks of prompts still in prefill (oldest first) fill the rest, so a long prompt delays
// the running streams by at most one such step.
//
// KV is accounted by what each request holds now (prompt + tokens generated so far), not by what
// it might grow to. Admission takes waiting requests in arrival order while their context fits
// beside the running ones (with a token of headroom each for the next step). A request that does
// not fit may be overtaken by later, smaller ones, but only `max_batch` times: after that nothing
// is admitted past it until it fits, so it cannot starve. When the running requests outgrow the
// pool, the youngest (latest submitted) is preempted: its KV is freed and it goes back to the
// queue in arrival order, keeping its sampler, detokenizer and output; on readmission its prompt
// and generated tokens are prefilled again and it continues exactly where it stopped. A request
// that fits the pool alone therefore always finishes.
//
// Prefix cache (engine/kv_cache.h): an admitted request first maps the longest cached prefix of
// its context (whole KV blocks, never its last token) and prefills only the rest. The n choices
// of submitChoices() are one sequence until its prompt is prefilled; then each choice forks its
// KV (shared blocks, copy-on-write) and samples the same logits with its own sampler. Until the
// fork, that sequence counts as n in the batch and in the KV accounting.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>

#include "engine/detokenizer.h"
#include "engine/engine.h"
#include "engine/gguf_gemma.h"
#include "engine/kv_cache.h"
#include "engine/models/model.h"
#include "engine/tokenizer.h"

namespace engine {
namespace {

constexpr int kDefaultStepTokens = 128;  // EngineOptions::step_tokens when unset (bench/RESULTS.md)

double secondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

class Handle : public GenerationHandle {
 public:
  void cancel() override { cancelled.store(true); }
  std::atomic<bool> cancelled{false};
};

// Holds back text that could still become a stop string, and finds complete ones.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
  }
  // Appends `text`; returns what can be emitted now. Sets `stopped` when a stop string is
  // complete (the stop string and everything after it are dropped).
  std::string push(const std::string& text, bool& stopped) {
    buf_ += text;
    if (stops_.empty()) return std::exchange(buf_, {});
    size_t first = std::string::npos;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      size_t at = buf_.find(s);
      if (at != std::string::npos) first = std::min(first, at);
    }
    if (first != std::string::npos) {
      stopped = true;
      std::string out = buf_.substr(0, first);
      buf_.clear();
      return out;
    }
    // Keep the longest suffix that is a prefix of some stop string.
    size_t keep = 0;
    for (const auto& s : stops_) {
      for (size_t k = std::min(s.size() - 1, buf_.size()); k > keep; --k) {
        if (buf_.compare(buf_.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
      }
    }
    // Never split a UTF-8 sequence when holding back.
    size_t cut = buf_.size() - keep;
    while (cut > 0 && cut < buf_.size() && (static_cast<unsigned char>(buf_[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    std::string out = buf_.substr(0, cut);
    buf_.erase(0, cut);
    return out;
  }
  std::string flush() { return std::exchange(buf_, {}); }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string buf_;
};

struct Sequence {
  GenerationRequest request;
  std::shared_ptr<TokenSink> sink;
  std::shared_ptr<Handle> handle;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamingDetokenizer> detok;
  std::unique_ptr<StopMatcher> stops;
  uint64_t order = 0;            // arrival order: the queue is sorted by it, the youngest preempted
  std::vector<int32_t> context;  // the prompt, then every sampled token
  int fed = 0;                   // context tokens already in the KV cache (0 when it has none)
  int generated = 0;             // tokens sampled
  int preemptions = 0;
  int cached_tokens = 0;  // prompt tokens mapped from the prefix cache at first admission
  // The other choices of a submitChoices() request, waiting for this one's prompt to fork from.
  std::vector<std::unique_ptr<Sequence>> forks;
  int overtaken = 0;     // times a later request was admitted while this one waited for KV
  double compute_s = 0;  // share of the forward passes so far (Timings::compute_s)
  Clock::time_point submitted, admitted, first_token;
  int pending() const { return static_cast<int>(context.size()) - fed; }
  bool stop_matched = false;  // a stop string ended it: nothing after it may be shown
  bool done = false;
};

// Computes the grammar masks of a step on a thread of its own while the forward pass runs: a
// mask depends only on the tokens so far, which are known before the pass, so constrained
// decoding adds nothing to a step that a mask can hide behind.
class MaskWorker {
 public:
  MaskWorker() : thread_([this] { loop(); }) {}
  ~MaskWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  MaskWorker(const MaskWorker&) = delete;
  MaskWorker& operator=(const MaskWorker&) = delete;

  // Starts Sampler::prepareMask of each sampler; they must not be used until wait() returns.
  void start(std::vector<Sampler*> samplers) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_ = std::move(samplers);
      busy_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_; });
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || busy_; });
      if (stop_) return;
      std::vector<Sampler*> jobs = std::move(jobs_);
      lock.unlock();
      for (Sampler* s : jobs) s->prepareMask();
      lock.lock();
      busy_ = false;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Sampler*> jobs_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members it reads exist
};

class EngineImpl : public Engine {
 public:
  EngineImpl(EngineOptions options, std::unique_ptr<Model> model,
             std::unique_ptr<Tokenizer> tokenizer)
      : options_(std::move(options)), model_(std::move(model)), tokenizer_(std::move(tokenizer)) {
    const GemmaConfig& cfg = model_->config();
    eos_ids_ = cfg.eos_ids;
    auto add = [&](int32_t id) {
      if (id >= 0 && std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) {
        eos_ids_.push_back(id);
      }
    };
    add(tokenizer_->eosId());
    add(tokenizer_->endOfTurnId());
    max_context_ = static_cast<int>(cfg.max_positions);
    if (options_.max_context > 0) max_context_ = std::min(max_context_, options_.max_context);
    kv_capacity_ = options_.kv_cache_tokens > 0
                       ? options_.kv_cache_tokens
                       : static_cast<int64_t>(std::max(1, options_.max_batch)) *
                             std::min<int64_t>(max_context_, 8192);
    max_context_ = static_cast<int>(std::min<int64_t>(max_context_, kv_capacity_));
    step_tokens_ = options_.step_tokens > 0 ? options_.step_tokens : kDefaultStepTokens;
    step_tokens_ = std::max(step_tokens_, std::max(1, options_.max_batch) + 1);
    kv_pool_ = model_->newKvPool(kv_capacity_, std::max(1, options_.max_batch), step_tokens_);
    // Sample only ids the tokenizer knows (embedding rows may exceed it, gemma-spec §2.6).
    vocab_limit_ = static_cast<int32_t>(
        std::min<int64_t>(cfg.vocab, static_cast<int64_t>(tokenizer_->vocabSize())));
    stats_.kv_tokens_capacity = kv_capacity_;  // known before the first step
    thread_ = std::thread([this] { loop(); });
  }

  ~EngineImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  api::StatusOr<std::shared_ptr<GenerationHandle>> submit(
      GenerationRequest request, std::shared_ptr<TokenSink> sink) override {
    std::vector<std::shared_ptr<TokenSink>> sinks;
    sinks.push_back(std::move(sink));
    return submitChoices(std::move(request), std::move(sinks));
  }

  api::StatusOr<std::shared_ptr<GenerationHandle>> submitChoices(
      GenerationRequest request, std::vector<std::shared_ptr<TokenSink>> sinks) override {
    if (api::Status st = check(request); !st.ok()) return st;
    const int n = static_cast<int>(sinks.size());
    if (n < 1 || n > std::max(1, options_.max_batch)) {
      return api::invalidRequest("n must lie between 1 and the local engine's batch size (" +
                                     std::to_string(std::max(1, options_.max_batch)) + ").",
                                 "n");
    }
    request.max_tokens = std::max(1, std::min(request.max_tokens, max_context_ - prompt(request)));
    auto handle = std::make_shared<Handle>();
    std::vector<std::unique_ptr<Sequence>> choices;
    for (int i = 0; i < n; ++i) {
      auto seq = std::make_unique<Sequence>();
      seq->handle = handle;
      seq->context = request.prompt;
      seq->request = request;
      if (seq->request.sampling.has_seed) seq->request.sampling.seed += static_cast<uint64_t>(i);
      seq->sink = std::move(sinks[size_t(i)]);
      seq->submitted = Clock::now();
      choices.push_back(std::move(seq));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : choices) c->order = next_order_++;
      // max_queue counts the requests waiting beyond the batch: those that free batch slots
      // will take at the scheduler's next step do not wait.
      const int free_slots = std::max(0, options_.max_batch - stats_.running);
      if (static_cast<int>(queue_.size()) >= options_.max_queue + free_slots) {
        ++rejected_;
        return api::Status(api::ErrorCode::kUnavailable,
                           "The local engine's queue is full; retry shortly.")
            .withRetryAfter(1);
      }
      std::unique_ptr<Sequence> first = std::move(choices[0]);
      for (size_t i = 1; i < choices.size(); ++i) first->forks.push_back(std::move(choices[i]));
      queue_.push_back(std::move(first));
    }
    cv_.notify_one();
    return std::shared_ptr<GenerationHandle>(handle);
  }

  EngineStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    EngineStats s = stats_;
    s.queued = static_cast<int>(queue_.size());
    s.requests_rejected = rejected_;
    return s;
  }

  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  const std::vector<int32_t>& eosIds() const override { return eos_ids_; }
  int maxContext() const override { return max_context_; }
  SamplingParams defaultSampling() const override {
    SamplingParams p;
    const GenerationDefaults& g = model_->config().generation;
    if (g.do_sample.has_value() && !*g.do_sample) {
      p.temperature = 0;
      return p;
    }
    if (g.temperature) p.temperature = *g.temperature;
    if (g.top_k) p.top_k = *g.top_k;
    if (g.top_p) p.top_p = *g.top_p;
    return p;
  }

 private:
  static int prompt(const GenerationRequest& r) { return static_cast<int>(r.prompt.size()); }
  // kInvalidRequest for an empty prompt, one that does not fit the context or an unknown id.
  api::Status check(const GenerationRequest& request) const {
    const int n = prompt(request);
    if (n == 0) return api::invalidRequest("The prompt is empty.", "messages");
    if (n >= max_context_) {
      return api::invalidRequest(
          "This model's maximum context length is " + std::to_string(max_context_) +
              " tokens. However, your messages resulted in " + std::to_string(n) + " tokens.",
          "messages");
    }
    for (int32_t id : request.prompt) {
      if (id < 0 || id >= vocab_limit_) {
        return api::invalidRequest("Token id " + std::to_string(id) + " is out of range.",
                                   "messages");
      }
    }
    return api::Status();
  }
  void loop();
  void reap();
  void admit();
  bool blocksFit(int extra, const Sequence* also) const;
  bool fitsBeside(const Sequence& s) const;
  // The most positions `s` may ever hold, which sizes its cache.
  static int mostPositions(const Sequence& s) {
    return static_cast<int>(s.request.prompt.size()) + s.request.max_tokens;
  }
  void start(Sequence& s);
  void initOutput(Sequence& s);
  void forkChoices(Sequence& s, const float* logits);
  void preemptWhileOverfull();
  int64_t committedTokens() const;
  bool step();
  // Starts the masks of the sequences of `batch` that sample after it and have a grammar.
  void startMasks(const std::vector<SeqBatchItem>& batch, const std::vector<Sequence*>& owners);
  void finish(Sequence& s, std::string reason, api::Status status);
  void emit(Sequence& s, const TokenChoice& choice);
  void publishStats();
  // The token's own text for logprobs: its raw byte for a byte-fallback token (possibly part of
  // a UTF-8 sequence), else its piece as decoded.
  std::string tokenText(int32_t id) const {
    const int byte = tokenizer_->byteValue(id);
    if (byte >= 0) return std::string(1, static_cast<char>(byte));
    return std::string(tokenizer_->decodedPiece(id));
  }

  const EngineOptions options_;
  std::unique_ptr<Model> model_;  // Gemma 3 or Gemma 4, by the checkpoint's model_type
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvPool> kv_pool_;  // every request's KV blocks; outlives their caches
  std::vector<int32_t> eos_ids_;
  int max_context_ = 0;
  int64_t kv_capacity_ = 0;
  int step_tokens_ = 0;
  int32_t vocab_limit_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> queue_;
  bool stopping_ = false;
  int64_t rejected_ = 0;
  uint64_t next_order_ = 0;
  EngineStats stats_;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_;
  std::thread thread_;
  double decode_rate_ = 0, prefill_rate_ = 0;
  int64_t tokens_generated_ = 0;
  int64_t preemptions_ = 0, steps_ = 0, prefix_hit_tokens_ = 0;
  std::vector<float> fork_logits_;
  int max_step_tokens_ = 0;
  std::unique_ptr<MaskWorker> masks_;  // made by the first step with a grammar
};

void EngineImpl::startMasks(const std::vector<SeqBatchItem>& batch,
                            const std::vector<Sequence*>& owners) {
  std::vector<Sampler*> samplers;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Sequence& s = *owners[i];
    if (!s.done && batch[i].n_tokens == s.pending() && s.sampler->hasGrammar()) {
      samplers.push_back(s.sampler.get());
    }
  }
  if (samplers.empty()) return;
  if (!masks_) masks_ = std::make_unique<MaskWorker>();
  masks_->start(std::move(samplers));
}

void EngineImpl::finish(Sequence& s, std::string reason, api::Status status) {
  if (s.done) return;
  s.done = true;
  FinishEvent ev;
  ev.finish_reason = std::move(reason);
  ev.status = std::move(status);
  if (s.detok && ev.status.ok() && !s.stop_matched) {
    bool stopped = false;
    std::string tail = s.stops->push(s.detok->flush(), stopped);
    if (!stopped) tail += s.stops->flush();
    ev.text = std::move(tail);
  }
  ev.prompt_tokens = static_cast<int>(s.request.prompt.size());
  ev.completion_tokens = s.generated;
  ev.preemptions = s.preemptions;
  ev.cached_prompt_tokens = s.cached_tokens;
  auto now = Clock::now();
  if (s.admitted != Clock::time_point{}) {
    ev.timings.queue_s = secondsBetween(s.submitted, s.admitted);
    if (s.first_token != Clock::time_point{}) {
      ev.timings.prefill_s = secondsBetween(s.admitted, s.first_token);
      ev.timings.decode_s = secondsBetween(s.first_token, now);
    } else {
      ev.timings.prefill_s = secondsBetween(s.admitted, now);
    }
  } else {
    ev.timings.queue_s = secondsBetween(s.submitted, now);
  }
  ev.timings.compute_s = s.compute_s;
  s.kv.reset();  // frees the request's KV at once
  s.sink->onFinish(ev);
  for (auto& f : s.forks) finish(*f, ev.finish_reason, ev.status);  // choices never forked
  s.forks.clear();
}

int64_t EngineImpl::committedTokens() const {
  int64_t n = 0;
  for (const auto& s : running_) n += static_cast<int64_t>(s->context.size());
  return n;
}

// Whether every block kind of the pool holds what the running requests occupy (each with `extra`
// more positions) plus `also` (when not null) with `extra` more.
bool EngineImpl::blocksFit(int extra, const Sequence* also) const {
  for (int k = 0; k < kv_pool_->numKinds(); ++k) {
    int64_t need = 0;
    auto add = [&](const Sequence& s) {  // a sequence with choices to fork counts for each
      need +=
          static_cast<int64_t>(1 + s.forks.size()) *
          kv_pool_->blocksFor(k, static_cast<int64_t>(s.context.size()) + extra, mostPositions(s));
    };
    for (const auto& s : running_) add(*s);
    if (also) add(*also);
    if (need > kv_pool_->totalBlocks(k)) return false;
  }
  return true;
}

// Whether `s` fits in the pool beside the running requests, leaving each (and it) room for the
// next step's token.
bool EngineImpl::fitsBeside(const Sequence& s) const {
  if (running_.empty()) return true;  // alone it always fits (submit() bounds it by max_context_)
  return blocksFit(1, &s);
}

// Gives an admitted request its KV cache (sized for the most it may hold; the pool accounts only
// what it holds) holding the longest cached prefix of its context and, on first admission, its
// sampler, detokenizer and stop matcher.
void EngineImpl::start(Sequence& s) {
  s.kv = model_->newKvCache(*kv_pool_, mostPositions(s));
  const int n = static_cast<int>(s.context.size());
  s.fed = s.kv->mapPrefix(s.context.data(), n, n - 1);  // the last token is fed for its logits
  if (s.sampler) return;  // resumed after a preemption: its state carries on
  s.cached_tokens = s.fed;
  prefix_hit_tokens_ += s.fed;
  initOutput(s);
}

void EngineImpl::initOutput(Sequence& s) {
  s.admitted = Clock::now();
  s.sampler = std::make_unique<Sampler>(s.request.sampling, vocab_limit_, s.request.prompt);
  s.detok = std::make_unique<StreamingDetokenizer>(*tokenizer_, true);
  s.stops = std::make_unique<StopMatcher>(s.request.stop);
}

// `s` has just prefilled its prompt: its other choices take a fork of its KV and sample
// `logits` (the prompt's last row, unmodified) with their own samplers, and join the batch.
void EngineImpl::forkChoices(Sequence& s, const float* logits) {
  const int64_t vocab = model_->config().vocab;
  std::vector<std::unique_ptr<Sequence>> forks = std::move(s.forks);
  s.forks.clear();
  for (auto& f : forks) {
    f->kv = s.kv->fork();
    f->fed = s.fed;
    f->cached_tokens = s.cached_tokens;
    initOutput(*f);
    f->admitted = s.admitted;
    fork_logits_.assign(logits, logits + vocab);
    TokenChoice c = f->sampler->sample(fork_logits_.data(), static_cast<int32_t>(vocab));
    if (!c.status.ok()) {
      finish(*f, "error", c.status);
      continue;
    }
    emit(*f, c);
    if (!f->done) running_.push_back(std::move(f));
  }
}

// Arrival order with bounded overtaking (see the top of the file).
void EngineImpl::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = queue_.begin();
       it != queue_.end() && static_cast<int>(running_.size()) < options_.max_batch;) {
    Sequence& s = **it;
    const bool slots = static_cast<int>(running_.size() + 1 + s.forks.size()) <= options_.max_batch;
    if (!slots || !fitsBeside(s)) {
      if (s.overtaken >= options_.max_batch) break;  // nothing more passes it
      ++it;
      continue;
    }
    for (auto w = queue_.begin(); w != it; ++w) ++(*w)->overtaken;
    auto seq = std::move(*it);
    it = queue_.erase(it);
    start(*seq);
    running_.push_back(std::move(seq));
  }
  stats_.running = static_cast<int>(running_.size());  // submit() counts the free slots
}

// While the running requests hold more than the pool, the youngest gives its KV back and waits
// in the queue (in arrival order) to be recomputed.
void EngineImpl::preemptWhileOverfull() {
  while (running_.size() > 1 && !blocksFit(0, nullptr)) {
    auto youngest =
        std::max_element(running_.begin(), running_.end(),
                         [](const auto& a, const auto& b) { return a->order < b->order; });
    std::unique_ptr<Sequence> seq = std::move(*youngest);
    running_.erase(youngest);
    seq->kv.reset();
    seq->fed = 0;
    ++seq->preemptions;
    ++preemptions_;
    std::lock_guard<std::mutex> lock(mu_);
    auto at = std::find_if(queue_.begin(), queue_.end(),
                           [&](const auto& q) { return q->order > seq->order; });
    queue_.insert(at, std::move(seq));
  }
}

void EngineImpl::emit(Sequence& s, const TokenChoice& choice) {
  ++s.generated;
  ++tokens_generated_;
  s.sampler->accept(choice.token);
  if (s.generated == 1) s.first_token = Clock::now();
  const bool is_eos = std::find(eos_ids_.begin(), eos_ids_.end(), choice.token) != eos_ids_.end() ||
                      std::find(s.request.stop_tokens.begin(), s.request.stop_tokens.end(),
                                choice.token) != s.request.stop_tokens.end();
  if (is_eos) {
    // The stop token itself is not part of the answer, but it was generated.
    finish(s, "stop", api::Status());
    return;
  }
  TokenEvent ev;
  ev.id = choice.token;
  bool stopped = false;
  ev.text = s.stops->push(s.detok->feed(choice.token), stopped);
  ev.token_text = tokenText(choice.token);
  ev.logprob = choice.logprob;
  ev.entropy = choice.entropy;
  ev.top1_logprob = choice.top1_logprob;
  ev.top2_logprob = choice.top2_logprob;
  if (s.request.logprobs) {
    for (const auto& [id, lp] : choice.top) {
      ev.top.push_back(TopToken{id, tokenText(id), lp});
    }
  }
  s.sink->onToken(ev);
  if (stopped) {
    s.stop_matched = true;
    finish(s, "stop", api::Status());
  } else if (s.generated >= s.request.max_tokens) {
    finish(s, "length", api::Status());
  } else {
    s.context.push_back(choice.token);  // fed to the model at the next step
  }
}

// Cancellations and deadlines, running or queued: their KV is freed before anything else runs.
void EngineImpl::reap() {
  auto now = Clock::now();
  for (auto& s : running_) {
    if (s->handle->cancelled.load()) {
      finish(*s, "error", api::Status(api::ErrorCode::kCancelled, "cancelled"));
    } else if (now > s->request.deadline) {
      finish(*s, "error",
             api::Status(api::ErrorCode::kUpstreamTimeout,
                         "the local engine did not finish before the request's deadline"));
    }
  }
  std::erase_if(running_, [](const auto& s) { return s->done; });
  std::vector<std::unique_ptr<Sequence>> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->handle->cancelled.load() || now > (*it)->request.deadline) {
        gone.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& seq : gone) {
    finish(*seq, "error",
           seq->handle->cancelled.load()
               ? api::Status(api::ErrorCode::kCancelled, "cancelled")
               : api::Status(api::ErrorCode::kUpstreamTimeout,
                             "the request waited in the local engine's queue past its deadline"));
  }
}

bool EngineImpl::step() {
  reap();
  admit();
  preemptWhileOverfull();
  if (running_.empty()) {
    publishStats();  // cancellations and deadlines above may have freed the last KV
    return false;
  }

  // How many tokens each request feeds: one per decode first, then prefill chunks (oldest
  // first, which is running_'s order) within what is left of the step's budget.
  std::vector<int> take(running_.size(), 0);
  int left = step_tokens_;
  for (size_t i = 0; i < running_.size(); ++i) {
    if (running_[i]->generated > 0 && running_[i]->pending() == 1) take[i] = 1, --left;
  }
  for (size_t i = 0; i < running_.size() && left > 0; ++i) {
    if (take[i] == 0) left -= take[i] = std::min(running_[i]->pending(), left);
  }

  const int64_t vocab = model_->config().vocab;
  std::vector<SeqBatchItem> batch;
  std::vector<Sequence*> owners;
  int prefill_tokens = 0, decode_tokens = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    if (take[i] == 0) continue;
    Sequence& s = *running_[i];
    SeqBatchItem item{};
    item.kv = s.kv.get();
    item.tokens = s.context.data() + s.fed;
    item.n_tokens = take[i];
    (s.generated > 0 && s.pending() == 1 ? decode_tokens : prefill_tokens) += take[i];
    batch.push_back(item);
    owners.push_back(&s);
  }
  logits_.resize(batch.size() * static_cast<size_t>(vocab));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].logits = logits_.data() + i * vocab;

  startMasks(batch, owners);
  auto t0 = Clock::now();
  api::Status st = model_->forward(batch);
  double dt = secondsBetween(t0, Clock::now());
  if (masks_) masks_->wait();
  const int step_tokens = prefill_tokens + decode_tokens;
  ++steps_;
  max_step_tokens_ = std::max(max_step_tokens_, step_tokens);
  for (size_t i = 0; i < batch.size() && step_tokens > 0; ++i) {
    owners[i]->compute_s += dt * batch[i].n_tokens / step_tokens;
  }
  if (!st.ok()) {
    for (Sequence* s : owners) finish(*s, "error", st);
  } else {
    for (size_t i = 0; i < batch.size(); ++i) {
      Sequence& s = *owners[i];
      s.fed += batch[i].n_tokens;
      if (s.pending() > 0 || s.done) continue;                // mid-prefill: nothing to sample yet
      if (!s.forks.empty()) forkChoices(s, batch[i].logits);  // before s samples (and may end)
      TokenChoice c = s.sampler->sample(batch[i].logits, static_cast<int32_t>(vocab));
      if (!c.status.ok()) {  // NaN logits: an error, never a made-up token
        finish(s, "error", c.status);
        continue;
      }
      emit(s, c);
    }
  }
  std::erase_if(running_, [](const auto& s) { return s->done; });
  // Exponentially smoothed rates for the router's load view.
  if (dt > 0) {
    const double a = 0.2;
    if (decode_tokens > 0 && prefill_tokens == 0) {
      decode_rate_ = (1 - a) * decode_rate_ + a * (decode_tokens / dt);
    }
    if (prefill_tokens > 0) prefill_rate_ = (1 - a) * prefill_rate_ + a * (prefill_tokens / dt);
  }
  publishStats();
  return true;
}

void EngineImpl::publishStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running = static_cast<int>(running_.size());
  stats_.kv_tokens_used = committedTokens();
  stats_.preemptions = preemptions_;
  stats_.steps = steps_;
  stats_.max_step_tokens = max_step_tokens_;
  stats_.prefix_cache_hit_tokens = prefix_hit_tokens_;
  stats_.prefix_cache_blocks = kv_pool_->cachedBlocks();
  stats_.kv_tokens_capacity = kv_capacity_;
  stats_.decode_tokens_per_s = decode_rate_;
  stats_.prefill_tokens_per_s = prefill_rate_;
  stats_.tokens_generated = tokens_generated_;
}

void EngineImpl::loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(running_.empty() ? 100 : 0),
                   [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
      if (stopping_) break;
    }
    step();
  }
  for (auto& s : running_) {
    finish(*s, "error", api::Status(api::ErrorCode::kUnavailable, "the engine is shutting down"));
  }
  running_.clear();
  std::deque<std::unique_ptr<Sequence>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (auto& s : left) {
    finish(*s, "error", api::Status(api::ErrorCode::kUnavailable, "the engine is shutting down"));
  }
}

}  // namespace

api::StatusOr<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options) {
  if (options.backend != "cpu" && options.backend != "auto") {
    return api::Status(api::ErrorCode::kConfig,
                       "engine backend '" + options.backend +
                           "' is not available in this build (use cpu or auto)");
  }
  std::optional<quant::QType> quantize;
  if (!options.quantize.empty() && !(quantize = quant::parseQType(options.quantize))) {
    return api::Status(api::ErrorCode::kConfig, "engine: quantize '" + options.quantize +
                                                    "' is not one of q8_0, q5_0, q4_0, q4_k, q6_k");
  }
  // A .gguf model (engine/gguf_gemma.h): its own vocabulary, else tokenizer.json beside it.
  auto tokenizer = gguf::isGgufPath(options.model_dir) ? gguf::loadGgufTokenizer(options.model_dir)
                                                       : Tokenizer::loadDir(options.model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto model = Model::load(options.model_dir, options.threads, quantize);
  if (!model.ok()) return model.status();
  try {
    return std::unique_ptr<Engine>(
        new EngineImpl(options, std::move(model).value(), std::move(tokenizer).value()));
  } catch (const std::bad_alloc&) {  // the KV block pool, allocated whole at start
    return api::Status(api::ErrorCode::kConfig,
                       "engine: the KV cache for kv_cache_tokens " +
                           std::to_string(options.kv_cache_tokens) +
                           " could not be allocated; lower kv_cache_tokens");
  }
}

}  // namespace engine
