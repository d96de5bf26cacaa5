#!/usr/bin/env bash
# Soak: 1,000 concurrent streaming clients through the real gateway to a loopback fake OpenAI
# upstream (bench/fake_openai_upstream.mjs) for 10 minutes; 10% of the clients read slowly
# (1 MiB answers read at 128 KiB/s), 10% leave mid-stream, the rest read 2-second chat-like
# streams with a usage chunk, and every answer's bytes are checked. The gateway's RSS, open
# descriptors, threads and CPU time are sampled every second into a CSV; at the end a Markdown
# block for bench/RESULTS.md says whether RSS stayed flat (the load's last minute against its
# second minute) and whether the descriptors went back to their baseline once the clients left,
# with requests completed and errors by kind.
#
#   bench/soak.sh [build-dir]          (default build/; needs build/switchyard, node)
#
# Environment: SY_SOAK_DURATION_S (600), SY_SOAK_CLIENTS (1000), SY_SOAK_SLOW_FRACTION (0.1),
# SY_SOAK_DISCONNECT_FRACTION (0.1), SY_SOAK_GATEWAY_THREADS (2), SY_SOAK_PLAIN (0: the gateway
# runs with a policies file, a keyed team with a budget, and the SQLite ledger, so every stream
# reserves and settles; 1: a plain proxy), SY_SOAK_OUT (a folder to keep the CSV, the JSON
# summary and the gateway's stderr; default: a temporary folder, removed). Loopback only; every
# process it starts is stopped when it ends, and the whole run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
build=${1:-build}
duration=${SY_SOAK_DURATION_S:-600}
clients=${SY_SOAK_CLIENTS:-1000}
slow=${SY_SOAK_SLOW_FRACTION:-0.1}
leave=${SY_SOAK_DISCONNECT_FRACTION:-0.1}
gw_threads=${SY_SOAK_GATEWAY_THREADS:-2}
plain=${SY_SOAK_PLAIN:-0}
drain_s=60
settle_s=15

require_bins "$build" switchyard switchyard-cli
command -v node >/dev/null || { echo "node is required" >&2; exit 2; }

# Each client holds a connection to the gateway, and the gateway one to the upstream: raise
# the descriptor limit for everything started below (as far as the hard limit allows).
want_fds=$((clients * 4 + 1024))
hard=$(ulimit -Hn)
if [[ "$hard" == unlimited || "$hard" -ge "$want_fds" ]]; then ulimit -n "$want_fds"
else ulimit -n "$hard"; fi
if [[ "$(ulimit -n)" -lt $((clients * 2 + 256)) ]]; then
  echo "ulimit -n is $(ulimit -n), too low for ${clients} clients (hard limit ${hard})" >&2
  exit 2
fi

bench_tmp
out=${SY_SOAK_OUT:-$tmp}
mkdir -p "$out"

node bench/fake_openai_upstream.mjs >"$tmp/up.out" 2>"$tmp/up.err" &
pids+=($!)
up_port=$(port_of "$tmp/up.out")

key=sk-bench-soak-team
cat >"$tmp/gw.yaml" <<YAML
server: {listen: 127.0.0.1, port: 0, threads: ${gw_threads}}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:${up_port}/v1", retry: {max_attempts: 1}}
models:
  - {name: bench, provider: up, upstream_model: bench-model}
pricing:
  up: {bench-model: {input: 1.0, output: 2.0}}
YAML
if [[ "$plain" == 1 ]]; then
  echo "auth: {allow_unauthenticated: true, anonymous_team: bench}" >>"$tmp/gw.yaml"
  key_arg=()
  setup="plain proxy"
else
  key_hash=$(printf '%s' "$key" | "$build/switchyard-cli" hash-key)
  cat >"$tmp/policies.yaml" <<YAML
defaults:
  routing: {mode: cloud_only, cloud_models: [bench]}
teams:
  bench:
    keys: [{id: soak-key, sha256: ${key_hash}}]
    budget: {monthly_usd: 1000000, daily_usd: 100000, when_exhausted: reject}
YAML
  cat >>"$tmp/gw.yaml" <<YAML
auth: {allow_unauthenticated: false}
policies: "${tmp}/policies.yaml"
ledger: {path: "${tmp}/ledger.db"}
YAML
  key_arg=(--key "$key")
  setup="policies (keyed team with a budget) + SQLite ledger"
fi

"$build/switchyard" serve --config "$tmp/gw.yaml" >"$tmp/gw.out" 2>"$out/gateway.stderr" &
gw_pid=$!
pids+=("$gw_pid")
gw_port=$(port_of "$tmp/gw.out")

start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
limit=$((duration + drain_s + settle_s + 120))
timeout "$limit" node bench/soak_client.mjs --url "http://127.0.0.1:${gw_port}/v1/chat/completions" \
  --pid "$gw_pid" --csv "$out/soak.csv" "${key_arg[@]}" \
  --upstream-stats "http://127.0.0.1:${up_port}/stats" --clients "$clients" \
  --duration-s "$duration" --slow-fraction "$slow" --disconnect-fraction "$leave" \
  --drain-s "$drain_s" --settle-s "$settle_s" --clk-tck "$(getconf CLK_TCK)" >"$out/summary.json"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ledger_rows="(plain proxy: no ledger)"
if [[ "$plain" != 1 ]] && command -v sqlite3 >/dev/null; then
  ledger_rows=$(sqlite3 "$tmp/ledger.db" "select group_concat(status || ': ' || n, ', ') from
    (select status, count(*) n from requests group by status)" 2>/dev/null || echo "?")
fi

tree=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && tree+=" + uncommitted changes"

cpu="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "### soak ($(date -u +%Y-%m-%d), ${cpu})"
echo
echo "Command: \`SY_SOAK_DURATION_S=${duration} SY_SOAK_CLIENTS=${clients} bench/soak.sh\` (gateway: ${setup},"
echo "\`server.threads: ${gw_threads}\`, tree at run time ${tree}; started ${start}; load average ${load_before}"
echo "before, ${load_after} after)"
echo
node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const settle = Number(process.argv[2]);
const mib = (k) => (k === null || k === undefined ? "?" : (k / 1024).toFixed(1) + " MiB");
const ms = (v) => (v === null ? "?" : v.toFixed(0) + " ms");
const r = s.requests;
const errs = Object.entries(s.errors_by_kind).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
console.log(`- clients: ${s.clients} (${s.slow_clients} slow readers, ${s.leaving_clients} leaving ` +
            `mid-stream), ${s.load_s} s of load`);
console.log(`- requests: ${r.started} started, ${r.completed} completed and checked ` +
            `(${r.completed_slow} of them slow), ${r.left_on_purpose} left mid-stream on purpose, ` +
            `${r.errors} errors (${errs})`);
console.log(`- normal streams: first content after ${ms(s.normal_stream_ms.ttfb_p50)} p50 / ` +
            `${ms(s.normal_stream_ms.ttfb_p99)} p99 / ${ms(s.normal_stream_ms.ttfb_max)} max; ` +
            `whole stream ${ms(s.normal_stream_ms.total_p50)} ` +
            `p50 / ${ms(s.normal_stream_ms.total_p99)} p99 (the upstream takes 2,000 ms)`);
const x = s.rss_kib;
console.log(`- RSS: ${mib(x.baseline)} idle before; max ${mib(x.early_window_max)} in load seconds ` +
            `${x.early_window_s.join("-")}, max ${mib(x.late_window_max)} in seconds ` +
            `${x.late_window_s.join("-")} (ratio ${s.verdict.rss_late_over_early}: ` +
            `${s.verdict.rss_flat ? "flat" : "NOT flat"}); peak ${mib(x.load_max)}; ` +
            `${mib(x.after_idle)} after the clients left`);
const f = s.fds;
const kinds = (k) => {
  const st = Object.entries(k.upstream_states || {}).map(([n, v]) => `${v} ${n}`).join(", ");
  return `${k.client} client sockets, ${k.upstream} upstream sockets${st ? ` (${st})` : ""}, ` +
         `${k.other} other`;
};
const verdict = (exact, pool, k) => exact ? "back to baseline"
    : pool ? `back to baseline but for ${k.upstream} upstream sockets` : "NOT back to baseline";
const ki = f.after_idle_kinds || {};
const kp = f.after_probe_kinds || {};
console.log(`- open descriptors: ${f.baseline} before, max ${f.early_window_max} early / ` +
            `${f.late_window_max} late in the load (peak ${f.load_max}; at most ` +
            `${f.upstream_sockets_load_max} to the upstream at once); ${f.after_idle} ` +
            `${settle} s after the clients left: ${kinds(ki)} ` +
            `(${s.verdict.fds_back_to_baseline_idle ? "back to baseline" : "NOT back to baseline"}); ` +
            `${f.after_probe} 2 s after one more stream (${s.probe_ok ? "ok" : "FAILED"}): ` +
            `${kinds(kp)} (${verdict(s.verdict.fds_back_to_baseline,
                                     s.verdict.fds_back_to_baseline_but_pool, kp)})`);
console.log(`- threads: ${s.threads.baseline} before, ${s.threads.load_max} max, ` +
            `${s.threads.after_idle} after; gateway CPU time ${s.gateway_cpu_s} s`);
if (s.upstream) {
  const u = s.upstream;
  console.log(`- upstream: ${u.streams_started} streams started, ${u.streams_finished} finished, ` +
              `${u.streams_abandoned} abandoned by the gateway mid-way`);
}
if (s.stalls.length > 0) {
  const roles = {};
  for (const x of s.stalls) roles[x.role] = (roles[x.role] || 0) + 1;
  console.log(`- stalls: ${s.stalls.length} streams received nothing for 20 s (` +
              Object.entries(roles).map(([k, v]) => `${v} ${k}`).join(", ") +
              "); TCP queue snapshots of the first ones are in summary.json");
}
if (!s.drained) console.log(`- ${s.in_flight_at_drain_end} requests were still in flight 60 s after the load ended`);
if (s.gateway_gone) console.log("- THE GATEWAY EXITED during the run");
' "$out/summary.json" "$settle_s"
echo "- ledger rows by status: ${ledger_rows}"
[[ "$out" != "$tmp" ]] && echo && echo "(samples: $out/soak.csv, summary: $out/summary.json)"
exit 0
