// EmbeddingGemmaModel: a Gemma 3 text encoder (EmbeddingGemma) that turns texts into embedding
// vectors, over an engine::Backend.
//
// The checkpoint is a sentence-transformers directory:
//   dir/config.json            Gemma 3 text config with "use_bidirectional_attention": true
//                              (architectures ["Gemma3TextModel"]); engine/model_config.h
//   dir/model.safetensors      the text model, no lm_head (engine/checkpoint.h)
//   dir/modules.json           the module chain, in "idx" order: Transformer (path ""), Pooling,
//                              zero or more Dense, optionally Normalize
//   dir/<Pooling>/config.json  pooling_mode_mean_tokens (EmbeddingGemma), _cls_token or
//                              _lasttoken; exactly one mode may be set
//   dir/<Dense>/config.json    in_features, out_features, bias (false), activation_function
//                              (torch.nn.modules.linear.Identity)
//   dir/<Dense>/model.safetensors   linear.weight [out_features, in_features]
//   dir/sentence_bert_config.json   optional: max_seq_length bounds an input's tokens
//   dir/tokenizer.json, dir/tokenizer_config.json   (add_bos_token, add_eos_token)
// Anything missing, malformed or outside what is implemented fails load() with kIo (a file) or
// kConfig naming the file and key.
//
// The forward pass (gemma-spec §2 with §2.8's encoder mask), one pass over each whole input:
// scaled token embeddings, the decoder layers with bidirectional attention (full layers see
// every token of the input; sliding layers see the keys with |pos_k - pos_q| < W//2 + 1, the
// window HF derives from the configured W for an encoder), the final norm, pooling over the
// input's tokens, the Dense layers, then L2 normalisation. Numerics as Gemma3Model (HF's bf16
// model, §6.1); the pooled vector is bf16(bf16(Σ h) / n) as a bf16 sentence-transformers model
// computes it, each Dense output is rounded to bf16, and the normalisation is fp32.
//
// Matryoshka: `dimensions` < dimensions() keeps the first `dimensions` values of the Dense
// output and normalises them again (when the chain ends in Normalize), as sentence-transformers'
// truncate_dim does.
//
// Input texts are taken as given: no query/document prompt ("task: search result | query: ",
// "title: none | text: ") is added; a caller that wants one puts it in the text. Tokens are
// <bos> text <eos> as EmbeddingGemma's tokenizer config asks (add_bos_token / add_eos_token).
//
// Not thread-safe: one thread owns the model and calls embed().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"

namespace engine {

enum class PoolingMode { kMean, kCls, kLastToken };

// Optional outputs of embed() for tests: per input i, when hidden_states[i] is not null,
// [n_layer + 1, n_i, hidden] fp32 (the residual stream after the scaled embedding and after each
// layer), and when pooled is not null, [inputs, hidden] fp32 (after pooling, before Dense).
struct EmbedTrace {
  std::vector<float*> hidden_states;
  float* pooled = nullptr;
};

class EmbeddingGemmaModel {
 public:
  // Opens the directory described above with a CPU backend of `threads` threads (0 = all
  // cores). The tokenizer is optional (`needs_tokenizer` false): the parity tests feed ids.
  static api::StatusOr<std::unique_ptr<EmbeddingGemmaModel>> load(const std::string& dir,
                                                                   int threads,
                                                                   bool needs_tokenizer = true);
  ~EmbeddingGemmaModel();

  const GemmaConfig& config() const { return checkpoint_->config(); }
  // Width of the embeddings: the last Dense layer's out_features, else hidden.
  int dimensions() const { return dimensions_; }
  bool normalized() const { return normalize_; }
  PoolingMode pooling() const { return pooling_; }
  // The most tokens one input may have (<bos> and <eos> included): max_seq_length, bounded by
  // max_position_embeddings.
  int maxTokens() const { return max_tokens_; }
  // The tokenizer loaded beside the weights (null when load() was told not to need one).
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }

  // The ids of `text` as the model reads it: <bos>, the text's tokens, <eos> (each as the
  // tokenizer config asks). Needs the tokenizer.
  std::vector<int32_t> tokenize(std::string_view text) const;

  // Embeds every input in one pass (matmuls over all inputs' tokens, attention per input) into
  // out [inputs.size(), dims] fp32, dims in [1, dimensions()]. kInvalidRequest for an empty
  // input, one longer than maxTokens() (the message names its index), a token id outside
  // [0, vocab), or dims out of range.
  api::Status embed(std::span<const std::vector<int32_t>> inputs, int dims, float* out,
                    const EmbedTrace* trace = nullptr);

 private:
  struct LayerRefs {
    WeightRef input_norm, q, k, v, o, q_norm, k_norm, post_attn_norm, pre_ff_norm, post_ff_norm,
        gate, up, down;
  };
  struct Dense {
    std::unique_ptr<SafetensorsFile> file;
    Weight weight;
    WeightRef ref;
  };

  EmbeddingGemmaModel() = default;
  api::Status readModules(const std::string& dir);
  api::Status readTokenizer(const std::string& dir, bool needs_tokenizer);
  api::Status prepareWeights();
  void reserve(int n_tokens, int n_inputs);
  void runLayers(std::span<const std::vector<int32_t>> inputs, const EmbedTrace* trace);
  void pool(std::span<const std::vector<int32_t>> inputs, std::vector<float>& pooled);
  void project(std::vector<float>& x, int n_inputs);

  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  bool add_bos_ = true, add_eos_ = false;
  PoolingMode pooling_ = PoolingMode::kMean;
  std::vector<Dense> dense_;
  bool normalize_ = false;
  int dimensions_ = 0;
  int max_tokens_ = 0;

  WeightRef embed_, final_norm_;
  std::vector<LayerRefs> layers_;
  // Host-side per-call arrays.
  std::vector<int32_t> ids_, pos_, slot_pos_;
  std::vector<AttentionSeq> seqs_;
  // Activations, sized for the largest call so far (backend memory).
  int cap_tokens_ = 0, cap_inputs_ = 0;
  std::unique_ptr<Buffer> h_, x_, q_, k_, v_, att_, gate_, up_, rope_sliding_, rope_full_;
  std::unique_ptr<Buffer> kv_k_, kv_v_, kv_pos_, dense_a_, dense_b_;
};

}  // namespace engine
