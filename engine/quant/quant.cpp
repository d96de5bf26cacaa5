#include "engine/quant/quant.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "engine/bf16.h"

namespace engine::quant {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: a group below it is all zero

float h2f(uint16_t h) { return f16ToFloat(h); }

// ---- Q8_0 / Q5_0 / Q4_0 -------------------------------------------------------------------------

void quantizeQ8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    float amax = 0;
    for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = floatToF16(d);
    for (int i = 0; i < kQK; ++i) y[b].qs[i] = static_cast<int8_t>(std::round(x[i] * id));
  }
}

// The value of a 32-value block with the largest magnitude, with its sign (the first of equals).
float largestMagnitude(const float* x) {
  float amax = 0, max = 0;
  for (int i = 0; i < kQK; ++i) {
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

void quantizeQ4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    // The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used.
    const float d = largestMagnitude(x) / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = floatToF16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      // Truncation of v + 8.5 toward zero, as ggml's (int8_t) cast, capped at 15.
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantizeQ5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    // As Q4_0, with 5 bits: the signed value of largest magnitude maps to -16, the range is
    // [-16, 15].
    const float d = largestMagnitude(x) / -16.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = floatToF16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      // Truncation of v + 16.5 toward zero, as ggml's (int8_t) cast, capped at 31.
      const auto lo = static_cast<uint8_t>(
          std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
      const auto hi = static_cast<uint8_t>(
          std::min(31, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 16.5f))));
      y[b].qs[j] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      qh |= static_cast<uint32_t>((lo & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((hi & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(y[b].qh, &qh, sizeof qh);
  }
}

// The 5-bit value (0..31) of element i (0..31) of a Q5_0 block whose qh reads as `qh`.
inline int q5At(const BlockQ5_0& k, uint32_t qh, int i) {
  const int nib = i < 16 ? (k.qs[i] & 0xF) : (k.qs[i - 16] >> 4);
  return nib | static_cast<int>(((qh >> i) & 1u) << 4);
}

inline uint32_t q5High(const BlockQ5_0& k) {
  uint32_t qh;
  std::memcpy(&qh, k.qh, sizeof qh);
  return qh;
}

// ---- Q4_K -------------------------------------------------------------------------------------

// Weighted least-squares fit of x ≈ scale * L + min over L in [0, nmax] with min <= 0, searching
// nstep + 1 candidate inverse scales around nmax / (max - min) (ggml's make_qkx2_quants, squared
// error). Returns the scale and stores -min.
float fitScaleMin(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min,
                  float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, 0);
    *neg_min = -min;
    return 0;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearestInt(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best += w[i] * (diff * diff);
  }
  uint8_t Laux[kQKK];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearestInt(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * Laux[i] + this_min - x[i];
      err += w[i] * (diff * diff);
    }
    if (err < best) {
      std::copy(Laux, Laux + n, L);
      best = err;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

void quantizeQ4_K(const float* x, BlockQ4_K* y, int64_t nb) {
  uint8_t L[kQKK];
  float w[32], scales[8], mins[8];
  for (int64_t b = 0; b < nb; ++b, x += kQKK) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
      scales[j] = fitScaleMin(32, 15, xs, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    BlockQ4_K& o = y[b];
    std::memset(o.scales, 0, sizeof o.scales);
    for (int j = 0; j < 8; ++j) {
      const int ls =
          std::min(63, static_cast<int>(static_cast<uint8_t>(nearestInt(inv_scale * scales[j]))));
      const int lm =
          std::min(63, static_cast<int>(static_cast<uint8_t>(nearestInt(inv_min * mins[j]))));
      if (j < 4) {
        o.scales[j] = static_cast<uint8_t>(ls);
        o.scales[j + 4] = static_cast<uint8_t>(lm);
      } else {  // low 4 bits in bytes 8..11, the top 2 in bits 6-7 of bytes 0..7
        o.scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        o.scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        o.scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    o.d = floatToF16(max_scale / 63.0f);
    o.dmin = floatToF16(max_min / 63.0f);
    // Requantize against the stored (rounded) scales.
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scaleMinK4(j, o.scales, &sc, &m);
      const float d = h2f(o.d) * sc;
      if (d == 0) continue;
      const float dm = h2f(o.dmin) * m;
      for (int i = 0; i < 32; ++i)
        L[32 * j + i] =
            static_cast<uint8_t>(std::clamp(nearestInt((x[32 * j + i] + dm) / d), 0, 15));
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        o.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

// ---- Q6_K -------------------------------------------------------------------------------------

// Symmetric fit x ≈ scale * l, l in [-nmax, nmax - 1], weighted by x² (ggml's make_qx_quants with
// rmse_type 1): the plain max-based scale and 18 nearby ones, keeping the best least-squares one.
// Stores l + nmax in L.
float fitScaleSym(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(nmax + std::clamp(nearestInt(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

void quantizeQ6_K(const float* x, BlockQ6_K* y, int64_t nb) {
  int8_t L[kQKK];
  float scales[16];
  for (int64_t b = 0; b < nb; ++b, x += kQKK) {
    float max_scale = 0, max_abs = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = fitScaleSym(16, 32, x + 16 * g, L + 16 * g);
      if (std::fabs(scales[g]) > max_abs) {
        max_abs = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    BlockQ6_K& o = y[b];
    if (max_abs < kGroupMaxEps) {
      std::memset(&o, 0, sizeof o);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    o.d = floatToF16(1 / iscale);
    for (int g = 0; g < 16; ++g)
      o.scales[g] = static_cast<int8_t>(std::min(127, nearestInt(iscale * scales[g])));
    for (int g = 0; g < 16; ++g) {
      const float d = h2f(o.d) * o.scales[g];
      if (d == 0) continue;
      for (int i = 0; i < 16; ++i)
        L[16 * g + i] =
            static_cast<int8_t>(std::clamp(nearestInt(x[16 * g + i] / d), -32, 31) + 32);
    }
    // Per 128 values: ql bytes l and l+32 carry values (l, l+64) and (l+32, l+96) in their
    // nibbles; qh byte l carries the top 2 bits of l, l+32, l+64, l+96.
    for (int h = 0; h < 2; ++h) {
      const int8_t* Lh = L + 128 * h;
      uint8_t* ql = o.ql + 64 * h;
      uint8_t* qh = o.qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                     ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

// The 6-bit value (0..63) of element i (0..255) of a Q6_K block.
inline int q6At(const BlockQ6_K& b, int i) {
  const int h = i / 128, r = i % 128, l = r % 32, part = r / 32;  // part: 0..3 = +0,+32,+64,+96
  const uint8_t lo = b.ql[64 * h + l + (part & 1) * 32];
  const int low = (part < 2) ? (lo & 0xF) : (lo >> 4);
  const int high = (b.qh[32 * h + l] >> (2 * part)) & 3;
  return low | (high << 4);
}

// ---- Q8_K (activations) -----------------------------------------------------------------------

void quantizeQ8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += kQKK) {
    float amax = 0, max = 0;
    for (int i = 0; i < kQKK; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    if (amax == 0) {
      std::memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int i = 0; i < kQKK; ++i)
      y[b].qs[i] = static_cast<int8_t>(std::min(127, nearestInt(iscale * x[i])));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[16 * g + i];
      y[b].bsums[g] = static_cast<int16_t>(s);
    }
    y[b].d = 1 / iscale;
  }
}

size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }

}  // namespace

int blockValues(QType t) {
  return t == QType::kQ8_0 || t == QType::kQ5_0 || t == QType::kQ4_0 ? kQK : kQKK;
}

size_t blockBytes(QType t) {
  switch (t) {
    case QType::kQ8_0:
      return sizeof(BlockQ8_0);
    case QType::kQ4_0:
      return sizeof(BlockQ4_0);
    case QType::kQ5_0:
      return sizeof(BlockQ5_0);
    case QType::kQ4_K:
      return sizeof(BlockQ4_K);
    case QType::kQ6_K:
      return sizeof(BlockQ6_K);
    case QType::kQ8_K:
      return sizeof(BlockQ8_K);
  }
  return 0;
}

size_t rowBytes(QType t, int64_t n) {
  return static_cast<size_t>(n / blockValues(t)) * blockBytes(t);
}

int ggmlType(QType t) {
  switch (t) {
    case QType::kQ4_0:
      return 2;
    case QType::kQ5_0:
      return 6;
    case QType::kQ8_0:
      return 8;
    case QType::kQ4_K:
      return 12;
    case QType::kQ6_K:
      return 14;
    case QType::kQ8_K:
      return 15;
  }
  return -1;
}

std::optional<QType> fromGgmlType(int id) {
  for (QType t :
       {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K, QType::kQ8_K})
    if (ggmlType(t) == id) return t;
  return std::nullopt;
}

std::string_view qtypeName(QType t) {
  switch (t) {
    case QType::kQ8_0:
      return "q8_0";
    case QType::kQ4_0:
      return "q4_0";
    case QType::kQ5_0:
      return "q5_0";
    case QType::kQ4_K:
      return "q4_k";
    case QType::kQ6_K:
      return "q6_k";
    case QType::kQ8_K:
      return "q8_k";
  }
  return "?";
}

std::optional<QType> parseQType(std::string_view name) {
  for (QType t : {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K})
    if (qtypeName(t) == name) return t;
  return std::nullopt;
}

std::optional<DType> dtypeOf(QType t) {
  switch (t) {
    case QType::kQ8_0:
      return DType::kQ8_0;
    case QType::kQ4_0:
      return DType::kQ4_0;
    case QType::kQ5_0:
      return DType::kQ5_0;
    case QType::kQ4_K:
      return DType::kQ4_K;
    case QType::kQ6_K:
      return DType::kQ6_K;
    default:
      return std::nullopt;
  }
}

std::optional<QType> qtypeOf(DType d) {
  for (QType t : {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K})
    if (dtypeOf(t) == d) return t;
  return std::nullopt;
}

uint16_t floatToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below 2^-14: subnormal half (or zero), value = m * 2^-24
    // Scaling by 2^24 is exact; rint rounds to nearest even in the default mode.
    float a;
    std::memcpy(&a, &abs, sizeof a);
    const auto m = static_cast<uint32_t>(std::nearbyint(a * 16777216.0f));
    return static_cast<uint16_t>(sign | m);  // m == 0x400 is the smallest normal: still right
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

int nearestInt(float v) {
  assert(std::fabs(v) <= 4194303.f);
  float f = v + 12582912.0f;  // 1.5 * 2^23: the sum's low mantissa bits hold round(v)
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

void quantizeRow(QType t, const float* x, void* out, int64_t n) {
  assert(n % blockValues(t) == 0);
  const int64_t nb = n / blockValues(t);
  switch (t) {
    case QType::kQ8_0:
      return quantizeQ8_0(x, static_cast<BlockQ8_0*>(out), nb);
    case QType::kQ4_0:
      return quantizeQ4_0(x, static_cast<BlockQ4_0*>(out), nb);
    case QType::kQ5_0:
      return quantizeQ5_0(x, static_cast<BlockQ5_0*>(out), nb);
    case QType::kQ4_K:
      return quantizeQ4_K(x, static_cast<BlockQ4_K*>(out), nb);
    case QType::kQ6_K:
      return quantizeQ6_K(x, static_cast<BlockQ6_K*>(out), nb);
    case QType::kQ8_K:
      return quantizeQ8_K(x, static_cast<BlockQ8_K*>(out), nb);
  }
}

void dequantizeRow(QType t, const void* in, float* y, int64_t n) {
  assert(n % blockValues(t) == 0);
  const int64_t nb = n / blockValues(t);
  for (int64_t b = 0; b < nb; ++b) {
    switch (t) {
      case QType::kQ8_0: {
        const BlockQ8_0& k = static_cast<const BlockQ8_0*>(in)[b];
        const float d = h2f(k.d);
        for (int i = 0; i < kQK; ++i) *y++ = k.qs[i] * d;
        break;
      }
      case QType::kQ4_0: {
        const BlockQ4_0& k = static_cast<const BlockQ4_0*>(in)[b];
        const float d = h2f(k.d);
        for (int j = 0; j < 16; ++j) y[j] = ((k.qs[j] & 0xF) - 8) * d;
        for (int j = 0; j < 16; ++j) y[j + 16] = ((k.qs[j] >> 4) - 8) * d;
        y += kQK;
        break;
      }
      case QType::kQ5_0: {
        const BlockQ5_0& k = static_cast<const BlockQ5_0*>(in)[b];
        const float d = h2f(k.d);
        const uint32_t qh = q5High(k);
        for (int i = 0; i < kQK; ++i) *y++ = (q5At(k, qh, i) - 16) * d;
        break;
      }
      case QType::kQ4_K: {
        const BlockQ4_K& k = static_cast<const BlockQ4_K*>(in)[b];
        const float d = h2f(k.d), dmin = h2f(k.dmin);
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          scaleMinK4(j, k.scales, &sc, &m);
          const float d1 = d * sc, m1 = dmin * m;
          const uint8_t* q = k.qs + 32 * (j / 2);
          for (int l = 0; l < 32; ++l) *y++ = d1 * ((j & 1) ? (q[l] >> 4) : (q[l] & 0xF)) - m1;
        }
        break;
      }
      case QType::kQ6_K: {
        const BlockQ6_K& k = static_cast<const BlockQ6_K*>(in)[b];
        const float d = h2f(k.d);
        for (int i = 0; i < kQKK; ++i) *y++ = d * k.scales[i / 16] * (q6At(k, i) - 32);
        break;
      }
      case QType::kQ8_K: {
        const BlockQ8_K& k = static_cast<const BlockQ8_K*>(in)[b];
        for (int i = 0; i < kQKK; ++i) *y++ = k.d * k.qs[i];
        break;
      }
    }
  }
}

std::optional<QType> formatForColumns(QType want, int64_t cols) {
  if (cols % blockValues(want) == 0) return want;
  const QType narrow = want == QType::kQ4_K ? QType::kQ5_0 : QType::kQ8_0;
  if (cols % blockValues(narrow) == 0) return narrow;
  return std::nullopt;
}

QType activationType(QType w) { return blockValues(w) == kQK ? QType::kQ8_0 : QType::kQ8_K; }

size_t actRowBytes(QType act, int64_t n) {
  const int64_t nb = n / blockValues(act);
  const int64_t nsums = act == QType::kQ8_0 ? nb : n / 16;
  return align64(static_cast<size_t>(n)) + align64(static_cast<size_t>(nb) * sizeof(float)) +
         align64(static_cast<size_t>(nsums) * sizeof(int16_t));
}

ActRow quantizeActivations(QType act, const float* x, int64_t n, void* mem) {
  assert(n % blockValues(act) == 0);
  const int64_t nb = n / blockValues(act);
  auto* qs = static_cast<int8_t*>(mem);
  auto* d = reinterpret_cast<float*>(qs + align64(static_cast<size_t>(n)));
  auto* sums = reinterpret_cast<int16_t*>(reinterpret_cast<char*>(d) +
                                          align64(static_cast<size_t>(nb) * sizeof(float)));
  for (int64_t b = 0; b < nb; ++b) {
    if (act == QType::kQ8_0) {
      BlockQ8_0 blk;
      quantizeQ8_0(x + b * kQK, &blk, 1);
      std::memcpy(qs + b * kQK, blk.qs, kQK);
      d[b] = h2f(blk.d);
      int s = 0;
      for (int i = 0; i < kQK; ++i) s += blk.qs[i];
      sums[b] = static_cast<int16_t>(s);
    } else {
      BlockQ8_K blk;
      quantizeQ8_K(x + b * kQKK, &blk, 1);
      std::memcpy(qs + b * kQKK, blk.qs, kQKK);
      d[b] = blk.d;
      std::memcpy(sums + b * 16, blk.bsums, sizeof blk.bsums);
    }
  }
  return ActRow{qs, d, sums};
}

float dotRow(QType w, const void* row, const ActRow& x, int64_t n) {
  float acc[8] = {};
  const int64_t nb = n / blockValues(w);
  for (int64_t b = 0; b < nb; ++b) {
    float term = 0;
    switch (w) {
      case QType::kQ8_0: {
        const BlockQ8_0& k = static_cast<const BlockQ8_0*>(row)[b];
        const int8_t* xq = x.qs + b * kQK;
        int s = 0;
        for (int i = 0; i < kQK; ++i) s += k.qs[i] * xq[i];
        term = static_cast<float>(s) * (h2f(k.d) * x.d[b]);
        break;
      }
      case QType::kQ4_0: {
        const BlockQ4_0& k = static_cast<const BlockQ4_0*>(row)[b];
        const int8_t* xq = x.qs + b * kQK;
        int s = 0;
        for (int j = 0; j < 16; ++j) s += (k.qs[j] & 0xF) * xq[j] + (k.qs[j] >> 4) * xq[j + 16];
        s -= 8 * x.sums[b];
        term = static_cast<float>(s) * (h2f(k.d) * x.d[b]);
        break;
      }
      case QType::kQ5_0: {
        const BlockQ5_0& k = static_cast<const BlockQ5_0*>(row)[b];
        const int8_t* xq = x.qs + b * kQK;
        const uint32_t qh = q5High(k);
        int s = 0;
        for (int i = 0; i < kQK; ++i) s += q5At(k, qh, i) * xq[i];
        s -= 16 * x.sums[b];  // the stored values are q - 16
        term = static_cast<float>(s) * (h2f(k.d) * x.d[b]);
        break;
      }
      case QType::kQ4_K: {
        const BlockQ4_K& k = static_cast<const BlockQ4_K*>(row)[b];
        const int8_t* xq = x.qs + b * kQKK;
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          scaleMinK4(j, k.scales, &sc, &m);
          const uint8_t* q = k.qs + 32 * (j / 2);
          int s = 0;
          for (int l = 0; l < 32; ++l) s += ((j & 1) ? (q[l] >> 4) : (q[l] & 0xF)) * xq[32 * j + l];
          isum += sc * s;
          msum += m * (x.sums[b * 16 + 2 * j] + x.sums[b * 16 + 2 * j + 1]);
        }
        const float dall = x.d[b] * h2f(k.d), dmin = x.d[b] * h2f(k.dmin);
        term = dall * static_cast<float>(isum) - dmin * static_cast<float>(msum);
        break;
      }
      case QType::kQ6_K: {
        const BlockQ6_K& k = static_cast<const BlockQ6_K*>(row)[b];
        const int8_t* xq = x.qs + b * kQKK;
        int isum = 0;
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int i = 0; i < 16; ++i) s += (q6At(k, 16 * g + i) - 32) * xq[16 * g + i];
          isum += k.scales[g] * s;
        }
        term = (x.d[b] * h2f(k.d)) * static_cast<float>(isum);
        break;
      }
      case QType::kQ8_K:
        assert(false && "Q8_K is an activation type");
        break;
    }
    acc[b & 7] += term;
  }
  return reduceLanes(acc);
}

}  // namespace engine::quant
