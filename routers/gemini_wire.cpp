#include "routers/gemini_wire.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "api/openai_json.h"

namespace routers {
namespace {

using api::ErrorCode;
using api::Json;
using api::Status;
using api::StatusOr;

// Deepest nesting accepted in an upstream body or event, so that dumping a kept value (tool
// arguments) cannot exhaust the stack.
constexpr int kMaxUpstreamJsonDepth = 256;

Status upstream(std::string message) {
  return Status(ErrorCode::kUpstreamError, std::move(message));
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string randomAlnum(int n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  s.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) s += kAlphabet[rng() % 62];
  return s;
}

std::string newCompletionId() { return "chatcmpl-" + randomAlnum(29); }
std::string newToolCallId() { return "call_" + randomAlnum(24); }

std::string dumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// True when no object or array in `s` nests deeper than `max_depth` (strings skipped; the
// one check in api/openai_json.h).
bool nestingWithin(std::string_view s, int max_depth) {
  return api::checkJsonBounds(s, {max_depth, std::numeric_limits<int64_t>::max()}).ok();
}

// Parses `text` as JSON; a discarded value when it is not JSON or nests too deep.
Json parseJson(std::string_view text, int max_depth) {
  if (!nestingWithin(text, max_depth)) return Json(Json::value_t::discarded);
  return Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

bool isAsciiSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool isBlank(std::string_view s) {
  for (char c : s) {
    if (!isAsciiSpace(c)) return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Model names go into the URL path as they are.
bool isPathSafeModel(const std::string& model) {
  if (model.empty() || model.find("..") != std::string::npos) return false;
  for (char c : model) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/' || c == '@' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI -> Gemini

// The MIME type of a file URL from its extension (query and fragment ignored), for the image
// types Gemini documents; nullopt for anything else.
std::optional<std::string> imageMimeFromUrl(std::string_view url) {
  size_t end = url.find_first_of("?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  size_t slash = url.rfind('/');
  size_t dot = url.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return std::nullopt;
  }
  std::string ext = lower(url.substr(dot + 1));
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "webp") return "image/webp";
  if (ext == "heic") return "image/heic";
  if (ext == "heif") return "image/heif";
  return std::nullopt;
}

StatusOr<Json> imagePart(const api::ContentPart& part, const std::string& path) {
  const std::string& url = part.image_url;
  std::string param = path + ".image_url.url";
  if (startsWith(url, "data:")) {
    // data:<mime>[;params];base64,<data>
    size_t comma = url.find(',');
    if (comma == std::string::npos) {
      return api::invalidRequest("Invalid image data URL: no ',' before the data.", param);
    }
    std::string_view header(url.data() + 5, comma - 5);
    constexpr std::string_view kBase64 = ";base64";
    if (header.size() < kBase64.size() ||
        lower(header.substr(header.size() - kBase64.size())) != kBase64) {
      return api::invalidRequest("Invalid image data URL: only base64 data URLs are supported.",
                                 param);
    }
    std::string_view mime = header.substr(0, header.find(';'));
    if (mime.empty()) {
      return api::invalidRequest("Invalid image data URL: no media type.", param);
    }
    return Json{{"inlineData", {{"mimeType", lower(mime)}, {"data", url.substr(comma + 1)}}}};
  }
  if (startsWith(url, "https://") || startsWith(url, "gs://")) {
    std::optional<std::string> mime = imageMimeFromUrl(url);
    if (!mime) {
      return api::invalidRequest(
          "Gemini needs the media type of an image URL, and it could not be told from the URL's "
          "extension (supported: png, jpg, jpeg, webp, heic, heif). Send the image as a base64 "
          "data URL instead.",
          param);
    }
    return Json{{"fileData", {{"mimeType", *mime}, {"fileUri", url}}}};
  }
  return api::invalidRequest(
      "Gemini accepts images as base64 data URLs, https:// URLs or gs:// URIs.", param);
}

StatusOr<Json> audioPart(const api::ContentPart& part, const std::string& path) {
  std::string ap = path + ".input_audio";
  const Json* inner =
      part.raw.is_object() && part.raw.contains("input_audio") ? &part.raw["input_audio"] : nullptr;
  if (inner == nullptr || !inner->is_object()) {
    return api::invalidRequest("Missing 'input_audio' object.", ap);
  }
  auto data = inner->find("data");
  if (data == inner->end() || !data->is_string()) {
    return api::invalidRequest("'input_audio.data' must be a base64 string.", ap + ".data");
  }
  auto format = inner->find("format");
  if (format == inner->end() || !format->is_string()) {
    return api::invalidRequest("'input_audio.format' must be one of 'wav' or 'mp3'.",
                               ap + ".format");
  }
  const std::string& f = format->get_ref<const std::string&>();
  std::string mime;
  if (f == "wav") {
    mime = "audio/wav";
  } else if (f == "mp3") {
    mime = "audio/mp3";
  } else {
    return api::invalidRequest("Unsupported audio format '" + f + "': expected 'wav' or 'mp3'.",
                               ap + ".format");
  }
  return Json{{"inlineData", {{"mimeType", mime}, {"data", *data}}}};
}

// Appends the parts of a user or assistant message's content to `parts`. Empty text is
// skipped: Gemini rejects empty text parts.
Status contentParts(const api::Content& content, const std::string& path, Json& parts) {
  if (content.kind == api::Content::Kind::kText) {
    if (!content.text.empty()) parts.push_back(Json{{"text", content.text}});
    return {};
  }
  if (content.kind != api::Content::Kind::kParts) return {};
  for (size_t j = 0; j < content.parts.size(); ++j) {
    const api::ContentPart& part = content.parts[j];
    std::string pp = path + "[" + std::to_string(j) + "]";
    switch (part.type) {
      case api::ContentPart::Type::kText:
      case api::ContentPart::Type::kRefusal:
        if (!part.text.empty()) parts.push_back(Json{{"text", part.text}});
        break;
      case api::ContentPart::Type::kImageUrl: {
        StatusOr<Json> p = imagePart(part, pp);
        if (!p.ok()) return p.status();
        parts.push_back(std::move(p).value());
        break;
      }
      case api::ContentPart::Type::kInputAudio: {
        StatusOr<Json> p = audioPart(part, pp);
        if (!p.ok()) return p.status();
        parts.push_back(std::move(p).value());
        break;
      }
      case api::ContentPart::Type::kFile:
        return api::invalidRequest("File content parts are not supported by Gemini.", pp);
    }
  }
  return {};
}

// The functionResponse part for a tool's output: the output itself when it is a JSON object,
// else {"content": output}.
Json functionResponsePart(const std::string& name, const std::string& output) {
  Json response = parseJson(output, api::kMaxRequestJsonDepth);
  if (!response.is_object()) response = Json{{"content", output}};
  return Json{{"functionResponse", {{"name", name}, {"response", std::move(response)}}}};
}

// Appends a turn, merging it into the previous one when both have the same role (Gemini wants
// the conversation to alternate).
void appendTurn(Json& contents, const char* role, Json parts) {
  if (parts.empty()) return;
  if (!contents.empty() && contents.back()["role"] == role) {
    Json& last = contents.back()["parts"];
    for (Json& p : parts) last.push_back(std::move(p));
    return;
  }
  contents.push_back(Json{{"role", role}, {"parts", std::move(parts)}});
}

Status translateMessages(const api::ChatRequest& request, Json& body) {
  Json system_parts = Json::array();
  Json contents = Json::array();
  std::map<std::string, std::string> call_names;  // tool_call id -> function name
  bool saw_conversation = false;

  for (size_t i = 0; i < request.messages.size(); ++i) {
    const api::Message& m = request.messages[i];
    std::string mp = "messages[" + std::to_string(i) + "]";
    switch (m.role) {
      case api::Role::kSystem:
      case api::Role::kDeveloper: {
        std::string text = m.content.joinedText();
        if (!text.empty()) system_parts.push_back(Json{{"text", std::move(text)}});
        break;
      }
      case api::Role::kUser: {
        saw_conversation = true;
        Json parts = Json::array();
        if (Status s = contentParts(m.content, mp + ".content", parts); !s.ok()) return s;
        appendTurn(contents, "user", std::move(parts));
        break;
      }
      case api::Role::kAssistant: {
        saw_conversation = true;
        Json parts = Json::array();
        if (Status s = contentParts(m.content, mp + ".content", parts); !s.ok()) return s;
        if (m.content.isNull() && m.refusal && !m.refusal->empty()) {
          parts.push_back(Json{{"text", *m.refusal}});
        }
        for (size_t k = 0; k < m.tool_calls.size(); ++k) {
          const api::ToolCall& call = m.tool_calls[k];
          std::string ap = mp + ".tool_calls[" + std::to_string(k) + "].function.arguments";
          Json args = isBlank(call.arguments)
                          ? Json::object()
                          : parseJson(call.arguments, api::kMaxRequestJsonDepth);
          if (!args.is_object()) {
            return api::invalidRequest("Gemini needs tool-call arguments to be a JSON object.", ap);
          }
          Json part = {{"functionCall", {{"name", call.name}, {"args", std::move(args)}}}};
          size_t mark = call.id.find(kThoughtSignatureMark);
          if (mark != std::string::npos) {
            std::string signature = call.id.substr(mark + kThoughtSignatureMark.size());
            if (!signature.empty()) part["thoughtSignature"] = std::move(signature);
          }
          parts.push_back(std::move(part));
          call_names[call.id] = call.name;
        }
        appendTurn(contents, "model", std::move(parts));
        break;
      }
      case api::Role::kTool: {
        saw_conversation = true;
        auto it = call_names.find(m.tool_call_id);
        if (it == call_names.end()) {
          return api::invalidRequest("No earlier assistant tool call has the id '" +
                                         m.tool_call_id + "' that this tool message answers.",
                                     mp + ".tool_call_id");
        }
        Json parts = Json::array();
        parts.push_back(functionResponsePart(it->second, m.content.joinedText()));
        appendTurn(contents, "user", std::move(parts));
        break;
      }
      case api::Role::kFunction: {
        saw_conversation = true;
        Json parts = Json::array();
        parts.push_back(functionResponsePart(m.name, m.content.joinedText()));
        appendTurn(contents, "user", std::move(parts));
        break;
      }
    }
  }

  if (!saw_conversation) {
    return api::invalidRequest(
        "Gemini needs at least one user, assistant or tool message besides system messages.",
        "messages");
  }
  if (contents.empty()) {
    return api::invalidRequest("Gemini needs at least one message with non-empty content.",
                               "messages");
  }
  if (!system_parts.empty()) body["systemInstruction"] = Json{{"parts", std::move(system_parts)}};
  body["contents"] = std::move(contents);
  return {};
}

Status translateGenerationConfig(const api::ChatRequest& request, Json& body) {
  Json config = Json::object();
  if (request.temperature) config["temperature"] = *request.temperature;
  if (request.top_p) config["topP"] = *request.top_p;
  if (std::optional<int64_t> max = request.maxOutputTokens()) {
    // Gemini's field is an int32; anything above that is "no practical limit".
    config["maxOutputTokens"] = std::min<int64_t>(*max, std::numeric_limits<int32_t>::max());
  }
  if (!request.stop.empty()) config["stopSequences"] = request.stop;
  if (request.n != 1) config["candidateCount"] = request.n;
  if (request.seed) {
    if (*request.seed < std::numeric_limits<int32_t>::min() ||
        *request.seed > std::numeric_limits<int32_t>::max()) {
      return api::invalidRequest(
          "Gemini takes a 32-bit seed; " + std::to_string(*request.seed) + " is out of range.",
          "seed");
    }
    config["seed"] = *request.seed;
  }
  // Zero penalties are the default; not sending them keeps models without penalty support
  // usable.
  if (request.presence_penalty && *request.presence_penalty != 0) {
    config["presencePenalty"] = *request.presence_penalty;
  }
  if (request.frequency_penalty && *request.frequency_penalty != 0) {
    config["frequencyPenalty"] = *request.frequency_penalty;
  }
  if (request.logprobs) {
    config["responseLogprobs"] = true;
    if (request.top_logprobs && *request.top_logprobs > 0) {
      config["logprobs"] = *request.top_logprobs;
    }
  }
  if (request.response_format) {
    const api::ResponseFormat& rf = *request.response_format;
    if (rf.type == api::ResponseFormat::Type::kJsonObject) {
      config["responseMimeType"] = "application/json";
    } else if (rf.type == api::ResponseFormat::Type::kJsonSchema) {
      config["responseMimeType"] = "application/json";
      if (rf.json_schema.is_object()) {
        auto schema = rf.json_schema.find("schema");
        if (schema != rf.json_schema.end() && !schema->is_null()) {
          config["responseJsonSchema"] = *schema;
        }
      }
    }
  }
  if (!config.empty()) body["generationConfig"] = std::move(config);
  return {};
}

Status translateTools(const api::ChatRequest& request, Json& body) {
  if (request.tools.empty()) {
    if (request.tool_choice && (request.tool_choice->mode == api::ToolChoice::Mode::kRequired ||
                                request.tool_choice->mode == api::ToolChoice::Mode::kFunction)) {
      return api::invalidRequest("'tool_choice' requires 'tools'.", "tool_choice");
    }
    return {};
  }
  if (request.parallel_tool_calls && !*request.parallel_tool_calls) {
    return api::invalidRequest(
        "Gemini cannot be limited to one tool call per turn; 'parallel_tool_calls': false is "
        "not supported.",
        "parallel_tool_calls");
  }
  Json declarations = Json::array();
  for (const api::Tool& tool : request.tools) {
    Json d = {{"name", tool.name}};
    if (!tool.description.empty()) d["description"] = tool.description;
    if (!tool.parameters.is_null()) d["parametersJsonSchema"] = tool.parameters;
    declarations.push_back(std::move(d));
  }
  body["tools"] = Json::array({Json{{"functionDeclarations", std::move(declarations)}}});

  if (request.tool_choice) {
    Json fc;
    switch (request.tool_choice->mode) {
      case api::ToolChoice::Mode::kNone:
        fc["mode"] = "NONE";
        break;
      case api::ToolChoice::Mode::kAuto:
        fc["mode"] = "AUTO";
        break;
      case api::ToolChoice::Mode::kRequired:
        fc["mode"] = "ANY";
        break;
      case api::ToolChoice::Mode::kFunction:
        fc["mode"] = "ANY";
        fc["allowedFunctionNames"] = Json::array({request.tool_choice->function_name});
        break;
    }
    body["toolConfig"] = Json{{"functionCallingConfig", std::move(fc)}};
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Response: Gemini -> OpenAI

std::string describe(const Json& j) { return std::string(api::describeJsonType(j)); }

Status wrongType(const std::string& path, const char* expected, const Json& j) {
  return upstream("'" + path + "' is " + describe(j) + ", expected " + expected);
}

// "path.key", or "key" at the top level.
std::string fieldPath(const std::string& path, const char* key) {
  return path.empty() ? std::string(key) : path + "." + key;
}

// An optional integer field; fails when present and not an integer.
Status readCount(const Json& obj, const std::string& path, const char* key, int64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_number_integer()) return wrongType(fieldPath(path, key), "an integer", *it);
  out = it->get<int64_t>();
  return {};
}

// An optional string field; fails when present and not a string.
Status readString(const Json& obj, const std::string& path, const char* key,
                  std::optional<std::string>& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) return wrongType(fieldPath(path, key), "a string", *it);
  out = it->get<std::string>();
  return {};
}

// usageMetadata. `has_counts` tells whether any token count was present: Vertex streams send
// usageMetadata without counts until the last event.
StatusOr<api::Usage> parseUsage(const Json& u, bool& has_counts) {
  static const std::string kPath = "usageMetadata";
  if (!u.is_object()) return wrongType(kPath, "an object", u);
  int64_t prompt = -1, cached = -1, candidates = -1, thoughts = -1, total = -1;
  for (auto [key, out] :
       {std::pair{"promptTokenCount", &prompt}, std::pair{"cachedContentTokenCount", &cached},
        std::pair{"candidatesTokenCount", &candidates}, std::pair{"thoughtsTokenCount", &thoughts},
        std::pair{"totalTokenCount", &total}}) {
    if (Status s = readCount(u, kPath, key, *out); !s.ok()) return s;
  }
  has_counts = prompt >= 0 || candidates >= 0 || thoughts >= 0 || total >= 0;
  auto orZero = [](int64_t v) { return v < 0 ? 0 : v; };
  api::Usage usage;
  usage.prompt_tokens = orZero(prompt);
  usage.cached_prompt_tokens = orZero(cached);
  usage.reasoning_tokens = orZero(thoughts);
  usage.completion_tokens = orZero(candidates) + orZero(thoughts);
  usage.total_tokens = total >= 0 ? total : usage.prompt_tokens + usage.completion_tokens;
  return usage;
}

bool isFiltered(std::string_view reason) {
  return reason == "SAFETY" || reason == "RECITATION" || reason == "BLOCKLIST" ||
         reason == "PROHIBITED_CONTENT" || reason == "SPII" || reason == "IMAGE_SAFETY" ||
         reason == "IMAGE_PROHIBITED_CONTENT" || reason == "IMAGE_RECITATION" ||
         reason == "MODEL_ARMOR";
}

std::string openaiFinishReason(std::string_view reason, bool has_tool_calls) {
  if (reason == "MAX_TOKENS") return "length";
  if (isFiltered(reason)) return "content_filter";
  return has_tool_calls ? "tool_calls" : "stop";
}

StatusOr<api::TokenLogprob> parseLogprobCandidate(const Json& c, const std::string& path) {
  if (!c.is_object()) return wrongType(path, "an object", c);
  api::TokenLogprob lp;
  auto token = c.find("token");
  if (token != c.end()) {
    if (!token->is_string()) return wrongType(path + ".token", "a string", *token);
    lp.token = token->get<std::string>();
  }
  auto value = c.find("logProbability");
  if (value != c.end()) {
    if (!value->is_number()) return wrongType(path + ".logProbability", "a number", *value);
    lp.logprob = value->get<double>();
  }
  return lp;
}

StatusOr<std::vector<api::TokenLogprob>> parseLogprobs(const Json& r, const std::string& path) {
  if (!r.is_object()) return wrongType(path, "an object", r);
  std::vector<api::TokenLogprob> out;
  auto chosen = r.find("chosenCandidates");
  if (chosen == r.end()) return out;
  if (!chosen->is_array()) return wrongType(path + ".chosenCandidates", "an array", *chosen);
  const Json* top = nullptr;
  auto top_it = r.find("topCandidates");
  if (top_it != r.end()) {
    if (!top_it->is_array()) return wrongType(path + ".topCandidates", "an array", *top_it);
    top = &*top_it;
  }
  for (size_t i = 0; i < chosen->size(); ++i) {
    std::string cp = path + ".chosenCandidates[" + std::to_string(i) + "]";
    StatusOr<api::TokenLogprob> lp = parseLogprobCandidate((*chosen)[i], cp);
    if (!lp.ok()) return lp.status();
    if (top != nullptr && i < top->size()) {
      std::string tp = path + ".topCandidates[" + std::to_string(i) + "]";
      const Json& step = (*top)[i];
      if (!step.is_object()) return wrongType(tp, "an object", step);
      auto cands = step.find("candidates");
      if (cands != step.end()) {
        if (!cands->is_array()) return wrongType(tp + ".candidates", "an array", *cands);
        for (size_t k = 0; k < cands->size(); ++k) {
          StatusOr<api::TokenLogprob> alt =
              parseLogprobCandidate((*cands)[k], tp + ".candidates[" + std::to_string(k) + "]");
          if (!alt.ok()) return alt.status();
          lp->top_logprobs.push_back(api::TopLogprob{alt->token, alt->logprob});
        }
      }
    }
    out.push_back(std::move(lp).value());
  }
  return out;
}

// One candidate, read into OpenAI's terms.
struct CandidateView {
  int index = 0;
  std::string text;  // non-thought text parts, joined
  std::vector<api::ToolCall> calls;
  std::optional<std::string> finish;  // Gemini's finishReason, when the candidate finished
  std::optional<std::vector<api::TokenLogprob>> logprobs;
};

StatusOr<CandidateView> parseCandidate(const Json& c, size_t position) {
  std::string path = "candidates[" + std::to_string(position) + "]";
  if (!c.is_object()) return wrongType(path, "an object", c);
  CandidateView view;
  view.index = static_cast<int>(position);
  auto index = c.find("index");
  if (index != c.end() && !index->is_null()) {
    if (!index->is_number_integer()) return wrongType(path + ".index", "an integer", *index);
    int64_t v = index->get<int64_t>();
    if (v < 0 || v > 1024) return upstream("'" + path + ".index' is out of range");
    view.index = static_cast<int>(v);
  }
  if (Status s = readString(c, path, "finishReason", view.finish); !s.ok()) return s;
  if (view.finish && (view.finish->empty() || *view.finish == "FINISH_REASON_UNSPECIFIED")) {
    view.finish.reset();
  }

  auto content = c.find("content");
  if (content != c.end() && !content->is_null()) {
    std::string cp = path + ".content";
    if (!content->is_object()) return wrongType(cp, "an object", *content);
    auto parts = content->find("parts");
    if (parts != content->end() && !parts->is_null()) {
      if (!parts->is_array()) return wrongType(cp + ".parts", "an array", *parts);
      for (size_t i = 0; i < parts->size(); ++i) {
        const Json& part = (*parts)[i];
        std::string pp = cp + ".parts[" + std::to_string(i) + "]";
        if (!part.is_object()) return wrongType(pp, "an object", part);
        auto thought = part.find("thought");
        if (thought != part.end() && thought->is_boolean() && thought->get<bool>()) continue;
        auto text = part.find("text");
        if (text != part.end()) {
          if (!text->is_string()) return wrongType(pp + ".text", "a string", *text);
          view.text += text->get_ref<const std::string&>();
        }
        auto fc = part.find("functionCall");
        if (fc == part.end()) continue;
        std::string fp = pp + ".functionCall";
        if (!fc->is_object()) return wrongType(fp, "an object", *fc);
        api::ToolCall call;
        auto name = fc->find("name");
        if (name == fc->end()) return upstream("missing '" + fp + ".name'");
        if (!name->is_string()) return wrongType(fp + ".name", "a string", *name);
        call.name = name->get<std::string>();
        auto args = fc->find("args");
        if (args == fc->end() || args->is_null()) {
          call.arguments = "{}";
        } else if (!args->is_object()) {
          return wrongType(fp + ".args", "an object", *args);
        } else {
          call.arguments = dumpJson(*args);
        }
        std::optional<std::string> id;
        if (Status s = readString(*fc, fp, "id", id); !s.ok()) return s;
        call.id = id && !id->empty() ? *id : newToolCallId();
        std::optional<std::string> signature;
        if (Status s = readString(part, pp, "thoughtSignature", signature); !s.ok()) return s;
        if (signature && !signature->empty()) {
          call.id += kThoughtSignatureMark;
          call.id += *signature;
        }
        view.calls.push_back(std::move(call));
      }
    }
  }

  auto logprobs = c.find("logprobsResult");
  if (logprobs != c.end() && !logprobs->is_null()) {
    StatusOr<std::vector<api::TokenLogprob>> lp =
        parseLogprobs(*logprobs, path + ".logprobsResult");
    if (!lp.ok()) return lp.status();
    view.logprobs = std::move(lp).value();
  }
  return view;
}

// promptFeedback.blockReason, when the prompt was blocked.
StatusOr<std::optional<std::string>> blockReason(const Json& body) {
  auto feedback = body.find("promptFeedback");
  if (feedback == body.end() || feedback->is_null()) return std::optional<std::string>();
  if (!feedback->is_object()) return wrongType("promptFeedback", "an object", *feedback);
  std::optional<std::string> reason;
  if (Status s = readString(*feedback, "promptFeedback", "blockReason", reason); !s.ok()) return s;
  if (reason && (reason->empty() || *reason == "BLOCK_REASON_UNSPECIFIED")) reason.reset();
  return reason;
}

// {"error": {...}} in place of a response: the upstream's message.
std::optional<std::string> errorMessage(const Json& body) {
  auto error = body.find("error");
  if (error == body.end() || error->is_null()) return std::nullopt;
  if (error->is_object()) {
    auto message = error->find("message");
    if (message != error->end() && message->is_string()) return message->get<std::string>();
  }
  if (error->is_string()) return error->get<std::string>();
  return dumpJson(*error);
}

// The candidates array of a body; null when absent.
StatusOr<const Json*> candidatesOf(const Json& body) {
  auto c = body.find("candidates");
  if (c == body.end() || c->is_null()) return static_cast<const Json*>(nullptr);
  if (!c->is_array()) return wrongType("candidates", "an array", *c);
  return &*c;
}

// ---------------------------------------------------------------------------------------------
// Streaming

class GeminiStreamDecoder : public StreamDecoder {
 public:
  explicit GeminiStreamDecoder(std::string model) : request_model_(std::move(model)) {}

  Status onEvent(const api::SseEvent& event, std::vector<api::ChatChunk>& out) override {
    if (isBlank(event.data)) return {};
    Json body = parseJson(event.data, kMaxUpstreamJsonDepth);
    if (body.is_discarded()) return upstream("stream event is not JSON");
    if (!body.is_object()) return upstream("stream event is " + describe(body) + ", not an object");
    if (std::optional<std::string> message = errorMessage(body)) {
      return upstream("error in the stream: " + *message);
    }
    if (!started_) {
      std::optional<std::string> id, version;
      if (Status s = readString(body, "", "responseId", id); !s.ok()) return s;
      if (Status s = readString(body, "", "modelVersion", version); !s.ok()) return s;
      id_ = id && !id->empty() ? *id : newCompletionId();
      model_ = version && !version->empty() ? *version : request_model_;
      created_ = unixNow();
      started_ = true;
    }

    auto usage = body.find("usageMetadata");
    if (usage != body.end() && !usage->is_null()) {
      bool has_counts = false;
      StatusOr<api::Usage> u = parseUsage(*usage, has_counts);
      if (!u.ok()) return u.status();
      if (has_counts) usage_ = *u;
    }

    StatusOr<const Json*> candidates = candidatesOf(body);
    if (!candidates.ok()) return candidates.status();
    if (*candidates == nullptr || (*candidates)->empty()) {
      StatusOr<std::optional<std::string>> blocked = blockReason(body);
      if (!blocked.ok()) return blocked.status();
      if (*blocked && !blocked_) {
        blocked_ = true;
        api::ChunkChoice choice;
        choice.delta.role = api::Role::kAssistant;
        choice.delta.content = "";
        choice.finish_reason = "content_filter";
        out.push_back(chunk(std::move(choice)));
      }
      return {};
    }

    for (size_t i = 0; i < (*candidates)->size(); ++i) {
      StatusOr<CandidateView> view = parseCandidate((**candidates)[i], i);
      if (!view.ok()) return view.status();
      ChoiceState& state = choices_[view->index];
      bool has_content = !view->text.empty() || !view->calls.empty() || view->finish ||
                         (view->logprobs && !view->logprobs->empty());
      if (!has_content) continue;

      api::ChunkChoice choice;
      choice.index = view->index;
      if (!state.role_sent) {
        choice.delta.role = api::Role::kAssistant;
        state.role_sent = true;
      }
      if (!view->text.empty()) choice.delta.content = std::move(view->text);
      for (api::ToolCall& call : view->calls) {
        api::ToolCallDelta d;
        d.index = state.tool_calls++;
        d.id = std::move(call.id);
        d.type = "function";
        d.name = std::move(call.name);
        d.arguments = std::move(call.arguments);
        choice.delta.tool_calls.push_back(std::move(d));
      }
      if (view->logprobs && !view->logprobs->empty()) choice.logprobs = std::move(view->logprobs);
      if (view->finish && !state.finished) {
        state.finished = true;
        finished_any_ = true;
        choice.finish_reason = openaiFinishReason(*view->finish, state.tool_calls > 0);
      }
      out.push_back(chunk(std::move(choice)));
    }
    return {};
  }

  StatusOr<api::ChatResponse> finish() override {
    if (!finished_any_ && !blocked_) {
      return upstream("the stream ended before any candidate finished");
    }
    api::ChatResponse summary;
    summary.id = id_;
    summary.created = created_;
    summary.model = model_;
    summary.usage = usage_;
    return summary;
  }

 private:
  struct ChoiceState {
    bool role_sent = false;
    bool finished = false;
    int tool_calls = 0;  // tool calls sent so far; the next one's index
  };

  api::ChatChunk chunk(api::ChunkChoice choice) const {
    api::ChatChunk c;
    c.id = id_;
    c.created = created_;
    c.model = model_;
    c.choices.push_back(std::move(choice));
    return c;
  }

  std::string request_model_;
  bool started_ = false;
  std::string id_;
  std::string model_;
  int64_t created_ = 0;
  std::map<int, ChoiceState> choices_;
  std::optional<api::Usage> usage_;
  bool blocked_ = false;
  bool finished_any_ = false;
};

}  // namespace

std::string vertexBaseUrl(const std::string& project, const std::string& location) {
  std::string host = location == "global" ? "https://aiplatform.googleapis.com"
                                          : "https://" + location + "-aiplatform.googleapis.com";
  return host + "/v1/projects/" + project + "/locations/" + location + "/publishers/google";
}

api::StatusOr<api::Json> toGeminiRequest(const api::ChatRequest& request) {
  for (const auto& [key, value] : request.extra.items()) {
    if (value.is_null()) continue;
    return api::invalidRequest("'" + key + "' is not supported by Gemini.", key);
  }
  if (!request.logit_bias.empty()) {
    return api::invalidRequest("'logit_bias' is not supported by Gemini.", "logit_bias");
  }
  Json body = Json::object();
  if (Status s = translateMessages(request, body); !s.ok()) return s;
  if (Status s = translateGenerationConfig(request, body); !s.ok()) return s;
  if (Status s = translateTools(request, body); !s.ok()) return s;
  return body;
}

api::StatusOr<api::ChatResponse> fromGeminiResponse(const api::Json& body,
                                                    const std::string& model) {
  if (!body.is_object()) return upstream("response is " + describe(body) + ", not an object");
  if (std::optional<std::string> message = errorMessage(body)) {
    return upstream("error in the response: " + *message);
  }
  api::ChatResponse r;
  std::optional<std::string> id, version;
  if (Status s = readString(body, "", "responseId", id); !s.ok()) return s;
  if (Status s = readString(body, "", "modelVersion", version); !s.ok()) return s;
  r.id = id && !id->empty() ? *id : newCompletionId();
  r.model = version && !version->empty() ? *version : model;
  r.created = unixNow();

  auto usage = body.find("usageMetadata");
  if (usage != body.end() && !usage->is_null()) {
    bool has_counts = false;
    StatusOr<api::Usage> u = parseUsage(*usage, has_counts);
    if (!u.ok()) return u.status();
    r.usage = *u;
  }

  StatusOr<const Json*> candidates = candidatesOf(body);
  if (!candidates.ok()) return candidates.status();
  if (*candidates == nullptr || (*candidates)->empty()) {
    StatusOr<std::optional<std::string>> blocked = blockReason(body);
    if (!blocked.ok()) return blocked.status();
    if (!*blocked) return upstream("missing 'candidates'");
    api::Choice choice;
    choice.message.role = api::Role::kAssistant;
    choice.message.content = api::Content::ofText("");
    choice.finish_reason = "content_filter";
    r.choices.push_back(std::move(choice));
    return r;
  }

  for (size_t i = 0; i < (*candidates)->size(); ++i) {
    StatusOr<CandidateView> view = parseCandidate((**candidates)[i], i);
    if (!view.ok()) return view.status();
    api::Choice choice;
    choice.index = view->index;
    choice.message.role = api::Role::kAssistant;
    bool has_calls = !view->calls.empty();
    if (!view->text.empty() || !has_calls) {
      choice.message.content = api::Content::ofText(std::move(view->text));
    }
    choice.message.tool_calls = std::move(view->calls);
    choice.finish_reason = openaiFinishReason(view->finish.value_or("STOP"), has_calls);
    choice.logprobs = std::move(view->logprobs);
    r.choices.push_back(std::move(choice));
  }
  return r;
}

GeminiWire::GeminiWire(GeminiWireConfig config) : config_(std::move(config)) {}

api::StatusOr<WireRequest> GeminiWire::encode(const api::ChatRequest& request) const {
  if (!isPathSafeModel(request.model)) {
    return api::invalidRequest("The model name '" + request.model +
                                   "' is not valid for Gemini: it may contain only letters, "
                                   "digits and . _ - / @ :, and no '..'.",
                               "model");
  }
  StatusOr<Json> body = toGeminiRequest(request);
  if (!body.ok()) return body.status();

  WireRequest wire;
  wire.url = config_.base_url + "/models/" + request.model +
             (request.stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
  if (!config_.api_key.empty()) {
    if (config_.bearer) {
      wire.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    } else {
      wire.headers.emplace_back("x-goog-api-key", config_.api_key);
    }
  }
  wire.body = dumpJson(*body);
  return wire;
}

api::StatusOr<api::ChatResponse> GeminiWire::decodeResponse(std::string_view body,
                                                            const api::ChatRequest& request) const {
  Json j = parseJson(body, kMaxUpstreamJsonDepth);
  if (j.is_discarded()) return upstream("response is not JSON");
  return fromGeminiResponse(j, request.model);
}

std::unique_ptr<StreamDecoder> GeminiWire::newStreamDecoder(const api::ChatRequest& request) const {
  return std::make_unique<GeminiStreamDecoder>(request.model);
}

}  // namespace routers
