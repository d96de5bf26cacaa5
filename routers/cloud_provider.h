// CloudProvider: a Provider that reaches a cloud API over HTTP through one WireFormat
// (OpenAI, Anthropic, Gemini). It owns what every API shares: the HTTP call on the shared
// HttpClient, per-provider timeouts, response size limits, configured extra headers, and the
// mapping of HTTP errors and transport failures onto ErrorCode. Retries, circuit breaking
// and fallback are layered above it (routers/fallback.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "routers/http_client.h"
#include "routers/provider.h"
#include "routers/wire_format.h"

namespace routers {

struct CloudProviderConfig {
  std::string name;  // the provider's configured name, used in errors and metrics
  std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
  HttpTimeouts timeouts;
  int64_t max_response_bytes = 32 << 20;  // a non-streamed body, or one stream event
};

class CloudProvider : public Provider {
 public:
  // `http` must outlive the provider and every call it started.
  CloudProvider(CloudProviderConfig config, std::unique_ptr<WireFormat> wire, HttpClient& http);

  const std::string& name() const override { return config_.name; }
  // A request the wire format cannot express finishes at once (on the caller's thread) with
  // its kInvalidRequest; everything else finishes on the thread driving the HttpClient, which
  // for a failure found while sending (a refused connection) may also be the caller's, before
  // chat() returns (see HttpClient). Sinks must accept a finish from inside chat(). The call can
  // be paused (ProviderCall::setPaused): the upstream's bytes then stay in the socket, the
  // first-byte and idle timeouts are suspended, the total timeout and `deadline` still hold.
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override;

 private:
  CloudProviderConfig config_;
  std::unique_ptr<WireFormat> wire_;
  HttpClient& http_;
};

}  // namespace routers
