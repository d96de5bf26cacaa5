// The cost report's pricing of local answers served by a `tier: local` server at its own GPU-hour
// price (CostReportOptions::provider_gpu_hour_usd), beside the embedded engine's.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "quality/report.h"
#include "quality/svg.h"

namespace {

using policies::LedgerRow;

LedgerRow localRow(const std::string& route, double compute_ms) {
  LedgerRow r;
  r.request_id = "req-" + route;
  r.team = "t";
  r.key_id = "k";
  r.model = "auto";
  r.route = route;
  r.kind = "local";
  r.decision = "cascade";
  r.compute_ms = compute_ms;
  r.latency_ms = 400;
  r.unix_ms = 1793491200000;  // 2026-11-01T00:00Z
  return r;
}

std::string card(const std::string& html, const std::string& key) {
  const std::string at = "<div class=\"k\">" + key + "</div><div class=\"v\">";
  size_t from = html.find(at);
  if (from == std::string::npos) return "<no card>";
  from += at.size();
  return html.substr(from, html.find('<', from) - from);
}

TEST(CostReportRemoteLocal, EachServerIsPricedAtItsOwnGpuHour) {
  // One GPU hour on the embedded engine, one on the remote server.
  std::vector<LedgerRow> rows = {localRow("local/gemma-3", 3.6e6),
                                 localRow("gpu-box/served-llama", 3.6e6)};
  quality::CostReportOptions o;
  o.gpu_hour_usd = 1.0;
  o.provider_gpu_hour_usd = {{"gpu-box", 4.0}};
  const std::string html = quality::renderCostReport(rows, o);
  EXPECT_EQ(card(html, "Local GPU cost"), quality::svg::format(5.0, quality::svg::Format::kUsd));
  EXPECT_NE(html.find("gpu-box at " + quality::svg::format(4.0, quality::svg::Format::kUsd)),
            std::string::npos);

  // Without the embedded engine's price only the server's time costs anything.
  o.gpu_hour_usd = 0;
  const std::string only = quality::renderCostReport(rows, o);
  EXPECT_EQ(card(only, "Local GPU cost"), quality::svg::format(4.0, quality::svg::Format::kUsd));
  EXPECT_NE(only.find("No GPU price was given for the embedded engine"), std::string::npos);
}

}  // namespace
