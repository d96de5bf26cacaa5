// Upstream bodies: parseChatResponse, parseChatChunk and upstreamErrorMessage. OpenAI-
// compatible servers differ in the details (extra fields, missing ids, usage-only chunks
// without "choices"), so only the shape a client depends on is enforced.
#include <algorithm>
#include <cstdint>
#include <exception>

#include "api/openai_json.h"
#include "api/saturating.h"

namespace api {
namespace {

constexpr size_t kMaxErrorMessageBytes = 500;

Status bad(std::string what) { return Status(ErrorCode::kUpstreamError, std::move(what)); }


Status wrongType(std::string_view where, std::string_view expected, const Json& got) {
  return bad("'" + std::string(where) + "' is " + std::string(describeJsonType(got)) + ", expected " +
             std::string(expected));
}

// The member `key` of object `obj`, or nullptr when absent or null.
Json* find(Json& obj, std::string_view key) {
  auto& o = obj.get_ref<Json::object_t&>();
  auto it = o.find(key);
  if (it == o.end() || it->second.is_null()) return nullptr;
  return &it->second;
}

// Moves a string member out; anything else leaves `out` as it was.
void takeString(Json& obj, std::string_view key, std::string& out) {
  Json* v = find(obj, key);
  if (v != nullptr && v->is_string()) out = std::move(v->get_ref<std::string&>());
}

// A count: integers as they are, decimals truncated, negatives and non-numbers as 0.
int64_t count(Json& obj, std::string_view key) {
  Json* v = find(obj, key);
  if (v == nullptr || !v->is_number()) return 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) return std::max<int64_t>(0, v->get<int64_t>());
  double d = v->get<double>();
  if (!(d > 0)) return 0;
  return d >= 9.2e18 ? INT64_MAX : static_cast<int64_t>(d);
}

int indexOr(Json& obj, int fallback) {
  Json* v = find(obj, "index");
  if (v == nullptr || !v->is_number_integer()) return fallback;
  int64_t i = v->get<int64_t>();
  return i >= 0 && i <= INT32_MAX ? static_cast<int>(i) : fallback;
}

std::optional<Role> roleOf(std::string_view s) {
  if (s == "assistant") return Role::kAssistant;
  if (s == "system") return Role::kSystem;
  if (s == "developer") return Role::kDeveloper;
  if (s == "user") return Role::kUser;
  if (s == "tool") return Role::kTool;
  if (s == "function") return Role::kFunction;
  return std::nullopt;
}

Status readUsage(Json& j, std::string_view where, std::optional<Usage>& out) {
  if (j.is_null()) return {};
  if (!j.is_object()) return wrongType(where, "an object", j);
  Usage u;
  u.prompt_tokens = count(j, "prompt_tokens");
  u.completion_tokens = count(j, "completion_tokens");
  u.total_tokens = count(j, "total_tokens");
  if (find(j, "total_tokens") == nullptr) {
    u.total_tokens = saturatingAdd(u.prompt_tokens, u.completion_tokens);
  }
  if (Json* d = find(j, "prompt_tokens_details"); d != nullptr && d->is_object()) {
    u.cached_prompt_tokens = count(*d, "cached_tokens");
  }
  if (Json* d = find(j, "completion_tokens_details"); d != nullptr && d->is_object()) {
    u.reasoning_tokens = count(*d, "reasoning_tokens");
  }
  out = u;
  return {};
}

// A token's bytes: the "bytes" array when it is a plausible one (it carries the exact bytes
// of tokens that split a character), else the "token" string.
std::string tokenBytes(Json& entry) {
  if (Json* bytes = find(entry, "bytes");
      bytes != nullptr && bytes->is_array() && !bytes->empty()) {
    std::string s;
    s.reserve(bytes->size());
    bool ok = true;
    for (const Json& b : *bytes) {
      if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > 255) {
        ok = false;
        break;
      }
      s.push_back(static_cast<char>(b.get<int>()));
    }
    if (ok) return s;
  }
  std::string token;
  takeString(entry, "token", token);
  return token;
}

double logprobOf(Json& entry) {
  Json* v = find(entry, "logprob");
  return v != nullptr && v->is_number() ? v->get<double>() : -9999.0;
}

// choices[i].logprobs: null, or {"content": [token...] | null, ...}.
Status readLogprobs(Json& choice, const std::string& where,
                    std::optional<std::vector<TokenLogprob>>& out) {
  Json* lp = find(choice, "logprobs");
  if (lp == nullptr) return {};
  if (!lp->is_object()) return wrongType(where + ".logprobs", "an object or null", *lp);
  out.emplace();
  Json* content = find(*lp, "content");
  if (content == nullptr) return {};
  if (!content->is_array()) return wrongType(where + ".logprobs.content", "an array", *content);
  out->reserve(content->size());
  for (Json& entry : *content) {
    if (!entry.is_object()) return wrongType(where + ".logprobs.content[]", "an object", entry);
    TokenLogprob t;
    t.token = tokenBytes(entry);
    t.logprob = logprobOf(entry);
    if (Json* top = find(entry, "top_logprobs"); top != nullptr && top->is_array()) {
      t.top_logprobs.reserve(top->size());
      for (Json& alt : *top) {
        if (!alt.is_object()) continue;
        t.top_logprobs.push_back(TopLogprob{tokenBytes(alt), logprobOf(alt)});
      }
    }
    out->push_back(std::move(t));
  }
  return {};
}

// A message or delta "content": a string, null, or (from some servers) an array of text parts.
Status readText(Json& v, const std::string& where, std::optional<std::string>& out) {
  if (v.is_null()) return {};
  if (v.is_string()) {
    out = std::move(v.get_ref<std::string&>());
    return {};
  }
  if (!v.is_array()) return wrongType(where, "a string or null", v);
  std::string text;
  bool first = true;
  for (Json& part : v) {
    if (!part.is_object()) return wrongType(where + "[]", "an object", part);
    Json* t = find(part, "text");
    if (t == nullptr || !t->is_string()) continue;
    if (!first) text += '\n';
    text += t->get_ref<const std::string&>();
    first = false;
  }
  out = std::move(text);
  return {};
}

std::string argumentsOf(Json& fn) {
  Json* args = find(fn, "arguments");
  if (args == nullptr) return {};
  if (args->is_string()) return std::move(args->get_ref<std::string&>());
  return args->dump(-1, ' ', false, Json::error_handler_t::replace);  // an object, sent raw
}

Status readMessage(Json& m, const std::string& where, Message& out) {
  out.role = Role::kAssistant;
  auto& obj = m.get_ref<Json::object_t&>();
  if (auto it = obj.find("content"); it != obj.end()) {
    std::optional<std::string> text;
    if (Status s = readText(it->second, where + ".content", text); !s.ok()) return s;
    if (text) out.content = Content::ofText(std::move(*text));
  }
  if (Json* r = find(m, "reasoning_content"); r != nullptr && r->is_string()) {
    out.reasoning_content = std::move(r->get_ref<std::string&>());
  }
  if (Json* refusal = find(m, "refusal"); refusal != nullptr && refusal->is_string()) {
    out.refusal = std::move(refusal->get_ref<std::string&>());
  }
  Json* calls = find(m, "tool_calls");
  if (calls == nullptr) return {};
  if (!calls->is_array()) return wrongType(where + ".tool_calls", "an array", *calls);
  out.tool_calls.reserve(calls->size());
  for (size_t i = 0; i < calls->size(); ++i) {
    Json& call = (*calls)[i];
    std::string cw = where + ".tool_calls[" + std::to_string(i) + "]";
    if (!call.is_object()) return wrongType(cw, "an object", call);
    Json* fn = find(call, "function");
    if (fn == nullptr || !fn->is_object()) {
      return fn == nullptr ? bad("'" + cw + ".function' is missing")
                           : wrongType(cw + ".function", "an object", *fn);
    }
    ToolCall tc;
    takeString(call, "id", tc.id);
    takeString(call, "type", tc.type);
    takeString(*fn, "name", tc.name);
    tc.arguments = argumentsOf(*fn);
    out.tool_calls.push_back(std::move(tc));
  }
  return {};
}

Status readDelta(Json& d, const std::string& where, Delta& out) {
  if (Json* role = find(d, "role"); role != nullptr && role->is_string()) {
    out.role = roleOf(role->get_ref<const std::string&>());
  }
  if (Json* content = find(d, "content")) {
    if (Status s = readText(*content, where + ".content", out.content); !s.ok()) return s;
  }
  if (Json* r = find(d, "reasoning_content"); r != nullptr && r->is_string()) {
    out.reasoning_content = std::move(r->get_ref<std::string&>());
  }
  if (Json* refusal = find(d, "refusal"); refusal != nullptr && refusal->is_string()) {
    out.refusal = std::move(refusal->get_ref<std::string&>());
  }
  Json* calls = find(d, "tool_calls");
  if (calls == nullptr) return {};
  if (!calls->is_array()) return wrongType(where + ".tool_calls", "an array", *calls);
  out.tool_calls.reserve(calls->size());
  for (size_t i = 0; i < calls->size(); ++i) {
    Json& call = (*calls)[i];
    if (!call.is_object()) {
      return wrongType(where + ".tool_calls[" + std::to_string(i) + "]", "an object", call);
    }
    ToolCallDelta tc;
    tc.index = indexOr(call, static_cast<int>(i));
    if (Json* v = find(call, "id"); v != nullptr && v->is_string()) {
      tc.id = std::move(v->get_ref<std::string&>());
    }
    if (Json* v = find(call, "type"); v != nullptr && v->is_string()) {
      tc.type = std::move(v->get_ref<std::string&>());
    }
    if (Json* fn = find(call, "function"); fn != nullptr && fn->is_object()) {
      if (Json* v = find(*fn, "name"); v != nullptr && v->is_string()) {
        tc.name = std::move(v->get_ref<std::string&>());
      }
      if (find(*fn, "arguments") != nullptr) tc.arguments = argumentsOf(*fn);
    }
    out.tool_calls.push_back(std::move(tc));
  }
  return {};
}

// Parses `body` into an object, or says why it is not one.
Status parseObject(std::string_view body, Json& root) {
  root = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return bad("the body is not valid JSON");
  if (!root.is_object()) {
    return bad("the body is " + std::string(describeJsonType(root)) + ", not an object");
  }
  return {};
}

Status errorBody(Json& root, std::string_view body) {
  if (find(root, "error") == nullptr) return {};
  return bad("the body is an error: " + upstreamErrorMessage(body));
}

StatusOr<ChatResponse> readResponse(std::string_view body) {
  Json root;
  if (Status s = parseObject(body, root); !s.ok()) return s;
  Json* choices = find(root, "choices");
  if (choices == nullptr) {
    if (Status s = errorBody(root, body); !s.ok()) return s;
    return bad("'choices' is missing");
  }
  if (!choices->is_array()) return wrongType("choices", "an array", *choices);

  ChatResponse r;
  takeString(root, "id", r.id);
  takeString(root, "model", r.model);
  r.created = count(root, "created");
  takeString(root, "system_fingerprint", r.system_fingerprint);
  takeString(root, "service_tier", r.service_tier);
  r.choices.resize(choices->size());
  for (size_t i = 0; i < choices->size(); ++i) {
    Json& cj = (*choices)[i];
    Choice& c = r.choices[i];
    std::string where = "choices[" + std::to_string(i) + "]";
    if (!cj.is_object()) return wrongType(where, "an object", cj);
    c.index = indexOr(cj, static_cast<int>(i));
    Json* message = find(cj, "message");
    if (message == nullptr) return bad("'" + where + ".message' is missing");
    if (!message->is_object()) return wrongType(where + ".message", "an object", *message);
    if (Status s = readMessage(*message, where + ".message", c.message); !s.ok()) return s;
    takeString(cj, "finish_reason", c.finish_reason);
    if (Status s = readLogprobs(cj, where, c.logprobs); !s.ok()) return s;
  }
  if (Json* usage = find(root, "usage")) {
    if (Status s = readUsage(*usage, "usage", r.usage); !s.ok()) return s;
  }
  if (r.usage) r.usage->service_tier = r.service_tier;
  return r;
}

StatusOr<ChatChunk> readChunk(std::string_view data) {
  Json root;
  if (Status s = parseObject(data, root); !s.ok()) return s;
  ChatChunk c;
  if (Json* usage = find(root, "usage")) {
    if (Status s = readUsage(*usage, "usage", c.usage); !s.ok()) return s;
  }
  if (c.usage) takeString(root, "service_tier", c.usage->service_tier);
  Json* choices = find(root, "choices");
  if (choices == nullptr && !c.usage) {
    if (Status s = errorBody(root, data); !s.ok()) return s;
    return bad("'choices' is missing");
  }
  if (choices != nullptr && !choices->is_array()) {
    return wrongType("choices", "an array", *choices);
  }
  takeString(root, "id", c.id);
  takeString(root, "model", c.model);
  c.created = count(root, "created");
  takeString(root, "system_fingerprint", c.system_fingerprint);
  if (choices == nullptr) return c;
  c.choices.resize(choices->size());
  for (size_t i = 0; i < choices->size(); ++i) {
    Json& cj = (*choices)[i];
    ChunkChoice& ch = c.choices[i];
    std::string where = "choices[" + std::to_string(i) + "]";
    if (!cj.is_object()) return wrongType(where, "an object", cj);
    ch.index = indexOr(cj, static_cast<int>(i));
    // Some servers leave the delta out of the last chunk; an empty delta says the same.
    if (Json* delta = find(cj, "delta")) {
      if (!delta->is_object()) return wrongType(where + ".delta", "an object", *delta);
      if (Status s = readDelta(*delta, where + ".delta", ch.delta); !s.ok()) return s;
    }
    if (Json* fr = find(cj, "finish_reason");
        fr != nullptr && fr->is_string() && !fr->get_ref<const std::string&>().empty()) {
      ch.finish_reason = std::move(fr->get_ref<std::string&>());
    }
    if (Status s = readLogprobs(cj, where, ch.logprobs); !s.ok()) return s;
  }
  return c;
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// The message in a parsed error body, or empty when it has none we recognise.
std::string messageIn(const Json& j) {
  if (j.is_array()) return j.empty() ? std::string() : messageIn(j.front());
  if (!j.is_object()) return {};
  if (auto e = j.find("error"); e != j.end()) {
    if (e->is_string()) return e->get<std::string>();
    if (e->is_object()) {
      auto m = e->find("message");
      if (m != e->end() && m->is_string()) return m->get<std::string>();
    }
  }
  for (const char* key : {"message", "detail"}) {
    auto m = j.find(key);
    if (m != j.end() && m->is_string()) return m->get<std::string>();
  }
  return {};
}

}  // namespace

StatusOr<ChatResponse> parseChatResponse(std::string_view body) {
  try {
    return readResponse(body);
  } catch (const std::exception& e) {
    return bad(std::string("the body could not be read: ") + e.what());
  }
}

StatusOr<ChatChunk> parseChatChunk(std::string_view data) {
  try {
    return readChunk(data);
  } catch (const std::exception& e) {
    return bad(std::string("the chunk could not be read: ") + e.what());
  }
}

std::string upstreamErrorMessage(std::string_view body) {
  std::string_view text = trim(body);
  if (text.empty()) return {};
  std::string found;
  if ((text.front() == '{' || text.front() == '[') && checkJsonBounds(text).ok()) {
    Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) found = std::string(trim(messageIn(j)));
  }
  std::string_view msg = found.empty() ? text : std::string_view(found);
  if (msg.size() <= kMaxErrorMessageBytes) return std::string(msg);
  size_t cut = kMaxErrorMessageBytes - 3;
  while (cut > 0 && (static_cast<unsigned char>(msg[cut]) & 0xC0) == 0x80) --cut;
  return std::string(msg.substr(0, cut)) + "...";
}

}  // namespace api
