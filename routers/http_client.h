// HttpClient: outbound HTTP for the cloud providers on one libcurl multi handle, driven by one
// thread (DESIGN.md "Threads": never a thread per request).
//
// A call is submitted with callbacks, run in order: onHead once when the status line and
// headers are in, onData for each piece of body as it arrives, and onDone exactly once at the
// end (also after cancel()). Callbacks must not block. They run on the thread that drives
// libcurl at that moment, one at a time: the client's own thread, or a thread inside start()
// that found that thread asleep and sent its request itself (saving a thread wake-up per
// call); such a thread may also run other calls' callbacks that were due.
//
// A thread with an event loop of its own (a gateway I/O thread) can bind a ThreadDriver: the
// calls it starts then run on their own multi handle, driven by that thread's event loop, so
// the answer is read, decoded and handed on by the thread that will send it to the client,
// and no thread is woken in between.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace routers {

class Driver;  // internal

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct HttpTimeouts {
  std::chrono::milliseconds connect{5000};      // TCP + TLS handshake
  std::chrono::milliseconds first_byte{60000};  // request sent -> first response byte
  std::chrono::milliseconds idle{30000};        // longest silence between two body pieces
  std::chrono::milliseconds total{600000};      // the whole call
};

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  HttpTimeouts timeouts;
  Deadline deadline = Deadline::max();  // the caller's own deadline; the sooner one wins
};

struct HttpResponseHead {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased; last value wins
};

struct HttpCallbacks {
  std::function<void(const HttpResponseHead&)> on_head;
  // Returns false to abort the call (onDone then reports kCancelled).
  std::function<bool(std::string_view)> on_data;
  // OK when the body ended normally. kUpstreamTimeout for any timeout (the message says
  // which), kUpstreamError for connection and protocol failures, kCancelled after cancel().
  std::function<void(const api::Status&)> on_done;
};

class HttpCall {
 public:
  virtual ~HttpCall() = default;
  // Aborts the call from any thread; idempotent. onDone(kCancelled) follows unless the call
  // had already finished.
  virtual void cancel() = 0;
  // Backpressure, from any thread; idempotent. While paused the call stops reading its
  // socket: no onData (nor onHead) is called, and what the upstream sends waits in the
  // kernel's socket buffers and then in the upstream itself, not in our memory (at most the
  // one piece libcurl had already read when the pause took effect is held back). Resuming
  // delivers everything in order. A pause is the client's doing, not the upstream's, so the
  // first-byte and idle timers are suspended while paused and start over in full on resume;
  // the total time limit and the caller's deadline keep running (a call paused past them ends
  // with kUpstreamTimeout).
  virtual void setPaused(bool paused) = 0;
};

class HttpClient {
 public:
  struct Options {
    int max_connections_per_host = 256;
    int max_total_connections = 1024;
  };

  explicit HttpClient(Options options);
  HttpClient() : HttpClient(Options{}) {}
  ~HttpClient();  // cancels what is in flight and joins the thread
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  std::shared_ptr<HttpCall> start(HttpRequest request, HttpCallbacks callbacks);

  // Calls currently in flight (for metrics and tests).
  size_t inFlight() const;

  // The calling thread's own driver. From its creation on, calls that this thread starts run
  // on it: their callbacks run on this thread only, inside start() or service(). The thread
  // must watch fd() for readability (its own epoll set: sockets, timers, and the wake-ups
  // that cancels and pauses from other threads send) and then call service(), which never
  // blocks; when service() returns true it stopped with work left and wants to be called
  // again soon without waiting for fd(). Destroy it on the same thread, before the client: the
  // calls it still has are cancelled then (their onDone runs).
  class ThreadDriver {
   public:
    ~ThreadDriver();
    ThreadDriver(const ThreadDriver&) = delete;
    ThreadDriver& operator=(const ThreadDriver&) = delete;
    int fd() const;
    bool service();

   private:
    friend class HttpClient;
    ThreadDriver(const void* client, std::unique_ptr<Driver> driver);
    const void* client_;
    std::unique_ptr<Driver> driver_;
  };
  std::unique_ptr<ThreadDriver> bindThisThread();

  class Impl;  // internal; named here so that the call objects can refer to it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace routers
