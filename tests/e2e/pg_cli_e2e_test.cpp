// End-to-end: `switchyard-cli export` and `report` read the PostgreSQL quality store and
// ledger that gateway replicas share (--store / --ledger postgresql://...), so that what two
// replicas wrote comes out in one export and one report. A private server
// (tests/support/postgres.h); the tests skip, saying what is missing, where there is none.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "policies/pg_ledger.h"
#include "quality/store.h"
#include "tests/support/postgres.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

constexpr int64_t kT0 = 1795446245000;  // 2026-11-23T15:04:05Z

// A record the cloud won (the judge's delta 1), with a prompt an export can use.
quality::QualityRecord cloudWin(const std::string& team, const std::string& id) {
  quality::QualityRecord r;
  r.request_id = id;
  r.team = team;
  r.unix_ms = kT0;
  r.kind = quality::RecordKind::kEscalation;
  r.prompt = api::Json::array({{{"role", "user"}, {"content", "question " + id}}});
  r.local = {"gemma", "local answer " + id, true, "stop", 5, 3, 0, 10};
  r.cloud = {"gpt-4o", "cloud answer " + id, true, "stop", 5, 3, 0.001, 20};
  quality::JudgeResult j;
  j.status = quality::JudgeStatus::kOk;
  j.delta = 1;
  j.agreement = true;
  r.judge = j;
  return r;
}

class PgCliE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!PostgresServer::available(&why)) GTEST_SKIP() << why;
    PostgresServer* server = PostgresServer::shared(&why);
    ASSERT_NE(server, nullptr) << why;
    url_ = server->createDatabase(PostgresServer::databaseNameForTest(), &why);
    ASSERT_FALSE(url_.empty()) << why;
  }
  std::string url_;
  TempDir work_;
};

TEST_F(PgCliE2E, ExportReadsTheRecordsOfEveryReplica) {
  {
    // Two replicas' stores on one database.
    auto a = quality::QualityStore::open(url_);
    auto b = quality::QualityStore::open(url_);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE((*a)->insert(cloudWin("acme", "from-a")).ok());
    ASSERT_TRUE((*b)->insert(cloudWin("acme", "from-b")).ok());
  }
  RunResult sft = runCommand(cliBin(), {"export", "sft", "--store", url_});
  ASSERT_EQ(sft.status.code, 0) << sft.err;
  std::istringstream in(sft.out);
  std::string all;
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    api::Json j = api::Json::parse(line);
    ASSERT_TRUE(j["messages"].is_array()) << line;
    all += j["messages"].back()["content"].get<std::string>() + "\n";
  }
  EXPECT_EQ(lines, 2) << sft.out << sft.err;
  EXPECT_NE(all.find("cloud answer from-a"), std::string::npos) << all;
  EXPECT_NE(all.find("cloud answer from-b"), std::string::npos) << all;

  // A database without a store is an error that says so, its password never printed.
  std::string masked = url_;
  masked.insert(masked.find("@"), ":s3cret-pw");
  RunResult none = runCommand(
      cliBin(), {"export", "sft", "--store", masked.substr(0, masked.rfind('/')) + "/postgres"});
  EXPECT_EQ(none.status.code, 1) << none.out;
  EXPECT_NE(none.err.find("holds no quality store"), std::string::npos) << none.err;
  EXPECT_EQ(none.err.find("s3cret-pw"), std::string::npos) << none.err;
}

TEST_F(PgCliE2E, CostReportReadsTheRowsOfEveryReplica) {
  for (const char* replica : {"gw-a", "gw-b"}) {
    policies::PostgresLedgerOptions o;
    o.replica_id = replica;
    auto ledger = policies::openPostgresLedger(url_, o);
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    policies::LedgerRow row;
    row.request_id = std::string("req-") + replica;
    row.team = std::string("team-") + replica;
    row.key_id = "k";
    row.model = "gpt-4o";
    row.route = "openai/gpt-4o";
    row.kind = "cloud";
    row.decision = "cloud";
    row.cost_usd = 0.25;
    row.unix_ms = kT0;
    ASSERT_TRUE((*ledger)->record(row).ok());
    ASSERT_TRUE((*ledger)->flush().ok());
  }
  std::string html = work_.file("cost.html");
  RunResult rc = runCommand(cliBin(), {"report", "cost", "--ledger", url_, "--out", html});
  ASSERT_EQ(rc.status.code, 0) << rc.err;
  std::ifstream f(html);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("team-gw-a"), std::string::npos);
  EXPECT_NE(text.find("team-gw-b"), std::string::npos);
  EXPECT_NE(text.find("<svg"), std::string::npos);
}

}  // namespace
}  // namespace sytest
