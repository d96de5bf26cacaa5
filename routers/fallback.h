// FallbackChain: runs one chat request against a model's chain of targets (for example
// claude-sonnet -> gpt-4o -> local), retrying each target with exponential backoff and
// jitter, honouring Retry-After, skipping targets whose circuit is open, all within the
// request's deadline, and only while nothing has reached the client: once a chunk has been
// delivered the answer belongs to that target, and a later failure ends the stream.
//
// A retried call may have reached the upstream before it failed (a timeout waiting for the
// answer, a connection reset after the request was sent): like every gateway that retries,
// Switchyard accepts that such a call may be charged twice, and retries only where a client
// would. libcurl's own silent resend of a request on a reused keep-alive connection that
// turns out dead before any answer is the same trade, and is kept for the same reason.
//
// The chain is itself a Provider (name() is the chain's model), so the gateway drives a
// single provider and a chain the same way. Before the first chunk or the final outcome it
// tells the sink which target answered (ChatSink::onRoute).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "routers/circuit_breaker.h"
#include "routers/provider.h"
#include "routers/timer.h"

namespace routers {

struct RetryPolicy {
  int max_attempts = 3;            // tries on one target, the first included
  double initial_backoff_s = 0.25; // before the second try; doubles per try
  double max_backoff_s = 8;        // cap of one wait (before jitter)
  double max_retry_after_s = 30;   // a longer Retry-After moves on to the next target
};

// Whether a failed attempt may be tried again on the same target: transport failures,
// timeouts, garbage answers, HTTP 408, 409, 429 and 5xx, a full local queue.
bool isRetryable(const api::Status& status);
// Whether a failed attempt may move on to the next target of the chain: every retryable
// failure, plus upstream answers that say the target itself is misconfigured (401, 403, 404)
// and an open circuit.
bool isFallbackable(const api::Status& status);

// The wait before try number `attempt` (2 = the first retry): backoff doubling from
// initial_backoff_s, capped, with "equal jitter" (half fixed, half uniform random).
double backoffSeconds(const RetryPolicy& policy, int attempt, double random01);

// When the next try on a target may start after its try number `tries` failed with `status`:
// the backoff (or the upstream's Retry-After, when longer) from now; nullopt when the failure is
// not retryable, the tries are spent, the Retry-After exceeds max_retry_after_s or the time is
// past `deadline`. `delay_s` (optional) gets the wait.
std::optional<Clock::time_point> retryTime(const RetryPolicy& policy, int tries,
                                           const api::Status& status, Deadline deadline,
                                           double* delay_s = nullptr);

struct ChainTarget {
  Provider* provider = nullptr;       // not owned
  std::string upstream_model;         // the provider's own model name
  std::string label;                  // "<provider>/<upstream model>" for headers and metrics
  RetryPolicy retry;
  CircuitBreaker* breaker = nullptr;  // not owned; null: no circuit breaking (local engines)
  std::string model;                  // the configured model name clients use (`models:`)
  std::string api;                    // "local", or the cloud API: openai | anthropic | gemini
  // Tried only when the chain got here because the spending gate refused the targets before
  // (a team whose exhausted budget falls back to its local model); skipped otherwise.
  bool after_refusal_only = false;

  bool cloud() const { return api != "local"; }
};

// Whether a failure is the spending gate's refusal (routers/spend.h: data rules, budget,
// ledger unavailable) rather than a target's: never retried, always moves on.
bool isGateRefusal(const api::Status& status);

// Hooks for metrics and logs; called from the providers' and the timer's threads.
class ChainObserver {
 public:
  virtual ~ChainObserver() = default;
  // An attempt on `target` failed with `status` (cancellations are not reported).
  virtual void onAttemptFailed(const ChainTarget& target, const api::Status& status) {}
  virtual void onRetry(const ChainTarget& target, double delay_s) {}
  virtual void onFallback(const ChainTarget& from, const ChainTarget& to) {}
  virtual void onCircuitOpen(const ChainTarget& target) {}
};

class FallbackChain : public Provider {
 public:
  // `timer` and `observer` (may be null) must outlive the chain and its calls.
  FallbackChain(std::string name, std::vector<ChainTarget> targets, TimerThread& timer,
                ChainObserver* observer);

  const std::string& name() const override { return name_; }
  const std::vector<ChainTarget>& targets() const { return targets_; }

  // Runs the chain; `request.model` is replaced by each target's upstream model.
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override;

 private:
  std::string name_;
  std::vector<ChainTarget> targets_;
  TimerThread& timer_;
  ChainObserver* observer_;
};

}  // namespace routers
