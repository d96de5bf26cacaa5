// routers/embeddings.h against the fake OpenAI and Gemini servers (real HTTP on loopback) and a
// real SQLite ledger: each API's wire format both ways, and the metered path: the data rules,
// the durable reservation of the worst case, the settlement from the provider's usage (or the
// prompt bound when it reports none), and no cost for an error answer.
#include "routers/embeddings.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "tests/support/fake_gemini.h"
#include "tests/support/fake_openai.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

api::EmbeddingRequest textRequest(std::vector<std::string> texts,
                                  std::optional<int64_t> dims = std::nullopt) {
  api::EmbeddingRequest r;
  r.model = "public-e";
  for (auto& t : texts) r.inputs.push_back(api::EmbeddingInput{std::move(t), {}, false});
  r.dimensions = dims;
  return r;
}

// Runs one call to its end and returns what `done` got.
template <typename Start>
api::StatusOr<api::EmbeddingResponse> await(Start start) {
  auto promise = std::make_shared<std::promise<api::StatusOr<api::EmbeddingResponse>>>();
  auto future = promise->get_future();
  start([promise](api::StatusOr<api::EmbeddingResponse> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(10s) != std::future_status::ready) {
    return api::Status(api::ErrorCode::kInternal, "the call never finished");
  }
  return future.get();
}

TEST(GeminiEmbeddingWire, BatchBodyHasOneRequestPerInput) {
  auto body = routers::toGeminiBatchEmbed(textRequest({"a b", "c"}, 16));
  ASSERT_TRUE(body.ok()) << body.status().message();
  ASSERT_EQ((*body)["requests"].size(), 2u);
  const api::Json& first = (*body)["requests"][0];
  EXPECT_EQ(first["model"], "models/public-e");
  EXPECT_EQ(first["content"]["parts"][0]["text"], "a b");
  EXPECT_EQ(first["outputDimensionality"], 16);
  EXPECT_FALSE(routers::toGeminiBatchEmbed(textRequest({"x"}))
                   ->at("requests")[0]
                   .contains("outputDimensionality"));

  api::EmbeddingRequest ids = textRequest({});
  ids.inputs.push_back(api::EmbeddingInput{"", {1, 2}, true});
  auto refused = routers::toGeminiBatchEmbed(ids);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().param(), "input");
  std::vector<std::string> many(routers::kGeminiMaxBatch + 1, "w");
  EXPECT_EQ(routers::toGeminiBatchEmbed(textRequest(many)).status().param(), "input");
}

class EmbeddingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ledger = policies::openSqliteLedger(dir_.path() + "/ledger.db");
    ASSERT_TRUE(ledger.ok()) << ledger.status().toString();
    ledger_ = std::move(ledger).value();
    auto prices = policies::PriceTable::parse(
        "up: {emb-x: {input: 1000, embedding: true}}\n"
        "gem: {gemini-embedding-001: {input: 1000, embedding: true}}\n",
        "pricing");
    ASSERT_TRUE(prices.ok()) << prices.status().toString();
    prices_ = std::move(prices).value();
    routers::CloudProviderConfig c;
    c.name = "up";
    c.timeouts.first_byte = 2000ms;
    openai_ = std::make_unique<routers::CloudEmbeddingProvider>(
        c, routers::makeOpenAIEmbeddingWire({openai_fake_.baseUrl(), "sk-up"}), http_);
    c.name = "gem";
    routers::GeminiWireConfig g;
    g.base_url = gemini_fake_.baseUrl();
    g.api_key = "gem-key";
    gemini_ = std::make_unique<routers::CloudEmbeddingProvider>(
        c, routers::makeGeminiEmbeddingWire(g), http_);
    spender_ = std::make_unique<routers::Spender>(ledger_.get(), prices_, timer_, nullptr, nullptr);
  }

  static routers::ChainTarget target(const std::string& provider, const std::string& upstream,
                                     const std::string& api) {
    routers::ChainTarget t;
    t.upstream_model = upstream;
    t.label = provider + "/" + upstream;
    t.model = "public-e";
    t.api = api;
    return t;
  }

  std::shared_ptr<routers::Account> account(policies::TeamPolicy policy) {
    policy.name = "team-a";
    auto p = std::make_shared<const policies::TeamPolicy>(std::move(policy));
    return std::make_shared<routers::Account>(
        ledger_.get(), routers::Payer{"req-1", "team-a", "key-a", "public-e", p});
  }

  api::StatusOr<api::EmbeddingResponse> metered(const std::shared_ptr<routers::Account>& a,
                                                routers::EmbeddingProvider& provider,
                                                const routers::ChainTarget& t,
                                                api::EmbeddingRequest r) {
    auto result = await([&](routers::EmbedDone done) {
      routers::runMeteredEmbedding(*spender_, a, provider, t, std::move(r), std::move(done),
                                   routers::Clock::now() + 10s);
    });
    api::Usage u;
    if (result.ok()) u.prompt_tokens = result->prompt_tokens;
    a->finish(routers::RouteInfo{"", "", t.label}, false, result.ok() ? &u : nullptr,
              result.ok() ? 200 : result.status().httpStatusCode(), 0.01);
    return result;
  }

  double settled() {
    EXPECT_TRUE(ledger_->flush().ok());
    return ledger_->spent("team-a", policies::Window::kMonth, nowMs()).settled_usd;
  }
  double reserved() {
    return ledger_->spent("team-a", policies::Window::kMonth, nowMs()).reserved_usd;
  }
  static int64_t nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  TempDir dir_;
  std::unique_ptr<policies::Ledger> ledger_;
  policies::PriceTable prices_;
  FakeOpenAI openai_fake_;
  FakeGemini gemini_fake_;
  routers::HttpClient http_;
  routers::TimerThread timer_;
  std::unique_ptr<routers::CloudEmbeddingProvider> openai_, gemini_;
  std::unique_ptr<routers::Spender> spender_;
};

TEST_F(EmbeddingsTest, OpenAIWireSendsFloatsAndReadsTheVectorsAndUsage) {
  api::EmbeddingRequest r = textRequest({"one two three", "four"}, 4);
  r.model = "emb-x";
  r.encoding_format = api::EmbeddingEncoding::kBase64;  // the gateway encodes; upstream: float
  auto got = await([&](routers::EmbedDone done) {
    openai_->embed(r, std::move(done), routers::Clock::now() + 5s);
  });
  ASSERT_TRUE(got.ok()) << got.status().message();
  Json sent = openai_fake_.embeddings().lastBody();
  EXPECT_EQ(sent["model"], "emb-x");
  EXPECT_EQ(sent["input"], Json::parse(R"(["one two three","four"])"));
  EXPECT_EQ(sent["encoding_format"], "float");
  EXPECT_EQ(sent["dimensions"], 4);
  ASSERT_EQ(got->embeddings.size(), 2u);
  EXPECT_EQ(got->embeddings[0], FakeEmbeddings::vectorFor(Json("one two three"), 4));
  EXPECT_EQ(got->embeddings[1], FakeEmbeddings::vectorFor(Json("four"), 4));
  EXPECT_TRUE(got->usage_reported);
  EXPECT_EQ(got->prompt_tokens, 4);  // the fake's words
}

TEST_F(EmbeddingsTest, GeminiWireUsesBatchEmbedContents) {
  api::EmbeddingRequest r = textRequest({"alpha", "beta gamma"}, 3);
  r.model = "gemini-embedding-001";
  auto got = await([&](routers::EmbedDone done) {
    gemini_->embed(r, std::move(done), routers::Clock::now() + 5s);
  });
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(gemini_fake_.embeddings().requestCount(), 1);
  EXPECT_EQ(got->embeddings[1], FakeEmbeddings::vectorFor(Json("beta gamma"), 3));
  EXPECT_FALSE(got->usage_reported);
  auto last = gemini_fake_.server().requests().back();
  EXPECT_EQ(last.path(), "/v1beta/models/gemini-embedding-001:batchEmbedContents");
  EXPECT_EQ(last.header("x-goog-api-key"), "gem-key");
}

TEST_F(EmbeddingsTest, MeteredCallSettlesTheReportedUsage) {
  auto a = account({});
  auto got = metered(a, *openai_, target("up", "emb-x", "openai"), textRequest({"a b c"}));
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(openai_fake_.embeddings().lastBody()["model"], "emb-x");
  EXPECT_EQ(got->prompt_tokens, 3);
  EXPECT_FALSE(a->estimated());
  EXPECT_NEAR(settled(), 3 * 0.001, 1e-12);
  EXPECT_EQ(reserved(), 0.0);
}

TEST_F(EmbeddingsTest, GeminiIsBilledAtThePromptBound) {
  auto a = account({});
  auto got = metered(a, *gemini_, target("gem", "gemini-embedding-001", "gemini"),
                     textRequest({"hello", "hi"}));
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->prompt_tokens, 7);  // one token per byte: never under what Gemini counts
  EXPECT_TRUE(a->estimated());
  EXPECT_NEAR(settled(), 7 * 0.001, 1e-12);
}

TEST_F(EmbeddingsTest, BudgetRefusesTheWorstCaseBeforeTheCall) {
  policies::TeamPolicy p;
  p.budget.monthly_usd = 0.004;  // 4 bytes of input at most
  auto a = account(p);
  auto refused = metered(a, *openai_, target("up", "emb-x", "openai"), textRequest({"hello"}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kQuotaExceeded);
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 0);
  auto ok = metered(account(p), *openai_, target("up", "emb-x", "openai"), textRequest({"hey"}));
  EXPECT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 1);
}

TEST_F(EmbeddingsTest, DataRulesHoldBeforeAnyCall) {
  policies::TeamPolicy p;
  p.allow_cloud = false;
  auto got = metered(account(p), *openai_, target("up", "emb-x", "openai"), textRequest({"x"}));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), api::ErrorCode::kPermissionDenied);
  EXPECT_EQ(got.status().openaiCode(), "cloud_not_allowed");
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 0);
  EXPECT_EQ(settled(), 0.0);
}

TEST_F(EmbeddingsTest, AnErrorAnswerCostsNothing) {
  openai_fake_.embeddings().pushError(500, "boom");
  auto a = account({});
  routers::ChainTarget t = target("up", "emb-x", "openai");
  t.retry.max_attempts = 1;
  auto got = metered(a, *openai_, t, textRequest({"a b"}));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), api::ErrorCode::kUpstreamError);
  EXPECT_EQ(settled(), 0.0);
  EXPECT_EQ(reserved(), 0.0);
}

// A retryable failure (429, 5xx) is tried again on the same target as chat is, within the
// target's retry policy; each try is reserved and settled on its own, the failed ones at 0.
TEST_F(EmbeddingsTest, RetryableFailuresAreTriedAgain) {
  openai_fake_.embeddings().pushError(503, "busy");
  openai_fake_.embeddings().pushError(429, "slow down");
  auto a = account({});
  routers::ChainTarget t = target("up", "emb-x", "openai");
  t.retry.initial_backoff_s = 0.01;
  auto got = metered(a, *openai_, t, textRequest({"a b"}));
  ASSERT_TRUE(got.ok()) << got.status().toString();
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 3);
  EXPECT_GT(settled(), 0.0);
  EXPECT_NEAR(settled(), got->prompt_tokens * 1000 / 1e6, 1e-12) << "the failed tries cost nothing";
  EXPECT_EQ(reserved(), 0.0);

  // Out of tries: the last failure is the answer. A 400 is never retried.
  for (int i = 0; i < 3; ++i) openai_fake_.embeddings().pushError(500, "down");
  auto failed = metered(account({}), *openai_, t, textRequest({"c"}));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 6);
  openai_fake_.embeddings().pushError(400, "bad input");
  auto refused = metered(account({}), *openai_, t, textRequest({"d"}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(openai_fake_.embeddings().requestCount(), 7);
}

TEST_F(EmbeddingsTest, MalformedUpstreamAnswersAreUpstreamErrors) {
  routers::CloudProviderConfig c;
  c.name = "bad";
  LoopbackServer bad([](const Request&, ResponseWriter& w) {
    w.send(200, R"({"data":[{"embedding":[1,"x"]}]})");
  });
  routers::CloudEmbeddingProvider p(
      c, routers::makeOpenAIEmbeddingWire({"http://127.0.0.1:" + std::to_string(bad.port()), ""}),
      http_);
  auto got = await([&](routers::EmbedDone done) {
    p.embed(textRequest({"x"}), std::move(done), routers::Clock::now() + 5s);
  });
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), api::ErrorCode::kUpstreamError);
  EXPECT_NE(got.status().message().find("upstream 'bad'"), std::string::npos);
}

}  // namespace
}  // namespace sytest
