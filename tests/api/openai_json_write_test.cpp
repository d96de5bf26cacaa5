// serializeChatResponse, serializeChatChunk, serializeError and appendJsonString: the bytes
// the official SDKs read.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "api/openai_json.h"

namespace api {
namespace {

Json parseStrict(const std::string& s) {
  Json j = Json::parse(s, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << s;
  return j;
}

std::string jsonQuoted(std::string_view s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

ChatResponse helloResponse() {
  ChatResponse r;
  r.id = "chatcmpl-1";
  r.created = 1700000000;
  r.model = "gpt-4o-mini";
  Choice c;
  c.message.role = Role::kAssistant;
  c.message.content = Content::ofText("Hello!");
  c.finish_reason = "stop";
  r.choices.push_back(c);
  r.usage = Usage{9, 2, 11, 0, 0};
  return r;
}

ChatChunk chunkOf(Delta delta, std::optional<std::string> finish = std::nullopt) {
  ChatChunk c;
  c.id = "chatcmpl-2";
  c.created = 1;
  c.model = "m";
  ChunkChoice ch;
  ch.delta = std::move(delta);
  ch.finish_reason = std::move(finish);
  c.choices.push_back(std::move(ch));
  return c;
}

// ---- appendJsonString --------------------------------------------------------------------

TEST(AppendJsonString, EscapesWhatJsonRequires) {
  EXPECT_EQ(jsonQuoted("plain text / ok"), "\"plain text / ok\"");
  EXPECT_EQ(jsonQuoted(""), "\"\"");
  EXPECT_EQ(jsonQuoted("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(jsonQuoted("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(jsonQuoted(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(jsonQuoted(std::string("a\0b", 3)), R"("a\u0000b")");
}

TEST(AppendJsonString, AppendsToExistingText) {
  std::string out = "x=";
  appendJsonString(out, "y");
  EXPECT_EQ(out, "x=\"y\"");
}

TEST(AppendJsonString, KeepsValidUtf8) {
  for (std::string_view s : {"caf\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF",
                             "\xEF\xBF\xBF", "\xED\x9F\xBF", "\xEE\x80\x80", "\xC2\x80",
                             "\xE0\xA0\x80", "\xF0\x90\x80\x80", "\xE6\x97\xA5\xE6\x9C\xAC"}) {
    EXPECT_EQ(jsonQuoted(s), "\"" + std::string(s) + "\"");
  }
}

TEST(AppendJsonString, ReplacesInvalidUtf8) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(jsonQuoted("\x80"), "\"" + r + "\"");  // lone continuation
  EXPECT_EQ(jsonQuoted("\xFF"), "\"" + r + "\"");
  EXPECT_EQ(jsonQuoted("\xF5\x80"), "\"" + r + r + "\"");                  // never a lead byte
  EXPECT_EQ(jsonQuoted("\xC0\x80"), "\"" + r + r + "\"");                  // overlong NUL
  EXPECT_EQ(jsonQuoted("\xE0\x80\x80"), "\"" + r + r + r + "\"");          // overlong
  EXPECT_EQ(jsonQuoted("\xED\xA0\x80"), "\"" + r + r + r + "\"");          // a surrogate
  EXPECT_EQ(jsonQuoted("\xF4\x90\x80\x80"), "\"" + r + r + r + r + "\"");  // above U+10FFFF
  // A truncated sequence is one maximal subpart: one replacement character.
  EXPECT_EQ(jsonQuoted("\xE2\x82"), "\"" + r + "\"");
  EXPECT_EQ(jsonQuoted("a\xE2\x82z"), "\"a" + r + "z\"");
  EXPECT_EQ(jsonQuoted("\xF0\x9F\x98"), "\"" + r + "\"");
  EXPECT_EQ(jsonQuoted("\xF0\x9F\x98\""), "\"" + r + "\\\"\"");
  EXPECT_EQ(jsonQuoted("ok\xC3"), "\"ok" + r + "\"");
}

TEST(AppendJsonString, RandomBytesAlwaysGiveValidJson) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  for (int i = 0; i < 5000; ++i) {
    std::string s(static_cast<size_t>(len(rng)), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    std::string out = jsonQuoted(s);
    Json j = Json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_string()) << out;
    // Valid input comes back unchanged.
    Json again = Json::parse(jsonQuoted(j.get<std::string>()), nullptr, false);
    EXPECT_EQ(again, j);
  }
}

// ---- responses ---------------------------------------------------------------------------

TEST(SerializeChatResponse, MatchesOpenAIBytes) {
  EXPECT_EQ(serializeChatResponse(helloResponse()),
            R"({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,)"
            R"("model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",)"
            R"("content":"Hello!","refusal":null},"logprobs":null,"finish_reason":"stop"}],)"
            R"("usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,)"
            R"("prompt_tokens_details":{"cached_tokens":0},)"
            R"("completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":null})");
}

TEST(SerializeChatResponse, ToolCallsOnlyWhenPresent) {
  Json plain = parseStrict(serializeChatResponse(helloResponse()));
  EXPECT_FALSE(plain["choices"][0]["message"].contains("tool_calls"));

  ChatResponse r = helloResponse();
  Message& m = r.choices[0].message;
  m.content = Content();
  m.tool_calls.push_back(ToolCall{"call_1", "function", "get_weather", R"({"city":"Paris"})"});
  m.tool_calls.push_back(ToolCall{"call_2", "", "noop", "{}"});
  r.choices[0].finish_reason = "tool_calls";
  Json j = parseStrict(serializeChatResponse(r));
  const Json& msg = j["choices"][0]["message"];
  EXPECT_TRUE(msg["content"].is_null());
  EXPECT_TRUE(msg["refusal"].is_null());
  ASSERT_EQ(msg["tool_calls"].size(), 2u);
  EXPECT_EQ(msg["tool_calls"][0],
            Json::parse(R"({"id":"call_1","type":"function","function":{"name":"get_weather",)"
                        R"("arguments":"{\"city\":\"Paris\"}"}})"));
  EXPECT_EQ(msg["tool_calls"][1]["type"], "function");  // an unset type is still "function"
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
}

TEST(SerializeChatResponse, OptionalTopLevelFields) {
  ChatResponse r = helloResponse();
  Json j = parseStrict(serializeChatResponse(r));
  EXPECT_TRUE(j["system_fingerprint"].is_null());
  EXPECT_FALSE(j.contains("service_tier"));

  r.system_fingerprint = "fp_44709d6fcb";
  r.service_tier = "default";
  r.usage.reset();
  j = parseStrict(serializeChatResponse(r));
  EXPECT_EQ(j["system_fingerprint"], "fp_44709d6fcb");
  EXPECT_EQ(j["service_tier"], "default");
  EXPECT_FALSE(j.contains("usage"));
}

TEST(SerializeChatResponse, RefusalEmptyFinishAndPartsContent) {
  ChatResponse r = helloResponse();
  Message& m = r.choices[0].message;
  m.refusal = "I can't help with that.";
  m.content.kind = Content::Kind::kParts;
  m.content.parts = {ContentPart{ContentPart::Type::kText, "a", "", "", nullptr},
                     ContentPart{ContentPart::Type::kText, "b", "", "", nullptr}};
  r.choices[0].finish_reason.clear();
  Json j = parseStrict(serializeChatResponse(r));
  EXPECT_EQ(j["choices"][0]["message"]["refusal"], "I can't help with that.");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "a\nb");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
}

TEST(SerializeChatResponse, UsageDetailsAndComputedTotal) {
  ChatResponse r = helloResponse();
  r.usage = Usage{100, 20, 0, 64, 12};
  Json u = parseStrict(serializeChatResponse(r))["usage"];
  EXPECT_EQ(u["total_tokens"], 120);
  EXPECT_EQ(u["prompt_tokens_details"]["cached_tokens"], 64);
  EXPECT_EQ(u["completion_tokens_details"]["reasoning_tokens"], 12);
}

TEST(SerializeChatResponse, SeveralChoices) {
  ChatResponse r = helloResponse();
  r.choices.push_back(r.choices[0]);
  r.choices[1].index = 1;
  r.choices[1].message.content = Content::ofText("Hi");
  r.choices[1].finish_reason = "length";
  Json j = parseStrict(serializeChatResponse(r));
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][1]["message"]["content"], "Hi");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
}

TEST(SerializeChatResponse, LogprobsLikeOpenAI) {
  ChatResponse r = helloResponse();
  TokenLogprob t{"Hi", -0.5, {TopLogprob{"Hi", -0.5}, TopLogprob{"Hey", -1.25}}};
  r.choices[0].logprobs = std::vector<TokenLogprob>{t};
  std::string out = serializeChatResponse(r);
  EXPECT_NE(out.find(R"("logprobs":{"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],)"
                     R"("top_logprobs":[{"token":"Hi","logprob":-0.5,"bytes":[72,105]},)"
                     R"({"token":"Hey","logprob":-1.25,"bytes":[72,101,121]}]}],"refusal":null})"),
            std::string::npos)
      << out;

  r.choices[0].logprobs = std::vector<TokenLogprob>{};
  Json j = parseStrict(serializeChatResponse(r));
  EXPECT_EQ(j["choices"][0]["logprobs"], Json::parse(R"({"content":[],"refusal":null})"));
}

TEST(SerializeChatResponse, PartialCharacterTokenKeepsItsBytes) {
  ChatResponse r = helloResponse();
  // The first two bytes of "€" (E2 82 AC): the token shows U+FFFD, the bytes stay exact.
  r.choices[0].logprobs = std::vector<TokenLogprob>{TokenLogprob{"\xE2\x82", -0.1, {}}};
  Json lp = parseStrict(serializeChatResponse(r))["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(lp["bytes"], Json::parse("[226,130]"));
  EXPECT_EQ(lp["top_logprobs"], Json::array());
}

TEST(SerializeChatResponse, NonFiniteLogprobBecomesSentinel) {
  ChatResponse r = helloResponse();
  r.choices[0].logprobs =
      std::vector<TokenLogprob>{TokenLogprob{"a", -std::numeric_limits<double>::infinity(), {}},
                                TokenLogprob{"b", std::nan(""), {}}, TokenLogprob{"c", -1e-7, {}}};
  Json lp = parseStrict(serializeChatResponse(r))["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(lp[0]["logprob"], -9999.0);
  EXPECT_EQ(lp[1]["logprob"], -9999.0);
  EXPECT_DOUBLE_EQ(lp[2]["logprob"].get<double>(), -1e-7);
}

TEST(SerializeChatResponse, InvalidUtf8ContentStillValidJson) {
  ChatResponse r = helloResponse();
  r.choices[0].message.content = Content::ofText("bad \xC3 byte");
  r.model = "m\xFF";
  Json j = parseStrict(serializeChatResponse(r));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "bad \xEF\xBF\xBD byte");
}

TEST(SerializeChatResponse, RoundTripsThroughParseChatResponse) {
  ChatResponse r = helloResponse();
  r.system_fingerprint = "fp";
  r.service_tier = "flex";
  r.usage = Usage{5, 6, 11, 1, 2};
  r.choices[0].message.refusal = "r";
  r.choices[0].message.tool_calls.push_back(ToolCall{"c1", "function", "f", "{\"a\":[1]}"});
  r.choices[0].logprobs = std::vector<TokenLogprob>{
      TokenLogprob{"\xE2\x82", -0.25, {TopLogprob{"\xE2\x82", -0.25}, TopLogprob{"x", -3}}}};
  auto back = parseChatResponse(serializeChatResponse(r));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->created, r.created);
  EXPECT_EQ(back->model, r.model);
  EXPECT_EQ(back->system_fingerprint, "fp");
  EXPECT_EQ(back->service_tier, "flex");
  ASSERT_TRUE(back->usage);
  EXPECT_EQ(back->usage->prompt_tokens, 5);
  EXPECT_EQ(back->usage->completion_tokens, 6);
  EXPECT_EQ(back->usage->total_tokens, 11);
  EXPECT_EQ(back->usage->cached_prompt_tokens, 1);
  EXPECT_EQ(back->usage->reasoning_tokens, 2);
  const Choice& c = back->choices.at(0);
  EXPECT_EQ(c.message.content.text, "Hello!");
  EXPECT_EQ(c.message.refusal, "r");
  EXPECT_EQ(c.message.tool_calls.at(0).arguments, "{\"a\":[1]}");
  EXPECT_EQ(c.finish_reason, "stop");
  ASSERT_TRUE(c.logprobs);
  EXPECT_EQ(c.logprobs->at(0).token, "\xE2\x82");  // raw bytes restored from "bytes"
  EXPECT_EQ(c.logprobs->at(0).logprob, -0.25);
  EXPECT_EQ(c.logprobs->at(0).top_logprobs.at(1).token, "x");
  EXPECT_EQ(c.logprobs->at(0).top_logprobs.at(1).logprob, -3);
  EXPECT_EQ(serializeChatResponse(*back), serializeChatResponse(r));
}

// ---- chunks ------------------------------------------------------------------------------

TEST(SerializeChatChunk, FirstChunkMatchesOpenAIBytes) {
  Delta d;
  d.role = Role::kAssistant;
  d.content = "";
  EXPECT_EQ(serializeChatChunk(chunkOf(d), false),
            R"({"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m",)"
            R"("system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant",)"
            R"("content":""},"logprobs":null,"finish_reason":null}]})");
}

TEST(SerializeChatChunk, DeltaHasOnlyPresentFields) {
  Delta d;
  d.content = "lo";
  Json j = parseStrict(serializeChatChunk(chunkOf(d), false));
  EXPECT_EQ(j["choices"][0]["delta"], Json::parse(R"({"content":"lo"})"));

  Json last = parseStrict(serializeChatChunk(chunkOf(Delta{}, "stop"), false));
  EXPECT_EQ(last["choices"][0]["delta"], Json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");

  Delta r;
  r.refusal = "no";
  j = parseStrict(serializeChatChunk(chunkOf(r), false));
  EXPECT_EQ(j["choices"][0]["delta"], Json::parse(R"({"refusal":"no"})"));
}

TEST(SerializeChatChunk, ToolCallFragments) {
  Delta first;
  first.tool_calls.push_back(ToolCallDelta{0, "call_1", "function", "get_weather", ""});
  EXPECT_NE(serializeChatChunk(chunkOf(first), false)
                .find(R"("delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",)"
                      R"("function":{"name":"get_weather","arguments":""}}]})"),
            std::string::npos);

  Delta more;
  more.tool_calls.push_back(ToolCallDelta{0, std::nullopt, std::nullopt, std::nullopt, "{\"ci"});
  more.tool_calls.push_back(ToolCallDelta{1, std::nullopt, std::nullopt, "second", std::nullopt});
  more.tool_calls.push_back(
      ToolCallDelta{2, std::nullopt, std::nullopt, std::nullopt, std::nullopt});
  Json j = parseStrict(serializeChatChunk(chunkOf(more), false));
  EXPECT_EQ(j["choices"][0]["delta"]["tool_calls"],
            Json::parse(R"([{"index":0,"function":{"arguments":"{\"ci"}},)"
                        R"({"index":1,"function":{"name":"second"}},{"index":2}])"));
}

TEST(SerializeChatChunk, UsageKeyFollowsIncludeUsage) {
  Delta d;
  d.content = "x";
  ChatChunk c = chunkOf(d);
  EXPECT_FALSE(parseStrict(serializeChatChunk(c, false)).contains("usage"));
  Json j = parseStrict(serializeChatChunk(c, true));
  ASSERT_TRUE(j.contains("usage"));
  EXPECT_TRUE(j["usage"].is_null());

  c.usage = Usage{1, 2, 3, 0, 0};  // usage the client did not ask for is not sent
  EXPECT_FALSE(parseStrict(serializeChatChunk(c, false)).contains("usage"));
}

TEST(SerializeChatChunk, UsageChunkMatchesOpenAIBytes) {
  ChatChunk c;
  c.id = "chatcmpl-2";
  c.created = 1;
  c.model = "m";
  c.system_fingerprint = "fp_1";
  c.usage = Usage{10, 5, 15, 0, 0};
  EXPECT_EQ(serializeChatChunk(c, true),
            R"({"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m",)"
            R"("system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":10,)"
            R"("completion_tokens":5,"total_tokens":15,"prompt_tokens_details":)"
            R"({"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}})");
}

TEST(SerializeChatChunk, LogprobsAndSeveralChoices) {
  Delta d;
  d.content = "A";
  ChatChunk c = chunkOf(d);
  c.choices[0].logprobs = std::vector<TokenLogprob>{TokenLogprob{"A", -0.01, {}}};
  c.choices.push_back(c.choices[0]);
  c.choices[1].index = 1;
  c.choices[1].logprobs.reset();
  c.choices[1].finish_reason = "";  // set but empty reads as null
  Json j = parseStrict(serializeChatChunk(c, false));
  EXPECT_EQ(j["choices"][0]["logprobs"],
            Json::parse(R"({"content":[{"token":"A","logprob":-0.01,"bytes":[65],)"
                        R"("top_logprobs":[]}],"refusal":null})"));
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_TRUE(j["choices"][1]["logprobs"].is_null());
  EXPECT_TRUE(j["choices"][1]["finish_reason"].is_null());
}

TEST(SerializeChatChunk, RoundTripsThroughParseChatChunk) {
  Delta d;
  d.role = Role::kAssistant;
  d.content = "h\xC3\xA9llo \"there\"\n";
  d.tool_calls.push_back(ToolCallDelta{3, "id", "function", "f", "{"});
  ChatChunk c = chunkOf(d, "length");
  c.system_fingerprint = "fp";
  c.usage = Usage{1, 2, 3, 0, 0};
  auto back = parseChatChunk(serializeChatChunk(c, true));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->id, c.id);
  EXPECT_EQ(back->model, "m");
  EXPECT_EQ(back->system_fingerprint, "fp");
  ASSERT_TRUE(back->usage);
  EXPECT_EQ(back->usage->total_tokens, 3);
  const ChunkChoice& ch = back->choices.at(0);
  EXPECT_EQ(ch.delta.role, Role::kAssistant);
  EXPECT_EQ(ch.delta.content, d.content);
  EXPECT_EQ(ch.delta.tool_calls.at(0).index, 3);
  EXPECT_EQ(ch.delta.tool_calls.at(0).name, "f");
  EXPECT_EQ(ch.delta.tool_calls.at(0).arguments, "{");
  EXPECT_EQ(ch.finish_reason, "length");
  EXPECT_EQ(serializeChatChunk(*back, true), serializeChatChunk(c, true));
}

// ---- errors ------------------------------------------------------------------------------

TEST(SerializeError, MatchesOpenAIBytes) {
  EXPECT_EQ(serializeError(Status(ErrorCode::kInvalidRequest, "Bad \"thing\".",
                                  "messages[0].content", "invalid_type")),
            R"({"error":{"message":"Bad \"thing\".","type":"invalid_request_error",)"
            R"("param":"messages[0].content","code":"invalid_type"}})");
  EXPECT_EQ(serializeError(Status(ErrorCode::kInternal, "boom")),
            R"({"error":{"message":"boom","type":"server_error","param":null,"code":null}})");
}

TEST(SerializeError, UsesTheTaxonomy) {
  Json j = parseStrict(
      serializeError(Status(ErrorCode::kRateLimited, "slow", {}, "rate_limit_exceeded")));
  EXPECT_EQ(j["error"]["type"], "rate_limit_error");
  EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
  j = parseStrict(
      serializeError(Status(ErrorCode::kNotFound, "no such model", "model", "model_not_found")));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  j = parseStrict(serializeError(Status(ErrorCode::kUnauthenticated, "Incorrect API key")));
  EXPECT_EQ(j["error"]["type"], "authentication_error");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

TEST(SerializeError, UpstreamTextIsSafe) {
  Json j = parseStrict(
      serializeError(Status(ErrorCode::kUpstreamError, "upstream said \x01\xFF<html>\n")));
  EXPECT_EQ(j["error"]["message"], "upstream said \x01\xEF\xBF\xBD<html>\n");
  EXPECT_EQ(j["error"]["type"], "upstream_error");
}

TEST(SerializeError, RequestErrorsSerialiseWithTheirParam) {
  auto r = parseChatRequest(R"({"model":"m","messages":[{"role":"user"}]})");
  ASSERT_FALSE(r.ok());
  Json j = parseStrict(serializeError(r.status()));
  EXPECT_EQ(j["error"]["param"], "messages[0].content");
  EXPECT_EQ(j["error"]["code"], "missing_required_parameter");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"].size(), 4u);
}

}  // namespace
}  // namespace api
