// sy_engine_bench: forward-pass throughput of the embedded Gemma engine on a model directory.
//
//   sy_engine_bench --model DIR [--threads N] [--prefill 128,512] [--batch 1,4] [--steps 32]
//                   [--quantize q8_0|q4_0|q4_k|q6_k]
//
// Reports load time, prefill tokens/s and time to first token per prompt length (one chunk,
// last-token logits), decode tokens/s per batch size (each sequence first prefilled with a
// 32-token prompt, then `steps` single-token steps), peak RSS, and the memory-bandwidth roofline
// for decode: every step streams all weights once (the embedding is read whole as the lm_head),
// so tokens/s per sequence cannot exceed read_bandwidth / bytes read per step. For Gemma 4 those
// bytes leave out the PLE table but one row and the experts a token does not pick
// (Model::decodeBytesPerToken). With --quantize the matrices are block-quantized on load and the
// roofline counts the bytes of their quantized rows (quant::formatForColumns decides each
// matrix's format as the backend does).
//
// A random-weight model of the real shapes comes from
//   switchyard-cli make-test-model --preset gemma-3-1b --out DIR --no-tokenizer
// (or gemma-4-e2b, gemma-4-e4b, ...; Model::load picks the family).
// Record results in bench/RESULTS.md together with the command that produced them.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/models/model.h"
#include "engine/quant/quant.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<int> parseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(std::atoi(item.c_str()));
  return out;
}

double peakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Sustained read bandwidth with `threads` threads streaming disjoint parts of a buffer much
// larger than the caches (the access pattern of a decode step), and single-thread memcpy.
struct Bandwidth {
  double read_gbs = 0;
  double memcpy_gbs = 0;
};

Bandwidth measureBandwidth(int threads) {
  const size_t bytes = size_t{1} << 30;
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> a(new uint64_t[n]), b(new uint64_t[n]);
  for (size_t i = 0; i < n; ++i) a[i] = b[i] = i;  // touch every page
  Bandwidth bw;
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        const size_t lo = n * size_t(t) / size_t(threads), hi = n * size_t(t + 1) / size_t(threads);
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = lo; i + 4 <= hi; i += 4) {
          s0 += a[i];
          s1 += a[i + 1];
          s2 += a[i + 2];
          s3 += a[i + 3];
        }
        sink += s0 + s1 + s2 + s3;
      });
    }
    for (auto& t : ts) t.join();
    best = std::max(best, double(bytes) / seconds(t0, Clock::now()) / 1e9);
  }
  bw.read_gbs = best;
  best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    std::memcpy(b.get(), a.get(), bytes);
    // memcpy reads and writes every byte.
    best = std::max(best, 2.0 * double(bytes) / seconds(t0, Clock::now()) / 1e9);
  }
  bw.memcpy_gbs = best;
  if (sink.load() == 42) std::puts("");
  return bw;
}

// Bytes one decode step reads less after quantizing on load: for every matrix the backend
// prepares, its stored bytes minus its quantized bytes, times the share a step reads (top_k / E
// for expert stacks).
double quantizedSavingGB(const std::string& dir, engine::quant::QType q) {
  auto ckpt = engine::Checkpoint::open(dir);
  if (!ckpt.ok()) return 0;
  const engine::GemmaWeights& w = (*ckpt)->weights();
  const engine::GemmaConfig& c = (*ckpt)->config();
  double saved = 0;
  auto add = [&](const engine::Weight& m, double share) {
    if (!m.data || m.shape.size() < 2) return;
    const int64_t cols = m.shape.back(), rows = m.numel() / cols;
    const auto f = engine::quant::formatForColumns(q, cols);
    if (!f) return;
    saved += share * (double(m.bytes) - double(rows) * double(engine::quant::rowBytes(*f, cols)));
  };
  add(w.embed, 1);
  add(w.per_layer_model_projection, 1);
  const double expert_share = c.moe.n_expert > 0 ? double(c.moe.top_k) / c.moe.n_expert : 1;
  for (const engine::GemmaLayerWeights& l : w.layers) {
    for (const engine::Weight* m :
         {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj,
          &l.router_proj, &l.per_layer_input_gate, &l.per_layer_projection})
      add(*m, 1);
    add(l.experts_gate_up, expert_share);
    add(l.experts_down, expert_share);
  }
  return saved / 1e9;
}

void usage() {
  std::fprintf(stderr,
               "usage: sy_engine_bench --model DIR [--threads N] [--prefill 128,512] "
               "[--batch 1,4] [--steps 32] [--quantize q8_0|q4_0|q4_k|q6_k]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir;
  int threads = 0, steps = 32;
  std::vector<int> prefill = {128, 512}, batches = {1, 4};
  std::optional<engine::quant::QType> quantize;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model")
      model_dir = next();
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--prefill")
      prefill = parseList(next());
    else if (a == "--batch")
      batches = parseList(next());
    else if (a == "--steps")
      steps = std::atoi(next().c_str());
    else if (a == "--quantize") {
      quantize = engine::quant::parseQType(next());
      if (!quantize) {
        usage();
        return 2;
      }
    } else {
      usage();
      return 2;
    }
  }
  if (model_dir.empty()) {
    usage();
    return 2;
  }

  const auto t_load = Clock::now();
  auto loaded = engine::Model::load(model_dir, threads, quantize);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load failed: %s\n", loaded.status().toString().c_str());
    return 1;
  }
  auto& model = *loaded.value();
  const double load_s = seconds(t_load, Clock::now());
  const engine::GemmaConfig& c = model.config();
  const int64_t V = c.vocab;
  const double weight_gb = double(model.weightBytes()) / 1e9;
  const double step_gb = double(model.decodeBytesPerToken()) / 1e9 -
                         (quantize ? quantizedSavingGB(model_dir, *quantize) : 0.0);
  std::printf(
      "model %s: H=%lld I=%lld L=%d heads=%d/%d D=%d V=%lld, weights %.3f GB, load %.2f s\n",
      model_dir.c_str(), (long long)c.hidden, (long long)c.intermediate, c.n_layer, c.n_head,
      c.n_head_kv, c.head_dim, (long long)V, weight_gb, load_s);
  std::printf("backend: %s%s%s\n", model.backend().name().c_str(),
              quantize ? ", weights quantized on load to " : "",
              quantize ? std::string(engine::quant::qtypeName(*quantize)).c_str() : "");

  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(
      3, static_cast<int32_t>(std::min<int64_t>(V, 262144) - 1));
  auto randomTokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = tok(rng);
    t[0] = c.bos_id;
    return t;
  };
  std::vector<float> logits(static_cast<size_t>(V) * 8);

  // Warm-up: fault the weights in (first touch of the mapping) and size the scratch buffers.
  {
    auto kv = model.newKvCache(64, 64);
    const auto t = randomTokens(8);
    std::vector<engine::SeqBatchItem> b = {{kv.get(), t.data(), 8, false, logits.data()}};
    if (auto s = model.forward(b); !s.ok()) {
      std::fprintf(stderr, "forward failed: %s\n", s.toString().c_str());
      return 1;
    }
  }

  for (int n : prefill) {
    auto kv = model.newKvCache(n + 1, n);
    const auto t = randomTokens(n);
    std::vector<engine::SeqBatchItem> b = {{kv.get(), t.data(), n, false, logits.data()}};
    const auto t0 = Clock::now();
    if (auto s = model.forward(b); !s.ok()) {
      std::fprintf(stderr, "prefill %d failed: %s\n", n, s.toString().c_str());
      return 1;
    }
    const double dt = seconds(t0, Clock::now());
    std::printf("prefill %4d tokens: %8.3f s  %9.1f tokens/s  (time to first token %.3f s)\n", n,
                dt, n / dt, dt);
  }

  struct DecodeResult {
    int batch;
    double step_s;
  };
  std::vector<DecodeResult> decode;
  for (int B : batches) {
    const int prompt = 32;
    std::vector<std::unique_ptr<engine::KvCache>> kvs;
    std::vector<int32_t> next(static_cast<size_t>(B));
    if (logits.size() < size_t(B) * size_t(V)) logits.resize(size_t(B) * size_t(V));
    for (int s = 0; s < B; ++s) {
      kvs.push_back(model.newKvCache(prompt + steps + 1, prompt));
      const auto t = randomTokens(prompt);
      std::vector<engine::SeqBatchItem> b = {
          {kvs.back().get(), t.data(), prompt, false, logits.data()}};
      if (auto st = model.forward(b); !st.ok()) return 1;
      next[size_t(s)] = tok(rng);
    }
    const auto t0 = Clock::now();
    for (int step = 0; step < steps; ++step) {
      std::vector<engine::SeqBatchItem> b;
      for (int s = 0; s < B; ++s)
        b.push_back({kvs[size_t(s)].get(), &next[size_t(s)], 1, false,
                     logits.data() + size_t(s) * size_t(V)});
      if (auto st = model.forward(b); !st.ok()) return 1;
      for (int s = 0; s < B; ++s) {  // greedy, so the sequences follow the model
        const float* l = logits.data() + size_t(s) * size_t(V);
        next[size_t(s)] = static_cast<int32_t>(std::max_element(l, l + V) - l);
      }
    }
    decode.push_back({B, seconds(t0, Clock::now()) / steps});
  }
  const double rss_mib = peakRssMiB();  // before the bandwidth test allocates its 2 GiB

  const int bw_threads = threads > 0 ? threads : int(std::thread::hardware_concurrency());
  const Bandwidth bw = measureBandwidth(bw_threads);
  const double roofline = bw.read_gbs / step_gb;
  for (const DecodeResult& d : decode) {
    std::printf(
        "decode batch %d: %7.2f ms/step  %8.2f tokens/s  (%.2f steps/s = %.0f%% of the "
        "bandwidth roofline)\n",
        d.batch, d.step_s * 1e3, d.batch / d.step_s, 1 / d.step_s, 100.0 / d.step_s / roofline);
  }
  std::printf(
      "memory bandwidth: %.1f GB/s read (%d threads), %.1f GB/s memcpy (1 thread, "
      "read+write)\n",
      bw.read_gbs, bw_threads, bw.memcpy_gbs);
  std::printf("roofline: %.3f GB of weights per decode step -> at most %.2f steps/s\n", step_gb,
              roofline);
  std::printf("peak RSS: %.0f MiB (the mapped weights count once touched)\n", rss_mib);
  return 0;
}
