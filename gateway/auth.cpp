#include "gateway/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <utility>

#include "api/ascii.h"

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

std::vector<Team> switchyardTeams(const Config& config) {
  std::vector<Team> own;
  for (const Team& t : config.teams) {
    Team team{t.name, {}};
    const policies::TeamPolicy* from_file = config.policies ? config.policies->team(t.name) : nullptr;
    for (const ApiKey& k : t.keys) {
      bool given_by_file = false;
      if (from_file) {
        for (const policies::TeamKey& fk : from_file->keys) given_by_file |= fk.sha256 == k.sha256;
      }
      if (!given_by_file) team.keys.push_back(k);
    }
    own.push_back(std::move(team));
  }
  return own;
}

namespace {

api::Status checkBudgetsKept(const policies::PolicySet& set) {
  for (const policies::TeamPolicy& t : set.teams()) {
    if (t.budget.limited()) {
      return api::Status(api::ErrorCode::kConfig,
                         set.source() + ": team '" + t.name +
                             "' has a budget, but no ledger is configured to keep it (add "
                             "`ledger: {path: ledger.db}`)");
    }
  }
  if (set.defaults().budget.limited()) {
    return api::Status(api::ErrorCode::kConfig,
                       set.source() +
                           ": the defaults set a budget, but no ledger is configured to keep it "
                           "(add `ledger: {path: ledger.db}`)");
  }
  return api::Status();
}

}  // namespace

api::StatusOr<std::vector<Team>> bindPolicies(const Config& config, std::vector<Team> own,
                                              const policies::PolicySet& set, bool has_ledger) {
  std::map<std::string, std::string> owner;  // sha256 -> "team/key"
  for (const Team& t : own) {
    for (const ApiKey& k : t.keys) owner[k.sha256] = t.name + "/" + k.id;
  }
  for (const ApiKey& k : config.auth.admin_keys) owner[k.sha256] = "admin/" + k.id;
  for (const policies::TeamPolicy& tp : set.teams()) {
    auto it = std::find_if(own.begin(), own.end(), [&](const Team& t) { return t.name == tp.name; });
    if (it == own.end()) {
      own.push_back(Team{tp.name, {}});
      it = std::prev(own.end());
    }
    for (const policies::TeamKey& k : tp.keys) {
      if (auto [o, inserted] = owner.emplace(k.sha256, tp.name + "/" + k.id); !inserted) {
        return api::Status(api::ErrorCode::kConfig,
                           "the policies file gives team '" + tp.name + "' key '" + k.id +
                               "', which is already used by " + o->second);
      }
      it->keys.push_back(ApiKey{k.id, k.sha256});
    }
  }
  // Without a policies file, the built-in routing applies only where its models exist.
  for (const policies::ModelReference& ref : set.referencedModels()) {
    if (config.policies_file.empty()) break;
    if (!config.findModel(ref.model)) {
      return api::Status(api::ErrorCode::kConfig,
                         ref.location + ": unknown model '" + ref.model +
                             "' (policies route to entries of `models:`" +
                             (config.source_path.empty() ? "" : " in " + config.source_path) +
                             ")");
    }
    if (config.isEmbeddingModel(ref.model)) {
      return api::Status(api::ErrorCode::kConfig,
                         ref.location + ": '" + ref.model +
                             "' is a local embedding model (`kind: embedding`), which answers "
                             "POST /v1/embeddings only; routing needs a chat model");
    }
  }
  if (!has_ledger) {
    if (api::Status st = checkBudgetsKept(set); !st.ok()) return st;
  }
  return own;
}

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
  // With no key anywhere there is nothing a presented key could be checked against: clients
  // whose SDK always sends one (the OpenAI SDKs do) are served as anonymous, as vLLM and
  // Ollama serve them.
  keyless_anonymous_ = allow_unauthenticated_ && by_digest_hex_.empty();
}

api::StatusOr<Principal> Authenticator::authenticate(std::string_view authorization) const {
  if (authorization.empty() || keyless_anonymous_) {
    if (allow_unauthenticated_) return Principal{anonymous_team_, ""};
    return api::Status(api::ErrorCode::kUnauthenticated,
                       "You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                       "YOUR_KEY).",
                       {}, "invalid_api_key");
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      !api::equalsIgnoringAsciiCase(authorization.substr(0, kBearer.size()), kBearer)) {
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
