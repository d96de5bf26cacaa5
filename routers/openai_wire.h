// OpenAIWire: OpenAI's chat-completions wire format, spoken by OpenAI itself and by every
// OpenAI-compatible server (OpenRouter, vLLM, Together, Groq, another Switchyard). The request
// passes through as parsed (unknown top-level fields included); streams always ask for usage,
// which the ledger needs even when the client did not.
#pragma once

#include <string>

#include "routers/wire_format.h"

namespace routers {

struct OpenAIWireConfig {
  std::string base_url = "https://api.openai.com/v1";  // requests go to base_url + "/chat/completions"
  std::string api_key;  // sent as "Authorization: Bearer"; "" sends none
};

class OpenAIWire : public WireFormat {
 public:
  explicit OpenAIWire(OpenAIWireConfig config) : config_(std::move(config)) {}

  api::StatusOr<WireRequest> encode(const api::ChatRequest& request) const override;
  api::StatusOr<api::ChatResponse> decodeResponse(
      std::string_view body, const api::ChatRequest& request) const override;
  std::unique_ptr<StreamDecoder> newStreamDecoder(const api::ChatRequest& request) const override;

 private:
  OpenAIWireConfig config_;
};

}  // namespace routers
