// Router::plan (routers/router.h): every routing mode, the data rules, budgets, the trigger's
// three answers before the local model has spoken, and spilling on a long local queue.
#include "routers/router.h"

#include <gtest/gtest.h>

namespace {

using routers::RoutePlan;
using Target = routers::RoutePlan::Target;

api::ChatRequest request(const std::string& text) {
  api::ChatRequest r;
  r.model = "auto";
  api::Message m;
  m.role = api::Role::kUser;
  m.content = api::Content::ofText(text);
  r.messages.push_back(m);
  return r;
}

policies::TeamPolicy team(policies::RoutingMode mode, const std::string& trigger) {
  policies::TeamPolicy p;
  p.name = "t";
  p.routing.mode = mode;
  p.routing.local_model = "gemma";
  p.routing.cloud_models = {"gpt", "claude"};
  auto t = policies::Trigger::parse(trigger);
  EXPECT_TRUE(t.ok()) << t.status().message();
  p.routing.trigger = std::make_shared<const policies::Trigger>(std::move(t).value());
  p.routing.local_latency_budget_ms = 1000;
  return p;
}

RoutePlan plan(const policies::TeamPolicy& p, const api::ChatRequest& r, double queue_ms = 0,
               bool exhausted = false) {
  routers::RouteInputs in;
  in.request = &r;
  in.policy = &p;
  in.local_queue_ms = queue_ms;
  in.budget_exhausted = exhausted;
  in.budget_used = exhausted ? std::optional<double>(1.0) : std::nullopt;
  in.prompt_tokens = 10;
  return routers::planRoute(in, routers::ComplexityWeights{});
}

const char* kTrigger = "confidence < 0.8 OR complexity > 0.9";

TEST(Router, CascadeWhenTheTriggerNeedsTheLocalAnswer) {
  RoutePlan p = plan(team(policies::RoutingMode::kCascade, kTrigger), request("hi"));
  EXPECT_EQ(p.target, Target::kCascade);
  EXPECT_EQ(p.model, "gemma");
  EXPECT_EQ(p.cloud_model, "gpt");
  EXPECT_EQ(p.reason_code, "cascade");
  EXPECT_LT(p.complexity.score, 0.1);
  EXPECT_FALSE(p.vars.confidence);
  EXPECT_DOUBLE_EQ(*p.vars.turns, 1);
}

TEST(Router, TriggerTrueBeforeTheLocalAnswerGoesStraightToTheCloud) {
  RoutePlan p = plan(team(policies::RoutingMode::kCascade, "has_tools OR complexity > 0.9"),
                     [] {
                       api::ChatRequest r = request("call it");
                       api::Tool t;
                       t.name = "f";
                       r.tools.push_back(t);
                       return r;
                     }());
  EXPECT_EQ(p.target, Target::kCloud);
  EXPECT_EQ(p.model, "gpt");
  EXPECT_EQ(p.reason_code, "trigger");
}

TEST(Router, TriggerThatCannotHoldKeepsItLocal) {
  RoutePlan p = plan(team(policies::RoutingMode::kCascade, "complexity > 0.95 AND has_images"),
                     request("hi"));
  EXPECT_EQ(p.target, Target::kLocal);
  EXPECT_EQ(p.reason_code, "trigger");
}

TEST(Router, ModesAndDataRules) {
  EXPECT_EQ(plan(team(policies::RoutingMode::kLocalOnly, kTrigger), request("x")).target,
            Target::kLocal);
  RoutePlan cloud = plan(team(policies::RoutingMode::kCloudOnly, kTrigger), request("x"));
  EXPECT_EQ(cloud.target, Target::kCloud);
  EXPECT_FALSE(cloud.local_fallback);
  RoutePlan first = plan(team(policies::RoutingMode::kCloudFirst, kTrigger), request("x"));
  EXPECT_EQ(first.target, Target::kCloud);
  EXPECT_TRUE(first.local_fallback);
  policies::TeamPolicy secret = team(policies::RoutingMode::kCascade, "true");
  secret.allow_cloud = false;
  RoutePlan p = plan(secret, request("x"));
  EXPECT_EQ(p.target, Target::kLocal);
  EXPECT_EQ(p.reason_code, "data_rules");
}

TEST(Router, ExhaustedBudgetFollowsWhenExhausted) {
  policies::TeamPolicy p = team(policies::RoutingMode::kCloudOnly, kTrigger);
  p.budget.when_exhausted = policies::WhenExhausted::kLocalOnly;
  EXPECT_EQ(plan(p, request("x"), 0, true).target, Target::kLocal);
  p.budget.when_exhausted = policies::WhenExhausted::kReject;
  EXPECT_EQ(plan(p, request("x"), 0, true).target, Target::kReject);
  policies::TeamPolicy c = team(policies::RoutingMode::kCascade, kTrigger);
  c.budget.when_exhausted = policies::WhenExhausted::kReject;
  RoutePlan keep = plan(c, request("x"), 0, true);
  EXPECT_EQ(keep.target, Target::kLocal) << "a cascade team still gets local answers";
  EXPECT_EQ(keep.reason_code, "budget");
}

TEST(Router, RejectIsOneRuleForThePlannerAndRefusedReservations) {
  using Mode = policies::RoutingMode;
  for (Mode mode : {Mode::kCloudOnly, Mode::kCloudFirst, Mode::kCascade, Mode::kLocalOnly}) {
    policies::TeamPolicy p = team(mode, kTrigger);
    p.budget.when_exhausted = policies::WhenExhausted::kReject;
    const bool cloud_only = mode == Mode::kCloudOnly;
    EXPECT_EQ(routers::rejectsWhenExhausted(p, /*routed=*/true), cloud_only);
    EXPECT_TRUE(routers::rejectsWhenExhausted(p, /*routed=*/false)) << "a named cloud model";
    EXPECT_EQ(plan(p, request("x"), 0, true).target == Target::kReject, cloud_only);
    p.budget.when_exhausted = policies::WhenExhausted::kLocalOnly;
    EXPECT_FALSE(routers::rejectsWhenExhausted(p, true));
    EXPECT_FALSE(routers::rejectsWhenExhausted(p, false));
  }
}

TEST(Router, LongLocalQueueSpillsToTheCloud) {
  policies::TeamPolicy p = team(policies::RoutingMode::kCascade, kTrigger);
  EXPECT_EQ(plan(p, request("x"), 999).target, Target::kCascade);
  RoutePlan spill = plan(p, request("x"), 1500);
  EXPECT_EQ(spill.target, Target::kCloud);
  EXPECT_EQ(spill.reason_code, "local_queue");
  EXPECT_DOUBLE_EQ(*spill.vars.local_queue_ms, 1500);
  p.routing.local_latency_budget_ms = 0;  // spilling off
  EXPECT_EQ(plan(p, request("x"), 1e9).target, Target::kCascade);
}

TEST(Router, TriggerSeesTheRequestsVariables) {
  api::ChatRequest r = request("hi");
  r.max_completion_tokens = 4000;
  r.stream = true;
  RoutePlan p = plan(team(policies::RoutingMode::kCascade, "max_tokens > 3000 AND stream"), r);
  EXPECT_EQ(p.target, Target::kCloud);
  EXPECT_DOUBLE_EQ(*p.vars.max_tokens, 4000);
  EXPECT_DOUBLE_EQ(*p.vars.prompt_tokens, 10);
}

}  // namespace

RoutePlan hinted(const policies::TeamPolicy& p, routers::RouteHint hint, bool exhausted = false,
                 bool local_available = true) {
  api::ChatRequest r = request("hi");
  routers::RouteInputs in;
  in.request = &r;
  in.policy = &p;
  in.budget_exhausted = exhausted;
  in.prompt_tokens = 10;
  in.hint = hint;
  in.local_available = local_available;
  return routers::planRoute(in, routers::ComplexityWeights{});
}

TEST(Router, ParsesTheThreeRouteHintsOnly) {
  EXPECT_EQ(routers::parseRouteHint("local"), routers::RouteHint::kLocal);
  EXPECT_EQ(routers::parseRouteHint("cloud"), routers::RouteHint::kCloud);
  EXPECT_EQ(routers::parseRouteHint("auto"), routers::RouteHint::kAuto);
  EXPECT_FALSE(routers::parseRouteHint("Cloud"));
  EXPECT_FALSE(routers::parseRouteHint(""));
  EXPECT_EQ(routers::hintName(routers::RouteHint::kCloud), "cloud");
}

TEST(Router, EachHintUnderEachModeNarrowsAndNeverWidens) {
  using Mode = policies::RoutingMode;
  using routers::RouteHint;
  for (Mode mode : {Mode::kCloudOnly, Mode::kCloudFirst, Mode::kCascade, Mode::kLocalOnly}) {
    policies::TeamPolicy p = team(mode, kTrigger);
    RoutePlan auto_plan = hinted(p, RouteHint::kAuto);
    RoutePlan unhinted = plan(p, request("hi"));
    EXPECT_EQ(auto_plan.target, unhinted.target) << "auto is the team's routing";
    EXPECT_EQ(auto_plan.reason_code, unhinted.reason_code);

    RoutePlan local = hinted(p, RouteHint::kLocal);
    EXPECT_EQ(local.target, Target::kLocal);
    EXPECT_EQ(local.model, "gemma");
    EXPECT_EQ(local.reason_code, "hint");
    EXPECT_EQ(hinted(p, RouteHint::kLocal, false, /*local_available=*/false).target,
              Target::kReject);

    RoutePlan cloud = hinted(p, RouteHint::kCloud);
    if (mode == Mode::kLocalOnly) {
      EXPECT_EQ(cloud.target, Target::kReject) << "local_only offers no cloud";
      EXPECT_EQ(cloud.reason_code, "hint");
    } else {
      EXPECT_EQ(cloud.target, Target::kCloud);
      EXPECT_EQ(cloud.model, "gpt");
      EXPECT_EQ(cloud.reason_code, "hint");
      EXPECT_FALSE(cloud.local_fallback) << "a cloud hint is answered by the cloud or refused";
    }
  }
}

TEST(Router, CloudHintIsRefusedWherePolicyForbidsTheCloud) {
  using routers::RouteHint;
  policies::TeamPolicy secure = team(policies::RoutingMode::kCascade, kTrigger);
  secure.allow_cloud = false;
  RoutePlan p = hinted(secure, RouteHint::kCloud);
  EXPECT_EQ(p.target, Target::kReject);
  EXPECT_EQ(p.reason_code, "hint");
  EXPECT_NE(p.reason.find("allow_cloud"), std::string::npos) << p.reason;
  EXPECT_EQ(hinted(secure, RouteHint::kLocal).target, Target::kLocal);

  policies::TeamPolicy narrow = team(policies::RoutingMode::kCascade, kTrigger);
  narrow.allowed_models = {"gemma"};
  p = hinted(narrow, RouteHint::kCloud);
  EXPECT_EQ(p.target, Target::kReject);
  EXPECT_NE(p.reason.find("allowed_models"), std::string::npos) << p.reason;

  for (auto when : {policies::WhenExhausted::kLocalOnly, policies::WhenExhausted::kReject}) {
    policies::TeamPolicy spent = team(policies::RoutingMode::kCascade, kTrigger);
    spent.budget.when_exhausted = when;
    p = hinted(spent, RouteHint::kCloud, /*exhausted=*/true);
    EXPECT_EQ(p.target, Target::kReject) << "the client asked for the cloud only";
    EXPECT_EQ(p.reason_code, "budget");
    EXPECT_EQ(hinted(spent, RouteHint::kLocal, true).target, Target::kLocal);
  }
}
