// The Jinja interpreter: statements, expressions, scopes and macros, evaluated as
// @huggingface/jinja evaluates them (a `for` body has its own scope, `if` does not, a macro
// runs in a child of its caller's scope), within the render limits.
#include <cmath>

#include "engine/jinja_internal.h"

namespace engine::jinja {

using Kind = Node::Kind;

DepthGuard::DepthGuard(Interpreter& in) : in_(in) {
  if (++in_.depth_ > in_.limits_.max_depth) {
    --in_.depth_;
    fail("the template nests deeper than " + std::to_string(in_.limits_.max_depth) +
         " levels while rendering");
  }
}

// `work`: elements a filter or operator walks, so that scanning long lists costs its length.
void Interpreter::step(int64_t work) {
  steps_ += work;
  if (steps_ > limits_.max_steps) {
    fail("rendering took more than " + std::to_string(limits_.max_steps) + " steps");
  }
}

void Interpreter::checkLength(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    fail("rendering exceeded " + std::to_string(limits_.max_output_bytes) + " bytes");
  }
}

void Interpreter::checkItems(size_t items) const {
  if (items > limits_.max_list_items) {
    fail("a list grew past " + std::to_string(limits_.max_list_items) + " items");
  }
}

std::string Interpreter::renderProgram(const Program& program, Scope& globals) {
  try {
    return evalBlock(program.body, globals);
  } catch (const BreakSignal&) {
    fail("{% break %} outside a loop");
  } catch (const ContinueSignal&) {
    fail("{% continue %} outside a loop");
  }
}

std::string Interpreter::evalBlock(const std::vector<NodePtr>& body, Scope& scope) {
  std::string out;
  for (const NodePtr& stmt : body) {
    Value v = eval(*stmt, scope);
    if (v.isNullish()) continue;
    if (v.kind == Value::Kind::kString) {
      out += v.str;
    } else {
      out += toOutput(v, limits_.max_output_bytes);
    }
    checkLength(out.size());
  }
  return out;
}

Value Interpreter::eval(const Node& node, Scope& scope) {
  DepthGuard guard(*this);
  step();
  Value v = evalNode(node, scope);
  if (v.is(Value::Kind::kString)) stepBytes(v.str.size());  // copied (a lookup) or built
  return v;
}

Value Interpreter::evalNode(const Node& node, Scope& scope) {
  switch (node.kind) {
    case Kind::kIf: {
      bool test = truthy(eval(*node.a, scope));
      return Value::string(evalBlock(test ? node.body : node.alt, scope));
    }
    case Kind::kFor:
      return evalFor(node, scope);
    case Kind::kSet:
      return evalSet(node, scope);
    case Kind::kMacro:
      return evalMacro(node, scope);
    case Kind::kCallBlock:
      return evalCallBlock(node, scope);
    case Kind::kFilterBlock:
      return applyFilter(Value::string(evalBlock(node.body, scope)), *node.a, scope);
    case Kind::kBreak:
      throw BreakSignal{};
    case Kind::kContinue:
      throw ContinueSignal{};
    case Kind::kComment:
      return Value::null();
    case Kind::kName:
      return scope.lookup(node.text);
    case Kind::kCall:
      return evalCall(node, scope);
    case Kind::kMember:
      return evalMember(node, scope);
    case Kind::kUnary:
      return evalUnary(node, scope);
    case Kind::kBinary:
      return evalBinary(node, scope);
    case Kind::kFilter:
      return applyFilter(eval(*node.a, scope), *node.b, scope);
    case Kind::kTest: {
      bool result = applyTest(node.text, eval(*node.a, scope), nullptr);
      return Value::boolean_(node.negate ? !result : result);
    }
    case Kind::kSelect:
      return truthy(eval(*node.b, scope)) ? eval(*node.a, scope) : Value::undefined();
    case Kind::kTernary:
      return truthy(eval(*node.a, scope)) ? eval(*node.b, scope) : eval(*node.c, scope);
    default:
      return evalLiteral(node, scope);
  }
}

Value Interpreter::evalLiteral(const Node& node, Scope& scope) {
  switch (node.kind) {
    case Kind::kString:
      return Value::string(node.text);
    case Kind::kNumber:
      return node.is_float ? Value::floating(node.number) : Value::integer(node.number);
    case Kind::kList:
    case Kind::kTuple: {
      Array items;
      for (const NodePtr& e : node.items) items.push_back(eval(*e, scope));
      return Value::list(std::move(items), node.kind == Kind::kTuple);
    }
    case Kind::kDict: {
      Object o;
      for (size_t i = 0; i + 1 < node.items.size(); i += 2) {
        Value key = eval(*node.items[i], scope);
        if (key.kind != Value::Kind::kString) {
          fail(std::string("Object keys must be strings: got ") + typeName(key));
        }
        o.set(key.str, eval(*node.items[i + 1], scope));
      }
      return Value::dict(std::move(o));
    }
    default:
      fail("this expression cannot stand here");
  }
}

Value Interpreter::evalUnary(const Node& node, Scope& scope) {
  Value arg = eval(*node.a, scope);
  if (node.text == "not") return Value::boolean_(!truthy(arg));
  double sign = node.text == "-" ? -1 : 1;
  if (arg.isNumber() || arg.is(Value::Kind::kBool)) {
    double n = arg.is(Value::Kind::kBool) ? (arg.boolean ? 1 : 0) : arg.number;
    return arg.is(Value::Kind::kFloat) ? Value::floating(sign * n) : Value::integer(sign * n);
  }
  fail("Unknown operator \"" + node.text + "\" for " + typeName(arg));
}

Value Interpreter::evalBinary(const Node& node, Scope& scope) {
  const std::string& op = node.text;
  Value left = eval(*node.a, scope);
  if (op == "and") return truthy(left) ? eval(*node.b, scope) : left;
  if (op == "or") return truthy(left) ? left : eval(*node.b, scope);
  Value right = eval(*node.b, scope);
  if (op == "==") return Value::boolean_(looseEquals(left, right, limits_.max_output_bytes));
  if (op == "!=") return Value::boolean_(!looseEquals(left, right, limits_.max_output_bytes));
  bool membership = op == "in" || op == "not in";
  if (left.is(Value::Kind::kUndefined) || right.is(Value::Kind::kUndefined)) {
    if (right.is(Value::Kind::kUndefined) && membership) return Value::boolean_(op == "not in");
    fail("Cannot perform operation " + op + " on undefined values");
  }
  if (left.is(Value::Kind::kNull) || right.is(Value::Kind::kNull)) {
    fail("Cannot perform operation on null values");
  }
  if (op == "~") {
    std::string s =
        toJsString(left, limits_.max_output_bytes) + toJsString(right, limits_.max_output_bytes);
    checkLength(s.size());
    return Value::string(std::move(s));
  }
  auto numeric = [](const Value& v) { return v.isNumber() || v.is(Value::Kind::kBool); };
  if ((op == "**" && numeric(left) && numeric(right)) || (left.isNumber() && right.isNumber())) {
    return evalArithmetic(op, left, right);
  }
  if (left.is(Value::Kind::kArray) && right.is(Value::Kind::kArray)) {
    if (op == "+") {
      checkItems(left.array->size() + right.array->size());
      step(static_cast<int64_t>(left.array->size() + right.array->size()));
      stepBytes(stringBytes(*left.array) + stringBytes(*right.array));
      Array joined = *left.array;
      joined.insert(joined.end(), right.array->begin(), right.array->end());
      return Value::list(std::move(joined));
    }
  } else if (right.is(Value::Kind::kArray) && membership) {
    step(static_cast<int64_t>(right.array->size()));
    bool found = false;
    for (const Value& e : *right.array) found = found || strictEquals(e, left);
    return Value::boolean_(found == (op == "in"));
  }
  bool ls = left.is(Value::Kind::kString), rs = right.is(Value::Kind::kString);
  if ((ls || rs) && op == "+") {
    std::string s =
        toJsString(left, limits_.max_output_bytes) + toJsString(right, limits_.max_output_bytes);
    checkLength(s.size());
    return Value::string(std::move(s));
  }
  if (ls && rs && membership) {
    return Value::boolean_((right.str.find(left.str) != std::string::npos) == (op == "in"));
  }
  if (ls && right.is(Value::Kind::kObject) && membership) {
    return Value::boolean_((right.object->find(left.str) != nullptr) == (op == "in"));
  }
  fail("Unknown operator \"" + op + "\" between " + typeName(left) + " and " + typeName(right));
}

Value Interpreter::evalArithmetic(const std::string& op, const Value& l, const Value& r) {
  double a = l.is(Value::Kind::kBool) ? l.boolean : l.number;
  double b = r.is(Value::Kind::kBool) ? r.boolean : r.number;
  bool any_float = l.is(Value::Kind::kFloat) || r.is(Value::Kind::kFloat);
  auto make = [&](double n, bool is_float) {
    return is_float ? Value::floating(n) : Value::integer(n);
  };
  if (op == "**") {
    if (a == 0 && b < 0) fail("0.0 cannot be raised to a negative power");
    double n = std::pow(a, b);
    if (!std::isfinite(n)) fail("Exponentiation result is not a finite real number");
    return make(n, any_float || b < 0);
  }
  if (op == "+") return make(a + b, any_float);
  if (op == "-") return make(a - b, any_float);
  if (op == "*") return make(a * b, any_float);
  if (op == "/") return Value::floating(a / b);
  if ((op == "//" || op == "%") && b == 0) {
    // Python's ZeroDivisionError; JavaScript's NaN would pass as an int index or count.
    fail(any_float ? "float division or modulo by zero" : "integer division or modulo by zero");
  }
  if (op == "//") return make(std::floor(a / b), any_float);
  if (op == "%") return make(std::fmod(a, b), any_float);
  if (op == "<") return Value::boolean_(a < b);
  if (op == ">") return Value::boolean_(a > b);
  if (op == "<=") return Value::boolean_(a <= b);
  if (op == ">=") return Value::boolean_(a >= b);
  fail("Unknown operator \"" + op + "\" between " + typeName(l) + " and " + typeName(r));
}

CallArgs Interpreter::evalArgs(const std::vector<NodePtr>& args, Scope& scope) {
  CallArgs out;
  auto add_keyword = [&](const std::string& key, Value v) {
    if (out.kwarg(key) != nullptr) fail("Got multiple values for keyword argument '" + key + "'");
    out.keyword.emplace_back(key, std::move(v));
  };
  for (const NodePtr& arg : args) {
    if (arg->kind == Kind::kSpread) {
      Value v = eval(*arg->a, scope);
      if (!v.is(Value::Kind::kArray))
        fail(std::string("Cannot unpack non-iterable type: ") + typeName(v));
      for (const Value& e : *v.array) out.positional.push_back(e);
    } else if (arg->kind != Kind::kKeyword && arg->kind != Kind::kKwSpread) {
      out.positional.push_back(eval(*arg, scope));
    }
  }
  for (const NodePtr& arg : args) {
    if (arg->kind == Kind::kKeyword) {
      add_keyword(arg->text, eval(*arg->a, scope));
    } else if (arg->kind == Kind::kKwSpread) {
      Value v = eval(*arg->a, scope);
      if (!v.is(Value::Kind::kObject)) {
        fail(std::string("Argument after ** must be a mapping, not ") + typeName(v));
      }
      for (const auto& [k, e] : v.object->entries) add_keyword(k, e);
    }
  }
  return out;
}

Value Interpreter::evalCall(const Node& node, Scope& scope) {
  CallArgs args = evalArgs(node.items, scope);
  Value fn = eval(*node.a, scope);
  if (!fn.is(Value::Kind::kFunction)) {
    fail(std::string("Cannot call something that is not a function: got ") + typeName(fn));
  }
  return (*fn.function)(args, *this, scope);
}

Value Interpreter::evalMember(const Node& node, Scope& scope) {
  Value object = eval(*node.a, scope);
  if (node.is_computed && node.b->kind == Kind::kSlice) return evalSlice(object, *node.b, scope);
  Value property;
  if (node.is_computed) {
    property = eval(*node.b, scope);
  } else if (node.b->kind == Kind::kNumber) {
    property = Value::integer(node.b->number);
  } else {
    property = Value::string(node.b->text);
  }
  return member(object, property);
}

namespace {

// Python slice bounds as the reference computes them.
std::vector<size_t> sliceIndices(size_t size, const Value& start_v, const Value& stop_v,
                                 const Value& step_v) {
  double len = static_cast<double>(size);
  double step = step_v.isNumber() ? step_v.number : 1;
  double start, stop;
  std::vector<size_t> out;
  if (step >= 0) {
    start = start_v.isNumber() ? start_v.number : 0;
    stop = stop_v.isNumber() ? stop_v.number : len;
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
    if (step == 0) return out;
    for (double i = start; i < stop; i += step) out.push_back(static_cast<size_t>(i));
  } else {
    start = start_v.isNumber() ? start_v.number : len - 1;
    stop = stop_v.isNumber() ? stop_v.number : -1;
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
    for (double i = start; i > stop; i += step) out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

Value Interpreter::evalSlice(const Value& object, const Node& slice, Scope& scope) {
  if (!object.is(Value::Kind::kArray) && !object.is(Value::Kind::kString)) {
    fail("Slice object must be an array or string");
  }
  Value bounds[3];
  const Node* nodes[3] = {slice.a.get(), slice.b.get(), slice.c.get()};
  for (int i = 0; i < 3; ++i) {
    if (nodes[i] != nullptr) bounds[i] = eval(*nodes[i], scope);
    if (!bounds[i].is(Value::Kind::kInt) && !bounds[i].is(Value::Kind::kUndefined)) {
      fail("Slice start, stop and step must be integers or undefined");
    }
  }
  if (object.is(Value::Kind::kArray)) {
    Array out;
    for (size_t i : sliceIndices(object.array->size(), bounds[0], bounds[1], bounds[2])) {
      out.push_back((*object.array)[i]);
    }
    stepBytes(stringBytes(out));
    return Value::list(std::move(out));
  }
  std::vector<std::string> chars = codePoints(object.str);
  std::string out;
  for (size_t i : sliceIndices(chars.size(), bounds[0], bounds[1], bounds[2])) out += chars[i];
  return Value::string(std::move(out));
}

namespace {

void assign(const Node& target, const Value& value, Scope& scope, const char* context) {
  if (target.kind == Kind::kName) {
    scope.vars[target.text] = value;
    return;
  }
  if (target.kind != Kind::kTuple) fail(std::string("Invalid assignment target in ") + context);
  if (!value.is(Value::Kind::kArray)) {
    fail(std::string("Cannot unpack non-iterable type in ") + context + ": " + typeName(value));
  }
  if (value.array->size() != target.items.size()) {
    fail(std::string("Too ") + (target.items.size() > value.array->size() ? "few" : "many") +
         " items to unpack in " + context);
  }
  for (size_t i = 0; i < target.items.size(); ++i) {
    if (target.items[i]->kind != Kind::kName) fail("Cannot unpack to non-identifier");
    scope.vars[target.items[i]->text] = (*value.array)[i];
  }
}

}  // namespace

Value Interpreter::evalSet(const Node& node, Scope& scope) {
  Value rhs = node.b ? eval(*node.b, scope) : Value::string(evalBlock(node.body, scope));
  const Node& target = *node.a;
  if (target.kind == Kind::kMember) {
    Value object = eval(*target.a, scope);
    if (!object.is(Value::Kind::kNamespace)) {
      fail("cannot assign attribute on non-namespace object");
    }
    if (target.is_computed || target.b->kind != Kind::kName) {
      fail("Cannot assign to member with non-identifier property");
    }
    if (rhs.is(Value::Kind::kNamespace) || rhs.holds_namespace) {
      fail("a namespace cannot hold another namespace");
    }
    if (rhs.depth >= kMaxValueDepth) {
      fail("values nest deeper than " + std::to_string(kMaxValueDepth) + " levels");
    }
    object.object->set(target.b->text, std::move(rhs));
  } else {
    assign(target, rhs, scope, "set");
  }
  return Value::null();
}

namespace {

Object loopObject(const Array& items, size_t i) {
  double n = static_cast<double>(items.size()), k = static_cast<double>(i);
  Object loop;
  loop.entries = {{"index", Value::integer(k + 1)},
                  {"index0", Value::integer(k)},
                  {"revindex", Value::integer(n - k)},
                  {"revindex0", Value::integer(n - k - 1)},
                  {"first", Value::boolean_(i == 0)},
                  {"last", Value::boolean_(i + 1 == items.size())},
                  {"length", Value::integer(n)},
                  {"previtem", i > 0 ? items[i - 1] : Value::undefined()},
                  {"nextitem", i + 1 < items.size() ? items[i + 1] : Value::undefined()}};
  return loop;
}

}  // namespace

Value Interpreter::evalFor(const Node& node, Scope& scope) {
  Scope loop_scope{&scope, {}};
  const Node* filter = nullptr;
  Value iterable;
  if (node.b->kind == Kind::kSelect) {
    iterable = eval(*node.b->a, loop_scope);
    filter = node.b->b.get();
  } else {
    iterable = eval(*node.b, loop_scope);
  }
  Array all;
  if (iterable.is(Value::Kind::kArray)) {
    stepBytes(stringBytes(*iterable.array));
    all = *iterable.array;
  } else if (iterable.is(Value::Kind::kObject)) {
    for (const auto& [k, v] : iterable.object->entries) all.push_back(Value::string(k));
  } else {
    fail(std::string("Expected iterable or object type in for loop: got ") + typeName(iterable));
  }
  Array items;
  for (Value& item : all) {
    if (filter != nullptr) {
      Scope test_scope{&loop_scope, {}};
      assign(*node.a, item, test_scope, "for loop");
      if (!truthy(eval(*filter, test_scope))) continue;
    }
    items.push_back(std::move(item));
  }
  std::string out;
  bool no_iteration = true;
  for (size_t i = 0; i < items.size(); ++i) {
    step();
    stepBytes(3 * items[i].str.size());  // the item, and loop.previtem / loop.nextitem
    loop_scope.vars["loop"] = Value::dict(loopObject(items, i));
    assign(*node.a, items[i], loop_scope, "for loop");
    try {
      out += evalBlock(node.body, loop_scope);
      checkLength(out.size());
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) out += evalBlock(node.alt, loop_scope);
  return Value::string(std::move(out));
}

void Interpreter::bindArguments(const std::string& display_name, const Node& def,
                                const std::vector<NodePtr>& params, CallArgs& args, Scope& scope) {
  std::vector<std::pair<std::string, const Node*>> pending;
  auto keyword = args.keyword;
  for (size_t i = 0; i < params.size(); ++i) {
    const Node& p = *params[i];
    const std::string& name = p.text;
    const Node* default_value = p.kind == Kind::kKeyword ? p.a.get() : nullptr;
    Value value;
    bool given = i < args.positional.size();
    if (given) value = args.positional[i];
    for (auto it = keyword.begin(); !given && it != keyword.end(); ++it) {
      if (it->first != name) continue;
      value = it->second;
      keyword.erase(it);
      given = true;
      break;
    }
    if (!given && default_value != nullptr) pending.emplace_back(name, default_value);
    scope.vars[name] = value;
  }
  if (def.uses_kwargs) {
    Object kw;
    kw.entries = keyword;
    scope.vars["kwargs"] = Value::dict(std::move(kw));
  } else if (!keyword.empty()) {
    fail("macro " + display_name + " takes no keyword argument '" + keyword.front().first + "'");
  }
  if (def.uses_varargs) {
    Array rest;
    for (size_t i = params.size(); i < args.positional.size(); ++i) {
      rest.push_back(args.positional[i]);
    }
    scope.vars["varargs"] = Value::list(std::move(rest));
  } else if (args.positional.size() > params.size()) {
    fail("macro " + display_name + " takes not more than " + std::to_string(params.size()) +
         " argument(s)");
  }
  for (const auto& [name, expr] : pending) scope.vars[name] = eval(*expr, scope);
}

Value Interpreter::evalMacro(const Node& node, Scope& scope) {
  const Node* def = &node;
  scope.vars[node.text] = Value::fn([def](CallArgs& args, Interpreter& in, Scope& caller) {
    DepthGuard guard(in);
    Scope macro_scope{&caller, {}};
    in.bindArguments("'" + def->text + "'", *def, def->items, args, macro_scope);
    return Value::string(in.evalBlock(def->body, macro_scope));
  });
  return Value::null();
}

Value Interpreter::evalCallBlock(const Node& node, Scope& scope) {
  // `caller` reads the scope of this statement, so it must not run once the statement is done
  // (a template could keep it in a namespace).
  auto alive = std::make_shared<bool>(true);
  const Node* def = &node;
  Scope* home = &scope;
  Value caller = Value::fn([def, home, alive](CallArgs& args, Interpreter& in, Scope&) {
    if (!*alive) fail("caller() used outside its call block");
    DepthGuard guard(in);
    Scope block_scope{home, {}};
    in.bindArguments("None", *def, def->items, args, block_scope);
    return Value::string(in.evalBlock(def->body, block_scope));
  });
  const Node& call = *node.a;
  CallArgs args = evalArgs(call.items, scope);
  Value fn = eval(*call.a, scope);
  if (!fn.is(Value::Kind::kFunction)) {
    fail(std::string("Cannot call something that is not a function: got ") + typeName(fn));
  }
  Scope with_caller{&scope, {}};
  with_caller.vars["caller"] = caller;
  struct Expire {
    std::shared_ptr<bool> flag;
    ~Expire() { *flag = false; }
  } expire{alive};
  return (*fn.function)(args, *this, with_caller);
}

// ---- Public API ---------------------------------------------------------------------------------

api::StatusOr<Template> Template::parse(std::string_view source) {
  try {
    return Template(parseProgram(source, Limits{}.max_depth));
  } catch (const Error& e) {
    return api::invalidRequest(e.what());
  } catch (const std::exception& e) {
    return api::invalidRequest(std::string("the template could not be parsed: ") + e.what());
  }
}

api::StatusOr<std::string> Template::render(const Json& context, const Limits& limits) const {
  if (!context.is_object() && !context.is_null()) {
    return api::invalidRequest("the template context must be an object");
  }
  try {
    Scope globals;
    installGlobals(globals);
    if (context.is_object()) {
      for (auto it = context.begin(); it != context.end(); ++it) {
        if (globals.vars.count(it.key()) != 0) fail("Variable already declared: " + it.key());
        globals.vars[it.key()] = Value::fromJson(it.value());
      }
    }
    Interpreter in(limits);
    return in.renderProgram(*program_, globals);
  } catch (const Error& e) {
    return api::invalidRequest(e.what());
  } catch (const std::exception& e) {
    return api::invalidRequest(std::string("the template could not be rendered: ") + e.what());
  }
}

}  // namespace engine::jinja
