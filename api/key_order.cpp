// api::KeyOrder (key_order.h): a SAX pass over the body records the objects of the matched
// values as a flat tree of nodes; lookups walk it by JSON pointer.
#include "api/key_order.h"

#include <algorithm>

#include "api/chat.h"

namespace api {
namespace {

using Node = KeyOrder::Node;

// RFC 6901 token decoding (~1 is '/', ~0 is '~').
std::string decodeToken(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
      out += token[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      out += token[i];
    }
  }
  return out;
}

std::string encodeToken(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<std::string> splitPointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  size_t pos = pointer.front() == '/' ? 1 : 0;
  while (pos <= pointer.size()) {
    size_t slash = pointer.find('/', pos);
    if (slash == std::string_view::npos) slash = pointer.size();
    tokens.push_back(decodeToken(pointer.substr(pos, slash - pos)));
    pos = slash + 1;
  }
  return tokens;
}

// The position of `key` among an object node's keys, or -1.
int32_t position(const Node& n, std::string_view key) {
  auto it = std::lower_bound(n.by_name.begin(), n.by_name.end(), key,
                             [&](int32_t i, std::string_view k) { return n.keys[i] < k; });
  return it != n.by_name.end() && n.keys[*it] == key ? *it : -1;
}

// Sorts an object's keys for lookups and drops each key's earlier writings (the parsed value
// holds the last one).
void finishObject(Node& n) {
  const auto size = static_cast<int32_t>(n.keys.size());
  n.by_name.resize(n.keys.size());
  for (int32_t i = 0; i < size; ++i) n.by_name[i] = i;
  std::stable_sort(n.by_name.begin(), n.by_name.end(),
                   [&](int32_t a, int32_t b) { return n.keys[a] < n.keys[b]; });
  std::vector<bool> dead(n.keys.size(), false);
  bool any_dead = false;
  for (size_t i = 0; i + 1 < n.by_name.size(); ++i) {
    if (n.keys[n.by_name[i]] == n.keys[n.by_name[i + 1]]) {
      dead[n.by_name[i]] = true;  // stable: the later writing comes after it
      any_dead = true;
    }
  }
  if (!any_dead) return;
  std::vector<int32_t> moved(n.keys.size(), -1);
  int32_t kept = 0;
  for (int32_t i = 0; i < size; ++i) {
    if (dead[i]) continue;
    moved[i] = kept;
    n.keys[kept] = std::move(n.keys[i]);
    n.children[kept] = n.children[i];
    ++kept;
  }
  n.keys.resize(kept);
  n.children.resize(kept);
  std::vector<int32_t> by_name;
  by_name.reserve(kept);
  for (int32_t i : n.by_name) {
    if (!dead[i]) by_name.push_back(moved[i]);
  }
  n.by_name = std::move(by_name);
}

// The SAX handler of captureKeyOrders. Frames above the longest pattern keep their current
// token (for matching); frames inside a captured value keep their node.
class Capture {
 public:
  using string_t = Json::string_t;
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using binary_t = Json::binary_t;

  explicit Capture(const std::vector<std::string>& patterns) {
    for (const std::string& p : patterns) {
      patterns_.push_back(splitPointer(p));
      max_pattern_ = std::max(max_pattern_, patterns_.back().size());
    }
  }

  std::map<std::string, KeyOrder> take() { return std::move(found_); }

  bool null() { return scalar(); }
  bool boolean(bool) { return scalar(); }
  bool number_integer(number_integer_t) { return scalar(); }
  bool number_unsigned(number_unsigned_t) { return scalar(); }
  bool number_float(number_float_t, const string_t&) { return scalar(); }
  bool string(string_t&) { return scalar(); }
  bool binary(binary_t&) { return scalar(); }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(string_t& key) {
    Frame& f = frames_.back();
    if (f.node >= 0) {
      Node& n = nodes_[f.node];
      n.keys.push_back(key);
      n.children.push_back(-1);
    } else if (frames_.size() <= max_pattern_) {
      f.token = key;
    }
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  struct Frame {
    bool object = false;
    int32_t node = -1;       // inside a captured value: this container's node
    std::string token;       // above the patterns' depth: the current key or element index
    int64_t next_index = 0;  // arrays
  };

  // Where the value about to start goes: its parent node's slot (when capturing), and the
  // current token of an array frame.
  int32_t* slot() {
    if (frames_.empty()) return nullptr;
    Frame& f = frames_.back();
    if (!f.object) {
      const int64_t i = f.next_index++;
      if (f.node < 0 && frames_.size() <= max_pattern_) f.token = std::to_string(i);
    }
    if (f.node < 0) return nullptr;
    Node& n = nodes_[f.node];
    if (!f.object) n.children.push_back(-1);
    return &n.children.back();
  }

  bool scalar() {
    slot();
    return true;
  }

  bool matches(const std::vector<std::string>& pattern) const {
    if (pattern.size() != frames_.size()) return false;
    for (size_t i = 0; i < pattern.size(); ++i) {
      if (pattern[i] != "*" && pattern[i] != frames_[i].token) return false;
    }
    return true;
  }

  bool open(bool object) {
    const bool inside = !frames_.empty() && frames_.back().node >= 0;
    int32_t* parent = slot();
    Frame f;
    f.object = object;
    if (inside) {
      *parent = static_cast<int32_t>(nodes_.size());
      f.node = *parent;
      nodes_.emplace_back().is_object = object;
    } else if (frames_.size() <= max_pattern_ &&
               std::any_of(patterns_.begin(), patterns_.end(),
                           [&](const auto& p) { return matches(p); })) {
      capture_pointer_.clear();
      for (const Frame& up : frames_) capture_pointer_ += "/" + encodeToken(up.token);
      capture_depth_ = frames_.size();
      nodes_.clear();
      nodes_.emplace_back().is_object = object;
      f.node = 0;
    }
    frames_.push_back(std::move(f));
    return true;
  }

  bool close() {
    const int32_t node = frames_.back().node;
    frames_.pop_back();
    if (node < 0) return true;
    if (nodes_[node].is_object) finishObject(nodes_[node]);
    if (node == 0 && frames_.size() == capture_depth_) {
      found_[capture_pointer_] =
          KeyOrder(std::make_shared<const std::vector<Node>>(std::move(nodes_)), 0);
      nodes_.clear();
    }
    return true;
  }

  std::vector<std::vector<std::string>> patterns_;
  size_t max_pattern_ = 0;
  std::vector<Frame> frames_;
  std::vector<Node> nodes_;  // the value being captured
  std::string capture_pointer_;
  size_t capture_depth_ = 0;
  std::map<std::string, KeyOrder> found_;
};

void dumpNode(const Json& v, const std::vector<Node>* nodes, int32_t id, std::string& out) {
  const Node* n = nodes != nullptr && id >= 0 ? &(*nodes)[id] : nullptr;
  if (v.is_object()) {
    if (n != nullptr && !n->is_object) n = nullptr;
    out += '{';
    bool first = true;
    auto member = [&](const std::string& key, const Json& sub, int32_t child) {
      if (!first) out += ',';
      first = false;
      out += Json(key).dump();
      out += ':';
      dumpNode(sub, nodes, child, out);
    };
    if (n != nullptr) {
      for (size_t i = 0; i < n->keys.size(); ++i) {
        auto it = v.find(n->keys[i]);
        if (it != v.end()) member(n->keys[i], *it, n->children[i]);
      }
    }
    for (const auto& [key, sub] : v.items()) {
      if (n == nullptr || position(*n, key) < 0) member(key, sub, -1);
    }
    out += '}';
  } else if (v.is_array()) {
    if (n != nullptr && n->is_object) n = nullptr;
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out += ',';
      const int32_t child = n != nullptr && i < n->children.size() ? n->children[i] : -1;
      dumpNode(v[i], nodes, child, out);
    }
    out += ']';
  } else {
    out += v.dump();
  }
}

}  // namespace

int32_t KeyOrder::find(std::string_view pointer) const {
  if (empty()) return -1;
  int32_t at = root_;
  for (const std::string& token : splitPointer(pointer)) {
    const Node& n = (*nodes_)[at];
    if (n.is_object) {
      const int32_t i = position(n, token);
      if (i < 0) return -1;
      at = n.children[i];
    } else {
      if (token.empty() || token.size() > 9 ||
          token.find_first_not_of("0123456789") != std::string::npos) {
        return -1;
      }
      const size_t i = std::stoul(token);
      if (i >= n.children.size()) return -1;
      at = n.children[i];
    }
    if (at < 0) return -1;
  }
  return at;
}

const std::vector<std::string>* KeyOrder::keysAt(std::string_view pointer) const {
  const int32_t at = find(pointer);
  return at >= 0 && (*nodes_)[at].is_object ? &(*nodes_)[at].keys : nullptr;
}

KeyOrder KeyOrder::at(std::string_view pointer) const {
  const int32_t node = find(pointer);
  return node >= 0 ? KeyOrder(nodes_, node) : KeyOrder();
}

void KeyOrder::fingerprint(int32_t node, std::string& out) const {
  const Node& n = (*nodes_)[node];
  out += n.is_object ? '{' : '[';
  for (size_t i = 0; i < n.children.size(); ++i) {
    if (i > 0) out += ',';
    if (n.is_object) out += Json(n.keys[i]).dump() + ":";
    if (n.children[i] >= 0) fingerprint(n.children[i], out);
  }
  out += n.is_object ? '}' : ']';
}

std::string KeyOrder::fingerprint() const {
  std::string out;
  if (!empty()) fingerprint(root_, out);
  return out;
}

std::map<std::string, KeyOrder> captureKeyOrders(std::string_view body,
                                                 const std::vector<std::string>& patterns) {
  Capture capture(patterns);
  try {
    // Not JSON: the request's parser reports it.
    if (!Json::sax_parse(body.begin(), body.end(), &capture)) return {};
  } catch (const std::exception&) {
    return {};
  }
  return capture.take();
}

void attachSchemaKeyOrders(std::string_view body, const std::string& schema_pointer,
                           const std::string& tools_pattern, ChatRequest& request) {
  const bool schema = !schema_pointer.empty() && request.response_format &&
                      request.response_format->type == ResponseFormat::Type::kJsonSchema;
  if (!schema && request.tools.empty()) return;
  std::vector<std::string> patterns = {tools_pattern};
  if (schema) patterns.push_back(schema_pointer);
  auto orders = captureKeyOrders(body, patterns);
  if (schema) request.response_format->schema_order = std::move(orders[schema_pointer]);
  const size_t star = tools_pattern.find('*');
  for (size_t i = 0; i < request.tools.size() && star != std::string::npos; ++i) {
    std::string pointer = tools_pattern;
    pointer.replace(star, 1, std::to_string(i));
    if (auto it = orders.find(pointer); it != orders.end()) {
      request.tools[i].parameters_order = std::move(it->second);
    }
  }
}

std::string dumpInOrder(const Json& value, const KeyOrder& order) {
  std::string out;
  const std::vector<Node>* nodes = order.empty() ? nullptr : order.nodes_.get();
  dumpNode(value, nodes, order.root_, out);
  return out;
}

}  // namespace api
