#include "tests/support/fake_openai.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>

namespace sytest {
namespace {

constexpr int64_t kCreated = 1700000000;

Json openaiError(const std::string& message, const std::string& type,
                 const std::optional<std::string>& param, const std::optional<std::string>& code) {
  Json e = {{"message", message}, {"type", type}};
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

Json choice(Json delta, Json finish_reason = nullptr, Json logprobs = nullptr) {
  return Json::array({{{"index", 0},
                       {"delta", std::move(delta)},
                       {"logprobs", std::move(logprobs)},
                       {"finish_reason", std::move(finish_reason)}}});
}

Json tokenBytes(const std::string& token) {
  Json bytes = Json::array();
  for (unsigned char c : token) bytes.push_back(static_cast<int>(c));
  return bytes;
}

bool includeUsage(const Json& body) {
  return body.contains("stream_options") && body["stream_options"].is_object() &&
         body["stream_options"].value("include_usage", false);
}

}  // namespace

std::string FakeOpenAI::replyFor(const Json& request) {
  std::string last_user;
  if (isResponses(request)) {
    const Json& input = request["input"];
    if (input.is_string()) last_user = input.get<std::string>();
    for (const auto& item : input.is_array() ? input : Json::array()) {
      if (!item.is_object() || item.value("role", "") != "user") continue;
      last_user.clear();
      const Json content = item.value("content", Json());
      if (content.is_string()) last_user = content.get<std::string>();
      for (const auto& part : content.is_array() ? content : Json::array()) {
        if (!part.is_object() || part.value("type", "") != "input_text") continue;
        if (!last_user.empty()) last_user += " ";
        last_user += part.value("text", "");
      }
    }
  }
  if (request.contains("messages") && request["messages"].is_array()) {
    for (const auto& m : request["messages"]) {
      if (m.is_object() && m.value("role", "") == "user") last_user = messageText(m);
    }
  }
  return "echo: " + last_user;
}

std::vector<std::string> FakeOpenAI::streamPieces(const Json& request) {
  std::string reply = replyFor(request);
  return echoPieces(reply.substr(6));
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

Json FakeOpenAI::responsesUsageFor(const Json& request) {
  int64_t input = 0;
  const Json& in = request["input"];
  if (in.is_string()) input = 3 + countWords(in.get<std::string>());
  for (const auto& item : in.is_array() ? in : Json::array()) {
    input += 3 + (item.is_object() ? countWords(messageText(item)) : 0);
  }
  const int64_t reasoning = request.contains("reasoning") ? kReasoningTokens : 0;
  const int64_t output = static_cast<int64_t>(streamPieces(request).size()) + reasoning;
  return Json{{"input_tokens", input},
              {"input_tokens_details", {{"cached_tokens", std::min(input, kCachedInputTokens)}}},
              {"output_tokens", output},
              {"output_tokens_details", {{"reasoning_tokens", reasoning}}},
              {"total_tokens", input + output}};
}

std::optional<std::string> FakeOpenAI::refuse(const Json& body) const {
  auto invalid = [](const std::string& message, const std::string& param) {
    return openaiError(message, "invalid_request_error", param, std::nullopt).dump();
  };
  if (!body.contains("model") || !body["model"].is_string()) {
    return openaiError("you must provide a model parameter", "invalid_request_error",
                       std::nullopt, std::nullopt)
        .dump();
  }
  if (!isResponses(body)) return std::nullopt;
  if (body.contains("previous_response_id")) {
    return invalid("Previous response with id '" + body["previous_response_id"].dump() +
                       "' not found.",
                   "previous_response_id");
  }
  for (const auto& item : body["input"].is_array() ? body["input"] : Json::array()) {
    if (item.is_object() && item.value("type", "") == "reasoning" &&
        !item.contains("encrypted_content")) {
      return invalid("Items are not persisted when `store` is set to false.", "input");
    }
  }
  return std::nullopt;
}

std::string FakeOpenAI::errorBody(int status, const Fault& f) const {
  std::string type = f.error_type;
  if (type.empty()) {
    type = status == 429 ? "requests" : status >= 500 ? "server_error" : "invalid_request_error";
  }
  return openaiError(f.message, type, f.param, f.code).dump();
}

void FakeOpenAI::setTokenLogprob(std::optional<double> logprob) {
  std::lock_guard<std::mutex> lock(logprob_mu_);
  token_logprob_ = logprob;
}

void FakeOpenAI::setListAlternatives(bool list) {
  std::lock_guard<std::mutex> lock(logprob_mu_);
  list_alternatives_ = list;
}

Json FakeOpenAI::logprobsFor(const Json& body, const std::vector<std::string>& pieces) const {
  std::optional<double> lp;
  bool list = true;
  {
    std::lock_guard<std::mutex> lock(logprob_mu_);
    lp = token_logprob_;
    list = list_alternatives_;
  }
  if (!lp || !body.value("logprobs", false)) return nullptr;
  const int k = body.contains("top_logprobs") && body["top_logprobs"].is_number_integer()
                    ? body["top_logprobs"].get<int>()
                    : 0;
  Json content = Json::array();
  for (const std::string& piece : pieces) {
    Json top = Json::array();
    if (k > 0 && list) {
      top.push_back({{"token", piece}, {"logprob", *lp}, {"bytes", tokenBytes(piece)}});
      const double rest = std::max(1e-9, (1 - std::exp(*lp)) / k);
      for (int i = 1; i < k; ++i) {
        const std::string alt = " alt" + std::to_string(i);
        top.push_back({{"token", alt}, {"logprob", std::log(rest)}, {"bytes", tokenBytes(alt)}});
      }
    }
    content.push_back(
        {{"token", piece}, {"logprob", *lp}, {"bytes", tokenBytes(piece)}, {"top_logprobs", top}});
  }
  return Json{{"content", content}, {"refusal", nullptr}};
}

Json FakeOpenAI::responseObject(const Json& body, const std::string& id,
                                const std::string& status, Json output, Json usage) const {
  auto echo = [&](const char* key, Json fallback) {
    return body.contains(key) ? body[key] : fallback;
  };
  return Json{{"id", "resp_up" + id},
              {"object", "response"},
              {"created_at", kCreated},
              {"status", status},
              {"error", nullptr},
              {"incomplete_details", nullptr},
              {"instructions", echo("instructions", nullptr)},
              {"max_output_tokens", echo("max_output_tokens", nullptr)},
              {"model", body["model"]},
              {"output", std::move(output)},
              {"parallel_tool_calls", echo("parallel_tool_calls", true)},
              {"previous_response_id", nullptr},
              {"reasoning", echo("reasoning", {{"effort", nullptr}, {"summary", nullptr}})},
              {"service_tier", echo("service_tier", "default")},
              {"store", echo("store", true)},
              {"temperature", echo("temperature", 1.0)},
              {"text", echo("text", {{"format", {{"type", "text"}}}})},
              {"tool_choice", echo("tool_choice", "auto")},
              {"tools", echo("tools", Json::array())},
              {"top_p", echo("top_p", 1.0)},
              {"truncation", echo("truncation", "disabled")},
              {"usage", std::move(usage)},
              {"user", nullptr},
              {"metadata", echo("metadata", Json::object())}};
}

Json FakeOpenAI::reasoningItem(const Json& body, const std::string& id) const {
  Json item = {{"id", "rs_up" + id},
               {"type", "reasoning"},
               {"summary", Json::array({{{"type", "summary_text"}, {"text", "Thinking."}}})}};
  const Json include = body.value("include", Json::array());
  if (include.is_array() &&
      std::find(include.begin(), include.end(), Json("reasoning.encrypted_content")) !=
          include.end()) {
    item["encrypted_content"] = "gAAAAenc" + id;
  }
  return item;
}

Json FakeOpenAI::messageItem(const std::string& id, const std::string& text,
                             const std::string& status) const {
  Json content = Json::array();
  if (status != "in_progress") {
    content.push_back({{"type", "output_text"},
                       {"text", text},
                       {"annotations", Json::array()},
                       {"logprobs", Json::array()}});
  }
  return Json{{"id", "msg_up" + id},
              {"type", "message"},
              {"status", status},
              {"content", std::move(content)},
              {"role", "assistant"}};
}

std::string FakeOpenAI::responsesEvent(const std::string& id, Json event) const {
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    event["sequence_number"] = next_seq_[id]++;
    last_stream_ = id;
  }
  return sseEvent(event["type"].get<std::string>(), event);
}

std::vector<std::string> FakeOpenAI::responsesOpening(const Json& body,
                                                      const std::string& id) const {
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    next_seq_[id] = 0;
  }
  Json started = responseObject(body, id, "in_progress", Json::array(), nullptr);
  std::vector<std::string> out = {
      responsesEvent(id, {{"type", "response.created"}, {"response", started}}),
      responsesEvent(id, {{"type", "response.in_progress"}, {"response", started}})};
  int index = 0;
  if (body.contains("reasoning")) {
    Json item = reasoningItem(body, id);
    Json added = item;
    added["summary"] = Json::array();
    added.erase("encrypted_content");
    out.push_back(responsesEvent(
        id, {{"type", "response.output_item.added"}, {"output_index", 0}, {"item", added}}));
    out.push_back(responsesEvent(
        id, {{"type", "response.output_item.done"}, {"output_index", 0}, {"item", item}}));
    index = 1;
  }
  out.push_back(responsesEvent(id, {{"type", "response.output_item.added"},
                                    {"output_index", index},
                                    {"item", messageItem(id, "", "in_progress")}}));
  out.push_back(responsesEvent(
      id, {{"type", "response.content_part.added"},
           {"item_id", "msg_up" + id},
           {"output_index", index},
           {"content_index", 0},
           {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}}}}));
  return out;
}

std::vector<std::string> FakeOpenAI::responsesClosing(const Json& body,
                                                      const std::string& id) const {
  const int index = body.contains("reasoning") ? 1 : 0;
  const std::string text = replyFor(body);
  Json at = {{"item_id", "msg_up" + id}, {"output_index", index}, {"content_index", 0}};
  Json text_done = at;
  text_done["type"] = "response.output_text.done";
  text_done["text"] = text;
  text_done["logprobs"] = Json::array();
  Json part_done = at;
  part_done["type"] = "response.content_part.done";
  part_done["part"] = {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}};
  Json output = Json::array();
  if (index == 1) output.push_back(reasoningItem(body, id));
  output.push_back(messageItem(id, text, "completed"));
  return {responsesEvent(id, text_done), responsesEvent(id, part_done),
          responsesEvent(id, {{"type", "response.output_item.done"},
                              {"output_index", index},
                              {"item", output.back()}}),
          responsesEvent(id, {{"type", "response.completed"},
                              {"response", responseObject(body, id, "completed", output,
                                                          responsesUsageFor(body))}})};
}

std::string FakeOpenAI::answer(const Json& body, const std::string& id) const {
  if (isResponses(body)) {
    Json output = Json::array();
    if (body.contains("reasoning")) output.push_back(reasoningItem(body, id));
    output.push_back(messageItem(id, replyFor(body), "completed"));
    return responseObject(body, id, "completed", std::move(output), responsesUsageFor(body))
        .dump();
  }
  Json message = {{"role", "assistant"}, {"content", replyFor(body)}, {"refusal", nullptr}};
  Json out = {{"id", "chatcmpl-" + id},
              {"object", "chat.completion"},
              {"created", kCreated},
              {"model", body["model"]},
              {"choices", Json::array({{{"index", 0},
                                        {"message", message},
                                        {"logprobs", logprobsFor(body, streamPieces(body))},
                                        {"finish_reason", "stop"}}})},
              {"usage", usageFor(body)},
              {"service_tier", "default"},
              {"system_fingerprint", "fp_fake"}};
  return out.dump();
}

std::string FakeOpenAI::chunk(const Json& body, const std::string& id, Json choices,
                              Json usage) const {
  Json c = {{"id", "chatcmpl-" + id},
            {"object", "chat.completion.chunk"},
            {"created", kCreated},
            {"model", body["model"]},
            {"service_tier", "default"},
            {"system_fingerprint", "fp_fake"},
            {"choices", std::move(choices)}};
  if (includeUsage(body)) c["usage"] = std::move(usage);
  return sse(c);
}

std::vector<std::string> FakeOpenAI::streamOpening(const Json& body, const std::string& id) const {
  if (isResponses(body)) return responsesOpening(body, id);
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    last_stream_.clear();  // a chat stream: its error event is chat's
  }
  return {chunk(body, id, choice({{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}))};
}

std::string FakeOpenAI::streamPiece(const Json& body, const std::string& id,
                                    const std::string& piece) const {
  if (isResponses(body)) {
    const int index = body.contains("reasoning") ? 1 : 0;
    return responsesEvent(id, {{"type", "response.output_text.delta"},
                               {"item_id", "msg_up" + id},
                               {"output_index", index},
                               {"content_index", 0},
                               {"delta", piece},
                               {"logprobs", Json::array()}});
  }
  return chunk(body, id, choice({{"content", piece}}, nullptr, logprobsFor(body, {piece})));
}

std::vector<std::string> FakeOpenAI::streamClosing(const Json& body, const std::string& id) const {
  if (isResponses(body)) return responsesClosing(body, id);
  std::vector<std::string> out = {chunk(body, id, choice(Json::object(), "stop"))};
  if (includeUsage(body)) out.push_back(chunk(body, id, Json::array(), usageFor(body)));
  out.push_back("data: [DONE]\n\n");
  return out;
}

std::string FakeOpenAI::streamErrorEvent(const std::string& message) const {
  std::string stream;
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    stream = last_stream_;
  }
  if (!stream.empty()) {
    return responsesEvent(stream, {{"type", "error"},
                                   {"code", "server_error"},
                                   {"message", message},
                                   {"param", nullptr}});
  }
  return sse(openaiError(message, "server_error", std::nullopt, std::nullopt));
}

// Base64 of the little-endian float32 bytes of `v`, as OpenAI sends encoding_format base64.
static std::string base64Of(const std::vector<float>& v) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * 4, '\0');
  std::memcpy(bytes.data(), v.data(), bytes.size());  // the test hosts are little-endian
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

void FakeOpenAI::serveEmbeddings(const Request& req, ResponseWriter& w) {
  FakeEmbeddings::Turn turn = embeddings_.begin(req.body);
  if (turn.latency.count() > 0 && !w.pause(turn.latency)) return;
  if (turn.status != 0) {
    w.send(turn.status, openaiError(turn.message, turn.status == 429 ? "requests" : "server_error",
                                    std::nullopt, std::nullopt)
                            .dump());
    return;
  }
  Json body = Json::parse(req.body, nullptr, false);
  auto invalid = [&](const std::string& message, const std::string& param) {
    w.send(400, openaiError(message, "invalid_request_error", param, std::nullopt).dump());
  };
  if (!body.is_object() || !body.contains("model") || !body["model"].is_string()) {
    return invalid("you must provide a model parameter", "model");
  }
  const std::string format = body.value("encoding_format", "float");
  if (format != "float" && format != "base64") {
    return invalid("Invalid value for 'encoding_format'", "encoding_format");
  }
  Json inputs = body.contains("input") ? body["input"] : Json();
  if (inputs.is_string() || (inputs.is_array() && !inputs.empty() && inputs[0].is_number())) {
    inputs = Json::array({inputs});
  }
  if (!inputs.is_array() || inputs.empty()) return invalid("'$.input' is invalid.", "input");
  const int dims = body.value("dimensions", FakeEmbeddings::kDefaultDimensions);
  Json data = Json::array();
  int64_t tokens = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<float> v = FakeEmbeddings::vectorFor(inputs[i], dims);
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", format == "base64" ? Json(base64Of(v)) : Json(v)}});
    tokens += FakeEmbeddings::tokensFor(inputs[i]);
  }
  embeddings_.served(tokens);
  w.send(200, Json{{"object", "list"},
                   {"data", std::move(data)},
                   {"model", body["model"]},
                   {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}}
                  .dump());
}

void FakeOpenAI::handleOther(const Request& req, ResponseWriter& w) {
  if (req.method == "POST" && req.path() == "/v1/embeddings") return serveEmbeddings(req, w);
  if (req.method == "GET" && req.path() == "/v1/models") {
    Json data = Json::array();
    std::set<std::string> seen;
    for (const auto& r : server().requests()) {
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
  w.send(404, openaiError("Invalid URL (" + req.method + " " + req.path() + ")",
                          "invalid_request_error", std::nullopt, std::nullopt)
                  .dump());
}

}  // namespace sytest
