// switchyard-cli quantize: a Hugging Face Gemma checkpoint directory written as one GGUF file,
// as llama.cpp's convert_hf_to_gguf.py and llama-quantize would write it (tools/quantize.h has
// the rules), so that llama.cpp, Ollama and the embedded engine load the same file.
#include "tools/quantize.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/bf16.h"
#include "engine/checkpoint.h"
#include "engine/gguf.h"
#include "engine/gguf_gemma.h"
#include "engine/quant/quant.h"
#include "tools/cli.h"

namespace tools {

namespace {

namespace fs = std::filesystem;
namespace gg = engine::gguf::ggml;
using engine::gguf::KeyValue;
using engine::gguf::Value;
using engine::gguf::ValueType;

constexpr struct {
  GgufFileType type;
  const char* name;
  uint32_t ftype;
} kFileTypes[] = {
    {GgufFileType::kF32, "f32", 0},     {GgufFileType::kBF16, "bf16", 32},
    {GgufFileType::kQ8_0, "q8_0", 7},   {GgufFileType::kQ4_0, "q4_0", 2},
    {GgufFileType::kQ4_K_M, "q4_k_m", 15},
};

api::Status configError(std::string message) {
  return api::Status(api::ErrorCode::kConfig, std::move(message));
}

// "blk.12.attn_v.weight" -> 12; -1 outside the blocks (llama.cpp's weight_name_comparer).
int blockOf(std::string_view name) {
  int layer = -1;
  if (std::sscanf(std::string(name).c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// llama-quant.cpp's use_more_bits.
bool useMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

std::string_view typeName(uint32_t t) {
  auto traits = engine::gguf::typeTraits(t);
  return traits ? traits->name : std::string_view("?");
}

// llama.cpp's tensor_type_fallback (Q4_K -> Q5_0, Q6_K -> Q8_0; see quantize.h).
uint32_t fallbackFor(uint32_t want, int64_t cols, bool* fallback) {
  auto q = engine::quant::fromGgmlType(static_cast<int>(want));
  if (!q || cols % engine::quant::blockValues(*q) == 0) return want;
  *fallback = true;
  if (auto f = engine::quant::formatForColumns(*q, cols)) {
    return static_cast<uint32_t>(engine::quant::ggmlType(*f));
  }
  return gg::kF16;
}

}  // namespace

std::optional<GgufFileType> parseGgufFileType(std::string_view name) {
  for (const auto& f : kFileTypes) {
    if (name == f.name) return f.type;
  }
  return std::nullopt;
}

std::string_view ggufFileTypeName(GgufFileType type) {
  for (const auto& f : kFileTypes) {
    if (f.type == type) return f.name;
  }
  return "?";
}

uint32_t llamaFileType(GgufFileType type) {
  for (const auto& f : kFileTypes) {
    if (f.type == type) return f.ftype;
  }
  return 0;
}

uint32_t chooseGgmlType(GgufFileType type, std::string_view name,
                        const std::vector<int64_t>& shape, int i_attn_v, int n_attn_v, int layer,
                        int n_layer, bool* fallback) {
  *fallback = false;
  // llama.cpp quantizes tensors of 2+ dims whose name ends in "weight", never the norms.
  const bool matrix = shape.size() >= 2 && name.ends_with("weight") && !contains(name, "_norm.");
  if (!matrix) return gg::kF32;
  // Gemma 4's router: the converter stores it F32 and llama-quantize leaves ffn_gate_inp alone.
  if (contains(name, "ffn_gate_inp.")) return gg::kF32;
  if (type == GgufFileType::kF32) return gg::kF32;
  if (type == GgufFileType::kBF16) return gg::kBF16;
  const int64_t cols = shape.back();
  const uint32_t base = type == GgufFileType::kQ8_0   ? gg::kQ8_0
                        : type == GgufFileType::kQ4_0 ? gg::kQ4_0
                                                      : gg::kQ4_K;
  uint32_t want = base;
  // llama-quantize never quantizes Gemma 4's PLE projection; it stays as converted (BF16).
  if (name == "per_layer_model_proj.weight") return gg::kBF16;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") {
    // The embedding tables (token_embd is also the output matrix: Gemma ties them): Q6_K below
    // Q8_0, falling back to Q8_0 and then F16 on rows that are not whole blocks.
    if (base != gg::kQ8_0) want = gg::kQ6_K;
  } else if (type == GgufFileType::kQ4_K_M) {
    if (contains(name, "attn_v.weight") && useMoreBits(i_attn_v, n_attn_v)) want = gg::kQ6_K;
    if (contains(name, "ffn_down") && useMoreBits(layer, n_layer)) want = gg::kQ6_K;
  }
  return fallbackFor(want, cols, fallback);
}

api::StatusOr<engine::GgufTokenizerData> exportTokenizerFor(const std::string& dir,
                                                            const engine::GemmaConfig& config) {
  engine::GgufTokenizerExportOptions options;
  options.kind = config.isGemma4() ? engine::GgufTokenizerKind::kGemma4
                                   : engine::GgufTokenizerKind::kSentencePiece;
  options.vocab_size = static_cast<int32_t>(config.vocab);
  auto data = engine::exportGgufTokenizerDir(dir, options);
  if (data.ok() || data.status().code() != api::ErrorCode::kConfig) return data;
  // The converter drops added tokens whose ids are past config.json's vocab_size, with a
  // warning ("ignore token N: id is out of range"): Gemma 3 1B's <image_soft_token> (262144).
  options.vocab_size = 0;
  auto all = engine::exportGgufTokenizerDir(dir, options);
  if (!all.ok() || static_cast<int64_t>(all->tokens.size()) <= config.vocab) return data;
  const size_t keep = static_cast<size_t>(config.vocab);
  for (size_t id = keep; id < all->tokens.size(); ++id) {
    const auto type = static_cast<engine::GgufTokenType>(all->token_type[id]);
    if (type != engine::GgufTokenType::kControl && type != engine::GgufTokenType::kUserDefined) {
      return data;  // only added tokens may go; the export's own error says why not
    }
    std::fprintf(stderr, "note: token %zu '%s' is past vocab_size %zu: left out\n", id,
                 all->tokens[id].c_str(), keep);
  }
  all->tokens.resize(keep);
  all->token_type.resize(keep);
  if (!all->scores.empty()) all->scores.resize(keep);
  return all;
}

std::string describeTypes(const GgufWriteSummary& summary) {
  std::string out;
  for (const auto& [name, n] : summary.by_type) {
    if (!out.empty()) out += ", ";
    out += name + " " + std::to_string(n);
  }
  return out;
}

namespace {

// Planned::source of rope_freqs.weight, which no checkpoint tensor gives.
constexpr size_t kGeneratedRopeFreqs = SIZE_MAX;

// One tensor as it goes into the file.
struct Planned {
  size_t source = 0;  // index into the caller's list
  std::string name;   // GGUF name
  std::vector<int64_t> shape;
  uint32_t type = gg::kF32;
  float shift = 0;  // the converter's norm shift
  int64_t rows = 0, cols = 0;
};

api::StatusOr<std::vector<Planned>> planTensors(const engine::GemmaConfig& config,
                                                const std::vector<GgufSourceTensor>& tensors,
                                                int64_t vocab_rows, const GgufWriteOptions& opt,
                                                GgufWriteSummary* summary) {
  std::vector<Planned> plan;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufSourceTensor& t = tensors[i];
    auto name = engine::gguf::ggufTensorName(t.canonical);
    if (!name) return configError("tensor '" + t.canonical + "' has no GGUF name");
    if (t.shape.empty() || t.shape.size() > 4) {
      return configError("tensor '" + t.canonical + "' has an unsupported rank");
    }
    Planned p{i, *name, t.shape};
    if (*name == "token_embd.weight" || *name == "per_layer_token_embd.weight") {
      if (vocab_rows > p.shape[0]) {
        return configError("the tokenizer has " + std::to_string(vocab_rows) +
                           " tokens but embed_tokens only " + std::to_string(p.shape[0]) +
                           " rows");
      }
      p.shape[0] = vocab_rows;  // the converter drops the rows past the vocabulary
    }
    p.cols = p.shape.back();
    p.rows = 1;
    for (size_t d = 0; d + 1 < p.shape.size(); ++d) p.rows *= p.shape[d];
    p.shift = engine::gguf::normShift(config.family, t.canonical);
    plan.push_back(std::move(p));
  }
  const bool any_full = std::find(config.is_sliding.begin(), config.is_sliding.end(), false) !=
                        config.is_sliding.end();
  if (config.isGemma4() && any_full) {  // generated: the full layers' RoPE frequency factors
    const int64_t half = config.global_head_dim / 2;
    plan.push_back({kGeneratedRopeFreqs, std::string(engine::gguf::kRopeFreqsTensor), {half},
                    gg::kF32, 0, 1, half});
  }
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    const int la = blockOf(a.name), lb = blockOf(b.name);
    return la != lb ? la < lb : a.name < b.name;
  });
  int n_attn_v = 0, i_attn_v = 0;
  for (const Planned& p : plan) n_attn_v += contains(p.name, "attn_v.weight") ? 1 : 0;
  for (Planned& p : plan) {
    bool fallback = false;
    p.type = chooseGgmlType(opt.type, p.name, p.shape, i_attn_v, n_attn_v, blockOf(p.name),
                            config.n_layer, &fallback);
    if (contains(p.name, "attn_v.weight")) ++i_attn_v;
    if (fallback) {
      summary->fallbacks.push_back(p.name + ": " + std::string(typeName(p.type)) + " (" +
                                   std::to_string(p.cols) + " columns)");
    }
    ++summary->by_type[std::string(typeName(p.type))];
  }
  return plan;
}

// Rows of fp32 values -> the bytes of `type`, split over `threads`.
void encodeRows(uint32_t type, const float* in, int64_t rows, int64_t cols, unsigned char* out,
                size_t row_bytes, int threads) {
  auto run = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = in + r * cols;
      unsigned char* o = out + static_cast<size_t>(r) * row_bytes;
      if (type == gg::kF32) {
        std::memcpy(o, x, row_bytes);
      } else if (type == gg::kF16 || type == gg::kBF16) {
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t h = type == gg::kF16 ? engine::quant::floatToF16(x[c])
                                              : engine::floatToBf16(x[c]);
          std::memcpy(o + 2 * c, &h, 2);
        }
      } else {
        engine::quant::quantizeRow(*engine::quant::fromGgmlType(int(type)), x, o, cols);
      }
    }
  };
  const int n = static_cast<int>(std::clamp<int64_t>(threads, 1, rows));
  if (n == 1) return run(0, rows);
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) pool.emplace_back(run, rows * t / n, rows * (t + 1) / n);
  for (std::thread& th : pool) th.join();
}

api::Status writeTensor(const engine::GemmaConfig& config, const Planned& p,
                        const std::vector<GgufSourceTensor>& tensors, const RowSource& rows,
                        int threads, engine::gguf::GgufWriter* writer) {
  if (p.source == kGeneratedRopeFreqs) {
    const std::vector<float> v = engine::gguf::ropeFreqs(config);
    return writer->append(v.data(), v.size() * sizeof(float));
  }
  const GgufSourceTensor& src = tensors[p.source];
  constexpr int64_t kChunkValues = int64_t{1} << 22;  // 16 MB of fp32 per chunk
  const int64_t chunk_rows = std::max<int64_t>(1, kChunkValues / std::max<int64_t>(p.cols, 1));
  const size_t row_bytes = *engine::gguf::rowBytes(p.type, p.cols);
  std::vector<float> in;
  std::vector<unsigned char> out;
  for (int64_t r = 0; r < p.rows; r += chunk_rows) {
    const int64_t n = std::min(chunk_rows, p.rows - r);
    in.resize(static_cast<size_t>(n * p.cols));
    if (api::Status st = rows(p.source, r, n, in.data()); !st.ok()) return st;
    if (p.shift != 0) {
      for (float& v : in) {
        v += p.shift;  // fp32, or fp16 when the checkpoint is fp16 (as torch adds)
        if (src.dtype == engine::DType::kF16) v = engine::f16ToFloat(engine::quant::floatToF16(v));
      }
    }
    out.resize(static_cast<size_t>(n) * row_bytes);
    encodeRows(p.type, in.data(), n, p.cols, out.data(), row_bytes, threads);
    if (api::Status st = writer->append(out.data(), out.size()); !st.ok()) return st;
  }
  return api::Status();
}

}  // namespace

api::Status writeGemmaGguf(const std::string& out, const engine::GemmaConfig& config,
                           const engine::GgufTokenizerData& tokenizer,
                           const std::vector<GgufSourceTensor>& tensors, const RowSource& rows,
                           const GgufWriteOptions& options, GgufWriteSummary* summary) {
  auto model_kvs = engine::gguf::gemmaMetadata(config);
  if (!model_kvs.ok()) return model_kvs.status();
  std::vector<KeyValue> kvs;
  for (KeyValue& kv : *model_kvs) {
    kvs.push_back(std::move(kv));
    if (kvs.size() == 1) {  // after general.architecture, as the converter orders them
      kvs.emplace_back("general.type", Value::string("model"));
      if (!options.name.empty()) kvs.emplace_back("general.name", Value::string(options.name));
      kvs.emplace_back("general.file_type", Value::u32(llamaFileType(options.type)));
    }
  }
  // The converter writes the special ids from the tokenizer files (gguf-py's SpecialVocab), so
  // where the model config says otherwise (config.json's eos 1 against an instruction-tuned
  // tokenizer_config.json's <end_of_turn> 106) the tokenizer's id is the one written.
  const std::vector<KeyValue> tok_kvs = engine::gguf::tokenizerMetadata(tokenizer);
  std::erase_if(kvs, [&](const KeyValue& kv) {
    for (const auto& [key, value] : tok_kvs) {
      if (key != kv.first) continue;
      if (!(value == kv.second)) {
        std::fprintf(stderr, "note: %s: %llu from the tokenizer (the model config says %llu)\n",
                     key.c_str(), static_cast<unsigned long long>(value.u),
                     static_cast<unsigned long long>(kv.second.u));
      }
      return true;
    }
    return false;
  });
  if (api::Status st = engine::gguf::mergeMetadata(&kvs, tok_kvs); !st.ok()) return st;

  *summary = GgufWriteSummary{};
  summary->vocab_rows = static_cast<int64_t>(tokenizer.tokens.size());
  auto plan = planTensors(config, tensors, summary->vocab_rows, options, summary);
  if (!plan.ok()) return plan.status();
  std::vector<engine::gguf::GgufTensorSpec> specs;
  for (const Planned& p : *plan) specs.push_back({p.name, p.type, p.shape});
  auto writer = engine::gguf::GgufWriter::create(out, kvs, specs);
  if (!writer.ok()) return writer.status();
  for (const Planned& p : *plan) {
    api::Status st = writeTensor(config, p, tensors, rows, options.threads, writer->get());
    if (!st.ok()) return st;
  }
  if (api::Status st = (*writer)->finish(); !st.ok()) return st;
  summary->tensors = plan->size();
  for (uint64_t b : (*writer)->tensorBytes()) summary->data_bytes += b;
  return api::Status();
}

int defaultQuantizeThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(n, 1u, 16u));
}

namespace {

// Rows of a checkpoint tensor (BF16, F16 or F32, row-major) as fp32.
void toFloatRows(const void* data, engine::DType dtype, int64_t first, int64_t count, float* out) {
  if (dtype == engine::DType::kF32) {
    std::memcpy(out, static_cast<const float*>(data) + first, static_cast<size_t>(count) * 4);
    return;
  }
  const auto* h = static_cast<const unsigned char*>(data) + first * 2;
  for (int64_t i = 0; i < count; ++i) {
    uint16_t v;
    std::memcpy(&v, h + 2 * i, 2);
    out[i] = dtype == engine::DType::kBF16 ? engine::bf16ToFloat(v) : engine::f16ToFloat(v);
  }
}

// The text model's tensors of an opened checkpoint, by their safetensors entries.
struct CheckpointTensors {
  std::vector<std::unique_ptr<engine::SafetensorsFile>> files;
  std::vector<GgufSourceTensor> list;
  std::vector<const engine::TensorView*> views;
};

api::StatusOr<CheckpointTensors> listTensors(const engine::Checkpoint& ckpt) {
  CheckpointTensors out;
  const std::set<std::string> unused(ckpt.unusedTensors().begin(), ckpt.unusedTensors().end());
  for (const std::string& path : ckpt.files()) {
    auto file = engine::SafetensorsFile::open(path);
    if (!file.ok()) return file.status();
    for (const std::string& stored : (*file)->names()) {
      if (unused.count(stored)) continue;
      auto canonical = engine::canonicalTensorName(stored);
      if (!canonical) continue;
      const engine::TensorView* v = (*file)->find(stored);
      if (v->dtype != engine::DType::kBF16 && v->dtype != engine::DType::kF16 &&
          v->dtype != engine::DType::kF32) {
        return configError(path + ": tensor '" + stored + "' is " +
                           std::string(engine::dtypeName(v->dtype)) +
                           "; quantize reads BF16, F16 or F32");
      }
      out.list.push_back({*canonical, v->shape, v->dtype});
      out.views.push_back(v);
    }
    out.files.push_back(std::move(*file));
  }
  return out;
}

void printUsage(FILE* out) {
  std::fprintf(
      out,
      "usage: switchyard-cli quantize --model DIR --type TYPE --out FILE.gguf [--threads N]\n\n"
      "Writes a Hugging Face Gemma 3 or Gemma 4 text checkpoint (config.json,\n"
      "model.safetensors or shards, tokenizer.json, tokenizer_config.json) as one GGUF file,\n"
      "as llama.cpp's "
      "convert_hf_to_gguf.py and llama-quantize write it: llama.cpp, Ollama and the embedded\n"
      "engine load it. The checkpoint is streamed, never held in memory.\n\n"
      "  --model DIR    the checkpoint directory\n"
      "  --type TYPE    f32, bf16, q8_0, q4_0 or q4_k_m (llama-quantize's Q4_K_M mix: Q6_K for\n"
      "                 token_embd and about half of attn_v / ffn_down, Q4_K elsewhere)\n"
      "  --out FILE     the .gguf file to write (replaced if it exists)\n"
      "  --threads N    quantization threads (default: the CPU count, at most 16)\n");
}

int quantizeModel(const std::string& model_dir, GgufFileType type, const std::string& out,
                  int threads) {
  auto ckpt = engine::Checkpoint::open(model_dir);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "quantize: %s\n", ckpt.status().message().c_str());
    return 1;
  }
  const engine::GemmaConfig& config = (*ckpt)->config();
  auto tokenizer = exportTokenizerFor(model_dir, config);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "quantize: %s\n", tokenizer.status().message().c_str());
    return 1;
  }
  auto tensors = listTensors(**ckpt);
  if (!tensors.ok()) {
    std::fprintf(stderr, "quantize: %s\n", tensors.status().message().c_str());
    return 1;
  }
  const CheckpointTensors& ct = *tensors;
  RowSource rows = [&ct](size_t index, int64_t row, int64_t count, float* dst) {
    const engine::TensorView* v = ct.views[index];
    const int64_t cols = ct.list[index].shape.back();
    toFloatRows(v->data, v->dtype, row * cols, count * cols, dst);
    return api::Status();
  };
  GgufWriteOptions options{type, fs::path(model_dir).lexically_normal().filename().string(),
                           threads};
  if (options.name.empty()) options.name = fs::path(model_dir).parent_path().filename().string();
  GgufWriteSummary summary;
  const std::string tmp = out + ".part";
  api::Status st = writeGemmaGguf(tmp, config, *tokenizer, ct.list, rows, options, &summary);
  std::error_code ec;
  if (st.ok()) {
    fs::rename(tmp, out, ec);
    if (ec) st = api::Status(api::ErrorCode::kIo, "cannot rename " + tmp + " to " + out + ": " +
                                                      ec.message());
  }
  if (!st.ok()) {
    fs::remove(tmp, ec);
    std::fprintf(stderr, "quantize: %s\n", st.message().c_str());
    return 1;
  }
  for (const std::string& f : summary.fallbacks) std::fprintf(stderr, "fallback: %s\n", f.c_str());
  if (const std::string note = engine::gguf::llamaCppDifference(config); !note.empty()) {
    std::fprintf(stderr, "note: %s\n", note.c_str());
  }
  std::printf("wrote %s: %s, %zu tensors (%s), %.1f MB of tensor data, %lld vocabulary rows\n",
              out.c_str(), std::string(ggufFileTypeName(type)).c_str(), summary.tensors,
              describeTypes(summary).c_str(), static_cast<double>(summary.data_bytes) / 1e6,
              static_cast<long long>(summary.vocab_rows));
  return 0;
}

int runQuantize(int argc, char** argv) {
  std::string model_dir, type_name, out, threads_text;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      printUsage(stdout);
      return 0;
    }
    if ((a == "--model" && value(&model_dir)) || (a == "--type" && value(&type_name)) ||
        (a == "--out" && value(&out)) || (a == "--threads" && value(&threads_text))) {
      continue;
    }
    std::fprintf(stderr, "quantize: unknown or incomplete option '%s'\n\n", a.c_str());
    printUsage(stderr);
    return 2;
  }
  if (model_dir.empty() || type_name.empty() || out.empty()) {
    std::fprintf(stderr, "quantize: --model, --type and --out are required\n\n");
    printUsage(stderr);
    return 2;
  }
  const auto type = parseGgufFileType(type_name);
  if (!type) {
    std::fprintf(stderr, "quantize: unknown --type '%s' (f32, bf16, q8_0, q4_0, q4_k_m)\n",
                 type_name.c_str());
    return 2;
  }
  int threads = defaultQuantizeThreads();
  if (!threads_text.empty()) {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(threads_text.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || n < 1 || n > 256) {
      std::fprintf(stderr, "quantize: --threads wants an integer in [1, 256]\n");
      return 2;
    }
    threads = static_cast<int>(n);
  }
  if (!fs::is_directory(model_dir)) {
    std::fprintf(stderr, "quantize: --model %s is not a directory\n", model_dir.c_str());
    return 1;
  }
  return quantizeModel(model_dir, *type, out, threads);
}

}  // namespace

}  // namespace tools

static const bool kRegistered = tools::registerCommand(
    "quantize", "write a Gemma checkpoint as a GGUF file (llama.cpp's types)",
    &tools::runQuantize);
