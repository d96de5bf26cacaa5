// Embedding gather (gemma-spec §2.1): one block per token, 8 bf16 per 16-byte load.
#include <cmath>
#include <cstring>

#include "kernels/common.cuh"
#include "kernels/embed.h"

namespace kernels {
namespace {

using detail::bf16ToFloat;
using detail::roundBf16;

template <bool kVec>
__global__ void embedKernel(const int32_t* __restrict__ ids, const uint16_t* __restrict__ table,
                            int64_t rows, int64_t cols, float scale, float* __restrict__ out) {
  const int64_t i = blockIdx.x;
  const int32_t id = __ldg(ids + i);
  float* o = out + i * cols;
  if (id < 0 || id >= rows) {  // never read out of bounds; make the bad row visible
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) o[j] = __uint_as_float(0x7fc00000u);
    return;
  }
  const uint16_t* t = table + static_cast<int64_t>(id) * cols;
  if constexpr (kVec) {
    const uint4* t8 = reinterpret_cast<const uint4*>(t);
    float4* o4 = reinterpret_cast<float4*>(o);
    for (int64_t v = threadIdx.x; v < cols / 8; v += blockDim.x) {
      const uint4 w = __ldg(t8 + v);  // 8 bf16; element 2k in the low half of each word
      const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
      float r[8];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        r[2 * k] = roundBf16(__fmul_rn(bf16ToFloat(ws[k] & 0xffffu), scale));
        r[2 * k + 1] = roundBf16(__fmul_rn(bf16ToFloat(ws[k] >> 16), scale));
      }
      o4[2 * v] = make_float4(r[0], r[1], r[2], r[3]);
      o4[2 * v + 1] = make_float4(r[4], r[5], r[6], r[7]);
    }
  } else {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      o[j] = roundBf16(__fmul_rn(bf16ToFloat(__ldg(t + j)), scale));
  }
}

}  // namespace

float embedScale(int64_t hidden) {
  const float s = static_cast<float>(std::sqrt(static_cast<double>(hidden)));
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (s is finite and positive)
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

Status embedBf16(const int32_t* ids, int n, const uint16_t* table, int64_t rows, int64_t cols,
                 float scale, float* out, Stream stream) {
  if (n < 0 || rows <= 0 || cols <= 0) return detail::invalid("kernels::embedBf16: bad shape");
  if (n == 0) return Status{};
  if (!ids || !table || !out) return detail::invalid("kernels::embedBf16: null pointer");
  const bool vec = cols % 8 == 0 && detail::aligned16(table) && detail::aligned16(out);
  const int threads = detail::threadsFor(vec ? cols / 8 : cols, 256);
  if (vec) {
    embedKernel<true><<<n, threads, 0, stream>>>(ids, table, rows, cols, scale, out);
  } else {
    embedKernel<false><<<n, threads, 0, stream>>>(ids, table, rows, cols, scale, out);
  }
  return detail::launched("kernels::embedBf16");
}

}  // namespace kernels
