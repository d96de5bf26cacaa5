// engine::grammar: structured outputs for the local engine. A JSON schema (OpenAI's
// `response_format`) is compiled into a Grammar: a small graph of JSON value nodes (objects with
// their properties in schema order, arrays, strings, numbers, literals from enum/const, anyOf).
// A Matcher (matcher.h) walks it byte by byte and turns it into a token mask for each step.
//
// What the grammar generates (and so what a constrained answer looks like):
// - Objects write their declared properties in the order the request's body declared them in
//   `properties` (the api::KeyOrder captured beside the schema; alphabetical order, api::Json's,
//   for a schema without one, such as one built in code), as OpenAI does; a required property
//   is always written, an optional one may be left out. No undeclared key is ever written, whatever
//   additionalProperties says. An object schema without `properties` (and the json_object mode)
//   allows any keys, with the `additionalProperties` schema or any JSON value as values.
// - Whitespace: at each place JSON allows it (after `{`, `[`, `,`, `:` and around keys and
//   values, never before the top-level value or after it) at most `max_whitespace` bytes of
//   space, tab, CR or LF. So `{"a":1}` and `{"a": 1, "b": 2}` can be written, but a model can
//   never loop on whitespace.
// - Bounds, so that every generation ends: a free string holds at most `max_string_bytes` raw
//   bytes between its quotes (escapes count as written), numbers at most `max_number_digits`
//   digits before and after the point and two exponent digits, arrays at most their maxItems or
//   `max_items`, free objects at most `max_items` keys, and values nest at most `max_depth`
//   deep. Whenever an optional part (a property, an array item, an anyOf branch) would not fit
//   in the remaining depth it is not offered, so a schema with a finite instance never walks
//   into a dead end; a schema without one (a required property that recurses forever) is
//   rejected when it is compiled.
// - Strings are well-formed UTF-8 (a multi-byte character may be spread over byte tokens);
//   escapes are JSON's, and \u escapes never name a surrogate, so every answer parses.
// - ValueSyntax::kGemma4 (tool-call arguments, compileToolCalls) writes the same values in Gemma
//   4's own argument syntax, as its chat template renders earlier calls: keys bare (`city:`;
//   quoted as <|"|>key<|"|> when the name holds a byte a bare key cannot, and for free keys),
//   strings between <|"|> delimiters with no escapes (any UTF-8, tab, CR and LF, anything but
//   the delimiter), enum/const values rendered alike; numbers, true, false, null as in JSON.
#pragma once

#include <bitset>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace engine::grammar {

inline constexpr int kMaxStackDepth = 64;  // the largest max_depth a grammar may use

struct GrammarOptions {
  int max_string_bytes = 4096;  // raw bytes between the quotes of a free string
  int max_whitespace = 2;       // whitespace bytes at each place JSON allows whitespace
  int max_depth = 32;    // nested values (an object holding a string is 2 deep), <= kMaxStackDepth
  int max_items = 1024;  // array items (when the schema gives no maxItems), free-object keys
  int max_number_digits = 15;  // digits of a number's integer part, and of its fraction
};

enum class NodeKind : uint8_t {
  kObject,
  kArray,
  kString,
  kNumber,
  kInteger,
  kLiteral,
  kAnyOf,
  kSequence,  // its `alts` one after the other (a tool call: fixed text, arguments, fixed text)
  kText,      // free text in which `literals` (one marker) opens alts[0], at most max_items times
};

// A trie over a set of byte strings (enum/const values as compact JSON, object keys with their
// quotes). Node 0 is the root.
struct LiteralTrie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // (byte, node), sorted by byte
    int32_t value = -1;                                 // which string ends here, -1 when none
    std::vector<int32_t> below;  // sorted values ending at or below this node
  };
  std::vector<Node> nodes;

  int32_t child(int32_t node, uint8_t byte) const;
  // Adds `bytes` as value `value` (values are added in increasing order).
  void add(std::string_view bytes, int32_t value);
  // True when a value in [lo, hi] ends at or below `node`.
  bool reaches(int32_t node, int32_t lo, int32_t hi) const;
};

struct Property {
  std::string name;
  int32_t value = -1;  // node
  bool required = false;
};

struct Node {
  NodeKind kind = NodeKind::kAnyOf;
  // kObject: declared properties in schema order, their keys in `literals` (value = index).
  std::vector<Property> props;
  // kObject: first required property at or after index i ([props.size() + 1]; props.size()
  // when none).
  std::vector<int32_t> next_required;
  int32_t additional = -1;  // kObject without properties: the value node of free keys, else -1
  int32_t key_string = -1;  // kObject with free keys: the string node their keys are
  // kArray (and kText: max_items)
  int32_t items = -1;
  int32_t min_items = 0;
  int32_t max_items = 0;
  // kLiteral (enum/const values) and kObject (keys)
  LiteralTrie literals;
  // kAnyOf: the branches; kSequence: the parts, in order
  std::vector<int32_t> alts;
  // Stack frames a value of this node needs at least to be completed (1 for a scalar).
  int32_t min_depth = 1;
  // The bytes a value of this node can start with (an anyOf tries only the branches that fit).
  std::bitset<256> first;
  // ValueSyntax::kGemma4: a kString between <|"|> delimiters, a kObject whose keys are written
  // in that syntax (its free keys are such strings).
  bool native = false;
};

struct Grammar {
  std::vector<Node> nodes;
  int32_t root = 0;
  GrammarOptions options;
};

// How the values of a schema are written: JSON, or Gemma 4's argument syntax (see above).
enum class ValueSyntax : uint8_t { kJson, kGemma4 };

// Gemma 4's string delimiter, one token of its vocabulary.
inline constexpr std::string_view kGemma4Quote = "<|\"|>";

// Compiles a JSON schema. `param` names it in errors ("response_format.json_schema.schema"):
// an unsupported keyword is kInvalidRequest whose param is the keyword's path. `order` (may be
// null) is the key order the body wrote the schema in: properties are generated in it. A schema
// without `type`, enum, const, anyOf or $ref allows any JSON value (an object, when it has
// `properties`), except with `strict` (OpenAI's strict mode), where it is kInvalidRequest.
api::StatusOr<std::shared_ptr<const Grammar>> compileSchema(
    const api::Json& schema, const GrammarOptions& options, std::string_view param,
    ValueSyntax syntax = ValueSyntax::kJson, const api::KeyOrder* order = nullptr,
    bool strict = false);

// `value` as Gemma 4's chat template writes an argument (keys bare, sorted; strings between
// <|"|>): what ValueSyntax::kGemma4 generates for an enum/const value.
std::string gemma4Value(const api::Json& value);

// Compiles OpenAI's `response_format` object: {type: "json_object"} (any JSON object) or
// {type: "json_schema", json_schema: {name, schema, strict}}. {type: "text"} gives nullptr
// (nothing to enforce). Anything else is kInvalidRequest naming the field. `schema_order` (may
// be null): the key order within json_schema.schema. json_schema.strict true applies OpenAI's
// strict rule that every schema names its type.
api::StatusOr<std::shared_ptr<const Grammar>> compileResponseFormat(
    const api::Json& response_format, const GrammarOptions& options = {},
    const api::KeyOrder* schema_order = nullptr);

// How a model writes a tool call (routers/tool_calls.h parses them back):
//   kGemma4: <|tool_call>call:NAME{city:<|"|>Paris<|"|>}<tool_call|>  (Gemma 4's own tokens;
//            the arguments in its argument syntax, ValueSyntax::kGemma4)
//   kJson:   {"name":"NAME","parameters":{"city":"Paris"}}  (the JSON Google documents for
//            Gemma 3)
// The reader (routers/tool_calls.h) turns both into JSON arguments.
enum class ToolSyntax : uint8_t { kGemma4, kJson };

struct ToolSpec {
  std::string name;
  // The function's JSON schema; null, {} and a schema without `type` (nor anyOf, $ref, enum,
  // const): an object (of its `properties`, when it has some), as OpenAI reads them.
  api::Json parameters;
  api::KeyOrder order;  // the body's key order within `parameters` (empty: sorted)
  // The function's `strict: true`: as for json_schema.strict, every schema must name its type.
  bool strict = false;
};

// One tool call, to one of `tools` (at most 32), in `syntax`, whose arguments follow that tool's
// parameters schema. With `answer` (a compiled response_format), either such an answer or a call.
// kInvalidRequest naming tools[i].function.parameters.<keyword> for a schema it cannot enforce.
api::StatusOr<std::shared_ptr<const Grammar>> compileToolCalls(
    const std::vector<ToolSpec>& tools, ToolSyntax syntax,
    std::shared_ptr<const Grammar> answer = nullptr, const GrammarOptions& options = {});

// kGemma4 only: free text in which each <|tool_call> must go on as a call to one of `tools`
// (as above), at most `max_calls` of them (0: the text may hold no call). The text itself is
// not constrained (any bytes), so only calls are.
api::StatusOr<std::shared_ptr<const Grammar>> compileTextWithToolCalls(
    const std::vector<ToolSpec>& tools, int max_calls, const GrammarOptions& options = {});

// The canonical text of what a grammar is compiled from, for GrammarCache keys: a
// response_format (with its schema's key order, which changes the grammar), and a tool grammar:
// compileToolCalls (max_calls -1; `answer_key` the response_format key of its answer, "" when
// none) or compileTextWithToolCalls (max_calls >= 0).
std::string responseFormatKey(const api::Json& response_format, const GrammarOptions& options,
                              const api::KeyOrder* schema_order = nullptr);
std::string toolGrammarKey(const std::vector<ToolSpec>& tools, ToolSyntax syntax, int max_calls,
                           std::string_view answer_key, const GrammarOptions& options = {});

// Compiled grammars by the canonical text of what they were compiled from (above), least
// recently used dropped first. Failed compiles are not kept. Thread-safe.
class GrammarCache {
 public:
  explicit GrammarCache(size_t capacity = 64) : capacity_(capacity) {}

  // The grammar of a response_format (compileResponseFormat), nullptr for text.
  api::StatusOr<std::shared_ptr<const Grammar>> get(const api::Json& response_format,
                                                    const GrammarOptions& options = {},
                                                    const api::KeyOrder* schema_order = nullptr);
  // The grammar cached under `key`, or what `compile` returns (kept under `key` when it is a
  // grammar).
  api::StatusOr<std::shared_ptr<const Grammar>> getOrCompile(
      const std::string& key,
      const std::function<api::StatusOr<std::shared_ptr<const Grammar>>()>& compile);
  size_t size() const;
  uint64_t hits() const;

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const Grammar>>;
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t hits_ = 0;
};

}  // namespace engine::grammar
