#include "gateway/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace gateway {
namespace {

constexpr const char* kShippedConfig = SY_SOURCE_DIR "/configs/switchyard.yaml";

std::shared_ptr<const Config> parseOk(std::string_view text) {
  auto r = parseConfig(text, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : std::make_shared<const Config>();
}

// The error of parsing `text`; kOk when it parsed.
api::Status parseError(std::string_view text) {
  auto r = parseConfig(text, "t.yaml");
  return r.ok() ? api::Status() : r.status();
}

// A kConfig error whose message starts with `prefix` ("t.yaml:3: server.threads: ") and
// contains `needle`.
testing::AssertionResult isConfigError(const api::Status& s, std::string_view prefix,
                                       std::string_view needle = "") {
  if (s.ok()) return testing::AssertionFailure() << "parsed without error";
  if (s.code() != api::ErrorCode::kConfig) {
    return testing::AssertionFailure()
           << "code is " << api::codeName(s.code()) << ": " << s.message();
  }
  if (!s.message().starts_with(prefix)) {
    return testing::AssertionFailure()
           << "message '" << s.message() << "' does not start with '" << prefix << "'";
  }
  if (s.message().find(needle) == std::string::npos) {
    return testing::AssertionFailure()
           << "message '" << s.message() << "' lacks '" << needle << "'";
  }
  return testing::AssertionSuccess();
}

const char* const kProvider =
    "providers:\n"                               // 1
    "  openai:\n"                                // 2
    "    type: openai\n"                         // 3
    "    base_url: https://api.openai.com/v1\n"  // 4
    "models:\n"                                  // 5
    "  - name: gpt-4o-mini\n"                    // 6
    "    provider: openai\n";                    // 7

const char* const kKeyA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const char* const kKeyB = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

// ---- the shipped config ----------------------------------------------------------------------

TEST(Config, ShippedConfigParses) {
  ::unsetenv("OPENAI_API_KEY");
  auto r = loadConfigFile(kShippedConfig);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Config& c = **r;
  EXPECT_EQ(c.source_path, kShippedConfig);
  EXPECT_EQ(c.server.listen, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_TRUE(c.auth.allow_unauthenticated);
  EXPECT_EQ(c.auth.anonymous_team, "local");
  ASSERT_EQ(c.teams.size(), 1u);  // the implicit anonymous team
  EXPECT_EQ(c.teams[0].name, "local");
  EXPECT_TRUE(c.teams[0].keys.empty());
  ASSERT_EQ(c.providers.count("openai"), 1u);
  const ProviderConfig& p = c.providers.at("openai");
  EXPECT_EQ(p.name, "openai");
  EXPECT_EQ(p.type, "openai");
  EXPECT_EQ(p.base_url, "https://api.openai.com/v1");
  EXPECT_EQ(p.api_key, "");
  ASSERT_EQ(c.providers.count("local"), 1u);
  const ProviderConfig& local = c.providers.at("local");
  EXPECT_EQ(local.type, "local");
  EXPECT_EQ(local.local.model_dir, "models/tiny");  // SWITCHYARD_MODEL_DIR unset in tests
  EXPECT_EQ(local.local.backend, "auto");
  ASSERT_EQ(c.models.size(), 5u);
  EXPECT_EQ(c.models[0].name, "gemma-3-local");
  EXPECT_EQ(c.models[0].provider, "local");
  EXPECT_EQ(c.models[1].name, "gpt-4o-mini");
  EXPECT_EQ(c.models[1].provider, "openai");
  EXPECT_EQ(c.models[1].upstream_model, "gpt-4o-mini");
  EXPECT_EQ(c.models[2].name, "gpt-4o");
  EXPECT_EQ(c.models[2].upstream_model, "gpt-4o");
  EXPECT_EQ(c.providers.at("anthropic").type, "anthropic");
  EXPECT_EQ(c.providers.at("gemini").type, "gemini");
  // Every cloud model of the shipped config has a price in the shipped pricing.yaml.
  for (const ModelRoute& m : c.models) {
    if (c.providers.at(m.provider).type == "local") continue;
    EXPECT_NE(c.prices->find(m.provider, m.upstream_model), nullptr) << m.name;
  }
  const policies::Price* mini = c.prices->find("openai", "gpt-4o-mini");
  ASSERT_NE(mini, nullptr);
  EXPECT_DOUBLE_EQ(mini->input, 0.15);
  EXPECT_DOUBLE_EQ(mini->output, 0.60);
}

TEST(Config, LocalProviderNeedsAModelDirAndTakesEngineSettings) {
  auto ok = parseConfig(
      "providers:\n"
      "  gemma: {type: local, model_dir: /models/g, backend: cpu, threads: 2, max_batch: 4,\n"
      "          max_queue: 10, kv_cache_tokens: 4096, step_tokens: 64, max_context: 1024}\n"
      "models:\n"
      "  - {name: g, provider: gemma}\n",
      "t.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  const LocalEngineConfig& e = (*ok)->providers.at("gemma").local;
  EXPECT_EQ(e.model_dir, "/models/g");
  EXPECT_EQ(e.backend, "cpu");
  EXPECT_EQ(e.threads, 2);
  EXPECT_EQ(e.max_batch, 4);
  EXPECT_EQ(e.max_queue, 10);
  EXPECT_EQ(e.kv_cache_tokens, 4096);
  EXPECT_EQ(e.step_tokens, 64);
  EXPECT_EQ(e.max_context, 1024);

  auto huge_step = parseConfig(
      "providers:\n  gemma: {type: local, model_dir: m, step_tokens: 100000000}\n", "t.yaml");
  ASSERT_FALSE(huge_step.ok());
  EXPECT_NE(huge_step.status().message().find("step_tokens"), std::string::npos)
      << huge_step.status().message();

  EXPECT_EQ(e.quantize, "");  // weights as stored unless asked
  auto q8 = parseConfig(
      "providers:\n  gemma: {type: local, model_dir: m, quantize: q8_0}\n", "t.yaml");
  ASSERT_TRUE(q8.ok()) << q8.status().message();
  EXPECT_EQ((*q8)->providers.at("gemma").local.quantize, "q8_0");
  auto bad_q = parseConfig(
      "providers:\n  gemma: {type: local, model_dir: m, quantize: q5_1}\n", "t.yaml");
  ASSERT_FALSE(bad_q.ok());
  EXPECT_NE(bad_q.status().message().find("quantize"), std::string::npos)
      << bad_q.status().message();

  auto missing = parseConfig("providers:\n  gemma: {type: local}\n", "t.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(missing.status().message().find("t.yaml:2: providers.gemma"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("model_dir"), std::string::npos);

  auto bad = parseConfig("providers:\n  gemma: {type: local, model_dir: m, base_url: x}\n",
                         "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("base_url"), std::string::npos)
      << bad.status().message();
  auto batch = parseConfig("providers:\n  gemma: {type: local, model_dir: m, max_batch: 0}\n",
                           "t.yaml");
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("max_batch"), std::string::npos);
}

TEST(Config, ShippedConfigTakesTheOpenAIKeyFromTheEnvironment) {
  ::setenv("OPENAI_API_KEY", "sk-test-123", 1);
  auto r = loadConfigFile(kShippedConfig);
  ::unsetenv("OPENAI_API_KEY");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->providers.at("openai").api_key, "sk-test-123");
}

TEST(Config, ShippedConfigDefaultsMatchTheStructDefaults) {
  auto r = loadConfigFile(kShippedConfig);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ServerConfig d;
  const ServerConfig& s = (*r)->server;
  EXPECT_EQ(s.threads, d.threads);
  EXPECT_EQ(s.max_body_bytes, d.max_body_bytes);
  EXPECT_EQ(s.max_header_bytes, d.max_header_bytes);
  EXPECT_EQ(s.read_timeout_s, d.read_timeout_s);
  EXPECT_EQ(s.idle_timeout_s, d.idle_timeout_s);
  EXPECT_EQ(s.shutdown_grace_s, d.shutdown_grace_s);
  EXPECT_EQ(s.max_connections, d.max_connections);
  Timeouts t;
  const Timeouts& pt = (*r)->providers.at("openai").timeouts;
  EXPECT_EQ(pt.connect_s, t.connect_s);
  EXPECT_EQ(pt.first_byte_s, t.first_byte_s);
  EXPECT_EQ(pt.idle_s, t.idle_s);
  EXPECT_EQ(pt.total_s, t.total_s);
}

// ---- whole documents -------------------------------------------------------------------------

TEST(Config, EmptyTextYieldsDefaults) {
  for (std::string_view text : {"", "# only a comment\n", "server:\nteams:\nproviders:\n"}) {
    auto c = parseOk(text);
    EXPECT_EQ(c->server.listen, "127.0.0.1");
    EXPECT_EQ(c->server.port, 8080);
    EXPECT_EQ(c->server.threads, 2);
    EXPECT_FALSE(c->auth.allow_unauthenticated);
    EXPECT_TRUE(c->teams.empty());
    EXPECT_TRUE(c->providers.empty());
    EXPECT_TRUE(c->models.empty());
    EXPECT_EQ(c->source_path, "");
  }
}

TEST(Config, ParsesEveryField) {
  auto c = parseOk(std::string("server:\n"
                               "  listen: 0.0.0.0\n"
                               "  port: 0\n"
                               "  threads: 8\n"
                               "  max_body_bytes: 1048576\n"
                               "  max_header_bytes: 8192\n"
                               "  read_timeout_s: 2.5\n"
                               "  idle_timeout_s: 10\n"
                               "  shutdown_grace_s: 0\n"
                               "  max_connections: 100\n"
                               "auth:\n"
                               "  allow_unauthenticated: false\n"
                               "  anonymous_team: guests\n"
                               "teams:\n"
                               "  - name: research\n"
                               "    keys:\n"
                               "      - id: notebook\n"
                               "        sha256: ") +
                   kKeyA +
                   "\n"
                   "      - id: ci-bot\n"
                   "        sha256: " +
                   kKeyB +
                   "\n"
                   "  - name: ops\n"
                   "providers:\n"
                   "  openai:\n"
                   "    type: openai\n"
                   "    base_url: https://api.openai.com/v1/\n"
                   "    api_key: sk-literal\n"
                   "    headers: {OpenAI-Organization: org-123}\n"
                   "    timeouts: {connect_s: 1, first_byte_s: 2, idle_s: 3, total_s: 4}\n"
                   "    retry: {max_attempts: 5, initial_backoff_s: 0.1, max_backoff_s: 2,\n"
                   "            max_retry_after_s: 7}\n"
                   "    circuit_breaker: {failure_threshold: 3, open_s: 9, half_open_probes: 2}\n"
                   "  vllm:\n"
                   "    type: openai_compatible\n"
                   "    base_url: http://127.0.0.1:8000/v1\n"
                   "  claude:\n"
                   "    type: anthropic\n"
                   "    api_key: sk-ant\n"
                   "    anthropic_version: '2023-06-01'\n"
                   "    default_max_tokens: 1000\n"
                   "  vertex:\n"
                   "    type: gemini\n"
                   "    api_key: ya29.token\n"
                   "    vertex: {project: my-proj, location: us-central1}\n"
                   "models:\n"
                   "  - name: gpt-4o-mini\n"
                   "    provider: openai\n"
                   "    fallbacks: [sonnet, llama]\n"
                   "  - name: llama\n"
                   "    provider: vllm\n"
                   "    upstream_model: meta-llama/Llama-3.1-8B-Instruct\n"
                   "  - {name: sonnet, provider: claude, upstream_model: claude-sonnet-4-5}\n"
                   "  - {name: flash, provider: vertex, upstream_model: gemini-2.5-flash}\n"
                   "pricing:\n"
                   "  openai: {gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.6}}\n"
                   "  vllm: {meta-llama/Llama-3.1-8B-Instruct: {input: 0, output: 0}}\n"
                   "  claude: {claude-sonnet-4-5: {input: 3, cache_write: 3.75, output: 15}}\n"
                   "  vertex: {gemini-2.5-flash: {input: 0.3, output: 2.5}}\n");
  const ServerConfig& s = c->server;
  EXPECT_EQ(s.listen, "0.0.0.0");
  EXPECT_EQ(s.port, 0);
  EXPECT_EQ(s.threads, 8);
  EXPECT_EQ(s.max_body_bytes, 1048576);
  EXPECT_EQ(s.max_header_bytes, 8192);
  EXPECT_DOUBLE_EQ(s.read_timeout_s, 2.5);
  EXPECT_DOUBLE_EQ(s.idle_timeout_s, 10);
  EXPECT_DOUBLE_EQ(s.shutdown_grace_s, 0);
  EXPECT_EQ(s.max_connections, 100);
  EXPECT_FALSE(c->auth.allow_unauthenticated);
  EXPECT_EQ(c->auth.anonymous_team, "guests");
  ASSERT_EQ(c->teams.size(), 2u);  // no implicit team: unauthenticated use is off
  EXPECT_EQ(c->teams[0].name, "research");
  ASSERT_EQ(c->teams[0].keys.size(), 2u);
  EXPECT_EQ(c->teams[0].keys[0].id, "notebook");
  EXPECT_EQ(c->teams[0].keys[0].sha256, kKeyA);
  EXPECT_EQ(c->teams[0].keys[1].id, "ci-bot");
  EXPECT_EQ(c->teams[1].name, "ops");
  EXPECT_TRUE(c->teams[1].keys.empty());
  const ProviderConfig& o = c->providers.at("openai");
  EXPECT_EQ(o.base_url, "https://api.openai.com/v1");  // trailing slash removed
  EXPECT_EQ(o.api_key, "sk-literal");
  EXPECT_EQ(o.headers, (std::map<std::string, std::string>{{"OpenAI-Organization", "org-123"}}));
  EXPECT_DOUBLE_EQ(o.timeouts.connect_s, 1);
  EXPECT_DOUBLE_EQ(o.timeouts.first_byte_s, 2);
  EXPECT_DOUBLE_EQ(o.timeouts.idle_s, 3);
  EXPECT_DOUBLE_EQ(o.timeouts.total_s, 4);
  const ProviderConfig& v = c->providers.at("vllm");
  EXPECT_EQ(v.type, "openai");  // openai_compatible is the same wire format
  EXPECT_EQ(v.base_url, "http://127.0.0.1:8000/v1");
  EXPECT_EQ(v.api_key, "");
  EXPECT_EQ(v.timeouts.total_s, Timeouts().total_s);
  EXPECT_EQ(o.retry.max_attempts, 5);
  EXPECT_DOUBLE_EQ(o.retry.initial_backoff_s, 0.1);
  EXPECT_DOUBLE_EQ(o.retry.max_backoff_s, 2);
  EXPECT_DOUBLE_EQ(o.retry.max_retry_after_s, 7);
  EXPECT_EQ(o.circuit.failure_threshold, 3);
  EXPECT_DOUBLE_EQ(o.circuit.open_s, 9);
  EXPECT_EQ(o.circuit.half_open_probes, 2);
  EXPECT_EQ(v.retry.max_attempts, routers::RetryPolicy().max_attempts);
  const ProviderConfig& a = c->providers.at("claude");
  EXPECT_EQ(a.type, "anthropic");
  EXPECT_EQ(a.base_url, "https://api.anthropic.com/v1");
  EXPECT_EQ(a.api_key, "sk-ant");
  EXPECT_EQ(a.default_max_tokens, 1000);
  const ProviderConfig& g = c->providers.at("vertex");
  EXPECT_EQ(g.vertex_project, "my-proj");
  EXPECT_EQ(g.vertex_location, "us-central1");
  EXPECT_EQ(g.base_url, "");  // built from the project and location
  ASSERT_EQ(c->models.size(), 4u);
  EXPECT_EQ(c->models[0].upstream_model, "gpt-4o-mini");  // defaults to the name
  EXPECT_EQ(c->models[0].fallbacks, (std::vector<std::string>{"sonnet", "llama"}));
  EXPECT_EQ(c->models[1].upstream_model, "meta-llama/Llama-3.1-8B-Instruct");
  const policies::Price* p = c->prices->find("claude", "claude-sonnet-4-5");
  ASSERT_NE(p, nullptr);
  EXPECT_DOUBLE_EQ(p->input, 3);
  EXPECT_DOUBLE_EQ(p->cached_input, 3);  // defaults to input
  EXPECT_DOUBLE_EQ(p->cache_write, 3.75);
  EXPECT_DOUBLE_EQ(p->output, 15);
}

TEST(Config, CloudModelsNeedAPrice) {
  const std::string head =
      "providers:\n  up: {type: openai, base_url: http://x}\n  gemma: {type: local, model_dir: m}\n"
      "models:\n  - {name: g, provider: gemma}\n  - name: m1\n    provider: up\n"
      "    upstream_model: big\n";
  EXPECT_TRUE(isConfigError(parseError(head), "t.yaml:6: models[1]: no price for 'big' at provider 'up'",
                            "pricing:`, which is not set"));
  EXPECT_TRUE(isConfigError(parseError(head + "pricing:\n  up: {small: {input: 1, output: 1}}\n"),
                            "t.yaml:6: models[1]: no price for 'big'"));
  EXPECT_TRUE(isConfigError(parseError(head + "pricing:\n  up: {big: {input: 1}}\n"),
                            "t.yaml:10: pricing.up.big.output: is required"));
  EXPECT_TRUE(isConfigError(parseError(head + "pricing:\n  up: {big: {input: -1, output: 1}}\n"),
                            "t.yaml:10: pricing.up.big.input: must be >= 0"));
  EXPECT_TRUE(isConfigError(parseError(head + "pricing:\n  up: {big: {input: 1, ouput: 1}}\n"),
                            "t.yaml:10: pricing.up.big.ouput: unknown key", "did you mean 'output'?"));
  EXPECT_TRUE(isConfigError(parseError(head + "pricing: [1]\n"), "t.yaml:9: pricing: expected"));
  auto ok = parseOk(head + "pricing:\n  up: {big: {input: 1, output: 2}}\n");
  EXPECT_DOUBLE_EQ(ok->prices->find("up", "big")->output, 2);
  // A pricing file is read through the reader given to parseConfig, by the name written.
  auto from_file = parseConfig(head + "pricing: prices.yaml\n", "t.yaml",
                               [](const std::string& name) -> api::StatusOr<std::string> {
                                 if (name != "prices.yaml") return api::Status(api::ErrorCode::kIo, name);
                                 return std::string("up:\n  big: {input: 1, output: 3}\n");
                               });
  ASSERT_TRUE(from_file.ok()) << from_file.status().message();
  EXPECT_DOUBLE_EQ((*from_file)->prices->find("up", "big")->output, 3);
  auto bad_file = parseConfig(head + "pricing: prices.yaml\n", "t.yaml",
                              [](const std::string&) -> api::StatusOr<std::string> {
                                return std::string("up:\n  big: {input: x, output: 3}\n");
                              });
  ASSERT_FALSE(bad_file.ok());
  EXPECT_NE(bad_file.status().message().find("prices.yaml:2: up.big.input"), std::string::npos)
      << bad_file.status().message();
  auto missing = parseConfig(head + "pricing: prices.yaml\n", "t.yaml",
                             [](const std::string& name) -> api::StatusOr<std::string> {
                               return api::Status(api::ErrorCode::kIo, "cannot open " + name);
                             });
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("t.yaml:9: pricing: cannot read the pricing file"),
            std::string::npos)
      << missing.status().message();
}

TEST(Config, FallbacksNameOtherModels) {
  const std::string head =
      "providers:\n  up: {type: openai, base_url: http://x}\n"
      "pricing: {up: {a: {input: 1, output: 1}, b: {input: 1, output: 1}}}\n"
      "models:\n  - {name: a, provider: up}\n  - {name: b, provider: up, fallbacks: [";
  EXPECT_TRUE(isConfigError(parseError(head + "c]}\n"), "t.yaml:6: models[1].fallbacks: unknown model 'c'"));
  EXPECT_TRUE(isConfigError(parseError(head + "b]}\n"), "t.yaml:6: models[1].fallbacks: 'b' falls back to itself"));
  EXPECT_TRUE(isConfigError(parseError(head + "a, a]}\n"), "t.yaml:6: models[1].fallbacks: lists 'a' twice"));
  EXPECT_TRUE(isConfigError(parseError(head + "aa]}\n"), "t.yaml:6: models[1].fallbacks: unknown model 'aa'",
                            "did you mean 'a'?"));
  auto ok = parseOk(head + "a]}\n");
  EXPECT_EQ(ok->models[1].fallbacks, std::vector<std::string>{"a"});
}

TEST(Config, RouterScoresAreConfigurable) {
  auto c = parseOk(
      "router:\n  complexity: {reasoning: 5, bias: -2}\n  confidence: {tail_fraction: 0.2}\n");
  EXPECT_DOUBLE_EQ(c->complexity.reasoning, 5);
  EXPECT_DOUBLE_EQ(c->complexity.bias, -2);
  EXPECT_DOUBLE_EQ(c->complexity.code, routers::ComplexityWeights().code);
  EXPECT_EQ(c->confidence.tail_fraction, 0.2);
  EXPECT_TRUE(isConfigError(parseError("router:\n  complexity: {reasoningg: 5}\n"),
                            "t.yaml:2: router.complexity.reasoningg: unknown key"));
  EXPECT_TRUE(isConfigError(parseError("router:\n  confidence: {tail_fraction: 0}\n"),
                            "t.yaml:2: router.confidence.tail_fraction:"));
  EXPECT_TRUE(isConfigError(parseError("router:\n  confidence: {window: 4}\n"),
                            "t.yaml:2: router.confidence.window: no longer read"));
}

TEST(Config, RetryCircuitAndVertexSettingsAreChecked) {
  const std::string head = "providers:\n  p:\n    type: openai\n";
  EXPECT_TRUE(isConfigError(parseError(head + "    retry: {max_attempts: 0}\n"),
                            "t.yaml:4: providers.p.retry.max_attempts: must be >= 1"));
  EXPECT_TRUE(isConfigError(parseError(head + "    retry: {max_attemps: 2}\n"),
                            "t.yaml:4: providers.p.retry.max_attemps: unknown key", "did you mean 'max_attempts'?"));
  EXPECT_TRUE(isConfigError(parseError(head + "    circuit_breaker: {open_s: 0}\n"),
                            "t.yaml:4: providers.p.circuit_breaker.open_s: must be > 0"));
  EXPECT_TRUE(isConfigError(parseError(head + "    default_max_tokens: 5\n"),
                            "t.yaml:4: providers.p.default_max_tokens: unknown key"));
  EXPECT_TRUE(isConfigError(
      parseError("providers:\n  g:\n    type: gemini\n    vertex: {project: p}\n"),
      "t.yaml:4: providers.g.vertex.location: is required"));
  EXPECT_TRUE(isConfigError(parseError("providers:\n  g:\n    type: gemini\n    base_url: http://x\n"
                                       "    vertex: {project: p, location: l}\n"),
                            "t.yaml:4: providers.g.base_url: give either base_url or vertex"));
  EXPECT_TRUE(isConfigError(parseError("providers:\n  a:\n    type: anthropic\n    vertex: {}\n"),
                            "t.yaml:4: providers.a.vertex: unknown key"));
}

TEST(Config, TopLevelMustBeAMap) {
  EXPECT_TRUE(isConfigError(parseError("- server\n"), "t.yaml:1: expected a map of sections"));
  EXPECT_TRUE(isConfigError(parseError("just text\n"), "t.yaml:1: expected a map of sections"));
}

TEST(Config, InvalidYamlNamesLineAndColumn) {
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: [8080\n"), "t.yaml:", "invalid YAML"));
  EXPECT_TRUE(isConfigError(parseError("server:\n\tport: 1\n"), "t.yaml:2:", "invalid YAML"));
}

// ---- unknown keys ----------------------------------------------------------------------------

TEST(Config, UnknownKeysAreErrorsWithSuggestions) {
  EXPECT_TRUE(isConfigError(parseError("server: {}\nmodel: []\n"),
                            "t.yaml:2: model: unknown key; did you mean 'models'?"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: 1\n  thread: 4\n"),
                            "t.yaml:3: server.thread: unknown key; did you mean 'threads'?"));
  EXPECT_TRUE(isConfigError(parseError("auth:\n  allow_unauthenticate: true\n"),
                            "t.yaml:2: auth.allow_unauthenticate: unknown key",
                            "did you mean 'allow_unauthenticated'?"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: openai\n    base-url: http://x\n"),
                    "t.yaml:4: providers.p.base-url: unknown key; did you mean 'base_url'?"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: openai\n    base_url: http://x\n"
                               "    timeouts: {connect_s: 1, total: 5}\n"),
                    "t.yaml:5: providers.p.timeouts.total: unknown key; did you mean 'total_s'?"));
  EXPECT_TRUE(
      isConfigError(parseError("teams:\n  - name: a\n    budget: 5\n"),
                    "t.yaml:3: teams[0].budget: unknown key (expected one of 'name', 'keys')"));
  EXPECT_TRUE(isConfigError(parseError(std::string(kProvider) + "    upstream: x\n"),
                            "t.yaml:8: models[0].upstream: unknown key"));
}

TEST(Config, DuplicateKeysAreErrors) {
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: 1\nserver:\n  port: 2\n"),
                            "t.yaml:3: server: duplicate key (first at line 1)"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  a:\n    type: openai\n    base_url: http://x\n"
                               "  a:\n    type: openai\n    base_url: http://y\n"),
                    "t.yaml:5: providers.a: duplicate key (first at line 2)"));
}

// ---- server ----------------------------------------------------------------------------------

TEST(Config, ServerRanges) {
  EXPECT_TRUE(isConfigError(parseError("server:\n  threads: 0\n"),
                            "t.yaml:2: server.threads: must be >= 1, got 0"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  threads: 257\n"),
                            "t.yaml:2: server.threads: must be <= 256, got 257"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: 65536\n"),
                            "t.yaml:2: server.port: must be <= 65535, got 65536"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: -1\n"),
                            "t.yaml:2: server.port: must be >= 0, got -1"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  max_body_bytes: 0\n"),
                            "t.yaml:2: server.max_body_bytes: must be >= 1"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  max_header_bytes: 5000000000\n"),
                            "t.yaml:2: server.max_header_bytes: must be <= 4294967295"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  read_timeout_s: 0\n"),
                            "t.yaml:2: server.read_timeout_s: must be > 0, got 0"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  idle_timeout_s: -5\n"),
                            "t.yaml:2: server.idle_timeout_s: must be > 0, got -5"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  shutdown_grace_s: -1\n"),
                            "t.yaml:2: server.shutdown_grace_s: must be >= 0, got -1"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  read_timeout_s: 1e12\n"),
                            "t.yaml:2: server.read_timeout_s: must be <= 604800"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  max_connections: 0\n"),
                            "t.yaml:2: server.max_connections: must be >= 1, got 0"));
}

TEST(Config, ServerWrongTypes) {
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: http\n"),
                            "t.yaml:2: server.port: expected an integer, got 'http'"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  threads: 1.5\n"),
                            "t.yaml:2: server.threads: expected an integer, got '1.5'"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  port:\n"),
                            "t.yaml:2: server.port: expected an integer, got null"));
  EXPECT_TRUE(isConfigError(parseError("server:\n  listen: {a: 1}\n"),
                            "t.yaml:2: server.listen: expected a string, got a map"));
  EXPECT_TRUE(isConfigError(parseError("server: [1, 2]\n"),
                            "t.yaml:1: server: expected a map, got a list"));
  EXPECT_TRUE(
      isConfigError(parseError("server: 8080\n"), "t.yaml:1: server: expected a map, got '8080'"));
}

TEST(Config, ListenMustBeAnIpAddress) {
  EXPECT_TRUE(isConfigError(parseError("server:\n  listen: localhost\n"),
                            "t.yaml:2: server.listen: must be an IPv4 or IPv6 address"));
  EXPECT_EQ(parseOk("server:\n  listen: '::1'\n")->server.listen, "::1");
}

// ---- auth and teams --------------------------------------------------------------------------

TEST(Config, BooleansAreYaml12Only) {
  EXPECT_TRUE(isConfigError(
      parseError("auth:\n  allow_unauthenticated: yes\n"),
      "t.yaml:2: auth.allow_unauthenticated: expected true or false, got 'yes'", "YAML 1.1"));
}

TEST(Config, AnonymousTeamIsCreatedWhenUndefined) {
  auto c = parseOk("auth:\n  allow_unauthenticated: true\n  anonymous_team: guests\n");
  ASSERT_EQ(c->teams.size(), 1u);
  EXPECT_EQ(c->teams[0].name, "guests");
  EXPECT_TRUE(c->teams[0].keys.empty());

  auto defined = parseOk(std::string("auth: {allow_unauthenticated: true, anonymous_team: ops}\n"
                                     "teams:\n  - name: ops\n    keys:\n      - id: k\n"
                                     "        sha256: ") +
                         kKeyA + "\n");
  ASSERT_EQ(defined->teams.size(), 1u);
  EXPECT_EQ(defined->teams[0].keys.size(), 1u);

  auto off = parseOk("auth:\n  allow_unauthenticated: false\n");
  EXPECT_TRUE(off->teams.empty());

  EXPECT_TRUE(
      isConfigError(parseError("auth:\n  allow_unauthenticated: true\n  anonymous_team: ''\n"),
                    "t.yaml:3: auth.anonymous_team: must not be empty"));
}

TEST(Config, TeamNamesAreRequiredValidAndUnique) {
  EXPECT_TRUE(
      isConfigError(parseError("teams:\n  - keys: []\n"), "t.yaml:2: teams[0].name: is required"));
  EXPECT_TRUE(isConfigError(parseError("teams:\n  - name: ''\n"),
                            "t.yaml:2: teams[0].name: must not be empty"));
  EXPECT_TRUE(isConfigError(parseError("teams:\n  - name: two words\n"),
                            "t.yaml:2: teams[0].name: must be 1 to 64 letters"));
  EXPECT_TRUE(
      isConfigError(parseError("teams:\n  - name: a\n  - name: b\n  - name: a\n"),
                    "t.yaml:4: teams[2].name: duplicate team 'a' (first defined at line 2)"));
  EXPECT_TRUE(isConfigError(parseError("teams:\n  name: a\n"),
                            "t.yaml:2: teams: expected a list, got a map"));
  EXPECT_TRUE(isConfigError(parseError("teams:\n  - research\n"),
                            "t.yaml:2: teams[0]: expected a map, got 'research'"));
}

TEST(Config, KeysAreValidatedAndUniqueAcrossTeams) {
  auto team = [](std::string_view id, std::string_view hash) {
    return "      - id: " + std::string(id) + "\n        sha256: " + std::string(hash) + "\n";
  };
  std::string upper = kKeyA;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto c = parseOk("teams:\n  - name: a\n    keys:\n" + team("k", upper));
  EXPECT_EQ(c->teams[0].keys[0].sha256, kKeyA);  // lowercased

  EXPECT_TRUE(isConfigError(parseError("teams:\n  - name: a\n    keys:\n" + team("k", "abc123")),
                            "t.yaml:5: teams[0].keys[0].sha256: must be the 64 hex digits",
                            "got 6 characters"));
  std::string not_hex(64, 'g');
  EXPECT_TRUE(isConfigError(parseError("teams:\n  - name: a\n    keys:\n" + team("k", not_hex)),
                            "t.yaml:5: teams[0].keys[0].sha256: must be the 64 hex digits"));
  EXPECT_TRUE(isConfigError(parseError("teams:\n  - name: a\n    keys:\n      - id: k\n"),
                            "t.yaml:4: teams[0].keys[0].sha256: is required"));
  EXPECT_TRUE(isConfigError(
      parseError("teams:\n  - name: a\n    keys:\n      - sha256: " + std::string(kKeyA) + "\n"),
      "t.yaml:4: teams[0].keys[0].id: is required"));
  EXPECT_TRUE(isConfigError(
      parseError("teams:\n  - name: a\n    keys:\n" + team("k", kKeyA) +
                 "  - name: b\n    keys:\n" + team("k", kKeyB)),
      "t.yaml:8: teams[1].keys[0].id: duplicate key id 'k' (first defined at line 4)"));
  EXPECT_TRUE(
      isConfigError(parseError("teams:\n  - name: a\n    keys:\n" + team("k1", kKeyA) +
                               "  - name: b\n    keys:\n" + team("k2", kKeyA)),
                    "t.yaml:9: teams[1].keys[0].sha256: the same key is already used by a/k1"));
  EXPECT_TRUE(
      isConfigError(parseError("teams:\n  - name: a\n    keys:\n      - id: k\n        sha: x\n"),
                    "t.yaml:5: teams[0].keys[0].sha: unknown key; did you mean 'sha256'?"));
}

// ---- providers -------------------------------------------------------------------------------

TEST(Config, ProviderTypeAndUrl) {
  EXPECT_TRUE(isConfigError(parseError("providers:\n  p:\n    base_url: http://x\n"),
                            "t.yaml:2: providers.p.type: is required"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: opneai\n    base_url: http://x\n"),
                    "t.yaml:3: providers.p.type: must be one of 'openai', 'openai_compatible'",
                    "did you mean 'openai'?"));
  EXPECT_TRUE(isConfigError(parseError("providers:\n  p:\n    type: openai_compatible\n"),
                            "t.yaml:2: providers.p.base_url: is required"));
  // The cloud APIs have their documented endpoints as defaults.
  auto defaults = parseOk(
      "providers:\n  o: {type: openai}\n  a: {type: anthropic}\n  g: {type: gemini}\n");
  EXPECT_EQ(defaults->providers.at("o").base_url, "https://api.openai.com/v1");
  EXPECT_EQ(defaults->providers.at("a").base_url, "https://api.anthropic.com/v1");
  EXPECT_EQ(defaults->providers.at("g").base_url,
            "https://generativelanguage.googleapis.com/v1beta");
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: openai\n    base_url: ftp://x\n"),
                    "t.yaml:4: providers.p.base_url: must start with http:// or https://"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: openai\n    base_url: api.x.com\n"),
                    "t.yaml:4: providers.p.base_url: must start with http://"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n    type: openai\n    base_url: https://\n"),
                    "t.yaml:4: providers.p.base_url: has no host"));
  EXPECT_TRUE(
      isConfigError(parseError("providers:\n  p:\n"), "t.yaml:2: providers.p: expected a map"));
  EXPECT_TRUE(isConfigError(parseError("providers:\n  - openai\n"),
                            "t.yaml:2: providers: expected a map, got a list"));
  EXPECT_TRUE(isConfigError(
      parseError("providers:\n  'my provider':\n    type: openai\n    base_url: http://x\n"),
      "t.yaml:2: providers[\"my provider\"]: provider names must be"));
  auto c = parseOk("providers:\n  p:\n    type: openai\n    base_url: http://h:1/v1//\n");
  EXPECT_EQ(c->providers.at("p").base_url, "http://h:1/v1");
}

TEST(Config, ProviderTimeoutsAndHeaders) {
  std::string head = "providers:\n  p:\n    type: openai\n    base_url: http://x\n";
  EXPECT_TRUE(isConfigError(parseError(head + "    timeouts: {connect_s: 0}\n"),
                            "t.yaml:5: providers.p.timeouts.connect_s: must be > 0, got 0"));
  EXPECT_TRUE(isConfigError(parseError(head + "    timeouts:\n      total_s: soon\n"),
                            "t.yaml:6: providers.p.timeouts.total_s: expected a finite number"));
  EXPECT_TRUE(isConfigError(parseError(head + "    headers: [a]\n"),
                            "t.yaml:5: providers.p.headers: expected a map, got a list"));
  EXPECT_TRUE(
      isConfigError(parseError(head + "    headers: {'Bad Name': x}\n"),
                    "t.yaml:5: providers.p.headers[\"Bad Name\"]: is not a valid HTTP header"));
  EXPECT_TRUE(isConfigError(parseError(head + "    headers: {X-A: \"one\\r\\nX-B: two\"}\n"),
                            "t.yaml:5: providers.p.headers.X-A: header values must not contain"));
  EXPECT_TRUE(isConfigError(parseError(head + "    headers:\n      X-Trace: a\n      x-trace: b\n"),
                            "t.yaml:", "repeats header"));
  EXPECT_TRUE(isConfigError(parseError(head + "    headers: {X-A: {nested: 1}}\n"),
                            "t.yaml:5: providers.p.headers.X-A: expected a string, got a map"));
}

// ---- models ----------------------------------------------------------------------------------

TEST(Config, ModelsReferToKnownProvidersAndAreUnique) {
  EXPECT_TRUE(isConfigError(
      parseError(std::string(kProvider) + "  - name: gpt-4o-mini\n    provider: openai\n"),
      "t.yaml:8: models[1].name: duplicate model 'gpt-4o-mini' (first defined at line 6)"));
  EXPECT_TRUE(isConfigError(
      parseError(std::string(kProvider) + "  - name: other\n    provider: opnai\n"),
      "t.yaml:9: models[1].provider: unknown provider 'opnai'; did you mean 'openai'?"));
  EXPECT_TRUE(isConfigError(parseError("models:\n  - name: m\n    provider: openai\n"),
                            "t.yaml:3: models[0].provider: unknown provider 'openai'",
                            "no providers are defined"));
  EXPECT_TRUE(isConfigError(parseError(std::string(kProvider) + "  - provider: openai\n"),
                            "t.yaml:8: models[1].name: is required"));
  EXPECT_TRUE(isConfigError(parseError(std::string(kProvider) + "  - name: x\n"),
                            "t.yaml:8: models[1].provider: is required"));
  EXPECT_TRUE(
      isConfigError(parseError(std::string(kProvider) +
                               "  - name: x\n    provider: openai\n    upstream_model: ''\n"),
                    "t.yaml:10: models[1].upstream_model: must not be empty"));
  // Sections are read in dependency order, whatever their order in the file.
  auto c = parseOk(
      "pricing: {p: {m: {input: 1, output: 1}}}\n"
      "models:\n  - name: m\n    provider: p\n"
      "providers:\n  p: {type: openai, base_url: 'http://x'}\n");
  EXPECT_EQ(c->models[0].provider, "p");
}

// ---- environment -----------------------------------------------------------------------------

TEST(Config, InterpolatesTheEnvironment) {
  ::setenv("SY_CONFIG_TEST_KEY", "sk-abc", 1);
  ::setenv("SY_CONFIG_TEST_PORT", "9191", 1);
  ::setenv("SY_CONFIG_TEST_ORG", "org-9", 1);
  ::unsetenv("SY_CONFIG_TEST_UNSET");
  auto c = parseOk(
      "server:\n"
      "  port: ${SY_CONFIG_TEST_PORT}\n"
      "  threads: ${SY_CONFIG_TEST_UNSET:-3}\n"
      "providers:\n"
      "  p:\n"
      "    type: openai\n"
      "    base_url: ${SY_CONFIG_TEST_UNSET:-http://127.0.0.1:8000/v1}\n"
      "    api_key: ${SY_CONFIG_TEST_KEY}\n"
      "    headers: {OpenAI-Organization: '${SY_CONFIG_TEST_ORG}', X-Literal: '$${NOT_A_VAR}'}\n");
  EXPECT_EQ(c->server.port, 9191);
  EXPECT_EQ(c->server.threads, 3);
  const ProviderConfig& p = c->providers.at("p");
  EXPECT_EQ(p.base_url, "http://127.0.0.1:8000/v1");
  EXPECT_EQ(p.api_key, "sk-abc");
  EXPECT_EQ(p.headers.at("OpenAI-Organization"), "org-9");
  EXPECT_EQ(p.headers.at("X-Literal"), "${NOT_A_VAR}");

  EXPECT_TRUE(isConfigError(
      parseError("providers:\n  p:\n    type: openai\n    base_url: http://x\n"
                 "    api_key: ${SY_CONFIG_TEST_UNSET}\n"),
      "t.yaml:5: providers.p.api_key: environment variable SY_CONFIG_TEST_UNSET is not set"));
  ::setenv("SY_CONFIG_TEST_PORT", "eighty", 1);
  EXPECT_TRUE(isConfigError(parseError("server:\n  port: ${SY_CONFIG_TEST_PORT}\n"),
                            "t.yaml:2: server.port: expected an integer, got 'eighty'"));
  ::unsetenv("SY_CONFIG_TEST_KEY");
  ::unsetenv("SY_CONFIG_TEST_PORT");
  ::unsetenv("SY_CONFIG_TEST_ORG");
}

// ---- files -----------------------------------------------------------------------------------

class ConfigFile : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("sy_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(ConfigFile, MissingFileIsAnIoError) {
  std::string path = (dir_ / "nope.yaml").string();
  auto r = loadConfigFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();

  auto d = loadConfigFile(dir_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), api::ErrorCode::kIo);
}

TEST_F(ConfigFile, ErrorsNameThePath) {
  std::string path = write("bad.yaml", "server:\n  port: 8080\n  threads: 0\n");
  auto r = loadConfigFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(isConfigError(r.status(), path + ":3: server.threads: must be >= 1, got 0"));

  std::string syntax = write("syntax.yaml", "server:\n  port: [1\n");
  auto s = loadConfigFile(syntax);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(isConfigError(s.status(), syntax + ":", "invalid YAML"));
}

TEST_F(ConfigFile, RecordsTheSourcePath) {
  std::string path = write("ok.yaml", "server:\n  port: 9000\n");
  auto r = loadConfigFile(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->source_path, path);
  EXPECT_EQ((*r)->server.port, 9000);
}

}  // namespace
}  // namespace gateway
