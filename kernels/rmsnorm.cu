// Gemma RMSNorm (gemma-spec §2.2): one block per row, fp32 sum of squares reduced with warp
// shuffles, the row read twice (the second read mostly hits L1/L2), one bf16 rounding.
#include "kernels/common.cuh"
#include "kernels/rmsnorm.h"

namespace kernels {
namespace {

using detail::roundBf16;

__global__ void norm1pKernel(const uint16_t* __restrict__ w, int64_t n, float* __restrict__ w1p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    w1p[i] = __fadd_rn(1.0f, detail::bf16ToFloat(w[i]));
}

// One output element: bf16((x * inv) * w), then for the fused variant bf16(residual + that).
template <bool kAdd>
__device__ __forceinline__ float normOne(float x, float inv, float w, float o) {
  const float y = roundBf16(__fmul_rn(__fmul_rn(x, inv), w));
  if constexpr (kAdd) return roundBf16(__fadd_rn(o, y));
  return y;
}

// x and out may alias (in-place norm): every element is read and then written by the same
// thread, and the first pass over the row ends at the barrier inside blockSum.
template <bool kVec, bool kAdd>
__global__ void rmsnormKernel(const float* x, int64_t cols, const float* __restrict__ w1p,
                              float eps, float* out) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  float ss = 0.0f;
  if constexpr (kVec) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    for (int64_t v = threadIdx.x; v < cols / 4; v += blockDim.x) {
      const float4 a = x4[v];
      ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xr[j] * xr[j];
  }
  ss = detail::blockSum(ss, scratch);
  // The CPU backend divides its sum by cols in double and rounds to fp32; do the same with ours.
  const float ms = static_cast<float>(static_cast<double>(ss) / static_cast<double>(cols));
  const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
  if constexpr (kVec) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const float4* w4 = reinterpret_cast<const float4*>(w1p);
    float4* o4 = reinterpret_cast<float4*>(o);
    for (int64_t v = threadIdx.x; v < cols / 4; v += blockDim.x) {
      const float4 a = x4[v], w = __ldg(w4 + v);
      float4 r = kAdd ? o4[v] : make_float4(0.f, 0.f, 0.f, 0.f);
      r.x = normOne<kAdd>(a.x, inv, w.x, r.x);
      r.y = normOne<kAdd>(a.y, inv, w.y, r.y);
      r.z = normOne<kAdd>(a.z, inv, w.z, r.z);
      r.w = normOne<kAdd>(a.w, inv, w.w, r.w);
      o4[v] = r;
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      o[j] = normOne<kAdd>(xr[j], inv, __ldg(w1p + j), kAdd ? o[j] : 0.0f);
  }
}

template <bool kAdd>
Status launchNorm(const char* name, const char* bad, const float* x, int64_t rows, int64_t cols,
                  const float* w1p, float eps, float* out, Stream stream) {
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return detail::invalid(bad);
  if (rows == 0) return Status{};
  if (!x || !w1p || !out) return detail::invalid(bad);
  const bool vec =
      cols % 4 == 0 && detail::aligned16(x) && detail::aligned16(out) && detail::aligned16(w1p);
  // One float4 (or float) per thread when the row fits in 1024 threads: 1152 -> 288 threads,
  // 2560 -> 640; wider rows loop.
  const int threads = detail::threadsFor(vec ? cols / 4 : cols, 1024);
  const unsigned blocks = static_cast<unsigned>(rows);
  if (vec) {
    rmsnormKernel<true, kAdd><<<blocks, threads, 0, stream>>>(x, cols, w1p, eps, out);
  } else {
    rmsnormKernel<false, kAdd><<<blocks, threads, 0, stream>>>(x, cols, w1p, eps, out);
  }
  return detail::launched(name);
}

}  // namespace

Status norm1pFromBf16(const uint16_t* w, int64_t n, float* w1p, Stream stream) {
  if (n < 0) return detail::invalid("kernels::norm1pFromBf16: n < 0");
  if (n == 0) return Status{};
  if (!w || !w1p) return detail::invalid("kernels::norm1pFromBf16: null pointer");
  norm1pKernel<<<detail::gridFor(n, 256), 256, 0, stream>>>(w, n, w1p);
  return detail::launched("kernels::norm1pFromBf16");
}

Status rmsnorm1p(const float* x, int64_t rows, int64_t cols, const float* w1p, float eps,
                 float* out, Stream stream) {
  return launchNorm<false>("kernels::rmsnorm1p", "kernels::rmsnorm1p: bad shape or null pointer", x,
                           rows, cols, w1p, eps, out, stream);
}

Status rmsnorm1pAdd(const float* x, int64_t rows, int64_t cols, const float* w1p, float eps,
                    float* residual, Stream stream) {
  return launchNorm<true>("kernels::rmsnorm1pAdd",
                          "kernels::rmsnorm1pAdd: bad shape or null pointer", x, rows, cols, w1p,
                          eps, residual, stream);
}

}  // namespace kernels
