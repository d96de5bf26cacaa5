#include "policies/ledger_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>

namespace policies {
namespace {

constexpr uint32_t kMagic = 0x4a525953;  // "SYRJ" in a little-endian file
constexpr size_t kHeaderBytes = 4 + 4 + 8;
// No real record comes near this; a larger length is a corrupt frame.
constexpr uint32_t kMaxPayloadBytes = 1u << 20;

uint64_t fnv1a(std::string_view data) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

template <typename T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

void putString(std::string& out, const std::string& s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Reads from a payload, failing (false) instead of running past its end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  template <typename T>
  bool get(T* v) {
    if (data_.size() < sizeof(T)) return false;
    std::memcpy(v, data_.data(), sizeof(T));
    data_.remove_prefix(sizeof(T));
    return true;
  }
  bool getString(std::string* s) {
    uint32_t n = 0;
    if (!get(&n) || data_.size() < n) return false;
    s->assign(data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

std::string encode(const JournalRecord& r) {
  std::string payload;
  put<int64_t>(payload, r.seq);
  put<int64_t>(payload, r.id);
  put<int64_t>(payload, r.row.unix_ms);
  put<double>(payload, r.row.cost_usd);
  for (const std::string* s :
       {&r.row.request_id, &r.row.team, &r.row.key_id, &r.row.model, &r.row.decision}) {
    putString(payload, *s);
  }
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  put<uint64_t>(out, fnv1a(payload));
  out.append(payload);
  return out;
}

bool decode(std::string_view payload, JournalRecord* r) {
  Reader in(payload);
  bool ok =
      in.get(&r->seq) && in.get(&r->id) && in.get(&r->row.unix_ms) && in.get(&r->row.cost_usd);
  for (std::string* s :
       {&r->row.request_id, &r->row.team, &r->row.key_id, &r->row.model, &r->row.decision}) {
    ok = ok && in.getString(s);
  }
  if (!ok || !in.done()) return false;
  r->row.kind = "cloud";
  r->row.status = 0;
  r->row.state = "pending";
  return true;
}

// The whole records at the start of `data`; stops at the first torn or corrupt one. Returns the
// bytes they take.
size_t parse(std::string_view data, std::vector<JournalRecord>* out) {
  size_t pos = 0;
  while (data.size() - pos >= kHeaderBytes) {
    uint32_t magic = 0, len = 0;
    uint64_t sum = 0;
    std::memcpy(&magic, data.data() + pos, 4);
    std::memcpy(&len, data.data() + pos + 4, 4);
    std::memcpy(&sum, data.data() + pos + 8, 8);
    if (magic != kMagic || len > kMaxPayloadBytes || data.size() - pos - kHeaderBytes < len) break;
    std::string_view payload = data.substr(pos + kHeaderBytes, len);
    JournalRecord r;
    if (fnv1a(payload) != sum || !decode(payload, &r)) break;
    out->push_back(std::move(r));
    pos += kHeaderBytes + len;
  }
  return pos;
}

std::string errnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

std::string ReservationJournal::fileName(int i) const {
  return base_ + "-pending." + std::to_string(i);
}

api::StatusOr<std::unique_ptr<ReservationJournal>> ReservationJournal::open(
    const std::string& ledger_path, std::vector<JournalRecord>* found) {
  std::unique_ptr<ReservationJournal> j(new ReservationJournal(ledger_path));
  for (int i = 0; i < 2; ++i) {
    std::string name = j->fileName(i);
    int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return api::Status(api::ErrorCode::kIo, "ledger journal '" + name +
                                                  "': cannot open or create: " + errnoText(errno));
    }
    j->files_[i].fd = fd;
    std::string data;
    char buf[1 << 16];
    while (true) {
      ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(data.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return api::Status(api::ErrorCode::kIo,
                           "ledger journal '" + name + "': cannot read: " + errnoText(errno));
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    size_t before = found->size();
    j->files_[i].size = parse(data, found);
    for (size_t k = before; k < found->size(); ++k) {
      j->files_[i].max_seq = std::max(j->files_[i].max_seq, (*found)[k].seq);
    }
  }
  return j;
}

ReservationJournal::~ReservationJournal() {
  for (File& f : files_) {
    if (f.fd >= 0) ::close(f.fd);
  }
}

api::Status ReservationJournal::append(const JournalRecord& record) {
  File& f = files_[active_];
  const std::string frame = encode(record);
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t n =
        ::pwrite(f.fd, frame.data() + done, frame.size() - done, static_cast<off_t>(f.size + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      // Cut a partial record off, so that the records appended after it stay readable.
      if (done > 0 && ::ftruncate(f.fd, static_cast<off_t>(f.size)) != 0) {
        // The torn bytes stay; the next append overwrites them (it writes at f.size).
      }
      return api::Status(api::ErrorCode::kUnavailable,
                         "cannot write '" + fileName(active_) + "': " + errnoText(err));
    }
    done += static_cast<size_t>(n);
  }
  f.size += frame.size();
  f.max_seq = std::max(f.max_seq, record.seq);
  return {};
}

bool ReservationJournal::truncate(int i) {
  File& f = files_[i];
  if (f.size == 0) return true;
  if (::ftruncate(f.fd, 0) != 0) return false;
  f.size = 0;
  f.max_seq = 0;
  return true;
}

void ReservationJournal::retire(int64_t committed_seq) {
  int other = 1 - active_;
  if (files_[other].size > 0 && files_[other].max_seq <= committed_seq) truncate(other);
  if (files_[other].size == 0 && files_[active_].size > 0) {
    active_ = other;
    other = 1 - active_;
    if (files_[other].max_seq <= committed_seq) truncate(other);
  }
}

api::Status ReservationJournal::clear() {
  for (int i = 0; i < 2; ++i) {
    if (!truncate(i)) {
      return api::Status(api::ErrorCode::kIo,
                         "ledger journal '" + fileName(i) + "': cannot empty: " + errnoText(errno));
    }
  }
  active_ = 0;
  return {};
}

}  // namespace policies
