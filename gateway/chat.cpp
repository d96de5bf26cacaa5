// The chat-completions handler: admit (auth, parse, model, policy, rate limit), plan
// (Router::plan for routed requests), dispatch. Every call that can reach a cloud provider
// runs through routers::Spender, which applies the data rules and the budget, reserves
// durably and settles (routers/spend.h); this file only decides where a request goes.
#include <algorithm>
#include <cstdio>

#include "api/openai_json.h"
#include "gateway/chat_forwarder.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "policies/spend.h"
#include "routers/cascade.h"
#include "routers/local_provider.h"
#include "routers/router.h"
#include "routers/spend.h"

namespace gateway {
// One admitted chat request on its way to a target.
struct Gateway::ChatCall {
  std::shared_ptr<const Live> live;
  std::string team, key_id, request_id, public_model;
  api::ChatRequest request;
  std::shared_ptr<const policies::TeamPolicy> policy;
  std::shared_ptr<routers::Account> account;
  std::shared_ptr<ChatForwarder> forwarder;
  routers::Deadline deadline;
  const Entrance* entrance = nullptr;  // the API the client speaks
  std::optional<routers::RouteHint> hint;  // the client's route hint; nullopt when none

  void fail(const api::Status& s, const std::string& note) {
    forwarder->setDecision(std::nullopt, note);
    forwarder->onFinish(s);
  }
};

bool Gateway::isCloudModel(const std::string& model) const {
  const ModelRoute* m = config_->findModel(model);
  return m && !config_->providers.at(m->provider).isLocal();
}

double Gateway::localQueueMs(const std::string& model) const {
  auto it = routes_.find(model);
  if (it == routes_.end()) return 0;
  auto* local = dynamic_cast<routers::LocalProvider*>(it->second.chain->targets()[0].provider);
  if (!local) return 0;
  engine::EngineStats s = local->engine().stats();
  if (s.queued == 0) return 0;
  // Each waiting request is taken to need a typical answer's worth of decode steps.
  constexpr double kTypicalAnswerTokens = 256;
  double rate = std::max(1.0, s.decode_tokens_per_s);
  return s.queued * kTypicalAnswerTokens / rate * 1000;
}

std::vector<routers::ChainTarget> Gateway::targetsOf(const std::string& model) const {
  auto it = routes_.find(model);
  return it == routes_.end() ? std::vector<routers::ChainTarget>{} : it->second.chain->targets();
}

std::vector<routers::ChainTarget> Gateway::cloudChain(
    const policies::RoutingPolicy& routing) const {
  std::vector<routers::ChainTarget> chain;
  for (const std::string& model : routing.cloud_models) {
    for (const routers::ChainTarget& t : targetsOf(model)) {
      const bool seen = std::any_of(chain.begin(), chain.end(), [&](const auto& c) {
        return c.label == t.label && c.model == t.model;
      });
      if (t.cloud() && !seen) chain.push_back(t);
    }
  }
  return chain;
}

std::string Gateway::budgetRefusal(const std::string& team,
                                   const policies::BudgetPolicy& budget) const {
  std::string message = "Team '" + team + "' has exhausted its cloud budget";
  if (!ledger_) return message + ".";
  const int64_t now = unixMs();
  const char* sep = ": ";
  auto window = [&](std::optional<double> limit, policies::Window w, const char* name) {
    if (!limit) return;
    const policies::Spend s = ledger_->spent(team, w, now);
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s$%.4f spent and $%.4f reserved of its %s limit of $%.4f for %s",
                  sep, s.settled_usd, s.reserved_usd, name, *limit,
                  policies::periodKey(w, now).c_str());
    message += buf;
    sep = "; ";
  };
  window(budget.daily_usd, policies::Window::kDay, "daily");
  window(budget.monthly_usd, policies::Window::kMonth, "monthly");
  return message + ".";
}

void Gateway::addLocalAfterRefusal(const policies::TeamPolicy& policy, bool routed,
                                   std::vector<routers::ChainTarget>& targets) const {
  if (routers::rejectsWhenExhausted(policy, routed)) return;
  const std::string& local = policy.routing.local_model;
  if (local.empty() || !routes_.count(local) || isCloudModel(local)) return;
  for (routers::ChainTarget t : targetsOf(local)) {
    if (t.cloud()) continue;
    t.after_refusal_only = true;
    targets.push_back(std::move(t));
  }
}

bool Gateway::sampleShadow(double rate) {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  std::lock_guard<std::mutex> lock(shadow_mu_);
  return std::uniform_real_distribution<double>(0, 1)(shadow_rng_) < rate;
}

std::optional<Gateway::ChatCall> Gateway::admitChat(Exchange& ex,
                                                    const std::shared_ptr<Responder>& responder,
                                                    const Entrance& entrance) {
  if (isDraining()) {
    replyError(ex, responder,
               api::Status(api::ErrorCode::kUnavailable,
                           "The gateway is shutting down; retry on another instance.")
                   .withRetryAfter(1),
               "", "", "", entrance);
    return std::nullopt;
  }
  ChatCall c;
  c.entrance = &entrance;
  c.live = liveState();
  auto principal = c.live->auth->authenticate(entrance.credentials(ex));
  if (!principal.ok()) {
    replyError(ex, responder, principal.status(), "", "", "", entrance);
    return std::nullopt;
  }
  if (principal->admin) {
    replyError(ex, responder,
               api::Status(api::ErrorCode::kPermissionDenied,
                           "Admin keys may use the admin endpoints only; chat with a team's key."),
               "", "", "", entrance);
    return std::nullopt;
  }
  c.team = principal->team;
  c.key_id = principal->key_id;
  auto parsed = entrance.parseFor(ex, c.team);
  if (!parsed.ok()) {
    replyError(ex, responder, parsed.status(), c.team, "", "", entrance);
    return std::nullopt;
  }
  c.request = std::move(parsed).value();
  auto hint = routers::takeRouteHint(ex.route_hint, c.request);
  if (!hint.ok()) {
    replyError(ex, responder, hint.status(), c.team, "", "", entrance);
    return std::nullopt;
  }
  c.hint = *hint;
  c.public_model = c.request.model;
  const policies::TeamPolicy& policy = c.live->policies->policyFor(c.team);
  c.policy = std::shared_ptr<const policies::TeamPolicy>(c.live->policies, &policy);
  if (api::Status st = checkModel(c); !st.ok()) {
    replyError(ex, responder, st, c.team, st.param() == "model" ? c.request.model : "", "",
               entrance);
    return std::nullopt;
  }
  // The rate limiter takes an estimate now (the output cap bounded, so that an absurd
  // max_tokens cannot overflow it); the actual tokens correct it when the request ends.
  const int64_t estimate = policies::saturatingAdd(
      policies::promptTokenEstimate(c.request),
      std::min(c.request.maxOutputTokens().value_or(256), policies::kMaxOutputCap));
  // Replicas sharing a ledger each enforce their share of the limits (rate_limiter.h).
  limiter_.setReplicas(ledger_ ? ledger_->liveReplicas() : 1);
  if (api::Status admitted =
          limiter_.admit(c.team, c.key_id, policy.rate_limits, estimate, Clock::now());
      !admitted.ok()) {
    replyError(ex, responder, admitted, c.team, c.request.model, "", entrance);
    return std::nullopt;
  }
  openAccount(c, ex, responder, estimate);
  return c;
}

api::Status Gateway::checkModel(const ChatCall& c) const {
  const policies::RoutingPolicy& routing = c.policy->routing;
  const bool routed = c.request.model == routers::kAutoModel || c.request.model == routing.local_model;
  const std::string entry = routed ? routing.local_model : c.request.model;
  if (!routes_.count(entry)) {
    return api::Status(api::ErrorCode::kNotFound,
                       "The model `" + c.request.model +
                           "` does not exist or you do not have access to it.",
                       "model", "model_not_found");
  }
  if (!c.policy->allowsModel(entry)) {
    return api::Status(api::ErrorCode::kPermissionDenied,
                       "Team '" + c.team + "' may not use the model `" + c.request.model + "`.",
                       "model", "model_not_allowed");
  }
  const ModelRoute* m = config_->findModel(entry);
  const policies::Price* price = config_->prices->find(m->provider, m->upstream_model);
  if (price && price->embedding) {  // priced by input only: an answer would cost nothing
    return api::Status(api::ErrorCode::kInvalidRequest,
                       "The model `" + entry + "` is an embedding model; use POST /v1/embeddings.",
                       "model", "model_not_supported");
  }
  return api::Status();
}

void Gateway::openAccount(ChatCall& c, const Exchange& ex,
                          const std::shared_ptr<Responder>& responder, int64_t estimate) {
  c.request_id = ex.request_id;
  c.account = std::make_shared<routers::Account>(
      ledger_.get(), routers::Payer{ex.request_id, c.team, c.key_id, c.public_model, c.policy});
  std::shared_ptr<const Live> live = c.live;
  c.account->onSettled([this, live](const std::string& t) { checkAlerts(*live, t); });
  c.account->onBudgetRefused(
      [this, live, team = c.team](double worst_usd) { checkAlerts(*live, team, worst_usd); });
  c.account->onUsage([this, live, team = c.team, key = c.key_id, estimate](int64_t actual) {
    limiter_.adjustTokens(team, key, live->policies->policyFor(team).rate_limits,
                          policies::saturatingAdd(actual, -estimate), Clock::now());
  });
  ChatForwarder::Context ctx{c.team, c.public_model, c.request.stream, ex.received,
                             c.entrance,
                             c.entrance->writerFor(c.request, c.public_model, ex, c.team),
                             ex.request_id,
                             c.hint ? std::string(routers::hintName(*c.hint)) : ""};
  c.forwarder = std::make_shared<ChatForwarder>(responder, metrics_, local_providers_,
                                                *live_stats_, c.account, std::move(ctx));
  c.forwarder->attach();
  c.deadline = ex.received + ms(config_->server.request_timeout_s);
}

void Gateway::handleChat(Exchange& ex, const std::shared_ptr<Responder>& responder,
                         const Entrance& entrance) {
  std::optional<ChatCall> call = admitChat(ex, responder, entrance);
  if (!call) return;
  const policies::RoutingPolicy& routing = call->policy->routing;
  if (call->request.model == routers::kAutoModel || call->request.model == routing.local_model) {
    return dispatchPlanned(*call);
  }
  dispatchDirect(*call);
}

void Gateway::runTargets(ChatCall& c, const std::string& name,
                         std::vector<routers::ChainTarget> targets,
                         std::optional<double> complexity, const std::string& note) {
  c.forwarder->setDecision(complexity, note);
  c.forwarder->setCall(
      spender_->run(name, c.account, std::move(targets), c.request, c.forwarder, c.deadline));
}

void Gateway::dispatchDirect(ChatCall& c) {
  const std::string model = c.request.model;
  c.account->setDecision("direct");
  const bool cloud_model = isCloudModel(model);
  if ((c.hint == routers::RouteHint::kLocal && cloud_model) ||
      (c.hint == routers::RouteHint::kCloud && !cloud_model)) {
    return c.fail(api::Status(api::ErrorCode::kPermissionDenied,
                              "The route hint '" + std::string(routers::hintName(*c.hint)) +
                                  "' contradicts the model `" + model + "`, which is " +
                                  (cloud_model ? "a cloud model." : "a local model."),
                              routers::kRouteHintHeader, "route_hint_refused"),
                  "");
  }
  if (!cloud_model) return runTargets(c, model, targetsOf(model), std::nullopt, "");
  if (!c.policy->allow_cloud) {
    return c.fail(api::Status(api::ErrorCode::kPermissionDenied,
                              "Team '" + c.team + "' keeps its data on the local engine "
                              "(allow_cloud: false); `" + model + "` is a cloud model.",
                              "model", "cloud_not_allowed"),
                  "");
  }
  metrics_.recordRouting(c.team, "cloud", "requested");
  std::vector<routers::ChainTarget> targets = targetsOf(model);
  addLocalAfterRefusal(*c.policy, /*routed=*/false, targets);
  runTargets(c, model, std::move(targets), std::nullopt, "");
}

routers::RoutePlan Gateway::planChat(const Live& live, const std::string& team,
                                     const policies::TeamPolicy& policy,
                                     const api::ChatRequest& request,
                                     routers::RouteHint hint, bool record_rank) const {
  routers::RouteInputs in;
  in.request = &request;
  in.policy = &policy;
  in.ranks = ranks_.get();
  in.team = team;
  in.record_rank = record_rank;
  in.local_queue_ms = localQueueMs(policy.routing.local_model);
  if (ledger_ && policy.budget.limited()) {
    // From the ledger's fresh values where it has them: the reservation checks exactly.
    policies::BudgetState budget =
        policies::budgetState(*ledger_, team, policy.budget, unixMs(), /*cached=*/true);
    in.budget_used = budget.used;
    in.budget_exhausted = budget.exhausted;
  }
  in.prompt_tokens = policies::promptTokenEstimate(request);
  in.hint = hint;
  in.local_available = !isCloudModel(policy.routing.local_model);
  return routers::planRoute(in, live.complexity);
}

std::vector<routers::ChainTarget> Gateway::planTargets(const policies::TeamPolicy& policy,
                                                       const routers::RoutePlan& plan,
                                                       routers::RouteHint hint) const {
  using Target = routers::RoutePlan::Target;
  std::vector<routers::ChainTarget> targets;
  if (plan.target == Target::kLocal) {
    targets = targetsOf(plan.model);
    if (hint == routers::RouteHint::kLocal) {  // a local hint never reaches the cloud
      std::erase_if(targets, [](const routers::ChainTarget& t) { return t.cloud(); });
    }
  } else if (plan.target == Target::kCloud) {
    // The cloud models in order, then what the first one's own `fallbacks:` add locally.
    targets = cloudChain(policy.routing);
    for (const routers::ChainTarget& t : targetsOf(plan.model)) {
      if (!t.cloud()) targets.push_back(t);
    }
    if (plan.local_fallback) {
      for (const auto& t : targetsOf(policy.routing.local_model)) targets.push_back(t);
    } else if (plan.reason_code != "hint") {  // a cloud hint is never answered locally
      addLocalAfterRefusal(policy, /*routed=*/true, targets);
    }
  }
  return targets;
}

void Gateway::dispatchPlanned(ChatCall& c) {
  const routers::RouteHint hint = c.hint.value_or(routers::RouteHint::kAuto);
  routers::RoutePlan plan = planChat(*c.live, c.team, *c.policy, c.request, hint);
  metrics_.recordRouting(c.team, std::string(routers::targetName(plan.target)), plan.reason_code);
  metrics_.observeComplexity(plan.complexity.score);
  const double complexity = plan.complexity.score;
  c.request.model = plan.model;
  using Target = routers::RoutePlan::Target;
  c.account->setDecision(plan.target == Target::kCascade ? "cascade"
                         : plan.target == Target::kLocal ? "local"
                                                         : "cloud");
  std::shared_ptr<RequestFacts> facts = qualityFacts(c, plan);
  switch (plan.target) {
    case Target::kReject:
      if (plan.reason_code == "hint") {
        return c.fail(api::Status(api::ErrorCode::kPermissionDenied,
                                  "Team '" + c.team + "' cannot follow the " + plan.reason + ".",
                                  routers::kRouteHintHeader, "route_hint_refused"),
                      plan.reason);
      }
      return c.fail(api::Status(api::ErrorCode::kQuotaExceeded,
                                budgetRefusal(c.team, c.policy->budget), {},
                                "insufficient_quota"),
                    plan.reason);
    case Target::kLocal:
      return runTargets(c, plan.model, planTargets(*c.policy, plan, hint), complexity, "");
    case Target::kCloud:
      metrics_.recordEscalation(c.team, plan.reason_code);
      return runTargets(c, plan.model, planTargets(*c.policy, plan, hint), complexity,
                        plan.reason);
    case Target::kCascade:
      return dispatchCascade(c, plan, facts);
  }
}

std::shared_ptr<Gateway::RequestFacts> Gateway::qualityFacts(ChatCall& c,
                                                             const routers::RoutePlan& plan) {
  // Answers of the local engine may be compared with the cloud's: the cascade's escalations
  // always, local answers when the team samples them for shadow comparison.
  using Target = routers::RoutePlan::Target;
  if (!quality_ || (plan.target != Target::kLocal && plan.target != Target::kCascade)) {
    return nullptr;
  }
  const policies::RoutingPolicy& routing = c.policy->routing;
  auto facts = std::make_shared<RequestFacts>();
  facts->request_id = c.request_id;
  facts->team = c.team;
  facts->key_id = c.key_id;
  facts->public_model = c.public_model;
  facts->redact = c.policy->redact_prompts;
  if (!facts->redact) facts->prompt = api::chatRequestToJson(c.request)["messages"];
  facts->complexity = plan.complexity.score;
  facts->complexity_features = plan.complexity.features;
  const std::string shadow_model = !plan.cloud_model.empty() ? plan.cloud_model
                                   : routing.cloud_models.empty() ? std::string()
                                                                  : routing.cloud_models[0];
  if (c.policy->allow_cloud && !shadow_model.empty() && sampleShadow(routing.shadow_rate)) {
    auto policy = c.policy;
    const api::ChatRequest shadow_request = c.request;
    const auto started = Clock::now();
    c.forwarder->setTap([this, facts, policy, shadow_request, shadow_model, started](
                            const routers::RouteInfo& route, bool local_route,
                            const api::ChatResponse& answer) {
      // An escalated cascade already has its pair; only local answers are shadowed.
      if (!local_route) return;
      startShadow(*facts, shadow_request, policy, shadow_model, route, answer,
                  secondsSince(started) * 1000);
    });
  }
  return facts;
}

void Gateway::dispatchCascade(ChatCall& c, const routers::RoutePlan& plan,
                              const std::shared_ptr<RequestFacts>& facts) {
  const policies::RoutingPolicy& routing = c.policy->routing;
  routers::CascadeOptions options;
  options.hold_tokens = routing.hold_tokens;
  options.confidence = c.live->confidence;
  options.confidence.min_tokens = routing.min_tokens;
  options.complexity = plan.complexity.score;
  options.decide = routers::triggerDecider(c.policy, c.team, plan.vars, ranks_.get(),
                                           c.request.stream);
  options.escalate = escalation(c, plan.cloud_model);
  options.on_draft_compute = [account = c.account](double compute_s) {
    account->addDraftCompute(compute_s);
  };
  if (routing.draft == policies::RoutingPolicy::Draft::kComplete) {
    // The draft finishes in the background within the team's hourly engine-time cap.
    options.complete_draft = [this, team = c.team, cap = routing.draft_gpu_seconds_per_hour] {
      return draft_cap_.allows(team, cap, routers::Clock::now());
    };
    options.on_background_draft = [this, team = c.team](double compute_s) {
      draft_cap_.spend(team, compute_s, routers::Clock::now());
    };
  }
  // The gate and the reservation read the ledger: never on the engine's thread.
  options.post = [this](std::function<void()> fn) {
    if (timer_->after(std::chrono::nanoseconds(0), fn) == 0) fn();  // shut down: run here
  };
  if (facts) {
    options.on_pair = [this, facts](const routers::CascadePair& pair) { recordPair(*facts, pair); };
  }
  c.forwarder->setDecision(plan.complexity.score, "");
  // The local side runs through the spender too: its fallbacks may be cloud targets.
  // startCascade calls the local side once, before it returns.
  auto local = spender_->bind(c.account, plan.model, targetsOf(plan.model));
  c.forwarder->setCall(
      routers::startCascade(*local, c.request, c.forwarder, c.deadline, std::move(options)));
}

// How the cascade reaches the cloud for this request: the team's cloud_models in order, one
// fallback chain under the one budget. The gate's refusals that are known at once (data
// rules, an exhausted budget) are answered at once, so the local answer stands; the rest (a
// reservation that does not fit, an unavailable ledger) arrive as the cloud call's failure,
// which leaves the local answer standing too. An escalation is counted when the cloud call
// starts, labelled with the cascade's reason code.
routers::CascadeOptions::Escalate Gateway::escalation(const ChatCall& c,
                                                      const std::string& cloud_model) {
  std::vector<routers::ChainTarget> targets = cloudChain(c.policy->routing);
  return [this, account = c.account, policy = c.policy, team = c.team, targets, cloud_model,
          deadline = c.deadline](const api::ChatRequest& req,
                                 std::shared_ptr<routers::ChatSink> sink,
                                 const std::string& reason_code)
             -> api::StatusOr<std::shared_ptr<routers::ProviderCall>> {
    if (targets.empty()) return api::Status(api::ErrorCode::kInternal, "no cloud route");
    if (api::Status st = spender_->admit(*policy, targets.front()); !st.ok()) return st;
    if (ledger_ && policy->budget.limited() &&
        policies::budgetState(*ledger_, team, policy->budget, unixMs()).exhausted) {
      return api::Status(api::ErrorCode::kQuotaExceeded, budgetRefusal(team, policy->budget), {},
                         "insufficient_quota");
    }
    account->onNextCloudLaunch(
        [this, team, reason_code] { metrics_.recordEscalation(team, reason_code); });
    api::ChatRequest cloud_req = req;
    cloud_req.model = cloud_model;
    return spender_->run(cloud_model, account, targets, cloud_req, std::move(sink), deadline);
  };
}

}  // namespace gateway
