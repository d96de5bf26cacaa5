// libFuzzer's entry points for one target of fuzz_targets.h, picked at compile time by
// SY_FUZZ_TARGET (tests/fuzz/CMakeLists.txt builds this file once per target).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tests/fuzz/fuzz_targets.h"

#ifndef SY_FUZZ_TARGET
#error "SY_FUZZ_TARGET must name a target of fuzz_targets.h"
#endif

namespace {

const fuzz::Target& target() {
  static const fuzz::Target* t = fuzz::findTarget(SY_FUZZ_TARGET);
  if (t == nullptr) {
    std::fprintf(stderr, "no fuzz target named '%s'\n", SY_FUZZ_TARGET);
    std::abort();
  }
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (target().init != nullptr && !target().init()) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The view covers exactly libFuzzer's buffer (no terminator): a read past the input is an
  // ASan report, not a lucky NUL.
  target().run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
