// Elementwise ops of the Gemma forward pass: GeGLU (gemma-spec §2.4) and bf16 rounding, the CUDA
// counterparts of engine::Backend::geglu and roundBf16.
#pragma once

#include <cstdint>

#include "kernels/status.h"

namespace kernels {

// out[i] = bf16(bf16(gelu_tanh(gate[i])) * up[i]) for i < n, fp32 math inside (PyTorch's opmath),
// gelu_tanh(z) = z / (1 + exp(-2y)), y = sqrt(2/pi) (z + 0.044715 z³): the CPU backend's
// cancellation-free form of 0.5 z (1 + tanh(y)), with the same operation order.
// gate, up, out: device fp32 [n]; out may alias gate or up (elementwise, each element read
// before it is written by the same thread). 16-byte accesses when all three are 16-byte
// aligned. kInvalidArgument: n < 0 or a null pointer with n > 0.
Status geglu(const float* gate, const float* up, int64_t n, float* out, Stream stream);

// x[i] = bf16(x[i]) for i < n: round to nearest even, NaN kept (quiet), ±inf kept; the bits of
// engine::roundBf16. x: device fp32 [n].
Status roundBf16(float* x, int64_t n, Stream stream);

}  // namespace kernels
