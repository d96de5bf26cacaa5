// engine::StreamingDetokenizer. The decoding rules are Tokenizer::decode's (gemma-spec §5.2,
// "Decoding"); this only decides how much of a byte-token run can be emitted early.
#include "engine/detokenizer.h"

namespace engine {

std::string StreamingDetokenizer::feed(int32_t id) {
  const Tokenizer& tok = *tokenizer_;
  if (id < 0 || id >= tok.vocabSize()) id = tok.unkId();
  std::string out;
  if (id < 0 || (skip_special_ && tok.isSpecial(id))) return out;
  int byte = tok.byteValue(id);
  if (byte >= 0) {
    pending_.push_back(static_cast<char>(byte));
    // Emit every character the run has completed; keep a valid but unfinished tail. Bytes that
    // can no longer become valid are final (U+FFFD) whatever follows.
    size_t used = appendUtf8Lossy(out, pending_, /*final=*/false);
    pending_.erase(0, used);
    return out;
  }
  if (!pending_.empty()) {
    appendUtf8Lossy(out, pending_, /*final=*/true);
    pending_.clear();
  }
  out.append(tok.decodedPiece(id));
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out;
  if (!pending_.empty()) {
    appendUtf8Lossy(out, pending_, /*final=*/true);
    pending_.clear();
  }
  return out;
}

}  // namespace engine
