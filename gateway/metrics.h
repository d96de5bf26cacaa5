// The gateway's Prometheus metrics, declared once (STYLE.md "Names and comments").
//
// Label values are bounded: teams and models come from the config (an unknown model is
// counted as "unknown"), routes are provider/model pairs from the config, statuses are HTTP
// codes. Never a key, a user or a request id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace gateway {

class Metrics {
 public:
  Metrics();

  // One finished request. `ttft_s` < 0 when no first token was measured.
  void recordRequest(const std::string& team, const std::string& model,
                     const std::string& route, int status, double duration_s, double ttft_s);
  // One failed upstream attempt (every retry and fallback counts).
  void recordUpstreamError(const std::string& provider, const std::string& kind);
  void recordRetry(const std::string& provider);
  void recordFallback(const std::string& from_route, const std::string& to_route);
  // A call refused at once because the provider's circuit breaker is open.
  void recordCircuitOpen(const std::string& provider);
  // Tokens and cost of one answer (cost 0 for the local engine).
  void recordUsage(const std::string& team, const std::string& model, const std::string& route,
                   int64_t prompt_tokens, int64_t cached_prompt_tokens, int64_t completion_tokens,
                   double cost_usd);
  // Routing: where a request went and why; escalations to the cloud and their reason.
  void recordRouting(const std::string& team, const std::string& target, const std::string& reason);
  void recordEscalation(const std::string& team, const std::string& reason);
  void observeComplexity(double score);
  void observeConfidence(double score);
  // Budgets: a team's settled spend and limit per window ("day", "month"); threshold alerts.
  void setSpend(const std::string& team, const std::string& window, double spent, double budget);
  void recordAlert(const std::string& team, const std::string& window, double threshold);
  // Something the server refused before routing (body too large, header too large,
  // connection limit, malformed HTTP, timeouts, TLS handshakes, a full worker queue, JSON over
  // its bounds, a slow client dropped by the buffered-bytes cap).
  void recordRejected(const std::string& reason);
  // One re-read of the TLS certificates (SIGHUP); a failed one keeps the old certificates.
  void recordTlsReload(bool ok);

  // The local engines' load, set before each scrape: requests waiting and running, the share
  // of KV cache positions in use, and the smoothed decode rate.
  void setEngineLoad(const std::string& provider, int64_t queued, int64_t running,
                     double kv_usage, double decode_tokens_per_s);
  // Quality records: stored (by kind), dropped by a full queue; judge verdicts by status
  // ("ok", "unparsed", "error", "skipped_budget"); shadow comparisons by outcome ("sampled",
  // "recorded", "failed", "skipped_budget"); user feedback received.
  void recordQualityRecord(const std::string& kind);
  void setQualityDropped(uint64_t total);
  // Items (records, judge results, feedback) the quality store did not take: a store error,
  // such as a PostgreSQL store that cannot be reached.
  void setQualityFailed(uint64_t total);
  // Running requests whose KV a local engine reclaimed (they resume by recomputing), since start.
  void setEnginePreemptions(const std::string& provider, int64_t total);
  // Prompt tokens a local engine served from its prefix cache since start, and the KV blocks
  // its prefix cache holds now.
  void setEnginePrefixCache(const std::string& provider, int64_t hit_tokens_total, int64_t blocks);
  void recordJudgeVerdict(const std::string& status);
  void recordShadow(const std::string& team, const std::string& outcome);
  void recordFeedback();

  prometheus::Gauge& connections() { return *connections_; }
  prometheus::Gauge& inFlight() { return *in_flight_; }

  // The Prometheus text exposition of every metric.
  std::string serialize() const;

  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Histogram>* ttft_;
  prometheus::Family<prometheus::Counter>* upstream_errors_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Family<prometheus::Counter>* tls_reloads_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* fallbacks_;
  prometheus::Family<prometheus::Counter>* circuit_open_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Counter>* cost_;
  prometheus::Family<prometheus::Counter>* routing_;
  prometheus::Family<prometheus::Counter>* escalations_;
  prometheus::Family<prometheus::Histogram>* complexity_;
  prometheus::Family<prometheus::Histogram>* confidence_;
  prometheus::Family<prometheus::Gauge>* spend_;
  prometheus::Family<prometheus::Gauge>* budget_;
  prometheus::Family<prometheus::Counter>* alerts_;
  prometheus::Family<prometheus::Gauge>* engine_queue_;
  prometheus::Family<prometheus::Gauge>* engine_running_;
  prometheus::Family<prometheus::Gauge>* engine_kv_;
  prometheus::Family<prometheus::Gauge>* engine_decode_;
  prometheus::Family<prometheus::Counter>* engine_preemptions_;
  prometheus::Family<prometheus::Counter>* engine_prefix_hits_;
  prometheus::Family<prometheus::Gauge>* engine_prefix_blocks_;
  prometheus::Family<prometheus::Counter>* quality_records_;
  prometheus::Counter* quality_dropped_;
  prometheus::Counter* quality_failed_;
  prometheus::Family<prometheus::Counter>* judge_verdicts_;
  prometheus::Family<prometheus::Counter>* shadow_;
  prometheus::Counter* feedback_;
  prometheus::Gauge* connections_;
  prometheus::Gauge* in_flight_;
};

}  // namespace gateway
