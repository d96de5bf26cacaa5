// Token and cost arithmetic that saturates at the int64_t bounds instead of overflowing: counts
// come from clients and upstreams, and a sum of two huge ones must stay huge, never wrap.
#pragma once

#include <cstdint>
#include <limits>

namespace api {

inline int64_t saturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return r;
}

inline int64_t saturatingMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min()
                              : std::numeric_limits<int64_t>::max();
  }
  return r;
}

}  // namespace api
