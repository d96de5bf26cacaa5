// OpenAIWire: OpenAI's chat-completions wire format, spoken by OpenAI itself and by every
// OpenAI-compatible server (OpenRouter, vLLM, Together, Groq, another Switchyard). The request
// passes through as parsed (unknown top-level fields included); streams always ask for usage,
// which the ledger needs even when the client did not.
//
// Pass-through of OpenAI's Responses API (OpenAIWireConfig::responses): a request read from
// POST /v1/responses (sentAsResponses) goes to {base_url}/responses as the client's body with
// only the gateway's members set (nativeResponsesBody): the routed model, stream, the
// effective output cap, and `store: false`, the conversation in full (the gateway resolved
// previous_response_id from its own store). The gateway's store and budget own the
// conversation: an id stored upstream would be unreachable through the model's other targets
// (fallbacks, Anthropic, Gemini, the local engine) and through another key of the upstream,
// and its continuation would spend outside the ledger. Reasoning, `include`, built-in tools
// and fields added later reach OpenAI unchanged. The answer (a Response object, or its event
// stream) is read for the typed answer and its usage (input_tokens with their cached_tokens,
// output_tokens with their reasoning_tokens), which the ledger meters as for chat, and kept
// beside it (ChatResponse::native, ChatChunk::native) for the Responses entrance to hand on.
// Any other request, and every request to a server without `responses`, is sent as chat
// completions; a Responses request is then refused when it holds what only the Responses API
// carries (api::refuseUntranslated).
#pragma once

#include <memory>
#include <string>

#include "routers/wire_format.h"

namespace routers {

struct OpenAIWireConfig {
  std::string base_url = "https://api.openai.com/v1";  // requests go to base_url + "/chat/completions"
  std::string api_key;  // sent as "Authorization: Bearer"; "" sends none
  // The server speaks OpenAI's Responses API (POST {base_url}/responses): Responses requests
  // are passed through to it (see above) instead of being translated into chat completions.
  bool responses = false;
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

// True when `request` was read from a Responses API body (native_api api::kResponsesApi)
// and `config` speaks that API: it is sent natively.
bool sentAsResponses(const api::ChatRequest& request, const OpenAIWireConfig& config);

// The client's Responses body with `model` (the upstream's name), `stream` (true, or absent),
// `store` false and `max_output_tokens` (the effective cap, which a budget may have lowered)
// set, `previous_response_id` and `background` removed (the gateway resolves and runs them),
// every other byte as it came. kInternal when the request carries no Responses body.
api::StatusOr<std::string> nativeResponsesBody(const api::ChatRequest& request);

// Reads a Response object (a non-streamed answer of the Responses API): `message` items'
// output_text into the content (refusal parts into `refusal`), `function_call` items into
// tool_calls, `reasoning` items' summary text into reasoning_content; finish_reason "length"
// for status incomplete at max_output_tokens, "content_filter" at content_filter,
// "tool_calls" with calls, else "stop"; usage as for chat. kUpstreamError naming what is
// wrong, or the response's own error for status "failed".
api::StatusOr<api::ChatResponse> fromResponsesObject(const api::Json& body);

// A decoder of the Responses API's event stream (response.created ... response.completed)
// into chat chunks, each chunk carrying the events it stands for (ChatChunk::native). An
// `error` or `response.failed` event ends the call with kUpstreamError; a stream that ends
// before response.completed (or response.incomplete) is kUpstreamError.
std::unique_ptr<StreamDecoder> newResponsesStreamDecoder(const api::ChatRequest& request);

}  // namespace routers
