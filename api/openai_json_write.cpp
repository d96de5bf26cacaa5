// Serialisers. Responses, chunks and errors are written straight into a string in the key
// order OpenAI uses: this is the hot path of streaming (one chunk per token), so no JSON
// tree is built. Upstream requests (chatRequestToJson) are built as a JSON tree, since the
// HTTP client adds to them.
#include <charconv>
#include <cmath>

#include "api/openai_json.h"
#include "api/saturating.h"

namespace api {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at p[0] (a byte >= 0x80), or 0 when it
// is ill-formed; then *bad is the length of its maximal invalid subpart (>= 1).
size_t utf8Sequence(const unsigned char* p, size_t n, size_t* bad) {
  unsigned char c = p[0];
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte (Unicode table 3-7)
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    bool ok = i < n && (i == 1 ? (p[i] >= lo && p[i] <= hi) : (p[i] >= 0x80 && p[i] <= 0xBF));
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return len;
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

// A log probability, shortest round-trip form. -inf (and NaN) become OpenAI's -9999.0.
void appendLogprob(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "-9999.0";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

void appendStringOrNull(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
  } else {
    appendJsonString(out, s);
  }
}

// {"token","logprob","bytes"}: bytes are the token's raw bytes, which may be part of a
// multi-byte character that `token` (valid UTF-8) can only show as U+FFFD.
void appendTokenHead(std::string& out, std::string_view token, double logprob) {
  out += "{\"token\":";
  appendJsonString(out, token);
  out += ",\"logprob\":";
  appendLogprob(out, logprob);
  out += ",\"bytes\":[";
  for (size_t i = 0; i < token.size(); ++i) {
    if (i > 0) out += ',';
    appendInt(out, static_cast<unsigned char>(token[i]));
  }
  out += ']';
}

void appendLogprobs(std::string& out, const std::optional<std::vector<TokenLogprob>>& lp) {
  if (!lp) {
    out += "null";
    return;
  }
  out += "{\"content\":[";
  bool first = true;
  for (const TokenLogprob& t : *lp) {
    if (!first) out += ',';
    first = false;
    appendTokenHead(out, t.token, t.logprob);
    out += ",\"top_logprobs\":[";
    for (size_t i = 0; i < t.top_logprobs.size(); ++i) {
      if (i > 0) out += ',';
      appendTokenHead(out, t.top_logprobs[i].token, t.top_logprobs[i].logprob);
      out += '}';
    }
    out += "]}";
  }
  out += "],\"refusal\":null}";
}

void appendUsage(std::string& out, const Usage& u) {
  out += "{\"prompt_tokens\":";
  appendInt(out, u.prompt_tokens);
  out += ",\"completion_tokens\":";
  appendInt(out, u.completion_tokens);
  out += ",\"total_tokens\":";
  appendInt(out, u.total_tokens != 0 ? u.total_tokens
                                     : saturatingAdd(u.prompt_tokens, u.completion_tokens));
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":";
  appendInt(out, u.cached_prompt_tokens);
  out += "},\"completion_tokens_details\":{\"reasoning_tokens\":";
  appendInt(out, u.reasoning_tokens);
  out += "}}";
}

void appendContent(std::string& out, const Content& c) {
  switch (c.kind) {
    case Content::Kind::kNull:
      out += "null";
      return;
    case Content::Kind::kText:
      appendJsonString(out, c.text);
      return;
    case Content::Kind::kParts:
      appendJsonString(out, c.joinedText());
      return;
  }
}

void appendToolCall(std::string& out, const ToolCall& call) {
  out += "{\"id\":";
  appendJsonString(out, call.id);
  out += ",\"type\":";
  appendJsonString(out, call.type.empty() ? std::string_view("function") : call.type);
  out += ",\"function\":{\"name\":";
  appendJsonString(out, call.name);
  out += ",\"arguments\":";
  appendJsonString(out, call.arguments);
  out += "}}";
}

void appendToolCallDelta(std::string& out, const ToolCallDelta& d) {
  out += "{\"index\":";
  appendInt(out, d.index);
  if (d.id) {
    out += ",\"id\":";
    appendJsonString(out, *d.id);
  }
  if (d.type) {
    out += ",\"type\":";
    appendJsonString(out, *d.type);
  }
  if (d.name || d.arguments) {
    out += ",\"function\":{";
    if (d.name) {
      out += "\"name\":";
      appendJsonString(out, *d.name);
    }
    if (d.arguments) {
      if (d.name) out += ',';
      out += "\"arguments\":";
      appendJsonString(out, *d.arguments);
    }
    out += '}';
  }
  out += '}';
}

void appendDelta(std::string& out, const Delta& d) {
  out += '{';
  bool first = true;
  auto key = [&](std::string_view k) {
    if (!first) out += ',';
    first = false;
    out += k;
  };
  if (d.role) {
    key("\"role\":");
    appendJsonString(out, roleName(*d.role));
  }
  if (d.content) {
    key("\"content\":");
    appendJsonString(out, *d.content);
  }
  if (d.reasoning_content) {
    key("\"reasoning_content\":");
    appendJsonString(out, *d.reasoning_content);
  }
  if (d.refusal) {
    key("\"refusal\":");
    appendJsonString(out, *d.refusal);
  }
  if (!d.tool_calls.empty()) {
    key("\"tool_calls\":[");
    for (size_t i = 0; i < d.tool_calls.size(); ++i) {
      if (i > 0) out += ',';
      appendToolCallDelta(out, d.tool_calls[i]);
    }
    out += ']';
  }
  out += '}';
}

// "id", "object", "created", "model": the head every response and chunk starts with.
void appendHead(std::string& out, std::string_view id, std::string_view object, int64_t created,
                std::string_view model) {
  out += "{\"id\":";
  appendJsonString(out, id);
  out += ",\"object\":\"";
  out += object;
  out += "\",\"created\":";
  appendInt(out, created);
  out += ",\"model\":";
  appendJsonString(out, model);
}

// ---- upstream requests (chatRequestToJson) -----------------------------------------

Json contentToJson(const Content& c) {
  switch (c.kind) {
    case Content::Kind::kNull:
      return nullptr;
    case Content::Kind::kText:
      return c.text;
    case Content::Kind::kParts:
      break;
  }
  Json parts = Json::array();
  for (const ContentPart& part : c.parts) {
    switch (part.type) {
      case ContentPart::Type::kText:
        parts.push_back({{"type", "text"}, {"text", part.text}});
        break;
      case ContentPart::Type::kImageUrl: {
        Json img = {{"url", part.image_url}};
        if (!part.image_detail.empty()) img["detail"] = part.image_detail;
        parts.push_back({{"type", "image_url"}, {"image_url", std::move(img)}});
        break;
      }
      case ContentPart::Type::kInputAudio:
      case ContentPart::Type::kFile:
        parts.push_back(part.raw);
        break;
      case ContentPart::Type::kRefusal:
        parts.push_back({{"type", "refusal"}, {"refusal", part.text}});
        break;
    }
  }
  return parts;
}

Json messageToJson(const Message& m) {
  Json j = {{"role", roleName(m.role)}, {"content", contentToJson(m.content)}};
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.tool_calls.empty()) {
    Json calls = Json::array();
    for (const ToolCall& c : m.tool_calls) {
      calls.push_back({{"id", c.id},
                       {"type", c.type.empty() ? "function" : c.type},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    }
    j["tool_calls"] = std::move(calls);
  }
  // A tool message always names its call (an empty id too), so that the body parses again.
  if (m.role == Role::kTool || !m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
  if (m.refusal) j["refusal"] = *m.refusal;
  return j;
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t run = 0;  // start of the bytes not yet copied
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t bad = 0;
      if (size_t len = utf8Sequence(p + i, n - i, &bad); len != 0) {
        i += len;
        continue;
      }
      out.append(s.data() + run, i - run);
      out += kReplacementChar;
      i += bad;
      run = i;
      continue;
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
    }
    ++i;
    run = i;
  }
  out.append(s.data() + run, n - run);
  out += '"';
}

std::string serializeChatResponse(const ChatResponse& r) {
  std::string out;
  size_t estimate = 320;
  for (const Choice& c : r.choices) estimate += 160 + c.message.content.text.size();
  out.reserve(estimate);
  appendHead(out, r.id, "chat.completion", r.created, r.model);
  out += ",\"choices\":[";
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const Choice& c = r.choices[i];
    if (i > 0) out += ',';
    out += "{\"index\":";
    appendInt(out, c.index);
    out += ",\"message\":{\"role\":\"assistant\",\"content\":";
    appendContent(out, c.message.content);
    out += ",\"refusal\":";
    if (c.message.refusal) {
      appendJsonString(out, *c.message.refusal);
    } else {
      out += "null";
    }
    if (c.message.reasoning_content) {
      out += ",\"reasoning_content\":";
      appendJsonString(out, *c.message.reasoning_content);
    }
    if (!c.message.tool_calls.empty()) {
      out += ",\"tool_calls\":[";
      for (size_t k = 0; k < c.message.tool_calls.size(); ++k) {
        if (k > 0) out += ',';
        appendToolCall(out, c.message.tool_calls[k]);
      }
      out += ']';
    }
    out += "},\"logprobs\":";
    appendLogprobs(out, c.logprobs);
    out += ",\"finish_reason\":";
    appendStringOrNull(out, c.finish_reason);
    out += '}';
  }
  out += ']';
  if (r.usage) {
    out += ",\"usage\":";
    appendUsage(out, *r.usage);
  }
  if (!r.service_tier.empty()) {
    out += ",\"service_tier\":";
    appendJsonString(out, r.service_tier);
  }
  out += ",\"system_fingerprint\":";
  appendStringOrNull(out, r.system_fingerprint);
  out += '}';
  return out;
}

std::string serializeChatChunk(const ChatChunk& c, bool include_usage) {
  std::string out;
  size_t estimate = 256;
  for (const ChunkChoice& ch : c.choices) {
    estimate += 96 + (ch.delta.content ? ch.delta.content->size() : 0);
    if (ch.logprobs) estimate += ch.logprobs->size() * 96;
  }
  out.reserve(estimate);
  appendHead(out, c.id, "chat.completion.chunk", c.created, c.model);
  out += ",\"system_fingerprint\":";
  appendStringOrNull(out, c.system_fingerprint);
  out += ",\"choices\":[";
  for (size_t i = 0; i < c.choices.size(); ++i) {
    const ChunkChoice& ch = c.choices[i];
    if (i > 0) out += ',';
    out += "{\"index\":";
    appendInt(out, ch.index);
    out += ",\"delta\":";
    appendDelta(out, ch.delta);
    out += ",\"logprobs\":";
    appendLogprobs(out, ch.logprobs);
    out += ",\"finish_reason\":";
    appendStringOrNull(out, ch.finish_reason ? std::string_view(*ch.finish_reason) : "");
    out += '}';
  }
  out += ']';
  if (include_usage) {
    out += ",\"usage\":";
    if (c.usage) {
      appendUsage(out, *c.usage);
    } else {
      out += "null";
    }
  }
  out += '}';
  return out;
}

std::string serializeError(const Status& s) {
  std::string out;
  out.reserve(96 + s.message().size());
  out += "{\"error\":{\"message\":";
  appendJsonString(out, s.message());
  out += ",\"type\":";
  appendJsonString(out, openaiType(s.code()));
  out += ",\"param\":";
  appendStringOrNull(out, s.param());
  out += ",\"code\":";
  appendStringOrNull(out, s.openaiCode());
  out += "}}";
  return out;
}

Json chatRequestToJson(const ChatRequest& req) {
  Json j = Json::object();
  j["model"] = req.model;
  Json messages = Json::array();
  for (const Message& m : req.messages) messages.push_back(messageToJson(m));
  j["messages"] = std::move(messages);
  if (req.temperature) j["temperature"] = *req.temperature;
  if (req.top_p) j["top_p"] = *req.top_p;
  if (req.n != 1) j["n"] = req.n;
  if (req.max_tokens) j["max_tokens"] = *req.max_tokens;
  if (req.max_completion_tokens) j["max_completion_tokens"] = *req.max_completion_tokens;
  if (!req.stop.empty()) j["stop"] = req.stop;
  if (req.seed) j["seed"] = *req.seed;
  if (req.presence_penalty) j["presence_penalty"] = *req.presence_penalty;
  if (req.frequency_penalty) j["frequency_penalty"] = *req.frequency_penalty;
  if (req.repetition_penalty) j["repetition_penalty"] = *req.repetition_penalty;
  if (req.chat_template_kwargs.is_object()) j["chat_template_kwargs"] = req.chat_template_kwargs;
  if (!req.logit_bias.empty()) {
    Json bias = Json::object();
    for (const auto& [token, value] : req.logit_bias) bias[std::to_string(token)] = value;
    j["logit_bias"] = std::move(bias);
  }
  if (req.logprobs) j["logprobs"] = true;
  if (req.top_logprobs) j["top_logprobs"] = *req.top_logprobs;
  if (req.response_format) {
    const ResponseFormat& rf = *req.response_format;
    switch (rf.type) {
      case ResponseFormat::Type::kText:
        j["response_format"] = {{"type", "text"}};
        break;
      case ResponseFormat::Type::kJsonObject:
        j["response_format"] = {{"type", "json_object"}};
        break;
      case ResponseFormat::Type::kJsonSchema:
        j["response_format"] = {{"type", "json_schema"}, {"json_schema", rf.json_schema}};
        break;
    }
  }
  if (!req.tools.empty()) {
    Json tools = Json::array();
    for (const Tool& t : req.tools) {
      Json fn = {{"name", t.name}};
      if (!t.description.empty()) fn["description"] = t.description;
      if (!t.parameters.is_null()) fn["parameters"] = t.parameters;
      if (t.strict) fn["strict"] = *t.strict;
      tools.push_back(
          {{"type", t.type.empty() ? "function" : t.type}, {"function", std::move(fn)}});
    }
    j["tools"] = std::move(tools);
  }
  if (req.tool_choice) {
    switch (req.tool_choice->mode) {
      case ToolChoice::Mode::kNone:
        j["tool_choice"] = "none";
        break;
      case ToolChoice::Mode::kAuto:
        j["tool_choice"] = "auto";
        break;
      case ToolChoice::Mode::kRequired:
        j["tool_choice"] = "required";
        break;
      case ToolChoice::Mode::kFunction:
        j["tool_choice"] = {{"type", "function"},
                            {"function", {{"name", req.tool_choice->function_name}}}};
        break;
    }
  }
  if (req.parallel_tool_calls) j["parallel_tool_calls"] = *req.parallel_tool_calls;
  if (!req.user.empty()) j["user"] = req.user;
  if (!req.metadata.empty()) j["metadata"] = req.metadata;
  if (req.stream) {
    j["stream"] = true;
    if (req.include_usage) j["stream_options"] = {{"include_usage", true}};
  }
  if (req.extra.is_object()) {
    auto& out = j.get_ref<Json::object_t&>();
    for (const auto& [key, value] : req.extra.get_ref<const Json::object_t&>()) {
      out.emplace(key, value);  // no-op when a typed field already set the key
    }
  }
  return j;
}

}  // namespace api
