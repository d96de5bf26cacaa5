#include "engine/models/embedding_gemma.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "engine/bf16.h"
#include "engine/cpu_backend.h"

namespace engine {
namespace {

namespace fs = std::filesystem;
using api::ErrorCode;
using api::Status;
using api::StatusOr;
using nlohmann::json;

constexpr const char* kIdentity = "torch.nn.modules.linear.Identity";

Status configError(std::string message) { return Status(ErrorCode::kConfig, std::move(message)); }
Status invalid(std::string message) {
  return Status(ErrorCode::kInvalidRequest, std::move(message));
}

// A JSON document from `path`, or kIo / kConfig naming it.
StatusOr<json> readJson(const std::string& path) {
  auto text = readTextFile(path);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return configError(path + ": not valid JSON");
  if (!j.is_object() && !j.is_array()) return configError(path + ": not a JSON object");
  return j;
}

// An integer key in [1, 1<<24].
Status positiveInt(const json& j, const std::string& path, const char* key, int64_t* out) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 1 ||
      it->get<int64_t>() > (int64_t{1} << 24))
    return configError(path + ": key '" + key + "' must be a positive integer");
  *out = it->get<int64_t>();
  return Status();
}

StatusOr<PoolingMode> readPooling(const std::string& path, int64_t hidden) {
  auto j = readJson(path);
  if (!j.ok()) return j.status();
  if (!j->is_object()) return configError(path + ": not a JSON object");
  int64_t dim = 0;
  if (Status s = positiveInt(*j, path, "word_embedding_dimension", &dim); !s.ok()) return s;
  if (dim != hidden)
    return configError(path + ": word_embedding_dimension " + std::to_string(dim) +
                       " is not the model's hidden_size " + std::to_string(hidden));
  static const std::pair<const char*, std::optional<PoolingMode>> kModes[] = {
      {"pooling_mode_mean_tokens", PoolingMode::kMean},
      {"pooling_mode_cls_token", PoolingMode::kCls},
      {"pooling_mode_lasttoken", PoolingMode::kLastToken},
      {"pooling_mode_max_tokens", std::nullopt},
      {"pooling_mode_mean_sqrt_len_tokens", std::nullopt},
      {"pooling_mode_weightedmean_tokens", std::nullopt}};
  std::optional<PoolingMode> mode;
  int set = 0;
  for (const auto& [key, m] : kModes) {
    const auto it = j->find(key);
    if (it == j->end() || it->is_null()) continue;
    if (!it->is_boolean()) return configError(path + ": key '" + key + "' must be a boolean");
    if (!it->get<bool>()) continue;
    if (!m) return configError(path + ": " + key + " is not implemented (mean, cls, lasttoken are)");
    mode = m;
    ++set;
  }
  if (set != 1) return configError(path + ": exactly one pooling_mode_* must be true");
  return *mode;
}

}  // namespace

EmbeddingGemmaModel::~EmbeddingGemmaModel() = default;

StatusOr<std::unique_ptr<EmbeddingGemmaModel>> EmbeddingGemmaModel::load(const std::string& dir,
                                                                         int threads,
                                                                         bool needs_tokenizer) {
  std::unique_ptr<EmbeddingGemmaModel> m(new EmbeddingGemmaModel());
  auto ckpt = Checkpoint::open(dir);
  if (!ckpt.ok()) return ckpt.status();
  m->checkpoint_ = std::move(ckpt).value();
  const GemmaConfig& c = m->config();
  if (c.isGemma4() || !c.bidirectional)
    return configError(dir + "/config.json: not an EmbeddingGemma encoder (a Gemma 3 text config "
                             "with use_bidirectional_attention: true)");
  CpuBackendOptions options;
  options.threads = threads;
  m->backend_ = makeCpuBackend(options);
  if (Status s = m->readModules(dir); !s.ok()) return s;
  if (Status s = m->readTokenizer(dir, needs_tokenizer); !s.ok()) return s;
  if (Status s = m->prepareWeights(); !s.ok()) return s;
  return m;
}

Status EmbeddingGemmaModel::readModules(const std::string& dir) {
  const std::string modules_path = dir + "/modules.json";
  auto modules = readJson(modules_path);
  if (!modules.ok()) return modules.status();
  if (!modules->is_array() || modules->empty())
    return configError(modules_path + ": expected a non-empty array of modules");
  std::vector<json> chain(modules->begin(), modules->end());
  for (const json& mod : chain) {
    if (!mod.is_object() || !mod.contains("idx") || !mod["idx"].is_number_integer() ||
        !mod.contains("type") || !mod["type"].is_string() || !mod.contains("path") ||
        !mod["path"].is_string())
      return configError(modules_path + ": every module needs integer idx, string type and path");
  }
  std::stable_sort(chain.begin(), chain.end(), [](const json& a, const json& b) {
    return a["idx"].get<int64_t>() < b["idx"].get<int64_t>();
  });
  int64_t width = config().hidden;
  bool transformer = false, pooled = false;
  for (const json& mod : chain) {
    const std::string type = mod["type"].get<std::string>();
    const std::string sub = mod["path"].get<std::string>();
    const std::string where = modules_path + ": module " + std::to_string(mod["idx"].get<int64_t>());
    const std::string kind = type.substr(type.rfind('.') + 1);
    if (sub.find("..") != std::string::npos || (!sub.empty() && sub[0] == '/'))
      return configError(where + ": path '" + sub + "' leaves the model directory");
    const std::string sub_dir = dir + "/" + sub;
    if (kind == "Transformer") {
      if (transformer || pooled) return configError(where + ": Transformer must come first, once");
      transformer = true;
    } else if (kind == "Pooling") {
      if (!transformer || pooled) return configError(where + ": Pooling must follow Transformer");
      auto mode = readPooling(sub_dir + "/config.json", config().hidden);
      if (!mode.ok()) return mode.status();
      pooling_ = *mode;
      pooled = true;
    } else if (kind == "Dense") {
      if (!pooled || normalize_) return configError(where + ": Dense must follow Pooling");
      const std::string cfg_path = sub_dir + "/config.json";
      auto cfg = readJson(cfg_path);
      if (!cfg.ok()) return cfg.status();
      if (!cfg->is_object()) return configError(cfg_path + ": not a JSON object");
      int64_t in = 0, out = 0;
      if (Status s = positiveInt(*cfg, cfg_path, "in_features", &in); !s.ok()) return s;
      if (Status s = positiveInt(*cfg, cfg_path, "out_features", &out); !s.ok()) return s;
      if (in != width)
        return configError(cfg_path + ": in_features " + std::to_string(in) +
                           " does not match the previous module's width " + std::to_string(width));
      const auto bias = cfg->find("bias");
      if (bias != cfg->end() && (!bias->is_boolean() || bias->get<bool>()))
        return configError(cfg_path + ": bias must be false (a Dense bias is not implemented)");
      const auto act = cfg->find("activation_function");
      if (act == cfg->end() || !act->is_string() || act->get<std::string>() != kIdentity)
        return configError(cfg_path + ": activation_function must be " + kIdentity +
                           " (sentence-transformers' default, Tanh, is not implemented)");
      Dense d;
      const std::string st_path = sub_dir + "/model.safetensors";
      auto file = SafetensorsFile::open(st_path);
      if (!file.ok()) return file.status();
      d.file = std::move(file).value();
      const TensorView* t = d.file->find("linear.weight");
      if (t == nullptr) return configError(st_path + ": tensor 'linear.weight' is missing");
      if (t->dtype != DType::kBF16 && t->dtype != DType::kF16 && t->dtype != DType::kF32)
        return configError(st_path + ": linear.weight: dtype " + std::string(dtypeName(t->dtype)) +
                           " not supported (BF16, F16, F32)");
      if (t->shape != std::vector<int64_t>{out, in})
        return configError(st_path + ": linear.weight must have shape [" + std::to_string(out) +
                           ", " + std::to_string(in) + "] (out_features, in_features)");
      if (reinterpret_cast<uintptr_t>(t->data) % dtypeSize(t->dtype) != 0)
        return configError(st_path + ": linear.weight is not aligned to its dtype");
      d.weight.data = t->data;
      d.weight.dtype = t->dtype;
      d.weight.shape = t->shape;
      d.weight.bytes = t->bytes;
      d.weight.name = "linear.weight";
      d.weight.file = st_path;
      dense_.push_back(std::move(d));
      width = out;
    } else if (kind == "Normalize") {
      if (!pooled || normalize_) return configError(where + ": Normalize must come last, once");
      normalize_ = true;
    } else {
      return configError(where + ": module type '" + type + "' is not implemented");
    }
  }
  if (!pooled) return configError(modules_path + ": no Transformer and Pooling modules");
  dimensions_ = static_cast<int>(width);

  max_tokens_ = static_cast<int>(std::min<int64_t>(config().max_positions, 1 << 20));
  if (fs::exists(dir + "/sentence_bert_config.json")) {
    const std::string path = dir + "/sentence_bert_config.json";
    auto sb = readJson(path);
    if (!sb.ok()) return sb.status();
    int64_t n = 0;
    if (sb->is_object() && sb->contains("max_seq_length")) {
      if (Status s = positiveInt(*sb, path, "max_seq_length", &n); !s.ok()) return s;
      max_tokens_ = static_cast<int>(std::min<int64_t>(n, max_tokens_));
    }
  }
  return Status();
}

Status EmbeddingGemmaModel::readTokenizer(const std::string& dir, bool needs_tokenizer) {
  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (fs::exists(cfg_path)) {
    auto cfg = readJson(cfg_path);
    if (!cfg.ok()) return cfg.status();
    for (auto [key, dst] : {std::pair{"add_bos_token", &add_bos_}, {"add_eos_token", &add_eos_}}) {
      const auto it = cfg->find(key);
      if (it == cfg->end() || it->is_null()) continue;
      if (!it->is_boolean()) return configError(cfg_path + ": key '" + key + "' must be a boolean");
      *dst = it->get<bool>();
    }
  }
  if (!needs_tokenizer) return Status();
  auto tok = Tokenizer::loadDir(dir);
  if (!tok.ok()) return tok.status();
  tokenizer_ = std::move(tok).value();
  if (add_eos_ && tokenizer_->eosId() < 0)
    return configError(cfg_path + ": add_eos_token is set but the vocabulary has no <eos>");
  return Status();
}

std::vector<int32_t> EmbeddingGemmaModel::tokenize(std::string_view text) const {
  std::vector<int32_t> ids = tokenizer_->encode(text, add_bos_);
  if (add_eos_) ids.push_back(tokenizer_->eosId());
  return ids;
}

Status EmbeddingGemmaModel::prepareWeights() {
  const GemmaWeights& w = checkpoint_->weights();
  Status status;
  auto prep = [&](const Weight& src, WeightRef* dst, bool norm) {
    if (!status.ok()) return;
    auto r = norm ? backend_->prepareNorm1p(src) : backend_->prepareMatrix(src);
    if (r.ok()) *dst = *r;
    else status = r.status();
  };
  prep(w.embed, &embed_, false);
  prep(w.final_norm, &final_norm_, true);
  layers_.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const GemmaLayerWeights& s = w.layers[l];
    LayerRefs& d = layers_[l];
    prep(s.input_layernorm, &d.input_norm, true);
    prep(s.q_proj, &d.q, false);
    prep(s.k_proj, &d.k, false);
    prep(s.v_proj, &d.v, false);
    prep(s.o_proj, &d.o, false);
    prep(s.q_norm, &d.q_norm, true);
    prep(s.k_norm, &d.k_norm, true);
    prep(s.post_attention_layernorm, &d.post_attn_norm, true);
    prep(s.pre_feedforward_layernorm, &d.pre_ff_norm, true);
    prep(s.post_feedforward_layernorm, &d.post_ff_norm, true);
    prep(s.gate_proj, &d.gate, false);
    prep(s.up_proj, &d.up, false);
    prep(s.down_proj, &d.down, false);
  }
  for (Dense& d : dense_) prep(d.weight, &d.ref, false);
  return status;
}

void EmbeddingGemmaModel::reserve(int n_tokens, int n_inputs) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  const size_t f = sizeof(float);
  if (n_tokens > cap_tokens_) {
    const size_t T = static_cast<size_t>(n_tokens);
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
    kv_k_ = be.alloc(T * kvd * sizeof(uint16_t));
    kv_v_ = be.alloc(T * kvd * sizeof(uint16_t));
    kv_pos_ = be.alloc(T * sizeof(int32_t));
    cap_tokens_ = n_tokens;
  }
  if (n_inputs > cap_inputs_) {
    int64_t widest = c.hidden;
    for (const Dense& d : dense_) widest = std::max(widest, d.ref.rows);
    dense_a_ = be.alloc(size_t(n_inputs) * size_t(widest) * f);
    dense_b_ = be.alloc(size_t(n_inputs) * size_t(widest) * f);
    cap_inputs_ = n_inputs;
  }
}

Status EmbeddingGemmaModel::embed(std::span<const std::vector<int32_t>> inputs, int dims,
                                  float* out, const EmbedTrace* trace) {
  if (dims < 1 || dims > dimensions_)
    return invalid("dimensions must be in [1, " + std::to_string(dimensions_) + "], got " +
                   std::to_string(dims));
  if (inputs.empty()) return Status();
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t>& in = inputs[i];
    if (in.empty()) return invalid("input " + std::to_string(i) + " has no tokens");
    if (std::ssize(in) > max_tokens_)
      return invalid("input " + std::to_string(i) + " has " + std::to_string(in.size()) +
                     " tokens; the model reads at most " + std::to_string(max_tokens_));
    for (int32_t id : in)
      if (id < 0 || id >= config().vocab)
        return invalid("input " + std::to_string(i) + ": token id " + std::to_string(id) +
                       " outside [0, " + std::to_string(config().vocab) + ")");
    total += std::ssize(in);
  }
  if (total > (int64_t{1} << 30)) return invalid("too many tokens in one call");
  reserve(static_cast<int>(total), static_cast<int>(inputs.size()));
  runLayers(inputs, trace);

  std::vector<float> x;
  pool(inputs, x);
  if (trace != nullptr && trace->pooled != nullptr) std::copy(x.begin(), x.end(), trace->pooled);
  project(x, static_cast<int>(inputs.size()));

  // Matryoshka (truncate_dim): the first `dims` values, normalised again when the chain
  // normalises (normalising the whole vector first would only scale them).
  for (size_t i = 0; i < inputs.size(); ++i) {
    const float* e = x.data() + i * size_t(dimensions_);
    float* o = out + i * size_t(dims);
    double ss = 0;
    for (int j = 0; j < dims; ++j) ss += double(e[j]) * e[j];
    const double inv = normalize_ ? 1.0 / std::max(std::sqrt(ss), 1e-12) : 1.0;
    for (int j = 0; j < dims; ++j) o[j] = static_cast<float>(e[j] * inv);
  }
  return Status();
}

void EmbeddingGemmaModel::runLayers(std::span<const std::vector<int32_t>> inputs,
                                    const EmbedTrace* trace) {
  const GemmaConfig& c = config();
  Backend& be = *backend_;
  ids_.clear();
  pos_.clear();
  for (const std::vector<int32_t>& in : inputs) {
    ids_.insert(ids_.end(), in.begin(), in.end());
    for (int p = 0; p < std::ssize(in); ++p) pos_.push_back(p);  // positions restart per input
  }
  const int T = static_cast<int>(ids_.size());
  const int64_t H = c.hidden, I = c.intermediate;
  const int D = c.head_dim, Hq = c.n_head, Hkv = c.n_head_kv;
  const int64_t q_dim = int64_t{Hq} * D, kv_dim = int64_t{Hkv} * D;
  const float eps = c.rms_norm_eps;
  float *h = h_->f32(), *x = x_->f32(), *q = q_->f32(), *k = k_->f32(), *v = v_->f32(),
        *att = att_->f32(), *gate = gate_->f32(), *up = up_->f32();
  auto capture = [&](int index) {
    if (trace == nullptr) return;
    int64_t row = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const int64_t n = std::ssize(inputs[i]);
      if (i < trace->hidden_states.size() && trace->hidden_states[i] != nullptr)
        be.download(trace->hidden_states[i] + int64_t{index} * n * H, *h_,
                    size_t(row * H) * sizeof(float), size_t(n * H) * sizeof(float));
      row += n;
    }
  };

  be.embed(ids_.data(), T, embed_, c.embed_scale, h);  // §2.1
  be.ropeTable(pos_.data(), T, D, c.rope_sliding, rope_sliding_->f32());
  be.ropeTable(pos_.data(), T, D, c.rope_full, rope_full_->f32());
  capture(0);
  // §2.8: HF gives an encoder's sliding layers the bound W//2 + 1 on |pos_k - pos_q|.
  const int radius = c.sliding_window / 2 + 1;
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerRefs& w = layers_[static_cast<size_t>(l)];
    const bool sliding = c.isSliding(l);
    be.rmsnorm1p(h, T, H, w.input_norm, eps, x);
    const MatmulTarget qkv[] = {{&w.q, q}, {&w.k, k}, {&w.v, v}};
    be.matmul(x, T, qkv, /*round_bf16=*/true);
    be.rmsnorm1p(q, int64_t{T} * Hq, D, w.q_norm, eps, q);
    be.rmsnorm1p(k, int64_t{T} * Hkv, D, w.k_norm, eps, k);
    const float* table = sliding ? rope_sliding_->f32() : rope_full_->f32();
    be.rope(q, T, Hq, D, table);
    be.rope(k, T, Hkv, D, table);
    seqs_.clear();
    int64_t row = 0;
    for (const std::vector<int32_t>& in : inputs) {  // each input attends to itself only
      const int n = static_cast<int>(in.size());
      KvLayerView kv;
      kv.k = kv_k_->u16() + row * kv_dim;
      kv.v = kv_v_->u16() + row * kv_dim;
      kv.slot_pos = kv_pos_->i32() + row;
      kv.capacity = n;
      be.writeKv(k + row * kv_dim, v + row * kv_dim, n, 0, static_cast<int>(kv_dim), kv);
      AttentionSeq s;
      s.q = q + row * q_dim;
      s.out = att + row * q_dim;
      s.n = n;
      s.pos0 = 0;
      s.kv = kv;
      s.n_slots = n;
      seqs_.push_back(s);
      row += n;
    }
    AttentionShape shape;
    shape.n_head = Hq;
    shape.n_head_kv = Hkv;
    shape.head_dim = D;
    shape.scale = c.attn_scale;
    shape.window = sliding ? radius : 0;
    shape.bidirectional = true;
    be.attention(shape, seqs_);
    be.matmul(att, T, w.o, x, true);
    be.rmsnorm1pAdd(x, T, H, w.post_attn_norm, eps, h);
    be.rmsnorm1p(h, T, H, w.pre_ff_norm, eps, x);
    const MatmulTarget gate_up[] = {{&w.gate, gate}, {&w.up, up}};
    be.matmul(x, T, gate_up, true);
    be.geglu(gate, up, int64_t{T} * I, gate);
    be.matmul(gate, T, w.down, x, true);
    be.rmsnorm1pAdd(x, T, H, w.post_ff_norm, eps, h);
    capture(l + 1);
  }
  be.rmsnorm1p(h, T, H, final_norm_, eps, x);  // the encoder's last_hidden_state
}

void EmbeddingGemmaModel::pool(std::span<const std::vector<int32_t>> inputs,
                               std::vector<float>& pooled) {
  const int64_t H = config().hidden;
  std::vector<float> last(size_t(cap_tokens_) * size_t(H));
  int64_t total = 0;
  for (const auto& in : inputs) total += std::ssize(in);
  backend_->download(last.data(), *x_, 0, size_t(total * H) * sizeof(float));
  pooled.assign(inputs.size() * size_t(H), 0.0f);
  int64_t row = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t n = std::ssize(inputs[i]);
    float* o = pooled.data() + i * size_t(H);
    const float* rows = last.data() + row * H;
    if (pooling_ == PoolingMode::kCls) {
      std::copy(rows, rows + H, o);
    } else if (pooling_ == PoolingMode::kLastToken) {
      std::copy(rows + (n - 1) * H, rows + n * H, o);
    } else {  // a bf16 model's torch.sum (fp32 inside, bf16 out), then the bf16 division
      for (int64_t j = 0; j < H; ++j) {
        float sum = 0;
        for (int64_t t = 0; t < n; ++t) sum += rows[t * H + j];
        o[j] = roundBf16(roundBf16(sum) / static_cast<float>(n));
      }
    }
    row += n;
  }
}

void EmbeddingGemmaModel::project(std::vector<float>& x, int n_inputs) {
  if (dense_.empty()) return;
  Backend& be = *backend_;
  int64_t width = config().hidden;
  be.upload(*dense_a_, 0, x.data(), x.size() * sizeof(float));
  Buffer* in = dense_a_.get();
  Buffer* out = dense_b_.get();
  for (const Dense& d : dense_) {
    be.matmul(in->f32(), n_inputs, d.ref, out->f32(), /*round_bf16=*/true);
    width = d.ref.rows;
    std::swap(in, out);
  }
  x.resize(size_t(n_inputs) * size_t(width));
  be.download(x.data(), *in, 0, x.size() * sizeof(float));
}

}  // namespace engine
