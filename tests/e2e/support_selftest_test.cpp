// Self-tests of the test machinery (tests/support): the loopback server, the fake OpenAI
// upstream, the HTTP client and the process runner. They need no switchyard binary, and they
// make sure that a passing end-to-end test means the gateway behaved, not that a fake was lax.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

Json chatBody(const std::string& text, bool stream, bool include_usage = false) {
  Json b = {{"model", "upstream-x"},
            {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
  if (stream) b["stream"] = true;
  if (include_usage) b["stream_options"] = {{"include_usage", true}};
  return b;
}

TEST(FakeOpenAI, AnswersInOpenAIShape) {
  FakeOpenAI fake;
  Json req = chatBody("hello there", false);
  HttpResponse r = httpPost(fake.baseUrl() + "/chat/completions", req.dump());
  ASSERT_EQ(r.status, 200) << r.error;
  Json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "upstream-x");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "echo: hello there");
  EXPECT_EQ(j["usage"], FakeOpenAI::usageFor(req));
  EXPECT_EQ(FakeOpenAI::usageFor(req)["prompt_tokens"], 5);
  EXPECT_EQ(FakeOpenAI::usageFor(req)["completion_tokens"], 3);
  EXPECT_EQ(fake.chatRequestCount(), 1);
  EXPECT_EQ(fake.lastChatBody(), req);
}

TEST(FakeOpenAI, StreamsChunksUsageAndDone) {
  FakeOpenAI fake;
  Json req = chatBody("a b c", true, true);
  HttpResponse r = httpPost(fake.baseUrl() + "/chat/completions", req.dump());
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  auto events = sseEvents(r.body);
  // role, "echo:", " a", " b", " c", finish, usage, [DONE]
  ASSERT_EQ(events.size(), 8u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  Json role = Json::parse(events[0]);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(role["usage"].is_null());
  EXPECT_EQ(Json::parse(events[5])["choices"][0]["finish_reason"], "stop");
  Json usage = Json::parse(events[6]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"], FakeOpenAI::usageFor(req));

  HttpResponse plain = httpPost(fake.baseUrl() + "/chat/completions", chatBody("a", true).dump());
  for (const auto& e : sseEvents(plain.body)) {
    if (e != "[DONE]") {
      EXPECT_FALSE(Json::parse(e).contains("usage")) << e;
    }
  }
}

TEST(FakeOpenAI, FaultsApplyInOrderThenNormalAnswers) {
  FakeOpenAI fake;
  fake.setKeepAlive(false);
  fake.pushFault(Fault::rateLimited(9));
  fake.pushFault(Fault::error(400, "bad logit_bias", "invalid_request_error", "logit_bias"));
  fake.pushFault(Fault::malformedJson());
  fake.pushFault(Fault::garbage());
  fake.pushFault(Fault::reset());
  fake.pushFault(Fault::emptyClose());
  std::string url = fake.baseUrl() + "/chat/completions";
  std::string body = chatBody("x", false).dump();

  HttpResponse limited = httpPost(url, body);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.header("retry-after"), "9");
  EXPECT_EQ(limited.json()["error"]["code"], "rate_limit_exceeded");
  HttpResponse bad = httpPost(url, body);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json()["error"]["param"], "logit_bias");
  HttpResponse malformed = httpPost(url, body);
  EXPECT_EQ(malformed.status, 200);
  EXPECT_TRUE(malformed.json().is_null());
  EXPECT_FALSE(httpPost(url, body).ok()) << "garbage is not HTTP";
  EXPECT_FALSE(httpPost(url, body).ok()) << "reset";
  EXPECT_FALSE(httpPost(url, body).ok()) << "empty close";
  EXPECT_EQ(httpPost(url, body).status, 200);
  EXPECT_EQ(fake.chatRequestCount(), 7);
}

TEST(FakeOpenAI, CutStreamLeavesTheChunkedBodyUnterminated) {
  FakeOpenAI fake;
  fake.pushFault(Fault::cutStream(1));
  HttpResponse r = httpPost(fake.baseUrl() + "/chat/completions", chatBody("a b c", true).dump());
  EXPECT_FALSE(r.error.empty()) << "a cut chunked body must be an error to the client";
  EXPECT_EQ(sseEvents(r.body).size(), 2u) << r.body;  // role + 1 content
}

TEST(LoopbackServer, TellsWhenThePeerHangsUp) {
  FakeOpenAI fake;
  fake.pushFault(Fault::endless(milliseconds(20)));
  int pieces = 0;
  HttpClient client;
  auto t0 = std::chrono::steady_clock::now();
  HttpResponse r = client.stream("POST", fake.baseUrl() + "/chat/completions", {},
                                 chatBody("x", true).dump(), [&](std::string_view) {
                                   // While we read, the server must not think we left.
                                   if (++pieces == 5) {
                                     auto id = fake.lastChatRequest()->connection_id;
                                     EXPECT_FALSE(fake.server().connection(id)->closed);
                                   }
                                   return pieces < 10;
                                 });
  EXPECT_TRUE(r.aborted);
  auto id = fake.lastChatRequest()->connection_id;
  EXPECT_TRUE(fake.server().waitForPeerClose(id, milliseconds(1000)));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
}

TEST(LoopbackServer, HangEndsWhenTheClientGivesUpAndKeepAliveReusesConnections) {
  FakeOpenAI fake;
  fake.pushFault(Fault::hang());
  HttpResponse r = httpPost(fake.baseUrl() + "/chat/completions", chatBody("x", false).dump(), {},
                            milliseconds(300));
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(
      fake.server().waitForPeerClose(fake.lastChatRequest()->connection_id, milliseconds(1000)));

  HttpClient client;
  std::string url = fake.baseUrl() + "/chat/completions";
  EXPECT_EQ(client.request("POST", url, {}, chatBody("1", false).dump()).status, 200);
  HttpResponse second = client.request("POST", url, {}, chatBody("2", false).dump());
  EXPECT_EQ(second.status, 200);
  EXPECT_TRUE(second.reused_connection);
  fake.setKeepAlive(false);
  client.request("POST", url, {}, chatBody("3", false).dump());
  HttpResponse fourth = client.request("POST", url, {}, chatBody("4", false).dump());
  EXPECT_EQ(fourth.status, 200);
  EXPECT_FALSE(fourth.reused_connection);
}

TEST(LoopbackServer, StopEndsEveryHandlerPromptly) {
  auto server = std::make_unique<FakeOpenAI>();
  server->pushFault(Fault::hang());
  std::thread client([url = server->baseUrl()] {
    httpPost(url + "/chat/completions", chatBody("x", false).dump(), {}, milliseconds(5000));
  });
  ASSERT_TRUE(server->server().waitForRequests(1, milliseconds(2000)));
  auto t0 = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  client.join();
}

TEST(HttpClientHelpers, ParseSseAndPrometheusText) {
  auto events = sseEvents("data: {\"a\":1}\n\ndata: [DONE]\n\nevent: x\ndata: y\n\ndata: tail");
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0], "{\"a\":1}");
  EXPECT_EQ(events[1], "[DONE]");
  EXPECT_EQ(events[2].rfind("<malformed", 0), 0u);
  EXPECT_EQ(events[3].rfind("<unterminated", 0), 0u);

  std::string text =
      "# HELP switchyard_requests_total Requests.\n"
      "# TYPE switchyard_requests_total counter\n"
      "switchyard_requests_total{model=\"m1\",status=\"200\",team=\"a\"} 2\n"
      "switchyard_requests_total{model=\"m1\",status=\"200\",team=\"b\"} 3\n"
      "switchyard_requests_total{model=\"m1\",status=\"404\",team=\"a\"} 1\n"
      "switchyard_requests_total_extra 100\n"
      "switchyard_x_bucket{le=\"+Inf\"} 7 1700000000\n";
  EXPECT_EQ(metricValue(text, "switchyard_requests_total"), 6);
  EXPECT_EQ(metricValue(text, "switchyard_requests_total", {{"status", "200"}}), 5);
  EXPECT_EQ(metricValue(text, "switchyard_requests_total", {{"team", "a"}, {"status", "404"}}), 1);
  EXPECT_FALSE(metricValue(text, "switchyard_requests_total", {{"team", "zzz"}}));
  EXPECT_EQ(metricValue(text, "switchyard_x_bucket", {{"le", "+Inf"}}), 7);
}

TEST(TestProcess, CapturesOutputExitCodesAndSignals) {
  RunResult r = runCommand("/bin/sh", {"-c", "read k; echo \"got $k\"; echo oops >&2; exit 3"},
                           {{"SY_SELFTEST", "1"}}, std::string("key\n"));
  EXPECT_TRUE(r.status.exited);
  EXPECT_EQ(r.status.code, 3);
  EXPECT_EQ(r.out, "got key\n");
  EXPECT_EQ(r.err, "oops\n");

  auto p = Process::start("/bin/sh", {"-c", "echo \"ready $SY_SELFTEST\"; exec sleep 30"},
                          {{"SY_SELFTEST", "yes"}});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->readLine(milliseconds(3000)), "ready yes");
  EXPECT_TRUE(p->running());
  EXPECT_FALSE(p->wait(milliseconds(50)));
  p->signal(SIGTERM);
  auto exit = p->wait(milliseconds(3000));
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->exited);
  EXPECT_EQ(exit->signal, SIGTERM);

  EXPECT_FALSE(Process::start("/nonexistent/binary", {}));
  RunResult slow = runCommand("/bin/sh", {"-c", "sleep 30"}, {}, std::nullopt, milliseconds(200));
  EXPECT_TRUE(slow.timed_out);
}

}  // namespace
}  // namespace sytest
