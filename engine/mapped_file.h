// A whole regular file mapped read-only (the weights of safetensors and GGUF files are read in
// place, never copied).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "api/status.h"

namespace engine {

struct ReadOnlyMapping {
  const unsigned char* data = nullptr;
  size_t size = 0;
};

// Maps the regular file at `path`; the caller unmaps it with unmapFile(). Fails with kIo naming
// the path when it cannot be opened, stat'ed or mapped, is not a regular file, or is shorter
// than `min_bytes` (`what` says what needs them: "the 8-byte header length").
api::StatusOr<ReadOnlyMapping> mapReadOnlyFile(const std::string& path, size_t min_bytes,
                                               std::string_view what);
void unmapFile(const ReadOnlyMapping& mapping);

}  // namespace engine
