#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan+UBSan, in build-fuzz/) and runs each
# for a bounded time. Exits non-zero when any target finds a crash, a leak, a timeout or an
# out-of-memory input, after printing the input and the command that reproduces it.
#   scripts/fuzz.sh                       # every target, SY_FUZZ_SECONDS (default 20) each
#   SY_FUZZ_SECONDS=300 scripts/fuzz.sh sse trigger   # longer, on some targets
# Targets run SY_FUZZ_JOBS at a time (default: the number of cores). New inputs that reach new
# code are kept in build-fuzz/corpus/<target>/ for the next local run; the committed seeds
# (tests/fuzz/corpus/) and past crashes (tests/fuzz/regressions/) are read, never written.
# SY_FUZZ_SEED fixes libFuzzer's random seed; under CI (CI=true) it defaults to 1, so that a CI
# run explores the same inputs each time and a failure replays with the same command. Elsewhere
# each run explores anew.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SY_FUZZ_SECONDS:-20}
jobs=${SY_FUZZ_JOBS:-$(nproc)}
seed=${SY_FUZZ_SEED:-}
if [[ -z "$seed" && "${CI:-}" == "true" ]]; then seed=1; fi
build_dir=build-fuzz
all_targets=(chat_request messages_request responses_request embeddings_request sse openai_response openai_stream
             anthropic_response anthropic_stream gemini_response gemini_stream switchyard_yaml policies_yaml trigger safetensors
             gguf model_config tokenizer tokenizer_json chat_template response_format)
targets=("$@")
if ((${#targets[@]} == 0)); then targets=("${all_targets[@]}"); fi

dict_for() {
  case "$1" in
    chat_request | responses_request | embeddings_request | openai_* | model_config) echo tests/fuzz/dict/json.dict ;;
    messages_request) echo tests/fuzz/dict/anthropic.dict ;;
    response_format) echo tests/fuzz/dict/schema.dict ;;
    anthropic_*) echo tests/fuzz/dict/anthropic.dict ;;
    gemini_*) echo tests/fuzz/dict/gemini.dict ;;
    sse) echo tests/fuzz/dict/sse.dict ;;
    trigger) echo tests/fuzz/dict/trigger.dict ;;
    switchyard_yaml | policies_yaml) echo tests/fuzz/dict/yaml.dict ;;
  esac
}

# Inputs may be longer than libFuzzer's default 4 KB where the seeds are (configs, streams).
max_len_for() {
  case "$1" in
    switchyard_yaml | policies_yaml | tokenizer_json | chat_template | gguf | *_stream) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

start=$(date +%s)
# -O1 with line tables: fast to build, fast enough to fuzz, and stack traces with lines.
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
  -DSY_FUZZ=ON -DSY_CUDA=off -DSY_BUILD_TESTS=OFF >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("${t}_fuzz"); done
cmake --build "$build_dir" -j "$(nproc)" --target "${build_targets[@]}"
built=$(date +%s)
echo "fuzz: built ${#targets[@]} targets in $((built - start)) s; running each for ${seconds} s," \
  "${jobs} at a time${seed:+, seed $seed}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]] && command -v llvm-symbolizer >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi

run_one() {
  local t=$1
  local work="$build_dir/corpus/$t" artifacts="$build_dir/artifacts/$t/"
  rm -rf "$artifacts"
  mkdir -p "$work" "$artifacts"
  local args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -max_len="$(max_len_for "$t")"
              -print_final_stats=1 -artifact_prefix="$artifacts")
  local dict
  dict=$(dict_for "$t")
  if [[ -n "$dict" ]]; then args+=(-dict="$dict"); fi
  if [[ -n "$seed" ]]; then args+=(-seed="$seed"); fi
  local seeds=("$work" "tests/fuzz/corpus/$t")
  if [[ -d "tests/fuzz/regressions/$t" ]]; then seeds+=("tests/fuzz/regressions/$t"); fi
  "$build_dir/fuzz/${t}_fuzz" "${args[@]}" "${seeds[@]}" >"$build_dir/logs/$t.log" 2>&1
}

# Prints what a failed target found: the end of its log, the input, and how to replay it.
report_failure() {
  local t=$1 input
  echo "---- fuzz: $t FAILED; the end of $build_dir/logs/$t.log:"
  tail -n 60 "$build_dir/logs/$t.log"
  for input in "$build_dir/artifacts/$t/"*; do
    [[ -f "$input" ]] || continue
    echo "---- fuzz: $t reproducer $input ($(stat -c %s "$input") bytes), base64:"
    base64 -w 100 "$input" | head -n 40
    echo "---- replay: $build_dir/fuzz/${t}_fuzz $input"
    echo "---- keep it: mkdir -p tests/fuzz/regressions/$t && cp $input tests/fuzz/regressions/$t/"
  done
}

mkdir -p "$build_dir/logs"
declare -A pid_of=()
passed=0
failed=0
failed_names=()
finish_one() {
  local t=$1 rc=$2 stats
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$build_dir/logs/$t.log" | tail -n 1 |
          awk '{sub("#", "", $1); print $1 " inputs, coverage " $4 ", features " $6}' || true)
  if ((rc == 0)); then
    passed=$((passed + 1))
    echo "fuzz: $t ok (${stats:-no stats})"
  else
    failed=$((failed + 1))
    failed_names+=("$t")
    report_failure "$t"
  fi
}

# Reaps one run that has ended (bash's `wait -n` does not say which one), waiting for one.
wait_any() {
  local name rc
  while true; do
    for name in "${!pid_of[@]}"; do
      if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then
        rc=0
        wait "${pid_of[$name]}" || rc=$?
        unset "pid_of[$name]"
        finish_one "$name" "$rc"
        return 0
      fi
    done
    sleep 1
  done
}

for t in "${targets[@]}"; do
  while ((${#pid_of[@]} >= jobs)); do wait_any; done
  run_one "$t" &
  pid_of[$t]=$!
done
while ((${#pid_of[@]} > 0)); do wait_any; done

echo "fuzz: ${passed} passed, ${failed} failed (${#targets[@]} targets, ${seconds} s each," \
  "$(($(date +%s) - start)) s in all)"
if ((failed > 0)); then
  echo "fuzz: failed: ${failed_names[*]}"
  exit 1
fi
