// Gemma3Model: the Gemma 3 text forward pass (gemma-spec §2) over an engine::Backend, with a
// per-sequence KV cache, batched across sequences (engine/models/model.h).
//
// Numerics follow HF's bf16 model (§6.1): bf16 rounding after the embedding scale, every norm,
// linear layer, RoPE op, GeGLU and residual add; fp32 accumulation; sdpa-style fp32 attention.
// Logits are the fp32 result of the final GEMM (HF rounds them to bf16; bf16(logits) gives HF's
// values).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "api/status.h"
#include "engine/models/model.h"

namespace engine {

class Gemma3Model final : public Model {
 public:
  // Opens the checkpoint in `model_dir` (engine/checkpoint.h) and builds a CPU backend with
  // `threads` threads (0 = all cores). Fails as Checkpoint::open does (kIo / kConfig), and with
  // kConfig for a Gemma 4 checkpoint.
  static api::StatusOr<std::unique_ptr<Gemma3Model>> load(
      const std::string& model_dir, int threads,
      std::optional<quant::QType> quantize = std::nullopt);
  ~Gemma3Model() override;

  api::Status forward(std::vector<SeqBatchItem>& batch) override;

 private:
  struct LayerRefs {
    WeightRef input_norm, q, k, v, o, q_norm, k_norm, post_attn_norm, pre_ff_norm, post_ff_norm,
        gate, up, down;
  };

  Gemma3Model() = default;
  api::Status prepareWeights();
  void reserve(int n_tokens);

  WeightRef embed_, final_norm_;
  std::vector<LayerRefs> layers_;

  // Activations, sized for the largest step so far (backend memory).
  int cap_tokens_ = 0;
  std::unique_ptr<Buffer> h_, x_, q_, k_, v_, att_, gate_, up_, rope_sliding_, rope_full_;
};

}  // namespace engine
