#include "engine/kv_cache.h"

#include <algorithm>
#include <cassert>

namespace engine {
namespace {

// Slots a layer needs: every position on full layers; on sliding layers the W - 1 keys the
// oldest query of a chunk still sees plus the chunk itself (gemma-spec §7, item 3).
int layerCapacity(const GemmaConfig& c, int layer, int max_positions, int max_chunk) {
  if (!c.isSliding(layer)) return max_positions;
  const int64_t ring = int64_t{c.sliding_window} - 1 + max_chunk;
  return static_cast<int>(std::min<int64_t>(max_positions, ring));
}

}  // namespace

uint64_t KvCache::bytesFor(const GemmaConfig& c, int max_positions, int max_chunk) {
  const uint64_t row = uint64_t(c.n_head_kv) * c.head_dim * sizeof(uint16_t);
  uint64_t total = 0;
  for (int l = 0; l < c.n_layer; ++l) {
    const uint64_t cap = static_cast<uint64_t>(layerCapacity(c, l, max_positions, max_chunk));
    total += cap * (2 * row + sizeof(int32_t));
  }
  return total;
}

KvCache::KvCache(const GemmaConfig& c, Backend& backend, int max_positions, int max_chunk)
    : kv_dim_(c.n_head_kv * c.head_dim), max_positions_(max_positions), max_chunk_(max_chunk) {
  assert(max_positions >= 1 && max_chunk >= 1);
  layers_.resize(static_cast<size_t>(c.n_layer));
  for (int l = 0; l < c.n_layer; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    const int cap = layerCapacity(c, l, max_positions, max_chunk);
    const size_t kv_bytes = size_t(cap) * size_t(kv_dim_) * sizeof(uint16_t);
    L.k = backend.alloc(kv_bytes);
    L.v = backend.alloc(kv_bytes);
    L.pos = backend.alloc(size_t(cap) * sizeof(int32_t));
    L.view = KvLayerView{L.k->u16(), L.v->u16(), L.pos->i32(), cap};
    bytes_ += 2 * kv_bytes + size_t(cap) * sizeof(int32_t);
  }
}

}  // namespace engine
