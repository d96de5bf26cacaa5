#include "api/json_text.h"

#include <cstddef>

namespace api {
namespace {

Status malformed(std::string_view what) {
  return invalidRequest("not a JSON object: " + std::string(what), "");
}

void skipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
}

// s[i] is the opening quote; leaves i after the closing one.
bool skipString(std::string_view s, size_t& i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      ++i;
      return true;
    }
  }
  return false;
}

// Leaves i after one value: a string, a bracketed value (nested brackets and strings
// skipped), or a literal or number (up to the next delimiter).
bool skipValue(std::string_view s, size_t& i) {
  if (i >= s.size()) return false;
  if (s[i] == '"') return skipString(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        if (!skipString(s, i)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') --depth;
      ++i;
      if (depth == 0) return true;
    }
    return false;
  }
  const size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
         s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
    ++i;
  }
  return i > start;
}

}  // namespace

StatusOr<std::string> editTopLevelMembers(std::string_view s,
                                          const std::vector<MemberEdit>& edits) {
  size_t i = 0;
  skipSpace(s, i);
  if (i >= s.size() || s[i] != '{') return malformed("no opening brace");
  ++i;
  std::vector<std::string_view> kept;  // "key":value, as written
  skipSpace(s, i);
  if (i < s.size() && s[i] == '}') {
    ++i;
  } else {
    while (true) {
      skipSpace(s, i);
      if (i >= s.size() || s[i] != '"') return malformed("a member without a key");
      const size_t key_start = i;
      if (!skipString(s, i)) return malformed("an unterminated key");
      Json key = Json::parse(s.substr(key_start, i - key_start), nullptr, false);
      if (!key.is_string()) return malformed("a key that is not a string");
      skipSpace(s, i);
      if (i >= s.size() || s[i] != ':') return malformed("a key without a colon");
      ++i;
      skipSpace(s, i);
      if (!skipValue(s, i)) return malformed("a member without a value");
      const std::string& name = key.get_ref<const std::string&>();
      bool edited = false;
      for (const MemberEdit& e : edits) edited = edited || e.key == name;
      if (!edited) kept.push_back(s.substr(key_start, i - key_start));
      skipSpace(s, i);
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == '}') {
        ++i;
        break;
      }
      return malformed("a member not followed by ',' or '}'");
    }
  }
  skipSpace(s, i);
  if (i != s.size()) return malformed("text after the closing brace");

  std::string out = "{";
  for (const MemberEdit& e : edits) {
    if (!e.value) continue;
    if (out.size() > 1) out += ',';
    out += Json(e.key).dump();
    out += ':';
    out += e.value->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  for (std::string_view member : kept) {
    if (out.size() > 1) out += ',';
    out.append(member);
  }
  out += '}';
  return out;
}

}  // namespace api
