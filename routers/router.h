// Router::plan (DESIGN.md "routers/"): for one request of one team, where it goes: the local
// engine, the cloud, or the cascade (local first, escalate on low confidence), and why.
//
// Only requests for the team's routed model (routing.local_model, or the alias "auto") are
// planned; a request naming another model goes to that model, under the same data and budget
// rules (the gateway applies those). The plan is a pure function of its inputs.
#pragma once

#include <optional>
#include <string>

#include "api/chat.h"
#include "policies/policy_set.h"
#include "policies/trigger.h"
#include "routers/complexity.h"

namespace routers {

// The model name that asks for the team's routing whatever its local model is called.
inline constexpr std::string_view kAutoModel = "auto";

struct RouteInputs {
  const api::ChatRequest* request = nullptr;
  const policies::TeamPolicy* policy = nullptr;
  double local_queue_ms = 0;                // expected wait in the local engine's queue
  std::optional<double> budget_used;        // spent / tightest limit; nullopt: no budget
  bool budget_exhausted = false;            // no cloud call fits the budget any more
  int64_t prompt_tokens = 0;                // estimated
};

struct RoutePlan {
  enum class Target { kLocal, kCloud, kCascade, kReject };
  Target target = Target::kLocal;
  std::string model;          // the `models:` entry that answers first
  std::string cloud_model;    // kCascade: where it escalates to
  bool local_fallback = false;  // kCloud in cloud_first mode: the local model after the cloud
  std::string reason;         // a short, human-readable why (headers, logs, metrics)
  std::string reason_code;    // a bounded label for metrics: "complexity", "mode", ...
  ComplexityScore complexity;
  policies::TriggerVars vars;  // what the trigger saw (confidence unknown at planning time)
};

// Plans a request for the team's routed model.
RoutePlan planRoute(const RouteInputs& in, const ComplexityWeights& weights);

// The trigger variables known from the request alone.
policies::TriggerVars requestVars(const api::ChatRequest& request, double complexity,
                                  int64_t prompt_tokens);

std::string_view targetName(RoutePlan::Target t);

}  // namespace routers
