// routers::Provider: one interface for every target that can answer a chat request, local or
// cloud, so that the cascade, retries and fallback chains treat them alike (DESIGN.md).
#pragma once

#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace routers {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// Which target answered a call that went through retries or a fallback chain.
struct RouteInfo {
  std::string provider;        // the provider's configured name
  std::string model;           // its upstream model
  std::string label;           // "<provider>/<model>"
  std::string entry;           // the `models:` entry clients name for it ("" when unknown)
  int attempts = 1;            // attempts made in all, this one included
  std::vector<std::string> failed;  // labels of the targets given up on, in order
  // Set by the cascade: the scores it decided on and why it escalated ("" when it did not).
  std::optional<double> complexity;
  std::optional<double> confidence;
  // What the confidence is made of (routers/confidence.h, ConfidenceFeatures::named()), when
  // the cascade kept the local answer; names in static storage.
  std::vector<std::pair<std::string_view, double>> confidence_features;
  std::string escalation;
};

// What the local engine knew when it wrote one answer token (ChatSink::onTokenStats): natural
// logprobs and nats under the distribution the token was drawn from, before temperature, top-k,
// top-p and penalties (with constrained decoding, the one masked to the allowed tokens). NaN
// where the engine did not say. The confidence signal (routers/confidence.h) reads the
// distribution's statistics only, never the sampled token's logprob.
struct TokenStats {
  double logprob = std::numeric_limits<double>::quiet_NaN();       // the generated token's
  double entropy = std::numeric_limits<double>::quiet_NaN();       // of the distribution
  double top1_logprob = std::numeric_limits<double>::quiet_NaN();  // its largest logprob
  // Its second largest; -inf when no other token was possible.
  double top2_logprob = std::numeric_limits<double>::quiet_NaN();
};

// Receives the outcome of one Provider::chat call. Callbacks come from the provider's own
// thread, never concurrently for one call, and must not block.
class ChatSink {
 public:
  virtual ~ChatSink() = default;

  // Streamed calls only: one chunk, in order, as soon as it arrives. `chunk.model` is the
  // upstream's model name; `chunk.usage` is never set here (usage arrives in onFinish).
  virtual void onChunk(api::ChatChunk chunk) = 0;

  // Exactly once, last. Non-streamed calls: the whole response. Streamed calls: a response
  // with no choices whose `usage` holds the final usage when the upstream reported it, and
  // whose `id`/`model` echo the stream's; or an error, which after chunks were delivered
  // means the stream broke in the middle.
  virtual void onFinish(api::StatusOr<api::ChatResponse> result) = 0;

  // Fallback chains and cascades: once, before the first onChunk or the onFinish, which
  // target is answering (or, for a final error, which target failed last).
  virtual void onRoute(const RouteInfo& route) {}

  // Local engines only: each generated answer token's statistics, before the token's chunk;
  // the cascade's confidence signal. Called for streamed and non-streamed calls alike.
  virtual void onTokenStats(const TokenStats& stats) {}

  // Local engines only: once, just before onFinish, the engine time the call used (seconds, its
  // share of the forward passes: usage.engine_compute_s), also for a call that failed or was
  // cancelled, whose onFinish carries no usage. The cascade costs an escalated draft with it.
  virtual void onEngineTime(double compute_s) {}
};

// A call in flight. Destroying the handle does not cancel; cancel() does.
class ProviderCall {
 public:
  virtual ~ProviderCall() = default;
  // Aborts the call (thread-safe, idempotent); the sink then gets onFinish(kCancelled) unless
  // the call had already finished.
  virtual void cancel() = 0;
  // Backpressure (thread-safe, idempotent): while paused, the call stops reading from its
  // upstream (its chunks wait there, not in the gateway's memory); unpausing resumes. A call
  // that cannot pause (the local engine, whose answers are bounded) ignores it.
  virtual void setPaused(bool paused) {}
};

class Provider {
 public:
  virtual ~Provider() = default;

  // The provider's configured name ("openai", "local", ...).
  virtual const std::string& name() const = 0;

  // Starts a chat completion and returns at once. `request.model` is already the provider's
  // own model name. The call must finish (onFinish) by `deadline` at the latest.
  virtual std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                             std::shared_ptr<ChatSink> sink,
                                             Deadline deadline) = 0;
};

}  // namespace routers
