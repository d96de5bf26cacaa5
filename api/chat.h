// The OpenAI chat-completions schema as plain C++ types: the seam every room speaks.
//
// Parsed and validated once at the edge (api/openai_json.h); providers translate these to
// their own wire formats and back. Fields mirror OpenAI's names; optional fields are
// std::optional so that "absent" and "zero" stay distinct on the way through.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/key_order.h"

namespace api {

using Json = nlohmann::json;

enum class Role { kSystem, kDeveloper, kUser, kAssistant, kTool, kFunction };

struct ContentPart {
  enum class Type { kText, kImageUrl, kInputAudio, kFile, kRefusal };
  Type type = Type::kText;
  std::string text;          // kText, kRefusal
  std::string image_url;     // kImageUrl: an https URL or a data: URL
  std::string image_detail;  // kImageUrl: "auto" | "low" | "high" | "" (absent)
  Json raw;                  // kInputAudio, kFile: the part exactly as received
};

// A message's content: absent/null, a plain string, or an array of parts.
struct Content {
  enum class Kind { kNull, kText, kParts };
  Kind kind = Kind::kNull;
  std::string text;                // kText
  std::vector<ContentPart> parts;  // kParts

  static Content ofText(std::string s) {
    Content c;
    c.kind = Kind::kText;
    c.text = std::move(s);
    return c;
  }
  bool isNull() const { return kind == Kind::kNull; }
  // The text of the content: the string, or the text parts joined with "\n" (OpenAI's own
  // reading of multi-part text). Non-text parts contribute nothing.
  std::string joinedText() const;
  bool hasImages() const;
};

struct ToolCall {
  std::string id;
  std::string type = "function";
  std::string name;       // function.name
  std::string arguments;  // function.arguments: a JSON document, as a string
};

struct Message {
  Role role = Role::kUser;
  Content content;
  std::string name;                  // optional participant name ("" when absent)
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool
  std::optional<std::string> refusal;  // assistant
  // assistant: the model's thoughts (a thinking model's thought channel), apart from `content`;
  // written as "reasoning_content" when set, as vLLM and DeepSeek do.
  std::optional<std::string> reasoning_content;
};

struct Tool {
  std::string type = "function";
  std::string name;
  std::string description;
  Json parameters;  // JSON Schema object; null when absent
  std::optional<bool> strict;
  KeyOrder parameters_order;  // the body's key order within `parameters` (empty: sorted)
};

struct ToolChoice {
  enum class Mode { kNone, kAuto, kRequired, kFunction };
  Mode mode = Mode::kAuto;
  std::string function_name;  // kFunction
};

struct ResponseFormat {
  enum class Type { kText, kJsonObject, kJsonSchema };
  Type type = Type::kText;
  Json json_schema;  // kJsonSchema: the whole {"name","schema","strict",...} object
  KeyOrder schema_order;  // kJsonSchema: the body's key order within json_schema.schema
};

struct ChatRequest {
  std::string model;
  std::vector<Message> messages;

  std::optional<double> temperature;        // [0, 2]
  std::optional<double> top_p;              // [0, 1]
  int n = 1;                                // [1, 128]
  std::optional<int64_t> max_tokens;        // >= 1 (deprecated by OpenAI, still accepted)
  std::optional<int64_t> max_completion_tokens;  // >= 1
  std::vector<std::string> stop;            // at most 4
  std::optional<int64_t> seed;
  std::optional<double> presence_penalty;   // [-2, 2]
  std::optional<double> frequency_penalty;  // [-2, 2]
  std::vector<std::pair<int32_t, double>> logit_bias;  // token id -> bias in [-100, 100]
  bool logprobs = false;
  std::optional<int> top_logprobs;          // [0, 20]; requires logprobs
  std::optional<ResponseFormat> response_format;
  std::vector<Tool> tools;
  std::optional<ToolChoice> tool_choice;
  std::optional<bool> parallel_tool_calls;
  std::string user;
  std::map<std::string, std::string> metadata;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Extensions vLLM accepts: a repetition penalty (> 0; 1 = off) and variables for the chat
  // template ({"enable_thinking": true}; null when absent). `reasoning_effort` stays in `extra`.
  std::optional<double> repetition_penalty;
  Json chat_template_kwargs;

  // Top-level fields this schema does not model (reasoning_effort, service_tier, ...),
  // kept verbatim so that OpenAI-compatible upstreams receive them unchanged.
  Json extra = Json::object();

  // The body exactly as the client sent it, when the client's API is one that cloud targets
  // also speak (native_api: "anthropic.messages"). A target of that API is sent this body with
  // only the fields the gateway decides replaced (model, max_tokens, stream), so that what the
  // typed fields above cannot carry (prompt-cache markers, thinking signatures, key order)
  // reaches it unchanged; every other target gets the translation of the typed fields. Shared
  // by the copies of a request (fallbacks, shadow calls); null and "" otherwise.
  std::string native_api;
  std::shared_ptr<const std::string> native_body;
  // Headers of the client's API that a native target is sent too (anthropic-beta).
  std::vector<std::pair<std::string, std::string>> native_headers;

  // The effective output cap: max_completion_tokens, else max_tokens, else nullopt.
  std::optional<int64_t> maxOutputTokens() const {
    return max_completion_tokens ? max_completion_tokens : max_tokens;
  }
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t total_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt_tokens_details.cached_tokens
  int64_t reasoning_tokens = 0;      // completion_tokens_details.reasoning_tokens
  // Prompt tokens written to a provider's prompt cache (Anthropic's cache_creation_input_tokens),
  // part of prompt_tokens and priced apart; not on OpenAI's wire.
  int64_t cache_write_prompt_tokens = 0;
  // Of those, the tokens written to Anthropic's 1-hour cache (cache_control ttl "1h"), priced
  // apart (usage.cache_creation.ephemeral_1h_input_tokens).
  int64_t cache_write_1h_prompt_tokens = 0;
  // The processing tier the provider ran and billed the answer at (OpenAI's `service_tier`:
  // "default", "flex", "priority", ...; "" when not reported): priced by the price table.
  std::string service_tier;
  // Calls of the provider's own tools during the answer, by output item type
  // ("web_search_call", "file_search_call", ...): billed per call by the price table.
  std::vector<std::pair<std::string, int64_t>> server_tool_calls;
  // Local engine only, never on a wire: the answer's share of the engine's busy time in seconds
  // (engine::Timings::compute_s), which prices local answers per GPU hour.
  double engine_compute_s = 0;
};

// A token's `token` holds its raw bytes, which may be only part of a multi-byte UTF-8
// character. On the wire (api/openai_json.h) it is written as OpenAI does: "token" as valid
// UTF-8 (U+FFFD for a partial character) and "bytes" as the exact byte values; reading an
// upstream's body restores the raw bytes from "bytes".
struct TopLogprob {
  std::string token;
  double logprob = 0;  // natural log; -9999.0 stands for "never"
};

struct TokenLogprob {
  std::string token;
  double logprob = 0;
  std::vector<TopLogprob> top_logprobs;  // most likely first
};

struct Choice {
  int index = 0;
  Message message;  // role is always assistant
  std::string finish_reason;  // "stop" | "length" | "tool_calls" | "content_filter"
  std::optional<std::vector<TokenLogprob>> logprobs;  // choices[].logprobs.content
};

struct ChatResponse {
  std::string id;
  int64_t created = 0;  // unix seconds
  std::string model;
  std::vector<Choice> choices;
  std::optional<Usage> usage;
  std::string system_fingerprint;  // "" when absent
  std::string service_tier;        // "" when absent
  // For a request sent natively (ChatRequest::native_body): the upstream's answer as it came,
  // for an entrance of the same API to hand on unchanged: a non-streamed answer's body, or, in
  // a stream's summary, the framed events that followed the last chunk. "" otherwise.
  std::string native;
};

// One tool-call fragment of a streamed delta: id, type and name arrive with the first
// fragment of a call, arguments arrive in pieces.
struct ToolCallDelta {
  int index = 0;
  std::optional<std::string> id;
  std::optional<std::string> type;
  std::optional<std::string> name;
  std::optional<std::string> arguments;
};

struct Delta {
  std::optional<Role> role;
  std::optional<std::string> content;
  std::optional<std::string> reasoning_content;  // thoughts, apart from content
  std::optional<std::string> refusal;
  std::vector<ToolCallDelta> tool_calls;
};

struct ChunkChoice {
  int index = 0;
  Delta delta;
  std::optional<std::string> finish_reason;
  std::optional<std::vector<TokenLogprob>> logprobs;
};

struct ChatChunk {
  std::string id;
  int64_t created = 0;
  std::string model;
  std::vector<ChunkChoice> choices;  // empty in the final usage-only chunk
  std::optional<Usage> usage;
  std::string system_fingerprint;
  // For a request sent natively: the upstream's framed SSE events this chunk stands for (with
  // the events since the previous chunk that carried nothing of their own); "" otherwise. A
  // chunk may carry only these (no choices, no usage).
  std::string native;
};

std::string_view roleName(Role role);

}  // namespace api
