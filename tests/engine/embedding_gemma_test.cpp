// EmbeddingGemmaModel against the committed parity fixture (tests/fixtures/embeddinggemma-ref,
// written by the independent NumPy reference tests/reference/embeddinggemma_ref.py), plus the
// loader's refusals and the invariants a server relies on: batching and order do not change an
// input's embedding, Matryoshka truncation renormalises.
#include "engine/models/embedding_gemma.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/models/gemma3.h"

namespace engine {
namespace {

namespace fs = std::filesystem;
const std::string kFixture = std::string(SY_SOURCE_DIR) + "/tests/fixtures/embeddinggemma-ref";

struct Fixture {
  std::vector<std::vector<int32_t>> inputs;
  std::vector<std::vector<float>> states;  // per input [L+1, n, H]
  std::vector<std::vector<float>> pooled, embeddings, truncated;
  int truncate_dim = 0;
};

Fixture readFixture() {
  Fixture f;
  std::ifstream in(kFixture + "/reference.json");
  EXPECT_TRUE(in.good()) << "missing " << kFixture << "/reference.json";
  const auto ref = nlohmann::json::parse(in);
  f.inputs = ref.at("inputs").get<std::vector<std::vector<int32_t>>>();
  f.pooled = ref.at("pooled").get<std::vector<std::vector<float>>>();
  f.embeddings = ref.at("embeddings").get<std::vector<std::vector<float>>>();
  f.truncated = ref.at("embeddings_truncated").get<std::vector<std::vector<float>>>();
  f.truncate_dim = ref.at("truncate_dim").get<int>();
  for (const auto& file : ref.at("hidden_states").at("files")) {
    const auto shape = file.at("shape").get<std::vector<size_t>>();
    std::vector<float> s(shape.at(0) * shape.at(1) * shape.at(2));
    std::ifstream bin(kFixture + "/" + file.at("file").get<std::string>(), std::ios::binary);
    bin.read(reinterpret_cast<char*>(s.data()), std::streamsize(s.size() * sizeof(float)));
    EXPECT_TRUE(bin.good());
    f.states.push_back(std::move(s));
  }
  return f;
}

std::unique_ptr<EmbeddingGemmaModel> loadModel(const std::string& dir = kFixture) {
  auto m = EmbeddingGemmaModel::load(dir, 2, /*needs_tokenizer=*/false);
  EXPECT_TRUE(m.ok()) << m.status().toString();
  return m.ok() ? std::move(m).value() : nullptr;
}

float maxAbsDiff(const float* a, const float* b, size_t n) {
  float d = 0;
  for (size_t i = 0; i < n; ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

TEST(EmbeddingGemma, LoadsFixtureLayout) {
  auto m = loadModel();
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->config().bidirectional);
  EXPECT_EQ(m->config().sliding_window, 8);  // as configured; the encoder bounds |Δpos| < 5
  EXPECT_EQ(m->pooling(), PoolingMode::kMean);
  EXPECT_EQ(m->dimensions(), 64);
  EXPECT_TRUE(m->normalized());
  EXPECT_EQ(m->maxTokens(), 128);  // max_position_embeddings bounds max_seq_length 2048
}

// Tolerances, as Gemma3Model.MatchesReferenceLogits argues them: the engine and the reference
// round to bf16 at the same points but sum in different orders, so a value next to a rounding
// boundary flips by one bf16 ulp (2^-8 relative) and the flip spreads through later layers.
// Hidden states are O(1) per element (bf16 ulp ~0.008), so max |diff| <= 0.1 over the states
// and a cosine >= 0.999 per input and layer; the unit embeddings (elements ~0.12) within 0.02
// and a cosine >= 0.999. Real bugs are far larger (the reference with its mask changed, worst
// input of three): a bound of W//2 instead of W//2 + 1 -> embedding cosine 0.91, max |diff|
// 0.16; the configured W as the bound -> 0.95, 0.13; no window -> 0.92, 0.15; Gemma 3's causal
// mask -> 0.45, 0.35.
TEST(EmbeddingGemma, MatchesReferenceHiddenStatesAndEmbeddings) {
  const Fixture f = readFixture();
  auto m = loadModel();
  ASSERT_TRUE(m);
  const size_t B = f.inputs.size(), D = size_t(m->dimensions()), H = size_t(m->config().hidden);
  ASSERT_EQ(f.states.size(), B);
  std::vector<std::vector<float>> states(B);
  EmbedTrace trace;
  for (size_t i = 0; i < B; ++i) {
    states[i].resize(f.states[i].size());
    trace.hidden_states.push_back(states[i].data());
  }
  std::vector<float> pooled(B * H), out(B * D);
  trace.pooled = pooled.data();
  ASSERT_TRUE(m->embed(f.inputs, int(D), out.data(), &trace).ok());

  const size_t L1 = size_t(m->config().n_layer) + 1;
  float worst_state = 0;
  double worst_state_cos = 1;
  for (size_t i = 0; i < B; ++i) {
    const size_t per_layer = f.inputs[i].size() * H;
    ASSERT_EQ(f.states[i].size(), L1 * per_layer);
    for (size_t l = 0; l < L1; ++l) {
      const float* a = states[i].data() + l * per_layer;
      const float* b = f.states[i].data() + l * per_layer;
      worst_state = std::max(worst_state, maxAbsDiff(a, b, per_layer));
      worst_state_cos = std::min(worst_state_cos, cosine(a, b, per_layer));
    }
  }
  float worst_emb = 0, worst_pool = 0;
  double worst_cos = 1;
  for (size_t i = 0; i < B; ++i) {
    ASSERT_EQ(f.embeddings[i].size(), D);
    worst_emb = std::max(worst_emb, maxAbsDiff(out.data() + i * D, f.embeddings[i].data(), D));
    worst_cos = std::min(worst_cos, cosine(out.data() + i * D, f.embeddings[i].data(), D));
    worst_pool = std::max(worst_pool, maxAbsDiff(pooled.data() + i * H, f.pooled[i].data(), H));
  }
  std::printf("fixture: states max |diff| %.4f (min cosine %.6f), pooled %.4f, embeddings %.5f "
              "(min cosine %.7f)\n",
              worst_state, worst_state_cos, worst_pool, worst_emb, worst_cos);
  EXPECT_LE(worst_state, 0.1f);
  EXPECT_GE(worst_state_cos, 0.999);
  EXPECT_LE(worst_pool, 0.05f);
  EXPECT_LE(worst_emb, 0.02f);
  EXPECT_GE(worst_cos, 0.999);
}

TEST(EmbeddingGemma, MatryoshkaTruncationMatchesReference) {
  const Fixture f = readFixture();
  auto m = loadModel();
  ASSERT_TRUE(m);
  const size_t d = size_t(f.truncate_dim), B = f.inputs.size();
  std::vector<float> out(B * d);
  ASSERT_TRUE(m->embed(f.inputs, int(d), out.data()).ok());
  for (size_t i = 0; i < B; ++i) {
    double norm = 0;
    for (size_t j = 0; j < d; ++j) norm += double(out[i * d + j]) * out[i * d + j];
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5) << "input " << i;
    EXPECT_LE(maxAbsDiff(out.data() + i * d, f.truncated[i].data(), d), 0.02f);
    EXPECT_GE(cosine(out.data() + i * d, f.truncated[i].data(), d), 0.999);
  }
}

// One input alone, or in a batch in another order, gets the same vector bit for bit: inputs
// never see each other's tokens and every sum runs in the same order.
TEST(EmbeddingGemma, BatchingDoesNotChangeAnInput) {
  const Fixture f = readFixture();
  auto m = loadModel();
  ASSERT_TRUE(m);
  const size_t D = size_t(m->dimensions()), B = f.inputs.size();
  std::vector<float> batch(B * D);
  ASSERT_TRUE(m->embed(f.inputs, int(D), batch.data()).ok());
  for (size_t i = 0; i < B; ++i) {
    std::vector<float> one(D);
    ASSERT_TRUE(m->embed(std::span(&f.inputs[i], 1), int(D), one.data()).ok());
    EXPECT_EQ(maxAbsDiff(one.data(), batch.data() + i * D, D), 0.0f) << "input " << i;
  }
  std::vector<std::vector<int32_t>> reversed(f.inputs.rbegin(), f.inputs.rend());
  std::vector<float> rev(B * D);
  ASSERT_TRUE(m->embed(reversed, int(D), rev.data()).ok());
  EXPECT_EQ(maxAbsDiff(rev.data(), batch.data() + (B - 1) * D, D), 0.0f);
}

TEST(EmbeddingGemma, RefusesBadInputs) {
  auto m = loadModel();
  ASSERT_TRUE(m);
  std::vector<float> out(64 * 2);
  std::vector<std::vector<int32_t>> ok = {{2, 5, 1}};
  EXPECT_EQ(m->embed(ok, 65, out.data()).code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(m->embed(ok, 0, out.data()).code(), api::ErrorCode::kInvalidRequest);
  std::vector<std::vector<int32_t>> bad_id = {{2, 5, 1}, {2, 512, 1}};
  const auto s = m->embed(bad_id, 64, out.data());
  EXPECT_EQ(s.code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("input 1"), std::string::npos) << s.message();
  std::vector<std::vector<int32_t>> empty = {{}};
  EXPECT_EQ(m->embed(empty, 64, out.data()).code(), api::ErrorCode::kInvalidRequest);
  std::vector<std::vector<int32_t>> too_long = {std::vector<int32_t>(129, 5)};
  EXPECT_EQ(m->embed(too_long, 64, out.data()).code(), api::ErrorCode::kInvalidRequest);
}

TEST(EmbeddingGemma, ChatModelRefusesAnEncoder) {
  auto m = Gemma3Model::load(kFixture, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), api::ErrorCode::kConfig);
}

// A copy of the fixture with one file broken: load() names the file and what is wrong.
class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("embgemma-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::copy(kFixture, dir_, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& rel, const std::string& text) {
    std::ofstream(dir_ / rel, std::ios::trunc) << text;
  }
  std::string loadError() {
    auto m = EmbeddingGemmaModel::load(dir_.string(), 1, false);
    EXPECT_FALSE(m.ok());
    EXPECT_EQ(m.status().code() == api::ErrorCode::kConfig || m.status().code() == api::ErrorCode::kIo,
              true);
    return m.ok() ? "" : m.status().message();
  }
  fs::path dir_;
};

TEST_F(BrokenCheckpoint, MissingDenseWeights) {
  fs::remove(dir_ / "3_Dense" / "model.safetensors");
  EXPECT_NE(loadError().find("3_Dense/model.safetensors"), std::string::npos);
}

TEST_F(BrokenCheckpoint, DenseWidthsDoNotChain) {
  write("3_Dense/config.json",
        R"({"in_features": 128, "out_features": 64, "bias": false,
            "activation_function": "torch.nn.modules.linear.Identity"})");
  EXPECT_NE(loadError().find("in_features 128"), std::string::npos);
}

TEST_F(BrokenCheckpoint, DenseActivationNotIdentity) {
  write("2_Dense/config.json",
        R"({"in_features": 64, "out_features": 256, "bias": false,
            "activation_function": "torch.nn.modules.activation.Tanh"})");
  EXPECT_NE(loadError().find("activation_function"), std::string::npos);
}

TEST_F(BrokenCheckpoint, DenseBias) {
  write("2_Dense/config.json",
        R"({"in_features": 64, "out_features": 256, "bias": true,
            "activation_function": "torch.nn.modules.linear.Identity"})");
  EXPECT_NE(loadError().find("bias"), std::string::npos);
}

TEST_F(BrokenCheckpoint, PoolingModeNotImplemented) {
  write("1_Pooling/config.json",
        R"({"word_embedding_dimension": 64, "pooling_mode_max_tokens": true})");
  EXPECT_NE(loadError().find("pooling_mode_max_tokens"), std::string::npos);
}

TEST_F(BrokenCheckpoint, MissingModules) {
  fs::remove(dir_ / "modules.json");
  EXPECT_NE(loadError().find("modules.json"), std::string::npos);
}

TEST_F(BrokenCheckpoint, CausalConfig) {
  std::ifstream in(dir_ / "config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["use_bidirectional_attention"] = false;
  write("config.json", cfg.dump());
  EXPECT_NE(loadError().find("not an EmbeddingGemma encoder"), std::string::npos);
}

}  // namespace
}  // namespace engine
