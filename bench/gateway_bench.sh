#!/usr/bin/env bash
# Measures what the gateway adds: wrk against a fast loopback upstream directly, then through
# switchyard, non-streamed chat completions. Prints a Markdown block for bench/RESULTS.md.
#
#   bench/gateway_bench.sh [build-dir]      (default build/; needs wrk: scripts/install-deps.sh)
#
# Latency is taken with one connection (requests one after another, so p50 is the pure
# per-request cost); throughput with 64 connections. wrk, the upstream and the gateway share
# this machine's cores, so the throughput figure is a floor for a gateway with cores of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
duration=${SY_BENCH_DURATION:-10s}
gw_threads=${SY_BENCH_GATEWAY_THREADS:-1}
cmake --build "$build" --target switchyard sy_bench_upstream >/dev/null

tmp=$(mktemp -d)
cleanup() { kill "${gw_pid:-}" "${up_pid:-}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

"$build/sy_bench_upstream" >"$tmp/up.out" &
up_pid=$!
for _ in $(seq 50); do [[ -s "$tmp/up.out" ]] && break; sleep 0.1; done
up_port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$tmp/up.out")

cat >"$tmp/bench.yaml" <<YAML
server: {listen: 127.0.0.1, port: 0, threads: ${gw_threads}}
auth: {allow_unauthenticated: true, anonymous_team: bench}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:${up_port}/v1"}
models:
  - {name: bench, provider: up, upstream_model: bench-model}
pricing:
  up: {bench-model: {input: 1.0, output: 2.0}}
YAML
"$build/switchyard" serve --config "$tmp/bench.yaml" >"$tmp/gw.out" 2>"$tmp/gw.err" &
gw_pid=$!
for _ in $(seq 50); do [[ -s "$tmp/gw.out" ]] && break; sleep 0.1; done
gw_port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$tmp/gw.out")

direct="http://127.0.0.1:${up_port}/v1/chat/completions"
through="http://127.0.0.1:${gw_port}/v1/chat/completions"
curl -sf -X POST -H 'Content-Type: application/json' \
  -d '{"model":"bench","messages":[{"role":"user","content":"hi"}]}' "$through" >/dev/null

run() {  # connections url -> wrk output
  wrk -t1 -c"$1" -d"$duration" --latency -s bench/chat.lua "$2"
}
p50() { awk '/^ +50%/ {print $2}' ; }
rps() { awk '/^Requests\/sec/ {print $2}' ; }

run 1 "$direct" >"$tmp/direct1"
run 1 "$through" >"$tmp/through1"
run 64 "$direct" >"$tmp/direct64"
run 64 "$through" >"$tmp/through64"

echo "### gateway overhead ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "Command: \`bench/gateway_bench.sh\` (wrk -t1, ${duration} per run, gateway threads: ${gw_threads})"
echo
echo "| run | p50 latency | requests/s |"
echo "|---|---|---|"
echo "| direct, 1 connection | $(p50 <"$tmp/direct1") | $(rps <"$tmp/direct1") |"
echo "| through switchyard, 1 connection | $(p50 <"$tmp/through1") | $(rps <"$tmp/through1") |"
echo "| direct, 64 connections | $(p50 <"$tmp/direct64") | $(rps <"$tmp/direct64") |"
echo "| through switchyard, 64 connections | $(p50 <"$tmp/through64") | $(rps <"$tmp/through64") |"
for f in direct1 through1 direct64 through64; do
  errs=$(grep -E "Non-2xx|Socket errors" "$tmp/$f" || true)
  [[ -n "$errs" ]] && echo "" && echo "$f: $errs"
done
exit 0
