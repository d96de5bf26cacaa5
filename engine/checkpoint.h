// Checkpoint: a Hugging Face Gemma 3 or Gemma 4 model directory, opened and checked against its
// config.
//
//   dir/config.json                      required (engine/model_config.h)
//   dir/generation_config.json           optional (eos ids, sampling defaults)
//   dir/model.safetensors                one file, or
//   dir/model.safetensors.index.json     a weight_map naming the shards in dir/ (§4.2)
//
// Both tensor-name layouts are read (§4.3): text-only "model.layers.0...." and multimodal
// "language_model.model.layers.0...." / "model.language_model.layers.0....". Everything up to and
// including "language_model." and then a leading "model." is stripped to get the canonical text
// name; vision-tower, audio-tower and projector tensors are skipped. Every tensor the forward
// pass needs must be present exactly once, with exactly the shape the config implies and a dtype
// of BF16, F16 or F32; otherwise open() fails naming the tensor and its file. Gemma 4 names
// (§4.4) add the PLE tensors, the expert block (3-D expert tensors, without ".weight"),
// `layer_scalar`, and leave out v_proj on K=V layers; the k_proj / v_proj / k_norm that KV-shared
// layers still carry are ignored (listed in unusedTensors()), as transformers does.
//
// A path ending in ".gguf" is instead a llama.cpp GGUF file of a Gemma 3 or Gemma 4 text model
// (engine/gguf_gemma.h): the config comes from its metadata, tensors are found by their GGUF
// names, matrices and expert stacks may be block-quantized (Q8_0, Q5_0, Q4_0, Q4_K, Q6_K, read
// as stored), and the Gemma 3 norm weights the converter stored as 1 + w are turned back into w
// in buffers the Checkpoint owns.
//
// Weights are not copied: each Weight points into a read-only mapping owned by the Checkpoint,
// valid for the Checkpoint's lifetime. All matrices are nn.Linear weights, stored
// [out_features, in_features] row-major and applied as y = x · Wᵀ (no biases anywhere).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace engine {

namespace gguf {
class GgufFile;
}

// One checkpoint tensor as the forward pass sees it.
struct Weight {
  const void* data = nullptr;  // little-endian, row-major; aligned to dtypeSize(dtype)
  DType dtype = DType::kBF16;  // kBF16, kF16 or kF32; read it, don't assume it (§4.5). From a
                               // GGUF file also kQ8_0/kQ5_0/kQ4_0/kQ4_K/kQ6_K (matrices and expert stacks;
                               // rows of quant::rowBytes, data aligned to the file's alignment)
  std::vector<int64_t> shape;  // checked against the config at open()
  size_t bytes = 0;
  std::string name;  // as stored, e.g. "model.language_model.layers.0.mlp.up_proj.weight"
  std::string file;  // path of the .safetensors (or .gguf) file that holds it

  int64_t numel() const;
  // Element `i` (flat, row-major) as float. Exact for all three dtypes; 0 for the block formats
  // (dequantize their rows with quant::dequantizeRow). Slow; for tests and reference code.
  float at(int64_t i) const;
  // The whole tensor as float into out[numel()].
  void toFloat(float* out) const;
};

// One decoder layer (§2.5, §3.10). H = hidden, Hq/Hkv = heads, D = head_dim, I = intermediate, all
// of this layer (config.layer(l)). Gemma 3 norm weights are stored zero-centred and the norm
// multiplies by (1 + w) (§2.2); Gemma 4 norms multiply by w (§3.2). A Weight whose data is null is
// absent: k/v/k_norm on KV-shared layers, v_proj on K=V layers, the Gemma 4 extras elsewhere.
struct GemmaLayerWeights {
  Weight input_layernorm;             // [H]
  Weight q_proj;                      // [Hq*D, H]; head h = rows h*D .. h*D+D-1
  Weight k_proj;                      // [Hkv*D, H]
  Weight v_proj;                      // [Hkv*D, H]
  Weight o_proj;                      // [H, Hq*D]
  Weight q_norm;                      // [D], applied per head before RoPE
  Weight k_norm;                      // [D]
  Weight post_attention_layernorm;    // [H]
  Weight pre_feedforward_layernorm;   // [H]
  Weight post_feedforward_layernorm;  // [H]
  Weight gate_proj;                   // [I, H]
  Weight up_proj;                     // [I, H]
  Weight down_proj;                   // [H, I]
  // ---- Gemma 4
  Weight layer_scalar;                 // [1], multiplies the layer's output (§3.9)
  Weight router_proj;                  // [E, H] (§3.7)
  Weight router_scale;                 // [H]
  Weight router_per_expert_scale;      // [E]
  Weight experts_gate_up;              // [E, 2*I_moe, H]: rows 0..I_moe-1 gate, then up
  Weight experts_down;                 // [E, H, I_moe]
  Weight pre_feedforward_layernorm_2;  // [H]
  Weight post_feedforward_layernorm_1; // [H]
  Weight post_feedforward_layernorm_2; // [H]
  Weight per_layer_input_gate;         // [P, H] (§3.8)
  Weight per_layer_projection;         // [H, P]
  Weight post_per_layer_input_norm;    // [H]
};

struct GemmaWeights {
  Weight embed;  // [embed_rows, H]; also the lm_head: logits = h · embedᵀ (tied, §2.6)
  int64_t embed_rows = 0;  // = config.vocab; may exceed the tokenizer's vocabulary (§2.6)
  Weight final_norm;       // [H]
  std::vector<GemmaLayerWeights> layers;  // [n_layer]
  // ---- Gemma 4 PLE (§3.8), when config.ple_dim > 0
  Weight embed_per_layer;             // [ple_vocab, L*P]; stays in the mapping, rows read per token
  Weight per_layer_model_projection;  // [L*P, H]
  Weight per_layer_projection_norm;   // [P]
};

class Checkpoint {
 public:
  ~Checkpoint();
  // Reads the config, maps the safetensors file(s) and checks every required tensor; `dir` may
  // also name a .gguf file (see above; dir() is then that path).
  // Fails with kIo when a file is missing, unreadable or not valid safetensors, and with kConfig
  // when the config is unsupported or a tensor is missing, duplicated, mis-shaped or of an
  // unsupported dtype. Messages name the file and the tensor.
  static api::StatusOr<std::unique_ptr<Checkpoint>> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const GemmaConfig& config() const { return config_; }
  const GemmaWeights& weights() const { return weights_; }
  // Paths of the mapped .safetensors files (or the .gguf file).
  std::vector<std::string> files() const;
  // Stored names of tensors that the text model does not use: vision / audio towers, projectors,
  // an untied-looking lm_head.weight (ignored: Gemma ties it), the leftover k/v projections of
  // Gemma 4's KV-shared layers, anything unrecognised.
  const std::vector<std::string>& unusedTensors() const { return unused_; }
  // Total bytes of the tensors in weights().
  uint64_t weightBytes() const { return weight_bytes_; }

 private:
  Checkpoint();
  static api::StatusOr<std::unique_ptr<Checkpoint>> openGguf(const std::string& path);

  std::string dir_;
  GemmaConfig config_;
  GemmaWeights weights_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unique_ptr<gguf::GgufFile> gguf_;
  std::vector<std::vector<float>> owned_;  // GGUF norm weights with the converter's shift undone
  std::vector<std::string> unused_;
  uint64_t weight_bytes_ = 0;
};

// The canonical text name of a stored tensor name (§4.3, §4.4), or nullopt for vision, audio and
// projector tensors. "model.language_model.layers.0.mlp.up_proj.weight" -> "layers.0.mlp.up_proj.weight".
std::optional<std::string> canonicalTensorName(std::string_view stored);

}  // namespace engine
