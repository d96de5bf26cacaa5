// A small option reader for switchyard-cli subcommands: `--name value`, `--name=value` and
// boolean `--flag`s, with typed getters whose errors name the option. Times are given as
// YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z (UTC) or Unix milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/status.h"

namespace tools {

class Options {
 public:
  // `valued`: options that take a value; `flags`: options that do not. Positional arguments
  // (not starting with --) are kept in order. Unknown options are an error.
  static api::StatusOr<Options> parse(int argc, char** argv, const std::set<std::string>& valued,
                                      const std::set<std::string>& flags);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  api::StatusOr<std::optional<double>> number(const std::string& name, double min,
                                              double max) const;
  api::StatusOr<std::optional<int64_t>> time(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

// "2026-11-23" → ms since the epoch (UTC midnight); also "2026-11-23T10:30:00Z" and plain
// integers (ms). nullopt for anything else.
std::optional<int64_t> parseTime(const std::string& text);

}  // namespace tools
