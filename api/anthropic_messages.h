// The Anthropic Messages API as a client-facing wire format: a POST /v1/messages body read
// into the one typed request (api::ChatRequest), and answers, stream events and errors written
// in Anthropic's exact shapes, so that Anthropic's SDKs and Claude Code parse them unchanged.
//
// Request mapping: `system` (string or text blocks) becomes a leading system message; text and
// image blocks become content parts (an image source becomes a data: or https URL);
// assistant tool_use blocks become tool_calls (input dumped to a JSON string); user
// tool_result blocks become tool messages, placed before the rest of that user turn; assistant
// thinking blocks become reasoning_content. tools -> function tools (input_schema as the
// parameters), tool_choice auto/any/tool/none (disable_parallel_tool_use ->
// parallel_tool_calls false), stop_sequences -> stop, metadata.user_id -> user, thinking
// enabled/adaptive -> chat_template_kwargs.enable_thinking (what the local engine reads),
// top_k -> extra (kept for upstreams that take it). The typed request does not carry
// cache_control (prompt caching markers) or the signatures of thinking blocks; the body itself
// goes with it (ChatRequest::native_body, native_api kNativeApi), and an Anthropic target is
// sent that body with only model, max_tokens and stream set by the gateway, so nothing is lost
// there. Server tools and document blocks are a 400 (the typed request cannot express them for
// the other targets).
//
// Unknown top-level fields are a 400 naming them, as Anthropic's API answers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace api {

// ChatRequest::native_api of a request read from a /v1/messages body.
inline constexpr std::string_view kNativeApi = "anthropic.messages";

// Parses and validates a POST /v1/messages body. max_tokens is required (as in Anthropic's
// API). Fails with kInvalidRequest whose param names the field ("messages.1.content.0.source").
StatusOr<ChatRequest> parseMessagesRequest(std::string_view body);
// Parses a POST /v1/messages/count_tokens body: the same fields, without max_tokens and stream.
StatusOr<ChatRequest> parseCountTokensRequest(std::string_view body);

// Anthropic's error.type and HTTP status for a Status: 400 invalid_request_error (and other
// 4xx), 401 authentication_error, 403 permission_error, 404 not_found_error, 413
// request_too_large, 429 rate_limit_error (budgets too), 500 api_error (internal and upstream
// failures), 529 overloaded_error (kUnavailable).
std::string_view anthropicErrorType(const Status& s);
int anthropicHttpStatus(const Status& s);
// {"type":"error","error":{"type":...,"message":...}} (+ "request_id" when not empty).
std::string serializeAnthropicError(const Status& s, std::string_view request_id = {});

// Anthropic's stop_reason for an OpenAI finish_reason: stop -> end_turn, length -> max_tokens,
// tool_calls -> tool_use, content_filter -> refusal.
std::string_view stopReasonFor(std::string_view finish_reason);
// "msg_..." for an answer id (kept when it already is one).
std::string messageIdFor(std::string_view id);

// A non-streamed answer as a Message object; `model` is the model as the client knows it. An
// answer that carries Anthropic's own body (ChatResponse::native) is that body, `model` set.
std::string serializeMessage(const ChatResponse& r, const std::string& model);

// Turns a stream of chat chunks into Anthropic's SSE events (each framed with its "event:"
// line): message_start and a ping first; one content block per thinking run, text run and tool
// call (content_block_start, deltas, content_block_stop); then message_delta (stop_reason and
// usage) and message_stop. Not thread-safe: one per stream.
class MessagesStreamWriter {
 public:
  // `model`: as the client named it; `id`: the message id when no chunk brings one.
  MessagesStreamWriter(std::string model, std::string id)
      : model_(std::move(model)), id_(std::move(id)) {}

  // The events for one chunk (message_start first); "" when the chunk carries nothing. A stream
  // whose first chunk carries Anthropic's own events (ChatChunk::native) is handed on as those
  // events, message_start naming `model`; its other chunks are then written as their events
  // too, and the typed deltas are not written again.
  std::string chunk(const ChatChunk& c);
  // Closes the open block and ends the message: message_delta, message_stop. A native stream
  // ends with `native`, the upstream's events after the last chunk (ChatResponse::native).
  std::string finish(const std::optional<Usage>& usage, std::string_view native = {});
  // An `error` event: the stream broke after it began.
  std::string error(const Status& s);

 private:
  enum class Block { kNone, kThinking, kText, kTool };
  std::string start(const ChatChunk& c);
  std::string open(Block kind, const nlohmann::ordered_json& content_block);
  std::string close();
  std::string toolDelta(const ToolCallDelta& d);
  std::string nativeEvents(const ChatChunk& c);

  std::string model_, id_;
  bool started_ = false;
  bool native_ = false;  // the upstream's own events are handed on
  Block block_ = Block::kNone;
  int index_ = -1;      // the open content block's index
  int tool_index_ = -1;  // the OpenAI tool-call index of the open tool block
  std::string finish_reason_;
};

}  // namespace api
