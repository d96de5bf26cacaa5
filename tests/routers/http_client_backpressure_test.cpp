// HttpClient::setPaused against a loopback upstream that streams far more than the kernel's
// socket buffers hold: while paused nothing reaches the callbacks and the upstream's writes
// block; on resume every byte arrives, in order. Pauses never trip the first-byte or idle
// timeouts, but the total time limit still holds.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "routers/http_client.h"
#include "tests/support/loopback_server.h"

namespace {

using namespace std::chrono_literals;
using sytest::Millis;

constexpr int64_t kChunk = 64 * 1024;

// Byte `i` of the upstream's body. 65521 is prime, so a piece delivered twice, skipped or
// out of order shows up as a mismatch.
char patternAt(int64_t i) { return static_cast<char>((i + i / 65521) % 251); }

// A loopback upstream that answers every request with `total` bytes of patternAt, in 64 KiB
// chunks (0 = endless, until the client goes away), counting what its writes handed to the
// kernel.
class Streamer {
 public:
  explicit Streamer(int64_t total)
      : total_(total),
        server_([this](const sytest::Request&, sytest::ResponseWriter& w) { serve(w); }) {}

  std::string url() const { return server_.url() + "/stream"; }
  int64_t written() const { return written_.load(); }

 private:
  void serve(sytest::ResponseWriter& w) {
    if (!w.sendHead(200, {}, "application/octet-stream")) return;
    std::string piece(kChunk, '\0');
    for (int64_t off = 0; total_ == 0 || off < total_; off += kChunk) {
      int64_t n = total_ == 0 ? kChunk : std::min(kChunk, total_ - off);
      piece.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) piece[static_cast<size_t>(i)] = patternAt(off + i);
      if (!w.chunk(piece)) return;  // blocks while the client's socket buffers are full
      written_ += n;
    }
    w.end();
  }

  int64_t total_;
  std::atomic<int64_t> written_{0};
  sytest::LoopbackServer server_;  // last: its threads stop before the members above go away
};

// What the callbacks saw (they run on the client's thread).
struct Received {
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> mismatches{0};
  std::atomic<int> heads{0};
  std::mutex mu;
  std::condition_variable cv;
  std::optional<api::Status> done;

  routers::HttpCallbacks callbacks() {
    routers::HttpCallbacks cb;
    cb.on_head = [this](const routers::HttpResponseHead&) { ++heads; };
    cb.on_data = [this](std::string_view data) {
      int64_t off = bytes.load();
      for (size_t i = 0; i < data.size(); ++i) {
        if (data[i] != patternAt(off + static_cast<int64_t>(i))) ++mismatches;
      }
      bytes += static_cast<int64_t>(data.size());
      return true;
    };
    cb.on_done = [this](const api::Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      done = s;
      cv.notify_all();
    };
    return cb;
  }

  // Waits for on_done; nullopt on timeout.
  std::optional<api::Status> wait(Millis timeout) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, timeout, [&] { return done.has_value(); });
    return done;
  }
};

// Waits until `value()` has not changed for `quiet`; returns the settled value (or the last
// one seen after `max`).
int64_t settle(const std::function<int64_t()>& value, Millis quiet = 300ms, Millis max = 10s) {
  auto give_up = std::chrono::steady_clock::now() + max;
  int64_t last = value();
  auto since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(20ms);
    int64_t now = value();
    if (now != last) {
      last = now;
      since = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - since >= quiet) {
      break;
    }
  }
  return last;
}

routers::HttpRequest getRequest(const std::string& url) {
  routers::HttpRequest r;
  r.method = "GET";
  r.url = url;
  r.timeouts.first_byte = 300ms;
  r.timeouts.idle = 300ms;
  r.timeouts.total = 60s;
  return r;
}

TEST(HttpClientBackpressure, PausedTransferStopsReadingAndResumesInOrder) {
  constexpr int64_t kTotal = int64_t{128} << 20;  // far beyond loopback socket buffers
  Streamer upstream(kTotal);
  routers::HttpClient client;
  Received got;
  auto call = client.start(getRequest(upstream.url()), got.callbacks());

  ASSERT_TRUE(sytest::waitUntil([&] { return got.bytes.load() >= (1 << 20); }, 10000ms));
  call->setPaused(true);
  int64_t delivered = settle([&] { return got.bytes.load(); });
  // Paused past the idle timeout (300 ms): the silence is ours, so the call goes on.
  EXPECT_FALSE(got.wait(800ms)) << got.done->message();
  EXPECT_EQ(got.bytes.load(), delivered) << "data was delivered while paused";
  EXPECT_LT(delivered, kTotal);
  // The upstream's writes block once the socket buffers are full: the rest waits there.
  int64_t written = settle([&] { return upstream.written(); });
  EXPECT_LT(written, kTotal) << "the upstream's writes never blocked";
  EXPECT_EQ(got.bytes.load(), delivered) << "data was delivered while paused";

  call->setPaused(false);
  auto done = got.wait(30000ms);
  ASSERT_TRUE(done) << "the call never finished after resuming";
  EXPECT_TRUE(done->ok()) << done->message();
  EXPECT_EQ(got.bytes.load(), kTotal);
  EXPECT_EQ(got.mismatches.load(), 0);
  EXPECT_EQ(got.heads.load(), 1);
}

TEST(HttpClientBackpressure, RepeatedPausesLoseAndReorderNothing) {
  constexpr int64_t kTotal = int64_t{24} << 20;
  Streamer upstream(kTotal);
  routers::HttpClient client;
  Received got;
  auto call = client.start(getRequest(upstream.url()), got.callbacks());
  for (int i = 1; i <= 6; ++i) {
    ASSERT_TRUE(
        sytest::waitUntil([&] { return got.bytes.load() >= i * (int64_t{2} << 20); }, 10000ms))
        << i;
    call->setPaused(true);
    call->setPaused(true);  // idempotent
    std::this_thread::sleep_for(50ms);
    call->setPaused(false);
  }
  auto done = got.wait(30000ms);
  ASSERT_TRUE(done);
  EXPECT_TRUE(done->ok()) << done->message();
  EXPECT_EQ(got.bytes.load(), kTotal);
  EXPECT_EQ(got.mismatches.load(), 0);
}

TEST(HttpClientBackpressure, PausedBeforeTheFirstByteDoesNotTripTheFirstByteTimeout) {
  Streamer upstream(4 * kChunk);
  routers::HttpClient client;
  Received got;
  auto call = client.start(getRequest(upstream.url()), got.callbacks());
  call->setPaused(true);
  ASSERT_FALSE(got.wait(800ms)) << got.done->message();  // first_byte is 300 ms
  EXPECT_EQ(got.bytes.load(), 0);
  EXPECT_EQ(got.heads.load(), 0);
  call->setPaused(false);
  auto done = got.wait(10000ms);
  ASSERT_TRUE(done);
  EXPECT_TRUE(done->ok()) << done->message();
  EXPECT_EQ(got.bytes.load(), 4 * kChunk);
  EXPECT_EQ(got.mismatches.load(), 0);
}

TEST(HttpClientBackpressure, TotalTimeLimitStillHoldsWhilePaused) {
  Streamer upstream(0);  // endless
  routers::HttpClient client;
  Received got;
  routers::HttpRequest r = getRequest(upstream.url());
  r.timeouts.total = 1500ms;
  auto call = client.start(r, got.callbacks());
  ASSERT_TRUE(sytest::waitUntil([&] { return got.bytes.load() > 0; }, 10000ms));
  call->setPaused(true);
  auto done = got.wait(10000ms);
  ASSERT_TRUE(done) << "a paused call outlived its total time limit";
  EXPECT_EQ(done->code(), api::ErrorCode::kUpstreamTimeout) << done->message();
}

TEST(HttpClientBackpressure, CancelWhilePausedEndsTheCall) {
  Streamer upstream(0);
  routers::HttpClient client;
  Received got;
  auto call = client.start(getRequest(upstream.url()), got.callbacks());
  ASSERT_TRUE(sytest::waitUntil([&] { return got.bytes.load() > 0; }, 10000ms));
  call->setPaused(true);
  settle([&] { return got.bytes.load(); }, 100ms);
  call->cancel();
  auto done = got.wait(5000ms);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->code(), api::ErrorCode::kCancelled) << done->message();
  EXPECT_EQ(client.inFlight(), 0u);
}

}  // namespace
