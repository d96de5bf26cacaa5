// api::KeyOrder: the order in which a request body wrote the keys of its objects, which
// api::Json forgets (its objects keep keys sorted). Structured outputs need it: OpenAI writes an
// object's properties in the order its schema's `properties` declares them, and clients rely on
// that (a `reasoning` property declared before `answer` is written first).
//
// The order is captured in one linear pass over the raw body (captureKeyOrders), only for the
// values named by a few patterns (a response_format's schema, each tool's parameters), and kept
// beside the parsed value. api::Json itself stays a sorted map: an ordered map costs O(n) per
// insert, so a hostile object of a million keys would take quadratic time.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace api {

using Json = nlohmann::json;

class KeyOrder {
 public:
  // One captured object or array. Objects: `keys` in body order (a key written twice counts
  // once, where it was last written: the parsed value holds the last one), `children[i]` the
  // node of keys[i]'s value (-1 for a scalar), `by_name` the positions of `keys` sorted by
  // key. Arrays: `children[i]` the node of element i.
  struct Node {
    bool is_object = false;
    std::vector<std::string> keys;
    std::vector<int32_t> children;
    std::vector<int32_t> by_name;
  };

  KeyOrder() = default;
  KeyOrder(std::shared_ptr<const std::vector<Node>> nodes, int32_t root)
      : nodes_(std::move(nodes)), root_(root) {}

  // True when nothing was captured (a schema built in code): sorted order applies.
  bool empty() const { return nodes_ == nullptr || root_ < 0; }
  // The keys, in body order, of the object at `pointer` (RFC 6901, within the captured value:
  // "" is the value itself, "/properties/a/properties" a nested properties object); nullptr when
  // no object was captured there.
  const std::vector<std::string>* keysAt(std::string_view pointer) const;
  // The order of the value at `pointer` (as above); empty when none was captured there.
  KeyOrder at(std::string_view pointer) const;
  // A canonical text of the captured key order (equal for equal orders), for cache keys; ""
  // when empty.
  std::string fingerprint() const;

 private:
  friend std::string dumpInOrder(const Json& value, const KeyOrder& order);
  int32_t find(std::string_view pointer) const;
  void fingerprint(int32_t node, std::string& out) const;

  std::shared_ptr<const std::vector<Node>> nodes_;  // shared: copies of a request are cheap
  int32_t root_ = -1;
};

// One pass over `body` (a JSON text; parsing errors are left to the request's parser): the key
// order of each value whose JSON pointer matches one of `patterns`, by its pointer. A pattern
// is a JSON pointer whose "*" tokens match any one token ("/tools/*/function/parameters").
// When the body writes a matched pointer twice (a duplicate key), the last value's order is
// kept, as the parsed value keeps the last value. Memory is linear in the body's size; values
// outside the patterns cost nothing but the walk.
std::map<std::string, KeyOrder> captureKeyOrders(std::string_view body,
                                                 const std::vector<std::string>& patterns);

struct ChatRequest;

// The one capture of a request's schemas, for every entrance: sets
// request.response_format->schema_order (a json_schema format whose schema the body holds at
// `schema_pointer`; "" for an entrance without one) and each request.tools[i].parameters_order (tool i's parameters at
// `tools_pattern` with its "*" standing for i). No pass at all when the request has neither.
void attachSchemaKeyOrders(std::string_view body, const std::string& schema_pointer,
                           const std::string& tools_pattern, ChatRequest& request);

// `value` as compact JSON (Json::dump's text), its objects' keys in `order` (keys the order does
// not know, and all keys when it is empty, sorted).
std::string dumpInOrder(const Json& value, const KeyOrder& order);

}  // namespace api
