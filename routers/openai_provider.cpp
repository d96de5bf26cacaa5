#include "routers/openai_provider.h"

#include <optional>

#include "api/openai_json.h"
#include "api/sse.h"
#include "routers/upstream_error.h"

namespace routers {
namespace {

// The state of one upstream call, shared by the HTTP callbacks (all on the client's thread).
struct CallState {
  std::string provider;
  std::shared_ptr<ChatSink> sink;
  bool stream = false;
  int64_t max_bytes = 0;

  HttpResponseHead head;
  std::string body;  // non-streamed body, or an error body
  api::SseParser sse;
  bool saw_done = false;
  bool saw_finish_reason = false;
  std::optional<api::Status> error;  // a failure found while reading the body
  api::ChatResponse summary;         // streamed: id, model, usage

  explicit CallState(int64_t max) : max_bytes(max), sse(static_cast<size_t>(max)) {}

  bool streaming() const { return stream && head.status == 200; }

  bool onData(std::string_view data) {
    if (!streaming()) {
      if (static_cast<int64_t>(body.size() + data.size()) > max_bytes) {
        error = api::Status(api::ErrorCode::kUpstreamError,
                            "upstream '" + provider + "' response exceeds " +
                                std::to_string(max_bytes) + " bytes");
        return false;
      }
      body.append(data);
      return true;
    }
    std::vector<api::SseEvent> events;
    if (!sse.feed(data, events)) {
      error = api::Status(api::ErrorCode::kUpstreamError,
                          "upstream '" + provider + "' sent a malformed or oversized stream event");
      return false;
    }
    for (api::SseEvent& ev : events) {
      if (!onEvent(ev)) return false;
    }
    return true;
  }

  bool onEvent(const api::SseEvent& ev) {
    if (ev.data.empty()) return true;
    if (ev.data == "[DONE]") {
      saw_done = true;
      return true;
    }
    if (ev.data.find("\"error\"") != std::string::npos) {
      // Servers report failures inside the stream as {"error": {...}}.
      auto j = nlohmann::json::parse(ev.data, nullptr, false);
      if (j.is_object() && j.contains("error") && !j.contains("choices")) {
        error = api::Status(api::ErrorCode::kUpstreamError,
                            "upstream '" + provider +
                                "' reported an error in the stream: " +
                                api::upstreamErrorMessage(ev.data));
        return false;
      }
    }
    auto chunk = api::parseChatChunk(ev.data);
    if (!chunk.ok()) {
      error = api::Status(api::ErrorCode::kUpstreamError,
                          "upstream '" + provider + "' sent a malformed chunk: " +
                              chunk.status().message());
      return false;
    }
    if (summary.id.empty()) summary.id = chunk->id;
    if (summary.model.empty()) summary.model = chunk->model;
    if (summary.created == 0) summary.created = chunk->created;
    if (summary.system_fingerprint.empty()) summary.system_fingerprint = chunk->system_fingerprint;
    if (chunk->usage) summary.usage = chunk->usage;
    for (const auto& c : chunk->choices) {
      if (c.finish_reason) saw_finish_reason = true;
    }
    if (chunk->choices.empty()) return true;  // the usage-only chunk
    chunk->usage.reset();
    sink->onChunk(std::move(chunk).value());
    return true;
  }

  void onDone(const api::Status& transport) {
    if (error) {
      sink->onFinish(*error);
      return;
    }
    if (!transport.ok()) {
      if (transport.code() == api::ErrorCode::kCancelled) {
        sink->onFinish(transport);
      } else {
        sink->onFinish(statusFromTransport(provider, transport));
      }
      return;
    }
    if (head.status != 200) {
      if (head.status >= 200 && head.status < 300) {
        sink->onFinish(api::Status(api::ErrorCode::kUpstreamError,
                                   "upstream '" + provider + "' answered HTTP " +
                                       std::to_string(head.status) + " instead of 200"));
      } else {
        sink->onFinish(statusFromUpstreamHttp(provider, head.status, body, head.headers));
      }
      return;
    }
    if (!stream) {
      auto response = api::parseChatResponse(body);
      if (!response.ok()) {
        sink->onFinish(api::Status(api::ErrorCode::kUpstreamError,
                                   "upstream '" + provider + "' sent a malformed response: " +
                                       response.status().message()));
        return;
      }
      sink->onFinish(std::move(response).value());
      return;
    }
    if (!saw_done && !saw_finish_reason) {
      sink->onFinish(api::Status(api::ErrorCode::kUpstreamError,
                                 "upstream '" + provider + "' ended the stream before it finished"));
      return;
    }
    sink->onFinish(std::move(summary));
  }
};

class OpenAICall : public ProviderCall {
 public:
  explicit OpenAICall(std::shared_ptr<HttpCall> http) : http_(std::move(http)) {}
  void cancel() override { http_->cancel(); }

 private:
  std::shared_ptr<HttpCall> http_;
};

}  // namespace

OpenAIProvider::OpenAIProvider(OpenAIProviderConfig config, HttpClient& http)
    : config_(std::move(config)), http_(http), url_(config_.base_url + "/chat/completions") {}

std::shared_ptr<ProviderCall> OpenAIProvider::chat(const api::ChatRequest& request,
                                                   std::shared_ptr<ChatSink> sink,
                                                   Deadline deadline) {
  api::Json body = api::chatRequestToJson(request);
  if (request.stream) {
    // Always ask for usage: the ledger needs it even when the client did not.
    body["stream_options"]["include_usage"] = true;
  }

  HttpRequest http;
  http.method = "POST";
  http.url = url_;
  http.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  http.timeouts = config_.timeouts;
  http.deadline = deadline;
  http.headers.emplace_back("Content-Type", "application/json");
  http.headers.emplace_back("Accept", request.stream ? "text/event-stream" : "application/json");
  if (!config_.api_key.empty()) {
    http.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
  }
  for (const auto& [k, v] : config_.headers) http.headers.emplace_back(k, v);

  auto state = std::make_shared<CallState>(config_.max_response_bytes);
  state->provider = config_.name;
  state->sink = std::move(sink);
  state->stream = request.stream;

  HttpCallbacks cb;
  cb.on_head = [state](const HttpResponseHead& head) { state->head = head; };
  cb.on_data = [state](std::string_view data) { return state->onData(data); };
  cb.on_done = [state](const api::Status& s) { state->onDone(s); };
  return std::make_shared<OpenAICall>(http_.start(std::move(http), std::move(cb)));
}

}  // namespace routers
