// Tool-call grammars (grammar.h, compileToolCalls): each tool's parameters schema compiled on its
// own (its $refs resolve within it), then joined into one grammar: fixed text before and after
// the arguments object, one such sequence per tool, and an anyOf over them (and the answer).
#include <algorithm>

#include "engine/grammar/grammar.h"

namespace engine::grammar {
namespace {

constexpr size_t kMaxTools = 32;  // a parse forks once per tool whose call fits the bytes so far

// Appends `part`'s nodes to `g` with every node reference moved; returns part's root in `g`.
int32_t append(Grammar& g, const Grammar& part) {
  const auto off = static_cast<int32_t>(g.nodes.size());
  for (Node n : part.nodes) {
    for (Property& p : n.props) p.value += off;
    if (n.additional >= 0) n.additional += off;
    if (n.key_string >= 0) n.key_string += off;
    if (n.items >= 0) n.items += off;
    for (int32_t& a : n.alts) a += off;
    g.nodes.push_back(std::move(n));
  }
  return part.root + off;
}

int32_t addNode(Grammar& g, Node n) {
  g.nodes.push_back(std::move(n));
  return static_cast<int32_t>(g.nodes.size() - 1);
}

int32_t addLiteral(Grammar& g, std::string_view text) {
  Node n;
  n.kind = NodeKind::kLiteral;
  n.literals.add(text, 0);
  n.first.set(static_cast<uint8_t>(text.front()));
  return addNode(g, std::move(n));
}

int32_t addSequence(Grammar& g, std::vector<int32_t> parts) {
  Node n;
  n.kind = NodeKind::kSequence;
  n.first = g.nodes[parts.front()].first;
  int32_t inner = 0;
  for (int32_t p : parts) inner = std::max(inner, g.nodes[p].min_depth);
  n.min_depth = 1 + inner;
  n.alts = std::move(parts);
  return addNode(g, std::move(n));
}

int32_t addAnyOf(Grammar& g, std::vector<int32_t> alts) {
  Node n;
  n.kind = NodeKind::kAnyOf;
  n.min_depth = g.nodes[alts.front()].min_depth;
  for (int32_t a : alts) {
    n.first |= g.nodes[a].first;
    n.min_depth = std::min(n.min_depth, g.nodes[a].min_depth);
  }
  n.alts = std::move(alts);
  return addNode(g, std::move(n));
}

std::shared_ptr<Grammar> newGrammar(const GrammarOptions& options) {
  auto g = std::make_shared<Grammar>();
  g->options = options;
  g->options.max_depth = std::clamp(options.max_depth, 1, kMaxStackDepth);
  return g;
}

// A function's parameters as the object schema they imply: null and {} take any object, and a
// schema naming no type (nor anyOf, $ref, enum, const) is an object, as OpenAI reads them.
api::Json impliedObject(const api::Json& parameters) {
  if (parameters.is_null()) return api::Json{{"type", "object"}};
  if (!parameters.is_object()) return parameters;
  for (const char* key : {"type", "anyOf", "$ref", "enum", "const"}) {
    if (parameters.contains(key)) return parameters;
  }
  api::Json object = parameters;
  object["type"] = "object";
  return object;
}

// Appends one sequence per tool to `g`: the text before the arguments, the arguments object, the
// text after. Gemma 4: `open` + "call:NAME" {args in its syntax} "<tool_call|>" (`open` is
// <|tool_call>, or what a text node leaves of it); Gemma 3: {"name":NAME,"parameters": {JSON}}
// (`open` unused).
api::Status addCalls(Grammar& g, const std::vector<ToolSpec>& tools, ToolSyntax syntax,
                     std::string_view open, std::vector<int32_t>& alts) {
  if (tools.empty()) return api::invalidRequest("tools must not be empty", "tools");
  if (tools.size() > kMaxTools) {
    return api::invalidRequest("The local model can be made to call one of at most " +
                                   std::to_string(kMaxTools) + " tools; this request has " +
                                   std::to_string(tools.size()) + ".",
                               "tools");
  }
  for (size_t i = 0; i < tools.size(); ++i) {
    const ToolSpec& tool = tools[i];
    const std::string param = "tools[" + std::to_string(i) + "].function.parameters";
    // Gemma 4 writes its arguments in its own syntax (bare keys, <|"|> strings), as trained.
    const ValueSyntax values =
        syntax == ToolSyntax::kGemma4 ? ValueSyntax::kGemma4 : ValueSyntax::kJson;
    auto compiled = compileSchema(impliedObject(tool.parameters), g.options, param, values,
                                  &tool.order, tool.strict);
    if (!compiled.ok()) return compiled.status();
    if ((*compiled)->nodes[(*compiled)->root].first != std::bitset<256>().set('{')) {
      return api::invalidRequest("a function's parameters must be a JSON schema of an object",
                                 param);
    }
    const int32_t args = append(g, **compiled);
    std::string before, after;
    if (syntax == ToolSyntax::kGemma4) {
      before = std::string(open) + "call:" + tool.name;
      after = "<tool_call|>";
    } else {
      before = "{\"name\":" + api::Json(tool.name).dump() + ",\"parameters\":";
      after = "}";
    }
    alts.push_back(addSequence(g, {addLiteral(g, before), args, addLiteral(g, after)}));
  }
  return api::Status();
}

api::StatusOr<std::shared_ptr<const Grammar>> finish(std::shared_ptr<Grammar> g, int32_t root) {
  g->root = root;
  if (g->nodes[g->root].min_depth > g->options.max_depth) {
    return api::invalidRequest("a function's parameters nest deeper than " +
                                   std::to_string(g->options.max_depth) + " levels",
                               "tools");
  }
  return std::shared_ptr<const Grammar>(std::move(g));
}

}  // namespace

api::StatusOr<std::shared_ptr<const Grammar>> compileToolCalls(
    const std::vector<ToolSpec>& tools, ToolSyntax syntax, std::shared_ptr<const Grammar> answer,
    const GrammarOptions& options) {
  auto g = newGrammar(options);
  std::vector<int32_t> alts;
  if (api::Status st = addCalls(*g, tools, syntax, "<|tool_call>", alts); !st.ok()) return st;
  if (answer) alts.push_back(append(*g, *answer));
  return finish(g, alts.size() == 1 ? alts.front() : addAnyOf(*g, std::move(alts)));
}

api::StatusOr<std::shared_ptr<const Grammar>> compileTextWithToolCalls(
    const std::vector<ToolSpec>& tools, int max_calls, const GrammarOptions& options) {
  auto g = newGrammar(options);
  // The text node reads <|tool_call up to its last byte; the call takes it from there.
  std::vector<int32_t> alts;
  if (api::Status st = addCalls(*g, tools, ToolSyntax::kGemma4, ">", alts); !st.ok()) return st;
  const int32_t call = alts.size() == 1 ? alts.front() : addAnyOf(*g, std::move(alts));
  Node text;
  text.kind = NodeKind::kText;
  text.literals.add("<|tool_call", 0);
  text.alts = {call};
  text.max_items = std::max(max_calls, 0);
  text.min_depth = 1;
  text.first.set();
  if (1 + g->nodes[call].min_depth > g->options.max_depth) {
    return api::invalidRequest("a function's parameters nest deeper than " +
                                   std::to_string(g->options.max_depth - 1) + " levels",
                               "tools");
  }
  return finish(g, addNode(*g, std::move(text)));
}

}  // namespace engine::grammar
