// POST /v1/embeddings: admit (auth, parse, model, policy, rate limit), then one metered cloud
// call (routers/embeddings.h: the data rules, a durable reservation of the worst case, the
// settlement) or one call of a local embedding model (the embedded engine, off the I/O thread;
// its row is kind "local" with the engine time as compute_ms), answered in OpenAI's shape with
// the same headers, ledger row and metrics as a chat answer. `model` names a `models:` entry
// whose price is marked `embedding`, or one served by a `type: local` provider of
// `kind: embedding`.
#include <algorithm>
#include <cstdio>
#include <mutex>

#include "api/embeddings.h"
#include "api/openai_json.h"
#include "gateway/gateway.h"
#include "gateway/http_util.h"
#include "gateway/live_stats.h"
#include "policies/spend.h"
#include "routers/embeddings.h"
#include "routers/router.h"

namespace gateway {
namespace {

api::Status notEmbeddingModel(const std::string& model, const std::string& why) {
  return api::Status(api::ErrorCode::kInvalidRequest,
                     "The model `" + model + "` cannot create embeddings: " + why, "model",
                     "model_not_supported");
}

// The call in flight, for the client's departure (which may come before it exists). The call
// holds the answer's callback, which holds this: finished() breaks the cycle, and a call that
// finished before set() is never kept.
class EmbedCallHolder {
 public:
  void set(std::shared_ptr<routers::ProviderCall> call) {
    bool cancel_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      call_ = call;
      cancel_now = gone_;
    }
    if (cancel_now) call->cancel();
  }
  void cancel() {
    std::shared_ptr<routers::ProviderCall> call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gone_ = true;
      call = std::move(call_);
    }
    if (call) call->cancel();
  }
  void finished() {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    call_.reset();
  }

 private:
  std::mutex mu_;
  std::shared_ptr<routers::ProviderCall> call_;
  bool gone_ = false, finished_ = false;
};

}  // namespace

api::StatusOr<Gateway::EmbeddingRoute> Gateway::embeddingRoute(
    const std::string& model, const policies::TeamPolicy& policy) const {
  if (model == routers::kAutoModel) {
    return notEmbeddingModel(model, "`auto` routes chat requests; name an embedding model.");
  }
  const ModelRoute* m = config_->findModel(model);
  if (!m) {
    return api::Status(api::ErrorCode::kNotFound,
                       "The model `" + model + "` does not exist or you do not have access to it.",
                       "model", "model_not_found");
  }
  if (!policy.allowsModel(model)) {
    return api::Status(api::ErrorCode::kPermissionDenied,
                       "Team '" + policy.name + "' may not use the model `" + model + "`.", "model",
                       "model_not_allowed");
  }
  const ProviderConfig& pc = config_->providers.at(m->provider);
  if (pc.type == "anthropic") {
    return notEmbeddingModel(model, "it is served by provider '" + m->provider +
                                        "' (Anthropic), which has no embeddings API.");
  }
  const policies::Price* price = config_->prices->find(m->provider, m->upstream_model);
  auto provider = embedding_providers_.find(m->provider);
  if (pc.type == "local" && pc.local.kind == "embedding" && provider != embedding_providers_.end())
    return EmbeddingRoute{provider->second.get(), targetsOf(model).front()};
  if (pc.isLocal() || !price || !price->embedding || provider == embedding_providers_.end()) {
    std::string why = pc.type == "local"
                          ? "it is a local chat model (a local embedding model is a `type: local` "
                            "provider with `kind: embedding`)."
                      : pc.isLocal() ? "embeddings on a `tier: local` server are not supported."
                      : !pc.vertex_project.empty()
                          ? "embeddings through Vertex AI are not supported."
                          : "it is not priced as an embedding model (`embedding: true` in "
                            "pricing).";
    return notEmbeddingModel(model, why);
  }
  std::vector<routers::ChainTarget> targets = targetsOf(model);
  return EmbeddingRoute{provider->second.get(), targets.front()};
}

void Gateway::handleEmbeddings(const Exchange& ex, const std::shared_ptr<Responder>& responder) {
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
                                  "Admin keys may use the admin endpoints only; use a team's key."),
                      "", "", "");
  }
  const std::string team = principal->team;
  auto request = api::parseEmbeddingRequest(ex.body);
  if (!request.ok()) return replyError(ex, responder, request.status(), team, "", "");
  const policies::TeamPolicy& policy = live->policies->policyFor(team);
  auto route = embeddingRoute(request->model, policy);
  if (!route.ok()) {
    return replyError(ex, responder, route.status(), team, request->model, "");
  }
  // The rate limiter takes a typical count now (about 4 bytes a token); the billed tokens
  // correct it when the request ends.
  const int64_t bound = routers::embeddingTokenBound(*request);
  const int64_t estimate = std::max<int64_t>(1, bound / 4);
  limiter_.setReplicas(ledger_ ? ledger_->liveReplicas() : 1);
  if (api::Status st =
          limiter_.admit(team, principal->key_id, policy.rate_limits, estimate, Clock::now());
      !st.ok()) {
    return replyError(ex, responder, st, team, request->model, "");
  }
  runEmbedding(ex, responder, live, *principal, std::move(request).value(), *route, estimate);
}

void Gateway::runEmbedding(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                           std::shared_ptr<const Live> live, const Principal& principal,
                           api::EmbeddingRequest request, const EmbeddingRoute& route,
                           int64_t estimate) {
  const std::string team = principal.team, key = principal.key_id, model = request.model;
  const policies::TeamPolicy& policy = live->policies->policyFor(team);
  auto account = std::make_shared<routers::Account>(
      ledger_.get(),
      routers::Payer{ex.request_id, team, key, model,
                     std::shared_ptr<const policies::TeamPolicy>(live->policies, &policy)});
  account->setDecision("direct");
  account->onSettled([this, live](const std::string& t) { checkAlerts(*live, t); });
  account->onBudgetRefused(
      [this, live, team](double worst_usd) { checkAlerts(*live, team, worst_usd); });
  account->onUsage([this, live, team, key, estimate](int64_t actual) {
    limiter_.adjustTokens(team, key, live->policies->policyFor(team).rate_limits,
                          policies::saturatingAdd(actual, -estimate), Clock::now());
  });
  routers::RouteInfo info;
  info.provider = route.provider->name();
  info.model = route.target.upstream_model;
  info.label = route.target.label;
  info.entry = model;
  const api::EmbeddingEncoding encoding = request.encoding_format;
  const auto received = ex.received;
  const std::string request_id = ex.request_id;
  auto holder = std::make_shared<EmbedCallHolder>();
  responder->onClientGone([holder] { holder->cancel(); });
  const bool local = route.target.api == "local";
  metrics_.recordRouting(team, local ? "local" : "cloud", "requested");
  auto done = [this, responder, account, info, model, team, encoding, received, request_id,
               holder, local](api::StatusOr<api::EmbeddingResponse> result) {
    holder->finished();
    const double duration = secondsSince(received);
    int status = 200;
    if (!result.ok()) {
      status = result.status().code() == api::ErrorCode::kCancelled
                   ? 499
                   : openaiEntrance().errorStatus(result.status());
    }
    api::Usage usage;
    if (result.ok()) {
      usage.prompt_tokens = result->prompt_tokens;
      usage.engine_compute_s = result->compute_s;
    }
    account->finish(info, local, result.ok() ? &usage : nullptr, status, duration);
    const double cost = account->costUsd();
    if (result.ok() || cost > 0) {
      metrics_.recordUsage(team, model, info.label, usage.prompt_tokens, 0, 0, cost);
    }
    live_stats_->add(LiveSample{team, "direct", status, duration * 1000, cost, unixMs()});
    Headers h = commonHeaders(info.label);
    h.emplace_back("x-switchyard-attempts", "1");
    if (!result.ok()) {
      addRetryAfter(h, result.status());
      responder->reply(status, openaiEntrance().errorBody(result.status(), request_id),
                       std::move(h));
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.8f", cost);
      h.emplace_back("x-switchyard-cost-usd", buf);
      if (account->estimated()) h.emplace_back("x-switchyard-cost-estimated", "true");
      result->model = model;
      responder->reply(200, api::serializeEmbeddingResponse(*result, encoding), std::move(h));
    }
    metrics_.recordRequest(team, model, info.label, status, duration, -1);
  };
  holder->set(routers::runMeteredEmbedding(*spender_, account, *route.provider, route.target,
                                           std::move(request), std::move(done),
                                           received + ms(config_->server.request_timeout_s)));
}

}  // namespace gateway
