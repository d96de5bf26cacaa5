// Rotary position embedding (gemma-spec §2.3), NeoX / rotate_half layout, with HF's bf16
// roundings, optionally fused with the per-head q/k RMSNorm that precedes it in Gemma 3: the CUDA
// counterparts of engine::Backend::ropeTable and rope (and rmsnorm1p over head_dim before it).
//
// Two ways to rotate. rope() reads a cos/sin table built once per forward step and layer type by
// ropeTable() (what the model does: every layer of a type shares the table). ropeAtPositions()
// computes cos/sin from position ids inside the kernel, for callers without a table. Both give
// bit-identical results for the same positions and frequencies.
#pragma once

#include <cstdint>

#include "kernels/status.h"

namespace kernels {

constexpr int kMaxRopeHeadDim = 512;  // Gemma 4's full layers; Gemma 3 uses 256 (27b: 128)

// inv_freq[j] = 1 / base^(2j / head_dim) / factor in fp32 for j < head_dim / 2, computed on the
// host with the same fp32 expression as the CPU backend, so both use the same frequencies.
// base = rope_theta of the layer type (sliding 1e4, full 1e6); factor = linear scaling (1 = none,
// 8 on Gemma 3 4b+ full layers). Passed to kernels by value.
struct RopeFreqs {
  int head_dim = 0;
  float inv_freq[kMaxRopeHeadDim / 2] = {};
};

// Host function. head_dim must be even and in [2, kMaxRopeHeadDim] (else head_dim is left 0 and
// the launchers reject the result).
RopeFreqs ropeFreqs(int head_dim, double base, double factor);

// table[i, 0:D/2] = bf16(cos(pos[i] * inv_freq)), table[i, D/2:D] = bf16(sin(...)), the angle a
// single fp32 product (gemma-spec §2.3, §6.1: HF rounds cos/sin to bf16).
//   pos   device int32 [n]; table device fp32 [n, D], D = freqs.head_dim.
// kInvalidArgument: n < 0, freqs.head_dim invalid, or a null pointer with n > 0.
Status ropeTable(const int32_t* pos, int n, const RopeFreqs& freqs, float* table, Stream stream);

// Rotates x[n, n_heads, head_dim] in place: for j < D/2, with x1 = x[j], x2 = x[j + D/2],
//   x[j]       = bf16(bf16(x1 * cos_j) + bf16(-x2 * sin_j))
//   x[j + D/2] = bf16(bf16(x2 * cos_j) + bf16( x1 * sin_j))
// cos/sin from table row i ([n, D] from ropeTable) for token i.
// With norm_w1p (device fp32 [head_dim], 1 + w of q_norm or k_norm), each head is first
// normalised as rmsnorm1p over head_dim does it, rounded to bf16, then rotated: one pass instead
// of two. Null: plain rotation.
//   head_dim in {64, 128, 256, 512}; x, table, norm_w1p 16-byte aligned.
// kInvalidArgument on any other shape, misalignment, or a null x/table with n > 0.
Status rope(float* x, int n, int n_heads, int head_dim, const float* table, const float* norm_w1p,
            float eps, Stream stream);

// The same rotation (and optional norm) with cos/sin computed in the kernel from device int32
// positions pos[n] and `freqs`, exactly as ropeTable computes them. head_dim = freqs.head_dim.
Status ropeAtPositions(float* x, const int32_t* pos, int n, int n_heads, const RopeFreqs& freqs,
                       const float* norm_w1p, float eps, Stream stream);

}  // namespace kernels
