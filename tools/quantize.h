// The GGUF writing path of switchyard-cli (tools/cmd_quantize.cpp), shared by `quantize` (a
// Hugging Face checkpoint in) and `make-test-model --format gguf` (random weights in): a Gemma
// text model written as llama.cpp's convert_hf_to_gguf.py followed by llama-quantize would
// write it. The names and the model metadata come from engine/gguf_gemma.h, the tokenizer
// metadata from engine/tokenizer_gguf.h, the block formats from engine/quant.
//
// Which ggml type each tensor gets (llama.cpp's src/llama-quant.cpp, no importance matrix):
//   - 1-D tensors (the norms) are F32 in every file type; Gemma 3 norms hold fl32(1 + w).
//   - f32 / bf16: every matrix F32 / BF16 (convert_hf_to_gguf.py --outtype f32 / bf16).
//   - q8_0: every matrix Q8_0.
//   - q4_0: every matrix Q4_0, except the embedding tables token_embd (which is also the output
//     matrix: Gemma ties them) and Gemma 4's per_layer_token_embd, which get Q6_K.
//   - q4_k_m: Q4_K, except the embedding tables Q6_K, and Q6_K for attn_v and ffn_down (the
//     experts' ffn_down_exps too) in the layers where llama.cpp's use_more_bits(i, n) holds:
//     i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2 (i counts attn_v tensors resp. layers, n their
//     number), i.e. about half of them.
//   - Gemma 4: the router (ffn_gate_inp) stays F32 and per_layer_model_proj BF16 in every
//     quantized type, as llama-quantize leaves them.
//   - A matrix whose row length is not a whole number of blocks falls back as llama.cpp's
//     tensor_type_fallback does (quant::formatForColumns): Q4_K -> Q5_0, Q6_K -> Q8_0, and
//     anything whose rows are not multiples of 32 -> F16.
// The values are quantized from fp32 copies of the checkpoint's values (BF16/F16/F32), so a
// file equals llama-quantize's output from a BF16 or F32 conversion (not from an F16 one, which
// rounds BF16 weights first).
//
// Streaming: tensors are read, converted and written a chunk of rows at a time; the whole model
// is never in memory (the reader maps the checkpoint; the writer appends).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/tokenizer_gguf.h"

namespace tools {

// llama.cpp's file types (llama_ftype) that the tools write.
enum class GgufFileType { kF32, kBF16, kQ8_0, kQ4_0, kQ4_K_M };

// "f32", "bf16", "q8_0", "q4_0", "q4_k_m" (lower case, as llama-quantize's names); nullopt else.
std::optional<GgufFileType> parseGgufFileType(std::string_view name);
std::string_view ggufFileTypeName(GgufFileType type);
// general.file_type: LLAMA_FTYPE_ALL_F32 0, MOSTLY_BF16 32, MOSTLY_Q8_0 7, MOSTLY_Q4_0 2,
// MOSTLY_Q4_K_M 15.
uint32_t llamaFileType(GgufFileType type);

// The ggml type of one tensor (GGUF name, row-major shape) in a file of `type`, by the rules
// above. `i_attn_v` / `n_attn_v`: this attn_v's index among the file's attn_v tensors and their
// number; `layer` / `n_layer`: the block of an ffn_down and the model's block count. *fallback
// is set when the row length forced a fallback.
uint32_t chooseGgmlType(GgufFileType type, std::string_view gguf_name,
                        const std::vector<int64_t>& shape, int i_attn_v, int n_attn_v, int layer,
                        int n_layer, bool* fallback);

// One tensor to write: its HF canonical text name (engine::canonicalTensorName) and row-major
// shape as the checkpoint has it; `dtype` is how the source stores its values (BF16, F16 or
// F32; the converter adds the norm shift in that precision for F16).
struct GgufSourceTensor {
  std::string canonical;
  std::vector<int64_t> shape;
  engine::DType dtype = engine::DType::kF32;
};

// Fills out[rows * cols] with rows [row, row + rows) of tensor `index` (of the list given to
// writeGemmaGguf) as the checkpoint's values, cols = the last dimension. Rows of one tensor are
// asked for in order, tensors in the order of the list.
using RowSource =
    std::function<api::Status(size_t index, int64_t row, int64_t rows, float* out)>;

// Quantization threads when none are asked for: the CPU count, at most 16.
int defaultQuantizeThreads();

struct GgufWriteOptions {
  GgufFileType type = GgufFileType::kQ8_0;
  std::string name;  // general.name (the converter writes the model's directory name)
  int threads = 1;   // quantization threads
};

struct GgufWriteSummary {
  size_t tensors = 0;
  uint64_t data_bytes = 0;               // tensor bytes, without padding
  std::map<std::string, int> by_type;    // "Q4_K" -> count
  std::vector<std::string> fallbacks;    // "blk.0.attn_q.weight: Q4_K -> Q5_0 (64 columns)"
  int64_t vocab_rows = 0;                // token_embd rows written (= tokenizer tokens)
};

// Writes `out`: metadata (engine::gguf::gemmaMetadata(config), general.file_type, general.name,
// then the tokenizer's keys; a special id both sides give is the tokenizer's, as the converter
// writes it), the tensors in llama-quantize's order (tensors outside the blocks by
// name, then block by block, by name within a block), token_embd cut to the tokenizer's length
// as the converter cuts it. Fails with kConfig for a config or tensor GGUF cannot carry (names
// the tensor), kIo for a file error (names the file).
api::Status writeGemmaGguf(const std::string& out, const engine::GemmaConfig& config,
                           const engine::GgufTokenizerData& tokenizer,
                           const std::vector<GgufSourceTensor>& tensors, const RowSource& rows,
                           const GgufWriteOptions& options, GgufWriteSummary* summary);

// The tokenizer metadata of a model directory as the converter writes it for `config` (Gemma 3:
// SentencePiece kind, padded to config.vocab; Gemma 4: its own kind).
api::StatusOr<engine::GgufTokenizerData> exportTokenizerFor(const std::string& dir,
                                                            const engine::GemmaConfig& config);

// One line per ggml type for a summary: "Q4_K 120, Q6_K 40, F32 105".
std::string describeTypes(const GgufWriteSummary& summary);

}  // namespace tools
