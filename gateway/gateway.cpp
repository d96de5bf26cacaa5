#include "gateway/gateway.h"

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <mutex>
#include <optional>

#include "api/openai_json.h"
#include "api/sse.h"
#include "engine/chat_template.h"
#include "engine/gguf_gemma.h"
#include "gateway/http_util.h"
#include "gateway/live_stats.h"
#include "gateway/quality_hub.h"
#include "gateway/spend_metrics.h"
#include "policies/pg_ledger.h"
#include "routers/anthropic_wire.h"
#include "routers/cloud_provider.h"
#include "routers/gemini_wire.h"
#include "routers/local_provider.h"
#include "routers/openai_wire.h"
#include "routers/remote_engine.h"

namespace gateway {
namespace {

// The wire format of a cloud provider's API.
std::unique_ptr<routers::WireFormat> makeWireFormat(const ProviderConfig& pc) {
  if (pc.type == "anthropic") {
    routers::AnthropicWireConfig c;
    c.base_url = pc.base_url;
    c.api_key = pc.api_key;
    c.version = pc.anthropic_version;
    c.default_max_tokens = pc.default_max_tokens;
    return std::make_unique<routers::AnthropicWire>(std::move(c));
  }
  if (pc.type == "gemini") {
    routers::GeminiWireConfig c;
    c.api_key = pc.api_key;
    if (!pc.vertex_project.empty()) {
      c.base_url = routers::vertexBaseUrl(pc.vertex_project, pc.vertex_location);
      c.bearer = true;
    } else {
      c.base_url = pc.base_url;
    }
    return std::make_unique<routers::GeminiWire>(std::move(c));
  }
  routers::OpenAIWireConfig c;
  c.base_url = pc.base_url;
  c.api_key = pc.api_key;
  c.responses = pc.responses_api;
  return std::make_unique<routers::OpenAIWire>(std::move(c));
}

// The embeddings side of a cloud provider whose API has one: OpenAI-compatible servers and
// Gemini on AI Studio (Vertex AI embeds through another API; Anthropic has none).
void addEmbeddingProvider(
    std::map<std::string, std::unique_ptr<routers::EmbeddingProvider>>& providers,
    const ProviderConfig& pc, const routers::CloudProviderConfig& cc, routers::HttpClient& http) {
  std::unique_ptr<routers::EmbeddingWire> wire;
  if (pc.type == "openai") {
    wire = routers::makeOpenAIEmbeddingWire({pc.base_url, pc.api_key});
  } else if (pc.type == "gemini" && pc.vertex_project.empty()) {
    routers::GeminiWireConfig c;
    c.base_url = pc.base_url;
    c.api_key = pc.api_key;
    wire = routers::makeGeminiEmbeddingWire(std::move(c));
  }
  if (wire) {
    providers[cc.name] =
        std::make_unique<routers::CloudEmbeddingProvider>(cc, std::move(wire), http);
  }
}

std::string_view pathOf(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace

api::StatusOr<std::unique_ptr<Gateway>> Gateway::create(std::shared_ptr<const Config> config,
                                                         Metrics& metrics) {
  std::unique_ptr<Gateway> gw(new Gateway(std::move(config), metrics));
  if (api::Status st = gw->startEngines(); !st.ok()) return st;
  return gw;
}

std::shared_ptr<const Gateway::Live> Gateway::liveState() const {
  std::lock_guard<std::mutex> lock(live_mu_);
  return live_;
}

api::Status Gateway::startEngines() {
  auto live = std::make_shared<Live>();
  live->policies = config_->policies;
  live->auth = std::make_shared<const Authenticator>(*config_);
  live->complexity = config_->complexity;
  live->confidence = config_->confidence;
  live_ = std::move(live);
  if (!config_->ledger_path.empty()) {
    std::error_code ec;
    auto parent = std::filesystem::path(config_->ledger_path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    auto ledger = policies::openSqliteLedger(config_->ledger_path);
    if (!ledger.ok()) return ledger.status();
    ledger_ = std::move(ledger).value();
  } else if (!config_->ledger_url.empty()) {
    policies::PostgresLedgerOptions options;
    options.replica_id = config_->ledger_replica;
    options.pool_size = static_cast<int>(config_->ledger_pool_size);
    options.statement_timeout = std::chrono::milliseconds(config_->ledger_statement_timeout_ms);
    auto ledger = policies::openPostgresLedger(config_->ledger_url, options);
    if (!ledger.ok()) return ledger.status();
    ledger_ = std::move(ledger).value();
  }
  {
    // Beside the ledger: in its PostgreSQL database (shared by the replicas), or a file in its
    // directory.
    const std::filesystem::path ledger(config_->ledger_path);
    auto store = !config_->ledger_url.empty()
                     ? ResponseStore::openPostgres(config_->ledger_url)
                     : ResponseStore::open(ledger.empty()
                                               ? std::string(":memory:")
                                               : (ledger.parent_path() / "responses.db").string());
    if (!store.ok()) return store.status();
    response_store_ = std::move(store).value();
    responses_entrance_ = makeResponsesEntrance(response_store_.get());
  }
  // A budget without a ledger is refused when the config is read (bindPolicies).
  for (const auto& [name, pc] : config_->providers) {
    if (pc.type != "local") continue;
    if (pc.local.kind == "embedding") {
      auto model = engine::EmbeddingGemmaModel::load(pc.local.model_dir, pc.local.threads);
      if (!model.ok()) {
        return api::Status(model.status().code(), "provider '" + name +
                                                      "': cannot load embedding model '" +
                                                      pc.local.model_dir +
                                                      "': " + model.status().message());
      }
      embedding_providers_[name] = std::make_unique<routers::LocalEmbeddingProvider>(
          name, std::move(model).value(), pc.local.max_queue);
      providers_[name] = routers::makeEmbeddingOnlyChatProvider(name);
      local_providers_.insert(name);
      continue;
    }
    engine::EngineOptions options;
    options.model_dir = pc.local.model_dir;
    options.backend = pc.local.backend;
    options.threads = pc.local.threads;
    options.max_batch = pc.local.max_batch;
    options.max_queue = pc.local.max_queue;
    options.kv_cache_tokens = pc.local.kv_cache_tokens;
    options.step_tokens = pc.local.step_tokens;
    options.max_context = pc.local.max_context;
    options.quantize = pc.local.quantize;
    auto engine = engine::Engine::create(options);
    if (!engine.ok()) {
      return api::Status(engine.status().code(), "provider '" + name + "': cannot load model '" +
                                                     pc.local.model_dir +
                                                     "': " + engine.status().message());
    }
    // The prompt format is the checkpoint's own chat template (null: the built-in Gemma 3 one);
    // a .gguf file's tokenizer.chat_template first.
    auto chat_template = engine::gguf::loadModelChatTemplate(pc.local.model_dir);
    if (!chat_template.ok()) {
      return api::Status(chat_template.status().code(),
                         "provider '" + name + "': " + chat_template.status().message());
    }
    providers_[name] =
        std::make_unique<routers::LocalProvider>(name, name, **engine, *chat_template);
    engines_.push_back(std::move(engine).value());
    local_providers_.insert(name);
    chat_templates_[name] = *chat_template;
  }
  if (api::Status st = buildRoutes(); !st.ok()) return st;
  spend_metrics_ = makeSpendMetrics(metrics_);
  spender_ = std::make_unique<routers::Spender>(ledger_.get(), *config_->prices, *timer_,
                                                observer_.get(), spend_metrics_.get());
  std::vector<std::string> teams;
  for (const Team& t : config_->teams) teams.push_back(t.name);
  live_stats_ = std::make_unique<LiveStats>(teams);
  if (config_->quality.enabled()) {
    routers::FallbackChain* judge = nullptr;
    if (!config_->quality.judge.model.empty()) judge = routes_.at(config_->quality.judge.model).chain;
    auto hub = QualityHub::open(*config_, metrics_, ledger_.get(), spender_.get(), judge);
    if (!hub.ok()) return hub.status();
    quality_ = std::move(hub).value();
  }
  return api::Status();
}

void Gateway::updateEngineMetrics() {
  if (ledger_ && spend_metrics_) spend_metrics_->updateLedger(*ledger_);
  for (const auto& [name, provider] : providers_) {
    if (auto* remote = dynamic_cast<routers::RemoteEngineProvider*>(provider.get())) {
      // A `tier: local` server: the calls this gateway has there, and its own queue if read.
      std::optional<double> waiting;
      if (remote->config().probe) waiting = remote->config().probe->waiting();
      metrics_.setEngineLoad(name, static_cast<int64_t>(waiting.value_or(0)), remote->inFlight(),
                             0, 0);
      continue;
    }
    auto* local = dynamic_cast<routers::LocalProvider*>(provider.get());
    if (!local) continue;
    engine::EngineStats s = local->engine().stats();
    double kv = s.kv_tokens_capacity > 0
                    ? static_cast<double>(s.kv_tokens_used) / static_cast<double>(s.kv_tokens_capacity)
                    : 0;
    metrics_.setEngineLoad(name, s.queued, s.running, kv, s.decode_tokens_per_s);
    metrics_.setEnginePreemptions(name, s.preemptions);
    metrics_.setEnginePrefixCache(name, s.prefix_cache_hit_tokens, s.prefix_cache_blocks);
  }
  if (quality_) {
    quality::RecorderStats q = quality_->stats();
    metrics_.setQualityDropped(q.dropped);
    metrics_.setQualityFailed(q.failed);
  }
}

// Feeds the fallback chains' events into the metrics.
class ChainMetrics : public routers::ChainObserver {
 public:
  explicit ChainMetrics(Metrics& metrics) : metrics_(metrics) {}
  void onAttemptFailed(const routers::ChainTarget& t, const api::Status& status) override {
    metrics_.recordUpstreamError(t.provider->name(), std::string(api::codeName(status.code())));
  }
  void onRetry(const routers::ChainTarget& t, double) override {
    metrics_.recordRetry(t.provider->name());
  }
  void onFallback(const routers::ChainTarget& from, const routers::ChainTarget& to) override {
    metrics_.recordFallback(from.label, to.label);
  }
  void onCircuitOpen(const routers::ChainTarget& t) override {
    metrics_.recordCircuitOpen(t.provider->name());
  }

 private:
  Metrics& metrics_;
};

api::Status Gateway::buildRoutes() {
  observer_ = std::make_unique<ChainMetrics>(metrics_);
  auto target = [&](const ModelRoute& m) {
    routers::ChainTarget t;
    t.provider = providers_.at(m.provider).get();
    t.upstream_model = m.upstream_model;
    t.label = m.provider + "/" + m.upstream_model;
    t.model = m.name;
    const ProviderConfig& pc = config_->providers.at(m.provider);
    t.api = pc.isLocal() ? "local" : pc.type;  // a `tier: local` server spends no cloud budget
    if (pc.type == "local") {
      t.retry.max_attempts = 1;  // a full queue moves on to the next target at once
    } else {
      t.retry = pc.retry;
      if (pc.isRemoteLocal()) t.retry.max_attempts = 1;  // as the embedded engine: spill at once
      t.breaker = breakers_.at(m.provider).get();
    }
    return t;
  };
  for (const ModelRoute& m : config_->models) {
    std::vector<routers::ChainTarget> targets = {target(m)};
    for (const std::string& f : m.fallbacks) targets.push_back(target(*config_->findModel(f)));
    chains_.push_back(
        std::make_unique<routers::FallbackChain>(m.name, std::move(targets), *timer_, observer_.get()));
    routes_[m.name] = Route{&m, chains_.back().get()};
  }
  return api::Status();
}

Gateway::Gateway(std::shared_ptr<const Config> config, Metrics& metrics)
    : config_(std::move(config)),
      metrics_(metrics),
      timer_(std::make_unique<routers::TimerThread>()),
      http_(std::make_unique<routers::HttpClient>()),
      started_unix_(std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()) {
  for (const auto& [name, pc] : config_->providers) {
    if (pc.type == "local") continue;  // startEngines()
    routers::CloudProviderConfig cc;
    cc.name = name;
    cc.headers.assign(pc.headers.begin(), pc.headers.end());
    cc.timeouts.connect = ms(pc.timeouts.connect_s);
    cc.timeouts.first_byte = ms(pc.timeouts.first_byte_s);
    cc.timeouts.idle = ms(pc.timeouts.idle_s);
    cc.timeouts.total = ms(pc.timeouts.total_s);
    auto provider = std::make_unique<routers::CloudProvider>(cc, makeWireFormat(pc), *http_);
    if (!pc.isRemoteLocal()) addEmbeddingProvider(embedding_providers_, pc, cc, *http_);
    if (pc.isRemoteLocal()) {
      // An OpenAI-compatible server counted as local: its logprobs feed the cascade.
      routers::RemoteEngineConfig rc;
      rc.max_in_flight = pc.max_in_flight;
      if (!pc.metrics_url.empty()) {
        rc.probe = std::make_shared<const routers::QueueProbe>(
            *http_, *timer_, routers::QueueProbeConfig{pc.metrics_url});
        rc.max_waiting = pc.max_waiting;
      }
      providers_[name] = std::make_unique<routers::RemoteEngineProvider>(std::move(provider), rc);
      local_providers_.insert(name);
    } else {
      providers_[name] = std::move(provider);
    }
    breakers_[name] = std::make_unique<routers::CircuitBreaker>(pc.circuit);
  }
}

Gateway::~Gateway() {
  // No retry may start once the HTTP client is gone; then cancel upstream calls still in
  // flight and join the HTTP and engine threads before the providers go.
  timer_->shutdown();
  if (quality_) quality_->stop();
  http_.reset();
  engines_.clear();
  embedding_providers_.clear();  // joins the local embedding models' threads
}

namespace {

// An HTTP client driver bound to one I/O thread, as that thread's ThreadService.
class UpstreamDriver : public ThreadService {
 public:
  explicit UpstreamDriver(std::unique_ptr<routers::HttpClient::ThreadDriver> driver)
      : driver_(std::move(driver)) {}
  int fd() const override { return driver_->fd(); }
  bool service() override { return driver_->service(); }

 private:
  std::unique_ptr<routers::HttpClient::ThreadDriver> driver_;
};

}  // namespace

std::unique_ptr<ThreadService> Gateway::upstreamThreadService() {
  return std::make_unique<UpstreamDriver>(http_->bindThisThread());
}

void Gateway::replyError(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                         const api::Status& status, const std::string& team,
                         const std::string& model, const std::string& route,
                         const Entrance& entrance) {
  Headers h = commonHeaders(route);
  addRetryAfter(h, status);
  int code = entrance.errorStatus(status);
  responder->reply(code, entrance.errorBody(status, ex.request_id), std::move(h));
  metrics_.recordRequest(team.empty() ? "none" : team, model.empty() ? "none" : model,
                         route.empty() ? "none" : route, code,
                         secondsSince(ex.received), -1);
}

void Gateway::handle(Exchange ex, std::shared_ptr<Responder> responder) {
  try {
    std::string_view path = pathOf(ex.target);
    const bool get = ex.method == "GET" || ex.method == "HEAD";
    const Entrance& entrance =
        path.rfind("/v1/messages", 0) == 0 ? messagesEntrance() : openaiEntrance();
    auto methodNotAllowed = [&] {
      replyError(ex, responder,
                 api::Status(api::ErrorCode::kMethodNotAllowed,
                             "Method " + ex.method + " is not allowed for " + std::string(path) +
                                 ".",
                             {}, "method_not_allowed"),
                 "", "", "", entrance);
    };
    // Every JSON body (chat, feedback, admin) is bounded in depth and size before any handler
    // builds it.
    if (!get && !ex.body.empty()) {
      if (api::Status st = api::checkJsonBounds(ex.body); !st.ok()) {
        metrics_.recordRejected("json_bounds");
        return replyError(ex, responder, st, "", "", "", entrance);
      }
    }
    if (path == "/healthz") {
      if (!get) return methodNotAllowed();
      responder->reply(200, R"({"status":"ok"})", {});
    } else if (path == "/readyz") {
      if (!get) return methodNotAllowed();
      if (isDraining()) {
        responder->reply(503, R"({"status":"draining"})", {});
      } else {
        responder->reply(200, R"({"status":"ready"})", {});
      }
    } else if (path == "/metrics") {
      if (!get) return methodNotAllowed();
      if (config_->metrics.require_admin_key) {
        // Spend per team is not for every key holder (nor for anonymous access).
        auto principal = liveState()->auth->authenticate(ex.authorization);
        if (!principal.ok() || !principal->admin) {
          return replyError(ex, responder,
                            api::Status(api::ErrorCode::kUnauthenticated,
                                        "/metrics needs an admin key (auth.admin_keys)."),
                            "", "", "");
        }
      }
      updateEngineMetrics();
      responder->reply(200, metrics_.serialize(), {}, "text/plain; version=0.0.4; charset=utf-8");
    } else if (path == "/v1/chat/completions") {
      if (ex.method != "POST") return methodNotAllowed();
      handleChat(ex, responder, openaiEntrance());
    } else if (path == "/v1/responses") {
      if (ex.method != "POST") return methodNotAllowed();
      handleResponses(ex, responder);
    } else if (path.rfind("/v1/responses/", 0) == 0) {
      handleStoredResponse(ex, responder, path);
    } else if (path == "/v1/messages" || path == "/v1/messages/count_tokens") {
      if (ex.method != "POST") return methodNotAllowed();
      handleMessages(ex, responder, path);
    } else if (path == "/v1/embeddings") {
      if (ex.method != "POST") return methodNotAllowed();
      handleEmbeddings(ex, responder);
    } else if (path == "/v1/route/explain") {
      if (ex.method != "POST") return methodNotAllowed();
      handleExplain(ex, responder);
    } else if (path == "/v1/feedback") {
      if (ex.method != "POST") return methodNotAllowed();
      handleFeedback(ex, responder);
    } else if (path == "/dashboard" || path == "/admin/v1/dashboard") {
      if (!get) return methodNotAllowed();
      handleDashboard(ex, responder);
    } else if (path.rfind("/admin/", 0) == 0) {
      handleAdmin(ex, responder, path);
    } else if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
      if (!get) return methodNotAllowed();
      std::string_view id = path.size() > 11 ? path.substr(11) : std::string_view();
      handleModels(ex, responder, id);
    } else {
      replyError(ex, responder,
                 api::Status(api::ErrorCode::kNotFound,
                             "Unknown request URL: " + ex.method + " " + std::string(path) + ".",
                             {}, "unknown_url"),
                 "", "", "");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "{\"level\":\"error\",\"msg\":\"request failed\",\"request_id\":\"%s\","
                 "\"what\":\"%s\"}\n",
                 ex.request_id.c_str(), e.what());
    replyError(ex, responder, api::Status(api::ErrorCode::kInternal, "Internal error."), "", "",
               "", pathOf(ex.target).rfind("/v1/messages", 0) == 0 ? messagesEntrance()
                                                                    : openaiEntrance());
  }
}

void Gateway::handleModels(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                           std::string_view model_id) {
  auto principal = liveState()->auth->authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  auto entry = [&](const ModelRoute& m) {
    return api::Json{{"id", m.name},
                     {"object", "model"},
                     {"created", started_unix_},
                     {"owned_by", m.provider}};
  };
  // `auto`: the team's routing, described by its policy (listed first, retrievable by id).
  auto routed = [&] {
    const policies::RoutingPolicy& r = liveState()->policies->policyFor(principal->team).routing;
    std::string cloud;
    for (const std::string& m : r.cloud_models) cloud += (cloud.empty() ? "" : ", ") + m;
    std::string how = "routed by the team's policy (mode " +
                      std::string(policies::routingModeName(r.mode)) + "): " + r.local_model +
                      " on the local engine";
    if (!cloud.empty()) {
      how += ", the cloud (" + cloud + ", in order) when the trigger '" + r.trigger->text() +
             "' holds";
    }
    return api::Json{{"id", routers::kAutoModel},
                     {"object", "model"},
                     {"created", started_unix_},
                     {"owned_by", "switchyard"},
                     {"description", how}};
  };
  if (model_id == routers::kAutoModel) return responder->reply(200, routed().dump(), {});
  if (!model_id.empty()) {
    auto it = routes_.find(std::string(model_id));
    if (it == routes_.end()) {
      return replyError(ex, responder,
                        api::Status(api::ErrorCode::kNotFound,
                                    "The model '" + std::string(model_id) + "' does not exist.",
                                    "model", "model_not_found"),
                        principal->team, "", "");
    }
    responder->reply(200, entry(*it->second.model).dump(), {});
    return;
  }
  api::Json data = api::Json::array({routed()});
  for (const ModelRoute& m : config_->models) data.push_back(entry(m));
  responder->reply(200, api::Json{{"object", "list"}, {"data", std::move(data)}}.dump(), {});
}


}  // namespace gateway
