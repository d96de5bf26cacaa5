// Sequential keep-alive latency client for bench/latency_side_by_side.sh: one connection per
// target, one request at a time, targets interleaved in rounds so that machine noise hits
// every target alike.
//
//   node bench/latency_client.mjs --targets FILE.json [--rounds 50] [--per-round 100]
//                                 [--warmup 500]
//
// FILE.json: [{"name": "...", "url": "http://127.0.0.1:N/v1/chat/completions",
//              "headers": {...}}, ...]. Prints one JSON object: per target the request
// count, errors, reconnects and p50/p90/p99/mean in microseconds (request written to last
// body byte read, as the client sees it).
import fs from 'node:fs';
import http from 'node:http';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const targets = JSON.parse(fs.readFileSync(arg('targets'), 'utf8'));
const rounds = Number(arg('rounds', 50));
const perRound = Number(arg('per-round', 100));
const warmup = Number(arg('warmup', 500));

// The same small non-streamed chat completion as bench/chat.lua.
const kBody = JSON.stringify({
  model: 'bench',
  messages: [{role: 'system', content: 'You are terse.'},
             {role: 'user', content: 'Say hello to the benchmark.'}],
  max_tokens: 16,
});

function once(target) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const req = http.request(target.url, {
      method: 'POST',
      agent: target.agent,
      headers: {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(kBody),
                ...target.headers},
    }, (res) => {
      let bytes = 0;
      res.on('data', (d) => { bytes += d.length; });
      res.on('end', () => {
        const us = Number(process.hrtime.bigint() - start) / 1000;
        resolve({ok: res.statusCode === 200 && bytes > 0, us, status: res.statusCode});
      });
      res.on('error', () => resolve({ok: false, us: 0, status: 'read_error'}));
    });
    req.on('socket', (s) => {
      if (!s.syCounted) {
        s.syCounted = true;
        target.connections += 1;
      }
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ok: false, us: 0, status: e.code || e.message}));
    req.end(kBody);
  });
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

for (const t of targets) {
  t.agent = new http.Agent({keepAlive: true, maxSockets: 1});
  t.connections = 0;
  t.samples = [];
  t.errors = {};
}

// Warm-up: every target, interleaved, results dropped.
for (let i = 0; i < warmup; ++i) {
  for (const t of targets) await once(t);
}
for (const t of targets) t.connections = 0;

for (let r = 0; r < rounds; ++r) {
  // Each round starts with the next target, so no target always follows the same one.
  for (let k = 0; k < targets.length; ++k) {
    const t = targets[(r + k) % targets.length];
    for (let i = 0; i < perRound; ++i) {
      const res = await once(t);
      if (res.ok) t.samples.push(res.us);
      else t.errors[res.status] = (t.errors[res.status] || 0) + 1;
    }
  }
}

const out = {rounds, per_round: perRound, warmup, targets: []};
for (const t of targets) {
  const s = Float64Array.from(t.samples).sort();
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  out.targets.push({
    name: t.name, requests: s.length, errors: t.errors, connections: t.connections,
    p50_us: pct(s, 50), p90_us: pct(s, 90), p99_us: pct(s, 99), mean_us: mean,
  });
  t.agent.destroy();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
