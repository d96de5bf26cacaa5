// OpenAI's Responses API (POST /v1/responses) as a client-facing wire format: the
// request read into the one typed request (api::ChatRequest), the answer written as a Response
// object, and streams as the Responses event sequence with sequence numbers.
//
// Request mapping: `instructions` -> a leading system message; `input` as a string (one user
// message) or items: messages (role user/assistant/system/developer; content a string or
// input_text / input_image / output_text parts), function_call items -> an assistant turn's
// tool_calls, function_call_output items -> tool messages. Function `tools`, `tool_choice`,
// `parallel_tool_calls`, `text.format` (text, json_object, json_schema) -> response_format,
// `max_output_tokens`, `temperature`, `top_p`, `reasoning.effort` -> reasoning_effort,
// `metadata`, `user`. `store`, `background` and `previous_response_id` are the gateway's
// (gateway/responses.cpp stores responses, runs background ones, and replaces
// previous_response_id by the stored conversation before this parser runs; here it is a 400
// naming it).
//
// Pass-through: the body itself goes with the typed request (ChatRequest::native_body,
// native_api kResponsesApi), and a target that speaks the Responses API (OpenAI,
// routers/openai_wire.h) is sent that body with only the gateway's members set, so that
// what the typed request cannot carry reaches it unchanged: built-in tools (web_search,
// file_search, ...), other input item and content part types, and top-level fields the
// typed request does not model (service_tier, prompt_cache_key, safety_identifier, fields
// added later) are kept in ChatRequest::extra under their param ("tools[1]", "input[3]",
// "service_tier"), and a target that translates refuses them with a 400 naming them
// (refuseUntranslated; Anthropic and Gemini refuse any extra field). `include`,
// `truncation`, `text.verbosity` and `reasoning.summary` reach a native target and are left
// out of a translation, as are `reasoning`, `web_search_call` and `file_search_call` input
// items (the upstream's own work, which the answer after them already reflects).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"

namespace api {

// ChatRequest::native_api of a request read from a /v1/responses body.
inline constexpr std::string_view kResponsesApi = "openai.responses";

// Parses and validates a POST /v1/responses body; kInvalidRequest naming the field
// ("input[2].content[0].type") in OpenAI's error shape.
StatusOr<ChatRequest> parseResponsesRequest(std::string_view body);

// For a request read from a /v1/responses body that goes to a target translating it (not the
// Responses API): kInvalidRequest naming the first member only the Responses API carries
// (see above); OK for any other request.
Status refuseUntranslated(const ChatRequest& request);

// A Response object the upstream's Responses API sent (`upstream`), with the members the
// gateway owns set: `id` (the gateway's, so that GET / DELETE and previous_response_id
// find it in the gateway's store), `model` (as the client named it), `store`,
// `previous_response_id` and `background` as the client sent them (the upstream was sent
// store false, the whole conversation, and no background: the gateway runs it). Every other
// byte as it came. kUpstreamError when it is not an object.
StatusOr<std::string> ownedResponse(std::string_view upstream, const Json& request,
                                    const std::string& id, const std::string& model);

// `input` (a string or items) as input items: a string is one user message.
Json inputItems(const Json& input);

// The Response object for a finished answer. `request` is the client's body (its settings are
// echoed as OpenAI echoes them); `id` is "resp_..."; `model` the model as the client named it.
std::string serializeResponse(const ChatResponse& r, const Json& request, const std::string& id,
                              const std::string& model, int64_t created_at);

// A Response object without output, for a response that has not finished (`status`
// "queued", "in_progress", "cancelled") or failed before answering ("failed", with `error`
// {code, message}; null otherwise).
std::string pendingResponse(const Json& request, const std::string& id, const std::string& model,
                            int64_t created_at, std::string_view status, const Json& error = {});

// Turns a stream of chat chunks into the Responses events: response.created,
// response.in_progress; per message output_item.added, content_part.added,
// output_text.delta..., output_text.done, content_part.done, output_item.done; per function
// call output_item.added, function_call_arguments.delta..., function_call_arguments.done,
// output_item.done; then response.completed (or response.incomplete at max_output_tokens).
// Every event carries its sequence_number. Not thread-safe: one per stream.
class ResponsesStreamWriter {
 public:
  ResponsesStreamWriter(Json request, std::string id, std::string model, int64_t created_at);

  // A chunk that carries the upstream's own Responses events (ChatChunk::native) switches
  // the writer to handing those on: in their order, sequence numbers kept, the `response`
  // object of lifecycle events (response.created ... response.completed) made the gateway's
  // (ownedResponse's members).
  std::string chunk(const ChatChunk& c);
  // A native stream ends with `native`, the upstream's events after the last chunk.
  std::string finish(const std::optional<Usage>& usage, std::string_view native = {});
  // An `error` event, then response.failed: the stream broke after it began (numbered on
  // from the upstream's last event in a native stream).
  std::string error(const Status& s);
  // The Response object that finish() sent (null before).
  const Json& finalResponse() const { return final_; }

 private:
  std::string event(std::string_view type, Json data);
  std::string start();
  std::string closeItem();
  std::string openText();
  std::string toolDelta(const ToolCallDelta& d);
  std::string nativeEvents(std::string_view events);

  Json request_;
  std::string id_, model_;
  int64_t created_at_;
  int64_t seq_ = 0;
  bool started_ = false;
  Json output_ = Json::array();  // finished items
  Json item_;                    // the open item (null when none)
  int tool_index_ = -1;
  std::string finish_reason_;
  Json final_;
  bool native_ = false;  // the upstream's own events are handed on
};

}  // namespace api
