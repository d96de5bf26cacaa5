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
// LocalEmbeddingProvider serves an EmbeddingGemma checkpoint on the embedded engine
// (engine/models/embedding_gemma.h) from its own thread: every input of a request goes through
// the model in one call, `dimensions` is Matryoshka truncation (larger than the model's width:
// kInvalidRequest naming `dimensions`), token counts are the model's own (<bos> and <eos>
// included) and the answer carries the engine time.
//
// runMeteredEmbedding applies the team's data rules (Spender::admit); for a local target it
// then calls the provider (local compute has no token price: nothing is reserved, and the
// caller's row carries the engine time as compute_ms). For a cloud target it reserves the worst case
// (the prompt bound at the model's input price; embeddings have no output) durably in the
// ledger, calls the provider, and settles what the call cost into the request's Account:
// the provider's usage, else the bound; an error answer or a call that never left costs
// nothing; a call cut before its answer costs its reservation.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "api/embeddings.h"
#include "engine/models/embedding_gemma.h"
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

// The embedded engine's embedding model behind one `type: local`, `kind: embedding` provider.
// One worker thread owns the model; requests queue for it (at most `max_queue` waiting: more
// get kUnavailable with a retry hint). `done` runs on the worker thread. A call cancelled or
// past its deadline while waiting is answered kCancelled / kDeadlineExceeded without running.
// A request holds at most kMaxRequestTokens tokens (a 400 beyond) and runs in passes of at most
// kPassTokens tokens (one input may fill a pass alone), so the model's buffers stay bounded and
// a cancel or the deadline is seen between passes.
// Destruction joins the worker; calls still queued then are dropped without an answer (the
// gateway drains before it stops).
class LocalEmbeddingProvider : public EmbeddingProvider {
 public:
  static constexpr int64_t kMaxRequestTokens = 300000;  // as OpenAI's embeddings endpoint
  static constexpr int64_t kPassTokens = 4096;
  LocalEmbeddingProvider(std::string name, std::unique_ptr<engine::EmbeddingGemmaModel> model,
                         int max_queue);
  ~LocalEmbeddingProvider() override;
  const std::string& name() const override { return name_; }
  // The model's width: the largest `dimensions` a request may ask for.
  int dimensions() const { return model_->dimensions(); }
  std::shared_ptr<ProviderCall> embed(const api::EmbeddingRequest& request, EmbedDone done,
                                      Deadline deadline) override;

 private:
  struct Job;
  void run();
  api::StatusOr<api::EmbeddingResponse> compute(const Job& job);
  // The ids of each input, checked against the vocabulary, the model's length and the request's
  // token cap; adds their count to r.prompt_tokens.
  api::StatusOr<std::vector<std::vector<int32_t>>> inputIds(const api::EmbeddingRequest& request,
                                                            api::EmbeddingResponse& r) const;

  const std::string name_;
  const std::unique_ptr<engine::EmbeddingGemmaModel> model_;
  const int max_queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

// The chat side of an embedding-only provider: every chat call is refused with
// kInvalidRequest naming `model` (the model creates embeddings only).
std::unique_ptr<Provider> makeEmbeddingOnlyChatProvider(std::string name);

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
