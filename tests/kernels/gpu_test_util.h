// Support for the kernels/ tests: skipping where there is no GPU, RAII device arrays, seeded
// random bf16 data, and an element-by-element comparison against the CPU backend that counts
// bit-identical elements and the largest error in bf16 ulps, printed as one "[ kernels ]" line
// per check so that a GPU run's log records the errors it saw.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "engine/cpu_backend.h"
#include "kernels/status.h"

namespace kernels::test {

// Whether a CUDA device can be used; `why` says why not. Clears the runtime's error state.
inline bool gpuAvailable(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e);
    cudaGetLastError();
    return false;
  }
  if (n == 0) {
    *why = "cudaGetDeviceCount returned 0 devices";
    return false;
  }
  return true;
}

// A device array of n T's, freed on destruction. Failures are recorded as test failures.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    const cudaError_t e = cudaMalloc(&p_, (n ? n : 1) * sizeof(T));
    if (e != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc(" << n * sizeof(T) << "): " << cudaGetErrorString(e);
      p_ = nullptr;
    }
  }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) { upload(v); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& v) {
    EXPECT_EQ(v.size(), n_);
    const cudaError_t e = cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice);
    EXPECT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    const cudaError_t e = cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    EXPECT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
    return v;
  }
  // All bytes 0xff: a NaN in every float, so that an element the kernel fails to write shows.
  void poison() { EXPECT_EQ(cudaMemset(p_, 0xff, n_ * sizeof(T)), cudaSuccess); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Every test: skip cleanly without a GPU; otherwise a stream of its own (the launchers must honour
// it) and the CPU backend with the portable inner loops, the reference (engine/cpu_backend.h).
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!gpuAvailable(&why)) GTEST_SKIP() << "no CUDA device: " << why;
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    engine::CpuBackendOptions o;
    o.threads = 2;
    o.isa = engine::CpuIsa::kPortable;
    cpu_ = engine::makeCpuBackend(o);
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  // Waits for the stream and fails on any error the kernels raised.
  void sync() {
    const cudaError_t e = cudaStreamSynchronize(stream_);
    ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<engine::Backend> cpu_;
  std::mt19937 rng_{20240613};
};

#define SY_ASSERT_LAUNCH(expr)                                                \
  do {                                                                        \
    const ::kernels::Status sy_st_ = (expr);                                  \
    ASSERT_TRUE(sy_st_.ok()) << #expr << ": " << ::kernels::describe(sy_st_); \
  } while (0)

// Random bf16-representable values, N(0, scale), as every activation in the model is.
inline std::vector<float> randomBf16(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = engine::roundBf16(d(rng));
  return v;
}

// The same as raw bf16 bits (a weight table as the checkpoint stores it).
inline std::vector<uint16_t> randomBf16Bits(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = engine::floatToBf16(d(rng));
  return v;
}

// One bf16 ulp at magnitude |a|: 2^(e - 7) for 2^e <= |a| < 2^(e+1), at least the spacing of bf16
// subnormals (2^-133).
inline double bf16Ulp(double a) {
  a = std::fabs(a);
  if (!(a > 0) || !std::isfinite(a)) return std::ldexp(1.0, -133);
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::max(e - 1, -126) - 7);
}

inline uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Element-by-element comparison of a GPU result with the CPU reference. Each element's error is
// measured in bf16 ulps of a magnitude the caller names (normally |ref|; for fused ops the
// magnitude of the inputs the error bound is derived from). Bitwise-equal elements (NaN with
// the same bits included) are exact; a NaN or infinity where the reference has a different
// value counts as an error of infinitely many ulps.
struct Comparison {
  std::string name;
  double tol_ulps = 0;
  int64_t n = 0, exact = 0, over = 0;
  double max_ulps = 0;
  int64_t worst = -1;
  float worst_got = 0, worst_ref = 0;

  Comparison(std::string name_, double tol) : name(std::move(name_)), tol_ulps(tol) {}

  void add(int64_t i, float got, float ref, double magnitude) {
    ++n;
    if (bitsOf(got) == bitsOf(ref)) {
      ++exact;
      return;
    }
    double ulps = std::fabs(static_cast<double>(got) - ref) / bf16Ulp(magnitude);
    if (!std::isfinite(ulps)) ulps = INFINITY;
    if (ulps > tol_ulps) ++over;
    if (ulps > max_ulps || worst < 0) {
      max_ulps = ulps;
      worst = i;
      worst_got = got;
      worst_ref = ref;
    }
  }
  void add(int64_t i, float got, float ref) { add(i, got, ref, std::fabs(ref)); }

  double exactFraction() const { return n ? static_cast<double>(exact) / n : 1.0; }

  // Prints the summary line and asserts: no element over the tolerance, and at least
  // `min_exact` of the elements bit-identical, or all but 3 for arrays too small for the
  // fraction to mean anything (a systematic deviation shows there long before it reaches the
  // tolerance; rounding-boundary flips are rare and independent).
  void check(double min_exact) const {
    std::printf("[ kernels  ] %-52s n=%-9lld bit-exact=%.5f%% max=%.3g ulp (tol %.3g)\n",
                name.c_str(), static_cast<long long>(n), 100.0 * exactFraction(), max_ulps,
                tol_ulps);
    EXPECT_GT(n, 0) << name;
    EXPECT_EQ(over, 0) << name << ": " << over << " elements over " << tol_ulps
                       << " ulps; worst at " << worst << ": " << worst_got << " vs " << worst_ref;
    const double allowed = std::max(3.0, std::floor((1.0 - min_exact) * static_cast<double>(n)));
    EXPECT_LE(static_cast<double>(n - exact), min_exact >= 1.0 ? 0.0 : allowed)
        << name << ": " << n - exact << " of " << n << " elements not bit-identical";
  }
};

}  // namespace kernels::test
