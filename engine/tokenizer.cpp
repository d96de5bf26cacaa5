// engine::Tokenizer: encoding, decoding and the UTF-8 helpers. Loading is in tokenizer_load.cpp.
#include "engine/tokenizer.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "engine/tokenizer_internal.h"

namespace engine {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Decodes the code point at text[i] of well-formed UTF-8; sets `len` to its byte length.
char32_t decodeValid(std::string_view text, size_t i, size_t& len) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  uint8_t c = b(0);
  if (c < 0x80) {
    len = 1;
    return c;
  }
  if (c < 0xE0) {
    len = 2;
    return (char32_t{c & 0x1Fu} << 6) | (b(1) & 0x3Fu);
  }
  if (c < 0xF0) {
    len = 3;
    return (char32_t{c & 0x0Fu} << 12) | (char32_t{b(1) & 0x3Fu} << 6) | (b(2) & 0x3Fu);
  }
  len = 4;
  return (char32_t{c & 0x07u} << 18) | (char32_t{b(1) & 0x3Fu} << 12) |
         (char32_t{b(2) & 0x3Fu} << 6) | (b(3) & 0x3Fu);
}

// Length of the well-formed sequence starting at bytes[i] (1..4), 0 when ill-formed, or
// -(bytes consumed) when it is a valid prefix cut off by the end of `bytes`. `bad_at` receives
// the index of the first byte that does not belong (to be reprocessed), per the WHATWG decoder.
int sequenceAt(std::string_view bytes, size_t i, size_t& bad_at) {
  uint8_t b = static_cast<uint8_t>(bytes[i]);
  if (b < 0x80) return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    bad_at = i + 1;
    return 0;
  }
  size_t j = i + 1;
  for (int seen = 0; seen < need; ++seen, ++j) {
    if (j >= bytes.size()) return -static_cast<int>(j - i);
    uint8_t c = static_cast<uint8_t>(bytes[j]);
    if (c < lo || c > hi) {
      bad_at = j;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

}  // namespace

size_t appendUtf8Lossy(std::string& out, std::string_view bytes, bool final) {
  size_t i = 0;
  size_t n = bytes.size();
  while (i < n) {
    size_t ascii_end = i;
    while (ascii_end < n && static_cast<uint8_t>(bytes[ascii_end]) < 0x80) ++ascii_end;
    if (ascii_end > i) {
      out.append(bytes.substr(i, ascii_end - i));
      i = ascii_end;
      continue;
    }
    size_t bad_at = 0;
    int len = sequenceAt(bytes, i, bad_at);
    if (len > 0) {
      out.append(bytes.substr(i, static_cast<size_t>(len)));
      i += static_cast<size_t>(len);
    } else if (len == 0) {
      out.append(kReplacementChar);
      i = bad_at;
    } else {
      if (!final) return i;  // a valid prefix cut off by the end: wait for more bytes
      out.append(kReplacementChar);
      i = n;
    }
  }
  return n;
}

bool isValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad_at = 0;
    int len = sequenceAt(text, i, bad_at);
    if (len <= 0) return false;
    i += static_cast<size_t>(len);
  }
  return true;
}

std::string sanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  appendUtf8Lossy(out, text, true);
  return out;
}

bool isJsWhitespace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string_view trimJsWhitespace(std::string_view text) {
  // Ill-formed bytes are never whitespace: trimming stops at them.
  auto whitespaceAt = [&](size_t i, size_t end, size_t& len) {
    size_t bad_at = 0;
    int n = sequenceAt(text.substr(0, end), i, bad_at);
    if (n <= 0) return false;
    len = static_cast<size_t>(n);
    return isJsWhitespace(decodeValid(text, i, len));
  };
  size_t begin = 0;
  size_t len = 0;
  while (begin < text.size() && whitespaceAt(begin, text.size(), len)) begin += len;
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    if (!whitespaceAt(start, end, len) || start + len != end) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

void appendReplaced(std::string_view text, std::string_view from, std::string_view to,
                    std::string& out) {
  if (from.empty()) {
    out.append(text);
    return;
  }
  size_t at = 0;
  for (size_t hit; (hit = text.find(from, at)) != std::string_view::npos; at = hit + from.size()) {
    out.append(text.substr(at, hit - at));
    out.append(to);
  }
  out.append(text.substr(at));
}

void Tokenizer::Normalizer::apply(std::string_view text, std::string& out) const {
  std::string cur(text), next;
  for (const Step& step : steps) {
    next.clear();
    if (step.kind == Step::Kind::kReplace) {
      appendReplaced(cur, step.pattern, step.content, next);
    } else if (!cur.empty()) {  // Prepend leaves an empty string alone
      next.append(step.content);
      next.append(cur);
    }
    cur.swap(next);
  }
  out.append(cur);
}

void Tokenizer::PreTokenizer::split(std::string_view text,
                                    std::vector<std::string_view>& words) const {
  if (pattern.empty()) {
    words.push_back(text);
    return;
  }
  // The text as alternating runs: non-empty stretches between matches, and the matches.
  struct Run {
    size_t begin, end;
    bool match;
  };
  std::vector<Run> runs;
  size_t at = 0;
  for (size_t hit; (hit = text.find(pattern, at)) != std::string_view::npos;) {
    if (hit > at) runs.push_back(Run{at, hit, false});
    runs.push_back(Run{hit, hit + pattern.size(), true});
    at = hit + pattern.size();
  }
  if (at < text.size()) runs.push_back(Run{at, text.size(), false});

  std::vector<Run> merged;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const Run& r : runs) {
        if (!r.match) merged.push_back(r);
      }
      break;
    case Behavior::kIsolated:
      merged = runs;
      break;
    case Behavior::kContiguous:
      for (const Run& r : runs) {
        if (r.match && !merged.empty() && merged.back().match) {
          merged.back().end = r.end;
        } else {
          merged.push_back(r);
        }
      }
      break;
    case Behavior::kMergedWithPrevious:
      // A match joins the piece before it unless that piece is itself a match.
      for (size_t i = 0; i < runs.size(); ++i) {
        if (runs[i].match && i > 0 && !runs[i - 1].match) {
          merged.back().end = runs[i].end;
        } else {
          merged.push_back(runs[i]);
        }
      }
      break;
    case Behavior::kMergedWithNext:
      // A match joins the piece after it unless that piece is itself a match.
      for (size_t i = runs.size(); i-- > 0;) {
        if (runs[i].match && i + 1 < runs.size() && !runs[i + 1].match) {
          merged.back().begin = runs[i].begin;
        } else {
          merged.push_back(runs[i]);
        }
      }
      std::reverse(merged.begin(), merged.end());
      break;
  }
  for (const Run& r : merged) words.push_back(text.substr(r.begin, r.end - r.begin));
}

// ---- encode -------------------------------------------------------------------------------------

void Tokenizer::splitAddedTokens(std::string_view text, const AddedTrie& trie,
                                 std::vector<Piece>& pieces) const {
  size_t seg_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    if (!trie.can_start[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    auto [token, len] = trie.longestAt(text, pos);
    if (token < 0) {
      ++pos;
      continue;
    }
    if (pos > seg_start) pieces.push_back(Piece{seg_start, pos, -1});
    pieces.push_back(Piece{pos, pos + len, token});
    pos += len;
    seg_start = pos;
  }
  if (seg_start < text.size()) pieces.push_back(Piece{seg_start, text.size(), -1});

  // lstrip / rstrip: the token swallows the whitespace next to it.
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].id < 0) continue;
    const AddedToken& tok = added_[static_cast<size_t>(pieces[i].id)];
    if (tok.lstrip && i > 0 && pieces[i - 1].id < 0) {
      Piece& prev = pieces[i - 1];
      std::string_view s = text.substr(prev.begin, prev.end - prev.begin);
      std::string_view t = trimJsWhitespace(s);
      prev.end = (t.empty() ? prev.begin : static_cast<size_t>(t.data() - text.data()) + t.size());
    }
    if (tok.rstrip && i + 1 < pieces.size() && pieces[i + 1].id < 0) {
      Piece& next = pieces[i + 1];
      std::string_view s = text.substr(next.begin, next.end - next.begin);
      size_t lead = 0;
      while (lead < s.size()) {
        size_t len = 0;
        if (!isJsWhitespace(decodeValid(s, lead, len))) break;
        lead += len;
      }
      next.begin += lead;
    }
  }
  // Piece ids are indices into added_ so far; turn them into token ids.
  for (Piece& p : pieces) {
    if (p.id >= 0) p.id = added_[static_cast<size_t>(p.id)].id;
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::string sanitized;
  if (!isValidUtf8(text)) {
    sanitized = sanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);

  std::vector<Piece> pieces;
  splitAddedTokens(text, *raw_trie_, pieces);
  for (const Piece& p : pieces) {
    if (p.id >= 0) {
      out.push_back(p.id);
    } else if (p.end > p.begin) {
      encodeSegment(text.substr(p.begin, p.end - p.begin), out);
    }
  }
  // gemma-spec §5.4: never two <bos> (a rendered chat template starts with the text "<bos>").
  if (add_bos && bos_id_ >= 0 && out.size() >= 2 && out[1] == bos_id_) out.erase(out.begin());
  return out;
}

void Tokenizer::encodeSegment(std::string_view raw, std::vector<int32_t>& out) const {
  std::string normalized;
  if (normalizer_) {
    normalizer_->apply(raw, normalized);
  } else {
    normalized.assign(raw);
  }
  if (normalized.empty()) return;
  if (normalized_trie_->empty()) {
    encodeNormalized(normalized, out);
    return;
  }
  std::vector<Piece> pieces;
  splitAddedTokens(normalized, *normalized_trie_, pieces);
  for (const Piece& p : pieces) {
    if (p.id >= 0) {
      out.push_back(p.id);
    } else if (p.end > p.begin) {
      encodeNormalized(std::string_view(normalized).substr(p.begin, p.end - p.begin), out);
    }
  }
}

void Tokenizer::encodeNormalized(std::string_view normalized, std::vector<int32_t>& out) const {
  if (!pre_tokenizer_) {
    encodeWord(normalized, out);
    return;
  }
  std::vector<std::string_view> words;
  pre_tokenizer_->split(normalized, words);
  for (std::string_view w : words) encodeWord(w, out);
}

void Tokenizer::encodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    int32_t id = model_vocab_->find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() > kCacheMaxWordBytes) {
    bpe(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  bpe(word, out);
  std::vector<int32_t> ids(out.begin() + static_cast<ptrdiff_t>(start), out.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();  // crude, but bounded and rare
  cache_.emplace(std::string(word), std::move(ids));
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool mergeable;  // byte-fallback symbols never merge
  bool alive;
};

// A queued merge: (rank << 32 | position of the left symbol), so that the smallest key is the
// lowest rank, leftmost on ties. Ranks identify merges, so an entry is still valid exactly when
// the pair now at that position has the same rank.
uint64_t candidateKey(int32_t rank, int32_t pos) {
  return (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(pos);
}

}  // namespace

void Tokenizer::bpe(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<uint64_t> heap;  // min-heap of candidateKey
  symbols.clear();
  heap.clear();
  for (size_t i = 0; i < word.size();) {
    size_t len = 0;
    char32_t cp = decodeValid(word, i, len);
    int32_t id = charId(cp);
    if (id >= 0) {
      symbols.push_back(Symbol{id, 0, 0, true, true});
    } else {
      bool have_bytes = byte_fallback_;
      for (size_t k = 0; have_bytes && k < len; ++k) {
        have_bytes = byte_id_[static_cast<uint8_t>(word[i + k])] >= 0;
      }
      if (have_bytes) {
        for (size_t k = 0; k < len; ++k) {
          symbols.push_back(Symbol{byte_id_[static_cast<uint8_t>(word[i + k])], 0, 0, false, true});
        }
      } else if (unk_id_ >= 0) {
        symbols.push_back(Symbol{unk_id_, 0, 0, false, true});
      }
    }
    i += len;
  }
  int32_t n = static_cast<int32_t>(symbols.size());
  if (n == 0) return;
  for (int32_t i = 0; i < n; ++i) {
    symbols[i].prev = i - 1;
    symbols[i].next = i + 1 < n ? i + 1 : -1;
  }

  const auto later = std::greater<uint64_t>();
  auto pairAt = [&](int32_t pos) -> const MergeTable::Slot* {
    int32_t next = symbols[pos].next;
    if (next < 0 || !symbols[pos].mergeable || !symbols[next].mergeable) return nullptr;
    return merges_->find(symbols[pos].id, symbols[next].id);
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const MergeTable::Slot* m = pairAt(i)) heap.push_back(candidateKey(m->rank, i));
  }
  std::make_heap(heap.begin(), heap.end(), later);
  auto push = [&](int32_t pos) {
    if (const MergeTable::Slot* m = pairAt(pos)) {
      heap.push_back(candidateKey(m->rank, pos));
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    uint64_t key = heap.back();
    heap.pop_back();
    auto pos = static_cast<int32_t>(key & 0xffffffffu);
    Symbol& left = symbols[pos];
    if (!left.alive) continue;
    const MergeTable::Slot* m = pairAt(pos);
    if (!m || static_cast<uint64_t>(m->rank) != key >> 32) continue;  // stale entry
    Symbol& right = symbols[left.next];
    left.id = m->merged;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = pos;
    if (left.prev >= 0) push(left.prev);
    push(pos);
  }

  bool prev_unk = false;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    int32_t id = symbols[i].id;
    bool unk = id == unk_id_;
    if (!(fuse_unk_ && unk && prev_unk)) out.push_back(id);
    prev_unk = unk;
  }
}

// ---- decode and lookups -------------------------------------------------------------------------

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  std::string pending;  // bytes of consecutive <0xHH> tokens
  for (int32_t id : ids) {
    if (id < 0 || id >= vocabSize()) id = unk_id_;
    if (id < 0) continue;
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    int b = byteValue(id);
    if (b >= 0) {
      pending.push_back(static_cast<char>(b));
      continue;
    }
    if (!pending.empty()) {
      appendUtf8Lossy(out, pending, true);
      pending.clear();
    }
    out.append(decoded_[static_cast<size_t>(id)]);
  }
  if (!pending.empty()) appendUtf8Lossy(out, pending, true);
  return out;
}

const std::string& Tokenizer::tokenText(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= vocabSize()) return kEmpty;
  return pieces_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::idOf(std::string_view piece) const {
  int32_t id = piece_to_id_->find(piece);
  if (id < 0) return std::nullopt;
  return id;
}

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && id < vocabSize() && special_[static_cast<size_t>(id)] != 0;
}

int Tokenizer::byteValue(int32_t id) const {
  if (!decode_bytes_ || id < 0 || id >= vocabSize()) return -1;
  return byte_of_[static_cast<size_t>(id)];
}

std::string_view Tokenizer::decodedPiece(int32_t id) const {
  if (id < 0 || id >= vocabSize()) id = unk_id_;
  if (id < 0) return {};
  return decoded_[static_cast<size_t>(id)];
}

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

}  // namespace engine
