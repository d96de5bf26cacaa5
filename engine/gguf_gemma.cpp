#include "engine/gguf_gemma.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "engine/bf16.h"

namespace engine::gguf {
namespace {

using api::ErrorCode;
using api::Status;

Status configError(std::string message) { return Status(ErrorCode::kConfig, std::move(message)); }

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool endsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// HF suffix inside "layers.N." <-> GGUF suffix inside "blk.N." (gguf-py tensor_mapping.py,
// constants.py). The last three are Gemma 4's extra feed-forward norms.
struct LayerName {
  std::string_view hf;
  std::string_view gguf;
};
constexpr LayerName kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"},
    {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"},
    {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"},
    // Gemma 4: the expert block (gate_up stays fused, gate rows first), PLE, the layer scalar.
    {"router.proj.weight", "ffn_gate_inp.weight"},
    {"router.scale", "ffn_gate_inp.scale"},
    {"router.per_expert_scale", "ffn_down_exps.scale"},
    {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
    {"experts.down_proj", "ffn_down_exps.weight"},
    {"per_layer_input_gate.weight", "inp_gate.weight"},
    {"per_layer_projection.weight", "proj.weight"},
    {"post_per_layer_input_norm.weight", "post_norm.weight"},
    {"layer_scalar", "layer_output_scale.weight"},
};
constexpr LayerName kModelNames[] = {
    {"embed_tokens.weight", "token_embd.weight"},
    {"norm.weight", "output_norm.weight"},
    {"embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
    {"per_layer_model_projection.weight", "per_layer_model_proj.weight"},
    {"per_layer_projection_norm.weight", "per_layer_proj_norm.weight"},
};

// "<prefix><digits>.<rest>" -> (layer digits, rest); nullopt otherwise.
std::optional<std::pair<std::string_view, std::string_view>> splitLayer(std::string_view name,
                                                                        std::string_view prefix) {
  if (!startsWith(name, prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  size_t n = 0;
  while (n < name.size() && name[n] >= '0' && name[n] <= '9') ++n;
  if (n == 0 || n > 6 || n >= name.size() || name[n] != '.') return std::nullopt;
  if (n > 1 && name[0] == '0') return std::nullopt;  // one spelling per layer
  return std::make_pair(name.substr(0, n), name.substr(n + 1));
}

// llama.cpp's fixed Gemma 3 layer pattern: layer l is full iff (l + 1) % 6 == 0.
constexpr int kLlamaSwaPattern = 6;
constexpr double kLlamaSwaRopeBase = 10000.0;

bool llamaSliding(int l) { return (l + 1) % kLlamaSwaPattern != 0; }

// llama.cpp's Gemma 3 attention scale rule, as query_pre_attn_scalar (llama-model.cpp: the
// 62-layer 27B model uses hidden / heads, every other size head_dim).
double llamaQueryPreAttnScalar(int n_layer, int64_t hidden, int n_head, int head_dim) {
  return n_layer == 62 ? static_cast<double>(hidden / n_head) : static_cast<double>(head_dim);
}

std::string key(std::string_view arch, std::string_view name) {
  return std::string(arch) + "." + std::string(name);
}

}  // namespace

bool isGgufPath(std::string_view path) {
  if (path.size() < 5) return false;
  std::string_view ext = path.substr(path.size() - 5);
  std::string lower;
  for (char ch : ext) lower.push_back(static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch));
  return lower == ".gguf";
}

std::string sidecarDir(std::string_view gguf_path) {
  const size_t slash = gguf_path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(gguf_path.substr(0, slash));
}

std::optional<std::string> ggufTensorName(std::string_view canonical) {
  for (const LayerName& n : kModelNames) {
    if (canonical == n.hf) return std::string(n.gguf);
  }
  auto parts = splitLayer(canonical, "layers.");
  if (!parts) return std::nullopt;
  for (const LayerName& n : kLayerNames) {
    if (parts->second == n.hf) {
      return "blk." + std::string(parts->first) + "." + std::string(n.gguf);
    }
  }
  return std::nullopt;
}

std::optional<std::string> canonicalTensorNameFromGguf(std::string_view gguf_name) {
  for (const LayerName& n : kModelNames) {
    if (gguf_name == n.gguf) return std::string(n.hf);
  }
  auto parts = splitLayer(gguf_name, "blk.");
  if (!parts) return std::nullopt;
  for (const LayerName& n : kLayerNames) {
    if (parts->second == n.gguf) {
      return "layers." + std::string(parts->first) + "." + std::string(n.hf);
    }
  }
  return std::nullopt;
}

float normShift(ModelFamily family, std::string_view canonical) {
  // convert_hf_to_gguf.py Gemma3Model.norm_shift: every HF name ending in "norm.weight".
  return family == ModelFamily::kGemma3 && endsWith(canonical, "norm.weight") ? 1.0f : 0.0f;
}

namespace {

// One u32 when every layer has the same value, else the converter's INT32 array per layer.
Value perLayer(const GemmaConfig& c, int64_t (*get)(const LayerGeometry&)) {
  std::vector<int64_t> v;
  for (int l = 0; l < c.n_layer; ++l) v.push_back(get(c.layer(l)));
  if (std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v[0]; })) {
    return Value::u32(static_cast<uint32_t>(v[0]));
  }
  return Value::intArray(ValueType::kI32, std::move(v));
}

// The special ids llama.cpp reads from the model side (the tokenizer's own are merged later).
void specialIdMetadata(const GemmaConfig& c, std::vector<KeyValue>* m) {
  m->emplace_back("tokenizer.ggml.bos_token_id", Value::u32(static_cast<uint32_t>(c.bos_id)));
  if (!c.eos_ids.empty()) {
    m->emplace_back("tokenizer.ggml.eos_token_id",
                    Value::u32(static_cast<uint32_t>(c.eos_ids[0])));
  }
  m->emplace_back("tokenizer.ggml.padding_token_id", Value::u32(static_cast<uint32_t>(c.pad_id)));
  if (c.eos_ids.size() > 1) {
    m->emplace_back("tokenizer.ggml.eot_token_id",
                    Value::u32(static_cast<uint32_t>(c.eos_ids[1])));
  }
}

// convert_hf_to_gguf.py Gemma4Model.set_gguf_parameters, key for key (gguf_gemma.h).
api::StatusOr<std::vector<KeyValue>> gemma4Metadata(const GemmaConfig& c) {
  if (c.rope_sliding.type != RopeType::kDefault || c.rope_sliding.factor != 1.0) {
    return configError("Gemma 4 sliding layers with scaled or proportional RoPE cannot be "
                       "written to GGUF");
  }
  if (c.rope_full.type == RopeType::kLinear || c.rope_full.factor != 1.0) {
    return configError("Gemma 4 full layers with scaled RoPE (factor " +
                       std::to_string(c.rope_full.factor) + ") cannot be written to GGUF");
  }
  const std::string_view a = kArchGemma4;
  std::vector<KeyValue> m;
  auto u32 = [&](std::string_view name, int64_t v) {
    m.emplace_back(key(a, name), Value::u32(static_cast<uint32_t>(v)));
  };
  auto f32 = [&](std::string_view name, double v) {
    m.emplace_back(key(a, name), Value::f32(static_cast<float>(v)));
  };
  m.emplace_back("general.architecture", Value::string(std::string(a)));
  m.emplace_back("general.quantization_version", Value::u32(2));
  u32("context_length", c.max_positions);
  u32("embedding_length", c.hidden);
  u32("block_count", c.n_layer);
  m.emplace_back(key(a, "feed_forward_length"),
                 perLayer(c, [](const LayerGeometry& g) { return g.intermediate; }));
  u32("attention.head_count", c.n_head);
  m.emplace_back(key(a, "attention.head_count_kv"),
                 perLayer(c, [](const LayerGeometry& g) { return int64_t{g.n_head_kv}; }));
  u32("attention.key_length", c.global_head_dim);
  u32("attention.value_length", c.global_head_dim);
  u32("attention.key_length_swa", c.head_dim);
  u32("attention.value_length_swa", c.head_dim);
  f32("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  u32("attention.sliding_window", c.sliding_window);
  std::vector<uint64_t> pattern;
  for (int l = 0; l < c.n_layer; ++l) pattern.push_back(c.isSliding(l) ? 1 : 0);
  m.emplace_back(key(a, "attention.sliding_window_pattern"),
                 Value::uintArray(ValueType::kBool, std::move(pattern)));
  u32("attention.shared_kv_layers", c.n_kv_shared);
  u32("embedding_length_per_layer_input", c.ple_dim);
  f32("rope.freq_base", c.rope_full.base);
  f32("rope.freq_base_swa", c.rope_sliding.base);
  u32("rope.dimension_count", c.global_head_dim);
  u32("rope.dimension_count_swa", c.head_dim);
  if (c.final_softcap != 0) f32("final_logit_softcapping", c.final_softcap);
  if (c.moe.n_expert > 0) {
    u32("expert_count", c.moe.n_expert);
    u32("expert_used_count", c.moe.top_k);
    u32("expert_feed_forward_length", c.moe.intermediate);
  }
  specialIdMetadata(c, &m);
  return m;
}

}  // namespace

std::string llamaCppDifference(const GemmaConfig& c) {
  if (!c.isGemma4()) {
    for (int l = 0; l < c.n_layer; ++l) {
      if (c.isSliding(l) != llamaSliding(l)) {
        return "layer " + std::to_string(l) + " is " + (c.isSliding(l) ? "sliding" : "full") +
               "; llama.cpp's gemma3 loader makes every 6th layer full and the rest sliding, so "
               "llama.cpp runs this model differently past the sliding window";
      }
    }
    return "";
  }
  const int first = c.firstSharedLayer();
  for (int l = first; l < c.n_layer; ++l) {
    const int llama = first - (c.isSliding(l) ? 2 : 1);
    if (c.layer(l).kv_source != llama) {
      return "KV-shared layer " + std::to_string(l) + " reads layer " +
             std::to_string(c.layer(l).kv_source) + "; llama.cpp would read layer " +
             std::to_string(llama) + " (it assumes the two layers before the shared tail are a "
             "sliding and a full one), so llama.cpp cannot run this file as the engine does";
    }
  }
  return "";
}

std::vector<float> ropeFreqs(const GemmaConfig& c) {
  const int half = c.global_head_dim / 2;
  const int rotated = c.rope_full.rotatedPairs(c.global_head_dim);
  std::vector<float> v(static_cast<size_t>(half), kRopeFreqOff);
  for (int j = 0; j < rotated && j < half; ++j) v[size_t(j)] = 1.0f;
  return v;
}

api::StatusOr<std::vector<KeyValue>> gemmaMetadata(const GemmaConfig& c) {
  if (c.isGemma4()) return gemma4Metadata(c);
  if (c.bidirectional) {
    return configError(
        "EmbeddingGemma to GGUF is not implemented (llama.cpp's arch is "
        "gemma-embedding, not gemma3)");
  }
  if (c.rope_sliding.type != RopeType::kDefault || c.rope_sliding.factor != 1.0) {
    return configError(
        "RoPE scaling on sliding layers cannot be written to GGUF (llama.cpp's "
        "Gemma 3 leaves them unscaled)");
  }
  if (c.rope_full.type != RopeType::kDefault && c.rope_full.type != RopeType::kLinear) {
    return configError("only default and linear RoPE can be written to GGUF for Gemma 3");
  }
  if (c.final_softcap != 0) return configError("Gemma 3 has no final logit softcapping");
  const std::string_view a = kArchGemma3;
  std::vector<KeyValue> m;
  auto u32 = [&](std::string_view name, int64_t v) {
    m.emplace_back(key(a, name), Value::u32(static_cast<uint32_t>(v)));
  };
  m.emplace_back("general.architecture", Value::string(std::string(a)));
  m.emplace_back("general.quantization_version", Value::u32(2));
  u32("context_length", c.max_positions);
  u32("embedding_length", c.hidden);
  u32("block_count", c.n_layer);
  u32("feed_forward_length", c.intermediate);
  u32("attention.head_count", c.n_head);
  u32("attention.head_count_kv", c.n_head_kv);
  u32("attention.key_length", c.head_dim);
  u32("attention.value_length", c.head_dim);
  m.emplace_back(key(a, "attention.layer_norm_rms_epsilon"), Value::f32(c.rms_norm_eps));
  m.emplace_back(key(a, "rope.freq_base"), Value::f32(static_cast<float>(c.rope_full.base)));
  bool any_sliding = false, llama_pattern = true;
  for (int l = 0; l < c.n_layer; ++l) {
    any_sliding = any_sliding || c.isSliding(l);
    llama_pattern = llama_pattern && c.isSliding(l) == llamaSliding(l);
  }
  if (any_sliding) u32("attention.sliding_window", c.sliding_window);
  if (c.rope_full.type == RopeType::kLinear) {
    m.emplace_back(key(a, "rope.scaling.type"), Value::string("linear"));
    m.emplace_back(key(a, "rope.scaling.factor"),
                   Value::f32(static_cast<float>(c.rope_full.factor)));
  }
  // Extensions where the config leaves llama.cpp's fixed choices (gguf_gemma.h).
  if (any_sliding && !llama_pattern) {
    std::vector<uint64_t> pattern;
    for (int l = 0; l < c.n_layer; ++l) pattern.push_back(c.isSliding(l) ? 1 : 0);
    m.emplace_back(key(a, "attention.sliding_window_pattern"),
                   Value::uintArray(ValueType::kBool, std::move(pattern)));
  }
  if (c.query_pre_attn_scalar !=
      llamaQueryPreAttnScalar(c.n_layer, c.hidden, c.n_head, c.head_dim)) {
    m.emplace_back(key(a, "attention.scale"), Value::f32(c.attn_scale));
  }
  if (c.rope_sliding.base != kLlamaSwaRopeBase) {
    m.emplace_back(key(a, "rope.freq_base_swa"),
                   Value::f32(static_cast<float>(c.rope_sliding.base)));
  }
  specialIdMetadata(c, &m);
  return m;
}

namespace {

// Reads "<arch>.*" keys with the ranges parseGemmaConfig applies to config.json.
class MetaReader {
 public:
  MetaReader(const GgufFile& f, std::string_view arch) : f_(f), arch_(arch) {}

  std::string full(std::string_view name) const { return key(arch_, name); }
  bool has(std::string_view name) const { return f_.has(full(name)); }
  const Value* find(std::string_view name) const { return f_.find(full(name)); }

  // Required (def == nullopt) or defaulted integer in [lo, hi].
  Status integer(std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                 int64_t* out) const {
    const std::string k = full(name);
    if (!f_.has(k) && def) {
      *out = *def;
      return Status();
    }
    if (const Value* v = f_.find(k); v != nullptr && v->isArray()) {
      return configError(f_.path() + ": key '" + k +
                         "' is a per-layer array; one value for all layers is expected");
    }
    auto v = f_.getI64(k);
    if (!v.ok()) return v.status();
    if (*v < lo || *v > hi) {
      return configError(f_.path() + ": key '" + k + "' is " + std::to_string(*v) + ", outside [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = *v;
    return Status();
  }
  Status integer(std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                 int* out) const {
    int64_t x = 0;
    if (Status s = integer(name, def, lo, hi, &x); !s.ok()) return s;
    *out = static_cast<int>(x);
    return Status();
  }
  // A finite real in (lo, hi].
  Status real(std::string_view name, std::optional<double> def, double lo, double hi,
              double* out) const {
    const std::string k = full(name);
    if (!f_.has(k) && def) {
      *out = *def;
      return Status();
    }
    auto v = f_.getF64(k);
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v <= lo || *v > hi) {
      return configError(f_.path() + ": key '" + k + "' is " + std::to_string(*v) + ", outside (" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = *v;
    return Status();
  }

 private:
  const GgufFile& f_;
  std::string_view arch_;
};

// Layer types: the extension bool array when present, else llama.cpp's pattern of 6; no
// sliding layers at all without attention.sliding_window (or with 0).
Status readLayerTypes(const GgufFile& f, const MetaReader& k, GemmaConfig* c) {
  c->is_sliding.assign(static_cast<size_t>(c->n_layer), false);
  int64_t window = 0;
  if (Status s = k.integer("attention.sliding_window", int64_t{0}, 0, 1 << 30, &window); !s.ok()) {
    return s;
  }
  if (window == 0) {
    c->sliding_window = static_cast<int>(std::min<int64_t>(c->max_positions, 1 << 30));
    return Status();
  }
  c->sliding_window = static_cast<int>(window);
  if (const Value* p = k.find("attention.sliding_window_pattern")) {
    const std::string name = k.full("attention.sliding_window_pattern");
    if (!p->isArray() || p->elem != ValueType::kBool ||
        p->size() != static_cast<size_t>(c->n_layer)) {
      return configError(f.path() + ": key '" + name + "' must be an array of " +
                         std::to_string(c->n_layer) + " bools (block_count)");
    }
    for (int l = 0; l < c->n_layer; ++l) c->is_sliding[size_t(l)] = p->uints[size_t(l)] != 0;
    return Status();
  }
  for (int l = 0; l < c->n_layer; ++l) c->is_sliding[size_t(l)] = llamaSliding(l);
  return Status();
}

Status readRope(const GgufFile& f, const MetaReader& k, GemmaConfig* c) {
  c->rope_full = RopeParams{1e6, 1.0, RopeType::kDefault, 1.0};
  if (Status s = k.real("rope.freq_base", 10000.0, 0, 1e30, &c->rope_full.base); !s.ok()) return s;
  std::string type = "none";
  if (k.has("rope.scaling.type")) {
    auto t = f.getString(k.full("rope.scaling.type"));
    if (!t.ok()) return t.status();
    type = *t;
  }
  double factor = 1.0;
  if (type == "linear") {
    if (Status s = k.real("rope.scaling.factor", std::nullopt, 0, 1e6, &factor); !s.ok()) return s;
  } else if (type == "none") {
    // Older converters wrote a linear scale as rope.scale_linear.
    if (Status s = k.real("rope.scale_linear", 1.0, 0, 1e6, &factor); !s.ok()) return s;
  } else {
    return configError(f.path() + ": key '" + k.full("rope.scaling.type") + "' is '" + type +
                       "'; only 'none' and 'linear' RoPE scaling are implemented for Gemma 3");
  }
  if (factor != 1.0) {
    c->rope_full.type = RopeType::kLinear;
    c->rope_full.factor = factor;
  }
  c->rope_sliding = RopeParams{kLlamaSwaRopeBase, 1.0, RopeType::kDefault, 1.0};
  return k.real("rope.freq_base_swa", kLlamaSwaRopeBase, 0, 1e30, &c->rope_sliding.base);
}

// bos / eos / pad from tokenizer.ggml.*; <eos>, the end-of-turn token and (Gemma 4)
// <|tool_response> join the eos set (by id when eot_token_id is given, and by their text in the
// vocabulary), as in HF's generation_config and llama.cpp's end-of-generation set.
Status readSpecialIds(const GgufFile& f, GemmaConfig* c) {
  auto id = [&](const char* name, int64_t def, int64_t* out) -> Status {
    if (!f.has(name)) {
      *out = def;
      return Status();
    }
    auto v = f.getI64(name);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v >= c->vocab) {
      return configError(f.path() + ": key '" + name + "' is " + std::to_string(*v) +
                         ", not a token id below the vocabulary size " + std::to_string(c->vocab));
    }
    *out = *v;
    return Status();
  };
  int64_t bos = 2, eos = 1, pad = 0, eot = -1;
  Status s;
  if (!(s = id("tokenizer.ggml.bos_token_id", 2, &bos)).ok()) return s;
  if (!(s = id("tokenizer.ggml.eos_token_id", 1, &eos)).ok()) return s;
  if (!(s = id("tokenizer.ggml.padding_token_id", 0, &pad)).ok()) return s;
  if (!(s = id("tokenizer.ggml.eot_token_id", -1, &eot)).ok()) return s;
  c->bos_id = static_cast<int32_t>(bos);
  c->pad_id = static_cast<int32_t>(pad);
  c->eos_ids = {static_cast<int32_t>(eos)};
  auto add = [&](int64_t t) {
    for (int32_t have : c->eos_ids) {
      if (have == t) return;
    }
    c->eos_ids.push_back(static_cast<int32_t>(t));
  };
  if (eot >= 0) add(eot);
  if (const Value* tokens = f.find("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->isArray() && tokens->elem == ValueType::kString) {
    for (size_t t = 0; t < tokens->strs.size() && static_cast<int64_t>(t) < c->vocab; ++t) {
      // <eos> and Gemma 3's and Gemma 4's end of turn, which llama.cpp adds to its
      // end-of-generation set by their text too (a converted file keeps one eos id).
      const std::string& piece = tokens->strs[t];
      if (piece == "<eos>" || piece == "<end_of_turn>" || piece == "<turn|>" ||
          (c->isGemma4() && piece == "<|tool_response>")) {  // Gemma 4 stops for a tool's answer
        add(static_cast<int64_t>(t));
      }
    }
  }
  return Status();
}

// A per-layer key: an array of block_count integers, or one value for every layer.
Status perLayerInts(const GgufFile& f, const MetaReader& k, std::string_view name, int n_layer,
                    std::optional<int64_t> def, int64_t lo, int64_t hi, std::vector<int64_t>* out) {
  const Value* v = k.find(name);
  if (v == nullptr || !v->isArray()) {
    int64_t x = 0;
    if (Status s = k.integer(name, def, lo, hi, &x); !s.ok()) return s;
    out->assign(static_cast<size_t>(n_layer), x);
    return Status();
  }
  const std::string full = k.full(name);
  if (v->size() != static_cast<size_t>(n_layer)) {
    return configError(f.path() + ": key '" + full + "' has " + std::to_string(v->size()) +
                       " entries for " + std::to_string(n_layer) + " layers (block_count)");
  }
  out->clear();
  for (size_t l = 0; l < v->size(); ++l) {
    int64_t x = 0;
    if (!v->ints.empty()) {
      x = v->ints[l];
    } else if (!v->uints.empty()) {
      x = v->uints[l] > static_cast<uint64_t>(hi) ? hi + 1 : static_cast<int64_t>(v->uints[l]);
    } else {
      return configError(f.path() + ": key '" + full + "' must be an array of integers");
    }
    if (x < lo || x > hi) {
      return configError(f.path() + ": key '" + full + "' has " + std::to_string(x) +
                         " at layer " + std::to_string(l) + ", outside [" + std::to_string(lo) +
                         ", " + std::to_string(hi) + "]");
    }
    out->push_back(x);
  }
  return Status();
}

// The fraction of the full layers' head dim that rotates, from rope_freqs.weight: the
// converter's 1.0 for each rotated pair, then kRopeFreqOff (a frequency divided by 1e30 is 0).
api::StatusOr<double> partialRotaryFactor(const GgufFile& f, int global_head_dim) {
  const TensorInfo* t = f.findTensor(kRopeFreqsTensor);
  if (t == nullptr) return 1.0;  // every pair rotates
  const std::string where = f.path() + ": tensor '" + std::string(kRopeFreqsTensor) + "'";
  if (t->type != 0 || t->shape.size() != 1 || t->shape[0] != global_head_dim / 2) {
    return configError(where + " must be F32 [" + std::to_string(global_head_dim / 2) +
                       "] (attention.key_length / 2)");
  }
  const float* v = static_cast<const float*>(t->data);
  int64_t rotated = 0;
  while (rotated < t->shape[0] && v[rotated] == 1.0f) ++rotated;
  for (int64_t j = rotated; j < t->shape[0]; ++j) {
    if (!(v[j] >= 1e29f)) {
      return configError(where + ": only 1.0 (rotated) then 1e30 (not rotated) is supported; "
                         "entry " + std::to_string(j) + " is " + std::to_string(v[j]));
    }
  }
  // The factor whose rotatedPairs() gives back exactly `rotated` (int(p * D / 2) truncates).
  RopeParams p{1.0, 1.0, RopeType::kProportional, 2.0 * static_cast<double>(rotated) / global_head_dim};
  while (p.rotatedPairs(global_head_dim) < rotated) {
    p.partial_rotary_factor = std::nextafter(p.partial_rotary_factor, 2.0);
  }
  return p.partial_rotary_factor;
}

// The config.json keys of a Gemma 4 GGUF besides the layer geometry: vocabularies from the
// embedding tables' rows, RoPE, softcap, the expert block.
Status gemma4Rest(const GgufFile& f, const MetaReader& k, int64_t P, api::Json* j) {
  int64_t ctx = 0, n_expert = 0, top_k = 0, moe_width = 0, Dg = 0;
  double eps = 0, base = 0, base_swa = 0, cap = 0;
  Status s;
  if (!(s = k.integer("context_length", std::nullopt, 1, int64_t{1} << 30, &ctx)).ok() ||
      !(s = k.integer("attention.key_length", std::nullopt, 2, 4096, &Dg)).ok() ||
      !(s = k.real("attention.layer_norm_rms_epsilon", std::nullopt, 0, 1, &eps)).ok() ||
      !(s = k.real("rope.freq_base", 10000.0, 0, 1e30, &base)).ok() ||
      !(s = k.real("rope.freq_base_swa", 10000.0, 0, 1e30, &base_swa)).ok() ||
      !(s = k.integer("expert_count", int64_t{0}, 0, 1 << 16, &n_expert)).ok()) {
    return s;
  }
  if (k.has("final_logit_softcapping")) {  // 0 = none; the converter writes it only when set
    auto v = f.getF64(k.full("final_logit_softcapping"));
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v < 0 || *v > 1e6) {
      return configError(f.path() + ": key '" + k.full("final_logit_softcapping") + "' is " +
                         std::to_string(*v) + ", outside [0, 1e6]");
    }
    cap = *v;
  }
  const TensorInfo* embd = f.findTensor("token_embd.weight");
  if (embd == nullptr || embd->shape.size() != 2 || embd->shape[0] < 1) {
    return configError(f.path() + ": missing or malformed tensor 'token_embd.weight'");
  }
  (*j)["vocab_size"] = embd->shape[0];
  (*j)["hidden_size_per_layer_input"] = P;
  if (P > 0) {
    const TensorInfo* ple = f.findTensor("per_layer_token_embd.weight");
    if (ple == nullptr || ple->shape.size() != 2) {
      return configError(f.path() + ": missing or malformed tensor 'per_layer_token_embd.weight' "
                         "(embedding_length_per_layer_input is " + std::to_string(P) + ")");
    }
    (*j)["vocab_size_per_layer_input"] = ple->shape[0];
  }
  auto partial = partialRotaryFactor(f, static_cast<int>(Dg));
  if (!partial.ok()) return partial.status();
  (*j)["max_position_embeddings"] = ctx;
  (*j)["rms_norm_eps"] = eps;
  (*j)["final_logit_softcapping"] = cap > 0 ? api::Json(cap) : api::Json(nullptr);
  (*j)["rope_parameters"] = {
      {"full_attention",
       {{"rope_type", "proportional"}, {"rope_theta", base}, {"partial_rotary_factor", *partial}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", base_swa}}}};
  (*j)["hidden_activation"] = "gelu_pytorch_tanh";
  (*j)["tie_word_embeddings"] = true;
  (*j)["enable_moe_block"] = n_expert > 0;
  if (n_expert > 0) {
    if (!(s = k.integer("expert_used_count", std::nullopt, 1, n_expert, &top_k)).ok() ||
        !(s = k.integer("expert_feed_forward_length", std::nullopt, 1, 1 << 20, &moe_width))
             .ok()) {
      return s;
    }
    (*j)["num_experts"] = n_expert;
    (*j)["top_k_experts"] = top_k;
    (*j)["moe_intermediate_size"] = moe_width;
  }
  return Status();
}

// attention.head_count_kv per layer as the file gives it against what the config resolved, for
// the layers that keep their own K/V (a KV-shared layer's entry is not used).
Status checkKvHeads(const GgufFile& f, const GemmaConfig& c, const std::vector<int64_t>& kv) {
  for (int l = 0; l < c.n_layer; ++l) {
    if (c.storesKv(l) && c.layer(l).n_head_kv != kv[size_t(l)]) {
      return configError(f.path() + ": key 'gemma4.attention.head_count_kv' gives layer " +
                         std::to_string(l) + " " + std::to_string(kv[size_t(l)]) +
                         " KV heads; Gemma 4 has one count for sliding layers and one for full "
                         "K=V layers (expected " + std::to_string(c.layer(l).n_head_kv) + ")");
    }
  }
  return Status();
}

// feed_forward_length per layer as the file gives it against what the config resolved.
Status checkFfnWidths(const GgufFile& f, const GemmaConfig& c, const std::vector<int64_t>& ffn) {
  for (int l = 0; l < c.n_layer; ++l) {
    if (c.layer(l).intermediate != ffn[size_t(l)]) {
      return configError(f.path() + ": key 'gemma4.feed_forward_length' gives layer " +
                         std::to_string(l) + " width " + std::to_string(ffn[size_t(l)]) +
                         "; Gemma 4 has one width, doubled on KV-shared layers only with "
                         "use_double_wide_mlp (expected " +
                         std::to_string(c.layer(l).intermediate) + ")");
    }
  }
  return Status();
}

// Gemma 4 (gguf_gemma.h): the keys become the config.json a Gemma4ForCausalLM checkpoint would
// have, so parseGemmaConfig resolves the layers (KV sharing, K=V, double-wide MLP) exactly as it
// does for safetensors.
api::StatusOr<GemmaConfig> gemma4ConfigFromGguf(const GgufFile& f) {
  MetaReader k(f, kArchGemma4);
  api::Json j = api::Json::object();
  Status s;
  int64_t L = 0, H = 0, heads = 0, D = 0, Dg = 0, P = 0, shared = 0;
  auto need = [&](std::string_view name, std::optional<int64_t> def, int64_t lo, int64_t hi,
                  int64_t* out) {
    if (s.ok()) s = k.integer(name, def, lo, hi, out);
  };
  need("block_count", std::nullopt, 1, 1024, &L);
  need("embedding_length", std::nullopt, 1, 1 << 16, &H);
  need("attention.head_count", std::nullopt, 1, 1024, &heads);
  need("attention.key_length", std::nullopt, 2, 4096, &Dg);
  need("attention.key_length_swa", std::nullopt, 2, 4096, &D);
  need("embedding_length_per_layer_input", int64_t{0}, 0, 1 << 16, &P);
  need("attention.shared_kv_layers", int64_t{0}, 0, L, &shared);
  int64_t value_length = 0, value_length_swa = 0, rot = 0, rot_swa = 0;
  need("attention.value_length", Dg, 2, 4096, &value_length);
  need("attention.value_length_swa", D, 2, 4096, &value_length_swa);
  need("rope.dimension_count", Dg, 2, 4096, &rot);
  need("rope.dimension_count_swa", D, 2, 4096, &rot_swa);
  if (!s.ok()) return s;
  if (value_length != Dg || value_length_swa != D || rot != Dg || rot_swa != D) {
    return configError(f.path() + ": value_length(_swa) and rope.dimension_count(_swa) must equal "
                       "attention.key_length(_swa) (Gemma 4 rotates whole heads, partial RoPE "
                       "comes from rope_freqs)");
  }
  GemmaConfig probe;
  probe.n_layer = static_cast<int>(L);
  probe.max_positions = 1 << 30;
  int64_t window = 0;
  if (!k.has("attention.sliding_window_pattern")) {
    return configError(f.path() + ": Gemma 4 needs key '" +
                       k.full("attention.sliding_window_pattern") + "'");
  }
  if (!(s = k.integer("attention.sliding_window", std::nullopt, 1, 1 << 30, &window)).ok()) {
    return s;
  }
  if (!(s = readLayerTypes(f, k, &probe)).ok()) return s;
  std::vector<int64_t> ffn, kv;
  if (!(s = perLayerInts(f, k, "feed_forward_length", probe.n_layer, std::nullopt, 1, 1 << 20,
                         &ffn)).ok() ||
      !(s = perLayerInts(f, k, "attention.head_count_kv", probe.n_layer, heads, 1, heads, &kv))
           .ok()) {
    return s;
  }
  api::Json types = api::Json::array();
  int first_sliding = -1, first_full = -1;
  for (int l = 0; l < L; ++l) {
    types.push_back(probe.isSliding(l) ? "sliding_attention" : "full_attention");
    int& first = probe.isSliding(l) ? first_sliding : first_full;
    if (first < 0) first = l;
  }
  const int first_shared = static_cast<int>(L - shared);
  j["model_type"] = "gemma4_text";
  j["architectures"] = {"Gemma4ForCausalLM"};
  j["num_hidden_layers"] = L;
  j["hidden_size"] = H;
  j["num_attention_heads"] = heads;
  j["head_dim"] = D;
  j["global_head_dim"] = Dg;
  j["layer_types"] = types;
  j["sliding_window"] = probe.sliding_window;
  j["num_kv_shared_layers"] = shared;
  j["intermediate_size"] = ffn[0];
  // E2B's double-wide MLP: the KV-shared layers are twice as wide (parseGemmaConfig checks the
  // widths against the tensors' shapes).
  j["use_double_wide_mlp"] = shared > 0 && ffn.back() == 2 * ffn[0];
  j["num_key_value_heads"] = kv[size_t(first_sliding >= 0 ? first_sliding : 0)];
  j["num_global_key_value_heads"] = nullptr;
  if (first_full >= 0 && first_sliding >= 0 && kv[size_t(first_full)] != kv[size_t(first_sliding)]) {
    j["num_global_key_value_heads"] = kv[size_t(first_full)];
  }
  // K=V: a full layer with its own K/V and no attn_v (llama.cpp decides it the same way).
  bool k_eq_v = false;
  for (int l = 0; l < first_shared; ++l) {
    if (!probe.isSliding(l) &&
        f.findTensor("blk." + std::to_string(l) + ".attn_v.weight") == nullptr) {
      k_eq_v = true;
    }
  }
  j["attention_k_eq_v"] = k_eq_v;
  if (!(s = gemma4Rest(f, k, P, &j)).ok()) return s;
  auto c = parseGemmaConfig(j.dump(), f.path() + " (its gemma4.* keys)");
  if (!c.ok()) return c.status();
  if (!(s = checkFfnWidths(f, *c, ffn)).ok() || !(s = checkKvHeads(f, *c, kv)).ok()) return s;
  if (!(s = readSpecialIds(f, &*c)).ok()) return s;
  return c;
}

}  // namespace

api::StatusOr<GemmaConfig> gemmaConfigFromGguf(const GgufFile& f) {
  auto arch = f.getString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch == kArchGemma4) return gemma4ConfigFromGguf(f);
  if (*arch != kArchGemma3) {
    return configError(f.path() + ": key 'general.architecture' is '" + *arch +
                       "'; only gemma3 GGUF files are supported");
  }
  GemmaConfig c;
  c.family = ModelFamily::kGemma3;
  c.model_type = "gemma3_text";
  c.architecture = "Gemma3ForCausalLM";
  MetaReader k(f, *arch);
  Status s;
  if (!(s = k.integer("embedding_length", std::nullopt, 1, 1 << 16, &c.hidden)).ok()) return s;
  if (!(s = k.integer("feed_forward_length", std::nullopt, 1, 1 << 20, &c.intermediate)).ok()) {
    return s;
  }
  if (!(s = k.integer("block_count", std::nullopt, 1, 1024, &c.n_layer)).ok()) return s;
  if (!(s = k.integer("attention.head_count", std::nullopt, 1, 1024, &c.n_head)).ok()) return s;
  if (!(s = k.integer("attention.head_count_kv", c.n_head, 1, c.n_head, &c.n_head_kv)).ok()) {
    return s;
  }
  if (c.n_head % c.n_head_kv != 0) {
    return configError(f.path() + ": key '" + k.full("attention.head_count_kv") + "' (" +
                       std::to_string(c.n_head_kv) + ") must divide attention.head_count (" +
                       std::to_string(c.n_head) + ")");
  }
  if (!(s = k.integer("attention.key_length", c.hidden / c.n_head, 2, 4096, &c.head_dim)).ok()) {
    return s;
  }
  if (c.head_dim % 2 != 0) {
    return configError(f.path() + ": key '" + k.full("attention.key_length") +
                       "' must be even for RoPE");
  }
  int value_length = 0;
  if (!(s = k.integer("attention.value_length", c.head_dim, 1, 4096, &value_length)).ok()) {
    return s;
  }
  if (value_length != c.head_dim) {
    return configError(f.path() + ": key '" + k.full("attention.value_length") + "' (" +
                       std::to_string(value_length) + ") differs from attention.key_length (" +
                       std::to_string(c.head_dim) + "); Gemma 3 has one head dim");
  }
  if (!(s = k.integer("context_length", std::nullopt, 1, int64_t{1} << 30, &c.max_positions))
           .ok()) {
    return s;
  }
  double eps = 0;
  if (!(s = k.real("attention.layer_norm_rms_epsilon", std::nullopt, 0, 1, &eps)).ok()) return s;
  c.rms_norm_eps = static_cast<float>(eps);
  if (const Value* cap = k.find("final_logit_softcapping");
      cap != nullptr && !(cap->type == ValueType::kF32 && cap->f == 0)) {
    return configError(f.path() + ": key '" + k.full("final_logit_softcapping") +
                       "' is set, but Gemma 3 has no softcapping and it is not implemented");
  }
  if (!(s = readLayerTypes(f, k, &c)).ok()) return s;
  if (!(s = readRope(f, k, &c)).ok()) return s;

  if (k.has("attention.scale")) {
    double scale = 0;
    if (!(s = k.real("attention.scale", std::nullopt, 0, 1e6, &scale)).ok()) return s;
    c.attn_scale = static_cast<float>(scale);
    c.query_pre_attn_scalar = 1.0 / (scale * scale);
  } else {
    c.query_pre_attn_scalar = llamaQueryPreAttnScalar(c.n_layer, c.hidden, c.n_head, c.head_dim);
    if (c.query_pre_attn_scalar <= 0) {
      return configError(f.path() + ": key '" + k.full("embedding_length") +
                         "' is smaller than attention.head_count: no attention scale");
    }
    c.attn_scale = static_cast<float>(std::pow(c.query_pre_attn_scalar, -0.5));
  }
  c.embed_scale = roundBf16(static_cast<float>(std::sqrt(static_cast<double>(c.hidden))));

  // The vocabulary is token_embd's row count (the converter trims HF's padding rows).
  const TensorInfo* embd = f.findTensor("token_embd.weight");
  if (embd == nullptr) return configError(f.path() + ": missing tensor 'token_embd.weight'");
  if (embd->shape.size() != 2 || embd->shape[1] != c.hidden || embd->shape[0] < 1) {
    return configError(f.path() + ": tensor 'token_embd.weight' must be [vocab, " +
                       std::to_string(c.hidden) + "] (embedding_length)");
  }
  c.vocab = embd->shape[0];
  if (!(s = readSpecialIds(f, &c)).ok()) return s;

  c.layers.assign(static_cast<size_t>(c.n_layer), LayerGeometry{});
  for (int l = 0; l < c.n_layer; ++l) {
    LayerGeometry& g = c.layers[static_cast<size_t>(l)];
    g.sliding = c.isSliding(l);
    g.head_dim = c.head_dim;
    g.n_head_kv = c.n_head_kv;
    g.window = g.sliding ? c.sliding_window : 0;
    g.kv_source = l;
    g.intermediate = c.intermediate;
  }
  return c;
}

std::vector<KeyValue> tokenizerMetadata(const GgufTokenizerData& t) {
  namespace k = gguf_tokenizer_keys;
  std::vector<KeyValue> kvs;
  if (!t.model.empty()) kvs.emplace_back(k::kModel, Value::string(t.model));
  if (!t.pre.empty()) kvs.emplace_back(k::kPre, Value::string(t.pre));
  kvs.emplace_back(k::kTokens, Value::stringArray(t.tokens));
  if (!t.scores.empty()) {
    kvs.emplace_back(k::kScores,
                     Value::realArray(ValueType::kF32, {t.scores.begin(), t.scores.end()}));
  }
  kvs.emplace_back(k::kTokenType,
                   Value::intArray(ValueType::kI32, {t.token_type.begin(), t.token_type.end()}));
  if (!t.merges.empty()) kvs.emplace_back(k::kMerges, Value::stringArray(t.merges));
  if (t.add_space_prefix) kvs.emplace_back(k::kAddSpacePrefix, Value::boolean(*t.add_space_prefix));
  const std::pair<const char*, int32_t> ids[] = {{k::kBosId, t.bos_id},
                                                 {k::kEosId, t.eos_id},
                                                 {k::kUnknownId, t.unknown_id},
                                                 {k::kPaddingId, t.padding_id}};
  for (const auto& [key, id] : ids) {
    if (id >= 0) kvs.emplace_back(key, Value::u32(static_cast<uint32_t>(id)));
  }
  if (t.add_bos) kvs.emplace_back(k::kAddBos, Value::boolean(*t.add_bos));
  if (t.add_eos) kvs.emplace_back(k::kAddEos, Value::boolean(*t.add_eos));
  if (!t.chat_template.empty()) kvs.emplace_back(k::kChatTemplate, Value::string(t.chat_template));
  return kvs;
}

api::StatusOr<GgufTokenizerData> tokenizerDataFromGguf(const GgufFile& f) {
  namespace k = gguf_tokenizer_keys;
  GgufTokenizerData d;
  Status s;
  auto str = [&](const char* key, std::string* out) {
    if (!s.ok() || !f.has(key)) return;
    auto v = f.getString(key);
    if (v.ok())
      *out = std::move(v).value();
    else
      s = v.status();
  };
  auto strs = [&](const char* key, std::vector<std::string>* out) {
    if (!s.ok() || !f.has(key)) return;
    auto v = f.getArray(key);
    if (!v.ok())
      s = v.status();
    else if ((*v)->elem != ValueType::kString)
      s = configError(f.path() + ": key '" + key + "' must be an array of strings");
    else
      *out = (*v)->strs;
  };
  auto id = [&](const char* key, int32_t* out) {
    if (!s.ok() || !f.has(key)) return;
    auto v = f.getU32(key);
    if (!v.ok())
      s = v.status();
    else if (*v > static_cast<uint32_t>(INT32_MAX))
      s = configError(f.path() + ": key '" + key + "' is out of range");
    else
      *out = static_cast<int32_t>(*v);
  };
  auto flag = [&](const char* key, std::optional<bool>* out) {
    if (!s.ok() || !f.has(key)) return;
    auto v = f.getBool(key);
    if (v.ok())
      *out = *v;
    else
      s = v.status();
  };
  str(k::kModel, &d.model);
  str(k::kPre, &d.pre);
  str(k::kChatTemplate, &d.chat_template);
  strs(k::kTokens, &d.tokens);
  strs(k::kMerges, &d.merges);
  if (s.ok() && f.has(k::kScores)) {
    auto v = f.getArray(k::kScores);
    if (!v.ok()) return v.status();
    if ((*v)->elem != ValueType::kF32 && (*v)->elem != ValueType::kF64) {
      return configError(f.path() + ": key '" + k::kScores + "' must be an array of f32");
    }
    d.scores.assign((*v)->reals.begin(), (*v)->reals.end());
  }
  if (s.ok() && f.has(k::kTokenType)) {
    auto v = f.getArray(k::kTokenType);
    if (!v.ok()) return v.status();
    if ((*v)->elem != ValueType::kI32) {
      return configError(f.path() + ": key '" + k::kTokenType + "' must be an array of i32");
    }
    d.token_type.assign((*v)->ints.begin(), (*v)->ints.end());
  }
  id(k::kBosId, &d.bos_id);
  id(k::kEosId, &d.eos_id);
  id(k::kUnknownId, &d.unknown_id);
  id(k::kPaddingId, &d.padding_id);
  flag(k::kAddBos, &d.add_bos);
  flag(k::kAddEos, &d.add_eos);
  flag(k::kAddSpacePrefix, &d.add_space_prefix);
  if (!s.ok()) return s;
  return d;
}

api::StatusOr<std::unique_ptr<Tokenizer>> loadGgufTokenizer(const std::string& path) {
  auto f = GgufFile::open(path);
  if (!f.ok()) return f.status();
  if (!(*f)->has(gguf_tokenizer_keys::kTokens)) return Tokenizer::loadDir(sidecarDir(path));
  auto data = tokenizerDataFromGguf(**f);
  if (!data.ok()) return data.status();
  auto tok = importGgufTokenizer(*data, path);
  if (!tok.ok()) return tok.status();
  return std::move(tok->tokenizer);
}

api::StatusOr<std::shared_ptr<const ChatTemplate>> loadGgufChatTemplate(const std::string& path) {
  auto f = GgufFile::open(path);
  if (!f.ok()) return f.status();
  const GgufFile& file = **f;
  if (!file.has(gguf_tokenizer_keys::kChatTemplate)) return ChatTemplate::loadDir(sidecarDir(path));
  auto source = file.getString(gguf_tokenizer_keys::kChatTemplate);
  if (!source.ok()) return source.status();
  // The variables tokenizer_config.json would give: the pieces of the file's special ids.
  api::Json config = api::Json::object();
  if (file.has(gguf_tokenizer_keys::kTokens)) {
    auto tokens = file.getArray(gguf_tokenizer_keys::kTokens);
    if (!tokens.ok()) return tokens.status();
    if ((*tokens)->elem != ValueType::kString) {
      return configError(path + ": key '" + gguf_tokenizer_keys::kTokens +
                         "' must be an array of strings");
    }
    const std::vector<std::string>& pieces = (*tokens)->strs;
    const std::pair<const char*, const char*> specials[] = {
        {gguf_tokenizer_keys::kBosId, "bos_token"},
        {gguf_tokenizer_keys::kEosId, "eos_token"},
        {gguf_tokenizer_keys::kUnknownId, "unk_token"},
        {gguf_tokenizer_keys::kPaddingId, "pad_token"}};
    for (const auto& [key, name] : specials) {
      if (!file.has(key)) continue;
      auto id = file.getU32(key);
      if (!id.ok()) return id.status();
      if (*id >= pieces.size()) {
        return configError(path + ": key '" + key + "' names no token (id " +
                           std::to_string(*id) + ")");
      }
      config[name] = pieces[*id];
    }
  }
  auto created = ChatTemplate::create(*source, config);
  if (!created.ok()) {
    return configError(path + ": " + gguf_tokenizer_keys::kChatTemplate +
                       " does not parse: " + created.status().message());
  }
  return created;
}

api::StatusOr<std::shared_ptr<const ChatTemplate>> loadModelChatTemplate(
    const std::string& model_dir) {
  if (isGgufPath(model_dir)) return loadGgufChatTemplate(model_dir);
  return ChatTemplate::loadDir(model_dir);
}

api::StatusOr<GemmaConfig> loadGgufGemmaConfig(const std::string& path) {
  auto f = GgufFile::open(path);
  if (!f.ok()) return f.status();
  return gemmaConfigFromGguf(**f);
}

}  // namespace engine::gguf
