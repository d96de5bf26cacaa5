#include "engine/model_config.h"

#include "engine/bf16.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
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

TEST(GemmaConfig, RejectsUnknownModelTypes) {
  expectError(parse(R"({"model_type": "llama"})"), {"model_type", "llama"});
  expectError(parse(R"({"hidden_size": 64})"), {"model_type", "missing"});
  expectError(parse(R"({"model_type": "gemma3", "text_config": {"model_type": "gemma2"}})"),
              {"text_config.model_type"});
  expectError(parse(R"({"model_type": "gemma4", "text_config": {"model_type": "gemma3_text"}})"),
              {"text_config.model_type", "gemma4_text"});
}

// Gemma4TextConfig's defaults (gemma-spec §1.2) when the text_config names nothing.
TEST(GemmaConfig, Gemma4TakesItsOwnClassDefaults) {
  auto r = parse(R"({"model_type": "gemma4", "text_config": {}})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GemmaConfig& c = *r;
  EXPECT_TRUE(c.isGemma4());
  EXPECT_TRUE(c.conditional);
  EXPECT_EQ(c.vocab, 262144);
  EXPECT_EQ(c.n_layer, 30);
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_EQ(c.global_head_dim, 512);
  EXPECT_EQ(c.ple_dim, 256);  // PLE is on by default
  EXPECT_EQ(c.ple_vocab, 262144);
  EXPECT_EQ(c.final_softcap, 0.0f);
  EXPECT_EQ(c.attn_scale, 1.0f);
  EXPECT_EQ(c.rope_sliding.type, RopeType::kDefault);
  EXPECT_EQ(c.rope_sliding.base, 1e4);
  EXPECT_EQ(c.rope_full.type, RopeType::kProportional);
  EXPECT_EQ(c.rope_full.base, 1e6);
  EXPECT_EQ(c.rope_full.partial_rotary_factor, 0.25);
  EXPECT_EQ(c.rope_full.rotatedPairs(512), 64);
  EXPECT_EQ(c.rope_sliding.rotatedPairs(256), 128);
  EXPECT_EQ(fullLayers(c), (std::vector<int>{5, 11, 17, 23, 29}));
  EXPECT_EQ(c.layer(0).head_dim, 256);
  EXPECT_EQ(c.layer(5).head_dim, 512);
  EXPECT_EQ(c.layer(5).n_head_kv, 4);  // no K=V: full layers keep num_key_value_heads
  EXPECT_EQ(c.layer(5).window, 0);
  EXPECT_EQ(c.layer(4).window, 512);
}

// An E2B-shaped text config (gemma-spec §3.11), flat (Gemma4ForCausalLM).
const char* kE2bText = R"({"model_type": "gemma4_text", "hidden_size": 1536,
  "intermediate_size": 6144, "num_hidden_layers": 35, "num_attention_heads": 8,
  "num_key_value_heads": 1, "head_dim": 256, "global_head_dim": 512, "sliding_window": 512,
  "num_kv_shared_layers": 20, "use_double_wide_mlp": true, "hidden_size_per_layer_input": 256,
  "final_logit_softcapping": 30.0, "attention_k_eq_v": false, "vocab_size": 262144,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "full_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
  "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                       "rope_theta": 1000000.0}}})";

TEST(GemmaConfig, ResolvesGemma4KvSharingAndDoubleWideMlp) {
  auto r = parse(kE2bText);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GemmaConfig& c = *r;
  EXPECT_FALSE(c.conditional);
  EXPECT_EQ(c.final_softcap, 30.0f);
  EXPECT_EQ(c.firstSharedLayer(), 15);
  for (int l = 0; l < 15; ++l) {
    EXPECT_TRUE(c.storesKv(l)) << l;
    EXPECT_EQ(c.layer(l).intermediate, 6144) << l;
  }
  for (int l = 15; l < 35; ++l) {  // §3.5: sliding layers read layer 13, full ones layer 14
    EXPECT_EQ(c.layer(l).kv_source, c.isSliding(l) ? 13 : 14) << l;
    EXPECT_FALSE(c.storesKv(l));
    EXPECT_EQ(c.layer(l).intermediate, 12288) << l;
  }
  EXPECT_EQ(c.layer(14).kvDim(), 512);
  EXPECT_EQ(c.layer(13).kvDim(), 256);
}

TEST(GemmaConfig, ResolvesGemma4KeqVAndExperts) {
  auto r = parse(R"({"model_type": "gemma4", "text_config": {"model_type": "gemma4_text",
    "hidden_size": 2816, "intermediate_size": 2112, "num_hidden_layers": 30,
    "num_attention_heads": 16, "num_key_value_heads": 8, "num_global_key_value_heads": 2,
    "attention_k_eq_v": true, "sliding_window": 1024, "hidden_size_per_layer_input": 0,
    "enable_moe_block": true, "num_experts": 128, "top_k_experts": 8,
    "moe_intermediate_size": 704, "final_logit_softcapping": 30.0,
    "use_bidirectional_attention": "vision"}, "eos_token_id": [1, 106]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GemmaConfig& c = *r;
  EXPECT_EQ(c.moe.n_expert, 128);
  EXPECT_EQ(c.moe.top_k, 8);
  EXPECT_EQ(c.moe.intermediate, 704);
  EXPECT_EQ(c.ple_dim, 0);
  EXPECT_EQ(c.layer(0).n_head_kv, 8);
  EXPECT_FALSE(c.layer(0).k_eq_v);
  EXPECT_EQ(c.layer(5).n_head_kv, 2);
  EXPECT_TRUE(c.layer(5).k_eq_v);
  EXPECT_EQ(c.layer(5).head_dim, 512);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 106}));
}

TEST(GemmaConfig, Gemma4ForcesTheLastLayerFull) {
  auto r = parse(R"({"model_type": "gemma4_text", "num_hidden_layers": 4,
    "hidden_size_per_layer_input": 0, "layer_types": ["sliding_attention",
    "full_attention", "sliding_attention", "sliding_attention"]})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(fullLayers(*r), (std::vector<int>{1, 3}));
  // Gemma 3 keeps a sliding last layer (1b's layers 24 and 25 are sliding).
  auto g3 = parse(smallConfig(R"("layer_types": ["sliding_attention", "full_attention",
    "sliding_attention", "sliding_attention"])"));
  ASSERT_TRUE(g3.ok());
  EXPECT_EQ(fullLayers(*g3), (std::vector<int>{1}));
}

TEST(GemmaConfig, Gemma4ReadsTheOldRopeKeys) {
  auto r = parse(R"({"model_type": "gemma4_text", "rope_theta": 5e5,
    "rope_local_base_freq": 2e4, "rope_scaling": {"rope_type": "linear", "factor": 4}})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->rope_full.type, RopeType::kLinear);
  EXPECT_EQ(r->rope_full.base, 5e5);
  EXPECT_EQ(r->rope_full.factor, 4.0);
  EXPECT_EQ(r->rope_sliding.base, 2e4);
  auto p = parse(R"({"model_type": "gemma4_text", "rope_theta": 5e5})");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->rope_full.type, RopeType::kProportional);  // the default type, another base
  EXPECT_EQ(p->rope_full.base, 5e5);
}

TEST(GemmaConfig, RejectsBadGemma4Configs) {
  expectError(parse(R"({"model_type": "gemma4_text", "enable_moe_block": true,
    "num_experts": 8})"),
              {"dir/config.json", "top_k_experts", "enable_moe_block"});
  expectError(parse(R"({"model_type": "gemma4_text", "enable_moe_block": true,
    "num_experts": 8, "top_k_experts": 9, "moe_intermediate_size": 4})"),
              {"top_k_experts"});
  expectError(parse(R"({"model_type": "gemma4_text", "num_attention_heads": 8,
    "num_global_key_value_heads": 3, "attention_k_eq_v": true})"),
              {"num_global_key_value_heads", "divide"});
  expectError(parse(R"({"model_type": "gemma4_text", "num_hidden_layers": 4,
    "num_kv_shared_layers": 3, "layer_types": ["sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention"]})"),
              {"num_kv_shared_layers", "layer 3"});
  expectError(parse(R"({"model_type": "gemma4_text", "num_hidden_layers": 4,
    "num_kv_shared_layers": 4})"),
              {"num_kv_shared_layers"});
  expectError(parse(R"({"model_type": "gemma4_text", "global_head_dim": 511})"),
              {"global_head_dim", "even"});
  expectError(parse(R"({"model_type": "gemma4_text", "attention_k_eq_v": "yes"})"),
              {"attention_k_eq_v"});
  expectError(parse(R"({"model_type": "gemma4_text", "use_bidirectional_attention": "all"})"),
              {"use_bidirectional_attention"});
  expectError(parse(R"({"model_type": "gemma4_text", "attn_logit_softcapping": 50})"),
              {"attn_logit_softcapping"});
  expectError(parse(R"({"model_type": "gemma4_text", "rope_parameters": {"full_attention":
    {"rope_type": "yarn"}}})"),
              {"rope_parameters.full_attention.rope_type", "proportional"});
  expectError(parse(R"({"model_type": "gemma4", "text_config": {"final_logit_softcapping":
    -1}})"),
              {"text_config.final_logit_softcapping"});
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

// The four real Gemma 4 presets of make-test-model (--config-only: the full-size configs without
// their gigabytes of weights), in both layouts, resolve to the shapes of gemma-spec §3.11.
TEST(GemmaConfig, RealGemma4PresetsResolveToTheSpecShapes) {
  const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
  if (!std::filesystem::exists(cli)) GTEST_SKIP() << "switchyard-cli is not built";
  struct Want {
    const char* preset;
    int64_t H;
    int L, heads, kv, kv_full, window;
    int64_t I, I_shared;
    bool k_eq_v;
    int first_shared, src_sliding, src_full, experts, top_k;
    int64_t moe_I, P, max_pos;
    std::vector<int> full;
  };
  const Want wants[] = {
      {"gemma-4-e2b", 1536, 35, 8, 1, 1, 512, 6144, 12288, false, 15, 13, 14, 0, 0, 0, 256, 131072,
       {4, 9, 14, 19, 24, 29, 34}},
      {"gemma-4-e4b", 2560, 42, 8, 2, 2, 512, 10240, 10240, false, 24, 22, 23, 0, 0, 0, 256, 131072,
       {5, 11, 17, 23, 29, 35, 41}},
      {"gemma-4-26b-a4b", 2816, 30, 16, 8, 2, 1024, 2112, 2112, true, 30, -1, -1, 128, 8, 704, 0,
       262144, {5, 11, 17, 23, 29}},
      {"gemma-4-31b", 5376, 60, 32, 16, 4, 1024, 21504, 21504, true, 60, -1, -1, 0, 0, 0, 0, 262144,
       {5, 11, 17, 23, 29, 35, 41, 47, 53, 59}},
  };
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sy_g4presets_" + std::to_string(::getpid()));
  for (const Want& w : wants) {
    for (const char* layout : {"conditional", "causal-lm"}) {
      SCOPED_TRACE(std::string(w.preset) + " " + layout);
      const std::string dir = (root / (std::string(w.preset) + layout)).string();
      const std::string cmd = cli + " make-test-model --config-only --preset " + w.preset +
                              " --layout " + layout + " --out " + dir + " > /dev/null";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
      EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
      auto r = loadGemmaConfig(dir);
      ASSERT_TRUE(r.ok()) << r.status().message();
      const GemmaConfig& c = *r;
      EXPECT_TRUE(c.isGemma4());
      EXPECT_EQ(c.conditional, std::string(layout) == "conditional");
      EXPECT_EQ(c.hidden, w.H);
      EXPECT_EQ(c.n_layer, w.L);
      EXPECT_EQ(c.n_head, w.heads);
      EXPECT_EQ(c.vocab, 262144);
      EXPECT_EQ(c.max_positions, w.max_pos);
      EXPECT_EQ(fullLayers(c), w.full);
      EXPECT_EQ(c.firstSharedLayer(), w.first_shared);
      EXPECT_EQ(c.moe.n_expert, w.experts);
      EXPECT_EQ(c.moe.top_k, w.top_k);
      EXPECT_EQ(c.moe.intermediate, w.moe_I);
      EXPECT_EQ(c.ple_dim, w.P);
      EXPECT_EQ(c.final_softcap, 30.0f);
      EXPECT_EQ(c.embed_scale, roundBf16(std::sqrt(float(w.H))));
      for (int l = 0; l < c.n_layer; ++l) {
        const LayerGeometry& g = c.layer(l);
        EXPECT_EQ(g.head_dim, g.sliding ? 256 : 512) << l;
        EXPECT_EQ(g.n_head_kv, g.sliding ? w.kv : w.kv_full) << l;
        EXPECT_EQ(g.window, g.sliding ? w.window : 0) << l;
        EXPECT_EQ(g.k_eq_v, w.k_eq_v && !g.sliding) << l;
        EXPECT_EQ(g.intermediate, l < w.first_shared ? w.I : w.I_shared) << l;
        const int src = l < w.first_shared ? l : (g.sliding ? w.src_sliding : w.src_full);
        EXPECT_EQ(g.kv_source, src) << l;
      }
      EXPECT_EQ(c.rope_full.rotatedPairs(512), 64);
    }
    // --layers shrinks the layers and the KV-shared tail in proportion.
    const std::string dir = (root / (std::string(w.preset) + "-4")).string();
    const std::string cmd = cli + " make-test-model --config-only --layers 12 --preset " +
                            w.preset + " --out " + dir + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto r = loadGemmaConfig(dir);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->n_layer, 12);
    EXPECT_FALSE(r->isSliding(11));
    if (w.first_shared < w.L) EXPECT_LT(r->firstSharedLayer(), 12);
  }
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
}

}  // namespace
}  // namespace engine
