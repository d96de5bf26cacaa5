// Soak driver for bench/soak.sh: N concurrent streaming clients against a gateway in front of
// bench/fake_openai_upstream.mjs, some of them slow readers and some leaving mid-stream, for
// a fixed time; the gateway's RSS, open file descriptors, threads and CPU time are sampled
// from /proc every second into a CSV. Prints a JSON summary on stdout.
//
//   node bench/soak_client.mjs --url http://127.0.0.1:N/v1/chat/completions --pid GATEWAY_PID
//       --csv FILE [--key KEY] [--upstream-stats URL] [--clients 1000] [--duration-s 600]
//       [--slow-fraction 0.1] [--disconnect-fraction 0.1] [--baseline-s 5] [--ramp-s 10]
//       [--drain-s 60] [--settle-s 15] [--seed 1]
//
// Phases: baseline (no clients), load (clients loop: request, read, think, repeat), drain (no
// new requests; in-flight ones may finish, bounded by --drain-s), idle (client connections
// closed, gateway watched for --settle-s), probe (one more stream, then 2 s). Every loop is
// bounded by the clock.
import fs from 'node:fs';
import http from 'node:http';
import {execFileSync} from 'node:child_process';

import {expectedText} from './sse_shape.mjs';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const opt = {
  url: arg('url'),
  pid: Number(arg('pid')),
  csv: arg('csv'),
  key: arg('key', ''),
  upstreamStats: arg('upstream-stats', ''),
  clients: Number(arg('clients', 1000)),
  durationS: Number(arg('duration-s', 600)),
  slowFraction: Number(arg('slow-fraction', 0.1)),
  disconnectFraction: Number(arg('disconnect-fraction', 0.1)),
  baselineS: Number(arg('baseline-s', 5)),
  rampS: Number(arg('ramp-s', 10)),
  drainS: Number(arg('drain-s', 60)),
  settleS: Number(arg('settle-s', 15)),
  seed: Number(arg('seed', 1)),
  clkTck: Number(arg('clk-tck', 100)),
};
if (!opt.url || !opt.pid || !opt.csv) {
  console.error('usage: soak_client.mjs --url URL --pid PID --csv FILE [options]');
  process.exit(2);
}

// Stream shapes (see bench/fake_openai_upstream.mjs). Normal and leaving clients get a
// chat-like stream (20 small chunks over ~2 s); slow readers a 1 MiB answer sent as fast as
// the gateway takes it, which they read at 128 KiB/s, so the gateway has to hold or pause it.
const kShapes = {
  normal: {chunks: 20, gapMs: 100, chunkBytes: 24},
  slow: {chunks: 256, gapMs: 0, chunkBytes: 4096},
};
const kSlowReadBytesPerS = 128 * 1024;
const kThinkMaxMs = 1000;
const kIdleTimeoutMs = 60000;  // no byte for this long: the request counts as a timeout
const kMaxLatencySamples = 1000000;

// Seeded RNG (mulberry32) so that a rerun makes the same choices.
let rngState = opt.seed >>> 0;
function rand() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const expected = {
  normal: expectedText(kShapes.normal.chunks, kShapes.normal.chunkBytes),
  slow: expectedText(kShapes.slow.chunks, kShapes.slow.chunkBytes),
};

const counts = {started: 0, completed: 0, completed_slow: 0, left_on_purpose: 0, errors: 0};
const errorKinds = {};
const ttfbMs = [];  // request sent -> first content byte, normal streams
const totalMs = [];  // request sent -> [DONE], normal streams
let active = 0;

function fail(kind) {
  counts.errors += 1;
  errorKinds[kind] = (errorKinds[kind] || 0) + 1;
}

const agent = new http.Agent({keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096});

function body(shape, tag) {
  return JSON.stringify({
    model: 'bench',
    stream: true,
    stream_options: {include_usage: true},
    max_tokens: 4096,
    messages: [{role: 'user', content: `soak chunks=${shape.chunks} gap_ms=${shape.gapMs} ` +
                                        `chunk_bytes=${shape.chunkBytes} tag=${tag}`}],
  });
}

// One streamed request; resolves when it has ended one way or another (never rejects).
// role: normal | slow | leave. leaveAfter: content chunks to read before leaving.
let nextTag = 1;

function streamOnce(role, leaveAfter) {
  const tag = `s${nextTag++}`;
  const shapeName = role === 'slow' ? 'slow' : 'normal';
  const shape = kShapes[shapeName];
  const want = expected[shapeName];
  const payload = body(shape, tag);
  return new Promise((resolve) => {
    const t0 = performance.now();
    let done = false;
    const finish = (outcome) => {
      if (done) return;
      done = true;
      if (outcome === 'ok') {
        counts.completed += 1;
        if (role === 'slow') counts.completed_slow += 1;
      } else if (outcome === 'left') {
        counts.left_on_purpose += 1;
      } else {
        const who = {normal: '', slow: ' (slow reader)', leave: ' (leaver)'}[role];
        fail(`${outcome}${who}`);
      }
      resolve();
    };
    const headers = {'Content-Type': 'application/json', 'Content-Length': payload.length};
    if (opt.key) headers.Authorization = `Bearer ${opt.key}`;
    let gotHead = false;
    const req = http.request(opt.url, {method: 'POST', agent, headers}, (res) => {
      gotHead = true;
      if (res.statusCode !== 200) {
        res.resume();
        res.on('end', () => finish(`http_${res.statusCode}`));
        res.on('error', () => finish(`http_${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      let buf = '';
      let pos = 0;  // bytes of `want` matched so far
      let contentChunks = 0;
      let sawUsage = false;
      let sawDone = false;
      let bad = null;
      const onEvent = (ev) => {
        for (const line of ev.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trimStart();
          if (data === '[DONE]') {
            sawDone = true;
            continue;
          }
          let c;
          try {
            c = JSON.parse(data);
          } catch {
            bad = bad || 'bad_json';
            continue;
          }
          if (c.error) {
            bad = bad || 'error_event';
            continue;
          }
          if (c.usage && Array.isArray(c.choices) && c.choices.length === 0) {
            sawUsage = c.usage.completion_tokens === shape.chunks;
            if (!sawUsage) bad = bad || 'wrong_usage';
            continue;
          }
          const text = c.choices?.[0]?.delta?.content;
          if (typeof text === 'string' && text.length > 0) {
            if (contentChunks === 0 && role !== 'slow' && ttfbMs.length < kMaxLatencySamples) {
              ttfbMs.push(performance.now() - t0);
            }
            contentChunks += 1;
            if (want.startsWith(text, pos)) pos += text.length;
            else bad = bad || 'bad_content';
          }
        }
      };
      let lastData = performance.now();
      const stallCheck = setInterval(() => {
        if (done) return clearInterval(stallCheck);
        if (performance.now() - lastData > kStallSnapshotMs) {
          clearInterval(stallCheck);
          snapshotStall(role, tag, req.socket?.localPort, pos, want.length);
        }
      }, 5000);
      res.on('data', (d) => {
        lastData = performance.now();
        buf += d;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          onEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
        if (role === 'leave' && contentChunks >= leaveAfter) {
          req.destroy();
          finish('left');
          return;
        }
        if (role === 'slow') {
          // Read at a fixed byte rate: stop reading for as long as this piece "took".
          res.pause();
          setTimeout(() => res.resume(), (d.length * 1000) / kSlowReadBytesPerS);
        }
      });
      res.on('end', () => {
        if (bad) return finish(bad);
        if (!sawDone) return finish('truncated');
        if (pos !== want.length) return finish('short_content');
        if (!sawUsage) return finish('no_usage');
        if (role !== 'slow' && totalMs.length < kMaxLatencySamples) {
          totalMs.push(performance.now() - t0);
        }
        finish('ok');
      });
      res.on('error', () => finish('reset_mid_stream'));
      res.on('aborted', () => finish('reset_mid_stream'));
      res.on('close', () => finish('reset_mid_stream'));  // a no-op after 'end'
    });
    req.setTimeout(kIdleTimeoutMs, () => {
      finish(gotHead ? 'timeout_mid_stream' : 'timeout_before_headers');
      req.destroy();
    });
    req.on('error', (e) => finish(`connect_${e.code || 'error'}`));
    req.end(payload);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A stream that has received nothing for kStallSnapshotMs is looked into, to place the stall:
// the upstream says how far it got with that stream (by the stream's tag) and from which port
// the gateway reads it; ss shows the TCP queues of this client's connection and of that
// upstream connection. Bytes waiting in this client's socket: the client. In the gateway's
// socket to this client: sent, not yet read. In the gateway's upstream socket, with the
// upstream waiting to drain: a transfer the gateway paused and did not resume. Nowhere, with
// the upstream finished: the gateway holds or lost them. At most kMaxStallSnapshots.
const kStallSnapshotMs = 20000;
const kMaxStallSnapshots = 5;
const stalls = [];

function ss(filter) {
  try {
    return execFileSync('ss', ['-tnHio', 'state', 'all', filter], {encoding: 'utf8',
                                                                    timeout: 5000});
  } catch (e) {
    return `ss failed: ${e.message}`;
  }
}

function upstreamStream(tag) {
  if (!opt.upstreamStats) return Promise.resolve(null);
  return getJson(`${opt.upstreamStats}/stream?tag=${encodeURIComponent(tag)}`);
}

async function snapshotStall(role, tag, localPort, got, want) {
  const entry = {t_s: Number(((performance.now() - t0) / 1000).toFixed(1)), role, tag,
                 client_port: localPort, content_bytes: got, of: want};
  stalls.push(entry);
  if (stalls.length > kMaxStallSnapshots) return;
  const both = (port) => `( sport = :${port} or dport = :${port} )`;
  if (localPort) entry.client_connection = ss(both(localPort));
  entry.upstream_stream = await upstreamStream(tag);
  const port = entry.upstream_stream?.reader_port;
  if (port) entry.upstream_connection = ss(both(port));
}

let loadEndsAt = 0;
let gatewayGone = false;  // set by the sampler when /proc/<pid> disappears: the load stops

async function client(index, role) {
  await sleep(rand() * opt.rampS * 1000);
  while (performance.now() < loadEndsAt && !gatewayGone) {
    counts.started += 1;
    active += 1;
    const leaveAfter = 1 + Math.floor(rand() * (kShapes.normal.chunks - 2));
    await streamOnce(role, leaveAfter);
    active -= 1;
    await sleep(rand() * kThinkMaxMs);
  }
}

// --- sampling -------------------------------------------------------------------------------

const csv = fs.openSync(opt.csv, 'w');
fs.writeSync(csv, 't_s,phase,rss_kib,hwm_kib,fds,client_sockets,upstream_sockets,other_fds,' +
                  'threads,cpu_s,active_streams,started,' +
                  'completed,left_on_purpose,errors\n');
const samples = [];
let phase = 'baseline';
const t0 = performance.now();

const gatewayPort = Number(new URL(opt.url).port);
const upstreamPort = opt.upstreamStats ? Number(new URL(opt.upstreamStats).port) : -1;
const kTcpStates = {'01': 'established', '06': 'time_wait', '08': 'close_wait', '0A': 'listen'};

// inode -> {local port, remote port, state} for every TCP socket of this network namespace.
function tcpSockets() {
  const map = new Map();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (addr) => parseInt(addr.split(':')[1], 16);
      map.set(f[9], {local: port(f[1]), remote: port(f[2]), state: kTcpStates[f[3]] || f[3]});
    }
  }
  return map;
}

// The gateway's descriptors by what they are: sockets from clients, sockets to the upstream
// (by TCP state), the listener, and everything else (epoll, eventfd, timers, files).
function fdBreakdown() {
  const out = {client: 0, upstream: 0, listen: 0, other: 0, upstream_states: {}};
  let fds = [];
  try {
    fds = fs.readdirSync(`/proc/${opt.pid}/fd`);
  } catch {
    return out;
  }
  const tcp = tcpSockets();
  for (const fd of fds) {
    let link = '';
    try {
      link = fs.readlinkSync(`/proc/${opt.pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const m = link.match(/^socket:\[(\d+)\]$/);
    const sock = m ? tcp.get(m[1]) : undefined;
    if (!sock) {
      out.other += 1;
    } else if (sock.state === 'listen') {
      out.listen += 1;
    } else if (sock.local === gatewayPort) {
      out.client += 1;
    } else if (sock.remote === upstreamPort) {
      out.upstream += 1;
      out.upstream_states[sock.state] = (out.upstream_states[sock.state] || 0) + 1;
    } else {
      out.other += 1;
    }
  }
  return out;
}

function sampleGateway() {
  let status;
  let stat;
  try {
    status = fs.readFileSync(`/proc/${opt.pid}/status`, 'utf8');
    stat = fs.readFileSync(`/proc/${opt.pid}/stat`, 'utf8');
  } catch {
    return null;  // the gateway is gone
  }
  const field = (name) => Number((status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm')) || [])[1]);
  let fds = -1;
  try {
    fds = fs.readdirSync(`/proc/${opt.pid}/fd`).length;
  } catch {}
  // /proc/PID/stat: fields after the ")" of the command name; utime and stime are 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(rest[11]) + Number(rest[12])) / opt.clkTck;
  const kinds = fdBreakdown();
  return {t: (performance.now() - t0) / 1000, phase, rss: field('VmRSS'), hwm: field('VmHWM'),
          fds, kinds, threads: field('Threads'), cpuS};
}

function sample() {
  const s = sampleGateway();
  if (!s) {
    gatewayGone = true;
    return;
  }
  samples.push(s);
  fs.writeSync(csv, `${s.t.toFixed(1)},${s.phase},${s.rss},${s.hwm},${s.fds},` +
                    `${s.kinds.client},${s.kinds.upstream},${s.kinds.other},${s.threads},` +
                    `${s.cpuS.toFixed(2)},${active},${counts.started},${counts.completed},` +
                    `${counts.left_on_purpose},${counts.errors}\n`);
}
sample();
const sampler = setInterval(sample, 1000);

function getJson(url) {
  return new Promise((resolve) => {
    http.get(url, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => {
        try {
          resolve(JSON.parse(b));
        } catch {
          resolve(null);
        }
      });
    }).on('error', () => resolve(null));
  });
}

// --- run ------------------------------------------------------------------------------------

await sleep(opt.baselineS * 1000);
const loadStartT = (performance.now() - t0) / 1000;
phase = 'load';
loadEndsAt = performance.now() + opt.durationS * 1000;
const nSlow = Math.round(opt.clients * opt.slowFraction);
const nLeave = Math.round(opt.clients * opt.disconnectFraction);
const running = [];
for (let i = 0; i < opt.clients; ++i) {
  const role = i < nSlow ? 'slow' : i < nSlow + nLeave ? 'leave' : 'normal';
  running.push(client(i, role));
}
const allDone = Promise.all(running);
await Promise.race([sleep(opt.durationS * 1000 + 100), allDone]);
const loadEndT = (performance.now() - t0) / 1000;
phase = 'drain';
const drained = await Promise.race([allDone.then(() => true), sleep(opt.drainS * 1000)
  .then(() => false)]);
const inFlightAtDrainEnd = active;
agent.destroy();  // closes every kept-alive (and any still open) client connection
phase = 'idle';
await sleep(opt.settleS * 1000);
sample();
const idleSample = samples[samples.length - 1];
// One more stream on a fresh connection: libcurl looks for dead cached connections only when a
// transfer starts, so this shows whether upstream sockets the upstream has closed are let go.
phase = 'probe';
const completedBeforeProbe = counts.completed;
counts.started += 1;
await streamOnce('normal', 0);
const probeOk = counts.completed === completedBeforeProbe + 1;
agent.destroy();
await sleep(2000);
clearInterval(sampler);
sample();
fs.closeSync(csv);

// --- summary --------------------------------------------------------------------------------

function pct(values, p) {
  if (values.length === 0) return null;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const inWindow = (from, to) => samples.filter((s) => s.t >= from && s.t < to);
const maxOf = (arr, key) => (arr.length ? Math.max(...arr.map((s) => s[key])) : null);
const loadLen = loadEndT - loadStartT;
// The "early" window is the load's second minute (or its second fifth, for runs under three
// minutes); the "late" window its last minute (or last fifth).
const early = loadLen >= 180 ? [loadStartT + 60, loadStartT + 120]
                             : [loadStartT + loadLen * 0.2, loadStartT + loadLen * 0.4];
const late = loadLen >= 180 ? [loadEndT - 60, loadEndT]
                            : [loadEndT - loadLen * 0.2, loadEndT];
const baseline = samples.filter((s) => s.phase === 'baseline');
const last = samples[samples.length - 1];
const rssEarly = maxOf(inWindow(...early), 'rss');
const rssLate = maxOf(inWindow(...late), 'rss');
const fdBaseline = maxOf(baseline, 'fds');
const summary = {
  clients: opt.clients, slow_clients: nSlow, leaving_clients: nLeave,
  load_s: Number(loadLen.toFixed(1)), drained, in_flight_at_drain_end: inFlightAtDrainEnd,
  probe_ok: probeOk,
  gateway_gone: gatewayGone,
  requests: counts, errors_by_kind: errorKinds, stalls,
  normal_stream_ms: {ttfb_p50: pct(ttfbMs, 50), ttfb_p99: pct(ttfbMs, 99),
                     ttfb_max: pct(ttfbMs, 100), total_p50: pct(totalMs, 50),
                     total_p99: pct(totalMs, 99)},
  rss_kib: {baseline: maxOf(baseline, 'rss'), early_window_max: rssEarly,
            late_window_max: rssLate, load_max: maxOf(inWindow(loadStartT, loadEndT), 'rss'),
            after_idle: idleSample?.rss ?? null, hwm: last?.hwm ?? null,
            early_window_s: early.map((x) => Number((x - loadStartT).toFixed(0))),
            late_window_s: late.map((x) => Number((x - loadStartT).toFixed(0)))},
  fds: {baseline: fdBaseline, early_window_max: maxOf(inWindow(...early), 'fds'),
        late_window_max: maxOf(inWindow(...late), 'fds'),
        load_max: maxOf(inWindow(loadStartT, loadEndT), 'fds'), after_idle: idleSample?.fds ?? null,
        baseline_kinds: baseline[baseline.length - 1]?.kinds ?? null,
        after_idle_kinds: idleSample?.kinds ?? null,
        after_probe: last?.fds ?? null, after_probe_kinds: last?.kinds ?? null,
        upstream_sockets_load_max: Math.max(0, ...samples.map((s) => s.kinds.upstream))},
  threads: {baseline: maxOf(baseline, 'threads'), load_max: maxOf(samples, 'threads'),
            after_idle: last?.threads ?? null},
  gateway_cpu_s: last ? Number((last.cpuS - (baseline[0]?.cpuS ?? 0)).toFixed(1)) : null,
  upstream: opt.upstreamStats ? await getJson(opt.upstreamStats) : null,
};
// Flat: the late window's peak RSS within 10% of the early window's. Descriptors: once the
// clients have gone, no client socket is left and the descriptors that are not upstream
// sockets are back to their baseline (+2 for lazily opened files); idle upstream connections
// kept for reuse are reported apart (libcurl's connection cache, bounded).
const baseKinds = summary.fds.baseline_kinds;
const lastKinds = summary.fds.after_probe_kinds;
summary.verdict = {
  rss_flat: rssEarly !== null && rssLate !== null && rssLate <= rssEarly * 1.1,
  rss_late_over_early: rssEarly ? Number((rssLate / rssEarly).toFixed(3)) : null,
  fds_back_to_baseline_idle: !!idleSample && fdBaseline !== null &&
      idleSample.fds <= fdBaseline + 2,
  fds_back_to_baseline: last !== undefined && fdBaseline !== null && last.fds <= fdBaseline + 2,
  fds_back_to_baseline_but_pool: !!(baseKinds && lastKinds && lastKinds.client === 0 &&
      lastKinds.other + lastKinds.listen <= baseKinds.other + baseKinds.listen + 2),
};
process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
process.exit(0);
