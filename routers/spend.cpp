#include "routers/spend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "policies/spend.h"
#include "routers/anthropic_wire.h"

namespace routers {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Bytes of answer text in a chunk or a response: a token is at least one byte, so counting
// bytes never under-counts the tokens a provider bills for them.
int64_t chunkBytes(const api::ChatChunk& c) {
  int64_t n = 0;
  for (const api::ChunkChoice& ch : c.choices) {
    if (ch.delta.content) n += static_cast<int64_t>(ch.delta.content->size());
    if (ch.delta.refusal) n += static_cast<int64_t>(ch.delta.refusal->size());
    for (const api::ToolCallDelta& t : ch.delta.tool_calls) {
      if (t.name) n += static_cast<int64_t>(t.name->size());
      if (t.arguments) n += static_cast<int64_t>(t.arguments->size());
    }
  }
  return n;
}

int64_t responseBytes(const api::ChatResponse& r) {
  int64_t n = 0;
  for (const api::Choice& c : r.choices) {
    n += static_cast<int64_t>(c.message.content.joinedText().size());
    for (const api::ToolCall& t : c.message.tool_calls) {
      n += static_cast<int64_t>(t.name.size() + t.arguments.size());
    }
  }
  return n;
}

// Whether a failed attempt can have been billed by its provider. An error answer from the
// provider (any HTTP status) is not billed; neither is a call that never left the gateway.
bool mayBeBilled(const api::Status& s) {
  return !s.upstreamHttpStatus() && !s.neverSent() && !isGateRefusal(s);
}

void setOutputCap(api::ChatRequest& r, int64_t cap) {
  if (r.max_tokens && !r.max_completion_tokens) {
    r.max_tokens = cap;  // keep the field the client used: some servers know only max_tokens
  } else {
    r.max_completion_tokens = cap;
  }
}

class DoneCall : public ProviderCall {
 public:
  void cancel() override {}
};

// One metered attempt on a cloud target: durable reservation, the call, the settlement.
class MeteredCall : public ProviderCall, public std::enable_shared_from_this<MeteredCall> {
 public:
  MeteredCall(const Spender& spender, std::shared_ptr<Account> account, const ChainTarget& target,
              const policies::Price* price, api::ChatRequest request,
              std::shared_ptr<ChatSink> sink, Deadline deadline)
      : spender_(spender),
        account_(std::move(account)),
        target_(target),
        price_(price),
        request_(std::move(request)),
        sink_(std::move(sink)),
        deadline_(deadline) {}

  void start(int64_t prompt_bound, double worst_usd);
  void cancel() override;
  void setPaused(bool paused) override;

  void onChunk(api::ChatChunk chunk) {
    out_bytes_ += chunkBytes(chunk);
    sink_->onChunk(std::move(chunk));
  }
  void onTokenStats(const TokenStats& stats) { sink_->onTokenStats(stats); }
  void onFinish(api::StatusOr<api::ChatResponse> result);

 private:
  void onDurable(api::Status status);
  void proceed();
  void launch();
  void end(api::StatusOr<api::ChatResponse> result);
  std::optional<uint64_t> reservation() {
    std::lock_guard<std::mutex> lock(mu_);
    return reservation_;
  }

  const Spender& spender_;
  const std::shared_ptr<Account> account_;
  const ChainTarget target_;
  const policies::Price* const price_;  // null: the target has no price (costs nothing)
  const api::ChatRequest request_;
  const std::shared_ptr<ChatSink> sink_;
  const Deadline deadline_;
  int64_t prompt_bound_ = 0;
  double worst_usd_ = 0;
  std::atomic<int64_t> out_bytes_{0};
  std::atomic<bool> ended_{false};

  std::mutex mu_;
  std::optional<uint64_t> reservation_;
  bool have_id_ = false, durable_ = false;
  api::Status durable_status_;
  std::shared_ptr<ProviderCall> inner_;
  bool launched_ = false, cancelled_ = false, paused_ = false;
  bool launching_ = false;  // launch() decided to call the provider: a cancel() waits for it
};

// The attempt's sink: meters what the provider sends, then hands it on.
class MeterSink : public ChatSink {
 public:
  explicit MeterSink(std::shared_ptr<MeteredCall> call) : call_(std::move(call)) {}
  void onChunk(api::ChatChunk chunk) override { call_->onChunk(std::move(chunk)); }
  void onTokenStats(const TokenStats& stats) override { call_->onTokenStats(stats); }
  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    auto call = std::move(call_);  // breaks the cycle call -> inner -> sink -> call
    call->onFinish(std::move(result));
  }

 private:
  std::shared_ptr<MeteredCall> call_;
};

void MeteredCall::start(int64_t prompt_bound, double worst_usd) {
  prompt_bound_ = prompt_bound;
  worst_usd_ = worst_usd;
  if (!account_->ledger()) {
    launch();
    return;
  }
  auto self = shared_from_this();
  auto id = reserveForCall(spender_, *account_, worst_usd,
                           [self](api::Status st) { self->onDurable(std::move(st)); });
  if (!id.ok()) {
    end(id.status());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    reservation_ = *id;
    have_id_ = true;
    if (!durable_) return;  // onDurable() goes on
  }
  proceed();
}

void MeteredCall::onDurable(api::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    durable_ = true;
    durable_status_ = std::move(status);
    if (!have_id_) return;  // start() goes on once it knows the id
  }
  proceed();
}

void MeteredCall::proceed() {
  api::Status st;
  {
    std::lock_guard<std::mutex> lock(mu_);
    st = durable_status_;
  }
  if (!st.ok()) {
    account_->attemptEnded(reservation(), 0, false, false);
    end(ledgerUnavailable(st));
    return;
  }
  launch();
}

void MeteredCall::launch() {
  {
    // A cancel() that came before this point told the client already: nothing goes upstream
    // and the reservation is released. After it, cancel() cancels the provider's call.
    std::lock_guard<std::mutex> lock(mu_);
    launching_ = !cancelled_;
  }
  if (!launching_) {
    account_->attemptEnded(reservation(), 0, false, false);
    end(api::Status(api::ErrorCode::kCancelled, "cancelled"));
    return;
  }
  account_->cloudLaunched();
  auto call = target_.provider->chat(request_, std::make_shared<MeterSink>(shared_from_this()),
                                     deadline_);
  bool cancel_now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    launched_ = true;
    inner_ = call;
    cancel_now = cancelled_;
    if (paused_) call->setPaused(true);
  }
  if (cancel_now) call->cancel();
}

void MeteredCall::cancel() {
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
    // Still waiting for the ledger: the client hears at once; launch() releases the
    // reservation when the ledger answers.
    end(api::Status(api::ErrorCode::kCancelled, "cancelled"));
  }
}

void MeteredCall::setPaused(bool paused) {
  // Under mu_, so that a pause and a resume reach the call in the order they were made.
  std::lock_guard<std::mutex> lock(mu_);
  paused_ = paused;
  if (inner_) inner_->setPaused(paused);
}

void MeteredCall::onFinish(api::StatusOr<api::ChatResponse> result) {
  const std::optional<uint64_t> held = reservation();
  double cost = 0;
  bool billed = true, estimated = false;
  // Without usage: the tokens it can have produced, at the tier asked for and with the tool
  // calls it may have made (the reservation's share beyond its tokens).
  auto estimate = [&](int64_t out) {
    return price_ ? policies::reservedUsd(request_,
                                          policies::estimatedUsd(prompt_bound_, out, *price_),
                                          *price_, policies::TierAssumption::kNamedOnly)
                  : 0;
  };
  if (result.ok() && result->usage) {
    cost = price_ ? price_->cost(*result->usage) : 0;
  } else if (result.ok()) {
    // The provider answered but reported no usage: bill what it can have counted.
    estimated = true;
    cost = estimate(request_.stream ? out_bytes_.load() : responseBytes(*result));
  } else if (!mayBeBilled(result.status())) {
    billed = false;
  } else {
    estimated = true;
    cost = !request_.stream
               ? worst_usd_  // cut before its answer: the provider may have produced it all
               : estimate(out_bytes_.load());
  }
  account_->attemptEnded(held, cost, billed, estimated);
  if (estimated && spender_.observer()) {
    spender_.observer()->onEstimated(account_->payer().team, target_, cost);
  }
  end(std::move(result));
}

void MeteredCall::end(api::StatusOr<api::ChatResponse> result) {
  if (ended_.exchange(true)) return;
  sink_->onFinish(std::move(result));
}

}  // namespace

api::Status ledgerUnavailable(const api::Status& cause) {
  return api::Status(api::ErrorCode::kUnavailable,
                     "The ledger is unavailable, so no cloud call can be billed: " +
                         cause.message(),
                     {}, "ledger_unavailable")
      .withRetryAfter(5);
}

api::StatusOr<uint64_t> reserveForCall(const Spender& spender, Account& account, double worst_usd,
                                       std::function<void(api::Status)> on_durable) {
  const Payer& payer = account.payer();
  policies::ReservationRequest rr;
  rr.request_id = payer.request_id;
  rr.team = payer.team;
  rr.key_id = payer.key_id;
  rr.model = payer.public_model;
  rr.decision = account.decision();
  rr.max_cost_usd = worst_usd;
  rr.limits = {payer.policy->budget.daily_usd, payer.policy->budget.monthly_usd};
  rr.now_ms = nowMs();
  auto id = account.ledger()->reserveDurable(rr, std::move(on_durable));
  if (!id.ok()) {
    api::Status st = id.status();
    if (st.code() == api::ErrorCode::kUnavailable || st.code() == api::ErrorCode::kIo) {
      st = ledgerUnavailable(st);
    }
    if (spender.observer()) spender.observer()->onRefused(payer.team, st.openaiCode());
    if (st.code() == api::ErrorCode::kQuotaExceeded) account.budgetRefused(worst_usd);
    return st;
  }
  account.hold(*id);
  return id;
}

namespace {

// A cloud target as one request sees it: gated and metered.
class MeteredProvider : public Provider {
 public:
  MeteredProvider(const Spender& spender, std::shared_ptr<Account> account, ChainTarget target)
      : spender_(spender), account_(std::move(account)), target_(std::move(target)) {}

  const std::string& name() const override { return target_.provider->name(); }

  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override {
    const Payer& payer = account_->payer();
    if (api::Status st = spender_.admit(*payer.policy, target_); !st.ok()) {
      if (spender_.observer()) spender_.observer()->onRefused(payer.team, st.openaiCode());
      sink->onFinish(std::move(st));
      return std::make_shared<DoneCall>();
    }
    const policies::Price* price =
        spender_.prices().find(target_.provider->name(), target_.upstream_model);
    api::ChatRequest r = request;
    const int64_t cap = policies::outputCap(r, price);
    if (r.maxOutputTokens() ? *r.maxOutputTokens() > cap : payer.policy->budget.limited()) {
      setOutputCap(r, cap);  // the cap is sent, so the answer cannot cost more than reserved
    }
    const int64_t prompt =
        policies::promptTokenBound(r, target_.api, target_.upstream_model, price);
    const int64_t out = r.maxOutputTokens().value_or(cap);
    double worst = 0;
    if (price) {
      policies::Price reserved = *price;  // a 1-hour cache write costs more than a 5-minute one
      if (asksLongCache(r)) {
        reserved.cache_write = std::max(price->cache_write, price->cache_write_1h);
      }
      worst = policies::worstCaseUsd(prompt, out, r.n, reserved);
      worst = policies::reservedUsd(r, worst, reserved);
    }
    auto call = std::make_shared<MeteredCall>(spender_, account_, target_, price, std::move(r),
                                              std::move(sink), deadline);
    call->start(prompt, worst);
    return call;
  }

 private:
  const Spender& spender_;
  const std::shared_ptr<Account> account_;
  const ChainTarget target_;
};

// Keeps one run's metered providers alive as long as its chain can still use them.
class RunSink : public ChatSink {
 public:
  RunSink(std::shared_ptr<ChatSink> inner, std::vector<std::unique_ptr<Provider>> providers)
      : inner_(std::move(inner)), providers_(std::move(providers)) {}
  void onChunk(api::ChatChunk chunk) override { inner_->onChunk(std::move(chunk)); }
  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    inner_->onFinish(std::move(result));
  }
  void onRoute(const RouteInfo& route) override { inner_->onRoute(route); }
  void onTokenStats(const TokenStats& stats) override { inner_->onTokenStats(stats); }
  void onEngineTime(double compute_s) override { inner_->onEngineTime(compute_s); }

 private:
  std::shared_ptr<ChatSink> inner_;
  std::vector<std::unique_ptr<Provider>> providers_;
};

// A request of its own per chat(): written as its own ledger row when it ends.
class RowSink : public ChatSink {
 public:
  RowSink(std::shared_ptr<ChatSink> inner, std::shared_ptr<Account> account)
      : inner_(std::move(inner)), account_(std::move(account)), started_(Clock::now()) {}
  void onChunk(api::ChatChunk chunk) override { inner_->onChunk(std::move(chunk)); }
  void onRoute(const RouteInfo& route) override {
    route_ = route;
    inner_->onRoute(route);
  }
  void onTokenStats(const TokenStats& stats) override { inner_->onTokenStats(stats); }
  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    double latency = std::chrono::duration<double>(Clock::now() - started_).count();
    const api::Usage* usage = result.ok() && result->usage ? &*result->usage : nullptr;
    int status = result.ok() ? 200
                 : result.status().code() == api::ErrorCode::kCancelled
                     ? 499
                     : result.status().httpStatusCode();
    account_->finish(route_, !account_->usedCloud(), usage, status, latency);
    inner_->onFinish(std::move(result));
  }

 private:
  std::shared_ptr<ChatSink> inner_;
  std::shared_ptr<Account> account_;
  RouteInfo route_;
  Clock::time_point started_;
};

class BoundProvider : public Provider {
 public:
  BoundProvider(Spender& spender, std::shared_ptr<Account> account, std::string name,
                std::vector<ChainTarget> targets)
      : spender_(spender),
        account_(std::move(account)),
        name_(std::move(name)),
        targets_(std::move(targets)) {}

  const std::string& name() const override { return name_; }
  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override {
    return spender_.run(name_, account_, targets_, request, std::move(sink), deadline);
  }

 private:
  Spender& spender_;
  const std::shared_ptr<Account> account_;
  const std::string name_;
  const std::vector<ChainTarget> targets_;
};

class PayerProvider : public Provider {
 public:
  PayerProvider(Spender& spender, std::string name, Payer payer, std::string decision,
                std::vector<ChainTarget> targets)
      : spender_(spender),
        name_(std::move(name)),
        payer_(std::move(payer)),
        decision_(std::move(decision)),
        targets_(std::move(targets)) {}

  const std::string& name() const override { return name_; }

  std::shared_ptr<ProviderCall> chat(const api::ChatRequest& request,
                                     std::shared_ptr<ChatSink> sink,
                                     Deadline deadline) override {
    Payer payer = payer_;
    payer.request_id = payer_.request_id + "-" + std::to_string(++serial_);
    auto account = std::make_shared<Account>(spender_.ledger(), std::move(payer));
    account->setDecision(decision_);
    auto rows = std::make_shared<RowSink>(std::move(sink), account);
    return spender_.run(name_, account, targets_, request, std::move(rows), deadline);
  }

 private:
  Spender& spender_;
  const std::string name_;
  const Payer payer_;
  const std::string decision_;
  const std::vector<ChainTarget> targets_;
  std::atomic<uint64_t> serial_{0};
};

}  // namespace

Account::Account(policies::Ledger* ledger, Payer payer)
    : ledger_(ledger), payer_(std::move(payer)) {}

Account::~Account() {
  if (!ledger_) return;
  for (uint64_t id : reservations_) ledger_->release(id);
}

void Account::onNextCloudLaunch(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  on_launch_ = std::move(fn);
}

void Account::cloudLaunched() {
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn.swap(on_launch_);
  }
  if (fn) fn();
}

void Account::setDecision(std::string decision) {
  std::lock_guard<std::mutex> lock(mu_);
  decision_ = std::move(decision);
}

std::string Account::decision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_;
}

std::string Account::decisionFor(bool local_route) const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_ == "cascade" && !local_route ? "escalated" : decision_;
}

void Account::addDraftCompute(double compute_s) {
  if (!std::isfinite(compute_s) || compute_s <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  draft_compute_s_ += compute_s;
}

void Account::hold(uint64_t reservation) {
  std::lock_guard<std::mutex> lock(mu_);
  reservations_.push_back(reservation);
  used_cloud_ = true;
}

void Account::attemptEnded(std::optional<uint64_t> reservation, double cost_usd, bool billed,
                           bool estimated) {
  bool release = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    used_cloud_ = true;
    if (billed) {
      if (std::isfinite(cost_usd) && cost_usd > 0) cost_usd_ += cost_usd;
      estimated_ = estimated_ || estimated;
    } else if (reservation) {
      for (auto it = reservations_.begin(); it != reservations_.end(); ++it) {
        if (*it == *reservation) {
          reservations_.erase(it);
          release = true;
          break;
        }
      }
    }
  }
  if (release && ledger_) ledger_->release(*reservation);
}

double Account::costUsd() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cost_usd_;
}

bool Account::estimated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return estimated_;
}

bool Account::usedCloud() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_cloud_;
}

void Account::finish(const RouteInfo& route, bool local_route, const api::Usage* usage,
                     int status, double latency_s) {
  if (done_.exchange(true)) return;
  if (usage && on_usage_) {
    on_usage_(policies::saturatingAdd(std::max<int64_t>(0, usage->prompt_tokens),
                                      std::max<int64_t>(0, usage->completion_tokens)));
  }
  if (!ledger_) return;
  std::vector<uint64_t> reservations;
  policies::LedgerRow row;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reservations.swap(reservations_);
    row.cost_usd = cost_usd_;
    row.kind = used_cloud_ || !local_route ? "cloud" : "local";
    if (route.label.empty()) row.kind = used_cloud_ ? "cloud" : "local";
    row.decision = decision_ == "cascade" && !local_route ? "escalated" : decision_;
  }
  row.request_id = payer_.request_id;
  row.team = payer_.team;
  row.key_id = payer_.key_id;
  row.model = payer_.public_model;
  row.route = route.label.empty() ? "none" : route.label;
  if (usage) {
    row.prompt_tokens = std::max<int64_t>(0, usage->prompt_tokens);
    row.cached_prompt_tokens = std::max<int64_t>(0, usage->cached_prompt_tokens);
    row.completion_tokens = std::max<int64_t>(0, usage->completion_tokens);
    if (local_route) row.compute_ms = usage->engine_compute_s * 1000;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    row.compute_ms += draft_compute_s_ * 1000;  // an escalated cascade's local draft
  }
  row.latency_ms = latency_s * 1000;
  row.status = status;
  row.unix_ms = nowMs();
  api::Status st = reservations.empty() ? ledger_->record(row)
                                        : ledger_->settle(reservations.front(), row);
  for (size_t i = 1; i < reservations.size(); ++i) ledger_->release(reservations[i]);
  if (!st.ok()) {
    std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"ledger write failed\",\"what\":\"%s\"}\n",
                 st.message().c_str());
  }
  if (on_settled_) on_settled_(payer_.team);
}

Spender::Spender(policies::Ledger* ledger, const policies::PriceTable& prices, TimerThread& timer,
                 ChainObserver* chain_observer, SpendObserver* observer)
    : ledger_(ledger),
      prices_(prices),
      timer_(timer),
      chain_observer_(chain_observer),
      observer_(observer) {}

api::Status Spender::admit(const policies::TeamPolicy& policy, const ChainTarget& target) const {
  if (!target.cloud()) return api::Status();
  if (!policy.allow_cloud) {
    return api::Status(api::ErrorCode::kPermissionDenied,
                       "Team '" + policy.name +
                           "' keeps its data on the local engine (allow_cloud: false); `" +
                           (target.model.empty() ? target.label : target.model) +
                           "` is a cloud model.",
                       "model", "cloud_not_allowed");
  }
  // The team's own routing targets are allowed by the policy that names them.
  const auto& cloud_models = policy.routing.cloud_models;
  const bool routed_to = target.model == policy.routing.local_model ||
                         std::find(cloud_models.begin(), cloud_models.end(), target.model) !=
                             cloud_models.end();
  if (!target.model.empty() && !routed_to && !policy.allowsModel(target.model)) {
    return api::Status(api::ErrorCode::kPermissionDenied,
                       "Team '" + policy.name + "' may not use the model `" + target.model + "`.",
                       "model", "model_not_allowed");
  }
  return api::Status();
}

std::shared_ptr<ProviderCall> Spender::run(const std::string& name,
                                           std::shared_ptr<Account> account,
                                           std::vector<ChainTarget> targets,
                                           const api::ChatRequest& request,
                                           std::shared_ptr<ChatSink> sink, Deadline deadline) {
  std::vector<std::unique_ptr<Provider>> metered;
  for (ChainTarget& t : targets) {
    if (!t.cloud()) continue;
    metered.push_back(std::make_unique<MeteredProvider>(*this, account, t));
    t.provider = metered.back().get();
  }
  FallbackChain chain(name, std::move(targets), timer_, chain_observer_);
  return chain.chat(request, std::make_shared<RunSink>(std::move(sink), std::move(metered)),
                    deadline);
}

std::unique_ptr<Provider> Spender::bind(std::shared_ptr<Account> account, std::string name,
                                        std::vector<ChainTarget> targets) {
  return std::make_unique<BoundProvider>(*this, std::move(account), std::move(name),
                                         std::move(targets));
}

std::unique_ptr<Provider> Spender::providerFor(std::string name, Payer payer,
                                               std::string decision,
                                               std::vector<ChainTarget> targets) {
  return std::make_unique<PayerProvider>(*this, std::move(name), std::move(payer),
                                         std::move(decision), std::move(targets));
}

}  // namespace routers
