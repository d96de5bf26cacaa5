// The chat-completions extensions that self-hosted servers (vLLM) accept and that the local
// engine uses: repetition_penalty, chat_template_kwargs, reasoning_effort, and reasoning_content
// in responses and stream deltas.
#include <gtest/gtest.h>

#include "api/chat.h"
#include "api/openai_json.h"

namespace api {
namespace {

std::string body(const std::string& extra) {
  return R"({"model":"m","messages":[{"role":"user","content":"hi"}])" + extra + "}";
}

TEST(ChatExtensions, RepetitionPenaltyIsReadAndForwarded) {
  auto req = parseChatRequest(body(R"(,"repetition_penalty":1.15)"));
  ASSERT_TRUE(req.ok()) << req.status().toString();
  ASSERT_TRUE(req->repetition_penalty.has_value());
  EXPECT_DOUBLE_EQ(*req->repetition_penalty, 1.15);
  EXPECT_FALSE(req->extra.contains("repetition_penalty"));
  Json upstream = chatRequestToJson(*req);
  EXPECT_DOUBLE_EQ(upstream["repetition_penalty"].get<double>(), 1.15);

  auto absent = parseChatRequest(body(""));
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->repetition_penalty.has_value());
  EXPECT_FALSE(chatRequestToJson(*absent).contains("repetition_penalty"));
  auto null = parseChatRequest(body(R"(,"repetition_penalty":null)"));
  ASSERT_TRUE(null.ok());
  EXPECT_FALSE(null->repetition_penalty.has_value());
}

TEST(ChatExtensions, RepetitionPenaltyMustBeAPositiveNumber) {
  for (const char* bad : {"0", "-1", "\"1.1\"", "true", "[]"}) {
    auto req = parseChatRequest(body(std::string(R"(,"repetition_penalty":)") + bad));
    ASSERT_FALSE(req.ok()) << bad;
    EXPECT_EQ(req.status().code(), ErrorCode::kInvalidRequest) << bad;
    EXPECT_EQ(req.status().param(), "repetition_penalty") << bad;
    EXPECT_EQ(req.status().httpStatusCode(), 400);
    EXPECT_NE(req.status().message().find("repetition_penalty"), std::string::npos) << bad;
  }
  auto body_text = serializeError(parseChatRequest(body(R"(,"repetition_penalty":0)")).status());
  Json err = Json::parse(body_text);
  EXPECT_EQ(err["error"]["param"], "repetition_penalty");
  EXPECT_EQ(err["error"]["type"], "invalid_request_error");
}

TEST(ChatExtensions, ChatTemplateKwargsMustBeAnObject) {
  auto req = parseChatRequest(body(R"(,"chat_template_kwargs":{"enable_thinking":true})"));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->chat_template_kwargs, Json({{"enable_thinking", true}}));
  EXPECT_EQ(chatRequestToJson(*req)["chat_template_kwargs"], req->chat_template_kwargs);
  auto bad = parseChatRequest(body(R"(,"chat_template_kwargs":[1])"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().param(), "chat_template_kwargs");
  auto none = parseChatRequest(body(R"(,"chat_template_kwargs":null)"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->chat_template_kwargs.is_null());
}

TEST(ChatExtensions, ReasoningEffortStaysAPassThroughField) {
  auto req = parseChatRequest(body(R"(,"reasoning_effort":"high")"));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->extra["reasoning_effort"], "high");
  EXPECT_EQ(chatRequestToJson(*req)["reasoning_effort"], "high");
}

TEST(ChatExtensions, ReasoningContentIsWrittenAndRead) {
  ChatResponse r;
  r.id = "x";
  r.model = "m";
  Choice& c = r.choices.emplace_back();
  c.message.role = Role::kAssistant;
  c.message.content = Content::ofText("4");
  c.message.reasoning_content = "2+2 is 4";
  c.finish_reason = "stop";
  Usage u;
  u.completion_tokens = 9;
  u.reasoning_tokens = 6;
  r.usage = u;
  Json j = Json::parse(serializeChatResponse(r));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "4");
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "2+2 is 4");
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], 6);
  auto back = parseChatResponse(j.dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->choices[0].message.reasoning_content, "2+2 is 4");

  c.message.reasoning_content.reset();
  EXPECT_FALSE(
      Json::parse(serializeChatResponse(r))["choices"][0]["message"].contains("reasoning_content"));

  ChatChunk chunk;
  chunk.id = "x";
  chunk.model = "m";
  chunk.choices.emplace_back().delta.reasoning_content = "thinking";
  Json cj = Json::parse(serializeChatChunk(chunk, false));
  EXPECT_EQ(cj["choices"][0]["delta"]["reasoning_content"], "thinking");
  EXPECT_FALSE(cj["choices"][0]["delta"].contains("content"));
  auto chunk_back = parseChatChunk(cj.dump());
  ASSERT_TRUE(chunk_back.ok());
  EXPECT_EQ(chunk_back->choices[0].delta.reasoning_content, "thinking");
}

}  // namespace
}  // namespace api
