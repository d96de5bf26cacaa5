#!/usr/bin/env bash
# Side-by-side latency from outside: a Node.js client sends sequential keep-alive requests (one
# connection per setup, one request at a time) to
#   (a) direct:    a Node.js fake OpenAI upstream (bench/fake_openai_upstream.mjs)
#   (b) plain:     switchyard in front of it as a plain proxy (no policies, no ledger)
#   (c) policies:  switchyard with a policies file (a keyed team with budgets and rate limits)
#                  and the SQLite ledger, so every request authenticates, reserves and settles
#   (d) portkey:   Portkey's open-source gateway from npm (@portkey-ai/gateway, pinned in
#                  bench/peer/package.json), when it is installed or installs
# interleaved in rounds, and prints a Markdown block for bench/RESULTS.md: p50/p90/p99 per
# setup and the p50 each adds over direct.
#
#   bench/latency_side_by_side.sh [build-dir]          (default build/)
#
# Needs build/switchyard and build/switchyard-cli (cmake --build build --target switchyard
# switchyard-cli) and node. Environment: SY_BENCH_ROUNDS (50), SY_BENCH_PER_ROUND (100),
# SY_BENCH_WARMUP (500 per setup), SY_BENCH_GATEWAY_THREADS (2, the shipped default),
# SY_BENCH_PEER (auto: use Portkey, running `npm ci --prefix bench/peer` once if it is not
# installed; off: skip it), SY_BENCH_CPP_UPSTREAM (0; 1 adds two rows against the C++
# sy_bench_upstream of bench/gateway_bench.sh, direct and through a plain switchyard, to tell
# the upstream's share from the gateway's), SY_BENCH_BASELINE (a path to another switchyard
# binary, e.g. one built from an older commit: adds its plain proxy and its policies + ledger
# setup as rows of the same interleaved run, so that a change and its baseline see the same
# machine noise). Everything listens on 127.0.0.1 and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
build=${1:-build}
rounds=${SY_BENCH_ROUNDS:-50}
per_round=${SY_BENCH_PER_ROUND:-100}
warmup=${SY_BENCH_WARMUP:-500}
gw_threads=${SY_BENCH_GATEWAY_THREADS:-2}
peer=${SY_BENCH_PEER:-auto}
cpp_upstream=${SY_BENCH_CPP_UPSTREAM:-0}
baseline=${SY_BENCH_BASELINE:-}

require_bins "$build" switchyard switchyard-cli
if [[ -n "$baseline" && ! -x "$baseline" ]]; then
  echo "SY_BENCH_BASELINE=$baseline is not an executable" >&2
  exit 2
fi
command -v node >/dev/null || { echo "node is required" >&2; exit 2; }

bench_tmp

node bench/fake_openai_upstream.mjs >"$tmp/up.out" 2>"$tmp/up.err" &
pids+=($!)
up_port=$(port_of "$tmp/up.out")

key=sk-bench-latency-team
key_hash=$(printf '%s' "$key" | "$build/switchyard-cli" hash-key)
providers="providers:
  up: {type: openai, base_url: \"http://127.0.0.1:${up_port}/v1\"}
models:
  - {name: bench, provider: up, upstream_model: bench-model}
pricing:
  up: {bench-model: {input: 1.0, output: 2.0}}"

cat >"$tmp/plain.yaml" <<YAML
server: {listen: 127.0.0.1, port: 0, threads: ${gw_threads}}
auth: {allow_unauthenticated: true, anonymous_team: bench}
${providers}
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
cat >"$tmp/policies-gw.yaml" <<YAML
server: {listen: 127.0.0.1, port: 0, threads: ${gw_threads}}
auth: {allow_unauthenticated: false}
${providers}
policies: "${tmp}/policies.yaml"
ledger: {path: "${tmp}/ledger.db"}
YAML

"$build/switchyard" serve --config "$tmp/plain.yaml" >"$tmp/plain.out" 2>"$tmp/plain.err" &
pids+=($!)
"$build/switchyard" serve --config "$tmp/policies-gw.yaml" >"$tmp/pol.out" 2>"$tmp/pol.err" &
pids+=($!)
plain_port=$(port_of "$tmp/plain.out")
pol_port=$(port_of "$tmp/pol.out")
if [[ -n "$baseline" ]]; then
  sed "s|${tmp}/ledger.db|${tmp}/ledger-baseline.db|" "$tmp/policies-gw.yaml" >"$tmp/base-gw.yaml"
  "$baseline" serve --config "$tmp/plain.yaml" >"$tmp/bplain.out" 2>"$tmp/bplain.err" &
  pids+=($!)
  "$baseline" serve --config "$tmp/base-gw.yaml" >"$tmp/bpol.out" 2>"$tmp/bpol.err" &
  pids+=($!)
  bplain_port=$(port_of "$tmp/bplain.out")
  bpol_port=$(port_of "$tmp/bpol.out")
fi

chat=/v1/chat/completions
targets="[{\"name\":\"direct\",\"url\":\"http://127.0.0.1:${up_port}${chat}\",\"headers\":{}},
 {\"name\":\"switchyard plain proxy\",\"url\":\"http://127.0.0.1:${plain_port}${chat}\",\"headers\":{}},
 {\"name\":\"switchyard + policies + SQLite ledger\",\"url\":\"http://127.0.0.1:${pol_port}${chat}\",
  \"headers\":{\"Authorization\":\"Bearer ${key}\"}}"
if [[ -n "$baseline" ]]; then
  targets+=",
 {\"name\":\"baseline plain proxy\",\"url\":\"http://127.0.0.1:${bplain_port}${chat}\",\"headers\":{}},
 {\"name\":\"baseline + policies + SQLite ledger\",\"url\":\"http://127.0.0.1:${bpol_port}${chat}\",
  \"headers\":{\"Authorization\":\"Bearer ${key}\"}}"
fi

peer_note="not run (SY_BENCH_PEER=off)"
portkey=bench/peer/node_modules/@portkey-ai/gateway/build/start-server.js
if [[ "$peer" != off ]]; then
  if [[ ! -f "$portkey" ]] && command -v npm >/dev/null; then
    npm ci --prefix bench/peer --no-audit --no-fund --ignore-scripts >"$tmp/npm.log" 2>&1 || true
  fi
  if [[ -f "$portkey" ]]; then
    pk_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{
      console.log(s.address().port);s.close();});')
    node bench/peer/portkey_loopback.mjs "$pk_port" >"$tmp/pk.out" 2>"$tmp/pk.err" &
    pids+=($!)
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:${pk_port}/" && break
      sleep 0.1
    done
    pk_version=$(node -p 'require("./bench/peer/node_modules/@portkey-ai/gateway/package.json").version')
    targets+=",
 {\"name\":\"portkey gateway ${pk_version} (node)\",\"url\":\"http://127.0.0.1:${pk_port}${chat}\",
  \"headers\":{\"Authorization\":\"Bearer sk-unused\",\"x-portkey-provider\":\"openai\",
  \"x-portkey-custom-host\":\"http://127.0.0.1:${up_port}/v1\"}}"
    peer_note=""
  else
    peer_note="not run: @portkey-ai/gateway is not installed and did not install"
    peer_note+=" (npm ci --prefix bench/peer)"
  fi
fi
if [[ "$cpp_upstream" == 1 ]]; then
  if [[ ! -x "$build/sy_bench_upstream" ]]; then
    echo "missing $build/sy_bench_upstream: cmake --build $build --target sy_bench_upstream" >&2
    exit 2
  fi
  "$build/sy_bench_upstream" >"$tmp/cpp.out" 2>"$tmp/cpp.err" &
  pids+=($!)
  cpp_port=$(port_of "$tmp/cpp.out")
  sed "s|127.0.0.1:${up_port}/v1|127.0.0.1:${cpp_port}/v1|" "$tmp/plain.yaml" >"$tmp/plain-cpp.yaml"
  "$build/switchyard" serve --config "$tmp/plain-cpp.yaml" >"$tmp/plcpp.out" 2>"$tmp/plcpp.err" &
  pids+=($!)
  plcpp_port=$(port_of "$tmp/plcpp.out")
  targets+=",
 {\"name\":\"direct, C++ upstream\",\"url\":\"http://127.0.0.1:${cpp_port}${chat}\",\"headers\":{}},
 {\"name\":\"switchyard plain proxy, C++ upstream\",\"url\":\"http://127.0.0.1:${plcpp_port}${chat}\",\"headers\":{}}"
fi
echo "${targets}]" >"$tmp/targets.json"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
node bench/latency_client.mjs --targets "$tmp/targets.json" --rounds "$rounds" \
  --per-round "$per_round" --warmup "$warmup" >"$tmp/result.json"

ledger_rows=$(command -v sqlite3 >/dev/null &&
  sqlite3 "$tmp/ledger.db" "select group_concat(status || ': ' || n, ', ') from
    (select status, count(*) n from requests group by status)" 2>/dev/null || echo "?")

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
tree=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && tree+=" + uncommitted changes"

cpu="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "### side-by-side latency ($(date -u +%Y-%m-%d), ${cpu})"
echo
echo "Command: \`bench/latency_side_by_side.sh\` (Node $(node --version) client, one keep-alive"
echo "connection per setup, ${rounds} interleaved rounds of ${per_round} sequential requests per setup"
echo "after ${warmup} warm-up requests each; switchyard \`server.threads: ${gw_threads}\`, tree at run time"
echo "${tree}; load average ${load_before} before, ${load_after} after)"
[[ -z "$baseline" ]] || echo "Baseline rows: \`$(basename "$baseline")\` (SY_BENCH_BASELINE)."
echo
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const ms = (us) => (us / 1000).toFixed(3);
// Each row is compared with the direct row of its own upstream.
const direct = (t) => t.name.endsWith("C++ upstream")
    ? r.targets.find((x) => x.name === "direct, C++ upstream") : r.targets[0];
console.log("| setup | requests | p50 ms | p90 ms | p99 ms | added p50 over direct | errors |");
console.log("|---|---|---|---|---|---|---|");
for (const t of r.targets) {
  const added = t === direct(t) ? "—" : `${ms(t.p50_us - direct(t).p50_us)} ms`;
  const errs = Object.entries(t.errors).map(([k, v]) => `${k}: ${v}`).join(", ") || "0";
  const conns = t.connections > 1 ? ` (${t.connections} connections)` : "";
  console.log(`| ${t.name} | ${t.requests}${conns} | ${ms(t.p50_us)} | ${ms(t.p90_us)} | ` +
              `${ms(t.p99_us)} | ${added} | ${errs} |`);
}' "$tmp/result.json"
echo
echo "Ledger rows of (c) by status: ${ledger_rows}."
[[ -n "$peer_note" ]] && echo "Peer gateway: ${peer_note}."
exit 0
