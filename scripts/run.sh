#!/usr/bin/env bash
# Installs what is needed, builds the gateway and starts it on the embedded default config
# (configs/switchyard.yaml, compiled in). Extra arguments go to `switchyard serve`, e.g.
#   scripts/run.sh --config my.yaml --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/npm-deps.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target switchyard switchyard-cli

# Without real weights, the embedded config serves a small random-weight Gemma 3 model: it
# tokenizes like Gemma 3 but answers nonsense. Set SWITCHYARD_MODEL_DIR to a real checkpoint.
if [[ -z "${SWITCHYARD_MODEL_DIR:-}" && ! -f models/tiny/model.safetensors ]]; then
  ./build/switchyard-cli make-test-model --preset tiny --out models/tiny
fi
exec ./build/switchyard serve "$@"
