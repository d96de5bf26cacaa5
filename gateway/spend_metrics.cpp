#include "gateway/spend_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

namespace gateway {
namespace {

class PrometheusSpendMetrics : public SpendMetrics {
 public:
  explicit PrometheusSpendMetrics(prometheus::Registry& registry)
      : estimated_(&prometheus::BuildCounter()
                        .Name("switchyard_cost_estimated_total")
                        .Help("Cloud calls settled by a never-lower estimate because the "
                              "provider reported no usage (client gone, stream broken, timeout)")
                        .Register(registry)),
        estimated_usd_(&prometheus::BuildCounter()
                            .Name("switchyard_cost_estimated_usd_total")
                            .Help("USD booked by estimate, part of switchyard_cost_usd_total")
                            .Register(registry)),
        refused_(&prometheus::BuildCounter()
                      .Name("switchyard_spend_refusals_total")
                      .Help("Cloud attempts refused by the spending gate, by reason "
                            "(cloud_not_allowed, model_not_allowed, insufficient_quota, "
                            "ledger_unavailable)")
                      .Register(registry)),
        ledger_(&prometheus::BuildGauge()
                     .Name("switchyard_ledger_state")
                     .Help("The ledger's writer: commits, failed_commits, dropped_writes "
                           "(rows missing from the file though their money counts), "
                           "crashed_reservations and crashed_usd (pending rows a crash left, "
                           "billed at start), available (1, or 0 while writes fail), "
                           "live_replicas (gateways sharing the ledger, by heartbeat: each "
                           "enforces its share of the rate limits)")
                     .Register(registry)) {}

  void updateLedger(policies::Ledger& ledger) override {
    policies::LedgerStats s = ledger.stats();
    ledger_->Add({{"what", "commits"}}).Set(static_cast<double>(s.commits));
    ledger_->Add({{"what", "failed_commits"}}).Set(static_cast<double>(s.failed_commits));
    ledger_->Add({{"what", "dropped_writes"}}).Set(static_cast<double>(s.dropped_writes));
    ledger_->Add({{"what", "crashed_reservations"}})
        .Set(static_cast<double>(s.crashed_reservations));
    ledger_->Add({{"what", "crashed_usd"}}).Set(s.crashed_usd);
    ledger_->Add({{"what", "available"}}).Set(s.available ? 1 : 0);
    ledger_->Add({{"what", "live_replicas"}}).Set(ledger.liveReplicas());
  }

  void onEstimated(const std::string& team, const routers::ChainTarget& target,
                   double usd) override {
    estimated_->Add({{"team", team}, {"provider", target.provider->name()}}).Increment();
    if (usd > 0) estimated_usd_->Add({{"team", team}}).Increment(usd);
  }
  void onRefused(const std::string& team, const std::string& reason) override {
    refused_->Add({{"team", team}, {"reason", reason.empty() ? "other" : reason}}).Increment();
  }

 private:
  prometheus::Family<prometheus::Counter>* estimated_;
  prometheus::Family<prometheus::Counter>* estimated_usd_;
  prometheus::Family<prometheus::Counter>* refused_;
  prometheus::Family<prometheus::Gauge>* ledger_;
};

}  // namespace

std::unique_ptr<SpendMetrics> makeSpendMetrics(Metrics& metrics) {
  return std::make_unique<PrometheusSpendMetrics>(metrics.registry());
}

}  // namespace gateway
