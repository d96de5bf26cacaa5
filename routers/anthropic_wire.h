// AnthropicWire: the WireFormat of Anthropic's Messages API (POST {base_url}/messages).
//
// Requests: system and developer messages become the top-level `system`; user, assistant and
// tool messages become strictly alternating user/assistant turns (tool results are user turns
// of tool_result blocks, consecutive same-role turns are merged); max_tokens is always sent.
// A field the Messages API cannot express, with a value that would change the answer (n > 1,
// logprobs, logit_bias, penalties, seed, JSON response formats, temperature above 1, unknown
// top-level fields) is a kInvalidRequest naming it.
//
// Answers: text blocks become message.content, tool_use blocks become tool_calls, thinking
// blocks become reasoning_content (streamed as reasoning_content deltas); stop_reason maps to
// OpenAI's finish_reason (see finishReasonFor); usage counts cache reads and cache writes as
// prompt tokens, reported apart as well.
//
// Pass-through: a request read from Anthropic's own Messages API (sentNatively) is sent as the
// client's body, with only model, max_tokens and stream set (nativeAnthropicBody), and the
// client's anthropic-beta header; its answer keeps the upstream's body (ChatResponse::native)
// or events (ChatChunk::native) beside the translation, for the Messages entrance to hand on
// unchanged: prompt-cache markers, thinking signatures, citations and whatever Anthropic adds
// later arrive as they were.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"
#include "routers/wire_format.h"

namespace routers {

struct AnthropicWireConfig {
  std::string base_url = "https://api.anthropic.com/v1";  // no trailing slash
  std::string api_key;                                    // sent as x-api-key; "" sends none
  std::string version = "2023-06-01";                     // the anthropic-version header
  int64_t default_max_tokens = 4096;  // max_tokens when the request sets none (required there)
};

class AnthropicWire : public WireFormat {
 public:
  explicit AnthropicWire(AnthropicWireConfig config);

  // Fails with kInvalidRequest as toAnthropicRequest does.
  api::StatusOr<WireRequest> encode(const api::ChatRequest& request) const override;

  // Fails with kUpstreamError for a body that is not a Message (or kUnavailable for an
  // overloaded_error body). A Message without `model` takes the request's.
  api::StatusOr<api::ChatResponse> decodeResponse(std::string_view body,
                                                  const api::ChatRequest& request) const override;

  std::unique_ptr<StreamDecoder> newStreamDecoder(const api::ChatRequest& request) const override;

 private:
  AnthropicWireConfig config_;
  std::string url_;
};

// The Messages API request body for `request`. Fails with kInvalidRequest whose param names
// the field at fault ("seed", "messages[2].content[1]", "messages[1].tool_calls[0].function"
// ".arguments", ...).
api::StatusOr<api::Json> toAnthropicRequest(const api::ChatRequest& request,
                                            const AnthropicWireConfig& config);

// True when `request` carries the body of an Anthropic Messages request (native_api
// api::kNativeApi): an Anthropic target gets that body.
bool sentNatively(const api::ChatRequest& request);

// The client's body with model (the upstream's name), max_tokens (the effective cap, which a
// budget may have lowered) and stream set, every other byte as it came. kInternal when the
// request was not sent natively or its body is not a JSON object (it was parsed once).
api::StatusOr<std::string> nativeAnthropicBody(const api::ChatRequest& request,
                                               const AnthropicWireConfig& config);

// The anthropic-beta values a native request forwards: the client's, but for the 1M-token
// context betas (`context-1m-...`), whose long-context prices the price table does not model;
// without them Anthropic refuses prompts beyond the standard context. "" when none is left.
std::string forwardedBetas(std::string_view header);

// True when a natively sent request may write to the 1-hour prompt cache (its body sets a
// cache_control `ttl`): its reservation prices cache writes at cache_write_1h.
bool asksLongCache(const api::ChatRequest& request);

// Reads a Message object (a non-streamed answer). `id` and `content` are required; `model`,
// `stop_reason` and `usage` may be absent (the documentation's own examples omit them) but
// must have the right type when present. created is the current time. Fails with
// kUpstreamError naming the field, or the error's own code for an {"type":"error"} body.
api::StatusOr<api::ChatResponse> fromAnthropicResponse(const api::Json& body);

// OpenAI's finish_reason for an Anthropic stop_reason: end_turn, stop_sequence -> "stop";
// max_tokens, model_context_window_exceeded -> "length"; tool_use -> "tool_calls"; refusal ->
// "content_filter"; pause_turn -> "stop" (a server tool paused a long turn: the answer so far
// is complete as far as OpenAI's vocabulary goes, and the client may send it back to go on);
// anything else (a stop reason added later) -> "stop".
std::string finishReasonFor(std::string_view stop_reason);

}  // namespace routers
