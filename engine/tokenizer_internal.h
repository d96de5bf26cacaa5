// Internals of engine::Tokenizer shared by tokenizer.cpp (encode/decode) and tokenizer_load.cpp
// (reading tokenizer.json). Not part of the engine's interface.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer.h"

namespace engine {

// (left id, right id) -> (rank, merged id), open addressing with linear probing. BPE looks a pair
// up for every adjacent symbol pair, so this is the hot table of encode().
struct Tokenizer::MergeTable {
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t merged = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  std::vector<Slot> slots;
  uint64_t mask = 0;
  size_t size = 0;

  static uint64_t keyOf(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  static uint64_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots.assign(cap, Slot{});
    mask = cap - 1;
    size = 0;
  }
  // A later duplicate replaces the earlier rank, as the reference implementations do.
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    if ((size + 1) * 2 > slots.size()) grow();
    uint64_t k = keyOf(left, right);
    for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask) {
      Slot& s = slots[i];
      if (s.key == kEmpty) {
        s = Slot{k, rank, merged};
        ++size;
        return;
      }
      if (s.key == k) {
        s.rank = rank;
        s.merged = merged;
        return;
      }
    }
  }
  const Slot* find(int32_t left, int32_t right) const {
    if (slots.empty()) return nullptr;
    uint64_t k = keyOf(left, right);
    for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.key == k) return &s;
      if (s.key == kEmpty) return nullptr;
    }
  }

 private:
  void grow() {
    std::vector<Slot> old = std::move(slots);
    reserve(old.size() ? old.size() : 8);
    for (const Slot& s : old) {
      if (s.key != kEmpty) {
        insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key & 0xffffffffu), s.rank,
               s.merged);
      }
    }
  }
};

// piece -> id over a vector of pieces (ids index it), open addressing: one 8-byte slot per entry
// holding 32 bits of the hash and the id, so a lookup touches one cache line and one piece.
struct Tokenizer::PieceIndex {
  const std::vector<std::string>* pieces = nullptr;
  std::vector<uint64_t> slots;  // (hash >> 32) << 32 | (id + 1); 0 = empty
  uint64_t mask = 0;

  static uint64_t hash(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a final mix
    for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
  }
  // Indexes every non-empty piece; a later id with the same piece wins.
  explicit PieceIndex(const std::vector<std::string>& p) : pieces(&p) {
    size_t cap = 16;
    while (cap < p.size() * 2) cap <<= 1;
    slots.assign(cap, 0);
    mask = cap - 1;
    for (size_t id = 0; id < p.size(); ++id) {
      if (!p[id].empty()) set(p[id], static_cast<int32_t>(id));
    }
  }
  // Points `piece` at `id` (which must already hold that piece in `pieces`).
  void set(std::string_view piece, int32_t id) {
    uint64_t h = hash(piece);
    uint64_t tag = h & 0xffffffff00000000ULL;
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
      uint64_t s = slots[i];
      if (s == 0 ||
          ((s & 0xffffffff00000000ULL) == tag && (*pieces)[(s & 0xffffffffu) - 1] == piece)) {
        slots[i] = tag | static_cast<uint32_t>(id + 1);
        return;
      }
    }
  }
  int32_t find(std::string_view piece) const {
    uint64_t h = hash(piece);
    uint64_t tag = h & 0xffffffff00000000ULL;
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
      uint64_t s = slots[i];
      if (s == 0) return -1;
      if ((s & 0xffffffff00000000ULL) == tag) {
        int32_t id = static_cast<int32_t>((s & 0xffffffffu) - 1);
        if ((*pieces)[static_cast<size_t>(id)] == piece) return id;
      }
    }
  }
};

// Byte trie over added-token contents, for leftmost-longest matching.
struct Tokenizer::AddedTrie {
  struct Node {
    int32_t first_child = -1;
    int32_t next_sibling = -1;
    int32_t token = -1;  // index into Tokenizer::added_ when a content ends here
    uint8_t byte = 0;
  };
  std::vector<Node> nodes = std::vector<Node>(1);  // [0] is the root
  bool can_start[256] = {};

  bool empty() const { return nodes.size() == 1; }
  void add(std::string_view content, int32_t token_index) {
    if (content.empty()) return;
    can_start[static_cast<uint8_t>(content[0])] = true;
    int32_t at = 0;
    for (char ch : content) {
      uint8_t b = static_cast<uint8_t>(ch);
      int32_t child = nodes[at].first_child;
      while (child >= 0 && nodes[child].byte != b) child = nodes[child].next_sibling;
      if (child < 0) {
        Node n;
        n.byte = b;
        n.next_sibling = nodes[at].first_child;
        nodes.push_back(n);
        child = static_cast<int32_t>(nodes.size() - 1);
        nodes[at].first_child = child;
      }
      at = child;
    }
    if (nodes[at].token < 0) nodes[at].token = token_index;  // first declaration wins
  }
  // The longest content starting at text[pos]: (token index, length), or (-1, 0).
  std::pair<int32_t, size_t> longestAt(std::string_view text, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, 0};
    int32_t at = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      uint8_t b = static_cast<uint8_t>(text[i]);
      int32_t child = nodes[at].first_child;
      while (child >= 0 && nodes[child].byte != b) child = nodes[child].next_sibling;
      if (child < 0) break;
      at = child;
      if (nodes[at].token >= 0) best = {nodes[at].token, i + 1 - pos};
    }
    return best;
  }
};

// tokenizer.json's normalizer, flattened: Replace and Prepend steps applied in order.
struct Tokenizer::Normalizer {
  struct Step {
    enum class Kind { kReplace, kPrepend } kind = Kind::kReplace;
    std::string pattern;  // kReplace: the literal to replace
    std::string content;  // kReplace: the replacement; kPrepend: the prefix
  };
  std::vector<Step> steps;

  // Appends normalize(text) to `out`.
  void apply(std::string_view text, std::string& out) const;
};

// tokenizer.json's pre-tokenizer: nothing, or a Split on a literal string.
struct Tokenizer::PreTokenizer {
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  std::string pattern;
  Behavior behavior = Behavior::kMergedWithPrevious;

  // Cuts `text` into words (views into `text`), appending them to `words`.
  void split(std::string_view text, std::vector<std::string_view>& words) const;
};

// The binary cache of a parsed tokenizer.json (tokenizer_cache.cpp): the model vocab, the merges
// resolved to ids, the <0xHH> ids, the added tokens, and the rest of the document as JSON text.
struct Tokenizer::Cache {
  // Identifies one tokenizer.json: a cache is valid only for the same size, mtime and content.
  struct Stamp {
    uint64_t size = 0;
    int64_t mtime_ns = 0;  // std::filesystem::file_time_type ticks
    uint64_t hash = 0;     // contentHash() of the whole file
  };

  // A fast 64-bit hash of `bytes` (not cryptographic: it tells a changed file from the same one).
  static uint64_t contentHash(std::string_view bytes);

  // The cache file for `tok` in the state Loader::vocabAndMerges leaves it: pieces_ holds the model
  // vocab only (added tokens not placed yet); merges_, byte_id_ and added_ are set. `rest_json` is
  // tokenizer.json without model.vocab, model.merges and added_tokens.
  static std::string encode(const Stamp& stamp, std::string_view rest_json, const Tokenizer& tok);

  // True when `file` has a current header for `stamp` and an intact checksum.
  static bool matches(std::string_view file, const Stamp& stamp);
  // Fills a fresh `tok` (pieces_, merges_, byte_id_, added_) and `rest_json` from a cache file
  // that matches(); false when its content is inconsistent (then `tok` must be discarded).
  static bool decode(std::string_view file, Tokenizer& tok, std::string& rest_json);

  // DIR/NAME.switchyard-cache beside the JSON, and the file for it under `cache_dir` (named by a
  // hash of the JSON's absolute path; empty when there is no cache dir).
  static std::string besidePath(const std::string& json_path);
  static std::string fallbackPath(const std::string& json_path, const std::string& cache_dir);
  // Writes `bytes` to a temporary file in the target's directory and renames it over `path`.
  static bool writeAtomically(const std::string& path, std::string_view bytes);
};

// Replaces every occurrence of `from` in `text` by `to`, appending to `out`.
void appendReplaced(std::string_view text, std::string_view from, std::string_view to,
                    std::string& out);

}  // namespace engine
