// The binary cache of a parsed tokenizer.json. Parsing Gemma's 33 MB tokenizer.json and resolving
// its 515k merges against the vocab takes most of a second; reading this file back takes a few
// milliseconds.
//
// Layout (native byte order; the header's byte-order mark rejects a file from another machine):
//   header  magic "SYTOKCA1", format version, byte-order mark, the JSON's size, mtime and content
//           hash, then the payload's size and hash
//   payload rest_json (u64 length + bytes)
//           added tokens (u32 count; each i32 id, u8 flags, u32 length + bytes)
//           model vocab (u32 count, u32 offsets[count + 1], the pieces' bytes)
//           <0xHH> ids (i32[256])
//           merges (u32 count; each i32 left, right, rank, merged) in hash-table slot order, so
//           that reinserting them walks the table front to back
// Every count and offset is checked against the bytes that remain; nothing in the file is
// trusted before that.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "engine/tokenizer.h"
#include "engine/tokenizer_internal.h"

namespace engine {

namespace {

constexpr char kMagic[8] = {'S', 'Y', 'T', 'O', 'K', 'C', 'A', '1'};
// Bump whenever the payload layout or the meaning of a cached field changes.
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kByteOrderMark = 0x01020304;
constexpr const char* kSuffix = ".switchyard-cache";

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t byte_order;
  uint64_t json_size;
  int64_t json_mtime_ns;
  uint64_t json_hash;
  uint64_t payload_size;
  uint64_t payload_hash;
};

enum AddedFlag : uint8_t { kSpecial = 1, kNormalized = 2, kLstrip = 4, kRstrip = 8 };

class Writer {
 public:
  std::string out;
  template <typename T>
  void put(T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void bytes(std::string_view s) { out.append(s); }
};

// A cursor over untrusted bytes: every read is bounds-checked, and after the first failure every
// read fails.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  template <typename T>
  bool get(T& v) {
    if (!ok_ || data_.size() - at_ < sizeof v) return ok_ = false;
    std::memcpy(&v, data_.data() + at_, sizeof v);
    at_ += sizeof v;
    return true;
  }
  bool bytes(size_t n, std::string_view& v) {
    if (!ok_ || data_.size() - at_ < n) return ok_ = false;
    v = data_.substr(at_, n);
    at_ += n;
    return true;
  }
  bool done() const { return ok_ && at_ == data_.size(); }

 private:
  std::string_view data_;
  size_t at_ = 0;
  bool ok_ = true;
};

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

}  // namespace

uint64_t Tokenizer::Cache::contentHash(std::string_view bytes) {
  // Four independent multiply-rotate lanes over 32-byte blocks (they pipeline), then the tail
  // byte by byte, then a final avalanche; every byte and the length reach the result.
  constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL;
  uint64_t lane[4] = {kP1, kP2, kP1 ^ kP2, ~kP1};
  const char* p = bytes.data();
  size_t n = bytes.size(), i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = rotl(lane[k] + w * kP2, 31) * kP1;
    }
  }
  uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18);
  h ^= n * kP1;
  for (; i < n; ++i) h = rotl(h ^ static_cast<uint8_t>(p[i]) * kP1, 11) * kP2;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP1;
  return h ^ (h >> 32);
}

std::string Tokenizer::Cache::encode(const Stamp& stamp, std::string_view rest_json,
                                     const Tokenizer& tok) {
  Writer w;
  w.put<uint64_t>(rest_json.size());
  w.bytes(rest_json);
  w.put<uint32_t>(static_cast<uint32_t>(tok.added_.size()));
  for (const AddedToken& t : tok.added_) {
    w.put<int32_t>(t.id);
    w.put<uint8_t>((t.special ? kSpecial : 0) | (t.normalized ? kNormalized : 0) |
                   (t.lstrip ? kLstrip : 0) | (t.rstrip ? kRstrip : 0));
    w.put<uint32_t>(static_cast<uint32_t>(t.content.size()));
    w.bytes(t.content);
  }
  w.put<uint32_t>(static_cast<uint32_t>(tok.pieces_.size()));
  uint32_t offset = 0;
  w.put<uint32_t>(offset);
  for (const std::string& piece : tok.pieces_) {
    offset += static_cast<uint32_t>(piece.size());
    w.put<uint32_t>(offset);
  }
  for (const std::string& piece : tok.pieces_) w.bytes(piece);
  for (int32_t id : tok.byte_id_) w.put<int32_t>(id);
  const MergeTable& m = *tok.merges_;
  w.put<uint32_t>(static_cast<uint32_t>(m.size));
  for (const MergeTable::Slot& s : m.slots) {
    if (s.key == MergeTable::kEmpty) continue;
    w.put<int32_t>(static_cast<int32_t>(s.key >> 32));
    w.put<int32_t>(static_cast<int32_t>(s.key & 0xffffffffu));
    w.put<int32_t>(s.rank);
    w.put<int32_t>(s.merged);
  }

  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kFormatVersion;
  h.byte_order = kByteOrderMark;
  h.json_size = stamp.size;
  h.json_mtime_ns = stamp.mtime_ns;
  h.json_hash = stamp.hash;
  h.payload_size = w.out.size();
  h.payload_hash = contentHash(w.out);
  std::string file(reinterpret_cast<const char*>(&h), sizeof h);
  file += w.out;
  return file;
}

bool Tokenizer::Cache::matches(std::string_view file, const Stamp& stamp) {
  Header h;
  if (file.size() < sizeof h) return false;
  std::memcpy(&h, file.data(), sizeof h);
  std::string_view payload = file.substr(sizeof h);
  return std::memcmp(h.magic, kMagic, sizeof kMagic) == 0 && h.version == kFormatVersion &&
         h.byte_order == kByteOrderMark && h.json_size == stamp.size &&
         h.json_mtime_ns == stamp.mtime_ns && h.json_hash == stamp.hash &&
         h.payload_size == payload.size() && h.payload_hash == contentHash(payload);
}

bool Tokenizer::Cache::decode(std::string_view file, Tokenizer& tok, std::string& rest_json) {
  if (file.size() < sizeof(Header)) return false;
  Reader r(file.substr(sizeof(Header)));
  uint64_t rest_len = 0;
  std::string_view rest;
  if (!r.get(rest_len) || rest_len > file.size() || !r.bytes(rest_len, rest)) return false;
  rest_json.assign(rest);

  uint32_t n_added = 0;
  if (!r.get(n_added) || n_added > file.size() / 9) return false;  // 9 bytes at least each
  tok.added_.resize(n_added);
  for (AddedToken& t : tok.added_) {
    uint8_t flags = 0;
    uint32_t len = 0;
    std::string_view content;
    if (!r.get(t.id) || !r.get(flags) || !r.get(len) || !r.bytes(len, content)) return false;
    t.content.assign(content);
    t.special = flags & kSpecial;
    t.normalized = flags & kNormalized;
    t.lstrip = flags & kLstrip;
    t.rstrip = flags & kRstrip;
  }

  uint32_t n_pieces = 0;
  std::string_view offsets_raw, blob;
  if (!r.get(n_pieces) || n_pieces > file.size() / 4 ||
      !r.bytes((static_cast<size_t>(n_pieces) + 1) * 4, offsets_raw)) {
    return false;
  }
  std::vector<uint32_t> offsets(n_pieces + 1);
  std::memcpy(offsets.data(), offsets_raw.data(), offsets_raw.size());
  if (offsets[0] != 0 || !r.bytes(offsets[n_pieces], blob)) return false;
  tok.pieces_.resize(n_pieces);
  for (uint32_t i = 0; i < n_pieces; ++i) {
    // Checked before the copy: a forged offset past the blob must never be read.
    if (offsets[i + 1] < offsets[i] || offsets[i + 1] > blob.size()) return false;
    tok.pieces_[i].assign(blob.data() + offsets[i], offsets[i + 1] - offsets[i]);
  }
  for (const AddedToken& t : tok.added_) {
    if (t.id < 0 || static_cast<uint32_t>(t.id) >= n_pieces) return false;
  }
  for (int32_t& id : tok.byte_id_) {
    if (!r.get(id) || id < -1 || id >= static_cast<int32_t>(n_pieces)) return false;
  }

  uint32_t n_merges = 0;
  if (!r.get(n_merges) || n_merges > file.size() / 16) return false;
  tok.merges_ = std::make_unique<MergeTable>();
  tok.merges_->reserve(n_merges);
  for (uint32_t i = 0; i < n_merges; ++i) {
    int32_t m[4];
    if (!r.get(m)) return false;
    for (int32_t id : {m[0], m[1], m[3]}) {
      if (id < 0 || static_cast<uint32_t>(id) >= n_pieces) return false;
    }
    tok.merges_->insert(m[0], m[1], m[2], m[3]);
  }
  return r.done();
}

std::string Tokenizer::Cache::besidePath(const std::string& json_path) {
  return json_path + kSuffix;
}

std::string Tokenizer::Cache::fallbackPath(const std::string& json_path,
                                           const std::string& cache_dir) {
  std::filesystem::path dir = cache_dir;
  if (dir.empty()) {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    if (xdg && *xdg) {
      dir = std::filesystem::path(xdg) / "switchyard";
    } else if (home && *home) {
      dir = std::filesystem::path(home) / ".cache" / "switchyard";
    } else {
      return {};
    }
  }
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(json_path, ec);
  std::string key = ec ? json_path : abs.lexically_normal().string();
  char name[40];
  std::snprintf(name, sizeof name, "tokenizer-%016llx",
                static_cast<unsigned long long>(contentHash(key)));
  return (dir / (std::string(name) + kSuffix)).string();
}

bool Tokenizer::Cache::writeAtomically(const std::string& path, std::string_view bytes) {
  static std::atomic<uint64_t> counter{0};
  std::error_code ec;
  std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path(), ec);
  std::string tmp =
      path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = true;
  for (size_t done = 0; ok && done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = (::close(fd) == 0) && ok;
  if (ok) ok = ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) ::unlink(tmp.c_str());
  return ok;
}

}  // namespace engine
