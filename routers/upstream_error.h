// Maps what an upstream said (an HTTP error status, a transport failure) onto Switchyard's
// ErrorCode taxonomy, the same way for every cloud provider.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/status.h"

namespace routers {

inline constexpr int kMaxAuthLogLinesPerMinute = 60;

// An upstream answered `http_status` (>= 400) with `body`. 429 -> kRateLimited (honouring
// Retry-After), 5xx -> kUpstreamError, 401/403/404 -> kUpstreamError (the gateway's own
// credentials or model mapping are wrong, not the client's request), 408 -> kUpstreamTimeout,
// other 4xx -> kInvalidRequest carrying the upstream's message and param.
// For 401 and 403 the message is a generic one that never carries the upstream's text: those
// messages may quote the provider key (or its masked form), which is the gateway's secret, not
// the client's. The upstream's own message goes to stderr as a JSON log line instead (at most
// kMaxAuthLogLinesPerMinute a minute; the next line after a gap says how many were dropped).
api::Status statusFromUpstreamHttp(std::string_view provider, int http_status,
                                   std::string_view body,
                                   const std::map<std::string, std::string>& headers);

// Parses a Retry-After header value (delta seconds, or an HTTP date) into seconds.
std::optional<double> parseRetryAfter(std::string_view value);

// Prefixes a transport failure (timeout, refused connection) with the provider's name.
api::Status statusFromTransport(std::string_view provider, const api::Status& transport);

}  // namespace routers
