// Gemma 4 in GGUF (engine/gguf_gemma.h has the keys and names): the metadata llama.cpp's
// converter writes, and its reading back into a GemmaConfig.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/gguf_gemma.h"
#include "engine/gguf_gemma_internal.h"

namespace engine::gguf {
namespace internal {
namespace {

using api::Status;

// One u32 when every layer has the same value, else the converter's INT32 array per layer.
Value perLayer(const GemmaConfig& c, int64_t (*get)(const LayerGeometry&)) {
  std::vector<int64_t> v;
  for (int l = 0; l < c.n_layer; ++l) v.push_back(get(c.layer(l)));
  if (std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v[0]; })) {
    return Value::u32(static_cast<uint32_t>(v[0]));
  }
  return Value::intArray(ValueType::kI32, std::move(v));
}

// A per-layer key: an array of block_count integers, or one value for every layer.
Status perLayerInts(const GgufFile& f, const MetaReader& k, std::string_view name, int n_layer,
                    std::optional<int64_t> def, int64_t lo, int64_t hi, std::vector<int64_t>* out) {
  const Value* v = k.find(name);
  if (v == nullptr || !v->isArray()) {
    int64_t x = 0;
    if (Status s = k.integer(name, def, lo, hi, &x); !s.ok()) return s;
    out->assign(static_cast<size_t>(n_layer), x);
    return Status();
  }
  const std::string full = k.full(name);
  if (v->size() != static_cast<size_t>(n_layer)) {
    return configError(f.path() + ": key '" + full + "' has " + std::to_string(v->size()) +
                       " entries for " + std::to_string(n_layer) + " layers (block_count)");
  }
  out->clear();
  for (size_t l = 0; l < v->size(); ++l) {
    int64_t x = 0;
    if (!v->ints.empty()) {
      x = v->ints[l];
    } else if (!v->uints.empty()) {
      x = v->uints[l] > static_cast<uint64_t>(hi) ? hi + 1 : static_cast<int64_t>(v->uints[l]);
    } else {
      return configError(f.path() + ": key '" + full + "' must be an array of integers");
    }
    if (x < lo || x > hi) {
      return configError(f.path() + ": key '" + full + "' has " + std::to_string(x) +
                         " at layer " + std::to_string(l) + ", outside [" + std::to_string(lo) +
                         ", " + std::to_string(hi) + "]");
    }
    out->push_back(x);
  }
  return Status();
}

// The fraction of the full layers' head dim that rotates, from rope_freqs.weight: the
// converter's 1.0 for each rotated pair, then kRopeFreqOff (a frequency divided by 1e30 is 0).
api::StatusOr<double> partialRotaryFactor(const GgufFile& f, int global_head_dim) {
  const TensorInfo* t = f.findTensor(kRopeFreqsTensor);
  if (t == nullptr) return 1.0;  // every pair rotates
  const std::string where = f.path() + ": tensor '" + std::string(kRopeFreqsTensor) + "'";
  if (t->type != 0 || t->shape.size() != 1 || t->shape[0] != global_head_dim / 2) {
    return configError(where + " must be F32 [" + std::to_string(global_head_dim / 2) +
                       "] (attention.key_length / 2)");
  }
  const float* v = static_cast<const float*>(t->data);
  int64_t rotated = 0;
  while (rotated < t->shape[0] && v[rotated] == 1.0f) ++rotated;
  for (int64_t j = rotated; j < t->shape[0]; ++j) {
    if (!(v[j] >= 1e29f)) {
      return configError(where + ": only 1.0 (rotated) then 1e30 (not rotated) is supported; "
                         "entry " + std::to_string(j) + " is " + std::to_string(v[j]));
    }
  }
  // The factor whose rotatedPairs() gives back exactly `rotated` (int(p * D / 2) truncates).
  RopeParams p{1.0, 1.0, RopeType::kProportional, 2.0 * static_cast<double>(rotated) / global_head_dim};
  while (p.rotatedPairs(global_head_dim) < rotated) {
    p.partial_rotary_factor = std::nextafter(p.partial_rotary_factor, 2.0);
  }
  return p.partial_rotary_factor;
}

// The config.json keys of a Gemma 4 GGUF besides the layer geometry: vocabularies from the
// embedding tables' rows, RoPE, softcap, the expert block.
Status gemma4Rest(const GgufFile& f, const MetaReader& k, int64_t P, api::Json* j) {
  int64_t ctx = 0, n_expert = 0, top_k = 0, moe_width = 0, Dg = 0;
  double eps = 0, base = 0, base_swa = 0, cap = 0;
  Status s;
  if (!(s = k.integer("context_length", std::nullopt, 1, int64_t{1} << 30, &ctx)).ok() ||
      !(s = k.integer("attention.key_length", std::nullopt, 2, 4096, &Dg)).ok() ||
      !(s = k.real("attention.layer_norm_rms_epsilon", std::nullopt, 0, 1, &eps)).ok() ||
      !(s = k.real("rope.freq_base", 10000.0, 0, 1e30, &base)).ok() ||
      !(s = k.real("rope.freq_base_swa", 10000.0, 0, 1e30, &base_swa)).ok() ||
      !(s = k.integer("expert_count", int64_t{0}, 0, 1 << 16, &n_expert)).ok()) {
    return s;
  }
  if (k.has("final_logit_softcapping")) {  // 0 = none; the converter writes it only when set
    auto v = f.getF64(k.full("final_logit_softcapping"));
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v < 0 || *v > 1e6) {
      return configError(f.path() + ": key '" + k.full("final_logit_softcapping") + "' is " +
                         std::to_string(*v) + ", outside [0, 1e6]");
    }
    cap = *v;
  }
  const TensorInfo* embd = f.findTensor("token_embd.weight");
  if (embd == nullptr || embd->shape.size() != 2 || embd->shape[0] < 1) {
    return configError(f.path() + ": missing or malformed tensor 'token_embd.weight'");
  }
  (*j)["vocab_size"] = embd->shape[0];
  (*j)["hidden_size_per_layer_input"] = P;
  if (P > 0) {
    const TensorInfo* ple = f.findTensor("per_layer_token_embd.weight");
    if (ple == nullptr || ple->shape.size() != 2) {
      return configError(f.path() + ": missing or malformed tensor 'per_layer_token_embd.weight' "
                         "(embedding_length_per_layer_input is " + std::to_string(P) + ")");
    }
    (*j)["vocab_size_per_layer_input"] = ple->shape[0];
  }
  auto partial = partialRotaryFactor(f, static_cast<int>(Dg));
  if (!partial.ok()) return partial.status();
  (*j)["max_position_embeddings"] = ctx;
  (*j)["rms_norm_eps"] = eps;
  (*j)["final_logit_softcapping"] = cap > 0 ? api::Json(cap) : api::Json(nullptr);
  (*j)["rope_parameters"] = {
      {"full_attention",
       {{"rope_type", "proportional"}, {"rope_theta", base}, {"partial_rotary_factor", *partial}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", base_swa}}}};
  (*j)["hidden_activation"] = "gelu_pytorch_tanh";
  (*j)["tie_word_embeddings"] = true;
  (*j)["enable_moe_block"] = n_expert > 0;
  if (n_expert > 0) {
    if (!(s = k.integer("expert_used_count", std::nullopt, 1, n_expert, &top_k)).ok() ||
        !(s = k.integer("expert_feed_forward_length", std::nullopt, 1, 1 << 20, &moe_width))
             .ok()) {
      return s;
    }
    (*j)["num_experts"] = n_expert;
    (*j)["top_k_experts"] = top_k;
    (*j)["moe_intermediate_size"] = moe_width;
  }
  return Status();
}

// attention.head_count_kv per layer as the file gives it against what the config resolved, for
// the layers that keep their own K/V (a KV-shared layer's entry is not used).
Status checkKvHeads(const GgufFile& f, const GemmaConfig& c, const std::vector<int64_t>& kv) {
  for (int l = 0; l < c.n_layer; ++l) {
    if (c.storesKv(l) && c.layer(l).n_head_kv != kv[size_t(l)]) {
      return configError(f.path() + ": key 'gemma4.attention.head_count_kv' gives layer " +
                         std::to_string(l) + " " + std::to_string(kv[size_t(l)]) +
                         " KV heads; Gemma 4 has one count for sliding layers and one for full "
                         "K=V layers (expected " + std::to_string(c.layer(l).n_head_kv) + ")");
    }
  }
  return Status();
}

// feed_forward_length per layer as the file gives it against what the config resolved.
Status checkFfnWidths(const GgufFile& f, const GemmaConfig& c, const std::vector<int64_t>& ffn) {
  for (int l = 0; l < c.n_layer; ++l) {
    if (c.layer(l).intermediate != ffn[size_t(l)]) {
      return configError(f.path() + ": key 'gemma4.feed_forward_length' gives layer " +
                         std::to_string(l) + " width " + std::to_string(ffn[size_t(l)]) +
                         "; Gemma 4 has one width, doubled on KV-shared layers only with "
                         "use_double_wide_mlp (expected " +
                         std::to_string(c.layer(l).intermediate) + ")");
    }
  }
  return Status();
}

}  // namespace

// Gemma 4 (gguf_gemma.h): the keys become the config.json a Gemma4ForCausalLM checkpoint would
// have, so parseGemmaConfig resolves the layers (KV sharing, K=V, double-wide MLP) exactly as it
// does for safetensors.
api::StatusOr<GemmaConfig> gemma4ConfigFromGguf(const GgufFile& f) {
  MetaReader k(f, kArchGemma4);
  api::Json j = api::Json::object();
  Status s;
  int64_t L = 0, H = 0, heads = 0, D = 0, Dg = 0, P = 0, shared = 0;
  auto need = [&](std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                  int64_t* out) {
    if (s.ok()) s = k.integer(name, def, lo, hi, out);
  };
  need("block_count", std::nullopt, 1, 1024, &L);
  need("embedding_length", std::nullopt, 1, 1 << 16, &H);
  need("attention.head_count", std::nullopt, 1, 1024, &heads);
  need("attention.key_length", std::nullopt, 2, 4096, &Dg);
  need("attention.key_length_swa", std::nullopt, 2, 4096, &D);
  need("embedding_length_per_layer_input", int64_t{0}, 0, 1 << 16, &P);
  need("attention.shared_kv_layers", int64_t{0}, 0, L, &shared);
  int64_t value_length = 0, value_length_swa = 0, rot = 0, rot_swa = 0;
  need("attention.value_length", Dg, 2, 4096, &value_length);
  need("attention.value_length_swa", D, 2, 4096, &value_length_swa);
  need("rope.dimension_count", Dg, 2, 4096, &rot);
  need("rope.dimension_count_swa", D, 2, 4096, &rot_swa);
  if (!s.ok()) return s;
  if (value_length != Dg || value_length_swa != D || rot != Dg || rot_swa != D) {
    return configError(f.path() + ": value_length(_swa) and rope.dimension_count(_swa) must equal "
                       "attention.key_length(_swa) (Gemma 4 rotates whole heads, partial RoPE "
                       "comes from rope_freqs)");
  }
  GemmaConfig probe;
  probe.n_layer = static_cast<int>(L);
  probe.max_positions = 1 << 30;
  int64_t window = 0;
  if (!k.has("attention.sliding_window_pattern")) {
    return configError(f.path() + ": Gemma 4 needs key '" +
                       k.full("attention.sliding_window_pattern") + "'");
  }
  if (!(s = k.integer("attention.sliding_window", std::nullopt, 1, 1 << 30, &window)).ok()) {
    return s;
  }
  if (!(s = readLayerTypes(f, k, &probe)).ok()) return s;
  std::vector<int64_t> ffn, kv;
  if (!(s = perLayerInts(f, k, "feed_forward_length", probe.n_layer, std::nullopt, 1, 1 << 20,
                         &ffn)).ok() ||
      !(s = perLayerInts(f, k, "attention.head_count_kv", probe.n_layer, heads, 1, heads, &kv))
           .ok()) {
    return s;
  }
  api::Json types = api::Json::array();
  int first_sliding = -1, first_full = -1;
  for (int l = 0; l < L; ++l) {
    types.push_back(probe.isSliding(l) ? "sliding_attention" : "full_attention");
    int& first = probe.isSliding(l) ? first_sliding : first_full;
    if (first < 0) first = l;
  }
  const int first_shared = static_cast<int>(L - shared);
  j["model_type"] = "gemma4_text";
  j["architectures"] = {"Gemma4ForCausalLM"};
  j["num_hidden_layers"] = L;
  j["hidden_size"] = H;
  j["num_attention_heads"] = heads;
  j["head_dim"] = D;
  j["global_head_dim"] = Dg;
  j["layer_types"] = types;
  j["sliding_window"] = probe.sliding_window;
  j["num_kv_shared_layers"] = shared;
  j["intermediate_size"] = ffn[0];
  // E2B's double-wide MLP: the KV-shared layers are twice as wide (parseGemmaConfig checks the
  // widths against the tensors' shapes).
  j["use_double_wide_mlp"] = shared > 0 && ffn.back() == 2 * ffn[0];
  j["num_key_value_heads"] = kv[size_t(first_sliding >= 0 ? first_sliding : 0)];
  j["num_global_key_value_heads"] = nullptr;
  if (first_full >= 0 && first_sliding >= 0 && kv[size_t(first_full)] != kv[size_t(first_sliding)]) {
    j["num_global_key_value_heads"] = kv[size_t(first_full)];
  }
  // K=V: a full layer with its own K/V and no attn_v (llama.cpp decides it the same way).
  bool k_eq_v = false;
  for (int l = 0; l < first_shared; ++l) {
    if (!probe.isSliding(l) &&
        f.findTensor("blk." + std::to_string(l) + ".attn_v.weight") == nullptr) {
      k_eq_v = true;
    }
  }
  j["attention_k_eq_v"] = k_eq_v;
  if (!(s = gemma4Rest(f, k, P, &j)).ok()) return s;
  auto c = parseGemmaConfig(j.dump(), f.path() + " (its gemma4.* keys)");
  if (!c.ok()) return c.status();
  if (!(s = checkFfnWidths(f, *c, ffn)).ok() || !(s = checkKvHeads(f, *c, kv)).ok()) return s;
  if (!(s = readSpecialIds(f, &*c)).ok()) return s;
  return c;
}

// convert_hf_to_gguf.py Gemma4Model.set_gguf_parameters, key for key (gguf_gemma.h).
api::StatusOr<std::vector<KeyValue>> gemma4Metadata(const GemmaConfig& c) {
  if (c.rope_sliding.type != RopeType::kDefault || c.rope_sliding.factor != 1.0) {
    return configError("Gemma 4 sliding layers with scaled or proportional RoPE cannot be "
                       "written to GGUF");
  }
  if (c.rope_full.type == RopeType::kLinear || c.rope_full.factor != 1.0) {
    return configError("Gemma 4 full layers with scaled RoPE (factor " +
                       std::to_string(c.rope_full.factor) + ") cannot be written to GGUF");
  }
  const std::string_view a = kArchGemma4;
  std::vector<KeyValue> m = headMetadata(a, c);
  auto u32 = [&](std::string_view name, int64_t v) {
    m.emplace_back(key(a, name), Value::u32(static_cast<uint32_t>(v)));
  };
  auto f32 = [&](std::string_view name, double v) {
    m.emplace_back(key(a, name), Value::f32(static_cast<float>(v)));
  };
  m.emplace_back(key(a, "feed_forward_length"),
                 perLayer(c, [](const LayerGeometry& g) { return g.intermediate; }));
  u32("attention.head_count", c.n_head);
  m.emplace_back(key(a, "attention.head_count_kv"),
                 perLayer(c, [](const LayerGeometry& g) { return int64_t{g.n_head_kv}; }));
  u32("attention.key_length", c.global_head_dim);
  u32("attention.value_length", c.global_head_dim);
  u32("attention.key_length_swa", c.head_dim);
  u32("attention.value_length_swa", c.head_dim);
  f32("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  u32("attention.sliding_window", c.sliding_window);
  std::vector<uint64_t> pattern;
  for (int l = 0; l < c.n_layer; ++l) pattern.push_back(c.isSliding(l) ? 1 : 0);
  m.emplace_back(key(a, "attention.sliding_window_pattern"),
                 Value::uintArray(ValueType::kBool, std::move(pattern)));
  u32("attention.shared_kv_layers", c.n_kv_shared);
  u32("embedding_length_per_layer_input", c.ple_dim);
  f32("rope.freq_base", c.rope_full.base);
  f32("rope.freq_base_swa", c.rope_sliding.base);
  u32("rope.dimension_count", c.global_head_dim);
  u32("rope.dimension_count_swa", c.head_dim);
  if (c.final_softcap != 0) f32("final_logit_softcapping", c.final_softcap);
  if (c.moe.n_expert > 0) {
    u32("expert_count", c.moe.n_expert);
    u32("expert_used_count", c.moe.top_k);
    u32("expert_feed_forward_length", c.moe.intermediate);
  }
  specialIdMetadata(c, &m);
  return m;
}

}  // namespace internal

std::vector<float> ropeFreqs(const GemmaConfig& c) {
  const int half = c.global_head_dim / 2;
  const int rotated = c.rope_full.rotatedPairs(c.global_head_dim);
  std::vector<float> v(static_cast<size_t>(half), kRopeFreqOff);
  for (int j = 0; j < rotated && j < half; ++j) v[size_t(j)] = 1.0f;
  return v;
}

}  // namespace engine::gguf
