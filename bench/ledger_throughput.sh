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
# SY_BENCH_DURATION (10s per run), SY_BENCH_GATEWAY_THREADS (2), SY_BENCH_ROUNDS (1: every
# run repeated this many times, the runs of a round back to back), SY_BENCH_BASELINE (a path
# to another switchyard binary, e.g. built from an older commit: its plain and ledger gateways
# run in the same rounds, right after this build's), SY_BENCH_PG_URL (a PostgreSQL database,
# postgresql://...: a fourth gateway with the same policies on the PostgreSQL ledger runs in
# the same rounds; its tables are created there). Latency is taken on one connection,
# throughput on 64; wrk, the upstream, the database and the gateway share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
build=${1:-build}
duration=${SY_BENCH_DURATION:-10s}
gw_threads=${SY_BENCH_GATEWAY_THREADS:-2}
rounds=${SY_BENCH_ROUNDS:-1}
baseline=${SY_BENCH_BASELINE:-}
pg_url=${SY_BENCH_PG_URL:-}

require_bins "$build" switchyard switchyard-cli sy_bench_upstream
command -v wrk >/dev/null || { echo "wrk is required (scripts/install-deps.sh)" >&2; exit 2; }
if [[ -n "$baseline" && ! -x "$baseline" ]]; then
  echo "SY_BENCH_BASELINE=$baseline is not an executable" >&2
  exit 2
fi

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
if [[ -n "$pg_url" ]]; then
  sed "s|ledger: {path: .*|ledger: {url: \"${pg_url}\", replica: bench}|" "$tmp/ledger.yaml" \
    >"$tmp/pg.yaml"
  "$build/switchyard" serve --config "$tmp/pg.yaml" >"$tmp/pg.out" 2>"$tmp/pg.err" &
  pids+=($!)
  pg_port=$(port_of "$tmp/pg.out")
fi
if [[ -n "$baseline" ]]; then
  sed "s|${tmp}/ledger.db|${tmp}/ledger-baseline.db|" "$tmp/ledger.yaml" >"$tmp/bledger.yaml"
  "$baseline" serve --config "$tmp/plain.yaml" >"$tmp/bplain.out" 2>"$tmp/bplain.err" &
  pids+=($!)
  "$baseline" serve --config "$tmp/bledger.yaml" >"$tmp/bledger.out" 2>"$tmp/bledger.err" &
  pids+=($!)
  bplain_port=$(port_of "$tmp/bplain.out")
  bledger_port=$(port_of "$tmp/bledger.out")
fi

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
[[ -z "$pg_url" ]] || warm "http://127.0.0.1:${pg_port}${chat}" "${auth[@]}"

run() {  # name connections url [wrk args...]: one wrk run, appended to the name's results
  local name=$1 conns=$2 url=$3
  shift 3
  wrk -t1 -c"$conns" -d"$duration" --latency -s bench/chat.lua "$@" "$url" >"$tmp/out"
  cat "$tmp/out" >>"$tmp/$name"
  awk '/^ +50%/ {print $2}' "$tmp/out" >>"$tmp/$name.p50"
  awk '/^Requests\/sec/ {print $2}' "$tmp/out" >>"$tmp/$name.rps"
}
# All rounds' values of a run, comma-separated.
p50() { paste -sd, "$tmp/$1.p50" | sed 's/,/, /g'; }
rps() { paste -sd, "$tmp/$1.rps" | sed 's/,/, /g'; }

names=(direct1 plain1 ledger1 direct64 plain64 ledger64)
if [[ -n "$baseline" ]]; then names+=(bplain1 bledger1 bplain64 bledger64); fi
if [[ -n "$pg_url" ]]; then names+=(pg1 pg64); fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$rounds"); do
  for conns in 1 64; do
    run "direct$conns" "$conns" "http://127.0.0.1:${up_port}${chat}"
    run "plain$conns" "$conns" "http://127.0.0.1:${plain_port}${chat}"
    if [[ -n "$baseline" ]]; then
      run "bplain$conns" "$conns" "http://127.0.0.1:${bplain_port}${chat}"
    fi
    run "ledger$conns" "$conns" "http://127.0.0.1:${ledger_port}${chat}" "${auth[@]}"
    if [[ -n "$pg_url" ]]; then
      run "pg$conns" "$conns" "http://127.0.0.1:${pg_port}${chat}" "${auth[@]}"
    fi
    if [[ -n "$baseline" ]]; then
      run "bledger$conns" "$conns" "http://127.0.0.1:${bledger_port}${chat}" "${auth[@]}"
    fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ledger_rows=$(command -v sqlite3 >/dev/null &&
  sqlite3 "$tmp/ledger.db" "select group_concat(status || ': ' || n, ', ') from
    (select status, count(*) n from requests group by status)" 2>/dev/null || echo "?")
tree=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && tree+=" + uncommitted changes"

cpu="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "### gateway overhead with policies and the ledger ($(date -u +%Y-%m-%d), ${cpu})"
echo
echo "Command: \`bench/ledger_throughput.sh\` (wrk -t1, ${duration} per run, ${rounds} round(s),"
echo "gateway threads: ${gw_threads}; tree at run time ${tree}; load average ${load_before} before,"
echo "${load_after} after)"
[[ -z "$baseline" ]] || echo "Baseline rows: \`$(basename "$baseline")\` (SY_BENCH_BASELINE)."
echo
echo "| run | p50 latency | requests/s |"
echo "|---|---|---|"
echo "| direct, 1 connection | $(p50 direct1) | $(rps direct1) |"
echo "| switchyard plain, 1 connection | $(p50 plain1) | $(rps plain1) |"
echo "| switchyard + policies + ledger, 1 connection | $(p50 ledger1) | $(rps ledger1) |"
echo "| direct, 64 connections | $(p50 direct64) | $(rps direct64) |"
echo "| switchyard plain, 64 connections | $(p50 plain64) | $(rps plain64) |"
echo "| switchyard + policies + ledger, 64 connections | $(p50 ledger64) | $(rps ledger64) |"
if [[ -n "$baseline" ]]; then
  echo "| baseline plain, 1 connection | $(p50 bplain1) | $(rps bplain1) |"
  echo "| baseline + policies + ledger, 1 connection | $(p50 bledger1) | $(rps bledger1) |"
  echo "| baseline plain, 64 connections | $(p50 bplain64) | $(rps bplain64) |"
  echo "| baseline + policies + ledger, 64 connections | $(p50 bledger64) | $(rps bledger64) |"
fi
if [[ -n "$pg_url" ]]; then
  echo "| switchyard + policies + PostgreSQL ledger, 1 connection | $(p50 pg1) | $(rps pg1) |"
  echo "| switchyard + policies + PostgreSQL ledger, 64 connections | $(p50 pg64) | $(rps pg64) |"
fi
echo
echo "Ledger rows by status: ${ledger_rows}."
for f in "${names[@]}"; do
  errs=$(grep -E "Non-2xx|Socket errors" "$tmp/$f" || true)
  if [[ -n "$errs" ]]; then echo && echo "$f: $errs"; fi
done
exit 0
