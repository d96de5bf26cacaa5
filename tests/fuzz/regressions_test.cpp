// Replays every committed fuzz input through the normal build's parsers: the seed corpora
// (tests/fuzz/corpus/<target>/) and each input that once crashed a target or broke one of its
// properties (tests/fuzz/regressions/<target>/, named after what it found). A crash here is the
// bug coming back; libFuzzer itself runs only in scripts/fuzz.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "policies/yaml_reader.h"
#include "tests/fuzz/fuzz_targets.h"

namespace fuzz {
namespace {

namespace fs = std::filesystem;

std::string fuzzDir() { return std::string(SY_SOURCE_DIR) + "/tests/fuzz"; }

std::vector<fs::path> filesUnder(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs every file of `kind` (corpus or regressions) through its target; returns how many ran.
size_t replay(const std::string& kind) {
  size_t ran = 0;
  for (const auto& entry : fs::directory_iterator(fuzzDir() + "/" + kind)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    const Target* target = findTarget(name);
    EXPECT_NE(target, nullptr) << kind << "/" << name << " names no fuzz target";
    if (target == nullptr) continue;
    if (target->init != nullptr && !target->init()) {
      std::fprintf(stderr, "skipping %s/%s: its target cannot run here\n", kind.c_str(),
                   name.c_str());
      continue;
    }
    for (const fs::path& file : filesUnder(entry.path())) {
      // Named before it runs: a crash's log then says which input brought it back.
      std::fprintf(stderr, "replaying %s/%s/%s\n", kind.c_str(), name.c_str(),
                   file.filename().c_str());
      const std::string input = readFile(file);
      target->run(input);
      ++ran;
    }
  }
  return ran;
}

TEST(FuzzRegressions, EverySeedInputRuns) {
  ASSERT_TRUE(fs::is_directory(fuzzDir() + "/corpus"));
  EXPECT_GT(replay("corpus"), 0u);
}

TEST(FuzzRegressions, EveryInputThatOnceFailedRuns) {
  if (!fs::is_directory(fuzzDir() + "/regressions")) GTEST_SKIP() << "no regressions yet";
  EXPECT_GT(replay("regressions"), 0u);
}

TEST(FuzzRegressions, EveryTargetHasSeeds) {
  for (const Target& t : targets()) {
    EXPECT_FALSE(filesUnder(fuzzDir() + "/corpus/" + std::string(t.name)).empty())
        << "tests/fuzz/corpus/" << t.name << " is empty";
  }
}

// Found by switchyard_yaml and policies_yaml: yaml-cpp 0.7's LoadAll never returned (and kept
// allocating) on a stray comma at the top level.
TEST(FuzzRegressions, YamlWithAStrayCommaIsAnErrorNotAHang) {
  for (std::string_view text : {",", ", a:\n b", ",\nserver: {port: 8080}\n"}) {
    auto r = policies::YamlReader::parse(text, "t.yaml");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), api::ErrorCode::kConfig);
    EXPECT_EQ(r.status().message(), "t.yaml:1:1: invalid YAML: unexpected text");
  }
}

}  // namespace
}  // namespace fuzz
