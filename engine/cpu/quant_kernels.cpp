#include "engine/cpu/quant_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/bf16.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SY_HAVE_X86 1
#else
#define SY_HAVE_X86 0
#endif

namespace engine::cpu {
namespace {

using quant::ActRow;
using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;
using quant::QType;

float dotPortable(QType w, const void* row, const ActRow& x, int64_t n) {
  return quant::dotRow(w, row, x, n);
}

void dotTokensPortable(QType w, const void* row, const ActRow* x, int nt, int64_t n, float* y) {
  for (int t = 0; t < nt; ++t) y[t] = quant::dotRow(w, row, x[t], n);
}

void matmulTokensPortable(QType w, const void* rows, size_t row_bytes, int64_t nrows,
                          const ActRow* x, int nt, int64_t n, float* y, int64_t ldy) {
  for (int64_t r = 0; r < nrows; ++r)
    for (int t = 0; t < nt; ++t)
      y[t * ldy + r] =
          quant::dotRow(w, static_cast<const char*>(rows) + static_cast<size_t>(r) * row_bytes,
                        x[t], n);
}

const QuantKernels kPortable = {"portable", dotPortable, dotTokensPortable, matmulTokensPortable};

}  // namespace

#if SY_HAVE_X86
// The same kernels compiled twice, for AVX2 and for AVX-512 VNNI (quant_kernels_x86.inc).
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace qk_avx2 {
using namespace engine::quant;
using quant::ActRow;
#define SY_QK_VNNI 0
#include "engine/cpu/quant_kernels_x86.inc"
#undef SY_QK_VNNI
}  // namespace qk_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's AVX-512 headers fill unused lanes from _mm512_undefined_*(), which its own
// -W(maybe-)uninitialized then reports at every call site (fixed in GCC 13).
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
namespace qk_vnni {
using namespace engine::quant;
using quant::ActRow;
#define SY_QK_VNNI 1
#include "engine/cpu/quant_kernels_x86.inc"
#undef SY_QK_VNNI
}  // namespace qk_vnni
#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace {

const QuantKernels kAvx2 = {"avx2", qk_avx2::dot, qk_avx2::dotTokens, qk_avx2::matmulTokens};
const QuantKernels kVnni = {"avx512vnni", qk_vnni::dot, qk_vnni::dotTokens,
                            qk_vnni::matmulTokens};

bool cpuHasVnni() {
  __builtin_cpu_init();
  return cpuSupports(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}

}  // namespace
#endif

const QuantKernels& selectQuantKernels(Isa isa) {
#if SY_HAVE_X86
  static const bool has_vnni = cpuHasVnni(), has_avx2 = cpuSupports(Isa::kAvx2);
  if (isa == Isa::kAvx512Bf16 && has_vnni) return kVnni;
  if (isa != Isa::kPortable && has_avx2) return kAvx2;
#endif
  (void)isa;
  return kPortable;
}

}  // namespace engine::cpu
