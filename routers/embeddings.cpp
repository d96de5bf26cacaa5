#include "routers/embeddings.h"

#include <chrono>
#include <limits>
#include <mutex>
#include <optional>

#include "api/openai_json.h"
#include "policies/spend.h"
#include "routers/upstream_error.h"

namespace routers {
namespace {

using api::Json;

// Upstream bodies are bounded in depth (never in count: a batch holds millions of numbers).
constexpr api::JsonBounds kUpstreamBounds{64, std::numeric_limits<int64_t>::max()};

api::Status upstream(std::string message) {
  return api::Status(api::ErrorCode::kUpstreamError, std::move(message));
}

class OpenAIEmbeddingWire : public EmbeddingWire {
 public:
  explicit OpenAIEmbeddingWire(OpenAIWireConfig config) : config_(std::move(config)) {}

  api::StatusOr<WireRequest> encode(const api::EmbeddingRequest& request) const override {
    WireRequest out;
    out.url = config_.base_url + "/embeddings";
    if (!config_.api_key.empty()) {
      out.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    }
    out.body = api::embeddingRequestToJson(request).dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace);
    return out;
  }

  api::StatusOr<api::EmbeddingResponse> decode(
      std::string_view body, const api::EmbeddingRequest& request) const override {
    if (!api::checkJsonBounds(body, kUpstreamBounds).ok()) {
      return upstream("sent an embeddings response nested too deeply");
    }
    auto r = api::parseEmbeddingResponse(body, request.inputs.size());
    if (!r.ok()) return r.status();
    if (r->model.empty()) r->model = request.model;
    return r;
  }

 private:
  OpenAIWireConfig config_;
};

bool isPathSafeModel(const std::string& model) {
  if (model.empty() || model.find("..") != std::string::npos) return false;
  for (char c : model) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '/' || c == '@' || c == ':';
    if (!ok) return false;
  }
  return true;
}

class GeminiEmbeddingWire : public EmbeddingWire {
 public:
  explicit GeminiEmbeddingWire(GeminiWireConfig config) : config_(std::move(config)) {}

  api::StatusOr<WireRequest> encode(const api::EmbeddingRequest& request) const override {
    if (!isPathSafeModel(request.model)) {
      return api::invalidRequest("The model name '" + request.model +
                                     "' is not valid for Gemini: it may contain only letters, "
                                     "digits and . _ - / @ :, and no '..'.",
                                 "model");
    }
    auto body = toGeminiBatchEmbed(request);
    if (!body.ok()) return body.status();
    WireRequest out;
    out.url = config_.base_url + "/models/" + request.model + ":batchEmbedContents";
    if (!config_.api_key.empty()) {
      if (config_.bearer) {
        out.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
      } else {
        out.headers.emplace_back("x-goog-api-key", config_.api_key);
      }
    }
    out.body = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return out;
  }

  api::StatusOr<api::EmbeddingResponse> decode(
      std::string_view body, const api::EmbeddingRequest& request) const override {
    if (!api::checkJsonBounds(body, kUpstreamBounds).ok()) {
      return upstream("sent an embeddings response nested too deeply");
    }
    Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return upstream("sent a response that is not JSON");
    auto list = j.find("embeddings");
    if (list == j.end() || !list->is_array()) {
      return upstream("sent a response without an 'embeddings' array");
    }
    if (list->size() != request.inputs.size()) {
      return upstream("sent " + std::to_string(list->size()) + " embeddings for " +
                      std::to_string(request.inputs.size()) + " inputs");
    }
    api::EmbeddingResponse r;
    r.model = request.model;
    r.embeddings.reserve(list->size());
    for (size_t i = 0; i < list->size(); ++i) {
      const Json& e = (*list)[i];
      const Json* values = nullptr;
      if (e.is_object()) {
        if (auto v = e.find("values"); v != e.end() && v->is_array()) values = &*v;
      }
      if (!values) return upstream("sent no embeddings[" + std::to_string(i) + "].values");
      std::vector<float>& out = r.embeddings.emplace_back();
      out.reserve(values->size());
      for (const Json& x : *values) {
        if (!x.is_number()) {
          return upstream("sent a non-numeric value in embeddings[" + std::to_string(i) + "]");
        }
        out.push_back(x.get<float>());
      }
    }
    return r;  // no token counts: usage_reported stays false
  }

 private:
  GeminiWireConfig config_;
};

class DoneCall : public ProviderCall {
 public:
  void cancel() override {}
};

class HttpEmbedCall : public ProviderCall {
 public:
  explicit HttpEmbedCall(std::shared_ptr<HttpCall> http) : http_(std::move(http)) {}
  void cancel() override { http_->cancel(); }

 private:
  std::shared_ptr<HttpCall> http_;
};

// The state of one upstream call, shared by its HTTP callbacks (one thread at a time).
struct EmbedState {
  std::string provider;
  const EmbeddingWire* wire = nullptr;
  api::EmbeddingRequest request;
  EmbedDone done;
  int64_t max_bytes = 0;
  HttpResponseHead head;
  std::string body;
  bool too_big = false;

  void finish(const api::Status& transport) {
    if (too_big) {
      return done(upstream("upstream '" + provider + "' response exceeds " +
                           std::to_string(max_bytes) + " bytes"));
    }
    if (!transport.ok()) {
      return done(transport.code() == api::ErrorCode::kCancelled
                      ? transport
                      : statusFromTransport(provider, transport));
    }
    if (head.status != 200) {
      if (head.status >= 200 && head.status < 300) {
        return done(upstream("upstream '" + provider + "' answered HTTP " +
                             std::to_string(head.status) + " instead of 200"));
      }
      return done(statusFromUpstreamHttp(provider, head.status, body, head.headers));
    }
    auto r = wire->decode(body, request);
    if (!r.ok()) {
      return done(upstream("upstream '" + provider + "' " + r.status().message()));
    }
    done(std::move(r));
  }
};

// One metered embedding attempt: durable reservation, the call, the settlement.
class MeteredEmbedding : public ProviderCall,
                         public std::enable_shared_from_this<MeteredEmbedding> {
 public:
  MeteredEmbedding(const Spender& spender, std::shared_ptr<Account> account,
                   EmbeddingProvider& provider, const policies::Price* price,
                   api::EmbeddingRequest request, EmbedDone done, Deadline deadline)
      : spender_(spender),
        account_(std::move(account)),
        provider_(provider),
        price_(price),
        request_(std::move(request)),
        done_(std::move(done)),
        deadline_(deadline),
        bound_(embeddingTokenBound(request_)) {}

  void start();
  void cancel() override;

 private:
  void onDurable(api::Status status);
  void proceed();
  void launch();
  void onAnswer(api::StatusOr<api::EmbeddingResponse> result);
  void end(api::StatusOr<api::EmbeddingResponse> result) {
    if (ended_.exchange(true)) return;
    done_(std::move(result));
  }
  std::optional<uint64_t> reservation() {
    std::lock_guard<std::mutex> lock(mu_);
    return reservation_;
  }
  double worstUsd() const { return price_ ? policies::worstCaseUsd(bound_, 0, 1, *price_) : 0; }

  const Spender& spender_;
  const std::shared_ptr<Account> account_;
  EmbeddingProvider& provider_;
  const policies::Price* const price_;  // null: the target has no price (costs nothing)
  const api::EmbeddingRequest request_;
  const EmbedDone done_;
  const Deadline deadline_;
  const int64_t bound_;
  std::atomic<bool> ended_{false};

  std::mutex mu_;
  std::optional<uint64_t> reservation_;
  bool have_id_ = false, durable_ = false, cancelled_ = false, launched_ = false;
  bool launching_ = false;  // launch() decided to call the provider: a cancel() waits for it
  api::Status durable_status_;
  std::shared_ptr<ProviderCall> inner_;
};

void MeteredEmbedding::start() {
  policies::Ledger* ledger = account_->ledger();
  if (!ledger) return launch();
  auto self = shared_from_this();
  auto id = reserveForCall(spender_, *account_, worstUsd(),
                           [self](api::Status st) { self->onDurable(std::move(st)); });
  if (!id.ok()) return end(id.status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    reservation_ = *id;
    have_id_ = true;
    if (!durable_) return;  // onDurable() goes on
  }
  proceed();
}

void MeteredEmbedding::onDurable(api::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    durable_ = true;
    durable_status_ = std::move(status);
    if (!have_id_) return;  // start() goes on once it knows the id
  }
  proceed();
}

void MeteredEmbedding::proceed() {
  api::Status st;
  bool cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    st = durable_status_;
    cancelled = cancelled_;
  }
  if (!st.ok() || cancelled) {
    account_->attemptEnded(reservation(), 0, false, false);
    return end(!st.ok() ? ledgerUnavailable(st)
                        : api::Status(api::ErrorCode::kCancelled, "cancelled"));
  }
  launch();
}

void MeteredEmbedding::launch() {
  {
    // A cancel() that came before this point told the caller already: nothing goes upstream
    // and the reservation is released. After it, cancel() cancels the provider's call.
    std::lock_guard<std::mutex> lock(mu_);
    launching_ = !cancelled_;
  }
  if (!launching_) {
    account_->attemptEnded(reservation(), 0, false, false);
    return end(api::Status(api::ErrorCode::kCancelled, "cancelled"));
  }
  account_->cloudLaunched();
  auto self = shared_from_this();
  auto call = provider_.embed(
      request_, [self](api::StatusOr<api::EmbeddingResponse> r) { self->onAnswer(std::move(r)); },
      deadline_);
  bool cancel_now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    launched_ = true;
    inner_ = call;
    cancel_now = cancelled_;
  }
  if (cancel_now) call->cancel();
}

void MeteredEmbedding::cancel() {
  std::shared_ptr<ProviderCall> inner;
  bool waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    inner = inner_;
    waiting = !launched_ && !launching_;
  }
  if (inner) {
    inner->cancel();
  } else if (waiting) {
    // Still waiting for the ledger: launch() releases the reservation when it answers.
    end(api::Status(api::ErrorCode::kCancelled, "cancelled"));
  }
}

void MeteredEmbedding::onAnswer(api::StatusOr<api::EmbeddingResponse> result) {
  double cost = 0;
  bool billed = true, estimated = false;
  if (result.ok()) {
    if (!result->usage_reported) {
      result->prompt_tokens = bound_;  // never lower than the provider counted
      estimated = true;
    }
    api::Usage usage;
    usage.prompt_tokens = result->prompt_tokens;
    cost = price_ ? price_->cost(usage) : 0;
  } else if (result.status().upstreamHttpStatus() || result.status().neverSent() ||
             result.status().code() == api::ErrorCode::kInvalidRequest) {
    billed = false;  // an error answer, or a request that never left: nothing to pay
  } else {
    estimated = true;
    cost = worstUsd();  // cut before its answer: the provider may have done all the work
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    inner_.reset();  // the inner call holds this object through its callback
  }
  account_->attemptEnded(reservation(), cost, billed, estimated);
  end(std::move(result));
}

// The tries of one cloud embedding request on its target, each a MeteredEmbedding (its own
// reservation and settlement), retried as chat attempts are (retryTime: the target's retry
// policy, Retry-After, the deadline). A cancel ends it at once, also between tries.
class RetriedEmbedding : public ProviderCall,
                         public std::enable_shared_from_this<RetriedEmbedding> {
 public:
  RetriedEmbedding(const Spender& spender, std::shared_ptr<Account> account,
                   EmbeddingProvider& provider, const ChainTarget& target,
                   const policies::Price* price, api::EmbeddingRequest request, EmbedDone done,
                   Deadline deadline)
      : spender_(spender),
        account_(std::move(account)),
        provider_(provider),
        retry_(target.retry),
        price_(price),
        request_(std::move(request)),
        done_(std::move(done)),
        deadline_(deadline) {}

  void start() { attempt(); }

  void cancel() override {
    std::shared_ptr<ProviderCall> inner;
    std::optional<TimerThread::Id> waiting;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return;
      cancelled_ = true;
      inner = inner_;
      waiting = timer_id_;
    }
    if (inner) inner->cancel();
    if (waiting && spender_.timer().cancel(*waiting)) {
      end(api::Status(api::ErrorCode::kCancelled, "cancelled"));
    }
  }

 private:
  void attempt() {
    auto self = shared_from_this();
    auto call = std::make_shared<MeteredEmbedding>(
        spender_, account_, provider_, price_, request_,
        [self](api::StatusOr<api::EmbeddingResponse> r) { self->onTry(std::move(r)); },
        deadline_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      timer_id_.reset();
      ++tries_;
      inner_ = call;
    }
    call->start();  // MeteredEmbedding sees a cancel() that came before: it ends cancelled
    bool cancel_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancel_now = cancelled_ && inner_ == call;
    }
    if (cancel_now) call->cancel();
  }

  void onTry(api::StatusOr<api::EmbeddingResponse> result) {
    std::optional<Clock::time_point> when;
    int tries;
    {
      std::lock_guard<std::mutex> lock(mu_);
      inner_.reset();
      tries = tries_;
    }
    if (!result.ok() && !isGateRefusal(result.status())) {
      when = retryTime(retry_, tries, result.status(), deadline_);
    }
    if (!when) return end(std::move(result));
    auto self = shared_from_this();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!cancelled_) {
        timer_id_ = spender_.timer().at(*when, [self] { self->attempt(); });
        return;
      }
    }
    end(api::Status(api::ErrorCode::kCancelled, "cancelled"));  // cancelled between tries
  }

  void end(api::StatusOr<api::EmbeddingResponse> result) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      ended_ = true;
    }
    done_(std::move(result));
  }

  const Spender& spender_;
  const std::shared_ptr<Account> account_;
  EmbeddingProvider& provider_;
  const RetryPolicy retry_;
  const policies::Price* const price_;
  const api::EmbeddingRequest request_;
  const EmbedDone done_;
  const Deadline deadline_;

  std::mutex mu_;
  int tries_ = 0;
  bool cancelled_ = false, ended_ = false;
  std::shared_ptr<ProviderCall> inner_;
  std::optional<TimerThread::Id> timer_id_;
};

}  // namespace

std::unique_ptr<EmbeddingWire> makeOpenAIEmbeddingWire(OpenAIWireConfig config) {
  return std::make_unique<OpenAIEmbeddingWire>(std::move(config));
}

std::unique_ptr<EmbeddingWire> makeGeminiEmbeddingWire(GeminiWireConfig config) {
  return std::make_unique<GeminiEmbeddingWire>(std::move(config));
}

api::StatusOr<Json> toGeminiBatchEmbed(const api::EmbeddingRequest& request) {
  if (request.inputs.size() > kGeminiMaxBatch) {
    return api::invalidRequest("Gemini embeds at most " + std::to_string(kGeminiMaxBatch) +
                                   " inputs in one request; got " +
                                   std::to_string(request.inputs.size()) + ".",
                               "input");
  }
  Json requests = Json::array();
  for (const api::EmbeddingInput& in : request.inputs) {
    if (in.is_tokens) {
      return api::invalidRequest(
          "Gemini embedding models take text only; token-id input is not supported.", "input");
    }
    Json r = {{"model", "models/" + request.model},
              {"content", {{"parts", Json::array({{{"text", in.text}}})}}}};
    if (request.dimensions) r["outputDimensionality"] = *request.dimensions;
    requests.push_back(std::move(r));
  }
  return Json{{"requests", std::move(requests)}};
}

CloudEmbeddingProvider::CloudEmbeddingProvider(CloudProviderConfig config,
                                               std::unique_ptr<EmbeddingWire> wire,
                                               HttpClient& http)
    : config_(std::move(config)), wire_(std::move(wire)), http_(http) {}

std::shared_ptr<ProviderCall> CloudEmbeddingProvider::embed(const api::EmbeddingRequest& request,
                                                            EmbedDone done, Deadline deadline) {
  auto encoded = wire_->encode(request);
  if (!encoded.ok()) {
    api::Status st = encoded.status();
    done(std::move(st.withNeverSent()));
    return std::make_shared<DoneCall>();
  }
  HttpRequest http;
  http.url = std::move(encoded->url);
  http.body = std::move(encoded->body);
  http.timeouts = config_.timeouts;
  http.deadline = deadline;
  http.headers.emplace_back("Content-Type", "application/json");
  http.headers.emplace_back("Accept", "application/json");
  for (auto& h : encoded->headers) http.headers.push_back(std::move(h));
  for (const auto& h : config_.headers) http.headers.push_back(h);

  auto state = std::make_shared<EmbedState>();
  state->provider = config_.name;
  state->wire = wire_.get();
  state->request = request;
  state->done = std::move(done);
  state->max_bytes = config_.max_response_bytes;
  HttpCallbacks cb;
  cb.on_head = [state](const HttpResponseHead& head) { state->head = head; };
  cb.on_data = [state](std::string_view data) {
    if (static_cast<int64_t>(state->body.size() + data.size()) > state->max_bytes) {
      state->too_big = true;
      return false;
    }
    state->body.append(data);
    return true;
  };
  cb.on_done = [state](const api::Status& s) { state->finish(s); };
  return std::make_shared<HttpEmbedCall>(http_.start(std::move(http), std::move(cb)));
}

int64_t embeddingTokenBound(const api::EmbeddingRequest& request) {
  int64_t n = 0;
  for (const api::EmbeddingInput& in : request.inputs) {
    n = policies::saturatingAdd(
        n, static_cast<int64_t>(in.is_tokens ? in.tokens.size() : in.text.size()));
  }
  return n;
}

std::shared_ptr<ProviderCall> runMeteredEmbedding(
    const Spender& spender, std::shared_ptr<Account> account, EmbeddingProvider& provider,
    const ChainTarget& target, api::EmbeddingRequest request, EmbedDone done, Deadline deadline) {
  const Payer& payer = account->payer();
  if (api::Status st = spender.admit(*payer.policy, target); !st.ok()) {
    if (spender.observer()) spender.observer()->onRefused(payer.team, st.openaiCode());
    done(std::move(st));
    return std::make_shared<DoneCall>();
  }
  if (target.api == "local") {  // local compute: no token price, nothing to reserve
    request.model = target.upstream_model;
    return provider.embed(request, std::move(done), deadline);
  }
  const policies::Price* price = spender.prices().find(provider.name(), target.upstream_model);
  request.model = target.upstream_model;
  auto call = std::make_shared<RetriedEmbedding>(spender, std::move(account), provider, target,
                                                 price, std::move(request), std::move(done),
                                                 deadline);
  call->start();
  return call;
}

// ---- the embedded engine ---------------------------------------------------------------

struct LocalEmbeddingProvider::Job : ProviderCall {
  api::EmbeddingRequest request;
  EmbedDone done;
  Deadline deadline;
  std::atomic<bool> cancelled{false};
  void cancel() override { cancelled = true; }
};

LocalEmbeddingProvider::LocalEmbeddingProvider(std::string name,
                                               std::unique_ptr<engine::EmbeddingGemmaModel> model,
                                               int max_queue)
    : name_(std::move(name)), model_(std::move(model)), max_queue_(max_queue) {
  worker_ = std::thread([this] { run(); });
}

LocalEmbeddingProvider::~LocalEmbeddingProvider() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::shared_ptr<ProviderCall> LocalEmbeddingProvider::embed(const api::EmbeddingRequest& request,
                                                            EmbedDone done, Deadline deadline) {
  if (request.dimensions && *request.dimensions > model_->dimensions()) {
    done(api::invalidRequest("This model's embeddings have " +
                                 std::to_string(model_->dimensions()) +
                                 " dimensions; `dimensions` " +
                                 std::to_string(*request.dimensions) + " is larger.",
                             "dimensions")
             .withNeverSent());
    return std::make_shared<DoneCall>();
  }
  auto job = std::make_shared<Job>();
  job->request = request;
  job->done = std::move(done);
  job->deadline = deadline;
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int>(queue_.size()) < std::max(1, max_queue_)) {
      queue_.push_back(job);
      queued = true;
    }
  }
  if (!queued) {  // answered outside the lock: `done` may call back into the gateway
    api::Status busy(api::ErrorCode::kUnavailable,
                     "The local embedding model '" + name_ + "' is busy; retry shortly.");
    job->done(busy.withRetryAfter(1).withNeverSent());
    return job;
  }
  cv_.notify_one();
  return job;
}

void LocalEmbeddingProvider::run() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job->cancelled) {
      job->done(api::Status(api::ErrorCode::kCancelled, "cancelled").withNeverSent());
    } else if (Clock::now() >= job->deadline) {
      job->done(api::Status(api::ErrorCode::kUpstreamTimeout,
                            "the request timed out waiting for the local embedding model")
                    .withNeverSent());
    } else {
      api::StatusOr<api::EmbeddingResponse> answer = api::Status();
      try {
        answer = compute(*job);
      } catch (const std::exception& e) {  // memory exhaustion: the worker and the model live on
        answer = api::Status(api::ErrorCode::kInternal,
                             std::string("the local embedding model failed: ") + e.what());
      }
      job->done(std::move(answer));
    }
  }
}

api::StatusOr<std::vector<std::vector<int32_t>>> LocalEmbeddingProvider::inputIds(
    const api::EmbeddingRequest& request, api::EmbeddingResponse& r) const {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(request.inputs.size());
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const api::EmbeddingInput& in = request.inputs[i];
    const std::string param = "input[" + std::to_string(i) + "]";
    if (in.is_tokens) {
      std::vector<int32_t> t;
      for (int64_t id : in.tokens) {
        if (id >= model_->config().vocab)
          return api::invalidRequest("Token id " + std::to_string(id) + " is outside the model's "
                                     "vocabulary of " + std::to_string(model_->config().vocab) +
                                     ".", param);
        t.push_back(static_cast<int32_t>(id));
      }
      ids.push_back(std::move(t));
    } else if (model_->tokenizer() == nullptr) {
      return api::Status(api::ErrorCode::kInternal, "the local embedding model '" + name_ +
                                                        "' was loaded without its tokenizer");
    } else {
      ids.push_back(model_->tokenize(in.text));
    }
    if (ids.back().empty()) return api::invalidRequest("Input " + std::to_string(i) + " is empty.", param);
    if (std::ssize(ids.back()) > model_->maxTokens())
      return api::invalidRequest("Input " + std::to_string(i) + " has " +
                                     std::to_string(ids.back().size()) +
                                     " tokens; this model reads at most " +
                                     std::to_string(model_->maxTokens()) + ".",
                                 param);
    r.prompt_tokens = policies::saturatingAdd(r.prompt_tokens, std::ssize(ids.back()));
    if (r.prompt_tokens > kMaxRequestTokens) {
      return api::invalidRequest("The inputs of one request may hold at most " +
                                     std::to_string(kMaxRequestTokens) + " tokens; input " +
                                     std::to_string(i) + " goes past that.",
                                 "input");
    }
  }
  return ids;
}

api::StatusOr<api::EmbeddingResponse> LocalEmbeddingProvider::compute(const Job& job) {
  const auto start = std::chrono::steady_clock::now();
  const api::EmbeddingRequest& request = job.request;
  api::EmbeddingResponse r;
  auto parsed = inputIds(request, r);
  if (!parsed.ok()) return parsed.status();
  const std::vector<std::vector<int32_t>>& ids = *parsed;
  const int dims = static_cast<int>(request.dimensions.value_or(model_->dimensions()));
  std::vector<float> out(ids.size() * size_t(dims));
  // Passes of whole inputs, at most kPassTokens tokens each (an input longer than that alone).
  for (size_t begin = 0; begin < ids.size();) {
    if (job.cancelled) return api::Status(api::ErrorCode::kCancelled, "cancelled");
    if (Clock::now() >= job.deadline) {
      return api::Status(api::ErrorCode::kUpstreamTimeout,
                         "the request timed out in the local embedding model");
    }
    size_t end = begin;
    int64_t tokens = 0;
    while (end < ids.size() && (end == begin || tokens + std::ssize(ids[end]) <= kPassTokens)) {
      tokens += std::ssize(ids[end++]);
    }
    std::span<const std::vector<int32_t>> pass(ids.data() + begin, end - begin);
    if (api::Status st = model_->embed(pass, dims, out.data() + begin * size_t(dims)); !st.ok()) {
      return api::invalidRequest(st.message(), "input");
    }
    begin = end;
  }
  r.embeddings.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    r.embeddings.emplace_back(out.begin() + i * size_t(dims), out.begin() + (i + 1) * size_t(dims));
  r.model = request.model;
  r.usage_reported = true;
  r.compute_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

namespace {

class EmbeddingOnlyChat : public Provider {
 public:
  explicit EmbeddingOnlyChat(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink, Deadline) override {
    sink->onFinish(api::Status(api::ErrorCode::kInvalidRequest,
                               "The model `" + request.model +
                                   "` creates embeddings only (POST /v1/embeddings); it does not "
                                   "chat.",
                               "model", "model_not_supported")
                       .withNeverSent());
    return std::make_shared<DoneCall>();
  }

 private:
  std::string name_;
};

}  // namespace

std::unique_ptr<Provider> makeEmbeddingOnlyChatProvider(std::string name) {
  return std::make_unique<EmbeddingOnlyChat>(std::move(name));
}

}  // namespace routers
