// Checkpoint: a Hugging Face Gemma 3 model directory, opened and checked against its config.
//
//   dir/config.json                      required (engine/model_config.h)
//   dir/generation_config.json           optional (eos ids, sampling defaults)
//   dir/model.safetensors                one file, or
//   dir/model.safetensors.index.json     a weight_map naming the shards in dir/ (§4.2)
//
// Both tensor-name layouts are read (§4.3): text-only "model.layers.0...." and multimodal
// "language_model.model.layers.0...." / "model.language_model.layers.0....". Everything up to and
// including "language_model." and then a leading "model." is stripped to get the canonical text
// name; vision-tower and projector tensors are skipped. Every tensor the forward pass needs must
// be present exactly once, with exactly the shape the config implies and a dtype of BF16, F16 or
// F32; otherwise open() fails naming the tensor and its file.
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

// One checkpoint tensor as the forward pass sees it.
struct Weight {
  const void* data = nullptr;  // little-endian, row-major; aligned to dtypeSize(dtype)
  DType dtype = DType::kBF16;  // kBF16, kF16 or kF32; read it, don't assume it (§4.5)
  std::vector<int64_t> shape;  // checked against the config at open()
  size_t bytes = 0;
  std::string name;  // as stored, e.g. "model.language_model.layers.0.mlp.up_proj.weight"
  std::string file;  // path of the .safetensors file that holds it

  int64_t numel() const;
  // Element `i` (flat, row-major) as float. Exact for all three dtypes. Slow; for tests and
  // reference code.
  float at(int64_t i) const;
  // The whole tensor as float into out[numel()].
  void toFloat(float* out) const;
};

// One decoder layer (§2.5). H = hidden, Hq/Hkv = heads, D = head_dim, I = intermediate.
// Norm weights are stored zero-centred: the norm multiplies by (1 + w), computed in fp32 (§2.2).
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
};

struct GemmaWeights {
  Weight embed;  // [embed_rows, H]; also the lm_head: logits = h · embedᵀ (tied, §2.6)
  int64_t embed_rows = 0;  // = config.vocab; may exceed the tokenizer's vocabulary (§2.6)
  Weight final_norm;       // [H]
  std::vector<GemmaLayerWeights> layers;  // [n_layer]
};

class Checkpoint {
 public:
  // Reads the config, maps the safetensors file(s) and checks every required tensor.
  // Fails with kIo when a file is missing, unreadable or not valid safetensors, and with kConfig
  // when the config is unsupported or a tensor is missing, duplicated, mis-shaped or of an
  // unsupported dtype. Messages name the file and the tensor.
  static api::StatusOr<std::unique_ptr<Checkpoint>> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const GemmaConfig& config() const { return config_; }
  const GemmaWeights& weights() const { return weights_; }
  // Paths of the mapped .safetensors files.
  std::vector<std::string> files() const;
  // Stored names of tensors that the text model does not use: vision tower, projector, an
  // untied-looking lm_head.weight (ignored: Gemma 3 ties it), anything unrecognised.
  const std::vector<std::string>& unusedTensors() const { return unused_; }
  // Total bytes of the tensors in weights().
  uint64_t weightBytes() const { return weight_bytes_; }

 private:
  Checkpoint() = default;

  std::string dir_;
  GemmaConfig config_;
  GemmaWeights weights_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::string> unused_;
  uint64_t weight_bytes_ = 0;
};

// The canonical text name of a stored tensor name (§4.3), or nullopt for vision and projector
// tensors. "model.language_model.layers.0.mlp.up_proj.weight" -> "layers.0.mlp.up_proj.weight".
std::optional<std::string> canonicalTensorName(std::string_view stored);

}  // namespace engine
