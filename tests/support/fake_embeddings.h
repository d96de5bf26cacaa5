// The embeddings endpoints of the fake cloud APIs (FakeOpenAI's POST /v1/embeddings, FakeGemini's
// models/{m}:batchEmbedContents): what both share. Vectors are a function of the input (text or
// token ids) and the size asked for; errors and latency are queued like FakeCloud's faults.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/loopback_server.h"

namespace sytest {

class FakeEmbeddings {
 public:
  // Vectors have this many values unless the request asks for another size.
  static constexpr int kDefaultDimensions = 8;

  // The vector the fakes answer for `input` (a string, or an array of token ids) at `dims`.
  static std::vector<float> vectorFor(const nlohmann::json& input, int dims);
  // The tokens FakeOpenAI reports for `input`: its words (at least 1), or its token ids.
  static int64_t tokensFor(const nlohmann::json& input);

  // The next embeddings request is answered `status` with an error body in the API's shape.
  void pushError(int status, std::string message);
  // Every embeddings request waits this long before answering (0 by default).
  void setLatency(Millis latency);

  int requestCount() const;
  nlohmann::json lastBody() const;  // null when none
  // Tokens of the answers served with status 200 (FakeOpenAI's reported usage; for Gemini,
  // which reports none, the same count of the inputs it embedded).
  int64_t tokensServed() const;

  // For the fakes: records a request and takes its error (status 0: none) and latency.
  struct Turn {
    int status = 0;
    std::string message;
    Millis latency{0};
  };
  Turn begin(const std::string& body);
  void served(int64_t tokens);

 private:
  mutable std::mutex mu_;
  std::deque<std::pair<int, std::string>> errors_;
  Millis latency_{0};
  int requests_ = 0;
  int64_t tokens_ = 0;
  std::string last_body_;
};

}  // namespace sytest
