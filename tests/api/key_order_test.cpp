// api::KeyOrder: the body's key order captured for schemas, through the capture function and
// through each entrance's parser.
#include "api/key_order.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/anthropic_messages.h"
#include "api/chat.h"
#include "api/openai_json.h"
#include "api/responses.h"

namespace api {
namespace {

using Keys = std::vector<std::string>;

Keys keysAt(const KeyOrder& order, std::string_view pointer) {
  const Keys* keys = order.keysAt(pointer);
  return keys != nullptr ? *keys : Keys{"<none>"};
}

TEST(KeyOrder, CapturesNestedObjectsInBodyOrder) {
  const std::string body = R"({"x":{"schema":{"type":"object","properties":{
      "zeta":{"type":"integer"},"alpha":{"type":"object","properties":{"z":{},"a":{}}},
      "mid":{"anyOf":[{"properties":{"q":{},"b":{}}},{"type":"null"}]}},
      "$defs":{"p/q~r":{"properties":{"y":{},"x":{}}}}}},"other":{"b":1,"a":2}})";
  auto orders = captureKeyOrders(body, {"/x/schema"});
  ASSERT_EQ(orders.size(), 1u);
  const KeyOrder& o = orders["/x/schema"];
  EXPECT_EQ(keysAt(o, ""), Keys({"type", "properties", "$defs"}));
  EXPECT_EQ(keysAt(o, "/properties"), Keys({"zeta", "alpha", "mid"}));
  EXPECT_EQ(keysAt(o, "/properties/alpha/properties"), Keys({"z", "a"}));
  EXPECT_EQ(keysAt(o, "/properties/mid/anyOf/0/properties"), Keys({"q", "b"}));
  EXPECT_EQ(keysAt(o, "/$defs/p~1q~0r/properties"), Keys({"y", "x"}));
  EXPECT_EQ(o.keysAt("/properties/zeta/type"), nullptr);  // a string, not an object
  EXPECT_EQ(o.keysAt("/properties/nope"), nullptr);
  EXPECT_EQ(o.keysAt("/properties/mid/anyOf/7"), nullptr);
  EXPECT_EQ(keysAt(o.at("/properties/alpha"), "/properties"), Keys({"z", "a"}));
  EXPECT_TRUE(o.at("/missing").empty());
  // The captured value written back in the body's order.
  const Json parsed = Json::parse(body);
  EXPECT_EQ(dumpInOrder(parsed["x"]["schema"], o),
            R"({"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"object",)"
            R"("properties":{"z":{},"a":{}}},"mid":{"anyOf":[{"properties":{"q":{},"b":{}}},)"
            R"({"type":"null"}]}},"$defs":{"p/q~r":{"properties":{"y":{},"x":{}}}}})");
  EXPECT_EQ(dumpInOrder(parsed["other"], KeyOrder()), R"({"a":2,"b":1})");
}

TEST(KeyOrder, WildcardsDuplicatesAndWhatIsNotCaptured) {
  const std::string body = R"({"tools":[{"p":{"b":1,"a":2}},{"p":{"c":1,"a":2,"c":3}},
      {"p":7},{"q":{"y":1,"x":2}}],"tools2":{"p":{"b":1}}})";
  auto orders = captureKeyOrders(body, {"/tools/*/p"});
  ASSERT_EQ(orders.size(), 2u);
  EXPECT_EQ(keysAt(orders["/tools/0/p"], ""), Keys({"b", "a"}));
  // A key written twice counts where it was last written, as the parsed value keeps the last.
  EXPECT_EQ(keysAt(orders["/tools/1/p"], ""), Keys({"a", "c"}));
  EXPECT_EQ(orders["/tools/0/p"].fingerprint(), R"({"b":,"a":})");
  EXPECT_NE(orders["/tools/0/p"].fingerprint(), orders["/tools/1/p"].fingerprint());
  // A duplicated matched value: the last one's order.
  auto twice = captureKeyOrders(R"({"s":{"b":1,"a":1},"s":{"y":1,"x":1}})", {"/s"});
  EXPECT_EQ(keysAt(twice["/s"], ""), Keys({"y", "x"}));
  EXPECT_TRUE(captureKeyOrders(R"({"s":{"b":1,)", {"/s"}).empty()) << "not JSON";
  EXPECT_TRUE(captureKeyOrders(R"({"s":{"b":1}})", {"/t"}).empty());
}

// An object of 200k keys: captured (and looked up) in linear time; no timing is asserted, the
// test only has to finish in the normal run.
TEST(KeyOrder, LargeObjectStaysLinear) {
  constexpr int kKeys = 200000;
  std::string body = R"({"tools":[{"function":{"parameters":{"properties":{)";
  for (int i = kKeys; i-- > 0;) {
    body += "\"k" + std::to_string(i) + "\":{\"properties\":{\"b\":{},\"a\":{}}}";
    if (i > 0) body += ',';
  }
  body += "}}}}]}";
  auto orders = captureKeyOrders(body, {"/tools/*/function/parameters"});
  const KeyOrder& o = orders["/tools/0/function/parameters"];
  const Keys* keys = o.keysAt("/properties");
  ASSERT_NE(keys, nullptr);
  ASSERT_EQ(keys->size(), static_cast<size_t>(kKeys));
  EXPECT_EQ(keys->front(), "k" + std::to_string(kKeys - 1));
  EXPECT_EQ(keys->back(), "k0");
  for (int i = 0; i < kKeys; i += 997) {
    EXPECT_EQ(keysAt(o, "/properties/k" + std::to_string(i) + "/properties"), Keys({"b", "a"}));
  }
  const Json parsed = Json::parse(body)["tools"][0]["function"]["parameters"];
  const std::string text = dumpInOrder(parsed, o);
  EXPECT_EQ(text.rfind(R"({"properties":{"k199999":{"properties":{"b":{},"a":{}}},)", 0), 0u);
  EXPECT_FALSE(o.fingerprint().empty());
}

constexpr const char* kSchema =
    R"({"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"integer"},)"
    R"("mid":{"type":"integer"}},"required":["zeta","alpha","mid"]})";

TEST(KeyOrder, ChatCompletionsCarriesTheOrderOfSchemaAndParameters) {
  const std::string body =
      std::string(R"({"model":"m","messages":[{"role":"user","content":"hi"}],)") +
      R"("response_format":{"type":"json_schema","json_schema":{"name":"n","schema":)" +
      kSchema + R"(}},"tools":[{"type":"function","function":{"name":"f","parameters":)" +
      kSchema + R"(}},{"type":"function","function":{"name":"g"}}]})";
  auto req = parseChatRequest(body);
  ASSERT_TRUE(req.ok()) << req.status().toString();
  ASSERT_TRUE(req->response_format);
  EXPECT_EQ(keysAt(req->response_format->schema_order, "/properties"),
            Keys({"zeta", "alpha", "mid"}));
  ASSERT_EQ(req->tools.size(), 2u);
  EXPECT_EQ(keysAt(req->tools[0].parameters_order, "/properties"),
            Keys({"zeta", "alpha", "mid"}));
  EXPECT_TRUE(req->tools[1].parameters_order.empty());
  // The parsed schema itself is unchanged (what cloud providers are sent).
  EXPECT_EQ(req->tools[0].parameters, Json::parse(kSchema));
  // Without schemas, no order is captured.
  auto plain = parseChatRequest(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(plain.ok());
}

TEST(KeyOrder, ResponsesAndMessagesCarryTheOrder) {
  const std::string responses =
      std::string(R"({"model":"m","input":"hi","text":{"format":{"type":"json_schema",)") +
      R"("name":"n","schema":)" + kSchema + R"(}},"tools":[{"type":"function","name":"f",)" +
      R"("parameters":)" + kSchema + "}]}";
  auto r = parseResponsesRequest(responses);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  ASSERT_TRUE(r->response_format);
  EXPECT_EQ(keysAt(r->response_format->schema_order, "/properties"),
            Keys({"zeta", "alpha", "mid"}));
  ASSERT_EQ(r->tools.size(), 1u);
  EXPECT_EQ(keysAt(r->tools[0].parameters_order, "/properties"), Keys({"zeta", "alpha", "mid"}));

  const std::string messages =
      std::string(R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],)") +
      R"("tools":[{"name":"f","input_schema":)" + kSchema + "}]}";
  auto m = parseMessagesRequest(messages);
  ASSERT_TRUE(m.ok()) << m.status().toString();
  ASSERT_EQ(m->tools.size(), 1u);
  EXPECT_EQ(keysAt(m->tools[0].parameters_order, "/properties"), Keys({"zeta", "alpha", "mid"}));
}

}  // namespace
}  // namespace api
