// The tokenizer side of GGUF: engine::Tokenizer to and from the `tokenizer.*` metadata that
// llama.cpp's converter (convert_hf_to_gguf.py) writes, independent of the container
// (engine/gguf.h reads and writes the keys; this file gives them meaning).
//
// What llama.cpp writes for Gemma (convert_hf_to_gguf.py, gguf-py/gguf/vocab.py):
//   - Gemma 3 (Gemma3Model.set_vocab): with tokenizer.model present (every released Gemma 3
//     checkpoint), _set_vocab_sentencepiece: model "llama", pre "default", the SentencePiece
//     pieces with their scores and types, no merges; every entry of tokenizer_config.json's
//     added_tokens_decoder becomes CONTROL (special, or a name that looks special: <mask>,
//     <unusedN>, <|...|>) or USER_DEFINED (with U+2581 written back as a space), score -1000;
//     ids up to config.json's vocab_size that the tokenizer lacks are "[PAD<id>]", UNUSED,
//     score -10000; add_space_prefix false; SpecialVocab adds the bos/eos/unk/pad ids named in
//     tokenizer_config.json, add_bos/add_eos and the chat template.
//   - Gemma 4 (Gemma4Model.set_vocab): model "gemma4", the tokenizer.json vocab (LlamaHfVocab:
//     score -1000 for every token; CONTROL for the tokenizer's special tokens, BYTE for <0xHH>,
//     USER_DEFINED for added tokens past the base vocab and for the channel/tool-call markers),
//     the merges of tokenizer.json, add_space_prefix false, add_bos true.
//
// Gemma 3 without tokenizer.model: its tokenizer.json is a BPE model with byte fallback whose
// 514,906 merges transformers derived from the SentencePiece scores (generate_merges in
// convert_slow_tokenizer.py): every split of every piece into two vocab pieces is a merge,
// ordered by the merged piece's score (highest first), then the left part's length, then the
// right part's (longest first, in code points), then piece id. The export inverts that. Pieces
// that some merge produces get scores from their merge ranks: the pieces whose merges interleave
// with those of the added (USER_DEFINED/CONTROL) pieces share one tier of score 0 (for Gemma 3 the
// whitespace runs and "▁t", ranks 0..1395), and every other piece scores r0 - r, r the first rank
// of its run of interleaving pieces and r0 the first rank of that tier, -1 without one ("in", rank
// 1396, scores -1396); pieces no merge produces score below all of them; added pieces are written
// with -1000 and [PAD] rows with -10000 as the converter writes them. All scores are integers,
// exact in a float. llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm_session) merges the
// adjacent pair whose joined text is the highest-scoring token first, leftmost on a tie, so the
// scores give it tokenizer.json's merge order. The import rebuilds the merges the way
// transformers does, reading USER_DEFINED and CONTROL pieces' scores as 0 (the score
// SentencePiece gives user-defined and control symbols, which the converter overwrote with
// -1000), so a file written by the export, or by the converter from the original
// tokenizer.model, gives the tokenizer.json merges back. The export runs that rebuild and
// refuses (kConfig) a tokenizer whose merges come back different.
//
// The import builds the same engine::Tokenizer as the tokenizer.json loader (one tokenizer, two
// loaders): the vocab, the merges, byte fallback, and CONTROL/USER_DEFINED/UNKNOWN tokens as
// added tokens (matched on the raw text, never normalized), normalizer Replace(" " -> U+2581),
// decoder Replace(U+2581 -> " ") + ByteFallback + Fuse. What GGUF cannot carry:
//   - the `special` flag of tokenizer.json: every CONTROL token is special (decode(skip_special)
//     drops it), where Gemma 3's tokenizer.json has <mask> and <unused0..6241> as not special;
//   - for "gemma4", which NORMAL tokens were tokenizer.json added tokens (LlamaHfVocab writes
//     the added tokens inside the base vocab as NORMAL unless special): the import meets them
//     through merges only, so a text that spells one out ("<unused0>", a run of newlines) can
//     encode differently. "llama" files have no such gap.
// UNUSED rows ([PAD<id>]) keep their ids (vocabSize() counts them) with an empty piece: no text
// produces them, they decode to nothing, and the export writes them back as [PAD<id>].
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/tokenizer.h"

namespace engine {

// The metadata keys (GGUF spec, gguf-py constants.py Keys.Tokenizer).
namespace gguf_tokenizer_keys {
inline constexpr const char* kModel = "tokenizer.ggml.model";
inline constexpr const char* kPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokens = "tokenizer.ggml.tokens";               // array of string
inline constexpr const char* kScores = "tokenizer.ggml.scores";               // array of f32
inline constexpr const char* kTokenType = "tokenizer.ggml.token_type";        // array of i32
inline constexpr const char* kMerges = "tokenizer.ggml.merges";               // array of string
inline constexpr const char* kBosId = "tokenizer.ggml.bos_token_id";          // u32
inline constexpr const char* kEosId = "tokenizer.ggml.eos_token_id";          // u32
inline constexpr const char* kUnknownId = "tokenizer.ggml.unknown_token_id";  // u32
inline constexpr const char* kPaddingId = "tokenizer.ggml.padding_token_id";  // u32
inline constexpr const char* kAddBos = "tokenizer.ggml.add_bos_token";        // bool
inline constexpr const char* kAddEos = "tokenizer.ggml.add_eos_token";        // bool
inline constexpr const char* kAddSpacePrefix = "tokenizer.ggml.add_space_prefix";  // bool
inline constexpr const char* kChatTemplate = "tokenizer.chat_template";            // string
}  // namespace gguf_tokenizer_keys

// llama.cpp's llama_token_type (gguf-py TokenType), one per token in tokenizer.ggml.token_type.
enum class GgufTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// The tokenizer metadata of a GGUF file as plain values. An absent key is an empty string or
// vector, -1, or nullopt.
struct GgufTokenizerData {
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece) or "gemma4"
  std::string pre;    // tokenizer.ggml.pre: "default" for "llama"; not written for "gemma4"
  std::vector<std::string> tokens;       // tokenizer.ggml.tokens, indexed by id
  std::vector<float> scores;             // tokenizer.ggml.scores, one per token
  std::vector<int32_t> token_type;       // tokenizer.ggml.token_type (GgufTokenType), one per token
  std::vector<std::string> merges;       // tokenizer.ggml.merges, "left right" by rank ("gemma4")
  int32_t bos_id = -1;                   // tokenizer.ggml.bos_token_id
  int32_t eos_id = -1;                   // tokenizer.ggml.eos_token_id
  int32_t unknown_id = -1;               // tokenizer.ggml.unknown_token_id
  int32_t padding_id = -1;               // tokenizer.ggml.padding_token_id
  std::optional<bool> add_bos;           // tokenizer.ggml.add_bos_token
  std::optional<bool> add_eos;           // tokenizer.ggml.add_eos_token
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix (false for Gemma)
  std::string chat_template;             // tokenizer.chat_template
};

// Which converter path to reproduce.
enum class GgufTokenizerKind {
  kSentencePiece,  // Gemma 3: model "llama", scores, no merges
  kGemma4,         // Gemma 4: model "gemma4", merges
};

struct GgufTokenizerExportOptions {
  GgufTokenizerKind kind = GgufTokenizerKind::kSentencePiece;
  // config.json's vocab_size (the embedding rows; 262208 for Gemma 3 4B, 262144 for 1B). Ids
  // from the tokenizer's size up to it become "[PAD<id>]" UNUSED tokens, and added tokens past it
  // are left out (Gemma 3 1B's <image_soft_token>), as _create_vocab_sentencepiece does; any
  // other token past it is kConfig. 0: the tokenizer's own size (what Gemma4Model writes).
  int32_t vocab_size = 0;
  // From tokenizer_config.json (the Tokenizer does not keep them): exportGgufTokenizerDir fills
  // them in.
  std::string chat_template;
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
};

// `tok` (loaded from tokenizer.json and tokenizer_config.json) as the converter would write it.
// kConfig when the tokenizer cannot be written faithfully: merges that the scores cannot
// express (kSentencePiece), a merge part containing a space (kGemma4), a vocab_size that leaves
// out a token that is not an added token.
api::StatusOr<GgufTokenizerData> exportGgufTokenizer(const Tokenizer& tok,
                                                     const GgufTokenizerExportOptions& options);

// Loads DIR/tokenizer.json and DIR/tokenizer_config.json (the way Tokenizer::loadDir does) and
// exports them, with chat_template, add_bos_token and add_eos_token taken from the config when
// `options` leaves them unset. Errors are the loader's (kIo, kConfig) or exportGgufTokenizer's.
api::StatusOr<GgufTokenizerData> exportGgufTokenizerDir(const std::string& dir,
                                                        GgufTokenizerExportOptions options = {});

// What importGgufTokenizer gives: the tokenizer and what GGUF says around it.
struct GgufTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string chat_template;  // tokenizer.chat_template, empty when absent
  bool add_bos = true;        // tokenizer.ggml.add_bos_token (llama.cpp's default when absent)
  bool add_eos = false;       // tokenizer.ggml.add_eos_token
};

// The tokenizer from GGUF metadata; it encodes and decodes exactly as the tokenizer.json loader
// does for the same tokenizer (see the top of this file for the one `special` difference).
// Errors are kConfig and name `source` and the key: an unknown or unsupported model kind ("gpt2"
// byte-level BPE, "bert", ...), arrays of different lengths, an id out of range, a token type
// outside 0..6, a merge that is not two tokens of the vocab, add_space_prefix not false,
// scores missing for "llama".
api::StatusOr<GgufTokenizer> importGgufTokenizer(const GgufTokenizerData& data,
                                                 std::string_view source);

}  // namespace engine
