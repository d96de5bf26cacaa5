// kernels::ropeTable / rope / ropeAtPositions against CpuBackend::ropeTable, rope and rmsnorm1p
// (gemma-spec §2.3: NeoX layout, cos/sin and every op rounded to bf16).
//
// Tolerances.
// * Frequencies: ropeFreqs runs the CPU's fp32 host expression, so they are identical.
// * Table: the angle is the same single fp32 product; cos/sin differ only by the libraries'
//   errors (CUDA sincosf at most 2 fp32 ulps, glibc below 1), which flip the bf16 rounding of
//   about 1 in 10^4 elements: at most 1 bf16 ulp of |ref|, at least 99.9% bit-identical.
// * rope() given the same table: the same correctly rounded fp32 ops in the same order, so
//   bit-identical.
// * Rotation with the fused norm or in-kernel cos/sin: per pair (x1, x2) with X = max(|x1|,
//   |x2|) after the norm, each input may be one bf16 ulp off (the norm's inputs x by ulp(X), cos
//   and sin by at most 2^-8 < ulp(X)/X); each product x*cos then moves by at most 2 ulp(X)
//   before and 3 ulp(X) after its rounding; the sum of two, rounded again (ulp(2X) = 2 ulp(X)):
//   at most 8 bf16 ulps of X. In practice nearly every element is bit-identical: at least 99.9%.
#include "kernels/rope.h"

#include <algorithm>
#include <cmath>

#include "tests/kernels/gpu_test_util.h"

namespace kernels::test {
namespace {

constexpr float kEps = 1e-6f;

struct Layer {
  const char* name;
  double base, factor;  // gemma-spec §2.9
};
constexpr Layer kLayers[] = {
    {"sliding", 1e4, 1.0},  // every size's sliding layers
    {"full", 1e6, 1.0},     // 270m / 1b full layers
    {"full x8", 1e6, 8.0},  // 4b / 12b / 27b full layers: linear scaling by 8
};

class Rope : public GpuTest {
 protected:
  // n positions up to Gemma 3's 131072-token context, with the edges among them.
  std::vector<int32_t> positions(int n) {
    std::uniform_int_distribution<int32_t> pick(0, 131071);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (auto& p : pos) p = pick(rng_);
    const int32_t edges[] = {0, 1, 131071, 32767, 4095};
    for (int i = 0; i < n && i < 5; ++i) pos[size_t(i)] = edges[i];
    return pos;
  }

  std::vector<float> cpuTable(const std::vector<int32_t>& pos, int D, const Layer& l) {
    std::vector<float> t(pos.size() * size_t(D));
    engine::RopeParams rp;
    rp.base = l.base;
    rp.factor = l.factor;
    cpu_->ropeTable(pos.data(), int(pos.size()), D, rp, t.data());
    return t;
  }

  enum class Mode { kTable, kPositions };

  // x[n, H, D] rotated on the GPU (from the CPU's table or from positions, with or without the
  // fused q/k norm), compared with the CPU's rmsnorm1p (when norm) then rope.
  void checkRotation(int n, int H, int D, const Layer& l, Mode mode, bool norm) {
    const std::vector<int32_t> pos = positions(n);
    const std::vector<float> table = cpuTable(pos, D, l);
    const std::vector<float> x = randomBf16(size_t(n) * H * D, rng_, 4.0f);
    const std::vector<float> w1p = [&] {
      std::vector<float> w = randomBf16(size_t(D), rng_, 0.5f);
      for (auto& v : w) v += 1.0f;  // 1 + w, as prepared
      return w;
    }();

    std::vector<float> normed = x;  // the rotation's inputs: x, or x after the per-head norm
    if (norm) {
      engine::WeightRef w{w1p.data(), engine::DType::kF32, 1, D};
      cpu_->rmsnorm1p(x.data(), int64_t(n) * H, D, w, kEps, normed.data());
    }
    std::vector<float> want = normed;
    cpu_->rope(want.data(), n, H, D, table.data());

    DeviceArray<float> d_x(x), d_table(table), d_w1p(w1p);
    DeviceArray<int32_t> d_pos(pos);
    const float* w = norm ? d_w1p.get() : nullptr;
    if (mode == Mode::kTable) {
      SY_ASSERT_LAUNCH(rope(d_x.get(), n, H, D, d_table.get(), w, kEps, stream_));
    } else {
      SY_ASSERT_LAUNCH(ropeAtPositions(d_x.get(), d_pos.get(), n, H, ropeFreqs(D, l.base, l.factor),
                                       w, kEps, stream_));
    }
    sync();
    const std::vector<float> got = d_x.download();

    const bool exact = mode == Mode::kTable && !norm;
    Comparison c(std::string(mode == Mode::kTable ? "rope(table)" : "ropeAtPositions") +
                     (norm ? "+norm " : " ") + l.name + " n=" + std::to_string(n) +
                     " H=" + std::to_string(H) + " D=" + std::to_string(D),
                 exact ? 0.0 : 8.0);
    const int half = D / 2;
    for (int64_t r = 0; r < int64_t(n) * H; ++r) {
      for (int j = 0; j < half; ++j) {
        const size_t a = size_t(r * D + j), b = a + size_t(half);
        const double mag = std::max(std::fabs(normed[a]), std::fabs(normed[b]));
        c.add(int64_t(a), got[a], want[a], mag);
        c.add(int64_t(b), got[b], want[b], mag);
      }
    }
    c.check(exact ? 1.0 : 0.999);
  }
};

TEST_F(Rope, TableMatchesCpuBackend) {
  for (const Layer& l : kLayers) {
    for (int D : {256, 128}) {
      for (int n : {1, 7, 33, 257}) {
        const std::vector<int32_t> pos = positions(n);
        const std::vector<float> want = cpuTable(pos, D, l);
        DeviceArray<int32_t> d_pos(pos);
        DeviceArray<float> d_table(want.size());
        d_table.poison();
        SY_ASSERT_LAUNCH(
            ropeTable(d_pos.get(), n, ropeFreqs(D, l.base, l.factor), d_table.get(), stream_));
        sync();
        const std::vector<float> got = d_table.download();
        Comparison c(std::string("ropeTable ") + l.name + " n=" + std::to_string(n) +
                         " D=" + std::to_string(D),
                     1.0);
        for (size_t i = 0; i < want.size(); ++i) c.add(int64_t(i), got[i], want[i]);
        c.check(0.999);
      }
    }
  }
}

TEST_F(Rope, RotationFromTableIsBitIdentical) {
  for (const Layer& l : kLayers) {
    for (int n : {1, 7, 33, 257}) {
      checkRotation(n, 4, 256, l, Mode::kTable, false);  // 1b queries
      checkRotation(n, 1, 256, l, Mode::kTable, false);  // 1b keys
      checkRotation(n, 8, 256, l, Mode::kTable, false);  // 4b queries
    }
  }
  checkRotation(33, 32, 128, kLayers[2], Mode::kTable, false);  // 27b queries
  checkRotation(7, 2, 64, kLayers[0], Mode::kTable, false);     // the other head dims
  checkRotation(7, 2, 512, kLayers[1], Mode::kTable, false);
}

TEST_F(Rope, FusedQkNormMatchesCpuNormThenRope) {
  for (const Layer& l : kLayers) {
    for (int n : {1, 7, 33, 257}) {
      checkRotation(n, 8, 256, l, Mode::kTable, true);  // 4b queries
      checkRotation(n, 4, 256, l, Mode::kTable, true);  // 4b keys
    }
  }
  checkRotation(33, 32, 128, kLayers[2], Mode::kTable, true);  // 27b queries
}

TEST_F(Rope, AtPositionsMatchesCpuTableThenRope) {
  for (const Layer& l : kLayers) {
    for (int n : {1, 7, 33, 257}) {
      checkRotation(n, 4, 256, l, Mode::kPositions, false);
      checkRotation(n, 4, 256, l, Mode::kPositions, true);
    }
  }
  checkRotation(7, 16, 128, kLayers[2], Mode::kPositions, true);
  checkRotation(7, 2, 512, kLayers[1], Mode::kPositions, true);
}

// The header promises: ropeAtPositions == ropeTable then rope, bit for bit.
TEST_F(Rope, AtPositionsEqualsGpuTableThenRope) {
  const int n = 257, H = 8, D = 256;
  const std::vector<int32_t> pos = positions(n);
  const std::vector<float> x = randomBf16(size_t(n) * H * D, rng_, 4.0f);
  std::vector<float> w1p = randomBf16(size_t(D), rng_, 0.5f);
  for (auto& v : w1p) v += 1.0f;
  const RopeFreqs f = ropeFreqs(D, 1e6, 8.0);
  DeviceArray<int32_t> d_pos(pos);
  DeviceArray<float> d_a(x), d_b(x), d_table(size_t(n) * D), d_w1p(w1p);
  SY_ASSERT_LAUNCH(ropeTable(d_pos.get(), n, f, d_table.get(), stream_));
  SY_ASSERT_LAUNCH(rope(d_a.get(), n, H, D, d_table.get(), d_w1p.get(), kEps, stream_));
  SY_ASSERT_LAUNCH(ropeAtPositions(d_b.get(), d_pos.get(), n, H, f, d_w1p.get(), kEps, stream_));
  sync();
  const std::vector<float> a = d_a.download(), b = d_b.download();
  Comparison c("ropeAtPositions vs ropeTable+rope (GPU)", 0.0);
  for (size_t i = 0; i < a.size(); ++i) c.add(int64_t(i), b[i], a[i]);
  c.check(1.0);
}

TEST_F(Rope, RejectsBadArguments) {
  DeviceArray<float> d(4 * 512);
  DeviceArray<int32_t> d_pos(std::vector<int32_t>{0, 1});
  EXPECT_EQ(rope(d.get(), 1, 1, 96, d.get(), nullptr, kEps, stream_).code,
            Status::kInvalidArgument);  // head_dim without a kernel
  EXPECT_EQ(rope(d.get() + 1, 1, 1, 256, d.get(), nullptr, kEps, stream_).code,
            Status::kInvalidArgument);  // misaligned
  EXPECT_EQ(rope(d.get(), 1, 1, 256, nullptr, nullptr, kEps, stream_).code,
            Status::kInvalidArgument);  // no table
  EXPECT_EQ(ropeFreqs(513, 1e4, 1.0).head_dim, 0);
  EXPECT_EQ(ropeTable(d_pos.get(), 2, ropeFreqs(7, 1e4, 1.0), d.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_EQ(ropeAtPositions(d.get(), d_pos.get(), 2, 1, RopeFreqs{}, nullptr, kEps, stream_).code,
            Status::kInvalidArgument);
  EXPECT_TRUE(rope(nullptr, 0, 1, 256, nullptr, nullptr, kEps, stream_).ok());  // no-op
}

}  // namespace
}  // namespace kernels::test
