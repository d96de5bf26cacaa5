#include "tests/support/fake_anthropic.h"

#include <mutex>

namespace sytest {
namespace {

std::string blocksText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (!content.is_array()) return out;
  for (const auto& block : content) {
    if (block.is_object() && block.value("type", "") == "text" && block.contains("text") &&
        block["text"].is_string()) {
      if (!out.empty()) out += " ";
      out += block["text"].get<std::string>();
    }
  }
  return out;
}

Json anthropicError(const std::string& type, const std::string& message) {
  return Json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

bool thinkingWanted(const Json& body) {
  return body.contains("thinking") && body["thinking"].is_object() &&
         body["thinking"].value("type", "") == "enabled";
}

std::string thoughtFor(const Json& body) { return "Thinking about " + FakeAnthropic::replyFor(body); }

// Where the text block sits: after the thinking block when there is one.
int textIndex(const Json& body) { return thinkingWanted(body) ? 1 : 0; }

}  // namespace

std::string FakeAnthropic::signatureFor(const std::string& id) { return "sig-" + id; }

Json FakeAnthropic::usageFor(const Json& body) const {
  // Prompt caching: a body with a cache_control marker writes its prompt to the cache the first
  // time (cache_creation_input_tokens) and reads it afterwards (cache_read_input_tokens); the
  // 3 tokens of the last turn stay input_tokens.
  const int64_t total = inputTokensFor(body);
  int64_t created = 0, read = 0;
  if (body.dump().find("\"cache_control\"") != std::string::npos && total > 3) {
    std::string key = body.value("system", Json()).dump();
    std::lock_guard<std::mutex> lock(cache_mu_);
    (cached_prompts_.insert(key).second ? created : read) = total - 3;
  }
  return Json{{"input_tokens", total - created - read},
              {"cache_creation_input_tokens", created},
              {"cache_read_input_tokens", read}};
}

std::string FakeAnthropic::replyFor(const Json& request) {
  std::string last_user;
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const auto& m : request["messages"]) {
      if (m.is_object() && m.value("role", "") == "user" && m.contains("content")) {
        last_user = blocksText(m["content"]);
      }
    }
  }
  return "echo: " + last_user;
}

int64_t FakeAnthropic::inputTokensFor(const Json& request) {
  int64_t n = 0;
  if (request.contains("system")) n += countWords(blocksText(request["system"]));
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const auto& m : request["messages"]) {
      n += 3 + (m.is_object() && m.contains("content") ? countWords(blocksText(m["content"])) : 0);
    }
  }
  return n;
}

std::vector<std::string> FakeAnthropic::pieces(const Json& body) const {
  return echoPieces(replyFor(body).substr(6));
}

std::optional<std::string> FakeAnthropic::refuse(const Json& body) const {
  if (!body.contains("model") || !body["model"].is_string()) {
    return anthropicError("invalid_request_error", "model: Field required").dump();
  }
  if (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer()) {
    return anthropicError("invalid_request_error", "max_tokens: Field required").dump();
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return anthropicError("invalid_request_error", "messages: Field required").dump();
  }
  return std::nullopt;
}

std::string FakeAnthropic::errorBody(int status, const Fault& f) const {
  std::string type = f.error_type;
  if (type.empty()) {
    switch (status) {
      case 401: type = "authentication_error"; break;
      case 403: type = "permission_error"; break;
      case 404: type = "not_found_error"; break;
      case 413: type = "request_too_large"; break;
      case 429: type = "rate_limit_error"; break;
      case 529: type = "overloaded_error"; break;
      default: type = status >= 500 ? "api_error" : "invalid_request_error";
    }
  }
  return anthropicError(type, f.message).dump();
}

std::string FakeAnthropic::answer(const Json& body, const std::string& id) const {
  int64_t out_tokens = static_cast<int64_t>(pieces(body).size());
  Json content = Json::array();
  if (thinkingWanted(body)) {
    content.push_back(
        {{"type", "thinking"}, {"thinking", thoughtFor(body)}, {"signature", signatureFor(id)}});
  }
  content.push_back({{"type", "text"}, {"text", replyFor(body)}});
  Json usage = usageFor(body);
  usage["output_tokens"] = out_tokens;
  Json message = {{"id", "msg_" + id},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", body["model"]},
                  {"content", std::move(content)},
                  {"stop_reason", "end_turn"},
                  {"stop_sequence", nullptr},
                  {"usage", std::move(usage)}};
  return message.dump();
}

std::vector<std::string> FakeAnthropic::streamOpening(const Json& body,
                                                      const std::string& id) const {
  Json start = {{"type", "message_start"},
                {"message",
                 {{"id", "msg_" + id},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"content", Json::array()},
                  {"model", body["model"]},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", usageFor(body)}}}};
  start["message"]["usage"]["output_tokens"] = 1;
  std::vector<std::string> events = {sseEvent("message_start", start)};
  if (thinkingWanted(body)) {
    // A thinking block: its text, then its signature, as Anthropic streams them.
    auto delta = [](Json d) {
      return Json{{"type", "content_block_delta"}, {"index", 0}, {"delta", std::move(d)}};
    };
    events.push_back(sseEvent(
        "content_block_start",
        Json{{"type", "content_block_start"},
             {"index", 0},
             {"content_block", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}}}));
    events.push_back(sseEvent(
        "content_block_delta", delta({{"type", "thinking_delta"}, {"thinking", thoughtFor(body)}})));
    events.push_back(sseEvent(
        "content_block_delta",
        delta({{"type", "signature_delta"}, {"signature", signatureFor(id)}})));
    events.push_back(sseEvent("content_block_stop",
                              Json{{"type", "content_block_stop"}, {"index", 0}}));
  }
  Json block = {{"type", "content_block_start"},
                {"index", textIndex(body)},
                {"content_block", {{"type", "text"}, {"text", ""}}}};
  events.push_back(sseEvent("content_block_start", block));
  events.push_back(sseEvent("ping", Json{{"type", "ping"}}));
  return events;
}

std::string FakeAnthropic::streamPiece(const Json& body, const std::string&,
                                       const std::string& piece) const {
  return sseEvent("content_block_delta",
                  Json{{"type", "content_block_delta"},
                       {"index", textIndex(body)},
                       {"delta", {{"type", "text_delta"}, {"text", piece}}}});
}

std::vector<std::string> FakeAnthropic::streamClosing(const Json& body, const std::string&) const {
  int64_t out_tokens = static_cast<int64_t>(pieces(body).size());
  return {sseEvent("content_block_stop",
                   Json{{"type", "content_block_stop"}, {"index", textIndex(body)}}),
          sseEvent("message_delta",
                   Json{{"type", "message_delta"},
                        {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                        {"usage", {{"output_tokens", out_tokens}}}}),
          sseEvent("message_stop", Json{{"type", "message_stop"}})};
}

std::string FakeAnthropic::streamErrorEvent(const std::string& message) const {
  return sseEvent("error", anthropicError("overloaded_error", message));
}

}  // namespace sytest
