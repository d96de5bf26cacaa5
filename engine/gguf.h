// GGUF files (llama.cpp's model container, versions 2 and 3, little-endian only): a read-only,
// memory-mapped reader that validates the whole header before handing out a single tensor, and
// a streaming writer that lays files out exactly as ggml's own writer does. Nothing here is
// model-specific; engine/gguf_gemma.h maps Gemma onto it.
//
// Layout (ggml/src/gguf.cpp, docs/gguf.md in llama.cpp):
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count
//   kv_count x (string key, u32 value type, value)        -- metadata
//   tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//   zero padding to `general.alignment` (u32, default 32)
//   data section: tensor bytes at their offsets (relative to the section, multiples of the
//   alignment); ggml's writer packs them in info order, each padded to the alignment.
// A string is u64 length + bytes (no NUL). An array is u32 element type, u64 count, elements.
// ne[] is fastest-varying first: a [rows, cols] row-major matrix is stored as ne = {cols, rows}.
// This API speaks row-major (shape = ne reversed, like safetensors and Hugging Face).
//
// Every reader error is a Status (ErrorCode::kIo) whose message names the file and the key or
// tensor at fault. Typed getters fail with kConfig naming the file and key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/status.h"
#include "engine/safetensors.h"

namespace engine::gguf {

// Metadata value types, numbered as in the file.
enum class ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
std::string_view valueTypeName(ValueType t);  // "u8", ..., "array"

// ggml tensor type ids as GGUF stores them (ggml.h's enum ggml_type).
namespace ggml {
constexpr uint32_t kF32 = 0;
constexpr uint32_t kF16 = 1;
constexpr uint32_t kQ4_0 = 2;
constexpr uint32_t kQ5_0 = 6;
constexpr uint32_t kQ8_0 = 8;
constexpr uint32_t kQ4_K = 12;
constexpr uint32_t kQ6_K = 14;
constexpr uint32_t kBF16 = 30;
}  // namespace ggml

// Block geometry of a ggml type: values per block and bytes per block (1 and the element size
// for plain types). Known: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q8_K, I8..I64, F64,
// BF16 (so that files holding types the engine does not run still open and name them).
struct TypeTraits {
  std::string_view name;  // "F32", "Q4_K", ...
  int block_values = 1;
  size_t block_bytes = 0;
};
std::optional<TypeTraits> typeTraits(uint32_t ggml_type);
// Bytes of a row of n values; nullopt for an unknown type or n not a whole number of blocks.
std::optional<uint64_t> rowBytes(uint32_t ggml_type, int64_t n);
// The engine DType of a ggml type (F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_K, Q6_K) and back.
std::optional<DType> dtypeOf(uint32_t ggml_type);
std::optional<uint32_t> ggmlTypeOf(DType dtype);

// One metadata value. Scalars: unsigned integers and bools in `u`, signed in `i`, reals in `f`,
// strings in `s`. Arrays (type kArray, element type `elem`; arrays of arrays are refused, as by
// ggml): unsigned/bool elements in `uints`, signed in `ints`, reals in `reals`, strings in
// `strs`. Build them with the factories.
struct Value {
  ValueType type = ValueType::kU32;
  ValueType elem = ValueType::kU8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<uint64_t> uints;
  std::vector<int64_t> ints;
  std::vector<double> reals;
  std::vector<std::string> strs;

  static Value u8(uint8_t v);
  static Value i8(int8_t v);
  static Value u16(uint16_t v);
  static Value i16(int16_t v);
  static Value u32(uint32_t v);
  static Value i32(int32_t v);
  static Value u64(uint64_t v);
  static Value i64(int64_t v);
  static Value f32(float v);
  static Value f64(double v);
  static Value boolean(bool v);
  static Value string(std::string v);
  // Arrays; `elem` says how the elements are written (an unsigned/bool, signed or real type
  // for the numeric factories; values are cast to it).
  static Value uintArray(ValueType elem, std::vector<uint64_t> v);
  static Value intArray(ValueType elem, std::vector<int64_t> v);
  static Value realArray(ValueType elem, std::vector<double> v);
  static Value stringArray(std::vector<std::string> v);

  bool isArray() const { return type == ValueType::kArray; }
  // Number of elements of an array (0 for a scalar).
  size_t size() const;
  bool operator==(const Value& o) const;
};

using KeyValue = std::pair<std::string, Value>;

// Appends `more` to `into` for one writer: a key already in `into` with an equal value is
// skipped (the model and tokenizer sides both know bos/eos ids), with a different value it is
// kConfig naming the key.
api::Status mergeMetadata(std::vector<KeyValue>* into, const std::vector<KeyValue>& more);

// One tensor inside a mapped file.
struct TensorInfo {
  std::string name;
  uint32_t type = ggml::kF32;  // ggml type id
  std::vector<int64_t> shape;  // row-major: ne reversed; [] never (n_dims >= 1)
  uint64_t offset = 0;         // from the start of the data section
  const void* data = nullptr;  // into the mapping; aligned to the file's alignment
  size_t bytes = 0;            // = rows * rowBytes(type, shape.back())

  int64_t numel() const;
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  static constexpr int kMaxDims = 4;           // GGML_MAX_DIMS
  static constexpr size_t kMaxNameBytes = 63;  // GGML_MAX_NAME - 1

  // Maps `path` read-only and validates: magic, version (2 or 3), counts against the bytes
  // that could hold them, every string inside the file and valid as a length, value types,
  // bools 0/1, no nested arrays, duplicate keys, general.alignment (a u32 power of two),
  // tensor names (non-empty, <= 63 bytes, unique), n_dims 1..4, dims >= 0 with a product that
  // fits, known ggml types with rows of whole blocks, offsets aligned and inside the data
  // section, and no two tensors overlapping. Fails with kIo naming the file and the key or
  // tensor.
  static api::StatusOr<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Same over an in-memory image that is NOT copied and must outlive the result; `name`
  // stands for the path in messages (tests and the fuzzer).
  static api::StatusOr<std::unique_ptr<GgufFile>> fromMemory(const void* data, size_t size,
                                                             std::string name);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t dataOffset() const { return data_offset_; }
  size_t fileBytes() const { return size_; }

  // Metadata in file order.
  const std::vector<KeyValue>& metadata() const { return kvs_; }
  // nullptr when absent.
  const Value* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed reads; kConfig "<file>: key '<key>' is missing" / "... is <type>, expected ...".
  // Integer getters take any integer type whose value fits; getF32/getF64 take f32 or f64.
  api::StatusOr<uint32_t> getU32(std::string_view key) const;
  api::StatusOr<uint64_t> getU64(std::string_view key) const;
  api::StatusOr<int64_t> getI64(std::string_view key) const;
  api::StatusOr<float> getF32(std::string_view key) const;
  api::StatusOr<double> getF64(std::string_view key) const;
  api::StatusOr<bool> getBool(std::string_view key) const;
  api::StatusOr<std::string> getString(std::string_view key) const;
  // An array (any element type); the pointer lives as long as the file.
  api::StatusOr<const Value*> getArray(std::string_view key) const;

  // Tensors in the order of their infos.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* findTensor(std::string_view name) const;

 private:
  GgufFile() = default;
  api::Status parse();

  std::string path_;
  const unsigned char* base_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kvs_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// What the writer needs to know about a tensor before any data is written.
struct GgufTensorSpec {
  std::string name;
  uint32_t type = ggml::kF32;  // ggml type id (typeTraits must know it)
  std::vector<int64_t> shape;  // row-major, 1..4 dims
};

// Writes a GGUF v3 file without holding it in memory, laid out as ggml's writer does: header,
// metadata in the order given, tensor infos in the order given, padding, then each tensor at
// the next multiple of the alignment (zero padding, the last one padded too). create() checks
// everything a reader would (duplicate keys and names, name lengths, shapes of whole blocks,
// nested arrays) and writes everything but the data; append() then takes the tensors' bytes in
// order, in pieces of any size, inserting the padding; finish() checks that exactly the declared
// bytes arrived and closes the file. `general.alignment` in the metadata, if given, must be a
// u32 power of two and sets the alignment (default 32). Fails with kIo naming the file.
class GgufWriter {
 public:
  static api::StatusOr<std::unique_ptr<GgufWriter>> create(
      const std::string& path, const std::vector<KeyValue>& metadata,
      const std::vector<GgufTensorSpec>& tensors);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  api::Status append(const void* data, size_t bytes);
  api::Status finish();

  // Bytes each declared tensor takes (without padding), in order.
  const std::vector<uint64_t>& tensorBytes() const { return sizes_; }

 private:
  GgufWriter() = default;
  api::Status writePadding(uint64_t n);

  std::string path_;
  std::FILE* file_ = nullptr;
  uint32_t alignment_ = GgufFile::kDefaultAlignment;
  std::vector<uint64_t> sizes_;
  size_t current_ = 0;       // tensor being appended
  uint64_t in_current_ = 0;  // bytes of it already written
};

}  // namespace engine::gguf
