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

std::optional<RouteHint> parseRouteHint(std::string_view text) {
  if (text == "auto") return RouteHint::kAuto;
  if (text == "local") return RouteHint::kLocal;
  if (text == "cloud") return RouteHint::kCloud;
  return std::nullopt;
}

std::string_view hintName(RouteHint h) {
  switch (h) {
    case RouteHint::kAuto: return "auto";
    case RouteHint::kLocal: return "local";
    case RouteHint::kCloud: return "cloud";
  }
  return "auto";
}

constexpr const char* kHintField = "route_hint";

api::StatusOr<std::optional<RouteHint>> takeRouteHint(std::string_view header,
                                                      api::ChatRequest& request) {
  std::optional<std::string> text;
  const char* param = kRouteHintHeader;
  auto& extra = request.extra.get_ref<api::Json::object_t&>();
  if (auto it = extra.find(kHintField); it != extra.end()) {
    if (!it->second.is_string()) {
      return api::Status(api::ErrorCode::kInvalidRequest,
                         "Invalid type for 'route_hint': expected one of local, cloud, auto.",
                         kHintField, "invalid_type");
    }
    text = it->second.get<std::string>();
    param = kHintField;
    extra.erase(it);
  }
  if (!header.empty()) {
    text = std::string(header);
    param = kRouteHintHeader;
  }
  if (!text) return std::optional<RouteHint>();
  std::optional<RouteHint> hint = parseRouteHint(*text);
  if (!hint) {
    return api::Status(api::ErrorCode::kInvalidRequest,
                       std::string("Invalid value for '") + param + "': '" + text->substr(0, 64) +
                           "'. Supported values are: 'local', 'cloud' and 'auto'.",
                       param, "invalid_value");
  }
  return hint;
}

bool rejectsWhenExhausted(const policies::TeamPolicy& policy, bool routed) {
  return policy.budget.when_exhausted == policies::WhenExhausted::kReject &&
         (!routed || policy.routing.mode == policies::RoutingMode::kCloudOnly);
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

namespace {

RoutePlan decided(RoutePlan plan, RoutePlan::Target target, std::string model, std::string code,
                  std::string reason) {
  plan.target = target;
  if (!model.empty()) plan.model = std::move(model);
  plan.reason_code = std::move(code);
  plan.reason = std::move(reason);
  return plan;
}

// A route hint narrows the plan within the team's policy, never widens it: a hint the policy
// forbids is refused with the rule that forbids it. Nothing for `auto`.
std::optional<RoutePlan> planForHint(const RouteInputs& in, const RoutePlan& plan,
                                     const std::string& cloud) {
  using Target = RoutePlan::Target;
  const policies::TeamPolicy& p = *in.policy;
  const policies::RoutingPolicy& routing = p.routing;
  if (in.hint == RouteHint::kLocal) {
    if (!in.local_available) {
      return decided(plan, Target::kReject, "", "hint",
                     "route hint local: the model `" + routing.local_model +
                         "` is not a local engine");
    }
    return decided(plan, Target::kLocal, routing.local_model, "hint", "route hint local");
  }
  if (in.hint != RouteHint::kCloud) return std::nullopt;
  auto refuse = [&](std::string code, std::string why) {
    return decided(plan, Target::kReject, "", std::move(code), "route hint cloud: " + why);
  };
  if (!p.allow_cloud) {
    return refuse("hint", "the team's data stays on the local engine (allow_cloud: false)");
  }
  if (routing.mode == policies::RoutingMode::kLocalOnly || cloud.empty()) {
    return refuse("hint",
                  "the team's routing offers no cloud model (routing mode local_only or no "
                  "cloud_models)");
  }
  if (!p.allowsModel(cloud)) {
    return refuse("hint", "the cloud model `" + cloud + "` is not in the team's allowed_models");
  }
  if (in.budget_exhausted) return refuse("budget", "the team's cloud budget is exhausted");
  return decided(plan, Target::kCloud, cloud, "hint", "route hint cloud");
}

}  // namespace

std::optional<double> complexityRank(const RouteInputs& in, double complexity) {
  if (in.ranks == nullptr) return std::nullopt;
  const policies::RoutingPolicy& routing = in.policy->routing;
  if (!in.record_rank) {
    return in.ranks->rank(in.team, routing.local_model, RankedScore::kComplexity, complexity,
                          routing.rank);
  }
  return in.ranks->rankAndAdd(in.team, routing.local_model, RankedScore::kComplexity, complexity,
                              routing.rank);
}

RoutePlan planRoute(const RouteInputs& in, const ComplexityWeights& weights) {
  const policies::TeamPolicy& p = *in.policy;
  const policies::RoutingPolicy& routing = p.routing;
  RoutePlan plan;
  plan.complexity = scoreComplexity(*in.request, weights);
  plan.vars = requestVars(*in.request, plan.complexity.score, in.prompt_tokens);
  plan.vars.complexity_rank = complexityRank(in, plan.complexity.score);
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

  if (std::optional<RoutePlan> hinted = planForHint(in, plan, cloud)) return *hinted;
  if (!p.allow_cloud) return local("data_rules", "the team's data stays on the local engine");
  if (routing.mode == policies::RoutingMode::kLocalOnly || cloud.empty()) {
    return local("mode", "routing mode local_only");
  }
  if (in.budget_exhausted) {
    if (rejectsWhenExhausted(p, /*routed=*/true)) {
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

CascadeOptions::Decide triggerDecider(std::shared_ptr<const policies::TeamPolicy> policy,
                                      std::string team, policies::TriggerVars vars,
                                      RankWindows* ranks, bool stream) {
  auto recorded = std::make_shared<std::atomic<bool>>(false);
  const bool ranked = policy->routing.trigger->uses("confidence_rank");
  return [policy = std::move(policy), team = std::move(team), vars, ranks, stream, recorded,
          ranked](std::optional<double> confidence, bool final, std::string* reason) {
    const policies::RoutingPolicy& routing = policy->routing;
    const policies::Trigger& trigger = *routing.trigger;
    policies::TriggerVars v = vars;
    v.confidence = confidence;
    if (confidence && ranked && ranks != nullptr) {
      v.confidence_rank = ranks->rank(team, routing.local_model, RankedScore::kConfidence,
                                      *confidence, routing.rank);
    }
    const policies::Truth t = trigger.evaluate(v);
    const bool deciding = t == policies::Truth::kTrue || final || stream;
    if (confidence && deciding && ranks != nullptr && !recorded->exchange(true)) {
      ranks->rankAndAdd(team, routing.local_model, RankedScore::kConfidence, *confidence,
                        routing.rank);
    }
    if (t == policies::Truth::kTrue) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " (confidence %.3f", confidence.value_or(-1));
      *reason = "trigger '" + trigger.text() + "'" + buf;
      if (v.confidence_rank) {
        std::snprintf(buf, sizeof buf, ", rank %.3f", *v.confidence_rank);
        *reason += buf;
      }
      *reason += ")";
      return Verdict::kEscalate;
    }
    return t == policies::Truth::kFalse || final ? Verdict::kKeepLocal : Verdict::kUndecided;
  };
}

}  // namespace routers
