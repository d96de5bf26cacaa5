// POST /v1/feedback's per-team limit (QualityHub::admitFeedback) across replicas: with a
// PostgreSQL ledger that N live replicas share, each replica admits its share (1/N) of
// kFeedbackPerMinute, like the request limits. Two real ledgers on the test binary's private
// PostgreSQL server (tests/support/postgres.h) make two live replicas.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "gateway/config.h"
#include "gateway/metrics.h"
#include "gateway/quality_hub.h"
#include "policies/pg_ledger.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"

namespace gateway {
namespace {

// How many of `tries` feedbacks of team `acme` the hub admits at once.
int admitted(QualityHub& hub, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) n += hub.admitFeedback("acme").ok();
  return n;
}

std::unique_ptr<QualityHub> openHub(const sytest::TempDir& dir, Metrics& metrics,
                                    policies::Ledger* ledger) {
  auto config = parseConfig("quality: {path: \"" + dir.file("q.db") + "\"}\n", "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status().message();
  if (!config.ok()) return nullptr;
  auto hub = QualityHub::open(**config, metrics, ledger, nullptr, nullptr);
  EXPECT_TRUE(hub.ok()) << hub.status().message();
  return hub.ok() ? std::move(*hub) : nullptr;
}

TEST(FeedbackLimit, OneReplicaAdmitsTheWholeLimit) {
  sytest::TempDir dir;
  Metrics metrics;
  auto hub = openHub(dir, metrics, nullptr);
  ASSERT_NE(hub, nullptr);
  int n = admitted(*hub, 3 * QualityHub::kFeedbackPerMinute);
  EXPECT_GE(n, QualityHub::kFeedbackPerMinute);
  EXPECT_LE(n, QualityHub::kFeedbackPerMinute + 2);  // what refills while the loop runs
}

TEST(FeedbackLimit, EachOfTwoLiveReplicasAdmitsHalf) {
  std::string why;
  if (!sytest::PostgresServer::available(&why)) GTEST_SKIP() << why;
  sytest::PostgresServer* server = sytest::PostgresServer::shared(&why);
  ASSERT_NE(server, nullptr) << why;
  std::string url = server->createDatabase(sytest::PostgresServer::databaseNameForTest(), &why);
  ASSERT_FALSE(url.empty()) << why;
  policies::PostgresLedgerOptions o;
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.replica_id = "gw-a";
  auto a = policies::openPostgresLedger(url, o);
  o.replica_id = "gw-b";
  auto b = policies::openPostgresLedger(url, o);
  ASSERT_TRUE(a.ok() && b.ok());
  // Replica a counts b at its next heartbeat.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*a)->liveReplicas() != 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ((*a)->liveReplicas(), 2);
  sytest::TempDir dir;
  Metrics metrics;
  auto hub = openHub(dir, metrics, a->get());
  ASSERT_NE(hub, nullptr);
  int n = admitted(*hub, 3 * QualityHub::kFeedbackPerMinute);
  EXPECT_GE(n, QualityHub::kFeedbackPerMinute / 2);
  EXPECT_LE(n, QualityHub::kFeedbackPerMinute / 2 + 2);
}

}  // namespace
}  // namespace gateway
