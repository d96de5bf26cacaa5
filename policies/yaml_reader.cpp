#include "policies/yaml_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <system_error>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include "api/ascii.h"

namespace policies {

struct YamlReader::Entry {
  std::string key;
  int key_line;
  YamlReader value;
};

namespace {

api::Status configError(std::string message) {
  return api::Status(api::ErrorCode::kConfig, std::move(message));
}

// 1-based line of a node, or `fallback` when the node carries no position (a null value after
// `key:` is marked at the next token, so callers pass the key's line for those).
int lineOf(const YAML::Node& node, int fallback) {
  if (!node.IsDefined() || node.IsNull()) return fallback;
  YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? mark.line + 1 : fallback;
}

int keyLineOf(const YAML::Node& key, int fallback) {
  YAML::Mark mark = key.Mark();
  return mark.line >= 0 ? mark.line + 1 : fallback;
}

// A key is written bare in a path when it cannot be mistaken for path syntax.
bool isPlainPathKey(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '/' || c == ':';
  });
}

std::string quoteShort(std::string_view text) {
  constexpr size_t kMax = 40;
  std::string out = "'";
  if (text.size() > kMax) {
    out.append(text.substr(0, kMax));
    out += "...";
  } else {
    out.append(text);
  }
  out += "'";
  return out;
}

std::string formatNumber(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

std::string errnoText() { return std::error_code(errno, std::generic_category()).message(); }

bool isVarStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Optimal string alignment distance, ASCII case-insensitive.
size_t editDistance(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return api::asciiLower(c); };
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string joinQuoted(const std::vector<std::string_view>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += ", ";
    out += "'";
    out.append(words[i]);
    out += "'";
  }
  return out;
}

bool isYaml11BoolWord(std::string_view text) {
  const std::string lower = api::asciiLower(text);
  return lower == "yes" || lower == "no" || lower == "on" || lower == "off" || lower == "y" ||
         lower == "n";
}

// Runs `f`, turning a yaml-cpp exception (which a well-formed tree should never raise) into a
// located kConfig error rather than letting it escape.
template <typename F>
auto guarded(const YamlReader& at, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const YAML::Exception& e) {
    return at.error(std::string("cannot read YAML node: ") + e.msg);
  }
}

}  // namespace

EnvLookup processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    // Config files are read at start-up and on reload, never while the environment changes.
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

api::StatusOr<std::string> expandEnv(std::string_view text, const EnvLookup& env) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out += text[i++];
      continue;
    }
    size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return configError("unterminated '${' (missing '}'); write '$${' for a literal '${'");
    }
    std::string_view inner = text.substr(i + 2, close - i - 2);
    std::string_view name = inner;
    std::optional<std::string_view> fallback;
    if (size_t sep = inner.find(":-"); sep != std::string_view::npos) {
      name = inner.substr(0, sep);
      fallback = inner.substr(sep + 2);
      if (fallback->find("${") != std::string_view::npos) {
        return configError("nested '${' in the default of '${" + std::string(inner) +
                           "}' is not supported");
      }
    }
    if (name.empty() || !isVarStart(name[0]) || !std::all_of(name.begin(), name.end(), isVarChar)) {
      return configError("'${" + std::string(inner) +
                         "}' is not a valid environment variable reference "
                         "(expected ${NAME} or ${NAME:-default}, NAME of letters, digits and _)");
    }
    std::optional<std::string> value = env ? env(std::string(name)) : std::nullopt;
    if (fallback.has_value()) {
      out += (value.has_value() && !value->empty()) ? *value : std::string(*fallback);
    } else if (value.has_value()) {
      out += *value;
    } else {
      return configError("environment variable " + std::string(name) + " is not set (write ${" +
                         std::string(name) + ":-} to allow it to be unset)");
    }
    i = close + 1;
  }
  return out;
}

api::StatusOr<std::string> readTextFile(const std::string& path, int64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path + ": " + errnoText());
  }
  if (S_ISDIR(st.st_mode)) {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path + ": it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path + ": " + errnoText());
  }
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<int64_t>(text.size()) > max_bytes) {
      return configError(path + ": file is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  if (in.bad()) {
    return api::Status(api::ErrorCode::kIo, "cannot read " + path + ": read error");
  }
  return text;
}

std::optional<std::string_view> closestMatch(std::string_view word,
                                             const std::vector<std::string_view>& candidates) {
  std::optional<std::string_view> best;
  size_t best_distance = 0;
  for (std::string_view candidate : candidates) {
    size_t d = editDistance(word, candidate);
    // Up to a third of the shorter word may differ, and at least one edit is allowed.
    size_t shorter = std::min(word.size(), candidate.size());
    size_t limit = std::max<size_t>(1, (shorter + 2) / 3);
    // A truncated word ("sha" for "sha256") is plausible too.
    bool prefix =
        shorter >= 3 && editDistance(word.substr(0, shorter), candidate.substr(0, shorter)) == 0;
    if ((d <= limit || prefix) && (!best.has_value() || d < best_distance)) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

// Where each document of a stream starts, and the line of its first node that is not null.
// YamlReader::parse reads at most two documents with it instead of YAML::LoadAll, which loops
// forever in yaml-cpp 0.7 on some malformed text (a lone ',', yaml-cpp issue #1040): the parser
// keeps reporting empty documents without consuming anything.
class DocumentScan : public YAML::EventHandler {
 public:
  struct Doc {
    YAML::Mark start;
    int first_line = 1;  // 1-based; 1 for an empty document, as lineOf() gives for null
    bool has_node = false;
  };
  std::vector<Doc> docs;

  void OnDocumentStart(const YAML::Mark& mark) override { docs.push_back({mark}); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (docs.empty() || docs.back().has_node) return;
    docs.back().has_node = true;
    if (mark.line >= 0) docs.back().first_line = mark.line + 1;
  }
};

// ---------------------------------------------------------------------------------------------

YamlReader::YamlReader(const YAML::Node& node, std::string_view source_name, EnvLookup env)
    : node_(node),
      line_(1),
      ctx_(std::make_shared<const Context>(Context{std::string(source_name), std::move(env)})) {
  line_ = lineOf(node_, 1);
  key_line_ = line_;
}

YamlReader::YamlReader(const YAML::Node& node, std::string path, int line, int key_line,
                       std::shared_ptr<const Context> ctx)
    : node_(node), path_(std::move(path)), line_(line), key_line_(key_line), ctx_(std::move(ctx)) {}

api::StatusOr<YamlReader> YamlReader::parse(std::string_view text, std::string_view source_name,
                                            EnvLookup env) {
  try {
    const std::string owned(text);
    std::istringstream in(owned);
    YAML::Parser parser(in);
    DocumentScan scan;
    while (scan.docs.size() < 2 && parser.HandleNextDocument(scan)) {
    }
    if (scan.docs.size() > 1) {
      const YAML::Mark& at = scan.docs[1].start;
      if (at.pos == scan.docs[0].start.pos) {  // stuck: see DocumentScan
        return configError(std::string(source_name) + ":" + std::to_string(at.line + 1) + ":" +
                           std::to_string(at.column + 1) + ": invalid YAML: unexpected text");
      }
      return configError(std::string(source_name) + ":" +
                         std::to_string(scan.docs[1].first_line) +
                         ": the file holds more than one YAML document (a second '---'); "
                         "expected one");
    }
    return YamlReader(YAML::Load(owned), source_name, std::move(env));
  } catch (const YAML::Exception& e) {
    std::string where = std::string(source_name);
    if (e.mark.line >= 0) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    return configError(where + ": invalid YAML: " + e.msg);
  }
}

bool YamlReader::isNull() const { return !node_.IsDefined() || node_.IsNull(); }
bool YamlReader::isMap() const { return node_.IsDefined() && node_.IsMap(); }
bool YamlReader::isList() const { return node_.IsDefined() && node_.IsSequence(); }
bool YamlReader::isScalar() const { return node_.IsDefined() && node_.IsScalar(); }

std::string YamlReader::describe() const {
  if (isNull()) return "null";
  if (isMap()) return "a map";
  if (isList()) return "a list";
  return quoteShort(node_.Scalar());
}

api::Status YamlReader::error(std::string_view problem) const {
  std::string msg = ctx_->source_name + ":" + std::to_string(line_) + ": ";
  if (!path_.empty()) msg += path_ + ": ";
  msg.append(problem);
  return configError(std::move(msg));
}

api::Status YamlReader::keyError(std::string_view problem) const {
  return YamlReader(node_, path_, key_line_, key_line_, ctx_).error(problem);
}

api::Status YamlReader::errorAt(std::string_view key, std::string_view problem) const {
  if (std::optional<YamlReader> c = child(key)) return c->error(problem);
  return YamlReader(node_, childPath(key), key_line_, key_line_, ctx_).error(problem);
}

api::Status YamlReader::expectMap() const {
  if (isNull() || isMap()) return api::Status();
  return error("expected a map, got " + describe());
}

api::Status YamlReader::expectList() const {
  if (isNull() || isList()) return api::Status();
  return error("expected a list, got " + describe());
}

std::string YamlReader::childPath(std::string_view key) const {
  std::string out = path_;
  if (isPlainPathKey(key)) {
    if (!out.empty()) out += ".";
    out.append(key);
  } else {
    out += "[\"";
    out.append(key);
    out += "\"]";
  }
  return out;
}

api::StatusOr<std::vector<YamlReader::Entry>> YamlReader::entries() const {
  return guarded(*this, [&]() -> api::StatusOr<std::vector<Entry>> {
    if (api::Status s = expectMap(); !s.ok()) return s;
    std::vector<Entry> out;
    if (isNull()) return out;
    std::map<std::string, int, std::less<>> first_line;  // key -> line it first appeared on
    // Iterate by value: the iterator's operator-> returns a temporary proxy.
    for (const auto& kv : node_) {
      YAML::Node key = kv.first;
      YAML::Node value = kv.second;
      int key_line = keyLineOf(key, line_);
      if (!key.IsScalar()) {
        YamlReader at(key, path_, key_line, key_line, ctx_);
        return at.error("map keys must be plain strings, got " + at.describe());
      }
      const std::string& text = key.Scalar();
      if (auto [it, inserted] = first_line.emplace(text, key_line); !inserted) {
        return YamlReader(value, childPath(text), key_line, key_line, ctx_)
            .error("duplicate key (first at line " + std::to_string(it->second) + ")");
      }
      out.push_back(
          Entry{text, key_line,
                YamlReader(value, childPath(text), lineOf(value, key_line), key_line, ctx_)});
    }
    return out;
  });
}

api::Status YamlReader::checkNoUnknownKeys(const std::vector<std::string_view>& allowed) const {
  auto all = entries();
  if (!all.ok()) return all.status();
  for (const Entry& e : *all) {
    if (std::find(allowed.begin(), allowed.end(), e.key) != allowed.end()) continue;
    YamlReader at(e.value.node_, e.value.path_, e.key_line, e.key_line, ctx_);
    if (std::optional<std::string_view> near = closestMatch(e.key, allowed)) {
      return at.error("unknown key; did you mean '" + std::string(*near) + "'?");
    }
    if (allowed.empty()) return at.error("unknown key (no keys are allowed here)");
    return at.error("unknown key (expected one of " + joinQuoted(allowed) + ")");
  }
  return api::Status();
}

bool YamlReader::has(std::string_view key) const { return child(key).has_value(); }

std::optional<YamlReader> YamlReader::child(std::string_view key) const {
  try {
    if (!isMap()) return std::nullopt;
    for (const auto& kv : node_) {
      if (kv.first.IsScalar() && kv.first.Scalar() == key) {
        int key_line = keyLineOf(kv.first, line_);
        return YamlReader(kv.second, childPath(key), lineOf(kv.second, key_line), key_line, ctx_);
      }
    }
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

YamlReader YamlReader::section(std::string_view key) const {
  if (std::optional<YamlReader> c = child(key)) return *c;
  return YamlReader(YAML::Node(YAML::NodeType::Null), childPath(key), key_line_, key_line_, ctx_);
}

api::Status YamlReader::requireKey(std::string_view key, Presence presence,
                                   std::optional<YamlReader>* out) const {
  auto all = entries();
  if (!all.ok()) return all.status();
  for (Entry& e : *all) {
    if (e.key == key) {
      *out = std::move(e.value);
      return api::Status();
    }
  }
  out->reset();
  if (presence == Presence::kRequired) {
    return YamlReader(node_, childPath(key), key_line_, key_line_, ctx_).error("is required");
  }
  return api::Status();
}

// ---- scalar values ---------------------------------------------------------------------------

api::StatusOr<std::string> YamlReader::scalarText(std::string_view expected) const {
  if (!isScalar()) {
    std::string problem = "expected " + std::string(expected) + ", got " + describe();
    if (isNull() && expected == "a string") problem += " (write \"\" for an empty string)";
    return error(problem);
  }
  auto expanded = expandEnv(node_.Scalar(), ctx_->env);
  if (!expanded.ok()) return error(expanded.status().message());
  return std::move(expanded).value();
}

api::StatusOr<std::string> YamlReader::asString() const {
  return guarded(*this, [&] { return scalarText("a string"); });
}

api::StatusOr<std::string> YamlReader::asName() const {
  return guarded(*this, [&]() -> api::StatusOr<std::string> {
    auto text = scalarText("a name");
    if (!text.ok()) return text;
    if (text->empty()) return error("must not be empty");
    if (text->size() > 256) return error("must be at most 256 bytes");
    for (unsigned char c : *text) {
      if (std::isspace(c) || std::iscntrl(c)) {
        return error("must not contain whitespace or control characters, got " + quoteShort(*text));
      }
    }
    return text;
  });
}

api::StatusOr<int64_t> YamlReader::asInt(int64_t min, int64_t max) const {
  return guarded(*this, [&]() -> api::StatusOr<int64_t> {
    auto text = scalarText("an integer");
    if (!text.ok()) return text.status();
    std::string_view body = *text;
    size_t start = (!body.empty() && (body[0] == '+' || body[0] == '-')) ? 1 : 0;
    bool well_formed =
        body.size() > start && std::all_of(body.begin() + start, body.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) != 0;
        });
    if (!well_formed) return error("expected an integer, got " + quoteShort(*text));
    if (body[0] == '+') body.remove_prefix(1);
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
    if (ec != std::errc() || ptr != body.data() + body.size()) {
      return error("integer " + quoteShort(*text) + " is out of range");
    }
    if (value < min) return error("must be >= " + std::to_string(min) + ", got " + *text);
    if (value > max) return error("must be <= " + std::to_string(max) + ", got " + *text);
    return value;
  });
}

api::StatusOr<double> YamlReader::asDouble(NumberRange range) const {
  return guarded(*this, [&]() -> api::StatusOr<double> {
    auto text = scalarText("a number");
    if (!text.ok()) return text.status();
    std::string_view body = *text;
    size_t start = (!body.empty() && (body[0] == '+' || body[0] == '-')) ? 1 : 0;
    // Digits or a '.' must follow the sign: from_chars alone would take "inf" and "nan".
    bool starts_numeric =
        body.size() > start &&
        (std::isdigit(static_cast<unsigned char>(body[start])) || body[start] == '.');
    if (!body.empty() && body[0] == '+') body.remove_prefix(1);
    double value = 0;
    auto [ptr, ec] =
        std::from_chars(body.data(), body.data() + body.size(), value, std::chars_format::general);
    if (!starts_numeric || ec != std::errc() || ptr != body.data() + body.size() ||
        !std::isfinite(value)) {
      return error("expected a finite number, got " + quoteShort(*text));
    }
    if (range.min_exclusive ? !(value > range.min) : !(value >= range.min)) {
      return error(std::string(range.min_exclusive ? "must be > " : "must be >= ") +
                   formatNumber(range.min) + ", got " + *text);
    }
    if (!(value <= range.max)) {
      return error("must be <= " + formatNumber(range.max) + ", got " + *text);
    }
    return value;
  });
}

api::StatusOr<bool> YamlReader::asBool() const {
  return guarded(*this, [&]() -> api::StatusOr<bool> {
    auto text = scalarText("true or false");
    if (!text.ok()) return text.status();
    if (*text == "true" || *text == "True" || *text == "TRUE") return true;
    if (*text == "false" || *text == "False" || *text == "FALSE") return false;
    std::string problem = "expected true or false, got " + quoteShort(*text);
    if (isYaml11BoolWord(*text)) {
      problem += " (YAML 1.1 words such as yes/no/on/off are not booleans here)";
    }
    return error(problem);
  });
}

// ---- keyed reads -----------------------------------------------------------------------------

namespace {

// Reads the child `key` with `read` and stores it through `store` when present.
template <typename Read, typename Store>
api::Status readKeyed(const std::optional<YamlReader>& child, Read read, Store store) {
  if (!child.has_value()) return api::Status();
  auto value = read(*child);
  if (!value.ok()) return value.status();
  store(std::move(value).value());
  return api::Status();
}

}  // namespace

api::Status YamlReader::readString(std::string_view key, std::string* out,
                                   Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return readKeyed(
      c, [](const YamlReader& r) { return r.asString(); },
      [&](std::string v) { *out = std::move(v); });
}

api::Status YamlReader::readName(std::string_view key, std::string* out, Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return readKeyed(
      c, [](const YamlReader& r) { return r.asName(); },
      [&](std::string v) { *out = std::move(v); });
}

api::Status YamlReader::readChoice(std::string_view key, std::string* out,
                                   const std::vector<std::string_view>& choices,
                                   Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  if (!c.has_value()) return api::Status();
  auto text = c->asString();
  if (!text.ok()) return text.status();
  if (std::find(choices.begin(), choices.end(), *text) != choices.end()) {
    *out = std::move(text).value();
    return api::Status();
  }
  std::string problem = "must be one of " + joinQuoted(choices) + ", got " + quoteShort(*text);
  if (std::optional<std::string_view> near = closestMatch(*text, choices)) {
    problem += "; did you mean '" + std::string(*near) + "'?";
  }
  return c->error(problem);
}

api::Status YamlReader::readInt(std::string_view key, int* out, int64_t min, int64_t max,
                                Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  min = std::max<int64_t>(min, std::numeric_limits<int>::min());
  max = std::min<int64_t>(max, std::numeric_limits<int>::max());
  return readKeyed(
      c, [&](const YamlReader& r) { return r.asInt(min, max); },
      [&](int64_t v) { *out = static_cast<int>(v); });
}

api::Status YamlReader::readInt(std::string_view key, int64_t* out, int64_t min, int64_t max,
                                Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return readKeyed(
      c, [&](const YamlReader& r) { return r.asInt(min, max); }, [&](int64_t v) { *out = v; });
}

api::Status YamlReader::readDouble(std::string_view key, double* out, NumberRange range,
                                   Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return readKeyed(
      c, [&](const YamlReader& r) { return r.asDouble(range); }, [&](double v) { *out = v; });
}

api::Status YamlReader::readBool(std::string_view key, bool* out, Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return readKeyed(
      c, [](const YamlReader& r) { return r.asBool(); }, [&](bool v) { *out = v; });
}

api::Status YamlReader::readStringMap(std::string_view key, std::map<std::string, std::string>* out,
                                      Presence presence) const {
  std::map<std::string, std::string> result;
  api::Status s = forEachEntry(
      key,
      [&](const std::string& name, const YamlReader& value) -> api::Status {
        auto text = value.asString();
        if (!text.ok()) return text.status();
        result[name] = std::move(text).value();
        return api::Status();
      },
      presence);
  if (!s.ok()) return s;
  if (has(key)) *out = std::move(result);
  return api::Status();
}

api::Status YamlReader::readStringList(std::string_view key, std::vector<std::string>* out,
                                       Presence presence) const {
  std::vector<std::string> result;
  api::Status s = forEachItem(
      key,
      [&](const YamlReader& item) -> api::Status {
        auto text = item.asString();
        if (!text.ok()) return text.status();
        result.push_back(std::move(text).value());
        return api::Status();
      },
      presence);
  if (!s.ok()) return s;
  if (has(key)) *out = std::move(result);
  return api::Status();
}

api::Status YamlReader::forEachItem(const std::function<api::Status(const YamlReader&)>& fn) const {
  return guarded(*this, [&]() -> api::Status {
    if (api::Status s = expectList(); !s.ok()) return s;
    if (isNull()) return api::Status();
    size_t index = 0;
    for (const YAML::Node& item : node_) {
      int item_line = lineOf(item, line_);
      YamlReader r(item, path_ + "[" + std::to_string(index) + "]", item_line, item_line, ctx_);
      if (api::Status s = fn(r); !s.ok()) return s;
      ++index;
    }
    return api::Status();
  });
}

api::Status YamlReader::forEachItem(std::string_view key,
                                    const std::function<api::Status(const YamlReader&)>& fn,
                                    Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return c.has_value() ? c->forEachItem(fn) : api::Status();
}

api::Status YamlReader::forEachEntry(
    const std::function<api::Status(const std::string&, const YamlReader&)>& fn) const {
  auto all = entries();
  if (!all.ok()) return all.status();
  for (const Entry& e : *all) {
    if (api::Status s = fn(e.key, e.value); !s.ok()) return s;
  }
  return api::Status();
}

api::Status YamlReader::forEachEntry(
    std::string_view key,
    const std::function<api::Status(const std::string&, const YamlReader&)>& fn,
    Presence presence) const {
  std::optional<YamlReader> c;
  if (api::Status s = requireKey(key, presence, &c); !s.ok()) return s;
  return c.has_value() ? c->forEachEntry(fn) : api::Status();
}

bool isIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

api::Status readIdentifier(const YamlReader& r, std::string_view key, std::string* out,
                           Presence presence) {
  std::string value = *out;
  if (api::Status st = r.readString(key, &value, presence); !st.ok()) return st;
  if (!r.has(key)) return api::Status();
  if (!isIdentifier(value)) {
    return r.errorAt(key,
                     value.empty()
                         ? "must not be empty"
                         : "must be 1 to 64 letters, digits, '_', '-' or '.', got '" + value + "'");
  }
  *out = std::move(value);
  return api::Status();
}

api::Status readKeySha256(const YamlReader& r, std::string_view key, std::string* out) {
  std::string value;
  if (api::Status st = r.readString(key, &value, Presence::kRequired); !st.ok()) return st;
  value = api::asciiLower(value);
  if (value.size() != 64 || !std::all_of(value.begin(), value.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return r.errorAt(key,
                     "must be the 64 hex digits of the key's SHA-256 (from `switchyard-cli "
                     "hash-key`), got " +
                         std::to_string(value.size()) + " characters");
  }
  *out = std::move(value);
  return api::Status();
}

}  // namespace policies
