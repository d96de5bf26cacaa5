// KvCache: one sequence's attention keys and values across all layers (gemma-spec §7).
//
// Full-attention layers keep every position (slot = position). Sliding layers keep a ring of
// capacity min(max_positions, W - 1 + max_chunk) with the absolute position of each slot stored
// beside it (§7 recommended design, item 3): the attention mask is computed from positions, so a
// wrap-around needs no bookkeeping, and a chunk of up to max_chunk new tokens never overwrites a
// key that one of its own queries still needs. Keys are stored after RoPE (item 4), as bf16
// (lossless: HF's k and v are bf16 tensors, §6.1).
//
// The storage is allocated from the model's backend (host or device memory) when the cache is
// made, so its size is known up front: a scheduler admits a sequence by bytesFor() and frees it by
// destroying the cache. A cache belongs to the model that made it and must not outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/model_config.h"

namespace engine {

class Gemma3Model;

class KvCache {
 public:
  // `max_positions` >= 1: prompt plus generated tokens this sequence may ever hold.
  // `max_chunk` >= 1: the most tokens one forward() may append (prefill chunk or 1 for decode).
  KvCache(const GemmaConfig& config, Backend& backend, int max_positions, int max_chunk);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Bytes a cache with these limits allocates (K, V and slot positions, all layers).
  static uint64_t bytesFor(const GemmaConfig& config, int max_positions, int max_chunk);

  int length() const { return length_; }  // positions appended so far (the next one's index)
  int maxPositions() const { return max_positions_; }
  int maxChunk() const { return max_chunk_; }
  int remaining() const { return max_positions_ - length_; }
  uint64_t bytes() const { return bytes_; }  // allocated storage

  int numLayers() const { return static_cast<int>(layers_.size()); }
  int kvDim() const { return kv_dim_; }  // Hkv * D, the width of one K or V row
  int capacity(int layer) const { return layers_[static_cast<size_t>(layer)].view.capacity; }
  const KvLayerView& layer(int layer) const { return layers_[static_cast<size_t>(layer)].view; }

 private:
  friend class Gemma3Model;
  // Called by the model once the K/V of positions length() .. length()+n-1 are in every layer.
  void advance(int n) { length_ += n; }

  struct Layer {
    std::unique_ptr<Buffer> k, v, pos;
    KvLayerView view;
  };
  std::vector<Layer> layers_;
  int kv_dim_ = 0;
  int max_positions_ = 0;
  int max_chunk_ = 0;
  int length_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace engine
