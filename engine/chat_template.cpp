// The Gemma 3 chat template (gemma-spec §5.5), matching the Jinja template in
// tokenizer_config.json as rendered by @huggingface/jinja.
#include "engine/chat_template.h"

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

// What the local text model cannot take at all, whatever the template would do with it.
api::Status checkSupported(const std::vector<Message>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (m.role == Role::kTool || m.role == Role::kFunction) {
      return api::invalidRequest(field(i, "role") + " is '" + std::string(api::roleName(m.role)) +
                                     "': the local Gemma 3 model does not support tool messages",
                                 field(i, "role"));
    }
    if (!m.tool_calls.empty()) {
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
  if (api::Status st = checkSupported(messages); !st.ok()) return st;

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

}  // namespace engine
