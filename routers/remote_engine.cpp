#include "routers/remote_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>

namespace routers {
namespace {

constexpr double kNeverLogprob = -9000;  // OpenAI writes -9999.0 for "never"
constexpr int kMaxTopLogprobs = 20;      // OpenAI's bound, which servers follow

class RefusedCall : public ProviderCall {
 public:
  void cancel() override {}
};

// Between the server's wire and the caller's sink: token stats out of the logprobs, the
// logprobs cut to what the client asked for, the wall time into usage, the in-flight count.
class RemoteSink : public ChatSink {
 public:
  RemoteSink(std::shared_ptr<ChatSink> out, const api::ChatRequest& client,
             std::shared_ptr<std::atomic<int>> in_flight)
      : out_(std::move(out)),
        want_logprobs_(client.logprobs),
        want_top_(std::max(0, client.top_logprobs.value_or(0))),
        greedy_(client.temperature && *client.temperature == 0),
        in_flight_(std::move(in_flight)),
        started_(Clock::now()) {}

  ~RemoteSink() override {
    if (!finished_) in_flight_->fetch_sub(1);  // never finished (a provider bug): not counted
  }

  void onRoute(const RouteInfo& route) override { out_->onRoute(route); }

  void onChunk(api::ChatChunk chunk) override {
    for (api::ChunkChoice& c : chunk.choices) {
      if (c.index == 0) report(c.logprobs);
      trim(c.logprobs);
    }
    out_->onChunk(std::move(chunk));
  }

  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    if (!finished_) {
      finished_ = true;
      in_flight_->fetch_sub(1);
    }
    if (result.ok()) {
      api::ChatResponse& r = result.value();
      for (api::Choice& c : r.choices) {
        if (c.index == 0) report(c.logprobs);
        trim(c.logprobs);
      }
      if (r.usage) {
        r.usage->engine_compute_s = std::chrono::duration<double>(Clock::now() - started_).count();
      }
    }
    out_->onFinish(std::move(result));
  }

 private:
  void report(const std::optional<std::vector<api::TokenLogprob>>& logprobs) {
    if (!logprobs) return;
    for (const api::TokenLogprob& t : *logprobs) {
      if (const std::optional<TokenStats> stats = tokenStatsFromLogprobs(t, greedy_)) {
        out_->onTokenStats(*stats);
      }
    }
  }

  void trim(std::optional<std::vector<api::TokenLogprob>>& logprobs) const {
    if (!logprobs) return;
    if (!want_logprobs_) {
      logprobs.reset();
      return;
    }
    for (api::TokenLogprob& t : *logprobs) {
      if (t.top_logprobs.size() > static_cast<size_t>(want_top_)) t.top_logprobs.resize(want_top_);
    }
  }

  const std::shared_ptr<ChatSink> out_;
  const bool want_logprobs_;
  const int want_top_;
  const bool greedy_;  // the client asked for temperature 0
  const std::shared_ptr<std::atomic<int>> in_flight_;
  const Clock::time_point started_;
  bool finished_ = false;  // callbacks of one call never run concurrently (provider.h)
};

}  // namespace

double entropyFromTop(const std::vector<api::TopLogprob>& top) {
  double h = 0, mass = 0, p_min = 1;
  int used = 0;
  for (const api::TopLogprob& t : top) {
    if (!std::isfinite(t.logprob) || t.logprob < kNeverLogprob) continue;
    const double p = std::exp(std::min(0.0, t.logprob));
    if (p <= 0) continue;
    h -= p * std::log(p);
    mass += p;
    p_min = std::min(p_min, p);
    ++used;
  }
  if (used == 0) return std::numeric_limits<double>::quiet_NaN();
  const double rest = 1 - mass;
  if (rest > 1e-12) {
    const double tokens = std::ceil(rest / p_min);
    h += rest * (std::log(tokens) - std::log(rest));  // `tokens` shares of rest / tokens each
  }
  return std::max(0.0, h);
}

std::optional<TokenStats> tokenStatsFromLogprobs(const api::TokenLogprob& t, bool greedy) {
  auto usable = [](double lp) { return std::isfinite(lp) && lp >= kNeverLogprob; };
  TokenStats s;
  s.logprob = t.logprob;
  double first = -std::numeric_limits<double>::infinity(), second = first;
  int candidates = 0;
  auto push = [&](double lp) {
    lp = std::min(0.0, lp);
    second = std::max(second, std::min(lp, first));
    first = std::max(first, lp);
    ++candidates;
  };
  bool chosen_listed = false;
  for (const api::TopLogprob& alt : t.top_logprobs) {
    if (!usable(alt.logprob)) continue;
    push(alt.logprob);
    chosen_listed = chosen_listed || alt.token == t.token;
  }
  if (candidates == 0) {
    // Only the chosen token: it is the top-1 only when it was the argmax, i.e. under greedy
    // decoding; otherwise nothing is known of the distribution.
    if (!greedy || !usable(t.logprob)) return std::nullopt;
    s.top1_logprob = std::min(0.0, t.logprob);
    return s;  // top-2 and entropy unknown (NaN)
  }
  if (!chosen_listed && usable(t.logprob)) push(t.logprob);
  s.top1_logprob = first;
  if (candidates >= 2) s.top2_logprob = second;
  s.entropy = entropyFromTop(t.top_logprobs);
  return s;
}

RemoteEngineProvider::RemoteEngineProvider(std::unique_ptr<Provider> upstream,
                                           RemoteEngineConfig config)
    : upstream_(std::move(upstream)), config_(config) {}

std::shared_ptr<ProviderCall> RemoteEngineProvider::chat(const api::ChatRequest& request,
                                                         std::shared_ptr<ChatSink> sink,
                                                         Deadline deadline) {
  if (config_.probe && config_.max_waiting > 0) {
    const std::optional<double> waiting = config_.probe->waiting();
    if (waiting && *waiting >= config_.max_waiting) {
      sink->onFinish(api::Status(api::ErrorCode::kRateLimited,
                                 "local server '" + name() + "' reports " +
                                     std::to_string(static_cast<int64_t>(*waiting)) +
                                     " requests waiting (max_waiting " +
                                     std::to_string(config_.max_waiting) + ")")
                         .withRetryAfter(1));
      return std::make_shared<RefusedCall>();
    }
  }
  const int running = in_flight_->fetch_add(1);
  if (config_.max_in_flight > 0 && running >= config_.max_in_flight) {
    in_flight_->fetch_sub(1);
    // Rate-limited, not unavailable: a full server is healthy, and its circuit must not open.
    sink->onFinish(api::Status(api::ErrorCode::kRateLimited,
                               "local server '" + name() + "' has " + std::to_string(running) +
                                   " calls in flight (max_in_flight " +
                                   std::to_string(config_.max_in_flight) + ")")
                       .withRetryAfter(1));
    return std::make_shared<RefusedCall>();
  }
  api::ChatRequest asked = request;
  asked.logprobs = true;
  asked.top_logprobs = std::clamp(std::max(request.top_logprobs.value_or(0), config_.top_logprobs),
                                  1, kMaxTopLogprobs);
  auto remote = std::make_shared<RemoteSink>(std::move(sink), request, in_flight_);
  return upstream_->chat(asked, std::move(remote), deadline);
}

// ---- the queue probe ---------------------------------------------------------------------------

std::optional<double> prometheusSum(std::string_view text, std::string_view metric) {
  std::optional<double> sum;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() <= metric.size() || line.substr(0, metric.size()) != metric) continue;
    const char next = line[metric.size()];
    if (next != ' ' && next != '{') continue;  // another metric with this prefix
    size_t value_at = metric.size();
    if (next == '{') {
      value_at = line.find('}', value_at);
      if (value_at == std::string_view::npos) continue;
      ++value_at;
    }
    const std::string value(line.substr(value_at));
    char* stop = nullptr;
    const double v = std::strtod(value.c_str(), &stop);
    if (stop == value.c_str() || !std::isfinite(v)) continue;
    sum = sum.value_or(0) + v;
  }
  return sum;
}

struct QueueProbe::State : std::enable_shared_from_this<QueueProbe::State> {
  State(HttpClient& h, TimerThread& t, QueueProbeConfig c)
      : http(h), timer(t), config(std::move(c)) {}

  void poll() {
    if (stopped.load()) return;
    HttpRequest req;
    req.method = "GET";
    req.url = config.url;
    req.timeouts.connect = config.interval;
    req.timeouts.first_byte = config.interval;
    req.timeouts.idle = config.interval;
    req.timeouts.total = config.interval * 2;
    auto body = std::make_shared<std::string>();
    auto status = std::make_shared<int>(0);
    std::weak_ptr<State> weak = shared_from_this();
    HttpCallbacks cb;
    cb.on_head = [status](const HttpResponseHead& head) { *status = head.status; };
    cb.on_data = [body](std::string_view piece) {
      if (body->size() + piece.size() > (4u << 20)) return false;  // not a metrics page
      body->append(piece);
      return true;
    };
    cb.on_done = [weak, body, status](const api::Status& st) {
      auto self = weak.lock();
      if (!self) return;
      std::optional<double> v;
      if (st.ok() && *status == 200) v = prometheusSum(*body, self->config.metric);
      {
        std::lock_guard<std::mutex> lock(self->mu);
        self->value = v;
        if (v) self->read_at = Clock::now();
      }
      self->schedule();
    };
    http.start(std::move(req), std::move(cb));
  }

  void schedule() {
    if (stopped.load()) return;
    std::weak_ptr<State> weak = shared_from_this();
    timer.after(config.interval, [weak] {
      if (auto self = weak.lock()) self->poll();
    });
  }

  HttpClient& http;
  TimerThread& timer;
  const QueueProbeConfig config;
  std::atomic<bool> stopped{false};
  mutable std::mutex mu;
  std::optional<double> value;
  Clock::time_point read_at;
};

QueueProbe::QueueProbe(HttpClient& http, TimerThread& timer, QueueProbeConfig config)
    : state_(std::make_shared<State>(http, timer, std::move(config))) {
  std::weak_ptr<State> weak = state_;
  timer.after(std::chrono::nanoseconds(0), [weak] {
    if (auto self = weak.lock()) self->poll();
  });
}

QueueProbe::~QueueProbe() { state_->stopped = true; }

std::optional<double> QueueProbe::waiting() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->value || Clock::now() - state_->read_at > state_->config.interval * 3) {
    return std::nullopt;
  }
  return state_->value;
}

const QueueProbeConfig& QueueProbe::config() const { return state_->config; }

}  // namespace routers
