#include "gateway/gateway.h"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>

#include "api/openai_json.h"
#include "api/sse.h"
#include "routers/anthropic_wire.h"
#include "routers/cloud_provider.h"
#include "routers/gemini_wire.h"
#include "routers/local_provider.h"
#include "routers/openai_wire.h"

namespace gateway {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxPendingStreamBytes = 16u << 20;  // a client this far behind is dropped

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

Headers commonHeaders(const std::string& route) {
  Headers h;
  h.emplace_back("x-switchyard-route", route.empty() ? "none" : route);
  return h;
}

void addRetryAfter(Headers& h, const api::Status& s) {
  if (auto ra = s.retryAfterSeconds()) {
    h.emplace_back("retry-after", std::to_string(static_cast<int64_t>(*ra + 0.999)));
  }
}

// Streams (or collects) one answer back to the client in OpenAI's format, with headers that
// say which target answered, after how many attempts, and what it cost.
class ChatForwarder : public routers::ChatSink {
 public:
  ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics,
                const policies::PriceTable& prices, std::string team, std::string model,
                bool stream, bool include_usage, Clock::time_point received)
      : out_(std::move(out)),
        metrics_(metrics),
        prices_(prices),
        team_(std::move(team)),
        model_(std::move(model)),
        stream_(stream),
        include_usage_(include_usage),
        received_(received) {}

  void onRoute(const routers::RouteInfo& route) override { route_ = route; }

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
      if (started_) {
        // The stream broke in the middle: the client gets a clean error event and the end.
        out_->write(api::sseData(api::serializeError(s)));
        out_->finish();
        metrics_.recordRequest(team_, model_, route, 200, duration, ttft_);
        return;
      }
      Headers h = headers();
      addRetryAfter(h, s);
      int status = s.httpStatusCode();
      out_->reply(status, api::serializeError(s), std::move(h));
      metrics_.recordRequest(team_, model_, route, status, duration, -1);
      return;
    }
    api::ChatResponse& r = result.value();
    std::optional<double> cost;
    if (r.usage) {
      const policies::Price* price = prices_.find(route_.provider, route_.model);
      cost = price ? price->cost(*r.usage) : 0.0;
      metrics_.recordUsage(team_, model_, route, r.usage->prompt_tokens,
                           r.usage->cached_prompt_tokens, r.usage->completion_tokens, *cost);
    }
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
    return h;
  }

  std::shared_ptr<Responder> out_;
  Metrics& metrics_;
  const policies::PriceTable& prices_;
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
  return std::make_unique<routers::OpenAIWire>(std::move(c));
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

api::Status Gateway::startEngines() {
  for (const auto& [name, pc] : config_->providers) {
    if (pc.type != "local") continue;
    engine::EngineOptions options;
    options.model_dir = pc.local.model_dir;
    options.backend = pc.local.backend;
    options.threads = pc.local.threads;
    options.max_batch = pc.local.max_batch;
    options.max_queue = pc.local.max_queue;
    options.kv_cache_tokens = pc.local.kv_cache_tokens;
    options.max_context = pc.local.max_context;
    auto engine = engine::Engine::create(options);
    if (!engine.ok()) {
      return api::Status(engine.status().code(), "provider '" + name + "': cannot load model '" +
                                                     pc.local.model_dir +
                                                     "': " + engine.status().message());
    }
    providers_[name] = std::make_unique<routers::LocalProvider>(name, name, **engine);
    engines_.push_back(std::move(engine).value());
  }
  return buildRoutes();
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
    const ProviderConfig& pc = config_->providers.at(m.provider);
    if (pc.type == "local") {
      t.retry.max_attempts = 1;  // a full queue moves on to the next target at once
    } else {
      t.retry = pc.retry;
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
      auth_(*config_),
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
    providers_[name] =
        std::make_unique<routers::CloudProvider>(std::move(cc), makeWireFormat(pc), *http_);
    breakers_[name] = std::make_unique<routers::CircuitBreaker>(pc.circuit);
  }
}

Gateway::~Gateway() {
  // No retry may start once the HTTP client is gone; then cancel upstream calls still in
  // flight and join the HTTP and engine threads before the providers go.
  timer_->shutdown();
  http_.reset();
  engines_.clear();
}

void Gateway::replyError(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                         const api::Status& status, const std::string& team,
                         const std::string& model, const std::string& route) {
  Headers h = commonHeaders(route);
  addRetryAfter(h, status);
  int code = status.httpStatusCode();
  responder->reply(code, api::serializeError(status), std::move(h));
  metrics_.recordRequest(team.empty() ? "none" : team, model.empty() ? "none" : model,
                         route.empty() ? "none" : route, code,
                         secondsSince(ex.received), -1);
}

void Gateway::handle(Exchange ex, std::shared_ptr<Responder> responder) {
  try {
    std::string_view path = pathOf(ex.target);
    const bool get = ex.method == "GET" || ex.method == "HEAD";
    auto methodNotAllowed = [&] {
      replyError(ex, responder,
                 api::Status(api::ErrorCode::kMethodNotAllowed,
                             "Method " + ex.method + " is not allowed for " + std::string(path) +
                                 ".",
                             {}, "method_not_allowed"),
                 "", "", "");
    };
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
      responder->reply(200, metrics_.serialize(), {}, "text/plain; version=0.0.4; charset=utf-8");
    } else if (path == "/v1/chat/completions") {
      if (ex.method != "POST") return methodNotAllowed();
      handleChat(ex, responder);
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
               "");
  }
}

void Gateway::handleModels(const Exchange& ex, const std::shared_ptr<Responder>& responder,
                           std::string_view model_id) {
  auto principal = auth_.authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  auto entry = [&](const ModelRoute& m) {
    return api::Json{{"id", m.name},
                     {"object", "model"},
                     {"created", started_unix_},
                     {"owned_by", m.provider}};
  };
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
  api::Json data = api::Json::array();
  for (const ModelRoute& m : config_->models) data.push_back(entry(m));
  responder->reply(200, api::Json{{"object", "list"}, {"data", std::move(data)}}.dump(), {});
}

void Gateway::handleChat(Exchange& ex, const std::shared_ptr<Responder>& responder) {
  if (isDraining()) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kUnavailable,
                                  "The gateway is shutting down; retry on another instance.")
                          .withRetryAfter(1),
                      "", "", "");
  }
  auto principal = auth_.authenticate(ex.authorization);
  if (!principal.ok()) return replyError(ex, responder, principal.status(), "", "", "");
  const std::string& team = principal->team;

  auto parsed = api::parseChatRequest(ex.body);
  if (!parsed.ok()) return replyError(ex, responder, parsed.status(), team, "", "");
  api::ChatRequest& request = parsed.value();

  auto it = routes_.find(request.model);
  if (it == routes_.end()) {
    return replyError(ex, responder,
                      api::Status(api::ErrorCode::kNotFound,
                                  "The model `" + request.model +
                                      "` does not exist or you do not have access to it.",
                                  "model", "model_not_found"),
                      team, "unknown", "");
  }
  const Route& route = it->second;
  auto forwarder =
      std::make_shared<ChatForwarder>(responder, metrics_, *config_->prices, team, request.model,
                                      request.stream, request.include_usage, ex.received);
  auto deadline = ex.received + ms(config_->server.request_timeout_s);
  auto call = route.chain->chat(request, forwarder, deadline);
  forwarder->setCall(call);
  responder->onClientGone([forwarder] { forwarder->cancel(); });
}

}  // namespace gateway
