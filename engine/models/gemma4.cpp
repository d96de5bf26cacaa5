#include "engine/models/gemma4.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/bf16.h"

namespace engine {

using api::ErrorCode;
using api::Status;
using api::StatusOr;

Gemma4Model::~Gemma4Model() = default;

StatusOr<std::unique_ptr<Gemma4Model>> Gemma4Model::load(const std::string& model_dir, int threads,
                                                         std::optional<quant::QType> quantize) {
  std::unique_ptr<Gemma4Model> m(new Gemma4Model());
  if (Status s = m->open(model_dir, threads, quantize); !s.ok()) return s;
  if (!m->config().isGemma4())
    return Status(ErrorCode::kConfig,
                  model_dir + ": a Gemma 3 checkpoint (engine/models/gemma3.h)");
  if (Status s = m->prepareWeights(); !s.ok()) return s;
  return m;
}

Status Gemma4Model::prepareWeights() {
  const GemmaConfig& c = config();
  const GemmaWeights& w = checkpoint_->weights();
  Status status;
  auto matrix = [&](const Weight& src, WeightRef* dst) {
    if (status.ok() && src.data) status = prepare(src, dst, &Backend::prepareMatrix);
  };
  auto vec = [&](const Weight& src, WeightRef* dst) {  // §3.2: norms scale by w, no "+1"
    if (status.ok() && src.data) status = prepare(src, dst, &Backend::prepareVector);
  };
  auto experts = [&](const Weight& src, WeightRef* dst) {
    if (status.ok() && src.data) status = prepare(src, dst, &Backend::prepareExperts);
  };
  matrix(w.embed, &embed_);
  vec(w.final_norm, &final_norm_);
  if (c.ple_dim > 0) {
    if (status.ok() && w.embed_per_layer.data)  // stays in the mapping; embed() reads used rows
      status = prepare(w.embed_per_layer, &ple_table_, &Backend::prepareRowTable);
    matrix(w.per_layer_model_projection, &ple_model_proj_);
    vec(w.per_layer_projection_norm, &ple_proj_norm_);
  }
  layers_.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const GemmaLayerWeights& s = w.layers[l];
    LayerRefs& d = layers_[l];
    vec(s.input_layernorm, &d.input_norm);
    matrix(s.q_proj, &d.q);
    matrix(s.k_proj, &d.k);  // absent on KV-shared layers
    matrix(s.v_proj, &d.v);  // absent on K=V and KV-shared layers
    matrix(s.o_proj, &d.o);
    vec(s.q_norm, &d.q_norm);
    vec(s.k_norm, &d.k_norm);
    vec(s.post_attention_layernorm, &d.post_attn_norm);
    vec(s.pre_feedforward_layernorm, &d.pre_ff_norm);
    vec(s.post_feedforward_layernorm, &d.post_ff_norm);
    matrix(s.gate_proj, &d.gate);
    matrix(s.up_proj, &d.up);
    matrix(s.down_proj, &d.down);
    vec(s.layer_scalar, &d.layer_scalar);
    matrix(s.router_proj, &d.router);
    vec(s.router_scale, &d.router_scale);
    vec(s.router_per_expert_scale, &d.expert_scale);
    experts(s.experts_gate_up, &d.experts_gate_up);
    experts(s.experts_down, &d.experts_down);
    vec(s.pre_feedforward_layernorm_2, &d.pre_ff_norm_2);
    vec(s.post_feedforward_layernorm_1, &d.post_ff_norm_1);
    vec(s.post_feedforward_layernorm_2, &d.post_ff_norm_2);
    matrix(s.per_layer_input_gate, &d.ple_gate);
    matrix(s.per_layer_projection, &d.ple_proj);
    vec(s.post_per_layer_input_norm, &d.post_ple_norm);
  }
  return status;
}

void Gemma4Model::reserve(int n_tokens) {
  if (n_tokens <= cap_tokens_) return;
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  size_t qd = 0, kvd = 0, I = 0;  // the widest layer sets each buffer's size
  for (const LayerGeometry& g : c.layers) {
    qd = std::max(qd, size_t(c.n_head) * size_t(g.head_dim));
    kvd = std::max(kvd, size_t(g.kvDim()));
    I = std::max(I, size_t(g.intermediate));
  }
  const size_t T = size_t(n_tokens), f = sizeof(float), H = size_t(c.hidden);
  h_ = be.alloc(T * H * f);
  x_ = be.alloc(T * H * f);
  q_ = be.alloc(T * qd * f);
  k_ = be.alloc(T * kvd * f);
  v_ = be.alloc(T * kvd * f);
  att_ = be.alloc(T * qd * f);
  gate_ = be.alloc(T * I * f);
  up_ = be.alloc(T * I * f);
  rope_sliding_ = be.alloc(T * size_t(c.head_dim) * f);
  rope_full_ = be.alloc(T * size_t(c.global_head_dim) * f);
  if (c.moe.n_expert > 0) {
    xe_ = be.alloc(T * H * f);
    m2_ = be.alloc(T * H * f);
    router_logits_ = be.alloc(T * size_t(c.moe.n_expert) * f);
    expert_idx_ = be.alloc(T * size_t(c.moe.top_k) * sizeof(int32_t));
    expert_w_ = be.alloc(T * size_t(c.moe.top_k) * f);
  }
  if (c.ple_dim > 0) {
    const size_t LP = size_t(c.n_layer) * size_t(c.ple_dim);
    ple_ = be.alloc(T * LP * f);
    ple_tmp_ = be.alloc(T * LP * f);
    ple_gate_ = be.alloc(T * size_t(c.ple_dim) * f);
  }
  cap_tokens_ = n_tokens;
}

Status Gemma4Model::forward(std::vector<SeqBatchItem>& batch) {
  if (Status s = validateAndReserve(batch); !s.ok()) return s;
  if (batch.empty()) return Status();
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  int T = gatherStep(batch);  // token t: id ids_[t] at absolute position pos_[t]
  reserve(T);
  tail_only_ = false;
  const int64_t H = c.hidden;
  const float eps = c.rms_norm_eps;
  float *h = h_->f32(), *x = x_->f32(), *gate = gate_->f32(), *up = up_->f32();

  be.embed(ids_.data(), T, embed_, c.embed_scale, h);  // §2.1: bf16(E[id] * bf16(sqrt(H)))
  if (c.ple_dim > 0) perLayerInputs(T);                // §3.8, from the scaled embedding
  be.ropeTable(pos_.data(), T, c.head_dim, c.rope_sliding, rope_sliding_->f32());  // §3.4
  be.ropeTable(pos_.data(), T, c.global_head_dim, c.rope_full, rope_full_->f32());
  captureHidden(batch, 0, *h_);

  for (int l = 0; l < c.n_layer; ++l) {  // §3.10, one decoder layer
    const LayerRefs& w = layers_[static_cast<size_t>(l)];
    const int64_t I = c.layer(l).intermediate;
    if (l == c.firstSharedLayer()) {
      T = keepLogitRowsOnly(batch, T);  // §3.5: the shared layers need only the logit rows
      h = h_->f32();
      x = x_->f32();
    }

    be.rmsnorm1p(h, T, H, w.input_norm, eps, x);         // ---- attention (§3.3-3.5)
    attention(batch, l, T);                              // x -> x
    be.rmsnorm1pAdd(x, T, H, w.post_attn_norm, eps, h);  // h = bf16(h + norm(attn))

    be.rmsnorm1p(h, T, H, w.pre_ff_norm, eps, x);  // ---- dense MLP (§3.6)
    const MatmulTarget gate_up[] = {{&w.gate, gate}, {&w.up, up}};
    be.matmul(x, T, gate_up, true);
    be.geglu(gate, up, int64_t{T} * I, gate);
    be.matmul(gate, T, w.down, x, true);
    if (c.moe.n_expert > 0) {  // ---- routed experts beside it, on the same residual (§3.7)
      be.rmsnorm1p(x, T, H, w.post_ff_norm_1, eps, x);
      experts(l, T);  // h -> m2_
      be.add(x, m2_->f32(), int64_t{T} * H, x);
    }
    be.rmsnorm1pAdd(x, T, H, w.post_ff_norm, eps, h);  // h = bf16(h + norm(mlp))
    if (c.ple_dim > 0) perLayerInject(l, T);           // §3.8
    be.mulVector(h, T, H, w.layer_scalar);             // §3.9
    captureHidden(batch, l + 1, *h_);
  }

  computeLogits(batch, *h_, embed_, final_norm_, c.final_softcap);  // §3.10: softcap 30
  advance(batch);
  return Status();
}

// §3.5, vLLM's "YOCO" prefill: KV-shared layers write no K/V, so from the first of them on only
// the rows whose logits are wanted go on (each item's last token, or all of them with
// all_logits); the others' outputs would never be read. The output does not change: every row's
// arithmetic is independent of the other rows. Compacts h_, the PLE inputs and the RoPE tables
// to those rows and returns their count (T when nothing is dropped, or hidden states are asked
// for).
int Gemma4Model::keepLogitRowsOnly(const std::vector<SeqBatchItem>& batch, int T) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const int R = static_cast<int>(logit_rows_.size());
  bool hidden = false;
  for (const SeqBatchItem& it : batch) hidden = hidden || it.hidden_states != nullptr;
  if (R == T || hidden) return T;
  be.gatherRows(h_->f32(), logit_rows_.data(), R, c.hidden, x_->f32());
  std::swap(h_, x_);
  if (c.ple_dim > 0) {
    const int64_t LP = int64_t{c.n_layer} * c.ple_dim;
    be.gatherRows(ple_->f32(), logit_rows_.data(), R, LP, ple_tmp_->f32());
    std::swap(ple_, ple_tmp_);
  }
  std::vector<int32_t> pos(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) pos[size_t(r)] = pos_[size_t(logit_rows_[size_t(r)])];
  be.ropeTable(pos.data(), R, c.head_dim, c.rope_sliding, rope_sliding_->f32());
  be.ropeTable(pos.data(), R, c.global_head_dim, c.rope_full, rope_full_->f32());
  for (int r = 0; r < R; ++r) logit_rows_[size_t(r)] = r;
  tail_only_ = true;
  return R;
}

// x [T, H] (the normed residual) -> x = o_proj(attention). A KV-shared layer computes only q and
// reads its source layer's cache, which that layer filled earlier in this same step (§3.5).
void Gemma4Model::attention(std::vector<SeqBatchItem>& batch, int l, int T) {
  const GemmaConfig& c = config();
  const LayerGeometry& g = c.layer(l);
  const LayerRefs& w = layers_[static_cast<size_t>(l)];
  Backend& be = *backend_;
  const int D = g.head_dim, Hq = c.n_head, Hkv = g.n_head_kv;
  const int64_t q_dim = int64_t{Hq} * D, kv_dim = g.kvDim();
  const float eps = c.rms_norm_eps;
  float *x = x_->f32(), *q = q_->f32(), *k = k_->f32(), *v = v_->f32(), *att = att_->f32();
  const float* table = g.sliding ? rope_sliding_->f32() : rope_full_->f32();
  const bool stores = c.storesKv(l);

  if (!stores) {
    be.matmul(x, T, w.q, q, true);
  } else if (g.k_eq_v) {  // no v_proj: V starts from the raw k_proj output
    const MatmulTarget qk[] = {{&w.q, q}, {&w.k, k}};
    be.matmul(x, T, qk, true);
    be.rmsnormNoScale(k, int64_t{T} * Hkv, D, eps, v);  // v_norm, no RoPE on v
  } else {
    const MatmulTarget qkv[] = {{&w.q, q}, {&w.k, k}, {&w.v, v}};
    be.matmul(x, T, qkv, true);
    be.rmsnormNoScale(v, int64_t{T} * Hkv, D, eps, v);
  }
  be.rmsnorm1p(q, int64_t{T} * Hq, D, w.q_norm, eps, q);
  be.rope(q, T, Hq, D, table);
  if (stores) {
    be.rmsnorm1p(k, int64_t{T} * Hkv, D, w.k_norm, eps, k);
    be.rope(k, T, Hkv, D, table);
  }

  seqs_.clear();
  int64_t row = 0;
  for (const SeqBatchItem& it : batch) {
    const int pos0 = it.kv->length(), end = pos0 + it.n_tokens;
    if (stores)
      be.writeKv(k + row * kv_dim, v + row * kv_dim, it.n_tokens, pos0, static_cast<int>(kv_dim),
                 it.kv->layer(l));
    // After keepLogitRowsOnly an item's queries are its last token (or all of them).
    const int n = tail_only_ && !it.all_logits ? 1 : it.n_tokens;
    const KvLayerView& kv = it.kv->layer(g.kv_source);
    AttentionSeq s;
    s.q = q + row * q_dim;
    s.out = att + row * q_dim;
    s.n = n;
    s.pos0 = end - n;
    s.kv = kv;
    s.n_slots = std::min(kv.capacity, end);
    seqs_.push_back(s);
    row += n;
  }
  AttentionShape shape;
  shape.n_head = Hq;
  shape.n_head_kv = Hkv;
  shape.head_dim = D;
  shape.scale = c.attn_scale;  // 1.0: q_norm / k_norm replace 1/sqrt(d) (§3.3)
  shape.window = g.window;
  be.attention(shape, seqs_);
  be.matmul(att, T, w.o, x, true);
}

// The routed expert branch on the residual h (§3.7): m2_ = norm_2(Σ_k w_k · Expert_k(norm(h))).
void Gemma4Model::experts(int l, int T) {
  const GemmaConfig& c = config();
  const LayerRefs& w = layers_[static_cast<size_t>(l)];
  Backend& be = *backend_;
  const int64_t H = c.hidden;
  const float eps = c.rms_norm_eps;
  float *h = h_->f32(), *xe = xe_->f32(), *m2 = m2_->f32(), *logits = router_logits_->f32();
  // Router: z = bf16(bf16(norm(h) * scale) * H^-0.5), logits = bf16(z · projᵀ).
  be.rmsnormNoScale(h, T, H, eps, xe);
  be.mulVector(xe, T, H, w.router_scale);
  be.scale(xe, int64_t{T} * H, static_cast<float>(std::pow(double(H), -0.5)));
  be.matmul(xe, T, w.router, logits, true);
  be.moeRoute(logits, T, c.moe.n_expert, c.moe.top_k, w.expert_scale, expert_idx_->i32(),
              expert_w_->f32());
  be.rmsnorm1p(h, T, H, w.pre_ff_norm_2, eps, xe);
  be.moeExperts(xe, T, expert_idx_->i32(), expert_w_->f32(), c.moe.top_k, c.moe.n_expert,
                w.experts_gate_up, w.experts_down, m2);
  be.rmsnorm1p(m2, T, H, w.post_ff_norm_2, eps, m2);
}

// ple_ [T, L, P] = bf16(bf16(norm(bf16(bf16(e · Wᵀ) * H^-0.5)) + bf16(E_ple[id] * bf16(√P)))
// * 2^-0.5), with e = the scaled embedding in h_ (§3.8). Only the step's rows of the PLE table
// are read.
void Gemma4Model::perLayerInputs(int T) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const int64_t P = c.ple_dim, n = int64_t{T} * c.n_layer * P;
  float *raw = ple_->f32(), *proj = ple_tmp_->f32();
  be.embed(ids_.data(), T, ple_table_, roundBf16(static_cast<float>(std::sqrt(double(P)))), raw);
  be.matmul(h_->f32(), T, ple_model_proj_, proj, true);
  be.scale(proj, n, static_cast<float>(std::pow(double(c.hidden), -0.5)));
  be.rmsnorm1p(proj, int64_t{T} * c.n_layer, P, ple_proj_norm_, c.rms_norm_eps, proj);
  be.add(proj, raw, n, raw);
  be.scale(raw, n, static_cast<float>(std::sqrt(0.5)));
}

// h = bf16(h + norm(bf16(bf16(gelu(h · gateᵀ)) * ple[:, l, :]) · projᵀ)) (§3.8).
void Gemma4Model::perLayerInject(int l, int T) {
  const GemmaConfig& c = config();
  const LayerRefs& w = layers_[static_cast<size_t>(l)];
  Backend& be = *backend_;
  const int64_t P = c.ple_dim;
  float *h = h_->f32(), *x = x_->f32(), *g = ple_gate_->f32();
  be.matmul(h, T, w.ple_gate, g, true);
  be.gegluStrided(g, ple_->f32() + int64_t{l} * P, T, P, int64_t{c.n_layer} * P, g);
  be.matmul(g, T, w.ple_proj, x, true);
  be.rmsnorm1pAdd(x, T, c.hidden, w.post_ple_norm, c.rms_norm_eps, h);
}

}  // namespace engine
