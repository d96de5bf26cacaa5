// kernels::rmsnorm1p / rmsnorm1pAdd / norm1pFromBf16 against the CPU backend (gemma-spec §2.2).
//
// Tolerances. The only arithmetic that differs is the sum of squares: fp32 in a shuffle tree on
// the GPU, double in row order on the CPU. That moves 1 / sqrt(mean + eps) by a few fp32 ulps
// (about 1e-7 relative), which changes the bf16 rounding of an output only where the fp32 value
// sits within 1e-7 of a rounding boundary (about 1 in 10^5 elements); such an element is then one
// bf16 ulp away. So:
//   rmsnorm1p:    at most 1 bf16 ulp of |ref|, at least 99.9% bit-identical;
//   rmsnorm1pAdd: residual + norm, where the norm term may be one ulp off and the sum rounds
//                 once more: at most ulp(norm) + ulp(sum), i.e. 2 ulps of max(|ref|, |norm|),
//                 at least 99.9% bit-identical.
// norm1pFromBf16 is one fp32 addition on both sides: bit-identical.
#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>

#include "tests/kernels/gpu_test_util.h"

namespace kernels::test {
namespace {

constexpr float kEps = 1e-6f;  // rms_norm_eps of every Gemma 3 size (gemma-spec §2.9)

class Rmsnorm : public GpuTest {
 protected:
  // Rows of very different magnitudes, as the residual stream has (Gemma 3 activations reach the
  // thousands), and one row of zeros (mean 0: 1/sqrt(eps) times 0).
  std::vector<float> activations(int64_t rows, int64_t cols) {
    const float scales[] = {0.02f, 1.0f, 30.0f, 3000.0f};
    std::vector<float> x;
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> row = randomBf16(size_t(cols), rng_, scales[r % 4]);
      if (r == 5) std::fill(row.begin(), row.end(), 0.0f);
      x.insert(x.end(), row.begin(), row.end());
    }
    return x;
  }

  // The norm weight as stored (bf16, zero-centred), prepared as 1 + w on the GPU, checked
  // against the CPU's preparation, and returned as host fp32 for the CPU reference.
  std::vector<float> prepareWeight(int64_t cols, DeviceArray<float>& d_w1p) {
    const std::vector<uint16_t> w = randomBf16Bits(size_t(cols), rng_, 0.5f);
    std::vector<float> w1p(static_cast<size_t>(cols));
    for (size_t i = 0; i < w1p.size(); ++i) w1p[i] = 1.0f + engine::bf16ToFloat(w[i]);
    DeviceArray<uint16_t> d_w(w);
    d_w1p.poison();
    const Status st = norm1pFromBf16(d_w.get(), cols, d_w1p.get(), stream_);
    EXPECT_TRUE(st.ok()) << describe(st);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const std::vector<float> got = d_w1p.download();
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(bitsOf(got[i]), bitsOf(w1p[i])) << "norm1pFromBf16 at " << i;
    return w1p;
  }

  // rmsnorm1p (out of place, or in place with out == x) on [rows, cols], x offset by `offset`
  // floats (1 exercises the scalar path).
  void checkNorm(int64_t rows, int64_t cols, bool in_place, int offset = 0) {
    DeviceArray<float> d_w1p(static_cast<size_t>(cols));
    const std::vector<float> w1p = prepareWeight(cols, d_w1p);
    const std::vector<float> x = activations(rows, cols);
    std::vector<float> want(x.size());
    engine::WeightRef w{w1p.data(), engine::DType::kF32, 1, cols};
    cpu_->rmsnorm1p(x.data(), rows, cols, w, kEps, want.data());

    std::vector<float> x_dev(size_t(offset), 0.0f);
    x_dev.insert(x_dev.end(), x.begin(), x.end());
    DeviceArray<float> d_x(x_dev);
    DeviceArray<float> d_out(x_dev.size());
    float* out = in_place ? d_x.get() + offset : d_out.get() + offset;
    if (!in_place) d_out.poison();
    SY_ASSERT_LAUNCH(rmsnorm1p(d_x.get() + offset, rows, cols, d_w1p.get(), kEps, out, stream_));
    sync();
    const std::vector<float> got = in_place ? d_x.download() : d_out.download();

    Comparison c("rmsnorm1p H=" + std::to_string(cols) + " rows=" + std::to_string(rows) +
                     (in_place ? " in-place" : "") + (offset ? " unaligned" : ""),
                 1.0);
    for (size_t i = 0; i < want.size(); ++i) c.add(int64_t(i), got[i + size_t(offset)], want[i]);
    c.check(0.999);
  }

  void checkNormAdd(int64_t rows, int64_t cols, int offset = 0) {
    DeviceArray<float> d_w1p(static_cast<size_t>(cols));
    const std::vector<float> w1p = prepareWeight(cols, d_w1p);
    const std::vector<float> x = activations(rows, cols);
    const std::vector<float> residual = randomBf16(x.size(), rng_, 50.0f);
    engine::WeightRef w{w1p.data(), engine::DType::kF32, 1, cols};
    std::vector<float> norm(x.size());  // the norm term alone, for the tolerance's magnitude
    cpu_->rmsnorm1p(x.data(), rows, cols, w, kEps, norm.data());
    std::vector<float> want = residual;
    cpu_->rmsnorm1pAdd(x.data(), rows, cols, w, kEps, want.data());

    std::vector<float> x_dev(size_t(offset), 0.0f), r_dev(size_t(offset), 0.0f);
    x_dev.insert(x_dev.end(), x.begin(), x.end());
    r_dev.insert(r_dev.end(), residual.begin(), residual.end());
    DeviceArray<float> d_x(x_dev), d_r(r_dev);
    SY_ASSERT_LAUNCH(rmsnorm1pAdd(d_x.get() + offset, rows, cols, d_w1p.get(), kEps,
                                  d_r.get() + offset, stream_));
    sync();
    const std::vector<float> got = d_r.download();

    Comparison c("rmsnorm1pAdd H=" + std::to_string(cols) + " rows=" + std::to_string(rows) +
                     (offset ? " unaligned" : ""),
                 2.0);
    for (size_t i = 0; i < want.size(); ++i)
      c.add(int64_t(i), got[i + size_t(offset)], want[i],
            std::max(std::fabs(want[i]), std::fabs(norm[i])));
    c.check(0.999);
  }
};

TEST_F(Rmsnorm, MatchesCpuBackendOnGemmaShapes) {
  for (int64_t cols : {1152, 2560})
    for (int64_t rows : {1, 7, 33, 257}) checkNorm(rows, cols, false);
}

TEST_F(Rmsnorm, InPlaceMatchesCpuBackend) {
  for (int64_t cols : {1152, 2560}) checkNorm(33, cols, true);
}

TEST_F(Rmsnorm, PerHeadNormOverHeadDim) {
  // q_norm / k_norm as the model calls rmsnorm1p: rows = tokens * heads, cols = head_dim.
  checkNorm(33 * 8, 256, true);   // 4b: 8 query heads
  checkNorm(257 * 1, 256, true);  // 1b: 1 kv head
  checkNorm(7 * 32, 128, true);   // 27b: 32 query heads of 128
}

TEST_F(Rmsnorm, WideRowsLoopOverTheBlock) {
  checkNorm(7, 5376, false);  // 27b hidden: 1344 float4s, more than one per thread
  checkNormAdd(7, 5376);
}

TEST_F(Rmsnorm, ScalarPathMatchesCpuBackend) {
  checkNorm(33, 1152, false, 1);
  checkNorm(7, 1001, true);
  checkNormAdd(33, 2560, 1);
}

TEST_F(Rmsnorm, FusedResidualAddMatchesCpuBackend) {
  for (int64_t cols : {1152, 2560})
    for (int64_t rows : {1, 7, 33, 257}) checkNormAdd(rows, cols);
}

TEST_F(Rmsnorm, RejectsBadArguments) {
  DeviceArray<float> d(64);
  EXPECT_EQ(rmsnorm1p(d.get(), 1, 0, d.get(), kEps, d.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_EQ(rmsnorm1p(d.get(), -1, 64, d.get(), kEps, d.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_EQ(rmsnorm1pAdd(d.get(), 1, 64, nullptr, kEps, d.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_TRUE(rmsnorm1p(nullptr, 0, 64, nullptr, kEps, nullptr, stream_).ok());  // no-op
}

}  // namespace
}  // namespace kernels::test
