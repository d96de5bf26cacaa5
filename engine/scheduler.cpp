// The engine's scheduler: one thread owns the model and every KV cache, and runs all admitted
// requests one step at a time (continuous batching). Each step decodes one token for every
// running request and feeds at most `kPrefillBudget` prompt tokens of requests still in
// prefill, so a long prompt never stalls the running decodes for long (chunked prefill).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/detokenizer.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/models/gemma3.h"
#include "engine/tokenizer.h"

namespace engine {
namespace {

constexpr int kPrefillBudget = 256;  // prompt tokens per step, across requests
constexpr int kPrefillChunk = 256;   // largest piece of one prompt in one step

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
  int prefilled = 0;   // prompt tokens already in the KV cache
  int generated = 0;   // tokens sampled
  double compute_s = 0;  // share of the forward passes so far (Timings::compute_s)
  int32_t last_token = -1;  // sampled, not yet fed to the model
  int64_t kv_reserved = 0;
  Clock::time_point submitted, admitted, first_token;
  bool stop_matched = false;  // a stop string ended it: nothing after it may be shown
  bool done = false;
};

class EngineImpl : public Engine {
 public:
  EngineImpl(EngineOptions options, std::unique_ptr<Gemma3Model> model,
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
    const int prompt = static_cast<int>(request.prompt.size());
    if (prompt == 0) return api::invalidRequest("The prompt is empty.", "messages");
    if (prompt >= max_context_) {
      return api::invalidRequest("This model's maximum context length is " +
                                     std::to_string(max_context_) +
                                     " tokens. However, your messages resulted in " +
                                     std::to_string(prompt) + " tokens.",
                                 "messages");
    }
    for (int32_t id : request.prompt) {
      if (id < 0 || id >= vocab_limit_) {
        return api::invalidRequest("Token id " + std::to_string(id) + " is out of range.",
                                   "messages");
      }
    }
    request.max_tokens = std::max(1, std::min(request.max_tokens, max_context_ - prompt));
    auto seq = std::make_unique<Sequence>();
    seq->handle = std::make_shared<Handle>();
    auto handle = seq->handle;
    seq->request = std::move(request);
    seq->sink = std::move(sink);
    seq->submitted = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      // max_queue counts the requests waiting beyond the batch: those that free batch slots
      // will take at the scheduler's next step do not wait.
      const int free_slots = std::max(0, options_.max_batch - stats_.running);
      if (static_cast<int>(queue_.size()) >= options_.max_queue + free_slots) {
        ++rejected_;
        return api::Status(api::ErrorCode::kUnavailable,
                           "The local engine's queue is full; retry shortly.")
            .withRetryAfter(1);
      }
      queue_.push_back(std::move(seq));
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
  void loop();
  void admit();
  bool step();
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
  std::unique_ptr<Gemma3Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int32_t> eos_ids_;
  int max_context_ = 0;
  int64_t kv_capacity_ = 0;
  int32_t vocab_limit_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> queue_;
  bool stopping_ = false;
  int64_t rejected_ = 0;
  EngineStats stats_;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  int64_t kv_used_ = 0;
  std::vector<float> logits_;
  std::thread thread_;
  double decode_rate_ = 0, prefill_rate_ = 0;
  int64_t tokens_generated_ = 0;
};

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
  kv_used_ -= s.kv_reserved;
  s.kv_reserved = 0;
  s.sink->onFinish(ev);
}

void EngineImpl::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!queue_.empty() && static_cast<int>(running_.size()) < options_.max_batch) {
    Sequence& s = *queue_.front();
    int64_t need = static_cast<int64_t>(s.request.prompt.size()) + s.request.max_tokens;
    if (kv_used_ + need > kv_capacity_ && !running_.empty()) break;  // wait for KV to free
    auto seq = std::move(queue_.front());
    queue_.pop_front();
    seq->admitted = Clock::now();
    seq->kv = model_->newKvCache(static_cast<int>(need), kPrefillChunk);
    seq->kv_reserved = need;
    kv_used_ += need;
    seq->sampler = std::make_unique<Sampler>(seq->request.sampling, vocab_limit_);
    seq->detok = std::make_unique<StreamingDetokenizer>(*tokenizer_, true);
    seq->stops = std::make_unique<StopMatcher>(seq->request.stop);
    running_.push_back(std::move(seq));
  }
  stats_.running = static_cast<int>(running_.size());  // submit() counts the free slots
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
    s.last_token = choice.token;
  }
}

bool EngineImpl::step() {
  auto now = Clock::now();
  // Cancellations and deadlines first: their KV is freed before anything else runs.
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      Sequence& s = **it;
      if (s.handle->cancelled.load() || now > s.request.deadline) {
        auto seq = std::move(*it);
        it = queue_.erase(it);
        mu_.unlock();
        finish(*seq, "error",
               seq->handle->cancelled.load()
                   ? api::Status(api::ErrorCode::kCancelled, "cancelled")
                   : api::Status(api::ErrorCode::kUpstreamTimeout,
                                 "the request waited in the local engine's queue past its deadline"));
        mu_.lock();
        it = queue_.begin();
      } else {
        ++it;
      }
    }
  }
  admit();
  if (running_.empty()) {
    publishStats();  // cancellations and deadlines above may have freed the last KV
    return false;
  }

  // Build the batch: one token per decoding sequence, prompt chunks within the budget.
  const int64_t vocab = model_->config().vocab;
  std::vector<SeqBatchItem> batch;
  std::vector<Sequence*> owners;
  std::vector<bool> samples;  // whether this item's logits pick the next token
  int prefill_left = kPrefillBudget;
  int prefill_tokens = 0, decode_tokens = 0;
  for (auto& s : running_) {
    const int prompt = static_cast<int>(s->request.prompt.size());
    SeqBatchItem item{};
    item.kv = s->kv.get();
    item.all_logits = false;
    if (s->prefilled < prompt) {
      if (prefill_left <= 0) continue;
      int n = std::min({prompt - s->prefilled, kPrefillChunk, prefill_left});
      item.tokens = s->request.prompt.data() + s->prefilled;
      item.n_tokens = n;
      s->prefilled += n;
      prefill_left -= n;
      prefill_tokens += n;
      samples.push_back(s->prefilled == prompt);
    } else {
      item.tokens = &s->last_token;
      item.n_tokens = 1;
      ++decode_tokens;
      samples.push_back(true);
    }
    batch.push_back(item);
    owners.push_back(s.get());
  }
  logits_.resize(batch.size() * static_cast<size_t>(vocab));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].logits = logits_.data() + i * vocab;

  auto t0 = Clock::now();
  api::Status st = model_->forward(batch);
  double dt = secondsBetween(t0, Clock::now());
  const int step_tokens = prefill_tokens + decode_tokens;
  for (size_t i = 0; i < batch.size() && step_tokens > 0; ++i) {
    owners[i]->compute_s += dt * batch[i].n_tokens / step_tokens;
  }
  if (!st.ok()) {
    for (Sequence* s : owners) finish(*s, "error", st);
  } else {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!samples[i] || owners[i]->done) continue;
      TokenChoice c = owners[i]->sampler->sample(batch[i].logits, static_cast<int32_t>(vocab));
      emit(*owners[i], c);
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
  stats_.kv_tokens_used = kv_used_;
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
  auto tokenizer = Tokenizer::loadDir(options.model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto model = Gemma3Model::load(options.model_dir, options.threads);
  if (!model.ok()) return model.status();
  return std::unique_ptr<Engine>(new EngineImpl(options, std::move(model).value(),
                                                std::move(tokenizer).value()));
}

}  // namespace engine
