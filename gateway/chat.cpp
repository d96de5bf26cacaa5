// The chat-completions handler: who is asking, what their team's policies allow, where the
// request goes (Router::plan), and the ledger bookkeeping around cloud calls (reserve the
// worst case first, settle the actual cost after).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <set>

#include "api/openai_json.h"
#include "api/sse.h"
#include "gateway/accounting.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/live_stats.h"
#include "routers/cascade.h"
#include "routers/local_provider.h"
#include "routers/router.h"

namespace gateway {
namespace {

constexpr size_t kMaxPendingStreamBytes = 16u << 20;  // a client this far behind is dropped
// The output cap assumed (and sent) for a budgeted cloud call whose request names none.
constexpr int64_t kBudgetedDefaultMaxTokens = 16384;

}  // namespace

namespace {

// Streams (or collects) one answer back to the client in OpenAI's format, with headers that
// say which target answered, after how many attempts, and what it cost.
class ChatForwarder : public routers::ChatSink {
 public:
  // Called once after a successful answer reached the client, with the target that answered
  // and the answer (streamed answers assembled): shadow comparisons start here.
  using AnswerTap = std::function<void(const routers::RouteInfo& route, bool local_route,
                                       const api::ChatResponse& answer)>;

  ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics,
                const policies::PriceTable& prices, const std::set<std::string>& local_providers,
                LiveStats& live, std::shared_ptr<Accounting> account, std::string team,
                std::string model, bool stream, bool include_usage, Clock::time_point received)
      : out_(std::move(out)),
        metrics_(metrics),
        prices_(prices),
        local_providers_(local_providers),
        live_(live),
        account_(std::move(account)),
        team_(std::move(team)),
        model_(std::move(model)),
        stream_(stream),
        include_usage_(include_usage),
        received_(received) {}

  void onRoute(const routers::RouteInfo& route) override {
    // Keep the planner's scores when the answering target reports none of its own.
    std::optional<double> complexity = route_.complexity;
    std::string escalation = route_.escalation;
    route_ = route;
    if (!route_.complexity) route_.complexity = complexity;
    if (route_.escalation.empty()) route_.escalation = std::move(escalation);
  }
  // Used before any answer exists (a refusal after planning): the scores the plan saw.
  void setDecision(std::optional<double> complexity, std::string note) {
    route_.complexity = complexity;
    route_.escalation = std::move(note);
  }

  void setTap(AnswerTap tap) { tap_ = std::move(tap); }

  void setCall(std::shared_ptr<routers::ProviderCall> call) {
    std::lock_guard<std::mutex> lock(mu_);
    call_ = std::move(call);
    if (cancel_requested_) call_->cancel();
  }

  void cancel() {
    std::shared_ptr<routers::ProviderCall> call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancel_requested_ = true;
      call = call_;
    }
    if (call) call->cancel();
  }

  void onChunk(api::ChatChunk chunk) override {
    if (!started_) {
      started_ = true;
      ttft_ = secondsSince(received_);
      out_->startStream(headers());
    }
    if (out_->pendingBytes() > kMaxPendingStreamBytes) {
      metrics_.recordRejected("slow_client");
      cancel();
      return;
    }
    if (tap_) {
      for (const api::ChunkChoice& c : chunk.choices) {
        if (c.delta.content) streamed_text_ += *c.delta.content;
        if (c.finish_reason) streamed_finish_ = *c.finish_reason;
      }
    }
    chunk.model = model_;
    last_id_ = chunk.id;
    created_ = chunk.created;
    fingerprint_ = chunk.system_fingerprint;
    out_->write(api::sseData(api::serializeChatChunk(chunk, include_usage_)));
  }

  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    double duration = secondsSince(received_);
    const std::string& route = route_.label;
    const bool local_route = local_providers_.count(route_.provider) > 0;
    const std::string decision = account_->decisionFor(local_route);
    if (!result.ok()) {
      const api::Status& s = result.status();
      int status = s.code() == api::ErrorCode::kCancelled ? 499 : s.httpStatusCode();
      account_->finish(route_, local_route, nullptr, 0, started_ ? 200 : status, duration);
      live_.add(LiveSample{team_, decision, started_ ? 200 : status, duration * 1000, 0, unixMs()});
      if (started_) {
        // The stream broke in the middle: the client gets a clean error event and the end.
        out_->write(api::sseData(api::serializeError(s)));
        out_->finish();
        metrics_.recordRequest(team_, model_, route, 200, duration, ttft_);
        return;
      }
      Headers h = headers();
      addRetryAfter(h, s);
      status = s.httpStatusCode();
      out_->reply(status, api::serializeError(s), std::move(h));
      metrics_.recordRequest(team_, model_, route, status, duration, -1);
      return;
    }
    api::ChatResponse& r = result.value();
    if (route_.confidence) metrics_.observeConfidence(*route_.confidence);
    std::optional<double> cost;
    if (r.usage) {
      const policies::Price* price = prices_.find(route_.provider, route_.model);
      cost = price ? price->cost(*r.usage) : 0.0;
      metrics_.recordUsage(team_, model_, route, r.usage->prompt_tokens,
                           r.usage->cached_prompt_tokens, r.usage->completion_tokens, *cost);
    }
    account_->finish(route_, local_route, r.usage ? &*r.usage : nullptr, cost.value_or(0), 200,
                     duration);
    live_.add(LiveSample{team_, decision, 200, duration * 1000, cost.value_or(0), unixMs()});
    // The tap sees the answer as the client got it (streams assembled from the chunks), once
    // the client has it.
    std::optional<api::ChatResponse> tapped;
    if (tap_) {
      tapped = r;
      if (stream_) {
        api::Choice& c = tapped->choices.emplace_back();
        c.message.role = api::Role::kAssistant;
        c.message.content = api::Content::ofText(std::move(streamed_text_));
        if (!streamed_finish_.empty()) c.finish_reason = streamed_finish_;
      }
    }
    auto runTap = [&] {
      if (!tapped) return;
      AnswerTap tap = std::move(tap_);
      tap(route_, local_route, *tapped);
    };
    if (!stream_) {
      r.model = model_;
      Headers h = headers();
      if (cost) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.8f", *cost);
        h.emplace_back("x-switchyard-cost-usd", buf);
      }
      out_->reply(200, api::serializeChatResponse(r), std::move(h));
      metrics_.recordRequest(team_, model_, route, 200, duration, -1);
      runTap();
      return;
    }
    if (!started_) {
      started_ = true;
      out_->startStream(headers());
    }
    if (include_usage_ && r.usage) {
      api::ChatChunk usage_chunk;
      usage_chunk.id = last_id_.empty() ? r.id : last_id_;
      usage_chunk.created = created_ ? created_ : r.created;
      usage_chunk.model = model_;
      usage_chunk.system_fingerprint = fingerprint_;
      usage_chunk.usage = r.usage;
      out_->write(api::sseData(api::serializeChatChunk(usage_chunk, true)));
    }
    out_->write(std::string(api::kSseDone));
    out_->finish();
    metrics_.recordRequest(team_, model_, route, 200, duration, ttft_);
    runTap();
  }

 private:
  Headers headers() const {
    Headers h = commonHeaders(route_.label);
    h.emplace_back("x-switchyard-attempts", std::to_string(route_.attempts));
    if (!route_.failed.empty()) {
      std::string from;
      for (const std::string& f : route_.failed) from += (from.empty() ? "" : ", ") + f;
      h.emplace_back("x-switchyard-fallback-from", from);
    }
    char buf[32];
    if (route_.complexity) {
      std::snprintf(buf, sizeof buf, "%.3f", *route_.complexity);
      h.emplace_back("x-switchyard-complexity", buf);
    }
    if (route_.confidence) {
      std::snprintf(buf, sizeof buf, "%.3f", *route_.confidence);
      h.emplace_back("x-switchyard-confidence", buf);
    }
    if (!route_.escalation.empty()) {
      std::string note = route_.escalation.substr(0, 300);
      for (char& c : note) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = ' ';
      }
      h.emplace_back("x-switchyard-escalation", note);
    }
    return h;
  }

  std::shared_ptr<Responder> out_;
  Metrics& metrics_;
  const policies::PriceTable& prices_;
  const std::set<std::string>& local_providers_;
  LiveStats& live_;
  const std::shared_ptr<Accounting> account_;
  AnswerTap tap_;
  std::string streamed_text_, streamed_finish_;
  const std::string team_, model_;
  routers::RouteInfo route_;
  const bool stream_, include_usage_;
  const Clock::time_point received_;
  bool started_ = false;
  double ttft_ = -1;
  std::string last_id_;
  int64_t created_ = 0;
  std::string fingerprint_;

  std::mutex mu_;
  std::shared_ptr<routers::ProviderCall> call_;
  bool cancel_requested_ = false;
};


// An upper bound of a request's prompt tokens for any tokenizer: one token is at least one
// byte of text, plus the chat format's few tokens per message.
int64_t promptTokenBound(const api::ChatRequest& r) {
  int64_t bytes = 0;
  for (const api::Message& m : r.messages) {
    bytes += 16 + static_cast<int64_t>(m.content.text.size());
    for (const auto& p : m.content.parts) bytes += static_cast<int64_t>(p.text.size()) + 1024;
    for (const auto& t : m.tool_calls) bytes += static_cast<int64_t>(t.arguments.size() + t.name.size());
  }
  for (const api::Tool& t : r.tools) bytes += static_cast<int64_t>(t.parameters.dump().size() + t.description.size());
  return bytes;
}

// A quick estimate (for rate limits and the trigger's prompt_tokens): ~4 bytes per token.
int64_t promptTokenEstimate(const api::ChatRequest& r) { return promptTokenBound(r) / 4 + 1; }

}  // namespace

bool Gateway::isCloudModel(const std::string& model) const {
  const ModelRoute* m = config_->findModel(model);
  return m && config_->providers.at(m->provider).type != "local";
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

Gateway::BudgetView Gateway::budgetView(const std::string& team,
                                        const policies::BudgetPolicy& budget) const {
  BudgetView v;
  if (!ledger_ || !budget.limited()) return v;
  int64_t now = unixMs();
  auto check = [&](std::optional<double> limit, policies::Window w) {
    if (!limit) return;
    policies::Spend s = ledger_->spent(team, w, now);
    double used = s.settled_usd + s.reserved_usd;
    double share = *limit > 0 ? used / *limit : (used > 0 ? 1e9 : 1);
    v.used = std::max(v.used.value_or(0), share);
    if (used >= *limit) v.exhausted = true;
  };
  check(budget.daily_usd, policies::Window::kDay);
  check(budget.monthly_usd, policies::Window::kMonth);
  return v;
}

api::StatusOr<std::shared_ptr<routers::ProviderCall>> Gateway::startCloud(
    routers::Provider& chain, const std::vector<routers::ChainTarget>& targets,
    api::ChatRequest request, const policies::TeamPolicy& policy, const std::string& team,
    const std::shared_ptr<Accounting>& account, std::shared_ptr<routers::ChatSink> sink,
    routers::Deadline deadline) {
  if (ledger_ && policy.budget.limited()) {
    // Reserve the worst case: every prompt token and the whole output cap at the priciest
    // target of the chain. The cap is sent, so the answer cannot cost more.
    if (!request.maxOutputTokens()) request.max_completion_tokens = kBudgetedDefaultMaxTokens;
    int64_t out = *request.maxOutputTokens();
    int64_t in = promptTokenBound(request);
    double worst = 0;
    for (const routers::ChainTarget& t : targets) {
      if (const policies::Price* p = config_->prices->find(t.provider->name(), t.upstream_model)) {
        worst = std::max(worst, (static_cast<double>(in) * p->input +
                                 static_cast<double>(out) * p->output) / 1e6);
      }
    }
    policies::BudgetLimits limits{policy.budget.daily_usd, policy.budget.monthly_usd};
    auto reservation = ledger_->reserve(team, worst, limits, unixMs());
    if (!reservation.ok()) return reservation.status();
    account->setReservation(*reservation);
  }
  return chain.chat(request, std::move(sink), deadline);
}

bool Gateway::sampleShadow(double rate) {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  std::lock_guard<std::mutex> lock(shadow_mu_);
  return std::uniform_real_distribution<double>(0, 1)(shadow_rng_) < rate;
}

void Gateway::handleChat(Exchange& ex, const std::shared_ptr<Responder>& responder) {
  if (isDraining()) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kUnavailable,
                                  "The gateway is shutting down; retry on another instance.")
                          .withRetryAfter(1),
                      "", "", "");
  }
  std::shared_ptr<const Live> live = liveState();
  auto principal = live->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  if (principal->admin) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Admin keys may use the admin endpoints only; chat with a "
                                  "team's key."),
                      "", "", "");
  }
  const std::string team = principal->team;

  auto parsed = api::parseChatRequest(ex.body);
  if (!parsed.ok()) return replyError(ex, responder, parsed.status(), team, "", "");
  api::ChatRequest& request = parsed.value();
  const std::string public_model = request.model;
  const policies::TeamPolicy& policy = live->policies->policyFor(team);
  const policies::RoutingPolicy& routing = policy.routing;
  const bool routed = request.model == routers::kAutoModel || request.model == routing.local_model;
  const std::string entry = routed ? routing.local_model : request.model;

  auto it = routes_.find(entry);
  if (it == routes_.end()) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "The model `" + request.model +
                                      "` does not exist or you do not have access to it.",
                                  "model", "model_not_found"),
                      team, "unknown", "");
  }
  if (!policy.allowsModel(entry)) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kPermissionDenied,
                                  "Team '" + team + "' may not use the model `" + request.model +
                                      "`.",
                                  "model", "model_not_allowed"),
                      team, request.model, "");
  }
  int64_t estimate = promptTokenEstimate(request) + request.maxOutputTokens().value_or(256);
  if (api::Status admitted =
          limiter_.admit(team, principal->key_id, policy.rate_limits, estimate, Clock::now());
      !admitted.ok()) {
    return replyError(ex, responder, admitted, team, request.model, "");
  }

  auto account = std::make_shared<Accounting>(ledger_.get(), ex.request_id, team,
                                              principal->key_id, public_model);
  account->onSettled([this, live](const std::string& t) { checkAlerts(*live, t); });
  // The rate limiter took an estimate; the actual tokens correct it.
  account->onUsage([this, live, team, key = principal->key_id, estimate](int64_t actual) {
    limiter_.adjustTokens(team, key, live->policies->policyFor(team).rate_limits,
                          actual - estimate, Clock::now());
  });
  auto forwarder = std::make_shared<ChatForwarder>(
      responder, metrics_, *config_->prices, local_providers_, *live_stats_, account, team,
      public_model, request.stream, request.include_usage, ex.received);
  responder->onClientGone([forwarder] { forwarder->cancel(); });
  const auto deadline = ex.received + ms(config_->server.request_timeout_s);
  auto fail = [&](const api::Status& s, const std::string& note) {
    forwarder->setDecision(std::nullopt, note);
    forwarder->onFinish(s);
  };

  // The local model of the team answers instead of a cloud target it may not (or can no
  // longer afford to) use.
  auto serveLocally = [&](const std::string& note, std::optional<double> complexity) {
    auto local = routes_.find(routing.local_model);
    if (local == routes_.end() || isCloudModel(routing.local_model)) {
      return fail(api::Status(api::ErrorCode::kPermissionDenied,
                              "Team '" + team + "' cannot be served here: " + note),
                  note);
    }
    metrics_.recordRouting(team, "local", "policy");
    account->setDecision("local");
    forwarder->setDecision(complexity, note);
    forwarder->setCall(local->second.chain->chat(request, forwarder, deadline));
  };

  // A cloud call under the team's budget; an exhausted budget follows when_exhausted.
  auto goCloud = [&](routers::FallbackChain& chain, std::vector<routers::ChainTarget> targets,
                     std::optional<double> complexity, const std::string& note) {
    std::unique_ptr<routers::FallbackChain> combined;
    routers::Provider* runner = &chain;
    if (targets.size() != chain.targets().size()) {
      combined = std::make_unique<routers::FallbackChain>(chain.name(), targets, *timer_,
                                                          observer_.get());
      runner = combined.get();
    }
    forwarder->setDecision(complexity, note);
    auto call = startCloud(*runner, targets, request, policy, team, account, forwarder, deadline);
    if (call.ok()) {
      // A running chain call holds its own copy of the targets: `combined` may go now.
      forwarder->setCall(*call);
      return;
    }
    if (call.status().code() != api::ErrorCode::kQuotaExceeded ||
        policy.budget.when_exhausted == policies::WhenExhausted::kReject) {
      return fail(call.status(), "budget");
    }
    serveLocally("cloud budget exhausted: " + call.status().message(), complexity);
  };

  if (!routed) {
    account->setDecision("direct");
    if (!isCloudModel(entry)) {
      forwarder->setCall(it->second.chain->chat(request, forwarder, deadline));
      return;
    }
    if (!policy.allow_cloud) {
      return replyError(ex, responder,
                        api::Status(api::ErrorCode::kPermissionDenied,
                                    "Team '" + team + "' keeps its data on the local engine "
                                    "(allow_cloud: false); `" + request.model +
                                    "` is a cloud model.",
                                    "model", "cloud_not_allowed"),
                        team, request.model, "");
    }
    metrics_.recordRouting(team, "cloud", "requested");
    goCloud(*it->second.chain, it->second.chain->targets(), std::nullopt, "");
    return;
  }

  BudgetView budget = budgetView(team, policy.budget);
  routers::RouteInputs in;
  in.request = &request;
  in.policy = &policy;
  in.local_queue_ms = localQueueMs(routing.local_model);
  in.budget_used = budget.used;
  in.budget_exhausted = budget.exhausted;
  in.prompt_tokens = promptTokenEstimate(request);
  routers::RoutePlan plan = routers::planRoute(in, complexity_weights_);
  metrics_.recordRouting(team, std::string(routers::targetName(plan.target)), plan.reason_code);
  metrics_.observeComplexity(plan.complexity.score);
  const double complexity = plan.complexity.score;
  request.model = plan.model;
  account->setDecision(plan.target == routers::RoutePlan::Target::kCascade ? "cascade"
                       : plan.target == routers::RoutePlan::Target::kLocal ? "local"
                                                                           : "cloud");

  // Answers of the local engine may be compared with the cloud's: the cascade's escalations
  // always, local answers when the team samples them for shadow comparison.
  std::shared_ptr<RequestFacts> facts;
  if (quality_ && (plan.target == routers::RoutePlan::Target::kLocal ||
                   plan.target == routers::RoutePlan::Target::kCascade)) {
    facts = std::make_shared<RequestFacts>();
    facts->request_id = ex.request_id;
    facts->team = team;
    facts->key_id = principal->key_id;
    facts->public_model = public_model;
    facts->redact = policy.redact_prompts;
    if (!facts->redact) facts->prompt = api::chatRequestToJson(request)["messages"];
    facts->complexity = complexity;
    facts->complexity_features = plan.complexity.features;
    const std::string shadow_model = !plan.cloud_model.empty() ? plan.cloud_model
                                     : routing.cloud_models.empty() ? std::string()
                                                                    : routing.cloud_models[0];
    if (policy.allow_cloud && !shadow_model.empty() && sampleShadow(routing.shadow_rate)) {
      const policies::TeamPolicy policy_copy = policy;
      const api::ChatRequest shadow_request = request;
      const auto started = Clock::now();
      forwarder->setTap([this, facts, policy_copy, shadow_request, shadow_model, started](
                            const routers::RouteInfo& route, bool local_route,
                            const api::ChatResponse& answer) {
        // An escalated cascade already has its pair; only local answers are shadowed.
        if (!local_route) return;
        startShadow(*facts, shadow_request, policy_copy, shadow_model, route, answer,
                    secondsSince(started) * 1000);
      });
    }
  }

  switch (plan.target) {
    case routers::RoutePlan::Target::kReject:
      return fail(api::Status(api::ErrorCode::kQuotaExceeded,
                              "Team '" + team + "' has exhausted its cloud budget.", {},
                              "insufficient_quota"),
                  plan.reason);
    case routers::RoutePlan::Target::kLocal: {
      forwarder->setDecision(complexity, "");
      forwarder->setCall(routes_.at(plan.model).chain->chat(request, forwarder, deadline));
      return;
    }
    case routers::RoutePlan::Target::kCloud: {
      auto cloud = routes_.find(plan.model);
      if (cloud == routes_.end()) return fail(api::Status(api::ErrorCode::kInternal, "no route"), "");
      std::vector<routers::ChainTarget> targets = cloud->second.chain->targets();
      if (plan.local_fallback) {
        for (const auto& t : routes_.at(routing.local_model).chain->targets()) targets.push_back(t);
      }
      metrics_.recordEscalation(team, plan.reason_code);
      goCloud(*cloud->second.chain, std::move(targets), complexity, plan.reason);
      return;
    }
    case routers::RoutePlan::Target::kCascade:
      break;
  }

  // The cascade: local first, the cloud when the trigger fires on the local answer.
  routers::CascadeOptions options;
  options.hold_tokens = routing.hold_tokens;
  options.confidence = config_->confidence;
  options.confidence.min_tokens = routing.min_tokens;
  options.complexity = complexity;
  auto trigger = routing.trigger;
  policies::TriggerVars vars = plan.vars;
  options.decide = [trigger, vars](std::optional<double> confidence, bool final,
                                   std::string* reason) {
    policies::TriggerVars v = vars;
    v.confidence = confidence;
    policies::Truth t = trigger->evaluate(v);
    if (t == policies::Truth::kTrue) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " (confidence %.3f)", confidence.value_or(-1));
      *reason = "trigger '" + trigger->text() + "'" + buf;
      return routers::Verdict::kEscalate;
    }
    return t == policies::Truth::kFalse || final ? routers::Verdict::kKeepLocal
                                                 : routers::Verdict::kUndecided;
  };
  auto cloud_route = routes_.find(plan.cloud_model);
  const policies::TeamPolicy policy_copy = policy;
  options.escalate = [this, cloud_route, policy_copy, team, account, deadline](
                         const api::ChatRequest& req, std::shared_ptr<routers::ChatSink> sink)
      -> api::StatusOr<std::shared_ptr<routers::ProviderCall>> {
    if (cloud_route == routes_.end()) {
      return api::Status(api::ErrorCode::kInternal, "no cloud route");
    }
    api::ChatRequest cloud_req = req;
    cloud_req.model = cloud_route->first;
    metrics_.recordEscalation(team, "confidence");
    return startCloud(*cloud_route->second.chain, cloud_route->second.chain->targets(), cloud_req,
                      policy_copy, team, account, std::move(sink), deadline);
  };
  if (facts) {
    options.on_pair = [this, facts](const routers::CascadePair& pair) { recordPair(*facts, pair); };
  }
  forwarder->setDecision(complexity, "");
  forwarder->setCall(routers::startCascade(*routes_.at(plan.model).chain, request, forwarder,
                                           deadline, std::move(options)));
}

}  // namespace gateway
