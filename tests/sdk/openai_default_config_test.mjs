// The official OpenAI Node SDK against the real `switchyard` binary on its embedded default
// config (no --config), as a new user runs it: unauthenticated local use, no keys configured,
// the random-weight tiny model in models/tiny. The SDK always sends some key; the gateway must
// serve it as the anonymous team rather than refuse it.
//
//   SWITCHYARD_BIN=build/switchyard SWITCHYARD_CLI_BIN=build/switchyard-cli \
//     node tests/sdk/openai_default_config_test.mjs
//
// Cloud calls (the default policy escalates to gpt-4o-mini) go through an HTTPS proxy on a
// closed loopback port, so they fail at once and nothing leaves the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import OpenAI from 'openai';
import { startWatchdog, makeWorkDir, makeTestModel, startGateway, teardown } from './harness.mjs';

const CALL_TIMEOUT_MS = 30_000;

startWatchdog('openai_default_config_test', 110_000);

let gateway;
let baseURL;
let workDir;

// A loopback port with nothing listening on it.
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// Whatever key an app happens to pass: a real-looking one, a placeholder, a local-server habit.
function client(apiKey = 'sk-proj-some-real-looking-openai-key') {
  return new OpenAI({ baseURL, apiKey, timeout: CALL_TIMEOUT_MS, maxRetries: 0 });
}

const ask = (content, extra = {}) => ({
  model: 'gemma-3-local',
  messages: [{ role: 'user', content }],
  max_tokens: 6,
  ...extra,
});

before(async () => {
  workDir = makeWorkDir('switchyard-sdk-default-');
  // What scripts/run.sh writes for a first run: the default model_dir, models/tiny.
  makeTestModel('models/tiny', { cwd: workDir });
  const env = { ...process.env };
  for (const k of ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'GEMINI_API_KEY', 'SWITCHYARD_MODEL_DIR',
                   'SWITCHYARD_LEDGER', 'SWITCHYARD_QUALITY', 'SWITCHYARD_ADMIN_KEY_SHA256']) {
    delete env[k];
  }
  const proxy = `http://127.0.0.1:${await closedPort()}`;
  Object.assign(env, { https_proxy: proxy, HTTPS_PROXY: proxy, http_proxy: proxy, no_proxy: '127.0.0.1' });
  gateway = await startGateway({ cwd: workDir, env, timeoutMs: 20_000 });
  baseURL = `http://127.0.0.1:${gateway.port}/v1`;
});

after(() => teardown({ gateway, dir: workDir, graceMs: 10_000 }));

// --- the eight calls a new user tries first ------------------------------------------------

test('models.list', { timeout: 20_000 }, async () => {
  const ids = [];
  for await (const m of client().models.list()) ids.push(m.id);
  assert.ok(ids.includes('gemma-3-local'), ids.join(','));
  assert.equal(ids[0], 'auto', 'the routed model first');
});

test('models.retrieve', { timeout: 20_000 }, async () => {
  const m = await client('sk-no-key-required').models.retrieve('gemma-3-local');
  assert.equal(m.id, 'gemma-3-local');
  assert.equal(m.object, 'model');
});

test('chat.completions.create', { timeout: 40_000 }, async () => {
  const { data, response } = await client().chat.completions.create(ask('Hello')).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(typeof data.choices[0].message.content, 'string');
  assert.ok(data.usage.completion_tokens >= 1 && data.usage.completion_tokens <= 6, JSON.stringify(data.usage));
  assert.equal(response.headers.get('x-switchyard-route'), 'local/gemma-3-local');
});

test('chat.completions.create with a system message and earlier turns', { timeout: 40_000 }, async () => {
  const data = await client('EMPTY').chat.completions.create({
    model: 'gemma-3-local',
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Name a colour.' },
      { role: 'assistant', content: 'Blue.' },
      { role: 'user', content: 'Another.' },
    ],
    max_completion_tokens: 4,
    temperature: 0.5,
    seed: 7,
  });
  assert.equal(data.choices.length, 1);
  assert.ok(data.usage.completion_tokens <= 4);
});

test('chat.completions.create, streamed', { timeout: 40_000 }, async () => {
  const stream = await client().chat.completions.create(ask('Count', { stream: true }));
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.ok(finish === 'length' || finish === 'stop', String(finish));
  assert.equal(typeof text, 'string');
});

test('chat.completions.create, streamed with usage', { timeout: 40_000 }, async () => {
  const stream = await client().chat.completions.create(
    ask('Go', { stream: true, stream_options: { include_usage: true } }));
  let usage = null;
  for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
  assert.ok(usage, 'a usage chunk');
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
});

test('beta.chat.completions.stream helper', { timeout: 40_000 }, async () => {
  const runner = client().beta.chat.completions.stream(ask('Hi there'));
  const done = await runner.finalChatCompletion();
  assert.equal(done.choices[0].message.role, 'assistant');
});

test('an unknown model is the SDK\'s NotFoundError, not an auth error', { timeout: 20_000 }, async () => {
  await assert.rejects(client().models.retrieve('no-such-model'), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `${e.constructor.name}: ${e.message}`);
    return true;
  });
});
