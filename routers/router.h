// Router::plan (DESIGN.md "routers/"): for one request of one team, where it goes: the local
// engine, the cloud, or the cascade (local first, escalate on low confidence), and why.
//
// Only requests for the team's routed model (routing.local_model, or the alias "auto") are
// planned; a request naming another model goes to that model, under the same data and budget
// rules (the gateway applies those). The plan is a function of its inputs, and records the
// request's complexity into the team's rank window (RouteInputs::ranks).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "api/chat.h"
#include "policies/policy_set.h"
#include "policies/trigger.h"
#include "routers/cascade.h"
#include "routers/complexity.h"
#include "routers/rank_window.h"

namespace routers {

// The model name that asks for the team's routing whatever its local model is called.
inline constexpr std::string_view kAutoModel = "auto";

// A client's per-request steer (header x-switchyard-route-hint, body field route_hint). It
// narrows the team's plan and never widens it: `local` answers on the local engine only,
// `cloud` on the team's cloud models only, `auto` (the default) is the team's routing.
enum class RouteHint { kAuto, kLocal, kCloud };

// "local", "cloud" or "auto"; nullopt for anything else.
std::optional<RouteHint> parseRouteHint(std::string_view text);
std::string_view hintName(RouteHint h);

// The request's hint: the x-switchyard-route-hint header's value (`header`, "" when absent),
// else the body's `route_hint`, which is taken out of request.extra so that no upstream sees
// it; the header wins when both are sent. nullopt: no hint. An unknown value or a non-string
// field is kInvalidRequest naming the header or the field.
inline constexpr const char* kRouteHintHeader = "x-switchyard-route-hint";
api::StatusOr<std::optional<RouteHint>> takeRouteHint(std::string_view header,
                                                      api::ChatRequest& request);

struct RouteInputs {
  const api::ChatRequest* request = nullptr;
  const policies::TeamPolicy* policy = nullptr;
  double local_queue_ms = 0;                // expected wait in the local engine's queue
  std::optional<double> budget_used;        // spent / tightest limit; nullopt: no budget
  bool budget_exhausted = false;            // no cloud call fits the budget any more
  int64_t prompt_tokens = 0;                // estimated
  RouteHint hint = RouteHint::kAuto;
  bool local_available = true;              // the routed local model is a local engine
  // The team's rank windows (vars.complexity_rank); null: the rank is unknown. With
  // `record_rank`, the request's complexity joins the window after its rank is read (the one
  // state a plan changes; POST /v1/route/explain plans without recording).
  RankWindows* ranks = nullptr;
  std::string_view team;  // whose window (a team policies.yaml does not list has its own)
  bool record_rank = true;
};

struct RoutePlan {
  enum class Target { kLocal, kCloud, kCascade, kReject };
  Target target = Target::kLocal;
  std::string model;          // the `models:` entry that answers first
  std::string cloud_model;    // kCascade: where it escalates to
  bool local_fallback = false;  // kCloud in cloud_first mode: the local model after the cloud
  std::string reason;         // a short, human-readable why (headers, logs, metrics)
  std::string reason_code;    // a bounded label for metrics: "complexity", "mode", ...
                              // kReject: "budget" (429) or "hint" (a refused hint, 403)
  ComplexityScore complexity;
  policies::TriggerVars vars;  // what the trigger saw (confidence unknown at planning time)
};

// Plans a request for the team's routed model. A hint the policy cannot honour is a kReject
// that says why: `cloud` where the team may not use the cloud (allow_cloud false, routing mode
// local_only, no cloud model, a cloud model outside allowed_models) or its budget is exhausted
// (reason_code "budget", whatever when_exhausted says: the client asked for the cloud only);
// `local` where the routed model is not a local engine.
RoutePlan planRoute(const RouteInputs& in, const ComplexityWeights& weights);

// Where a routed request's scores are ranked: the team and its local model.
std::optional<double> complexityRank(const RouteInputs& in, double complexity);

// The cascade's judgement (CascadeOptions::decide) under the team's trigger, from the plan's
// variables and the local answer's confidence so far. confidence_rank is that confidence
// ranked among the team's recent local answers on its local model (`ranks`, may be null: the
// rank is then unknown), read before this answer's confidence joins them. It joins once per
// request, when the cascade acts on it: an escalation, the final verdict, or a stream's one
// decision after its held tokens (`stream`); so the window holds every local answer's deciding
// confidence, escalated or not. An unknown confidence joins nothing.
CascadeOptions::Decide triggerDecider(std::shared_ptr<const policies::TeamPolicy> policy,
                                      std::string team, policies::TriggerVars vars,
                                      RankWindows* ranks, bool stream);

// The trigger variables known from the request alone.
policies::TriggerVars requestVars(const api::ChatRequest& request, double complexity,
                                  int64_t prompt_tokens);

std::string_view targetName(RoutePlan::Target t);

// The one reading of `budget.when_exhausted: reject`, applied alike by the planner (an
// exhausted budget) and after a refused reservation: a request the budget cannot pay for gets
// 429 when the cloud is all the team's policy offers it (a request naming a cloud model, or
// routing mode cloud_only); a routed request whose policy also has local answers (cascade,
// cloud_first, local_only) is answered locally.
bool rejectsWhenExhausted(const policies::TeamPolicy& policy, bool routed);

}  // namespace routers
