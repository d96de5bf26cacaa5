// switchyard-cli tokenize: prints the Gemma token ids of stdin's text, from a model directory's
// tokenizer.json (and tokenizer_config.json when present); no weights are needed.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "tools/cli.h"

namespace {

void printUsage(FILE* out) {
  std::fprintf(out,
               "usage: switchyard-cli tokenize --model DIR [--bos] [--jsonl] < text\n\n"
               "Prints the token ids of stdin as a JSON array. The text is taken verbatim, a\n"
               "trailing newline included (use printf or echo -n to leave it out).\n\n"
               "  --model DIR  directory with tokenizer.json (and tokenizer_config.json)\n"
               "  --bos        prepend <bos> (unless the text already starts with it)\n"
               "  --jsonl      each stdin line is a JSON string; print one id array per line\n"
               "               (blank lines are skipped)\n");
}

void printIds(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

int runTokenize(int argc, char** argv) {
  std::string model_dir;
  bool bos = false;
  bool jsonl = false;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "--help") == 0 || std::strcmp(arg, "-h") == 0) {
      printUsage(stdout);
      return 0;
    } else if (std::strcmp(arg, "--model") == 0) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tokenize: --model needs a directory\n");
        return 2;
      }
      model_dir = argv[++i];
    } else if (std::strncmp(arg, "--model=", 8) == 0) {
      model_dir = arg + 8;
    } else if (std::strcmp(arg, "--bos") == 0) {
      bos = true;
    } else if (std::strcmp(arg, "--jsonl") == 0) {
      jsonl = true;
    } else {
      std::fprintf(stderr, "tokenize: unknown option '%s'\n\n", arg);
      printUsage(stderr);
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "tokenize: --model DIR is required\n\n");
    printUsage(stderr);
    return 2;
  }

  auto tok = engine::Tokenizer::loadDir(model_dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenize: %s\n", tok.status().toString().c_str());
    return 1;
  }
  if (!jsonl) {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    printIds((*tok)->encode(text, bos));
    return 0;
  }
  std::string line;
  for (long line_no = 1; std::getline(std::cin, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded() || !value.is_string()) {
      std::fprintf(stderr, "tokenize: stdin line %ld is not a JSON string\n", line_no);
      return 1;
    }
    printIds((*tok)->encode(value.get_ref<const std::string&>(), bos));
  }
  return 0;
}

}  // namespace

static const bool kRegistered =
    tools::registerCommand("tokenize", "print the token ids of stdin's text", &runTokenize);
