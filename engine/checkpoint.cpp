#include "engine/checkpoint.h"

#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "engine/bf16.h"
#include "engine/gguf.h"
#include "engine/gguf_gemma.h"
#include "engine/quant/quant.h"

namespace engine {
namespace {

using api::ErrorCode;
using api::Status;
using nlohmann::json;

Status configError(std::string message) { return Status(ErrorCode::kConfig, std::move(message)); }

bool isFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string shapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Where a stored tensor lives.
struct Source {
  const TensorView* view = nullptr;
  std::string name;  // stored name
  std::string file;  // path of its file
};

// A required tensor: its canonical name, where it goes and what shape it must have.
struct Required {
  std::string canonical;
  Weight* dst;
  std::vector<int64_t> shape;
  const char* meaning;  // the shape in the spec's letters, for error messages
};

// The tensors of one decoder layer, with this layer's geometry (§4.3, §4.4).
void requiredLayer(const GemmaConfig& c, int l, GemmaLayerWeights& L, std::vector<Required>* out) {
  const LayerGeometry& g = c.layer(l);
  const int64_t H = c.hidden, I = g.intermediate, D = g.head_dim;
  const int64_t q_rows = int64_t{c.n_head} * D, kv_rows = int64_t{g.n_head_kv} * D;
  const std::string p = "layers." + std::to_string(l) + ".";
  auto req = [&](const std::string& name, Weight* dst, std::vector<int64_t> shape,
                 const char* meaning) { out->push_back({p + name, dst, std::move(shape), meaning}); };
  req("input_layernorm.weight", &L.input_layernorm, {H}, "[H]");
  req("self_attn.q_proj.weight", &L.q_proj, {q_rows, H}, "[Hq*D, H]");
  if (c.storesKv(l)) {  // §3.5: KV-shared layers use no k/v projection or k_norm
    req("self_attn.k_proj.weight", &L.k_proj, {kv_rows, H}, "[Hkv*D, H]");
    if (!g.k_eq_v) req("self_attn.v_proj.weight", &L.v_proj, {kv_rows, H}, "[Hkv*D, H]");
  }
  req("self_attn.o_proj.weight", &L.o_proj, {H, q_rows}, "[H, Hq*D]");
  req("self_attn.q_norm.weight", &L.q_norm, {D}, "[D]");
  if (c.storesKv(l)) req("self_attn.k_norm.weight", &L.k_norm, {D}, "[D]");
  req("post_attention_layernorm.weight", &L.post_attention_layernorm, {H}, "[H]");
  req("pre_feedforward_layernorm.weight", &L.pre_feedforward_layernorm, {H}, "[H]");
  req("post_feedforward_layernorm.weight", &L.post_feedforward_layernorm, {H}, "[H]");
  req("mlp.gate_proj.weight", &L.gate_proj, {I, H}, "[I, H]");
  req("mlp.up_proj.weight", &L.up_proj, {I, H}, "[I, H]");
  req("mlp.down_proj.weight", &L.down_proj, {H, I}, "[H, I]");
  if (!c.isGemma4()) return;
  if (c.moe.n_expert > 0) {
    const int64_t E = c.moe.n_expert, Im = c.moe.intermediate;
    req("router.proj.weight", &L.router_proj, {E, H}, "[E, H]");
    req("router.scale", &L.router_scale, {H}, "[H]");
    req("router.per_expert_scale", &L.router_per_expert_scale, {E}, "[E]");
    req("experts.gate_up_proj", &L.experts_gate_up, {E, 2 * Im, H}, "[E, 2*I_moe, H]");
    req("experts.down_proj", &L.experts_down, {E, H, Im}, "[E, H, I_moe]");
    req("pre_feedforward_layernorm_2.weight", &L.pre_feedforward_layernorm_2, {H}, "[H]");
    req("post_feedforward_layernorm_1.weight", &L.post_feedforward_layernorm_1, {H}, "[H]");
    req("post_feedforward_layernorm_2.weight", &L.post_feedforward_layernorm_2, {H}, "[H]");
  }
  if (c.ple_dim > 0) {
    const int64_t P = c.ple_dim;
    req("per_layer_input_gate.weight", &L.per_layer_input_gate, {P, H}, "[P, H]");
    req("per_layer_projection.weight", &L.per_layer_projection, {H, P}, "[H, P]");
    req("post_per_layer_input_norm.weight", &L.post_per_layer_input_norm, {H}, "[H]");
  }
  req("layer_scalar", &L.layer_scalar, {1}, "[1]");
}

std::vector<Required> requiredTensors(const GemmaConfig& c, GemmaWeights* w) {
  const int64_t H = c.hidden;
  w->layers.assign(static_cast<size_t>(c.n_layer), GemmaLayerWeights{});
  w->embed_rows = c.vocab;
  std::vector<Required> out;
  out.push_back({"embed_tokens.weight", &w->embed, {c.vocab, H}, "[vocab_size, hidden_size]"});
  if (c.isGemma4() && c.ple_dim > 0) {
    const int64_t LP = int64_t{c.n_layer} * c.ple_dim;
    out.push_back({"embed_tokens_per_layer.weight", &w->embed_per_layer, {c.ple_vocab, LP},
                   "[vocab_size_per_layer_input, L*P]"});
    out.push_back(
        {"per_layer_model_projection.weight", &w->per_layer_model_projection, {LP, H}, "[L*P, H]"});
    out.push_back(
        {"per_layer_projection_norm.weight", &w->per_layer_projection_norm, {c.ple_dim}, "[P]"});
  }
  for (int l = 0; l < c.n_layer; ++l) requiredLayer(c, l, w->layers[static_cast<size_t>(l)], &out);
  out.push_back({"norm.weight", &w->final_norm, {H}, "[H]"});
  return out;
}

}  // namespace

std::optional<std::string> canonicalTensorName(std::string_view stored) {
  constexpr std::string_view kLm = "language_model.";
  if (size_t at = stored.find(kLm); at != std::string_view::npos) {
    stored.remove_prefix(at + kLm.size());
  } else {
    for (std::string_view skip :
         {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
          "model.multi_modal_projector.", "model.audio_tower.", "model.embed_vision.",
          "model.embed_audio.", "audio_tower.", "embed_vision.", "embed_audio."}) {
      if (startsWith(stored, skip)) return std::nullopt;
    }
  }
  if (startsWith(stored, "model.")) stored.remove_prefix(6);
  return std::string(stored);
}

int64_t Weight::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float Weight::at(int64_t i) const {
  switch (dtype) {
    case DType::kBF16:
      return bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return f16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    default:
      return 0.0f;  // open() admits no other dtype
  }
}

void Weight::toFloat(float* out) const {
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) out[i] = at(i);
}

Checkpoint::Checkpoint() = default;
Checkpoint::~Checkpoint() = default;

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  if (gguf_) out.push_back(gguf_->path());
  return out;
}

// A Gemma 3 or Gemma 4 GGUF file (engine/gguf_gemma.h): the same required tensors under their
// GGUF names; matrices and expert stacks may arrive block-quantized; shifted norms are undone
// into owned fp32 buffers.
api::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::openGguf(const std::string& path) {
  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  ck->dir_ = path;
  auto file = gguf::GgufFile::open(path);
  if (!file.ok()) return file.status();
  ck->gguf_ = std::move(file).value();
  const gguf::GgufFile& f = *ck->gguf_;
  auto config = gguf::gemmaConfigFromGguf(f);
  if (!config.ok()) return config.status();
  ck->config_ = std::move(config).value();
  const GemmaConfig& c = ck->config_;

  GemmaWeights& w = ck->weights_;
  std::vector<Required> required = requiredTensors(c, &w);
  std::set<std::string> used;
  for (const Required& r : required) {
    const std::optional<std::string> name = gguf::ggufTensorName(r.canonical);
    const gguf::TensorInfo* t = name ? f.findTensor(*name) : nullptr;
    if (t == nullptr) {
      return configError(path + ": missing tensor '" + name.value_or(r.canonical) +
                         "' (text tensor '" + r.canonical + "', shape " + shapeString(r.shape) +
                         ")");
    }
    const std::string where = path + ": tensor '" + t->name + "': ";
    const std::optional<DType> dtype = gguf::dtypeOf(t->type);
    if (!dtype) {
      const auto traits = gguf::typeTraits(t->type);
      return configError(where + "ggml type " +
                         (traits ? std::string(traits->name) : std::to_string(t->type)) +
                         " is not supported (F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q6_K)");
    }
    const bool blocks = quant::qtypeOf(*dtype).has_value();
    if (t->shape != r.shape) {
      return configError(where + "shape " + shapeString(t->shape) + ", expected " +
                         shapeString(r.shape) + " " + r.meaning + " from the metadata");
    }
    if (blocks && r.shape.size() < 2) {
      return configError(where + "a " + std::string(dtypeName(*dtype)) +
                         " vector: only matrices and expert stacks may be block-quantized");
    }
    if (!blocks && reinterpret_cast<uintptr_t>(t->data) % dtypeSize(*dtype) != 0) {
      return configError(where + "data is not aligned to its " +
                         std::to_string(dtypeSize(*dtype)) + "-byte elements");
    }
    Weight& dst = *r.dst;
    dst.data = t->data;
    dst.dtype = *dtype;
    dst.shape = t->shape;
    dst.bytes = t->bytes;
    dst.name = t->name;
    dst.file = path;
    if (const float shift = gguf::normShift(c.family, r.canonical); shift != 0.0f) {
      // fl32(stored - 1) is exact for a stored fl32(1 + w), so the forward pass's 1 + w gives
      // back the stored value bit for bit.
      std::vector<float>& buf = ck->owned_.emplace_back(static_cast<size_t>(dst.numel()));
      for (int64_t i = 0; i < dst.numel(); ++i) buf[size_t(i)] = dst.at(i) - shift;
      dst.data = buf.data();
      dst.dtype = DType::kF32;
      dst.bytes = buf.size() * sizeof(float);
    }
    ck->weight_bytes_ += t->bytes;
    used.insert(t->name);
  }
  used.insert(std::string(gguf::kRopeFreqsTensor));  // read into the config (proportional RoPE)
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (!used.count(t.name)) ck->unused_.push_back(t.name);
  }
  return ck;
}

api::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::open(const std::string& dir) {
  if (gguf::isGgufPath(dir)) return openGguf(dir);
  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  ck->dir_ = dir;
  auto config = loadGemmaConfig(dir);
  if (!config.ok()) return config.status();
  ck->config_ = std::move(config).value();
  const GemmaConfig& c = ck->config_;

  // Collect every stored tensor under its canonical name.
  std::map<std::string, Source> by_canonical;
  auto add = [&](const TensorView* view, const std::string& name,
                 const std::string& file) -> Status {
    std::optional<std::string> canonical = canonicalTensorName(name);
    if (!canonical) {
      ck->unused_.push_back(name);
      return Status();
    }
    auto [it, inserted] = by_canonical.emplace(*canonical, Source{view, name, file});
    if (!inserted) {
      return configError(file + ": tensor '" + name + "' and tensor '" + it->second.name +
                         "' (in " + it->second.file + ") are both the text tensor '" + *canonical +
                         "'");
    }
    return Status();
  };

  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::string searched;  // for "missing tensor" messages
  if (isFile(single)) {
    auto file = SafetensorsFile::open(single);
    if (!file.ok()) return file.status();
    ck->files_.push_back(std::move(file).value());
    const SafetensorsFile& f = *ck->files_.back();
    for (const std::string& name : f.names()) {
      if (Status s = add(f.find(name), name, f.path()); !s.ok()) return s;
    }
    searched = single;
  } else if (isFile(index_path)) {
    auto text = readTextFile(index_path);
    if (!text.ok()) return text.status();
    json index = json::parse(*text, nullptr, false);
    if (index.is_discarded() || !index.is_object()) {
      return configError(index_path + ": not a JSON object");
    }
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) {
      return configError(index_path + ": key 'weight_map' is missing or not an object");
    }
    std::map<std::string, SafetensorsFile*> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      const std::string& name = it.key();
      if (!it.value().is_string()) {
        return configError(index_path + ": weight_map entry for tensor '" + name +
                           "' is not a file name");
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        return configError(index_path + ": weight_map entry for tensor '" + name + "' names '" +
                           shard + "', not a file in the model directory");
      }
      auto found = shards.find(shard);
      if (found == shards.end()) {
        const std::string path = dir + "/" + shard;
        if (!isFile(path)) {
          return Status(ErrorCode::kIo, index_path + ": shard file '" + shard +
                                            "' (holding tensor '" + name + "') is missing");
        }
        auto file = SafetensorsFile::open(path);
        if (!file.ok()) return file.status();
        ck->files_.push_back(std::move(file).value());
        found = shards.emplace(shard, ck->files_.back().get()).first;
      }
      const TensorView* view = found->second->find(name);
      if (view == nullptr) {
        return configError(found->second->path() + ": tensor '" + name +
                           "' is listed in model.safetensors.index.json but not in this shard");
      }
      if (Status s = add(view, name, found->second->path()); !s.ok()) return s;
    }
    searched = "the shards of " + index_path;
  } else {
    return Status(ErrorCode::kIo, dir + ": no model.safetensors or model.safetensors.index.json");
  }

  // What the config says must be there (§4.3, §4.4), in the forward pass's order.
  GemmaWeights& w = ck->weights_;
  std::vector<Required> required = requiredTensors(c, &w);
  std::set<std::string> used;
  for (const Required& r : required) {
    auto it = by_canonical.find(r.canonical);
    if (it == by_canonical.end()) {
      const std::string lm = c.conditional ? "model.language_model." : "model.";
      return configError(dir + ": missing tensor '" + lm + r.canonical + "' (text tensor '" +
                         r.canonical + "', shape " + shapeString(r.shape) + ") in " + searched);
    }
    const Source& src = it->second;
    const TensorView& v = *src.view;
    const std::string where = src.file + ": tensor '" + src.name + "': ";
    if (v.dtype != DType::kBF16 && v.dtype != DType::kF16 && v.dtype != DType::kF32) {
      return configError(where + "dtype " + std::string(dtypeName(v.dtype)) +
                         " is not supported (BF16, F16 or F32)");
    }
    if (v.shape != r.shape) {
      return configError(where + "shape " + shapeString(v.shape) + ", expected " +
                         shapeString(r.shape) + " " + r.meaning + " from config.json");
    }
    if (reinterpret_cast<uintptr_t>(v.data) % dtypeSize(v.dtype) != 0) {
      return configError(where + "data is not aligned to its " +
                         std::to_string(dtypeSize(v.dtype)) + "-byte elements");
    }
    Weight& dst = *r.dst;
    dst.data = v.data;
    dst.dtype = v.dtype;
    dst.shape = v.shape;
    dst.bytes = v.bytes;
    dst.name = src.name;
    dst.file = src.file;
    ck->weight_bytes_ += v.bytes;
    used.insert(r.canonical);
  }
  for (const auto& [canonical, src] : by_canonical) {
    if (!used.count(canonical)) ck->unused_.push_back(src.name);
  }
  return ck;
}

}  // namespace engine
