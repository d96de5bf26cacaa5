#include "routers/anthropic_wire.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "api/anthropic_messages.h"
#include "api/json_text.h"
#include "api/openai_json.h"
#include "api/saturating.h"
#include "api/sse.h"

namespace routers {
namespace {

using api::ChatRequest;
using api::ChatResponse;
using api::ContentPart;
using api::ErrorCode;
using api::Json;
using api::Role;
using api::Status;
using api::StatusOr;

// Deepest nesting accepted in an upstream body: tool inputs are dumped back to text, and
// dumping recurses.
constexpr int kMaxUpstreamJsonDepth = 512;

int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status upstreamError(std::string message) {
  return Status(ErrorCode::kUpstreamError, std::move(message));
}

Status unsupported(std::string param, std::string_view why) {
  return api::invalidRequest(
      "'" + param + "' is not supported by Anthropic's Messages API: " + std::string(why), param);
}

std::string messagePath(size_t i) { return "messages[" + std::to_string(i) + "]"; }

// ---- request: OpenAI -> Anthropic --------------------------------------------------------

// Whether a JSON text nests no deeper than `max_depth` (strings skipped; the one check in
// api/openai_json.h). Tool-call arguments are a string inside the client's request, so the
// request parser's depth cap did not see them; they are checked before being parsed.
bool nestingWithin(std::string_view text, int max_depth) {
  return api::checkJsonBounds(text, {max_depth, std::numeric_limits<int64_t>::max()}).ok();
}

bool isBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// An image_url part: a data: URL becomes a base64 source, an http(s) URL a url source.
StatusOr<Json> imageBlock(const std::string& url, const std::string& param) {
  if (url.rfind("data:", 0) == 0) {
    size_t comma = url.find(',');
    if (comma == std::string::npos) {
      return api::invalidRequest("Invalid image data URL: no ',' before the data.", param);
    }
    std::string_view meta(url.data() + 5, comma - 5);  // "image/png;base64"
    std::string_view media_type = meta.substr(0, meta.find(';'));
    bool base64 = false;
    for (size_t at = meta.find(';'); at != std::string_view::npos;) {
      size_t next = meta.find(';', at + 1);
      std::string_view attr = meta.substr(
          at + 1, next == std::string_view::npos ? std::string_view::npos : next - at - 1);
      if (attr == "base64") base64 = true;
      at = next;
    }
    if (!base64) {
      return api::invalidRequest(
          "Invalid image data URL: Anthropic's Messages API takes base64-encoded images only.",
          param);
    }
    if (media_type != "image/jpeg" && media_type != "image/png" && media_type != "image/gif" &&
        media_type != "image/webp") {
      return api::invalidRequest("Unsupported image type '" + std::string(media_type) +
                                     "': Anthropic's Messages API takes image/jpeg, image/png, "
                                     "image/gif and image/webp.",
                                 param);
    }
    if (comma + 1 == url.size()) {
      return api::invalidRequest("Invalid image data URL: the data is empty.", param);
    }
    return Json{{"type", "image"},
                {"source",
                 {{"type", "base64"},
                  {"media_type", std::string(media_type)},
                  {"data", url.substr(comma + 1)}}}};
  }
  if (url.rfind("https://", 0) == 0 || url.rfind("http://", 0) == 0) {
    return Json{{"type", "image"}, {"source", {{"type", "url"}, {"url", url}}}};
  }
  return api::invalidRequest("Invalid image URL: expected an https URL or a base64 data URL.",
                             param);
}

Json textBlock(std::string text) { return Json{{"type", "text"}, {"text", std::move(text)}}; }

// Content parts as Anthropic content blocks. `param` is "messages[i].content".
StatusOr<Json> partsToBlocks(const std::vector<ContentPart>& parts, const std::string& param) {
  Json blocks = Json::array();
  for (size_t j = 0; j < parts.size(); ++j) {
    const ContentPart& part = parts[j];
    std::string part_param = param + "[" + std::to_string(j) + "]";
    switch (part.type) {
      case ContentPart::Type::kText:
      case ContentPart::Type::kRefusal:
        // Anthropic rejects empty text blocks; an empty part says nothing.
        if (!part.text.empty()) blocks.push_back(textBlock(part.text));
        break;
      case ContentPart::Type::kImageUrl: {
        // image_url.detail has no counterpart: Anthropic sizes images itself.
        auto block = imageBlock(part.image_url, part_param);
        if (!block.ok()) return block.status();
        blocks.push_back(std::move(block).value());
        break;
      }
      case ContentPart::Type::kInputAudio:
        return unsupported(part_param, "audio input has no counterpart");
      case ContentPart::Type::kFile:
        return unsupported(part_param, "file parts have no counterpart");
    }
  }
  return blocks;
}

// A message's content as Anthropic content: a string stays a string, parts become blocks.
StatusOr<Json> contentToAnthropic(const api::Content& content, const std::string& param) {
  switch (content.kind) {
    case api::Content::Kind::kNull:
      return Json::array();
    case api::Content::Kind::kText:
      return Json(content.text);
    case api::Content::Kind::kParts:
      return partsToBlocks(content.parts, param);
  }
  return Json::array();
}

Json asBlocks(Json content) {
  if (content.is_array()) return content;
  Json blocks = Json::array();
  const std::string& text = content.get_ref<const std::string&>();
  if (!text.empty()) blocks.push_back(textBlock(text));
  return blocks;
}

// One Anthropic turn under construction.
struct Turn {
  std::string role;  // "user" | "assistant"
  Json content;      // a string or an array of blocks
};

// Appends `content` as a `role` turn, merged into the previous turn when that has the same
// role: the Messages API wants user and assistant turns to alternate.
void appendTurn(std::vector<Turn>& turns, const char* role, Json content) {
  if (!turns.empty() && turns.back().role == role) {
    Json merged = asBlocks(std::move(turns.back().content));
    for (Json& block : asBlocks(std::move(content))) merged.push_back(std::move(block));
    turns.back().content = std::move(merged);
    return;
  }
  turns.push_back(Turn{role, std::move(content)});
}

StatusOr<Json> toolUseBlock(const api::ToolCall& call, const std::string& param) {
  std::string args_param = param + ".function.arguments";
  // An empty arguments string is what some servers send for a call without parameters.
  if (isBlank(call.arguments)) {
    return Json{
        {"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", Json::object()}};
  }
  if (!nestingWithin(call.arguments, api::kMaxRequestJsonDepth)) {
    return api::invalidRequest("Invalid value for '" + args_param + "': nested too deeply.",
                               args_param);
  }
  Json input = Json::parse(call.arguments, nullptr, /*allow_exceptions=*/false);
  if (input.is_discarded() || !input.is_object()) {
    return api::invalidRequest("Invalid value for '" + args_param +
                                   "': Anthropic's Messages API needs the arguments of a tool "
                                   "call to be a JSON object.",
                               args_param);
  }
  return Json{
      {"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", std::move(input)}};
}

// Fields with no counterpart in the Messages API, refused unless neutral.
Status checkUntranslatable(const ChatRequest& req) {
  if (req.n > 1) return unsupported("n", "it returns one choice per request; 'n' must be 1");
  if (req.logprobs) return unsupported("logprobs", "it does not return log probabilities");
  if (req.top_logprobs && *req.top_logprobs > 0) {
    return unsupported("top_logprobs", "it does not return log probabilities");
  }
  if (!req.logit_bias.empty()) return unsupported("logit_bias", "it has no token biases");
  if (req.presence_penalty && *req.presence_penalty != 0) {
    return unsupported("presence_penalty", "it has no repetition penalties");
  }
  if (req.frequency_penalty && *req.frequency_penalty != 0) {
    return unsupported("frequency_penalty", "it has no repetition penalties");
  }
  if (req.seed) return unsupported("seed", "it has no seeded sampling");
  if (req.response_format && req.response_format->type != api::ResponseFormat::Type::kText) {
    return unsupported("response_format",
                       "JSON output modes are not translated; describe the format in the "
                       "prompt or use a tool");
  }
  if (req.temperature && *req.temperature > 1) {
    return api::invalidRequest(
        "Invalid value for 'temperature': Anthropic's Messages API takes 0 to 1, not " +
            Json(*req.temperature).dump() + ".",
        "temperature");
  }
  for (const auto& [key, value] : req.extra.items()) {
    if (value.is_null()) continue;
    return unsupported(key, "the field is not translated");
  }
  return {};
}

Json toolChoiceJson(const ChatRequest& req) {
  Json choice;
  api::ToolChoice::Mode mode =
      req.tool_choice ? req.tool_choice->mode : api::ToolChoice::Mode::kAuto;
  switch (mode) {
    case api::ToolChoice::Mode::kNone:
      return Json{{"type", "none"}};
    case api::ToolChoice::Mode::kAuto:
      choice = Json{{"type", "auto"}};
      break;
    case api::ToolChoice::Mode::kRequired:
      choice = Json{{"type", "any"}};
      break;
    case api::ToolChoice::Mode::kFunction:
      choice = Json{{"type", "tool"}, {"name", req.tool_choice->function_name}};
      break;
  }
  if (req.parallel_tool_calls == false) choice["disable_parallel_tool_use"] = true;
  return choice;
}

// ---- answers: Anthropic -> OpenAI ------------------------------------------------------------

// Usage counts as read from a `usage` object; absent fields stay unset.
struct UsageCounts {
  std::optional<int64_t> input;
  std::optional<int64_t> output;
  std::optional<int64_t> cache_read;
  std::optional<int64_t> cache_write;
  std::optional<int64_t> cache_write_1h;  // of cache_write: to the 1-hour cache

  // Cumulative counts replace what was known (message_delta carries running totals).
  void update(const UsageCounts& later) {
    if (later.input) input = later.input;
    if (later.output) output = later.output;
    if (later.cache_read) cache_read = later.cache_read;
    if (later.cache_write) cache_write = later.cache_write;
    if (later.cache_write_1h) cache_write_1h = later.cache_write_1h;
  }

  api::Usage toUsage() const {
    api::Usage u;
    u.cached_prompt_tokens = cache_read.value_or(0);
    u.cache_write_prompt_tokens = cache_write.value_or(0);
    u.cache_write_1h_prompt_tokens =
        std::min(cache_write_1h.value_or(0), u.cache_write_prompt_tokens);
    u.prompt_tokens = api::saturatingAdd(
        api::saturatingAdd(input.value_or(0), u.cached_prompt_tokens), u.cache_write_prompt_tokens);
    u.completion_tokens = output.value_or(0);
    u.total_tokens = api::saturatingAdd(u.prompt_tokens, u.completion_tokens);
    return u;
  }
};

Status readCount(const Json& usage, const char* key, const std::string& where,
                 std::optional<int64_t>& out) {
  auto it = usage.find(key);
  if (it == usage.end() || it->is_null()) return {};
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return upstreamError("'" + where + "." + key + "' is not a non-negative integer");
  }
  out = it->get<int64_t>();
  return {};
}

// Reads a usage object at `where` ("usage", "message.usage").
Status readUsage(const Json& usage, const std::string& where, UsageCounts& out) {
  if (!usage.is_object()) return upstreamError("'" + where + "' is not an object");
  if (Status s = readCount(usage, "input_tokens", where, out.input); !s.ok()) return s;
  if (Status s = readCount(usage, "output_tokens", where, out.output); !s.ok()) return s;
  if (Status s = readCount(usage, "cache_read_input_tokens", where, out.cache_read); !s.ok()) {
    return s;
  }
  if (Status s = readCount(usage, "cache_creation_input_tokens", where, out.cache_write); !s.ok()) {
    return s;
  }
  // {"ephemeral_5m_input_tokens": n, "ephemeral_1h_input_tokens": m}, when a ttl was asked.
  auto by_ttl = usage.find("cache_creation");
  if (by_ttl == usage.end() || by_ttl->is_null()) return {};
  if (!by_ttl->is_object()) return upstreamError("'" + where + ".cache_creation' is not an object");
  return readCount(*by_ttl, "ephemeral_1h_input_tokens", where + ".cache_creation",
                   out.cache_write_1h);
}

// The status for an Anthropic error object ({"type": "overloaded_error", "message": ...}).
Status errorStatus(const Json& error, std::string_view context) {
  std::string type = "error";
  std::string message;
  if (error.is_object()) {
    auto t = error.find("type");
    if (t != error.end() && t->is_string()) type = t->get<std::string>();
    auto m = error.find("message");
    if (m != error.end() && m->is_string()) message = m->get<std::string>();
  }
  std::string text = std::string(context) + ": " + type;
  if (!message.empty()) text += ": " + message;
  ErrorCode code = type == "overloaded_error" ? ErrorCode::kUnavailable : ErrorCode::kUpstreamError;
  return Status(code, std::move(text));
}

// The string at `key`, when present: kUpstreamError when it is not a string.
Status optionalString(const Json& obj, const char* key, const std::string& where,
                      std::optional<std::string>& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) return upstreamError("'" + where + key + "' is not a string");
  out = it->get<std::string>();
  return {};
}

Status requiredString(const Json& obj, const char* key, const std::string& where,
                      std::string& out) {
  std::optional<std::string> value;
  if (Status s = optionalString(obj, key, where, value); !s.ok()) return s;
  if (!value) return upstreamError("missing '" + where + key + "'");
  out = std::move(*value);
  return {};
}

// ---- streaming -------------------------------------------------------------------------------

class AnthropicStreamDecoder : public StreamDecoder {
 public:
  AnthropicStreamDecoder(std::string request_model, bool native)
      : model_(std::move(request_model)), native_(native) {}

  api::Status onEvent(const api::SseEvent& event, std::vector<api::ChatChunk>& out) override {
    const size_t before = out.size();
    api::Status st = decode(event, out);
    if (native_ && st.ok()) st = carryNative(event, out, before);
    return st;
  }

  api::StatusOr<api::ChatResponse> finish() override {
    if (!started_) return upstreamError("the stream ended before message_start");
    if (!stopped_ && !finish_reason_seen_) {
      return upstreamError("the stream ended before message_stop");
    }
    ChatResponse summary;
    summary.id = id_;
    summary.created = created_;
    summary.model = model_;
    if (usage_seen_) summary.usage = usage_.toUsage();
    summary.native = std::move(pending_native_);
    return summary;
  }

 private:
  enum class BlockKind { kText, kToolUse, kThinking, kIgnored };  // kIgnored: server tools, ...
  struct Block {
    BlockKind kind = BlockKind::kIgnored;
    int tool_index = 0;  // kToolUse: the OpenAI tool_calls index
  };

  // A request sent natively: each event goes on, as it came, with the chunk it produced. Events
  // that produce none wait for the next chunk until the first chunk has gone (so that nothing
  // reaches the client, and a fallback may still take over, before the upstream has answered
  // something); after it, they go at once in a chunk of their own.
  api::Status carryNative(const api::SseEvent& event, std::vector<api::ChatChunk>& out,
                          size_t before) {
    if (!event.event.empty()) pending_native_ += "event: " + event.event + "\n";
    pending_native_ += api::sseData(event.data);
    if (out.size() == before) {
      if (!answered_ && pending_native_.size() > kMaxNativeHeldBytes) {
        return upstreamError("sent more than " + std::to_string(kMaxNativeHeldBytes) +
                             " bytes of events before any content");
      }
      if (!answered_) return api::Status();
      api::ChatChunk c;
      c.id = id_;
      c.created = created_;
      c.model = model_;
      out.push_back(std::move(c));
    }
    answered_ = true;
    out[before].native = std::move(pending_native_);
    pending_native_.clear();
    return api::Status();
  }

  api::Status decode(const api::SseEvent& event, std::vector<api::ChatChunk>& out) {
    if (event.data.empty()) return {};
    Json data = Json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded() || !data.is_object()) {
      return upstreamError("malformed stream event '" + event.event + "': not a JSON object");
    }
    // The data's own type is authoritative; the SSE event name is the fallback.
    std::string type = event.event;
    auto t = data.find("type");
    if (t != data.end()) {
      if (!t->is_string()) return upstreamError("stream event 'type' is not a string");
      type = t->get<std::string>();
    }
    if (type == "error") return errorStatus(data.value("error", Json()), "error event");
    if (type == "ping") return {};
    if (type == "message_start") return onMessageStart(data);
    bool known = type == "content_block_start" || type == "content_block_delta" ||
                 type == "content_block_stop" || type == "message_delta" || type == "message_stop";
    if (!known) return {};  // Anthropic may add event types; they carry nothing we translate.
    if (!started_) return upstreamError("'" + type + "' before message_start");
    if (type == "content_block_start") return onBlockStart(data, out);
    if (type == "content_block_delta") return onBlockDelta(data, out);
    if (type == "message_delta") return onMessageDelta(data, out);
    if (type == "message_stop") stopped_ = true;
    return {};  // content_block_stop: nothing to say in OpenAI's terms
  }

  Status onMessageStart(const Json& data) {
    if (started_) return upstreamError("a second message_start");
    auto m = data.find("message");
    if (m == data.end() || !m->is_object())
      return upstreamError("missing 'message' in message_start");
    if (Status s = requiredString(*m, "id", "message.", id_); !s.ok()) return s;
    std::optional<std::string> model;
    if (Status s = optionalString(*m, "model", "message.", model); !s.ok()) return s;
    if (model) model_ = std::move(*model);
    auto u = m->find("usage");
    if (u != m->end() && !u->is_null()) {
      UsageCounts counts;
      if (Status s = readUsage(*u, "message.usage", counts); !s.ok()) return s;
      usage_.update(counts);
      usage_seen_ = true;
    }
    created_ = nowSeconds();
    started_ = true;
    return {};
  }

  Status blockIndex(const Json& data, const char* type, int64_t& index) {
    auto i = data.find("index");
    if (i == data.end()) return upstreamError(std::string("missing 'index' in ") + type);
    if (!i->is_number_integer() || i->get<int64_t>() < 0) {
      return upstreamError(std::string("'index' in ") + type + " is not a non-negative integer");
    }
    index = i->get<int64_t>();
    return {};
  }

  Status onBlockStart(const Json& data, std::vector<api::ChatChunk>& out) {
    int64_t index = 0;
    if (Status s = blockIndex(data, "content_block_start", index); !s.ok()) return s;
    auto b = data.find("content_block");
    if (b == data.end() || !b->is_object()) {
      return upstreamError("missing 'content_block' in content_block_start");
    }
    std::string type;
    if (Status s = requiredString(*b, "type", "content_block.", type); !s.ok()) return s;
    Block& block = blocks_[index];
    block = Block{};
    if (type == "text") {
      block.kind = BlockKind::kText;
      std::optional<std::string> text;
      if (Status s = optionalString(*b, "text", "content_block.", text); !s.ok()) return s;
      if (text && !text->empty()) {
        api::Delta delta;
        delta.content = std::move(*text);
        out.push_back(chunk(std::move(delta), std::nullopt));
      }
      return {};
    }
    if (type == "thinking") {
      block.kind = BlockKind::kThinking;
      return {};
    }
    if (type == "tool_use") {
      api::ToolCallDelta call;
      call.id.emplace();
      call.name.emplace();
      if (Status s = requiredString(*b, "id", "content_block.", *call.id); !s.ok()) return s;
      if (Status s = requiredString(*b, "name", "content_block.", *call.name); !s.ok()) return s;
      block.kind = BlockKind::kToolUse;
      block.tool_index = tool_calls_++;
      call.index = block.tool_index;
      call.type = "function";
      call.arguments = "";
      api::Delta delta;
      delta.tool_calls.push_back(std::move(call));
      out.push_back(chunk(std::move(delta), std::nullopt));
    }
    return {};
  }

  Status onBlockDelta(const Json& data, std::vector<api::ChatChunk>& out) {
    int64_t index = 0;
    if (Status s = blockIndex(data, "content_block_delta", index); !s.ok()) return s;
    auto d = data.find("delta");
    if (d == data.end() || !d->is_object()) {
      return upstreamError("missing 'delta' in content_block_delta");
    }
    auto it = blocks_.find(index);
    if (it == blocks_.end()) {
      return upstreamError("content_block_delta for block " + std::to_string(index) +
                           ", which was never started");
    }
    const Block& block = it->second;
    std::string type;
    if (Status s = requiredString(*d, "type", "delta.", type); !s.ok()) return s;
    if (block.kind == BlockKind::kIgnored) return {};
    if (type == "text_delta") {
      if (block.kind != BlockKind::kText) {
        return upstreamError("text_delta for block " + std::to_string(index) +
                             ", which is not a text block");
      }
      std::string text;
      if (Status s = requiredString(*d, "text", "delta.", text); !s.ok()) return s;
      if (text.empty()) return {};
      api::Delta delta;
      delta.content = std::move(text);
      out.push_back(chunk(std::move(delta), std::nullopt));
      return {};
    }
    if (type == "input_json_delta") {
      if (block.kind != BlockKind::kToolUse) {
        return upstreamError("input_json_delta for block " + std::to_string(index) +
                             ", which is not a tool_use block");
      }
      std::string partial;
      if (Status s = requiredString(*d, "partial_json", "delta.", partial); !s.ok()) return s;
      if (partial.empty()) return {};
      api::ToolCallDelta call;
      call.index = block.tool_index;
      call.arguments = std::move(partial);
      api::Delta delta;
      delta.tool_calls.push_back(std::move(call));
      out.push_back(chunk(std::move(delta), std::nullopt));
      return {};
    }
    if (type == "thinking_delta" && block.kind == BlockKind::kThinking) {
      std::string thought;
      if (Status s = requiredString(*d, "thinking", "delta.", thought); !s.ok()) return s;
      if (thought.empty()) return {};
      api::Delta delta;
      delta.reasoning_content = std::move(thought);
      out.push_back(chunk(std::move(delta), std::nullopt));
    }
    return {};  // signature_delta, citations_delta and later additions
  }

  Status onMessageDelta(const Json& data, std::vector<api::ChatChunk>& out) {
    auto d = data.find("delta");
    if (d == data.end() || !d->is_object())
      return upstreamError("missing 'delta' in message_delta");
    std::optional<std::string> stop_reason;
    if (Status s = optionalString(*d, "stop_reason", "delta.", stop_reason); !s.ok()) return s;
    auto u = data.find("usage");
    if (u != data.end() && !u->is_null()) {
      UsageCounts counts;
      if (Status s = readUsage(*u, "usage", counts); !s.ok()) return s;
      usage_.update(counts);
      usage_seen_ = true;
    }
    if (stop_reason && !finish_reason_seen_) {
      finish_reason_seen_ = true;
      out.push_back(chunk(api::Delta{}, finishReasonFor(*stop_reason)));
    }
    return {};
  }

  api::ChatChunk chunk(api::Delta delta, std::optional<std::string> finish_reason) {
    api::ChatChunk c;
    c.id = id_;
    c.created = created_;
    c.model = model_;
    api::ChunkChoice choice;
    choice.delta = std::move(delta);
    if (!role_sent_) {
      choice.delta.role = Role::kAssistant;
      role_sent_ = true;
    }
    choice.finish_reason = std::move(finish_reason);
    c.choices.push_back(std::move(choice));
    return c;
  }

  std::string id_;
  std::string model_;  // the request's until message_start names one
  int64_t created_ = 0;
  bool started_ = false;
  bool stopped_ = false;             // message_stop seen
  bool finish_reason_seen_ = false;  // message_delta with a stop_reason seen
  bool role_sent_ = false;
  bool usage_seen_ = false;
  bool native_ = false;    // the request was sent natively: events go on as they came
  bool answered_ = false;  // native: a chunk has gone
  std::string pending_native_;  // native: framed events not yet handed on
  UsageCounts usage_;
  std::map<int64_t, Block> blocks_;  // content block index -> what it is
  int tool_calls_ = 0;
};

}  // namespace

std::string finishReasonFor(std::string_view stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "model_context_window_exceeded") {
    return "length";
  }
  if (stop_reason == "tool_use") return "tool_calls";
  if (stop_reason == "refusal") return "content_filter";
  return "stop";  // end_turn, stop_sequence, pause_turn, and stop reasons added later
}

api::StatusOr<api::Json> toAnthropicRequest(const api::ChatRequest& request,
                                            const AnthropicWireConfig& config) {
  if (Status s = checkUntranslatable(request); !s.ok()) return s;

  Json system_blocks = Json::array();
  std::vector<Turn> turns;
  for (size_t i = 0; i < request.messages.size(); ++i) {
    const api::Message& m = request.messages[i];
    std::string content_param = messagePath(i) + ".content";
    switch (m.role) {
      case Role::kSystem:
      case Role::kDeveloper: {
        // The Messages API has one system prompt: every system and developer message joins
        // it, in order, wherever it stood in the conversation.
        auto content = contentToAnthropic(m.content, content_param);
        if (!content.ok()) return content.status();
        for (Json& block : asBlocks(std::move(content).value())) {
          system_blocks.push_back(std::move(block));
        }
        break;
      }
      case Role::kUser: {
        auto content = contentToAnthropic(m.content, content_param);
        if (!content.ok()) return content.status();
        appendTurn(turns, "user", std::move(content).value());
        break;
      }
      case Role::kAssistant: {
        auto content = contentToAnthropic(m.content, content_param);
        if (!content.ok()) return content.status();
        Json c = std::move(content).value();
        if (m.content.isNull() && m.refusal && !m.refusal->empty()) c = Json(*m.refusal);
        if (!m.tool_calls.empty()) {
          c = asBlocks(std::move(c));
          for (size_t k = 0; k < m.tool_calls.size(); ++k) {
            auto block = toolUseBlock(m.tool_calls[k],
                                      messagePath(i) + ".tool_calls[" + std::to_string(k) + "]");
            if (!block.ok()) return block.status();
            c.push_back(std::move(block).value());
          }
        }
        appendTurn(turns, "assistant", std::move(c));
        break;
      }
      case Role::kTool: {
        Json result = {{"type", "tool_result"}, {"tool_use_id", m.tool_call_id}};
        auto content = contentToAnthropic(m.content, content_param);
        if (!content.ok()) return content.status();
        result["content"] = std::move(content).value();
        appendTurn(turns, "user", Json::array({std::move(result)}));
        break;
      }
      case Role::kFunction:
        return unsupported(messagePath(i) + ".role",
                           "the deprecated 'function' role is not translated; use 'tool'");
    }
  }
  if (turns.empty()) {
    return api::invalidRequest(
        "Anthropic's Messages API needs at least one user or assistant message besides the "
        "system prompt.",
        "messages");
  }

  Json body = Json::object();
  body["model"] = request.model;
  body["max_tokens"] = request.maxOutputTokens().value_or(config.default_max_tokens);
  if (system_blocks.size() == 1) {
    body["system"] = system_blocks[0]["text"];
  } else if (!system_blocks.empty()) {
    body["system"] = std::move(system_blocks);
  }
  Json& messages = body["messages"] = Json::array();
  for (Turn& t : turns) {
    messages.push_back(Json{{"role", t.role}, {"content", std::move(t.content)}});
  }

  if (!request.tools.empty()) {
    Json& tools = body["tools"] = Json::array();
    for (const api::Tool& tool : request.tools) {
      Json t = {{"name", tool.name}};
      if (!tool.description.empty()) t["description"] = tool.description;
      t["input_schema"] = tool.parameters.is_null()
                              ? Json{{"type", "object"}, {"properties", Json::object()}}
                              : tool.parameters;
      if (tool.strict) t["strict"] = *tool.strict;
      tools.push_back(std::move(t));
    }
    if (request.tool_choice || request.parallel_tool_calls == false) {
      body["tool_choice"] = toolChoiceJson(request);
    }
  }

  if (request.temperature) body["temperature"] = *request.temperature;
  if (request.top_p) body["top_p"] = *request.top_p;
  if (!request.stop.empty()) body["stop_sequences"] = request.stop;
  if (request.stream) body["stream"] = true;
  if (!request.user.empty()) body["metadata"] = Json{{"user_id", request.user}};
  return body;
}

api::StatusOr<api::ChatResponse> fromAnthropicResponse(const api::Json& body) {
  if (!body.is_object()) return upstreamError("the response is not a JSON object");
  auto type = body.find("type");
  if (type != body.end() && type->is_string() && type->get<std::string>() == "error") {
    return errorStatus(body.value("error", Json()), "error body");
  }

  ChatResponse r;
  if (Status s = requiredString(body, "id", "", r.id); !s.ok()) return s;
  std::optional<std::string> model;
  if (Status s = optionalString(body, "model", "", model); !s.ok()) return s;
  if (model) r.model = std::move(*model);
  r.created = nowSeconds();

  auto content = body.find("content");
  if (content == body.end()) return upstreamError("missing 'content'");
  if (!content->is_array()) return upstreamError("'content' is not an array");

  api::Choice choice;
  choice.message.role = Role::kAssistant;
  std::string text;
  bool has_text = false;
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& block = (*content)[i];
    std::string where = "content[" + std::to_string(i) + "].";
    if (!block.is_object())
      return upstreamError("'content[" + std::to_string(i) + "]' is not an object");
    std::string block_type;
    if (Status s = requiredString(block, "type", where, block_type); !s.ok()) return s;
    if (block_type == "text") {
      std::string piece;
      if (Status s = requiredString(block, "text", where, piece); !s.ok()) return s;
      text += piece;
      has_text = true;
    } else if (block_type == "thinking") {
      std::string thought;
      if (Status s = requiredString(block, "thinking", where, thought); !s.ok()) return s;
      if (!choice.message.reasoning_content) choice.message.reasoning_content.emplace();
      *choice.message.reasoning_content += thought;
    } else if (block_type == "tool_use") {
      api::ToolCall call;
      if (Status s = requiredString(block, "id", where, call.id); !s.ok()) return s;
      if (Status s = requiredString(block, "name", where, call.name); !s.ok()) return s;
      auto input = block.find("input");
      if (input == block.end()) return upstreamError("missing '" + where + "input'");
      if (!input->is_object()) return upstreamError("'" + where + "input' is not an object");
      call.arguments = input->dump(-1, ' ', false, Json::error_handler_t::replace);
      choice.message.tool_calls.push_back(std::move(call));
    }
    // redacted_thinking and server-tool blocks have no place in OpenAI's message.
  }
  if (has_text || choice.message.tool_calls.empty()) {
    choice.message.content = api::Content::ofText(std::move(text));
  }

  std::optional<std::string> stop_reason;
  if (Status s = optionalString(body, "stop_reason", "", stop_reason); !s.ok()) return s;
  choice.finish_reason = finishReasonFor(stop_reason.value_or("end_turn"));
  r.choices.push_back(std::move(choice));

  auto usage = body.find("usage");
  if (usage != body.end() && !usage->is_null()) {
    UsageCounts counts;
    if (Status s = readUsage(*usage, "usage", counts); !s.ok()) return s;
    if (!counts.input) return upstreamError("missing 'usage.input_tokens'");
    if (!counts.output) return upstreamError("missing 'usage.output_tokens'");
    r.usage = counts.toUsage();
  }
  return r;
}

AnthropicWire::AnthropicWire(AnthropicWireConfig config)
    : config_(std::move(config)), url_(config_.base_url + "/messages") {}

api::StatusOr<WireRequest> AnthropicWire::encode(const api::ChatRequest& request) const {
  WireRequest wire;
  wire.url = url_;
  if (!config_.api_key.empty()) wire.headers.emplace_back("x-api-key", config_.api_key);
  wire.headers.emplace_back("anthropic-version", config_.version);
  if (sentNatively(request)) {
    auto body = nativeAnthropicBody(request, config_);
    if (!body.ok()) return body.status();
    wire.body = std::move(body).value();
    for (const auto& [name, value] : request.native_headers) {
      if (name != "anthropic-beta") continue;
      std::string betas = forwardedBetas(value);
      if (!betas.empty()) wire.headers.emplace_back(name, std::move(betas));
    }
    return wire;
  }
  auto body = toAnthropicRequest(request, config_);
  if (!body.ok()) return body.status();
  wire.body = body->dump(-1, ' ', false, Json::error_handler_t::replace);
  return wire;
}

api::StatusOr<api::ChatResponse> AnthropicWire::decodeResponse(
    std::string_view body, const api::ChatRequest& request) const {
  const api::JsonBounds bounds{kMaxUpstreamJsonDepth, std::numeric_limits<int64_t>::max()};
  if (api::Status s = api::checkJsonBounds(body, bounds); !s.ok()) {
    return upstreamError("the response is refused: " + s.message());
  }
  Json root = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return upstreamError("the response is not valid JSON");
  auto response = fromAnthropicResponse(root);
  if (!response.ok()) return response.status();
  if (response->model.empty()) response->model = request.model;
  if (sentNatively(request)) response->native = std::string(body);
  return response;
}

std::unique_ptr<StreamDecoder> AnthropicWire::newStreamDecoder(
    const api::ChatRequest& request) const {
  return std::make_unique<AnthropicStreamDecoder>(request.model, sentNatively(request));
}

std::string forwardedBetas(std::string_view header) {
  std::string out;
  size_t start = 0;
  while (start <= header.size()) {
    size_t comma = header.find(',', start);
    if (comma == std::string_view::npos) comma = header.size();
    std::string_view beta = header.substr(start, comma - start);
    while (!beta.empty() && (beta.front() == ' ' || beta.front() == '\t')) beta.remove_prefix(1);
    while (!beta.empty() && (beta.back() == ' ' || beta.back() == '\t')) beta.remove_suffix(1);
    if (!beta.empty() && beta.rfind("context-1m", 0) != 0) {
      if (!out.empty()) out += ',';
      out += beta;
    }
    start = comma + 1;
  }
  return out;
}

bool asksLongCache(const api::ChatRequest& request) {
  return sentNatively(request) && request.native_body->find("\"ttl\"") != std::string::npos;
}

bool sentNatively(const api::ChatRequest& request) {
  return request.native_body && request.native_api == api::kNativeApi;
}

api::StatusOr<std::string> nativeAnthropicBody(const api::ChatRequest& request,
                                               const AnthropicWireConfig& config) {
  if (!sentNatively(request)) {
    return api::Status(api::ErrorCode::kInternal, "the request carries no Messages API body");
  }
  const int64_t max_tokens = request.maxOutputTokens().value_or(config.default_max_tokens);
  std::optional<Json> stream;
  if (request.stream) stream = Json(true);
  auto body = api::editTopLevelMembers(
      *request.native_body,
      {{"model", Json(request.model)}, {"max_tokens", Json(max_tokens)}, {"stream", stream}});
  if (!body.ok()) return api::Status(api::ErrorCode::kInternal, body.status().message());
  return body;
}

}  // namespace routers
