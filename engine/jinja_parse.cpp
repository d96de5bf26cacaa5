// Jinja tokens -> syntax tree: a recursive-descent parser with the grammar and operator
// precedence of @huggingface/jinja, bounded in nesting depth.
#include <cstdlib>
#include <string>

#include "engine/jinja_internal.h"

namespace engine::jinja {

namespace {

// ---- Parser -------------------------------------------------------------------------------------

using Kind = Node::Kind;

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Source& src, std::string_view original, int max_depth)
      : tokens_(std::move(tokens)), src_(src), original_(original), max_depth_(max_depth) {}

  std::shared_ptr<const Program> run() {
    auto program = std::make_shared<Program>();
    while (cur_ < tokens_.size()) program->body.push_back(parseAny());
    return program;
  }

 private:
  struct Nest {
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > p_.max_depth_) {
        p_.error("the template nests deeper than " + std::to_string(p_.max_depth_) + " levels");
      }
    }
    ~Nest() { --p_.depth_; }
    Parser& p_;
  };

  [[noreturn]] void error(const std::string& message) const {
    size_t offset = cur_ < tokens_.size() ? tokens_[cur_].offset : src_.text.size();
    fail(position(original_, originalOffset(src_, offset)) + ": " + message);
  }

  const Token* peek(size_t ahead = 0) const {
    return cur_ + ahead < tokens_.size() ? &tokens_[cur_ + ahead] : nullptr;
  }
  bool is(Tok type) const { return peek() != nullptr && peek()->type == type; }
  bool isName(std::string_view name, size_t ahead = 0) const {
    const Token* t = peek(ahead);
    return t != nullptr && t->type == Tok::kName && t->value == name;
  }
  bool isStatement(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::kOpenStmt)) return false;
    for (std::string_view n : names) {
      if (isName(n, 1)) return true;
    }
    return false;
  }
  const Token& expect(Tok type, const char* what) {
    if (!is(type)) error(std::string("Expected ") + what);
    return tokens_[cur_++];
  }
  void expectName(std::string_view name) {
    if (!isName(name)) error("Expected " + std::string(name));
    ++cur_;
  }
  // Parses statements until one of `ends` opens; fails at the end of the template.
  void parseUntil(std::vector<NodePtr>& body, std::initializer_list<std::string_view> ends,
                  const char* closing) {
    while (!isStatement(ends)) {
      if (cur_ >= tokens_.size())
        error(std::string("Unexpected end of template: missing ") + closing);
      body.push_back(parseAny());
    }
  }
  void expectEnd(const char* name) {
    expect(Tok::kOpenStmt, "{%");
    expectName(name);
    expect(Tok::kCloseStmt, "%}");
  }

  static NodePtr make(Kind kind) { return std::make_unique<Node>(kind); }

  NodePtr parseAny() {
    Nest nest(*this);
    const Token& t = *peek();
    switch (t.type) {
      case Tok::kComment: {
        ++cur_;
        return make(Kind::kComment);
      }
      case Tok::kText: {
        NodePtr n = make(Kind::kString);
        n->text = tokens_[cur_++].value;
        return n;
      }
      case Tok::kOpenStmt:
        return parseStatement();
      case Tok::kOpenExpr: {
        ++cur_;
        NodePtr e = parseExpression();
        expect(Tok::kCloseExpr, "closing expression token }}");
        return e;
      }
      default:
        error("Unexpected token: " + t.value);
    }
  }

  NodePtr parseStatement() {
    expect(Tok::kOpenStmt, "{%");
    if (!is(Tok::kName)) error("Unknown statement");
    std::string name = tokens_[cur_++].value;
    if (name == "set") return parseSet();
    if (name == "if") {
      NodePtr n = parseIf();
      expectEnd("endif");
      return n;
    }
    if (name == "for") return parseFor();
    if (name == "macro") return parseMacro();
    if (name == "call") return parseCallBlock();
    if (name == "filter") return parseFilterBlock();
    if (name == "break" || name == "continue") {
      expect(Tok::kCloseStmt, "%}");
      return make(name == "break" ? Kind::kBreak : Kind::kContinue);
    }
    --cur_;
    error("Unknown statement type: " + name);
  }

  NodePtr parseSet() {
    NodePtr n = make(Kind::kSet);
    n->a = parseExpressionSequence(false);
    if (is(Tok::kEquals)) {
      ++cur_;
      n->b = parseExpressionSequence(false);
    } else {
      expect(Tok::kCloseStmt, "%}");
      parseUntil(n->body, {"endset"}, "{% endset %}");
      expect(Tok::kOpenStmt, "{%");
      expectName("endset");
    }
    expect(Tok::kCloseStmt, "%}");
    return n;
  }

  NodePtr parseIf() {
    NodePtr n = make(Kind::kIf);
    n->a = parseExpression();
    expect(Tok::kCloseStmt, "%}");
    parseUntil(n->body, {"elif", "else", "endif"}, "{% endif %}");
    if (isStatement({"elif"})) {
      cur_ += 2;
      n->alt.push_back(parseIf());
    } else if (isStatement({"else"})) {
      cur_ += 2;
      expect(Tok::kCloseStmt, "%}");
      parseUntil(n->alt, {"endif"}, "{% endif %}");
    }
    return n;
  }

  NodePtr parseFor() {
    NodePtr n = make(Kind::kFor);
    n->a = parseExpressionSequence(true);
    if (n->a->kind != Kind::kName && n->a->kind != Kind::kTuple) {
      error("Expected identifier/tuple for the loop variable");
    }
    if (!isName("in")) error("Expected `in` keyword following loop variable");
    ++cur_;
    n->b = parseExpression();
    expect(Tok::kCloseStmt, "%}");
    parseUntil(n->body, {"endfor", "else"}, "{% endfor %}");
    if (isStatement({"else"})) {
      cur_ += 2;
      expect(Tok::kCloseStmt, "%}");
      parseUntil(n->alt, {"endfor"}, "{% endfor %}");
    }
    expectEnd("endfor");
    return n;
  }

  NodePtr parseMacro() {
    NodePtr n = make(Kind::kMacro);
    if (!is(Tok::kName)) error("Expected identifier following macro statement");
    n->text = tokens_[cur_++].value;
    n->items = parseArgs(true);
    expect(Tok::kCloseStmt, "%}");
    parseUntil(n->body, {"endmacro"}, "{% endmacro %}");
    expectEnd("endmacro");
    markSpecialArguments(*n);
    return n;
  }

  NodePtr parseCallBlock() {
    NodePtr n = make(Kind::kCallBlock);
    if (is(Tok::kLParen)) n->items = parseArgs(true);
    if (!is(Tok::kName)) error("Expected identifier following call statement");
    NodePtr call = make(Kind::kCall);
    call->a = make(Kind::kName);
    call->a->text = tokens_[cur_++].value;
    call->items = parseArgs(false);
    n->a = std::move(call);
    expect(Tok::kCloseStmt, "%}");
    parseUntil(n->body, {"endcall"}, "{% endcall %}");
    expectEnd("endcall");
    markSpecialArguments(*n);
    return n;
  }

  NodePtr parseFilterBlock() {
    NodePtr n = make(Kind::kFilterBlock);
    n->a = parseFilterName();
    expect(Tok::kCloseStmt, "%}");
    parseUntil(n->body, {"endfilter"}, "{% endfilter %}");
    expectEnd("endfilter");
    return n;
  }

  // A macro or call block takes `varargs` / `kwargs` when its body reads them.
  static bool reads(const Node& n, std::string_view name) {
    if (n.kind == Kind::kName && n.text == name) return true;
    for (const Node* child : {n.a.get(), n.b.get(), n.c.get()}) {
      if (child != nullptr && reads(*child, name)) return true;
    }
    for (const auto* list : {&n.items, &n.body, &n.alt}) {
      for (const NodePtr& child : *list) {
        if (reads(*child, name)) return true;
      }
    }
    return false;
  }
  static void markSpecialArguments(Node& def) {
    for (const NodePtr& stmt : def.body) {
      def.uses_varargs = def.uses_varargs || reads(*stmt, "varargs");
      def.uses_kwargs = def.uses_kwargs || reads(*stmt, "kwargs");
    }
  }

  NodePtr parseExpressionSequence(bool primary) {
    NodePtr first = primary ? parsePrimary() : parseExpression();
    if (!is(Tok::kComma)) return first;
    NodePtr tuple = make(Kind::kTuple);
    tuple->items.push_back(std::move(first));
    while (is(Tok::kComma)) {
      ++cur_;
      tuple->items.push_back(primary ? parsePrimary() : parseExpression());
    }
    return tuple;
  }

  NodePtr parseExpression() {
    Nest nest(*this);
    NodePtr value = parseOr();
    if (!isName("if")) return value;
    ++cur_;
    NodePtr test = parseOr();
    if (isName("else")) {
      ++cur_;
      NodePtr n = make(Kind::kTernary);
      n->a = std::move(test);
      n->b = std::move(value);
      n->c = parseExpression();
      return n;
    }
    NodePtr n = make(Kind::kSelect);
    n->a = std::move(value);
    n->b = std::move(test);
    return n;
  }

  static NodePtr binary(std::string op, NodePtr left, NodePtr right) {
    NodePtr n = make(Kind::kBinary);
    n->text = std::move(op);
    n->a = std::move(left);
    n->b = std::move(right);
    return n;
  }

  NodePtr parseOr() {
    NodePtr left = parseAnd();
    while (isName("or")) {
      ++cur_;
      left = binary("or", std::move(left), parseAnd());
    }
    return left;
  }

  NodePtr parseAnd() {
    NodePtr left = parseNot();
    while (isName("and")) {
      ++cur_;
      left = binary("and", std::move(left), parseNot());
    }
    return left;
  }

  // As the reference does, a `not` that follows a complete negation starts a new one, which
  // replaces it ("not a not b" is "not b").
  NodePtr parseNot() {
    NodePtr result;
    while (isName("not")) {
      Nest nest(*this);
      ++cur_;
      NodePtr n = make(Kind::kUnary);
      n->text = "not";
      n->a = parseNot();
      result = std::move(n);
    }
    return result ? std::move(result) : parseComparison();
  }

  NodePtr parseComparison() {
    NodePtr left = parseAdditive();
    while (true) {
      std::string op;
      if (isName("not") && isName("in", 1)) {
        op = "not in";
        cur_ += 2;
      } else if (isName("in") || is(Tok::kComparison)) {
        op = tokens_[cur_++].value;
      } else {
        return left;
      }
      left = binary(std::move(op), std::move(left), parseAdditive());
    }
  }

  NodePtr parseAdditive() {
    NodePtr left = parseMultiplicative();
    while (is(Tok::kAdditive)) {
      std::string op = tokens_[cur_++].value;
      left = binary(std::move(op), std::move(left), parseMultiplicative());
    }
    return left;
  }

  NodePtr parseMultiplicative() {
    NodePtr left = parsePower();
    while (is(Tok::kMultiplicative)) {
      std::string op = tokens_[cur_++].value;
      left = binary(std::move(op), std::move(left), parsePower());
    }
    return left;
  }

  NodePtr parsePower() {
    NodePtr left = parseTest();
    while (is(Tok::kPower)) {
      ++cur_;
      left = binary("**", std::move(left), parseTest());
    }
    return left;
  }

  NodePtr parseTest() {
    NodePtr operand = parseFilter();
    while (isName("is")) {
      ++cur_;
      NodePtr n = make(Kind::kTest);
      n->negate = isName("not");
      if (n->negate) ++cur_;
      if (!is(Tok::kName)) error("Expected identifier for the test");
      n->text = tokens_[cur_++].value;
      n->a = std::move(operand);
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr parseFilterName() {
    if (!is(Tok::kName)) error("Expected identifier for the filter");
    NodePtr name = make(Kind::kName);
    name->text = tokens_[cur_++].value;
    return is(Tok::kLParen) ? parseCall(std::move(name)) : std::move(name);
  }

  NodePtr parseFilter() {
    NodePtr operand = parseUnarySign();
    while (is(Tok::kPipe)) {
      ++cur_;
      NodePtr n = make(Kind::kFilter);
      n->b = parseFilterName();
      n->a = std::move(operand);
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr parseUnarySign() {
    const Token* t = peek();
    if (t != nullptr && (t->type == Tok::kUnary || t->type == Tok::kAdditive) &&
        (t->value == "-" || t->value == "+")) {
      Nest nest(*this);
      NodePtr n = make(Kind::kUnary);
      n->text = tokens_[cur_++].value;
      n->a = parseUnarySign();
      return n;
    }
    NodePtr member = parseMember(parsePrimary());
    return is(Tok::kLParen) ? parseCall(std::move(member)) : std::move(member);
  }

  NodePtr parseCall(NodePtr callee) {
    NodePtr n = make(Kind::kCall);
    n->a = std::move(callee);
    n->items = parseArgs(false);
    n = parseMember(std::move(n));
    return is(Tok::kLParen) ? parseCall(std::move(n)) : std::move(n);
  }

  std::vector<NodePtr> parseArgs(bool parameters) {
    expect(Tok::kLParen, "(");
    std::vector<NodePtr> args;
    bool saw_keyword = false;
    while (!is(Tok::kRParen)) {
      if (cur_ >= tokens_.size()) error("Unexpected end of template in an argument list");
      NodePtr arg = parseArgument(parameters);
      bool keyword = arg->kind == Kind::kKeyword;
      bool spread = arg->kind == Kind::kSpread || arg->kind == Kind::kKwSpread;
      if (!keyword && !spread && saw_keyword) {
        error(parameters ? "Non-default argument follows default argument"
                         : "Positional arguments must come before keyword arguments");
      }
      saw_keyword = saw_keyword || keyword;
      args.push_back(std::move(arg));
      if (is(Tok::kComma)) ++cur_;
    }
    ++cur_;
    return args;
  }

  NodePtr parseArgument(bool parameters) {
    bool kw_spread = is(Tok::kPower);
    bool spread = is(Tok::kMultiplicative) && peek()->value == "*";
    if (kw_spread || spread) {
      if (parameters) error("Argument unpacking is not allowed in parameter declarations");
      ++cur_;
      NodePtr n = make(kw_spread ? Kind::kKwSpread : Kind::kSpread);
      n->a = parseExpression();
      return n;
    }
    NodePtr arg = parseExpression();
    if (is(Tok::kEquals)) {
      ++cur_;
      if (arg->kind != Kind::kName) error("Expected identifier for keyword argument");
      NodePtr kw = make(Kind::kKeyword);
      kw->text = arg->text;
      kw->a = parseExpression();
      return kw;
    }
    if (parameters && arg->kind != Kind::kName) {
      error("Expected identifier for parameter declaration");
    }
    return arg;
  }

  NodePtr parseSubscript() {
    std::vector<NodePtr> parts;
    bool slice = false;
    while (!is(Tok::kRBracket)) {
      if (cur_ >= tokens_.size()) error("Expected closing square bracket");
      if (is(Tok::kColon)) {
        parts.push_back(nullptr);
        ++cur_;
        slice = true;
        continue;
      }
      parts.push_back(parseExpression());
      if (is(Tok::kColon)) {
        ++cur_;
        slice = true;
      }
    }
    if (parts.empty()) error("Expected at least one argument for member/slice expression");
    if (!slice) return std::move(parts[0]);
    if (parts.size() > 3) error("Expected 0-3 arguments for slice expression");
    NodePtr n = make(Kind::kSlice);
    parts.resize(3);
    n->a = std::move(parts[0]);
    n->b = std::move(parts[1]);
    n->c = std::move(parts[2]);
    return n;
  }

  NodePtr parseMember(NodePtr object) {
    while (is(Tok::kDot) || is(Tok::kLBracket)) {
      bool computed = is(Tok::kLBracket);
      ++cur_;
      NodePtr n = make(Kind::kMember);
      n->is_computed = computed;
      if (computed) {
        n->b = parseSubscript();
        expect(Tok::kRBracket, "]");
      } else {
        n->b = parsePrimary();
        bool integer = n->b->kind == Kind::kNumber && !n->b->is_float;
        if (n->b->kind != Kind::kName && !integer) {
          error("Expected identifier or integer following dot operator");
        }
      }
      n->a = std::move(object);
      object = std::move(n);
    }
    return object;
  }

  NodePtr parsePrimary() {
    Nest nest(*this);
    if (cur_ >= tokens_.size()) error("Unexpected end of template");
    const Token& t = tokens_[cur_++];
    switch (t.type) {
      case Tok::kNumber: {
        NodePtr n = make(Kind::kNumber);
        n->is_float = t.value.find('.') != std::string::npos;
        n->number = std::strtod(t.value.c_str(), nullptr);
        return n;
      }
      case Tok::kString: {
        NodePtr n = make(Kind::kString);
        n->text = t.value;
        while (is(Tok::kString)) n->text += tokens_[cur_++].value;
        return n;
      }
      case Tok::kName: {
        NodePtr n = make(Kind::kName);
        n->text = t.value;
        return n;
      }
      case Tok::kLParen: {
        NodePtr e = parseExpressionSequence(false);
        expect(Tok::kRParen, ")");
        return e;
      }
      case Tok::kLBracket:
        return parseListOrDict(Kind::kList, Tok::kRBracket);
      case Tok::kLBrace:
        return parseListOrDict(Kind::kDict, Tok::kRBrace);
      default:
        --cur_;
        error("Unexpected token: " + t.value);
    }
  }

  NodePtr parseListOrDict(Kind kind, Tok close) {
    NodePtr n = make(kind);
    while (!is(close)) {
      if (cur_ >= tokens_.size()) error("Unexpected end of template in a literal");
      n->items.push_back(parseExpression());
      if (kind == Kind::kDict) {
        expect(Tok::kColon, "colon between key and value in object literal");
        n->items.push_back(parseExpression());
      }
      if (is(Tok::kComma)) ++cur_;
    }
    ++cur_;
    return n;
  }

  std::vector<Token> tokens_;
  const Source& src_;
  std::string_view original_;
  size_t cur_ = 0;
  int depth_ = 0;
  const int max_depth_;
};

}  // namespace

std::shared_ptr<const Program> parseProgram(std::string_view source, int max_depth) {
  Lexed lexed = lex(source);
  return Parser(std::move(lexed.tokens), lexed.source, source, max_depth).run();
}

}  // namespace engine::jinja
