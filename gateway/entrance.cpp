#include "gateway/entrance.h"

#include "api/anthropic_messages.h"
#include "api/openai_json.h"
#include "api/sse.h"

namespace gateway {
namespace {

// OpenAI's chunks, with the usage-only chunk last when the client asked for it
// (stream_options.include_usage), then [DONE].
class OpenAIWriter : public AnswerWriter {
 public:
  explicit OpenAIWriter(bool include_usage) : include_usage_(include_usage) {}

  std::string response(const api::ChatResponse& r) override {
    return api::serializeChatResponse(r);
  }
  std::string chunk(const api::ChatChunk& c) override {
    last_id_ = c.id;
    created_ = c.created;
    fingerprint_ = c.system_fingerprint;
    return api::sseData(api::serializeChatChunk(c, include_usage_));
  }
  std::string streamEnd(const api::ChatResponse& r) override {
    std::string out;
    if (include_usage_ && r.usage) {
      api::ChatChunk usage_chunk;
      usage_chunk.id = last_id_.empty() ? r.id : last_id_;
      usage_chunk.created = created_ ? created_ : r.created;
      usage_chunk.model = r.model;
      usage_chunk.system_fingerprint = fingerprint_;
      usage_chunk.usage = r.usage;
      out = api::sseData(api::serializeChatChunk(usage_chunk, true));
    }
    return out + std::string(api::kSseDone);
  }
  std::string streamError(const api::Status& s) override {
    return api::sseData(api::serializeError(s));
  }

 private:
  const bool include_usage_;
  std::string last_id_;
  int64_t created_ = 0;
  std::string fingerprint_;
};

class OpenAIEntrance : public Entrance {
 public:
  api::StatusOr<api::ChatRequest> parse(const Exchange& ex) const override {
    return api::parseChatRequest(ex.body);
  }
  int errorStatus(const api::Status& s) const override { return s.httpStatusCode(); }
  std::string errorBody(const api::Status& s, std::string_view) const override {
    return api::serializeError(s);
  }
  std::unique_ptr<AnswerWriter> writer(const api::ChatRequest& request, const std::string&,
                                       const Exchange&) const override {
    return std::make_unique<OpenAIWriter>(request.include_usage);
  }
};

class MessagesWriter : public AnswerWriter {
 public:
  MessagesWriter(std::string model, std::string id) : stream_(model, id), model_(model) {}

  std::string response(const api::ChatResponse& r) override {
    return api::serializeMessage(r, r.model.empty() ? model_ : r.model);
  }
  std::string chunk(const api::ChatChunk& c) override { return stream_.chunk(c); }
  std::string streamEnd(const api::ChatResponse& r) override {
    return stream_.finish(r.usage, r.native);
  }
  std::string streamError(const api::Status& s) override { return stream_.error(s); }

 private:
  api::MessagesStreamWriter stream_;
  std::string model_;
};

// Anthropic's Messages API: x-api-key (or a Bearer token) carries the Switchyard key, and the
// anthropic-version header is required, as Anthropic's API requires it.
class MessagesEntrance : public Entrance {
 public:
  std::string credentials(const Exchange& ex) const override {
    if (!ex.authorization.empty() || ex.api_key.empty()) return ex.authorization;
    return "Bearer " + ex.api_key;
  }
  api::StatusOr<api::ChatRequest> parse(const Exchange& ex) const override {
    if (ex.anthropic_version.empty()) {
      return api::invalidRequest("anthropic-version: header is required", "anthropic-version");
    }
    auto request = api::parseMessagesRequest(ex.body);
    if (request.ok() && !ex.anthropic_beta.empty()) {
      request->native_headers.emplace_back("anthropic-beta", ex.anthropic_beta);
    }
    return request;
  }
  int errorStatus(const api::Status& s) const override { return api::anthropicHttpStatus(s); }
  std::string errorBody(const api::Status& s, std::string_view request_id) const override {
    return api::serializeAnthropicError(s, request_id);
  }
  std::unique_ptr<AnswerWriter> writer(const api::ChatRequest&, const std::string& model,
                                       const Exchange& ex) const override {
    return std::make_unique<MessagesWriter>(model, ex.request_id);
  }
};

}  // namespace

const Entrance& openaiEntrance() {
  static const OpenAIEntrance kEntrance;
  return kEntrance;
}

const Entrance& messagesEntrance() {
  static const MessagesEntrance kEntrance;
  return kEntrance;
}

}  // namespace gateway
