// GemmaConfig: the resolved architecture of a Gemma 3 or Gemma 4 text model, read from a Hugging
// Face config.json (and generation_config.json when present) per gemma-spec §1.
//
// Four layouts are accepted: Gemma3ForCausalLM (model_type "gemma3_text") and Gemma4ForCausalLM
// ("gemma4_text") with the text keys at the top level, Gemma3ForConditionalGeneration ("gemma3")
// and Gemma4ForConditionalGeneration ("gemma4") with them under "text_config". Keys that a config
// leaves out take the Gemma3TextConfig / Gemma4TextConfig defaults (§1.2): the 4b/12b/27b
// text_config names only a handful of keys. Everything the forward pass needs is resolved here
// once, per layer (head dim, KV heads, window, RoPE, K=V, KV-sharing source, MLP width), so the
// model code never reads JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace engine {

enum class ModelFamily { kGemma3, kGemma4 };

// How a layer type's RoPE frequencies are made (§2.3, §3.4).
enum class RopeType {
  kDefault,       // inv_freq[j] = 1 / base^(2j/D)
  kLinear,        // the same, divided by factor
  kProportional,  // Gemma 4 full layers: the first rotatedPairs(D) pairs as default, the rest 0
};

// RoPE of one layer type, rotate_half layout: pair j is (j, j + D/2).
struct RopeParams {
  double base = 10000.0;               // rope_theta of this layer type
  double factor = 1.0;                 // linear scaling factor (1 = none); divides inv_freq
  RopeType type = RopeType::kDefault;
  double partial_rotary_factor = 1.0;  // proportional only: the fraction of D that rotates

  // Frequency pairs that rotate for head dim D: D/2, or int(partial * D // 2) when proportional
  // (§3.4: 0.25 of 512 -> 64 pairs, dims 0..63 and 256..319). The others get inv_freq 0.
  int rotatedPairs(int head_dim) const {
    if (type != RopeType::kProportional) return head_dim / 2;
    return static_cast<int>(partial_rotary_factor * head_dim / 2);
  }
};

// The resolved geometry of one decoder layer (§3.3-3.6; for Gemma 3 every layer of a type is
// alike).
struct LayerGeometry {
  bool sliding = true;       // sliding_attention (true) or full_attention
  int head_dim = 0;          // D_l: head_dim, or global_head_dim on Gemma 4 full layers
  int n_head_kv = 0;         // Hkv_l: num_global_key_value_heads on Gemma 4 K=V full layers
  int window = 0;            // W on sliding layers, 0 on full layers
  bool k_eq_v = false;       // attention_k_eq_v on a full layer: no v_proj, V = raw k_proj output
  int kv_source = 0;         // the layer whose K/V it attends to: itself, or for a KV-shared
                             // layer the last earlier non-shared layer of its type (§3.5)
  int64_t intermediate = 0;  // I_l: GeGLU width (doubled on E2B's KV-shared layers, §3.6)

  int kvDim() const { return n_head_kv * head_dim; }
};

// The routed expert block of Gemma 4 26B-A4B (§3.7).
struct MoeConfig {
  int n_expert = 0;           // num_experts; 0 = no expert block
  int top_k = 0;              // top_k_experts
  int64_t intermediate = 0;   // moe_intermediate_size
};

// Sampling defaults a checkpoint suggests in generation_config.json; unset when it is silent.
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<int> top_k;
  std::optional<float> top_p;
  std::optional<float> temperature;
};

struct GemmaConfig {
  ModelFamily family = ModelFamily::kGemma3;
  std::string model_type;    // top-level model_type: gemma3_text, gemma3, gemma4_text or gemma4
  std::string architecture;  // architectures[0] when given, e.g. "Gemma3ForCausalLM"
  bool conditional = false;  // true for the *ForConditionalGeneration layout (text_config)

  int64_t hidden = 0;         // H, hidden_size
  int64_t intermediate = 0;   // I, intermediate_size (GeGLU width)
  int n_layer = 0;            // L, num_hidden_layers
  int n_head = 0;             // Hq, num_attention_heads
  int n_head_kv = 0;          // Hkv, num_key_value_heads; Hq % Hkv == 0, consecutive q heads share
                              // (Gemma 4: of sliding layers; see layers[l] for each layer)
  int head_dim = 0;           // D (even); q_proj has Hq*D rows, k/v_proj Hkv*D (Gemma 4: sliding
                              // layers; full layers use global_head_dim)
  int64_t vocab = 0;          // vocab_size = rows of embed_tokens = logits per position (§2.6);
                              // may exceed the tokenizer's vocabulary
  int64_t max_positions = 0;  // max_position_embeddings
  int sliding_window = 0;     // W: on sliding layers a query sees W keys including itself (§2.7)
  std::vector<bool> is_sliding;  // [n_layer]: true = sliding_attention, false = full_attention

  std::vector<LayerGeometry> layers;  // [n_layer], resolved from everything below

  RopeParams rope_sliding;  // sliding layers: rope_local_base_freq (10000), no scaling
  RopeParams rope_full;     // full layers: Gemma 3 rope_theta (1e6), rope_scaling factor (8 on
                            // 4b+); Gemma 4 proportional, theta 1e6, partial 0.25 (§3.4)

  double query_pre_attn_scalar = 256;  // as configured (27b: 168, not head_dim; §2.3)
  float attn_scale = 0;  // Gemma 3: query_pre_attn_scalar^-0.5; Gemma 4: 1.0 (§3.3)
  float embed_scale = 0;  // bf16(sqrt(H)): HF rounds the scale before multiplying (§2.1, §6.2)
  float rms_norm_eps = 1e-6f;  // every RMSNorm; weights are (1 + w) in Gemma 3, w in Gemma 4
  // use_bidirectional_attention: true (Gemma 3 only): EmbeddingGemma, an encoder whose queries
  // see keys on both sides (engine/models/embedding_gemma.h); sliding_window stays as configured
  // and the encoder derives HF's W//2 + 1 bound from it. The causal models refuse it.
  bool bidirectional = false;

  // ---- Gemma 4 only (zero / false for Gemma 3)
  int global_head_dim = 0;         // head dim of full layers (512)
  int n_head_kv_global = 0;        // num_global_key_value_heads (0 = null)
  bool attention_k_eq_v = false;   // full layers have no v_proj (§3.3)
  int n_kv_shared = 0;             // num_kv_shared_layers: the last ones reuse earlier K/V (§3.5)
  bool double_wide_mlp = false;    // use_double_wide_mlp (§3.6)
  MoeConfig moe;                   // enable_moe_block (§3.7)
  int64_t ple_dim = 0;             // hidden_size_per_layer_input P; 0 = no PLE (§3.8)
  int64_t ple_vocab = 0;           // vocab_size_per_layer_input
  float final_softcap = 0;         // final_logit_softcapping; 0 = none (Gemma 4: 30)

  int32_t bos_id = 2;
  int32_t pad_id = 0;
  std::vector<int32_t> eos_ids;  // union of config.json and generation_config.json, in order
  GenerationDefaults generation;

  bool isGemma4() const { return family == ModelFamily::kGemma4; }
  bool isSliding(int layer) const { return is_sliding[static_cast<size_t>(layer)]; }
  const RopeParams& rope(int layer) const { return isSliding(layer) ? rope_sliding : rope_full; }
  const LayerGeometry& layer(int l) const { return layers[static_cast<size_t>(l)]; }
  // The first KV-shared layer (n_layer when none share).
  int firstSharedLayer() const { return n_layer - n_kv_shared; }
  bool storesKv(int l) const { return layer(l).kv_source == l; }
};

// Parses config.json text (and generation_config.json text, when the checkpoint has one).
// `config_name` / `generation_name` are used in error messages (normally the file paths).
// Fails with kConfig naming the file and key: malformed JSON, wrong types, values out of range,
// model types other than Gemma 3 / Gemma 4, activations other than gelu_pytorch_tanh, logit
// softcapping on Gemma 3 (null is accepted), attention softcapping, RoPE types other than
// default/linear (and proportional on Gemma 4), inconsistent head counts, a KV-shared layer
// without a source layer, an expert block without its sizes.
api::StatusOr<GemmaConfig> parseGemmaConfig(
    std::string_view config_json, std::string_view config_name,
    std::optional<std::string_view> generation_json = {},
    std::string_view generation_name = "generation_config.json");

// Reads `dir`/config.json and, if it exists, `dir`/generation_config.json. A file that cannot
// be read fails with kIo; its contents fail as parseGemmaConfig does.
api::StatusOr<GemmaConfig> loadGemmaConfig(const std::string& dir);

// Reads a whole (small) file; kIo naming the path on failure. Shared by the checkpoint loader.
api::StatusOr<std::string> readTextFile(const std::string& path);

}  // namespace engine
