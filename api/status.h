// Status, StatusOr and the one error taxonomy of Switchyard.
//
// Every fallible operation on untrusted input returns a Status (or StatusOr<T>) instead of
// throwing. ErrorCode is mapped to an HTTP status and an OpenAI `error.type` in exactly one
// place (httpStatus / openaiType below); handlers never hand-write status codes.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace api {

enum class ErrorCode {
  kOk = 0,
  kInvalidRequest,     // 400: malformed or invalid input; `param` names the field
  kUnauthenticated,    // 401: missing or unknown API key
  kPermissionDenied,   // 403: key valid but not allowed to do this
  kNotFound,           // 404: unknown model or route
  kMethodNotAllowed,   // 405
  kPayloadTooLarge,    // 413: body or header over the configured limit
  kRateLimited,        // 429 rate_limit_exceeded
  kQuotaExceeded,      // 429 insufficient_quota (budget exhausted)
  kInternal,           // 500: a bug; never the client's fault
  kUpstreamError,      // 502: upstream answered garbage or an error it should not have
  kUnavailable,        // 503: overloaded, draining, circuit open, upstream unreachable
  kUpstreamTimeout,    // 504: upstream did not answer in time
  kCancelled,          // the client went away; never sent (nobody is listening)
  kConfig,             // a configuration file is invalid (start-up only)
  kIo,                 // a file could not be read or written
};

// Maps an ErrorCode to its HTTP status code.
int httpStatus(ErrorCode code);
// Maps an ErrorCode to OpenAI's `error.type` string.
std::string_view openaiType(ErrorCode code);
// A short stable name, for logs and metric labels ("invalid_request", "upstream_timeout", ...).
std::string_view codeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message, std::string param = {},
         std::string openai_code = {})
      : code_(code),
        message_(std::move(message)),
        param_(std::move(param)),
        openai_code_(std::move(openai_code)) {}

  static Status okStatus() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The request field at fault (OpenAI's `error.param`), empty when none.
  const std::string& param() const { return param_; }
  // OpenAI's `error.code` ("model_not_found", "invalid_api_key", ...), empty when none.
  const std::string& openaiCode() const { return openai_code_; }
  // Seconds the client should wait before retrying (429/503), when known.
  std::optional<double> retryAfterSeconds() const { return retry_after_s_; }
  Status& withRetryAfter(double seconds) {
    retry_after_s_ = seconds;
    return *this;
  }
  // An HTTP status to answer with instead of the code's own (an upstream's 4xx passed through
  // unchanged, e.g. 422); only 4xx values are kept.
  Status& withHttpStatus(int status) {
    if (status >= 400 && status < 500) http_status_ = status;
    return *this;
  }
  // The HTTP status to answer with: the override when set, else httpStatus(code()).
  int httpStatusCode() const;
  // The HTTP status an upstream answered when this error came from one (for retry decisions
  // and logs); never sent to the client as such.
  std::optional<int> upstreamHttpStatus() const { return upstream_http_; }
  Status& withUpstreamHttpStatus(int status) {
    upstream_http_ = status;
    return *this;
  }

  // The request never left the gateway (no connection could be made, a circuit was open): no
  // provider can have billed it. Set by the transports; read by the spend accounting.
  bool neverSent() const { return never_sent_; }
  Status& withNeverSent() {
    never_sent_ = true;
    return *this;
  }

  // "invalid_request: message" (for logs and CLI output).
  std::string toString() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
  std::string param_;
  std::string openai_code_;
  std::optional<double> retry_after_s_;
  std::optional<int> http_status_;
  std::optional<int> upstream_http_;
  bool never_sent_ = false;
};

inline Status invalidRequest(std::string message, std::string param = {}) {
  return Status(ErrorCode::kInvalidRequest, std::move(message), std::move(param));
}

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "StatusOr built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace api
