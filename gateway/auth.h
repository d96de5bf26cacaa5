// API-key authentication: `Authorization: Bearer <key>` -> the team that owns the key.
//
// Keys are configured as SHA-256 hashes only; a presented key is hashed and looked up, and the
// stored digest is confirmed with a constant-time comparison.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "api/status.h"
#include "gateway/config.h"

namespace gateway {

// Lowercase hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

struct Principal {
  std::string team;
  std::string key_id;  // "" for anonymous access
  bool admin = false;  // an operator key (auth.admin_keys): the admin endpoints, no chat
};

class Authenticator {
 public:
  explicit Authenticator(const Config& config);

  // `authorization` is the raw header value, empty when absent. Returns the principal, or
  // kUnauthenticated (401) for a missing, malformed or unknown key.
  api::StatusOr<Principal> authenticate(std::string_view authorization) const;

 private:
  struct Entry {
    std::string digest;  // 32 raw bytes
    Principal principal;
  };
  std::unordered_map<std::string, Entry> by_digest_hex_;
  bool allow_unauthenticated_ = false;
  std::string anonymous_team_;
};

}  // namespace gateway
