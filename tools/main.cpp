// switchyard-cli: command-line tools beside the server (key hashing, tokenization, test
// models, reports and exports). Subcommands register themselves (tools/cli.h).
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "tools/cli.h"

namespace tools {
namespace {

struct Entry {
  const char* summary;
  CommandFn fn;
};

std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> commands;
  return commands;
}

void printUsage(FILE* out) {
  std::fprintf(out, "usage: switchyard-cli <command> [options]\n\ncommands:\n");
  for (const auto& [name, entry] : registry()) {
    std::fprintf(out, "  %-18s %s\n", name.c_str(), entry.summary);
  }
  std::fprintf(out, "\nRun 'switchyard-cli <command> --help' for a command's options.\n");
}

}  // namespace

bool registerCommand(const char* name, const char* summary, CommandFn fn) {
  registry()[name] = Entry{summary, fn};
  return true;
}

}  // namespace tools

int main(int argc, char** argv) {
  if (argc < 2) {
    tools::printUsage(stderr);
    return 2;
  }
  if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    tools::printUsage(stdout);
    return 0;
  }
  auto it = tools::registry().find(argv[1]);
  if (it == tools::registry().end()) {
    std::fprintf(stderr, "switchyard-cli: unknown command '%s'\n\n", argv[1]);
    tools::printUsage(stderr);
    return 2;
  }
  return it->second.fn(argc - 1, argv + 1);
}
