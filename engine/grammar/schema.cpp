// JSON schema -> Grammar (grammar.h): the subset OpenAI's strict mode documents, plus the
// annotations that change nothing about the generated value.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "engine/grammar/grammar.h"

namespace engine::grammar {
namespace {

constexpr size_t kMaxNodes = 8192;
constexpr size_t kMaxLiteralBytes = 1 << 20;
constexpr int32_t kInfinite = std::numeric_limits<int32_t>::max() / 4;

// Keywords that describe a value without constraining it: accepted and ignored.
const std::set<std::string, std::less<>> kAnnotations = {
    "description", "title", "$comment", "examples", "default", "$schema", "$id"};
const std::set<std::string, std::less<>> kSupported = {
    "type",  "properties", "required", "additionalProperties",
    "items", "minItems",   "maxItems", "enum",
    "const", "anyOf",      "$defs",    "definitions",
    "$ref"};

std::string escapePointerToken(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

// Whether Gemma 4's argument syntax can write `name` as a bare key: no byte that ends a key or
// starts another part (the reader takes a bare key up to its ':').
bool bareKey(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || std::strchr(":\"<{}[],", c) != nullptr) {
      return false;
    }
  }
  return true;
}

std::string gemma4String(std::string_view text) {
  return std::string(kGemma4Quote) + std::string(text) + std::string(kGemma4Quote);
}

class Compiler {
 public:
  Compiler(const api::Json& root, const GrammarOptions& options, std::string_view param,
           ValueSyntax syntax, const api::KeyOrder* order, bool strict)
      : root_(root),
        options_(options),
        param_(param),
        native_(syntax == ValueSyntax::kGemma4),
        strict_(strict),
        order_(order != nullptr && !order->empty() ? order : nullptr) {}

  api::StatusOr<std::shared_ptr<const Grammar>> run() {
    auto g = std::make_shared<Grammar>();
    options_.max_depth = std::clamp(options_.max_depth, 1, kMaxStackDepth);
    g->options = options_;
    grammar_ = g.get();
    int32_t root = compile(root_, param_, "#");
    if (!status_.ok()) return status_;
    g->root = root;
    computeMinDepth();
    computeFirstBytes();
    flattenAnyOf();
    if (!status_.ok()) return status_;
    if (g->nodes[root].min_depth > options_.max_depth) {
      return api::invalidRequest("the schema has no instance that nests at most " +
                                     std::to_string(options_.max_depth) +
                                     " deep (a required property or item that recurses forever?)",
                                 param_);
    }
    return std::shared_ptr<const Grammar>(std::move(g));
  }

 private:
  int32_t fail(std::string message, const std::string& param) {
    if (status_.ok()) status_ = api::invalidRequest(std::move(message), param);
    return -1;
  }

  int32_t newNode(NodeKind kind) {
    if (grammar_->nodes.size() >= kMaxNodes) {
      return fail("the schema is too large (more than " + std::to_string(kMaxNodes) + " parts)",
                  param_);
    }
    grammar_->nodes.emplace_back();
    grammar_->nodes.back().kind = kind;
    return static_cast<int32_t>(grammar_->nodes.size() - 1);
  }

  // A value as this grammar writes it (enum/const).
  std::string valueText(const api::Json& v) const { return native_ ? gemma4Value(v) : v.dump(); }
  // A kString node, delimited as this grammar writes strings.
  int32_t stringNode() {
    int32_t id = newNode(NodeKind::kString);
    if (id >= 0) grammar_->nodes[id].native = native_;
    return id;
  }

  int32_t literalNode(const std::vector<std::string>& values, const std::string& param) {
    int32_t id = newNode(NodeKind::kLiteral);
    if (id < 0) return -1;
    for (size_t i = 0; i < values.size(); ++i) {
      literal_bytes_ += values[i].size();
      if (literal_bytes_ > kMaxLiteralBytes) {
        return fail("enum/const values and property names are too large (more than " +
                        std::to_string(kMaxLiteralBytes) + " bytes in all)",
                    param);
      }
      grammar_->nodes[id].literals.add(values[i], static_cast<int32_t>(i));
    }
    return id;
  }

  // Any JSON value: anyOf(object of any keys, array of anything, string, number, literals).
  int32_t anyNode() {
    if (any_ >= 0) return any_;
    any_ = newNode(NodeKind::kAnyOf);
    if (any_ < 0) return -1;
    int32_t obj = newNode(NodeKind::kObject);
    int32_t arr = newNode(NodeKind::kArray);
    int32_t str = stringNode();
    int32_t num = newNode(NodeKind::kNumber);
    int32_t lit = literalNode({"true", "false", "null"}, param_);
    if (lit < 0 || obj < 0 || str < 0) return -1;
    grammar_->nodes[obj].native = native_;
    grammar_->nodes[obj].additional = any_;
    grammar_->nodes[obj].key_string = str;
    grammar_->nodes[obj].next_required = {0};
    grammar_->nodes[arr].items = any_;
    grammar_->nodes[arr].max_items = options_.max_items;
    grammar_->nodes[any_].alts = {obj, arr, str, num, lit};
    return any_;
  }

  int32_t compile(const api::Json& s, const std::string& param, const std::string& pointer);
  int32_t compileTyped(const api::Json& s, const std::string& type, const std::string& param,
                       const std::string& pointer);
  int32_t compileObject(const api::Json& s, const std::string& param, const std::string& pointer);
  int32_t compileArray(const api::Json& s, const std::string& param, const std::string& pointer);
  int32_t compileRef(const std::string& ref, const std::string& param);
  std::vector<std::string> propertyOrder(const api::Json& properties,
                                         const std::string& pointer) const;
  const api::Json* resolvePointer(const std::string& ref) const;
  void computeMinDepth();
  void computeFirstBytes();
  void flattenAnyOf();

  const api::Json& root_;
  GrammarOptions options_;
  std::string param_;
  const bool native_;  // ValueSyntax::kGemma4
  const bool strict_;  // OpenAI's strict mode: every schema names its type
  const api::KeyOrder* order_;  // the body's key order, or null (sorted)
  Grammar* grammar_ = nullptr;
  api::Status status_;
  int32_t any_ = -1;
  size_t literal_bytes_ = 0;
  std::map<std::string, int32_t> by_pointer_;  // compiled $ref targets
  int depth_ = 0;
};

int32_t Compiler::compile(const api::Json& s, const std::string& param,
                          const std::string& pointer) {
  if (!status_.ok()) return -1;
  if (s.is_boolean()) {
    if (s.get<bool>()) return anyNode();
    return fail("a false schema allows no value", param);
  }
  if (!s.is_object()) return fail("a schema must be an object", param);
  if (++depth_ > 256) return fail("the schema nests too deeply", param);
  struct Leave {
    int& d;
    ~Leave() { --d; }
  } leave{depth_};
  for (const auto& [key, value] : s.items()) {
    if (kAnnotations.count(key) || kSupported.count(key)) continue;
    return fail("unsupported JSON schema keyword '" + key + "'", param + "." + key);
  }
  if (s.contains("$ref")) {
    if (s.size() > 1) {
      for (const auto& [key, value] : s.items()) {
        if (key != "$ref" && !kAnnotations.count(key) && key != "$defs" && key != "definitions") {
          return fail("'" + key + "' beside '$ref' is not supported", param + "." + key);
        }
      }
    }
    if (!s["$ref"].is_string()) return fail("'$ref' must be a string", param + ".$ref");
    return compileRef(s["$ref"].get<std::string>(), param + ".$ref");
  }
  if (s.contains("const")) return literalNode({valueText(s["const"])}, param + ".const");
  if (s.contains("enum")) {
    const auto& e = s["enum"];
    if (!e.is_array() || e.empty())
      return fail("'enum' must be a non-empty array", param + ".enum");
    std::vector<std::string> values;
    std::set<std::string> seen;
    for (const auto& v : e) {
      if (seen.insert(v.dump()).second) values.push_back(valueText(v));
    }
    return literalNode(values, param + ".enum");
  }
  if (s.contains("anyOf")) {
    const auto& alts = s["anyOf"];
    if (!alts.is_array() || alts.empty()) {
      return fail("'anyOf' must be a non-empty array of schemas", param + ".anyOf");
    }
    if (s.contains("type")) return fail("'type' beside 'anyOf' is not supported", param + ".type");
    int32_t id = newNode(NodeKind::kAnyOf);
    for (size_t i = 0; i < alts.size() && id >= 0; ++i) {
      std::string p = param + ".anyOf[" + std::to_string(i) + "]";
      int32_t alt = compile(alts[i], p, pointer + "/anyOf/" + std::to_string(i));
      if (alt < 0) return -1;
      grammar_->nodes[id].alts.push_back(alt);
    }
    return id;
  }
  if (!s.contains("type")) {
    if (strict_) {
      return fail("schema must have a 'type' key (json_schema.strict is true)", param);
    }
    if (s.contains("properties")) return compileTyped(s, "object", param, pointer);
    if (s.contains("items")) return compileTyped(s, "array", param, pointer);
    return anyNode();
  }
  const auto& type = s["type"];
  if (type.is_string()) return compileTyped(s, type.get<std::string>(), param, pointer);
  if (!type.is_array() || type.empty()) {
    return fail("'type' must be a type name or a non-empty array of them", param + ".type");
  }
  int32_t id = newNode(NodeKind::kAnyOf);
  for (const auto& t : type) {
    if (!t.is_string()) return fail("'type' must name types", param + ".type");
    int32_t alt = compileTyped(s, t.get<std::string>(), param, pointer);
    if (alt < 0) return -1;
    grammar_->nodes[id].alts.push_back(alt);
  }
  return id;
}

int32_t Compiler::compileTyped(const api::Json& s, const std::string& type,
                               const std::string& param, const std::string& pointer) {
  if (type == "object") return compileObject(s, param, pointer);
  if (type == "array") return compileArray(s, param, pointer);
  if (type == "string") return stringNode();
  if (type == "number") return newNode(NodeKind::kNumber);
  if (type == "integer") return newNode(NodeKind::kInteger);
  if (type == "boolean") return literalNode({"true", "false"}, param);
  if (type == "null") return literalNode({"null"}, param);
  return fail("unknown type '" + type + "'", param + ".type");
}

int32_t Compiler::compileObject(const api::Json& s, const std::string& param,
                                const std::string& pointer) {
  int32_t id = newNode(NodeKind::kObject);
  if (id < 0) return -1;
  std::vector<Property> props;
  if (s.contains("properties")) {
    const auto& p = s["properties"];
    if (!p.is_object()) return fail("'properties' must be an object", param + ".properties");
    for (const std::string& name : propertyOrder(p, pointer.substr(1) + "/properties")) {
      std::string sub_param = param + ".properties." + name;
      int32_t v = compile(p[name], sub_param, pointer + "/properties/" + escapePointerToken(name));
      if (v < 0) return -1;
      props.push_back({name, v, false});
    }
  }
  if (s.contains("required")) {
    const auto& r = s["required"];
    if (!r.is_array()) return fail("'required' must be an array of names", param + ".required");
    for (const auto& name : r) {
      auto it = std::find_if(props.begin(), props.end(), [&](const Property& pr) {
        return name.is_string() && pr.name == name.get<std::string>();
      });
      if (it == props.end()) {
        return fail("'required' names " + name.dump() + ", which is not in 'properties'",
                    param + ".required");
      }
      it->required = true;
    }
  }
  const api::Json* extra =
      s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
  if (extra && !extra->is_boolean() && !extra->is_object()) {
    return fail("'additionalProperties' must be a boolean or a schema",
                param + ".additionalProperties");
  }
  int32_t additional = -1;
  if (props.empty() && !(extra && extra->is_boolean() && !extra->get<bool>())) {
    additional = extra && extra->is_object() ? compile(*extra, param + ".additionalProperties",
                                                       pointer + "/additionalProperties")
                                             : anyNode();
    if (additional < 0) return -1;
  }
  int32_t key_string = additional >= 0 ? stringNode() : -1;
  if (additional >= 0 && key_string < 0) return -1;
  Node& node = grammar_->nodes[id];
  node.native = native_;
  node.additional = additional;
  node.key_string = key_string;
  node.next_required.assign(props.size() + 1, static_cast<int32_t>(props.size()));
  for (size_t i = props.size(); i-- > 0;) {
    node.next_required[i] = props[i].required ? static_cast<int32_t>(i) : node.next_required[i + 1];
  }
  for (size_t i = 0; i < props.size(); ++i) {
    const std::string& name = props[i].name;
    std::string key = !native_ ? api::Json(name).dump() : bareKey(name) ? name : gemma4String(name);
    // Key tries cost what enum tries do, and a type array compiles the same object repeatedly.
    literal_bytes_ += key.size();
    if (literal_bytes_ > kMaxLiteralBytes) {
      return fail("enum/const values and property names are too large (more than " +
                      std::to_string(kMaxLiteralBytes) + " bytes in all)",
                  param + ".properties");
    }
    node.literals.add(key, static_cast<int32_t>(i));
  }
  node.props = std::move(props);
  return id;
}

int32_t Compiler::compileArray(const api::Json& s, const std::string& param,
                               const std::string& pointer) {
  int32_t id = newNode(NodeKind::kArray);
  if (id < 0) return -1;
  int32_t items = -1;
  if (s.contains("items")) {
    if (!s["items"].is_object() && !s["items"].is_boolean()) {
      return fail("'items' must be one schema (tuples are not supported)", param + ".items");
    }
    items = compile(s["items"], param + ".items", pointer + "/items");
  } else {
    items = anyNode();
  }
  if (items < 0) return -1;
  int64_t min_items = 0, max_items = options_.max_items;
  for (const char* key : {"minItems", "maxItems"}) {
    if (!s.contains(key)) continue;
    const auto& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      return fail(std::string("'") + key + "' must be a non-negative integer", param + "." + key);
    }
    (std::string_view(key) == "minItems" ? min_items : max_items) = v.get<int64_t>();
  }
  max_items = std::min<int64_t>(max_items, options_.max_items);
  if (min_items > max_items) {
    return fail("'minItems' is larger than 'maxItems' (or than the limit of " +
                    std::to_string(options_.max_items) + " items)",
                param + ".minItems");
  }
  Node& node = grammar_->nodes[id];
  node.items = items;
  node.min_items = static_cast<int32_t>(min_items);
  node.max_items = static_cast<int32_t>(max_items);
  return id;
}

// The names of a `properties` object in the order the body wrote them (the object at `pointer`
// in order_), or sorted when the order does not know that object (a schema built in code).
std::vector<std::string> Compiler::propertyOrder(const api::Json& properties,
                                                 const std::string& pointer) const {
  std::vector<std::string> names;
  const std::vector<std::string>* written = order_ ? order_->keysAt(pointer) : nullptr;
  if (written != nullptr && written->size() == properties.size() &&
      std::all_of(written->begin(), written->end(),
                  [&](const std::string& k) { return properties.contains(k); })) {
    return *written;
  }
  for (const auto& [name, sub] : properties.items()) names.push_back(name);
  return names;
}

const api::Json* Compiler::resolvePointer(const std::string& ref) const {
  if (ref == "#") return &root_;
  if (ref.rfind("#/", 0) != 0) return nullptr;
  const api::Json* at = &root_;
  size_t pos = 2;
  while (pos <= ref.size()) {
    size_t slash = ref.find('/', pos);
    if (slash == std::string::npos) slash = ref.size();
    std::string token;
    for (size_t i = pos; i < slash; ++i) {
      if (ref[i] == '~' && i + 1 < slash && (ref[i + 1] == '0' || ref[i + 1] == '1')) {
        token += ref[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        token += ref[i];
      }
    }
    if (at->is_object()) {
      if (!at->contains(token)) return nullptr;
      at = &(*at)[token];
    } else if (at->is_array()) {
      if (token.empty() || token.find_first_not_of("0123456789") != std::string::npos ||
          token.size() > 9 || std::stoul(token) >= at->size()) {
        return nullptr;
      }
      at = &(*at)[std::stoul(token)];
    } else {
      return nullptr;
    }
    pos = slash + 1;
  }
  return at;
}

int32_t Compiler::compileRef(const std::string& ref, const std::string& param) {
  auto it = by_pointer_.find(ref);
  if (it != by_pointer_.end()) return it->second;
  const api::Json* target = resolvePointer(ref);
  if (target == nullptr) {
    return fail("'$ref' " + api::Json(ref).dump() +
                    " does not point into this schema (only local refs such as #/$defs/Name)",
                param);
  }
  // A one-branch anyOf stands for the target, so that a recursive reference has a node to name
  // before the target is compiled.
  int32_t id = newNode(NodeKind::kAnyOf);
  if (id < 0) return -1;
  by_pointer_[ref] = id;
  std::string target_param = param_ + ref.substr(1);
  std::replace(target_param.begin(), target_param.end(), '/', '.');
  int32_t body = compile(*target, target_param, ref);
  if (body < 0) return -1;
  grammar_->nodes[id].alts = {body};
  return id;
}

// min_depth by fixed point: a scalar needs 1 frame, a container 1 + what its required parts
// need, an anyOf its cheapest branch. Unreachable completions stay at kInfinite.
void Compiler::computeMinDepth() {
  auto& nodes = grammar_->nodes;
  for (auto& n : nodes) {
    bool scalar =
        n.kind != NodeKind::kObject && n.kind != NodeKind::kArray && n.kind != NodeKind::kAnyOf;
    n.min_depth = scalar ? 1 : kInfinite;
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& n : nodes) {
      int64_t d = n.min_depth;
      if (n.kind == NodeKind::kObject) {
        int64_t inner = 0;
        for (const auto& p : n.props) {
          if (p.required) inner = std::max<int64_t>(inner, nodes[p.value].min_depth);
        }
        d = 1 + inner;
      } else if (n.kind == NodeKind::kArray) {
        d = 1 + (n.min_items > 0 ? nodes[n.items].min_depth : 0);
      } else if (n.kind == NodeKind::kAnyOf) {
        d = kInfinite;
        for (int32_t a : n.alts) d = std::min<int64_t>(d, nodes[a].min_depth);
      }
      d = std::min<int64_t>(d, kInfinite);
      if (d < n.min_depth) {
        n.min_depth = static_cast<int32_t>(d);
        changed = true;
      }
    }
  }
}

// First bytes by fixed point (anyOf branches may refer back to their anyOf).
void Compiler::computeFirstBytes() {
  auto& nodes = grammar_->nodes;
  for (auto& n : nodes) {
    switch (n.kind) {
      case NodeKind::kObject:
        n.first.set('{');
        break;
      case NodeKind::kArray:
        n.first.set('[');
        break;
      case NodeKind::kString:
        n.first.set(n.native ? static_cast<uint8_t>(kGemma4Quote[0]) : '"');
        break;
      case NodeKind::kNumber:
      case NodeKind::kInteger:
        n.first.set('-');
        for (char c = '0'; c <= '9'; ++c) n.first.set(static_cast<uint8_t>(c));
        break;
      case NodeKind::kLiteral:
        for (const auto& [byte, child] : n.literals.nodes[0].children) n.first.set(byte);
        break;
      case NodeKind::kAnyOf:
      case NodeKind::kSequence:  // built by compileToolCalls, never from a schema
      case NodeKind::kText:
        break;
    }
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& n : nodes) {
      if (n.kind != NodeKind::kAnyOf) continue;
      std::bitset<256> f = n.first;
      for (int32_t a : n.alts) f |= nodes[a].first;
      if (f != n.first) {
        n.first = f;
        changed = true;
      }
    }
  }
}

// Each anyOf's branches become the distinct nodes other than anyOf that its anyOf links reach.
// The matcher forks an anyOf in place (same depth), so an anyOf-only cycle
// (anyOf: [{$ref: "#"}, ...]) would recurse forever, and a chain of anyOfs whose branches meet
// again (a0: [a1, a1], a1: [a2, a2], ...) would try 2^n paths for one byte. Flat, every fork is
// one level with each branch once. First bytes and min_depth are unchanged: both were already
// taken over the same reachable branches.
void Compiler::flattenAnyOf() {
  constexpr size_t kMaxWork = size_t{1} << 22;  // branch visits over all anyOfs
  auto& nodes = grammar_->nodes;
  std::vector<size_t> seen(nodes.size(), SIZE_MAX);  // the anyOf whose walk last saw a node
  std::vector<std::vector<int32_t>> flat(nodes.size());
  std::vector<int32_t> todo;
  size_t work = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].kind != NodeKind::kAnyOf) continue;
    seen[i] = i;
    todo.assign(nodes[i].alts.rbegin(), nodes[i].alts.rend());
    while (!todo.empty()) {
      if (++work > kMaxWork) {
        fail("the schema's anyOf branches are too many once their $refs are followed", param_);
        return;
      }
      const int32_t a = todo.back();
      todo.pop_back();
      if (seen[a] == i) continue;
      seen[a] = i;
      if (nodes[a].kind == NodeKind::kAnyOf) {
        todo.insert(todo.end(), nodes[a].alts.rbegin(), nodes[a].alts.rend());
      } else {
        flat[i].push_back(a);
      }
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].kind == NodeKind::kAnyOf) nodes[i].alts = std::move(flat[i]);
  }
}

std::string optionsKey(const GrammarOptions& o) {
  return std::to_string(o.max_string_bytes) + "," + std::to_string(o.max_whitespace) + "," +
         std::to_string(o.max_depth) + "," + std::to_string(o.max_items) + "," +
         std::to_string(o.max_number_digits);
}

}  // namespace

int32_t LiteralTrie::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, n] : nodes[node].children) {
    if (b == byte) return n;
    if (b > byte) break;
  }
  return -1;
}

void LiteralTrie::add(std::string_view bytes, int32_t value) {
  if (nodes.empty()) nodes.emplace_back();
  int32_t at = 0;
  nodes[0].below.push_back(value);
  for (char ch : bytes) {
    uint8_t b = static_cast<uint8_t>(ch);
    int32_t next = child(at, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
      auto& kids = nodes[at].children;
      kids.insert(std::upper_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1})),
                  {b, next});
    }
    at = next;
    nodes[at].below.push_back(value);
  }
  nodes[at].value = value;
}

bool LiteralTrie::reaches(int32_t node, int32_t lo, int32_t hi) const {
  const auto& below = nodes[node].below;
  auto it = std::lower_bound(below.begin(), below.end(), lo);
  return it != below.end() && *it <= hi;
}

api::StatusOr<std::shared_ptr<const Grammar>> compileSchema(const api::Json& schema,
                                                            const GrammarOptions& options,
                                                            std::string_view param,
                                                            ValueSyntax syntax,
                                                            const api::KeyOrder* order,
                                                            bool strict) {
  return Compiler(schema, options, param, syntax, order, strict).run();
}

std::string gemma4Value(const api::Json& value) {
  if (value.is_string()) return gemma4String(value.get<std::string>());
  if (value.is_object()) {
    std::string out = "{";
    for (const auto& [key, v] : value.items()) {  // api::Json keeps keys sorted
      if (out.size() > 1) out += ',';
      out += bareKey(key) ? key : gemma4String(key);
      out += ':';
      out += gemma4Value(v);
    }
    return out + "}";
  }
  if (value.is_array()) {
    std::string out = "[";
    for (const auto& v : value) {
      if (out.size() > 1) out += ',';
      out += gemma4Value(v);
    }
    return out + "]";
  }
  return value.dump();
}

api::StatusOr<std::shared_ptr<const Grammar>> compileResponseFormat(
    const api::Json& response_format, const GrammarOptions& options,
    const api::KeyOrder* schema_order) {
  const std::string param = "response_format";
  if (!response_format.is_object() || !response_format.contains("type") ||
      !response_format["type"].is_string()) {
    return api::invalidRequest("response_format must be an object with a 'type'", param);
  }
  const std::string type = response_format["type"].get<std::string>();
  if (type == "text") return std::shared_ptr<const Grammar>();
  if (type == "json_object") {
    return compileSchema(api::Json{{"type", "object"}}, options, param);
  }
  if (type != "json_schema") {
    return api::invalidRequest("unsupported response_format type '" + type + "'", param + ".type");
  }
  const auto it = response_format.find("json_schema");
  if (it == response_format.end() || !it->is_object()) {
    return api::invalidRequest("response_format.json_schema must be an object",
                               param + ".json_schema");
  }
  const auto schema = it->find("schema");
  if (schema == it->end()) {
    return compileSchema(api::Json{{"type", "object"}}, options, param);
  }
  const auto strict = it->find("strict");
  const bool is_strict = strict != it->end() && strict->is_boolean() && strict->get<bool>();
  return compileSchema(*schema, options, param + ".json_schema.schema", ValueSyntax::kJson,
                       schema_order, is_strict);
}

std::string responseFormatKey(const api::Json& response_format, const GrammarOptions& options,
                              const api::KeyOrder* schema_order) {
  std::string key = response_format.dump() + "|" + optionsKey(options);
  if (schema_order != nullptr) key += "|" + schema_order->fingerprint();
  return key;
}

std::string toolGrammarKey(const std::vector<ToolSpec>& tools, ToolSyntax syntax, int max_calls,
                           std::string_view answer_key, const GrammarOptions& options) {
  std::string key = "tools|" + std::to_string(static_cast<int>(syntax)) + "|" +
                    std::to_string(max_calls) + "|" + optionsKey(options) + "|";
  for (const ToolSpec& t : tools) {
    key += api::Json(t.name).dump() + ":" + t.parameters.dump() + ":" + t.order.fingerprint() +
           (t.strict ? ":strict;" : ";");
  }
  key += "|";
  key += answer_key;
  return key;
}

api::StatusOr<std::shared_ptr<const Grammar>> GrammarCache::get(const api::Json& response_format,
                                                                const GrammarOptions& options,
                                                                const api::KeyOrder* schema_order) {
  return getOrCompile(responseFormatKey(response_format, options, schema_order), [&] {
    return compileResponseFormat(response_format, options, schema_order);
  });
}

api::StatusOr<std::shared_ptr<const Grammar>> GrammarCache::getOrCompile(
    const std::string& key,
    const std::function<api::StatusOr<std::shared_ptr<const Grammar>>()>& compile) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->second;
    }
  }
  auto compiled = compile();
  if (!compiled.ok()) return compiled.status();
  std::shared_ptr<const Grammar> grammar = compiled.value();
  if (grammar == nullptr) return grammar;
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.count(key) == 0) {
    lru_.emplace_front(key, grammar);
    index_[key] = lru_.begin();
    while (lru_.size() > capacity_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return grammar;
}

size_t GrammarCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

uint64_t GrammarCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

}  // namespace engine::grammar
