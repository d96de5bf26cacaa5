// engine::StreamingDetokenizer: turns generated token ids into text one id at a time.
//
// Each feed() returns the text that is safe to show now: always whole UTF-8 characters. Runs of
// byte-fallback tokens (<0xE2><0x82><0xAC> for "€") are held back until they complete a
// character; a run that turns out ill-formed yields U+FFFD per maximal ill-formed subsequence,
// exactly as Tokenizer::decode does. The concatenation of every feed() and the final flush()
// equals Tokenizer::decode(ids, skip_special) for the same ids.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tokenizer.h"

namespace engine {

class StreamingDetokenizer {
 public:
  // `tokenizer` must outlive this object. With `skip_special`, special tokens produce no text.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}

  // Adds one token; returns the text delta that can be emitted now (possibly empty).
  std::string feed(int32_t id);
  // Ends the stream: returns whatever was held back (an incomplete byte sequence becomes U+FFFD).
  // The detokenizer is then empty and can be reused for a new stream.
  std::string flush();
  // Bytes held back waiting for the rest of a UTF-8 sequence.
  size_t pendingBytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of the current byte-token run not emitted yet
};

}  // namespace engine
