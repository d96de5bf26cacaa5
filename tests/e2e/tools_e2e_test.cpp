// End-to-end: tool calls from the embedded engine. The real `switchyard` binary serves a
// random-weight Gemma 4 checkpoint (`make-test-model --preset gemma-4-tiny`, Google's Gemma 4
// chat template as chat_template.jinja), whose free answers are noise. With tool_choice required
// or a named function, every answer, streamed or not, must be a tool call (finish_reason
// "tool_calls", an id "call_...") to a declared function whose arguments parse and validate
// against its parameters schema; with auto and a json_schema, either such a call or an answer
// that validates against the schema; with auto alone, free text (whose calls, if any, are
// valid). Then a round trip: the call, the tool's result, an answer. The same forced calls and
// round trip against a random-weight Gemma 3 checkpoint, whose calls are JSON objects.
//
// The parameter schemas hold no free strings (a random-weight model almost never closes one,
// see constrained_e2e_test.cpp), and every property names its type (Gemma 4's template reads
// it). Recursive and anyOf parameters are covered by the grammar's tests (grammar_test.cpp).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

constexpr const char* kKey = "sk-tools-e2e-3b81d0";

Json tool(const std::string& name, const char* parameters) {
  return {{"type", "function"},
          {"function",
           {{"name", name},
            {"description", "The " + name + " function"},
            {"parameters", Json::parse(parameters)}}}};
}

Json tools() {
  return Json::array({
      tool("get_weather", R"({"type":"object","properties":{
          "city":{"type":"string","enum":["Paris","Lima","Oslo"]},"days":{"type":"integer"},
          "metric":{"type":"boolean"}},"required":["city","days"],"additionalProperties":false})"),
      tool("set_alarm", R"({"type":"object","properties":{"at":{"type":"object","properties":{
          "h":{"type":"integer"},"m":{"type":"integer"}},"required":["h","m"],
          "additionalProperties":false},"repeat":{"type":"array","items":{"type":"string","enum":["mon","tue"]},
          "maxItems":3}},"required":["at","repeat"],"additionalProperties":false})"),
      tool("walk", R"({"type":"object","properties":{"steps":{"type":"array","maxItems":4,
          "items":{"type":"object","properties":{"dx":{"type":"number"},"dy":{"type":"number"}},
          "required":["dx","dy"],"additionalProperties":false}}},"required":["steps"],
          "additionalProperties":false})"),
      tool("ping", R"({"type":"object","properties":{},"additionalProperties":false})"),
  });
}

const Json& parametersOf(const Json& all, const std::string& name) {
  for (const Json& t : all) {
    if (t["function"]["name"] == name) return t["function"]["parameters"];
  }
  static const Json none;
  return none;
}

// A random-weight checkpoint: Gemma 4 with its template (native tool calls), or Gemma 3 (the
// JSON function-calling prompt).
template <bool kGemma4>
class ToolsServer : public LocalEngineSuite {
 protected:
  static void SetUpTestSuite() {
    LocalEngineConfig config;
    config.model = "local";
    config.max_queue = 16;
    config.max_context = 2048;
    config.total_s = 120;
    startSuite(kKey, kGemma4, /*seed=*/kGemma4 ? 5 : 6, config);
  }

  static Json body(const Json& choice, int seed, bool stream) {
    Json b = {{"model", "local"},
              {"messages", Json::array({{{"role", "user"}, {"content", "Use a tool."}}})},
              {"tools", tools()},
              {"tool_choice", choice},
              {"max_tokens", 1200},
              {"temperature", 1.0},
              {"seed", seed}};
    if (stream) b["stream"] = true;
    return b;
  }
  static HttpResponse post(const Json& b) { return postChat(b, milliseconds(120000)); }
};

using ToolsE2E = ToolsServer<true>;
using ToolsGemma3E2E = ToolsServer<false>;

struct Answer {
  std::string content, finish;
  Json calls = Json::array();  // [{id, type, function: {name, arguments}}]
};

// A response's message, or its SSE chunks put back together the way OpenAI's SDKs do (checking
// that each call's first fragment carries index, id, type, name and empty arguments).
Answer readAnswer(const HttpResponse& r, bool stream) {
  Answer a;
  if (!stream) {
    Json j = r.json();
    const Json& msg = j["choices"][0]["message"];
    if (msg["content"].is_string()) a.content = msg["content"];
    if (msg.contains("tool_calls")) a.calls = msg["tool_calls"];
    a.finish = j["choices"][0].value("finish_reason", "");
    return a;
  }
  for (const std::string& e : sseEvents(r.body)) {
    Json c = Json::parse(e, nullptr, false);
    if (!c.is_object() || !c.contains("choices")) continue;
    for (const Json& ch : c["choices"]) {
      const Json& d = ch["delta"];
      if (d.contains("content") && d["content"].is_string()) a.content += d["content"];
      for (const Json& f : d.value("tool_calls", Json::array())) {
        const size_t index = f["index"];
        if (index == a.calls.size()) {
          EXPECT_TRUE(f.contains("id") && f.contains("type")) << f.dump();
          EXPECT_EQ(f["function"].value("arguments", "?"), "") << f.dump();
          a.calls.push_back({{"id", f["id"]},
                             {"type", f["type"]},
                             {"function", {{"name", f["function"]["name"]}, {"arguments", ""}}}});
          continue;
        }
        EXPECT_EQ(index + 1, a.calls.size()) << f.dump();
        EXPECT_FALSE(f.contains("id")) << f.dump();
        a.calls[index]["function"]["arguments"] =
            a.calls[index]["function"]["arguments"].get<std::string>() +
            f["function"]["arguments"].get<std::string>();
      }
      if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
        a.finish = ch["finish_reason"];
      }
    }
  }
  return a;
}

// Every call names a declared tool (`only` when given) and its arguments validate.
void expectValidCalls(const Answer& a, const std::string& only, const std::string& what) {
  const Json all = tools();
  ASSERT_FALSE(a.calls.empty()) << what << ": no tool call; content: " << a.content;
  EXPECT_EQ(a.finish, "tool_calls") << what;
  for (const Json& call : a.calls) {
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u) << what;
    EXPECT_EQ(call["type"], "function") << what;
    const std::string name = call["function"]["name"];
    if (!only.empty()) {
      EXPECT_EQ(name, only) << what;
    }
    const Json& schema = parametersOf(all, name);
    ASSERT_FALSE(schema.is_null()) << what << ": unknown function " << name;
    const std::string text = call["function"]["arguments"];
    Json args = Json::parse(text, nullptr, false);
    ASSERT_FALSE(args.is_discarded()) << what << ": arguments do not parse: " << text;
    std::string why;
    EXPECT_TRUE(matchesSchema(args, schema, schema, why)) << what << ": " << why << " in " << text;
  }
}

TEST_F(ToolsE2E, ForcedCallsAlwaysFitTheirSchemaStreamedAndNot) {
  const std::vector<Json> choices = {
      "required",
      {{"type", "function"}, {"function", {{"name", "get_weather"}}}},
      {{"type", "function"}, {"function", {{"name", "set_alarm"}}}},
      {{"type", "function"}, {"function", {{"name", "walk"}}}},
  };
  constexpr int kRequests = 48, kClients = 4;
  std::vector<HttpResponse> responses(kRequests);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < kRequests; i += kClients) {
        responses[i] = post(body(choices[i % choices.size()], 500 + i, (i / 4) % 2 == 1));
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(responses[i].status, 200) << responses[i].error << "\n" << responses[i].body;
    const Json& choice = choices[i % choices.size()];
    const std::string only = choice.is_object() ? choice["function"]["name"] : "";
    Answer a = readAnswer(responses[i], (i / 4) % 2 == 1);
    expectValidCalls(a, only, "request " + std::to_string(i));
    EXPECT_EQ(a.content, "") << "request " << i;
  }
}

TEST_F(ToolsE2E, AutoWithASchemaAnswersACallOrValidJson) {
  const Json schema = Json::parse(R"({"type":"object","properties":{"n":{"type":"integer"},
      "ok":{"type":"boolean"}},"required":["n","ok"],"additionalProperties":false})");
  int calls = 0, answers = 0;
  for (int i = 0; i < 16; ++i) {
    Json b = body("auto", 900 + i, i % 2 == 1);
    b["response_format"] = {{"type", "json_schema"},
                            {"json_schema", {{"name", "answer"}, {"schema", schema}}}};
    HttpResponse r = post(b);
    ASSERT_EQ(r.status, 200) << r.body;
    Answer a = readAnswer(r, i % 2 == 1);
    if (!a.calls.empty()) {
      ++calls;
      expectValidCalls(a, "", "request " + std::to_string(i));
      continue;
    }
    ++answers;
    EXPECT_EQ(a.finish, "stop");
    Json value = Json::parse(a.content, nullptr, false);
    std::string why;
    EXPECT_TRUE(matchesSchema(value, schema, schema, why)) << why << " in " << a.content;
  }
  EXPECT_EQ(calls + answers, 16);
}

TEST_F(ToolsE2E, AutoWithoutASchemaIsFreeTextWhoseCallsAreValid) {
  for (int i = 0; i < 6; ++i) {
    Json b = body("auto", 700 + i, i % 2 == 1);
    b["max_tokens"] = 24;
    HttpResponse r = post(b);
    ASSERT_EQ(r.status, 200) << r.body;
    Answer a = readAnswer(r, i % 2 == 1);
    if (!a.calls.empty()) {
      expectValidCalls(a, "", "request " + std::to_string(i));
    } else {
      EXPECT_TRUE(a.finish == "stop" || a.finish == "length") << a.finish;
    }
  }
}

TEST_F(ToolsE2E, RoundTripCallResultAnswerAndOneCallWhenNotParallel) {
  Json b = body({{"type", "function"}, {"function", {{"name", "ping"}}}}, 3, false);
  b["parallel_tool_calls"] = false;
  HttpResponse first = post(b);
  ASSERT_EQ(first.status, 200) << first.body;
  Answer call = readAnswer(first, false);
  expectValidCalls(call, "ping", "the call");
  ASSERT_EQ(call.calls.size(), 1u);
  // The client runs the tool and sends its result back; the model then answers (noise, here).
  Json next = body("auto", 4, false);
  next["max_tokens"] = 8;
  next["messages"].push_back(
      {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", call.calls}});
  next["messages"].push_back(
      {{"role", "tool"}, {"tool_call_id", call.calls[0]["id"]}, {"content", "{\"pong\":true}"}});
  HttpResponse second = post(next);
  ASSERT_EQ(second.status, 200) << second.body;
  Answer text = readAnswer(second, false);
  EXPECT_FALSE(text.finish.empty());
  // The rendered prompt holds the call and its result: more prompt tokens than the first turn.
  EXPECT_GT(second.json()["usage"]["prompt_tokens"].get<int>(),
            first.json()["usage"]["prompt_tokens"].get<int>());
}

TEST_F(ToolsE2E, UnenforceableParametersAreA400NamingTheKeyword) {
  Json b = body("required", 1, false);
  b["tools"][0]["function"]["parameters"]["properties"]["days"]["minimum"] = 1;
  HttpResponse r = post(b);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.json()["error"].value("param", ""),
            "tools[0].function.parameters.properties.days.minimum")
      << r.body;
}

// A forced call to the one tool of `tools_json`, the body written as text so that the
// parameters' key order is the one written here (a Json body would sort it).
HttpResponse postRaw(const std::string& url, const HeaderList& auth, const std::string& tools_json,
                     int seed, bool stream) {
  const std::string body =
      R"({"model":"local","messages":[{"role":"user","content":"Use a tool."}],"tools":)" +
      tools_json + R"(,"tool_choice":"required","max_tokens":1200,"temperature":1.0,"seed":)" +
      std::to_string(seed) + (stream ? R"(,"stream":true})" : "}");
  return httpPost(url, body, auth, milliseconds(120000));
}

constexpr const char* kOrderedTool = R"([{"type":"function","function":{"name":"order",
    "parameters":{"type":"object","properties":{"zeta":{"type":"integer"},
    "alpha":{"type":"boolean"},"mid":{"type":"object","properties":{"y":{"type":"integer"},
    "x":{"type":"integer"}},"required":["y","x"],"additionalProperties":false}},
    "required":["zeta","alpha","mid"],"additionalProperties":false}}}])";

// Parameters as many clients write them: no "type": "object", implied by "properties".
constexpr const char* kUntypedTool = R"([{"type":"function","function":{"name":"implied",
    "parameters":{"properties":{"n":{"type":"integer"},"ok":{"type":"boolean"}},
    "required":["n","ok"]}}}])";

// Arguments come with their keys in the order the parameters declared them, as OpenAI writes
// them; parameters without a type are objects.
void expectOrderedAndUntypedCalls(const std::string& url, const HeaderList& auth) {
  using Keys = std::vector<std::string>;
  auto keys = [](const nlohmann::ordered_json& o) {
    Keys k;
    for (const auto& [key, v] : o.items()) k.push_back(key);
    return k;
  };
  for (int i = 0; i < 4; ++i) {
    HttpResponse r = postRaw(url, auth, kOrderedTool, 40 + i, i % 2 == 1);
    ASSERT_EQ(r.status, 200) << r.body;
    Answer a = readAnswer(r, i % 2 == 1);
    ASSERT_EQ(a.calls.size(), 1u) << r.body;
    const std::string text = a.calls[0]["function"]["arguments"];
    const auto args = nlohmann::ordered_json::parse(text, nullptr, false);
    ASSERT_TRUE(args.is_object()) << text;
    EXPECT_EQ(keys(args), Keys({"zeta", "alpha", "mid"})) << text;
    EXPECT_EQ(keys(args["mid"]), Keys({"y", "x"})) << text;
  }
  for (int i = 0; i < 4; ++i) {
    HttpResponse r = postRaw(url, auth, kUntypedTool, 50 + i, i % 2 == 1);
    ASSERT_EQ(r.status, 200) << r.body;
    Answer a = readAnswer(r, i % 2 == 1);
    ASSERT_EQ(a.calls.size(), 1u) << r.body;
    const Json args = Json::parse(a.calls[0]["function"]["arguments"].get<std::string>());
    EXPECT_TRUE(args["n"].is_number_integer() && args["ok"].is_boolean()) << args.dump();
  }
}

TEST_F(ToolsE2E, ArgumentsInDeclaredOrderAndParametersWithoutType) {
  expectOrderedAndUntypedCalls(server_->url() + "/v1/chat/completions", bearer());
}

TEST_F(ToolsGemma3E2E, ArgumentsInDeclaredOrderAndParametersWithoutType) {
  expectOrderedAndUntypedCalls(server_->url() + "/v1/chat/completions", bearer());
}

// Gemma 3: calls are the JSON object of Google's prompt format, forced by the same grammar.
TEST_F(ToolsGemma3E2E, ForcedJsonCallsFitTheirSchemaStreamedAndNot) {
  for (int i = 0; i < 12; ++i) {
    const Json choice = i % 3 == 0
                            ? Json("required")
                            : Json{{"type", "function"},
                                   {"function", {{"name", i % 3 == 1 ? "set_alarm" : "walk"}}}};
    HttpResponse r = post(body(choice, 300 + i, i % 2 == 1));
    ASSERT_EQ(r.status, 200) << r.body;
    Answer a = readAnswer(r, i % 2 == 1);
    expectValidCalls(a, choice.is_object() ? choice["function"]["name"].get<std::string>() : "",
                     "request " + std::to_string(i));
    EXPECT_EQ(a.content, "") << "request " << i;
  }
}

TEST_F(ToolsGemma3E2E, RoundTripRendersTheCallAndItsResult) {
  HttpResponse first = post(body("required", 8, false));
  ASSERT_EQ(first.status, 200) << first.body;
  Answer call = readAnswer(first, false);
  expectValidCalls(call, "", "the call");
  Json next = body("auto", 9, false);
  next["max_tokens"] = 8;
  next["messages"].push_back(
      {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", call.calls}});
  next["messages"].push_back(
      {{"role", "tool"}, {"tool_call_id", call.calls[0]["id"]}, {"content", "done"}});
  HttpResponse second = post(next);
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_GT(second.json()["usage"]["prompt_tokens"].get<int>(),
            first.json()["usage"]["prompt_tokens"].get<int>());
}

}  // namespace
}  // namespace sytest
