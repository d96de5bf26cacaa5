#include "quality/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <pqxx/pqxx>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "policies/ledger.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"

namespace {

namespace fs = std::filesystem;
using quality::Answer;
using quality::Feature;
using quality::Feedback;
using quality::JudgeResult;
using quality::JudgeStatus;
using quality::QualityRecord;
using quality::QualityStore;
using quality::RecordFilter;
using quality::RecordKind;
using quality::Retention;
using quality::TextMetrics;

constexpr int64_t kT0 = 1795446245000;  // 2026-11-23T15:04:05Z
constexpr int64_t kDayMs = 86'400'000;

using sytest::TempDir;

// Runs `sql` on a plain SQLite connection, to change a file behind the store's back.
void rawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << sql << ": " << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::unique_ptr<QualityStore> mustOpen(const std::string& path, bool read_only = false) {
  auto s = QualityStore::open(path, read_only);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<QualityRecord> mustQuery(const QualityStore& store, const RecordFilter& f = {}) {
  auto r = store.query(f);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : std::vector<QualityRecord>{};
}

// Every field set, none to its default; some awkward values on purpose.
QualityRecord fullRecord() {
  QualityRecord r;
  r.id = 999;  // ignored by insert
  r.request_id = "req-full";
  r.unix_ms = kT0;
  r.team = "acme";
  r.kind = RecordKind::kShadow;
  r.model = "auto";
  r.reason = "shadow";
  r.prompt = api::Json::parse(R"([
    {"role": "system", "content": "Be brief. \u00e9\u4e2d"},
    {"role": "user", "content": [{"type": "text", "text": "2+2?"}], "name": "bob"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
     "function": {"name": "add", "arguments": "{\"a\":2,\"b\":2}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "4", "x": [1, -2, 3.25, 1e300, true]}
  ])");
  r.redacted = false;
  r.local = Answer{"local/gemma-3-4b",
                   std::string("four\0nul \xff\xfe bytes", 17),
                   false,
                   "length",
                   31,
                   7,
                   0.1 + 0.2,
                   12.345678901234567};
  r.cloud = Answer{"openai/gpt-4o", "4", true, "stop", 29, 1, 1e-300, -0.0};
  r.complexity = 0.0;  // present, and zero
  r.complexity_features = {
      {"length", 0.25}, {"code", 1.0 / 3.0}, {"tiny", 5e-324}, {"negative_zero", -0.0}};
  r.confidence = 0.8125;
  r.confidence_features = {{"mean_logprob", -0.7000000000000001},
                           {"min_window_logprob", -std::numeric_limits<double>::infinity()},
                           {"mean_entropy", std::nan("")}};
  TextMetrics m;
  m.exact_match = true;
  m.token_f1 = 0.123456789;
  m.rouge_l = std::nan("");  // no sense, but it must come back
  m.length_ratio = 7.5;
  m.json_both_parse = false;
  m.json_agree = true;
  r.metrics = m;
  JudgeResult j;
  j.status = JudgeStatus::kUnparsed;
  j.model = "openai/gpt-4o-mini";
  j.delta = -0.5;
  j.agreement = true;
  j.verdict_ab = "B";
  j.verdict_ba = "tie";
  j.detail = std::string("cut mid-character: \xe4\xb8", 21);
  j.cost_usd = 0.000123;
  j.unix_ms = kT0 + 5;
  r.judge = j;
  return r;
}

// Every optional absent, the prompt redacted.
QualityRecord bareRecord() {
  QualityRecord r;
  r.request_id = "req-bare";
  r.unix_ms = kT0 + 1;
  r.team = "acme";
  r.kind = RecordKind::kEscalation;
  r.prompt = nullptr;
  r.redacted = true;
  return r;
}

QualityRecord rec(const std::string& team, const std::string& request_id, int64_t unix_ms,
                  RecordKind kind = RecordKind::kEscalation) {
  QualityRecord r;
  r.request_id = request_id;
  r.team = team;
  r.unix_ms = unix_ms;
  r.kind = kind;
  r.prompt = api::Json::array({{{"role", "user"}, {"content", "hi " + request_id}}});
  r.local.text = "local " + request_id;
  r.cloud.text = "cloud " + request_id;
  return r;
}

// Exact, with a NaN equal to a NaN.
void expectSameDouble(double a, double b, const std::string& what) {
  if (std::isnan(a) || std::isnan(b)) {
    EXPECT_TRUE(std::isnan(a) && std::isnan(b)) << what << ": " << a << " vs " << b;
    return;
  }
  EXPECT_EQ(a, b) << what;
  EXPECT_EQ(std::signbit(a), std::signbit(b)) << what;
}

void expectSameAnswer(const Answer& a, const Answer& b, const std::string& side) {
  EXPECT_EQ(a.model, b.model) << side;
  EXPECT_EQ(a.text, b.text) << side;
  EXPECT_EQ(a.complete, b.complete) << side;
  EXPECT_EQ(a.finish_reason, b.finish_reason) << side;
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens) << side;
  EXPECT_EQ(a.completion_tokens, b.completion_tokens) << side;
  expectSameDouble(a.cost_usd, b.cost_usd, side + ".cost_usd");
  expectSameDouble(a.latency_ms, b.latency_ms, side + ".latency_ms");
}

void expectSameFeatures(const std::vector<Feature>& a, const std::vector<Feature>& b,
                        const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name) << what;
    expectSameDouble(a[i].value, b[i].value, what + "." + a[i].name);
  }
}

// Every field but id and feedback.
void expectSameRecord(const QualityRecord& a, const QualityRecord& b) {
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.unix_ms, b.unix_ms);
  EXPECT_EQ(a.team, b.team);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.prompt, b.prompt) << a.prompt.dump() << " vs " << b.prompt.dump();
  EXPECT_EQ(a.prompt.type(), b.prompt.type());
  EXPECT_EQ(a.redacted, b.redacted);
  expectSameAnswer(a.local, b.local, "local");
  expectSameAnswer(a.cloud, b.cloud, "cloud");
  ASSERT_EQ(a.complexity.has_value(), b.complexity.has_value());
  if (a.complexity) expectSameDouble(*a.complexity, *b.complexity, "complexity");
  expectSameFeatures(a.complexity_features, b.complexity_features, "complexity_features");
  ASSERT_EQ(a.confidence.has_value(), b.confidence.has_value());
  if (a.confidence) expectSameDouble(*a.confidence, *b.confidence, "confidence");
  expectSameFeatures(a.confidence_features, b.confidence_features, "confidence_features");
  ASSERT_EQ(a.metrics.has_value(), b.metrics.has_value());
  if (a.metrics) {
    EXPECT_EQ(a.metrics->exact_match, b.metrics->exact_match);
    expectSameDouble(a.metrics->token_f1, b.metrics->token_f1, "token_f1");
    expectSameDouble(a.metrics->rouge_l, b.metrics->rouge_l, "rouge_l");
    expectSameDouble(a.metrics->length_ratio, b.metrics->length_ratio, "length_ratio");
    EXPECT_EQ(a.metrics->json_both_parse, b.metrics->json_both_parse);
    EXPECT_EQ(a.metrics->json_agree, b.metrics->json_agree);
  }
  ASSERT_EQ(a.judge.has_value(), b.judge.has_value());
  if (a.judge) {
    EXPECT_EQ(a.judge->status, b.judge->status);
    EXPECT_EQ(a.judge->model, b.judge->model);
    expectSameDouble(a.judge->delta, b.judge->delta, "judge.delta");
    EXPECT_EQ(a.judge->agreement, b.judge->agreement);
    EXPECT_EQ(a.judge->verdict_ab, b.judge->verdict_ab);
    EXPECT_EQ(a.judge->verdict_ba, b.judge->verdict_ba);
    EXPECT_EQ(a.judge->detail, b.judge->detail);
    expectSameDouble(a.judge->cost_usd, b.judge->cost_usd, "judge.cost_usd");
    EXPECT_EQ(a.judge->unix_ms, b.judge->unix_ms);
  }
}

std::vector<std::string> requestIds(const std::vector<QualityRecord>& rs) {
  std::vector<std::string> out;
  out.reserve(rs.size());
  for (const QualityRecord& r : rs) out.push_back(r.request_id);
  return out;
}

// ---- The contract, on both stores: a SQLite file, and a fresh database on the test binary's
// private PostgreSQL server (tests/support/postgres.h).

enum class Backend { kSqlite, kPostgres };

class QualityStoreBackends : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      location_ = dir_.file("q.db");
      return;
    }
    std::string why;
    if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
    sytest::PostgresServer* server = sytest::PostgresServer::shared(&why);
    ASSERT_NE(server, nullptr) << why;
    location_ = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &why);
    ASSERT_NE(location_, "") << why;
  }
  bool postgres() const { return GetParam() == Backend::kPostgres; }
  // The file, or the database's URL.
  const std::string& location() const { return location_; }
  std::unique_ptr<QualityStore> open(bool read_only = false) {
    return mustOpen(location_, read_only);
  }
  // Runs `sql` on the PostgreSQL database behind the store's back.
  void pgExec(const std::string& sql) {
    try {
      pqxx::connection c(location_);
      pqxx::work tx(c);
      tx.exec(sql);
      tx.commit();
    } catch (const std::exception& e) {
      ADD_FAILURE() << sql << ": " << e.what();
    }
  }

 private:
  TempDir dir_;
  std::string location_;
};

INSTANTIATE_TEST_SUITE_P(Backends, QualityStoreBackends,
                         testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "postgres";
                         });

// ---- Round trips ----

TEST_P(QualityStoreBackends, RoundTripsARecordWithEveryFieldSet) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  QualityRecord full = fullRecord();
  auto id = store->insert(full);
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_GT(*id, 0);
  EXPECT_NE(*id, 999);
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, *id);
  expectSameRecord(got[0], full);
  EXPECT_FALSE(got[0].feedback.has_value());
}

TEST_P(QualityStoreBackends, RoundTripsARecordWithEveryOptionalAbsent) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  QualityRecord bare = bareRecord();
  // Present but all-default optionals must stay apart from absent ones.
  QualityRecord zeros = bareRecord();
  zeros.request_id = "req-zeros";
  zeros.prompt = api::Json::array();
  zeros.redacted = false;
  zeros.complexity = 0.0;
  zeros.confidence = 0.0;
  zeros.metrics = TextMetrics{};
  zeros.judge = JudgeResult{};
  zeros.feedback = Feedback{"req-zeros", "acme", 1, "ignored by insert", kT0};
  ASSERT_TRUE(store->insert(bare).ok());
  ASSERT_TRUE(store->insert(zeros).ok());
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 2u);
  expectSameRecord(got[0], bare);
  EXPECT_TRUE(got[0].prompt.is_null());
  EXPECT_FALSE(got[0].complexity || got[0].confidence || got[0].metrics || got[0].judge);
  expectSameRecord(got[1], zeros);
  ASSERT_TRUE(got[1].metrics.has_value());
  EXPECT_FALSE(got[1].metrics->json_both_parse.has_value());
  EXPECT_FALSE(got[1].metrics->json_agree.has_value());
  EXPECT_FALSE(got[1].feedback.has_value());  // feedback is stored by addFeedback only
}

TEST_P(QualityStoreBackends, ReopenKeepsEverything) {
  {
    auto store = open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->insert(fullRecord()).ok());
    ASSERT_TRUE(store->insert(bareRecord()).ok());
    ASSERT_TRUE(store->addFeedback({"req-full", "acme", -1, "meh", kT0 + 9}).ok());
  }
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 2u);
  expectSameRecord(got[0], fullRecord());
  ASSERT_TRUE(got[0].feedback.has_value());
  EXPECT_EQ(got[0].feedback->comment, "meh");
  expectSameRecord(got[1], bareRecord());
  // New ids follow the old ones.
  auto id = store->insert(bareRecord());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, got[1].id + 1);
}

// ---- Queries ----

TEST_P(QualityStoreBackends, FiltersByTeamTimeKindWithLimitAndOrder) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  // Inserted out of time order; two share a timestamp (then id order decides).
  for (const QualityRecord& r :
       {rec("acme", "a3", kT0 + 300, RecordKind::kShadow), rec("acme", "a1", kT0 + 100),
        rec("beta", "b1", kT0 + 100, RecordKind::kShadow), rec("acme", "a2", kT0 + 200),
        rec("acme", "a2bis", kT0 + 200, RecordKind::kShadow), rec("beta", "b2", kT0 + 400)}) {
    ASSERT_TRUE(store->insert(r).ok());
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(requestIds(mustQuery(*store)), (V{"a1", "b1", "a2", "a2bis", "a3", "b2"}));
  RecordFilter f;
  f.newest_first = true;
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"b2", "a3", "a2bis", "a2", "b1", "a1"}));

  f = {};
  f.team = "acme";
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"a1", "a2", "a2bis", "a3"}));
  f.since_ms = kT0 + 200;  // inclusive
  f.until_ms = kT0 + 300;  // exclusive
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"a2", "a2bis"}));
  f.kind = RecordKind::kShadow;
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"a2bis"}));

  f = {};
  f.kind = RecordKind::kShadow;
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"b1", "a2bis", "a3"}));
  f = {};
  f.limit = 2;
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"a1", "b1"}));
  f.newest_first = true;
  EXPECT_EQ(requestIds(mustQuery(*store, f)), (V{"b2", "a3"}));
  f = {};
  f.until_ms = kT0 + 100;
  EXPECT_TRUE(mustQuery(*store, f).empty());
  f = {};
  f.team = "nobody";
  EXPECT_TRUE(mustQuery(*store, f).empty());

  f = {};
  f.limit = -1;
  auto bad = store->query(f);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), api::ErrorCode::kInvalidRequest);
}

TEST_P(QualityStoreBackends, LatestFeedbackOfTheSameTeamAndRequestIsAttached) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->insert(rec("acme", "r1", kT0)).ok());
  ASSERT_TRUE(store->insert(rec("acme", "r2", kT0 + 1)).ok());
  ASSERT_TRUE(store->insert(rec("beta", "r3", kT0 + 2)).ok());
  ASSERT_TRUE(store->addFeedback({"r1", "acme", -1, "first", kT0 + 10}).ok());
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[0].feedback.has_value());
  EXPECT_EQ(got[0].feedback->comment, "first");
  EXPECT_EQ(got[0].feedback->team, "acme");
  EXPECT_EQ(got[0].feedback->request_id, "r1");
  EXPECT_EQ(got[0].feedback->score, -1);
  EXPECT_EQ(got[0].feedback->unix_ms, kT0 + 10);
  EXPECT_FALSE(got[1].feedback.has_value());

  // After the record: a later one wins; an earlier-stamped one added later does not; at equal
  // times the one added last wins.
  ASSERT_TRUE(store->addFeedback({"r1", "acme", 0.5, "second", kT0 + 20}).ok());
  ASSERT_TRUE(store->addFeedback({"r1", "acme", 1, "stale", kT0 + 15}).ok());
  ASSERT_TRUE(store->addFeedback({"r2", "acme", 0.25, "tie-a", kT0 + 30}).ok());
  ASSERT_TRUE(store->addFeedback({"r2", "acme", 0.75, "tie-b", kT0 + 30}).ok());
  // Another team's feedback on the same request id is refused.
  EXPECT_EQ(store->addFeedback({"r3", "acme", 1, "not beta's", kT0 + 40}).code(),
            api::ErrorCode::kNotFound);
  got = mustQuery(*store);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[0].feedback && got[1].feedback);
  EXPECT_EQ(got[0].feedback->comment, "second");
  EXPECT_EQ(got[0].feedback->score, 0.5);
  EXPECT_EQ(got[1].feedback->comment, "tie-b");
  EXPECT_FALSE(got[2].feedback.has_value());
  ASSERT_TRUE(store->addFeedback({"r3", "beta", -0.5, "beta's", kT0 + 41}).ok());
  got = mustQuery(*store);
  ASSERT_TRUE(got[2].feedback.has_value());
  EXPECT_EQ(got[2].feedback->comment, "beta's");
  EXPECT_EQ(got[2].feedback->team, "beta");

  auto stats = store->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records, 3);
  EXPECT_EQ(stats->feedback, 3);  // the latest of each (team, request)
  EXPECT_GT(stats->bytes, 0);
}

TEST_P(QualityStoreBackends, RoundTripsSamplingProbabilityAndFeedbackScale) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  QualityRecord shadow = rec("acme", "s1", kT0, RecordKind::kShadow);
  shadow.sampling_p = 0.02;
  QualityRecord escalation = rec("acme", "e1", kT0 + 1);
  QualityRecord odd = rec("acme", "o1", kT0 + 2, RecordKind::kShadow);
  odd.sampling_p = 1.0 / 3.0;  // exact, like every double
  for (const QualityRecord& r : {shadow, escalation, odd}) ASSERT_TRUE(store->insert(r).ok());
  Feedback stars{"s1", "acme", 4, "good enough", kT0 + 10};
  stars.scale = quality::FeedbackScale::kStars;
  Feedback thumbs{"e1", "acme", -1, "", kT0 + 11};
  thumbs.scale = quality::FeedbackScale::kThumbs;
  ASSERT_TRUE(store->addFeedback(stars).ok());
  ASSERT_TRUE(store->addFeedback(thumbs).ok());
  ASSERT_TRUE(store->addFeedback({"o1", "acme", 0.25, "", kT0 + 12}).ok());
  for (bool read_only : {false, true}) {
    auto reader = read_only ? open(true) : nullptr;
    auto got = mustQuery(read_only ? *reader : *store);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].sampling_p, 0.02);
    EXPECT_EQ(got[0].weight(), 50);
    EXPECT_EQ(got[1].sampling_p, 1);
    EXPECT_EQ(got[2].sampling_p, 1.0 / 3.0);
    ASSERT_TRUE(got[0].feedback && got[1].feedback && got[2].feedback);
    // The score as sent, with its scale; normalised only when read.
    EXPECT_EQ(got[0].feedback->score, 4);
    EXPECT_EQ(got[0].feedback->scale, quality::FeedbackScale::kStars);
    EXPECT_EQ(got[0].feedback->normalized(), 0.5);
    EXPECT_EQ(got[1].feedback->score, -1);
    EXPECT_EQ(got[1].feedback->scale, quality::FeedbackScale::kThumbs);
    EXPECT_EQ(got[2].feedback->score, 0.25);
    EXPECT_EQ(got[2].feedback->scale, quality::FeedbackScale::kUnit);
  }
}

// The SQL of schema version 1, as the build before sampling_p and feedback scales made it.
const char* const kSchemaV1Sql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  team TEXT NOT NULL,
  kind TEXT NOT NULL,                -- escalation | shadow
  model TEXT NOT NULL,
  reason TEXT NOT NULL,
  prompt TEXT,                       -- JSON; NULL for a null prompt (redacted)
  redacted INTEGER NOT NULL,
  local_model TEXT NOT NULL, local_text TEXT NOT NULL, local_complete INTEGER NOT NULL,
  local_finish_reason TEXT NOT NULL, local_prompt_tokens INTEGER NOT NULL,
  local_completion_tokens INTEGER NOT NULL, local_cost_usd REAL NOT NULL,
  local_latency_ms REAL NOT NULL,
  cloud_model TEXT NOT NULL, cloud_text TEXT NOT NULL, cloud_complete INTEGER NOT NULL,
  cloud_finish_reason TEXT NOT NULL, cloud_prompt_tokens INTEGER NOT NULL,
  cloud_completion_tokens INTEGER NOT NULL, cloud_cost_usd REAL NOT NULL,
  cloud_latency_ms REAL NOT NULL,
  complexity REAL,                   -- NULL: absent
  complexity_features TEXT NOT NULL, -- JSON [[name, value], ...]
  confidence REAL,
  confidence_features TEXT NOT NULL,
  -- metrics_exact_match NULL: no metrics (then every metrics_* is NULL)
  metrics_exact_match INTEGER, metrics_token_f1 REAL, metrics_rouge_l REAL,
  metrics_length_ratio REAL, metrics_json_both_parse INTEGER, metrics_json_agree INTEGER,
  -- judge_status NULL: not judged (then every judge_* is NULL)
  judge_status TEXT, judge_model TEXT, judge_delta REAL, judge_agreement INTEGER,
  judge_verdict_ab TEXT, judge_verdict_ba TEXT, judge_detail TEXT, judge_cost_usd REAL,
  judge_unix_ms INTEGER);
CREATE INDEX records_team_time ON records(team, unix_ms);
CREATE INDEX records_time ON records(unix_ms);
CREATE INDEX records_request ON records(request_id);
CREATE TABLE feedback(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  team TEXT NOT NULL,
  request_id TEXT NOT NULL,
  score REAL NOT NULL,
  comment TEXT NOT NULL,
  unix_ms INTEGER NOT NULL);
CREATE INDEX feedback_request ON feedback(team, request_id, unix_ms);
)sql";

TEST(QualityStore, AVersion1FileIsReadAsItIsAndMigratedByAWriter) {
  TempDir dir;
  std::string path = dir.file("v1.db");
  rawExec(path, std::string(kSchemaV1Sql) +
                    "INSERT INTO meta(key, value) VALUES('store', 'switchyard-quality'), "
                    "('schema_version', '1');");
  // A record and its feedback written by the old build.
  rawExec(path,
          "INSERT INTO records(request_id, unix_ms, team, kind, model, reason, prompt, redacted, "
          "local_model, local_text, local_complete, local_finish_reason, local_prompt_tokens, "
          "local_completion_tokens, local_cost_usd, local_latency_ms, cloud_model, cloud_text, "
          "cloud_complete, cloud_finish_reason, cloud_prompt_tokens, cloud_completion_tokens, "
          "cloud_cost_usd, cloud_latency_ms, complexity, complexity_features, confidence, "
          "confidence_features) VALUES('old-1', 1795446245000, 'acme', 'shadow', 'auto', "
          "'shadow', '[]', 0, 'local/m', 'l', 1, 'stop', 1, 2, 0.5, 10, 'openai/gpt-4o', 'c', 1, "
          "'stop', 3, 4, 0.25, 20, 0.5, '[]', 0.75, '[]');"
          "INSERT INTO feedback(team, request_id, score, comment, unix_ms) "
          "VALUES('acme', 'old-1', -0.5, 'old', 1795446246000);");
  auto expectOldRows = [](const QualityStore& store) {
    auto got = mustQuery(store);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].request_id, "old-1");
    EXPECT_EQ(got[0].kind, RecordKind::kShadow);
    EXPECT_EQ(got[0].local.cost_usd, 0.5);
    EXPECT_EQ(got[0].sampling_p, 1);  // made before sampling was recorded
    ASSERT_TRUE(got[0].feedback.has_value());
    EXPECT_EQ(got[0].feedback->score, -0.5);
    EXPECT_EQ(got[0].feedback->scale, quality::FeedbackScale::kUnit);
    EXPECT_EQ(got[0].feedback->comment, "old");
  };
  auto schemaVersion = [&] {
    sqlite3* db = nullptr;
    std::string v;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_exec(
          db, "SELECT value FROM meta WHERE key = 'schema_version'",
          [](void* out, int, char** values, char**) {
            *static_cast<std::string*>(out) = values[0] ? values[0] : "";
            return 0;
          },
          &v, nullptr);
    }
    sqlite3_close(db);
    return v;
  };
  // A reader reads it as it is and changes nothing.
  {
    auto reader = mustOpen(path, true);
    ASSERT_NE(reader, nullptr);
    expectOldRows(*reader);
  }
  EXPECT_EQ(schemaVersion(), "1");
  // A writer migrates it, keeping its rows; new rows carry their sampling and scale.
  {
    auto store = mustOpen(path);
    ASSERT_NE(store, nullptr);
    expectOldRows(*store);
    QualityRecord r = rec("acme", "new-1", kT0 + 5, RecordKind::kShadow);
    r.sampling_p = 0.1;
    ASSERT_TRUE(store->insert(r).ok());
    Feedback f{"new-1", "acme", 5, "", kT0 + 6};
    f.scale = quality::FeedbackScale::kStars;
    ASSERT_TRUE(store->addFeedback(f).ok());
  }
  EXPECT_EQ(schemaVersion(), "2");
  auto store = mustOpen(path, true);
  ASSERT_NE(store, nullptr);
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].sampling_p, 1);
  EXPECT_EQ(got[1].sampling_p, 0.1);
  ASSERT_TRUE(got[1].feedback.has_value());
  EXPECT_EQ(got[1].feedback->scale, quality::FeedbackScale::kStars);
  EXPECT_EQ(got[1].feedback->score, 5);
}

TEST_P(QualityStoreBackends, FeedbackNeedsARecordOfTheSameTeamAndRequest) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->insert(rec("acme", "r1", kT0)).ok());
  for (const Feedback& f : {Feedback{"nope", "acme", 1, "unknown request", kT0},
                            Feedback{"r1", "beta", 1, "another team's request", kT0},
                            Feedback{"", "acme", 1, "empty id", kT0}}) {
    api::Status s = store->addFeedback(f);
    EXPECT_EQ(s.code(), api::ErrorCode::kNotFound) << f.comment;
    EXPECT_NE(s.message().find("has no record of request"), std::string::npos) << s.message();
  }
  // Inside a transaction, a refused feedback is the item's own outcome.
  ASSERT_TRUE(store
                  ->transaction([&]() -> api::Status {
                    EXPECT_EQ(store->addFeedback({"nope", "acme", 1, "", kT0}).code(),
                              api::ErrorCode::kNotFound);
                    return store->addFeedback({"r1", "acme", 1, "kept", kT0});
                  })
                  .ok());
  auto stats = store->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->feedback, 1);
}

TEST_P(QualityStoreBackends, FeedbackIsOneRowPerRecordHoweverOftenSent) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->insert(rec("acme", "r1", kT0)).ok());
  auto empty = store->stats();
  ASSERT_TRUE(empty.ok());
  const std::string comment(4000, 'x');
  for (int i = 0; i < 320; ++i) {
    ASSERT_TRUE(store->addFeedback({"r1", "acme", 1, comment, kT0 + i}).ok());
  }
  auto stats = store->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->feedback, 1);
  // 320 comments of 4 KB would take over a megabyte; one row takes a few pages (PostgreSQL's
  // dead rows wait for VACUUM).
  if (!postgres()) EXPECT_LT(stats->bytes - empty->bytes, 64 * 1024);
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].feedback.has_value());
  EXPECT_EQ(got[0].feedback->unix_ms, kT0 + 319);
}

TEST_P(QualityStoreBackends, SetJudgeAndMetricsReplaceAndRefuseUnknownIds) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto id = store->insert(bareRecord());
  ASSERT_TRUE(id.ok());
  QualityRecord full = fullRecord();
  ASSERT_TRUE(store->setJudge(*id, *full.judge).ok());
  ASSERT_TRUE(store->setMetrics(*id, *full.metrics).ok());
  auto got = mustQuery(*store);
  ASSERT_EQ(got.size(), 1u);
  QualityRecord want = bareRecord();
  want.judge = full.judge;
  want.metrics = full.metrics;
  expectSameRecord(got[0], want);

  // Replaced, optionals included.
  JudgeResult ok;
  ok.status = JudgeStatus::kOk;
  ok.delta = 1;
  TextMetrics m;
  m.token_f1 = 0.5;
  ASSERT_TRUE(store->setJudge(*id, ok).ok());
  ASSERT_TRUE(store->setMetrics(*id, m).ok());
  got = mustQuery(*store);
  ASSERT_EQ(got.size(), 1u);
  want.judge = ok;
  want.metrics = m;
  expectSameRecord(got[0], want);
  EXPECT_EQ(got[0].delta(), 1.0);

  EXPECT_EQ(store->setJudge(*id + 1, ok).code(), api::ErrorCode::kNotFound);
  EXPECT_EQ(store->setMetrics(*id + 1, m).code(), api::ErrorCode::kNotFound);
  EXPECT_EQ(store->setJudge(0, ok).code(), api::ErrorCode::kNotFound);
}

TEST_P(QualityStoreBackends, TransactionCommitsAllOrNothing) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  api::Status s = store->transaction([&]() -> api::Status {
    EXPECT_TRUE(store->insert(rec("acme", "t1", kT0)).ok());
    EXPECT_EQ(store->setJudge(12345, JudgeResult{}).code(), api::ErrorCode::kNotFound);
    EXPECT_TRUE(store->insert(rec("acme", "t2", kT0)).ok());
    return {};
  });
  ASSERT_TRUE(s.ok()) << s.message();
  s = store->transaction([&]() -> api::Status {
    EXPECT_TRUE(store->insert(rec("acme", "t3", kT0)).ok());
    return api::Status(api::ErrorCode::kIo, "changed my mind");
  });
  EXPECT_EQ(s.message(), "changed my mind");
  EXPECT_EQ(requestIds(mustQuery(*store)), (std::vector<std::string>{"t1", "t2"}));
}

// ---- Retention ----

TEST_P(QualityStoreBackends, PruneByAgeDropsOldRecordsAndFeedback) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  int64_t now = kT0 + 100 * kDayMs;
  int64_t cutoff = now - 30 * kDayMs;
  ASSERT_TRUE(store->insert(rec("acme", "old", cutoff - 1)).ok());
  ASSERT_TRUE(store->insert(rec("acme", "edge", cutoff)).ok());  // exactly 30 days: kept
  ASSERT_TRUE(store->insert(rec("acme", "new", now)).ok());
  ASSERT_TRUE(store->addFeedback({"old", "acme", 1, "", cutoff + 5}).ok());  // goes with "old"
  ASSERT_TRUE(store->addFeedback({"edge", "acme", 1, "", cutoff}).ok());     // kept
  ASSERT_TRUE(store->addFeedback({"new", "acme", 1, "", cutoff - 1}).ok());  // too old
  // Feedback without a record, as older versions stored it: goes at any age.
  store.reset();
  if (postgres()) {
    pgExec(
        "INSERT INTO switchyard.quality_feedback(team, request_id, score, comment, unix_ms) "
        "VALUES ('acme'::bytea, 'orphan'::bytea, 1, ''::bytea, " +
        std::to_string(now) + ")");
  } else {
    rawExec(location(),
            "INSERT INTO feedback(team, request_id, score, comment, unix_ms) VALUES "
            "('acme', 'orphan', 1, '', " +
                std::to_string(now) + ")");
  }
  store = open();
  ASSERT_NE(store, nullptr);

  Retention keep_all{0, 0, 0};
  auto n = store->prune(keep_all, now);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);

  Retention r{30, 0, 0};
  n = store->prune(r, now);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 1);
  auto got = mustQuery(*store);
  EXPECT_EQ(requestIds(got), (std::vector<std::string>{"edge", "new"}));
  EXPECT_TRUE(got[0].feedback.has_value());
  EXPECT_FALSE(got[1].feedback.has_value());
  auto stats = store->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->feedback, 1);

  // The pruned record's id is not given out again, even though it was the newest.
  ASSERT_TRUE(store->insert(rec("acme", "older", cutoff - 10)).ok());
  auto before = mustQuery(*store, {});
  int64_t pruned_id = 0;
  for (const auto& q : before) pruned_id = std::max(pruned_id, q.id);
  n = store->prune(r, now);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  auto id = store->insert(rec("acme", "next", now));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, pruned_id + 1);

  EXPECT_EQ(store->prune({-1, 0, 0}, now).status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(store->prune({0, -1, 0}, now).status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(store->prune({0, 0, -1}, now).status().code(), api::ErrorCode::kInvalidRequest);
  // An age beyond the clock's range keeps everything.
  n = store->prune({std::numeric_limits<int64_t>::max(), 0, 0}, now);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
}

TEST_P(QualityStoreBackends, PruneByRowsKeepsTheNewest) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  // More rows than one prune transaction takes, with time order unlike id order.
  constexpr int kRows = 12'000;
  std::vector<std::pair<int64_t, int>> order;  // (unix_ms, insertion index)
  ASSERT_TRUE(store
                  ->transaction([&]() -> api::Status {
                    for (int i = 0; i < kRows; ++i) {
                      int64_t t = kT0 + (i * 7919) % 3001;  // repeats: ties go by id
                      order.emplace_back(t, i);
                      auto id = store->insert(rec("acme", "r" + std::to_string(i), t));
                      if (!id.ok()) return id.status();
                    }
                    return {};
                  })
                  .ok());
  std::sort(order.begin(), order.end());
  std::vector<std::string> want;
  for (size_t k = order.size() - 10; k < order.size(); ++k) {
    want.push_back("r" + std::to_string(order[k].second));
  }
  std::string pruned = "r" + std::to_string(order[0].second);
  ASSERT_TRUE(store->addFeedback({pruned, "acme", 1, "of a pruned record", kT0}).ok());
  ASSERT_TRUE(store->addFeedback({want.back(), "acme", 1, "of a kept record", kT0}).ok());
  auto n = store->prune({0, 10, 0}, kT0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, kRows - 10);
  auto got = mustQuery(*store);
  EXPECT_EQ(requestIds(got), want);
  ASSERT_EQ(got.size(), 10u);
  EXPECT_TRUE(got.back().feedback.has_value());
  auto stats = store->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->feedback, 1);
}

TEST(QualityStore, PruneByBytesShrinksTheFile) {
  TempDir dir;
  std::string path = dir.file("q.db");
  auto store = mustOpen(path);
  ASSERT_NE(store, nullptr);
  std::mt19937 rng(42);
  ASSERT_TRUE(store
                  ->transaction([&]() -> api::Status {
                    for (int i = 0; i < 3000; ++i) {
                      QualityRecord r = rec("acme", "r" + std::to_string(i), kT0 + i);
                      r.local.text.assign(2000, 'x');
                      for (char& c : r.local.text) c = static_cast<char>('a' + rng() % 26);
                      auto id = store->insert(r);
                      if (!id.ok()) return id.status();
                    }
                    return {};
                  })
                  .ok());
  auto before = store->stats();
  ASSERT_TRUE(before.ok());
  EXPECT_GT(before->bytes, 6'000'000);

  constexpr int64_t kLimit = 1'000'000;
  auto n = store->prune({0, 0, kLimit}, kT0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  auto after = store->stats();
  ASSERT_TRUE(after.ok());
  EXPECT_LE(after->bytes, kLimit);
  EXPECT_GT(after->bytes, kLimit / 2);  // not much more than needed went
  EXPECT_EQ(after->records, 3000 - *n);
  EXPECT_GT(after->records, 0);
  // The newest survived.
  RecordFilter newest;
  newest.newest_first = true;
  newest.limit = 1;
  auto got = mustQuery(*store, newest);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].request_id, "r2999");
  // The pages went back to the file system.
  store.reset();  // the last connection checkpoints
  EXPECT_LE(static_cast<int64_t>(fs::file_size(path)), kLimit + int64_t{64} * 1024);
}

TEST_P(QualityStoreBackends, AFeedbackFloodCannotPruneOtherTeamsRecords) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->insert(rec("acme", "mine", kT0)).ok());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(store->insert(rec("beta", "b" + std::to_string(i), kT0 + 1 + i)).ok());
  }
  auto before = store->stats();
  ASSERT_TRUE(before.ok());
  // Room for what is there and one comment, not for 320 of them.
  const Retention retention{0, 0, before->bytes + 64 * 1024};
  const std::string comment(4000, 'x');
  for (int i = 0; i < 320; ++i) {
    ASSERT_TRUE(store->addFeedback({"mine", "acme", 1, comment, kT0 + i}).ok());
    EXPECT_EQ(store->addFeedback({"x" + std::to_string(i), "acme", 1, comment, kT0 + i}).code(),
              api::ErrorCode::kNotFound);
  }
  auto n = store->prune(retention, kT0 + 1000);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 0);
  RecordFilter beta;
  beta.team = "beta";
  EXPECT_EQ(mustQuery(*store, beta).size(), 50u);
}

TEST(QualityStore, TheFileAndItsWalArePrivateToTheOwner) {
  TempDir dir;
  std::string path = dir.file("q.db");
  mode_t old_mask = ::umask(022);  // the usual mask, which leaves files world-readable
  auto store = mustOpen(path);
  ::umask(old_mask);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->insert(rec("acme", "r1", kT0)).ok());
  for (const std::string& f : {path, path + "-wal", path + "-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
}

// ---- Readers beside a writer ----

TEST_P(QualityStoreBackends, ReadOnlyOpenSeesCommittedRecordsWhileAWriterIsOpen) {
  auto writer = open();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->insert(rec("acme", "one", kT0)).ok());
  auto reader = open(/*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->readOnly());
  EXPECT_EQ(requestIds(mustQuery(*reader)), (std::vector<std::string>{"one"}));
  ASSERT_TRUE(writer->insert(rec("acme", "two", kT0 + 1)).ok());
  ASSERT_TRUE(writer->addFeedback({"two", "acme", 1, "", kT0}).ok());
  auto got = mustQuery(*reader);
  EXPECT_EQ(requestIds(got), (std::vector<std::string>{"one", "two"}));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1].feedback.has_value());

  // A write transaction in progress does not hold the reader up, nor show.
  ASSERT_TRUE(writer
                  ->transaction([&]() -> api::Status {
                    EXPECT_TRUE(writer->insert(rec("acme", "three", kT0 + 2)).ok());
                    EXPECT_EQ(mustQuery(*reader).size(), 2u);
                    return {};
                  })
                  .ok());
  EXPECT_EQ(mustQuery(*reader).size(), 3u);

  auto refused = reader->insert(rec("acme", "x", kT0));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(refused.status().message().find("'" + reader->path() + "': opened read-only"),
            std::string::npos);
  EXPECT_EQ(reader->addFeedback({"x", "acme", 1, "", kT0}).code(), api::ErrorCode::kIo);
  EXPECT_EQ(reader->prune({1, 0, 0}, kT0).status().code(), api::ErrorCode::kIo);

  // After the writer has gone (and removed its WAL), a reader still opens.
  writer.reset();
  reader.reset();
  reader = open(true);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(mustQuery(*reader).size(), 3u);
}

// ---- Bad files ----

void expectOpenError(const std::string& path, bool read_only, api::ErrorCode code,
                     const std::string& message_part) {
  auto s = QualityStore::open(path, read_only);
  ASSERT_FALSE(s.ok()) << path << (read_only ? " (read-only)" : "");
  EXPECT_EQ(s.status().code(), code) << s.status().message();
  EXPECT_NE(s.status().message().find(message_part), std::string::npos)
      << "'" << s.status().message() << "' lacks '" << message_part << "'";
}

TEST(QualityStore, RandomBytesAreAClearIoErrorAndLeftAlone) {
  TempDir dir;
  std::string path = dir.file("q.db");
  std::string junk(size_t{64} * 1024, '\0');
  std::mt19937 rng(7);
  for (char& c : junk) c = static_cast<char>(rng());
  { std::ofstream(path, std::ios::binary) << junk; }
  for (bool ro : {false, true}) {
    expectOpenError(path, ro, api::ErrorCode::kIo,
                    "quality store '" + path + "': not a SQLite database");
  }
  EXPECT_TRUE(readFile(path) == junk);
}

TEST(QualityStore, TruncatedStoreIsAClearIoError) {
  TempDir dir;
  std::string good = dir.file("good.db");
  {
    auto store = mustOpen(good);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 200; ++i) {
      QualityRecord r = rec("acme", "r" + std::to_string(i), kT0 + i);
      r.cloud.text.assign(1000, 'c');
      ASSERT_TRUE(store->insert(r).ok());
    }
  }
  std::string bytes = readFile(good);
  ASSERT_GT(bytes.size(), 100'000u);
  for (size_t keep : {size_t{50}, size_t{100}, size_t{4096}, bytes.size() / 2 + 123}) {
    std::string path = dir.file("cut" + std::to_string(keep) + ".db");
    { std::ofstream(path, std::ios::binary) << bytes.substr(0, keep); }
    for (bool ro : {false, true}) {
      auto s = QualityStore::open(path, ro);
      ASSERT_FALSE(s.ok()) << keep << (ro ? " read-only" : "");
      EXPECT_EQ(s.status().code(), api::ErrorCode::kIo) << s.status().message();
      EXPECT_NE(s.status().message().find("quality store '" + path +
                                          "': not a SQLite database, or a corrupt or truncated "
                                          "one"),
                std::string::npos)
          << keep << ": " << s.status().message();
      EXPECT_TRUE(readFile(path) == bytes.substr(0, keep)) << keep;
    }
  }

  // Garbage over the second half: the schema still reads, the rows do not.
  std::string path = dir.file("garbled.db");
  std::string garbled = bytes;
  std::mt19937 rng(11);
  for (size_t i = garbled.size() / 2; i < garbled.size(); ++i) {
    garbled[i] = static_cast<char>(rng());
  }
  { std::ofstream(path, std::ios::binary) << garbled; }
  for (bool ro : {false, true}) {
    auto s = QualityStore::open(path, ro);
    api::Status error = s.ok() ? (*s)->query({}).status() : s.status();
    EXPECT_EQ(error.code(), api::ErrorCode::kIo) << error.message();
    EXPECT_NE(error.message().find("quality store '" + path + "': "), std::string::npos)
        << error.message();
  }
}

TEST(QualityStore, OtherSwitchyardDatabasesAreConfigErrors) {
  TempDir dir;
  // A real ledger: a `meta` table with schema version 1, other tables.
  std::string ledger = dir.file("ledger.db");
  {
    auto l = policies::openSqliteLedger(ledger);
    ASSERT_TRUE(l.ok()) << l.status().message();
  }
  std::string before = readFile(ledger);
  for (bool ro : {false, true}) {
    expectOpenError(ledger, ro, api::ErrorCode::kConfig,
                    "quality store '" + ledger +
                        "': a SQLite database that is not a Switchyard quality store (tables: "
                        "alerts, meta, requests)");
  }
  EXPECT_TRUE(readFile(ledger) == before);

  std::string foreign = dir.file("foreign.db");
  rawExec(foreign, "CREATE TABLE meta(k TEXT)");  // a meta table of another shape
  before = readFile(foreign);
  expectOpenError(foreign, false, api::ErrorCode::kConfig,
                  "not a Switchyard quality store (tables: meta)");
  EXPECT_TRUE(readFile(foreign) == before);  // still in rollback-journal mode, say
  EXPECT_FALSE(fs::exists(foreign + "-wal"));

  std::string future = dir.file("future.db");
  ASSERT_NE(mustOpen(future), nullptr);
  rawExec(future, "UPDATE meta SET value = '3' WHERE key = 'schema_version'");
  for (bool ro : {false, true}) {
    expectOpenError(future, ro, api::ErrorCode::kConfig,
                    "quality store '" + future +
                        "': schema version '3' is not supported (this build reads version 2)");
  }

  std::string empty = dir.file("empty.db");
  { std::ofstream(empty, std::ios::binary); }
  expectOpenError(
      empty, true, api::ErrorCode::kConfig,
      "quality store '" + empty + "': an empty SQLite database, not a Switchyard quality store");
  // A writer makes an empty file a store.
  ASSERT_NE(mustOpen(empty), nullptr);
  EXPECT_NE(mustOpen(empty, true), nullptr);
}

TEST(QualityStore, MissingFilesAndDirectoriesAreClearIoErrors) {
  TempDir dir;
  std::string missing = dir.file("missing.db");
  expectOpenError(
      missing, true, api::ErrorCode::kIo,
      "quality store '" + missing + "': cannot open for reading: No such file or directory");
  EXPECT_FALSE(fs::exists(missing));
  std::string no_parent = dir.file("no/such/dir/q.db");
  expectOpenError(no_parent, false, api::ErrorCode::kIo,
                  "quality store '" + no_parent +
                      "': cannot open or create: No such file or directory (its parent "
                      "directory must exist)");
  for (bool ro : {false, true}) {
    expectOpenError(
        dir.path(), ro, api::ErrorCode::kIo,
        "quality store '" + dir.path() + "': is a directory, expected a database file");
  }
  expectOpenError("", false, api::ErrorCode::kIo, "quality store path is empty");
}

TEST(QualityStore, ALockedFileIsAClearIoError) {
  TempDir dir;
  std::string path = dir.file("q.db");
  ASSERT_NE(mustOpen(path), nullptr);
  // An exclusive-mode connection with a write behind it keeps every other connection out.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  expectOpenError(path, false, api::ErrorCode::kIo, "quality store '" + path + "': locked");
  sqlite3_close(db);
}

}  // namespace
