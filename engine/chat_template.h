// Chat templates: api messages -> the prompt text the model was tuned on (gemma-spec §5.5).
//
// ChatTemplate is the checkpoint's own Jinja template (chat_template.jinja, or the chat_template
// of tokenizer_config.json), rendered by engine/jinja.h with the variables Hugging Face's
// apply_chat_template passes: messages, add_generation_prompt, tools, the special tokens of
// tokenizer_config.json (bos_token, eos_token, ...) and the request's template variables
// (enable_thinking, chat_template_kwargs). Its output is what @huggingface/jinja renders.
//
// renderGemma3Chat below is the Gemma 3 template written out in C++, used only for a checkpoint
// that ships no template. It matches the template's rendering byte for byte:
//   <bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n...
// * A leading system (or developer) message becomes a prefix of the first user turn: its text is
//   used untrimmed, and only the first part of an array content counts, as in the template.
// * The remaining messages must alternate user/assistant starting with user; assistant renders as
//   "model". A system/developer message elsewhere renders as a "system" turn where the template
//   lets it through (odd positions) and is an alternation error otherwise.
// * Content is trimmed (ECMAScript String.prototype.trim, as @huggingface/jinja does; Python
//   jinja2's str.strip differs only on U+001C-U+001F and U+0085, which it strips, and U+FEFF,
//   which it keeps). Text parts are trimmed and concatenated with no separator; refusal parts
//   render nothing (the template skips part types it does not know).
// * The text starts with the literal "<bos>"; Tokenizer::encode turns it into the <bos> id and
//   never adds a second one, so encode(prompt, add_bos) gives one <bos> either way (§5.4).
//
// Gemma 3's text model cannot take tools, tool calls, tool results, images, audio or files; those
// are kInvalidRequest errors whose `param` names the field (OpenAI's error.param).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"
#include "engine/jinja.h"

namespace engine {

class ChatTemplate {
 public:
  // DIR/chat_template.jinja when it exists, else tokenizer_config.json's chat_template (a string,
  // or a list of {"name", "template"} from which "default" is taken); nullptr when the checkpoint
  // has neither. kIo for an unreadable file, kConfig naming the file for a template that does
  // not parse or a tokenizer_config.json that is not JSON.
  static api::StatusOr<std::shared_ptr<const ChatTemplate>> loadDir(const std::string& dir);

  // A template from its text. `config` is tokenizer_config.json (or an empty object): its
  // special tokens (bos_token, eos_token, ..., as strings or {"content": ...}) become variables.
  // kInvalidRequest "line L, column C: ..." when the text does not parse.
  static api::StatusOr<std::shared_ptr<const ChatTemplate>> create(std::string_view source,
                                                                   const api::Json& config);

  // Renders `messages` (and `tools`, when given) with `variables` added (enable_thinking, ...).
  // kInvalidRequest with the template's own message when it raises (roles that do not
  // alternate, ...), param "messages".
  api::StatusOr<std::string> render(const std::vector<api::Message>& messages,
                                    const std::vector<api::Tool>& tools, bool add_generation_prompt,
                                    const jinja::Json& variables) const;

  // The template reads `tools` / has an `enable_thinking` switch.
  bool usesTools() const { return uses_tools_; }
  bool hasThinkingSwitch() const { return has_thinking_; }
  // The text that opens and closes the model's thought channel in its output ("<|channel>" and
  // "<channel|>" for Gemma 4); empty when the template has none.
  const std::string& thoughtStart() const { return thought_start_; }
  const std::string& thoughtEnd() const { return thought_end_; }

 private:
  ChatTemplate(jinja::Template tmpl, jinja::Json special_tokens, std::string_view source);

  jinja::Template template_;
  jinja::Json special_tokens_;
  bool uses_tools_ = false;
  bool reads_tool_responses_ = false;  // Gemma 4: tool results ride on the model's turn
  bool has_thinking_ = false;
  std::string thought_start_, thought_end_;
};

// The template variables a request sets: the members of chat_template_kwargs, and
// enable_thinking from reasoning_effort ("none" and "minimal" turn thinking off, any other value
// turns it on; absent leaves the template's default). An enable_thinking in chat_template_kwargs
// wins over reasoning_effort. kInvalidRequest naming the field when reasoning_effort is not a
// string.
api::StatusOr<jinja::Json> templateVariables(const api::ChatRequest& request);

// The prompt for `request`: rendered with `tmpl` when the checkpoint has one, else with the
// built-in Gemma 3 template. Also refuses what the local text model cannot take (images, audio,
// files; tools unless the template reads them).
api::StatusOr<std::string> renderChatPrompt(const ChatTemplate* tmpl,
                                            const api::ChatRequest& request);

// Splits a thinking model's output into its thought channel and its answer, as the text arrives
// token by token. A marker may arrive as the piece of a special token (whose text is empty) or
// inside the text; the channel's name line ("thought\n") is dropped.
class ThoughtSplitter {
 public:
  ThoughtSplitter(std::string start, std::string end, std::string channel = "thought\n");

  struct Output {
    std::string content;    // answer text
    std::string reasoning;  // thought text
    bool thought = false;   // the token belongs to the thought channel (markers included)
  };
  // One token: its piece (as stored in tokenizer.json) and the text delta the detokenizer gave.
  Output feed(std::string_view piece, std::string_view text);
  // The end of the output: whatever was held back.
  Output flush();

 private:
  void drain(Output& out, bool final);

  enum class State { kAnswer, kChannelName, kThought };
  const std::string start_, end_, channel_;
  State state_ = State::kAnswer;
  std::string pending_;
};

// Renders `messages`; with `add_generation_prompt` the text ends with "<start_of_turn>model\n".
// kInvalidRequest when the messages are empty, roles do not alternate, content is null, or a
// message carries what Gemma 3 text cannot take (param e.g. "messages[1].content").
api::StatusOr<std::string> renderGemma3Chat(const std::vector<api::Message>& messages,
                                            bool add_generation_prompt);

// The same for a whole request (always with the generation prompt); also rejects `tools` and a
// tool_choice that requires a tool.
api::StatusOr<std::string> renderGemma3Chat(const api::ChatRequest& request);

}  // namespace engine
