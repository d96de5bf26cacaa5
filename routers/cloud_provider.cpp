#include "routers/cloud_provider.h"

#include <optional>

#include "routers/upstream_error.h"

namespace routers {
namespace {

// The state of one upstream call, shared by the HTTP callbacks (all on the client's thread).
struct CallState {
  std::string provider;
  std::shared_ptr<ChatSink> sink;
  const WireFormat* wire = nullptr;
  api::ChatRequest request;  // kept for decoding (model, n, tools)
  int64_t max_bytes = 0;

  HttpResponseHead head;
  std::string body;  // non-streamed body, or an error body
  api::SseParser sse;
  std::unique_ptr<StreamDecoder> decoder;
  std::optional<api::Status> error;  // a failure found while reading the body
  std::vector<api::ChatChunk> chunks;

  explicit CallState(int64_t max) : max_bytes(max), sse(static_cast<size_t>(max)) {}

  bool streaming() const { return request.stream && head.status == 200; }

  api::Status upstream(const api::Status& s) const {
    return api::Status(s.code(), "upstream '" + provider + "' " + s.message(), s.param(),
                       s.openaiCode());
  }

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
    bool fed = sse.feed(data, events);
    for (api::SseEvent& ev : events) {
      chunks.clear();
      api::Status st = decoder->onEvent(ev, chunks);
      for (api::ChatChunk& c : chunks) sink->onChunk(std::move(c));
      if (!st.ok()) {
        error = upstream(st);
        return false;
      }
    }
    if (!fed) {
      error = api::Status(api::ErrorCode::kUpstreamError,
                          "upstream '" + provider + "' sent a malformed or oversized stream event");
      return false;
    }
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
    if (!request.stream) {
      auto response = wire->decodeResponse(body, request);
      if (!response.ok()) {
        sink->onFinish(upstream(response.status()));
        return;
      }
      sink->onFinish(std::move(response).value());
      return;
    }
    auto summary = decoder->finish();
    if (!summary.ok()) {
      sink->onFinish(upstream(summary.status()));
      return;
    }
    sink->onFinish(std::move(summary).value());
  }
};

class CloudCall : public ProviderCall {
 public:
  explicit CloudCall(std::shared_ptr<HttpCall> http) : http_(std::move(http)) {}
  void cancel() override {
    if (http_) http_->cancel();
  }
  // The stream's bytes then wait in the socket and the upstream; see HttpCall::setPaused.
  void setPaused(bool paused) override {
    if (http_) http_->setPaused(paused);
  }

 private:
  std::shared_ptr<HttpCall> http_;
};

}  // namespace

CloudProvider::CloudProvider(CloudProviderConfig config, std::unique_ptr<WireFormat> wire,
                             HttpClient& http)
    : config_(std::move(config)), wire_(std::move(wire)), http_(http) {}

std::shared_ptr<ProviderCall> CloudProvider::chat(const api::ChatRequest& request,
                                                  std::shared_ptr<ChatSink> sink,
                                                  Deadline deadline) {
  auto encoded = wire_->encode(request);
  if (!encoded.ok()) {
    sink->onFinish(encoded.status());
    return std::make_shared<CloudCall>(nullptr);
  }

  HttpRequest http;
  http.method = "POST";
  http.url = std::move(encoded->url);
  http.body = std::move(encoded->body);
  http.timeouts = config_.timeouts;
  http.deadline = deadline;
  http.headers.emplace_back("Content-Type", "application/json");
  http.headers.emplace_back("Accept", request.stream ? "text/event-stream" : "application/json");
  for (auto& h : encoded->headers) http.headers.push_back(std::move(h));
  for (const auto& h : config_.headers) http.headers.push_back(h);

  auto state = std::make_shared<CallState>(config_.max_response_bytes);
  state->provider = config_.name;
  state->sink = std::move(sink);
  state->wire = wire_.get();
  state->request = request;
  if (request.stream) state->decoder = wire_->newStreamDecoder(request);

  HttpCallbacks cb;
  cb.on_head = [state](const HttpResponseHead& head) { state->head = head; };
  cb.on_data = [state](std::string_view data) { return state->onData(data); };
  cb.on_done = [state](const api::Status& s) { state->onDone(s); };
  return std::make_shared<CloudCall>(http_.start(std::move(http), std::move(cb)));
}

}  // namespace routers
