// Gemma4Model on the tiny random-weight presets that `switchyard-cli make-test-model` writes
// (gemma-4-tiny-e: KV sharing, double-wide MLP, PLE; gemma-4-tiny-moe: K=V full layers and routed
// experts), in both checkpoint layouts: loading, the KV cache's per-layer geometry, and the
// invariants a scheduler relies on (chunked prefill, token-by-token decode and batching do not
// change the logits). When tests/fixtures/gemma4-tiny-{e,moe} exist, the logits, hidden states
// and greedy tokens are held to that independent reference as well.
#include "engine/models/gemma4.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "engine/models/gemma3.h"

namespace engine {
namespace {

namespace fs = std::filesystem;

// The presets, written once per test binary into a temporary directory.
class Presets {
 public:
  static Presets& get() {
    static Presets p;
    return p;
  }
  // The directory of `preset` in `layout` ("conditional" or "causal-lm"); empty, with a reason
  // in error(), when it could not be written.
  std::string dir(const std::string& preset, const std::string& layout = "conditional") {
    const std::string key = preset + "-" + layout;
    auto it = dirs_.find(key);
    if (it != dirs_.end()) return it->second;
    const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
    if (!fs::exists(cli)) {
      error_ = "switchyard-cli is not built";
      return {};
    }
    const std::string out = (root_ / key).string();
    const std::string cmd = cli + " make-test-model --preset " + preset + " --layout " + layout +
                            " --seed 5 --out " + out + " > /dev/null";
    if (std::system(cmd.c_str()) != 0) {
      error_ = "failed: " + cmd;
      return {};
    }
    return dirs_[key] = out;
  }
  const std::string& error() const { return error_; }

 private:
  Presets() : root_(fs::temp_directory_path() / ("sy_gemma4_" + std::to_string(::getpid()))) {
    fs::create_directories(root_);
  }
  ~Presets() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
  std::map<std::string, std::string> dirs_;
  std::string error_;
};

std::unique_ptr<Gemma4Model> loadPreset(const std::string& preset,
                                        const std::string& layout = "conditional") {
  const std::string dir = Presets::get().dir(preset, layout);
  if (dir.empty()) {
    ADD_FAILURE() << Presets::get().error();
    return nullptr;
  }
  auto m = Gemma4Model::load(dir, 2);
  EXPECT_TRUE(m.ok()) << m.status().toString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Prompt ids in [3, vocab), fixed.
std::vector<int32_t> prompt(int n, int vocab, uint32_t seed = 7) {
  std::vector<int32_t> ids = {2};
  for (int i = 1; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    ids.push_back(3 + static_cast<int32_t>((seed >> 8) % uint32_t(vocab - 3)));
  }
  return ids;
}

// Runs `tokens` through `kv` in chunks of `chunk`; returns the logits of every token, and the
// hidden states [L + 1, S, H] when `hidden` is given.
std::vector<float> prefill(Model& m, KvCache& kv, const std::vector<int32_t>& tokens, int chunk,
                           std::vector<float>* hidden = nullptr) {
  const GemmaConfig& c = m.config();
  const int64_t V = c.vocab, H = c.hidden, L = c.n_layer;
  const size_t S = tokens.size();
  std::vector<float> logits(S * size_t(V));
  if (hidden) hidden->assign(size_t(L + 1) * S * size_t(H), 0.0f);
  std::vector<float> part;
  for (size_t i = 0; i < S; i += size_t(chunk)) {
    const int n = static_cast<int>(std::min(S - i, size_t(chunk)));
    part.assign(size_t(L + 1) * size_t(n) * size_t(H), 0.0f);
    std::vector<SeqBatchItem> batch = {
        {&kv, tokens.data() + i, n, true, logits.data() + i * V, hidden ? part.data() : nullptr}};
    const auto s = m.forward(batch);
    EXPECT_TRUE(s.ok()) << s.toString();
    if (!hidden) continue;
    for (int64_t l = 0; l <= L; ++l)
      std::copy_n(part.data() + size_t(l) * size_t(n) * size_t(H), size_t(n) * size_t(H),
                  hidden->data() + (size_t(l) * S + i) * size_t(H));
  }
  return logits;
}

const char* const kTiny[] = {"gemma-4-tiny-e", "gemma-4-tiny-moe"};

// Tests on checkpoints that make-test-model writes; they skip where it is not built.
class Gemma4Presets : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(std::string(SY_BINARY_DIR) + "/switchyard-cli"))
      GTEST_SKIP() << "switchyard-cli is not built";
  }
};

TEST_F(Gemma4Presets, LoadsTheTinyPresetsInBothLayouts) {
  for (const char* preset : kTiny) {
    for (const char* layout : {"conditional", "causal-lm"}) {
      SCOPED_TRACE(std::string(preset) + " " + layout);
      auto m = loadPreset(preset, layout);
      ASSERT_TRUE(m);
      const GemmaConfig& c = m->config();
      EXPECT_TRUE(c.isGemma4());
      EXPECT_EQ(c.conditional, std::string(layout) == "conditional");
      EXPECT_EQ(c.final_softcap, 30.0f);
      // Model::load picks the family from the config.
      auto any = Model::load(Presets::get().dir(preset, layout), 1);
      ASSERT_TRUE(any.ok()) << any.status().toString();
      EXPECT_NE(dynamic_cast<Gemma4Model*>(any->get()), nullptr);
      EXPECT_FALSE(Gemma3Model::load(Presets::get().dir(preset, layout), 1).ok());
    }
  }
}

TEST(Gemma4Model, ModelLoadPicksGemma3ForAGemma3Checkpoint) {
  const std::string g3 = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma3-ref";
  auto any = Model::load(g3, 1);
  ASSERT_TRUE(any.ok()) << any.status().toString();
  EXPECT_NE(dynamic_cast<Gemma3Model*>(any->get()), nullptr);
  EXPECT_FALSE((*any)->config().isGemma4());
  EXPECT_FALSE(Gemma4Model::load(g3, 1).ok());
}

TEST_F(Gemma4Presets, KvSharedLayersStoreNothingAndTheirLeftoversAreIgnored) {
  auto m = loadPreset("gemma-4-tiny-e");
  ASSERT_TRUE(m);
  const GemmaConfig& c = m->config();
  ASSERT_EQ(c.firstSharedLayer(), 4);
  EXPECT_EQ(c.layer(4).kv_source, 3);  // sliding reads the last non-shared sliding layer
  EXPECT_EQ(c.layer(5).kv_source, 2);  // full reads layer 2
  auto kv = m->newKvCache(64, 16);
  for (int l = 0; l < 4; ++l) EXPECT_GT(kv->capacity(l), 0) << l;
  EXPECT_EQ(kv->capacity(4), 0);
  EXPECT_EQ(kv->capacity(5), 0);
  EXPECT_EQ(kv->kvDim(2), 2 * 32);  // full layers: global_head_dim 32
  EXPECT_EQ(kv->kvDim(0), 2 * 16);
  // Sliding rings hold W - 1 + chunk = 23 slots, rounded up to two 16-position blocks; full
  // layers 64 (four blocks): K and V bf16 rows plus an int32 position per slot.
  const uint64_t sliding = 32 * (2 * 32 * 2 + 4), full = 64 * (2 * 64 * 2 + 4);
  EXPECT_EQ(kv->bytes(), 3 * sliding + full);
  EXPECT_EQ(KvCache::bytesFor(c, 64, 16), kv->bytes());
  // The shared layers' k_proj / v_proj / k_norm are in the file but not used (§3.5).
  auto ck = Checkpoint::open(Presets::get().dir("gemma-4-tiny-e"));
  ASSERT_TRUE(ck.ok()) << ck.status().toString();
  const auto& unused = (*ck)->unusedTensors();
  for (const char* name : {"layers.4.self_attn.k_proj.weight", "layers.4.self_attn.v_proj.weight",
                           "layers.5.self_attn.k_norm.weight"}) {
    const std::string stored = std::string("model.language_model.") + name;
    EXPECT_NE(std::find(unused.begin(), unused.end(), stored), unused.end()) << stored;
  }
  EXPECT_EQ((*ck)->weights().layers[4].k_proj.data, nullptr);
  EXPECT_NE((*ck)->weights().layers[3].k_proj.data, nullptr);
  EXPECT_EQ(m->config().layer(4).intermediate, 256);  // double-wide on shared layers
  EXPECT_EQ(m->config().layer(3).intermediate, 128);
}

TEST_F(Gemma4Presets, LogitsAreSoftcappedAndFinite) {
  for (const char* preset : kTiny) {
    SCOPED_TRACE(preset);
    auto m = loadPreset(preset);
    ASSERT_TRUE(m);
    const auto ids = prompt(24, 512);
    auto kv = m->newKvCache(24, 24);
    const auto logits = prefill(*m, *kv, ids, 24);
    float lo = 0, hi = 0;
    for (float v : logits) {
      ASSERT_TRUE(std::isfinite(v));
      ASSERT_EQ(v, roundBf16(v));  // HF's logits are bf16 (§6.1)
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_LE(hi, 30.0f);
    EXPECT_GE(lo, -30.0f);
    EXPECT_GT(hi - lo, 1.0f);  // not degenerate
  }
}

// A prompt gives bit-identical logits and hidden states whether it is prefilled whole, in chunks
// or token by token: shared layers read their source's K/V of the same step, sliding rings wrap.
TEST_F(Gemma4Presets, ChunkedPrefillMatchesWholePrompt) {
  for (const char* preset : kTiny) {
    SCOPED_TRACE(preset);
    auto m = loadPreset(preset);
    ASSERT_TRUE(m);
    const auto ids = prompt(30, 512);
    const int S = static_cast<int>(ids.size());
    std::vector<float> h_whole, h_chunk;
    auto kv_whole = m->newKvCache(S, S);
    const auto whole = prefill(*m, *kv_whole, ids, S, &h_whole);
    for (int chunk : {1, 3, 7}) {
      SCOPED_TRACE(chunk);
      auto kv = m->newKvCache(S, chunk);
      const auto chunked = prefill(*m, *kv, ids, chunk, &h_chunk);
      EXPECT_EQ(chunked, whole);
      EXPECT_EQ(h_chunk, h_whole);
    }
  }
}

// A prefill that wants only the last token's logits sends only that row through the KV-shared
// layers (§3.5); its logits, and every later decode step, are bit-identical to a full pass.
TEST_F(Gemma4Presets, LastTokenPrefillSkipsSharedLayerRowsWithoutChangingAnything) {
  for (const char* preset : kTiny) {
    SCOPED_TRACE(preset);
    auto m = loadPreset(preset);
    ASSERT_TRUE(m);
    const int64_t V = m->config().vocab;
    const auto a = prompt(21, 512, 3), b = prompt(9, 512, 4);
    auto kv_a = m->newKvCache(32, 32), kv_b = m->newKvCache(32, 32);
    const auto full_a = prefill(*m, *kv_a, a, 21), full_b = prefill(*m, *kv_b, b, 9);
    auto kv_a2 = m->newKvCache(32, 32), kv_b2 = m->newKvCache(32, 32);
    std::vector<float> la(static_cast<size_t>(V)), lb(la);
    std::vector<SeqBatchItem> batch = {{kv_a2.get(), a.data(), 21, false, la.data()},
                                       {kv_b2.get(), b.data(), 9, false, lb.data()}};
    ASSERT_TRUE(m->forward(batch).ok());
    EXPECT_TRUE(std::equal(la.begin(), la.end(), full_a.end() - V));
    EXPECT_TRUE(std::equal(lb.begin(), lb.end(), full_b.end() - V));
    for (int step = 0; step < 3; ++step) {  // the caches hold the same K/V
      const int32_t t = 7 + step;
      std::vector<float> x(static_cast<size_t>(V)), y(x);
      std::vector<SeqBatchItem> one = {{kv_a.get(), &t, 1, false, x.data()}};
      std::vector<SeqBatchItem> two = {{kv_a2.get(), &t, 1, false, y.data()}};
      ASSERT_TRUE(m->forward(one).ok());
      ASSERT_TRUE(m->forward(two).ok());
      EXPECT_EQ(x, y) << step;
    }
  }
}

// Two sequences in one forward() give the same logits as each alone.
TEST_F(Gemma4Presets, BatchingDoesNotChangeLogits) {
  for (const char* preset : kTiny) {
    SCOPED_TRACE(preset);
    auto m = loadPreset(preset);
    ASSERT_TRUE(m);
    const int64_t V = m->config().vocab;
    const auto a = prompt(20, 512, 1), b = prompt(13, 512, 2);
    auto kv_a = m->newKvCache(64, 32), kv_b = m->newKvCache(64, 32);
    const auto alone_a = prefill(*m, *kv_a, a, 20), alone_b = prefill(*m, *kv_b, b, 13);
    auto kv_a2 = m->newKvCache(64, 32), kv_b2 = m->newKvCache(64, 32);
    std::vector<float> la(a.size() * size_t(V)), lb(b.size() * size_t(V));
    std::vector<SeqBatchItem> batch = {{kv_a2.get(), a.data(), 20, true, la.data()},
                                       {kv_b2.get(), b.data(), 13, true, lb.data()}};
    ASSERT_TRUE(m->forward(batch).ok());
    EXPECT_EQ(la, alone_a);
    EXPECT_EQ(lb, alone_b);
    // And one decode step each, batched, equals the same step alone.
    const int32_t next_a = 5, next_b = 9;
    std::vector<float> da(static_cast<size_t>(V)), db(da), sa(da), sb(da);
    batch = {{kv_a2.get(), &next_a, 1, false, da.data()},
             {kv_b2.get(), &next_b, 1, false, db.data()}};
    ASSERT_TRUE(m->forward(batch).ok());
    std::vector<SeqBatchItem> one = {{kv_a.get(), &next_a, 1, false, sa.data()}};
    ASSERT_TRUE(m->forward(one).ok());
    one = {{kv_b.get(), &next_b, 1, false, sb.data()}};
    ASSERT_TRUE(m->forward(one).ok());
    EXPECT_EQ(da, sa);
    EXPECT_EQ(db, sb);
  }
}

// The residual stream starts as bf16(E[id] * bf16(sqrt(H))) (§2.1), read from the checkpoint.
TEST_F(Gemma4Presets, CapturesTheScaledEmbeddingAsHiddenStateZero) {
  auto m = loadPreset("gemma-4-tiny-moe");
  ASSERT_TRUE(m);
  const auto ids = prompt(5, 512);
  auto kv = m->newKvCache(8, 8);
  std::vector<float> hidden;
  prefill(*m, *kv, ids, 8, &hidden);
  auto ck = Checkpoint::open(Presets::get().dir("gemma-4-tiny-moe"));
  ASSERT_TRUE(ck.ok());
  const Weight& e = (*ck)->weights().embed;
  const int64_t H = m->config().hidden;
  const float scale = roundBf16(std::sqrt(64.0f));  // 8.0
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t j = 0; j < H; ++j)
      ASSERT_EQ(hidden[i * size_t(H) + size_t(j)], roundBf16(e.at(ids[i] * H + j) * scale));
  // Later layers change the stream.
  const size_t S = ids.size(), last = size_t(m->config().n_layer) * S * size_t(H);
  EXPECT_NE(hidden[last], hidden[0]);
}

// The decode roofline counts the bytes a step reads: one PLE row, top_k of the experts.
TEST_F(Gemma4Presets, DecodeBytesLeaveOutThePleTableAndUnpickedExperts) {
  auto e = loadPreset("gemma-4-tiny-e");
  auto moe = loadPreset("gemma-4-tiny-moe");
  ASSERT_TRUE(e && moe);
  const uint64_t ple_table = 512 * 48 * 2, ple_row = 48 * 2;
  EXPECT_EQ(e->decodeBytesPerToken(), e->weightBytes() - ple_table + ple_row);
  const uint64_t experts_per_layer = (8 * 64 * 64 + 8 * 64 * 32) * 2;  // gate_up + down, bf16
  EXPECT_EQ(moe->decodeBytesPerToken(),
            moe->weightBytes() - 6 * (experts_per_layer - experts_per_layer / 8 * 2));
}

TEST_F(Gemma4Presets, RejectsTokenIdsOutsideTheVocabulary) {
  auto m = loadPreset("gemma-4-tiny-e");
  ASSERT_TRUE(m);
  auto kv = m->newKvCache(8, 8);
  const int32_t bad[] = {2, 512};
  std::vector<float> logits(512);
  std::vector<SeqBatchItem> batch = {{kv.get(), bad, 2, false, logits.data()}};
  const api::Status s = m->forward(batch);
  EXPECT_EQ(s.code(), api::ErrorCode::kInvalidRequest);
  EXPECT_NE(s.message().find("512"), std::string::npos) << s.message();
  EXPECT_EQ(kv->length(), 0);
}

// ---- parity with the independent reference (tests/fixtures/gemma4-tiny-*/README.md, written by
// tests/reference/gemma4_ref.py). Tolerances are the README's for an engine that rounds to bf16
// where HF does: logits max <= 0.5 and mean <= 0.03, identical greedy tokens; hidden states
// within the same bounds per layer, the scaled embedding exact.

struct Reference {
  std::string dir;
  std::vector<int32_t> prompt, greedy;
  std::vector<float> logits;  // [S, V]
  std::vector<float> hidden;  // [L + 1, S, H]
};

std::vector<float> readF32(const std::string& path, size_t n) {
  std::vector<float> out(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n * sizeof(float)));
  EXPECT_TRUE(in.good()) << path;
  return out;
}

Reference readReference(const std::string& name) {
  Reference r;
  r.dir = std::string(SY_SOURCE_DIR) + "/tests/fixtures/" + name;
  std::ifstream in(r.dir + "/reference.json");
  EXPECT_TRUE(in.good()) << "missing " << r.dir << "/reference.json";
  const auto ref = nlohmann::json::parse(in);
  r.prompt = ref.at("prompt").get<std::vector<int32_t>>();
  r.greedy = ref.at("greedy").at("tokens").get<std::vector<int32_t>>();
  size_t n = 1;
  for (size_t d : ref.at("logits").at("shape").get<std::vector<size_t>>()) n *= d;
  r.logits = readF32(r.dir + "/" + ref.at("logits").at("file").get<std::string>(), n);
  n = 1;
  for (size_t d : ref.at("hidden_states").at("shape").get<std::vector<size_t>>()) n *= d;
  r.hidden = readF32(r.dir + "/" + ref.at("hidden_states").at("file").get<std::string>(), n);
  return r;
}

struct Diff {
  double max = 0, mean = 0;
};
Diff diff(const float* a, const float* b, size_t n) {
  Diff d;
  for (size_t i = 0; i < n; ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i]));
    d.max = std::max(d.max, e);
    d.mean += e;
  }
  d.mean /= double(n);
  return d;
}

const char* const kFixtures[] = {"gemma4-tiny-e", "gemma4-tiny-moe"};

// Logits and every layer's hidden states of the prompt against the reference. The reference
// keeps the softcapped logits in fp32; the engine rounds them to bf16 as HF does, which moves
// them by at most half a bf16 ulp (0.0625 below 32).
TEST(Gemma4Parity, LogitsAndHiddenStatesMatchTheReference) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Reference ref = readReference(name);
    auto m = Gemma4Model::load(ref.dir, 2);
    ASSERT_TRUE(m.ok()) << m.status().toString();
    const GemmaConfig& c = (*m)->config();
    const size_t S = ref.prompt.size(), V = size_t(c.vocab), H = size_t(c.hidden);
    ASSERT_EQ(ref.logits.size(), S * V);
    ASSERT_EQ(ref.hidden.size(), size_t(c.n_layer + 1) * S * H);
    auto kv = (*m)->newKvCache(static_cast<int>(S), static_cast<int>(S));
    std::vector<float> hidden;
    const auto logits = prefill(**m, *kv, ref.prompt, static_cast<int>(S), &hidden);
    const Diff dl = diff(logits.data(), ref.logits.data(), logits.size());
    std::printf("[%s] logits: max %.4f mean %.5f\n", name, dl.max, dl.mean);
    EXPECT_LE(dl.max, 0.5);
    EXPECT_LE(dl.mean, 0.03);
    for (int l = 0; l <= c.n_layer; ++l) {
      const size_t off = size_t(l) * S * H;
      const Diff dh = diff(hidden.data() + off, ref.hidden.data() + off, S * H);
      std::printf("[%s] hidden %d: max %.4f mean %.5f\n", name, l, dh.max, dh.mean);
      if (l == 0) {
        EXPECT_EQ(dh.max, 0.0) << "the scaled embedding is exact";
      }
      EXPECT_LE(dh.max, 0.5) << "layer " << l;
      EXPECT_LE(dh.mean, 0.03) << "layer " << l;
    }
  }
}

// Greedy decoding with the KV cache (one prompt prefill, then one token per step) picks the
// reference's tokens, which it got by recomputing the whole sequence at each step.
TEST(Gemma4Parity, CachedGreedyDecodeMatchesTheReference) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const Reference ref = readReference(name);
    auto m = Gemma4Model::load(ref.dir, 2);
    ASSERT_TRUE(m.ok()) << m.status().toString();
    const int64_t V = (*m)->config().vocab;
    const int S = static_cast<int>(ref.prompt.size());
    auto kv = (*m)->newKvCache(S + static_cast<int>(ref.greedy.size()), S);
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<SeqBatchItem> batch = {{kv.get(), ref.prompt.data(), S, false, logits.data()}};
    ASSERT_TRUE((*m)->forward(batch).ok());
    std::vector<int32_t> got;
    for (size_t i = 0; i < ref.greedy.size(); ++i) {
      got.push_back(
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      batch = {{kv.get(), &got.back(), 1, false, logits.data()}};
      if (i + 1 < ref.greedy.size()) {
        ASSERT_TRUE((*m)->forward(batch).ok());
      }
    }
    EXPECT_EQ(got, ref.greedy);
  }
}

}  // namespace
}  // namespace engine
