// Device helpers shared by the kernels of kernels/: bf16 rounding with the exact bits of
// engine/bf16.h, warp and block sums, vector loads, and the launchers' argument and error checks.
// Internal to kernels/ (.cu files only).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/status.h"

namespace kernels::detail {

// bf16(x) as a float: round-to-nearest-even on the upper 16 bits; a NaN stays a quiet NaN and
// infinities stay infinite. Bit for bit engine::roundBf16 (engine/bf16.h).
__device__ __forceinline__ float roundBf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float(((u >> 16) | 0x0040u) << 16);
  u += 0x7fffu + ((u >> 16) & 1u);
  return __uint_as_float(u & 0xffff0000u);
}

__device__ __forceinline__ float bf16ToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}

// Sum over the 32 lanes of a warp; every lane gets the result.
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` is 32 floats of shared memory, used once per kernel (no barrier after the read).
__device__ __forceinline__ float blockSum(float v, float* scratch) {
  v = warpSum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : 0.0f;
  return warpSum(v);  // every warp reduces the partials itself: no broadcast step
}

// P consecutive floats at p (16-byte aligned when P % 4 == 0, 8-byte when P == 2).
template <int P>
__device__ __forceinline__ void loadVec(const float* p, float (&v)[P]) {
  if constexpr (P % 4 == 0) {
#pragma unroll
    for (int k = 0; k < P; k += 4) {
      const float4 t = *reinterpret_cast<const float4*>(p + k);
      v[k] = t.x, v[k + 1] = t.y, v[k + 2] = t.z, v[k + 3] = t.w;
    }
  } else if constexpr (P == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
#pragma unroll
    for (int k = 0; k < P; ++k) v[k] = p[k];
  }
}

template <int P>
__device__ __forceinline__ void storeVec(float* p, const float (&v)[P]) {
  if constexpr (P % 4 == 0) {
#pragma unroll
    for (int k = 0; k < P; k += 4)
      *reinterpret_cast<float4*>(p + k) = make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]);
  } else if constexpr (P == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
#pragma unroll
    for (int k = 0; k < P; ++k) p[k] = v[k];
  }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline Status invalid(const char* what) { return Status{Status::kInvalidArgument, 0, what}; }

// After a launch: the launch's own error, or an earlier asynchronous one still pending.
inline Status launched(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return Status{Status::kCuda, static_cast<int>(e), what};
  return Status{};
}

// Threads for a block that gives each of `items` work items to one thread: a whole number of
// warps, at least one, at most `cap`.
inline int threadsFor(int64_t items, int cap) {
  const int64_t t = (items + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > cap ? cap : t));
}

// Blocks for a grid-stride loop over `items` with `threads` per block: enough to fill the GPU
// several times over, never more than the work needs.
inline unsigned gridFor(int64_t items, int threads) {
  const int64_t b = (items + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

}  // namespace kernels::detail
