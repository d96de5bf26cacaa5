#include "tests/support/fake_openai.h"

#include <chrono>
#include <set>
#include <sstream>
#include <utility>

namespace sytest {
namespace {

constexpr int64_t kCreated = 1700000000;
constexpr Millis kMaxHang{5 * 60 * 1000};

Json errorBody(std::string message, std::string type, std::optional<std::string> param,
               std::optional<std::string> code) {
  Json e = {{"message", std::move(message)}, {"type", std::move(type)}};
  e["param"] = param ? Json(*param) : Json(nullptr);
  e["code"] = code ? Json(*code) : Json(nullptr);
  return Json{{"error", e}};
}

std::string messageText(const Json& message) {
  const Json* content = message.contains("content") ? &message["content"] : nullptr;
  if (!content || content->is_null()) return "";
  if (content->is_string()) return content->get<std::string>();
  std::string out;
  if (content->is_array()) {
    for (const auto& part : *content) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
          part["text"].is_string()) {
        if (!out.empty()) out += " ";
        out += part["text"].get<std::string>();
      }
    }
  }
  return out;
}

int countWords(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

std::string sse(const Json& payload) { return "data: " + payload.dump() + "\n\n"; }

}  // namespace

Fault Fault::error(int status, std::string message, std::string type,
                   std::optional<std::string> param, std::optional<std::string> code) {
  Fault f;
  f.kind = Kind::kStatus;
  f.status = status;
  f.body = errorBody(std::move(message), std::move(type), std::move(param), std::move(code)).dump();
  return f;
}

Fault Fault::rateLimited(int retry_after_s) {
  Fault f = error(429, "Rate limit reached for requests", "requests", std::nullopt,
                  std::string("rate_limit_exceeded"));
  f.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return f;
}

FakeOpenAI::FakeOpenAI()
    : server_([this](const Request& req, ResponseWriter& w) { handle(req, w); }) {}

FakeOpenAI::~FakeOpenAI() { server_.stop(); }

void FakeOpenAI::pushFault(Fault fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(std::move(fault));
}

void FakeOpenAI::clearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
}

void FakeOpenAI::setDefaultLatency(Millis latency) {
  std::lock_guard<std::mutex> lock(mu_);
  default_latency_ = latency;
}

void FakeOpenAI::setDefaultInterval(Millis interval) {
  std::lock_guard<std::mutex> lock(mu_);
  default_interval_ = interval;
}

void FakeOpenAI::setKeepAlive(bool keep_alive) {
  std::lock_guard<std::mutex> lock(mu_);
  keep_alive_ = keep_alive;
}

int FakeOpenAI::chatRequestCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return chat_requests_;
}

std::optional<Request> FakeOpenAI::lastChatRequest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_chat_;
}

Json FakeOpenAI::lastChatBody() const {
  auto req = lastChatRequest();
  if (!req) return nullptr;
  Json j = Json::parse(req->body, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

std::string FakeOpenAI::replyFor(const Json& request) {
  std::string last_user;
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const auto& m : request["messages"]) {
      if (m.is_object() && m.value("role", "") == "user") last_user = messageText(m);
    }
  }
  return "echo: " + last_user;
}

std::vector<std::string> FakeOpenAI::streamPieces(const Json& request) {
  std::istringstream in(replyFor(request));
  std::vector<std::string> pieces;
  std::string w;
  while (in >> w) pieces.push_back(pieces.empty() ? w : " " + w);
  return pieces;
}

Json FakeOpenAI::usageFor(const Json& request) {
  int64_t prompt = 0;
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const auto& m : request["messages"]) prompt += 3 + countWords(messageText(m));
  }
  int64_t completion = static_cast<int64_t>(streamPieces(request).size());
  return Json{{"prompt_tokens", prompt},
              {"completion_tokens", completion},
              {"total_tokens", prompt + completion},
              {"prompt_tokens_details", {{"cached_tokens", 0}, {"audio_tokens", 0}}},
              {"completion_tokens_details", {{"reasoning_tokens", 0}, {"audio_tokens", 0}}}};
}

Fault FakeOpenAI::nextFault() {
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

void FakeOpenAI::handle(const Request& req, ResponseWriter& w) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!keep_alive_) w.closeAfterResponse();
  }
  std::string path = req.path();
  if (req.method == "POST" && path == "/v1/chat/completions") {
    Fault fault;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++chat_requests_;
      last_chat_ = req;
    }
    fault = nextFault();
    handleChat(req, w, fault);
    return;
  }
  if (req.method == "GET" && path == "/v1/models") {
    Json data = Json::array();
    std::set<std::string> seen;
    for (const auto& r : server_.requests()) {
      Json b = Json::parse(r.body, nullptr, false);
      if (b.is_object() && b.contains("model") && b["model"].is_string()) {
        seen.insert(b["model"].get<std::string>());
      }
    }
    for (const auto& id : seen) {
      data.push_back(
          {{"id", id}, {"object", "model"}, {"created", kCreated}, {"owned_by", "fake"}});
    }
    w.send(200, Json{{"object", "list"}, {"data", data}}.dump());
    return;
  }
  w.send(404, errorBody("Invalid URL (" + req.method + " " + path + ")", "invalid_request_error",
                        std::nullopt, std::nullopt)
                  .dump());
}

void FakeOpenAI::handleChat(const Request& req, ResponseWriter& w, const Fault& fault) {
  using Kind = Fault::Kind;
  if (fault.latency.count() > 0 && !w.pause(fault.latency)) return;

  switch (fault.kind) {
    case Kind::kStatus:
      w.send(fault.status, fault.body, fault.headers);
      return;
    case Kind::kMalformedJson:
      w.send(200, "{\"id\": \"chatcmpl-broken\", \"choices\": [ {\"index\": 0,");
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
    w.send(400, errorBody("We could not parse the JSON body of your request.",
                          "invalid_request_error", std::nullopt, std::nullopt)
                    .dump());
    return;
  }
  if (!body.contains("model") || !body["model"].is_string()) {
    w.send(400, errorBody("you must provide a model parameter", "invalid_request_error",
                          std::nullopt, std::nullopt)
                    .dump());
    return;
  }

  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = "chatcmpl-fake" + std::to_string(next_id_++);
  }
  bool streamed = body.value("stream", false);
  if (streamed || fault.kind == Kind::kEndless) {
    stream(body, w, fault, id, kCreated);
    return;
  }
  if (fault.kind == Kind::kReset) {
    w.close(/*reset=*/true);
    return;
  }

  Json message = {{"role", "assistant"}, {"content", replyFor(body)}, {"refusal", nullptr}};
  Json out = {{"id", id},
              {"object", "chat.completion"},
              {"created", kCreated},
              {"model", body["model"]},
              {"choices", Json::array({{{"index", 0},
                                        {"message", message},
                                        {"logprobs", nullptr},
                                        {"finish_reason", "stop"}}})},
              {"usage", usageFor(body)},
              {"service_tier", "default"},
              {"system_fingerprint", "fp_fake"}};
  std::string text = out.dump();
  if (fault.kind == Kind::kCutStream) {
    // Promise the whole body, deliver half of it, hang up.
    w.sendRaw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(text.size()) + "\r\n\r\n" + text.substr(0, text.size() / 2));
    w.close();
    return;
  }
  w.send(200, text, {{"x-request-id", "req_fake_" + id}});
}

void FakeOpenAI::stream(const Json& body, ResponseWriter& w, const Fault& fault,
                        const std::string& id, int64_t created) {
  using Kind = Fault::Kind;
  if (fault.kind == Kind::kReset && fault.after_chunks == 0) {
    w.close(/*reset=*/true);
    return;
  }
  bool include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                       body["stream_options"].value("include_usage", false);
  auto chunk = [&](Json choices, Json usage = nullptr) {
    Json c = {{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", created},
              {"model", body["model"]},
              {"service_tier", "default"},
              {"system_fingerprint", "fp_fake"},
              {"choices", std::move(choices)}};
    if (include_usage) c["usage"] = std::move(usage);
    return sse(c);
  };
  auto choice = [](Json delta, Json finish_reason = nullptr) {
    return Json::array({{{"index", 0},
                         {"delta", std::move(delta)},
                         {"logprobs", nullptr},
                         {"finish_reason", std::move(finish_reason)}}});
  };
  // Between two events: the configured drip, which also notices a client that left.
  auto gap = [&]() { return fault.interval.count() > 0 ? w.pause(fault.interval) : !w.peerGone(); };

  if (!w.sendHead(200, {{"x-request-id", "req_fake_" + id}, {"Cache-Control", "no-cache"}})) {
    return;
  }
  if (!w.chunk(chunk(choice({{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}})))) {
    return;
  }

  if (fault.kind == Kind::kEndless) {
    for (int i = 0;; ++i) {
      if (!gap()) return;
      if (!w.chunk(chunk(choice({{"content", " tick" + std::to_string(i)}})))) return;
      if (fault.interval.count() == 0 && !w.pause(Millis(1))) return;
    }
  }

  int sent = 0;
  for (const auto& piece : streamPieces(body)) {
    if ((fault.kind == Kind::kCutStream || fault.kind == Kind::kReset) &&
        sent == fault.after_chunks) {
      break;
    }
    if (!gap()) return;
    if (!w.chunk(chunk(choice({{"content", piece}})))) return;
    ++sent;
  }
  if (fault.kind == Kind::kCutStream) {
    w.close();  // FIN with the chunked body unterminated
    return;
  }
  if (fault.kind == Kind::kReset) {
    w.close(/*reset=*/true);
    return;
  }
  if (!gap()) return;
  if (!w.chunk(chunk(choice(Json::object(), "stop")))) return;
  if (include_usage && !w.chunk(chunk(Json::array(), usageFor(body)))) return;
  if (!w.chunk("data: [DONE]\n\n")) return;
  w.end();
}

}  // namespace sytest
