// End-to-end: the real `switchyard` binary serving a random-weight Gemma 4 checkpoint
// (`switchyard-cli make-test-model --preset gemma-4-tiny`: PLE, KV sharing, proportional RoPE,
// the real vocabulary) that carries Google's Gemma 4 chat template as `chat_template.jinja`, as
// published checkpoints do. The answers are noise; what is checked is that the gateway loads a
// Gemma 4 checkpoint, renders prompts with the checkpoint's own template (counted by the
// tokenizer CLI on the text the template must produce), honours the thinking switches and
// streams in OpenAI's shape.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"

namespace sytest {
namespace {

using std::chrono::milliseconds;

constexpr const char* kKey = "sk-gemma4-e2e-5d1a9c27";

// What Gemma 4's template renders for one user turn (tests/fixtures/chat_template/
// gemma4_chat_template.jinja): thinking off closes an empty thought channel after the generation
// prompt; thinking on opens a system turn with <|think|> instead.
std::string renderedTurn(const std::string& text, bool thinking) {
  if (thinking) {
    return "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\n" + text +
           "<turn|>\n<|turn>model\n";
  }
  return "<bos><|turn>user\n" + text + "<turn|>\n<|turn>model\n<|channel>thought\n<channel|>";
}

class Gemma4E2E : public LocalEngineSuite {
 protected:
  static void SetUpTestSuite() {
    LocalEngineConfig config;
    config.model = "gemma4";
    startSuite(kKey, /*gemma4=*/true, /*seed=*/3, config);
  }

  static HttpResponse chat(const Json& extra) {
    Json body = {{"model", "gemma4"},
                 {"max_tokens", 4},
                 {"temperature", 0},
                 {"messages", Json::array({{{"role", "user"}, {"content", "Hello there"}}})}};
    for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
    return postChat(body, milliseconds(60000));
  }

  static int promptTokens(const Json& response) {
    if (!response.is_object() || !response.contains("usage")) return -1;
    return response["usage"].value("prompt_tokens", -1);
  }
};

TEST_F(Gemma4E2E, AnswersWithTheCheckpointsOwnTemplate) {
  HttpResponse r = chat(Json::object());
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(r.header("x-switchyard-route"), "local/gemma4");
  Json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("model", ""), "gemma4");
  EXPECT_EQ(j["choices"][0].value("finish_reason", ""), "length");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string()) << r.body;
  EXPECT_EQ(j["usage"].value("completion_tokens", -1), 4);
  const int expected = tokenCount(renderedTurn("Hello there", false));
  ASSERT_GT(expected, 5);
  EXPECT_EQ(promptTokens(j), expected) << "the prompt was not rendered by the Gemma 4 template";
}

TEST_F(Gemma4E2E, ThinkingSwitchesReachTheTemplate) {
  const int off = tokenCount(renderedTurn("Hello there", false));
  const int on = tokenCount(renderedTurn("Hello there", true));
  ASSERT_NE(on, off);

  HttpResponse r = chat({{"reasoning_effort", "high"}});
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(promptTokens(r.json()), on) << r.body;

  r = chat({{"reasoning_effort", "none"}});
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(promptTokens(r.json()), off) << r.body;

  // vLLM's switch wins over reasoning_effort.
  r = chat({{"reasoning_effort", "high"}, {"chat_template_kwargs", {{"enable_thinking", false}}}});
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(promptTokens(r.json()), off) << r.body;

  r = chat({{"chat_template_kwargs", {{"enable_thinking", true}}}});
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(promptTokens(r.json()), on) << r.body;
}

TEST_F(Gemma4E2E, StreamsInOpenAIsShape) {
  HttpResponse whole = chat(Json::object());
  ASSERT_EQ(whole.status, 200) << whole.body;
  const std::string expected = whole.json()["choices"][0]["message"].value("content", "");

  HttpResponse r = chat({{"stream", true}, {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_NE(r.header("content-type").find("text/event-stream"), std::string::npos);
  std::vector<std::string> events = sseEvents(r.body);
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string streamed;
  std::string finish;
  int prompt = -1;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json c = Json::parse(events[i], nullptr, false);
    ASSERT_TRUE(c.is_object()) << events[i];
    EXPECT_EQ(c.value("object", ""), "chat.completion.chunk");
    if (!c["choices"].empty()) {
      const Json& delta = c["choices"][0]["delta"];
      if (delta.contains("content") && delta["content"].is_string()) streamed += delta["content"];
      if (c["choices"][0]["finish_reason"].is_string()) finish = c["choices"][0]["finish_reason"];
    }
    if (c.contains("usage") && c["usage"].is_object()) prompt = c["usage"].value("prompt_tokens", -1);
  }
  EXPECT_EQ(streamed, expected) << "greedy answers differ between stream and non-stream";
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(prompt, tokenCount(renderedTurn("Hello there", false)));
}

// A long system prompt sent again (with another question) is served from the engine's prefix
// cache: usage.prompt_tokens_details.cached_tokens counts the reused prompt tokens.
TEST_F(Gemma4E2E, RepeatedSystemPromptReportsCachedTokens) {
  std::string system = "You answer questions about lighthouses.";
  for (int i = 0; i < 8; ++i) system += " Keep every answer short, kind and exact.";
  auto ask = [&](const std::string& question) {
    return chat({{"messages", Json::array({{{"role", "system"}, {"content", system}},
                                           {{"role", "user"}, {"content", question}}})}});
  };
  HttpResponse first = ask("How tall is the tallest one?");
  ASSERT_EQ(first.status, 200) << first.error << "\n" << first.body;
  EXPECT_EQ(first.json()["usage"]["prompt_tokens_details"].value("cached_tokens", -1), 0);
  HttpResponse second = ask("Who keeps them?");
  ASSERT_EQ(second.status, 200) << second.error << "\n" << second.body;
  const Json usage = second.json()["usage"];
  const int cached = usage["prompt_tokens_details"].value("cached_tokens", -1);
  EXPECT_GE(cached, 64) << second.body;
  EXPECT_LT(cached, usage.value("prompt_tokens", -1));
  // The engine's count on /metrics (set at each scrape).
  const std::string metrics = httpGet(server_->url() + "/metrics").body;
  const std::string name = "switchyard_engine_prefix_cache_hit_tokens_total{provider=\"local\"} ";
  const size_t at = metrics.find(name);
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GE(std::atof(metrics.c_str() + at + name.size()), cached);
}

}  // namespace
}  // namespace sytest
