// Chat templates (gemma-spec §5.5): the checkpoint's Jinja template, the built-in Gemma 3
// template for checkpoints without one, and the thought-channel splitter.
#include "engine/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tokenizer.h"

namespace engine {

namespace {

using api::ContentPart;
using api::Message;
using api::Role;

std::string field(size_t index, const char* name) {
  return "messages[" + std::to_string(index) + "]." + name;
}

const char* partTypeName(ContentPart::Type type) {
  switch (type) {
    case ContentPart::Type::kText:
      return "text";
    case ContentPart::Type::kImageUrl:
      return "image_url";
    case ContentPart::Type::kInputAudio:
      return "input_audio";
    case ContentPart::Type::kFile:
      return "file";
    case ContentPart::Type::kRefusal:
      return "refusal";
  }
  return "unknown";
}

// What the local text model cannot take at all, whatever the template would do with it. Tool
// messages and calls pass only when the template reads them (`allow_tools`).
api::Status checkSupported(const std::vector<Message>& messages, bool allow_tools) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (!allow_tools && (m.role == Role::kTool || m.role == Role::kFunction)) {
      return api::invalidRequest(field(i, "role") + " is '" + std::string(api::roleName(m.role)) +
                                     "': the local Gemma 3 model does not support tool messages",
                                 field(i, "role"));
    }
    if (!allow_tools && !m.tool_calls.empty()) {
      return api::invalidRequest(
          field(i, "tool_calls") + ": the local Gemma 3 model does not support tool calls",
          field(i, "tool_calls"));
    }
    if (m.content.kind != api::Content::Kind::kParts) continue;
    for (size_t j = 0; j < m.content.parts.size(); ++j) {
      ContentPart::Type type = m.content.parts[j].type;
      if (type == ContentPart::Type::kText || type == ContentPart::Type::kRefusal) continue;
      return api::invalidRequest(field(i, "content") + "[" + std::to_string(j) + "] is of type '" +
                                     partTypeName(type) +
                                     "': the local Gemma 3 model takes text only",
                                 field(i, "content"));
    }
  }
  return {};
}

bool isSystemLike(Role role) { return role == Role::kSystem || role == Role::kDeveloper; }

}  // namespace

api::StatusOr<std::string> renderGemma3Chat(const std::vector<Message>& messages,
                                            bool add_generation_prompt) {
  if (messages.empty()) return api::invalidRequest("messages must not be empty", "messages");
  if (api::Status st = checkSupported(messages, false); !st.ok()) return st;

  std::string out = "<bos>";
  // A leading system message is folded into the first user turn.
  std::string first_user_prefix;
  size_t begin = 0;
  if (isSystemLike(messages[0].role)) {
    const api::Content& c = messages[0].content;
    if (c.kind == api::Content::Kind::kText) {
      first_user_prefix = c.text + "\n\n";
    } else if (c.kind == api::Content::Kind::kParts && !c.parts.empty() &&
               c.parts[0].type == ContentPart::Type::kText) {
      first_user_prefix = c.parts[0].text + "\n\n";  // the template reads only the first part
    } else {
      return api::invalidRequest(
          "messages[0].content: the system message must be a string or start with a text part",
          field(0, "content"));
    }
    begin = 1;
  }

  for (size_t i = begin; i < messages.size(); ++i) {
    const Message& m = messages[i];
    bool even = (i - begin) % 2 == 0;
    if ((m.role == Role::kUser) != even) {
      return api::invalidRequest(
          "Conversation roles must alternate user/assistant/user/assistant/... (" +
              field(i, "role") + " is '" + std::string(api::roleName(m.role)) + "')",
          field(i, "role"));
    }
    const char* role = m.role == Role::kAssistant ? "model"
                       : m.role == Role::kUser    ? "user"
                                                  : "system";
    out += "<start_of_turn>";
    out += role;
    out += '\n';
    if (i == begin) out += first_user_prefix;
    switch (m.content.kind) {
      case api::Content::Kind::kText:
        out += trimJsWhitespace(m.content.text);
        break;
      case api::Content::Kind::kParts:
        for (const ContentPart& part : m.content.parts) {
          if (part.type == ContentPart::Type::kText) out += trimJsWhitespace(part.text);
        }
        break;
      case api::Content::Kind::kNull:
        return api::invalidRequest(field(i, "content") + " is null: Invalid content type",
                                   field(i, "content"));
    }
    out += "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

api::StatusOr<std::string> renderGemma3Chat(const api::ChatRequest& request) {
  if (!request.tools.empty()) {
    return api::invalidRequest("tools: the local Gemma 3 model does not support tools", "tools");
  }
  if (request.tool_choice && (request.tool_choice->mode == api::ToolChoice::Mode::kRequired ||
                              request.tool_choice->mode == api::ToolChoice::Mode::kFunction)) {
    return api::invalidRequest("tool_choice: the local Gemma 3 model does not support tools",
                               "tool_choice");
  }
  return renderGemma3Chat(request.messages, /*add_generation_prompt=*/true);
}

// ---- The checkpoint's template ------------------------------------------------------------------

namespace {

namespace fs = std::filesystem;
using jinja::Json;  // ordered: dict order in the template follows the request

// api::Json keeps keys sorted; the template sees the same document with its own ordering type.
Json ordered(const api::Json& j) { return Json::parse(j.dump()); }

Json partJson(const ContentPart& part) {
  switch (part.type) {
    case ContentPart::Type::kText:
      return {{"type", "text"}, {"text", part.text}};
    case ContentPart::Type::kRefusal:
      return {{"type", "refusal"}, {"refusal", part.text}};
    case ContentPart::Type::kImageUrl:
      return {{"type", "image_url"}, {"image_url", {{"url", part.image_url}}}};
    default:
      return ordered(part.raw);
  }
}

Json contentJson(const api::Content& c) {
  switch (c.kind) {
    case api::Content::Kind::kNull:
      return nullptr;
    case api::Content::Kind::kText:
      return c.text;
    case api::Content::Kind::kParts: {
      Json parts = Json::array();
      for (const ContentPart& part : c.parts) parts.push_back(partJson(part));
      return parts;
    }
  }
  return nullptr;
}

// A tool call as templates expect it: arguments as a mapping when they are a JSON object (as
// transformers and vLLM pass them), else the string as sent.
Json toolCallJson(const api::ToolCall& call) {
  Json args = Json::parse(call.arguments, nullptr, /*allow_exceptions=*/false);
  if (!args.is_object()) args = call.arguments;
  return {{"id", call.id},
          {"type", call.type.empty() ? "function" : call.type},
          {"function", {{"name", call.name}, {"arguments", std::move(args)}}}};
}

Json messageJson(const Message& m) {
  Json j = {{"role", api::roleName(m.role)}, {"content", contentJson(m.content)}};
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.tool_calls.empty()) {
    Json calls = Json::array();
    for (const api::ToolCall& c : m.tool_calls) calls.push_back(toolCallJson(c));
    j["tool_calls"] = std::move(calls);
  }
  if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
  if (m.reasoning_content) j["reasoning_content"] = *m.reasoning_content;
  return j;
}

Json toolJson(const api::Tool& t) {
  Json fn = {{"name", t.name}};
  if (!t.description.empty()) fn["description"] = t.description;
  if (!t.parameters.is_null()) fn["parameters"] = ordered(t.parameters);
  return {{"type", t.type.empty() ? "function" : t.type}, {"function", std::move(fn)}};
}

// Gemma 4's template reads tool results from the model turn that made the calls
// (message.tool_responses: [{name, response}]), not from role "tool" messages: each run of those
// is folded into the assistant message before it, named after the call it answers.
Json foldToolResponses(Json list) {
  Json out = Json::array();
  for (Json& m : list) {
    const bool result = m["role"] == "tool" || m["role"] == "function";
    if (!result || out.empty() || out.back()["role"] != "assistant") {
      out.push_back(std::move(m));
      continue;
    }
    Json& turn = out.back();
    std::string name = m.contains("name") ? m["name"].get<std::string>() : "unknown";
    if (m.contains("tool_call_id") && turn.contains("tool_calls")) {
      for (const Json& call : turn["tool_calls"]) {
        if (call["id"] == m["tool_call_id"]) name = call["function"]["name"].get<std::string>();
      }
    }
    std::string text = m["content"].is_string() ? m["content"].get<std::string>() : "";
    if (m["content"].is_array()) {
      for (const Json& part : m["content"]) text += part.value("text", "");
    }
    Json response = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!response.is_object()) response = text;
    turn["tool_responses"].push_back({{"name", name}, {"response", std::move(response)}});
  }
  return out;
}

// tokenizer_config.json's special tokens (bos_token, eos_token, ...): strings or AddedToken
// objects whose "content" is the text.
Json specialTokens(const api::Json& config) {
  Json tokens = Json::object();
  if (!config.is_object()) return tokens;
  for (auto it = config.begin(); it != config.end(); ++it) {
    const std::string& key = it.key();
    if (key.size() < 6 || key.compare(key.size() - 6, 6, "_token") != 0) continue;
    if (it->is_string()) {
      tokens[key] = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      tokens[key] = (*it)["content"].get<std::string>();
    }
  }
  return tokens;
}

api::StatusOr<std::string> readText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return api::Status(api::ErrorCode::kIo, "cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The template text in tokenizer_config.json: a string, or [{"name", "template"}] ("default").
api::StatusOr<std::string> configTemplate(const api::Json& config, const std::string& file) {
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const api::Json& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  return api::Status(api::ErrorCode::kConfig,
                     file + ": chat_template must be a string or a list with a \"default\" entry");
}

}  // namespace

ChatTemplate::ChatTemplate(jinja::Template tmpl, Json special_tokens, std::string_view source)
    : template_(std::move(tmpl)), special_tokens_(std::move(special_tokens)) {
  uses_tools_ = source.find("tools") != std::string_view::npos;
  reads_tool_responses_ = source.find("tool_responses") != std::string_view::npos;
  has_thinking_ = source.find("enable_thinking") != std::string_view::npos;
  // Gemma 4's thought channel (gemma-spec §5.5): <|channel>thought\n ... <channel|>.
  if (source.find("<|channel>") != std::string_view::npos &&
      source.find("<channel|>") != std::string_view::npos) {
    thought_start_ = "<|channel>";
    thought_end_ = "<channel|>";
  }
}

api::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::create(std::string_view source,
                                                                        const api::Json& config) {
  auto parsed = jinja::Template::parse(source);
  if (!parsed.ok()) return parsed.status();
  return std::shared_ptr<const ChatTemplate>(
      new ChatTemplate(std::move(parsed).value(), specialTokens(config), source));
}

api::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::loadDir(const std::string& dir) {
  fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  api::Json config = api::Json::object();
  if (fs::exists(config_path)) {
    auto text = readText(config_path);
    if (!text.ok()) return text.status();
    config = api::Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return api::Status(api::ErrorCode::kConfig, config_path.string() + " is not a JSON object");
    }
  }
  fs::path jinja_path = fs::path(dir) / "chat_template.jinja";
  std::string source, file;
  if (fs::exists(jinja_path)) {
    auto text = readText(jinja_path);
    if (!text.ok()) return text.status();
    source = std::move(text).value();
    file = jinja_path.string();
  } else {
    auto text = configTemplate(config, config_path.string());
    if (!text.ok()) return text.status();
    source = std::move(text).value();
    file = config_path.string();
  }
  if (source.empty()) return std::shared_ptr<const ChatTemplate>();
  auto created = create(source, config);
  if (!created.ok()) {
    return api::Status(api::ErrorCode::kConfig,
                       file + ": the chat template does not parse: " + created.status().message());
  }
  return created;
}

api::StatusOr<std::string> ChatTemplate::render(const std::vector<Message>& messages,
                                                const std::vector<api::Tool>& tools,
                                                bool add_generation_prompt,
                                                const Json& variables) const {
  Json context = Json::object();
  if (variables.is_object()) context = variables;
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it) {
    context[it.key()] = it.value();
  }
  Json list = Json::array();
  for (const Message& m : messages) list.push_back(messageJson(m));
  if (reads_tool_responses_) list = foldToolResponses(std::move(list));
  context["messages"] = std::move(list);
  context["add_generation_prompt"] = add_generation_prompt;
  if (!tools.empty()) {
    Json declared = Json::array();
    for (const api::Tool& t : tools) declared.push_back(toolJson(t));
    context["tools"] = std::move(declared);
  }
  auto rendered = template_.render(context);
  if (!rendered.ok()) return api::invalidRequest(rendered.status().message(), "messages");
  return rendered;
}

api::StatusOr<Json> templateVariables(const api::ChatRequest& request) {
  Json vars = Json::object();
  if (request.chat_template_kwargs.is_object()) vars = ordered(request.chat_template_kwargs);
  auto effort = request.extra.find("reasoning_effort");
  if (effort != request.extra.end() && !effort->is_null()) {
    if (!effort->is_string()) {
      return api::invalidRequest(
          "reasoning_effort must be a string (\"none\", \"minimal\", \"low\", \"medium\" or "
          "\"high\")",
          "reasoning_effort");
    }
    const std::string& e = effort->get_ref<const std::string&>();
    if (!vars.contains("enable_thinking")) vars["enable_thinking"] = e != "none" && e != "minimal";
  }
  return vars;
}

api::StatusOr<std::string> renderChatPrompt(const ChatTemplate* tmpl,
                                            const api::ChatRequest& request) {
  if (tmpl == nullptr) return renderGemma3Chat(request);
  if (api::Status st = checkSupported(request.messages, tmpl->usesTools()); !st.ok()) return st;
  if (!request.tools.empty() && !tmpl->usesTools()) {
    return api::invalidRequest("tools: this model's chat template does not take tools", "tools");
  }
  auto vars = templateVariables(request);
  if (!vars.ok()) return vars.status();
  return tmpl->render(request.messages, request.tools, /*add_generation_prompt=*/true, *vars);
}

// ---- The thought channel ------------------------------------------------------------------------

ThoughtSplitter::ThoughtSplitter(std::string start, std::string end, std::string channel)
    : start_(std::move(start)), end_(std::move(end)), channel_(std::move(channel)) {}

namespace {

// The length of the longest proper prefix of `marker` that `text` ends with.
size_t partialMarker(std::string_view text, std::string_view marker) {
  for (size_t k = std::min(text.size(), marker.size() - 1); k > 0; --k) {
    if (text.substr(text.size() - k) == marker.substr(0, k)) return k;
  }
  return 0;
}

}  // namespace

ThoughtSplitter::Output ThoughtSplitter::feed(std::string_view piece, std::string_view text) {
  Output out;
  bool was_thought = state_ != State::kAnswer;
  bool marker = text.empty() && (piece == start_ || piece == end_);
  pending_ += marker ? piece : text;
  drain(out, false);
  out.thought = was_thought || marker || state_ != State::kAnswer;
  return out;
}

ThoughtSplitter::Output ThoughtSplitter::flush() {
  Output out;
  out.thought = state_ != State::kAnswer;
  drain(out, true);
  return out;
}

void ThoughtSplitter::drain(Output& out, bool final) {
  while (true) {
    if (state_ == State::kChannelName) {
      if (pending_.compare(0, channel_.size(), channel_) == 0) {
        pending_.erase(0, channel_.size());
      } else if (!final && channel_.compare(0, pending_.size(), pending_) == 0) {
        return;  // the channel name may still be arriving
      }
      state_ = State::kThought;
      continue;
    }
    bool thought = state_ == State::kThought;
    const std::string& marker = thought ? end_ : start_;
    std::string& sink = thought ? out.reasoning : out.content;
    size_t at = pending_.find(marker);
    if (at != std::string::npos) {
      sink.append(pending_, 0, at);
      pending_.erase(0, at + marker.size());
      state_ = thought ? State::kAnswer : State::kChannelName;
      continue;
    }
    size_t keep = final ? 0 : partialMarker(pending_, marker);
    sink.append(pending_, 0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return;
  }
}

}  // namespace engine
