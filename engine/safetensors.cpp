#include "engine/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "engine/mapped_file.h"

namespace engine {
namespace {

using api::ErrorCode;
using api::Status;
using nlohmann::json;

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4},        {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},   {DType::kF64, "F64", 8},        {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},   {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

Status ioError(std::string message) { return Status(ErrorCode::kIo, std::move(message)); }

// A JSON integer that fits in [0, INT64_MAX]; floats, bools and negatives are rejected.
std::optional<uint64_t> nonNegativeInt(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return u;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return std::nullopt;
    return static_cast<uint64_t>(i);
  }
  return std::nullopt;
}

}  // namespace

size_t dtypeSize(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

std::string_view dtypeName(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  switch (dtype) {
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ6_K:
      return "Q6_K";
    default:
      return "?";
  }
}

std::optional<DType> parseDType(std::string_view name) {
  for (const auto& d : kDTypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

api::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  auto map = mapReadOnlyFile(path, 8, "the 8-byte header length");
  if (!map.ok()) return map.status();
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->base_ = map->data;
  file->size_ = map->size;
  file->owns_mapping_ = true;
  if (Status s = file->parse(); !s.ok()) return s;
  return file;
}

api::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::fromMemory(const void* data,
                                                                            size_t size,
                                                                            std::string name) {
  if (size < 8) {
    return ioError(name + ": file is " + std::to_string(size) +
                   " bytes, shorter than the 8-byte header length");
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  file->base_ = static_cast<const unsigned char*>(data);
  file->size_ = size;
  if (Status s = file->parse(); !s.ok()) return s;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (owns_mapping_ && base_ != nullptr) {
    unmapFile({base_, size_});
  }
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status SafetensorsFile::parse() {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base_[i];  // little-endian
  if (header_len > kMaxHeaderBytes) {
    return ioError(path_ + ": header length " + std::to_string(header_len) + " is absurd (limit " +
                   std::to_string(kMaxHeaderBytes) + " bytes)");
  }
  if (header_len > size_ - 8) {
    return ioError(path_ + ": header length " + std::to_string(header_len) +
                   " runs past the end of the " + std::to_string(size_) + "-byte file");
  }
  const char* hbegin = reinterpret_cast<const char*>(base_ + 8);
  const char* hend = hbegin + header_len;

  // nlohmann keeps the last of duplicate keys silently, so duplicates are caught while parsing.
  // Values nested deeper than a valid header can be are discarded rather than built.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth > 3) {
          too_deep = true;
          return false;
        }
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        return true;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        return true;
      case json::parse_event_t::key:
        if (!open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        return true;
      default:
        return true;
    }
  };
  json header = json::parse(hbegin, hend, callback, /*allow_exceptions=*/false);
  if (header.is_discarded()) return ioError(path_ + ": header is not valid JSON");
  if (!header.is_object()) return ioError(path_ + ": header is not a JSON object");
  if (!duplicate.empty()) return ioError(path_ + ": header has duplicate key '" + duplicate + "'");
  if (too_deep) return ioError(path_ + ": header nests deeper than a safetensors header can");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size_ - data_start;
  struct Extent {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return ioError(path_ + ": __metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return ioError(path_ + ": __metadata__ value of '" + m.key() + "' is not a string");
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path_ + ": tensor '" + name + "': ";
    if (!entry.is_object()) return ioError(where + "entry is not an object");

    auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) return ioError(where + "missing string 'dtype'");
    std::optional<DType> dtype = parseDType(dt->get<std::string>());
    if (!dtype) return ioError(where + "unknown dtype '" + dt->get<std::string>() + "'");

    auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array()) return ioError(where + "'shape' is not a list");
    TensorView view;
    view.dtype = *dtype;
    // The product of the non-zero dims must fit int64 even when a zero dim makes the tensor
    // empty: numel() multiplies the dims in order, so every partial product has to fit.
    int64_t nonzero_product = 1;
    bool has_zero = false;
    bool overflow = false;
    for (const json& d : *sh) {
      std::optional<uint64_t> dim = nonNegativeInt(d);
      if (!dim) return ioError(where + "'shape' has an entry that is not a non-negative integer");
      view.shape.push_back(static_cast<int64_t>(*dim));
      has_zero = has_zero || *dim == 0;
      if (*dim != 0) {
        overflow = overflow || __builtin_mul_overflow(nonzero_product, static_cast<int64_t>(*dim),
                                                      &nonzero_product);
      }
    }
    if (overflow) return ioError(where + "'shape' has more than 2^63 elements");
    const uint64_t numel = has_zero ? 0 : static_cast<uint64_t>(nonzero_product);

    auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2) {
      return ioError(where + "'data_offsets' is not a [begin, end] pair");
    }
    std::optional<uint64_t> begin = nonNegativeInt((*off)[0]);
    std::optional<uint64_t> end = nonNegativeInt((*off)[1]);
    if (!begin || !end) return ioError(where + "'data_offsets' are not non-negative integers");
    if (*begin > *end) {
      return ioError(where + "data_offsets begin " + std::to_string(*begin) + " > end " +
                     std::to_string(*end));
    }
    if (*end > data_size) {
      return ioError(where + "data ends at " + std::to_string(*end) +
                     ", beyond the data section of " + std::to_string(data_size) + " bytes");
    }
    uint64_t want = 0;
    const bool bytes_overflow = __builtin_mul_overflow(numel, dtypeSize(*dtype), &want);
    if (bytes_overflow || want != *end - *begin) {
      return ioError(where + "holds " + std::to_string(*end - *begin) +
                     " bytes but its shape and " + std::string(dtypeName(*dtype)) + " need " +
                     (bytes_overflow ? std::string("more than 2^64") : std::to_string(want)));
    }
    view.bytes = static_cast<size_t>(want);
    view.data = base_ + data_start + *begin;
    auto [slot, inserted] = tensors_.emplace(name, std::move(view));
    extents.push_back({*begin, *end, &slot->first});
  }

  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Extent* last = nullptr;  // the non-empty tensor that reaches furthest so far
  for (const Extent& e : extents) {
    if (e.begin == e.end) continue;  // zero-size tensors occupy nothing
    if (last != nullptr && e.begin < last->end) {
      return ioError(path_ + ": tensor '" + *e.name + "': data [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + ") overlaps tensor '" + *last->name + "' [" +
                     std::to_string(last->begin) + ", " + std::to_string(last->end) + ")");
    }
    if (last == nullptr || e.end > last->end) last = &e;
  }
  names_.reserve(extents.size());
  for (const Extent& e : extents) names_.push_back(*e.name);
  return Status();
}

// ---- writer ----

api::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::create(
    const std::string& path, const std::vector<TensorSpec>& tensors,
    const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      return ioError(path + ": tensor '" + t.name + "': duplicate or reserved name");
    }
    if (offset % dtypeSize(t.dtype) != 0) {  // readers may cast the data pointer
      return ioError(path + ": tensor '" + t.name + "' would start at data byte " +
                     std::to_string(offset) + ", not a multiple of its " +
                     std::to_string(dtypeSize(t.dtype)) +
                     "-byte elements; list wider dtypes first");
    }
    uint64_t bytes = dtypeSize(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) return ioError(path + ": tensor '" + t.name + "': negative dimension");
      bytes *= static_cast<uint64_t>(d);
    }
    header[t.name] = {{"dtype", std::string(dtypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->expected_ = offset;
  w->file_ = std::fopen(path.c_str(), "wb");
  if (w->file_ == nullptr) return ioError(path + ": cannot create: " + std::strerror(errno));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));
  if (std::fwrite(len, 1, 8, w->file_) != 8 ||
      std::fwrite(text.data(), 1, text.size(), w->file_) != text.size()) {
    return ioError(path + ": write failed: " + std::strerror(errno));
  }
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

api::Status SafetensorsWriter::append(const void* data, size_t bytes) {
  if (file_ == nullptr) return ioError(path_ + ": append after finish");
  if (written_ + bytes > expected_) {
    return ioError(path_ + ": more tensor bytes than the header declares");
  }
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes) {
    return ioError(path_ + ": write failed: " + std::strerror(errno));
  }
  written_ += bytes;
  return Status();
}

api::Status SafetensorsWriter::finish() {
  if (file_ == nullptr) return ioError(path_ + ": finish called twice");
  std::FILE* f = std::exchange(file_, nullptr);
  const bool close_ok = std::fclose(f) == 0;
  if (written_ != expected_) {
    return ioError(path_ + ": " + std::to_string(written_) +
                   " tensor bytes written, header declares " + std::to_string(expected_));
  }
  if (!close_ok) return ioError(path_ + ": close failed: " + std::strerror(errno));
  return Status();
}

}  // namespace engine
