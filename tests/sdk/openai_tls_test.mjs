// The official OpenAI Node SDK over HTTPS against the real `switchyard` binary serving TLS
// (server.tls) with a CA and server certificate made for this run, in front of a fake OpenAI
// upstream served with node:http. The SDK trusts the test CA only through NODE_EXTRA_CA_CERTS,
// as an app would. Also: a plain-HTTP client on the TLS port gets a clean close.
//
//   SWITCHYARD_BIN=build/switchyard node tests/sdk/openai_tls_test.mjs
//
// NODE_EXTRA_CA_CERTS is read when node starts, so the script makes the certificates and then
// runs itself again with the variable set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startWatchdog, makeWorkDir, keySha256, startUpstream, startGateway, teardown, sseData, wordDeltas,
} from './harness.mjs';

const CLIENT_KEY = 'sk-sdk-tls-5e2f81';
const UPSTREAM_KEY = 'sk-upstream-tls-31';
const CERT_DIR = process.env.SY_TLS_TEST_DIR;

// --- first run: certificates, then the real run ------------------------------------------

function openssl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

function makeCertificates(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
           '-subj', '/CN=Switchyard SDK test CA'], dir);
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'],
          dir);
  writeFileSync(path.join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
           '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf'], dir);
}

if (!CERT_DIR) {
  const dir = makeWorkDir('switchyard-tls-sdk-');
  let code = 1;
  try {
    makeCertificates(dir);
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], {
      stdio: 'inherit',
      env: { ...process.env, SY_TLS_TEST_DIR: dir, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') },
      timeout: 100_000,
    });
    code = r.status ?? 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(code);
}

const { default: OpenAI } = await import('openai');

startWatchdog('openai_tls_test', 90_000);

let upstream;
let gateway;
let port;

// --- fake upstream -----------------------------------------------------------------------

function handleUpstream(req, res, raw) {
  const body = JSON.parse(raw);
  const users = body.messages.filter((m) => m.role === 'user');
  const text = 'echo: ' + users[users.length - 1].content;
  const usage = { prompt_tokens: 7, completion_tokens: text.split(' ').length,
                  total_tokens: 7 + text.split(' ').length };
  const base = { id: 'chatcmpl-tls', created: 1700000000, model: body.model };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      ...base, object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage,
    }));
    return;
  }
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (choices, u) => sseData({
    ...base, object: 'chat.completion.chunk', choices, ...(withUsage ? { usage: u ?? null } : {}),
  });
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
  for (const content of wordDeltas(text)) {
    res.write(chunk([{ index: 0, delta: { content }, finish_reason: null }]));
  }
  res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
  if (withUsage) res.write(chunk([], usage));
  res.end('data: [DONE]\n\n');
}

// --- the gateway ---------------------------------------------------------------------------

function configYaml(upstreamPort, keySha256) {
  return `server:
  listen: 127.0.0.1
  port: 0
  threads: 2
  shutdown_grace_s: 5
  tls: {cert_file: server.pem, key_file: server.key, min_version: "1.2"}
auth: {allow_unauthenticated: false, anonymous_team: local}
teams:
  - name: sdk
    keys: [{id: sdk-tls, sha256: ${keySha256}}]
providers:
  up:
    type: openai
    base_url: "http://127.0.0.1:${upstreamPort}/v1"
    api_key: "\${UP_KEY:-}"
    timeouts: {connect_s: 2, first_byte_s: 5, idle_s: 5, total_s: 30}
models:
  - {name: m1, provider: up, upstream_model: upstream-m1}
pricing:
  up:
    upstream-m1: {input: 1.0, output: 2.0}
`;
}

function client() {
  return new OpenAI({
    baseURL: `https://localhost:${port}/v1`, apiKey: CLIENT_KEY, timeout: 10_000, maxRetries: 0,
  });
}

before(async () => {
  upstream = await startUpstream(handleUpstream);
  gateway = await startGateway({
    config: configYaml(upstream.address().port, keySha256(CLIENT_KEY)), dir: CERT_DIR,
    env: { ...process.env, UP_KEY: UPSTREAM_KEY }, tls: true,
  });
  port = gateway.port;
});

// The certificate directory belongs to the first run, which removes it.
after(() => teardown({ gateway, upstream }));

// --- tests ---------------------------------------------------------------------------------

test('chat.completions.create over HTTPS', { timeout: 15_000 }, async () => {
  const data = await client().chat.completions.create({
    model: 'm1', messages: [{ role: 'user', content: 'hello over tls' }],
  });
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.content, 'echo: hello over tls');
});

test('streamed chat.completions over HTTPS with include_usage', { timeout: 15_000 }, async () => {
  const stream = await client().chat.completions.create({
    model: 'm1', messages: [{ role: 'user', content: 'stream me securely' }], stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) text += chunk.choices[0].delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'echo: stream me securely');
  assert.ok(usage, 'no usage chunk');
  assert.equal(usage.completion_tokens, 4);
});

test('plain HTTP on the TLS port gets a clean close', { timeout: 15_000 }, async () => {
  const got = await new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    let bytes = '';
    sock.on('data', (d) => { bytes += d.toString('latin1'); });
    sock.on('close', () => resolve(bytes));
    sock.on('error', () => {});  // a reset is a close too
    sock.setTimeout(5000, () => reject(new Error('the server neither answered nor closed')));
  });
  assert.ok(!got.includes('200 OK'), 'plain HTTP must not be served on the TLS port');
  // The gateway is still there for TLS clients.
  const data = await client().models.list();
  assert.ok(data.data.length >= 1);
});
