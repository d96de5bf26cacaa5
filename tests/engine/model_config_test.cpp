#include "engine/model_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace engine {
namespace {

// gemma-3-1b-it's config.json (gemma-spec §2.9: fully explicit).
const char* k1bConfig = R"({
  "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid",
  "eos_token_id": [1, 106], "final_logit_softcapping": null, "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
  "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
  "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
  "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000, "rope_scaling": null, "rope_theta": 1000000,
  "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
  "transformers_version": "4.50.0.dev0", "use_cache": true, "vocab_size": 262144})";

// gemma-3-4b-it's config.json: the text_config names almost nothing (§1.2).
const char* k4bConfig = R"({
  "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
  "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
  "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
  "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                  "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                  "sliding_window": 1024},
  "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
  "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                    "model_type": "siglip_vision_model", "num_attention_heads": 16,
                    "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}})";

// A small causal config; `extra` is spliced in as further keys (later keys win in our tests
// only where a key is not already present, so callers add keys that are absent here).
std::string smallConfig(const std::string& extra = "") {
  return R"({"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "vocab_size": 512)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

api::StatusOr<GemmaConfig> parse(const std::string& json) {
  return parseGemmaConfig(json, "dir/config.json");
}

void expectError(const api::StatusOr<GemmaConfig>& r, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), api::ErrorCode::kConfig);
  for (const std::string& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "'" << r.status().message() << "' does not mention '" << p << "'";
  }
}

std::vector<int> fullLayers(const GemmaConfig& c) {
  std::vector<int> out;
  for (int i = 0; i < c.n_layer; ++i) {
    if (!c.isSliding(i)) out.push_back(i);
  }
  return out;
}

TEST(GemmaConfig, ParsesGemma3_1bConfig) {
  auto r = parse(k1bConfig);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GemmaConfig& c = *r;
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_EQ(c.architecture, "Gemma3ForCausalLM");
  EXPECT_FALSE(c.conditional);
  EXPECT_EQ(c.hidden, 1152);
  EXPECT_EQ(c.intermediate, 6912);
  EXPECT_EQ(c.n_layer, 26);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab, 262144);
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.sliding_window, 512);
  // §1.3 / §2.9: full iff (i+1) % 6 == 0, so the last two layers (24, 25) are sliding.
  EXPECT_EQ(fullLayers(c), (std::vector<int>{5, 11, 17, 23}));
  EXPECT_TRUE(c.isSliding(25));
  EXPECT_EQ(c.rope_full.base, 1e6);
  EXPECT_EQ(c.rope_full.factor, 1.0);
  EXPECT_EQ(c.rope_sliding.base, 1e4);
  EXPECT_EQ(c.rope_sliding.factor, 1.0);
  EXPECT_EQ(&c.rope(5), &c.rope_full);
  EXPECT_EQ(&c.rope(0), &c.rope_sliding);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16);
  EXPECT_EQ(c.embed_scale, 34.0f);  // §6.2: bf16(33.94)
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ(c.bos_id, 2);
  EXPECT_EQ(c.pad_id, 0);
  EXPECT_FALSE(c.generation.top_k.has_value());
}

TEST(GemmaConfig, FillsClassDefaultsForSparse4bTextConfig) {
  auto r = parse(k4bConfig);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GemmaConfig& c = *r;
  EXPECT_EQ(c.model_type, "gemma3");
  EXPECT_TRUE(c.conditional);
  EXPECT_EQ(c.hidden, 2560);
  EXPECT_EQ(c.intermediate, 10240);
  EXPECT_EQ(c.n_layer, 34);
  // Everything below comes from the Gemma3TextConfig defaults (§1.2).
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab, 262208);
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_EQ(c.query_pre_attn_scalar, 256);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / 16);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(fullLayers(c), (std::vector<int>{5, 11, 17, 23, 29}));
  EXPECT_EQ(c.rope_full.base, 1e6);
  EXPECT_EQ(c.rope_full.factor, 8.0);  // rope_scaling is for global layers only
  EXPECT_EQ(c.rope_sliding.base, 1e4);
  EXPECT_EQ(c.rope_sliding.factor, 1.0);
  EXPECT_EQ(c.embed_scale, 50.5f);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ(c.bos_id, 2);
}

TEST(GemmaConfig, TakesAllDefaultsWhenTextConfigIsAbsent) {
  auto r = parse(R"({"model_type": "gemma3"})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->hidden, 2304);
  EXPECT_EQ(r->n_layer, 26);
  EXPECT_EQ(r->sliding_window, 4096);
  EXPECT_EQ(r->eos_ids, (std::vector<int32_t>{1}));
}

TEST(GemmaConfig, Uses27bQueryPreAttnScalarNotHeadDim) {
  auto r = parse(R"({"model_type": "gemma3", "text_config": {"hidden_size": 5376,
      "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
      "query_pre_attn_scalar": 168, "num_hidden_layers": 62, "intermediate_size": 21504}})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FLOAT_EQ(r->attn_scale, static_cast<float>(1.0 / std::sqrt(168.0)));  // §2.3
  EXPECT_EQ(r->embed_scale, 73.5f);
  EXPECT_EQ(fullLayers(*r).size(), 10u);
}

TEST(GemmaConfig, RoundsEmbedScaleToBf16) {
  const std::pair<int, float> cases[] = {{640, 25.25f}, {1152, 34.0f}, {2560, 50.5f},
                                         {3840, 62.0f}, {5376, 73.5f}, {64, 8.0f}};
  for (auto [hidden, scale] : cases) {
    auto r =
        parse(R"({"model_type": "gemma3_text", "hidden_size": )" + std::to_string(hidden) + "}");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->embed_scale, scale) << hidden;
  }
}

TEST(GemmaConfig, ExplicitLayerTypesWinOverThePattern) {
  auto r = parse(smallConfig(R"("sliding_window_pattern": 2, "layer_types":
      ["sliding_attention", "full_attention", "full_attention", "sliding_attention"])"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->is_sliding, (std::vector<bool>{true, false, false, true}));
}

TEST(GemmaConfig, AppliesTheSlidingWindowPattern) {
  auto r = parse(smallConfig(R"("sliding_window_pattern": 2)"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->is_sliding, (std::vector<bool>{true, false, true, false}));
  auto hidden_key = parse(smallConfig(R"("_sliding_window_pattern": 4)"));  // 270m spelling
  ASSERT_TRUE(hidden_key.ok()) << hidden_key.status().message();
  EXPECT_EQ(hidden_key->is_sliding, (std::vector<bool>{true, true, true, false}));
}

TEST(GemmaConfig, RejectsBadLayerTypes) {
  expectError(parse(smallConfig(R"("layer_types": ["sliding_attention"])")),
              {"dir/config.json", "layer_types", "4"});
  expectError(parse(smallConfig(R"("layer_types": ["sliding_attention", "full_attention",
      "chunked_attention", "full_attention"])")),
              {"layer_types", "[2]"});
}

TEST(GemmaConfig, ReadsRopeParametersFormat) {
  auto r = parse(smallConfig(R"("rope_parameters": {
      "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0},
      "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 500000.0}})"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->rope_sliding.base, 20000.0);
  EXPECT_EQ(r->rope_sliding.factor, 1.0);
  EXPECT_EQ(r->rope_full.base, 500000.0);
  EXPECT_EQ(r->rope_full.factor, 4.0);
}

TEST(GemmaConfig, ReadsOldRopeFormatWithEitherTypeSpelling) {
  auto r = parse(smallConfig(R"("rope_theta": 2e6, "rope_local_base_freq": 5000,
      "rope_scaling": {"type": "linear", "factor": 8})"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->rope_full.base, 2e6);
  EXPECT_EQ(r->rope_full.factor, 8.0);
  EXPECT_EQ(r->rope_sliding.base, 5000.0);
  EXPECT_EQ(r->rope_sliding.factor, 1.0);
  auto d = parse(smallConfig(R"("rope_scaling": {"rope_type": "default"})"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rope_full.factor, 1.0);
}

TEST(GemmaConfig, RejectsRopeTypesItDoesNotImplement) {
  expectError(parse(smallConfig(R"("rope_scaling": {"rope_type": "yarn", "factor": 8})")),
              {"dir/config.json", "rope_scaling.rope_type", "yarn"});
  expectError(parse(smallConfig(R"("rope_scaling": {"rope_type": "linear"})")),
              {"rope_scaling.factor"});
  expectError(parse(smallConfig(R"("rope_parameters": {"full_attention": {"rope_type":
      "proportional", "partial_rotary_factor": 0.25}})")),
              {"rope_parameters.full_attention.partial_rotary_factor"});
}

TEST(GemmaConfig, RejectsGemma4AndUnknownModelTypes) {
  expectError(parse(R"({"model_type": "gemma4", "text_config": {}})"),
              {"dir/config.json", "model_type", "Gemma 4"});
  expectError(parse(R"({"model_type": "gemma4_text"})"), {"Gemma 4"});
  expectError(parse(R"({"model_type": "llama"})"), {"model_type", "llama"});
  expectError(parse(R"({"hidden_size": 64})"), {"model_type", "missing"});
  expectError(parse(R"({"model_type": "gemma3", "text_config": {"model_type": "gemma2"}})"),
              {"text_config.model_type"});
}

TEST(GemmaConfig, RejectsActivationsOtherThanGeluTanh) {
  expectError(parse(smallConfig(R"("hidden_activation": "gelu")")),
              {"dir/config.json", "hidden_activation", "gelu"});
  expectError(parse(smallConfig(R"("hidden_act": "silu")")), {"hidden_act"});
  EXPECT_TRUE(parse(smallConfig(R"("hidden_activation": "gelu_pytorch_tanh")")).ok());
}

TEST(GemmaConfig, RejectsSoftcappingButAcceptsNull) {
  expectError(parse(smallConfig(R"("final_logit_softcapping": 30.0)")),
              {"dir/config.json", "final_logit_softcapping"});
  expectError(parse(R"({"model_type": "gemma3", "text_config": {"attn_logit_softcapping": 50}})"),
              {"text_config.attn_logit_softcapping"});
  EXPECT_TRUE(
      parse(smallConfig(R"("final_logit_softcapping": null, "attn_logit_softcapping": null)"))
          .ok());
}

TEST(GemmaConfig, RejectsWrongTypesAndInconsistentShapes) {
  expectError(parse(smallConfig(R"("sliding_window": "512")")), {"sliding_window", "integer"});
  expectError(parse(R"({"model_type": "gemma3_text", "hidden_size": 64.5})"), {"hidden_size"});
  expectError(parse(R"({"model_type": "gemma3_text", "hidden_size": -1})"), {"hidden_size"});
  expectError(parse(R"({"model_type": "gemma3_text", "num_attention_heads": 6,
      "num_key_value_heads": 4})"),
              {"num_key_value_heads", "divide"});
  expectError(parse(R"({"model_type": "gemma3_text", "head_dim": 15})"), {"head_dim", "even"});
  expectError(parse(smallConfig(R"("rms_norm_eps": 0)")), {"rms_norm_eps"});
  expectError(parse(smallConfig(R"("tie_word_embeddings": false)")), {"tie_word_embeddings"});
  expectError(parse(smallConfig(R"("attention_bias": true)")), {"attention_bias"});
  expectError(parse(smallConfig(R"("sliding_window": null)")), {"sliding_window", "null"});
  expectError(parse(smallConfig(R"("eos_token_id": [1, 9999])")), {"eos_token_id"});
  expectError(parse("{\"model_type\": "), {"dir/config.json", "not valid JSON"});
  expectError(parse("[1]"), {"not a JSON object"});
}

TEST(GemmaConfig, MergesEosIdsAndReadsGenerationDefaults) {
  auto r = parseGemmaConfig(smallConfig(R"("eos_token_id": 1, "bos_token_id": 2)"), "config.json",
                            std::string_view(R"({"eos_token_id": [1, 106, 50], "do_sample": true,
                                "top_k": 64, "top_p": 0.95})"),
                            "generation_config.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->eos_ids, (std::vector<int32_t>{1, 106, 50}));
  EXPECT_EQ(r->generation.do_sample, true);
  EXPECT_EQ(r->generation.top_k, 64);
  EXPECT_FLOAT_EQ(*r->generation.top_p, 0.95f);
  EXPECT_FALSE(r->generation.temperature.has_value());

  auto gen_only = parseGemmaConfig(smallConfig(), "config.json",
                                   std::string_view(R"({"eos_token_id": 106, "bos_token_id": 5,
                                       "temperature": 0.7})"));
  ASSERT_TRUE(gen_only.ok()) << gen_only.status().message();
  EXPECT_EQ(gen_only->eos_ids, (std::vector<int32_t>{106}));
  EXPECT_EQ(gen_only->bos_id, 5);
  EXPECT_FLOAT_EQ(*gen_only->generation.temperature, 0.7f);
}

TEST(GemmaConfig, NamesTheGenerationConfigInItsErrors) {
  auto r = parseGemmaConfig(smallConfig(), "config.json", std::string_view(R"({"top_p": "x"})"),
                            "m/generation_config.json");
  expectError(r, {"m/generation_config.json", "top_p"});
  expectError(parseGemmaConfig(smallConfig(), "config.json", std::string_view("{"), "g.json"),
              {"g.json", "not valid JSON"});
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("sy_model_config_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(GemmaConfig, LoadsConfigAndGenerationConfigFromADirectory) {
  TempDir dir;
  auto missing = loadGemmaConfig(dir.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), api::ErrorCode::kIo);
  EXPECT_NE(missing.status().message().find("config.json"), std::string::npos);

  std::ofstream(dir.path() + "/config.json") << smallConfig();
  auto no_gen = loadGemmaConfig(dir.path());
  ASSERT_TRUE(no_gen.ok()) << no_gen.status().message();
  EXPECT_EQ(no_gen->eos_ids, (std::vector<int32_t>{1}));

  std::ofstream(dir.path() + "/generation_config.json") << R"({"eos_token_id": [1, 106]})";
  auto with_gen = loadGemmaConfig(dir.path());
  ASSERT_TRUE(with_gen.ok()) << with_gen.status().message();
  EXPECT_EQ(with_gen->eos_ids, (std::vector<int32_t>{1, 106}));

  std::ofstream(dir.path() + "/generation_config.json") << R"({"top_k": -1})";
  auto bad = loadGemmaConfig(dir.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("generation_config.json"), std::string::npos);
}

}  // namespace
}  // namespace engine
