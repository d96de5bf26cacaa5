// sy_sampler_bench: time of one Sampler::sample step over a Gemma-sized vocabulary (262144
// logits, drawn once from a seeded normal distribution like a model's spread-out logits, with a
// few strong candidates on top), for the sampling settings that matter.
//
//   sy_sampler_bench [--vocab 262144] [--steps 200] [--sd 3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace {

struct Case {
  const char* name;
  engine::SamplingParams params;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  engine::SamplingParams p;
  p.temperature = 0;
  out.push_back({"greedy", p});
  p.top_logprobs = 5;
  out.push_back({"greedy, top_logprobs 5", p});
  p = {};
  out.push_back({"temperature 1, no filter", p});
  p.top_k = 64;
  p.top_p = 0.95f;
  out.push_back({"temperature 1, top_k 64, top_p 0.95 (Gemma defaults)", p});
  p = {};
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  out.push_back({"temperature 0.7, top_p 0.9", p});
  p = {};
  p.min_p = 0.05f;
  out.push_back({"temperature 1, min_p 0.05", p});
  p = {};
  p.top_k = 64;
  p.top_p = 0.95f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.5f;
  p.repetition_penalty = 1.1f;
  p.top_logprobs = 5;
  out.push_back({"Gemma defaults + penalties + top_logprobs 5 (500 seen ids)", p});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int vocab = 262144, steps = 200;
  double sd = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--vocab")) vocab = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--sd")) sd = std::stod(argv[i + 1]);
  }
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(sd));
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (float& x : logits) x = normal(rng);
  for (int i = 0; i < 8; ++i) logits[static_cast<size_t>(rng() % vocab)] += 12.0f - i;
  std::vector<float> scratch(logits.size());

  std::printf("vocab %d, %d steps per case, logits ~ N(0, %.1f) plus 8 strong candidates\n", vocab,
              steps, sd);
  for (const Case& c : cases()) {
    engine::SamplingParams params = c.params;
    params.has_seed = true;
    params.seed = 7;
    engine::Sampler sampler(params, vocab);
    for (int i = 0; i < 500; ++i) sampler.accept(static_cast<int32_t>(rng() % vocab));
    std::vector<double> us;
    for (int s = 0; s < steps; ++s) {
      std::copy(logits.begin(), logits.end(), scratch.begin());  // sample() writes its input
      auto t = std::chrono::steady_clock::now();
      engine::TokenChoice choice = sampler.sample(scratch.data(), vocab);
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count());
      if (choice.token < 0) {
        std::fprintf(stderr, "%s: no token\n", c.name);
        return 1;
      }
    }
    std::sort(us.begin(), us.end());
    std::printf("%-62s median %7.0f us   p90 %7.0f us\n", c.name, us[us.size() / 2],
                us[us.size() * 9 / 10]);
  }
  return 0;
}
