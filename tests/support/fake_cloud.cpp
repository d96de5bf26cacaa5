#include "tests/support/fake_cloud.h"

#include <sstream>
#include <utility>

namespace sytest {
namespace {

constexpr Millis kMaxHang{5 * 60 * 1000};

}  // namespace

std::vector<std::string> echoPieces(const std::string& text) {
  std::istringstream in("echo: " + text);
  std::vector<std::string> pieces;
  std::string w;
  while (in >> w) pieces.push_back(pieces.empty() ? w : " " + w);
  return pieces;
}

int countWords(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

Fault Fault::error(int status, std::string message, std::string type,
                   std::optional<std::string> param, std::optional<std::string> code) {
  Fault f;
  f.kind = Kind::kStatus;
  f.status = status;
  f.message = std::move(message);
  f.error_type = std::move(type);
  f.param = std::move(param);
  f.code = std::move(code);
  return f;
}

Fault Fault::rateLimited(int retry_after_s) {
  Fault f = error(429, "Rate limit reached for requests", "", std::nullopt,
                  std::string("rate_limit_exceeded"));
  f.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return f;
}

FakeCloud::FakeCloud()
    : server_([this](const Request& req, ResponseWriter& w) { handle(req, w); }) {}

FakeCloud::~FakeCloud() { server_.stop(); }

void FakeCloud::pushFault(Fault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(std::move(fault));
}

void FakeCloud::clearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
}

void FakeCloud::setDefaultLatency(Millis latency) {
  std::lock_guard<std::mutex> lock(mu_);
  default_latency_ = latency;
}

void FakeCloud::setDefaultInterval(Millis interval) {
  std::lock_guard<std::mutex> lock(mu_);
  default_interval_ = interval;
}

void FakeCloud::setKeepAlive(bool keep_alive) {
  std::lock_guard<std::mutex> lock(mu_);
  keep_alive_ = keep_alive;
}

int FakeCloud::chatRequestCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return chat_requests_;
}

std::optional<Request> FakeCloud::lastChatRequest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_chat_;
}

Json FakeCloud::lastChatBody() const {
  auto req = lastChatRequest();
  if (!req) return nullptr;
  Json j = Json::parse(req->body, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

Fault FakeCloud::nextFault() {
  std::lock_guard<std::mutex> lock(mu_);
  Fault f;
  if (!faults_.empty()) {
    f = std::move(faults_.front());
    faults_.pop_front();
  }
  if (f.latency.count() == 0) f.latency = default_latency_;
  if (f.interval.count() == 0) f.interval = default_interval_;
  return f;
}

void FakeCloud::handleOther(const Request& req, ResponseWriter& w) {
  Fault f = Fault::error(404, "Invalid URL (" + req.method + " " + req.path() + ")");
  w.send(404, errorBody(404, f));
}

void FakeCloud::handle(const Request& req, ResponseWriter& w) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!keep_alive_) w.closeAfterResponse();
  }
  if (req.method != "POST" || !isChat(req)) {
    handleOther(req, w);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++chat_requests_;
    last_chat_ = req;
  }
  handleChat(req, w, nextFault());
}

void FakeCloud::handleChat(const Request& req, ResponseWriter& w, const Fault& fault) {
  using Kind = Fault::Kind;
  if (fault.latency.count() > 0 && !w.pause(fault.latency)) return;

  switch (fault.kind) {
    case Kind::kStatus:
      w.send(fault.status, fault.body.empty() ? errorBody(fault.status, fault) : fault.body,
             fault.headers);
      return;
    case Kind::kMalformedJson:
      w.send(200, "{\"id\": \"broken\", \"choices\": [ {\"index\": 0,");
      return;
    case Kind::kGarbage:
      w.sendRaw("SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\x01\x02\x03\r\n\r\n");
      w.close();
      return;
    case Kind::kHang:
      w.hangUntilPeerGone(kMaxHang);
      return;
    case Kind::kEmptyClose:
      w.close();
      return;
    default:
      break;
  }

  Json body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) {
    w.send(400, errorBody(400, Fault::error(400, "The request body is not valid JSON.")));
    return;
  }
  if (auto refusal = refuse(body)) {
    w.send(400, *refusal);
    return;
  }

  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = "fake" + std::to_string(next_id_++);
  }
  if (isStream(req, body) || fault.kind == Kind::kEndless) {
    stream(body, w, fault, id);
    return;
  }
  if (fault.kind == Kind::kReset) {
    w.close(/*reset=*/true);
    return;
  }
  std::string text = answer(body, id);
  if (fault.kind == Kind::kCutStream) {
    // Promise the whole body, deliver half of it, hang up.
    w.sendRaw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(text.size()) + "\r\n\r\n" + text.substr(0, text.size() / 2));
    w.close();
    return;
  }
  w.send(200, text, {{"x-request-id", "req_" + id}});
}

void FakeCloud::stream(const Json& body, ResponseWriter& w, const Fault& fault,
                       const std::string& id) {
  using Kind = Fault::Kind;
  if (fault.kind == Kind::kReset && fault.after_chunks == 0) {
    w.close(/*reset=*/true);
    return;
  }
  // Between two events: the configured drip, which also notices a client that left.
  auto gap = [&]() { return fault.interval.count() > 0 ? w.pause(fault.interval) : !w.peerGone(); };

  if (!w.sendHead(200, {{"x-request-id", "req_" + id}, {"Cache-Control", "no-cache"}})) return;
  for (const std::string& ev : streamOpening(body, id)) {
    if (!w.chunk(ev)) return;
  }

  if (fault.kind == Kind::kEndless) {
    for (int i = 0;; ++i) {
      if (!gap()) return;
      if (!w.chunk(streamPiece(body, id, " tick" + std::to_string(i)))) return;
      if (fault.interval.count() == 0 && !w.pause(Millis(1))) return;
    }
  }

  const bool stops_early = fault.kind == Kind::kCutStream || fault.kind == Kind::kReset ||
                           fault.kind == Kind::kStreamError;
  int sent = 0;
  for (const auto& piece : pieces(body)) {
    if (stops_early && sent == fault.after_chunks) break;
    if (!gap()) return;
    if (!w.chunk(streamPiece(body, id, piece))) return;
    ++sent;
  }
  switch (fault.kind) {
    case Kind::kCutStream:
      w.close();  // FIN with the chunked body unterminated
      return;
    case Kind::kReset:
      w.close(/*reset=*/true);
      return;
    case Kind::kStreamError:
      if (w.chunk(streamErrorEvent(fault.message))) w.end();
      return;
    default:
      break;
  }
  if (!gap()) return;
  for (const std::string& ev : streamClosing(body, id)) {
    if (!w.chunk(ev)) return;
  }
  w.end();
}

}  // namespace sytest
