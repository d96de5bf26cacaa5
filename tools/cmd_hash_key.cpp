// switchyard-cli hash-key: prints the SHA-256 hex digest of an API key for the config's
// `teams[].keys[].sha256`. The key is read from stdin so that it stays out of shell history.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "gateway/auth.h"
#include "tools/cli.h"

namespace {

int runHashKey(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf(
          "usage: switchyard-cli hash-key < key.txt\n\n"
          "Reads an API key on stdin (one trailing newline is ignored) and prints its\n"
          "SHA-256 hex digest, the form the config stores in teams[].keys[].sha256.\n");
      return 0;
    }
    std::fprintf(stderr, "hash-key: unknown option '%s'\n", argv[i]);
    return 2;
  }
  std::string key((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (!key.empty() && key.back() == '\r') key.pop_back();
  if (key.empty()) {
    std::fprintf(stderr, "hash-key: no key on stdin\n");
    return 1;
  }
  std::printf("%s\n", gateway::sha256Hex(key).c_str());
  return 0;
}

const bool kRegistered =
    tools::registerCommand("hash-key", "print the SHA-256 digest of an API key (stdin)", &runHashKey);

}  // namespace
