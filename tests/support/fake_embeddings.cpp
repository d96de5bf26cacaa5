#include "tests/support/fake_embeddings.h"

#include "tests/support/fake_cloud.h"

namespace sytest {

std::vector<float> FakeEmbeddings::vectorFor(const nlohmann::json& input, int dims) {
  uint32_t h = 2166136261u;  // FNV-1a of the input's JSON text
  for (char c : input.dump()) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  std::vector<float> v(dims);
  for (int k = 0; k < dims; ++k) {
    h = h * 1664525u + 1013904223u;
    v[k] = static_cast<float>(static_cast<int>(h >> 20) - 2048) / 4096.0f;  // in [-0.5, 0.5)
  }
  return v;
}

int64_t FakeEmbeddings::tokensFor(const nlohmann::json& input) {
  if (input.is_array()) return static_cast<int64_t>(input.size());
  if (!input.is_string()) return 0;
  return std::max(1, countWords(input.get<std::string>()));
}

void FakeEmbeddings::pushError(int status, std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  errors_.emplace_back(status, std::move(message));
}

void FakeEmbeddings::setLatency(Millis latency) {
  std::lock_guard<std::mutex> lock(mu_);
  latency_ = latency;
}

int FakeEmbeddings::requestCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

nlohmann::json FakeEmbeddings::lastBody() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (requests_ == 0) return nullptr;
  nlohmann::json j = nlohmann::json::parse(last_body_, nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

int64_t FakeEmbeddings::tokensServed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_;
}

FakeEmbeddings::Turn FakeEmbeddings::begin(const std::string& body) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_;
  last_body_ = body;
  Turn t;
  t.latency = latency_;
  if (!errors_.empty()) {
    t.status = errors_.front().first;
    t.message = std::move(errors_.front().second);
    errors_.pop_front();
  }
  return t;
}

void FakeEmbeddings::served(int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  tokens_ += tokens;
}

}  // namespace sytest
