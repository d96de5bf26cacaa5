// switchyard-cli's subcommand registry. Each tools/cmd_*.cpp registers one subcommand with a
// static initialiser; tools/main.cpp dispatches on argv[1].
#pragma once

namespace tools {

// argv[0] is the subcommand's name; the options follow. Returns the process exit code:
// 0 success, 1 failure of the work itself, 2 bad usage.
using CommandFn = int (*)(int argc, char** argv);

bool registerCommand(const char* name, const char* summary, CommandFn fn);

}  // namespace tools
