// Gateway: the request handler behind the HTTP server. Authenticates, parses and validates,
// picks the target for the model and streams its answer back in OpenAI's wire format.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>

#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/entrance.h"
#include "gateway/exchange.h"
#include "gateway/metrics.h"
#include "gateway/response_store.h"
#include "gateway/server.h"
#include "engine/chat_template.h"
#include "engine/engine.h"
#include "policies/ledger.h"
#include "policies/policy_set.h"
#include "policies/rate_limiter.h"
#include "quality/record.h"
#include "routers/cascade.h"
#include "routers/complexity.h"
#include "routers/circuit_breaker.h"
#include "routers/embeddings.h"
#include "routers/fallback.h"
#include "routers/http_client.h"
#include "routers/provider.h"
#include "routers/router.h"
#include "routers/spend.h"
#include "routers/timer.h"

namespace gateway {

class QualityHub;
class SpendMetrics;
class LiveStats;

class Gateway {
 public:
  // Builds the providers of the config and loads the local engines' models. `metrics` must
  // outlive the gateway. Fails (naming the provider, file and tensor) when a model cannot load.
  static api::StatusOr<std::unique_ptr<Gateway>> create(std::shared_ptr<const Config> config,
                                                        Metrics& metrics);
  ~Gateway();

  // The RequestHandler for gateway::Server. Never blocks, never throws.
  void handle(Exchange exchange, std::shared_ptr<Responder> responder);

  // Tells the gateway that the server is draining (new requests get 503, /readyz fails).
  void setDrainingProbe(std::function<bool()> probe) { draining_ = std::move(probe); }

  // Re-reads the policies file (SIGHUP, POST /admin/v1/reload). An invalid file changes
  // nothing and its error is returned; the old policies keep serving.
  api::Status reloadPolicies();

  // For Server::setThreadService: binds an upstream HTTP driver to the calling I/O thread, so
  // that the cloud calls it starts are answered in its own event loop. Destroy it on that
  // thread, before the gateway.
  std::unique_ptr<ThreadService> upstreamThreadService();

 private:
  struct Route {
    const ModelRoute* model;
    routers::FallbackChain* chain;  // the model's own target, then its fallbacks
  };

  // What a reload swaps at once: the policies and the keys they give.
  struct Live {
    std::shared_ptr<const policies::PolicySet> policies;
    std::shared_ptr<const Authenticator> auth;
    // switchyard.yaml's `router:` section, read again with every policies reload.
    routers::ComplexityWeights complexity;
    routers::ConfidenceConfig confidence;
  };
  Gateway(std::shared_ptr<const Config> config, Metrics& metrics);
  api::Status startEngines();
  api::Status buildRoutes();
  std::shared_ptr<const Live> liveState() const;
  bool isCloudModel(const std::string& model) const;
  double localQueueMs(const std::string& model) const;

  // The chat handler (chat.cpp): admit, plan, dispatch.
  struct ChatCall;
  std::optional<ChatCall> admitChat(Exchange& ex, const std::shared_ptr<Responder>& responder,
                                    const Entrance& entrance);
  api::Status checkModel(const ChatCall& call) const;
  void openAccount(ChatCall& call, const Exchange& ex,
                   const std::shared_ptr<Responder>& responder, int64_t rate_estimate);
  void dispatchDirect(ChatCall& call);
  void dispatchPlanned(ChatCall& call);
  // A routed request's plan and the targets a local or cloud plan runs, in order: what the
  // chat handler does and POST /v1/route/explain (explain.cpp) shows. `record_rank`: the
  // request's complexity joins the team's rank window (not for an explanation).
  routers::RoutePlan planChat(const Live& live, const std::string& team,
                              const policies::TeamPolicy& policy, const api::ChatRequest& request,
                              routers::RouteHint hint, bool record_rank = true) const;
  std::vector<routers::ChainTarget> planTargets(const policies::TeamPolicy& policy,
                                                const routers::RoutePlan& plan,
                                                routers::RouteHint hint) const;
  void handleExplain(const Exchange& ex, const std::shared_ptr<Responder>& responder);
  void runTargets(ChatCall& call, const std::string& name,
                  std::vector<routers::ChainTarget> targets, std::optional<double> complexity,
                  const std::string& note);
  // The model's target and its fallbacks (empty for an unknown model).
  std::vector<routers::ChainTarget> targetsOf(const std::string& model) const;
  // A team whose exhausted budget falls back to its local model gets that model's local
  // targets after the cloud ones, used only when the spending gate refuses.
  // The cloud targets of routing.cloud_models, in order (each model's own cloud fallbacks
  // after it): where a routed request goes to the cloud, one chain under one budget.
  std::vector<routers::ChainTarget> cloudChain(const policies::RoutingPolicy& routing) const;
  // The words of a refusal for a spent budget, with what each window has spent and reserved.
  std::string budgetRefusal(const std::string& team, const policies::BudgetPolicy& budget) const;
  void addLocalAfterRefusal(const policies::TeamPolicy& policy, bool routed,
                            std::vector<routers::ChainTarget>& targets) const;
  // What a quality record needs to know of the request it compares answers for.
  struct RequestFacts {
    std::string request_id, team, key_id, public_model;
    bool redact = false;
    api::Json prompt;  // the request's messages (OpenAI JSON); null when redacted
    std::optional<double> complexity;
    std::vector<routers::ComplexityScore::Feature> complexity_features;
  };
  quality::QualityRecord baseRecord(const RequestFacts& facts, quality::RecordKind kind) const;
  // The cascade escalated after a local draft: both answers become a record.
  void recordPair(const RequestFacts& facts, const routers::CascadePair& pair);
  // A sampled request was answered locally: the cloud answers the same request now, off the
  // request path and within the team's budget, and the pair is recorded.
  void startShadow(const RequestFacts& facts, const api::ChatRequest& request,
                   std::shared_ptr<const policies::TeamPolicy> policy, const std::string& cloud_model,
                   const routers::RouteInfo& local_route, const api::ChatResponse& local_answer,
                   double local_latency_ms);
  bool sampleShadow(double rate);
  std::shared_ptr<RequestFacts> qualityFacts(ChatCall& call, const routers::RoutePlan& plan);
  void dispatchCascade(ChatCall& call, const routers::RoutePlan& plan,
                       const std::shared_ptr<RequestFacts>& facts);
  routers::CascadeOptions::Escalate escalation(const ChatCall& call,
                                               const std::string& cloud_model);
  void handleFeedback(const Exchange& ex, const std::shared_ptr<Responder>& responder);
  // POST /v1/responses (responses.cpp): the chat pipeline; with `background: true`, a run whose
  // outcome goes to the stored response while the client gets it queued.
  void handleResponses(Exchange& ex, const std::shared_ptr<Responder>& responder);
  // GET / DELETE /v1/responses/{id}, GET .../input_items, POST .../cancel (gateway/responses.cpp).
  void handleStoredResponse(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                            std::string_view path);
  void handleDashboard(const Exchange& ex, const std::shared_ptr<Responder>& responder);
  void updateEngineMetrics();
  // Budget alerts: after a settled row, each threshold crossed in the current period is
  // reported once (log line, metric, webhook).
  // Budget alerts of `team` from the ledger's memory: each threshold once per period, when the
  // settled spend reaches it, or (with `refused_usd`, what a refused reservation could have
  // cost) when a window refused it: the 100% threshold then counts as reached.
  void checkAlerts(const Live& live, const std::string& team,
                   std::optional<double> refused_usd = std::nullopt);
  void sendWebhook(const std::string& url, std::string body, int retries_left);
  void handleAdmin(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                   std::string_view path);
  // The chat pipeline behind every entrance (OpenAI chat completions, Anthropic Messages).
  void handleChat(Exchange& ex, const std::shared_ptr<Responder>& responder,
                  const Entrance& entrance);
  // POST /v1/messages and /v1/messages/count_tokens (messages.cpp).
  void handleMessages(Exchange& ex, const std::shared_ptr<Responder>& responder,
                      std::string_view path);
  void handleCountTokens(const Exchange& ex, const std::shared_ptr<Responder>& responder);
  void handleModels(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                    std::string_view model_id);
  // POST /v1/embeddings (embeddings.cpp): the model's embedding provider and its target.
  struct EmbeddingRoute {
    routers::EmbeddingProvider* provider;
    routers::ChainTarget target;
  };
  api::StatusOr<EmbeddingRoute> embeddingRoute(const std::string& model,
                                               const policies::TeamPolicy& policy) const;
  void handleEmbeddings(const Exchange& ex, const std::shared_ptr<Responder>& responder);
  void runEmbedding(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                    std::shared_ptr<const Live> live, const Principal& principal,
                    api::EmbeddingRequest request, const EmbeddingRoute& route,
                    int64_t estimate);
  void replyError(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                  const api::Status& status, const std::string& team, const std::string& model,
                  const std::string& route, const Entrance& entrance = openaiEntrance());
  bool isDraining() const { return draining_ && draining_(); }

  std::shared_ptr<const Config> config_;
  Metrics& metrics_;
  std::unique_ptr<routers::TimerThread> timer_;  // retry backoff
  std::unique_ptr<routers::HttpClient> http_;
  std::vector<std::unique_ptr<engine::Engine>> engines_;  // local providers' engines
  std::map<std::string, std::unique_ptr<routers::Provider>> providers_;
  // Cloud providers whose API has embeddings (OpenAI-compatible, Gemini on AI Studio).
  std::map<std::string, std::unique_ptr<routers::EmbeddingProvider>> embedding_providers_;
  std::map<std::string, std::unique_ptr<routers::CircuitBreaker>> breakers_;  // cloud providers
  std::unique_ptr<routers::ChainObserver> observer_;
  std::vector<std::unique_ptr<routers::FallbackChain>> chains_;
  std::unordered_map<std::string, Route> routes_;
  std::unique_ptr<policies::Ledger> ledger_;  // null without `ledger:`
  // Stored Responses: responses.db beside the ledger, in memory without one.
  std::unique_ptr<ResponseStore> response_store_;
  std::unique_ptr<Entrance> responses_entrance_;
  std::shared_ptr<BackgroundRuns> background_runs_ = makeBackgroundRuns();  // in progress
  std::unique_ptr<SpendMetrics> spend_metrics_;
  std::unique_ptr<routers::Spender> spender_;  // every call that can spend goes through it
  // confidence_rank and complexity_rank: recent scores per team and local model; kept across
  // policies reloads.
  std::unique_ptr<routers::RankWindows> ranks_ = std::make_unique<routers::RankWindows>();
  policies::RateLimiter limiter_;
  mutable std::mutex live_mu_;
  std::shared_ptr<const Live> live_;
  std::unique_ptr<QualityHub> quality_;  // null without quality.path
  std::unique_ptr<LiveStats> live_stats_;
  std::set<std::string> local_providers_;  // providers whose answers are local (type or tier)
  // Local providers' chat templates (null: the built-in Gemma 3 one), for counting prompts.
  std::map<std::string, std::shared_ptr<const engine::ChatTemplate>> chat_templates_;
  std::mutex shadow_mu_;
  std::mt19937_64 shadow_rng_{std::random_device{}()};
  routers::DraftTimeCap draft_cap_;  // background cascade drafts' engine time, per team
  std::function<bool()> draining_;
  int64_t started_unix_ = 0;
};

}  // namespace gateway
