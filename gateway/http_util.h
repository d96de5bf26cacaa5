// Small helpers shared by the gateway's handlers (internal to gateway/).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "api/status.h"
#include "gateway/exchange.h"

namespace gateway {

using Clock = std::chrono::steady_clock;

inline double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

inline int64_t unixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline Headers commonHeaders(const std::string& route) {
  Headers h;
  h.emplace_back("x-switchyard-route", route.empty() ? "none" : route);
  return h;
}

inline void addRetryAfter(Headers& h, const api::Status& s) {
  if (auto ra = s.retryAfterSeconds()) {
    h.emplace_back("retry-after", std::to_string(static_cast<int64_t>(*ra + 0.999)));
  }
}

}  // namespace gateway
