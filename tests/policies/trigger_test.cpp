#include "policies/trigger.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace policies {
namespace {

Trigger parseOk(std::string_view text) {
  auto t = Trigger::parse(text);
  EXPECT_TRUE(t.ok()) << text << ": " << t.status().message();
  if (!t.ok()) return *Trigger::parse("false");
  return std::move(t).value();
}

// The error message of parsing `text`, which must fail with kConfig.
std::string parseError(std::string_view text) {
  auto t = Trigger::parse(text);
  if (t.ok()) {
    ADD_FAILURE() << "'" << text << "' parsed as " << t->describe();
    return "";
  }
  EXPECT_EQ(t.status().code(), api::ErrorCode::kConfig) << t.status().message();
  return t.status().message();
}

Truth eval(std::string_view text, const TriggerVars& vars) { return parseOk(text).evaluate(vars); }

constexpr Truth T = Truth::kTrue;
constexpr Truth F = Truth::kFalse;
constexpr Truth U = Truth::kUnknown;

// ---- parsing ---------------------------------------------------------------------------------

TEST(Trigger, VariablesAreTheDocumentedList) {
  const std::vector<std::string_view> expected = {
      "confidence",  "complexity",     "confidence_rank", "complexity_rank",
      "prompt_tokens", "max_tokens",   "budget_used",     "local_queue_ms",
      "has_tools",   "has_images",     "turns",           "stream"};
  EXPECT_EQ(Trigger::variables(), expected);
}

TEST(Trigger, AndBindsTighterThanOrAndNotTighterThanAnd) {
  // a OR (b AND c): true with a alone; (a OR b) AND c would be false.
  const TriggerVars only_a{.confidence = 0.1, .complexity = 0, .has_tools = 0};
  EXPECT_EQ(eval("confidence < 0.5 OR complexity > 0.9 AND has_tools", only_a), T);
  EXPECT_EQ(eval("(confidence < 0.5 OR complexity > 0.9) AND has_tools", only_a), F);
  // (NOT a) AND b: false when b is; NOT (a AND b) would be true.
  EXPECT_EQ(eval("NOT has_tools AND stream", TriggerVars{.has_tools = 0, .stream = 0}), F);
  EXPECT_EQ(eval("NOT (has_tools AND stream)", TriggerVars{.has_tools = 0, .stream = 0}), T);
}

TEST(Trigger, DescribeKeepsOnlyTheParenthesesPrecedenceNeeds) {
  EXPECT_EQ(parseOk("((confidence < 0.5)) OR (complexity > 0.9 AND (has_tools))").describe(),
            "confidence < 0.5 OR complexity > 0.9 AND has_tools");
  EXPECT_EQ(parseOk("(NOT has_tools) AND stream").describe(), "NOT has_tools AND stream");
  EXPECT_EQ(parseOk("(has_tools OR stream) AND turns >= 3").describe(),
            "(has_tools OR stream) AND turns >= 3");
  EXPECT_EQ(parseOk("NOT (has_tools AND stream) OR NOT (turns > 1)").describe(),
            "NOT (has_tools AND stream) OR NOT turns > 1");
  EXPECT_EQ(parseOk("NOT NOT has_images").describe(), "NOT NOT has_images");
}

TEST(Trigger, DescribeOfTheDeepestExpressionParsesBack) {
  // 64 NOTs is the most the parser takes; describing it must not add a level.
  std::string nots;
  for (int i = 0; i < 64; ++i) nots += "!";
  for (std::string text : {nots + "false", nots + "turns > 1", nots + "(stream AND has_tools)"}) {
    auto t = Trigger::parse(text);
    if (!t.ok()) continue;  // the last one is 65 deep: refused, which is fine
    auto again = Trigger::parse(t->describe());
    ASSERT_TRUE(again.ok()) << text << " -> " << t->describe() << ": " << again.status().toString();
    EXPECT_EQ(again->describe(), t->describe());
  }
}

TEST(Trigger, ChainsOfOneOperatorAreFlat) {
  EXPECT_EQ(parseOk("has_tools OR stream OR has_images").describe(),
            "has_tools OR stream OR has_images");
  EXPECT_EQ(parseOk("(has_tools AND stream) AND turns != 1").describe(),
            "has_tools AND stream AND turns != 1");
}

TEST(Trigger, KeywordsAreCaseInsensitiveAndHaveSymbolicSynonyms) {
  const std::string expected = "confidence < 0.5 OR NOT has_tools AND stream";
  for (std::string_view text :
       {"confidence < 0.5 OR NOT has_tools AND stream",
        "confidence < 0.5 or not has_tools and stream",
        "confidence < 0.5 Or Not has_tools aNd stream", "confidence < 0.5 || !has_tools && stream",
        "confidence<0.5||!has_tools&&stream"}) {
    EXPECT_EQ(parseOk(text).describe(), expected) << text;
  }
}

TEST(Trigger, ParsesEveryComparisonAndNumberForm) {
  EXPECT_EQ(parseOk("turns < 1").describe(), "turns < 1");
  EXPECT_EQ(parseOk("turns <= 1").describe(), "turns <= 1");
  EXPECT_EQ(parseOk("turns > 1").describe(), "turns > 1");
  EXPECT_EQ(parseOk("turns >= 1").describe(), "turns >= 1");
  EXPECT_EQ(parseOk("turns == 1").describe(), "turns == 1");
  EXPECT_EQ(parseOk("turns != 1").describe(), "turns != 1");
  EXPECT_EQ(parseOk("budget_used > -1").describe(), "budget_used > -1");
  EXPECT_EQ(parseOk("budget_used > +2.5").describe(), "budget_used > 2.5");
  EXPECT_EQ(parseOk("budget_used>.5").describe(), "budget_used > 0.5");
  EXPECT_EQ(parseOk("prompt_tokens > 1e3").describe(), "prompt_tokens > 1000");
  EXPECT_EQ(parseOk("prompt_tokens > 2.5E+3").describe(), "prompt_tokens > 2500");
  EXPECT_EQ(parseOk("complexity > 5e-1").describe(), "complexity > 0.5");
  EXPECT_EQ(parseOk("0.9 < complexity").describe(), "0.9 < complexity");
  EXPECT_EQ(parseOk("has_tools == true").describe(), "has_tools == 1");
  EXPECT_EQ(parseOk("TRUE").describe(), "true");
  EXPECT_EQ(parseOk("  false\n").describe(), "false");
}

TEST(Trigger, KeepsTextAndKnowsWhichVariablesItUses) {
  Trigger t = parseOk("confidence < 0.85 OR complexity > 0.9");
  EXPECT_EQ(t.text(), "confidence < 0.85 OR complexity > 0.9");
  EXPECT_TRUE(t.uses("confidence"));
  EXPECT_TRUE(t.uses("complexity"));
  EXPECT_FALSE(t.uses("has_tools"));
  EXPECT_FALSE(t.uses("stream"));
  EXPECT_FALSE(t.uses("no_such_variable"));
  Trigger b = parseOk("has_tools OR 10 < turns");
  EXPECT_TRUE(b.uses("has_tools"));
  EXPECT_TRUE(b.uses("turns"));
  EXPECT_FALSE(b.uses("confidence"));
}

// ---- errors ----------------------------------------------------------------------------------

TEST(Trigger, UnknownVariableSuggestsTheClosestAndPointsAtItsColumn) {
  EXPECT_EQ(parseError("confidnce < 0.85"),
            "column 1: unknown variable 'confidnce'; did you mean 'confidence'?");
  EXPECT_EQ(parseError("has_tools OR confidnce < 0.85"),
            "column 14: unknown variable 'confidnce'; did you mean 'confidence'?");
  EXPECT_EQ(parseError("Turns > 3"), "column 1: unknown variable 'Turns'; did you mean 'turns'?");
  EXPECT_EQ(parseError("xyzzy > 1"),
            "column 1: unknown variable 'xyzzy' (the variables are confidence, complexity, "
            "confidence_rank, complexity_rank, prompt_tokens, max_tokens, budget_used, "
            "local_queue_ms, has_tools, has_images, turns, stream)");
}

TEST(Trigger, ReportsMissingOperandsAndConditions) {
  EXPECT_EQ(parseError("turns > )"),
            "column 9: expected a number or a variable after '>', got ')'");
  EXPECT_EQ(parseError("turns >"),
            "column 8: expected a number or a variable after '>', got the end of the expression");
  EXPECT_EQ(parseError("has_tools OR"),
            "column 13: expected a condition, got the end of the expression");
  EXPECT_EQ(parseError("AND stream"), "column 1: expected a condition, got 'AND'");
  EXPECT_EQ(parseError("()"), "column 2: expected a condition, got ')'");
  EXPECT_EQ(parseError("NOT"), "column 4: expected a condition, got the end of the expression");
  EXPECT_EQ(parseError("< 3"), "column 1: expected a condition, got '<'");
  EXPECT_EQ(parseError("has_tools stream"),
            "column 11: expected AND, OR or the end of the expression, got 'stream'");
  EXPECT_EQ(parseError("(has_tools stream)"), "column 12: expected AND, OR or ')', got 'stream'");
}

TEST(Trigger, ReportsUnbalancedParentheses) {
  EXPECT_EQ(parseError("(has_tools OR stream"),
            "column 1: unbalanced parenthesis: '(' is never closed");
  EXPECT_EQ(parseError("has_tools AND ((stream) OR turns > 2"),
            "column 15: unbalanced parenthesis: '(' is never closed");
  EXPECT_EQ(parseError("has_tools OR stream)"),
            "column 20: unbalanced parenthesis: ')' has no matching '('");
  EXPECT_EQ(parseError(")"), "column 1: unbalanced parenthesis: ')' has no matching '('");
}

TEST(Trigger, NumbersAreNotConditions) {
  EXPECT_EQ(parseError("confidence"),
            "column 1: 'confidence' is a number, not a condition; compare it, e.g. "
            "'confidence > 0.5'");
  EXPECT_EQ(parseError("stream AND turns"),
            "column 12: 'turns' is a number, not a condition; compare it, e.g. 'turns > 0.5'");
  EXPECT_EQ(parseError("0.5"),
            "column 1: a number alone is not a condition; compare it with a "
            "variable");
}

TEST(Trigger, ReportsBadTokens) {
  EXPECT_EQ(parseError("0 < turns < 5"),
            "column 11: comparisons do not chain; join them with AND (e.g. 'x > 0 AND x < 1')");
  EXPECT_EQ(parseError("turns = 3"), "column 7: '=' is not an operator; write '==' to compare");
  EXPECT_EQ(parseError("turns > 1.2.3"), "column 9: malformed number '1.2.3'");
  EXPECT_EQ(parseError("local_queue_ms > 5ms"), "column 18: malformed number '5ms'");
  EXPECT_EQ(parseError("turns > 1e"), "column 9: malformed number '1e'");
  EXPECT_EQ(parseError("turns > 1e999"), "column 9: number '1e999' is out of range");
  EXPECT_EQ(parseError("has_tools & stream"), "column 11: unexpected '&'; write '&&' or AND");
  EXPECT_EQ(parseError("has_tools | stream"), "column 11: unexpected '|'; write '||' or OR");
  EXPECT_EQ(parseError("turns > 3 # comment"), "column 11: unexpected character '#'");
  EXPECT_EQ(parseError("turns - 1 > 3"), "column 7: unexpected character '-'");
  EXPECT_EQ(parseError("turns > 3 \xC3\xA9"), "column 11: unexpected byte 0xC3");
}

TEST(Trigger, TheFirstErrorInTheTextWins) {
  // A parse error before a lexical one, and the other way round.
  EXPECT_EQ(parseError("turns > ) OR confidnce < 1"),
            "column 9: expected a number or a variable after '>', got ')'");
  EXPECT_EQ(parseError("confidnce < 1 OR turns > )"),
            "column 1: unknown variable 'confidnce'; did you mean 'confidence'?");
}

TEST(Trigger, EmptyTextIsAnError) {
  EXPECT_EQ(parseError(""),
            "column 1: empty expression; write 'false' for a trigger that never "
            "fires");
  EXPECT_EQ(parseError("  \t "),
            "column 1: empty expression; write 'false' for a trigger that "
            "never fires");
}

TEST(Trigger, CapsNestingDepth) {
  const int cap = Trigger::kMaxNesting;
  ASSERT_EQ(cap, 64);
  std::string ok = std::string(cap, '(') + "has_tools" + std::string(cap, ')');
  EXPECT_EQ(parseOk(ok).evaluate(TriggerVars{.has_tools = 1}), T);
  std::string deep = std::string(cap + 1, '(') + "has_tools" + std::string(cap + 1, ')');
  EXPECT_EQ(parseError(deep), "column 65: nested more than 64 levels deep (parentheses and NOTs)");

  std::string nots;
  for (int i = 0; i < cap; ++i) nots += "NOT ";
  EXPECT_EQ(parseOk(nots + "stream").evaluate(TriggerVars{.stream = 0}), F);  // 64 NOTs: even
  EXPECT_EQ(parseError(nots + "NOT stream"),
            "column 257: nested more than 64 levels deep (parentheses and NOTs)");
  // Parentheses and NOTs count together.
  EXPECT_EQ(parseError(std::string(40, '(') + std::string(25, '!') + "stream"),
            "column 65: nested more than 64 levels deep (parentheses and NOTs)");
  // A deep nest within the length limit is an error, not a stack overflow.
  EXPECT_EQ(parseError(std::string(4000, '(')),
            "column 65: nested more than 64 levels deep (parentheses and NOTs)");
}

TEST(Trigger, CapsLength) {
  std::string text = "has_tools";
  while (text.size() + 13 <= Trigger::kMaxLength) text += " OR has_tools";
  text.resize(Trigger::kMaxLength, ' ');
  Trigger t = parseOk(text);
  EXPECT_EQ(t.evaluate(TriggerVars{.has_tools = 1}), T);
  EXPECT_EQ(t.evaluate(TriggerVars{.has_tools = 0}), F);
  EXPECT_EQ(parseError(text + " "), "expression is 4097 bytes long; the limit is 4096");
  EXPECT_EQ(parseError(std::string(1'000'000, '(')),
            "expression is 1000000 bytes long; the limit is 4096");
}

// ---- evaluation ------------------------------------------------------------------------------

TEST(Trigger, ComparesKnownValues) {
  TriggerVars v{.confidence = 0.85, .turns = 3};
  EXPECT_EQ(eval("confidence < 0.85", v), F);
  EXPECT_EQ(eval("confidence <= 0.85", v), T);
  EXPECT_EQ(eval("confidence > 0.85", v), F);
  EXPECT_EQ(eval("confidence >= 0.85", v), T);
  EXPECT_EQ(eval("confidence == 0.85", v), T);
  EXPECT_EQ(eval("confidence != 0.85", v), F);
  EXPECT_EQ(eval("turns > 2 AND turns < 4", v), T);
  EXPECT_EQ(eval("0.8 < confidence", v), T);
  EXPECT_EQ(eval("confidence > turns", v), F);
  EXPECT_EQ(eval("1 < 2", {}), T);
  EXPECT_EQ(eval("true", {}), T);
  EXPECT_EQ(eval("false", {}), F);
  EXPECT_EQ(eval("NOT false", {}), T);
}

TEST(Trigger, BooleansStandAloneAsNonZero) {
  EXPECT_EQ(eval("has_tools", {.has_tools = 1}), T);
  EXPECT_EQ(eval("has_tools", {.has_tools = 0}), F);
  EXPECT_EQ(eval("has_tools", {}), U);
  EXPECT_EQ(eval("has_tools OR complexity > 0.8", {.complexity = 0.9, .has_tools = 0}), T);
  EXPECT_EQ(eval("has_tools OR complexity > 0.8", {.complexity = 0.5, .has_tools = 0}), F);
  EXPECT_EQ(eval("!stream", {.stream = 1}), F);
  EXPECT_EQ(eval("has_images == false", {.has_images = 0}), T);
}

TEST(Trigger, UnknownsFollowKleeneLogic) {
  const std::string rule = "confidence < 0.85 OR complexity > 0.9";
  // Before the local model has answered: confidence is unknown.
  EXPECT_EQ(eval(rule, {.complexity = 0.95}), T);  // true OR unknown
  EXPECT_EQ(eval(rule, {.complexity = 0.5}), U);   // false OR unknown
  EXPECT_EQ(eval(rule, {}), U);
  // Once it has.
  EXPECT_EQ(eval(rule, {.confidence = 0.9, .complexity = 0.5}), F);
  EXPECT_EQ(eval(rule, {.confidence = 0.5, .complexity = 0.5}), T);

  EXPECT_EQ(eval("confidence < 0.85 AND complexity > 0.9", {.complexity = 0.5}), F);
  EXPECT_EQ(eval("confidence < 0.85 AND complexity > 0.9", {.complexity = 0.95}), U);
  EXPECT_EQ(eval("NOT confidence < 0.85", {}), U);
  EXPECT_EQ(eval("NOT (confidence < 0.85 OR true)", {}), F);
  EXPECT_EQ(eval("confidence < 0.85 OR false", {}), U);
  EXPECT_EQ(eval("confidence < 0.85 AND true", {}), U);
  EXPECT_EQ(eval("confidence < 0.85 AND false", {}), F);
  // Unknown anywhere in a chain, decided by a later operand.
  EXPECT_EQ(eval("confidence < 1 OR has_tools OR stream", {.has_tools = 0, .stream = 1}), T);
  EXPECT_EQ(eval("confidence < 1 OR has_tools OR stream", {.has_tools = 0, .stream = 0}), U);
  // Both operands unknown, or a variable compared with another that is unknown.
  EXPECT_EQ(eval("prompt_tokens > max_tokens", {.prompt_tokens = 10}), U);
  EXPECT_EQ(eval("prompt_tokens > max_tokens", {.prompt_tokens = 10, .max_tokens = 5}), T);
}

TEST(Trigger, NanIsUnknown) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(eval("confidence < 0.85", {.confidence = nan}), U);
  EXPECT_EQ(eval("confidence != 0.85", {.confidence = nan}), U);
  EXPECT_EQ(eval("stream", {.stream = nan}), U);
}

TEST(Trigger, EveryVariableIsReadFromItsOwnField) {
  const std::vector<std::string_view>& names = Trigger::variables();
  for (size_t i = 0; i < names.size(); ++i) {
    TriggerVars v;
    std::optional<double>* fields[] = {
        &v.confidence,     &v.complexity,      &v.confidence_rank, &v.complexity_rank,
        &v.prompt_tokens,  &v.max_tokens,      &v.budget_used,     &v.local_queue_ms,
        &v.has_tools,      &v.has_images,      &v.turns,           &v.stream};
    ASSERT_EQ(std::size(fields), names.size());
    *fields[i] = 7;
    std::string text = std::string(names[i]) + " == 7";
    Trigger t = parseOk(text);
    EXPECT_EQ(t.evaluate(v), T) << text;
    for (size_t j = 0; j < names.size(); ++j) {
      if (j == i) continue;
      std::string other = std::string(names[j]) + " == 7";
      EXPECT_EQ(parseOk(other).evaluate(v), U) << other << " with only " << names[i] << " set";
    }
  }
}

// ---- robustness ------------------------------------------------------------------------------

TEST(Trigger, RandomInputNeverCrashesAndDescribeRoundTrips) {
  const std::vector<std::string> pieces = {
      "confidence", "complexity", "has_tools", "stream", "turns", "AND", "or", "NOT",   "&&", "||",
      "!",          "(",          ")",         "<",      "<=",    ">=",  "==", "!=",    "=",  "0.5",
      "-1",         "1e3",        "true",      "false",  " ",     "#",   "x",  "1.2.3", "&"};
  std::mt19937 rng(1234);
  int parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    int n = static_cast<int>(rng() % 12) + 1;
    for (int k = 0; k < n; ++k) text += pieces[rng() % pieces.size()] + (rng() % 2 ? " " : "");
    auto t = Trigger::parse(text);
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), api::ErrorCode::kConfig);
      EXPECT_TRUE(t.status().message().starts_with("column ")) << t.status().message();
      continue;
    }
    ++parsed;
    (void)t->evaluate({});
    (void)t->evaluate({.confidence = 0.5, .complexity = 0.5, .has_tools = 1, .turns = 2});
    auto again = Trigger::parse(t->describe());
    ASSERT_TRUE(again.ok()) << text << " -> " << t->describe();
    EXPECT_EQ(again->describe(), t->describe()) << text;
  }
  EXPECT_GT(parsed, 100);  // the generator does reach valid expressions
}

// ---- relative and budget-aware triggers -------------------------------------------------------

TEST(Trigger, RankVariablesAreUnknownUntilKnown) {
  const std::string rule = "confidence_rank < 0.15 OR complexity > 0.9";
  EXPECT_EQ(eval(rule, {.complexity = 0.5}), U);  // warm-up or no answer yet: undecided
  EXPECT_EQ(eval(rule, {.complexity = 0.95}), T);
  EXPECT_EQ(eval(rule, {.complexity = 0.5, .confidence_rank = 0.1}), T);
  EXPECT_EQ(eval(rule, {.complexity = 0.5, .confidence_rank = 0.15}), F);
  EXPECT_EQ(eval("complexity_rank > 0.95", {.complexity_rank = 0.99}), T);
  EXPECT_TRUE(parseOk(rule).uses("confidence_rank"));
  EXPECT_FALSE(parseOk(rule).uses("complexity_rank"));
  EXPECT_EQ(parseError("confidence_rnak < 0.1"),
            "column 1: unknown variable 'confidence_rnak'; did you mean 'confidence_rank'?");
  EXPECT_EQ(parseError("complexity_rank"),
            "column 1: 'complexity_rank' is a number, not a condition; compare it, e.g. "
            "'complexity_rank > 0.5'");
}

// The budget-aware trigger of the README: as budget_used rises, fewer local answers escalate
// (20%, then 10%, then 3% of uniformly ranked answers).
TEST(Trigger, BudgetAwareTriggerEscalatesLessAsTheBudgetIsUsed) {
  Trigger t = parseOk(
      "(budget_used < 0.5 AND confidence_rank < 0.2) OR (budget_used < 0.8 AND confidence_rank "
      "< 0.1) OR confidence_rank < 0.03");
  auto share = [&](double budget_used) {
    int fired = 0;
    for (int i = 0; i < 1000; ++i) {
      TriggerVars v{.confidence_rank = (i + 0.5) / 1000, .budget_used = budget_used};
      fired += t.evaluate(v) == T;
    }
    return fired / 1000.0;
  };
  EXPECT_DOUBLE_EQ(share(0.0), 0.2);
  EXPECT_DOUBLE_EQ(share(0.6), 0.1);
  EXPECT_DOUBLE_EQ(share(0.9), 0.03);
  EXPECT_DOUBLE_EQ(share(1.5), 0.03);
  // No budget (budget_used unknown): only the last clause can decide for certain.
  EXPECT_EQ(t.evaluate({.confidence_rank = 0.01}), T);
  EXPECT_EQ(t.evaluate({.confidence_rank = 0.5}), F);
  EXPECT_EQ(t.evaluate({.confidence_rank = 0.15}), U);
}

}  // namespace
}  // namespace policies
