#include "api/sse.h"

#include <charconv>
#include <cstring>

namespace api {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// Position of the first '\r' or '\n' in [p, end), or end. memchr is vectorised; '\r' is
// rare, so the second scan is bounded by the first hit.
const char* findLineEnd(const char* p, const char* end) {
  const char* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
  const char* limit = lf != nullptr ? lf : end;
  const char* cr = static_cast<const char*>(std::memchr(p, '\r', static_cast<size_t>(limit - p)));
  return cr != nullptr ? cr : limit;
}

}  // namespace

std::string sseData(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  const char* p = payload.data();
  const char* end = p + payload.size();
  for (;;) {
    const char* eol = findLineEnd(p, end);
    out += "data: ";
    out.append(p, eol);
    out += '\n';
    if (eol == end) break;
    p = eol + 1;
    if (*eol == '\r' && p < end && *p == '\n') ++p;
  }
  out += '\n';
  return out;
}

SseParser::SseParser(size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (failed_) return false;
  const char* p = bytes.data();
  const char* end = p + bytes.size();

  if (at_start_) {
    while (p < end && bom_matched_ < kBom.size() && *p == kBom[bom_matched_]) {
      ++p;
      ++bom_matched_;
    }
    if (bom_matched_ == kBom.size()) {
      at_start_ = false;
    } else if (p < end) {
      // Not a BOM after all: the bytes matched so far are ordinary line content.
      line_.append(kBom.substr(0, bom_matched_));
      at_start_ = false;
    }
  }
  if (skip_lf_ && p < end) {
    skip_lf_ = false;
    if (*p == '\n') ++p;
  }

  while (p < end) {
    const char* eol = findLineEnd(p, end);
    if (eol == end) {
      line_.append(p, end);
      if (heldBytes() > max_event_bytes_) failed_ = true;
      break;
    }
    if (line_.empty()) {
      processLine(std::string_view(p, static_cast<size_t>(eol - p)), out);
    } else {
      line_.append(p, eol);
      if (heldBytes() > max_event_bytes_) {
        failed_ = true;
        break;
      }
      processLine(line_, out);
      line_.clear();
    }
    if (failed_) break;
    p = eol + 1;
    if (*eol == '\r') {
      if (p == end) {
        skip_lf_ = true;
      } else if (*p == '\n') {
        ++p;
      }
    }
  }
  if (failed_) {
    line_.clear();
    line_.shrink_to_fit();
    data_.clear();
    data_.shrink_to_fit();
    last_id_.clear();
  }
  return !failed_;
}

void SseParser::processLine(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    if (has_data_) {
      out.push_back(SseEvent{std::move(event_), std::move(data_), last_id_});
    }
    data_.clear();
    event_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment (servers send these as keep-alives)

  std::string_view field = line;
  std::string_view value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }

  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "id") {
    if (value.size() <= kMaxSseIdBytes && value.find('\0') == std::string_view::npos) {
      last_id_.assign(value);
    }
  } else if (field == "retry") {
    uint64_t ms = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (!value.empty() && ec == std::errc() && ptr == value.data() + value.size()) {
      retry_ms_ = ms;
    }
  }
  if (data_.size() + event_.size() + last_id_.size() > max_event_bytes_) failed_ = true;
}

}  // namespace api
