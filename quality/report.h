// The HTML reports (DESIGN.md "quality/"): one self-contained HTML5 page each, with inline CSS
// and inline SVG charts (quality/svg.h), no JavaScript and nothing fetched, readable on a laptop
// screen and safe to mail around (every text from records or the ledger is escaped).
//
//   renderQualityReport: how the local answers compare with the cloud's (quality records):
//     wins, ties and losses overall and by complexity and confidence (by the judge's delta),
//     the judge's verdicts and the users' feedback side by side with their agreement, the
//     confidence-threshold trade-off, escalation over time, the worst local losses side by
//     side, judge health. Rates, shares and means are weighted estimates (each record counts
//     QualityRecord::weight() = 1 / sampling_p, the requests it stands for), with the raw
//     record counts beside them; the page says so.
//   renderCostReport: what the traffic cost (ledger rows): spend by team, model and route over
//     time with the local GPU time as its own series, per-team budget burn-down for the
//     current UTC month with a month-end projection, savings against one cloud model.
//
// Both are pure functions of their inputs (no clock, no files): `now_ms` says what "now" is;
// 0 means the time of the latest record or row. Empty input gives a page that says so. No
// number on either page is ever "NaN" or "inf".
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "policies/ledger.h"
#include "policies/policy_set.h"
#include "policies/pricing.h"
#include "quality/record.h"

namespace quality {

// A record's delta (QualityRecord::delta(), the judge's cloud-over-local in [-1, 1]; also a
// feedback's, QualityRecord::feedbackDelta(), when the two are compared) beyond this margin is a
// win for one side: delta < -kTieMargin a local win, delta > kTieMargin a local loss, else a tie.
inline constexpr double kTieMargin = 0.1;

// The quality report's buckets of complexity and confidence: [0, 0.2), ..., [0.8, 1].
inline constexpr int kScoreBuckets = 5;

struct QualityReportOptions {
  std::string title = "Switchyard quality report";
  int64_t now_ms = 0;   // the report's "now" (ms since the Unix epoch); 0: the latest record
  size_t worst_n = 20;  // how many of the worst local losses to show side by side
  int64_t bucket_ms = 86400000;  // time bucket of the over-time chart (a UTC day)
};

// `ledger` (may be null) gives the escalation rate over time: per bucket, the rows whose
// decision is "escalated" over the rows whose decision is "cascade" or "escalated". Without it
// the over-time chart counts records per bucket (by kind).
//
// Charts (data-chart names): "outcomes-by-complexity", "outcomes-by-confidence" (stacked:
// local wins, ties, local losses per bucket, in weighted requests), "threshold-tradeoff" (a
// line: x the weighted share escalated, y the weighted mean quality loss max(0, delta) of the
// records kept local, one point per
// threshold 0, 0.05, ..., 1), "escalation-rate" (with a ledger) or "records-over-time"
// (without; stacked by kind).
std::string renderQualityReport(const std::vector<QualityRecord>& records,
                                const std::vector<policies::LedgerRow>* ledger,
                                const QualityReportOptions& o);

struct CostReportOptions {
  std::string title = "Switchyard cost report";
  int64_t now_ms = 0;            // the report's "now"; 0: the latest row. Picks the budget month.
  int64_t bucket_ms = 86400000;  // time bucket of the spend charts (a UTC day)
  // USD per GPU hour: a local answer costs compute_ms / 3.6e6 * gpu_hour_usd.
  double gpu_hour_usd = 0;
  // Provider -> its own GPU-hour price (`tier: local` servers with gpu_hour_usd), for the rows
  // whose route ("<provider>/<model>") it answered; others use gpu_hour_usd.
  std::map<std::string, double> provider_gpu_hour_usd;
  // The cloud model the savings are measured against, e.g. "openai/gpt-4o", and its price; no
  // savings section without a price.
  std::string compare_model;
  std::optional<policies::Price> compare_price;
  // Team -> budget, for the burn-down of the current UTC month.
  std::map<std::string, policies::BudgetPolicy> budgets;
};

// Charts (data-chart names): "spend-by-team", "spend-by-model", "spend-by-route" (stacked per
// time bucket; cloud spend split by the dimension, the local GPU cost as the series "local
// GPU"), "burndown" (one per team with a monthly budget, attribute data-team: the cumulative
// cloud spend per day, the budget as a reference line, the projection as a dashed line),
// "savings" (per time bucket). Rows with status != 200 are counted apart.
std::string renderCostReport(const std::vector<policies::LedgerRow>& rows,
                             const CostReportOptions& o);

// The text of the last "user" message of an OpenAI messages array (string content, or the
// text parts of an array content joined by newlines); "" when there is none.
std::string lastUserMessage(const api::Json& messages);

}  // namespace quality
