// Inner loops of the CPU backend: the weight-streaming matmul and the bf16 dot/axpy that
// attention runs over the KV cache. Three implementations with identical results up to fp32
// summation order, chosen at run time from what the CPU has: AVX-512 BF16 (bf16 weights times
// bf16 activations with VDPBF16PS: each product is exact in fp32 and accumulates in fp32), AVX2 +
// FMA + F16C, and portable C++. Within one implementation the summation order of an output does
// not depend on how many tokens are in the call, so batching never changes a result.
//
// Weights are read straight from the checkpoint mapping and widened to fp32 in registers; nothing
// is ever converted to an fp32 copy of the model.
#pragma once

#include <cstdint>

#include "engine/safetensors.h"

namespace engine::cpu {

enum class Isa { kPortable, kAvx2, kAvx512Bf16 };

struct MatmulRowsArgs {
  const float* x = nullptr;      // [n, k], row stride k
  const uint16_t* xb = nullptr;  // x as bf16 [n, k], for matmul_rows_bf16 only
  int n = 0;                     // tokens
  int64_t k = 0;                 // inner dimension (weight cols)
  const void* w = nullptr;       // [rows, k], row-major, dtype below
  DType dtype = DType::kBF16;
  float* y = nullptr;  // [n, ldy]
  int64_t ldy = 0;     // row stride of y (= weight rows)
  bool round_bf16 = false;
};

struct Kernels {
  const char* name;
  Isa isa;
  // y[t, r] = x[t, :] · w[r, :] for every t < n and r in [r0, r1).
  void (*matmul_rows)(const MatmulRowsArgs& a, int64_t r0, int64_t r1);
  // The same for BF16 weights and activations that are exactly bf16 (a.xb holds them); null when
  // the ISA has no bf16 dot product. Exact products, fp32 sums: same math as matmul_rows.
  void (*matmul_rows_bf16)(const MatmulRowsArgs& a, int64_t r0, int64_t r1);
  // Σ q[i] * bf16(k[i]) over n values, fp32.
  float (*dot_bf16)(const float* q, const uint16_t* k, int n);
  // out[i] += a * bf16(v[i]) over n values.
  void (*axpy_bf16)(float a, const uint16_t* v, float* out, int n);
  // out[i] = bf16(bf16(gelu_tanh(g[i])) * u[i]) over n values; out may alias g or u.
  void (*geglu)(const float* g, const float* u, int64_t n, float* out);
};

// Whether this CPU can run `isa`.
bool cpuSupports(Isa isa);
// The kernels of `isa`, or of the best ISA below it that this CPU supports.
const Kernels& selectKernels(Isa isa);

}  // namespace engine::cpu
