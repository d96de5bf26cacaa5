#include "policies/spend.h"

#include <algorithm>
#include <limits>

#include "api/responses.h"

namespace policies {
namespace {

// Chat-format tokens around one message (role markers, separators): generous for every API.
constexpr int64_t kPerMessageTokens = 16;

int64_t jsonBytes(const api::Json& j) {
  if (j.is_null()) return 0;
  if (j.is_object() && j.empty()) return 0;
  return static_cast<int64_t>(j.dump().size());
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

bool hasString(const api::Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string();
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// A Responses input part or item kept whole in ChatRequest::extra that names content stored at
// the upstream, at any depth (a tool call's output may hold files); `depth` bounds the walk
// (the JSON depth check bounds the document already).
bool namesStoredContent(const api::Json& j, int depth = 0) {
  if (depth > 64) return false;
  if (j.is_array()) {
    for (const api::Json& v : j) {
      if (namesStoredContent(v, depth + 1)) return true;
    }
    return false;
  }
  if (!j.is_object()) return false;
  if (hasString(j, "type")) {
    const std::string& type = j["type"].get_ref<const std::string&>();
    if (type == "item_reference") return true;
    if (type == "input_file" && hasString(j, "file_url")) return true;
    if ((type == "input_file" || type == "input_image" || type == "computer_screenshot") &&
        hasString(j, "file_id")) {
      return true;
    }
  }
  for (const auto& [key, value] : j.items()) {
    if ((value.is_object() || value.is_array()) && namesStoredContent(value, depth + 1)) {
      return true;
    }
  }
  return false;
}

// The built-in tools `r` offers (Responses `tools` entries kept in `extra`), by item type.
template <class Fn>
void forEachServerTool(const api::ChatRequest& r, Fn fn) {
  for (const auto& [key, value] : r.extra.items()) {
    if (key.rfind("tools[", 0) != 0 || !value.is_object() || !hasString(value, "type")) continue;
    std::string_view item = serverToolItemType(value["type"].template get_ref<const std::string&>());
    if (!item.empty()) fn(item);
  }
}

}  // namespace

std::string_view serverToolItemType(std::string_view tool) {
  if (startsWith(tool, "web_search")) return "web_search_call";
  if (startsWith(tool, "file_search")) return "file_search_call";
  if (startsWith(tool, "code_interpreter")) return "code_interpreter_call";
  if (startsWith(tool, "image_generation")) return "image_generation_call";
  if (tool == "mcp") return "mcp_call";
  return {};
}

bool isServerToolItem(std::string_view item) {
  return item == "web_search_call" || item == "file_search_call" ||
         item == "code_interpreter_call" || item == "image_generation_call" ||
         item == "mcp_call";
}

int64_t serverToolCallBound(const api::ChatRequest& r) {
  bool offered = false;
  forEachServerTool(r, [&](std::string_view) { offered = true; });
  if (!offered) return 0;
  if (auto m = r.extra.find("max_tool_calls"); m != r.extra.end() && m->is_number_integer()) {
    return std::clamp<int64_t>(m->get<int64_t>(), 0, kAssumedServerToolCalls * 64);
  }
  return kAssumedServerToolCalls;
}

bool upstreamHeldInput(const api::ChatRequest& r) {
  for (const api::Message& m : r.messages) {
    for (const api::ContentPart& p : m.content.parts) {
      if (p.type != api::ContentPart::Type::kFile || !p.raw.is_object()) continue;
      auto file = p.raw.find("file");
      if (file != p.raw.end() && file->is_object() && hasString(*file, "file_id")) return true;
    }
  }
  if (r.native_api != api::kResponsesApi) return false;
  for (const auto& [key, value] : r.extra.items()) {
    if ((key == "prompt" || key == "conversation") && !value.is_null()) return true;
    if (key.rfind("tools[", 0) != 0 && namesStoredContent(value)) return true;
  }
  bool server_tools = false;
  forEachServerTool(r, [&](std::string_view) { server_tools = true; });
  return server_tools;
}

int64_t imageTokenBound(std::string_view api, std::string_view model, std::string_view detail) {
  const bool low = detail == "low";
  if (api == "anthropic") {
    // Anthropic: tokens = width * height / 750, images scaled down to at most ~1.15 megapixels
    // (about 1,600 tokens); the bound keeps a margin over that.
    return 1800;
  }
  if (api == "gemini") {
    // Gemini: 258 tokens per 768x768 tile (258 for an image of at most 384 px); images are
    // scaled to at most 3072x3072, so 16 tiles; Gemini 3's high media resolution is 1,120.
    return 16 * 258;
  }
  // OpenAI: tile models (gpt-4o, gpt-4.1, o-series) scale to fit 2048x2048 and then the short
  // side to 768: at most 2x4 tiles of 512 px, 85 + 170 per tile (1,445), low detail 85. Patch
  // models (gpt-4.1-mini/nano, o4-mini) cap at 1,536 32-px patches times a multiplier of at
  // most 2.46 (3,779). gpt-4o-mini bills images as 2,833 + 5,667 per tile (48,169; low 2,833).
  if (contains(model, "4o-mini")) return low ? 2833 : 2833 + 8 * 5667;
  if (contains(model, "mini") || contains(model, "nano")) return 3779;
  return low ? 85 : 3779;
}

namespace {

// promptTokenBound without the content the upstream fetches itself.
int64_t measuredPromptTokens(const api::ChatRequest& r, std::string_view api,
                             std::string_view model) {
  int64_t tokens = 0;
  auto add = [&](int64_t n) { tokens = saturatingAdd(tokens, n); };
  for (const api::Message& m : r.messages) {
    add(kPerMessageTokens);
    add(static_cast<int64_t>(m.content.text.size() + m.name.size() + m.tool_call_id.size()));
    for (const api::ContentPart& p : m.content.parts) {
      add(static_cast<int64_t>(p.text.size()));
      if (p.type == api::ContentPart::Type::kImageUrl) {
        add(imageTokenBound(api, model, p.image_detail));
      } else if (!p.raw.is_null()) {
        add(jsonBytes(p.raw));  // audio and files: their encoded bytes bound their tokens
      }
    }
    for (const api::ToolCall& t : m.tool_calls) {
      add(static_cast<int64_t>(t.arguments.size() + t.name.size() + t.id.size()) + 8);
    }
    if (m.refusal) add(static_cast<int64_t>(m.refusal->size()));
    if (m.reasoning_content) add(static_cast<int64_t>(m.reasoning_content->size()));
  }
  for (const api::Tool& t : r.tools) {
    add(jsonBytes(t.parameters) + static_cast<int64_t>(t.description.size() + t.name.size()) + 8);
  }
  if (r.response_format) add(jsonBytes(r.response_format->json_schema) + 8);
  for (const std::string& s : r.stop) add(static_cast<int64_t>(s.size()));
  add(jsonBytes(r.extra));
  // Passed to OpenAI-compatible servers, whose templates may render it into the prompt.
  if (!r.chat_template_kwargs.is_null()) add(jsonBytes(r.chat_template_kwargs));
  // A body sent as it came (a pass-through) may hold what the typed request leaves out
  // (reasoning items, encrypted content, server tools): its bytes bound its tokens too.
  if (r.native_body) tokens = std::max(tokens, static_cast<int64_t>(r.native_body->size()));
  return tokens;
}

}  // namespace

int64_t promptTokenBound(const api::ChatRequest& r, std::string_view api, std::string_view model,
                         const Price* price) {
  int64_t tokens = measuredPromptTokens(r, api, model);
  // Files, stored prompts and conversations the upstream reads by reference: as many tokens as
  // the model can take.
  if (upstreamHeldInput(r)) {
    const int64_t window =
        price && price->context_window ? *price->context_window : kUnseenInputTokens;
    const int64_t turns = saturatingAdd(serverToolCallBound(r), 1);
    tokens = std::max(tokens, saturatingMul(window, turns));
  }
  return tokens;
}

int64_t promptTokenEstimate(const api::ChatRequest& r) {
  // Images count at a typical high-detail size rather than the bound; content the upstream
  // fetches itself is not counted (it cannot be seen).
  return measuredPromptTokens(r, "", "") / 4 + 1;
}

int64_t outputCap(const api::ChatRequest& r, const Price* price) {
  int64_t limit = kMaxOutputCap;
  if (price && price->max_output_tokens) limit = std::min(limit, *price->max_output_tokens);
  if (auto asked = r.maxOutputTokens()) return std::clamp<int64_t>(*asked, 1, limit);
  return price && price->max_output_tokens ? limit : std::min(limit, kDefaultOutputCap);
}

double worstCaseUsd(int64_t prompt_tokens, int64_t output_cap, int choices, const Price& price) {
  double in = static_cast<double>(std::max<int64_t>(0, prompt_tokens));
  double out = static_cast<double>(std::max<int64_t>(0, output_cap)) * std::max(1, choices);
  double in_price = std::max({price.input, price.cached_input, price.cache_write});
  return (in * in_price + out * price.output) / 1e6;
}

double reservedUsd(const api::ChatRequest& r, double token_worst_usd, const Price& price,
                   TierAssumption tiers) {
  double multiplier = 1;
  auto named = r.extra.find("service_tier");
  if (named != r.extra.end() && named->is_string() && *named != "auto") {
    multiplier = price.tierMultiplier(named->get_ref<const std::string&>());
  } else if (tiers == TierAssumption::kDearestUnlessNamed) {
    // "auto" or nothing: the project's default tier at the provider, which may be a dear one.
    for (const auto& [tier, m] : price.service_tiers) multiplier = std::max(multiplier, m);
  }
  double usd = token_worst_usd * std::max(1.0, multiplier);
  double fee = 0;  // the dearest built-in tool offered: every call may be of it
  forEachServerTool(r, [&](std::string_view item) {
    if (auto it = price.tool_calls.find(item); it != price.tool_calls.end()) {
      fee = std::max(fee, it->second);
    }
  });
  return usd + fee * static_cast<double>(serverToolCallBound(r));
}

double estimatedUsd(int64_t prompt_tokens, int64_t output_tokens, const Price& price) {
  double in = static_cast<double>(std::max<int64_t>(0, prompt_tokens));
  double out = static_cast<double>(std::max<int64_t>(0, output_tokens));
  return (in * std::max(price.input, price.cache_write) + out * price.output) / 1e6;
}

BudgetState budgetState(Ledger& ledger, const std::string& team, const BudgetPolicy& budget,
                        int64_t now_ms, bool cached) {
  BudgetState state;
  auto check = [&](std::optional<double> limit, Window w) {
    if (!limit) return;
    std::optional<Spend> known = cached ? ledger.cachedSpent(team, w, now_ms) : std::nullopt;
    Spend s = known ? *known : ledger.spent(team, w, now_ms);
    double used = s.settled_usd + s.reserved_usd;
    double share = *limit > 0 ? used / *limit : (used > 0 ? 1e9 : 1);
    state.used = std::max(state.used.value_or(0), share);
    if (used >= *limit) state.exhausted = true;
  };
  check(budget.daily_usd, Window::kDay);
  check(budget.monthly_usd, Window::kMonth);
  return state;
}

}  // namespace policies
