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
#include "policies/policy_set.h"

namespace gateway {

// Lowercase hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

// The teams of switchyard.yaml with their own keys: config.teams without the keys that
// config.policies gave (the input of bindPolicies when the policies file is read again).
std::vector<Team> switchyardTeams(const Config& config);

// The one validation of a policies file against the rest of the configuration, run alike at
// start-up and on every reload (SIGHUP, POST /admin/v1/reload), so that a reload can never
// accept what a start would refuse:
//   - every key hash belongs to one principal: the file may not give a team a key that
//     switchyard.yaml's teams or admin keys already use (else a reload could move a key to
//     another team);
//   - when the config names a policies file, every model its routing names is an entry of
//     `models:`;
//   - a budget (a team's or the defaults') needs a ledger to keep it.
// `own` is switchyardTeams(); `has_ledger` whether a ledger is configured. Returns `own` with
// the file's teams and keys joined in, or kConfig naming the problem.
api::StatusOr<std::vector<Team>> bindPolicies(const Config& config, std::vector<Team> own,
                                              const policies::PolicySet& set, bool has_ledger);

struct Principal {
  std::string team;
  std::string key_id;  // "" for anonymous access
  bool admin = false;  // an operator key (auth.admin_keys): the admin endpoints, no chat
};

class Authenticator {
 public:
  explicit Authenticator(const Config& config);

  // `authorization` is the raw header value, empty when absent. Returns the principal, or
  // kUnauthenticated (401) for a missing, malformed or unknown key. With allow_unauthenticated
  // and no key configured at all (no team's, no admin's), any header is anonymous access; once
  // one key exists, an unknown key is a 401 again.
  api::StatusOr<Principal> authenticate(std::string_view authorization) const;

 private:
  struct Entry {
    std::string digest;  // 32 raw bytes
    Principal principal;
  };
  std::unordered_map<std::string, Entry> by_digest_hex_;
  bool allow_unauthenticated_ = false;
  bool keyless_anonymous_ = false;  // allow_unauthenticated_ and no key configured
  std::string anonymous_team_;
};

}  // namespace gateway
