// POST /v1/route/explain: the plan the chat handler would make for the same body and the same
// route hint, without calling any model: the targets in order, the complexity score with each
// feature's contribution, the trigger's three-valued evaluation for what is known before the
// local model answers (confidence and confidence_rank are unknown then; complexity_rank is
// read without adding this request to the window), the budget windows and the rate limits.
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "policies/ledger.h"
#include "policies/spend.h"
#include "routers/router.h"

namespace gateway {
namespace {

api::Json optionalNumber(std::optional<double> v) { return v ? api::Json(*v) : api::Json(); }

// score = logistic(bias + the sum of the contributions)
api::Json complexityJson(const routers::ComplexityScore& score, double bias) {
  api::Json features = api::Json::array();
  for (const auto& f : score.features) {
    features.push_back({{"name", std::string(f.name)},
                        {"value", f.value},
                        {"contribution", f.contribution}});
  }
  return {{"score", score.score}, {"bias", bias}, {"features", std::move(features)}};
}

api::Json triggerJson(const policies::RoutingPolicy& routing, const policies::TriggerVars& v) {
  const std::vector<std::string_view>& names = policies::Trigger::variables();
  const std::optional<double> values[] = {
      v.confidence,   v.complexity,  v.confidence_rank, v.complexity_rank,
      v.prompt_tokens, v.max_tokens, v.budget_used,     v.local_queue_ms,
      v.has_tools,    v.has_images,  v.turns,           v.stream};
  static_assert(std::size(values) == 12, "one value per trigger variable");
  api::Json vars = api::Json::object();
  for (size_t i = 0; i < names.size() && i < std::size(values); ++i) {
    vars[std::string(names[i])] = optionalNumber(values[i]);
  }
  return {{"expression", routing.trigger->text()},
          {"before_local_answer",
           std::string(policies::truthName(routing.trigger->evaluate(v)))},
          {"variables", std::move(vars)}};
}

api::Json rateLimitJson(const policies::RateLimit& r) {
  auto n = [](std::optional<int64_t> v) { return v ? api::Json(*v) : api::Json(); };
  return {{"requests_per_minute", n(r.requests_per_minute)},
          {"tokens_per_minute", n(r.tokens_per_minute)}};
}

api::Json chainJson(const std::vector<routers::ChainTarget>& targets) {
  api::Json chain = api::Json::array();
  for (const routers::ChainTarget& t : targets) {
    chain.push_back({{"route", t.label},
                     {"model", t.model},
                     {"cloud", t.cloud()},
                     {"after_refusal_only", t.after_refusal_only}});
  }
  return chain;
}

// Each limited window's spend (settled and reserved) against its limit, and the share used.
api::Json budgetJson(policies::Ledger* ledger, const std::string& team,
                     const policies::BudgetPolicy& budget) {
  api::Json out = {{"limited", budget.limited()},
                   {"when_exhausted", budget.when_exhausted == policies::WhenExhausted::kReject
                                          ? "reject"
                                          : "local_only"}};
  if (!ledger || !budget.limited()) return out;
  const int64_t now = unixMs();
  const policies::BudgetState state = policies::budgetState(*ledger, team, budget, now);
  out["used"] = optionalNumber(state.used);
  out["exhausted"] = state.exhausted;
  api::Json windows = api::Json::array();
  auto window = [&](std::optional<double> limit, policies::Window w, const char* name) {
    if (!limit) return;
    const policies::Spend s = ledger->spent(team, w, now);
    windows.push_back({{"window", name},
                       {"period", policies::periodKey(w, now)},
                       {"limit_usd", *limit},
                       {"spent_usd", s.settled_usd},
                       {"reserved_usd", s.reserved_usd}});
  };
  window(budget.daily_usd, policies::Window::kDay, "daily");
  window(budget.monthly_usd, policies::Window::kMonth, "monthly");
  out["windows"] = std::move(windows);
  return out;
}

// A request naming a model goes to it (chat.cpp dispatchDirect): refused where the data rules
// or the hint forbid it.
api::Json directPlan(const policies::TeamPolicy& policy, const std::string& model, bool cloud,
                     std::optional<routers::RouteHint> hint, api::Json chain) {
  api::Json plan = {{"target", cloud ? "cloud" : "local"},
                    {"model", model},
                    {"reason_code", "requested"},
                    {"chain", std::move(chain)}};
  if ((hint == routers::RouteHint::kLocal && cloud) ||
      (hint == routers::RouteHint::kCloud && !cloud)) {
    plan["target"] = "reject";
    plan["reason_code"] = "hint";
    plan["reason"] = "the route hint contradicts the model";
  } else if (cloud && !policy.allow_cloud) {
    plan["target"] = "reject";
    plan["reason_code"] = "data_rules";
    plan["reason"] = "the team's data stays on the local engine (allow_cloud: false)";
  }
  return plan;
}

}  // namespace

void Gateway::handleExplain(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(openaiEntrance().credentials(ex));
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  if (principal->admin) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Explain a team's routing with the team's key."),
                      "", "", "");
  }
  const std::string team = principal->team;
  auto parsed = openaiEntrance().parseFor(ex, team);
  if (!parsed.ok()) return replyError(ex, responder, parsed.status(), team, "", "");
  api::ChatRequest request = std::move(parsed).value();
  auto hint = routers::takeRouteHint(ex.route_hint, request);
  if (!hint.ok()) return replyError(ex, responder, hint.status(), team, "", "");
  const policies::TeamPolicy& policy = live->policies->policyFor(team);
  const policies::RoutingPolicy& routing = policy.routing;
  const bool routed =
      request.model == routers::kAutoModel || request.model == routing.local_model;
  const std::string entry = routed ? routing.local_model : request.model;
  if (!routes_.count(entry) || !policy.allowsModel(entry)) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "The model `" + request.model +
                                      "` does not exist or you do not have access to it.",
                                  "model", "model_not_found"),
                      team, request.model, "");
  }
  const routers::RouteHint applied = hint->value_or(routers::RouteHint::kAuto);
  api::Json out = {{"object", "route.explanation"},
                   {"team", team},
                   {"model", request.model},
                   {"routed", routed},
                   {"hint", *hint ? api::Json(std::string(routers::hintName(applied)))
                                  : api::Json()},
                   {"mode", std::string(policies::routingModeName(routing.mode))}};
  if (routed) {
    routers::RoutePlan plan =
        planChat(*live, team, policy, request, applied, /*record_rank=*/false);
    using Target = routers::RoutePlan::Target;
    std::vector<routers::ChainTarget> chain = planTargets(policy, plan, applied);
    if (plan.target == Target::kCascade) chain = targetsOf(plan.model);
    out["plan"] = {{"target", std::string(routers::targetName(plan.target))},
                   {"model", plan.model},
                   {"cloud_model", plan.cloud_model},
                   {"reason", plan.reason},
                   {"reason_code", plan.reason_code},
                   {"chain", chainJson(chain)},
                   {"escalates_to", plan.target == Target::kCascade
                                        ? chainJson(cloudChain(routing))
                                        : api::Json::array()}};
    out["complexity"] = complexityJson(plan.complexity, live->complexity.bias);
    out["trigger"] = triggerJson(routing, plan.vars);
    out["trigger"]["rank"] = {
        {"window", routing.rank.window},
        {"warmup", routing.rank.warmup},
        {"confidence_scores", ranks_->count(team, routing.local_model,
                                            routers::RankedScore::kConfidence)},
        {"complexity_scores", ranks_->count(team, routing.local_model,
                                            routers::RankedScore::kComplexity)}};
  } else {
    out["plan"] = directPlan(policy, request.model, isCloudModel(request.model), *hint,
                             chainJson(targetsOf(request.model)));
  }
  out["budget"] = budgetJson(ledger_.get(), team, policy.budget);
  out["rate_limits"] = {{"team", rateLimitJson(policy.rate_limits.team)},
                        {"per_key", rateLimitJson(policy.rate_limits.per_key)}};
  responder->reply(200, out.dump(-1, ' ', false, api::Json::error_handler_t::replace), {});
}

}  // namespace gateway
