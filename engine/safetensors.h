// Safetensors files (gemma-spec §4.1): a read-only, memory-mapped reader that validates the
// whole header before handing out a single tensor, and a streaming writer.
//
// The reader never copies weights: a TensorView points into the mapping and stays valid for as
// long as the SafetensorsFile lives. Every error is a Status (ErrorCode::kIo) whose message names
// the file and, where one is at fault, the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace engine {

// The dtype strings of the safetensors header, in the format's own order.
enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
  kF8E4M3,
  kF8E5M2,
  // Block-quantized matrices (llama.cpp layouts, engine/quant/quant.h). Never in a safetensors
  // header: weights quantized on load or read from GGUF. Rows are whole blocks.
  kQ8_0,
  kQ4_0,
  kQ4_K,
  kQ6_K,
  kQ5_0,
};

// Bytes per element (1 for BOOL and the fp8 types; 0 for the block formats, whose size is per
// block: quant::rowBytes).
size_t dtypeSize(DType dtype);
// The header spelling: "BF16", "F32", ... ("Q8_0", "Q5_0", "Q4_0", "Q4_K", "Q6_K" for the block
// formats).
std::string_view dtypeName(DType dtype);
// nullopt for a string the format does not define (the block formats included).
std::optional<DType> parseDType(std::string_view name);

// One tensor inside a mapped file: little-endian, C (row-major) order, no strides.
struct TensorView {
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;  // [] for a scalar; dims may be 0
  const void* data = nullptr;  // points into the mapping; not necessarily aligned to dtypeSize
  size_t bytes = 0;            // = numel() * dtypeSize(dtype)

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // The reference implementation refuses headers above 100 MB; so do we.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps `path` read-only and validates its header: the length prefix, JSON syntax, duplicate
  // keys, dtypes, shapes, offsets inside the data section, sizes = prod(shape) * dtype size,
  // and no two tensors overlapping. Fails with kIo.
  static api::StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);

  // Same validation over an in-memory image that is NOT copied and must outlive the result.
  // `name` stands for the path in error messages. (Tests and the header fuzzer use it.)
  static api::StatusOr<std::unique_ptr<SafetensorsFile>> fromMemory(const void* data, size_t size,
                                                                    std::string name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // nullptr when the file has no tensor of that name.
  const TensorView* find(std::string_view name) const;
  // Tensor names in the order of their data in the file.
  const std::vector<std::string>& names() const { return names_; }
  // The optional "__metadata__" object (string -> string); empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Size of the whole file, header included.
  size_t fileBytes() const { return size_; }

 private:
  SafetensorsFile() = default;
  api::Status parse();

  std::string path_;
  const unsigned char* base_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

// What the writer needs to know about a tensor before any data is written.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
};

// Writes a safetensors file without holding it in memory: create() writes the header (padded
// with spaces so that the data starts 8-byte aligned) and lays the tensors out back to back in
// the order given (no gaps: the format's reference reader refuses them), so every tensor must
// start at a multiple of its element size; list wider dtypes first. append() then takes their
// bytes in that order, in pieces of any size, and finish() checks that exactly the declared
// number of bytes arrived. Fails with kIo.
class SafetensorsWriter {
 public:
  static api::StatusOr<std::unique_ptr<SafetensorsWriter>> create(
      const std::string& path, const std::vector<TensorSpec>& tensors,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  api::Status append(const void* data, size_t bytes);
  api::Status finish();

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t expected_ = 0;
  uint64_t written_ = 0;
};

}  // namespace engine
