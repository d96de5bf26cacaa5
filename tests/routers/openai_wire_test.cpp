// OpenAIWire's pass-through of OpenAI's Responses API: the body sent (the client's bytes but
// for the gateway's members), the Response object and the event stream read back (shaped as
// OpenAI's API reference documents them), and what a translation refuses.
#include "routers/openai_wire.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/openai_json.h"
#include "api/responses.h"
#include "api/sse.h"

namespace routers {
namespace {

using api::Json;

// A client body with spacing, key order and members the typed request does not model.
const char* const kClientBody =
    R"({"model": "gpt-5",  "input": [{"role":"user","content":"first"},)"
    R"( {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAA=="},)"
    R"( {"role":"assistant","content":[{"type":"output_text","text":"ok"}]},)"
    R"( {"role":"user","content":"again"}],)"
    R"( "reasoning": {"effort":"high",  "summary":"auto"},)"
    R"( "include": ["reasoning.encrypted_content"],)"
    R"( "tools": [{"type":"web_search"}, )"
    R"({"type":"function","name":"f","parameters":{"type":"object"}}],)"
    R"( "text": {"verbosity":"low"}, "truncation": "auto", "service_tier": "flex",)"
    R"( "prompt_cache_key": "k1", "safety_identifier": "u-9", "future_field": {"a": 1.50},)"
    R"( "store": true, "background": false, "stream": false, "max_output_tokens": 900})";

api::ChatRequest responsesRequest(const std::string& body = kClientBody) {
  auto r = api::parseResponsesRequest(body);
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : api::ChatRequest{};
}

OpenAIWireConfig nativeConfig() {
  OpenAIWireConfig c;
  c.base_url = "http://up/v1";
  c.api_key = "sk-test";
  c.responses = true;
  return c;
}

TEST(OpenAIResponsesNative, TheClientsBodyGoesAsItCameButForTheGatewaysMembers) {
  api::ChatRequest req = responsesRequest();
  req.model = "gpt-5-2025-08-07";       // the routed model
  req.max_completion_tokens = 300;      // a budget lowered the cap
  req.stream = true;
  OpenAIWire wire(nativeConfig());
  auto wr = wire.encode(req);
  ASSERT_TRUE(wr.ok()) << wr.status().toString();
  EXPECT_EQ(wr->url, "http://up/v1/responses");
  EXPECT_EQ(wr->body.rfind(R"({"model":"gpt-5-2025-08-07","stream":true,"store":false,)"
                           R"("max_output_tokens":300,)",
                           0),
            0u)
      << wr->body;
  // Every other member keeps its bytes, unknown ones and reasoning items included.
  for (const char* kept :
       {R"("reasoning": {"effort":"high",  "summary":"auto"})",
        R"("include": ["reasoning.encrypted_content"])",
        R"({"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAA=="})",
        R"("tools": [{"type":"web_search"}, )", R"("text": {"verbosity":"low"})",
        R"("truncation": "auto")", R"("service_tier": "flex")", R"("prompt_cache_key": "k1")",
        R"("safety_identifier": "u-9")", R"("future_field": {"a": 1.50})"}) {
    EXPECT_NE(wr->body.find(kept), std::string::npos) << kept << "\n" << wr->body;
  }
  const Json sent = Json::parse(wr->body);
  EXPECT_FALSE(sent.contains("background"));
  EXPECT_FALSE(sent.contains("previous_response_id"));
  EXPECT_EQ(sent["store"], false);
  EXPECT_EQ(sent["input"].size(), 4u);

  // Not streamed: no stream member at all; the client's cap stays when no budget lowered it.
  req.stream = false;
  req.max_completion_tokens = 900;
  const Json plain = Json::parse(nativeResponsesBody(req).value());
  EXPECT_FALSE(plain.contains("stream"));
  EXPECT_EQ(plain["max_output_tokens"], 900);
}

TEST(OpenAIResponsesNative, TheConversationTheGatewayExpandedIsSentInFull) {
  // gateway/responses.cpp replaces previous_response_id by the stored items before parsing;
  // the body the wire sends is that one.
  api::ChatRequest req = responsesRequest(
      R"({"model":"m","input":[{"type":"message","role":"user","content":"q1"},)"
      R"({"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{}"},)"
      R"({"type":"function_call_output","call_id":"call_1","output":"21 C"}]})");
  auto body = nativeResponsesBody(req);
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find(R"({"type":"function_call_output","call_id":"call_1","output":"21 C"})"),
            std::string::npos);
  ASSERT_EQ(req.messages.size(), 3u) << "the typed request holds the same conversation";
  EXPECT_EQ(req.messages[1].tool_calls.at(0).id, "call_1");
}

TEST(OpenAIResponsesNative, WithoutTheResponsesApiARequestIsTranslatedOrRefused) {
  OpenAIWireConfig chat_only = nativeConfig();
  chat_only.responses = false;
  OpenAIWire wire(chat_only);
  // What only the Responses API carries is a 400 naming it.
  auto refused = wire.encode(responsesRequest());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), api::ErrorCode::kInvalidRequest);
  EXPECT_EQ(refused.status().param(), "future_field");  // extra members, by name
  // A plain one goes as chat completions; reasoning items are left out.
  api::ChatRequest plain = responsesRequest(
      R"({"model":"m","input":[{"type":"reasoning","id":"rs_1","summary":[]},)"
      R"({"role":"user","content":"hi"}],"include":["reasoning.encrypted_content"]})");
  auto wr = wire.encode(plain);
  ASSERT_TRUE(wr.ok()) << wr.status().toString();
  EXPECT_EQ(wr->url, "http://up/v1/chat/completions");
  const Json sent = Json::parse(wr->body);
  ASSERT_EQ(sent["messages"].size(), 1u);
  EXPECT_FALSE(sent.contains("include"));
  // A chat-completions request never goes to /responses.
  auto chat = api::parseChatRequest(R"({"model":"m","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(chat.ok());
  EXPECT_FALSE(sentAsResponses(*chat, nativeConfig()));
  EXPECT_EQ(OpenAIWire(nativeConfig()).encode(*chat)->url, "http://up/v1/chat/completions");
}

// A Response object as OpenAI's reference shows one: reasoning, a message, a function call.
const char* const kResponseBody = R"({
  "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  "object": "response",
  "created_at": 1741476777,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "model": "o3-2025-04-16",
  "output": [
    {"id": "rs_6876cf02e0bc8192b74af0fb64b715ff", "type": "reasoning",
     "summary": [{"type": "summary_text", "text": "**Checking** the weather."}],
     "encrypted_content": "gAAAAABodvTh"},
    {"type": "message", "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
     "status": "completed", "role": "assistant",
     "content": [{"type": "output_text", "text": "Let me look.", "annotations": [],
                  "logprobs": []}]},
    {"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz",
     "name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}", "status": "completed"}
  ],
  "parallel_tool_calls": true,
  "reasoning": {"effort": "medium", "summary": "auto"},
  "service_tier": "default",
  "store": false,
  "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 128},
            "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 30},
            "total_tokens": 380},
  "metadata": {}
})";

TEST(OpenAIResponsesNative, AResponseObjectIsReadForItsAnswerAndUsageAndKept) {
  OpenAIWire wire(nativeConfig());
  api::ChatRequest req = responsesRequest();
  auto r = wire.decodeResponse(kResponseBody, req);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_EQ(r->native, kResponseBody);
  EXPECT_EQ(r->model, "o3-2025-04-16");
  EXPECT_EQ(r->created, 1741476777);
  ASSERT_EQ(r->choices.size(), 1u);
  const api::Message& m = r->choices[0].message;
  EXPECT_EQ(m.content.text, "Let me look.");
  EXPECT_EQ(m.reasoning_content.value_or(""), "**Checking** the weather.");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].id, "call_12345xyz");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location":"Paris, France"})");
  EXPECT_EQ(r->choices[0].finish_reason, "tool_calls");
  ASSERT_TRUE(r->usage.has_value());
  EXPECT_EQ(r->usage->prompt_tokens, 328);
  EXPECT_EQ(r->usage->cached_prompt_tokens, 128);
  EXPECT_EQ(r->usage->completion_tokens, 52);
  EXPECT_EQ(r->usage->reasoning_tokens, 30);
  EXPECT_EQ(r->usage->total_tokens, 380);

  // The tier it ran at and the provider's own tool calls go with the usage, for billing.
  Json tiered = Json::parse(kResponseBody);
  tiered["service_tier"] = "priority";
  tiered["output"].push_back({{"type", "web_search_call"}, {"id", "ws_1"}, {"status", "completed"}});
  tiered["output"].push_back({{"type", "web_search_call"}, {"id", "ws_2"}, {"status", "completed"}});
  tiered["output"].push_back({{"type", "file_search_call"}, {"id", "fs_1"}, {"queries", {"q"}}});
  tiered["output"].push_back({{"type", "computer_call"}, {"id", "cu_1"}, {"call_id", "c"}});
  auto t = wire.decodeResponse(tiered.dump(), req);
  ASSERT_TRUE(t.ok() && t->usage) << t.status().toString();
  EXPECT_EQ(t->usage->service_tier, "priority");
  using Calls = std::vector<std::pair<std::string, int64_t>>;
  EXPECT_EQ(t->usage->server_tool_calls, (Calls{{"web_search_call", 2}, {"file_search_call", 1}}))
      << "function calls are the client's, not billed as tool calls";

  Json incomplete = Json::parse(kResponseBody);
  incomplete["status"] = "incomplete";
  incomplete["incomplete_details"] = {{"reason", "max_output_tokens"}};
  EXPECT_EQ(fromResponsesObject(incomplete)->choices[0].finish_reason, "length");
  Json failed = Json::parse(kResponseBody);
  failed["status"] = "failed";
  failed["error"] = {{"code", "server_error"}, {"message", "The model failed."}};
  auto f = fromResponsesObject(failed);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), api::ErrorCode::kUpstreamError);
  EXPECT_NE(f.status().message().find("The model failed."), std::string::npos);
  EXPECT_FALSE(wire.decodeResponse(R"({"id":"resp_1","status":"completed"})", req).ok());
  EXPECT_FALSE(wire.decodeResponse("[1]", req).ok());
}

// An event stream as OpenAI sends one: a reasoning item, text, then a function call.
const char* const kStream =
    "event: response.created\n"
    R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_up","object":"response","created_at":1741290958,"status":"in_progress","model":"o3-2025-04-16","output":[],"usage":null}})"
    "\n\n"
    "event: response.in_progress\n"
    R"(data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_up","object":"response","created_at":1741290958,"status":"in_progress","model":"o3-2025-04-16","output":[],"usage":null}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}})"
    "\n\n"
    "event: response.reasoning_summary_text.delta\n"
    R"(data: {"type":"response.reasoning_summary_text.delta","sequence_number":3,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Hmm."})"
    "\n\n"
    "event: response.output_item.done\n"
    R"(data: {"type":"response.output_item.done","sequence_number":4,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Hmm."}],"encrypted_content":"gAAA"}})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":5,"output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}})"
    "\n\n"
    "event: response.content_part.added\n"
    R"(data: {"type":"response.content_part.added","sequence_number":6,"item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}})"
    "\n\n"
    "event: response.output_text.delta\n"
    R"(data: {"type":"response.output_text.delta","sequence_number":7,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi","logprobs":[]})"
    "\n\n"
    "event: response.output_text.delta\n"
    R"(data: {"type":"response.output_text.delta","sequence_number":8,"item_id":"msg_1","output_index":1,"content_index":0,"delta":" there","logprobs":[]})"
    "\n\n"
    "event: response.output_text.done\n"
    R"(data: {"type":"response.output_text.done","sequence_number":9,"item_id":"msg_1","output_index":1,"content_index":0,"text":"Hi there","logprobs":[]})"
    "\n\n"
    "event: response.output_item.added\n"
    R"(data: {"type":"response.output_item.added","sequence_number":10,"output_index":2,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"get_weather"}})"
    "\n\n"
    "event: response.function_call_arguments.delta\n"
    R"(data: {"type":"response.function_call_arguments.delta","sequence_number":11,"item_id":"fc_1","output_index":2,"delta":"{\"city\":\"Paris\"}"})"
    "\n\n"
    "event: response.completed\n"
    R"(data: {"type":"response.completed","sequence_number":12,"response":{"id":"resp_up","object":"response","created_at":1741290958,"status":"completed","model":"o3-2025-04-16","output":[],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":48}}})"
    "\n\n";

struct Decoded {
  std::vector<api::ChatChunk> chunks;
  api::Status status;
  api::StatusOr<api::ChatResponse> summary = api::Status(api::ErrorCode::kInternal, "unset");
};

Decoded decode(const std::string& stream) {
  api::ChatRequest req = responsesRequest();
  req.stream = true;
  auto decoder = OpenAIWire(nativeConfig()).newStreamDecoder(req);
  api::SseParser parser;
  std::vector<api::SseEvent> events;
  EXPECT_TRUE(parser.feed(stream, events));
  Decoded d;
  for (const auto& e : events) {
    d.status = decoder->onEvent(e, d.chunks);
    if (!d.status.ok()) return d;
  }
  d.summary = decoder->finish();
  return d;
}

TEST(OpenAIResponsesNative, AStreamIsReadAndEveryEventGoesOnInOrder) {
  Decoded d = decode(kStream);
  ASSERT_TRUE(d.status.ok()) << d.status.toString();
  ASSERT_TRUE(d.summary.ok()) << d.summary.status().toString();
  std::string text, reasoning, handed;
  std::vector<api::ToolCallDelta> calls;
  std::optional<std::string> finish;
  for (const auto& c : d.chunks) {
    EXPECT_FALSE(c.native.empty()) << "every chunk stands for at least one event";
    handed += c.native;
    for (const auto& ch : c.choices) {
      text += ch.delta.content.value_or("");
      reasoning += ch.delta.reasoning_content.value_or("");
      for (const auto& t : ch.delta.tool_calls) calls.push_back(t);
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  handed += d.summary->native;
  EXPECT_EQ(handed, kStream);
  EXPECT_EQ(d.chunks[0].native.rfind("event: response.created\n", 0), 0u)
      << "the events before the first chunk go with it";
  EXPECT_EQ(d.chunks[0].choices.at(0).delta.role, api::Role::kAssistant);
  EXPECT_EQ(text, "Hi there");
  EXPECT_EQ(reasoning, "Hmm.");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].id.value_or(""), "call_1");
  EXPECT_EQ(calls[0].name.value_or(""), "get_weather");
  EXPECT_EQ(calls[1].arguments.value_or(""), R"({"city":"Paris"})");
  EXPECT_EQ(finish.value_or(""), "tool_calls");
  ASSERT_TRUE(d.summary->usage.has_value());
  EXPECT_EQ(d.summary->usage->prompt_tokens, 37);
  EXPECT_EQ(d.summary->usage->cached_prompt_tokens, 5);
  EXPECT_EQ(d.summary->usage->completion_tokens, 11);
  EXPECT_EQ(d.summary->usage->reasoning_tokens, 4);
  EXPECT_EQ(d.summary->id, "resp_up");
}

TEST(OpenAIResponsesNative, AStreamThatFailsOrStopsShortIsAnUpstreamError) {
  const std::string head = std::string(kStream).substr(0, std::string(kStream).find(
                                                               "event: response.output_text.done"));
  Decoded cut = decode(head);
  ASSERT_TRUE(cut.status.ok());
  ASSERT_FALSE(cut.summary.ok());
  EXPECT_EQ(cut.summary.status().code(), api::ErrorCode::kUpstreamError);

  Decoded error = decode(head + "event: error\n" +
                         R"(data: {"type":"error","code":"server_error","message":"Overloaded.",)"
                         R"("param":null,"sequence_number":9})" +
                         "\n\n");
  ASSERT_FALSE(error.status.ok());
  EXPECT_EQ(error.status.code(), api::ErrorCode::kUpstreamError);
  EXPECT_NE(error.status.message().find("Overloaded."), std::string::npos);

  Decoded failed = decode(
      head + "event: response.failed\n" +
      R"(data: {"type":"response.failed","sequence_number":9,"response":{"id":"resp_up",)"
      R"("status":"failed","error":{"code":"server_error","message":"It broke."},"output":[]}})" +
      "\n\n");
  ASSERT_FALSE(failed.status.ok());
  EXPECT_NE(failed.status.message().find("It broke."), std::string::npos);
}

// Upstream garbage that must end as an error or an answer, never as a crash or unbounded memory.
TEST(OpenAIResponsesNative, HostileStreamsAreReadSafely) {
  for (const char* completed :
       {"event: response.completed\ndata: {}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":null}\n\n",
        "data: {\"type\":\"response.incomplete\",\"response\":[1]}\n\n"}) {
    Decoded d = decode(completed);
    EXPECT_TRUE(d.status.ok()) << completed << d.status.toString();
    ASSERT_TRUE(d.summary.ok()) << completed;
    EXPECT_FALSE(d.summary->usage.has_value()) << "no usage: the call is billed by its bound";
  }
  // Events that produce nothing are held only up to a bound before the first chunk.
  std::string spam;
  const std::string one =
      "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"pad\":\"" +
      std::string(1000, 'x') + "\"}\n\n";
  while (spam.size() <= kMaxNativeHeldBytes) spam += one;
  Decoded held = decode(spam);
  ASSERT_FALSE(held.status.ok());
  EXPECT_EQ(held.status.code(), api::ErrorCode::kUpstreamError);
  EXPECT_NE(held.status.message().find("before any content"), std::string::npos);
}

TEST(OpenAIResponsesNative, TheRouteHintFieldNeverGoesUpstream) {
  api::ChatRequest req = responsesRequest(R"({"model":"m","input":"hi","route_hint":"cloud"})");
  auto body = nativeResponsesBody(req);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->find("route_hint"), std::string::npos) << *body;
}

}  // namespace
}  // namespace routers
