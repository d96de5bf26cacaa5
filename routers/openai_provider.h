// OpenAIProvider: any server that speaks OpenAI's chat-completions wire format (OpenAI itself,
// OpenRouter, vLLM, Together, Groq, another Switchyard).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "routers/http_client.h"
#include "routers/provider.h"

namespace routers {

struct OpenAIProviderConfig {
  std::string name;
  std::string base_url;  // ".../v1", no trailing slash
  std::string api_key;   // "" sends no Authorization header
  std::map<std::string, std::string> headers;
  HttpTimeouts timeouts;
  int64_t max_response_bytes = 32 << 20;  // a non-streamed body, or one stream event
};

class OpenAIProvider : public Provider {
 public:
  // `http` must outlive the provider and every call it started.
  OpenAIProvider(OpenAIProviderConfig config, HttpClient& http);

  const std::string& name() const override { return config_.name; }
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override;

 private:
  OpenAIProviderConfig config_;
  HttpClient& http_;
  std::string url_;
};

}  // namespace routers
