#include "gateway/metrics.h"

#include <prometheus/text_serializer.h>

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

void Metrics::recordRejected(const std::string& reason) {
  rejected_->Add({{"reason", reason}}).Increment();
}

std::string Metrics::serialize() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace gateway
