// parseChatRequest and chatRequestToJson: client requests in, upstream requests out.
#include "api/openai_json.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace api {
namespace {

constexpr std::string_view kUserHi = R"({"role":"user","content":"hi"})";

// A valid request with `fields` (",\"key\":value...") appended at the top level.
std::string withFields(std::string_view fields) {
  return std::string(R"({"model":"gpt-4o-mini","messages":[)") + std::string(kUserHi) + "]" +
         std::string(fields) + "}";
}

// A valid request whose messages array is `messages` (a JSON array body without brackets).
std::string withMessages(std::string_view messages) {
  return std::string(R"({"model":"m","messages":[)") + std::string(messages) + "]}";
}

ChatRequest parseOk(std::string_view body) {
  StatusOr<ChatRequest> r = parseChatRequest(body);
  EXPECT_TRUE(r.ok()) << body << "\n -> " << r.status().message() << " [" << r.status().param()
                      << "]";
  return r.ok() ? std::move(r).value() : ChatRequest{};
}

Status parseErr(std::string_view body) {
  StatusOr<ChatRequest> r = parseChatRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? Status() : r.status();
}

TEST(ParseChatRequest, MinimalRequestHasDefaults) {
  ChatRequest r = parseOk(withFields(""));
  EXPECT_EQ(r.model, "gpt-4o-mini");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].role, Role::kUser);
  EXPECT_EQ(r.messages[0].content.kind, Content::Kind::kText);
  EXPECT_EQ(r.messages[0].content.text, "hi");
  EXPECT_FALSE(r.temperature);
  EXPECT_FALSE(r.top_p);
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FALSE(r.maxOutputTokens());
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.logprobs);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_FALSE(r.tool_choice);
  EXPECT_FALSE(r.response_format);
  EXPECT_TRUE(r.extra.is_object());
  EXPECT_TRUE(r.extra.empty());
}

TEST(ParseChatRequest, ReadsEverySamplingField) {
  ChatRequest r = parseOk(withFields(
      R"(,"temperature":0.7,"top_p":1,"n":3,"max_tokens":100,"max_completion_tokens":50,)"
      R"("stop":["\n\n","END"],"seed":-42,"presence_penalty":-2,"frequency_penalty":1.5,)"
      R"("logit_bias":{"50256":-100,"13":2.5},"logprobs":true,"top_logprobs":20,)"
      R"("parallel_tool_calls":false,"user":"u-1","metadata":{"team":"search"},)"
      R"("stream":true,"stream_options":{"include_usage":true})"));
  EXPECT_DOUBLE_EQ(*r.temperature, 0.7);
  EXPECT_DOUBLE_EQ(*r.top_p, 1.0);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(*r.max_tokens, 100);
  EXPECT_EQ(*r.max_completion_tokens, 50);
  EXPECT_EQ(*r.maxOutputTokens(), 50);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_EQ(*r.seed, -42);
  EXPECT_DOUBLE_EQ(*r.presence_penalty, -2.0);
  EXPECT_DOUBLE_EQ(*r.frequency_penalty, 1.5);
  ASSERT_EQ(r.logit_bias.size(), 2u);
  EXPECT_EQ(r.logit_bias[0], (std::pair<int32_t, double>{13, 2.5}));
  EXPECT_EQ(r.logit_bias[1], (std::pair<int32_t, double>{50256, -100.0}));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(*r.top_logprobs, 20);
  EXPECT_EQ(r.parallel_tool_calls, false);
  EXPECT_EQ(r.user, "u-1");
  EXPECT_EQ(r.metadata.at("team"), "search");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.extra.empty());
}

TEST(ParseChatRequest, MaxTokensAloneIsTheOutputCap) {
  ChatRequest r = parseOk(withFields(R"(,"max_tokens":7)"));
  EXPECT_EQ(*r.maxOutputTokens(), 7);
}

TEST(ParseChatRequest, StopStringBecomesOneStop) {
  EXPECT_EQ(parseOk(withFields(R"(,"stop":"###")")).stop, std::vector<std::string>{"###"});
  EXPECT_TRUE(parseOk(withFields(R"(,"stop":[])")).stop.empty());
}

TEST(ParseChatRequest, IntegralDecimalCountsAsInteger) {
  EXPECT_EQ(parseOk(withFields(R"(,"n":2.0)")).n, 2);
  EXPECT_EQ(*parseOk(withFields(R"(,"max_tokens":1e3)")).max_tokens, 1000);
}

TEST(ParseChatRequest, BoundaryValuesAreAccepted) {
  ChatRequest r = parseOk(withFields(
      R"(,"temperature":2,"top_p":0,"n":128,"presence_penalty":2,"frequency_penalty":-2,)"
      R"("top_logprobs":0,"logprobs":true,"max_tokens":1,"logit_bias":{"0":100,"2147483647":-100})"));
  EXPECT_DOUBLE_EQ(*r.temperature, 2.0);
  EXPECT_EQ(r.n, 128);
  EXPECT_EQ(*r.top_logprobs, 0);
  EXPECT_EQ(r.logit_bias.size(), 2u);
  EXPECT_DOUBLE_EQ(*parseOk(withFields(R"(,"temperature":0)")).temperature, 0.0);
}

TEST(ParseChatRequest, NullOptionalFieldsAreAbsent) {
  ChatRequest r = parseOk(withFields(
      R"(,"temperature":null,"top_p":null,"n":null,"max_tokens":null,)"
      R"("max_completion_tokens":null,"stop":null,"seed":null,"presence_penalty":null,)"
      R"("frequency_penalty":null,"logit_bias":null,"logprobs":null,"top_logprobs":null,)"
      R"("response_format":null,"tools":null,"tool_choice":null,"parallel_tool_calls":null,)"
      R"("user":null,"metadata":null,"stream":null,"stream_options":null)"));
  EXPECT_FALSE(r.temperature);
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FALSE(r.top_logprobs);
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.tools.empty());
  EXPECT_TRUE(r.extra.empty());  // known fields never leak into extra
}

TEST(ParseChatRequest, NullFieldsInsideMessagesAreAbsent) {
  ChatRequest r = parseOk(
      withMessages(R"({"role":"user","content":"x","name":null},)"
                   R"({"role":"assistant","content":"y","tool_calls":null,"refusal":null})"));
  EXPECT_EQ(r.messages[0].name, "");
  EXPECT_TRUE(r.messages[1].tool_calls.empty());
  EXPECT_FALSE(r.messages[1].refusal);
}

TEST(ParseChatRequest, KeepsUnknownTopLevelFieldsVerbatim) {
  ChatRequest r = parseOk(
      withFields(R"(,"reasoning_effort":"low","service_tier":"flex","store":true,)"
                 R"("prediction":{"type":"content","content":[{"type":"text","text":"x"}]},)"
                 R"("web_search_options":null,"x_custom":[1,2.5,"three"])"));
  EXPECT_EQ(r.extra.size(), 6u);
  EXPECT_EQ(r.extra["reasoning_effort"], "low");
  EXPECT_EQ(r.extra["service_tier"], "flex");
  EXPECT_EQ(r.extra["store"], true);
  EXPECT_EQ(r.extra["prediction"]["content"][0]["text"], "x");
  EXPECT_TRUE(r.extra.contains("web_search_options"));
  EXPECT_TRUE(r.extra["web_search_options"].is_null());
  EXPECT_EQ(r.extra["x_custom"], Json::parse(R"([1,2.5,"three"])"));
}

TEST(ParseChatRequest, ReadsEveryRole) {
  ChatRequest r = parseOk(withMessages(
      R"({"role":"system","content":"s"},{"role":"developer","content":"d"},)"
      R"({"role":"user","content":"u","name":"alice"},)"
      R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",)"
      R"("function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},)"
      R"({"role":"tool","content":"18C","tool_call_id":"call_1"},)"
      R"({"role":"function","name":"legacy","content":"old"})"));
  ASSERT_EQ(r.messages.size(), 6u);
  EXPECT_EQ(r.messages[0].role, Role::kSystem);
  EXPECT_EQ(r.messages[1].role, Role::kDeveloper);
  EXPECT_EQ(r.messages[2].role, Role::kUser);
  EXPECT_EQ(r.messages[2].name, "alice");
  const Message& a = r.messages[3];
  EXPECT_EQ(a.role, Role::kAssistant);
  EXPECT_TRUE(a.content.isNull());
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].id, "call_1");
  EXPECT_EQ(a.tool_calls[0].type, "function");
  EXPECT_EQ(a.tool_calls[0].name, "get_weather");
  EXPECT_EQ(a.tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(r.messages[4].role, Role::kTool);
  EXPECT_EQ(r.messages[4].tool_call_id, "call_1");
  EXPECT_EQ(r.messages[4].content.text, "18C");
  EXPECT_EQ(r.messages[5].role, Role::kFunction);
  EXPECT_EQ(r.messages[5].name, "legacy");
}

TEST(ParseChatRequest, AssistantMayOmitContentWhenItCallsTools) {
  ChatRequest r = parseOk(withMessages(
      R"({"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]})"));
  EXPECT_TRUE(r.messages[0].content.isNull());
  EXPECT_EQ(r.messages[0].tool_calls[0].type, "function");
}

TEST(ParseChatRequest, AssistantRefusalAlone) {
  ChatRequest r = parseOk(withMessages(R"({"role":"assistant","refusal":"I can't help."})"));
  EXPECT_EQ(*r.messages[0].refusal, "I can't help.");
}

TEST(ParseChatRequest, ReadsContentParts) {
  ChatRequest r = parseOk(withMessages(
      R"({"role":"user","content":[{"type":"text","text":"What is this?"},)"
      R"({"type":"image_url","image_url":{"url":"https://x/y.png","detail":"high"}},)"
      R"({"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},)"
      R"({"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}},)"
      R"({"type":"file","file":{"file_id":"file-1"}},{"type":"text","text":"Be brief."}]},)"
      R"({"role":"assistant","content":[{"type":"text","text":"A"},{"type":"refusal","refusal":"no"}]})"));
  const Content& c = r.messages[0].content;
  ASSERT_EQ(c.kind, Content::Kind::kParts);
  ASSERT_EQ(c.parts.size(), 6u);
  EXPECT_EQ(c.parts[0].type, ContentPart::Type::kText);
  EXPECT_EQ(c.parts[1].type, ContentPart::Type::kImageUrl);
  EXPECT_EQ(c.parts[1].image_url, "https://x/y.png");
  EXPECT_EQ(c.parts[1].image_detail, "high");
  EXPECT_EQ(c.parts[2].image_detail, "");
  EXPECT_EQ(c.parts[3].type, ContentPart::Type::kInputAudio);
  EXPECT_EQ(c.parts[3].raw["input_audio"]["format"], "wav");
  EXPECT_EQ(c.parts[4].type, ContentPart::Type::kFile);
  EXPECT_EQ(c.parts[4].raw, Json::parse(R"({"type":"file","file":{"file_id":"file-1"}})"));
  EXPECT_EQ(c.joinedText(), "What is this?\nBe brief.");
  EXPECT_TRUE(c.hasImages());
  const Content& a = r.messages[1].content;
  EXPECT_EQ(a.parts[1].type, ContentPart::Type::kRefusal);
  EXPECT_EQ(a.parts[1].text, "no");
}

TEST(ParseChatRequest, ReadsToolsAndToolChoice) {
  ChatRequest r = parseOk(withFields(
      R"(,"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",)"
      R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},)"
      R"({"type":"function","function":{"name":"noop-2"}}],)"
      R"("tool_choice":{"type":"function","function":{"name":"get_weather"}})"));
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "Weather");
  EXPECT_EQ(r.tools[0].parameters["properties"]["city"]["type"], "string");
  EXPECT_EQ(r.tools[0].strict, true);
  EXPECT_TRUE(r.tools[1].parameters.is_null());
  EXPECT_FALSE(r.tools[1].strict);
  ASSERT_TRUE(r.tool_choice);
  EXPECT_EQ(r.tool_choice->mode, ToolChoice::Mode::kFunction);
  EXPECT_EQ(r.tool_choice->function_name, "get_weather");

  const std::string tools = R"(,"tools":[{"type":"function","function":{"name":"f"}}])";
  EXPECT_EQ(parseOk(withFields(tools + R"(,"tool_choice":"none")")).tool_choice->mode,
            ToolChoice::Mode::kNone);
  EXPECT_EQ(parseOk(withFields(tools + R"(,"tool_choice":"auto")")).tool_choice->mode,
            ToolChoice::Mode::kAuto);
  EXPECT_EQ(parseOk(withFields(tools + R"(,"tool_choice":"required")")).tool_choice->mode,
            ToolChoice::Mode::kRequired);
  EXPECT_EQ(parseOk(withFields(R"(,"tool_choice":"none")")).tool_choice->mode,
            ToolChoice::Mode::kNone);
}

TEST(ParseChatRequest, ReadsResponseFormats) {
  EXPECT_EQ(parseOk(withFields(R"(,"response_format":{"type":"text"})")).response_format->type,
            ResponseFormat::Type::kText);
  EXPECT_EQ(
      parseOk(withFields(R"(,"response_format":{"type":"json_object"})")).response_format->type,
      ResponseFormat::Type::kJsonObject);
  ChatRequest r = parseOk(withFields(
      R"(,"response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,)"
      R"("schema":{"type":"object","properties":{"a":{"type":"integer"}}}}})"));
  EXPECT_EQ(r.response_format->type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(r.response_format->json_schema["name"], "answer");
  EXPECT_EQ(r.response_format->json_schema["strict"], true);
  EXPECT_EQ(r.response_format->json_schema["schema"]["properties"]["a"]["type"], "integer");
}

TEST(ParseChatRequest, StreamOptionsWithoutIncludeUsage) {
  ChatRequest r = parseOk(withFields(R"(,"stream":true,"stream_options":{})"));
  EXPECT_TRUE(r.stream);
  EXPECT_FALSE(r.include_usage);
  r = parseOk(withFields(R"(,"stream":true,"stream_options":{"include_usage":null})"));
  EXPECT_FALSE(r.include_usage);
}

TEST(ParseChatRequest, PreservesUnicodeAndEscapes) {
  ChatRequest r = parseOk(withMessages(
      R"({"role":"user","content":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n\t \u0000 日本"})"));
  EXPECT_EQ(r.messages[0].content.text, std::string("caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\" \\ \n\t ") +
                                            '\0' + " \xE6\x97\xA5\xE6\x9C\xAC");
}

TEST(ParseChatRequest, ToleratesWhitespaceAroundBody) { parseOk("  \n" + withFields("") + "\n  "); }

// ---- errors ------------------------------------------------------------------------------

TEST(ParseChatRequest, MalformedJsonSaysSoWithoutParam) {
  for (std::string_view body : {"", "{", "{\"model\":", "not json", "{\"a\":1,}", "{'a':1}",
                                "{\"model\":\"m\"} trailing", "\xFF\xFE"}) {
    SCOPED_TRACE(body);
    Status s = parseErr(body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
    EXPECT_EQ(s.message().rfind("We could not parse the JSON body of your request.", 0), 0u);
    EXPECT_EQ(s.param(), "");
  }
}

TEST(ParseChatRequest, InvalidUtf8InAStringIsMalformed) {
  Status s = parseErr(withMessages("{\"role\":\"user\",\"content\":\"\xC3\x28\"}"));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(s.param(), "");
}

TEST(ParseChatRequest, TopLevelMustBeAnObject) {
  for (std::string_view body : {"[]", "[{\"model\":\"m\"}]", "\"text\"", "42", "null", "true"}) {
    SCOPED_TRACE(body);
    Status s = parseErr(body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
    EXPECT_EQ(s.param(), "");
    EXPECT_EQ(s.openaiCode(), "invalid_type");
    EXPECT_NE(s.message().find("expected an object"), std::string::npos);
  }
}

TEST(ParseChatRequest, RejectsDeepNesting) {
  std::string deep = std::string(10000, '[') + std::string(10000, ']');
  Status s = parseErr(withFields(",\"x\":" + deep));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("nest"), std::string::npos);

  // Brackets inside strings (with escaped quotes) do not count.
  std::string in_string = "\"\\\"" + std::string(500, '[') + "\"";
  parseOk(withFields(",\"x\":" + in_string));
  std::string at_limit =
      std::string(kMaxRequestJsonDepth - 1, '[') + std::string(kMaxRequestJsonDepth - 1, ']');
  parseOk(withFields(",\"x\":" + at_limit));
}

TEST(ParseChatRequest, MissingModel) {
  for (std::string_view body : {R"({"messages":[{"role":"user","content":"hi"}]})",
                                R"({"model":null,"messages":[{"role":"user","content":"hi"}]})",
                                R"({"model":"","messages":[{"role":"user","content":"hi"}]})"}) {
    Status s = parseErr(body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
    EXPECT_EQ(s.message(), "you must provide a model parameter");
    EXPECT_EQ(s.param(), "model");
  }
}

TEST(ParseChatRequest, MissingMessages) {
  for (std::string_view body : {R"({"model":"m"})", R"({"model":"m","messages":null})"}) {
    Status s = parseErr(body);
    EXPECT_EQ(s.message(), "Missing required parameter: 'messages'.");
    EXPECT_EQ(s.param(), "messages");
    EXPECT_EQ(s.openaiCode(), "missing_required_parameter");
  }
}

TEST(ParseChatRequest, MessagesOfWrongTypeOrEmpty) {
  Status s = parseErr(R"({"model":"m","messages":{}})");
  EXPECT_EQ(s.message(),
            "Invalid type for 'messages': expected an array, but got an object instead.");
  EXPECT_EQ(s.param(), "messages");
  EXPECT_EQ(s.openaiCode(), "invalid_type");

  s = parseErr(R"({"model":"m","messages":[]})");
  EXPECT_EQ(s.message(),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.");
  EXPECT_EQ(s.param(), "messages");
  EXPECT_EQ(s.openaiCode(), "empty_array");
}

TEST(ParseChatRequest, TemperatureMessagesReadLikeOpenAI) {
  Status s = parseErr(withFields(R"(,"temperature":"hot")"));
  EXPECT_EQ(s.message(),
            "Invalid type for 'temperature': expected a decimal, but got a string instead.");
  EXPECT_EQ(s.param(), "temperature");
  EXPECT_EQ(s.openaiCode(), "invalid_type");

  s = parseErr(withFields(R"(,"temperature":3)"));
  EXPECT_EQ(s.message(),
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got "
            "3 instead.");
  EXPECT_EQ(s.openaiCode(), "decimal_above_max_value");

  s = parseErr(withFields(R"(,"n":0)"));
  EXPECT_EQ(s.message(),
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 "
            "instead.");
  EXPECT_EQ(s.openaiCode(), "integer_below_min_value");
}

TEST(ParseChatRequest, UnknownRoleListsSupportedValues) {
  Status s =
      parseErr(withMessages(R"({"role":"user","content":"a"},{"role":"robot","content":"b"})"));
  EXPECT_EQ(s.param(), "messages[1].role");
  EXPECT_EQ(s.openaiCode(), "invalid_value");
  EXPECT_EQ(s.message(),
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', "
            "'function', 'tool', and 'developer'.");
}

struct ErrorCase {
  std::string body;
  std::string param;
  std::string code;  // OpenAI's error.code
};

void expectErrors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.body);
    Status s = parseErr(c.body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
    EXPECT_EQ(s.param(), c.param) << s.message();
    EXPECT_EQ(s.openaiCode(), c.code) << s.message();
    EXPECT_FALSE(s.message().empty());
    // OpenAI's "Invalid value: 'x'. Supported values are: ..." does not repeat the path.
    if (!c.param.empty() && c.code != "invalid_value") {
      EXPECT_NE(s.message().find(c.param), std::string::npos) << s.message();
    }
  }
}

TEST(ParseChatRequest, RejectsWrongTypes) {
  expectErrors({
      {R"({"model":5,"messages":[{"role":"user","content":"hi"}]})", "model", "invalid_type"},
      {withFields(R"(,"top_p":"1")"), "top_p", "invalid_type"},
      {withFields(R"(,"temperature":true)"), "temperature", "invalid_type"},
      {withFields(R"(,"n":1.5)"), "n", "invalid_type"},
      {withFields(R"(,"n":"2")"), "n", "invalid_type"},
      {withFields(R"(,"max_tokens":1.5)"), "max_tokens", "invalid_type"},
      {withFields(R"(,"max_completion_tokens":[])"), "max_completion_tokens", "invalid_type"},
      {withFields(R"(,"seed":"x")"), "seed", "invalid_type"},
      {withFields(R"(,"seed":0.5)"), "seed", "invalid_type"},
      {withFields(R"(,"presence_penalty":{})"), "presence_penalty", "invalid_type"},
      {withFields(R"(,"logprobs":"yes")"), "logprobs", "invalid_type"},
      {withFields(R"(,"logprobs":1)"), "logprobs", "invalid_type"},
      {withFields(R"(,"top_logprobs":"3","logprobs":true)"), "top_logprobs", "invalid_type"},
      {withFields(R"(,"stream":"true")"), "stream", "invalid_type"},
      {withFields(R"(,"stream_options":5,"stream":true)"), "stream_options", "invalid_type"},
      {withFields(R"(,"stream":true,"stream_options":{"include_usage":"yes"})"),
       "stream_options.include_usage", "invalid_type"},
      {withFields(R"(,"parallel_tool_calls":"no")"), "parallel_tool_calls", "invalid_type"},
      {withFields(R"(,"user":5)"), "user", "invalid_type"},
      {withFields(R"(,"stop":5)"), "stop", "invalid_type"},
      {withFields(R"(,"stop":{"a":1})"), "stop", "invalid_type"},
      {withFields(R"(,"stop":["a",1])"), "stop[1]", "invalid_type"},
      {withFields(R"(,"logit_bias":[1])"), "logit_bias", "invalid_type"},
      {withFields(R"(,"logit_bias":{"5":"x"})"), "logit_bias", "invalid_type"},
      {withFields(R"(,"metadata":[])"), "metadata", "invalid_type"},
      {withFields(R"(,"metadata":{"k":1})"), "metadata.k", "invalid_type"},
      {withFields(R"(,"response_format":"json")"), "response_format", "invalid_type"},
      {withFields(R"(,"tools":{})"), "tools", "invalid_type"},
      {withFields(R"(,"tools":["f"])"), "tools[0]", "invalid_type"},
      {withFields(R"(,"tool_choice":5)"), "tool_choice", "invalid_type"},
  });
}

TEST(ParseChatRequest, RejectsOutOfRangeValues) {
  expectErrors({
      {withFields(R"(,"temperature":2.01)"), "temperature", "decimal_above_max_value"},
      {withFields(R"(,"temperature":-0.1)"), "temperature", "decimal_below_min_value"},
      {withFields(R"(,"top_p":1.5)"), "top_p", "decimal_above_max_value"},
      {withFields(R"(,"top_p":-1)"), "top_p", "decimal_below_min_value"},
      {withFields(R"(,"n":129)"), "n", "integer_above_max_value"},
      {withFields(R"(,"n":-3)"), "n", "integer_below_min_value"},
      {withFields(R"(,"max_tokens":0)"), "max_tokens", "integer_below_min_value"},
      {withFields(R"(,"max_tokens":18446744073709551615)"), "max_tokens",
       "integer_above_max_value"},
      {withFields(R"(,"max_tokens":1e30)"), "max_tokens", "integer_above_max_value"},
      {withFields(R"(,"max_completion_tokens":-5)"), "max_completion_tokens",
       "integer_below_min_value"},
      {withFields(R"(,"presence_penalty":2.5)"), "presence_penalty", "decimal_above_max_value"},
      {withFields(R"(,"frequency_penalty":-2.5)"), "frequency_penalty", "decimal_below_min_value"},
      {withFields(R"(,"logprobs":true,"top_logprobs":21)"), "top_logprobs",
       "integer_above_max_value"},
      {withFields(R"(,"logprobs":true,"top_logprobs":-1)"), "top_logprobs",
       "integer_below_min_value"},
      {withFields(R"(,"stop":["a","b","c","d","e"])"), "stop", "array_above_max_length"},
      {withFields(R"(,"logit_bias":{"50256":101})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"50256":-100.5})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"abc":1})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"2147483648":1})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"502533333333333333333333333333333336":1})"), "logit_bias",
       "invalid_value"},
      {withFields(R"(,"logit_bias":{"-1":1})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"":1})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"1.5":1})"), "logit_bias", "invalid_value"},
      {withFields(R"(,"logit_bias":{"99999999999":1})"), "logit_bias", "invalid_value"},
  });
  Status s = parseErr(withFields(R"(,"stop":["a","b","c","d","e"])"));
  EXPECT_EQ(s.message(),
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
            "array with length 5 instead.");
  s = parseErr(withFields(R"(,"logit_bias":{"abc":1})"));
  EXPECT_NE(s.message().find("abc"), std::string::npos);
}

TEST(ParseChatRequest, CrossFieldRules) {
  expectErrors({
      {withFields(R"(,"top_logprobs":2)"), "top_logprobs", "invalid_value"},
      {withFields(R"(,"top_logprobs":2,"logprobs":false)"), "top_logprobs", "invalid_value"},
      {withFields(R"(,"stream_options":{"include_usage":true})"), "stream_options",
       "invalid_value"},
      {withFields(R"(,"stream":false,"stream_options":{"include_usage":true})"), "stream_options",
       "invalid_value"},
      {withFields(R"(,"tool_choice":"auto")"), "tool_choice", "invalid_value"},
      {withFields(R"(,"tool_choice":{"type":"function","function":{"name":"f"}})"), "tool_choice",
       "invalid_value"},
  });
  Status s = parseErr(withFields(R"(,"stream_options":{"include_usage":true})"));
  EXPECT_EQ(s.message(),
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
}

TEST(ParseChatRequest, RejectsBadMessages) {
  expectErrors({
      {withMessages(R"("hi")"), "messages[0]", "invalid_type"},
      {withMessages(R"({"content":"hi"})"), "messages[0].role", "missing_required_parameter"},
      {withMessages(R"({"role":null,"content":"hi"})"), "messages[0].role",
       "missing_required_parameter"},
      {withMessages(R"({"role":5,"content":"hi"})"), "messages[0].role", "invalid_type"},
      {withMessages(R"({"role":"User","content":"hi"})"), "messages[0].role", "invalid_value"},
      {withMessages(R"({"role":"user"})"), "messages[0].content", "missing_required_parameter"},
      {withMessages(R"({"role":"system"})"), "messages[0].content", "missing_required_parameter"},
      {withMessages(R"({"role":"user","content":null})"), "messages[0].content", "invalid_type"},
      {withMessages(R"({"role":"user","content":5})"), "messages[0].content", "invalid_type"},
      {withMessages(R"({"role":"user","content":{"text":"x"}})"), "messages[0].content",
       "invalid_type"},
      {withMessages(R"({"role":"user","content":[]})"), "messages[0].content", "empty_array"},
      {withMessages(R"({"role":"user","content":"x","name":5})"), "messages[0].name",
       "invalid_type"},
      {withMessages(R"({"role":"user","content":"a"},{"role":"tool","content":"r"})"),
       "messages[1].tool_call_id", "missing_required_parameter"},
      {withMessages(R"({"role":"tool","content":"r","tool_call_id":7})"),
       "messages[0].tool_call_id", "invalid_type"},
      {withMessages(R"({"role":"user","content":"a"},{"role":"assistant"})"), "messages[1].content",
       "missing_required_parameter"},
      {withMessages(R"({"role":"user","content":"a"},{"role":"assistant","content":null})"),
       "messages[1].content", "missing_required_parameter"},
      {withMessages(R"({"role":"assistant","content":"x","refusal":5})"), "messages[0].refusal",
       "invalid_type"},
      {withMessages(R"({"role":"function","content":"x"})"), "messages[0].name",
       "missing_required_parameter"},
  });
}

TEST(ParseChatRequest, RejectsBadToolCalls) {
  const std::string a = R"({"role":"user","content":"a"},{"role":"assistant","tool_calls":)";
  expectErrors({
      {withMessages(a + "[]}"), "messages[1].tool_calls", "empty_array"},
      {withMessages(a + "{}}"), "messages[1].tool_calls", "invalid_type"},
      {withMessages(a + "[5]}"), "messages[1].tool_calls[0]", "invalid_type"},
      {withMessages(a + R"([{"function":{"name":"f","arguments":"{}"}}]})"),
       "messages[1].tool_calls[0].id", "missing_required_parameter"},
      {withMessages(a +
                    R"([{"id":"c","type":"custom","function":{"name":"f","arguments":"{}"}}]})"),
       "messages[1].tool_calls[0].type", "invalid_value"},
      {withMessages(a + R"([{"id":"c"}]})"), "messages[1].tool_calls[0].function",
       "missing_required_parameter"},
      {withMessages(a + R"([{"id":"c","function":"f"}]})"), "messages[1].tool_calls[0].function",
       "invalid_type"},
      {withMessages(a + R"([{"id":"c","function":{"arguments":"{}"}}]})"),
       "messages[1].tool_calls[0].function.name", "missing_required_parameter"},
      {withMessages(a + R"([{"id":"c","function":{"name":"f"}}]})"),
       "messages[1].tool_calls[0].function.arguments", "missing_required_parameter"},
      {withMessages(a + R"([{"id":"c","function":{"name":"f","arguments":{}}}]})"),
       "messages[1].tool_calls[0].function.arguments", "invalid_type"},
  });
}

TEST(ParseChatRequest, RejectsBadContentParts) {
  const std::string u = R"({"role":"user","content":[{"type":"text","text":"a"},)";
  expectErrors({
      {withMessages(u + R"({"type":"video","video":{}}]})"), "messages[0].content[1].type",
       "invalid_value"},
      {withMessages(u + R"({"text":"b"}]})"), "messages[0].content[1].type",
       "missing_required_parameter"},
      {withMessages(u + R"(5]})"), "messages[0].content[1]", "invalid_type"},
      {withMessages(u + R"({"type":"text"}]})"), "messages[0].content[1].text",
       "missing_required_parameter"},
      {withMessages(u + R"({"type":"text","text":5}]})"), "messages[0].content[1].text",
       "invalid_type"},
      {withMessages(u + R"({"type":"image_url"}]})"), "messages[0].content[1].image_url",
       "missing_required_parameter"},
      {withMessages(u + R"({"type":"image_url","image_url":"https://x"}]})"),
       "messages[0].content[1].image_url", "invalid_type"},
      {withMessages(u + R"({"type":"image_url","image_url":{}}]})"),
       "messages[0].content[1].image_url.url", "missing_required_parameter"},
      {withMessages(u + R"({"type":"image_url","image_url":{"url":"u","detail":"ultra"}}]})"),
       "messages[0].content[1].image_url.detail", "invalid_value"},
      {withMessages(u + R"({"type":"input_audio"}]})"), "messages[0].content[1].input_audio",
       "missing_required_parameter"},
      {withMessages(u + R"({"type":"file","file":"f"}]})"), "messages[0].content[1].file",
       "invalid_type"},
      // Refusals belong to the assistant; images to the user.
      {withMessages(u + R"({"type":"refusal","refusal":"no"}]})"), "messages[0].content[1].type",
       "invalid_value"},
      {withMessages(
           R"({"role":"system","content":[{"type":"image_url","image_url":{"url":"u"}}]})"),
       "messages[0].content[0].type", "invalid_value"},
      {withMessages(
           R"({"role":"assistant","content":[{"type":"image_url","image_url":{"url":"u"}}]})"),
       "messages[0].content[0].type", "invalid_value"},
      {withMessages(R"({"role":"assistant","content":[{"type":"refusal"}]})"),
       "messages[0].content[0].refusal", "missing_required_parameter"},
  });
  Status s = parseErr(withMessages(u + R"({"type":"video"}]})"));
  EXPECT_EQ(s.message(),
            "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', "
            "and 'file'.");
}

TEST(ParseChatRequest, RejectsBadTools) {
  const std::string ok = R"({"type":"function","function":{"name":"ok"}})";
  expectErrors({
      {withFields(R"(,"tools":[])"), "tools", "empty_array"},
      {withFields(R"(,"tools":[)" + ok + R"(,{"type":"function","function":{}}])"),
       "tools[1].function.name", "missing_required_parameter"},
      {withFields(R"(,"tools":[)" + ok + R"(,{"type":"function","function":{"name":7}}])"),
       "tools[1].function.name", "invalid_type"},
      {withFields(R"(,"tools":[{"type":"function","function":{"name":"has space"}}])"),
       "tools[0].function.name", "invalid_value"},
      {withFields(R"(,"tools":[{"type":"function","function":{"name":")" + std::string(65, 'a') +
                  R"("}}])"),
       "tools[0].function.name", "invalid_value"},
      {withFields(R"(,"tools":[{"function":{"name":"f"}}])"), "tools[0].type",
       "missing_required_parameter"},
      {withFields(R"(,"tools":[{"type":"retrieval","function":{"name":"f"}}])"), "tools[0].type",
       "invalid_value"},
      {withFields(R"(,"tools":[{"type":"function"}])"), "tools[0].function",
       "missing_required_parameter"},
      {withFields(R"(,"tools":[{"type":"function","function":[]}])"), "tools[0].function",
       "invalid_type"},
      {withFields(R"(,"tools":[{"type":"function","function":{"name":"f","parameters":"x"}}])"),
       "tools[0].function.parameters", "invalid_type"},
      {withFields(R"(,"tools":[{"type":"function","function":{"name":"f","description":1}}])"),
       "tools[0].function.description", "invalid_type"},
      {withFields(R"(,"tools":[{"type":"function","function":{"name":"f","strict":"y"}}])"),
       "tools[0].function.strict", "invalid_type"},
  });
}

TEST(ParseChatRequest, RejectsBadToolChoice) {
  const std::string tools = R"(,"tools":[{"type":"function","function":{"name":"f"}}])";
  expectErrors({
      {withFields(tools + R"(,"tool_choice":"sometimes")"), "tool_choice", "invalid_value"},
      {withFields(tools + R"(,"tool_choice":{"type":"function"})"), "tool_choice.function",
       "missing_required_parameter"},
      {withFields(tools + R"(,"tool_choice":{"type":"function","function":{}})"),
       "tool_choice.function.name", "missing_required_parameter"},
      {withFields(tools + R"(,"tool_choice":{"function":{"name":"f"}})"), "tool_choice.type",
       "missing_required_parameter"},
      {withFields(tools + R"(,"tool_choice":{"type":"allowed_tools"})"), "tool_choice.type",
       "invalid_value"},
  });
}

TEST(ParseChatRequest, RejectsBadResponseFormat) {
  expectErrors({
      {withFields(R"(,"response_format":{"type":"xml"})"), "response_format.type", "invalid_value"},
      {withFields(R"(,"response_format":{})"), "response_format.type",
       "missing_required_parameter"},
      {withFields(R"(,"response_format":{"type":"json_schema"})"), "response_format.json_schema",
       "missing_required_parameter"},
      {withFields(R"(,"response_format":{"type":"json_schema","json_schema":"s"})"),
       "response_format.json_schema", "invalid_type"},
      {withFields(R"(,"response_format":{"type":"json_schema","json_schema":{}})"),
       "response_format.json_schema.name", "missing_required_parameter"},
      {withFields(
           R"(,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":1}})"),
       "response_format.json_schema.schema", "invalid_type"},
  });
}

TEST(ParseChatRequest, RejectsOversizedMetadata) {
  std::string many = R"(,"metadata":{)";
  for (int i = 0; i < 17; ++i) many += (i ? "," : "") + ("\"k" + std::to_string(i) + "\":\"v\"");
  many += "}";
  expectErrors({
      {withFields(many), "metadata", "object_above_max_properties"},
      {withFields(R"(,"metadata":{"k":")" + std::string(513, 'v') + R"("})"), "metadata.k",
       "string_above_max_length"},
  });
  Status s = parseErr(withFields(R"(,"metadata":{")" + std::string(65, 'k') + R"(":"v"})"));
  EXPECT_EQ(s.openaiCode(), "invalid_value");
}

TEST(ParseChatRequest, ErrorsNameTheRightMessageIndex) {
  std::string messages;
  for (int i = 0; i < 12; ++i) messages += R"({"role":"user","content":"m"},)";
  messages += R"({"role":"user","content":[{"type":"image_url","image_url":{}}]})";
  Status s = parseErr(withMessages(messages));
  EXPECT_EQ(s.param(), "messages[12].content[0].image_url.url");
  EXPECT_EQ(s.message(), "Missing required parameter: 'messages[12].content[0].image_url.url'.");
}

TEST(ParseChatRequest, LongBadValuesAreClippedInMessages) {
  Status s =
      parseErr(withMessages(R"({"role":")" + std::string(10000, 'r') + R"(","content":"x"})"));
  EXPECT_EQ(s.param(), "messages[0].role");
  EXPECT_LT(s.message().size(), 300u);
}

// ---- chatRequestToJson -------------------------------------------------------------------

TEST(ChatRequestToJson, RoundTripsAFullRequest) {
  const std::string body = R"({
    "model": "gpt-4o",
    "messages": [
      {"role": "developer", "content": "Be terse."},
      {"role": "user", "name": "bob", "content": [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://e.x/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://e.x/b.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "mp3"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"}}]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
      {"role": "tool", "tool_call_id": "call_9", "content": "seen"},
      {"role": "assistant", "content": [{"type": "text", "text": "No."}, {"type": "refusal", "refusal": "Nope"}],
       "refusal": "Nope"}
    ],
    "temperature": 0.25, "top_p": 0.5, "n": 2, "max_tokens": 64, "max_completion_tokens": 32,
    "stop": ["x"], "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "logit_bias": {"11": 5, "7": -1.5}, "logprobs": true, "top_logprobs": 3,
    "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
    "tools": [{"type": "function", "function": {"name": "look", "description": "d",
               "parameters": {"type": "object"}, "strict": false}}],
    "tool_choice": {"type": "function", "function": {"name": "look"}},
    "parallel_tool_calls": true, "user": "u", "metadata": {"a": "b"},
    "stream": true, "stream_options": {"include_usage": true},
    "reasoning_effort": "high", "modalities": ["text"]
  })";
  ChatRequest r = parseOk(body);
  Json out = chatRequestToJson(r);
  EXPECT_EQ(out, Json::parse(body)) << out.dump(2);
  // And once more through the parser: a fixed point.
  EXPECT_EQ(chatRequestToJson(parseOk(out.dump())), out);
}

TEST(ChatRequestToJson, KeepsStringContentAsString) {
  Json out = chatRequestToJson(parseOk(withFields("")));
  EXPECT_EQ(out["messages"][0], Json::parse(kUserHi));
}

TEST(ChatRequestToJson, OmitsDefaults) {
  Json out = chatRequestToJson(parseOk(withFields("")));
  EXPECT_EQ(out.size(), 2u) << out.dump();
  EXPECT_TRUE(out.contains("model"));
  EXPECT_TRUE(out.contains("messages"));
}

TEST(ChatRequestToJson, StreamOptionsOnlyWhenStreaming) {
  ChatRequest r = parseOk(withFields(R"(,"stream":true,"stream_options":{"include_usage":true})"));
  Json out = chatRequestToJson(r);
  EXPECT_EQ(out["stream"], true);
  EXPECT_EQ(out["stream_options"], Json::parse(R"({"include_usage":true})"));

  r.stream = false;
  out = chatRequestToJson(r);
  EXPECT_FALSE(out.contains("stream"));
  EXPECT_FALSE(out.contains("stream_options"));

  r.stream = true;
  r.include_usage = false;
  out = chatRequestToJson(r);
  EXPECT_EQ(out["stream"], true);
  EXPECT_FALSE(out.contains("stream_options"));
}

TEST(ChatRequestToJson, StopStringBecomesArray) {
  Json out = chatRequestToJson(parseOk(withFields(R"(,"stop":"END")")));
  EXPECT_EQ(out["stop"], Json::parse(R"(["END"])"));
}

TEST(ChatRequestToJson, TypedFieldsWinOverExtra) {
  ChatRequest r = parseOk(withFields(R"(,"temperature":0.5,"service_tier":"auto")"));
  r.extra["temperature"] = 1.9;
  r.extra["model"] = "other";
  Json out = chatRequestToJson(r);
  EXPECT_EQ(out["temperature"], 0.5);
  EXPECT_EQ(out["model"], "gpt-4o-mini");
  EXPECT_EQ(out["service_tier"], "auto");
}

TEST(ChatRequestToJson, SerialisesProgrammaticRequest) {
  ChatRequest r;
  r.model = "local";
  Message m;
  m.role = Role::kUser;
  m.content = Content::ofText("ping");
  r.messages.push_back(m);
  r.tool_choice = ToolChoice{ToolChoice::Mode::kRequired, ""};
  r.response_format = ResponseFormat{ResponseFormat::Type::kJsonObject, nullptr, {}};
  r.logit_bias = {{5, 1.0}};
  r.extra = nullptr;  // tolerated: nothing to merge
  Tool t;
  t.type.clear();  // an unset type is sent as "function"
  t.name = "f";
  r.tools.push_back(t);
  Json out = chatRequestToJson(r);
  EXPECT_EQ(out["tools"], Json::parse(R"([{"type":"function","function":{"name":"f"}}])"));
  EXPECT_EQ(out["messages"][0]["content"], "ping");
  EXPECT_EQ(out["tool_choice"], "required");
  EXPECT_EQ(out["response_format"], Json::parse(R"({"type":"json_object"})"));
  EXPECT_EQ(out["logit_bias"], Json::parse(R"({"5":1.0})"));
}

}  // namespace
}  // namespace api
