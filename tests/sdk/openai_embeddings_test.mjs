// The official OpenAI Node SDK's embeddings.create against the real `switchyard` binary's
// POST /v1/embeddings, in front of a fake OpenAI embeddings upstream and a fake Gemini
// batchEmbedContents upstream served with node:http: the SDK's default (it asks for base64 and
// decodes the float32 bytes itself), explicit floats, arrays with dimensions, a Gemini model,
// and errors the SDK raises as its own error classes (404, 400 naming the field, 429 budget).
//
//   SWITCHYARD_BIN=build/switchyard SWITCHYARD_CLI_BIN=build/switchyard-cli \
//     node tests/sdk/openai_embeddings_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  startWatchdog, startGateway, startUpstream, closeUpstream, stopGateway, keySha256, makeWorkDir,
} from './harness.mjs';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const CLIENT_KEY = 'sk-embeddings-sdk-71c0';
const BROKE_KEY = 'sk-embeddings-sdk-broke-5d2e';

startWatchdog('openai_embeddings_test', 90_000);

// The fakes' vector for the `i`-th input: values exact in float32, so that both encodings
// must give them back bit for bit.
const vectorFor = (text, i, dims = 4) =>
  Array.from({ length: dims }, (_, k) => (k === 0 ? text.length : k === 1 ? i : -1 / 2 ** k));
const f32 = (xs) => Array.from(new Float32Array(xs));

const seen = { openai: [], gemini: [] };
let openaiUp, geminiUp, gateway, dir, baseURL;

before(async () => {
  openaiUp = await startUpstream((req, res, raw) => {
    const body = JSON.parse(raw);
    seen.openai.push({ url: req.url, body });
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      object: 'list',
      data: inputs.map((t, i) => ({ object: 'embedding', index: i, embedding: vectorFor(t, i, body.dimensions) })),
      model: body.model,
      usage: { prompt_tokens: inputs.length * 2, total_tokens: inputs.length * 2 },
    }));
  });
  geminiUp = await startUpstream((req, res, raw) => {
    const body = JSON.parse(raw);
    seen.gemini.push({ url: req.url, body, key: req.headers['x-goog-api-key'] });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      embeddings: body.requests.map((r, i) => ({ values: vectorFor(r.content.parts[0].text, i, r.outputDimensionality) })),
    }));
  });
  dir = makeWorkDir('switchyard-embeddings-sdk-');
  const config = `
server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}
teams:
  - name: apps
    keys: [{id: sdk, sha256: ${keySha256(CLIENT_KEY)}}]
  - name: broke
    keys: [{id: broke, sha256: ${keySha256(BROKE_KEY)}}]
providers:
  up: {type: openai, base_url: "http://127.0.0.1:${openaiUp.address().port}/v1", api_key: sk-up, retry: {max_attempts: 1}}
  gem: {type: gemini, base_url: "http://127.0.0.1:${geminiUp.address().port}/v1beta", api_key: gem-key, retry: {max_attempts: 1}}
models:
  - {name: text-embedding-3-small, provider: up}
  - {name: gemini-embedding-001, provider: gem}
  - {name: gpt-x, provider: up}
pricing:
  up: {text-embedding-3-small: {input: 0.02, embedding: true}, gpt-x: {input: 1, output: 1}}
  gem: {gemini-embedding-001: {input: 0.15, embedding: true}}
policies: "${dir}/policies.yaml"
ledger: {path: "${dir}/ledger.db"}
`;
  writeFileSync(path.join(dir, 'policies.yaml'),
    'defaults:\n  routing: {mode: cloud_only, local_model: gpt-x, cloud_models: [gpt-x]}\n' +
    'teams:\n  broke:\n    budget: {monthly_usd: 0, when_exhausted: reject}\n');
  gateway = await startGateway({ config, dir });
  baseURL = `http://127.0.0.1:${gateway.port}/v1`;
});

after(async () => {
  try {
    if (gateway) await stopGateway(gateway);
  } finally {
    if (openaiUp) await closeUpstream(openaiUp);
    if (geminiUp) await closeUpstream(geminiUp);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

const client = (apiKey = CLIENT_KEY) => new OpenAI({ baseURL, apiKey, timeout: 20_000, maxRetries: 0 });

test('embeddings.create by default: the SDK asks for base64 and decodes it', async () => {
  const { data: r, response } = await client().embeddings.create({
    model: 'text-embedding-3-small', input: 'hello world',
  }).withResponse();
  assert.equal(r.object, 'list');
  assert.equal(r.model, 'text-embedding-3-small');
  assert.equal(r.data.length, 1);
  assert.deepEqual(Array.from(r.data[0].embedding), f32(vectorFor('hello world', 0)));
  assert.deepEqual(r.usage, { prompt_tokens: 2, total_tokens: 2 });
  assert.equal(response.headers.get('x-switchyard-route'), 'up/text-embedding-3-small');
  const sent = seen.openai.at(-1);
  assert.equal(sent.url, '/v1/embeddings');
  assert.equal(sent.body.encoding_format, 'float');  // the gateway encodes base64 itself
});

test('embeddings.create with float vectors, an array and dimensions', async () => {
  const r = await client().embeddings.create({
    model: 'text-embedding-3-small', input: ['a', 'bb', 'ccc'], dimensions: 6, encoding_format: 'float',
  });
  assert.equal(r.data.length, 3);
  r.data.forEach((d, i) => {
    assert.equal(d.index, i);
    assert.deepEqual(d.embedding, f32(vectorFor(['a', 'bb', 'ccc'][i], i, 6)));
  });
  assert.equal(seen.openai.at(-1).body.dimensions, 6);
});

test('embeddings.create on Gemini goes through batchEmbedContents', async () => {
  const { data: r, response } = await client().embeddings.create({
    model: 'gemini-embedding-001', input: ['first', 'second'], dimensions: 3,
  }).withResponse();
  assert.deepEqual(Array.from(r.data[1].embedding), f32(vectorFor('second', 1, 3)));
  assert.equal(r.usage.prompt_tokens, 11);  // the bound: Gemini reports no token counts
  assert.equal(response.headers.get('x-switchyard-cost-estimated'), 'true');
  const sent = seen.gemini.at(-1);
  assert.equal(sent.url, '/v1beta/models/gemini-embedding-001:batchEmbedContents');
  assert.equal(sent.key, 'gem-key');
  assert.equal(sent.body.requests[0].model, 'models/gemini-embedding-001');
  assert.equal(sent.body.requests[0].outputDimensionality, 3);
});

test('errors arrive as the SDK\'s own error classes', async () => {
  await assert.rejects(client().embeddings.create({ model: 'nope', input: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.param === 'model');
  await assert.rejects(client().embeddings.create({ model: 'text-embedding-3-small', input: [1, 'a'] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input[1]');
  await assert.rejects(client(BROKE_KEY).embeddings.create({ model: 'text-embedding-3-small', input: 'x' }),
    (e) => e instanceof OpenAI.RateLimitError && e.code === 'insufficient_quota');
  await assert.rejects(client('sk-wrong').embeddings.create({ model: 'text-embedding-3-small', input: 'x' }),
    (e) => e instanceof OpenAI.AuthenticationError);
});
