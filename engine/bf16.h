// bfloat16 and IEEE half helpers: conversion to and from float, and rounding a float to the
// nearest bf16 value (round-to-nearest-even, the rounding the spec writes as `bf16(x)`).
// Weights and activations of the Gemma engine are stored as raw 16-bit words.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace engine {

inline float bf16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round-to-nearest-even; NaN stays a (quiet) NaN, infinities stay infinite.
inline uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// bf16(x): the float nearest to x that a bf16 can hold.
inline float roundBf16(float f) { return bf16ToFloat(floatToBf16(f)); }

// IEEE 754 binary16 -> float (exact; handles subnormals, infinities and NaN).
inline float f16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: value = mant * 2^-24
      float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace engine
