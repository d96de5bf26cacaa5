// Gemma4Model: the Gemma 4 text forward pass (gemma-spec §3) over an engine::Backend, batched
// across sequences as Gemma3Model is (engine/models/model.h). One model class serves all four
// text architectures: the per-layer geometry of GemmaConfig (head dims 256 / 512, K=V full
// layers, KV sharing, double-wide MLP) and the optional blocks (PLE on E2B / E4B, the routed
// experts of 26B-A4B) come from the config and checkpoint.
//
// Numerics follow HF's bf16 model (§6.1) with Gemma 4's differences (§3.1): x * w norms, v_norm,
// attention scale 1.0, proportional RoPE on full layers, bf16 router softmax, layer scalars, and
// logits rounded to bf16 and softcapped with each op in bf16. KV-shared layers write no K/V and
// attend over their source layer's cache (§3.5); in a prefill only the rows whose logits are
// wanted go through them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "api/status.h"
#include "engine/models/model.h"

namespace engine {

class Gemma4Model final : public Model {
 public:
  // Opens the checkpoint in `model_dir` and builds a CPU backend with `threads` threads (0 = all
  // cores). Fails as Checkpoint::open does (kIo / kConfig), and with kConfig for a Gemma 3
  // checkpoint.
  static api::StatusOr<std::unique_ptr<Gemma4Model>> load(
      const std::string& model_dir, int threads,
      std::optional<quant::QType> quantize = std::nullopt);
  ~Gemma4Model() override;

  api::Status forward(std::vector<SeqBatchItem>& batch) override;

 private:
  struct LayerRefs {
    WeightRef input_norm, q, k, v, o, q_norm, k_norm, post_attn_norm, pre_ff_norm, post_ff_norm,
        gate, up, down, layer_scalar;
    WeightRef router, router_scale, expert_scale, experts_gate_up, experts_down, pre_ff_norm_2,
        post_ff_norm_1, post_ff_norm_2;           // expert block (§3.7)
    WeightRef ple_gate, ple_proj, post_ple_norm;  // PLE (§3.8)
  };

  Gemma4Model() = default;
  api::Status prepareWeights();
  void reserve(int n_tokens);
  void attention(std::vector<SeqBatchItem>& batch, int l, int T);
  void experts(int l, int T);
  void perLayerInputs(int T);
  void perLayerInject(int l, int T);
  int keepLogitRowsOnly(const std::vector<SeqBatchItem>& batch, int T);

  WeightRef embed_, final_norm_, ple_table_, ple_model_proj_, ple_proj_norm_;
  std::vector<LayerRefs> layers_;

  // Activations, sized for the largest step so far (backend memory).
  int cap_tokens_ = 0;
  bool tail_only_ = false;  // this step's KV-shared layers see only the logit rows
  std::unique_ptr<Buffer> h_, x_, q_, k_, v_, att_, gate_, up_, rope_sliding_, rope_full_;
  std::unique_ptr<Buffer> xe_, m2_, router_logits_, expert_idx_, expert_w_;  // experts
  std::unique_ptr<Buffer> ple_, ple_tmp_, ple_gate_;                         // PLE
};

}  // namespace engine
