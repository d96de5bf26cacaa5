// sy_tokenizer_bench: load time of a tokenizer.json (parsed, cold cache, warm cache) and
// encode/decode speed on ~100 KB of mixed text (every string of the tokenizer fixture: several
// scripts, code, emoji, whitespace runs), repeated until the prompt reaches the size asked for.
//
//   sy_tokenizer_bench --model DIR [--fixture FILE.jsonl] [--kb 100] [--runs 20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
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
  // Load three ways: parsing tokenizer.json with the cache off, a cold load (no cache yet: parse
  // and write it) and warm loads (cache hit). The cold load removes the cache file first.
  auto timedLoad = [&](const engine::Tokenizer::LoadOptions& options, double& ms) {
    auto t0 = std::chrono::steady_clock::now();
    auto loaded = engine::Tokenizer::loadDir(dir, options);
    ms = msSince(t0);
    return loaded;
  };
  engine::Tokenizer::LoadReport report;
  engine::Tokenizer::LoadOptions no_cache, cached;
  no_cache.use_cache = false;
  cached.report = &report;
  double first_ms = 0, parse_ms = 0, cold_ms = 0, ms = 0;
  // The first load of the process, as a server or CLI start-up sees it (a hit when an earlier run
  // left a cache).
  if (!timedLoad(cached, first_ms).ok()) return 1;
  const bool first_hit = report.cache_hit;
  auto tok = timedLoad(no_cache, parse_ms);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().message().c_str());
    return 1;
  }
  if (!report.cache_path.empty()) std::filesystem::remove(report.cache_path);
  if (!timedLoad(cached, cold_ms).ok()) return 1;
  const bool written = report.cache_written;
  std::vector<double> warm;
  for (int r = 0; r < std::max(runs / 4, 3); ++r) {
    if (!timedLoad(cached, ms).ok()) return 1;
    if (!report.cache_hit) {
      std::fprintf(stderr, "warm load %d missed the cache\n", r);
      return 1;
    }
    warm.push_back(ms);
  }
  std::sort(warm.begin(), warm.end());
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
  std::printf("load, first in this process (%s): %.0f ms\n",
              first_hit ? "cache hit" : "cache miss", first_ms);
  std::printf("load, tokenizer.json parsed (cache off): %.0f ms\n", parse_ms);
  std::printf("load, cold (parse, %s): %.0f ms\n",
              written ? "cache written" : "cache NOT written", cold_ms);
  std::printf("load, warm (cache hit), %zu runs: median %.0f ms, min %.0f ms\n", warm.size(),
              warm[warm.size() / 2], warm.front());
  std::printf("cache: %s\n", report.cache_path.c_str());
  std::printf("encode %zu bytes -> %zu tokens: first %.2f ms... median %.2f ms, min %.2f ms\n",
              corpus.size(), n_tokens, enc.back(), enc[enc.size() / 2], enc.front());
  std::printf("decode: median %.2f ms\n", dec[dec.size() / 2]);
  return 0;
}
