#include "api/json_text.h"

#include <gtest/gtest.h>

#include <string>

namespace api {
namespace {

std::string edit(std::string_view text, const std::vector<MemberEdit>& edits) {
  auto r = editTopLevelMembers(text, edits);
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : "";
}

TEST(EditTopLevelMembers, SetsAndRemovesKeepingEveryOtherByte) {
  const std::string body =
      R"( {"zeta": 1.50, "model":"a", "tools":[{"input_schema":{"properties":{"b":{},"a":{}}}}],)"
      R"( "stream" : false, "s":"caf\u00e9 \"q\"", "model":"dup"} )";
  const std::string out = edit(body, {{"model", Json("up-model")},
                                      {"max_tokens", Json(64)},
                                      {"stream", std::nullopt}});
  EXPECT_EQ(out,
            R"({"model":"up-model","max_tokens":64,"zeta": 1.50,)"
            R"("tools":[{"input_schema":{"properties":{"b":{},"a":{}}}}],"s":"caf\u00e9 \"q\""})");
  Json j = Json::parse(out);
  EXPECT_EQ(j["model"], "up-model");
  EXPECT_FALSE(j.contains("stream"));
}

TEST(EditTopLevelMembers, NestedNamesAndEscapedKeys) {
  // A nested "model" stays; a top-level key written with an escape is still that key.
  const std::string body = R"({"m\u006fdel":"x","inner":{"model":"keep","a":[1,{"model":2}]}})";
  EXPECT_EQ(edit(body, {{"model", Json("y")}}),
            R"({"model":"y","inner":{"model":"keep","a":[1,{"model":2}]}})");
  EXPECT_EQ(edit("{}", {{"model", Json("y")}}), R"({"model":"y"})");
  EXPECT_EQ(edit(" { } ", {{"model", std::nullopt}}), "{}");
  // Strings holding brackets and quotes do not confuse the member boundaries.
  const std::string tricky = R"({"a":"}]\"{[","b":[["}"]],"c":null,"d":true,"e":-1e3})";
  EXPECT_EQ(edit(tricky, {{"c", std::nullopt}}), R"({"a":"}]\"{[","b":[["}"]],"d":true,"e":-1e3})");
}

TEST(EditTopLevelMembers, NotAnObjectIsAnError) {
  for (std::string_view bad : {"", "[]", "{", R"({"a":1,})", R"({"a" 1})", R"({"a":1} x)",
                               R"({"a":)", R"({a:1})", R"({"a":"unterminated)"}) {
    EXPECT_FALSE(editTopLevelMembers(bad, {{"a", Json(1)}}).ok()) << bad;
  }
}

TEST(EditTopLevelMembers, ManyMembersStayLinear) {
  // 200,000 members: one pass (a quadratic rewrite would not finish in the test's time).
  std::string body = "{";
  for (int i = 0; i < 200000; ++i) {
    body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  }
  body += "}";
  std::string out = edit(body, {{"k7", std::nullopt}, {"model", Json("m")}});
  EXPECT_EQ(out.size(), body.size() - std::string("\"k7\":7,").size() +
                            std::string("\"model\":\"m\",").size());
}

}  // namespace
}  // namespace api
