// Strict, typed reading of YAML config files, shared by every loader of Switchyard
// (switchyard.yaml, policies.yaml, pricing.yaml).
//
// A YamlReader wraps one YAML node together with its key path ("teams[1].keys[0].sha256") and
// line, so that every error names where it happened. All errors are api::Status of code
// kConfig whose message reads
//
//     <source>:<line>: <key.path>: <problem>
//
// with 1-based lines (the top-level node has an empty path and reads "<source>:<line>:
// <problem>"). Syntax errors read "<source>:<line>:<col>: invalid YAML: <problem>". This
// format is a contract: tests, the CLI and operators rely on it. Nothing here throws.
//
// Rules every loader gets from this reader:
//   - Scalar values (never keys) are interpolated from the environment: `${VAR}` is replaced
//     by VAR (an unset VAR is an error; set-but-empty gives ""), `${VAR:-default}` by VAR or,
//     when VAR is unset or empty, by `default` (taken literally up to the first `}`), and
//     `$${` writes a literal `${`. The result is not scanned again.
//   - Integers are decimal, with an optional sign ("1.5", "1e3", "0x10" are not integers).
//     Numbers are finite decimals (".inf" and ".nan" are refused).
//   - Booleans are the YAML 1.2 core words only: true/True/TRUE and false/False/FALSE. The
//     YAML 1.1 words yes/no/on/off/y/n are refused, with a message saying so.
//   - A quoted scalar is read by its text: `port: "8080"` is the integer 8080.
//   - An explicit null (`key:`, `key: ~`, `key: null`) where a scalar is expected is an error
//     ("write \"\" for an empty string"); where a map or a list is expected it is the same as
//     an empty one, so that a section whose entries are all commented out stays valid.
//   - Map keys must be scalars; a key repeated in one map is an error naming both lines.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace policies {

// Looks up an environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment (getenv).
EnvLookup processEnv();

// Replaces `${VAR}`, `${VAR:-default}` and `$${` in `text` as described above. On failure the
// kConfig status carries only the problem ("environment variable FOO is not set ..."), without
// a location; YamlReader adds the source, line and key.
api::StatusOr<std::string> expandEnv(std::string_view text, const EnvLookup& env);

// Reads a whole file of at most `max_bytes`. A missing or unreadable file (or a directory) is
// kIo naming the path; a file over the limit is kConfig.
api::StatusOr<std::string> readTextFile(const std::string& path,
                                        int64_t max_bytes = int64_t{16} << 20);

// The candidate closest to `word` by edit distance (case-insensitive, a transposition counts as
// one edit), when it is close enough to be a plausible typo (up to a third of the letters
// differ, or one word is a prefix of at least 3 letters of the other); nullopt otherwise.
std::optional<std::string_view> closestMatch(std::string_view word,
                                             const std::vector<std::string_view>& candidates);

enum class Presence {
  kOptional,  // an absent key leaves the output untouched (it keeps its default)
  kRequired,  // an absent key is "<path>: is required"
};

// Bounds of a number read by readDouble. The message for a value out of range names the bound
// it broke: "must be > 0, got 0", "must be >= 1, got 0.5", "must be <= 600, got 900".
struct NumberRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;  // true: value > min; false: value >= min

  static NumberRange atLeast(double min, double max = std::numeric_limits<double>::infinity()) {
    return NumberRange{min, max, false};
  }
  // value > 0 (and <= max).
  static NumberRange positive(double max = std::numeric_limits<double>::infinity()) {
    return NumberRange{0, max, true};
  }
};

// A read-only view of one node of a parsed document. Cheap to copy (yaml-cpp nodes are handles).
// Every method that reads a key first requires this node to be a map (or null).
class YamlReader {
 public:
  // Parses `text`, which must hold at most one YAML document (empty text or only comments is a
  // null document). `source_name` starts every error message. `env` resolves `${VAR}`.
  static api::StatusOr<YamlReader> parse(std::string_view text, std::string_view source_name,
                                         EnvLookup env = processEnv());

  // Wraps an already-parsed node as the top of a document.
  YamlReader(const YAML::Node& node, std::string_view source_name, EnvLookup env = processEnv());

  // Where this node is.
  const std::string& path() const { return path_; }  // "" at the top
  int line() const { return line_; }                 // 1-based, of the value
  int keyLine() const { return key_line_; }          // 1-based, of the key that holds it
  const std::string& sourceName() const { return ctx_->source_name; }
  const YAML::Node& node() const { return node_; }

  bool isNull() const;
  bool isMap() const;
  bool isList() const;
  bool isScalar() const;
  // "a map", "a list", "null" or "'<text>'" (shortened), for messages.
  std::string describe() const;

  // A kConfig status "<source>:<line>: <path>: <problem>" located at this node.
  api::Status error(std::string_view problem) const;
  // The same, located at the key that holds this node (for a problem with the key itself, such
  // as an invalid name in a map of named entries).
  api::Status keyError(std::string_view problem) const;
  // The same, located at the child `key` when it is present, else at the line of the key that
  // holds this node (where "<path>.<key>: is required" is reported too).
  api::Status errorAt(std::string_view key, std::string_view problem) const;

  // Ok when this node is a map or null; "expected a map, got a list" otherwise.
  api::Status expectMap() const;
  // Ok when this node is a list or null.
  api::Status expectList() const;

  // Requires a map (or null) whose keys are scalars, unique and all in `allowed`. An unknown key
  // is reported at its own line with its path, with a suggestion when one is close:
  // "switchyard.yaml:4: server.thread: unknown key; did you mean 'threads'?", or else the list
  // of allowed keys.
  api::Status checkNoUnknownKeys(const std::vector<std::string_view>& allowed) const;

  // True when `key` is present, even with a null value.
  bool has(std::string_view key) const;
  // The child under `key`; nullopt when absent (or when this node is not a map).
  std::optional<YamlReader> child(std::string_view key) const;
  // The child under `key`, or when absent a null reader located at this node's key; a null reader
  // reads as an empty map or list.
  YamlReader section(std::string_view key) const;

  // This node's own value (after ${VAR} interpolation).
  api::StatusOr<std::string> asString() const;
  // Like asString, but non-empty, without whitespace or control characters, <= 256 bytes.
  api::StatusOr<std::string> asName() const;
  api::StatusOr<int64_t> asInt(int64_t min = std::numeric_limits<int64_t>::min(),
                               int64_t max = std::numeric_limits<int64_t>::max()) const;
  api::StatusOr<double> asDouble(NumberRange range = {}) const;
  api::StatusOr<bool> asBool() const;

  // Keyed reads. On success `*out` is set when the key is present; absent optional keys leave
  // `*out` as it was (its documented default). `*out` is untouched on failure.
  api::Status readString(std::string_view key, std::string* out,
                         Presence presence = Presence::kOptional) const;
  api::Status readName(std::string_view key, std::string* out,
                       Presence presence = Presence::kOptional) const;
  // One of `choices`, with a suggestion for a near miss ("did you mean 'openai'?").
  api::Status readChoice(std::string_view key, std::string* out,
                         const std::vector<std::string_view>& choices,
                         Presence presence = Presence::kOptional) const;
  api::Status readInt(std::string_view key, int* out, int64_t min, int64_t max,
                      Presence presence = Presence::kOptional) const;
  api::Status readInt(std::string_view key, int64_t* out, int64_t min, int64_t max,
                      Presence presence = Presence::kOptional) const;
  api::Status readDouble(std::string_view key, double* out, NumberRange range,
                         Presence presence = Presence::kOptional) const;
  api::Status readBool(std::string_view key, bool* out,
                       Presence presence = Presence::kOptional) const;
  // A map of scalar keys to scalar values (values interpolated; keys unique). Replaces `*out`.
  api::Status readStringMap(std::string_view key, std::map<std::string, std::string>* out,
                            Presence presence = Presence::kOptional) const;
  // A list of scalars (interpolated). Replaces `*out`.
  api::Status readStringList(std::string_view key, std::vector<std::string>* out,
                             Presence presence = Presence::kOptional) const;

  // Calls `fn` for each item of this list (paths "<path>[i]"), stopping at the first error it
  // returns. A null node is an empty list.
  api::Status forEachItem(const std::function<api::Status(const YamlReader& item)>& fn) const;
  // Calls `fn` for each entry of this map in file order (paths "<path>.<name>"), with the
  // entry's key (not interpolated). Keys must be scalars and unique. A null node is an empty map.
  api::Status forEachEntry(
      const std::function<api::Status(const std::string& name, const YamlReader& value)>& fn) const;
  // The same for the list or map under `key`; an absent optional key has no items.
  api::Status forEachItem(std::string_view key,
                          const std::function<api::Status(const YamlReader& item)>& fn,
                          Presence presence = Presence::kOptional) const;
  api::Status forEachEntry(
      std::string_view key,
      const std::function<api::Status(const std::string& name, const YamlReader& value)>& fn,
      Presence presence = Presence::kOptional) const;

 private:
  struct Context {
    std::string source_name;
    EnvLookup env;
  };

  YamlReader(const YAML::Node& node, std::string path, int line, int key_line,
             std::shared_ptr<const Context> ctx);

  // The child readers of this map in file order, as (key text, key line, reader); fails on a
  // node that is not a map, a non-scalar key or a repeated key.
  struct Entry;
  api::StatusOr<std::vector<Entry>> entries() const;
  api::Status requireKey(std::string_view key, Presence presence,
                         std::optional<YamlReader>* out) const;
  std::string childPath(std::string_view key) const;
  // The interpolated text of a scalar node; `expected` names the wanted type for messages.
  api::StatusOr<std::string> scalarText(std::string_view expected) const;

  YAML::Node node_;
  std::string path_;
  int line_ = 1;      // where the value is
  int key_line_ = 1;  // where the key that holds it is (a missing child is reported here)
  std::shared_ptr<const Context> ctx_;
};

// An identifier: 1 to 64 letters, digits, '_', '-' or '.'. Team names, key ids and provider
// names are identifiers: they appear in logs, metric labels, ledgers and route headers.
bool isIdentifier(std::string_view s);

// Reads `key` as an identifier; an absent optional key leaves `*out` as it was.
api::Status readIdentifier(const YamlReader& r, std::string_view key, std::string* out,
                           Presence presence);

// Reads `key` as an API key's SHA-256 (`switchyard-cli hash-key`): 64 hex digits, stored
// lowercase. A bad value is reported by its length, never its text: a raw key pasted there by
// mistake must not reach the logs.
api::Status readKeySha256(const YamlReader& r, std::string_view key, std::string* out);

}  // namespace policies
