// The Responses API passed through to a target that speaks it: the real binary in front of a
// fake OpenAI serving POST /v1/responses in its exact wire format (a provider with
// `responses_api: true`), and the same fake as an OpenAI-compatible server without it (the
// request translated into chat completions). Checks that what the typed request cannot carry
// reaches the upstream unchanged, that the ledger bills the upstream's usage, that streamed
// events arrive in order with their sequence numbers, that previous_response_id continues a
// passed-through answer through the gateway's own store, and that a broken stream ends with
// an error event and a failed response.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "api/sse.h"
#include "tests/support/fake_openai.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

constexpr const char* kKey = "sk-native-responses-3c9e1f";

class ResponsesNativeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string hash = hashKey(kKey);
    ASSERT_EQ(hash.size(), 64u);
    ledger_ = work_.path() + "/ledger.db";
    std::ostringstream y;
    y << "server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}\n"
      << "auth: {allow_unauthenticated: false}\n"
      << "teams:\n  - name: research\n    keys: [{id: k1, sha256: " << hash << "}]\n"
      << "providers:\n"
      << "  oai: {type: openai, base_url: \"" << fake_.baseUrl()
      << "\", api_key: sk-up, responses_api: true, retry: {max_attempts: 1}}\n"
      << "  compat: {type: openai_compatible, base_url: \"" << fake_.baseUrl()
      << "\", retry: {max_attempts: 1}}\n"
      << "models:\n"
      << "  - {name: gpt, provider: oai, upstream_model: gpt-up}\n"
      << "  - {name: compat, provider: compat, upstream_model: gpt-up}\n"
      << "pricing:\n"
      << "  oai: {gpt-up: {input: 1.0, cached_input: 0.5, output: 2.0}}\n"
      << "  compat: {gpt-up: {input: 1.0, output: 2.0}}\n"
      << "ledger: {path: \"" << ledger_ << "\"}\n";
    SwitchyardServer::Options opts;
    opts.ready_timeout = 30000ms;
    std::string error;
    gw_ = SwitchyardServer::start(y.str(), opts, &error);
    ASSERT_TRUE(gw_) << error;
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << gw_->stderrText().substr(0, 6000);
  }

  static HeaderList auth() { return {{"Authorization", std::string("Bearer ") + kKey}}; }
  HttpResponse post(const std::string& body) {
    return httpPost(gw_->url() + "/v1/responses", body, auth(), 30000ms);
  }
  Request lastUpstream() const {
    auto r = fake_.lastChatRequest();
    EXPECT_TRUE(r.has_value());
    return r.value_or(Request{});
  }

  // (prompt_tokens, cached_prompt_tokens, completion_tokens, cost_usd) of a settled row.
  std::tuple<int64_t, int64_t, int64_t, double> ledgerRow(const std::string& request_id) {
    std::tuple<int64_t, int64_t, int64_t, double> row{-1, -1, -1, 0};
    waitUntil(
        [&] {
          sqlite3* db = nullptr;
          bool settled = false;
          if (sqlite3_open_v2(ledger_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
            sqlite3_stmt* q = nullptr;
            if (sqlite3_prepare_v2(db,
                                   "SELECT prompt_tokens, cached_prompt_tokens, "
                                   "completion_tokens, cost_usd, state FROM requests "
                                   "WHERE request_id = ?",
                                   -1, &q, nullptr) == SQLITE_OK) {
              sqlite3_bind_text(q, 1, request_id.c_str(), -1, SQLITE_TRANSIENT);
              if (sqlite3_step(q) == SQLITE_ROW) {
                row = {sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1),
                       sqlite3_column_int64(q, 2), sqlite3_column_double(q, 3)};
                settled = std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, 4))) ==
                          "settled";
              }
            }
            sqlite3_finalize(q);
          }
          sqlite3_close(db);
          return settled;
        },
        5000ms);
    return row;
  }

  void expectBilled(const std::string& request_id, const Json& usage) {
    auto [prompt, cached, completion, cost] = ledgerRow(request_id);
    EXPECT_EQ(prompt, usage["input_tokens"].get<int64_t>());
    EXPECT_EQ(cached, usage["input_tokens_details"]["cached_tokens"].get<int64_t>());
    EXPECT_EQ(completion, usage["output_tokens"].get<int64_t>());
    const double expected = ((prompt - cached) * 1.0 + cached * 0.5 + completion * 2.0) / 1e6;
    EXPECT_NEAR(cost, expected, 1e-12);
  }

  FakeOpenAI fake_;
  TempDir work_;
  std::string ledger_;
  std::unique_ptr<SwitchyardServer> gw_;
};

std::vector<std::pair<std::string, Json>> events(const std::string& body) {
  api::SseParser parser;
  std::vector<api::SseEvent> raw;
  EXPECT_TRUE(parser.feed(body, raw));
  std::vector<std::pair<std::string, Json>> out;
  for (const auto& e : raw) out.emplace_back(e.event, Json::parse(e.data, nullptr, false));
  return out;
}

// A body with spacing and members the typed request does not model, as a client might send.
const char* const kFirst =
    R"({"model": "gpt", "input": [{"role": "user", "content": "what is the weather"},)"
    R"( {"type": "function_call", "call_id": "call_7", "name": "weather", "arguments": "{}"},)"
    R"( {"type": "function_call_output", "call_id": "call_7", "output": "sunny"}],)"
    R"( "reasoning": {"effort": "high",   "summary": "auto"},)"
    R"( "include": ["reasoning.encrypted_content"],)"
    R"( "text": {"verbosity": "low"}, "service_tier": "flex", "prompt_cache_key": "pk-1",)"
    R"( "future_field": {"nested": [1, 2.50, "x"]}, "tools": [{"type": "web_search"}]})";

TEST_F(ResponsesNativeE2E, AnswersPassThroughAreBilledAndContinued) {
  HttpResponse r = post(kFirst);
  ASSERT_EQ(r.status, 200) << r.body;
  Request up = lastUpstream();
  EXPECT_EQ(up.path(), "/v1/responses");
  EXPECT_EQ(up.header("authorization"), "Bearer sk-up");
  // What the gateway does not model reaches OpenAI byte for byte.
  for (const char* kept :
       {R"("reasoning": {"effort": "high",   "summary": "auto"})",
        R"("include": ["reasoning.encrypted_content"])", R"("text": {"verbosity": "low"})",
        R"("service_tier": "flex")", R"("prompt_cache_key": "pk-1")",
        R"("future_field": {"nested": [1, 2.50, "x"]})", R"("tools": [{"type": "web_search"}])"}) {
    EXPECT_NE(up.body.find(kept), std::string::npos) << kept << "\n" << up.body;
  }
  const Json sent = Json::parse(up.body);
  EXPECT_EQ(sent["model"], "gpt-up");
  EXPECT_EQ(sent["store"], false);

  const Json resp = r.json();
  const std::string id = resp["id"];
  EXPECT_EQ(id.rfind("resp_", 0), 0u);
  EXPECT_EQ(id.find("resp_up"), std::string::npos) << "the gateway's id, not the upstream's";
  EXPECT_EQ(resp["model"], "gpt");
  EXPECT_EQ(resp["store"], true);
  ASSERT_EQ(resp["output"].size(), 2u) << r.body;
  EXPECT_EQ(resp["output"][0]["type"], "reasoning");
  EXPECT_FALSE(resp["output"][0].value("encrypted_content", "").empty());
  EXPECT_EQ(resp["output"][1]["content"][0]["text"], "echo: what is the weather");
  EXPECT_EQ(resp["service_tier"], "flex") << "the upstream's own members stay";
  EXPECT_EQ(resp["usage"]["output_tokens_details"]["reasoning_tokens"],
            FakeOpenAI::kReasoningTokens);
  expectBilled(r.header("x-request-id"), resp["usage"]);

  HttpResponse stored = httpGet(gw_->url() + "/v1/responses/" + id, auth());
  ASSERT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(stored.json()["id"], id);
  EXPECT_EQ(stored.json()["output"], resp["output"]);

  // The follow-up: the gateway expands its stored conversation; the upstream gets it in full
  // (the fake refuses previous_response_id, as it stores nothing).
  const Json next = {{"model", "gpt"},
                     {"previous_response_id", id},
                     {"input", "and tomorrow"},
                     {"reasoning", {{"effort", "low"}}}};
  HttpResponse follow = post(next.dump());
  ASSERT_EQ(follow.status, 200) << follow.body;
  const Json again = Json::parse(lastUpstream().body);
  EXPECT_FALSE(again.contains("previous_response_id"));
  EXPECT_EQ(again["store"], false);
  const Json& items = again["input"];
  ASSERT_EQ(items.size(), 6u) << items.dump();
  EXPECT_EQ(items[0]["content"], "what is the weather");
  EXPECT_EQ(items[2]["type"], "function_call_output");
  EXPECT_EQ(items[3]["type"], "reasoning");
  EXPECT_EQ(items[3]["encrypted_content"], resp["output"][0]["encrypted_content"]);
  EXPECT_EQ(items[4]["type"], "message");
  EXPECT_EQ(items[5]["content"], "and tomorrow");
  EXPECT_EQ(follow.json()["previous_response_id"], id);
  EXPECT_EQ(follow.json()["output"][1]["content"][0]["text"], "echo: and tomorrow");
  expectBilled(follow.header("x-request-id"), follow.json()["usage"]);
}

TEST_F(ResponsesNativeE2E, StreamedEventsArriveInOrderAndAreBilled) {
  const Json body = {{"model", "gpt"},
                     {"input", "stream three words"},
                     {"reasoning", {{"effort", "medium"}}},
                     {"include", {"reasoning.encrypted_content"}},
                     {"stream", true}};
  HttpResponse s = post(body.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  const Json sent = Json::parse(lastUpstream().body);
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["include"], body["include"]);
  auto ev = events(s.body);
  std::vector<std::string> names;
  for (size_t i = 0; i < ev.size(); ++i) {
    names.push_back(ev[i].first);
    EXPECT_EQ(ev[i].second["type"], ev[i].first);
    EXPECT_EQ(ev[i].second["sequence_number"], static_cast<int64_t>(i)) << "as the upstream sent";
  }
  const std::vector<std::string> expected = {
      "response.created",           "response.in_progress",       "response.output_item.added",
      "response.output_item.done",  "response.output_item.added", "response.content_part.added",
      "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
      "response.output_text.delta", "response.output_text.done",  "response.content_part.done",
      "response.output_item.done",  "response.completed"};
  EXPECT_EQ(names, expected);
  ASSERT_FALSE(ev.empty());
  const std::string id = ev[0].second["response"]["id"];
  EXPECT_EQ(id.find("resp_up"), std::string::npos);
  const Json& final = ev.back().second["response"];
  EXPECT_EQ(final["id"], id);
  EXPECT_EQ(final["model"], "gpt");
  expectBilled(s.header("x-request-id"), final["usage"]);

  // The streamed answer is stored and continued like any other.
  HttpResponse stored = httpGet(gw_->url() + "/v1/responses/" + id, auth());
  ASSERT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(stored.json()["output"], final["output"]);
  HttpResponse follow = post(
      Json{{"model", "gpt"}, {"previous_response_id", id}, {"input", "more"}, {"stream", true}}
          .dump());
  ASSERT_EQ(follow.status, 200) << follow.body;
  const Json items = Json::parse(lastUpstream().body)["input"];
  ASSERT_EQ(items.size(), 4u) << items.dump();
  EXPECT_EQ(items[1]["type"], "reasoning");
  EXPECT_EQ(events(follow.body).back().first, "response.completed");
}

TEST_F(ResponsesNativeE2E, AStreamThatBreaksEndsWithAnErrorAndAFailedResponse) {
  fake_.pushFault(Fault::streamError(2, "the upstream broke"));
  HttpResponse s =
      post(Json{{"model", "gpt"}, {"input", "one two three four"}, {"stream", true}}.dump());
  ASSERT_EQ(s.status, 200) << s.body;
  auto ev = events(s.body);
  ASSERT_GE(ev.size(), 3u) << s.body;
  EXPECT_EQ(ev[ev.size() - 2].first, "error");
  EXPECT_EQ(ev.back().first, "response.failed");
  EXPECT_EQ(ev.back().second["response"]["status"], "failed");
  for (size_t i = 0; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i].second["sequence_number"], static_cast<int64_t>(i)) << s.body;
  }
}

TEST_F(ResponsesNativeE2E, ATargetWithoutTheResponsesApiTranslatesOrRefuses) {
  HttpResponse refused = post(
      R"({"model":"compat","input":"x","tools":[{"type":"web_search"}]})");
  ASSERT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(refused.json()["error"]["param"], "tools[0]");
  EXPECT_EQ(fake_.chatRequestCount(), 0) << "nothing reached the upstream";

  HttpResponse plain =
      post(R"({"model":"compat","input":"hello there","include":["reasoning.encrypted_content"]})");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(lastUpstream().path(), "/v1/chat/completions");
  EXPECT_EQ(plain.json()["output"][0]["content"][0]["text"], "echo: hello there");
}

}  // namespace
}  // namespace sytest
