// What only the PostgreSQL quality store does (the shared contract is in store_test.cpp, run
// on both stores): replicas that share one database, schema creation by several at once, the
// byte estimate that max_bytes is met on, the masked URL in errors, and a database that goes
// down under the Recorder. A real PostgreSQL server (tests/support/postgres.h); the tests skip,
// saying what is missing, where there is none.
#include "quality/pg_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "quality/recorder.h"
#include "tests/support/postgres.h"

namespace {

using quality::QualityRecord;
using quality::QualityStore;
using quality::RecordKind;

constexpr int64_t kT0 = 1795446245000;  // 2026-11-23T15:04:05Z

QualityRecord rec(const std::string& team, const std::string& request_id, int64_t unix_ms) {
  QualityRecord r;
  r.request_id = request_id;
  r.team = team;
  r.unix_ms = unix_ms;
  r.kind = RecordKind::kEscalation;
  r.prompt = api::Json::array({{{"role", "user"}, {"content", "hi " + request_id}}});
  r.local.text = "local " + request_id;
  r.cloud.text = "cloud " + request_id;
  return r;
}

// A fresh database on the test binary's shared server ("" and a skip where there is none).
std::string freshDatabase(std::string* skip) {
  std::string why;
  if (!sytest::PostgresServer::available(skip)) return "";
  sytest::PostgresServer* server = sytest::PostgresServer::shared(&why);
  EXPECT_NE(server, nullptr) << why;
  if (!server) return "";
  std::string url = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &why);
  EXPECT_NE(url, "") << why;
  return url;
}

std::unique_ptr<QualityStore> mustOpen(const std::string& url, bool read_only = false) {
  auto s = QualityStore::open(url, read_only);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(PgQualityStore, ReplicasStartingTogetherShareOneStore) {
  std::string skip;
  std::string url = freshDatabase(&skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ASSERT_FALSE(url.empty());
  // Several replicas create the schema at once: each opens, none fails.
  std::vector<std::unique_ptr<QualityStore>> stores(4);
  std::vector<std::thread> threads;
  for (auto& s : stores) threads.emplace_back([&s, &url] { s = mustOpen(url); });
  for (auto& t : threads) t.join();
  for (const auto& s : stores) ASSERT_NE(s, nullptr);
  // What one writes, every other reads; feedback sent to another replica finds the record.
  ASSERT_TRUE(stores[0]->insert(rec("acme", "r1", kT0)).ok());
  ASSERT_TRUE(stores[1]->insert(rec("acme", "r2", kT0 + 1)).ok());
  ASSERT_TRUE(stores[2]->addFeedback({"r1", "acme", 1, "good", kT0 + 5}).ok());
  auto got = stores[3]->query({});
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].request_id, "r1");
  ASSERT_TRUE((*got)[0].feedback.has_value());
  EXPECT_EQ((*got)[0].feedback->comment, "good");
  EXPECT_EQ((*got)[1].request_id, "r2");
  EXPECT_NE((*got)[0].id, (*got)[1].id);
}

// The tables of schema version 1, as the build before sampling_p and feedback scales made them.
const char* const kSchemaV1 = R"sql(
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS switchyard.quality_records(
  id BIGSERIAL PRIMARY KEY,
  request_id BYTEA NOT NULL,
  unix_ms BIGINT NOT NULL,
  team BYTEA NOT NULL,
  kind TEXT NOT NULL,
  model BYTEA NOT NULL,
  reason BYTEA NOT NULL,
  prompt TEXT,
  redacted BOOLEAN NOT NULL,
  local_model BYTEA NOT NULL, local_text BYTEA NOT NULL, local_complete BOOLEAN NOT NULL,
  local_finish_reason BYTEA NOT NULL, local_prompt_tokens BIGINT NOT NULL,
  local_completion_tokens BIGINT NOT NULL, local_cost_usd DOUBLE PRECISION NOT NULL,
  local_latency_ms DOUBLE PRECISION NOT NULL,
  cloud_model BYTEA NOT NULL, cloud_text BYTEA NOT NULL, cloud_complete BOOLEAN NOT NULL,
  cloud_finish_reason BYTEA NOT NULL, cloud_prompt_tokens BIGINT NOT NULL,
  cloud_completion_tokens BIGINT NOT NULL, cloud_cost_usd DOUBLE PRECISION NOT NULL,
  cloud_latency_ms DOUBLE PRECISION NOT NULL,
  complexity DOUBLE PRECISION,
  complexity_features TEXT NOT NULL,
  confidence DOUBLE PRECISION,
  confidence_features TEXT NOT NULL,
  metrics_exact_match BOOLEAN, metrics_token_f1 DOUBLE PRECISION,
  metrics_rouge_l DOUBLE PRECISION, metrics_length_ratio DOUBLE PRECISION,
  metrics_json_both_parse BOOLEAN, metrics_json_agree BOOLEAN,
  judge_status TEXT, judge_model BYTEA, judge_delta DOUBLE PRECISION, judge_agreement BOOLEAN,
  judge_verdict_ab BYTEA, judge_verdict_ba BYTEA, judge_detail BYTEA,
  judge_cost_usd DOUBLE PRECISION, judge_unix_ms BIGINT,
  bytes BIGINT GENERATED ALWAYS AS (400 + octet_length(request_id) + octet_length(team) +
    octet_length(model) + octet_length(reason) + coalesce(octet_length(prompt), 0) +
    octet_length(local_text) + octet_length(cloud_text) + octet_length(complexity_features) +
    octet_length(confidence_features) + coalesce(octet_length(judge_detail), 0)) STORED);
CREATE INDEX IF NOT EXISTS quality_records_team_time
  ON switchyard.quality_records(team, unix_ms);
CREATE INDEX IF NOT EXISTS quality_records_time ON switchyard.quality_records(unix_ms, id);
CREATE INDEX IF NOT EXISTS quality_records_request ON switchyard.quality_records(request_id);
CREATE TABLE IF NOT EXISTS switchyard.quality_feedback(
  id BIGSERIAL PRIMARY KEY,
  team BYTEA NOT NULL,
  request_id BYTEA NOT NULL,
  score DOUBLE PRECISION NOT NULL,
  comment BYTEA NOT NULL,
  unix_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS quality_feedback_request
  ON switchyard.quality_feedback(team, request_id, unix_ms);
)sql";

TEST(PgQualityStore, Version1TablesAreReadAsTheyAreAndMigratedByAWriter) {
  std::string skip;
  std::string url = freshDatabase(&skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ASSERT_FALSE(url.empty());
  auto exec = [&](const std::string& sql) {
    pqxx::connection c(url);
    pqxx::work tx(c);
    pqxx::result r = tx.exec(sql);
    tx.commit();
    return r;
  };
  exec(std::string(kSchemaV1) +
       "INSERT INTO switchyard.meta(key, value) VALUES ('quality_schema_version', '1');");
  {
    // A reader opens empty tables of version 1.
    auto old = mustOpen(url, /*read_only=*/true);
    ASSERT_NE(old, nullptr);
    ASSERT_TRUE(old->query({}).ok());
  }
  // A record and its feedback written by the old build.
  exec(
      "INSERT INTO switchyard.quality_records(request_id, unix_ms, team, kind, model, reason, "
      "redacted, local_model, local_text, local_complete, local_finish_reason, "
      "local_prompt_tokens, local_completion_tokens, local_cost_usd, local_latency_ms, "
      "cloud_model, cloud_text, cloud_complete, cloud_finish_reason, cloud_prompt_tokens, "
      "cloud_completion_tokens, cloud_cost_usd, cloud_latency_ms, complexity_features, "
      "confidence_features) VALUES ('old-1', 1795446245000, 'acme', 'shadow', 'auto', 'shadow', "
      "true, '', '', true, '', 0, 0, 0.5, 0, '', '', true, '', 0, 0, 0, 0, '[]', '[]');"
      "INSERT INTO switchyard.quality_feedback(team, request_id, score, comment, unix_ms) "
      "VALUES ('acme', 'old-1', -0.5, 'old', 1795446246000);");
  auto expectOldRow = [](const QualityRecord& r) {
    EXPECT_EQ(r.request_id, "old-1");
    EXPECT_EQ(r.local.cost_usd, 0.5);
    EXPECT_EQ(r.sampling_p, 1);
    ASSERT_TRUE(r.feedback.has_value());
    EXPECT_EQ(r.feedback->score, -0.5);
    EXPECT_EQ(r.feedback->scale, quality::FeedbackScale::kUnit);
  };
  {
    auto reader = mustOpen(url, true);
    ASSERT_NE(reader, nullptr);
    auto got = reader->query({});
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(got->size(), 1u);
    expectOldRow((*got)[0]);
  }
  auto version = [&] {
    return exec("SELECT value FROM switchyard.meta WHERE key = 'quality_schema_version'")[0][0]
        .as<std::string>();
  };
  EXPECT_EQ(version(), "1");
  auto store = mustOpen(url);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(version(), "2");
  QualityRecord r = rec("acme", "new-1", kT0);
  r.kind = RecordKind::kShadow;
  r.sampling_p = 0.1;
  ASSERT_TRUE(store->insert(r).ok());
  quality::Feedback f{"new-1", "acme", 1, "", kT0 + 1};
  f.scale = quality::FeedbackScale::kThumbs;
  ASSERT_TRUE(store->addFeedback(f).ok());
  auto got = store->query({});
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 2u);
  expectOldRow((*got)[0]);
  EXPECT_EQ((*got)[1].sampling_p, 0.1);
  ASSERT_TRUE((*got)[1].feedback.has_value());
  EXPECT_EQ((*got)[1].feedback->scale, quality::FeedbackScale::kThumbs);
}

TEST(PgQualityStore, FeedbackFromManyReplicasAtOnceKeepsOneRow) {
  std::string skip;
  std::string url = freshDatabase(&skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ASSERT_FALSE(url.empty());
  auto a = mustOpen(url);
  auto b = mustOpen(url);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->insert(rec("acme", "r1", kT0)).ok());
  std::vector<std::thread> threads;
  for (QualityStore* s : {a.get(), b.get()}) {
    threads.emplace_back([s] {
      for (int i = 0; i < 40; ++i) EXPECT_TRUE(s->addFeedback({"r1", "acme", 1, "x", kT0}).ok());
    });
  }
  for (auto& t : threads) t.join();
  auto stats = a->stats();
  ASSERT_TRUE(stats.ok()) << stats.status().message();
  EXPECT_EQ(stats->feedback, 1);
}

TEST(PgQualityStore, PruneByBytesMeetsTheEstimateAndKeepsTheNewest) {
  std::string skip;
  std::string url = freshDatabase(&skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ASSERT_FALSE(url.empty());
  auto store = mustOpen(url);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store
                  ->transaction([&]() -> api::Status {
                    for (int i = 0; i < 600; ++i) {
                      QualityRecord r = rec("acme", "r" + std::to_string(i), kT0 + i);
                      r.local.text.assign(2000, 'x');
                      auto id = store->insert(r);
                      if (!id.ok()) return id.status();
                    }
                    return {};
                  })
                  .ok());
  constexpr int64_t kLimit = 200'000;
  auto n = store->prune({0, 0, kLimit}, kT0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_GT(*n, 0);
  int64_t kept = 0, bytes = 0;
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    auto r = tx.exec("SELECT COUNT(*), SUM(bytes) FROM switchyard.quality_records");
    kept = r[0][0].as<int64_t>();
    bytes = r[0][1].as<int64_t>();
  }
  EXPECT_EQ(kept, 600 - *n);
  EXPECT_LE(bytes, kLimit);
  EXPECT_GT(bytes, kLimit - 3000);  // one record more would not fit
  quality::RecordFilter newest;
  newest.newest_first = true;
  newest.limit = 1;
  auto got = store->query(newest);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].request_id, "r599");
}

TEST(PgQualityStore, SchemaOfAnotherVersionOrNoneIsAConfigError) {
  std::string skip;
  std::string url = freshDatabase(&skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  ASSERT_FALSE(url.empty());
  auto none = QualityStore::open(url, /*read_only=*/true);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(none.status().message().find("holds no quality store"), std::string::npos);
  ASSERT_NE(mustOpen(url), nullptr);
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    tx.exec("UPDATE switchyard.meta SET value = '99' WHERE key = 'quality_schema_version'");
    tx.commit();
  }
  auto future = QualityStore::open(url);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(future.status().message().find("schema version '99'"), std::string::npos)
      << future.status().message();
}

TEST(PgQualityStore, AnUnreachableDatabaseIsAnIoErrorWithThePasswordMasked) {
  int port = 0;
  {
    std::string why;
    if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
    auto server = sytest::PostgresServer::start(&why);
    ASSERT_NE(server, nullptr) << why;
    port = server->port();
  }
  // Nothing listens on a port just freed: the connection is refused.
  std::string url = "postgresql://app:s3cret-pw@127.0.0.1:" + std::to_string(port) + "/q";
  auto s = QualityStore::open(url);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), api::ErrorCode::kIo);
  const std::string& msg = s.status().message();
  EXPECT_NE(
      msg.find("quality store 'postgresql://app:***@127.0.0.1:" + std::to_string(port) + "/q'"),
      std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("s3cret"), std::string::npos) << msg;
}

// The Recorder never blocks its callers: with the database down, submit() returns at once,
// the writes fail (counted), and once the database is back records are stored again.
TEST(PgQualityStore, ADownDatabaseFailsWritesWithoutBlockingTheRecorder) {
  std::string why;
  if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
  auto server = sytest::PostgresServer::start(&why);  // its own: this test stops it
  ASSERT_NE(server, nullptr) << why;
  std::string url = server->createDatabase("quality_outage", &why);
  ASSERT_FALSE(url.empty()) << why;
  auto store = mustOpen(url);
  ASSERT_NE(store, nullptr);
  quality::RecorderOptions o;
  o.prune_every_ms = 0;
  quality::Recorder recorder(std::move(store), o);
  ASSERT_TRUE(recorder.submit(rec("acme", "before", kT0)));
  recorder.flush();
  EXPECT_EQ(recorder.stats().written, 1u);

  ASSERT_TRUE(server->stop(&why)) << why;
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(recorder.submit(rec("acme", "down-" + std::to_string(i), kT0 + 1)));
  }
  recorder.flush();
  EXPECT_EQ(recorder.stats().failed, 20u);
  auto down = recorder.query({});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), api::ErrorCode::kUnavailable);
  EXPECT_EQ(down.status().message().rfind("quality store 'postgresql://", 0), 0u)
      << down.status().message();

  ASSERT_TRUE(server->restart(&why)) << why;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  uint64_t written = 1;
  for (int i = 0; written < 2 && std::chrono::steady_clock::now() < deadline; ++i) {
    recorder.submit(rec("acme", "after-" + std::to_string(i), kT0 + 2));
    recorder.flush();
    written = recorder.stats().written;
    if (written < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(written, 2u);
  auto got = recorder.query({});
  ASSERT_TRUE(got.ok()) << got.status().message();
  // The last record written before the crash may be lost with it (commits do not wait for
  // the WAL flush); the one written after is there.
  ASSERT_FALSE(got->empty());
  EXPECT_EQ(got->back().request_id.rfind("after-", 0), 0u) << got->back().request_id;
}

}  // namespace
