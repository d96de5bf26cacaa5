// The fuzz targets: every parser of untrusted input, each as one function of the raw input bytes.
//
// The same functions run in two places: under libFuzzer with ASan+UBSan (fuzz_entry.cpp, one
// executable per target, built by scripts/fuzz.sh) and in the normal test build, where
// regressions_test.cpp replays the seed corpora and every input that once crashed a target.
// A target returns normally for any input; a failed property check prints what failed and
// aborts, which libFuzzer reports as a crash with its reproducer.
#pragma once

#include <string_view>
#include <vector>

namespace fuzz {

struct Target {
  std::string_view name;  // "chat_request": the executable is <name>_fuzz
  // Once per process before the first input; may be null. False (after saying why on stderr):
  // the target cannot run here, e.g. the Gemma tokenizer is not installed.
  bool (*init)();
  void (*run)(std::string_view input);  // one input; the view points at the caller's bytes
};

// Every target, in the order scripts/fuzz.sh runs them.
const std::vector<Target>& targets();

// The target called `name`; nullptr when there is none.
const Target* findTarget(std::string_view name);

}  // namespace fuzz
