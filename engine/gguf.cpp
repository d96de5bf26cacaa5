#include "engine/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include "engine/mapped_file.h"
#include "engine/quant/quant.h"

namespace engine::gguf {
namespace {

using api::ErrorCode;
using api::Status;

Status ioError(std::string message) { return Status(ErrorCode::kIo, std::move(message)); }
Status configError(std::string message) { return Status(ErrorCode::kConfig, std::move(message)); }

constexpr unsigned char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kWriteVersion = 3;

struct TypeRow {
  uint32_t id;
  TypeTraits traits;
};

// ggml.c's type_traits for the types whose layout is settled (the IQ formats are left out).
constexpr TypeRow kTypes[] = {
    {0, {"F32", 1, 4}},       {1, {"F16", 1, 2}},       {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},    {6, {"Q5_0", 32, 22}},    {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},    {9, {"Q8_1", 32, 36}},    {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}}, {12, {"Q4_K", 256, 144}}, {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}}, {15, {"Q8_K", 256, 292}}, {24, {"I8", 1, 1}},
    {25, {"I16", 1, 2}},      {26, {"I32", 1, 4}},      {27, {"I64", 1, 8}},
    {28, {"F64", 1, 8}},      {30, {"BF16", 1, 2}},
};

// Size of a scalar of type t in the file; 0 for string and array.
size_t scalarBytes(ValueType t) {
  switch (t) {
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kBool:
      return 1;
    case ValueType::kU16:
    case ValueType::kI16:
      return 2;
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kF32:
      return 4;
    case ValueType::kU64:
    case ValueType::kI64:
    case ValueType::kF64:
      return 8;
    default:
      return 0;
  }
}

bool isUnsigned(ValueType t) {
  return t == ValueType::kU8 || t == ValueType::kU16 || t == ValueType::kU32 ||
         t == ValueType::kU64 || t == ValueType::kBool;
}
bool isSigned(ValueType t) {
  return t == ValueType::kI8 || t == ValueType::kI16 || t == ValueType::kI32 ||
         t == ValueType::kI64;
}
bool isReal(ValueType t) { return t == ValueType::kF32 || t == ValueType::kF64; }
bool knownType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kF64); }

// Casts to what an element of type t can hold, so that a written value reads back equal.
uint64_t castUnsigned(ValueType t, uint64_t v) {
  switch (t) {
    case ValueType::kU8:
      return static_cast<uint8_t>(v);
    case ValueType::kU16:
      return static_cast<uint16_t>(v);
    case ValueType::kU32:
      return static_cast<uint32_t>(v);
    case ValueType::kBool:
      return v != 0;
    default:
      return v;
  }
}
int64_t castSigned(ValueType t, int64_t v) {
  switch (t) {
    case ValueType::kI8:
      return static_cast<int8_t>(v);
    case ValueType::kI16:
      return static_cast<int16_t>(v);
    case ValueType::kI32:
      return static_cast<int32_t>(v);
    default:
      return v;
  }
}
double castReal(ValueType t, double v) {
  return t == ValueType::kF32 ? static_cast<double>(static_cast<float>(v)) : v;
}

uint64_t alignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Little-endian reads with bounds checks; every failure is reported by the caller, who knows
// what was being read.
class Cursor {
 public:
  Cursor(const unsigned char* p, size_t size) : p_(p), size_(size) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  bool bytes(void* out, size_t n) {
    if (n > left()) return false;
    std::memcpy(out, p_ + pos_, n);
    pos_ += n;
    return true;
  }
  template <typename T>
  bool read(T* out) {
    unsigned char b[sizeof(T)];
    if (!bytes(b, sizeof(T))) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    if constexpr (sizeof(T) == 8) {
      std::memcpy(out, &v, 8);
    } else {
      const auto narrow =
          static_cast<std::conditional_t<sizeof(T) == 4, uint32_t,
                                         std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>>(v);
      std::memcpy(out, &narrow, sizeof(T));
    }
    return true;
  }
  // A string: u64 length, then bytes. `what` names it in the error.
  Status string(std::string* out, const std::string& what) {
    uint64_t n = 0;
    if (!read(&n)) return ioError(what + ": truncated (string length past the end of the file)");
    if (n > left()) {
      return ioError(what + ": string of " + std::to_string(n) + " bytes runs past the end of " +
                     "the file (" + std::to_string(left()) + " bytes left)");
    }
    out->assign(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return Status();
  }

 private:
  const unsigned char* p_;
  size_t size_;
  size_t pos_ = 0;
};

// One scalar of type t into v (numeric/bool fields). `what` names it.
Status readScalar(Cursor& c, ValueType t, Value* v, const std::string& what) {
  bool ok = true;
  switch (t) {
    case ValueType::kU8: {
      uint8_t x = 0;
      ok = c.read(&x);
      v->u = x;
      break;
    }
    case ValueType::kBool: {
      uint8_t x = 0;
      ok = c.read(&x);
      if (ok && x > 1)
        return ioError(what + ": bool value " + std::to_string(x) + " is not 0 or 1");
      v->u = x;
      break;
    }
    case ValueType::kI8: {
      int8_t x = 0;
      ok = c.read(&x);
      v->i = x;
      break;
    }
    case ValueType::kU16: {
      uint16_t x = 0;
      ok = c.read(&x);
      v->u = x;
      break;
    }
    case ValueType::kI16: {
      int16_t x = 0;
      ok = c.read(&x);
      v->i = x;
      break;
    }
    case ValueType::kU32: {
      uint32_t x = 0;
      ok = c.read(&x);
      v->u = x;
      break;
    }
    case ValueType::kI32: {
      int32_t x = 0;
      ok = c.read(&x);
      v->i = x;
      break;
    }
    case ValueType::kF32: {
      float x = 0;
      ok = c.read(&x);
      v->f = x;
      break;
    }
    case ValueType::kU64: {
      uint64_t x = 0;
      ok = c.read(&x);
      v->u = x;
      break;
    }
    case ValueType::kI64: {
      int64_t x = 0;
      ok = c.read(&x);
      v->i = x;
      break;
    }
    case ValueType::kF64: {
      double x = 0;
      ok = c.read(&x);
      v->f = x;
      break;
    }
    default:
      return ioError(what + ": not a scalar type");
  }
  if (!ok) return ioError(what + ": truncated (value past the end of the file)");
  return Status();
}

Status readArray(Cursor& c, Value* v, const std::string& what) {
  uint32_t et = 0;
  uint64_t n = 0;
  if (!c.read(&et) || !c.read(&n)) return ioError(what + ": truncated array header");
  if (!knownType(et)) {
    return ioError(what + ": array element type " + std::to_string(et) + " is not a GGUF type");
  }
  const auto elem = static_cast<ValueType>(et);
  if (elem == ValueType::kArray) return ioError(what + ": nested arrays are not supported");
  const size_t min_bytes = elem == ValueType::kString ? 8 : scalarBytes(elem);
  if (n > c.left() / min_bytes) {
    return ioError(what + ": array of " + std::to_string(n) + " " +
                   std::string(valueTypeName(elem)) + " elements cannot fit in the " +
                   std::to_string(c.left()) + " bytes left in the file");
  }
  v->elem = elem;
  const size_t count = static_cast<size_t>(n);
  if (elem == ValueType::kString) {
    v->strs.resize(count);
    for (size_t k = 0; k < count; ++k) {
      if (Status s = c.string(&v->strs[k], what + "[" + std::to_string(k) + "]"); !s.ok()) {
        return s;
      }
    }
    return Status();
  }
  if (isUnsigned(elem)) v->uints.reserve(count);
  if (isSigned(elem)) v->ints.reserve(count);
  if (isReal(elem)) v->reals.reserve(count);
  Value one;
  for (size_t k = 0; k < count; ++k) {
    if (Status s = readScalar(c, elem, &one, what + "[" + std::to_string(k) + "]"); !s.ok()) {
      return s;
    }
    if (isUnsigned(elem)) v->uints.push_back(one.u);
    if (isSigned(elem)) v->ints.push_back(one.i);
    if (isReal(elem)) v->reals.push_back(one.f);
  }
  return Status();
}

// ---- writing

class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  bool ok() const { return ok_; }
  void bytes(const void* p, size_t n) {
    if (ok_ && n > 0 && std::fwrite(p, 1, n, f_) != n) ok_ = false;
  }
  template <typename T>
  void put(T v) {
    unsigned char b[sizeof(T)];
    uint64_t x = 0;
    std::memcpy(&x, &v, sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<unsigned char>(x >> (8 * i));
    bytes(b, sizeof(T));
  }
  void string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }

 private:
  std::FILE* f_;
  bool ok_ = true;
};

void putScalar(Out& o, ValueType t, uint64_t u, int64_t i, double f) {
  switch (t) {
    case ValueType::kU8:
    case ValueType::kBool:
      o.put<uint8_t>(static_cast<uint8_t>(u));
      break;
    case ValueType::kI8:
      o.put<int8_t>(static_cast<int8_t>(i));
      break;
    case ValueType::kU16:
      o.put<uint16_t>(static_cast<uint16_t>(u));
      break;
    case ValueType::kI16:
      o.put<int16_t>(static_cast<int16_t>(i));
      break;
    case ValueType::kU32:
      o.put<uint32_t>(static_cast<uint32_t>(u));
      break;
    case ValueType::kI32:
      o.put<int32_t>(static_cast<int32_t>(i));
      break;
    case ValueType::kF32:
      o.put<float>(static_cast<float>(f));
      break;
    case ValueType::kU64:
      o.put<uint64_t>(u);
      break;
    case ValueType::kI64:
      o.put<int64_t>(i);
      break;
    case ValueType::kF64:
      o.put<double>(f);
      break;
    default:
      break;
  }
}

void putValue(Out& o, const Value& v) {
  if (v.type == ValueType::kString) return o.string(v.s);
  if (v.type != ValueType::kArray) return putScalar(o, v.type, v.u, v.i, v.f);
  o.put<uint32_t>(static_cast<uint32_t>(v.elem));
  o.put<uint64_t>(v.size());
  if (v.elem == ValueType::kString) {
    for (const std::string& s : v.strs) o.string(s);
  } else if (isUnsigned(v.elem)) {
    for (uint64_t x : v.uints) putScalar(o, v.elem, x, 0, 0);
  } else if (isSigned(v.elem)) {
    for (int64_t x : v.ints) putScalar(o, v.elem, 0, x, 0);
  } else {
    for (double x : v.reals) putScalar(o, v.elem, 0, 0, x);
  }
}

// Whether a value is well formed for writing: known types, no nested arrays, array fields
// matching the element type.
bool writable(const Value& v) {
  if (!knownType(static_cast<uint32_t>(v.type))) return false;
  if (v.type != ValueType::kArray) return true;
  if (v.elem == ValueType::kArray || !knownType(static_cast<uint32_t>(v.elem))) return false;
  const size_t filled = (v.strs.empty() ? 0 : 1) + (v.uints.empty() ? 0 : 1) +
                        (v.ints.empty() ? 0 : 1) + (v.reals.empty() ? 0 : 1);
  if (filled > 1) return false;
  if (!v.strs.empty()) return v.elem == ValueType::kString;
  if (!v.uints.empty()) return isUnsigned(v.elem);
  if (!v.ints.empty()) return isSigned(v.elem);
  if (!v.reals.empty()) return isReal(v.elem);
  return true;
}

// Bytes of a tensor of `shape` and ggml `type`, or an error message.
std::optional<uint64_t> tensorSize(uint32_t type, const std::vector<int64_t>& shape,
                                   std::string* why) {
  const std::optional<TypeTraits> tr = typeTraits(type);
  if (!tr) {
    *why = "ggml type " + std::to_string(type) + " is unknown";
    return std::nullopt;
  }
  if (shape.empty() || shape.size() > static_cast<size_t>(GgufFile::kMaxDims)) {
    *why = std::to_string(shape.size()) + " dimensions (1 to 4 are allowed)";
    return std::nullopt;
  }
  for (int64_t d : shape) {
    if (d < 0) {
      *why = "negative dimension " + std::to_string(d);
      return std::nullopt;
    }
  }
  const int64_t cols = shape.back();
  if (cols % tr->block_values != 0) {
    *why = "rows of " + std::to_string(cols) + " values are not whole " + std::string(tr->name) +
           " blocks of " + std::to_string(tr->block_values);
    return std::nullopt;
  }
  // Each factor is below 2^63 and each running product is checked, so nothing wraps.
  constexpr auto kMax = static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max());
  unsigned __int128 bytes =
      static_cast<unsigned __int128>(cols / tr->block_values) * tr->block_bytes;
  unsigned __int128 numel = static_cast<uint64_t>(cols);
  for (size_t k = 0; k < shape.size(); ++k) {
    if (k + 1 < shape.size()) {
      bytes *= static_cast<uint64_t>(shape[k]);
      numel *= static_cast<uint64_t>(shape[k]);
    }
    if (bytes > kMax || numel > kMax) {
      *why = "its size overflows";
      return std::nullopt;
    }
  }
  return static_cast<uint64_t>(bytes);
}

}  // namespace

// ---- types

std::string_view valueTypeName(ValueType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : std::string_view("unknown");
}

std::optional<TypeTraits> typeTraits(uint32_t ggml_type) {
  for (const TypeRow& r : kTypes) {
    if (r.id == ggml_type) return r.traits;
  }
  return std::nullopt;
}

std::optional<uint64_t> rowBytes(uint32_t ggml_type, int64_t n) {
  const std::optional<TypeTraits> tr = typeTraits(ggml_type);
  if (!tr || n < 0 || n % tr->block_values != 0) return std::nullopt;
  return static_cast<uint64_t>(n / tr->block_values) * tr->block_bytes;
}

std::optional<DType> dtypeOf(uint32_t ggml_type) {
  switch (ggml_type) {
    case ggml::kF32:
      return DType::kF32;
    case ggml::kF16:
      return DType::kF16;
    case ggml::kBF16:
      return DType::kBF16;
    default:
      break;
  }
  if (auto q = quant::fromGgmlType(static_cast<int>(ggml_type))) return quant::dtypeOf(*q);
  return std::nullopt;
}

std::optional<uint32_t> ggmlTypeOf(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ggml::kF32;
    case DType::kF16:
      return ggml::kF16;
    case DType::kBF16:
      return ggml::kBF16;
    default:
      break;
  }
  if (auto q = quant::qtypeOf(dtype)) return static_cast<uint32_t>(quant::ggmlType(*q));
  return std::nullopt;
}

// ---- Value

namespace {
Value scalarU(ValueType t, uint64_t v) {
  Value x;
  x.type = t;
  x.u = castUnsigned(t, v);
  return x;
}
Value scalarI(ValueType t, int64_t v) {
  Value x;
  x.type = t;
  x.i = castSigned(t, v);
  return x;
}
Value scalarF(ValueType t, double v) {
  Value x;
  x.type = t;
  x.f = castReal(t, v);
  return x;
}
}  // namespace

Value Value::u8(uint8_t v) { return scalarU(ValueType::kU8, v); }
Value Value::i8(int8_t v) { return scalarI(ValueType::kI8, v); }
Value Value::u16(uint16_t v) { return scalarU(ValueType::kU16, v); }
Value Value::i16(int16_t v) { return scalarI(ValueType::kI16, v); }
Value Value::u32(uint32_t v) { return scalarU(ValueType::kU32, v); }
Value Value::i32(int32_t v) { return scalarI(ValueType::kI32, v); }
Value Value::u64(uint64_t v) { return scalarU(ValueType::kU64, v); }
Value Value::i64(int64_t v) { return scalarI(ValueType::kI64, v); }
Value Value::f32(float v) { return scalarF(ValueType::kF32, v); }
Value Value::f64(double v) { return scalarF(ValueType::kF64, v); }
Value Value::boolean(bool v) { return scalarU(ValueType::kBool, v ? 1 : 0); }
Value Value::string(std::string v) {
  Value x;
  x.type = ValueType::kString;
  x.s = std::move(v);
  return x;
}
Value Value::uintArray(ValueType elem, std::vector<uint64_t> v) {
  Value x;
  x.type = ValueType::kArray;
  x.elem = elem;
  for (auto& e : v) e = castUnsigned(elem, e);
  x.uints = std::move(v);
  return x;
}
Value Value::intArray(ValueType elem, std::vector<int64_t> v) {
  Value x;
  x.type = ValueType::kArray;
  x.elem = elem;
  for (auto& e : v) e = castSigned(elem, e);
  x.ints = std::move(v);
  return x;
}
Value Value::realArray(ValueType elem, std::vector<double> v) {
  Value x;
  x.type = ValueType::kArray;
  x.elem = elem;
  for (auto& e : v) e = castReal(elem, e);
  x.reals = std::move(v);
  return x;
}
Value Value::stringArray(std::vector<std::string> v) {
  Value x;
  x.type = ValueType::kArray;
  x.elem = ValueType::kString;
  x.strs = std::move(v);
  return x;
}

size_t Value::size() const {
  if (type != ValueType::kArray) return 0;
  return strs.size() + uints.size() + ints.size() + reals.size();
}

bool Value::operator==(const Value& o) const {
  if (type != o.type) return false;
  if (type == ValueType::kArray) {
    return elem == o.elem && uints == o.uints && ints == o.ints && reals == o.reals &&
           strs == o.strs;
  }
  return u == o.u && i == o.i && (f == o.f || (f != f && o.f != o.f)) && s == o.s;
}

Status mergeMetadata(std::vector<KeyValue>* into, const std::vector<KeyValue>& more) {
  for (const KeyValue& kv : more) {
    auto it = std::find_if(into->begin(), into->end(),
                           [&](const KeyValue& have) { return have.first == kv.first; });
    if (it == into->end()) {
      into->push_back(kv);
    } else if (!(it->second == kv.second)) {
      return configError("metadata key '" + kv.first + "' is given twice with different values");
    }
  }
  return Status();
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- GgufFile

api::StatusOr<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  auto map = mapReadOnlyFile(path, 24, "the 24-byte GGUF header");
  if (!map.ok()) return map.status();
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->base_ = map->data;
  file->size_ = map->size;
  file->owns_mapping_ = true;
  if (Status s = file->parse(); !s.ok()) return s;
  return file;
}

api::StatusOr<std::unique_ptr<GgufFile>> GgufFile::fromMemory(const void* data, size_t size,
                                                              std::string name) {
  if (size < 24 || data == nullptr) {
    return ioError(name + ": file is " + std::to_string(size) +
                   " bytes, shorter than the 24-byte GGUF header");
  }
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  file->base_ = static_cast<const unsigned char*>(data);
  file->size_ = size;
  if (Status s = file->parse(); !s.ok()) return s;
  return file;
}

GgufFile::~GgufFile() {
  if (owns_mapping_ && base_ != nullptr) unmapFile({base_, size_});
}

Status GgufFile::parse() {
  const std::string& p = path_;
  Cursor c(base_, size_);
  unsigned char magic[4] = {};
  c.bytes(magic, 4);
  if (std::memcmp(magic, kMagic, 4) != 0) return ioError(p + ": bad magic: not a GGUF file");
  uint32_t version = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  c.read(&version);
  c.read(&n_tensors);
  c.read(&n_kv);
  if (version == 1) return ioError(p + ": GGUF version 1 is not supported (2 and 3 are)");
  if (version != 2 && version != 3) {
    return ioError(p + ": GGUF version " + std::to_string(version) +
                   " is not supported (2 and 3 are; a big-endian file reads as a huge version)");
  }
  version_ = version;
  // Each metadata entry takes at least 13 bytes (key length, type, a 1-byte value) and each
  // tensor info 32 (name length, n_dims, one dim, type, offset).
  if (n_kv > c.left() / 13) {
    return ioError(p + ": metadata count " + std::to_string(n_kv) + " cannot fit in the file (" +
                   std::to_string(size_) + " bytes)");
  }
  if (n_tensors > c.left() / 32) {
    return ioError(p + ": tensor count " + std::to_string(n_tensors) + " cannot fit in the file (" +
                   std::to_string(size_) + " bytes)");
  }

  // No reserve from the counts: entries are ~200 bytes in memory for 13 in the file, so memory
  // grows only with what actually parses (a hostile count costs nothing up front).
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    if (Status s = c.string(&key, p + ": metadata entry " + std::to_string(k) + " key"); !s.ok()) {
      return s;
    }
    const std::string what = p + ": key '" + key + "'";
    if (key.empty()) return ioError(p + ": metadata entry " + std::to_string(k) + ": empty key");
    if (kv_index_.count(key)) return ioError(what + ": duplicate key");
    uint32_t t = 0;
    if (!c.read(&t)) return ioError(what + ": truncated (value type past the end of the file)");
    if (!knownType(t)) return ioError(what + ": value type " + std::to_string(t) + " is unknown");
    Value v;
    v.type = static_cast<ValueType>(t);
    Status s;
    if (v.type == ValueType::kString) {
      s = c.string(&v.s, what);
    } else if (v.type == ValueType::kArray) {
      s = readArray(c, &v, what);
    } else {
      s = readScalar(c, v.type, &v, what);
    }
    if (!s.ok()) return s;
    kv_index_.emplace(key, kvs_.size());
    kvs_.emplace_back(std::move(key), std::move(v));
  }
  if (const Value* a = find("general.alignment")) {
    if (a->type != ValueType::kU32) {
      return ioError(p + ": key 'general.alignment' is " + std::string(valueTypeName(a->type)) +
                     ", expected u32");
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return ioError(p + ": key 'general.alignment' is " + std::to_string(a->u) +
                     ", not a power of two");
    }
    alignment_ = static_cast<uint32_t>(a->u);
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    if (Status s = c.string(&t.name, p + ": tensor info " + std::to_string(k) + " name"); !s.ok()) {
      return s;
    }
    const std::string what = p + ": tensor '" + t.name + "'";
    if (t.name.empty()) return ioError(p + ": tensor info " + std::to_string(k) + ": empty name");
    if (t.name.size() > kMaxNameBytes) {
      return ioError(what + ": name longer than " + std::to_string(kMaxNameBytes) + " bytes");
    }
    if (tensor_index_.count(t.name)) return ioError(what + ": duplicate tensor name");
    uint32_t n_dims = 0;
    if (!c.read(&n_dims)) return ioError(what + ": truncated tensor info");
    if (n_dims == 0 || n_dims > static_cast<uint32_t>(kMaxDims)) {
      return ioError(what + ": " + std::to_string(n_dims) + " dimensions (1 to 4 are allowed)");
    }
    t.shape.assign(n_dims, 0);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      if (!c.read(&ne)) return ioError(what + ": truncated tensor info");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return ioError(what + ": dimension " + std::to_string(d) + " is negative");
      }
      t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne);  // ne is fastest-first
    }
    if (!c.read(&t.type) || !c.read(&t.offset)) return ioError(what + ": truncated tensor info");
    std::string why;
    std::optional<uint64_t> bytes = tensorSize(t.type, t.shape, &why);
    if (!bytes) return ioError(what + ": " + why);
    t.bytes = static_cast<size_t>(*bytes);
    if (t.offset % alignment_ != 0) {
      return ioError(what + ": data offset " + std::to_string(t.offset) +
                     " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  data_offset_ = alignUp(c.pos(), alignment_);
  const uint64_t data_bytes = data_offset_ <= size_ ? size_ - data_offset_ : 0;
  std::vector<const TensorInfo*> by_offset;
  for (TensorInfo& t : tensors_) {
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset) {
      return ioError(p + ": tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", " +
                     std::to_string(t.offset + static_cast<uint64_t>(t.bytes)) +
                     ") runs past the end of the data section (" + std::to_string(data_bytes) +
                     " bytes)");
    }
    t.data = base_ + data_offset_ + t.offset;
    if (t.bytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const TensorInfo& a = *by_offset[k - 1];
    const TensorInfo& b = *by_offset[k];
    if (b.offset < a.offset + a.bytes) {
      return ioError(p + ": tensor '" + b.name + "' overlaps tensor '" + a.name + "'");
    }
  }
  return Status();
}

const Value* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].second;
}

const TensorInfo* GgufFile::findTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status missing(const std::string& path, std::string_view key) {
  return configError(path + ": key '" + std::string(key) + "' is missing");
}
Status mistyped(const std::string& path, std::string_view key, const Value& v,
                std::string_view want) {
  return configError(path + ": key '" + std::string(key) + "' is " +
                     std::string(valueTypeName(v.type)) + ", expected " + std::string(want));
}
}  // namespace

api::StatusOr<uint64_t> GgufFile::getU64(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (isUnsigned(v->type) && v->type != ValueType::kBool) return v->u;
  if (isSigned(v->type)) {
    if (v->i < 0) {
      return configError(path_ + ": key '" + std::string(key) + "' is negative (" +
                         std::to_string(v->i) + ")");
    }
    return static_cast<uint64_t>(v->i);
  }
  return mistyped(path_, key, *v, "an integer");
}

api::StatusOr<uint32_t> GgufFile::getU32(std::string_view key) const {
  auto v = getU64(key);
  if (!v.ok()) return v.status();
  if (*v > std::numeric_limits<uint32_t>::max()) {
    return configError(path_ + ": key '" + std::string(key) + "' is " + std::to_string(*v) +
                       ", more than a u32 holds");
  }
  return static_cast<uint32_t>(*v);
}

api::StatusOr<int64_t> GgufFile::getI64(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (isSigned(v->type)) return v->i;
  if (isUnsigned(v->type) && v->type != ValueType::kBool) {
    if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return configError(path_ + ": key '" + std::string(key) + "' is out of range");
    }
    return static_cast<int64_t>(v->u);
  }
  return mistyped(path_, key, *v, "an integer");
}

api::StatusOr<double> GgufFile::getF64(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (!isReal(v->type)) return mistyped(path_, key, *v, "f32 or f64");
  return v->f;
}

api::StatusOr<float> GgufFile::getF32(std::string_view key) const {
  auto v = getF64(key);
  if (!v.ok()) return v.status();
  return static_cast<float>(*v);
}

api::StatusOr<bool> GgufFile::getBool(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (v->type != ValueType::kBool) return mistyped(path_, key, *v, "bool");
  return v->u != 0;
}

api::StatusOr<std::string> GgufFile::getString(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (v->type != ValueType::kString) return mistyped(path_, key, *v, "string");
  return v->s;
}

api::StatusOr<const Value*> GgufFile::getArray(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return missing(path_, key);
  if (v->type != ValueType::kArray) return mistyped(path_, key, *v, "array");
  return v;
}

// ---- GgufWriter

api::StatusOr<std::unique_ptr<GgufWriter>> GgufWriter::create(
    const std::string& path, const std::vector<KeyValue>& metadata,
    const std::vector<GgufTensorSpec>& tensors) {
  std::unique_ptr<GgufWriter> w(new GgufWriter());
  w->path_ = path;
  std::set<std::string> keys;
  for (const auto& [key, v] : metadata) {
    if (key.empty()) return ioError(path + ": empty metadata key");
    if (!keys.insert(key).second) return ioError(path + ": key '" + key + "': duplicate key");
    if (!writable(v)) {
      return ioError(path + ": key '" + key + "': not a writable value (unknown type, nested " +
                     "array or elements of another type)");
    }
    if (key == "general.alignment") {
      if (v.type != ValueType::kU32 || v.u == 0 || (v.u & (v.u - 1)) != 0) {
        return ioError(path + ": key 'general.alignment' must be a u32 power of two");
      }
      w->alignment_ = static_cast<uint32_t>(v.u);
    }
  }
  std::set<std::string> names;
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const GgufTensorSpec& t : tensors) {
    const std::string what = path + ": tensor '" + t.name + "'";
    if (t.name.empty() || t.name.size() > GgufFile::kMaxNameBytes) {
      return ioError(what + ": name must be 1 to " + std::to_string(GgufFile::kMaxNameBytes) +
                     " bytes");
    }
    if (!names.insert(t.name).second) return ioError(what + ": duplicate tensor name");
    std::string why;
    std::optional<uint64_t> bytes = tensorSize(t.type, t.shape, &why);
    if (!bytes) return ioError(what + ": " + why);
    offsets.push_back(offset);
    w->sizes_.push_back(*bytes);
    offset += alignUp(*bytes, w->alignment_);
  }

  w->file_ = std::fopen(path.c_str(), "wb");
  if (w->file_ == nullptr) return ioError(path + ": cannot create: " + std::strerror(errno));
  Out o(w->file_);
  o.bytes(kMagic, 4);
  o.put<uint32_t>(kWriteVersion);
  o.put<uint64_t>(tensors.size());
  o.put<uint64_t>(metadata.size());
  for (const auto& [key, v] : metadata) {
    o.string(key);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    putValue(o, v);
  }
  for (size_t k = 0; k < tensors.size(); ++k) {
    const GgufTensorSpec& t = tensors[k];
    o.string(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) o.put<uint64_t>(static_cast<uint64_t>(t.shape[d]));
    o.put<uint32_t>(t.type);
    o.put<uint64_t>(offsets[k]);
  }
  if (!o.ok()) return ioError(path + ": write failed: " + std::strerror(errno));
  const long pos = std::ftell(w->file_);
  if (pos < 0) return ioError(path + ": write failed: " + std::strerror(errno));
  if (Status s = w->writePadding(alignUp(static_cast<uint64_t>(pos), w->alignment_) -
                                 static_cast<uint64_t>(pos));
      !s.ok()) {
    return s;
  }
  // Zero-byte tensors at the front are complete already.
  while (w->current_ < w->sizes_.size() && w->sizes_[w->current_] == 0) ++w->current_;
  return w;
}

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status GgufWriter::writePadding(uint64_t n) {
  static const unsigned char kZeros[64] = {};
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof(kZeros)));
    if (std::fwrite(kZeros, 1, k, file_) != k) {
      return ioError(path_ + ": write failed: " + std::strerror(errno));
    }
    n -= k;
  }
  return Status();
}

Status GgufWriter::append(const void* data, size_t bytes) {
  if (file_ == nullptr) return ioError(path_ + ": append after finish");
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    if (current_ >= sizes_.size()) {
      return ioError(path_ + ": more tensor bytes than the tensor infos declare");
    }
    const uint64_t room = sizes_[current_] - in_current_;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(room, bytes));
    if (std::fwrite(p, 1, k, file_) != k) {
      return ioError(path_ + ": write failed: " + std::strerror(errno));
    }
    p += k;
    bytes -= k;
    in_current_ += k;
    while (current_ < sizes_.size() && in_current_ == sizes_[current_]) {
      if (Status s = writePadding(alignUp(in_current_, alignment_) - in_current_); !s.ok()) {
        return s;
      }
      ++current_;
      in_current_ = 0;
    }
  }
  return Status();
}

Status GgufWriter::finish() {
  if (file_ == nullptr) return ioError(path_ + ": finish called twice");
  const bool complete = current_ == sizes_.size();
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (!complete) {
    return ioError(path_ + ": finished after " + std::to_string(current_) + " of " +
                   std::to_string(sizes_.size()) + " tensors were written");
  }
  if (rc != 0) return ioError(path_ + ": close failed: " + std::strerror(errno));
  return Status();
}

}  // namespace engine::gguf
