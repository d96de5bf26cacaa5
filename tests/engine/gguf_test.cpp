// GGUF: the container (engine/gguf.h) written and read back, every malformed header refused with
// a message naming the fault, the Gemma mapping (engine/gguf_gemma.h), and a Gemma 3 checkpoint
// written to GGUF that runs to the same logits as its safetensors original.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/gguf_gemma.h"
#include "engine/models/model.h"
#include "engine/quant/quant.h"
#include "gemma_tokenizer_fixture.h"
#include "tests/engine/temp_dir.h"

namespace engine::gguf {
namespace {

namespace fs = std::filesystem;
using api::ErrorCode;

// One test's directory (tests/engine/temp_dir.h).
class TempDir : public sytest::EngineTempDir {
 public:
  TempDir() : EngineTempDir("gguf") {}
};

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<unsigned char> randomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> out(n);
  for (auto& b : out) b = static_cast<unsigned char>(rng());
  return out;
}

// Writes `tensors` with random contents; returns their bytes in order.
std::vector<std::vector<unsigned char>> writeFile(const std::string& path,
                                                  const std::vector<KeyValue>& kvs,
                                                  const std::vector<GgufTensorSpec>& tensors) {
  auto w = GgufWriter::create(path, kvs, tensors);
  EXPECT_TRUE(w.ok()) << w.status().message();
  std::vector<std::vector<unsigned char>> data;
  if (!w.ok()) return data;
  for (size_t k = 0; k < tensors.size(); ++k) {
    data.push_back(randomBytes((*w)->tensorBytes()[k], static_cast<uint32_t>(k + 1)));
    // In two pieces, to exercise appends that do not follow tensor boundaries.
    const size_t half = data.back().size() / 2;
    EXPECT_TRUE((*w)->append(data.back().data(), half).ok());
    EXPECT_TRUE((*w)->append(data.back().data() + half, data.back().size() - half).ok());
  }
  EXPECT_TRUE((*w)->finish().ok());
  return data;
}

std::vector<KeyValue> everyValueType() {
  return {
      {"t.u8", Value::u8(200)},
      {"t.i8", Value::i8(-100)},
      {"t.u16", Value::u16(60000)},
      {"t.i16", Value::i16(-30000)},
      {"t.u32", Value::u32(4000000000u)},
      {"t.i32", Value::i32(-2000000000)},
      {"t.f32", Value::f32(0.1f)},
      {"t.bool", Value::boolean(true)},
      {"t.string", Value::string("h\xC3\xA9llo")},
      {"t.u64", Value::u64(UINT64_MAX)},
      {"t.i64", Value::i64(INT64_MIN)},
      {"t.f64", Value::f64(1e-300)},
      {"t.empty", Value::string("")},
      {"a.u8", Value::uintArray(ValueType::kU8, {0, 1, 255})},
      {"a.bool", Value::uintArray(ValueType::kBool, {1, 0, 1})},
      {"a.i16", Value::intArray(ValueType::kI16, {-5, 7})},
      {"a.i32", Value::intArray(ValueType::kI32, {-1, 2, -3})},
      {"a.u64", Value::uintArray(ValueType::kU64, {UINT64_MAX})},
      {"a.f32", Value::realArray(ValueType::kF32, {0.5, -2.25, 1e-3})},
      {"a.f64", Value::realArray(ValueType::kF64, {3.141592653589793})},
      {"a.str", Value::stringArray({"<bos>", "", "\xE2\x96\x81the"})},
      {"a.empty", Value::intArray(ValueType::kI32, {})},
  };
}

std::vector<GgufTensorSpec> everyTensorType() {
  return {
      {"f32", ggml::kF32, {3, 5}},        {"f16", ggml::kF16, {2, 4}},
      {"bf16", ggml::kBF16, {7}},         {"q8_0", ggml::kQ8_0, {2, 64}},
      {"q4_0", ggml::kQ4_0, {1, 32}},     {"q4_k", ggml::kQ4_K, {2, 256}},
      {"q6_k", ggml::kQ6_K, {1, 1, 256}}, {"empty", ggml::kF32, {0, 4}},
  };
}

TEST(GgufFile, RoundTripsEveryMetadataTypeAndTensorType) {
  TempDir dir;
  const std::string path = dir.file("all.gguf");
  const auto kvs = everyValueType();
  const auto specs = everyTensorType();
  const auto data = writeFile(path, kvs, specs);
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->alignment(), 32u);
  EXPECT_EQ((*f)->dataOffset() % 32, 0u);
  ASSERT_EQ((*f)->metadata().size(), kvs.size());
  for (size_t k = 0; k < kvs.size(); ++k) {
    EXPECT_EQ((*f)->metadata()[k].first, kvs[k].first);
    EXPECT_TRUE((*f)->metadata()[k].second == kvs[k].second) << kvs[k].first;
  }
  ASSERT_EQ((*f)->tensors().size(), specs.size());
  const size_t sizes[] = {60, 16, 14, 2 * 68, 18, 2 * 144, 210, 0};
  for (size_t k = 0; k < specs.size(); ++k) {
    const TensorInfo& t = (*f)->tensors()[k];
    EXPECT_EQ(t.name, specs[k].name);
    EXPECT_EQ(t.type, specs[k].type);
    EXPECT_EQ(t.shape, specs[k].shape);
    EXPECT_EQ(t.bytes, sizes[k]) << t.name;
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u);
    ASSERT_EQ(data[k].size(), t.bytes);
    EXPECT_EQ(std::memcmp(t.data, data[k].data(), t.bytes), 0) << t.name;
    EXPECT_EQ((*f)->findTensor(specs[k].name), &t);
  }
  // ggml's layout: packed in order, each padded to the alignment.
  EXPECT_EQ((*f)->tensors()[1].offset, 64u);
  EXPECT_EQ((*f)->tensors()[2].offset, 96u);
  EXPECT_EQ(readAll(path).size() % 32, 0u);
  EXPECT_EQ((*f)->findTensor("nope"), nullptr);
}

TEST(GgufFile, TypedGettersConvertWhatFitsAndNameTheKey) {
  TempDir dir;
  const std::string path = dir.file("kv.gguf");
  writeFile(path, everyValueType(), {});
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const GgufFile& g = **f;
  EXPECT_EQ(*g.getU32("t.u8"), 200u);
  EXPECT_EQ(*g.getI64("t.i8"), -100);
  EXPECT_EQ(*g.getU64("t.u64"), UINT64_MAX);
  EXPECT_EQ(*g.getF32("t.f32"), 0.1f);
  EXPECT_EQ(*g.getBool("t.bool"), true);
  EXPECT_EQ(*g.getString("t.string"), "h\xC3\xA9llo");
  EXPECT_EQ((*g.getArray("a.str"))->strs[2], "\xE2\x96\x81the");
  auto neg = g.getU32("t.i8");
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("'t.i8' is negative"), std::string::npos);
  auto big = g.getU32("t.u64");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("'t.u64'"), std::string::npos);
  auto typed = g.getU32("t.string");
  ASSERT_FALSE(typed.ok());
  EXPECT_EQ(typed.status().code(), ErrorCode::kConfig);
  EXPECT_NE(typed.status().message().find("key 't.string' is string, expected an integer"),
            std::string::npos)
      << typed.status().message();
  auto missing = g.getString("general.name");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("key 'general.name' is missing"), std::string::npos);
}

TEST(GgufFile, HonoursGeneralAlignment) {
  TempDir dir;
  const std::string path = dir.file("a64.gguf");
  writeFile(path, {{"general.alignment", Value::u32(64)}},
            {{"a", ggml::kF32, {3}}, {"b", ggml::kQ8_0, {1, 32}}, {"c", ggml::kF16, {5}}});
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->dataOffset() % 64, 0u);
  EXPECT_EQ((*f)->tensors()[1].offset, 64u);
  EXPECT_EQ((*f)->tensors()[2].offset, 128u);
  for (const TensorInfo& t : (*f)->tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u);
  }
  auto bad = GgufWriter::create(dir.file("a48.gguf"), {{"general.alignment", Value::u32(48)}}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("power of two"), std::string::npos);
}

TEST(GgufWriter, RefusesWhatAReaderWouldAndMiscountedData) {
  TempDir dir;
  const std::string p = dir.file("w.gguf");
  auto dup = GgufWriter::create(p, {{"k", Value::u8(1)}, {"k", Value::u8(2)}}, {});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("key 'k': duplicate"), std::string::npos);
  auto dupt = GgufWriter::create(p, {}, {{"t", ggml::kF32, {1}}, {"t", ggml::kF32, {1}}});
  ASSERT_FALSE(dupt.ok());
  EXPECT_NE(dupt.status().message().find("tensor 't': duplicate"), std::string::npos);
  auto longname = GgufWriter::create(p, {}, {{std::string(64, 'x'), ggml::kF32, {1}}});
  EXPECT_FALSE(longname.ok());
  auto blocks = GgufWriter::create(p, {}, {{"q", ggml::kQ4_K, {2, 128}}});
  ASSERT_FALSE(blocks.ok());
  EXPECT_NE(blocks.status().message().find("not whole Q4_K blocks"), std::string::npos);
  Value nested;
  nested.type = ValueType::kArray;
  nested.elem = ValueType::kArray;
  EXPECT_FALSE(GgufWriter::create(p, {{"n", nested}}, {}).ok());

  auto w = GgufWriter::create(p, {}, {{"t", ggml::kF32, {2}}});
  ASSERT_TRUE(w.ok());
  const float x[3] = {1, 2, 3};
  EXPECT_FALSE((*w)->append(x, sizeof(x)).ok());
  auto short_ = GgufWriter::create(p, {}, {{"t", ggml::kF32, {2}}});
  ASSERT_TRUE(short_.ok());
  ASSERT_TRUE((*short_)->append(x, 4).ok());
  auto fin = (*short_)->finish();
  ASSERT_FALSE(fin.ok());
  EXPECT_NE(fin.message().find("0 of 1 tensors"), std::string::npos);
}

TEST(GgufMetadata, MergeSkipsEqualKeysAndRefusesConflicts) {
  std::vector<KeyValue> a = {{"x", Value::u32(1)}, {"y", Value::string("s")}};
  ASSERT_TRUE(mergeMetadata(&a, {{"x", Value::u32(1)}, {"z", Value::boolean(true)}}).ok());
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[2].first, "z");
  auto s = mergeMetadata(&a, {{"y", Value::string("t")}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'y'"), std::string::npos);
}

// ---- malformed files, built byte by byte

class Bytes {
 public:
  Bytes& raw(const std::string& s) {
    b_ += s;
    return *this;
  }
  template <typename T>
  Bytes& le(T v) {
    uint64_t x = 0;
    std::memcpy(&x, &v, sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i) b_.push_back(static_cast<char>(x >> (8 * i)));
    return *this;
  }
  Bytes& u32(uint32_t v) { return le(v); }
  Bytes& u64(uint64_t v) { return le(v); }
  Bytes& str(const std::string& s) {
    u64(s.size());
    return raw(s);
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  // Zero padding to `a`, then `n` data bytes.
  Bytes& data(size_t n, size_t a = 32) {
    while (b_.size() % a) b_.push_back(0);
    b_.append(n, '\x01');
    return *this;
  }
  const std::string& str() const { return b_; }

 private:
  std::string b_;
};

// The error of opening `b` (kIo expected); "" when it opened.
std::string openError(const Bytes& b) {
  auto f = GgufFile::fromMemory(b.str().data(), b.str().size(), "m.gguf");
  if (f.ok()) return "";
  EXPECT_EQ(f.status().code(), ErrorCode::kIo) << f.status().message();
  EXPECT_EQ(f.status().message().rfind("m.gguf: ", 0), 0u) << f.status().message();
  return f.status().message();
}

#define EXPECT_REFUSED(bytes, phrase)                                         \
  do {                                                                        \
    const std::string msg_ = openError(bytes);                                \
    EXPECT_NE(msg_.find(phrase), std::string::npos) << "message: " << msg_; \
  } while (0)

TEST(GgufFile, RefusesBadMagicVersionsAndImpossibleCounts) {
  EXPECT_REFUSED(Bytes().raw("GGUX").u32(3).u64(0).u64(0), "bad magic");
  EXPECT_REFUSED(Bytes().header(0, 0, 1), "version 1 is not supported");
  EXPECT_REFUSED(Bytes().header(0, 0, 0x03000000), "big-endian");
  EXPECT_REFUSED(Bytes().header(0, UINT64_MAX), "metadata count 18446744073709551615");
  EXPECT_REFUSED(Bytes().header(1ull << 40, 0), "tensor count 1099511627776");
  EXPECT_REFUSED(Bytes().raw("GGUF").u32(3), "shorter than the 24-byte GGUF header");
  EXPECT_EQ(openError(Bytes().header(0, 0)), "");
}

TEST(GgufFile, RefusesMalformedMetadataNamingTheKey) {
  EXPECT_REFUSED(Bytes().header(0, 1).u64(1000).raw(std::string(20, 'k')),
                 "entry 0 key: string of 1000 bytes");
  EXPECT_REFUSED(Bytes().header(0, 1).str("k").u32(8).u64(99).raw("abc").u64(0).u64(0),
                 "key 'k': string of 99 bytes runs past the end");
  EXPECT_REFUSED(Bytes().header(0, 1).str("k").u32(13).u32(0).u64(0).u64(0), "value type 13");
  EXPECT_REFUSED(Bytes().header(0, 1).str("k").u32(7).le<uint8_t>(2).u64(0).u64(0),
                 "key 'k': bool value 2");
  EXPECT_REFUSED(Bytes().header(0, 1).str("arr").u32(9).u32(4).u64(1ull << 60).u64(0),
                 "key 'arr': array of 1152921504606846976 u32 elements cannot fit");
  EXPECT_REFUSED(Bytes().header(0, 1).str("arr").u32(9).u32(9).u64(1).u64(0).u64(0),
                 "key 'arr': nested arrays");
  EXPECT_REFUSED(Bytes().header(0, 1).str("arr").u32(9).u32(8).u64(2).str("a").u64(500).u64(0),
                 "key 'arr'[1]: string of 500 bytes");
  EXPECT_REFUSED(Bytes().header(0, 2).str("k").u32(0).le<uint8_t>(1).str("k").u32(0).le<uint8_t>(
                     2).u64(0).u64(0),
                 "key 'k': duplicate key");
  EXPECT_REFUSED(Bytes().header(0, 1).str("general.alignment").u32(4).u32(24).u64(0).u64(0),
                 "'general.alignment' is 24, not a power of two");
  EXPECT_REFUSED(Bytes().header(0, 1).str("general.alignment").u32(10).u64(32).u64(0).u64(0),
                 "'general.alignment' is u64, expected u32");
}

TEST(GgufFile, RefusesMalformedTensorInfosNamingTheTensor) {
  auto one = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data) {
    return Bytes().header(1, 0).tensor("blk.0.w", std::move(ne), type, offset).data(data);
  };
  EXPECT_EQ(openError(one({4, 2}, ggml::kF32, 0, 32)), "");
  EXPECT_REFUSED(one({4, 2}, ggml::kF32, 0, 31), "tensor 'blk.0.w': data [0, 32) runs past");
  EXPECT_REFUSED(one({4, 2}, ggml::kF32, 1ull << 62, 64), "tensor 'blk.0.w': data [");
  EXPECT_REFUSED(one({4, 2}, ggml::kF32, 16, 64), "offset 16 is not a multiple of the alignment");
  EXPECT_REFUSED(one({}, ggml::kF32, 0, 0), "tensor 'blk.0.w': 0 dimensions");
  EXPECT_REFUSED(one({1, 1, 1, 1, 1}, ggml::kF32, 0, 32), "5 dimensions");
  EXPECT_REFUSED(one({4}, 99, 0, 32), "ggml type 99 is unknown");
  EXPECT_REFUSED(one({33}, ggml::kQ8_0, 0, 64), "rows of 33 values are not whole Q8_0 blocks");
  EXPECT_REFUSED(one({1ull << 62, 1ull << 62}, ggml::kF32, 0, 32), "overflows");
  EXPECT_REFUSED(one({UINT64_MAX}, ggml::kF32, 0, 32), "dimension 0 is negative");
  EXPECT_REFUSED(Bytes().header(1, 0).tensor(std::string(64, 'n'), {1}, 0, 0).data(32),
                 "name longer than 63 bytes");
  EXPECT_REFUSED(Bytes().header(1, 0).tensor("t", {4, 2}, 0, 0), "runs past the end");
  EXPECT_REFUSED(Bytes().header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).data(64),
                 "tensor 'a': duplicate tensor name");
  EXPECT_REFUSED(Bytes().header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).data(96),
                 "tensor 'b' overlaps tensor 'a'");
  EXPECT_REFUSED(Bytes().header(1, 1).str("k").u32(8).str(std::string(40, 'x')).str("t").u32(2).u64(
                     4),
                 "tensor 't': truncated");
  EXPECT_REFUSED(one({1ull << 62}, ggml::kF32, 0, 32), "overflows");
}

TEST(GgufFile, EveryTruncationOfAValidFileIsRefused) {
  TempDir dir;
  const std::string path = dir.file("t.gguf");
  writeFile(path, everyValueType(), everyTensorType());
  const std::string bytes = readAll(path);
  auto whole = GgufFile::fromMemory(bytes.data(), bytes.size(), "t.gguf");
  ASSERT_TRUE(whole.ok()) << whole.status().message();
  const TensorInfo& last = (*whole)->tensors()[6];  // the last with data
  const size_t end = (*whole)->dataOffset() + last.offset + last.bytes;
  for (size_t n = 0; n < end; ++n) {
    auto f = GgufFile::fromMemory(bytes.data(), n, "t.gguf");
    ASSERT_FALSE(f.ok()) << "opened with " << n << " of " << bytes.size() << " bytes";
    EXPECT_EQ(f.status().code(), ErrorCode::kIo);
  }
}

TEST(GgufFile, ReadsVersion2) {
  Bytes b;
  b.header(1, 1, 2).str("general.architecture").u32(8).str("gemma3").tensor("t", {8}, 0, 0).data(32);
  auto f = GgufFile::fromMemory(b.str().data(), b.str().size(), "v2.gguf");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ(*(*f)->getString("general.architecture"), "gemma3");
}

// ---- the Gemma mapping

TEST(GgufGemma, TensorNamesMapBothWays) {
  const std::pair<const char*, const char*> pairs[] = {
      {"embed_tokens.weight", "token_embd.weight"},
      {"norm.weight", "output_norm.weight"},
      {"layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
      {"layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
      {"layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight"},
      {"layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight"},
      {"layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"},
      {"layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight"},
      {"layers.1.self_attn.k_norm.weight", "blk.1.attn_k_norm.weight"},
      {"layers.2.post_attention_layernorm.weight", "blk.2.post_attention_norm.weight"},
      {"layers.2.pre_feedforward_layernorm.weight", "blk.2.ffn_norm.weight"},
      {"layers.2.post_feedforward_layernorm.weight", "blk.2.post_ffw_norm.weight"},
      {"layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight"},
      {"layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight"},
      {"layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"},
  };
  for (const auto& [hf, g] : pairs) {
    EXPECT_EQ(ggufTensorName(hf).value_or("?"), g);
    EXPECT_EQ(canonicalTensorNameFromGguf(g).value_or("?"), hf);
  }
  EXPECT_FALSE(ggufTensorName("layers.x.mlp.up_proj.weight"));
  EXPECT_FALSE(ggufTensorName("layers.01.mlp.up_proj.weight"));
  EXPECT_FALSE(canonicalTensorNameFromGguf("rope_freqs.weight"));
  EXPECT_FALSE(canonicalTensorNameFromGguf("blk.0.attn_qkv.weight"));
  EXPECT_EQ(normShift(ModelFamily::kGemma3, "layers.0.self_attn.k_norm.weight"), 1.0f);
  EXPECT_EQ(normShift(ModelFamily::kGemma3, "norm.weight"), 1.0f);
  EXPECT_EQ(normShift(ModelFamily::kGemma3, "layers.0.mlp.up_proj.weight"), 0.0f);
  EXPECT_EQ(normShift(ModelFamily::kGemma4, "norm.weight"), 0.0f);
  EXPECT_TRUE(isGgufPath("m/x.GGUF"));
  EXPECT_FALSE(isGgufPath("gguf"));
}

// A file with only what llama.cpp's converter writes for a Gemma 3 1B-like geometry: the layer
// pattern, local RoPE base and attention scale come from llama.cpp's fixed rules.
TEST(GgufGemma, ConverterKeysAloneGiveLlamaCppsFixedChoices) {
  TempDir dir;
  const std::string path = dir.file("c.gguf");
  const std::string a = "gemma3.";
  std::vector<KeyValue> kv = {
      {"general.architecture", Value::string("gemma3")},
      {a + "context_length", Value::u32(32768)},
      {a + "embedding_length", Value::u32(64)},
      {a + "block_count", Value::u32(7)},
      {a + "feed_forward_length", Value::u32(128)},
      {a + "attention.head_count", Value::u32(4)},
      {a + "attention.head_count_kv", Value::u32(1)},
      {a + "attention.key_length", Value::u32(32)},
      {a + "attention.value_length", Value::u32(32)},
      {a + "attention.layer_norm_rms_epsilon", Value::f32(1e-6f)},
      {a + "rope.freq_base", Value::f32(1e6f)},
      {a + "attention.sliding_window", Value::u32(512)},
      {a + "rope.scaling.type", Value::string("linear")},
      {a + "rope.scaling.factor", Value::f32(8)},
      {"tokenizer.ggml.tokens", Value::stringArray({"<pad>", "<eos>", "<bos>", "<end_of_turn>"})},
      {"tokenizer.ggml.eos_token_id", Value::u32(1)},
  };
  writeFile(path, kv, {{"token_embd.weight", ggml::kBF16, {4, 64}}});
  auto c = loadGgufGemmaConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->vocab, 4);
  EXPECT_EQ(c->n_head_kv, 1);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->sliding_window, 512);
  for (int l = 0; l < 7; ++l) EXPECT_EQ(c->isSliding(l), l != 5) << l;
  EXPECT_EQ(c->rope_sliding.base, 10000.0);
  EXPECT_EQ(c->rope_full.base, 1e6);
  EXPECT_EQ(c->rope_full.type, RopeType::kLinear);
  EXPECT_EQ(c->rope_full.factor, 8.0);
  EXPECT_EQ(c->query_pre_attn_scalar, 32.0);
  EXPECT_EQ(c->eos_ids, (std::vector<int32_t>{1, 3}));  // <end_of_turn> by its text
  EXPECT_EQ(c->bos_id, 2);

  kv[3].second = Value::u32(0);
  writeFile(path, kv, {{"token_embd.weight", ggml::kBF16, {4, 64}}});
  auto bad = loadGgufGemmaConfig(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("key 'gemma3.block_count' is 0"), std::string::npos);
  kv[3].second = Value::u32(7);
  kv[0].second = Value::string("gemma4");  // Gemma 4 reads its own gemma4.* keys
  writeFile(path, kv, {{"token_embd.weight", ggml::kBF16, {4, 64}}});
  bad = loadGgufGemmaConfig(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'gemma4.block_count'"), std::string::npos)
      << bad.status().message();
  kv[0].second = Value::string("llama");
  writeFile(path, kv, {{"token_embd.weight", ggml::kBF16, {4, 64}}});
  bad = loadGgufGemmaConfig(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kConfig);
  EXPECT_NE(bad.status().message().find("'llama'"), std::string::npos);
}

// ---- a Gemma 3 checkpoint written to GGUF

const std::string kFixture = std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma3-ref";

// Every weight the forward pass uses, as (weight, canonical name), in the checkpoint's order.
std::vector<const Weight*> allWeights(const GemmaWeights& w) {
  std::vector<const Weight*> out = {&w.embed};
  for (const GemmaLayerWeights& L : w.layers) {
    for (const Weight* x :
         {&L.input_layernorm, &L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.q_norm, &L.k_norm,
          &L.post_attention_layernorm, &L.pre_feedforward_layernorm,
          &L.post_feedforward_layernorm, &L.gate_proj, &L.up_proj, &L.down_proj}) {
      out.push_back(x);
    }
  }
  out.push_back(&w.final_norm);
  return out;
}

// What llama.cpp's converter does, with our writer and mapping: norms shifted and stored F32,
// matrices as stored (BF16) or quantized to Q8_0 row by row.
//
// `same_address_mod_64`: the AVX-512 BF16 matmul starts with a masked head that brings its loads
// onto 64-byte lines, so its summation order depends on the matrix's address modulo 64. To
// compare logits bit for bit, every BF16 matrix is then placed at the address modulo 64 it has
// in the safetensors mapping (both mappings start on a page): alignment 2 and an I8 filler
// tensor before each tensor, sized once the data section's start is known.
// q8: the matrices in block format `blocks` (Q8_0 unless named), else as stored.
void convert(const Checkpoint& ck, const std::string& path, bool q8,
             bool same_address_mod_64 = false, quant::QType blocks = quant::QType::kQ8_0);

void convert(const Checkpoint& ck, const std::string& path, bool q8, bool same_address_mod_64,
             quant::QType blocks) {
  auto meta = gemmaMetadata(ck.config());
  ASSERT_TRUE(meta.ok()) << meta.status().message();
  const std::vector<const Weight*> weights = allWeights(ck.weights());
  std::vector<GgufTensorSpec> specs;
  std::vector<std::vector<unsigned char>> data;
  for (const Weight* w : weights) {
    const std::string canonical = *canonicalTensorName(w->name);
    const std::optional<std::string> name = ggufTensorName(canonical);
    ASSERT_TRUE(name) << canonical;
    std::vector<float> values(static_cast<size_t>(w->numel()));
    w->toFloat(values.data());
    std::vector<unsigned char> bytes;
    if (w->shape.size() == 1) {
      const float shift = normShift(ck.config().family, canonical);
      for (float& v : values) v += shift;
      specs.push_back({*name, ggml::kF32, w->shape});
      bytes.resize(values.size() * 4);
      std::memcpy(bytes.data(), values.data(), bytes.size());
    } else if (q8) {
      const int64_t rows = w->shape[0], cols = w->shape[1];
      const size_t rb = quant::rowBytes(blocks, cols);
      bytes.resize(rb * static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        quant::quantizeRow(blocks, values.data() + r * cols,
                           bytes.data() + static_cast<size_t>(r) * rb, cols);
      }
      specs.push_back({*name, static_cast<uint32_t>(quant::ggmlType(blocks)), w->shape});
    } else {
      specs.push_back({*name, *ggmlTypeOf(w->dtype), w->shape});
      const auto* p = static_cast<const unsigned char*>(w->data);
      bytes.assign(p, p + w->bytes);
    }
    data.push_back(std::move(bytes));
  }
  if (same_address_mod_64) {
    meta->emplace_back("general.alignment", Value::u32(2));
    std::vector<GgufTensorSpec> padded;
    for (size_t k = 0; k < specs.size(); ++k) {
      padded.push_back({"pad." + std::to_string(k), 24 /* I8 */, {0}});
      padded.push_back(specs[k]);
    }
    // The header's size does not depend on the fillers' sizes: write once to learn it.
    {
      auto w = GgufWriter::create(path, *meta, padded);
      ASSERT_TRUE(w.ok()) << w.status().message();
      for (const auto& d : data) ASSERT_TRUE((*w)->append(d.data(), d.size()).ok());
      ASSERT_TRUE((*w)->finish().ok());
    }
    uint64_t data_offset = 0;
    {
      std::string bytes = readAll(path);
      auto f = GgufFile::fromMemory(bytes.data(), bytes.size(), path);
      ASSERT_TRUE(f.ok()) << f.status().message();
      data_offset = (*f)->dataOffset();
    }
    std::vector<std::vector<unsigned char>> padded_data;
    uint64_t at = 0;  // data-relative position of the next filler
    for (size_t k = 0; k < specs.size(); ++k) {
      const Weight* w = weights[k];
      const uint64_t want =
          w->shape.size() == 2 && !q8 ? reinterpret_cast<uintptr_t>(w->data) % 64 : 0;
      const uint64_t filler = (want + 64 - (data_offset + at) % 64) % 64;
      padded[2 * k].shape = {static_cast<int64_t>(filler)};
      padded_data.emplace_back(filler, 0);
      padded_data.push_back(data[k]);
      at += filler + (data[k].size() + 1) / 2 * 2;
    }
    specs = std::move(padded);
    data = std::move(padded_data);
  }
  auto writer = GgufWriter::create(path, *meta, specs);
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  for (const auto& d : data) ASSERT_TRUE((*writer)->append(d.data(), d.size()).ok());
  ASSERT_TRUE((*writer)->finish().ok());
}

std::vector<float> runPrompt(Model& m, const std::vector<int32_t>& tokens) {
  const int64_t V = m.config().vocab;
  const int n = static_cast<int>(tokens.size());
  auto kv = m.newKvCache(n, n);
  std::vector<float> logits(tokens.size() * size_t(V));
  std::vector<SeqBatchItem> b = {{kv.get(), tokens.data(), n, true, logits.data()}};
  EXPECT_TRUE(m.forward(b).ok());
  return logits;
}

std::vector<int32_t> prompt() {
  std::vector<int32_t> tokens = {2};
  for (int i = 1; i < 24; ++i) tokens.push_back((i * 37 + 11) % 500 + 3);
  return tokens;
}

// The two models give the same logits for prompt(), bit for bit.
void expectIdenticalLogits(const api::StatusOr<std::unique_ptr<Model>>& a,
                           const api::StatusOr<std::unique_ptr<Model>>& b) {
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  const std::vector<float> x = runPrompt(**a, prompt());
  const std::vector<float> y = runPrompt(**b, prompt());
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
}

TEST(GgufCheckpoint, ConfigAndWeightsMatchTheSafetensorsOriginal) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  auto st = Checkpoint::open(kFixture);
  ASSERT_TRUE(st.ok()) << st.status().message();
  convert(**st, path, false);
  auto gg = Checkpoint::open(path);
  ASSERT_TRUE(gg.ok()) << gg.status().message();
  const GemmaConfig& a = (*st)->config();
  const GemmaConfig& b = (*gg)->config();
  EXPECT_EQ(b.hidden, a.hidden);
  EXPECT_EQ(b.intermediate, a.intermediate);
  EXPECT_EQ(b.n_layer, a.n_layer);
  EXPECT_EQ(b.n_head, a.n_head);
  EXPECT_EQ(b.n_head_kv, a.n_head_kv);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.vocab, a.vocab);
  EXPECT_EQ(b.max_positions, a.max_positions);
  EXPECT_EQ(b.sliding_window, a.sliding_window);
  EXPECT_EQ(b.is_sliding, a.is_sliding);
  EXPECT_EQ(b.rope_full.base, a.rope_full.base);
  EXPECT_EQ(b.rope_full.factor, a.rope_full.factor);
  EXPECT_EQ(b.rope_full.type, a.rope_full.type);
  EXPECT_EQ(b.rope_sliding.base, a.rope_sliding.base);
  EXPECT_EQ(b.attn_scale, a.attn_scale);
  EXPECT_EQ(b.embed_scale, a.embed_scale);
  EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
  EXPECT_EQ(b.bos_id, a.bos_id);
  EXPECT_EQ(b.pad_id, a.pad_id);
  EXPECT_EQ(b.eos_ids, a.eos_ids);
  const auto wa = allWeights((*st)->weights()), wb = allWeights((*gg)->weights());
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t k = 0; k < wa.size(); ++k) {
    EXPECT_EQ(wb[k]->shape, wa[k]->shape) << wb[k]->name;
    EXPECT_EQ(wb[k]->file, path);
    for (int64_t i = 0; i < wa[k]->numel(); ++i) {
      // Norms come back as fl32(fl32(1 + w) - 1): 1 + that is exactly what the forward pass
      // computes from the original.
      if (wa[k]->shape.size() == 1) {
        ASSERT_EQ(1.0f + wb[k]->at(i), 1.0f + wa[k]->at(i)) << wb[k]->name << "[" << i << "]";
      } else {
        ASSERT_EQ(wb[k]->at(i), wa[k]->at(i)) << wb[k]->name << "[" << i << "]";
      }
    }
  }
  EXPECT_TRUE((*gg)->unusedTensors().empty());
}

TEST(GgufCheckpoint, Bf16GgufGivesBitIdenticalLogits) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  {
    auto st = Checkpoint::open(kFixture);
    ASSERT_TRUE(st.ok()) << st.status().message();
    convert(**st, path, false, /*same_address_mod_64=*/true);
    auto gg = Checkpoint::open(path);
    ASSERT_TRUE(gg.ok()) << gg.status().message();
    const auto wa = allWeights((*st)->weights()), wb = allWeights((*gg)->weights());
    for (size_t k = 0; k < wa.size(); ++k) {
      if (wa[k]->shape.size() != 2) continue;
      ASSERT_EQ(reinterpret_cast<uintptr_t>(wb[k]->data) % 64,
                reinterpret_cast<uintptr_t>(wa[k]->data) % 64);
    }
  }
  expectIdenticalLogits(Model::load(kFixture, 2), Model::load(path, 2));
}

TEST(GgufCheckpoint, Q8_0GgufMatchesQuantizeOnLoadBitForBit) {
  TempDir dir;
  const std::string path = dir.file("model-q8_0.gguf");
  {
    auto st = Checkpoint::open(kFixture);
    ASSERT_TRUE(st.ok()) << st.status().message();
    convert(**st, path, true);
  }
  auto ck = Checkpoint::open(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ((*ck)->weights().layers[0].q_proj.dtype, DType::kQ8_0);
  EXPECT_EQ((*ck)->weights().embed.dtype, DType::kQ8_0);
  auto ref = Model::load(kFixture, 2, quant::QType::kQ8_0);
  auto gg = Model::load(path, 2);
  auto gg_q4 = Model::load(path, 2, quant::QType::kQ4_0);  // stored blocks are kept as they are
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  ASSERT_TRUE(gg.ok()) << gg.status().message();
  ASSERT_TRUE(gg_q4.ok()) << gg_q4.status().message();
  const std::vector<float> a = runPrompt(**ref, prompt());
  const std::vector<float> b = runPrompt(**gg, prompt());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_EQ(runPrompt(**gg_q4, prompt()), b);
}

TEST(GgufCheckpoint, Q5_0GgufMatchesQuantizeOnLoadBitForBit) {
  // Q5_0 matrices (ggml type 6) read as stored run the same kernels as Q5_0 quantized on load.
  TempDir dir;
  const std::string path = dir.file("model-q5_0.gguf");
  {
    auto st = Checkpoint::open(kFixture);
    ASSERT_TRUE(st.ok()) << st.status().message();
    convert(**st, path, true, false, quant::QType::kQ5_0);
  }
  auto ck = Checkpoint::open(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ((*ck)->weights().layers[0].q_proj.dtype, DType::kQ5_0);
  EXPECT_EQ((*ck)->weights().embed.dtype, DType::kQ5_0);
  auto ref = Model::load(kFixture, 2, quant::QType::kQ5_0);
  auto gg = Model::load(path, 2);
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  ASSERT_TRUE(gg.ok()) << gg.status().message();
  const std::vector<float> a = runPrompt(**ref, prompt());
  const std::vector<float> b = runPrompt(**gg, prompt());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(GgufCheckpoint, MissingOrUnsupportedTensorsAreNamed) {
  TempDir dir;
  auto st = Checkpoint::open(kFixture);
  ASSERT_TRUE(st.ok()) << st.status().message();
  auto meta = gemmaMetadata((*st)->config());
  ASSERT_TRUE(meta.ok());
  const std::string path = dir.file("partial.gguf");
  writeFile(path, *meta, {{"token_embd.weight", ggml::kBF16, {512, 64}}});
  auto ck = Checkpoint::open(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), ErrorCode::kConfig);
  EXPECT_NE(ck.status().message().find("missing tensor 'blk.0.attn_norm.weight' (text tensor "
                                       "'layers.0.input_layernorm.weight'"),
            std::string::npos)
      << ck.status().message();
  writeFile(path, *meta, {{"token_embd.weight", 7 /* Q5_1 */, {512, 64}}});
  ck = Checkpoint::open(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("tensor 'token_embd.weight': ggml type Q5_1 is not "
                                       "supported"),
            std::string::npos)
      << ck.status().message();
  // A tensor of the wrong shape, and a norm stored block-quantized.
  std::vector<GgufTensorSpec> specs;
  for (const Weight* w : allWeights((*st)->weights())) {
    const std::string name = *ggufTensorName(*canonicalTensorName(w->name));
    specs.push_back({name, w->shape.size() == 1 ? ggml::kF32 : ggml::kBF16, w->shape});
  }
  specs[1].type = ggml::kQ8_0;  // blk.0.attn_norm.weight [64]
  writeFile(path, *meta, specs);
  ck = Checkpoint::open(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("tensor 'blk.0.attn_norm.weight': a Q8_0 vector"),
            std::string::npos)
      << ck.status().message();
  specs[1].type = ggml::kF32;
  specs[2].shape = {32, 64};  // blk.0.attn_q.weight is [Hq*D, H] = [64, 64]
  writeFile(path, *meta, specs);
  ck = Checkpoint::open(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("tensor 'blk.0.attn_q.weight': shape [32, 64], expected "
                                       "[64, 64]"),
            std::string::npos)
      << ck.status().message();
  std::string garbage = "GGUF";
  std::ofstream(dir.file("bad.gguf"), std::ios::binary) << garbage;
  ck = Checkpoint::open(dir.file("bad.gguf"));
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), ErrorCode::kIo);
}

// ---- a Gemma 4 checkpoint written to GGUF

// Every text tensor of a safetensors checkpoint as the converter writes it (any family): 1-D
// tensors F32 with the family's norm shift, matrices and expert stacks as stored or quantized
// (`blocks`) where their rows are whole blocks; Gemma 4 gets rope_freqs.
void convertAll(const Checkpoint& ck, const std::string& path, std::optional<quant::QType> blocks) {
  auto meta = gemmaMetadata(ck.config());
  ASSERT_TRUE(meta.ok()) << meta.status().message();
  const std::set<std::string> unused(ck.unusedTensors().begin(), ck.unusedTensors().end());
  std::vector<GgufTensorSpec> specs;
  std::vector<std::vector<unsigned char>> data;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const std::string& file : ck.files()) {
    auto f = SafetensorsFile::open(file);
    ASSERT_TRUE(f.ok()) << f.status().message();
    for (const std::string& stored : (*f)->names()) {
      const std::optional<std::string> canonical = canonicalTensorName(stored);
      if (!canonical || unused.count(stored)) continue;
      const std::optional<std::string> name = ggufTensorName(*canonical);
      ASSERT_TRUE(name) << *canonical;
      const TensorView& v = *(*f)->find(stored);
      Weight w;
      w.data = v.data;
      w.dtype = v.dtype;
      w.shape = v.shape;
      w.bytes = v.bytes;
      std::vector<float> values(static_cast<size_t>(w.numel()));
      w.toFloat(values.data());
      std::vector<unsigned char> bytes;
      const int64_t cols = v.shape.back(), rows = w.numel() / cols;
      const std::optional<quant::QType> q =
          blocks && v.shape.size() >= 2 ? quant::formatForColumns(*blocks, cols) : std::nullopt;
      if (v.shape.size() == 1) {
        const float shift = normShift(ck.config().family, *canonical);
        for (float& x : values) x += shift;
        specs.push_back({*name, ggml::kF32, v.shape});
        bytes.resize(values.size() * 4);
        std::memcpy(bytes.data(), values.data(), bytes.size());
      } else if (q) {
        const size_t rb = quant::rowBytes(*q, cols);
        bytes.resize(rb * static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) {
          quant::quantizeRow(*q, values.data() + r * cols, bytes.data() + size_t(r) * rb, cols);
        }
        specs.push_back({*name, static_cast<uint32_t>(quant::ggmlType(*q)), v.shape});
      } else {
        specs.push_back({*name, *ggmlTypeOf(v.dtype), v.shape});
        const auto* p = static_cast<const unsigned char*>(v.data);
        bytes.assign(p, p + v.bytes);
      }
      data.push_back(std::move(bytes));
    }
    files.push_back(std::move(*f));
  }
  const std::vector<bool>& sliding = ck.config().is_sliding;
  if (ck.config().isGemma4() && std::find(sliding.begin(), sliding.end(), false) != sliding.end()) {
    const std::vector<float> freqs = ropeFreqs(ck.config());
    specs.push_back({std::string(kRopeFreqsTensor), ggml::kF32,
                     {static_cast<int64_t>(freqs.size())}});
    data.emplace_back(reinterpret_cast<const unsigned char*>(freqs.data()),
                      reinterpret_cast<const unsigned char*>(freqs.data() + freqs.size()));
  }
  auto writer = GgufWriter::create(path, *meta, specs);
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  for (const auto& d : data) ASSERT_TRUE((*writer)->append(d.data(), d.size()).ok());
  ASSERT_TRUE((*writer)->finish().ok());
}

void expectSameGeometry(const GemmaConfig& a, const GemmaConfig& b) {
  EXPECT_EQ(b.family, a.family);
  EXPECT_EQ(b.hidden, a.hidden);
  EXPECT_EQ(b.n_layer, a.n_layer);
  EXPECT_EQ(b.n_head, a.n_head);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.global_head_dim, a.global_head_dim);
  EXPECT_EQ(b.vocab, a.vocab);
  EXPECT_EQ(b.max_positions, a.max_positions);
  EXPECT_EQ(b.sliding_window, a.sliding_window);
  EXPECT_EQ(b.is_sliding, a.is_sliding);
  EXPECT_EQ(b.n_kv_shared, a.n_kv_shared);
  EXPECT_EQ(b.attention_k_eq_v, a.attention_k_eq_v);
  EXPECT_EQ(b.double_wide_mlp, a.double_wide_mlp);
  EXPECT_EQ(b.moe.n_expert, a.moe.n_expert);
  EXPECT_EQ(b.moe.top_k, a.moe.top_k);
  EXPECT_EQ(b.moe.intermediate, a.moe.intermediate);
  EXPECT_EQ(b.ple_dim, a.ple_dim);
  if (a.ple_dim > 0) {  // unused without PLE
    EXPECT_EQ(b.ple_vocab, a.ple_vocab);
  }
  EXPECT_EQ(b.final_softcap, a.final_softcap);
  EXPECT_EQ(b.rope_full.base, a.rope_full.base);
  EXPECT_EQ(b.rope_full.type, a.rope_full.type);
  EXPECT_EQ(b.rope_full.rotatedPairs(b.global_head_dim), a.rope_full.rotatedPairs(a.global_head_dim));
  EXPECT_EQ(b.rope_sliding.base, a.rope_sliding.base);
  EXPECT_EQ(b.attn_scale, a.attn_scale);
  EXPECT_EQ(b.embed_scale, a.embed_scale);
  EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
  EXPECT_EQ(b.bos_id, a.bos_id);
  ASSERT_EQ(b.layers.size(), a.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerGeometry &x = a.layers[l], &y = b.layers[l];
    EXPECT_EQ(y.sliding, x.sliding) << "layer " << l;
    EXPECT_EQ(y.head_dim, x.head_dim) << "layer " << l;
    EXPECT_EQ(y.n_head_kv, x.n_head_kv) << "layer " << l;
    EXPECT_EQ(y.window, x.window) << "layer " << l;
    EXPECT_EQ(y.k_eq_v, x.k_eq_v) << "layer " << l;
    EXPECT_EQ(y.kv_source, x.kv_source) << "layer " << l;
    EXPECT_EQ(y.intermediate, x.intermediate) << "layer " << l;
  }
}

// Both Gemma 4 fixtures (KV sharing, double-wide MLP, PLE; K=V with its own KV heads, experts):
// the config comes back from the gemma4.* keys alone, and a Q8_0 file runs to the same logits as
// the safetensors checkpoint quantized on load, bit for bit.
TEST(GgufCheckpoint, Gemma4ConfigAndQ8_0LogitsMatchTheSafetensorsOriginal) {
  for (const char* name : {"gemma4-tiny-e", "gemma4-tiny-moe"}) {
    SCOPED_TRACE(name);
    const std::string dir_in = std::string(SY_SOURCE_DIR) + "/tests/fixtures/" + name;
    TempDir dir;
    const std::string path = dir.file("model.gguf");
    {
      auto st = Checkpoint::open(dir_in);
      ASSERT_TRUE(st.ok()) << st.status().message();
      convertAll(**st, path, quant::QType::kQ8_0);
      auto gg = Checkpoint::open(path);
      ASSERT_TRUE(gg.ok()) << gg.status().message();
      expectSameGeometry((*st)->config(), (*gg)->config());
      EXPECT_TRUE((*gg)->unusedTensors().empty());
    }
    expectIdenticalLogits(Model::load(dir_in, 2, quant::QType::kQ8_0), Model::load(path, 2));
  }
}

// The tiny-e fixture (KV sharing, PLE) written to GGUF at `path` by convertAll, opened.
std::unique_ptr<GgufFile> tinyGemma4Gguf(const std::string& path) {
  auto st = Checkpoint::open(std::string(SY_SOURCE_DIR) + "/tests/fixtures/gemma4-tiny-e");
  EXPECT_TRUE(st.ok()) << st.status().message();
  if (!st.ok()) return nullptr;
  convertAll(**st, path, std::nullopt);
  auto f = GgufFile::open(path);
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(f).value() : nullptr;
}

// `f`'s tensors under metadata `kv`, written to `out`.
void rewriteGguf(const GgufFile& f, const std::vector<KeyValue>& kv, const std::string& out) {
  std::vector<GgufTensorSpec> specs;
  for (const TensorInfo& t : f.tensors()) specs.push_back({t.name, t.type, t.shape});
  auto w = GgufWriter::create(out, kv, specs);
  ASSERT_TRUE(w.ok()) << w.status().message();
  for (const TensorInfo& t : f.tensors()) ASSERT_TRUE((*w)->append(t.data, t.bytes).ok());
  ASSERT_TRUE((*w)->finish().ok());
}

// What a Gemma 4 file must hold, named when it does not.
TEST(GgufCheckpoint, Gemma4KeysThatCannotBeReadAreNamed) {
  TempDir dir;
  std::unique_ptr<GgufFile> f = tinyGemma4Gguf(dir.file("good.gguf"));
  ASSERT_TRUE(f);
  auto rewrite = [&](const std::string& key, std::optional<Value> value) {
    std::vector<KeyValue> kv;
    for (const KeyValue& x : f->metadata()) {
      if (x.first != key) kv.push_back(x);
      else if (value) kv.emplace_back(key, *value);
    }
    const std::string path = dir.file("bad.gguf");
    rewriteGguf(*f, kv, path);
    auto ck = Checkpoint::open(path);
    EXPECT_FALSE(ck.ok());
    return ck.ok() ? std::string() : ck.status().message();
  };
  EXPECT_NE(rewrite("gemma4.attention.sliding_window_pattern", std::nullopt)
                .find("gemma4.attention.sliding_window_pattern"),
            std::string::npos);
  EXPECT_NE(rewrite("gemma4.feed_forward_length", Value::intArray(ValueType::kI32, {1, 2, 3}))
                .find("3 entries for 6 layers"),
            std::string::npos);
  EXPECT_NE(rewrite("gemma4.attention.key_length_swa", std::nullopt)
                .find("gemma4.attention.key_length_swa"),
            std::string::npos);
  EXPECT_NE(rewrite("gemma4.rope.dimension_count_swa", Value::u32(4)).find("dimension_count"),
            std::string::npos);
  EXPECT_NE(rewrite("gemma4.attention.sliding_window", Value::u32(0))
                .find("gemma4.attention.sliding_window"),
            std::string::npos);
  EXPECT_NE(rewrite("gemma4.final_logit_softcapping", Value::f32(-30)).find("softcapping"),
            std::string::npos);
  // KV heads per layer must be the config's for every layer that keeps its own K/V.
  EXPECT_NE(rewrite("gemma4.attention.head_count_kv",
                    Value::intArray(ValueType::kI32, {2, 2, 1, 2, 2, 2}))
                .find("gives layer 2 1 KV heads"),
            std::string::npos);
}

// The eos set of a Gemma 4 file: its eos id, and <eos>, <turn|> and <|tool_response> by their
// text (HF's generation_config stops on all three; llama.cpp adds them by text too).
TEST(GgufCheckpoint, Gemma4EosSetHasTheTurnAndToolResponseTokens) {
  TempDir dir;
  std::unique_ptr<GgufFile> f = tinyGemma4Gguf(dir.file("model.gguf"));
  ASSERT_TRUE(f);
  std::vector<KeyValue> kv = f->metadata();
  std::vector<std::string> tokens;
  for (int i = 0; i < 512; ++i) tokens.push_back("t" + std::to_string(i));
  tokens[1] = "<eos>";
  tokens[50] = "<|tool_response>";
  tokens[106] = "<turn|>";
  kv.emplace_back("tokenizer.ggml.tokens", Value::stringArray(tokens));
  for (auto& [key, value] : kv) {
    if (key == "tokenizer.ggml.eos_token_id") value = Value::u32(106);
  }
  const std::string out = dir.file("with-vocab.gguf");
  rewriteGguf(*f, kv, out);
  auto ck = Checkpoint::open(out);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  std::vector<int32_t> eos = (*ck)->config().eos_ids;
  std::sort(eos.begin(), eos.end());
  EXPECT_EQ(eos, (std::vector<int32_t>{1, 50, 106}));
}

// The fuzz seed tests/fuzz/corpus/gguf/gemma4_tiny.gguf (2 KB: gemma4.* keys with a sliding and
// a K=V full layer, PLE, experts, rope_freqs, a tokenizer and a chat template; no weights) must
// reach the end of the Gemma 4 reader, or the fuzzer would start from an early refusal.
TEST(GgufGemma, TheGemma4FuzzSeedResolvesToAConfig) {
  const std::string path = std::string(SY_SOURCE_DIR) + "/tests/fuzz/corpus/gguf/gemma4_tiny.gguf";
  auto c = loadGgufGemmaConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->isGemma4());
  EXPECT_EQ(c->n_layer, 2);
  EXPECT_TRUE(c->layer(0).sliding);
  EXPECT_FALSE(c->layer(1).sliding);
  EXPECT_TRUE(c->layer(1).k_eq_v);
  EXPECT_EQ(c->layer(1).head_dim, 8);
  EXPECT_EQ(c->moe.n_expert, 4);
  EXPECT_EQ(c->ple_dim, 2);
  EXPECT_EQ(c->final_softcap, 30.0f);
  EXPECT_EQ(c->rope_full.rotatedPairs(c->global_head_dim), 1);
  EXPECT_EQ(c->eos_ids, (std::vector<int32_t>{1}));
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.ok());
  auto tok = tokenizerDataFromGguf(**file);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(tok->model, "gemma4");
  auto tmpl = loadGgufChatTemplate(path);
  ASSERT_TRUE(tmpl.ok() && *tmpl) << tmpl.status().message();
  std::vector<api::Message> messages(1);
  messages[0].content = api::Content::ofText("hi");
  auto text = (*tmpl)->render(messages, {}, false, jinja::Json::object());
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_EQ(*text, "<bos><|turn>user\nhi<turn|>\n");
}

// ---- the engine on a .gguf model_dir

struct Collect : TokenSink {
  std::vector<int32_t> ids;
  std::promise<FinishEvent> done;
  void onToken(const TokenEvent& e) override { ids.push_back(e.id); }
  void onFinish(const FinishEvent& e) override { done.set_value(e); }
};

std::vector<int32_t> greedy(Engine& e) {
  GenerationRequest r;
  r.prompt = prompt();
  r.max_tokens = 12;
  r.sampling.temperature = 0;
  auto sink = std::make_shared<Collect>();
  auto h = e.submit(r, sink);
  EXPECT_TRUE(h.ok()) << h.status().message();
  if (!h.ok()) return {};
  const FinishEvent fin = sink->done.get_future().get();
  EXPECT_TRUE(fin.status.ok()) << fin.status.message();
  return sink->ids;
}

TEST(GgufEngine, AGgufModelDirLoadsWithTheTokenizerBesideItAndGeneratesAsTheOriginal) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  (void)tok;
  TempDir gg_dir, st_dir;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(testing::gemmaTokenizerDir() + "/" + f, gg_dir.file(f));
    fs::copy_file(testing::gemmaTokenizerDir() + "/" + f, st_dir.file(f));
  }
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) {
    fs::copy_file(kFixture + "/" + f, st_dir.file(f));
  }
  const std::string path = gg_dir.file("model.gguf");
  {
    auto st = Checkpoint::open(kFixture);
    ASSERT_TRUE(st.ok()) << st.status().message();
    convert(**st, path, true);  // Q8_0: logits equal to quantize-on-load q8_0
  }
  EngineOptions o;
  o.threads = 2;
  o.max_context = 64;
  o.model_dir = path;
  auto from_gguf = Engine::create(o);
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.status().message();
  o.model_dir = st_dir.file("");
  o.quantize = "q8_0";
  auto from_st = Engine::create(o);
  ASSERT_TRUE(from_st.ok()) << from_st.status().message();
  EXPECT_EQ((*from_gguf)->eosIds(), (*from_st)->eosIds());
  const std::vector<int32_t> a = greedy(**from_gguf);
  EXPECT_EQ(a.size(), 12u);
  EXPECT_EQ(a, greedy(**from_st));

  TempDir bare;
  fs::copy_file(path, bare.file("model.gguf"));
  o.model_dir = bare.file("model.gguf");
  auto no_tokenizer = Engine::create(o);
  ASSERT_FALSE(no_tokenizer.ok());
  EXPECT_NE(no_tokenizer.status().message().find("tokenizer.json"), std::string::npos)
      << no_tokenizer.status().message();
}

TEST(GgufEngine, TheTokenizerComesFromTheFileWhenItCarriesOne) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  auto data = exportGgufTokenizerDir(testing::gemmaTokenizerDir());
  ASSERT_TRUE(data.ok()) << data.status().message();
  // The keys the writer (switchyard-cli quantize) puts in a file, read back field for field.
  std::vector<KeyValue> kv = tokenizerMetadata(*data);
  TempDir dir;  // no tokenizer.json here: it must come from the metadata
  const std::string path = dir.file("tok.gguf");
  writeFile(path, kv, {});
  auto read = GgufFile::open(path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  auto back = tokenizerDataFromGguf(**read);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->tokens, data->tokens);
  EXPECT_EQ(back->scores, data->scores);
  EXPECT_EQ(back->token_type, data->token_type);
  EXPECT_EQ(back->model, data->model);
  EXPECT_EQ(back->pre, data->pre);
  EXPECT_EQ(back->merges, data->merges);
  EXPECT_EQ(back->bos_id, data->bos_id);
  EXPECT_EQ(back->eos_id, data->eos_id);
  EXPECT_EQ(back->unknown_id, data->unknown_id);
  EXPECT_EQ(back->padding_id, data->padding_id);
  EXPECT_EQ(back->add_space_prefix, data->add_space_prefix);
  EXPECT_EQ(back->add_bos, data->add_bos);
  EXPECT_EQ(back->add_eos, data->add_eos);
  EXPECT_EQ(back->chat_template, data->chat_template);
  auto loaded = loadGgufTokenizer(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ((*loaded)->vocabSize(), tok->vocabSize());
  const std::string text = "Hello world, <start_of_turn>user\nGGUF über alles 123";
  EXPECT_EQ((*loaded)->encode(text, true), tok->encode(text, true));

  for (auto& [key, value] : kv) {
    if (key == gguf_tokenizer_keys::kScores) value = Value::string("not scores");
  }
  writeFile(path, kv, {});
  auto bad = loadGgufTokenizer(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer.ggml.scores"), std::string::npos)
      << bad.status().message();
}

TEST(GgufEngine, TheChatTemplateComesFromTheFileBeforeTheFilesBesideIt) {
  SY_REQUIRE_GEMMA_TOKENIZER(tok);
  (void)tok;
  auto data = exportGgufTokenizerDir(testing::gemmaTokenizerDir());
  ASSERT_TRUE(data.ok()) << data.status().message();
  ASSERT_FALSE(data->chat_template.empty());
  auto reference = ChatTemplate::loadDir(testing::gemmaTokenizerDir());
  ASSERT_TRUE(reference.ok() && *reference) << reference.status().message();
  std::vector<api::Message> messages(3);
  messages[0].role = api::Role::kSystem;
  messages[0].content = api::Content::ofText("Answer briefly.");
  messages[1].content = api::Content::ofText("Hi there");
  messages[2].role = api::Role::kAssistant;
  messages[2].content = api::Content::ofText("Hello!");
  messages.push_back(messages[1]);
  auto want = (*reference)->render(messages, {}, true, jinja::Json::object());
  ASSERT_TRUE(want.ok()) << want.status().message();
  ASSERT_EQ(want->rfind("<bos>", 0), 0u) << *want;  // bos_token reaches the template

  TempDir dir;
  // A different template beside the file: the file's own wins, as in llama.cpp.
  {
    std::ofstream(dir.file("chat_template.jinja")) << "sidecar {{ messages[0]['content'] }}";
  }
  const std::string path = dir.file("model.gguf");
  writeFile(path, tokenizerMetadata(*data), {});
  auto from_file = loadModelChatTemplate(path);
  ASSERT_TRUE(from_file.ok()) << from_file.status().message();
  ASSERT_TRUE(*from_file);
  auto got = (*from_file)->render(messages, {}, true, jinja::Json::object());
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, *want);

  // Without tokenizer.chat_template the files beside it are used.
  GgufTokenizerData bare = *data;
  bare.chat_template.clear();
  writeFile(path, tokenizerMetadata(bare), {});
  auto beside = loadModelChatTemplate(path);
  ASSERT_TRUE(beside.ok() && *beside) << beside.status().message();
  auto sidecar = (*beside)->render(messages, {}, true, jinja::Json::object());
  ASSERT_TRUE(sidecar.ok()) << sidecar.status().message();
  EXPECT_EQ(*sidecar, "sidecar Answer briefly.");

  // A template that does not parse names the file and the key.
  GgufTokenizerData broken = *data;
  broken.chat_template = "{% if %}";
  writeFile(path, tokenizerMetadata(broken), {});
  auto bad = loadModelChatTemplate(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kConfig);
  EXPECT_NE(bad.status().message().find("tokenizer.chat_template"), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find(path), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace engine::gguf
