// Block-quantized weights in llama.cpp's (ggml's) exact byte layouts, so that rows move between a
// GGUF file and this engine unchanged: Q8_0, Q5_0 and Q4_0 (blocks of 32 values with an fp16
// scale), and the K-quants Q4_K and Q6_K (super-blocks of 256 with 6- or 8-bit sub-block scales).
//
// Quantization follows ggml's reference ("_ref") routines: the ones that create model files
// deterministically (no importance matrix). Dequantization is exact arithmetic on the stored
// fields. Dot products quantize the activation row to int8 first, as ggml does (Q8_0 blocks for
// Q8_0/Q5_0/Q4_0 weights, Q8_K super-blocks for the K-quants), multiply in integers and scale in
// fp32.
//
// The fp32 part of a dot product has one defined order, which every instruction-set version in
// engine/cpu/quant_kernels.cpp reproduces bit for bit: block b (32 values for the 32-value
// formats, 256 for the K-quants) adds its term to accumulator b % 8, and the eight accumulators
// are summed as ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). A block's term is exact integer arithmetic
// times a scale; the two products are fp32 multiplies, never fused (see dotRow()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/safetensors.h"

namespace engine::quant {

enum class QType : uint8_t { kQ8_0, kQ4_0, kQ4_K, kQ6_K, kQ8_K, kQ5_0 };

constexpr int kQK = 32;    // values per Q8_0 / Q5_0 / Q4_0 block
constexpr int kQKK = 256;  // values per K-quant super-block

// ggml-common.h layouts. `d`/`dmin` are IEEE fp16 bit patterns.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];  // value i = qs[i] * d
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t
      qs[kQK / 2];  // low nibble of byte j = value j, high nibble = value j + 16; v = (q - 8) * d
};
// Value j (0..15) = (low nibble of qs[j] | bit j of qh << 4) - 16, value j + 16 = (high nibble of
// qs[j] | bit j + 16 of qh << 4) - 16, times d; qh is read as a little-endian uint32.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ4_K {
  uint16_t d;            // scale of the 6-bit sub-block scales
  uint16_t dmin;         // scale of the 6-bit sub-block mins
  uint8_t scales[12];    // 8 (scale, min) pairs of 6 bits, packed (see scaleMinK4)
  uint8_t qs[kQKK / 2];  // per 64 values: 32 bytes, low nibbles the first 32, high the next 32
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];  // low 4 bits
  uint8_t qh[kQKK / 4];  // high 2 bits
  int8_t scales[kQKK / 16];
  uint16_t d;
};
struct BlockQ8_K {  // activations only (never stored in files)
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

// Values per block (32 or 256) and bytes per block.
int blockValues(QType t);
size_t blockBytes(QType t);
// Bytes of a row of n values; n must be a multiple of blockValues(t).
size_t rowBytes(QType t, int64_t n);
// ggml_type ids (as GGUF stores them): Q4_0 = 2, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q6_K = 14,
// Q8_K = 15.
int ggmlType(QType t);
std::optional<QType> fromGgmlType(int id);
// "q8_0", "q5_0", "q4_0", "q4_k", "q6_k" (lower case, as the provider config spells them); "q8_k".
std::string_view qtypeName(QType t);
std::optional<QType> parseQType(std::string_view name);

// The DType that marks a matrix of this block format (kQ8_K has none: nullopt), and back.
std::optional<DType> dtypeOf(QType t);
std::optional<QType> qtypeOf(DType d);

// fp32 -> IEEE fp16 bits, round to nearest even (ggml's GGML_FP32_TO_FP16); overflow -> inf.
uint16_t floatToF16(float f);
// ggml's nearest_int: round half to even, for |v| < 2^22.
int nearestInt(float v);

// ggml's quantize_row_*_ref over x[n] into rowBytes(t, n) bytes at out. n % blockValues(t) == 0.
void quantizeRow(QType t, const float* x, void* out, int64_t n);
// The stored values as fp32 (exact products of the fields).
void dequantizeRow(QType t, const void* in, float* y, int64_t n);

// The format a matrix of `cols` columns gets when `want` is asked for: `want` when its rows are
// whole blocks, else the 32-value format llama.cpp falls back to (its tensor_type_fallback:
// Q4_K -> Q5_0, Q6_K -> Q8_0), else nullopt (keep the matrix as stored).
std::optional<QType> formatForColumns(QType want, int64_t cols);

// The type activations are quantized to for a dot product with weights of type w.
QType activationType(QType w);

// An activation row quantized for dot products, in a layout of our own (same numbers as ggml's
// block_q8_0 / block_q8_K, arranged for SIMD loads): qs[n] int8; d one fp32 scale per block (for
// Q8_0 the fp16-rounded value, as ggml stores it); sums the sum of qs per block of 32 (Q8_0) or
// per 16 (Q8_K, ggml's bsums).
struct ActRow {
  const int8_t* qs = nullptr;
  const float* d = nullptr;
  const int16_t* sums = nullptr;
};
// Bytes an activation row of n values needs (qs, d and sums, each 64-byte aligned inside).
size_t actRowBytes(QType act, int64_t n);
// Quantizes x[n] into `mem` (actRowBytes(act, n) bytes, 64-byte aligned) and returns the view.
// Q8_0: ggml's quantize_row_q8_0_ref (roundf); Q8_K: quantize_row_q8_K_ref (nearest even).
ActRow quantizeActivations(QType act, const float* x, int64_t n, void* mem);

// Σ w[i] * x[i] over one weight row of n values and an activation row of activationType(w): the
// portable definition every SIMD version matches bit for bit.
float dotRow(QType w, const void* row, const ActRow& x, int64_t n);

// The fixed reduction of the eight lane accumulators.
inline float reduceLanes(const float a[8]) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// Q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scaleMinK4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace engine::quant
