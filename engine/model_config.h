// GemmaConfig: the resolved architecture of a Gemma 3 text model, read from a Hugging Face
// config.json (and generation_config.json when present) per gemma-spec §1.
//
// Both published layouts are accepted: Gemma3ForCausalLM (model_type "gemma3_text", text keys at
// the top level) and Gemma3ForConditionalGeneration (model_type "gemma3", text keys under
// "text_config"). Keys that a config leaves out take the Gemma3TextConfig defaults (§1.2): the
// 4b/12b/27b text_config names only a handful of keys. Everything the forward pass needs is
// resolved here once (layer types, per-type RoPE, scales), so the model code never reads JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace engine {

// RoPE of one layer type (§2.3): inv_freq[j] = 1 / base^(2j/D) / factor, rotate_half layout.
struct RopeParams {
  double base = 10000.0;  // rope_theta of this layer type
  double factor = 1.0;    // linear scaling factor (1 = none); divides inv_freq
};

// Sampling defaults a checkpoint suggests in generation_config.json; unset when it is silent.
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<int> top_k;
  std::optional<float> top_p;
  std::optional<float> temperature;
};

struct GemmaConfig {
  std::string model_type;    // top-level model_type: "gemma3_text" or "gemma3"
  std::string architecture;  // architectures[0] when given, e.g. "Gemma3ForCausalLM"
  bool conditional = false;  // true for the Gemma3ForConditionalGeneration layout (text_config)

  int64_t hidden = 0;         // H, hidden_size
  int64_t intermediate = 0;   // I, intermediate_size (GeGLU width)
  int n_layer = 0;            // L, num_hidden_layers
  int n_head = 0;             // Hq, num_attention_heads
  int n_head_kv = 0;          // Hkv, num_key_value_heads; Hq % Hkv == 0, consecutive q heads share
  int head_dim = 0;           // D (even); q_proj has Hq*D rows, k/v_proj Hkv*D
  int64_t vocab = 0;          // vocab_size = rows of embed_tokens = logits per position (§2.6);
                              // may exceed the tokenizer's vocabulary
  int64_t max_positions = 0;  // max_position_embeddings
  int sliding_window = 0;     // W: on sliding layers a query sees W keys including itself (§2.7)
  std::vector<bool> is_sliding;  // [n_layer]: true = sliding_attention, false = full_attention

  RopeParams rope_sliding;  // sliding layers: rope_local_base_freq (10000), no scaling
  RopeParams rope_full;     // full layers: rope_theta (1e6), rope_scaling factor (8 on 4b+)

  double query_pre_attn_scalar = 256;  // as configured (27b: 168, not head_dim; §2.3)
  float attn_scale = 0;                // query_pre_attn_scalar^-0.5, multiplies q·k
  float embed_scale = 0;  // bf16(sqrt(H)): HF rounds the scale before multiplying (§2.1, §6.2)
  float rms_norm_eps = 1e-6f;  // every RMSNorm, including q_norm / k_norm; weights are (1 + w)

  int32_t bos_id = 2;
  int32_t pad_id = 0;
  std::vector<int32_t> eos_ids;  // union of config.json and generation_config.json, in order
  GenerationDefaults generation;

  bool isSliding(int layer) const { return is_sliding[static_cast<size_t>(layer)]; }
  const RopeParams& rope(int layer) const { return isSliding(layer) ? rope_sliding : rope_full; }
};

// Parses config.json text (and generation_config.json text, when the checkpoint has one).
// `config_name` / `generation_name` are used in error messages (normally the file paths).
// Fails with kConfig naming the file and key: malformed JSON, wrong types, values out of range,
// model types other than Gemma 3 (Gemma 4 included), activations other than gelu_pytorch_tanh,
// logit softcapping (Gemma 3 has none; null is accepted), RoPE types other than default/linear.
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
