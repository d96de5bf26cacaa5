// engine::Backend: the operations a Gemma forward pass needs (DESIGN.md "The seams"), with a CPU
// implementation (engine/cpu_backend.h) and, later, a CUDA one.
//
// Memory model. A backend owns everything its verbs touch: activation buffers (Buffer), prepared
// weights (WeightRef) and KV storage. The model never dereferences that memory; it hands the
// pointers back to verbs, does pointer arithmetic on them (row offsets) and moves data in and out
// with upload()/download(). For the CPU backend all of it is host memory (weights stay in the
// checkpoint's mmap); for a GPU backend it would be device memory. Small host arrays (token ids,
// positions, row indices) are passed as host pointers and are the backend's to stage.
//
// Numerics (gemma-spec §6.1). Activations are fp32 arrays holding bf16-representable values
// wherever HF keeps a bf16 tensor; every verb that produces such a tensor rounds its output to
// bf16 (round-to-nearest-even) itself, and accumulates in fp32 inside. Verbs are synchronous as
// seen by the caller (a GPU backend may queue work; download() is the synchronisation point).
// Verbs check shapes with asserts: the model validates untrusted input before calling them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "api/status.h"
#include "engine/checkpoint.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace engine {

// A block of backend memory (host or device). Freed on destruction.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t bytes() const = 0;
  float* f32() { return static_cast<float*>(data()); }
  uint16_t* u16() { return static_cast<uint16_t*>(data()); }
  int32_t* i32() { return static_cast<int32_t*>(data()); }
};

// A weight matrix [rows, cols] (row-major, nn.Linear layout [out, in]) or, with rows = 1, a
// vector, as a backend reads it. Produced by Backend::prepare*; valid while both the backend
// and the Checkpoint it came from live.
struct WeightRef {
  const void* data = nullptr;  // backend memory
  DType dtype = DType::kBF16;  // kBF16, kF16 or kF32
  int64_t rows = 0;
  int64_t cols = 0;
};

// One y = x · Wᵀ of a matmul() call; several targets share the same x.
struct MatmulTarget {
  const WeightRef* w = nullptr;  // [out, in]
  float* y = nullptr;            // [n, out]
};

// One layer of one sequence's KV cache, as writeKv() writes it and attention() reads it.
// Slots hold K/V rows as bf16 (the values are bf16 already, so this is lossless; §6.1). A full
// layer has one slot per position (slot = pos); a sliding layer is a ring (slot = pos % capacity)
// of capacity >= W - 1 + max_chunk (gemma-spec §7, recommended design item 3).
//
// Slots are logical: with a block table (paged KV, engine/kv_cache.h) slot s lives in row
// kvRow(view, s) = blocks[s / block_size] * block_rows + s % block_size of k, v and slot_pos;
// without one (blocks == nullptr) in row s.
struct KvLayerView {
  uint16_t* k = nullptr;        // [rows, n_head_kv * head_dim] bf16, RoPE already applied
  uint16_t* v = nullptr;        // [rows, n_head_kv * head_dim] bf16
  int32_t* slot_pos = nullptr;  // [rows] absolute position stored in each row
  int capacity = 0;             // logical slots
  const int32_t* blocks = nullptr;  // [capacity / block_size] physical block of each logical one
  int block_size = 0;
  int64_t block_rows = 0;  // rows from one physical block to the next
};

inline int64_t kvRow(const KvLayerView& kv, int slot) {
  if (!kv.blocks) return slot;
  return int64_t{kv.blocks[slot / kv.block_size]} * kv.block_rows + slot % kv.block_size;
}

struct AttentionShape {
  int n_head = 0;     // Hq
  int n_head_kv = 0;  // Hkv; query head h reads kv head h / (Hq / Hkv) (§2.3)
  int head_dim = 0;   // D
  float scale = 0;    // query_pre_attn_scalar^-0.5 (§2.3)
  int window = 0;     // sliding window W (a query sees W keys including itself, §2.7); 0 = full
  // Keys on both sides of the query (an encoder, EmbeddingGemma): every stored key is visible,
  // or with a window only those with |pos - p| < window (HF's bidirectional overlay).
  bool bidirectional = false;
};

// The queries of one sequence for one layer.
struct AttentionSeq {
  const float* q = nullptr;  // [n, Hq * D], normalised and rotated
  float* out = nullptr;      // [n, Hq * D], written bf16-rounded
  int n = 0;                 // number of queries; query i sits at position pos0 + i
  int pos0 = 0;
  KvLayerView kv;   // must already hold the queries' own K/V (writeKv first)
  int n_slots = 0;  // slots [0, n_slots) hold data: min(capacity, pos0 + n)
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;

  // ---- memory -----------------------------------------------------------------------------
  // A buffer of `bytes` bytes (contents undefined), aligned for any verb. Never null; a failed
  // allocation is fatal, as for operator new.
  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
  // Host <-> backend copies. `offset` is in bytes from the start of the buffer.
  virtual void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const Buffer& src, size_t offset, size_t bytes) = 0;
  // Backend -> backend copy of `bytes` bytes between non-overlapping ranges (a KV block's
  // copy-on-write, engine/kv_cache.h).
  virtual void copy(Buffer& dst, size_t dst_offset, const Buffer& src, size_t src_offset,
                    size_t bytes) = 0;

  // A matrix for matmul()/embed(): [rows, cols] taken as is (the CPU backend reads the mmap;
  // no copy, except block-quantized ones: CpuBackendOptions::copy_quantized). kConfig when the
  // dtype is not BF16/F16/F32 or the shape is not 2-D.
  virtual api::StatusOr<WeightRef> prepareMatrix(const Weight& w) = 0;
  // A table that only embed() reads, a few rows per step (Gemma 4's per-layer embeddings): as
  // prepareMatrix, but a block-quantized one stays in the mapping, so that only the rows used
  // become resident (with CpuBackendOptions::quantize a float table is still quantized).
  virtual api::StatusOr<WeightRef> prepareRowTable(const Weight& w) { return prepareMatrix(w); }
  // A norm weight w [n] stored zero-centred, prepared as (1 + w) in fp32 (gemma-spec §2.2: HF
  // computes 1 + w in fp32; rounding it to bf16 would lose bits). kConfig on a bad dtype/shape.
  virtual api::StatusOr<WeightRef> prepareNorm1p(const Weight& w) = 0;
  // A vector w [n] used as is, in fp32: Gemma 4 norm weights (x * w, §3.2), the router scales,
  // layer_scalar [1]. kConfig on a bad dtype or a shape that is not 1-D.
  virtual api::StatusOr<WeightRef> prepareVector(const Weight& w) = 0;
  // A stack of expert matrices [E, rows, cols] (§3.7), seen as [E * rows, cols]: expert e is rows
  // e*rows .. (e+1)*rows-1. No copy on the CPU. kConfig on a bad dtype or a shape that is not 3-D.
  virtual api::StatusOr<WeightRef> prepareExperts(const Weight& w) = 0;

  // ---- verbs ------------------------------------------------------------------------------
  // out[i, :] = bf16(table[ids[i], :] * scale) for i < n. ids are host ints, already checked
  // to lie in [0, table.rows). out: [n, table.cols].
  virtual void embed(const int32_t* ids, int n, const WeightRef& table, float scale,
                     float* out) = 0;

  // For every target: y[n, w.rows] = x[n, w.cols] · wᵀ with fp32 accumulation, rounded to bf16
  // when round_bf16. All targets must have the same cols. x and the y's must not overlap.
  virtual void matmul(const float* x, int n, std::span<const MatmulTarget> targets,
                      bool round_bf16) = 0;
  void matmul(const float* x, int n, const WeightRef& w, float* y, bool round_bf16) {
    const MatmulTarget t{&w, y};
    matmul(x, n, std::span<const MatmulTarget>(&t, 1), round_bf16);
  }

  // Gemma RMSNorm (§2.2, §3.2) over each of `rows` rows of width `cols`:
  //   out = bf16(x * rsqrt(mean(x²) + eps) * w1p)
  // w1p [cols] is a prepared fp32 norm weight: (1 + w) from prepareNorm1p (Gemma 3) or w from
  // prepareVector (Gemma 4). out may equal x.
  virtual void rmsnorm1p(const float* x, int64_t rows, int64_t cols, const WeightRef& w1p,
                         float eps, float* out) = 0;
  // The same norm fused with the residual add that follows it in every Gemma block (§2.5):
  //   residual = bf16(residual + bf16(norm(x)))
  virtual void rmsnorm1pAdd(const float* x, int64_t rows, int64_t cols, const WeightRef& w1p,
                            float eps, float* residual) = 0;

  // The same norm without a weight (Gemma 4 v_norm and router norm, §3.2):
  //   out = bf16(x * rsqrt(mean(x²) + eps)). out may equal x.
  virtual void rmsnormNoScale(const float* x, int64_t rows, int64_t cols, float eps,
                              float* out) = 0;

  // RoPE tables for host positions pos[n] (§2.3): table[i, 0:D/2] = bf16(cos(pos_i * inv_freq)),
  // table[i, D/2:D] = bf16(sin(...)), inv_freq[j] = 1 / base^(2j/D) / factor in fp32 for
  // j < rope.rotatedPairs(D) and 0 beyond (proportional RoPE, §3.4: those pairs get cos 1 and
  // sin 0, so rope() leaves dims j and j + D/2 unchanged). table: [n, head_dim].
  virtual void ropeTable(const int32_t* pos, int n, int head_dim, const RopeParams& rope,
                         float* table) = 0;
  // Rotates x[n, n_heads, head_dim] in place, NeoX / rotate_half layout (j pairs with j + D/2),
  // rounding each op to bf16 as HF does: x' = bf16(bf16(x * cos) + bf16(rotate_half(x) * sin)).
  virtual void rope(float* x, int n, int n_heads, int head_dim, const float* table) = 0;

  // Stores k/v rows [n, kv_dim] (bf16 values) for positions pos0 .. pos0+n-1 into slots
  // (pos % capacity) of `kv`, recording each slot's position. n <= kv.capacity.
  virtual void writeKv(const float* k, const float* v, int n, int pos0, int kv_dim,
                       const KvLayerView& kv) = 0;

  // Causal (plus sliding window when shape.window > 0; bidirectional when shape says so) GQA
  // attention for every sequence, sdpa
  // style (§6.1): fp32 scores q·k * scale, fp32 softmax, fp32 p·v, output rounded to bf16.
  // A key in slot s is visible to the query at position p iff slot_pos[s] <= p and, with a
  // window, slot_pos[s] > p - window (§2.7).
  virtual void attention(const AttentionShape& shape, std::span<const AttentionSeq> seqs) = 0;

  // out = bf16(bf16(gelu_tanh(gate)) * up), elementwise over n values (§2.4). out may alias
  // gate or up.
  virtual void geglu(const float* gate, const float* up, int64_t n, float* out) = 0;

  // The GeGLU of Gemma 4's PLE gate (§3.8) over a strided `up`: for r < rows, j < cols
  //   out[r, j] = bf16(bf16(gelu_tanh(gate[r, j])) * up[r * up_stride + j]).
  // gate and out are [rows, cols]; out may alias gate.
  virtual void gegluStrided(const float* gate, const float* up, int64_t rows, int64_t cols,
                            int64_t up_stride, float* out) = 0;

  // ---- elementwise, each result rounded to bf16 as HF's bf16 tensors are (§6.1)
  // x = bf16(x * s): a bf16 tensor times a Python float (PLE's H^-0.5 and 2^-0.5, the router's
  // H^-0.5).
  virtual void scale(float* x, int64_t n, float s) = 0;
  // out = bf16(a + b) over n values; out may alias a or b.
  virtual void add(const float* a, const float* b, int64_t n, float* out) = 0;
  // x[r, j] = bf16(x[r, j] * v[j]) over [rows, cols]; v [cols] from prepareVector, or v [1]
  // broadcast (layer_scalar, §3.9).
  virtual void mulVector(float* x, int64_t rows, int64_t cols, const WeightRef& v) = 0;
  // Final logit softcapping (§3.10), each op in bf16 as HF: x = bf16(bf16(tanh(bf16(x / cap)))
  // * cap) over n values (x already bf16).
  virtual void softcap(float* x, int64_t n, float cap) = 0;

  // ---- mixture of experts (§3.7)
  // Routing for n tokens from the router logits [n, n_expert] (bf16 values): p = bf16(softmax),
  // the top_k largest p (ties: lower expert index first), w = bf16(p / bf16(Σ top-k p)),
  // w = bf16(w * per_expert_scale[e]). Writes idx [n, top_k] (expert ids, in descending p) and
  // weights [n, top_k] to backend memory.
  virtual void moeRoute(const float* logits, int n, int n_expert, int top_k,
                        const WeightRef& per_expert_scale, int32_t* idx, float* weights) = 0;
  // The routed experts for n tokens x [n, H]: out[t] = Σ over t's top_k experts, added in
  // ascending expert id as HF's index_add_ does, each term bf16(y_e * w) and each partial sum
  // rounded to bf16, of y_e = bf16(geglu(x · gate_up[e]ᵀ) · down[e]ᵀ). Only the selected
  // experts' rows are computed. gate_up: prepareExperts of [E, 2*I, H]; down: of [E, H, I].
  // out: [n, H], must not overlap x.
  virtual void moeExperts(const float* x, int n, const int32_t* idx, const float* weights,
                          int top_k, int n_expert, const WeightRef& gate_up,
                          const WeightRef& down, float* out) = 0;

  // dst[i, :] = src[rows[i], :] for i < n; rows are host ints. dst must not overlap src.
  virtual void gatherRows(const float* src, const int32_t* rows, int n, int64_t cols,
                          float* dst) = 0;

  // x = bf16(x), elementwise.
  virtual void roundBf16(float* x, int64_t n) = 0;
};

}  // namespace engine
