// sy_quant_kernel_bench: how fast the one-token quantized dot kernels read weights, per format
// and instruction set, both from a matrix that stays in cache (the kernel's compute rate) and from
// one far larger than the caches (what a decode step sees). Prints GB/s of weight bytes. Formats
// whose blocks do not divide --n are left out.
//
//   sy_quant_kernel_bench [--n 2816] [--cached-kb 512] [--streamed-mb 512] [--threads 1]
//                         [--reps 5] [--formats q8_0,q5_0,q4_0,q4_k,q6_k]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu/quant_kernels.h"
#include "engine/quant/quant.h"

namespace {

using engine::cpu::Isa;
using engine::cpu::QuantKernels;
using engine::quant::QType;

struct Options {
  int64_t n = 2816;
  int64_t cached_kb = 512;
  int64_t streamed_mb = 512;
  int threads = 1;
  int reps = 5;
  std::string formats = "q8_0,q5_0,q4_0,q4_k,q6_k";
};

struct Matrix {
  std::vector<unsigned char> bytes;
  size_t row_bytes = 0;
  int64_t rows = 0;
};

// `rows` rows of random weights: 64 distinct quantized rows repeated (the values do not change
// the kernels' speed, and quantizing hundreds of MB would dominate the run).
Matrix makeMatrix(QType t, int64_t n, int64_t rows, std::mt19937& rng) {
  Matrix m;
  m.row_bytes = engine::quant::rowBytes(t, n);
  m.rows = rows;
  m.bytes.resize(m.row_bytes * static_cast<size_t>(rows));
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(n));
  const int64_t distinct = std::min<int64_t>(rows, 64);
  for (int64_t r = 0; r < distinct; ++r) {
    for (float& v : w) v = dist(rng);
    engine::quant::quantizeRow(t, w.data(), m.bytes.data() + m.row_bytes * size_t(r), n);
  }
  for (int64_t r = distinct; r < rows; ++r)
    std::memcpy(m.bytes.data() + m.row_bytes * size_t(r),
                m.bytes.data() + m.row_bytes * size_t(r % distinct), m.row_bytes);
  return m;
}

// Seconds for `passes` passes of `threads` threads over all rows (each thread a contiguous range,
// started once).
double timePasses(const QuantKernels& k, QType t, const Matrix& m, const engine::quant::ActRow& x,
                  int64_t n, int threads, int passes, std::vector<float>& y) {
  const auto start = std::chrono::steady_clock::now();
  auto work = [&](int i) {
    const int64_t r0 = m.rows * i / threads, r1 = m.rows * (i + 1) / threads;
    for (int p = 0; p < passes; ++p)
      for (int64_t r = r0; r < r1; ++r)
        y[size_t(r)] = k.dot(t, m.bytes.data() + m.row_bytes * size_t(r), x, n);
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work, i);
  work(0);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best-of-reps GB/s; a cached matrix is passed over often enough that a rep reads >= 400 MB.
double rate(const QuantKernels& k, QType t, const Matrix& m, const engine::quant::ActRow& x,
            const Options& o) {
  std::vector<float> y(static_cast<size_t>(m.rows));
  const double bytes = double(m.bytes.size());
  const int passes = static_cast<int>(std::max(1.0, 400e6 / bytes));
  double best = 0;
  timePasses(k, t, m, x, o.n, o.threads, 1, y);  // warm-up (page faults, caches)
  for (int rep = 0; rep < o.reps; ++rep)
    best = std::max(best, bytes * passes / timePasses(k, t, m, x, o.n, o.threads, passes, y) / 1e9);
  return best;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--n") o.n = next();
    else if (a == "--cached-kb") o.cached_kb = next();
    else if (a == "--streamed-mb") o.streamed_mb = next();
    else if (a == "--threads") o.threads = static_cast<int>(next());
    else if (a == "--reps") o.reps = static_cast<int>(next());
    else if (a == "--formats" && i + 1 < argc) o.formats = argv[++i];
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.n <= 0 || o.n % 32 != 0 || o.threads < 1 || o.reps < 1) {
    std::fprintf(stderr, "--n must be a positive multiple of 32; --threads and --reps >= 1\n");
    std::exit(2);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::mt19937 rng(7);
  std::vector<float> xf(static_cast<size_t>(o.n));
  std::normal_distribution<float> xd(0.0f, 1.0f);
  for (float& v : xf) v = xd(rng);
  std::printf("one-token dot kernels, rows of %lld values, %d thread(s); GB/s of weight bytes\n",
              static_cast<long long>(o.n), o.threads);
  std::printf("%-6s %-11s %12s %12s\n", "format", "kernels", "cached", "streamed");
  for (QType t : {QType::kQ8_0, QType::kQ5_0, QType::kQ4_0, QType::kQ4_K, QType::kQ6_K}) {
    const std::string name(engine::quant::qtypeName(t));
    if (("," + o.formats + ",").find("," + name + ",") == std::string::npos) continue;
    if (o.n % engine::quant::blockValues(t) != 0) continue;  // rows must be whole blocks
    const QType at = engine::quant::activationType(t);
    std::vector<unsigned char> mem(engine::quant::actRowBytes(at, o.n) + 64);
    void* p = mem.data() + (64 - reinterpret_cast<uintptr_t>(mem.data()) % 64) % 64;
    const engine::quant::ActRow x = engine::quant::quantizeActivations(at, xf.data(), o.n, p);
    const size_t rb = engine::quant::rowBytes(t, o.n);
    const Matrix cached = makeMatrix(t, o.n, std::max<int64_t>(1, o.cached_kb * 1024 / int64_t(rb)), rng);
    const Matrix streamed =
        makeMatrix(t, o.n, std::max<int64_t>(1, o.streamed_mb * 1000000 / int64_t(rb)), rng);
    const char* last = "";
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512Bf16}) {
      const QuantKernels& k = engine::cpu::selectQuantKernels(isa);
      if (std::strcmp(k.name, last) == 0) continue;  // this CPU has no better kernels
      last = k.name;
      std::printf("%-6s %-11s %12.1f %12.1f\n", name.c_str(), k.name,
                  rate(k, t, cached, x, o), rate(k, t, streamed, x, o));
    }
  }
  return 0;
}
