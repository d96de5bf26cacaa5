// Tool calling on the local engine: how a request's tools reach the prompt, which grammar forces
// a call, and how calls are read back out of the model's text into OpenAI's tool_calls.
//
// Two formats (engine::grammar::ToolSyntax):
// * kGemma4, for a checkpoint whose chat template reads `tools` (Gemma 4): the template itself
//   declares the tools (<|tool>declaration:NAME{...}<tool|>) and renders earlier calls and
//   results; the model calls with <|tool_call>call:NAME{key:value,...}<tool_call|>, strings
//   delimited by <|"|>. The reader turns that into JSON arguments, and also takes plain JSON
//   inside the braces (what the grammar makes the model write).
// * kJson, for Gemma 3 (whose template has no tool support): the prompt format Google documents
//   for Gemma 3 function calling. The instructions and the functions as a JSON list go into the
//   system prompt; the model answers a call with {"name": NAME, "parameters": {...}} and nothing
//   else; earlier calls render as that JSON in the model's turn and tool results as a user turn
//   of ```tool_output blocks.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat.h"
#include "api/status.h"
#include "engine/chat_template.h"
#include "engine/grammar/grammar.h"

namespace routers {

// What a request asks of the local model's tools.
struct ToolPlan {
  engine::grammar::ToolSyntax syntax = engine::grammar::ToolSyntax::kJson;
  bool parse = false;    // read calls out of the output (tools given, tool_choice not none)
  bool force = false;    // tool_choice required or a named function: the grammar forces a call
  bool parallel = true;  // parallel_tool_calls; false: at most one call
  // The tools a call may name (all of them, or the one tool_choice names; with none, all of
  // them, which the model may then not call).
  std::vector<engine::grammar::ToolSpec> callable;
};

// The plan for `request` with the checkpoint's template (null: the built-in Gemma 3 one).
// kInvalidRequest naming tool_choice when it names a function that is not in tools.
api::StatusOr<ToolPlan> planTools(const api::ChatRequest& request,
                                  const engine::ChatTemplate* chat_template);

// The request as the template should see it: for kGemma4 the tools (none with tool_choice none);
// for kJson a copy in Google's Gemma 3 prompt format, with no tools and no tool messages left.
api::ChatRequest toolPromptRequest(const api::ChatRequest& request, const ToolPlan& plan);

// A call as the model would have written it in `syntax` (kJson only; Gemma 4 calls are rendered
// by the template). Arguments that are not a JSON object are written as sent.
std::string gemma3CallText(const api::ToolCall& call);

// "call_" and 24 random letters and digits.
std::string newToolCallId();

// Reads tool calls out of the model's output as it arrives. A call is handed out once it is
// complete and its arguments parse as a JSON object; anything else (a call that breaks off, an
// unknown format) stays text. The pieces of a call's arguments follow the tokens they came from.
class ToolCallParser {
 public:
  ToolCallParser(engine::grammar::ToolSyntax syntax, std::vector<std::string> names, bool parallel);

  struct Call {
    std::string name;
    std::vector<std::string> argument_pieces;  // joined: a JSON object
  };
  struct Output {
    std::string content;
    std::vector<Call> calls;
  };
  // The next text of the answer (a special token's text is its piece, e.g. "<|tool_call>").
  Output feed(std::string_view text);
  // The end of the answer: whatever was held back.
  Output flush();

  int callsSoFar() const { return calls_; }

 private:
  void feedGemma4(Output& out, bool final);
  void headerByte(Output& out, char c);  // Gemma 4: a byte of `call:NAME` before its `{`
  void argsByte(char c);                  // Gemma 4: a byte of the arguments, written as JSON
  void finishCall(Output& out);
  void abandonCall(Output& out);  // the call so far becomes text
  void resetCall();
  void flushGemma3(Output& out);

  const engine::grammar::ToolSyntax syntax_;
  const std::vector<std::string> names_;
  const bool parallel_;
  int calls_ = 0;
  std::string pending_;  // bytes not decided yet

  // kGemma4: a call being read.
  enum class State { kText, kHeader, kArgs, kClose };
  State state_ = State::kText;
  std::string raw_;  // the call's text so far (given back as text if it breaks off)
  std::string name_;
  std::string piece_;  // arguments converted from the current feed
  Call call_;
  // Native argument syntax -> JSON.
  std::vector<char> nest_;
  bool native_string_ = false, json_string_ = false, escape_ = false, bare_key_ = false,
       expect_key_ = false;

  // kJson: the answer is held back from its first `{` or "```" to the end.
  bool decided_ = false, holding_ = false;
  std::string held_;
};

}  // namespace routers
