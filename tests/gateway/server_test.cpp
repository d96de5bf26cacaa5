// gateway::Server on loopback with a scripted handler: Expect: 100-continue, large bodies on
// the worker pool, the pool's bounded queue, backpressure (Responder::onDrained) and the
// process-wide cap on bytes buffered for slow clients.
#include "gateway/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"

namespace gateway {
namespace {

using std::chrono::milliseconds;
using sytest::metricValue;
using sytest::RawConnection;
using sytest::waitUntil;

// A Server on 127.0.0.1:<free port>, run on its own thread until the test ends.
class RunningServer {
 public:
  RunningServer(ServerConfig config, RequestHandler handler) {
    config.listen = "127.0.0.1";
    config.port = 0;
    config.shutdown_grace_s = 1;
    server_ = std::make_unique<Server>(config, metrics_, std::move(handler));
    auto port = server_->listen();
    EXPECT_TRUE(port.ok()) << port.status().message();
    port_ = port.ok() ? *port : 0;
    thread_ = std::thread([this] { server_->run(); });
  }
  ~RunningServer() {
    server_->beginShutdown();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  double rejected(const std::string& reason) const {
    return metricValue(metrics_.serialize(), "switchyard_http_rejected_total", {{"reason", reason}})
        .value_or(0);
  }

 private:
  Metrics metrics_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// Releases handlers blocked on it; released at the latest when the test ends.
class Gate {
 public:
  ~Gate() { open(); }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!opened_) {
      opened_ = true;
      promise_.set_value();
    }
  }
  void wait() { future_.wait(); }

 private:
  std::mutex mu_;
  bool opened_ = false;
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
};

TEST(Server, AnswersExpectContinueBeforeTheBody) {
  ServerConfig config;
  RunningServer server(config, [](Exchange ex, std::shared_ptr<Responder> r) {
    r->reply(200, ex.body, {}, "text/plain");
  });
  RawConnection conn(server.port());
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\n\r\n"));
  // A client that waits for the interim response sends nothing more until it arrives.
  std::string interim = conn.readUntil(
      [](const std::string& got) { return got.find("\r\n\r\n") != std::string::npos; },
      milliseconds(3000));
  ASSERT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << interim;
  ASSERT_TRUE(conn.send("hello"));
  std::string reply = conn.readUntil(
      [](const std::string& got) { return got.find("hello", 30) != std::string::npos; },
      milliseconds(3000));
  EXPECT_EQ(sytest::statusOf(reply.substr(reply.find("\r\n\r\n") + 4)), 200) << reply;
}

// An empty piece written mid-stream is not a chunk of its own: a zero-length chunk is the
// chunked encoding's terminator, and a keep-alive client would read the second one as the start
// of the next response. Two streamed requests on one connection both arrive whole.
TEST(Server, EmptyStreamWritesDoNotEndTheChunkedBody) {
  ServerConfig config;
  RunningServer server(config, [](Exchange, std::shared_ptr<Responder> r) {
    r->startStream({});
    r->write("data: a\n\n");
    r->write("");
    r->write("data: b\n\n");
    r->write("");
    r->finish();
  });
  RawConnection conn(server.port());
  ASSERT_TRUE(conn.connected());
  const std::string request = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string replies;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(conn.send(request));
    std::string reply = conn.readResponse(milliseconds(3000));
    EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << "request " << i << ": " << reply;
    EXPECT_NE(reply.find("data: a"), std::string::npos) << reply;
    EXPECT_NE(reply.find("data: b"), std::string::npos) << reply;
    replies += reply;
  }
  // Nothing follows the second response's terminator.
  conn.readUntil([](const std::string&) { return false; }, milliseconds(200));
  EXPECT_EQ(conn.received(), replies);
}

TEST(Server, ExpectContinueOverTheBodyLimitGets413WithoutReadingIt) {
  ServerConfig config;
  config.max_body_bytes = 100;
  RunningServer server(config, [](Exchange, std::shared_ptr<Responder> r) {
    r->reply(200, "{}", {});
  });
  RawConnection conn(server.port());
  ASSERT_TRUE(conn.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                        "Expect: 100-continue\r\n\r\n"));
  std::string got = conn.readUntilClose(milliseconds(3000));
  EXPECT_EQ(sytest::statusOf(got), 413) << got;
  EXPECT_EQ(got.find("100 Continue"), std::string::npos) << got;
}

// One I/O thread: while a large body is being handled (here: blocked), other requests on
// that thread are still answered, because large bodies go to the worker pool.
TEST(Server, LargeBodiesDoNotHoldTheIoThread) {
  ServerConfig config;
  config.threads = 1;
  config.inline_body_bytes = 1024;
  config.worker_threads = 1;
  Gate gate;
  std::atomic<int> large_entered{0};
  RunningServer server(config, [&](Exchange ex, std::shared_ptr<Responder> r) {
    if (ex.body.size() > 1024) {
      ++large_entered;
      gate.wait();
    }
    r->reply(200, R"({"ok":true})", {});
  });
  auto large = std::async(std::launch::async, [&] {
    return sytest::httpPost(server.url("/big"), std::string(200000, 'x'), {}, milliseconds(10000));
  });
  ASSERT_TRUE(waitUntil([&] { return large_entered.load() == 1; }, milliseconds(5000)));
  sytest::HttpResponse health = sytest::httpGet(server.url("/healthz"), {}, milliseconds(3000));
  EXPECT_EQ(health.status, 200) << health.error;
  gate.open();
  EXPECT_EQ(large.get().status, 200);
}

TEST(Server, FullWorkerQueueAnswers503WithRetryAfter) {
  ServerConfig config;
  config.inline_body_bytes = 1024;
  config.worker_threads = 1;
  config.worker_queue = 1;
  Gate gate;
  std::atomic<int> entered{0};
  RunningServer server(config, [&](Exchange, std::shared_ptr<Responder> r) {
    ++entered;
    gate.wait();
    r->reply(200, "{}", {});
  });
  std::string big(5000, 'x');
  auto post = [&] { return sytest::httpPost(server.url("/big"), big, {}, milliseconds(10000)); };
  auto first = std::async(std::launch::async, post);
  ASSERT_TRUE(waitUntil([&] { return entered.load() == 1; }, milliseconds(5000)));
  // The worker is busy: one more request waits in the queue, the other is refused.
  auto second = std::async(std::launch::async, post);
  auto third = std::async(std::launch::async, post);
  ASSERT_TRUE(waitUntil([&] { return server.rejected("worker_queue_full") >= 1; },
                        milliseconds(5000)));
  gate.open();
  std::vector<sytest::HttpResponse> rest = {second.get(), third.get()};
  EXPECT_EQ(first.get().status, 200);
  int refused = 0;
  for (const auto& r : rest) {
    if (r.status == 503) {
      ++refused;
      EXPECT_EQ(r.header("retry-after"), "1");
      EXPECT_NE(r.body.find("retry"), std::string::npos) << r.body;
    } else {
      EXPECT_EQ(r.status, 200) << r.error;
    }
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(server.rejected("worker_queue_full"), 1);
}

std::string streamRequest() { return "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"; }

// A producer that stops above kPauseAboveBytes hears from onDrained once the client has
// read enough, and can then go on.
TEST(Server, OnDrainedRunsWhenASlowClientCatchesUp) {
  ServerConfig config;
  std::promise<size_t> drained;
  std::atomic<bool> drained_once{false};
  RunningServer server(config, [&](Exchange, std::shared_ptr<Responder> r) {
    r->startStream({});
    r->onDrained([&, r] {
      if (drained_once.exchange(true)) return;
      drained.set_value(r->pendingBytes());
      r->write("tail");
      r->finish();
    });
    // Far more than the socket buffers take, so that bytes wait in the gateway.
    std::string piece(64 << 10, 'a');
    for (int i = 0; i < 256; ++i) r->write(piece);
    EXPECT_GT(r->pendingBytes(), Responder::kPauseAboveBytes);
  });
  RawConnection conn(server.port());
  ASSERT_TRUE(conn.send(streamRequest()));
  auto fut = drained.get_future();
  // The client reads everything; the pending bytes drain and the producer resumes.
  std::string got = conn.readUntil(
      [](const std::string& s) { return s.find("tail") != std::string::npos; },
      milliseconds(20000));
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_LE(fut.get(), Responder::kResumeBelowBytes);
  EXPECT_NE(got.find("tail"), std::string::npos);
}

// A producer that registers its callback only once it decides to pause must not miss a
// drain that happened in between.
TEST(Server, OnDrainedRegisteredAfterTheDrainRunsAtOnce) {
  ServerConfig config;
  std::promise<std::shared_ptr<Responder>> responder;
  RunningServer server(config, [&](Exchange, std::shared_ptr<Responder> r) {
    r->startStream({});
    std::string piece(64 << 10, 'c');
    for (int i = 0; i < 64; ++i) r->write(piece);  // 4 MiB
    responder.set_value(r);
  });
  RawConnection conn(server.port());
  ASSERT_TRUE(conn.send(streamRequest()));
  std::shared_ptr<Responder> r = responder.get_future().get();
  conn.readUntil([](const std::string& s) { return s.size() >= (size_t{4} << 20); },
                 milliseconds(20000));
  ASSERT_TRUE(waitUntil([&] { return r->pendingBytes() == 0; }, milliseconds(5000)));
  std::promise<void> drained;
  r->onDrained([&] { drained.set_value(); });
  EXPECT_EQ(drained.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  r->finish();
}

// Two clients that never read: together they would hold far more than max_buffered_bytes,
// so the server drops the one furthest behind (counted), and keeps serving others.
TEST(Server, BufferedBytesCapDropsTheSlowestClient) {
  ServerConfig config;
  config.max_buffered_bytes = 4 << 20;
  RunningServer server(config, [&](Exchange ex, std::shared_ptr<Responder> r) {
    if (ex.target != "/stream") return r->reply(200, R"({"status":"ok"})", {});
    r->startStream({});
    std::string piece(256 << 10, 'b');
    for (int i = 0; i < 128; ++i) r->write(piece);  // 32 MiB, ignoring backpressure
    r->finish();
  });
  RawConnection slow(server.port());
  ASSERT_TRUE(slow.send(streamRequest()));
  ASSERT_TRUE(waitUntil([&] { return server.rejected("buffered_bytes_limit") >= 1; },
                        milliseconds(10000)));
  // The dropped connection ends short of the 32 MiB it was promised.
  std::string got = slow.readUntilClose(milliseconds(10000));
  EXPECT_TRUE(slow.closedByPeer());
  EXPECT_LT(got.size(), size_t{32} << 20);
  EXPECT_EQ(sytest::httpGet(server.url("/healthz")).status, 200);
}

}  // namespace
}  // namespace gateway
