// FakeAnthropic: Anthropic's Messages API for tests (see FakeCloud for faults).
//
// POST /v1/messages answers in the documented wire format: a Message object, or the event
// stream message_start, content_block_start, ping, content_block_delta (text_delta) per word,
// content_block_stop, message_delta (stop_reason, usage), message_stop. Errors are
// {"type":"error","error":{"type","message"}}; in a stream, an `error` event.
//
// Extended thinking (`thinking: {type: enabled}`): a thinking block comes first, with a
// signature (thinking_delta then signature_delta when streamed). Prompt caching: a body with a
// cache_control marker anywhere is written to the cache the first time its system prompt is
// seen and read from it afterwards (usage's cache_creation_input_tokens and
// cache_read_input_tokens; 3 tokens stay input_tokens).
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "tests/support/fake_cloud.h"

namespace sytest {

class FakeAnthropic : public FakeCloud {
 public:
  FakeAnthropic() = default;
  ~FakeAnthropic() override { stop(); }

  // "http://127.0.0.1:<port>/v1"
  std::string baseUrl() const override {
    return "http://127.0.0.1:" + std::to_string(port()) + "/v1";
  }

  // "echo: " and the text of the last user turn (text blocks joined with a space).
  static std::string replyFor(const Json& request);
  // input_tokens: 3 per message plus the words of the system prompt and of every message.
  static int64_t inputTokensFor(const Json& request);
  // The thinking block's signature in the answer with message id "msg_<id>".
  static std::string signatureFor(const std::string& id);

 protected:
  bool isChat(const Request& req) const override { return req.path() == "/v1/messages"; }
  bool isStream(const Request&, const Json& body) const override {
    return body.value("stream", false);
  }
  std::optional<std::string> refuse(const Json& body) const override;
  std::string errorBody(int status, const Fault& fault) const override;
  std::string answer(const Json& body, const std::string& id) const override;
  std::vector<std::string> pieces(const Json& body) const override;
  std::vector<std::string> streamOpening(const Json& body, const std::string& id) const override;
  std::string streamPiece(const Json& body, const std::string& id,
                          const std::string& piece) const override;
  std::vector<std::string> streamClosing(const Json& body, const std::string& id) const override;
  std::string streamErrorEvent(const std::string& message) const override;

 private:
  // input_tokens, cache_creation_input_tokens, cache_read_input_tokens for `body`.
  Json usageFor(const Json& body) const;

  mutable std::mutex cache_mu_;
  mutable std::set<std::string> cached_prompts_;  // the system prompts written to the cache
};

}  // namespace sytest
