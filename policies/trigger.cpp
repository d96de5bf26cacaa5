#include "policies/trigger.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>

#include "api/ascii.h"
#include "policies/yaml_reader.h"

namespace policies {
namespace {

struct VarInfo {
  std::string_view name;
  std::optional<double> TriggerVars::*field;
  bool boolean;  // 0/1, may stand alone as a condition
};

// The order of TriggerVars' fields; Trigger::variables() lists the same names.
constexpr std::array<VarInfo, 12> kVars = {{
    {"confidence", &TriggerVars::confidence, false},
    {"complexity", &TriggerVars::complexity, false},
    {"confidence_rank", &TriggerVars::confidence_rank, false},
    {"complexity_rank", &TriggerVars::complexity_rank, false},
    {"prompt_tokens", &TriggerVars::prompt_tokens, false},
    {"max_tokens", &TriggerVars::max_tokens, false},
    {"budget_used", &TriggerVars::budget_used, false},
    {"local_queue_ms", &TriggerVars::local_queue_ms, false},
    {"has_tools", &TriggerVars::has_tools, true},
    {"has_images", &TriggerVars::has_images, true},
    {"turns", &TriggerVars::turns, false},
    {"stream", &TriggerVars::stream, true},
}};
static_assert(kVars.size() <= 32, "Trigger::used_ is a 32-bit mask");

int varIndex(std::string_view name) {
  for (size_t i = 0; i < kVars.size(); ++i) {
    if (kVars[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::optional<double> varValue(const TriggerVars& vars, int index) {
  const std::optional<double>& v = vars.*(kVars[static_cast<size_t>(index)].field);
  if (!v.has_value() || std::isnan(*v)) return std::nullopt;
  return v;
}

api::Status errorAtColumn(size_t column, std::string_view problem) {
  return api::Status(api::ErrorCode::kConfig,
                     "column " + std::to_string(column) + ": " + std::string(problem));
}

std::string lower(std::string_view s) { return api::asciiLower(s); }

std::string formatNumber(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

bool isIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool isDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

enum class Tok : uint8_t {
  kEnd,
  kError,  // a lexical error, reported when the parser reaches it (so errors come in text order)
  kLParen,
  kRParen,
  kAnd,
  kOr,
  kNot,
  kTrue,
  kFalse,
  kNumber,
  kVar,
  kCmp,
};

struct Token {
  Tok kind = Tok::kEnd;
  size_t column = 0;      // 1-based byte column of its first character
  std::string_view text;  // as written
  double number = 0;      // kNumber
  int var = -1;           // kVar
  int cmp = 0;            // kCmp: a Trigger::Cmp
  api::Status error;      // kError
};

std::string describeToken(const Token& t) {
  if (t.kind == Tok::kEnd) return "the end of the expression";
  return "'" + std::string(t.text) + "'";
}

// Cmp values, in the order of Trigger::Cmp.
constexpr std::string_view kCmpText[] = {"<", "<=", ">", ">=", "==", "!="};

// Splits `text` into tokens; the last one is kEnd or kError.
std::vector<Token> lex(std::string_view text) {
  std::vector<Token> out;
  size_t i = 0;
  auto push = [&](Tok kind, size_t start, size_t len) -> Token& {
    Token t;
    t.kind = kind;
    t.column = start + 1;
    t.text = text.substr(start, len);
    out.push_back(t);
    i = start + len;
    return out.back();
  };
  auto fail = [&](size_t start, std::string_view problem) {
    Token& t = push(Tok::kError, start, 1);
    t.error = errorAtColumn(start + 1, problem);
  };
  while (true) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size()) {
      push(Tok::kEnd, text.size(), 0);
      return out;
    }
    const size_t start = i;
    const char c = text[i];
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (c == '(') {
      push(Tok::kLParen, start, 1);
    } else if (c == ')') {
      push(Tok::kRParen, start, 1);
    } else if (c == '&' && next == '&') {
      push(Tok::kAnd, start, 2);
    } else if (c == '|' && next == '|') {
      push(Tok::kOr, start, 2);
    } else if (c == '&' || c == '|') {
      fail(start, std::string("unexpected '") + c + "'; write '" + c + c + "' or " +
                      (c == '&' ? "AND" : "OR"));
      return out;
    } else if (c == '<' || c == '>' || c == '=' || c == '!') {
      bool with_eq = next == '=';
      if (c == '!' && !with_eq) {
        push(Tok::kNot, start, 1);
        continue;
      }
      if (c == '=' && !with_eq) {
        fail(start, "'=' is not an operator; write '==' to compare");
        return out;
      }
      std::string_view op = text.substr(start, with_eq ? 2 : 1);
      Token& t = push(Tok::kCmp, start, op.size());
      for (size_t k = 0; k < std::size(kCmpText); ++k) {
        if (kCmpText[k] == op) t.cmp = static_cast<int>(k);
      }
    } else if (isDigit(c) || c == '.' ||
               ((c == '-' || c == '+') && (isDigit(next) || next == '.'))) {
      size_t j = start;
      if (text[j] == '-' || text[j] == '+') ++j;
      size_t digits = 0;
      while (j < text.size() && isDigit(text[j])) ++j, ++digits;
      if (j < text.size() && text[j] == '.') {
        ++j;
        while (j < text.size() && isDigit(text[j])) ++j, ++digits;
      }
      bool ok = digits > 0;
      if (ok && j < text.size() && (text[j] == 'e' || text[j] == 'E')) {
        size_t k = j + 1;
        if (k < text.size() && (text[k] == '+' || text[k] == '-')) ++k;
        size_t exp_digits = 0;
        while (k < text.size() && isDigit(text[k])) ++k, ++exp_digits;
        ok = exp_digits > 0;
        j = k;
      }
      // A number runs into letters, digits or dots ("1.2.3", "5ms"): malformed as a whole.
      if (j < text.size() && (isIdentChar(text[j]) || text[j] == '.')) ok = false;
      while (j < text.size() && (isIdentChar(text[j]) || text[j] == '.')) ++j;
      std::string_view word = text.substr(start, j - start);
      if (!ok) {
        fail(start, "malformed number '" + std::string(word) + "'");
        return out;
      }
      std::string_view body = word[0] == '+' ? word.substr(1) : word;
      double value = 0;
      auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value,
                                       std::chars_format::general);
      if (ec != std::errc() || ptr != body.data() + body.size() || !std::isfinite(value)) {
        fail(start, "number '" + std::string(word) + "' is out of range");
        return out;
      }
      push(Tok::kNumber, start, word.size()).number = value;
    } else if (isIdentStart(c)) {
      size_t j = start;
      while (j < text.size() && isIdentChar(text[j])) ++j;
      std::string_view word = text.substr(start, j - start);
      std::string key = lower(word);
      if (key == "and") {
        push(Tok::kAnd, start, word.size());
      } else if (key == "or") {
        push(Tok::kOr, start, word.size());
      } else if (key == "not") {
        push(Tok::kNot, start, word.size());
      } else if (key == "true") {
        push(Tok::kTrue, start, word.size());
      } else if (key == "false") {
        push(Tok::kFalse, start, word.size());
      } else if (int var = varIndex(word); var >= 0) {
        push(Tok::kVar, start, word.size()).var = var;
      } else {
        std::string problem = "unknown variable '" + std::string(word) + "'";
        if (auto near = closestMatch(word, Trigger::variables())) {
          problem += "; did you mean '" + std::string(*near) + "'?";
        } else {
          problem += " (the variables are ";
          for (size_t k = 0; k < kVars.size(); ++k) {
            problem += (k > 0 ? ", " : "") + std::string(kVars[k].name);
          }
          problem += ")";
        }
        fail(start, problem);
        return out;
      }
    } else {
      char buf[48];
      if (std::isprint(static_cast<unsigned char>(c))) {
        std::snprintf(buf, sizeof(buf), "unexpected character '%c'", c);
      } else {
        std::snprintf(buf, sizeof(buf), "unexpected byte 0x%02X",
                      static_cast<unsigned>(static_cast<unsigned char>(c)));
      }
      fail(start, buf);
      return out;
    }
  }
}

}  // namespace

std::string_view truthName(Truth t) {
  switch (t) {
    case Truth::kFalse:
      return "false";
    case Truth::kTrue:
      return "true";
    case Truth::kUnknown:
      return "unknown";
  }
  return "unknown";
}

const std::vector<std::string_view>& Trigger::variables() {
  static const std::vector<std::string_view> kNames = [] {
    std::vector<std::string_view> names;
    for (const VarInfo& v : kVars) names.push_back(v.name);
    return names;
  }();
  return kNames;
}

// Recursive descent over the tokens, one function per grammar rule. Recursion is bounded by
// kMaxNesting: only "(" and NOT go deeper, and AND/OR chains are loops building n-ary nodes.
class Trigger::Parser {
 public:
  Parser(std::vector<Token> tokens, Trigger* out) : toks_(std::move(tokens)), out_(out) {}

  api::Status parseAll() {
    auto root = parseOr(0);
    if (!root.ok()) return root.status();
    const Token& t = peek();
    if (t.kind == Tok::kError) return t.error;
    if (t.kind == Tok::kRParen) {
      return errorAtColumn(t.column, "unbalanced parenthesis: ')' has no matching '('");
    }
    if (t.kind != Tok::kEnd) {
      return errorAtColumn(
          t.column, "expected AND, OR or the end of the expression, got " + describeToken(t));
    }
    out_->root_ = *root;
    return api::Status();
  }

 private:
  const Token& peek() const { return toks_[pos_]; }
  const Token& take() {
    const Token& t = toks_[pos_];
    if (t.kind != Tok::kEnd && t.kind != Tok::kError) ++pos_;
    return t;
  }

  int add(Node node) {
    out_->nodes_.push_back(std::move(node));
    return static_cast<int>(out_->nodes_.size()) - 1;
  }

  // or := and ("OR" and)*   (and likewise one level down)
  api::StatusOr<int> parseChain(int depth, Tok keyword, Node::Kind kind) {
    auto first =
        keyword == Tok::kOr ? parseChain(depth, Tok::kAnd, Node::Kind::kAnd) : parseNot(depth);
    if (!first.ok() || peek().kind != keyword) return first;
    Node node;
    node.kind = kind;
    node.children.push_back(*first);
    while (peek().kind == keyword) {
      take();
      auto next =
          keyword == Tok::kOr ? parseChain(depth, Tok::kAnd, Node::Kind::kAnd) : parseNot(depth);
      if (!next.ok()) return next;
      node.children.push_back(*next);
    }
    return add(std::move(node));
  }

  api::StatusOr<int> parseOr(int depth) { return parseChain(depth, Tok::kOr, Node::Kind::kOr); }

  api::Status checkDepth(const Token& t, int depth) const {
    if (depth >= kMaxNesting) {
      return errorAtColumn(t.column, "nested more than " + std::to_string(kMaxNesting) +
                                         " levels deep (parentheses and NOTs)");
    }
    return api::Status();
  }

  // not := "NOT" not | primary
  api::StatusOr<int> parseNot(int depth) {
    if (peek().kind != Tok::kNot) return parsePrimary(depth);
    if (api::Status s = checkDepth(peek(), depth); !s.ok()) return s;
    take();
    auto inner = parseNot(depth + 1);
    if (!inner.ok()) return inner;
    Node node;
    node.kind = Node::Kind::kNot;
    node.children.push_back(*inner);
    return add(std::move(node));
  }

  static bool isOperand(const Token& t) {
    return t.kind == Tok::kNumber || t.kind == Tok::kVar || t.kind == Tok::kTrue ||
           t.kind == Tok::kFalse;
  }

  static Operand operandOf(const Token& t) {
    Operand o;
    if (t.kind == Tok::kVar) o.var = t.var;
    if (t.kind == Tok::kNumber) o.value = t.number;
    if (t.kind == Tok::kTrue) o.value = 1;
    return o;
  }

  void noteUse(const Operand& o) {
    if (o.var >= 0) out_->used_ |= uint32_t{1} << o.var;
  }

  // primary := "(" or ")" | comparison | boolvar | true | false
  api::StatusOr<int> parsePrimary(int depth) {
    const Token& t = peek();
    switch (t.kind) {
      case Tok::kError:
        return t.error;
      case Tok::kLParen: {
        if (api::Status s = checkDepth(t, depth); !s.ok()) return s;
        const Token& open = take();
        ++open_parens_;
        auto inner = parseOr(depth + 1);
        if (!inner.ok()) return inner;
        const Token& close = peek();
        if (close.kind == Tok::kError) return close.error;
        if (close.kind == Tok::kEnd) {
          return errorAtColumn(open.column, "unbalanced parenthesis: '(' is never closed");
        }
        if (close.kind != Tok::kRParen) {
          return errorAtColumn(close.column,
                               "expected AND, OR or ')', got " + describeToken(close));
        }
        take();
        --open_parens_;
        return inner;
      }
      case Tok::kRParen:
        if (open_parens_ == 0) {
          return errorAtColumn(t.column, "unbalanced parenthesis: ')' has no matching '('");
        }
        return errorAtColumn(t.column, "expected a condition, got ')'");
      case Tok::kEnd:
      case Tok::kAnd:
      case Tok::kOr:
      case Tok::kCmp:
        return errorAtColumn(t.column, "expected a condition, got " + describeToken(t));
      default:
        break;
    }
    // An operand: the start of a comparison, or a condition of its own.
    const Token& lhs = take();
    if (peek().kind != Tok::kCmp) {
      Node node;
      if (lhs.kind == Tok::kTrue || lhs.kind == Tok::kFalse) {
        node.kind = Node::Kind::kConst;
        node.value = lhs.kind == Tok::kTrue;
        return add(std::move(node));
      }
      if (lhs.kind == Tok::kVar && kVars[static_cast<size_t>(lhs.var)].boolean) {
        node.kind = Node::Kind::kBoolVar;
        node.var = lhs.var;
        out_->used_ |= uint32_t{1} << lhs.var;
        return add(std::move(node));
      }
      // A lexical error right after an operand explains it better ("turns - 1 > 3").
      if (peek().kind == Tok::kError) return peek().error;
      if (lhs.kind == Tok::kVar) {
        return errorAtColumn(lhs.column, "'" + std::string(lhs.text) +
                                             "' is a number, not a condition; compare it, e.g. '" +
                                             std::string(lhs.text) + " > 0.5'");
      }
      return errorAtColumn(lhs.column,
                           "a number alone is not a condition; compare it with a variable");
    }
    const Token& op = take();
    const Token& rhs = peek();
    if (rhs.kind == Tok::kError) return rhs.error;
    if (!isOperand(rhs)) {
      return errorAtColumn(rhs.column, "expected a number or a variable after '" +
                                           std::string(op.text) + "', got " + describeToken(rhs));
    }
    take();
    if (peek().kind == Tok::kCmp) {
      return errorAtColumn(peek().column,
                           "comparisons do not chain; join them with AND (e.g. 'x > 0 AND x < 1')");
    }
    Node node;
    node.kind = Node::Kind::kCompare;
    node.cmp = static_cast<Cmp>(op.cmp);
    node.lhs = operandOf(lhs);
    node.rhs = operandOf(rhs);
    noteUse(node.lhs);
    noteUse(node.rhs);
    return add(std::move(node));
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int open_parens_ = 0;
  Trigger* out_;
};

api::StatusOr<Trigger> Trigger::parse(std::string_view text) {
  if (text.size() > kMaxLength) {
    return api::Status(api::ErrorCode::kConfig, "expression is " + std::to_string(text.size()) +
                                                    " bytes long; the limit is " +
                                                    std::to_string(kMaxLength));
  }
  bool blank = true;
  for (char c : text) blank = blank && std::isspace(static_cast<unsigned char>(c));
  if (blank) {
    return errorAtColumn(1, "empty expression; write 'false' for a trigger that never fires");
  }
  Trigger trigger;
  trigger.text_ = std::string(text);
  std::vector<Token> tokens = lex(trigger.text_);
  trigger.nodes_.reserve(tokens.size());
  Parser parser(std::move(tokens), &trigger);
  if (api::Status s = parser.parseAll(); !s.ok()) return s;
  return trigger;
}

bool Trigger::uses(std::string_view var) const {
  int i = varIndex(var);
  return i >= 0 && (used_ & (uint32_t{1} << i)) != 0;
}

Truth Trigger::evaluate(const TriggerVars& vars) const { return eval(root_, vars); }

Truth Trigger::eval(int index, const TriggerVars& vars) const {
  const Node& n = nodes_[static_cast<size_t>(index)];
  switch (n.kind) {
    case Node::Kind::kConst:
      return n.value ? Truth::kTrue : Truth::kFalse;
    case Node::Kind::kBoolVar: {
      std::optional<double> v = varValue(vars, n.var);
      if (!v.has_value()) return Truth::kUnknown;
      return *v != 0 ? Truth::kTrue : Truth::kFalse;
    }
    case Node::Kind::kCompare: {
      std::optional<double> a = n.lhs.var >= 0 ? varValue(vars, n.lhs.var) : n.lhs.value;
      std::optional<double> b = n.rhs.var >= 0 ? varValue(vars, n.rhs.var) : n.rhs.value;
      if (!a.has_value() || !b.has_value()) return Truth::kUnknown;
      bool r = false;
      switch (n.cmp) {
        case Cmp::kLt:
          r = *a < *b;
          break;
        case Cmp::kLe:
          r = *a <= *b;
          break;
        case Cmp::kGt:
          r = *a > *b;
          break;
        case Cmp::kGe:
          r = *a >= *b;
          break;
        case Cmp::kEq:
          r = *a == *b;
          break;
        case Cmp::kNe:
          r = *a != *b;
          break;
      }
      return r ? Truth::kTrue : Truth::kFalse;
    }
    case Node::Kind::kNot: {
      Truth t = eval(n.children[0], vars);
      if (t == Truth::kUnknown) return t;
      return t == Truth::kTrue ? Truth::kFalse : Truth::kTrue;
    }
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      // AND: any false decides; OR: any true decides. Otherwise an unknown leaves it unknown.
      const Truth decisive = n.kind == Node::Kind::kAnd ? Truth::kFalse : Truth::kTrue;
      Truth result = n.kind == Node::Kind::kAnd ? Truth::kTrue : Truth::kFalse;
      for (int child : n.children) {
        Truth t = eval(child, vars);
        if (t == decisive) return decisive;
        if (t == Truth::kUnknown) result = Truth::kUnknown;
      }
      return result;
    }
  }
  return Truth::kUnknown;
}

std::string Trigger::describe() const {
  std::string out;
  if (!nodes_.empty()) describeNode(root_, false, &out);
  return out;
}

// Comparisons bind tighter than NOT, NOT tighter than AND, AND tighter than OR; so the only
// parentheses needed are around a chain under NOT and around an OR under AND, which the source
// text must have had too.
void Trigger::describeNode(int index, bool parenthesise_chains, std::string* out) const {
  const Node& n = nodes_[static_cast<size_t>(index)];
  auto operand = [&](const Operand& o) {
    *out +=
        o.var >= 0 ? std::string(kVars[static_cast<size_t>(o.var)].name) : formatNumber(o.value);
  };
  switch (n.kind) {
    case Node::Kind::kConst:
      *out += n.value ? "true" : "false";
      return;
    case Node::Kind::kBoolVar:
      *out += kVars[static_cast<size_t>(n.var)].name;
      return;
    case Node::Kind::kCompare:
      operand(n.lhs);
      *out += " ";
      *out += kCmpText[static_cast<size_t>(n.cmp)];
      *out += " ";
      operand(n.rhs);
      return;
    case Node::Kind::kNot:
      *out += "NOT ";
      describeNode(n.children[0], true, out);
      return;
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      const bool is_and = n.kind == Node::Kind::kAnd;
      if (parenthesise_chains) *out += "(";
      for (size_t i = 0; i < n.children.size(); ++i) {
        if (i > 0) *out += is_and ? " AND " : " OR ";
        const Node& child = nodes_[static_cast<size_t>(n.children[i])];
        describeNode(n.children[i], is_and && child.kind == Node::Kind::kOr, out);
      }
      if (parenthesise_chains) *out += ")";
      return;
    }
  }
}

}  // namespace policies
