// A fresh directory under the system temp dir for one engine test, removed with everything in it
// when the test ends.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace sytest {

class EngineTempDir {
 public:
  explicit EngineTempDir(const std::string& prefix) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("sy_" + prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~EngineTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  EngineTempDir(const EngineTempDir&) = delete;
  EngineTempDir& operator=(const EngineTempDir&) = delete;

  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace sytest
