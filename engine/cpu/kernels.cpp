#include "engine/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/bf16.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SY_HAVE_X86 1
#define SY_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SY_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#else
#define SY_HAVE_X86 0
#endif

namespace engine::cpu {
namespace {

// Rows of a weight tile: for prefill (n > kTokenBlock) the tile is reused by every block of
// tokens, so it should stay in L2. Decode streams each row exactly once and needs no tiling.
constexpr int kTokenBlock = 4;
constexpr int64_t kTileBytes = 256 * 1024;

// Scalar element loads, one per weight dtype.
struct Bf16W {
  using T = uint16_t;
  static float at(const T* p, int64_t i) { return bf16ToFloat(p[i]); }
};
struct F16W {
  using T = uint16_t;
  static float at(const T* p, int64_t i) { return f16ToFloat(p[i]); }
};
struct F32W {
  using T = float;
  static float at(const T* p, int64_t i) { return p[i]; }
};

inline float finish(float v, bool round) { return round ? roundBf16(v) : v; }

int64_t tileRows(const MatmulRowsArgs& a, int64_t elem_bytes) {
  if (a.n <= kTokenBlock) return int64_t{1} << 40;  // one tile: no reuse to gain
  return std::max<int64_t>(8, (kTileBytes / std::max<int64_t>(1, a.k * elem_bytes)) & ~int64_t{7});
}

// Rows [rt, re) for one block of TB tokens, RB rows per call. The RB rows of a call lie q rows
// apart (rows j, j+q, j+2q, ... for q = (re-rt)/RB), so the weights are read as RB long
// sequential streams that the hardware prefetcher follows, rather than RB short ones that
// restart every call (decode ran at half the memory bandwidth that way). Leftover rows go one
// at a time.
template <template <int, int> class Tile, int TB, int RB, class XT, class W>
void rowGroups(const XT* x, int64_t k, const W* w, int64_t rt, int64_t re, float* y, int64_t ldy,
               bool round) {
  const int64_t q = (re - rt) / RB;
  for (int64_t j = rt; j < rt + q; ++j) Tile<TB, RB>::run(x, k, w + j * k, q, y + j, ldy, round);
  for (int64_t r = rt + q * RB; r < re; ++r)
    Tile<TB, 1>::run(x, k, w + r * k, 0, y + r, ldy, round);
}

// Walks rows [r0, r1) in tiles and tokens in blocks of kTokenBlock: every weight row is read once
// per token block, from L2 after the first block. XT is the activation type the tile reads
// (float, or uint16_t for bf16 activations); kWide tiles (32 vector registers) take 4 rows at a
// time for every token block. For a given (token, row) the arithmetic is the same whatever the
// block sizes, so results do not depend on how many tokens share the call.
template <template <int, int> class Tile, class WT, class XT = float, bool kWide = false>
void walkTiles(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  const auto* w = static_cast<const typename WT::T*>(a.w);
  const int64_t tile = tileRows(a, sizeof(typename WT::T));
  const XT* xs;
  if constexpr (std::is_same_v<XT, float>)
    xs = a.x;
  else
    xs = a.xb;
  for (int64_t rt = r0; rt < r1; rt += tile) {
    const int64_t re = std::min(r1, rt + tile);
    for (int t0 = 0; t0 < a.n; t0 += kTokenBlock) {
      const XT* x = xs + t0 * a.k;
      float* y = a.y + t0 * a.ldy;
      const bool rd = a.round_bf16;
      switch (std::min(kTokenBlock, a.n - t0)) {
        case 4:
          rowGroups<Tile, 4, kWide ? 4 : 2>(x, a.k, w, rt, re, y, a.ldy, rd);
          break;
        case 3:
          rowGroups<Tile, 3, kWide ? 4 : 2>(x, a.k, w, rt, re, y, a.ldy, rd);
          break;
        case 2:
          rowGroups<Tile, 2, 4>(x, a.k, w, rt, re, y, a.ldy, rd);
          break;
        default:
          rowGroups<Tile, 1, 4>(x, a.k, w, rt, re, y, a.ldy, rd);
          break;
      }
    }
  }
}

// ---- portable ---------------------------------------------------------------------------------

template <class WT>
struct PortableTile {
  template <int TB, int RB>
  struct K {
    static void run(const float* x, int64_t k, const typename WT::T* w, int64_t rs, float* y,
                    int64_t ldy, bool round) {
      float acc[TB][RB] = {};
      for (int64_t i = 0; i < k; ++i) {
        float wv[RB];
        for (int r = 0; r < RB; ++r) wv[r] = WT::at(w + r * rs * k, i);
        for (int t = 0; t < TB; ++t) {
          const float xv = x[t * k + i];
          for (int r = 0; r < RB; ++r) acc[t][r] += xv * wv[r];
        }
      }
      for (int t = 0; t < TB; ++t)
        for (int r = 0; r < RB; ++r) y[t * ldy + r * rs] = finish(acc[t][r], round);
    }
  };
};

template <class WT>
void matmulRowsPortable(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  walkTiles<PortableTile<WT>::template K, WT>(a, r0, r1);
}

void matmulRowsPortableAny(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  switch (a.dtype) {
    case DType::kBF16:
      return matmulRowsPortable<Bf16W>(a, r0, r1);
    case DType::kF16:
      return matmulRowsPortable<F16W>(a, r0, r1);
    default:
      return matmulRowsPortable<F32W>(a, r0, r1);
  }
}

float dotBf16Portable(const float* q, const uint16_t* k, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += q[i] * bf16ToFloat(k[i]);
  return s;
}

void axpyBf16Portable(float a, const uint16_t* v, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] += a * bf16ToFloat(v[i]);
}

// gemma-spec §2.4: gelu_tanh(z) = 0.5 z (1 + tanh(y)), y = sqrt(2/pi) (z + 0.044715 z³).
// Written as z / (1 + exp(-2y)), the same function without the cancellation of 1 + tanh(y) for
// negative y; fp32 inside, as PyTorch's opmath.
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

void gegluPortable(const float* g, const float* u, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float z = g[i];
    const float y = kGeluC * (z + kGeluA * z * z * z);
    const float gelu = z / (1.0f + std::exp(-2.0f * y));
    out[i] = roundBf16(roundBf16(gelu) * u[i]);
  }
}

const Kernels kPortable = {"portable",      Isa::kPortable,   matmulRowsPortableAny, nullptr,
                           dotBf16Portable, axpyBf16Portable, gegluPortable};

// ---- AVX2 + FMA + F16C ------------------------------------------------------------------------
#if SY_HAVE_X86

SY_AVX2 inline __m256 load8(const uint16_t* p, Bf16W) {
  // bf16 is the top half of an fp32: widen to 32 bits and shift into place.
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
SY_AVX2 inline __m256 load8(const uint16_t* p, F16W) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
SY_AVX2 inline __m256 load8(const float* p, F32W) { return _mm256_loadu_ps(p); }

SY_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class WT>
struct Avx2Tile {
  template <int TB, int RB>
  struct K {
    SY_AVX2 static void run(const float* x, int64_t k, const typename WT::T* w, int64_t rs,
                            float* y, int64_t ldy, bool round) {
      __m256 acc[TB][RB];
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) acc[t][r] = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        __m256 wv[RB];
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) wv[r] = load8(w + r * rs * k + i, WT{});
#pragma GCC unroll 8
        for (int t = 0; t < TB; ++t) {
          const __m256 xv = _mm256_loadu_ps(x + t * k + i);
#pragma GCC unroll 8
          for (int r = 0; r < RB; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t) {
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) {
          float s = hsum(acc[t][r]);
          for (int64_t j = i; j < k; ++j) s += x[t * k + j] * WT::at(w + r * rs * k, j);
          y[t * ldy + r * rs] = finish(s, round);
        }
      }
    }
  };
};

template <class WT>
SY_AVX2 void matmulRowsAvx2(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  walkTiles<Avx2Tile<WT>::template K, WT>(a, r0, r1);
}

void matmulRowsAvx2Any(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  switch (a.dtype) {
    case DType::kBF16:
      return matmulRowsAvx2<Bf16W>(a, r0, r1);
    case DType::kF16:
      return matmulRowsAvx2<F16W>(a, r0, r1);
    default:
      return matmulRowsAvx2<F32W>(a, r0, r1);
  }
}

SY_AVX2 float dotBf16Avx2(const float* q, const uint16_t* k, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i, Bf16W{}), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k + i + 8, Bf16W{}), a1);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i, Bf16W{}), a0);
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += q[i] * bf16ToFloat(k[i]);
  return s;
}

SY_AVX2 void axpyBf16Avx2(float a, const uint16_t* v, float* out, int n) {
  const __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(av, load8(v + i, Bf16W{}), _mm256_loadu_ps(out + i)));
  }
  for (; i < n; ++i) out[i] += a * bf16ToFloat(v[i]);
}

// exp(x) for x in [-87, 88]: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact
// reduction), e^r by a degree-7 polynomial (the classic single-precision minimax coefficients),
// 2^n added to the exponent bits. About 1 ulp; inputs are clamped first.
SY_AVX2 inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

// bf16(x) for finite x: round to nearest even on the upper 16 bits.
SY_AVX2 inline __m256 roundBf16x8(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
  return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

SY_AVX2 void gegluAvx2(const float* g, const float* u, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 z = _mm256_loadu_ps(g + i);
    const __m256 z3 = _mm256_mul_ps(_mm256_mul_ps(z, z), z);
    const __m256 y =
        _mm256_mul_ps(_mm256_set1_ps(kGeluC), _mm256_fmadd_ps(_mm256_set1_ps(kGeluA), z3, z));
    const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), y));
    const __m256 gelu = _mm256_div_ps(z, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(out + i,
                     roundBf16x8(_mm256_mul_ps(roundBf16x8(gelu), _mm256_loadu_ps(u + i))));
  }
  gegluPortable(g + i, u + i, n - i, out + i);
}

const Kernels kAvx2 = {"avx2",      Isa::kAvx2,   matmulRowsAvx2Any, nullptr,
                       dotBf16Avx2, axpyBf16Avx2, gegluAvx2};

// ---- AVX-512 BF16 -----------------------------------------------------------------------------
// VDPBF16PS multiplies pairs of bf16 (exactly, in fp32) and adds them into fp32 lanes: 32 weights
// per instruction and no widening, for BF16 weights times activations that are bf16 already
// (every matmul input in Gemma is, §6.1).

SY_AVX512 inline float hsum512(__m512 v) {
  // Through memory: GCC 12 warns on the 512->256 extract intrinsics. Once per output; a fixed
  // pairwise order.
  alignas(64) float l[16];
  _mm512_store_ps(l, v);
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) l[i] += l[i + w];
  return l[0];
}

// One masked step of up to 32 elements at column i: masked-off lanes load zeros, which add
// nothing.
template <int TB, int RB>
SY_AVX512 inline void step(__m512 (&acc)[TB][RB], const uint16_t* x, int64_t k, const uint16_t* w,
                           int64_t rs, int64_t i, __mmask32 m) {
  __m512bh wv[RB];
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * rs * k + i);
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t) {
    const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + t * k + i);
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], xv, wv[r]);
  }
}

struct Avx512Bf16Tile {
  template <int TB, int RB>
  struct K {
    SY_AVX512 static void run(const uint16_t* x, int64_t k, const uint16_t* w, int64_t rs, float* y,
                              int64_t ldy, bool round) {
      __m512 acc[TB][RB];
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) acc[t][r] = _mm512_setzero_ps();
      // Streaming 64-byte loads that straddle cache lines cost a third of the bandwidth, and
      // tensors in a checkpoint are rarely 64-byte aligned. When every row of the matrix has the
      // same alignment (row bytes a multiple of 64, as in all Gemma shapes), a masked head brings
      // the loads onto line boundaries. The head depends only on the matrix, so a row's result
      // still does not depend on the rows or tokens it is computed with.
      int64_t i = 0;
      const uintptr_t addr = reinterpret_cast<uintptr_t>(w);
      if ((k * 2) % 64 == 0 && (addr & 63) != 0 && (addr & 1) == 0) {
        const int64_t head = std::min<int64_t>(k, static_cast<int64_t>((64 - (addr & 63)) / 2));
        step<TB, RB>(acc, x, k, w, rs, 0, static_cast<__mmask32>((uint64_t{1} << head) - 1));
        i = head;
      }
      for (; i + 32 <= k; i += 32) {
        __m512bh wv[RB];
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * rs * k + i);
#pragma GCC unroll 8
        for (int t = 0; t < TB; ++t) {
          const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * k + i);
#pragma GCC unroll 8
          for (int r = 0; r < RB; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], xv, wv[r]);
        }
      }
      if (i < k)
        step<TB, RB>(acc, x, k, w, rs, i, static_cast<__mmask32>((uint64_t{1} << (k - i)) - 1));
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r) y[t * ldy + r * rs] = finish(hsum512(acc[t][r]), round);
    }
  };
};

SY_AVX512 void matmulRowsAvx512Bf16(const MatmulRowsArgs& a, int64_t r0, int64_t r1) {
  walkTiles<Avx512Bf16Tile::template K, Bf16W, uint16_t, true>(a, r0, r1);
}

const Kernels kAvx512Bf16 = {
    "avx512bf16", Isa::kAvx512Bf16, matmulRowsAvx2Any, matmulRowsAvx512Bf16,
    dotBf16Avx2,  axpyBf16Avx2,     gegluAvx2};

bool cpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool cpuHasAvx512Bf16() {
  __builtin_cpu_init();
  return cpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}
#endif

}  // namespace

bool cpuSupports(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return true;
#if SY_HAVE_X86
    case Isa::kAvx2:
      return cpuHasAvx2();
    case Isa::kAvx512Bf16:
      return cpuHasAvx512Bf16();
#endif
    default:
      return false;
  }
}

const Kernels& selectKernels(Isa isa) {
#if SY_HAVE_X86
  static const bool has_avx512 = cpuHasAvx512Bf16(), has_avx2 = cpuHasAvx2();
  if (isa == Isa::kAvx512Bf16 && has_avx512) return kAvx512Bf16;
  if (isa != Isa::kPortable && has_avx2) return kAvx2;
#endif
  (void)isa;
  return kPortable;
}

}  // namespace engine::cpu
