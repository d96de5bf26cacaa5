#include "tests/support/fake_anthropic.h"

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

}  // namespace

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
  Json message = {
      {"id", "msg_" + id},
      {"type", "message"},
      {"role", "assistant"},
      {"model", body["model"]},
      {"content", Json::array({{{"type", "text"}, {"text", replyFor(body)}}})},
      {"stop_reason", "end_turn"},
      {"stop_sequence", nullptr},
      {"usage",
       {{"input_tokens", inputTokensFor(body)},
        {"cache_creation_input_tokens", 0},
        {"cache_read_input_tokens", 0},
        {"output_tokens", out_tokens}}}};
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
                  {"usage",
                   {{"input_tokens", inputTokensFor(body)},
                    {"cache_creation_input_tokens", 0},
                    {"cache_read_input_tokens", 0},
                    {"output_tokens", 1}}}}}};
  Json block = {{"type", "content_block_start"},
                {"index", 0},
                {"content_block", {{"type", "text"}, {"text", ""}}}};
  return {sseEvent("message_start", start), sseEvent("content_block_start", block),
          sseEvent("ping", Json{{"type", "ping"}})};
}

std::string FakeAnthropic::streamPiece(const Json&, const std::string&,
                                       const std::string& piece) const {
  return sseEvent("content_block_delta",
                  Json{{"type", "content_block_delta"},
                       {"index", 0},
                       {"delta", {{"type", "text_delta"}, {"text", piece}}}});
}

std::vector<std::string> FakeAnthropic::streamClosing(const Json& body, const std::string&) const {
  int64_t out_tokens = static_cast<int64_t>(pieces(body).size());
  return {sseEvent("content_block_stop", Json{{"type", "content_block_stop"}, {"index", 0}}),
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
