// The admin endpoints (/admin/v1/...), policy reloads and budget alerts.
//
//   GET  /admin/v1/teams                every team: budget, spent, reserved, remaining
//   GET  /admin/v1/teams/{team}/spend   one team, with the spend by model and route
//   POST /admin/v1/reload               re-reads the policies file
//
// Admin endpoints take an admin key (auth.admin_keys); a team's own key may read its own
// team's spend.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "api/openai_json.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/quality_hub.h"

namespace gateway {
namespace {

api::Json optionalNumber(std::optional<double> v) { return v ? api::Json(*v) : api::Json(); }

api::Json windowJson(policies::Ledger* ledger, const std::string& team,
                     std::optional<double> limit, policies::Window w, int64_t now) {
  api::Json j = {{"period", policies::periodKey(w, now)}, {"budget_usd", optionalNumber(limit)}};
  if (!ledger) return j;
  policies::Spend s = ledger->spent(team, w, now);
  j["spent_usd"] = s.settled_usd;
  j["reserved_usd"] = s.reserved_usd;
  j["remaining_usd"] =
      limit ? api::Json(std::max(0.0, *limit - s.settled_usd - s.reserved_usd)) : api::Json();
  return j;
}

}  // namespace

api::Status Gateway::reloadPolicies() {
  if (config_->policies_file.empty()) {
    return api::Status(api::ErrorCode::kConfig, "no policies file is configured (`policies:`)");
  }
  auto text = config_->read_file(config_->policies_file);
  if (!text.ok()) return text.status();
  auto set = policies::PolicySet::parse(*text, config_->policies_file);
  if (!set.ok()) return set.status();
  // The start-up validation, unchanged: switchyard.yaml's own teams and keys, joined by the
  // new file's in place of the old file's.
  auto teams = bindPolicies(*config_, switchyardTeams(*config_), **set, ledger_ != nullptr);
  if (!teams.ok()) return teams.status();
  // The router's weights and confidence settings reload with the policies: switchyard.yaml is
  // read again, whole and validated, for its `router:` section (its other settings take a
  // restart). A file that no longer parses keeps everything as it was.
  std::shared_ptr<const Config> router_from = config_;
  if (!config_->source_path.empty()) {
    auto fresh = loadConfigFile(config_->source_path);
    if (!fresh.ok()) return fresh.status();
    router_from = *fresh;
  }
  Config keys = *config_;
  keys.teams = std::move(teams).value();
  auto live = std::make_shared<Live>();
  live->policies = *set;
  live->auth = std::make_shared<const Authenticator>(keys);
  live->complexity = router_from->complexity;
  live->confidence = router_from->confidence;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_ = std::move(live);
  }
  if (quality_) quality_->setPolicies(*set);
  std::fprintf(stderr, "{\"level\":\"info\",\"msg\":\"policies reloaded\",\"file\":\"%s\"}\n",
               config_->policies_file.c_str());
  return api::Status();
}

// Runs on the upstream I/O thread after every settle, so it never touches the ledger's file:
// the spend comes from the ledger's memory (a period not loaded yet, just after midnight, is
// checked at the next settle, once a reservation has loaded it) and markAlerted decides in
// memory and leaves the write to the ledger's writer. The webhook is sent asynchronously.
void Gateway::checkAlerts(const Live& live, const std::string& team,
                          std::optional<double> refused_usd) {
  if (!ledger_) return;
  const policies::BudgetPolicy& budget = live.policies->policyFor(team).budget;
  int64_t now = unixMs();
  auto check = [&](std::optional<double> limit, policies::Window w, const char* name) {
    if (!limit || *limit <= 0) return;
    std::optional<policies::Spend> cached = ledger_->cachedSpent(team, w, now);
    if (!cached) return;
    const policies::Spend& s = *cached;
    const bool refused =
        refused_usd && !(s.settled_usd + s.reserved_usd + *refused_usd <= *limit);
    const double share = s.settled_usd / *limit;
    metrics_.setSpend(team, name, s.settled_usd, *limit);
    for (double threshold : budget.alert_thresholds) {
      // A refusal is the 100% alert: the reservation that would cross it never fits.
      const bool by_refusal = refused && share < threshold && std::abs(threshold - 1.0) < 1e-9;
      if (share < threshold && !by_refusal) {
        if (refused) continue;
        break;
      }
      std::string period = policies::periodKey(w, now);
      auto first = ledger_->markAlerted(team, period, threshold, now);
      if (!first.ok() || !*first) continue;
      metrics_.recordAlert(team, name, threshold);
      api::Json alert = {{"type", by_refusal ? "budget_refused" : "budget_threshold"},
                         {"team", team},
                         {"window", name},
                         {"period", period},
                         {"threshold", threshold},
                         {"spent_usd", s.settled_usd},
                         {"reserved_usd", s.reserved_usd},
                         {"budget_usd", *limit},
                         {"unix_ms", now}};
      std::fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"budget threshold crossed\",\"alert\":%s}\n",
                   alert.dump().c_str());
      if (!live.policies->alerts().webhook_url.empty()) {
        sendWebhook(live.policies->alerts().webhook_url, alert.dump(),
                    live.policies->alerts().webhook_retries);
      }
    }
  };
  check(budget.daily_usd, policies::Window::kDay, "day");
  check(budget.monthly_usd, policies::Window::kMonth, "month");
}

void Gateway::sendWebhook(const std::string& url, std::string body, int retries_left) {
  if (!http_) return;
  routers::HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.body = body;
  req.headers.emplace_back("Content-Type", "application/json");
  req.timeouts.total = std::chrono::milliseconds(10000);
  auto status = std::make_shared<int>(0);
  routers::HttpCallbacks cb;
  cb.on_head = [status](const routers::HttpResponseHead& h) { *status = h.status; };
  cb.on_data = [](std::string_view) { return true; };
  cb.on_done = [this, status, url, body, retries_left](const api::Status& s) {
    bool ok = s.ok() && *status >= 200 && *status < 300;
    if (ok || s.code() == api::ErrorCode::kCancelled) return;
    std::fprintf(stderr,
                 "{\"level\":\"warn\",\"msg\":\"alert webhook failed\",\"status\":%d,"
                 "\"retries_left\":%d}\n",
                 *status, retries_left);
    if (retries_left > 0) {
      timer_->after(std::chrono::seconds(1), [this, url, body, retries_left] {
        sendWebhook(url, body, retries_left - 1);
      });
    }
  };
  http_->start(std::move(req), std::move(cb));
}

void Gateway::handleAdmin(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                          std::string_view path) {
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  auto forbidden = [&] {
    replyError(ex, responder,
               api::Status(api::ErrorCode::kPermissionDenied,
                           "This endpoint needs an admin key (auth.admin_keys)."),
               principal->team, "", "");
  };
  int64_t now = unixMs();
  auto teamJson = [&](const std::string& team) {
    const policies::BudgetPolicy& b = live->policies->policyFor(team).budget;
    return api::Json{{"team", team},
                     {"day", windowJson(ledger_.get(), team, b.daily_usd, policies::Window::kDay, now)},
                     {"month", windowJson(ledger_.get(), team, b.monthly_usd,
                                          policies::Window::kMonth, now)}};
  };

  if (path == "/admin/v1/reload") {
    if (ex.method != "POST") {
      return replyError(ex, responder,
                        api::Status(api::ErrorCode::kMethodNotAllowed, "Use POST.", {},
                                    "method_not_allowed"),
                        "", "", "");
    }
    if (!principal->admin) return forbidden();
    api::Status st = reloadPolicies();
    if (!st.ok()) {
      // The old policies keep serving; the operator reads why.
      api::Status bad(api::ErrorCode::kInvalidRequest,
                      "the new policies were not loaded (the old ones still apply): " +
                          st.message());
      return replyError(ex, responder, bad, "", "", "");
    }
    responder->reply(200, R"({"status":"reloaded"})", {});
    return;
  }
  if (ex.method != "GET" && ex.method != "HEAD") {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kMethodNotAllowed, "Use GET.", {},
                                  "method_not_allowed"),
                      "", "", "");
  }
  if (path == "/admin/v1/teams") {
    if (!principal->admin) return forbidden();
    api::Json data = api::Json::array();
    std::vector<std::string> names;
    for (const Team& t : config_->teams) names.push_back(t.name);
    for (const policies::TeamPolicy& t : live->policies->teams()) {
      if (std::find(names.begin(), names.end(), t.name) == names.end()) names.push_back(t.name);
    }
    for (const std::string& n : names) data.push_back(teamJson(n));
    responder->reply(200, api::Json{{"object", "list"}, {"data", data}}.dump(), {});
    return;
  }
  constexpr std::string_view kTeams = "/admin/v1/teams/";
  if (path.rfind(kTeams, 0) == 0 && path.size() > kTeams.size() + 6 &&
      path.substr(path.size() - 6) == "/spend") {
    std::string team(path.substr(kTeams.size(), path.size() - kTeams.size() - 6));
    if (!principal->admin && principal->team != team) return forbidden();
    bool known = std::any_of(config_->teams.begin(), config_->teams.end(),
                             [&](const Team& t) { return t.name == team; }) ||
                 live->policies->team(team) != nullptr;
    if (!known) {
      return replyError(ex, responder,
                        api::Status(api::ErrorCode::kNotFound, "No team '" + team + "'.", {},
                                    "team_not_found"),
                        "", "", "");
    }
    api::Json j = teamJson(team);
    if (ledger_) {
      for (auto [w, name] : {std::pair{policies::Window::kDay, "day"},
                             std::pair{policies::Window::kMonth, "month"}}) {
        auto rows = ledger_->breakdown(team, w, now);
        if (!rows.ok()) continue;
        api::Json by = api::Json::array();
        for (const auto& r : *rows) {
          by.push_back({{"model", r.model},
                        {"route", r.route},
                        {"kind", r.kind},
                        {"requests", r.requests},
                        {"prompt_tokens", r.prompt_tokens},
                        {"completion_tokens", r.completion_tokens},
                        {"cost_usd", r.cost_usd}});
        }
        j[name]["by_model_and_route"] = std::move(by);
      }
    }
    responder->reply(200, j.dump(), {});
    return;
  }
  replyError(ex, responder,
             api::Status(api::ErrorCode::kNotFound,
                         "Unknown admin URL: " + ex.method + " " + std::string(path) + ".", {},
                         "unknown_url"),
             "", "", "");
}

}  // namespace gateway
