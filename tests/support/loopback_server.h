// LoopbackServer: a scriptable HTTP/1.1 server on 127.0.0.1 for tests.
//
// It binds port 0, serves each connection on its own thread (Boost.Beast parser for the
// requests, raw socket writes for the answers so that a test can break HTTP on purpose) and
// hands every request to a handler that answers through a ResponseWriter: a whole response,
// a head and then chunks with pauses, raw bytes, an abrupt close (FIN or RST), or a hang
// until the client goes away. It records every request and, per connection, whether the peer
// closed it: the way tests assert that the gateway cancelled an upstream call.
//
// Fakes of cloud APIs (OpenAI, Anthropic, Gemini) are built on top of it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sytest {

using Headers = std::vector<std::pair<std::string, std::string>>;
using Millis = std::chrono::milliseconds;

// One request as received.
struct Request {
  int connection_id = 0;  // which connection carried it (see LoopbackServer::connection)
  int index = 0;          // 0-based order among all requests to this server
  std::string method;
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // names lowercased; repeated names joined ", "
  std::string body;
  std::chrono::steady_clock::time_point received;

  // The header's value, "" when absent. `name` is matched case-insensitively.
  std::string header(std::string_view name) const;
  // The target without its query string.
  std::string path() const;
};

// What happened to one accepted connection.
struct ConnectionInfo {
  int id = 0;
  int requests = 0;             // requests read on it
  bool closed = false;          // no longer open on our side
  bool closed_by_peer = false;  // the client closed (EOF, reset, or write failed)
  std::chrono::steady_clock::time_point opened;
  std::chrono::steady_clock::time_point closed_at;  // valid when `closed`
};

class LoopbackServer;
struct ConnectionState;

// The answer channel of one request. Every method returns false once the connection is gone
// (the peer closed it, it was closed here, or the server is stopping); calls after that are
// no-ops. A handler that returns without completing a response makes the server close the
// connection (the client sees an empty or truncated reply).
class ResponseWriter {
 public:
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;

  // A complete response with Content-Length. `content_type` "" sends no Content-Type.
  bool send(int status, std::string_view body, const Headers& headers = {},
            std::string_view content_type = "application/json");
  // A response head with Transfer-Encoding: chunked; follow with chunk() and end().
  bool sendHead(int status, const Headers& headers = {},
                std::string_view content_type = "text/event-stream");
  // One chunk of a chunked body (empty data is skipped: an empty chunk would end the body).
  bool chunk(std::string_view data);
  // The terminating zero-length chunk; the response is then complete.
  bool end();
  // Bytes exactly as given, for broken HTTP. The response never counts as complete.
  bool sendRaw(std::string_view bytes);

  // Waits `d`, returning early (false) when the peer closes the connection or the server
  // stops. Returns true when the whole pause elapsed with the peer still there.
  bool pause(Millis d);
  // Waits until the peer closes the connection or the server stops, at most `max`.
  // Returns true when the peer closed it.
  bool hangUntilPeerGone(Millis max = Millis(60000));
  // Closes now: with a FIN, or with a TCP RST (SO_LINGER 0) when `reset`.
  void close(bool reset = false);

  // Asks for "Connection: close" on the response and closing the connection after it.
  void closeAfterResponse() { close_after_ = true; }

  bool peerGone() const;
  bool headSent() const { return head_sent_; }
  bool complete() const { return complete_; }
  const Request& request() const { return request_; }

 private:
  friend class LoopbackServer;
  ResponseWriter(LoopbackServer& server, std::shared_ptr<ConnectionState> conn,
                 const Request& request)
      : server_(server), conn_(std::move(conn)), request_(request) {}
  bool writeAll(std::string_view bytes);
  std::string head(int status, const Headers& headers, std::string_view content_type,
                   std::string_view framing);

  LoopbackServer& server_;
  std::shared_ptr<ConnectionState> conn_;
  const Request& request_;
  bool head_sent_ = false;
  bool complete_ = false;
  bool close_after_ = false;
  bool raw_ = false;
};

using Handler = std::function<void(const Request&, ResponseWriter&)>;

class LoopbackServer {
 public:
  // Binds 127.0.0.1:0 and starts accepting at once. A handler that throws gets its
  // connection closed (and the error printed to stderr).
  explicit LoopbackServer(Handler handler);
  // Stops: closes the listener, wakes every pause and hang, closes every connection and
  // joins every thread.
  ~LoopbackServer();

  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>"
  std::string url() const;

  // Idempotent; called by the destructor.
  void stop();
  bool stopping() const { return stopping_.load(); }

  std::vector<Request> requests() const;
  int requestCount() const;
  std::optional<Request> lastRequest() const;
  // Waits until at least `n` requests have arrived; false on timeout.
  bool waitForRequests(int n, Millis timeout);

  int connectionCount() const;
  std::optional<ConnectionInfo> connection(int id) const;
  // Waits until connection `id` is closed by its peer; false on timeout (or if it was closed
  // on this side first).
  bool waitForPeerClose(int id, Millis timeout);

  // Caps request headers and bodies (the parser refuses larger ones and closes).
  void setLimits(size_t max_header_bytes, size_t max_body_bytes);

 private:
  friend class ResponseWriter;
  void acceptLoop();
  void serveConnection(std::shared_ptr<ConnectionState> conn);
  // Records the close (the first one wins); returns whether the peer closed it.
  bool markClosed(ConnectionState& conn, bool by_peer);
  // poll() on the connection and the stop event, at most `max`. Returns true when the peer
  // is gone. `from_outside`: called from a thread other than the connection's own, which
  // may close the descriptor meanwhile; a duplicate is polled instead.
  bool waitPeerOrStop(ConnectionState& conn, Millis max, bool from_outside = false);

  Handler handler_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, readable once stop() ran: wakes every waiting thread
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> max_header_bytes_{64 * 1024};
  std::atomic<size_t> max_body_bytes_{64 * 1024 * 1024};
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Request> requests_;
  std::vector<std::shared_ptr<ConnectionState>> connections_;
  std::vector<std::thread> threads_;
};

// Waits until `pred` holds, polling every few milliseconds; false on timeout.
bool waitUntil(const std::function<bool()>& pred, Millis timeout);

}  // namespace sytest
