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
