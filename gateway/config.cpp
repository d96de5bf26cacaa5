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

#include "api/ascii.h"
#include "api/chat.h"
#include "gateway/auth.h"
#include "gateway/tls.h"
#include "policies/pg_ledger.h"
#include "policies/yaml_reader.h"
#include "quality/store.h"

namespace gateway {
namespace {

using policies::isIdentifier;
using policies::NumberRange;
using policies::readIdentifier;
using policies::Presence;
using policies::YamlReader;

constexpr double kMaxDurationS = 7 * 24 * 3600;

NumberRange duration() { return NumberRange::positive(kMaxDurationS); }


// Returns the status of `expr` from the enclosing function when it is an error.
#define CONFIG_TRY(expr)                       \
  do {                                         \
    if (api::Status st_ = (expr); !st_.ok()) { \
      return st_;                              \
    }                                          \
  } while (false)


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

std::string lower(std::string_view s) { return api::asciiLower(s); }

// ---- server ----------------------------------------------------------------------------------

api::Status parseTls(const YamlReader& server, TlsConfig* tls);

api::Status parseServer(const YamlReader& r, Config* config) {
  ServerConfig& s = config->server;
  CONFIG_TRY(r.checkNoUnknownKeys({"listen", "port", "threads", "max_body_bytes",
                                   "max_header_bytes", "read_timeout_s", "idle_timeout_s",
                                   "shutdown_grace_s", "max_connections", "request_timeout_s",
                                   "inline_body_bytes", "worker_threads", "worker_queue",
                                   "max_buffered_bytes", "tls"}));
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
  CONFIG_TRY(r.readDouble("request_timeout_s", &s.request_timeout_s, duration()));
  CONFIG_TRY(r.readInt("inline_body_bytes", &s.inline_body_bytes, 0, int64_t{1} << 40));
  CONFIG_TRY(r.readInt("worker_threads", &s.worker_threads, 1, 256));
  CONFIG_TRY(r.readInt("worker_queue", &s.worker_queue, 1, 1 << 20));
  CONFIG_TRY(r.readInt("max_buffered_bytes", &s.max_buffered_bytes, 1 << 20, int64_t{1} << 40));
  CONFIG_TRY(parseTls(r, &s.tls));
  return r.readInt("max_connections", &s.max_connections, 1, 10'000'000);
}

// The files are read (and the context built) in checkTls, once the file reader is known.
api::Status parseTls(const YamlReader& server, TlsConfig* tls) {
  if (!server.has("tls")) return api::Status();
  YamlReader r = server.section("tls");
  CONFIG_TRY(r.expectMap());
  CONFIG_TRY(r.checkNoUnknownKeys({"cert_file", "key_file", "client_ca_file", "min_version"}));
  tls->enabled = true;
  CONFIG_TRY(r.readString("cert_file", &tls->cert_file, Presence::kRequired));
  CONFIG_TRY(r.readString("key_file", &tls->key_file, Presence::kRequired));
  CONFIG_TRY(r.readString("client_ca_file", &tls->client_ca_file));
  return r.readChoice("min_version", &tls->min_version, {"1.2", "1.3"});
}

// Reads the certificate files and builds the context once, so that a missing file or a bad
// PEM stops the start (and check-config) with the key and line that name it.
api::Status checkTls(const YamlReader& server, const ConfigFileReader& read_file,
                     Config* config) {
  TlsConfig& tls = config->server.tls;
  if (!tls.enabled) return api::Status();
  tls.read_file = read_file;
  auto ctx = makeTlsContext(tls);
  if (ctx.ok()) return api::Status();
  YamlReader r = server.section("tls");
  const std::string& msg = ctx.status().message();
  for (std::string_view key : {"cert_file", "key_file", "client_ca_file"}) {
    std::string prefix = "server.tls." + std::string(key) + ": ";
    if (msg.rfind(prefix, 0) == 0) return r.errorAt(key, msg.substr(prefix.size()));
  }
  return r.error(msg);
}

// ---- metrics ---------------------------------------------------------------------------------

api::Status parseMetrics(const YamlReader& r, Config* config) {
  MetricsConfig& m = config->metrics;
  CONFIG_TRY(r.checkNoUnknownKeys({"require_admin_key", "listen", "port"}));
  CONFIG_TRY(r.readBool("require_admin_key", &m.require_admin_key));
  CONFIG_TRY(r.readString("listen", &m.listen));
  if (r.has("listen") && !isIpAddress(m.listen)) {
    return r.errorAt("listen", "must be an IPv4 or IPv6 address, got '" + m.listen + "'");
  }
  CONFIG_TRY(r.readInt("port", &m.port, 0, 65535));
  if (r.has("listen") && !r.has("port")) {
    return r.errorAt("listen", "a separate metrics listener needs `port` too");
  }
  if (m.require_admin_key && config->auth.admin_keys.empty()) {
    return r.errorAt("require_admin_key", "needs at least one key in auth.admin_keys");
  }
  return api::Status();
}

// ---- auth ------------------------------------------------------------------------------------

api::Status parseAuth(const YamlReader& r, Config* config) {
  AuthConfig& a = config->auth;
  CONFIG_TRY(r.checkNoUnknownKeys({"allow_unauthenticated", "anonymous_team", "admin_keys"}));
  CONFIG_TRY(r.readBool("allow_unauthenticated", &a.allow_unauthenticated));
  CONFIG_TRY(readIdentifier(r, "anonymous_team", &a.anonymous_team, Presence::kOptional));
  return api::Status();
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
  CONFIG_TRY(policies::readKeySha256(r, "sha256", &k->sha256));
  if (auto [it, inserted] = seen->key_owner.emplace(k->sha256, team + "/" + k->id); !inserted) {
    return r.errorAt("sha256", "the same key is already used by " + it->second);
  }
  return api::Status();
}

// Admin keys share the namespace of team keys (one key, one principal).
api::Status parseAdminKeys(const YamlReader& auth, Config* config) {
  TeamsSeen seen;
  for (const Team& t : config->teams) {
    for (const ApiKey& k : t.keys) {
      seen.key_id_lines.emplace(k.id, 0);
      seen.key_owner.emplace(k.sha256, t.name + "/" + k.id);
    }
  }
  return auth.forEachItem("admin_keys", [&](const YamlReader& key) -> api::Status {
    ApiKey k;
    CONFIG_TRY(parseKey(key, "admin", &seen, &k));
    config->auth.admin_keys.push_back(std::move(k));
    return api::Status();
  });
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

// Checks base_url and strips its trailing slashes; an absent optional one keeps `*base_url`.
// An http(s) URL under `key`, without trailing slashes.
api::Status parseUrl(const YamlReader& r, std::string_view key, std::string* out,
                     Presence presence) {
  CONFIG_TRY(r.readString(key, out, presence));
  if (!r.has(key)) return api::Status();
  std::string_view url = *out;
  size_t scheme = url.starts_with("https://") ? 8 : url.starts_with("http://") ? 7 : 0;
  if (scheme == 0) {
    return r.errorAt(key, "must start with http:// or https://, got '" + *out + "'");
  }
  while (url.size() > scheme && url.back() == '/') url.remove_suffix(1);
  if (url.size() == scheme || url[scheme] == '/') {
    return r.errorAt(key, "has no host, got '" + *out + "'");
  }
  if (std::any_of(url.begin(), url.end(),
                  [](unsigned char c) { return std::isspace(c) || std::iscntrl(c); })) {
    return r.errorAt(key, "must not contain whitespace or control characters");
  }
  *out = std::string(url);
  return api::Status();
}

api::Status parseBaseUrl(const YamlReader& r, std::string* base_url, Presence presence) {
  return parseUrl(r, "base_url", base_url, presence);
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
                                   "max_queue", "kv_cache_tokens", "step_tokens", "max_context",
                                   "timeouts", "quantize", "kind"}));
  LocalEngineConfig& e = p->local;
  CONFIG_TRY(r.readChoice("kind", &e.kind, {"chat", "embedding"}));
  CONFIG_TRY(r.readString("model_dir", &e.model_dir, Presence::kRequired));
  if (e.model_dir.empty()) return r.errorAt("model_dir", "must name a model directory");
  CONFIG_TRY(r.readChoice("backend", &e.backend, {"auto", "cpu", "cuda"}));
  CONFIG_TRY(r.readInt("threads", &e.threads, 0, 1024));
  CONFIG_TRY(r.readInt("max_batch", &e.max_batch, 1, 1024));
  CONFIG_TRY(r.readInt("max_queue", &e.max_queue, 0, 1000000));
  CONFIG_TRY(r.readInt("kv_cache_tokens", &e.kv_cache_tokens, 0, int64_t{1} << 40));
  CONFIG_TRY(r.readInt("step_tokens", &e.step_tokens, 0, 1 << 16));
  CONFIG_TRY(r.readInt("max_context", &e.max_context, 0, 1 << 24));
  CONFIG_TRY(r.readChoice("quantize", &e.quantize, {"q8_0", "q5_0", "q4_0", "q4_k", "q6_k"}));
  p->base_url = "local";
  return parseTimeouts(r.section("timeouts"), &p->timeouts);
}

api::Status parseRetry(const YamlReader& r, routers::RetryPolicy* retry) {
  CONFIG_TRY(r.checkNoUnknownKeys(
      {"max_attempts", "initial_backoff_s", "max_backoff_s", "max_retry_after_s"}));
  CONFIG_TRY(r.readInt("max_attempts", &retry->max_attempts, 1, 20));
  CONFIG_TRY(r.readDouble("initial_backoff_s", &retry->initial_backoff_s,
                          NumberRange::atLeast(0, 3600)));
  CONFIG_TRY(r.readDouble("max_backoff_s", &retry->max_backoff_s, NumberRange::atLeast(0, 3600)));
  return r.readDouble("max_retry_after_s", &retry->max_retry_after_s,
                      NumberRange::atLeast(0, 3600));
}

api::Status parseCircuit(const YamlReader& r, routers::CircuitBreakerConfig* c) {
  CONFIG_TRY(r.checkNoUnknownKeys({"failure_threshold", "open_s", "half_open_probes"}));
  CONFIG_TRY(r.readInt("failure_threshold", &c->failure_threshold, 0, 1000000));
  CONFIG_TRY(r.readDouble("open_s", &c->open_s, duration()));
  return r.readInt("half_open_probes", &c->half_open_probes, 1, 1000);
}

// `tier`, and the keys only a `tier: local` server takes.
api::Status parseTier(const YamlReader& r, ProviderConfig* p) {
  CONFIG_TRY(r.readChoice("tier", &p->tier, {"local", "cloud"}));
  if (p->tier != "local") {
    for (std::string_view key : {"gpu_hour_usd", "max_in_flight", "metrics_url", "max_waiting"}) {
      if (r.has(key)) {
        return r.errorAt(key, "applies to `tier: local` servers only (cloud providers are "
                              "priced by their tokens, in `pricing:`)");
      }
    }
    return api::Status();
  }
  if (p->type != "openai" && p->type != "openai_compatible") {
    return r.errorAt("tier", "local needs an OpenAI-compatible server (type openai or "
                             "openai_compatible: the cascade reads its logprobs), got type '" +
                                 p->type + "'");
  }
  if (r.has("retry")) {
    return r.errorAt("retry", "a `tier: local` server is tried once, like the embedded engine: "
                              "a full or failing one moves on to the model's fallbacks at once");
  }
  if (r.has("gpu_hour_usd")) {
    double price = 0;
    CONFIG_TRY(r.readDouble("gpu_hour_usd", &price, NumberRange::atLeast(0, 1e6)));
    p->gpu_hour_usd = price;
  }
  CONFIG_TRY(r.readInt("max_in_flight", &p->max_in_flight, 0, 1000000));
  CONFIG_TRY(parseUrl(r, "metrics_url", &p->metrics_url, Presence::kOptional));
  CONFIG_TRY(r.readInt("max_waiting", &p->max_waiting, 0, 1000000));
  if (p->max_waiting > 0 && p->metrics_url.empty()) {
    return r.errorAt("max_waiting", "needs metrics_url, where the server reports its queue "
                                    "(vLLM: http://HOST:PORT/metrics)");
  }
  return api::Status();
}

// The API of each cloud provider type: where it lives by default and its own keys.
struct CloudType {
  std::string_view type;
  std::string_view default_base_url;  // "" when base_url is required
  std::vector<std::string_view> extra_keys;
};

const CloudType kCloudTypes[] = {
    {"openai", "https://api.openai.com/v1", {"responses_api"}},
    {"openai_compatible", "", {"responses_api"}},
    {"anthropic", "https://api.anthropic.com/v1", {"anthropic_version", "default_max_tokens"}},
    {"gemini", "https://generativelanguage.googleapis.com/v1beta", {"vertex"}},
};

api::Status parseProvider(const std::string& name, const YamlReader& r, ProviderConfig* p) {
  p->name = name;
  if (!isIdentifier(name)) {
    return r.keyError("provider names must be 1 to 64 letters, digits, '_', '-' or '.'");
  }
  if (!r.isMap()) return r.error("expected a map with type, base_url, ..., got " + r.describe());
  CONFIG_TRY(r.readChoice("type", &p->type,
                          {"openai", "openai_compatible", "anthropic", "gemini", "local"},
                          Presence::kRequired));
  if (p->type == "local") return parseLocalProvider(r, p);
  const CloudType* cloud = nullptr;
  for (const CloudType& c : kCloudTypes) {
    if (c.type == p->type) cloud = &c;
  }
  std::vector<std::string_view> keys = {"type",     "base_url", "api_key",
                                        "headers",  "timeouts", "retry",
                                        "circuit_breaker", "tier", "gpu_hour_usd",
                                        "max_in_flight", "metrics_url", "max_waiting"};
  keys.insert(keys.end(), cloud->extra_keys.begin(), cloud->extra_keys.end());
  CONFIG_TRY(r.checkNoUnknownKeys(keys));
  CONFIG_TRY(parseTier(r, p));
  p->base_url = std::string(cloud->default_base_url);
  CONFIG_TRY(parseBaseUrl(r, &p->base_url,
                          p->base_url.empty() ? Presence::kRequired : Presence::kOptional));
  if (p->type == "openai_compatible") p->type = "openai";  // the same wire format
  if (p->type == "openai") {
    // OpenAI itself speaks the Responses API; another server says so with responses_api.
    p->responses_api = p->base_url.rfind("https://api.openai.com/", 0) == 0;
    CONFIG_TRY(r.readBool("responses_api", &p->responses_api));
    if (p->responses_api && p->isRemoteLocal()) {
      return r.errorAt("responses_api", "a `tier: local` server is sent chat completions (the "
                                        "cascade reads its logprobs)");
    }
  }
  if (p->type == "anthropic") {
    CONFIG_TRY(r.readName("anthropic_version", &p->anthropic_version));
    CONFIG_TRY(r.readInt("default_max_tokens", &p->default_max_tokens, 1, 10'000'000));
  }
  if (auto vertex = r.child("vertex")) {
    CONFIG_TRY(vertex->checkNoUnknownKeys({"project", "location"}));
    CONFIG_TRY(readIdentifier(*vertex, "project", &p->vertex_project, Presence::kRequired));
    CONFIG_TRY(readIdentifier(*vertex, "location", &p->vertex_location, Presence::kRequired));
    if (r.has("base_url")) {
      return r.errorAt("base_url", "give either base_url or vertex, not both");
    }
    p->base_url.clear();  // built from the project and location
  }
  CONFIG_TRY(parseRetry(r.section("retry"), &p->retry));
  CONFIG_TRY(parseCircuit(r.section("circuit_breaker"), &p->circuit));
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
    CONFIG_TRY(item.checkNoUnknownKeys({"name", "provider", "upstream_model", "fallbacks"}));
    ModelRoute m;
    m.line = item.line();
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
    CONFIG_TRY(item.readStringList("fallbacks", &m.fallbacks));
    config->models.push_back(std::move(m));
    return api::Status();
  });
}

// ---- router ----------------------------------------------------------------------------------

api::Status parseRouter(const YamlReader& r, Config* config) {
  CONFIG_TRY(r.checkNoUnknownKeys({"complexity", "confidence"}));
  auto weights = routers::ComplexityWeights::read(r.section("complexity"));
  if (!weights.ok()) return weights.status();
  config->complexity = *weights;
  auto confidence = routers::ConfidenceConfig::read(r.section("confidence"));
  if (!confidence.ok()) return confidence.status();
  config->confidence = *confidence;
  return api::Status();
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
    {"providers", &parseProviders}, {"models", &parseModels},   {"router", &parseRouter},
};

// `pricing:`: a file name (read with `read_file`) or the table itself.
api::Status parsePricing(const YamlReader& root, const ConfigFileReader& read_file,
                         Config* config) {
  auto node = root.child("pricing");
  if (!node || node->isNull()) {
    config->prices = std::make_shared<const policies::PriceTable>();
    return api::Status();
  }
  api::StatusOr<policies::PriceTable> table = api::Status(api::ErrorCode::kConfig, "");
  if (node->isMap()) {
    table = policies::PriceTable::read(*node);
  } else if (node->isScalar()) {
    auto path = node->asString();
    if (!path.ok()) return path.status();
    auto text = read_file(*path);
    if (!text.ok()) {
      return node->error("cannot read the pricing file: " + text.status().message());
    }
    table = policies::PriceTable::parse(*text, *path);
  } else {
    return node->error("expected a pricing file name or a map of provider prices, got " +
                       node->describe());
  }
  if (!table.ok()) return table.status();
  config->prices = std::make_shared<const policies::PriceTable>(std::move(table).value());
  return api::Status();
}

// `policies:`: the per-team policy file. Absent: every team gets the built-in defaults.
api::Status parsePolicies(const YamlReader& root, const ConfigFileReader& read_file,
                          Config* config) {
  auto node = root.child("policies");
  if (!node || node->isNull()) {
    auto empty = policies::PolicySet::parse("", "<no policies file>");
    if (!empty.ok()) return empty.status();
    config->policies = *empty;
    return api::Status();
  }
  auto path = node->asString();
  if (!path.ok()) return path.status();
  auto text = read_file(*path);
  if (!text.ok()) return node->error("cannot read the policies file: " + text.status().message());
  auto set = policies::PolicySet::parse(*text, *path);
  if (!set.ok()) return set.status();
  config->policies_file = *path;
  config->policies = *set;
  return api::Status();
}

api::Status parseLedger(const YamlReader& r, Config* config) {
  CONFIG_TRY(
      r.checkNoUnknownKeys({"path", "url", "replica", "pool_size", "statement_timeout_ms"}));
  if (r.has("path") && r.has("url")) {
    return r.error("sets both `path` (a SQLite ledger file) and `url` (a PostgreSQL ledger): "
                   "keep one");
  }
  CONFIG_TRY(r.readString("path", &config->ledger_path));
  CONFIG_TRY(r.readString("url", &config->ledger_url));
  const std::string& url = config->ledger_url;
  if (r.has("url") && !url.starts_with("postgresql://") && !url.starts_with("postgres://")) {
    return r.errorAt("url", "must start with postgresql:// or postgres://, got '" +
                                policies::maskPostgresUrl(url) + "'");
  }
  for (std::string_view key : {"replica", "pool_size", "statement_timeout_ms"}) {
    if (r.has(key) && url.empty()) {
      return r.errorAt(key, "applies to a PostgreSQL ledger (`url:`) only");
    }
  }
  CONFIG_TRY(r.readName("replica", &config->ledger_replica));
  CONFIG_TRY(r.readInt("pool_size", &config->ledger_pool_size, 1, 256));
  return r.readInt("statement_timeout_ms", &config->ledger_statement_timeout_ms, 1, 600'000);
}

api::Status parseQuality(const YamlReader& r, Config* config) {
  QualityConfig& q = config->quality;
  CONFIG_TRY(
      r.checkNoUnknownKeys({"path", "url", "queue_size", "retention", "gpu_hour_usd", "judge"}));
  if (r.has("path") && r.has("url")) {
    return r.error("sets both `path` (a SQLite quality store file) and `url` (a PostgreSQL "
                   "quality store): keep one");
  }
  CONFIG_TRY(r.readString("path", &q.path));
  CONFIG_TRY(r.readString("url", &q.url));
  if (r.has("url") && !quality::QualityStore::isPostgresUrl(q.url)) {
    return r.errorAt("url", "must start with postgresql:// or postgres://, got '" +
                                policies::maskPostgresUrl(q.url) + "'");
  }
  CONFIG_TRY(r.readInt("queue_size", &q.queue_size, 1, 1 << 20));
  CONFIG_TRY(r.readDouble("gpu_hour_usd", &q.gpu_hour_usd, NumberRange::atLeast(0, 1e6)));
  YamlReader retention = r.section("retention");
  CONFIG_TRY(retention.checkNoUnknownKeys({"max_age_days", "max_rows", "max_mb"}));
  CONFIG_TRY(retention.readInt("max_age_days", &q.max_age_days, 0, 100000));
  CONFIG_TRY(retention.readInt("max_rows", &q.max_rows, 0, int64_t{1} << 40));
  CONFIG_TRY(retention.readInt("max_mb", &q.max_mb, 0, int64_t{1} << 30));
  YamlReader judge = r.section("judge");
  QualityJudgeConfig& j = q.judge;
  CONFIG_TRY(judge.checkNoUnknownKeys(
      {"model", "sample_rate", "daily_budget_usd", "rubric", "max_tokens", "timeout_s"}));
  CONFIG_TRY(judge.readName("model", &j.model));
  CONFIG_TRY(judge.readDouble("sample_rate", &j.sample_rate, NumberRange::atLeast(0, 1)));
  CONFIG_TRY(judge.readDouble("daily_budget_usd", &j.daily_budget_usd,
                              NumberRange::atLeast(0, 1e9)));
  CONFIG_TRY(judge.readString("rubric", &j.rubric));
  CONFIG_TRY(judge.readInt("max_tokens", &j.max_tokens, 16, 32768));
  CONFIG_TRY(judge.readDouble("timeout_s", &j.timeout_s, NumberRange::positive(3600)));
  if (!j.model.empty() && !config->findModel(j.model)) {
    return judge.errorAt("model", "unknown model '" + j.model +
                                      "' (the judge runs on an entry of `models:`)");
  }
  if (config->isEmbeddingModel(j.model)) {
    return judge.errorAt("model", "'" + j.model +
                                      "' is a local embedding model (`kind: embedding`); the "
                                      "judge needs a chat model");
  }
  if (!j.model.empty() && !q.enabled()) {
    return judge.errorAt("model",
                         "a judge needs a quality store: set quality.path or quality.url");
  }
  return api::Status();
}

// Each model's fallbacks name other models, once each; every model routed to a cloud
// provider has a price.
api::Status checkModels(const YamlReader& models, const Config& config) {
  size_t i = 0;
  return models.forEachItem([&](const YamlReader& item) -> api::Status {
    const ModelRoute& m = config.models[i++];
    std::vector<std::string_view> names;
    for (const ModelRoute& other : config.models) names.push_back(other.name);
    std::map<std::string, bool> seen;
    auto embeds = [&](const ModelRoute& x) { return config.isEmbeddingModel(x.name); };
    if (embeds(m) && !m.fallbacks.empty()) {
      return item.errorAt("fallbacks", "a local embedding model (`kind: embedding`) has none");
    }
    for (const std::string& f : m.fallbacks) {
      if (f == m.name) return item.errorAt("fallbacks", "'" + f + "' falls back to itself");
      if (const ModelRoute* fm = config.findModel(f); fm && embeds(*fm)) {
        return item.errorAt("fallbacks", "'" + f + "' is a local embedding model; it cannot chat");
      }
      if (!config.findModel(f)) {
        std::string problem = "unknown model '" + f + "'";
        if (auto near = policies::closestMatch(f, names)) {
          problem += "; did you mean '" + std::string(*near) + "'?";
        }
        return item.errorAt("fallbacks", problem + " (fallbacks name entries of `models:`)");
      }
      if (seen[f]) return item.errorAt("fallbacks", "lists '" + f + "' twice");
      seen[f] = true;
    }
    const ProviderConfig& p = config.providers.at(m.provider);
    if (!p.isLocal() && !config.prices->find(m.provider, m.upstream_model)) {
      return item.error("no price for '" + m.upstream_model + "' at provider '" + m.provider +
                        "': add it to the pricing table (`pricing:`" +
                        (config.prices->source().empty()
                             ? std::string(", which is not set")
                             : ", " + config.prices->source()) +
                        ") as " + m.provider + ": {" + m.upstream_model +
                        ": {input: ..., output: ...}} in USD per million tokens");
    }
    return api::Status();
  });
}

// Rules across sections, once every section is read.
api::Status finish(const YamlReader& root, Config* config) {
  AuthConfig& auth = config->auth;
  if (auth.allow_unauthenticated) {
    bool defined = std::any_of(config->teams.begin(), config->teams.end(),
                               [&](const Team& t) { return t.name == auth.anonymous_team; });
    if (!defined) config->teams.push_back(Team{auth.anonymous_team, {}});
  }
  // The one validation of the policies against the rest, as a reload runs it (auth.h).
  auto teams = bindPolicies(*config, config->teams, *config->policies, config->hasLedger());
  if (!teams.ok()) return root.errorAt("policies", teams.status().message());
  config->teams = std::move(teams).value();
  return checkModels(root.section("models"), *config);
}

api::Status parseDocument(const YamlReader& root, const ConfigFileReader& read_file,
                          Config* config) {
  if (!root.isNull() && !root.isMap()) {
    return root.error("expected a map of sections (server, auth, ...) at the top level, got " +
                      root.describe());
  }
  std::vector<std::string_view> keys;
  for (const Section& s : kSections) keys.push_back(s.key);
  keys.insert(keys.end(), {"pricing", "policies", "ledger", "quality", "metrics"});
  CONFIG_TRY(root.checkNoUnknownKeys(keys));
  for (const Section& s : kSections) CONFIG_TRY(s.parse(root.section(s.key), config));
  CONFIG_TRY(parseAdminKeys(root.section("auth"), config));
  CONFIG_TRY(parseMetrics(root.section("metrics"), config));
  CONFIG_TRY(checkTls(root.section("server"), read_file, config));
  CONFIG_TRY(parsePricing(root, read_file, config));
  CONFIG_TRY(parsePolicies(root, read_file, config));
  CONFIG_TRY(parseLedger(root.section("ledger"), config));
  CONFIG_TRY(parseQuality(root.section("quality"), config));
  config->read_file = read_file;
  return finish(root, config);
}

#undef CONFIG_TRY

api::StatusOr<Config> parseInto(std::string_view yaml_text, std::string_view source_name,
                                const ConfigFileReader& read_file) {
  try {
    auto root = policies::YamlReader::parse(yaml_text, source_name);
    if (!root.ok()) return root.status();
    Config config;
    ConfigFileReader reader = read_file ? read_file : [](const std::string& path) {
      return policies::readTextFile(path);
    };
    if (api::Status st = parseDocument(*root, reader, &config); !st.ok()) return st;
    return config;
  } catch (const std::exception& e) {
    // The reader returns statuses; this only stops an unexpected exception (e.g. bad_alloc)
    // from escaping the parser.
    return api::Status(api::ErrorCode::kConfig,
                       std::string(source_name) + ": cannot parse: " + e.what());
  }
}

}  // namespace

const ModelRoute* Config::findModel(std::string_view name) const {
  for (const ModelRoute& m : models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool Config::isEmbeddingModel(std::string_view name) const {
  const ModelRoute* m = findModel(name);
  if (m == nullptr) return false;
  auto p = providers.find(m->provider);
  return p != providers.end() && p->second.type == "local" && p->second.local.kind == "embedding";
}

api::StatusOr<std::shared_ptr<const Config>> parseConfig(std::string_view yaml_text,
                                                         std::string_view source_name,
                                                         ConfigFileReader read_file) {
  auto config = parseInto(yaml_text, source_name, read_file);
  if (!config.ok()) return config.status();
  return std::shared_ptr<const Config>(std::make_shared<Config>(std::move(config).value()));
}

api::StatusOr<std::shared_ptr<const Config>> loadConfigFile(const std::string& path) {
  auto text = policies::readTextFile(path);
  if (!text.ok()) return text.status();
  std::string dir;
  if (auto slash = path.rfind('/'); slash != std::string::npos) dir = path.substr(0, slash + 1);
  auto config = parseInto(*text, path, [dir](const std::string& name) {
    return policies::readTextFile(!name.empty() && name[0] == '/' ? name : dir + name);
  });

  if (!config.ok()) return config.status();
  config->source_path = path;
  return std::shared_ptr<const Config>(std::make_shared<Config>(std::move(config).value()));
}

api::StatusOr<std::shared_ptr<const Config>> engineOnlyConfig(const Config& config) {
  auto out = std::make_shared<Config>(config);
  std::erase_if(out->providers, [](const auto& entry) { return entry.second.type != "local"; });
  std::erase_if(out->models,
                [&](const ModelRoute& m) { return out->providers.count(m.provider) == 0; });
  if (out->models.empty()) {
    return api::Status(api::ErrorCode::kConfig,
                       (config.source_path.empty() ? std::string("the config")
                                                   : config.source_path) +
                           ": --engine-only needs a model served by a provider of type local "
                           "(the embedded engine); none is configured");
  }
  for (ModelRoute& m : out->models) {
    std::erase_if(m.fallbacks, [&](const std::string& f) { return !out->findModel(f); });
  }
  // The first chat model routes chat; an embedding model answers POST /v1/embeddings only.
  const ModelRoute* routed = &out->models.front();
  for (const ModelRoute& m : out->models) {
    if (out->providers.at(m.provider).local.kind != "embedding") {
      routed = &m;
      break;
    }
  }
  const std::string policy_text = "defaults:\n  allow_cloud: false\n  routing:\n"
                                  "    mode: local_only\n    local_model: " +
                                  api::Json(routed->name).dump() +
                                  "\n    cloud_models: []\n";
  auto policies = policies::PolicySet::parse(policy_text, "<engine-only policy>");
  if (!policies.ok()) return policies.status();
  out->policies = *policies;
  out->policies_file.clear();
  out->prices = std::make_shared<const policies::PriceTable>();
  out->ledger_path.clear();
  out->ledger_url.clear();
  out->quality = QualityConfig{};
  return std::shared_ptr<const Config>(std::move(out));
}

}  // namespace gateway
