// End-to-end: the Anthropic Messages entrance (POST /v1/messages, /v1/messages/count_tokens) of
// the real `switchyard` binary, in front of the local engine (a tiny random-weight Gemma 3
// checkpoint), a fake Anthropic and a fake OpenAI upstream. The same pipeline as chat: keys,
// data rules, budgets and ledger rows; answers, stream events and errors in Anthropic's shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

constexpr const char* kDevKey = "sk-msg-dev-5a1f0c9e";
constexpr const char* kSecureKey = "sk-msg-secure-7d3b2a41";
constexpr const char* kPoorKey = "sk-msg-poor-02e8f6c7";

// The text of a streamed answer (text_delta events joined).
std::string streamedText(const std::vector<std::pair<std::string, Json>>& ev) {
  std::string text;
  for (const auto& [name, data] : ev) {
    if (name == "content_block_delta" && data["delta"]["type"] == "text_delta") {
      text += data["delta"]["text"].get<std::string>();
    }
  }
  return text;
}

// The Anthropic stream grammar: message_start, blocks (start, deltas, stop), one
// message_delta, message_stop, with a ping among them (the gateway sends it after
// message_start, Anthropic after the first block's start); every event's data type matches
// its name.
void expectWellFormedStream(const std::vector<std::pair<std::string, Json>>& ev) {
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.front().first, "message_start");
  EXPECT_TRUE(std::any_of(ev.begin(), ev.end(), [](const auto& e) { return e.first == "ping"; }));
  EXPECT_EQ(ev[ev.size() - 2].first, "message_delta");
  EXPECT_EQ(ev.back().first, "message_stop");
  int open = -1, next = 0;
  for (const auto& [name, data] : ev) {
    EXPECT_EQ(data.value("type", ""), name);
    if (name == "content_block_start") {
      EXPECT_EQ(open, -1) << "a block started inside another";
      EXPECT_EQ(data["index"], next);
      open = next++;
    } else if (name == "content_block_delta") {
      EXPECT_EQ(data["index"], open);
    } else if (name == "content_block_stop") {
      EXPECT_EQ(data["index"], open);
      open = -1;
    }
  }
  EXPECT_EQ(open, -1);
}

// An Anthropic error body: {"type":"error","error":{"type","message"}} with `status`.
void expectError(const HttpResponse& r, int status, const std::string& type) {
  EXPECT_EQ(r.status, status) << r.error << "\n" << r.body;
  Json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("type", ""), "error") << r.body;
  ASSERT_TRUE(j.contains("error") && j["error"].is_object()) << r.body;
  EXPECT_EQ(j["error"].value("type", ""), type) << r.body;
  EXPECT_FALSE(j["error"].value("message", "").empty()) << r.body;
  EXPECT_FALSE(j.contains("param")) << "OpenAI's shape leaked: " << r.body;
}

class MessagesE2E : public EntranceE2E {
 protected:
  MessagesE2E() : EntranceE2E({kDevKey, kSecureKey, kPoorKey}) {}

  static HeaderList anthropicHeaders(const std::string& key = kDevKey) {
    return {{"x-api-key", key}, {"anthropic-version", "2023-06-01"}};
  }
  HttpResponse post(const std::string& path, const std::string& body,
                    const HeaderList& headers = anthropicHeaders()) {
    return send(path, body, headers);
  }
  HttpResponse messages(const Json& body, const HeaderList& headers = anthropicHeaders()) {
    return post("/v1/messages", body.dump(), headers);
  }
  static Json ask(const std::string& model, const std::string& text, int max_tokens = 6) {
    return Json{{"model", model},
                {"max_tokens", max_tokens},
                {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
  }
};

TEST_F(MessagesE2E, LocalModelAnswersAsAMessageAndAsAnEventStream) {
  Json body = ask("tiny", "Say hello", 5);
  body["system"] = Json::array({{{"type", "text"}, {"text", "Be brief."}}});
  body["temperature"] = 0;
  HttpResponse r = messages(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json m = r.json();
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "tiny");
  EXPECT_EQ(m["id"].get<std::string>().rfind("msg_", 0), 0u) << r.body;
  EXPECT_EQ(m["stop_reason"], "max_tokens");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  EXPECT_EQ(m["usage"]["output_tokens"], 5);
  EXPECT_GT(m["usage"]["input_tokens"].get<int>(), 5);
  ASSERT_EQ(m["content"].size(), 1u) << r.body;
  EXPECT_EQ(m["content"][0]["type"], "text");
  const std::string text = m["content"][0]["text"];
  EXPECT_EQ(r.header("x-switchyard-route"), "gemma/tiny");

  body["stream"] = true;
  HttpResponse s = messages(body);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_NE(s.header("content-type").find("text/event-stream"), std::string::npos);
  auto ev = namedEvents(s.body);
  expectWellFormedStream(ev);
  EXPECT_EQ(streamedText(ev), text) << "greedy decoding: the stream says what the message said";
  const Json& delta = ev[ev.size() - 2].second;
  EXPECT_EQ(delta["delta"]["stop_reason"], "max_tokens");
  EXPECT_EQ(delta["usage"]["output_tokens"], 5);
  EXPECT_EQ(delta["usage"]["input_tokens"], m["usage"]["input_tokens"]);

  // count_tokens counts with the engine's own template and tokenizer: what usage reports.
  body.erase("stream");
  body.erase("max_tokens");
  body.erase("temperature");
  HttpResponse c = post("/v1/messages/count_tokens", body.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json(), Json({{"input_tokens", m["usage"]["input_tokens"]}}));
  // A local answer is a local ledger row.
  EXPECT_EQ(std::get<0>(ledgerRow(r.header("x-request-id"))), "local");
}

TEST_F(MessagesE2E, AnthropicTargetGetsTheConversationAndIsMeteredInTheLedger) {
  Json body = ask("claude", "what is up", 50);
  body["system"] = "You are terse.";
  body["stop_sequences"] = Json::array({"STOP"});
  body["metadata"] = {{"user_id", "u-1"}};
  HttpResponse r = messages(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = anthropic_.lastChatBody();
  EXPECT_EQ(sent["model"], "claude-up");
  EXPECT_NE(sent["system"].dump().find("You are terse."), std::string::npos) << sent.dump();
  EXPECT_EQ(sent["stop_sequences"], Json::array({"STOP"}));
  EXPECT_EQ(sent["metadata"], Json({{"user_id", "u-1"}}));
  EXPECT_EQ(sent["max_tokens"], 50);
  Json m = r.json();
  EXPECT_EQ(m["model"], "claude");
  EXPECT_EQ(m["content"][0]["text"], "echo: what is up");
  EXPECT_EQ(m["stop_reason"], "end_turn");
  EXPECT_EQ(m["usage"]["input_tokens"], FakeAnthropic::inputTokensFor(sent));
  // Budgeted: the call was reserved and settled in the ledger, at its price.
  auto [kind, state, cost] = ledgerRow(r.header("x-request-id"));
  EXPECT_EQ(kind, "cloud");
  EXPECT_EQ(state, "settled");
  EXPECT_GT(cost, 0);

  body["stream"] = true;
  HttpResponse s = messages(body);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  expectWellFormedStream(ev);
  EXPECT_EQ(streamedText(ev), "echo: what is up");
  EXPECT_EQ(ev[ev.size() - 2].second["delta"]["stop_reason"], "end_turn");
  EXPECT_GT(ev[ev.size() - 2].second["usage"]["output_tokens"].get<int>(), 0);
  EXPECT_EQ(std::get<1>(ledgerRow(s.header("x-request-id"))), "settled");
}

// What Claude Code relies on: the body reaches Anthropic as the client wrote it (prompt-cache
// markers, thinking signatures, key order, anthropic-beta), and Anthropic's answer comes back
// whole (thinking blocks with their signatures, cache usage), metered at the cache's prices.
TEST_F(MessagesE2E, AnthropicTargetIsAPassThrough) {
  const std::string head = R"({"model":"claude","max_tokens":40,)";
  const std::string rest =
      R"("system":[{"type":"text","text":"You answer questions about the weather in a few)"
      R"( words and never more than that","cache_control":{"type":"ephemeral"}}],)"
      R"("thinking":{"type":"enabled","budget_tokens":1024},"tools":[{"name":"get_weather",)"
      R"("input_schema":{"type":"object","properties":{"zeta":{"type":"string"},)"
      R"("alpha":{"type":"string"}}}}],"messages":[{"role":"user","content":"weather now"}]})";
  HeaderList headers = anthropicHeaders();
  headers.emplace_back("anthropic-beta", "interleaved-thinking-2025-05-14");
  HttpResponse r = post("/v1/messages", head + rest, headers);
  ASSERT_EQ(r.status, 200) << r.body;
  auto sent = anthropic_.lastChatRequest();
  ASSERT_TRUE(sent);
  EXPECT_EQ(sent->body, R"({"model":"claude-up","max_tokens":40,)" + rest);
  EXPECT_EQ(sent->header("anthropic-beta"), "interleaved-thinking-2025-05-14");
  Json m = r.json();
  EXPECT_EQ(m["model"], "claude");
  ASSERT_EQ(m["content"].size(), 2u) << r.body;
  EXPECT_EQ(m["content"][0]["type"], "thinking");
  const std::string id = m["id"].get<std::string>().substr(4);
  EXPECT_EQ(m["content"][0]["signature"], FakeAnthropic::signatureFor(id));
  const int64_t written = m["usage"]["cache_creation_input_tokens"].get<int64_t>();
  EXPECT_GT(written, 0) << r.body;
  const double first_cost = std::get<2>(ledgerRow(r.header("x-request-id")));

  // The same prompt again reads the cache, and costs less; the thinking block of the first
  // answer goes back with its signature in the next turn, as Anthropic requires.
  HttpResponse again = post("/v1/messages", head + rest, headers);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["usage"]["cache_read_input_tokens"], written);
  EXPECT_LT(std::get<2>(ledgerRow(again.header("x-request-id"))), first_cost);
  Json next = Json::parse(head + rest);
  next["messages"].push_back({{"role", "assistant"}, {"content", m["content"]}});
  next["messages"].push_back({{"role", "user"}, {"content", "and tomorrow"}});
  ASSERT_EQ(messages(next, headers).status, 200);
  EXPECT_EQ(anthropic_.lastChatBody()["messages"][1]["content"][0], m["content"][0]);

  // Streamed: Anthropic's own events, signature_delta included; only the model is renamed.
  Json streamed = Json::parse(head + rest);
  streamed["stream"] = true;
  HttpResponse s = messages(streamed, headers);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  expectWellFormedStream(ev);
  EXPECT_EQ(ev.front().second["message"]["model"], "claude");
  bool signature = false;
  for (const auto& [name, data] : ev) {
    signature = signature || (name == "content_block_delta" &&
                              data["delta"].value("type", "") == "signature_delta");
  }
  EXPECT_TRUE(signature) << s.body;
  EXPECT_EQ(streamedText(ev), "echo: weather now");
  EXPECT_EQ(std::get<1>(ledgerRow(s.header("x-request-id"))), "settled");
}

TEST_F(MessagesE2E, OpenAITargetGetsToolTurnsTranslated) {
  Json body = ask("gpt", "ignored", 20);
  body["system"] = "sys";
  body["tools"] = Json::array({{{"name", "lookup"},
                                {"description", "Looks things up."},
                                {"input_schema", {{"type", "object"},
                                                  {"properties", {{"q", {{"type", "string"}}}}}}}}});
  body["messages"] = Json::array(
      {{{"role", "user"}, {"content", "find x"}},
       {{"role", "assistant"},
        {"content", Json::array({{{"type", "tool_use"}, {"id", "toolu_9"}, {"name", "lookup"},
                                  {"input", {{"q", "x"}}}}})}},
       {{"role", "user"},
        {"content", Json::array({{{"type", "tool_result"}, {"tool_use_id", "toolu_9"},
                                  {"content", "x is 42"}},
                                 {{"type", "text"}, {"text", "and then?"}}})}}});
  HttpResponse r = messages(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = openai_.lastChatBody();
  ASSERT_EQ(sent["messages"].size(), 5u) << sent.dump();
  EXPECT_EQ(sent["messages"][0], Json({{"role", "system"}, {"content", "sys"}}));
  EXPECT_EQ(sent["messages"][2]["tool_calls"][0]["id"], "toolu_9");
  const Json& call = sent["messages"][2]["tool_calls"][0];
  EXPECT_EQ(Json::parse(call["function"]["arguments"].get<std::string>()), Json({{"q", "x"}}));
  EXPECT_EQ(sent["messages"][3]["role"], "tool");
  EXPECT_EQ(sent["messages"][3]["tool_call_id"], "toolu_9");
  EXPECT_EQ(sent["tools"][0]["function"]["name"], "lookup");
  EXPECT_EQ(r.json()["content"][0]["text"], "echo: and then?");
}

TEST_F(MessagesE2E, StreamThatBreaksEndsWithAnErrorEvent) {
  anthropic_.pushFault(Fault::streamError(2, "Overloaded"));
  Json body = ask("claude", "one two three four five", 50);
  body["stream"] = true;
  HttpResponse s = messages(body);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.front().first, "message_start");
  EXPECT_EQ(ev.back().first, "error") << s.body;
  EXPECT_EQ(ev.back().second["type"], "error");
  EXPECT_FALSE(ev.back().second["error"].value("type", "").empty());
  for (const auto& e : ev) EXPECT_NE(e.first, "message_stop");
}

TEST_F(MessagesE2E, HostileInputsGetAnthropicShapedErrors) {
  const std::string ok = ask("tiny", "hi").dump();
  expectError(post("/v1/messages", ok, {{"anthropic-version", "2023-06-01"}}), 401,
              "authentication_error");
  expectError(post("/v1/messages", ok, anthropicHeaders("sk-wrong")), 401,
              "authentication_error");
  // A Bearer token works as well as x-api-key.
  EXPECT_EQ(post("/v1/messages", ok,
                 {{"Authorization", std::string("Bearer ") + kDevKey},
                  {"anthropic-version", "2023-06-01"}}).status, 200);
  expectError(post("/v1/messages", ok, {{"x-api-key", kDevKey}}), 400, "invalid_request_error");
  const std::vector<std::string> bad_bodies = {
      "", "{", "not json", "[]", "{\"model\":\"tiny\"}", std::string(10000, '['),
      R"({"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64"}}]}]})",
      R"({"model":"tiny","max_tokens":-1,"messages":[{"role":"user","content":"x"}]})",
      R"({"model":"tiny","max_tokens":5,"messages":[{"role":"robot","content":"x"}]})",
      R"({"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":"x"}],"top_p":7})",
      R"({"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":"x"}],"n":2})",
      "{\"model\":\"tiny\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}"};
  for (const std::string& b : bad_bodies) {
    SCOPED_TRACE(b.substr(0, 80));
    expectError(post("/v1/messages", b), 400, "invalid_request_error");
    expectError(post("/v1/messages/count_tokens", b), 400, "invalid_request_error");
  }
  expectError(messages(ask("no-such-model", "hi")), 404, "not_found_error");
  expectError(messages(ask("claude", "hi"), anthropicHeaders(kSecureKey)), 403,
              "permission_error");
  expectError(messages(ask("claude", "hi"), anthropicHeaders(kPoorKey)), 429, "rate_limit_error");
  EXPECT_EQ(anthropic_.chatRequestCount(), 0) << "refused before any provider was called";
  HttpResponse get = httpGet(gw_->url() + "/v1/messages", anthropicHeaders());
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.json()["type"], "error");
  // An upstream failure is Anthropic's api_error / overloaded_error.
  anthropic_.pushFault(Fault::error(529, "Overloaded"));
  HttpResponse over = messages(ask("claude", "hi"));
  EXPECT_GE(over.status, 500) << over.body;
  EXPECT_EQ(over.json()["type"], "error") << over.body;
  EXPECT_EQ(httpGet(gw_->url() + "/healthz").status, 200);
}

}  // namespace
}  // namespace sytest
