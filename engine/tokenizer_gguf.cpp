// engine::Tokenizer to and from GGUF tokenizer metadata (see tokenizer_gguf.h for the
// conventions, which follow llama.cpp's convert_hf_to_gguf.py and src/llama-vocab.cpp).
#include "engine/tokenizer_gguf.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "engine/tokenizer_internal.h"

namespace engine {

namespace {

using Json = nlohmann::json;
namespace keys = gguf_tokenizer_keys;

constexpr float kAddedTokenScore = -1000.0f;      // convert_hf_to_gguf.py: added_tokens_decoder
constexpr float kPaddingScore = -10000.0f;        // convert_hf_to_gguf.py: ids the tokenizer lacks
constexpr float kGemma4Score = -1000.0f;          // gguf-py LlamaHfVocab.get_token_score
constexpr int64_t kMaxTokens = int64_t{1} << 24;  // ids and scores stay exact in a float
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Gemma4Model.set_vocab writes these as USER_DEFINED so that llama.cpp always renders them.
constexpr std::string_view kGemma4Visible[] = {
    "<|channel>",       "<channel|>",       "<|tool_call>", "<tool_call|>",
    "<|tool_response>", "<tool_response|>", "<|\"|>"};

api::Status configError(std::string_view source, const std::string& what) {
  return api::Status(api::ErrorCode::kConfig, std::string(source) + ": " + what);
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool endsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// convert_hf_to_gguf.py ModelBase.does_token_look_special: added tokens that become CONTROL even
// when tokenizer.json does not mark them special.
bool looksSpecial(std::string_view t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (startsWith(t, "<|") && endsWith(t, "|>")) return true;
  constexpr std::string_view kBar = "\xEF\xBD\x9C";  // U+FF5C, deepseek-coder's bar
  if (startsWith(t, std::string("<").append(kBar)) && endsWith(t, std::string(kBar).append(">"))) {
    return true;
  }
  return startsWith(t, "<unused") && endsWith(t, ">");
}

// gguf-py LlamaHfVocab.get_token_type: re.fullmatch(br"<0x[0-9A-Fa-f]{2}>").
bool isByteName(std::string_view t) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  return t.size() == 6 && startsWith(t, "<0x") && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

std::string replaced(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  appendReplaced(text, from, to, out);
  return out;
}

// Byte offsets where the code points of `s` start, then s.size(); a byte that starts no
// well-formed sequence counts as one code point.
void codepointOffsets(std::string_view s, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    out.push_back(static_cast<uint32_t>(i));
    uint8_t c = static_cast<uint8_t>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + len > s.size()) len = 1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) {
        len = 1;
        break;
      }
    }
    i += len;
  }
  out.push_back(static_cast<uint32_t>(s.size()));
}

api::StatusOr<std::string> readText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return api::Status(api::ErrorCode::kIo, "cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// The conversions, with access to the tokenizer's internals.
struct Tokenizer::Gguf {
  struct Merge {
    int32_t left = 0;
    int32_t right = 0;
    int32_t merged = 0;
  };

  // The tokenizer's merges in rank order.
  static std::vector<Merge> rankedMerges(const Tokenizer& tok) {
    std::vector<std::pair<int32_t, Merge>> ranked;
    if (tok.merges_) {
      for (const MergeTable::Slot& s : tok.merges_->slots) {
        if (s.key == MergeTable::kEmpty) continue;
        ranked.push_back({s.rank, Merge{static_cast<int32_t>(s.key >> 32),
                                        static_cast<int32_t>(s.key & 0xffffffffu), s.merged}});
      }
    }
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Merge> out;
    out.reserve(ranked.size());
    for (const auto& [rank, m] : ranked) out.push_back(m);
    return out;
  }

  // transformers' generate_merges (convert_slow_tokenizer.py): every split of every piece into
  // two pieces of the vocab, ordered by the piece's score (highest first), then the left part's
  // length, then the right part's (longest first, in code points), then piece id.
  static std::vector<Merge> mergesFromScores(const std::vector<std::string>& pieces,
                                             const std::vector<float>& scores) {
    struct Candidate {
      float score;
      uint32_t left_len;
      uint32_t right_len;
      int32_t piece;
      Merge merge;
    };
    PieceIndex index(pieces);
    std::vector<Candidate> candidates;
    std::vector<uint32_t> offsets;
    for (size_t id = 0; id < pieces.size(); ++id) {
      std::string_view p = pieces[id];
      if (p.size() < 2) continue;
      codepointOffsets(p, offsets);
      const uint32_t n = static_cast<uint32_t>(offsets.size() - 1);
      for (uint32_t k = 1; k < n; ++k) {
        int32_t left = index.find(p.substr(0, offsets[k]));
        if (left < 0) continue;
        int32_t right = index.find(p.substr(offsets[k]));
        if (right < 0) continue;
        candidates.push_back(Candidate{scores[id], k, n - k, static_cast<int32_t>(id),
                                       Merge{left, right, static_cast<int32_t>(id)}});
      }
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.left_len != b.left_len) return a.left_len > b.left_len;
      if (a.right_len != b.right_len) return a.right_len > b.right_len;
      return a.piece < b.piece;
    });
    std::vector<Merge> out;
    out.reserve(candidates.size());
    for (const Candidate& c : candidates) out.push_back(c.merge);
    return out;
  }

  // The scores that make mergesFromScores give `merges` back, given that CONTROL and
  // USER_DEFINED pieces (`added`) read as 0 (see tokenizer_gguf.h). Pieces no merge produces get
  // a score below every merged piece.
  static std::vector<float> scoresForMerges(size_t n_tokens, const std::vector<Merge>& merges,
                                            const std::vector<uint8_t>& added) {
    const int64_t n_merges = static_cast<int64_t>(merges.size());
    std::vector<int64_t> first(n_tokens, -1), last(n_tokens, -1);
    for (int64_t r = 0; r < n_merges; ++r) {
      size_t m = static_cast<size_t>(merges[static_cast<size_t>(r)].merged);
      if (first[m] < 0) first[m] = r;
      last[m] = r;
    }
    // The ranks that added pieces take part in: one tier of score 0, widened to every piece whose
    // merges interleave with it.
    int64_t s0 = -1, e0 = -1;
    for (size_t id = 0; id < n_tokens; ++id) {
      if (!added[id] || first[id] < 0) continue;
      s0 = s0 < 0 ? first[id] : std::min(s0, first[id]);
      e0 = std::max(e0, last[id]);
    }
    for (bool grew = s0 >= 0; grew;) {
      grew = false;
      for (size_t id = 0; id < n_tokens; ++id) {
        if (first[id] < 0 || first[id] > e0 || last[id] < s0) continue;
        if (first[id] < s0 || last[id] > e0) {
          s0 = std::min(s0, first[id]);
          e0 = std::max(e0, last[id]);
          grew = true;
        }
      }
    }
    // Elsewhere pieces whose merges interleave share a score; the score falls with the rank.
    std::vector<int32_t> by_first;
    for (size_t id = 0; id < n_tokens; ++id) {
      if (first[id] >= 0) by_first.push_back(static_cast<int32_t>(id));
    }
    std::sort(by_first.begin(), by_first.end(),
              [&](int32_t a, int32_t b) { return first[a] < first[b]; });
    const int64_t base = s0 >= 0 ? s0 : -1;
    std::vector<float> scores(n_tokens, static_cast<float>(base - n_merges));
    int64_t block = -1, block_end = -1;
    for (int32_t id : by_first) {
      int64_t start;
      if (s0 >= 0 && first[id] >= s0 && first[id] <= e0) {
        start = s0;
      } else {
        if (first[id] > block_end) block = first[id];
        block_end = std::max(block_end, last[id]);
        start = block;
      }
      scores[static_cast<size_t>(id)] = static_cast<float>(base - start);
    }
    return scores;
  }

  static api::Status exportSentencePiece(const Tokenizer& tok, GgufTokenizerData& d);
  static api::Status exportGemma4(const Tokenizer& tok, GgufTokenizerData& d);
  static api::Status checkData(const GgufTokenizerData& d, std::string_view source);
  static api::StatusOr<std::unique_ptr<Tokenizer>> build(const GgufTokenizerData& d,
                                                         std::string_view source);
};

api::Status Tokenizer::Gguf::exportSentencePiece(const Tokenizer& tok, GgufTokenizerData& d) {
  const size_t n = tok.pieces_.size();
  std::vector<const AddedToken*> added_of(n, nullptr);
  for (const AddedToken& t : tok.added_) {
    if (!added_of[static_cast<size_t>(t.id)]) added_of[static_cast<size_t>(t.id)] = &t;
  }
  std::vector<uint8_t> added(n, 0);
  for (size_t id = 0; id < n; ++id) added[id] = added_of[id] != nullptr;
  const std::vector<Merge> merges = rankedMerges(tok);
  if (static_cast<int64_t>(merges.size() + n) >= kMaxTokens) {
    return configError("tokenizer", "too many merges to express as SentencePiece scores");
  }
  std::vector<float> derived = scoresForMerges(n, merges, added);

  // What the import reads back (CONTROL and USER_DEFINED as score 0, U+2581 restored) must give
  // the same merges in the same order.
  std::vector<float> read_back = derived;
  for (size_t id = 0; id < n; ++id) {
    if (added[id]) read_back[id] = 0;
  }
  const std::vector<Merge> rebuilt = mergesFromScores(tok.pieces_, read_back);
  for (size_t r = 0; r < std::max(rebuilt.size(), merges.size()); ++r) {
    bool same = r < rebuilt.size() && r < merges.size() && rebuilt[r].left == merges[r].left &&
                rebuilt[r].right == merges[r].right;
    if (same) continue;
    auto name = [&](const std::vector<Merge>& list) {
      if (r >= list.size()) return std::string("nothing");
      return "(\"" + tok.pieces_[static_cast<size_t>(list[r].left)] + "\", \"" +
             tok.pieces_[static_cast<size_t>(list[r].right)] + "\")";
    };
    return configError("tokenizer", "its merges cannot be written as SentencePiece scores: rank " +
                                        std::to_string(r) + " would be " + name(rebuilt) +
                                        " instead of " + name(merges));
  }

  d.model = "llama";
  d.pre = "default";
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = tok.pieces_[id];
    GgufTokenType type = GgufTokenType::kNormal;
    float score = derived[id];
    std::string text = piece;
    if (const AddedToken* t = added_of[id]) {
      // _create_vocab_sentencepiece: added_tokens_decoder entries.
      score = kAddedTokenScore;
      if (t->special || looksSpecial(t->content)) {
        type = GgufTokenType::kControl;
      } else {
        type = GgufTokenType::kUserDefined;
        text = replaced(piece, kMetaspace, " ");  // "pre-normalize user-defined spaces"
      }
    } else if (piece.empty()) {
      text = "[PAD" + std::to_string(id) + "]";
      type = GgufTokenType::kUnused;
      score = kPaddingScore;
    } else if (static_cast<int32_t>(id) == tok.unk_id_) {
      type = GgufTokenType::kUnknown;
    } else if (tok.byte_of_[id] >= 0) {
      type = GgufTokenType::kByte;
    }
    d.tokens.push_back(std::move(text));
    d.scores.push_back(score);
    d.token_type.push_back(static_cast<int32_t>(type));
  }
  return {};
}

api::Status Tokenizer::Gguf::exportGemma4(const Tokenizer& tok, GgufTokenizerData& d) {
  d.model = "gemma4";
  for (size_t id = 0; id < tok.pieces_.size(); ++id) {
    const std::string& piece = tok.pieces_[id];
    GgufTokenType type = GgufTokenType::kNormal;
    if (piece.empty()) {
      type = GgufTokenType::kUnused;
    } else if (isByteName(piece)) {
      type = GgufTokenType::kByte;
    } else if (std::find(std::begin(kGemma4Visible), std::end(kGemma4Visible), piece) !=
               std::end(kGemma4Visible)) {
      type = GgufTokenType::kUserDefined;
    } else if (tok.special_[id]) {
      type = GgufTokenType::kControl;
    }
    d.tokens.push_back(piece.empty() ? "[PAD" + std::to_string(id) + "]" : piece);
    d.scores.push_back(kGemma4Score);
    d.token_type.push_back(static_cast<int32_t>(type));
  }
  for (const Merge& m : rankedMerges(tok)) {
    const std::string& a = tok.pieces_[static_cast<size_t>(m.left)];
    const std::string& b = tok.pieces_[static_cast<size_t>(m.right)];
    if (a.find(' ') != std::string::npos || b.find(' ') != std::string::npos) {
      return configError("tokenizer",
                         "the merge (\"" + a + "\", \"" + b +
                             "\") has a space, which tokenizer.ggml.merges cannot hold");
    }
    d.merges.push_back(a + " " + b);
  }
  d.add_bos = true;  // Gemma4Model.set_vocab: add_add_bos_token(True)
  return {};
}

api::Status Tokenizer::Gguf::checkData(const GgufTokenizerData& d, std::string_view source) {
  if (d.model != "llama" && d.model != "gemma4") {
    return configError(source, std::string(keys::kModel) + " '" + d.model +
                                   "' is not supported (only \"llama\" and \"gemma4\", the "
                                   "SentencePiece-style tokenizers of Gemma 3 and Gemma 4)");
  }
  const size_t n = d.tokens.size();
  if (n == 0) return configError(source, std::string(keys::kTokens) + " is missing or empty");
  if (static_cast<int64_t>(n) >= kMaxTokens) {
    return configError(source, std::string(keys::kTokens) + " has too many entries");
  }
  auto sameLength = [&](const char* key, size_t size) -> api::Status {
    if (size == n) return {};
    return configError(source, std::string(key) + " has " + std::to_string(size) + " entries but " +
                                   keys::kTokens + " has " + std::to_string(n));
  };
  if (d.model == "llama" && d.scores.empty()) {
    return configError(source, std::string(keys::kScores) + " is missing (model \"llama\")");
  }
  if (!d.scores.empty()) {
    if (api::Status st = sameLength(keys::kScores, d.scores.size()); !st.ok()) return st;
  }
  if (!d.token_type.empty()) {
    if (api::Status st = sameLength(keys::kTokenType, d.token_type.size()); !st.ok()) return st;
  }
  for (size_t id = 0; id < d.token_type.size(); ++id) {
    if (d.token_type[id] < 0 || d.token_type[id] > 6) {
      return configError(source, std::string(keys::kTokenType) + "[" + std::to_string(id) +
                                     "] = " + std::to_string(d.token_type[id]) +
                                     " is not a llama.cpp token type (0..6)");
    }
  }
  const std::pair<const char*, int32_t> ids[] = {{keys::kBosId, d.bos_id},
                                                 {keys::kEosId, d.eos_id},
                                                 {keys::kUnknownId, d.unknown_id},
                                                 {keys::kPaddingId, d.padding_id}};
  for (const auto& [key, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return configError(source, std::string(key) + " = " + std::to_string(id) +
                                     " is out of range (" + std::to_string(n) + " tokens)");
    }
  }
  // llama.cpp reads add_space_prefix only for SentencePiece models (true when absent); BPE
  // models ("gemma4") never add one.
  if (d.model == "llama" && d.add_space_prefix.value_or(true)) {
    return configError(source, std::string(keys::kAddSpacePrefix) +
                                   " must be false (Gemma never prefixes a space)");
  }
  if (d.model == "gemma4" && d.merges.empty()) {
    return configError(source, std::string(keys::kMerges) + " is missing (model \"gemma4\")");
  }
  return {};
}

api::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Gguf::build(const GgufTokenizerData& d,
                                                                 std::string_view source) {
  const bool spm = d.model == "llama";
  const size_t n = d.tokens.size();
  auto typeOf = [&](size_t id) {
    return static_cast<GgufTokenType>(d.token_type.empty() ? 1 : d.token_type[id]);
  };
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->pieces_ = d.tokens;
  for (size_t id = 0; id < n; ++id) {
    GgufTokenType type = typeOf(id);
    if (spm && type == GgufTokenType::kUserDefined) {
      tok->pieces_[id] = replaced(d.tokens[id], " ", kMetaspace);  // undo the converter's step
    } else if (type == GgufTokenType::kUnused) {
      tok->pieces_[id].clear();  // a [PAD<id>] row: an id no text produces, as in tokenizer.json
    }
    if (type == GgufTokenType::kControl || type == GgufTokenType::kUserDefined ||
        type == GgufTokenType::kUnknown) {
      tok->added_.push_back(AddedToken{static_cast<int32_t>(id), tok->pieces_[id],
                                       type != GgufTokenType::kUserDefined,
                                       /*normalized=*/false, /*lstrip=*/false, /*rstrip=*/false});
    }
  }

  std::vector<Merge> merges;
  if (spm) {
    std::vector<float> scores = d.scores;
    for (size_t id = 0; id < n; ++id) {
      GgufTokenType type = typeOf(id);
      if (type == GgufTokenType::kControl || type == GgufTokenType::kUserDefined) scores[id] = 0;
    }
    merges = mergesFromScores(tok->pieces_, scores);
  } else {
    PieceIndex index(tok->pieces_);
    for (size_t i = 0; i < d.merges.size(); ++i) {
      std::string_view m = d.merges[i];
      size_t space = m.find(' ', 1);  // llama.cpp: word.find(' ', 1)
      int32_t a = -1, b = -1, ab = -1;
      if (space != std::string_view::npos) {
        a = index.find(m.substr(0, space));
        b = index.find(m.substr(space + 1));
        ab = index.find(std::string(m.substr(0, space)).append(m.substr(space + 1)));
      }
      if (a < 0 || b < 0 || ab < 0) {
        return configError(source, std::string(keys::kMerges) + "[" + std::to_string(i) + "] \"" +
                                       std::string(m) +
                                       "\" is not two tokens of the vocab joined by a space");
      }
      merges.push_back(Merge{a, b, ab});
    }
  }
  tok->merges_ = std::make_unique<MergeTable>();
  tok->merges_->reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    tok->merges_->insert(merges[r].left, merges[r].right, static_cast<int32_t>(r),
                         merges[r].merged);
  }
  PieceIndex model_vocab(tok->pieces_);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tok->byte_id_[static_cast<size_t>(b)] = model_vocab.find(name);
  }

  // The rest of what Gemma's tokenizer.json says: byte fallback, spaces as U+2581 both ways.
  const std::string metaspace(kMetaspace);
  Json model = {{"type", "BPE"}, {"byte_fallback", true}, {"fuse_unk", true}};
  if (d.unknown_id >= 0) {
    const std::string& unk = tok->pieces_[static_cast<size_t>(d.unknown_id)];
    if (!isValidUtf8(unk)) {
      return configError(source, "tokenizer.ggml.unknown_token_id names a token that is not "
                                 "valid UTF-8");
    }
    model["unk_token"] = unk;
  }
  Json rest = {
      {"model", model},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", metaspace}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         Json::array({{{"type", "Replace"}, {"pattern", {{"String", metaspace}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}}})}}}};
  auto built = assemble(std::move(tok), rest.dump(), {}, source);
  if (!built.ok()) return built.status();
  tok = std::move(built).value();
  // The ids GGUF names, else llama.cpp's defaults (llama-vocab.cpp: SentencePiece bos 1, eos 2,
  // unk 0; "gemma4" none).
  auto pick = [&](int32_t given, int32_t spm_default) {
    if (given >= 0) return given;
    return spm && spm_default < static_cast<int32_t>(n) ? spm_default : -1;
  };
  tok->bos_id_ = pick(d.bos_id, 1);
  tok->eos_id_ = pick(d.eos_id, 2);
  tok->unk_id_ = pick(d.unknown_id, 0);
  tok->pad_id_ = d.padding_id;
  return tok;
}

api::StatusOr<GgufTokenizerData> exportGgufTokenizer(const Tokenizer& tok,
                                                     const GgufTokenizerExportOptions& options) {
  if (options.vocab_size < 0) return configError("tokenizer", "vocab_size is negative");
  GgufTokenizerData d;
  api::Status st = options.kind == GgufTokenizerKind::kSentencePiece
                       ? Tokenizer::Gguf::exportSentencePiece(tok, d)
                       : Tokenizer::Gguf::exportGemma4(tok, d);
  if (!st.ok()) return st;
  // The converter leaves out added tokens past vocab_size ("ignore token N: id is out of range",
  // Gemma 3 1B's <image_soft_token>); any other token there means the wrong vocab_size.
  const size_t keep = options.vocab_size == 0 ? d.tokens.size() : options.vocab_size;
  for (size_t id = keep; id < d.tokens.size(); ++id) {
    auto type = static_cast<GgufTokenType>(d.token_type[id]);
    if (type != GgufTokenType::kControl && type != GgufTokenType::kUserDefined) {
      return configError("tokenizer", "vocab_size " + std::to_string(options.vocab_size) +
                                          " leaves out token " + std::to_string(id) + " '" +
                                          d.tokens[id] + "', which is not an added token");
    }
  }
  if (keep < d.tokens.size()) {
    d.tokens.resize(keep);
    d.scores.resize(keep);
    d.token_type.resize(keep);
  }
  const float pad_score =
      options.kind == GgufTokenizerKind::kSentencePiece ? kPaddingScore : kGemma4Score;
  for (int32_t id = tok.vocabSize(); id < options.vocab_size; ++id) {
    d.tokens.push_back("[PAD" + std::to_string(id) + "]");
    d.scores.push_back(pad_score);
    d.token_type.push_back(static_cast<int32_t>(GgufTokenType::kUnused));
  }
  // gguf-py SpecialVocab(n_vocab) skips ids past the vocab.
  auto inVocab = [&](int32_t id) { return id < static_cast<int64_t>(d.tokens.size()) ? id : -1; };
  d.bos_id = inVocab(tok.bosId());
  d.eos_id = inVocab(tok.eosId());
  d.unknown_id = inVocab(tok.unkId());
  d.padding_id = inVocab(tok.padId());
  d.add_space_prefix = false;
  if (options.add_bos) d.add_bos = options.add_bos;
  if (options.add_eos) d.add_eos = options.add_eos;
  d.chat_template = options.chat_template;
  return d;
}

api::StatusOr<GgufTokenizerData> exportGgufTokenizerDir(const std::string& dir,
                                                        GgufTokenizerExportOptions options) {
  auto tok = Tokenizer::loadDir(dir);
  if (!tok.ok()) return tok.status();
  std::filesystem::path base(dir);
  std::error_code ec;
  std::filesystem::path config_path = base / "tokenizer_config.json";
  if (std::filesystem::exists(config_path, ec)) {
    auto text = readText(config_path);
    if (!text.ok()) return text.status();
    Json config = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) return configError(config_path.string(), "not a JSON object");
    // gguf-py SpecialVocab: add_<type>_token and chat_template (a string, or the "default"
    // entry of a list).
    auto flag = [&](const char* key, std::optional<bool>& out) {
      auto it = config.find(key);
      if (!out && it != config.end() && it->is_boolean()) out = it->get<bool>();
    };
    flag("add_bos_token", options.add_bos);
    flag("add_eos_token", options.add_eos);
    auto tmpl = config.find("chat_template");
    if (options.chat_template.empty() && tmpl != config.end()) {
      if (tmpl->is_string()) {
        options.chat_template = tmpl->get<std::string>();
      } else if (tmpl->is_array()) {
        for (const Json& e : *tmpl) {
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
              e["template"].is_string()) {
            options.chat_template = e["template"].get<std::string>();
          }
        }
      }
    }
  }
  std::filesystem::path jinja = base / "chat_template.jinja";
  if (options.chat_template.empty() && std::filesystem::exists(jinja, ec)) {
    auto text = readText(jinja);
    if (!text.ok()) return text.status();
    options.chat_template = std::move(*text);
  }
  return exportGgufTokenizer(**tok, options);
}

api::StatusOr<GgufTokenizer> importGgufTokenizer(const GgufTokenizerData& data,
                                                 std::string_view source) {
  api::Status st = Tokenizer::Gguf::checkData(data, source);
  if (!st.ok()) return st;
  auto tok = Tokenizer::Gguf::build(data, source);
  if (!tok.ok()) return tok.status();
  GgufTokenizer out;
  out.tokenizer = std::move(tok).value();
  out.chat_template = data.chat_template;
  out.add_bos = data.add_bos.value_or(true);
  out.add_eos = data.add_eos.value_or(false);
  return out;
}

}  // namespace engine
