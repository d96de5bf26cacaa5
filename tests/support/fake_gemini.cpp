#include "tests/support/fake_gemini.h"

namespace sytest {
namespace {

constexpr const char* kModelVersion = "gemini-fake-001";

bool endsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string partsText(const Json& content) {
  std::string out;
  if (!content.is_object() || !content.contains("parts") || !content["parts"].is_array()) {
    return out;
  }
  for (const auto& part : content["parts"]) {
    if (part.is_object() && part.contains("text") && part["text"].is_string()) {
      if (!out.empty()) out += " ";
      out += part["text"].get<std::string>();
    }
  }
  return out;
}

std::string statusName(int code) {
  switch (code) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return code >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

Json googleError(int code, const std::string& message, std::string status = "") {
  if (status.empty()) status = statusName(code);
  return Json{{"error", {{"code", code}, {"message", message}, {"status", status}}}};
}

Json response(const std::string& id, const std::string& text, const Json& finish,
              const Json& usage) {
  Json candidate = {{"content", {{"parts", Json::array({{{"text", text}}})}, {"role", "model"}}},
                    {"index", 0}};
  if (!finish.is_null()) candidate["finishReason"] = finish;
  Json out = {{"candidates", Json::array({candidate})},
              {"modelVersion", kModelVersion},
              {"responseId", id}};
  if (!usage.is_null()) out["usageMetadata"] = usage;
  return out;
}

}  // namespace

std::string FakeGemini::replyFor(const Json& request) {
  std::string last_user;
  if (request.contains("contents") && request["contents"].is_array()) {
    for (const auto& c : request["contents"]) {
      if (c.is_object() && c.value("role", "user") == "user") {
        std::string text = partsText(c);
        if (!text.empty()) last_user = text;
      }
    }
  }
  return "echo: " + last_user;
}

int64_t FakeGemini::promptTokensFor(const Json& request) {
  int64_t n = 0;
  if (request.contains("systemInstruction")) n += countWords(partsText(request["systemInstruction"]));
  if (request.contains("contents") && request["contents"].is_array()) {
    for (const auto& c : request["contents"]) n += 3 + countWords(partsText(c));
  }
  return n;
}

bool FakeGemini::isChat(const Request& req) const {
  std::string path = req.path();
  return endsWith(path, ":generateContent") || endsWith(path, ":streamGenerateContent");
}

bool FakeGemini::isStream(const Request& req, const Json&) const {
  return endsWith(req.path(), ":streamGenerateContent");
}

std::vector<std::string> FakeGemini::pieces(const Json& body) const {
  return echoPieces(replyFor(body).substr(6));
}

std::optional<std::string> FakeGemini::refuse(const Json& body) const {
  if (!body.contains("contents") || !body["contents"].is_array() || body["contents"].empty()) {
    return googleError(400, "* GenerateContentRequest.contents: contents is not specified").dump();
  }
  return std::nullopt;
}

std::string FakeGemini::errorBody(int status, const Fault& f) const {
  return googleError(status, f.message, f.error_type).dump();
}

std::string FakeGemini::answer(const Json& body, const std::string& id) const {
  int64_t prompt = promptTokensFor(body);
  int64_t out = static_cast<int64_t>(pieces(body).size());
  Json usage = {{"promptTokenCount", prompt},
                {"candidatesTokenCount", out},
                {"totalTokenCount", prompt + out}};
  return response(id, replyFor(body), "STOP", usage).dump();
}

std::string FakeGemini::streamPiece(const Json&, const std::string& id,
                                    const std::string& piece) const {
  return sse(response(id, piece, nullptr, nullptr));
}

std::vector<std::string> FakeGemini::streamClosing(const Json& body, const std::string& id) const {
  int64_t prompt = promptTokensFor(body);
  int64_t out = static_cast<int64_t>(pieces(body).size());
  Json usage = {{"promptTokenCount", prompt},
                {"candidatesTokenCount", out},
                {"totalTokenCount", prompt + out}};
  return {sse(response(id, "", "STOP", usage))};
}

std::string FakeGemini::streamErrorEvent(const std::string& message) const {
  return sse(googleError(503, message));
}

void FakeGemini::handleOther(const Request& req, ResponseWriter& w) {
  if (req.method != "POST" || !endsWith(req.path(), ":batchEmbedContents")) {
    return FakeCloud::handleOther(req, w);
  }
  FakeEmbeddings::Turn turn = embeddings_.begin(req.body);
  if (turn.latency.count() > 0 && !w.pause(turn.latency)) return;
  if (turn.status != 0) {
    w.send(turn.status, googleError(turn.status, turn.message).dump());
    return;
  }
  Json body = Json::parse(req.body, nullptr, false);
  if (!body.is_object() || !body.contains("requests") || !body["requests"].is_array() ||
      body["requests"].empty()) {
    w.send(400, googleError(400, "* BatchEmbedContentsRequest.requests: is required").dump());
    return;
  }
  if (body["requests"].size() > 100) {
    w.send(400, googleError(400, "* BatchEmbedContentsRequest.requests: at most 100 requests "
                                 "can be in one batch")
                    .dump());
    return;
  }
  // Each request names the model of the URL ("models/<m>", as the API requires).
  const std::string path = req.path();
  const std::string model = path.substr(path.rfind("/models/") + 1,
                                        path.size() - path.rfind("/models/") - 1 -
                                            std::string(":batchEmbedContents").size());
  Json embeddings = Json::array();
  int64_t tokens = 0;
  for (const Json& r : body["requests"]) {
    const std::string text = partsText(r.value("content", Json::object()));
    if (r.value("model", "") != model || text.empty()) {
      w.send(400, googleError(400, "* BatchEmbedContentsRequest.requests: invalid request")
                      .dump());
      return;
    }
    const int dims = r.value("outputDimensionality", FakeEmbeddings::kDefaultDimensions);
    embeddings.push_back({{"values", FakeEmbeddings::vectorFor(Json(text), dims)}});
    tokens += FakeEmbeddings::tokensFor(Json(text));
  }
  embeddings_.served(tokens);
  w.send(200, Json{{"embeddings", std::move(embeddings)}}.dump());
}

}  // namespace sytest
