#include "policies/pg_pool.h"

#include "policies/pg_ledger.h"

namespace policies {

std::string pgPasswordOf(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t at = url.find('@', start);
    size_t slash = url.find('/', start);
    if (at == std::string::npos || (slash != std::string::npos && slash < at)) return "";
    size_t colon = url.find(':', start);
    return colon != std::string::npos && colon < at ? url.substr(colon + 1, at - colon - 1) : "";
  }
  size_t p = url.find("password=");
  if (p == std::string::npos) return "";
  size_t end = url.find(' ', p);
  return url.substr(p + 9, end == std::string::npos ? std::string::npos : end - p - 9);
}

std::string pgWithoutSecret(std::string text, const std::string& secret) {
  if (secret.size() < 3) return text;  // a shorter one would blank out ordinary words
  for (size_t p; (p = text.find(secret)) != std::string::npos;)
    text.replace(p, secret.size(), "***");
  return text;
}

std::string pgConnInfo(const std::string& url, std::chrono::seconds connect_timeout) {
  std::string t =
      "connect_timeout=" + std::to_string(std::max<int64_t>(1, connect_timeout.count()));
  if (url.find("://") == std::string::npos) return url + " " + t;
  return url + (url.find('?') == std::string::npos ? "?" : "&") + t;
}

std::string maskPostgresUrl(const std::string& url) {
  std::string pw = pgPasswordOf(url);
  if (pw.empty()) return url;
  if (url.find("://") != std::string::npos) {
    size_t at = url.find('@', url.find("://") + 3);
    size_t colon = at - pw.size() - 1;
    return url.substr(0, colon + 1) + "***" + url.substr(at);
  }
  size_t p = url.find("password=") + 9;
  return url.substr(0, p) + "***" + url.substr(p + pw.size());
}

}  // namespace policies
