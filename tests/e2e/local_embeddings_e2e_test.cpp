// End-to-end: POST /v1/embeddings on a local EmbeddingGemma model (a `type: local` provider of
// `kind: embedding`) through the real `switchyard` binary, on a random-weight checkpoint from
// `switchyard-cli make-test-model --preset embeddinggemma-tiny`: several inputs in one call,
// Matryoshka `dimensions` (and the 400 above the model's width), base64 vectors, the model's
// own token counts in usage, a local ledger row with the engine time and no cost, and the chat
// endpoint refusing the model.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "api/embeddings.h"
#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* kKey = "sk-local-embeddings-e2e";

class LocalEmbeddingsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!haveGemmaTokenizer()) return;
    dir_ = new TempDir();
    const std::string model = dir_->path() + "/embeddinggemma";
    RunResult r = runCommand(cliBin(),
                             {"make-test-model", "--preset", "embeddinggemma-tiny",
                              "--tokenizer-dir", gemmaTokenizerDir(), "--out", model},
                             {}, std::nullopt, 120000ms);
    if (r.timed_out || !r.status.exited || r.status.code != 0) {
      error_ = "make-test-model failed: " + r.err;
      return;
    }
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "teams:\n"
      << "  - name: research\n"
      << "    keys: [{id: notebook, sha256: " << hashKey(kKey) << "}]\n"
      << "providers:\n"
      << "  emb: {type: local, kind: embedding, model_dir: \"" << model
      << "\", threads: 2, max_queue: 8}\n"
      << "models:\n"
      << "  - {name: gemma-embed, provider: emb}\n"
      << "ledger: {path: \"" << dir_->path() << "/ledger.db\"}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 60000ms;
    server_ = SwitchyardServer::start(y.str(), opts, &error_).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!haveGemmaTokenizer()) GTEST_SKIP() << kNoTokenizer;
    ASSERT_TRUE(error_.empty()) << error_;
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "--- stderr ---\n" << server_->stderrText() << "\n";
  }

  static HttpResponse embed(const Json& body) {
    return httpPost(server_->url() + "/v1/embeddings", body.dump(),
                    {{"Authorization", std::string("Bearer ") + kKey}}, 30000ms);
  }
  static std::vector<float> vectorOf(const Json& data) {
    std::vector<float> v;
    for (const Json& x : data["embedding"]) v.push_back(x.get<float>());
    return v;
  }
  static double norm(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return std::sqrt(s);
  }

  static inline TempDir* dir_ = nullptr;
  static inline SwitchyardServer* server_ = nullptr;
  static inline std::string error_;
};

TEST_F(LocalEmbeddingsE2E, TwoInputsInOneCallWithUsageAndALocalLedgerRow) {
  HttpResponse r = embed({{"model", "gemma-embed"}, {"input", {"hello world", "a second text"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "gemma-embed");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][1]["index"], 1);
  const std::vector<float> a = vectorOf(j["data"][0]), b = vectorOf(j["data"][1]);
  ASSERT_EQ(a.size(), 64u);
  ASSERT_EQ(b.size(), 64u);
  EXPECT_NEAR(norm(a), 1.0, 1e-5);
  EXPECT_NEAR(norm(b), 1.0, 1e-5);
  EXPECT_NE(a, b);
  EXPECT_EQ(r.header("x-switchyard-cost-usd"), "0.00000000");
  EXPECT_EQ(r.header("x-switchyard-route").rfind("emb/", 0), 0u) << r.header("x-switchyard-route");

  // Each input alone: the same vector (inputs never see each other), and usage adds up to the
  // model's own counts, <bos> and <eos> included.
  HttpResponse one = embed({{"model", "gemma-embed"}, {"input", "hello world"}});
  ASSERT_EQ(one.status, 200) << one.body;
  const std::vector<float> alone = vectorOf(one.json()["data"][0]);
  ASSERT_EQ(alone.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(alone[i], a[i], 1e-6) << i;
  HttpResponse two = embed({{"model", "gemma-embed"}, {"input", "a second text"}});
  ASSERT_EQ(two.status, 200);
  const int n1 = one.json()["usage"]["prompt_tokens"], n2 = two.json()["usage"]["prompt_tokens"];
  EXPECT_GE(n1, 4);  // <bos> hello world <eos>
  EXPECT_EQ(j["usage"]["prompt_tokens"], n1 + n2);
  EXPECT_EQ(j["usage"]["total_tokens"], n1 + n2);

  const std::string ledger = dir_->path() + "/ledger.db";
  std::string seen;
  EXPECT_TRUE(waitUntil(
      [&] {
        sqlite3* db = nullptr;
        if (sqlite3_open_v2(ledger.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
          sqlite3_close(db);
          return false;
        }
        sqlite3_stmt* q = nullptr;
        bool found = false;
        seen.clear();
        if (sqlite3_prepare_v2(db,
                               "SELECT kind, model, prompt_tokens, cost_usd, compute_ms, status "
                               "FROM requests WHERE team = 'research'",
                               -1, &q, nullptr) == SQLITE_OK) {
          while (sqlite3_step(q) == SQLITE_ROW) {
            const std::string kind = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
            const std::string model = reinterpret_cast<const char*>(sqlite3_column_text(q, 1));
            const int64_t tokens = sqlite3_column_int64(q, 2);
            const double cost = sqlite3_column_double(q, 3), compute = sqlite3_column_double(q, 4);
            seen += kind + "/" + model + "/" + std::to_string(tokens) + "/" +
                    std::to_string(cost) + "/" + std::to_string(compute) + " ";
            found = found || (kind == "local" && model == "gemma-embed" && tokens == n1 + n2 &&
                              cost == 0 && compute > 0 && sqlite3_column_int(q, 5) == 200);
          }
        }
        sqlite3_finalize(q);
        sqlite3_close(db);
        return found;
      },
      5000ms))
      << seen;
}

TEST_F(LocalEmbeddingsE2E, DimensionsTruncateAndRenormalise) {
  HttpResponse full = embed({{"model", "gemma-embed"}, {"input", "matryoshka"}});
  ASSERT_EQ(full.status, 200) << full.body;
  const std::vector<float> f = vectorOf(full.json()["data"][0]);
  HttpResponse cut = embed({{"model", "gemma-embed"}, {"input", "matryoshka"}, {"dimensions", 16}});
  ASSERT_EQ(cut.status, 200) << cut.body;
  const std::vector<float> c = vectorOf(cut.json()["data"][0]);
  ASSERT_EQ(c.size(), 16u);
  EXPECT_NEAR(norm(c), 1.0, 1e-5);
  const double head = norm(std::vector<float>(f.begin(), f.begin() + 16));
  for (size_t i = 0; i < 16; ++i) EXPECT_NEAR(c[i], f[i] / head, 1e-5) << i;

  HttpResponse big = embed({{"model", "gemma-embed"}, {"input", "x"}, {"dimensions", 65}});
  EXPECT_EQ(big.status, 400) << big.body;
  EXPECT_EQ(big.json()["error"]["param"], "dimensions") << big.body;
  EXPECT_NE(big.json()["error"]["message"].get<std::string>().find("64"), std::string::npos)
      << big.body;
}

TEST_F(LocalEmbeddingsE2E, Base64AndTokenIds) {
  HttpResponse f = embed({{"model", "gemma-embed"}, {"input", {2, 651, 1}}});
  ASSERT_EQ(f.status, 200) << f.body;
  EXPECT_EQ(f.json()["usage"]["prompt_tokens"], 3);
  HttpResponse b = embed({{"model", "gemma-embed"},
                          {"input", {2, 651, 1}},
                          {"encoding_format", "base64"},
                          {"dimensions", 32}});
  ASSERT_EQ(b.status, 200) << b.body;
  ASSERT_TRUE(b.json()["data"][0]["embedding"].is_string()) << b.body;
  auto v = api::floatsFromBase64(b.json()["data"][0]["embedding"].get<std::string>());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->size(), 32u);
  EXPECT_NEAR(norm(*v), 1.0, 1e-5);
  const std::vector<float> full = vectorOf(f.json()["data"][0]);
  const double head = norm(std::vector<float>(full.begin(), full.begin() + 32));
  for (size_t i = 0; i < 32; ++i) EXPECT_NEAR((*v)[i], full[i] / head, 1e-5) << i;
  // An id beyond the vocabulary is the client's error, naming the input.
  HttpResponse bad = embed({{"model", "gemma-embed"}, {"input", {2, 300000, 1}}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(bad.json()["error"]["param"], "input[0]") << bad.body;
}

TEST_F(LocalEmbeddingsE2E, ChatIsRefused) {
  HttpResponse r = httpPost(server_->url() + "/v1/chat/completions",
                            Json{{"model", "gemma-embed"},
                                 {"messages", {{{"role", "user"}, {"content", "hi"}}}}}
                                .dump(),
                            {{"Authorization", std::string("Bearer ") + kKey}}, 30000ms);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("embeddings only"), std::string::npos) << r.body;
}

// A chat model may not fall back to an embedding model, nor an embedding model have fallbacks;
// an unknown `kind` is refused. check-config reads the config without loading any model.
TEST(LocalEmbeddingsConfig, KindAndFallbacksAreChecked) {
  TempDir dir;
  auto check = [&](const std::string& name, const std::string& yaml) {
    RunResult r = runCommand(switchyardBin(), {"check-config", "--config", dir.write(name, yaml)},
                             {}, std::nullopt, 5000ms);
    return std::make_pair(r.status.exited ? r.status.code : -1, r.err + r.out);
  };
  const std::string providers =
      "providers:\n  emb: {type: local, kind: embedding, model_dir: m1}\n"
      "  chat: {type: local, model_dir: m2}\n";
  auto [code, text] = check("fallback.yaml", providers +
                                                 "models:\n  - {name: e, provider: emb}\n"
                                                 "  - {name: c, provider: chat, fallbacks: [e]}\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(text.find("'e' is a local embedding model"), std::string::npos) << text;
  std::tie(code, text) = check("own.yaml", providers +
                                               "models:\n  - {name: c, provider: chat}\n"
                                               "  - {name: e, provider: emb, fallbacks: [c]}\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(text.find("fallbacks"), std::string::npos) << text;
  std::tie(code, text) =
      check("kind.yaml", "providers:\n  emb: {type: local, kind: encoder, model_dir: m1}\n"
                         "models:\n  - {name: e, provider: emb}\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(text.find("kind"), std::string::npos) << text;
  // Routing and the judge need chat models: an embedding model there is refused at load.
  const std::string both = providers + "models:\n  - {name: e, provider: emb}\n"
                                       "  - {name: c, provider: chat}\n";
  const std::string routed = dir.write(
      "routed-policies.yaml", "defaults:\n  routing: {mode: local_only, local_model: e}\n");
  std::tie(code, text) = check("routed.yaml", both + "policies: \"" + routed + "\"\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(text.find("local_model"), std::string::npos) << text;
  EXPECT_NE(text.find("'e' is a local embedding model"), std::string::npos) << text;
  std::tie(code, text) =
      check("judge.yaml", both + "quality: {path: q.db, judge: {model: e}}\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(text.find("'e' is a local embedding model"), std::string::npos) << text;
}

}  // namespace
}  // namespace sytest
