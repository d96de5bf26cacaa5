#include "engine/model_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "engine/bf16.h"

namespace engine {
namespace {

using api::ErrorCode;
using api::Status;
using nlohmann::json;

Status configError(std::string message) { return Status(ErrorCode::kConfig, std::move(message)); }

// Reads typed keys of one JSON object and words errors as "<file>: key '<prefix><key>' ...".
// A key that is absent or null takes the default.
class Keys {
 public:
  Keys(const json& obj, std::string_view file, std::string prefix)
      : obj_(obj), file_(file), prefix_(std::move(prefix)) {}

  const json* get(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return get(key) != nullptr; }

  std::string where(const char* key) const {
    return std::string(file_) + ": key '" + prefix_ + key + "'";
  }

  Status integer(const char* key, int64_t def, int64_t lo, int64_t hi, int64_t* out) const {
    const json* v = get(key);
    if (v == nullptr) {
      *out = def;
      return Status();
    }
    if (!v->is_number_integer()) return configError(where(key) + " must be an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return configError(where(key) + " is out of range");
    }
    int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) {
      return configError(where(key) + " is " + std::to_string(x) + ", outside [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = x;
    return Status();
  }

  Status integer(const char* key, int def, int lo, int hi, int* out) const {
    int64_t x = 0;
    if (Status s = integer(key, int64_t{def}, int64_t{lo}, int64_t{hi}, &x); !s.ok()) return s;
    *out = static_cast<int>(x);
    return Status();
  }

  // A finite number in (lo, hi] when lo_exclusive, else [lo, hi].
  Status number(const char* key, double def, double lo, double hi, bool lo_exclusive,
                double* out) const {
    const json* v = get(key);
    if (v == nullptr) {
      *out = def;
      return Status();
    }
    if (!v->is_number()) return configError(where(key) + " must be a number");
    double x = v->get<double>();
    if (!std::isfinite(x) || x > hi || (lo_exclusive ? x <= lo : x < lo)) {
      std::ostringstream msg;
      msg << where(key) << " is " << x << ", outside " << (lo_exclusive ? "(" : "[") << lo << ", "
          << hi << "]";
      return configError(msg.str());
    }
    *out = x;
    return Status();
  }

  Status string(const char* key, const char* def, std::string* out) const {
    const json* v = get(key);
    if (v == nullptr) {
      *out = def;
      return Status();
    }
    if (!v->is_string()) return configError(where(key) + " must be a string");
    *out = v->get<std::string>();
    return Status();
  }

  // Token ids: an integer or a list of integers, each in [0, limit). Appends new ones to `ids`.
  Status tokenIds(const char* key, int64_t limit, std::vector<int32_t>* ids) const {
    const json* v = get(key);
    if (v == nullptr) return Status();
    std::vector<const json*> items;
    if (v->is_array()) {
      for (const json& e : *v) items.push_back(&e);
    } else {
      items.push_back(v);
    }
    for (const json* e : items) {
      if (!e->is_number_integer() || e->get<int64_t>() < 0 || e->get<int64_t>() >= limit) {
        return configError(where(key) + " must be a token id or a list of token ids in [0, " +
                           std::to_string(limit) + ")");
      }
      int32_t id = static_cast<int32_t>(e->get<int64_t>());
      bool seen = false;
      for (int32_t have : *ids) seen = seen || have == id;
      if (!seen) ids->push_back(id);
    }
    return Status();
  }

 private:
  const json& obj_;
  std::string_view file_;
  std::string prefix_;
};

// One RoPE dict, in either spelling: {"rope_type"|"type": "default"|"linear"|"proportional",
// "factor": f, "rope_theta": base, "partial_rotary_factor": p}. Gemma 3 uses default and linear
// (§1.4, §2.3); Gemma 4 adds proportional with a partial rotary factor (§3.4).
Status parseRope(const json& obj, std::string_view file, const std::string& prefix,
                 ModelFamily family, RopeParams* out) {
  if (!obj.is_object()) {
    return configError(std::string(file) + ": key '" + prefix.substr(0, prefix.size() - 1) +
                       "' must be an object or null");
  }
  Keys k(obj, file, prefix);
  const char* type_key = k.has("rope_type") ? "rope_type" : "type";
  std::string type;
  if (Status s = k.string(type_key, "default", &type); !s.ok()) return s;
  if (Status s = k.number("rope_theta", out->base, 0, 1e30, true, &out->base); !s.ok()) return s;
  double partial = 1;
  if (Status s = k.number("partial_rotary_factor", 1, 0, 1, true, &partial); !s.ok()) return s;
  out->factor = 1;
  out->partial_rotary_factor = 1;
  if (type == "proportional" && family == ModelFamily::kGemma4) {
    out->type = RopeType::kProportional;
    out->partial_rotary_factor = partial;
    if (Status s = k.number("factor", 1, 0, 1e6, true, &out->factor); !s.ok()) return s;
    return Status();
  }
  if (partial != 1) {
    return configError(k.where("partial_rotary_factor") +
                       " is not 1: a partial rotary factor needs Gemma 4's 'proportional' RoPE");
  }
  if (type == "default") {
    out->type = RopeType::kDefault;
  } else if (type == "linear") {
    out->type = RopeType::kLinear;
    if (!k.has("factor")) return configError(k.where("factor") + " is required for linear RoPE");
    if (Status s = k.number("factor", 1, 0, 1e6, true, &out->factor); !s.ok()) return s;
  } else {
    return configError(k.where(type_key) + " is '" + type + "'; only 'default' and 'linear' " +
                       (family == ModelFamily::kGemma4 ? "and 'proportional' " : "") +
                       "RoPE are implemented");
  }
  return Status();
}

// Activation, softcapping and the flags a text-only engine must see false (§1.2, §2.10).
Status checkUnsupported(const Keys& k, const json& top, std::string_view file, GemmaConfig* c) {
  const bool g4 = c->isGemma4();
  std::string act;
  if (Status s = k.string("hidden_activation", "gelu_pytorch_tanh", &act); !s.ok()) return s;
  if (act != "gelu_pytorch_tanh") {
    return configError(k.where("hidden_activation") + " is '" + act +
                       "'; only gelu_pytorch_tanh is implemented (§2.4)");
  }
  if (k.has("hidden_act")) {  // an older spelling; "gelu" would mean the erf GELU
    if (Status s = k.string("hidden_act", "", &act); !s.ok()) return s;
    if (act != "gelu_pytorch_tanh") {
      return configError(k.where("hidden_act") + " is '" + act +
                         "'; only gelu_pytorch_tanh is implemented (§2.4)");
    }
  }
  if (k.has("attn_logit_softcapping")) {
    return configError(k.where("attn_logit_softcapping") +
                       " is set, but Gemma 3 and 4 have no attention softcapping and it is not "
                       "implemented (null is accepted; §2.10)");
  }
  if (!g4 && k.has("final_logit_softcapping")) {
    return configError(k.where("final_logit_softcapping") +
                       " is set, but Gemma 3 has no softcapping and it is not implemented "
                       "(null is accepted; §2.10)");
  }
  if (g4) {
    double cap = 0;
    if (Status s = k.number("final_logit_softcapping", 0, 0, 1e6, true, &cap); !s.ok()) return s;
    c->final_softcap = static_cast<float>(cap);
  }
  if (const json* v = k.get("use_bidirectional_attention")) {
    // Gemma 4's "vision" only changes image positions, which a text-only engine never has.
    // Gemma 3's true is EmbeddingGemma, an encoder (engine/models/embedding_gemma.h).
    const bool ok = v->is_boolean() ? (!g4 || !v->get<bool>()) : (g4 && *v == "vision");
    if (!ok) {
      return configError(k.where("use_bidirectional_attention") +
                         (g4 ? " must be null or \"vision\"" : " must be a boolean") +
                         ": bidirectional text attention is not implemented");
    }
    c->bidirectional = !g4 && v->get<bool>();
  }
  if (const json* v = k.get("attention_bias"); v != nullptr && (!v->is_boolean() || v->get<bool>())) {
    return configError(k.where("attention_bias") + " must be false: not implemented");
  }
  const json* tie = k.get("tie_word_embeddings");
  if (tie == nullptr) tie = Keys(top, file, "").get("tie_word_embeddings");
  if (tie != nullptr && (!tie->is_boolean() || !tie->get<bool>())) {
    return configError(k.where("tie_word_embeddings") +
                       " must be true: the lm_head is the embedding (§2.6)");
  }
  return Status();
}

Status readFlag(const Keys& k, const char* key, bool* out) {
  const json* v = k.get(key);
  if (v == nullptr) {
    *out = false;
    return Status();
  }
  if (!v->is_boolean()) return configError(k.where(key) + " must be true or false");
  *out = v->get<bool>();
  return Status();
}

// Layer types (§1.3): an explicit list wins; otherwise layer i is full iff (i+1) % p == 0.
// Gemma 4 forces the last layer to full attention, as HF does.
Status parseLayerTypes(const Keys& k, GemmaConfig* c) {
  Status s;
  c->is_sliding.assign(static_cast<size_t>(c->n_layer), true);
  if (const json* types = k.get("layer_types")) {
    if (!types->is_array() || types->size() != static_cast<size_t>(c->n_layer)) {
      return configError(k.where("layer_types") + " must be a list of " +
                         std::to_string(c->n_layer) + " layer types (num_hidden_layers)");
    }
    for (size_t i = 0; i < types->size(); ++i) {
      const json& t = (*types)[i];
      if (t == "sliding_attention") {
        c->is_sliding[i] = true;
      } else if (t == "full_attention") {
        c->is_sliding[i] = false;
      } else {
        return configError(k.where("layer_types") + "[" + std::to_string(i) +
                           "] must be \"sliding_attention\" or \"full_attention\"");
      }
    }
  } else {
    const char* key = k.has("sliding_window_pattern") || !k.has("_sliding_window_pattern")
                          ? "sliding_window_pattern"
                          : "_sliding_window_pattern";
    int pattern = 0;
    if (!(s = k.integer(key, 6, 1, 1 << 20, &pattern)).ok()) return s;
    for (int i = 0; i < c->n_layer; ++i) c->is_sliding[i] = (i + 1) % pattern != 0;
  }
  if (c->isGemma4()) c->is_sliding.back() = false;
  return Status();
}

// RoPE (§1.4): the family's defaults, then the old keys, then rope_parameters (transformers v5).
Status parseRopeKeys(const Keys& k, std::string_view file, const std::string& prefix,
                     GemmaConfig* c) {
  Status s;
  const ModelFamily fam = c->family;
  // Class defaults (§1.2): Gemma 3 full layers default RoPE with theta 1e6; Gemma 4 full layers
  // proportional RoPE, theta 1e6, partial 0.25.
  c->rope_full = c->isGemma4() ? RopeParams{1e6, 1.0, RopeType::kProportional, 0.25}
                               : RopeParams{1e6, 1.0, RopeType::kDefault, 1.0};
  if (!(s = k.number("rope_theta", c->rope_full.base, 0, 1e30, true, &c->rope_full.base)).ok()) {
    return s;
  }
  if (!(s = k.number("rope_local_base_freq", 1e4, 0, 1e30, true, &c->rope_sliding.base)).ok()) {
    return s;
  }
  if (const json* scaling = k.get("rope_scaling")) {
    if (!(s = parseRope(*scaling, file, prefix + "rope_scaling.", fam, &c->rope_full)).ok()) {
      return s;
    }
  }
  const json* params = k.get("rope_parameters");
  if (params == nullptr) return Status();
  if (!params->is_object()) return configError(k.where("rope_parameters") + " must be an object");
  if (params->contains("sliding_attention") || params->contains("full_attention")) {
    for (const char* type : {"sliding_attention", "full_attention"}) {
      auto it = params->find(type);
      if (it == params->end() || it->is_null()) continue;
      RopeParams* dst =
          std::strcmp(type, "sliding_attention") == 0 ? &c->rope_sliding : &c->rope_full;
      if (!(s = parseRope(*it, file, prefix + "rope_parameters." + type + ".", fam, dst)).ok()) {
        return s;
      }
    }
    return Status();
  }
  // One dict for the whole model: it is what rope_scaling + rope_theta became.
  return parseRope(*params, file, prefix + "rope_parameters.", fam, &c->rope_full);
}

// Gemma 4's per-layer geometry (§3.3-3.7): head dims and KV heads by type, K=V, KV sharing,
// double-wide MLP, the expert block and PLE.
Status parseGemma4Layers(const Keys& k, GemmaConfig* c) {
  Status s;
  if (!(s = k.integer("global_head_dim", 512, 2, 4096, &c->global_head_dim)).ok()) return s;
  if (c->global_head_dim % 2 != 0) {
    return configError(k.where("global_head_dim") + " must be even for RoPE");
  }
  if (!(s = readFlag(k, "attention_k_eq_v", &c->attention_k_eq_v)).ok()) return s;
  if (!(s = k.integer("num_global_key_value_heads", 0, 1, c->n_head, &c->n_head_kv_global)).ok()) {
    return s;
  }
  if (c->n_head_kv_global > 0 && c->n_head % c->n_head_kv_global != 0) {
    return configError(k.where("num_global_key_value_heads") + " (" +
                       std::to_string(c->n_head_kv_global) + ") must divide num_attention_heads (" +
                       std::to_string(c->n_head) + ")");
  }
  if (!(s = k.integer("num_kv_shared_layers", 0, 0, c->n_layer - 1, &c->n_kv_shared)).ok()) {
    return s;
  }
  if (!(s = readFlag(k, "use_double_wide_mlp", &c->double_wide_mlp)).ok()) return s;
  bool moe = false;
  if (!(s = readFlag(k, "enable_moe_block", &moe)).ok()) return s;
  if (moe) {
    for (const char* key : {"num_experts", "top_k_experts", "moe_intermediate_size"}) {
      if (!k.has(key)) return configError(k.where(key) + " is required when enable_moe_block");
    }
    if (!(s = k.integer("num_experts", 0, 1, 1 << 16, &c->moe.n_expert)).ok()) return s;
    if (!(s = k.integer("top_k_experts", 0, 1, c->moe.n_expert, &c->moe.top_k)).ok()) return s;
    if (!(s = k.integer("moe_intermediate_size", int64_t{0}, 1, 1 << 20, &c->moe.intermediate))
             .ok()) {
      return s;
    }
  }
  if (!(s = k.integer("hidden_size_per_layer_input", int64_t{256}, 0, 1 << 16, &c->ple_dim)).ok()) {
    return s;
  }
  if (!(s = k.integer("vocab_size_per_layer_input", int64_t{262144}, 1, int64_t{1} << 24,
                      &c->ple_vocab))
           .ok()) {
    return s;
  }
  c->attn_scale = 1.0f;  // §3.3: no 1/sqrt(d); q_norm and k_norm set the scale

  const int first_shared = c->firstSharedLayer();
  for (int l = 0; l < c->n_layer; ++l) {
    LayerGeometry& g = c->layers[static_cast<size_t>(l)];
    if (!g.sliding) {
      g.head_dim = c->global_head_dim;
      g.k_eq_v = c->attention_k_eq_v;
      if (g.k_eq_v && c->n_head_kv_global > 0) g.n_head_kv = c->n_head_kv_global;
    }
    if (l >= first_shared) {
      g.kv_source = -1;  // §3.5: the last non-shared layer of the same type
      for (int m = first_shared - 1; m >= 0 && g.kv_source < 0; --m) {
        if (c->isSliding(m) == g.sliding) g.kv_source = m;
      }
      if (g.kv_source < 0) {
        return configError(k.where("num_kv_shared_layers") + " (" +
                           std::to_string(c->n_kv_shared) + ") leaves layer " + std::to_string(l) +
                           " without an earlier " + (g.sliding ? "sliding" : "full") +
                           " layer to share K/V with");
      }
      if (c->double_wide_mlp) g.intermediate *= 2;  // §3.6
    }
  }
  return Status();
}

Status parseText(const json& top, const json& text, std::string_view file,
                 const std::string& prefix, GemmaConfig* c) {
  Keys k(text, file, prefix);
  const bool g4 = c->isGemma4();
  Status s;
  if (!(s = checkUnsupported(k, top, file, c)).ok()) return s;

  // Gemma3TextConfig / Gemma4TextConfig defaults (§1.2) are the second argument of every read.
  if (!(s = k.integer("hidden_size", int64_t{2304}, 1, 1 << 16, &c->hidden)).ok()) return s;
  if (!(s = k.integer("intermediate_size", int64_t{9216}, 1, 1 << 20, &c->intermediate)).ok()) {
    return s;
  }
  if (!(s = k.integer("num_hidden_layers", g4 ? 30 : 26, 1, 1024, &c->n_layer)).ok()) return s;
  if (!(s = k.integer("num_attention_heads", 8, 1, 1024, &c->n_head)).ok()) return s;
  if (!(s = k.integer("num_key_value_heads", 4, 1, c->n_head, &c->n_head_kv)).ok()) return s;
  if (c->n_head % c->n_head_kv != 0) {
    return configError(k.where("num_key_value_heads") + " (" + std::to_string(c->n_head_kv) +
                       ") must divide num_attention_heads (" + std::to_string(c->n_head) + ")");
  }
  if (!(s = k.integer("head_dim", 256, 2, 4096, &c->head_dim)).ok()) return s;
  if (c->head_dim % 2 != 0) return configError(k.where("head_dim") + " must be even for RoPE");
  if (!(s = k.integer("vocab_size", g4 ? int64_t{262144} : int64_t{262208}, 1, int64_t{1} << 24,
                      &c->vocab))
           .ok()) {
    return s;
  }
  if (!(s = k.integer("max_position_embeddings", int64_t{131072}, 1, int64_t{1} << 30,
                      &c->max_positions))
           .ok()) {
    return s;
  }
  double eps = 0;
  if (!(s = k.number("rms_norm_eps", 1e-6, 0, 1, true, &eps)).ok()) return s;
  c->rms_norm_eps = static_cast<float>(eps);
  if (!(s = k.number("query_pre_attn_scalar", 256, 0, 1e9, true, &c->query_pre_attn_scalar)).ok()) {
    return s;
  }
  c->attn_scale = static_cast<float>(std::pow(c->query_pre_attn_scalar, -0.5));
  // §2.1 / §6.2: the scale is rounded to bf16 before it multiplies (1152 -> 34.0, not 33.94).
  c->embed_scale = roundBf16(static_cast<float>(std::sqrt(static_cast<double>(c->hidden))));

  if (!(s = parseLayerTypes(k, c)).ok()) return s;
  bool any_sliding = false;
  for (bool b : c->is_sliding) any_sliding = any_sliding || b;
  if (any_sliding && text.contains("sliding_window") && text["sliding_window"].is_null()) {
    return configError(k.where("sliding_window") + " is null but some layers are sliding");
  }
  if (!(s = k.integer("sliding_window", g4 ? 512 : 4096, 1, 1 << 30, &c->sliding_window)).ok()) {
    return s;
  }
  if (!(s = parseRopeKeys(k, file, prefix, c)).ok()) return s;

  c->layers.assign(static_cast<size_t>(c->n_layer), LayerGeometry{});
  for (int l = 0; l < c->n_layer; ++l) {
    LayerGeometry& g = c->layers[static_cast<size_t>(l)];
    g.sliding = c->isSliding(l);
    g.head_dim = c->head_dim;
    g.n_head_kv = c->n_head_kv;
    g.window = g.sliding ? c->sliding_window : 0;
    g.kv_source = l;
    g.intermediate = c->intermediate;
  }
  if (g4) return parseGemma4Layers(k, c);
  return Status();
}

Status parseGeneration(const json& gen, std::string_view file, GemmaConfig* c) {
  if (!gen.is_object()) return configError(std::string(file) + ": not a JSON object");
  Keys k(gen, file, "");
  Status s;
  if (!(s = k.tokenIds("eos_token_id", c->vocab, &c->eos_ids)).ok()) return s;
  GenerationDefaults& g = c->generation;
  if (const json* v = k.get("do_sample")) {
    if (!v->is_boolean()) return configError(k.where("do_sample") + " must be a boolean");
    g.do_sample = v->get<bool>();
  }
  if (k.has("top_k")) {
    int top_k = 0;
    if (!(s = k.integer("top_k", 0, 0, 1 << 30, &top_k)).ok()) return s;
    g.top_k = top_k;
  }
  if (k.has("top_p")) {
    double top_p = 1;
    if (!(s = k.number("top_p", 1, 0, 1, true, &top_p)).ok()) return s;
    g.top_p = static_cast<float>(top_p);
  }
  if (k.has("temperature")) {
    double t = 1;
    if (!(s = k.number("temperature", 1, 0, 1e6, false, &t)).ok()) return s;
    g.temperature = static_cast<float>(t);
  }
  return Status();
}

}  // namespace

api::StatusOr<GemmaConfig> parseGemmaConfig(std::string_view config_json,
                                            std::string_view config_name,
                                            std::optional<std::string_view> generation_json,
                                            std::string_view generation_name) {
  json top = json::parse(config_json.begin(), config_json.end(), nullptr, false);
  if (top.is_discarded()) return configError(std::string(config_name) + ": not valid JSON");
  if (!top.is_object()) return configError(std::string(config_name) + ": not a JSON object");

  GemmaConfig c;
  Keys tk(top, config_name, "");
  Status s;
  if (!tk.has("model_type")) return configError(tk.where("model_type") + " is missing");
  if (!(s = tk.string("model_type", "", &c.model_type)).ok()) return s;
  if (const json* arch = tk.get("architectures");
      arch != nullptr && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    c.architecture = (*arch)[0].get<std::string>();
  }

  static const json kEmpty = json::object();
  const json* text = &top;
  std::string prefix;
  if (c.model_type == "gemma3_text" || c.model_type == "gemma4_text") {
    c.conditional = false;
  } else if (c.model_type == "gemma3" || c.model_type == "gemma4") {
    c.conditional = true;
    prefix = "text_config.";
    text = tk.get("text_config");
    if (text == nullptr) text = &kEmpty;  // HF fills a missing text_config with the defaults
    if (!text->is_object()) return configError(tk.where("text_config") + " must be an object");
    const std::string want = c.model_type + "_text";
    std::string inner;
    if (!(s = Keys(*text, config_name, prefix).string("model_type", want.c_str(), &inner)).ok()) {
      return s;
    }
    if (inner != want) {
      return configError(std::string(config_name) + ": key 'text_config.model_type' is '" + inner +
                         "', expected " + want);
    }
  } else {
    return configError(tk.where("model_type") + " is '" + c.model_type +
                       "'; supported: gemma3_text (Gemma3ForCausalLM), gemma3 "
                       "(Gemma3ForConditionalGeneration), gemma4_text (Gemma4ForCausalLM), gemma4 "
                       "(Gemma4ForConditionalGeneration)");
  }
  c.family = c.model_type.rfind("gemma4", 0) == 0 ? ModelFamily::kGemma4 : ModelFamily::kGemma3;
  if (!(s = parseText(top, *text, config_name, prefix, &c)).ok()) return s;

  // Special ids may sit at the top level, in text_config, or only in generation_config.json.
  Keys xk(*text, config_name, prefix);
  if (!(s = tk.tokenIds("eos_token_id", c.vocab, &c.eos_ids)).ok()) return s;
  if (c.conditional && !(s = xk.tokenIds("eos_token_id", c.vocab, &c.eos_ids)).ok()) return s;
  int64_t bos = -1;
  const Keys& bos_keys = xk.has("bos_token_id") ? xk : tk;
  if (!(s = bos_keys.integer("bos_token_id", int64_t{-1}, 0, c.vocab - 1, &bos)).ok()) return s;
  int64_t pad = 0;
  const Keys& pad_keys = xk.has("pad_token_id") ? xk : tk;
  if (!(s = pad_keys.integer("pad_token_id", int64_t{0}, 0, INT32_MAX, &pad)).ok()) return s;
  c.pad_id = static_cast<int32_t>(pad);

  if (generation_json) {
    json gen = json::parse(generation_json->begin(), generation_json->end(), nullptr, false);
    if (gen.is_discarded()) return configError(std::string(generation_name) + ": not valid JSON");
    if (!(s = parseGeneration(gen, generation_name, &c)).ok()) return s;
    if (bos < 0 && gen.is_object()) {
      Keys gk(gen, generation_name, "");
      if (!(s = gk.integer("bos_token_id", int64_t{-1}, 0, c.vocab - 1, &bos)).ok()) return s;
    }
  }
  c.bos_id = bos < 0 ? 2 : static_cast<int32_t>(bos);  // Gemma3TextConfig: bos 2, eos 1
  if (c.eos_ids.empty()) c.eos_ids.push_back(1);
  return c;
}

api::StatusOr<std::string> readTextFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return Status(ErrorCode::kIo, path + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(ErrorCode::kIo, path + ": cannot open: " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status(ErrorCode::kIo, path + ": read failed");
  return buf.str();
}

api::StatusOr<GemmaConfig> loadGemmaConfig(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  auto config = readTextFile(config_path);
  if (!config.ok()) return config.status();
  const std::string gen_path = dir + "/generation_config.json";
  struct stat st {};
  if (::stat(gen_path.c_str(), &st) != 0) return parseGemmaConfig(*config, config_path);
  auto gen = readTextFile(gen_path);
  if (!gen.ok()) return gen.status();
  return parseGemmaConfig(*config, config_path, std::string_view(*gen), gen_path);
}

}  // namespace engine
