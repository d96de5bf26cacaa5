#include "routers/local_provider.h"

#include <chrono>
#include <mutex>
#include <random>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"

namespace routers {
namespace {

std::string newCompletionId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = "chatcmpl-";
  for (int i = 0; i < 29; ++i) id += kAlphabet[rng() % 62];
  return id;
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

api::TokenLogprob toLogprob(const engine::TokenEvent& ev) {
  api::TokenLogprob lp;
  lp.token = ev.token_text;
  lp.logprob = ev.logprob;
  for (const auto& t : ev.top) lp.top_logprobs.push_back(api::TopLogprob{t.text, t.logprob});
  return lp;
}

// Translates engine events into OpenAI chunks or one response.
class LocalCall : public ProviderCall,
                  public engine::TokenSink,
                  public std::enable_shared_from_this<LocalCall> {
 public:
  LocalCall(std::shared_ptr<ChatSink> sink, std::string model, bool stream, bool logprobs)
      : sink_(std::move(sink)),
        model_(std::move(model)),
        stream_(stream),
        logprobs_(logprobs),
        id_(newCompletionId()),
        created_(unixNow()) {}

  void setHandle(std::shared_ptr<engine::GenerationHandle> h) {
    std::lock_guard<std::mutex> lock(mu_);
    handle_ = std::move(h);
    if (cancelled_) handle_->cancel();
  }

  void cancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (handle_) handle_->cancel();
  }

  void onToken(const engine::TokenEvent& ev) override {
    sink_->onTokenStats(ev.logprob, ev.entropy);
    if (!stream_) {
      text_ += ev.text;
      if (logprobs_) logprobs_list_.push_back(toLogprob(ev));
      return;
    }
    if (!sent_role_) sendRole();
    if (ev.text.empty() && !logprobs_) return;
    api::ChatChunk c = chunk();
    api::ChunkChoice& choice = c.choices.emplace_back();
    choice.delta.content = ev.text;
    if (logprobs_) choice.logprobs = std::vector<api::TokenLogprob>{toLogprob(ev)};
    sink_->onChunk(std::move(c));
  }

  void onFinish(const engine::FinishEvent& ev) override {
    if (!ev.status.ok()) {
      sink_->onFinish(ev.status);
      return;
    }
    api::Usage usage;
    usage.prompt_tokens = ev.prompt_tokens;
    usage.completion_tokens = ev.completion_tokens;
    usage.total_tokens = ev.prompt_tokens + ev.completion_tokens;
    usage.engine_compute_s = ev.timings.compute_s;
    if (stream_) {
      if (!sent_role_) sendRole();
      if (!ev.text.empty()) {
        api::ChatChunk c = chunk();
        c.choices.emplace_back().delta.content = ev.text;
        sink_->onChunk(std::move(c));
      }
      api::ChatChunk last = chunk();
      last.choices.emplace_back().finish_reason = ev.finish_reason;
      sink_->onChunk(std::move(last));
      api::ChatResponse summary;
      summary.id = id_;
      summary.created = created_;
      summary.model = model_;
      summary.usage = usage;
      sink_->onFinish(std::move(summary));
      return;
    }
    api::ChatResponse r;
    r.id = id_;
    r.created = created_;
    r.model = model_;
    api::Choice& choice = r.choices.emplace_back();
    choice.message.role = api::Role::kAssistant;
    choice.message.content = api::Content::ofText(text_ + ev.text);
    choice.finish_reason = ev.finish_reason;
    if (logprobs_) choice.logprobs = std::move(logprobs_list_);
    r.usage = usage;
    sink_->onFinish(std::move(r));
  }

 private:
  api::ChatChunk chunk() const {
    api::ChatChunk c;
    c.id = id_;
    c.created = created_;
    c.model = model_;
    return c;
  }
  void sendRole() {
    sent_role_ = true;
    api::ChatChunk c = chunk();
    api::ChunkChoice& choice = c.choices.emplace_back();
    choice.delta.role = api::Role::kAssistant;
    choice.delta.content = "";
    sink_->onChunk(std::move(c));
  }

  std::shared_ptr<ChatSink> sink_;
  const std::string model_;
  const bool stream_, logprobs_;
  const std::string id_;
  const int64_t created_;
  bool sent_role_ = false;
  std::string text_;
  std::vector<api::TokenLogprob> logprobs_list_;

  std::mutex mu_;
  std::shared_ptr<engine::GenerationHandle> handle_;
  bool cancelled_ = false;
};

class FailedCall : public ProviderCall {
 public:
  void cancel() override {}
};

}  // namespace

api::StatusOr<engine::GenerationRequest> toGenerationRequest(const api::ChatRequest& request,
                                                             const engine::Engine& engine,
                                                             Deadline deadline) {
  if (request.n != 1) {
    return api::invalidRequest("The local model returns one choice per request; n must be 1.",
                               "n");
  }
  if (!request.tools.empty()) {
    return api::invalidRequest("The local Gemma 3 model cannot call tools.", "tools");
  }
  if (request.response_format &&
      request.response_format->type != api::ResponseFormat::Type::kText) {
    return api::invalidRequest(
        "The local model cannot guarantee structured output; response_format must be text.",
        "response_format");
  }
  auto prompt_text = engine::renderGemma3Chat(request.messages, true);
  if (!prompt_text.ok()) return prompt_text.status();

  engine::GenerationRequest g;
  // The template writes "<bos>" itself; encoding it as text yields the id once (no double bos).
  g.prompt = engine.tokenizer().encode(*prompt_text, false);
  int room = engine.maxContext() - static_cast<int>(g.prompt.size());
  if (room <= 0) {
    return api::invalidRequest("This model's maximum context length is " +
                                   std::to_string(engine.maxContext()) +
                                   " tokens. However, your messages resulted in " +
                                   std::to_string(g.prompt.size()) + " tokens.",
                               "messages");
  }
  if (auto max = request.maxOutputTokens()) {
    g.max_tokens = static_cast<int>(std::min<int64_t>(*max, room));
  } else {
    g.max_tokens = room;
  }
  g.sampling = engine.defaultSampling();
  if (request.temperature) g.sampling.temperature = static_cast<float>(*request.temperature);
  if (request.top_p) g.sampling.top_p = static_cast<float>(*request.top_p);
  if (request.presence_penalty) {
    g.sampling.presence_penalty = static_cast<float>(*request.presence_penalty);
  }
  if (request.frequency_penalty) {
    g.sampling.frequency_penalty = static_cast<float>(*request.frequency_penalty);
  }
  for (const auto& [id, bias] : request.logit_bias) {
    g.sampling.logit_bias.emplace_back(id, static_cast<float>(bias));
  }
  if (request.seed) {
    g.sampling.has_seed = true;
    g.sampling.seed = static_cast<uint64_t>(*request.seed);
  }
  g.logprobs = request.logprobs;
  g.sampling.top_logprobs = request.logprobs ? request.top_logprobs.value_or(0) : 0;
  g.stop = request.stop;
  g.deadline = deadline;
  return g;
}

LocalProvider::LocalProvider(std::string name, std::string model_name, engine::Engine& engine)
    : name_(std::move(name)), model_name_(std::move(model_name)), engine_(engine) {}

std::shared_ptr<ProviderCall> LocalProvider::chat(const api::ChatRequest& request,
                                                  std::shared_ptr<ChatSink> sink,
                                                  Deadline deadline) {
  auto g = toGenerationRequest(request, engine_, deadline);
  if (!g.ok()) {
    sink->onFinish(g.status());
    return std::make_shared<FailedCall>();
  }
  auto call = std::make_shared<LocalCall>(sink, model_name_, request.stream, request.logprobs);
  auto handle = engine_.submit(std::move(g).value(), call);
  if (!handle.ok()) {
    sink->onFinish(handle.status());
    return std::make_shared<FailedCall>();
  }
  call->setHandle(std::move(handle).value());
  return call;
}

}  // namespace routers
