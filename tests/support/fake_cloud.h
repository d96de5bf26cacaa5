// FakeCloud: the shared body of the fake cloud APIs (FakeOpenAI, FakeAnthropic, FakeGemini),
// each a loopback HTTP server that answers chat requests in its API's exact wire format.
//
// The answer is derived from the request: "echo: " and the last user message's text, streamed
// one word per event; usage is a function of the request. Faults are queued: each chat request
// takes the next one (first in, first out); with the queue empty, requests get the normal
// answer after defaultLatency(), stream events defaultInterval() apart. Every fault works the
// same way for every API; only the bytes differ.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/loopback_server.h"

namespace sytest {

using Json = nlohmann::json;

struct Fault {
  enum class Kind {
    kNone,           // the normal answer (still subject to `latency` and `interval`)
    kStatus,         // `status` with an error body in the API's shape (or `body`) and `headers`
    kMalformedJson,  // 200 application/json whose body is not JSON
    kGarbage,        // bytes that are not HTTP at all, then close
    kCutStream,      // streamed: `after_chunks` content events, then close without ending
                     // the chunked body; non-streamed: half the promised body, then close
    kReset,          // `after_chunks` content events (0: nothing at all), then a TCP RST
    kEndless,        // streamed: content events every `interval` until the client goes away
    kHang,           // read the request and never answer until the client goes away
    kEmptyClose,     // read the request and close without a byte
    kStreamError,    // streamed: `after_chunks` content events, then the API's own in-stream
                     // error event (`message`), then the end of the body
  };
  Kind kind = Kind::kNone;
  Millis latency{0};   // before the first byte of the answer
  Millis interval{0};  // between streamed events (a slow drip); 0 keeps the default
  int status = 0;
  std::string message;     // kStatus, kStreamError: the error's message
  std::string error_type;  // kStatus: the error's type ("" picks the API's usual one)
  std::optional<std::string> param;  // kStatus (OpenAI): error.param
  std::optional<std::string> code;   // kStatus (OpenAI): error.code
  std::string body;                  // kStatus: sent verbatim instead of the API's error shape
  Headers headers;
  int after_chunks = 0;

  static Fault none() { return {}; }
  static Fault delay(Millis latency) {
    Fault f;
    f.latency = latency;
    return f;
  }
  // An error in the API's own shape.
  static Fault error(int status, std::string message, std::string type = "",
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
  static Fault streamError(int after_chunks, std::string message) {
    Fault f = of(Kind::kStreamError, after_chunks);
    f.message = std::move(message);
    return f;
  }

 private:
  static Fault of(Kind kind, int after_chunks = 0) {
    Fault f;
    f.kind = kind;
    f.after_chunks = after_chunks;
    return f;
  }
};

class FakeCloud {
 public:
  virtual ~FakeCloud();

  int port() const { return server_.port(); }
  // What a provider's base_url should be ("http://127.0.0.1:<port>/v1", ...).
  virtual std::string baseUrl() const = 0;

  // The next chat request takes this fault (after the ones already queued).
  void pushFault(Fault fault);
  void clearFaults();
  void setDefaultLatency(Millis latency);
  void setDefaultInterval(Millis interval);
  // When false, every answer closes its connection ("Connection: close"), so that each
  // request arrives on a fresh connection. A client may transparently resend a request whose
  // reused keep-alive connection died without a byte of answer; tests of such faults turn
  // keep-alive off to see the fault itself.
  void setKeepAlive(bool keep_alive);

  // Chat requests received (any outcome).
  int chatRequestCount() const;
  std::optional<Request> lastChatRequest() const;
  // The last chat request's body parsed (null when none or not JSON).
  Json lastChatBody() const;

  LoopbackServer& server() { return server_; }

 protected:
  FakeCloud();
  // Every subclass calls this first in its destructor, so that no request reaches a
  // half-destroyed object.
  void stop() { server_.stop(); }

  // What a subclass says about its API.
  virtual bool isChat(const Request& req) const = 0;
  virtual bool isStream(const Request& req, const Json& body) const = 0;
  // A request the API would refuse: the 400 body; nullopt when fine.
  virtual std::optional<std::string> refuse(const Json& body) const = 0;
  virtual std::string errorBody(int status, const Fault& fault) const = 0;
  // The whole non-streamed answer.
  virtual std::string answer(const Json& body, const std::string& id) const = 0;
  // The words of the answer, in the order a stream carries them.
  virtual std::vector<std::string> pieces(const Json& body) const = 0;
  // Stream events (each a whole "event:/data:" frame ending in a blank line).
  virtual std::vector<std::string> streamOpening(const Json& body, const std::string& id) const = 0;
  virtual std::string streamPiece(const Json& body, const std::string& id,
                                  const std::string& piece) const = 0;
  virtual std::vector<std::string> streamClosing(const Json& body, const std::string& id) const = 0;
  virtual std::string streamErrorEvent(const std::string& message) const = 0;
  // Anything that is not a chat request (model lists, wrong URLs).
  virtual void handleOther(const Request& req, ResponseWriter& w);

  static std::string sse(const Json& payload) { return "data: " + payload.dump() + "\n\n"; }
  static std::string sseEvent(const std::string& event, const Json& payload) {
    return "event: " + event + "\ndata: " + payload.dump() + "\n\n";
  }

 private:
  void handle(const Request& req, ResponseWriter& w);
  void handleChat(const Request& req, ResponseWriter& w, const Fault& fault);
  void stream(const Json& body, ResponseWriter& w, const Fault& fault, const std::string& id);
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

// The words of "echo: <text>" as a stream carries them: "echo:", " w1", " w2", ...
std::vector<std::string> echoPieces(const std::string& text);
int countWords(const std::string& s);

}  // namespace sytest
