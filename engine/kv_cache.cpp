#include "engine/kv_cache.h"

#include <algorithm>
#include <cassert>

namespace engine {
namespace {

constexpr int kB = KvPool::kBlockSize;

int64_t ceilBlocks(int64_t positions) { return (positions + kB - 1) / kB; }

}  // namespace

KvPool::KvPool(const GemmaConfig& c, Backend& backend, int64_t tokens, int max_seqs, int max_chunk)
    : backend_(&backend), max_chunk_(std::max(1, max_chunk)) {
  kind_of_layer_.assign(static_cast<size_t>(c.n_layer), -1);
  for (int l = 0; l < c.n_layer; ++l) {
    if (!c.storesKv(l)) continue;  // KV-shared (§3.5): no storage
    const int kv_dim = c.layer(l).kvDim(), window = c.layer(l).window;
    auto it = std::find_if(kinds_.begin(), kinds_.end(),
                           [&](const Kind& k) { return k.kv_dim == kv_dim && k.window == window; });
    if (it == kinds_.end()) {
      kinds_.push_back(Kind{});
      kinds_.back().kv_dim = kv_dim;
      kinds_.back().window = window;
      it = kinds_.end() - 1;
    }
    it->layers.push_back(l);
    kind_of_layer_[static_cast<size_t>(l)] = static_cast<int>(it - kinds_.begin());
  }
  const int64_t full_blocks = ceilBlocks(std::max<int64_t>(1, tokens));
  const int max_positions = static_cast<int>(std::min<int64_t>(tokens, INT32_MAX / 2));
  for (Kind& k : kinds_) {
    k.n_blocks = full_blocks;
    if (k.window > 0) {
      const int64_t ring = capacity(k, max_positions) / kB;
      k.n_blocks = std::min(full_blocks, std::max<int64_t>(1, max_seqs) * ring);
    }
    const int64_t rows = k.n_blocks * int64_t(k.layers.size()) * kB;
    const size_t kv_bytes = size_t(rows) * size_t(k.kv_dim) * sizeof(uint16_t);
    k.k = backend.alloc(kv_bytes);
    k.v = backend.alloc(kv_bytes);
    k.pos = backend.alloc(size_t(rows) * sizeof(int32_t));
    bytes_ += 2 * kv_bytes + size_t(rows) * sizeof(int32_t);
    const size_t n = static_cast<size_t>(k.n_blocks);
    k.ref.assign(n, 0);
    k.hash.assign(n, 0);
    k.registered.assign(n, 0);
    k.ids.assign(n * kB, 0);
    k.lru_at.resize(n);
    k.free.resize(n);
    // A stack popped from the back: block 0 is handed out first.
    for (int64_t b = 0; b < k.n_blocks; ++b) k.free[size_t(b)] = int32_t(k.n_blocks - 1 - b);
  }
}

int64_t KvPool::cachedBlocks() const {
  int64_t n = 0;
  for (const Kind& k : kinds_) n += static_cast<int64_t>(k.cached.size());
  return n;
}

int32_t KvPool::take(Kind& k) {
  int32_t b;
  if (!k.free.empty()) {
    b = k.free.back();
    k.free.pop_back();
  } else {  // evict the least recently freed cached block
    assert(!k.lru.empty());
    b = k.lru.front();
    k.lru.pop_front();
    k.cached.erase(k.hash[size_t(b)]);
    k.registered[size_t(b)] = 0;
  }
  k.ref[size_t(b)] = 1;
  return b;
}

void KvPool::retain(Kind& k, int32_t b) {
  if (k.ref[size_t(b)]++ == 0) k.lru.erase(k.lru_at[size_t(b)]);  // a cached block back in use
}

void KvPool::release(Kind& k, int32_t b) {
  assert(k.ref[size_t(b)] > 0);
  if (--k.ref[size_t(b)] > 0) return;
  if (k.registered[size_t(b)]) {
    k.lru_at[size_t(b)] = k.lru.insert(k.lru.end(), b);
  } else {
    k.free.push_back(b);
  }
}

int32_t KvPool::lookup(const Kind& k, uint64_t hash, const int32_t* ids) const {
  auto it = k.cached.find(hash);
  if (it == k.cached.end()) return -1;
  const int32_t* stored = k.ids.data() + size_t(it->second) * kB;
  return std::equal(ids, ids + kB, stored) ? it->second : -1;
}

void KvPool::registerBlock(Kind& k, int32_t b, uint64_t hash, const int32_t* ids) {
  if (k.registered[size_t(b)] || !k.cached.emplace(hash, b).second) return;  // one per prefix
  k.registered[size_t(b)] = 1;
  k.hash[size_t(b)] = hash;
  std::copy(ids, ids + kB, k.ids.begin() + ptrdiff_t(b) * kB);
}

void KvPool::copyBlock(Kind& k, int32_t dst, int32_t src) {
  if (dst == src) return;
  const size_t rows = k.layers.size() * kB;
  const size_t kv = rows * size_t(k.kv_dim) * sizeof(uint16_t), pos = rows * sizeof(int32_t);
  backend_->copy(*k.k, size_t(dst) * kv, *k.k, size_t(src) * kv, kv);
  backend_->copy(*k.v, size_t(dst) * kv, *k.v, size_t(src) * kv, kv);
  backend_->copy(*k.pos, size_t(dst) * pos, *k.pos, size_t(src) * pos, pos);
}

int KvPool::capacity(const Kind& k, int max_positions) const {
  int64_t cap = max_positions;
  if (k.window > 0) cap = std::min<int64_t>(cap, int64_t{k.window} - 1 + max_chunk_);
  return static_cast<int>(ceilBlocks(std::max<int64_t>(1, cap)) * kB);
}

int64_t KvPool::blocksFor(int kind, int64_t positions, int max_positions) const {
  const Kind& k = kinds_[static_cast<size_t>(kind)];
  return std::min<int64_t>(ceilBlocks(positions), capacity(k, max_positions) / kB);
}

uint64_t KvCache::bytesFor(const GemmaConfig& c, int max_positions, int max_chunk) {
  uint64_t total = 0;
  for (int l = 0; l < c.n_layer; ++l) {
    if (!c.storesKv(l)) continue;
    const LayerGeometry& g = c.layer(l);
    int64_t cap = max_positions;
    if (g.window > 0) cap = std::min<int64_t>(cap, int64_t{g.window} - 1 + max_chunk);
    const uint64_t rows = static_cast<uint64_t>(ceilBlocks(cap) * kB);
    total += rows * (2 * uint64_t(g.kvDim()) * sizeof(uint16_t) + sizeof(int32_t));
  }
  return total;
}

KvCache::KvCache(const GemmaConfig& c, KvPool& pool, int max_positions)
    : pool_(&pool), max_positions_(max_positions) {
  assert(max_positions >= 1);
  init(c.n_layer);
}

KvCache::KvCache(const GemmaConfig& c, Backend& backend, int max_positions, int max_chunk)
    : own_pool_(std::make_unique<KvPool>(c, backend, max_positions, 1, max_chunk)),
      pool_(own_pool_.get()),
      max_positions_(max_positions) {
  assert(max_positions >= 1 && max_chunk >= 1);
  init(c.n_layer);
}

void KvCache::init(int n_layer) {
  kind_of_layer_ = pool_->kind_of_layer_;
  const size_t kinds = pool_->kinds_.size();
  tables_.resize(kinds);
  capacity_.resize(kinds);
  for (size_t k = 0; k < kinds; ++k) {
    capacity_[k] = pool_->capacity(pool_->kinds_[k], max_positions_);
    tables_[k].reserve(static_cast<size_t>(capacity_[k] / kB));  // views point into it
  }
  views_.resize(static_cast<size_t>(n_layer));
  for (size_t k = 0; k < kinds; ++k) {
    KvPool::Kind& kind = pool_->kinds_[k];
    const int64_t block_rows = int64_t(kind.layers.size()) * kB;
    for (size_t j = 0; j < kind.layers.size(); ++j) {
      KvLayerView& view = views_[static_cast<size_t>(kind.layers[j])];
      const int64_t first_row = int64_t(j) * kB;  // layer j's rows inside each block
      view.k = kind.k->u16() + first_row * kind.kv_dim;
      view.v = kind.v->u16() + first_row * kind.kv_dim;
      view.slot_pos = kind.pos->i32() + first_row;
      view.capacity = capacity_[k];
      view.blocks = tables_[k].data();
      view.block_size = kB;
      view.block_rows = block_rows;
    }
  }
}

KvCache::~KvCache() {
  for (size_t k = 0; k < tables_.size(); ++k) {
    // Tail first, so that the LRU evicts a prefix's last blocks before its first ones.
    for (auto b = tables_[k].rbegin(); b != tables_[k].rend(); ++b)
      pool_->release(pool_->kinds_[k], *b);
  }
}

int KvCache::kvDim(int layer) const {
  const int k = kind_of_layer_[static_cast<size_t>(layer)];
  return k < 0 ? 0 : pool_->kinds_[static_cast<size_t>(k)].kv_dim;
}

int64_t KvCache::blocksHeld() const {
  int64_t n = 0;
  for (const auto& t : tables_) n += static_cast<int64_t>(t.size());
  return n;
}

bool KvCache::reserve(int n) {
  const int64_t end = int64_t{length_} + n;
  // Per kind, the logical blocks positions length_ .. end-1 write (a ring may wrap onto blocks it
  // holds), and how many blocks that takes from the pool.
  std::vector<std::vector<int>> touched(tables_.size());
  for (size_t k = 0; k < tables_.size(); ++k) {
    KvPool::Kind& kind = pool_->kinds_[k];
    const int ring = capacity_[k] / kB;
    int64_t need = 0;
    for (int64_t b = length_ / kB; n > 0 && b <= (end - 1) / kB; ++b) {
      const int j = static_cast<int>(b % ring);
      if (std::find(touched[k].begin(), touched[k].end(), j) != touched[k].end()) continue;
      touched[k].push_back(j);
      if (j >= static_cast<int>(tables_[k].size())) {
        ++need;  // a new block
      } else {
        const int32_t held = tables_[k][size_t(j)];
        need += kind.ref[size_t(held)] > 1;  // copy-on-write of a shared block
        // (a registered block only this cache holds goes to the LRU as its copy is taken)
      }
    }
    if (need > pool_->freeBlocks(static_cast<int>(k))) return false;
  }
  for (size_t k = 0; k < tables_.size(); ++k) {
    KvPool::Kind& kind = pool_->kinds_[k];
    for (int j : touched[k]) {
      if (j >= static_cast<int>(tables_[k].size())) {
        tables_[k].push_back(pool_->take(kind));  // within the reserved capacity: views stay
        continue;
      }
      const int32_t old = tables_[k][size_t(j)];
      if (kind.ref[size_t(old)] == 1 && !kind.registered[size_t(old)]) continue;  // ours alone
      // Copy-on-write. Released first, so that with no other free block the copy is the block
      // itself, dropped from the cache (as if written in place).
      pool_->release(kind, old);
      const int32_t copy = pool_->take(kind);
      pool_->copyBlock(kind, copy, old);
      tables_[k][size_t(j)] = copy;
    }
  }
  return true;
}

uint64_t KvCache::chainHash(uint64_t h, const int32_t* ids) {
  for (int i = 0; i < kB; ++i) {  // splitmix64 over (previous hash, id)
    h += 0x9e3779b97f4a7c15ull + static_cast<uint32_t>(ids[i]);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

void KvCache::advance(const int32_t* ids, int n) {
  const int old = length_;
  ids_.insert(ids_.end(), ids, ids + n);
  length_ += n;
  for (int b = old / kB; b < length_ / kB; ++b) {  // position blocks completed by this chunk
    const uint64_t prev = b == 0 ? 0 : prefix_hash_[size_t(b - 1)];
    const int32_t* block_ids = ids_.data() + size_t(b) * kB;
    prefix_hash_.push_back(chainHash(prev, block_ids));
    for (size_t k = 0; k < tables_.size(); ++k) {
      // A ring that already wrapped onto the block in this chunk no longer holds it.
      if (length_ > int64_t{b} * kB + capacity_[k]) continue;
      const int ring = capacity_[k] / kB;
      pool_->registerBlock(pool_->kinds_[k], tables_[k][size_t(b % ring)], prefix_hash_.back(),
                           block_ids);
    }
  }
}

bool KvCache::prefixAvailable(const std::vector<std::vector<int32_t>>& found, int m) const {
  for (size_t k = 0; k < tables_.size(); ++k) {
    const int ring = capacity_[k] / kB;
    for (int b = std::max(0, m - ring); b < m; ++b)
      if (found[k][size_t(b)] < 0) return false;
  }
  return true;
}

int KvCache::mapPrefix(const int32_t* ids, int n, int limit) {
  assert(length_ == 0);
  const int most = std::min({n, limit, max_positions_}) / kB;
  std::vector<std::vector<int32_t>> found(tables_.size(), std::vector<int32_t>(size_t(most), -1));
  std::vector<uint64_t> hashes;
  uint64_t h = 0;
  for (int b = 0; b < most; ++b) {
    h = chainHash(h, ids + size_t(b) * kB);
    hashes.push_back(h);
    bool any = false;
    for (size_t k = 0; k < tables_.size(); ++k) {
      found[k][size_t(b)] = pool_->lookup(pool_->kinds_[k], h, ids + size_t(b) * kB);
      any = any || found[k][size_t(b)] >= 0;
    }
    if (!any) break;  // no kind has it: no longer prefix can be whole
  }
  int m = most;
  while (m > 0 && !prefixAvailable(found, m)) --m;
  if (m == 0) return 0;
  for (size_t k = 0; k < tables_.size(); ++k) {
    const int ring = capacity_[k] / kB;
    const int first = std::max(0, m - ring);
    tables_[k].resize(size_t(std::min(m, ring)));
    for (int b = first; b < m; ++b) {
      const int32_t blk = found[k][size_t(b)];
      pool_->retain(pool_->kinds_[k], blk);
      tables_[k][size_t(b % ring)] = blk;
    }
  }
  length_ = m * kB;
  ids_.assign(ids, ids + length_);
  hashes.resize(size_t(m));
  prefix_hash_ = std::move(hashes);
  return length_;
}

std::unique_ptr<KvCache> KvCache::fork() const {
  std::unique_ptr<KvCache> c(new KvCache(*pool_, max_positions_));
  c->init(numLayers());
  for (size_t k = 0; k < tables_.size(); ++k) {
    for (int32_t b : tables_[k]) pool_->retain(pool_->kinds_[k], b);
    c->tables_[k].assign(tables_[k].begin(), tables_[k].end());  // within the reserved capacity
  }
  c->length_ = length_;
  c->ids_ = ids_;
  c->prefix_hash_ = prefix_hash_;
  return c;
}

}  // namespace engine
