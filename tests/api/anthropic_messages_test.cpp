#include "api/anthropic_messages.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "api/sse.h"

namespace api {
namespace {


ChatRequest mustParse(const Json& body) {
  auto r = parseMessagesRequest(body.dump());
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : ChatRequest{};
}

Status parseError(const Json& body) {
  auto r = parseMessagesRequest(body.dump());
  EXPECT_FALSE(r.ok()) << body.dump();
  return r.status();
}

Json minimal() {
  return Json{{"model", "m"},
              {"max_tokens", 16},
              {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
}

// The SSE events of `bytes` as (event name, data JSON) pairs.
std::vector<std::pair<std::string, Json>> events(const std::string& bytes) {
  SseParser parser;
  std::vector<SseEvent> raw;
  EXPECT_TRUE(parser.feed(bytes, raw));
  std::vector<std::pair<std::string, Json>> out;
  for (const SseEvent& e : raw) out.emplace_back(e.event, Json::parse(e.data));
  return out;
}

TEST(AnthropicMessagesRequest, ReadsEveryModelledField) {
  Json body = {
      {"model", "claude-x"},
      {"max_tokens", 256},
      {"system", Json::array({{{"type", "text"}, {"text", "Be terse."},
                               {"cache_control", {{"type", "ephemeral"}}}}})},
      {"messages",
       Json::array(
           {{{"role", "user"},
             {"content", Json::array({{{"type", "text"}, {"text", "What is in it?"}},
                                      {{"type", "image"},
                                       {"source", {{"type", "base64"},
                                                   {"media_type", "image/png"},
                                                   {"data", "iVBORw0KGgo="}}}}})}},
            {{"role", "assistant"},
             {"content", Json::array({{{"type", "thinking"}, {"thinking", "Look."},
                                       {"signature", "sig"}},
                                      {{"type", "text"}, {"text", "Checking."}},
                                      {{"type", "tool_use"}, {"id", "toolu_1"},
                                       {"name", "lookup"}, {"input", {{"q", "x"}}}}})}},
            {{"role", "user"},
             {"content", Json::array({{{"type", "tool_result"}, {"tool_use_id", "toolu_1"},
                                       {"content", "found"}},
                                      {{"type", "text"}, {"text", "Thanks"}}})}}})},
      {"tools", Json::array({{{"name", "lookup"}, {"description", "Looks up."},
                              {"input_schema", {{"type", "object"}}}}})},
      {"tool_choice", {{"type", "tool"}, {"name", "lookup"}, {"disable_parallel_tool_use", true}}},
      {"stop_sequences", Json::array({"END"})},
      {"temperature", 0.5},
      {"top_p", 0.9},
      {"top_k", 40},
      {"metadata", {{"user_id", "u-7"}}},
      {"thinking", {{"type", "enabled"}, {"budget_tokens", 2048}}},
      {"stream", true}};
  ChatRequest r = mustParse(body);
  EXPECT_EQ(r.model, "claude-x");
  EXPECT_EQ(r.max_tokens, 256);
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0].role, Role::kSystem);
  EXPECT_EQ(r.messages[0].content.joinedText(), "Be terse.");
  EXPECT_EQ(r.messages[1].role, Role::kUser);
  ASSERT_EQ(r.messages[1].content.parts.size(), 2u);
  EXPECT_EQ(r.messages[1].content.parts[1].image_url, "data:image/png;base64,iVBORw0KGgo=");
  EXPECT_EQ(r.messages[2].role, Role::kAssistant);
  EXPECT_EQ(r.messages[2].reasoning_content, "Look.");
  EXPECT_EQ(r.messages[2].content.joinedText(), "Checking.");
  ASSERT_EQ(r.messages[2].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[2].tool_calls[0].id, "toolu_1");
  EXPECT_EQ(Json::parse(r.messages[2].tool_calls[0].arguments), Json({{"q", "x"}}));
  // The tool result comes first, then the rest of that user turn.
  EXPECT_EQ(r.messages[3].role, Role::kTool);
  EXPECT_EQ(r.messages[3].tool_call_id, "toolu_1");
  EXPECT_EQ(r.messages[3].content.joinedText(), "found");
  EXPECT_EQ(r.messages[4].role, Role::kUser);
  EXPECT_EQ(r.messages[4].content.joinedText(), "Thanks");
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0].parameters, Json({{"type", "object"}}));
  ASSERT_TRUE(r.tool_choice);
  EXPECT_EQ(r.tool_choice->mode, ToolChoice::Mode::kFunction);
  EXPECT_EQ(r.tool_choice->function_name, "lookup");
  EXPECT_EQ(r.parallel_tool_calls, false);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r.temperature, 0.5);
  EXPECT_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.extra.value("top_k", 0), 40);
  EXPECT_EQ(r.user, "u-7");
  EXPECT_EQ(r.chat_template_kwargs, Json({{"enable_thinking", true}}));
  EXPECT_TRUE(r.stream);
}

TEST(AnthropicMessagesRequest, ToolChoiceAnyAndNone) {
  Json body = minimal();
  body["tool_choice"] = {{"type", "any"}};
  EXPECT_EQ(mustParse(body).tool_choice->mode, ToolChoice::Mode::kRequired);
  body["tool_choice"] = {{"type", "none"}};
  EXPECT_EQ(mustParse(body).tool_choice->mode, ToolChoice::Mode::kNone);
}

TEST(AnthropicMessagesRequest, MaxTokensIsRequiredExceptWhenCounting) {
  Json body = minimal();
  body.erase("max_tokens");
  Status s = parseError(body);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(s.param(), "max_tokens");
  EXPECT_TRUE(parseCountTokensRequest(body.dump()).ok());
  // count_tokens takes no max_tokens (Anthropic's API refuses it there too).
  EXPECT_FALSE(parseCountTokensRequest(minimal().dump()).ok());
}

TEST(AnthropicMessagesRequest, RefusesWhatItCannotCarry) {
  struct Case {
    const char* what;
    Json body;
    const char* param;
  };
  std::vector<Case> cases;
  Json b = minimal();
  b["container"] = "c";
  cases.push_back({"unknown field", b, "container"});
  b = minimal();
  b["messages"][0]["role"] = "system";
  cases.push_back({"system role in messages", b, "messages.0.role"});
  b = minimal();
  b["temperature"] = 1.5;
  cases.push_back({"temperature above 1", b, "temperature"});
  b = minimal();
  b["max_tokens"] = 0;
  cases.push_back({"max_tokens 0", b, "max_tokens"});
  b = minimal();
  b["tools"] = Json::array({{{"type", "web_search_20250305"}, {"name", "web_search"}}});
  cases.push_back({"server tool", b, "tools.0.type"});
  b = minimal();
  b["messages"][0]["content"] = Json::array({{{"type", "document"}, {"source", Json::object()}}});
  cases.push_back({"document block", b, "messages.0.content.0.type"});
  b = minimal();
  b["messages"][0]["content"] =
      Json::array({{{"type", "image"}, {"source", {{"type", "base64"},
                                                   {"media_type", "image/bmp"},
                                                   {"data", "x"}}}}});
  cases.push_back({"image type", b, "messages.0.content.0.source.media_type"});
  b = minimal();
  b["messages"] = Json::array();
  cases.push_back({"no messages", b, "messages"});
  b = minimal();
  b["thinking"] = {{"type", "enabled"}, {"budget_tokens", 10}};
  cases.push_back({"thinking budget below 1024", b, "thinking.budget_tokens"});
  b = minimal();
  b["messages"][0]["content"] = 7;
  cases.push_back({"content not text", b, "messages.0.content"});
  for (const Case& c : cases) {
    Status s = parseError(c.body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest) << c.what;
    EXPECT_EQ(s.param(), c.param) << c.what << ": " << s.message();
  }
}

TEST(AnthropicMessagesRequest, MalformedBodiesAreInvalidRequests) {
  const std::vector<std::string> bodies = {"", "{", "[]", "null", "{\"model\":1}",
                                          std::string(300, '[')};
  for (const std::string& body : bodies) {
    auto r = parseMessagesRequest(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidRequest) << body;
    EXPECT_EQ(serializeAnthropicError(r.status()).find("OpenAI"), std::string::npos);
  }
}

TEST(AnthropicMessagesErrors, AnthropicShapesAndStatuses) {
  EXPECT_EQ(anthropicHttpStatus(Status(ErrorCode::kUnavailable, "busy")), 529);
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kUnavailable, "busy")), "overloaded_error");
  EXPECT_EQ(anthropicHttpStatus(Status(ErrorCode::kUpstreamTimeout, "slow")), 500);
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kUpstreamError, "bad")), "api_error");
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kQuotaExceeded, "budget")), "rate_limit_error");
  EXPECT_EQ(anthropicHttpStatus(Status(ErrorCode::kQuotaExceeded, "budget")), 429);
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kUnauthenticated, "key")),
            "authentication_error");
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kPermissionDenied, "no")), "permission_error");
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kNotFound, "no")), "not_found_error");
  EXPECT_EQ(anthropicErrorType(Status(ErrorCode::kPayloadTooLarge, "big")), "request_too_large");
  Status passed = Status(ErrorCode::kInvalidRequest, "unprocessable").withHttpStatus(422);
  EXPECT_EQ(anthropicHttpStatus(passed), 422);
  EXPECT_EQ(anthropicErrorType(passed), "invalid_request_error");
  const std::string body = serializeAnthropicError(invalidRequest("bad"), "req_1");
  EXPECT_EQ(body.rfind("{\"type\":\"error\"", 0), 0u) << body;
  EXPECT_EQ(Json::parse(body),
            Json({{"type", "error"},
                  {"error", {{"type", "invalid_request_error"}, {"message", "bad"}}},
                  {"request_id", "req_1"}}));
}

ChatResponse answer() {
  ChatResponse r;
  r.id = "chatcmpl-abc";
  Choice& c = r.choices.emplace_back();
  c.message.role = Role::kAssistant;
  c.message.reasoning_content = "hmm";
  c.message.content = Content::ofText("Calling.");
  c.message.tool_calls.push_back(ToolCall{"call_1", "function", "lookup", R"({"q":"x"})"});
  c.finish_reason = "tool_calls";
  Usage u;
  u.prompt_tokens = 100;
  u.cached_prompt_tokens = 60;
  u.cache_write_prompt_tokens = 10;
  u.completion_tokens = 7;
  r.usage = u;
  return r;
}

TEST(AnthropicMessagesResponse, WritesAMessageObject) {
  const std::string text = serializeMessage(answer(), "my-model");
  EXPECT_EQ(text.rfind("{\"id\":\"msg_abc\",\"type\":\"message\"", 0), 0u) << text;
  Json m = Json::parse(text);
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "my-model");
  EXPECT_EQ(m["stop_reason"], "tool_use");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  ASSERT_EQ(m["content"].size(), 3u);
  EXPECT_EQ(m["content"][0], Json({{"type", "thinking"}, {"thinking", "hmm"}, {"signature", ""}}));
  EXPECT_EQ(m["content"][1], Json({{"type", "text"}, {"text", "Calling."}}));
  EXPECT_EQ(m["content"][2], Json({{"type", "tool_use"},
                                   {"id", "call_1"},
                                   {"name", "lookup"},
                                   {"input", {{"q", "x"}}}}));
  // Anthropic counts cache reads and writes apart from input_tokens.
  EXPECT_EQ(m["usage"], Json({{"input_tokens", 30},
                              {"cache_creation_input_tokens", 10},
                              {"cache_read_input_tokens", 60},
                              {"output_tokens", 7}}));
}

TEST(AnthropicMessagesResponse, StopReasons) {
  EXPECT_EQ(stopReasonFor("stop"), "end_turn");
  EXPECT_EQ(stopReasonFor("length"), "max_tokens");
  EXPECT_EQ(stopReasonFor("tool_calls"), "tool_use");
  EXPECT_EQ(stopReasonFor("content_filter"), "refusal");
  EXPECT_EQ(messageIdFor("msg_1"), "msg_1");
  EXPECT_EQ(messageIdFor("chatcmpl-9"), "msg_9");
}

ChatChunk delta(std::function<void(Delta&)> fill, std::optional<std::string> finish = {}) {
  ChatChunk c;
  c.id = "chatcmpl-s1";
  ChunkChoice& ch = c.choices.emplace_back();
  fill(ch.delta);
  ch.finish_reason = std::move(finish);
  return c;
}

TEST(AnthropicMessagesStream, EventSequenceForThinkingTextAndTools) {
  MessagesStreamWriter w("my-model", "req_1");
  std::string out;
  out += w.chunk(delta([](Delta& d) { d.role = Role::kAssistant; }));
  out += w.chunk(delta([](Delta& d) { d.reasoning_content = "think"; }));
  out += w.chunk(delta([](Delta& d) { d.content = "Hel"; }));
  out += w.chunk(delta([](Delta& d) { d.content = "lo"; }));
  out += w.chunk(delta([](Delta& d) {
    d.tool_calls.push_back(ToolCallDelta{0, "call_1", "function", "lookup", "{\"q\":"});
  }));
  out += w.chunk(delta([](Delta& d) {
    d.tool_calls.push_back(ToolCallDelta{0, std::nullopt, std::nullopt, std::nullopt, "\"x\"}"});
  }));
  out += w.chunk(delta([](Delta& d) {
    d.tool_calls.push_back(ToolCallDelta{1, "call_2", "function", "other", "{}"});
  }, "tool_calls"));
  Usage u;
  u.prompt_tokens = 12;
  u.completion_tokens = 5;
  out += w.finish(u);
  auto ev = events(out);
  std::vector<std::string> names;
  for (const auto& [name, data] : ev) {
    names.push_back(name);
    EXPECT_EQ(data["type"], name);  // the event line and the data's type agree
  }
  std::vector<std::string> expected = {
      "message_start",       "ping",
      "content_block_start", "content_block_delta", "content_block_stop",   // thinking
      "content_block_start", "content_block_delta", "content_block_delta",  // text
      "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_delta",  // tool 1
      "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_stop",   // tool 2
      "message_delta",       "message_stop"};
  ASSERT_EQ(names, expected);
  EXPECT_EQ(ev[0].second["message"]["id"], "msg_s1");
  EXPECT_EQ(ev[0].second["message"]["model"], "my-model");
  EXPECT_TRUE(ev[0].second["message"]["content"].empty());
  EXPECT_TRUE(ev[0].second["message"]["stop_reason"].is_null());
  EXPECT_EQ(ev[2].second["content_block"]["type"], "thinking");
  EXPECT_EQ(ev[3].second["delta"], Json({{"type", "thinking_delta"}, {"thinking", "think"}}));
  EXPECT_EQ(ev[5].second["index"], 1);
  EXPECT_EQ(ev[6].second["delta"], Json({{"type", "text_delta"}, {"text", "Hel"}}));
  EXPECT_EQ(ev[9].second["content_block"],
            Json({{"type", "tool_use"}, {"id", "call_1"}, {"name", "lookup"},
                  {"input", Json::object()}}));
  EXPECT_EQ(ev[10].second["delta"],
            Json({{"type", "input_json_delta"}, {"partial_json", "{\"q\":"}}));
  EXPECT_EQ(ev[13].second["index"], 3);
  EXPECT_EQ(ev[16].second["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(ev[16].second["usage"]["output_tokens"], 5);
  EXPECT_EQ(ev[16].second["usage"]["input_tokens"], 12);
}

TEST(AnthropicMessagesStream, AnEmptyAnswerStillOpensAndEndsTheMessage) {
  MessagesStreamWriter w("m", "req_9");
  auto ev = events(w.finish(std::nullopt));
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].first, "message_start");
  EXPECT_EQ(ev[0].second["message"]["id"], "msg_req_9");
  EXPECT_EQ(ev[2].first, "message_delta");
  EXPECT_EQ(ev[3].first, "message_stop");
}

TEST(AnthropicMessagesStream, ErrorEvent) {
  MessagesStreamWriter w("m", "req_9");
  auto ev = events(w.error(Status(ErrorCode::kUnavailable, "overloaded")));
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, "error");
  EXPECT_EQ(ev[0].second, Json({{"type", "error"},
                                {"error", {{"type", "overloaded_error"},
                                           {"message", "overloaded"}}}}));
}

}  // namespace
}  // namespace api

namespace api {
namespace {

TEST(AnthropicMessagesNative, TheBodyGoesWithTheRequest) {
  const std::string body =
      R"({"model":"m","max_tokens":16,"system":[{"type":"text","text":"S",)"
      R"("cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]})";
  auto r = parseMessagesRequest(body);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->native_api, kNativeApi);
  ASSERT_TRUE(r->native_body);
  EXPECT_EQ(*r->native_body, body);
  // A thinking block without a signature (another model's thoughts) would be refused by
  // Anthropic: such a conversation is translated, not sent as it came.
  Json turns = Json::parse(body);
  turns["messages"].push_back(
      {{"role", "assistant"},
       {"content", Json::array({{{"type", "thinking"}, {"thinking", "t"}, {"signature", ""}},
                                {{"type", "text"}, {"text", "a"}}})}});
  turns["messages"].push_back({{"role", "user"}, {"content", "more"}});
  auto unsigned_thought = parseMessagesRequest(turns.dump());
  ASSERT_TRUE(unsigned_thought.ok()) << unsigned_thought.status().toString();
  EXPECT_FALSE(unsigned_thought->native_body);
  turns["messages"][1]["content"][0]["signature"] = "sig-1";
  EXPECT_TRUE(parseMessagesRequest(turns.dump())->native_body);
  // count_tokens bodies are only counted, never sent.
  auto c = parseCountTokensRequest(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->native_body);
}

TEST(AnthropicMessagesNative, AnAnswerWithAnthropicsBodyIsThatBody) {
  ChatResponse r;
  r.id = "msg_1";
  r.choices.emplace_back().message.content = Content::ofText("translated");
  r.native =
      R"({"id":"msg_1","type":"message","model":"claude-up-20250101","content":[{"type":)"
      R"("thinking","thinking":"t","signature":"sig-1"},{"type":"text","text":"hi",)"
      R"("citations":[]}],"usage":{"input_tokens":3,"cache_read_input_tokens":9,"output_tokens":1}})";
  const std::string text = serializeMessage(r, "claude");
  EXPECT_EQ(text, R"({"model":"claude",)" + r.native.substr(1, r.native.find(R"(,"model")") - 1) +
                      r.native.substr(r.native.find(R"(,"content")")));
  Json m = Json::parse(text);
  EXPECT_EQ(m["content"][0]["signature"], "sig-1");
  EXPECT_EQ(m["model"], "claude");
}

ChatChunk nativeChunk(std::string events, std::optional<std::string> text = {}) {
  ChatChunk c;
  c.id = "msg_n";
  c.model = "claude";
  if (text) c.choices.emplace_back().delta.content = *text;
  c.native = std::move(events);
  return c;
}

std::string frame(const std::string& name, const Json& data) {
  return "event: " + name + "\n" + sseData(data.dump());
}

TEST(AnthropicMessagesNative, AStreamOfAnthropicsEventsIsHandedOnAsItCame) {
  const std::string start = frame(
      "message_start", Json{{"type", "message_start"},
                            {"message", {{"id", "msg_n"}, {"model", "claude-up-20250101"},
                                         {"usage", {{"input_tokens", 3}}}}}});
  const std::string thinking =
      frame("content_block_start", Json{{"type", "content_block_start"}, {"index", 0},
                                        {"content_block", {{"type", "thinking"}, {"thinking", ""}}}}) +
      frame("content_block_delta", Json{{"type", "content_block_delta"}, {"index", 0},
                                        {"delta", {{"type", "signature_delta"},
                                                   {"signature", "sig-9"}}}});
  const std::string end = frame("message_delta", Json{{"type", "message_delta"},
                                                      {"delta", {{"stop_reason", "end_turn"}}},
                                                      {"usage", {{"output_tokens", 2}}}}) +
                          frame("message_stop", Json{{"type", "message_stop"}});
  MessagesStreamWriter w("claude-asked", "req_1");
  std::string out = w.chunk(nativeChunk(start + thinking, "ignored: the events say it"));
  out += w.chunk(nativeChunk(frame("ping", Json{{"type", "ping"}})));
  Usage u;
  u.completion_tokens = 2;
  out += w.finish(u, end);
  auto ev = events(out);
  ASSERT_EQ(ev.size(), 6u) << out;
  EXPECT_EQ(ev[0].first, "message_start");
  EXPECT_EQ(ev[0].second["message"]["model"], "claude") << "the model the client knows";
  EXPECT_EQ(ev[0].second["message"]["usage"]["input_tokens"], 3);
  EXPECT_EQ(out.substr(out.find("event: content_block_start")), thinking +
                                                                    frame("ping", Json{{"type", "ping"}}) + end);
  EXPECT_EQ(ev[2].second["delta"]["signature"], "sig-9");
}

TEST(AnthropicMessagesNative, AStreamThatBeganTranslatedIgnoresLaterNativeEvents) {
  // A local draft already went out in translated events: a cloud answer that follows (an
  // escalation) is written from its typed deltas, never as a second message_start.
  MessagesStreamWriter w("m", "req_2");
  std::string out = w.chunk(delta([](Delta& d) { d.content = "local "; }));
  out += w.chunk(nativeChunk(frame("message_start", Json{{"type", "message_start"}}), "cloud"));
  out += w.chunk(nativeChunk(frame("ping", Json{{"type", "ping"}})));
  out += w.finish(std::nullopt, "event: message_stop\ndata: {}\n\n");
  auto ev = events(out);
  int starts = 0, stops = 0;
  std::string text;
  for (const auto& [name, data] : ev) {
    starts += name == "message_start";
    stops += name == "message_stop";
    if (name == "content_block_delta") text += data["delta"]["text"].get<std::string>();
  }
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(stops, 1);
  EXPECT_EQ(text, "local cloud");
}

}  // namespace
}  // namespace api
