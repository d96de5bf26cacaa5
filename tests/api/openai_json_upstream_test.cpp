// parseChatResponse, parseChatChunk and upstreamErrorMessage: what OpenAI-compatible
// servers send us, the good, the odd and the broken.
#include <gtest/gtest.h>

#include <string>

#include "api/openai_json.h"

namespace api {
namespace {

// A body as OpenAI sends it today, with fields the schema does not model.
constexpr std::string_view kOpenAIResponse = R"({
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4o-2024-08-06",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "Hello! How can I assist you today?",
                "refusal": null, "annotations": []},
    "logprobs": null,
    "finish_reason": "stop"
  }],
  "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0,
              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
})";

Status responseErr(std::string_view body) {
  auto r = parseChatResponse(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? Status() : r.status();
}

Status chunkErr(std::string_view data) {
  auto r = parseChatChunk(data);
  EXPECT_FALSE(r.ok()) << data;
  return r.ok() ? Status() : r.status();
}

bool mentions(const Status& s, std::string_view what) {
  return s.message().find(what) != std::string::npos;
}

// ---- responses ---------------------------------------------------------------------------

TEST(ParseChatResponse, ReadsOpenAIResponse) {
  auto r = parseChatResponse(kOpenAIResponse);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
  EXPECT_EQ(r->created, 1741569952);
  EXPECT_EQ(r->model, "gpt-4o-2024-08-06");
  EXPECT_EQ(r->system_fingerprint, "fp_fc9f1d7035");
  EXPECT_EQ(r->service_tier, "default");
  ASSERT_EQ(r->choices.size(), 1u);
  const Choice& c = r->choices[0];
  EXPECT_EQ(c.index, 0);
  EXPECT_EQ(c.message.role, Role::kAssistant);
  EXPECT_EQ(c.message.content.kind, Content::Kind::kText);
  EXPECT_EQ(c.message.content.text, "Hello! How can I assist you today?");
  EXPECT_FALSE(c.message.refusal);
  EXPECT_TRUE(c.message.tool_calls.empty());
  EXPECT_EQ(c.finish_reason, "stop");
  EXPECT_FALSE(c.logprobs);
  ASSERT_TRUE(r->usage);
  EXPECT_EQ(r->usage->prompt_tokens, 19);
  EXPECT_EQ(r->usage->completion_tokens, 10);
  EXPECT_EQ(r->usage->total_tokens, 29);
  EXPECT_EQ(r->usage->cached_prompt_tokens, 3);
  EXPECT_EQ(r->usage->reasoning_tokens, 4);
}

TEST(ParseChatResponse, ReadsToolCalls) {
  auto r = parseChatResponse(R"({"id":"x","choices":[{"index":0,"message":{"role":"assistant",
      "content":null,"tool_calls":[{"id":"call_abc","type":"function","function":{
      "name":"get_weather","arguments":"{\"location\":\"Boston\"}"}}]},
      "finish_reason":"tool_calls"}]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Message& m = r->choices[0].message;
  EXPECT_TRUE(m.content.isNull());
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].id, "call_abc");
  EXPECT_EQ(m.tool_calls[0].type, "function");
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location":"Boston"})");
  EXPECT_EQ(r->choices[0].finish_reason, "tool_calls");
  EXPECT_FALSE(r->usage);
}

TEST(ParseChatResponse, ToleratesLooseServers) {
  // No id/model/created, arguments as an object, content as parts, float counts, no total,
  // no index, a null finish_reason, extra fields everywhere.
  auto r = parseChatResponse(R"({"choices":[{"message":{"content":[{"type":"text","text":"a"},
      {"type":"text","text":"b"}],"tool_calls":[{"function":{"name":"f","arguments":{"x":1}}}],
      "reasoning_content":"hmm"},"finish_reason":null,"stop_reason":null},
      {"message":{"content":"second"},"index":1}],
      "usage":{"prompt_tokens":3.0,"completion_tokens":4,"extra":true},"created":1.7e9,
      "kv_transfer_params":null})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->id, "");
  EXPECT_EQ(r->created, 1700000000);
  ASSERT_EQ(r->choices.size(), 2u);
  EXPECT_EQ(r->choices[0].index, 0);
  EXPECT_EQ(r->choices[0].message.content.text, "a\nb");
  EXPECT_EQ(r->choices[0].message.tool_calls[0].arguments, R"({"x":1})");
  EXPECT_EQ(r->choices[0].message.tool_calls[0].type, "function");
  EXPECT_EQ(r->choices[0].finish_reason, "");
  EXPECT_EQ(r->choices[1].index, 1);
  EXPECT_EQ(r->choices[1].message.content.text, "second");
  EXPECT_EQ(r->usage->prompt_tokens, 3);
  EXPECT_EQ(r->usage->total_tokens, 7);  // computed when absent
}

TEST(ParseChatResponse, ReadsLogprobs) {
  auto r = parseChatResponse(R"({"choices":[{"message":{"content":"Hi"},"finish_reason":"stop",
      "logprobs":{"content":[{"token":"Hi","logprob":-0.01,"bytes":[72,105],
      "top_logprobs":[{"token":"Hi","logprob":-0.01,"bytes":[72,105]},
                      {"token":"\ufffd","logprob":-5.5,"bytes":[226,130]}]},
      {"token":"!","logprob":-2,"bytes":null,"top_logprobs":[]},
      {"token":"?","logprob":-3,"bytes":[300],"top_logprobs":[]}],"refusal":null}}]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& lp = *r->choices[0].logprobs;
  ASSERT_EQ(lp.size(), 3u);
  EXPECT_EQ(lp[0].token, "Hi");
  EXPECT_DOUBLE_EQ(lp[0].logprob, -0.01);
  ASSERT_EQ(lp[0].top_logprobs.size(), 2u);
  EXPECT_EQ(lp[0].top_logprobs[1].token, "\xE2\x82");  // exact bytes, not U+FFFD
  EXPECT_DOUBLE_EQ(lp[0].top_logprobs[1].logprob, -5.5);
  EXPECT_EQ(lp[1].token, "!");  // null bytes: the token string
  EXPECT_EQ(lp[2].token, "?");  // implausible bytes: the token string
}

TEST(ParseChatResponse, NullLogprobsContentIsEmpty) {
  auto r = parseChatResponse(
      R"({"choices":[{"message":{"content":"x"},"logprobs":{"content":null,"refusal":null}}]})");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->choices[0].logprobs);
  EXPECT_TRUE(r->choices[0].logprobs->empty());
}

TEST(ParseChatResponse, ReadsRefusal) {
  auto r = parseChatResponse(
      R"({"choices":[{"message":{"content":null,"refusal":"I can't."},"finish_reason":"stop"}]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->choices[0].message.refusal, "I can't.");
  EXPECT_TRUE(r->choices[0].message.content.isNull());
}

TEST(ParseChatResponse, EmptyChoicesAreAccepted) {
  auto r = parseChatResponse(R"({"id":"x","choices":[]})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->choices.empty());
}

TEST(ParseChatResponse, RejectsGarbage) {
  struct Case {
    std::string_view body;
    std::string_view mentions;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "not valid JSON"},
           {"<html>502 Bad Gateway</html>", "not valid JSON"},
           {R"({"choices":[)", "not valid JSON"},
           {"[1,2]", "an array, not an object"},
           {"\"ok\"", "a string, not an object"},
           {"{}", "'choices' is missing"},
           {R"({"choices":null})", "'choices' is missing"},
           {R"({"choices":{}})", "'choices' is an object, expected an array"},
           {R"({"choices":[5]})", "'choices[0]' is an integer"},
           {R"({"choices":[{"finish_reason":"stop"}]})", "'choices[0].message' is missing"},
           {R"({"choices":[{"message":"hi"}]})", "'choices[0].message' is a string"},
           {R"({"choices":[{"message":{"content":5}}]})", "'choices[0].message.content'"},
           {R"({"choices":[{"message":{"content":{}}}]})", "'choices[0].message.content'"},
           {R"({"choices":[{"message":{"content":"a"}},{"message":{"tool_calls":{}}}]})",
            "'choices[1].message.tool_calls' is an object"},
           {R"({"choices":[{"message":{"tool_calls":[1]}}]})",
            "'choices[0].message.tool_calls[0]' is an integer"},
           {R"({"choices":[{"message":{"tool_calls":[{"id":"c"}]}}]})",
            "'choices[0].message.tool_calls[0].function' is missing"},
           {R"({"choices":[{"message":{"tool_calls":[{"function":"f"}]}}]})",
            "'choices[0].message.tool_calls[0].function' is a string"},
           {R"({"choices":[{"message":{"content":"x"}}],"usage":"lots"})", "'usage' is a string"},
           {R"({"choices":[{"message":{"content":"x"},"logprobs":[1]}]})",
            "'choices[0].logprobs' is an array"},
           {R"({"choices":[{"message":{"content":"x"},"logprobs":{"content":5}}]})",
            "'choices[0].logprobs.content' is an integer"},
       }) {
    SCOPED_TRACE(c.body);
    Status s = responseErr(c.body);
    EXPECT_EQ(s.code(), ErrorCode::kUpstreamError);
    EXPECT_TRUE(mentions(s, c.mentions)) << s.message();
  }
}

TEST(ParseChatResponse, ErrorBodyIsReportedAsSuch) {
  Status s =
      responseErr(R"({"error":{"message":"The server had an error while processing your request.",)"
                  R"("type":"server_error","param":null,"code":null}})");
  EXPECT_EQ(s.code(), ErrorCode::kUpstreamError);
  EXPECT_TRUE(mentions(s, "The server had an error while processing your request.")) << s.message();
}

// ---- chunks ------------------------------------------------------------------------------

TEST(ParseChatChunk, ReadsOpenAIChunks) {
  auto first = parseChatChunk(
      R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,)"
      R"("model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_44709d6fcb",)"
      R"("choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},)"
      R"("logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc"})");
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(first->id, "chatcmpl-1");
  EXPECT_EQ(first->created, 1694268190);
  EXPECT_EQ(first->model, "gpt-4o-mini");
  EXPECT_EQ(first->system_fingerprint, "fp_44709d6fcb");
  EXPECT_FALSE(first->usage);
  ASSERT_EQ(first->choices.size(), 1u);
  const Delta& d = first->choices[0].delta;
  EXPECT_EQ(d.role, Role::kAssistant);
  EXPECT_EQ(d.content, "");
  EXPECT_FALSE(d.refusal);
  EXPECT_FALSE(first->choices[0].finish_reason);
  EXPECT_FALSE(first->choices[0].logprobs);

  auto last = parseChatChunk(
      R"({"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})");
  ASSERT_TRUE(last.ok());
  EXPECT_FALSE(last->choices[0].delta.content);
  EXPECT_FALSE(last->choices[0].delta.role);
  EXPECT_EQ(last->choices[0].finish_reason, "stop");
}

TEST(ParseChatChunk, ReadsUsageChunk) {
  auto c =
      parseChatChunk(R"({"id":"x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,)"
                     R"("total_tokens":21,"completion_tokens_details":{"reasoning_tokens":5}}})");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->choices.empty());
  ASSERT_TRUE(c->usage);
  EXPECT_EQ(c->usage->total_tokens, 21);
  EXPECT_EQ(c->usage->reasoning_tokens, 5);

  // The tier the answer ran at goes with the usage (it prices it).
  c = parseChatChunk(R"({"id":"x","choices":[],"service_tier":"flex",)"
                     R"("usage":{"prompt_tokens":1,"completion_tokens":1}})");
  ASSERT_TRUE(c.ok() && c->usage);
  EXPECT_EQ(c->usage->service_tier, "flex");
  auto whole = parseChatResponse(kOpenAIResponse);
  ASSERT_TRUE(whole.ok() && whole->usage);
  EXPECT_EQ(whole->usage->service_tier, "default");

  // Some servers leave "choices" out of the usage chunk altogether.
  c = parseChatChunk(R"({"id":"x","usage":{"prompt_tokens":1,"completion_tokens":1}})");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->choices.empty());
  EXPECT_EQ(c->usage->total_tokens, 2);
}

TEST(ParseChatChunk, EmptyChoicesWithoutUsage) {
  // Azure's first chunk carries only prompt filter results.
  auto c = parseChatChunk(R"({"choices":[],"created":0,"id":"","model":"",)"
                          R"("prompt_filter_results":[{"prompt_index":0}]})");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->choices.empty());
  EXPECT_FALSE(c->usage);
}

TEST(ParseChatChunk, ReadsToolCallFragments) {
  auto c = parseChatChunk(
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":)"
      R"("function","function":{"name":"get_weather","arguments":""}},)"
      R"({"index":1,"function":{"arguments":"{\"a\""}},{"function":{"arguments":{"b":2}}}]}}]})");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const auto& calls = c->choices[0].delta.tool_calls;
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].index, 0);
  EXPECT_EQ(calls[0].id, "call_1");
  EXPECT_EQ(calls[0].type, "function");
  EXPECT_EQ(calls[0].name, "get_weather");
  EXPECT_EQ(calls[0].arguments, "");
  EXPECT_EQ(calls[1].index, 1);
  EXPECT_FALSE(calls[1].id);
  EXPECT_FALSE(calls[1].name);
  EXPECT_EQ(calls[1].arguments, "{\"a\"");
  EXPECT_EQ(calls[2].index, 2);  // position when the server leaves index out
  EXPECT_EQ(calls[2].arguments, R"({"b":2})");
}

TEST(ParseChatChunk, ToleratesMissingDeltaAndOddRoles) {
  auto c = parseChatChunk(
      R"({"choices":[{"index":0,"finish_reason":"length"},{"index":1,"delta":null},)"
      R"({"index":2,"delta":{"role":"narrator","content":"x"}},)"
      R"({"index":3,"delta":{"content":[{"type":"text","text":"p"}]},"finish_reason":""}]})");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->choices[0].finish_reason, "length");
  EXPECT_FALSE(c->choices[1].delta.content);
  EXPECT_FALSE(c->choices[1].finish_reason);
  EXPECT_FALSE(c->choices[2].delta.role);  // unknown roles are dropped
  EXPECT_EQ(c->choices[3].delta.content, "p");
  EXPECT_FALSE(c->choices[3].finish_reason);  // "" is no finish reason
}

TEST(ParseChatChunk, StreamedLogprobs) {
  auto c = parseChatChunk(
      R"({"choices":[{"index":0,"delta":{"content":"\u20ac"},"logprobs":{"content":[)"
      R"({"token":"\u20ac","logprob":-0.2,"bytes":[226,130,172],"top_logprobs":[]}]}}]})");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->choices[0].logprobs);
  EXPECT_EQ(c->choices[0].logprobs->at(0).token, "\xE2\x82\xAC");
}

TEST(ParseChatChunk, RejectsGarbage) {
  struct Case {
    std::string_view data;
    std::string_view mentions;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "not valid JSON"},
           {"[DONE]", "not valid JSON"},
           {"{\"choices\":[{\"delta\":{\"content\":\"x\"}}]", "not valid JSON"},
           {"null", "null, not an object"},
           {"{\"id\":\"x\"}", "'choices' is missing"},
           {R"({"choices":"none"})", "'choices' is a string"},
           {R"({"choices":[[]]})", "'choices[0]' is an array"},
           {R"({"choices":[{"delta":"x"}]})", "'choices[0].delta' is a string"},
           {R"({"choices":[{"delta":{}},{"delta":[]}]})", "'choices[1].delta' is an array"},
           {R"({"choices":[{"delta":{"content":5}}]})", "'choices[0].delta.content' is an integer"},
           {R"({"choices":[{"delta":{"tool_calls":"x"}}]})",
            "'choices[0].delta.tool_calls' is a string"},
           {R"({"choices":[{"delta":{"tool_calls":[null]}}]})",
            "'choices[0].delta.tool_calls[0]' is null"},
           {R"({"choices":[],"usage":[1]})", "'usage' is an array"},
       }) {
    SCOPED_TRACE(c.data);
    Status s = chunkErr(c.data);
    EXPECT_EQ(s.code(), ErrorCode::kUpstreamError);
    EXPECT_TRUE(mentions(s, c.mentions)) << s.message();
  }
}

TEST(ParseChatChunk, ErrorEventIsReportedAsSuch) {
  Status s = chunkErr(R"({"error":{"message":"Rate limit reached","type":"requests"}})");
  EXPECT_TRUE(mentions(s, "Rate limit reached")) << s.message();
}

// ---- upstreamErrorMessage ----------------------------------------------------------------

TEST(UpstreamErrorMessage, ReadsOpenAIShape) {
  EXPECT_EQ(
      upstreamErrorMessage(R"({"error":{"message":"Incorrect API key provided: sk-***.","type":)"
                           R"("invalid_request_error","param":null,"code":"invalid_api_key"}})"),
      "Incorrect API key provided: sk-***.");
  EXPECT_EQ(upstreamErrorMessage("\n  {\"error\": {\"message\": \"  padded  \"}}  \n"), "padded");
}

TEST(UpstreamErrorMessage, ReadsCommonVariants) {
  EXPECT_EQ(upstreamErrorMessage(R"({"error":"model is loading"})"), "model is loading");
  EXPECT_EQ(upstreamErrorMessage(R"({"message":"Too many requests"})"), "Too many requests");
  EXPECT_EQ(upstreamErrorMessage(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(upstreamErrorMessage(R"([{"error":{"code":429,"message":"Quota exceeded"}}])"),
            "Quota exceeded");
  EXPECT_EQ(upstreamErrorMessage(R"({"object":"error","message":"bad","code":400})"), "bad");
}

TEST(UpstreamErrorMessage, FallsBackToTheTrimmedBody) {
  EXPECT_EQ(upstreamErrorMessage("  upstream connect error\r\n"), "upstream connect error");
  EXPECT_EQ(upstreamErrorMessage("<html><body>502</body></html>"), "<html><body>502</body></html>");
  EXPECT_EQ(upstreamErrorMessage(R"({"error":{"code":500}})"), R"({"error":{"code":500}})");
  EXPECT_EQ(upstreamErrorMessage(R"({"error":{"message":""}})"), R"({"error":{"message":""}})");
  EXPECT_EQ(upstreamErrorMessage("{not json"), "{not json");
  EXPECT_EQ(upstreamErrorMessage("[]"), "[]");
}

TEST(UpstreamErrorMessage, EmptyForEmptyBody) {
  EXPECT_EQ(upstreamErrorMessage(""), "");
  EXPECT_EQ(upstreamErrorMessage(" \r\n\t "), "");
}

TEST(UpstreamErrorMessage, TruncatesTo500BytesOnACharacterBoundary) {
  std::string longText(2000, 'x');
  std::string m = upstreamErrorMessage(longText);
  EXPECT_LE(m.size(), 500u);
  EXPECT_GE(m.size(), 490u);
  EXPECT_EQ(m.substr(m.size() - 3), "...");

  std::string euros;
  for (int i = 0; i < 400; ++i) euros += "\xE2\x82\xAC";  // 3 bytes each
  for (const std::string& body : {euros, R"({"error":{"message":")" + euros + R"("}})"}) {
    m = upstreamErrorMessage(body);
    EXPECT_LE(m.size(), 500u);
    std::string text = m.substr(0, m.size() - 3);
    EXPECT_EQ(text.size() % 3, 0u);
    EXPECT_EQ(text, euros.substr(0, text.size()));
  }
  EXPECT_EQ(upstreamErrorMessage(std::string(500, 'y')), std::string(500, 'y'));
}

}  // namespace
}  // namespace api
