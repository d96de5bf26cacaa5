// The official OpenAI Node SDK against the real `switchyard` binary, in front of a fake
// OpenAI upstream served with node:http. Proves that apps keep their SDK and change only the
// base URL.
//
//   SWITCHYARD_BIN=build/switchyard node tests/sdk/openai_sdk_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  startWatchdog, makeWorkDir, keySha256, startUpstream, startGateway, teardown, sseData, wordDeltas,
} from './harness.mjs';

const CLIENT_KEY = 'sk-sdk-e2e-4b1d9c';
const UPSTREAM_KEY = 'sk-upstream-sdk-77';
const CALL_TIMEOUT_MS = 10_000;

startWatchdog('openai_sdk_test', 90_000);

let upstream;        // http.Server
let gateway;         // { child, port, stderr }
let baseURL;
let workDir;
const upstreamRequests = [];

// --- fake upstream -----------------------------------------------------------------------

function replyFor(body) {
  const users = (body.messages || []).filter((m) => m.role === 'user');
  const last = users.length ? users[users.length - 1].content : '';
  return 'echo: ' + (typeof last === 'string' ? last : '');
}

function usageFor(body) {
  const prompt = (body.messages || []).reduce(
    (n, m) => n + 3 + String(m.content ?? '').split(/\s+/).filter(Boolean).length, 0);
  const completion = replyFor(body).split(/\s+/).filter(Boolean).length;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function handleUpstream(req, res, raw) {
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'no route', type: 'invalid_request_error', param: null, code: null } }));
    return;
  }
  const body = JSON.parse(raw);
  upstreamRequests.push({ headers: req.headers, body });
  const id = 'chatcmpl-sdk' + upstreamRequests.length;
  const created = 1700000000;
  const text = replyFor(body);
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id, object: 'chat.completion', created, model: body.model, system_fingerprint: 'fp_sdk',
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: usageFor(body),
    }));
    return;
  }
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (choices, usage) => {
    const c = { id, object: 'chat.completion.chunk', created, model: body.model, system_fingerprint: 'fp_sdk', choices };
    if (withUsage) c.usage = usage ?? null;
    return sseData(c);
  };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
  for (const content of wordDeltas(text)) {
    res.write(chunk([{ index: 0, delta: { content }, logprobs: null, finish_reason: null }]));
  }
  res.write(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
  if (withUsage) res.write(chunk([], usageFor(body)));
  res.end('data: [DONE]\n\n');
}

// --- the gateway ---------------------------------------------------------------------------

function configYaml(upstreamPort, keySha256) {
  return `server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 5}
auth: {allow_unauthenticated: false, anonymous_team: local}
teams:
  - name: sdk
    keys: [{id: sdk-test, sha256: ${keySha256}}]
providers:
  up:
    type: openai
    base_url: "http://127.0.0.1:${upstreamPort}/v1"
    api_key: "\${UP_KEY:-}"
    timeouts: {connect_s: 2, first_byte_s: 5, idle_s: 5, total_s: 30}
models:
  - {name: m1, provider: up, upstream_model: upstream-m1}
  - {name: m2, provider: up, upstream_model: upstream-m2}
pricing:
  up:
    upstream-m1: {input: 1.0, output: 2.0}
    upstream-m2: {input: 1.0, output: 2.0}
`;
}

function client(apiKey = CLIENT_KEY) {
  return new OpenAI({ baseURL, apiKey, timeout: CALL_TIMEOUT_MS, maxRetries: 0 });
}

before(async () => {
  upstream = await startUpstream(handleUpstream);
  workDir = makeWorkDir('switchyard-sdk-');
  gateway = await startGateway({
    config: configYaml(upstream.address().port, keySha256(CLIENT_KEY)),
    dir: workDir, env: { ...process.env, UP_KEY: UPSTREAM_KEY },
  });
  baseURL = `http://127.0.0.1:${gateway.port}/v1`;
});

after(() => teardown({ gateway, upstream, dir: workDir }));

// --- tests ---------------------------------------------------------------------------------

test('chat.completions.create (non-streamed)', { timeout: 15_000 }, async () => {
  const { data, response } = await client()
    .chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hello sdk' }], temperature: 0.3 })
    .withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.model, 'm1');
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, 'echo: hello sdk');
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.deepEqual(
    { p: data.usage.prompt_tokens, c: data.usage.completion_tokens, t: data.usage.total_tokens },
    { p: 5, c: 3, t: 8 });
  assert.equal(response.headers.get('x-switchyard-route'), 'up/upstream-m1');
  assert.ok(response.headers.get('x-request-id'));

  const seen = upstreamRequests[upstreamRequests.length - 1];
  assert.equal(seen.body.model, 'upstream-m1');
  assert.equal(seen.body.temperature, 0.3);
  assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
});

test('chat.completions.create streamed with include_usage', { timeout: 15_000 }, async () => {
  const stream = await client().chat.completions.create({
    model: 'm2',
    messages: [{ role: 'user', content: 'stream it to me' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.model, 'm2');
    if (chunk.choices.length) {
      text += chunk.choices[0].delta?.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'echo: stream it to me');
  assert.equal(finish, 'stop');
  assert.ok(chunks >= 4, `only ${chunks} chunks`);
  assert.ok(usage, 'no usage chunk');
  assert.equal(usage.completion_tokens, 5);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.equal(upstreamRequests[upstreamRequests.length - 1].body.model, 'upstream-m2');
});

test('models.list', { timeout: 15_000 }, async () => {
  const ids = [];
  for await (const m of client().models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  assert.deepEqual(ids.sort(), ['auto', 'm1', 'm2']);
  const one = await client().models.retrieve('m1');
  assert.equal(one.id, 'm1');
  assert.equal(one.owned_by, 'up');
});

test('unknown model -> NotFoundError', { timeout: 15_000 }, async () => {
  const before = upstreamRequests.length;
  await assert.rejects(
    client().chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'model_not_found');
      return true;
    });
  assert.equal(upstreamRequests.length, before);
});

test('bad key -> AuthenticationError', { timeout: 15_000 }, async () => {
  await assert.rejects(
    client('sk-wrong-key').chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'x' }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, 401);
      assert.equal(err.code, 'invalid_api_key');
      assert.equal(err.type, 'authentication_error');
      return true;
    });
});

test('invalid parameter -> BadRequestError naming the param', { timeout: 15_000 }, async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'temperature');
      assert.equal(err.type, 'invalid_request_error');
      return true;
    });
});
