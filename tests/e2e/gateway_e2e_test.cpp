// End-to-end: the real `switchyard` binary in front of a fake OpenAI upstream. Successful
// paths: completions (plain and streamed), model mapping, /v1/models, probes, metrics, the
// x-request-id and x-switchyard-route headers, keep-alive and concurrency.
#include <atomic>
#include <set>
#include <thread>

#include "tests/e2e/e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

TEST_F(GatewayE2E, NonStreamedCompletionAnswersWithThePublicModelName) {
  Json req = userChat("hello from the e2e suite");
  HttpResponse r = chat(req);
  ASSERT_EQ(r.status, 200) << r.error << r.body;
  EXPECT_NE(r.header("content-type").find("application/json"), std::string::npos);
  Json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("object", ""), "chat.completion");
  EXPECT_EQ(j.value("model", ""), "m1") << "the client must see the public name, not upstream-m1";
  EXPECT_TRUE(j.contains("id") && j["id"].is_string() && !j["id"].get<std::string>().empty());
  EXPECT_TRUE(j.contains("created") && j["created"].is_number_integer());
  ASSERT_TRUE(j.contains("choices") && j["choices"].is_array() && j["choices"].size() == 1);
  const Json& c = j["choices"][0];
  EXPECT_EQ(c.value("index", -1), 0);
  EXPECT_EQ(c["message"].value("role", ""), "assistant");
  EXPECT_EQ(c["message"].value("content", ""), FakeOpenAI::replyFor(req));
  EXPECT_EQ(c.value("finish_reason", ""), "stop");
}

TEST_F(GatewayE2E, UsagePassesThroughUnchanged) {
  Json req = userChat("count these five words");
  HttpResponse r = chat(req);
  ASSERT_EQ(r.status, 200) << r.body;
  Json want = FakeOpenAI::usageFor(req);
  Json usage = r.json()["usage"];
  ASSERT_TRUE(usage.is_object()) << r.body;
  EXPECT_EQ(usage.value("prompt_tokens", -1), want["prompt_tokens"].get<int>());
  EXPECT_EQ(usage.value("completion_tokens", -1), want["completion_tokens"].get<int>());
  EXPECT_EQ(usage.value("total_tokens", -1), want["total_tokens"].get<int>());
}

TEST_F(GatewayE2E, ForwardsUpstreamModelProviderKeyAndParameters) {
  Json req = userChat("map me");
  req["temperature"] = 0.25;
  req["max_tokens"] = 17;
  Json system = {{"role", "system"}, {"content", "be brief"}};
  req["messages"].insert(req["messages"].begin(), system);
  HttpResponse r = chat(req);
  ASSERT_EQ(r.status, 200) << r.body;

  ASSERT_EQ(fake_.chatRequestCount(), 1);
  auto up = fake_.lastChatRequest();
  ASSERT_TRUE(up);
  EXPECT_EQ(up->method, "POST");
  EXPECT_EQ(up->path(), "/v1/chat/completions");
  EXPECT_EQ(up->header("authorization"), std::string("Bearer ") + kUpstreamKey);
  for (const auto& [name, value] : up->headers) {
    EXPECT_EQ(value.find(kClientKey), std::string::npos)
        << "the client's key leaked upstream in header " << name;
  }
  EXPECT_EQ(up->body.find(kClientKey), std::string::npos);
  Json body = fake_.lastChatBody();
  ASSERT_TRUE(body.is_object()) << up->body;
  EXPECT_EQ(body.value("model", ""), "upstream-m1");
  EXPECT_DOUBLE_EQ(body.value("temperature", 0.0), 0.25);
  EXPECT_EQ(body.value("max_tokens", 0), 17);
  ASSERT_TRUE(body["messages"].is_array());
  ASSERT_EQ(body["messages"].size(), 2u);
  EXPECT_EQ(body["messages"][0].value("role", ""), "system");
  EXPECT_EQ(body["messages"][0].value("content", ""), "be brief");
  EXPECT_EQ(body["messages"][1].value("content", ""), "map me");
  EXPECT_FALSE(body.value("stream", false));
}

TEST_F(GatewayE2E, EachModelMapsToItsUpstreamNameAndRoute) {
  HttpResponse r1 = chat(userChat("one", "m1"));
  ASSERT_EQ(r1.status, 200) << r1.body;
  EXPECT_EQ(fake_.lastChatBody().value("model", ""), "upstream-m1");
  EXPECT_EQ(r1.header("x-switchyard-route"), "up/upstream-m1");

  HttpResponse r2 = chat(userChat("two", "m2"));
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(fake_.lastChatBody().value("model", ""), "upstream-m2");
  EXPECT_EQ(r2.header("x-switchyard-route"), "up/upstream-m2");
  EXPECT_EQ(r2.json().value("model", ""), "m2");
}

TEST_F(GatewayE2E, StreamedCompletionUsesOpenAIChunkFormat) {
  Json req = streamedChat("stream these words please", /*include_usage=*/false);
  HttpResponse r = chat(req);
  ASSERT_EQ(r.status, 200) << r.error << r.body;
  EXPECT_NE(r.header("content-type").find("text/event-stream"), std::string::npos)
      << r.header("content-type");
  EXPECT_TRUE(fake_.lastChatBody().value("stream", false)) << "upstream call must stream";

  bool saw_done = false, done_last = false;
  auto chunks = jsonEvents(r.body, &saw_done, &done_last);
  EXPECT_TRUE(saw_done) << r.body;
  EXPECT_TRUE(done_last) << "[DONE] must be the last event:\n" << r.body;
  EXPECT_EQ(r.body.substr(r.body.size() - 14), "data: [DONE]\n\n");
  ASSERT_GE(chunks.size(), 2u) << r.body;

  std::string text, id = chunks[0].value("id", "");
  EXPECT_FALSE(id.empty());
  int finish_chunks = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Json& c = chunks[i];
    EXPECT_EQ(c.value("object", ""), "chat.completion.chunk") << c.dump();
    EXPECT_EQ(c.value("model", ""), "m1") << c.dump();
    EXPECT_EQ(c.value("id", ""), id) << "every chunk of one stream shares its id";
    ASSERT_TRUE(c.contains("choices") && c["choices"].is_array() && c["choices"].size() == 1)
        << "no usage chunk was asked for: " << c.dump();
    EXPECT_FALSE(c.contains("usage") && !c["usage"].is_null()) << c.dump();
    const Json& choice = c["choices"][0];
    EXPECT_EQ(choice.value("index", -1), 0);
    ASSERT_TRUE(choice.contains("delta") && choice["delta"].is_object()) << c.dump();
    if (i == 0) {
      EXPECT_EQ(choice["delta"].value("role", ""), "assistant") << c.dump();
    }
    if (choice["delta"].contains("content") && choice["delta"]["content"].is_string()) {
      text += choice["delta"]["content"].get<std::string>();
    }
    if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
      ++finish_chunks;
      EXPECT_EQ(choice["finish_reason"], "stop");
      EXPECT_EQ(i, chunks.size() - 1) << "the finish chunk comes last";
    }
  }
  EXPECT_EQ(finish_chunks, 1);
  EXPECT_EQ(text, FakeOpenAI::replyFor(req));
}

TEST_F(GatewayE2E, StreamedUsageChunkComesLastWhenAsked) {
  Json req = streamedChat("usage at the end", /*include_usage=*/true);
  HttpResponse r = chat(req);
  ASSERT_EQ(r.status, 200) << r.error << r.body;
  bool saw_done = false, done_last = false;
  auto chunks = jsonEvents(r.body, &saw_done, &done_last);
  EXPECT_TRUE(saw_done && done_last) << r.body;
  ASSERT_GE(chunks.size(), 3u) << r.body;

  const Json& last = chunks.back();
  EXPECT_EQ(last.value("object", ""), "chat.completion.chunk");
  EXPECT_EQ(last.value("model", ""), "m1");
  ASSERT_TRUE(last.contains("choices") && last["choices"].is_array()) << last.dump();
  EXPECT_TRUE(last["choices"].empty()) << "the usage chunk has choices: [] " << last.dump();
  ASSERT_TRUE(last.contains("usage") && last["usage"].is_object()) << last.dump();
  Json want = FakeOpenAI::usageFor(req);
  EXPECT_EQ(last["usage"].value("prompt_tokens", -1), want["prompt_tokens"].get<int>());
  EXPECT_EQ(last["usage"].value("completion_tokens", -1), want["completion_tokens"].get<int>());
  EXPECT_EQ(last["usage"].value("total_tokens", -1), want["total_tokens"].get<int>());

  const Json& finish = chunks[chunks.size() - 2];
  ASSERT_EQ(finish["choices"].size(), 1u) << finish.dump();
  EXPECT_EQ(finish["choices"][0].value("finish_reason", Json()).dump(), "\"stop\"");
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["choices"].size(), 1u) << "only the last chunk is usage-only";
    EXPECT_TRUE(!chunks[i].contains("usage") || chunks[i]["usage"].is_null())
        << "usage appears once, at the end: " << chunks[i].dump();
  }
}

TEST_F(GatewayE2E, StreamPassesChunksThroughAsTheyArrive) {
  fake_.setDefaultInterval(milliseconds(150));
  Json req = streamedChat("one two three four five", false);
  std::vector<std::pair<Clock::time_point, std::string>> arrivals;
  std::string pending;
  HttpClient client;
  HttpResponse r = client.stream(
      "POST", url("/v1/chat/completions"), auth(), req.dump(), [&](std::string_view piece) {
        pending.append(piece);
        for (auto e = pending.find("\n\n"); e != std::string::npos; e = pending.find("\n\n")) {
          arrivals.emplace_back(Clock::now(), pending.substr(0, e));
          pending.erase(0, e + 2);
        }
        return true;
      });
  ASSERT_EQ(r.status, 200) << r.error;
  ASSERT_GE(arrivals.size(), 7u) << r.body;  // role, 6 pieces, finish, [DONE]
  // The first content arrives while the upstream is still producing the rest: about 150 ms
  // after the role chunk, with the end 6 gaps (900 ms) after it.
  auto first_content = arrivals[1].first;
  auto end = arrivals.back().first;
  EXPECT_GE(std::chrono::duration_cast<milliseconds>(end - first_content).count(), 500)
      << "the gateway buffered the stream instead of passing chunks through";
  EXPECT_EQ(arrivals.back().second, "data: [DONE]");
}

TEST_F(GatewayE2E, ListsConfiguredModels) {
  HttpResponse r = httpGet(url("/v1/models"), auth());
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j.value("object", ""), "list") << r.body;
  ASSERT_TRUE(j.contains("data") && j["data"].is_array()) << r.body;
  std::set<std::string> ids;
  for (const auto& m : j["data"]) {
    ids.insert(m.value("id", ""));
    EXPECT_EQ(m.value("object", ""), "model") << m.dump();
    EXPECT_EQ(m.value("owned_by", ""), m.value("id", "") == "auto" ? "switchyard" : "up")
        << m.dump();
    EXPECT_TRUE(m.contains("created") && m["created"].is_number_integer()) << m.dump();
  }
  // `auto`, the team's routing, first; then the configured models.
  EXPECT_EQ(j["data"][0].value("id", ""), "auto");
  EXPECT_EQ(ids, (std::set<std::string>{"auto", "m1", "m2"}));
  HttpResponse routed = httpGet(url("/v1/models/auto"), auth());
  ASSERT_EQ(routed.status, 200) << routed.body;
  EXPECT_NE(routed.json().value("description", "").find("routed by the team's policy"),
            std::string::npos)
      << routed.body;
  EXPECT_EQ(fake_.server().requestCount(), 0) << "listing models needs no upstream call";

  HttpResponse one = httpGet(url("/v1/models/m2"), auth());
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.json().value("id", ""), "m2");
  EXPECT_EQ(one.json().value("object", ""), "model");
  EXPECT_EQ(one.json().value("owned_by", ""), "up");

  HttpResponse missing = httpGet(url("/v1/models/upstream-m1"), auth());
  expectError(missing, 404, "invalid_request_error", "model_not_found");
}

TEST_F(GatewayE2E, HealthAndReadinessProbesNeedNoKey) {
  HttpResponse h = httpGet(url("/healthz"));
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.json().value("status", ""), "ok") << h.body;
  HttpResponse ready = httpGet(url("/readyz"));
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(fake_.server().requestCount(), 0);
}

TEST_F(GatewayE2E, MetricsCountRequestsByTeamModelAndStatus) {
  ASSERT_EQ(chat(userChat("a")).status, 200);
  ASSERT_EQ(chat(userChat("b")).status, 200);
  ASSERT_EQ(chat(userChat("c", "nope")).status, 404);

  metricsWhen([](const std::string& text) {
    return metricValue(text, "switchyard_requests_total").value_or(0) >= 3;
  });
  HttpResponse r = httpGet(url("/metrics"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.header("content-type").find("text/plain"), std::string::npos)
      << r.header("content-type");
  auto ok = metricValue(r.body, "switchyard_requests_total",
                        {{"team", "research"}, {"model", "m1"}, {"status", "200"}});
  ASSERT_TRUE(ok) << r.body;
  EXPECT_EQ(*ok, 2);
  auto ok_route = metricValue(r.body, "switchyard_requests_total",
                              {{"model", "m1"}, {"route", "up/upstream-m1"}});
  EXPECT_TRUE(ok_route) << "route label expected as provider/upstream_model:\n" << r.body;
  EXPECT_EQ(metricValue(r.body, "switchyard_requests_total", {{"status", "404"}}).value_or(0), 1)
      << r.body;
  auto count = metricValue(r.body, "switchyard_request_duration_seconds_count");
  ASSERT_TRUE(count) << r.body;
  EXPECT_GE(*count, 2);
  EXPECT_TRUE(metricValue(r.body, "switchyard_request_duration_seconds_bucket", {{"le", "+Inf"}}))
      << r.body;
  EXPECT_EQ(r.body.find(kClientKey), std::string::npos);

  // The counters move.
  ASSERT_EQ(chat(userChat("d")).status, 200);
  std::string after = metricsWhen("switchyard_requests_total",
                                  {{"team", "research"}, {"model", "m1"}, {"status", "200"}}, 3);
  EXPECT_EQ(metricValue(after, "switchyard_requests_total",
                        {{"team", "research"}, {"model", "m1"}, {"status", "200"}})
                .value_or(0),
            3);
}

TEST_F(GatewayE2E, MetricsRecordTimeToFirstTokenOfStreams) {
  ASSERT_EQ(chat(streamedChat("first token timing", true)).status, 200);
  std::string text = metricsWhen("switchyard_time_to_first_token_seconds_count", {}, 1);
  auto n = metricValue(text, "switchyard_time_to_first_token_seconds_count");
  ASSERT_TRUE(n) << text;
  EXPECT_GE(*n, 1);
  auto sum = metricValue(text, "switchyard_time_to_first_token_seconds_sum");
  ASSERT_TRUE(sum);
  EXPECT_GT(*sum, 0);
  EXPECT_LT(*sum, 5);
}

TEST_F(GatewayE2E, RequestIdIsEchoedOrGenerated) {
  HttpResponse echoed = chat(userChat("id please"), auth({{"x-request-id", "e2e-req-42"}}));
  ASSERT_EQ(echoed.status, 200);
  EXPECT_EQ(echoed.header("x-request-id"), "e2e-req-42");

  HttpResponse a = chat(userChat("no id"));
  HttpResponse b = chat(userChat("no id"));
  EXPECT_FALSE(a.header("x-request-id").empty());
  EXPECT_FALSE(b.header("x-request-id").empty());
  EXPECT_NE(a.header("x-request-id"), b.header("x-request-id"));

  // Errors and non-chat routes carry one too.
  HttpResponse unauth = chat(userChat("x"), {{"x-request-id", "e2e-req-401"}});
  EXPECT_EQ(unauth.status, 401);
  EXPECT_EQ(unauth.header("x-request-id"), "e2e-req-401");
  EXPECT_FALSE(httpGet(url("/nope")).header("x-request-id").empty());
  EXPECT_FALSE(httpGet(url("/healthz")).header("x-request-id").empty());
  HttpResponse streamed = chat(streamedChat("s", false), auth({{"x-request-id", "e2e-s"}}));
  EXPECT_EQ(streamed.header("x-request-id"), "e2e-s");
}

TEST_F(GatewayE2E, RouteHeaderNamesProviderOnlyWhenOneAnswered) {
  HttpResponse ok = chat(userChat("route"));
  EXPECT_EQ(ok.header("x-switchyard-route"), "up/upstream-m1");
  HttpResponse streamed = chat(streamedChat("route", false));
  EXPECT_EQ(streamed.header("x-switchyard-route"), "up/upstream-m1");

  for (const HttpResponse& r :
       {chat(userChat("x", "nope")), chat(userChat("x"), {}), httpGet(url("/healthz"))}) {
    std::string route = r.header("x-switchyard-route");
    EXPECT_TRUE(route.empty() || route == "none") << "status " << r.status << " route " << route;
  }
}

TEST_F(GatewayE2E, KeepAliveServesSeveralRequestsOnOneConnection) {
  HttpClient client;
  HttpResponse first = client.request("GET", url("/healthz"));
  ASSERT_EQ(first.status, 200) << first.error;
  HttpResponse c1 = client.request("POST", url("/v1/chat/completions"), auth(),
                                   userChat("on one connection").dump());
  EXPECT_EQ(c1.status, 200) << c1.error;
  EXPECT_TRUE(c1.reused_connection);
  HttpResponse s = client.request("POST", url("/v1/chat/completions"), auth(),
                                  streamedChat("streamed too", true).dump());
  EXPECT_EQ(s.status, 200) << s.error;
  EXPECT_TRUE(s.reused_connection);
  EXPECT_EQ(sseEvents(s.body).back(), "[DONE]");
  HttpResponse err = client.request("POST", url("/v1/chat/completions"), auth(), "{broken");
  EXPECT_EQ(err.status, 400);
  EXPECT_TRUE(err.reused_connection) << "a 400 need not close the connection";
  HttpResponse models = client.request("GET", url("/v1/models"), auth());
  EXPECT_EQ(models.status, 200);
  EXPECT_TRUE(models.reused_connection);
}

TEST_F(GatewayE2E, RawKeepAliveConnectionAnswersInOrder) {
  RawConnection c(gw_->port());
  ASSERT_TRUE(c.connected());
  std::string body = userChat("raw").dump();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " +
        std::string(kClientKey) +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nx-request-id: raw-" + std::to_string(i) + "\r\n\r\n" + body));
    std::string resp = c.readResponse(milliseconds(5000));
    ASSERT_EQ(statusOf(resp), 200) << resp;
    EXPECT_NE(resp.find("raw-" + std::to_string(i)), std::string::npos) << resp;
    EXPECT_NE(resp.find("echo: raw"), std::string::npos) << resp;
  }
  EXPECT_FALSE(c.closedByPeer());
}

TEST_F(GatewayE2E, ConcurrentStreamsAreServedInParallel) {
  constexpr int kStreams = 6;
  fake_.setDefaultInterval(milliseconds(100));  // each stream takes about 0.6 s upstream
  std::atomic<int> complete{0};
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      Json req = streamedChat("parallel stream " + std::to_string(i), false);
      HttpResponse r = httpPost(url("/v1/chat/completions"), req.dump(), auth());
      std::string text;
      for (const auto& e : sseEvents(r.body)) {
        Json j = Json::parse(e, nullptr, false);
        if (j.is_object() && !j["choices"].empty() &&
            j["choices"][0]["delta"].contains("content")) {
          text += j["choices"][0]["delta"].value("content", "");
        }
      }
      if (r.status == 200 && text == FakeOpenAI::replyFor(req)) ++complete;
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(complete.load(), kStreams);
  EXPECT_LT(elapsed, 2.5) << "streams were served one after another";
  EXPECT_EQ(fake_.chatRequestCount(), kStreams);
}

}  // namespace
}  // namespace sytest
