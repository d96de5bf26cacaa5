// GeminiWire: Google's Gemini API as a WireFormat (routers/wire_format.h).
//
// One wire format serves both doors to the same models: Google AI Studio
// (generativelanguage.googleapis.com, an API key in x-goog-api-key) and Vertex AI's publisher
// models (an OAuth access token as a bearer). Both take the same GenerateContentRequest at
// {base}/models/{model}:generateContent, and stream GenerateContentResponse objects, one per
// server-sent event, from {base}/models/{model}:streamGenerateContent?alt=sse.
//
// What does not map one to one:
//  - System and developer messages become `systemInstruction`, one text part each, in order.
//  - Tool results are "user" turns holding functionResponse parts; Gemini names the function
//    instead of echoing an id, so the name is found from the assistant tool call the result
//    answers. Function-call ids are never sent back (Vertex v1 does not take them); Gemini
//    matches results by name and order.
//  - Thinking models attach an opaque `thoughtSignature` to a functionCall part and require
//    it back on the next turn. OpenAI has no field for it, so it rides in the tool call's id:
//    "<id>" + kThoughtSignatureMark + "<signature>". Clients echo ids verbatim; encode()
//    splits the signature off again.
//  - Tool parameters and json_schema response formats are sent as JSON Schema
//    (`parametersJsonSchema`, `responseJsonSchema`), not as Gemini's OpenAPI subset, which
//    rejects common JSON Schema keywords such as additionalProperties.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"
#include "routers/wire_format.h"

namespace routers {

struct GeminiWireConfig {
  // AI Studio: "https://generativelanguage.googleapis.com/v1beta". Vertex AI (vertexBaseUrl()):
  // "https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}"
  // "/publishers/google".
  // Requests go to base_url + "/models/{model}:generateContent" or
  // base_url + "/models/{model}:streamGenerateContent?alt=sse". No trailing slash.
  std::string base_url = "https://generativelanguage.googleapis.com/v1beta";
  // AI Studio: the API key, sent as x-goog-api-key. With `bearer`: an OAuth access token.
  // Empty: no auth header.
  std::string api_key;
  bool bearer = false;  // Vertex AI: send "Authorization: Bearer <api_key>" instead
};

// Separates a tool call's id from the thought signature carried after it.
inline constexpr std::string_view kThoughtSignatureMark = "~ts~";

// The Vertex AI base URL for a project and location ("global" uses aiplatform.googleapis.com).
std::string vertexBaseUrl(const std::string& project, const std::string& location);

class GeminiWire : public WireFormat {
 public:
  explicit GeminiWire(GeminiWireConfig config);

  // Fails with kInvalidRequest (param "model") for a model name that is not URL-path-safe,
  // or with toGeminiRequest()'s errors.
  api::StatusOr<WireRequest> encode(const api::ChatRequest& request) const override;
  // Fails with kUpstreamError: a body that is not JSON, or fromGeminiResponse()'s errors.
  api::StatusOr<api::ChatResponse> decodeResponse(std::string_view body,
                                                  const api::ChatRequest& request) const override;
  std::unique_ptr<StreamDecoder> newStreamDecoder(const api::ChatRequest& request) const override;

 private:
  GeminiWireConfig config_;
};

// The GenerateContentRequest body for `request` (the model goes in the URL, not the body).
// Fails with kInvalidRequest naming the field: a field Gemini cannot express with a value that
// changes the answer (logit_bias, parallel_tool_calls false, an unknown top-level field), a
// content part it cannot carry (file parts, image URLs of unknown type), tool-call arguments
// that are not a JSON object, a tool result whose tool_call_id no earlier call has, or no
// messages besides system ones.
api::StatusOr<api::Json> toGeminiRequest(const api::ChatRequest& request);

// Reads a non-streamed GenerateContentResponse. `model` is the request's, used when the body
// has no modelVersion. Fails with kUpstreamError naming the missing or mistyped field.
api::StatusOr<api::ChatResponse> fromGeminiResponse(const api::Json& body,
                                                    const std::string& model);

}  // namespace routers
