// FakeOpenAI: an OpenAI-compatible upstream for tests, on a LoopbackServer.
//
// POST /v1/chat/completions answers in OpenAI's exact wire format, non-streamed
// (chat.completion) or streamed (chat.completion.chunk events, the usage chunk when
// stream_options.include_usage, then [DONE]). The reply is derived from the request
// (replyFor) so that tests can check what came back, and usage is a function of the request
// (usageFor). GET /v1/models lists the models it has been asked about.
//
// Faults are queued: each request takes the next one (first in, first out); with the queue
// empty, requests get the normal answer (after defaultLatency(), chunks defaultInterval()
// apart).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/support/loopback_server.h"

namespace sytest {

using Json = nlohmann::json;

struct Fault {
  enum class Kind {
    kNone,           // the normal answer (still subject to `latency` and `interval`)
    kStatus,         // `status` with `body` (an OpenAI error body unless given) and `headers`
    kMalformedJson,  // 200 application/json whose body is not JSON
    kGarbage,        // bytes that are not HTTP at all, then close
    kCutStream,      // streamed: `after_chunks` content chunks, then close without ending
                     // the chunked body; non-streamed: half the promised body, then close
    kReset,          // `after_chunks` content chunks (0: nothing at all), then a TCP RST
    kEndless,        // streamed: content chunks every `interval` until the client goes away
    kHang,           // read the request and never answer until the client goes away
    kEmptyClose,     // read the request and close without a byte
  };
  Kind kind = Kind::kNone;
  Millis latency{0};   // before the first byte of the answer
  Millis interval{0};  // between streamed chunks (a slow drip); 0 keeps the default
  int status = 0;
  std::string body;
  Headers headers;
  int after_chunks = 0;

  static Fault none() { return {}; }
  static Fault delay(Millis latency) {
    Fault f;
    f.latency = latency;
    return f;
  }
  // An error in OpenAI's shape: {"error":{"message","type","param","code"}}.
  static Fault error(int status, std::string message, std::string type = "server_error",
                     std::optional<std::string> param = std::nullopt,
                     std::optional<std::string> code = std::nullopt);
  static Fault rateLimited(int retry_after_s);
  static Fault malformedJson() { return of(Kind::kMalformedJson); }
  static Fault garbage() { return of(Kind::kGarbage); }
  static Fault cutStream(int after_chunks) { return of(Kind::kCutStream, after_chunks); }
  static Fault reset(int after_chunks = 0) { return of(Kind::kReset, after_chunks); }
  static Fault slowDrip(Millis interval) {
    Fault f;
    f.interval = interval;
    return f;
  }
  static Fault endless(Millis interval) {
    Fault f = of(Kind::kEndless);
    f.interval = interval;
    return f;
  }
  static Fault hang() { return of(Kind::kHang); }
  static Fault emptyClose() { return of(Kind::kEmptyClose); }

 private:
  static Fault of(Kind kind, int after_chunks = 0) {
    Fault f;
    f.kind = kind;
    f.after_chunks = after_chunks;
    return f;
  }
};

class FakeOpenAI {
 public:
  FakeOpenAI();
  ~FakeOpenAI();

  int port() const { return server_.port(); }
  // "http://127.0.0.1:<port>/v1": what a provider's base_url should be.
  std::string baseUrl() const { return server_.url() + "/v1"; }

  // The next request takes this fault (after the ones already queued).
  void pushFault(Fault fault);
  void clearFaults();
  void setDefaultLatency(Millis latency);
  void setDefaultInterval(Millis interval);
  // When false, every answer closes its connection ("Connection: close"), so that each
  // request arrives on a fresh connection. A client may transparently resend a request whose
  // reused keep-alive connection died without a byte of answer; tests of such faults turn
  // keep-alive off to see the fault itself.
  void setKeepAlive(bool keep_alive);

  // Chat-completion requests received (any outcome).
  int chatRequestCount() const;
  std::optional<Request> lastChatRequest() const;
  // The last chat request's body parsed (null when none or not JSON).
  Json lastChatBody() const;

  LoopbackServer& server() { return server_; }

  // The assistant text the fake answers `request` with: "echo: " and the last user
  // message's text (string content, or the text parts joined with a space).
  static std::string replyFor(const Json& request);
  // The reply cut into the pieces a stream carries, in order: "echo:", " w1", " w2", ...
  static std::vector<std::string> streamPieces(const Json& request);
  // The usage the fake reports for `request`: prompt_tokens = 3 per message plus the words
  // of every message's text, completion_tokens = the number of stream pieces.
  static Json usageFor(const Json& request);

 private:
  void handle(const Request& req, ResponseWriter& w);
  void handleChat(const Request& req, ResponseWriter& w, const Fault& fault);
  void stream(const Json& body, ResponseWriter& w, const Fault& fault, const std::string& id,
              int64_t created);
  Fault nextFault();

  mutable std::mutex mu_;
  std::deque<Fault> faults_;
  Millis default_latency_{0};
  Millis default_interval_{0};
  bool keep_alive_ = true;
  int chat_requests_ = 0;
  std::optional<Request> last_chat_;
  int64_t next_id_ = 1;

  LoopbackServer server_;  // last: its threads stop before the members above go away
};

}  // namespace sytest
