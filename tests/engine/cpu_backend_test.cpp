// Every CPU backend verb against a naive scalar reference (double accumulation) on random inputs
// with odd sizes, for BF16/F16/F32 weights, with the SIMD kernels and the portable ones, on one
// thread and several.
//
// Tolerances: verbs that round their output to bf16 may differ from the reference by one bf16 ulp
// (2^-8 relative) where the fp32 value sits next to a rounding boundary, because fp32 and double
// sums differ in their last bits; verbs whose arithmetic is elementwise and identical to the
// reference (embed, rope, gather, round) must match exactly.
#include "engine/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/bf16.h"

namespace engine {
namespace {

uint16_t floatToF16(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, sizeof u);
  return u;
}

// A weight tensor owned by the test, in any of the three dtypes.
struct TestWeight {
  std::vector<uint16_t> u16;
  std::vector<float> f32;
  Weight w;
  TestWeight(DType dtype, std::vector<int64_t> shape, std::mt19937& rng, float scale = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> dist(0.0f, scale);
    w.dtype = dtype;
    w.shape = std::move(shape);
    w.name = "test.weight";
    w.file = "memory";
    if (dtype == DType::kF32) {
      for (int64_t i = 0; i < n; ++i) f32.push_back(dist(rng));
      w.data = f32.data();
      w.bytes = size_t(n) * 4;
    } else {
      for (int64_t i = 0; i < n; ++i)
        u16.push_back(dtype == DType::kBF16 ? floatToBf16(dist(rng)) : floatToF16(dist(rng)));
      w.data = u16.data();
      w.bytes = size_t(n) * 2;
    }
  }
};

// Random bf16-representable activations, as every matmul input in the model is.
std::vector<float> randomActs(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = roundBf16(dist(rng));
  return v;
}

bool isBf16(float v) { return roundBf16(v) == v; }

// |got - want| within one bf16 ulp of want (plus a tiny absolute slack near zero).
::testing::AssertionResult withinBf16Ulp(float got, double want, double abs_slack = 1e-6) {
  const double tol = std::fabs(want) * std::ldexp(1.0, -7) + abs_slack;  // ulp <= 2^-7 |x|
  if (std::fabs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " vs reference " << want;
}

// y[T, rows] against a double-precision x · wᵀ. Unrounded: fp32 summation error only (relative
// to Σ|x w|). Rounded: additionally one bf16 ulp.
void checkMatmul(const std::vector<float>& x, int T, int64_t K, const Weight& w, int64_t rows,
                 const std::vector<float>& y, bool round) {
  for (int t = 0; t < T; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double want = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(x[size_t(t * K + k)]) * w.at(r * K + k);
        want += p;
        mag += std::fabs(p);
      }
      const float got = y[size_t(t * rows + r)];
      if (round) {
        ASSERT_TRUE(isBf16(got));
        ASSERT_TRUE(withinBf16Ulp(got, want, 1e-5 * mag)) << t << "," << r << " K=" << K;
      } else {
        ASSERT_NEAR(got, want, 1e-5 * mag + 1e-7) << t << "," << r << " K=" << K;
      }
    }
  }
}

struct Config {
  int threads;
  CpuIsa isa;
};

class CpuBackendTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    if (!cpuSupports(GetParam().isa)) GTEST_SKIP() << "this CPU lacks the instruction set";
    CpuBackendOptions o;
    o.threads = GetParam().threads;
    o.isa = GetParam().isa;
    be_ = makeCpuBackend(o);
  }
  std::unique_ptr<Backend> be_;
  std::mt19937 rng_{12345};
};

TEST_P(CpuBackendTest, MatmulMatchesScalarReference) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (int T : {1, 2, 3, 4, 5, 7, 13}) {
      for (int64_t K : {1, 7, 8, 9, 33, 67, 2001}) {
        for (int64_t N : {1, 3, 17, 70}) {
          if (K == 2001 && T < 5) continue;  // the large K exists to exercise row tiling
          const int64_t rows = K == 2001 ? 150 : N;
          TestWeight w(dt, {rows, K}, rng_, 1.0f / std::sqrt(float(K)));
          TestWeight w2(dt, {5, K}, rng_);
          auto ref = be_->prepareMatrix(w.w);
          auto ref2 = be_->prepareMatrix(w2.w);
          ASSERT_TRUE(ref.ok() && ref2.ok());
          const std::vector<float> x = randomActs(size_t(T * K), rng_);
          for (bool round : {false, true}) {
            std::vector<float> y(size_t(T * rows)), y2(size_t(T * 5));
            const MatmulTarget targets[] = {{&*ref, y.data()}, {&*ref2, y2.data()}};
            be_->matmul(x.data(), T, targets, round);
            checkMatmul(x, T, K, w.w, rows, y, round);
            checkMatmul(x, T, K, w2.w, 5, y2, round);
          }
        }
      }
    }
  }
}

// Activations that are not bf16 values (never the case inside the model) take the fp32 path.
TEST_P(CpuBackendTest, MatmulTakesNonBf16Activations) {
  const int T = 6;
  const int64_t K = 45, N = 9;
  TestWeight w(DType::kBF16, {N, K}, rng_);
  auto ref = be_->prepareMatrix(w.w);
  ASSERT_TRUE(ref.ok());
  std::normal_distribution<float> dist;
  std::vector<float> x(size_t(T * K)), y(size_t(T * N));
  for (auto& v : x) v = dist(rng_);
  be_->matmul(x.data(), T, *ref, y.data(), false);
  checkMatmul(x, T, K, w.w, N, y, false);
}

// How many tokens share a call must not change any row's result: a scheduler batches freely.
// K = 192 (rows of 384 bytes) at odd offsets takes the aligned-head path of the AVX-512 kernel.
TEST_P(CpuBackendTest, MatmulRowsDoNotDependOnBatchSize) {
  for (int64_t K : {131, 192}) {
    for (int offset : {0, 3}) {
      const int64_t N = 37;
      TestWeight store(DType::kBF16, {N * K + 8}, rng_);
      Weight w = store.w;
      w.data = store.u16.data() + offset;
      w.shape = {N, K};
      auto ref = be_->prepareMatrix(w);
      ASSERT_TRUE(ref.ok());
      const std::vector<float> x = randomActs(size_t(11 * K), rng_);
      std::vector<float> all(static_cast<size_t>(11 * N)), one(static_cast<size_t>(N));
      be_->matmul(x.data(), 11, *ref, all.data(), false);
      checkMatmul(x, 11, K, w, N, all, false);
      for (int t = 0; t < 11; ++t) {
        be_->matmul(x.data() + t * K, 1, *ref, one.data(), false);
        for (int64_t r = 0; r < N; ++r) ASSERT_EQ(one[size_t(r)], all[size_t(t * N + r)]) << K;
      }
    }
  }
}

TEST_P(CpuBackendTest, Rmsnorm1pMatchesScalarReference) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (int64_t cols : {1, 5, 16, 67, 1153}) {
      const int64_t rows = 9;
      TestWeight w(dt, {cols}, rng_, 0.3f);
      auto w1p = be_->prepareNorm1p(w.w);
      ASSERT_TRUE(w1p.ok());
      const std::vector<float> x = randomActs(size_t(rows * cols), rng_, 3.0f);
      std::vector<float> out(x.size()), residual = randomActs(x.size(), rng_), res0 = residual;
      be_->rmsnorm1p(x.data(), rows, cols, *w1p, 1e-6f, out.data());
      be_->rmsnorm1pAdd(x.data(), rows, cols, *w1p, 1e-6f, residual.data());
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t j = 0; j < cols; ++j) ss += double(x[r * cols + j]) * x[r * cols + j];
        const double inv = 1.0 / std::sqrt(ss / double(cols) + 1e-6);
        for (int64_t j = 0; j < cols; ++j) {
          const size_t i = size_t(r * cols + j);
          const double want = x[i] * inv * (1.0 + double(w.w.at(j)));  // (1 + w), §2.2
          ASSERT_TRUE(isBf16(out[i]));
          ASSERT_TRUE(withinBf16Ulp(out[i], want)) << r << "," << j;
          ASSERT_TRUE(isBf16(residual[i]));
          ASSERT_TRUE(withinBf16Ulp(residual[i], double(res0[i]) + out[i], 1e-5)) << r << "," << j;
        }
      }
      // In place.
      std::vector<float> inplace = x;
      be_->rmsnorm1p(inplace.data(), rows, cols, *w1p, 1e-6f, inplace.data());
      ASSERT_EQ(inplace, out);
    }
  }
}

TEST_P(CpuBackendTest, EmbedScalesAndRounds) {
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    TestWeight table(dt, {37, 19}, rng_);
    auto t = be_->prepareMatrix(table.w);
    ASSERT_TRUE(t.ok());
    const int32_t ids[] = {0, 36, 5, 5, 17};
    std::vector<float> out(5 * 19);
    be_->embed(ids, 5, *t, 34.0f, out.data());
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 19; ++j)
        ASSERT_EQ(out[size_t(i * 19 + j)], roundBf16(table.w.at(ids[i] * 19 + j) * 34.0f));
  }
}

TEST_P(CpuBackendTest, RopeTablesAndRotationMatchReference) {
  for (const RopeParams rp : {RopeParams{10000.0, 1.0}, RopeParams{1e6, 8.0}}) {
    const int D = 22, heads = 3, n = 7;
    const std::vector<int32_t> pos = {0, 1, 2, 511, 512, 4097, 30000};
    std::vector<float> table(size_t(n * D));
    be_->ropeTable(pos.data(), n, D, rp, table.data());
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < D / 2; ++j) {
        const double inv = 1.0 / std::pow(rp.base, 2.0 * j / D) / rp.factor;
        const double ang = pos[size_t(i)] * inv;
        // fp32 angles lose up to ~pos * 2^-24 rad; then the value is rounded to bf16.
        const double slack = 1e-6 + pos[size_t(i)] * inv * 1.2e-7;
        ASSERT_TRUE(isBf16(table[size_t(i * D + j)]));
        ASSERT_TRUE(withinBf16Ulp(table[size_t(i * D + j)], std::cos(ang), slack)) << i << "," << j;
        ASSERT_TRUE(withinBf16Ulp(table[size_t(i * D + D / 2 + j)], std::sin(ang), slack));
      }
    }
    const std::vector<float> x = randomActs(size_t(n * heads * D), rng_);
    std::vector<float> y = x;
    be_->rope(y.data(), n, heads, D, table.data());
    for (int i = 0; i < n; ++i) {
      const float* c = table.data() + i * D;
      const float* s = c + D / 2;
      for (int h = 0; h < heads; ++h) {
        const float* xr = x.data() + (i * heads + h) * D;
        const float* yr = y.data() + (i * heads + h) * D;
        for (int j = 0; j < D / 2; ++j) {
          const float a = xr[j], b = xr[j + D / 2];
          ASSERT_EQ(yr[j], roundBf16(roundBf16(a * c[j]) + roundBf16(-b * s[j])));
          ASSERT_EQ(yr[j + D / 2], roundBf16(roundBf16(b * c[j]) + roundBf16(a * s[j])));
        }
      }
    }
  }
}

// Attention over a ring cache that wraps several times, written chunk by chunk, against a naive
// reference that keeps every position and applies the mask of gemma-spec §2.7.
TEST_P(CpuBackendTest, AttentionOverRingMatchesReference) {
  for (int window : {0, 5}) {
    AttentionShape sh;
    sh.n_head = 6;
    sh.n_head_kv = 2;  // groups of 3
    sh.head_dim = 20;
    sh.scale = 0.2f;
    sh.window = window;
    const int kv_dim = sh.n_head_kv * sh.head_dim, q_dim = sh.n_head * sh.head_dim;
    const int max_chunk = 4, total = 23;
    const int cap = window ? window - 1 + max_chunk : total;
    auto kbuf = be_->alloc(size_t(cap * kv_dim) * 2), vbuf = be_->alloc(size_t(cap * kv_dim) * 2);
    auto pbuf = be_->alloc(size_t(cap) * 4);
    const KvLayerView view{kbuf->u16(), vbuf->u16(), pbuf->i32(), cap};
    const std::vector<float> K = randomActs(size_t(total * kv_dim), rng_);
    const std::vector<float> V = randomActs(size_t(total * kv_dim), rng_);
    const std::vector<float> Q = randomActs(size_t(total * q_dim), rng_, 2.0f);
    std::vector<float> out(size_t(total * q_dim));
    // Chunks of 3, 4, 1, 4, ... tokens; a second "sequence" rides along in the same call.
    int pos = 0;
    for (int step = 0; pos < total; ++step) {
      const int n = std::min(total - pos, step % 3 == 2 ? 1 : 3 + step % 2);
      be_->writeKv(K.data() + pos * kv_dim, V.data() + pos * kv_dim, n, pos, kv_dim, view);
      AttentionSeq s;
      s.q = Q.data() + pos * q_dim;
      s.out = out.data() + pos * q_dim;
      s.n = n;
      s.pos0 = pos;
      s.kv = view;
      s.n_slots = std::min(cap, pos + n);
      const AttentionSeq seqs[] = {s, s};  // twice: same inputs, same outputs
      be_->attention(sh, seqs);
      pos += n;
    }
    for (int p = 0; p < total; ++p) {
      for (int h = 0; h < sh.n_head; ++h) {
        const int g = h / (sh.n_head / sh.n_head_kv);
        std::vector<double> sc;
        double m = -1e300;
        const int lo = window ? std::max(0, p - window + 1) : 0;
        for (int j = lo; j <= p; ++j) {
          double d = 0;
          for (int e = 0; e < sh.head_dim; ++e)
            d += double(Q[size_t(p * q_dim + h * sh.head_dim + e)]) *
                 K[size_t(j * kv_dim + g * sh.head_dim + e)];
          sc.push_back(d * sh.scale);
          m = std::max(m, sc.back());
        }
        double sum = 0;
        for (double& v : sc) sum += (v = std::exp(v - m));
        for (int e = 0; e < sh.head_dim; ++e) {
          double o = 0;
          for (int j = lo; j <= p; ++j)
            o += sc[size_t(j - lo)] / sum * V[size_t(j * kv_dim + g * sh.head_dim + e)];
          const float got = out[size_t(p * q_dim + h * sh.head_dim + e)];
          ASSERT_TRUE(isBf16(got));
          ASSERT_TRUE(withinBf16Ulp(got, o, 1e-5))
              << "window " << window << " pos " << p << " head " << h << " dim " << e;
        }
      }
    }
  }
}

// The same K/V written through a block table (blocks scattered over a larger pool, several layers
// interleaved per block, as engine/kv_cache.h lays them out) and through a plain contiguous view
// give bit-identical attention, sliding ring included.
TEST_P(CpuBackendTest, PagedViewMatchesContiguousView) {
  for (int window : {0, 6}) {
    AttentionShape sh;
    sh.n_head = 4;
    sh.n_head_kv = 2;
    sh.head_dim = 16;
    sh.scale = 0.25f;
    sh.window = window;
    const int kv_dim = sh.n_head_kv * sh.head_dim, q_dim = sh.n_head * sh.head_dim;
    const int bs = 4, max_chunk = 5, total = 37;
    const int cap = window ? 12 : 40;  // whole blocks: >= W - 1 + max_chunk on the ring
    const int pool_blocks = 16, layers_per_block = 3, layer = 1;
    const int64_t rows = int64_t{pool_blocks} * layers_per_block * bs;
    auto pk = be_->alloc(size_t(rows * kv_dim) * 2), pv = be_->alloc(size_t(rows * kv_dim) * 2);
    auto pp = be_->alloc(size_t(rows) * 4);
    std::vector<int32_t> table;  // logical block i -> a scattered physical block
    for (int i = 0; i < cap / bs; ++i) table.push_back((i * 7 + 3) % pool_blocks);
    KvLayerView paged{pk->u16() + layer * bs * kv_dim, pv->u16() + layer * bs * kv_dim,
                      pp->i32() + layer * bs, cap};
    paged.blocks = table.data();
    paged.block_size = bs;
    paged.block_rows = int64_t{layers_per_block} * bs;
    auto ck = be_->alloc(size_t(cap * kv_dim) * 2), cv = be_->alloc(size_t(cap * kv_dim) * 2);
    auto cp = be_->alloc(size_t(cap) * 4);
    const KvLayerView plain{ck->u16(), cv->u16(), cp->i32(), cap};
    const std::vector<float> K = randomActs(size_t(total * kv_dim), rng_);
    const std::vector<float> V = randomActs(size_t(total * kv_dim), rng_);
    const std::vector<float> Q = randomActs(size_t(total * q_dim), rng_, 2.0f);
    std::vector<float> out_paged(size_t(total * q_dim)), out_plain(out_paged.size());
    for (int pos = 0, step = 0; pos < total; ++step) {
      const int n = std::min(total - pos, 1 + step % max_chunk);
      for (auto [view, out] : {std::pair{paged, &out_paged}, std::pair{plain, &out_plain}}) {
        be_->writeKv(K.data() + pos * kv_dim, V.data() + pos * kv_dim, n, pos, kv_dim, view);
        AttentionSeq s;
        s.q = Q.data() + pos * q_dim;
        s.out = out->data() + pos * q_dim;
        s.n = n;
        s.pos0 = pos;
        s.kv = view;
        s.n_slots = std::min(cap, pos + n);
        be_->attention(sh, std::span<const AttentionSeq>(&s, 1));
      }
      pos += n;
    }
    ASSERT_EQ(std::memcmp(out_paged.data(), out_plain.data(), out_paged.size() * sizeof(float)), 0)
        << "window " << window;
    // The last key went to its physical block's row for this layer, not to row `slot`.
    const int slot = (total - 1) % cap;
    const int64_t row = int64_t{table[size_t(slot / bs)]} * paged.block_rows + slot % bs;
    EXPECT_EQ(row, kvRow(paged, slot));
    for (int e = 0; e < kv_dim; ++e) {
      const float stored = std::bit_cast<float>(uint32_t{paged.k[row * kv_dim + e]} << 16);
      ASSERT_EQ(stored, roundBf16(K[size_t((total - 1) * kv_dim + e)])) << e;
    }
    EXPECT_EQ(paged.slot_pos[row], total - 1);
  }
}

TEST_P(CpuBackendTest, GegluMatchesScalarReference) {
  const int64_t n = 1001;
  std::vector<float> g = randomActs(size_t(n), rng_, 3.0f);
  const std::vector<float> u = randomActs(size_t(n), rng_);
  const float edges[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 30.0f, -30.0f, 100.0f, -100.0f, -5.0f, 5.0f};
  std::copy(std::begin(edges), std::end(edges), g.begin() + 500);
  std::vector<float> out(static_cast<size_t>(n));
  be_->geglu(g.data(), u.data(), n, out.data());
  for (int64_t i = 0; i < n; ++i) {
    const double z = g[size_t(i)];
    const double gelu = 0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    ASSERT_TRUE(isBf16(out[size_t(i)]));
    // Two roundings (gelu, then the product): allow two ulps.
    const double want = double(roundBf16(float(gelu))) * u[size_t(i)];
    ASSERT_NEAR(out[size_t(i)], want, std::fabs(want) * std::ldexp(1.0, -6) + 1e-6) << i;
  }
  std::vector<float> inplace = g;  // out may alias gate
  be_->geglu(inplace.data(), u.data(), n, inplace.data());
  ASSERT_EQ(inplace, out);
}

TEST_P(CpuBackendTest, GatherAndRoundAndCopies) {
  const std::vector<float> src = randomActs(5 * 7, rng_);
  const int32_t rows[] = {4, 0, 4};
  std::vector<float> dst(3 * 7);
  be_->gatherRows(src.data(), rows, 3, 7, dst.data());
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 7; ++j) ASSERT_EQ(dst[size_t(i * 7 + j)], src[size_t(rows[i] * 7 + j)]);

  std::vector<float> x = {1.00390625f, 1.01171875f, -3.14159f, 1e-3f, 65537.0f};
  std::vector<float> want;
  for (float v : x) want.push_back(roundBf16(v));
  be_->roundBf16(x.data(), int64_t(x.size()));
  EXPECT_EQ(x, want);
  EXPECT_EQ(x[0], 1.0f);  // tie to even
  EXPECT_EQ(x[1], 1.015625f);

  auto buf = be_->alloc(64);
  const char text[] = "switchyard";
  be_->upload(*buf, 8, text, sizeof text);
  char back[sizeof text];
  be_->download(back, *buf, 8, sizeof text);
  EXPECT_STREQ(back, text);
}

TEST_P(CpuBackendTest, PrepareRejectsUnsupportedTensors) {
  TestWeight w(DType::kBF16, {4, 4}, rng_);
  w.w.dtype = DType::kI32;
  EXPECT_EQ(be_->prepareMatrix(w.w).status().code(), api::ErrorCode::kConfig);
  TestWeight v(DType::kBF16, {4, 4}, rng_);
  EXPECT_EQ(be_->prepareNorm1p(v.w).status().code(), api::ErrorCode::kConfig);  // not 1-D
  TestWeight n(DType::kBF16, {4}, rng_);
  EXPECT_EQ(be_->prepareMatrix(n.w).status().code(), api::ErrorCode::kConfig);   // not 2-D
  EXPECT_EQ(be_->prepareVector(v.w).status().code(), api::ErrorCode::kConfig);   // not 1-D
  EXPECT_EQ(be_->prepareExperts(v.w).status().code(), api::ErrorCode::kConfig);  // not 3-D
}

// ---- Gemma 4 verbs (gemma-spec §3)

TEST_P(CpuBackendTest, PlainAndWeightlessNormsMatchScalarReference) {
  const int64_t rows = 5, cols = 67;
  const std::vector<float> x = randomActs(size_t(rows * cols), rng_, 2.0f);
  TestWeight w(DType::kBF16, {cols}, rng_);
  auto plain = be_->prepareVector(w.w);
  ASSERT_TRUE(plain.ok());
  for (int64_t j = 0; j < cols; ++j)  // no "+1": Gemma 4 norms multiply by w (§3.2)
    ASSERT_EQ(static_cast<const float*>(plain->data)[j], w.w.at(j));
  std::vector<float> out(x.size()), bare(x.size());
  be_->rmsnorm1p(x.data(), rows, cols, *plain, 1e-6f, out.data());
  be_->rmsnormNoScale(x.data(), rows, cols, 1e-6f, bare.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < cols; ++j)
      ss += double(x[size_t(r * cols + j)]) * x[size_t(r * cols + j)];
    const double inv = 1 / std::sqrt(ss / double(cols) + 1e-6);
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = size_t(r * cols + j);
      ASSERT_TRUE(isBf16(out[i]) && isBf16(bare[i]));
      ASSERT_TRUE(withinBf16Ulp(out[i], x[i] * inv * w.w.at(j)));
      ASSERT_TRUE(withinBf16Ulp(bare[i], x[i] * inv));
    }
  }
  std::vector<float> inplace = x;
  be_->rmsnormNoScale(inplace.data(), rows, cols, 1e-6f, inplace.data());
  EXPECT_EQ(inplace, bare);
}

// §3.4: proportional RoPE over D = 32 with partial 0.25 rotates pairs j < 4 (dims 0-3 and
// 16-19) with inv_freq = theta^(-2j/32) over the FULL head dim, and leaves the rest untouched.
TEST_P(CpuBackendTest, ProportionalRopeRotatesOnlyTheLeadingPairs) {
  const int D = 32, heads = 2, n = 4;
  const RopeParams rp{1e6, 1.0, RopeType::kProportional, 0.25};
  ASSERT_EQ(rp.rotatedPairs(D), 4);
  const std::vector<int32_t> pos = {0, 1, 17, 1000};
  std::vector<float> table(size_t(n * D));
  be_->ropeTable(pos.data(), n, D, rp, table.data());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < D / 2; ++j) {
      const double ang = j < 4 ? pos[size_t(i)] * std::pow(1e6, -2.0 * j / D) : 0.0;
      ASSERT_NEAR(table[size_t(i * D + j)], std::cos(ang), 0.01) << i << "," << j;
      ASSERT_NEAR(table[size_t(i * D + D / 2 + j)], std::sin(ang), 0.01) << i << "," << j;
      if (j >= 4) {
        ASSERT_EQ(table[size_t(i * D + j)], 1.0f);
        ASSERT_EQ(table[size_t(i * D + D / 2 + j)], 0.0f);
      }
    }
  const std::vector<float> x = randomActs(size_t(n * heads * D), rng_);
  std::vector<float> y = x;
  be_->rope(y.data(), n, heads, D, table.data());
  int changed = 0;
  for (int r = 0; r < n * heads; ++r)
    for (int d = 0; d < D; ++d) {
      const size_t i = size_t(r * D + d);
      const bool rotated = (d % (D / 2)) < 4;
      if (!rotated) {
        ASSERT_EQ(y[i], x[i]) << r << "," << d;
      }
      changed += y[i] != x[i];
    }
  EXPECT_GT(changed, 0);
}

TEST_P(CpuBackendTest, ElementwiseVerbsRoundToBf16) {
  const std::vector<float> a = randomActs(1003, rng_, 4.0f), b = randomActs(1003, rng_, 4.0f);
  std::vector<float> sum(a.size()), scaled = a;
  be_->add(a.data(), b.data(), int64_t(a.size()), sum.data());
  be_->scale(scaled.data(), int64_t(a.size()), 0.70710678f);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(sum[i], roundBf16(a[i] + b[i]));
    ASSERT_EQ(scaled[i], roundBf16(a[i] * 0.70710678f));
  }
  // mulVector: per column, or one broadcast scalar (layer_scalar, §3.9).
  TestWeight col(DType::kBF16, {7}, rng_), one(DType::kBF16, {1}, rng_);
  auto vcol = be_->prepareVector(col.w);
  auto vone = be_->prepareVector(one.w);
  ASSERT_TRUE(vcol.ok() && vone.ok());
  std::vector<float> m(a.begin(), a.begin() + 21), s = m;
  be_->mulVector(m.data(), 3, 7, *vcol);
  be_->mulVector(s.data(), 3, 7, *vone);
  for (size_t i = 0; i < 21; ++i) {
    ASSERT_EQ(m[i], roundBf16(a[i] * col.w.at(int64_t(i % 7))));
    ASSERT_EQ(s[i], roundBf16(a[i] * one.w.at(0)));
  }
  // Softcap, each op in bf16 as HF: bounded by the cap, odd, monotone.
  std::vector<float> z = {0.0f, 1.0f, -1.0f, 29.0f, 100.0f, -1e4f, 15.5f};
  const std::vector<float> z0 = z;
  be_->softcap(z.data(), int64_t(z.size()), 30.0f);
  for (size_t i = 0; i < z.size(); ++i) {
    const float want = roundBf16(roundBf16(std::tanh(roundBf16(z0[i] / 30.0f))) * 30.0f);
    ASSERT_EQ(z[i], want) << z0[i];
    ASSERT_LE(std::fabs(z[i]), 30.0f);
  }
  EXPECT_EQ(z[0], 0.0f);
  EXPECT_EQ(z[1], -z[2]);
  EXPECT_EQ(z[5], -30.0f);  // tanh saturates; 100 gives 29.875 after the bf16 steps
  // The looked-up tanh equals std::tanh's result after the bf16 steps for every bf16 input,
  // infinities included, and NaN stays NaN.
  std::vector<float> all;
  for (uint32_t h = 0; h < 65536; ++h) all.push_back(bf16ToFloat(static_cast<uint16_t>(h)) * 30.0f);
  std::vector<float> capped = all;
  be_->softcap(capped.data(), int64_t(capped.size()), 30.0f);
  for (size_t i = 0; i < all.size(); ++i) {
    const float want = roundBf16(roundBf16(std::tanh(roundBf16(all[i] / 30.0f))) * 30.0f);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(capped[i])) << i;
    } else {
      ASSERT_EQ(capped[i], want) << all[i];
    }
  }
}

TEST_P(CpuBackendTest, StridedGegluReadsOneSliceOfEachRow) {
  const int64_t rows = 5, cols = 8, stride = 48;
  const std::vector<float> g = randomActs(size_t(rows * cols), rng_, 2.0f);
  const std::vector<float> up = randomActs(size_t(rows * stride), rng_);
  std::vector<float> got(g.size()), want(static_cast<size_t>(cols));
  be_->gegluStrided(g.data(), up.data() + 16, rows, cols, stride, got.data());
  for (int64_t r = 0; r < rows; ++r) {
    be_->geglu(g.data() + r * cols, up.data() + 16 + r * stride, cols, want.data());
    for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(got[size_t(r * cols + j)], want[size_t(j)]);
  }
}

// §3.7 routing: softmax of the bf16 logits rounded to bf16, top-k (lower id first on ties),
// renormalised in bf16 and scaled by per_expert_scale.
TEST_P(CpuBackendTest, MoeRouteMatchesHfRouting) {
  const int n = 3, E = 6, K = 2;
  std::vector<float> logits = {0.5f,  2.0f, -1.0f, 2.0f,  0.0f, 1.0f,   // tie between 1 and 3
                               -3.0f, 0.0f, 4.0f,  0.25f, 0.5f, 3.5f,   //
                               1.0f,  1.0f, 1.0f,  1.0f,  1.0f, 1.0f};  // all equal
  TestWeight pes(DType::kBF16, {E}, rng_);
  auto scale = be_->prepareVector(pes.w);
  ASSERT_TRUE(scale.ok());
  std::vector<int32_t> idx(size_t(n * K));
  std::vector<float> w(size_t(n * K));
  be_->moeRoute(logits.data(), n, E, K, *scale, idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 3, 2, 5, 0, 1}));
  for (int t = 0; t < n; ++t) {
    double m = -1e30, sum = 0;
    for (int e = 0; e < E; ++e) m = std::max(m, double(logits[size_t(t * E + e)]));
    for (int e = 0; e < E; ++e) sum += std::exp(logits[size_t(t * E + e)] - m);
    float p[K], top = 0;
    for (int k = 0; k < K; ++k) {
      p[k] = roundBf16(float(std::exp(logits[size_t(t * E + idx[size_t(t * K + k)])] - m) / sum));
      top += p[k];
    }
    top = roundBf16(top);
    for (int k = 0; k < K; ++k) {
      const float want = roundBf16(roundBf16(p[k] / top) * pes.w.at(idx[size_t(t * K + k)]));
      ASSERT_TRUE(withinBf16Ulp(w[size_t(t * K + k)], want)) << t << "," << k;
    }
  }
}

// The expert block against a direct evaluation of every selected expert, summed in ascending
// expert id with bf16 partial sums; experts nobody picked are never read (their weights are NaN).
TEST_P(CpuBackendTest, MoeExpertsComputeOnlyTheSelectedExperts) {
  const int n = 4, E = 5, K = 2;
  const int64_t H = 24, I = 16;
  TestWeight gate_up(DType::kBF16, {E, 2 * I, H}, rng_, 0.2f),
      down(DType::kBF16, {E, H, I}, rng_, 0.25f);
  const int unused = 3;  // poison expert 3
  for (int64_t i = 0; i < 2 * I * H; ++i) gate_up.u16[size_t(unused * 2 * I * H + i)] = 0x7fc0;
  for (int64_t i = 0; i < H * I; ++i) down.u16[size_t(unused * H * I + i)] = 0x7fc0;
  auto gu = be_->prepareExperts(gate_up.w);
  auto dn = be_->prepareExperts(down.w);
  ASSERT_TRUE(gu.ok() && dn.ok());
  EXPECT_EQ(gu->rows, E * 2 * I);
  const std::vector<float> x = randomActs(size_t(n * H), rng_);
  const std::vector<int32_t> idx = {4, 0, 1, 2, 0, 4, 2, 1};
  const std::vector<float> w = {0.625f, 0.375f, 1.25f, 0.5f, 0.75f, 0.25f, 0.5f, 0.5f};
  std::vector<float> out(size_t(n * H), -7.0f);
  be_->moeExperts(x.data(), n, idx.data(), w.data(), K, E, *gu, *dn, out.data());

  std::vector<float> act(static_cast<size_t>(I)), y(static_cast<size_t>(H));
  for (int t = 0; t < n; ++t) {
    std::vector<float> want(static_cast<size_t>(H), 0.0f);
    std::vector<std::pair<int, float>> picks;
    for (int k = 0; k < K; ++k) picks.push_back({idx[size_t(t * K + k)], w[size_t(t * K + k)]});
    std::sort(picks.begin(), picks.end());
    for (auto [e, wt] : picks) {
      std::vector<float> g(static_cast<size_t>(2 * I));
      for (int64_t r = 0; r < 2 * I; ++r) {
        double acc = 0;
        for (int64_t c = 0; c < H; ++c)
          acc += double(x[size_t(t * H + c)]) * gate_up.w.at((e * 2 * I + r) * H + c);
        g[size_t(r)] = roundBf16(float(acc));
      }
      be_->geglu(g.data(), g.data() + I, I, act.data());
      for (int64_t r = 0; r < H; ++r) {
        double acc = 0;
        for (int64_t c = 0; c < I; ++c)
          acc += double(act[size_t(c)]) * down.w.at((e * H + r) * I + c);
        y[size_t(r)] = roundBf16(float(acc));
      }
      for (int64_t j = 0; j < H; ++j)
        want[size_t(j)] = roundBf16(want[size_t(j)] + roundBf16(y[size_t(j)] * wt));
    }
    for (int64_t j = 0; j < H; ++j) {
      const float got = out[size_t(t * H + j)];
      ASSERT_TRUE(std::isfinite(got)) << "read an unselected expert";
      // fp32 vs double sums may flip one bf16 rounding per term: a few ulps of the terms.
      ASSERT_NEAR(got, want[size_t(j)], 0.02 * (std::fabs(want[size_t(j)]) + 0.05))
          << t << "," << j;
    }
  }
}

// Quantized experts: a decode step (one token) takes its own path through the chosen experts
// (all of them in two pool runs); each token alone gives what the same tokens give batched.
TEST_P(CpuBackendTest, QuantizedMoeExpertsOneTokenEqualsTheBatch) {
  for (quant::QType q : {quant::QType::kQ8_0, quant::QType::kQ4_K}) {
    CpuBackendOptions o;
    o.threads = GetParam().threads;
    o.isa = GetParam().isa;
    o.quantize = q;
    auto be = makeCpuBackend(o);
    const int n = 3, E = 6, K = 3;
    // 704-wide down projections (26B-A4B's): 22 blocks of 32, a tail after the groups of 8;
    // Q4_K falls back to Q5_0 there.
    const int64_t H = 256, I = 704;
    TestWeight gate_up(DType::kBF16, {E, 2 * I, H}, rng_, 0.2f),
        down(DType::kBF16, {E, H, I}, rng_, 0.25f);
    auto gu = be->prepareExperts(gate_up.w);
    auto dn = be->prepareExperts(down.w);
    ASSERT_TRUE(gu.ok() && dn.ok());
    ASSERT_TRUE(quant::qtypeOf(gu->dtype).has_value()) << "experts not quantized";
    const std::vector<float> x = randomActs(size_t(n * H), rng_);
    const std::vector<int32_t> idx = {5, 0, 2, 1, 5, 3, 2, 4, 0};
    const std::vector<float> w = {0.5f, 0.25f, 0.25f, 0.625f, 0.125f, 0.25f, 0.5f, 0.375f, 0.125f};
    std::vector<float> batch(size_t(n * H));
    be->moeExperts(x.data(), n, idx.data(), w.data(), K, E, *gu, *dn, batch.data());
    for (int t = 0; t < n; ++t) {
      std::vector<float> one(size_t(H), -7.0f);
      be->moeExperts(x.data() + t * H, 1, idx.data() + t * K, w.data() + t * K, K, E, *gu, *dn,
                     one.data());
      for (int64_t j = 0; j < H; ++j)
        ASSERT_EQ(one[size_t(j)], batch[size_t(t * H + j)])
            << quant::qtypeName(q) << " token " << t << " value " << j;
    }
  }
}

// Block-quantized matrices from a file (GGUF) are copied out of the mapping by default, byte for
// byte (prepareMatrix, prepareExperts), or read in place (copy_quantized off); a row table
// (prepareRowTable) always stays in place. Both give the same matmul results.
TEST(CpuBackendWeights, BlockQuantizedMatricesAreCopiedUnlessAskedNotTo) {
  const int64_t rows = 48, cols = 64;
  std::vector<unsigned char> stored(quant::rowBytes(quant::QType::kQ8_0, cols) * rows);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = u(rng);
    quant::quantizeRow(quant::QType::kQ8_0, row.data(),
                       stored.data() + quant::rowBytes(quant::QType::kQ8_0, cols) * size_t(r), cols);
  }
  Weight w;
  w.data = stored.data();
  w.dtype = DType::kQ8_0;
  w.shape = {rows, cols};
  w.bytes = stored.size();
  w.name = "m";
  w.file = "f.gguf";
  Weight stack = w;
  stack.shape = {2, rows / 2, cols};
  std::vector<float> x(static_cast<size_t>(cols)), y_in_place(static_cast<size_t>(rows)),
      y_copied(static_cast<size_t>(rows));
  for (float& v : x) v = u(rng);
  for (bool copy : {true, false}) {
    CpuBackendOptions o;
    o.threads = 2;
    o.copy_quantized = copy;
    auto be = makeCpuBackend(o);
    auto m = be->prepareMatrix(w);
    auto e = be->prepareExperts(stack);
    auto t = be->prepareRowTable(w);
    ASSERT_TRUE(m.ok() && e.ok() && t.ok());
    EXPECT_EQ(m->data == stored.data(), !copy);
    EXPECT_EQ(e->data == stored.data(), !copy);
    EXPECT_EQ(t->data, stored.data());
    EXPECT_EQ(e->rows, rows);
    EXPECT_EQ(std::memcmp(m->data, stored.data(), stored.size()), 0);
    EXPECT_EQ(std::memcmp(e->data, stored.data(), stored.size()), 0);
    be->matmul(x.data(), 1, *m, copy ? y_copied.data() : y_in_place.data(), false);
  }
  EXPECT_EQ(y_copied, y_in_place);
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuBackendTest,
                         ::testing::Values(Config{1, CpuIsa::kPortable},
                                           Config{2, CpuIsa::kPortable}, Config{1, CpuIsa::kAvx2},
                                           Config{3, CpuIsa::kAvx2}, Config{1, CpuIsa::kAvx512Bf16},
                                           Config{2, CpuIsa::kAvx512Bf16}),
                         [](const auto& info) {
                           const CpuIsa isa = info.param.isa;
                           return std::string(isa == CpuIsa::kPortable ? "portable"
                                              : isa == CpuIsa::kAvx2   ? "avx2"
                                                                       : "avx512bf16") +
                                  "_" + std::to_string(info.param.threads) + "threads";
                         });

}  // namespace
}  // namespace engine
