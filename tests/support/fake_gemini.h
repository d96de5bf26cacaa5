// FakeGemini: Google's Gemini API for tests (see FakeCloud for faults), on both URL shapes:
// AI Studio ({base}/v1beta/models/{model}:generateContent) and Vertex AI
// ({base}/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent).
//
// Answers are GenerateContentResponse objects; `:streamGenerateContent?alt=sse` sends one per
// word as server-sent events, the last with finishReason STOP and usageMetadata. Errors are
// {"error":{"code","message","status"}}. `models/{m}:batchEmbedContents` (AI Studio) answers
// {"embeddings":[{"values":[...]}]} (FakeEmbeddings::vectorFor, outputDimensionality honoured),
// with no token counts, as Gemini does.
#pragma once

#include "tests/support/fake_cloud.h"
#include "tests/support/fake_embeddings.h"

namespace sytest {

class FakeGemini : public FakeCloud {
 public:
  FakeGemini() = default;
  ~FakeGemini() override { stop(); }

  // "http://127.0.0.1:<port>/v1beta" (AI Studio)
  std::string baseUrl() const override {
    return "http://127.0.0.1:" + std::to_string(port()) + "/v1beta";
  }
  // The Vertex AI base URL of `project` and `location` on this server.
  std::string vertexBaseUrl(const std::string& project, const std::string& location) const {
    return "http://127.0.0.1:" + std::to_string(port()) + "/v1/projects/" + project +
           "/locations/" + location + "/publishers/google";
  }

  // "echo: " and the text of the last user content (text parts joined with a space).
  static std::string replyFor(const Json& request);
  // promptTokenCount: 3 per content plus the words of the system instruction and contents.
  static int64_t promptTokensFor(const Json& request);

  // :batchEmbedContents: its requests, errors and latency.
  FakeEmbeddings& embeddings() { return embeddings_; }

 protected:
  bool isChat(const Request& req) const override;
  bool isStream(const Request& req, const Json&) const override;
  std::optional<std::string> refuse(const Json& body) const override;
  std::string errorBody(int status, const Fault& fault) const override;
  std::string answer(const Json& body, const std::string& id) const override;
  std::vector<std::string> pieces(const Json& body) const override;
  std::vector<std::string> streamOpening(const Json&, const std::string&) const override {
    return {};
  }
  std::string streamPiece(const Json& body, const std::string& id,
                          const std::string& piece) const override;
  std::vector<std::string> streamClosing(const Json& body, const std::string& id) const override;
  std::string streamErrorEvent(const std::string& message) const override;
  void handleOther(const Request& req, ResponseWriter& w) override;

 private:
  FakeEmbeddings embeddings_;
};

}  // namespace sytest
