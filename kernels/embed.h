// Embedding gather with Gemma's scale (gemma-spec §2.1): the CUDA counterpart of
// engine::Backend::embed for a bf16 table.
#pragma once

#include <cstdint>

#include "kernels/status.h"

namespace kernels {

// bf16(sqrt(hidden)) as HF computes it (sqrt in double, to fp32, then to bf16; gemma-spec §2.1,
// §6.2: 1152 -> 34.0, 2560 -> 50.5). Host function; the same value as GemmaConfig::embed_scale.
float embedScale(int64_t hidden);

// out[i, :] = bf16(table[ids[i], :] * scale) for i < n, fp32 math, one rounding.
//   ids   device int32 [n]; the model validates them first. An id outside [0, rows) reads nothing
//         and yields a row of NaN, so that the mistake shows instead of reading out of bounds.
//   table device bf16 bits [rows, cols], row-major.
//   out   device fp32 [n, cols]; must not overlap the table or ids.
// 16-byte loads when cols % 8 == 0 and table/out are 16-byte aligned, else a scalar path.
// kInvalidArgument: n < 0, rows/cols <= 0, or a null pointer with n > 0.
Status embedBf16(const int32_t* ids, int n, const uint16_t* table, int64_t rows, int64_t cols,
                 float scale, float* out, Stream stream);

}  // namespace kernels
