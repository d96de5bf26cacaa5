// The cheap text metrics: tokenization (ASCII, CJK, invalid UTF-8), F1 and ROUGE-L against
// hand-computed values, whitespace-insensitive exact match, JSON agreement, and the bounds
// that keep huge or hostile inputs cheap.
#include "quality/text_metrics.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using quality::computeTextMetrics;
using quality::metricTokens;
using Tokens = std::vector<std::string>;

TEST(MetricTokens, LowercasesAsciiWordsAndDropsPunctuation) {
  EXPECT_EQ(metricTokens("Hello, World! It's 42.5% (x_y)"),
            (Tokens{"hello", "world", "it", "s", "42", "5", "x", "y"}));
  EXPECT_EQ(metricTokens(""), Tokens{});
  EXPECT_EQ(metricTokens(" \t\n.,;!?"), Tokens{});
}

TEST(MetricTokens, KeepsNonAsciiLettersInsideWords) {
  // "Café" keeps its é, "Straße" its ß; only ASCII letters are lowercased.
  EXPECT_EQ(metricTokens("Café Straße ΑΒΓ"), (Tokens{"café", "straße", "ΑΒΓ"}));
  // Unicode punctuation and spaces separate: em dash, curly quotes, no-break space, emoji.
  EXPECT_EQ(metricTokens("one\u2014two \u201cthree\u201d\u00a0four\U0001F600five"),
            (Tokens{"one", "two", "three", "four", "five"}));
}

TEST(MetricTokens, SplitsChineseJapaneseAndKoreanIntoCharacters) {
  EXPECT_EQ(metricTokens("我爱北京。Tokyo東京"),
            (Tokens{"我", "爱", "北", "京", "tokyo", "東", "京"}));
  EXPECT_EQ(metricTokens("ひらがなカタ"), (Tokens{"ひ", "ら", "が", "な", "カ", "タ"}));
  EXPECT_EQ(metricTokens("안녕 세계"), (Tokens{"안", "녕", "세", "계"}));
}

TEST(MetricTokens, SkipsInvalidUtf8Bytes) {
  // A stray continuation byte, a byte never valid in UTF-8, an overlong '/' and a sequence
  // cut off at the end: each is dropped as if absent.
  EXPECT_EQ(metricTokens("ab\x80\xFF"
                         "cd ef\xC0\xAFgh \xE4\xB8"),
            (Tokens{"abcd", "efgh"}));
  // An encoded surrogate (ED A0 80) is invalid too.
  EXPECT_EQ(metricTokens("x\xED\xA0\x80y"), (Tokens{"xy"}));
}

TEST(MetricTokens, NeverFailsOnRandomBytes) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 200; ++round) {
    std::string s(static_cast<size_t>(round * 7), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    for (const std::string& t : metricTokens(s)) EXPECT_FALSE(t.empty());
    quality::TextMetrics m = computeTextMetrics(s, s.substr(s.size() / 2));
    EXPECT_GE(m.token_f1, 0);
    EXPECT_LE(m.token_f1, 1);
    EXPECT_GE(m.rouge_l, 0);
    EXPECT_LE(m.rouge_l, 1);
  }
}

TEST(TextMetrics, TokenF1AndRougeLMatchHandComputedValues) {
  // local: the cat sat on the mat (6); cloud: the cat is on the mat today (7).
  // Bag overlap: the x2, cat, on, mat = 5; P = 5/6, R = 5/7, F1 = 10/13.
  // LCS: the cat on the mat = 5, so ROUGE-L is 10/13 as well.
  auto m = computeTextMetrics("The cat sat on the mat.", "the cat is on the mat today");
  EXPECT_FALSE(m.exact_match);
  EXPECT_NEAR(m.token_f1, 10.0 / 13.0, 1e-12);
  EXPECT_NEAR(m.rouge_l, 10.0 / 13.0, 1e-12);
  EXPECT_NEAR(m.length_ratio, 6.0 / 7.0, 1e-12);
  EXPECT_FALSE(m.json_both_parse.has_value());
  EXPECT_FALSE(m.json_agree.has_value());
}

TEST(TextMetrics, RougeLSeesOrderWhereF1DoesNot) {
  // The same bag in reverse: F1 = 1, but the longest common subsequence is one token, so
  // P = R = 1/4.
  auto m = computeTextMetrics("a b c d", "d c b a");
  EXPECT_DOUBLE_EQ(m.token_f1, 1.0);
  EXPECT_NEAR(m.rouge_l, 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(m.length_ratio, 1.0);

  // local a b c d e (5), cloud a x c e b (5): bag overlap a b c e = 4, F1 = 0.8;
  // LCS a c e = 3, ROUGE-L = 0.6.
  auto n = computeTextMetrics("a b c d e", "a x c e b");
  EXPECT_NEAR(n.token_f1, 0.8, 1e-12);
  EXPECT_NEAR(n.rouge_l, 0.6, 1e-12);
}

TEST(TextMetrics, RepeatedTokensCountOncePerOccurrence) {
  // local: a a a (3), cloud: a b (2): overlap 1, P = 1/3, R = 1/2, F1 = 0.4.
  auto m = computeTextMetrics("a a a", "a b");
  EXPECT_NEAR(m.token_f1, 0.4, 1e-12);
  EXPECT_NEAR(m.rouge_l, 0.4, 1e-12);
  EXPECT_NEAR(m.length_ratio, 1.5, 1e-12);
}

TEST(TextMetrics, ExactMatchIgnoresOnlyWhitespaceLayout) {
  EXPECT_TRUE(computeTextMetrics("  Hello\n\n  world \t", "Hello world").exact_match);
  EXPECT_TRUE(computeTextMetrics("a\r\nb", "a b").exact_match);
  EXPECT_FALSE(computeTextMetrics("Hello world", "hello world").exact_match);
  EXPECT_FALSE(computeTextMetrics("Hello world", "Hello world.").exact_match);
  EXPECT_FALSE(computeTextMetrics("ab", "a b").exact_match);
}

TEST(TextMetrics, EmptySides) {
  auto both = computeTextMetrics("", "  \n");
  EXPECT_TRUE(both.exact_match);
  EXPECT_DOUBLE_EQ(both.token_f1, 1);
  EXPECT_DOUBLE_EQ(both.rouge_l, 1);
  EXPECT_DOUBLE_EQ(both.length_ratio, 0);

  auto local_empty = computeTextMetrics("", "some answer");
  EXPECT_FALSE(local_empty.exact_match);
  EXPECT_DOUBLE_EQ(local_empty.token_f1, 0);
  EXPECT_DOUBLE_EQ(local_empty.rouge_l, 0);
  EXPECT_DOUBLE_EQ(local_empty.length_ratio, 0);

  auto cloud_empty = computeTextMetrics("some answer", "");
  EXPECT_DOUBLE_EQ(cloud_empty.token_f1, 0);
  EXPECT_DOUBLE_EQ(cloud_empty.rouge_l, 0);
  EXPECT_DOUBLE_EQ(cloud_empty.length_ratio, 0) << "no cloud tokens: the ratio is 0";

  // Punctuation only is no tokens at all.
  auto punct = computeTextMetrics("...", "!!!");
  EXPECT_FALSE(punct.exact_match);
  EXPECT_DOUBLE_EQ(punct.token_f1, 1);
}

TEST(TextMetrics, JsonAgreesRegardlessOfKeyOrderAndLayout) {
  auto m = computeTextMetrics(R"({"name": "Ada", "tags": [1, 2], "nested": {"x": 1, "y": 2}})",
                              "\n {\"nested\":{\"y\":2,\"x\":1},\"tags\":[1,2],\"name\":\"Ada\"}");
  ASSERT_TRUE(m.json_both_parse.has_value());
  ASSERT_TRUE(m.json_agree.has_value());
  EXPECT_TRUE(*m.json_both_parse);
  EXPECT_TRUE(*m.json_agree);
  EXPECT_FALSE(m.exact_match);
  EXPECT_DOUBLE_EQ(m.token_f1, 1.0);
}

TEST(TextMetrics, JsonDisagreesOnDifferentValuesOrArrayOrder) {
  auto values = computeTextMetrics(R"({"a": 1})", R"({"a": 2})");
  EXPECT_EQ(values.json_both_parse, true);
  EXPECT_EQ(values.json_agree, false);
  auto order = computeTextMetrics("[1, 2]", "[2, 1]");
  EXPECT_EQ(order.json_both_parse, true);
  EXPECT_EQ(order.json_agree, false);
  auto numbers = computeTextMetrics("[1]", "[1.0]");
  EXPECT_EQ(numbers.json_agree, true) << "1 and 1.0 are the same JSON number";
}

TEST(TextMetrics, FencedJsonIsUnwrapped) {
  auto m = computeTextMetrics("```json\n{\"x\": [true, null]}\n```",
                              "  ```\n{\"x\":[true,null]}\n```\n");
  EXPECT_EQ(m.json_both_parse, true);
  EXPECT_EQ(m.json_agree, true);
  auto upper = computeTextMetrics("```JSON\n[1,2]\n```", "[1,2]");
  EXPECT_EQ(upper.json_agree, true);
  // A fence of another language is not JSON, and prose is not JSON: neither side looks
  // like JSON, so the JSON fields stay unset.
  auto other = computeTextMetrics("```python\n{1: 2}\n```", "plain words");
  EXPECT_FALSE(other.json_both_parse.has_value());
  EXPECT_FALSE(other.json_agree.has_value());
}

TEST(TextMetrics, JsonAgainstProseOrBrokenJson) {
  auto prose = computeTextMetrics(R"({"answer": 4})", "The answer is 4.");
  EXPECT_EQ(prose.json_both_parse, false);
  EXPECT_EQ(prose.json_agree, false);
  auto prose_local = computeTextMetrics("It is [probably] 4", R"({"answer": 4})");
  EXPECT_EQ(prose_local.json_both_parse, false) << "starts with I, but the cloud side is JSON";
  auto broken = computeTextMetrics(R"({"answer": 4)", R"({"answer": 4})");
  EXPECT_EQ(broken.json_both_parse, false);
  EXPECT_EQ(broken.json_agree, false);
  auto trailing = computeTextMetrics("{\"a\": 1} and more words", "{\"a\": 1}");
  EXPECT_EQ(trailing.json_both_parse, false) << "prose after the value is not JSON";
  auto bad_utf8 = computeTextMetrics("[\"\xFF\"]", "[\"x\"]");
  EXPECT_EQ(bad_utf8.json_both_parse, false);
}

TEST(TextMetrics, DeeplyNestedJsonCountsAsUnparsedInsteadOfRecursing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto m = computeTextMetrics(deep, deep);
  EXPECT_EQ(m.json_both_parse, false);
  EXPECT_EQ(m.json_agree, false);
  EXPECT_TRUE(m.exact_match);

  const std::string ok =
      std::string(quality::kMaxJsonDepth, '[') + std::string(quality::kMaxJsonDepth, ']');
  EXPECT_EQ(computeTextMetrics(ok, ok).json_agree, true);
}

TEST(TextMetrics, RougeLComparesOnlyTheLeadingTokensOfEachSide) {
  std::string head;
  for (size_t i = 0; i < quality::kRougeMaxTokens; ++i) head += "w" + std::to_string(i) + " ";
  // Identical for the first kRougeMaxTokens tokens, different after: ROUGE-L does not see
  // the tails, F1 does.
  auto m = computeTextMetrics(head + "alpha beta gamma", head + "delta");
  EXPECT_DOUBLE_EQ(m.rouge_l, 1.0);
  EXPECT_LT(m.token_f1, 1.0);
  EXPECT_NEAR(m.length_ratio, (quality::kRougeMaxTokens + 3.0) / (quality::kRougeMaxTokens + 1.0),
              1e-12);
}

TEST(TextMetrics, HandlesMegabyteAnswers) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> word(0, 999);
  std::string local;
  std::string cloud;
  while (local.size() < (1 << 20)) local += "tok" + std::to_string(word(rng)) + ' ';
  while (cloud.size() < (1 << 20)) cloud += "tok" + std::to_string(word(rng)) + ", ";
  auto m = computeTextMetrics(local, cloud);
  EXPECT_FALSE(m.exact_match);
  EXPECT_GT(m.token_f1, 0.9) << "same vocabulary, similar counts";
  EXPECT_GT(m.rouge_l, 0);
  EXPECT_LT(m.rouge_l, 1);
  EXPECT_GT(m.length_ratio, 1.0) << "the cloud text spends more bytes per token";

  auto same = computeTextMetrics(local, local);
  EXPECT_TRUE(same.exact_match);
  EXPECT_DOUBLE_EQ(same.token_f1, 1.0);
  EXPECT_DOUBLE_EQ(same.rouge_l, 1.0);
  EXPECT_DOUBLE_EQ(same.length_ratio, 1.0);
}

}  // namespace
