// LocalProvider: the embedded Gemma engine as a routers::Provider, so that the cascade,
// retries and fallback chains treat it like any cloud target.
//
// A chat request is rendered with the checkpoint's chat template (engine/chat_template.h; the
// built-in Gemma 3 template when the checkpoint has none), tokenized, and submitted to the
// engine; token events become OpenAI chunks (streamed) or one response, with usage and
// logprobs in OpenAI's format. A thinking model's thought channel (Gemma 4's
// <|channel>thought ... <channel|>) goes to reasoning_content, never to content; its tokens
// are counted in usage.completion_tokens_details.reasoning_tokens and left out of the
// confidence signal (onTokenStats) and of logprobs, which cover the answer only.
// `response_format` json_object / json_schema is enforced by constrained decoding
// (engine/grammar/): the schema is compiled (a 400 names any unsupported keyword) and every
// step's tokens are masked to what keeps the answer valid JSON for it; logprobs are then those of
// the masked distribution. Tools (routers/tool_calls.h) are declared in the prompt in the model's
// own format; calls in the output become tool_calls (finish_reason "tool_calls"), and
// tool_choice required or a named function is enforced by a grammar of the model's call syntax
// whose arguments follow the function's parameters schema. `n` choices share one prefill
// (engine::Engine::submitChoices; choice i samples with seed + i): chunks carry their choice's
// index and finish_reason, usage counts the prompt once and the completion tokens of all choices.
// What the local text model cannot take (images, n above the engine's batch) is refused with a
// 400 naming the field.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/grammar/grammar.h"
#include "engine/grammar/matcher.h"
#include "routers/provider.h"
#include "routers/tool_calls.h"

namespace routers {

// Constrained decoding for one engine: compiled grammars by response_format (an LRU cache) and
// the index of the engine's vocabulary (built on first use, about 0.1 s for Gemma's 262k ids,
// then shared by every request). Thread-safe.
class StructuredOutputs {
 public:
  explicit StructuredOutputs(const engine::Engine& engine, size_t cache_capacity = 64);

  // Sets sampling.grammar (and grammar_vocab) for a json_object or json_schema response_format;
  // nothing for text. kInvalidRequest naming the field for a schema it cannot enforce.
  api::Status apply(const api::ResponseFormat& format, engine::SamplingParams& sampling);
  // Sets the grammar of a tool request: one call to plan.callable when plan.force; with
  // tool_choice auto, a call or the answer `format` asks for, and with a text answer (Gemma 4)
  // free text whose calls are checked (none: that has none); see local_provider.cpp.
  // kInvalidRequest naming tools[i].function.parameters... for a schema it cannot enforce.
  api::Status applyTools(const ToolPlan& plan, const std::optional<api::ResponseFormat>& format,
                         engine::SamplingParams& sampling);

  // Requests whose grammar came from the cache: response_format grammars, tool grammars (both
  // caches are LRU, `cache_capacity` entries each).
  uint64_t formatGrammarHits() const { return cache_.hits(); }
  uint64_t toolGrammarHits() const { return tool_cache_.hits(); }

 private:
  const engine::Engine& engine_;
  engine::grammar::GrammarCache cache_;       // by response_format
  engine::grammar::GrammarCache tool_cache_;  // by tools, tool_choice and response_format
  std::once_flag vocab_once_;
  std::shared_ptr<const engine::grammar::VocabIndex> vocab_;
  std::once_flag tool_vocab_once_;
  std::shared_ptr<const engine::grammar::VocabIndex> tool_vocab_;  // call markers writable
};

class LocalProvider : public Provider {
 public:
  // `engine` must outlive the provider and its calls. `model_name` is reported in responses.
  // `chat_template` is the checkpoint's (engine::ChatTemplate::loadDir); null: the built-in
  // Gemma 3 template.
  LocalProvider(std::string name, std::string model_name, engine::Engine& engine,
                std::shared_ptr<const engine::ChatTemplate> chat_template = nullptr);

  const std::string& name() const override { return name_; }
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink, Deadline deadline) override;

  engine::Engine& engine() { return engine_; }

 private:
  std::string name_;
  std::string model_name_;
  engine::Engine& engine_;
  std::shared_ptr<const engine::ChatTemplate> chat_template_;
  std::unique_ptr<StructuredOutputs> structured_;
};

// Builds the engine request for `request` (chat template, tokenization, sampling settings,
// repetition_penalty and the response_format grammar included), or the 400 that explains why the
// local model cannot answer it. `chat_template` may be null (the built-in Gemma 3 template);
// without `structured`, a response_format other than text is refused.
api::StatusOr<engine::GenerationRequest> toGenerationRequest(
    const api::ChatRequest& request, const engine::Engine& engine, Deadline deadline,
    const engine::ChatTemplate* chat_template = nullptr, StructuredOutputs* structured = nullptr);

}  // namespace routers
