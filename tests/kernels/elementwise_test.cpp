// kernels::geglu and kernels::roundBf16 against the CPU backend (gemma-spec §2.4, §6.1).
//
// Tolerances.
// * roundBf16: integer bit operations on both sides: bit-identical for every input, NaN,
//   infinities, subnormals and ties included.
// * geglu: the GPU spells out the CPU's portable operation order with correctly rounded fp32 ops,
//   so only exp differs (CUDA expf at most 2 fp32 ulps, glibc below 1). That can flip the bf16
//   rounding of gelu (one ulp of gelu, at most 2^-7 relative), which moves gelu * up by at most
//   2 ulps of the output before its own rounding and 3 after: at most 3 bf16 ulps of |ref|, and
//   at least 99.9% bit-identical. The reference is the CPU's portable kernel (std::exp); its
//   AVX2 kernel uses its own exp polynomial and is not the contract.
#include "kernels/elementwise.h"

#include <cmath>
#include <iterator>

#include "tests/kernels/gpu_test_util.h"

namespace kernels::test {
namespace {

class Geglu : public GpuTest {
 protected:
  // gate/up of n values (gate wide enough to cover both tails of gelu and its overflow-free
  // extremes), offset by `offset` floats (1: the scalar path); `alias` writes over gate.
  void check(int64_t n, int offset, bool alias) {
    std::vector<float> gate = randomBf16(size_t(n), rng_, 3.0f);
    const std::vector<float> up = randomBf16(size_t(n), rng_, 2.0f);
    const float specials[] = {0.0f, -0.0f, 30.0f, -30.0f, 1e4f, -1e4f, 1e-30f, -5.5f};
    for (size_t k = 0; k < std::size(specials) && k < gate.size(); ++k)
      gate[k * 131 % gate.size()] = specials[k];
    std::vector<float> want(static_cast<size_t>(n));
    cpu_->geglu(gate.data(), up.data(), n, want.data());

    std::vector<float> g_dev(size_t(offset), 0.0f), u_dev(size_t(offset), 0.0f);
    g_dev.insert(g_dev.end(), gate.begin(), gate.end());
    u_dev.insert(u_dev.end(), up.begin(), up.end());
    DeviceArray<float> d_g(g_dev), d_u(u_dev), d_out(g_dev.size());
    d_out.poison();
    float* out = alias ? d_g.get() + offset : d_out.get() + offset;
    SY_ASSERT_LAUNCH(geglu(d_g.get() + offset, d_u.get() + offset, n, out, stream_));
    sync();
    const std::vector<float> got = alias ? d_g.download() : d_out.download();

    Comparison c(
        "geglu n=" + std::to_string(n) + (alias ? " out=gate" : "") + (offset ? " unaligned" : ""),
        3.0);
    for (size_t i = 0; i < want.size(); ++i) c.add(int64_t(i), got[i + size_t(offset)], want[i]);
    c.check(0.999);
  }
};

TEST_F(Geglu, MatchesCpuBackendOnGemmaShapes) {
  for (int64_t I : {6912, 10240})  // intermediate_size of 1b and 4b
    for (int64_t T : {1, 7, 33, 257}) check(T * I, 0, false);
}

TEST_F(Geglu, InPlaceAndScalarPaths) {
  check(33 * 6912, 0, true);
  check(7 * 10240 + 3, 0, false);  // a tail after the float4 body
  check(7 * 6912, 1, true);        // unaligned
}

TEST_F(Geglu, RejectsBadArguments) {
  EXPECT_EQ(geglu(nullptr, nullptr, 4, nullptr, stream_).code, Status::kInvalidArgument);
  EXPECT_EQ(geglu(nullptr, nullptr, -1, nullptr, stream_).code, Status::kInvalidArgument);
  EXPECT_TRUE(geglu(nullptr, nullptr, 0, nullptr, stream_).ok());
}

class RoundBf16 : public GpuTest {
 protected:
  void check(std::vector<float> x, int offset, const std::string& name) {
    std::vector<float> want = x;
    cpu_->roundBf16(want.data(), int64_t(want.size()));
    x.insert(x.begin(), size_t(offset), 0.0f);
    DeviceArray<float> d_x(x);
    SY_ASSERT_LAUNCH(roundBf16(d_x.get() + offset, int64_t(want.size()), stream_));
    sync();
    const std::vector<float> got = d_x.download();
    Comparison c(name, 0.0);
    for (size_t i = 0; i < want.size(); ++i) c.add(int64_t(i), got[i + size_t(offset)], want[i]);
    c.check(1.0);
  }
};

TEST_F(RoundBf16, MatchesCpuOnRandomBitPatterns) {
  // Every kind of float: uniform random bits cover NaNs (with payloads), infinities,
  // subnormals and all exponents.
  std::uniform_int_distribution<uint32_t> bits;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{257} * 1152}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) {
      const uint32_t u = bits(rng_);
      std::memcpy(&v, &u, sizeof v);
    }
    check(x, 0, "roundBf16 random bits n=" + std::to_string(n));
  }
}

TEST_F(RoundBf16, MatchesCpuOnTiesAndSpecials) {
  std::vector<float> x;
  const uint32_t specials[] = {0x3f808000u,  // 1 + 2^-8: a tie, rounds down to even (1.0)
                               0x3f818000u,  // a tie that rounds up to even
                               0x3f80ffffu, 0x7f7fffffu /* rounds to +inf */,
                               0xff7fffffu, 0x7f800000u,
                               0xff800000u, 0x7f800001u /* signalling NaN -> quiet */,
                               0xffc00000u, 0x00000001u,
                               0x80008000u, 0x00000000u,
                               0x80000000u};
  for (int rep = 0; rep < 37; ++rep)
    for (uint32_t u : specials) {
      float v;
      std::memcpy(&v, &u, sizeof v);
      x.push_back(v);
    }
  check(x, 0, "roundBf16 ties/specials");
  check(x, 1, "roundBf16 ties/specials unaligned");
}

TEST_F(RoundBf16, RejectsBadArguments) {
  EXPECT_EQ(roundBf16(nullptr, 3, stream_).code, Status::kInvalidArgument);
  EXPECT_TRUE(roundBf16(nullptr, 0, stream_).ok());
}

}  // namespace
}  // namespace kernels::test
