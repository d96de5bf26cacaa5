// The spend math of a cloud call, in one place: how many prompt tokens a request can be billed
// at most, the output cap a call is held to, the worst-case cost a reservation holds, the
// never-lower estimate for a call that ended without the provider's usage, and a team's
// budget state. Every path that spends (routers/spend.h) and the planner use these.
//
// All token arithmetic saturates: requests and upstream usage are untrusted, and an overflowed
// count must never turn into a negative (refilling) amount.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/chat.h"
#include "api/saturating.h"
#include "policies/ledger.h"
#include "policies/policy_set.h"
#include "policies/pricing.h"

namespace policies {

using api::saturatingAdd;  // api/saturating.h
using api::saturatingMul;

// The most prompt tokens one image can be billed at by a target speaking `api` ("openai",
// "anthropic", "gemini"; anything else is taken as OpenAI-compatible), from each provider's
// published sizing rules at their largest image (see spend.cpp), for `detail` "low" or not.
int64_t imageTokenBound(std::string_view api, std::string_view model, std::string_view detail);

// An upper bound of the prompt tokens `request` can be billed at by `model` behind `api`: one
// token per byte of everything sent as text (messages, tool calls, tool definitions, the
// response_format schema, stop strings and passed-through fields), a few tokens of chat
// format per message, and each image by imageTokenBound.
//
// Content the upstream fetches itself (upstreamHeldInput) cannot be measured here: the bound of
// such a request is at least the model's context window (price->context_window), or
// kUnseenInputTokens when the price names none.
int64_t promptTokenBound(const api::ChatRequest& request, std::string_view api,
                         std::string_view model, const Price* price = nullptr);
// The prompt bound assumed for a request with upstream-held input when the model's price has no
// context_window: 2,097,152 tokens, the largest context window the cloud APIs offer.
inline constexpr int64_t kUnseenInputTokens = int64_t{1} << 21;
// True when the upstream would add content the gateway cannot see to the prompt: a file named by
// id or URL (a chat `file` part with a file_id; a Responses input_file with file_id or file_url,
// an input_image or computer screenshot with file_id, at any depth of an item), a Responses
// item_reference, a stored `prompt` or a `conversation`, or a built-in tool the provider runs
// (its results, retrieved files and search pages, come back into the prompt: the request is
// bounded at the context window once per model turn, max_tool_calls + 1 of them).
bool upstreamHeldInput(const api::ChatRequest& request);

// The output item type by which the provider reports a call of its own tool of type
// `tool_type` ("web_search_preview_2025_03_11" -> "web_search_call", "file_search" ->
// "file_search_call", code_interpreter, image_generation, mcp); "" for tools the client runs
// (function, custom, computer use, local shell, apply_patch) and unknown ones.
std::string_view serverToolItemType(std::string_view tool_type);
// Whether an output item of this type is a call the provider ran itself (and may bill).
bool isServerToolItem(std::string_view item_type);
// The provider's own tool calls a request may make: its max_tool_calls, else
// kAssumedServerToolCalls; 0 when it offers no built-in tool.
int64_t serverToolCallBound(const api::ChatRequest& request);
// A typical count (about 4 bytes a token), for rate limits and the trigger's prompt_tokens.
int64_t promptTokenEstimate(const api::ChatRequest& request);

// Output cap per choice assumed (and sent, for budgeted calls) when a request names none and
// the model's limit is unknown; and the cap no request may exceed.
constexpr int64_t kDefaultOutputCap = 16384;
constexpr int64_t kMaxOutputCap = int64_t{1} << 20;

// The output tokens per choice a call is held to: the request's own cap clamped to the
// model's limit (Price::max_output_tokens) and kMaxOutputCap; with no cap in the request, the
// model's limit, else kDefaultOutputCap.
int64_t outputCap(const api::ChatRequest& request, const Price* price);

// The most a call can cost in USD: every prompt token at the input price (cache writes may
// cost more than input) plus `choices` answers of `output_cap` tokens.
double worstCaseUsd(int64_t prompt_tokens, int64_t output_cap, int choices, const Price& price);

// Calls of the provider's own tools assumed for a request that offers one and sets no
// `max_tool_calls`.
inline constexpr int64_t kAssumedServerToolCalls = 16;
// Which processing tier a request's tokens are assumed to run at when it names none (or
// "auto", which means the project's default at OpenAI): the dearest the price lists, for a
// reservation; 1x, for an estimate of a call that ended without usage.
enum class TierAssumption { kDearestUnlessNamed, kNamedOnly };
// What a call of `request` costs at most beyond its tokens' worst case: the tokens at the
// processing tier (see TierAssumption; never below 1x) and the dearest per-call fee of the
// built-in tools it offers (serverToolItemType) times serverToolCallBound.
double reservedUsd(const api::ChatRequest& request, double token_worst_usd, const Price& price,
                   TierAssumption tiers = TierAssumption::kDearestUnlessNamed);

// A never-lower estimate in USD of a call that reached its provider and ended without usage:
// `prompt_tokens` (the provider's count when known, else the bound) and `output_tokens`
// produced so far, each at its undiscounted price.
double estimatedUsd(int64_t prompt_tokens, int64_t output_tokens, const Price& price);

struct BudgetState {
  std::optional<double> used;  // the tightest window's share spent or reserved; none: no limit
  bool exhausted = false;      // some window has nothing left
};
// The team's budget state in the periods containing `now_ms`. `cached`: each window's spend
// from Ledger::cachedSpent() where the ledger has a fresh value (no database round trip on
// the caller's thread), else spent().
BudgetState budgetState(Ledger& ledger, const std::string& team, const BudgetPolicy& budget,
                        int64_t now_ms, bool cached = false);

}  // namespace policies
