// RoPE (gemma-spec §2.3): cos/sin tables and the in-place rotation, optionally fused with the
// per-head q/k RMSNorm. One block per token; each warp rotates whole heads, lane l owning the
// D/64 consecutive pairs (j, j + D/2) from j = l * D/64, so a lane's cos/sin (and norm weights)
// are loaded or computed once and reused for every head of the token.
#include <cmath>
#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/rope.h"

namespace kernels {
namespace {

using detail::loadVec;
using detail::roundBf16;
using detail::storeVec;

struct NoFreqs {};  // rope(): cos/sin come from a table

// bf16(cos(pos * inv)), bf16(sin(pos * inv)); the angle is one fp32 product, as on the CPU.
// sincosf is the accurate (non fast-math) version: at most 2 fp32 ulps from the true value,
// with full range reduction for large angles.
__device__ __forceinline__ void cosSin(int32_t pos, float inv, float& c, float& s) {
  const float ang = __fmul_rn(static_cast<float>(pos), inv);
  float sv, cv;
  sincosf(ang, &sv, &cv);
  c = roundBf16(cv);
  s = roundBf16(sv);
}

__global__ void ropeTableKernel(const int32_t* __restrict__ pos, int half,
                                const __grid_constant__ RopeFreqs f, float* __restrict__ table) {
  const int64_t i = blockIdx.x;
  const int32_t p = __ldg(pos + i);
  float* t = table + i * 2 * half;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    float c, s;
    cosSin(p, f.inv_freq[j], c, s);
    t[j] = c;
    t[half + j] = s;
  }
}

template <int D, bool kNorm, class Freqs>
__global__ void ropeKernel(float* __restrict__ x, int n_heads, const float* __restrict__ table,
                           const int32_t* __restrict__ pos, const __grid_constant__ Freqs f,
                           const float* __restrict__ w1p, float eps) {
  constexpr int kHalf = D / 2, P = D / 64;
  constexpr bool kFromPos = std::is_same_v<Freqs, RopeFreqs>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int64_t t = blockIdx.x;
  const int j0 = lane * P;

  float c[P], s[P];
  if constexpr (kFromPos) {
    const int32_t p = __ldg(pos + t);
#pragma unroll
    for (int k = 0; k < P; ++k) cosSin(p, f.inv_freq[j0 + k], c[k], s[k]);
  } else {
    loadVec<P>(table + t * D + j0, c);
    loadVec<P>(table + t * D + kHalf + j0, s);
  }
  float w1[P], w2[P];
  if constexpr (kNorm) {
    loadVec<P>(w1p + j0, w1);
    loadVec<P>(w1p + kHalf + j0, w2);
  }

  for (int h = warp; h < n_heads; h += warps) {  // uniform per warp: warpSum sees all lanes
    float* v = x + (t * n_heads + h) * D;
    float a[P], b[P];
    loadVec<P>(v + j0, a);
    loadVec<P>(v + kHalf + j0, b);
    if constexpr (kNorm) {
      // rmsnorm1p over the head (gemma-spec §2.3 q_norm / k_norm), same arithmetic as
      // rmsnorm.cu: fp32 sum of squares, mean as the CPU rounds it, correctly rounded 1/sqrt.
      float ss = 0.0f;
#pragma unroll
      for (int k = 0; k < P; ++k) ss += a[k] * a[k] + b[k] * b[k];
      ss = detail::warpSum(ss);
      const float ms = static_cast<float>(static_cast<double>(ss) / D);
      const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
#pragma unroll
      for (int k = 0; k < P; ++k) {
        a[k] = roundBf16(__fmul_rn(__fmul_rn(a[k], inv), w1[k]));
        b[k] = roundBf16(__fmul_rn(__fmul_rn(b[k], inv), w2[k]));
      }
    }
    float ra[P], rb[P];
#pragma unroll
    for (int k = 0; k < P; ++k) {
      // x*cos + rotate_half(x)*sin, every op rounded to bf16 as HF does it on bf16 tensors.
      ra[k] =
          roundBf16(__fadd_rn(roundBf16(__fmul_rn(a[k], c[k])), roundBf16(__fmul_rn(-b[k], s[k]))));
      rb[k] =
          roundBf16(__fadd_rn(roundBf16(__fmul_rn(b[k], c[k])), roundBf16(__fmul_rn(a[k], s[k]))));
    }
    storeVec<P>(v + j0, ra);
    storeVec<P>(v + kHalf + j0, rb);
  }
}

template <int D, class Freqs>
void launchD(float* x, int n, int n_heads, const float* table, const int32_t* pos, const Freqs& f,
             const float* w1p, float eps, Stream stream) {
  const int warps = n_heads < 8 ? n_heads : 8;
  if (w1p) {
    ropeKernel<D, true, Freqs><<<n, 32 * warps, 0, stream>>>(x, n_heads, table, pos, f, w1p, eps);
  } else {
    ropeKernel<D, false, Freqs><<<n, 32 * warps, 0, stream>>>(x, n_heads, table, pos, f, w1p, eps);
  }
}

// The one runtime-to-compile-time switch of this op family (STYLE.md "Kernels").
template <class Freqs>
Status launchRope(const char* name, const char* bad, float* x, int n, int n_heads, int head_dim,
                  const float* table, const int32_t* pos, const Freqs& f, const float* w1p,
                  float eps, Stream stream) {
  if (n < 0 || n_heads <= 0) return detail::invalid(bad);
  if (n == 0) return Status{};
  if (!x || (!table && !pos) || !detail::aligned16(x) || (table && !detail::aligned16(table)) ||
      (w1p && !detail::aligned16(w1p)))
    return detail::invalid(bad);
  switch (head_dim) {
    case 64:
      launchD<64>(x, n, n_heads, table, pos, f, w1p, eps, stream);
      break;
    case 128:
      launchD<128>(x, n, n_heads, table, pos, f, w1p, eps, stream);
      break;
    case 256:
      launchD<256>(x, n, n_heads, table, pos, f, w1p, eps, stream);
      break;
    case 512:
      launchD<512>(x, n, n_heads, table, pos, f, w1p, eps, stream);
      break;
    default:
      return detail::invalid(bad);
  }
  return detail::launched(name);
}

bool validFreqs(const RopeFreqs& f) {
  return f.head_dim >= 2 && f.head_dim <= kMaxRopeHeadDim && f.head_dim % 2 == 0;
}

}  // namespace

RopeFreqs ropeFreqs(int head_dim, double base, double factor) {
  RopeFreqs f;
  if (head_dim < 2 || head_dim > kMaxRopeHeadDim || head_dim % 2 != 0) return f;
  f.head_dim = head_dim;
  for (int j = 0; j < head_dim / 2; ++j) {
    // The CPU backend's expression (engine/cpu_backend.cpp ropeTable), fp32 throughout (§2.3).
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    f.inv_freq[j] =
        (1.0f / std::pow(static_cast<float>(base), exponent)) / static_cast<float>(factor);
  }
  return f;
}

Status ropeTable(const int32_t* pos, int n, const RopeFreqs& freqs, float* table, Stream stream) {
  if (n < 0 || !validFreqs(freqs)) return detail::invalid("kernels::ropeTable: bad n or head_dim");
  if (n == 0) return Status{};
  if (!pos || !table) return detail::invalid("kernels::ropeTable: null pointer");
  const int half = freqs.head_dim / 2;
  ropeTableKernel<<<n, detail::threadsFor(half, 256), 0, stream>>>(pos, half, freqs, table);
  return detail::launched("kernels::ropeTable");
}

Status rope(float* x, int n, int n_heads, int head_dim, const float* table, const float* norm_w1p,
            float eps, Stream stream) {
  if (n > 0 && !table) return detail::invalid("kernels::rope: null table");
  return launchRope("kernels::rope",
                    "kernels::rope: bad shape (head_dim 64/128/256/512), null or misaligned "
                    "pointer",
                    x, n, n_heads, head_dim, table, nullptr, NoFreqs{}, norm_w1p, eps, stream);
}

Status ropeAtPositions(float* x, const int32_t* pos, int n, int n_heads, const RopeFreqs& freqs,
                       const float* norm_w1p, float eps, Stream stream) {
  if (n > 0 && !pos) return detail::invalid("kernels::ropeAtPositions: null positions");
  if (!validFreqs(freqs)) return detail::invalid("kernels::ropeAtPositions: bad freqs.head_dim");
  return launchRope("kernels::ropeAtPositions",
                    "kernels::ropeAtPositions: bad shape (head_dim 64/128/256/512), null or "
                    "misaligned pointer",
                    x, n, n_heads, freqs.head_dim, nullptr, pos, freqs, norm_w1p, eps, stream);
}

}  // namespace kernels
