#!/usr/bin/env bash
# Gateway overhead with the spending path on: wrk against the C++ sy_bench_upstream directly,
# through switchyard as a plain proxy, and through switchyard with a policies file (a keyed
# team with budgets, so every request reserves, calls and settles) and the SQLite ledger.
# Non-streamed chat completions (bench/chat.lua). Prints a Markdown block for
# bench/RESULTS.md.
#
#   bench/ledger_throughput.sh [build-dir]        (default build/; needs wrk)
#
# Needs build/switchyard, build/switchyard-cli and build/sy_bench_upstream (cmake --build
# build --target switchyard switchyard-cli sy_bench_upstream). Environment:
# SY_BENCH_DURATION (10s per run), SY_BENCH_GATEWAY_THREADS (2). Latency is taken on one
# connection, throughput on 64; wrk, the upstream and the gateway share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
build=${1:-build}
duration=${SY_BENCH_DURATION:-10s}
gw_threads=${SY_BENCH_GATEWAY_THREADS:-2}

require_bins "$build" switchyard switchyard-cli sy_bench_upstream
command -v wrk >/dev/null || { echo "wrk is required (scripts/install-deps.sh)" >&2; exit 2; }

bench_tmp

"$build/sy_bench_upstream" >"$tmp/up.out" &
pids+=($!)
up_port=$(port_of "$tmp/up.out")

key=sk-bench-ledger-team
key_hash=$(printf '%s' "$key" | "$build/switchyard-cli" hash-key)
common="server: {listen: 127.0.0.1, port: 0, threads: ${gw_threads}}
providers:
  up: {type: openai, base_url: \"http://127.0.0.1:${up_port}/v1\"}
models:
  - {name: bench, provider: up, upstream_model: bench-model}
pricing:
  up: {bench-model: {input: 1.0, output: 2.0}}"
cat >"$tmp/plain.yaml" <<YAML
${common}
auth: {allow_unauthenticated: true, anonymous_team: bench}
YAML
cat >"$tmp/policies.yaml" <<YAML
defaults:
  routing: {mode: cloud_only, cloud_models: [bench]}
teams:
  bench:
    keys: [{id: bench-key, sha256: ${key_hash}}]
    budget: {monthly_usd: 1000000, daily_usd: 100000, when_exhausted: reject}
    rate_limits: {requests_per_minute: 100000000, tokens_per_minute: 1000000000}
YAML
cat >"$tmp/ledger.yaml" <<YAML
${common}
auth: {allow_unauthenticated: false}
policies: "${tmp}/policies.yaml"
ledger: {path: "${tmp}/ledger.db"}
YAML

"$build/switchyard" serve --config "$tmp/plain.yaml" >"$tmp/plain.out" 2>"$tmp/plain.err" &
pids+=($!)
"$build/switchyard" serve --config "$tmp/ledger.yaml" >"$tmp/ledger.out" 2>"$tmp/ledger.err" &
pids+=($!)
plain_port=$(port_of "$tmp/plain.out")
ledger_port=$(port_of "$tmp/ledger.out")

chat=/v1/chat/completions
auth=(-H "Authorization: Bearer ${key}")
warm() {  # url [curl args...]: one request, so that a refused setup stops the bench here
  local url=$1
  shift
  if ! curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' "$@" \
      -d '{"model":"bench","messages":[{"role":"user","content":"hi"}]}' "$url"; then
    echo "warm-up request to $url failed" >&2
    exit 1
  fi
}
warm "http://127.0.0.1:${plain_port}${chat}"
warm "http://127.0.0.1:${ledger_port}${chat}" "${auth[@]}"

run() {  # name connections url [wrk args...]
  local name=$1 conns=$2 url=$3
  shift 3
  wrk -t1 -c"$conns" -d"$duration" --latency -s bench/chat.lua "$@" "$url" >"$tmp/$name"
}
p50() { awk '/^ +50%/ {print $2}' "$tmp/$1"; }
rps() { awk '/^Requests\/sec/ {print $2}' "$tmp/$1"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run direct1 1 "http://127.0.0.1:${up_port}${chat}"
run plain1 1 "http://127.0.0.1:${plain_port}${chat}"
run ledger1 1 "http://127.0.0.1:${ledger_port}${chat}" "${auth[@]}"
run direct64 64 "http://127.0.0.1:${up_port}${chat}"
run plain64 64 "http://127.0.0.1:${plain_port}${chat}"
run ledger64 64 "http://127.0.0.1:${ledger_port}${chat}" "${auth[@]}"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ledger_rows=$(command -v sqlite3 >/dev/null &&
  sqlite3 "$tmp/ledger.db" "select group_concat(status || ': ' || n, ', ') from
    (select status, count(*) n from requests group by status)" 2>/dev/null || echo "?")
tree=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && tree+=" + uncommitted changes"

cpu="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "### gateway overhead with policies and the ledger ($(date -u +%Y-%m-%d), ${cpu})"
echo
echo "Command: \`bench/ledger_throughput.sh\` (wrk -t1, ${duration} per run, gateway threads: ${gw_threads};"
echo "tree at run time ${tree}; load average ${load_before} before, ${load_after} after)"
echo
echo "| run | p50 latency | requests/s |"
echo "|---|---|---|"
echo "| direct, 1 connection | $(p50 direct1) | $(rps direct1) |"
echo "| switchyard plain, 1 connection | $(p50 plain1) | $(rps plain1) |"
echo "| switchyard + policies + ledger, 1 connection | $(p50 ledger1) | $(rps ledger1) |"
echo "| direct, 64 connections | $(p50 direct64) | $(rps direct64) |"
echo "| switchyard plain, 64 connections | $(p50 plain64) | $(rps plain64) |"
echo "| switchyard + policies + ledger, 64 connections | $(p50 ledger64) | $(rps ledger64) |"
echo
echo "Ledger rows by status: ${ledger_rows}."
for f in direct1 plain1 ledger1 direct64 plain64 ledger64; do
  errs=$(grep -E "Non-2xx|Socket errors" "$tmp/$f" || true)
  if [[ -n "$errs" ]]; then echo && echo "$f: $errs"; fi
done
exit 0
