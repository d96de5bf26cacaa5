#include "engine/models/model.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "engine/cpu_backend.h"
#include "engine/gguf_gemma.h"
#include "engine/models/gemma3.h"
#include "engine/models/gemma4.h"

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

Model::~Model() = default;

StatusOr<std::unique_ptr<Model>> Model::load(const std::string& model_dir, int threads,
                                             std::optional<quant::QType> quantize) {
  auto config = gguf::isGgufPath(model_dir) ? gguf::loadGgufGemmaConfig(model_dir)
                                             : loadGemmaConfig(model_dir);
  if (!config.ok()) return config.status();
  if (config->isGemma4()) {
    auto m = Gemma4Model::load(model_dir, threads, quantize);
    if (!m.ok()) return m.status();
    return std::unique_ptr<Model>(std::move(m).value());
  }
  auto m = Gemma3Model::load(model_dir, threads, quantize);
  if (!m.ok()) return m.status();
  return std::unique_ptr<Model>(std::move(m).value());
}

Status Model::open(const std::string& model_dir, int threads,
                   std::optional<quant::QType> quantize) {
  auto ckpt = Checkpoint::open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  checkpoint_ = std::move(ckpt).value();
  CpuBackendOptions options;
  options.threads = threads;
  options.quantize = quantize;
  backend_ = makeCpuBackend(options);
  return Status();
}

Status Model::prepare(const Weight& w, WeightRef* dst,
                      StatusOr<WeightRef> (Backend::*how)(const Weight&)) {
  auto r = (backend_.get()->*how)(w);
  if (!r.ok()) return r.status();
  *dst = *r;
  return Status();
}

uint64_t Model::decodeBytesPerToken() const {
  const GemmaConfig& c = config();
  const GemmaWeights& w = checkpoint_->weights();
  uint64_t bytes = checkpoint_->weightBytes();
  if (w.embed_per_layer.data != nullptr && w.embed_per_layer.shape.size() == 2) {
    const uint64_t rows = uint64_t(w.embed_per_layer.shape[0]);
    bytes -= w.embed_per_layer.bytes - w.embed_per_layer.bytes / rows;  // one row per token
  }
  if (c.moe.n_expert > 0) {
    for (const GemmaLayerWeights& l : w.layers) {
      const uint64_t experts = l.experts_gate_up.bytes + l.experts_down.bytes;
      bytes -= experts - experts / uint64_t(c.moe.n_expert) * uint64_t(c.moe.top_k);
    }
  }
  return bytes;
}

std::unique_ptr<KvCache> Model::newKvCache(int max_positions, int max_chunk) const {
  const int limit = static_cast<int>(std::min<int64_t>(config().max_positions, INT32_MAX / 2));
  max_positions = std::clamp(max_positions, 1, limit);
  max_chunk = std::clamp(max_chunk, 1, max_positions);
  return std::make_unique<KvCache>(config(), *backend_, max_positions, max_chunk);
}

std::unique_ptr<KvPool> Model::newKvPool(int64_t tokens, int max_seqs, int max_chunk) const {
  return std::make_unique<KvPool>(config(), *backend_, std::max<int64_t>(1, tokens),
                                  std::max(1, max_seqs), std::max(1, max_chunk));
}

std::unique_ptr<KvCache> Model::newKvCache(KvPool& pool, int max_positions) const {
  const int limit = static_cast<int>(std::min<int64_t>(config().max_positions, INT32_MAX / 2));
  return std::make_unique<KvCache>(config(), pool, std::clamp(max_positions, 1, limit));
}

Status Model::validateAndReserve(const std::vector<SeqBatchItem>& batch) const {
  if (Status s = validate(batch); !s.ok()) return s;
  for (size_t b = 0; b < batch.size(); ++b) {
    if (!batch[b].kv->reserve(batch[b].n_tokens)) {
      return Status(ErrorCode::kUnavailable,
                    "batch item " + std::to_string(b) + ": the KV block pool has too few free " +
                        "blocks for " + std::to_string(batch[b].n_tokens) + " more tokens");
    }
  }
  return Status();
}

Status Model::validate(const std::vector<SeqBatchItem>& batch) const {
  const GemmaConfig& c = config();
  // gemma-spec §2.6 / §8.9: tokenizer ids may exceed the embedding rows; never index past. With
  // PLE the per-layer table must hold the id too (§3.8).
  const int64_t vocab = c.ple_dim > 0 ? std::min(c.vocab, c.ple_vocab) : c.vocab;
  std::set<const KvCache*> seen;
  int64_t total = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    const SeqBatchItem& it = batch[b];
    const std::string at = "batch item " + std::to_string(b) + ": ";
    if (!it.kv) return invalid(at + "no KV cache");
    if (!it.tokens || it.n_tokens < 1) return invalid(at + "no tokens");
    if (!it.logits) return invalid(at + "no logits buffer");
    bool same_model = it.kv->numLayers() == c.n_layer;
    for (int l = 0; same_model && l < c.n_layer; ++l)
      same_model = it.kv->kvDim(l) == (c.storesKv(l) ? c.layer(l).kvDim() : 0);
    if (!same_model) return invalid(at + "KV cache was made for another model");
    if (!seen.insert(it.kv).second) return invalid(at + "KV cache appears twice in the batch");
    if (it.n_tokens > it.kv->maxChunk())
      return invalid(at + std::to_string(it.n_tokens) + " tokens exceed the cache's chunk limit " +
                     std::to_string(it.kv->maxChunk()));
    if (it.n_tokens > it.kv->remaining())
      return invalid(at + "sequence would reach " + std::to_string(it.kv->length() + it.n_tokens) +
                     " positions, over its limit of " + std::to_string(it.kv->maxPositions()));
    for (int i = 0; i < it.n_tokens; ++i) {
      if (it.tokens[i] < 0 || it.tokens[i] >= vocab)
        return Status(ErrorCode::kInvalidRequest,
                      at + "token id " + std::to_string(it.tokens[i]) + " (index " +
                          std::to_string(i) + ") is outside the vocabulary [0, " +
                          std::to_string(vocab) + ")",
                      "tokens");
    }
    total += it.n_tokens;
  }
  if (total > INT32_MAX / 4) return invalid("batch too large");
  return Status();
}

int Model::gatherStep(const std::vector<SeqBatchItem>& batch) {
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
  return static_cast<int>(ids_.size());
}

void Model::captureHidden(const std::vector<SeqBatchItem>& batch, int index, const Buffer& h) {
  const size_t H = static_cast<size_t>(config().hidden);
  size_t row = 0;
  for (const SeqBatchItem& it : batch) {
    const size_t n = static_cast<size_t>(it.n_tokens);
    if (it.hidden_states != nullptr)
      backend_->download(it.hidden_states + size_t(index) * n * H, h, row * H * sizeof(float),
                         n * H * sizeof(float));
    row += n;
  }
}

void Model::computeLogits(std::vector<SeqBatchItem>& batch, const Buffer& h, const WeightRef& embed,
                          const WeightRef& final_norm, float softcap) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const int R = static_cast<int>(logit_rows_.size());
  const int64_t H = c.hidden, V = c.vocab;
  if (R > cap_logit_rows_) {
    logit_in_ = be.alloc(size_t(R) * size_t(H) * sizeof(float));
    logit_out_ = be.alloc(std::min<size_t>(size_t(R), kLogitChunk) * size_t(V) * sizeof(float));
    cap_logit_rows_ = R;
  }
  float* xr = logit_in_->f32();
  be.gatherRows(static_cast<const float*>(const_cast<Buffer&>(h).data()), logit_rows_.data(), R, H,
                xr);
  be.rmsnorm1p(xr, R, H, final_norm, c.rms_norm_eps, xr);

  // Where each logit row goes: the items' buffers, in the order logit_rows_ was built.
  std::vector<float*> dst;
  dst.reserve(static_cast<size_t>(R));
  for (SeqBatchItem& it : batch) {
    const int rows = it.all_logits ? it.n_tokens : 1;
    for (int i = 0; i < rows; ++i) dst.push_back(it.logits + int64_t{i} * V);
  }
  for (int r0 = 0; r0 < R; r0 += kLogitChunk) {
    const int n = std::min(kLogitChunk, R - r0);
    // §2.6: tied lm_head, logits = h · Eᵀ. Gemma 3 has no final softcap and keeps the fp32 GEMM
    // result; Gemma 4 rounds to bf16 and softcaps each op in bf16 (§3.10, §6.1).
    be.matmul(xr + int64_t{r0} * H, n, embed, logit_out_->f32(), /*round_bf16=*/softcap > 0);
    if (softcap > 0) be.softcap(logit_out_->f32(), int64_t{n} * V, softcap);
    for (int i = 0; i < n; ++i)
      be.download(dst[static_cast<size_t>(r0 + i)], *logit_out_,
                  size_t(i) * size_t(V) * sizeof(float), size_t(V) * sizeof(float));
  }
}

void Model::advance(std::vector<SeqBatchItem>& batch) {
  for (SeqBatchItem& it : batch) it.kv->advance(it.tokens, it.n_tokens);
}

}  // namespace engine
