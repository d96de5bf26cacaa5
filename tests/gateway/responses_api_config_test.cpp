// The `responses_api` key of OpenAI-wire providers (gateway/config.h): which servers are sent
// the Responses API natively.
#include <gtest/gtest.h>

#include <string>

#include "gateway/config.h"

namespace gateway {
namespace {

api::StatusOr<std::shared_ptr<const Config>> parse(const std::string& provider) {
  return parseConfig("providers:\n  up: " + provider + "\n", "t.yaml");
}

bool responsesApi(const std::string& provider) {
  auto r = parse(provider);
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() && (*r)->providers.at("up").responses_api;
}

TEST(ResponsesApiConfig, OpenAIItselfSpeaksItAndOtherServersSaySo) {
  EXPECT_TRUE(responsesApi("{type: openai}"));
  EXPECT_TRUE(responsesApi("{type: openai, base_url: \"https://api.openai.com/v1\"}"));
  EXPECT_FALSE(responsesApi("{type: openai, base_url: \"http://127.0.0.1:9/v1\"}"));
  EXPECT_FALSE(responsesApi("{type: openai_compatible, base_url: \"http://vllm:8000/v1\"}"));
  EXPECT_TRUE(responsesApi(
      "{type: openai_compatible, base_url: \"http://vllm:8000/v1\", responses_api: true}"));
  EXPECT_FALSE(responsesApi("{type: openai, responses_api: false}"));
}

TEST(ResponsesApiConfig, RefusedWhereItCannotApply) {
  auto local = parse("{type: openai, base_url: \"http://gpu:8000/v1\", tier: local, "
                     "responses_api: true}");
  ASSERT_FALSE(local.ok());
  EXPECT_NE(local.status().message().find("responses_api"), std::string::npos)
      << local.status().message();
  auto anthropic = parse("{type: anthropic, responses_api: true}");
  ASSERT_FALSE(anthropic.ok());
  EXPECT_NE(anthropic.status().message().find("responses_api"), std::string::npos)
      << anthropic.status().message();
  EXPECT_FALSE(parse("{type: openai, responses_api: maybe}").ok());
}

}  // namespace
}  // namespace gateway
