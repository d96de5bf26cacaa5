// The Gemma 3 chat template: api messages -> the prompt text the model was tuned on.
//
// This is the Jinja `chat_template` of Gemma 3's tokenizer_config.json written out in C++
// (gemma-spec §5.5), and its output matches that template's rendering byte for byte:
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

#include <string>
#include <vector>

#include "api/chat.h"
#include "api/status.h"

namespace engine {

// Renders `messages`; with `add_generation_prompt` the text ends with "<start_of_turn>model\n".
// kInvalidRequest when the messages are empty, roles do not alternate, content is null, or a
// message carries what Gemma 3 text cannot take (param e.g. "messages[1].content").
api::StatusOr<std::string> renderGemma3Chat(const std::vector<api::Message>& messages,
                                            bool add_generation_prompt);

// The same for a whole request (always with the generation prompt); also rejects `tools` and a
// tool_choice that requires a tool.
api::StatusOr<std::string> renderGemma3Chat(const api::ChatRequest& request);

}  // namespace engine
