// The cost report (quality/report.h): what the traffic cost, from ledger rows.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "api/chat.h"
#include "quality/report.h"
#include "quality/svg.h"

namespace quality {
namespace {

using policies::LedgerRow;
using svg::escape;
using svg::format;
using svg::Format;

constexpr double kMsPerHour = 3.6e6;
constexpr int64_t kMsPerDay = 86'400'000;
// Series of a spend chart beyond the most costly ones are summed into "other".
constexpr size_t kMaxSeries = 8;
const char* const kLocalSeries = "local GPU";
const char* const kLocalColor = "#76b7b2";

double money(double v) { return std::isfinite(v) && v > 0 ? v : 0.0; }

struct Costs {
  double cloud = 0;  // the row's cost_usd
  double local = 0;  // its GPU time at the configured price
  double total() const { return cloud + local; }
};

Costs costOf(const LedgerRow& r, const CostReportOptions& o) {
  Costs c;
  c.cloud = money(r.cost_usd);
  double price = o.gpu_hour_usd;
  if (auto it = o.provider_gpu_hour_usd.find(r.route.substr(0, r.route.find('/')));
      it != o.provider_gpu_hour_usd.end()) {
    price = it->second;
  }
  c.local = money(money(r.compute_ms) / kMsPerHour * money(price));
  return c;
}

std::string card(const std::string& key, const std::string& value, const std::string& sub = "") {
  std::string s = "<div class=\"card\"><div class=\"k\">" + escape(key) +
                  "</div><div class=\"v\">" + escape(value) + "</div>";
  if (!sub.empty()) s += "<div class=\"s\">" + escape(sub) + "</div>";
  return s + "</div>";
}

std::string count(int64_t n) { return format(static_cast<double>(n), Format::kCount); }

std::string localCostRule(const CostReportOptions& o) {
  std::string servers;  // `tier: local` servers priced on their own
  for (const auto& [provider, price] : o.provider_gpu_hour_usd) {
    servers += (servers.empty() ? "" : ", ") + provider + " at " + format(price, Format::kUsd);
  }
  if (!servers.empty()) {
    servers = " Remote local servers use their own price per GPU hour (" + servers +
              "), with compute_ms the call's wall time.";
  }
  if (!(money(o.gpu_hour_usd) > 0)) {
    if (!servers.empty()) {
      return "No GPU price was given for the embedded engine (gpu_hour_usd = 0): its answers are "
             "costed at $0." + servers;
    }
    return "No GPU price was given (gpu_hour_usd = 0), so local answers are costed at $0.";
  }
  return "Local answers are costed from the accelerator time they used: compute_ms / 3,600,000 "
         "× " +
         format(o.gpu_hour_usd, Format::kUsd) +
         " per GPU hour (compute_ms is the request's share of each engine step's busy time)." +
         servers;
}

std::string summarySection(const std::vector<LedgerRow>& rows, const CostReportOptions& o) {
  Costs all, failed;
  int64_t failed_n = 0, prompt = 0, completion = 0, local_n = 0;
  for (const LedgerRow& r : rows) {
    Costs c = costOf(r, o);
    all.cloud += c.cloud;
    all.local += c.local;
    if (r.status != 200) {
      ++failed_n;
      failed.cloud += c.cloud;
      failed.local += c.local;
    }
    prompt += std::max<int64_t>(0, r.prompt_tokens);
    completion += std::max<int64_t>(0, r.completion_tokens);
    if (r.kind == "local") ++local_n;
  }
  std::string s = "<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">";
  s += card("Total spend", format(all.total(), Format::kUsd), "cloud + local GPU");
  s += card("Cloud spend", format(all.cloud, Format::kUsd));
  s += card("Local GPU cost", format(all.local, Format::kUsd), count(local_n) + " local answers");
  s += card("Requests", count(static_cast<int64_t>(rows.size())),
            count(static_cast<int64_t>(rows.size()) - failed_n) + " answered with status 200");
  s += card("Not 200", count(failed_n), format(failed.total(), Format::kUsd) + " of the spend");
  s += card("Tokens", format(static_cast<double>(prompt + completion), Format::kCount),
            count(prompt) + " prompt, " + count(completion) + " completion");
  s += "</div><p class=\"note\" id=\"local-cost-rule\">" + escape(localCostRule(o)) + "</p>";
  return s + "</section>";
}

// Cloud spend per time bucket split by `key` (the most costly kMaxSeries values, the rest as
// "other"), the local GPU cost as its own series; and a table of every value.
std::string dimensionSection(const std::vector<LedgerRow>& rows, const svg::TimeBuckets& b,
                             const CostReportOptions& o, const std::string& id,
                             const std::string& heading, const std::string& what,
                             const std::function<std::string(const LedgerRow&)>& key) {
  struct Totals {
    int64_t requests = 0;
    Costs costs;
  };
  std::map<std::string, Totals> totals;
  double local_total = 0;
  for (const LedgerRow& r : rows) {
    Totals& t = totals[key(r)];
    Costs c = costOf(r, o);
    ++t.requests;
    t.costs.cloud += c.cloud;
    t.costs.local += c.local;
    local_total += c.local;
  }
  std::vector<std::pair<std::string, Totals>> ranked(totals.begin(), totals.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second.costs.total() > b.second.costs.total();
  });

  // Series: values with cloud spend, most costly first.
  std::vector<std::string> named;
  bool has_other = false;
  for (const auto& [name, t] : ranked) {
    if (t.costs.cloud <= 0) continue;
    if (named.size() < kMaxSeries) {
      named.push_back(name);
    } else {
      has_other = true;
    }
  }
  std::map<std::string, size_t> index;
  std::vector<svg::Series> series;
  for (size_t i = 0; i < named.size(); ++i) {
    index[named[i]] = i;
    series.push_back(
        {named[i], std::vector<double>(b.count, 0), std::string(svg::paletteColor(i))});
  }
  size_t other = series.size();
  if (has_other) series.push_back({"other", std::vector<double>(b.count, 0), "#9c755f"});
  size_t local = series.size();
  if (local_total > 0)
    series.push_back({kLocalSeries, std::vector<double>(b.count, 0), kLocalColor});
  for (const LedgerRow& r : rows) {
    Costs c = costOf(r, o);
    size_t i = b.indexOf(r.unix_ms);
    if (c.cloud > 0) {
      auto it = index.find(key(r));
      series[it != index.end() ? it->second : other].values[i] += c.cloud;
    }
    if (c.local > 0) series[local].values[i] += c.local;
  }
  std::vector<std::string> labels;
  for (size_t i = 0; i < b.count; ++i) labels.push_back(b.label(i));

  svg::Chart c;
  c.name = id;
  c.title = heading;
  c.x_label = "time (UTC), buckets of " + b.widthText();
  c.y_label = "USD";
  c.y_format = Format::kUsd;
  std::string s = "<section id=\"" + id + "\"><h2>" + escape(heading) + "</h2>";
  s += "<p class=\"note\">Cloud spend by " + escape(what);
  if (has_other)
    s += " (the " + std::to_string(kMaxSeries) + " most costly; the rest as \"other\")";
  s += "; the local GPU cost is its own series.</p>";
  s +=
      "<figure>" +
      (series.empty() ? svg::stackedBarChart(c, {}, {}) : svg::stackedBarChart(c, labels, series)) +
      "</figure>";
  double grand = 0;
  for (const auto& [name, t] : ranked) grand += t.costs.total();
  s += "<table><thead><tr><th>" + escape(what) +
       "</th><th class=\"num\">requests</th><th class=\"num\">cloud</th><th class=\"num\">local "
       "GPU</th><th class=\"num\">total</th><th class=\"num\">share</th></tr></thead><tbody>";
  for (const auto& [name, t] : ranked) {
    s += "<tr><td>" + escape(name) + "</td><td class=\"num\">" + count(t.requests) +
         "</td><td class=\"num\">" + format(t.costs.cloud, Format::kUsd) +
         "</td><td class=\"num\">" + format(t.costs.local, Format::kUsd) +
         "</td><td class=\"num\">" + format(t.costs.total(), Format::kUsd) +
         "</td><td class=\"num\">" +
         format(grand > 0 ? t.costs.total() / grand : 0, Format::kPercent) + "</td></tr>";
  }
  s += "</tbody></table>";
  return s + "</section>";
}

std::string failedSection(const std::vector<LedgerRow>& rows, const CostReportOptions& o) {
  std::map<int, std::pair<int64_t, double>> by_status;
  for (const LedgerRow& r : rows) {
    if (r.status == 200) continue;
    auto& [n, usd] = by_status[r.status];
    ++n;
    usd += costOf(r, o).total();
  }
  std::string s = "<section id=\"not-200\"><h2>Requests not answered with 200</h2>";
  if (by_status.empty())
    return s + "<p class=\"note\">Every request was answered with 200.</p></section>";
  s += "<p class=\"note\">Counted apart: their cost is in the spend above (the money was spent) "
       "but they are left out of the savings.</p>";
  s += "<table id=\"status-table\"><thead><tr><th class=\"num\">status</th><th "
       "class=\"num\">requests</th><th class=\"num\">cost</th></tr></thead><tbody>";
  for (const auto& [status, v] : by_status) {
    s += "<tr><td class=\"num\">" + std::to_string(status) + "</td><td class=\"num\">" +
         count(v.first) + "</td><td class=\"num\">" + format(v.second, Format::kUsd) + "</td></tr>";
  }
  return s + "</tbody></table></section>";
}

std::string budgetSection(const std::vector<LedgerRow>& rows, const CostReportOptions& o,
                          int64_t now) {
  using policies::Window;
  int64_t start = policies::periodStartMs(Window::kMonth, now);
  int64_t end = policies::periodEndMs(Window::kMonth, now);
  int days = static_cast<int>((end - start) / kMsPerDay);
  int today = static_cast<int>((now - start) / kMsPerDay) + 1;  // 1-based day of the month
  double elapsed = static_cast<double>(now - start + 1) / static_cast<double>(end - start);
  int64_t day_start = policies::periodStartMs(Window::kDay, now);

  std::string month = policies::periodKey(Window::kMonth, now);
  std::string s = "<section id=\"budgets\"><h2>Budgets, " + escape(month) + "</h2>";
  s += "<p class=\"note\">Budgets limit cloud spend (the local GPU cost does not count against "
       "them). Burn-down of the current UTC month up to " +
       escape(svg::utcDateTime(now)) +
       ". The month-end projection is linear: the month's spend so far divided by the share of "
       "the month that has passed (" +
       format(elapsed, Format::kPercent) + ").</p>";
  if (o.budgets.empty()) return s + "<p class=\"empty\">No budgets were given.</p></section>";

  for (const auto& [team, budget] : o.budgets) {
    std::vector<double> per_day(static_cast<size_t>(std::max(days, 1)), 0.0);
    double spent = 0, spent_today = 0;
    for (const LedgerRow& r : rows) {
      if (r.team != team || r.unix_ms < start || r.unix_ms >= end || r.unix_ms > now) continue;
      double usd = money(r.cost_usd);
      spent += usd;
      per_day[static_cast<size_t>((r.unix_ms - start) / kMsPerDay)] += usd;
      if (r.unix_ms >= day_start) spent_today += usd;
    }
    double projection = elapsed > 0 ? spent / elapsed : spent;
    s += "<h3>" + escape(team) + "</h3><p>";
    s += "Spent " + format(spent, Format::kUsd);
    if (budget.monthly_usd) {
      double limit = money(*budget.monthly_usd);
      s += " of " + format(limit, Format::kUsd) + " this month";
      if (limit > 0) s += " (" + format(spent / limit, Format::kPercent) + ")";
      s += "; projected month end <b>" + format(projection, Format::kUsd) + "</b>";
      if (limit > 0) s += " (" + format(projection / limit, Format::kPercent) + " of the budget)";
      if (projection > limit) s += " — <b>over budget</b>";
      s += ".";
    } else {
      s += " this month (no monthly budget); projected month end " +
           format(projection, Format::kUsd) + ".";
    }
    if (budget.daily_usd) {
      s += " Today " + format(spent_today, Format::kUsd) + " of a daily " +
           format(money(*budget.daily_usd), Format::kUsd) + ".";
    }
    s += "</p>";
    if (!budget.monthly_usd) continue;

    svg::Line cumulative{"cloud spend", {}, "#4e79a7", false};
    double sum = 0;
    for (int d = 1; d <= today && d <= days; ++d) {
      sum += per_day[static_cast<size_t>(d - 1)];
      cumulative.points.push_back(
          {static_cast<double>(d), sum, svg::utcDate(start + (d - 1) * kMsPerDay)});
    }
    svg::Line projected{"projection", {}, "#f28e2b", true};
    projected.points.push_back({static_cast<double>(today), spent, "today"});
    projected.points.push_back({static_cast<double>(days), projection, "month end"});
    svg::Chart c;
    c.name = "burndown";
    c.title = "Cumulative cloud spend of " + team + " against its monthly budget";
    c.attributes = {{"data-team", team}};
    c.x_label = "day of " + month;
    c.y_label = "USD";
    c.y_format = Format::kUsd;
    c.x_format = Format::kCount;
    c.x_min = 1;
    c.x_max = days;
    c.height = 260;
    s += "<figure>" +
         svg::lineChart(c, {cumulative, projected},
                        {{"monthly budget", money(*budget.monthly_usd), ""}}) +
         "</figure>";
  }
  std::vector<std::string> unbudgeted;
  for (const LedgerRow& r : rows) {
    if (!o.budgets.count(r.team) &&
        std::find(unbudgeted.begin(), unbudgeted.end(), r.team) == unbudgeted.end()) {
      unbudgeted.push_back(r.team);
    }
  }
  if (!unbudgeted.empty()) {
    std::sort(unbudgeted.begin(), unbudgeted.end());
    std::string list;
    for (const std::string& t : unbudgeted) list += (list.empty() ? "" : ", ") + t;
    s += "<p class=\"note\">Teams without a budget here: " + escape(list) + ".</p>";
  }
  return s + "</section>";
}

std::string savingsSection(const std::vector<LedgerRow>& rows, const svg::TimeBuckets& b,
                           const CostReportOptions& o) {
  std::string s = "<section id=\"savings\"><h2>Savings</h2>";
  if (!o.compare_price) {
    return s +
           "<p class=\"note\">No comparison price was given, so no savings are computed.</p>"
           "</section>";
  }
  const policies::Price& price = *o.compare_price;
  std::string model =
      o.compare_model.empty() ? std::string("the comparison model") : o.compare_model;
  double would = 0, actual = 0;
  int64_t traffic = 0;
  std::vector<double> per_bucket(b.count, 0);
  for (const LedgerRow& r : rows) {
    if (r.status != 200) continue;
    Costs c = costOf(r, o);
    double hypothetical = 0;
    // Shadow samples and judge calls exist only because of the local engine: their cost is
    // part of the actual cost, and they are no traffic that the comparison model would serve.
    if (r.decision != "shadow" && r.decision != "judge") {
      api::Usage u;
      u.prompt_tokens = r.prompt_tokens;
      u.completion_tokens = r.completion_tokens;
      u.total_tokens = r.prompt_tokens + r.completion_tokens;
      // A cloud provider's cache hits would likely be hits there too; the local engine's
      // prefix cache says nothing about a cloud provider's.
      u.cached_prompt_tokens = r.kind == "local" ? 0 : r.cached_prompt_tokens;
      hypothetical = money(price.cost(u));
      ++traffic;
    }
    would += hypothetical;
    actual += c.total();
    per_bucket[b.indexOf(r.unix_ms)] += hypothetical - c.total();
  }
  double saved = would - actual;
  s += "<div class=\"cards\">";
  s += card("On " + model, format(would, Format::kUsd), count(traffic) + " requests");
  s += card("Actual cost", format(actual, Format::kUsd), "cloud + local GPU");
  s += card(saved >= 0 ? "Saved" : "Extra cost", format(std::fabs(saved), Format::kUsd),
            would > 0 ? format(saved / would, Format::kPercent) + " of the comparison" : "");
  s += "</div>";
  s += "<p class=\"note\" id=\"savings-rule\">Savings = what the requests answered with 200 would "
       "have cost on " +
       escape(model) + " (its price per million tokens: input " +
       format(price.input, Format::kUsd) + ", cached input " +
       format(price.cached_input, Format::kUsd) + ", output " + format(price.output, Format::kUsd) +
       ", over each row's prompt and completion tokens, with cached prompt tokens priced as "
       "cached only for cloud rows) minus their actual cost (cloud spend + local GPU cost). "
       "Shadow samples and judge calls count in the actual cost only.</p>";
  std::vector<svg::Bar> bars;
  for (size_t i = 0; i < b.count; ++i) bars.push_back({b.label(i), per_bucket[i], ""});
  svg::Chart c;
  c.name = "savings";
  c.title = "Savings per time bucket against " + model;
  c.x_label = "time (UTC), buckets of " + b.widthText();
  c.y_label = "USD saved";
  c.y_format = Format::kUsd;
  s += "<figure>" + svg::barChart(c, bars, "#59a14f") + "</figure>";
  return s + "</section>";
}

}  // namespace

std::string renderCostReport(const std::vector<LedgerRow>& rows, const CostReportOptions& o) {
  int64_t lo = 0, hi = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    lo = i == 0 ? rows[i].unix_ms : std::min(lo, rows[i].unix_ms);
    hi = i == 0 ? rows[i].unix_ms : std::max(hi, rows[i].unix_ms);
  }
  int64_t now = o.now_ms != 0 ? o.now_ms : hi;
  std::string subtitle = "Generated " + svg::utcDateTime(now);
  if (!rows.empty()) subtitle += " · requests from " + svg::utcDate(lo) + " to " + svg::utcDate(hi);
  std::string s = svg::pageStart(o.title, subtitle);
  if (rows.empty()) {
    s += "<section id=\"summary\"><h2>Summary</h2><p class=\"empty\" id=\"no-records\">No "
         "records: the ledger has no requests in this period.</p><p class=\"note\">" +
         escape(localCostRule(o)) + "</p></section>";
    if (!o.budgets.empty()) s += budgetSection(rows, o, now);
    return s + svg::pageEnd();
  }
  svg::TimeBuckets b = svg::makeBuckets(lo, hi, o.bucket_ms);
  s += summarySection(rows, o);
  s += dimensionSection(
      rows, b, o, "spend-by-team", "Spend by team", "team",
      [](const LedgerRow& r) { return r.team.empty() ? std::string("(none)") : r.team; });
  s += dimensionSection(
      rows, b, o, "spend-by-model", "Spend by model", "model",
      [](const LedgerRow& r) { return r.model.empty() ? std::string("(none)") : r.model; });
  s += dimensionSection(
      rows, b, o, "spend-by-route", "Spend by route", "route (decision)",
      [](const LedgerRow& r) { return r.decision.empty() ? std::string("unknown") : r.decision; });
  s += budgetSection(rows, o, now);
  s += savingsSection(rows, b, o);
  s += failedSection(rows, o);
  return s + svg::pageEnd();
}

}  // namespace quality
