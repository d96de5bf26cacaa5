// The gateway's Prometheus metrics, declared once (STYLE.md "Names and comments").
//
// Label values are bounded: teams and models come from the config (an unknown model is
// counted as "unknown"), routes are provider/model pairs from the config, statuses are HTTP
// codes. Never a key, a user or a request id.
#pragma once

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
  void recordUpstreamError(const std::string& provider, const std::string& kind);
  // Something the server refused before routing (body too large, header too large,
  // connection limit, malformed HTTP, timeouts).
  void recordRejected(const std::string& reason);

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
  prometheus::Gauge* connections_;
  prometheus::Gauge* in_flight_;
};

}  // namespace gateway
