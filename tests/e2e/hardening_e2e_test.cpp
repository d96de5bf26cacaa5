// Server-side hardening through the real binary: who may read /metrics and where it is served
// (metrics.require_admin_key, metrics.port), the dashboard's CSP against framing, JSON bodies
// over their depth or size bound, and Expect: 100-continue.
#include "tests/e2e/e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

constexpr const char* kAdminKey = "sk-admin-hardening-8d21";

class HardeningE2E : public GatewayE2E {
 protected:
  // Restarts the gateway on the fixture's config with `edit` applied to its YAML text.
  void restartWith(const std::function<void(std::string&)>& edit) {
    gw_.reset();
    GatewayConfig cfg;
    cfg.upstream_url = fake_.baseUrl();
    std::string yaml = cfg.yaml(key_hash_);
    edit(yaml);
    SwitchyardServer::Options opts;
    opts.env = {{"UP_KEY", kUpstreamKey}};
    std::string error;
    gw_ = SwitchyardServer::start(yaml, opts, &error);
    ASSERT_TRUE(gw_) << error;
  }

  static void addAdminKey(std::string& yaml) {
    std::string at = "  anonymous_team: local\n";
    yaml.replace(yaml.find(at), at.size(),
                 at + "  admin_keys: [{id: ops, sha256: " + hashKey(kAdminKey) + "}]\n");
  }

  // The metrics listener's port, from the structured listening event on stderr.
  int metricsPort() const {
    std::istringstream lines(gw_->stderrText());
    for (std::string line; std::getline(lines, line);) {
      Json j = Json::parse(line, nullptr, false);
      if (j.is_object() && j.value("msg", "") == "listening" && j.contains("metrics_port")) {
        return j["metrics_port"].get<int>();
      }
    }
    return 0;
  }

  static std::string nested(int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  }
};

TEST_F(HardeningE2E, MetricsNeedAnAdminKeyWhenConfigured) {
  ASSERT_NO_FATAL_FAILURE(restartWith([](std::string& yaml) {
    addAdminKey(yaml);
    yaml += "metrics: {require_admin_key: true}\n";
  }));
  expectError(httpGet(url("/metrics")), 401, "authentication_error");
  HttpResponse team = httpGet(url("/metrics"), auth());
  EXPECT_EQ(team.status, 401) << "a team key read every team's spend";
  HttpResponse admin =
      httpGet(url("/metrics"), {{"Authorization", std::string("Bearer ") + kAdminKey}});
  EXPECT_EQ(admin.status, 200);
  EXPECT_NE(admin.body.find("switchyard_requests_total"), std::string::npos);
}

TEST_F(HardeningE2E, MetricsOnASeparateListenerOnly) {
  ASSERT_NO_FATAL_FAILURE(
      restartWith([](std::string& yaml) { yaml += "metrics: {listen: 127.0.0.1, port: 0}\n"; }));
  // The event is logged just after the listening line on stdout.
  int port = 0;
  waitUntil([&] { return (port = metricsPort()) > 0; }, milliseconds(3000));
  ASSERT_GT(port, 0) << gw_->stderrText();
  EXPECT_NE(port, gw_->port());
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  HttpResponse m = httpGet(base + "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("switchyard_"), std::string::npos);
  // Nothing else there, and no metrics on the main listener.
  EXPECT_EQ(httpGet(base + "/healthz").status, 404);
  EXPECT_EQ(httpGet(url("/metrics")).status, 404);
  EXPECT_EQ(httpGet(url("/healthz")).status, 200);
}

TEST_F(HardeningE2E, DashboardMayNotBeFramed) {
  HttpResponse page = httpGet(url("/dashboard"));
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.header("content-security-policy").find("frame-ancestors 'none'"),
            std::string::npos)
      << page.header("content-security-policy");
}

TEST_F(HardeningE2E, OverDeepJsonIsRefusedWithTheReason) {
  Json body = userChat("deep");
  std::string text = body.dump();
  text.insert(text.size() - 1, ",\"metadata_extra\":" + nested(200));
  Json err = expectError(chatRaw(text), 400, "invalid_request_error");
  EXPECT_NE(err.value("message", "").find("nest"), std::string::npos) << err.dump();
  // Feedback bodies too.
  HttpResponse fb = httpPost(url("/v1/feedback"), "{\"request_id\":" + nested(500) + "}", auth());
  EXPECT_EQ(fb.status, 400) << fb.body;
}

TEST_F(HardeningE2E, JsonWithTooManyValuesIsRefusedBeforeItIsBuilt) {
  // 300,000 tiny values in well under the body limit: a tree of them would cost far more
  // memory than the text.
  std::string many = "[0";
  for (int i = 0; i < 300000; ++i) many += ",0";
  many += "]";
  std::string text = userChat("wide").dump();
  text.insert(text.size() - 1, ",\"wide\":" + many);
  Json err = expectError(chatRaw(text), 400, "invalid_request_error");
  EXPECT_NE(err.value("message", "").find("values"), std::string::npos) << err.dump();
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  std::string m = metricsWhen("switchyard_http_rejected_total", {{"reason", "json_bounds"}}, 1);
  EXPECT_GE(metricValue(m, "switchyard_http_rejected_total", {{"reason", "json_bounds"}})
                .value_or(0),
            1);
}

TEST_F(HardeningE2E, ExpectContinueGetsTheInterimResponse) {
  std::string body = userChat("continue").dump();
  RawConnection conn(gw_->port());
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer " + std::string(kClientKey) +
                        "\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n\r\n"));
  std::string interim = conn.readUntil(
      [](const std::string& got) { return got.find("\r\n\r\n") != std::string::npos; },
      milliseconds(3000));
  ASSERT_EQ(statusOf(interim), 100) << interim;
  ASSERT_TRUE(conn.send(body));
  std::string all = conn.readUntil(
      [](const std::string& got) { return got.find("echo: continue") != std::string::npos; },
      milliseconds(5000));
  EXPECT_NE(all.find("200 OK"), std::string::npos) << all;
  EXPECT_NE(all.find("echo: continue"), std::string::npos) << all;
}

}  // namespace
}  // namespace sytest
