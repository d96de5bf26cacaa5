#include "api/status.h"

namespace api {

int httpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kInvalidRequest: return 400;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kMethodNotAllowed: return 405;
    case ErrorCode::kPayloadTooLarge: return 413;
    case ErrorCode::kRateLimited: return 429;
    case ErrorCode::kQuotaExceeded: return 429;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kUpstreamError: return 502;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kUpstreamTimeout: return 504;
    case ErrorCode::kCancelled: return 499;  // nginx's "client closed request"; never sent
    case ErrorCode::kConfig: return 500;
    case ErrorCode::kIo: return 500;
  }
  return 500;
}

std::string_view openaiType(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "";
    case ErrorCode::kInvalidRequest: return "invalid_request_error";
    case ErrorCode::kUnauthenticated: return "authentication_error";
    case ErrorCode::kPermissionDenied: return "permission_error";
    case ErrorCode::kNotFound: return "invalid_request_error";
    case ErrorCode::kMethodNotAllowed: return "invalid_request_error";
    case ErrorCode::kPayloadTooLarge: return "invalid_request_error";
    case ErrorCode::kRateLimited: return "rate_limit_error";
    case ErrorCode::kQuotaExceeded: return "insufficient_quota";
    case ErrorCode::kInternal: return "server_error";
    case ErrorCode::kUpstreamError: return "upstream_error";
    case ErrorCode::kUnavailable: return "service_unavailable";
    case ErrorCode::kUpstreamTimeout: return "timeout_error";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kConfig: return "server_error";
    case ErrorCode::kIo: return "server_error";
  }
  return "server_error";
}

std::string_view codeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidRequest: return "invalid_request";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kMethodNotAllowed: return "method_not_allowed";
    case ErrorCode::kPayloadTooLarge: return "payload_too_large";
    case ErrorCode::kRateLimited: return "rate_limited";
    case ErrorCode::kQuotaExceeded: return "quota_exceeded";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kUpstreamError: return "upstream_error";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kUpstreamTimeout: return "upstream_timeout";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kConfig: return "config";
    case ErrorCode::kIo: return "io";
  }
  return "internal";
}

int Status::httpStatusCode() const { return http_status_ ? *http_status_ : httpStatus(code_); }

std::string Status::toString() const {
  if (ok()) return "ok";
  std::string out(codeName(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace api
