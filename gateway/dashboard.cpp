// The live dashboard: GET /dashboard serves the page (it holds no data, so it needs no key), and
// GET /admin/v1/dashboard the JSON it draws, for an admin key (every team) or a team's key (its
// own team): spend and budgets from the ledger, and the last hour's requests, routing mix,
// errors, escalations and latency from LiveStats.
#include <algorithm>

#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/live_stats.h"
#include "gateway/quality_hub.h"

namespace gateway {

extern const char* const kDashboardHtml;  // gateway/dashboard.html, compiled in

namespace {

api::Json orNull(std::optional<double> v) { return v ? api::Json(*v) : api::Json(); }

}  // namespace

void Gateway::handleDashboard(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  if (ex.target.rfind("/dashboard", 0) == 0) {
    responder->reply(200, kDashboardHtml,
                     {{"cache-control", "no-store"},
                      {"content-security-policy",
                       "default-src 'none'; script-src 'unsafe-inline'; style-src "
                       "'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                       "frame-ancestors 'none'"},
                      {"x-content-type-options", "nosniff"}},
                     "text/html; charset=utf-8");
    return;
  }
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  const int64_t now = unixMs();

  std::vector<std::string> names;
  if (principal->admin) {
    for (const Team& t : config_->teams) names.push_back(t.name);
    for (const policies::TeamPolicy& t : live->policies->teams()) {
      if (std::find(names.begin(), names.end(), t.name) == names.end()) names.push_back(t.name);
    }
    if (ledger_) {
      for (const std::string& t : ledger_->teams()) {
        if (std::find(names.begin(), names.end(), t) == names.end()) names.push_back(t);
      }
    }
  } else {
    names.push_back(principal->team);
  }
  api::Json teams = api::Json::array();
  for (const std::string& team : names) {
    const policies::BudgetPolicy& b = live->policies->policyFor(team).budget;
    api::Json t = {{"team", team},
                   {"spent_today_usd", 0.0},
                   {"spent_month_usd", 0.0},
                   {"reserved_usd", 0.0},
                   {"daily_budget_usd", orNull(b.daily_usd)},
                   {"monthly_budget_usd", orNull(b.monthly_usd)},
                   {"budget_used", nullptr}};
    if (ledger_) {
      policies::Spend day = ledger_->spent(team, policies::Window::kDay, now);
      policies::Spend month = ledger_->spent(team, policies::Window::kMonth, now);
      t["spent_today_usd"] = day.settled_usd;
      t["spent_month_usd"] = month.settled_usd;
      t["reserved_usd"] = month.reserved_usd;
      std::optional<double> used;
      auto share = [&](std::optional<double> limit, double spent) {
        if (!limit) return;
        double s = *limit > 0 ? spent / *limit : (spent > 0 ? 1.0 : 0.0);
        used = std::max(used.value_or(0), s);
      };
      share(b.daily_usd, day.settled_usd + day.reserved_usd);
      share(b.monthly_usd, month.settled_usd + month.reserved_usd);
      t["budget_used"] = orNull(used);
    }
    teams.push_back(std::move(t));
  }

  std::optional<std::string> scope_team;
  if (!principal->admin) scope_team = principal->team;
  LiveSummary s = live_stats_->summary(scope_team, now);
  api::Json routing = api::Json::object();
  for (const char* d : {"local", "cloud", "cascade", "escalated", "direct"}) routing[d] = 0;
  for (const auto& [decision, n] : s.routing) routing[decision] = n;
  api::Json timeline = api::Json::array();
  for (const LiveBucket& b : s.timeline) {
    timeline.push_back({{"unix_ms", b.unix_ms},
                        {"requests", b.requests},
                        {"errors", b.errors},
                        {"escalations", b.escalations},
                        {"cost_usd", b.cost_usd},
                        {"p50_ms", orNull(b.p50_ms)},
                        {"p95_ms", orNull(b.p95_ms)}});
  }
  api::Json quality = nullptr;
  if (quality_) {
    quality::RecorderStats q = quality_->stats();
    quality = {{"records", q.written}, {"dropped", q.dropped}};
  }
  api::Json j = {{"scope", principal->admin ? "admin" : "team"},
                 {"team", principal->admin ? api::Json() : api::Json(principal->team)},
                 {"generated_unix_ms", now},
                 {"window_s", LiveStats::kBuckets * LiveStats::kBucketMs / 1000},
                 {"bucket_s", LiveStats::kBucketMs / 1000},
                 {"teams", std::move(teams)},
                 {"routing", std::move(routing)},
                 {"requests", s.requests},
                 {"errors", s.errors},
                 {"escalations", s.escalations},
                 {"latency_ms",
                  {{"p50", orNull(s.p50_ms)}, {"p95", orNull(s.p95_ms)}, {"p99", orNull(s.p99_ms)}}},
                 {"timeline", std::move(timeline)},
                 {"quality", std::move(quality)}};
  responder->reply(200, j.dump(-1, ' ', false, api::Json::error_handler_t::replace),
                   {{"cache-control", "no-store"}});
}

}  // namespace gateway
