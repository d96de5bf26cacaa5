// WireFormat: how one cloud API carries a chat request and its answer over HTTP.
//
// Every cloud provider is one CloudProvider (routers/cloud_provider.h) running one WireFormat:
// the provider owns the HTTP call, timeouts, size limits and error mapping; the wire format
// only translates. encode() turns an api::ChatRequest into the API's request (URL, auth
// headers, JSON body); decodeResponse() reads a non-streamed 200 body back into an
// api::ChatResponse; a StreamDecoder turns the API's server-sent events into OpenAI chunks as
// they arrive.
//
// Translation is exact or refused: a request field the target API cannot express, with a
// value that would change the answer, is a kInvalidRequest naming the field (`param`), never
// silently dropped. Fields left at their neutral value (presence_penalty 0, n 1, ...) pass.
//
// Errors from decoding are kUpstreamError with a message that names what was wrong ("missing
// 'content' in message_start"); the provider prefixes the upstream's name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/chat.h"
#include "api/sse.h"
#include "api/status.h"

namespace routers {

struct WireRequest {
  std::string url;  // absolute, query included
  std::vector<std::pair<std::string, std::string>> headers;  // auth and API-version headers
  std::string body;                                          // JSON
};

// A pass-through decoder holds the upstream's events that produced no chunk until the first
// chunk goes (so that a fallback may still take over); an upstream that sends more than this
// before answering anything is refused instead of held.
inline constexpr size_t kMaxNativeHeldBytes = size_t{1} << 20;

class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;

  // One event of the upstream's stream. Appends the OpenAI chunks it stands for to `out`
  // (possibly none: pings, usage-only events). Chunks carry no `usage`; the decoder keeps
  // it for finish(). A non-OK status (malformed event, an error event from the upstream)
  // ends the call with that status.
  virtual api::Status onEvent(const api::SseEvent& event, std::vector<api::ChatChunk>& out) = 0;

  // The body ended cleanly. Returns the summary the provider hands to ChatSink::onFinish
  // (id, created, model, usage when reported; no choices), or kUpstreamError when the stream
  // stopped before the upstream said it was finished.
  virtual api::StatusOr<api::ChatResponse> finish() = 0;
};

class WireFormat {
 public:
  virtual ~WireFormat() = default;

  // Translates `request`, whose `model` is already the upstream's model name.
  virtual api::StatusOr<WireRequest> encode(const api::ChatRequest& request) const = 0;

  // Reads a non-streamed answer (HTTP 200 body) for `request`.
  virtual api::StatusOr<api::ChatResponse> decodeResponse(
      std::string_view body, const api::ChatRequest& request) const = 0;

  // A decoder for one streamed answer to `request`.
  virtual std::unique_ptr<StreamDecoder> newStreamDecoder(
      const api::ChatRequest& request) const = 0;
};

}  // namespace routers
