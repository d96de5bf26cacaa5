// Reading tokenizer.json and tokenizer_config.json into an engine::Tokenizer.
//
// tokenizer.json is large (33 MB for Gemma 3: 262k vocab entries, 515k merges), so it is read
// with nlohmann's SAX interface: model.vocab and model.merges stream straight into flat arrays and
// only the small remainder (added tokens, normalizer, decoder, ...) becomes a JSON document. This
// is about five times faster than building the whole document, and still takes about half a
// second, so load() keeps the parsed vocabulary and merges in a binary cache (tokenizer_cache.cpp)
// and parses the JSON only when that cache is missing, stale or damaged.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "engine/tokenizer.h"
#include "engine/tokenizer_internal.h"

namespace engine {

namespace {

using Json = nlohmann::json;

constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;
// How much a chain of Replace steps (normalizer or decoder) may multiply a text's length: each
// step at most by len(content) / len(pattern). Real tokenizers stay below 4 (" " -> "\u2581").
constexpr double kMaxReplaceGrowth = 64;

// What one Replace step can multiply a text's length by.
double replaceGrowth(const std::string& pattern, const std::string& content) {
  if (pattern.empty()) return 1;  // replaces nothing
  return std::max(1.0, static_cast<double>(content.size()) / static_cast<double>(pattern.size()));
}

api::Status configError(std::string_view source, const std::string& what) {
  return api::Status(api::ErrorCode::kConfig, std::string(source) + ": " + what);
}

api::StatusOr<std::string> readFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path + ": it is a directory");
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    return api::Status(api::ErrorCode::kIo,
                       "cannot open " + path + ": " + std::generic_category().message(errno));
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  if (std::fseek(f, 0, SEEK_END) == 0) {
    long size = std::ftell(f);
    if (size > 0) data.reserve(static_cast<size_t>(size));
    std::fseek(f, 0, SEEK_SET);
  }
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return api::Status(api::ErrorCode::kIo, "cannot read " + path);
  return data;
}

// Builds a document of everything except model.vocab and model.merges, which it collects flat.
class TokenizerJsonReader : public nlohmann::json_sax<Json> {
 public:
  Json root;
  std::vector<std::pair<std::string, int64_t>> vocab;
  bool saw_vocab = false;
  // Merge i is merge_chars[merge_offsets[3i] .. [3i+1]) and [3i+1] .. [3i+2]).
  std::string merge_chars;
  std::vector<uint32_t> merge_offsets;
  bool saw_merges = false;
  std::string error;

  bool null() override { return put(Json(nullptr)) != nullptr; }
  bool boolean(bool v) override { return put(Json(v)) != nullptr; }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::kVocab) return addVocab(v);
    return put(Json(v)) != nullptr;
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::kVocab) {
      return addVocab(v > static_cast<uint64_t>(kMaxTokenId) ? -1 : static_cast<int64_t>(v));
    }
    return put(Json(v)) != nullptr;
  }
  bool number_float(number_float_t v, const string_t&) override { return put(Json(v)) != nullptr; }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }
  bool string(string_t& v) override {
    switch (mode_) {
      case Mode::kMerges: {
        size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
          return fail("model.merges entry \"" + v + "\" is not two tokens separated by a space");
        }
        return addMerge(std::string_view(v).substr(0, space),
                        std::string_view(v).substr(space + 1));
      }
      case Mode::kMergePair:
        pair_.push_back(std::move(v));
        return pair_.size() <= 2 || fail("model.merges entry has more than two tokens");
      case Mode::kVocab:
        return fail("model.vocab values must be integer ids");
      case Mode::kDom:
        return put(Json(std::move(v))) != nullptr;
    }
    return false;
  }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::kDom) return put(Json()) != nullptr;  // records the error
    if (atModelKey("vocab")) {
      mode_ = Mode::kVocab;
      saw_vocab = true;
      return true;
    }
    Json* node = put(Json::object());
    if (!node) return false;
    if (stack_.size() == 1 && key_ == "model") model_ = node;
    stack_.push_back(node);
    return true;
  }
  bool key(string_t& k) override {
    if (mode_ == Mode::kVocab) {
      vocab_key_ = std::move(k);
    } else {
      key_ = std::move(k);
    }
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kDom;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    switch (mode_) {
      case Mode::kMerges:
        mode_ = Mode::kMergePair;
        pair_.clear();
        return true;
      case Mode::kMergePair:
        return fail("model.merges entries must be strings or pairs of strings");
      case Mode::kVocab:
        return fail("model.vocab values must be integer ids");
      case Mode::kDom:
        break;
    }
    if (atModelKey("merges")) {
      mode_ = Mode::kMerges;
      saw_merges = true;
      return true;
    }
    Json* node = put(Json::array());
    if (!node) return false;
    stack_.push_back(node);
    return true;
  }
  bool end_array() override {
    switch (mode_) {
      case Mode::kMergePair:
        if (pair_.size() != 2) return fail("model.merges entry is not a pair of tokens");
        mode_ = Mode::kMerges;
        return addMerge(pair_[0], pair_[1]);
      case Mode::kMerges:
        mode_ = Mode::kDom;
        return true;
      default:
        stack_.pop_back();
        return true;
    }
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    if (error.empty()) {
      error = "invalid JSON near byte " + std::to_string(position) + ": " + ex.what();
    }
    return false;
  }

 private:
  enum class Mode { kDom, kVocab, kMerges, kMergePair };

  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  bool atModelKey(std::string_view k) const {
    return model_ && stack_.size() == 2 && stack_.back() == model_ && key_ == k;
  }
  bool addVocab(int64_t id) {
    if (id < 0 || id > kMaxTokenId) {
      return fail("model.vocab id of \"" + vocab_key_ + "\" is out of range");
    }
    vocab.emplace_back(std::move(vocab_key_), id);
    return true;
  }
  bool addMerge(std::string_view a, std::string_view b) {
    if (merge_chars.size() + a.size() + b.size() > UINT32_MAX)
      return fail("model.merges too large");
    merge_offsets.push_back(static_cast<uint32_t>(merge_chars.size()));
    merge_chars.append(a);
    merge_offsets.push_back(static_cast<uint32_t>(merge_chars.size()));
    merge_chars.append(b);
    merge_offsets.push_back(static_cast<uint32_t>(merge_chars.size()));
    return true;
  }
  // Places a value in the current container; returns where it landed.
  Json* put(Json v) {
    if (mode_ != Mode::kDom) {
      fail(mode_ == Mode::kVocab ? "model.vocab values must be integer ids"
                                 : "model.merges entries must be strings or pairs of strings");
      return nullptr;
    }
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    Json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }

  Mode mode_ = Mode::kDom;
  std::vector<Json*> stack_;  // open containers; safe: a parent never grows while a child is open
  std::string key_;
  std::string vocab_key_;
  std::vector<std::string> pair_;
  Json* model_ = nullptr;
};

}  // namespace

// The steps of Tokenizer construction, with access to its internals.
struct Tokenizer::Loader {
  std::string_view source;
  Tokenizer& tok;

  api::Status fail(const std::string& what) const { return configError(source, what); }

  static const Json* member(const Json& obj, const char* name) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(name);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  static bool flag(const Json& obj, const char* name, bool fallback) {
    const Json* v = member(obj, name);
    return v && v->is_boolean() ? v->get<bool>() : fallback;
  }
  // {"String": "x"} -> "x"; a Regex pattern is not supported.
  api::StatusOr<std::string> literalPattern(const Json& step, const std::string& where) const {
    const Json* pattern = member(step, "pattern");
    const Json* literal = pattern ? member(*pattern, "String") : nullptr;
    if (!literal || !literal->is_string()) {
      return fail(where + ": only literal {\"String\": ...} patterns are supported");
    }
    return literal->get<std::string>();
  }

  api::Status model(const Json& root) const;
  api::Status addedTokens(const Json& added_tokens) const;
  api::Status vocabAndMerges(TokenizerJsonReader& reader) const;
  void vocabIndex() const;
  api::Status normalizer(const Json* node) const;
  api::Status preTokenizer(const Json* node) const;
  api::Status decoder(const Json* node) const;
  api::Status config(const Json* config_root) const;
  void finish() const;

  // The binary cache as create() sees it: a cache file to try (empty: none), and whether to
  // produce the bytes of a new one when the JSON had to be parsed.
  struct CacheIo {
    Cache::Stamp stamp;
    std::string_view cached;  // a file that Cache::matches() the stamp, or empty
    bool want_encoded = false;
    bool hit = false;     // out: the tokenizer came from `cached`
    std::string encoded;  // out: the new cache file, when want_encoded and not hit
  };
  // Fills a fresh tokenizer's vocab, merges and added tokens from the cache or the JSON; `rest`
  // receives the remainder of the document.
  static api::Status vocabulary(std::unique_ptr<Tokenizer>& tok, std::string_view tokenizer_json,
                                std::string_view source, CacheIo* cache, Json& rest);
  static api::StatusOr<std::unique_ptr<Tokenizer>> create(std::string_view tokenizer_json,
                                                          std::string_view source,
                                                          std::string_view config_json,
                                                          std::string_view config_source,
                                                          CacheIo* cache = nullptr);
  // The steps after the vocabulary: indexes, normalizer, pre-tokenizer, decoder, the config's
  // special tokens, the added-token tries. `root` is tokenizer.json without the vocabulary.
  static api::StatusOr<std::unique_ptr<Tokenizer>> complete(std::unique_ptr<Tokenizer> tok,
                                                            const Json& root,
                                                            const Json* config,
                                                            std::string_view source,
                                                            std::string_view config_source);
};

api::Status Tokenizer::Loader::model(const Json& root) const {
  const Json* model = member(root, "model");
  if (!model || !model->is_object()) return fail("no \"model\" object");
  const Json* type = member(*model, "type");
  std::string type_name = type && type->is_string() ? type->get<std::string>() : "";
  if (type_name != "BPE") {
    return fail("unsupported model type '" + (type_name.empty() ? "(none)" : type_name) +
                "' (only BPE is supported)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = member(*model, key);
    if (v && !(v->is_string() && v->get<std::string>().empty())) {
      return fail(std::string("model.") + key + " is not supported");
    }
  }
  const Json* dropout = member(*model, "dropout");
  if (dropout && dropout->is_number() && dropout->get<double>() > 0) {
    return fail("model.dropout is not supported");
  }
  const Json* unk = member(*model, "unk_token");
  if (unk && unk->is_string()) tok.model_unk_ = unk->get<std::string>();
  tok.byte_fallback_ = flag(*model, "byte_fallback", false);
  tok.fuse_unk_ = flag(*model, "fuse_unk", false);
  tok.ignore_merges_ = flag(*model, "ignore_merges", false);
  return {};
}

api::Status Tokenizer::Loader::addedTokens(const Json& added_tokens) const {
  if (!added_tokens.is_array()) return fail("added_tokens is not an array");
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const Json& t = added_tokens[i];
    const Json* id = member(t, "id");
    const Json* content = member(t, "content");
    if (!id || !id->is_number_integer() || !content || !content->is_string()) {
      return fail("added_tokens[" + std::to_string(i) + "] needs an integer id and a content");
    }
    int64_t v = id->get<int64_t>();
    if (v < 0 || v > kMaxTokenId) {
      return fail("added_tokens[" + std::to_string(i) + "].id is out of range");
    }
    bool special = flag(t, "special", false);
    tok.added_.push_back(AddedToken{static_cast<int32_t>(v), content->get<std::string>(), special,
                                    flag(t, "normalized", !special), flag(t, "lstrip", false),
                                    flag(t, "rstrip", false)});
  }
  return {};
}

// Leaves pieces_ holding the model vocab over the whole id space (added tokens not placed yet),
// merges_ and byte_id_: the state the binary cache stores.
api::Status Tokenizer::Loader::vocabAndMerges(TokenizerJsonReader& reader) const {
  if (!reader.saw_vocab) return fail("model.vocab is missing");
  // Size the id space once, added tokens included: pieces_ never reallocates after this, so the
  // string_views of the lookup maps stay valid.
  int64_t max_id = -1;
  for (const auto& [piece, id] : reader.vocab) max_id = std::max(max_id, id);
  for (const AddedToken& t : tok.added_) max_id = std::max<int64_t>(max_id, t.id);
  // Every per-id table is sized by the largest id: one stray large id must not cost gigabytes.
  const size_t defined = reader.vocab.size() + tok.added_.size();
  const int64_t id_limit = 2 * static_cast<int64_t>(defined) + 256;
  if (max_id >= id_limit) {
    return fail("token id " + std::to_string(max_id) + " is far beyond the " +
                std::to_string(defined) + " tokens the file defines (ids must stay below " +
                std::to_string(id_limit) + ")");
  }
  tok.pieces_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto& [piece, id] : reader.vocab) tok.pieces_[static_cast<size_t>(id)] = std::move(piece);
  reader.vocab.clear();
  reader.vocab.shrink_to_fit();
  PieceIndex model_vocab(tok.pieces_);  // added tokens are not placed yet: the model vocab only

  // Merges: (left, right) -> (rank, merged). Every part and result must be in the vocab, as the
  // reference implementations require (gemma-spec §8 item 10: never apply unlisted merges).
  tok.merges_ = std::make_unique<MergeTable>();
  size_t n_merges = reader.merge_offsets.size() / 3;
  tok.merges_->reserve(n_merges);
  for (size_t i = 0; i < n_merges; ++i) {
    const uint32_t* o = &reader.merge_offsets[3 * i];
    std::string_view a(reader.merge_chars.data() + o[0], o[1] - o[0]);
    std::string_view b(reader.merge_chars.data() + o[1], o[2] - o[1]);
    // a and b are adjacent in merge_chars: a + b is a view too.
    std::string_view ab(reader.merge_chars.data() + o[0], o[2] - o[0]);
    int32_t ia = model_vocab.find(a), ib = model_vocab.find(b), im = model_vocab.find(ab);
    if (ia < 0 || ib < 0 || im < 0) {
      return fail("model.merges[" + std::to_string(i) + "] (\"" + std::string(a) + "\", \"" +
                  std::string(b) + "\") uses a token that is not in the vocab");
    }
    tok.merges_->insert(ia, ib, static_cast<int32_t>(i), im);
  }
  reader.merge_chars.clear();
  reader.merge_chars.shrink_to_fit();
  reader.merge_offsets.clear();
  reader.merge_offsets.shrink_to_fit();
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tok.byte_id_[static_cast<size_t>(b)] = model_vocab.find(name);
  }
  return {};
}

// From the model vocab in pieces_: the character ids, then the full piece -> id index.
void Tokenizer::Loader::vocabIndex() const {
  tok.bmp_char_id_.assign(0x10000, -1);
  for (size_t id = 0; id < tok.pieces_.size(); ++id) {
    const std::string& piece = tok.pieces_[id];
    if (piece.empty() || piece.size() > 4 || !isValidUtf8(piece)) continue;
    uint8_t c = static_cast<uint8_t>(piece[0]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (len != piece.size()) continue;  // not a single character
    char32_t cp = c < 0x80 ? c : c < 0xE0 ? (c & 0x1Fu) : c < 0xF0 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(piece[k]) & 0x3Fu);
    if (cp < 0x10000) {
      tok.bmp_char_id_[cp] = static_cast<int32_t>(id);
    } else {
      tok.astral_char_id_[cp] = static_cast<int32_t>(id);
    }
  }
  if (tok.ignore_merges_) {
    tok.model_pieces_ = tok.pieces_;
    tok.model_vocab_ = std::make_unique<PieceIndex>(tok.model_pieces_);
  }

  // The full piece -> id index: the vocab, then added tokens, which win (as in the references).
  for (const AddedToken& t : tok.added_) tok.pieces_[static_cast<size_t>(t.id)] = t.content;
  tok.piece_to_id_ = std::make_unique<PieceIndex>(tok.pieces_);
  for (const AddedToken& t : tok.added_) {
    if (!t.content.empty()) tok.piece_to_id_->set(t.content, t.id);
  }
}

api::Status Tokenizer::Loader::normalizer(const Json* node) const {
  tok.normalizer_.reset();
  if (!node) return {};
  auto norm = std::make_unique<Normalizer>();
  double growth = 1;  // what the Replace steps so far can multiply a text's length by
  // Flattens nested Sequences into Replace/Prepend steps.
  auto walk = [&](auto&& self, const Json& n, int depth) -> api::Status {
    const Json* type = member(n, "type");
    std::string t = type && type->is_string() ? type->get<std::string>() : "";
    if (t == "Sequence") {
      const Json* list = member(n, "normalizers");
      if (!list || !list->is_array()) return fail("normalizer Sequence without normalizers");
      if (depth > 8) return fail("normalizer Sequences nested too deeply");
      for (const Json& child : *list) {
        api::Status st = self(self, child, depth + 1);
        if (!st.ok()) return st;
      }
      return {};
    }
    if (t == "Replace") {
      auto pattern = literalPattern(n, "normalizer Replace");
      if (!pattern.ok()) return pattern.status();
      const Json* content = member(n, "content");
      if (!content || !content->is_string()) return fail("normalizer Replace without content");
      growth *= replaceGrowth(*pattern, content->get<std::string>());
      if (growth > kMaxReplaceGrowth) {
        return fail("normalizer Replace steps can grow a text more than " +
                    std::to_string(static_cast<int>(kMaxReplaceGrowth)) + " times");
      }
      norm->steps.push_back(Normalizer::Step{Normalizer::Step::Kind::kReplace, *pattern,
                                             content->get<std::string>()});
      return {};
    }
    if (t == "Prepend") {
      const Json* prepend = member(n, "prepend");
      if (!prepend || !prepend->is_string()) return fail("normalizer Prepend without prepend");
      norm->steps.push_back(
          Normalizer::Step{Normalizer::Step::Kind::kPrepend, "", prepend->get<std::string>()});
      return {};
    }
    return fail("unsupported normalizer type '" + t + "'");
  };
  api::Status st = walk(walk, *node, 0);
  if (!st.ok()) return st;
  if (!norm->steps.empty()) tok.normalizer_ = std::move(norm);
  return {};
}

api::Status Tokenizer::Loader::preTokenizer(const Json* node) const {
  tok.pre_tokenizer_.reset();
  if (!node) return {};
  const Json* type = member(*node, "type");
  std::string t = type && type->is_string() ? type->get<std::string>() : "";
  if (t != "Split") return fail("unsupported pre_tokenizer type '" + t + "'");
  auto pattern = literalPattern(*node, "pre_tokenizer Split");
  if (!pattern.ok()) return pattern.status();
  if (flag(*node, "invert", false)) return fail("pre_tokenizer Split with invert is not supported");
  const Json* behavior = member(*node, "behavior");
  std::string b = behavior && behavior->is_string() ? behavior->get<std::string>() : "";
  auto pre = std::make_unique<PreTokenizer>();
  pre->pattern = *pattern;
  using B = PreTokenizer::Behavior;
  if (b == "Removed") {
    pre->behavior = B::kRemoved;
  } else if (b == "Isolated") {
    pre->behavior = B::kIsolated;
  } else if (b == "MergedWithPrevious") {
    pre->behavior = B::kMergedWithPrevious;
  } else if (b == "MergedWithNext") {
    pre->behavior = B::kMergedWithNext;
  } else if (b == "Contiguous") {
    pre->behavior = B::kContiguous;
  } else {
    return fail("unsupported pre_tokenizer Split behavior '" + b + "'");
  }
  tok.pre_tokenizer_ = std::move(pre);
  return {};
}

api::Status Tokenizer::Loader::decoder(const Json* node) const {
  // Replace steps (before ByteFallback/Fuse) apply to each piece; ByteFallback joins <0xHH> runs
  // into UTF-8; Fuse is what decode() always does at the end.
  std::vector<std::pair<std::string, std::string>> replaces;
  tok.decode_bytes_ = false;
  bool past_pieces = false;
  double growth = 1;  // what the Replace steps so far can multiply a piece's length by
  std::vector<const Json*> steps;
  if (node) {
    const Json* type = member(*node, "type");
    if (type && type->is_string() && type->get<std::string>() == "Sequence") {
      const Json* list = member(*node, "decoders");
      if (!list || !list->is_array()) return fail("decoder Sequence without decoders");
      for (const Json& d : *list) steps.push_back(&d);
    } else {
      steps.push_back(node);
    }
  }
  for (const Json* step : steps) {
    const Json* type = member(*step, "type");
    std::string t = type && type->is_string() ? type->get<std::string>() : "";
    if (t == "Replace") {
      if (past_pieces) return fail("decoder Replace after ByteFallback/Fuse is not supported");
      auto pattern = literalPattern(*step, "decoder Replace");
      if (!pattern.ok()) return pattern.status();
      const Json* content = member(*step, "content");
      if (!content || !content->is_string()) return fail("decoder Replace without content");
      growth *= replaceGrowth(*pattern, content->get<std::string>());
      if (growth > kMaxReplaceGrowth) {
        return fail("decoder Replace steps can grow a piece more than " +
                    std::to_string(static_cast<int>(kMaxReplaceGrowth)) + " times");
      }
      replaces.emplace_back(*pattern, content->get<std::string>());
    } else if (t == "ByteFallback") {
      tok.decode_bytes_ = true;
      past_pieces = true;
    } else if (t == "Fuse") {
      past_pieces = true;
    } else {
      return fail("unsupported decoder type '" + t + "'");
    }
  }
  tok.decoded_.resize(tok.pieces_.size());
  tok.byte_of_.assign(tok.pieces_.size(), -1);
  std::string cur, next;
  for (size_t id = 0; id < tok.pieces_.size(); ++id) {
    const std::string& p = tok.pieces_[id];
    if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' &&
        std::isxdigit(static_cast<unsigned char>(p[3])) &&
        std::isxdigit(static_cast<unsigned char>(p[4]))) {
      tok.byte_of_[id] = static_cast<int16_t>(std::stoi(p.substr(3, 2), nullptr, 16));
    }
    if (tok.decode_bytes_ && tok.byte_of_[id] >= 0) continue;  // decoded_ stays empty
    cur = p;
    for (const auto& [from, to] : replaces) {
      next.clear();
      appendReplaced(cur, from, to, next);
      cur.swap(next);
    }
    tok.decoded_[id] = cur;
  }
  return {};
}

api::Status Tokenizer::Loader::config(const Json* cfg) const {
  tok.special_.assign(tok.pieces_.size(), 0);
  for (const AddedToken& t : tok.added_) {
    if (t.special) tok.special_[static_cast<size_t>(t.id)] = 1;
  }
  // A token named in the config: a string, or an AddedToken object {"content": ...}.
  auto named = [&](const char* key) -> std::optional<std::string> {
    const Json* v = cfg ? member(*cfg, key) : nullptr;
    if (!v) return std::nullopt;
    if (v->is_string()) return v->get<std::string>();
    const Json* content = member(*v, "content");
    if (content && content->is_string()) return content->get<std::string>();
    return std::nullopt;
  };
  auto resolve = [&](const char* key, const char* fallback, int32_t& out) -> api::Status {
    std::optional<std::string> name = named(key);
    out = -1;
    if (name) {
      auto id = tok.idOf(*name);
      if (!id) return fail(std::string(key) + " '" + *name + "' is not in the vocab");
      out = *id;
    } else if (auto id = tok.idOf(fallback)) {
      out = *id;
    }
    return {};
  };
  api::Status st = resolve("bos_token", "<bos>", tok.bos_id_);
  if (st.ok()) st = resolve("eos_token", "<eos>", tok.eos_id_);
  if (st.ok()) st = resolve("pad_token", "<pad>", tok.pad_id_);
  if (st.ok()) st = resolve("unk_token", "<unk>", tok.unk_id_);
  if (!st.ok()) return st;
  if (tok.model_unk_.size() > 0) {
    if (auto id = tok.idOf(tok.model_unk_)) tok.unk_id_ = *id;
  }
  if (auto id = tok.idOf("<end_of_turn>")) tok.end_of_turn_id_ = *id;
  if (const Json* extra = cfg ? member(*cfg, "additional_special_tokens") : nullptr) {
    if (extra->is_array()) {
      for (const Json& e : *extra) {
        const Json* c = e.is_string() ? &e : member(e, "content");
        if (!c || !c->is_string()) continue;
        if (auto id = tok.idOf(c->get<std::string>())) tok.special_[static_cast<size_t>(*id)] = 1;
      }
    }
  }
  return {};
}

void Tokenizer::Loader::finish() const {
  tok.raw_trie_ = std::make_unique<AddedTrie>();
  tok.normalized_trie_ = std::make_unique<AddedTrie>();
  for (size_t i = 0; i < tok.added_.size(); ++i) {
    const AddedToken& t = tok.added_[i];
    if (!t.normalized) {
      tok.raw_trie_->add(t.content, static_cast<int32_t>(i));
    } else {
      // Matched on normalized text, so the content is normalized the same way.
      std::string content;
      if (tok.normalizer_) {
        tok.normalizer_->apply(t.content, content);
      } else {
        content = t.content;
      }
      tok.normalized_trie_->add(content, static_cast<int32_t>(i));
    }
  }
}

api::Status Tokenizer::Loader::vocabulary(std::unique_ptr<Tokenizer>& tok,
                                          std::string_view tokenizer_json, std::string_view source,
                                          CacheIo* cache, Json& rest) {
  if (cache && !cache->cached.empty()) {
    std::string rest_text;
    if (Cache::decode(cache->cached, *tok, rest_text)) {
      rest = Json::parse(rest_text, nullptr, /*allow_exceptions=*/false);
      if (rest.is_object()) {
        cache->hit = true;
        return Loader{source, *tok}.model(rest);
      }
    }
    tok.reset(new Tokenizer());  // an inconsistent cache: start over from the JSON
  }
  TokenizerJsonReader reader;
  bool parsed = Json::sax_parse(tokenizer_json, &reader);
  if (!parsed || !reader.error.empty()) {
    return configError(source, reader.error.empty() ? "invalid JSON" : reader.error);
  }
  if (!reader.root.is_object()) return configError(source, "the top level is not an object");
  rest = std::move(reader.root);
  Loader loader{source, *tok};
  const Json* added = member(rest, "added_tokens");
  api::Status st = loader.model(rest);
  if (st.ok()) st = loader.addedTokens(added ? *added : Json::array());
  if (st.ok()) st = loader.vocabAndMerges(reader);
  if (!st.ok() || !cache || !cache->want_encoded) return st;
  Json without_added = rest;
  without_added.erase("added_tokens");
  cache->encoded = Cache::encode(cache->stamp, without_added.dump(), *tok);
  return {};
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Loader::create(std::string_view tokenizer_json,
                                                                    std::string_view source,
                                                                    std::string_view config_json,
                                                                    std::string_view config_source,
                                                                    CacheIo* cache) {
  Json config;
  if (!config_json.empty()) {
    config = Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) return configError(config_source, "invalid JSON");
    if (!config.is_object()) return configError(config_source, "the top level is not an object");
  }

  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  Json root;
  api::Status st = vocabulary(tok, tokenizer_json, source, cache, root);
  if (!st.ok()) return st;
  return complete(std::move(tok), root, config_json.empty() ? nullptr : &config, source,
                  config_source);
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Loader::complete(
    std::unique_ptr<Tokenizer> tok, const Json& root, const Json* config, std::string_view source,
    std::string_view config_source) {
  Loader loader{source, *tok};
  loader.vocabIndex();
  api::Status st = loader.normalizer(member(root, "normalizer"));
  if (st.ok()) st = loader.preTokenizer(member(root, "pre_tokenizer"));
  if (st.ok()) st = loader.decoder(member(root, "decoder"));
  if (st.ok()) {
    Loader config_loader{config_source, *tok};
    st = config_loader.config(config);
  }
  if (!st.ok()) return st;
  loader.finish();
  return tok;
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::assemble(std::unique_ptr<Tokenizer> tok,
                                                              std::string_view rest_json,
                                                              std::string_view config_json,
                                                              std::string_view source) {
  Json rest = Json::parse(rest_json, nullptr, /*allow_exceptions=*/false);
  if (!rest.is_object()) return configError(source, "the tokenizer description is not an object");
  Json config;
  if (!config_json.empty()) {
    config = Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) return configError(source, "the token names are not an object");
  }
  api::Status st = Loader{source, *tok}.model(rest);
  if (!st.ok()) return st;
  return Loader::complete(std::move(tok), rest, config_json.empty() ? nullptr : &config, source,
                          source);
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::fromJson(std::string_view tokenizer_json,
                                                              std::string_view config_json,
                                                              std::string_view source) {
  std::string config_source = std::string(source) + " (tokenizer_config.json)";
  return Loader::create(tokenizer_json, source, config_json, config_source);
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& tokenizer_json_path,
                                                          const std::string& config_path,
                                                          const LoadOptions& options) {
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(tokenizer_json_path, ec);  // before the read
  auto json = readFile(tokenizer_json_path);
  if (!json.ok()) return json.status();
  std::string config;
  if (!config_path.empty()) {
    auto c = readFile(config_path);
    if (!c.ok()) return c.status();
    config = std::move(*c);
  }
  LoadReport report;
  if (!options.use_cache || ec || json->size() < options.cache_min_bytes) {
    if (options.report) *options.report = report;
    return Loader::create(*json, tokenizer_json_path, config, config_path);
  }
  Loader::CacheIo cache;
  cache.stamp = {json->size(), static_cast<int64_t>(mtime.time_since_epoch().count()),
                 Cache::contentHash(*json)};
  const std::string beside = Cache::besidePath(tokenizer_json_path);
  const std::string fallback = Cache::fallbackPath(tokenizer_json_path, options.cache_dir);
  std::string cached;
  for (const std::string& path : {beside, fallback}) {
    if (path.empty() || !std::filesystem::is_regular_file(path, ec)) continue;
    auto file = readFile(path);
    if (file.ok() && Cache::matches(*file, cache.stamp)) {
      cached = std::move(*file);
      report.cache_path = path;
      break;
    }
  }
  cache.cached = cached;
  cache.want_encoded = true;
  auto tok = Loader::create(*json, tokenizer_json_path, config, config_path, &cache);
  if (!tok.ok() && cache.hit) {  // a cache that decodes but does not build: parse after all
    cache.cached = {};
    cache.hit = false;
    report.cache_path.clear();
    tok = Loader::create(*json, tokenizer_json_path, config, config_path, &cache);
  }
  report.cache_hit = cache.hit;
  if (tok.ok() && !cache.hit && !cache.encoded.empty()) {
    report.cache_path.clear();
    for (const std::string& path : {beside, fallback}) {
      if (!path.empty() && Cache::writeAtomically(path, cache.encoded)) {
        report.cache_written = true;
        report.cache_path = path;
        break;
      }
    }
  }
  if (options.report) *options.report = report;
  return tok;
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::loadDir(const std::string& dir,
                                                             const LoadOptions& options) {
  std::filesystem::path base(dir);
  std::filesystem::path config = base / "tokenizer_config.json";
  std::error_code ec;
  return load((base / "tokenizer.json").string(),
              std::filesystem::exists(config, ec) ? config.string() : std::string(), options);
}

}  // namespace engine
