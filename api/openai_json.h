// The OpenAI chat-completions wire format: JSON bodies <-> the typed schema of api/chat.h.
//
// Three directions, three attitudes:
//  - Client requests (parseChatRequest) are validated strictly, once, at the edge; every
//    problem becomes kInvalidRequest with OpenAI's wording and the field's path in `param`.
//  - Our own output (serialize*) has the exact shape OpenAI sends, so that the official SDKs
//    parse it unchanged. It is written directly into a string (no JSON tree), always valid
//    UTF-8: bytes that are not become U+FFFD.
//  - Upstream bodies (parseChatResponse, parseChatChunk) are read leniently: unknown fields
//    are ignored, but a broken shape (no choices array, a message that is not an object)
//    is kUpstreamError naming what was wrong.
// None of these functions throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"

namespace api {

// Deepest JSON nesting accepted in a client request (objects and arrays), so that no later
// walk of a kept JSON value (tool parameters, pass-through fields) can exhaust the stack.
inline constexpr int kMaxRequestJsonDepth = 128;
// Most values (objects, arrays, members, elements together) accepted in a client's JSON
// document: bounds the memory its tree takes (a 4 MB body of tiny values would otherwise
// become hundreds of MB of nodes).
inline constexpr int64_t kMaxRequestJsonValues = 100000;

struct JsonBounds {
  int max_depth = kMaxRequestJsonDepth;
  int64_t max_values = kMaxRequestJsonValues;
};

// The one check of a JSON document's shape before it is built: a single pass over the text
// (strings skipped), so that an over-deep or over-large document is refused without parsing
// it. Ok, or kInvalidRequest whose message names the bound exceeded. Malformed JSON is left
// for the parser to report.
Status checkJsonBounds(std::string_view text, JsonBounds bounds = {});

// checkJsonBounds, then parses. Fails with kInvalidRequest: over a bound, or not JSON (with
// OpenAI's wording). Every client JSON body (chat, feedback, admin) is read through this.
StatusOr<Json> parseBoundedJson(std::string_view text, JsonBounds bounds = {});

// Parses and validates a POST /v1/chat/completions body.
// Fails with kInvalidRequest: malformed JSON (param empty), a top level that is not an
// object, a missing or mistyped field, or a value out of OpenAI's range; param() names the
// field as OpenAI does ("messages[2].content", "tools[1].function.name") and openaiCode()
// carries OpenAI's error code ("invalid_type", "missing_required_parameter", ...).
// null is read as "absent" for every optional field. Top-level fields the schema does not
// model are kept verbatim in ChatRequest::extra.
StatusOr<ChatRequest> parseChatRequest(std::string_view body);

// Serialises a request for an OpenAI-compatible upstream: every field that is set, under
// OpenAI's names, with `extra` merged in (typed fields win a clash). Content keeps the form
// it arrived in (string or parts). stream_options only when stream and include_usage are
// both true. Strings are copied as they are: parsed requests hold valid UTF-8, but text a
// caller added may not, so dump with Json::error_handler_t::replace.
Json chatRequestToJson(const ChatRequest& req);

// A non-streamed response body ("object": "chat.completion").
std::string serializeChatResponse(const ChatResponse& r);

// One streamed chunk ("object": "chat.completion.chunk"), without SSE framing. When
// `include_usage` (the client's stream_options.include_usage), every chunk carries "usage":
// null, except a chunk with usage set, which carries the usage object (OpenAI sends it last,
// with "choices": []). Without it, no chunk has a "usage" key.
std::string serializeChatChunk(const ChatChunk& c, bool include_usage);

// {"error":{"message","type","param","code"}}: type from openaiType(), param and code null
// when empty.
std::string serializeError(const Status& s);

// Reads an upstream's non-streamed body. Fails with kUpstreamError.
StatusOr<ChatResponse> parseChatResponse(std::string_view body);

// Reads one upstream SSE `data:` payload (not "[DONE]"). Fails with kUpstreamError.
StatusOr<ChatChunk> parseChatChunk(std::string_view data);

// A human-readable message from an upstream error body: error.message of OpenAI's shape
// (and a few common variants), else the body itself; whitespace-trimmed and at most 500
// bytes (cut on a UTF-8 boundary). Empty for an empty body.
std::string upstreamErrorMessage(std::string_view body);

// "null", "a boolean", "an integer", "a decimal", "a string", "an array", "an object": the
// words validation errors use for what a value is.
std::string_view describeJsonType(const Json& j);

// Appends `s` to `out` as a JSON string literal (quotes included). Control characters,
// quotes and backslashes are escaped; invalid UTF-8 becomes U+FFFD (one per maximal
// invalid subsequence, as the Unicode standard recommends).
void appendJsonString(std::string& out, std::string_view s);

}  // namespace api
