// The parts of the Jinja engine (engine/jinja.h) shared by its source files: the syntax tree,
// runtime values, scopes and the interpreter. Not for use outside engine/jinja*.cpp and tests.
//
// Errors inside the engine are C++ exceptions (jinja::Error); Template::parse and
// Template::render catch them and return a Status, so none crosses the public API.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/jinja.h"

namespace engine::jinja {

// Any parse or render failure; `what()` is the message the caller sees.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& message);

// ---- Tokens (engine/jinja_lex.cpp) --------------------------------------------------------------

// The template after preprocessing, with each byte's offset in the original text.
struct Source {
  std::string text;
  std::vector<uint32_t> origin;
};

enum class Tok {
  kText,
  kNumber,
  kString,
  kName,
  kEquals,
  kLParen,
  kRParen,
  kOpenStmt,
  kCloseStmt,
  kOpenExpr,
  kCloseExpr,
  kLBracket,
  kRBracket,
  kLBrace,
  kRBrace,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditive,
  kMultiplicative,
  kPower,
  kComparison,
  kUnary,
  kComment
};

struct Token {
  Tok type;
  std::string value;
  size_t offset;  // in Source::text
};

struct Lexed {
  Source source;
  std::vector<Token> tokens;
};

// Preprocesses and tokenizes `original`. Throws Error("line L, column C: ...").
Lexed lex(std::string_view original);
// "line L, column C" of `offset` in `original`.
std::string position(std::string_view original, size_t offset);
// The offset in the original text of byte `offset` of the preprocessed text.
size_t originalOffset(const Source& src, size_t offset);

// ---- Syntax tree ------------------------------------------------------------------------------

struct Node;
using NodePtr = std::unique_ptr<Node>;

// One node type for the whole tree; which fields a kind uses is listed beside it.
struct Node {
  enum class Kind {
    // Statements.
    kIf,           // a = test, body, alt
    kFor,          // a = loop target (kName or kTuple), b = iterable (may be kSelect), body, alt
    kSet,          // a = target, b = value (null for a block set), body
    kMacro,        // text = name, items = parameters (kName or kKeyword), body
    kCallBlock,    // a = the kCall, items = caller parameters, body
    kFilterBlock,  // a = filter (kName or kCall), body
    kBreak,
    kContinue,
    kComment,
    // Expressions.
    kString,   // text (template text is a kString too)
    kNumber,   // number; is_float
    kList,     // items
    kTuple,    // items
    kDict,     // items = key, value, key, value, ...
    kName,     // text
    kCall,     // a = callee, items = arguments
    kMember,   // a = object, b = property; is_computed for [..]
    kSlice,    // a, b, c = start, stop, step (each may be null)
    kUnary,    // text = operator, a
    kBinary,   // text = operator, a, b
    kFilter,   // a = operand, b = filter (kName or kCall)
    kTest,     // a = operand, text = test name; negate
    kSelect,   // a = value, b = condition (`a if b` without else)
    kTernary,  // a = condition, b = then, c = else
    kKeyword,  // text = name, a = value (keyword argument or parameter default)
    kSpread,   // a (`*args`)
    kKwSpread  // a (`**kwargs`)
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;
  double number = 0;
  bool is_float = false, is_computed = false, negate = false;
  bool uses_varargs = false, uses_kwargs = false;  // kMacro / kCallBlock
  NodePtr a, b, c;
  std::vector<NodePtr> items;
  std::vector<NodePtr> body, alt;

  explicit Node(Kind k) : kind(k) {}
};

struct Program {
  std::vector<NodePtr> body;
};

// Parses a whole template (engine/jinja_parse.cpp). Throws Error("line L, column C: ...").
std::shared_ptr<const Program> parseProgram(std::string_view source, int max_depth);

// ---- Runtime values ---------------------------------------------------------------------------

struct Value;
struct Scope;
class Interpreter;

using Array = std::vector<Value>;

// A dict or a namespace: insertion-ordered, as JavaScript's Map is.
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* kwarg(std::string_view name) const;
  // The positional argument `index`, else the keyword `name`, else null.
  const Value* get(size_t index, std::string_view name) const;
};

using Function = std::function<Value(CallArgs& args, Interpreter& in, Scope& caller)>;

struct Value {
  enum class Kind : uint8_t {
    kUndefined,
    kNull,
    kBool,
    kInt,
    kFloat,
    kString,
    kArray,
    kObject,
    kNamespace,
    kFunction
  };
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  bool tuple = false;  // a kArray written as a tuple
  // Lists and dicts: how deep they nest, and whether a namespace is inside. Bounding the one
  // bounds every recursive walk (and destruction); refusing the other keeps namespaces, the only
  // mutable values, from ever containing themselves.
  uint16_t depth = 0;
  bool holds_namespace = false;
  double number = 0;  // kInt and kFloat (JavaScript numbers, as the reference has them)
  std::string str;
  std::shared_ptr<Array> array;
  std::shared_ptr<Object> object;  // kObject, kNamespace (shared: namespaces are mutable)
  std::shared_ptr<const Function> function;

  static Value undefined() { return Value{}; }
  static Value null();
  static Value boolean_(bool b);
  static Value integer(double n);
  static Value floating(double n);
  static Value string(std::string s);
  static Value list(Array items, bool is_tuple = false);
  static Value dict(Object o);
  static Value ns(Object o);
  static Value fn(Function f);
  static Value fromJson(const Json& j);

  bool is(Kind k) const { return kind == k; }
  bool isNumber() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool isNullish() const { return kind == Kind::kUndefined || kind == Kind::kNull; }
  bool isContainer() const { return kind == Kind::kObject || kind == Kind::kNamespace; }
};

// The reference's name for a value's type ("StringValue", ...), used in error messages.
const char* typeName(const Value& v);
// Python truthiness as the reference implements it (empty list/dict false, namespace true).
bool truthy(const Value& v);
// What {{ v }} prints. Each of these text builders throws Error("rendering exceeded N bytes")
// as soon as its text grows past `max_bytes`, so that a large value fails before it is built.
std::string toOutput(const Value& v, size_t max_bytes);
// JavaScript's String(v.value): what `~` and string `+` concatenate.
std::string toJsString(const Value& v, size_t max_bytes);
// JavaScript's Number.prototype.toString.
std::string jsNumber(double n);

struct JsonStyle {
  int indent = 0;  // 0: one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_separators = false;
  std::string item_sep, key_sep;
};
std::string toJson(const Value& v, const JsonStyle& style, bool undefined_as_null,
                   size_t max_bytes);
// Throws Error("rendering exceeded `max_bytes` bytes") when `bytes` is more.
void checkBuilt(size_t bytes, size_t max_bytes);

// JavaScript's `a.value == b.value` (the template's ==) and `===` (in, equalto, unique).
// `max_bytes` bounds the text of a list or dict compared with a string.
bool looseEquals(const Value& a, const Value& b, size_t max_bytes);
bool strictEquals(const Value& a, const Value& b);
// -1, 0, 1; throws for values the reference cannot compare.
int compareValues(const Value& a, const Value& b, bool case_sensitive);
// UTF-16 code units in `s` (JavaScript's length).
size_t utf16Length(std::string_view s);
// The code points of `s` as separate strings.
std::vector<std::string> codePoints(std::string_view s);
std::string asciiUpper(std::string s);
std::string asciiLower(std::string s);
// ECMAScript trimStart / trimEnd / trim.
std::string_view jsTrimStart(std::string_view s);
std::string_view jsTrimEnd(std::string_view s);

// The deepest nesting of lists and dicts a render may build.
inline constexpr int kMaxValueDepth = 512;
// Strings are copied by value: each evaluation, loop or filter that copies or builds string
// bytes costs one step per this many of them, so that a long string used in a loop runs out of
// steps rather than copying gigabytes.
inline constexpr size_t kBytesPerStep = 64;  // the default 5M steps: at most 320 MB copied

// The bytes of the strings among `items` (what copying them copies).
size_t stringBytes(const Array& items);

// ---- Scopes and the interpreter ---------------------------------------------------------------

struct Scope {
  Scope* parent = nullptr;
  std::unordered_map<std::string, Value> vars;
  Value lookup(const std::string& name) const;
};

// Thrown by {% break %} / {% continue %}; caught by the enclosing loop.
struct BreakSignal {};
struct ContinueSignal {};

class Interpreter {
 public:
  explicit Interpreter(const Limits& limits) : limits_(limits) {}

  std::string renderProgram(const Program& program, Scope& globals);
  Value eval(const Node& node, Scope& scope);
  std::string evalBlock(const std::vector<NodePtr>& body, Scope& scope);

  // Each counts against the limits and throws when one is exceeded.
  void step(int64_t work = 1);
  void stepBytes(size_t bytes) { step(static_cast<int64_t>(bytes / kBytesPerStep)); }
  void checkLength(size_t bytes) const;
  void checkItems(size_t items) const;
  const Limits& limits() const { return limits_; }

  // engine/jinja_filters.cpp
  Value applyFilter(Value operand, const Node& filter, Scope& scope);
  bool applyTest(const std::string& name, const Value& operand, const Value* arg) const;
  Value member(const Value& object, const Value& property);
  CallArgs evalArgs(const std::vector<NodePtr>& args, Scope& scope);

 private:
  Value evalNode(const Node& node, Scope& scope);
  Value evalBinary(const Node& node, Scope& scope);
  Value evalArithmetic(const std::string& op, const Value& l, const Value& r);
  Value evalUnary(const Node& node, Scope& scope);
  Value evalMember(const Node& node, Scope& scope);
  Value evalSlice(const Value& object, const Node& slice, Scope& scope);
  Value evalCall(const Node& node, Scope& scope);
  Value evalSet(const Node& node, Scope& scope);
  Value evalFor(const Node& node, Scope& scope);
  Value evalMacro(const Node& node, Scope& scope);
  Value evalCallBlock(const Node& node, Scope& scope);
  Value evalLiteral(const Node& node, Scope& scope);
  void bindArguments(const std::string& display_name, const Node& def,
                     const std::vector<NodePtr>& params, CallArgs& args, Scope& scope);

  Value filterByName(Value operand, const std::string& name);
  Value filterWithArgs(Value operand, const std::string& name, const Node& call, Scope& scope);
  Value arrayFilterWithArgs(Value operand, const std::string& name, const Node& call, Scope& scope);
  Value stringMethod(const Value& s, const std::string& name);
  Value dictMethod(const Value& d, const std::string& name);

  const Limits& limits_;
  int64_t steps_ = 0;
  int depth_ = 0;
  friend struct DepthGuard;
};

// Raises the interpreter's depth for its lifetime; throws past Limits::max_depth.
struct DepthGuard {
  explicit DepthGuard(Interpreter& in);
  ~DepthGuard() { --in_.depth_; }
  Interpreter& in_;
};

// The global functions (range, namespace, raise_exception, strftime_now) and constants.
void installGlobals(Scope& globals);

}  // namespace engine::jinja
