// The gateway's typed configuration (configs/switchyard.yaml), parsed and validated once.
//
// parseConfig() turns YAML text into a Config or a Status naming the offending key and its
// line; the server never starts on an invalid file. After parsing the Config is immutable
// and shared as std::shared_ptr<const Config>.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "policies/policy_set.h"
#include "policies/pricing.h"
#include "routers/circuit_breaker.h"
#include "routers/complexity.h"
#include "routers/confidence.h"
#include "routers/fallback.h"

namespace gateway {

// Reads a file that the config names (`pricing: pricing.yaml`), given as written.
using ConfigFileReader = std::function<api::StatusOr<std::string>(const std::string& path)>;

// `server.tls`: serve HTTPS on the main listener. Files are read through `read_file` (relative
// to the config's directory) at start and again on SIGHUP.
struct TlsConfig {
  bool enabled = false;        // true when `server.tls` is present
  std::string cert_file;       // PEM certificate chain, the server's certificate first
  std::string key_file;        // PEM private key of that certificate
  std::string client_ca_file;  // PEM CA bundle; when set, clients must present a cert it signed
  std::string min_version = "1.2";  // "1.2" or "1.3"; older protocols are never offered
  ConfigFileReader read_file;       // how the files above are read
};

struct ServerConfig {
  std::string listen = "127.0.0.1";  // address to bind
  int port = 8080;                   // 0 picks a free port
  int threads = 2;                   // Asio I/O threads, >= 1
  int64_t max_body_bytes = 4 << 20;  // request bodies above this get 413
  int64_t max_header_bytes = 16 << 10;  // request headers above this get 431/413
  double read_timeout_s = 30;        // to receive one whole request (headers + body)
  double idle_timeout_s = 75;        // keep-alive connection idle before it is closed
  double shutdown_grace_s = 30;      // how long SIGTERM waits for in-flight streams
  int max_connections = 10000;       // further connections are closed at once (and counted)
  double request_timeout_s = 900;    // one chat request, all retries and fallbacks included
  // Bodies up to this size are handled on the I/O thread; larger ones on the worker pool, so
  // that parsing a big JSON document never stalls the other connections of that thread.
  int64_t inline_body_bytes = 64 << 10;
  int worker_threads = 2;    // the pool for large bodies
  int worker_queue = 64;     // large-body requests waiting for a worker; more get 503
  // Bytes of streamed answers buffered for slow clients, all connections together; above
  // it the connection furthest behind is dropped (and counted).
  int64_t max_buffered_bytes = int64_t{256} << 20;
  TlsConfig tls;
};

// `metrics:`: who may read /metrics and where it is served.
struct MetricsConfig {
  bool require_admin_key = false;  // GET /metrics needs an admin key (auth.admin_keys)
  // When `port` is set, /metrics is served only on this separate listener (not the main one).
  std::string listen = "127.0.0.1";
  int port = -1;  // -1: served on the main listener; 0 picks a free port
};

struct ApiKey {
  std::string id;      // a short public name for logs and ledgers ("ci-bot"); never the key
  std::string sha256;  // lowercase hex SHA-256 of the key (switchyard-cli hash-key)
};

struct Team {
  std::string name;
  std::vector<ApiKey> keys;
};

struct AuthConfig {
  // When true, requests without an Authorization header are served as `anonymous_team`.
  // A request that presents an unknown key is still rejected with 401.
  bool allow_unauthenticated = false;
  std::string anonymous_team = "local";
  // Keys of operators: the admin endpoints (/admin/v1/...) accept only these.
  std::vector<ApiKey> admin_keys;
};

struct Timeouts {
  double connect_s = 5;       // TCP + TLS handshake
  double first_byte_s = 60;   // request sent -> first response byte
  double idle_s = 30;         // longest gap between two received chunks
  double total_s = 600;       // whole call
};

// The embedded engine behind a provider of type `local`.
struct LocalEngineConfig {
  std::string model_dir;        // a Hugging Face Gemma 3 checkpoint directory (relative: to cwd)
  std::string backend = "auto"; // auto | cpu (auto picks CUDA where a GPU and the build allow)
  int threads = 0;              // CPU backend threads; 0 = every core
  int max_batch = 8;            // requests decoded together
  int max_queue = 64;           // requests waiting beyond the batch; more get 503
  int64_t kv_cache_tokens = 0;  // KV positions for all requests together; 0 = max_batch x 8192
  int step_tokens = 0;          // tokens one forward pass takes (decodes + prefill chunks); 0 = 128
  int max_context = 8192;       // tokens per request (prompt + answer); 0 = the model's own limit
  std::string quantize;         // "" = as stored; q8_0|q5_0|q4_0|q4_k|q6_k: quantized on load
  // "chat" (a Gemma chat model) or "embedding": an EmbeddingGemma checkpoint
  // (engine/models/embedding_gemma.h) whose models answer POST /v1/embeddings only; of the
  // keys above it reads model_dir, threads and max_queue.
  std::string kind = "chat";
};

struct ProviderConfig {
  std::string name;  // key under `providers:`
  // "openai" (OpenAI or any OpenAI-compatible server), "anthropic", "gemini" or "local".
  std::string type;
  std::string base_url;  // e.g. https://api.openai.com/v1 (no trailing slash)
  std::string api_key;   // after ${ENV} interpolation; "" sends none
  std::map<std::string, std::string> headers;  // extra request headers
  Timeouts timeouts;
  routers::RetryPolicy retry;              // cloud providers; local ones never retry
  routers::CircuitBreakerConfig circuit;   // cloud providers
  std::string anthropic_version = "2023-06-01";  // anthropic: the anthropic-version header
  int64_t default_max_tokens = 4096;             // anthropic: when the request sets none
  // openai: the server speaks OpenAI's Responses API, so POST /v1/responses is passed through
  // to it (routers/openai_wire.h); default true for OpenAI's own base_url.
  bool responses_api = false;
  std::string vertex_project;   // gemini on Vertex AI (api_key is then an access token)
  std::string vertex_location;  // gemini on Vertex AI, e.g. us-central1 or global
  LocalEngineConfig local;      // type "local" only
  // "cloud" (the default) or "local": an OpenAI-compatible server (vLLM, SGLang, llama.cpp,
  // Ollama, `switchyard serve --engine-only`) whose answers count as local, like the embedded
  // engine's: data rules let teams without the cloud use it, no token-priced spend is
  // reserved, its rows are kind "local" with the call's wall time as compute_ms, and the
  // cascade reads its confidence from the logprobs it asks that server for.
  std::string tier = "cloud";
  // tier local: USD per GPU hour of that server, pricing its compute_ms in reports and
  // quality records; unset: quality.gpu_hour_usd.
  std::optional<double> gpu_hour_usd;
  // tier local: calls this gateway keeps in flight there at most; more spill to the model's
  // next target (its fallbacks) at once. 0: no limit.
  int max_in_flight = 0;
  // tier local: the server's Prometheus endpoint, read every second for vLLM's
  // vllm:num_requests_waiting; while it reports `max_waiting` or more, calls spill to the
  // model's fallbacks at once. "" / 0: not read / no limit.
  std::string metrics_url;
  int max_waiting = 0;

  // Answers count as local: the embedded engine, or a server marked `tier: local`.
  bool isLocal() const { return type == "local" || tier == "local"; }
  // A server marked `tier: local` (reached over HTTP, not the embedded engine).
  bool isRemoteLocal() const { return type != "local" && tier == "local"; }
};

struct ModelRoute {
  std::string name;            // public model name clients send
  std::string provider;        // a key of `providers`
  std::string upstream_model;  // the provider's model name (defaults to `name`)
  // Other models (names of `models:` entries) tried in order when this one fails with a
  // retryable error before anything reached the client.
  std::vector<std::string> fallbacks;
  int line = 0;  // where the entry starts in the file, for messages
};

// `quality:`: where quality records go, how long they stay, the LLM judge, and the price that
// costs local answers.
struct QualityJudgeConfig {
  std::string model;              // an entry of `models:`; "" = no judge
  double sample_rate = 0.1;       // share of stored records judged, [0, 1]
  double daily_budget_usd = 1.0;  // judge spend per UTC day (kept in the ledger as team `judge`)
  std::string rubric;             // "" = the built-in rubric
  int max_tokens = 512;
  double timeout_s = 60;
};

struct QualityConfig {
  // The SQLite store of quality records (relative to the working directory; its directory is
  // created). "" records nothing.
  std::string path;
  // Or a PostgreSQL store that many gateway replicas share (`quality: {url:
  // "postgresql://..."}`, quality/pg_store.h); never both.
  std::string url;
  int64_t queue_size = 1024;      // records waiting for the writer; more are dropped and counted
  int64_t max_age_days = 90;      // retention; 0 keeps records forever
  int64_t max_rows = 1000000;     // 0 = unbounded
  int64_t max_mb = 1024;          // 0 = unbounded
  double gpu_hour_usd = 0;        // price of one accelerator hour: costs local answers
  QualityJudgeConfig judge;
  bool enabled() const { return !path.empty() || !url.empty(); }
  // Where QualityStore::open finds the store: the URL, else the path.
  const std::string& location() const { return url.empty() ? path : url; }
};

struct Config {
  ServerConfig server;
  MetricsConfig metrics;
  AuthConfig auth;
  std::vector<Team> teams;
  std::map<std::string, ProviderConfig> providers;
  std::vector<ModelRoute> models;
  // `router:`: the complexity score's weights and the confidence monitor's settings.
  routers::ComplexityWeights complexity;
  routers::ConfidenceConfig confidence;
  // Prices of cloud tokens (`pricing:`, a file or an inline map); every model routed to a
  // cloud provider has one.
  std::shared_ptr<const policies::PriceTable> prices;
  // Per-team policies (`policies:`, a file): keys, allowed models, budgets, rate limits and
  // routing. Never null: without the key, every team gets the built-in defaults.
  std::shared_ptr<const policies::PolicySet> policies;
  std::string policies_file;  // `policies:` as written ("" when absent)
  // The SQLite ledger of every request and the budgets' spend (`ledger: {path: ...}`,
  // relative to the working directory, like model_dir; missing directories are created); ""
  // keeps no ledger (budgets cannot be enforced and are refused at start).
  std::string ledger_path;
  // Or a PostgreSQL ledger that many gateway replicas share (`ledger: {url:
  // "postgresql://..."}`, policies/pg_ledger.h); never both. `replica` names this replica in
  // the database (default: made from the host name and process id; a stable one lets a restart
  // bill its own calls left in flight at once), `pool_size` and `statement_timeout_ms` tune its
  // connections.
  std::string ledger_url;
  std::string ledger_replica;
  int64_t ledger_pool_size = 8;
  int64_t ledger_statement_timeout_ms = 5000;
  bool hasLedger() const { return !ledger_path.empty() || !ledger_url.empty(); }
  QualityConfig quality;
  ConfigFileReader read_file;  // how files it names were read (for reloads)
  std::string source_path;  // the file it was read from ("" for text)

  const ModelRoute* findModel(std::string_view name) const;
  // Whether `name` is a models: entry served by a local embedding model (`kind: embedding`),
  // which answers POST /v1/embeddings only and can never chat.
  bool isEmbeddingModel(std::string_view name) const;
};


// Parses YAML text. `source_name` is used in error messages ("switchyard.yaml:12: ...").
// `${VAR}` and `${VAR:-default}` in scalar values are replaced from the environment; an unset
// variable without default is an error naming it. Unknown keys, wrong types, out-of-range
// values, duplicate names, a model naming an unknown provider, or a key hash that is not 64
// hex digits are errors of code kConfig whose message names the key path and line, e.g.
// "switchyard.yaml:14: server.threads: must be >= 1, got 0".
// Files the config names are read with `read_file` (default: relative to the working
// directory).
api::StatusOr<std::shared_ptr<const Config>> parseConfig(std::string_view yaml_text,
                                                         std::string_view source_name,
                                                         ConfigFileReader read_file = {});

// Reads and parses a file; a missing or unreadable file is kIo naming the path. Files it
// names are read relative to its directory.
api::StatusOr<std::shared_ptr<const Config>> loadConfigFile(const std::string& path);

// `switchyard serve --engine-only` (a GPU box that other gateways reach as a `tier: local`
// provider): `config` cut down to its embedded engines. Kept: server, metrics, auth and teams
// (their keys), the providers of type local and the models they serve (fallbacks among them
// only). Dropped: every other provider and model, pricing, the ledger, the quality store and
// the team policies, replaced by one policy that never reaches a cloud (allow_cloud false,
// routing mode local_only, the first local model routed, no limits). kConfig when the config
// has no model served by a provider of type local.
api::StatusOr<std::shared_ptr<const Config>> engineOnlyConfig(const Config& config);

}  // namespace gateway
