// HttpClient::ThreadDriver: calls started on a thread that drives its own event loop run on
// that thread's driver (callbacks on that thread, nothing handed to the client's thread), also
// when started from inside a callback; cancels from other threads reach it; its timers fire;
// destroying it cancels what it still has. Real HTTP on loopback; the event loop is a plain
// poll() loop, as a gateway I/O thread's Asio loop would watch fd().
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
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

routers::HttpRequest post(const std::string& url, std::string body) {
  routers::HttpRequest r;
  r.url = url;
  r.body = std::move(body);
  r.timeouts.first_byte = 5000ms;
  return r;
}

// A thread with an event loop of its own and a driver bound to it: it polls the driver's fd
// and its own task queue, and runs posted tasks on itself.
class LoopThread {
 public:
  explicit LoopThread(routers::HttpClient& client) : wake_fd_(eventfd(0, EFD_NONBLOCK)) {
    thread_ = std::thread([this, &client] { run(client); });
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_; });
  }
  ~LoopThread() {
    stop();
    close(wake_fd_);
  }

  // Runs `fn` on the loop thread.
  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(fn));
    }
    uint64_t one = 1;
    EXPECT_EQ(write(wake_fd_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  }
  // Ends the loop and destroys the driver on the loop thread.
  void stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    post([] {});
    thread_.join();
  }
  std::thread::id id() const { return id_; }

 private:
  void run(routers::HttpClient& client) {
    auto driver = client.bindThisThread();
    {
      std::lock_guard<std::mutex> lock(mu_);
      id_ = std::this_thread::get_id();
      started_ = true;
    }
    cv_.notify_all();
    bool again = false;
    while (!stop_) {
      pollfd fds[2] = {{driver->fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      poll(fds, 2, again ? 0 : 1000);
      if (fds[1].revents & POLLIN) {
        uint64_t n;
        ssize_t r = read(wake_fd_, &n, sizeof n);
        (void)r;
        std::deque<std::function<void()>> tasks;
        {
          std::lock_guard<std::mutex> lock(mu_);
          tasks.swap(tasks_);
        }
        for (auto& t : tasks) t();
      }
      again = driver->service();
    }
    driver.reset();
  }

  int wake_fd_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  std::thread::id id_;
  std::deque<std::function<void()>> tasks_;
};

// What one call's callbacks saw, and on which threads.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  api::Status status;
  std::string body;
  std::vector<std::thread::id> threads;

  routers::HttpCallbacks callbacks() {
    routers::HttpCallbacks cb;
    cb.on_head = [this](const routers::HttpResponseHead&) { note(); };
    cb.on_data = [this](std::string_view d) {
      note();
      std::lock_guard<std::mutex> lock(mu);
      body.append(d);
      return true;
    };
    cb.on_done = [this](const api::Status& s) {
      note();
      std::lock_guard<std::mutex> lock(mu);
      status = s;
      done = true;
      cv.notify_all();
    };
    return cb;
  }
  void note() {
    std::lock_guard<std::mutex> lock(mu);
    threads.push_back(std::this_thread::get_id());
  }
  bool wait(Millis timeout = 20000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return done; });
  }
};

TEST(HttpClientThreadDriver, CallsOfABoundThreadRunOnItAlsoWhenStartedFromACallback) {
  EchoServer server;
  routers::HttpClient client;
  LoopThread loop(client);
  // A chain: each call's onDone starts the next one, on the loop thread, from inside the
  // driver's own callback.
  constexpr int kChain = 10;
  std::vector<std::unique_ptr<Seen>> seen;
  for (int i = 0; i < kChain; ++i) seen.push_back(std::make_unique<Seen>());
  std::vector<std::shared_ptr<routers::HttpCall>> handles(kChain);
  std::function<void(int)> launch = [&](int i) {
    routers::HttpCallbacks cb = seen[i]->callbacks();
    auto done = std::move(cb.on_done);
    cb.on_done = [&, i, done](const api::Status& s) {
      done(s);
      if (i + 1 < kChain) launch(i + 1);
    };
    handles[i] = client.start(post(server.url(), std::to_string(i)), std::move(cb));
  };
  loop.post([&] { launch(0); });
  for (int i = 0; i < kChain; ++i) {
    ASSERT_TRUE(seen[i]->wait()) << "call " << i << " never finished";
    EXPECT_TRUE(seen[i]->status.ok()) << seen[i]->status.message();
    EXPECT_EQ(seen[i]->body, "echo " + std::to_string(i));
    for (std::thread::id t : seen[i]->threads) EXPECT_EQ(t, loop.id()) << "call " << i;
  }
  EXPECT_EQ(client.inFlight(), 0u);

  // A thread without a driver of its own still gets its answers, from the client's thread.
  Seen other;
  auto handle = client.start(post(server.url(), "other"), other.callbacks());
  ASSERT_TRUE(other.wait());
  EXPECT_EQ(other.body, "echo other");
  for (std::thread::id t : other.threads) EXPECT_NE(t, loop.id());
}

TEST(HttpClientThreadDriver, CancelFromAnotherThreadReachesTheBoundDriver) {
  EchoServer server;
  routers::HttpClient client;
  LoopThread loop(client);
  Seen seen;
  std::shared_ptr<routers::HttpCall> call;
  std::mutex mu;
  std::condition_variable cv;
  loop.post([&] {
    auto c = client.start(post(server.url(), "hang"), seen.callbacks());
    std::lock_guard<std::mutex> lock(mu);
    call = c;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5000ms, [&] { return call != nullptr; }));
  }
  std::this_thread::sleep_for(50ms);  // the request is out; the loop sleeps in poll()
  EXPECT_FALSE(seen.done);
  call->cancel();  // from the test's thread
  ASSERT_TRUE(seen.wait(5000ms)) << "the cancel did not reach the loop thread";
  EXPECT_EQ(seen.status.code(), api::ErrorCode::kCancelled);
  for (std::thread::id t : seen.threads) EXPECT_EQ(t, loop.id());
  EXPECT_EQ(client.inFlight(), 0u);
}

TEST(HttpClientThreadDriver, FirstByteTimeoutFiresOnTheBoundDriver) {
  EchoServer server;
  routers::HttpClient client;
  LoopThread loop(client);
  Seen seen;
  loop.post([&] {
    routers::HttpRequest r = post(server.url(), "hang");
    r.timeouts.first_byte = 200ms;
    client.start(r, seen.callbacks());
  });
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(seen.wait(5000ms)) << "no timeout: the driver's timer never fired";
  EXPECT_EQ(seen.status.code(), api::ErrorCode::kUpstreamTimeout) << seen.status.message();
  EXPECT_NE(seen.status.message().find("within 200 ms"), std::string::npos);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 190ms);
  for (std::thread::id t : seen.threads) EXPECT_EQ(t, loop.id());
}

TEST(HttpClientThreadDriver, DestroyingTheDriverCancelsItsCalls) {
  EchoServer server;
  routers::HttpClient client;
  Seen seen;
  std::shared_ptr<routers::HttpCall> call;
  std::thread::id loop_id;
  {
    LoopThread loop(client);
    loop_id = loop.id();
    loop.post([&] { call = client.start(post(server.url(), "hang"), seen.callbacks()); });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(seen.done);
  }  // the loop stops and destroys its driver
  ASSERT_TRUE(seen.done) << "a call of a destroyed driver was left without onDone";
  EXPECT_EQ(seen.status.code(), api::ErrorCode::kCancelled);
  for (std::thread::id t : seen.threads) EXPECT_EQ(t, loop_id);
  EXPECT_EQ(client.inFlight(), 0u);
  ASSERT_NE(call, nullptr);
  call->cancel();  // after its driver is gone: nothing happens
  call->setPaused(true);
}

}  // namespace
