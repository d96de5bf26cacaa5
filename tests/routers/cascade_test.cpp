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
      sink->onFinish(std::move(r));
    });
    return call;
  }

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
  std::atomic<int> emitted_{0}, cancelled_{0};
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

}  // namespace
