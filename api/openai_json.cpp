// Client requests: parseChatRequest, strict validation with OpenAI's error wording.
#include "api/openai_json.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <unordered_map>

namespace api {
namespace {

constexpr std::string_view kUnparsableBody =
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)";

// A field's position in the request. Built on the stack while walking; rendered to
// OpenAI's path style ("messages[2].content") only when an error names it.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;
  int64_t index = -1;  // "[index]" when >= 0, else ".key"

  Path field(std::string_view k) const { return Path{this, k, -1}; }
  Path at(size_t i) const { return Path{this, {}, static_cast<int64_t>(i)}; }
  std::string str() const {
    std::string out = parent != nullptr ? parent->str() : std::string();
    if (index >= 0) {
      out += '[';
      out += std::to_string(index);
      out += ']';
    } else {
      if (!out.empty()) out += '.';
      out += key;
    }
    return out;
  }
};


// At most `max` bytes of `s` for an error message, cut on a UTF-8 boundary.
std::string clip(std::string_view s, size_t max = 64) {
  if (s.size() <= max) return std::string(s);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

Status fail(std::string message, const Path& p, std::string_view code) {
  return Status(ErrorCode::kInvalidRequest, std::move(message), p.str(), std::string(code));
}

Status typeError(const Path& p, std::string_view expected, const Json& got) {
  std::string msg = "Invalid type for '" + p.str() + "': expected " + std::string(expected) +
                    ", but got " + std::string(describeJsonType(got)) + " instead.";
  return fail(std::move(msg), p, "invalid_type");
}

Status missingParam(const Path& p) {
  return fail("Missing required parameter: '" + p.str() + "'.", p, "missing_required_parameter");
}

Status invalidValue(const Path& p, std::string_view got,
                    std::initializer_list<std::string_view> supported) {
  std::string msg = "Invalid value: '" + clip(got) + "'. Supported values are: ";
  size_t i = 0;
  for (std::string_view v : supported) {
    if (i > 0) msg += supported.size() > 2 ? ", " : " ";
    if (i > 0 && i + 1 == supported.size()) msg += "and ";
    msg += '\'';
    msg += v;
    msg += '\'';
    ++i;
  }
  msg += '.';
  return fail(std::move(msg), p, "invalid_value");
}

Status rangeError(const Path& p, bool integer, bool above, std::string_view limit,
                  const Json& got) {
  std::string kind = integer ? "integer" : "decimal";
  std::string msg = "Invalid '" + p.str() + "': " + kind +
                    (above ? " above maximum" : " below minimum") + " value. Expected a value " +
                    (above ? "<= " : ">= ") + std::string(limit) + ", but got " + got.dump() +
                    " instead.";
  return fail(std::move(msg), p, kind + (above ? "_above_max_value" : "_below_min_value"));
}

Status emptyArray(const Path& p) {
  return fail("Invalid '" + p.str() +
                  "': empty array. Expected an array with minimum length 1, but got an empty "
                  "array instead.",
              p, "empty_array");
}

std::string numText(double v) {
  Json j = v;
  std::string s = j.dump();
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

// Reads an optional number in [lo, hi]; null leaves `out` unset.
Status getDouble(const Json& j, const Path& p, double lo, double hi, std::optional<double>& out) {
  if (j.is_null()) return {};
  if (!j.is_number()) return typeError(p, "a decimal", j);
  double v = j.get<double>();
  if (!std::isfinite(v) || v > hi) return rangeError(p, false, true, numText(hi), j);
  if (v < lo) return rangeError(p, false, false, numText(lo), j);
  out = v;
  return {};
}

// Reads an optional integer in [lo, hi]; a decimal with an integral value (2.0) counts.
Status getInt(const Json& j, const Path& p, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (j.is_null()) return {};
  int64_t v = 0;
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return rangeError(p, true, true, std::to_string(hi), j);
    v = static_cast<int64_t>(u);
  } else if (j.is_number_integer()) {
    v = j.get<int64_t>();
  } else if (j.is_number_float()) {
    double d = j.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d) return typeError(p, "an integer", j);
    if (d >= 9.2e18) return rangeError(p, true, true, std::to_string(hi), j);
    if (d <= -9.2e18) return rangeError(p, true, false, std::to_string(lo), j);
    v = static_cast<int64_t>(d);
  } else {
    return typeError(p, "an integer", j);
  }
  if (v > hi) return rangeError(p, true, true, std::to_string(hi), j);
  if (v < lo) return rangeError(p, true, false, std::to_string(lo), j);
  out = v;
  return {};
}

Status getBool(const Json& j, const Path& p, std::optional<bool>& out) {
  if (j.is_null()) return {};
  if (!j.is_boolean()) return typeError(p, "a boolean", j);
  out = j.get<bool>();
  return {};
}

// Moves an optional string out of `j`; null leaves `out` untouched.
Status takeString(Json& j, const Path& p, std::string& out) {
  if (j.is_null()) return {};
  if (!j.is_string()) return typeError(p, "a string", j);
  out = std::move(j.get_ref<std::string&>());
  return {};
}

// The member `key` of object `obj`, or nullptr when absent or null.
Json* member(Json& obj, std::string_view key) {
  auto& o = obj.get_ref<Json::object_t&>();
  auto it = o.find(key);
  if (it == o.end() || it->second.is_null()) return nullptr;
  return &it->second;
}

// Reads a required string member.
Status requireString(Json& obj, const Path& parent, std::string_view key, std::string& out) {
  Path p = parent.field(key);
  Json* v = member(obj, key);
  if (v == nullptr) return missingParam(p);
  if (!v->is_string()) return typeError(p, "a string", *v);
  out = std::move(v->get_ref<std::string&>());
  return {};
}

// ---- messages ----------------------------------------------------------------------------

std::optional<Role> roleOf(std::string_view s) {
  if (s == "system") return Role::kSystem;
  if (s == "developer") return Role::kDeveloper;
  if (s == "user") return Role::kUser;
  if (s == "assistant") return Role::kAssistant;
  if (s == "tool") return Role::kTool;
  if (s == "function") return Role::kFunction;
  return std::nullopt;
}

Status parsePart(Json& j, const Path& p, Role role, ContentPart& part) {
  if (!j.is_object()) return typeError(p, "an object", j);
  // Read, not moved: input_audio and file parts are kept whole, "type" included.
  Path tp = p.field("type");
  const Json* type_value = member(j, "type");
  if (type_value == nullptr) return missingParam(tp);
  if (!type_value->is_string()) return typeError(tp, "a string", *type_value);
  std::string type = type_value->get<std::string>();
  bool user = role == Role::kUser;
  bool assistant = role == Role::kAssistant;
  if (type == "text") {
    part.type = ContentPart::Type::kText;
    return requireString(j, p, "text", part.text);
  }
  if (type == "image_url" && user) {
    part.type = ContentPart::Type::kImageUrl;
    Path ip = p.field("image_url");
    Json* img = member(j, "image_url");
    if (img == nullptr) return missingParam(ip);
    if (!img->is_object()) return typeError(ip, "an object", *img);
    if (Status s = requireString(*img, ip, "url", part.image_url); !s.ok()) return s;
    if (Json* d = member(*img, "detail")) {
      Path dp = ip.field("detail");
      if (!d->is_string()) return typeError(dp, "a string", *d);
      const std::string& detail = d->get_ref<const std::string&>();
      if (detail != "auto" && detail != "low" && detail != "high") {
        return invalidValue(dp, detail, {"auto", "low", "high"});
      }
      part.image_detail = detail;
    }
    return {};
  }
  if ((type == "input_audio" || type == "file") && user) {
    part.type = type == "file" ? ContentPart::Type::kFile : ContentPart::Type::kInputAudio;
    Path bp = p.field(type);
    Json* inner = member(j, type);
    if (inner == nullptr) return missingParam(bp);
    if (!inner->is_object()) return typeError(bp, "an object", *inner);
    part.raw = std::move(j);
    return {};
  }
  if (type == "refusal" && assistant) {
    part.type = ContentPart::Type::kRefusal;
    return requireString(j, p, "refusal", part.text);
  }
  if (user) return invalidValue(tp, type, {"text", "image_url", "input_audio", "file"});
  if (assistant) return invalidValue(tp, type, {"text", "refusal"});
  return invalidValue(tp, type, {"text"});
}

Status parseContent(Json& j, const Path& p, Role role, Content& c) {
  if (j.is_string()) {
    c.kind = Content::Kind::kText;
    c.text = std::move(j.get_ref<std::string&>());
    return {};
  }
  if (j.is_array()) {
    auto& arr = j.get_ref<Json::array_t&>();
    if (arr.empty()) return emptyArray(p);
    if (role == Role::kFunction) return typeError(p, "a string", j);
    c.kind = Content::Kind::kParts;
    c.parts.resize(arr.size());
    for (size_t i = 0; i < arr.size(); ++i) {
      if (Status s = parsePart(arr[i], p.at(i), role, c.parts[i]); !s.ok()) return s;
    }
    return {};
  }
  if (j.is_null() && (role == Role::kAssistant || role == Role::kFunction)) return {};
  return typeError(p, "one of a string or array of objects", j);
}

Status parseToolCalls(Json& j, const Path& p, std::vector<ToolCall>& out) {
  if (!j.is_array()) return typeError(p, "an array", j);
  auto& arr = j.get_ref<Json::array_t&>();
  if (arr.empty()) return emptyArray(p);
  out.resize(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    Path cp = p.at(i);
    Json& call = arr[i];
    if (!call.is_object()) return typeError(cp, "an object", call);
    if (Status s = requireString(call, cp, "id", out[i].id); !s.ok()) return s;
    if (Json* t = member(call, "type")) {
      if (!t->is_string()) return typeError(cp.field("type"), "a string", *t);
      if (t->get_ref<const std::string&>() != "function") {
        return invalidValue(cp.field("type"), t->get_ref<const std::string&>(), {"function"});
      }
    }
    Path fp = cp.field("function");
    Json* fn = member(call, "function");
    if (fn == nullptr) return missingParam(fp);
    if (!fn->is_object()) return typeError(fp, "an object", *fn);
    if (Status s = requireString(*fn, fp, "name", out[i].name); !s.ok()) return s;
    if (Status s = requireString(*fn, fp, "arguments", out[i].arguments); !s.ok()) return s;
  }
  return {};
}

Status parseMessage(Json& j, const Path& p, Message& m) {
  if (!j.is_object()) return typeError(p, "an object", j);
  Path rp = p.field("role");
  Json* role = member(j, "role");
  if (role == nullptr) return missingParam(rp);
  if (!role->is_string()) return typeError(rp, "a string", *role);
  std::optional<Role> r = roleOf(role->get_ref<const std::string&>());
  if (!r) {
    return invalidValue(rp, role->get_ref<const std::string&>(),
                        {"system", "assistant", "user", "function", "tool", "developer"});
  }
  m.role = *r;

  if (Json* name = member(j, "name")) {
    if (Status s = takeString(*name, p.field("name"), m.name); !s.ok()) return s;
  }
  if (m.role == Role::kFunction && m.name.empty()) return missingParam(p.field("name"));

  Path cp = p.field("content");
  auto& obj = j.get_ref<Json::object_t&>();
  auto content = obj.find("content");
  if (content == obj.end()) {
    if (m.role != Role::kAssistant) return missingParam(cp);
  } else if (Status s = parseContent(content->second, cp, m.role, m.content); !s.ok()) {
    return s;
  }

  if (m.role == Role::kTool) {
    return requireString(j, p, "tool_call_id", m.tool_call_id);
  }
  if (m.role != Role::kAssistant) return {};

  if (Json* calls = member(j, "tool_calls")) {
    if (Status s = parseToolCalls(*calls, p.field("tool_calls"), m.tool_calls); !s.ok()) return s;
  }
  if (Json* refusal = member(j, "refusal")) {
    std::string text;
    if (Status s = takeString(*refusal, p.field("refusal"), text); !s.ok()) return s;
    m.refusal = std::move(text);
  }
  if (m.content.isNull() && m.tool_calls.empty() && !m.refusal) {
    return fail("Invalid value for '" + cp.str() +
                    "': an assistant message must have 'content' unless it has 'tool_calls'.",
                cp, "missing_required_parameter");
  }
  return {};
}

// ---- tools and formats -------------------------------------------------------------------

bool validFunctionName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

Status parseTools(Json& j, const Path& p, std::vector<Tool>& out) {
  if (!j.is_array()) return typeError(p, "an array", j);
  auto& arr = j.get_ref<Json::array_t&>();
  if (arr.empty()) return emptyArray(p);
  out.resize(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    Path tp = p.at(i);
    Json& tool = arr[i];
    Tool& t = out[i];
    if (!tool.is_object()) return typeError(tp, "an object", tool);
    if (Status s = requireString(tool, tp, "type", t.type); !s.ok()) return s;
    if (t.type != "function") return invalidValue(tp.field("type"), t.type, {"function"});
    Path fp = tp.field("function");
    Json* fn = member(tool, "function");
    if (fn == nullptr) return missingParam(fp);
    if (!fn->is_object()) return typeError(fp, "an object", *fn);
    if (Status s = requireString(*fn, fp, "name", t.name); !s.ok()) return s;
    if (!validFunctionName(t.name)) {
      Path np = fp.field("name");
      return fail("Invalid '" + np.str() +
                      "': string does not match pattern. Expected a string of 1 to 64 "
                      "characters that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                  np, "invalid_value");
    }
    if (Json* d = member(*fn, "description")) {
      if (Status s = takeString(*d, fp.field("description"), t.description); !s.ok()) return s;
    }
    if (Json* params = member(*fn, "parameters")) {
      if (!params->is_object()) return typeError(fp.field("parameters"), "an object", *params);
      t.parameters = std::move(*params);
    }
    if (Json* strict = member(*fn, "strict")) {
      if (Status s = getBool(*strict, fp.field("strict"), t.strict); !s.ok()) return s;
    }
  }
  return {};
}

Status parseToolChoice(Json& j, const Path& p, std::optional<ToolChoice>& out) {
  ToolChoice tc;
  if (j.is_string()) {
    const std::string& mode = j.get_ref<const std::string&>();
    if (mode == "none") {
      tc.mode = ToolChoice::Mode::kNone;
    } else if (mode == "auto") {
      tc.mode = ToolChoice::Mode::kAuto;
    } else if (mode == "required") {
      tc.mode = ToolChoice::Mode::kRequired;
    } else {
      return invalidValue(p, mode, {"none", "auto", "required"});
    }
    out = std::move(tc);
    return {};
  }
  if (!j.is_object()) return typeError(p, "one of a string or object", j);
  std::string type;
  if (Status s = requireString(j, p, "type", type); !s.ok()) return s;
  if (type != "function") return invalidValue(p.field("type"), type, {"function"});
  Path fp = p.field("function");
  Json* fn = member(j, "function");
  if (fn == nullptr) return missingParam(fp);
  if (!fn->is_object()) return typeError(fp, "an object", *fn);
  if (Status s = requireString(*fn, fp, "name", tc.function_name); !s.ok()) return s;
  tc.mode = ToolChoice::Mode::kFunction;
  out = std::move(tc);
  return {};
}

Status parseResponseFormat(Json& j, const Path& p, std::optional<ResponseFormat>& out) {
  if (!j.is_object()) return typeError(p, "an object", j);
  std::string type;
  if (Status s = requireString(j, p, "type", type); !s.ok()) return s;
  ResponseFormat rf;
  if (type == "text") {
    rf.type = ResponseFormat::Type::kText;
  } else if (type == "json_object") {
    rf.type = ResponseFormat::Type::kJsonObject;
  } else if (type == "json_schema") {
    rf.type = ResponseFormat::Type::kJsonSchema;
    Path sp = p.field("json_schema");
    Json* schema = member(j, "json_schema");
    if (schema == nullptr) return missingParam(sp);
    if (!schema->is_object()) return typeError(sp, "an object", *schema);
    std::string name;
    if (Status s = requireString(*schema, sp, "name", name); !s.ok()) return s;
    (*schema)["name"] = std::move(name);
    if (Json* body = member(*schema, "schema"); body != nullptr && !body->is_object()) {
      return typeError(sp.field("schema"), "an object", *body);
    }
    rf.json_schema = std::move(*schema);
  } else {
    return invalidValue(p.field("type"), type, {"text", "json_object", "json_schema"});
  }
  out = std::move(rf);
  return {};
}

Status parseStop(Json& j, const Path& p, std::vector<std::string>& out) {
  if (j.is_string()) {
    out.push_back(std::move(j.get_ref<std::string&>()));
    return {};
  }
  if (!j.is_array()) return typeError(p, "one of a string or array of strings", j);
  auto& arr = j.get_ref<Json::array_t&>();
  if (arr.size() > 4) {
    return fail("Invalid '" + p.str() +
                    "': array too long. Expected an array with maximum length 4, but got an "
                    "array with length " +
                    std::to_string(arr.size()) + " instead.",
                p, "array_above_max_length");
  }
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) return typeError(p.at(i), "a string", arr[i]);
    out.push_back(std::move(arr[i].get_ref<std::string&>()));
  }
  return {};
}

Status parseLogitBias(const Json& j, const Path& p, std::vector<std::pair<int32_t, double>>& out) {
  if (!j.is_object()) return typeError(p, "an object", j);
  out.reserve(j.size());
  for (const auto& [key, value] : j.items()) {
    int64_t id = 0;
    bool ok = !key.empty() && key.size() <= 10;  // 10 digits never overflow int64_t
    for (char c : key) {
      if (!ok || c < '0' || c > '9') {
        ok = false;
        break;
      }
      id = id * 10 + (c - '0');
    }
    if (!ok || id > std::numeric_limits<int32_t>::max()) {
      return fail("Invalid key in '" + p.str() + "': " + clip(key) +
                      ". You should only be submitting non-negative integers.",
                  p, "invalid_value");
    }
    if (!value.is_number()) return typeError(p, "a number for each token", value);
    double bias = value.get<double>();
    if (!(bias >= -100 && bias <= 100)) {
      return fail("Invalid value for '" + p.str() + "': using bias of " + value.dump() +
                      " for token " + key + ". Expected a value between -100 and 100.",
                  p, "invalid_value");
    }
    out.emplace_back(static_cast<int32_t>(id), bias);
  }
  return {};
}

Status parseMetadata(Json& j, const Path& p, std::map<std::string, std::string>& out) {
  if (!j.is_object()) return typeError(p, "an object", j);
  auto& obj = j.get_ref<Json::object_t&>();
  if (obj.size() > 16) {
    return fail("Invalid '" + p.str() +
                    "': too many properties. Expected an object with at most 16 properties, "
                    "but got an object with " +
                    std::to_string(obj.size()) + " properties instead.",
                p, "object_above_max_properties");
  }
  for (auto& [key, value] : obj) {
    Path kp = p.field(key);
    if (key.size() > 64) {
      return fail("Invalid '" + p.str() + "': keys may be at most 64 characters long.", kp,
                  "invalid_value");
    }
    if (!value.is_string()) return typeError(kp, "a string", value);
    if (value.get_ref<const std::string&>().size() > 512) {
      return fail("Invalid '" + kp.str() +
                      "': string too long. Expected a string with maximum "
                      "length 512.",
                  kp, "string_above_max_length");
    }
    out.emplace(key, std::move(value.get_ref<std::string&>()));
  }
  return {};
}

// ---- the request -------------------------------------------------------------------------

enum class Field {
  kModel,
  kMessages,
  kTemperature,
  kTopP,
  kN,
  kMaxTokens,
  kMaxCompletionTokens,
  kStop,
  kSeed,
  kPresencePenalty,
  kFrequencyPenalty,
  kLogitBias,
  kLogprobs,
  kTopLogprobs,
  kResponseFormat,
  kTools,
  kToolChoice,
  kParallelToolCalls,
  kUser,
  kMetadata,
  kStream,
  kStreamOptions,
  kRepetitionPenalty,
  kChatTemplateKwargs,
};

// vLLM's repetition_penalty: any finite number above 0 (1 leaves the logits alone).
Status parseRepetitionPenalty(const Json& v, const Path& p, std::optional<double>& out) {
  if (v.is_null()) return {};
  if (!v.is_number()) return typeError(p, "a decimal", v);
  double d = v.get<double>();
  if (!std::isfinite(d) || d <= 0) {
    return Status(
        ErrorCode::kInvalidRequest,
        "Invalid 'repetition_penalty': must be a number greater than 0, got " + v.dump() + ".",
        "repetition_penalty", "invalid_value");
  }
  out = d;
  return {};
}

std::optional<Field> fieldOf(std::string_view key) {
  static const auto* const kFields = new std::unordered_map<std::string_view, Field>{
      {"model", Field::kModel},
      {"messages", Field::kMessages},
      {"temperature", Field::kTemperature},
      {"top_p", Field::kTopP},
      {"n", Field::kN},
      {"max_tokens", Field::kMaxTokens},
      {"max_completion_tokens", Field::kMaxCompletionTokens},
      {"stop", Field::kStop},
      {"seed", Field::kSeed},
      {"presence_penalty", Field::kPresencePenalty},
      {"frequency_penalty", Field::kFrequencyPenalty},
      {"logit_bias", Field::kLogitBias},
      {"logprobs", Field::kLogprobs},
      {"top_logprobs", Field::kTopLogprobs},
      {"response_format", Field::kResponseFormat},
      {"tools", Field::kTools},
      {"tool_choice", Field::kToolChoice},
      {"parallel_tool_calls", Field::kParallelToolCalls},
      {"user", Field::kUser},
      {"metadata", Field::kMetadata},
      {"stream", Field::kStream},
      {"stream_options", Field::kStreamOptions},
      {"repetition_penalty", Field::kRepetitionPenalty},
      {"chat_template_kwargs", Field::kChatTemplateKwargs},
  };
  auto it = kFields->find(key);
  if (it == kFields->end()) return std::nullopt;
  return it->second;
}

// `messages`: a non-empty array of messages (null is reported as missing by the caller).
Status parseMessages(Json& v, const Path& p, std::vector<Message>& out) {
  if (v.is_null()) return {};
  if (!v.is_array()) return typeError(p, "an array", v);
  auto& arr = v.get_ref<Json::array_t&>();
  if (arr.empty()) return emptyArray(p);
  out.resize(arr.size());
  for (size_t k = 0; k < arr.size(); ++k) {
    if (Status s = parseMessage(arr[k], p.at(k), out[k]); !s.ok()) return s;
  }
  return {};
}

Status parseField(Field f, Json& v, const Path& p, ChatRequest& req, const Json*& stream_options) {
  std::optional<int64_t> i;
  std::optional<bool> b;
  Status s;
  switch (f) {
    case Field::kModel:
      return takeString(v, p, req.model);
    case Field::kMessages:
      return parseMessages(v, p, req.messages);
    case Field::kTemperature:
      return getDouble(v, p, 0, 2, req.temperature);
    case Field::kTopP:
      return getDouble(v, p, 0, 1, req.top_p);
    case Field::kN:
      s = getInt(v, p, 1, 128, i);
      if (i) req.n = static_cast<int>(*i);
      return s;
    case Field::kMaxTokens:
      return getInt(v, p, 1, std::numeric_limits<int64_t>::max(), req.max_tokens);
    case Field::kMaxCompletionTokens:
      return getInt(v, p, 1, std::numeric_limits<int64_t>::max(), req.max_completion_tokens);
    case Field::kStop:
      if (v.is_null()) return {};
      return parseStop(v, p, req.stop);
    case Field::kSeed:
      return getInt(v, p, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                    req.seed);
    case Field::kPresencePenalty:
      return getDouble(v, p, -2, 2, req.presence_penalty);
    case Field::kFrequencyPenalty:
      return getDouble(v, p, -2, 2, req.frequency_penalty);
    case Field::kLogitBias:
      if (v.is_null()) return {};
      return parseLogitBias(v, p, req.logit_bias);
    case Field::kLogprobs:
      s = getBool(v, p, b);
      req.logprobs = b.value_or(false);
      return s;
    case Field::kTopLogprobs:
      s = getInt(v, p, 0, 20, i);
      if (i) req.top_logprobs = static_cast<int>(*i);
      return s;
    case Field::kResponseFormat:
      if (v.is_null()) return {};
      return parseResponseFormat(v, p, req.response_format);
    case Field::kTools:
      if (v.is_null()) return {};
      return parseTools(v, p, req.tools);
    case Field::kToolChoice:
      if (v.is_null()) return {};
      return parseToolChoice(v, p, req.tool_choice);
    case Field::kParallelToolCalls:
      return getBool(v, p, req.parallel_tool_calls);
    case Field::kUser:
      return takeString(v, p, req.user);
    case Field::kMetadata:
      if (v.is_null()) return {};
      return parseMetadata(v, p, req.metadata);
    case Field::kStream:
      s = getBool(v, p, b);
      req.stream = b.value_or(false);
      return s;
    case Field::kStreamOptions:
      if (v.is_null()) return {};
      if (!v.is_object()) return typeError(p, "an object", v);
      stream_options = &v;
      return {};
    case Field::kRepetitionPenalty:
      return parseRepetitionPenalty(v, p, req.repetition_penalty);
    case Field::kChatTemplateKwargs:
      if (v.is_null()) return {};
      if (!v.is_object()) return typeError(p, "an object", v);
      req.chat_template_kwargs = std::move(v);
      return {};
  }
  return {};
}

StatusOr<ChatRequest> parseRequest(std::string_view body) {
  auto parsed = parseBoundedJson(body);
  if (!parsed.ok()) return parsed.status();
  Json& root = *parsed;
  if (!root.is_object()) {
    return Status(ErrorCode::kInvalidRequest,
                  "Invalid type for the request body: expected an object, but got " +
                      std::string(describeJsonType(root)) + " instead.",
                  {}, "invalid_type");
  }

  ChatRequest req;
  const Json* stream_options = nullptr;
  bool saw_messages = false;
  auto& extra = req.extra.get_ref<Json::object_t&>();
  for (auto& [key, value] : root.get_ref<Json::object_t&>()) {
    std::optional<Field> f = fieldOf(key);
    if (!f) {
      extra.emplace(key, std::move(value));
      continue;
    }
    if (*f == Field::kMessages && !value.is_null()) saw_messages = true;
    Path p{nullptr, key};
    if (Status s = parseField(*f, value, p, req, stream_options); !s.ok()) return s;
  }

  if (req.model.empty()) {
    return Status(ErrorCode::kInvalidRequest, "you must provide a model parameter", "model",
                  "missing_required_parameter");
  }
  if (!saw_messages) return missingParam(Path{nullptr, "messages"});
  if (req.top_logprobs && !req.logprobs) {
    return Status(ErrorCode::kInvalidRequest,
                  "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                  "'top_logprobs' is used.",
                  "top_logprobs", "invalid_value");
  }
  if (stream_options != nullptr) {
    if (!req.stream) {
      return Status(ErrorCode::kInvalidRequest,
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "stream_options", "invalid_value");
    }
    auto it = stream_options->find("include_usage");
    if (it != stream_options->end() && !it->is_null()) {
      Path sp{nullptr, "stream_options"};
      if (!it->is_boolean()) return typeError(sp.field("include_usage"), "a boolean", *it);
      req.include_usage = it->get<bool>();
    }
  }
  if (req.tool_choice && req.tool_choice->mode != ToolChoice::Mode::kNone && req.tools.empty()) {
    return Status(ErrorCode::kInvalidRequest,
                  "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                  "are specified.",
                  "tool_choice", "invalid_value");
  }
  attachSchemaKeyOrders(body, "/response_format/json_schema/schema",
                        "/tools/*/function/parameters", req);
  return req;
}

}  // namespace

std::string_view describeJsonType(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a decimal";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

Status checkJsonBounds(std::string_view text, JsonBounds bounds) {
  // One pass over the bytes: strings are skipped with memchr; every '[' '{' ',' ':' outside
  // them starts a value (or a member), which bounds the size of the tree a parse would build.
  int depth = 0;
  int64_t values = 1;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    char c = *p++;
    if (c == '"') {
      // Find the closing quote: the first one preceded by an even run of backslashes.
      for (;;) {
        const void* q = std::memchr(p, '"', static_cast<size_t>(end - p));
        if (q == nullptr) return Status();  // unterminated: the parser reports it
        const char* quote = static_cast<const char*>(q);
        size_t slashes = 0;
        for (const char* b = quote; b > p && b[-1] == '\\'; --b) ++slashes;
        p = quote + 1;
        if (slashes % 2 == 0) break;
      }
      continue;
    }
    if (c == '[' || c == '{') {
      if (++depth > bounds.max_depth) {
        return Status(ErrorCode::kInvalidRequest,
                      "Invalid JSON body: objects and arrays may nest at most " +
                          std::to_string(bounds.max_depth) + " levels deep.");
      }
    } else if (c == ']' || c == '}') {
      --depth;
      continue;
    } else if (c == '\0') {
      // JSON text has no NUL byte; the parser would take one as the end of the input and
      // accept whatever follows, so the body we pass on could differ from the one we read.
      return Status(ErrorCode::kInvalidRequest,
                    "Invalid JSON body: a NUL byte at offset " +
                        std::to_string(p - 1 - text.data()) + ".");
    } else if (c != ',' && c != ':') {
      continue;
    }
    if (++values > bounds.max_values) {
      return Status(ErrorCode::kInvalidRequest,
                    "Invalid JSON body: more than " + std::to_string(bounds.max_values) +
                        " values (objects, arrays, members and elements together).");
    }
  }
  return Status();
}

StatusOr<Json> parseBoundedJson(std::string_view text, JsonBounds bounds) {
  if (Status st = checkJsonBounds(text, bounds); !st.ok()) return st;
  Json root = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Status(ErrorCode::kInvalidRequest, std::string(kUnparsableBody));
  return root;
}

StatusOr<ChatRequest> parseChatRequest(std::string_view body) {
  try {
    return parseRequest(body);
  } catch (const std::exception& e) {
    // Only a bug or memory exhaustion gets here; the client still gets a clean error.
    return Status(ErrorCode::kInternal, std::string("failed to read the request: ") + e.what());
  }
}

}  // namespace api
