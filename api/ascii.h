// ASCII-only case mapping for protocol text: HTTP header names, auth schemes, YAML keywords,
// identifiers.
//
// std::tolower/std::toupper are undefined for a negative `char` (every byte above 0x7F where
// char is signed) and follow the C locale, so that the same bytes could compare differently
// from one process to the next. These map 'A'-'Z' and 'a'-'z' only and leave every other byte,
// UTF-8 included, as it is. Use them everywhere instead of <cctype>'s.
#pragma once

#include <string>
#include <string_view>

namespace api {

constexpr char asciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr char asciiUpper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

inline std::string asciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = asciiLower(c);
  return out;
}

inline std::string asciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = asciiUpper(c);
  return out;
}

// True when `a` and `b` differ at most in the case of ASCII letters.
constexpr bool equalsIgnoringAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  }
  return true;
}

}  // namespace api
