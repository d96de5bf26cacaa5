// The HTTP/1.1 server: Boost.Beast sessions on Asio threads (DESIGN.md "Threads").
//
// Limits (body, header, connection count) and timeouts (read, keep-alive idle) come from
// ServerConfig. Shutdown: beginShutdown() stops accepting, lets in-flight answers finish
// (up to shutdown_grace_s) and then stops the threads; run() returns.
//
// With `tls` enabled every connection starts with a TLS handshake (a client that does not
// speak TLS, or fails mutual TLS, is closed and counted). Requests whose body exceeds
// inline_body_bytes are handed to a small worker pool instead of running on the I/O thread
// (a full pool answers 503 with Retry-After). `Expect: 100-continue` is answered before the
// body is read. Bytes buffered for slow streaming clients are capped across all connections
// (max_buffered_bytes): above the cap the connection furthest behind is dropped.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/status.h"
#include "gateway/config.h"
#include "gateway/exchange.h"
#include "gateway/metrics.h"

namespace gateway {

// Receives each request; must not block (hand long work to other threads and answer through
// the Responder later).
using RequestHandler = std::function<void(Exchange, std::shared_ptr<Responder>)>;

// Work that an I/O thread serves beside its connections, in its own event loop: the HTTP
// client's driver for the upstream calls that thread starts (routers::HttpClient::
// ThreadDriver), so that an upstream answer is read by the thread that sends it on. The
// thread watches fd() and calls service() whenever it is readable, and again soon while
// service() returns true. service() must not block.
class ThreadService {
 public:
  virtual ~ThreadService() = default;
  virtual int fd() const = 0;
  virtual bool service() = 0;
};
// Called on each I/O thread before it runs (null: none); what it returns is destroyed on that
// thread once the thread's event loop has stopped.
using ThreadServiceFactory = std::function<std::unique_ptr<ThreadService>()>;

class Server {
 public:
  Server(ServerConfig config, Metrics& metrics, RequestHandler handler);
  ~Server();

  // Binds and listens. Returns the bound port (useful with port 0), or kIo naming the address.
  api::StatusOr<int> listen();
  // Before run(): what each I/O thread serves besides its connections.
  void setThreadService(ThreadServiceFactory factory);
  // Runs the I/O threads until shutdown completes.
  void run();
  // Thread- and signal-safe to call from a signal watcher; idempotent.
  void beginShutdown();
  bool draining() const;
  // Requests being answered now.
  int inFlight() const;
  // Re-reads the TLS certificate files (SIGHUP): new connections use them; on failure the old
  // ones stay and the reason is returned. Ok and nothing done without TLS.
  api::Status reloadTls();

  class Impl;  // internal; named here so that sessions can refer to it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gateway
