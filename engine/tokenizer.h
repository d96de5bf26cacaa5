// engine::Tokenizer: the Gemma tokenizer (a Hugging Face `tokenizer.json` BPE model with byte
// fallback), plus the UTF-8 helpers that encoding and streaming decoding share.
//
// The pipeline is the one tokenizer.json states (gemma-spec §5.1, §5.2):
//   1. invalid UTF-8 input is replaced first (see sanitizeUtf8: one U+FFFD per maximal ill-formed
//      subsequence, which is what a JavaScript or Python caller would have handed the reference);
//   2. added tokens are split out of the raw text, leftmost-longest (`normalized: false` ones on
//      the raw text, `normalized: true` ones on the normalized text), honouring lstrip/rstrip
//      (single_word is ignored, as the JavaScript reference does; Gemma has none);
//   3. every other segment is normalized (Gemma: Replace " " -> U+2581, no prefix space) and
//      pre-tokenized (Gemma: Split(" ") which is a no-op after the normalizer);
//   4. each word is split into characters, characters missing from the vocab become <0xHH> byte
//      tokens, and merges apply lowest rank first (leftmost on ties); byte tokens never merge.
// Decoding reverses it: Replace U+2581 -> " ", runs of <0xHH> tokens become bytes decoded as UTF-8
// (each maximal ill-formed subsequence -> one U+FFFD, as the JavaScript reference's TextDecoder
// does; the Rust library replaces every byte of an ill-formed run instead, which a streaming
// decoder could not reproduce without holding back whole runs), then everything is concatenated.
// Unlike TextDecoder, a UTF-8 BOM decoded from byte tokens is kept.
//
// A Tokenizer is immutable after loading except for its word cache; every method is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/status.h"

namespace engine {

// ---- UTF-8 helpers ------------------------------------------------------------------------------

// Appends `bytes` to `out` as well-formed UTF-8: every maximal ill-formed subsequence becomes one
// U+FFFD (the WHATWG Encoding Standard decoder, i.e. JavaScript's TextDecoder). When `final` is
// false a trailing sequence that is incomplete but could still become valid is left unconsumed.
// Returns the number of bytes consumed (bytes.size() when `final`).
size_t appendUtf8Lossy(std::string& out, std::string_view bytes, bool final = true);

// True when `text` is well-formed UTF-8.
bool isValidUtf8(std::string_view text);

// `text` with every maximal ill-formed subsequence replaced by U+FFFD.
std::string sanitizeUtf8(std::string_view text);

// ECMAScript's whitespace (what String.prototype.trim removes): the Unicode Zs characters, tab,
// VT, FF, LF, CR, U+2028, U+2029 and U+FEFF.
bool isJsWhitespace(char32_t cp);

// `text` without leading and trailing JS whitespace (String.prototype.trim). Trimming stops at
// ill-formed bytes.
std::string_view trimJsWhitespace(std::string_view text);

// ---- Tokenizer ----------------------------------------------------------------------------------

// What a load did with the binary cache (see TokenizerLoadOptions).
struct TokenizerLoadReport {
  bool cache_hit = false;      // the tokenizer came from a valid cache file
  bool cache_written = false;  // a fresh cache file was written (after parsing the JSON)
  std::string cache_path;      // the cache file read or written; empty when none
};
// How Tokenizer::load uses its cache. Parsing a large tokenizer.json (33 MB for Gemma 3) takes
// most of a second, so Tokenizer::load keeps a binary cache of the parsed vocabulary, merges and
// added tokens: first beside the JSON
// (`tokenizer.json.switchyard-cache`), else, when that directory cannot be written, in
// `cache_dir`. A cache is used only when its header matches the JSON's size, modification time
// and a hash of its whole content, and its own checksum matches; anything else (stale, corrupt,
// truncated, another format version) is ignored and rewritten. Writers write a temporary file
// and rename it, so concurrent loads never see a half-written cache.
struct TokenizerLoadOptions {
  bool use_cache = true;
  // Where the cache goes when the JSON's directory is not writable. Empty: $XDG_CACHE_HOME/
  // switchyard, else $HOME/.cache/switchyard, else no fallback.
  std::string cache_dir;
  // Smaller tokenizer.json files parse faster than a cache would save: none is kept for them.
  uint64_t cache_min_bytes = uint64_t{1} << 20;
  TokenizerLoadReport* report = nullptr;  // when set, filled in
};

class Tokenizer {
 public:
  struct AddedToken {
    int32_t id = 0;
    std::string content;
    bool special = false;     // dropped by decode(skip_special = true)
    bool normalized = false;  // matched on the normalized text instead of the raw text
    bool lstrip = false;      // swallows whitespace on its left
    bool rstrip = false;      // swallows whitespace on its right
  };

  using LoadReport = TokenizerLoadReport;
  using LoadOptions = TokenizerLoadOptions;

  // Loads `tokenizer_json_path` and, when `config_path` is not empty, tokenizer_config.json (for
  // bos/eos/pad/unk names and extra special tokens). Errors are kIo (missing or unreadable file)
  // or kConfig (bad JSON, unsupported model/normalizer/pre-tokenizer/decoder); the message names
  // the file. A cache that cannot be read or written is never an error.
  static api::StatusOr<std::unique_ptr<Tokenizer>> load(const std::string& tokenizer_json_path,
                                                        const std::string& config_path = {},
                                                        const LoadOptions& options = {});
  // Loads DIR/tokenizer.json and DIR/tokenizer_config.json when that file exists.
  static api::StatusOr<std::unique_ptr<Tokenizer>> loadDir(const std::string& dir,
                                                           const LoadOptions& options = {});
  // The same from in-memory documents; `source` names them in error messages.
  static api::StatusOr<std::unique_ptr<Tokenizer>> fromJson(std::string_view tokenizer_json,
                                                            std::string_view config_json,
                                                            std::string_view source);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Token ids of `text` (any bytes; invalid UTF-8 is replaced first). With `add_bos`, <bos> is
  // prepended unless the text itself already starts with the <bos> token: a rendered chat template
  // begins with the text "<bos>" (gemma-spec §5.4), and encoding it yields exactly one <bos>
  // whether or not `add_bos` is set.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;

  // The text of `ids`. With `skip_special`, special tokens (<bos>, <eos>, <start_of_turn>, ...)
  // are dropped. Ids outside [0, vocabSize()) decode as <unk>. Always well-formed UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special) const;

  // The token's piece as stored in tokenizer.json ("▁Hello", "<0x0A>", "<bos>"); empty for ids out
  // of range.
  const std::string& tokenText(int32_t id) const;
  // The id of a piece (vocab entry or added token).
  std::optional<int32_t> idOf(std::string_view piece) const;

  // One more than the largest id (vocab and added tokens); 262145 for Gemma 3.
  int32_t vocabSize() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t bosId() const { return bos_id_; }
  // tokenizer_config.json's eos_token when given (<end_of_turn> for Gemma 3 instruction-tuned
  // checkpoints), else <eos>. -1 when the vocab has neither.
  int32_t eosId() const { return eos_id_; }
  int32_t endOfTurnId() const { return end_of_turn_id_; }  // <end_of_turn>, -1 when absent
  int32_t padId() const { return pad_id_; }
  int32_t unkId() const { return unk_id_; }
  bool isSpecial(int32_t id) const;

  // For streaming decoders: the byte a <0xHH> token stands for, or -1 for other tokens.
  int byteValue(int32_t id) const;
  // For streaming decoders: the token's text after the decoder's Replace steps ("▁Hello" ->
  // " Hello"); empty for byte tokens. Out-of-range ids give <unk>'s text.
  std::string_view decodedPiece(int32_t id) const;

  const std::vector<AddedToken>& addedTokens() const { return added_; }

  // Loading machinery (tokenizer_load.cpp), the binary cache (tokenizer_cache.cpp) and GGUF
  // metadata (tokenizer_gguf.cpp).
  struct Loader;
  struct Cache;
  struct Gguf;

 private:
  Tokenizer();

  // Completes a tokenizer whose vocabulary is set the way a cache hit leaves it (pieces_ holding
  // the model vocab, merges_, byte_id_, added_) from the rest of a tokenizer.json (model flags,
  // normalizer, pre-tokenizer, decoder) and a tokenizer_config.json (may be empty): the same
  // steps as a tokenizer.json load. Errors are kConfig naming `source`.
  static api::StatusOr<std::unique_ptr<Tokenizer>> assemble(std::unique_ptr<Tokenizer> tok,
                                                            std::string_view rest_json,
                                                            std::string_view config_json,
                                                            std::string_view source);

  struct MergeTable;
  struct PieceIndex;
  struct AddedTrie;
  struct Normalizer;
  struct PreTokenizer;

  // A piece of text between added tokens ([begin, end) of the text, id -1) or an added token.
  struct Piece {
    size_t begin = 0;
    size_t end = 0;
    int32_t id = -1;
  };
  void splitAddedTokens(std::string_view text, const AddedTrie& trie,
                        std::vector<Piece>& pieces) const;
  void encodeSegment(std::string_view raw, std::vector<int32_t>& out) const;
  void encodeNormalized(std::string_view normalized, std::vector<int32_t>& out) const;
  void encodeWord(std::string_view word, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  int32_t charId(char32_t cp) const {
    if (cp < 0x10000) return bmp_char_id_[cp];
    auto it = astral_char_id_.find(cp);
    return it == astral_char_id_.end() ? -1 : it->second;
  }

  // Vocab: pieces_[id] is the piece; piece_to_id_ indexes pieces_ (model vocab, then added
  // tokens, which win on a clash).
  std::vector<std::string> pieces_;
  std::vector<std::string> decoded_;  // pieces after the decoder's Replace steps
  std::vector<int16_t> byte_of_;      // byte value for <0xHH> pieces, else -1
  std::vector<uint8_t> special_;      // 1 for special ids
  std::unique_ptr<PieceIndex> piece_to_id_;

  // BPE model.
  std::unique_ptr<MergeTable> merges_;
  std::vector<int32_t> bmp_char_id_;  // [65536] model-vocab id of each BMP character, -1 if none
  std::unordered_map<char32_t, int32_t> astral_char_id_;  // the same above U+FFFF
  std::array<int32_t, 256> byte_id_{};                    // <0xHH> ids, -1 if missing
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  // Only with ignore_merges: the model vocab as loaded (added tokens may rename ids in pieces_).
  std::vector<std::string> model_pieces_;
  std::unique_ptr<PieceIndex> model_vocab_;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<AddedToken> added_;
  std::unique_ptr<AddedTrie> raw_trie_;         // added tokens with normalized = false
  std::unique_ptr<AddedTrie> normalized_trie_;  // added tokens with normalized = true
  bool decode_bytes_ = true;                    // the decoder has a ByteFallback step

  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t end_of_turn_id_ = -1;
  int32_t pad_id_ = -1;
  int32_t unk_id_ = -1;
  std::string model_unk_;  // model.unk_token, which takes precedence over the config's

  // Word cache: short words repeat across requests (a conversation is re-encoded every turn).
  static constexpr size_t kCacheMaxWordBytes = 256;
  static constexpr size_t kCacheMaxEntries = 1 << 15;
  mutable std::mutex cache_mu_;
  struct SvHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, SvHash, std::equal_to<>> cache_;
};

}  // namespace engine
