#include "api/responses.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "api/sse.h"

namespace api {
namespace {

ChatRequest mustParse(const Json& body) {
  auto r = parseResponsesRequest(body.dump());
  EXPECT_TRUE(r.ok()) << r.status().toString();
  return r.ok() ? std::move(r).value() : ChatRequest{};
}

std::vector<std::pair<std::string, Json>> events(const std::string& bytes) {
  SseParser parser;
  std::vector<SseEvent> raw;
  EXPECT_TRUE(parser.feed(bytes, raw));
  std::vector<std::pair<std::string, Json>> out;
  for (const SseEvent& e : raw) out.emplace_back(e.event, Json::parse(e.data));
  return out;
}

TEST(ResponsesRequest, ReadsInputItemsAndSettings) {
  Json body = {
      {"model", "m"},
      {"instructions", "Be terse."},
      {"input",
       Json::array({{{"role", "user"},
                     {"content", Json::array({{{"type", "input_text"}, {"text", "weather?"}},
                                              {{"type", "input_image"},
                                               {"image_url", "https://x/y.png"}}})}},
                    {{"type", "function_call"}, {"call_id", "call_1"}, {"name", "get"},
                     {"arguments", "{\"c\":1}"}},
                    {{"type", "function_call_output"}, {"call_id", "call_1"}, {"output", "sunny"}}})},
      {"tools", Json::array({{{"type", "function"}, {"name", "get"},
                              {"parameters", {{"type", "object"}}}}})},
      {"tool_choice", {{"type", "function"}, {"name", "get"}}},
      {"text", {{"format", {{"type", "json_schema"}, {"name", "w"},
                            {"schema", {{"type", "object"}}}, {"strict", true}}}}},
      {"max_output_tokens", 64},
      {"temperature", 0.5},
      {"reasoning", {{"effort", "low"}}},
      {"metadata", {{"k", "v"}}},
      {"store", false},
      {"stream", true}};
  ChatRequest r = mustParse(body);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, Role::kSystem);
  EXPECT_EQ(r.messages[1].role, Role::kUser);
  EXPECT_EQ(r.messages[1].content.parts[1].image_url, "https://x/y.png");
  EXPECT_EQ(r.messages[2].role, Role::kAssistant);
  ASSERT_EQ(r.messages[2].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[2].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[3].role, Role::kTool);
  EXPECT_EQ(r.messages[3].content.joinedText(), "sunny");
  EXPECT_EQ(r.tool_choice->mode, ToolChoice::Mode::kFunction);
  ASSERT_TRUE(r.response_format);
  EXPECT_EQ(r.response_format->type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(r.response_format->json_schema["name"], "w");
  EXPECT_EQ(r.max_completion_tokens, 64);
  EXPECT_EQ(r.extra["reasoning_effort"], "low");
  EXPECT_EQ(r.metadata.at("k"), "v");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ResponsesRequest, RefusesWhatIsNotCarried) {
  auto param = [](Json body) {
    auto r = parseResponsesRequest(body.dump());
    EXPECT_FALSE(r.ok()) << body.dump();
    return r.ok() ? std::string("<ok>") : r.status().param();
  };
  EXPECT_EQ(param({{"model", "m"}, {"input", "x"}, {"previous_response_id", "resp_1"}}),
            "previous_response_id");
  EXPECT_EQ(param({{"model", "m"}}), "input");
  EXPECT_EQ(param({{"model", "m"}, {"input", "x"}, {"max_output_tokens", 0}}), "max_output_tokens");
  EXPECT_EQ(param({{"model", "m"}, {"input", Json::array({{{"role", "robot"}, {"content", "x"}}})}}),
            "input[0].role");
}

TEST(ResponsesRequest, ATypeThatIsNotAStringIsAnInvalidType) {
  auto error = [](const char* body) {
    auto r = parseResponsesRequest(body);
    EXPECT_FALSE(r.ok()) << body;
    return r.ok() ? std::string("<ok>") : r.status().param() + " " + r.status().openaiCode();
  };
  EXPECT_EQ(error(R"({"model":"m","input":[{"type":1}]})"), "input[0].type invalid_type");
  EXPECT_EQ(error(R"({"model":"m","input":"x","tools":[{"type":1}]})"),
            "tools[0].type invalid_type");
  EXPECT_EQ(error(R"({"model":"m","input":"x","tool_choice":{"type":[]}})"),
            "tool_choice.type invalid_type");
  EXPECT_EQ(error(R"({"model":"m","input":"x","text":{"format":{"type":false}}})"),
            "text.format.type invalid_type");
  // A null type is an absent one: a message item.
  EXPECT_TRUE(parseResponsesRequest(
                  R"({"model":"m","input":[{"type":null,"role":"user","content":"x"}]})")
                  .ok());
}

ChatChunk delta(std::function<void(Delta&)> fill, std::optional<std::string> finish = {}) {
  ChatChunk c;
  ChunkChoice& ch = c.choices.emplace_back();
  fill(ch.delta);
  ch.finish_reason = std::move(finish);
  return c;
}

TEST(ResponsesStream, EventSequenceWithSequenceNumbers) {
  ResponsesStreamWriter w(Json{{"model", "m"}, {"input", "x"}}, "resp_1", "m", 1700000000);
  std::string out;
  out += w.chunk(delta([](Delta& d) { d.content = "Hi"; }));
  out += w.chunk(delta([](Delta& d) { d.content = " there"; }));
  out += w.chunk(delta([](Delta& d) {
    d.tool_calls.push_back(ToolCallDelta{0, "call_1", "function", "get", "{\"a\":"});
  }));
  out += w.chunk(delta([](Delta& d) {
    d.tool_calls.push_back(ToolCallDelta{0, std::nullopt, std::nullopt, std::nullopt, "1}"});
  }, "tool_calls"));
  Usage u;
  u.prompt_tokens = 7;
  u.completion_tokens = 3;
  out += w.finish(u);
  auto ev = events(out);
  std::vector<std::string> names;
  for (size_t i = 0; i < ev.size(); ++i) {
    names.push_back(ev[i].first);
    EXPECT_EQ(ev[i].second["type"], ev[i].first);
    EXPECT_EQ(ev[i].second["sequence_number"], i);
  }
  const std::vector<std::string> expected = {
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added",
      "response.output_text.delta", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.delta", "response.function_call_arguments.done",
      "response.output_item.done", "response.completed"};
  ASSERT_EQ(names, expected);
  EXPECT_EQ(ev[6].second["text"], "Hi there");
  EXPECT_EQ(ev[12].second["arguments"], "{\"a\":1}");
  const Json& done = ev.back().second["response"];
  EXPECT_EQ(done["status"], "completed");
  ASSERT_EQ(done["output"].size(), 2u);
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "Hi there");
  EXPECT_EQ(done["output"][1]["call_id"], "call_1");
  EXPECT_EQ(done["usage"]["input_tokens"], 7);
  EXPECT_EQ(done["usage"]["total_tokens"], 10);
}

TEST(ResponsesStream, ErrorEventThenFailed) {
  ResponsesStreamWriter w(Json{{"model", "m"}, {"input", "x"}}, "resp_1", "m", 1);
  std::string out = w.chunk(delta([](Delta& d) { d.content = "Hi"; }));
  out += w.error(Status(ErrorCode::kUpstreamTimeout, "slow"));
  auto ev = events(out);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[ev.size() - 2].first, "error");
  EXPECT_EQ(ev[ev.size() - 2].second["message"], "slow");
  EXPECT_EQ(ev.back().first, "response.failed");
  EXPECT_EQ(ev.back().second["response"]["status"], "failed");
}

TEST(ResponsesResponse, MessageAndFunctionCallItems) {
  ChatResponse r;
  Choice& c = r.choices.emplace_back();
  c.message.tool_calls.push_back(ToolCall{"call_9", "function", "get", "{}"});
  c.finish_reason = "tool_calls";
  Json body = Json::parse(serializeResponse(r, Json{{"instructions", "I"}, {"input", "x"}},
                                            "resp_7", "m", 5));
  EXPECT_EQ(body["object"], "response");
  EXPECT_EQ(body["status"], "completed");
  EXPECT_EQ(body["instructions"], "I");
  ASSERT_EQ(body["output"].size(), 1u);
  EXPECT_EQ(body["output"][0]["type"], "function_call");
  EXPECT_EQ(body["output"][0]["call_id"], "call_9");
  c.finish_reason = "length";
  c.message.tool_calls.clear();
  c.message.content = Content::ofText("cut");
  body = Json::parse(serializeResponse(r, Json::object(), "resp_7", "m", 5));
  EXPECT_EQ(body["status"], "incomplete");
  EXPECT_EQ(body["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(body["output"][0]["status"], "incomplete");
  EXPECT_EQ(body["output"][0]["content"][0]["text"], "cut");
}

TEST(ResponsesResponse, EchoesStoreAndPreviousResponseId) {
  ChatResponse r;
  r.choices.emplace_back().message.content = Content::ofText("hi");
  Json body = Json::parse(serializeResponse(r, Json{{"input", "x"}}, "resp_7", "m", 5));
  EXPECT_EQ(body["store"], true);  // OpenAI's default
  EXPECT_TRUE(body["previous_response_id"].is_null());
  body = Json::parse(serializeResponse(
      r, Json{{"input", "x"}, {"store", false}, {"previous_response_id", "resp_1"}}, "resp_7",
      "m", 5));
  EXPECT_EQ(body["store"], false);
  EXPECT_EQ(body["previous_response_id"], "resp_1");
}

TEST(ResponsesResponse, StreamKeepsItsFinalResponse) {
  ResponsesStreamWriter w(Json{{"input", "x"}}, "resp_3", "m", 5);
  EXPECT_TRUE(w.finalResponse().is_null());
  ChatChunk c;
  c.choices.emplace_back().delta.content = "hey";
  w.chunk(c);
  w.finish(Usage{});
  EXPECT_EQ(w.finalResponse()["id"], "resp_3");
  EXPECT_EQ(w.finalResponse()["status"], "completed");
  EXPECT_EQ(w.finalResponse()["output"][0]["content"][0]["text"], "hey");
}

TEST(ResponsesRequest, InputItemsOfAStringOrItems) {
  EXPECT_EQ(inputItems(Json("hi")),
            Json::parse(R"([{"type":"message","role":"user","content":"hi"}])"));
  Json items = Json::parse(R"([{"type":"function_call_output","call_id":"c","output":"o"}])");
  EXPECT_EQ(inputItems(items), items);
  EXPECT_EQ(inputItems(Json()), Json::array());
}

}  // namespace
}  // namespace api

namespace api {
namespace {

// What only the Responses API carries is read, kept for a native target, and refused by a
// translation, naming it.
TEST(ResponsesRequest, WhatOnlyTheResponsesApiCarriesIsKeptAndRefusedByATranslation) {
  auto refused = [](Json body) {
    ChatRequest r = mustParse(body);
    EXPECT_EQ(r.native_api, kResponsesApi);
    Status s = refuseUntranslated(r);
    EXPECT_FALSE(s.ok()) << body.dump();
    EXPECT_EQ(s.code(), ErrorCode::kInvalidRequest);
    return s.param();
  };
  EXPECT_EQ(refused({{"model", "m"}, {"input", "x"},
                     {"tools", Json::array({{{"type", "web_search"}}})}}),
            "tools[0]");
  EXPECT_EQ(refused({{"model", "m"}, {"input", "x"}, {"bogus", 1}}), "bogus");
  EXPECT_EQ(refused({{"model", "m"}, {"input", "x"}, {"service_tier", "flex"}}), "service_tier");
  EXPECT_EQ(refused({{"model", "m"},
                     {"input", Json::array({{{"role", "user"},
                                             {"content", Json::array({{{"type", "input_file"},
                                                                       {"file_id", "f"}}})}}})}}),
            "input[0].content[0]");
  EXPECT_EQ(refused({{"model", "m"},
                     {"input", Json::array({{{"type", "computer_call_output"}, {"call_id", "c"}}})}}),
            "input[0]");

  // include, truncation, reasoning items: a translation leaves them out.
  const std::string body =
      R"({"model":"m","input":[{"type":"reasoning","id":"rs_1","summary":[]},)"
      R"({"role":"user","content":"hi"}],"include":["reasoning.encrypted_content"],)"
      R"("truncation":"auto","reasoning":{"effort":"low","summary":"auto"}})";
  auto r = parseResponsesRequest(body);
  ASSERT_TRUE(r.ok()) << r.status().toString();
  EXPECT_TRUE(refuseUntranslated(*r).ok());
  EXPECT_EQ(r->messages.size(), 1u);
  ASSERT_TRUE(r->native_body);
  EXPECT_EQ(*r->native_body, body) << "the body goes with the request as it came";
  EXPECT_EQ(r->extra["reasoning_effort"], "low");
  EXPECT_FALSE(parseResponsesRequest(R"({"model":"m","input":"x","service_tier":3})").ok());
}

TEST(ResponsesNative, AnUpstreamResponseKeepsItsBytesButForTheGatewaysMembers) {
  const std::string upstream =
      R"({"id":"resp_up","object":"response","created_at":1,"model":"gpt-5-2025",)"
      R"("output":[{"type":"reasoning","id":"rs_1","encrypted_content":"gA=="}],)"
      R"("store":false,"previous_response_id":null,"usage":{"input_tokens":1.0e0}})";
  const Json request = {{"model", "gpt-5"}, {"previous_response_id", "resp_gw0"}};
  auto owned = ownedResponse(upstream, request, "resp_gw1", "gpt-5");
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(*owned,
            R"({"id":"resp_gw1","model":"gpt-5","store":true,"previous_response_id":"resp_gw0",)"
            R"("background":false,"object":"response","created_at":1,)"
            R"("output":[{"type":"reasoning","id":"rs_1","encrypted_content":"gA=="}],)"
            R"("usage":{"input_tokens":1.0e0}})");
  EXPECT_FALSE(ownedResponse("[]", request, "resp_gw1", "gpt-5").ok());
}

TEST(ResponsesNative, UpstreamEventsGoOnWithTheGatewaysIdAndTheirSequenceNumbers) {
  const Json request = {{"model", "gpt-5"}, {"input", "hi"}, {"stream", true}};
  ResponsesStreamWriter w(request, "resp_gw", "gpt-5", 5);
  ChatChunk first;
  first.native =
      "event: response.created\n"
      R"(data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_up","model":"gpt-5-2025","status":"in_progress","store":false,"output":[]}})"
      "\n\n"
      "event: response.output_text.delta\n"
      R"(data: {"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_up","output_index":0,"content_index":0,"delta":"Hi"})"
      "\n\n";
  const std::string out = w.chunk(first);
  auto ev = events(out);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].first, "response.created");
  EXPECT_EQ(ev[0].second["response"]["id"], "resp_gw");
  EXPECT_EQ(ev[0].second["response"]["model"], "gpt-5");
  EXPECT_EQ(ev[0].second["response"]["store"], true);
  // An event without a response object goes on byte for byte.
  EXPECT_NE(out.find(R"(data: {"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_up")"),
            std::string::npos);

  // The end: response.completed, its Response kept (for the store) with the gateway's id.
  const std::string end = w.finish(
      std::nullopt,
      "event: response.completed\n"
      R"(data: {"type":"response.completed","sequence_number":2,"response":{"id":"resp_up","status":"completed","output":[{"type":"message","id":"msg_up"}]}})"
      "\n\n");
  ASSERT_EQ(events(end).size(), 1u);
  EXPECT_EQ(w.finalResponse()["id"], "resp_gw");
  EXPECT_EQ(w.finalResponse()["output"][0]["id"], "msg_up");

  // A stream that breaks after the upstream's events ends with error and response.failed,
  // numbered on from the upstream's.
  ResponsesStreamWriter broken(request, "resp_gw", "gpt-5", 5);
  broken.chunk(first);
  auto tail = events(broken.error(Status(ErrorCode::kUpstreamError, "the upstream went away")));
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].first, "error");
  EXPECT_EQ(tail[0].second["sequence_number"], 2);
  EXPECT_EQ(tail[1].first, "response.failed");
  EXPECT_EQ(tail[1].second["sequence_number"], 3);
  EXPECT_EQ(tail[1].second["response"]["id"], "resp_gw");
}

}  // namespace
}  // namespace api
