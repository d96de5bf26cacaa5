// The cascade (routers/cascade.h): a scripted local model whose per-token confidence the test
// chooses, and the real CloudProvider against the fake OpenAI server for the cloud side.
#include "routers/cascade.h"
#include "routers/fallback.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/routers/provider_test_support.h"

namespace {

using namespace std::chrono_literals;
using sytest::RecordingSink;

// A local "model" that says `words`, one token each, with the given logprob per token.
class ScriptedLocal : public routers::Provider {
 public:
  ScriptedLocal(std::vector<std::string> words, double logprob, bool fail = false)
      : words_(std::move(words)), logprob_(logprob), fail_(fail) {}
  ~ScriptedLocal() override {
    for (auto& t : threads_) t.join();
  }
  const std::string& name() const override { return name_; }

  std::shared_ptr<routers::ProviderCall> chat(const api::ChatRequest& request,
                                              std::shared_ptr<routers::ChatSink> sink,
                                              routers::Deadline) override {
    auto call = std::make_shared<Call>();
    threads_.emplace_back([this, call, sink, stream = request.stream] {
      routers::RouteInfo route;
      route.provider = "gemma";
      route.model = "local";
      route.label = "gemma/local";
      sink->onRoute(route);
      std::string text;
      for (size_t i = 0; i < words_.size(); ++i) {
        std::this_thread::sleep_for(2ms);
        while (static_cast<int>(i) == hold_at_ && !released_ && !call->cancelled) {
          holding_ = true;
          std::this_thread::sleep_for(1ms);
        }
        if (call->cancelled) {
          ++cancelled_;
          sink->onFinish(api::Status(api::ErrorCode::kCancelled, "cancelled"));
          return;
        }
        if (fail_ && i == 2) {
          sink->onFinish(api::Status(api::ErrorCode::kUnavailable, "engine queue full"));
          return;
        }
        routers::TokenStats stats;  // `logprob_` as the distribution's top-1
        stats.logprob = stats.top1_logprob = logprob_;
        stats.entropy = 0.1;
        sink->onTokenStats(stats);
        std::string piece = (i ? " " : "") + words_[i];
        text += piece;
        ++emitted_;
        if (stream) {
          api::ChatChunk c;
          c.id = "local-1";
          auto& ch = c.choices.emplace_back();
          if (i == 0) ch.delta.role = api::Role::kAssistant;
          ch.delta.content = piece;
          sink->onChunk(std::move(c));
        }
      }
      api::ChatResponse r;
      r.id = "local-1";
      if (!stream) {
        api::Choice ch;
        ch.message.role = api::Role::kAssistant;
        ch.message.content = api::Content::ofText(text);
        ch.finish_reason = "stop";
        r.choices.push_back(ch);
      }
      r.usage = api::Usage{4, static_cast<int64_t>(words_.size()), 4 + static_cast<int64_t>(words_.size()), 0, 0, 0};
      sink->onEngineTime(0.25);
      ++finished_;
      sink->onFinish(std::move(r));
    });
    return call;
  }

  // Stops before the token `i` until release() (or a cancel): a draft that outlives the cloud.
  void holdAt(int i) { hold_at_ = i; }
  void release() { released_ = true; }
  bool holding() const { return holding_.load(); }
  int finished() const { return finished_.load(); }
  int emitted() const { return emitted_.load(); }
  int cancelled() const { return cancelled_.load(); }

 private:
  struct Call : routers::ProviderCall {
    void cancel() override { cancelled = true; }
    std::atomic<bool> cancelled{false};
  };
  std::string name_ = "gemma";
  std::vector<std::string> words_;
  double logprob_;
  bool fail_;
  std::vector<std::thread> threads_;
  std::atomic<int> emitted_{0}, cancelled_{0}, finished_{0};
  std::atomic<int> hold_at_{-1};
  std::atomic<bool> released_{false}, holding_{false};
};

// A cloud side the test drives by hand: its first chunk, its end, and whether it was cancelled.
struct ManualCloud {
  struct Call : routers::ProviderCall {
    void cancel() override { cancelled = true; }
    std::atomic<bool> cancelled{false};
  };
  std::mutex mu;
  std::shared_ptr<routers::ChatSink> sink;
  std::shared_ptr<Call> call;
  std::shared_ptr<routers::ChatSink> waitSink() {
    for (int i = 0; i < 5000; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (sink) return sink;
      }
      std::this_thread::sleep_for(1ms);
    }
    return nullptr;
  }
  void chunk(const std::string& text) {
    api::ChatChunk c;
    c.id = "cloud-1";
    c.choices.emplace_back().delta.content = text;
    sink->onChunk(std::move(c));
  }
};

std::vector<std::string> words(int n) {
  std::vector<std::string> w;
  for (int i = 0; i < n; ++i) w.push_back("w" + std::to_string(i));
  return w;
}

class CascadeTest : public ::testing::Test {
 protected:
  CascadeTest() {
    routers::CloudProviderConfig c;
    c.name = "openai";
    cloud_ = std::make_unique<routers::CloudProvider>(
        c, sytest::makeWire(sytest::Api::kOpenAI, fake_.baseUrl()), http_);
    // As in the gateway, the cloud side is a fallback chain (it reports its route).
    routers::ChainTarget t;
    t.provider = cloud_.get();
    t.upstream_model = "gpt-4o-mini";
    t.label = "openai/gpt-4o-mini";
    t.retry.max_attempts = 1;
    chain_ = std::make_unique<routers::FallbackChain>("gpt", std::vector<routers::ChainTarget>{t},
                                                      timer_, nullptr);
  }

  routers::CascadeOptions options(bool allow_escalation = true) {
    routers::CascadeOptions o;
    o.hold_tokens = 4;
    o.confidence.min_tokens = 4;
    o.confidence.escalate_below = 0.5;
    o.complexity = 0.4;
    o.decide = [](std::optional<double> conf, bool final, std::string* reason) {
      if (!conf) return routers::Verdict::kUndecided;
      if (*conf < 0.5) {
        *reason = "confidence below 0.5";
        return routers::Verdict::kEscalate;
      }
      return final ? routers::Verdict::kKeepLocal : routers::Verdict::kUndecided;
    };
    o.escalate = [this, allow_escalation](const api::ChatRequest& r,
                                          std::shared_ptr<routers::ChatSink> sink,
                                          const std::string& reason_code)
        -> api::StatusOr<std::shared_ptr<routers::ProviderCall>> {
      {
        std::lock_guard<std::mutex> lock(mu_);
        escalations_.push_back(reason_code);
      }
      if (!allow_escalation) return api::Status(api::ErrorCode::kQuotaExceeded, "budget exhausted");
      api::ChatRequest cloud = r;
      cloud.model = "gpt-4o-mini";
      return chain_->chat(cloud, std::move(sink), routers::Clock::now() + 10s);
    };
    o.on_pair = [this](const routers::CascadePair& p) {
      std::lock_guard<std::mutex> lock(mu_);
      pairs_.push_back(p);
    };
    return o;
  }

  std::shared_ptr<RecordingSink> run(routers::Provider& local, bool stream,
                                     routers::CascadeOptions o) {
    auto sink = std::make_shared<RecordingSink>();
    routers::startCascade(local, sytest::userRequest("the question", stream), sink,
                          routers::Clock::now() + 20s, std::move(o));
    EXPECT_TRUE(sink->wait());
    EXPECT_EQ(sink->routes(), 1);
    return sink;
  }

  std::vector<routers::CascadePair> pairs() {
    std::lock_guard<std::mutex> lock(mu_);
    return pairs_;
  }

  routers::HttpClient http_;
  routers::TimerThread timer_;
  sytest::FakeOpenAI fake_;
  std::unique_ptr<routers::CloudProvider> cloud_;
  std::unique_ptr<routers::FallbackChain> chain_;
  std::mutex mu_;
  std::vector<routers::CascadePair> pairs_;
  std::vector<std::string> escalations_;  // reason codes, one per escalate() call
};

TEST_F(CascadeTest, ConfidentLocalAnswerStands) {
  ScriptedLocal local(words(6), -0.01);
  auto sink = run(local, false, options());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->result()->choices[0].message.content.text, "w0 w1 w2 w3 w4 w5");
  EXPECT_EQ(sink->route().label, "gemma/local");
  ASSERT_TRUE(sink->route().confidence);
  EXPECT_GT(*sink->route().confidence, 0.9);
  EXPECT_DOUBLE_EQ(*sink->route().complexity, 0.4);
  EXPECT_EQ(sink->route().escalation, "");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  EXPECT_TRUE(pairs().empty());
}

TEST_F(CascadeTest, UnconfidentAnswerIsReplacedByTheCloudsAndBothAreRecorded) {
  ScriptedLocal local(words(3), -3.0);  // fewer tokens than min_tokens: decided at the end
  auto sink = run(local, false, options());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->result()->choices[0].message.content.text, "echo: the question");
  EXPECT_EQ(sink->route().label, "openai/gpt-4o-mini");
  EXPECT_EQ(sink->route().escalation, "confidence below 0.5");
  EXPECT_LT(*sink->route().confidence, 0.5);
  ASSERT_EQ(pairs().size(), 1u);
  EXPECT_EQ(pairs()[0].local_text, "w0 w1 w2");
  EXPECT_TRUE(pairs()[0].local_complete);
  EXPECT_EQ(pairs()[0].cloud_text, "echo: the question");
  EXPECT_EQ(pairs()[0].local_tokens, 3);
}

TEST_F(CascadeTest, EarlyEscalationCutsTheLocalAnswerShort) {
  ScriptedLocal local(words(200), -3.0);
  auto sink = run(local, false, options());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->route().label, "openai/gpt-4o-mini");
  EXPECT_EQ(sink->route().escalation.rfind("early: ", 0), 0u) << sink->route().escalation;
  ASSERT_TRUE(sytest::waitUntil([&] { return local.cancelled() == 1; }, 5000ms));
  EXPECT_LT(local.emitted(), 50);
  ASSERT_EQ(pairs().size(), 1u);
  EXPECT_FALSE(pairs()[0].local_complete);
}

TEST_F(CascadeTest, StreamHoldsTokensThenSwitchesToTheCloudStream) {
  ScriptedLocal local(words(40), -3.0);
  auto sink = run(local, true, options());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->text(), "echo: the question") << "the client sees the cloud's stream only";
  auto chunks = sink->chunks();
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].choices[0].delta.role, api::Role::kAssistant);
  EXPECT_EQ(sink->route().label, "openai/gpt-4o-mini");
  ASSERT_TRUE(sytest::waitUntil([&] { return local.cancelled() == 1; }, 5000ms));
  ASSERT_EQ(pairs().size(), 1u);
  // The draft went on as a hedge until the cloud's first byte: at least the held tokens.
  EXPECT_EQ(pairs()[0].local_text.rfind("w0 w1 w2 w3", 0), 0u) << pairs()[0].local_text;
  EXPECT_FALSE(pairs()[0].local_complete);
}

TEST_F(CascadeTest, CloudFailingAfterAnEarlyEscalationLeavesTheLocalAnswer) {
  for (bool stream : {false, true}) {
    ScriptedLocal local(words(30), -3.0);
    fake_.pushFault(sytest::Fault::error(500, "the cloud is down"));
    auto sink = run(local, stream, options());
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    std::string want;
    for (int i = 0; i < 30; ++i) want += (i ? " w" : "w") + std::to_string(i);
    if (stream) {
      EXPECT_EQ(sink->text(), want);
    } else {
      EXPECT_EQ(sink->result()->choices[0].message.content.text, want);
    }
    EXPECT_EQ(sink->route().label, "gemma/local");
    EXPECT_NE(sink->route().escalation.find("the cloud is down"), std::string::npos)
        << sink->route().escalation;
    EXPECT_EQ(local.cancelled(), 0) << "the hedge ran to its end";
  }
}

TEST_F(CascadeTest, ConfidentStreamFlushesTheHeldTokensAndGoesOn) {
  ScriptedLocal local(words(10), -0.01);
  auto sink = run(local, true, options());
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->text(), "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9");
  EXPECT_EQ(sink->route().label, "gemma/local");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  EXPECT_EQ(sink->chunksAfterFinish(), 0);
}

TEST_F(CascadeTest, RefusedEscalationKeepsTheLocalAnswerAndSaysWhy) {
  ScriptedLocal local(words(6), -3.0);
  auto sink = run(local, true, options(/*allow_escalation=*/false));
  ASSERT_TRUE(sink->result().ok());
  EXPECT_EQ(sink->text(), "w0 w1 w2 w3 w4 w5");
  EXPECT_EQ(sink->route().label, "gemma/local");
  EXPECT_NE(sink->route().escalation.find("budget exhausted"), std::string::npos)
      << sink->route().escalation;
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

// A refused escalation is final: 40 unconfident tokens ask the cloud once, not per token.
TEST_F(CascadeTest, RefusedEscalationIsAskedOnceForTheWholeAnswer) {
  for (bool stream : {false, true}) {
    ScriptedLocal local(words(40), -3.0);
    auto sink = run(local, stream, options(/*allow_escalation=*/false));
    ASSERT_TRUE(sink->result().ok()) << stream;
    EXPECT_EQ(local.emitted(), 40) << stream;
    EXPECT_EQ(sink->route().label, "gemma/local");
    EXPECT_NE(sink->route().escalation.find("budget exhausted"), std::string::npos)
        << sink->route().escalation;
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(escalations_, std::vector<std::string>{"confidence"}) << stream;
    escalations_.clear();
  }
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

// The cloud call is started where `post` says, never on the local engine's thread, and the
// reason code says why.
TEST_F(CascadeTest, EscalationRunsOnThePostedThreadWithItsReason) {
  for (bool fail : {false, true}) {
    routers::TimerThread elsewhere;
    std::atomic<int> posted{0};
    auto o = options();
    o.post = [&](std::function<void()> fn) {
      ++posted;
      elsewhere.after(std::chrono::nanoseconds(0), std::move(fn));
    };
    std::thread::id escalated_on;
    auto inner = o.escalate;
    o.escalate = [&, inner](const api::ChatRequest& r, std::shared_ptr<routers::ChatSink> sink,
                            const std::string& code) {
      escalated_on = std::this_thread::get_id();
      return inner(r, std::move(sink), code);
    };
    ScriptedLocal local(words(10), fail ? -0.01 : -3.0, fail);
    auto sink = run(local, true, std::move(o));
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    EXPECT_EQ(sink->text(), "echo: the question");
    EXPECT_EQ(posted.load(), 1);
    EXPECT_NE(escalated_on, std::thread::id());
    EXPECT_NE(escalated_on, std::this_thread::get_id());
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(escalations_,
              std::vector<std::string>{fail ? "local_failure" : "confidence"});
    escalations_.clear();
  }
}

TEST_F(CascadeTest, FailedEscalationKeepsTheFinishedLocalAnswer) {
  ScriptedLocal local(words(3), -3.0);
  fake_.pushFault(sytest::Fault::error(401, "Incorrect API key provided"));
  auto sink = run(local, false, options());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->result()->choices[0].message.content.text, "w0 w1 w2");
  EXPECT_EQ(sink->route().label, "gemma/local");
  // The upstream's own words about credentials stay in the log, never in a client header.
  EXPECT_NE(sink->route().escalation.find("credentials"), std::string::npos)
      << sink->route().escalation;
  EXPECT_EQ(sink->route().escalation.find("Incorrect API key"), std::string::npos);
  EXPECT_TRUE(pairs().empty());
}

TEST_F(CascadeTest, LocalFailureEscalates) {
  ScriptedLocal local(words(10), -0.01, /*fail=*/true);
  auto sink = run(local, true, options());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->text(), "echo: the question");
  EXPECT_NE(sink->route().escalation.find("local engine failed"), std::string::npos);
}

TEST_F(CascadeTest, CancelStopsBothSides) {
  ScriptedLocal local(words(400), -0.01);
  auto sink = std::make_shared<RecordingSink>();
  auto call = routers::startCascade(local, sytest::userRequest("q", true), sink,
                                    routers::Clock::now() + 20s, options());
  std::this_thread::sleep_for(30ms);
  call->cancel();
  ASSERT_TRUE(sink->wait(3000ms));
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kCancelled);
  EXPECT_EQ(sink->finishes(), 1);
}

// routing.draft: complete. The cloud answers while the draft is held: the client's answer
// comes first, the pair only once the draft has run to its end, whole and complete.
TEST_F(CascadeTest, CompleteDraftFinishesInTheBackgroundAfterTheClientsAnswer) {
  for (bool stream : {false, true}) {
    pairs_.clear();
    ScriptedLocal local(words(30), -3.0);
    local.holdAt(12);
    auto o = options();
    std::atomic<int> asked{0};
    std::vector<double> background;
    o.complete_draft = [&] { return ++asked, true; };
    o.on_background_draft = [&](double s) {
      std::lock_guard<std::mutex> lock(mu_);
      background.push_back(s);
    };
    std::vector<double> draft_compute;
    o.on_draft_compute = [&](double s) { draft_compute.push_back(s); };
    auto sink = run(local, stream, std::move(o));  // returns once the client has its answer
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    EXPECT_EQ(sink->route().label, "openai/gpt-4o-mini");
    if (stream) EXPECT_EQ(sink->text(), "echo: the question") << "no draft token reaches the client";
    ASSERT_TRUE(sytest::waitUntil([&] { return local.holding(); }, 5000ms));
    EXPECT_EQ(local.finished(), 0) << "the answer did not wait for the draft";
    EXPECT_TRUE(pairs().empty()) << "the pair waits for the whole draft";
    EXPECT_EQ(asked.load(), 1);
    local.release();
    ASSERT_TRUE(sytest::waitUntil([&] { return pairs().size() == 1; }, 5000ms));
    const routers::CascadePair p = pairs()[0];
    std::string want;
    for (int i = 0; i < 30; ++i) want += (i ? " w" : "w") + std::to_string(i);
    EXPECT_EQ(p.local_text, want);
    EXPECT_TRUE(p.local_complete);
    EXPECT_TRUE(p.local_background);
    EXPECT_DOUBLE_EQ(p.local_compute_s, 0.25);
    ASSERT_TRUE(p.local_usage);
    EXPECT_EQ(p.local_usage->completion_tokens, 30);
    EXPECT_EQ(p.cloud_text, "echo: the question");
    EXPECT_EQ(local.cancelled(), 0);
    EXPECT_EQ(sink->finishes(), 1);
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(background, std::vector<double>{0.25});
    EXPECT_TRUE(draft_compute.empty()) << "the request was settled before the draft ended";
  }
}

// Over the team's cap (complete_draft says no), the draft is cut at the cloud's first byte.
TEST_F(CascadeTest, DraftOverTheCapIsCut) {
  ScriptedLocal local(words(30), -3.0);
  local.holdAt(12);
  auto o = options();
  o.complete_draft = [] { return false; };
  bool background = false;
  o.on_background_draft = [&](double) { background = true; };
  auto sink = run(local, true, std::move(o));
  ASSERT_TRUE(sink->result().ok());
  ASSERT_TRUE(sytest::waitUntil([&] { return local.cancelled() == 1; }, 5000ms));
  ASSERT_EQ(pairs().size(), 1u);
  EXPECT_FALSE(pairs()[0].local_complete);
  EXPECT_FALSE(pairs()[0].local_background);
  EXPECT_FALSE(background);
}

// The client goes away while the cloud streams: the cloud call and the background draft are
// both cancelled, and the pair records the draft as incomplete.
TEST_F(CascadeTest, ClientCancelCancelsTheBackgroundDraft) {
  ScriptedLocal local(words(30), -3.0);
  local.holdAt(12);
  ManualCloud cloud;
  auto o = options();
  o.complete_draft = [] { return true; };
  std::atomic<int> background{0};
  o.on_background_draft = [&](double) { ++background; };
  o.escalate = [&](const api::ChatRequest&, std::shared_ptr<routers::ChatSink> sink,
                   const std::string&) -> api::StatusOr<std::shared_ptr<routers::ProviderCall>> {
    std::lock_guard<std::mutex> lock(cloud.mu);
    cloud.sink = std::move(sink);
    cloud.call = std::make_shared<ManualCloud::Call>();
    return std::static_pointer_cast<routers::ProviderCall>(cloud.call);
  };
  auto sink = std::make_shared<RecordingSink>();
  auto call = routers::startCascade(local, sytest::userRequest("q", true), sink,
                                    routers::Clock::now() + 20s, std::move(o));
  auto cloud_sink = cloud.waitSink();
  ASSERT_NE(cloud_sink, nullptr);
  routers::RouteInfo route;
  route.label = "openai/gpt-4o-mini";
  cloud_sink->onRoute(route);
  cloud.chunk("first");  // the cloud answers: the draft goes on in the background
  ASSERT_TRUE(sytest::waitUntil([&] { return local.holding(); }, 5000ms));
  call->cancel();
  EXPECT_TRUE(cloud.call->cancelled);
  cloud_sink->onFinish(api::Status(api::ErrorCode::kCancelled, "cancelled"));
  ASSERT_TRUE(sink->wait(3000ms));
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kCancelled);
  ASSERT_TRUE(sytest::waitUntil([&] { return local.cancelled() == 1; }, 5000ms));
  ASSERT_TRUE(sytest::waitUntil([&] { return background.load() == 1; }, 5000ms));
  EXPECT_EQ(local.finished(), 0);
  EXPECT_TRUE(pairs().empty()) << "a failed cloud answer has no pair";
}

TEST(DraftTimeCapTest, CountsTheLastHourPerTeam) {
  routers::DraftTimeCap cap;
  const auto t0 = routers::Clock::time_point(std::chrono::hours(1000));
  EXPECT_TRUE(cap.allows("a", 60, t0));
  EXPECT_FALSE(cap.allows("a", 0, t0)) << "a cap of 0 cuts every draft";
  cap.spend("a", 40, t0);
  cap.spend("a", 25, t0 + std::chrono::minutes(30));
  EXPECT_DOUBLE_EQ(cap.spentLastHour("a", t0 + std::chrono::minutes(30)), 65);
  EXPECT_FALSE(cap.allows("a", 60, t0 + std::chrono::minutes(30)));
  EXPECT_TRUE(cap.allows("b", 60, t0 + std::chrono::minutes(30))) << "per team";
  // An hour after the first draft, only the second counts.
  EXPECT_DOUBLE_EQ(cap.spentLastHour("a", t0 + std::chrono::minutes(61)), 25);
  EXPECT_TRUE(cap.allows("a", 60, t0 + std::chrono::minutes(61)));
  EXPECT_DOUBLE_EQ(cap.spentLastHour("a", t0 + std::chrono::hours(3)), 0);
  cap.spend("a", 5, t0 + std::chrono::hours(3));  // reuses the bucket of t0
  EXPECT_DOUBLE_EQ(cap.spentLastHour("a", t0 + std::chrono::hours(3)), 5);
}

}  // namespace
