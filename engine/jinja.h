// A Jinja engine for chat templates: the subset that Hugging Face chat templates use, rendered
// the way @huggingface/jinja (the JavaScript renderer transformers.js uses) renders it, byte for
// byte, including its choices where it differs from Python's jinja2: booleans print as
// "true"/"false", `tojson` writes ", " and ": " separators, `trim` is ECMAScript's trim, the
// template is read with lstrip_blocks and trim_blocks on and one trailing newline dropped.
//
// Supported: {{ }}, {% %}, {# #}, whitespace control (-); if/elif/else, for (loop.*, else,
// `for x in xs if cond`, break/continue), set (names, tuples, namespace attributes, block set),
// macro and call blocks, filter blocks; literals, lists, dicts, tuples, attribute/subscript
// access, slices, in/not in, `is` tests, ~, arithmetic, comparison, and/or/not, `a if c else b`;
// the filters, tests, string and dict methods of @huggingface/jinja; raise_exception(),
// namespace(), range(), strftime_now().
//
// Known differences, all outside what chat templates do: upper/lower/title change ASCII letters
// only; sort and dictsort compare strings by UTF-8 bytes (JavaScript compares UTF-16 units, which
// differs only between astral characters and U+E000-U+FFFF); `tojson(sort_keys=true)` sorts by
// bytes, not by the locale; `==` between lists or dicts is true only for the same object;
// s[i] counts code points (JavaScript counts UTF-16 units there, which differs only around
// astral characters; slices count code points in both); `first`/`last` of an empty list are undefined
// where the reference throws; a namespace may not hold a namespace (the reference allows it).
//
// Errors never escape as exceptions: parse errors name the line and column, runtime errors (and
// raise_exception's message) come back as a Status, and every render is bounded in nesting,
// work and output size, so a hostile template costs a bounded error, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/status.h"

namespace engine::jinja {

// Template variables keep their insertion order (dict iteration and tojson follow it).
using Json = nlohmann::ordered_json;

struct Limits {
  size_t max_output_bytes = 8u << 20;  // the rendered text and any one string built on the way
  int64_t max_steps = 5'000'000;       // statements and expressions evaluated
  int max_depth = 200;                 // nested macro calls and evaluation depth
  size_t max_list_items = 1u << 20;    // elements of one list built by the template
};

struct Program;  // the parsed template (engine/jinja_internal.h)

class Template {
 public:
  // Parses `source`. kInvalidRequest "line L, column C: ..." on a syntax error (columns count
  // bytes from 1), or when the template nests deeper than Limits::max_depth.
  static api::StatusOr<Template> parse(std::string_view source);

  // Renders with `context`'s members as variables (it must be an object or null). Errors are
  // kInvalidRequest: raise_exception(msg) gives `msg`; anything else names what went wrong
  // ("Cannot perform operation + on undefined values", "rendering exceeded 8388608 bytes").
  api::StatusOr<std::string> render(const Json& context, const Limits& limits = {}) const;

 private:
  explicit Template(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const Program> program_;
};

}  // namespace engine::jinja
