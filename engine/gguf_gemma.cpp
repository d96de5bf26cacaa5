#include "engine/gguf_gemma.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "engine/bf16.h"
#include "engine/gguf_gemma_internal.h"

namespace engine::gguf {
namespace internal {

api::Status configError(std::string message) {
  return api::Status(api::ErrorCode::kConfig, std::move(message));
}

std::string key(std::string_view arch, std::string_view name) {
  return std::string(arch) + "." + std::string(name);
}

}  // namespace internal

namespace {

using api::ErrorCode;
using api::Status;
using namespace internal;

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

namespace internal {

std::vector<KeyValue> headMetadata(std::string_view arch, const GemmaConfig& c) {
  std::vector<KeyValue> m;
  m.emplace_back("general.architecture", Value::string(std::string(arch)));
  m.emplace_back("general.quantization_version", Value::u32(2));
  m.emplace_back(key(arch, "context_length"), Value::u32(static_cast<uint32_t>(c.max_positions)));
  m.emplace_back(key(arch, "embedding_length"), Value::u32(static_cast<uint32_t>(c.hidden)));
  m.emplace_back(key(arch, "block_count"), Value::u32(static_cast<uint32_t>(c.n_layer)));
  return m;
}

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

}  // namespace internal

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
  std::vector<KeyValue> m = headMetadata(a, c);
  auto u32 = [&](std::string_view name, int64_t v) {
    m.emplace_back(key(a, name), Value::u32(static_cast<uint32_t>(v)));
  };
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

namespace internal {

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


}  // namespace internal

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
