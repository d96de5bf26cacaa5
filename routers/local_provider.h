// LocalProvider: the embedded Gemma engine as a routers::Provider, so that the cascade,
// retries and fallback chains treat it like any cloud target.
//
// A chat request is rendered with the Gemma 3 chat template, tokenized, and submitted to the
// engine; token events become OpenAI chunks (streamed) or one response, with usage and
// logprobs in OpenAI's format. What Gemma 3 text cannot take (tools, images, n > 1, enforced
// JSON output) is refused with a 400 naming the field.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"
#include "routers/provider.h"

namespace routers {

class LocalProvider : public Provider {
 public:
  // `engine` must outlive the provider and its calls. `model_name` is reported in responses.
  LocalProvider(std::string name, std::string model_name, engine::Engine& engine);

  const std::string& name() const override { return name_; }
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink, Deadline deadline) override;

  engine::Engine& engine() { return engine_; }

 private:
  std::string name_;
  std::string model_name_;
  engine::Engine& engine_;
};

// Builds the engine request for `request` (chat template, tokenization, sampling settings), or
// the 400 that explains why the local model cannot answer it.
api::StatusOr<engine::GenerationRequest> toGenerationRequest(const api::ChatRequest& request,
                                                             const engine::Engine& engine,
                                                             Deadline deadline);

}  // namespace routers
