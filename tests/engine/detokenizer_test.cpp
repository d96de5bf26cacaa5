// engine::StreamingDetokenizer: fed one id at a time it must produce exactly Tokenizer::decode's
// text, and never a broken UTF-8 sequence in between.
#include "engine/detokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "gemma_tokenizer_fixture.h"

namespace engine {
namespace {

using ::engine::testing::fixturePath;
using ::engine::testing::readJsonl;
using Ids = std::vector<int32_t>;

// Streams `ids`, checking that every delta is well-formed UTF-8; returns the whole text.
std::string stream(const Tokenizer& tok, const Ids& ids, bool skip_special) {
  StreamingDetokenizer detok(tok, skip_special);
  std::string text;
  for (int32_t id : ids) {
    std::string delta = detok.feed(id);
    EXPECT_TRUE(isValidUtf8(delta)) << "delta after id " << id;
    text += delta;
  }
  std::string rest = detok.flush();
  EXPECT_TRUE(isValidUtf8(rest));
  EXPECT_EQ(detok.pendingBytes(), 0u);
  return text + rest;
}

int32_t byteId(const Tokenizer& tok, int byte) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", byte);
  return *tok.idOf(name);
}

TEST(StreamingDetokenizer, MatchesReferenceDecodeFixtures) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto rows = readJsonl(fixturePath("tokenizer/decode.jsonl"));
  ASSERT_GE(rows.size(), 100u);
  for (const auto& row : rows) {
    Ids ids = row["ids"].get<Ids>();
    bool skip = row["skip_special"];
    EXPECT_EQ(stream(*tok, ids, skip), row["text"].get<std::string>()) << row["ids"].dump();
  }
}

TEST(StreamingDetokenizer, ReproducesEveryEncodeFixture) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  for (const auto& row : readJsonl(fixturePath("tokenizer/encode.jsonl"))) {
    EXPECT_EQ(stream(*tok, row["ids"].get<Ids>(), false),
              ::engine::testing::decodedForm(row["text"].get<std::string>()));
  }
}

TEST(StreamingDetokenizer, HoldsBackIncompleteByteSequences) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  StreamingDetokenizer detok(*tok);
  EXPECT_EQ(detok.feed(byteId(*tok, 0xE2)), "");
  EXPECT_EQ(detok.feed(byteId(*tok, 0x82)), "");
  EXPECT_EQ(detok.pendingBytes(), 2u);
  EXPECT_EQ(detok.feed(byteId(*tok, 0xAC)), "\xE2\x82\xAC");  // "€"
  EXPECT_EQ(detok.feed(byteId(*tok, 0xF0)), "");
  EXPECT_EQ(detok.feed(byteId(*tok, 0x9F)), "");
  EXPECT_EQ(detok.feed(byteId(*tok, 0x98)), "");
  EXPECT_EQ(detok.feed(byteId(*tok, 0x80)), "\xF0\x9F\x98\x80");  // "😀"
  EXPECT_EQ(detok.feed(9259), "Hello");
  EXPECT_EQ(detok.flush(), "");
}

TEST(StreamingDetokenizer, ReplacesBrokenSequencesAsSoonAsTheyAreKnown) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  StreamingDetokenizer detok(*tok);
  EXPECT_EQ(detok.feed(byteId(*tok, 0xE2)), "");
  // 0x41 cannot continue the sequence: U+FFFD for E2, then "A", at once.
  EXPECT_EQ(detok.feed(byteId(*tok, 0x41)),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(detok.feed(byteId(*tok, 0xF0)), "");
  EXPECT_EQ(detok.feed(26352), "\xEF\xBF\xBD Hello");  // a normal token ends the run
  EXPECT_EQ(detok.feed(byteId(*tok, 0xC3)), "");
  EXPECT_EQ(detok.flush(), "\xEF\xBF\xBD");  // cut off at the end of the stream
  // Reusable after flush.
  EXPECT_EQ(detok.feed(byteId(*tok, 0xC3)), "");
  EXPECT_EQ(detok.feed(byteId(*tok, 0xA9)), "\xC3\xA9");
}

TEST(StreamingDetokenizer, SkipsSpecialTokensOnlyWhenAsked) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  Ids ids = {2, 105, 2364, 107, 9259, 106};
  EXPECT_EQ(stream(*tok, ids, true), "user\nHello");
  EXPECT_EQ(stream(*tok, ids, false), "<bos><start_of_turn>user\nHello<end_of_turn>");
  // A special token between byte tokens does not split the byte run when skipped.
  Ids split = {byteId(*tok, 0xE2), 106, byteId(*tok, 0x82), byteId(*tok, 0xAC)};
  EXPECT_EQ(stream(*tok, split, true), tok->decode(split, true));
  EXPECT_EQ(stream(*tok, split, false), tok->decode(split, false));
}

TEST(StreamingDetokenizer, AgreesWithDecodeOnRandomSequences) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_int_distribution<int> any_byte(0, 255);
  std::uniform_int_distribution<int32_t> any_id(0, tok->vocabSize() + 10);
  const Ids multi = {byteId(*tok, 0xE4), byteId(*tok, 0xBD), byteId(*tok, 0xA0)};
  for (int trial = 0; trial < 500; ++trial) {
    Ids ids;
    int n = 1 + trial % 24;
    for (int i = 0; i < n; ++i) {
      int k = kind(rng);
      if (k < 5) {
        ids.push_back(byteId(*tok, any_byte(rng)));
      } else if (k < 7) {
        ids.insert(ids.end(), multi.begin(), multi.end());
      } else {
        ids.push_back(any_id(rng));  // includes specials and out-of-range ids
      }
    }
    for (bool skip : {false, true}) {
      ASSERT_EQ(stream(*tok, ids, skip), tok->decode(ids, skip)) << "trial " << trial;
    }
  }
}

}  // namespace
}  // namespace engine
