// FakeOpenAI: an OpenAI-compatible upstream for tests (see FakeCloud for faults).
//
// POST /v1/chat/completions answers in OpenAI's exact wire format, non-streamed
// (chat.completion) or streamed (chat.completion.chunk events, the usage chunk when
// stream_options.include_usage, then [DONE]). GET /v1/models lists the models it has been
// asked about. POST /v1/embeddings answers OpenAI's embeddings list (float or base64 vectors,
// FakeEmbeddings::vectorFor; usage.prompt_tokens FakeEmbeddings::tokensFor summed).
//
// POST /v1/responses answers in the Responses API's exact wire format: a Response object, or
// its event stream (response.created, response.in_progress, output_item.added,
// content_part.added, output_text.delta per piece, output_text.done, content_part.done,
// output_item.done, response.completed, each numbered by sequence_number; faults as for chat,
// an in-stream error being an `error` event). A request with `reasoning` gets a reasoning item
// first (encrypted_content when `include` asks "reasoning.encrypted_content"). It refuses
// `previous_response_id` (it stores nothing, as with `store: false`), and a reasoning input
// item without encrypted_content, as OpenAI does then.
#pragma once

#include <map>
#include <mutex>
#include <optional>

#include "tests/support/fake_cloud.h"
#include "tests/support/fake_embeddings.h"

namespace sytest {

class FakeOpenAI : public FakeCloud {
 public:
  FakeOpenAI() = default;
  ~FakeOpenAI() override { stop(); }

  // "http://127.0.0.1:<port>/v1"
  std::string baseUrl() const override {
    return "http://127.0.0.1:" + std::to_string(port()) + "/v1";
  }

  // The assistant text the fake answers `request` with: "echo: " and the last user
  // message's text (string content, or the text parts joined with a space).
  static std::string replyFor(const Json& request);
  // The reply cut into the pieces a stream carries, in order: "echo:", " w1", " w2", ...
  static std::vector<std::string> streamPieces(const Json& request);
  // The usage the fake reports for `request`: prompt_tokens = 3 per message plus the words
  // of every message's text, completion_tokens = the number of stream pieces.
  static Json usageFor(const Json& request);
  // A Responses request (it has `input`, not `messages`).
  static bool isResponses(const Json& request) {
    return request.is_object() && request.contains("input") && !request.contains("messages");
  }
  // The usage a Responses answer reports: input_tokens = 3 per input item plus the words of
  // its text, kCachedInputTokens of them cached; output_tokens = the stream pieces plus
  // kReasoningTokens reasoning tokens when the request has `reasoning`.
  static Json responsesUsageFor(const Json& request);
  static constexpr int64_t kCachedInputTokens = 2;
  static constexpr int64_t kReasoningTokens = 7;

  // Token logprobs, as vLLM and OpenAI return them when a request asks (`logprobs: true`):
  // every piece of the answer is one token of this logprob, listed first among
  // `top_logprobs` alternatives that share the rest of the mass evenly. nullopt (the
  // default) answers `"logprobs": null` whatever is asked, as a server without logprobs.
  void setTokenLogprob(std::optional<double> logprob);

  // POST /v1/embeddings: its requests, errors and latency.
  FakeEmbeddings& embeddings() { return embeddings_; }
  // false: `top_logprobs` is left empty whatever is asked (a server that reports the chosen
  // token's logprob only). Default true.
  void setListAlternatives(bool list);

 protected:
  bool isChat(const Request& req) const override {
    return req.path() == "/v1/chat/completions" || req.path() == "/v1/responses";
  }
  bool isStream(const Request&, const Json& body) const override {
    return body.value("stream", false);
  }
  std::optional<std::string> refuse(const Json& body) const override;
  std::string errorBody(int status, const Fault& fault) const override;
  std::string answer(const Json& body, const std::string& id) const override;
  std::vector<std::string> pieces(const Json& body) const override { return streamPieces(body); }
  std::vector<std::string> streamOpening(const Json& body, const std::string& id) const override;
  std::string streamPiece(const Json& body, const std::string& id,
                          const std::string& piece) const override;
  std::vector<std::string> streamClosing(const Json& body, const std::string& id) const override;
  std::string streamErrorEvent(const std::string& message) const override;
  void handleOther(const Request& req, ResponseWriter& w) override;

 private:
  std::string chunk(const Json& body, const std::string& id, Json choices,
                    Json usage = nullptr) const;
  // `{"content": [...]}` for `pieces` when `body` asks for logprobs and they are on; else null.
  Json logprobsFor(const Json& body, const std::vector<std::string>& pieces) const;

  void serveEmbeddings(const Request& req, ResponseWriter& w);

  // The Responses API's shapes.
  Json responseObject(const Json& body, const std::string& id, const std::string& status,
                      Json output, Json usage) const;
  Json reasoningItem(const Json& body, const std::string& id) const;
  Json messageItem(const std::string& id, const std::string& text,
                   const std::string& status) const;
  std::string responsesEvent(const std::string& id, Json event) const;
  std::vector<std::string> responsesOpening(const Json& body, const std::string& id) const;
  std::vector<std::string> responsesClosing(const Json& body, const std::string& id) const;

  // The next sequence_number of each Responses stream, and the last stream's id (for its
  // error event).
  mutable std::mutex seq_mu_;
  mutable std::map<std::string, int64_t> next_seq_;
  mutable std::string last_stream_;

  FakeEmbeddings embeddings_;
  mutable std::mutex logprob_mu_;
  std::optional<double> token_logprob_;
  bool list_alternatives_ = true;
};

}  // namespace sytest
