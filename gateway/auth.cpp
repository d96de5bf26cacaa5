#include "gateway/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace gateway {
namespace {

std::string rawSha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string toHex(std::string_view raw) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace

std::string sha256Hex(std::string_view data) { return toHex(rawSha256(data)); }

Authenticator::Authenticator(const Config& config)
    : allow_unauthenticated_(config.auth.allow_unauthenticated),
      anonymous_team_(config.auth.anonymous_team) {
  auto add = [&](const ApiKey& key, Principal principal) {
    Entry e;
    e.principal = std::move(principal);
    // Keep the raw digest for the constant-time confirmation.
    e.digest.reserve(32);
    for (size_t i = 0; i + 1 < key.sha256.size(); i += 2) {
      e.digest += static_cast<char>(std::stoi(key.sha256.substr(i, 2), nullptr, 16));
    }
    by_digest_hex_[key.sha256] = std::move(e);
  };
  for (const Team& team : config.teams) {
    for (const ApiKey& key : team.keys) add(key, Principal{team.name, key.id, false});
  }
  for (const ApiKey& key : config.auth.admin_keys) add(key, Principal{"", key.id, true});
}

api::StatusOr<Principal> Authenticator::authenticate(std::string_view authorization) const {
  if (authorization.empty()) {
    if (allow_unauthenticated_) return Principal{anonymous_team_, ""};
    return api::Status(api::ErrorCode::kUnauthenticated,
                       "You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                       "YOUR_KEY).",
                       {}, "invalid_api_key");
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return api::Status(api::ErrorCode::kUnauthenticated,
                       "The Authorization header must use the Bearer scheme "
                       "(Authorization: Bearer YOUR_KEY).",
                       {}, "invalid_api_key");
  }
  std::string_view key = authorization.substr(kBearer.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
  std::string raw = rawSha256(key);
  auto it = by_digest_hex_.find(toHex(raw));
  if (it == by_digest_hex_.end() || it->second.digest.size() != raw.size() ||
      CRYPTO_memcmp(it->second.digest.data(), raw.data(), raw.size()) != 0) {
    return api::Status(api::ErrorCode::kUnauthenticated,
                       "Incorrect API key provided. Keys are configured per team in the "
                       "gateway's config.",
                       {}, "invalid_api_key");
  }
  return it->second.principal;
}

}  // namespace gateway
