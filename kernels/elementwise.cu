// GeGLU and bf16 rounding: grid-stride loops, float4 over the aligned body and a scalar tail.
#include "kernels/common.cuh"
#include "kernels/elementwise.h"

namespace kernels {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi), as engine/cpu/kernels.cpp
constexpr float kGeluA = 0.044715f;

// The CPU's portable geglu with its operation order spelled out (no FMA contraction):
// y = C * (z + ((A * z) * z) * z). expf is the accurate one (at most 2 fp32 ulps).
__device__ __forceinline__ float gegluOne(float z, float u) {
  const float z3 = __fmul_rn(__fmul_rn(__fmul_rn(kGeluA, z), z), z);
  const float y = __fmul_rn(kGeluC, __fadd_rn(z, z3));
  const float gelu = __fdiv_rn(z, __fadd_rn(1.0f, expf(__fmul_rn(-2.0f, y))));
  return detail::roundBf16(__fmul_rn(detail::roundBf16(gelu), u));
}

__global__ void gegluKernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t n4 = n / 4;
  const float4* g4 = reinterpret_cast<const float4*>(gate);
  const float4* u4 = reinterpret_cast<const float4*>(up);
  float4* o4 = reinterpret_cast<float4*>(out);
  for (int64_t i = tid; i < n4; i += stride) {
    const float4 g = g4[i], u = u4[i];
    o4[i] =
        make_float4(gegluOne(g.x, u.x), gegluOne(g.y, u.y), gegluOne(g.z, u.z), gegluOne(g.w, u.w));
  }
  for (int64_t i = n4 * 4 + tid; i < n; i += stride) out[i] = gegluOne(gate[i], up[i]);
}

__global__ void gegluScalarKernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride)
    out[i] = gegluOne(gate[i], up[i]);
}

__global__ void roundBf16Kernel(float* x, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t n4 = n / 4;
  float4* x4 = reinterpret_cast<float4*>(x);
  for (int64_t i = tid; i < n4; i += stride) {
    float4 v = x4[i];
    v.x = detail::roundBf16(v.x);
    v.y = detail::roundBf16(v.y);
    v.z = detail::roundBf16(v.z);
    v.w = detail::roundBf16(v.w);
    x4[i] = v;
  }
  for (int64_t i = n4 * 4 + tid; i < n; i += stride) x[i] = detail::roundBf16(x[i]);
}

__global__ void roundBf16ScalarKernel(float* x, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride)
    x[i] = detail::roundBf16(x[i]);
}

constexpr int kThreads = 256;

}  // namespace

Status geglu(const float* gate, const float* up, int64_t n, float* out, Stream stream) {
  if (n < 0) return detail::invalid("kernels::geglu: n < 0");
  if (n == 0) return Status{};
  if (!gate || !up || !out) return detail::invalid("kernels::geglu: null pointer");
  if (detail::aligned16(gate) && detail::aligned16(up) && detail::aligned16(out)) {
    gegluKernel<<<detail::gridFor((n + 3) / 4, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  } else {
    gegluScalarKernel<<<detail::gridFor(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  }
  return detail::launched("kernels::geglu");
}

Status roundBf16(float* x, int64_t n, Stream stream) {
  if (n < 0) return detail::invalid("kernels::roundBf16: n < 0");
  if (n == 0) return Status{};
  if (!x) return detail::invalid("kernels::roundBf16: null pointer");
  if (detail::aligned16(x)) {
    roundBf16Kernel<<<detail::gridFor((n + 3) / 4, kThreads), kThreads, 0, stream>>>(x, n);
  } else {
    roundBf16ScalarKernel<<<detail::gridFor(n, kThreads), kThreads, 0, stream>>>(x, n);
  }
  return detail::launched("kernels::roundBf16");
}

}  // namespace kernels
