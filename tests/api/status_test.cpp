#include "api/status.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace api {
namespace {

const std::vector<ErrorCode> kAllCodes = {
    ErrorCode::kOk,
    ErrorCode::kInvalidRequest,
    ErrorCode::kUnauthenticated,
    ErrorCode::kPermissionDenied,
    ErrorCode::kNotFound,
    ErrorCode::kMethodNotAllowed,
    ErrorCode::kPayloadTooLarge,
    ErrorCode::kRateLimited,
    ErrorCode::kQuotaExceeded,
    ErrorCode::kInternal,
    ErrorCode::kUpstreamError,
    ErrorCode::kUnavailable,
    ErrorCode::kUpstreamTimeout,
    ErrorCode::kCancelled,
    ErrorCode::kConfig,
    ErrorCode::kIo,
};

TEST(Status, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.param(), "");
  EXPECT_EQ(s.openaiCode(), "");
  EXPECT_FALSE(s.retryAfterSeconds().has_value());
  EXPECT_EQ(s.toString(), "ok");
  EXPECT_TRUE(Status::okStatus().ok());
}

TEST(Status, CarriesMessageParamAndCode) {
  Status s(ErrorCode::kNotFound, "The model 'x' does not exist", "model", "model_not_found");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.message(), "The model 'x' does not exist");
  EXPECT_EQ(s.param(), "model");
  EXPECT_EQ(s.openaiCode(), "model_not_found");
  EXPECT_EQ(s.toString(), "not_found: The model 'x' does not exist");
}

TEST(Status, InvalidRequestHelperSetsCodeAndParam) {
  Status s = invalidRequest("bad temperature", "temperature");
  EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(s.param(), "temperature");
  EXPECT_EQ(s.openaiCode(), "");
  EXPECT_EQ(s.toString(), "invalid_request: bad temperature");
}

TEST(Status, RetryAfterIsChainable) {
  Status s(ErrorCode::kRateLimited, "slow down");
  Status& same = s.withRetryAfter(2.5);
  EXPECT_EQ(&same, &s);
  ASSERT_TRUE(s.retryAfterSeconds().has_value());
  EXPECT_DOUBLE_EQ(*s.retryAfterSeconds(), 2.5);
}

TEST(Status, HttpStatusMapsEveryCode) {
  EXPECT_EQ(httpStatus(ErrorCode::kOk), 200);
  EXPECT_EQ(httpStatus(ErrorCode::kInvalidRequest), 400);
  EXPECT_EQ(httpStatus(ErrorCode::kUnauthenticated), 401);
  EXPECT_EQ(httpStatus(ErrorCode::kPermissionDenied), 403);
  EXPECT_EQ(httpStatus(ErrorCode::kNotFound), 404);
  EXPECT_EQ(httpStatus(ErrorCode::kMethodNotAllowed), 405);
  EXPECT_EQ(httpStatus(ErrorCode::kPayloadTooLarge), 413);
  EXPECT_EQ(httpStatus(ErrorCode::kRateLimited), 429);
  EXPECT_EQ(httpStatus(ErrorCode::kQuotaExceeded), 429);
  EXPECT_EQ(httpStatus(ErrorCode::kInternal), 500);
  EXPECT_EQ(httpStatus(ErrorCode::kUpstreamError), 502);
  EXPECT_EQ(httpStatus(ErrorCode::kUnavailable), 503);
  EXPECT_EQ(httpStatus(ErrorCode::kUpstreamTimeout), 504);
  EXPECT_EQ(httpStatus(ErrorCode::kCancelled), 499);
  EXPECT_EQ(httpStatus(ErrorCode::kConfig), 500);
  EXPECT_EQ(httpStatus(ErrorCode::kIo), 500);
}

TEST(Status, OpenaiTypeMatchesOpenAINames) {
  EXPECT_EQ(openaiType(ErrorCode::kInvalidRequest), "invalid_request_error");
  EXPECT_EQ(openaiType(ErrorCode::kUnauthenticated), "authentication_error");
  EXPECT_EQ(openaiType(ErrorCode::kPermissionDenied), "permission_error");
  EXPECT_EQ(openaiType(ErrorCode::kNotFound), "invalid_request_error");
  EXPECT_EQ(openaiType(ErrorCode::kRateLimited), "rate_limit_error");
  EXPECT_EQ(openaiType(ErrorCode::kQuotaExceeded), "insufficient_quota");
  EXPECT_EQ(openaiType(ErrorCode::kInternal), "server_error");
  EXPECT_EQ(openaiType(ErrorCode::kUpstreamTimeout), "timeout_error");
  for (ErrorCode c : kAllCodes) {
    if (c == ErrorCode::kOk) continue;
    EXPECT_FALSE(openaiType(c).empty()) << codeName(c);
  }
}

TEST(Status, CodeNamesAreDistinctAndSnakeCase) {
  std::vector<std::string> seen;
  for (ErrorCode c : kAllCodes) {
    std::string name(codeName(c));
    ASSERT_FALSE(name.empty());
    for (char ch : name) EXPECT_TRUE((ch >= 'a' && ch <= 'z') || ch == '_') << name;
    for (const std::string& other : seen) EXPECT_NE(name, other);
    seen.push_back(name);
  }
  EXPECT_EQ(codeName(ErrorCode::kUpstreamTimeout), "upstream_timeout");
  EXPECT_EQ(codeName(ErrorCode::kInvalidRequest), "invalid_request");
}

TEST(StatusOr, HoldsValue) {
  StatusOr<std::string> v(std::string("hello"));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v.status().ok());
  EXPECT_EQ(*v, "hello");
  EXPECT_EQ(v->size(), 5u);
  v.value() += "!";
  EXPECT_EQ(v.value(), "hello!");
  std::string moved = std::move(v).value();
  EXPECT_EQ(moved, "hello!");
}

TEST(StatusOr, HoldsError) {
  StatusOr<int> v(Status(ErrorCode::kUnavailable, "draining"));
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(v.status().message(), "draining");
}

}  // namespace
}  // namespace api
