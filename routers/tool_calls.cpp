#include "routers/tool_calls.h"

#include <algorithm>
#include <random>

namespace routers {
namespace {

using engine::grammar::ToolSyntax;

constexpr std::string_view kCallOpen = "<|tool_call>";
constexpr std::string_view kCallClose = "<tool_call|>";
constexpr std::string_view kQuote = "<|\"|>";  // Gemma 4's string delimiter
constexpr size_t kMaxNameBytes = 256;

// Google's Gemma 3 function-calling instructions (the JSON variant), followed by the functions.
constexpr const char* kGemma3Instructions =
    "You have access to functions. If you decide to invoke any of the function(s), you MUST put "
    "it in the format of\n"
    "{\"name\": function name, \"parameters\": dictionary of argument name and its value}\n\n"
    "You SHOULD NOT include any other text in the response if you call a function\n";

// Whether `text` is a proper, non-empty prefix of `marker`.
bool startsMarker(std::string_view text, std::string_view marker) {
  return !text.empty() && text.size() < marker.size() && marker.substr(0, text.size()) == text;
}

// The length of the longest proper prefix of `marker` that `text` ends with.
size_t partialSuffix(std::string_view text, std::string_view marker) {
  for (size_t k = std::min(text.size(), marker.size() - 1); k > 0; --k) {
    if (text.substr(text.size() - k) == marker.substr(0, k)) return k;
  }
  return 0;
}

// One byte inside a JSON string.
void appendEscaped(std::string& out, char c) {
  static const char kHex[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  if (c == '"' || c == '\\') {
    out += '\\';
    out += c;
  } else if (u < 0x20) {
    out += "\\u00";
    out += kHex[u >> 4];
    out += kHex[u & 15];
  } else {
    out += c;
  }
}

api::Json functionList(const std::vector<api::Tool>& tools) {
  api::Json list = api::Json::array();
  for (const api::Tool& t : tools) {
    api::Json fn = {{"name", t.name}};
    if (!t.description.empty()) fn["description"] = t.description;
    fn["parameters"] = t.parameters.is_null() ? api::Json{{"type", "object"}} : t.parameters;
    list.push_back(std::move(fn));
  }
  return list;
}

// The Gemma 3 messages: calls as JSON text in the model's turn, each run of tool results as one
// user turn of ```tool_output blocks.
std::vector<api::Message> gemma3Messages(const std::vector<api::Message>& in) {
  std::vector<api::Message> out;
  bool last_was_result = false;
  for (const api::Message& m : in) {
    if (m.role == api::Role::kTool || m.role == api::Role::kFunction) {
      std::string block = "```tool_output\n" + m.content.joinedText() + "\n```";
      if (last_was_result) {
        out.back().content.text += "\n" + block;
      } else {
        api::Message user;
        user.role = api::Role::kUser;
        user.content = api::Content::ofText(std::move(block));
        out.push_back(std::move(user));
      }
      last_was_result = true;
      continue;
    }
    last_was_result = false;
    api::Message copy = m;
    if (!m.tool_calls.empty()) {
      std::string text = m.content.joinedText();
      for (const api::ToolCall& call : m.tool_calls) {
        if (!text.empty()) text += "\n";
        text += gemma3CallText(call);
      }
      copy.content = api::Content::ofText(std::move(text));
      copy.tool_calls.clear();
    }
    out.push_back(std::move(copy));
  }
  return out;
}

}  // namespace

api::StatusOr<ToolPlan> planTools(const api::ChatRequest& request,
                                  const engine::ChatTemplate* chat_template) {
  ToolPlan plan;
  plan.syntax = chat_template != nullptr && chat_template->usesTools() ? ToolSyntax::kGemma4
                                                                       : ToolSyntax::kJson;
  const api::ToolChoice::Mode mode =
      request.tool_choice ? request.tool_choice->mode : api::ToolChoice::Mode::kAuto;
  if (request.tools.empty()) {
    if (mode == api::ToolChoice::Mode::kRequired || mode == api::ToolChoice::Mode::kFunction) {
      return api::invalidRequest("tool_choice requires tools to be given", "tool_choice");
    }
    return plan;
  }
  plan.parallel = request.parallel_tool_calls.value_or(true);
  plan.parse = mode != api::ToolChoice::Mode::kNone;
  plan.force = mode == api::ToolChoice::Mode::kRequired || mode == api::ToolChoice::Mode::kFunction;
  for (const api::Tool& t : request.tools) {
    if (mode == api::ToolChoice::Mode::kFunction && t.name != request.tool_choice->function_name) {
      continue;
    }
    plan.callable.push_back(engine::grammar::ToolSpec{t.name, t.parameters, t.parameters_order,
                                                      t.strict.value_or(false)});
  }
  if (plan.callable.empty()) {
    return api::invalidRequest("tool_choice names the function '" +
                                   request.tool_choice->function_name +
                                   "', which is not among tools",
                               "tool_choice");
  }
  return plan;
}

api::ChatRequest toolPromptRequest(const api::ChatRequest& request, const ToolPlan& plan) {
  api::ChatRequest r = request;
  if (plan.syntax == ToolSyntax::kGemma4) {
    if (!plan.parse) r.tools.clear();
    return r;
  }
  r.tools.clear();
  r.tool_choice.reset();
  r.messages = gemma3Messages(request.messages);
  if (!plan.parse) return r;
  std::string block = kGemma3Instructions + functionList(request.tools).dump(2);
  if (!r.messages.empty() &&
      (r.messages[0].role == api::Role::kSystem || r.messages[0].role == api::Role::kDeveloper)) {
    std::string text = r.messages[0].content.joinedText();
    r.messages[0].content = api::Content::ofText(text.empty() ? block : text + "\n\n" + block);
  } else {
    api::Message system;
    system.role = api::Role::kSystem;
    system.content = api::Content::ofText(std::move(block));
    r.messages.insert(r.messages.begin(), std::move(system));
  }
  return r;
}

std::string gemma3CallText(const api::ToolCall& call) {
  api::Json args = api::Json::parse(call.arguments, nullptr, /*allow_exceptions=*/false);
  std::string args_text = args.is_discarded() ? call.arguments : args.dump();
  return "{\"name\": " + api::Json(call.name).dump() + ", \"parameters\": " + args_text + "}";
}

std::string newToolCallId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % 62];
  return id;
}

// ---- ToolCallParser -----------------------------------------------------------------------------

ToolCallParser::ToolCallParser(ToolSyntax syntax, std::vector<std::string> names, bool parallel)
    : syntax_(syntax), names_(std::move(names)), parallel_(parallel) {}

ToolCallParser::Output ToolCallParser::feed(std::string_view text) {
  Output out;
  if (syntax_ == ToolSyntax::kGemma4) {
    pending_ += text;
    feedGemma4(out, false);
    return out;
  }
  if (!decided_) {
    pending_ += text;
    const size_t p = pending_.find_first_not_of(" \t\r\n");
    if (p == std::string::npos) return out;
    decided_ = true;
    holding_ = pending_[p] == '{' || pending_[p] == '`';
    (holding_ ? held_ : out.content) = std::move(pending_);
    pending_.clear();
    return out;
  }
  (holding_ ? held_ : out.content) += text;
  return out;
}

ToolCallParser::Output ToolCallParser::flush() {
  Output out;
  if (syntax_ == ToolSyntax::kGemma4) {
    feedGemma4(out, true);
  } else {
    flushGemma3(out);
  }
  return out;
}

void ToolCallParser::headerByte(Output& out, char c) {
  if (c == '{') {
    if (name_.rfind("call:", 0) != 0 || name_.size() == 5) {
      abandonCall(out);
      return;
    }
    call_.name = name_.substr(5);
    state_ = State::kArgs;
    nest_ = {'{'};
    expect_key_ = true;
    piece_ += '{';
  } else if (name_.size() >= kMaxNameBytes || c == '<' || c == '\n') {
    abandonCall(out);
  } else {
    name_ += c;
  }
}

// Gemma 4's argument syntax (bare keys, <|"|> strings) or JSON, written as JSON.
void ToolCallParser::argsByte(char c) {
  if (native_string_) {
    appendEscaped(piece_, c);
  } else if (json_string_) {
    piece_ += c;
    if (escape_) {
      escape_ = false;
    } else if (c == '\\') {
      escape_ = true;
    } else if (c == '"') {
      json_string_ = false;
    }
  } else if (bare_key_) {
    if (c == ':') {
      piece_ += "\":";
      bare_key_ = false;
    } else {
      appendEscaped(piece_, c);
    }
  } else if (c == '{' || c == '[') {
    nest_.push_back(c);
    expect_key_ = c == '{';
    piece_ += c;
  } else if (c == '}' || c == ']') {
    nest_.pop_back();
    expect_key_ = false;
    piece_ += c;
    if (nest_.empty()) state_ = State::kClose;
  } else if (c == ',') {
    expect_key_ = nest_.back() == '{';
    piece_ += c;
  } else if (c == '"') {
    json_string_ = true;
    expect_key_ = false;
    piece_ += c;
  } else if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || !expect_key_) {
    piece_ += c;
  } else {
    bare_key_ = true;
    expect_key_ = false;
    piece_ += '"';
    appendEscaped(piece_, c);
  }
}

void ToolCallParser::feedGemma4(Output& out, bool final) {
  size_t i = 0;
  while (i < pending_.size()) {
    const std::string_view rest = std::string_view(pending_).substr(i);
    if (state_ == State::kText) {
      const size_t at = rest.find(kCallOpen);
      if (at == std::string_view::npos) {
        const size_t keep = final ? 0 : partialSuffix(rest, kCallOpen);
        out.content.append(rest.substr(0, rest.size() - keep));
        i += rest.size() - keep;
        break;
      }
      out.content.append(rest.substr(0, at));
      i += at + kCallOpen.size();
      raw_ = kCallOpen;
      state_ = State::kHeader;
      continue;
    }
    if (state_ == State::kClose) {
      if (rest.substr(0, kCallClose.size()) == kCallClose) {
        raw_ += kCallClose;
        i += kCallClose.size();
        finishCall(out);
        continue;
      }
      if (!final && startsMarker(rest, kCallClose)) break;
      abandonCall(out);
      continue;
    }
    if (state_ == State::kArgs && !json_string_ && !bare_key_) {
      if (rest.substr(0, kQuote.size()) == kQuote) {
        raw_ += kQuote;
        i += kQuote.size();
        piece_ += '"';
        native_string_ = !native_string_;
        expect_key_ = false;
        continue;
      }
      if (!final && startsMarker(rest, kQuote)) break;
    }
    const char c = rest[0];
    raw_ += c;
    ++i;
    if (state_ == State::kHeader) {
      headerByte(out, c);
    } else {
      argsByte(c);
    }
  }
  pending_.erase(0, i);
  if (!piece_.empty()) {
    call_.argument_pieces.push_back(std::move(piece_));
    piece_.clear();
  }
  if (final && state_ != State::kText) abandonCall(out);
}

void ToolCallParser::finishCall(Output& out) {
  if (!piece_.empty()) call_.argument_pieces.push_back(std::move(piece_));
  std::string args;
  for (const std::string& p : call_.argument_pieces) args += p;
  const api::Json parsed = api::Json::parse(args, nullptr, /*allow_exceptions=*/false);
  const bool known = std::find(names_.begin(), names_.end(), call_.name) != names_.end();
  if (!parsed.is_object() || !known) {
    abandonCall(out);
    return;
  }
  if (parallel_ || calls_ == 0) out.calls.push_back(std::move(call_));
  ++calls_;
  resetCall();
}

void ToolCallParser::abandonCall(Output& out) {
  out.content += raw_;
  resetCall();
}

void ToolCallParser::resetCall() {
  state_ = State::kText;
  raw_.clear();
  name_.clear();
  piece_.clear();
  call_ = Call{};
  nest_.clear();
  native_string_ = json_string_ = escape_ = bare_key_ = expect_key_ = false;
}

void ToolCallParser::flushGemma3(Output& out) {
  if (!decided_) {
    out.content = std::move(pending_);
    return;
  }
  if (!holding_) return;
  std::string_view text = held_;
  const size_t b = text.find_first_not_of(" \t\r\n"), e = text.find_last_not_of(" \t\r\n");
  text = b == std::string_view::npos ? std::string_view() : text.substr(b, e - b + 1);
  if (text.substr(0, 3) == "```") {  // a fenced block: ```json / ```tool_code ... ```
    const size_t nl = text.find('\n');
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (text.size() >= 3 && text.substr(text.size() - 3) == "```") text.remove_suffix(3);
  }
  api::Json parsed = api::Json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool one = parsed.is_object();
  if (one) parsed = api::Json::array({std::move(parsed)});
  // The arguments keep the order the model wrote their keys in (the schema's order).
  auto orders = api::captureKeyOrders(
      text, {"/parameters", "/arguments", "/*/parameters", "/*/arguments"});
  std::vector<Call> calls;
  bool ok = parsed.is_array() && !parsed.empty();
  for (const api::Json& c : ok ? parsed : api::Json::array()) {
    const api::Json* args = nullptr;
    const char* field = c.is_object() && c.contains("parameters") ? "parameters" : "arguments";
    if (c.is_object() && c.contains(field)) args = &c[field];
    ok = c.is_object() && c.size() == 2 && c.contains("name") && c["name"].is_string() &&
         args != nullptr && args->is_object() &&
         std::find(names_.begin(), names_.end(), c["name"].get<std::string>()) != names_.end();
    if (!ok) break;
    const std::string at = one ? "" : "/" + std::to_string(calls.size());
    calls.push_back(
        Call{c["name"].get<std::string>(), {api::dumpInOrder(*args, orders[at + "/" + field])}});
  }
  if (!ok) {
    out.content = std::move(held_);
    return;
  }
  if (!parallel_) calls.resize(1);
  calls_ += static_cast<int>(calls.size());
  out.calls = std::move(calls);
}

}  // namespace routers
