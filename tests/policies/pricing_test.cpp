#include "policies/pricing.h"

#include <gtest/gtest.h>

namespace {

TEST(Pricing, CostsEachKindOfToken) {
  auto t = policies::PriceTable::parse(
      "openai:\n  gpt-4o: {input: 2.5, cached_input: 1.25, output: 10}\n"
      "anthropic:\n  sonnet: {input: 3, cached_input: 0.3, cache_write: 3.75, output: 15}\n",
      "pricing.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const policies::Price* p = t->find("openai", "gpt-4o");
  ASSERT_NE(p, nullptr);
  api::Usage u;
  u.prompt_tokens = 1'000'000;
  u.cached_prompt_tokens = 400'000;
  u.completion_tokens = 100'000;
  // 600k uncached at 2.5 + 400k cached at 1.25 + 100k output at 10 per million.
  EXPECT_DOUBLE_EQ(p->cost(u), 1.5 + 0.5 + 1.0);
  const policies::Price* s = t->find("anthropic", "sonnet");
  ASSERT_NE(s, nullptr);
  api::Usage a;
  a.prompt_tokens = 3000;  // 1000 plain + 1000 read + 1000 written
  a.cached_prompt_tokens = 1000;
  a.cache_write_prompt_tokens = 1000;
  a.completion_tokens = 2000;
  EXPECT_NEAR(s->cost(a), (1000 * 3 + 1000 * 0.3 + 1000 * 3.75 + 2000 * 15) / 1e6, 1e-12);
  EXPECT_EQ(t->find("openai", "gpt-5"), nullptr);
  EXPECT_EQ(t->find("gemini", "gpt-4o"), nullptr);
  EXPECT_EQ(t->source(), "pricing.yaml");
}

TEST(Pricing, MissingOptionalPricesDefaultToInput) {
  auto t = policies::PriceTable::parse("p:\n  m: {input: 4, output: 8}\n", "x.yaml");
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ(t->find("p", "m")->cached_input, 4);
  EXPECT_DOUBLE_EQ(t->find("p", "m")->cache_write, 4);
}

TEST(Pricing, ContextWindowIsOptionalAndPositive) {
  auto t = policies::PriceTable::parse(
      "p:\n  m: {input: 4, output: 8, context_window: 400000}\n  n: {input: 1, output: 2}\n",
      "x.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->find("p", "m")->context_window, 400000);
  EXPECT_FALSE(t->find("p", "n")->context_window.has_value());
  auto bad = policies::PriceTable::parse("p:\n  m: {input: 4, output: 8, context_window: 0}\n",
                                         "x.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("context_window"), std::string::npos)
      << bad.status().message();
}

// An answer is billed at the tier it ran at; the provider's own tool calls per call.
TEST(Pricing, ServiceTiersAndToolCallsAreBilled) {
  auto t = policies::PriceTable::parse(
      "openai:\n  m: {input: 1, output: 2, service_tiers: {flex: 0.5, priority: 2},\n"
      "              tool_calls: {web_search_call: 0.01}}\n",
      "pricing.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const policies::Price& p = *t->find("openai", "m");
  api::Usage u;
  u.prompt_tokens = 1000000;
  u.completion_tokens = 1000000;
  EXPECT_DOUBLE_EQ(p.cost(u), 3.0);
  u.service_tier = "priority";
  EXPECT_DOUBLE_EQ(p.cost(u), 6.0);
  u.service_tier = "flex";
  EXPECT_DOUBLE_EQ(p.cost(u), 1.5);
  u.service_tier = "scale";  // not listed: 1x
  EXPECT_DOUBLE_EQ(p.cost(u), 3.0);
  u.service_tier = "";
  u.server_tool_calls = {{"web_search_call", 3}, {"code_interpreter_call", 2}};
  EXPECT_DOUBLE_EQ(p.cost(u), 3.03) << "an unpriced tool costs nothing extra";

  auto bad = policies::PriceTable::parse(
      "openai:\n  m: {input: 1, output: 2, service_tiers: {priority: -1}}\n", "pricing.yaml");
  EXPECT_FALSE(bad.ok());
  bad = policies::PriceTable::parse("openai:\n  m: {input: 1, output: 2, tool_calls: [1]}\n",
                                    "pricing.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tool_calls"), std::string::npos)
      << bad.status().message();
}

TEST(Pricing, OneHourCacheWritesArePricedApart) {
  auto t = policies::PriceTable::parse(
      "anthropic:\n  sonnet: {input: 3, cached_input: 0.3, cache_write: 3.75, output: 15}\n"
      "  custom: {input: 3, cache_write: 3.75, cache_write_1h: 7, output: 15}\n",
      "pricing.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const policies::Price* s = t->find("anthropic", "sonnet");
  EXPECT_DOUBLE_EQ(s->cache_write_1h, 6);  // twice the input price, as Anthropic bills
  api::Usage a;
  a.prompt_tokens = 3000;  // 1000 plain + 2000 written, 500 of them to the 1-hour cache
  a.cache_write_prompt_tokens = 2000;
  a.cache_write_1h_prompt_tokens = 500;
  EXPECT_NEAR(s->cost(a), (1000 * 3 + 1500 * 3.75 + 500 * 6) / 1e6, 1e-12);
  EXPECT_DOUBLE_EQ(t->find("anthropic", "custom")->cache_write_1h, 7);
  // More 1-hour tokens than written ones (an upstream's bug) count as written ones only.
  a.cache_write_1h_prompt_tokens = 5000;
  EXPECT_NEAR(s->cost(a), (1000 * 3 + 2000 * 6) / 1e6, 1e-12);
}

TEST(Pricing, InconsistentUsageNeverCostsNegative) {
  policies::Price p{1, 1, 1, 1};
  api::Usage u;
  u.prompt_tokens = 10;
  u.cached_prompt_tokens = 50;  // more cached than prompt: a provider's bug
  EXPECT_GE(p.cost(u), 0);
}

TEST(Pricing, BadFilesNameTheLineAndKey) {
  auto check = [](const std::string& yaml, const std::string& want) {
    auto t = policies::PriceTable::parse(yaml, "pricing.yaml");
    ASSERT_FALSE(t.ok()) << yaml;
    EXPECT_EQ(t.status().code(), api::ErrorCode::kConfig);
    EXPECT_NE(t.status().message().find(want), std::string::npos) << t.status().message();
  };
  check("p:\n  m: {input: 1}\n", "pricing.yaml:2: p.m.output: is required");
  check("p:\n  m: {input: 1, output: x}\n", "pricing.yaml:2: p.m.output: expected");
  check("p:\n  m: {input: 1, output: 2, cache: 3}\n", "p.m.cache: unknown key");
  check("p:\n  m: 5\n", "pricing.yaml:2: p.m: expected {input: ..., output: ...}");
  check("p: [1, 2]\n", "pricing.yaml:1: p: expected a map of model names");
  check("- 1\n", "pricing.yaml:1: expected a map of provider names");
  check("p:\n  m: {input: 1e9, output: 1}\n", "pricing.yaml:2: p.m.input: must be <=");
  check("p: {m: {input: 1, output: 1}, m: {input: 2, output: 2}}\n", "m");
}

TEST(Pricing, EmbeddingModelsArePricedByInputOnly) {
  auto t = policies::PriceTable::parse(
      "openai:\n  emb: {input: 0.02, embedding: true}\n  chat: {input: 1, output: 2}\n",
      "pricing.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const policies::Price* emb = t->find("openai", "emb");
  ASSERT_NE(emb, nullptr);
  EXPECT_TRUE(emb->embedding);
  EXPECT_FALSE(t->find("openai", "chat")->embedding);
  api::Usage u;
  u.prompt_tokens = 1000000;
  EXPECT_DOUBLE_EQ(emb->cost(u), 0.02);
  for (const char* bad : {"p:\n  m: {input: 1, output: 2, embedding: true}\n",
                          "p:\n  m: {input: 1, max_output: 2, embedding: true}\n",
                          "p:\n  m: {input: 1, cached_input: 0.5, embedding: true}\n"}) {
    auto r = policies::PriceTable::parse(bad, "pricing.yaml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("priced by `input` only"), std::string::npos)
        << r.status().message();
  }
  EXPECT_FALSE(policies::PriceTable::parse("p:\n  m: {embedding: true}\n", "x").ok());
}

TEST(Pricing, EmptyFileIsAnEmptyTable) {
  auto t = policies::PriceTable::parse("# nothing priced yet\n", "pricing.yaml");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->empty());
}

}  // namespace
