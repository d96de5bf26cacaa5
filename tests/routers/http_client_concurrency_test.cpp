// HttpClient under concurrent use: calls started from many threads at once (some send their
// request themselves while the client's thread sleeps, some queue for it), calls started from
// inside another call's callback, and the first-byte timeout of a call whose request was sent
// from the caller's thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "routers/http_client.h"
#include "tests/support/loopback_server.h"

namespace {

using namespace std::chrono_literals;
using sytest::Millis;

// Answers "echo <body>" at once, or never (until the client leaves) when the body is "hang".
class EchoServer {
 public:
  EchoServer()
      : server_([](const sytest::Request& req, sytest::ResponseWriter& w) {
          if (req.body == "hang") {
            w.hangUntilPeerGone(Millis(30000));
            return;
          }
          w.send(200, "echo " + req.body, {}, "text/plain");
        }) {}
  std::string url() const { return server_.url() + "/echo"; }

 private:
  sytest::LoopbackServer server_;
};

struct Outcome {
  int status = 0;
  std::string body;
  api::Status done;
};

// Runs one call and waits for it.
class OneCall {
 public:
  routers::HttpCallbacks callbacks() {
    routers::HttpCallbacks cb;
    cb.on_head = [this](const routers::HttpResponseHead& h) { outcome_.status = h.status; };
    cb.on_data = [this](std::string_view d) {
      outcome_.body.append(d);
      return true;
    };
    cb.on_done = [this](const api::Status& s) {
      std::lock_guard<std::mutex> lock(mu_);
      outcome_.done = s;
      finished_ = true;
      cv_.notify_all();
    };
    return cb;
  }
  std::optional<Outcome> wait(Millis timeout = 20000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return finished_; })) return std::nullopt;
    return outcome_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  Outcome outcome_;
};

routers::HttpRequest post(const std::string& url, std::string body) {
  routers::HttpRequest r;
  r.url = url;
  r.body = std::move(body);
  r.timeouts.first_byte = 5000ms;
  return r;
}

TEST(HttpClientConcurrency, CallsFromManyThreadsAllComplete) {
  EchoServer server;
  routers::HttpClient client;
  constexpr int kThreads = 8;
  constexpr int kCallsEach = 40;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsEach; ++i) {
        std::string body = std::to_string(t) + "-" + std::to_string(i);
        OneCall call;
        auto handle = client.start(post(server.url(), body), call.callbacks());
        auto out = call.wait();
        if (out && out->done.ok() && out->status == 200 && out->body == "echo " + body) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kCallsEach);
  EXPECT_EQ(client.inFlight(), 0u);
}

TEST(HttpClientConcurrency, CallStartedFromACallbackCompletes) {
  // Each call's onDone starts the next one: a start from inside a callback cannot drive
  // libcurl there (it is mid-callback) and must be picked up all the same.
  EchoServer server;
  routers::HttpClient client;
  constexpr int kChain = 20;
  std::mutex mu;
  std::condition_variable cv;
  int completed = 0;
  std::vector<std::string> bodies;
  std::function<void(int)> launch = [&](int i) {
    auto body = std::make_shared<std::string>();
    routers::HttpCallbacks cb;
    cb.on_data = [body](std::string_view d) {
      body->append(d);
      return true;
    };
    cb.on_done = [&, i, body](const api::Status& s) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok()) bodies.push_back(*body);
        ++completed;
        cv.notify_all();
      }
      if (i + 1 < kChain) launch(i + 1);
    };
    client.start(post(server.url(), std::to_string(i)), std::move(cb));
  };
  launch(0);
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 20000ms, [&] { return completed == kChain; })) << completed;
  ASSERT_EQ(bodies.size(), static_cast<size_t>(kChain));
  for (int i = 0; i < kChain; ++i) EXPECT_EQ(bodies[i], "echo " + std::to_string(i));
}

TEST(HttpClientConcurrency, FirstByteTimeoutHoldsForARequestSentFromTheCallersThread) {
  // The client's thread sleeps long when idle; a call sent from the caller's thread meanwhile
  // must still get its first-byte timeout (the sleeping thread is woken for it).
  EchoServer server;
  routers::HttpClient client;
  std::this_thread::sleep_for(50ms);  // let the client's thread go idle
  OneCall call;
  routers::HttpRequest r = post(server.url(), "hang");
  r.timeouts.first_byte = 200ms;
  auto handle = client.start(r, call.callbacks());
  auto out = call.wait();
  ASSERT_TRUE(out) << "the call never finished";
  EXPECT_EQ(out->done.code(), api::ErrorCode::kUpstreamTimeout) << out->done.message();
  EXPECT_NE(out->done.message().find("within 200 ms"), std::string::npos) << out->done.message();
}

}  // namespace
