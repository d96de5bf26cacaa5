// engine::grammar::Matcher: which tokens of the whole vocabulary keep a constrained answer a
// valid prefix of its Grammar (grammar.h), one step at a time.
//
// VocabIndex is built once per tokenizer and shared by every grammar: each token's text as
// bytes (byte tokens as their byte; special and added tokens never match), all of them in a
// byte trie laid out in preorder, so that a walk skips a whole subtree with one jump when its
// first byte is refused. Inside a free string, where most of the vocabulary is allowed, no walk
// over the whole trie happens: the tokens that are plain string content (no quote, backslash or
// control byte, whole UTF-8 characters) are context-independent there and come from a
// precomputed bitmap by length (the string's remaining byte budget), and only the few thousand
// other tokens (which close the string and go on, or escape) are walked, in a trie of their own.
//
// A Matcher holds one answer's state: a set of parse stacks (more than one only while anyOf
// branches agree on what was written so far). Not thread-safe; one per sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/grammar/grammar.h"

namespace engine {
class Tokenizer;
}

namespace engine::grammar {

class VocabIndex {
 public:
  // A byte trie in preorder: node i's subtree is [i, end[i]); the tokens ending at node i are
  // ids[tok_begin[i] .. tok_begin[i + 1]), those of its subtree ids[tok_begin[i] ..
  // tok_begin[end[i]]).
  struct Trie {
    std::vector<uint8_t> byte;
    std::vector<uint16_t> depth;  // bytes from the root: 1 for the root's children
    std::vector<uint32_t> end;
    std::vector<uint32_t> tok_begin;
    std::vector<int32_t> ids;
    // 1 when every token below node i goes on, after its first depth[i] bytes, with plain
    // string content only: reached inside a free string, the whole subtree is decided by the
    // string's byte budget alone and need not be walked.
    std::vector<uint8_t> plain_after;
    std::vector<uint16_t> max_rest;  // the longest such rest below node i, in bytes
    // Children: slot 0 is the root, slot i + 1 node i; slot s's children are
    // kids[kid_begin[s] .. kid_begin[s + 1]), their bytes kid_bytes[...] alongside.
    std::vector<uint32_t> kid_begin;
    std::vector<uint32_t> kids;
    std::vector<uint8_t> kid_bytes;
    size_t size() const { return byte.size(); }
  };

  // `token_bytes[id]`: the bytes token id writes; empty for ids that must never be generated.
  // `end_ids`: the ids allowed (only) where the grammar can end (eos, end_of_turn).
  VocabIndex(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids);
  // From a tokenizer: decoded pieces, byte tokens as bytes, special and added tokens excluded
  // except those whose text is in `writable_special` (a tool-call grammar's marker tokens, such
  // as Gemma 4's <|tool_call>), which write their text.
  static std::shared_ptr<const VocabIndex> fromTokenizer(
      const Tokenizer& tokenizer, std::vector<int32_t> end_ids,
      const std::vector<std::string>& writable_special = {});

  int32_t vocabSize() const { return static_cast<int32_t>(bytes_.size()); }
  size_t maskWords() const { return (bytes_.size() + 63) / 64; }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  const std::vector<int32_t>& endIds() const { return end_ids_; }
  bool isEnd(int32_t id) const;

  const Trie& all() const { return all_; }
  const Trie& nonContent() const { return non_content_; }
  // The tokens of nonContent() that can continue a string, each by what follows its plain
  // prefix (from its first quote or backslash; byte tokens whole). Inside a string with at
  // least maxTokenBytes() bytes of budget left, walking these rests decides the same as walking
  // the whole tokens: the prefix always fits, and a closing quote forgets the string's length.
  const Trie& stringRests() const { return string_rests_; }
  // Tokens that are plain string content of at most `bytes` bytes, as a mask.
  const uint64_t* contentUpTo(int32_t bytes) const;
  size_t maxTokenBytes() const { return max_token_bytes_; }
  // Free text (a tool-call marker's surroundings) takes the tokens without a '<' byte whatever
  // came before, as a mask; those with one are walked in a trie of their own.
  const uint64_t* withoutMarkerStart() const { return without_lt_.data(); }
  const Trie& withMarkerStart() const { return with_lt_; }
  // Inside a Gemma 4 string with room for any token: the tokens that are content there whatever
  // came before (whole characters, tab/CR/LF, quotes and backslashes; no '<'), as a mask, and
  // the other tokens without a '<' (pieces of characters, control bytes), to walk.
  const uint64_t* nativeContent() const { return native_plain_.data(); }
  const Trie& nativeRest() const { return native_rest_; }

 private:
  static Trie buildTrie(const std::vector<std::string>& bytes, const std::vector<int32_t>& ids);

  std::vector<std::string> bytes_;
  std::vector<int32_t> end_ids_;
  Trie all_;
  Trie non_content_;
  Trie string_rests_;
  int32_t max_content_bytes_ = 0;
  std::vector<uint64_t> content_le_;  // [max_content_bytes_ + 1][maskWords()]
  size_t max_token_bytes_ = 0;
  std::vector<uint64_t> without_lt_;  // [maskWords()]
  Trie with_lt_;
  std::vector<uint64_t> native_plain_;  // [maskWords()]
  Trie native_rest_;
};

// One stack frame of a parse: a value being written (see matcher.cpp for the phases).
// Trivially constructible (a parse step copies stacks of them); value-initialize with Frame{}.
struct Frame {
  int32_t node;
  uint8_t phase;
  uint8_t sub;  // whitespace run, or the string's UTF-8/escape state
  uint16_t pad;
  int32_t a;
  int32_t b;
  bool operator==(const Frame&) const = default;
};

// A set of parse stacks: thread i is frames[ends[i - 1] .. ends[i]) (from 0 for the first).
struct ParseState {
  std::vector<Frame> frames;
  std::vector<uint32_t> ends;
};

class Matcher {
 public:
  Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const VocabIndex> vocab);

  // Sets bit id of `mask` [vocab->maskWords()] for every token that may come next (and clears
  // every other bit): tokens that keep the output a valid prefix, plus the end ids when the
  // output is complete. Not const: it uses scratch space.
  void fillMask(std::span<uint64_t> mask);
  // Whether token `id` may come next (the same answer as the mask, for one token).
  bool allows(int32_t id);
  // Advances by an accepted token. False (and no change) when the token is not allowed. An end
  // id is accepted only where the output is complete, and finishes the matcher.
  bool accept(int32_t id);
  // Advances by raw bytes (a forced prefix, tests). False (and no change) when refused.
  bool acceptBytes(std::string_view bytes);

  // The output so far is a complete value: an end id may come next.
  bool canEnd() const;
  // Nothing but an end id may come next (the value is closed), or an end id was accepted.
  bool mustEnd() const;
  bool finished() const { return finished_; }
  bool dead() const { return state_.ends.empty(); }

  const Grammar& grammar() const { return *grammar_; }

 private:
  bool advance(const ParseState& in, uint8_t c, ParseState& out) const;
  void feed(const Frame* stack, int n, uint8_t c, ParseState& out) const;
  void commit(const Frame* stack, int n, ParseState& out) const;
  void walk(const VocabIndex::Trie& trie, uint64_t* mask);
  void walkKids(const VocabIndex::Trie& trie, uint32_t slot, int d, uint64_t* mask);
  // The largest remaining byte budget when every thread is inside a free string's plain
  // content; -1 otherwise.
  int32_t contentBudget(const ParseState& state) const;
  // One thread inside a Gemma 4 string, between characters and no delimiter byte pending: the
  // bytes of content it may still take; -1 otherwise.
  int32_t nativeContentBudget() const;
  // One thread, in free text, outside a marker (see VocabIndex::withoutMarkerStart).
  bool freeText() const;
  // Sets the bits of the tokens below node i (reached with `budget` bytes left in a string)
  // whose rest fits the budget.
  void markPlainSubtree(const VocabIndex::Trie& trie, size_t i, int32_t budget,
                        uint64_t* mask) const;

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const VocabIndex> vocab_;
  ParseState state_;
  std::vector<ParseState> scratch_;  // [max token bytes + 1] states of a trie walk
  bool finished_ = false;
};

}  // namespace engine::grammar
