// Gateway: the request handler behind the HTTP server. Authenticates, parses and validates,
// picks the target for the model and streams its answer back in OpenAI's wire format.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/exchange.h"
#include "gateway/metrics.h"
#include "engine/engine.h"
#include "routers/circuit_breaker.h"
#include "routers/fallback.h"
#include "routers/http_client.h"
#include "routers/provider.h"
#include "routers/timer.h"

namespace gateway {

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

 private:
  struct Route {
    const ModelRoute* model;
    routers::FallbackChain* chain;  // the model's own target, then its fallbacks
  };

  Gateway(std::shared_ptr<const Config> config, Metrics& metrics);
  api::Status startEngines();
  api::Status buildRoutes();
  void handleChat(Exchange& ex, const std::shared_ptr<Responder>& responder);
  void handleModels(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                    std::string_view model_id);
  void replyError(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                  const api::Status& status, const std::string& team, const std::string& model,
                  const std::string& route);
  bool isDraining() const { return draining_ && draining_(); }

  std::shared_ptr<const Config> config_;
  Metrics& metrics_;
  Authenticator auth_;
  std::unique_ptr<routers::TimerThread> timer_;  // retry backoff
  std::unique_ptr<routers::HttpClient> http_;
  std::vector<std::unique_ptr<engine::Engine>> engines_;  // local providers' engines
  std::map<std::string, std::unique_ptr<routers::Provider>> providers_;
  std::map<std::string, std::unique_ptr<routers::CircuitBreaker>> breakers_;  // cloud providers
  std::unique_ptr<routers::ChainObserver> observer_;
  std::vector<std::unique_ptr<routers::FallbackChain>> chains_;
  std::unordered_map<std::string, Route> routes_;
  std::function<bool()> draining_;
  int64_t started_unix_ = 0;
};

}  // namespace gateway
