#include "routers/router.h"

#include <cstdio>

namespace routers {
namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

std::string_view targetName(RoutePlan::Target t) {
  switch (t) {
    case RoutePlan::Target::kLocal: return "local";
    case RoutePlan::Target::kCloud: return "cloud";
    case RoutePlan::Target::kCascade: return "cascade";
    case RoutePlan::Target::kReject: return "reject";
  }
  return "local";
}

policies::TriggerVars requestVars(const api::ChatRequest& r, double complexity,
                                  int64_t prompt_tokens) {
  policies::TriggerVars v;
  v.complexity = complexity;
  v.prompt_tokens = static_cast<double>(prompt_tokens);
  if (auto m = r.maxOutputTokens()) v.max_tokens = static_cast<double>(*m);
  v.has_tools = r.tools.empty() ? 0.0 : 1.0;
  bool images = false;
  int turns = 0;
  for (const api::Message& m : r.messages) {
    images = images || m.content.hasImages();
    if (m.role == api::Role::kUser) ++turns;
  }
  v.has_images = images ? 1.0 : 0.0;
  v.turns = turns;
  v.stream = r.stream ? 1.0 : 0.0;
  return v;
}

RoutePlan planRoute(const RouteInputs& in, const ComplexityWeights& weights) {
  const policies::TeamPolicy& p = *in.policy;
  const policies::RoutingPolicy& routing = p.routing;
  RoutePlan plan;
  plan.complexity = scoreComplexity(*in.request, weights);
  plan.vars = requestVars(*in.request, plan.complexity.score, in.prompt_tokens);
  plan.vars.budget_used = in.budget_used;
  plan.vars.local_queue_ms = in.local_queue_ms;
  plan.model = routing.local_model;
  const std::string cloud = routing.cloud_models.empty() ? "" : routing.cloud_models.front();

  auto local = [&](std::string code, std::string reason) {
    plan.target = RoutePlan::Target::kLocal;
    plan.model = routing.local_model;
    plan.reason_code = std::move(code);
    plan.reason = std::move(reason);
    return plan;
  };
  auto toCloud = [&](std::string code, std::string reason) {
    plan.target = RoutePlan::Target::kCloud;
    plan.model = cloud;
    plan.reason_code = std::move(code);
    plan.reason = std::move(reason);
    return plan;
  };

  if (!p.allow_cloud) return local("data_rules", "the team's data stays on the local engine");
  if (routing.mode == policies::RoutingMode::kLocalOnly || cloud.empty()) {
    return local("mode", "routing mode local_only");
  }
  if (in.budget_exhausted) {
    if (routing.mode == policies::RoutingMode::kCloudOnly &&
        p.budget.when_exhausted == policies::WhenExhausted::kReject) {
      plan.target = RoutePlan::Target::kReject;
      plan.reason_code = "budget";
      plan.reason = "the team's cloud budget is exhausted";
      return plan;
    }
    return local("budget", "the team's cloud budget is exhausted");
  }
  if (routing.mode == policies::RoutingMode::kCloudOnly) {
    return toCloud("mode", "routing mode cloud_only");
  }
  if (routing.mode == policies::RoutingMode::kCloudFirst) {
    plan.local_fallback = true;
    return toCloud("mode", "routing mode cloud_first");
  }

  // Cascade: what does the trigger say before the local engine has said anything?
  policies::Truth truth = routing.trigger->evaluate(plan.vars);
  if (truth == policies::Truth::kTrue) {
    return toCloud("trigger", "trigger '" + routing.trigger->text() + "' holds before the local "
                              "answer (complexity " + fmt(plan.complexity.score) + ")");
  }
  if (routing.local_latency_budget_ms > 0 &&
      in.local_queue_ms > static_cast<double>(routing.local_latency_budget_ms)) {
    return toCloud("local_queue", "local queue " + fmt(in.local_queue_ms) + " ms over the " +
                                      std::to_string(routing.local_latency_budget_ms) +
                                      " ms budget");
  }
  if (truth == policies::Truth::kFalse) {
    return local("trigger", "trigger '" + routing.trigger->text() +
                                "' cannot hold for this request");
  }
  plan.target = RoutePlan::Target::kCascade;
  plan.model = routing.local_model;
  plan.cloud_model = cloud;
  plan.reason_code = "cascade";
  plan.reason = "local first; escalate when '" + routing.trigger->text() + "' holds";
  return plan;
}

}  // namespace routers
