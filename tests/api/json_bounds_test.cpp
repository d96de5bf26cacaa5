// api::checkJsonBounds and api::parseBoundedJson: the one depth and size check of every
// client JSON body, made on the text before any tree is built.
#include <gtest/gtest.h>

#include <string>

#include "api/openai_json.h"

namespace api {
namespace {

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string arrayOf(int64_t n) {
  std::string s = "[0";
  for (int64_t i = 1; i < n; ++i) s += ",0";
  return s + "]";
}

TEST(JsonBounds, DepthLimitIsInclusive) {
  EXPECT_TRUE(checkJsonBounds(nested(kMaxRequestJsonDepth)).ok());
  Status s = checkJsonBounds(nested(kMaxRequestJsonDepth + 1));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("nest at most 128 levels"), std::string::npos) << s.message();
}

TEST(JsonBounds, BracketsAndQuotesInsideStringsDoNotCount) {
  std::string deep_text = "\"" + nested(500) + "\"";
  EXPECT_TRUE(checkJsonBounds("{\"a\":" + deep_text + "}").ok());
  // An escaped quote does not end the string; an escaped backslash before a quote does.
  EXPECT_TRUE(checkJsonBounds("[\"x\\\"" + nested(300) + "\"]").ok());
  EXPECT_FALSE(checkJsonBounds("[\"x\\\\\"," + nested(300) + "]").ok());
  std::string commas(200000, ',');
  EXPECT_TRUE(checkJsonBounds("[\"" + commas + "\"]").ok());
}

TEST(JsonBounds, ValueCountIsBounded) {
  JsonBounds small{8, 10};
  EXPECT_TRUE(checkJsonBounds(arrayOf(9), small).ok());  // the array and 9 elements
  Status s = checkJsonBounds(arrayOf(10), small);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("more than 10 values"), std::string::npos) << s.message();
  // Object members count their value too.
  EXPECT_FALSE(checkJsonBounds(R"({"a":1,"b":2,"c":3,"d":4,"e":5,"f":6})", small).ok());
  EXPECT_FALSE(checkJsonBounds(arrayOf(kMaxRequestJsonValues + 1)).ok());
}

TEST(JsonBounds, NulByteOutsideStringsIsRefused) {
  // The parser stops at a NUL byte and accepts the text before it; the body must be refused
  // so that what is forwarded (byte for byte, on pass-through) is what was checked.
  std::string body = R"({"a":1})";
  body += std::string(3, '\0');
  Status s = checkJsonBounds(body);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("NUL byte at offset 7"), std::string::npos) << s.message();
  EXPECT_FALSE(parseBoundedJson(body).ok());
  std::string inside = "[\"a";
  inside += '\0';
  inside += "b\"]";
  EXPECT_TRUE(checkJsonBounds(inside).ok());  // inside a string: the parser refuses it itself
  EXPECT_FALSE(parseBoundedJson(inside).ok());
}

TEST(JsonBounds, ParseBoundedJsonReportsBoundsThenSyntax) {
  auto ok = parseBoundedJson(R"({"a":[1,2,{"b":null}]})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)["a"][2]["b"], Json());
  auto deep = parseBoundedJson(nested(kMaxRequestJsonDepth + 1));
  EXPECT_NE(deep.status().message().find("nest"), std::string::npos);
  auto bad = parseBoundedJson("{\"a\":");
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(bad.status().message().find("could not parse the JSON body"), std::string::npos);
}

TEST(JsonBounds, ChatRequestsGoThroughTheSameBound) {
  std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}],"x":)" +
                     arrayOf(kMaxRequestJsonValues) + "}";
  auto r = parseChatRequest(body);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("values"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace api
