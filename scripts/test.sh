#!/usr/bin/env bash
# Installs what is needed, builds everything and runs every test (unit, end-to-end, SDK).
#   scripts/test.sh            # Release-ish build in build/
#   SY_SANITIZE=address scripts/test.sh   # ASan+UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/npm-deps.sh

build_dir=build
extra=()
if [[ -n "${SY_SANITIZE:-}" ]]; then
  build_dir="build-${SY_SANITIZE}"
  extra+=("-DSY_SANITIZE=${SY_SANITIZE}")
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}"
cmake --build "$build_dir" -j "$(nproc)"
# deploy/: Prometheus rules and configs, compose.yaml, the Helm chart and the Dockerfiles, the
# gateway configs they carry loaded by the binary just built (seconds; see deploy/README.md).
bash scripts/check-deploy.sh "$build_dir/switchyard"
# The libFuzzer targets, a bounded time each (scripts/fuzz.sh; SY_FUZZ_SECONDS=0 skips them),
# before ctest so that ctest's summary stays the last thing printed.
if [[ "${SY_FUZZ_SECONDS:-}" != "0" ]]; then bash scripts/fuzz.sh; fi
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 300
