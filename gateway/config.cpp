// Parsing and validation of configs/switchyard.yaml into gateway::Config.
//
// Each top-level section has one parse function, listed in kSections; adding a section means
// writing its function and adding a row. Sections are parsed in the table's order whatever
// their order in the file, so that a later section may refer to an earlier one (models name
// providers). Cross-section rules that need the whole Config run in finish().
//
// Decisions beyond the header's contract:
//   - `type: openai_compatible` is accepted as a synonym of `openai` and stored as "openai".
//   - With `auth.allow_unauthenticated: true`, an `anonymous_team` that no `teams:` entry
//     defines is created implicitly, with no keys, and appended to Config::teams.
//   - Team names, key ids and provider names are identifiers (letters, digits, '_', '-', '.',
//     at most 64 bytes): they appear in logs, metric labels, ledgers and route headers.
//   - Key ids and key hashes are unique across all teams (one key maps to one principal).
//   - Durations are capped at 7 days, max_header_bytes at 4 GiB - 1 (the HTTP parser's limit).
//   - shutdown_grace_s may be 0 (stop at once); every other duration must be > 0.
//   - Header names must be HTTP tokens and unique case-insensitively; values may not hold
//     CR or LF.
#include "gateway/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "policies/yaml_reader.h"

namespace gateway {
namespace {

using policies::NumberRange;
using policies::Presence;
using policies::YamlReader;

constexpr double kMaxDurationS = 7 * 24 * 3600;

NumberRange duration() { return NumberRange::positive(kMaxDurationS); }

bool isIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

// Returns the status of `expr` from the enclosing function when it is an error.
#define CONFIG_TRY(expr)                       \
  do {                                         \
    if (api::Status st_ = (expr); !st_.ok()) { \
      return st_;                              \
    }                                          \
  } while (false)

// Reads an identifier (see the file comment) under `key`.
api::Status readIdentifier(const YamlReader& r, std::string_view key, std::string* out,
                           Presence presence) {
  std::string value = *out;
  CONFIG_TRY(r.readString(key, &value, presence));
  if (!r.has(key)) return api::Status();
  if (!isIdentifier(value)) {
    return r.errorAt(key,
                     value.empty()
                         ? "must not be empty"
                         : "must be 1 to 64 letters, digits, '_', '-' or '.', got '" + value + "'");
  }
  *out = std::move(value);
  return api::Status();
}

bool isHttpToken(std::string_view s) {
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || kExtra.find(static_cast<char>(c)) != std::string_view::npos;
  });
}

bool isIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ---- server ----------------------------------------------------------------------------------

api::Status parseServer(const YamlReader& r, Config* config) {
  ServerConfig& s = config->server;
  CONFIG_TRY(r.checkNoUnknownKeys({"listen", "port", "threads", "max_body_bytes",
                                   "max_header_bytes", "read_timeout_s", "idle_timeout_s",
                                   "shutdown_grace_s", "max_connections"}));
  CONFIG_TRY(r.readString("listen", &s.listen));
  if (r.has("listen") && !isIpAddress(s.listen)) {
    return r.errorAt(
        "listen",
        "must be an IPv4 or IPv6 address (e.g. 127.0.0.1 or 0.0.0.0), got '" + s.listen + "'");
  }
  CONFIG_TRY(r.readInt("port", &s.port, 0, 65535));
  CONFIG_TRY(r.readInt("threads", &s.threads, 1, 256));
  CONFIG_TRY(r.readInt("max_body_bytes", &s.max_body_bytes, 1, int64_t{1} << 40));
  CONFIG_TRY(r.readInt("max_header_bytes", &s.max_header_bytes, 1, 4294967295));
  CONFIG_TRY(r.readDouble("read_timeout_s", &s.read_timeout_s, duration()));
  CONFIG_TRY(r.readDouble("idle_timeout_s", &s.idle_timeout_s, duration()));
  CONFIG_TRY(r.readDouble("shutdown_grace_s", &s.shutdown_grace_s,
                          NumberRange::atLeast(0, kMaxDurationS)));
  return r.readInt("max_connections", &s.max_connections, 1, 10'000'000);
}

// ---- auth ------------------------------------------------------------------------------------

api::Status parseAuth(const YamlReader& r, Config* config) {
  AuthConfig& a = config->auth;
  CONFIG_TRY(r.checkNoUnknownKeys({"allow_unauthenticated", "anonymous_team"}));
  CONFIG_TRY(r.readBool("allow_unauthenticated", &a.allow_unauthenticated));
  return readIdentifier(r, "anonymous_team", &a.anonymous_team, Presence::kOptional);
}

// ---- teams -----------------------------------------------------------------------------------

// Where each team name, key id and key hash was first seen, for duplicate messages.
struct TeamsSeen {
  std::map<std::string, int> team_lines;
  std::map<std::string, int> key_id_lines;
  std::map<std::string, std::string> key_owner;  // sha256 -> "team/key-id"
};

api::Status parseKey(const YamlReader& r, const std::string& team, TeamsSeen* seen, ApiKey* k) {
  CONFIG_TRY(r.checkNoUnknownKeys({"id", "sha256"}));
  CONFIG_TRY(readIdentifier(r, "id", &k->id, Presence::kRequired));
  if (auto [it, inserted] = seen->key_id_lines.emplace(k->id, r.child("id")->line()); !inserted) {
    return r.errorAt("id", "duplicate key id '" + k->id + "' (first defined at line " +
                               std::to_string(it->second) + ")");
  }
  CONFIG_TRY(r.readString("sha256", &k->sha256, Presence::kRequired));
  k->sha256 = lower(k->sha256);
  // The length, never the value: a raw key pasted here by mistake must not reach the logs.
  if (k->sha256.size() != 64 || !std::all_of(k->sha256.begin(), k->sha256.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return r.errorAt("sha256",
                     "must be the 64 hex digits of the key's SHA-256 (from `switchyard-cli "
                     "hash-key`), got " +
                         std::to_string(k->sha256.size()) + " characters");
  }
  if (auto [it, inserted] = seen->key_owner.emplace(k->sha256, team + "/" + k->id); !inserted) {
    return r.errorAt("sha256", "the same key is already used by " + it->second);
  }
  return api::Status();
}

api::Status parseTeams(const YamlReader& r, Config* config) {
  TeamsSeen seen;
  return r.forEachItem([&](const YamlReader& item) -> api::Status {
    CONFIG_TRY(item.checkNoUnknownKeys({"name", "keys"}));
    Team team;
    CONFIG_TRY(readIdentifier(item, "name", &team.name, Presence::kRequired));
    if (auto [it, inserted] = seen.team_lines.emplace(team.name, item.child("name")->line());
        !inserted) {
      return item.errorAt("name", "duplicate team '" + team.name + "' (first defined at line " +
                                      std::to_string(it->second) + ")");
    }
    CONFIG_TRY(item.forEachItem("keys", [&](const YamlReader& key) -> api::Status {
      ApiKey k;
      CONFIG_TRY(parseKey(key, team.name, &seen, &k));
      team.keys.push_back(std::move(k));
      return api::Status();
    }));
    config->teams.push_back(std::move(team));
    return api::Status();
  });
}

// ---- providers -------------------------------------------------------------------------------

api::Status parseTimeouts(const YamlReader& r, Timeouts* t) {
  CONFIG_TRY(r.checkNoUnknownKeys({"connect_s", "first_byte_s", "idle_s", "total_s"}));
  CONFIG_TRY(r.readDouble("connect_s", &t->connect_s, duration()));
  CONFIG_TRY(r.readDouble("first_byte_s", &t->first_byte_s, duration()));
  CONFIG_TRY(r.readDouble("idle_s", &t->idle_s, duration()));
  return r.readDouble("total_s", &t->total_s, duration());
}

// Checks base_url and strips its trailing slashes.
api::Status parseBaseUrl(const YamlReader& r, std::string* base_url) {
  CONFIG_TRY(r.readString("base_url", base_url, Presence::kRequired));
  std::string_view url = *base_url;
  size_t scheme = url.starts_with("https://") ? 8 : url.starts_with("http://") ? 7 : 0;
  if (scheme == 0) {
    return r.errorAt("base_url", "must start with http:// or https://, got '" + *base_url + "'");
  }
  while (url.size() > scheme && url.back() == '/') url.remove_suffix(1);
  if (url.size() == scheme || url[scheme] == '/') {
    return r.errorAt("base_url", "has no host, got '" + *base_url + "'");
  }
  if (std::any_of(url.begin(), url.end(),
                  [](unsigned char c) { return std::isspace(c) || std::iscntrl(c); })) {
    return r.errorAt("base_url", "must not contain whitespace or control characters");
  }
  *base_url = std::string(url);
  return api::Status();
}

api::Status parseHeaders(const YamlReader& r, std::map<std::string, std::string>* headers) {
  CONFIG_TRY(r.readStringMap("headers", headers));
  std::map<std::string, std::string> seen;  // lowercase name -> name as written
  for (const auto& [name, value] : *headers) {
    YamlReader at = *r.section("headers").child(name);
    if (!isHttpToken(name)) return at.error("is not a valid HTTP header name");
    if (value.find_first_of("\r\n") != std::string::npos) {
      return at.error("header values must not contain a line break");
    }
    if (auto [it, inserted] = seen.emplace(lower(name), name); !inserted) {
      return at.error("repeats header '" + it->second + "' (header names ignore case)");
    }
  }
  return api::Status();
}

api::Status parseLocalProvider(const YamlReader& r, ProviderConfig* p) {
  CONFIG_TRY(r.checkNoUnknownKeys({"type", "model_dir", "backend", "threads", "max_batch",
                                   "max_queue", "kv_cache_tokens", "max_context", "timeouts"}));
  LocalEngineConfig& e = p->local;
  CONFIG_TRY(r.readString("model_dir", &e.model_dir, Presence::kRequired));
  if (e.model_dir.empty()) return r.errorAt("model_dir", "must name a model directory");
  CONFIG_TRY(r.readChoice("backend", &e.backend, {"auto", "cpu", "cuda"}));
  CONFIG_TRY(r.readInt("threads", &e.threads, 0, 1024));
  CONFIG_TRY(r.readInt("max_batch", &e.max_batch, 1, 1024));
  CONFIG_TRY(r.readInt("max_queue", &e.max_queue, 0, 1000000));
  CONFIG_TRY(r.readInt("kv_cache_tokens", &e.kv_cache_tokens, 0, int64_t{1} << 40));
  CONFIG_TRY(r.readInt("max_context", &e.max_context, 0, 1 << 24));
  p->base_url = "local";
  return parseTimeouts(r.section("timeouts"), &p->timeouts);
}

api::Status parseProvider(const std::string& name, const YamlReader& r, ProviderConfig* p) {
  p->name = name;
  if (!isIdentifier(name)) {
    return r.keyError("provider names must be 1 to 64 letters, digits, '_', '-' or '.'");
  }
  if (!r.isMap()) return r.error("expected a map with type, base_url, ..., got " + r.describe());
  CONFIG_TRY(r.readChoice("type", &p->type, {"openai", "openai_compatible", "local"},
                          Presence::kRequired));
  if (p->type == "local") return parseLocalProvider(r, p);
  CONFIG_TRY(r.checkNoUnknownKeys({"type", "base_url", "api_key", "headers", "timeouts"}));
  if (p->type == "openai_compatible") p->type = "openai";  // the same wire format
  CONFIG_TRY(parseBaseUrl(r, &p->base_url));
  CONFIG_TRY(r.readString("api_key", &p->api_key));
  if (p->api_key.find_first_of("\r\n") != std::string::npos) {
    return r.errorAt("api_key", "must not contain a line break");
  }
  CONFIG_TRY(parseHeaders(r, &p->headers));
  return parseTimeouts(r.section("timeouts"), &p->timeouts);
}

api::Status parseProviders(const YamlReader& r, Config* config) {
  return r.forEachEntry([&](const std::string& name, const YamlReader& value) -> api::Status {
    ProviderConfig p;
    CONFIG_TRY(parseProvider(name, value, &p));
    config->providers[name] = std::move(p);
    return api::Status();
  });
}

// ---- models ----------------------------------------------------------------------------------

api::Status parseModels(const YamlReader& r, Config* config) {
  std::map<std::string, int> model_lines;
  std::vector<std::string_view> provider_names;
  for (const auto& [name, p] : config->providers) provider_names.push_back(name);
  return r.forEachItem([&](const YamlReader& item) -> api::Status {
    CONFIG_TRY(item.checkNoUnknownKeys({"name", "provider", "upstream_model"}));
    ModelRoute m;
    CONFIG_TRY(item.readName("name", &m.name, Presence::kRequired));
    if (auto [it, inserted] = model_lines.emplace(m.name, item.child("name")->line()); !inserted) {
      return item.errorAt("name", "duplicate model '" + m.name + "' (first defined at line " +
                                      std::to_string(it->second) + ")");
    }
    CONFIG_TRY(item.readName("provider", &m.provider, Presence::kRequired));
    if (config->providers.count(m.provider) == 0) {
      std::string problem = "unknown provider '" + m.provider + "'";
      if (provider_names.empty()) {
        problem += "; no providers are defined under `providers:`";
      } else if (auto near = policies::closestMatch(m.provider, provider_names)) {
        problem += "; did you mean '" + std::string(*near) + "'?";
      }
      return item.errorAt("provider", problem);
    }
    m.upstream_model = m.name;
    CONFIG_TRY(item.readName("upstream_model", &m.upstream_model));
    config->models.push_back(std::move(m));
    return api::Status();
  });
}

// ---- the document ----------------------------------------------------------------------------

// A top-level section: its key and the function that reads it (given the section's node,
// which is null when the key is absent) into the Config.
struct Section {
  std::string_view key;
  api::Status (*parse)(const YamlReader& section, Config* config);
};

// Order matters: a section may use what the sections above it filled.
constexpr Section kSections[] = {
    {"server", &parseServer},       {"auth", &parseAuth},     {"teams", &parseTeams},
    {"providers", &parseProviders}, {"models", &parseModels},
};

// Rules across sections, once every section is read.
api::Status finish(Config* config) {
  AuthConfig& auth = config->auth;
  if (auth.allow_unauthenticated) {
    bool defined = std::any_of(config->teams.begin(), config->teams.end(),
                               [&](const Team& t) { return t.name == auth.anonymous_team; });
    if (!defined) config->teams.push_back(Team{auth.anonymous_team, {}});
  }
  return api::Status();
}

api::Status parseDocument(const YamlReader& root, Config* config) {
  if (!root.isNull() && !root.isMap()) {
    return root.error("expected a map of sections (server, auth, ...) at the top level, got " +
                      root.describe());
  }
  std::vector<std::string_view> keys;
  for (const Section& s : kSections) keys.push_back(s.key);
  CONFIG_TRY(root.checkNoUnknownKeys(keys));
  for (const Section& s : kSections) CONFIG_TRY(s.parse(root.section(s.key), config));
  return finish(config);
}

#undef CONFIG_TRY

api::StatusOr<Config> parseInto(std::string_view yaml_text, std::string_view source_name) {
  try {
    auto root = policies::YamlReader::parse(yaml_text, source_name);
    if (!root.ok()) return root.status();
    Config config;
    if (api::Status st = parseDocument(*root, &config); !st.ok()) return st;
    return config;
  } catch (const std::exception& e) {
    // The reader returns statuses; this only stops an unexpected exception (e.g. bad_alloc)
    // from escaping the parser.
    return api::Status(api::ErrorCode::kConfig,
                       std::string(source_name) + ": cannot parse: " + e.what());
  }
}

}  // namespace

api::StatusOr<std::shared_ptr<const Config>> parseConfig(std::string_view yaml_text,
                                                         std::string_view source_name) {
  auto config = parseInto(yaml_text, source_name);
  if (!config.ok()) return config.status();
  return std::shared_ptr<const Config>(std::make_shared<Config>(std::move(config).value()));
}

api::StatusOr<std::shared_ptr<const Config>> loadConfigFile(const std::string& path) {
  auto text = policies::readTextFile(path);
  if (!text.ok()) return text.status();
  auto config = parseInto(*text, path);
  if (!config.ok()) return config.status();
  config->source_path = path;
  return std::shared_ptr<const Config>(std::make_shared<Config>(std::move(config).value()));
}

}  // namespace gateway
