// An escalated request's local draft is costed: the account (routers/spend.h) writes the
// draft's engine time as the row's compute_ms in a real SQLite ledger, and the cost report
// (quality/report.h) prices it as local GPU time beside the cloud's cost.
#include <gtest/gtest.h>

#include <string>

#include "policies/ledger.h"
#include "policies/ledger_reader.h"
#include "quality/report.h"
#include "routers/spend.h"
#include "tests/support/process.h"

namespace {

// Writes one escalated request's row: the cloud answered, after a draft of `draft_s` seconds.
policies::LedgerRow escalatedRow(const std::string& path, const std::string& id, double draft_s) {
  auto ledger = policies::openSqliteLedger(path);
  EXPECT_TRUE(ledger.ok()) << ledger.status().toString();
  if (!ledger.ok()) return {};
  auto policy = std::make_shared<const policies::TeamPolicy>();
  routers::Account account((*ledger).get(), routers::Payer{id, "team-a", "key-a", "auto", policy});
  account.setDecision("cascade");
  routers::RouteInfo route;
  route.provider = "openai";
  route.model = "gpt-4o-mini";
  route.label = "openai/gpt-4o-mini";
  api::Usage cloud_usage{10, 20, 30, 0, 0, 0};
  account.attemptEnded(std::nullopt, 0.25, /*billed=*/true, /*estimated=*/false);
  account.addDraftCompute(draft_s);
  account.addDraftCompute(-1);  // nonsense is ignored
  account.finish(route, /*local_route=*/false, &cloud_usage, 200, 1.5);
  EXPECT_TRUE((*ledger)->flush().ok());
  auto rows = policies::readLedgerRows(path, std::nullopt, std::nullopt);
  EXPECT_TRUE(rows.ok()) << rows.status().toString();
  if (!rows.ok()) return {};
  for (const policies::LedgerRow& r : *rows) {
    if (r.request_id == id) return r;
  }
  ADD_FAILURE() << "no row " << id;
  return {};
}

TEST(DraftCost, EscalatedRowCarriesTheDraftsComputeAndTheCostReportCountsIt) {
  sytest::TempDir dir;
  const std::string path = dir.file("ledger.db");
  const policies::LedgerRow row = escalatedRow(path, "req-1", 1800);  // half a GPU hour
  EXPECT_EQ(row.kind, "cloud");
  EXPECT_EQ(row.decision, "escalated");
  EXPECT_DOUBLE_EQ(row.cost_usd, 0.25);
  EXPECT_DOUBLE_EQ(row.compute_ms, 1'800'000);

  quality::CostReportOptions o;
  o.gpu_hour_usd = 2;
  const std::string html = quality::renderCostReport({row}, o);
  EXPECT_NE(html.find("<div class=\"k\">Local GPU cost</div><div class=\"v\">$1.00</div>"),
            std::string::npos);
  EXPECT_NE(html.find("<div class=\"k\">Total spend</div><div class=\"v\">$1.25</div>"),
            std::string::npos);

  // Without a draft (a request sent to the cloud at once) the row has no local time.
  const policies::LedgerRow direct = escalatedRow(path, "req-2", 0);
  EXPECT_DOUBLE_EQ(direct.compute_ms, 0);
  const std::string plain = quality::renderCostReport({direct}, o);
  EXPECT_NE(plain.find("<div class=\"k\">Local GPU cost</div><div class=\"v\">$0.00</div>"),
            std::string::npos);
}

}  // namespace
