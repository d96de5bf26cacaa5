// Block formats (engine/quant/quant.h) against values worked out by hand from ggml's published
// layouts (ggml-common.h), and the SIMD dot kernels (engine/cpu/quant_kernels.h) against the
// portable definition, bit for bit.
#include "engine/quant/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/bf16.h"
#include "engine/cpu/quant_kernels.h"

namespace engine::quant {
namespace {

std::vector<float> randomRow(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = dist(rng);
  return x;
}

TEST(QuantF16, RoundTripsEveryFiniteHalfAndRoundsTiesToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf / NaN
    ASSERT_EQ(floatToF16(f16ToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  // 1 + 2^-11 lies halfway between 1 (0x3c00, even) and 1 + 2^-10 (0x3c01): ties to even.
  EXPECT_EQ(floatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(floatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(floatToF16(65520.0f), 0x7c00);                // halfway to 2^16 rounds up to inf
  EXPECT_EQ(floatToF16(-std::ldexp(1.0f, -25)), 0x8000);  // tie between 0 and the least subnormal
  EXPECT_EQ(floatToF16(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 subnormal steps: ties to 2
}

TEST(QuantNearestInt, RoundsHalfToEven) {
  EXPECT_EQ(nearestInt(0.5f), 0);
  EXPECT_EQ(nearestInt(1.5f), 2);
  EXPECT_EQ(nearestInt(-2.5f), -2);
  EXPECT_EQ(nearestInt(-2.6f), -3);
  EXPECT_EQ(nearestInt(31.49f), 31);
}

TEST(QuantQ8_0, BlockBytesMatchTheLayout) {
  // x = -16 .. 15: amax 16, d = 16/127 = 0.12598..., whose nearest fp16 is 0x3008
  // ((1 + 8/1024) * 2^-3); q = roundf(x * 127/16), away from zero on ties.
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16);
  BlockQ8_0 b;
  quantizeRow(QType::kQ8_0, x, &b, 32);
  unsigned char raw[34];
  std::memcpy(raw, &b, 34);
  EXPECT_EQ(raw[0], 0x08);
  EXPECT_EQ(raw[1], 0x30);
  EXPECT_EQ(static_cast<int8_t>(raw[2]), -127);      // x = -16
  EXPECT_EQ(static_cast<int8_t>(raw[2 + 17]), 8);    // x = 1: 7.9375 -> 8
  EXPECT_EQ(static_cast<int8_t>(raw[2 + 20]), 32);   // x = 4: 31.75 -> 32
  EXPECT_EQ(static_cast<int8_t>(raw[2 + 31]), 119);  // x = 15: 119.0625 -> 119
  float y[32];
  dequantizeRow(QType::kQ8_0, &b, y, 32);
  EXPECT_EQ(y[0], -127 * 0.1259765625f);
  EXPECT_EQ(y[17], 8 * 0.1259765625f);
}

TEST(QuantQ4_0, BlockBytesMatchTheLayout) {
  // The value of largest magnitude is -8, so d = -8 / -8 = 1 (fp16 0x3c00) and q = trunc(x + 8.5):
  // x = j - 8 (j < 16) gives q = j in the low nibbles, x = 7 - j (value j + 16) gives 15 - j high.
  float x[32];
  for (int j = 0; j < 16; ++j) {
    x[j] = static_cast<float>(j - 8);
    x[16 + j] = static_cast<float>(7 - j);
  }
  BlockQ4_0 b;
  quantizeRow(QType::kQ4_0, x, &b, 32);
  unsigned char raw[18];
  std::memcpy(raw, &b, 18);
  EXPECT_EQ(raw[0], 0x00);
  EXPECT_EQ(raw[1], 0x3c);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(raw[2 + j], j | ((15 - j) << 4)) << j;
  float y[32];
  dequantizeRow(QType::kQ4_0, &b, y, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], x[i]) << i;
}

// Q5_0: d, then qh (a little-endian uint32 whose bit i is bit 4 of value i), then 16 bytes whose
// low nibble is value j and high nibble value j + 16; values are q - 16. The value of largest
// magnitude is -16, so d = 1 (fp16 0x3c00) and q = trunc(x + 16.5) = x + 16.
TEST(QuantQ5_0, BlockBytesMatchTheLayout) {
  const int q[32] = {3, 10, 17, 24, 31, 6, 13, 20, 27, 2,  9,  16, 23, 30, 5,  12,
                     0, 21, 8,  29, 14, 1, 26, 19, 4,  11, 31, 18, 7,  28, 15, 22};
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(q[i] - 16);
  BlockQ5_0 b;
  quantizeRow(QType::kQ5_0, x, &b, 32);
  unsigned char raw[22];
  std::memcpy(raw, &b, 22);
  // qh: values >= 16 at 2,3,4,7 | 8,11,12,13 | 17,19,22,23 | 26,27,29,31.
  const unsigned char want[22] = {0x00, 0x3c, 0x9c, 0x39, 0xca, 0xac, 0x03, 0x5a, 0x81, 0xd8, 0xef,
                                  0x16, 0xad, 0x34, 0x4b, 0xb2, 0xf9, 0x20, 0x77, 0xce, 0xf5, 0x6c};
  for (int i = 0; i < 22; ++i) EXPECT_EQ(raw[i], want[i]) << i;
  float y[32];
  dequantizeRow(QType::kQ5_0, &b, y, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], x[i]) << i;
}

TEST(QuantQ5_0, APositiveMaximumGivesANegativeScaleAndTheTopIsCappedAt31) {
  // max = 8: d = 8 / -16 = -0.5 (fp16 0xb800), 1/d = -2, q = min(31, trunc(-2x + 16.5)):
  // 8 -> 0, -8 -> 32.5 -> 31 (the cap), 1.3 -> 13.9 -> 13, -1.3 -> 19, 0.24 -> 16, -0.26 -> 17,
  // 7.7 -> 1, and 0 -> 16 for the other 25.
  float x[32] = {8.0f, -8.0f, 1.3f, -1.3f, 0.0f, 0.24f, -0.26f, 7.7f};
  BlockQ5_0 b;
  quantizeRow(QType::kQ5_0, x, &b, 32);
  unsigned char raw[22];
  std::memcpy(raw, &b, 22);
  EXPECT_EQ(raw[0], 0x00);
  EXPECT_EQ(raw[1], 0xb8);
  EXPECT_EQ(raw[2], 0x7a);  // bit 4 of values 1, 3, 4, 5, 6 (values 0, 2 and 7 are below 16)
  EXPECT_EQ(raw[3], 0xff);
  EXPECT_EQ(raw[4], 0xff);
  EXPECT_EQ(raw[5], 0xff);
  const unsigned char qs[8] = {0x00, 0x0f, 0x0d, 0x03, 0x00, 0x00, 0x01, 0x01};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(raw[6 + j], qs[j]) << j;
  for (int j = 8; j < 16; ++j) EXPECT_EQ(raw[6 + j], 0x00) << j;
  float y[32];
  dequantizeRow(QType::kQ5_0, &b, y, 32);
  const float want[8] = {8.0f, -7.5f, 1.5f, -1.5f, 0.0f, 0.0f, -0.5f, 7.5f};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(y[i], want[i]) << i;
  for (int i = 8; i < 32; ++i) EXPECT_EQ(y[i], 0.0f) << i;
}

TEST(QuantQ5_0, DequantizesAHandBuiltBlock) {
  // Every 5-bit value in some position, the high bits in all four qh bytes, d = 0.25.
  int q[32];
  for (int i = 0; i < 32; ++i) q[i] = (i * 13 + 7) % 32;
  unsigned char raw[22] = {0x00, 0x34};
  uint32_t qh = 0;
  for (int i = 0; i < 32; ++i) qh |= static_cast<uint32_t>(q[i] >> 4) << i;
  for (int k = 0; k < 4; ++k) raw[2 + k] = static_cast<unsigned char>(qh >> (8 * k));
  for (int j = 0; j < 16; ++j)
    raw[6 + j] = static_cast<unsigned char>((q[j] & 15) | ((q[j + 16] & 15) << 4));
  float y[32];
  dequantizeRow(QType::kQ5_0, raw, y, 32);
  for (int i = 0; i < 32; ++i) ASSERT_EQ(y[i], 0.25f * (q[i] - 16)) << i;
}

TEST(QuantQ5_0, TypeIdsNamesAndTheQ4_KFallback) {
  EXPECT_EQ(ggmlType(QType::kQ5_0), 6);
  EXPECT_EQ(fromGgmlType(6), QType::kQ5_0);
  EXPECT_EQ(parseQType("q5_0"), QType::kQ5_0);
  EXPECT_EQ(qtypeOf(DType::kQ5_0), QType::kQ5_0);
  EXPECT_EQ(dtypeOf(QType::kQ5_0), DType::kQ5_0);
  EXPECT_EQ(blockBytes(QType::kQ5_0), 22u);
  EXPECT_EQ(rowBytes(QType::kQ5_0, 1152), 36u * 22);
  EXPECT_EQ(activationType(QType::kQ5_0), QType::kQ8_0);
  // llama.cpp's tensor_type_fallback: Q4_K -> Q5_0 for rows that are not whole 256-blocks.
  EXPECT_EQ(formatForColumns(QType::kQ4_K, 1152), QType::kQ5_0);
  EXPECT_EQ(formatForColumns(QType::kQ4_K, 1024), QType::kQ4_K);
  EXPECT_EQ(formatForColumns(QType::kQ6_K, 1152), QType::kQ8_0);
  EXPECT_EQ(formatForColumns(QType::kQ5_0, 1152), QType::kQ5_0);
  EXPECT_EQ(formatForColumns(QType::kQ5_0, 40), std::nullopt);
}

// A Q4_K block assembled byte by byte from the layout: d, dmin, then 12 scale bytes holding eight
// 6-bit (scale, min) pairs (pairs 0-3 in the low 6 bits of bytes 0-3 / 4-7; pairs 4-7 with their
// low 4 bits in bytes 8-11 and their top 2 bits in bits 6-7 of bytes 0-3 / 4-7), then 128 bytes
// of nibbles: per 64 values, byte l holds value l (low) and value l + 32 (high).
TEST(QuantQ4_K, DequantizesAHandBuiltBlock) {
  const int sc[8] = {1, 2, 3, 4, 40, 50, 60, 63};
  const int mn[8] = {0, 5, 10, 15, 20, 33, 47, 62};
  unsigned char raw[144] = {};
  raw[0] = 0x00, raw[1] = 0x3c;  // d = 1
  raw[2] = 0x00, raw[3] = 0x38;  // dmin = 0.5
  unsigned char* s = raw + 4;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<unsigned char>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<unsigned char>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<unsigned char>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
  unsigned char* qs = raw + 16;
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = static_cast<unsigned char>(((l + c) % 16) | (((l * 3 + c) % 16) << 4));
  float y[256];
  dequantizeRow(QType::kQ4_K, raw, y, 256);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32, c = i / 64, l = i % 32;
    const int q = (j % 2 == 0) ? (l + c) % 16 : (l * 3 + c) % 16;
    ASSERT_EQ(y[i], 1.0f * sc[j] * q - 0.5f * mn[j]) << i;
  }
}

// Q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, d. Per 128 values: ql byte l = value l (low
// nibble) and value l + 64 (high); ql byte l + 32 = values l + 32 and l + 96; qh byte l = the top
// two bits of values l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. Values are q - 32.
TEST(QuantQ6_K, DequantizesAHandBuiltBlock) {
  int q[256];
  for (int i = 0; i < 256; ++i) q[i] = (i * 7 + 3) % 64;
  unsigned char raw[210] = {};
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int* v = q + 128 * h;
      raw[64 * h + l] = static_cast<unsigned char>((v[l] & 15) | ((v[l + 64] & 15) << 4));
      raw[64 * h + l + 32] = static_cast<unsigned char>((v[l + 32] & 15) | ((v[l + 96] & 15) << 4));
      raw[128 + 32 * h + l] =
          static_cast<unsigned char>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) |
                                     ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
    }
  for (int g = 0; g < 16; ++g)
    raw[192 + g] = static_cast<unsigned char>(static_cast<int8_t>(g * 9 - 70));
  raw[208] = 0x00, raw[209] = 0x34;  // d = 0.25
  float y[256];
  dequantizeRow(QType::kQ6_K, raw, y, 256);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], 0.25f * ((i / 16) * 9 - 70) * (q[i] - 32)) << i;
}

TEST(QuantQ6_K, QuantizesWithTheLargestScaleAtMinus128) {
  std::vector<float> x = randomRow(256, 7);
  BlockQ6_K b;
  quantizeRow(QType::kQ6_K, x.data(), &b, 256);
  // ggml: iscale = -128 / max_scale, so the group with the largest |scale| stores -128 (clamped
  // to 127 only on the positive side).
  int most = 0;
  for (int g = 0; g < 16; ++g) most = std::max(most, std::abs(static_cast<int>(b.scales[g])));
  EXPECT_EQ(most, 128);
}

struct RoundTripCase {
  QType t;
  double max_rel_rms;  // RMS error / RMS value bound for unit-normal data
};

TEST(QuantRoundTrip, ErrorWithinEachFormatsResolution) {
  for (const RoundTripCase c : {RoundTripCase{QType::kQ8_0, 0.01},
                                {QType::kQ5_0, 0.08},
                                {QType::kQ4_0, 0.15},
                                {QType::kQ4_K, 0.12},
                                {QType::kQ6_K, 0.03}}) {
    const int64_t n = 256 * 8;
    std::vector<float> x = randomRow(n, 11);
    std::vector<unsigned char> q(rowBytes(c.t, n));
    quantizeRow(c.t, x.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    dequantizeRow(c.t, q.data(), y.data(), n);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += (x[size_t(i)] - y[size_t(i)]) * (x[size_t(i)] - y[size_t(i)]);
      ref += x[size_t(i)] * x[size_t(i)];
    }
    EXPECT_LT(std::sqrt(err / ref), c.max_rel_rms) << qtypeName(c.t);
    EXPECT_GT(std::sqrt(err / ref), 0.0) << qtypeName(c.t);
  }
}

TEST(QuantRoundTrip, Q8_0ErrorAtMostHalfAStep) {
  std::vector<float> x = randomRow(32 * 16, 3);
  std::vector<BlockQ8_0> q(16);
  quantizeRow(QType::kQ8_0, x.data(), q.data(), 32 * 16);
  std::vector<float> y(32 * 16);
  dequantizeRow(QType::kQ8_0, q.data(), y.data(), 32 * 16);
  for (int i = 0; i < 32 * 16; ++i) {
    const float d = f16ToFloat(q[size_t(i / 32)].d);
    // Half a step, plus what rounding d to fp16 moves the largest value (127 * d * 2^-11).
    EXPECT_LE(std::fabs(x[size_t(i)] - y[size_t(i)]), 0.5f * d + 127 * d * 0x1p-11f) << i;
  }
}

TEST(QuantActivations, Q8_KStoresGgmlsScaleAndGroupSums) {
  std::vector<float> x = randomRow(512, 5);
  std::vector<unsigned char> mem(actRowBytes(QType::kQ8_K, 512) + 64);
  void* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
  const ActRow a = quantizeActivations(QType::kQ8_K, x.data(), 512, p);
  for (int b = 0; b < 2; ++b) {
    float amax = 0, max = 0;
    for (int i = 0; i < 256; ++i)
      if (std::fabs(x[size_t(256 * b + i)]) > amax) amax = std::fabs(max = x[size_t(256 * b + i)]);
    EXPECT_EQ(a.d[b], 1 / (-127.0f / max));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += a.qs[256 * b + 16 * g + i];
      EXPECT_EQ(a.sums[16 * b + g], s);
    }
  }
}

class QuantDot : public ::testing::TestWithParam<QType> {};

TEST_P(QuantDot, KernelsMatchPortableBitForBitAndApproximateTheFloatDot) {
  const QType t = GetParam();
  const QType at = activationType(t);
  // Block counts that leave every tail after the groups of 8 (1-7 blocks), and none.
  for (const int64_t blocks : {37, 8, 1, 10, 12, 14, 15, 11}) {
    const int64_t n = int64_t{blockValues(t)} * blocks;
    std::vector<float> w = randomRow(n, 21, 0.05f), x = randomRow(n, 22, 3.0f);
    std::vector<unsigned char> wq(rowBytes(t, n));
    quantizeRow(t, w.data(), wq.data(), n);
    std::vector<unsigned char> mem(actRowBytes(at, n) + 64);
    void* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
    const ActRow a = quantizeActivations(at, x.data(), n, p);
    const float ref = dotRow(t, wq.data(), a, n);
    for (cpu::Isa isa : {cpu::Isa::kPortable, cpu::Isa::kAvx2, cpu::Isa::kAvx512Bf16}) {
      const cpu::QuantKernels& k = cpu::selectQuantKernels(isa);
      EXPECT_EQ(k.dot(t, wq.data(), a, n), ref) << k.name << " " << qtypeName(t) << " n=" << n;
    }
    // Against fp64 over the dequantized values on both sides: only fp32 rounding remains.
    std::vector<float> wd(static_cast<size_t>(n));
    dequantizeRow(t, wq.data(), wd.data(), n);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b = i / blockValues(at);
      const double xv = double(a.qs[i]) * a.d[b];
      exact += double(wd[size_t(i)]) * xv;
      mag += std::fabs(double(wd[size_t(i)]) * xv);
    }
    EXPECT_NEAR(ref, exact, 1e-5 * mag + 1e-6) << qtypeName(t) << " n=" << n;
  }
}

TEST_P(QuantDot, TokenGroupsMatchPortableBitForBit) {
  // dotTokens() and matmulTokens() over 1..9 tokens (whole groups of kQuantTokenGroup and every
  // remainder) and an odd number of weight rows: each (row, token) equals dotRow() exactly, on
  // every ISA. The block counts include odd ones (37, 11, 1: a last block pair of one block).
  const QType t = GetParam();
  const QType at = activationType(t);
  constexpr int kRows = 5, kTokens = 9;
  for (const int64_t blocks : {37, 8, 1, 10, 12, 14, 15, 11}) {  // every tail after groups of 8
    const int64_t n = int64_t{blockValues(t)} * blocks;
    const size_t rb = rowBytes(t, n), ab = actRowBytes(at, n);
    std::vector<unsigned char> wq(rb * kRows);
    for (int r = 0; r < kRows; ++r) {
      std::vector<float> w = randomRow(n, 100 + uint32_t(r), 0.05f);
      quantizeRow(t, w.data(), wq.data() + rb * size_t(r), n);
    }
    std::vector<unsigned char> mem(ab * kTokens + 64);
    unsigned char* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
    ActRow a[kTokens];
    for (int i = 0; i < kTokens; ++i) {
      std::vector<float> x = randomRow(n, 200 + uint32_t(i), 1.0f + float(i));
      a[i] = quantizeActivations(at, x.data(), n, p + ab * size_t(i));
    }
    for (cpu::Isa isa : {cpu::Isa::kPortable, cpu::Isa::kAvx2, cpu::Isa::kAvx512Bf16}) {
      const cpu::QuantKernels& k = cpu::selectQuantKernels(isa);
      for (int r = 0; r < kRows; ++r) {
        const void* row = wq.data() + rb * size_t(r);
        for (int nt = 1; nt <= kTokens; ++nt) {
          float y[kTokens + 1];
          y[nt] = -1.0f;  // past the last token: must stay untouched
          k.dotTokens(t, row, a, nt, n, y);
          for (int i = 0; i < nt; ++i)
            ASSERT_EQ(y[i], dotRow(t, row, a[i], n))
                << k.name << " " << qtypeName(t) << " n=" << n << " r=" << r << " nt=" << nt
                << " token " << i;
          ASSERT_EQ(y[nt], -1.0f) << k.name << " nt=" << nt;
        }
      }
      // The same through matmulTokens: all rows at once, into a wider output (ldy > rows).
      constexpr int64_t kLdy = kRows + 2;
      for (int nt = 1; nt <= kTokens; ++nt) {
        std::vector<float> y(static_cast<size_t>(kLdy * kTokens), -1.0f);
        k.matmulTokens(t, wq.data(), rb, kRows, a, nt, n, y.data(), kLdy);
        for (int i = 0; i < kTokens; ++i)
          for (int64_t r = 0; r < kLdy; ++r) {
            const float want =
                i < nt && r < kRows ? dotRow(t, wq.data() + rb * size_t(r), a[i], n) : -1.0f;
            ASSERT_EQ(y[size_t(i * kLdy + r)], want)
                << k.name << " " << qtypeName(t) << " n=" << n << " nt=" << nt << " token " << i
                << " row " << r;
          }
      }
    }
  }
}

TEST_P(QuantDot, ManyTokensInOneCallMatchPortable) {
  // More tokens than one pass packs at a time (256), ending in a lone token.
  const QType t = GetParam();
  const QType at = activationType(t);
  const int64_t n = blockValues(t) * 3;
  constexpr int kRows = 3, kTokens = 261;
  const size_t rb = rowBytes(t, n), ab = actRowBytes(at, n);
  std::vector<unsigned char> wq(rb * kRows);
  for (int r = 0; r < kRows; ++r) {
    std::vector<float> w = randomRow(n, 300 + uint32_t(r), 0.05f);
    quantizeRow(t, w.data(), wq.data() + rb * size_t(r), n);
  }
  std::vector<unsigned char> mem(ab * kTokens + 64);
  unsigned char* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
  std::vector<ActRow> a(kTokens);
  for (int i = 0; i < kTokens; ++i) {
    std::vector<float> x = randomRow(n, 400 + uint32_t(i), 2.0f);
    a[size_t(i)] = quantizeActivations(at, x.data(), n, p + ab * size_t(i));
  }
  for (cpu::Isa isa : {cpu::Isa::kPortable, cpu::Isa::kAvx2, cpu::Isa::kAvx512Bf16}) {
    const cpu::QuantKernels& k = cpu::selectQuantKernels(isa);
    std::vector<float> y(size_t(kRows) * kTokens);
    k.matmulTokens(t, wq.data(), rb, kRows, a.data(), kTokens, n, y.data(), kRows);
    for (int i = 0; i < kTokens; ++i)
      for (int r = 0; r < kRows; ++r)
        ASSERT_EQ(y[size_t(i * kRows + r)], dotRow(t, wq.data() + rb * size_t(r), a[size_t(i)], n))
            << k.name << " " << qtypeName(t) << " token " << i << " row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantDot,
                         ::testing::Values(QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K,
                                           QType::kQ6_K),
                         [](const auto& info) { return std::string(qtypeName(info.param)); });

TEST(QuantDot, ExtremeActivationsDoNotSaturate) {
  // Activations at +-127 and weights at the ends of their ranges: the int8 products must not
  // saturate in the 16-bit pair sums of VPMADDUBSW.
  const int64_t n = 256 * 9;
  std::vector<float> w(static_cast<size_t>(n)), x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    w[size_t(i)] = (i % 3 == 0) ? -1.0f : 1.0f;
    x[size_t(i)] = (i % 2 == 0) ? -1.0f : 1.0f;
  }
  for (QType t : {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K}) {
    std::vector<unsigned char> wq(rowBytes(t, n));
    quantizeRow(t, w.data(), wq.data(), n);
    const QType at = activationType(t);
    std::vector<unsigned char> mem(actRowBytes(at, n) + 64);
    void* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
    const ActRow a = quantizeActivations(at, x.data(), n, p);
    const float ref = dotRow(t, wq.data(), a, n);
    const ActRow four[4] = {a, a, a, a};
    for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvx512Bf16}) {
      EXPECT_EQ(cpu::selectQuantKernels(isa).dot(t, wq.data(), a, n), ref) << qtypeName(t);
      float y[4];
      cpu::selectQuantKernels(isa).dotTokens(t, wq.data(), four, 4, n, y);
      for (float v : y) EXPECT_EQ(v, ref) << qtypeName(t);
    }
  }
}

}  // namespace
}  // namespace engine::quant
