// LocalEmbeddingProvider (routers/embeddings.h) on the committed EmbeddingGemma parity fixture:
// a request's inputs in one model call off the caller's thread, the vectors the model itself
// gives, its token counts and engine time, `dimensions` above the model's width refused before
// any work, and the chat side of an embedding-only provider refusing chat.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "routers/embeddings.h"

namespace sytest {
namespace {

using namespace std::chrono_literals;

const std::string kFixture = std::string(SY_SOURCE_DIR) + "/tests/fixtures/embeddinggemma-ref";

std::unique_ptr<engine::EmbeddingGemmaModel> loadFixture() {
  auto m = engine::EmbeddingGemmaModel::load(kFixture, 1, /*needs_tokenizer=*/false);
  EXPECT_TRUE(m.ok()) << m.status().toString();
  return m.ok() ? std::move(m).value() : nullptr;
}

api::EmbeddingRequest tokenRequest(std::vector<std::vector<int64_t>> inputs,
                                   std::optional<int64_t> dims = std::nullopt) {
  api::EmbeddingRequest r;
  r.model = "embeddinggemma";
  for (auto& t : inputs) r.inputs.push_back(api::EmbeddingInput{"", std::move(t), true});
  r.dimensions = dims;
  return r;
}

struct Answer {
  api::StatusOr<api::EmbeddingResponse> result = api::Status(api::ErrorCode::kInternal, "none");
  std::thread::id thread;
};

Answer run(routers::LocalEmbeddingProvider& p, const api::EmbeddingRequest& request) {
  auto promise = std::make_shared<std::promise<Answer>>();
  auto future = promise->get_future();
  p.embed(
      request,
      [promise](api::StatusOr<api::EmbeddingResponse> r) {
        promise->set_value(Answer{std::move(r), std::this_thread::get_id()});
      },
      routers::Clock::now() + 10s);
  EXPECT_EQ(future.wait_for(10s), std::future_status::ready);
  return future.get();
}

TEST(LocalEmbeddingProvider, EmbedsEveryInputInOneCallOffTheCallersThread) {
  auto model = loadFixture();
  ASSERT_TRUE(model);
  const std::vector<std::vector<int32_t>> ids = {{2, 17, 300, 1}, {2, 5, 1}};
  std::vector<float> want(2 * 64);
  ASSERT_TRUE(model->embed(ids, 64, want.data()).ok());
  routers::LocalEmbeddingProvider p("emb", std::move(model), 4);
  Answer a = run(p, tokenRequest({{2, 17, 300, 1}, {2, 5, 1}}));
  ASSERT_TRUE(a.result.ok()) << a.result.status().toString();
  EXPECT_NE(a.thread, std::this_thread::get_id());
  ASSERT_EQ(a.result->embeddings.size(), 2u);
  EXPECT_EQ(a.result->embeddings[0], std::vector<float>(want.begin(), want.begin() + 64));
  EXPECT_EQ(a.result->embeddings[1], std::vector<float>(want.begin() + 64, want.end()));
  EXPECT_EQ(a.result->prompt_tokens, 7);
  EXPECT_TRUE(a.result->usage_reported);
  EXPECT_GT(a.result->compute_s, 0);
}

// A request of more tokens than one pass takes runs in several passes and gives each input the
// vector it has alone; past the request's token cap it is a 400 before any work.
TEST(LocalEmbeddingProvider, LargeRequestsRunInBoundedPassesAndAreCapped) {
  auto model = loadFixture();
  ASSERT_TRUE(model);
  const int64_t len = std::min<int64_t>(model->maxTokens(), 300);
  std::vector<std::vector<int64_t>> inputs;
  int64_t total = 0;
  for (int64_t i = 0; total <= routers::LocalEmbeddingProvider::kPassTokens; ++i) {
    std::vector<int64_t> t(static_cast<size_t>(len));
    for (int64_t k = 0; k < len; ++k) t[static_cast<size_t>(k)] = 2 + (i * 7 + k) % 400;
    total += len;
    inputs.push_back(std::move(t));
  }
  std::vector<std::vector<float>> alone;
  for (const auto& in : {inputs.front(), inputs.back()}) {
    std::vector<std::vector<int32_t>> one = {std::vector<int32_t>(in.begin(), in.end())};
    std::vector<float> v(64);
    ASSERT_TRUE(model->embed(one, 64, v.data()).ok());
    alone.push_back(v);
  }
  const int64_t max_tokens = model->maxTokens();
  routers::LocalEmbeddingProvider p("emb", std::move(model), 4);
  Answer a = run(p, tokenRequest(inputs));
  ASSERT_TRUE(a.result.ok()) << a.result.status().toString();
  ASSERT_EQ(a.result->embeddings.size(), inputs.size());
  EXPECT_EQ(a.result->embeddings.front(), alone[0]);
  EXPECT_EQ(a.result->embeddings.back(), alone[1]);
  EXPECT_EQ(a.result->prompt_tokens, total);

  std::vector<std::vector<int64_t>> huge(
      static_cast<size_t>(routers::LocalEmbeddingProvider::kMaxRequestTokens / max_tokens + 1),
      std::vector<int64_t>(static_cast<size_t>(max_tokens), 5));
  Answer capped = run(p, tokenRequest(huge));
  ASSERT_FALSE(capped.result.ok());
  EXPECT_EQ(capped.result.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(capped.result.status().message().find("at most 300000 tokens"), std::string::npos)
      << capped.result.status().message();
  Answer empty = run(p, tokenRequest({{}}));
  ASSERT_FALSE(empty.result.ok());
  EXPECT_EQ(empty.result.status().param(), "input[0]");
}

TEST(LocalEmbeddingProvider, DimensionsAreMatryoshkaAndBounded) {
  auto model = loadFixture();
  ASSERT_TRUE(model);
  routers::LocalEmbeddingProvider p("emb", std::move(model), 4);
  Answer a = run(p, tokenRequest({{2, 9, 1}}, 8));
  ASSERT_TRUE(a.result.ok());
  ASSERT_EQ(a.result->embeddings[0].size(), 8u);
  Answer big = run(p, tokenRequest({{2, 9, 1}}, 65));
  ASSERT_FALSE(big.result.ok());
  EXPECT_EQ(big.result.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(big.result.status().param(), "dimensions");
  EXPECT_NE(big.result.status().message().find("64"), std::string::npos);
}

TEST(LocalEmbeddingProvider, RefusesIdsOutsideTheVocabularyAndTextWithoutATokenizer) {
  auto model = loadFixture();
  ASSERT_TRUE(model);
  routers::LocalEmbeddingProvider p("emb", std::move(model), 4);
  Answer a = run(p, tokenRequest({{2, 9, 1}, {2, 512, 1}}));
  ASSERT_FALSE(a.result.ok());
  EXPECT_EQ(a.result.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(a.result.status().param(), "input[1]");
  api::EmbeddingRequest text;
  text.model = "embeddinggemma";
  text.inputs.push_back(api::EmbeddingInput{"hello", {}, false});
  Answer t = run(p, text);
  EXPECT_FALSE(t.result.ok());
}

}  // namespace
}  // namespace sytest
