// RemoteEngineProvider: an OpenAI-compatible inference server (vLLM, SGLang, llama.cpp's
// server, Ollama, `switchyard serve --engine-only`) used as a local engine (`tier: local` in
// switchyard.yaml; DESIGN.md "Where it grows beyond one machine").
//
// It wraps the provider that speaks the server's wire (a CloudProvider with OpenAIWire) and
// makes its answers feed the cascade as the embedded engine's do:
//   - every call asks the server for `logprobs` and `top_logprobs` (at least
//     RemoteEngineConfig::top_logprobs alternatives), streamed or not;
//   - each answer token's statistics (tokenStatsFromLogprobs: the top-1 and top-2 logprobs
//     among its alternatives, the entropy estimated from them) go to ChatSink::onTokenStats
//     before the token's chunk, for the first choice only (the one the cascade judges), exactly
//     where LocalProvider reports them. The confidence then means what it means for the
//     embedded engine when the server's logprobs are those of the raw distribution, as vLLM's
//     are by default (its logprobs_mode raw_logprobs); a server that reports logprobs after
//     temperature makes the confidence move with the client's temperature;
//   - the client sees logprobs only when it asked for them, and no more alternatives than it
//     asked for;
//   - usage.engine_compute_s is the call's wall time, so that the row of a request answered
//     there records it as compute_ms and reports price it per GPU hour.
// A server that returns no logprobs reports no token stats: the cascade's confidence is then
// unknown (routers/cascade.h says what it does). One that returns the chosen token's logprob
// without alternatives is the same unless the client asked for temperature 0: the chosen
// token is then the top-1 and reported as such (top-2 and entropy unknown).
//
// Load: the calls in flight are counted; at `max_in_flight` a new call is refused at once with
// kRateLimited (a full server is not a failing one: its circuit stays closed), so that a
// fallback chain spills it to its next target. With a QueueProbe (vLLM's metrics endpoint), a
// call is refused the same way while the server reports `max_waiting` requests or more waiting
// in its own queue.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "routers/http_client.h"
#include "routers/provider.h"
#include "routers/timer.h"

namespace routers {

// The queue depth a server publishes on its Prometheus endpoint, read every `interval` through
// the shared HttpClient and TimerThread (no thread of its own): vLLM's
// vllm:num_requests_waiting, summed over its label sets (one per model served). Thread-safe.
struct QueueProbeConfig {
  std::string url;                                // e.g. http://10.0.0.7:8000/metrics
  std::string metric = "vllm:num_requests_waiting";
  std::chrono::milliseconds interval{1000};
};

class QueueProbe {
 public:
  // `http` and `timer` must outlive the probe's polls: stop the timer (TimerThread::shutdown)
  // and then the client before they go; the probe itself may go at any time.
  QueueProbe(HttpClient& http, TimerThread& timer, QueueProbeConfig config);
  ~QueueProbe();

  // The last reading when it is younger than three intervals; nullopt before the first one,
  // after failed reads (an unreachable endpoint, no such metric) and when stale.
  std::optional<double> waiting() const;
  const QueueProbeConfig& config() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The sum of the samples of `metric` in Prometheus text exposition `text` (any labels);
// nullopt when it has none.
std::optional<double> prometheusSum(std::string_view text, std::string_view metric);

struct RemoteEngineConfig {
  int max_in_flight = 0;  // calls in flight at most; 0: no limit
  int top_logprobs = 5;   // alternatives asked per token, in [1, 20], to estimate entropy
  // With a probe: calls are refused while it reads max_waiting or more (0: never).
  std::shared_ptr<const QueueProbe> probe;
  int max_waiting = 0;
};

class RemoteEngineProvider : public Provider {
 public:
  // `upstream` speaks the server's OpenAI-compatible wire; its name is this provider's.
  RemoteEngineProvider(std::unique_ptr<Provider> upstream, RemoteEngineConfig config);

  const std::string& name() const override { return upstream_->name(); }
  // Finishes at once (inside chat(), with kRateLimited) when max_in_flight calls are running.
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink, Deadline deadline) override;

  // Calls started and not yet finished.
  int inFlight() const { return in_flight_->load(); }
  const RemoteEngineConfig& config() const { return config_; }

 private:
  std::unique_ptr<Provider> upstream_;
  const RemoteEngineConfig config_;
  std::shared_ptr<std::atomic<int>> in_flight_ = std::make_shared<std::atomic<int>>(0);
};

// An estimate of the entropy (nats) of the distribution a token was drawn from, knowing only
// its most likely alternatives: -sum p log p over them, plus the rest of the probability mass
// r = 1 - sum p spread evenly over ceil(r / p_min) tokens, none likelier than the least likely
// alternative listed. Alternatives with a logprob that is not finite or below -9000 (OpenAI's
// -9999 "never") are skipped. NaN when none is usable: the confidence monitor then leaves the
// entropy out, as it does for any token without one.
double entropyFromTop(const std::vector<api::TopLogprob>& top);

// One answer token's statistics from an OpenAI-style logprobs entry: top-1 and top-2 are the two
// largest usable logprobs among the alternatives and the chosen token (when its text is not
// among them); the top-2 is NaN (unknown) with one candidate; the entropy is entropyFromTop.
// Without usable alternatives: the chosen logprob as the top-1 when `greedy` (the client asked
// for temperature 0, so the chosen token was the argmax), else nullopt (nothing is known, and
// nothing is reported to the cascade).
std::optional<TokenStats> tokenStatsFromLogprobs(const api::TokenLogprob& t, bool greedy);

}  // namespace routers
