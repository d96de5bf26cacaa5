// Jinja template text -> tokens: the preprocessing @huggingface/jinja applies (lstrip_blocks,
// trim_blocks, one trailing newline, {% generation %} markers) and its tokenizer, keeping each
// token's offset in the original text for error positions.
#include <cctype>
#include <string>

#include "engine/jinja_internal.h"
#include "engine/tokenizer.h"

namespace engine::jinja {

namespace {

// ---- Preprocessing, keeping each byte's offset in the original text for error positions ------

bool startsWith(std::string_view s, size_t pos, std::string_view prefix) {
  return s.substr(pos, prefix.size()) == prefix;
}

// The length of the JavaScript line terminator at `pos` (\n, \r, U+2028, U+2029), else 0.
size_t lineTerminatorAt(std::string_view s, size_t pos) {
  if (s[pos] == '\n' || s[pos] == '\r') return 1;
  if (startsWith(s, pos, "\xE2\x80\xA8") || startsWith(s, pos, "\xE2\x80\xA9")) return 3;
  return 0;
}

// lstrip_blocks: spaces and tabs that open a line before "{%", "{#" or "{-" are dropped.
Source lstripBlocks(const Source& in) {
  Source out;
  std::string_view s = in.text;
  size_t i = 0;
  bool line_start = true;
  while (i < s.size()) {
    if (line_start) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      if (j + 1 < s.size() && s[j] == '{' &&
          (s[j + 1] == '%' || s[j + 1] == '#' || s[j + 1] == '-')) {
        i = j;
      }
      line_start = false;
      continue;
    }
    size_t term = lineTerminatorAt(s, i);
    size_t n = term == 0 ? 1 : term;
    for (size_t k = 0; k < n; ++k) {
      out.text += s[i + k];
      out.origin.push_back(in.origin[i + k]);
    }
    i += n;
    line_start = term != 0;
  }
  return out;
}

// trim_blocks: the newline right after "%}", "#}" or "-}" is dropped.
Source trimBlocks(const Source& in) {
  Source out;
  std::string_view s = in.text;
  for (size_t i = 0; i < s.size(); ++i) {
    out.text += s[i];
    out.origin.push_back(in.origin[i]);
    if (s[i] == '}' && i > 0 && (s[i - 1] == '%' || s[i - 1] == '#' || s[i - 1] == '-') &&
        i + 1 < s.size() && s[i + 1] == '\n') {
      ++i;
    }
  }
  return out;
}

bool asciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// The end of a {% generation %} / {% endgeneration %} marker starting at `pos` (with
// `*left`/`*right` set when it has a '-' on that side), or 0.
size_t generationMarkerEnd(std::string_view s, size_t pos, bool* left, bool* right) {
  if (!startsWith(s, pos, "{%")) return 0;
  size_t i = pos + 2;
  *left = i < s.size() && s[i] == '-';
  if (*left) ++i;
  while (i < s.size() && asciiSpace(s[i])) ++i;
  if (startsWith(s, i, "end")) i += 3;
  if (!startsWith(s, i, "generation")) return 0;
  i += 10;
  while (i < s.size() && asciiSpace(s[i])) ++i;
  *right = i < s.size() && s[i] == '-';
  if (*right) ++i;
  return startsWith(s, i, "%}") ? i + 2 : 0;
}

// Removes {% generation %} markers (assistant-mask markers that render nothing).
Source dropGenerationMarkers(const Source& in) {
  if (in.text.find("generation") == std::string::npos) return in;
  Source out;
  std::string_view s = in.text;
  size_t i = 0;
  while (i < s.size()) {
    bool left = false, right = false;
    size_t end = generationMarkerEnd(s, i, &left, &right);
    if (end == 0) {
      out.text += s[i];
      out.origin.push_back(in.origin[i]);
      ++i;
      continue;
    }
    if (left) {
      while (!out.text.empty() && asciiSpace(out.text.back())) {
        out.text.pop_back();
        out.origin.pop_back();
      }
    }
    i = end;
    if (right) {
      while (i < s.size() && asciiSpace(s[i])) ++i;
    }
  }
  return out;
}

Source preprocess(std::string_view tmpl) {
  Source src;
  if (!tmpl.empty() && tmpl.back() == '\n') tmpl.remove_suffix(1);
  src.text.assign(tmpl);
  src.origin.resize(tmpl.size());
  for (size_t i = 0; i < tmpl.size(); ++i) src.origin[i] = static_cast<uint32_t>(i);
  return dropGenerationMarkers(trimBlocks(lstripBlocks(src)));
}

// ---- Tokens -------------------------------------------------------------------------------------

struct Symbol {
  std::string_view text;
  Tok type;
};
// Longest-first where one symbol is a prefix of another, as the reference orders them.
constexpr Symbol kSymbols[] = {{"{%", Tok::kOpenStmt},      {"%}", Tok::kCloseStmt},
                               {"{{", Tok::kOpenExpr},      {"}}", Tok::kCloseExpr},
                               {"(", Tok::kLParen},         {")", Tok::kRParen},
                               {"{", Tok::kLBrace},         {"}", Tok::kRBrace},
                               {"[", Tok::kLBracket},       {"]", Tok::kRBracket},
                               {",", Tok::kComma},          {".", Tok::kDot},
                               {":", Tok::kColon},          {"|", Tok::kPipe},
                               {"<=", Tok::kComparison},    {">=", Tok::kComparison},
                               {"==", Tok::kComparison},    {"!=", Tok::kComparison},
                               {"<", Tok::kComparison},     {">", Tok::kComparison},
                               {"+", Tok::kAdditive},       {"-", Tok::kAdditive},
                               {"~", Tok::kAdditive},       {"**", Tok::kPower},
                               {"*", Tok::kMultiplicative}, {"//", Tok::kMultiplicative},
                               {"/", Tok::kMultiplicative}, {"%", Tok::kMultiplicative},
                               {"=", Tok::kEquals}};

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Lexer {
 public:
  Lexer(const Source& src, std::string_view original) : src_(src), original_(original) {}

  std::vector<Token> run() {
    const std::string& s = src_.text;
    while (pos_ < s.size()) {
      if (atTextStart() && readText()) continue;
      if (startsWith(s, pos_, "{#")) {
        readComment();
        continue;
      }
      if (startsWith(s, pos_, "{%-") || startsWith(s, pos_, "{{-")) {
        stripTrailingWhitespace();
        bool stmt = s[pos_ + 1] == '%';
        push(stmt ? Tok::kOpenStmt : Tok::kOpenExpr, stmt ? "{%" : "{{");
        if (!stmt) curly_depth_ = 0;
        pos_ += 3;
        continue;
      }
      skipWhitespaceInTag();
      if (startsWith(s, pos_, "-%}") || startsWith(s, pos_, "-}}")) {
        bool stmt = s[pos_ + 1] == '%';
        push(stmt ? Tok::kCloseStmt : Tok::kCloseExpr, stmt ? "%}" : "}}");
        pos_ += 3;
        skipLeadingWhitespace();
        continue;
      }
      readTagToken();
    }
    return std::move(tokens_);
  }

  [[noreturn]] void error(size_t offset, const std::string& message) const;

 private:
  bool atTextStart() const {
    if (tokens_.empty()) return true;
    Tok t = tokens_.back().type;
    return t == Tok::kCloseStmt || t == Tok::kCloseExpr || t == Tok::kComment;
  }

  bool readText() {
    const std::string& s = src_.text;
    size_t start = pos_;
    while (pos_ < s.size() && !(s[pos_] == '{' && pos_ + 1 < s.size() &&
                                (s[pos_ + 1] == '%' || s[pos_ + 1] == '{' || s[pos_ + 1] == '#'))) {
      ++pos_;
    }
    if (pos_ == start) return false;
    tokens_.push_back({Tok::kText, s.substr(start, pos_ - start), start});
    return true;
  }

  void readComment() {
    const std::string& s = src_.text;
    size_t open = pos_;
    pos_ += 2;
    bool strip_before = pos_ < s.size() && s[pos_] == '-';
    if (strip_before) ++pos_;
    size_t start = pos_;
    while (!(pos_ + 1 < s.size() && s[pos_] == '#' && s[pos_ + 1] == '}')) {
      if (pos_ + 2 >= s.size()) error(open, "Missing end of comment tag");
      ++pos_;
    }
    std::string comment = s.substr(start, pos_ - start);
    bool strip_after = !comment.empty() && comment.back() == '-';
    if (strip_after) comment.pop_back();
    if (strip_before) stripTrailingWhitespace();
    tokens_.push_back({Tok::kComment, std::move(comment), open});
    pos_ += 2;
    if (strip_after) skipLeadingWhitespace();
  }

  // The length of the JavaScript whitespace character at `pos`, else 0.
  size_t whitespaceAt(size_t pos) const {
    const std::string& s = src_.text;
    unsigned char c = static_cast<unsigned char>(s[pos]);
    if (c < 0x80) return isJsWhitespace(c) ? 1 : 0;
    std::string_view rest = std::string_view(s).substr(pos, 3);
    std::string_view trimmed = jsTrimStart(rest);
    return rest.size() - trimmed.size();
  }

  void skipLeadingWhitespace() {
    while (pos_ < src_.text.size()) {
      size_t n = whitespaceAt(pos_);
      if (n == 0) break;
      pos_ += n;
    }
  }

  // The reference consumes whitespace inside a tag with a loop that fails at the end of input.
  void skipWhitespaceInTag() {
    while (pos_ < src_.text.size()) {
      size_t n = whitespaceAt(pos_);
      if (n == 0) return;
      pos_ += n;
      if (pos_ >= src_.text.size()) error(pos_ - n, "Unexpected end of input");
    }
  }

  void stripTrailingWhitespace() {
    if (tokens_.empty() || tokens_.back().type != Tok::kText) return;
    std::string& text = tokens_.back().value;
    text.resize(jsTrimEnd(text).size());
    if (text.empty()) tokens_.pop_back();
  }

  void push(Tok type, std::string value, size_t offset) {
    tokens_.push_back({type, std::move(value), offset});
  }
  void push(Tok type, std::string value) { push(type, std::move(value), pos_); }

  static bool isDigit(char c) { return c >= '0' && c <= '9'; }
  static bool isWordChar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
  }

  std::string digits() {
    size_t start = pos_;
    while (pos_ < src_.text.size() && isDigit(src_.text[pos_])) ++pos_;
    return src_.text.substr(start, pos_ - start);
  }

  // A fractional part: "." followed by a digit.
  bool fractionFollows() const {
    const std::string& s = src_.text;
    return pos_ + 1 < s.size() && s[pos_] == '.' && isDigit(s[pos_ + 1]);
  }

  bool readSignedNumberOrUnary(char c) {
    if (tokens_.empty() || tokens_.back().type == Tok::kText) {
      error(pos_, std::string("Unexpected character: ") + c);
    }
    switch (tokens_.back().type) {
      case Tok::kName:
      case Tok::kNumber:
      case Tok::kString:
      case Tok::kRParen:
      case Tok::kRBracket:
        return false;  // a binary operator
      default:
        break;
    }
    size_t start = pos_++;
    std::string num = digits();
    if (!num.empty() && fractionFollows()) {
      ++pos_;
      num += "." + digits();
    }
    push(num.empty() ? Tok::kUnary : Tok::kNumber, std::string(1, c) + num, start);
    return true;
  }

  void readTagToken() {
    const std::string& s = src_.text;
    char c = s[pos_];
    if ((c == '-' || c == '+') && readSignedNumberOrUnary(c)) return;
    for (const Symbol& sym : kSymbols) {
      if (sym.type == Tok::kCloseExpr && curly_depth_ > 0) continue;
      if (!startsWith(s, pos_, sym.text)) continue;
      push(sym.type, std::string(sym.text));
      if (sym.type == Tok::kOpenExpr) curly_depth_ = 0;
      if (sym.type == Tok::kLBrace) ++curly_depth_;
      if (sym.type == Tok::kRBrace) --curly_depth_;
      pos_ += sym.text.size();
      return;
    }
    if (c == '\'' || c == '"') return readString(c);
    if (isDigit(c)) {
      size_t start = pos_;
      std::string num = digits();
      bool after_dot = !tokens_.empty() && tokens_.back().type == Tok::kDot;
      if (!after_dot && fractionFollows()) {
        ++pos_;
        num += "." + digits();
      }
      push(Tok::kNumber, num, start);
      return;
    }
    if (isWordChar(c)) {
      size_t start = pos_;
      while (pos_ < s.size() && isWordChar(s[pos_])) ++pos_;
      push(Tok::kName, s.substr(start, pos_ - start), start);
      return;
    }
    error(pos_, std::string("Unexpected character: ") + c);
  }

  void readString(char quote) {
    const std::string& s = src_.text;
    size_t open = pos_++;
    std::string out;
    while (pos_ < s.size() && s[pos_] != quote) {
      if (s[pos_] == '\\') {
        readEscape(out);
        continue;
      }
      out += s[pos_++];
      if (pos_ >= s.size()) error(open, "Unexpected end of input");
    }
    if (pos_ >= s.size()) error(open, "Unexpected end of input");
    ++pos_;
    push(Tok::kString, std::move(out), open);
  }

  void readEscape(std::string& out) {
    const std::string& s = src_.text;
    size_t at = pos_++;
    if (pos_ >= s.size()) error(at, "Unexpected end of input");
    char e = s[pos_++];
    if (e == 'x' || e == 'u') {
      size_t len = e == 'x' ? 2 : 4;
      std::string hex = s.substr(pos_, len);
      bool ok = hex.size() == len;
      for (char h : hex) ok = ok && std::isxdigit(static_cast<unsigned char>(h)) != 0;
      if (!ok) error(at, "Invalid hexadecimal escape sequence: \\" + std::string(1, e) + hex);
      appendUtf8(out, static_cast<uint32_t>(std::stoul(hex, nullptr, 16)));
      pos_ += len;
      return;
    }
    static constexpr std::pair<char, char> kEscapes[] = {{'n', '\n'},  {'t', '\t'}, {'r', '\r'},
                                                         {'b', '\b'},  {'f', '\f'}, {'v', '\v'},
                                                         {'\'', '\''}, {'"', '"'},  {'\\', '\\'}};
    for (auto [from, to] : kEscapes) {
      if (e == from) {
        out += to;
        return;
      }
    }
    error(at, std::string("Unexpected escaped character: ") + e);
  }

  const Source& src_;
  std::string_view original_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string position(std::string_view original, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset && i < original.size(); ++i) {
    if (original[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

size_t originalOffset(const Source& src, size_t offset) {
  if (src.origin.empty()) return 0;
  if (offset >= src.origin.size()) return src.origin.back() + 1;
  return src.origin[offset];
}

void Lexer::error(size_t offset, const std::string& message) const {
  fail(position(original_, originalOffset(src_, offset)) + ": " + message);
}

Lexed lex(std::string_view original) {
  Lexed out;
  out.source = preprocess(original);
  out.tokens = Lexer(out.source, original).run();
  return out;
}

}  // namespace engine::jinja
