// sy_scheduler_bench: what the engine's scheduler does to running streams, through Engine itself.
//
//   sy_scheduler_bench --model DIR [--threads N] [--step-tokens 64,128] [--long 2000]
//                      [--batch 8] [--decode 32] [--context 4096] [--prefix 1000]
//                      [--sections stall,batch,prefix]
//
// For each step budget (EngineOptions::step_tokens):
//   stall   one stream decodes alone (its median gap between two tokens is its normal step);
//           then a --long-token prompt arrives and is prefilled in chunks beside it. Reports the
//           stream's longest gap while that prompt was in prefill, the normal step, and one chunk
//           (the long prompt's prefill time over its number of steps), and the long prompt's
//           time to first token.
// Then once, at the first budget:
//   batch   1 stream, then --batch streams at once, none with max_tokens (each may fill the
//           --context; the engine's default KV pool), each cancelled after --decode tokens:
//           decode tokens/s of the whole engine (tokens from the last first token until every
//           stream has --decode), and how many streams ran at once.
//   prefix  time to first token of a request whose --prefix-token system prompt (random ids)
//           is new, then of one with the same system prompt and another 16-token question (the
//           prompt's whole blocks come from the prefix cache); three pairs, medians.
//
// Prompts are random token ids (the model is random too); the model directory needs a tokenizer
// (switchyard-cli make-test-model --preset gemma-3-1b --out DIR writes one).
// Record results in bench/RESULTS.md together with the command that produced them.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace {

using engine::Clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Token arrival times of one request, and its finish.
class Recorder : public engine::TokenSink {
 public:
  void onToken(const engine::TokenEvent&) override {
    std::lock_guard<std::mutex> lock(mu_);
    times_.push_back(Clock::now());
    cv_.notify_all();
  }
  void onFinish(const engine::FinishEvent& e) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_ = e;
    done_ = true;
    end_ = Clock::now();
    cv_.notify_all();
  }
  void waitTokens(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ || times_.size() >= n; });
  }
  void waitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  std::vector<Clock::time_point> times() const {
    std::lock_guard<std::mutex> lock(mu_);
    return times_;
  }
  engine::FinishEvent finish() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_;
  }
  Clock::time_point end() const {
    std::lock_guard<std::mutex> lock(mu_);
    return end_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Clock::time_point> times_;
  engine::FinishEvent finish_;
  bool done_ = false;
  Clock::time_point end_;
};

std::vector<int32_t> randomPrompt(int n, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> id(300, 20000);
  std::vector<int32_t> p(static_cast<size_t>(n));
  p[0] = 2;  // <bos>
  for (int i = 1; i < n; ++i) p[static_cast<size_t>(i)] = id(rng);
  return p;
}

engine::GenerationRequest request(std::vector<int32_t> prompt, int max_tokens) {
  engine::GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.stop_tokens.clear();
  return r;
}

std::unique_ptr<engine::Engine> makeEngine(const std::string& dir, int threads, int step_tokens,
                                           int max_batch, int context) {
  engine::EngineOptions o;
  o.model_dir = dir;
  o.threads = threads;
  o.max_batch = max_batch;
  o.max_context = context;  // kv_cache_tokens: the engine's default
  o.step_tokens = step_tokens;
  auto e = engine::Engine::create(o);
  if (!e.ok()) {
    std::fprintf(stderr, "Engine::create: %s\n", e.status().toString().c_str());
    std::exit(1);
  }
  return std::move(e).value();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void stall(const std::string& dir, int threads, int budget, int long_len, std::mt19937& rng) {
  auto e = makeEngine(dir, threads, budget, 4, 4096);
  auto a = std::make_shared<Recorder>(), b = std::make_shared<Recorder>();
  // The stream must outlast the long prompt's prefill: generous max_tokens, cancelled after.
  auto ha = e->submit(request(randomPrompt(16, rng), 4000), a);
  if (!ha.ok()) std::exit(1);
  a->waitTokens(12);
  const auto before = a->times();
  std::vector<double> gaps;
  for (size_t i = 3; i < before.size(); ++i) gaps.push_back(seconds(before[i - 1], before[i]));
  const double normal = median(gaps);
  const Clock::time_point submitted = Clock::now();
  if (!e->submit(request(randomPrompt(long_len, rng), 1), b).ok()) std::exit(1);
  b->waitDone();
  const Clock::time_point b_first = b->end();
  a->waitTokens(a->times().size() + 2);
  (*ha)->cancel();
  a->waitDone();
  double worst = 0;
  const auto t = a->times();
  for (size_t i = 1; i < t.size(); ++i) {
    if (t[i] > submitted && t[i - 1] < b_first) worst = std::max(worst, seconds(t[i - 1], t[i]));
  }
  const int chunks = (long_len + budget - 2) / (budget - 1);  // the stream takes one token a step
  const double ttft = seconds(submitted, b_first);
  const double chunk = ttft / chunks;
  std::printf(
      "stall   step_tokens %4d  normal step %7.1f ms  one chunk %7.1f ms  longest gap %7.1f ms "
      "(%.2fx normal+chunk)  %d-token prompt TTFT %.2f s\n",
      budget, normal * 1e3, chunk * 1e3, worst * 1e3, worst / (normal + chunk), long_len, ttft);
}

// Streams without max_tokens (the whole remaining context, as the API passes it), cancelled once
// each has `tokens` tokens. Sets `*running` to how many ran at once by then.
double decodeRate(engine::Engine& e, int streams, int tokens, std::mt19937& rng, int* running) {
  std::vector<std::shared_ptr<Recorder>> rs;
  std::vector<std::shared_ptr<engine::GenerationHandle>> hs;
  const int open_ended = e.maxContext() - 32;
  for (int i = 0; i < streams; ++i) {
    rs.push_back(std::make_shared<Recorder>());
    auto h = e.submit(request(randomPrompt(32, rng), open_ended), rs.back());
    if (!h.ok()) std::exit(1);
    hs.push_back(*h);
  }
  for (auto& r : rs) r->waitTokens(static_cast<size_t>(tokens));
  *running = e.stats().running;
  for (auto& h : hs) h->cancel();
  Clock::time_point start{}, end{};
  for (auto& r : rs) {
    r->waitDone();
    const auto t = r->times();
    start = std::max(start, t.front());
    end = std::max(end, t[static_cast<size_t>(tokens) - 1]);
  }
  int counted = 0;
  for (auto& r : rs) {
    for (auto tp : r->times()) counted += tp > start && tp <= end ? 1 : 0;
  }
  return counted / seconds(start, end);
}

void prefixTtft(const std::string& dir, int threads, int budget, int prefix, std::mt19937& rng) {
  auto e = makeEngine(dir, threads, budget, 4, 4096);
  auto ttft = [&](std::vector<int32_t> prompt, int* cached) {
    auto r = std::make_shared<Recorder>();
    const Clock::time_point submitted = Clock::now();
    if (!e->submit(request(std::move(prompt), 1), r).ok()) std::exit(1);
    r->waitDone();
    *cached = r->finish().cached_prompt_tokens;
    return seconds(submitted, r->times().empty() ? r->end() : r->times().front());
  };
  std::vector<double> cold, warm;
  int cached_cold = 0, cached_warm = 0;
  for (int pair = 0; pair < 3; ++pair) {
    const std::vector<int32_t> system = randomPrompt(prefix, rng);
    for (std::vector<double>* out : {&cold, &warm}) {
      std::vector<int32_t> p = system, question = randomPrompt(17, rng);
      p.insert(p.end(), question.begin() + 1, question.end());  // 16 more ids, no second <bos>
      out->push_back(ttft(p, out == &cold ? &cached_cold : &cached_warm));
    }
  }
  std::printf(
      "prefix  %d-token system prompt + 16: TTFT new %.3f s (cached %d), repeated %.3f s "
      "(cached %d): %.1fx; %lld blocks cached\n",
      prefix, median(cold), cached_cold, median(warm), cached_warm, median(cold) / median(warm),
      static_cast<long long>(e->stats().prefix_cache_blocks));
}

void batchRate(const std::string& dir, int threads, int budget, int batch, int decode, int context,
               std::mt19937& rng) {
  auto e = makeEngine(dir, threads, budget, batch, context);
  int ran1 = 0, ran = 0;
  const double one = decodeRate(*e, 1, decode, rng, &ran1);
  const double many = decodeRate(*e, batch, decode, rng, &ran);
  std::printf(
      "batch   context %d, no max_tokens: decode tokens/s: batch 1 %.1f, batch %d %.1f (%.2fx); "
      "%d of %d ran at once\n",
      e->maxContext(), one, batch, many, many / one, ran, batch);
}

std::vector<int> parseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int threads = 2, long_len = 2000, batch = 8, decode = 32, context = 4096, prefix = 1000;
  std::string sections = "stall,batch,prefix";
  std::vector<int> budgets = {128};  // the engine default
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model")
      dir = v;
    else if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--step-tokens")
      budgets = parseList(v);
    else if (a == "--long")
      long_len = std::atoi(v.c_str());
    else if (a == "--batch")
      batch = std::atoi(v.c_str());
    else if (a == "--decode")
      decode = std::atoi(v.c_str());
    else if (a == "--context")
      context = std::atoi(v.c_str());
    else if (a == "--prefix")
      prefix = std::atoi(v.c_str());
    else if (a == "--sections")
      sections = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (dir.empty() || budgets.empty() || long_len < 2 || batch < 1 || decode < 2 || context < 64 ||
      prefix < 2 || prefix > 4000) {
    std::fprintf(stderr,
                 "usage: sy_scheduler_bench --model DIR [--threads N] [--step-tokens 64,128] "
                 "[--long 2000] [--batch 8] [--decode 32] [--context 4096] [--prefix 1000] "
                 "[--sections stall,batch,prefix]\n");
    return 2;
  }
  auto wanted = [&](const char* name) { return sections.find(name) != std::string::npos; };
  std::mt19937 rng(1);
  if (wanted("stall")) {
    for (int budget : budgets) stall(dir, threads, budget, long_len, rng);
  }
  if (wanted("batch")) batchRate(dir, threads, budgets.front(), batch, decode, context, rng);
  if (wanted("prefix")) prefixTtft(dir, threads, budgets.front(), prefix, rng);
  return 0;
}
