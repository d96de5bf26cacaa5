// Trigger: a routing rule such as `confidence_rank < 0.15 OR complexity > 0.9`, parsed once when
// policies.yaml is loaded and evaluated per request (and, in a cascade, again as the local
// answer's confidence becomes known).
//
// Grammar (keywords are case-insensitive; `&&`, `||` and `!` are synonyms of AND, OR, NOT):
//
//     or         := and ("OR" and)*
//     and        := not ("AND" not)*
//     not        := "NOT" not | primary
//     primary    := "(" or ")" | comparison | boolvar | "true" | "false"
//     comparison := operand op operand          op: < <= > >= == !=
//     operand    := variable | number | "true" | "false"      (true = 1, false = 0)
//
// Numbers are decimals with an optional sign and exponent (`0.85`, `-1`, `.5`, `2e3`).
// Variables are the fixed list of TriggerVars below; booleans (has_tools, has_images,
// stream) are 0/1 and may stand alone as a condition (`has_tools OR complexity > 0.8`), numeric
// variables must be compared. Comparisons do not chain (`0 < x < 1` is an error; write
// `0 < x AND x < 1`).
//
// Absolute and relative variables: `confidence` and `complexity` are scores on their own scale
// (a model's confidence scale differs from another's); `confidence_rank` and `complexity_rank`
// are the same scores ranked among the team's recent ones, so `confidence_rank < 0.15` means
// "the least confident 15%" whatever the model. A budget-aware trigger tightens with
// budget_used in clauses, e.g. `(budget_used < 0.5 AND confidence_rank < 0.2) OR
// (budget_used < 0.8 AND confidence_rank < 0.1) OR confidence_rank < 0.03`.
//
// Evaluation uses three-valued (Kleene) logic, because some variables are not known yet when
// a decision is first taken (confidence is unknown until the local model has answered): a
// comparison with an unknown operand is kUnknown, NOT kUnknown is kUnknown, kFalse AND x is
// kFalse, kTrue OR x is kTrue, and otherwise an unknown operand makes AND/OR kUnknown.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace policies {

enum class Truth { kFalse, kTrue, kUnknown };

std::string_view truthName(Truth t);  // "false", "true", "unknown"

// The values a trigger may refer to; nullopt = not known (yet). A NaN is treated as unknown.
struct TriggerVars {
  std::optional<double> confidence = std::nullopt;  // [0, 1]: the local answer's confidence
  std::optional<double> complexity = std::nullopt;  // [0, 1]: the complexity scorer's estimate
  // [0, 1]: where `confidence` falls among the team's recent local answers on the same model
  // (0 = below all of them; mid-rank for ties; routers/rank_window.h). Unknown until the local
  // answer has a confidence and during the window's warm-up.
  std::optional<double> confidence_rank = std::nullopt;
  // [0, 1]: where `complexity` falls among the team's recent routed requests; known when the
  // request is planned, unknown during the window's warm-up.
  std::optional<double> complexity_rank = std::nullopt;
  // Tokens of the prompt, as the local tokenizer counts them.
  std::optional<double> prompt_tokens = std::nullopt;
  // The request's completion limit; unknown when the request sets none.
  std::optional<double> max_tokens = std::nullopt;
  // Spent / limit of the team's tightest budget (0..1; above 1 when over).
  std::optional<double> budget_used = std::nullopt;
  // Expected wait in the local engine's queue, in milliseconds.
  std::optional<double> local_queue_ms = std::nullopt;
  std::optional<double> has_tools = std::nullopt;   // 0/1: the request offers tools
  std::optional<double> has_images = std::nullopt;  // 0/1: some message holds an image
  std::optional<double> turns = std::nullopt;       // user messages in the conversation
  std::optional<double> stream = std::nullopt;      // 0/1: the client asked for a stream
};

class Trigger {
 public:
  static constexpr size_t kMaxLength = 4096;  // bytes of expression text
  static constexpr int kMaxNesting = 64;      // parentheses and NOTs inside one another

  // Parses `text`. Errors are kConfig with a message that starts with the 1-based byte column
  // of the fault: "column 14: unknown variable 'confidnce'; did you mean 'confidence'?",
  // "column 9: expected a number or a variable", "column 20: unbalanced parenthesis: ...".
  static api::StatusOr<Trigger> parse(std::string_view text);

  // The value of the expression for `vars` (see the file comment for unknowns).
  Truth evaluate(const TriggerVars& vars) const;

  // True when the expression mentions variable `var` (false for names not in variables()).
  bool uses(std::string_view var) const;
  // The text it was parsed from, as given.
  const std::string& text() const { return text_; }
  // The parsed expression with canonical keywords and only the parentheses precedence needs,
  // e.g. "confidence < 0.85 OR NOT has_tools", "(a OR b) AND NOT (c AND d)"; for logs and
  // tests. It parses back to the same expression and never nests deeper than the text it came
  // from, so it stays within the nesting limit.
  std::string describe() const;

  // The variable names, in the order of TriggerVars' fields.
  static const std::vector<std::string_view>& variables();

 private:
  Trigger() = default;  // only parse() makes one

  enum class Cmp : uint8_t { kLt, kLe, kGt, kGe, kEq, kNe };
  struct Operand {
    int var = -1;      // index into variables(), or -1 for a constant
    double value = 0;  // the constant
  };
  struct Node {
    enum class Kind : uint8_t { kConst, kBoolVar, kCompare, kNot, kAnd, kOr };
    Kind kind = Kind::kConst;
    Cmp cmp = Cmp::kEq;
    bool value = false;         // kConst
    int var = -1;               // kBoolVar
    Operand lhs, rhs;           // kCompare
    std::vector<int> children;  // kNot (one), kAnd and kOr (two or more): indices into nodes_
  };
  class Parser;

  Truth eval(int node, const TriggerVars& vars) const;
  void describeNode(int node, bool parenthesise_chains, std::string* out) const;

  std::string text_;
  std::vector<Node> nodes_;
  int root_ = 0;
  uint32_t used_ = 0;  // bit i: variables()[i] appears
};

}  // namespace policies
