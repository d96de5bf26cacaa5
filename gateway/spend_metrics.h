// The spending unit's metrics (routers::SpendObserver): calls settled by estimate because the
// provider reported no usage, and the gate's refusals by reason.
#pragma once

#include <memory>

#include "gateway/metrics.h"
#include "routers/spend.h"

namespace gateway {

// Registers its metric families on `metrics`' registry; `metrics` must outlive it.
std::unique_ptr<routers::SpendObserver> makeSpendMetrics(Metrics& metrics);

}  // namespace gateway
