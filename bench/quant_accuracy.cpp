// sy_quant_accuracy: how far weights quantized on load move the model's next-token distributions
// from the stored (bf16) model, over one fixed token sequence.
//
//   sy_quant_accuracy --model DIR [--tokens 2048] [--chunk 128] [--types q8_0,q5_0,q4_0,q4_k,q6_k]
//                     [--threads N] [--seed 7]
//
// The sequence is `tokens` ids drawn uniformly (seeded) from the vocabulary after BOS, so the tool
// needs no tokenizer and runs on random-weight checkpoints of real shapes
// (switchyard-cli make-test-model). For every format the stored model and the quantized one run
// the sequence in lockstep, `chunk` tokens per forward pass with the logits of every position,
// and per position the tool compares the two distributions:
//   mean KL(P_stored || P_quantized), in nats, computed in fp64 from the fp32 logits;
//   top-1 agreement, and how many disagreements are near-ties (stored top-two logit gap < 0.1);
//   perplexity of the sequence's own next tokens under each model, and the difference.
// Record results in bench/RESULTS.md with the command that produced them.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/models/model.h"
#include "engine/quant/quant.h"

namespace {

struct Stats {
  double kl = 0, nll_ref = 0, nll_q = 0;
  int64_t n = 0, agree = 0, near_tie_disagree = 0;
};

// log-softmax of logits[V] into out (fp64).
void logSoftmax(const float* logits, int64_t V, std::vector<double>& out) {
  double m = logits[0];
  for (int64_t i = 1; i < V; ++i) m = std::max(m, double(logits[i]));
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(double(logits[i]) - m);
  const double lse = m + std::log(s);
  out.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) out[size_t(i)] = double(logits[i]) - lse;
}

void compare(const float* ref, const float* q, int64_t V, int32_t next, Stats& st,
             std::vector<double>& lr, std::vector<double>& lq) {
  logSoftmax(ref, V, lr);
  logSoftmax(q, V, lq);
  double kl = 0;
  for (int64_t i = 0; i < V; ++i) kl += std::exp(lr[size_t(i)]) * (lr[size_t(i)] - lq[size_t(i)]);
  st.kl += kl;
  const int64_t top_r = std::max_element(ref, ref + V) - ref;
  const int64_t top_q = std::max_element(q, q + V) - q;
  if (top_r == top_q) {
    ++st.agree;
  } else {
    float second = -INFINITY;
    for (int64_t i = 0; i < V; ++i)
      if (i != top_r) second = std::max(second, ref[i]);
    if (ref[top_r] - second < 0.1f) ++st.near_tie_disagree;
  }
  if (next >= 0) {
    st.nll_ref -= lr[size_t(next)];
    st.nll_q -= lq[size_t(next)];
  }
  ++st.n;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');) out.push_back(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, types = "q8_0,q5_0,q4_0,q4_k,q6_k";
  int tokens = 2048, chunk = 128, threads = 0;
  unsigned seed = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model")
      model_dir = v;
    else if (a == "--tokens")
      tokens = std::atoi(v.c_str());
    else if (a == "--chunk")
      chunk = std::atoi(v.c_str());
    else if (a == "--types")
      types = v;
    else if (a == "--threads")
      threads = std::atoi(v.c_str());
    else if (a == "--seed")
      seed = unsigned(std::atoi(v.c_str()));
  }
  if (model_dir.empty() || tokens < 2 || chunk < 1) {
    std::fprintf(stderr,
                 "usage: sy_quant_accuracy --model DIR [--tokens 2048] [--chunk 128] "
                 "[--types q8_0,q5_0,q4_0,q4_k,q6_k] [--threads N] [--seed 7]\n");
    return 2;
  }
  auto ref = engine::Model::load(model_dir, threads);
  if (!ref.ok()) {
    std::fprintf(stderr, "load failed: %s\n", ref.status().toString().c_str());
    return 1;
  }
  const engine::GemmaConfig& c = (*ref)->config();
  const int64_t V = c.vocab;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(3, int32_t(std::min<int64_t>(V, 262144) - 1));
  std::vector<int32_t> seq(static_cast<size_t>(tokens));
  for (auto& t : seq) t = tok(rng);
  seq[0] = c.bos_id;
  std::printf("model %s, %d tokens (seeded %u), chunks of %d\n", model_dir.c_str(), tokens, seed,
              chunk);

  std::vector<float> lref(size_t(chunk) * size_t(V)), lq(size_t(chunk) * size_t(V));
  std::vector<double> a, b;
  for (const std::string& name : split(types)) {
    const auto q = engine::quant::parseQType(name);
    if (!q) {
      std::fprintf(stderr, "unknown type %s\n", name.c_str());
      return 2;
    }
    auto qm = engine::Model::load(model_dir, threads, q);
    if (!qm.ok()) {
      std::fprintf(stderr, "load failed: %s\n", qm.status().toString().c_str());
      return 1;
    }
    // Sequences longer than the model's context run as consecutive segments, each from an
    // empty cache (segment starts are ordinary positions of the sequence: BOS only at 0).
    const int seg = static_cast<int>(std::min<int64_t>(tokens, c.max_positions));
    std::unique_ptr<engine::KvCache> kv_ref, kv_q;
    Stats st;
    for (int p = 0, n = 0; p < tokens; p += n) {
      if (p % seg == 0) {
        kv_ref = (*ref)->newKvCache(seg, chunk);
        kv_q = (*qm)->newKvCache(seg, chunk);
      }
      n = std::min({chunk, tokens - p, seg - p % seg});
      std::vector<engine::SeqBatchItem> br = {{kv_ref.get(), seq.data() + p, n, true, lref.data()}};
      std::vector<engine::SeqBatchItem> bq = {{kv_q.get(), seq.data() + p, n, true, lq.data()}};
      for (auto* m : {&br, &bq}) {
        const auto& model = m == &br ? *ref : *qm;
        if (auto s = model->forward(*m); !s.ok()) {
          std::fprintf(stderr, "forward at %d failed: %s\n", p, s.toString().c_str());
          return 1;
        }
      }
      for (int i = 0; i < n; ++i) {
        const int32_t next = p + i + 1 < tokens ? seq[size_t(p + i + 1)] : -1;
        compare(lref.data() + size_t(i) * size_t(V), lq.data() + size_t(i) * size_t(V), V, next, st,
                a, b);
      }
    }
    const double ppl_ref = std::exp(st.nll_ref / double(tokens - 1));
    const double ppl_q = std::exp(st.nll_q / double(tokens - 1));
    std::printf(
        "%-5s mean KL %.6f nats  top-1 agreement %.2f%% (%lld of %lld; %lld of the "
        "disagreements near-ties)  perplexity %.3f -> %.3f (%+.3f, %+.3f%%)\n",
        name.c_str(), st.kl / double(st.n), 100.0 * double(st.agree) / double(st.n),
        (long long)st.agree, (long long)st.n, (long long)st.near_tie_disagree, ppl_ref, ppl_q,
        ppl_q - ppl_ref, 100.0 * (ppl_q / ppl_ref - 1));
    std::fflush(stdout);
  }
  return 0;
}
