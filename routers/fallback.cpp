#include "routers/fallback.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>

namespace routers {
namespace {

double random01() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

class ChainCall : public ProviderCall, public std::enable_shared_from_this<ChainCall> {
 public:
  ChainCall(const std::vector<ChainTarget>& targets, const api::ChatRequest& request,
            std::shared_ptr<ChatSink> sink, Deadline deadline, TimerThread& timer,
            ChainObserver* observer)
      : targets_(targets),
        request_(request),
        sink_(std::move(sink)),
        deadline_(deadline),
        timer_(timer),
        observer_(observer) {}

  void start() { tryTarget(); }

  void cancel() override {
    std::shared_ptr<ProviderCall> call;
    std::optional<TimerThread::Id> waiting;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || cancelled_) return;
      cancelled_ = true;
      call = current_;
      waiting = timer_id_;
    }
    if (call) {
      call->cancel();  // its onFinish(kCancelled) ends the chain
    } else if (waiting && timer_.cancel(*waiting)) {
      finalize(api::Status(api::ErrorCode::kCancelled, "cancelled"));
    }
    // Otherwise an attempt is starting right now; tryTarget() sees `cancelled_`.
  }

  void setPaused(bool paused) override {
    // Under mu_, so that a pause and a resume reach the attempt in the order they were made.
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = paused;
    if (current_) current_->setPaused(paused);
  }

  void onAttemptChunk(api::ChatChunk chunk) {
    if (!routed_) announceRoute();
    delivered_ = true;
    sink_->onChunk(std::move(chunk));
  }

  void onAttemptFinish(api::StatusOr<api::ChatResponse> result) {
    const ChainTarget& t = targets_[target_];
    if (result.ok()) {
      if (t.breaker) t.breaker->onSuccess();
      finalize(std::move(result));
      return;
    }
    api::Status status = result.status();
    if (isGateRefusal(status)) {
      // Our own refusal before the upstream was called: says nothing about its health.
      if (t.breaker) t.breaker->onAbandoned();
      moveOn(std::move(status), false);
      return;
    }
    if (t.breaker) {
      if (CircuitBreaker::countsAsFailure(status)) {
        t.breaker->onFailure();
      } else if (status.code() == api::ErrorCode::kCancelled ||
                 status.code() == api::ErrorCode::kRateLimited) {
        t.breaker->onAbandoned();
      } else {
        t.breaker->onSuccess();  // it answered; the request itself was refused
      }
    }
    if (status.code() == api::ErrorCode::kCancelled) {
      finalize(std::move(status));
      return;
    }
    if (observer_) observer_->onAttemptFailed(t, status);
    if (delivered_) {
      finalize(std::move(status));  // the stream broke in the middle: it stays broken
      return;
    }
    // A later target that cannot express the request is skipped; the client hears about the
    // failure that made us leave the first one.
    bool refused_by_fallback = target_ > 0 && status.code() == api::ErrorCode::kInvalidRequest &&
                               !status.upstreamHttpStatus();
    if (!refused_by_fallback && !isFallbackable(status)) {
      finalize(std::move(status));
      return;
    }
    double delay = 0;
    std::optional<Clock::time_point> when;
    if (!refused_by_fallback) {
      when = retryTime(t.retry, tries_on_target_, status, deadline_, &delay);
    }
    if (when) {
      if (observer_) observer_->onRetry(t, delay);
      {
        std::lock_guard<std::mutex> lock(mu_);
        current_.reset();
        if (!cancelled_) {
          auto self = shared_from_this();
          timer_id_ = timer_.at(*when, [self] { self->tryTarget(); });
          return;
        }
      }
      finalize(api::Status(api::ErrorCode::kCancelled, "cancelled"));
      return;
    }
    moveOn(std::move(status), refused_by_fallback);
  }

 private:
  void tryTarget() {
    uint64_t serial;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timer_id_.reset();
      serial = ++serial_;
      if (cancelled_) serial = 0;
    }
    if (serial == 0) {
      finalize(api::Status(api::ErrorCode::kCancelled, "cancelled"));
      return;
    }
    const ChainTarget& t = targets_[target_];
    if (t.breaker && !t.breaker->allow()) {
      if (observer_) observer_->onCircuitOpen(t);
      api::Status open(api::ErrorCode::kUnavailable,
                       "upstream '" + t.provider->name() +
                           "' is failing; its circuit breaker is open");
      open.withRetryAfter(std::max(1.0, t.breaker->secondsUntilProbe()));
      moveOn(std::move(open), false);
      return;
    }
    ++attempts_;
    ++tries_on_target_;
    api::ChatRequest request = request_;
    request.model = t.upstream_model;
    auto sink = std::make_shared<AttemptSink>(shared_from_this());
    auto call = t.provider->chat(request, std::move(sink), deadline_);
    bool cancel_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (serial_ == serial && !finished_) {
        current_ = call;
        cancel_now = cancelled_;
        if (paused_) call->setPaused(true);
      }
    }
    if (cancel_now) call->cancel();
  }

  // Gives up on the current target; tries the next one or ends with `status`.
  void moveOn(api::Status status, bool refused_by_fallback) {
    const ChainTarget& t = targets_[target_];
    failed_.push_back(t.label);
    if (!refused_by_fallback || !last_error_) last_error_ = status;
    gate_refused_ = isGateRefusal(status);
    size_t next = target_ + 1;
    while (next < targets_.size() && targets_[next].after_refusal_only && !gate_refused_) ++next;
    if (next >= targets_.size()) {
      finalize(*last_error_);
      return;
    }
    if (observer_) observer_->onFallback(t, targets_[next]);
    target_ = next;
    tries_on_target_ = 0;
    tryTarget();
  }

  void announceRoute() {
    routed_ = true;
    const ChainTarget& t = targets_[target_];
    RouteInfo info;
    info.provider = t.provider->name();
    info.model = t.upstream_model;
    info.label = t.label;
    info.entry = t.model;
    info.attempts = std::max(attempts_, 1);
    info.failed = failed_;
    if (!failed_.empty() && failed_.back() == t.label) info.failed.pop_back();
    if (t.after_refusal_only && last_error_) {
      // Served here only because the spending gate refused the targets before.
      info.escalation = (last_error_->openaiCode() == "insufficient_quota"
                             ? "cloud budget exhausted: "
                             : "cloud refused: ") +
                        last_error_->message();
    }
    sink_->onRoute(info);
  }

  void finalize(api::StatusOr<api::ChatResponse> result) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      current_.reset();
    }
    if (!routed_) announceRoute();
    sink_->onFinish(std::move(result));
  }

  class AttemptSink : public ChatSink {
   public:
    explicit AttemptSink(std::shared_ptr<ChainCall> chain) : chain_(std::move(chain)) {}
    void onChunk(api::ChatChunk chunk) override { chain_->onAttemptChunk(std::move(chunk)); }
    void onTokenStats(const TokenStats& stats) override { chain_->sink_->onTokenStats(stats); }
    void onEngineTime(double compute_s) override { chain_->sink_->onEngineTime(compute_s); }
    void onFinish(api::StatusOr<api::ChatResponse> result) override {
      auto chain = std::move(chain_);  // breaks the cycle chain -> call -> sink -> chain
      chain->onAttemptFinish(std::move(result));
    }

   private:
    std::shared_ptr<ChainCall> chain_;
  };

  const std::vector<ChainTarget> targets_;
  const api::ChatRequest request_;
  const std::shared_ptr<ChatSink> sink_;
  const Deadline deadline_;
  TimerThread& timer_;
  ChainObserver* const observer_;

  // Touched only by whichever thread drives the current attempt (attempts never overlap).
  size_t target_ = 0;
  int tries_on_target_ = 0;
  int attempts_ = 0;
  std::vector<std::string> failed_;
  std::optional<api::Status> last_error_;
  bool delivered_ = false;
  bool routed_ = false;
  bool gate_refused_ = false;  // the last failure was the spending gate's refusal

  std::mutex mu_;  // guards what cancel() touches
  std::shared_ptr<ProviderCall> current_;
  std::optional<TimerThread::Id> timer_id_;
  uint64_t serial_ = 0;
  bool cancelled_ = false;
  bool finished_ = false;
  bool paused_ = false;
};

}  // namespace

bool isGateRefusal(const api::Status& status) {
  const std::string& code = status.openaiCode();
  return !status.upstreamHttpStatus() &&
         (code == "cloud_not_allowed" || code == "model_not_allowed" ||
          code == "insufficient_quota" || code == "ledger_unavailable");
}

bool isRetryable(const api::Status& status) {
  if (isGateRefusal(status)) return false;
  if (auto http = status.upstreamHttpStatus()) {
    return *http == 408 || *http == 409 || *http == 429 || *http >= 500;
  }
  switch (status.code()) {
    case api::ErrorCode::kUpstreamError:    // refused, reset, garbage
    case api::ErrorCode::kUpstreamTimeout:
    case api::ErrorCode::kUnavailable:      // a full local queue, an overloaded upstream
    case api::ErrorCode::kRateLimited:
      return true;
    default:
      return false;
  }
}

bool isFallbackable(const api::Status& status) {
  if (isRetryable(status)) return true;
  if (auto http = status.upstreamHttpStatus()) {
    return *http == 401 || *http == 403 || *http == 404;
  }
  return false;
}

std::optional<Clock::time_point> retryTime(const RetryPolicy& policy, int tries,
                                           const api::Status& status, Deadline deadline,
                                           double* delay_s) {
  if (!isRetryable(status) || tries >= policy.max_attempts) return std::nullopt;
  double delay = backoffSeconds(policy, tries + 1, random01());
  if (auto retry_after = status.retryAfterSeconds()) {
    if (*retry_after > policy.max_retry_after_s) return std::nullopt;
    delay = std::max(delay, *retry_after);
  }
  auto when = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(delay));
  if (when >= deadline) return std::nullopt;
  if (delay_s) *delay_s = delay;
  return when;
}

double backoffSeconds(const RetryPolicy& policy, int attempt, double r) {
  double base = policy.initial_backoff_s * std::pow(2.0, std::max(0, attempt - 2));
  base = std::min(base, policy.max_backoff_s);
  return base / 2 + base / 2 * std::clamp(r, 0.0, 1.0);
}

FallbackChain::FallbackChain(std::string name, std::vector<ChainTarget> targets,
                             TimerThread& timer, ChainObserver* observer)
    : name_(std::move(name)), targets_(std::move(targets)), timer_(timer), observer_(observer) {}

std::shared_ptr<ProviderCall> FallbackChain::chat(const api::ChatRequest& request,
                                                  std::shared_ptr<ChatSink> sink,
                                                  Deadline deadline) {
  auto call = std::make_shared<ChainCall>(targets_, request, std::move(sink), deadline, timer_,
                                          observer_);
  call->start();
  return call;
}

}  // namespace routers
