#include "engine/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/bf16.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/quant_kernels.h"
#include "engine/cpu/thread_pool.h"

namespace engine {
namespace {

using api::ErrorCode;
using api::Status;
using api::StatusOr;

constexpr size_t kAlign = 64;

// bf16(tanh(v)) for every bf16 value v, indexed by v's bits (NaN in, NaN out); built once.
const uint16_t* bf16TanhTable() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(65536);
    for (uint32_t h = 0; h < t.size(); ++h)
      t[h] = floatToBf16(std::tanh(bf16ToFloat(static_cast<uint16_t>(h))));
    return t;
  }();
  return table.data();
}

// Host memory, 64-byte aligned. From 2 MB on it is its own anonymous mapping, 2 MB aligned and
// marked for transparent huge pages (a hint: where the kernel declines, 4 KB pages), so that
// weights streamed through it cost a TLB miss per 2 MB rather than per 4 KB.
class HostBuffer final : public Buffer {
 public:
  static constexpr size_t kHuge = size_t{2} << 20;

  explicit HostBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes < kHuge) {
      const size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
      data_ = std::aligned_alloc(kAlign, rounded);
      if (!data_) throw std::bad_alloc();
      return;
    }
    mapped_ = (bytes + kHuge - 1) / kHuge * kHuge + kHuge;  // room to align the start
    void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    map_ = p;
    data_ = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1));
#ifdef MADV_HUGEPAGE
    madvise(data_, mapped_ - kHuge, MADV_HUGEPAGE);
#endif
  }
  ~HostBuffer() override {
    if (map_)
      ::munmap(map_, mapped_);
    else
      std::free(data_);
  }
  void* data() override { return data_; }
  size_t bytes() const override { return bytes_; }

 private:
  void* data_ = nullptr;
  void* map_ = nullptr;  // the mapping of a buffer of kHuge and more
  size_t bytes_, mapped_ = 0;
};

// MemAvailable of /proc/meminfo: what the kernel can hand out without swapping, page cache
// included. nullopt where it cannot be read.
std::optional<uint64_t> availableMemoryBytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return std::nullopt;
  char line[256];
  std::optional<uint64_t> kb;
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long v = 0;
    if (std::sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
      kb = v;
      break;
    }
  }
  std::fclose(f);
  if (!kb) return std::nullopt;
  return *kb * 1024;
}

cpu::Isa toIsa(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable:
      return cpu::Isa::kPortable;
    case CpuIsa::kAvx2:
      return cpu::Isa::kAvx2;
    default:
      return cpu::Isa::kAvx512Bf16;
  }
}

bool supportedDtype(DType d) { return d == DType::kBF16 || d == DType::kF16 || d == DType::kF32; }

// Asks the kernel to reclaim the pages of a matrix that will not be read again (the stored
// matrix once its quantized copy exists), so that quantizing on load does not keep both
// resident: MADV_PAGEOUT drops clean file-mapped pages (a later touch reads the file again) and
// never loses data (anonymous memory would go to swap or stay). Whole pages only; a hint.
void releasePages(const void* p, size_t bytes) {
#ifdef MADV_PAGEOUT
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_PAGEOUT);
#else
  (void)p;
  (void)bytes;
#endif
}

// Bytes of one row of a prepared matrix, whatever its format.
size_t matrixRowBytes(const WeightRef& w) {
  if (auto q = quant::qtypeOf(w.dtype)) return quant::rowBytes(*q, w.cols);
  return static_cast<size_t>(w.cols) * dtypeSize(w.dtype);
}

float loadElem(const WeightRef& w, int64_t i) {
  switch (w.dtype) {
    case DType::kBF16:
      return bf16ToFloat(static_cast<const uint16_t*>(w.data)[i]);
    case DType::kF16:
      return f16ToFloat(static_cast<const uint16_t*>(w.data)[i]);
    default:
      return static_cast<const float*>(w.data)[i];
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& o)
      : pool_(o.threads > 0 ? o.threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
        k_(cpu::selectKernels(toIsa(o.isa))),
        qk_(cpu::selectQuantKernels(toIsa(o.isa))),
        quantize_(o.quantize),
        copy_quantized_(o.copy_quantized) {}

  using Backend::matmul;

  std::string name() const override {
    return std::string("cpu (") + k_.name + ", " + std::to_string(pool_.threads()) + " threads)";
  }

  std::unique_ptr<Buffer> alloc(size_t bytes) override {
    return std::make_unique<HostBuffer>(bytes);
  }
  void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) override {
    assert(offset + bytes <= dst.bytes());
    if (bytes) std::memcpy(static_cast<char*>(dst.data()) + offset, src, bytes);
  }
  void download(void* dst, const Buffer& src, size_t offset, size_t bytes) override {
    assert(offset + bytes <= src.bytes());
    if (bytes)
      std::memcpy(dst, static_cast<const char*>(const_cast<Buffer&>(src).data()) + offset, bytes);
  }
  void copy(Buffer& dst, size_t dst_offset, const Buffer& src, size_t src_offset,
            size_t bytes) override {
    assert(dst_offset + bytes <= dst.bytes() && src_offset + bytes <= src.bytes());
    if (bytes)
      std::memcpy(static_cast<char*>(dst.data()) + dst_offset,
                  static_cast<const char*>(const_cast<Buffer&>(src).data()) + src_offset, bytes);
  }

  StatusOr<WeightRef> prepareMatrix(const Weight& w) override { return prepare2d(w, copy_quantized_); }
  StatusOr<WeightRef> prepareRowTable(const Weight& w) override { return prepare2d(w, false); }

  StatusOr<WeightRef> prepare2d(const Weight& w, bool copy) {
    // Already block-quantized (a GGUF file): used as stored, whatever options.quantize says
    // (copied into huge pages with `copy`).
    if (auto q = quant::qtypeOf(w.dtype); q && w.shape.size() == 2) {
      if (w.shape[1] % quant::blockValues(*q) != 0 ||
          w.bytes != quant::rowBytes(*q, w.shape[1]) * static_cast<size_t>(w.shape[0]))
        return Status(ErrorCode::kConfig, "tensor " + w.name + " in " + w.file +
                                              ": rows are not whole " +
                                              std::string(dtypeName(w.dtype)) + " blocks");
      const WeightRef stored{w.data, w.dtype, w.shape[0], w.shape[1]};
      return copy ? copied(stored) : stored;
    }
    if (!supportedDtype(w.dtype))
      return Status(ErrorCode::kConfig, "tensor " + w.name + " in " + w.file + ": dtype " +
                                            std::string(dtypeName(w.dtype)) + " not supported");
    if (w.shape.size() != 2)
      return Status(ErrorCode::kConfig, "tensor " + w.name + " in " + w.file + ": not a matrix");
    return maybeQuantize(WeightRef{w.data, w.dtype, w.shape[0], w.shape[1]});
  }

  StatusOr<WeightRef> prepareNorm1p(const Weight& w) override {
    if (!supportedDtype(w.dtype) || w.shape.size() != 1)
      return Status(ErrorCode::kConfig,
                    "tensor " + w.name + " in " + w.file + ": expected a 1-D BF16/F16/F32 vector");
    const int64_t n = w.shape[0];
    auto& buf = owned_.emplace_back(alloc(static_cast<size_t>(n) * sizeof(float)));
    float* p = buf->f32();
    // gemma-spec §2.2: (1 + w) in fp32; never round it to bf16.
    for (int64_t i = 0; i < n; ++i) p[i] = 1.0f + w.at(i);
    return WeightRef{p, DType::kF32, 1, n};
  }

  StatusOr<WeightRef> prepareVector(const Weight& w) override {
    if (!supportedDtype(w.dtype) || w.shape.size() != 1)
      return Status(ErrorCode::kConfig,
                    "tensor " + w.name + " in " + w.file + ": expected a 1-D BF16/F16/F32 vector");
    const int64_t n = w.shape[0];
    auto& buf = owned_.emplace_back(alloc(static_cast<size_t>(n) * sizeof(float)));
    float* p = buf->f32();
    for (int64_t i = 0; i < n; ++i) p[i] = w.at(i);  // exact: every stored dtype fits in fp32
    return WeightRef{p, DType::kF32, 1, n};
  }

  StatusOr<WeightRef> prepareExperts(const Weight& w) override {
    // Block-quantized in a GGUF file: each expert's rows used as stored.
    if (auto q = quant::qtypeOf(w.dtype); q && w.shape.size() == 3) {
      const int64_t rows = w.shape[0] * w.shape[1];
      if (w.shape[2] % quant::blockValues(*q) != 0 ||
          w.bytes != quant::rowBytes(*q, w.shape[2]) * static_cast<size_t>(rows))
        return Status(ErrorCode::kConfig, "tensor " + w.name + " in " + w.file +
                                              ": rows are not whole " +
                                              std::string(dtypeName(w.dtype)) + " blocks");
      const WeightRef stored{w.data, w.dtype, rows, w.shape[2]};
      return copy_quantized_ ? copied(stored) : stored;
    }
    if (!supportedDtype(w.dtype) || w.shape.size() != 3)
      return Status(ErrorCode::kConfig, "tensor " + w.name + " in " + w.file +
                                            ": expected a 3-D BF16/F16/F32 expert stack");
    return maybeQuantize(WeightRef{w.data, w.dtype, w.shape[0] * w.shape[1], w.shape[2]});
  }

  void embed(const int32_t* ids, int n, const WeightRef& table, float scale, float* out) override {
    const int64_t H = table.cols;
    parallelFor(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, H)),
                [&](int64_t b, int64_t e) {
                  for (int64_t i = b; i < e; ++i) {
                    assert(ids[i] >= 0 && ids[i] < table.rows);
                    const int64_t base = static_cast<int64_t>(ids[i]) * H;
                    float* o = out + i * H;
                    if (auto q = quant::qtypeOf(table.dtype)) {
                      quant::dequantizeRow(*q,
                                           static_cast<const char*>(table.data) +
                                               static_cast<size_t>(ids[i]) * matrixRowBytes(table),
                                           o, H);
                      for (int64_t j = 0; j < H; ++j) o[j] = roundBf16(o[j] * scale);
                      continue;
                    }
                    // gemma-spec §2.1: the scale is bf16(sqrt(H)) and the product is rounded to
                    // bf16.
                    for (int64_t j = 0; j < H; ++j)
                      o[j] = roundBf16(loadElem(table, base + j) * scale);
                  }
                });
  }

  void matmul(const float* x, int n, std::span<const MatmulTarget> targets,
              bool round_bf16) override {
    if (n <= 0 || targets.empty()) return;
    // Output rows of every target are cut into chunks that the pool hands out; several chunks
    // per thread so that a thread the OS delays does not stall the step.
    assert(std::all_of(targets.begin(), targets.end(),
                       [&](const MatmulTarget& t) { return t.w->cols == targets[0].w->cols; }));
    cutChunks(targets);
    quantizeActivations(x, n, targets);
    const uint16_t* xb = nullptr;
    if (k_.matmul_rows_bf16) {
      bool any_bf16 = false;
      for (const auto& t : targets) any_bf16 |= t.w->dtype == DType::kBF16;
      if (any_bf16) xb = toBf16IfExact(x, int64_t{n} * targets[0].w->cols);
    }
    const auto& chunks = chunks_;
    pool_.run(static_cast<int>(chunks.size()), [&](int c) {
      const MatmulChunk& ch = chunks[static_cast<size_t>(c)];
      const WeightRef& w = *targets[static_cast<size_t>(ch.target)].w;
      cpu::MatmulRowsArgs a;
      a.x = x;
      a.xb = xb;
      a.n = n;
      a.k = w.cols;
      a.w = w.data;
      a.dtype = w.dtype;
      a.y = targets[static_cast<size_t>(ch.target)].y;
      a.ldy = w.rows;
      a.round_bf16 = round_bf16;
      if (auto q = quant::qtypeOf(w.dtype)) {
        matmulQuantRows(*q, w, n, a.y, a.ldy, round_bf16, ch.r0, ch.r1);
      } else if (xb && w.dtype == DType::kBF16) {
        k_.matmul_rows_bf16(a, ch.r0, ch.r1);
      } else {
        k_.matmul_rows(a, ch.r0, ch.r1);
      }
    });
  }

  // Output rows of every target cut into chunks_ that the pool hands out; several chunks per
  // thread so that a thread the OS delays does not stall the step.
  void cutChunks(std::span<const MatmulTarget> targets) {
    chunks_.clear();
    int64_t total_rows = 0;
    for (const auto& t : targets) total_rows += t.w->rows;
    const int64_t want = static_cast<int64_t>(pool_.threads()) * 4;
    const int64_t per = std::max<int64_t>(16, (total_rows + want - 1) / want + 15) & ~int64_t{15};
    for (size_t ti = 0; ti < targets.size(); ++ti)
      for (int64_t r = 0; r < targets[ti].w->rows; r += per)
        chunks_.push_back({static_cast<int>(ti), r, std::min(targets[ti].w->rows, r + per)});
  }

  // One token through block-quantized targets that each have their own input row xs[t] (the
  // chosen experts' down projections of a decode step): one pool run for all of them. Each
  // value is the one-token dot product matmul() computes.
  void matvecEach(const float* const* xs, std::span<const MatmulTarget> targets, bool round_bf16) {
    cutChunks(targets);
    size_t total = 0;
    for (const auto& t : targets)
      total += quant::actRowBytes(quant::activationType(*quant::qtypeOf(t.w->dtype)), t.w->cols);
    if (!each_mem_ || each_mem_->bytes() < total) each_mem_ = alloc(total);
    each_act_.resize(targets.size());
    char* mem = static_cast<char*>(each_mem_->data());
    for (size_t t = 0; t < targets.size(); ++t) {
      const quant::QType at = quant::activationType(*quant::qtypeOf(targets[t].w->dtype));
      each_act_[t] = quant::quantizeActivations(at, xs[t], targets[t].w->cols, mem);
      mem += quant::actRowBytes(at, targets[t].w->cols);
    }
    const auto& chunks = chunks_;
    pool_.run(static_cast<int>(chunks.size()), [&](int c) {
      const MatmulChunk& ch = chunks[static_cast<size_t>(c)];
      const WeightRef& w = *targets[static_cast<size_t>(ch.target)].w;
      const quant::QType q = *quant::qtypeOf(w.dtype);
      const size_t row_bytes = quant::rowBytes(q, w.cols);
      const char* base = static_cast<const char*>(w.data);
      float* y = targets[static_cast<size_t>(ch.target)].y;
      for (int64_t r = ch.r0; r < ch.r1; ++r) {
        const float v = qk_.dot(q, base + static_cast<size_t>(r) * row_bytes,
                                each_act_[static_cast<size_t>(ch.target)], w.cols);
        y[r] = round_bf16 ? roundBf16(v) : v;
      }
    });
  }

  void rmsnorm1p(const float* x, int64_t rows, int64_t cols, const WeightRef& w1p, float eps,
                 float* out) override {
    normRows(x, rows, cols, w1p, eps, out, false);
  }
  void rmsnorm1pAdd(const float* x, int64_t rows, int64_t cols, const WeightRef& w1p, float eps,
                    float* residual) override {
    normRows(x, rows, cols, w1p, eps, residual, true);
  }

  void rmsnormNoScale(const float* x, int64_t rows, int64_t cols, float eps, float* out) override {
    normRows(x, rows, cols, WeightRef{}, eps, out, false);
  }

  void ropeTable(const int32_t* pos, int n, int head_dim, const RopeParams& rope,
                 float* table) override {
    const int half = head_dim / 2;
    const int rotated = std::min(half, rope.rotatedPairs(head_dim));
    inv_freq_.assign(static_cast<size_t>(half), 0.0f);  // §3.4: pairs >= rotated stay put
    for (int j = 0; j < rotated; ++j) {
      // fp32 throughout, as HF computes the table with autocast disabled (§2.3).
      const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim);
      inv_freq_[static_cast<size_t>(j)] =
          (1.0f / std::pow(static_cast<float>(rope.base), exponent)) /
          static_cast<float>(rope.factor);
    }
    const float* inv = inv_freq_.data();
    parallelFor(n, std::max(1, 8192 / std::max(1, head_dim)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float* c = table + i * head_dim;
        for (int j = 0; j < half; ++j) {
          const float ang = static_cast<float>(pos[i]) * inv[j];
          c[j] = roundBf16(std::cos(ang));  // HF rounds cos/sin to bf16 (§2.3, §6.1)
          c[half + j] = roundBf16(std::sin(ang));
        }
      }
    });
  }

  void rope(float* x, int n, int n_heads, int head_dim, const float* table) override {
    const int half = head_dim / 2;
    parallelFor(int64_t{n} * n_heads, std::max(1, 8192 / std::max(1, head_dim)),
                [&](int64_t b, int64_t e) {
                  for (int64_t r = b; r < e; ++r) {
                    float* v = x + r * head_dim;
                    const float* c = table + (r / n_heads) * head_dim;
                    const float* s = c + half;
                    for (int j = 0; j < half; ++j) {
                      const float x1 = v[j], x2 = v[j + half];
                      // gemma-spec §2.3: q*cos + rotate_half(q)*sin, every op on bf16 tensors.
                      v[j] = roundBf16(roundBf16(x1 * c[j]) + roundBf16(-x2 * s[j]));
                      v[j + half] = roundBf16(roundBf16(x2 * c[j]) + roundBf16(x1 * s[j]));
                    }
                  }
                });
  }

  void writeKv(const float* k, const float* v, int n, int pos0, int kv_dim,
               const KvLayerView& kv) override {
    assert(n <= kv.capacity);
    for (int i = 0; i < n; ++i) {
      const int pos = pos0 + i;
      const int64_t row = kvRow(kv, pos % kv.capacity);
      uint16_t* kd = kv.k + row * kv_dim;
      uint16_t* vd = kv.v + row * kv_dim;
      const float* ks = k + static_cast<int64_t>(i) * kv_dim;
      const float* vs = v + static_cast<int64_t>(i) * kv_dim;
      for (int j = 0; j < kv_dim; ++j) {
        kd[j] = floatToBf16(ks[j]);
        vd[j] = floatToBf16(vs[j]);
      }
      kv.slot_pos[row] = pos;
    }
  }

  void attention(const AttentionShape& sh, std::span<const AttentionSeq> seqs) override;

  void geglu(const float* gate, const float* up, int64_t n, float* out) override {
    parallelFor(n, 16384,
                [&](int64_t b, int64_t e) { k_.geglu(gate + b, up + b, e - b, out + b); });
  }

  void gegluStrided(const float* gate, const float* up, int64_t rows, int64_t cols,
                    int64_t up_stride, float* out) override {
    parallelFor(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)),
                [&](int64_t b, int64_t e) {
                  for (int64_t r = b; r < e; ++r)
                    k_.geglu(gate + r * cols, up + r * up_stride, cols, out + r * cols);
                });
  }

  void scale(float* x, int64_t n, float s) override {
    parallelFor(n, 65536, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] = engine::roundBf16(x[i] * s);
    });
  }

  void add(const float* a, const float* b, int64_t n, float* out) override {
    parallelFor(n, 65536, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) out[i] = engine::roundBf16(a[i] + b[i]);
    });
  }

  void mulVector(float* x, int64_t rows, int64_t cols, const WeightRef& v) override {
    assert(v.dtype == DType::kF32 && (v.cols == cols || v.cols == 1));
    const float* w = static_cast<const float*>(v.data);
    const bool broadcast = v.cols == 1;
    parallelFor(rows * cols, 65536, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        x[i] = engine::roundBf16(x[i] * w[broadcast ? 0 : i % cols]);
    });
  }

  // cap * tanh(x / cap) with bf16 rounding after each step. tanh only ever sees a bf16, so it is
  // looked up (bf16TanhTable) rather than computed: the same results, without 262,144 tanh
  // calls per decode step over the vocabulary.
  void softcap(float* x, int64_t n, float cap) override {
    const uint16_t* tanh_bf16 = bf16TanhTable();
    parallelFor(n, 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float t = bf16ToFloat(tanh_bf16[floatToBf16(x[i] / cap)]);
        x[i] = engine::roundBf16(t * cap);
      }
    });
  }

  void moeRoute(const float* logits, int n, int n_expert, int top_k,
                const WeightRef& per_expert_scale, int32_t* idx, float* weights) override;
  void moeExperts(const float* x, int n, const int32_t* idx, const float* weights, int top_k,
                  int n_expert, const WeightRef& gate_up, const WeightRef& down,
                  float* out) override;

  void gatherRows(const float* src, const int32_t* rows, int n, int64_t cols, float* dst) override {
    for (int i = 0; i < n; ++i)
      std::memcpy(dst + i * cols, src + static_cast<int64_t>(rows[i]) * cols,
                  static_cast<size_t>(cols) * sizeof(float));
  }

  void roundBf16(float* x, int64_t n) override {
    parallelFor(n, 65536, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] = engine::roundBf16(x[i]);
    });
  }

 private:
  static float roundBf16(float v) { return engine::roundBf16(v); }

  // Calls fn(begin, end) over [0, n) in pieces of at least `grain`, on the pool when there is
  // more than one piece.
  template <class F>
  void parallelFor(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    const int64_t max_pieces = static_cast<int64_t>(pool_.threads()) * 4;
    const int64_t pieces = std::min(max_pieces, (n + grain - 1) / std::max<int64_t>(1, grain));
    if (pieces <= 1) return fn(int64_t{0}, n);
    const int64_t step = (n + pieces - 1) / pieces;
    pool_.run(static_cast<int>((n + step - 1) / step), [&](int p) {
      const int64_t b = p * step;
      fn(b, std::min(n, b + step));
    });
  }

  // x as bf16 in xb_, or null when some value is not exactly a bf16 (then the fp32 kernels run;
  // in the model every matmul input is a bf16 value, §6.1).
  const uint16_t* toBf16IfExact(const float* x, int64_t n) {
    if (xb_.size() < static_cast<size_t>(n)) xb_.resize(static_cast<size_t>(n));
    uint16_t* xb = xb_.data();
    std::atomic<bool> exact{true};
    parallelFor(n, 65536, [&](int64_t b, int64_t e) {
      bool ok = true;
      for (int64_t i = b; i < e; ++i) {
        xb[i] = floatToBf16(x[i]);
        ok &= bf16ToFloat(xb[i]) == x[i];
      }
      if (!ok) exact.store(false, std::memory_order_relaxed);
    });
    return exact.load() ? xb : nullptr;
  }

  // A block-quantized matrix of the mapping copied into owned memory (huge pages) in parallel,
  // the mapping's pages handed back (copy_quantized). Left in the mapping when the copy would not
  // fit in the memory the system has available (page cache counts as available: the file's own
  // pages are handed back as they are copied), so that a model near the machine's memory still
  // loads, read through the page cache.
  WeightRef copied(const WeightRef& w) {
    const size_t bytes = matrixRowBytes(w) * static_cast<size_t>(w.rows);
    constexpr uint64_t kReserve = uint64_t{512} << 20;  // left to the rest of the process
    if (const auto avail = availableMemoryBytes(); avail && *avail < bytes + kReserve) return w;
    auto& buf = owned_.emplace_back(alloc(bytes));
    char* dst = static_cast<char*>(buf->data());
    const char* src = static_cast<const char*>(w.data);
    constexpr int64_t kPiece = int64_t{1} << 20;
    parallelFor((static_cast<int64_t>(bytes) + kPiece - 1) / kPiece, 1, [&](int64_t b, int64_t e) {
      const size_t lo = static_cast<size_t>(b * kPiece);
      const size_t hi = std::min(bytes, static_cast<size_t>(e * kPiece));
      std::memcpy(dst + lo, src + lo, hi - lo);
    });
    releasePages(w.data, bytes);
    return WeightRef{dst, w.dtype, w.rows, w.cols};
  }

  // The matrix itself, or (with options.quantize) a block-quantized copy in owned memory; rows
  // are quantized in parallel, each as quant::quantizeRow does.
  StatusOr<WeightRef> maybeQuantize(const WeightRef& w) {
    if (!quantize_) return w;
    const std::optional<quant::QType> q = quant::formatForColumns(*quantize_, w.cols);
    if (!q) return w;
    const size_t row_bytes = quant::rowBytes(*q, w.cols);
    auto& buf = owned_.emplace_back(alloc(row_bytes * static_cast<size_t>(w.rows)));
    char* dst = static_cast<char*>(buf->data());
    const size_t src_row = static_cast<size_t>(w.cols) * dtypeSize(w.dtype);
    parallelFor(w.rows, 16, [&](int64_t b, int64_t e) {
      std::vector<float> row(static_cast<size_t>(w.cols));
      for (int64_t r = b; r < e; ++r) {
        const WeightRef one{static_cast<const char*>(w.data) + static_cast<size_t>(r) * src_row,
                            w.dtype, 1, w.cols};
        for (int64_t j = 0; j < w.cols; ++j) row[static_cast<size_t>(j)] = loadElem(one, j);
        quant::quantizeRow(*q, row.data(), dst + static_cast<size_t>(r) * row_bytes, w.cols);
      }
    });
    releasePages(w.data, src_row * static_cast<size_t>(w.rows));
    return WeightRef{dst, *quant::dtypeOf(*q), w.rows, w.cols};
  }

  // x [n, k] as int8 rows for every activation type the block-quantized targets need, once per
  // matmul() call (act_[type][t] is token t's row).
  void quantizeActivations(const float* x, int n, std::span<const MatmulTarget> targets) {
    for (const auto& t : targets) {
      const auto q = quant::qtypeOf(t.w->dtype);
      if (!q) continue;
      const quant::QType at = quant::activationType(*q);
      const size_t slot = at == quant::QType::kQ8_0 ? 0 : 1;
      if (act_done_[slot]) continue;
      act_done_[slot] = true;
      const int64_t k = t.w->cols;
      const size_t row_bytes = quant::actRowBytes(at, k);
      if (!act_mem_[slot] || act_mem_[slot]->bytes() < row_bytes * static_cast<size_t>(n))
        act_mem_[slot] = alloc(row_bytes * static_cast<size_t>(n));
      act_[slot].resize(static_cast<size_t>(n));
      char* mem = static_cast<char*>(act_mem_[slot]->data());
      quant::ActRow* rows = act_[slot].data();
      parallelFor(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k)),
                  [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; ++i)
                      rows[i] = quant::quantizeActivations(
                          at, x + i * k, k, mem + static_cast<size_t>(i) * row_bytes);
                  });
    }
    act_done_[0] = act_done_[1] = false;
  }

  // y[t, r] for rows [r0, r1) of a block-quantized matrix and every token t < n. One token goes
  // row by row through the one-token kernel; several go through QuantKernels::matmulTokens, which
  // unpacks each weight block once per group of tokens. Each (t, r) is the same dot product
  // either way, so batching never changes a result.
  void matmulQuantRows(quant::QType q, const WeightRef& w, int n, float* y, int64_t ldy, bool round,
                       int64_t r0, int64_t r1) const {
    const size_t row_bytes = quant::rowBytes(q, w.cols);
    const quant::ActRow* acts =
        act_[quant::activationType(q) == quant::QType::kQ8_0 ? 0 : 1].data();
    const char* base = static_cast<const char*>(w.data);
    if (n == 1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float v = qk_.dot(q, base + static_cast<size_t>(r) * row_bytes, acts[0], w.cols);
        y[r] = round ? roundBf16(v) : v;
      }
      return;
    }
    qk_.matmulTokens(q, base + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, acts, n,
                     w.cols, y + r0, ldy);
    if (round)
      for (int t = 0; t < n; ++t)
        for (int64_t r = r0; r < r1; ++r) y[t * ldy + r] = roundBf16(y[t * ldy + r]);
  }

  // w1p.data == null: no weight (rmsnormNoScale).
  void normRows(const float* x, int64_t rows, int64_t cols, const WeightRef& w1p, float eps,
                float* out, bool add) {
    assert(w1p.data == nullptr || (w1p.dtype == DType::kF32 && w1p.cols == cols));
    const float* w = static_cast<const float*>(w1p.data);
    parallelFor(
        rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)), [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            const float* xr = x + r * cols;
            float* o = out + r * cols;
            double ss = 0;  // the mean of squares, accumulated more precisely than fp32 needs
            for (int64_t j = 0; j < cols; ++j) ss += static_cast<double>(xr[j]) * xr[j];
            const float ms = static_cast<float>(ss / static_cast<double>(cols));
            const float inv = 1.0f / std::sqrt(ms + eps);
            if (w == nullptr) {
              for (int64_t j = 0; j < cols; ++j) o[j] = roundBf16(xr[j] * inv);
            } else if (add) {
              for (int64_t j = 0; j < cols; ++j)
                o[j] = roundBf16(o[j] + roundBf16(xr[j] * inv * w[j]));
            } else {
              for (int64_t j = 0; j < cols; ++j) o[j] = roundBf16(xr[j] * inv * w[j]);
            }
          }
        });
  }

  struct MatmulChunk {
    int target;
    int64_t r0, r1;
  };
  struct AttnTask {
    int seq, query, kv_head;
  };

  cpu::ThreadPool pool_;
  const cpu::Kernels& k_;
  const cpu::QuantKernels& qk_;
  const std::optional<quant::QType> quantize_;
  const bool copy_quantized_;
  // Quantized activations of the current matmul() call: [0] Q8_0 rows, [1] Q8_K rows.
  std::unique_ptr<Buffer> act_mem_[2];
  std::vector<quant::ActRow> act_[2];
  bool act_done_[2] = {false, false};
  std::vector<std::unique_ptr<Buffer>> owned_;  // prepared (1 + w) norm weights
  std::vector<float> inv_freq_;
  std::vector<MatmulChunk> chunks_;  // work items of the current call, kept to reuse the memory
  std::vector<AttnTask> attn_tasks_;
  std::vector<uint16_t> xb_;  // matmul activations as bf16
  // moeExperts scratch: per expert, the (token, slot) pairs routed to it, and the activations.
  std::vector<std::vector<std::pair<int, int>>> expert_rows_;
  std::vector<int32_t> moe_tokens_;
  std::vector<float> moe_x_, moe_gu_, moe_act_, moe_y_;
  // moeExpertsOneToken / matvecEach scratch: the chosen experts' matrices, and each input row
  // quantized.
  std::vector<std::pair<int, int>> moe_chosen_;  // (expert, slot k) in ascending expert id
  std::vector<WeightRef> moe_refs_;
  std::vector<MatmulTarget> moe_targets_;
  std::vector<const float*> moe_inputs_;
  std::unique_ptr<Buffer> each_mem_;
  std::vector<quant::ActRow> each_act_;

  void moeExpertsOneToken(const float* x, const int32_t* idx, const float* weights, int top_k,
                          int n_expert, const WeightRef& gate_up, const WeightRef& down,
                          float* out);
};

void CpuBackend::moeRoute(const float* logits, int n, int n_expert, int top_k,
                          const WeightRef& per_expert_scale, int32_t* idx, float* weights) {
  assert(per_expert_scale.dtype == DType::kF32 && per_expert_scale.cols == n_expert);
  const float* pes = static_cast<const float*>(per_expert_scale.data);
  parallelFor(n, 16, [&](int64_t b, int64_t e) {
    std::vector<float> p(static_cast<size_t>(n_expert));
    std::vector<int> order(static_cast<size_t>(n_expert));
    for (int64_t t = b; t < e; ++t) {
      const float* z = logits + t * n_expert;
      // HF runs softmax on the bf16 logits (fp32 inside, bf16 out) and top-k on the bf16 result.
      float m = -std::numeric_limits<float>::infinity(), sum = 0;
      for (int j = 0; j < n_expert; ++j) m = std::max(m, z[j]);
      for (int j = 0; j < n_expert; ++j) sum += (p[size_t(j)] = std::exp(z[j] - m));
      for (int j = 0; j < n_expert; ++j) p[size_t(j)] = engine::roundBf16(p[size_t(j)] / sum);
      for (int j = 0; j < n_expert; ++j) order[size_t(j)] = j;
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int c) {
        return p[size_t(a)] != p[size_t(c)] ? p[size_t(a)] > p[size_t(c)] : a < c;
      });
      float top = 0;
      for (int k = 0; k < top_k; ++k) top += p[size_t(order[size_t(k)])];
      top = engine::roundBf16(top);
      for (int k = 0; k < top_k; ++k) {
        const int ex = order[size_t(k)];
        idx[t * top_k + k] = ex;
        weights[t * top_k + k] =
            engine::roundBf16(engine::roundBf16(p[size_t(ex)] / top) * pes[ex]);
      }
    }
  });
}

void CpuBackend::moeExperts(const float* x, int n, const int32_t* idx, const float* weights,
                            int top_k, int n_expert, const WeightRef& gate_up,
                            const WeightRef& down, float* out) {
  if (n == 1 && quant::qtypeOf(gate_up.dtype) && quant::qtypeOf(down.dtype))
    return moeExpertsOneToken(x, idx, weights, top_k, n_expert, gate_up, down, out);
  const int64_t H = down.rows / n_expert, I = gate_up.rows / n_expert / 2;
  assert(gate_up.cols == H && down.cols == I);
  expert_rows_.resize(static_cast<size_t>(n_expert));
  for (auto& rows : expert_rows_) rows.clear();
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < top_k; ++k) {
      const int e = idx[t * top_k + k];
      assert(e >= 0 && e < n_expert);
      expert_rows_[size_t(e)].push_back({t, k});
    }
  std::fill(out, out + int64_t{n} * H, 0.0f);
  for (int e = 0; e < n_expert; ++e) {  // ascending ids: each token's terms add in HF's order
    const auto& rows = expert_rows_[size_t(e)];
    if (rows.empty()) continue;  // only the selected experts' weights are read
    const int m = static_cast<int>(rows.size());
    moe_tokens_.resize(size_t(m));
    for (int r = 0; r < m; ++r) moe_tokens_[size_t(r)] = rows[size_t(r)].first;
    moe_x_.resize(size_t(m) * size_t(H));
    moe_gu_.resize(size_t(m) * size_t(2 * I));
    moe_act_.resize(size_t(m) * size_t(I));
    moe_y_.resize(size_t(m) * size_t(H));
    gatherRows(x, moe_tokens_.data(), m, H, moe_x_.data());
    const WeightRef gu{static_cast<const char*>(gate_up.data) +
                           size_t(e) * size_t(2 * I) * matrixRowBytes(gate_up),
                       gate_up.dtype, 2 * I, H};
    const WeightRef dn{
        static_cast<const char*>(down.data) + size_t(e) * size_t(H) * matrixRowBytes(down),
        down.dtype, H, I};
    matmul(moe_x_.data(), m, gu, moe_gu_.data(), true);
    for (int r = 0; r < m; ++r) {  // gate = first I columns, up = the next I
      const float* g = moe_gu_.data() + size_t(r) * size_t(2 * I);
      k_.geglu(g, g + I, I, moe_act_.data() + size_t(r) * size_t(I));
    }
    matmul(moe_act_.data(), m, dn, moe_y_.data(), true);
    for (int r = 0; r < m; ++r) {
      const auto [t, k] = rows[size_t(r)];
      const float w = weights[t * top_k + k];
      const float* y = moe_y_.data() + size_t(r) * size_t(H);
      float* o = out + int64_t{t} * H;
      for (int64_t j = 0; j < H; ++j) o[j] = engine::roundBf16(o[j] + engine::roundBf16(y[j] * w));
    }
  }
}

// A decode step's experts (one token, quantized weights): every chosen expert's gate/up
// projection in one pool run, every down projection in another, instead of two runs per expert
// (per layer, 2 * top_k small matrices whose start and end cost more than their rows). The values
// are moeExperts' own: the same one-token dot products, the terms added in ascending expert id.
void CpuBackend::moeExpertsOneToken(const float* x, const int32_t* idx, const float* weights,
                                    int top_k, int n_expert, const WeightRef& gate_up,
                                    const WeightRef& down, float* out) {
  const int64_t H = down.rows / n_expert, I = gate_up.rows / n_expert / 2;
  assert(gate_up.cols == H && down.cols == I);
  std::vector<std::pair<int, int>>& chosen = moe_chosen_;  // (expert, slot)
  chosen.clear();
  for (int k = 0; k < top_k; ++k) chosen.push_back({idx[k], k});
  std::sort(chosen.begin(), chosen.end());
  const size_t K = chosen.size();
  moe_gu_.resize(K * size_t(2 * I));
  moe_act_.resize(K * size_t(I));
  moe_y_.resize(K * size_t(H));
  moe_refs_.resize(2 * K);
  moe_targets_.resize(2 * K);
  moe_inputs_.resize(K);
  for (size_t i = 0; i < K; ++i) {
    assert(chosen[i].first >= 0 && chosen[i].first < n_expert);
    const size_t e = size_t(chosen[i].first);
    moe_refs_[i] = WeightRef{static_cast<const char*>(gate_up.data) +
                                 e * size_t(2 * I) * matrixRowBytes(gate_up),
                             gate_up.dtype, 2 * I, H};
    moe_refs_[K + i] = WeightRef{
        static_cast<const char*>(down.data) + e * size_t(H) * matrixRowBytes(down), down.dtype, H, I};
    moe_targets_[i] = MatmulTarget{&moe_refs_[i], moe_gu_.data() + i * size_t(2 * I)};
    moe_targets_[K + i] = MatmulTarget{&moe_refs_[K + i], moe_y_.data() + i * size_t(H)};
    moe_inputs_[i] = moe_act_.data() + i * size_t(I);
  }
  matmul(x, 1, std::span<const MatmulTarget>(moe_targets_.data(), K), true);
  for (size_t i = 0; i < K; ++i) {  // gate = first I columns, up = the next I
    const float* g = moe_gu_.data() + i * size_t(2 * I);
    k_.geglu(g, g + I, I, moe_act_.data() + i * size_t(I));
  }
  matvecEach(moe_inputs_.data(), std::span<const MatmulTarget>(moe_targets_.data() + K, K), true);
  std::fill(out, out + H, 0.0f);
  for (size_t i = 0; i < K; ++i) {
    const float w = weights[chosen[i].second];
    const float* y = moe_y_.data() + i * size_t(H);
    for (int64_t j = 0; j < H; ++j) out[j] = engine::roundBf16(out[j] + engine::roundBf16(y[j] * w));
  }
}

void CpuBackend::attention(const AttentionShape& sh, std::span<const AttentionSeq> seqs) {
  const int D = sh.head_dim, group = sh.n_head / sh.n_head_kv;
  assert(group * sh.n_head_kv == sh.n_head);
  const int64_t q_dim = int64_t{sh.n_head} * D, kv_dim = int64_t{sh.n_head_kv} * D;
  // One work item per (sequence, query, kv head): the `group` query heads that share a kv head
  // are done together so each cached key/value row is read once for all of them (§2.3 GQA).
  attn_tasks_.clear();
  for (int s = 0; s < static_cast<int>(seqs.size()); ++s)
    for (int i = 0; i < seqs[static_cast<size_t>(s)].n; ++i)
      for (int g = 0; g < sh.n_head_kv; ++g) attn_tasks_.push_back({s, i, g});
  const auto& tasks = attn_tasks_;
  pool_.run(static_cast<int>(tasks.size()), [&](int t) {
    const AttnTask& task = tasks[static_cast<size_t>(t)];
    const AttentionSeq& sq = seqs[static_cast<size_t>(task.seq)];
    const int p = sq.pos0 + task.query;
    // gemma-spec §2.7: causal, and on sliding layers only the W positions p-W+1 .. p.
    const int lo = sh.window > 0 ? p - sh.window + 1 : std::numeric_limits<int>::min();
    const int hi = !sh.bidirectional         ? p
                   : sh.window > 0 ? p + sh.window - 1
                                   : std::numeric_limits<int>::max();
    thread_local std::vector<int64_t> vis;  // rows of the visible keys
    thread_local std::vector<float> score;
    thread_local std::vector<float> acc;
    // Visit keys in position order (slot = pos % capacity, so a full ring starts at the oldest
    // visible position): the fp32 sums then do not depend on the ring's capacity, and a prompt
    // gives bit-identical results whether it is prefilled whole, in chunks or token by token.
    const int cap = sq.kv.capacity;
    const int start = sq.n_slots == cap && !sh.bidirectional ? std::max(lo, 0) % cap : 0;
    vis.clear();
    for (int j = 0, s = start; j < sq.n_slots; ++j, s = (s + 1 == cap ? 0 : s + 1)) {
      const int64_t row = kvRow(sq.kv, s);
      const int sp = sq.kv.slot_pos[row];
      if (sp <= hi && sp >= lo) vis.push_back(row);
    }
    const int nv = static_cast<int>(vis.size());
    score.resize(static_cast<size_t>(nv) * group);
    acc.assign(static_cast<size_t>(D), 0.0f);
    const float* q = sq.q + task.query * q_dim + int64_t{task.kv_head} * group * D;
    const int64_t kv_off = int64_t{task.kv_head} * D;
    for (int j = 0; j < nv; ++j) {
      const uint16_t* kr = sq.kv.k + vis[static_cast<size_t>(j)] * kv_dim + kv_off;
      for (int h = 0; h < group; ++h)
        score[static_cast<size_t>(h) * nv + j] = k_.dot_bf16(q + h * D, kr, D) * sh.scale;
    }
    for (int h = 0; h < group; ++h) {
      // sdpa style (§6.1): fp32 scores, fp32 softmax, fp32 p·v, one bf16 rounding at the end.
      float* sc = score.data() + static_cast<size_t>(h) * nv;
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < nv; ++j) m = std::max(m, sc[j]);
      float sum = 0;
      for (int j = 0; j < nv; ++j) sum += (sc[j] = std::exp(sc[j] - m));
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int j = 0; j < nv; ++j)
        k_.axpy_bf16(sc[j] / sum, sq.kv.v + vis[static_cast<size_t>(j)] * kv_dim + kv_off,
                     acc.data(), D);
      float* o = sq.out + task.query * q_dim + (int64_t{task.kv_head} * group + h) * D;
      for (int d = 0; d < D; ++d) o[d] = engine::roundBf16(acc[static_cast<size_t>(d)]);
    }
  });
}

}  // namespace

bool cpuSupports(CpuIsa isa) { return isa == CpuIsa::kBest || cpu::cpuSupports(toIsa(isa)); }

std::unique_ptr<Backend> makeCpuBackend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace engine
