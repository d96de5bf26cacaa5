// OpenAI's Responses API as the OpenAI wire's pass-through (routers/openai_wire.h): the body
// sent, the Response object read, and the event stream read.
#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "api/json_text.h"
#include "api/openai_json.h"
#include "api/responses.h"
#include "api/saturating.h"
#include "policies/spend.h"
#include "routers/openai_wire.h"

namespace routers {
namespace {

using api::Json;
using api::Status;

std::string text(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Status upstreamError(std::string message) {
  return Status(api::ErrorCode::kUpstreamError, std::move(message));
}

int64_t count(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? std::max<int64_t>(0, it->get<int64_t>()) : 0;
}

// The calls of the provider's own tools among a Response object's output items, by item type.
std::vector<std::pair<std::string, int64_t>> serverToolCalls(const Json& response) {
  std::vector<std::pair<std::string, int64_t>> calls;
  auto output = response.find("output");
  if (output == response.end() || !output->is_array()) return calls;
  for (const Json& item : *output) {
    if (!item.is_object()) continue;
    const std::string type = text(item, "type");
    if (!policies::isServerToolItem(type)) continue;  // the client's calls (functions, computer)
    auto it = std::find_if(calls.begin(), calls.end(),
                           [&](const auto& c) { return c.first == type; });
    if (it == calls.end()) calls.emplace_back(type, 1);
    else ++it->second;
  }
  return calls;
}

// A Response object's usage; nullopt when it reports none.
std::optional<api::Usage> usageOf(const Json& response) {
  auto u = response.find("usage");
  if (u == response.end() || !u->is_object()) return std::nullopt;
  api::Usage usage;
  usage.service_tier = text(response, "service_tier");
  usage.server_tool_calls = serverToolCalls(response);
  usage.prompt_tokens = count(*u, "input_tokens");
  usage.completion_tokens = count(*u, "output_tokens");
  usage.total_tokens = api::saturatingAdd(usage.prompt_tokens, usage.completion_tokens);
  if (auto d = u->find("input_tokens_details"); d != u->end() && d->is_object()) {
    usage.cached_prompt_tokens = count(*d, "cached_tokens");
  }
  if (auto d = u->find("output_tokens_details"); d != u->end() && d->is_object()) {
    usage.reasoning_tokens = count(*d, "reasoning_tokens");
  }
  return usage;
}

// The error a failed Response object (or an `error` event) reports.
Status reportedError(const Json& error, std::string_view where) {
  std::string message = "no message";
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    message = error["message"].get<std::string>();
  }
  return upstreamError("reported " + std::string(where) + ": " + message);
}

// finish_reason for a finished Response's status and whether it called functions.
std::string finishReason(const Json& response, bool calls) {
  if (response.is_object() && response.value("status", Json()) == "incomplete") {
    const Json details = response.value("incomplete_details", Json());
    const Json reason = details.is_object() ? details.value("reason", Json()) : Json();
    return reason == "content_filter" ? "content_filter" : "length";
  }
  return calls ? "tool_calls" : "stop";
}

// One output item into the answer's message.
void readOutputItem(const Json& item, api::Message& m) {
  if (!item.is_object()) return;
  const std::string type = text(item, "type");
  if (type == "message") {
    const Json content = item.value("content", Json::array());
    if (!content.is_array()) return;
    std::string joined = m.content.isNull() ? "" : m.content.text;
    for (const Json& part : content) {
      if (!part.is_object()) continue;
      if (part.value("type", Json()) == "output_text") joined += text(part, "text");
      if (part.value("type", Json()) == "refusal") m.refusal = text(part, "refusal");
    }
    m.content = api::Content::ofText(std::move(joined));
  } else if (type == "function_call") {
    api::ToolCall call;
    call.id = text(item, "call_id");
    call.name = text(item, "name");
    call.arguments = text(item, "arguments");
    m.tool_calls.push_back(std::move(call));
  } else if (type == "reasoning") {
    for (const Json& s : item.value("summary", Json::array())) {
      if (!s.is_object()) continue;
      m.reasoning_content = m.reasoning_content.value_or("") + text(s, "text");
    }
  }
}

// ---- streaming -------------------------------------------------------------------------------

class ResponsesStreamDecoder : public StreamDecoder {
 public:
  explicit ResponsesStreamDecoder(std::string model) : model_(std::move(model)) {}

  Status onEvent(const api::SseEvent& event, std::vector<api::ChatChunk>& out) override {
    const size_t before = out.size();
    Status st = decode(event, out);
    if (st.ok()) st = carryNative(event, out, before);
    return st;
  }

  api::StatusOr<api::ChatResponse> finish() override {
    if (!done_) return upstreamError("ended the stream before response.completed");
    api::ChatResponse summary;
    summary.id = id_;
    summary.created = created_;
    summary.model = model_;
    summary.usage = usage_;
    summary.native = std::move(pending_native_);
    return summary;
  }

 private:
  // Each event goes on, as it came, with the chunk it produced. Events that produce none wait
  // for the next chunk until the first chunk has gone (nothing reaches the client, and a
  // fallback may still take over, before the upstream has answered something); after it,
  // they go at once in a chunk of their own.
  Status carryNative(const api::SseEvent& event, std::vector<api::ChatChunk>& out, size_t before) {
    if (!event.event.empty()) pending_native_ += "event: " + event.event + "\n";
    pending_native_ += api::sseData(event.data);
    if (out.size() == before) {
      if (!answered_ && pending_native_.size() > kMaxNativeHeldBytes) {
        return upstreamError("sent more than " + std::to_string(kMaxNativeHeldBytes) +
                             " bytes of events before any content");
      }
      if (!answered_) return {};
      out.push_back(newChunk());
    }
    answered_ = true;
    out[before].native = std::move(pending_native_);
    pending_native_.clear();
    return {};
  }

  api::ChatChunk newChunk() const {
    api::ChatChunk c;
    c.id = id_;
    c.created = created_;
    c.model = model_;
    return c;
  }

  // A chunk of one choice with `delta` (the role on the first).
  void emit(api::Delta delta, std::vector<api::ChatChunk>& out,
            std::optional<std::string> finish = std::nullopt) {
    api::ChatChunk c = newChunk();
    api::ChunkChoice choice;
    choice.delta = std::move(delta);
    if (!role_sent_) {
      choice.delta.role = api::Role::kAssistant;
      role_sent_ = true;
    }
    choice.finish_reason = std::move(finish);
    c.choices.push_back(std::move(choice));
    out.push_back(std::move(c));
  }

  void readResponse(const Json& r) {
    if (id_.empty()) id_ = text(r, "id");
    if (auto m = text(r, "model"); !m.empty()) model_ = m;
    if (auto c = r.find("created_at"); created_ == 0 && c != r.end() && c->is_number_integer()) {
      created_ = c->get<int64_t>();
    }
  }

  Status decode(const api::SseEvent& event, std::vector<api::ChatChunk>& out) {
    if (event.data.empty()) return {};
    Json data = Json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded() || !data.is_object()) {
      return upstreamError("sent a malformed stream event '" + event.event + "'");
    }
    std::string type = text(data, "type");
    if (type.empty()) type = event.event;
    if (type == "error") return reportedError(data, "an error in the stream");
    const Json response = data.value("response", Json());
    if (response.is_object()) readResponse(response);
    if (type == "response.failed") {
      return reportedError(response.is_object() ? response.value("error", Json()) : Json(),
                           "a failed response");
    }
    if (type == "response.completed" || type == "response.incomplete") {
      done_ = true;
      usage_ = response.is_object() ? usageOf(response) : std::nullopt;
      emit({}, out, finishReason(response, calls_ > 0));
      return {};
    }
    if (type == "response.output_item.added") return itemAdded(data, out);
    api::Delta delta;
    if (type == "response.output_text.delta") {
      delta.content = text(data, "delta");
    } else if (type == "response.refusal.delta") {
      delta.refusal = text(data, "delta");
    } else if (type == "response.reasoning_summary_text.delta" ||
               type == "response.reasoning_text.delta") {
      delta.reasoning_content = text(data, "delta");
    } else if (type == "response.function_call_arguments.delta") {
      auto call = calls_by_item_.find(text(data, "item_id"));
      if (call == calls_by_item_.end()) return {};
      api::ToolCallDelta d;
      d.index = call->second;
      d.arguments = text(data, "delta");
      delta.tool_calls.push_back(std::move(d));
    } else {
      return {};  // lifecycle, done events, server tools' progress: carried natively only
    }
    emit(std::move(delta), out);
    return {};
  }

  Status itemAdded(const Json& data, std::vector<api::ChatChunk>& out) {
    const Json item = data.value("item", Json());
    if (!item.is_object()) return upstreamError("sent response.output_item.added without an item");
    if (item.value("type", Json()) == "message") {
      if (!role_sent_) emit({}, out);
      return {};
    }
    if (item.value("type", Json()) != "function_call") return {};
    api::ToolCallDelta d;
    d.index = calls_++;
    calls_by_item_[text(item, "id")] = d.index;
    d.id = text(item, "call_id");
    d.type = "function";
    d.name = text(item, "name");
    d.arguments = text(item, "arguments");
    api::Delta delta;
    delta.tool_calls.push_back(std::move(d));
    emit(std::move(delta), out);
    return {};
  }

  std::string id_;
  std::string model_;  // the request's until the upstream names one
  int64_t created_ = 0;
  bool done_ = false;  // response.completed or response.incomplete seen
  bool role_sent_ = false;
  bool answered_ = false;  // a chunk has gone
  int calls_ = 0;
  std::map<std::string, int> calls_by_item_;  // function_call item id -> tool_calls index
  std::optional<api::Usage> usage_;
  std::string pending_native_;  // framed events not yet handed on
};

}  // namespace

bool sentAsResponses(const api::ChatRequest& request, const OpenAIWireConfig& config) {
  return config.responses && request.native_body && request.native_api == api::kResponsesApi;
}

api::StatusOr<std::string> nativeResponsesBody(const api::ChatRequest& request) {
  if (!request.native_body || request.native_api != api::kResponsesApi) {
    return Status(api::ErrorCode::kInternal, "the request carries no Responses API body");
  }
  std::optional<Json> cap;
  if (auto max = request.maxOutputTokens()) cap = Json(*max);
  std::optional<Json> stream;
  if (request.stream) stream = Json(true);
  auto body =
      api::editTopLevelMembers(*request.native_body, {{"model", Json(request.model)},
                                                      {"stream", stream},
                                                      {"store", Json(false)},
                                                      {"max_output_tokens", cap},
                                                      {"previous_response_id", std::nullopt},
                                                      {"background", std::nullopt},
                                                      // the gateway's own field (router.h)
                                                      {"route_hint", std::nullopt}});
  if (!body.ok()) return Status(api::ErrorCode::kInternal, body.status().message());
  return body;
}

api::StatusOr<api::ChatResponse> fromResponsesObject(const Json& body) {
  if (!body.is_object()) return upstreamError("sent a response that is not an object");
  const std::string status = text(body, "status");
  if (status == "failed") return reportedError(body.value("error", Json()), "a failed response");
  if (status != "completed" && status != "incomplete") {
    return upstreamError("sent a response with status '" + status + "'");
  }
  auto output = body.find("output");
  if (output == body.end() || !output->is_array()) {
    return upstreamError("sent a response without 'output'");
  }
  api::ChatResponse r;
  r.id = text(body, "id");
  r.model = text(body, "model");
  r.service_tier = text(body, "service_tier");
  if (auto c = body.find("created_at"); c != body.end() && c->is_number_integer()) {
    r.created = c->get<int64_t>();
  }
  api::Choice choice;
  choice.message.role = api::Role::kAssistant;
  for (const Json& item : *output) readOutputItem(item, choice.message);
  choice.finish_reason = finishReason(body, !choice.message.tool_calls.empty());
  r.choices.push_back(std::move(choice));
  r.usage = usageOf(body);
  return r;
}

std::unique_ptr<StreamDecoder> newResponsesStreamDecoder(const api::ChatRequest& request) {
  return std::make_unique<ResponsesStreamDecoder>(request.model);
}

}  // namespace routers
