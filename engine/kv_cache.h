// Paged KV: a pool of fixed-size blocks shared by every sequence, and each sequence's cache as
// block tables into it (gemma-spec §7).
//
// Layers that store K/V are grouped into kinds by geometry (K/V row width and sliding window):
// Gemma 3 has a sliding and a full kind, Gemma 4's sliding and full layers also differ in head dim
// and KV heads. Gemma 4's KV-shared layers (§3.5) store nothing: their view is empty and the
// model attends over their source layer's view. One block of a kind holds `block_size` positions
// of every layer of that kind, so a sequence has one block table per kind.
//
// A full layer has one logical slot per position (slot = position). A sliding layer is a ring of
// logical capacity min(max positions, W - 1 + max_chunk), rounded up to whole blocks, with the
// absolute position of each slot stored beside it (§7 item 3): the mask is computed from
// positions, so a wrap-around needs no bookkeeping and a chunk never overwrites a key one of its
// own queries still needs. A sliding layer therefore never holds more than the window's blocks:
// once the ring wraps it reuses them. Keys are stored after RoPE (item 4), as bf16 (lossless,
// §6.1).
//
// Blocks are taken from the pool as a sequence grows (reserve(), which forward() calls) and
// given back when its cache is destroyed. A cache made without a pool owns a private one sized
// for exactly its own limits. Caches and pools belong to the model that made them and must not
// outlive it; a pool must outlive its caches.
//
// Prefix cache. Blocks are ref-counted. When a sequence completes a position block b (positions
// 16b .. 16b+15), every kind's block holding it is registered under the hash of the sequence's
// tokens 0 .. 16b+15 (a chained 64-bit hash; the block's own 16 ids are stored and compared on
// lookup). A block whose last reference goes keeps its K/V and its registration in an LRU of
// cached blocks; those are counted as free and are evicted (oldest first, a sequence's tail
// before its head) only when the pool has no unregistered free block left. mapPrefix() gives
// a new cache the longest cached prefix of its prompt, a whole number of blocks, so that only the
// rest is prefilled. A registered or shared block is never written: a write into one (a sliding
// ring wrapping onto a registered block, a fork's shared partial last block) first copies it to a
// block of the writer's own (copy-on-write), so K/V, slot positions and hence attention are the
// same, bit for bit, as in a cache that computed everything itself.
//
// The rule for sliding layers: a sliding block holds one position block, wherever it sits in a
// ring, so it is registered like a full one (unless the same step's chunk already wrapped onto
// it). A prefix of m blocks is reused only when every kind still has what a cache that computed
// it would hold: all m blocks of each full kind, and the last min(m, ring blocks) position
// blocks of each sliding kind (the ring's whole content, in-window or not, as the attention
// reads every ring slot). Otherwise the next shorter prefix is tried.
//
// Admission accounting (the scheduler's) still counts each sharer's blocks in full: an upper
// bound of what the pool holds, so sharing saves prefill compute and memory, not admission room.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/model_config.h"

namespace engine {

class Model;

class KvPool {
 public:
  static constexpr int kBlockSize = 16;  // positions per block

  // Room for `tokens` positions of full-attention layers (rounded up to blocks) and, for sliding
  // layers, for `max_seqs` sequences' rings (never more blocks than the full layers get, since a
  // ring never needs more blocks than the positions it holds). `max_chunk` bounds the tokens one
  // forward() may append to a sequence, which sizes the rings.
  KvPool(const GemmaConfig& config, Backend& backend, int64_t tokens, int max_seqs, int max_chunk);
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  int maxChunk() const { return max_chunk_; }
  int numKinds() const { return static_cast<int>(kinds_.size()); }
  int64_t totalBlocks(int kind) const { return kinds_[static_cast<size_t>(kind)].n_blocks; }
  // Blocks no sequence references: never-used ones plus cached ones in the LRU.
  int64_t freeBlocks(int kind) const {
    const Kind& k = kinds_[static_cast<size_t>(kind)];
    return static_cast<int64_t>(k.free.size() + k.lru.size());
  }
  // Blocks some sequence references (ref count > 0).
  int64_t heldBlocks(int kind) const { return totalBlocks(kind) - freeBlocks(kind); }
  // Blocks registered in the prefix cache (held or in the LRU), all kinds together.
  int64_t cachedBlocks() const;
  // Blocks of `kind` a sequence holding `positions` positions occupies (sliding: at most its ring).
  int64_t blocksFor(int kind, int64_t positions, int max_positions) const;
  uint64_t bytes() const { return bytes_; }
  // The kind of `layer`; -1 for a layer that stores nothing.
  int kindOfLayer(int layer) const { return kind_of_layer_[static_cast<size_t>(layer)]; }
  // References to `block` of `kind` (for tests).
  int refCount(int kind, int32_t block) const {
    return kinds_[static_cast<size_t>(kind)].ref[static_cast<size_t>(block)];
  }

 private:
  friend class KvCache;
  struct Kind {
    int kv_dim = 0;
    int window = 0;           // 0 = full attention
    std::vector<int> layers;  // the layers of this kind, in order
    int64_t n_blocks = 0;
    std::unique_ptr<Buffer> k, v, pos;  // [n_blocks][layers][kBlockSize][kv_dim] (pos: no kv_dim)
    std::vector<int32_t> free;          // free, unregistered block ids (a stack)
    std::vector<int32_t> ref;           // [n_blocks] references
    std::vector<uint64_t> hash;         // [n_blocks] prefix hash, when registered
    std::vector<uint8_t> registered;    // [n_blocks]
    std::vector<int32_t> ids;           // [n_blocks][kBlockSize] token ids of registered blocks
    std::unordered_map<uint64_t, int32_t> cached;  // prefix hash -> registered block
    std::list<int32_t> lru;  // registered blocks with no reference, least recently freed first
    std::vector<std::list<int32_t>::iterator> lru_at;  // [n_blocks] valid while in lru
  };
  // Logical slots of a sequence's layer of `kind` (a multiple of kBlockSize).
  int capacity(const Kind& kind, int max_positions) const;
  // A block with one reference: a free one, else the LRU's oldest (dropping its registration).
  // Precondition: freeBlocks() > 0.
  int32_t take(Kind& k);
  void retain(Kind& k, int32_t block);
  void release(Kind& k, int32_t block);
  // The block registered under `hash` holding `ids` [kBlockSize]; -1 when none.
  int32_t lookup(const Kind& k, uint64_t hash, const int32_t* ids) const;
  void registerBlock(Kind& k, int32_t block, uint64_t hash, const int32_t* ids);
  void copyBlock(Kind& k, int32_t dst, int32_t src);

  Backend* backend_ = nullptr;
  std::vector<Kind> kinds_;
  std::vector<int> kind_of_layer_;  // -1 for layers that store nothing
  int max_chunk_ = 1;
  uint64_t bytes_ = 0;
};

class KvCache {
 public:
  // A cache in `pool`: `max_positions` >= 1 is the prompt plus generated tokens this sequence may
  // ever hold. It holds no blocks until reserve().
  KvCache(const GemmaConfig& config, KvPool& pool, int max_positions);
  // A cache with its own pool, sized for `max_positions` appended at most `max_chunk` at a time.
  KvCache(const GemmaConfig& config, Backend& backend, int max_positions, int max_chunk);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Bytes a cache with its own pool and these limits allocates (K, V and slot positions).
  static uint64_t bytesFor(const GemmaConfig& config, int max_positions, int max_chunk);

  int length() const { return length_; }  // positions appended so far (the next one's index)
  int maxPositions() const { return max_positions_; }
  int maxChunk() const { return pool_->maxChunk(); }
  int remaining() const { return max_positions_ - length_; }
  // Blocks held, all kinds together.
  int64_t blocksHeld() const;
  // Storage the cache owns: its private pool's bytes; 0 for a cache in a shared pool.
  uint64_t bytes() const { return own_pool_ ? own_pool_->bytes() : 0; }

  // Takes the blocks positions length() .. length()+n-1 need, copying any registered or shared
  // block those positions would overwrite to a block of this cache's own first. False (and
  // nothing taken) when the pool has too few free blocks.
  bool reserve(int n);

  // On a fresh cache (length() == 0): maps the longest prefix of `ids` [n] that is cached in
  // every kind (see the top of the file), a whole number of blocks and at most `limit` tokens,
  // and makes it this cache's content. Returns its length in tokens (0: nothing mapped).
  int mapPrefix(const int32_t* ids, int n, int limit);
  // A cache in the same pool with the same limits and content, sharing every block (n > 1
  // choices of one prompt); either cache copies a shared block before writing into it.
  std::unique_ptr<KvCache> fork() const;
  // The physical block of logical block `index` of `kind` (for tests).
  int32_t block(int kind, int index) const {
    return tables_[static_cast<size_t>(kind)][static_cast<size_t>(index)];
  }
  int64_t blocksHeld(int kind) const {
    return static_cast<int64_t>(tables_[static_cast<size_t>(kind)].size());
  }

  int numLayers() const { return static_cast<int>(kind_of_layer_.size()); }
  // Hkv_l * D_l, the width of one K or V row of `layer`; 0 for a layer that stores nothing.
  int kvDim(int layer) const;
  int capacity(int layer) const { return views_[static_cast<size_t>(layer)].capacity; }
  const KvLayerView& layer(int layer) const { return views_[static_cast<size_t>(layer)]; }

 private:
  friend class Model;
  // Called by the model once the K/V of positions length() .. length()+n-1, for token `ids` [n],
  // are in every layer: blocks completed by them are registered in the prefix cache.
  void advance(const int32_t* ids, int n);
  KvCache(KvPool& pool, int max_positions) : pool_(&pool), max_positions_(max_positions) {}
  void init(int n_layer);
  // The hash of the prefix ending with position block b, given that of the one before it.
  static uint64_t chainHash(uint64_t prev, const int32_t* ids);
  // Whether every kind has the blocks a computed cache of m position blocks would hold;
  // `found[k][b]` is kind k's registered block for position block b (or -1).
  bool prefixAvailable(const std::vector<std::vector<int32_t>>& found, int m) const;

  std::unique_ptr<KvPool> own_pool_;  // set when the cache has no shared pool
  KvPool* pool_ = nullptr;
  std::vector<std::vector<int32_t>> tables_;  // per kind: physical block of each logical block
  std::vector<int> capacity_;                 // per kind: logical slots
  std::vector<int> kind_of_layer_;
  std::vector<KvLayerView> views_;
  int max_positions_ = 0;
  int length_ = 0;
  std::vector<int32_t> ids_;           // the tokens of positions 0 .. length()-1
  std::vector<uint64_t> prefix_hash_;  // per completed position block: chainHash up to its end
};

}  // namespace engine
