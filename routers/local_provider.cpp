#include "routers/local_provider.h"

#include "api/responses.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"
#include "routers/tool_calls.h"

namespace routers {
namespace {

std::string newCompletionId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
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

// Gemma 4's tool-call marker tokens: special tokens whose text the detokenizer leaves out.
bool isToolMarker(std::string_view piece) {
  return piece == "<|tool_call>" || piece == "<tool_call|>" || piece == "<|\"|>";
}

// The n choices of one local answer as one call: it numbers chunks by choice, sums usage as
// OpenAI does (the prompt once, the completion tokens of every choice) and finishes the client's
// sink once, when the last choice has finished (or at the first error, cancelling the others).
// Only choice 0 feeds the confidence signal (onTokenStats), so that it stays one sequence's.
class LocalCall : public ProviderCall {
 public:
  LocalCall(std::shared_ptr<ChatSink> sink, std::string model, int n)
      : sink_(std::move(sink)),
        model_(std::move(model)),
        id_(newCompletionId()),
        created_(unixNow()),
        choices_(size_t(n)),
        usages_(size_t(n)) {}

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

  api::ChatChunk chunk() const {
    api::ChatChunk c;
    c.id = id_;
    c.created = created_;
    c.model = model_;
    return c;
  }
  void emit(api::ChatChunk c) {
    std::lock_guard<std::mutex> lock(emit_mu_);
    if (!failed_) sink_->onChunk(std::move(c));
  }
  void tokenStats(int index, const engine::TokenEvent& ev) {
    TokenStats stats;
    stats.logprob = ev.logprob;
    stats.entropy = ev.entropy;
    stats.top1_logprob = ev.top1_logprob;
    stats.top2_logprob = ev.top2_logprob;
    std::lock_guard<std::mutex> lock(emit_mu_);
    if (index == 0 && !failed_) sink_->onTokenStats(stats);
  }
  void fail(api::Status status, double compute_s = 0) {
    {
      std::lock_guard<std::mutex> lock(emit_mu_);
      if (failed_ || finished_ == static_cast<int>(choices_.size())) return;
      failed_ = true;
      sink_->onEngineTime(compute_s);
      sink_->onFinish(std::move(status));
    }
    cancel();
  }
  // A choice's end: its usage, and its whole choice when not streamed.
  void finish(int index, const api::Usage& usage, std::optional<api::Choice> choice) {
    std::lock_guard<std::mutex> lock(emit_mu_);
    if (failed_) return;
    usages_[size_t(index)] = usage;
    if (choice) choices_[size_t(index)] = std::move(*choice);
    if (++finished_ < static_cast<int>(choices_.size())) return;
    api::ChatResponse r;
    r.id = id_;
    r.created = created_;
    r.model = model_;
    if (choices_[0]) {
      for (auto& c : choices_) r.choices.push_back(std::move(*c));
    }
    r.usage = sumUsage();
    sink_->onEngineTime(r.usage->engine_compute_s);
    sink_->onFinish(std::move(r));
  }

 private:
  api::Usage sumUsage() const {
    api::Usage u = usages_[0];  // the prompt (and its cached part) counts once
    for (size_t i = 1; i < usages_.size(); ++i) {
      u.completion_tokens += usages_[i].completion_tokens;
      u.reasoning_tokens += usages_[i].reasoning_tokens;
      u.engine_compute_s += usages_[i].engine_compute_s;
    }
    u.total_tokens = u.prompt_tokens + u.completion_tokens;
    return u;
  }

  std::shared_ptr<ChatSink> sink_;
  const std::string model_;
  const std::string id_;
  const int64_t created_;

  std::mutex emit_mu_;  // one choice's events at a time reach the sink
  bool failed_ = false;
  int finished_ = 0;
  std::vector<std::optional<api::Choice>> choices_;
  std::vector<api::Usage> usages_;

  std::mutex mu_;
  std::shared_ptr<engine::GenerationHandle> handle_;
  bool cancelled_ = false;
};

// Translates one choice's engine events into OpenAI chunks or one choice; with a thinking
// template, the thought channel goes to reasoning_content and only answer tokens feed the
// confidence signal. With tools, the answer goes through a ToolCallParser: its calls become
// tool_calls (streamed as delta.tool_calls fragments: index, id, type and name first, then the
// arguments in pieces).
class ChoiceStream : public engine::TokenSink {
 public:
  ChoiceStream(std::shared_ptr<LocalCall> call, int index, bool stream, bool logprobs,
               const engine::ChatTemplate* chat_template, std::optional<ToolCallParser> tools)
      : call_(std::move(call)),
        index_(index),
        stream_(stream),
        logprobs_(logprobs),
        tools_(std::move(tools)) {
    if (chat_template != nullptr && !chat_template->thoughtStart().empty()) {
      splitter_.emplace(chat_template->thoughtStart(), chat_template->thoughtEnd());
    }
  }

  void onToken(const engine::TokenEvent& ev) override {
    const bool marker = tools_ && ev.text.empty() && isToolMarker(ev.token_text);
    Split out = split(ev.token_text, marker ? std::string_view(ev.token_text) : ev.text);
    std::vector<ToolCallParser::Call> calls = parseTools(out.content);
    if (out.thought) {
      ++reasoning_tokens_;
    } else {
      call_->tokenStats(index_, ev);
    }
    const bool with_logprobs = logprobs_ && !out.thought;
    if (!stream_) {
      text_ += out.content;
      reasoning_ += out.reasoning;
      keepCalls(std::move(calls));
      if (with_logprobs) logprobs_list_.push_back(toLogprob(ev));
      return;
    }
    if (!sent_role_) sendRole();
    sendDelta(out, with_logprobs ? &ev : nullptr);
    sendCalls(calls);
  }

  void onFinish(const engine::FinishEvent& ev) override {
    if (!ev.status.ok()) {
      call_->fail(ev.status, ev.timings.compute_s);
      return;
    }
    Split tail = split({}, ev.text);
    if (splitter_) {
      Split rest = splitter_->flush();
      tail.content += rest.content;
      tail.reasoning += rest.reasoning;
    }
    std::vector<ToolCallParser::Call> calls = parseTools(tail.content);
    if (tools_) {
      ToolCallParser::Output rest = tools_->flush();
      tail.content += rest.content;
      for (auto& c : rest.calls) calls.push_back(std::move(c));
    }
    // OpenAI's reason for an answer that ends in calls.
    const bool called = !calls.empty() || n_calls_ > 0;
    const std::string reason =
        ev.finish_reason == "stop" && called ? "tool_calls" : ev.finish_reason;
    api::Usage usage;
    usage.prompt_tokens = ev.prompt_tokens;
    usage.completion_tokens = ev.completion_tokens;
    usage.cached_prompt_tokens = ev.cached_prompt_tokens;  // prefix-cache hits
    usage.total_tokens = ev.prompt_tokens + ev.completion_tokens;
    usage.reasoning_tokens = reasoning_tokens_;
    usage.engine_compute_s = ev.timings.compute_s;
    if (stream_) {
      if (!sent_role_) sendRole();
      sendDelta(tail, nullptr);
      sendCalls(calls);
      api::ChatChunk last = choiceChunk();
      last.choices.back().finish_reason = reason;
      call_->emit(std::move(last));
      call_->finish(index_, usage, std::nullopt);
      return;
    }
    api::Choice choice;
    choice.index = index_;
    choice.message.role = api::Role::kAssistant;
    keepCalls(std::move(calls));
    std::string content = text_ + tail.content;
    // A message of calls only has content null, as OpenAI's.
    if (!content.empty() || tool_calls_.empty()) {
      choice.message.content = api::Content::ofText(std::move(content));
    }
    choice.message.tool_calls = std::move(tool_calls_);
    std::string reasoning = reasoning_ + tail.reasoning;
    if (!reasoning.empty()) choice.message.reasoning_content = std::move(reasoning);
    choice.finish_reason = reason;
    if (logprobs_) choice.logprobs = std::move(logprobs_list_);
    call_->finish(index_, usage, std::move(choice));
  }

 private:
  using Split = engine::ThoughtSplitter::Output;

  Split split(std::string_view piece, std::string_view text) {
    if (splitter_) return splitter_->feed(piece, text);
    Split out;
    out.content = std::string(text);
    return out;
  }

  // Passes answer text through the tool-call parser (with tools): `content` keeps the text, the
  // calls it completed are returned.
  std::vector<ToolCallParser::Call> parseTools(std::string& content) {
    if (!tools_) return {};
    ToolCallParser::Output parsed = tools_->feed(content);
    content = std::move(parsed.content);
    return std::move(parsed.calls);
  }
  void keepCalls(std::vector<ToolCallParser::Call> calls) {
    for (auto& c : calls) {
      api::ToolCall& call = tool_calls_.emplace_back();
      call.id = newToolCallId();
      call.name = std::move(c.name);
      for (const std::string& piece : c.argument_pieces) call.arguments += piece;
      ++n_calls_;
    }
  }
  // Each call as OpenAI streams it: a fragment with its index, id, type, name and empty
  // arguments, then one fragment per piece of the arguments.
  void sendCalls(const std::vector<ToolCallParser::Call>& calls) {
    for (const auto& call : calls) {
      const int index = n_calls_++;
      api::ToolCallDelta head;
      head.index = index;
      head.id = newToolCallId();
      head.type = "function";
      head.name = call.name;
      head.arguments = "";
      sendToolDelta(std::move(head));
      for (const std::string& piece : call.argument_pieces) {
        api::ToolCallDelta d;
        d.index = index;
        d.arguments = piece;
        sendToolDelta(std::move(d));
      }
    }
  }
  void sendToolDelta(api::ToolCallDelta d) {
    api::ChatChunk c = choiceChunk();
    c.choices.back().delta.tool_calls.push_back(std::move(d));
    call_->emit(std::move(c));
  }

  // A chunk with one (empty) choice of this index.
  api::ChatChunk choiceChunk() const {
    api::ChatChunk c = call_->chunk();
    c.choices.emplace_back().index = index_;
    return c;
  }
  void sendRole() {
    sent_role_ = true;
    api::ChatChunk c = choiceChunk();
    c.choices.back().delta.role = api::Role::kAssistant;
    c.choices.back().delta.content = "";
    call_->emit(std::move(c));
  }
  // One chunk with the answer and/or thought text (and the token's logprobs when `lp`).
  void sendDelta(const Split& out, const engine::TokenEvent* lp) {
    if (out.content.empty() && out.reasoning.empty() && lp == nullptr) return;
    api::ChatChunk c = choiceChunk();
    api::ChunkChoice& choice = c.choices.back();
    if (!out.content.empty() || out.reasoning.empty()) choice.delta.content = out.content;
    if (!out.reasoning.empty()) choice.delta.reasoning_content = out.reasoning;
    if (lp != nullptr) choice.logprobs = std::vector<api::TokenLogprob>{toLogprob(*lp)};
    call_->emit(std::move(c));
  }

  const std::shared_ptr<LocalCall> call_;
  const int index_;
  const bool stream_, logprobs_;
  bool sent_role_ = false;
  std::string text_;
  std::string reasoning_;
  int64_t reasoning_tokens_ = 0;
  std::optional<engine::ThoughtSplitter> splitter_;
  std::vector<api::TokenLogprob> logprobs_list_;
  std::optional<ToolCallParser> tools_;
  std::vector<api::ToolCall> tool_calls_;  // non-streamed answers
  int n_calls_ = 0;
};

class FailedCall : public ProviderCall {
 public:
  void cancel() override {}
};

}  // namespace

StructuredOutputs::StructuredOutputs(const engine::Engine& engine, size_t cache_capacity)
    : engine_(engine), cache_(cache_capacity), tool_cache_(cache_capacity) {}

namespace {

// OpenAI's response_format object of `format` (null for text).
api::Json responseFormatWire(const api::ResponseFormat& format) {
  switch (format.type) {
    case api::ResponseFormat::Type::kText:
      break;
    case api::ResponseFormat::Type::kJsonObject:
      return {{"type", "json_object"}};
    case api::ResponseFormat::Type::kJsonSchema:
      return {{"type", "json_schema"}, {"json_schema", format.json_schema}};
  }
  return nullptr;
}

}  // namespace

api::Status StructuredOutputs::apply(const api::ResponseFormat& format,
                                     engine::SamplingParams& sampling) {
  if (format.type == api::ResponseFormat::Type::kText) return api::Status();
  auto grammar = cache_.get(responseFormatWire(format), {}, &format.schema_order);
  if (!grammar.ok()) return grammar.status();
  std::call_once(vocab_once_, [this] {
    vocab_ = engine::grammar::VocabIndex::fromTokenizer(engine_.tokenizer(), engine_.eosIds());
  });
  sampling.grammar = std::move(grammar).value();
  sampling.grammar_vocab = vocab_;
  return api::Status();
}

api::Status StructuredOutputs::applyTools(const ToolPlan& plan,
                                          const std::optional<api::ResponseFormat>& format,
                                          engine::SamplingParams& sampling) {
  // tool_choice auto (and none) let the model answer in text. A response_format applies to that
  // text (OpenAI's reading): with auto, the answer is then a call or such text. Without one,
  // Gemma 4's text is free but each <|tool_call> in it must go on as a valid call (none: may
  // not appear); Gemma 3's calls are plain JSON text, which only the reader checks.
  const bool text_format = !format || format->type == api::ResponseFormat::Type::kText;
  if (!plan.parse && !text_format) return apply(*format, sampling);
  std::shared_ptr<const engine::grammar::Grammar> answer;
  if (!plan.force && !text_format) {
    engine::SamplingParams text;
    if (api::Status st = apply(*format, text); !st.ok()) return st;
    answer = std::move(text.grammar);
  }
  if (!plan.force && text_format && plan.syntax != engine::grammar::ToolSyntax::kGemma4) {
    return api::Status();
  }
  constexpr int kMaxCalls = 16;  // parallel calls in one answer
  int max_calls = plan.parallel ? kMaxCalls : 1;
  if (!plan.parse) max_calls = 0;
  // Compiled once per distinct tools, tool_choice, parallel_tool_calls and response_format.
  const std::string key = engine::grammar::toolGrammarKey(
      plan.callable, plan.syntax, plan.force || answer ? -1 : max_calls,
      answer ? engine::grammar::responseFormatKey(responseFormatWire(*format), {},
                                                  &format->schema_order)
             : "");
  auto grammar = tool_cache_.getOrCompile(key, [&] {
    return plan.force || answer
               ? engine::grammar::compileToolCalls(plan.callable, plan.syntax, answer)
               : engine::grammar::compileTextWithToolCalls(plan.callable, max_calls);
  });
  if (!grammar.ok()) return grammar.status();
  std::call_once(tool_vocab_once_, [this] {
    // Gemma 4 writes its call markers, its string delimiter (arguments in its own syntax) and
    // its thought channel's markers as special tokens (free text around calls may think); other
    // vocabularies have none of them.
    tool_vocab_ = engine::grammar::VocabIndex::fromTokenizer(
        engine_.tokenizer(), engine_.eosIds(),
        {"<|tool_call>", "<tool_call|>", "<|\"|>", "<|channel>", "<channel|>"});
  });
  sampling.grammar = std::move(grammar).value();
  sampling.grammar_vocab = tool_vocab_;
  return api::Status();
}

namespace {

// The grammar of a request's tools and response_format, if any (see applyTools).
api::Status applyGrammar(const api::ChatRequest& request, const ToolPlan& plan,
                         StructuredOutputs* structured, engine::SamplingParams& sampling) {
  if (structured == nullptr) return api::Status();
  if (!plan.callable.empty()) {
    return structured->applyTools(plan, request.response_format, sampling);
  }
  if (request.response_format) return structured->apply(*request.response_format, sampling);
  return api::Status();
}

}  // namespace

api::StatusOr<engine::GenerationRequest> toGenerationRequest(
    const api::ChatRequest& request, const engine::Engine& engine, Deadline deadline,
    const engine::ChatTemplate* chat_template, StructuredOutputs* structured) {
  if (api::Status s = api::refuseUntranslated(request); !s.ok()) return s;
  auto plan = planTools(request, chat_template);
  if (!plan.ok()) return plan.status();
  if (request.response_format &&
      request.response_format->type != api::ResponseFormat::Type::kText && !structured) {
    return api::invalidRequest(
        "The local model cannot guarantee structured output; response_format must be text.",
        "response_format");
  }
  auto prompt_text = engine::renderChatPrompt(chat_template, toolPromptRequest(request, *plan));
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
  // The checkpoint's generation_config.json decides how to sample only for a request that sets
  // neither temperature nor top_p; one that sets either gets OpenAI's defaults for the rest
  // (temperature 1, top_p 1, no top-k). Penalties, logit_bias and seed do not count.
  const bool own_sampling = request.temperature.has_value() || request.top_p.has_value();
  g.sampling = own_sampling ? engine::SamplingParams{} : engine.defaultSampling();
  if (request.temperature) g.sampling.temperature = static_cast<float>(*request.temperature);
  if (request.top_p) g.sampling.top_p = static_cast<float>(*request.top_p);
  if (request.presence_penalty) {
    g.sampling.presence_penalty = static_cast<float>(*request.presence_penalty);
  }
  if (request.frequency_penalty) {
    g.sampling.frequency_penalty = static_cast<float>(*request.frequency_penalty);
  }
  if (request.repetition_penalty) {
    g.sampling.repetition_penalty = static_cast<float>(*request.repetition_penalty);
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
  if (api::Status st = applyGrammar(request, *plan, structured, g.sampling); !st.ok()) return st;
  g.stop = request.stop;
  g.deadline = deadline;
  return g;
}

LocalProvider::LocalProvider(std::string name, std::string model_name, engine::Engine& engine,
                             std::shared_ptr<const engine::ChatTemplate> chat_template)
    : name_(std::move(name)),
      model_name_(std::move(model_name)),
      engine_(engine),
      chat_template_(std::move(chat_template)),
      structured_(std::make_unique<StructuredOutputs>(engine)) {}

std::shared_ptr<ProviderCall> LocalProvider::chat(const api::ChatRequest& request,
                                                  std::shared_ptr<ChatSink> sink,
                                                  Deadline deadline) {
  auto g = toGenerationRequest(request, engine_, deadline, chat_template_.get(), structured_.get());
  if (!g.ok()) {
    sink->onFinish(g.status());
    return std::make_shared<FailedCall>();
  }
  const int n = std::max(1, request.n);
  auto call = std::make_shared<LocalCall>(sink, model_name_, n);
  auto plan = planTools(request, chat_template_.get());
  std::vector<std::shared_ptr<engine::TokenSink>> choices;
  for (int i = 0; i < n; ++i) {
    std::optional<ToolCallParser> tools;
    if (plan.ok() && plan->parse) {
      std::vector<std::string> names;
      for (const auto& t : plan->callable) names.push_back(t.name);
      tools.emplace(plan->syntax, std::move(names), plan->parallel);
    }
    choices.push_back(std::make_shared<ChoiceStream>(call, i, request.stream, request.logprobs,
                                                     chat_template_.get(), std::move(tools)));
  }
  auto handle = engine_.submitChoices(std::move(g).value(), std::move(choices));
  if (!handle.ok()) {
    sink->onFinish(handle.status());
    return std::make_shared<FailedCall>();
  }
  call->setHandle(std::move(handle).value());
  return call;
}

}  // namespace routers
