#include "routers/complexity.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace routers {
namespace {

// ---- normalization constants (see the feature table in complexity.h) -------------------------

constexpr double kBytesPerToken = 4;
constexpr double kLengthFloorTokens = 1;
constexpr double kLengthSaturationTokens = 32768;
constexpr double kTurnsSaturation = 16;
constexpr double kOutputFloorTokens = 256;
constexpr double kOutputSaturationTokens = 32768;
constexpr double kOlderTextWeight = 0.5;  // everything but the last user message
constexpr double kReasoningCap = 4;       // phrase hits that saturate the feature
constexpr double kCodeKeywordCap = 6;
constexpr double kMathMarkupCap = 4;
constexpr double kMinDensityBytes = 200;      // short texts count as this long for densities
constexpr double kCodePunctBaseline = 0.015;  // share of code punctuation in ordinary prose
constexpr double kCodePunctSpan = 0.05;
constexpr double kMathDensityBaseline = 0.03;  // digits and operators in ordinary prose
constexpr double kMathDensitySpan = 0.12;
constexpr double kTargetLanguageFloor = 0.6;  // "translate into Japanese" with no Japanese yet
constexpr size_t kMaxInlineMathBytes = 256;   // a $...$ span longer than this is not math
constexpr int kSchemaNodeCap = 100;
constexpr double kMaxTools = 8;
constexpr double kMaxImages = 4;

double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

// clamp(log2(x / floor) / log2(saturation / floor)).
double logScale(double x, double floor, double saturation) {
  if (!(x > floor)) return 0;
  return clamp01(std::log2(x / floor) / std::log2(saturation / floor));
}

bool isAlpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool isWordChar(unsigned char c) { return isAlpha(c) || isDigit(c) || c == '_'; }
bool isSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// ---- phrase tables ------------------------------------------------------------------------------

enum class Kind : uint8_t { kCode, kReasoning, kMathWord, kLanguage };

struct Pattern {
  std::string_view text;  // lowercase when `ci`
  Kind kind;
  bool ci;  // ASCII case-insensitive
};

// clang-format off
// Whole-word code tokens (case-sensitive: "SELECT " is SQL, "select" is English).
constexpr std::string_view kCodeKeywords[] = {
    // Python, JavaScript, C/C++, Go, Rust, Java
    "def ", "elif ", "lambda", "self.", "import ", "return ", "function ", "function(", "const ",
    "var ", "async ", "console.", "fn ", "func ", "static ", "void ", "int ", "struct ",
    "template<", "template <", "namespace ", "nullptr", "printf", "println", "#include",
    "#define", "#!/", "public:", "private:", "public static", "public void", "public class",
    "private final", "if (", "for (", "while (", "} else", "try {", "catch (",
    // SQL, upper case only
    "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "FROM ", "WHERE ", "JOIN ", "CREATE TABLE",
    // operators and markup
    "=>", "::", "!=", "==", "&&", "||", "+=", "</", "/>",
};

// Case-insensitive phrases that ask for reasoning rather than recall; stems match any ending.
constexpr std::string_view kReasoningPhrases[] = {
    "step by step", "step-by-step", "prove", "proof", "explain why", "explain how",
    "explain the difference", "analyz", "analys", "compar", "contrast", "derive", "derivation",
    "trade-off", "tradeoff", "trade off", "design a", "architect", "evaluate", "justify",
    "reason about", "pros and cons", "why do", "why is", "why are", "why would", "why should",
    "why did", "what would happen", "implication", "critique", "critically", "in depth",
    "in-depth", "in detail", "walk me through", "think through", "show that", "demonstrate that",
    "rigorous", "formally", "edge case", "optimiz", "optimis", "refactor", "debug", "diagnose",
    "root cause", "multi-step", "strateg", "assess", "counterexample", "hypothes", "deduce",
    "estimate", "how would you", "plan for", "review", "find the bug", "what's wrong",
    "what is wrong",
};

constexpr std::string_view kMathWords[] = {
    "integral", "derivative", "differential", "equation", "theorem", "lemma", "corollary",
    "eigen", "polynomial", "matrix", "matrices", "probabilit", "logarithm", "asymptotic",
    "by induction", "modulo", "primes", "prime number", "prime factor", "vector space",
    "converge", "calculus", "algebra", "geometr", "topolog", "combinatori", "expected value",
    "variance", "integer", "solve for", "infinitely many", "irrational", "rational number",
    "inequalit", "summation", "factorial", "permutation", "binomial",
};

// Languages written outside the Latin script, recognized after "into ", "in " or "to ".
constexpr std::string_view kNonLatinLanguages[] = {
    "japanese", "chinese", "mandarin", "cantonese", "korean",  "russian",   "ukrainian",
    "belarusian", "bulgarian", "serbian", "macedonian", "greek", "arabic", "hebrew", "persian",
    "farsi",    "urdu",    "hindi",    "bengali",   "punjabi", "tamil",     "telugu",
    "marathi",  "gujarati", "kannada", "malayalam", "thai",    "lao",       "khmer",
    "burmese",  "georgian", "armenian", "amharic",  "mongolian", "kazakh",  "nepali",
    "sinhala",  "tibetan", "yiddish",  "pashto",
};

// LaTeX command names (after the backslash), sorted for binary search.
constexpr auto kLatexCommands = [] {
  auto a = std::to_array<std::string_view>({
      "Delta",  "Omega",  "alpha",   "approx",  "bar",     "begin",   "beta",    "binom",
      "cap",    "cdot",   "cdots",   "chi",     "cos",     "cup",     "delta",   "det",
      "dfrac",  "end",    "epsilon", "equiv",   "eta",     "exists",  "exp",     "forall",
      "frac",   "gamma",  "ge",      "geq",     "hat",     "iff",     "iiint",   "iint",
      "implies", "in",    "inf",     "infty",   "int",     "lambda",  "langle",  "ldots",
      "le",     "left",   "leq",     "lim",     "ln",      "log",     "mapsto",  "mathbb",
      "mathbf", "mathcal", "mathrm", "max",     "min",     "mod",     "mu",      "nabla",
      "ne",     "neq",    "notin",   "oint",    "omega",   "oplus",   "otimes",  "partial",
      "phi",    "pi",     "pmod",    "prod",    "psi",     "rangle",  "rho",     "right",
      "sigma",  "sin",    "sqrt",    "subset",  "subseteq", "sum",    "sup",     "tan",
      "tau",    "theta",  "times",   "to",      "varepsilon", "vec",  "zeta",
  });
  std::sort(a.begin(), a.end());
  return a;
}();

// clang-format on

using PatternTable = std::array<std::vector<Pattern>, 256>;

// Patterns bucketed by their first byte (both cases for case-insensitive ones), built once.
const PatternTable& patternTable() {
  static const PatternTable table = [] {
    PatternTable t;
    auto add = [&t](std::string_view text, Kind kind, bool ci) {
      auto first = static_cast<unsigned char>(text[0]);
      t[first].push_back(Pattern{text, kind, ci});
      if (ci && isAlpha(first)) t[first - 32].push_back(Pattern{text, kind, ci});
    };
    for (std::string_view p : kCodeKeywords) add(p, Kind::kCode, false);
    for (std::string_view p : kReasoningPhrases) add(p, Kind::kReasoning, true);
    for (std::string_view p : kMathWords) add(p, Kind::kMathWord, true);
    for (std::string_view p : kNonLatinLanguages) add(p, Kind::kLanguage, true);
    return t;
  }();
  return table;
}

// Whether s[..end) ends with the lowercase word `w` starting at a word boundary.
bool endsWithWord(std::string_view s, size_t end, std::string_view w) {
  if (end < w.size()) return false;
  size_t start = end - w.size();
  for (size_t k = 0; k < w.size(); ++k) {
    if (lower(static_cast<unsigned char>(s[start + k])) != static_cast<unsigned char>(w[k])) {
      return false;
    }
  }
  return start == 0 || !isWordChar(static_cast<unsigned char>(s[start - 1]));
}

bool matchAt(std::string_view s, size_t i, const Pattern& p) {
  const size_t len = p.text.size();
  if (s.size() - i < len) return false;
  if (p.ci) {
    for (size_t k = 0; k < len; ++k) {
      if (lower(static_cast<unsigned char>(s[i + k])) != static_cast<unsigned char>(p.text[k])) {
        return false;
      }
    }
  } else if (std::memcmp(s.data() + i, p.text.data(), len) != 0) {
    return false;
  }
  if (p.kind == Kind::kLanguage) {
    // A whole word ("thai", not "thailand"), named as a target or source language.
    if (i + len < s.size() && isAlpha(static_cast<unsigned char>(s[i + len]))) return false;
    return endsWithWord(s, i, "into ") || endsWithWord(s, i, "in ") || endsWithWord(s, i, "to ");
  }
  return true;
}

// ---- Unicode classes
// ------------------------------------------------------------------------------

// Decodes one UTF-8 sequence at s[i] (a byte >= 0x80). Returns its length, or 0 for an invalid
// sequence (stray continuation, overlong form, surrogate, beyond U+10FFFF, truncated).
size_t decodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    v = (v << 6) | (d & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

bool inRange(uint32_t cp, uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; }

bool isMathSymbol(uint32_t cp) {
  return cp == 0x00B1 || cp == 0x00D7 || cp == 0x00F7 ||  // ± × ÷
         inRange(cp, 0x2200, 0x22FF) ||                   // Mathematical Operators
         inRange(cp, 0x2A00, 0x2AFF) ||                   // Supplemental Math Operators
         inRange(cp, 0x1D400, 0x1D7FF);                   // Math Alphanumeric Symbols
}

bool isLatinLetter(uint32_t cp) {
  return (inRange(cp, 0x00C0, 0x024F) && cp != 0x00D7 && cp != 0x00F7) ||
         inRange(cp, 0x1E00, 0x1EFF) || inRange(cp, 0x2C60, 0x2C7F) || inRange(cp, 0xA720, 0xA7FF);
}

bool isNonLatinLetter(uint32_t cp) {
  return inRange(cp, 0x0370, 0x03FF) ||  // Greek
         inRange(cp, 0x0400, 0x052F) ||  // Cyrillic
         inRange(cp, 0x0530, 0x05FF) ||  // Armenian, Hebrew
         inRange(cp, 0x0600, 0x08FF) ||  // Arabic, Syriac, Thaana, ...
         inRange(cp, 0x0900, 0x0DFF) ||  // Devanagari ... Sinhala
         inRange(cp, 0x0E00, 0x0FFF) ||  // Thai, Lao, Tibetan
         inRange(cp, 0x1000, 0x139F) ||  // Myanmar, Georgian, Hangul Jamo, Ethiopic
         inRange(cp, 0x1780, 0x18AF) ||  // Khmer, Mongolian
         inRange(cp, 0x3040, 0x31FF) ||  // Kana, Bopomofo, Hangul compatibility
         inRange(cp, 0x3400, 0x4DBF) ||  // CJK extension A
         inRange(cp, 0x4E00, 0x9FFF) ||  // CJK unified ideographs
         inRange(cp, 0xA000, 0xA4CF) ||  // Yi
         inRange(cp, 0xAC00, 0xD7AF) ||  // Hangul syllables
         inRange(cp, 0xF900, 0xFAFF) ||  // CJK compatibility ideographs
         inRange(cp, 0xFF66, 0xFF9F) ||  // halfwidth kana
         inRange(cp, 0x20000, 0x3FFFF);  // CJK extensions B+
}

// ---- one pass over a text
// ---------------------------------------------------------------------------

struct TextStats {
  int64_t bytes = 0;
  int64_t code_punct = 0;
  int64_t code_keywords = 0;
  int64_t fences = 0;
  int64_t math_chars = 0;    // digits and + - * / ^ = < > %
  int64_t math_markup = 0;   // LaTeX commands, $ spans, math words
  int64_t math_symbols = 0;  // Unicode math operators (half a markup each)
  int64_t reasoning = 0;
  int64_t latin = 0;
  int64_t non_latin = 0;
  bool target_language = false;
};

bool isLatexCommand(std::string_view name) {
  return std::binary_search(kLatexCommands.begin(), kLatexCommands.end(), name);
}

void scanText(std::string_view s, TextStats* st) {
  const PatternTable& table = patternTable();
  const size_t n = s.size();
  st->bytes += static_cast<int64_t>(n);
  constexpr size_t kNone = static_cast<size_t>(-1);
  size_t dollar_open = kNone;  // where an inline $ span may have opened
  bool display_open = false;   // inside $$ ... $$
  size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      uint32_t cp = 0;
      const size_t len = decodeUtf8(s, i, &cp);
      if (len == 0) {  // invalid UTF-8: skip the byte, count nothing
        ++i;
        continue;
      }
      if (isMathSymbol(cp)) {
        ++st->math_symbols;
      } else if (isLatinLetter(cp)) {
        ++st->latin;
      } else if (isNonLatinLetter(cp)) {
        ++st->non_latin;
      }
      i += len;
      continue;
    }
    if (isAlpha(c)) {
      ++st->latin;
    } else if (isDigit(c)) {
      ++st->math_chars;
    } else {
      switch (c) {
        case '{':
        case '}':
        case '[':
        case ']':
        case '(':
        case ')':
        case ';':
        case '_':
        case '|':
        case '&':
        case '`':
        case '\\':
        case '~':
        case '#':
          ++st->code_punct;
          break;
        case '=':
        case '<':
        case '>':
        case '^':
          ++st->code_punct;
          ++st->math_chars;
          break;
        case '+':
        case '-':
        case '*':
        case '/':
        case '%':
          ++st->math_chars;
          break;
        default:
          break;
      }
    }
    if (c == '`' && n - i >= 3 && s[i + 1] == '`' && s[i + 2] == '`') {
      ++st->fences;
      st->code_punct += 2;
      i += 3;
      continue;
    }
    if (c == '$') {
      // $$...$$ is display math; $...$ is inline math when the opening $ is followed and the
      // closing $ preceded by a non-space and the closing $ is not followed by a digit (pandoc's
      // rule), so that "$5 and $10" is not math.
      if (i + 1 < n && s[i + 1] == '$') {
        if (display_open) ++st->math_markup;
        display_open = !display_open;
        dollar_open = kNone;
        i += 2;
        continue;
      }
      const bool next_ok = i + 1 < n && !isSpace(static_cast<unsigned char>(s[i + 1]));
      if (dollar_open != kNone && i - dollar_open <= kMaxInlineMathBytes &&
          !isSpace(static_cast<unsigned char>(s[i - 1])) &&
          !(i + 1 < n && isDigit(static_cast<unsigned char>(s[i + 1])))) {
        ++st->math_markup;
        dollar_open = kNone;
      } else {
        dollar_open = next_ok ? i : kNone;
      }
      ++i;
      continue;
    }
    if (c == '\\') {
      size_t j = i + 1;
      while (j < n && j - i <= 12 && isAlpha(static_cast<unsigned char>(s[j]))) ++j;
      if (j - i >= 3 && isLatexCommand(s.substr(i + 1, j - i - 1))) ++st->math_markup;
      ++i;
      continue;
    }
    const std::vector<Pattern>& candidates = table[c];
    if (!candidates.empty() &&
        (!isWordChar(c) || i == 0 || !isWordChar(static_cast<unsigned char>(s[i - 1])))) {
      for (const Pattern& p : candidates) {
        if (!matchAt(s, i, p)) continue;
        switch (p.kind) {
          case Kind::kCode:
            ++st->code_keywords;
            break;
          case Kind::kReasoning:
            ++st->reasoning;
            break;
          case Kind::kMathWord:
            ++st->math_markup;
            break;
          case Kind::kLanguage:
            st->target_language = true;
            break;
        }
        break;
      }
    }
    ++i;
  }
}

void scanContent(const api::Content& content, TextStats* st) {
  if (content.kind == api::Content::Kind::kText) {
    scanText(content.text, st);
  } else if (content.kind == api::Content::Kind::kParts) {
    for (const api::ContentPart& p : content.parts) {
      if (p.type == api::ContentPart::Type::kText) scanText(p.text, st);
    }
  }
}

// The content features of one body of text, before weighting.
struct ContentFeatures {
  double code = 0;
  double math = 0;
  double reasoning = 0;
  double non_latin = 0;
};

ContentFeatures contentFeatures(const TextStats& t) {
  ContentFeatures f;
  const double denom = std::max(static_cast<double>(t.bytes), kMinDensityBytes);
  const double punct =
      clamp01((static_cast<double>(t.code_punct) / denom - kCodePunctBaseline) / kCodePunctSpan);
  const double keywords = std::min(1.0, static_cast<double>(t.code_keywords) / kCodeKeywordCap);
  f.code = clamp01(0.4 * (t.fences > 0 ? 1 : 0) + 0.3 * punct + 0.3 * keywords);
  const double density = clamp01(
      (static_cast<double>(t.math_chars) / denom - kMathDensityBaseline) / kMathDensitySpan);
  const double markup = std::min(
      1.0, (static_cast<double>(t.math_markup) + 0.5 * static_cast<double>(t.math_symbols)) /
               kMathMarkupCap);
  f.math = clamp01(0.4 * density + 0.6 * markup);
  f.reasoning = std::min(1.0, static_cast<double>(t.reasoning) / kReasoningCap);
  const int64_t letters = t.latin + t.non_latin;
  const double share =
      letters > 0 ? static_cast<double>(t.non_latin) / static_cast<double>(letters) : 0;
  f.non_latin = std::max(share, t.target_language ? kTargetLanguageFloor : 0.0);
  return f;
}

// JSON nodes in `j`, counting at most `cap`.
int countNodes(const api::Json& j, int cap) {
  std::vector<const api::Json*> stack{&j};
  int n = 0;
  while (!stack.empty() && n < cap) {
    const api::Json* x = stack.back();
    stack.pop_back();
    ++n;
    if (x->is_structured()) {
      for (const api::Json& child : *x) {
        if (n + static_cast<int>(stack.size()) >= cap) break;
        stack.push_back(&child);
      }
    }
  }
  return n;
}

bool countsAsText(api::Role role) { return role != api::Role::kAssistant; }

}  // namespace

// ---- weights
// --------------------------------------------------------------------------------------

api::StatusOr<ComplexityWeights> ComplexityWeights::read(const policies::YamlReader& r) {
  if (!r.isMap() && !r.isNull()) {
    return r.error("expected a map of complexity weights {bias: ..., reasoning: ..., ...}, got " +
                   r.describe());
  }
  ComplexityWeights w;
  const std::pair<std::string_view, double*> fields[] = {
      {"bias", &w.bias},
      {"length", &w.length},
      {"turns", &w.turns},
      {"code", &w.code},
      {"math", &w.math},
      {"reasoning", &w.reasoning},
      {"output_length", &w.output_length},
      {"tools", &w.tools},
      {"images", &w.images},
      {"non_latin", &w.non_latin},
      {"structured_output", &w.structured_output},
  };
  std::vector<std::string_view> keys;
  for (const auto& [key, out] : fields) keys.push_back(key);
  if (api::Status s = r.checkNoUnknownKeys(keys); !s.ok()) return s;
  for (const auto& [key, out] : fields) {
    const policies::NumberRange range = key == "bias" ? policies::NumberRange::atLeast(-20, 20)
                                                      : policies::NumberRange::atLeast(0, 20);
    if (api::Status s = r.readDouble(key, out, range); !s.ok()) return s;
  }
  return w;
}

// ---- the score
// ------------------------------------------------------------------------------------

std::vector<ComplexityScore::Feature> ComplexityScore::top(size_t n) const {
  std::vector<Feature> out;
  for (const Feature& f : features) {
    if (f.contribution != 0) out.push_back(f);
  }
  std::stable_sort(out.begin(), out.end(), [](const Feature& a, const Feature& b) {
    return std::abs(a.contribution) > std::abs(b.contribution);
  });
  if (out.size() > n) out.resize(n);
  return out;
}

std::string ComplexityScore::explain(size_t n) const {
  std::string out;
  for (const Feature& f : top(n)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "=%+.2f", f.contribution);
    if (!out.empty()) out += ", ";
    out += f.name;
    out += buf;
  }
  return out;
}

const ComplexityScore::Feature* ComplexityScore::find(std::string_view name) const {
  for (const Feature& f : features) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

ComplexityScore scoreComplexity(const api::ChatRequest& r, const ComplexityWeights& w) {
  // The last user message counts in full, every other counted message at half strength.
  size_t last_user = r.messages.size();
  for (size_t i = r.messages.size(); i-- > 0;) {
    if (r.messages[i].role == api::Role::kUser) {
      last_user = i;
      break;
    }
  }
  TextStats latest, older;
  int64_t turns = 0, images = 0;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const api::Message& m = r.messages[i];
    if (m.role != api::Role::kSystem && m.role != api::Role::kDeveloper) ++turns;
    for (const api::ContentPart& p : m.content.parts) {
      if (p.type == api::ContentPart::Type::kImageUrl) ++images;
    }
    if (!countsAsText(m.role)) continue;
    scanContent(m.content, i == last_user ? &latest : &older);
  }
  const ContentFeatures now = contentFeatures(latest);
  const ContentFeatures before = contentFeatures(older);
  auto blend = [](double latest_value, double older_value) {
    return std::max(latest_value, kOlderTextWeight * older_value);
  };

  const double tokens = static_cast<double>(latest.bytes + older.bytes) / kBytesPerToken;
  const double output = static_cast<double>(r.maxOutputTokens().value_or(0));
  double structured = 0;
  if (r.response_format) {
    if (r.response_format->type == api::ResponseFormat::Type::kJsonSchema) {
      const int nodes = countNodes(r.response_format->json_schema, kSchemaNodeCap);
      structured = 0.5 + 0.5 * std::min(1.0, static_cast<double>(nodes) / kSchemaNodeCap);
    } else if (r.response_format->type == api::ResponseFormat::Type::kJsonObject) {
      structured = 0.25;
    }
  }
  const double n_tools = static_cast<double>(r.tools.size());
  const double n_images = static_cast<double>(images);

  ComplexityScore out;
  out.features.reserve(10);
  double logit = w.bias;
  auto add = [&](std::string_view name, double value, double weight) {
    out.features.push_back({name, value, weight * value});
    logit += weight * value;
  };
  add("length", logScale(tokens, kLengthFloorTokens, kLengthSaturationTokens), w.length);
  add("turns", logScale(static_cast<double>(turns), 1, kTurnsSaturation), w.turns);
  add("code", blend(now.code, before.code), w.code);
  add("math", blend(now.math, before.math), w.math);
  add("reasoning", blend(now.reasoning, before.reasoning), w.reasoning);
  add("output_length", logScale(output, kOutputFloorTokens, kOutputSaturationTokens),
      w.output_length);
  add("tools", n_tools == 0 ? 0 : 0.5 + 0.5 * std::min(1.0, (n_tools - 1) / (kMaxTools - 1)),
      w.tools);
  add("images", n_images == 0 ? 0 : 0.5 + 0.5 * std::min(1.0, (n_images - 1) / (kMaxImages - 1)),
      w.images);
  add("non_latin", blend(now.non_latin, before.non_latin), w.non_latin);
  add("structured_output", structured, w.structured_output);
  out.score = 1.0 / (1.0 + std::exp(-logit));
  return out;
}

}  // namespace routers
