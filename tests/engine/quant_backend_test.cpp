// The CPU backend with quantize-on-load (CpuBackendOptions::quantize): prepared matrices become
// llama.cpp blocks, matmul() runs the int8 dot kernels, embed() dequantizes a row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "engine/cpu_backend.h"
#include "engine/engine.h"
#include "engine/models/model.h"
#include "engine/quant/quant.h"

namespace engine {
namespace {

using quant::QType;

struct Bf16Matrix {
  std::vector<uint16_t> data;
  Weight w;
  Bf16Matrix(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.05f);
    data.resize(static_cast<size_t>(rows * cols));
    for (auto& v : data) v = floatToBf16(dist(rng));
    w.data = data.data();
    w.dtype = DType::kBF16;
    w.shape = {rows, cols};
    w.bytes = data.size() * 2;
    w.name = "m";
    w.file = "test";
  }
  std::vector<float> row(int64_t r) const {
    const int64_t cols = w.shape[1];
    std::vector<float> out(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) out[size_t(j)] = bf16ToFloat(data[size_t(r * cols + j)]);
    return out;
  }
};

std::vector<float> bf16Activations(int n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(n * k));
  for (auto& v : x) v = roundBf16(dist(rng));
  return x;
}

// The expected y[t, r]: the weight row quantized by quant::quantizeRow, the activations by
// quant::quantizeActivations, and the portable dot.
float expectedDot(QType q, const Bf16Matrix& m, int64_t r, const float* x) {
  const int64_t k = m.w.shape[1];
  std::vector<float> wr = m.row(r);
  std::vector<unsigned char> wq(quant::rowBytes(q, k));
  quant::quantizeRow(q, wr.data(), wq.data(), k);
  const QType at = quant::activationType(q);
  std::vector<unsigned char> mem(quant::actRowBytes(at, k) + 64);
  void* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
  const quant::ActRow a = quant::quantizeActivations(at, x, k, p);
  return quant::dotRow(q, wq.data(), a, k);
}

TEST(QuantBackend, PreparedMatricesTakeTheBlockFormatOrItsFallback) {
  CpuBackendOptions o;
  o.threads = 2;
  o.quantize = QType::kQ4_K;
  auto be = makeCpuBackend(o);
  Bf16Matrix wide(8, 512, 1), narrow(8, 96, 2), odd(8, 40, 3);
  EXPECT_EQ(be->prepareMatrix(wide.w)->dtype, DType::kQ4_K);
  EXPECT_EQ(be->prepareMatrix(narrow.w)->dtype, DType::kQ5_0);  // 96 is not a multiple of 256
  EXPECT_EQ(be->prepareMatrix(odd.w)->dtype, DType::kBF16);     // nor of 32: kept as stored
  auto plain = makeCpuBackend(CpuBackendOptions{});
  EXPECT_EQ(plain->prepareMatrix(wide.w)->dtype, DType::kBF16);
}

TEST(QuantBackend, MatmulEqualsThePortableDotOnEveryIsaAndBatchSize) {
  for (QType q : {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K}) {
    // An odd row count, and every batch size from one token to two groups of
    // cpu::kQuantTokenGroup plus one (the multi-token kernels and their remainders).
    const int64_t rows = 37, k = 768;
    Bf16Matrix m(rows, k, 7);
    constexpr int kMaxTokens = 9;
    std::vector<float> x = bf16Activations(kMaxTokens, k, 8);
    std::vector<float> want(static_cast<size_t>(kMaxTokens * rows));
    for (int t = 0; t < kMaxTokens; ++t)
      for (int64_t r = 0; r < rows; ++r)
        want[size_t(t * rows + r)] = roundBf16(expectedDot(q, m, r, x.data() + t * k));
    for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512Bf16}) {
      if (!cpuSupports(isa)) continue;
      CpuBackendOptions o;
      o.threads = 2;
      o.isa = isa;
      o.quantize = q;
      auto be = makeCpuBackend(o);
      auto w = be->prepareMatrix(m.w);
      ASSERT_TRUE(w.ok());
      ASSERT_EQ(w->dtype, *quant::dtypeOf(q));
      for (int n = 1; n <= kMaxTokens; ++n) {
        std::vector<float> y(static_cast<size_t>(n * rows));
        be->matmul(x.data(), n, *w, y.data(), true);
        for (int t = 0; t < n; ++t)
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(y[size_t(t * rows + r)], want[size_t(t * rows + r)])
                << quant::qtypeName(q) << " n=" << n << " t=" << t << " r=" << r;
      }
    }
  }
}

TEST(QuantBackend, MixedTargetsShareOneCall) {
  // A Q6_K target (Q8_K activations) beside a plain BF16 one and a Q8_0 fallback (Q8_0 rows).
  CpuBackendOptions o;
  o.threads = 2;
  auto plain = makeCpuBackend(o);
  o.quantize = QType::kQ6_K;
  auto be = makeCpuBackend(o);
  Bf16Matrix a(16, 512, 11), b(24, 512, 12);
  auto wa = be->prepareMatrix(a.w);
  auto wb = plain->prepareMatrix(b.w);
  ASSERT_EQ(wa->dtype, DType::kQ6_K);
  std::vector<float> x = bf16Activations(2, 512, 13);
  std::vector<float> ya(2 * 16), yb(2 * 24), yb_ref(2 * 24);
  const MatmulTarget targets[] = {{&*wa, ya.data()}, {&*wb, yb.data()}};
  be->matmul(x.data(), 2, targets, false);
  plain->matmul(x.data(), 2, *wb, yb_ref.data(), false);
  EXPECT_EQ(yb, yb_ref);
  for (int t = 0; t < 2; ++t)
    for (int r = 0; r < 16; ++r)
      EXPECT_EQ(ya[size_t(t * 16 + r)], expectedDot(QType::kQ6_K, a, r, x.data() + t * 512));
}

TEST(QuantBackend, EmbedReadsTheDequantizedRow) {
  CpuBackendOptions o;
  o.threads = 2;
  o.quantize = QType::kQ8_0;
  auto be = makeCpuBackend(o);
  Bf16Matrix table(10, 64, 5);
  auto w = be->prepareMatrix(table.w);
  ASSERT_EQ(w->dtype, DType::kQ8_0);
  const int32_t ids[] = {3, 9};
  std::vector<float> out(2 * 64);
  be->embed(ids, 2, *w, 8.0f, out.data());
  for (int i = 0; i < 2; ++i) {
    std::vector<float> r = table.row(ids[i]);
    std::vector<unsigned char> q(quant::rowBytes(QType::kQ8_0, 64));
    quant::quantizeRow(QType::kQ8_0, r.data(), q.data(), 64);
    std::vector<float> d(64);
    quant::dequantizeRow(QType::kQ8_0, q.data(), d.data(), 64);
    for (int j = 0; j < 64; ++j) EXPECT_EQ(out[size_t(i * 64 + j)], roundBf16(d[size_t(j)] * 8.0f));
  }
}

}  // namespace
}  // namespace engine

namespace engine {
namespace {

TEST(QuantEngineOptions, AnUnknownFormatIsAConfigErrorNamingIt) {
  EngineOptions o;
  o.model_dir = "does-not-exist";
  o.quantize = "q5_1";
  auto e = Engine::create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(e.status().message().find("q5_1"), std::string::npos);
}

}  // namespace
}  // namespace engine

namespace engine {
namespace {

const std::string kGemma3Fixture = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma3-ref";

// Logits of every token of `tokens`, fed `chunk` at a time into a fresh cache.
std::vector<float> runPrompt(Model& m, const std::vector<int32_t>& tokens, int chunk) {
  const int64_t V = m.config().vocab;
  auto kv = m.newKvCache(static_cast<int>(tokens.size()), chunk);
  std::vector<float> logits(tokens.size() * size_t(V));
  for (size_t i = 0; i < tokens.size(); i += size_t(chunk)) {
    const int n = static_cast<int>(std::min(tokens.size() - i, size_t(chunk)));
    std::vector<SeqBatchItem> b = {{kv.get(), tokens.data() + i, n, true, logits.data() + i * V}};
    EXPECT_TRUE(m.forward(b).ok());
  }
  return logits;
}

TEST(QuantModel, Gemma3QuantizedOnLoadStaysCloseToBf16AndIgnoresChunking) {
  auto plain = Model::load(kGemma3Fixture, 2);
  auto q8 = Model::load(kGemma3Fixture, 2, QType::kQ8_0);
  ASSERT_TRUE(plain.ok() && q8.ok());
  std::vector<int32_t> tokens = {2};
  for (int i = 1; i < 40; ++i) tokens.push_back((i * 37 + 11) % 500 + 3);
  const int64_t V = (*plain)->config().vocab;
  const std::vector<float> ref = runPrompt(**plain, tokens, 40);
  const std::vector<float> whole = runPrompt(**q8, tokens, 40);
  EXPECT_EQ(runPrompt(**q8, tokens, 1), whole);  // token by token: bit-identical
  EXPECT_EQ(runPrompt(**q8, tokens, 7), whole);
  EXPECT_NE(whole, ref);  // the weights really were quantized
  double kl = 0;
  int agree = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const float* a = ref.data() + t * size_t(V);
    const float* b = whole.data() + t * size_t(V);
    double ma = a[0], mb = b[0];
    for (int64_t i = 1; i < V; ++i)
      ma = std::max(ma, double(a[i])), mb = std::max(mb, double(b[i]));
    double sa = 0, sb = 0;
    for (int64_t i = 0; i < V; ++i) sa += std::exp(a[i] - ma), sb += std::exp(b[i] - mb);
    for (int64_t i = 0; i < V; ++i) {
      const double la = a[i] - ma - std::log(sa), lb = b[i] - mb - std::log(sb);
      kl += std::exp(la) * (la - lb);
    }
    agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
  }
  EXPECT_LT(kl / double(tokens.size()), 0.01);
  EXPECT_GE(agree, 36) << "of " << tokens.size();
}

}  // namespace
}  // namespace engine
