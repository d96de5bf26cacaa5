// CloudProvider against the fake OpenAI, Anthropic and Gemini servers on loopback: the normal
// answer in each wire format, and every scriptable fault with the outcome it must have.
#include "routers/cloud_provider.h"

#include <gtest/gtest.h>

#include <chrono>

#include "tests/routers/provider_test_support.h"

namespace {

using namespace std::chrono_literals;
using sytest::Api;
using sytest::Fault;
using sytest::Millis;
using sytest::RecordingSink;

class CloudProviderTest : public ::testing::TestWithParam<Api> {
 protected:
  void SetUp() override {
    fake_ = sytest::makeFake(GetParam());
    routers::CloudProviderConfig c;
    c.name = "cloud";
    c.headers = {{"X-Extra", "yes"}};
    c.timeouts.connect = 1000ms;
    c.timeouts.first_byte = 700ms;
    c.timeouts.idle = 400ms;
    c.timeouts.total = 2500ms;
    provider_ = std::make_unique<routers::CloudProvider>(
        c, sytest::makeWire(GetParam(), fake_->baseUrl()), http_);
  }

  std::shared_ptr<RecordingSink> run(const api::ChatRequest& request) {
    auto sink = std::make_shared<RecordingSink>();
    provider_->chat(request, sink, routers::Clock::now() + 10s);
    EXPECT_TRUE(sink->wait()) << "the call never finished";
    return sink;
  }

  api::Status failure(const std::shared_ptr<RecordingSink>& sink) {
    EXPECT_FALSE(sink->result().ok()) << "expected a failure";
    return sink->result().ok() ? api::Status() : sink->result().status();
  }

  routers::HttpClient http_;
  std::unique_ptr<sytest::FakeCloud> fake_;
  std::unique_ptr<routers::CloudProvider> provider_;
};

TEST_P(CloudProviderTest, AnswersInTheApisFormat) {
  auto sink = run(sytest::userRequest("hello there", false));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  const api::ChatResponse& r = sink->result().value();
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].message.content.text, "echo: hello there");
  EXPECT_EQ(r.choices[0].finish_reason, "stop");
  ASSERT_TRUE(r.usage);
  EXPECT_EQ(r.usage->prompt_tokens, 5);      // 3 per message + 2 words
  EXPECT_EQ(r.usage->completion_tokens, 3);  // "echo:", " hello", " there"
  EXPECT_EQ(r.usage->total_tokens, 8);
  auto req = fake_->lastChatRequest();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->header("x-extra"), "yes");
  EXPECT_EQ(req->header("content-type"), "application/json");
}

TEST_P(CloudProviderTest, StreamsChunksAsTheyArriveWithUsageAtTheEnd) {
  auto sink = run(sytest::userRequest("one two three", true));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->text(), "echo: one two three");
  auto chunks = sink->chunks();
  ASSERT_FALSE(chunks.empty());
  ASSERT_FALSE(chunks.front().choices.empty());
  EXPECT_EQ(chunks.front().choices[0].delta.role, api::Role::kAssistant);
  bool stopped = false;
  for (const auto& c : chunks) {
    EXPECT_FALSE(c.usage) << "usage arrives in onFinish only";
    for (const auto& ch : c.choices) stopped = stopped || ch.finish_reason == "stop";
  }
  EXPECT_TRUE(stopped);
  const api::ChatResponse& summary = sink->result().value();
  EXPECT_TRUE(summary.choices.empty());
  ASSERT_TRUE(summary.usage);
  EXPECT_EQ(summary.usage->prompt_tokens, 6);
  EXPECT_EQ(summary.usage->completion_tokens, 4);
}

TEST_P(CloudProviderTest, LatencyWithinTheFirstByteTimeoutIsFine) {
  fake_->pushFault(Fault::delay(200ms));
  auto sink = run(sytest::userRequest("slow", false));
  EXPECT_TRUE(sink->result().ok()) << sink->result().status().message();
}

TEST_P(CloudProviderTest, NoFirstByteInTimeIsATimeout) {
  fake_->pushFault(Fault::hang());
  auto start = std::chrono::steady_clock::now();
  auto sink = run(sytest::userRequest("hang", false));
  api::Status s = failure(sink);
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamTimeout) << s.message();
  EXPECT_NE(s.message().find("upstream 'cloud'"), std::string::npos) << s.message();
  EXPECT_LT(sink->finishTime() - start, 2000ms);
}

TEST_P(CloudProviderTest, RateLimitCarriesRetryAfter) {
  fake_->pushFault(Fault::rateLimited(7));
  api::Status s = failure(run(sytest::userRequest("hi", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kRateLimited) << s.message();
  ASSERT_TRUE(s.retryAfterSeconds());
  EXPECT_DOUBLE_EQ(*s.retryAfterSeconds(), 7);
  EXPECT_EQ(s.upstreamHttpStatus(), 429);
  EXPECT_NE(s.message().find("Rate limit reached"), std::string::npos) << s.message();
}

TEST_P(CloudProviderTest, ServerErrorsAreUpstreamErrorsWithTheirMessage) {
  for (int code : {500, 503}) {
    fake_->pushFault(Fault::error(code, "backend exploded " + std::to_string(code)));
    api::Status s = failure(run(sytest::userRequest("hi", true)));
    EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
    EXPECT_EQ(s.upstreamHttpStatus(), code);
    EXPECT_NE(s.message().find("backend exploded " + std::to_string(code)), std::string::npos)
        << s.message();
  }
}

TEST_P(CloudProviderTest, CredentialRejectionsNeverQuoteTheUpstream) {
  // Providers quote the (masked) key in these messages; it is the gateway's secret.
  const std::string leak = "Incorrect API key provided: sk-proj-****************abcd";
  for (int code : {401, 403}) {
    fake_->pushFault(Fault::error(code, leak));
    api::Status s = failure(run(sytest::userRequest("hi", code == 403)));
    EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
    EXPECT_EQ(s.httpStatusCode(), 502);
    EXPECT_EQ(s.upstreamHttpStatus(), code);
    EXPECT_EQ(s.message().find("sk-proj"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find("Incorrect API key"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("rejected the gateway's credentials"), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("upstream 'cloud'"), std::string::npos) << s.message();
  }
}

TEST_P(CloudProviderTest, ClientErrorsPassThroughWithTheirStatus) {
  fake_->pushFault(Fault::error(400, "this field is wrong"));
  api::Status s = failure(run(sytest::userRequest("hi", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kInvalidRequest) << s.message();
  EXPECT_EQ(s.httpStatusCode(), 400);
  EXPECT_NE(s.message().find("this field is wrong"), std::string::npos) << s.message();
}

TEST_P(CloudProviderTest, MalformedJsonIsAnUpstreamError) {
  fake_->pushFault(Fault::malformedJson());
  api::Status s = failure(run(sytest::userRequest("hi", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
  EXPECT_FALSE(s.upstreamHttpStatus());
}

TEST_P(CloudProviderTest, GarbageIsAnUpstreamError) {
  fake_->setKeepAlive(false);
  fake_->pushFault(Fault::garbage());
  api::Status s = failure(run(sytest::userRequest("hi", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
}

TEST_P(CloudProviderTest, EmptyCloseIsAnUpstreamError) {
  fake_->setKeepAlive(false);
  fake_->pushFault(Fault::emptyClose());
  api::Status s = failure(run(sytest::userRequest("hi", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
}

TEST_P(CloudProviderTest, CutStreamDeliversWhatArrivedThenFails) {
  fake_->pushFault(Fault::cutStream(2));
  auto sink = run(sytest::userRequest("a b c d e", true));
  api::Status s = failure(sink);
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
  EXPECT_EQ(sink->text(), "echo: a") << "the two words before the cut";
  EXPECT_EQ(sink->finishes(), 1);
  EXPECT_EQ(sink->chunksAfterFinish(), 0);
}

TEST_P(CloudProviderTest, CutNonStreamedBodyFails) {
  fake_->pushFault(Fault::cutStream(0));
  api::Status s = failure(run(sytest::userRequest("a b c", false)));
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamError) << s.message();
}

TEST_P(CloudProviderTest, ConnectionResetFails) {
  fake_->setKeepAlive(false);
  fake_->pushFault(Fault::reset(0));
  EXPECT_EQ(failure(run(sytest::userRequest("hi", false))).code(), api::ErrorCode::kUpstreamError);
  fake_->pushFault(Fault::reset(1));
  auto sink = run(sytest::userRequest("x y z", true));
  EXPECT_EQ(failure(sink).code(), api::ErrorCode::kUpstreamError);
  EXPECT_EQ(sink->text(), "echo:");
}

TEST_P(CloudProviderTest, SlowDripWithinTheIdleTimeoutCompletes) {
  fake_->pushFault(Fault::slowDrip(150ms));
  auto sink = run(sytest::userRequest("drip drop", true));
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->text(), "echo: drip drop");
}

TEST_P(CloudProviderTest, SlowDripBeyondTheIdleTimeoutTimesOut) {
  fake_->pushFault(Fault::slowDrip(1000ms));
  auto sink = run(sytest::userRequest("drip drop", true));
  api::Status s = failure(sink);
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamTimeout) << s.message();
}

TEST_P(CloudProviderTest, EndlessStreamEndsAtTheTotalTimeout) {
  fake_->pushFault(Fault::endless(50ms));
  auto start = std::chrono::steady_clock::now();
  auto sink = run(sytest::userRequest("forever", true));
  api::Status s = failure(sink);
  EXPECT_EQ(s.code(), api::ErrorCode::kUpstreamTimeout) << s.message();
  EXPECT_GT(sink->chunks().size(), 5u);
  auto took = sink->finishTime() - start;
  EXPECT_GE(took, 2000ms);
  EXPECT_LT(took, 5000ms);
}

TEST_P(CloudProviderTest, PausedStreamDeliversNothingUntilResumed) {
  fake_->pushFault(Fault::slowDrip(20ms));
  auto sink = std::make_shared<RecordingSink>();
  auto call = provider_->chat(sytest::userRequest("held back for a while", true), sink,
                              routers::Clock::now() + 10s);
  call->setPaused(true);
  // Longer than the first-byte (700 ms) and idle (400 ms) timeouts: a client-caused pause
  // trips neither.
  EXPECT_FALSE(sink->wait(1000ms)) << "finished while paused";
  EXPECT_TRUE(sink->chunks().empty()) << "a chunk arrived while paused";
  call->setPaused(false);
  ASSERT_TRUE(sink->wait());
  ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
  EXPECT_EQ(sink->text(), "echo: held back for a while");
}

TEST_P(CloudProviderTest, ErrorEventInTheStreamEndsTheCall) {
  fake_->pushFault(Fault::streamError(1, "the model is overloaded, try later"));
  auto sink = run(sytest::userRequest("p q r", true));
  api::Status s = failure(sink);
  EXPECT_NE(s.message().find("the model is overloaded, try later"), std::string::npos)
      << s.message();
  EXPECT_EQ(sink->text(), "echo:");
}

TEST_P(CloudProviderTest, DeadlineCutsTheCallShort) {
  fake_->pushFault(Fault::delay(600ms));
  auto sink = std::make_shared<RecordingSink>();
  auto start = std::chrono::steady_clock::now();
  provider_->chat(sytest::userRequest("hi", false), sink, routers::Clock::now() + 200ms);
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(failure(sink).code(), api::ErrorCode::kUpstreamTimeout);
  EXPECT_LT(sink->finishTime() - start, 550ms);
}

TEST_P(CloudProviderTest, CancelStopsTheCall) {
  fake_->pushFault(Fault::hang());
  auto sink = std::make_shared<RecordingSink>();
  auto call = provider_->chat(sytest::userRequest("hi", true), sink, routers::Clock::now() + 10s);
  ASSERT_TRUE(fake_->server().waitForRequests(1, 5000ms));
  call->cancel();
  ASSERT_TRUE(sink->wait(3000ms));
  EXPECT_EQ(failure(sink).code(), api::ErrorCode::kCancelled);
  // That the upstream connection is then closed is checked end to end, through the gateway
  // (GatewayE2E: a client that leaves cancels its upstream call); here, under heavy load, the
  // fake's bookkeeping of who closed first races with its hang noticing it.
}

TEST_P(CloudProviderTest, UnreachableServerIsAnUpstreamError) {
  routers::CloudProviderConfig c;
  c.name = "nowhere";
  routers::CloudProvider dead(c, sytest::makeWire(GetParam(), "http://127.0.0.1:1/v1"), http_);
  auto sink = std::make_shared<RecordingSink>();
  dead.chat(sytest::userRequest("hi", false), sink, routers::Clock::now() + 5s);
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(failure(sink).code(), api::ErrorCode::kUpstreamError);
  EXPECT_NE(failure(sink).message().find("upstream 'nowhere'"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Apis, CloudProviderTest,
                         ::testing::Values(Api::kOpenAI, Api::kAnthropic, Api::kGemini),
                         [](const auto& info) { return sytest::apiName(info.param); });

// A request the target API cannot express never leaves the gateway.
TEST(CloudProvider, UntranslatableRequestFailsAtOnceWithoutACall) {
  routers::HttpClient http;
  sytest::FakeAnthropic fake;
  routers::CloudProviderConfig c;
  c.name = "claude";
  routers::CloudProvider p(c, sytest::makeWire(Api::kAnthropic, fake.baseUrl()), http);
  api::ChatRequest r = sytest::userRequest("hi", false);
  r.n = 3;
  auto sink = std::make_shared<RecordingSink>();
  p.chat(r, sink, routers::Clock::now() + 5s);
  ASSERT_TRUE(sink->wait(1000ms));
  ASSERT_FALSE(sink->result().ok());
  EXPECT_EQ(sink->result().status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(sink->result().status().param(), "n");
  EXPECT_EQ(fake.chatRequestCount(), 0);
}

// The wire formats' auth headers arrive as each API documents them.
TEST(CloudProvider, SendsEachApisAuthHeaders) {
  routers::HttpClient http;
  routers::CloudProviderConfig c;
  c.name = "p";
  {
    sytest::FakeAnthropic fake;
    routers::CloudProvider p(c, sytest::makeWire(Api::kAnthropic, fake.baseUrl()), http);
    auto sink = std::make_shared<RecordingSink>();
    p.chat(sytest::userRequest("hi", false), sink, routers::Clock::now() + 5s);
    ASSERT_TRUE(sink->wait());
    auto req = fake.lastChatRequest();
    ASSERT_TRUE(req);
    EXPECT_EQ(req->header("x-api-key"), "sk-ant-test");
    EXPECT_EQ(req->header("anthropic-version"), "2023-06-01");
    EXPECT_EQ(req->header("authorization"), "");
  }
  {
    sytest::FakeGemini fake;
    routers::CloudProvider p(c, sytest::makeWire(Api::kGemini, fake.baseUrl()), http);
    auto sink = std::make_shared<RecordingSink>();
    p.chat(sytest::userRequest("hi", true, "gemini-2.5-flash"), sink, routers::Clock::now() + 5s);
    ASSERT_TRUE(sink->wait());
    auto req = fake.lastChatRequest();
    ASSERT_TRUE(req);
    EXPECT_EQ(req->header("x-goog-api-key"), "gemini-test");
    EXPECT_EQ(req->target, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
  }
  {
    sytest::FakeGemini fake;
    routers::GeminiWireConfig g;
    g.base_url = fake.vertexBaseUrl("proj-1", "us-central1");
    g.api_key = "ya29.token";
    g.bearer = true;
    routers::CloudProvider p(c, std::make_unique<routers::GeminiWire>(g), http);
    auto sink = std::make_shared<RecordingSink>();
    p.chat(sytest::userRequest("vertex please", false, "gemini-2.5-pro"), sink,
           routers::Clock::now() + 5s);
    ASSERT_TRUE(sink->wait());
    ASSERT_TRUE(sink->result().ok()) << sink->result().status().message();
    EXPECT_EQ(sink->result()->choices[0].message.content.text, "echo: vertex please");
    auto req = fake.lastChatRequest();
    ASSERT_TRUE(req);
    EXPECT_EQ(req->header("authorization"), "Bearer ya29.token");
    EXPECT_EQ(req->header("x-goog-api-key"), "");
    EXPECT_EQ(req->path(),
              "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
              "gemini-2.5-pro:generateContent");
  }
}

}  // namespace
