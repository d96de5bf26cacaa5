// End-to-end: errors. Bad requests, authentication, unknown models and paths, and every
// upstream failure the gateway must translate (status, error shape, bounded time).
#include <string>

#include "tests/e2e/e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

// --- the client's mistakes ---------------------------------------------------------------

TEST_F(GatewayE2E, MalformedJsonIs400WithNullParam) {
  HttpResponse r = chatRaw("{\"model\": \"m1\", \"messages\": [");
  Json e = expectError(r, 400, "invalid_request_error");
  EXPECT_TRUE(e.contains("param") && e["param"].is_null()) << r.body;
  EXPECT_EQ(fake_.chatRequestCount(), 0);
}

TEST_F(GatewayE2E, WrongTypesNameTheField) {
  Json bad_temp = userChat("x");
  bad_temp["temperature"] = "hot";
  EXPECT_EQ(expectError(chat(bad_temp), 400, "invalid_request_error").value("param", ""),
            "temperature");

  Json bad_role = userChat("x");
  bad_role["messages"][0]["role"] = "wizard";
  EXPECT_EQ(expectError(chat(bad_role), 400, "invalid_request_error").value("param", ""),
            "messages[0].role");

  Json bad_stream = userChat("x");
  bad_stream["stream"] = "yes";
  EXPECT_EQ(expectError(chat(bad_stream), 400, "invalid_request_error").value("param", ""),
            "stream");

  Json no_messages = {{"model", "m1"}};
  EXPECT_EQ(expectError(chat(no_messages), 400, "invalid_request_error").value("param", ""),
            "messages");

  Json out_of_range = userChat("x");
  out_of_range["temperature"] = 7;
  EXPECT_EQ(expectError(chat(out_of_range), 400, "invalid_request_error").value("param", ""),
            "temperature");

  EXPECT_EQ(expectError(chatRaw("[1,2,3]"), 400, "invalid_request_error").dump().empty(), false);
  EXPECT_EQ(fake_.chatRequestCount(), 0) << "invalid requests never reach the upstream";
}

TEST_F(GatewayE2E, OversizedBodyIs413) {
  // Valid JSON just over max_body_bytes (1 MiB in the fixture's config).
  Json big = userChat(std::string(1100 * 1024, 'a'));
  HttpResponse r = chat(big);
  expectError(r, 413, "invalid_request_error");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  EXPECT_EQ(httpGet(url("/healthz")).status, 200);
}

TEST_F(GatewayE2E, OversizedContentLengthIs413BeforeTheBodyArrives) {
  RawConnection c(gw_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " +
                     std::string(kClientKey) +
                     "\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{"));
  std::string resp = c.readResponse(milliseconds(3000));
  EXPECT_EQ(statusOf(resp), 413) << resp;
  EXPECT_EQ(resp.find("<html"), std::string::npos) << resp;
}

TEST_F(GatewayE2E, MissingOrUnknownKeyIs401) {
  Json req = userChat("who am i");
  expectError(chat(req, {}), 401, "authentication_error", "invalid_api_key");
  expectError(chat(req, {{"Authorization", "Bearer sk-not-a-key"}}), 401, "authentication_error",
              "invalid_api_key");
  expectError(chat(req, {{"Authorization", std::string("Basic ") + kClientKey}}), 401,
              "authentication_error", "invalid_api_key");
  expectError(chat(req, {{"Authorization", "Bearer"}}), 401, "authentication_error",
              "invalid_api_key");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  EXPECT_EQ(chat(req).status, 200) << "the right key still works";
}

TEST_F(GatewayE2E, AnonymousAccessWhenAllowedStillRejectsUnknownKeys) {
  GatewayConfig cfg;
  cfg.allow_unauthenticated = true;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  EXPECT_EQ(chat(userChat("anon"), {}).status, 200);
  expectError(chat(userChat("anon"), {{"Authorization", "Bearer sk-wrong"}}), 401,
              "authentication_error", "invalid_api_key");
  std::string m =
      metricsWhen("switchyard_requests_total", {{"team", "local"}, {"status", "200"}}, 1);
  EXPECT_EQ(metricValue(m, "switchyard_requests_total", {{"team", "local"}, {"status", "200"}})
                .value_or(0),
            1)
      << m;
}

TEST_F(GatewayE2E, UnknownModelIs404) {
  HttpResponse r = chat(userChat("x", "gpt-17"));
  expectError(r, 404, "invalid_request_error", "model_not_found");
  EXPECT_EQ(fake_.chatRequestCount(), 0);
  // The upstream name is not a public name.
  expectError(chat(userChat("x", "upstream-m1")), 404, "invalid_request_error", "model_not_found");
}

TEST_F(GatewayE2E, UnknownPathAndWrongMethodAreJsonErrors) {
  HttpResponse path = httpGet(url("/v1/completions/nope"), auth());
  Json e = expectError(path, 404, "invalid_request_error");
  EXPECT_EQ(path.body.find("<html"), std::string::npos);

  HttpClient client;
  HttpResponse get_chat = client.request("GET", url("/v1/chat/completions"), auth());
  expectError(get_chat, 405, "invalid_request_error");
  HttpResponse del = client.request("DELETE", url("/v1/models"), auth());
  expectError(del, 405, "invalid_request_error");
  HttpResponse post_health = client.request("POST", url("/healthz"), {}, "{}");
  expectError(post_health, 405, "invalid_request_error");
}

// --- the upstream's failures ---------------------------------------------------------------

TEST_F(GatewayE2E, Upstream500Is502AndCounted) {
  fake_.pushFault(Fault::error(500, "The server had an error while processing your request."));
  HttpResponse r = chat(userChat("x"));
  expectError(r, 502, "upstream_error");
  EXPECT_EQ(fake_.chatRequestCount(), 1) << "a failed call is not retried by this contract";
  std::string m = metricsWhen("switchyard_requests_total", {{"model", "m1"}, {"status", "502"}}, 1);
  EXPECT_GE(metricValue(m, "switchyard_upstream_errors_total", {{"provider", "up"}}).value_or(0), 1)
      << m;
  EXPECT_GE(
      metricValue(m, "switchyard_requests_total", {{"model", "m1"}, {"status", "502"}}).value_or(0),
      1)
      << m;
}

TEST_F(GatewayE2E, Upstream503Is502) {
  fake_.pushFault(Fault::error(503, "The engine is currently overloaded."));
  expectError(chat(userChat("x")), 502, "upstream_error");
}

TEST_F(GatewayE2E, Upstream429PassesThroughWithRetryAfter) {
  fake_.pushFault(Fault::rateLimited(7));
  HttpResponse r = chat(userChat("x"));
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.header("retry-after"), "7");
  Json j = r.json();
  ASSERT_TRUE(j.contains("error") && j["error"].is_object()) << r.body;
  EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("message")) << r.body;
}

TEST_F(GatewayE2E, Upstream400PassesThroughStatusAndMessage) {
  const std::string msg = "Invalid value for 'logit_bias': token 99999999 is out of range.";
  fake_.pushFault(Fault::error(400, msg, "invalid_request_error", "logit_bias"));
  HttpResponse r = chat(userChat("x"));
  Json e = expectError(r, 400, "invalid_request_error");
  EXPECT_NE(e.value("message", "").find(msg), std::string::npos) << r.body;

  fake_.pushFault(Fault::error(422, "Unprocessable thing", "invalid_request_error"));
  HttpResponse r422 = chat(userChat("x"));
  EXPECT_EQ(r422.status, 422) << r422.body;
  EXPECT_NE(r422.body.find("Unprocessable thing"), std::string::npos) << r422.body;
}

TEST_F(GatewayE2E, UpstreamThatNeverAnswersIs504AndIsHungUpOn) {
  GatewayConfig cfg;
  cfg.first_byte_s = 1;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  fake_.pushFault(Fault::hang());
  HttpResponse r = chat(userChat("x"), auth(), milliseconds(8000));
  expectError(r, 504, "timeout_error");
  EXPECT_GE(r.elapsed_s, 0.9);
  EXPECT_LT(r.elapsed_s, 3.5) << "first_byte_s is 1";
  auto up = fake_.lastChatRequest();
  ASSERT_TRUE(up);
  EXPECT_TRUE(fake_.server().waitForPeerClose(up->connection_id, milliseconds(2000)))
      << "the gateway must drop the upstream call it gave up on";
}

TEST_F(GatewayE2E, SlowFirstByteWithinTheLimitSucceeds) {
  GatewayConfig cfg;
  cfg.first_byte_s = 2;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  fake_.pushFault(Fault::delay(milliseconds(600)));
  HttpResponse r = chat(userChat("patience"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_GE(r.elapsed_s, 0.55);
}

TEST_F(GatewayE2E, RefusedConnectionIs502) {
  int closed_port;
  {
    LoopbackServer probe([](const Request&, ResponseWriter&) {});
    closed_port = probe.port();
  }
  ASSERT_TRUE(connectRefused(closed_port));
  GatewayConfig cfg;
  cfg.upstream_url = "http://127.0.0.1:" + std::to_string(closed_port) + "/v1";
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  HttpResponse r = chat(userChat("anyone there"));
  expectError(r, 502, "upstream_error");
  EXPECT_LT(r.elapsed_s, 3.0);
  std::string route = r.header("x-switchyard-route");
  EXPECT_TRUE(route.empty() || route == "none" || route == "up/upstream-m1") << route;
}

TEST_F(GatewayE2E, UpstreamGarbageIs502) {
  fake_.setKeepAlive(false);  // each fault on a fresh connection: no transparent resend
  fake_.pushFault(Fault::garbage());
  expectError(chat(userChat("x")), 502, "upstream_error");

  fake_.pushFault(Fault::malformedJson());
  expectError(chat(userChat("x")), 502, "upstream_error");
  fake_.pushFault(Fault::emptyClose());
  expectError(chat(userChat("x")), 502, "upstream_error");
  fake_.pushFault(Fault::reset());
  expectError(chat(userChat("x")), 502, "upstream_error");
  fake_.pushFault(Fault::cutStream(0));  // non-streamed: half the promised body
  expectError(chat(userChat("x")), 502, "upstream_error");
  EXPECT_EQ(fake_.chatRequestCount(), 5);
  // And the gateway is fine afterwards.
  EXPECT_EQ(chat(userChat("x")).status, 200);
}

TEST_F(GatewayE2E, StreamedRequestFailingBeforeTheFirstChunkIsAPlainError) {
  fake_.pushFault(Fault::error(500, "boom"));
  HttpResponse r = chat(streamedChat("x", true));
  expectError(r, 502, "upstream_error");
  EXPECT_EQ(r.header("content-type").find("text/event-stream"), std::string::npos);

  fake_.pushFault(Fault::rateLimited(3));
  HttpResponse limited = chat(streamedChat("x", false));
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(limited.header("retry-after"), "3");
}

// The stream started, then broke: the client gets the chunks so far, one error event, and the
// end of the response, quickly (not after an idle timeout).
void expectStreamEndsWithError(const HttpResponse& r, size_t min_chunks_before) {
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(r.error.empty()) << "the response must end cleanly: " << r.error;
  auto events = sseEvents(r.body);
  ASSERT_GE(events.size(), min_chunks_before + 1) << r.body;
  Json last = Json::parse(events.back(), nullptr, false);
  ASSERT_TRUE(last.is_object() && last.contains("error") && last["error"].is_object())
      << "the last event must be an error: " << r.body;
  EXPECT_TRUE(last["error"].contains("message") && last["error"].contains("type")) << r.body;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_NE(events[i], "[DONE]") << r.body;
    Json c = Json::parse(events[i], nullptr, false);
    EXPECT_EQ(c.value("object", ""), "chat.completion.chunk") << events[i];
  }
}

TEST_F(GatewayE2E, StreamCutMidwayEndsWithAnErrorEvent) {
  fake_.pushFault(Fault::cutStream(2));
  HttpResponse r =
      chat(streamedChat("this stream will be cut short", true), auth(), milliseconds(8000));
  expectStreamEndsWithError(r, 3);  // role + 2 content chunks
  EXPECT_LT(r.elapsed_s, 3.0) << "idle_s is 5: the cut must be noticed at once";
  EXPECT_NE(r.body.find("echo:"), std::string::npos);
  EXPECT_EQ(chat(userChat("after")).status, 200);
}

TEST_F(GatewayE2E, StreamResetMidwayEndsWithAnErrorEvent) {
  fake_.pushFault(Fault::reset(2));
  HttpResponse r =
      chat(streamedChat("this stream will be reset", false), auth(), milliseconds(8000));
  expectStreamEndsWithError(r, 1);
  EXPECT_LT(r.elapsed_s, 3.0);
}

TEST_F(GatewayE2E, StalledStreamEndsWithAnErrorEventAfterIdleTimeout) {
  GatewayConfig cfg;
  cfg.idle_s = 1;
  ASSERT_NO_FATAL_FAILURE(startGateway(cfg));
  fake_.pushFault(Fault::slowDrip(milliseconds(4000)));  // the role chunk, then 4 s of silence
  HttpResponse r = chat(streamedChat("stall", false), auth(), milliseconds(8000));
  expectStreamEndsWithError(r, 1);
  EXPECT_GE(r.elapsed_s, 0.9);
  EXPECT_LT(r.elapsed_s, 3.5) << "idle_s is 1";
}

}  // namespace
}  // namespace sytest
