// Test HTTP clients: a blocking libcurl client (whole responses and streamed ones, with a
// callback that can hang up mid-stream), a raw TCP connection for requests that are not
// valid HTTP, and small readers for SSE bodies and Prometheus text.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sytest {

using Json = nlohmann::json;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;                              // 0 when no response arrived (see `error`)
  std::map<std::string, std::string> headers;  // names lowercased; repeated names joined ", "
  std::string body;
  std::string error;               // libcurl's message when the transfer failed ("" otherwise)
  bool aborted = false;            // the streaming callback hung up
  double elapsed_s = 0;            // request start to end of transfer
  bool reused_connection = false;  // no new connection was opened for it (keep-alive)

  bool ok() const { return error.empty() && status != 0; }
  bool hasHeader(std::string_view name) const;
  std::string header(std::string_view name) const;  // "" when absent
  // The body parsed as JSON; null when it is not JSON.
  Json json() const;
};

// Receives each piece of a body as it arrives; return false to hang up (the connection is
// closed at once, as a client that goes away mid-stream).
using ChunkCallback = std::function<bool(std::string_view piece)>;

// One libcurl easy handle; successive requests reuse its connection when the server keeps it
// alive. Not thread-safe: one per thread.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `body` is sent when non-empty or when the method is POST/PUT/PATCH. "Expect:" is never
  // sent. A `timeout` bounds the whole transfer (status 0 and `error` set when it fires).
  HttpResponse request(const std::string& method, const std::string& url,
                       const HeaderList& headers = {}, const std::string& body = {},
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // As request(), calling `on_piece` for every piece of the body as it arrives (the body is
  // also collected in the result).
  HttpResponse stream(const std::string& method, const std::string& url, const HeaderList& headers,
                      const std::string& body, const ChunkCallback& on_piece,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

 private:
  HttpResponse perform(const std::string& method, const std::string& url, const HeaderList& headers,
                       const std::string& body, const ChunkCallback* on_piece,
                       std::chrono::milliseconds timeout);
  void* curl_;
};

// One-shot helpers on a fresh connection.
HttpResponse httpGet(const std::string& url, const HeaderList& headers = {},
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
HttpResponse httpPost(const std::string& url, const std::string& body,
                      const HeaderList& headers = {},
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// A plain TCP connection to 127.0.0.1:<port> for bytes that are not (valid) HTTP, huge
// headers and slow clients.
class RawConnection {
 public:
  explicit RawConnection(int port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  // errno of a failed connect (ECONNREFUSED, ...), 0 when connected.
  int connectError() const { return connect_errno_; }
  // Sends everything; false when the peer is gone.
  bool send(std::string_view bytes);
  // Reads what arrives within `timeout`, returning as soon as `done` says the bytes so far
  // are enough (or the peer closes). Appends to `received()`.
  std::string readUntil(const std::function<bool(const std::string&)>& done,
                        std::chrono::milliseconds timeout);
  // Reads until the peer closes the connection or `timeout`. Returns all bytes read so far.
  std::string readUntilClose(std::chrono::milliseconds timeout);
  // Reads one whole HTTP response (head and Content-Length or chunked body).
  std::string readResponse(std::chrono::milliseconds timeout);
  // True once a read saw EOF or a reset.
  bool closedByPeer() const { return closed_by_peer_; }
  const std::string& received() const { return received_; }
  void close();

 private:
  int fd_ = -1;
  int connect_errno_ = 0;
  bool closed_by_peer_ = false;
  std::string received_;
  size_t consumed_ = 0;  // bytes of received_ already returned by readResponse()
};

// True when a TCP connect to 127.0.0.1:<port> is refused.
bool connectRefused(int port);

// The status code of the first HTTP status line in `raw` (0 when there is none).
int statusOf(const std::string& raw);

// The events of an SSE body framed as OpenAI does ("data: <payload>\n\n"): the payloads in
// order. A block that is not exactly one "data: " line is returned as "<malformed: ...>" so
// that a test sees it; an unterminated last block as "<unterminated: ...>".
std::vector<std::string> sseEvents(std::string_view body);

// Sums the Prometheus samples of `name` whose labels include every pair of `labels`
// (exposition text format). Returns nullopt when no sample matches.
std::optional<double> metricValue(std::string_view text, std::string_view name,
                                  const std::map<std::string, std::string>& labels = {});

}  // namespace sytest
