#include "api/responses.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "api/json_text.h"
#include "api/openai_json.h"
#include "api/saturating.h"
#include "api/sse.h"

namespace api {
namespace {

using OJson = nlohmann::ordered_json;

Status bad(std::string message, std::string param) {
  return Status(ErrorCode::kInvalidRequest, std::move(message), std::move(param));
}
Status typeError(const std::string& param, std::string_view expected, const Json& got) {
  return Status(ErrorCode::kInvalidRequest,
                "Invalid type for '" + param + "': expected " + std::string(expected) +
                    ", but got " + std::string(describeJsonType(got)) + " instead.",
                param, "invalid_type");
}
Status missing(const std::string& param) {
  return Status(ErrorCode::kInvalidRequest, "Missing required parameter: '" + param + "'.", param,
                "missing_required_parameter");
}
std::string idx(const std::string& p, size_t i) { return p + "[" + std::to_string(i) + "]"; }

Status str(const Json& obj, const char* key, const std::string& path, std::string& out,
           bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return required ? missing(path + "." + key) : Status();
  if (!it->is_string()) return typeError(path + "." + key, "a string", *it);
  out = it->get<std::string>();
  return {};
}

// One content part of an input message.
Status readPart(const Json& part, const std::string& path, std::vector<ContentPart>& out,
                Json& extra) {
  if (!part.is_object()) return typeError(path, "an object", part);
  std::string type;
  if (Status s = str(part, "type", path, type); !s.ok()) return s;
  ContentPart p;
  if (type == "input_text" || type == "output_text" || type == "text") {
    if (Status s = str(part, "text", path, p.text); !s.ok()) return s;
  } else if (type == "input_image" && !part.contains("image_url") && part.contains("file_id")) {
    // An image uploaded to OpenAI's Files API: only the Responses API can read it.
    extra[path] = part;
    return {};
  } else if (type == "input_image") {
    p.type = ContentPart::Type::kImageUrl;
    if (Status s = str(part, "image_url", path, p.image_url); !s.ok()) return s;
    if (Status s = str(part, "detail", path, p.image_detail, false); !s.ok()) return s;
  } else {
    // input_file, input_audio, a part added later: the Responses API's own.
    extra[path] = part;
    return {};
  }
  out.push_back(std::move(p));
  return {};
}

Status readMessageItem(const Json& item, const std::string& path, std::vector<Message>& out,
                       Json& extra) {
  std::string role;
  if (Status s = str(item, "role", path, role); !s.ok()) return s;
  Message m;
  if (role == "user") m.role = Role::kUser;
  else if (role == "assistant") m.role = Role::kAssistant;
  else if (role == "system") m.role = Role::kSystem;
  else if (role == "developer") m.role = Role::kDeveloper;
  else return bad("Invalid value: '" + role + "'.", path + ".role");
  auto content = item.find("content");
  if (content == item.end()) return missing(path + ".content");
  if (content->is_string()) {
    m.content = Content::ofText(content->get<std::string>());
  } else if (content->is_array()) {
    m.content.kind = Content::Kind::kParts;
    for (size_t i = 0; i < content->size(); ++i) {
      if (Status s = readPart((*content)[i], idx(path + ".content", i), m.content.parts, extra);
          !s.ok()) {
        return s;
      }
    }
  } else {
    return typeError(path + ".content", "a string or an array", *content);
  }
  out.push_back(std::move(m));
  return {};
}

// One input item: a message, a function call (joined to the assistant turn before it) or a
// function call's output.
Status readItem(const Json& item, const std::string& path, ChatRequest& req) {
  std::vector<Message>& out = req.messages;
  if (!item.is_object()) return typeError(path, "an object", item);
  std::string type = "message";
  if (Status s = str(item, "type", path, type, false); !s.ok()) return s;
  if (!item.contains("type") && !item.contains("role") && item.contains("id")) {
    // An item reference may leave its type out; it is kept typed (the body goes as it came).
    Json ref = item;
    ref["type"] = "item_reference";
    req.extra[path] = std::move(ref);
    return {};
  }
  if (type == "message") return readMessageItem(item, path, out, req.extra);
  if (type == "function_call") {
    ToolCall call;
    if (Status s = str(item, "call_id", path, call.id); !s.ok()) return s;
    if (Status s = str(item, "name", path, call.name); !s.ok()) return s;
    if (Status s = str(item, "arguments", path, call.arguments); !s.ok()) return s;
    if (out.empty() || out.back().role != Role::kAssistant) {
      Message m;
      m.role = Role::kAssistant;
      out.push_back(std::move(m));
    }
    out.back().tool_calls.push_back(std::move(call));
    return {};
  }
  if (type == "function_call_output" && item.contains("output") && item["output"].is_array()) {
    // An output of content parts (text, images, files): the Responses API's own.
    req.extra[path] = item;
    return {};
  }
  if (type == "function_call_output") {
    Message m;
    m.role = Role::kTool;
    if (Status s = str(item, "call_id", path, m.tool_call_id); !s.ok()) return s;
    std::string output;
    if (Status s = str(item, "output", path, output); !s.ok()) return s;
    m.content = Content::ofText(std::move(output));
    out.push_back(std::move(m));
    return {};
  }
  // Reasoning and a server tool's own work (web or file search) are the upstream's: the
  // Responses API takes them back as they came; a translation leaves them out, as the answer
  // that followed them is in the conversation.
  if (type == "reasoning" || type == "web_search_call" || type == "file_search_call") return {};
  // Another item type (computer calls, MCP items, item references, ...): only the Responses
  // API itself carries it; a translating target refuses the request naming it.
  req.extra[path] = item;
  return {};
}

Status readTools(const Json& v, ChatRequest& req) {
  if (!v.is_array()) return typeError("tools", "an array", v);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = idx("tools", i);
    const Json& t = v[i];
    if (!t.is_object()) return typeError(p, "an object", t);
    std::string type;
    if (Status s = str(t, "type", p, type); !s.ok()) return s;
    if (type != "function") {
      // A built-in tool (web_search, file_search, ...): only the Responses API runs it.
      req.extra[p] = t;
      continue;
    }
    Tool tool;
    if (Status s = str(t, "name", p, tool.name); !s.ok()) return s;
    if (Status s = str(t, "description", p, tool.description, false); !s.ok()) return s;
    tool.parameters = t.value("parameters", Json());
    if (!tool.parameters.is_null() && !tool.parameters.is_object()) {
      return typeError(p + ".parameters", "an object", tool.parameters);
    }
    if (t.contains("strict") && t["strict"].is_boolean()) tool.strict = t["strict"].get<bool>();
    req.tools.push_back(std::move(tool));
  }
  return {};
}

Status readToolChoice(const Json& v, ChatRequest& req) {
  ToolChoice c;
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "auto") c.mode = ToolChoice::Mode::kAuto;
    else if (s == "none") c.mode = ToolChoice::Mode::kNone;
    else if (s == "required") c.mode = ToolChoice::Mode::kRequired;
    else return bad("Invalid value: '" + s + "'.", "tool_choice");
  } else if (v.is_object()) {
    std::string type;
    if (Status s = str(v, "type", "tool_choice", type); !s.ok()) return s;
    if (type != "function") return bad("Invalid value: '" + type + "'.", "tool_choice.type");
    c.mode = ToolChoice::Mode::kFunction;
    if (Status s = str(v, "name", "tool_choice", c.function_name); !s.ok()) return s;
  } else {
    return bad("Invalid value for 'tool_choice'.", "tool_choice");
  }
  req.tool_choice = c;
  return {};
}

Status readTextFormat(const Json& v, ChatRequest& req) {
  if (!v.is_object()) return typeError("text", "an object", v);
  auto format = v.find("format");
  if (format == v.end() || format->is_null()) return {};
  if (!format->is_object()) return typeError("text.format", "an object", *format);
  std::string type;
  if (Status s = str(*format, "type", "text.format", type); !s.ok()) return s;
  ResponseFormat rf;
  if (type == "text") return {};
  if (type == "json_object") {
    rf.type = ResponseFormat::Type::kJsonObject;
  } else if (type == "json_schema") {
    rf.type = ResponseFormat::Type::kJsonSchema;
    Json schema = *format;
    schema.erase("type");
    if (!schema.contains("name")) return missing("text.format.name");
    if (!schema.contains("schema")) return missing("text.format.schema");
    rf.json_schema = std::move(schema);
  } else {
    return bad("Invalid value: '" + type + "'.", "text.format.type");
  }
  req.response_format = std::move(rf);
  return {};
}

Status number(const Json& v, const char* key, double lo, double hi, std::optional<double>& out) {
  if (v.is_null()) return {};
  if (!v.is_number()) return typeError(key, "a decimal", v);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    return bad("Invalid value for '" + std::string(key) + "'.", key);
  }
  out = d;
  return {};
}

Status readInput(const Json& v, ChatRequest& req) {
  if (v.is_string()) {
    Message m;
    m.content = Content::ofText(v.get<std::string>());
    req.messages.push_back(std::move(m));
    return {};
  }
  if (!v.is_array()) return typeError("input", "a string or an array", v);
  for (size_t i = 0; i < v.size(); ++i) {
    if (Status s = readItem(v[i], idx("input", i), req); !s.ok()) return s;
  }
  return {};
}

Status readField(const std::string& key, const Json& v, ChatRequest& req) {
  if (key == "model") {
    if (!v.is_string()) return typeError("model", "a string", v);
    req.model = v.get<std::string>();
    return {};
  }
  if (key == "input" || key == "instructions") return {};  // read first, in their order
  if (v.is_null()) return {};
  if (key == "service_tier" || key == "prompt_cache_key" || key == "safety_identifier") {
    if (!v.is_string()) return typeError(key, "a string", v);
  }
  if (key == "tools") return readTools(v, req);
  if (key == "tool_choice") return readToolChoice(v, req);
  if (key == "text") return readTextFormat(v, req);
  if (key == "temperature") return number(v, "temperature", 0, 2, req.temperature);
  if (key == "top_p") return number(v, "top_p", 0, 1, req.top_p);
  if (key == "max_output_tokens") {
    if (!v.is_number_integer() || v.get<int64_t>() < 1) {
      return bad("Invalid 'max_output_tokens': expected an integer of at least 1.",
                 "max_output_tokens");
    }
    req.max_completion_tokens = v.get<int64_t>();
    return {};
  }
  if (key == "stream" || key == "store" || key == "parallel_tool_calls" || key == "background") {
    if (!v.is_boolean()) return typeError(key, "a boolean", v);
    if (key == "stream") req.stream = v.get<bool>();
    if (key == "parallel_tool_calls") req.parallel_tool_calls = v.get<bool>();
    return {};
  }
  if (key == "reasoning") {
    if (!v.is_object()) return typeError("reasoning", "an object", v);
    if (auto e = v.find("effort"); e != v.end() && !e->is_null()) req.extra["reasoning_effort"] = *e;
    return {};
  }
  if (key == "metadata") {
    if (!v.is_object()) return typeError("metadata", "an object", v);
    for (const auto& [k, value] : v.items()) {
      if (!value.is_string()) return typeError("metadata." + k, "a string", value);
      req.metadata[k] = value.get<std::string>();
    }
    return {};
  }
  if (key == "user") {
    if (!v.is_string()) return typeError("user", "a string", v);
    req.user = v.get<std::string>();
    return {};
  }
  if (key == "include" || key == "truncation") return {};
  if (key == "previous_response_id") {
    // The gateway replaces it by the stored conversation (inputItems) before parsing.
    return bad("'previous_response_id' cannot be read here: the stored conversation is "
               "prepended by the gateway.",
               "previous_response_id");
  }
  // A field the typed request does not model (service_tier, prompt_cache_key,
  // safety_identifier, a field added later): kept for the Responses API, refused by a
  // translation (refuseUntranslated).
  req.extra[key] = v;
  return {};
}

}  // namespace

Status refuseUntranslated(const ChatRequest& request) {
  if (request.native_api != kResponsesApi) return {};
  for (const auto& [key, value] : request.extra.items()) {
    if (key == "reasoning_effort" || value.is_null()) continue;
    std::string what = key.find('[') == std::string::npos ? "'" + key + "'" : key;
    return Status(ErrorCode::kInvalidRequest,
                  what +
                      " is carried by OpenAI's Responses API only; the model's target does "
                      "not speak it.",
                  key);
  }
  return {};
}

namespace {

// The members of a passed-through Response object that are the gateway's (ownedResponse).
std::vector<MemberEdit> ownedMembers(const Json& request, const std::string& id,
                                     const std::string& model) {
  auto store = request.find("store");
  auto previous = request.find("previous_response_id");
  auto background = request.find("background");
  return {{"id", Json(id)},
          {"model", Json(model)},
          {"store", Json(store == request.end() || !store->is_boolean() || store->get<bool>())},
          {"previous_response_id",
           previous != request.end() && previous->is_string() ? *previous : Json()},
          {"background", Json(background != request.end() && background->is_boolean() &&
                              background->get<bool>())}};
}

}  // namespace

StatusOr<std::string> ownedResponse(std::string_view upstream, const Json& request,
                                    const std::string& id, const std::string& model) {
  auto body = editTopLevelMembers(upstream, ownedMembers(request, id, model));
  if (!body.ok()) return Status(ErrorCode::kUpstreamError, body.status().message());
  return body;
}

Json inputItems(const Json& input) {
  if (input.is_string()) {
    return Json::array({Json{{"type", "message"}, {"role", "user"}, {"content", input}}});
  }
  return input.is_array() ? input : Json::array();
}

StatusOr<ChatRequest> parseResponsesRequest(std::string_view body) {
  auto parsed = parseBoundedJson(body);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;
  if (!j.is_object()) return typeError("", "an object", j);
  if (!j.contains("model")) return missing("model");
  if (!j.contains("input")) return missing("input");
  ChatRequest req;
  if (auto ins = j.find("instructions"); ins != j.end() && !ins->is_null()) {
    if (!ins->is_string()) return typeError("instructions", "a string", *ins);
    Message m;
    m.role = Role::kSystem;
    m.content = Content::ofText(ins->get<std::string>());
    req.messages.push_back(std::move(m));
  }
  if (Status s = readInput(j["input"], req); !s.ok()) return s;
  for (const auto& [key, value] : j.items()) {
    if (Status s = readField(key, value, req); !s.ok()) return s;
  }
  if (req.stream) req.include_usage = true;
  attachSchemaKeyOrders(body, "/text/format/schema", "/tools/*/parameters", req);
  req.native_api = std::string(kResponsesApi);
  req.native_body = std::make_shared<const std::string>(body);
  return req;
}

namespace {

OJson usageJson(const std::optional<Usage>& usage) {
  const Usage u = usage.value_or(Usage{});
  return OJson{{"input_tokens", u.prompt_tokens},
               {"input_tokens_details", {{"cached_tokens", u.cached_prompt_tokens}}},
               {"output_tokens", u.completion_tokens},
               {"output_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}},
               {"total_tokens", saturatingAdd(u.prompt_tokens, u.completion_tokens)}};
}

OJson messageItem(const std::string& id, const std::string& text, const char* status) {
  OJson content = OJson::array();
  if (status != std::string_view("in_progress")) {
    content.push_back(OJson{{"type", "output_text"}, {"text", text}, {"annotations", OJson::array()}});
  }
  return OJson{{"id", id},
               {"type", "message"},
               {"status", status},
               {"role", "assistant"},
               {"content", std::move(content)}};
}

OJson callItem(const std::string& id, const std::string& call_id, const std::string& name,
               const std::string& arguments, const char* status) {
  return OJson{{"id", id},          {"type", "function_call"}, {"status", status},
               {"arguments", arguments}, {"call_id", call_id},   {"name", name}};
}

// The Response object around `output`.
OJson responseObject(const Json& request, const std::string& id, const std::string& model,
                     int64_t created_at, std::string_view status, OJson output,
                     const std::optional<Usage>& usage) {
  const bool incomplete = status == "incomplete";
  auto echo = [&](const char* key, OJson fallback) {
    auto it = request.find(key);
    return it == request.end() || it->is_null() ? fallback : OJson::parse(it->dump());
  };
  OJson r = {{"id", id},
             {"object", "response"},
             {"created_at", created_at},
             {"status", status},
             {"background", echo("background", false)},
             {"error", nullptr},
             {"incomplete_details",
              incomplete ? OJson{{"reason", "max_output_tokens"}} : OJson(nullptr)},
             {"instructions", echo("instructions", nullptr)},
             {"max_output_tokens", echo("max_output_tokens", nullptr)},
             {"model", model},
             {"output", std::move(output)},
             {"parallel_tool_calls", echo("parallel_tool_calls", true)},
             {"previous_response_id", echo("previous_response_id", nullptr)},
             {"reasoning", echo("reasoning", OJson{{"effort", nullptr}, {"summary", nullptr}})},
             {"store", echo("store", true)},
             {"temperature", echo("temperature", 1.0)},
             {"text", echo("text", OJson{{"format", {{"type", "text"}}}})},
             {"tool_choice", echo("tool_choice", "auto")},
             {"tools", echo("tools", OJson::array())},
             {"top_p", echo("top_p", 1.0)},
             {"truncation", "disabled"},
             {"usage", status == "in_progress" ? OJson(nullptr) : usageJson(usage)},
             {"user", echo("user", nullptr)},
             {"metadata", echo("metadata", OJson::object())}};
  return r;
}

std::string itemId(const char* prefix, const std::string& response_id, size_t n) {
  return std::string(prefix) + response_id.substr(response_id.find('_') + 1) + "_" +
         std::to_string(n);
}

}  // namespace

std::string serializeResponse(const ChatResponse& r, const Json& request, const std::string& id,
                              const std::string& model, int64_t created_at) {
  OJson output = OJson::array();
  std::string finish;
  if (!r.choices.empty()) {
    const Choice& c = r.choices[0];
    finish = c.finish_reason;
    const std::string text = c.message.content.joinedText();
    if (!text.empty() || c.message.tool_calls.empty()) {
      // A message cut by max_output_tokens is "incomplete", as OpenAI marks it.
      output.push_back(messageItem(itemId("msg_", id, output.size()), text,
                                   finish == "length" ? "incomplete" : "completed"));
    }
    for (const ToolCall& t : c.message.tool_calls) {
      output.push_back(callItem(itemId("fc_", id, output.size()), t.id, t.name, t.arguments,
                                "completed"));
    }
  }
  return responseObject(request, id, model, created_at,
                        finish == "length" ? "incomplete" : "completed", std::move(output),
                        r.usage)
      .dump(-1, ' ', false, Json::error_handler_t::replace);
}

ResponsesStreamWriter::ResponsesStreamWriter(Json request, std::string id, std::string model,
                                             int64_t created_at)
    : request_(std::move(request)),
      id_(std::move(id)),
      model_(std::move(model)),
      created_at_(created_at) {}

std::string ResponsesStreamWriter::event(std::string_view type, Json data) {
  OJson e = {{"type", type}};
  for (auto& [k, v] : data.items()) e[k] = OJson::parse(v.dump());
  e["sequence_number"] = seq_;
  seq_ = saturatingAdd(seq_, 1);  // numbered on from an upstream's own numbers, which may be huge
  std::string out = "event: " + std::string(type) + "\n";
  return out + sseData(e.dump(-1, ' ', false, Json::error_handler_t::replace));
}

std::string ResponsesStreamWriter::start() {
  started_ = true;
  Json r = Json::parse(
      responseObject(request_, id_, model_, created_at_, "in_progress", OJson::array(), {}).dump());
  std::string out = event("response.created", Json{{"response", r}});
  out += event("response.in_progress", Json{{"response", r}});
  return out;
}

std::string ResponsesStreamWriter::openText() {
  std::string out = closeItem();
  const size_t index = output_.size();
  item_ = Json::parse(messageItem(itemId("msg_", id_, index), "", "in_progress").dump());
  item_["text"] = "";  // the text so far (dropped when the item is done)
  Json added = item_;
  added.erase("text");
  out += event("response.output_item.added", Json{{"output_index", index}, {"item", added}});
  Json part = {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}};
  out += event("response.content_part.added", Json{{"item_id", item_["id"]},
                                                   {"output_index", index},
                                                   {"content_index", 0},
                                                   {"part", part}});
  return out;
}

std::string ResponsesStreamWriter::closeItem() {
  if (item_.is_null()) return "";
  const size_t index = output_.size();
  std::string out;
  Json done = item_;
  if (item_["type"] == "message") {
    const std::string text = item_["text"];
    Json part = {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}};
    Json at = {{"item_id", item_["id"]}, {"output_index", index}, {"content_index", 0}};
    Json text_done = at;
    text_done["text"] = text;
    out += event("response.output_text.done", text_done);
    Json part_done = at;
    part_done["part"] = part;
    out += event("response.content_part.done", part_done);
    done.erase("text");
    done["content"] = Json::array({part});
  } else {
    out += event("response.function_call_arguments.done",
                 Json{{"item_id", item_["id"]}, {"output_index", index},
                      {"arguments", item_["arguments"]}});
  }
  done["status"] =
      item_["type"] == "message" && finish_reason_ == "length" ? "incomplete" : "completed";
  out += event("response.output_item.done", Json{{"output_index", index}, {"item", done}});
  output_.push_back(std::move(done));
  item_ = Json();
  return out;
}

std::string ResponsesStreamWriter::toolDelta(const ToolCallDelta& d) {
  std::string out;
  if (item_.is_null() || item_["type"] != "function_call" || d.index != tool_index_) {
    out += closeItem();
    tool_index_ = d.index;
    const size_t index = output_.size();
    item_ = Json::parse(callItem(itemId("fc_", id_, index), d.id.value_or(""),
                                 d.name.value_or(""), "", "in_progress")
                            .dump());
    out += event("response.output_item.added", Json{{"output_index", index}, {"item", item_}});
  }
  if (d.arguments && !d.arguments->empty()) {
    item_["arguments"] = item_["arguments"].get<std::string>() + *d.arguments;
    out += event("response.function_call_arguments.delta",
                 Json{{"item_id", item_["id"]}, {"output_index", output_.size()},
                      {"delta", *d.arguments}});
  }
  return out;
}

// The upstream's events as the client gets them: each as it came, but for the `response`
// object of lifecycle events, whose gateway-owned members are set (the rest keeps its order).
std::string ResponsesStreamWriter::nativeEvents(std::string_view events) {
  SseParser parser;
  std::vector<SseEvent> parsed;
  parser.feed(events, parsed);
  std::string out;
  for (const SseEvent& e : parsed) {
    OJson data = OJson::parse(e.data, nullptr, /*allow_exceptions=*/false);
    std::string text = e.data;
    if (data.is_object()) {
      if (auto n = data.find("sequence_number"); n != data.end() && n->is_number_integer()) {
        seq_ = std::max(seq_, saturatingAdd(n->get<int64_t>(), 1));
      }
      if (auto r = data.find("response"); r != data.end() && r->is_object()) {
        for (const MemberEdit& m : ownedMembers(request_, id_, model_)) {
          (*r)[m.key] = OJson::parse(m.value->dump());
        }
        const std::string type = data.value("type", std::string());
        if (type == "response.completed" || type == "response.incomplete") {
          final_ = Json::parse(r->dump(-1, ' ', false, Json::error_handler_t::replace));
        }
        text = data.dump(-1, ' ', false, Json::error_handler_t::replace);
      }
    }
    if (!e.event.empty()) out += "event: " + e.event + "\n";
    out += sseData(text);
  }
  return out;
}

std::string ResponsesStreamWriter::chunk(const ChatChunk& c) {
  if (!started_ && !c.native.empty()) native_ = true;
  if (native_) {
    started_ = true;
    return nativeEvents(c.native);
  }
  std::string out = started_ ? "" : start();
  for (const ChunkChoice& choice : c.choices) {
    if (choice.index != 0) continue;
    if (choice.delta.content && !choice.delta.content->empty()) {
      if (item_.is_null() || item_["type"] != "message") out += openText();
      item_["text"] = item_["text"].get<std::string>() + *choice.delta.content;
      out += event("response.output_text.delta", Json{{"item_id", item_["id"]},
                                                      {"output_index", output_.size()},
                                                      {"content_index", 0},
                                                      {"delta", *choice.delta.content}});
    }
    for (const ToolCallDelta& t : choice.delta.tool_calls) out += toolDelta(t);
    if (choice.finish_reason) finish_reason_ = *choice.finish_reason;
  }
  return out;
}

std::string pendingResponse(const Json& request, const std::string& id, const std::string& model,
                            int64_t created_at, std::string_view status, const Json& error) {
  OJson r = responseObject(request, id, model, created_at, status, OJson::array(), std::nullopt);
  if (!error.is_null()) r["error"] = OJson::parse(error.dump());
  return r.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

std::string ResponsesStreamWriter::finish(const std::optional<Usage>& usage,
                                          std::string_view native) {
  if (native_) return nativeEvents(native);
  std::string out = started_ ? "" : start();
  if (output_.empty() && item_.is_null()) out += openText();  // an empty answer is a message
  out += closeItem();
  const bool incomplete = finish_reason_ == "length";
  OJson r = responseObject(request_, id_, model_, created_at_,
                           incomplete ? "incomplete" : "completed",
                           OJson::parse(output_.dump()), usage);
  final_ = Json::parse(r.dump());
  out += event(incomplete ? "response.incomplete" : "response.completed",
               Json{{"response", final_}});
  return out;
}

std::string ResponsesStreamWriter::error(const Status& s) {
  Json err = {{"code", s.openaiCode().empty() ? std::string(codeName(s.code())) : s.openaiCode()},
              {"message", s.message()},
              {"param", s.param().empty() ? Json() : Json(s.param())}};
  std::string out = event("error", err);
  OJson r = responseObject(request_, id_, model_, created_at_, "failed",
                           OJson::parse(output_.dump()), std::nullopt);
  r["error"] = OJson{{"code", err["code"]}, {"message", s.message()}};
  out += event("response.failed", Json{{"response", Json::parse(r.dump())}});
  return out;
}

}  // namespace api
