#include "api/anthropic_messages.h"

#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <utility>

#include "api/json_text.h"
#include "api/openai_json.h"
#include "api/sse.h"

namespace api {
namespace {

// Our own output keeps Anthropic's key order ("type" first in events, as Anthropic sends).
using OJson = nlohmann::ordered_json;

Status bad(std::string message, std::string param = {}) {
  return invalidRequest((param.empty() ? "" : param + ": ") + message, param);
}

std::string at(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string at(const std::string& path, size_t i) { return path + "." + std::to_string(i); }

Status needString(const Json& v, const std::string& path, std::string& out) {
  if (!v.is_string()) return bad("Input should be a valid string", path);
  out = v.get<std::string>();
  return {};
}

// A field of `obj` that must be present and a string.
Status requiredString(const Json& obj, std::string_view key, const std::string& path,
                      std::string& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return bad("Field required", at(path, key));
  return needString(*it, at(path, key), out);
}

Status number(const Json& v, const std::string& path, double lo, double hi,
              std::optional<double>& out) {
  if (v.is_null()) return {};
  if (!v.is_number()) return bad("Input should be a valid number", path);
  double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    return bad("Input should be between " + Json(lo).dump() + " and " + Json(hi).dump(), path);
  }
  out = d;
  return {};
}

Status positiveInt(const Json& v, const std::string& path, int64_t min, int64_t& out) {
  if (!v.is_number_integer()) return bad("Input should be a valid integer", path);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
    return bad("Input should be less than 2^63", path);
  }
  out = v.get<int64_t>();
  if (out < min) return bad("Input should be greater than or equal to " + std::to_string(min), path);
  return {};
}

// An image block's source as a data: URL or an https URL.
StatusOr<ContentPart> imagePart(const Json& block, const std::string& path) {
  auto src = block.find("source");
  if (src == block.end() || !src->is_object()) return bad("Field required", at(path, "source"));
  const std::string sp = at(path, "source");
  std::string type;
  if (Status s = requiredString(*src, "type", sp, type); !s.ok()) return s;
  ContentPart part;
  part.type = ContentPart::Type::kImageUrl;
  if (type == "base64") {
    std::string media, data;
    if (Status s = requiredString(*src, "media_type", sp, media); !s.ok()) return s;
    if (media != "image/jpeg" && media != "image/png" && media != "image/gif" &&
        media != "image/webp") {
      return bad("Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                 at(sp, "media_type"));
    }
    if (Status s = requiredString(*src, "data", sp, data); !s.ok()) return s;
    part.image_url = "data:" + media + ";base64," + data;
  } else if (type == "url") {
    if (Status s = requiredString(*src, "url", sp, part.image_url); !s.ok()) return s;
  } else {
    return bad("Input tag '" + type + "' found using 'type' does not match any of the expected "
               "tags: 'base64', 'url'", at(sp, "type"));
  }
  return part;
}

// Text and image blocks (the content of a user turn, a system prompt or a tool result).
Status plainBlock(const Json& block, const std::string& path, std::vector<ContentPart>& out) {
  std::string type;
  if (Status s = requiredString(block, "type", path, type); !s.ok()) return s;
  if (type == "text") {
    ContentPart p;
    if (Status s = requiredString(block, "text", path, p.text); !s.ok()) return s;
    out.push_back(std::move(p));
    return {};
  }
  if (type == "image") {
    auto part = imagePart(block, path);
    if (!part.ok()) return part.status();
    out.push_back(std::move(part).value());
    return {};
  }
  return bad("Content blocks of type '" + type + "' are not supported by this gateway",
             at(path, "type"));
}

Content contentOf(std::vector<ContentPart> parts) {
  Content c;
  c.kind = Content::Kind::kParts;
  c.parts = std::move(parts);
  return c;
}

// A tool_result block as a tool message.
StatusOr<Message> toolResult(const Json& block, const std::string& path) {
  Message m;
  m.role = Role::kTool;
  if (Status s = requiredString(block, "tool_use_id", path, m.tool_call_id); !s.ok()) return s;
  auto content = block.find("content");
  if (content == block.end() || content->is_null()) {
    m.content = Content::ofText("");
  } else if (content->is_string()) {
    m.content = Content::ofText(content->get<std::string>());
  } else if (content->is_array()) {
    std::vector<ContentPart> parts;
    for (size_t i = 0; i < content->size(); ++i) {
      if (Status s = plainBlock((*content)[i], at(at(path, "content"), i), parts); !s.ok()) {
        return s;
      }
    }
    m.content = contentOf(std::move(parts));
  } else {
    return bad("Input should be a valid string or list", at(path, "content"));
  }
  auto is_error = block.find("is_error");
  if (is_error != block.end() && !is_error->is_null() && !is_error->is_boolean()) {
    return bad("Input should be a valid boolean", at(path, "is_error"));
  }
  return m;
}

// One assistant block: text, tool_use or thinking.
Status assistantBlock(const Json& block, const std::string& path, Message& m,
                      std::vector<ContentPart>& text) {
  std::string type;
  if (Status s = requiredString(block, "type", path, type); !s.ok()) return s;
  if (type == "tool_use") {
    ToolCall call;
    if (Status s = requiredString(block, "id", path, call.id); !s.ok()) return s;
    if (Status s = requiredString(block, "name", path, call.name); !s.ok()) return s;
    auto input = block.find("input");
    if (input == block.end() || !input->is_object()) {
      return bad("Input should be a valid dictionary", at(path, "input"));
    }
    call.arguments = input->dump(-1, ' ', false, Json::error_handler_t::replace);
    m.tool_calls.push_back(std::move(call));
    return {};
  }
  if (type == "thinking") {
    std::string thought;
    if (Status s = requiredString(block, "thinking", path, thought); !s.ok()) return s;
    m.reasoning_content = m.reasoning_content.value_or("") + thought;
    return {};
  }
  if (type == "redacted_thinking") return {};  // opaque to every target but Anthropic
  return plainBlock(block, path, text);
}

// One Anthropic message: one chat message, or (a user turn with tool results) the tool
// messages followed by what else the turn says.
Status readMessage(const Json& j, const std::string& path, std::vector<Message>& out) {
  if (!j.is_object()) return bad("Input should be a valid dictionary", path);
  std::string role;
  if (Status s = requiredString(j, "role", path, role); !s.ok()) return s;
  if (role != "user" && role != "assistant") {
    return bad("Input should be 'user' or 'assistant'", at(path, "role"));
  }
  Message m;
  m.role = role == "user" ? Role::kUser : Role::kAssistant;
  auto content = j.find("content");
  if (content == j.end()) return bad("Field required", at(path, "content"));
  if (content->is_string()) {
    m.content = Content::ofText(content->get<std::string>());
    out.push_back(std::move(m));
    return {};
  }
  if (!content->is_array()) return bad("Input should be a valid list", at(path, "content"));
  std::vector<ContentPart> parts;
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& block = (*content)[i];
    const std::string bp = at(at(path, "content"), i);
    if (!block.is_object()) return bad("Input should be a valid dictionary", bp);
    if (m.role == Role::kAssistant) {
      if (Status s = assistantBlock(block, bp, m, parts); !s.ok()) return s;
    } else if (block.value("type", Json()) == "tool_result") {
      auto tool = toolResult(block, bp);
      if (!tool.ok()) return tool.status();
      out.push_back(std::move(tool).value());
    } else if (Status s = plainBlock(block, bp, parts); !s.ok()) {
      return s;
    }
  }
  if (!parts.empty() || m.role == Role::kAssistant || content->empty()) {
    if (!parts.empty()) m.content = contentOf(std::move(parts));
    out.push_back(std::move(m));
  }
  return {};
}

Status readSystem(const Json& v, std::vector<Message>& out) {
  if (v.is_null()) return {};
  Message m;
  m.role = Role::kSystem;
  if (v.is_string()) {
    m.content = Content::ofText(v.get<std::string>());
  } else if (v.is_array()) {
    std::vector<ContentPart> parts;
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string p = at(std::string("system"), i);
      if (!v[i].is_object() || v[i].value("type", Json()) != "text") {
        return bad("System blocks must be text blocks", p);
      }
      if (Status s = plainBlock(v[i], p, parts); !s.ok()) return s;
    }
    m.content = contentOf(std::move(parts));
  } else {
    return bad("Input should be a valid string or list", "system");
  }
  out.push_back(std::move(m));
  return {};
}

Status readTools(const Json& v, ChatRequest& req) {
  if (v.is_null()) return {};
  if (!v.is_array()) return bad("Input should be a valid list", "tools");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = at(std::string("tools"), i);
    const Json& t = v[i];
    if (!t.is_object()) return bad("Input should be a valid dictionary", p);
    auto type = t.find("type");
    if (type != t.end() && !type->is_null() && *type != "custom") {
      return bad("Server tools are not supported by this gateway", at(p, "type"));
    }
    Tool tool;
    if (Status s = requiredString(t, "name", p, tool.name); !s.ok()) return s;
    auto desc = t.find("description");
    if (desc != t.end() && !desc->is_null()) {
      if (Status s = needString(*desc, at(p, "description"), tool.description); !s.ok()) return s;
    }
    auto schema = t.find("input_schema");
    if (schema == t.end() || !schema->is_object()) {
      return bad("Input should be a valid dictionary", at(p, "input_schema"));
    }
    tool.parameters = *schema;
    auto strict = t.find("strict");
    if (strict != t.end() && strict->is_boolean()) tool.strict = strict->get<bool>();
    req.tools.push_back(std::move(tool));
  }
  return {};
}

Status readToolChoice(const Json& v, ChatRequest& req) {
  if (v.is_null()) return {};
  if (!v.is_object()) return bad("Input should be a valid dictionary", "tool_choice");
  std::string type;
  if (Status s = requiredString(v, "type", "tool_choice", type); !s.ok()) return s;
  ToolChoice c;
  if (type == "auto") {
    c.mode = ToolChoice::Mode::kAuto;
  } else if (type == "any") {
    c.mode = ToolChoice::Mode::kRequired;
  } else if (type == "none") {
    c.mode = ToolChoice::Mode::kNone;
  } else if (type == "tool") {
    c.mode = ToolChoice::Mode::kFunction;
    if (Status s = requiredString(v, "name", "tool_choice", c.function_name); !s.ok()) return s;
  } else {
    return bad("Input tag '" + type + "' found using 'type' does not match any of the expected "
               "tags: 'auto', 'any', 'tool', 'none'", "tool_choice.type");
  }
  auto parallel = v.find("disable_parallel_tool_use");
  if (parallel != v.end() && parallel->is_boolean() && parallel->get<bool>()) {
    req.parallel_tool_calls = false;
  }
  req.tool_choice = c;
  return {};
}

Status readThinking(const Json& v, ChatRequest& req) {
  if (v.is_null()) return {};
  if (!v.is_object()) return bad("Input should be a valid dictionary", "thinking");
  std::string type;
  if (Status s = requiredString(v, "type", "thinking", type); !s.ok()) return s;
  if (type == "enabled") {
    int64_t budget = 0;
    auto b = v.find("budget_tokens");
    if (b == v.end()) return bad("Field required", "thinking.budget_tokens");
    if (Status s = positiveInt(*b, "thinking.budget_tokens", 1024, budget); !s.ok()) return s;
  } else if (type != "disabled" && type != "adaptive") {
    return bad("Input tag '" + type + "' found using 'type' does not match any of the expected "
               "tags: 'enabled', 'disabled', 'adaptive'", "thinking.type");
  }
  req.chat_template_kwargs = Json{{"enable_thinking", type != "disabled"}};
  return {};
}

Status readStops(const Json& v, ChatRequest& req) {
  if (v.is_null()) return {};
  if (!v.is_array()) return bad("Input should be a valid list", "stop_sequences");
  for (size_t i = 0; i < v.size(); ++i) {
    std::string s;
    if (Status st = needString(v[i], at(std::string("stop_sequences"), i), s); !st.ok()) return st;
    req.stop.push_back(std::move(s));
  }
  return {};
}

Status readMetadata(const Json& v, ChatRequest& req) {
  if (v.is_null()) return {};
  if (!v.is_object()) return bad("Input should be a valid dictionary", "metadata");
  for (const auto& [key, value] : v.items()) {
    if (key != "user_id") return bad("Extra inputs are not permitted", "metadata." + key);
    if (value.is_null()) continue;
    if (Status s = needString(value, "metadata.user_id", req.user); !s.ok()) return s;
  }
  return {};
}

// One top-level field. `counting`: a count_tokens body (no max_tokens, no stream).
Status readField(const std::string& key, const Json& v, ChatRequest& req, bool counting) {
  if (key == "model") return needString(v, "model", req.model);
  if (key == "messages") {
    if (!v.is_array()) return bad("Input should be a valid list", "messages");
    for (size_t i = 0; i < v.size(); ++i) {
      if (Status s = readMessage(v[i], at(std::string("messages"), i), req.messages); !s.ok()) {
        return s;
      }
    }
    return {};
  }
  if (key == "system") return {};  // read first, so that it leads the messages
  if (key == "tools") return readTools(v, req);
  if (key == "tool_choice") return readToolChoice(v, req);
  if (key == "thinking") return readThinking(v, req);
  if (!counting) {
    if (key == "max_tokens") {
      int64_t n = 0;
      if (Status s = positiveInt(v, "max_tokens", 1, n); !s.ok()) return s;
      req.max_tokens = n;
      return {};
    }
    if (key == "stream") {
      if (v.is_null()) return {};
      if (!v.is_boolean()) return bad("Input should be a valid boolean", "stream");
      req.stream = v.get<bool>();
      return {};
    }
    if (key == "temperature") return number(v, "temperature", 0, 1, req.temperature);
    if (key == "top_p") return number(v, "top_p", 0, 1, req.top_p);
    if (key == "top_k") {
      int64_t k = 0;
      if (v.is_null()) return {};
      if (Status s = positiveInt(v, "top_k", 0, k); !s.ok()) return s;
      req.extra["top_k"] = k;
      return {};
    }
    if (key == "stop_sequences") return readStops(v, req);
    if (key == "metadata") return readMetadata(v, req);
    if (key == "service_tier") return {};  // a scheduling hint for Anthropic's own capacity
  }
  return bad("Extra inputs are not permitted", key);
}

// False when an assistant turn holds a thinking block without a signature: one another model
// wrote (the gateway's answers from the local engine or a translated target carry an empty
// one), which Anthropic would refuse; such a conversation goes to Anthropic translated, its
// thoughts left out.
bool signedThoughtsOnly(const Json& messages) {
  for (const Json& m : messages) {
    const Json content = m.value("content", Json());
    if (!content.is_array()) continue;
    for (const Json& block : content) {
      if (!block.is_object() || block.value("type", Json()) != "thinking") continue;
      const Json signature = block.value("signature", Json());
      if (!signature.is_string() || signature.get_ref<const std::string&>().empty()) return false;
    }
  }
  return true;
}

StatusOr<ChatRequest> parse(std::string_view body, bool counting) {
  if (Status s = checkJsonBounds(body); !s.ok()) return s;
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return bad("There was an issue with the format of your request: the body is not valid JSON");
  }
  if (!j.is_object()) return bad("Input should be a valid dictionary");
  ChatRequest req;
  static constexpr const char* kRequired[] = {"model", "messages", "max_tokens"};
  for (size_t i = 0; i < (counting ? 2 : 3); ++i) {
    if (!j.contains(kRequired[i])) return bad("Field required", kRequired[i]);
  }
  if (auto sys = j.find("system"); sys != j.end()) {
    if (Status s = readSystem(*sys, req.messages); !s.ok()) return s;
  }
  for (const auto& [key, value] : j.items()) {
    if (Status s = readField(key, value, req, counting); !s.ok()) return s;
  }
  if (req.messages.empty() || j["messages"].empty()) {
    return bad("At least one message is required", "messages");
  }
  attachSchemaKeyOrders(body, "", "/tools/*/input_schema", req);
  if (!counting && signedThoughtsOnly(j["messages"])) {
    req.native_api = std::string(kNativeApi);
    req.native_body = std::make_shared<const std::string>(body);
  }
  return req;
}

}  // namespace

StatusOr<ChatRequest> parseMessagesRequest(std::string_view body) { return parse(body, false); }
StatusOr<ChatRequest> parseCountTokensRequest(std::string_view body) { return parse(body, true); }

std::string_view anthropicErrorType(const Status& s) {
  switch (anthropicHttpStatus(s)) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    case 500: return "api_error";
    default: return "invalid_request_error";
  }
}

int anthropicHttpStatus(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kUnavailable: return 529;
    case ErrorCode::kInternal:
    case ErrorCode::kUpstreamError:
    case ErrorCode::kUpstreamTimeout:
    case ErrorCode::kConfig:
    case ErrorCode::kIo:
      return 500;
    default: {
      const int status = s.httpStatusCode();
      return status >= 400 && status < 500 ? status : 500;
    }
  }
}

std::string serializeAnthropicError(const Status& s, std::string_view request_id) {
  OJson body = {{"type", "error"},
               {"error", {{"type", anthropicErrorType(s)}, {"message", s.message()}}}};
  if (!request_id.empty()) body["request_id"] = request_id;
  return body.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

std::string_view stopReasonFor(std::string_view finish_reason) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "tool_calls") return "tool_use";
  if (finish_reason == "content_filter") return "refusal";
  return "end_turn";
}

std::string messageIdFor(std::string_view id) {
  if (id.rfind("msg_", 0) == 0) return std::string(id);
  if (id.rfind("chatcmpl-", 0) == 0) id.remove_prefix(9);
  return "msg_" + std::string(id);
}

namespace {

OJson usageJson(const std::optional<Usage>& usage) {
  const Usage u = usage.value_or(Usage{});
  int64_t input = u.prompt_tokens - u.cached_prompt_tokens - u.cache_write_prompt_tokens;
  return OJson{{"input_tokens", input < 0 ? 0 : input},
              {"cache_creation_input_tokens", u.cache_write_prompt_tokens},
              {"cache_read_input_tokens", u.cached_prompt_tokens},
              {"output_tokens", u.completion_tokens}};
}

// A tool call's arguments as the input object ({} when they are not one).
OJson toolInput(const std::string& arguments) {
  if (!checkJsonBounds(arguments).ok()) return OJson::object();
  OJson input = OJson::parse(arguments, nullptr, false);
  return input.is_object() ? input : OJson::object();
}

std::string event(std::string_view name, const OJson& data) {
  std::string out = "event: ";
  out += name;
  out += '\n';
  out += sseData(data.dump(-1, ' ', false, OJson::error_handler_t::replace));
  return out;
}

}  // namespace

std::string serializeMessage(const ChatResponse& r, const std::string& model) {
  if (!r.native.empty()) {
    // Anthropic's own Message, as it came: only the model is the one the client knows.
    auto body = editTopLevelMembers(r.native, {{"model", Json(model)}});
    if (body.ok()) return std::move(body).value();
  }
  OJson content = OJson::array();
  std::string finish;
  if (!r.choices.empty()) {
    const Choice& c = r.choices[0];
    finish = c.finish_reason;
    if (c.message.reasoning_content && !c.message.reasoning_content->empty()) {
      content.push_back(OJson{
          {"type", "thinking"}, {"thinking", *c.message.reasoning_content}, {"signature", ""}});
    }
    std::string text = c.message.content.joinedText();
    if (!text.empty()) content.push_back(OJson{{"type", "text"}, {"text", std::move(text)}});
    for (const ToolCall& t : c.message.tool_calls) {
      content.push_back(OJson{
          {"type", "tool_use"}, {"id", t.id}, {"name", t.name}, {"input", toolInput(t.arguments)}});
    }
  }
  OJson body = {{"id", messageIdFor(r.id)},
               {"type", "message"},
               {"role", "assistant"},
               {"model", model},
               {"content", std::move(content)},
               {"stop_reason", stopReasonFor(finish)},
               {"stop_sequence", nullptr},
               {"usage", usageJson(r.usage)}};
  return body.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

std::string MessagesStreamWriter::start(const ChatChunk& c) {
  started_ = true;
  OJson message = {{"id", messageIdFor(c.id.empty() ? id_ : c.id)},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", c.model.empty() ? model_ : c.model},
                  {"content", OJson::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", usageJson(std::nullopt)}};
  return event("message_start", OJson{{"type", "message_start"}, {"message", std::move(message)}}) +
         event("ping", OJson{{"type", "ping"}});
}

std::string MessagesStreamWriter::close() {
  if (block_ == Block::kNone) return "";
  block_ = Block::kNone;
  return event("content_block_stop", OJson{{"type", "content_block_stop"}, {"index", index_}});
}

std::string MessagesStreamWriter::open(Block kind, const OJson& content_block) {
  std::string out = close();
  block_ = kind;
  ++index_;
  return out + event("content_block_start", OJson{{"type", "content_block_start"},
                                                 {"index", index_},
                                                 {"content_block", content_block}});
}

std::string MessagesStreamWriter::toolDelta(const ToolCallDelta& d) {
  std::string out;
  if (block_ != Block::kTool || d.index != tool_index_) {
    tool_index_ = d.index;
    out += open(Block::kTool, OJson{{"type", "tool_use"},
                                   {"id", d.id.value_or("")},
                                   {"name", d.name.value_or("")},
                                   {"input", OJson::object()}});
  }
  if (d.arguments && !d.arguments->empty()) {
    out += event("content_block_delta",
                 OJson{{"type", "content_block_delta"},
                      {"index", index_},
                      {"delta", {{"type", "input_json_delta"}, {"partial_json", *d.arguments}}}});
  }
  return out;
}

std::string MessagesStreamWriter::nativeEvents(const ChatChunk& c) {
  // The upstream's message_start names its own model: the client gets the one it knows.
  static constexpr std::string_view kStart = "event: message_start\n";
  if (c.native.rfind(kStart, 0) != 0) return c.native;
  const size_t end = c.native.find("\n\n");
  if (end == std::string::npos) return c.native;
  std::vector<SseEvent> events;
  SseParser parser;
  if (!parser.feed(std::string_view(c.native).substr(0, end + 2), events) || events.size() != 1) {
    return c.native;
  }
  Json data = Json::parse(events[0].data, nullptr, false);
  if (!data.is_object() || !data.contains("message") || !data["message"].is_object()) {
    return c.native;
  }
  data["message"]["model"] = c.model.empty() ? model_ : c.model;
  return "event: message_start\n" +
         sseData(data.dump(-1, ' ', false, Json::error_handler_t::replace)) +
         c.native.substr(end + 2);
}

std::string MessagesStreamWriter::chunk(const ChatChunk& c) {
  if (!started_ && !c.native.empty()) native_ = true;
  if (native_) {
    started_ = true;
    return nativeEvents(c);
  }
  std::string out = started_ ? "" : start(c);
  for (const ChunkChoice& choice : c.choices) {
    if (choice.index != 0) continue;
    const Delta& d = choice.delta;
    if (d.reasoning_content && !d.reasoning_content->empty()) {
      if (block_ != Block::kThinking) {
        out += open(Block::kThinking, OJson{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      }
      out += event("content_block_delta",
                   OJson{{"type", "content_block_delta"},
                        {"index", index_},
                        {"delta", {{"type", "thinking_delta"}, {"thinking", *d.reasoning_content}}}});
    }
    if (d.content && !d.content->empty()) {
      if (block_ != Block::kText) out += open(Block::kText, OJson{{"type", "text"}, {"text", ""}});
      out += event("content_block_delta",
                   OJson{{"type", "content_block_delta"},
                        {"index", index_},
                        {"delta", {{"type", "text_delta"}, {"text", *d.content}}}});
    }
    for (const ToolCallDelta& t : d.tool_calls) out += toolDelta(t);
    if (choice.finish_reason) finish_reason_ = *choice.finish_reason;
  }
  return out;
}

std::string MessagesStreamWriter::finish(const std::optional<Usage>& usage,
                                         std::string_view native) {
  if (native_) return std::string(native);  // the upstream's own message_delta and message_stop
  std::string out = started_ ? "" : start(ChatChunk{});
  out += close();
  OJson u = usageJson(usage);
  out += event("message_delta",
               OJson{{"type", "message_delta"},
                    {"delta", {{"stop_reason", stopReasonFor(finish_reason_)},
                               {"stop_sequence", nullptr}}},
                    {"usage", std::move(u)}});
  out += event("message_stop", OJson{{"type", "message_stop"}});
  return out;
}

std::string MessagesStreamWriter::error(const Status& s) {
  OJson body = OJson::parse(serializeAnthropicError(s));
  return event("error", body);
}

}  // namespace api
