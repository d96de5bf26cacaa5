// PriceTable: what cloud tokens cost (configs/pricing.yaml), per provider and model, in USD
// per million tokens. Every cloud answer is costed from the usage its provider reported; a
// cloud model without a price is a config error at start, never a silent $0.
//
// The file is a map of provider names (as configured under `providers:`) to maps of upstream
// model names to prices:
//
//     openai:
//       gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60}
//     anthropic:
//       claude-sonnet-4-5: {input: 3.00, cached_input: 0.30, cache_write: 3.75, output: 15.00}
//
// `input` and `output` are required; `cached_input` (prompt tokens read from the provider's
// cache) and `cache_write` (prompt tokens written to it) default to `input`. `max_output` is
// the model's own output-token limit: requests are clamped to it, and budgets reserve no more.
// An embedding model is marked `embedding: true` and priced by `input` only (the other keys
// are refused): it serves POST /v1/embeddings, never chat.
//
//     openai:
//       text-embedding-3-small: {input: 0.02, embedding: true}
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/status.h"
#include "policies/yaml_reader.h"

namespace policies {

struct Price {
  double input = 0;         // USD per 1M uncached prompt tokens
  double cached_input = 0;  // USD per 1M prompt tokens read from a cache
  double cache_write = 0;   // USD per 1M prompt tokens written to a cache
  double output = 0;        // USD per 1M completion tokens (reasoning tokens included)
  std::optional<int64_t> max_output_tokens;  // the model's output limit, when configured
  // The model's context window in tokens, when configured: bounds the prompt of a request whose
  // content the upstream fetches itself (promptTokenBound).
  std::optional<int64_t> context_window;
  // Multipliers of every token price by the processing tier the provider reports
  // (Usage::service_tier; OpenAI's "flex" 0.5, "priority" about 2). A tier not listed costs 1x.
  std::map<std::string, double, std::less<>> service_tiers;
  // USD per call of the provider's own tools, by output item type ("web_search_call").
  std::map<std::string, double, std::less<>> tool_calls;
  bool embedding = false;  // an embedding model: priced by its input tokens only
  // USD per 1M prompt tokens written to a 1-hour cache (Anthropic's cache_control ttl "1h");
  // pricing.yaml defaults it to the larger of cache_write and twice `input`, as Anthropic bills.
  double cache_write_1h = 0;

  // The cost of one answer in USD: its tokens at the tier it ran at, and its tool calls.
  double cost(const api::Usage& usage) const;
  // The multiplier of a processing tier (1 when not listed).
  double tierMultiplier(std::string_view tier) const;
};

class PriceTable {
 public:
  // Reads a pricing document (a file's text, or an inline `pricing:` map) from `reader`.
  static api::StatusOr<PriceTable> read(const YamlReader& reader);
  static api::StatusOr<PriceTable> parse(std::string_view yaml_text, std::string_view source_name);

  // The price of `model` at `provider`; nullptr when the table has none.
  const Price* find(const std::string& provider, const std::string& model) const;
  bool empty() const { return prices_.empty(); }
  // Where the table came from ("pricing.yaml"), for messages.
  const std::string& source() const { return source_; }

 private:
  std::map<std::string, std::map<std::string, Price>> prices_;
  std::string source_;
};

}  // namespace policies
