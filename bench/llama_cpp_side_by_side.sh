#!/usr/bin/env bash
# The embedded engine and llama.cpp on the same GGUF files: same machine, same thread count, same
# prompt length and step counts. For each type a random-weight model of the preset's real shapes
# is written straight to GGUF (`switchyard-cli make-test-model --format gguf --type T`); then
# every round runs build/sy_engine_bench and bench/llama_cpp_bench.mjs (node-llama-cpp's
# prebuilt llama.cpp CPU build) on each file, alternating which engine goes first, so that noise
# from other work on the machine hits both. Prints a Markdown block for bench/RESULTS.md: the
# median over rounds of prefill tokens/s, decode tokens/s at batch 1 and the aggregate decode
# tokens/s of 4 and 8 sequences stepping together.
#
#   bench/llama_cpp_side_by_side.sh [build-dir]          (default build/)
#
# Needs build/switchyard-cli and build/sy_engine_bench (cmake --build build --target
# switchyard-cli sy_engine_bench) and node with the npm dependencies (scripts/npm-deps.sh).
# Environment: SY_BENCH_PRESET (gemma-3-1b; any Gemma 3 preset with the real tokenizer),
# SY_BENCH_TYPES ("q4_k_m q8_0 bf16"), SY_BENCH_THREADS (2), SY_BENCH_PREFILL (64),
# SY_BENCH_BATCHES (1,4,8), SY_BENCH_STEPS (16), SY_BENCH_ROUNDS (2), SY_BENCH_DIR (where the
# GGUF files go, kept between runs when set; default a temporary folder removed at exit).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
build=${1:-build}
preset=${SY_BENCH_PRESET:-gemma-3-1b}
types=${SY_BENCH_TYPES:-q4_k_m q8_0 bf16}
threads=${SY_BENCH_THREADS:-2}
prefill=${SY_BENCH_PREFILL:-64}
batches=${SY_BENCH_BATCHES:-1,4,8}
steps=${SY_BENCH_STEPS:-16}
rounds=${SY_BENCH_ROUNDS:-2}

require_bins "$build" switchyard-cli sy_engine_bench
command -v node >/dev/null || { echo "node is required" >&2; exit 2; }
[[ -d node_modules/node-llama-cpp ]] || { echo "node-llama-cpp is missing: run scripts/npm-deps.sh" >&2; exit 2; }
bench_tmp
dir=${SY_BENCH_DIR:-$tmp}
mkdir -p "$dir"

for t in $types; do
  f="$dir/$preset-$t.gguf"
  if [[ ! -s "$f" ]]; then
    "$build/switchyard-cli" make-test-model --preset "$preset" --format gguf --type "$t" \
      --out "$f" >&2
  fi
done

# One result line per engine, type and round: "engine type prefill_tps decode_tps_B..."
results="$tmp/results.txt"
: >"$results"
ours() {  # type file
  local out
  out=$("$build/sy_engine_bench" --model "$2" --threads "$threads" --prefill "$prefill" \
    --batch "$batches" --steps "$steps")
  echo "$out" >&2
  local p d
  p=$(sed -n 's/^prefill *[0-9]* tokens: *[0-9.]* s *\([0-9.]*\) tokens\/s.*/\1/p' <<<"$out" | head -1)
  d=$(sed -n 's/^decode batch \([0-9]*\): .* \([0-9.]*\) tokens\/s .*/\1:\2/p' <<<"$out" | tr '\n' ' ')
  echo "switchyard $1 $p $d" >>"$results"
}
theirs() {  # type file
  local out
  out=$(node bench/llama_cpp_bench.mjs --gguf "$2" --threads "$threads" --prefill "$prefill" \
    --batch "$batches" --steps "$steps")
  echo "$out" >&2
  node -e '
    const r = JSON.parse(process.argv[1]);
    const p = r.prefill[0].tokens / r.prefill[0].seconds;
    const d = r.decode.map((x) => `${x.batch}:${(x.batch / x.step_s).toFixed(2)}`).join(" ");
    console.log(`llama.cpp ${process.argv[2]} ${p.toFixed(1)} ${d}`);' "$out" "$1" >>"$results"
}

started=$(date -u +%H:%M)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$rounds"); do
  for t in $types; do
    f="$dir/$preset-$t.gguf"
    if (( r % 2 )); then ours "$t" "$f"; theirs "$t" "$f"; else theirs "$t" "$f"; ours "$t" "$f"; fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The median of each cell over the rounds.
node -e '
  const fs = require("fs");
  const [file, types, batches] = process.argv.slice(1);
  const rows = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => l.split(" "));
  const median = (xs) => {
    const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    if (!s.length) return NaN;
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const bs = batches.split(",");
  console.log(`| type | engine | prefill tok/s | ${bs.map((b) => `decode batch ${b} tok/s`).join(" | ")} |`);
  console.log(`|---|---|---:|${bs.map(() => "---:").join("|")}|`);
  for (const t of types.split(" ").filter(Boolean)) {
    for (const e of ["switchyard", "llama.cpp"]) {
      const mine = rows.filter((r) => r[0] === e && r[1] === t);
      const pre = median(mine.map((r) => Number(r[2])));
      const dec = bs.map((b) => median(mine.map((r) => {
        const cell = r.slice(3).find((c) => c.startsWith(`${b}:`));
        return cell ? Number(cell.split(":")[1]) : NaN;
      })));
      console.log(`| ${t} | ${e} | ${pre.toFixed(1)} | ${dec.map((d) => d.toFixed(2)).join(" | ")} |`);
    }
  }' "$results" "$types" "$batches"
echo
echo "preset $preset, $threads threads, prefill $prefill tokens, $steps decode steps, median of" \
  "$rounds rounds; $(date -u +%F) $started-$(date -u +%H:%M) UTC, load average $load_before" \
  "before, $load_after after; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
