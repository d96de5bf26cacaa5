// One HTTP request and the channel its answer goes back through.
//
// The session (gateway/server.cpp) turns each parsed request into an Exchange and hands it to
// the Gateway; handlers answer through the Responder from any thread: every method posts to
// the connection's strand. Exactly one of reply() or startStream()...finish() is used.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gateway {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Exchange {
  std::string method;
  std::string target;         // path and query, as sent
  std::string authorization;  // "" when absent
  std::string api_key;            // x-api-key (Anthropic's clients), "" when absent
  std::string anthropic_version;  // anthropic-version, "" when absent
  std::string anthropic_beta;     // anthropic-beta, "" when absent
  std::string route_hint;         // x-switchyard-route-hint, "" when absent
  std::string body;
  std::string request_id;     // the client's x-request-id when sane, else generated
  std::chrono::steady_clock::time_point received;
};

class Responder {
 public:
  virtual ~Responder() = default;

  // A complete response. `headers` are added to the standard ones (x-request-id,
  // content-type, content-length).
  virtual void reply(int status, std::string body, Headers headers,
                     std::string_view content_type = "application/json") = 0;

  // Starts a 200 text/event-stream response with chunked encoding.
  virtual void startStream(Headers headers) = 0;
  // Sends one piece of the stream (already framed, e.g. "data: {...}\n\n"); an empty piece is
  // ignored.
  virtual void write(std::string data) = 0;
  // Ends the stream.
  virtual void finish() = 0;

  // `fn` runs once, on some thread, if the client goes away before the answer is complete
  // (at once if it already has). Used to cancel upstream work.
  virtual void onClientGone(std::function<void()> fn) = 0;

  // Bytes written by the handler but not yet sent to the client: lets a producer notice a
  // client that reads too slowly.
  virtual size_t pendingBytes() const = 0;

  // Backpressure: a streaming producer pauses its upstream while pendingBytes() is above
  // kPauseAboveBytes; `fn` runs (on some thread) each time the pending bytes drain to or below
  // kResumeBelowBytes after having been above kPauseAboveBytes. Replaces an earlier fn; one
  // registered after such a drain runs at once. A drain may run fn between a producer's read
  // of pendingBytes() and its pause, so a producer reads pendingBytes() again once paused.
  static constexpr size_t kPauseAboveBytes = 256u << 10;
  static constexpr size_t kResumeBelowBytes = 64u << 10;
  virtual void onDrained(std::function<void()> fn) {}
};

}  // namespace gateway
