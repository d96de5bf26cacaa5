// The chat-completions handler: who is asking, what their team's policies allow, where the
// request goes (Router::plan), and the ledger bookkeeping around cloud calls (reserve the
// worst case first, settle the actual cost after).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>

#include "api/openai_json.h"
#include "api/sse.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "routers/cascade.h"
#include "routers/local_provider.h"
#include "routers/router.h"

namespace gateway {
namespace {

constexpr size_t kMaxPendingStreamBytes = 16u << 20;  // a client this far behind is dropped
// The output cap assumed (and sent) for a budgeted cloud call whose request names none.
constexpr int64_t kBudgetedDefaultMaxTokens = 16384;

}  // namespace

// One request's ledger bookkeeping: a reservation while a cloud call runs, and the row.
class Accounting {
 public:
  Accounting(policies::Ledger* ledger, std::string request_id, std::string team,
             std::string key_id, std::string model)
      : ledger_(ledger),
        request_id_(std::move(request_id)),
        team_(std::move(team)),
        key_id_(std::move(key_id)),
        model_(std::move(model)) {}

  ~Accounting() {
    // A reservation whose call never reported back (it cannot happen, but never leak one).
    if (reservation_ && ledger_) ledger_->release(*reservation_);
  }

  void setReservation(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    reservation_ = id;
  }

  // Once: writes the row, settling the reservation when there is one.
  void finish(const routers::RouteInfo& route, const api::Usage* usage, double cost,
              int status, double latency_s) {
    if (done_.exchange(true)) return;
    if (usage && on_usage_) on_usage_(usage->prompt_tokens + usage->completion_tokens);
    if (!ledger_) return;
    policies::LedgerRow row;
    row.request_id = request_id_;
    row.team = team_;
    row.key_id = key_id_;
    row.model = model_;
    row.route = route.label.empty() ? "none" : route.label;
    row.kind = cost > 0 || reservation_ ? "cloud" : "local";
    if (usage) {
      row.prompt_tokens = usage->prompt_tokens;
      row.cached_prompt_tokens = usage->cached_prompt_tokens;
      row.completion_tokens = usage->completion_tokens;
    }
    row.cost_usd = cost;
    row.latency_ms = latency_s * 1000;
    row.status = status;
    row.unix_ms = unixMs();
    std::optional<uint64_t> reservation;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reservation.swap(reservation_);
    }
    api::Status st = reservation ? ledger_->settle(*reservation, row) : ledger_->record(row);
    if (!st.ok()) {
      std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"ledger write failed\",\"what\":\"%s\"}\n",
                   st.message().c_str());
    }
    if (on_settled_) on_settled_(team_);
  }

  void onSettled(std::function<void(const std::string& team)> fn) { on_settled_ = std::move(fn); }
  void onUsage(std::function<void(int64_t total_tokens)> fn) { on_usage_ = std::move(fn); }

 private:
  policies::Ledger* ledger_;
  const std::string request_id_, team_, key_id_, model_;
  std::mutex mu_;
  std::optional<uint64_t> reservation_;
  std::atomic<bool> done_{false};
  std::function<void(const std::string&)> on_settled_;
  std::function<void(int64_t)> on_usage_;
};

namespace {

// Streams (or collects) one answer back to the client in OpenAI's format, with headers that
// say which target answered, after how many attempts, and what it cost.
class ChatForwarder : public routers::ChatSink {
 public:
  ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics,
                const policies::PriceTable& prices, std::shared_ptr<Accounting> account,
                std::string team, std::string model, bool stream, bool include_usage,
                Clock::time_point received)
      : out_(std::move(out)),
        metrics_(metrics),
        prices_(prices),
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
    chunk.model = model_;
    last_id_ = chunk.id;
    created_ = chunk.created;
    fingerprint_ = chunk.system_fingerprint;
    out_->write(api::sseData(api::serializeChatChunk(chunk, include_usage_)));
  }

  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    double duration = secondsSince(received_);
    const std::string& route = route_.label;
    if (!result.ok()) {
      const api::Status& s = result.status();
      int status = s.code() == api::ErrorCode::kCancelled ? 499 : s.httpStatusCode();
      account_->finish(route_, nullptr, 0, started_ ? 200 : status, duration);
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
    account_->finish(route_, r.usage ? &*r.usage : nullptr, cost.value_or(0), 200, duration);
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
  const std::shared_ptr<Accounting> account_;
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

void Gateway::recordPair(const std::string& request_id, const std::string& team,
                         const std::string& model, const routers::CascadePair& pair,
                         bool redact) {
  if (quality_path_.empty()) return;
  api::Json j = {{"request_id", request_id},
                 {"unix_ms", unixMs()},
                 {"team", team},
                 {"model", model},
                 {"reason", pair.reason},
                 {"confidence", pair.confidence ? api::Json(*pair.confidence) : api::Json()},
                 {"local_tokens", pair.local_tokens},
                 {"local_complete", pair.local_complete},
                 {"local", redact ? "[redacted]" : pair.local_text},
                 {"cloud", redact ? "[redacted]" : pair.cloud_text}};
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(quality_mu_);
  std::ofstream out(quality_path_, std::ios::app | std::ios::binary);
  out << line;
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
  auto forwarder = std::make_shared<ChatForwarder>(responder, metrics_, *config_->prices,
                                                   account, team, public_model, request.stream,
                                                   request.include_usage, ex.received);
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
  const bool redact = policy.redact_prompts;
  options.on_pair = [this, request_id = ex.request_id, team, public_model,
                     redact](const routers::CascadePair& pair) {
    recordPair(request_id, team, public_model, pair, redact);
  };
  forwarder->setDecision(complexity, "");
  forwarder->setCall(routers::startCascade(*routes_.at(plan.model).chain, request, forwarder,
                                           deadline, std::move(options)));
}

}  // namespace gateway
