// AnthropicWire: OpenAI requests to Anthropic Messages API bodies, and Messages API answers
// (whole and streamed) back to OpenAI's shapes. The Anthropic bodies and event streams are
// those of Anthropic's documentation (Messages examples, tool use, vision, prompt caching,
// streaming), so that the translation is checked against the real wire format.
#include "routers/anthropic_wire.h"

#include <gtest/gtest.h>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/anthropic_messages.h"
#include "api/openai_json.h"
#include "api/sse.h"

namespace routers {
namespace {

using api::ErrorCode;
using api::Json;

api::ChatRequest parse(std::string_view body) {
  auto r = api::parseChatRequest(body);
  EXPECT_TRUE(r.ok()) << r.status().toString() << "\n" << body;
  return r.ok() ? std::move(r).value() : api::ChatRequest{};
}

Json translate(std::string_view openai_body, const AnthropicWireConfig& config = {}) {
  auto r = toAnthropicRequest(parse(openai_body), config);
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : Json();
}

api::Status translateErr(std::string_view openai_body) {
  auto r = toAnthropicRequest(parse(openai_body), AnthropicWireConfig{});
  EXPECT_FALSE(r.ok()) << r->dump();
  return r.ok() ? api::Status() : r.status();
}

// The OpenAI request with `fields` added to a one-message body.
std::string withFields(std::string_view fields) {
  return R"({"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hi"}],)" +
         std::string(fields) + "}";
}

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// ---- requests ------------------------------------------------------------------------------

TEST(AnthropicRequest, PlainTextTurn) {
  Json body = translate(R"({"model":"claude-sonnet-4-5",
      "messages":[{"role":"user","content":"Hello, Claude"}]})");
  EXPECT_EQ(body, Json::parse(R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "messages": [{"role": "user", "content": "Hello, Claude"}]
  })"));
}

TEST(AnthropicRequest, MaxTokensPrefersMaxCompletionTokens) {
  EXPECT_EQ(translate(withFields(R"("max_tokens":100,"max_completion_tokens":256)"))["max_tokens"],
            256);
  EXPECT_EQ(translate(withFields(R"("max_tokens":100)"))["max_tokens"], 100);
  AnthropicWireConfig config;
  config.default_max_tokens = 1024;
  EXPECT_EQ(translate(withFields(R"("stream":false)"), config)["max_tokens"], 1024);
}

TEST(AnthropicRequest, MultipleConversationalTurns) {
  // messages-examples: "Multiple conversational turns".
  Json body = translate(R"({"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[
      {"role": "user", "content": "Hello, Claude"},
      {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "Can you describe LLMs to me?"}]})");
  EXPECT_EQ(body, Json::parse(R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [
      {"role": "user", "content": "Hello, Claude"},
      {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "Can you describe LLMs to me?"}
    ]
  })"));
}

TEST(AnthropicRequest, SystemMessageBecomesSystemString) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","messages":[
      {"role":"system","content":"You are a seasoned data scientist at a Fortune 500 company."},
      {"role":"user","content":"Analyze this dataset for anomalies."}]})");
  EXPECT_EQ(body["system"], "You are a seasoned data scientist at a Fortune 500 company.");
  EXPECT_EQ(body["messages"], Json::parse(R"([
      {"role":"user","content":"Analyze this dataset for anomalies."}])"));
}

TEST(AnthropicRequest, SeveralSystemMessagesBecomeTextBlocksInOrder) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","messages":[
      {"role":"system","content":"You are terse."},
      {"role":"developer","content":[{"type":"text","text":"Answer in French."},
                                     {"type":"text","text":"Never use lists."}]},
      {"role":"user","content":"Bonjour"},
      {"role":"system","content":"Sign with 'C'."},
      {"role":"assistant","content":"Bonjour. C"}]})");
  EXPECT_EQ(body["system"], Json::parse(R"([
      {"type":"text","text":"You are terse."},
      {"type":"text","text":"Answer in French."},
      {"type":"text","text":"Never use lists."},
      {"type":"text","text":"Sign with 'C'."}])"));
  EXPECT_EQ(body["messages"], Json::parse(R"([
      {"role":"user","content":"Bonjour"},
      {"role":"assistant","content":"Bonjour. C"}])"));
}

// tool-use overview, "Single tool example": the second request, with the tool call and its
// result, as an OpenAI client sends it.
TEST(AnthropicRequest, MultiTurnWithToolUseAndToolResult) {
  Json body = translate(R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "tools": [{"type": "function", "function": {
      "name": "get_weather",
      "description": "Get the current weather in a given location",
      "parameters": {
        "type": "object",
        "properties": {
          "location": {"type": "string",
                       "description": "The city and state, e.g. San Francisco, CA"},
          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                   "description": "The unit of temperature, either \"celsius\" or \"fahrenheit\""}
        },
        "required": ["location"]
      }}}],
    "messages": [
      {"role": "user", "content": "What is the weather like in San Francisco?"},
      {"role": "assistant",
       "content": "I'll check the current weather in San Francisco for you.",
       "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
         "function": {"name": "get_weather",
                      "arguments": "{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\"}"}}]},
      {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"}
    ]})");
  EXPECT_EQ(body, Json::parse(R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "tools": [
      {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
          "type": "object",
          "properties": {
            "location": {
              "type": "string",
              "description": "The city and state, e.g. San Francisco, CA"
            },
            "unit": {
              "type": "string",
              "enum": ["celsius", "fahrenheit"],
              "description": "The unit of temperature, either \"celsius\" or \"fahrenheit\""
            }
          },
          "required": ["location"]
        }
      }
    ],
    "messages": [
      {
        "role": "user",
        "content": "What is the weather like in San Francisco?"
      },
      {
        "role": "assistant",
        "content": [
          {
            "type": "text",
            "text": "I'll check the current weather in San Francisco for you."
          },
          {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {
              "location": "San Francisco, CA",
              "unit": "celsius"
            }
          }
        ]
      },
      {
        "role": "user",
        "content": [
          {
            "type": "tool_result",
            "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
            "content": "15 degrees"
          }
        ]
      }
    ]
  })"));
}

TEST(AnthropicRequest, ParallelToolResultsMergeIntoOneUserTurn) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","messages":[
      {"role":"user","content":"Weather and time in New York?"},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"toolu_1","type":"function",
         "function":{"name":"get_weather","arguments":"{\"location\":\"New York, NY\"}"}},
        {"id":"toolu_2","type":"function",
         "function":{"name":"get_time","arguments":"{\"timezone\":\"America/New_York\"}"}}]},
      {"role":"tool","tool_call_id":"toolu_1","content":"59°F, mostly cloudy"},
      {"role":"tool","tool_call_id":"toolu_2","content":[{"type":"text","text":"3:04 PM"}]},
      {"role":"user","content":"Thanks. Dress advice?"}]})");
  EXPECT_EQ(body["messages"], Json::parse(R"([
    {"role":"user","content":"Weather and time in New York?"},
    {"role":"assistant","content":[
      {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"New York, NY"}},
      {"type":"tool_use","id":"toolu_2","name":"get_time",
       "input":{"timezone":"America/New_York"}}]},
    {"role":"user","content":[
      {"type":"tool_result","tool_use_id":"toolu_1","content":"59°F, mostly cloudy"},
      {"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"3:04 PM"}]},
      {"type":"text","text":"Thanks. Dress advice?"}]}])"));
}

TEST(AnthropicRequest, ConsecutiveSameRoleMessagesMerge) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","messages":[
      {"role":"user","content":"First."},
      {"role":"user","content":[{"type":"text","text":"Second."}]},
      {"role":"assistant","content":"A"},
      {"role":"assistant","content":"B"}]})");
  EXPECT_EQ(body["messages"], Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"First."},{"type":"text","text":"Second."}]},
    {"role":"assistant","content":[{"type":"text","text":"A"},{"type":"text","text":"B"}]}])"));
}

TEST(AnthropicRequest, EmptyToolArgumentsAreAnEmptyInput) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","messages":[
      {"role":"user","content":"Where am I?"},
      {"role":"assistant","tool_calls":[{"id":"toolu_9","type":"function",
        "function":{"name":"get_location","arguments":""}}]},
      {"role":"tool","tool_call_id":"toolu_9","content":"San Francisco, CA"}]})");
  EXPECT_EQ(body["messages"][1], Json::parse(R"(
    {"role":"assistant","content":[
      {"type":"tool_use","id":"toolu_9","name":"get_location","input":{}}]})"));
}

// messages-examples, "Vision": the base64 and the URL-referenced image.
TEST(AnthropicRequest, ImagesAsBase64AndUrlSources) {
  Json body = translate(R"({"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[
      {"role":"user","content":[
        {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ=="}},
        {"type":"text","text":"What is in the above image?"}]},
      {"role":"assistant","content":"An ant."},
      {"role":"user","content":[
        {"type":"image_url","image_url":{
          "url":"https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg",
          "detail":"high"}},
        {"type":"text","text":"What is in the above image?"}]}]})");
  EXPECT_EQ(body["messages"], Json::parse(R"([
    {"role": "user", "content": [
      {"type": "image", "source": {
        "type": "base64",
        "media_type": "image/jpeg",
        "data": "/9j/4AAQSkZJRgABAQ=="
      }},
      {"type": "text", "text": "What is in the above image?"}
    ]},
    {"role": "assistant", "content": "An ant."},
    {"role": "user", "content": [
      {"type": "image", "source": {
        "type": "url",
        "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
      }},
      {"type": "text", "text": "What is in the above image?"}
    ]}])"));
}

TEST(AnthropicRequest, SamplingStopStreamAndUser) {
  Json body = translate(withFields(
      R"("temperature":0.7,"top_p":0.9,"stop":["\n\nHuman:","END"],"stream":true,
         "stream_options":{"include_usage":true},"user":"user-7f3a","metadata":{"k":"v"},
         "n":1,"presence_penalty":0,"frequency_penalty":0.0,"logprobs":false,
         "response_format":{"type":"text"},"service_tier":null)"));
  EXPECT_EQ(body, Json::parse(R"({
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "messages": [{"role": "user", "content": "Hi"}],
    "temperature": 0.7,
    "top_p": 0.9,
    "stop_sequences": ["\n\nHuman:", "END"],
    "stream": true,
    "metadata": {"user_id": "user-7f3a"}
  })"));
  EXPECT_EQ(translate(withFields(R"("temperature":1)"))["temperature"], 1.0);
  EXPECT_EQ(translate(withFields(R"("temperature":0)"))["temperature"], 0.0);
}

constexpr std::string_view kTools = R"("tools":[
    {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "properties":{"location":{"type":"string"}},"required":["location"]}}},
    {"type":"function","function":{"name":"get_time","description":"Current time",
      "strict":true}}])";

TEST(AnthropicRequest, ToolsWithoutParametersGetAnEmptyObjectSchema) {
  Json body = translate(withFields(kTools));
  EXPECT_EQ(body["tools"], Json::parse(R"([
    {"name":"get_weather","input_schema":{"type":"object",
      "properties":{"location":{"type":"string"}},"required":["location"]}},
    {"name":"get_time","description":"Current time",
     "input_schema":{"type":"object","properties":{}},"strict":true}])"));
  EXPECT_FALSE(body.contains("tool_choice"));
}

TEST(AnthropicRequest, ToolChoiceModes) {
  std::string tools(kTools);
  EXPECT_EQ(translate(withFields(tools + R"(,"tool_choice":"auto")"))["tool_choice"],
            Json::parse(R"({"type":"auto"})"));
  EXPECT_EQ(translate(withFields(tools + R"(,"tool_choice":"required")"))["tool_choice"],
            Json::parse(R"({"type":"any"})"));
  EXPECT_EQ(translate(withFields(tools + R"(,"tool_choice":"none")"))["tool_choice"],
            Json::parse(R"({"type":"none"})"));
  EXPECT_EQ(
      translate(withFields(
          tools +
          R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}})"))["tool_choice"],
      Json::parse(R"({"type":"tool","name":"get_time"})"));
}

TEST(AnthropicRequest, ParallelToolCallsFalseDisablesParallelToolUse) {
  std::string tools(kTools);
  EXPECT_EQ(translate(withFields(tools + R"(,"parallel_tool_calls":false)"))["tool_choice"],
            Json::parse(R"({"type":"auto","disable_parallel_tool_use":true})"));
  EXPECT_EQ(translate(withFields(
                tools + R"(,"tool_choice":"required","parallel_tool_calls":false)"))["tool_choice"],
            Json::parse(R"({"type":"any","disable_parallel_tool_use":true})"));
  EXPECT_EQ(translate(withFields(
                tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}},
                           "parallel_tool_calls":false)"))["tool_choice"],
            Json::parse(R"({"type":"tool","name":"get_time","disable_parallel_tool_use":true})"));
  EXPECT_EQ(translate(withFields(
                tools + R"(,"tool_choice":"none","parallel_tool_calls":false)"))["tool_choice"],
            Json::parse(R"({"type":"none"})"));
  EXPECT_FALSE(
      translate(withFields(tools + R"(,"parallel_tool_calls":true)")).contains("tool_choice"));
  EXPECT_FALSE(translate(withFields(R"("parallel_tool_calls":false)")).contains("tool_choice"));
}

void expectInvalid(std::string_view body, std::string_view param) {
  api::Status s = translateErr(body);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest) << body;
  EXPECT_EQ(s.param(), param) << s.message();
  EXPECT_FALSE(s.message().empty());
}

TEST(AnthropicRequest, RejectsFieldsWithoutCounterpart) {
  expectInvalid(withFields(R"("n":2)"), "n");
  expectInvalid(withFields(R"("logprobs":true)"), "logprobs");
  expectInvalid(withFields(R"("logprobs":true,"top_logprobs":3)"), "logprobs");
  expectInvalid(withFields(R"("logit_bias":{"50256":-100})"), "logit_bias");
  expectInvalid(withFields(R"("presence_penalty":0.5)"), "presence_penalty");
  expectInvalid(withFields(R"("frequency_penalty":-1)"), "frequency_penalty");
  expectInvalid(withFields(R"("seed":42)"), "seed");
  expectInvalid(withFields(R"("seed":0)"), "seed");
  expectInvalid(withFields(R"("response_format":{"type":"json_object"})"), "response_format");
  expectInvalid(withFields(R"("response_format":{"type":"json_schema","json_schema":
      {"name":"answer","schema":{"type":"object"}}})"),
                "response_format");
  expectInvalid(withFields(R"("temperature":1.5)"), "temperature");
  expectInvalid(withFields(R"("reasoning_effort":"high")"), "reasoning_effort");
  expectInvalid(withFields(R"("modalities":["text","audio"])"), "modalities");
  expectInvalid(withFields(R"("audio":{"voice":"alloy","format":"wav"})"), "audio");
}

TEST(AnthropicRequest, SeedMessageSaysWhy) {
  api::Status s = translateErr(withFields(R"("seed":42)"));
  EXPECT_NE(s.message().find("seed"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Anthropic"), std::string::npos) << s.message();
}

TEST(AnthropicRequest, RejectsUntranslatableContentParts) {
  expectInvalid(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"text","text":"Transcribe:"},
      {"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}]})",
                "messages[0].content[1]");
  expectInvalid(R"({"model":"m","messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"file","file":{"file_id":"file-abc"}}]}]})",
                "messages[1].content[0]");
  expectInvalid(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"image_url","image_url":{"url":"data:image/bmp;base64,Qk0="}}]}]})",
                "messages[0].content[0]");
  expectInvalid(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]})",
                "messages[0].content[0]");
  expectInvalid(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"text","text":"a"},
      {"type":"image_url","image_url":{"url":"ftp://example.com/a.png"}}]}]})",
                "messages[0].content[1]");
}

TEST(AnthropicRequest, RejectsToolArgumentsThatAreNotAnObject) {
  auto body = [](std::string_view args) {
    return R"({"model":"m","messages":[{"role":"user","content":"q"},
        {"role":"assistant","tool_calls":[
          {"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
          {"id":"b","type":"function","function":{"name":"f","arguments":")" +
           std::string(args) + R"("}}]}]})";
  };
  expectInvalid(body(R"([1,2])"), "messages[1].tool_calls[1].function.arguments");
  expectInvalid(body(R"(\"text\")"), "messages[1].tool_calls[1].function.arguments");
  expectInvalid(body(R"({\"a\":)"), "messages[1].tool_calls[1].function.arguments");
  std::string deep = std::string(200, '[') + std::string(200, ']');
  expectInvalid(body("{\\\"a\\\":" + deep + "}"), "messages[1].tool_calls[1].function.arguments");
}

TEST(AnthropicRequest, RejectsFunctionRoleAndSystemOnly) {
  expectInvalid(R"({"model":"m","messages":[{"role":"user","content":"q"},
      {"role":"function","name":"f","content":"42"}]})",
                "messages[1].role");
  expectInvalid(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},
      {"role":"developer","content":"Be kind."}]})",
                "messages");
}

TEST(AnthropicWire, EncodeBuildsUrlHeadersAndBody) {
  AnthropicWireConfig config;
  config.base_url = "https://gateway.example/anthropic/v1";
  config.api_key = "sk-ant-test";
  AnthropicWire wire(config);
  auto req = wire.encode(parse(R"({"model":"claude-haiku-4-5",
      "messages":[{"role":"user","content":"Hello"}],"max_tokens":256,"stream":true})"));
  ASSERT_TRUE(req.ok()) << req.status().toString();
  EXPECT_EQ(req->url, "https://gateway.example/anthropic/v1/messages");
  ASSERT_EQ(req->headers.size(), 2u);
  EXPECT_EQ(req->headers[0], (std::pair<std::string, std::string>("x-api-key", "sk-ant-test")));
  EXPECT_EQ(req->headers[1],
            (std::pair<std::string, std::string>("anthropic-version", "2023-06-01")));
  EXPECT_EQ(Json::parse(req->body), Json::parse(R"({"model":"claude-haiku-4-5",
      "messages":[{"role":"user","content":"Hello"}],"max_tokens":256,"stream":true})"));

  AnthropicWire keyless{AnthropicWireConfig{}};
  auto bare = keyless.encode(parse(withFields(R"("stream":false)")));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->url, "https://api.anthropic.com/v1/messages");
  ASSERT_EQ(bare->headers.size(), 1u);
  EXPECT_EQ(bare->headers[0].first, "anthropic-version");

  auto refused = keyless.encode(parse(withFields(R"("seed":1)")));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().param(), "seed");
}

// ---- non-streamed answers ----------------------------------------------------------------

api::ChatResponse decode(std::string_view body) {
  auto r = fromAnthropicResponse(Json::parse(body));
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : api::ChatResponse{};
}

TEST(AnthropicResponse, TextAnswer) {
  // messages-examples, "Basic request and response".
  int64_t before = now();
  api::ChatResponse r = decode(R"({
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello!"}],
    "model": "claude-sonnet-4-5",
    "stop_reason": "end_turn",
    "stop_sequence": null,
    "usage": {"input_tokens": 12, "output_tokens": 6}
  })");
  EXPECT_EQ(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
  EXPECT_EQ(r.model, "claude-sonnet-4-5");
  EXPECT_GE(r.created, before);
  EXPECT_LE(r.created, now());
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].index, 0);
  EXPECT_EQ(r.choices[0].message.role, api::Role::kAssistant);
  EXPECT_EQ(r.choices[0].message.content.kind, api::Content::Kind::kText);
  EXPECT_EQ(r.choices[0].message.content.text, "Hello!");
  EXPECT_TRUE(r.choices[0].message.tool_calls.empty());
  EXPECT_EQ(r.choices[0].finish_reason, "stop");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(r.usage->prompt_tokens, 12);
  EXPECT_EQ(r.usage->completion_tokens, 6);
  EXPECT_EQ(r.usage->total_tokens, 18);
  EXPECT_EQ(r.usage->cached_prompt_tokens, 0);
  EXPECT_EQ(r.usage->cache_write_prompt_tokens, 0);
}

TEST(AnthropicResponse, ToolUseAnswer) {
  // tool-use overview, "Single tool example" (the documentation's example has no usage).
  api::ChatResponse r = decode(R"({
    "id": "msg_01Aq9w938a90dw8q",
    "model": "claude-sonnet-4-5",
    "stop_reason": "tool_use",
    "role": "assistant",
    "content": [
      {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
      {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
       "input": {"location": "San Francisco, CA", "unit": "celsius"}}
    ]
  })");
  ASSERT_EQ(r.choices.size(), 1u);
  const api::Message& m = r.choices[0].message;
  EXPECT_EQ(m.content.text, "I'll check the current weather in San Francisco for you.");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
  EXPECT_EQ(m.tool_calls[0].type, "function");
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location":"San Francisco, CA","unit":"celsius"})");
  EXPECT_EQ(r.choices[0].finish_reason, "tool_calls");
  EXPECT_FALSE(r.usage);
}

TEST(AnthropicResponse, OnlyToolUseLeavesContentNull) {
  api::ChatResponse r = decode(R"({"id":"msg_1","type":"message","role":"assistant",
    "model":"claude-sonnet-4-5","stop_reason":"tool_use","stop_sequence":null,
    "content":[
      {"type":"tool_use","id":"toolu_a","name":"get_weather","input":{"location":"Paris"}},
      {"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}],
    "usage":{"input_tokens":400,"output_tokens":80}})");
  const api::Message& m = r.choices[0].message;
  EXPECT_TRUE(m.content.isNull());
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location":"Paris"})");
  EXPECT_EQ(m.tool_calls[1].id, "toolu_b");
  EXPECT_EQ(m.tool_calls[1].arguments, "{}");
}

TEST(AnthropicResponse, PromptCacheUsage) {
  // prompt-caching: the first request writes the cache, the next one reads it.
  api::ChatResponse write = decode(R"({"id":"msg_01","type":"message","role":"assistant",
    "model":"claude-sonnet-4-5","content":[{"type":"text","text":"The book's themes..."}],
    "stop_reason":"end_turn","stop_sequence":null,
    "usage":{"input_tokens":21,"cache_creation_input_tokens":188086,
             "cache_read_input_tokens":0,"output_tokens":393}})");
  ASSERT_TRUE(write.usage);
  EXPECT_EQ(write.usage->prompt_tokens, 21 + 188086);
  EXPECT_EQ(write.usage->cache_write_prompt_tokens, 188086);
  EXPECT_EQ(write.usage->cached_prompt_tokens, 0);
  EXPECT_EQ(write.usage->completion_tokens, 393);
  EXPECT_EQ(write.usage->total_tokens, 21 + 188086 + 393);

  api::ChatResponse read = decode(R"({"id":"msg_02","type":"message","role":"assistant",
    "model":"claude-sonnet-4-5","content":[{"type":"text","text":"Also..."}],
    "stop_reason":"end_turn","stop_sequence":null,
    "usage":{"input_tokens":3,"cache_creation_input_tokens":null,
             "cache_read_input_tokens":188086,"output_tokens":212,
             "cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},
             "service_tier":"standard"}})");
  ASSERT_TRUE(read.usage);
  EXPECT_EQ(read.usage->prompt_tokens, 188089);
  EXPECT_EQ(read.usage->cached_prompt_tokens, 188086);
  EXPECT_EQ(read.usage->cache_write_prompt_tokens, 0);
  EXPECT_EQ(read.usage->completion_tokens, 212);
  EXPECT_EQ(read.usage->total_tokens, 188301);
}

TEST(AnthropicResponse, ThinkingIsReasoningContentAndTextBlocksConcatenate) {
  api::ChatResponse r = decode(R"({"id":"msg_t","type":"message","role":"assistant",
    "model":"claude-sonnet-4-5","stop_reason":"end_turn","stop_sequence":null,
    "content":[
      {"type":"thinking","thinking":"27 * 453 = 12,231","signature":"EqQBCgIYAhIM"},
      {"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},
      {"type":"text","text":"27 * 453 = "},
      {"type":"text","text":"12,231"}],
    "usage":{"input_tokens":50,"output_tokens":300}})");
  EXPECT_EQ(r.choices[0].message.content.text, "27 * 453 = 12,231");
  EXPECT_EQ(r.choices[0].message.reasoning_content, "27 * 453 = 12,231");
  EXPECT_TRUE(r.choices[0].message.tool_calls.empty());
  EXPECT_TRUE(r.native.empty()) << "a translated request keeps no native body";
}

TEST(AnthropicResponse, StopReasons) {
  auto finish = [](std::string_view stop_reason) {
    std::string body = R"({"id":"msg","model":"m","content":[{"type":"text","text":"x"}],
        "stop_reason":)" +
                       std::string(stop_reason) +
                       R"(,"usage":{"input_tokens":1,"output_tokens":1}})";
    return decode(body).choices.at(0).finish_reason;
  };
  EXPECT_EQ(finish(R"("end_turn")"), "stop");
  EXPECT_EQ(finish(R"("stop_sequence")"), "stop");
  EXPECT_EQ(finish(R"("max_tokens")"), "length");
  EXPECT_EQ(finish(R"("model_context_window_exceeded")"), "length");
  EXPECT_EQ(finish(R"("tool_use")"), "tool_calls");
  EXPECT_EQ(finish(R"("refusal")"), "content_filter");
  EXPECT_EQ(finish(R"("pause_turn")"), "stop");
  EXPECT_EQ(finish(R"("a_reason_from_2030")"), "stop");
  EXPECT_EQ(finish("null"), "stop");
}

TEST(AnthropicWire, DecodeResponseTakesTheRequestModelWhenAbsent) {
  // messages-examples, "Multiple conversational turns": the documented answer has no model.
  AnthropicWire wire{AnthropicWireConfig{}};
  api::ChatRequest req = parse(withFields(R"("stream":false)"));
  req.model = "claude-sonnet-4-5";
  auto r = wire.decodeResponse(R"({
    "id": "msg_018gCsTGsXkYJVqYPxTgDHBU",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Sure, I'd be happy to provide..."}],
    "stop_reason": "end_turn",
    "stop_sequence": null,
    "usage": {"input_tokens": 30, "output_tokens": 309}
  })",
                               req);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->model, "claude-sonnet-4-5");
  EXPECT_EQ(r->id, "msg_018gCsTGsXkYJVqYPxTgDHBU");
  EXPECT_EQ(r->choices.at(0).message.content.text, "Sure, I'd be happy to provide...");
  EXPECT_EQ(r->usage->total_tokens, 339);
}

void expectUpstreamError(std::string_view body, std::string_view mention) {
  AnthropicWire wire{AnthropicWireConfig{}};
  auto r = wire.decodeResponse(body, api::ChatRequest{});
  ASSERT_FALSE(r.ok()) << body;
  EXPECT_EQ(r.status().code(), ErrorCode::kUpstreamError) << body;
  EXPECT_NE(r.status().message().find(mention), std::string::npos)
      << r.status().message() << " should mention " << mention;
}

TEST(AnthropicResponse, MalformedBodies) {
  expectUpstreamError("not json", "not valid JSON");
  expectUpstreamError("[]", "not a JSON object");
  expectUpstreamError(R"({"content":[]})", "'id'");
  expectUpstreamError(R"({"id":7,"content":[]})", "'id'");
  expectUpstreamError(R"({"id":"m","model":3,"content":[]})", "'model'");
  expectUpstreamError(R"({"id":"m"})", "'content'");
  expectUpstreamError(R"({"id":"m","content":"Hello"})", "'content'");
  expectUpstreamError(R"({"id":"m","content":[1]})", "'content[0]'");
  expectUpstreamError(R"({"id":"m","content":[{"text":"a"}]})", "'content[0].type'");
  expectUpstreamError(R"({"id":"m","content":[{"type":"text"}]})", "'content[0].text'");
  expectUpstreamError(R"({"id":"m","content":[{"type":"text","text":"a"},
      {"type":"tool_use","id":"t","input":{}}]})",
                      "'content[1].name'");
  expectUpstreamError(R"({"id":"m","content":[{"type":"tool_use","id":"t","name":"f"}]})",
                      "'content[0].input'");
  expectUpstreamError(R"({"id":"m","content":[{"type":"tool_use","id":"t","name":"f",
      "input":"{}"}]})",
                      "'content[0].input'");
  expectUpstreamError(R"({"id":"m","content":[],"stop_reason":1})", "'stop_reason'");
  expectUpstreamError(R"({"id":"m","content":[],"usage":[]})", "'usage'");
  expectUpstreamError(R"({"id":"m","content":[],"usage":{"output_tokens":3}})",
                      "'usage.input_tokens'");
  expectUpstreamError(R"({"id":"m","content":[],"usage":{"input_tokens":"3","output_tokens":3}})",
                      "'usage.input_tokens'");
  expectUpstreamError(R"({"id":"m","content":[],"usage":{"input_tokens":3,"output_tokens":-1}})",
                      "'usage.output_tokens'");
  expectUpstreamError(R"({"id":"m","content":[],"usage":{"input_tokens":3,"output_tokens":1,
      "cache_read_input_tokens":1.5}})",
                      "'usage.cache_read_input_tokens'");
  std::string deep =
      R"({"id":"m","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":)" +
      std::string(600, '[') + std::string(600, ']') + "}}]}";
  expectUpstreamError(deep, "nest at most 512");
  std::string nul = R"({"id":"m","content":[],"usage":{"input_tokens":3,"output_tokens":1}})";
  nul += std::string(2, '\0') + "junk";
  expectUpstreamError(nul, "NUL byte");
}

TEST(AnthropicResponse, ErrorBodies) {
  AnthropicWire wire{AnthropicWireConfig{}};
  auto overloaded = wire.decodeResponse(
      R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})",
      api::ChatRequest{});
  ASSERT_FALSE(overloaded.ok());
  EXPECT_EQ(overloaded.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(overloaded.status().message().find("Overloaded"), std::string::npos);
  auto api_error = wire.decodeResponse(
      R"({"type":"error","error":{"type":"api_error","message":"Internal server error"}})",
      api::ChatRequest{});
  ASSERT_FALSE(api_error.ok());
  EXPECT_EQ(api_error.status().code(), ErrorCode::kUpstreamError);
  EXPECT_NE(api_error.status().message().find("Internal server error"), std::string::npos);
}

// ---- streamed answers ---------------------------------------------------------------------

struct Streamed {
  std::unique_ptr<StreamDecoder> decoder;
  std::vector<api::ChatChunk> chunks;
  api::Status status;  // the first failing onEvent, OK when none failed
};

// Feeds a raw event stream through the SSE parser and the decoder, as the provider does.
Streamed stream(std::string_view sse, std::string model = "claude-sonnet-4-5") {
  AnthropicWire wire{AnthropicWireConfig{}};
  api::ChatRequest req;
  req.model = std::move(model);
  Streamed out;
  out.decoder = wire.newStreamDecoder(req);
  api::SseParser parser;
  std::vector<api::SseEvent> events;
  EXPECT_TRUE(parser.feed(sse, events));
  for (const api::SseEvent& e : events) {
    out.status = out.decoder->onEvent(e, out.chunks);
    if (!out.status.ok()) break;
  }
  return out;
}

std::string contentOf(const std::vector<api::ChatChunk>& chunks) {
  std::string text;
  for (const auto& c : chunks) {
    if (c.choices.at(0).delta.content) text += *c.choices[0].delta.content;
  }
  return text;
}

// streaming, "Basic streaming request".
constexpr std::string_view kTextStream = R"(event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

)";

TEST(AnthropicStream, TextStream) {
  int64_t before = now();
  Streamed s = stream(kTextStream);
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 3u);
  for (const api::ChatChunk& c : s.chunks) {
    EXPECT_EQ(c.id, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
    EXPECT_EQ(c.model, "claude-sonnet-4-5-20250929");
    EXPECT_GE(c.created, before);
    EXPECT_LE(c.created, now());
    EXPECT_FALSE(c.usage);
    ASSERT_EQ(c.choices.size(), 1u);
    EXPECT_EQ(c.choices[0].index, 0);
    EXPECT_TRUE(c.choices[0].delta.tool_calls.empty());
  }
  EXPECT_EQ(s.chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(s.chunks[0].choices[0].delta.content, "Hello");
  EXPECT_FALSE(s.chunks[0].choices[0].finish_reason);
  EXPECT_FALSE(s.chunks[1].choices[0].delta.role);
  EXPECT_EQ(s.chunks[1].choices[0].delta.content, "!");
  EXPECT_FALSE(s.chunks[2].choices[0].delta.role);
  EXPECT_FALSE(s.chunks[2].choices[0].delta.content);
  EXPECT_EQ(s.chunks[2].choices[0].finish_reason, "stop");

  auto summary = s.decoder->finish();
  ASSERT_TRUE(summary.ok()) << summary.status().toString();
  EXPECT_EQ(summary->id, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
  EXPECT_EQ(summary->model, "claude-sonnet-4-5-20250929");
  EXPECT_EQ(summary->created, s.chunks[0].created);
  EXPECT_TRUE(summary->choices.empty());
  ASSERT_TRUE(summary->usage);
  EXPECT_EQ(summary->usage->prompt_tokens, 25);
  EXPECT_EQ(summary->usage->completion_tokens, 15);
  EXPECT_EQ(summary->usage->total_tokens, 40);
}

// streaming, "Streaming request with tool use".
constexpr std::string_view kToolStream = R"(event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'s"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Francisco"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" CA"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":":"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

)";

TEST(AnthropicStream, ToolUseStream) {
  Streamed s = stream(kToolStream);
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  // 13 text deltas, the tool call's start, 8 argument pieces (the empty one is not sent),
  // the finish.
  ASSERT_EQ(s.chunks.size(), 13u + 1 + 8 + 1);
  EXPECT_EQ(s.chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(contentOf(s.chunks), "Okay, let's check the weather for San Francisco, CA:");

  const api::Delta& start = s.chunks[13].choices[0].delta;
  EXPECT_FALSE(start.role);
  EXPECT_FALSE(start.content);
  ASSERT_EQ(start.tool_calls.size(), 1u);
  EXPECT_EQ(start.tool_calls[0].index, 0);
  EXPECT_EQ(start.tool_calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
  EXPECT_EQ(start.tool_calls[0].type, "function");
  EXPECT_EQ(start.tool_calls[0].name, "get_weather");
  EXPECT_EQ(start.tool_calls[0].arguments, "");

  std::string arguments;
  for (size_t i = 14; i < 22; ++i) {
    const api::Delta& d = s.chunks[i].choices[0].delta;
    ASSERT_EQ(d.tool_calls.size(), 1u) << i;
    EXPECT_EQ(d.tool_calls[0].index, 0);
    EXPECT_FALSE(d.tool_calls[0].id);
    EXPECT_FALSE(d.tool_calls[0].type);
    EXPECT_FALSE(d.tool_calls[0].name);
    arguments += d.tool_calls[0].arguments.value_or("<none>");
  }
  EXPECT_EQ(arguments, R"({"location": "San Francisco, CA", "unit": "fahrenheit"})");
  EXPECT_EQ(s.chunks[22].choices[0].finish_reason, "tool_calls");
  for (const api::ChatChunk& c : s.chunks) EXPECT_EQ(c.id, "msg_014p7gG3wDgGV9EUtLvnow3U");

  auto summary = s.decoder->finish();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->usage->prompt_tokens, 472);
  EXPECT_EQ(summary->usage->completion_tokens, 89);
  EXPECT_EQ(summary->usage->total_tokens, 561);
}

TEST(AnthropicStream, ToolCallIndexCountsToolCallsOnly) {
  Streamed s = stream(
      R"(data: {"type":"message_start","message":{"id":"msg_p","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":1}}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"I'll call both."}}

data: {"type":"content_block_stop","index":0}

data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_w","name":"get_weather","input":{}}}

data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_t","name":"get_time","input":{}}}

data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"timezone\":\"UTC\"}"}}

data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":\"Paris\"}"}}

data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":60}}

data: {"type":"message_stop"}

)");
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 6u);
  EXPECT_EQ(s.chunks[0].choices[0].delta.content, "I'll call both.");
  EXPECT_EQ(s.chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(s.chunks[1].choices[0].delta.tool_calls.at(0).index, 0);
  EXPECT_EQ(s.chunks[1].choices[0].delta.tool_calls.at(0).id, "toolu_w");
  EXPECT_EQ(s.chunks[2].choices[0].delta.tool_calls.at(0).index, 1);
  EXPECT_EQ(s.chunks[2].choices[0].delta.tool_calls.at(0).id, "toolu_t");
  EXPECT_EQ(s.chunks[3].choices[0].delta.tool_calls.at(0).index, 1);
  EXPECT_EQ(s.chunks[3].choices[0].delta.tool_calls.at(0).arguments, R"({"timezone":"UTC"})");
  EXPECT_EQ(s.chunks[4].choices[0].delta.tool_calls.at(0).index, 0);
  EXPECT_EQ(s.chunks[4].choices[0].delta.tool_calls.at(0).arguments, R"({"location":"Paris"})");
  EXPECT_EQ(s.chunks[5].choices[0].finish_reason, "tool_calls");
}

TEST(AnthropicStream, FirstChunkCarriesRoleEvenWhenItIsAToolCall) {
  Streamed s = stream(R"(data: {"type":"message_start","message":{"id":"msg_q","model":"m"}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}

)");
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 1u);
  EXPECT_EQ(s.chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(s.chunks[0].choices[0].delta.tool_calls.at(0).name, "f");
}

// streaming, "Streaming request with extended thinking": no usage at all in this example.
constexpr std::string_view kThinkingStream = R"(event: message_start
data: {"type": "message_start", "message": {"id": "msg_01...", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me solve this step by step:\n\n1. First break down 27 * 453"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\n2. 453 = 400 + 50 + 3"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}

)";

TEST(AnthropicStream, ThinkingStreamsAsReasoningContent) {
  Streamed s = stream(kThinkingStream);
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 4u);
  EXPECT_EQ(s.chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(s.chunks[0].choices[0].delta.reasoning_content,
            "Let me solve this step by step:\n\n1. First break down 27 * 453");
  EXPECT_EQ(s.chunks[1].choices[0].delta.reasoning_content, "\n2. 453 = 400 + 50 + 3");
  EXPECT_EQ(s.chunks[2].choices[0].delta.content, "27 * 453 = 12,231");
  EXPECT_EQ(s.chunks[3].choices[0].finish_reason, "stop");
  for (const auto& c : s.chunks) EXPECT_TRUE(c.native.empty());
  auto summary = s.decoder->finish();
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->id, "msg_01...");
  EXPECT_FALSE(summary->usage);
  EXPECT_TRUE(summary->native.empty());
}

// ---- pass-through of Anthropic's own Messages requests ------------------------------------

// A Messages API request as Claude Code sends one: cache_control markers, a thinking block
// with its signature from an earlier turn, a tool whose schema's keys are not in sorted order.
constexpr std::string_view kMessagesBody =
    R"({"model":"claude","max_tokens":1024,"system":[{"type":"text","text":"You are terse.",)"
    R"("cache_control":{"type":"ephemeral"}}],"thinking":{"type":"enabled","budget_tokens":1024},)"
    R"("tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"zeta":)"
    R"({"type":"string"},"alpha":{"type":"string"}}},"cache_control":{"type":"ephemeral"}}],)"
    R"("messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":[)"
    R"({"type":"thinking","thinking":"I should call it.","signature":"EqQBCgIYAhIM"},)"
    R"({"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"zeta":"z"}}]},)"
    R"({"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]})";

api::ChatRequest messagesRequest() {
  auto r = api::parseMessagesRequest(kMessagesBody);
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : api::ChatRequest{};
}

TEST(AnthropicNative, AMessagesRequestIsSentAsItCameButForModelMaxTokensAndStream) {
  api::ChatRequest req = messagesRequest();
  ASSERT_TRUE(sentNatively(req));
  req.model = "claude-up-20250101";
  req.max_tokens = 512;  // a budget lowered the cap
  req.stream = true;
  req.native_headers.emplace_back("anthropic-beta", "interleaved-thinking-2025-05-14");
  AnthropicWire wire{AnthropicWireConfig{"http://h/v1", "k"}};
  auto w = wire.encode(req);
  ASSERT_TRUE(w.ok()) << w.status().toString();
  std::string rest(kMessagesBody.substr(std::string_view(R"({"model":"claude","max_tokens":1024,)").size()));
  EXPECT_EQ(w->body, R"({"model":"claude-up-20250101","max_tokens":512,"stream":true,)" + rest);
  EXPECT_NE(w->body.find(R"("signature":"EqQBCgIYAhIM")"), std::string::npos);
  EXPECT_LT(w->body.find("zeta"), w->body.find("alpha")) << "the schema's key order is kept";
  bool beta = false;
  for (const auto& [k, v] : w->headers) beta = beta || (k == "anthropic-beta" && v == "interleaved-thinking-2025-05-14");
  EXPECT_TRUE(beta);
  // Not streamed: no stream member at all. An OpenAI-born request is translated as before.
  req.stream = false;
  EXPECT_EQ(wire.encode(req)->body.find("\"stream\""), std::string::npos);
  api::ChatRequest openai = parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_FALSE(sentNatively(openai));
}

TEST(AnthropicNative, BetasAndOneHourCaches) {
  EXPECT_EQ(forwardedBetas("interleaved-thinking-2025-05-14, context-1m-2025-08-07,files-api"),
            "interleaved-thinking-2025-05-14,files-api");
  EXPECT_EQ(forwardedBetas("context-1m-2025-08-07"), "");
  EXPECT_EQ(forwardedBetas(" , "), "");
  api::ChatRequest req = messagesRequest();
  req.native_headers.emplace_back("anthropic-beta", "context-1m-2025-08-07");
  auto w = AnthropicWire{AnthropicWireConfig{}}.encode(req);
  ASSERT_TRUE(w.ok());
  for (const auto& [k, v] : w->headers) EXPECT_NE(k, "anthropic-beta") << v;
  EXPECT_FALSE(asksLongCache(req));
  auto ttl = api::parseMessagesRequest(
      R"({"model":"m","max_tokens":8,"system":[{"type":"text","text":"S",)"
      R"("cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"q"}]})");
  ASSERT_TRUE(ttl.ok());
  EXPECT_TRUE(asksLongCache(*ttl));
  // Usage names the 1-hour cache writes apart.
  api::ChatResponse r = decode(R"({"id":"msg_c","type":"message","role":"assistant",
    "content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",
    "usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":0,
      "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},
      "output_tokens":5}})");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(r.usage->cache_write_prompt_tokens, 300);
  EXPECT_EQ(r.usage->cache_write_1h_prompt_tokens, 200);
  EXPECT_EQ(r.usage->prompt_tokens, 310);
}

TEST(AnthropicNative, AnswersKeepTheUpstreamsBodyAndEvents) {
  api::ChatRequest req = messagesRequest();
  AnthropicWire wire{AnthropicWireConfig{}};
  const std::string body =
      R"({"id":"msg_t","type":"message","role":"assistant","model":"claude-up","content":[)"
      R"({"type":"thinking","thinking":"t","signature":"sig"},{"type":"text","text":"hi"}],)"
      R"("stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}})";
  auto r = wire.decodeResponse(body, req);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->native, body);
  EXPECT_EQ(r->choices[0].message.content.text, "hi");

  // Streamed: every event goes on, in order and as it came; the events before the first
  // chunk wait for it (the summary has those that never found one).
  auto decoder = wire.newStreamDecoder(req);
  api::SseParser parser;
  std::vector<api::SseEvent> events;
  ASSERT_TRUE(parser.feed(kThinkingStream, events));
  std::vector<api::ChatChunk> chunks;
  for (const auto& e : events) ASSERT_TRUE(decoder->onEvent(e, chunks).ok());
  auto summary = decoder->finish();
  ASSERT_TRUE(summary.ok());
  std::string handed;
  for (const auto& c : chunks) {
    EXPECT_FALSE(c.native.empty()) << "every chunk stands for at least one event";
    handed += c.native;
  }
  handed += summary->native;
  EXPECT_EQ(handed, kThinkingStream);
  EXPECT_EQ(chunks[0].native.rfind("event: message_start\n", 0), 0u);
  EXPECT_EQ(chunks[0].choices.at(0).delta.reasoning_content.value_or("").substr(0, 6), "Let me");
  // Once a chunk has gone, an event that produces none goes at once, in a chunk of its own.
  EXPECT_TRUE(chunks.back().choices.empty());
  EXPECT_EQ(chunks.back().native, "event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n");
  EXPECT_TRUE(summary->native.empty());
}

TEST(AnthropicStream, CacheUsageIsCumulative) {
  Streamed s = stream(R"(event: message_start
data: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01QC4g3HwBThD4BaNtBckFDJ","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"cache_creation":{"ephemeral_5m_input_tokens":2048,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,"output_tokens":30}}

event: message_stop
data: {"type":"message_stop"}

)");
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  EXPECT_EQ(s.chunks.back().choices[0].finish_reason, "length");
  auto summary = s.decoder->finish();
  ASSERT_TRUE(summary.ok());
  ASSERT_TRUE(summary->usage);
  EXPECT_EQ(summary->usage->prompt_tokens, 12 + 2048 + 4096);
  EXPECT_EQ(summary->usage->cached_prompt_tokens, 4096);
  EXPECT_EQ(summary->usage->cache_write_prompt_tokens, 2048);
  EXPECT_EQ(summary->usage->completion_tokens, 30);
  EXPECT_EQ(summary->usage->total_tokens, 12 + 2048 + 4096 + 30);
}

TEST(AnthropicStream, ErrorEvents) {
  Streamed overloaded = stream(std::string(kTextStream.substr(0, kTextStream.find("event: ping"))) +
                               R"(event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

)");
  EXPECT_EQ(overloaded.status.code(), ErrorCode::kUnavailable);
  EXPECT_NE(overloaded.status.message().find("Overloaded"), std::string::npos);

  Streamed api_error = stream(R"(event: error
data: {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}

)");
  EXPECT_EQ(api_error.status.code(), ErrorCode::kUpstreamError);
  EXPECT_NE(api_error.status.message().find("Internal server error"), std::string::npos);
}

TEST(AnthropicStream, PingsAndUnknownEventsAreIgnored) {
  Streamed s = stream(R"(event: message_start
data: {"type":"message_start","message":{"id":"msg_u","model":"m","usage":{"input_tokens":3,"output_tokens":1}}}

event: ping
data: {"type": "ping"}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"some_new_block","payload":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"some_new_delta","x":1}}

event: message_annotation
data: {"type":"message_annotation","annotation":{"kind":"later"}}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location"}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}

event: message_stop
data: {"type":"message_stop"}

)");
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 2u);
  EXPECT_EQ(s.chunks[0].choices[0].delta.content, "ok");
  EXPECT_TRUE(s.decoder->finish().ok());
}

TEST(AnthropicStream, FinishNeedsTheEndOfTheMessage) {
  // Cut before message_delta: no stop reason, no message_stop.
  Streamed cut = stream(kTextStream.substr(0, kTextStream.find("event: message_delta")));
  ASSERT_TRUE(cut.status.ok());
  auto r = cut.decoder->finish();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUpstreamError);

  // message_delta with its stop reason, but no message_stop: the answer is complete.
  Streamed no_stop = stream(kTextStream.substr(0, kTextStream.find("event: message_stop")));
  ASSERT_TRUE(no_stop.status.ok());
  EXPECT_TRUE(no_stop.decoder->finish().ok());

  Streamed empty = stream("");
  auto nothing = empty.decoder->finish();
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.status().code(), ErrorCode::kUpstreamError);
}

void expectStreamError(std::string_view sse, std::string_view mention) {
  Streamed s = stream(sse);
  ASSERT_FALSE(s.status.ok()) << sse;
  EXPECT_EQ(s.status.code(), ErrorCode::kUpstreamError);
  EXPECT_NE(s.status.message().find(mention), std::string::npos)
      << s.status.message() << " should mention " << mention;
}

constexpr std::string_view kStart =
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\",\"model\":\"m\"}}\n\n";

TEST(AnthropicStream, MalformedEvents) {
  expectStreamError("event: message_start\ndata: {\"type\":\"message_start\"\n\n", "JSON");
  expectStreamError("data: [1,2]\n\n", "JSON");
  expectStreamError("data: {\"type\":5}\n\n", "type");
  expectStreamError("data: {\"type\":\"message_start\"}\n\n", "'message'");
  expectStreamError("data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\"}}\n\n",
                    "'message.id'");
  expectStreamError(
      "data: {\"type\":\"message_start\",\"message\":{\"id\":\"a\",\"usage\":{\"input_tokens\":"
      "\"many\"}}}\n\n",
      "'message.usage.input_tokens'");
  expectStreamError(
      "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
      "\"text\":\"\"}}\n\n",
      "before message_start");
  expectStreamError(std::string(kStart) + std::string(kStart), "second message_start");
  expectStreamError(std::string(kStart) +
                        "data: {\"type\":\"content_block_start\",\"content_block\":{\"type\":"
                        "\"text\",\"text\":\"\"}}\n\n",
                    "'index'");
  expectStreamError(std::string(kStart) +
                        "data: {\"type\":\"content_block_start\",\"index\":\"0\",\"content_block\":"
                        "{\"type\":\"text\",\"text\":\"\"}}\n\n",
                    "'index'");
  expectStreamError(
      std::string(kStart) + "data: {\"type\":\"content_block_start\",\"index\":0}\n\n",
      "'content_block'");
  expectStreamError(std::string(kStart) +
                        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                        "{\"type\":\"tool_use\",\"name\":\"f\",\"input\":{}}}\n\n",
                    "'content_block.id'");
  expectStreamError(std::string(kStart) +
                        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":"
                        "\"text_delta\",\"text\":\"x\"}}\n\n",
                    "never started");
  std::string text_block =
      std::string(kStart) +
      "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
      "\"text\":\"\"}}\n\n";
  expectStreamError(text_block +
                        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                        "{\"type\":\"text_delta\"}}\n\n",
                    "'delta.text'");
  expectStreamError(text_block +
                        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
                    "not a tool_use block");
  expectStreamError(text_block + "data: {\"type\":\"content_block_delta\",\"index\":0}\n\n",
                    "'delta'");
  expectStreamError(
      text_block + "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":7}}\n\n",
      "'delta.stop_reason'");
  expectStreamError(text_block +
                        "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":"
                        "{\"output_tokens\":-3}}\n\n",
                    "'usage.output_tokens'");
}

TEST(AnthropicStream, EventNameStandsInForAMissingType) {
  Streamed s = stream(R"(event: message_start
data: {"message":{"id":"msg_n","model":"m"}}

event: content_block_start
data: {"index":0,"content_block":{"type":"text","text":"Hi"}}

event: message_delta
data: {"delta":{"stop_reason":"stop_sequence","stop_sequence":"###"}}

)");
  ASSERT_TRUE(s.status.ok()) << s.status.toString();
  ASSERT_EQ(s.chunks.size(), 2u);
  EXPECT_EQ(s.chunks[0].choices[0].delta.content, "Hi");
  EXPECT_EQ(s.chunks[1].choices[0].finish_reason, "stop");
  EXPECT_TRUE(s.decoder->finish().ok());
}

TEST(AnthropicStream, ModelFallsBackToTheRequest) {
  Streamed s = stream(R"(data: {"type":"message_start","message":{"id":"msg_m"}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}

)",
                      "claude-opus-4-1");
  ASSERT_TRUE(s.status.ok());
  ASSERT_EQ(s.chunks.size(), 1u);
  EXPECT_EQ(s.chunks[0].model, "claude-opus-4-1");
}

}  // namespace
}  // namespace routers
