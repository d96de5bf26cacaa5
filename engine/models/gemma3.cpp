#include "engine/models/gemma3.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "engine/cpu_backend.h"

namespace engine {
namespace {

using api::ErrorCode;
using api::Status;
using api::StatusOr;

// Rows of logits computed per lm_head GEMM: bounds the scratch at kLogitChunk * vocab floats
// when a caller asks for the logits of a whole prompt.
constexpr int kLogitChunk = 32;

Status invalid(std::string message) {
  return Status(ErrorCode::kInvalidRequest, std::move(message));
}

}  // namespace

Gemma3Model::~Gemma3Model() = default;

StatusOr<std::unique_ptr<Gemma3Model>> Gemma3Model::load(const std::string& model_dir,
                                                         int threads) {
  auto ckpt = Checkpoint::open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  std::unique_ptr<Gemma3Model> m(new Gemma3Model());
  m->checkpoint_ = std::move(ckpt).value();
  CpuBackendOptions options;
  options.threads = threads;
  m->backend_ = makeCpuBackend(options);
  if (Status s = m->prepare(); !s.ok()) return s;
  return m;
}

Status Gemma3Model::prepare() {
  const GemmaWeights& w = checkpoint_->weights();
  Status status;
  auto matrix = [&](const Weight& src, WeightRef* dst) {
    if (!status.ok()) return;
    auto r = backend_->prepareMatrix(src);
    if (r.ok())
      *dst = *r;
    else
      status = r.status();
  };
  auto norm = [&](const Weight& src, WeightRef* dst) {
    if (!status.ok()) return;
    auto r = backend_->prepareNorm1p(src);
    if (r.ok())
      *dst = *r;
    else
      status = r.status();
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

std::unique_ptr<KvCache> Gemma3Model::newKvCache(int max_positions, int max_chunk) const {
  const int limit = static_cast<int>(std::min<int64_t>(config().max_positions, INT32_MAX / 2));
  max_positions = std::clamp(max_positions, 1, limit);
  max_chunk = std::clamp(max_chunk, 1, max_positions);
  return std::make_unique<KvCache>(config(), *backend_, max_positions, max_chunk);
}

Status Gemma3Model::validate(const std::vector<SeqBatchItem>& batch) const {
  const GemmaConfig& c = config();
  std::set<const KvCache*> seen;
  int64_t total = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    const SeqBatchItem& it = batch[b];
    const std::string at = "batch item " + std::to_string(b) + ": ";
    if (!it.kv) return invalid(at + "no KV cache");
    if (!it.tokens || it.n_tokens < 1) return invalid(at + "no tokens");
    if (!it.logits) return invalid(at + "no logits buffer");
    if (it.kv->numLayers() != c.n_layer || it.kv->kvDim() != c.n_head_kv * c.head_dim)
      return invalid(at + "KV cache was made for another model");
    if (!seen.insert(it.kv).second) return invalid(at + "KV cache appears twice in the batch");
    if (it.n_tokens > it.kv->maxChunk())
      return invalid(at + std::to_string(it.n_tokens) + " tokens exceed the cache's chunk limit " +
                     std::to_string(it.kv->maxChunk()));
    if (it.n_tokens > it.kv->remaining())
      return invalid(at + "sequence would reach " + std::to_string(it.kv->length() + it.n_tokens) +
                     " positions, over its limit of " + std::to_string(it.kv->maxPositions()));
    for (int i = 0; i < it.n_tokens; ++i) {
      // gemma-spec §2.6 / §8.9: tokenizer ids may exceed the embedding rows; never index past.
      if (it.tokens[i] < 0 || it.tokens[i] >= c.vocab)
        return Status(ErrorCode::kInvalidRequest,
                      at + "token id " + std::to_string(it.tokens[i]) + " (index " +
                          std::to_string(i) + ") is outside the vocabulary [0, " +
                          std::to_string(c.vocab) + ")",
                      "tokens");
    }
    total += it.n_tokens;
  }
  if (total > INT32_MAX / 4) return invalid("batch too large");
  return Status();
}

void Gemma3Model::reserve(int n_tokens, int n_logit_rows) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  if (n_tokens > cap_tokens_) {
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
  if (n_logit_rows > cap_logit_rows_) {
    const size_t R = static_cast<size_t>(n_logit_rows);
    logit_in_ = be.alloc(R * size_t(c.hidden) * sizeof(float));
    logit_out_ = be.alloc(std::min<size_t>(R, kLogitChunk) * size_t(c.vocab) * sizeof(float));
    cap_logit_rows_ = n_logit_rows;
  }
}

Status Gemma3Model::forward(std::vector<SeqBatchItem>& batch) {
  if (Status s = validate(batch); !s.ok()) return s;
  if (batch.empty()) return Status();
  const GemmaConfig& c = config();
  Backend& be = *backend_;

  // Concatenate the chunks: token t of the step has id ids_[t] at absolute position pos_[t].
  ids_.clear();
  pos_.clear();
  logit_rows_.clear();
  for (const SeqBatchItem& it : batch) {
    const int base = static_cast<int>(ids_.size());
    for (int i = 0; i < it.n_tokens; ++i) {
      ids_.push_back(it.tokens[i]);
      pos_.push_back(it.kv->length() + i);
      if (it.all_logits || i == it.n_tokens - 1) logit_rows_.push_back(base + i);
    }
  }
  const int T = static_cast<int>(ids_.size());
  reserve(T, static_cast<int>(logit_rows_.size()));

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
  }

  computeLogits(batch);
  for (SeqBatchItem& it : batch) it.kv->advance(it.n_tokens);
  return Status();
}

void Gemma3Model::computeLogits(std::vector<SeqBatchItem>& batch) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const int R = static_cast<int>(logit_rows_.size());
  const int64_t H = c.hidden, V = c.vocab;
  float* xr = logit_in_->f32();
  be.gatherRows(h_->f32(), logit_rows_.data(), R, H, xr);
  be.rmsnorm1p(xr, R, H, final_norm_, c.rms_norm_eps, xr);

  // Where each logit row goes: the items' buffers, in the order logit_rows_ was built.
  std::vector<float*> dst;
  dst.reserve(static_cast<size_t>(R));
  for (SeqBatchItem& it : batch) {
    const int rows = it.all_logits ? it.n_tokens : 1;
    for (int i = 0; i < rows; ++i) dst.push_back(it.logits + int64_t{i} * V);
  }
  for (int r0 = 0; r0 < R; r0 += kLogitChunk) {
    const int n = std::min(kLogitChunk, R - r0);
    // §2.6: tied lm_head, logits = h · Eᵀ; no final softcapping in Gemma 3. Kept in fp32.
    be.matmul(xr + int64_t{r0} * H, n, embed_, logit_out_->f32(), /*round_bf16=*/false);
    for (int i = 0; i < n; ++i)
      be.download(dst[static_cast<size_t>(r0 + i)], *logit_out_,
                  size_t(i) * size_t(V) * sizeof(float), size_t(V) * sizeof(float));
  }
}

}  // namespace engine
