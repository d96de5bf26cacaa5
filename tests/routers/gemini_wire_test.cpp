// GeminiWire: OpenAI requests into Gemini's GenerateContentRequest, Gemini's
// GenerateContentResponse (whole or streamed) back into OpenAI responses and chunks. Bodies
// on the Gemini side follow the shapes of Google's API reference (AI Studio v1beta and
// Vertex AI v1).
#include "routers/gemini_wire.h"

#include <gtest/gtest.h>

#include <ctime>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/openai_json.h"
#include "api/sse.h"

namespace routers {
namespace {

using api::ErrorCode;
using api::Json;

api::ChatRequest request(std::string_view openai_body) {
  api::StatusOr<api::ChatRequest> r = api::parseChatRequest(openai_body);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : api::ChatRequest{};
}

// The Gemini body for an OpenAI request body.
Json gemini(std::string_view openai_body) {
  api::StatusOr<Json> body = toGeminiRequest(request(openai_body));
  EXPECT_TRUE(body.ok()) << body.status().message();
  return body.ok() ? std::move(body).value() : Json();
}

// The 400 an OpenAI request body is refused with.
api::Status refusal(std::string_view openai_body) {
  api::StatusOr<Json> body = toGeminiRequest(request(openai_body));
  EXPECT_FALSE(body.ok()) << (body.ok() ? body->dump() : "");
  if (body.ok()) return api::Status();
  EXPECT_EQ(body.status().code(), ErrorCode::kInvalidRequest);
  return body.status();
}

api::ChatResponse response(std::string_view gemini_body,
                           const std::string& model = "gemini-2.5-flash") {
  api::StatusOr<api::ChatResponse> r = fromGeminiResponse(Json::parse(gemini_body), model);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : api::ChatResponse{};
}

api::Status responseError(std::string_view body) {
  GeminiWire wire(GeminiWireConfig{});
  api::ChatRequest req;
  req.model = "gemini-2.5-flash";
  api::StatusOr<api::ChatResponse> r = wire.decodeResponse(body, req);
  EXPECT_FALSE(r.ok()) << body;
  if (r.ok()) return api::Status();
  EXPECT_EQ(r.status().code(), ErrorCode::kUpstreamError);
  return r.status();
}

bool mentions(const api::Status& s, std::string_view what) {
  return s.message().find(what) != std::string::npos;
}

api::SseEvent event(std::string data) {
  api::SseEvent e;
  e.data = std::move(data);
  return e;
}

constexpr std::string_view kUser = R"({"role": "user", "content": "Hello"})";

std::string withMessages(std::string_view messages, std::string_view more = "") {
  std::string body = R"({"model": "gemini-2.5-flash", "messages": [)" + std::string(messages) + "]";
  if (!more.empty()) body += ", " + std::string(more);
  return body + "}";
}

// ---- requests: conversation ------------------------------------------------------------------

TEST(GeminiRequest, TextMessageBecomesOneUserContent) {
  Json body = gemini(R"({"model": "gemini-2.5-flash",
      "messages": [{"role": "user", "content": "Write a story about a magic backpack."}]})");
  EXPECT_EQ(body, Json::parse(R"({"contents": [
      {"role": "user", "parts": [{"text": "Write a story about a magic backpack."}]}]})"));
}

TEST(GeminiRequest, SystemAndDeveloperMessagesBecomeSystemInstructionInOrder) {
  Json body = gemini(withMessages(R"(
      {"role": "system", "content": "You are a cat. Your name is Neko."},
      {"role": "developer", "content": [{"type": "text", "text": "Answer in one line."}]},
      {"role": "user", "content": "Good morning! How are you?"})"));
  EXPECT_EQ(body["systemInstruction"], Json::parse(R"({"parts": [
      {"text": "You are a cat. Your name is Neko."}, {"text": "Answer in one line."}]})"));
  EXPECT_EQ(body["contents"], Json::parse(R"([
      {"role": "user", "parts": [{"text": "Good morning! How are you?"}]}])"));
}

TEST(GeminiRequest, MultiTurnMapsRolesAndMergesConsecutiveTurns) {
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "Hello"},
      {"role": "assistant", "content": "Great to meet you. What would you like to know?"},
      {"role": "user", "content": "I have two dogs in my house."},
      {"role": "user", "content": [{"type": "text", "text": "How many paws are in my house?"}]})"));
  EXPECT_EQ(body, Json::parse(R"({"contents": [
      {"role": "user", "parts": [{"text": "Hello"}]},
      {"role": "model", "parts": [{"text": "Great to meet you. What would you like to know?"}]},
      {"role": "user", "parts": [{"text": "I have two dogs in my house."},
                                 {"text": "How many paws are in my house?"}]}]})"));
}

TEST(GeminiRequest, EmptyTextIsNotSent) {
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": ""},
      {"role": "user", "content": [{"type": "text", "text": ""},
                                    {"type": "text", "text": "Again"}]})"));
  EXPECT_EQ(body["contents"], Json::parse(R"([
      {"role": "user", "parts": [{"text": "Hi"}, {"text": "Again"}]}])"));
}

TEST(GeminiRequest, InlineImageFromDataUrl) {
  Json body = gemini(withMessages(R"({"role": "user", "content": [
      {"type": "text", "text": "Caption this image."},
      {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg==",
                                         "detail": "high"}}]})"));
  EXPECT_EQ(body["contents"], Json::parse(R"([{"role": "user", "parts": [
      {"text": "Caption this image."},
      {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}]}])"));
}

TEST(GeminiRequest, ImageUrlsBecomeFileDataWithTypeFromExtension) {
  Json body = gemini(withMessages(R"({"role": "user", "content": [
      {"type": "image_url",
       "image_url": {"url": "https://example.com/photos/cat.PNG?size=large#x"}},
      {"type": "image_url",
       "image_url": {"url": "gs://cloud-samples-data/generative-ai/image/scones.jpg"}},
      {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}}]})"));
  EXPECT_EQ(body["contents"][0]["parts"], Json::parse(R"([
      {"fileData": {"mimeType": "image/png",
                    "fileUri": "https://example.com/photos/cat.PNG?size=large#x"}},
      {"fileData": {"mimeType": "image/jpeg",
                    "fileUri": "gs://cloud-samples-data/generative-ai/image/scones.jpg"}},
      {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp"}}])"));
}

TEST(GeminiRequest, InputAudioBecomesInlineData) {
  Json body = gemini(withMessages(R"({"role": "user", "content": [
      {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
      {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}]})"));
  EXPECT_EQ(body["contents"][0]["parts"], Json::parse(R"([
      {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
      {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}}])"));
}

// ---- requests: function calling -------------------------------------------------------------

TEST(GeminiRequest, FunctionCallRoundTrip) {
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "What's the temperature in London?"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_abc", "type": "function",
         "function": {"name": "get_current_temperature",
                      "arguments": "{\"location\": \"London\"}"}}]},
      {"role": "tool", "tool_call_id": "call_abc",
       "content": "{\"temperature\": 25, \"unit\": \"Celsius\"}"})"));
  EXPECT_EQ(body["contents"], Json::parse(R"([
      {"role": "user", "parts": [{"text": "What's the temperature in London?"}]},
      {"role": "model", "parts": [
        {"functionCall": {"name": "get_current_temperature", "args": {"location": "London"}}}]},
      {"role": "user", "parts": [
        {"functionResponse": {"name": "get_current_temperature",
                              "response": {"temperature": 25, "unit": "Celsius"}}}]}])"));
}

TEST(GeminiRequest, ParallelToolResultsMergeIntoOneTurnInOrder) {
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "Turn this place into a party!"},
      {"role": "assistant", "content": "Sure.", "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "power_disco_ball", "arguments": "{\"power\": true}"}},
        {"id": "c2", "type": "function", "function": {"name": "dim_lights", "arguments": ""}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "dimmed"},
      {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "[1, 2]"}]},
      {"role": "user", "content": "Thanks"})"));
  EXPECT_EQ(body["contents"], Json::parse(R"([
      {"role": "user", "parts": [{"text": "Turn this place into a party!"}]},
      {"role": "model", "parts": [
        {"text": "Sure."},
        {"functionCall": {"name": "power_disco_ball", "args": {"power": true}}},
        {"functionCall": {"name": "dim_lights", "args": {}}}]},
      {"role": "user", "parts": [
        {"functionResponse": {"name": "dim_lights", "response": {"content": "dimmed"}}},
        {"functionResponse": {"name": "power_disco_ball", "response": {"content": "[1, 2]"}}},
        {"text": "Thanks"}]}])"));
}

TEST(GeminiRequest, ThoughtSignatureInToolCallIdGoesBackOnTheFunctionCallPart) {
  std::string id = "call_x" + std::string(kThoughtSignatureMark) + "CiQBVA/sig+==";
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "tool_calls": [{"id": ")" +
                                  id + R"(", "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": ")" +
                                  id + R"(", "content": "{\"sky\": \"clear\"}"})"));
  EXPECT_EQ(body["contents"][1], Json::parse(R"({"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {}},
       "thoughtSignature": "CiQBVA/sig+=="}]})"));
  EXPECT_EQ(body["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather");
}

TEST(GeminiRequest, DeprecatedFunctionMessageBecomesFunctionResponse) {
  Json body = gemini(withMessages(R"(
      {"role": "user", "content": "Hi"},
      {"role": "function", "name": "lookup", "content": "{\"ok\": true}"})"));
  EXPECT_EQ(body["contents"][0]["parts"][1],
            Json::parse(R"({"functionResponse": {"name": "lookup", "response": {"ok": true}}})"));
}

TEST(GeminiRequest, ToolsBecomeFunctionDeclarations) {
  Json body = gemini(withMessages(kUser, R"(
      "tools": [
        {"type": "function", "function": {"name": "find_movies",
          "description": "find movie titles currently playing in theaters",
          "parameters": {"type": "object", "properties": {
            "location": {"type": "string",
                         "description": "The city and state, e.g. San Francisco, CA"},
            "genre": {"type": "string"}},
          "required": ["location"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "ping"}}])"));
  EXPECT_EQ(body["tools"], Json::parse(R"([{"functionDeclarations": [
      {"name": "find_movies", "description": "find movie titles currently playing in theaters",
       "parametersJsonSchema": {"type": "object", "properties": {
         "location": {"type": "string",
                      "description": "The city and state, e.g. San Francisco, CA"},
         "genre": {"type": "string"}}, "required": ["location"], "additionalProperties": false}},
      {"name": "ping"}]}])"));
  EXPECT_FALSE(body.contains("toolConfig"));
}

TEST(GeminiRequest, ToolChoiceBecomesFunctionCallingConfig) {
  std::string tools = R"("tools": [{"type": "function", "function": {"name": "get_weather"}}], )";
  auto config = [&](std::string_view choice) {
    return gemini(
        withMessages(kUser, tools + R"("tool_choice": )" + std::string(choice)))["toolConfig"];
  };
  EXPECT_EQ(config(R"("auto")"), Json::parse(R"({"functionCallingConfig": {"mode": "AUTO"}})"));
  EXPECT_EQ(config(R"("required")"), Json::parse(R"({"functionCallingConfig": {"mode": "ANY"}})"));
  EXPECT_EQ(config(R"("none")"), Json::parse(R"({"functionCallingConfig": {"mode": "NONE"}})"));
  EXPECT_EQ(config(R"({"type": "function", "function": {"name": "get_weather"}})"),
            Json::parse(R"({"functionCallingConfig": {"mode": "ANY",
                                                      "allowedFunctionNames": ["get_weather"]}})"));
}

// ---- requests: generation config -------------------------------------------------------------

TEST(GeminiRequest, GenerationConfigFields) {
  Json body = gemini(withMessages(kUser, R"(
      "temperature": 0.9, "top_p": 0.8, "max_tokens": 100, "max_completion_tokens": 800,
      "stop": ["Title"], "n": 2, "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.25,
      "logprobs": true, "top_logprobs": 3)"));
  EXPECT_EQ(body["generationConfig"], Json::parse(R"({
      "temperature": 0.9, "topP": 0.8, "maxOutputTokens": 800, "stopSequences": ["Title"],
      "candidateCount": 2, "seed": 42, "presencePenalty": 0.5, "frequencyPenalty": -0.25,
      "responseLogprobs": true, "logprobs": 3})"));
}

TEST(GeminiRequest, MaxTokensUsedWithoutMaxCompletionTokens) {
  Json body = gemini(withMessages(kUser, R"("max_tokens": 64)"));
  EXPECT_EQ(body["generationConfig"], Json::parse(R"({"maxOutputTokens": 64})"));
}

TEST(GeminiRequest, NeutralValuesPassAndAreNotSent) {
  Json body = gemini(withMessages(kUser, R"(
      "n": 1, "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {},
      "parallel_tool_calls": false, "user": "user-1234", "metadata": {"team": "a"},
      "reasoning_effort": null, "logprobs": false, "response_format": {"type": "text"},
      "tool_choice": "none")"));
  EXPECT_EQ(body, Json::parse(R"({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})"));
}

TEST(GeminiRequest, JsonObjectResponseFormat) {
  Json body = gemini(withMessages(kUser, R"("response_format": {"type": "json_object"})"));
  EXPECT_EQ(body["generationConfig"], Json::parse(R"({"responseMimeType": "application/json"})"));
}

TEST(GeminiRequest, JsonSchemaResponseFormat) {
  Json body = gemini(withMessages(kUser, R"("response_format": {"type": "json_schema",
      "json_schema": {"name": "recipes", "strict": true, "schema": {
        "type": "array", "items": {"type": "object", "properties": {
          "recipeName": {"type": "string"},
          "ingredients": {"type": "array", "items": {"type": "string"}}},
          "required": ["recipeName", "ingredients"], "additionalProperties": false}}}})"));
  EXPECT_EQ(body["generationConfig"], Json::parse(R"({
      "responseMimeType": "application/json",
      "responseJsonSchema": {"type": "array", "items": {"type": "object", "properties": {
        "recipeName": {"type": "string"},
        "ingredients": {"type": "array", "items": {"type": "string"}}},
        "required": ["recipeName", "ingredients"], "additionalProperties": false}}})"));
}

// ---- requests: refusals ----------------------------------------------------------------------

TEST(GeminiRequest, RefusesWhatGeminiCannotExpress) {
  EXPECT_EQ(refusal(withMessages(kUser, R"("logit_bias": {"50256": -100})")).param(), "logit_bias");
  EXPECT_EQ(refusal(withMessages(kUser, R"("tools": [{"type": "function",
      "function": {"name": "f"}}], "parallel_tool_calls": false)"))
                .param(),
            "parallel_tool_calls");
  api::Status extra = refusal(withMessages(kUser, R"("reasoning_effort": "high")"));
  EXPECT_EQ(extra.param(), "reasoning_effort");
  EXPECT_TRUE(mentions(extra, "reasoning_effort"));
  EXPECT_EQ(refusal(withMessages(kUser, R"("seed": 4294967296)")).param(), "seed");

  // The edge parser already refuses this; a request built in code may still carry it.
  api::ChatRequest req = request(withMessages(kUser));
  req.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kRequired, ""};
  api::StatusOr<Json> body = toGeminiRequest(req);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().param(), "tool_choice");
}

TEST(GeminiRequest, RefusesConversationWithOnlySystemMessages) {
  EXPECT_EQ(refusal(withMessages(R"({"role": "system", "content": "Be brief."})")).param(),
            "messages");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": ""})")).param(), "messages");
}

TEST(GeminiRequest, RefusesContentPartsGeminiCannotCarry) {
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "text", "text": "Summarise"},
      {"type": "file", "file": {"file_id": "file-abc"}}]})"))
                .param(),
            "messages[0].content[1]");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "https://example.com/cat.gif"}}]})"))
                .param(),
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "https://example.com/image"}}]})"))
                .param(),
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]})"))
                .param(),
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]})"))
                .param(),
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:;base64,AAAA"}}]})"))
                .param(),
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "flac"}}]})"))
                .param(),
            "messages[0].content[0].input_audio.format");
  EXPECT_EQ(refusal(withMessages(R"({"role": "user", "content": [
      {"type": "input_audio", "input_audio": {"format": "wav"}}]})"))
                .param(),
            "messages[0].content[0].input_audio.data");
}

TEST(GeminiRequest, RefusesToolCallArgumentsThatAreNotAnObject) {
  for (std::string_view args : {R"([1, 2])", R"({\"a\": )", R"(42)"}) {
    api::Status s = refusal(withMessages(R"(
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
          "function": {"name": "f", "arguments": ")" +
                                         std::string(args) + R"("}}]})"));
    EXPECT_EQ(s.param(), "messages[1].tool_calls[0].function.arguments") << args;
  }
}

TEST(GeminiRequest, RefusesToolResultForUnknownCall) {
  api::Status s = refusal(withMessages(R"(
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "x"})"));
  EXPECT_EQ(s.param(), "messages[2].tool_call_id");
  EXPECT_TRUE(mentions(s, "c2"));
}

// ---- encode: URL and headers -----------------------------------------------------------------

TEST(GeminiEncode, AiStudioSendsKeyHeader) {
  GeminiWire wire(GeminiWireConfig{.api_key = "AIzaSyTestKey"});
  api::StatusOr<WireRequest> w = wire.encode(request(withMessages(kUser)));
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(
      w->url,
      "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
  EXPECT_EQ(
      w->headers,
      (std::vector<std::pair<std::string, std::string>>{{"x-goog-api-key", "AIzaSyTestKey"}}));
  EXPECT_EQ(Json::parse(w->body),
            Json::parse(R"({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})"));
}

TEST(GeminiEncode, StreamingUsesStreamGenerateContentWithSse) {
  GeminiWire wire(GeminiWireConfig{.api_key = "k"});
  api::StatusOr<WireRequest> w = wire.encode(request(withMessages(kUser, R"("stream": true)")));
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(w->url,
            "https://generativelanguage.googleapis.com/v1beta/models/"
            "gemini-2.5-flash:streamGenerateContent?alt=sse");
}

TEST(GeminiEncode, VertexSendsBearerToken) {
  EXPECT_EQ(vertexBaseUrl("my-project", "us-central1"),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/"
            "us-central1/publishers/google");
  EXPECT_EQ(vertexBaseUrl("my-project", "global"),
            "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/"
            "publishers/google");
  GeminiWire wire(GeminiWireConfig{.base_url = vertexBaseUrl("my-project", "europe-west4"),
                                   .api_key = "ya29.a0AfH6SM",
                                   .bearer = true});
  api::StatusOr<WireRequest> w = wire.encode(request(withMessages(kUser, R"("stream": true)")));
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(w->url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/"
            "europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
  EXPECT_EQ(w->headers, (std::vector<std::pair<std::string, std::string>>{
                            {"Authorization", "Bearer ya29.a0AfH6SM"}}));
}

TEST(GeminiEncode, NoKeyNoAuthHeader) {
  GeminiWire wire(
      GeminiWireConfig{.base_url = "http://127.0.0.1:9/v1beta", .api_key = "", .bearer = false});
  api::StatusOr<WireRequest> w = wire.encode(request(withMessages(kUser)));
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->headers.empty());
  EXPECT_EQ(w->url, "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent");
}

TEST(GeminiEncode, ModelNameMustBePathSafe) {
  GeminiWire wire(GeminiWireConfig{});
  api::ChatRequest req = request(withMessages(kUser));
  for (const char* bad : {"../v1/secrets", "gemini/../x", "gemini 2.5", "gemini?alt=json",
                          "gemini#x", "gem%2e%2e", ""}) {
    req.model = bad;
    api::StatusOr<WireRequest> w = wire.encode(req);
    ASSERT_FALSE(w.ok()) << bad;
    EXPECT_EQ(w.status().code(), ErrorCode::kInvalidRequest);
    EXPECT_EQ(w.status().param(), "model");
  }
  req.model = "gemini-2.0-flash-001@latest:v1/x_y";
  EXPECT_TRUE(wire.encode(req).ok());
}

TEST(GeminiEncode, PassesRequestRefusalsThrough) {
  GeminiWire wire(GeminiWireConfig{});
  api::StatusOr<WireRequest> w =
      wire.encode(request(withMessages(kUser, R"("logit_bias": {"1": 5})")));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().param(), "logit_bias");
}

// ---- responses -------------------------------------------------------------------------------

TEST(GeminiResponse, TextCandidate) {
  int64_t before = std::time(nullptr);
  api::ChatResponse r = response(R"({
      "candidates": [{
        "content": {"parts": [{"text": "In a quiet town, "}, {"text": "a backpack hummed."}],
                    "role": "model"},
        "finishReason": "STOP",
        "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
      "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]},
      "modelVersion": "gemini-2.5-flash-001",
      "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"})");
  EXPECT_EQ(r.id, "mAitaLmkHPPlz7IPvtfUqQ4");
  EXPECT_EQ(r.model, "gemini-2.5-flash-001");
  EXPECT_GE(r.created, before);
  EXPECT_LE(r.created, std::time(nullptr));
  ASSERT_EQ(r.choices.size(), 1u);
  const api::Choice& c = r.choices[0];
  EXPECT_EQ(c.index, 0);
  EXPECT_EQ(c.message.role, api::Role::kAssistant);
  EXPECT_EQ(c.message.content.kind, api::Content::Kind::kText);
  EXPECT_EQ(c.message.content.text, "In a quiet town, a backpack hummed.");
  EXPECT_TRUE(c.message.tool_calls.empty());
  EXPECT_EQ(c.finish_reason, "stop");
  EXPECT_FALSE(c.logprobs.has_value());
  ASSERT_TRUE(r.usage.has_value());
  EXPECT_EQ(r.usage->prompt_tokens, 8);
  EXPECT_EQ(r.usage->completion_tokens, 12);
  EXPECT_EQ(r.usage->total_tokens, 20);
  EXPECT_EQ(r.usage->cached_prompt_tokens, 0);
  EXPECT_EQ(r.usage->reasoning_tokens, 0);
}

TEST(GeminiResponse, IdAndModelFallBack) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"parts": [{"text": "Hi"}]},
      "finishReason": "STOP"}]})",
                                 "gemini-2.0-flash");
  EXPECT_EQ(r.id.rfind("chatcmpl-", 0), 0u);
  EXPECT_GT(r.id.size(), std::string("chatcmpl-").size());
  EXPECT_EQ(r.model, "gemini-2.0-flash");
  EXPECT_FALSE(r.usage.has_value());
}

TEST(GeminiResponse, SkipsThoughtParts) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"role": "model", "parts": [
      {"text": "**Counting paws**\nTwo dogs, four paws each.", "thought": true},
      {"text": "There are 8 paws.", "thoughtSignature": "CsQBAVSoXO4="}]},
      "finishReason": "STOP"}]})");
  EXPECT_EQ(r.choices[0].message.content.text, "There are 8 paws.");
}

TEST(GeminiResponse, FunctionCallsBecomeToolCalls) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"role": "model", "parts": [
      {"functionCall": {"name": "power_disco_ball", "args": {"power": true}}},
      {"functionCall": {"name": "start_music", "args": {"energetic": true, "loud": true}}},
      {"functionCall": {"name": "dim_lights"}}]},
      "finishReason": "STOP", "index": 0}]})");
  const api::Choice& c = r.choices[0];
  EXPECT_EQ(c.finish_reason, "tool_calls");
  EXPECT_TRUE(c.message.content.isNull());
  ASSERT_EQ(c.message.tool_calls.size(), 3u);
  EXPECT_EQ(c.message.tool_calls[0].name, "power_disco_ball");
  EXPECT_EQ(c.message.tool_calls[0].arguments, R"({"power":true})");
  EXPECT_EQ(c.message.tool_calls[0].type, "function");
  EXPECT_EQ(c.message.tool_calls[1].name, "start_music");
  EXPECT_EQ(c.message.tool_calls[1].arguments, R"({"energetic":true,"loud":true})");
  EXPECT_EQ(c.message.tool_calls[2].arguments, "{}");
  std::set<std::string> ids;
  for (const api::ToolCall& call : c.message.tool_calls) {
    EXPECT_EQ(call.id.rfind("call_", 0), 0u) << call.id;
    EXPECT_EQ(call.id.find(kThoughtSignatureMark), std::string::npos);
    ids.insert(call.id);
  }
  EXPECT_EQ(ids.size(), 3u);
}

TEST(GeminiResponse, FunctionCallIdAndThoughtSignatureAreKept) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"role": "model", "parts": [
      {"text": "Checking."},
      {"functionCall": {"id": "fc-7", "name": "get_weather", "args": {"city": "Paris"}},
       "thoughtSignature": "CiQBVA/sig+=="}]},
      "finishReason": "STOP"}]})");
  const api::Choice& c = r.choices[0];
  EXPECT_EQ(c.message.content.text, "Checking.");
  ASSERT_EQ(c.message.tool_calls.size(), 1u);
  EXPECT_EQ(c.message.tool_calls[0].id,
            "fc-7" + std::string(kThoughtSignatureMark) + "CiQBVA/sig+==");

  // The id goes back to Gemini on the next turn as the signature.
  api::ChatRequest next = request(withMessages(kUser));
  api::Message assistant;
  assistant.role = api::Role::kAssistant;
  assistant.tool_calls = c.message.tool_calls;
  api::Message tool;
  tool.role = api::Role::kTool;
  tool.tool_call_id = c.message.tool_calls[0].id;
  tool.content = api::Content::ofText("{\"temp\": 18}");
  next.messages.push_back(assistant);
  next.messages.push_back(tool);
  api::StatusOr<Json> body = toGeminiRequest(next);
  ASSERT_TRUE(body.ok()) << body.status().message();
  EXPECT_EQ((*body)["contents"][1], Json::parse(R"({"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
       "thoughtSignature": "CiQBVA/sig+=="}]})"));
  EXPECT_EQ(
      (*body)["contents"][2]["parts"][0],
      Json::parse(R"({"functionResponse": {"name": "get_weather", "response": {"temp": 18}}})"));
}

TEST(GeminiResponse, SafetyFinishIsContentFilter) {
  api::ChatResponse r = response(R"({"candidates": [{"finishReason": "SAFETY", "index": 0,
      "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                         "blocked": true}]}],
      "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})");
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].finish_reason, "content_filter");
  EXPECT_EQ(r.choices[0].message.content.kind, api::Content::Kind::kText);
  EXPECT_EQ(r.choices[0].message.content.text, "");
  EXPECT_EQ(r.usage->prompt_tokens, 9);
  EXPECT_EQ(r.usage->completion_tokens, 0);
  EXPECT_EQ(r.usage->total_tokens, 9);
}

TEST(GeminiResponse, FinishReasons) {
  std::pair<const char*, const char*> cases[] = {
      {"STOP", "stop"},
      {"MAX_TOKENS", "length"},
      {"SAFETY", "content_filter"},
      {"RECITATION", "content_filter"},
      {"BLOCKLIST", "content_filter"},
      {"PROHIBITED_CONTENT", "content_filter"},
      {"SPII", "content_filter"},
      {"IMAGE_SAFETY", "content_filter"},
      {"LANGUAGE", "stop"},
      {"OTHER", "stop"},
      {"MALFORMED_FUNCTION_CALL", "stop"},
  };
  for (const auto& [gemini_reason, openai_reason] : cases) {
    api::ChatResponse r = response(R"({"candidates": [{"content": {"parts": [{"text": "x"}]},
        "finishReason": ")" + std::string(gemini_reason) +
                                   R"("}]})");
    EXPECT_EQ(r.choices[0].finish_reason, openai_reason) << gemini_reason;
  }
  api::ChatResponse r = response(R"({"candidates": [{"content": {"parts": [
      {"functionCall": {"name": "f", "args": {}}}]}, "finishReason": "MAX_TOKENS"}]})");
  EXPECT_EQ(r.choices[0].finish_reason, "length");
}

TEST(GeminiResponse, BlockedPromptIsOneFilteredChoice) {
  api::ChatResponse r = response(R"({
      "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH"}]},
      "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
      "modelVersion": "gemini-2.5-pro"})");
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].index, 0);
  EXPECT_EQ(r.choices[0].finish_reason, "content_filter");
  EXPECT_EQ(r.choices[0].message.content.kind, api::Content::Kind::kText);
  EXPECT_EQ(r.choices[0].message.content.text, "");
  EXPECT_EQ(r.model, "gemini-2.5-pro");
  EXPECT_EQ(r.usage->prompt_tokens, 7);
  EXPECT_EQ(r.usage->total_tokens, 7);
}

TEST(GeminiResponse, UsageWithCachedAndThoughtsTokens) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"parts": [{"text": "ok"}]},
      "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 1024,
                        "candidatesTokenCount": 150, "thoughtsTokenCount": 350,
                        "totalTokenCount": 1700,
                        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}]}})");
  ASSERT_TRUE(r.usage.has_value());
  EXPECT_EQ(r.usage->prompt_tokens, 1200);
  EXPECT_EQ(r.usage->cached_prompt_tokens, 1024);
  EXPECT_EQ(r.usage->completion_tokens, 500);
  EXPECT_EQ(r.usage->reasoning_tokens, 350);
  EXPECT_EQ(r.usage->total_tokens, 1700);
  EXPECT_EQ(r.usage->cache_write_prompt_tokens, 0);
}

TEST(GeminiResponse, TotalIsTheSumWhenAbsent) {
  api::ChatResponse r = response(R"({"candidates": [{"content": {"parts": [{"text": "ok"}]},
      "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                        "thoughtsTokenCount": 7}})");
  EXPECT_EQ(r.usage->completion_tokens, 12);
  EXPECT_EQ(r.usage->total_tokens, 22);
}

TEST(GeminiResponse, SeveralCandidatesBecomeSeveralChoices) {
  api::ChatResponse r = response(R"({"candidates": [
      {"content": {"parts": [{"text": "A"}], "role": "model"}, "finishReason": "STOP", "index": 0},
      {"content": {"parts": [{"text": "B"}], "role": "model"}, "finishReason": "MAX_TOKENS",
       "index": 1}]})");
  ASSERT_EQ(r.choices.size(), 2u);
  EXPECT_EQ(r.choices[0].index, 0);
  EXPECT_EQ(r.choices[0].message.content.text, "A");
  EXPECT_EQ(r.choices[1].index, 1);
  EXPECT_EQ(r.choices[1].message.content.text, "B");
  EXPECT_EQ(r.choices[1].finish_reason, "length");

  // Without "index", the position counts.
  r = response(R"({"candidates": [{"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
                                  {"content": {"parts": [{"text": "B"}]},
                                   "finishReason": "STOP"}]})");
  EXPECT_EQ(r.choices[1].index, 1);
}

TEST(GeminiResponse, LogprobsResult) {
  api::ChatResponse r = response(R"({"candidates": [{
      "content": {"parts": [{"text": "Hi there"}]}, "finishReason": "STOP",
      "avgLogprobs": -0.31,
      "logprobsResult": {
        "topCandidates": [
          {"candidates": [{"token": "Hi", "tokenId": 1001, "logProbability": -0.1},
                          {"token": "Hello", "tokenId": 1002, "logProbability": -2.5}]},
          {"candidates": [{"token": " there", "tokenId": 1003, "logProbability": -0.5}]}],
        "chosenCandidates": [{"token": "Hi", "tokenId": 1001, "logProbability": -0.1},
                             {"token": " there", "tokenId": 1003, "logProbability": -0.5}]}}]})");
  ASSERT_TRUE(r.choices[0].logprobs.has_value());
  const std::vector<api::TokenLogprob>& lp = *r.choices[0].logprobs;
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0].token, "Hi");
  EXPECT_DOUBLE_EQ(lp[0].logprob, -0.1);
  ASSERT_EQ(lp[0].top_logprobs.size(), 2u);
  EXPECT_EQ(lp[0].top_logprobs[1].token, "Hello");
  EXPECT_DOUBLE_EQ(lp[0].top_logprobs[1].logprob, -2.5);
  EXPECT_EQ(lp[1].token, " there");
  ASSERT_EQ(lp[1].top_logprobs.size(), 1u);
}

TEST(GeminiResponse, DecodeResponseReadsTheBody) {
  GeminiWire wire(GeminiWireConfig{});
  api::ChatRequest req = request(withMessages(kUser));
  api::StatusOr<api::ChatResponse> r = wire.decodeResponse(
      R"({"candidates": [{"content": {"parts": [{"text": "Hey"}]}, "finishReason": "STOP"}]})",
      req);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->choices[0].message.content.text, "Hey");
  EXPECT_EQ(r->model, "gemini-2.5-flash");
}

TEST(GeminiResponse, MalformedBodiesAreUpstreamErrors) {
  EXPECT_TRUE(mentions(responseError("not json"), "not JSON"));
  EXPECT_TRUE(mentions(responseError("[]"), "not an object"));
  EXPECT_TRUE(mentions(responseError("{}"), "'candidates'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": []})"), "'candidates'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": {}})"), "'candidates'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [7]})"), "'candidates[0]'"));
  EXPECT_TRUE(
      mentions(responseError(R"({"candidates": [{"content": "hi"}]})"), "'candidates[0].content'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"content": {"parts": {}}}]})"),
                       "'candidates[0].content.parts'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"content": {"parts": [{"text": 5}]}}]})"),
                       "'candidates[0].content.parts[0].text'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"content": {"parts": [
      {"text": "a"}, {"functionCall": {"args": {}}}]}}]})"),
                       "'candidates[0].content.parts[1].functionCall.name'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"content": {"parts": [
      {"functionCall": {"name": "f", "args": "{}"}}]}}]})"),
                       "'candidates[0].content.parts[0].functionCall.args'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"finishReason": 1}]})"),
                       "'candidates[0].finishReason'"));
  EXPECT_TRUE(
      mentions(responseError(R"({"candidates": [{"index": "0"}]})"), "'candidates[0].index'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": "8"}})"),
                       "'usageMetadata.promptTokenCount'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"finishReason": "STOP"}],
                                         "usageMetadata": []})"),
                       "'usageMetadata'"));
  EXPECT_TRUE(mentions(responseError(R"({"candidates": [{"finishReason": "STOP"}],
                                         "responseId": 12})"),
                       "'responseId'"));
  EXPECT_TRUE(mentions(responseError(R"({"promptFeedback": {"blockReason": 3}})"),
                       "'promptFeedback.blockReason'"));
  EXPECT_TRUE(
      mentions(responseError(R"({"error": {"code": 500, "message": "Internal error encountered.",
                                                   "status": "INTERNAL"}})"),
               "Internal error encountered."));
  std::string deep(100000, '[');
  EXPECT_EQ(responseError(deep).code(), ErrorCode::kUpstreamError);
}

// ---- streaming -------------------------------------------------------------------------------

class GeminiStream : public ::testing::Test {
 protected:
  GeminiStream() : wire_(GeminiWireConfig{}), decoder_(wire_.newStreamDecoder(streamRequest())) {}

  static api::ChatRequest streamRequest() {
    api::ChatRequest req;
    req.model = "gemini-2.5-flash";
    req.stream = true;
    return req;
  }

  std::vector<api::ChatChunk> feed(std::string data) {
    std::vector<api::ChatChunk> out;
    api::Status s = decoder_->onEvent(event(std::move(data)), out);
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }

  api::Status feedError(std::string data) {
    std::vector<api::ChatChunk> out;
    api::Status s = decoder_->onEvent(event(std::move(data)), out);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), ErrorCode::kUpstreamError);
    EXPECT_TRUE(out.empty());
    return s;
  }

  GeminiWire wire_;
  std::unique_ptr<StreamDecoder> decoder_;
};

TEST_F(GeminiStream, TextEventsBecomeChunks) {
  std::vector<api::ChatChunk> c1 = feed(R"({"candidates": [{"content": {"parts": [{"text": "The"}],
      "role": "model"}, "index": 0}],
      "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
      "modelVersion": "gemini-2.5-flash", "responseId": "tTCwacuEBMvnitYP06qsgQY"})");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].id, "tTCwacuEBMvnitYP06qsgQY");
  EXPECT_EQ(c1[0].model, "gemini-2.5-flash");
  EXPECT_GT(c1[0].created, 0);
  EXPECT_FALSE(c1[0].usage.has_value());
  ASSERT_EQ(c1[0].choices.size(), 1u);
  EXPECT_EQ(c1[0].choices[0].index, 0);
  EXPECT_EQ(c1[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(c1[0].choices[0].delta.content, "The");
  EXPECT_FALSE(c1[0].choices[0].finish_reason.has_value());

  std::vector<api::ChatChunk> c2 = feed(R"({"candidates": [{"content": {"parts": [
      {"text": " quick brown fox"}], "role": "model"}, "index": 0}],
      "modelVersion": "gemini-2.5-flash", "responseId": "tTCwacuEBMvnitYP06qsgQY"})");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].id, c1[0].id);
  EXPECT_EQ(c2[0].created, c1[0].created);
  EXPECT_FALSE(c2[0].choices[0].delta.role.has_value());
  EXPECT_EQ(c2[0].choices[0].delta.content, " quick brown fox");

  std::vector<api::ChatChunk> c3 = feed(R"({"candidates": [{"content": {"parts": [
      {"text": " jumps."}, {"text": "", "thoughtSignature": "AY89a18iOcFus5wr5bW5xN6z="}],
      "role": "model"}, "finishReason": "STOP", "index": 0}],
      "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 6, "thoughtsTokenCount": 20,
                        "totalTokenCount": 35},
      "modelVersion": "gemini-2.5-flash", "responseId": "tTCwacuEBMvnitYP06qsgQY"})");
  ASSERT_EQ(c3.size(), 1u);
  EXPECT_EQ(c3[0].choices[0].delta.content, " jumps.");
  EXPECT_EQ(c3[0].choices[0].finish_reason, "stop");
  EXPECT_TRUE(c3[0].choices[0].delta.tool_calls.empty());

  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_TRUE(summary.ok()) << summary.status().message();
  EXPECT_EQ(summary->id, "tTCwacuEBMvnitYP06qsgQY");
  EXPECT_EQ(summary->model, "gemini-2.5-flash");
  EXPECT_EQ(summary->created, c1[0].created);
  EXPECT_TRUE(summary->choices.empty());
  ASSERT_TRUE(summary->usage.has_value());
  EXPECT_EQ(summary->usage->prompt_tokens, 9);
  EXPECT_EQ(summary->usage->completion_tokens, 26);
  EXPECT_EQ(summary->usage->reasoning_tokens, 20);
  EXPECT_EQ(summary->usage->total_tokens, 35);
}

TEST_F(GeminiStream, RawSseBytesThroughTheParser) {
  // A Vertex AI stream: usageMetadata without counts until the last event.
  std::string wire_bytes =
      "data: {\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": "
      "\"Hello!\"}]}}],\"usageMetadata\": {\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": "
      "\"gemini-2.0-flash-001\",\"createTime\": \"2026-03-10T14:54:45.066123Z\",\"responseId\": "
      "\"resp-1\"}\r\n\r\n"
      "data: {\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": \" How "
      "can I help?\"}]},\"finishReason\": \"STOP\"}],\"usageMetadata\": {\"promptTokenCount\": "
      "1,\"candidatesTokenCount\": 9,\"totalTokenCount\": 10,\"trafficType\": \"ON_DEMAND\"},"
      "\"modelVersion\": \"gemini-2.0-flash-001\",\"responseId\": \"resp-1\"}\r\n\r\n"
      "data: {\"usageMetadata\": {\"trafficType\": \"ON_DEMAND\"}, \"responseId\": "
      "\"resp-1\"}\r\n\r\n";
  api::SseParser parser;
  std::vector<api::SseEvent> events;
  ASSERT_TRUE(parser.feed(wire_bytes, events));
  ASSERT_EQ(events.size(), 3u);
  std::string text;
  std::vector<api::ChatChunk> chunks;
  for (const api::SseEvent& e : events) {
    ASSERT_TRUE(decoder_->onEvent(e, chunks).ok());
  }
  ASSERT_EQ(chunks.size(), 2u);
  for (const api::ChatChunk& c : chunks) text += c.choices[0].delta.content.value_or("");
  EXPECT_EQ(text, "Hello! How can I help?");
  EXPECT_EQ(chunks[1].choices[0].finish_reason, "stop");
  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->model, "gemini-2.0-flash-001");
  EXPECT_EQ(summary->id, "resp-1");
  EXPECT_EQ(summary->usage->prompt_tokens, 1);
  EXPECT_EQ(summary->usage->completion_tokens, 9);
  EXPECT_EQ(summary->usage->total_tokens, 10);
}

TEST_F(GeminiStream, LastUsageWins) {
  feed(R"({"candidates": [{"content": {"parts": [{"text": "a"}]}}],
           "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1,
                             "totalTokenCount": 5}})");
  feed(R"({"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}],
           "usageMetadata": {"promptTokenCount": 4, "cachedContentTokenCount": 2,
                             "candidatesTokenCount": 3, "totalTokenCount": 7}})");
  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->usage->completion_tokens, 3);
  EXPECT_EQ(summary->usage->cached_prompt_tokens, 2);
  EXPECT_EQ(summary->usage->total_tokens, 7);
  EXPECT_EQ(summary->model, "gemini-2.5-flash");  // no modelVersion: the request's
  EXPECT_EQ(summary->id.rfind("chatcmpl-", 0), 0u);
}

TEST_F(GeminiStream, FunctionCallsAreWholeToolCallDeltas) {
  std::vector<api::ChatChunk> c1 = feed(R"({"candidates": [{"content": {"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
       "thoughtSignature": "c2ln"},
      {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}]}, "index": 0}],
      "responseId": "r"})");
  ASSERT_EQ(c1.size(), 1u);
  const api::Delta& d1 = c1[0].choices[0].delta;
  EXPECT_EQ(d1.role, api::Role::kAssistant);
  EXPECT_FALSE(d1.content.has_value());
  ASSERT_EQ(d1.tool_calls.size(), 2u);
  EXPECT_EQ(d1.tool_calls[0].index, 0);
  ASSERT_TRUE(d1.tool_calls[0].id.has_value());
  EXPECT_EQ(d1.tool_calls[0].id->rfind("call_", 0), 0u);
  EXPECT_NE(d1.tool_calls[0].id->find(std::string(kThoughtSignatureMark) + "c2ln"),
            std::string::npos);
  EXPECT_EQ(d1.tool_calls[0].type, "function");
  EXPECT_EQ(d1.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d1.tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(d1.tool_calls[1].index, 1);
  EXPECT_EQ(d1.tool_calls[1].name, "get_time");
  EXPECT_EQ(d1.tool_calls[1].arguments, R"({"tz":"CET"})");
  EXPECT_NE(d1.tool_calls[0].id, d1.tool_calls[1].id);
  EXPECT_FALSE(c1[0].choices[0].finish_reason.has_value());

  std::vector<api::ChatChunk> c2 = feed(R"({"candidates": [{"content": {"role": "model", "parts": [
      {"functionCall": {"id": "fc-3", "name": "get_news", "args": {}}}]},
      "finishReason": "STOP", "index": 0}], "responseId": "r"})");
  ASSERT_EQ(c2.size(), 1u);
  ASSERT_EQ(c2[0].choices[0].delta.tool_calls.size(), 1u);
  EXPECT_EQ(c2[0].choices[0].delta.tool_calls[0].index, 2);
  EXPECT_EQ(c2[0].choices[0].delta.tool_calls[0].id, "fc-3");
  EXPECT_EQ(c2[0].choices[0].finish_reason, "tool_calls");
  EXPECT_TRUE(decoder_->finish().ok());
}

TEST_F(GeminiStream, StopInLaterEventAfterToolCallsIsToolCalls) {
  feed(
      R"({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}]})");
  std::vector<api::ChatChunk> c = feed(R"({"candidates": [{"content": {"parts": [{"text": ""}]},
                                                           "finishReason": "STOP"}]})");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].choices[0].delta.role.has_value());
  EXPECT_EQ(c[0].choices[0].finish_reason, "tool_calls");
}

TEST_F(GeminiStream, SeveralCandidatesGetOwnChunksAndRoles) {
  std::vector<api::ChatChunk> c1 = feed(R"({"candidates": [
      {"content": {"parts": [{"text": "A"}]}, "index": 0},
      {"content": {"parts": [{"text": "B"}]}, "index": 1}]})");
  ASSERT_EQ(c1.size(), 2u);
  EXPECT_EQ(c1[0].choices[0].index, 0);
  EXPECT_EQ(c1[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(c1[1].choices[0].index, 1);
  EXPECT_EQ(c1[1].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(c1[1].choices[0].delta.content, "B");
  std::vector<api::ChatChunk> c2 = feed(R"({"candidates": [
      {"content": {"parts": [{"text": "b"}]}, "index": 1, "finishReason": "MAX_TOKENS"}]})");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].choices[0].index, 1);
  EXPECT_FALSE(c2[0].choices[0].delta.role.has_value());
  EXPECT_EQ(c2[0].choices[0].finish_reason, "length");
}

TEST_F(GeminiStream, SafetyStopMidStream) {
  feed(R"({"candidates": [{"content": {"parts": [{"text": "Sure, here"}]}}]})");
  std::vector<api::ChatChunk> c = feed(R"({"candidates": [{"finishReason": "SAFETY",
      "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                         "blocked": true}]}]})");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].choices[0].delta.content.has_value());
  EXPECT_EQ(c[0].choices[0].finish_reason, "content_filter");
  EXPECT_TRUE(decoder_->finish().ok());
}

TEST_F(GeminiStream, BlockedPrompt) {
  std::vector<api::ChatChunk> c = feed(R"({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
      "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
      "modelVersion": "gemini-2.5-pro", "responseId": "blk"})");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id, "blk");
  EXPECT_EQ(c[0].choices[0].index, 0);
  EXPECT_EQ(c[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(c[0].choices[0].delta.content, "");
  EXPECT_EQ(c[0].choices[0].finish_reason, "content_filter");
  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->usage->prompt_tokens, 12);
  EXPECT_EQ(summary->model, "gemini-2.5-pro");
}

TEST_F(GeminiStream, UsageOnlyAndEmptyEventsMakeNoChunks) {
  EXPECT_TRUE(feed("").empty());
  EXPECT_TRUE(feed(R"({"usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})").empty());
  EXPECT_TRUE(feed(R"({"candidates": [{"content": {"parts": [{"text": ""}]}}]})").empty());
  std::vector<api::ChatChunk> c =
      feed(R"({"candidates": [{"content": {"parts": [{"text": "x"}]}}]})");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].choices[0].delta.role,
            api::Role::kAssistant);  // the first chunk that says anything
}

TEST_F(GeminiStream, ThoughtPartsAreNotStreamed) {
  EXPECT_TRUE(feed(R"({"candidates": [{"content": {"parts": [
      {"text": "Let me think", "thought": true}]}}]})")
                  .empty());
}

TEST_F(GeminiStream, ErrorEventEndsTheCall) {
  api::Status s = feedError(
      R"({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                                          "status": "RESOURCE_EXHAUSTED"}})");
  EXPECT_TRUE(mentions(s, "Resource has been exhausted (e.g. check quota)."));
}

TEST_F(GeminiStream, MalformedEventsAreUpstreamErrors) {
  EXPECT_TRUE(mentions(feedError("{not json"), "not JSON"));
  EXPECT_TRUE(mentions(feedError("[1, 2]"), "not an object"));
  EXPECT_TRUE(mentions(feedError(R"({"responseId": ["x"]})"), "'responseId'"));
  EXPECT_TRUE(mentions(feedError(R"({"candidates": "x"})"), "'candidates'"));
  EXPECT_TRUE(
      mentions(feedError(R"({"candidates": [{"content": {"parts": [{"functionCall": 3}]}}]})"),
               "'candidates[0].content.parts[0].functionCall'"));
  EXPECT_TRUE(mentions(feedError(R"({"usageMetadata": {"totalTokenCount": 1.5}})"),
                       "'usageMetadata.totalTokenCount'"));
}

TEST_F(GeminiStream, EndingBeforeAnyFinishReasonIsAnError) {
  feed(R"({"candidates": [{"content": {"parts": [{"text": "Once upon"}]}}]})");
  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), ErrorCode::kUpstreamError);
}

TEST_F(GeminiStream, EmptyStreamIsAnError) {
  api::StatusOr<api::ChatResponse> summary = decoder_->finish();
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), ErrorCode::kUpstreamError);
}

}  // namespace
}  // namespace routers
