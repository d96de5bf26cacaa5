// routers::Spender against the fake OpenAI server (real HTTP on loopback) and a real SQLite
// ledger: every cloud attempt is gated by the team's data rules, reserved for its worst case
// (output cap x choices) and settled at an amount that never under-counts what the provider
// bills, also when the call ends without usage (client gone, broken stream, timeout).
#include "routers/spend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <limits>
#include <thread>

#include "api/responses.h"
#include "policies/spend.h"
#include "routers/cloud_provider.h"
#include "routers/http_client.h"
#include "routers/timer.h"
#include "tests/routers/provider_test_support.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

constexpr double kPrice = 1000;  // USD per million tokens, in and out: one token = $0.001

class SpendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ledger = policies::openSqliteLedger(dir_.path() + "/ledger.db");
    ASSERT_TRUE(ledger.ok()) << ledger.status().toString();
    ledger_ = std::move(ledger).value();
    auto prices = policies::PriceTable::parse(
        "up: {gpt-x: {input: 1000, output: 1000, max_output: 4096}}\n"
        "spare: {gpt-y: {input: 1000, output: 1000}}\n",
        "pricing");
    ASSERT_TRUE(prices.ok()) << prices.status().toString();
    prices_ = std::move(prices).value();
    routers::CloudProviderConfig c;
    c.name = "up";
    c.timeouts.first_byte = 2000ms;
    provider_ = std::make_unique<routers::CloudProvider>(c, makeWire(Api::kOpenAI, fake_.baseUrl()),
                                                         http_);
    c.name = "spare";
    spare_ = std::make_unique<routers::CloudProvider>(c, makeWire(Api::kOpenAI, spare_fake_.baseUrl()),
                                                      http_);
    spender_ = std::make_unique<routers::Spender>(ledger_.get(), prices_, timer_, nullptr, nullptr);
  }

  routers::ChainTarget cloud(const std::string& model = "gpt-x-public") {
    routers::ChainTarget t;
    t.provider = provider_.get();
    t.upstream_model = "gpt-x";
    t.label = "up/gpt-x";
    t.retry.max_attempts = 1;
    t.model = model;
    t.api = "openai";
    return t;
  }
  // A second target that the gate treats as local (a remote engine of the team's own).
  routers::ChainTarget localLike() {
    routers::ChainTarget t;
    t.provider = spare_.get();
    t.upstream_model = "gpt-y";
    t.label = "spare/gpt-y";
    t.retry.max_attempts = 1;
    t.model = "local-model";
    t.api = "local";
    return t;
  }

  std::shared_ptr<routers::Account> account(policies::TeamPolicy policy) {
    policy.name = "team-a";
    auto p = std::make_shared<const policies::TeamPolicy>(std::move(policy));
    return std::make_shared<routers::Account>(
        ledger_.get(), routers::Payer{"req-1", "team-a", "key-a", "gpt-x-public", p});
  }

  std::shared_ptr<RecordingSink> run(const std::shared_ptr<routers::Account>& a,
                                     std::vector<routers::ChainTarget> targets,
                                     const api::ChatRequest& r, Millis deadline = 10000ms,
                                     std::shared_ptr<routers::ProviderCall>* call = nullptr) {
    auto sink = std::make_shared<RecordingSink>();
    auto c = spender_->run("chain", a, std::move(targets), r, sink,
                           routers::Clock::now() + deadline);
    if (call) *call = c;
    return sink;
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
  FakeOpenAI fake_, spare_fake_;
  routers::HttpClient http_;
  routers::TimerThread timer_;
  std::unique_ptr<routers::CloudProvider> provider_, spare_;
  std::unique_ptr<routers::Spender> spender_;
};

TEST_F(SpendTest, ClientGoneMidStreamIsBilledAtLeastWhatTheProviderServed) {
  fake_.pushFault(Fault::slowDrip(100ms));
  auto a = account({});
  std::shared_ptr<routers::ProviderCall> call;
  auto sink = run(a, {cloud()}, userRequest("tell me a long story please", true), 10000ms, &call);
  for (int i = 0; i < 200 && sink->chunks().empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(sink->chunks().empty());
  call->cancel();
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kCancelled);
  a->finish(sink->route(), false, nullptr, 499, 0.1);
  // The provider bills the prompt (3 + 6 words) and every piece it sent (at least one).
  const double provider_bill = (9 + static_cast<double>(sink->chunks().size())) * kPrice / 1e6;
  EXPECT_GE(settled(), provider_bill);
  EXPECT_TRUE(a->estimated());
  EXPECT_EQ(reserved(), 0.0);
}

TEST_F(SpendTest, BrokenStreamIsBilledByEstimate) {
  fake_.pushFault(Fault::cutStream(2));
  auto a = account({});
  auto sink = run(a, {cloud()}, userRequest("hello there", true));
  ASSERT_TRUE(sink->wait());
  ASSERT_FALSE(sink->result().ok());
  a->finish(sink->route(), false, nullptr, 502, 0.1);
  EXPECT_GE(settled(), (3 + 2 + 2) * kPrice / 1e6);
  EXPECT_EQ(reserved(), 0.0);
}

TEST_F(SpendTest, AnErrorAnsweredByTheProviderCostsNothing) {
  fake_.pushFault(Fault::error(500, "boom"));
  auto a = account({});
  auto sink = run(a, {cloud()}, userRequest("hello", false));
  ASSERT_TRUE(sink->wait());
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(reserved(), 0.0) << "the failed attempt's reservation is released at once";
  a->finish(sink->route(), false, nullptr, 502, 0.1);
  EXPECT_EQ(settled(), 0.0);
  EXPECT_FALSE(a->estimated());
}

TEST_F(SpendTest, NonStreamedCallCutBeforeItsAnswerIsBilledTheWholeReservation) {
  fake_.pushFault(Fault::hang());
  auto a = account({});
  api::ChatRequest r = userRequest("hello", false);
  r.max_completion_tokens = 100;
  auto sink = run(a, {cloud()}, r, 500ms);
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kUpstreamTimeout);
  a->finish(sink->route(), false, nullptr, 504, 0.5);
  const policies::Price& p = *prices_.find("up", "gpt-x");
  double worst =
      policies::worstCaseUsd(policies::promptTokenBound(r, "openai", "gpt-x"), 100, 1, p);
  EXPECT_NEAR(settled(), worst, 1e-12);
}

TEST_F(SpendTest, AnAnswerWithUsageIsBilledExactly) {
  auto a = account({});
  auto sink = run(a, {cloud()}, userRequest("one two three", false));
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok());
  const api::Usage& u = *sink->result()->usage;
  a->finish(sink->route(), false, &u, 200, 0.1);
  EXPECT_NEAR(settled(), (u.prompt_tokens + u.completion_tokens) * kPrice / 1e6, 1e-12);
  EXPECT_FALSE(a->estimated());
}

TEST_F(SpendTest, ReservationCoversEveryChoice) {
  fake_.setDefaultLatency(300ms);
  policies::TeamPolicy policy;
  policy.budget.monthly_usd = 100;
  auto a = account(policy);
  api::ChatRequest r = userRequest("hello", false);
  r.n = 4;
  auto sink = run(a, {cloud()}, r);
  for (int i = 0; i < 100 && reserved() == 0; ++i) std::this_thread::sleep_for(5ms);
  const policies::Price& p = *prices_.find("up", "gpt-x");
  // The budgeted call is capped at the model's limit (4096) and that cap is sent.
  const double worst =
      policies::worstCaseUsd(policies::promptTokenBound(r, "openai", "gpt-x"), 4096, 4, p);
  EXPECT_NEAR(reserved(), worst, 1e-12);
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(fake_.lastChatBody()["max_completion_tokens"], 4096);
  a->finish(sink->route(), false, sink->result().ok() ? &*sink->result()->usage : nullptr, 200, 0);
  EXPECT_EQ(reserved(), 0.0);
}

TEST_F(SpendTest, AbsurdMaxTokensIsClampedToTheModelLimit) {
  auto a = account({});
  api::ChatRequest r = userRequest("hello", false);
  r.max_tokens = std::numeric_limits<int64_t>::max();
  auto sink = run(a, {cloud()}, r);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().toString();
  EXPECT_EQ(fake_.lastChatBody()["max_tokens"], 4096);
}

TEST_F(SpendTest, AnExhaustedBudgetRefusesBeforeTheProviderIsCalled) {
  policies::TeamPolicy policy;
  policy.budget.daily_usd = 0.000001;
  auto a = account(policy);
  auto sink = run(a, {cloud()}, userRequest("hello", false));
  ASSERT_TRUE(sink->wait());
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().openaiCode(), "insufficient_quota");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  EXPECT_EQ(reserved(), 0.0);
}

TEST_F(SpendTest, DataRulesHoldOnFallbacks) {
  // A local target whose fallback is a cloud model: a team that keeps its data local never
  // reaches the cloud, even when the local target fails (a full queue, say).
  spare_fake_.pushFault(Fault::error(503, "queue full"));
  policies::TeamPolicy secure;
  secure.allow_cloud = false;
  auto a = account(secure);
  auto sink = run(a, {localLike(), cloud()}, userRequest("hello", false));
  ASSERT_TRUE(sink->wait());
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().openaiCode(), "cloud_not_allowed");
  EXPECT_EQ(fake_.chatRequestCount(), 0);

  policies::TeamPolicy narrow;
  narrow.allowed_models = {"local-model"};
  auto b = account(narrow);
  spare_fake_.pushFault(Fault::error(503, "queue full"));
  auto sink2 = run(b, {localLike(), cloud()}, userRequest("hello", false));
  ASSERT_TRUE(sink2->wait());
  EXPECT_EQ(sink2->result().status().openaiCode(), "model_not_allowed");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(SpendTest, ARefusedCloudTargetMovesOnToTheLocalOne) {
  policies::TeamPolicy secure;
  secure.allow_cloud = false;
  auto a = account(secure);
  auto sink = run(a, {cloud(), localLike()}, userRequest("hello", false));
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->route().label, "spare/gpt-y");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(SpendTest, AfterRefusalTargetsServeOnlyRefusals) {
  fake_.pushFault(Fault::error(400, "bad request"));
  routers::ChainTarget local = localLike();
  local.after_refusal_only = true;
  auto a = account({});
  auto sink = run(a, {cloud(), local}, userRequest("hello", false));
  ASSERT_TRUE(sink->wait());
  EXPECT_FALSE(sink->result().ok()) << "an upstream error is not a refusal";
  EXPECT_EQ(spare_fake_.chatRequestCount(), 0);

  policies::TeamPolicy broke;
  broke.budget.monthly_usd = 0;
  auto b = account(broke);
  auto sink2 = run(b, {cloud(), local}, userRequest("hello", false));
  ASSERT_TRUE(sink2->wait());
  ASSERT_TRUE(sink2->result().ok());
  EXPECT_EQ(sink2->route().label, "spare/gpt-y");
  EXPECT_NE(sink2->route().escalation.find("budget"), std::string::npos);
}

TEST(SpendMath, ImagesArePricedByTheProvidersRule) {
  api::ChatRequest r = userRequest("", false);
  api::ContentPart img;
  img.type = api::ContentPart::Type::kImageUrl;
  img.image_url = "https://example.com/a.png";
  r.messages[0].content.kind = api::Content::Kind::kParts;
  r.messages[0].content.parts = {img};
  const int64_t base = policies::promptTokenBound(userRequest("", false), "openai", "gpt-4o");
  EXPECT_EQ(policies::promptTokenBound(r, "openai", "gpt-4o-mini") - base, 2833 + 8 * 5667);
  EXPECT_GE(policies::promptTokenBound(r, "openai", "gpt-4o") - base, 1445);
  EXPECT_GE(policies::promptTokenBound(r, "anthropic", "claude") - base, 1600);
  EXPECT_GE(policies::promptTokenBound(r, "gemini", "gemini-2.5-flash") - base, 1120);
}

// A body sent as it came may hold members the typed request leaves out (encrypted reasoning
// items, server tools): the bound is never below the body's own bytes.
TEST(SpendMath, APassedThroughBodyBoundsThePromptByItsBytes) {
  api::ChatRequest r = userRequest("hi", false);
  const int64_t typed = policies::promptTokenBound(r, "openai", "m");
  r.native_api = "openai.responses";
  r.native_body = std::make_shared<const std::string>(
      R"({"model":"m","input":[{"type":"reasoning","encrypted_content":")" +
      std::string(50000, 'A') + R"("},{"role":"user","content":"hi"}]})");
  EXPECT_GE(policies::promptTokenBound(r, "openai", "m"),
            static_cast<int64_t>(r.native_body->size()));
  EXPECT_GT(policies::promptTokenBound(r, "openai", "m"), typed + 50000);
}

// Content the upstream reads by reference (a file id or URL, a stored prompt, a conversation,
// an item reference) cannot be measured: the bound is the model's context window, or the
// largest any cloud API offers when the price names none. The estimate (rate limits, triggers)
// leaves it out.
TEST(SpendMath, ContentTheUpstreamFetchesIsBoundByTheContextWindow) {
  auto parse = [](const std::string& body) {
    auto r = api::parseResponsesRequest(body);
    EXPECT_TRUE(r.ok()) << r.status().toString();
    return r.ok() ? *r : api::ChatRequest{};
  };
  policies::Price priced{1.0, 0.5, 1.0, 2.0};
  priced.context_window = 400000;
  const api::ChatRequest plain = parse(R"({"model":"m","input":"hi"})");
  EXPECT_FALSE(policies::upstreamHeldInput(plain));
  EXPECT_LT(policies::promptTokenBound(plain, "openai", "m", &priced), 1000);

  const std::vector<std::string> held = {
      R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-1"}]}]})",
      R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x/a.pdf"}]}]})",
      R"({"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"file-2"}]}]})",
      R"({"model":"m","input":[{"type":"item_reference","id":"msg_1"},{"role":"user","content":"hi"}]})",
      R"({"model":"m","input":"hi","prompt":{"id":"pmpt_1","variables":{"x":"y"}}})",
      R"({"model":"m","input":"hi","conversation":"conv_1"})",
  };
  for (const std::string& body : held) {
    const api::ChatRequest r = parse(body);
    EXPECT_TRUE(policies::upstreamHeldInput(r)) << body;
    EXPECT_EQ(policies::promptTokenBound(r, "openai", "m", &priced), 400000) << body;
    EXPECT_EQ(policies::promptTokenBound(r, "openai", "m"), policies::kUnseenInputTokens) << body;
    EXPECT_LT(policies::promptTokenEstimate(r), 1000) << body;
  }
  // Files inside an item, at any depth (a tool call's output), count too.
  for (const std::string& body : std::vector<std::string>{
           R"({"model":"m","input":[{"type":"function_call_output","call_id":"c","output":)"
           R"([{"type":"input_file","file_id":"file-9"}]}]})",
           R"({"model":"m","input":[{"type":"computer_call_output","call_id":"c","output":)"
           R"({"type":"computer_screenshot","file_id":"file-8"}}]})",
           R"({"model":"m","input":[{"id":"msg_7"},{"role":"user","content":"hi"}]})"}) {
    const api::ChatRequest r = parse(body);
    EXPECT_TRUE(policies::upstreamHeldInput(r)) << body;
    EXPECT_EQ(policies::promptTokenBound(r, "openai", "m", &priced), 400000) << body;
  }
  // A built-in tool brings its results into the prompt, once per model turn.
  const api::ChatRequest searching = parse(
      R"({"model":"m","input":"news?","max_tool_calls":2,"tools":[{"type":"web_search"}]})");
  EXPECT_TRUE(policies::upstreamHeldInput(searching));
  EXPECT_EQ(policies::promptTokenBound(searching, "openai", "m", &priced), 3 * 400000);

  // Inline file data is measured by its bytes, not assumed.
  const api::ChatRequest inline_file = parse(
      R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","filename":"a.txt",)"
      R"("file_data":"data:text/plain;base64,aGk="}]}]})");
  EXPECT_FALSE(policies::upstreamHeldInput(inline_file));

  // Chat Completions: a file part naming an uploaded file.
  api::ChatRequest chat = userRequest("hi", false);
  api::ContentPart part;
  part.type = api::ContentPart::Type::kFile;
  part.raw = {{"type", "file"}, {"file", {{"file_id", "file-3"}}}};
  chat.messages.back().content.kind = api::Content::Kind::kParts;
  chat.messages.back().content.parts.push_back(part);
  EXPECT_TRUE(policies::upstreamHeldInput(chat));
  EXPECT_EQ(policies::promptTokenBound(chat, "openai", "m", &priced), 400000);
}

// A reservation runs the tokens at the tier the request names, or at the dearest listed one when
// it names none or "auto" (the project's default tier at OpenAI may be priority); an estimate
// without usage only at a named one. A request offering a built-in tool reserves its calls
// (max_tool_calls of them, else the assumed number) at the dearest offered tool's fee; dated
// and preview tool types bill as their call items.
TEST(SpendMath, DearerTiersAndBuiltInToolsAreReserved) {
  policies::Price p{1.0, 0.5, 1.0, 2.0};
  p.service_tiers = {{"flex", 0.5}, {"priority", 2.0}};
  p.tool_calls = {{"web_search_call", 0.01}, {"file_search_call", 0.0025}};
  auto parse = [](const std::string& body) {
    auto r = api::parseResponsesRequest(body);
    EXPECT_TRUE(r.ok()) << r.status().toString();
    return r.ok() ? *r : api::ChatRequest{};
  };
  using policies::TierAssumption;
  const api::ChatRequest plain = parse(R"({"model":"m","input":"x"})");
  EXPECT_DOUBLE_EQ(policies::reservedUsd(plain, 1.0, p), 2.0);
  EXPECT_DOUBLE_EQ(policies::reservedUsd(plain, 1.0, p, TierAssumption::kNamedOnly), 1.0);
  EXPECT_DOUBLE_EQ(
      policies::reservedUsd(parse(R"({"model":"m","input":"x","service_tier":"auto"})"), 1.0, p),
      2.0);
  EXPECT_DOUBLE_EQ(
      policies::reservedUsd(parse(R"({"model":"m","input":"x","service_tier":"priority"})"), 1.0,
                            p, TierAssumption::kNamedOnly),
      2.0);
  EXPECT_DOUBLE_EQ(
      policies::reservedUsd(parse(R"({"model":"m","input":"x","service_tier":"default"})"), 1.0, p),
      1.0);
  EXPECT_DOUBLE_EQ(
      policies::reservedUsd(parse(R"({"model":"m","input":"x","service_tier":"flex"})"), 1.0, p),
      1.0)
      << "a cheaper tier is never reserved below 1x";
  for (const char* tool : {"web_search_preview", "web_search_2025_08_26",
                           "web_search_preview_2025_03_11", "web_search"}) {
    const api::ChatRequest r = parse(std::string(R"({"model":"m","input":"x","service_tier":)"
                                                 R"("default","tools":[{"type":")") +
                                     tool + R"("}]})");
    EXPECT_EQ(policies::serverToolCallBound(r), policies::kAssumedServerToolCalls) << tool;
    EXPECT_DOUBLE_EQ(policies::reservedUsd(r, 1.0, p),
                     1.0 + 0.01 * policies::kAssumedServerToolCalls)
        << tool;
  }
  const api::ChatRequest capped = parse(R"({"model":"m","input":"x","max_tool_calls":3,)"
                                        R"("service_tier":"default","tools":[{"type":"file_search",)"
                                        R"("vector_store_ids":["vs_1"]},{"type":"web_search"}]})");
  EXPECT_DOUBLE_EQ(policies::reservedUsd(capped, 1.0, p), 1.0 + 0.03);
  // Client-run tools are no calls of the provider.
  EXPECT_EQ(policies::serverToolCallBound(parse(
                R"({"model":"m","input":"x","tools":[{"type":"computer_use_preview",)"
                R"("display_width":1,"display_height":1,"environment":"browser"}]})")),
            0);
  EXPECT_TRUE(policies::isServerToolItem("web_search_call"));
  EXPECT_FALSE(policies::isServerToolItem("computer_call"));
  EXPECT_FALSE(policies::isServerToolItem("function_call"));
}

TEST(SpendMath, SchemasAndPassedThroughFieldsCountInThePromptBound) {
  api::ChatRequest r = userRequest("hi", false);
  const int64_t base = policies::promptTokenBound(r, "openai", "m");
  api::ResponseFormat f;
  f.type = api::ResponseFormat::Type::kJsonSchema;
  f.json_schema = {{"name", "x"}, {"schema", {{"type", "object"}, {"description", std::string(500, 'd')}}}};
  r.response_format = f;
  r.extra["prediction"] = {{"type", "content"}, {"content", std::string(300, 'p')}};
  EXPECT_GE(policies::promptTokenBound(r, "openai", "m") - base, 800);

  // Forwarded to OpenAI-compatible servers, whose templates may render them into the prompt.
  const int64_t before = policies::promptTokenBound(r, "openai", "m");
  r.chat_template_kwargs = {{"documents", std::string(400, 'k')}};
  api::Message prior;
  prior.role = api::Role::kAssistant;
  prior.content = api::Content::ofText("ok");
  prior.reasoning_content = std::string(200, 'r');
  r.messages.insert(r.messages.begin(), prior);
  EXPECT_GE(policies::promptTokenBound(r, "openai", "m") - before, 600);
}

// The shipped price table carries the output limit of models below the default cap, so that a
// budgeted request naming no max_tokens is sent (and reserved for) what the model accepts.
TEST(SpendMath, ShippedPricingCapsAModelBelowTheDefaultAtItsOwnLimit) {
  std::ifstream in(std::string(SY_SOURCE_DIR) + "/configs/pricing.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty());
  auto table = policies::PriceTable::parse(text, "pricing.yaml");
  ASSERT_TRUE(table.ok()) << table.status().message();
  const policies::Price* haiku = table->find("anthropic", "claude-3-5-haiku-latest");
  ASSERT_NE(haiku, nullptr);
  api::ChatRequest r = userRequest("hi", false);
  EXPECT_EQ(policies::outputCap(r, haiku), 8192);
  r.max_tokens = 16384;
  EXPECT_EQ(policies::outputCap(r, haiku), 8192);
  r.max_tokens = 100;
  EXPECT_EQ(policies::outputCap(r, haiku), 100);
  const policies::Price* mini = table->find("openai", "gpt-4o-mini");
  ASSERT_NE(mini, nullptr);
  EXPECT_EQ(policies::outputCap(userRequest("hi", false), mini), 16384);
}

TEST(SpendMath, ArithmeticSaturates) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(policies::saturatingAdd(kMax, 5), kMax);
  EXPECT_EQ(policies::saturatingMul(kMax / 2, 3), kMax);
  api::ChatRequest r = userRequest("hi", false);
  r.max_tokens = kMax;
  EXPECT_EQ(policies::outputCap(r, nullptr), policies::kMaxOutputCap);
  api::Usage u;
  u.prompt_tokens = std::numeric_limits<int64_t>::min();
  u.cached_prompt_tokens = kMax;
  u.completion_tokens = kMax;
  policies::Price p;
  p.input = p.output = p.cached_input = p.cache_write = 1;
  EXPECT_GT(p.cost(u), 0);
  EXPECT_TRUE(std::isfinite(p.cost(u)));
}

}  // namespace
}  // namespace sytest
