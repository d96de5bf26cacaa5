// sy_grammar_bench: constrained decoding speed at the real Gemma 3 vocabulary (262,145 ids).
// Reports the VocabIndex build time (once per tokenizer), each schema's compile time, and the
// time of one step's token mask (Matcher::fillMask over the whole vocabulary) and of accepting
// the chosen token, over seeded random generations of a schema suite: mean, p50, p99 and max.
// Each step draws uniformly among the allowed tokens, half the time only among the ones that
// are not plain string content (so that strings end), as in tests/engine/grammar_test.cpp.
// Then tool calls: a forced call's mask (Gemma 4's syntax) and free text's in which calls may
// start (tool_choice auto), and what compiling those grammars costs per request against taking
// them from the cache. Last, a whole Sampler::sample step (temperature 1, noise logits) with
// and without a grammar, in a state where the mask refuses almost everything and in one where
// it allows almost all.
//
//   sy_grammar_bench --model DIR [--runs 20] [--seed 1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/grammar.h"
#include "engine/grammar/matcher.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace {

using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

double usSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::micro>(SteadyClock::now() - t).count();
}

std::vector<std::pair<std::string, Json>> suite() {
  return {
      {"flat", Json::parse(R"({"type":"object","properties":{"name":{"type":"string"},
          "age":{"type":"integer"},"score":{"type":"number"},"ok":{"type":"boolean"}},
          "required":["name","age","score","ok"],"additionalProperties":false})")},
      {"nested", Json::parse(R"({"type":"object","properties":{"user":{"type":"object",
          "properties":{"id":{"type":"integer"},"address":{"type":"object","properties":{
          "city":{"type":"string"},"zip":{"type":["string","null"]}},"required":["city","zip"],
          "additionalProperties":false}},"required":["id","address"],
          "additionalProperties":false}},"required":["user"],"additionalProperties":false})")},
      {"arrays", Json::parse(R"({"type":"object","properties":{"tags":{"type":"array",
          "items":{"type":"string"},"maxItems":8},"pairs":{"type":"array","items":{"type":"object",
          "properties":{"k":{"type":"string"},"v":{"type":"integer"}},"required":["k","v"],
          "additionalProperties":false},"maxItems":6}},"required":["tags","pairs"],
          "additionalProperties":false})")},
      {"enums", Json::parse(R"({"type":"object","properties":{"color":{"enum":["red","green",
          "blue"]},"size":{"enum":[1,12,123,null]},"kind":{"const":"fixed"}},
          "required":["color","size","kind"],"additionalProperties":false})")},
      {"recursive", Json::parse(R"({"$defs":{"node":{"type":"object","properties":{
          "value":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"},
          "maxItems":3}},"required":["value","children"],"additionalProperties":false}},
          "$ref":"#/$defs/node"})")},
      {"anyof", Json::parse(R"({"type":"object","properties":{"shape":{"anyOf":[
          {"type":"object","properties":{"type":{"const":"circle"},"r":{"type":"number"}},
           "required":["type","r"],"additionalProperties":false},
          {"type":"object","properties":{"type":{"const":"rect"},"label":{"type":"string"}},
           "required":["type","label"],"additionalProperties":false},
          {"type":"string"}]}},"required":["shape"],"additionalProperties":false})")},
      {"json_object", Json::parse(R"({"type":"object"})")},
  };
}

struct Stats {
  std::vector<double> us;
  void add(double v) { us.push_back(v); }
  double mean() const {
    double s = 0;
    for (double v : us) s += v;
    return us.empty() ? 0 : s / us.size();
  }
  double pct(double p) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  }
};

// Mean Sampler::sample time over `steps` calls after `prefix` (as token ids), with or without
// the grammar; -1 when the prefix's tokens do not fit the grammar.
double sampleUs(const engine::Tokenizer& t,
                std::shared_ptr<const engine::grammar::VocabIndex> vocab,
                std::shared_ptr<const engine::grammar::Grammar> g, const std::string& prefix,
                bool constrained, int steps) {
  engine::SamplingParams p;
  p.temperature = 1.0f;
  p.has_seed = true;
  if (constrained) {
    p.grammar = g;
    p.grammar_vocab = vocab;
  }
  const int32_t v = t.vocabSize();
  engine::Sampler sampler(p, v);
  engine::grammar::Matcher check(g, vocab);
  for (int32_t id : t.encode(prefix, false)) {
    if (!check.accept(id)) return -1;
    sampler.accept(id);
  }
  std::mt19937_64 rng(5);
  std::normal_distribution<float> noise(0.0f, 3.0f);
  std::vector<float> base(v), logits(v);
  for (float& x : base) x = noise(rng);
  double total = 0;
  for (int i = 0; i < steps; ++i) {
    logits = base;
    auto s0 = SteadyClock::now();
    engine::TokenChoice c = sampler.sample(logits.data(), v);
    total += usSince(s0);
    if (!c.status.ok()) return -1;
  }
  return total / steps;
}

int samplerSteps(const engine::Tokenizer& t,
                 std::shared_ptr<const engine::grammar::VocabIndex> vocab, int runs) {
  auto g = engine::grammar::compileSchema(suite()[0].second, {}, "schema");
  if (!g.ok()) return 1;
  std::printf("\nSampler::sample, temperature 1 (us per step, %d steps)\n", runs * 10);
  for (const char* prefix : {"{", "{\"age\":1,\"name\":\"Al"}) {
    const double plain = sampleUs(t, vocab, g.value(), prefix, false, runs * 10);
    const double masked = sampleUs(t, vocab, g.value(), prefix, true, runs * 10);
    if (plain < 0 || masked < 0) return 1;
    std::printf("after %-22s without grammar %8.1f   with grammar %8.1f\n", prefix, plain, masked);
  }
  return 0;
}

// Tool calls: the mask of a forced call (Gemma 4 syntax, three tools from the suite) over random
// calls, and of free text in which calls may start (tool_choice auto), over random text.
int toolSteps(const engine::Tokenizer& t, std::shared_ptr<const engine::grammar::VocabIndex> vocab,
              int runs, std::mt19937_64& rng) {
  std::vector<engine::grammar::ToolSpec> tools;
  for (int i : {0, 2, 3}) tools.push_back({suite()[i].first, suite()[i].second, {}});
  auto call = engine::grammar::compileToolCalls(tools, engine::grammar::ToolSyntax::kGemma4);
  auto text = engine::grammar::compileTextWithToolCalls(tools, 16);
  if (!call.ok() || !text.ok()) return 1;
  // What a request's tool grammar costs compiled, and taken from the cache (its canonical key
  // built from the tools, then a lookup), as StructuredOutputs::applyTools does.
  std::printf("\ntool grammars (us per request, %d requests)\n%-12s %12s %12s\n", runs * 20,
              "grammar", "compile_us", "cached_us");
  engine::grammar::GrammarCache cache;
  for (int max_calls : {-1, 16}) {
    auto compile = [&] {
      return max_calls < 0
                 ? engine::grammar::compileToolCalls(tools, engine::grammar::ToolSyntax::kGemma4)
                 : engine::grammar::compileTextWithToolCalls(tools, max_calls);
    };
    Stats compiled, cached;
    for (int i = 0; i < runs * 20; ++i) {
      auto s0 = SteadyClock::now();
      if (!compile().ok()) return 1;
      compiled.add(usSince(s0));
      s0 = SteadyClock::now();
      const std::string key = engine::grammar::toolGrammarKey(
          tools, engine::grammar::ToolSyntax::kGemma4, max_calls, "");
      if (!cache.getOrCompile(key, compile).ok()) return 1;
      cached.add(usSince(s0));
    }
    std::printf("%-12s %12.1f %12.1f\n", max_calls < 0 ? "tool_call" : "tool_text",
                compiled.mean(), cached.mean());
  }
  std::vector<uint64_t> mask(vocab->maskWords());
  std::printf("\ntool calls (us per mask)\n%-12s %8s %10s %10s %10s\n", "grammar", "steps",
              "mask_mean", "mask_p50", "mask_p99");
  const std::pair<const char*, std::shared_ptr<const engine::grammar::Grammar>> grammars[] = {
      {"tool_call", call.value()}, {"tool_text", text.value()}};
  for (const auto& [name, g] : grammars) {
    Stats us;
    for (int r = 0; r < runs; ++r) {
      engine::grammar::Matcher m(g, vocab);
      for (int step = 0; step < 200 && !m.finished(); ++step) {
        auto s0 = SteadyClock::now();
        m.fillMask(mask);
        us.add(usSince(s0));
        std::vector<int32_t> ids;
        for (size_t w = 0; w < mask.size(); ++w) {
          for (uint64_t b = mask[w]; b; b &= b - 1) ids.push_back(w * 64 + __builtin_ctzll(b));
        }
        int32_t id = ids[rng() % ids.size()];
        if (m.canEnd() && std::string(name) == "tool_call") id = vocab->endIds()[0];
        if (vocab->isEnd(id)) continue;  // free text: keep writing
        if (!m.accept(id)) return 1;
      }
    }
    std::printf("%-12s %8zu %10.1f %10.1f %10.1f\n", name, us.us.size(), us.mean(), us.pct(0.5),
                us.pct(0.99));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int runs = 20;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model"))
      dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--runs"))
      runs = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed"))
      seed = std::stoull(argv[i + 1]);
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: sy_grammar_bench --model DIR [--runs N] [--seed N]\n");
    return 2;
  }
  auto tok = engine::Tokenizer::loadDir(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().toString().c_str());
    return 1;
  }
  const engine::Tokenizer& t = *tok.value();
  auto t0 = SteadyClock::now();
  auto vocab = engine::grammar::VocabIndex::fromTokenizer(t, {t.eosId(), t.endOfTurnId()});
  std::printf("vocabulary %d ids, index built in %.1f ms (once per tokenizer)\n",
              vocab->vocabSize(), usSince(t0) / 1000);

  std::mt19937_64 rng(seed);
  std::vector<uint64_t> mask(vocab->maskWords());
  Stats all_mask, all_accept;
  std::printf("%-12s %10s %8s %10s %10s %10s %10s %10s\n", "schema", "compile_us", "steps",
              "mask_mean", "mask_p50", "mask_p99", "mask_max", "accept_us");
  for (auto& [name, schema] : suite()) {
    auto c0 = SteadyClock::now();
    auto g = engine::grammar::compileSchema(schema, {}, "schema");
    const double compile_us = usSince(c0);
    if (!g.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), g.status().toString().c_str());
      return 1;
    }
    Stats mask_us, accept_us;
    for (int r = 0; r < runs; ++r) {
      engine::grammar::Matcher m(g.value(), vocab);
      for (int step = 0; step < 4000 && !m.finished(); ++step) {
        auto s0 = SteadyClock::now();
        m.fillMask(mask);
        mask_us.add(usSince(s0));
        std::vector<int32_t> ids, structural;
        for (size_t w = 0; w < mask.size(); ++w) {
          for (uint64_t b = mask[w]; b; b &= b - 1) ids.push_back(w * 64 + __builtin_ctzll(b));
        }
        if (ids.empty()) {
          std::fprintf(stderr, "%s: dead end\n", name.c_str());
          return 1;
        }
        for (int32_t id : ids) {
          const std::string& bytes = vocab->bytes(id);
          if (vocab->isEnd(id) ||
              bytes.find_first_of("\"\\{}[],:0123456789") != std::string::npos) {
            structural.push_back(id);
          }
        }
        const auto& pool = (!structural.empty() && rng() % 2 == 0) ? structural : ids;
        int32_t id = pool[rng() % pool.size()];
        if (m.canEnd()) id = vocab->endIds()[0];
        auto a0 = SteadyClock::now();
        if (!m.accept(id)) {
          std::fprintf(stderr, "%s: accept refused an allowed token\n", name.c_str());
          return 1;
        }
        accept_us.add(usSince(a0));
      }
    }
    for (double v : mask_us.us) all_mask.add(v);
    for (double v : accept_us.us) all_accept.add(v);
    std::printf("%-12s %10.1f %8zu %10.1f %10.1f %10.1f %10.1f %10.2f\n", name.c_str(), compile_us,
                mask_us.us.size(), mask_us.mean(), mask_us.pct(0.5), mask_us.pct(0.99),
                mask_us.pct(1.0), accept_us.mean());
  }
  std::printf("%-12s %10s %8zu %10.1f %10.1f %10.1f %10.1f %10.2f\n", "all", "", all_mask.us.size(),
              all_mask.mean(), all_mask.pct(0.5), all_mask.pct(0.99), all_mask.pct(1.0),
              all_accept.mean());
  if (int rc = toolSteps(t, vocab, runs, rng); rc != 0) return rc;
  return samplerSteps(t, vocab, runs);
}
