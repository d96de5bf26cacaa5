// Filters, tests, attribute access, string and dict methods, and the global functions of the
// Jinja engine, each with the argument handling and error cases of @huggingface/jinja.
#include <algorithm>
#include <cmath>
#include <ctime>

#include "engine/jinja_internal.h"
#include "engine/tokenizer.h"

namespace engine::jinja {

using Kind = Node::Kind;
using VK = Value::Kind;

namespace {

std::string titleCase(std::string s) {
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (word(s[i]) && (i == 0 || !word(s[i - 1])) && s[i] >= 'a' && s[i] <= 'z') {
      s[i] = static_cast<char>(s[i] - 'a' + 'A');
    }
  }
  return s;
}

std::string capitalize(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// JavaScript's parseInt(s, 10) and parseFloat(s); NaN when no number starts the text.
double parseIntJs(std::string_view s) {
  s = jsTrimStart(s);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  size_t start = i;
  double n = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') n = n * 10 + (s[i++] - '0');
  if (i == start) return NAN;
  return negative ? -n : n;
}

double parseFloatJs(std::string_view s) {
  s = jsTrimStart(s);
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (s.substr(i, 8) == "Infinity") return s[0] == '-' ? -INFINITY : INFINITY;
  size_t end = i;
  while (end < s.size() && ((s[end] >= '0' && s[end] <= '9') || s[end] == '.' || s[end] == 'e' ||
                            s[end] == 'E' || s[end] == '+' || s[end] == '-')) {
    ++end;
  }
  std::string text(s.substr(0, end));
  if (end == i || !(std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    return NAN;
  }
  char* stop = nullptr;
  double n = std::strtod(text.c_str(), &stop);
  return stop == text.c_str() ? NAN : n;
}

// Array.prototype.join's view of an element's raw value.
std::string rawString(const Value& v, size_t max_bytes) {
  if (v.isNullish()) return "";
  return toJsString(v, max_bytes);
}

// Checked as it grows: a long separator times many items fails before it is built.
std::string joinRaw(const Array& items, const std::string& sep, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += rawString(items[i], max_bytes);
    checkBuilt(out.size(), max_bytes);
  }
  return out;
}

Value getAttributePath(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v.isContainer()) {
      const Value* found = v.object->find(part);
      v = found != nullptr ? *found : Value::undefined();
    } else if (v.is(VK::kArray)) {
      double index = parseIntJs(part);
      if (std::isnan(index) || index < 0 || index >= static_cast<double>(v.array->size())) {
        return Value::undefined();
      }
      v = (*v.array)[static_cast<size_t>(index)];
    } else {
      return Value::undefined();
    }
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

const Value* boolArg(const CallArgs& args, size_t index, std::string_view name) {
  const Value* v = args.get(index, name);
  if (v != nullptr && !v->is(VK::kBool)) fail(std::string(name) + " must be a boolean");
  return v;
}

Array sorted(const Array& items, bool reverse, bool case_sensitive,
             const std::function<Value(const Value&)>& key) {
  Array out = items;
  std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
    int c = compareValues(key(a), key(b), case_sensitive);
    return reverse ? c > 0 : c < 0;
  });
  return out;
}

std::string indentLines(const std::string& text, size_t width, bool first, bool blank,
                        size_t max_bytes) {
  std::string pad(width, ' ');
  std::string out;
  size_t start = 0;
  for (size_t i = 0;; ++i) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    bool keep = (!first && i == 0) || (!blank && line.empty());
    out += keep ? line : pad + line;
    checkBuilt(out.size(), max_bytes);
    if (nl == std::string::npos) break;
    out += '\n';
    start = nl + 1;
  }
  return out;
}

Value callNoArgs(const Value& fn, Interpreter& in, Scope& scope) {
  CallArgs none;
  return (*fn.function)(none, in, scope);
}

}  // namespace

// ---- Tests --------------------------------------------------------------------------------------

bool Interpreter::applyTest(const std::string& name, const Value& v, const Value* arg) const {
  if (name == "boolean") return v.is(VK::kBool);
  if (name == "callable") return v.is(VK::kFunction);
  if (name == "odd" || name == "even") {
    if (!v.is(VK::kInt)) fail("cannot " + name + " on " + typeName(v));
    bool odd = std::fmod(v.number, 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "false") return v.is(VK::kBool) && !v.boolean;
  if (name == "true") return v.is(VK::kBool) && v.boolean;
  if (name == "none") return v.is(VK::kNull);
  if (name == "string") return v.is(VK::kString);
  if (name == "number") return v.isNumber();
  if (name == "integer") return v.is(VK::kInt);
  if (name == "iterable") return v.is(VK::kArray) || v.is(VK::kString);
  if (name == "mapping") return v.is(VK::kObject);
  if (name == "sequence") return v.is(VK::kArray) || v.is(VK::kObject) || v.is(VK::kString);
  if (name == "lower") return v.is(VK::kString) && v.str == asciiLower(v.str);
  if (name == "upper") return v.is(VK::kString) && v.str == asciiUpper(v.str);
  if (name == "defined") return !v.is(VK::kUndefined);
  if (name == "undefined") return v.is(VK::kUndefined);
  if (name == "equalto" || name == "eq") {
    return strictEquals(v, arg != nullptr ? *arg : Value::undefined());
  }
  fail("Unknown test: " + name);
}

// ---- Attribute access ---------------------------------------------------------------------------

Value Interpreter::member(const Value& object, const Value& property) {
  if (object.isContainer()) {
    if (!property.is(VK::kString)) {
      fail(std::string("Cannot access property with non-string: got ") + typeName(property));
    }
    if (const Value* found = object.object->find(property.str)) return *found;
    return object.is(VK::kObject) ? dictMethod(object, property.str) : Value::undefined();
  }
  if (object.is(VK::kArray) || object.is(VK::kString)) {
    if (property.is(VK::kInt)) {
      bool is_array = object.is(VK::kArray);
      std::vector<std::string> chars;
      if (!is_array) chars = codePoints(object.str);
      double size = static_cast<double>(is_array ? object.array->size() : chars.size());
      double i = property.number < 0 ? property.number + size : property.number;
      if (!(i >= 0 && i < size)) return Value::undefined();  // NaN included
      size_t k = static_cast<size_t>(i);
      return is_array ? (*object.array)[k] : Value::string(chars[k]);
    }
    if (!property.is(VK::kString)) {
      fail(std::string("Cannot access property with non-string/non-number: got ") +
           typeName(property));
    }
    if (object.is(VK::kString)) return stringMethod(object, property.str);
    if (property.str == "length") {
      return Value::integer(static_cast<double>(object.array->size()));
    }
    return Value::undefined();
  }
  if (!property.is(VK::kString)) {
    fail(std::string("Cannot access property with non-string: got ") + typeName(property));
  }
  return Value::undefined();
}

namespace {

Array splitString(const std::string& s, const CallArgs& args, Interpreter& in) {
  Value sep = args.positional.size() > 0 ? args.positional[0] : Value::null();
  if (!sep.is(VK::kString) && !sep.is(VK::kNull)) fail("sep argument must be a string or null");
  Value max = args.positional.size() > 1 ? args.positional[1] : Value::integer(-1);
  if (!max.is(VK::kInt)) fail("maxsplit argument must be a number");
  double maxsplit = max.number;
  Array out;
  if (sep.is(VK::kNull)) {
    std::string_view rest = jsTrimStart(s);
    while (!rest.empty()) {
      in.checkItems(out.size());
      if (maxsplit != -1 && static_cast<double>(out.size()) >= maxsplit) {
        out.push_back(Value::string(std::string(rest)));
        break;
      }
      size_t end = 0;
      while (end < rest.size() && jsTrimStart(rest.substr(end)).data() == rest.data() + end) {
        ++end;
        while (end < rest.size() && (static_cast<unsigned char>(rest[end]) & 0xC0) == 0x80) ++end;
      }
      out.push_back(Value::string(std::string(rest.substr(0, end))));
      rest = jsTrimStart(rest.substr(end));
    }
    return out;
  }
  if (sep.str.empty()) fail("empty separator");
  size_t start = 0;
  while (true) {
    in.checkItems(out.size());
    size_t at = s.find(sep.str, start);
    bool limit = maxsplit != -1 && static_cast<double>(out.size()) >= maxsplit;
    if (at == std::string::npos || limit) {
      out.push_back(Value::string(s.substr(start)));
      return out;
    }
    out.push_back(Value::string(s.substr(start, at - start)));
    start = at + sep.str.size();
  }
}

std::string replaceString(const std::string& s, const CallArgs& args, Interpreter& in) {
  if (args.positional.size() < 2) fail("replace() requires at least two arguments");
  const Value& from = args.positional[0];
  const Value& to = args.positional[1];
  if (!from.is(VK::kString) || !to.is(VK::kString)) fail("replace() arguments must be strings");
  const Value* count = args.get(2, "count");
  if (count != nullptr && !count->is(VK::kInt) && !count->is(VK::kNull)) {
    fail("replace() count argument must be a number or null");
  }
  double remaining =
      count == nullptr || count->is(VK::kNull) || count->number < 0 ? INFINITY : count->number;
  std::string out;
  if (from.str.empty()) {
    std::vector<std::string> chars = codePoints(s);
    for (size_t i = 0; i <= chars.size(); ++i) {
      if (remaining-- > 0) out += to.str;
      if (i < chars.size()) out += chars[i];
      in.checkLength(out.size());
    }
    return out;
  }
  size_t start = 0;
  while (true) {
    size_t at = remaining > 0 ? s.find(from.str, start) : std::string::npos;
    if (at == std::string::npos) return out + s.substr(start);
    out += s.substr(start, at - start) + to.str;
    in.checkLength(out.size());
    start = at + from.str.size();
    --remaining;
  }
}

bool affixTest(const std::string& s, const CallArgs& args, bool prefix) {
  const char* name = prefix ? "startswith" : "endswith";
  if (args.positional.empty()) fail(std::string(name) + "() requires at least one argument");
  auto test = [&](const std::string& a) {
    return a.size() <= s.size() && (prefix ? s.compare(0, a.size(), a) == 0
                                           : s.compare(s.size() - a.size(), a.size(), a) == 0);
  };
  const Value& p = args.positional[0];
  if (p.is(VK::kString)) return test(p.str);
  if (!p.is(VK::kArray))
    fail(std::string(name) + "() argument must be a string or tuple of strings");
  for (const Value& e : *p.array) {
    if (!e.is(VK::kString)) fail(std::string(name) + "() tuple elements must be strings");
    if (test(e.str)) return true;
  }
  return false;
}

}  // namespace

Value Interpreter::stringMethod(const Value& sv, const std::string& name) {
  const std::string s = sv.str;
  auto unary = [](std::function<std::string(const std::string&)> f, std::string text) {
    return Value::fn([f, text](CallArgs&, Interpreter&, Scope&) { return Value::string(f(text)); });
  };
  if (name == "length") return Value::integer(static_cast<double>(utf16Length(s)));
  if (name == "upper") return unary([](const std::string& t) { return asciiUpper(t); }, s);
  if (name == "lower") return unary([](const std::string& t) { return asciiLower(t); }, s);
  if (name == "title") return unary(titleCase, s);
  if (name == "capitalize") return unary(capitalize, s);
  if (name == "strip") {
    return unary([](const std::string& t) { return std::string(trimJsWhitespace(t)); }, s);
  }
  if (name == "lstrip")
    return unary([](const std::string& t) { return std::string(jsTrimStart(t)); }, s);
  if (name == "rstrip")
    return unary([](const std::string& t) { return std::string(jsTrimEnd(t)); }, s);
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return Value::fn([s, prefix](CallArgs& args, Interpreter&, Scope&) {
      return Value::boolean_(affixTest(s, args, prefix));
    });
  }
  if (name == "split") {
    return Value::fn([s](CallArgs& args, Interpreter& in, Scope&) {
      return Value::list(splitString(s, args, in));
    });
  }
  if (name == "replace") {
    return Value::fn([s](CallArgs& args, Interpreter& in, Scope&) {
      return Value::string(replaceString(s, args, in));
    });
  }
  return Value::undefined();
}

namespace {

Array itemPairs(const Object& o) {
  Array out;
  for (const auto& [k, v] : o.entries) out.push_back(Value::list({Value::string(k), v}));
  return out;
}

Value dictsort(const Object& o, const CallArgs& args) {
  const Value* cs = boolArg(args, 0, "case_sensitive");
  const Value* by = args.get(1, "by");
  if (by != nullptr && !by->is(VK::kString)) fail("by must be a string");
  std::string by_what = by != nullptr ? by->str : "key";
  if (by_what != "key" && by_what != "value") fail("by must be either 'key' or 'value'");
  const Value* reverse = boolArg(args, 2, "reverse");
  size_t index = by_what == "key" ? 0 : 1;
  return Value::list(sorted(itemPairs(o), reverse != nullptr && reverse->boolean,
                            cs != nullptr && cs->boolean,
                            [index](const Value& pair) { return (*pair.array)[index]; }));
}

}  // namespace

Value Interpreter::dictMethod(const Value& d, const std::string& name) {
  std::shared_ptr<Object> o = d.object;
  if (name == "get") {
    return Value::fn([o](CallArgs& args, Interpreter&, Scope&) {
      Value key = args.positional.empty() ? Value::undefined() : args.positional[0];
      if (!key.is(VK::kString))
        fail(std::string("Object key must be a string: got ") + typeName(key));
      if (const Value* found = o->find(key.str)) return *found;
      return args.positional.size() > 1 ? args.positional[1] : Value::null();
    });
  }
  if (name == "items") {
    return Value::fn([o](CallArgs&, Interpreter&, Scope&) { return Value::list(itemPairs(*o)); });
  }
  if (name == "keys" || name == "values") {
    bool keys = name == "keys";
    return Value::fn([o, keys](CallArgs&, Interpreter&, Scope&) {
      Array out;
      for (const auto& [k, v] : o->entries) out.push_back(keys ? Value::string(k) : v);
      return Value::list(std::move(out));
    });
  }
  if (name == "dictsort") {
    return Value::fn([o](CallArgs& args, Interpreter&, Scope&) { return dictsort(*o, args); });
  }
  return Value::undefined();
}

// ---- Filters ------------------------------------------------------------------------------------

Value Interpreter::applyFilter(Value operand, const Node& filter, Scope& scope) {
  if (operand.is(VK::kArray)) {
    // Sorting and de-duplicating cost more than one pass; charge them by their comparisons.
    int64_t n = static_cast<int64_t>(operand.array->size());
    const std::string& name = filter.kind == Kind::kName ? filter.text : filter.a->text;
    step(name == "unique" ? n * n : name == "sort" ? n * 20 : n);
    stepBytes(stringBytes(*operand.array));  // filters copy the items they keep
  } else if (operand.isContainer()) {
    size_t bytes = 0;
    for (const auto& [key, value] : operand.object->entries) bytes += key.size() + value.str.size();
    stepBytes(bytes);  // items, dictsort and the like copy every key and value
  }
  if (filter.kind == Kind::kName) {
    if (operand.is(VK::kObject) && filter.text != "items" && filter.text != "length" &&
        filter.text != "safe" && filter.text != "tojson") {
      Value builtin = dictMethod(operand, filter.text);
      if (builtin.is(VK::kFunction)) return callNoArgs(builtin, *this, scope);
      fail("Unknown ObjectValue filter: " + filter.text);
    }
    return filterByName(std::move(operand), filter.text);
  }
  if (filter.kind != Kind::kCall || filter.a->kind != Kind::kName) fail("Unknown filter");
  return filterWithArgs(std::move(operand), filter.a->text, filter, scope);
}

Value Interpreter::filterByName(Value v, const std::string& name) {
  if (name == "safe") return v;
  if (name == "tojson") {
    return Value::string(toJson(v, JsonStyle{}, true, limits_.max_output_bytes));
  }
  auto count = [](size_t n) { return Value::integer(static_cast<double>(n)); };
  if (v.is(VK::kArray)) {
    const Array& a = *v.array;
    if (name == "list") return v;
    if (name == "first") return a.empty() ? Value::undefined() : a.front();
    if (name == "last") return a.empty() ? Value::undefined() : a.back();
    if (name == "length") return count(a.size());
    if (name == "reverse") return Value::list(Array(a.rbegin(), a.rend()));
    if (name == "sort")
      return Value::list(sorted(a, false, false, [](const Value& x) { return x; }));
    if (name == "join") return Value::string(joinRaw(a, "", limits_.max_output_bytes));
    if (name == "string") {
      return Value::string(toJson(v, JsonStyle{}, false, limits_.max_output_bytes));
    }
    if (name == "unique") {
      Array out;
      for (const Value& e : a) {
        bool seen = false;
        for (const Value& o : out) seen = seen || strictEquals(o, e);
        if (!seen) out.push_back(e);
      }
      return Value::list(std::move(out));
    }
    fail("Unknown ArrayValue filter: " + name);
  }
  if (v.is(VK::kString)) {
    const std::string& s = v.str;
    if (name == "length") return count(utf16Length(s));
    if (name == "upper") return Value::string(asciiUpper(s));
    if (name == "lower") return Value::string(asciiLower(s));
    if (name == "title") return Value::string(titleCase(s));
    if (name == "capitalize") return Value::string(capitalize(s));
    if (name == "trim") return Value::string(std::string(trimJsWhitespace(s)));
    if (name == "indent") {
      return Value::string(indentLines(s, 4, false, false, limits_.max_output_bytes));
    }
    if (name == "join" || name == "string") return v;
    if (name == "int" || name == "float") {
      double n = name == "int" ? parseIntJs(s) : parseFloatJs(s);
      if (std::isnan(n)) n = 0;
      return name == "int" ? Value::integer(n) : Value::floating(n);
    }
    fail("Unknown StringValue filter: " + name);
  }
  if (v.isNumber()) {
    if (name == "abs")
      return v.is(VK::kInt) ? Value::integer(std::fabs(v.number))
                            : Value::floating(std::fabs(v.number));
    if (name == "int") return Value::integer(std::floor(v.number));
    if (name == "float") return Value::floating(v.number);
    if (name == "string") return Value::string(toOutput(v, limits_.max_output_bytes));
    fail("Unknown NumericValue filter: " + name);
  }
  if (v.is(VK::kObject)) {
    if (name == "items") return Value::list(itemPairs(*v.object));
    if (name == "length") return count(v.object->entries.size());
  }
  if (v.is(VK::kBool)) {
    if (name == "bool") return v;
    if (name == "int") return Value::integer(v.boolean ? 1 : 0);
    if (name == "float") return Value::floating(v.boolean ? 1 : 0);
    if (name == "string") return Value::string(v.boolean ? "true" : "false");
    fail("Unknown BooleanValue filter: " + name);
  }
  fail("Cannot apply filter \"" + name + "\" to type: " + typeName(v));
}

namespace {

// `n` clamped to [0, hi], NaN read as 0: safe to cast to an integer type.
double clampNumber(double n, double hi) { return std::isnan(n) ? 0 : std::clamp(n, 0.0, hi); }

JsonStyle jsonStyle(const CallArgs& args) {
  JsonStyle style;
  const Value* indent = args.kwarg("indent");
  if (indent != nullptr && !indent->is(VK::kNull)) {
    if (!indent->is(VK::kInt)) fail("If set, indent must be a number");
    style.indent = static_cast<int>(clampNumber(indent->number, 64));
  }
  const Value* ascii = args.kwarg("ensure_ascii");
  if (ascii != nullptr && !ascii->is(VK::kBool)) fail("If set, ensure_ascii must be a boolean");
  style.ensure_ascii = ascii != nullptr && ascii->boolean;
  const Value* sort = args.kwarg("sort_keys");
  if (sort != nullptr && !sort->is(VK::kBool)) fail("If set, sort_keys must be a boolean");
  style.sort_keys = sort != nullptr && sort->boolean;
  const Value* seps = args.kwarg("separators");
  if (seps != nullptr && !seps->is(VK::kNull)) {
    if (!seps->is(VK::kArray) || seps->array->size() != 2 || !(*seps->array)[0].is(VK::kString) ||
        !(*seps->array)[1].is(VK::kString)) {
      fail("separators must be a tuple of two strings");
    }
    style.has_separators = true;
    style.item_sep = (*seps->array)[0].str;
    style.key_sep = (*seps->array)[1].str;
  }
  return style;
}

}  // namespace

Value Interpreter::filterWithArgs(Value v, const std::string& name, const Node& call,
                                  Scope& scope) {
  if (name == "tojson") {
    std::string json =
        toJson(v, jsonStyle(evalArgs(call.items, scope)), true, limits_.max_output_bytes);
    checkLength(json.size());
    return Value::string(std::move(json));
  }
  if (name == "join") {
    if (!v.is(VK::kString) && !v.is(VK::kArray)) {
      fail("Cannot apply filter \"join\" to type: " + std::string(typeName(v)));
    }
    CallArgs args = evalArgs(call.items, scope);
    const Value* sep = args.get(0, "separator");
    if (sep != nullptr && !sep->is(VK::kString)) fail("separator must be a string");
    std::string s = sep != nullptr ? sep->str : "";
    Array items;
    if (v.is(VK::kString)) {
      for (std::string& c : codePoints(v.str)) items.push_back(Value::string(std::move(c)));
    }
    std::string out = joinRaw(v.is(VK::kString) ? items : *v.array, s, limits_.max_output_bytes);
    checkLength(out.size());
    return Value::string(std::move(out));
  }
  if (name == "int" || name == "float") {
    CallArgs args = evalArgs(call.items, scope);
    const Value* d = args.get(0, "default");
    Value fallback = d != nullptr ? *d : name == "int" ? Value::integer(0) : Value::floating(0);
    if (v.is(VK::kString)) {
      double n = name == "int" ? parseIntJs(v.str) : parseFloatJs(v.str);
      if (std::isnan(n)) return fallback;
      return name == "int" ? Value::integer(n) : Value::floating(n);
    }
    if (v.isNumber()) return v;
    if (v.is(VK::kBool)) {
      return name == "int" ? Value::integer(v.boolean) : Value::floating(v.boolean);
    }
    fail("Cannot apply filter \"" + name + "\" to type: " + typeName(v));
  }
  if (name == "default") {
    CallArgs args = evalArgs(call.items, scope);
    Value fallback = args.positional.empty() ? Value::string("") : args.positional[0];
    const Value* boolean = boolArg(args, 1, "boolean");
    bool on_falsy = boolean != nullptr && boolean->boolean;
    return v.is(VK::kUndefined) || (on_falsy && !truthy(v)) ? fallback : v;
  }
  if (v.is(VK::kArray)) return arrayFilterWithArgs(std::move(v), name, call, scope);
  if (v.is(VK::kString)) {
    CallArgs args = evalArgs(call.items, scope);
    if (name == "indent") {
      const Value* width = args.get(0, "width");
      if (width != nullptr && !width->is(VK::kInt)) fail("width must be a number");
      size_t w = width != nullptr ? static_cast<size_t>(clampNumber(width->number, 1024)) : 4;
      const Value* first = args.get(1, "first");
      const Value* blank = args.get(2, "blank");
      std::string out = indentLines(v.str, w, first != nullptr && truthy(*first),
                                    blank != nullptr && truthy(*blank), limits_.max_output_bytes);
      checkLength(out.size());
      return Value::string(std::move(out));
    }
    if (name == "replace") return Value::string(replaceString(v.str, args, *this));
    fail("Unknown StringValue filter: " + name);
  }
  if (v.is(VK::kObject)) {
    Value builtin = dictMethod(v, name);
    if (!builtin.is(VK::kFunction)) fail("Unknown ObjectValue filter: " + name);
    CallArgs args = evalArgs(call.items, scope);
    return (*builtin.function)(args, *this, scope);
  }
  fail("Cannot apply filter \"" + name + "\" to type: " + typeName(v));
}

Value Interpreter::arrayFilterWithArgs(Value v, const std::string& name, const Node& call,
                                       Scope& scope) {
  const Array& items = *v.array;
  if (name == "sort") {
    CallArgs args = evalArgs(call.items, scope);
    const Value* reverse = boolArg(args, 0, "reverse");
    const Value* cs = boolArg(args, 1, "case_sensitive");
    const Value* attr = args.get(2, "attribute");
    if (attr != nullptr && !attr->is(VK::kString) && !attr->is(VK::kInt) && !attr->is(VK::kNull)) {
      fail("attribute must be a string, integer, or null");
    }
    std::string path;
    bool by_attr = attr != nullptr && !attr->is(VK::kNull);
    if (by_attr) path = attr->is(VK::kString) ? attr->str : jsNumber(attr->number);
    return Value::list(
        sorted(items, reverse != nullptr && reverse->boolean, cs != nullptr && cs->boolean,
               [&](const Value& x) { return by_attr ? getAttributePath(x, path) : x; }));
  }
  if (name == "selectattr" || name == "rejectattr") {
    bool select = name == "selectattr";
    for (const Value& e : items) {
      if (!e.isContainer()) fail("`" + name + "` can only be applied to array of objects");
    }
    for (const NodePtr& a : call.items) {
      if (a->kind != Kind::kString) fail("arguments of `" + name + "` must be strings");
    }
    std::string attr = call.items.size() > 0 ? call.items[0]->text : "undefined";
    const std::string* test = call.items.size() > 1 ? &call.items[1]->text : nullptr;
    Value arg = call.items.size() > 2 ? Value::string(call.items[2]->text) : Value::undefined();
    Array out;
    for (const Value& e : items) {
      const Value* a = e.object->find(attr);
      bool result = a != nullptr && (test != nullptr ? applyTest(*test, *a, &arg) : truthy(*a));
      if (result == select) out.push_back(e);
    }
    return Value::list(std::move(out));
  }
  if (name == "map") {
    CallArgs args = evalArgs(call.items, scope);
    const Value* attr = args.kwarg("attribute");
    if (attr == nullptr) {
      fail("`map` expressions without `attribute` set are not currently supported.");
    }
    if (!attr->is(VK::kString)) fail("attribute must be a string");
    const Value* fallback = args.kwarg("default");
    Array out;
    for (const Value& e : items) {
      if (!e.isContainer()) fail("items in map must be an object");
      Value got = getAttributePath(e, attr->str);
      out.push_back(got.is(VK::kUndefined) && fallback != nullptr ? *fallback : got);
    }
    return Value::list(std::move(out));
  }
  fail("Unknown ArrayValue filter: " + name);
}

// ---- Globals ------------------------------------------------------------------------------------

namespace {

Value range(CallArgs& args, Interpreter& in) {
  auto num = [](const Value& v) -> double {
    if (!v.isNumber()) fail("range() arguments must be numbers");
    return v.number;
  };
  if (args.positional.empty()) fail("range() expects at least one argument");
  double start = 0, stop = 0, step = 1;
  if (args.positional.size() == 1) {
    stop = num(args.positional[0]);
  } else {
    start = num(args.positional[0]);
    stop = num(args.positional[1]);
    if (args.positional.size() > 2) step = num(args.positional[2]);
  }
  if (step == 0) fail("range() step must not be zero");
  double count = std::ceil((stop - start) / step);
  // A step so large that the quotient underflows still takes the start.
  if (count == 0 && (step > 0 ? start < stop : start > stop)) count = 1;
  const size_t n = count > 0 ? static_cast<size_t>(std::min(count, 1e15)) : 0;  // NaN: none
  in.checkItems(n);
  Array out;
  // Counted, not `i += step` until stop: at 2^60 adding 1 leaves i where it was.
  for (size_t k = 0; k < n; ++k) {
    double i = k == 0 ? start : start + static_cast<double>(k) * step;  // 0 * inf is NaN
    out.push_back(i == std::floor(i) ? Value::integer(i) : Value::floating(i));
  }
  return Value::list(std::move(out));
}

Value makeNamespace(CallArgs& args) {
  if (args.positional.size() > 1) {
    fail("namespace expected at most 1 argument, got " + std::to_string(args.positional.size()));
  }
  Object o;
  if (args.positional.size() == 1) {
    const Value& src = args.positional[0];
    if (src.is(VK::kObject)) {
      o = *src.object;
    } else if (src.is(VK::kArray)) {
      for (const Value& pair : *src.array) {
        if (!pair.is(VK::kArray) || pair.array->size() != 2 || !(*pair.array)[0].is(VK::kString)) {
          fail("namespace expected an object or an iterable of [key, value] pairs");
        }
        o.set((*pair.array)[0].str, (*pair.array)[1]);
      }
    } else {
      fail(std::string("'") + typeName(src) + "' object is not iterable");
    }
  }
  for (const auto& [k, v] : args.keyword) o.set(k, v);
  return Value::ns(std::move(o));
}

std::string strftimeNow(const std::string& format) {
  static const char* kMonths[] = {"January",   "February", "March",    "April",
                                  "May",       "June",     "July",     "August",
                                  "September", "October",  "November", "December"};
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  auto pad2 = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 == format.size()) {
      out += format[i];
      continue;
    }
    char c = format[++i];
    switch (c) {
      case 'Y':
        out += std::to_string(tm.tm_year + 1900);
        break;
      case 'm':
        out += pad2(tm.tm_mon + 1);
        break;
      case 'd':
        out += pad2(tm.tm_mday);
        break;
      case 'b':
        out += std::string(kMonths[tm.tm_mon]).substr(0, 3);
        break;
      case 'B':
        out += kMonths[tm.tm_mon];
        break;
      case 'H':
        out += pad2(tm.tm_hour);
        break;
      case 'M':
        out += pad2(tm.tm_min);
        break;
      case '%':
        out += '%';
        break;
      default:
        out += '%';
        out += c;
        break;
    }
  }
  return out;
}

}  // namespace

void installGlobals(Scope& globals) {
  globals.vars["false"] = globals.vars["False"] = Value::boolean_(false);
  globals.vars["true"] = globals.vars["True"] = Value::boolean_(true);
  globals.vars["none"] = globals.vars["None"] = Value::null();
  globals.vars["raise_exception"] = Value::fn([](CallArgs& args, Interpreter& in, Scope&) -> Value {
    fail(args.positional.empty() ? "raise_exception()"
                                 : toJsString(args.positional[0], in.limits().max_output_bytes));
  });
  globals.vars["range"] =
      Value::fn([](CallArgs& args, Interpreter& in, Scope&) { return range(args, in); });
  globals.vars["namespace"] =
      Value::fn([](CallArgs& args, Interpreter&, Scope&) { return makeNamespace(args); });
  globals.vars["strftime_now"] = Value::fn([](CallArgs& args, Interpreter& in, Scope&) {
    std::string format =
        args.positional.empty() ? "" : toJsString(args.positional[0], in.limits().max_output_bytes);
    return Value::string(strftimeNow(format));
  });
}

}  // namespace engine::jinja
