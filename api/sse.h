// Server-sent events: framing our own stream (sseData, kSseDone) and reading an upstream's
// (SseParser, the WHATWG "event stream interpretation" rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace api {

// Frames one event carrying `payload`: "data: <payload>\n\n". A payload with line breaks
// becomes one "data:" line per line, so that the reader gets it back unchanged.
std::string sseData(std::string_view payload);

// The terminator OpenAI sends after the last chunk.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

struct SseEvent {
  std::string event;  // the "event:" field; empty for the default ("message")
  std::string data;   // the "data:" lines joined with "\n"
  std::string id;     // the last "id:" seen in the stream so far (it persists across events)
};

// The longest "id:" value the parser keeps. The id is copied into every later event, so an
// unbounded one multiplies memory by the number of events (a 4 MB stream once held 2 GB).
// Longer ids are ignored like ids containing NUL: the previous id stays, the stream goes on
// (no API we call relies on event ids, so refusing the whole stream would gain nothing).
inline constexpr size_t kMaxSseIdBytes = 256;

// Incremental event-stream parser. Bytes may arrive split anywhere, even inside a "\r\n".
// Lines end in "\n", "\r\n" or "\r"; a leading UTF-8 BOM is skipped; lines starting with
// ':' are comments; an event is dispatched at a blank line when it has at least one "data:"
// line. An unterminated last event is never dispatched. Bytes are passed through unchanged
// (no UTF-8 decoding).
class SseParser {
 public:
  // `max_event_bytes` caps the memory one event may hold (its data, name, the current id and
  // the line being read); a stream that exceeds it puts the parser in the failed state.
  explicit SseParser(size_t max_event_bytes = size_t{8} << 20);

  // Consumes `bytes`, appending each completed event to `out` (which is not cleared).
  // Returns false once the parser has failed; events completed before the failure are
  // still appended, and every later call returns false at once.
  bool feed(std::string_view bytes, std::vector<SseEvent>& out);

  bool failed() const { return failed_; }

  // The last valid "retry:" value (milliseconds), when the stream sent one.
  std::optional<uint64_t> retryMs() const { return retry_ms_; }

 private:
  void processLine(std::string_view line, std::vector<SseEvent>& out);
  size_t heldBytes() const { return line_.size() + data_.size() + event_.size() + last_id_.size(); }

  size_t max_event_bytes_;
  std::string line_;   // a line not yet terminated, carried over between feeds
  std::string data_;   // the data buffer, without the trailing "\n" the spec appends
  std::string event_;  // the event type buffer
  std::string last_id_;  // at most kMaxSseIdBytes
  std::optional<uint64_t> retry_ms_;
  bool has_data_ = false;   // at least one "data:" line since the last dispatch
  bool skip_lf_ = false;    // the previous feed ended in '\r': a leading '\n' is part of it
  size_t bom_matched_ = 0;  // bytes of the BOM matched so far at the start of the stream
  bool at_start_ = true;
  bool failed_ = false;
};

}  // namespace api
