#include "gateway/metrics.h"

#include <prometheus/text_serializer.h>

#include <cstdio>

namespace gateway {
namespace {

const prometheus::Histogram::BucketBoundaries& latencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
      0.5,    1,     2.5,    5,     10,   30,    60,   120, 300};
  return kBuckets;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("switchyard_requests_total")
                   .Help("Requests answered, by team, model, route and HTTP status")
                   .Register(*registry_);
  duration_ = &prometheus::BuildHistogram()
                   .Name("switchyard_request_duration_seconds")
                   .Help("Time from request received to response complete")
                   .Register(*registry_);
  ttft_ = &prometheus::BuildHistogram()
               .Name("switchyard_time_to_first_token_seconds")
               .Help("Time from request received to the first streamed token sent")
               .Register(*registry_);
  upstream_errors_ = &prometheus::BuildCounter()
                          .Name("switchyard_upstream_errors_total")
                          .Help("Failed upstream calls, by provider and kind")
                          .Register(*registry_);
  rejected_ = &prometheus::BuildCounter()
                   .Name("switchyard_http_rejected_total")
                   .Help("Connections and requests refused before routing, by reason")
                   .Register(*registry_);
  tls_reloads_ = &prometheus::BuildCounter()
                      .Name("switchyard_tls_reloads_total")
                      .Help("Re-reads of the TLS certificate files (SIGHUP), by result (ok, error)")
                      .Register(*registry_);
  retries_ = &prometheus::BuildCounter()
                  .Name("switchyard_upstream_retries_total")
                  .Help("Upstream calls tried again after a retryable failure, by provider")
                  .Register(*registry_);
  fallbacks_ = &prometheus::BuildCounter()
                    .Name("switchyard_fallbacks_total")
                    .Help("Requests handed from one target of a fallback chain to the next")
                    .Register(*registry_);
  circuit_open_ = &prometheus::BuildCounter()
                       .Name("switchyard_circuit_open_rejections_total")
                       .Help("Calls not sent because the provider's circuit breaker was open")
                       .Register(*registry_);
  tokens_ = &prometheus::BuildCounter()
                 .Name("switchyard_tokens_total")
                 .Help("Tokens of answered requests, by team, model, route and kind")
                 .Register(*registry_);
  cost_ = &prometheus::BuildCounter()
               .Name("switchyard_cost_usd_total")
               .Help("Cloud spend in USD computed from provider-reported usage")
               .Register(*registry_);
  routing_ = &prometheus::BuildCounter()
                  .Name("switchyard_routing_decisions_total")
                  .Help("Routed requests by team, target (local, cloud, cascade, reject) and reason")
                  .Register(*registry_);
  escalations_ = &prometheus::BuildCounter()
                      .Name("switchyard_escalations_total")
                      .Help("Requests sent to the cloud by the router or the cascade, by reason")
                      .Register(*registry_);
  complexity_ = &prometheus::BuildHistogram()
                     .Name("switchyard_complexity_score")
                     .Help("Complexity scores of routed requests")
                     .Register(*registry_);
  confidence_ = &prometheus::BuildHistogram()
                     .Name("switchyard_confidence_score")
                     .Help("Confidence of local answers in the cascade")
                     .Register(*registry_);
  spend_ = &prometheus::BuildGauge()
                .Name("switchyard_team_spend_usd")
                .Help("Settled cloud spend of a team in the current period, by window")
                .Register(*registry_);
  budget_ = &prometheus::BuildGauge()
                 .Name("switchyard_team_budget_usd")
                 .Help("A team's cloud budget for the current period, by window")
                 .Register(*registry_);
  alerts_ = &prometheus::BuildCounter()
                 .Name("switchyard_budget_alerts_total")
                 .Help("Budget threshold crossings, by team, window and threshold")
                 .Register(*registry_);
  engine_queue_ = &prometheus::BuildGauge()
                       .Name("switchyard_engine_queue_depth")
                       .Help("Requests waiting in a local engine's queue, by provider")
                       .Register(*registry_);
  engine_running_ = &prometheus::BuildGauge()
                         .Name("switchyard_engine_running_requests")
                         .Help("Requests a local engine is generating now, by provider")
                         .Register(*registry_);
  engine_kv_ = &prometheus::BuildGauge()
                    .Name("switchyard_engine_kv_cache_usage_ratio")
                    .Help("Share of a local engine's KV cache positions in use, by provider")
                    .Register(*registry_);
  engine_decode_ = &prometheus::BuildGauge()
                        .Name("switchyard_engine_decode_tokens_per_second")
                        .Help("Smoothed decode rate of a local engine, by provider")
                        .Register(*registry_);
  engine_preemptions_ = &prometheus::BuildCounter()
                            .Name("switchyard_engine_preemptions_total")
                            .Help("Running requests whose KV a local engine reclaimed to make "
                                  "room (they resume by recomputing), by provider")
                            .Register(*registry_);
  engine_prefix_hits_ = &prometheus::BuildCounter()
                             .Name("switchyard_engine_prefix_cache_hit_tokens_total")
                             .Help("Prompt tokens a local engine served from its prefix cache "
                                   "instead of prefilling them, by provider")
                             .Register(*registry_);
  engine_prefix_blocks_ = &prometheus::BuildGauge()
                               .Name("switchyard_engine_prefix_cache_blocks")
                               .Help("KV blocks a local engine's prefix cache holds (in use or "
                                     "evictable), by provider")
                               .Register(*registry_);
  quality_records_ = &prometheus::BuildCounter()
                          .Name("switchyard_quality_records_total")
                          .Help("Quality records stored, by kind (escalation, shadow)")
                          .Register(*registry_);
  quality_dropped_ = &prometheus::BuildCounter()
                          .Name("switchyard_quality_records_dropped_total")
                          .Help("Quality records dropped because the writer's queue was full")
                          .Register(*registry_)
                          .Add({});
  quality_failed_ = &prometheus::BuildCounter()
                         .Name("switchyard_quality_write_failures_total")
                         .Help("Quality records, judge results and feedback the store did not "
                               "take (a store error; each is logged)")
                         .Register(*registry_)
                         .Add({});
  judge_verdicts_ = &prometheus::BuildCounter()
                         .Name("switchyard_judge_verdicts_total")
                         .Help("LLM judge runs by status (ok, unparsed, error, skipped_budget)")
                         .Register(*registry_);
  shadow_ = &prometheus::BuildCounter()
                 .Name("switchyard_shadow_requests_total")
                 .Help("Shadow cloud comparisons by team and outcome")
                 .Register(*registry_);
  feedback_ = &prometheus::BuildCounter()
                   .Name("switchyard_feedback_total")
                   .Help("User feedback received on answers (POST /v1/feedback)")
                   .Register(*registry_)
                   .Add({});
  connections_ = &prometheus::BuildGauge()
                      .Name("switchyard_http_connections")
                      .Help("Open client connections")
                      .Register(*registry_)
                      .Add({});
  in_flight_ = &prometheus::BuildGauge()
                    .Name("switchyard_requests_in_flight")
                    .Help("Requests being answered now")
                    .Register(*registry_)
                    .Add({});
}

void Metrics::recordRequest(const std::string& team, const std::string& model,
                            const std::string& route, int status, double duration_s,
                            double ttft_s) {
  std::string code = std::to_string(status);
  requests_->Add({{"team", team}, {"model", model}, {"route", route}, {"status", code}})
      .Increment();
  duration_->Add({{"route", route}}, latencyBuckets()).Observe(duration_s);
  if (ttft_s >= 0) ttft_->Add({{"route", route}}, latencyBuckets()).Observe(ttft_s);
}

void Metrics::recordUpstreamError(const std::string& provider, const std::string& kind) {
  upstream_errors_->Add({{"provider", provider}, {"kind", kind}}).Increment();
}

void Metrics::recordRetry(const std::string& provider) {
  retries_->Add({{"provider", provider}}).Increment();
}

void Metrics::recordFallback(const std::string& from_route, const std::string& to_route) {
  fallbacks_->Add({{"from", from_route}, {"to", to_route}}).Increment();
}

void Metrics::recordCircuitOpen(const std::string& provider) {
  circuit_open_->Add({{"provider", provider}}).Increment();
}

void Metrics::recordUsage(const std::string& team, const std::string& model,
                          const std::string& route, int64_t prompt_tokens,
                          int64_t cached_prompt_tokens, int64_t completion_tokens,
                          double cost_usd) {
  auto add = [&](const char* kind, int64_t n) {
    if (n > 0) {
      tokens_->Add({{"team", team}, {"model", model}, {"route", route}, {"kind", kind}})
          .Increment(static_cast<double>(n));
    }
  };
  add("prompt", prompt_tokens);
  add("cached_prompt", cached_prompt_tokens);
  add("completion", completion_tokens);
  cost_->Add({{"team", team}, {"model", model}, {"route", route}}).Increment(cost_usd);
}

namespace {
const prometheus::Histogram::BucketBoundaries& unitBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0};
  return kBuckets;
}
}  // namespace

void Metrics::recordRouting(const std::string& team, const std::string& target,
                            const std::string& reason) {
  routing_->Add({{"team", team}, {"target", target}, {"reason", reason}}).Increment();
}

void Metrics::recordEscalation(const std::string& team, const std::string& reason) {
  escalations_->Add({{"team", team}, {"reason", reason}}).Increment();
}

void Metrics::observeComplexity(double score) {
  complexity_->Add({}, unitBuckets()).Observe(score);
}

void Metrics::observeConfidence(double score) {
  confidence_->Add({}, unitBuckets()).Observe(score);
}

void Metrics::setSpend(const std::string& team, const std::string& window, double spent,
                       double budget) {
  spend_->Add({{"team", team}, {"window", window}}).Set(spent);
  budget_->Add({{"team", team}, {"window", window}}).Set(budget);
}

void Metrics::recordAlert(const std::string& team, const std::string& window, double threshold) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%g", threshold);
  alerts_->Add({{"team", team}, {"window", window}, {"threshold", buf}}).Increment();
}

void Metrics::recordRejected(const std::string& reason) {
  rejected_->Add({{"reason", reason}}).Increment();
}

void Metrics::recordTlsReload(bool ok) {
  tls_reloads_->Add({{"result", ok ? "ok" : "error"}}).Increment();
}

void Metrics::setEngineLoad(const std::string& provider, int64_t queued, int64_t running,
                            double kv_usage, double decode_tokens_per_s) {
  engine_queue_->Add({{"provider", provider}}).Set(static_cast<double>(queued));
  engine_running_->Add({{"provider", provider}}).Set(static_cast<double>(running));
  engine_kv_->Add({{"provider", provider}}).Set(kv_usage);
  engine_decode_->Add({{"provider", provider}}).Set(decode_tokens_per_s);
}

void Metrics::recordQualityRecord(const std::string& kind) {
  quality_records_->Add({{"kind", kind}}).Increment();
}

void Metrics::setQualityDropped(uint64_t total) {
  // The recorder counts drops itself; the counter follows it (counters only go up).
  double now = static_cast<double>(total);
  if (now > quality_dropped_->Value()) quality_dropped_->Increment(now - quality_dropped_->Value());
}

void Metrics::setQualityFailed(uint64_t total) {
  double now = static_cast<double>(total);
  if (now > quality_failed_->Value()) quality_failed_->Increment(now - quality_failed_->Value());
}

void Metrics::setEnginePreemptions(const std::string& provider, int64_t total) {
  // The engine counts them itself; the counter follows it (counters only go up).
  prometheus::Counter& c = engine_preemptions_->Add({{"provider", provider}});
  const double now = static_cast<double>(total);
  if (now > c.Value()) c.Increment(now - c.Value());
}

void Metrics::setEnginePrefixCache(const std::string& provider, int64_t hit_tokens_total,
                                   int64_t blocks) {
  prometheus::Counter& c = engine_prefix_hits_->Add({{"provider", provider}});
  const double now = static_cast<double>(hit_tokens_total);
  if (now > c.Value()) c.Increment(now - c.Value());  // the engine counts; the counter follows
  engine_prefix_blocks_->Add({{"provider", provider}}).Set(static_cast<double>(blocks));
}

void Metrics::recordJudgeVerdict(const std::string& status) {
  judge_verdicts_->Add({{"status", status}}).Increment();
}

void Metrics::recordShadow(const std::string& team, const std::string& outcome) {
  shadow_->Add({{"team", team}, {"outcome", outcome}}).Increment();
}

void Metrics::recordFeedback() { feedback_->Increment(); }

std::string Metrics::serialize() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace gateway
