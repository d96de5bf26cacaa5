// The complexity score (routers/complexity.h): its defaults on a spectrum of realistic
// requests, each feature's direction, explain(), weights from YAML, and hostile inputs.
#include "routers/complexity.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using routers::ComplexityScore;
using routers::ComplexityWeights;
using routers::scoreComplexity;

api::Message msg(api::Role role, std::string text) {
  api::Message m;
  m.role = role;
  m.content = api::Content::ofText(std::move(text));
  return m;
}

api::ChatRequest ask(std::string user_text) {
  api::ChatRequest r;
  r.model = "auto";
  r.messages.push_back(msg(api::Role::kUser, std::move(user_text)));
  return r;
}

ComplexityScore score(const api::ChatRequest& r) { return scoreComplexity(r, ComplexityWeights{}); }

double feature(const ComplexityScore& s, std::string_view name) {
  const ComplexityScore::Feature* f = s.find(name);
  EXPECT_NE(f, nullptr) << name;
  return f ? f->value : -1;
}

// ---- a spectrum of realistic requests ------------------------------------------------------

const char* const kTranslation =
    "Translate the following customer email into Japanese, keeping a polite business tone:\n\n"
    "\"Thank you for your order. Your package left our warehouse this morning and should arrive "
    "on Tuesday. If anything is missing, reply to this email and we will sort it out.\"";

const char* const kCodeReview =
    "Can you review this function and point out any bugs?\n"
    "```python\n"
    "def average(xs):\n"
    "    total = 0\n"
    "    for x in xs:\n"
    "        total += x\n"
    "    return total / len(xs)\n"
    "```";

const char* const kProof =
    "Prove that there are infinitely many primes. Give a rigorous proof and explain why each "
    "step follows.";

const char* const kHardDesign =
    "I need help with a concurrency design, in several parts.\n"
    "1. Design a lock-free hash map in C++20 that supports concurrent insert, erase and lookup.\n"
    "2. Prove that your design is linearizable, and derive the amortized cost of a resize.\n"
    "3. Compare it with a striped-lock design: analyze the trade-offs in memory, tail latency "
    "and code complexity.\n"
    "4. Here is my current attempt; explain why it deadlocks under contention, step by step:\n"
    "```cpp\n"
    "#include <atomic>\n"
    "#include <mutex>\n"
    "template <typename K, typename V>\n"
    "class Map {\n"
    " public:\n"
    "  bool insert(const K& k, const V& v) {\n"
    "    std::lock_guard<std::mutex> g(locks_[hash(k) % kStripes]);\n"
    "    if (size_.load() > capacity_ * 3 / 4) resize();  // takes every stripe\n"
    "    return buckets_[hash(k) % capacity_].push(k, v);\n"
    "  }\n"
    " private:\n"
    "  void resize() {\n"
    "    for (auto& m : locks_) m.lock();\n"
    "    // ... rehash ...\n"
    "    for (auto& m : locks_) m.unlock();\n"
    "  }\n"
    "};\n"
    "```\n"
    "Please be thorough and show your reasoning in detail.";

api::ChatRequest agentRequest() {
  std::string system =
      "You are TravelDesk, the booking assistant of Acme Corp. Follow the company travel "
      "policy exactly. ";
  for (int i = 0; i < 30; ++i) {
    system +=
        "Economy class for flights under six hours; premium economy above. Hotels within "
        "the city limit of the per-diem table. Always confirm dates and names with the "
        "traveller before booking, never book without an explicit yes. ";
  }
  api::ChatRequest r;
  r.messages.push_back(msg(api::Role::kSystem, system));
  r.messages.push_back(msg(api::Role::kUser,
                           "Find me the cheapest flight from Berlin to Tokyo next Tuesday and "
                           "book it if it is under 800 euros."));
  for (const char* name : {"search_flights", "book_flight", "get_policy", "search_hotels",
                           "book_hotel", "get_traveller_profile"}) {
    api::Tool t;
    t.name = name;
    t.description = "Acme travel API";
    t.parameters = api::Json::parse(
        R"({"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"},
            "date":{"type":"string","format":"date"}},"required":["from","to"]})");
    r.tools.push_back(t);
  }
  api::ResponseFormat f;
  f.type = api::ResponseFormat::Type::kJsonSchema;
  f.json_schema = api::Json::parse(R"({"name":"booking","strict":true,"schema":{
      "type":"object","properties":{
        "flight":{"type":"object","properties":{"number":{"type":"string"},
          "price_eur":{"type":"number"},"departs":{"type":"string"}}},
        "booked":{"type":"boolean"},"reason":{"type":"string"}},
      "required":["flight","booked"]}})");
  r.response_format = f;
  return r;
}

api::ChatRequest hardRequest() {
  api::ChatRequest r = ask(kHardDesign);
  r.max_completion_tokens = 8000;
  return r;
}

TEST(Complexity, DefaultsMeetTheirStatedTargets) {
  EXPECT_LT(score(ask("hi")).score, 0.1);
  EXPECT_LT(score(ask("What is the capital of Australia?")).score, 0.3);
  const ComplexityScore hard = score(hardRequest());
  EXPECT_GT(hard.score, 0.8) << hard.explain(10);
}

TEST(Complexity, OrdersASpectrumOfRealisticRequests) {
  const double greeting = score(ask("hi")).score;
  const double factual = score(ask("What is the capital of Australia?")).score;
  const double translation = score(ask(kTranslation)).score;
  const double review = score(ask(kCodeReview)).score;
  const double proof = score(ask(kProof)).score;
  const double agent = score(agentRequest()).score;
  const double hard = score(hardRequest()).score;
  for (double s : {greeting, factual, translation, review, proof, agent, hard}) {
    EXPECT_GE(s, 0);
    EXPECT_LE(s, 1);
  }
  EXPECT_LT(greeting, factual);
  EXPECT_LT(factual, translation);
  // One strong signal each: code, reasoning, or the agentic shape (long prompt, tools, schema).
  for (double one_signal : {review, proof, agent}) {
    EXPECT_LT(translation, one_signal);
    EXPECT_GT(one_signal, 0.5);
    EXPECT_LT(one_signal, hard);
  }
  // What each of them is flagged for.
  EXPECT_EQ(score(ask(kTranslation)).top(1)[0].name, "non_latin");
  EXPECT_EQ(score(ask(kCodeReview)).top(1)[0].name, "code");
  EXPECT_EQ(score(ask(kProof)).top(1)[0].name, "reasoning");
  EXPECT_EQ(score(agentRequest()).top(1)[0].name, "tools");
}

TEST(Complexity, AGreetingHasNoFeaturesAndScoresTheBias) {
  const ComplexityScore s = score(ask("hi"));
  ASSERT_EQ(s.features.size(), 10u);
  for (const ComplexityScore::Feature& f : s.features) {
    EXPECT_EQ(f.value, 0) << f.name;
    EXPECT_EQ(f.contribution, 0) << f.name;
  }
  EXPECT_DOUBLE_EQ(s.score, 1 / (1 + std::exp(3.0)));
  EXPECT_EQ(s.explain(), "");
  EXPECT_TRUE(s.top(3).empty());
}

TEST(Complexity, FeatureValuesFollowTheirDocumentedScales) {
  // length: log2(tokens) / log2(32768), tokens = bytes / 4.
  EXPECT_DOUBLE_EQ(feature(score(ask(std::string(4096, '.'))), "length"), 10.0 / 15.0);
  EXPECT_DOUBLE_EQ(feature(score(ask(std::string(1 << 20, '.'))), "length"), 1.0);
  // output_length: log2(m / 256) / log2(128); max_completion_tokens wins over max_tokens.
  api::ChatRequest out = ask("hi");
  out.max_tokens = 100;
  EXPECT_EQ(feature(score(out), "output_length"), 0);
  out.max_tokens = 4096;
  EXPECT_DOUBLE_EQ(feature(score(out), "output_length"), 4.0 / 7.0);
  out.max_completion_tokens = 32768;
  EXPECT_DOUBLE_EQ(feature(score(out), "output_length"), 1.0);
  // turns: log2(n) / 4 over user, assistant and tool messages (system does not count).
  api::ChatRequest chat;
  chat.messages = {msg(api::Role::kSystem, "Be brief."), msg(api::Role::kUser, "a"),
                   msg(api::Role::kAssistant, "b"), msg(api::Role::kUser, "c"),
                   msg(api::Role::kAssistant, "d")};
  EXPECT_DOUBLE_EQ(feature(score(chat), "turns"), 0.5);
  // reasoning: hits / 4.
  EXPECT_DOUBLE_EQ(feature(score(ask("Compare them and explain why.")), "reasoning"), 0.5);
  EXPECT_DOUBLE_EQ(feature(score(ask("Step by step: prove it, derive it, analyze it, compare it.")),
                           "reasoning"),
                   1.0);
  // tools and images: 0.5 for the first, saturating at 8 tools and 4 images.
  api::ChatRequest tools = ask("hi");
  tools.tools.resize(1);
  EXPECT_DOUBLE_EQ(feature(score(tools), "tools"), 0.5);
  tools.tools.resize(8);
  EXPECT_DOUBLE_EQ(feature(score(tools), "tools"), 1.0);
  // non_latin: the share of letters outside the Latin script.
  EXPECT_DOUBLE_EQ(feature(score(ask("abc где")), "non_latin"), 0.5);
  EXPECT_DOUBLE_EQ(feature(score(ask("東京 123 !!")), "non_latin"), 1.0);
  EXPECT_DOUBLE_EQ(feature(score(ask("Translate 'good morning' into Korean")), "non_latin"), 0.6);
  // structured_output: json_object 0.25.
  api::ChatRequest json = ask("hi");
  json.response_format = api::ResponseFormat{api::ResponseFormat::Type::kJsonObject, {}};
  EXPECT_DOUBLE_EQ(feature(score(json), "structured_output"), 0.25);
}

// A feature's value and the default score both go up when the request gains that feature.
void expectRaises(const api::ChatRequest& base, const api::ChatRequest& more,
                  std::string_view name) {
  const ComplexityScore a = score(base);
  const ComplexityScore b = score(more);
  EXPECT_GT(feature(b, name), feature(a, name)) << name;
  EXPECT_GT(b.score, a.score) << name << ": " << a.explain(10) << " vs " << b.explain(10);
  // Alone (every other weight 0), the score is logistic(f): the direction is the feature's.
  ComplexityWeights only{};
  only.bias = 0;
  for (double* w :
       {&only.length, &only.turns, &only.code, &only.math, &only.reasoning, &only.output_length,
        &only.tools, &only.images, &only.non_latin, &only.structured_output}) {
    *w = 0;
  }
  ComplexityWeights one = only;
  std::pair<std::string_view, double*> fields[] = {
      {"length", &one.length},       {"turns", &one.turns},
      {"code", &one.code},           {"math", &one.math},
      {"reasoning", &one.reasoning}, {"output_length", &one.output_length},
      {"tools", &one.tools},         {"images", &one.images},
      {"non_latin", &one.non_latin}, {"structured_output", &one.structured_output}};
  for (auto& [n, w] : fields) {
    if (n == name) *w = 1;
  }
  EXPECT_GT(scoreComplexity(more, one).score, scoreComplexity(base, one).score) << name;
  EXPECT_DOUBLE_EQ(scoreComplexity(more, one).score, 1 / (1 + std::exp(-feature(b, name))));
}

TEST(Complexity, EachFeatureMovesTheScoreUp) {
  const std::string q = "What does this function return for an empty list?";
  // length
  std::string essay;
  for (int i = 0; i < 40; ++i) essay += "The committee met on a rainy afternoon to talk. ";
  expectRaises(ask(q), ask(essay + q), "length");
  // turns
  api::ChatRequest chat = ask("ok");
  for (int i = 0; i < 6; ++i) {
    chat.messages.insert(chat.messages.begin(), msg(api::Role::kAssistant, "ok"));
  }
  expectRaises(ask("ok"), chat, "turns");
  // code: unfenced, then fenced
  const std::string unfenced = q + "\nint first(const std::vector<int>& v) { return v[0]; }";
  expectRaises(ask(q), ask(unfenced), "code");
  expectRaises(ask(unfenced), ask(q + "\n```cpp\n" + unfenced.substr(q.size() + 1) + "\n```"),
               "code");
  expectRaises(ask("Which one is faster?"),
               ask("Which one is faster? SELECT id FROM users "
                   "WHERE age > 30; or a JOIN on orders"),
               "code");
  // math: LaTeX, $...$, Unicode operators, digit density
  expectRaises(ask("What is the area?"),
               ask("What is $\\int_0^1 \\frac{x^2}{1+x} dx$ and is it \\leq 1?"), "math");
  expectRaises(ask("Is it true?"), ask("Is ∑ 1/n² ≤ 2 true?"), "math");
  expectRaises(ask("Add these up please"), ask("Add these up please 1234 + 5678 * 91 - 3/4 = ?"),
               "math");
  // reasoning
  expectRaises(ask("Tell me about sorting."),
               ask("Tell me about sorting, step by step, and compare the trade-offs."),
               "reasoning");
  // output_length
  api::ChatRequest longer = ask(q);
  longer.max_tokens = 16000;
  expectRaises(ask(q), longer, "output_length");
  // tools
  api::ChatRequest one_tool = ask(q);
  one_tool.tools.resize(1);
  api::ChatRequest six_tools = ask(q);
  six_tools.tools.resize(6);
  expectRaises(ask(q), one_tool, "tools");
  expectRaises(one_tool, six_tools, "tools");
  // images
  api::ChatRequest image = ask(q);
  api::ContentPart text_part;
  text_part.text = q;
  api::ContentPart image_part;
  image_part.type = api::ContentPart::Type::kImageUrl;
  image_part.image_url = "https://example.com/cat.png";
  image.messages[0].content.kind = api::Content::Kind::kParts;
  image.messages[0].content.parts = {text_part, image_part};
  expectRaises(ask(q), image, "images");
  // non_latin: text in another script, or a request for one
  expectRaises(ask("Where is the station?"), ask("Где находится вокзал?"), "non_latin");
  expectRaises(ask("Write a haiku about rain."), ask("Write a haiku about rain in Japanese."),
               "non_latin");
  expectRaises(ask("Where is it?"), ask("駅はどこですか？ Where is it?"), "non_latin");
  // structured_output: none < json_object < json_schema < a large json_schema
  api::ChatRequest object = ask(q);
  object.response_format = api::ResponseFormat{api::ResponseFormat::Type::kJsonObject, {}};
  api::ChatRequest schema = ask(q);
  schema.response_format =
      api::ResponseFormat{api::ResponseFormat::Type::kJsonSchema,
                          api::Json::parse(R"({"name":"a","schema":{"type":"object"}})")};
  api::ChatRequest big_schema = schema;
  api::Json props = api::Json::object();
  for (int i = 0; i < 40; ++i) props["f" + std::to_string(i)] = {{"type", "string"}};
  big_schema.response_format->json_schema["schema"]["properties"] = props;
  expectRaises(ask(q), object, "structured_output");
  expectRaises(object, schema, "structured_output");
  expectRaises(schema, big_schema, "structured_output");
}

TEST(Complexity, ProseIsNotCodeOrMath) {
  const ComplexityScore s = score(
      ask("Economy class is fine for the return trip. Please import my calendar, I await your "
          "reply. In 2019 we paid $5 and $10 for tickets (roughly), and public transport was "
          "free. Select whichever hotel is closest."));
  EXPECT_LT(feature(s, "code"), 0.1) << s.explain(10);
  EXPECT_LT(feature(s, "math"), 0.1) << s.explain(10);
  EXPECT_EQ(feature(s, "reasoning"), 0);
  // Prices are not inline math: "$ 60" has a space inside the would-be span.
  EXPECT_EQ(feature(score(ask("It was $20 for one and $ 60 for three.")), "math"), 0);
  // Phrases match at word starts only: "approve" is not "prove".
  EXPECT_EQ(feature(score(ask("Please approve my expense report.")), "reasoning"), 0);
  // A language is a target only after "into", "in" or "to", and as a whole word.
  EXPECT_EQ(feature(score(ask("My Japanese colleague loves sushi.")), "non_latin"), 0);
  EXPECT_EQ(feature(score(ask("We flew to Thailand and spent a week in Bangkok.")), "non_latin"),
            0);
}

TEST(Complexity, TheLastUserTurnWeighsAtLeastAsMuchAsOlderText) {
  const std::string hard = "Derive the formula step by step and explain why it holds.";
  // The same text as the last user turn, as an older user turn, and as the system prompt.
  api::ChatRequest latest;
  latest.messages = {msg(api::Role::kUser, "hello"), msg(api::Role::kAssistant, "hi!"),
                     msg(api::Role::kUser, hard)};
  api::ChatRequest older;
  older.messages = {msg(api::Role::kUser, hard), msg(api::Role::kAssistant, "hi!"),
                    msg(api::Role::kUser, "hello")};
  api::ChatRequest system;
  system.messages = {msg(api::Role::kSystem, hard), msg(api::Role::kUser, "hello"),
                     msg(api::Role::kAssistant, "hi!"), msg(api::Role::kUser, "hello")};
  const ComplexityScore l = score(latest), o = score(older), s = score(system);
  EXPECT_DOUBLE_EQ(feature(l, "reasoning"), 0.75);
  EXPECT_DOUBLE_EQ(feature(o, "reasoning"), 0.5 * 0.75);
  EXPECT_DOUBLE_EQ(feature(s, "reasoning"), 0.5 * 0.75);
  EXPECT_GT(l.score, o.score);
  // Length counts every caller's message alike.
  EXPECT_DOUBLE_EQ(feature(l, "length"), feature(o, "length"));
  // Tool results count like older text.
  api::ChatRequest tool = older;
  tool.messages[0] = msg(api::Role::kTool, hard);
  EXPECT_DOUBLE_EQ(feature(score(tool), "reasoning"), 0.5 * 0.75);
}

TEST(Complexity, AssistantTextCountsOnlyAsATurn) {
  api::ChatRequest base;
  base.messages = {msg(api::Role::kUser, "thanks"), msg(api::Role::kAssistant, "You're welcome"),
                   msg(api::Role::kUser, "bye")};
  api::ChatRequest code = base;
  code.messages[1] = msg(api::Role::kAssistant, std::string("Prove it step by step:\n") +
                                                    kCodeReview + std::string(4000, 'x'));
  const ComplexityScore a = score(base), b = score(code);
  EXPECT_EQ(feature(b, "code"), 0);
  EXPECT_EQ(feature(b, "reasoning"), 0);
  EXPECT_DOUBLE_EQ(feature(b, "length"), feature(a, "length"));
  EXPECT_DOUBLE_EQ(b.score, a.score);
}

TEST(Complexity, ExplainNamesTheTopFeatures) {
  const ComplexityScore s = score(hardRequest());
  // Reasoning and code saturate: 1 · 3.0 and 1 · 2.5.
  EXPECT_EQ(s.explain(2), "reasoning=+3.00, code=+2.50");
  const std::vector<ComplexityScore::Feature> top = s.top(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].name, "reasoning");
  EXPECT_EQ(top[1].name, "code");
  EXPECT_EQ(top[2].name, "length");
  EXPECT_EQ(top[3].name, "output_length");
  for (size_t i = 1; i < top.size(); ++i) {
    EXPECT_GE(std::abs(top[i - 1].contribution), std::abs(top[i].contribution));
  }
  EXPECT_TRUE(s.explain(3).starts_with("reasoning=+3.00, code=+2.50, length=+0.")) << s.explain(3);
  // Only contributing features are named; asking for more gives all of them.
  const ComplexityScore t = score(ask("Compare them."));
  EXPECT_EQ(t.top(10).size(), 2u);  // reasoning, length
  EXPECT_TRUE(t.explain(10).starts_with("reasoning=+0.75, length=+")) << t.explain(10);
  EXPECT_EQ(t.explain(0), "");
}

// ---- weights from YAML ----------------------------------------------------------------------

api::StatusOr<ComplexityWeights> readWeights(std::string_view yaml) {
  auto root = policies::YamlReader::parse(
      yaml, "router.yaml", [](const std::string&) { return std::optional<std::string>(); });
  if (!root.ok()) return root.status();
  return ComplexityWeights::read(root->section("complexity"));
}

TEST(ComplexityWeights, ReadsEveryWeightAndKeepsDefaultsForAbsentOnes) {
  auto w = readWeights(
      "complexity:\n"
      "  bias: -2.5\n  length: 1\n  turns: 0.25\n  code: 3\n  math: 1.75\n  reasoning: 4\n"
      "  output_length: 0.5\n  tools: 2\n  images: 0\n  non_latin: 2.5\n"
      "  structured_output: 0.75\n");
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(w->bias, -2.5);
  EXPECT_EQ(w->length, 1);
  EXPECT_EQ(w->turns, 0.25);
  EXPECT_EQ(w->code, 3);
  EXPECT_EQ(w->math, 1.75);
  EXPECT_EQ(w->reasoning, 4);
  EXPECT_EQ(w->output_length, 0.5);
  EXPECT_EQ(w->tools, 2);
  EXPECT_EQ(w->images, 0);
  EXPECT_EQ(w->non_latin, 2.5);
  EXPECT_EQ(w->structured_output, 0.75);

  auto partial = readWeights("complexity: {reasoning: 5}\n");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->reasoning, 5);
  EXPECT_EQ(partial->code, ComplexityWeights{}.code);
  EXPECT_EQ(partial->bias, ComplexityWeights{}.bias);

  for (std::string_view empty : {"other: 1\n", "complexity:\n", "complexity: {}\n"}) {
    auto d = readWeights(empty);
    ASSERT_TRUE(d.ok()) << empty << ": " << d.status().message();
    EXPECT_EQ(d->reasoning, ComplexityWeights{}.reasoning);
  }
}

TEST(ComplexityWeights, ErrorsNameFileLineAndKey) {
  auto check = [](std::string_view yaml, std::string_view want) {
    auto w = readWeights(yaml);
    ASSERT_FALSE(w.ok()) << yaml;
    EXPECT_EQ(w.status().code(), api::ErrorCode::kConfig);
    EXPECT_NE(w.status().message().find(want), std::string::npos)
        << "got: " << w.status().message() << "\nwant: " << want;
  };
  check("complexity:\n  bias: -3\n  reasonning: 2\n",
        "router.yaml:3: complexity.reasonning: unknown key; did you mean 'reasoning'?");
  check("complexity:\n  code: 25\n", "router.yaml:2: complexity.code: must be <= 20, got 25");
  check("complexity:\n  math: -1\n", "router.yaml:2: complexity.math: must be >= 0, got -1");
  check("complexity:\n\n  bias: -21\n", "router.yaml:3: complexity.bias: must be >= -20");
  check("complexity:\n  tools: lots\n", "router.yaml:2: complexity.tools: expected");
  check("complexity:\n  images: .nan\n", "router.yaml:2: complexity.images:");
  check("complexity: [1, 2]\n", "router.yaml:1: complexity: expected a map of complexity weights");
}

// ---- hostile inputs -------------------------------------------------------------------------

// Hostile inputs finish (a super-linear path would run into ctest's timeout) with every score
// and feature in range. Speed is a benchmark's business, not a test's.
void expectBounded(const api::ChatRequest& r, std::string_view what) {
  const ComplexityScore s = score(r);
  EXPECT_GE(s.score, 0) << what;
  EXPECT_LE(s.score, 1) << what;
  for (const ComplexityScore::Feature& f : s.features) {
    EXPECT_GE(f.value, 0) << what << " " << f.name;
    EXPECT_LE(f.value, 1) << what << " " << f.name;
  }
}

std::string repeat(std::string_view unit, size_t bytes) {
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() < bytes) s += unit;
  return s;
}

TEST(Complexity, PathologicalTextIsFastAndStaysInRange) {
  constexpr size_t k10MB = 10u << 20;
  std::mt19937_64 rng(42);
  std::string random_bytes(k10MB, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  const std::pair<std::string_view, std::string> cases[] = {
      {"letters", std::string(k10MB, 'a')},
      {"words", repeat("a p s d i ", k10MB)},
      {"phrases", repeat("step by step prove compare ", k10MB)},
      {"near misses", repeat("step by stem prov compa ", k10MB)},
      {"backslashes", std::string(k10MB, '\\')},
      {"latex", repeat("\\frac\\sum\\inx", k10MB)},
      {"dollars", std::string(k10MB, '$')},
      {"dollar spans", repeat("$x $y$ $5 ", k10MB)},
      {"backticks", std::string(k10MB, '`')},
      {"equals", std::string(k10MB, '=')},
      {"into", repeat("into into in to ", k10MB)},
      {"random bytes", random_bytes},
      {"truncated utf-8", repeat("\xE6\x97", k10MB)},
      {"continuation bytes", std::string(k10MB, '\x80')},
      {"overlong and surrogates", repeat("\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80", k10MB)},
      {"cjk", repeat("東京都", k10MB)},
  };
  for (const auto& [what, text] : cases) expectBounded(ask(text), what);

  // The whole request at its largest: every feature saturated, still a score below 1.
  api::ChatRequest all = ask(repeat("Prove step by step: $\\frac{1}{2}$ ```x``` 東京 ", k10MB));
  all.max_tokens = int64_t{1} << 40;
  all.tools.resize(1000);
  expectBounded(all, "everything");
}

TEST(Complexity, EmptyAndOddRequestsScoreTheBias) {
  const double bias_score = 1 / (1 + std::exp(3.0));
  api::ChatRequest none;  // no messages at all
  EXPECT_DOUBLE_EQ(score(none).score, bias_score);
  api::ChatRequest empty = ask("");
  EXPECT_DOUBLE_EQ(score(empty).score, bias_score);
  api::ChatRequest null_content;
  null_content.messages.resize(1);  // a user message with null content
  EXPECT_DOUBLE_EQ(score(null_content).score, bias_score);
  api::ChatRequest empty_parts = ask("");
  empty_parts.messages[0].content.kind = api::Content::Kind::kParts;
  EXPECT_DOUBLE_EQ(score(empty_parts).score, bias_score);
  // Invalid UTF-8 alone is neither Latin nor not.
  EXPECT_EQ(feature(score(ask("\xFF\xFE\xC3")), "non_latin"), 0);
  // An overlong encoding of a Cyrillic letter (U+0434 in three bytes) is invalid, not Cyrillic;
  // the same letter encoded properly is.
  EXPECT_EQ(feature(score(ask("\xE0\x90\xB4")), "non_latin"), 0);
  EXPECT_EQ(feature(score(ask("\xD0\xB4")), "non_latin"), 1);
  // Schemas are walked only up to a cap, however deep.
  api::ChatRequest deep = ask("hi");
  api::Json j = api::Json::object();
  for (int i = 0; i < 5000; ++i) j = api::Json{{"type", "object"}, {"items", std::move(j)}};
  deep.response_format = api::ResponseFormat{api::ResponseFormat::Type::kJsonSchema, j};
  EXPECT_DOUBLE_EQ(feature(score(deep), "structured_output"), 1.0);
}


}  // namespace
