#include "routers/openai_wire.h"

#include <limits>

#include "api/openai_json.h"
#include "api/responses.h"

namespace routers {
namespace {

class OpenAIStreamDecoder : public StreamDecoder {
 public:
  api::Status onEvent(const api::SseEvent& ev, std::vector<api::ChatChunk>& out) override {
    if (ev.data.empty()) return api::Status();
    if (ev.data == "[DONE]") {
      saw_done_ = true;
      return api::Status();
    }
    if (ev.data.find("\"error\"") != std::string::npos) {
      // Servers report failures inside the stream as {"error": {...}}.
      auto j = nlohmann::json::parse(ev.data, nullptr, false);
      if (j.is_object() && j.contains("error") && !j.contains("choices")) {
        return api::Status(api::ErrorCode::kUpstreamError,
                           "reported an error in the stream: " +
                               api::upstreamErrorMessage(ev.data));
      }
    }
    auto chunk = api::parseChatChunk(ev.data);
    if (!chunk.ok()) {
      return api::Status(api::ErrorCode::kUpstreamError,
                         "sent a malformed chunk: " + chunk.status().message());
    }
    if (summary_.id.empty()) summary_.id = chunk->id;
    if (summary_.model.empty()) summary_.model = chunk->model;
    if (summary_.created == 0) summary_.created = chunk->created;
    if (summary_.system_fingerprint.empty()) {
      summary_.system_fingerprint = chunk->system_fingerprint;
    }
    if (chunk->usage) summary_.usage = chunk->usage;
    for (const auto& c : chunk->choices) {
      if (c.finish_reason) saw_finish_reason_ = true;
    }
    if (chunk->choices.empty()) return api::Status();  // the usage-only chunk
    chunk->usage.reset();
    out.push_back(std::move(chunk).value());
    return api::Status();
  }

  api::StatusOr<api::ChatResponse> finish() override {
    if (!saw_done_ && !saw_finish_reason_) {
      return api::Status(api::ErrorCode::kUpstreamError, "ended the stream before it finished");
    }
    return std::move(summary_);
  }

 private:
  bool saw_done_ = false;
  bool saw_finish_reason_ = false;
  api::ChatResponse summary_;
};

}  // namespace

api::StatusOr<WireRequest> OpenAIWire::encode(const api::ChatRequest& request) const {
  if (sentAsResponses(request, config_)) {
    auto native = nativeResponsesBody(request);
    if (!native.ok()) return native.status();
    WireRequest out;
    out.url = config_.base_url + "/responses";
    if (!config_.api_key.empty()) {
      out.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    }
    out.body = std::move(native).value();
    return out;
  }
  if (api::Status s = api::refuseUntranslated(request); !s.ok()) return s;
  api::Json body = api::chatRequestToJson(request);
  if (request.stream) body["stream_options"]["include_usage"] = true;
  WireRequest out;
  out.url = config_.base_url + "/chat/completions";
  if (!config_.api_key.empty()) out.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
  out.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return out;
}

api::StatusOr<api::ChatResponse> OpenAIWire::decodeResponse(std::string_view body,
                                                            const api::ChatRequest& request) const {
  if (sentAsResponses(request, config_)) {
    auto parsed = api::parseBoundedJson(body, {512, std::numeric_limits<int64_t>::max()});
    if (!parsed.ok()) {
      return api::Status(api::ErrorCode::kUpstreamError,
                         "sent a malformed response: " + parsed.status().message());
    }
    auto response = fromResponsesObject(*parsed);
    if (!response.ok()) return response.status();
    response->native = std::string(body);
    return response;
  }
  auto response = api::parseChatResponse(body);
  if (!response.ok()) {
    return api::Status(api::ErrorCode::kUpstreamError,
                       "sent a malformed response: " + response.status().message());
  }
  return response;
}

std::unique_ptr<StreamDecoder> OpenAIWire::newStreamDecoder(const api::ChatRequest& request) const {
  if (sentAsResponses(request, config_)) return newResponsesStreamDecoder(request);
  return std::make_unique<OpenAIStreamDecoder>();
}

}  // namespace routers
