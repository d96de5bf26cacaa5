// GGUF tokenizer metadata: the real Gemma 3 tokenizer exported as llama.cpp's converter writes
// it, imported back, and held to the tokenizer.json tokenizer id for id on the fixture corpus;
// plus small synthetic tokenizers for what the import refuses.
#include "engine/tokenizer_gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gemma_tokenizer_fixture.h"

namespace engine {
namespace {

using ::engine::testing::fixturePath;
using ::engine::testing::gemmaTokenizerDir;
using ::engine::testing::hexToBytes;
using ::engine::testing::readJsonl;
using Json = nlohmann::json;
using Ids = std::vector<int32_t>;

constexpr int32_t kGemma3VocabSize = 262208;  // config.json vocab_size of Gemma 3

int32_t typeOf(const GgufTokenizerData& d, int32_t id) { return d.token_type.at(id); }
constexpr int32_t kType(GgufTokenType t) { return static_cast<int32_t>(t); }

// The Gemma 3 export (as tokenizer.json + tokenizer_config.json give it) and its import, built
// once per run: each walks the 515k merges.
struct Gemma3Gguf {
  GgufTokenizerData data;
  GgufTokenizer imported;
  std::string error;
};
const Gemma3Gguf& gemma3Gguf() {
  static const Gemma3Gguf g = [] {
    Gemma3Gguf out;
    GgufTokenizerExportOptions options;
    options.vocab_size = kGemma3VocabSize;
    auto data = exportGgufTokenizerDir(gemmaTokenizerDir(), options);
    if (!data.ok()) {
      out.error = "export: " + data.status().toString();
      return out;
    }
    out.data = std::move(data).value();
    auto imported = importGgufTokenizer(out.data, "gemma3.gguf");
    if (!imported.ok()) {
      out.error = "import: " + imported.status().toString();
      return out;
    }
    out.imported = std::move(imported).value();
    return out;
  }();
  return g;
}

#define SY_REQUIRE_GEMMA_GGUF(json_tok, gguf) \
  SY_REQUIRE_GEMMA_TOKENIZER(json_tok);       \
  const Gemma3Gguf& gguf = gemma3Gguf();      \
  ASSERT_EQ(gguf.error, "");                  \
  ASSERT_NE(gguf.imported.tokenizer, nullptr)

// Every string the tokenizer fixtures hold (multilingual, whitespace runs, code, emoji, special
// tokens in text, byte fallback, invalid UTF-8), and a few more.
std::vector<std::string> corpus() {
  std::vector<std::string> texts;
  for (const Json& row : readJsonl(fixturePath("tokenizer/encode.jsonl"))) {
    texts.push_back(row["text"]);
  }
  for (const Json& row : readJsonl(fixturePath("tokenizer/invalid_utf8.jsonl"))) {
    texts.push_back(hexToBytes(row["hex"]));
  }
  texts.push_back(std::string(70, ' ') + "x" + std::string(33, '\n') + std::string(40, '\t'));
  texts.push_back("a  b   c    d\t\te\n\n\nf \n \t g  ");
  texts.push_back("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n");
  texts.push_back("<bos><unk><mask>[multimodal]<unused0><unused98><image_soft_token><pad>");
  texts.push_back("\xE2\x96\x81\xE2\x96\x81literal metaspaces\xE2\x96\x81 and  spaces");
  texts.push_back("");
  return texts;
}

// ---- export: what llama.cpp's converter writes --------------------------------------------------

TEST(TokenizerGgufExport, WritesTheConvertersSentencePieceMetadata) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  const GgufTokenizerData& d = g.data;
  EXPECT_EQ(d.model, "llama");
  EXPECT_EQ(d.pre, "default");
  ASSERT_EQ(d.tokens.size(), static_cast<size_t>(kGemma3VocabSize));
  ASSERT_EQ(d.scores.size(), d.tokens.size());
  ASSERT_EQ(d.token_type.size(), d.tokens.size());
  EXPECT_TRUE(d.merges.empty());
  using T = GgufTokenType;
  // added_tokens_decoder: special or special-looking -> CONTROL, the rest USER_DEFINED, -1000.
  for (int32_t id : {0, 1, 2, 3, 4, 6, 105, 106, 262144}) {
    EXPECT_EQ(typeOf(d, id), kType(T::kControl)) << id << " " << d.tokens[id];
    EXPECT_EQ(d.scores[id], -1000.0f) << id;
  }
  EXPECT_EQ(d.tokens[4], "<mask>");
  EXPECT_EQ(d.tokens[6], "<unused0>");
  EXPECT_EQ(d.tokens[5], "[multimodal]");
  EXPECT_EQ(typeOf(d, 5), kType(T::kUserDefined));
  // User-defined U+2581 runs are written with spaces ("pre-normalize user-defined spaces").
  EXPECT_EQ(d.tokens[138], "  ");
  EXPECT_EQ(typeOf(d, 138), kType(T::kUserDefined));
  EXPECT_EQ(d.tokens[107], "\n");
  EXPECT_EQ(typeOf(d, 107), kType(T::kUserDefined));
  // Byte pieces, normal pieces, and the padding up to config.json's vocab_size.
  int32_t newline_byte = *tok->idOf("<0x0A>");
  EXPECT_EQ(typeOf(d, newline_byte), kType(T::kByte));
  int32_t hello = *tok->idOf("\xE2\x96\x81Hello");
  EXPECT_EQ(typeOf(d, hello), kType(T::kNormal));
  EXPECT_EQ(d.tokens[262145], "[PAD262145]");
  EXPECT_EQ(typeOf(d, 262207), kType(T::kUnused));
  EXPECT_EQ(d.scores[262207], -10000.0f);
  // Special ids as tokenizer_config.json names them; its flags and chat template.
  EXPECT_EQ(d.bos_id, 2);
  EXPECT_EQ(d.eos_id, 106);
  EXPECT_EQ(d.unknown_id, 3);
  EXPECT_EQ(d.padding_id, 0);
  EXPECT_EQ(d.add_bos, std::optional<bool>(true));
  EXPECT_EQ(d.add_eos, std::optional<bool>(false));
  EXPECT_EQ(d.add_space_prefix, std::optional<bool>(false));
  std::ifstream in(gemmaTokenizerDir() + "/tokenizer_config.json");
  Json config = Json::parse(in);
  EXPECT_EQ(d.chat_template, config["chat_template"].get<std::string>());
}

TEST(TokenizerGgufExport, ScoresRankMergedPiecesInMergeOrder) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  const GgufTokenizerData& d = g.data;
  // The first merges of tokenizer.json build whitespace runs and "▁t" (one tier, score 0 as
  // SentencePiece gives user-defined pieces); "in" (rank 1396) and "▁a" (rank 1397) follow.
  int32_t t = *tok->idOf("\xE2\x96\x81t");
  int32_t in = *tok->idOf("in");
  int32_t a = *tok->idOf(
      "\xE2\x96\x81"
      "a");
  EXPECT_EQ(d.scores[t], 0.0f);
  EXPECT_GT(d.scores[t], d.scores[in]);
  EXPECT_GT(d.scores[in], d.scores[a]);
  // A single character is produced by no merge: below every merged piece.
  int32_t x = *tok->idOf("x");
  EXPECT_LT(d.scores[x], d.scores[*tok->idOf("\xE2\x96\x81the")]);
  int fractional = 0;
  for (float s : d.scores) fractional += s != static_cast<float>(static_cast<int64_t>(s));
  EXPECT_EQ(fractional, 0);
}

// ---- import: the same tokenizer -----------------------------------------------------------------

TEST(TokenizerGgufImport, EncodesEveryCorpusStringToTheSameIds) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  const Tokenizer& gguf = *g.imported.tokenizer;
  std::vector<std::string> texts = corpus();
  ASSERT_GE(texts.size(), 600u);
  int mismatches = 0;
  for (const std::string& text : texts) {
    for (bool add_bos : {false, true}) {
      Ids want = tok->encode(text, add_bos);
      Ids got = gguf.encode(text, add_bos);
      if (got != want && ++mismatches <= 10) {
        ADD_FAILURE() << "text " << Json(sanitizeUtf8(text)).dump() << "\n  json " << Json(want)
                      << "\n  gguf " << Json(got);
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// `ids` without the CONTROL tokens that only the GGUF tokenizer calls special (<mask>,
// <unusedN>): what decode(skip_special) of the tokenizer.json tokenizer keeps and GGUF drops.
Ids withoutGgufOnlySpecial(const Ids& ids, const Tokenizer& json, const Tokenizer& gguf) {
  Ids out;
  for (int32_t id : ids) {
    if (!(gguf.isSpecial(id) && !json.isSpecial(id))) out.push_back(id);
  }
  return out;
}

TEST(TokenizerGgufImport, DecodesTheSame) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  const Tokenizer& gguf = *g.imported.tokenizer;
  for (const std::string& text : corpus()) {
    Ids ids = tok->encode(text, true);
    EXPECT_EQ(gguf.decode(ids, false), tok->decode(ids, false)) << Json(sanitizeUtf8(text));
    EXPECT_EQ(gguf.decode(ids, true), tok->decode(withoutGgufOnlySpecial(ids, *tok, gguf), true))
        << Json(sanitizeUtf8(text));
  }
  int differing = 0;
  for (const Json& row : readJsonl(fixturePath("tokenizer/decode.jsonl"))) {
    Ids ids = row["ids"].get<Ids>();
    if (!row["skip_special"].get<bool>()) {
      EXPECT_EQ(gguf.decode(ids, false), row["text"].get<std::string>()) << row["ids"].dump();
      continue;
    }
    Ids kept = withoutGgufOnlySpecial(ids, *tok, gguf);
    differing += kept != ids;
    EXPECT_EQ(gguf.decode(ids, true), tok->decode(kept, true)) << row["ids"].dump();
    if (kept == ids) {
      EXPECT_EQ(gguf.decode(ids, true), row["text"].get<std::string>());
    }
  }
  EXPECT_GT(differing, 0);  // the fixtures do hold <unusedN> ids: the filter is exercised
}

TEST(TokenizerGgufImport, KeepsPiecesSpecialIdsAndTheChatTemplate) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  const GgufTokenizer& imported = g.imported;
  const Tokenizer& gguf = *imported.tokenizer;
  EXPECT_EQ(gguf.vocabSize(), kGemma3VocabSize);  // the padding rows are tokens too
  EXPECT_EQ(gguf.tokenText(262150), "");
  EXPECT_EQ(gguf.decode(Ids{262150}, false), "");
  int differing_special = 0;
  for (int32_t id = 0; id < tok->vocabSize(); ++id) {
    ASSERT_EQ(gguf.tokenText(id), tok->tokenText(id)) << id;
    ASSERT_EQ(gguf.byteValue(id), tok->byteValue(id)) << id;
    ASSERT_EQ(gguf.decodedPiece(id), tok->decodedPiece(id)) << id;
    if (gguf.isSpecial(id) != tok->isSpecial(id)) {
      // The one documented difference: CONTROL tokens tokenizer.json does not call special.
      const std::string& t = tok->tokenText(id);
      EXPECT_TRUE(t == "<mask>" || t.rfind("<unused", 0) == 0) << t;
      EXPECT_TRUE(gguf.isSpecial(id));
      ++differing_special;
    }
  }
  EXPECT_EQ(differing_special, 6243);  // <mask> and <unused0>..<unused6241>
  EXPECT_EQ(gguf.bosId(), tok->bosId());
  EXPECT_EQ(gguf.eosId(), tok->eosId());
  EXPECT_EQ(gguf.endOfTurnId(), tok->endOfTurnId());
  EXPECT_EQ(gguf.padId(), tok->padId());
  EXPECT_EQ(gguf.unkId(), tok->unkId());
  EXPECT_EQ(gguf.idOf("<start_of_turn>"), tok->idOf("<start_of_turn>"));
  EXPECT_EQ(gguf.idOf("\xE2\x96\x81\xE2\x96\x81"), tok->idOf("\xE2\x96\x81\xE2\x96\x81"));
  EXPECT_EQ(imported.chat_template, g.data.chat_template);
  EXPECT_NE(imported.chat_template.find("<start_of_turn>"), std::string::npos);
  EXPECT_TRUE(imported.add_bos);
  EXPECT_FALSE(imported.add_eos);
}

TEST(TokenizerGgufImport, ExportOfTheImportIsTheSameMetadata) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  // The scores are derived from the merge ranks, so equal scores mean equal merges.
  GgufTokenizerExportOptions options;
  options.chat_template = g.imported.chat_template;
  options.add_bos = true;
  options.add_eos = false;
  auto again = exportGgufTokenizer(*g.imported.tokenizer, options);
  ASSERT_TRUE(again.ok()) << again.status().toString();
  ASSERT_EQ(again->tokens.size(), g.data.tokens.size());
  int differing = 0;
  for (size_t id = 0; id < g.data.tokens.size(); ++id) {
    bool same = again->tokens[id] == g.data.tokens[id] &&
                again->token_type[id] == g.data.token_type[id] &&
                again->scores[id] == g.data.scores[id];
    if (!same && ++differing <= 5) {
      ADD_FAILURE() << "id " << id << ": " << Json(again->tokens[id]) << " type "
                    << again->token_type[id] << " score " << again->scores[id] << ", first export "
                    << Json(g.data.tokens[id]) << " type " << g.data.token_type[id] << " score "
                    << g.data.scores[id];
    }
  }
  EXPECT_EQ(differing, 0);
  EXPECT_EQ(again->bos_id, g.data.bos_id);
  EXPECT_EQ(again->eos_id, g.data.eos_id);
  EXPECT_EQ(again->chat_template, g.data.chat_template);
}

TEST(TokenizerGgufImport, Gemma4KindCarriesTheMergesItself) {
  SY_REQUIRE_GEMMA_GGUF(tok, g);
  GgufTokenizerExportOptions options;
  options.kind = GgufTokenizerKind::kGemma4;
  auto data = exportGgufTokenizer(*tok, options);
  ASSERT_TRUE(data.ok()) << data.status().toString();
  EXPECT_EQ(data->model, "gemma4");
  EXPECT_EQ(data->merges.size(), 514906u);
  EXPECT_EQ(data->merges[0], std::string(30, '\n') + " \n");
  EXPECT_EQ(data->scores[1000], -1000.0f);
  EXPECT_EQ(data->token_type[*tok->idOf("<end_of_turn>")], kType(GgufTokenType::kControl));
  auto imported = importGgufTokenizer(*data, "gemma4.gguf");
  ASSERT_TRUE(imported.ok()) << imported.status().toString();
  // LlamaHfVocab writes tokenizer.json's non-special added tokens as NORMAL, so the import meets
  // them only through merges: texts that spell one out ("\n", "<unused0>") may differ.
  auto spellsAddedToken = [&](const std::string& text) {
    for (const Tokenizer::AddedToken& t : tok->addedTokens()) {
      if (!t.special && text.find(t.content) != std::string::npos) return true;
    }
    return false;
  };
  int compared = 0, mismatches = 0;
  for (const std::string& text : corpus()) {
    if (spellsAddedToken(sanitizeUtf8(text))) continue;
    ++compared;
    if (imported->tokenizer->encode(text, false) != tok->encode(text, false)) ++mismatches;
  }
  EXPECT_GE(compared, 300);
  EXPECT_EQ(mismatches, 0);
}

// ---- small synthetic tokenizers ----------------------------------------------------------------

// pieces: <pad> <eos> <bos> <unk>, 256 byte pieces, then a b c ▁ ab bc abc ▁a.
Json tinyTokenizerJson(const Json& merges) {
  Json vocab = Json::object();
  const char* specials[] = {"<pad>", "<eos>", "<bos>", "<unk>"};
  for (int i = 0; i < 4; ++i) vocab[specials[i]] = i;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 4 + b;
  }
  int id = 260;
  for (const char* p : {"a", "b", "c", "\xE2\x96\x81", "ab", "bc", "abc",
                        "\xE2\x96\x81"
                        "a"}) {
    vocab[p] = id++;
  }
  Json added = Json::array();
  for (int i = 0; i < 4; ++i) {
    added.push_back(
        {{"id", i}, {"content", specials[i]}, {"special", true}, {"normalized", false}});
  }
  return Json{
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         Json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}}})}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", merges}}}};
}

std::unique_ptr<Tokenizer> tinyTokenizer(const Json& merges) {
  auto tok = Tokenizer::fromJson(tinyTokenizerJson(merges).dump(), "", "tiny/tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status().toString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

// Every split of every piece is a merge, as transformers writes them from SentencePiece scores.
const Json kTinyMerges = Json::array({"b c", "ab c", "a bc", "a b", "\xE2\x96\x81 a"});

TEST(TokenizerGgufSynthetic, RoundTripsASmallTokenizer) {
  auto tok = tinyTokenizer(kTinyMerges);
  ASSERT_NE(tok, nullptr);
  auto data = exportGgufTokenizer(*tok, {});
  ASSERT_TRUE(data.ok()) << data.status().toString();
  EXPECT_EQ(data->tokens.size(), 268u);
  auto imported = importGgufTokenizer(*data, "tiny.gguf");
  ASSERT_TRUE(imported.ok()) << imported.status().toString();
  for (const char* text : {"abc", "ab c", " a", "bca", "cab", "\xC3\xA9 abcabc", "<bos>abc<eos>"}) {
    EXPECT_EQ(imported->tokenizer->encode(text, false), tok->encode(text, false)) << text;
  }
  EXPECT_EQ(tok->encode("abc", false), (Ids{266}));  // "b c" first, then "a bc"
}

TEST(TokenizerGgufSynthetic, RefusesMergesThatScoresCannotExpress) {
  // "abc" also splits as ("a", "bc"), which these merges leave out: SentencePiece scores would
  // bring it back.
  auto tok = tinyTokenizer(Json::array({"b c", "ab c", "a b", "\xE2\x96\x81 a"}));
  ASSERT_NE(tok, nullptr);
  auto data = exportGgufTokenizer(*tok, {});
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(data.status().message().find("SentencePiece scores"), std::string::npos)
      << data.status().message();
}

TEST(TokenizerGgufSynthetic, VocabSizeCutsOnlyAddedTokens) {
  Json tj = tinyTokenizerJson(kTinyMerges);
  tj["added_tokens"].push_back({{"id", 268}, {"content", "<image>"}, {"special", true}});
  auto tok = Tokenizer::fromJson(tj.dump(), "", "tiny/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().toString();
  GgufTokenizerExportOptions options;
  options.vocab_size = 268;  // as Gemma 3 1B: the added <image_soft_token> is past it
  auto cut = exportGgufTokenizer(**tok, options);
  ASSERT_TRUE(cut.ok()) << cut.status().toString();
  EXPECT_EQ(cut->tokens.size(), 268u);
  EXPECT_EQ(cut->scores.size(), 268u);
  EXPECT_EQ(cut->token_type.size(), 268u);
  ASSERT_TRUE(importGgufTokenizer(*cut, "cut.gguf").ok());
  options.vocab_size = 267;  // would leave out the vocab piece "▁a"
  auto too_small = exportGgufTokenizer(**tok, options);
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(too_small.status().message().find("token 267"), std::string::npos)
      << too_small.status().message();
}

// Imports `data` and expects a kConfig error whose message names `needle`.
void expectRefused(const GgufTokenizerData& data, const std::string& needle) {
  auto imported = importGgufTokenizer(data, "bad.gguf");
  ASSERT_FALSE(imported.ok()) << "accepted; wanted an error naming " << needle;
  EXPECT_EQ(imported.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(imported.status().message().find(needle), std::string::npos)
      << imported.status().message();
  EXPECT_NE(imported.status().message().find("bad.gguf"), std::string::npos);
}

TEST(TokenizerGgufSynthetic, BadMetadataIsAConfigErrorNamingTheKey) {
  auto tok = tinyTokenizer(kTinyMerges);
  ASSERT_NE(tok, nullptr);
  auto exported = exportGgufTokenizer(*tok, {});
  ASSERT_TRUE(exported.ok());
  const GgufTokenizerData good = *exported;
  ASSERT_TRUE(importGgufTokenizer(good, "good.gguf").ok());

  GgufTokenizerData d = good;
  d.scores.pop_back();
  expectRefused(d, "tokenizer.ggml.scores has 267 entries");
  d = good;
  d.token_type.push_back(1);
  expectRefused(d, "tokenizer.ggml.token_type");
  d = good;
  d.scores.clear();
  expectRefused(d, "tokenizer.ggml.scores is missing");
  d = good;
  d.tokens.clear();
  expectRefused(d, "tokenizer.ggml.tokens");
  d = good;
  d.bos_id = 268;
  expectRefused(d, "tokenizer.ggml.bos_token_id = 268 is out of range");
  d = good;
  d.eos_id = -7;
  expectRefused(d, "tokenizer.ggml.eos_token_id");
  d = good;
  d.token_type[5] = 9;
  expectRefused(d, "tokenizer.ggml.token_type[5] = 9");
  for (const char* model : {"gpt2", "bert", "t5", ""}) {
    d = good;
    d.model = model;
    expectRefused(d, "tokenizer.ggml.model '" + std::string(model) + "' is not supported");
  }
  d = good;
  d.add_space_prefix.reset();  // llama.cpp's default for "llama" is true
  expectRefused(d, "tokenizer.ggml.add_space_prefix");
  d = good;
  d.model = "gemma4";
  expectRefused(d, "tokenizer.ggml.merges is missing");
  d.merges = {"a b", "b zz"};
  expectRefused(d, "tokenizer.ggml.merges[1] \"b zz\"");
  d.merges = {"ab"};
  expectRefused(d, "tokenizer.ggml.merges[0]");
  d.merges = {"a b"};
  EXPECT_TRUE(importGgufTokenizer(d, "gemma4.gguf").ok());
}

TEST(TokenizerGgufSynthetic, ExportFromADirectoryReadsTheConfig) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sy_tok_gguf_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tinyTokenizerJson(kTinyMerges).dump();
  std::ofstream(dir / "tokenizer_config.json")
      << Json{{"add_bos_token", false}, {"add_eos_token", true}, {"eos_token", "<eos>"}}.dump();
  std::ofstream(dir / "chat_template.jinja") << "{{ bos_token }}{{ messages[0]['content'] }}";
  auto data = exportGgufTokenizerDir(dir.string());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(data.ok()) << data.status().toString();
  EXPECT_EQ(data->add_bos, std::optional<bool>(false));
  EXPECT_EQ(data->add_eos, std::optional<bool>(true));
  EXPECT_EQ(data->chat_template, "{{ bos_token }}{{ messages[0]['content'] }}");
  auto imported = importGgufTokenizer(*data, "dir.gguf");
  ASSERT_TRUE(imported.ok());
  EXPECT_FALSE(imported->add_bos);
  EXPECT_TRUE(imported->add_eos);
  EXPECT_EQ(imported->chat_template, data->chat_template);

  auto missing = exportGgufTokenizerDir((dir / "nowhere").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), api::ErrorCode::kIo);
}

}  // namespace
}  // namespace engine
