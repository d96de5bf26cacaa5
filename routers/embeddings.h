// Embeddings: the targets behind POST /v1/embeddings and the one metered path that every
// embedding call takes to them.
//
// EmbeddingProvider is the seam (as Provider is for chat): one cloud implementation,
// CloudEmbeddingProvider, runs an EmbeddingWire per API over the shared HttpClient:
//   - OpenAI and OpenAI-compatible servers: POST {base}/embeddings. The gateway always asks
//     for "float" vectors (every compatible server speaks it) and encodes base64 itself when
//     the client asks, so what comes back is checked and counted the same way either way.
//   - Gemini (AI Studio): POST {base}/models/{model}:batchEmbedContents, one request per input
//     (at most kGeminiMaxBatch), `dimensions` as outputDimensionality. Gemini takes text only
//     (token-id input is a 400 naming `input`) and reports no token counts: the call is billed,
//     and its usage reported, at the prompt bound (one token per byte of text), a never-lower
//     estimate.
// A local embedding model would be one more EmbeddingProvider behind the same interface.
//
// runMeteredEmbedding applies the team's data rules (Spender::admit), reserves the worst case
// (the prompt bound at the model's input price; embeddings have no output) durably in the
// ledger, calls the provider, and settles what the call cost into the request's Account:
// the provider's usage, else the bound; an error answer or a call that never left costs
// nothing; a call cut before its answer costs its reservation.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "api/embeddings.h"
#include "api/status.h"
#include "routers/cloud_provider.h"
#include "routers/fallback.h"
#include "routers/gemini_wire.h"
#include "routers/http_client.h"
#include "routers/openai_wire.h"
#include "routers/provider.h"
#include "routers/spend.h"
#include "routers/wire_format.h"

namespace routers {

// Gemini's batchEmbedContents takes at most this many requests in one call.
inline constexpr size_t kGeminiMaxBatch = 100;

// Runs exactly once with the answer (vectors in the inputs' order) or the error.
using EmbedDone = std::function<void(api::StatusOr<api::EmbeddingResponse>)>;

class EmbeddingProvider {
 public:
  virtual ~EmbeddingProvider() = default;
  // The provider's configured name.
  virtual const std::string& name() const = 0;
  // Starts embedding `request`, whose `model` is already the provider's own model name, and
  // returns at once. `done` runs on the thread driving the call (possibly inside embed() for
  // a request the API cannot express: kInvalidRequest naming the field), by `deadline`.
  virtual std::shared_ptr<ProviderCall> embed(const api::EmbeddingRequest& request, EmbedDone done,
                                              Deadline deadline) = 0;
};

// How one cloud API carries an embeddings request and its answer.
class EmbeddingWire {
 public:
  virtual ~EmbeddingWire() = default;
  // kInvalidRequest naming the field for what the API cannot express.
  virtual api::StatusOr<WireRequest> encode(const api::EmbeddingRequest& request) const = 0;
  // Reads a 200 body; kUpstreamError naming what is wrong (vectors missing or not numbers,
  // fewer or more vectors than inputs).
  virtual api::StatusOr<api::EmbeddingResponse> decode(
      std::string_view body, const api::EmbeddingRequest& request) const = 0;
};

std::unique_ptr<EmbeddingWire> makeOpenAIEmbeddingWire(OpenAIWireConfig config);
std::unique_ptr<EmbeddingWire> makeGeminiEmbeddingWire(GeminiWireConfig config);

// The BatchEmbedContentsRequest body for `request`. kInvalidRequest (param "input") for token
// ids or more than kGeminiMaxBatch inputs.
api::StatusOr<api::Json> toGeminiBatchEmbed(const api::EmbeddingRequest& request);

class CloudEmbeddingProvider : public EmbeddingProvider {
 public:
  // `http` must outlive the provider and every call it started.
  CloudEmbeddingProvider(CloudProviderConfig config, std::unique_ptr<EmbeddingWire> wire,
                         HttpClient& http);
  const std::string& name() const override { return config_.name; }
  std::shared_ptr<ProviderCall> embed(const api::EmbeddingRequest& request, EmbedDone done,
                                      Deadline deadline) override;

 private:
  CloudProviderConfig config_;
  std::unique_ptr<EmbeddingWire> wire_;
  HttpClient& http_;
};

// The most input tokens `request` can be billed at: one per byte of text, one per token id.
int64_t embeddingTokenBound(const api::EmbeddingRequest& request);

// Runs `request` on `provider` (the target `target` of the request's model) as a cloud
// attempt of `account`: gated, reserved, called and settled (see the top of this file). `done`
// gets the answer with prompt_tokens set (the bound when the provider reported none) or the
// error: a gate refusal (kPermissionDenied), the budget's kQuotaExceeded, kUnavailable when the
// ledger cannot persist, or the provider's error. The caller writes the request's row
// (Account::finish) once `done` ran. `spender` and `provider` must outlive the call.
std::shared_ptr<ProviderCall> runMeteredEmbedding(
    const Spender& spender, std::shared_ptr<Account> account, EmbeddingProvider& provider,
    const ChainTarget& target, api::EmbeddingRequest request, EmbedDone done, Deadline deadline);

}  // namespace routers
