// Dot products of block-quantized weight rows (engine/quant/quant.h) with int8-quantized
// activation rows, in three versions chosen at run time: AVX-512 (VNNI and BW: one token's dot
// products on 512-bit vectors, two 32-value blocks or 64 values of a K-quant block per
// instruction, and 4 tokens per VPDPBUSD for the 32-value formats), AVX2 (VPMADDUBSW +
// VPMADDWD) and the portable definition quant::dotRow(). All three give bit-identical results:
// the integer sums are exact and the fp32 scaling and accumulation follow quant.h's fixed order.
// One-token rates per format and instruction set: bench/quant_kernel_bench.cpp.
//
// dotTokens() is the same dot product for several activation rows (tokens) at once: each weight
// block is loaded and unpacked once and multiplied against up to kQuantTokenGroup rows, and each
// token's result is computed with exactly the arithmetic and order of dot(), so it equals
// quant::dotRow() bit for bit whatever the token count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/cpu/kernels.h"
#include "engine/quant/quant.h"

namespace engine::cpu {

// Tokens one pass of dotTokens() multiplies each unpacked weight block against.
constexpr int kQuantTokenGroup = 4;

struct QuantKernels {
  const char* name;
  // Σ w[i] * x[i] over n values of one weight row of type w (see quant::dotRow).
  float (*dot)(quant::QType w, const void* row, const quant::ActRow& x, int64_t n);
  // y[t] = dot(w, row, x[t], n) for every t < nt (nt >= 1), reading the weight row once per
  // kQuantTokenGroup tokens.
  void (*dotTokens)(quant::QType w, const void* row, const quant::ActRow* x, int nt, int64_t n,
                    float* y);
  // y[t * ldy + r] = dot(w, rows + r * row_bytes, x[t], n) for every row r < nrows and token
  // t < nt: one block of a matmul. With AVX-512 VNNI, Q8_0, Q5_0 and Q4_0 rows take 4 tokens per
  // VPDPBUSD (each group of 4 activation rows interleaved once per call, so no horizontal sums
  // per block); the results stay dot()'s.
  void (*matmulTokens)(quant::QType w, const void* rows, size_t row_bytes, int64_t nrows,
                       const quant::ActRow* x, int nt, int64_t n, float* y, int64_t ldy);
};

// The best quantized-dot kernels at or below `isa` that this CPU runs (kAvx512Bf16 stands for
// "AVX-512", and takes VNNI where the CPU has it).
const QuantKernels& selectQuantKernels(Isa isa);

}  // namespace engine::cpu
