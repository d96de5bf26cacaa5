// The LLM judge: reading verdicts, combining the two position-swapped orders, the request the
// judge sees, and the Judge end to end over loopback HTTP against a fake OpenAI upstream
// (through a CloudProvider, and through a FallbackChain that reports its route).
#include "quality/judge.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "routers/cloud_provider.h"
#include "routers/fallback.h"
#include "routers/openai_wire.h"
#include "routers/timer.h"
#include "tests/support/fake_openai.h"

namespace {

using namespace std::chrono_literals;
using quality::JudgeResult;
using quality::JudgeStatus;
using quality::Pick;
using sytest::Json;

// ---- parseVerdict
// ------------------------------------------------------------------------------

Pick pickOf(std::string_view text) {
  api::StatusOr<Pick> p = quality::parseVerdict(text);
  EXPECT_TRUE(p.ok()) << "for: " << text << ": " << p.status().message();
  return p.ok() ? p.value() : Pick::kTie;
}

void expectRejected(std::string_view text) {
  api::StatusOr<Pick> p = quality::parseVerdict(text);
  ASSERT_FALSE(p.ok()) << "accepted: " << text;
  EXPECT_EQ(p.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_FALSE(p.status().message().empty());
}

TEST(ParseVerdict, ReadsABareObject) {
  EXPECT_EQ(pickOf(R"({"winner": "A", "reason": "more accurate"})"), Pick::kA);
  EXPECT_EQ(pickOf(R"({"winner":"B"})"), Pick::kB);
  EXPECT_EQ(pickOf(R"({"reason": "same", "winner": "tie"})"), Pick::kTie);
}

TEST(ParseVerdict, ReadsAFencedObject) {
  EXPECT_EQ(pickOf("```json\n{\"winner\": \"B\", \"reason\": \"complete\"}\n```"), Pick::kB);
  EXPECT_EQ(pickOf("```\n{\"winner\": \"tie\"}\n```\n"), Pick::kTie);
}

TEST(ParseVerdict, ReadsAnObjectAmongProse) {
  EXPECT_EQ(pickOf("After comparing both, B handles the edge case. It's clearly better.\n"
                   "{\"winner\": \"B\", \"reason\": \"handles {empty} input and \\\"quotes\\\"\"}"
                   "\nHope that helps!"),
            Pick::kB);
  // A lone brace or a stray quote in the prose before the object does not hide it.
  EXPECT_EQ(pickOf("Note { the format: {\"winner\": \"A\", \"reason\": \"x\"}"), Pick::kA);
  EXPECT_EQ(pickOf("{ he said \"hi {\"winner\": \"B\"}"), Pick::kB);
  // Other braces that are not JSON are skipped.
  EXPECT_EQ(pickOf("Answer {A} uses {x}. {\"winner\": \"A\"}"), Pick::kA);
}

TEST(ParseVerdict, WinnerValuesAndKeyAreCaseInsensitive) {
  EXPECT_EQ(pickOf(R"({"winner": "a"})"), Pick::kA);
  EXPECT_EQ(pickOf(R"({"winner": "b"})"), Pick::kB);
  EXPECT_EQ(pickOf(R"({"winner": " B "})"), Pick::kB);
  EXPECT_EQ(pickOf(R"({"winner": "Tie"})"), Pick::kTie);
  EXPECT_EQ(pickOf(R"({"winner": "TIE"})"), Pick::kTie);
  EXPECT_EQ(pickOf(R"({"winner": "draw"})"), Pick::kTie);
  EXPECT_EQ(pickOf(R"({"winner": "Equal"})"), Pick::kTie);
  EXPECT_EQ(pickOf(R"({"Winner": "A"})"), Pick::kA);
}

TEST(ParseVerdict, RejectsGarbage) {
  expectRejected("");
  expectRejected("I prefer the first answer.");
  expectRejected("winner: A");
  expectRejected(R"({"winner": "A")");           // never closed
  expectRejected(R"({"winner": "A",})");         // not JSON
  expectRejected(R"({'winner': 'A'})");          // not JSON either
  expectRejected(R"({"reason": "no winner"})");  // no winner
  expectRejected(R"({"verdict": {"winner": "A"}})");
  expectRejected(R"(["winner", "A"])");
  expectRejected(std::string(1 << 20, '{'));  // too long
  expectRejected(std::string(60000, '{'));    // long, and no object in it
  expectRejected(std::string("{\"winner\": \"\xFF\"}"));
}

TEST(ParseVerdict, RejectsWinnersOutsideTheThreeAnswers) {
  expectRejected(R"({"winner": "both"})");
  expectRejected(R"({"winner": "Answer A"})");
  expectRejected(R"({"winner": ""})");
  expectRejected(R"({"winner": 1})");
  expectRejected(R"({"winner": null})");
  expectRejected(R"({"winner": ["A"]})");
}

TEST(ParseVerdict, ConflictingObjectsAreAnErrorAgreeingOnesAreNot) {
  expectRejected(R"(First {"winner": "A"} but on reflection {"winner": "B"})");
  expectRejected(R"({"winner": "tie"} {"winner": "A"})");
  expectRejected(R"({"winner": "both"} {"winner": "A"})");
  EXPECT_EQ(pickOf(R"({"winner": "B", "reason": "x"} so: {"winner": "b"})"), Pick::kB);
}

// ---- combineVerdicts
// ------------------------------------------------------------------------------

TEST(CombineVerdicts, CloudWinningInBothOrdersIsPlusOneWithAgreement) {
  // Order 1 shows local as A, so the cloud is B; order 2 shows the cloud as A.
  JudgeResult r = quality::combineVerdicts(Pick::kB, Pick::kA);
  EXPECT_EQ(r.status, JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(r.delta, 1.0);
  EXPECT_TRUE(r.agreement);
  EXPECT_EQ(r.verdict_ab, "B");
  EXPECT_EQ(r.verdict_ba, "A");
}

TEST(CombineVerdicts, LocalWinningInBothOrdersIsMinusOne) {
  JudgeResult r = quality::combineVerdicts(Pick::kA, Pick::kB);
  EXPECT_EQ(r.status, JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(r.delta, -1.0);
  EXPECT_TRUE(r.agreement);
}

TEST(CombineVerdicts, PositionBiasCancelsOut) {
  JudgeResult first = quality::combineVerdicts(Pick::kA, Pick::kA);
  EXPECT_EQ(first.status, JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(first.delta, 0.0);
  EXPECT_FALSE(first.agreement);
  JudgeResult second = quality::combineVerdicts(Pick::kB, Pick::kB);
  EXPECT_DOUBLE_EQ(second.delta, 0.0);
  EXPECT_FALSE(second.agreement);
}

TEST(CombineVerdicts, TiesAndHalfPreferences) {
  JudgeResult ties = quality::combineVerdicts(Pick::kTie, Pick::kTie);
  EXPECT_EQ(ties.status, JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(ties.delta, 0.0);
  EXPECT_TRUE(ties.agreement);
  EXPECT_EQ(ties.verdict_ab, "tie");
  EXPECT_EQ(ties.verdict_ba, "tie");

  JudgeResult half = quality::combineVerdicts(Pick::kB, Pick::kTie);
  EXPECT_DOUBLE_EQ(half.delta, 0.5);
  EXPECT_FALSE(half.agreement);
  JudgeResult minus_half = quality::combineVerdicts(Pick::kTie, Pick::kB);
  EXPECT_DOUBLE_EQ(minus_half.delta, -0.5);
}

TEST(CombineVerdicts, AnUnparsedOrderIsUnparsed) {
  JudgeResult r = quality::combineVerdicts(std::nullopt, Pick::kA);
  EXPECT_EQ(r.status, JudgeStatus::kUnparsed);
  EXPECT_DOUBLE_EQ(r.delta, 0.0);
  EXPECT_FALSE(r.agreement);
  EXPECT_EQ(r.verdict_ab, "");
  EXPECT_EQ(r.verdict_ba, "A");
  JudgeResult none = quality::combineVerdicts(std::nullopt, std::nullopt);
  EXPECT_EQ(none.status, JudgeStatus::kUnparsed);
  EXPECT_EQ(none.verdict_ab, "");
  EXPECT_EQ(none.verdict_ba, "");
}

// ---- buildJudgeRequest
// ------------------------------------------------------------------------------

// The text between `open` and `close` in `s` ("" when absent).
std::string between(const std::string& s, const std::string& open, const std::string& close) {
  size_t a = s.find(open);
  if (a == std::string::npos) return "";
  a += open.size();
  size_t b = s.find(close, a);
  return b == std::string::npos ? "" : s.substr(a, b - a);
}

quality::QualityRecord sampleRecord() {
  quality::QualityRecord r;
  r.prompt = Json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [
      {"type": "text", "text": "What animal is in this picture?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,SECRETPIXELS"}}]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "c1", "type": "function",
       "function": {"name": "lookup_species", "arguments": "{\"q\": \"whiskers\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "felis catus"},
    {"role": "user", "content": "Answer in one word."}
  ])");
  r.local.text = "LOCAL-ANSWER: a dog";
  r.cloud.text = "CLOUD-ANSWER: a cat";
  return r;
}

std::string userText(const api::ChatRequest& req) {
  for (const api::Message& m : req.messages) {
    if (m.role == api::Role::kUser) return m.content.joinedText();
  }
  return "";
}

std::string systemText(const api::ChatRequest& req) {
  for (const api::Message& m : req.messages) {
    if (m.role == api::Role::kSystem) return m.content.joinedText();
  }
  return "";
}

TEST(BuildJudgeRequest, CarriesRubricFormatAndSettings) {
  quality::JudgeConfig c;
  c.model = "judge-model";
  c.max_tokens = 300;
  api::ChatRequest req = quality::buildJudgeRequest(sampleRecord(), c, false);
  EXPECT_EQ(req.model, "judge-model");
  ASSERT_TRUE(req.temperature.has_value());
  EXPECT_DOUBLE_EQ(*req.temperature, 0.0);
  EXPECT_EQ(req.max_completion_tokens, 300);
  EXPECT_FALSE(req.stream);
  ASSERT_EQ(req.messages.size(), 2u);
  EXPECT_EQ(req.messages[0].role, api::Role::kSystem);
  EXPECT_EQ(req.messages[1].role, api::Role::kUser);
  const std::string system = systemText(req);
  EXPECT_NE(system.find(quality::kDefaultRubric), std::string::npos);
  EXPECT_NE(system.find("\"winner\""), std::string::npos);
  EXPECT_NE(system.find("\"tie\""), std::string::npos);

  c.rubric = "Only factual accuracy matters.";
  const std::string custom = systemText(quality::buildJudgeRequest(sampleRecord(), c, false));
  EXPECT_NE(custom.find("Only factual accuracy matters."), std::string::npos);
  EXPECT_EQ(custom.find(quality::kDefaultRubric), std::string::npos);
}

TEST(BuildJudgeRequest, RendersTheConversation) {
  quality::JudgeConfig c;
  const std::string user = userText(quality::buildJudgeRequest(sampleRecord(), c, false));
  const std::string conversation = between(user, "<conversation>", "</conversation>");
  EXPECT_NE(conversation.find("Be brief."), std::string::npos);
  EXPECT_NE(conversation.find("What animal is in this picture?"), std::string::npos);
  EXPECT_NE(conversation.find("[image]"), std::string::npos);
  EXPECT_EQ(user.find("SECRETPIXELS"), std::string::npos) << "image data is never sent";
  EXPECT_NE(conversation.find("lookup_species"), std::string::npos);
  EXPECT_NE(conversation.find("whiskers"), std::string::npos);
  EXPECT_NE(conversation.find("felis catus"), std::string::npos);
  EXPECT_NE(conversation.find("Answer in one word."), std::string::npos);
  EXPECT_LT(conversation.find("Be brief."), conversation.find("Answer in one word."));
}

TEST(BuildJudgeRequest, SwappingTheOrderPutsTheCloudAnswerFirst) {
  quality::JudgeConfig c;
  const std::string ab = userText(quality::buildJudgeRequest(sampleRecord(), c, false));
  EXPECT_NE(between(ab, "<answer_a>", "</answer_a>").find("LOCAL-ANSWER"), std::string::npos);
  EXPECT_NE(between(ab, "<answer_b>", "</answer_b>").find("CLOUD-ANSWER"), std::string::npos);
  const std::string ba = userText(quality::buildJudgeRequest(sampleRecord(), c, true));
  EXPECT_NE(between(ba, "<answer_a>", "</answer_a>").find("CLOUD-ANSWER"), std::string::npos);
  EXPECT_NE(between(ba, "<answer_b>", "</answer_b>").find("LOCAL-ANSWER"), std::string::npos);
  EXPECT_LT(ba.find("Answer A"), ba.find("Answer B"));
}

TEST(BuildJudgeRequest, SaysWhenAnAnswerWasCutShort) {
  quality::QualityRecord r = sampleRecord();
  quality::JudgeConfig c;
  EXPECT_EQ(userText(quality::buildJudgeRequest(r, c, false)).find("cut off"), std::string::npos);
  r.local.complete = false;
  const std::string user = userText(quality::buildJudgeRequest(r, c, true));
  EXPECT_NE(user.find("Answer B was cut off"), std::string::npos) << user;
}

TEST(BuildJudgeRequest, SurvivesOddPromptsAndHugeAnswers) {
  quality::JudgeConfig c;
  quality::QualityRecord r;
  for (const char* prompt :
       {"null", "{\"role\": \"user\"}", "[1, \"x\", null]",
        "[{\"role\": 5, \"content\": {\"text\": 1}, \"tool_calls\": [7, {\"function\": 3}]}]",
        "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": 9}, 4]}]"}) {
    r.prompt = Json::parse(prompt);
    api::ChatRequest req = quality::buildJudgeRequest(r, c, false);
    EXPECT_EQ(req.messages.size(), 2u) << prompt;
  }
  // Answers are cut to a bound, at a character boundary ("é" is two bytes).
  r.prompt = Json::array();
  std::string huge;
  while (huge.size() < 200000) huge += "é";
  r.local.text = huge;
  r.cloud.text = huge;
  const std::string user = userText(quality::buildJudgeRequest(r, c, false));
  EXPECT_LT(user.size(), 100000u);
  EXPECT_NO_THROW(Json(user).dump()) << "still valid UTF-8";
}

// ---- Judge over loopback HTTP
// ------------------------------------------------------------------------------

// FakeOpenAI whose assistant text comes from a function of the judge's user message, with a
// fixed usage so that costs are easy to compute by hand. Faults still come from FakeCloud.
class ScriptedOpenAI : public sytest::FakeOpenAI {
 public:
  using Reply = std::function<std::string(const std::string& user_text)>;
  static constexpr int64_t kPromptTokens = 1000;
  static constexpr int64_t kCompletionTokens = 20;

  ~ScriptedOpenAI() override { stop(); }

  void setReply(Reply reply) {
    std::lock_guard<std::mutex> lock(mu_);
    reply_ = std::move(reply);
  }

 protected:
  std::string answer(const Json& body, const std::string& id) const override {
    Json out = Json::parse(FakeOpenAI::answer(body, id));
    Reply reply;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reply = reply_;
    }
    std::string user;
    for (const Json& m : body["messages"]) {
      if (m.value("role", "") == "user" && m["content"].is_string()) user = m["content"];
    }
    if (reply) out["choices"][0]["message"]["content"] = reply(user);
    out["usage"] = {{"prompt_tokens", kPromptTokens},
                    {"completion_tokens", kCompletionTokens},
                    {"total_tokens", kPromptTokens + kCompletionTokens}};
    return out.dump();
  }

 private:
  mutable std::mutex mu_;
  Reply reply_;
};

// A judge that can read: it prefers whichever answer is the cloud's, wherever it stands.
std::string prefersTheCloud(const std::string& user) {
  const bool cloud_is_a =
      between(user, "<answer_a>", "</answer_a>").find("CLOUD-ANSWER") != std::string::npos;
  return std::string("Looking at both answers, the cloud one is right.\n```json\n") +
         (cloud_is_a ? R"({"winner": "A", "reason": "A names the cat"})"
                     : R"({"winner": "B", "reason": "B names the cat"})") +
         "\n```";
}

// Collects the results `done` receives.
class Outcome {
 public:
  std::function<void(JudgeResult)> callback() {
    return [this](JudgeResult r) {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(std::move(r));
      cv_.notify_all();
    };
  }
  // Waits for the first result; false on timeout.
  bool wait(std::chrono::milliseconds timeout = 20000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return !results_.empty(); });
  }
  JudgeResult result() {
    std::lock_guard<std::mutex> lock(mu_);
    return results_.empty() ? JudgeResult{} : results_.front();
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(results_.size());
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<JudgeResult> results_;
};

// Per call at 1 USD per million prompt tokens and 2 per million completion tokens.
constexpr double kCallCost =
    (ScriptedOpenAI::kPromptTokens * 1.0 + ScriptedOpenAI::kCompletionTokens * 2.0) / 1e6;

class JudgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    routers::CloudProviderConfig pc;
    pc.name = "openai";
    pc.timeouts.connect = 1000ms;
    pc.timeouts.first_byte = 5000ms;
    pc.timeouts.idle = 5000ms;
    pc.timeouts.total = 10000ms;
    routers::OpenAIWireConfig wc;
    wc.base_url = fake_.baseUrl();
    wc.api_key = "sk-judge";
    provider_ = std::make_unique<routers::CloudProvider>(
        pc, std::make_unique<routers::OpenAIWire>(wc), http_);
    auto prices = policies::PriceTable::parse(
        "openai:\n"
        "  judge-model: {input: 1.0, output: 2.0}\n"
        "  judge-upstream: {input: 2.0, output: 4.0}\n",
        "pricing.yaml");
    ASSERT_TRUE(prices.ok()) << prices.status().message();
    prices_ = prices.value();
    config_.model = "judge-model";
    config_.timeout_s = 10;
    fake_.setReply(prefersTheCloud);
  }

  std::function<int64_t()> clock() {
    return [this] { return now_ms_.load(); };
  }

  JudgeResult judgeOnce(quality::Judge& judge, const quality::QualityRecord& r) {
    Outcome outcome;
    judge.judge(r, outcome.callback());
    EXPECT_TRUE(outcome.wait()) << "done was never called";
    // Give a second, wrong call the time to show up before counting.
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(outcome.calls(), 1);
    return outcome.result();
  }

  routers::HttpClient http_;
  ScriptedOpenAI fake_;
  std::unique_ptr<routers::CloudProvider> provider_;
  policies::PriceTable prices_;
  quality::JudgeConfig config_;
  std::atomic<int64_t> now_ms_{1'700'000'000'000};
};

TEST_F(JudgeTest, AJudgeThatPrefersTheCloudInBothOrdersIsOkWithItsCost) {
  quality::Judge judge(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kOk) << r.detail;
  EXPECT_DOUBLE_EQ(r.delta, 1.0);
  EXPECT_TRUE(r.agreement);
  EXPECT_EQ(r.verdict_ab, "B");
  EXPECT_EQ(r.verdict_ba, "A");
  EXPECT_EQ(r.model, "judge-model") << "a bare provider reports no route";
  EXPECT_NEAR(r.cost_usd, 2 * kCallCost, 1e-12);
  EXPECT_EQ(r.unix_ms, now_ms_.load());
  EXPECT_TRUE(r.detail.empty());
  EXPECT_NEAR(judge.spentTodayUsd(), 2 * kCallCost, 1e-12);

  // Both orders went out, as the judge's request says.
  std::vector<sytest::Request> requests = fake_.server().requests();
  ASSERT_EQ(requests.size(), 2u);
  int cloud_first = 0;
  for (const sytest::Request& req : requests) {
    Json body = Json::parse(req.body);
    EXPECT_EQ(body["model"], "judge-model");
    EXPECT_EQ(body["temperature"], 0.0);
    EXPECT_EQ(body["max_completion_tokens"], 512);
    EXPECT_FALSE(body.value("stream", false));
    const std::string user = body["messages"][1]["content"];
    if (between(user, "<answer_a>", "</answer_a>").find("CLOUD-ANSWER") != std::string::npos) {
      ++cloud_first;
    }
  }
  EXPECT_EQ(cloud_first, 1);
}

TEST_F(JudgeTest, GarbageRepliesAreUnparsedWithTheirText) {
  fake_.setReply([](const std::string&) { return "Both answers have merit; hard to say."; });
  quality::Judge judge(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kUnparsed);
  EXPECT_EQ(r.verdict_ab, "");
  EXPECT_EQ(r.verdict_ba, "");
  EXPECT_DOUBLE_EQ(r.delta, 0);
  EXPECT_NE(r.detail.find("Both answers have merit; hard to say."), std::string::npos);
  EXPECT_NE(r.detail.find("\n---\n"), std::string::npos) << "both texts: " << r.detail;
  EXPECT_NEAR(r.cost_usd, 2 * kCallCost, 1e-12) << "the calls answered, so they cost";
}

TEST_F(JudgeTest, OneUnparsedOrderIsUnparsedAndKeepsTheOtherVerdict) {
  fake_.setReply([](const std::string& user) {
    const bool cloud_is_a =
        between(user, "<answer_a>", "</answer_a>").find("CLOUD-ANSWER") != std::string::npos;
    return cloud_is_a ? std::string("{\"winner\": \"both\"}") : prefersTheCloud(user);
  });
  quality::Judge judge(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kUnparsed);
  EXPECT_EQ(r.verdict_ab, "B");
  EXPECT_EQ(r.verdict_ba, "");
  EXPECT_EQ(r.detail, "{\"winner\": \"both\"}");
}

TEST_F(JudgeTest, AHangingUpstreamTimesOutAsAnErrorAndDoneRunsOnce) {
  fake_.pushFault(sytest::Fault::hang());
  fake_.pushFault(sytest::Fault::hang());
  config_.timeout_s = 0.3;
  quality::Judge judge(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kError);
  EXPECT_NE(r.detail.find("local first"), std::string::npos) << r.detail;
  EXPECT_NE(r.detail.find("cloud first"), std::string::npos) << r.detail;
  EXPECT_DOUBLE_EQ(r.cost_usd, 0);
  EXPECT_EQ(r.model, "judge-model");
}

TEST_F(JudgeTest, AnUpstreamErrorInOneOrderIsAnError) {
  fake_.pushFault(sytest::Fault::error(500, "the judge model exploded"));
  quality::Judge judge(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kError);
  EXPECT_NE(r.detail.find("the judge model exploded"), std::string::npos) << r.detail;
  EXPECT_NEAR(r.cost_usd, kCallCost, 1e-12) << "the order that answered is still paid for";
}

TEST_F(JudgeTest, TheRouteThatAnsweredNamesTheModelAndPricesTheCalls) {
  routers::TimerThread timer;
  routers::ChainTarget target;
  target.provider = provider_.get();
  target.upstream_model = "judge-upstream";
  target.label = "openai/judge-upstream";
  target.retry.max_attempts = 1;
  routers::FallbackChain chain("judge", {target}, timer, nullptr);
  config_.model = "judge";
  quality::Judge judge(chain, config_, &prices_, clock());
  JudgeResult r = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kOk) << r.detail;
  EXPECT_EQ(r.model, "openai/judge-upstream");
  // Priced as judge-upstream (2 and 4 USD per million), twice the bare model's price.
  EXPECT_NEAR(r.cost_usd, 2 * 2 * kCallCost, 1e-12);
  EXPECT_EQ(fake_.lastChatBody()["model"], "judge-upstream");
}

TEST_F(JudgeTest, NoPriceTableOrNoPriceCostsNothing) {
  quality::Judge unpriced(*provider_, config_, nullptr, clock());
  EXPECT_DOUBLE_EQ(judgeOnce(unpriced, sampleRecord()).cost_usd, 0);
  config_.model = "judge-unknown";
  quality::Judge unknown(*provider_, config_, &prices_, clock());
  JudgeResult r = judgeOnce(unknown, sampleRecord());
  EXPECT_EQ(r.status, JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(r.cost_usd, 0);
}

TEST_F(JudgeTest, RefusesOnceTheDailyBudgetIsSpentUntilTheNextDay) {
  config_.daily_budget_usd = 1.5 * kCallCost;  // one record (two calls) overshoots it
  quality::Judge judge(*provider_, config_, &prices_, clock());
  EXPECT_EQ(judgeOnce(judge, sampleRecord()).status, JudgeStatus::kOk);
  EXPECT_EQ(fake_.chatRequestCount(), 2);

  JudgeResult refused = judgeOnce(judge, sampleRecord());
  EXPECT_EQ(refused.status, JudgeStatus::kError);
  EXPECT_NE(refused.detail.find("budget"), std::string::npos) << refused.detail;
  EXPECT_DOUBLE_EQ(refused.cost_usd, 0);
  EXPECT_EQ(fake_.chatRequestCount(), 2) << "a refusal makes no call";

  now_ms_ += 24LL * 3600 * 1000;
  EXPECT_DOUBLE_EQ(judge.spentTodayUsd(), 0);
  EXPECT_EQ(judgeOnce(judge, sampleRecord()).status, JudgeStatus::kOk);
  EXPECT_EQ(fake_.chatRequestCount(), 4);
}

TEST_F(JudgeTest, ARedactedRecordIsNotSent) {
  quality::Judge judge(*provider_, config_, &prices_, clock());
  quality::QualityRecord r;
  r.redacted = true;
  JudgeResult result = judgeOnce(judge, r);
  EXPECT_EQ(result.status, JudgeStatus::kError);
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(JudgeTest, CallsFinishAfterTheJudgeIsGone) {
  fake_.pushFault(sytest::Fault::delay(200ms));
  fake_.pushFault(sytest::Fault::delay(200ms));
  Outcome outcome;
  {
    quality::Judge judge(*provider_, config_, &prices_, clock());
    judge.judge(sampleRecord(), outcome.callback());
  }
  ASSERT_TRUE(outcome.wait());
  EXPECT_EQ(outcome.result().status, JudgeStatus::kOk) << outcome.result().detail;
  EXPECT_NEAR(outcome.result().cost_usd, 2 * kCallCost, 1e-12);
}

TEST_F(JudgeTest, ConcurrentJudgementsEachGetTheirOwnResult) {
  quality::Judge judge(*provider_, config_, &prices_, clock());
  constexpr int kRecords = 8;
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int i = 0; i < kRecords; ++i) {
    outcomes.push_back(std::make_unique<Outcome>());
    judge.judge(sampleRecord(), outcomes.back()->callback());
  }
  for (auto& o : outcomes) {
    ASSERT_TRUE(o->wait());
    EXPECT_EQ(o->result().status, JudgeStatus::kOk) << o->result().detail;
  }
  std::this_thread::sleep_for(100ms);
  for (auto& o : outcomes) EXPECT_EQ(o->calls(), 1);
  EXPECT_EQ(fake_.chatRequestCount(), 2 * kRecords);
  EXPECT_NEAR(judge.spentTodayUsd(), 2 * kRecords * kCallCost, 1e-12);
}

}  // namespace
