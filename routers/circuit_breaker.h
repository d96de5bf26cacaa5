// CircuitBreaker: one per provider endpoint. After `failure_threshold` failures in a row it
// opens and refuses calls at once for `open_s`; then it lets up to `half_open_probes` calls
// through, and closes on the first success or opens again on a failure. Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string_view>

#include "api/status.h"

namespace routers {

struct CircuitBreakerConfig {
  int failure_threshold = 5;  // consecutive failures that open the circuit; 0 disables it
  double open_s = 30;         // how long it stays open before probing
  int half_open_probes = 1;   // calls let through at once while half-open
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };
  using Clock = std::chrono::steady_clock;

  explicit CircuitBreaker(CircuitBreakerConfig config) : config_(config) {}

  // Whether a call may go out now. Every allowed call must be followed by exactly one of
  // onSuccess, onFailure or onAbandoned (which frees a half-open probe slot).
  bool allow(Clock::time_point now = Clock::now());
  void onSuccess();
  void onFailure(Clock::time_point now = Clock::now());
  void onAbandoned();

  State state(Clock::time_point now = Clock::now());
  // Seconds until an open circuit lets a probe through (0 when not open).
  double secondsUntilProbe(Clock::time_point now = Clock::now());

  // Whether `status` (a finished call's outcome) says the endpoint itself is unhealthy:
  // transport failures, timeouts, 5xx and garbage answers count; the caller's own mistakes
  // (4xx), rate limits and cancellations do not.
  static bool countsAsFailure(const api::Status& status);

  static std::string_view stateName(State state);

 private:
  void refresh(Clock::time_point now);  // open -> half-open when the time has come

  CircuitBreakerConfig config_;
  std::mutex mu_;
  State state_ = State::kClosed;
  int consecutive_failures_ = 0;
  int probes_in_flight_ = 0;
  Clock::time_point opened_at_{};
};

}  // namespace routers
