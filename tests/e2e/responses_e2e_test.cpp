// End-to-end: the OpenAI Responses entrance (POST /v1/responses) of the real `switchyard`
// binary, in front of the local engine (a tiny random-weight Gemma 3 checkpoint), a fake
// Anthropic and a fake OpenAI upstream. The same pipeline as chat: keys, data rules, budgets and
// ledger rows; Response objects, the event stream with its sequence numbers, and errors in
// OpenAI's shape. Stored responses: previous_response_id follow-ups (a function call and its
// output), GET / DELETE / input_items / cancel, each team seeing its own only.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

constexpr const char* kDevKey = "sk-resp-dev-91c0e2aa";
constexpr const char* kSecureKey = "sk-resp-secure-3f7a0b19";
constexpr const char* kPoorKey = "sk-resp-poor-6d2c81e5";

// The text of a streamed answer (output_text deltas joined).
std::string streamedText(const std::vector<std::pair<std::string, Json>>& ev) {
  std::string text;
  for (const auto& [name, data] : ev) {
    if (name == "response.output_text.delta") text += data["delta"].get<std::string>();
  }
  return text;
}

// The Responses stream grammar: created, in_progress, items opened and closed in order, a last
// event of completed / incomplete / failed; sequence numbers 0, 1, 2, ...
void expectWellFormedStream(const std::vector<std::pair<std::string, Json>>& ev,
                            const std::string& last) {
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0].first, "response.created");
  EXPECT_EQ(ev[1].first, "response.in_progress");
  EXPECT_EQ(ev.back().first, last);
  int open = -1;
  for (size_t i = 0; i < ev.size(); ++i) {
    const auto& [name, data] = ev[i];
    EXPECT_EQ(data.value("type", ""), name);
    EXPECT_EQ(data.value("sequence_number", -1), static_cast<int>(i));
    if (name == "response.output_item.added") {
      EXPECT_EQ(open, -1);
      open = data["output_index"];
    } else if (name == "response.output_item.done") {
      EXPECT_EQ(data["output_index"], open);
      open = -1;
    }
  }
  EXPECT_EQ(open, -1);
}

// An OpenAI error body with `status` and `type`.
void expectError(const HttpResponse& r, int status, const std::string& type) {
  EXPECT_EQ(r.status, status) << r.error << "\n" << r.body;
  Json j = r.json();
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << r.body;
  EXPECT_EQ(j["error"].value("type", ""), type) << r.body;
  EXPECT_TRUE(j["error"].contains("param")) << r.body;
  EXPECT_FALSE(j["error"].value("message", "").empty()) << r.body;
}

class ResponsesE2E : public EntranceE2E {
 protected:
  ResponsesE2E() : EntranceE2E({kDevKey, kSecureKey, kPoorKey}) {}

  static HeaderList auth(const std::string& key = kDevKey) {
    return {{"Authorization", "Bearer " + key}};
  }
  HttpResponse post(const std::string& path, const std::string& body,
                    const HeaderList& headers = auth()) {
    return send(path, body, headers);
  }
  HttpResponse responses(const Json& body, const HeaderList& headers = auth()) {
    return post("/v1/responses", body.dump(), headers);
  }
  static Json ask(const std::string& model, const std::string& text, int max_tokens = 6) {
    return Json{{"model", model}, {"max_output_tokens", max_tokens}, {"input", text}};
  }
};

TEST_F(ResponsesE2E, LocalModelAnswersAsAResponseAndAsAnEventStream) {
  Json body = ask("tiny", "Say hello", 4);
  body["instructions"] = "Be brief.";
  body["temperature"] = 0;
  HttpResponse r = responses(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json resp = r.json();
  EXPECT_EQ(resp["object"], "response");
  EXPECT_EQ(resp["id"].get<std::string>().rfind("resp_", 0), 0u);
  EXPECT_EQ(resp["status"], "incomplete");
  EXPECT_EQ(resp["usage"]["output_tokens"], 4);
  const std::string text = resp["output"][0]["content"][0]["text"];
  body["stream"] = true;
  HttpResponse s = responses(body);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  expectWellFormedStream(ev, "response.incomplete");
  EXPECT_EQ(streamedText(ev), text);
  EXPECT_EQ(ev.back().second["response"]["usage"]["input_tokens"], resp["usage"]["input_tokens"]);
  EXPECT_EQ(std::get<0>(ledgerRow(r.header("x-request-id"))), "local");
}

TEST_F(ResponsesE2E, AnthropicTargetIsTranslatedAndMetered) {
  Json body = ask("claude", "what is up", 40);
  body["instructions"] = "You are terse.";
  HttpResponse r = responses(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = anthropic_.lastChatBody();
  EXPECT_EQ(sent["model"], "claude-up");
  EXPECT_NE(sent["system"].dump().find("You are terse."), std::string::npos) << sent.dump();
  EXPECT_EQ(sent["max_tokens"], 40);
  Json resp = r.json();
  EXPECT_EQ(resp["status"], "completed");
  EXPECT_EQ(resp["output"][0]["content"][0]["text"], "echo: what is up");
  EXPECT_EQ(resp["usage"]["input_tokens"], FakeAnthropic::inputTokensFor(sent));
  auto [kind, state, cost] = ledgerRow(r.header("x-request-id"));
  EXPECT_EQ(kind, "cloud");
  EXPECT_EQ(state, "settled");
  EXPECT_GT(cost, 0);

  body["stream"] = true;
  HttpResponse s = responses(body);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  expectWellFormedStream(ev, "response.completed");
  EXPECT_EQ(streamedText(ev), "echo: what is up");
  EXPECT_EQ(std::get<1>(ledgerRow(s.header("x-request-id"))), "settled");
}

TEST_F(ResponsesE2E, StreamThatBreaksEndsWithErrorAndFailed) {
  anthropic_.pushFault(Fault::streamError(2, "Overloaded"));
  Json body = ask("claude", "one two three four five", 40);
  body["stream"] = true;
  HttpResponse s = responses(body);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[ev.size() - 2].first, "error") << s.body;
  EXPECT_FALSE(ev[ev.size() - 2].second.value("message", "").empty());
  EXPECT_EQ(ev.back().first, "response.failed");
  EXPECT_EQ(ev.back().second["response"]["status"], "failed");
}

TEST_F(ResponsesE2E, HostileInputsGetOpenAIShapedErrors) {
  const std::string ok = ask("tiny", "hi").dump();
  expectError(post("/v1/responses", ok, {}), 401, "authentication_error");
  const std::vector<std::string> bad_bodies = {
      "", "{", "[]", "{\"model\":\"tiny\"}", std::string(10000, '['),
      R"({"model":"tiny","input":[{"role":"user","content":[{"type":"input_file"}]}]})",
      R"({"model":"tiny","input":"x","max_output_tokens":-3})",
      R"({"model":"tiny","input":"x","tools":[{"type":"web_search"}]})",
      R"({"model":"tiny","input":"x","temperature":"hot"})",
      "{\"model\":\"tiny\",\"input\":\"\xff\"}"};
  for (const std::string& b : bad_bodies) {
    SCOPED_TRACE(b.substr(0, 80));
    expectError(post("/v1/responses", b), 400, "invalid_request_error");
  }
  expectError(responses(ask("no-such-model", "hi")), 404, "invalid_request_error");
  HttpResponse unknown_prev = post(
      "/v1/responses", R"({"model":"tiny","input":"x","previous_response_id":"resp_1"})");
  expectError(unknown_prev, 404, "invalid_request_error");
  EXPECT_EQ(unknown_prev.json()["error"]["param"], "previous_response_id");
  expectError(post("/v1/responses", R"({"model":"tiny","input":"x","previous_response_id":7})"),
              400, "invalid_request_error");
  expectError(responses(ask("claude", "hi"), auth(kSecureKey)), 403, "permission_error");
  expectError(responses(ask("claude", "hi"), auth(kPoorKey)), 429, "insufficient_quota");
  EXPECT_EQ(anthropic_.chatRequestCount(), 0) << "refused before any provider was called";
  EXPECT_EQ(httpGet(gw_->url() + "/v1/responses", auth()).status, 405);
  EXPECT_EQ(httpGet(gw_->url() + "/healthz").status, 200);
}

// A function call by the local engine, then its output sent with previous_response_id only:
// the stored call is prepended, so the follow-up's prompt holds the first turn too.
TEST_F(ResponsesE2E, FunctionCallFollowUpThroughPreviousResponseId) {
  Json tools = Json::array({{{"type", "function"},
                             {"name", "set_light"},
                             {"parameters",
                              {{"type", "object"},
                               {"properties", {{"on", {{"type", "boolean"}}}}},
                               {"required", {"on"}}}}}});
  Json first = ask("tiny", "Turn on the light.", 60);
  first["tools"] = tools;
  first["tool_choice"] = "required";
  first["temperature"] = 0;
  HttpResponse r1 = responses(first);
  ASSERT_EQ(r1.status, 200) << r1.body;
  Json resp1 = r1.json();
  EXPECT_EQ(resp1["store"], true);
  Json call;
  for (const Json& item : resp1["output"]) {
    if (item["type"] == "function_call") call = item;
  }
  ASSERT_TRUE(call.is_object()) << r1.body;
  EXPECT_EQ(call["name"], "set_light");

  Json next = {{"model", "tiny"},
               {"max_output_tokens", 4},
               {"previous_response_id", resp1["id"]},
               {"tools", tools},
               {"input", Json::array({{{"type", "function_call_output"},
                                       {"call_id", call["call_id"]},
                                       {"output", "the light is on"}}})}};
  HttpResponse r2 = responses(next);
  ASSERT_EQ(r2.status, 200) << r2.body;
  Json resp2 = r2.json();
  EXPECT_EQ(resp2["previous_response_id"], resp1["id"]);
  EXPECT_GT(resp2["usage"]["input_tokens"].get<int>(), resp1["usage"]["input_tokens"].get<int>());

  // The same output alone, with no earlier turn, is a tool message without its call.
  next.erase("previous_response_id");
  HttpResponse alone = responses(next);
  ASSERT_EQ(alone.status, 200) << alone.body;
  EXPECT_LT(alone.json()["usage"]["input_tokens"].get<int>(),
            resp2["usage"]["input_tokens"].get<int>());

  // A third turn follows the chain: both earlier turns reach the model (tools, like
  // instructions, are not carried over: sent again).
  Json third = ask("tiny", "Thanks.", 4);
  third["previous_response_id"] = resp2["id"];
  third["tools"] = tools;
  HttpResponse r3 = responses(third);
  ASSERT_EQ(r3.status, 200) << r3.body;
  EXPECT_GT(r3.json()["usage"]["input_tokens"].get<int>(),
            resp2["usage"]["input_tokens"].get<int>());
}

// What reaches the provider: the earlier input and output, not the earlier instructions.
TEST_F(ResponsesE2E, FollowUpCarriesTheConversationNotTheInstructions) {
  Json first = ask("claude", "first question", 40);
  first["instructions"] = "You are terse.";
  HttpResponse r1 = responses(first);
  ASSERT_EQ(r1.status, 200) << r1.body;
  Json next = ask("claude", "second question", 40);
  next["previous_response_id"] = r1.json()["id"];
  HttpResponse r2 = responses(next);
  ASSERT_EQ(r2.status, 200) << r2.body;
  const std::string sent = anthropic_.lastChatBody().dump();
  EXPECT_NE(sent.find("first question"), std::string::npos) << sent;
  EXPECT_NE(sent.find("echo: first question"), std::string::npos) << sent;
  EXPECT_NE(sent.find("second question"), std::string::npos) << sent;
  EXPECT_EQ(sent.find("You are terse."), std::string::npos) << sent;
}

TEST_F(ResponsesE2E, StoredResponsesAreReadAndDeletedByTheirTeamOnly) {
  HttpResponse r = responses(ask("tiny", "Say hello", 3));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string id = r.json()["id"];
  const std::string url = gw_->url() + "/v1/responses/" + id;

  HttpResponse got = httpGet(url, auth());
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json(), r.json());
  HttpResponse items = httpGet(url + "/input_items", auth());
  ASSERT_EQ(items.status, 200) << items.body;
  EXPECT_EQ(items.json()["object"], "list");
  EXPECT_EQ(items.json()["data"][0]["content"], "Say hello");

  // Another team knows no such response: not to read, continue, cancel or delete.
  expectError(httpGet(url, auth(kSecureKey)), 404, "invalid_request_error");
  Json other = ask("tiny", "x", 2);
  other["previous_response_id"] = id;
  expectError(responses(other, auth(kSecureKey)), 404, "invalid_request_error");
  HttpClient client;
  expectError(client.request("DELETE", url, auth(kSecureKey)), 404, "invalid_request_error");
  expectError(client.request("POST", url + "/cancel", auth(kSecureKey)), 404,
              "invalid_request_error");

  // Not a background response: cancel is refused as OpenAI refuses it.
  expectError(client.request("POST", url + "/cancel", auth()), 400, "invalid_request_error");

  HttpResponse del = client.request("DELETE", url, auth());
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(del.json(), (Json{{"id", id}, {"object", "response.deleted"}, {"deleted", true}}));
  expectError(httpGet(url, auth()), 404, "invalid_request_error");
  expectError(client.request("DELETE", url, auth()), 404, "invalid_request_error");
  expectError(httpGet(url, {}), 401, "authentication_error");
}

TEST_F(ResponsesE2E, StoreFalseKeepsNothing) {
  Json body = ask("tiny", "Say hello", 2);
  body["store"] = false;
  HttpResponse r = responses(body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["store"], false);
  expectError(httpGet(gw_->url() + "/v1/responses/" + r.json()["id"].get<std::string>(), auth()),
              404, "invalid_request_error");
  // A streamed answer is stored as its final Response object.
  Json streamed = ask("tiny", "Say hello", 2);
  streamed["stream"] = true;
  HttpResponse s = responses(streamed);
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = namedEvents(s.body);
  ASSERT_FALSE(ev.empty());
  const Json final_response = ev.back().second["response"];
  HttpResponse got =
      httpGet(gw_->url() + "/v1/responses/" + final_response["id"].get<std::string>(), auth());
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json(), final_response);
}

// Polls GET /v1/responses/{id} until its status is no longer queued or in_progress (20 s at
// most); the last Response object read.
Json awaitResponse(const std::string& base_url, const std::string& id, const HeaderList& headers) {
  Json last;
  for (int i = 0; i < 400; ++i) {
    HttpResponse got = httpGet(base_url + "/v1/responses/" + id, headers);
    EXPECT_EQ(got.status, 200) << got.body;
    last = got.json();
    const std::string status = last.value("status", "");
    if (status != "queued" && status != "in_progress") return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "still running: " << last.dump();
  return last;
}

TEST_F(ResponsesE2E, BackgroundResponsesRunOnAndArePolled) {
  Json body = ask("tiny", "Say hello", 3);
  body["background"] = true;
  HttpResponse r = responses(body);
  ASSERT_EQ(r.status, 200) << r.body;
  Json queued = r.json();
  EXPECT_EQ(queued["status"], "queued");
  EXPECT_EQ(queued["background"], true);
  EXPECT_TRUE(queued["output"].empty());
  const std::string id = queued["id"];
  Json done = awaitResponse(gw_->url(), id, auth());
  EXPECT_TRUE(done["status"] == "completed" || done["status"] == "incomplete") << done.dump();
  EXPECT_EQ(done["background"], true);
  ASSERT_FALSE(done["output"].empty()) << done.dump();
  EXPECT_EQ(done["usage"]["output_tokens"], 3);
  EXPECT_EQ(std::get<0>(ledgerRow(r.header("x-request-id"))), "local");
  // It continues a conversation like any stored response.
  Json next = ask("tiny", "again", 2);
  next["previous_response_id"] = id;
  EXPECT_EQ(responses(next).status, 200);

  // Refusals at admission answer at once, in OpenAI's shape.
  Json unknown = body;
  unknown["model"] = "no-such-model";
  expectError(responses(unknown), 404, "invalid_request_error");
  Json streamed = body;
  streamed["stream"] = true;
  HttpResponse s = responses(streamed);
  expectError(s, 400, "invalid_request_error");
  EXPECT_EQ(s.json()["error"]["param"], "stream");
  Json unstored = body;
  unstored["store"] = false;
  HttpResponse u = responses(unstored);
  expectError(u, 400, "invalid_request_error");
  EXPECT_EQ(u.json()["error"]["param"], "store");
  expectError(responses(body, auth("sk-not-a-key")), 401, "authentication_error");
}

TEST_F(ResponsesE2E, BackgroundResponsesAreCancelledAndFailuresAreKept) {
  // A slow cloud answer: cancelled while it runs, it stays cancelled; its reservation settles.
  anthropic_.pushFault(Fault::delay(std::chrono::milliseconds(3000)));
  Json body = ask("claude", "slow one", 20);
  body["background"] = true;
  HttpResponse r = responses(body);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string id = r.json()["id"];
  const std::string url = gw_->url() + "/v1/responses/" + id;
  HttpResponse running = httpGet(url, auth());
  ASSERT_EQ(running.status, 200);
  EXPECT_EQ(running.json()["status"], "in_progress");
  HttpClient client;
  HttpResponse cancelled = client.request("POST", url + "/cancel", auth());
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(cancelled.json()["status"], "cancelled");
  EXPECT_EQ(awaitResponse(gw_->url(), id, auth())["status"], "cancelled");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(httpGet(url, auth()).json()["status"], "cancelled");
  EXPECT_EQ(std::get<1>(ledgerRow(r.header("x-request-id"))), "settled");
  // Cancelling a finished one answers it as it stands.
  HttpResponse again = client.request("POST", url + "/cancel", auth());
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json()["status"], "cancelled");

  // Deleted while it runs: it stays deleted when its answer comes. A second request with the
  // id of a run in progress (the client's x-request-id) is refused.
  anthropic_.pushFault(Fault::delay(std::chrono::milliseconds(1500)));
  HeaderList with_id = auth();
  with_id.emplace_back("x-request-id", "req_bg_twice_1");
  HttpResponse d = post("/v1/responses", body.dump(), with_id);
  ASSERT_EQ(d.status, 200) << d.body;
  const std::string deleted_url = gw_->url() + "/v1/responses/" + d.json()["id"].get<std::string>();
  HttpResponse twice = post("/v1/responses", body.dump(), with_id);
  expectError(twice, 400, "invalid_request_error");
  EXPECT_EQ(twice.json()["error"]["param"], "x-request-id");
  ASSERT_EQ(client.request("DELETE", deleted_url, auth()).status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  expectError(httpGet(deleted_url, auth()), 404, "invalid_request_error");

  // An upstream refusal after the client was answered: the response failed, with the error.
  anthropic_.pushFault(Fault::error(400, "prompt is too long"));
  HttpResponse f = responses(body);
  ASSERT_EQ(f.status, 200) << f.body;
  Json failed = awaitResponse(gw_->url(), f.json()["id"], auth());
  EXPECT_EQ(failed["status"], "failed") << failed.dump();
  EXPECT_NE(failed["error"].value("message", "").find("prompt is too long"), std::string::npos)
      << failed.dump();
}

// A text.format schema's properties come in the client's order (not sorted), also when the
// request continues another through previous_response_id.
TEST_F(ResponsesE2E, SchemaPropertiesKeepTheirOrder) {
  const std::string format =
      R"("text":{"format":{"type":"json_schema","name":"o","strict":true,"schema":)"
      R"({"type":"object","properties":{"zeta":{"type":"boolean"},"alpha":{"type":"null"}},)"
      R"("required":["zeta","alpha"],"additionalProperties":false}}})";
  auto text_of = [](const Json& response) {
    for (const Json& item : response["output"]) {
      if (item.value("type", "") == "message") return item["content"][0].value("text", "");
    }
    return std::string();
  };
  auto check = [&](const HttpResponse& r) {
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string text = text_of(r.json());
    ASSERT_NE(text.find("\"zeta\""), std::string::npos) << text;
    const size_t alpha = text.find("\"alpha\"");
    if (alpha != std::string::npos) EXPECT_LT(text.find("\"zeta\""), alpha) << text;
  };
  HttpResponse first = post("/v1/responses",
                            R"({"model":"tiny","input":"As JSON.","max_output_tokens":300,)"
                            R"("temperature":1.0,)" + format + "}");
  check(first);
  HttpResponse next = post("/v1/responses",
                           R"({"model":"tiny","input":"Again.","max_output_tokens":300,)"
                           R"("previous_response_id":")" + first.json()["id"].get<std::string>() +
                               R"(","temperature":1.0,)" + format + "}");
  check(next);
}

}  // namespace
}  // namespace sytest
