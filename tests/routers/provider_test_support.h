// Shared pieces of the routers tests that drive real providers against the fake cloud APIs:
// a ChatSink that records everything and can be waited on, and the three fakes behind one
// switch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/chat.h"
#include "routers/anthropic_wire.h"
#include "routers/cloud_provider.h"
#include "routers/gemini_wire.h"
#include "routers/openai_wire.h"
#include "routers/provider.h"
#include "tests/support/fake_anthropic.h"
#include "tests/support/fake_gemini.h"
#include "tests/support/fake_openai.h"

namespace sytest {

class RecordingSink : public routers::ChatSink {
 public:
  void onChunk(api::ChatChunk chunk) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) ++after_finish_;
    chunks_.push_back(std::move(chunk));
  }
  void onFinish(api::StatusOr<api::ChatResponse> result) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++finishes_;
    finished_ = true;
    finish_time_ = std::chrono::steady_clock::now();
    result_.emplace(std::move(result));
    cv_.notify_all();
  }
  void onRoute(const routers::RouteInfo& route) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++routes_;
    route_ = route;
  }

  // Waits for onFinish; false on timeout.
  bool wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_; });
  }
  const api::StatusOr<api::ChatResponse>& result() const { return *result_; }
  std::vector<api::ChatChunk> chunks() const {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }
  // The streamed content joined.
  std::string text() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& c : chunks_) {
      for (const auto& ch : c.choices) {
        if (ch.delta.content) out += *ch.delta.content;
      }
    }
    return out;
  }
  int finishes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finishes_;
  }
  int chunksAfterFinish() const {
    std::lock_guard<std::mutex> lock(mu_);
    return after_finish_;
  }
  int routes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return routes_;
  }
  routers::RouteInfo route() const {
    std::lock_guard<std::mutex> lock(mu_);
    return route_;
  }
  std::chrono::steady_clock::time_point finishTime() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_time_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::ChatChunk> chunks_;
  std::optional<api::StatusOr<api::ChatResponse>> result_;
  routers::RouteInfo route_;
  std::chrono::steady_clock::time_point finish_time_;
  bool finished_ = false;
  int finishes_ = 0;
  int after_finish_ = 0;
  int routes_ = 0;
};

enum class Api { kOpenAI, kAnthropic, kGemini };

inline std::string apiName(Api api) {
  switch (api) {
    case Api::kOpenAI: return "OpenAI";
    case Api::kAnthropic: return "Anthropic";
    case Api::kGemini: return "Gemini";
  }
  return "";
}

inline std::unique_ptr<FakeCloud> makeFake(Api api) {
  switch (api) {
    case Api::kOpenAI: return std::make_unique<FakeOpenAI>();
    case Api::kAnthropic: return std::make_unique<FakeAnthropic>();
    case Api::kGemini: return std::make_unique<FakeGemini>();
  }
  return nullptr;
}

inline std::unique_ptr<routers::WireFormat> makeWire(Api api, const std::string& base_url) {
  switch (api) {
    case Api::kOpenAI: {
      routers::OpenAIWireConfig c;
      c.base_url = base_url;
      c.api_key = "sk-test";
      return std::make_unique<routers::OpenAIWire>(c);
    }
    case Api::kAnthropic: {
      routers::AnthropicWireConfig c;
      c.base_url = base_url;
      c.api_key = "sk-ant-test";
      return std::make_unique<routers::AnthropicWire>(c);
    }
    case Api::kGemini: {
      routers::GeminiWireConfig c;
      c.base_url = base_url;
      c.api_key = "gemini-test";
      return std::make_unique<routers::GeminiWire>(c);
    }
  }
  return nullptr;
}

inline api::ChatRequest userRequest(const std::string& text, bool stream,
                                    const std::string& model = "model-x") {
  api::ChatRequest r;
  r.model = model;
  api::Message m;
  m.role = api::Role::kUser;
  m.content = api::Content::ofText(text);
  r.messages.push_back(m);
  r.stream = stream;
  return r;
}

}  // namespace sytest
