// Gemma RMSNorm with the zero-centred (1 + w) weight (gemma-spec §2.2), plain and fused with the
// residual add that follows it: the CUDA counterparts of engine::Backend::rmsnorm1p,
// rmsnorm1pAdd and prepareNorm1p.
#pragma once

#include <cstdint>

#include "kernels/status.h"

namespace kernels {

// w1p[i] = 1 + w[i] in fp32 for i < n (gemma-spec §2.2: HF computes 1 + w in fp32; never round
// it back to bf16). w: device bf16 bits [n]; w1p: device fp32 [n]. Run once per weight at load.
Status norm1pFromBf16(const uint16_t* w, int64_t n, float* w1p, Stream stream);

// out[r, :] = bf16(x[r, :] * rsqrt(mean(x[r, :]²) + eps) * w1p) for r < rows; the sum of squares
// is fp32 (one block per row, warp-shuffle reduction), then 1 / sqrt(mean + eps) correctly
// rounded, then (x * inv) * w1p and one bf16 rounding, as the CPU backend computes it.
//   x, out  device fp32 [rows, cols]; out may equal x (in place).
//   w1p     device fp32 [cols], from norm1pFromBf16.
// 16-byte loads when cols % 4 == 0 and x, out, w1p are 16-byte aligned, else a scalar path.
// kInvalidArgument: rows < 0, cols <= 0, or a null pointer with rows > 0.
Status rmsnorm1p(const float* x, int64_t rows, int64_t cols, const float* w1p, float eps,
                 float* out, Stream stream);

// residual[r, :] = bf16(residual[r, :] + bf16(norm(x[r, :]))), the norm as above (gemma-spec §2.5:
// every sub-layer output is normed, then added to the residual stream). x: [rows, cols];
// residual: [rows, cols], read and written. Same preconditions as rmsnorm1p.
Status rmsnorm1pAdd(const float* x, int64_t rows, int64_t cols, const float* w1p, float eps,
                    float* residual, Stream stream);

}  // namespace kernels
