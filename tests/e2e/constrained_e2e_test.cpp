// End-to-end: structured outputs from the embedded engine. The real `switchyard` binary serves a
// tiny random-weight Gemma 3 checkpoint (real tokenizer), whose unconstrained answers are noise;
// with response_format json_schema every answer, streamed or not, must parse and validate
// against its schema, and an unsupported keyword must be a 400 naming it.
//
// The suite's schemas hold no free strings: a random-weight model almost never closes one, so
// such an answer would run to its string bound (4096 bytes) and be cut by max_tokens, as a real
// model's answer can be (finish_reason "length").
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

constexpr const char* kKey = "sk-constrained-e2e-5d1a7c";

std::vector<Json> schemas() {
  return {
      Json::parse(R"({"type":"object","properties":{"id":{"type":"integer"},
          "score":{"type":"number"},"ok":{"type":"boolean"},"none":{"type":"null"}},
          "required":["id","score","ok","none"],"additionalProperties":false})"),
      Json::parse(R"({"type":"object","properties":{"outer":{"type":"object","properties":{
          "inner":{"type":"object","properties":{"level":{"enum":["low","mid","high"]}},
          "required":["level"],"additionalProperties":false},"n":{"type":"integer"}},
          "required":["inner","n"],"additionalProperties":false}},"required":["outer"],
          "additionalProperties":false})"),
      Json::parse(R"({"type":"object","properties":{"xs":{"type":"array","items":{"type":"integer"},
          "maxItems":5},"grid":{"type":"array","items":{"type":"array","items":{"enum":[0,1]},
          "minItems":1,"maxItems":3},"maxItems":3}},"required":["xs","grid"],
          "additionalProperties":false})"),
      Json::parse(R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]},
          "size":{"enum":[1,2,3,null]},"kind":{"const":"fixed"}},
          "required":["color","size","kind"],"additionalProperties":false})"),
      Json::parse(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
          "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],
          "additionalProperties":false}},"$ref":"#/$defs/node"})"),
      Json::parse(R"({"type":"object","properties":{"shape":{"anyOf":[
          {"type":"object","properties":{"type":{"const":"circle"},"r":{"type":"number"}},
           "required":["type","r"],"additionalProperties":false},
          {"type":"object","properties":{"type":{"const":"rect"},"w":{"type":"integer"},
           "h":{"type":"integer"}},"required":["type","w","h"],"additionalProperties":false},
          {"type":"null"}]}},"required":["shape"],"additionalProperties":false})"),
  };
}

class ConstrainedE2E : public LocalEngineSuite {
 protected:
  static void SetUpTestSuite() {
    LocalEngineConfig config;
    config.max_queue = 16;
    config.max_context = 2048;
    config.total_s = 120;
    startSuite(kKey, /*gemma4=*/false, /*seed=*/9, config);
  }

  static Json body(const Json& schema, int seed, bool stream) {
    Json b = {{"model", "tiny"},
              {"messages", Json::array({{{"role", "user"}, {"content", "Describe it as JSON."}}})},
              {"max_tokens", 1200},
              {"temperature", 1.0},
              {"seed", seed},
              {"response_format",
               {{"type", "json_schema"},
                {"json_schema", {{"name", "answer"}, {"strict", true}, {"schema", schema}}}}}};
    if (stream) b["stream"] = true;
    return b;
  }
  static HttpResponse post(const Json& b) { return postChat(b, milliseconds(120000)); }
};

// The answer's text and finish reason, from a response or from its SSE chunks.
void readAnswer(const HttpResponse& r, bool stream, std::string& text, std::string& finish) {
  if (!stream) {
    Json j = r.json();
    text = j["choices"][0]["message"].value("content", "");
    finish = j["choices"][0].value("finish_reason", "");
    return;
  }
  for (const std::string& e : sseEvents(r.body)) {
    Json c = Json::parse(e, nullptr, false);
    if (!c.is_object() || !c.contains("choices")) continue;
    for (const Json& ch : c["choices"]) {
      if (ch.contains("delta") && ch["delta"].contains("content") &&
          ch["delta"]["content"].is_string()) {
        text += ch["delta"]["content"].get<std::string>();
      }
      if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
        finish = ch["finish_reason"];
      }
    }
  }
}

TEST_F(ConstrainedE2E, EveryAnswerParsesAndValidatesStreamedAndNot) {
  const std::vector<Json> suite = schemas();
  constexpr int kRequests = 200, kClients = 4;  // as many clients as the engine's batch
  std::vector<HttpResponse> responses(kRequests);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < kRequests; i += kClients) {
        responses[i] = post(body(suite[i % suite.size()], 1000 + i, i % 2 == 1));
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kRequests; ++i) {
    const Json& schema = suite[i % suite.size()];
    const HttpResponse& r = responses[i];
    ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
    std::string text, finish;
    readAnswer(r, i % 2 == 1, text, finish);
    EXPECT_EQ(finish, "stop") << "request " << i << ": " << text;
    Json value = Json::parse(text, nullptr, false);
    ASSERT_FALSE(value.is_discarded()) << "request " << i << " does not parse: " << text;
    std::string why;
    EXPECT_TRUE(matchesSchema(value, schema, schema, why)) << "request " << i << ": " << why << "\n"
                                                           << text;
  }
}

TEST_F(ConstrainedE2E, JsonObjectModeAnswersAnObject) {
  Json b = body(Json::object(), 7, false);
  b["response_format"] = {{"type", "json_object"}};
  b["max_tokens"] = 1500;
  HttpResponse r = post(b);
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  const std::string text = j["choices"][0]["message"].value("content", "");
  // Keys are free strings here, which a random model may not close before max_tokens: then the
  // answer is a valid prefix of an object, cut off.
  if (j["choices"][0].value("finish_reason", "") == "stop") {
    EXPECT_TRUE(Json::parse(text, nullptr, false).is_object()) << text;
  } else {
    EXPECT_EQ(text.rfind("{", 0), 0u) << text;
  }
}

// Properties come in the order the schema declares them (OpenAI's order), not sorted: the body
// is written as text, since a Json body would sort its keys.
TEST_F(ConstrainedE2E, PropertiesComeInTheSchemasOrder) {
  const std::string schema = R"({"type":"object","properties":{"zeta":{"type":"integer"},
      "alpha":{"type":"object","properties":{"z2":{"type":"boolean"},"a2":{"type":"null"}},
      "required":["z2","a2"],"additionalProperties":false},"mid":{"$ref":"#/$defs/p"}},
      "required":["zeta","alpha","mid"],"additionalProperties":false,"$defs":{"p":{
      "type":"object","properties":{"y":{"type":"integer"},"x":{"type":"integer"}},
      "required":["y","x"],"additionalProperties":false}}})";
  using Keys = std::vector<std::string>;
  auto keys = [](const nlohmann::ordered_json& o) {
    Keys k;
    for (const auto& [key, v] : o.items()) k.push_back(key);
    return k;
  };
  for (int i = 0; i < 4; ++i) {
    const bool stream = i % 2 == 1;
    const std::string body =
        R"({"model":"tiny","messages":[{"role":"user","content":"Describe it as JSON."}],)"
        R"("max_tokens":1200,"temperature":1.0,"seed":)" +
        std::to_string(60 + i) +
        R"(,"response_format":{"type":"json_schema","json_schema":{"name":"o","strict":true,)"
        R"("schema":)" +
        schema + "}}" + (stream ? R"(,"stream":true})" : "}");
    HttpResponse r = httpPost(server_->url() + "/v1/chat/completions", body, bearer(),
                              milliseconds(120000));
    ASSERT_EQ(r.status, 200) << r.body;
    std::string text, finish;
    readAnswer(r, stream, text, finish);
    const auto v = nlohmann::ordered_json::parse(text, nullptr, false);
    ASSERT_TRUE(v.is_object()) << text;
    EXPECT_EQ(keys(v), Keys({"zeta", "alpha", "mid"})) << text;
    EXPECT_EQ(keys(v["alpha"]), Keys({"z2", "a2"})) << text;
    EXPECT_EQ(keys(v["mid"]), Keys({"y", "x"})) << text;
  }
}

TEST_F(ConstrainedE2E, UnsupportedKeywordIsA400NamingIt) {
  Json schema = Json::parse(R"({"type":"object","properties":{"n":{"type":"integer",
      "minimum":3}},"required":["n"],"additionalProperties":false})");
  HttpResponse r = post(body(schema, 1, false));
  EXPECT_EQ(r.status, 400) << r.body;
  Json j = r.json();
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"].value("param", ""),
            "response_format.json_schema.schema.properties.n.minimum")
      << r.body;
}

}  // namespace
}  // namespace sytest
