// engine::Tokenizer against the JavaScript reference (fixtures from
// tests/tools/gen_tokenizer_fixtures.mjs) and on small synthetic tokenizer.json files.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer_internal.h"
#include "gemma_tokenizer_fixture.h"

namespace engine {
namespace {

using ::engine::testing::decodedForm;
using ::engine::testing::fixturePath;
using ::engine::testing::hexToBytes;
using ::engine::testing::readJsonl;
using Json = nlohmann::json;

std::vector<int32_t> idsOf(const Json& j) { return j.get<std::vector<int32_t>>(); }

// ---- the real Gemma 3 tokenizer ----------------------------------------------------------------

TEST(Tokenizer, MatchesReferenceIdsOnFixtures) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto rows = readJsonl(fixturePath("tokenizer/encode.jsonl"));
  ASSERT_GE(rows.size(), 400u) << "fixtures missing: run tests/tools/gen_tokenizer_fixtures.mjs";
  int mismatches = 0;
  for (const Json& row : rows) {
    std::string text = row["text"];
    std::vector<int32_t> got = tok->encode(text, /*add_bos=*/false);
    if (got != idsOf(row["ids"])) {
      ++mismatches;
      ADD_FAILURE() << "category " << row["category"] << ", text " << Json(text).dump()
                    << "\n  expected " << row["ids"].dump() << "\n  got      " << Json(got).dump();
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Tokenizer, RoundTripsEveryFixtureText) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  for (const Json& row : readJsonl(fixturePath("tokenizer/encode.jsonl"))) {
    std::string text = row["text"];
    EXPECT_EQ(tok->decode(idsOf(row["ids"]), /*skip_special=*/false), decodedForm(text));
  }
}

TEST(Tokenizer, InvalidUtf8IsEncodedAsTheReplacedText) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto rows = readJsonl(fixturePath("tokenizer/invalid_utf8.jsonl"));
  ASSERT_GE(rows.size(), 30u);
  for (const Json& row : rows) {
    std::string bytes = hexToBytes(row["hex"]);
    std::string replaced = row["replaced"];
    EXPECT_FALSE(isValidUtf8(bytes) && bytes != replaced) << row["hex"];
    EXPECT_EQ(sanitizeUtf8(bytes), replaced) << "hex " << row["hex"];
    EXPECT_EQ(tok->encode(bytes, false), idsOf(row["ids"])) << "hex " << row["hex"];
  }
}

TEST(Tokenizer, DecodeMatchesReference) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto rows = readJsonl(fixturePath("tokenizer/decode.jsonl"));
  ASSERT_GE(rows.size(), 100u);
  for (const Json& row : rows) {
    std::vector<int32_t> ids = idsOf(row["ids"]);
    std::string expected = row["text"];
    EXPECT_EQ(tok->decode(ids, row["skip_special"].get<bool>()), expected)
        << "ids " << row["ids"].dump() << " skip_special " << row["skip_special"];
  }
}

TEST(Tokenizer, DecodeReplacesIllFormedByteRuns) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto b = [&](int byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    return *tok->idOf(name);
  };
  std::vector<int32_t> euro = {b(0xE2), b(0x82), b(0xAC)};
  EXPECT_EQ(tok->decode(euro, false), "\xE2\x82\xAC");
  std::vector<int32_t> cut = {b(0xE2), b(0x82), 9259};  // "€" cut short, then "Hello"
  EXPECT_EQ(tok->decode(cut, false), "\xEF\xBF\xBDHello");
  std::vector<int32_t> stray = {b(0x80), b(0x41)};
  EXPECT_EQ(tok->decode(stray, false),
            "\xEF\xBF\xBD"
            "A");
}

TEST(Tokenizer, SpecialIdsAndLookups) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  EXPECT_EQ(tok->vocabSize(), 262145);
  EXPECT_EQ(tok->bosId(), 2);
  EXPECT_EQ(tok->eosId(), 106);  // tokenizer_config.json: eos_token <end_of_turn>
  EXPECT_EQ(tok->endOfTurnId(), 106);
  EXPECT_EQ(tok->padId(), 0);
  EXPECT_EQ(tok->unkId(), 3);
  EXPECT_EQ(tok->idOf("<start_of_turn>"), 105);
  EXPECT_EQ(tok->idOf("<image_soft_token>"), 262144);
  EXPECT_EQ(tok->idOf("Hello"), 9259);
  EXPECT_EQ(tok->idOf("no such piece at all"), std::nullopt);
  EXPECT_EQ(tok->tokenText(9259), "Hello");
  EXPECT_EQ(tok->tokenText(26352), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok->decodedPiece(26352), " Hello");
  EXPECT_EQ(tok->tokenText(-1), "");
  EXPECT_EQ(tok->tokenText(999999), "");
  EXPECT_TRUE(tok->isSpecial(2));
  EXPECT_TRUE(tok->isSpecial(106));
  EXPECT_TRUE(tok->isSpecial(262144));
  EXPECT_FALSE(tok->isSpecial(4));  // <mask> is an added token but not special
  EXPECT_FALSE(tok->isSpecial(9259));
  EXPECT_FALSE(tok->isSpecial(-5));
  EXPECT_EQ(tok->byteValue(238 + 0x41), 0x41);
  EXPECT_EQ(tok->byteValue(9259), -1);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{2, 9259, 106}, true), "Hello");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{2, 9259, 106}, false), "<bos>Hello<end_of_turn>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{9259, 300000}, false), "Hello<unk>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{9259, 300000}, true), "Hello");
}

TEST(Tokenizer, AddsBosExactlyOnce) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  EXPECT_EQ(tok->encode("Hello", true), (std::vector<int32_t>{2, 9259}));
  EXPECT_EQ(tok->encode("Hello", false), (std::vector<int32_t>{9259}));
  EXPECT_EQ(tok->encode("", true), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("", false), (std::vector<int32_t>{}));
  // A rendered chat template starts with the text "<bos>" (gemma-spec §5.4).
  EXPECT_EQ(tok->encode("<bos>Hello", true), (std::vector<int32_t>{2, 9259}));
  EXPECT_EQ(tok->encode("<bos>Hello", false), (std::vector<int32_t>{2, 9259}));
  EXPECT_EQ(tok->encode("<bos><bos>", false), (std::vector<int32_t>{2, 2}));
}

TEST(Tokenizer, LongTextEqualsItsLinesJoinedByNewlineTokens) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  // "\n" is an added token, so lines encode independently: a 100 KB document must give exactly
  // the per-line ids joined by the newline id. This exercises the large-input path and the cache.
  auto rows = readJsonl(fixturePath("tokenizer/encode.jsonl"));
  std::string doc;
  std::vector<int32_t> expected;
  const int32_t newline = *tok->idOf("\n");
  while (doc.size() < 100 * 1024) {
    for (const Json& row : rows) {
      std::string text = row["text"];
      if (text.empty() || text.find('\n') != std::string::npos) continue;
      if (!doc.empty()) {
        doc += '\n';
        expected.push_back(newline);
      }
      doc += text;
      auto ids = idsOf(row["ids"]);
      expected.insert(expected.end(), ids.begin(), ids.end());
    }
  }
  EXPECT_EQ(tok->encode(doc, false), expected);
  EXPECT_EQ(tok->decode(expected, false), decodedForm(doc));
}

TEST(Tokenizer, EncodesConcurrently) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto rows = readJsonl(fixturePath("tokenizer/encode.jsonl"));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = static_cast<size_t>(t); i < rows.size(); i += 2) {
          if (tok->encode(rows[i]["text"].get<std::string>(), false) != idsOf(rows[i]["ids"])) {
            ++failures[static_cast<size_t>(t)];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(Tokenizer, EncodesArbitraryBytes) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  std::mt19937 rng(42);
  const std::string alphabet[] = {
      "a",    " ",        "\n",       "<",    "<bos>", "\xE2\x96\x81", "\xC3",
      "\xA9", "\xF0\x9F", "\x98\x80", "\xFF", "\t",    "\xE4\xB8\xAD", "\x01"};
  std::uniform_int_distribution<size_t> pick(0, std::size(alphabet) - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes;
    int n = trial % 40;
    for (int i = 0; i < n; ++i) {
      if (trial % 2) {
        bytes += alphabet[pick(rng)];
      } else {
        bytes += static_cast<char>(byte(rng));
      }
    }
    std::vector<int32_t> ids = tok->encode(bytes, false);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocabSize());
    ASSERT_EQ(tok->decode(ids, false), decodedForm(sanitizeUtf8(bytes))) << "trial " << trial;
  }
}

// ---- UTF-8 helpers ------------------------------------------------------------------------------

TEST(Utf8, SanitizeReplacesMaximalIllFormedSubsequences) {
  EXPECT_EQ(sanitizeUtf8("abc"), "abc");
  EXPECT_EQ(sanitizeUtf8("\x80"), "\xEF\xBF\xBD");
  EXPECT_EQ(sanitizeUtf8("\xE2\x82"), "\xEF\xBF\xBD");              // truncated: one
  EXPECT_EQ(sanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: two
  EXPECT_EQ(sanitizeUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(sanitizeUtf8("a\xF0\x9F\x98"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_TRUE(isValidUtf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(isValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

TEST(Utf8, NonFinalAppendKeepsAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(appendUtf8Lossy(out, "a\xE2\x82", /*final=*/false), 1u);
  EXPECT_EQ(out, "a");
  out.clear();
  EXPECT_EQ(appendUtf8Lossy(out, "\xE2\x28", /*final=*/false), 2u);  // can never complete
  EXPECT_EQ(out, "\xEF\xBF\xBD(");
}

TEST(Utf8, TrimUsesJavaScriptWhitespace) {
  EXPECT_EQ(trimJsWhitespace(" \t\n a b \r\n"), "a b");
  EXPECT_EQ(trimJsWhitespace("\xC2\xA0x\xE3\x80\x80"), "x");      // NBSP, ideographic space
  EXPECT_EQ(trimJsWhitespace("\xEF\xBB\xBFx"), "x");              // BOM is JS whitespace
  EXPECT_EQ(trimJsWhitespace("\x1Cx\xC2\x85"), "\x1Cx\xC2\x85");  // not JS whitespace
  EXPECT_EQ(trimJsWhitespace("   "), "");
  EXPECT_EQ(trimJsWhitespace(" \xE2\x82"), "\xE2\x82");  // stops at ill-formed bytes
}

// ---- synthetic tokenizers -----------------------------------------------------------------------

// A tiny Gemma-shaped tokenizer.json: <pad> <eos> <bos> <unk>, the 256 byte tokens (ids 4..259),
// then a few pieces and merges.
Json tinyTokenizer() {
  Json vocab = Json::object();
  vocab["<pad>"] = 0;
  vocab["<eos>"] = 1;
  vocab["<bos>"] = 2;
  vocab["<unk>"] = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 4 + b;
  }
  const char* pieces[] = {"a",
                          "b",
                          "c",
                          "\xE2\x96\x81",
                          "ab",
                          "abc",
                          "\xE2\x96\x81"
                          "a",
                          "-",
                          "-b",
                          "x",
                          "y"};
  int id = 260;
  for (const char* p : pieces) vocab[p] = id++;  // 260..270
  auto added = [](int id, const char* content, bool special, bool normalized, bool lstrip,
                  bool rstrip) {
    return Json{
        {"id", id},         {"content", content}, {"special", special},  {"normalized", normalized},
        {"lstrip", lstrip}, {"rstrip", rstrip},   {"single_word", false}};
  };
  Json tj;
  tj["version"] = "1.0";
  tj["added_tokens"] = Json::array(
      {added(0, "<pad>", true, false, false, false), added(1, "<eos>", true, false, false, false),
       added(2, "<bos>", true, false, false, false), added(3, "<unk>", true, false, false, false),
       added(271, "<x>", false, false, true, true), added(272, "<y>", false, false, false, false),
       added(273, "x y", false, true, false, false)});
  tj["normalizer"] = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}};
  tj["pre_tokenizer"] = nullptr;
  tj["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       Json::array(
           {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}}})}};
  tj["model"] = {
      {"type", "BPE"},
      {"byte_fallback", true},
      {"fuse_unk", true},
      {"unk_token", "<unk>"},
      {"dropout", nullptr},
      {"vocab", vocab},
      {"merges", Json::array({Json::array({"a", "b"}), Json::array({"ab", "c"}),
                              Json::array({"\xE2\x96\x81", "a"}), Json::array({"-", "b"})})}};
  return tj;
}

std::unique_ptr<Tokenizer> build(const Json& tj, const std::string& config = "") {
  auto tok = Tokenizer::fromJson(tj.dump(), config, "tiny/tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status().toString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

using Ids = std::vector<int32_t>;

TEST(TokenizerSynthetic, MergesLowestRankFirstWithByteFallback) {
  auto tok = build(tinyTokenizer());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode("abc", false), (Ids{265}));
  EXPECT_EQ(tok->encode("ab c", false), (Ids{264, 263, 262}));
  EXPECT_EQ(tok->encode(" a", false), (Ids{266}));
  EXPECT_EQ(tok->encode("\xC3\xA9", false), (Ids{4 + 0xC3, 4 + 0xA9}));  // "é" is not a piece
  EXPECT_EQ(tok->decode(Ids{264, 263, 262, 4 + 0xC3, 4 + 0xA9}, false), "ab c\xC3\xA9");
  EXPECT_EQ(tok->vocabSize(), 274);
  EXPECT_EQ(tok->eosId(), 1);  // no tokenizer_config.json: <eos>
  EXPECT_EQ(tok->endOfTurnId(), -1);
}

TEST(TokenizerSynthetic, AcceptsMergesWrittenAsStrings) {
  Json tj = tinyTokenizer();
  tj["model"]["merges"] = Json::array({"a b", "ab c", "\xE2\x96\x81 a", "- b"});
  auto tok = build(tj);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode("abc a", false), (Ids{265, 266}));
}

TEST(TokenizerSynthetic, AddedTokensHonourStripAndNormalizedFlags) {
  auto tok = build(tinyTokenizer());
  ASSERT_NE(tok, nullptr);
  // <x> has lstrip and rstrip; <y> has neither.
  EXPECT_EQ(tok->encode("a  <x>  b", false), (Ids{260, 271, 261}));
  EXPECT_EQ(tok->encode("a <y> b", false), (Ids{260, 263, 272, 263, 261}));
  // "x y" is normalized: matched after " " became U+2581, so a literal U+2581 matches too.
  EXPECT_EQ(tok->encode("ax yb", false), (Ids{260, 273, 261}));
  EXPECT_EQ(tok->encode("x\xE2\x96\x81y", false), (Ids{273}));
  // Leftmost-longest among added tokens, before BPE.
  EXPECT_EQ(tok->encode("<x><y>", false), (Ids{271, 272}));
  EXPECT_EQ(tok->encode("<bos>", false), (Ids{2}));
}

TEST(TokenizerSynthetic, UnknownCharactersFuseToOneUnkWithoutByteFallback) {
  Json tj = tinyTokenizer();
  tj["model"]["byte_fallback"] = false;
  auto tok = build(tj);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode("a\xC3\xA9\xC3\xA9"
                        "b",
                        false),
            (Ids{260, 3, 261}));
  tj["model"]["fuse_unk"] = false;
  tok = build(tj);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode("a\xC3\xA9\xC3\xA9"
                        "b",
                        false),
            (Ids{260, 3, 3, 261}));
}

TEST(TokenizerSynthetic, SplitPreTokenizerBehaviours) {
  struct Case {
    const char* behavior;
    const char* text;
    Ids ids;
  };
  const Case cases[] = {
      {"MergedWithPrevious", "a-b", {260, 267, 261}},  // words "a-", "b"
      {"MergedWithNext", "a-b", {260, 268}},           // words "a", "-b"
      {"Removed", "a-b", {260, 261}},
      {"Isolated", "a-b", {260, 267, 261}},
      {"Contiguous", "a--b", {260, 267, 267, 261}},
      {"MergedWithNext", "a--b", {260, 267, 268}},  // "a", "-", "-b"
  };
  for (const Case& c : cases) {
    Json tj = tinyTokenizer();
    tj["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"String", "-"}}},
                           {"behavior", c.behavior},
                           {"invert", false}};
    auto tok = build(tj);
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->encode(c.text, false), c.ids) << c.behavior << " " << c.text;
  }
  // Without a pre-tokenizer the whole segment is one word: "-b" merges.
  EXPECT_EQ(build(tinyTokenizer())->encode("a-b", false), (Ids{260, 268}));
}

TEST(TokenizerSynthetic, ConfigNamesSpecialTokens) {
  auto tok = build(tinyTokenizer(),
                   R"({"bos_token": {"content": "<bos>"}, "eos_token": "<y>",
                       "additional_special_tokens": ["<x>"]})");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->eosId(), 272);
  EXPECT_TRUE(tok->isSpecial(271));
  EXPECT_EQ(tok->decode(Ids{260, 271, 261}, true), "ab");
}

// ---- load errors --------------------------------------------------------------------------------

TEST(TokenizerLoad, MissingFileNamesThePath) {
  auto tok = Tokenizer::load("/nonexistent-dir/tokenizer.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(tok.status().message().find("/nonexistent-dir/tokenizer.json"), std::string::npos);
  auto dir = Tokenizer::loadDir("/nonexistent-dir");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("tokenizer.json"), std::string::npos);
}

TEST(TokenizerLoad, ADirectoryIsAnErrorNotACrash) {
  std::string dir = std::filesystem::temp_directory_path().string();
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(tok.status().message().find("directory"), std::string::npos);
}

TEST(TokenizerLoad, BadJsonNamesTheFile) {
  std::string path = (std::filesystem::temp_directory_path() / "sy_bad_tokenizer.json").string();
  { std::ofstream(path) << "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}"; }
  auto tok = Tokenizer::load(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), api::ErrorCode::kConfig);
  EXPECT_NE(tok.status().message().find(path), std::string::npos) << tok.status().message();
  EXPECT_NE(tok.status().message().find("invalid JSON"), std::string::npos);

  auto cfg = Tokenizer::fromJson(tinyTokenizer().dump(), "{not json", "tiny/tokenizer.json");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("tokenizer_config.json"), std::string::npos);
}

TEST(TokenizerLoad, RejectsWhatItCannotRun) {
  struct Case {
    const char* what;
    std::function<void(Json&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {"unigram", [](Json& j) { j["model"]["type"] = "Unigram"; },
       "unsupported model type 'Unigram'"},
      {"no model", [](Json& j) { j.erase("model"); }, "no \"model\""},
      {"no vocab", [](Json& j) { j["model"].erase("vocab"); }, "model.vocab is missing"},
      {"bad merge",
       [](Json& j) {
         j["model"]["merges"].push_back(Json::array({"a", "zz"}));
       },
       "not in the vocab"},
      {"merge string", [](Json& j) { j["model"]["merges"] = Json::array({"ab"}); }, "two tokens"},
      {"vocab value", [](Json& j) { j["model"]["vocab"]["q"] = "x"; }, "integer ids"},
      {"normalizer",
       [](Json& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       },
       "unsupported normalizer type 'NFKC'"},
      {"regex",
       [](Json& j) {
         j["normalizer"]["pattern"] = {{"Regex", " +"}};
       },
       "literal"},
      {"pre_tokenizer",
       [](Json& j) {
         j["pre_tokenizer"] = {{"type", "ByteLevel"}};
       },
       "unsupported pre_tokenizer type 'ByteLevel'"},
      {"decoder",
       [](Json& j) {
         j["decoder"] = {{"type", "Metaspace"}};
       },
       "unsupported decoder type 'Metaspace'"},
      {"added",
       [](Json& j) {
         j["added_tokens"].push_back({{"content", "q"}});
       },
       "integer id"},
      {"top level", [](Json& j) { j = Json::array(); }, "not an object"},
      // Sized every per-id table by one stray id (gigabytes).
      {"far id", [](Json& j) { j["model"]["vocab"]["q"] = 16777215; },
       "token id 16777215 is far beyond"},
      {"far added id",
       [](Json& j) {
         j["added_tokens"].push_back({{"id", 100000}, {"content", "<far>"}});
       },
       "token id 100000"},
      // Each step quadruples the text: 4^16 times longer after the last.
      {"normalizer growth",
       [](Json& j) {
         Json steps = Json::array();
         for (int i = 0; i < 16; ++i) {
           steps.push_back(
               {{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aaaa"}});
         }
         j["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}};
       },
       "normalizer Replace steps can grow a text more than 64 times"},
      {"decoder growth",
       [](Json& j) {
         Json steps = Json::array();
         for (int i = 0; i < 16; ++i) {
           steps.push_back(
               {{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aaaa"}});
         }
         j["decoder"] = {{"type", "Sequence"}, {"decoders", steps}};
       },
       "decoder Replace steps can grow a piece more than 64 times"},
  };
  for (const Case& c : cases) {
    Json tj = tinyTokenizer();
    c.edit(tj);
    auto tok = Tokenizer::fromJson(tj.dump(), "", "tiny/tokenizer.json");
    ASSERT_FALSE(tok.ok()) << c.what;
    EXPECT_EQ(tok.status().code(), api::ErrorCode::kConfig) << c.what;
    EXPECT_NE(tok.status().message().find("tiny/tokenizer.json"), std::string::npos) << c.what;
    EXPECT_NE(tok.status().message().find(c.message), std::string::npos)
        << c.what << ": " << tok.status().message();
  }
  auto cfg = Tokenizer::fromJson(tinyTokenizer().dump(), R"({"bos_token": "<nope>"})", "tiny");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("bos_token '<nope>'"), std::string::npos);
}

// ---- the binary cache of a parsed tokenizer.json ------------------------------------------------

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("sy_tokcache_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Options that cache even the tiny tokenizer, with the fallback cache dir under `dir`.
Tokenizer::LoadOptions cacheOptions(const TempDir& dir, Tokenizer::LoadReport& report) {
  Tokenizer::LoadOptions o;
  o.cache_min_bytes = 0;
  o.cache_dir = dir.file("fallback");
  o.report = &report;
  return o;
}

// What tells two tokenizers apart: every piece, its decoded form and flags, and the encodings of
// a few texts that use merges, byte fallback and added tokens.
void expectSameTokenizer(const Tokenizer& a, const Tokenizer& b) {
  ASSERT_EQ(a.vocabSize(), b.vocabSize());
  for (int32_t id = 0; id < a.vocabSize(); ++id) {
    ASSERT_EQ(a.tokenText(id), b.tokenText(id)) << id;
    ASSERT_EQ(a.decodedPiece(id), b.decodedPiece(id)) << id;
    ASSERT_EQ(a.isSpecial(id), b.isSpecial(id)) << id;
    ASSERT_EQ(a.byteValue(id), b.byteValue(id)) << id;
  }
  EXPECT_EQ(a.bosId(), b.bosId());
  EXPECT_EQ(a.eosId(), b.eosId());
  EXPECT_EQ(a.addedTokens().size(), b.addedTokens().size());
  for (const char* text : {"abc ab c", "<x> x y <y>\xC3\xA9", " a-b"}) {
    EXPECT_EQ(a.encode(text, true), b.encode(text, true)) << text;
  }
}

TEST(TokenizerCache, HitGivesTheReferenceResultsOnFixtures) {
  SY_REQUIRE_GEMMA_TOKENIZER(reference);
  TempDir dir;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::create_symlink(engine::testing::gemmaTokenizerDir() + "/" + name,
                                    dir.file(name));
  }
  Tokenizer::LoadReport report;
  auto cold = Tokenizer::loadDir(dir.path(), cacheOptions(dir, report));
  ASSERT_TRUE(cold.ok()) << cold.status().toString();
  EXPECT_FALSE(report.cache_hit);
  EXPECT_TRUE(report.cache_written);
  EXPECT_EQ(report.cache_path, dir.file("tokenizer.json.switchyard-cache"));
  auto warm = Tokenizer::loadDir(dir.path(), cacheOptions(dir, report));
  ASSERT_TRUE(warm.ok()) << warm.status().toString();
  ASSERT_TRUE(report.cache_hit);
  const Tokenizer& tok = **warm;

  for (const Json& row : readJsonl(fixturePath("tokenizer/encode.jsonl"))) {
    ASSERT_EQ(tok.encode(row["text"].get<std::string>(), false), idsOf(row["ids"])) << row["text"];
  }
  for (const Json& row : readJsonl(fixturePath("tokenizer/invalid_utf8.jsonl"))) {
    ASSERT_EQ(tok.encode(hexToBytes(row["hex"]), false), idsOf(row["ids"])) << row["hex"];
  }
  for (const Json& row : readJsonl(fixturePath("tokenizer/decode.jsonl"))) {
    ASSERT_EQ(tok.decode(idsOf(row["ids"]), row["skip_special"].get<bool>()),
              row["text"].get<std::string>())
        << row["ids"].dump();
  }
  Tokenizer::LoadOptions off;
  off.use_cache = false;
  auto parsed = Tokenizer::loadDir(dir.path(), off);
  ASSERT_TRUE(parsed.ok());
  expectSameTokenizer(**parsed, tok);
  EXPECT_EQ(tok.eosId(), 106);
  EXPECT_EQ(tok.idOf("<start_of_turn>"), 105);
}

TEST(TokenizerCache, ChangedJsonNeverUsesTheStaleCache) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  Json tj = tinyTokenizer();
  spit(path, tj.dump());
  Tokenizer::LoadReport report;
  auto first = Tokenizer::load(path, "", cacheOptions(dir, report));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(report.cache_written);
  EXPECT_EQ((*first)->encode("abc", false), (Ids{265}));

  // The same size and the same mtime, different content: the piece "x" becomes "d".
  auto mtime = std::filesystem::last_write_time(path);
  tj["model"]["vocab"]["d"] = tj["model"]["vocab"]["x"];
  tj["model"]["vocab"].erase("x");
  std::string changed = tj.dump();
  ASSERT_EQ(changed.size(), std::filesystem::file_size(path));
  spit(path, changed);
  std::filesystem::last_write_time(path, mtime);

  auto second = Tokenizer::load(path, "", cacheOptions(dir, report));
  ASSERT_TRUE(second.ok()) << second.status().toString();
  EXPECT_FALSE(report.cache_hit);
  EXPECT_TRUE(report.cache_written);
  auto fresh = Tokenizer::fromJson(changed, "", "changed");
  ASSERT_TRUE(fresh.ok());
  expectSameTokenizer(**fresh, **second);
  EXPECT_EQ((*first)->encode("x", false), (Ids{269}));
  EXPECT_EQ((*second)->encode("x", false), (Ids{4 + 'x'}));  // byte fallback now
  EXPECT_EQ((*second)->encode("d", false), (Ids{269}));

  // A touched but unchanged file: a new mtime also rebuilds, then hits again.
  std::filesystem::last_write_time(path, mtime + std::chrono::seconds(5));
  ASSERT_TRUE(Tokenizer::load(path, "", cacheOptions(dir, report)).ok());
  EXPECT_FALSE(report.cache_hit);
  ASSERT_TRUE(Tokenizer::load(path, "", cacheOptions(dir, report)).ok());
  EXPECT_TRUE(report.cache_hit);
}

// Rewrites a cache file's payload and fixes its header (payload size at byte 40, payload hash at
// byte 48) so that it passes the checksum: what is left to catch is decode's own checking.
std::string resealed(const std::string& file, const std::string& payload) {
  constexpr size_t kHeader = 56;
  std::string out = file.substr(0, kHeader) + payload;
  uint64_t size = payload.size(), hash = Tokenizer::Cache::contentHash(payload);
  std::memcpy(out.data() + 40, &size, 8);
  std::memcpy(out.data() + 48, &hash, 8);
  return out;
}

TEST(TokenizerCache, CorruptOrTruncatedCacheIsIgnoredAndRebuilt) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  spit(path, tinyTokenizer().dump());
  auto reference = Tokenizer::fromJson(tinyTokenizer().dump(), "", "tiny");
  ASSERT_TRUE(reference.ok());
  Tokenizer::LoadReport report;
  ASSERT_TRUE(Tokenizer::load(path, "", cacheOptions(dir, report)).ok());
  const std::string cache_path = report.cache_path;
  const std::string good = slurp(cache_path);
  ASSERT_GT(good.size(), 56u);

  std::vector<std::pair<std::string, std::string>> damaged = {
      {"empty", ""},
      {"garbage", std::string(good.size(), '\x5a')},
      {"header only", good.substr(0, 56)},
      {"truncated", good.substr(0, good.size() / 2)},
      {"one byte short", good.substr(0, good.size() - 1)},
      {"one byte more", good + "x"},
  };
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x20;
  damaged.emplace_back("flipped payload byte", flipped);
  std::string version = good;
  version[8] ^= 1;
  damaged.emplace_back("other format version", version);
  // Checksummed but inconsistent payloads: cut short at many points, and a large bump to the
  // fields after the leading JSON text (counts, lengths, offsets, ids), every second u32.
  const std::string payload = good.substr(56);
  for (size_t cut = 0; cut < payload.size(); cut += 29) {
    damaged.emplace_back("resealed cut at " + std::to_string(cut),
                         resealed(good, payload.substr(0, cut)));
  }
  uint64_t rest_len = 0;
  std::memcpy(&rest_len, payload.data(), 8);
  for (size_t at = 8 + rest_len; at + 4 <= payload.size(); at += 8) {
    std::string p = payload;
    p[at + 2] ^= 0x40;
    damaged.emplace_back("resealed bump at " + std::to_string(at), resealed(good, p));
  }
  int rejected_bumps = 0;
  for (const auto& [what, bytes] : damaged) {
    spit(cache_path, bytes);
    auto tok = Tokenizer::load(path, "", cacheOptions(dir, report));
    ASSERT_TRUE(tok.ok()) << what << ": " << tok.status().toString();
    if (report.cache_hit) {
      // A bump in a piece's bytes, a merge rank or an id that stays in range still decodes:
      // only the checksum, forged here, keeps such a file from being used.
      EXPECT_NE(what.find("bump"), std::string::npos) << what;
      continue;
    }
    rejected_bumps += what.find("bump") != std::string::npos;
    EXPECT_TRUE(report.cache_written) << what;
    expectSameTokenizer(**reference, **tok);
    EXPECT_EQ(slurp(cache_path), good) << what << ": the cache was not rebuilt";
  }
  EXPECT_GT(rejected_bumps, 10);  // decode's own checks caught what the checksum let through
}

TEST(TokenizerCache, UnwritableBesidePathUsesTheCacheDir) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  spit(path, tinyTokenizer().dump());
  // The beside location cannot be written: a directory already holds its name (this works for
  // root too, which ignores permission bits).
  std::filesystem::create_directory(dir.file("tokenizer.json.switchyard-cache"));
  Tokenizer::LoadReport report;
  ASSERT_TRUE(Tokenizer::load(path, "", cacheOptions(dir, report)).ok());
  ASSERT_TRUE(report.cache_written);
  EXPECT_EQ(report.cache_path.rfind(dir.file("fallback") + "/", 0), 0u) << report.cache_path;
  auto tok = Tokenizer::load(path, "", cacheOptions(dir, report));
  ASSERT_TRUE(tok.ok());
  EXPECT_TRUE(report.cache_hit);
  EXPECT_EQ(report.cache_path.rfind(dir.file("fallback") + "/", 0), 0u);
  EXPECT_EQ((*tok)->encode("abc", false), (Ids{265}));
}

TEST(TokenizerCache, ReadOnlyDirUsesTheCacheDir) {
  Tokenizer::LoadReport report;
  TempDir ro, elsewhere;
  const std::string ro_path = ro.file("tokenizer.json");
  spit(ro_path, tinyTokenizer().dump());
  std::filesystem::permissions(ro.path(), std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::remove);
  if (::access(ro.path().c_str(), W_OK) == 0) {
    GTEST_SKIP() << "running as root, which writes anyway (the test above covers the fallback)";
  }
  ASSERT_TRUE(Tokenizer::load(ro_path, "", cacheOptions(elsewhere, report)).ok());
  EXPECT_TRUE(report.cache_written);
  EXPECT_EQ(report.cache_path.rfind(elsewhere.file("fallback") + "/", 0), 0u);
  ASSERT_TRUE(Tokenizer::load(ro_path, "", cacheOptions(elsewhere, report)).ok());
  EXPECT_TRUE(report.cache_hit);
}

TEST(TokenizerCache, ConcurrentLoadsAllSucceedAndLeaveOneValidCache) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  spit(path, tinyTokenizer().dump());
  auto reference = Tokenizer::fromJson(tinyTokenizer().dump(), "", "tiny");
  ASSERT_TRUE(reference.ok());
  std::vector<std::unique_ptr<Tokenizer>> loaded(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < loaded.size(); ++i) {
    threads.emplace_back([&, i] {
      Tokenizer::LoadReport report;
      auto tok = Tokenizer::load(path, "", cacheOptions(dir, report));
      if (tok.ok()) loaded[i] = std::move(tok).value();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& tok : loaded) {
    ASSERT_NE(tok, nullptr);
    expectSameTokenizer(**reference, *tok);
  }
  Tokenizer::LoadReport report;
  ASSERT_TRUE(Tokenizer::load(path, "", cacheOptions(dir, report)).ok());
  EXPECT_TRUE(report.cache_hit);
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST(TokenizerCache, NoCacheForSmallFilesOrWhenOff) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  spit(path, tinyTokenizer().dump());
  Tokenizer::LoadReport report;
  Tokenizer::LoadOptions small = cacheOptions(dir, report);
  small.cache_min_bytes = 1 << 20;  // the default: the tiny file is below it
  ASSERT_TRUE(Tokenizer::load(path, "", small).ok());
  EXPECT_FALSE(report.cache_written);
  Tokenizer::LoadOptions off = cacheOptions(dir, report);
  off.use_cache = false;
  ASSERT_TRUE(Tokenizer::load(path, "", off).ok());
  EXPECT_FALSE(report.cache_written);
  EXPECT_FALSE(std::filesystem::exists(dir.file("tokenizer.json.switchyard-cache")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("fallback")));
}

}  // namespace
}  // namespace engine
