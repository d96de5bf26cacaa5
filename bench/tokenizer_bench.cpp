// sy_tokenizer_bench: load time of a tokenizer.json and encode/decode speed on ~100 KB of
// mixed text (every string of the tokenizer fixture: several scripts, code, emoji, whitespace
// runs), repeated until the prompt reaches the size asked for.
//
//   sy_tokenizer_bench --model DIR [--fixture FILE.jsonl] [--kb 100] [--runs 20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer.h"

namespace {

double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, fixture = "tests/fixtures/tokenizer/encode.jsonl";
  size_t kb = 100;
  int runs = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--fixture")) fixture = argv[i + 1];
    else if (!std::strcmp(argv[i], "--kb")) kb = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs")) runs = std::stoi(argv[i + 1]);
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: sy_tokenizer_bench --model DIR [--fixture F] [--kb N] [--runs N]\n");
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tok = engine::Tokenizer::loadDir(dir);
  double load_ms = msSince(t0);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().message().c_str());
    return 1;
  }
  std::ifstream in(fixture);
  std::string line, corpus;
  std::vector<std::string> pieces;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("text") && j["text"].is_string()) {
      pieces.push_back(j["text"].get<std::string>());
    }
  }
  if (pieces.empty()) {
    std::fprintf(stderr, "no strings in %s\n", fixture.c_str());
    return 1;
  }
  for (size_t i = 0; corpus.size() < kb * 1024; ++i) corpus += pieces[i % pieces.size()] + "\n";

  std::vector<double> enc, dec;
  size_t n_tokens = 0;
  for (int r = 0; r < runs; ++r) {
    auto t = std::chrono::steady_clock::now();
    auto ids = (*tok)->encode(corpus, false);
    enc.push_back(msSince(t));
    n_tokens = ids.size();
    t = std::chrono::steady_clock::now();
    std::string back = (*tok)->decode(ids, false);
    dec.push_back(msSince(t));
  }
  std::sort(enc.begin(), enc.end());
  std::sort(dec.begin(), dec.end());
  std::printf("load: %.0f ms\n", load_ms);
  std::printf("encode %zu bytes -> %zu tokens: first %.2f ms... median %.2f ms, min %.2f ms\n",
              corpus.size(), n_tokens, enc.back(), enc[enc.size() / 2], enc.front());
  std::printf("decode: median %.2f ms\n", dec[dec.size() / 2]);
  return 0;
}
