#include "quality/text_metrics.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <unordered_map>
#include <utility>

namespace quality {
namespace {

// ---- UTF-8 and character classes
// ------------------------------------------------------------------------------

// Decodes the UTF-8 sequence that starts at s[i] (a byte >= 0x80) into *cp and returns its
// length, or 0 when the bytes there are not a valid sequence (a stray continuation byte, an
// overlong form, a surrogate, a value past U+10FFFF, or a sequence cut by the end).
size_t decodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  uint32_t value = 0;
  uint32_t smallest = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2, value = lead & 0x1Fu, smallest = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3, value = lead & 0x0Fu, smallest = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4, value = lead & 0x07u, smallest = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0u) != 0x80u) return 0;
    value = (value << 6) | (b & 0x3Fu);
  }
  if (value < smallest || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return len;
}

struct CodeRange {
  uint32_t lo;
  uint32_t hi;
};

bool inRanges(uint32_t cp, std::initializer_list<CodeRange> ranges) {
  for (const CodeRange& r : ranges) {
    if (cp >= r.lo && cp <= r.hi) return true;
  }
  return false;
}

// Scripts written without spaces between words: each character is its own token, which is
// what ROUGE and F1 implementations for Chinese and Japanese commonly compare.
bool isCjk(uint32_t cp) {
  return inRanges(cp, {
                          {0x1100, 0x11FF},    // Hangul Jamo
                          {0x3040, 0x30FF},    // Hiragana, Katakana
                          {0x3100, 0x31FF},    // Bopomofo, Hangul compatibility Jamo, ...
                          {0x3400, 0x4DBF},    // CJK extension A
                          {0x4E00, 0x9FFF},    // CJK unified ideographs
                          {0xA960, 0xA97F},    // Hangul Jamo extended A
                          {0xAC00, 0xD7FF},    // Hangul syllables, Jamo extended B
                          {0xF900, 0xFAFF},    // CJK compatibility ideographs
                          {0xFF66, 0xFFDC},    // halfwidth Katakana and Hangul
                          {0x20000, 0x3FFFF},  // CJK extensions B and later
                      });
}

// Non-ASCII spaces, punctuation and symbols: they end a word like ASCII punctuation does.
bool isSeparator(uint32_t cp) {
  return inRanges(cp, {
                          {0x0080, 0x00BF},  // C1 controls, no-break space, Latin-1 signs
                          {0x00D7, 0x00D7},  // multiplication sign
                          {0x00F7, 0x00F7},  // division sign
                          {0x2000, 0x2BFF},  // spaces, punctuation, arrows, math, shapes
                          {0x2E00, 0x2E7F},  // supplemental punctuation
                          {0x3000, 0x303F},  // CJK symbols and punctuation
                          {0xFE10, 0xFE1F},  // vertical forms
                          {0xFE30, 0xFE6F},  // CJK compatibility forms, small forms
                          {0xFEFF, 0xFEFF},  // byte order mark
                          {0xFF00, 0xFF0F},  // fullwidth punctuation
                          {0xFF1A, 0xFF20},
                          {0xFF3B, 0xFF40},
                          {0xFF5B, 0xFF65},
                          {0x1F000, 0x1FAFF},  // emoji and pictographs
                      });
}

bool isAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char toLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool isAsciiSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// ---- exact match
// ------------------------------------------------------------------------------

std::string collapseWhitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char ch : s) {
    if (isAsciiSpace(static_cast<unsigned char>(ch))) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += ch;
  }
  return out;
}

// ---- F1 and ROUGE-L
// ------------------------------------------------------------------------------

double fMeasure(double overlap, size_t local_n, size_t cloud_n) {
  if (local_n == 0 && cloud_n == 0) return 1;
  if (local_n == 0 || cloud_n == 0 || overlap <= 0) return 0;
  const double precision = overlap / static_cast<double>(local_n);
  const double recall = overlap / static_cast<double>(cloud_n);
  return 2 * precision * recall / (precision + recall);
}

double tokenF1(const std::vector<std::string>& local, const std::vector<std::string>& cloud) {
  std::unordered_map<std::string_view, int64_t> counts;
  counts.reserve(cloud.size());
  for (const std::string& t : cloud) ++counts[t];
  int64_t common = 0;
  for (const std::string& t : local) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  return fMeasure(static_cast<double>(common), local.size(), cloud.size());
}

// Length of the longest common subsequence, with one row of the DP table over the shorter
// sequence: O(n * m) time, O(min(n, m)) memory.
size_t lcsLength(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const std::vector<int32_t>& rows = a.size() >= b.size() ? a : b;
  const std::vector<int32_t>& cols = a.size() >= b.size() ? b : a;
  std::vector<int32_t> row(cols.size() + 1, 0);
  for (int32_t x : rows) {
    int32_t diagonal = 0;  // row[j - 1] of the previous row
    for (size_t j = 1; j <= cols.size(); ++j) {
      const int32_t above = row[j];
      row[j] = x == cols[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
      diagonal = above;
    }
  }
  return static_cast<size_t>(row.back());
}

double rougeL(const std::vector<std::string>& local, const std::vector<std::string>& cloud) {
  const size_t n = std::min(local.size(), kRougeMaxTokens);
  const size_t m = std::min(cloud.size(), kRougeMaxTokens);
  if (n == 0 || m == 0) return fMeasure(0, n, m);
  // Integer ids make the inner loop a comparison of two ints instead of two strings.
  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(n + m);
  auto intern = [&](const std::vector<std::string>& tokens, size_t count) {
    std::vector<int32_t> out;
    out.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      auto [it, inserted] = ids.try_emplace(tokens[i], static_cast<int32_t>(ids.size()));
      out.push_back(it->second);
    }
    return out;
  };
  const std::vector<int32_t> a = intern(local, n);
  const std::vector<int32_t> b = intern(cloud, m);
  return fMeasure(static_cast<double>(lcsLength(a, b)), n, m);
}

// ---- JSON
// ------------------------------------------------------------------------------

// The JSON text of a side that looks like JSON: past leading whitespace and an optional
// ```json or ``` fence (cut at the closing fence when there is one), starting with { or [.
// nullopt when the side does not look like JSON.
std::optional<std::string_view> jsonBody(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && isAsciiSpace(static_cast<unsigned char>(s[i]))) ++i;
  std::string_view body = s.substr(i);
  if (body.substr(0, 3) == "```") {
    body.remove_prefix(3);
    if (body.size() >= 4) {
      std::string tag(body.substr(0, 4));
      for (char& ch : tag) ch = toLowerAscii(ch);
      if (tag == "json") body.remove_prefix(4);
    }
    size_t k = 0;
    while (k < body.size() && isAsciiSpace(static_cast<unsigned char>(body[k]))) ++k;
    body.remove_prefix(k);
    const size_t close = body.find("```");
    if (close != std::string_view::npos) body = body.substr(0, close);
  }
  if (body.empty() || (body.front() != '{' && body.front() != '[')) return std::nullopt;
  return body;
}

// The deepest nesting of arrays and objects in `s` (outside strings), stopping early once it
// passes `limit`.
int nestingDepth(std::string_view s, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char ch : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (ch == '}' || ch == ']') {
      --depth;
    }
  }
  return deepest;
}

std::optional<api::Json> parseJson(std::string_view body) {
  if (nestingDepth(body, kMaxJsonDepth) > kMaxJsonDepth) return std::nullopt;
  api::Json value = api::Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

}  // namespace

std::vector<std::string> metricTokens(std::string_view text) {
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (isAsciiAlnum(c)) {
        word += toLowerAscii(static_cast<char>(c));
      } else {
        flush();
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = decodeUtf8(text, i, &cp);
    if (len == 0) {  // invalid byte: skipped, as if it were not there
      ++i;
      continue;
    }
    if (isCjk(cp)) {
      flush();
      tokens.emplace_back(text.substr(i, len));
    } else if (isSeparator(cp)) {
      flush();
    } else {
      word.append(text.substr(i, len));
    }
    i += len;
  }
  flush();
  return tokens;
}

TextMetrics computeTextMetrics(std::string_view local, std::string_view cloud) {
  TextMetrics m;
  m.exact_match = collapseWhitespace(local) == collapseWhitespace(cloud);

  const std::vector<std::string> local_tokens = metricTokens(local);
  const std::vector<std::string> cloud_tokens = metricTokens(cloud);
  m.token_f1 = tokenF1(local_tokens, cloud_tokens);
  m.rouge_l = rougeL(local_tokens, cloud_tokens);
  m.length_ratio = cloud_tokens.empty() ? 0
                                        : static_cast<double>(local_tokens.size()) /
                                              static_cast<double>(cloud_tokens.size());

  const std::optional<std::string_view> local_json = jsonBody(local);
  const std::optional<std::string_view> cloud_json = jsonBody(cloud);
  if (local_json || cloud_json) {
    std::optional<api::Json> a = local_json ? parseJson(*local_json) : std::nullopt;
    std::optional<api::Json> b = cloud_json ? parseJson(*cloud_json) : std::nullopt;
    m.json_both_parse = a.has_value() && b.has_value();
    m.json_agree = a.has_value() && b.has_value() && *a == *b;
  }
  return m;
}

}  // namespace quality
