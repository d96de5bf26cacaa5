// Runtime values of the Jinja engine: conversion from JSON, truthiness, printing, JSON output,
// equality and ordering, each as @huggingface/jinja (JavaScript semantics) has them.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/jinja_internal.h"
#include "engine/tokenizer.h"

namespace engine::jinja {

void fail(const std::string& message) { throw Error(message); }

Value Value::null() {
  Value v;
  v.kind = Kind::kNull;
  return v;
}
Value Value::boolean_(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.boolean = b;
  return v;
}
Value Value::integer(double n) {
  Value v;
  v.kind = Kind::kInt;
  v.number = n;
  return v;
}
Value Value::floating(double n) {
  Value v;
  v.kind = Kind::kFloat;
  v.number = n;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind = Kind::kString;
  v.str = std::move(s);
  return v;
}
namespace {

// Sets `v`'s depth and holds_namespace from one of its children.
void account(Value& v, const Value& child) {
  int depth = child.depth + 1;
  if (depth > kMaxValueDepth) {
    fail("values nest deeper than " + std::to_string(kMaxValueDepth) + " levels");
  }
  v.depth = std::max<uint16_t>(v.depth, static_cast<uint16_t>(depth));
  v.holds_namespace =
      v.holds_namespace || child.holds_namespace || child.kind == Value::Kind::kNamespace;
}

}  // namespace

Value Value::list(Array items, bool is_tuple) {
  Value v;
  v.kind = Kind::kArray;
  v.tuple = is_tuple;
  v.depth = 1;
  for (const Value& e : items) account(v, e);
  v.array = std::make_shared<Array>(std::move(items));
  return v;
}
Value Value::dict(Object o) {
  Value v;
  v.kind = Kind::kObject;
  v.depth = 1;
  for (const auto& [k, e] : o.entries) account(v, e);
  v.object = std::make_shared<Object>(std::move(o));
  return v;
}
Value Value::ns(Object o) {
  Value v = dict(std::move(o));
  if (v.holds_namespace) fail("a namespace cannot hold another namespace");
  v.kind = Kind::kNamespace;
  return v;
}
Value Value::fn(Function f) {
  Value v;
  v.kind = Kind::kFunction;
  v.function = std::make_shared<const Function>(std::move(f));
  return v;
}

namespace {

// A canonical array index ("0", "17"; no sign or leading zero): JavaScript lists such keys of
// a plain object first, in numeric order, whatever order they were written in.
bool isArrayIndex(const std::string& key) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return false;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
  }
  return std::stoull(key) < 4294967295ull;
}

}  // namespace

Value Value::fromJson(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return null();
    case Json::value_t::boolean:
      return boolean_(j.get<bool>());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return integer(j.get<double>());
    case Json::value_t::number_float: {
      double d = j.get<double>();
      return std::isfinite(d) && d == std::floor(d) ? integer(d) : floating(d);
    }
    case Json::value_t::string:
      return string(j.get<std::string>());
    case Json::value_t::array: {
      Array items;
      items.reserve(j.size());
      for (const Json& e : j) items.push_back(fromJson(e));
      return list(std::move(items));
    }
    case Json::value_t::object: {
      Object o;
      std::vector<std::pair<uint64_t, const std::string*>> indices;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (isArrayIndex(it.key())) indices.emplace_back(std::stoull(it.key()), &it.key());
      }
      std::sort(indices.begin(), indices.end());
      for (const auto& [n, key] : indices) o.entries.emplace_back(*key, fromJson(j.at(*key)));
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!isArrayIndex(it.key())) o.entries.emplace_back(it.key(), fromJson(it.value()));
      }
      return dict(std::move(o));
    }
    default:
      return undefined();
  }
}

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(const std::string& key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

const Value* CallArgs::kwarg(std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

const Value* CallArgs::get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  return kwarg(name);
}

Value Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  return Value::undefined();
}

const char* typeName(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "UndefinedValue";
    case Value::Kind::kNull:
      return "NullValue";
    case Value::Kind::kBool:
      return "BooleanValue";
    case Value::Kind::kInt:
      return "IntegerValue";
    case Value::Kind::kFloat:
      return "FloatValue";
    case Value::Kind::kString:
      return "StringValue";
    case Value::Kind::kArray:
      return v.tuple ? "TupleValue" : "ArrayValue";
    case Value::Kind::kObject:
      return "ObjectValue";
    case Value::Kind::kNamespace:
      return "NamespaceValue";
    case Value::Kind::kFunction:
      return "FunctionValue";
  }
  return "RuntimeValue";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNull:
      return false;
    case Value::Kind::kBool:
      return v.boolean;
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      return v.number != 0 && !std::isnan(v.number);
    case Value::Kind::kString:
      return !v.str.empty();
    case Value::Kind::kArray:
      return !v.array->empty();
    case Value::Kind::kObject:
      return !v.object->entries.empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      return true;
  }
  return false;
}

std::string jsNumber(double n) {
  if (std::isnan(n)) return "NaN";
  if (std::isinf(n)) return n < 0 ? "-Infinity" : "Infinity";
  if (n == 0) return "0";
  std::string sign = n < 0 ? "-" : "";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(n), std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int k = static_cast<int>(digits.size());
  int point = std::atoi(sci.c_str() + e + 1) + 1;  // digits[0..point) are the integer part
  if (k <= point && point <= 21) return sign + digits + std::string(point - k, '0');
  if (0 < point && point <= 21) return sign + digits.substr(0, point) + "." + digits.substr(point);
  if (-6 < point && point <= 0) return sign + "0." + std::string(-point, '0') + digits;
  std::string exp = (point - 1 >= 0 ? "+" : "-") + std::to_string(std::abs(point - 1));
  std::string mantissa = k == 1 ? digits : digits.substr(0, 1) + "." + digits.substr(1);
  return sign + mantissa + "e" + exp;
}

namespace {

// FloatValue.toString: integral values keep one decimal (toFixed(1)).
std::string floatString(double n) {
  if (n == 0 && std::signbit(n)) return "-0.0";
  if (std::isfinite(n) && n == std::floor(n) && std::fabs(n) < 1e21) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", n);
    return buf;
  }
  return jsNumber(n);
}

// RuntimeValue.toString of a list element (what Array.prototype.join calls).
std::string elementString(const Value& v, size_t max_bytes) {
  if (v.isNullish()) return "undefined";
  return toOutput(v, max_bytes);
}

void appendJsonString(std::string& out, std::string_view s, bool ensure_ascii) {
  static const char* kHex = "0123456789abcdef";
  auto unit = [&](uint32_t u) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(u >> shift) & 0xF];
  };
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      unit(c);
    } else if (c < 0x7F || !ensure_ascii) {
      out += static_cast<char>(c);
    } else if (c == 0x7F) {
      unit(c);
    } else {
      size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      uint32_t cp = c & (len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F);
      for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
      i += len - 1;
      if (cp > 0xFFFF) {
        cp -= 0x10000;
        unit(0xD800 + (cp >> 10));
        unit(0xDC00 + (cp & 0x3FF));
      } else {
        unit(cp);
      }
    }
  }
  out += '"';
}

}  // namespace

void checkBuilt(size_t bytes, size_t max_bytes) {
  if (bytes > max_bytes) fail("rendering exceeded " + std::to_string(max_bytes) + " bytes");
}

std::string toOutput(const Value& v, size_t max_bytes) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNull:
      return "";
    case Value::Kind::kBool:
      return v.boolean ? "true" : "false";
    case Value::Kind::kInt:
      return jsNumber(v.number);
    case Value::Kind::kFloat:
      return floatString(v.number);
    case Value::Kind::kString:
      return v.str;
    case Value::Kind::kArray:
    case Value::Kind::kObject:
    case Value::Kind::kNamespace:
      return toJson(v, JsonStyle{}, false, max_bytes);
    case Value::Kind::kFunction:
      return "[function]";
  }
  return "";
}

std::string toJsString(const Value& v, size_t max_bytes) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNull:
      return "undefined";
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      return jsNumber(v.number);
    case Value::Kind::kArray: {
      std::string out;
      for (size_t i = 0; i < v.array->size(); ++i) {
        if (i > 0) out += ',';
        out += elementString((*v.array)[i], max_bytes);
        checkBuilt(out.size(), max_bytes);
      }
      return out;
    }
    case Value::Kind::kObject:
    case Value::Kind::kNamespace:
      return "[object Map]";
    default:
      return toOutput(v, max_bytes);
  }
}

namespace {

// Appends `v` as JSON to `out`, failing once `out` holds more than `max_bytes`. Indentation is
// written as it goes (never built per container), so output is the only cost.
void appendJson(std::string& out, const Value& v, const JsonStyle& style, int depth,
                bool undefined_as_null, size_t max_bytes) {
  switch (v.kind) {
    case Value::Kind::kNull:
      out += "null";
      return;
    case Value::Kind::kUndefined:
      out += undefined_as_null ? "null" : "undefined";
      return;
    case Value::Kind::kBool:
      out += v.boolean ? "true" : "false";
      return;
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      out += std::isfinite(v.number) ? jsNumber(v.number) : "null";
      return;
    case Value::Kind::kString:
      appendJsonString(out, v.str, style.ensure_ascii);
      checkBuilt(out.size(), max_bytes);
      return;
    case Value::Kind::kFunction:
      fail("Cannot convert to JSON: FunctionValue");
    case Value::Kind::kArray:
      if (v.tuple) fail("Cannot convert to JSON: TupleValue");  // as the reference does
      break;
    default:
      break;
  }
  if (depth > 2 * kMaxValueDepth) fail("values nest too deeply to write");
  const std::string_view item_sep = style.has_separators ? std::string_view(style.item_sep)
                                    : style.indent       ? ","
                                                         : ", ";
  const std::string_view key_sep = style.has_separators ? std::string_view(style.key_sep) : ": ";
  auto newline = [&](int level) {
    out += '\n';
    out.append(static_cast<size_t>(level) * static_cast<size_t>(style.indent), ' ');
  };
  const bool array = v.kind == Value::Kind::kArray;
  out += array ? '[' : '{';
  size_t written = 0;
  auto item = [&](const std::string* key, const Value& value) {
    if (written++ > 0) out += item_sep;
    if (style.indent) newline(depth + 1);
    if (key != nullptr) {
      appendJsonString(out, *key, style.ensure_ascii);
      out += key_sep;
    }
    checkBuilt(out.size(), max_bytes);
    appendJson(out, value, style, depth + 1, undefined_as_null, max_bytes);
  };
  if (array) {
    for (const Value& e : *v.array) item(nullptr, e);
  } else {
    std::vector<const std::pair<std::string, Value>*> entries;
    for (const auto& e : v.object->entries) entries.push_back(&e);
    if (style.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
    for (const auto* e : entries) item(&e->first, e->second);
  }
  if (style.indent && written > 0) newline(depth);
  out += array ? ']' : '}';
  checkBuilt(out.size(), max_bytes);
}

}  // namespace

std::string toJson(const Value& v, const JsonStyle& style, bool undefined_as_null,
                   size_t max_bytes) {
  std::string out;
  appendJson(out, v, style, 0, undefined_as_null, max_bytes);
  return out;
}

namespace {

// JavaScript's ToNumber of a string.
double stringToNumber(std::string_view s) {
  s = jsTrimEnd(jsTrimStart(s));
  if (s.empty()) return 0;
  if (s == "Infinity" || s == "+Infinity") return INFINITY;
  if (s == "-Infinity") return -INFINITY;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    double n = 0;
    for (char c : s.substr(2)) {
      int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
              : (c | 0x20) >= 'a' && (c | 0x20) <= 'f'    ? (c | 0x20) - 'a' + 10
                                                          : -1;
      if (d < 0) return NAN;
      n = n * 16 + d;
    }
    return n;
  }
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != 'e' && c != 'E' &&
        c != '+' && c != '-') {
      return NAN;
    }
  }
  std::string text(s);
  char* end = nullptr;
  double n = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() ? n : NAN;
}

bool isReference(const Value& v) {
  return v.kind == Value::Kind::kArray || v.isContainer() || v.kind == Value::Kind::kFunction;
}

bool sameReference(const Value& a, const Value& b) {
  if (a.kind == Value::Kind::kArray && b.kind == Value::Kind::kArray) return a.array == b.array;
  if (a.isContainer() && b.isContainer()) return a.object == b.object;
  if (a.kind == Value::Kind::kFunction && b.kind == Value::Kind::kFunction) {
    return a.function == b.function;
  }
  return false;
}

}  // namespace

size_t stringBytes(const Array& items) {
  size_t bytes = 0;
  for (const Value& v : items) bytes += v.str.size();
  return bytes;
}

bool looseEquals(const Value& a, const Value& b, size_t max_bytes) {
  if (a.isNullish() || b.isNullish()) return a.isNullish() && b.isNullish();
  if (isReference(a) && isReference(b)) return sameReference(a, b);
  if (isReference(a)) return looseEquals(Value::string(toJsString(a, max_bytes)), b, max_bytes);
  if (isReference(b)) return looseEquals(a, Value::string(toJsString(b, max_bytes)), max_bytes);
  if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) return a.str == b.str;
  auto number = [](const Value& v) {
    if (v.kind == Value::Kind::kBool) return v.boolean ? 1.0 : 0.0;
    if (v.kind == Value::Kind::kString) return stringToNumber(v.str);
    return v.number;
  };
  return number(a) == number(b);
}

bool strictEquals(const Value& a, const Value& b) {
  if (a.isNullish() || b.isNullish()) return a.isNullish() && b.isNullish();
  if (a.isNumber() && b.isNumber()) return a.number == b.number;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kBool:
      return a.boolean == b.boolean;
    case Value::Kind::kString:
      return a.str == b.str;
    default:
      return sameReference(a, b);
  }
}

int compareValues(const Value& a, const Value& b, bool case_sensitive) {
  auto cannot = [&]() {
    fail(std::string("Cannot compare ") + typeName(a) + " with " + typeName(b));
  };
  if (a.is(Value::Kind::kNull) || b.is(Value::Kind::kNull)) {
    if (a.kind == b.kind) return 0;
    cannot();
  }
  if (a.is(Value::Kind::kUndefined) || b.is(Value::Kind::kUndefined)) {
    if (a.kind == b.kind) return 0;
    cannot();
  }
  auto numeric = [](const Value& v) { return v.isNumber() || v.is(Value::Kind::kBool); };
  if (numeric(a) && numeric(b)) {
    double x = a.is(Value::Kind::kBool) ? a.boolean : a.number;
    double y = b.is(Value::Kind::kBool) ? b.boolean : b.number;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind != b.kind) {
    fail(std::string("Cannot compare different types: ") + typeName(a) + " and " + typeName(b));
  }
  if (a.kind != Value::Kind::kString) fail(std::string("Cannot compare type: ") + typeName(a));
  std::string x = case_sensitive ? a.str : asciiLower(a.str);
  std::string y = case_sensitive ? b.str : asciiLower(b.str);
  return x < y ? -1 : x > y ? 1 : 0;
}

namespace {

// The length of the UTF-8 sequence starting with `c` (1 for a stray byte).
size_t sequenceLength(unsigned char c) { return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1; }

}  // namespace

size_t utf16Length(std::string_view s) {
  size_t units = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len = std::min(sequenceLength(static_cast<unsigned char>(s[i])), s.size() - i);
    units += len == 4 ? 2 : 1;
    i += len;
  }
  return units;
}

std::vector<std::string> codePoints(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = std::min(sequenceLength(static_cast<unsigned char>(s[i])), s.size() - i);
    out.emplace_back(s.substr(i, len));
    i += len;
  }
  return out;
}

std::string asciiUpper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

std::string asciiLower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

namespace {

// The length of the JavaScript whitespace character that starts at s[i], else 0. Each one is
// one to three bytes of well-formed UTF-8; ill-formed bytes are never whitespace.
size_t whitespaceLengthAt(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  auto cont = [&](size_t k) { return (byte(k) & 0xC0) == 0x80; };
  const unsigned lead = byte(i);
  if (lead < 0x80) return isJsWhitespace(lead) ? 1 : 0;
  if (lead >= 0xC2 && lead <= 0xDF && cont(i + 1)) {
    return isJsWhitespace(((lead & 0x1F) << 6) | (byte(i + 1) & 0x3F)) ? 2 : 0;
  }
  if ((lead & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
    char32_t cp = ((lead & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F);
    return cp >= 0x800 && isJsWhitespace(cp) ? 3 : 0;  // below 0x800: an overlong form
  }
  return 0;
}

}  // namespace

// Each scans its own end only, so that a caller that trims piece by piece stays linear.
std::string_view jsTrimStart(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t n = whitespaceLengthAt(s, begin);
    if (n == 0) break;
    begin += n;
  }
  return s.substr(begin);
}

std::string_view jsTrimEnd(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t n = 0;
    for (size_t len = 1; len <= 3 && len <= end && n == 0; ++len) {
      if (whitespaceLengthAt(s, end - len) == len) n = len;
    }
    if (n == 0) break;
    end -= n;
  }
  return s.substr(0, end);
}

}  // namespace engine::jinja
