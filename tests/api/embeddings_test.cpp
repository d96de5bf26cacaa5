#include "api/embeddings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace api {
namespace {

EmbeddingRequest parseOk(const std::string& body) {
  auto r = parseEmbeddingRequest(body);
  EXPECT_TRUE(r.ok()) << body << ": " << r.status().message();
  return r.ok() ? *r : EmbeddingRequest{};
}

Status parseErr(const std::string& body) {
  auto r = parseEmbeddingRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? Status() : r.status();
}

TEST(EmbeddingRequest, ReadsEveryInputShape) {
  EmbeddingRequest one = parseOk(R"({"model":"e","input":"hello"})");
  ASSERT_EQ(one.inputs.size(), 1u);
  EXPECT_EQ(one.inputs[0].text, "hello");
  EXPECT_FALSE(one.inputs[0].is_tokens);
  EXPECT_EQ(one.encoding_format, EmbeddingEncoding::kFloat);

  EmbeddingRequest many = parseOk(R"({"model":"e","input":["a","b c"]})");
  ASSERT_EQ(many.inputs.size(), 2u);
  EXPECT_EQ(many.inputs[1].text, "b c");

  EmbeddingRequest ids = parseOk(R"({"model":"e","input":[1,2,3]})");
  ASSERT_EQ(ids.inputs.size(), 1u);
  EXPECT_TRUE(ids.inputs[0].is_tokens);
  EXPECT_EQ(ids.inputs[0].tokens, (std::vector<int64_t>{1, 2, 3}));

  EmbeddingRequest lists = parseOk(R"({"model":"e","input":[[5],[6,7]]})");
  ASSERT_EQ(lists.inputs.size(), 2u);
  EXPECT_EQ(lists.inputs[1].tokens, (std::vector<int64_t>{6, 7}));

  EmbeddingRequest all = parseOk(
      R"({"model":"e","input":"x","dimensions":256,"encoding_format":"base64","user":"u1"})");
  EXPECT_EQ(all.dimensions, 256);
  EXPECT_EQ(all.encoding_format, EmbeddingEncoding::kBase64);
  EXPECT_EQ(all.user, "u1");
  // null reads as absent
  EXPECT_FALSE(parseOk(R"({"model":"e","input":"x","dimensions":null})").dimensions);
}

TEST(EmbeddingRequest, BadTypesAre400sNamingTheField) {
  struct Case {
    const char* body;
    const char* param;
    const char* code;
  };
  const Case cases[] = {
      {R"({"input":"x"})", "model", "missing_required_parameter"},
      {R"({"model":"e"})", "input", "missing_required_parameter"},
      {R"({"model":"e","input":null})", "input", "missing_required_parameter"},
      {R"({"model":7,"input":"x"})", "model", "invalid_type"},
      {R"({"model":"e","input":5})", "input", "invalid_type"},
      {R"({"model":"e","input":{"a":1}})", "input", "invalid_type"},
      {R"({"model":"e","input":""})", "input", "invalid_value"},
      {R"({"model":"e","input":[]})", "input", "invalid_value"},
      {R"({"model":"e","input":["a",""]})", "input[1]", "invalid_value"},
      {R"({"model":"e","input":["a",3]})", "input[1]", "invalid_type"},
      {R"({"model":"e","input":[[1],"a"]})", "input[1]", "invalid_type"},
      {R"({"model":"e","input":[[1],[]]})", "input[1]", "invalid_value"},
      {R"({"model":"e","input":[1,2.5]})", "input[1]", "invalid_type"},
      {R"({"model":"e","input":[1,-2]})", "input[1]", "invalid_value"},
      {R"({"model":"e","input":[[1,99999999999]]})", "input[0][1]", "invalid_value"},
      {R"({"model":"e","input":[1.5]})", "input[0]", "invalid_type"},
      {R"({"model":"e","input":"x","dimensions":"8"})", "dimensions", "invalid_type"},
      {R"({"model":"e","input":"x","dimensions":0})", "dimensions", "invalid_value"},
      {R"({"model":"e","input":"x","dimensions":-3})", "dimensions", "invalid_value"},
      {R"({"model":"e","input":"x","dimensions":1.5})", "dimensions", "invalid_type"},
      {R"({"model":"e","input":"x","dimensions":18446744073709551615})", "dimensions",
       "invalid_value"},
      {R"({"model":"e","input":"x","encoding_format":"int8"})", "encoding_format", "invalid_value"},
      {R"({"model":"e","input":"x","encoding_format":1})", "encoding_format", "invalid_type"},
      {R"({"model":"e","input":"x","user":false})", "user", "invalid_type"},
      {R"({"model":"e","input":"x","messages":[]})", "messages", "unknown_parameter"},
  };
  for (const Case& c : cases) {
    Status s = parseErr(c.body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest) << c.body;
    EXPECT_EQ(s.param(), c.param) << c.body << ": " << s.message();
    EXPECT_EQ(s.openaiCode(), c.code) << c.body << ": " << s.message();
  }
}

TEST(EmbeddingRequest, MalformedBodiesAre400s) {
  for (const char* body : {"", "{", "[1,2]", "\"x\"", "null", "{\"model\":\"e\",\"input\":\"x\"",
                           "{\"model\":\"e\" \"input\":\"x\"}"}) {
    Status s = parseErr(body);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest) << body;
  }
  // Over the JSON depth bound: refused before it is built.
  std::string deep =
      R"({"model":"e","input":)" + std::string(500, '[') + std::string(500, ']') + "}";
  EXPECT_EQ(parseErr(deep).code(), ErrorCode::kInvalidRequest);
}

TEST(EmbeddingRequest, AtMost2048Inputs) {
  std::string body = R"({"model":"e","input":[)";
  for (size_t i = 0; i < kMaxEmbeddingInputs; ++i) body += (i ? ",\"w\"" : "\"w\"");
  EXPECT_EQ(parseOk(body + "]}").inputs.size(), kMaxEmbeddingInputs);
  Status s = parseErr(body + ",\"w\"]}");
  EXPECT_EQ(s.param(), "input");
  EXPECT_NE(s.message().find("2048"), std::string::npos) << s.message();
}

TEST(EmbeddingRequest, UpstreamBodyKeepsTheInputsFormAndAsksForFloats) {
  EmbeddingRequest r = parseOk(
      R"({"model":"e","input":[[1,2],[3]],"dimensions":4,"encoding_format":"base64","user":"u"})");
  r.model = "upstream-e";
  Json j = embeddingRequestToJson(r);
  EXPECT_EQ(j["model"], "upstream-e");
  EXPECT_EQ(j["input"], Json::parse("[[1,2],[3]]"));
  EXPECT_EQ(j["dimensions"], 4);
  EXPECT_EQ(j["user"], "u");
  EXPECT_EQ(j["encoding_format"], "float");
  EXPECT_EQ(embeddingRequestToJson(parseOk(R"({"model":"e","input":"hi"})"))["input"], "hi");
  EXPECT_EQ(embeddingRequestToJson(parseOk(R"({"model":"e","input":[7,8]})"))["input"],
            Json::parse("[7,8]"));
}

TEST(EmbeddingBase64, RoundTripsFloat32Exactly) {
  const std::vector<std::vector<float>> cases = {
      {},
      {1.0f},
      {0.5f, -0.25f},
      {3.14159f, -2.71828f, 1e-30f},
      {std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), -0.0f, 42.0f},
  };
  for (const auto& v : cases) {
    std::string b = base64Floats(v);
    EXPECT_EQ(b.size() % 4, 0u);
    auto back = floatsFromBase64(b);
    ASSERT_TRUE(back.ok()) << b;
    ASSERT_EQ(back->size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_EQ(std::signbit((*back)[i]), std::signbit(v[i]));
      EXPECT_EQ((*back)[i], v[i]);
    }
  }
  // 1.0f is 00 00 80 3f little-endian, which OpenAI's base64 writes as "AACAPw==".
  EXPECT_EQ(base64Floats({1.0f}), "AACAPw==");
  for (const char* bad :
       {"AAC", "AACAPw=", "AA=APw==", "AACA Pw=", "AAA=", "====", "AACAPw==AAAA"}) {
    EXPECT_FALSE(floatsFromBase64(bad).ok()) << bad;
  }
}

TEST(EmbeddingResponse, SerializesOpenAIsShape) {
  EmbeddingResponse r;
  r.model = "e";
  r.embeddings = {{0.5f, -1.0f}, {0.25f, 2.0f}};
  r.prompt_tokens = 7;
  Json f = Json::parse(serializeEmbeddingResponse(r, EmbeddingEncoding::kFloat));
  EXPECT_EQ(f["object"], "list");
  EXPECT_EQ(f["model"], "e");
  ASSERT_EQ(f["data"].size(), 2u);
  EXPECT_EQ(f["data"][1]["object"], "embedding");
  EXPECT_EQ(f["data"][1]["index"], 1);
  EXPECT_EQ(f["data"][1]["embedding"], Json::parse("[0.25,2.0]"));
  EXPECT_EQ(f["usage"], Json::parse(R"({"prompt_tokens":7,"total_tokens":7})"));
  Json b = Json::parse(serializeEmbeddingResponse(r, EmbeddingEncoding::kBase64));
  ASSERT_TRUE(b["data"][0]["embedding"].is_string());
  auto v = floatsFromBase64(b["data"][0]["embedding"].get<std::string>());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, r.embeddings[0]);
  // A float prints in its shortest form that reads back to the same float32.
  r.embeddings = {{0.1f}};
  Json s = Json::parse(serializeEmbeddingResponse(r, EmbeddingEncoding::kFloat));
  EXPECT_EQ(s["data"][0]["embedding"][0].get<float>(), 0.1f);
  EXPECT_NE(serializeEmbeddingResponse(r, EmbeddingEncoding::kFloat).find("[0.1]"),
            std::string::npos);
}

TEST(EmbeddingResponse, ReadsUpstreamsLenientlyAndChecksTheShape) {
  auto r = parseEmbeddingResponse(
      R"({"object":"list","model":"m","data":[{"index":1,"embedding":[3,4]},)"
      R"({"index":0,"embedding":"AACAPw=="}],"usage":{"prompt_tokens":9,"total_tokens":9},"x":1})",
      2);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->embeddings[0], (std::vector<float>{1.0f}));
  EXPECT_EQ(r->embeddings[1], (std::vector<float>{3.0f, 4.0f}));
  EXPECT_EQ(r->prompt_tokens, 9);
  EXPECT_TRUE(r->usage_reported);
  auto no_usage = parseEmbeddingResponse(R"({"data":[{"embedding":[1]}]})", 1);
  ASSERT_TRUE(no_usage.ok());
  EXPECT_FALSE(no_usage->usage_reported);
  for (const char* bad :
       {"not json", "[]", R"({"data":{}})", R"({"data":[]})",
        R"({"data":[{"embedding":[1]},{"embedding":[2]}]})", R"({"data":[{"embedding":"@@"}]})",
        R"({"data":[{"embedding":["a"]}]})", R"({"data":[{"index":3,"embedding":[1]}]})",
        R"({"data":[{"index":-1,"embedding":[1]}]})", R"({"data":[{}]})", R"({"data":[5]})"}) {
    auto e = parseEmbeddingResponse(bad, 1);
    EXPECT_FALSE(e.ok()) << bad;
    if (!e.ok()) {
      EXPECT_EQ(e.status().code(), ErrorCode::kUpstreamError) << bad;
    }
  }
  EXPECT_FALSE(parseEmbeddingResponse(
                   R"({"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]})", 2)
                   .ok());
}

}  // namespace
}  // namespace api
