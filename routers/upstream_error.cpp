#include "routers/upstream_error.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <nlohmann/json.hpp>

#include "api/openai_json.h"

namespace routers {
namespace {

// Logs an upstream's refusal of the gateway's credentials, with its own words, for the
// operator. Rate-limited so that a revoked key under load does not flood the log.
void logCredentialRejection(std::string_view provider, int http_status,
                            const std::string& upstream_message) {
  static std::mutex mu;
  static std::chrono::steady_clock::time_point window_start;
  static int in_window = 0;
  static int64_t dropped = 0;
  int64_t dropped_before = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (now - window_start >= std::chrono::minutes(1)) {
      window_start = now;
      in_window = 0;
    }
    if (in_window >= kMaxAuthLogLinesPerMinute) {
      ++dropped;
      return;
    }
    ++in_window;
    dropped_before = dropped;
    dropped = 0;
  }
  nlohmann::json line = {{"level", "error"},
                         {"msg", "upstream rejected the gateway's credentials"},
                         {"provider", std::string(provider)},
                         {"upstream_status", http_status},
                         {"upstream_message", upstream_message}};
  if (dropped_before > 0) line["suppressed_before"] = dropped_before;
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace

std::optional<double> parseRetryAfter(std::string_view value) {
  if (value.empty()) return std::nullopt;
  try {
    size_t used = 0;
    double seconds = std::stod(std::string(value), &used);
    if (used == value.size() && seconds >= 0) return seconds;
  } catch (...) {
  }
  // An HTTP date: "Wed, 21 Oct 2015 07:28:00 GMT".
  std::tm tm{};
  std::string s(value);
  if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) != nullptr) {
    double delta = std::difftime(timegm(&tm), std::time(nullptr));
    return delta > 0 ? delta : 0.0;
  }
  return std::nullopt;
}

api::Status statusFromUpstreamHttp(std::string_view provider, int http_status,
                                   std::string_view body,
                                   const std::map<std::string, std::string>& headers) {
  std::string upstream_message = api::upstreamErrorMessage(body);
  std::string prefix = "upstream '" + std::string(provider) + "' returned HTTP " +
                       std::to_string(http_status);
  std::string message = upstream_message.empty() ? prefix : prefix + ": " + upstream_message;
  if (http_status == 429) {
    api::Status s(api::ErrorCode::kRateLimited, message, {}, "rate_limit_exceeded");
    s.withUpstreamHttpStatus(http_status);
    auto it = headers.find("retry-after");
    if (it != headers.end()) {
      if (auto seconds = parseRetryAfter(it->second)) s.withRetryAfter(*seconds);
    }
    return s;
  }
  if (http_status == 401 || http_status == 403) {
    logCredentialRejection(provider, http_status, upstream_message);
    return api::Status(api::ErrorCode::kUpstreamError,
                       "upstream '" + std::string(provider) +
                           "' rejected the gateway's credentials (HTTP " +
                           std::to_string(http_status) + ")")
        .withUpstreamHttpStatus(http_status);
  }
  if (http_status == 408) {
    return api::Status(api::ErrorCode::kUpstreamTimeout, message).withUpstreamHttpStatus(408);
  }
  if (http_status >= 500 || http_status == 404) {
    return api::Status(api::ErrorCode::kUpstreamError, message).withUpstreamHttpStatus(http_status);
  }
  // Any other 4xx: the request itself was refused; the client can fix it, so it gets the
  // upstream's own words and the field it named.
  std::string param;
  try {
    auto j = nlohmann::json::parse(body);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      const auto& e = j["error"];
      if (e.contains("param") && e["param"].is_string()) param = e["param"].get<std::string>();
    }
  } catch (...) {
  }
  api::Status s(api::ErrorCode::kInvalidRequest,
                upstream_message.empty() ? message : upstream_message, param);
  s.withHttpStatus(http_status).withUpstreamHttpStatus(http_status);
  return s;
}

api::Status statusFromTransport(std::string_view provider, const api::Status& transport) {
  return api::Status(transport.code(),
                     "upstream '" + std::string(provider) + "': " + transport.message());
}

}  // namespace routers
