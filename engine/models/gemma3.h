// Gemma3Model: the Gemma 3 text forward pass (gemma-spec §2) over an engine::Backend, with a
// per-sequence KV cache, batched across sequences.
//
// forward() takes any number of sequences, each appending a chunk of tokens (a prefill chunk or
// one decode token) to its own KvCache. Every linear layer runs once over the concatenation of
// all chunks, so the weights stream from memory once per step whatever the batch; attention runs
// per sequence over its own cache. Numerics follow HF's bf16 model (§6.1): bf16 rounding after the
// embedding scale, every norm, linear layer, RoPE op, GeGLU and residual add; fp32 accumulation;
// sdpa-style fp32 attention. Logits are the fp32 result of the final GEMM (HF rounds them to bf16;
// bf16(logits) gives HF's values).
//
// Not thread-safe: one engine thread owns the model and calls forward().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/status.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"

namespace engine {

// One sequence's part of a forward() call.
struct SeqBatchItem {
  KvCache* kv = nullptr;            // made by this model's newKvCache(); appended to
  const int32_t* tokens = nullptr;  // [n_tokens] ids in [0, vocab)
  int n_tokens = 0;                 // 1 .. kv->maxChunk(), and kv->length() + n <= max positions
  bool all_logits = false;          // logits for every token, or only for the last one
  float* logits = nullptr;          // [all_logits ? n_tokens : 1, vocab] fp32, written
};

class Gemma3Model {
 public:
  // Opens the checkpoint in `model_dir` (engine/checkpoint.h) and builds a CPU backend with
  // `threads` threads (0 = all cores). Fails as Checkpoint::open does (kIo / kConfig).
  static api::StatusOr<std::unique_ptr<Gemma3Model>> load(const std::string& model_dir,
                                                          int threads);
  ~Gemma3Model();

  const GemmaConfig& config() const { return checkpoint_->config(); }
  Backend& backend() const { return *backend_; }

  // A cache for one sequence of at most `max_positions` positions (prompt + max new tokens,
  // clamped to [1, config().max_positions]) appended at most `max_chunk` at a time (clamped to
  // [1, max_positions]). Its size is KvCache::bytesFor(config(), ...) of the clamped values.
  std::unique_ptr<KvCache> newKvCache(int max_positions, int max_chunk) const;

  // Appends every item's tokens at positions kv->length() ... and writes its logits. All items
  // run in one pass: matmuls over the concatenated tokens, attention per item. Fails with
  // kInvalidRequest, before touching any cache, when an item is malformed (null pointers, no
  // tokens, a chunk over the cache's max_chunk, a sequence past its max_positions, a cache made
  // for another model or listed twice) or a token id lies outside [0, vocab) (the message names
  // the id). On success each kv->length() has grown by its n_tokens.
  api::Status forward(std::vector<SeqBatchItem>& batch);

  // Bytes of the checkpoint tensors the model reads (bf16 weights stay in the file mapping).
  uint64_t weightBytes() const { return checkpoint_->weightBytes(); }

 private:
  struct LayerRefs {
    WeightRef input_norm, q, k, v, o, q_norm, k_norm, post_attn_norm, pre_ff_norm, post_ff_norm,
        gate, up, down;
  };

  Gemma3Model() = default;
  api::Status prepare();
  api::Status validate(const std::vector<SeqBatchItem>& batch) const;
  void reserve(int n_tokens, int n_logit_rows);
  void computeLogits(std::vector<SeqBatchItem>& batch);

  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  WeightRef embed_, final_norm_;
  std::vector<LayerRefs> layers_;

  // Activations, sized for the largest step so far (backend memory).
  int cap_tokens_ = 0, cap_logit_rows_ = 0;
  std::unique_ptr<Buffer> h_, x_, q_, k_, v_, att_, gate_, up_, rope_sliding_, rope_full_;
  std::unique_ptr<Buffer> logit_in_, logit_out_;
  // Host-side per-step arrays.
  std::vector<int32_t> ids_, pos_, logit_rows_;
  std::vector<AttentionSeq> seqs_;
};

}  // namespace engine
