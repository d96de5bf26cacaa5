// Model: a loaded Gemma text model (engine/models/gemma3.h or gemma4.h) behind one interface, so
// that the scheduler serves either family. Model::load reads the checkpoint's config and picks
// the family from its model_type (gemma3 / gemma3_text -> Gemma 3, gemma4 / gemma4_text ->
// Gemma 4).
//
// forward() takes any number of sequences, each appending a chunk of tokens (a prefill chunk or
// one decode token) to its own KvCache. Every linear layer runs once over the concatenation of
// all chunks, so the weights stream from memory once per step whatever the batch; attention runs
// per sequence over its own cache. The pieces both families share live here: batch validation,
// the step's token / position / logit-row arrays, the tied lm_head (with the optional final
// softcap) and the per-layer hidden-state capture that the parity tests read.
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
#include "engine/quant/quant.h"

namespace engine {

// One sequence's part of a forward() call.
struct SeqBatchItem {
  KvCache* kv = nullptr;            // made by this model's newKvCache(); appended to
  const int32_t* tokens = nullptr;  // [n_tokens] ids in [0, vocab)
  int n_tokens = 0;                 // 1 .. kv->maxChunk(), and kv->length() + n <= max positions
  bool all_logits = false;          // logits for every token, or only for the last one
  float* logits = nullptr;          // [all_logits ? n_tokens : 1, vocab] fp32, written
  // Optional, for tests and debugging: [n_layer + 1, n_tokens, hidden] fp32, the residual stream
  // after the scaled embedding (index 0) and after each decoder layer (index l + 1).
  float* hidden_states = nullptr;
};

class Model {
 public:
  // Opens the checkpoint in `model_dir` (engine/checkpoint.h), picks the family from its config
  // and builds a CPU backend with `threads` threads (0 = all cores). Fails as Checkpoint::open
  // does (kIo / kConfig). With `quantize`, matrices are block-quantized as they are prepared
  // (CpuBackendOptions::quantize).
  static api::StatusOr<std::unique_ptr<Model>> load(
      const std::string& model_dir, int threads,
      std::optional<quant::QType> quantize = std::nullopt);
  virtual ~Model();

  const GemmaConfig& config() const { return checkpoint_->config(); }
  Backend& backend() const { return *backend_; }
  // Bytes of the checkpoint tensors the model reads (bf16 weights stay in the file mapping).
  uint64_t weightBytes() const { return checkpoint_->weightBytes(); }
  // Bytes of weights one decode step of a single sequence reads: weightBytes() less what it
  // skips: all but one row of Gemma 4's PLE table (§3.8) and all but top_k of each layer's
  // experts (§3.7). The denominator of a decode bandwidth roofline.
  uint64_t decodeBytesPerToken() const;

  // A cache for one sequence of at most `max_positions` positions (prompt + max new tokens,
  // clamped to [1, config().max_positions]) appended at most `max_chunk` at a time (clamped to
  // [1, max_positions]). Its size is KvCache::bytesFor(config(), ...) of the clamped values.
  std::unique_ptr<KvCache> newKvCache(int max_positions, int max_chunk) const;
  // A block pool (engine/kv_cache.h) for `tokens` positions of every full-attention layer and
  // `max_seqs` sequences' sliding-layer rings, appended at most `max_chunk` tokens at a time.
  std::unique_ptr<KvPool> newKvPool(int64_t tokens, int max_seqs, int max_chunk) const;
  // A cache in `pool` of at most `max_positions` positions (clamped as above); it takes blocks
  // as forward() appends to it and gives them back when destroyed.
  std::unique_ptr<KvCache> newKvCache(KvPool& pool, int max_positions) const;

  // Appends every item's tokens at positions kv->length() ... and writes its logits. All items
  // run in one pass: matmuls over the concatenated tokens, attention per item. Fails with
  // kInvalidRequest, before touching any cache, when an item is malformed (null pointers, no
  // tokens, a chunk over the cache's max_chunk, a sequence past its max_positions, a cache made
  // for another model or listed twice) or a token id lies outside [0, vocab) (the message names
  // the id), and with kUnavailable when a cache's pool has too few free blocks for its
  // chunk. On success each kv->length() has grown by its n_tokens.
  virtual api::Status forward(std::vector<SeqBatchItem>& batch) = 0;

 protected:
  Model() = default;
  // A CPU backend over the opened checkpoint.
  api::Status open(const std::string& model_dir, int threads,
                   std::optional<quant::QType> quantize = std::nullopt);
  api::Status validate(const std::vector<SeqBatchItem>& batch) const;
  // validate(), then every cache takes the blocks its chunk needs.
  api::Status validateAndReserve(const std::vector<SeqBatchItem>& batch) const;
  // Fills ids_, pos_ and logit_rows_ from the batch; returns the step's token count.
  int gatherStep(const std::vector<SeqBatchItem>& batch);
  // Copies the residual stream h [T, H] into every item's hidden_states[index] that asks for it.
  void captureHidden(const std::vector<SeqBatchItem>& batch, int index, const Buffer& h);
  // logits = h · embedᵀ for the logit rows of h [T, H], after the final norm (tied lm_head,
  // §2.6); with softcap > 0 the logits are rounded to bf16 and softcapped as HF does (§3.10).
  void computeLogits(std::vector<SeqBatchItem>& batch, const Buffer& h, const WeightRef& embed,
                     const WeightRef& final_norm, float softcap);
  // Sequences' lengths grow once their K/V are in every layer.
  static void advance(std::vector<SeqBatchItem>& batch);
  // Prepared weights: kConfig naming the tensor when the backend cannot take it.
  api::Status prepare(const Weight& w, WeightRef* dst,
                      api::StatusOr<WeightRef> (Backend::*how)(const Weight&));

  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  // Host-side per-step arrays.
  std::vector<int32_t> ids_, pos_, logit_rows_;
  std::vector<AttentionSeq> seqs_;

 private:
  int cap_logit_rows_ = 0;
  std::unique_ptr<Buffer> logit_in_, logit_out_;
};

}  // namespace engine
