// The official Anthropic TypeScript SDK against the real `switchyard` binary's Messages
// entrance (POST /v1/messages, /v1/messages/count_tokens), in front of a fake OpenAI upstream
// served with node:http (it answers with a tool call while the conversation has no tool result)
// and the local engine on a tiny random-weight Gemma 3 checkpoint. Proves that Anthropic
// clients keep their SDK and change only the base URL and the key.
//
//   SWITCHYARD_BIN=build/switchyard SWITCHYARD_CLI_BIN=build/switchyard-cli \
//     node tests/sdk/anthropic_sdk_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startWatchdog, startToolEchoGateway, teardown, toolEchoUpstream, TOOL_ARGS } from './harness.mjs';

const CLIENT_KEY = 'sk-anthropic-sdk-3c7e91';
const CALL_TIMEOUT_MS = 30_000;

startWatchdog('anthropic_sdk_test', 120_000);

const fake = toolEchoUpstream('chatcmpl-ant');
const upstreamRequests = fake.requests;
let started;  // { upstream, gateway, dir }
let baseURL;

function client(apiKey = CLIENT_KEY) {
  return new Anthropic({ baseURL, apiKey, timeout: CALL_TIMEOUT_MS, maxRetries: 0 });
}

before(async () => {
  started = await startToolEchoGateway(fake, CLIENT_KEY, 'switchyard-anthropic-sdk-');
  baseURL = `http://127.0.0.1:${started.gateway.port}`;
});

after(() => teardown(started));

// --- tests -------------------------------------------------------------------------------------

test('messages.create (non-streamed)', { timeout: 20_000 }, async () => {
  const { data, response } = await client().messages.create({
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    system: 'Be brief.',
    messages: [{ role: 'user', content: 'hello sdk' }],
    temperature: 0.2,
  }).withResponse();
  assert.equal(data.type, 'message');
  assert.equal(data.role, 'assistant');
  assert.equal(data.model, 'claude-sonnet-4-5');
  assert.match(data.id, /^msg_/);
  assert.deepEqual(data.content, [{ type: 'text', text: 'echo: hello sdk' }]);
  assert.equal(data.stop_reason, 'end_turn');
  assert.equal(data.stop_sequence, null);
  assert.equal(data.usage.input_tokens, 11);
  assert.equal(data.usage.output_tokens, 4);
  assert.equal(response.headers.get('x-switchyard-route'), 'up/upstream-m1');
  const seen = upstreamRequests[upstreamRequests.length - 1];
  assert.equal(seen.model, 'upstream-m1');
  assert.equal(seen.max_tokens, 64);
  assert.deepEqual(seen.messages[0], { role: 'system', content: 'Be brief.' });
});

test('messages.stream: text events and the final message', { timeout: 20_000 }, async () => {
  const stream = client().messages.stream({
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'stream me please' }],
  });
  let text = '';
  stream.on('text', (t) => { text += t; });
  const message = await stream.finalMessage();
  assert.equal(text, 'echo: stream me please');
  assert.deepEqual(message.content, [{ type: 'text', text: 'echo: stream me please' }]);
  assert.equal(message.stop_reason, 'end_turn');
  assert.equal(message.usage.output_tokens, 4);
  assert.equal(message.usage.input_tokens, 11);
});

const weatherTool = {
  name: 'get_weather',
  description: 'The weather in a city.',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('tool use round trip (create, then the tool result)', { timeout: 20_000 }, async () => {
  const ask = { role: 'user', content: 'What is the weather in Paris?' };
  const first = await client().messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 128, tools: [weatherTool],
    tool_choice: { type: 'auto' }, messages: [ask],
  });
  assert.equal(first.stop_reason, 'tool_use');
  const use = first.content.find((b) => b.type === 'tool_use');
  assert.ok(use, JSON.stringify(first.content));
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { city: 'Paris' });
  const sentTools = upstreamRequests[upstreamRequests.length - 1].tools;
  assert.deepEqual(sentTools[0].function.parameters, weatherTool.input_schema);

  const second = await client().messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 128, tools: [weatherTool],
    messages: [
      ask,
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny, 21 C' },
                                { type: 'text', text: 'Summarise.' }] },
    ],
  });
  assert.equal(second.stop_reason, 'end_turn');
  assert.deepEqual(second.content, [{ type: 'text', text: 'echo: Summarise.' }]);
  const seen = upstreamRequests[upstreamRequests.length - 1];
  const toolMsg = seen.messages.find((m) => m.role === 'tool');
  assert.equal(toolMsg.tool_call_id, use.id);
  assert.equal(toolMsg.content, 'Sunny, 21 C');
  const assistant = seen.messages.find((m) => m.role === 'assistant');
  assert.equal(assistant.tool_calls[0].id, use.id);
});

test('messages.stream with a tool call: input_json_delta assembled by the SDK', { timeout: 20_000 }, async () => {
  const stream = client().messages.stream({
    model: 'claude-sonnet-4-5', max_tokens: 128, tools: [weatherTool],
    messages: [{ role: 'user', content: 'Weather in Paris, streamed?' }],
  });
  let json = '';
  stream.on('inputJson', (partial) => { json += partial; });
  const message = await stream.finalMessage();
  assert.equal(message.stop_reason, 'tool_use');
  assert.equal(json, TOOL_ARGS.join(''));
  const use = message.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(use.input, { city: 'Paris' });
  assert.equal(use.id, 'call_1');
});

test('countTokens and a local answer agree on the prompt size', { timeout: 60_000 }, async () => {
  const messages = [{ role: 'user', content: 'Count these few words' }];
  const counted = await client().messages.countTokens({ model: 'tiny', system: 'Short.', messages });
  assert.ok(Number.isInteger(counted.input_tokens) && counted.input_tokens > 5, JSON.stringify(counted));
  const answer = await client().messages.create({ model: 'tiny', max_tokens: 3, system: 'Short.', messages });
  assert.equal(answer.usage.input_tokens, counted.input_tokens);
  assert.equal(answer.usage.output_tokens, 3);
  assert.equal(answer.stop_reason, 'max_tokens');
});

test('errors arrive as the SDK\'s typed errors', { timeout: 20_000 }, async () => {
  await assert.rejects(
    client('sk-not-a-key').messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.AuthenticationError && e.status === 401 && e.error?.error?.type === 'authentication_error');
  await assert.rejects(
    client().messages.create({ model: 'no-such-model', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.NotFoundError && e.error?.error?.type === 'not_found_error');
  await assert.rejects(
    client().messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, temperature: 3, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.BadRequestError && e.error?.error?.type === 'invalid_request_error');
});
