#include "gateway/spend_metrics.h"

#include <prometheus/counter.h>

namespace gateway {
namespace {

class SpendMetrics : public routers::SpendObserver {
 public:
  explicit SpendMetrics(prometheus::Registry& registry)
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
                      .Register(registry)) {}

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
};

}  // namespace

std::unique_ptr<routers::SpendObserver> makeSpendMetrics(Metrics& metrics) {
  return std::make_unique<SpendMetrics>(metrics.registry());
}

}  // namespace gateway
