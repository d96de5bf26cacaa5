#!/usr/bin/env bash
# One-call GPU check of kernels/ on a machine that has CUDA but not our Debian packages: builds
# GoogleTest from source and uses a copied nlohmann_json (both carried in $SY_DEPS), configures
# with SY_ENGINE_ONLY, builds kernels_tests, runs it, then runs it under compute-sanitizer
# (memcheck on everything; racecheck and synccheck on the kernels with shared memory and
# barriers; initcheck on everything). Seven files go to $OUT (default /tmp/sy-gpu-out): setup.log
# (environment, dependencies, configure, build), kernels_tests.log, errors_table.txt (one line
# per comparison: bit-exact share and max error in bf16 ulps), ctest.log, memcheck.log,
# sanitizers.log (racecheck, synccheck, initcheck) and summary.txt.
#
# Prepare the dependencies once on a Debian machine that has them (build*/ is git-ignored):
#   mkdir -p build-deps/prefix/include build-deps/prefix/share/cmake
#   cp -r /usr/src/googletest build-deps/googletest
#   cp -r /usr/include/nlohmann build-deps/prefix/include/
#   cp -r /usr/share/cmake/nlohmann_json build-deps/prefix/share/cmake/
# then, on the GPU machine, from the repository root: bash tests/kernels/run_gpu_checks.sh
set -uo pipefail

OUT=${OUT:-/tmp/sy-gpu-out}
DEPS=${SY_DEPS:-build-deps}
JOBS=${JOBS:-16}
BUILD=${SY_BUILD_DIR:-build-gpu}
PREFIX=${SY_PREFIX:-/tmp/sy-prefix}
mkdir -p "$OUT"
# The whole script stays inside one device call's 10 minutes: each sanitizer run gets what is
# left of SY_BUDGET_S (default 560 s) at most, and is skipped when under 20 s remain.
start=$(date +%s)
budget=${SY_BUDGET_S:-560}
left() { echo $((budget - ($(date +%s) - start))); }
export PATH=/usr/local/cuda/bin:$PATH
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

{ nvidia-smi; nvcc --version; cmake --version; ninja --version; g++ --version; } \
  >"$OUT/setup.log" 2>&1
note "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"

# Dependencies into $PREFIX: nlohmann_json as copied, GoogleTest built from its sources.
mkdir -p "$PREFIX"
cp -r "$DEPS/prefix/." "$PREFIX/" || { note "missing $DEPS/prefix"; exit 2; }
if [ -d "$DEPS/googletest" ]; then
  (cmake -S "$DEPS/googletest" -B /tmp/sy-gtest-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
     -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$PREFIX" &&
   cmake --build /tmp/sy-gtest-build -j "$JOBS" && cmake --install /tmp/sy-gtest-build) \
    >>"$OUT/setup.log" 2>&1 || { note "googletest build failed (setup.log)"; exit 2; }
fi

t0=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DSY_ENGINE_ONLY=ON -DSY_CUDA=on -DSY_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$PREFIX" ${SY_EXTRA_CMAKE_ARGS:-} >>"$OUT/setup.log" 2>&1 ||
  { note "configure failed (setup.log)"; tail -30 "$OUT/setup.log"; exit 3; }
ninja -C "$BUILD" -j "$JOBS" kernels_tests >>"$OUT/setup.log" 2>&1 ||
  { note "build failed (setup.log)"; grep -E "error|FAILED" "$OUT/setup.log" | head -30; exit 4; }
note "configure+build: $(( $(date +%s) - t0 )) s"

cd "$BUILD"
./kernels_tests >"$OUT/kernels_tests.log" 2>&1
rc=$?
note "kernels_tests exit $rc: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$OUT/kernels_tests.log" | tr '\n' ' ')"
grep '^\[ kernels  \]' "$OUT/kernels_tests.log" >"$OUT/errors_table.txt"
note "max ulps per check (worst first):"
awk '{for (i = 1; i <= NF; i++) if ($i ~ /^max=/) print substr($i, 5) "\t" $0}' \
  "$OUT/errors_table.txt" | sort -g -r | cut -f2- | head -8 | tee -a "$summary"
ctest -L gpu --output-on-failure >"$OUT/ctest.log" 2>&1
rc=$?
note "ctest -L gpu exit $rc: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log")"

if command -v compute-sanitizer >/dev/null; then
  cs() {  # tool, cap in seconds, log name, extra args
    local tool=$1 cap=$2 log=$3 rc t
    shift 3
    t=$(left)
    ((t > cap)) && t=$cap
    if ((t < 20)); then
      note "compute-sanitizer $tool skipped: out of time"
      return
    fi
    echo "==== compute-sanitizer --tool $tool $* (timeout ${t}s)" >>"$OUT/$log"
    timeout "$t" compute-sanitizer --tool "$tool" --error-exitcode 99 "$@" >/tmp/sy-cs.log 2>&1
    rc=$?
    cat /tmp/sy-cs.log >>"$OUT/$log"
    note "compute-sanitizer $tool exit $rc: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/sy-cs.log | tail -1)"
  }
  cs memcheck 300 memcheck.log --leak-check full ./kernels_tests
  cs racecheck 120 sanitizers.log ./kernels_tests --gtest_filter='Rmsnorm.*'
  cs synccheck 90 sanitizers.log ./kernels_tests --gtest_filter='Rmsnorm.*:Rope.*'
  cs initcheck 150 sanitizers.log ./kernels_tests
else
  note "compute-sanitizer not found"
fi
cat "$summary"
