// Retries, circuit breakers and fallback chains (routers/fallback.h), driven through real
// CloudProviders against the fake cloud APIs on loopback.
#include "routers/fallback.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "routers/timer.h"
#include "tests/routers/provider_test_support.h"

namespace {

using namespace std::chrono_literals;
using sytest::Api;
using sytest::Fault;
using sytest::RecordingSink;
using Clock = std::chrono::steady_clock;

// ---- pure rules --------------------------------------------------------------------------

TEST(Retry, WhatIsRetriedAndWhatFallsBack) {
  auto upstream = [](int http) {
    return api::Status(http >= 500 ? api::ErrorCode::kUpstreamError
                                   : api::ErrorCode::kInvalidRequest,
                       "x")
        .withUpstreamHttpStatus(http);
  };
  for (int http : {408, 409, 429, 500, 502, 503, 529}) {
    EXPECT_TRUE(routers::isRetryable(upstream(http))) << http;
    EXPECT_TRUE(routers::isFallbackable(upstream(http))) << http;
  }
  for (int http : {401, 403, 404}) {
    EXPECT_FALSE(routers::isRetryable(upstream(http))) << http;
    EXPECT_TRUE(routers::isFallbackable(upstream(http))) << http;
  }
  for (int http : {400, 413, 422}) {
    EXPECT_FALSE(routers::isRetryable(upstream(http))) << http;
    EXPECT_FALSE(routers::isFallbackable(upstream(http))) << http;
  }
  EXPECT_TRUE(routers::isRetryable(api::Status(api::ErrorCode::kUpstreamError, "refused")));
  EXPECT_TRUE(routers::isRetryable(api::Status(api::ErrorCode::kUpstreamTimeout, "slow")));
  EXPECT_TRUE(routers::isRetryable(api::Status(api::ErrorCode::kUnavailable, "queue full")));
  EXPECT_FALSE(routers::isRetryable(api::Status(api::ErrorCode::kInvalidRequest, "n")));
  EXPECT_FALSE(routers::isFallbackable(api::Status(api::ErrorCode::kCancelled, "gone")));
}

TEST(Retry, BackoffDoublesIsCappedAndJittered) {
  routers::RetryPolicy p;
  p.initial_backoff_s = 0.5;
  p.max_backoff_s = 3;
  // Equal jitter: between half and all of the doubled base.
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 2, 0.0), 0.25);
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 2, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 3, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 4, 1.0), 2.0);
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 5, 1.0), 3.0);  // capped
  EXPECT_DOUBLE_EQ(routers::backoffSeconds(p, 9, 0.5), 2.25);
}

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresAndProbesWhenHalfOpen) {
  routers::CircuitBreaker b({/*failure_threshold=*/3, /*open_s=*/10, /*half_open_probes=*/1});
  auto t0 = Clock::now();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(b.allow(t0));
    b.onFailure(t0);
  }
  ASSERT_TRUE(b.allow(t0));
  b.onSuccess();  // a success resets the count
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.allow(t0));
    b.onFailure(t0);
  }
  EXPECT_EQ(b.state(t0), routers::CircuitBreaker::State::kOpen);
  EXPECT_FALSE(b.allow(t0 + 9s));
  EXPECT_NEAR(b.secondsUntilProbe(t0 + 4s), 6, 1e-6);
  // Half-open: one probe at a time.
  EXPECT_TRUE(b.allow(t0 + 10s));
  EXPECT_EQ(b.state(t0 + 10s), routers::CircuitBreaker::State::kHalfOpen);
  EXPECT_FALSE(b.allow(t0 + 10s));
  b.onFailure(t0 + 11s);  // the probe failed: open again, for a full period
  EXPECT_FALSE(b.allow(t0 + 20s));
  EXPECT_TRUE(b.allow(t0 + 21s));
  b.onAbandoned();  // a cancelled probe frees its slot
  EXPECT_TRUE(b.allow(t0 + 21s));
  b.onSuccess();
  EXPECT_EQ(b.state(t0 + 21s), routers::CircuitBreaker::State::kClosed);
  EXPECT_TRUE(b.allow(t0 + 21s));
}

TEST(CircuitBreaker, ThresholdZeroNeverOpens) {
  routers::CircuitBreaker b({0, 10, 1});
  for (int i = 0; i < 100; ++i) b.onFailure();
  EXPECT_TRUE(b.allow());
}

TEST(CircuitBreaker, OnlyTheEndpointsOwnFailuresCount) {
  using routers::CircuitBreaker;
  EXPECT_TRUE(CircuitBreaker::countsAsFailure(
      api::Status(api::ErrorCode::kUpstreamError, "x").withUpstreamHttpStatus(503)));
  EXPECT_TRUE(CircuitBreaker::countsAsFailure(api::Status(api::ErrorCode::kUpstreamTimeout, "t")));
  EXPECT_TRUE(CircuitBreaker::countsAsFailure(api::Status(api::ErrorCode::kUpstreamError, "reset")));
  EXPECT_FALSE(CircuitBreaker::countsAsFailure(
      api::Status(api::ErrorCode::kRateLimited, "x").withUpstreamHttpStatus(429)));
  EXPECT_FALSE(CircuitBreaker::countsAsFailure(
      api::Status(api::ErrorCode::kInvalidRequest, "x").withUpstreamHttpStatus(400)));
  EXPECT_FALSE(CircuitBreaker::countsAsFailure(api::Status(api::ErrorCode::kCancelled, "c")));
}

TEST(Timer, RunsInOrderAndCancels) {
  routers::TimerThread timer;
  std::mutex mu;
  std::vector<int> order;
  auto push = [&](int v) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(v);
  };
  timer.after(60ms, [&] { push(3); });
  timer.after(20ms, [&] { push(1); });
  auto id = timer.after(40ms, [&] { push(2); });
  timer.after(40ms, [&] { push(4); });
  EXPECT_TRUE(timer.cancel(id));
  EXPECT_FALSE(timer.cancel(id));
  std::this_thread::sleep_for(150ms);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order, (std::vector<int>{1, 4, 3}));
}

TEST(Timer, ShutdownDropsPendingAndLaterCallbacks) {
  routers::TimerThread timer;
  std::atomic<int> ran{0};
  timer.after(50ms, [&] { ++ran; });
  timer.shutdown();
  EXPECT_EQ(timer.after(0ms, [&] { ++ran; }), 0u);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(ran.load(), 0);
}

// ---- chains over real providers ------------------------------------------------------------

class Recorder : public routers::ChainObserver {
 public:
  void onAttemptFailed(const routers::ChainTarget& t, const api::Status&) override {
    failed.fetch_add(1);
  }
  void onRetry(const routers::ChainTarget&, double delay) override { retries.fetch_add(1); }
  void onFallback(const routers::ChainTarget&, const routers::ChainTarget&) override {
    fallbacks.fetch_add(1);
  }
  void onCircuitOpen(const routers::ChainTarget&) override { circuit_open.fetch_add(1); }
  std::atomic<int> failed{0}, retries{0}, fallbacks{0}, circuit_open{0};
};

// One cloud endpoint: a fake server, its provider and its breaker.
struct Endpoint {
  Endpoint(Api api, const std::string& name, routers::HttpClient& http,
           routers::CircuitBreakerConfig breaker_config = {0, 30, 1})
      : fake(sytest::makeFake(api)), breaker(breaker_config) {
    routers::CloudProviderConfig c;
    c.name = name;
    c.timeouts.first_byte = 1000ms;
    c.timeouts.idle = 1000ms;
    c.timeouts.total = 3000ms;
    provider = std::make_unique<routers::CloudProvider>(c, sytest::makeWire(api, fake->baseUrl()),
                                                        http);
  }
  routers::ChainTarget target(int max_attempts = 3, double backoff_s = 0.02) {
    routers::ChainTarget t;
    t.provider = provider.get();
    t.upstream_model = "m-" + provider->name();
    t.label = provider->name() + "/" + t.upstream_model;
    t.retry.max_attempts = max_attempts;
    t.retry.initial_backoff_s = backoff_s;
    t.retry.max_backoff_s = 1;
    t.retry.max_retry_after_s = 2;
    t.breaker = &breaker;
    return t;
  }
  std::unique_ptr<sytest::FakeCloud> fake;
  routers::CircuitBreaker breaker;
  std::unique_ptr<routers::CloudProvider> provider;
};

class ChainTest : public ::testing::Test {
 protected:
  std::shared_ptr<RecordingSink> run(routers::FallbackChain& chain, api::ChatRequest request,
                                     std::chrono::milliseconds budget = 10000ms) {
    auto sink = std::make_shared<RecordingSink>();
    chain.chat(request, sink, Clock::now() + budget);
    EXPECT_TRUE(sink->wait()) << "the chain never finished";
    EXPECT_EQ(sink->routes(), 1) << "onRoute exactly once";
    return sink;
  }

  routers::HttpClient http_;
  routers::TimerThread timer_;
  Recorder observed_;
};

TEST_F(ChainTest, RetriesServerErrorsThenSucceeds) {
  Endpoint a(Api::kOpenAI, "a", http_);
  a.fake->pushFault(Fault::error(500, "boom"));
  a.fake->pushFault(Fault::error(503, "busy"));
  routers::FallbackChain chain("m", {a.target()}, timer_, &observed_);
  auto sink = run(chain, sytest::userRequest("retry me", false));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->result()->choices[0].message.content.text, "echo: retry me");
  EXPECT_EQ(a.fake->chatRequestCount(), 3);
  EXPECT_EQ(sink->route().attempts, 3);
  EXPECT_EQ(sink->route().label, "a/m-a");
  EXPECT_TRUE(sink->route().failed.empty());
  EXPECT_EQ(observed_.retries.load(), 2);
  EXPECT_EQ(a.fake->lastChatBody()["model"], "m-a") << "the target's upstream model is sent";
}

TEST_F(ChainTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  Endpoint a(Api::kAnthropic, "a", http_);
  for (int i = 0; i < 3; ++i) a.fake->pushFault(Fault::error(529, "Overloaded " + std::to_string(i)));
  routers::FallbackChain chain("m", {a.target(3)}, timer_, &observed_);
  auto sink = run(chain, sytest::userRequest("hi", true));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_NE(sink->result().status().message().find("Overloaded 2"), std::string::npos)
      << sink->result().status().message();
  EXPECT_EQ(a.fake->chatRequestCount(), 3);
  EXPECT_EQ(sink->route().attempts, 3);
}

TEST_F(ChainTest, HonoursRetryAfter) {
  Endpoint a(Api::kGemini, "a", http_);
  a.fake->pushFault(Fault::rateLimited(1));
  routers::FallbackChain chain("m", {a.target(2, 0.01)}, timer_, &observed_);
  auto start = Clock::now();
  auto sink = run(chain, sytest::userRequest("patience", false));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_GE(sink->finishTime() - start, 1000ms) << "Retry-After: 1 was not honoured";
  EXPECT_EQ(a.fake->chatRequestCount(), 2);
}

TEST_F(ChainTest, RetryAfterBeyondTheLimitOrTheDeadlineIsNotWaitedFor) {
  Endpoint a(Api::kOpenAI, "a", http_);
  a.fake->pushFault(Fault::rateLimited(60));  // over max_retry_after_s (2)
  routers::FallbackChain chain("m", {a.target(3)}, timer_, &observed_);
  auto start = Clock::now();
  auto sink = run(chain, sytest::userRequest("hi", false));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kRateLimited);
  EXPECT_DOUBLE_EQ(*sink->result().status().retryAfterSeconds(), 60);
  EXPECT_LT(sink->finishTime() - start, 900ms);
  EXPECT_EQ(a.fake->chatRequestCount(), 1);

  a.fake->pushFault(Fault::rateLimited(1));  // allowed, but the deadline is sooner
  auto sink2 = run(chain, sytest::userRequest("hi", false), 500ms);
  ASSERT_FALSE(sink2->result().ok());
  EXPECT_EQ(sink2->result().status().code(), api::ErrorCode::kRateLimited);
  EXPECT_EQ(a.fake->chatRequestCount(), 2);
}

TEST_F(ChainTest, ClientErrorsAreNeitherRetriedNorFallenBackFrom) {
  Endpoint a(Api::kOpenAI, "a", http_);
  Endpoint b(Api::kOpenAI, "b", http_);
  a.fake->pushFault(Fault::error(400, "bad field", "invalid_request_error", "temperature"));
  routers::FallbackChain chain("m", {a.target(), b.target()}, timer_, &observed_);
  auto sink = run(chain, sytest::userRequest("hi", false));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().httpStatusCode(), 400);
  EXPECT_EQ(sink->result().status().param(), "temperature");
  EXPECT_EQ(a.fake->chatRequestCount(), 1);
  EXPECT_EQ(b.fake->chatRequestCount(), 0);
}

TEST_F(ChainTest, NothingIsRetriedOnceTheClientHasChunks) {
  Endpoint a(Api::kAnthropic, "a", http_);
  Endpoint b(Api::kOpenAI, "b", http_);
  a.fake->pushFault(Fault::cutStream(2));
  routers::FallbackChain chain("m", {a.target(), b.target()}, timer_, &observed_);
  auto sink = run(chain, sytest::userRequest("one two three", true));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->text(), "echo: one");
  EXPECT_EQ(a.fake->chatRequestCount(), 1);
  EXPECT_EQ(b.fake->chatRequestCount(), 0);
  EXPECT_EQ(sink->route().label, "a/m-a");
}

TEST_F(ChainTest, FallsBackAcrossApisAndSaysWhoAnswered) {
  Endpoint a(Api::kAnthropic, "claude", http_);
  Endpoint b(Api::kGemini, "gemini", http_);
  Endpoint c(Api::kOpenAI, "openai", http_);
  a.fake->setKeepAlive(false);
  a.fake->pushFault(Fault::reset(0));
  a.fake->pushFault(Fault::reset(0));
  b.fake->pushFault(Fault::error(401, "API key not valid"));
  routers::FallbackChain chain("m", {a.target(2), b.target(), c.target()}, timer_, &observed_);
  auto sink = run(chain, sytest::userRequest("who answers", true));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->text(), "echo: who answers");
  EXPECT_EQ(a.fake->chatRequestCount(), 2);
  EXPECT_EQ(b.fake->chatRequestCount(), 1) << "401 is not retried, but falls back";
  EXPECT_EQ(c.fake->chatRequestCount(), 1);
  routers::RouteInfo route = sink->route();
  EXPECT_EQ(route.label, "openai/m-openai");
  EXPECT_EQ(route.provider, "openai");
  EXPECT_EQ(route.attempts, 4);
  EXPECT_EQ(route.failed, (std::vector<std::string>{"claude/m-claude", "gemini/m-gemini"}));
  EXPECT_EQ(observed_.fallbacks.load(), 2);
}

TEST_F(ChainTest, AFallbackThatCannotExpressTheRequestIsSkipped) {
  Endpoint a(Api::kOpenAI, "a", http_);
  Endpoint b(Api::kAnthropic, "b", http_);  // cannot do logprobs
  a.fake->pushFault(Fault::error(500, "first failure"));
  api::ChatRequest r = sytest::userRequest("hi", false);
  r.logprobs = true;
  routers::FallbackChain chain("m", {a.target(1), b.target()}, timer_, &observed_);
  auto sink = run(chain, r);
  ASSERT_FALSE(sink->result().ok());
  EXPECT_NE(sink->result().status().message().find("first failure"), std::string::npos)
      << "the client hears why the first target failed: " << sink->result().status().message();
  EXPECT_EQ(b.fake->chatRequestCount(), 0);
}

TEST_F(ChainTest, OpenCircuitSkipsTheEndpointUntilAProbeSucceeds) {
  Endpoint a(Api::kOpenAI, "a", http_, {/*failure_threshold=*/2, /*open_s=*/0.3, 1});
  Endpoint b(Api::kOpenAI, "b", http_);
  routers::FallbackChain chain("m", {a.target(1), b.target()}, timer_, &observed_);
  a.fake->pushFault(Fault::error(500, "x"));
  a.fake->pushFault(Fault::error(500, "y"));
  for (int i = 0; i < 2; ++i) {
    auto sink = run(chain, sytest::userRequest("hi", false));
    ASSERT_TRUE(sink->result().ok());
    EXPECT_EQ(sink->route().provider, "b");
  }
  EXPECT_EQ(a.breaker.state(), routers::CircuitBreaker::State::kOpen);
  auto skipped = run(chain, sytest::userRequest("hi", false));
  ASSERT_TRUE(skipped->result().ok());
  EXPECT_EQ(skipped->route().provider, "b");
  EXPECT_EQ(a.fake->chatRequestCount(), 2) << "an open circuit sends nothing";
  EXPECT_EQ(observed_.circuit_open.load(), 1);

  std::this_thread::sleep_for(350ms);  // half-open: the next call is a probe
  auto probe = run(chain, sytest::userRequest("hi", false));
  ASSERT_TRUE(probe->result().ok());
  EXPECT_EQ(probe->route().provider, "a");
  EXPECT_EQ(a.breaker.state(), routers::CircuitBreaker::State::kClosed);
}

TEST_F(ChainTest, OpenCircuitWithoutFallbackIs503WithRetryAfter) {
  Endpoint a(Api::kOpenAI, "a", http_, {1, 30, 1});
  a.fake->pushFault(Fault::error(502, "bad gateway"));
  routers::FallbackChain chain("m", {a.target(1)}, timer_, &observed_);
  run(chain, sytest::userRequest("hi", false));
  auto sink = run(chain, sytest::userRequest("hi", false));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kUnavailable);
  EXPECT_NE(sink->result().status().message().find("circuit breaker is open"), std::string::npos);
  ASSERT_TRUE(sink->result().status().retryAfterSeconds());
  EXPECT_GT(*sink->result().status().retryAfterSeconds(), 25);
  EXPECT_EQ(a.fake->chatRequestCount(), 1);
}

TEST_F(ChainTest, CancelDuringBackoffEndsAtOnce) {
  Endpoint a(Api::kOpenAI, "a", http_);
  a.fake->pushFault(Fault::error(500, "x"));
  routers::FallbackChain chain("m", {a.target(3, /*backoff_s=*/5)}, timer_, &observed_);
  auto sink = std::make_shared<RecordingSink>();
  auto call = chain.chat(sytest::userRequest("hi", false), sink, Clock::now() + 30s);
  ASSERT_TRUE(sytest::waitUntil([&] { return observed_.retries.load() == 1; }, 5000ms));
  auto start = Clock::now();
  call->cancel();
  ASSERT_TRUE(sink->wait(1000ms));
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kCancelled);
  EXPECT_LT(sink->finishTime() - start, 500ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(a.fake->chatRequestCount(), 1);
  EXPECT_EQ(sink->finishes(), 1);
}

TEST_F(ChainTest, CancelDuringACallCancelsIt) {
  Endpoint a(Api::kGemini, "a", http_);
  a.fake->pushFault(Fault::hang());
  routers::FallbackChain chain("m", {a.target()}, timer_, &observed_);
  auto sink = std::make_shared<RecordingSink>();
  auto call = chain.chat(sytest::userRequest("hi", true), sink, Clock::now() + 30s);
  ASSERT_TRUE(a.fake->server().waitForRequests(1, 5000ms));
  call->cancel();
  ASSERT_TRUE(sink->wait(2000ms));
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kCancelled);
  // The fake counts a request in its handler, a moment after the server has recorded it.
  ASSERT_TRUE(sytest::waitUntil([&] { return a.fake->chatRequestCount() >= 1; }, 5000ms));
  std::this_thread::sleep_for(100ms);  // time for a retry, which must not come
  EXPECT_EQ(a.fake->chatRequestCount(), 1) << "a cancelled call is never retried";
}

TEST_F(ChainTest, ManyConcurrentChainsEachFinishOnce) {
  Endpoint a(Api::kOpenAI, "a", http_);
  Endpoint b(Api::kAnthropic, "b", http_);
  for (int i = 0; i < 40; ++i) a.fake->pushFault(Fault::error(500, "x"));
  routers::FallbackChain chain("m", {a.target(2, 0.01), b.target()}, timer_, &observed_);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 40; ++i) {
    auto sink = std::make_shared<RecordingSink>();
    chain.chat(sytest::userRequest("n" + std::to_string(i), i % 2 == 0), sink, Clock::now() + 20s);
    sinks.push_back(sink);
  }
  for (auto& s : sinks) {
    ASSERT_TRUE(s->wait());
    EXPECT_TRUE(s->result().ok()) << s->result().status().message();
    EXPECT_EQ(s->finishes(), 1);
  }
  // Every fault was taken by some attempt on `a`, each request tried `a` at most twice, and
  // only requests whose both tries failed reached `b`.
  int on_a = a.fake->chatRequestCount(), on_b = b.fake->chatRequestCount();
  EXPECT_GE(on_a, 40);
  EXPECT_LE(on_a, 80);
  EXPECT_EQ(on_a - 40 + on_b, 40) << "each request succeeded exactly once";
}

}  // namespace
