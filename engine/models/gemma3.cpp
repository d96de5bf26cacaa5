#include "engine/models/gemma3.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "engine/cpu_backend.h"

namespace engine {

using api::ErrorCode;
using api::Status;
using api::StatusOr;

Gemma3Model::~Gemma3Model() = default;

StatusOr<std::unique_ptr<Gemma3Model>> Gemma3Model::load(const std::string& model_dir, int threads,
                                                         std::optional<quant::QType> quantize) {
  std::unique_ptr<Gemma3Model> m(new Gemma3Model());
  if (Status s = m->open(model_dir, threads, quantize); !s.ok()) return s;
  if (m->config().isGemma4())
    return Status(ErrorCode::kConfig, model_dir + ": a Gemma 4 checkpoint (engine/models/gemma4.h)");
  if (m->config().bidirectional)
    return Status(ErrorCode::kConfig, model_dir + ": an EmbeddingGemma encoder "
                                                  "(use_bidirectional_attention), not a chat model");
  if (Status s = m->prepareWeights(); !s.ok()) return s;
  return m;
}

Status Gemma3Model::prepareWeights() {
  const GemmaWeights& w = checkpoint_->weights();
  Status status;
  auto matrix = [&](const Weight& src, WeightRef* dst) {
    if (status.ok()) status = prepare(src, dst, &Backend::prepareMatrix);
  };
  auto norm = [&](const Weight& src, WeightRef* dst) {  // §2.2: (1 + w)
    if (status.ok()) status = prepare(src, dst, &Backend::prepareNorm1p);
  };
  matrix(w.embed, &embed_);
  norm(w.final_norm, &final_norm_);
  layers_.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const GemmaLayerWeights& s = w.layers[l];
    LayerRefs& d = layers_[l];
    norm(s.input_layernorm, &d.input_norm);
    matrix(s.q_proj, &d.q);
    matrix(s.k_proj, &d.k);
    matrix(s.v_proj, &d.v);
    matrix(s.o_proj, &d.o);
    norm(s.q_norm, &d.q_norm);
    norm(s.k_norm, &d.k_norm);
    norm(s.post_attention_layernorm, &d.post_attn_norm);
    norm(s.pre_feedforward_layernorm, &d.pre_ff_norm);
    norm(s.post_feedforward_layernorm, &d.post_ff_norm);
    matrix(s.gate_proj, &d.gate);
    matrix(s.up_proj, &d.up);
    matrix(s.down_proj, &d.down);
  }
  return status;
}

void Gemma3Model::reserve(int n_tokens) {
  if (n_tokens <= cap_tokens_) return;
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const size_t T = static_cast<size_t>(n_tokens), f = sizeof(float);
  const size_t H = size_t(c.hidden), I = size_t(c.intermediate), D = size_t(c.head_dim);
  const size_t qd = size_t(c.n_head) * D, kvd = size_t(c.n_head_kv) * D;
  h_ = be.alloc(T * H * f);
  x_ = be.alloc(T * H * f);
  q_ = be.alloc(T * qd * f);
  k_ = be.alloc(T * kvd * f);
  v_ = be.alloc(T * kvd * f);
  att_ = be.alloc(T * qd * f);
  gate_ = be.alloc(T * I * f);
  up_ = be.alloc(T * I * f);
  rope_sliding_ = be.alloc(T * D * f);
  rope_full_ = be.alloc(T * D * f);
  cap_tokens_ = n_tokens;
}

Status Gemma3Model::forward(std::vector<SeqBatchItem>& batch) {
  if (Status s = validateAndReserve(batch); !s.ok()) return s;
  if (batch.empty()) return Status();
  const GemmaConfig& c = config();
  Backend& be = *backend_;

  const int T = gatherStep(batch);  // token t: id ids_[t] at absolute position pos_[t]
  reserve(T);

  const int64_t H = c.hidden, I = c.intermediate;
  const int D = c.head_dim, Hq = c.n_head, Hkv = c.n_head_kv;
  const int64_t q_dim = int64_t{Hq} * D, kv_dim = int64_t{Hkv} * D;
  const float eps = c.rms_norm_eps;
  float *h = h_->f32(), *x = x_->f32(), *q = q_->f32(), *k = k_->f32(), *v = v_->f32(),
        *att = att_->f32(), *gate = gate_->f32(), *up = up_->f32();

  // gemma-spec §2.1: h = bf16(E[id] * bf16(sqrt(H))); config().embed_scale is already bf16.
  be.embed(ids_.data(), T, embed_, c.embed_scale, h);
  // §2.3: per layer type, bf16 cos/sin tables for the step's positions.
  be.ropeTable(pos_.data(), T, D, c.rope_sliding, rope_sliding_->f32());
  be.ropeTable(pos_.data(), T, D, c.rope_full, rope_full_->f32());
  captureHidden(batch, 0, *h_);

  for (int l = 0; l < c.n_layer; ++l) {  // §2.5, one decoder layer
    const LayerRefs& w = layers_[static_cast<size_t>(l)];
    const bool sliding = c.isSliding(l);

    // ---- attention block (§2.3)
    be.rmsnorm1p(h, T, H, w.input_norm, eps, x);
    const MatmulTarget qkv[] = {{&w.q, q}, {&w.k, k}, {&w.v, v}};
    be.matmul(x, T, qkv, /*round_bf16=*/true);
    be.rmsnorm1p(q, int64_t{T} * Hq, D, w.q_norm, eps, q);  // per head, over D
    be.rmsnorm1p(k, int64_t{T} * Hkv, D, w.k_norm, eps, k);
    const float* table = sliding ? rope_sliding_->f32() : rope_full_->f32();
    be.rope(q, T, Hq, D, table);
    be.rope(k, T, Hkv, D, table);  // v gets neither norm nor RoPE in Gemma 3

    seqs_.clear();
    int64_t row = 0;
    for (const SeqBatchItem& it : batch) {
      const KvLayerView& kv = it.kv->layer(l);
      const int pos0 = it.kv->length();
      // §7 item 4: K is cached after RoPE, at absolute positions.
      be.writeKv(k + row * kv_dim, v + row * kv_dim, it.n_tokens, pos0, static_cast<int>(kv_dim),
                 kv);
      AttentionSeq s;
      s.q = q + row * q_dim;
      s.out = att + row * q_dim;
      s.n = it.n_tokens;
      s.pos0 = pos0;
      s.kv = kv;
      s.n_slots = std::min(kv.capacity, pos0 + it.n_tokens);
      seqs_.push_back(s);
      row += it.n_tokens;
    }
    AttentionShape shape;
    shape.n_head = Hq;
    shape.n_head_kv = Hkv;
    shape.head_dim = D;
    shape.scale = c.attn_scale;  // query_pre_attn_scalar^-0.5, not head_dim^-0.5 (§2.3, 27b)
    shape.window = sliding ? c.sliding_window : 0;
    be.attention(shape, seqs_);
    be.matmul(att, T, w.o, x, true);
    be.rmsnorm1pAdd(x, T, H, w.post_attn_norm, eps, h);  // h = bf16(h + norm(attn))

    // ---- MLP block (§2.4)
    be.rmsnorm1p(h, T, H, w.pre_ff_norm, eps, x);
    const MatmulTarget gate_up[] = {{&w.gate, gate}, {&w.up, up}};
    be.matmul(x, T, gate_up, true);
    be.geglu(gate, up, int64_t{T} * I, gate);
    be.matmul(gate, T, w.down, x, true);
    be.rmsnorm1pAdd(x, T, H, w.post_ff_norm, eps, h);  // h = bf16(h + norm(mlp))
    captureHidden(batch, l + 1, *h_);
  }

  computeLogits(batch, *h_, embed_, final_norm_, /*softcap=*/0);  // no softcap in Gemma 3 (§2.6)
  advance(batch);
  return Status();
}

}  // namespace engine
