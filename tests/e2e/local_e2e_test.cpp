// End-to-end: the real `switchyard` binary serving a provider of `type: local`, the embedded
// engine on a tiny random-weight Gemma 3 checkpoint (real tokenizer) that `switchyard-cli
// make-test-model` writes once per suite. Its answers are nonsense, but greedy decoding and seeded
// sampling make them reproducible, which is what these tests compare.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/engine_e2e_fixture.h"
#include "tests/support/loopback_server.h"

namespace sytest {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kKey = "sk-local-e2e-0b7c4e1f93";

// The suite's gateway: max_batch 4, max_queue 8, a 256-token context.
LocalEngineConfig localConfig(const std::string& model_dir) {
  LocalEngineConfig config;
  config.model_dir = model_dir;
  config.max_queue = 8;
  return config;
}

HeaderList auth() { return {{"Authorization", std::string("Bearer ") + kKey}}; }

Json chatBody(const std::string& text, Json extra = Json::object()) {
  Json body = {{"model", "tiny"},
               {"messages", Json::array({{{"role", "user"}, {"content", text}}})}};
  for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
  return body;
}

// The Gemma 3 chat template of one user turn (what the gateway tokenizes).
std::string renderedUserTurn(const std::string& text) {
  return "<bos><start_of_turn>user\n" + text + "<end_of_turn>\n<start_of_turn>model\n";
}

// Checks an OpenAI-shaped 400 naming `param`.
void expectInvalid(const HttpResponse& r, const std::string& param) {
  EXPECT_EQ(r.status, 400) << r.error << "\n" << r.body;
  Json j = r.json();
  ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object()) << r.body;
  EXPECT_EQ(j["error"].value("type", ""), "invalid_request_error") << r.body;
  EXPECT_EQ(j["error"].value("param", Json()).dump(), Json(param).dump()) << r.body;
  EXPECT_FALSE(j["error"].value("message", "").empty()) << r.body;
}

std::string bytesOf(const Json& entry) {
  std::string out;
  for (const Json& b : entry.at("bytes")) out += static_cast<char>(b.get<int>());
  return out;
}

class LocalE2E : public LocalEngineSuite {
 protected:
  static void SetUpTestSuite() { startSuite(kKey, /*gemma4=*/false, /*seed=*/5, localConfig("")); }

  static HttpResponse chat(const Json& body, milliseconds timeout = milliseconds(20000)) {
    return postChat(body, timeout);
  }

  // What the model answers `body` with (a 200 is required).
  static Json answer(const Json& body) {
    HttpResponse r = chat(body);
    EXPECT_EQ(r.status, 200) << r.error << "\n" << r.body;
    return r.json();
  }
  static std::string content(const Json& response) {
    if (!response.is_object() || !response.contains("choices")) return "<no answer>";
    return response["choices"][0]["message"].value("content", "<no content>");
  }

  // The prompt's token count, from the tokenizer CLI on the rendered template.
  static int promptTokens(const std::string& user_text) {
    return tokenCount(renderedUserTurn(user_text));
  }
};

TEST_F(LocalE2E, NonStreamedChatCompletion) {
  HttpResponse r = chat(chatBody("Hello there", {{"max_tokens", 8}, {"temperature", 0}}));
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_EQ(r.header("x-switchyard-route"), "local/tiny");
  EXPECT_NE(r.header("content-type").find("application/json"), std::string::npos);
  Json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("object", ""), "chat.completion");
  EXPECT_EQ(j.value("model", ""), "tiny");
  EXPECT_EQ(j.value("id", "").rfind("chatcmpl-", 0), 0u) << j.value("id", "");
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json& choice = j["choices"][0];
  EXPECT_EQ(choice.value("index", -1), 0);
  EXPECT_EQ(choice["message"].value("role", ""), "assistant");
  ASSERT_TRUE(choice["message"]["content"].is_string());
  EXPECT_EQ(choice.value("finish_reason", ""), "length");
  EXPECT_TRUE(choice["logprobs"].is_null());
  const Json& usage = j["usage"];
  const int prompt = promptTokens("Hello there");
  EXPECT_GT(prompt, 5);
  EXPECT_EQ(usage.value("prompt_tokens", -1), prompt);
  EXPECT_EQ(usage.value("completion_tokens", -1), 8);
  EXPECT_EQ(usage.value("total_tokens", -1), prompt + 8);

  // max_completion_tokens works the same way and wins over max_tokens.
  Json j2 = answer(chatBody("Hello there",
                            {{"max_tokens", 8}, {"max_completion_tokens", 3}, {"temperature", 0}}));
  EXPECT_EQ(j2["usage"].value("completion_tokens", -1), 3);
}

TEST_F(LocalE2E, StopStringEndsTheAnswer) {
  const Json greedy = {{"max_tokens", 16}, {"temperature", 0}};
  const std::string full = content(answer(chatBody("Write a poem", greedy)));
  ASSERT_GE(full.size(), 4u) << full;
  // A stop string from inside the answer, cut at character boundaries.
  size_t from = full.size() / 2, to = from + 2;
  auto cont = [&](size_t i) {
    return i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80;
  };
  while (from > 0 && cont(from)) --from;
  while (to < full.size() && cont(to)) ++to;
  const std::string stop = full.substr(from, to - from);
  Json body = chatBody("Write a poem", greedy);
  body["stop"] = Json::array({stop});
  Json j = answer(body);
  EXPECT_EQ(content(j), full.substr(0, full.find(stop)));
  EXPECT_EQ(j["choices"][0].value("finish_reason", ""), "stop");
  EXPECT_LT(j["usage"].value("completion_tokens", 99), 16);
}

TEST_F(LocalE2E, StreamedChatWithUsage) {
  const Json opts = {{"max_tokens", 6}, {"temperature", 0}};
  const std::string expected = content(answer(chatBody("Stream this", opts)));

  Json body = chatBody("Stream this", opts);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  HttpResponse r = chat(body);
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  EXPECT_NE(r.header("content-type").find("text/event-stream"), std::string::npos);
  EXPECT_EQ(r.header("x-switchyard-route"), "local/tiny");
  std::vector<std::string> events = sseEvents(r.body);
  ASSERT_GE(events.size(), 4u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<Json> chunks;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json c = Json::parse(events[i], nullptr, false);
    ASSERT_TRUE(c.is_object()) << "not a JSON chunk: " << events[i];
    chunks.push_back(std::move(c));
  }
  const std::string id = chunks[0].value("id", "");
  EXPECT_FALSE(id.empty());
  for (const Json& c : chunks) {
    EXPECT_EQ(c.value("object", ""), "chat.completion.chunk");
    EXPECT_EQ(c.value("id", ""), id);
    EXPECT_EQ(c.value("model", ""), "tiny");
  }
  // Role first, then content, then the finish, then usage alone.
  const Json& first = chunks.front();
  ASSERT_EQ(first["choices"].size(), 1u);
  EXPECT_EQ(first["choices"][0]["delta"].value("role", ""), "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["usage"].is_null());

  const Json& last = chunks.back();
  EXPECT_TRUE(last["choices"].is_array() && last["choices"].empty()) << last.dump();
  ASSERT_TRUE(last["usage"].is_object()) << last.dump();
  const int prompt = promptTokens("Stream this");
  EXPECT_EQ(last["usage"].value("prompt_tokens", -1), prompt);
  EXPECT_EQ(last["usage"].value("completion_tokens", -1), 6);
  EXPECT_EQ(last["usage"].value("total_tokens", -1), prompt + 6);

  const Json& fin = chunks[chunks.size() - 2];
  ASSERT_EQ(fin["choices"].size(), 1u);
  EXPECT_EQ(fin["choices"][0].value("finish_reason", ""), "length");
  EXPECT_TRUE(fin["usage"].is_null());

  std::string text;
  for (size_t i = 1; i + 2 < chunks.size(); ++i) {
    const Json& ch = chunks[i]["choices"][0];
    EXPECT_FALSE(ch["delta"].contains("role")) << chunks[i].dump();
    EXPECT_TRUE(ch["finish_reason"].is_null()) << chunks[i].dump();
    EXPECT_TRUE(chunks[i]["usage"].is_null());
    text += ch["delta"].value("content", "");
  }
  text += fin["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(text, expected);

  // Without include_usage no chunk carries usage and no usage chunk comes.
  body.erase("stream_options");
  HttpResponse plain = chat(body);
  ASSERT_EQ(plain.status, 200);
  std::vector<std::string> ev = sseEvents(plain.body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  Json fin2 = Json::parse(ev[ev.size() - 2], nullptr, false);
  EXPECT_EQ(fin2["choices"][0].value("finish_reason", ""), "length") << fin2.dump();
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    EXPECT_FALSE(Json::parse(ev[i], nullptr, false).contains("usage")) << ev[i];
  }
}

TEST_F(LocalE2E, LogprobsInOpenAIFormat) {
  const Json opts = {
      {"max_tokens", 5}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}};
  Json j = answer(chatBody("Give me logprobs", opts));
  const Json& lp = j["choices"][0]["logprobs"];
  ASSERT_TRUE(lp.is_object()) << j.dump();
  ASSERT_TRUE(lp["content"].is_array());
  ASSERT_EQ(lp["content"].size(), 5u);
  std::string joined;
  for (const Json& e : lp["content"]) {
    ASSERT_TRUE(e["token"].is_string()) << e.dump();
    ASSERT_TRUE(e["logprob"].is_number()) << e.dump();
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    ASSERT_TRUE(e["bytes"].is_array());
    ASSERT_EQ(e["top_logprobs"].size(), 3u) << e.dump();
    double prev = 0;
    for (size_t k = 0; k < 3; ++k) {
      const Json& t = e["top_logprobs"][k];
      ASSERT_TRUE(t["token"].is_string() && t["logprob"].is_number() && t["bytes"].is_array())
          << t.dump();
      if (k > 0) {
        EXPECT_LE(t["logprob"].get<double>(), prev);
      }
      prev = t["logprob"].get<double>();
    }
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(e["top_logprobs"][0]["bytes"], e["bytes"]);
    EXPECT_DOUBLE_EQ(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>());
    joined += bytesOf(e);
  }
  // The tokens' bytes spell the answer.
  EXPECT_EQ(joined, content(j));

  // Streamed: one entry per content chunk, the same values.
  Json body = chatBody("Give me logprobs", opts);
  body["stream"] = true;
  HttpResponse r = chat(body);
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<Json> streamed;
  for (const std::string& e : sseEvents(r.body)) {
    if (e == "[DONE]") continue;
    Json c = Json::parse(e, nullptr, false);
    ASSERT_TRUE(c.is_object()) << e;
    const Json& clp = c["choices"][0]["logprobs"];
    if (clp.is_null()) continue;
    for (const Json& entry : clp["content"]) streamed.push_back(entry);
  }
  ASSERT_EQ(streamed.size(), 5u) << r.body;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(streamed[i]["bytes"], lp["content"][i]["bytes"]);
    EXPECT_DOUBLE_EQ(streamed[i]["logprob"].get<double>(),
                     lp["content"][i]["logprob"].get<double>());
    EXPECT_EQ(streamed[i]["top_logprobs"].size(), 3u);
  }

  // logprobs without top_logprobs lists no alternatives.
  Json plain = answer(
      chatBody("Give me logprobs", {{"max_tokens", 2}, {"temperature", 0}, {"logprobs", true}}));
  ASSERT_EQ(plain["choices"][0]["logprobs"]["content"].size(), 2u) << plain.dump();
  EXPECT_TRUE(plain["choices"][0]["logprobs"]["content"][0]["top_logprobs"].empty());
}

// A byte-fallback token reports its raw byte in `bytes` (and valid UTF-8 in `token`). A logit_bias
// of 100 on <0xE2> (id 464 in the Gemma 3 vocabulary) makes the model write nothing else: three
// lone lead bytes, each shown as U+FFFD.
TEST_F(LocalE2E, ByteTokensReportTheirRawBytes) {
  Json j = answer(chatBody("bytes", {{"max_tokens", 3},
                                     {"temperature", 0},
                                     {"logit_bias", {{"464", 100}}},
                                     {"logprobs", true},
                                     {"top_logprobs", 1}}));
  EXPECT_EQ(content(j), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  const Json& entries = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(entries.size(), 3u) << j.dump();
  for (const Json& e : entries) {
    EXPECT_EQ(e["bytes"], Json::array({0xE2})) << e.dump();
    EXPECT_TRUE(e["token"].is_string());
    // Logprobs describe the model's own distribution, before the bias.
    EXPECT_LE(e["logprob"].get<double>(), e["top_logprobs"][0]["logprob"].get<double>());
  }
}

TEST_F(LocalE2E, SeedMakesSamplingReproducible) {
  auto sampled = [&](int seed) {
    return content(answer(
        chatBody("Pick some words", {{"max_tokens", 16}, {"temperature", 1.0}, {"seed", seed}})));
  };
  const std::string a = sampled(42);
  EXPECT_EQ(sampled(42), a);
  EXPECT_NE(sampled(43), a);
}

// n = 3: three choices of one prompt, choice i sampled as a request alone with seed + i; usage
// counts the prompt once and every choice's completion tokens. Streamed, the choices' chunks
// carry their index, each ends with its own finish_reason, and one usage chunk closes the stream.
TEST_F(LocalE2E, ChoicesShareOnePromptAndSumUsage) {
  const Json opts = {{"max_tokens", 12}, {"temperature", 1.0}};
  auto alone = [&](int seed) {
    Json o = opts;
    o["seed"] = seed;
    return answer(chatBody("Pick some words", o));
  };
  std::vector<Json> singles = {alone(42), alone(43), alone(44)};
  Json o = opts;
  o["seed"] = 42;
  o["n"] = 3;
  Json j = answer(chatBody("Pick some words", o));
  ASSERT_TRUE(j.is_object() && j["choices"].is_array()) << j.dump();
  ASSERT_EQ(j["choices"].size(), 3u) << j.dump();
  int completion = 0;
  for (int i = 0; i < 3; ++i) {
    const Json& choice = j["choices"][size_t(i)];
    EXPECT_EQ(choice.value("index", -1), i);
    EXPECT_EQ(choice["message"].value("content", ""), content(singles[size_t(i)])) << i;
    EXPECT_EQ(choice.value("finish_reason", ""),
              singles[size_t(i)]["choices"][0].value("finish_reason", "?"));
    completion += singles[size_t(i)]["usage"].value("completion_tokens", 0);
  }
  EXPECT_NE(content(singles[0]), content(singles[1]));
  const int prompt = promptTokens("Pick some words");
  EXPECT_EQ(j["usage"].value("prompt_tokens", -1), prompt);
  EXPECT_EQ(j["usage"].value("completion_tokens", -1), completion);
  EXPECT_EQ(j["usage"].value("total_tokens", -1), prompt + completion);

  Json body = chatBody("Pick some words", o);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  HttpResponse r = chat(body);
  ASSERT_EQ(r.status, 200) << r.error << "\n" << r.body;
  std::vector<std::string> events = sseEvents(r.body);
  ASSERT_GE(events.size(), 8u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<std::string> texts(3);
  std::vector<std::vector<std::string>> reasons(3);
  std::vector<int> roles(3, 0);
  Json usage;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json c = Json::parse(events[i], nullptr, false);
    ASSERT_TRUE(c.is_object()) << events[i];
    if (c.contains("usage") && c["usage"].is_object()) {
      EXPECT_TRUE(usage.is_null()) << "a second usage chunk: " << events[i];
      EXPECT_TRUE(c["choices"].empty()) << events[i];
      usage = c["usage"];
      continue;
    }
    ASSERT_EQ(c["choices"].size(), 1u) << events[i];
    const Json& ch = c["choices"][0];
    const int index = ch.value("index", -1);
    ASSERT_TRUE(index >= 0 && index < 3) << events[i];
    if (ch["delta"].contains("role")) ++roles[size_t(index)];
    if (ch["delta"].contains("content")) texts[size_t(index)] += ch["delta"].value("content", "");
    if (ch["finish_reason"].is_string()) {
      reasons[size_t(index)].push_back(ch["finish_reason"].get<std::string>());
    }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(roles[size_t(i)], 1) << i;
    EXPECT_EQ(texts[size_t(i)], content(singles[size_t(i)])) << i;
    EXPECT_EQ(reasons[size_t(i)],
              std::vector<std::string>{j["choices"][size_t(i)].value("finish_reason", "?")})
        << i;
  }
  ASSERT_TRUE(usage.is_object()) << r.body;
  EXPECT_EQ(usage.value("prompt_tokens", -1), prompt);
  EXPECT_EQ(usage.value("completion_tokens", -1), completion);
}

TEST_F(LocalE2E, TemperatureZeroIsDeterministic) {
  const Json body = chatBody("Be deterministic", {{"max_tokens", 10}, {"temperature", 0}});
  const std::string first = content(answer(body));
  EXPECT_EQ(content(answer(body)), first);
  // Concurrent requests are batched together and still give the same answer.
  std::vector<std::string> got(3);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = content(answer(body)); });
  }
  for (auto& t : threads) t.join();
  for (const std::string& g : got) EXPECT_EQ(g, first);
}

TEST_F(LocalE2E, RequestsTheModelCannotServeAre400) {
  Json image = {
      {"model", "tiny"},
      {"messages",
       Json::array({{{"role", "user"},
                     {"content", Json::array({{{"type", "text"}, {"text", "What is this?"}},
                                              {{"type", "image_url"},
                                               {"image_url",
                                                {{"url", "https://example.com/cat.png"}}}}})}}})}};
  expectInvalid(chat(image), "messages[0].content");

  // Tools are served (tools_e2e_test.cpp); parameters the grammar cannot enforce are a 400.
  Json tools = chatBody("Call a tool", {{"tool_choice", "required"}});
  tools["tools"] = Json::array(
      {{{"type", "function"},
        {"function",
         {{"name", "lookup"},
          {"parameters",
           {{"type", "object"},
            {"properties", {{"q", {{"type", "string"}, {"pattern", "^a"}}}}}}}}}}});
  expectInvalid(chat(tools), "tools[0].function.parameters.properties.q.pattern");

  // n choices are served (ChoicesShareOnePromptAndSumUsage) up to the engine's batch (4 here).
  expectInvalid(chat(chatBody("Five answers", {{"n", 5}})), "n");
  // response_format is served (constrained decoding, constrained_e2e_test.cpp); a schema
  // keyword the grammar cannot enforce is still a 400 naming it.
  expectInvalid(
      chat(chatBody("JSON please",
                    {{"response_format",
                      {{"type", "json_schema"},
                       {"json_schema",
                        {{"name", "x"},
                         {"schema", {{"type", "string"}, {"pattern", "^a+$"}}}}}}}})),
      "response_format.json_schema.schema.pattern");

  // The gateway still answers normally afterwards.
  EXPECT_EQ(chat(chatBody("fine", {{"max_tokens", 1}})).status, 200);
}

TEST_F(LocalE2E, PromptLongerThanTheContextIs400) {
  std::string long_text;
  for (int i = 0; i < 300; ++i) long_text += "word" + std::to_string(i) + " ";
  HttpResponse r = chat(chatBody(long_text, {{"max_tokens", 4}}));
  expectInvalid(r, "messages");
  EXPECT_NE(r.body.find("maximum context length is 256"), std::string::npos) << r.body;
}

// One request fills the engine (max_batch 1, no queue), so while it streams another is refused
// with 503; once its client hangs up the engine is free again at once, although the answer would
// have run for about a thousand more tokens.
TEST(LocalE2EDisconnect, ClientLeavingMidStreamFreesTheEngine) {
  if (!haveGemmaTokenizer()) GTEST_SKIP() << "no Gemma 3 tokenizer";
  TempDir dir;
  const std::string model_dir = dir.path() + "/tiny";
  ASSERT_EQ(makeTinyModel(model_dir, 5), "");
  LocalEngineConfig config = localConfig(model_dir);
  config.max_batch = 1;
  config.max_queue = 0;
  config.max_context = 1024;
  SwitchyardServer::Options opts;
  opts.ready_timeout = milliseconds(30000);
  std::string error;
  auto server = SwitchyardServer::start(config.yaml(hashKey(kKey)), opts, &error);
  ASSERT_TRUE(server) << error;
  const std::string url = server->url() + "/v1/chat/completions";
  Json small = chatBody("small", {{"max_tokens", 2}, {"temperature", 0}});

  Json body = chatBody("Go on forever", {{"max_tokens", 1000}, {"temperature", 0}});
  body["stream"] = true;
  std::mutex mu;
  std::condition_variable cv;
  int content_events = 0;
  std::atomic<bool> hang_up{false};
  HttpResponse streamed;
  std::thread client([&] {
    HttpClient c;
    streamed = c.stream(
        "POST", url, auth(), body.dump(),
        [&](std::string_view piece) {
          size_t n = 0;
          for (size_t p = piece.find("\"content\":\""); p != std::string_view::npos;
               p = piece.find("\"content\":\"", p + 1)) {
            ++n;
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            content_events += static_cast<int>(n);
          }
          cv.notify_all();
          return !hang_up.load();
        },
        milliseconds(60000));
  });
  bool started;
  {
    std::unique_lock<std::mutex> lock(mu);
    started = cv.wait_for(lock, milliseconds(10000), [&] { return content_events >= 3; });
  }
  if (!started) hang_up = true;
  ASSERT_TRUE(started) << "the stream never started";

  // The engine is full: a second request is refused with 503 and a retry-after.
  HttpResponse busy = httpPost(url, small.dump(), auth(), milliseconds(10000));
  EXPECT_EQ(busy.status, 503) << busy.body;
  EXPECT_FALSE(busy.header("retry-after").empty());

  hang_up = true;
  client.join();
  EXPECT_TRUE(streamed.aborted) << "the stream ended by itself: " << streamed.body.size();
  const auto left = Clock::now();
  HttpResponse after;
  bool served = waitUntil(
      [&] {
        after = httpPost(url, small.dump(), auth(), milliseconds(10000));
        if (after.status == 200) return true;
        std::this_thread::sleep_for(milliseconds(20));
        return false;
      },
      milliseconds(3000));
  EXPECT_TRUE(served) << "last answer " << after.status << ": " << after.body;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - left).count(), 3.0);
  if (::testing::Test::HasFailure()) std::cerr << server->stderrText();
}

TEST(LocalE2EStartup, BrokenCheckpointStopsTheBinaryNamingTheFile) {
  if (!haveGemmaTokenizer()) GTEST_SKIP() << "no Gemma 3 tokenizer";
  TempDir dir;
  const std::string model_dir = dir.path() + "/broken";
  ASSERT_EQ(makeTinyModel(model_dir, 1), "");
  const std::string weights = model_dir + "/model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);  // cut off mid-tensor
  const std::string config =
      dir.write("switchyard.yaml", localConfig(model_dir).yaml(hashKey(kKey)));
  RunResult r = runCommand(switchyardBin(), {"serve", "--config", config, "--port", "0"}, {},
                           std::nullopt, milliseconds(30000));
  ASSERT_FALSE(r.timed_out) << "the server started on a broken checkpoint:\n" << r.out << r.err;
  ASSERT_TRUE(r.status.exited) << "killed by signal " << r.status.signal << "\n" << r.err;
  EXPECT_NE(r.status.code, 0);
  EXPECT_NE(r.err.find(weights), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace sytest
