#include "gateway/gateway.h"

#include <chrono>
#include <cstdio>
#include <mutex>

#include "api/openai_json.h"
#include "api/sse.h"
#include "routers/local_provider.h"
#include "routers/openai_provider.h"

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

// Streams (or collects) one provider answer back to the client in OpenAI's format.
class ChatForwarder : public routers::ChatSink {
 public:
  ChatForwarder(std::shared_ptr<Responder> out, Metrics& metrics, std::string team,
                std::string model, std::string provider, std::string route, bool stream,
                bool include_usage, Clock::time_point received)
      : out_(std::move(out)),
        metrics_(metrics),
        team_(std::move(team)),
        model_(std::move(model)),
        provider_(std::move(provider)),
        route_(std::move(route)),
        stream_(stream),
        include_usage_(include_usage),
        received_(received) {}

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
      out_->startStream(commonHeaders(route_));
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
    if (!result.ok()) {
      const api::Status& s = result.status();
      if (s.code() != api::ErrorCode::kCancelled) {
        metrics_.recordUpstreamError(provider_, std::string(api::codeName(s.code())));
      }
      if (started_) {
        // The stream broke in the middle: the client gets a clean error event and the end.
        out_->write(api::sseData(api::serializeError(s)));
        out_->finish();
        metrics_.recordRequest(team_, model_, route_, 200, duration, ttft_);
        return;
      }
      Headers h = commonHeaders(route_);
      addRetryAfter(h, s);
      int status = s.httpStatusCode();
      out_->reply(status, api::serializeError(s), std::move(h));
      metrics_.recordRequest(team_, model_, route_, status, duration, -1);
      return;
    }
    api::ChatResponse& r = result.value();
    if (!stream_) {
      r.model = model_;
      out_->reply(200, api::serializeChatResponse(r), commonHeaders(route_));
      metrics_.recordRequest(team_, model_, route_, 200, duration, -1);
      return;
    }
    if (!started_) {
      started_ = true;
      out_->startStream(commonHeaders(route_));
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
    metrics_.recordRequest(team_, model_, route_, 200, duration, ttft_);
  }

 private:
  std::shared_ptr<Responder> out_;
  Metrics& metrics_;
  const std::string team_, model_, provider_, route_;
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
  for (const ModelRoute& m : config_->models) {
    auto it = providers_.find(m.provider);
    if (it == providers_.end()) continue;  // parseConfig already rejects this
    routes_[m.name] = Route{&m, it->second.get(), m.provider + "/" + m.upstream_model};
  }
  return api::Status();
}

Gateway::Gateway(std::shared_ptr<const Config> config, Metrics& metrics)
    : config_(std::move(config)),
      metrics_(metrics),
      auth_(*config_),
      http_(std::make_unique<routers::HttpClient>()),
      started_unix_(std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()) {
  for (const auto& [name, pc] : config_->providers) {
    if (pc.type == "local") continue;  // startEngines()
    routers::OpenAIProviderConfig oc;
    oc.name = name;
    oc.base_url = pc.base_url;
    oc.api_key = pc.api_key;
    oc.headers = pc.headers;
    oc.timeouts.connect = ms(pc.timeouts.connect_s);
    oc.timeouts.first_byte = ms(pc.timeouts.first_byte_s);
    oc.timeouts.idle = ms(pc.timeouts.idle_s);
    oc.timeouts.total = ms(pc.timeouts.total_s);
    providers_[name] = std::make_unique<routers::OpenAIProvider>(std::move(oc), *http_);
  }
}

Gateway::~Gateway() {
  // Cancels upstream calls still in flight and joins the HTTP and engine threads before the
  // providers go.
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
  const std::string public_model = request.model;
  request.model = route.model->upstream_model;

  auto forwarder = std::make_shared<ChatForwarder>(
      responder, metrics_, team, public_model, route.provider->name(), route.label,
      request.stream, request.include_usage, ex.received);
  auto deadline = Clock::now() + ms(config_->providers.at(route.model->provider).timeouts.total_s);
  auto call = route.provider->chat(request, forwarder, deadline);
  forwarder->setCall(call);
  responder->onClientGone([forwarder] { forwarder->cancel(); });
}

}  // namespace gateway
