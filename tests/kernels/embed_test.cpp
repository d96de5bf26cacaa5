// kernels::embedBf16 against CpuBackend::embed (gemma-spec §2.1).
//
// Tolerance: none. Each output is one fp32 product of two bf16 values (exact in fp32: 8-bit
// significands) rounded once to bf16, the same single operation on both sides, so the results
// must be bit-identical, specials (zeros, subnormals, overflow to infinity) included.
#include "kernels/embed.h"

#include <cmath>
#include <iterator>

#include "tests/kernels/gpu_test_util.h"

namespace kernels::test {
namespace {

class EmbedBf16 : public GpuTest {
 protected:
  // Embeds n random ids from a [rows, cols] table on both backends and compares; `offset`
  // shifts the output by that many floats to exercise the scalar (unaligned) path.
  void compare(int64_t rows, int64_t cols, int n, int offset) {
    std::vector<uint16_t> table = randomBf16Bits(size_t(rows * cols), rng_, 0.05f);
    // A few specials in the table: signed zeros, a subnormal, the largest finite bf16 (times the
    // scale it overflows to infinity on both sides), an infinity.
    const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x7f7f, 0xff7f, 0x7f80};
    for (size_t k = 0; k < std::size(specials); ++k) table[k * 97 % table.size()] = specials[k];
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::uniform_int_distribution<int32_t> pick(0, int32_t(rows - 1));
    for (auto& id : ids) id = pick(rng_);
    ids[0] = 0;  // the rows holding the specials, and the last row
    if (n > 1) ids[size_t(n - 1)] = int32_t(rows - 1);
    const float scale = embedScale(cols);

    std::vector<float> want(size_t(n) * cols);
    engine::WeightRef w{table.data(), engine::DType::kBF16, rows, cols};
    cpu_->embed(ids.data(), n, w, scale, want.data());

    DeviceArray<uint16_t> d_table(table);
    DeviceArray<int32_t> d_ids(ids);
    DeviceArray<float> d_out(size_t(n) * cols + size_t(offset));
    d_out.poison();
    SY_ASSERT_LAUNCH(
        embedBf16(d_ids.get(), n, d_table.get(), rows, cols, scale, d_out.get() + offset, stream_));
    sync();
    const std::vector<float> got = d_out.download();

    Comparison c("embedBf16 H=" + std::to_string(cols) + " n=" + std::to_string(n) +
                     (offset ? " unaligned" : ""),
                 0.0);
    for (size_t i = 0; i < want.size(); ++i) c.add(int64_t(i), got[i + size_t(offset)], want[i]);
    c.check(1.0);
  }
};

TEST_F(EmbedBf16, ScaleIsBf16OfSqrtHidden) {
  // gemma-spec §6.2, and the engine's own formula (model_config.cpp).
  EXPECT_EQ(embedScale(640), 25.25f);
  EXPECT_EQ(embedScale(1152), 34.0f);
  EXPECT_EQ(embedScale(2560), 50.5f);
  EXPECT_EQ(embedScale(3840), 62.0f);
  EXPECT_EQ(embedScale(5376), 73.5f);
  for (int64_t h = 1; h <= 8192; ++h)
    ASSERT_EQ(embedScale(h), engine::roundBf16(static_cast<float>(std::sqrt(double(h))))) << h;
}

TEST_F(EmbedBf16, MatchesCpuBackendOnGemmaShapes) {
  for (int64_t cols : {1152, 2560})
    for (int n : {1, 7, 33, 257}) compare(4099, cols, n, 0);
}

TEST_F(EmbedBf16, ScalarPathMatchesCpuBackend) {
  compare(513, 1152, 33, 1);  // output not 16-byte aligned
  compare(513, 1001, 7, 0);   // cols not a multiple of 8
}

TEST_F(EmbedBf16, OutOfRangeIdGivesNanRowWithoutReadingOutOfBounds) {
  const int64_t rows = 16, cols = 1152;
  DeviceArray<uint16_t> d_table(randomBf16Bits(size_t(rows * cols), rng_, 1.0f));
  DeviceArray<int32_t> d_ids(std::vector<int32_t>{3, -1, int32_t(rows), 5});
  DeviceArray<float> d_out(size_t(4 * cols));
  SY_ASSERT_LAUNCH(
      embedBf16(d_ids.get(), 4, d_table.get(), rows, cols, 34.0f, d_out.get(), stream_));
  sync();
  const std::vector<float> got = d_out.download();
  for (int64_t j = 0; j < cols; ++j) {
    ASSERT_FALSE(std::isnan(got[size_t(j)]));
    ASSERT_TRUE(std::isnan(got[size_t(cols + j)]));
    ASSERT_TRUE(std::isnan(got[size_t(2 * cols + j)]));
    ASSERT_FALSE(std::isnan(got[size_t(3 * cols + j)]));
  }
}

TEST_F(EmbedBf16, RejectsBadArguments) {
  DeviceArray<float> d_out(8);
  EXPECT_EQ(embedBf16(nullptr, 1, nullptr, 1, 8, 1.0f, d_out.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_EQ(embedBf16(nullptr, -1, nullptr, 1, 8, 1.0f, d_out.get(), stream_).code,
            Status::kInvalidArgument);
  EXPECT_TRUE(embedBf16(nullptr, 0, nullptr, 1, 8, 1.0f, nullptr, stream_).ok());  // no-op
}

}  // namespace
}  // namespace kernels::test
