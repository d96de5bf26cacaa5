// Entrance: one client-facing API in front of the one chat pipeline. The pipeline (admit ->
// plan -> dispatch, gateway/chat.cpp; ChatForwarder) speaks api::ChatRequest and
// api::ChatResponse/ChatChunk only; an entrance reads its API's request body into a
// ChatRequest, and writes answers, stream events and errors in its API's shapes.
//
// Three entrances: OpenAI chat completions (POST /v1/chat/completions), Anthropic Messages
// (POST /v1/messages, gateway/messages.cpp) and OpenAI Responses (POST /v1/responses,
// gateway/responses.cpp).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"
#include "gateway/exchange.h"

namespace gateway {

// Writes one answer in an entrance's wire format. One per request; called from the request's
// sink, one call at a time.
class AnswerWriter {
 public:
  virtual ~AnswerWriter() = default;
  // The body of a complete (non-streamed) answer. `r.model` is already the client's name.
  virtual std::string response(const api::ChatResponse& r) = 0;
  // The framed SSE bytes for one chunk ("" when it carries nothing for this API).
  virtual std::string chunk(const api::ChatChunk& c) = 0;
  // The framed bytes that end a successful stream; `final` carries the usage.
  virtual std::string streamEnd(const api::ChatResponse& final) = 0;
  // The framed bytes that end a stream which broke after it began.
  virtual std::string streamError(const api::Status& s) = 0;
};

class Entrance {
 public:
  virtual ~Entrance() = default;
  // The Authorization value to authenticate with (Anthropic clients send x-api-key).
  virtual std::string credentials(const Exchange& ex) const { return ex.authorization; }
  // Reads and validates the body; kInvalidRequest naming the field.
  virtual api::StatusOr<api::ChatRequest> parse(const Exchange& ex) const = 0;
  // An error response's HTTP status and body.
  virtual int errorStatus(const api::Status& s) const = 0;
  virtual std::string errorBody(const api::Status& s, std::string_view request_id) const = 0;
  // The writer for one admitted request; `model` is the model as the client named it.
  virtual std::unique_ptr<AnswerWriter> writer(const api::ChatRequest& request,
                                               const std::string& model,
                                               const Exchange& ex) const = 0;
  // The same for a request of `team`, once authenticated: an entrance that keeps state per
  // team (stored Responses) reads and writes it here. By default parse() and writer().
  virtual api::StatusOr<api::ChatRequest> parseFor(const Exchange& ex,
                                                   const std::string& team) const {
    return parse(ex);
  }
  virtual std::unique_ptr<AnswerWriter> writerFor(const api::ChatRequest& request,
                                                  const std::string& model, const Exchange& ex,
                                                  const std::string& team) const {
    return writer(request, model, ex);
  }
};

// The OpenAI chat-completions entrance (api/openai_json.h).
const Entrance& openaiEntrance();
// The Anthropic Messages entrance (api/anthropic_messages.h).
const Entrance& messagesEntrance();
// The OpenAI Responses entrance (api/responses.h; gateway/responses.cpp), keeping responses in
// `store` (none: nothing is stored and previous_response_id is unknown).
class ResponseStore;
std::unique_ptr<Entrance> makeResponsesEntrance(ResponseStore* store);
// The Responses entrance's background runs in progress (gateway/responses.cpp).
class BackgroundRuns;
std::shared_ptr<BackgroundRuns> makeBackgroundRuns();

}  // namespace gateway
