#include "routers/circuit_breaker.h"

namespace routers {

void CircuitBreaker::refresh(Clock::time_point now) {
  if (state_ == State::kOpen &&
      now - opened_at_ >= std::chrono::duration<double>(config_.open_s)) {
    state_ = State::kHalfOpen;
    probes_in_flight_ = 0;
  }
}

bool CircuitBreaker::allow(Clock::time_point now) {
  if (config_.failure_threshold <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  refresh(now);
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      return false;
    case State::kHalfOpen:
      if (probes_in_flight_ >= config_.half_open_probes) return false;
      ++probes_in_flight_;
      return true;
  }
  return true;
}

void CircuitBreaker::onSuccess() {
  std::lock_guard<std::mutex> lock(mu_);
  consecutive_failures_ = 0;
  if (state_ == State::kHalfOpen) {
    state_ = State::kClosed;
    probes_in_flight_ = 0;
  }
}

void CircuitBreaker::onFailure(Clock::time_point now) {
  if (config_.failure_threshold <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  ++consecutive_failures_;
  if (state_ == State::kHalfOpen ||
      (state_ == State::kClosed && consecutive_failures_ >= config_.failure_threshold)) {
    state_ = State::kOpen;
    opened_at_ = now;
    probes_in_flight_ = 0;
  }
}

void CircuitBreaker::onAbandoned() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kHalfOpen && probes_in_flight_ > 0) --probes_in_flight_;
}

CircuitBreaker::State CircuitBreaker::state(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  refresh(now);
  return state_;
}

double CircuitBreaker::secondsUntilProbe(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  refresh(now);
  if (state_ != State::kOpen) return 0;
  double open_for = std::chrono::duration<double>(now - opened_at_).count();
  return config_.open_s > open_for ? config_.open_s - open_for : 0;
}

bool CircuitBreaker::countsAsFailure(const api::Status& status) {
  if (status.ok()) return false;
  if (auto http = status.upstreamHttpStatus()) return *http >= 500 || *http == 408;
  switch (status.code()) {
    case api::ErrorCode::kUpstreamError:    // refused connection, reset, garbage
    case api::ErrorCode::kUpstreamTimeout:
    case api::ErrorCode::kUnavailable:
      return true;
    default:
      return false;
  }
}

std::string_view CircuitBreaker::stateName(State state) {
  switch (state) {
    case State::kClosed:
      return "closed";
    case State::kOpen:
      return "open";
    case State::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

}  // namespace routers
