// engine::renderGemma3Chat against the Jinja chat_template of Gemma 3's tokenizer_config.json as
// rendered by @huggingface/jinja (fixtures from tests/tools/gen_tokenizer_fixtures.mjs).
#include "engine/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "gemma_tokenizer_fixture.h"

namespace engine {
namespace {

using api::Message;
using api::Role;
using ::engine::testing::fixturePath;
using Json = nlohmann::json;

Role roleOf(const std::string& name) {
  if (name == "system") return Role::kSystem;
  if (name == "developer") return Role::kDeveloper;
  if (name == "assistant") return Role::kAssistant;
  if (name == "tool") return Role::kTool;
  return Role::kUser;
}

Message messageOf(const Json& j) {
  Message m;
  m.role = roleOf(j["role"]);
  const Json& c = j["content"];
  if (c.is_string()) {
    m.content = api::Content::ofText(c);
  } else if (c.is_array()) {
    m.content.kind = api::Content::Kind::kParts;
    for (const Json& p : c) {
      api::ContentPart part;
      part.type = api::ContentPart::Type::kText;
      part.text = p["text"];
      m.content.parts.push_back(part);
    }
  }
  return m;
}

Message user(std::string text) {
  Message m;
  m.role = Role::kUser;
  m.content = api::Content::ofText(std::move(text));
  return m;
}

Message assistant(std::string text) {
  Message m = user(std::move(text));
  m.role = Role::kAssistant;
  return m;
}

Json loadCases() {
  std::ifstream in(fixturePath("chat_template/gemma3_cases.json"));
  return Json::parse(in);
}

TEST(Gemma3ChatTemplate, MatchesJinjaReference) {
  Json cases = loadCases();
  ASSERT_GE(cases.size(), 30u);
  for (const Json& c : cases) {
    std::vector<Message> messages;
    for (const Json& m : c["messages"]) messages.push_back(messageOf(m));
    auto rendered = renderGemma3Chat(messages, c["add_generation_prompt"].get<bool>());
    if (c.contains("expected")) {
      ASSERT_TRUE(rendered.ok()) << c["name"] << ": " << rendered.status().toString();
      EXPECT_EQ(*rendered, c["expected"].get<std::string>()) << c["name"];
    } else {
      ASSERT_FALSE(rendered.ok()) << c["name"] << " should fail like the template: " << c["error"];
      EXPECT_EQ(rendered.status().code(), api::ErrorCode::kInvalidRequest) << c["name"];
      EXPECT_FALSE(rendered.status().param().empty()) << c["name"];
      if (c["error"].get<std::string>().find("alternate") != std::string::npos) {
        EXPECT_NE(rendered.status().message().find("must alternate"), std::string::npos);
      }
    }
  }
}

TEST(Gemma3ChatTemplate, DeveloperIsFoldedLikeSystem) {
  for (const Json& c : loadCases()) {
    if (!c.contains("expected") || c["messages"][0]["role"] != "system") continue;
    std::vector<Message> messages;
    for (const Json& m : c["messages"]) messages.push_back(messageOf(m));
    messages[0].role = Role::kDeveloper;
    auto rendered = renderGemma3Chat(messages, c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(rendered.ok()) << c["name"];
    EXPECT_EQ(*rendered, c["expected"].get<std::string>()) << c["name"];
  }
}

TEST(Gemma3ChatTemplate, AlternationErrorNamesTheMessage) {
  auto r = renderGemma3Chat({user("a"), assistant("b"), assistant("c")}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(r.status().param(), "messages[2].role");
  // With a leading system message, indices still refer to the request's messages.
  Message sys = user("s");
  sys.role = Role::kSystem;
  r = renderGemma3Chat({sys, assistant("a")}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().param(), "messages[1].role");
}

TEST(Gemma3ChatTemplate, RejectsEmptyAndNullContent) {
  auto empty = renderGemma3Chat({}, true);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().param(), "messages");
  Message null_user;
  null_user.role = Role::kUser;
  auto r = renderGemma3Chat({user("a"), assistant("b"), null_user}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().param(), "messages[2].content");
  Message sys;
  sys.role = Role::kSystem;
  sys.content.kind = api::Content::Kind::kParts;  // no parts at all
  r = renderGemma3Chat({sys, user("x")}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().param(), "messages[0].content");
}

TEST(Gemma3ChatTemplate, RejectsWhatGemma3TextCannotTake) {
  Message tool;
  tool.role = Role::kTool;
  tool.tool_call_id = "call_1";
  tool.content = api::Content::ofText("42");
  auto r = renderGemma3Chat({user("a"), tool}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(r.status().param(), "messages[1].role");

  Message call = assistant("");
  call.content = api::Content{};
  call.tool_calls.push_back(api::ToolCall{"call_1", "function", "add", "{}"});
  r = renderGemma3Chat({user("a"), call}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().param(), "messages[1].tool_calls");

  Message image = user("");
  image.content.kind = api::Content::Kind::kParts;
  api::ContentPart text;
  text.text = "what is this?";
  api::ContentPart picture;
  picture.type = api::ContentPart::Type::kImageUrl;
  picture.image_url = "https://example.com/cat.png";
  image.content.parts = {text, picture};
  r = renderGemma3Chat({image}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().param(), "messages[0].content");
  EXPECT_NE(r.status().message().find("image_url"), std::string::npos);

  api::ChatRequest request;
  request.messages = {user("hi")};
  request.tools.push_back(api::Tool{});
  auto rr = renderGemma3Chat(request);
  ASSERT_FALSE(rr.ok());
  EXPECT_EQ(rr.status().param(), "tools");
  request.tools.clear();
  rr = renderGemma3Chat(request);
  ASSERT_TRUE(rr.ok());
  EXPECT_EQ(*rr, "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n");
}

TEST(Gemma3ChatTemplate, RefusalPartsRenderNothing) {
  Message a = assistant("");
  a.content.kind = api::Content::Kind::kParts;
  api::ContentPart refusal;
  refusal.type = api::ContentPart::Type::kRefusal;
  refusal.text = "I can't.";
  api::ContentPart text;
  text.text = " ok ";
  a.content.parts = {refusal, text};
  auto r = renderGemma3Chat({user("q"), a}, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r,
            "<bos><start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\nok<end_of_turn>\n");
}

TEST(Gemma3ChatTemplate, EncodedPromptHasOneBos) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto prompt = renderGemma3Chat({user("Hi there")}, true);
  ASSERT_TRUE(prompt.ok());
  std::vector<int32_t> expected = {2, 105, 2364, 107, 10979, 993, 106, 107, 105, 4368, 107};
  EXPECT_EQ(tok->encode(*prompt, false), expected);
  EXPECT_EQ(tok->encode(*prompt, true), expected);
}

}  // namespace
}  // namespace engine
