// The spending unit's metrics (routers::SpendObserver): calls settled by estimate because the
// provider reported no usage, the gate's refusals by reason, and the ledger's health
// (commits, failed commits, dropped writes, reservations billed after a crash, availability).
#pragma once

#include <memory>

#include "gateway/metrics.h"
#include "routers/spend.h"

namespace gateway {

// The spending unit's observer, with the ledger's health as gauges set at each scrape.
class SpendMetrics : public routers::SpendObserver {
 public:
  // Sets the ledger gauges from `ledger.stats()` (before a scrape).
  virtual void updateLedger(policies::Ledger& ledger) = 0;
};

// Registers its metric families on `metrics`' registry; `metrics` must outlive it.
std::unique_ptr<SpendMetrics> makeSpendMetrics(Metrics& metrics);

}  // namespace gateway
