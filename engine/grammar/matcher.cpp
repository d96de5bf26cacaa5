// Matcher: a byte-level pushdown parser over a Grammar, and the token masks built on it.
//
// Frame phases, by node kind (a and b are the frame's two counters):
//   object: start `{` -> open (whitespace; a key's `"` or `}`) -> key (b: key trie node) ->
//           after key (ws, `:`) -> colon (ws, then the value is pushed) -> value (ws, `,` or
//           `}`) -> comma (ws, a key's `"`). a: the next declared property that may come (or,
//           for free keys, the keys written); b: the property being written.
//   array:  start `[` -> open (ws, `]` or an item) -> value (ws, `,` or `]`) -> comma (ws, an
//           item). a: items so far.
//   string: start `"` -> body (sub: UTF-8 and escape state; a: bytes written).
//   number: start -> minus / zero / int (a: digits) -> dot -> frac -> e -> sign -> exp.
//   literal: a is the node of the literal trie reached.
//   anyOf: forks into its branches on the first byte.
// A frame whose value is closed is popped; one that is complete but might go on (a number,
// a literal that prefixes another) is popped by the first byte it cannot take, which then goes
// to the frame below.
#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/tokenizer.h"

namespace engine::grammar {
namespace {

constexpr int kMaxThreads = 64;

enum Phase : uint8_t {
  kStart = 0,
  kOpen,
  kKey,
  kAfterKey,
  kColon,
  kValue,
  kComma,
  kBody,
  kMinus,
  kZero,
  kInt,
  kDot,
  kFrac,
  kExp,
  kExpSign,
  kExpDigits,
};

// String body states (Frame::sub).
enum Utf8 : uint8_t {
  kPlain = 0,
  kCont1,    // one continuation byte 80-BF to go
  kCont2,    // two to go
  kCont3,    // three to go
  kAfterE0,  // A0-BF, then one
  kAfterED,  // 80-9F, then one (no surrogates)
  kAfterF0,  // 90-BF, then two
  kAfterF4,  // 80-8F, then two (at most U+10FFFF)
  kEscape,   // after a backslash
  kHex0,     // after \u
  kHex1,     // one hex digit written
  kHex2,
  kHex3,
  kHexAfterD,  // \uD: 0-7 only, so no surrogate is ever named
};

bool isWs(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool isDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool isHex(uint8_t c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Plain string content: whole UTF-8 characters, no quote, backslash or control byte.
bool isPlainContent(const std::string& bytes) {
  for (unsigned char c : bytes) {
    if (c < 0x20 || c == '"' || c == '\\') return false;
  }
  return isValidUtf8(bytes);
}

// Content of a Gemma 4 string whatever came before (at a character boundary, no delimiter
// byte pending): whole UTF-8 characters, tab, CR and LF but no other control byte, and no '<',
// which may open the closing <|"|>. Quotes and backslashes are content there.
bool isNativePlainContent(const std::string& bytes) {
  for (unsigned char c : bytes) {
    if (c == '<' || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')) return false;
  }
  return isValidUtf8(bytes);
}

enum class Step { kConsumed, kDone, kPop, kPush, kReject };

// One byte of a free string (phases kStart, kBody), at most `max_bytes` between the quotes.
Step stringStep(Frame& f, uint8_t c, int32_t max_bytes) {
  if (f.phase == kStart) {
    if (c != '"') return Step::kReject;
    f.phase = kBody;
    f.sub = kPlain;
    f.a = 0;
    return Step::kConsumed;
  }
  auto take = [&](uint8_t next, int32_t need = 1) {
    if (f.a + need > max_bytes) return Step::kReject;
    ++f.a;
    f.sub = next;
    return Step::kConsumed;
  };
  auto cont = [&](uint8_t lo, uint8_t hi, uint8_t next) {
    return c >= lo && c <= hi ? take(next) : Step::kReject;
  };
  switch (f.sub) {
    case kPlain:
      if (c == '"') return Step::kDone;
      if (c == '\\') return take(kEscape, 2);
      if (c < 0x20) return Step::kReject;
      if (c < 0x80) return take(kPlain);
      if (c >= 0xC2 && c <= 0xDF) return take(kCont1, 2);
      if (c == 0xE0) return take(kAfterE0, 3);
      if (c == 0xED) return take(kAfterED, 3);
      if (c >= 0xE1 && c <= 0xEF) return take(kCont2, 3);
      if (c == 0xF0) return take(kAfterF0, 4);
      if (c >= 0xF1 && c <= 0xF3) return take(kCont3, 4);
      if (c == 0xF4) return take(kAfterF4, 4);
      return Step::kReject;
    case kCont1:
      return cont(0x80, 0xBF, kPlain);
    case kCont2:
      return cont(0x80, 0xBF, kCont1);
    case kCont3:
      return cont(0x80, 0xBF, kCont2);
    case kAfterE0:
      return cont(0xA0, 0xBF, kCont1);
    case kAfterED:
      return cont(0x80, 0x9F, kCont1);
    case kAfterF0:
      return cont(0x90, 0xBF, kCont2);
    case kAfterF4:
      return cont(0x80, 0x8F, kCont2);
    case kEscape:
      if (c == 'u') return take(kHex0, 5);  // the backslash is counted: \uXXXX is 6 bytes
      if (std::strchr("\"\\/bfnrt", c) != nullptr && c != 0) return take(kPlain);
      return Step::kReject;
    case kHex0:
      if (c == 'd' || c == 'D') return take(kHexAfterD);
      return isHex(c) ? take(kHex1) : Step::kReject;
    case kHexAfterD:
      return cont('0', '7', kHex2);
    case kHex1:
      return isHex(c) ? take(kHex2) : Step::kReject;
    case kHex2:
      return isHex(c) ? take(kHex3) : Step::kReject;
    case kHex3:
      return isHex(c) ? take(kPlain) : Step::kReject;
  }
  return Step::kReject;
}

// One byte of a Gemma 4 string (Node::native): <|"|>, UTF-8 content with no escapes (tab, CR and
// LF allowed), <|"|> again. f.b: the delimiter's bytes matched so far; the closing one's count
// as content only once a byte shows they were, so that a string can always be closed.
Step nativeStringStep(Frame& f, uint8_t c, int32_t max_bytes) {
  const std::string_view quote = kGemma4Quote;
  const auto len = static_cast<int32_t>(quote.size());
  if (f.phase == kStart) {
    if (c != static_cast<uint8_t>(quote[f.b])) return Step::kReject;
    if (++f.b < len) return Step::kConsumed;
    f.phase = kBody;
    f.sub = kPlain;
    f.a = 0;
    f.b = 0;
    return Step::kConsumed;
  }
  if (f.sub == kPlain) {
    if (c == static_cast<uint8_t>(quote[f.b])) return ++f.b == len ? Step::kDone : Step::kConsumed;
    if (f.b > 0) {
      f.a += f.b;
      f.b = 0;
      if (f.a > max_bytes) return Step::kReject;
      if (c == static_cast<uint8_t>(quote[0])) {
        f.b = 1;
        return Step::kConsumed;
      }
    }
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return Step::kReject;
    if (c < 0x80) {
      if (f.a + 1 > max_bytes) return Step::kReject;
      ++f.a;
      return Step::kConsumed;
    }
  }
  return stringStep(f, c, max_bytes);  // the bytes of a multi-byte character
}

// One byte of a number (JSON's grammar; an integer has no fraction or exponent).
Step numberStep(Frame& f, uint8_t c, bool integer, int32_t max_digits) {
  auto go = [&](uint8_t phase, int32_t digits) {
    f.phase = phase;
    f.a = digits;
    return Step::kConsumed;
  };
  auto after_int = [&]() {
    if (!integer && c == '.') return go(kDot, 0);
    if (!integer && (c == 'e' || c == 'E')) return go(kExp, 0);
    return Step::kPop;
  };
  switch (f.phase) {
    case kStart:
      if (c == '-') return go(kMinus, 0);
      [[fallthrough]];
    case kMinus:
      if (c == '0') return go(kZero, 1);
      if (c >= '1' && c <= '9') return go(kInt, 1);
      return Step::kReject;
    case kZero:
      return after_int();
    case kInt:
      if (isDigit(c)) return f.a < max_digits ? go(kInt, f.a + 1) : Step::kReject;
      return after_int();
    case kDot:
      return isDigit(c) ? go(kFrac, 1) : Step::kReject;
    case kFrac:
      if (isDigit(c)) return f.a < max_digits ? go(kFrac, f.a + 1) : Step::kReject;
      if (c == 'e' || c == 'E') return go(kExp, 0);
      return Step::kPop;
    case kExp:
      if (c == '+' || c == '-') return go(kExpSign, 0);
      [[fallthrough]];
    case kExpSign:
      return isDigit(c) ? go(kExpDigits, 1) : Step::kReject;
    case kExpDigits:
      if (isDigit(c)) return f.a < 2 ? go(kExpDigits, f.a + 1) : Step::kReject;
      return Step::kPop;
  }
  return Step::kReject;
}

// Whether a frame's value is complete as it stands (a later byte may still extend it).
bool completeAsIs(const Grammar& g, const Frame& f) {
  const Node& node = g.nodes[f.node];
  if (node.kind == NodeKind::kNumber || node.kind == NodeKind::kInteger) {
    return f.phase == kZero || f.phase == kInt || f.phase == kFrac || f.phase == kExpDigits;
  }
  if (node.kind == NodeKind::kLiteral) return node.literals.nodes[f.a].value >= 0;
  if (node.kind == NodeKind::kSequence) return f.a == static_cast<int32_t>(node.alts.size());
  return node.kind == NodeKind::kText;  // free text may end anywhere
}

// One byte of free text (kText): f.b is how far the marker (literals, all but its last byte) has
// been written, f.a the calls so far. The byte that completes the marker starts a call (pushed
// as `child`, which takes that byte), or is refused once max_items calls were made.
Step textStep(const Grammar& g, const Node& node, Frame& f, uint8_t c, Frame& child) {
  const LiteralTrie& marker = node.literals;
  if (f.b > 0 && marker.nodes[f.b].value >= 0 && g.nodes[node.alts[0]].first.test(c)) {
    if (f.a >= node.max_items) return Step::kReject;
    ++f.a;
    f.b = 0;
    child.node = node.alts[0];
    return Step::kPush;
  }
  int32_t k = marker.child(f.b, c);
  if (k < 0) k = std::max(marker.child(0, c), 0);  // plain text, perhaps a new marker's start
  f.b = k;
  return Step::kConsumed;
}

}  // namespace

// ---- VocabIndex ---------------------------------------------------------------------------------

VocabIndex::Trie VocabIndex::buildTrie(const std::vector<std::string>& bytes,
                                       const std::vector<int32_t>& ids) {
  std::vector<int32_t> order = ids;
  std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
    return bytes[x] != bytes[y] ? bytes[x] < bytes[y] : x < y;
  });
  Trie t;
  std::vector<uint32_t> path;  // open nodes, one per depth
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = bytes[id];
    size_t common = 0;
    if (prev) {
      while (common < s.size() && common < prev->size() && s[common] == (*prev)[common]) ++common;
    }
    while (path.size() > common) {
      t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
      path.pop_back();
    }
    for (size_t k = common; k < s.size(); ++k) {
      path.push_back(static_cast<uint32_t>(t.byte.size()));
      t.byte.push_back(static_cast<uint8_t>(s[k]));
      t.depth.push_back(static_cast<uint16_t>(k + 1));
      t.end.push_back(0);
      t.tok_begin.push_back(static_cast<uint32_t>(t.ids.size()));
    }
    t.ids.push_back(id);  // belongs to the node just reached (the last one opened)
    prev = &s;
  }
  while (!path.empty()) {
    t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
    path.pop_back();
  }
  // tok_begin[i] was set when node i was opened; its tokens run to the next node's start.
  t.tok_begin.push_back(static_cast<uint32_t>(t.ids.size()));
  // plain_after and max_rest: for each token, the positions from which its rest is plain
  // string content (bit p: bytes [p, end) are; tokens longer than 63 bytes never count).
  std::vector<uint64_t> plain_from(bytes.size(), 0);
  for (int32_t id : ids) {
    const std::string& s = bytes[id];
    for (size_t p = 0; p <= s.size() && p < 64; ++p) {
      if (isPlainContent(s.substr(p))) plain_from[id] |= uint64_t{1} << p;
    }
  }
  t.plain_after.assign(t.size(), 0);
  t.max_rest.assign(t.size(), 0);
  for (size_t i = 0; i < t.size(); ++i) {
    const int d = t.depth[i];
    bool plain = d < 64;
    size_t rest = 0;
    for (uint32_t k = t.tok_begin[i]; k < t.tok_begin[t.end[i]] && plain; ++k) {
      plain = (plain_from[t.ids[k]] >> d) & 1;
      rest = std::max(rest, bytes[t.ids[k]].size() - d);
    }
    t.plain_after[i] = plain && rest < 65536;
    t.max_rest[i] = static_cast<uint16_t>(std::min<size_t>(rest, 65535));
  }
  // Children lists (slot 0: the root's; slot i + 1: node i's), so that a walk reads the bytes
  // of a node's children from one place instead of from all over the preorder arrays.
  t.kid_begin.assign(t.size() + 2, 0);
  auto addKids = [&t](size_t from, size_t to) {
    for (size_t k = from; k < to; k = t.end[k]) {
      t.kids.push_back(static_cast<uint32_t>(k));
      t.kid_bytes.push_back(t.byte[k]);
    }
  };
  addKids(0, t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    t.kid_begin[i + 1] = static_cast<uint32_t>(t.kids.size());
    addKids(i + 1, t.end[i]);
  }
  t.kid_begin[t.size() + 1] = static_cast<uint32_t>(t.kids.size());
  return t;
}

VocabIndex::VocabIndex(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids)
    : bytes_(std::move(token_bytes)), end_ids_(std::move(end_ids)) {
  std::vector<int32_t> usable, non_content;
  for (int32_t id = 0; id < vocabSize(); ++id) {
    if (bytes_[id].empty() || isEnd(id)) continue;
    usable.push_back(id);
    max_token_bytes_ = std::max(max_token_bytes_, bytes_[id].size());
    if (isPlainContent(bytes_[id])) {
      max_content_bytes_ = std::max<int32_t>(max_content_bytes_, bytes_[id].size());
    } else {
      non_content.push_back(id);
    }
  }
  all_ = buildTrie(bytes_, usable);
  non_content_ = buildTrie(bytes_, non_content);
  std::vector<std::string> rests(bytes_.size());
  std::vector<int32_t> with_rest;
  for (int32_t id : non_content) {
    const std::string& b = bytes_[id];
    size_t p = 0;
    while (p < b.size() && static_cast<uint8_t>(b[p]) >= 0x20 && b[p] != '"' && b[p] != '\\') ++p;
    if (p == b.size() || static_cast<uint8_t>(b[p]) < 0x20) {
      if (b.size() != 1) continue;  // a control byte ends every string: never allowed there
      p = 0;                        // a byte token (a piece of a UTF-8 character)
    }
    // A prefix that is not plain content is kept: the rest is then the whole token.
    rests[id] = isPlainContent(b.substr(0, p)) ? b.substr(p) : b;
    with_rest.push_back(id);
  }
  string_rests_ = buildTrie(rests, with_rest);
  std::vector<int32_t> with_lt;
  without_lt_.assign(maskWords(), 0);
  for (int32_t id : usable) {
    if (bytes_[id].find('<') != std::string::npos) {
      with_lt.push_back(id);
    } else {
      without_lt_[id / 64] |= uint64_t{1} << (id % 64);
    }
  }
  with_lt_ = buildTrie(bytes_, with_lt);
  // Inside a Gemma 4 string: the tokens that are content there by themselves, as a mask, and
  // the other tokens without a '<' (pieces of characters, control bytes) to walk.
  std::vector<int32_t> native_rest;
  native_plain_.assign(maskWords(), 0);
  for (int32_t id : usable) {
    if (isNativePlainContent(bytes_[id])) {
      native_plain_[id / 64] |= uint64_t{1} << (id % 64);
    } else if (bytes_[id].find('<') == std::string::npos) {
      native_rest.push_back(id);
    }
  }
  native_rest_ = buildTrie(bytes_, native_rest);
  // Its tokens' bytes are not the rests: never mark a subtree by length there.
  std::fill(string_rests_.plain_after.begin(), string_rests_.plain_after.end(), 0);
  const size_t words = maskWords();
  content_le_.assign((max_content_bytes_ + 1) * words, 0);
  for (int32_t id : usable) {
    if (!isPlainContent(bytes_[id])) continue;
    content_le_[bytes_[id].size() * words + id / 64] |= uint64_t{1} << (id % 64);
  }
  for (int32_t len = 1; len <= max_content_bytes_; ++len) {
    for (size_t w = 0; w < words; ++w)
      content_le_[len * words + w] |= content_le_[(len - 1) * words + w];
  }
}

std::shared_ptr<const VocabIndex> VocabIndex::fromTokenizer(
    const Tokenizer& tokenizer, std::vector<int32_t> end_ids,
    const std::vector<std::string>& writable_special) {
  std::vector<std::string> bytes(tokenizer.vocabSize());
  std::vector<uint8_t> added(tokenizer.vocabSize(), 0);
  for (const auto& t : tokenizer.addedTokens()) {
    if (t.id >= 0 && t.id < tokenizer.vocabSize()) added[t.id] = 1;
  }
  for (int32_t id = 0; id < tokenizer.vocabSize(); ++id) {
    if (added[id] || tokenizer.isSpecial(id)) {
      const std::string& piece = tokenizer.tokenText(id);
      if (std::find(writable_special.begin(), writable_special.end(), piece) !=
          writable_special.end()) {
        bytes[id] = std::string(piece);
      }
      continue;
    }
    int b = tokenizer.byteValue(id);
    if (b >= 0) {
      bytes[id] = std::string(1, static_cast<char>(b));
    } else {
      bytes[id] = std::string(tokenizer.decodedPiece(id));
    }
  }
  return std::make_shared<const VocabIndex>(std::move(bytes), std::move(end_ids));
}

bool VocabIndex::isEnd(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

const uint64_t* VocabIndex::contentUpTo(int32_t bytes) const {
  bytes = std::clamp(bytes, 0, max_content_bytes_);
  return content_le_.data() + static_cast<size_t>(bytes) * maskWords();
}

// ---- Matcher ------------------------------------------------------------------------------------

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const VocabIndex> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {
  Frame root{};
  root.node = grammar_->root;
  state_.frames.push_back(root);
  state_.ends.push_back(1);
  scratch_.resize(vocab_->maxTokenBytes() + 1);
  for (auto& s : scratch_) {
    s.frames.reserve(256);
    s.ends.reserve(kMaxThreads);
  }
}

namespace {

// Whether a value of node `id` can still be completed with `depth_below` frames under it.
bool fitsDepth(const Grammar& g, int depth_below, int32_t id) {
  return depth_below + g.nodes[id].min_depth <= g.options.max_depth;
}

// One more byte of whitespace in frame f's current gap, within the bound.
Step whitespaceStep(const Grammar& g, Frame& f, uint8_t c) {
  if (!isWs(c) || f.sub >= g.options.max_whitespace) return Step::kReject;
  ++f.sub;
  return Step::kConsumed;
}

// Whether a declared property whose key passes through key-trie node `trie_node` may come next
// (from f.a up to the first required one) and its value fits the depth left.
bool someKeyFits(const Grammar& g, const Node& node, const Frame& f, int n, int32_t trie_node) {
  const int32_t n_props = static_cast<int32_t>(node.props.size());
  const int32_t last = std::min(node.next_required[f.a], n_props - 1);
  const auto& below = node.literals.nodes[trie_node].below;
  for (auto it = std::lower_bound(below.begin(), below.end(), f.a);
       it != below.end() && *it <= last; ++it) {
    if (fitsDepth(g, n, node.props[*it].value)) return true;
  }
  return false;
}

// Moves frame f to `phase` with a fresh whitespace gap; the byte is consumed.
Step enter(Frame& f, uint8_t phase) {
  f.phase = phase;
  f.sub = 0;
  return Step::kConsumed;
}

Step keyByte(const Grammar& g, const Node& node, Frame& f, int n, uint8_t c);

// The byte that opens an object's next key: a declared key (matched in the key trie) or, for
// free keys, a string pushed as `child`.
// Gemma 4's syntax (node.native): a declared key starts bare or with <|"|>, a free key with <|"|>.
Step keyStart(const Grammar& g, const Node& node, Frame& f, int n, uint8_t c, Frame& child) {
  if (!node.native && c != '"') return Step::kReject;
  if (node.native && node.additional >= 0 && c != static_cast<uint8_t>(kGemma4Quote[0])) {
    return Step::kReject;
  }
  if (node.additional >= 0) {
    if (f.a >= g.options.max_items || !fitsDepth(g, n, node.additional) ||
        n + 1 > g.options.max_depth) {
      return Step::kReject;
    }
    ++f.a;
    f.phase = kAfterKey;
    f.sub = 0;
    child.node = node.key_string;  // pushed at its start, it takes the quote
    return Step::kPush;
  }
  if (f.a >= static_cast<int32_t>(node.props.size()) || node.literals.nodes.empty()) {
    return Step::kReject;
  }
  f.phase = kKey;
  f.b = 0;
  return keyByte(g, node, f, n, c);
}

// One byte of a declared key (f.b: the key-trie node reached). A key ends at a trie leaf; a bare
// Gemma 4 key that is also the start of a longer one ends at its ':'.
Step keyByte(const Grammar& g, const Node& node, Frame& f, int n, uint8_t c) {
  const int32_t at = node.literals.nodes[f.b].value;
  if (node.native && c == ':' && at >= f.a &&
      at <=
          std::min<int32_t>(node.next_required[f.a], static_cast<int32_t>(node.props.size()) - 1) &&
      fitsDepth(g, n, node.props[at].value)) {
    f.a = at + 1;
    f.b = at;
    return enter(f, kColon);
  }
  const int32_t k = node.literals.child(f.b, c);
  if (k < 0 || !someKeyFits(g, node, f, n, k)) return Step::kReject;
  const int32_t done = node.literals.nodes[k].value;
  if (done >= 0 && node.literals.nodes[k].children.empty()) {
    f.a = done + 1;
    f.b = done;
    f.phase = kAfterKey;
    f.sub = 0;
  } else {
    f.b = k;
  }
  return Step::kConsumed;
}

// One byte of an object (frame f, n frames deep); a value or free key to start goes to `child`.
Step objectStep(const Grammar& g, Frame& f, int n, uint8_t c, Frame& child) {
  const Node& node = g.nodes[f.node];
  const bool free_keys = node.additional >= 0;
  const int32_t n_props = static_cast<int32_t>(node.props.size());
  const bool may_close = free_keys || node.next_required[f.a] >= n_props;
  switch (f.phase) {
    case kStart:
      return c == '{' ? enter(f, kOpen) : Step::kReject;
    case kOpen:
      if (c == '}' && may_close) return Step::kDone;
      return isWs(c) ? whitespaceStep(g, f, c) : keyStart(g, node, f, n, c, child);
    case kKey:
      return keyByte(g, node, f, n, c);
    case kAfterKey:  // Gemma 4's reader takes a bare key up to its ':', whitespace included
      if (c == ':') return enter(f, kColon);
      return node.native ? Step::kReject : whitespaceStep(g, f, c);
    case kColon:
      if (isWs(c)) return whitespaceStep(g, f, c);
      child.node = free_keys ? node.additional : node.props[f.b].value;
      f.phase = kValue;
      f.sub = 0;
      return Step::kPush;
    case kValue: {
      if (c == '}' && may_close) return Step::kDone;
      if (c != ',') return whitespaceStep(g, f, c);
      const bool more = free_keys ? f.a < g.options.max_items && fitsDepth(g, n, node.additional)
                                  : f.a < n_props && !node.literals.nodes.empty() &&
                                        someKeyFits(g, node, f, n, 0);
      return more ? enter(f, kComma) : Step::kReject;
    }
    case kComma:
      return isWs(c) ? whitespaceStep(g, f, c) : keyStart(g, node, f, n, c, child);
  }
  return Step::kReject;
}

// One byte of an array (frame f, n frames deep); an item to start goes to `child`.
Step arrayStep(const Grammar& g, Frame& f, int n, uint8_t c, Frame& child) {
  const auto& nodes = g.nodes;
  const Node& node = nodes[f.node];
  auto fits = [&](int depth_below, int32_t id) { return fitsDepth(g, depth_below, id); };
  auto ws = [&](Frame& w) { return whitespaceStep(g, w, c); };
  Step step = Step::kReject;
  auto item_start = [&]() {
    if (f.a >= node.max_items || !fits(n, node.items)) return Step::kReject;
    ++f.a;
    f.phase = kValue;
    f.sub = 0;
    child.node = node.items;
    return Step::kPush;
  };
  switch (f.phase) {
    case kStart:
      if (c != '[') break;
      f.phase = kOpen;
      step = Step::kConsumed;
      break;
    case kOpen:
      if (c == ']' && node.min_items == 0) {
        step = Step::kDone;
      } else {
        step = isWs(c) ? ws(f) : item_start();
      }
      break;
    case kValue:
      if (c == ']' && f.a >= node.min_items) {
        step = Step::kDone;
      } else if (c == ',' && f.a < node.max_items && fits(n, node.items)) {
        f.phase = kComma;
        f.sub = 0;
        step = Step::kConsumed;
      } else {
        step = ws(f);
      }
      break;
    case kComma:
      step = isWs(c) ? ws(f) : item_start();
      break;
  }
  return step;
}

// One byte for the top frame f (n frames deep) of any kind but anyOf; a part to start goes to
// `child`.
Step frameStep(const Grammar& g, Frame& f, int n, uint8_t c, Frame& child) {
  const Node& node = g.nodes[f.node];
  const GrammarOptions& o = g.options;
  switch (node.kind) {
    case NodeKind::kObject:
      return objectStep(g, f, n, c, child);
    case NodeKind::kArray:
      return arrayStep(g, f, n, c, child);
    case NodeKind::kString:
      return node.native ? nativeStringStep(f, c, o.max_string_bytes)
                         : stringStep(f, c, o.max_string_bytes);
    case NodeKind::kNumber:
    case NodeKind::kInteger:
      return numberStep(f, c, node.kind == NodeKind::kInteger, o.max_number_digits);
    case NodeKind::kSequence:
      // a: the next part; a byte goes to the part it starts (parts are never empty).
      if (f.a < static_cast<int32_t>(node.alts.size())) {
        child.node = node.alts[f.a++];
        return Step::kPush;
      }
      return Step::kPop;
    case NodeKind::kText:
      return textStep(g, node, f, c, child);
    case NodeKind::kLiteral: {
      const auto& trie = node.literals;
      const int32_t k = trie.child(f.a, c);
      if (k < 0) return trie.nodes[f.a].value >= 0 ? Step::kPop : Step::kReject;
      f.a = k;
      return trie.nodes[k].children.empty() ? Step::kDone : Step::kConsumed;
    }
    case NodeKind::kAnyOf:
      break;  // forked by the caller
  }
  return Step::kReject;
}

}  // namespace

void Matcher::commit(const Frame* stack, int n, ParseState& out) const {
  const uint32_t begin = out.frames.size();
  // A thread identical to one already there adds nothing (anyOf branches that converged).
  uint32_t prev = 0;
  for (uint32_t end : out.ends) {
    if (end - prev == static_cast<uint32_t>(n) &&
        std::equal(stack, stack + n, out.frames.begin() + prev)) {
      return;
    }
    prev = end;
  }
  if (out.ends.size() >= kMaxThreads) return;
  out.frames.insert(out.frames.end(), stack, stack + n);
  out.ends.push_back(begin + n);
}

// Feeds byte c to one parse stack (copied) and commits what survives to `out`.
void Matcher::feed(const Frame* in, int n, uint8_t c, ParseState& out) const {
  Frame s[kMaxStackDepth + 1];
  std::copy(in, in + n, s);
  const auto& nodes = grammar_->nodes;
  while (n > 0) {
    Frame& f = s[n - 1];
    const Node& node = nodes[f.node];
    if (node.kind == NodeKind::kAnyOf) {
      for (int32_t alt : node.alts) {
        if (!nodes[alt].first.test(c) || !fitsDepth(*grammar_, n - 1, alt)) continue;
        Frame saved = f;
        f = Frame{};
        f.node = alt;
        feed(s, n, c, out);
        f = saved;
      }
      return;
    }
    Frame child{};
    switch (frameStep(*grammar_, f, n, c, child)) {
      case Step::kReject:
        return;
      case Step::kConsumed:
        commit(s, n, out);
        return;
      case Step::kDone: {
        // A sequence whose last part this closed is closed too.
        int m = n - 1;
        while (m > 0 && nodes[s[m - 1].node].kind == NodeKind::kSequence &&
               s[m - 1].a == static_cast<int32_t>(nodes[s[m - 1].node].alts.size())) {
          --m;
        }
        commit(s, m, out);
        return;
      }
      case Step::kPop:
        --n;
        continue;
      case Step::kPush:
        if (n >= grammar_->options.max_depth) return;
        s[n] = child;
        ++n;
        continue;
    }
  }
}

bool Matcher::advance(const ParseState& in, uint8_t c, ParseState& out) const {
  // Most bytes of a walk are string content of a single thread: only the top frame changes.
  if (in.ends.size() == 1 && !in.frames.empty() && c != '"') {
    const Frame& top = in.frames.back();
    const Node& node = grammar_->nodes[top.node];
    if (top.phase == kBody && node.kind == NodeKind::kString && !node.native) {
      Frame f = top;
      if (stringStep(f, c, grammar_->options.max_string_bytes) != Step::kConsumed) return false;
      out.frames.assign(in.frames.begin(), in.frames.end());
      out.ends.assign(in.ends.begin(), in.ends.end());
      out.frames.back() = f;
      return true;
    }
  }
  out.frames.clear();
  out.ends.clear();
  uint32_t begin = 0;
  for (uint32_t end : in.ends) {
    feed(in.frames.data() + begin, static_cast<int>(end - begin), c, out);
    begin = end;
  }
  return !out.ends.empty();
}

int32_t Matcher::contentBudget(const ParseState& state) const {
  int32_t budget = -1;
  uint32_t begin = 0;
  for (uint32_t end : state.ends) {
    if (end == begin) return -1;
    const Frame& top = state.frames[end - 1];
    // A Gemma 4 string's content is not JSON's (quotes and backslashes are plain, '<' may start
    // the delimiter): its tokens are walked.
    const Node& node = grammar_->nodes[top.node];
    if (node.kind != NodeKind::kString || node.native || top.phase != kBody || top.sub != kPlain) {
      return -1;
    }
    budget = std::max(budget, grammar_->options.max_string_bytes - top.a);
    begin = end;
  }
  return budget;
}

int32_t Matcher::nativeContentBudget() const {
  if (state_.ends.size() != 1 || state_.frames.empty()) return -1;
  const Frame& top = state_.frames.back();
  const Node& node = grammar_->nodes[top.node];
  if (node.kind != NodeKind::kString || !node.native || top.phase != kBody || top.sub != kPlain ||
      top.b != 0) {
    return -1;
  }
  return grammar_->options.max_string_bytes - top.a;
}

bool Matcher::freeText() const {
  if (state_.ends.size() != 1 || state_.frames.size() != 1) return false;
  const Frame& f = state_.frames[0];
  return grammar_->nodes[f.node].kind == NodeKind::kText && f.b == 0;
}

// Walks `trie` from the current state, setting the bit of every token whose bytes all pass.
void Matcher::walk(const VocabIndex::Trie& trie, uint64_t* mask) {
  scratch_[0] = state_;
  walkKids(trie, 0, 1, mask);
}

// The children of slot `slot` (0: the root, i + 1: node i), which sit at depth d.
void Matcher::walkKids(const VocabIndex::Trie& trie, uint32_t slot, int d, uint64_t* mask) {
  for (uint32_t k = trie.kid_begin[slot]; k < trie.kid_begin[slot + 1]; ++k) {
    if (!advance(scratch_[d - 1], trie.kid_bytes[k], scratch_[d])) continue;
    const uint32_t i = trie.kids[k];
    if (trie.plain_after[i]) {
      const int32_t budget = contentBudget(scratch_[d]);
      if (budget >= 0) {
        markPlainSubtree(trie, i, budget, mask);
        continue;
      }
    }
    for (uint32_t t = trie.tok_begin[i]; t < trie.tok_begin[i + 1]; ++t) {
      const int32_t id = trie.ids[t];
      mask[id / 64] |= uint64_t{1} << (id % 64);
    }
    if (trie.kid_begin[i + 1] < trie.kid_begin[i + 2]) walkKids(trie, i + 1, d + 1, mask);
  }
}

void Matcher::markPlainSubtree(const VocabIndex::Trie& trie, size_t i, int32_t budget,
                               uint64_t* mask) const {
  const bool all_fit = trie.max_rest[i] <= budget;
  const size_t depth = trie.depth[i];
  for (uint32_t k = trie.tok_begin[i]; k < trie.tok_begin[trie.end[i]]; ++k) {
    const int32_t id = trie.ids[k];
    if (all_fit || vocab_->bytes(id).size() - depth <= static_cast<size_t>(budget)) {
      mask[id / 64] |= uint64_t{1} << (id % 64);
    }
  }
}

void Matcher::fillMask(std::span<uint64_t> mask) {
  std::fill(mask.begin(), mask.end(), 0);
  if (finished_ || dead()) return;
  const int32_t budget = contentBudget(state_);
  if (freeText()) {
    // Free text outside a marker takes any token without a '<' (the marker's first byte).
    const uint64_t* text = vocab_->withoutMarkerStart();
    std::copy(text, text + std::min(mask.size(), vocab_->maskWords()), mask.begin());
    walk(vocab_->withMarkerStart(), mask.data());
  } else if (budget >= 0) {
    const uint64_t* content = vocab_->contentUpTo(budget);
    const size_t words = std::min(mask.size(), vocab_->maskWords());
    std::copy(content, content + words, mask.begin());
    const bool roomy = static_cast<size_t>(budget) >= vocab_->maxTokenBytes();
    walk(roomy ? vocab_->stringRests() : vocab_->nonContent(), mask.data());
  } else if (const int32_t room = nativeContentBudget(); room >= 0) {
    // Inside a Gemma 4 string, plain content without a '<' (which may open the delimiter) goes
    // on whatever came before: by mask. Quotes, backslashes, tab, CR, LF, pieces of characters
    // and '<' are walked.
    const size_t words = std::min(mask.size(), vocab_->maskWords());
    if (static_cast<size_t>(room) >= vocab_->maxTokenBytes()) {
      // Room for any token: quotes, backslashes and line breaks are content too.
      const uint64_t* plain = vocab_->nativeContent();
      std::copy(plain, plain + words, mask.begin());
      walk(vocab_->nativeRest(), mask.data());
    } else {
      const uint64_t* content = vocab_->contentUpTo(room);
      const uint64_t* no_lt = vocab_->withoutMarkerStart();
      for (size_t w = 0; w < words; ++w) mask[w] = content[w] & no_lt[w];
      walk(vocab_->nonContent(), mask.data());
    }
    walk(vocab_->withMarkerStart(), mask.data());
  } else {
    walk(vocab_->all(), mask.data());
  }
  if (canEnd()) {
    for (int32_t id : vocab_->endIds()) {
      if (id >= 0 && static_cast<size_t>(id / 64) < mask.size()) {
        mask[id / 64] |= uint64_t{1} << (id % 64);
      }
    }
  }
}

bool Matcher::allows(int32_t id) {
  if (finished_ || dead() || id < 0 || id >= vocab_->vocabSize()) return false;
  if (vocab_->isEnd(id)) return canEnd();
  const std::string& bytes = vocab_->bytes(id);
  if (bytes.empty()) return false;
  scratch_[0] = state_;
  for (size_t k = 0; k < bytes.size(); ++k) {
    if (!advance(scratch_[k], static_cast<uint8_t>(bytes[k]), scratch_[k + 1])) return false;
  }
  return true;
}

bool Matcher::accept(int32_t id) {
  if (!allows(id)) return false;
  if (vocab_->isEnd(id)) {
    finished_ = true;
    return true;
  }
  state_ = scratch_[vocab_->bytes(id).size()];
  return true;
}

bool Matcher::acceptBytes(std::string_view bytes) {
  if (finished_ || dead()) return false;
  ParseState now = state_, next;
  for (char ch : bytes) {
    if (!advance(now, static_cast<uint8_t>(ch), next)) return false;
    std::swap(now, next);
  }
  state_ = std::move(now);
  return true;
}

bool Matcher::canEnd() const {
  if (finished_) return false;
  uint32_t begin = 0;
  for (uint32_t end : state_.ends) {
    if (end == begin) return true;
    if (end - begin == 1 && completeAsIs(*grammar_, state_.frames[begin])) return true;
    begin = end;
  }
  return false;
}

bool Matcher::mustEnd() const {
  if (finished_) return true;
  if (state_.ends.empty()) return false;
  uint32_t begin = 0;
  for (uint32_t end : state_.ends) {
    if (end != begin) return false;
    begin = end;
  }
  return true;
}

}  // namespace engine::grammar
