// The official OpenAI Node SDK's Responses API (responses.create, responses.stream, function
// calling with the follow-up sent as input items or through previous_response_id,
// responses.retrieve, responses.inputItems.list, responses.del, background responses and
// responses.cancel) against the real `switchyard` binary's
// POST /v1/responses, in front of a fake OpenAI chat-completions upstream served with node:http
// (it answers with a tool call while the conversation has no tool result) and the local engine.
//
//   SWITCHYARD_BIN=build/switchyard SWITCHYARD_CLI_BIN=build/switchyard-cli \
//     node tests/sdk/openai_responses_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startWatchdog, startToolEchoGateway, teardown, toolEchoUpstream, TOOL_ARGS } from './harness.mjs';

const CLIENT_KEY = 'sk-responses-sdk-8e21f4';
const CALL_TIMEOUT_MS = 30_000;

startWatchdog('openai_responses_test', 120_000);

const fake = toolEchoUpstream('chatcmpl-resp');
const upstreamRequests = fake.requests;
let started;  // { upstream, gateway, dir }
let baseURL;

function client(apiKey = CLIENT_KEY) {
  return new OpenAI({ baseURL, apiKey, timeout: CALL_TIMEOUT_MS, maxRetries: 0 });
}

before(async () => {
  started = await startToolEchoGateway(fake, CLIENT_KEY, 'switchyard-responses-sdk-');
  baseURL = `http://127.0.0.1:${started.gateway.port}/v1`;
});

after(() => teardown(started));

// --- tests -------------------------------------------------------------------------------------

test('responses.create with instructions and a string input', { timeout: 20_000 }, async () => {
  const { data, response } = await client().responses.create({
    model: 'claude-sonnet-4-5', instructions: 'Be brief.', input: 'hello responses',
    max_output_tokens: 64, temperature: 0.2, metadata: { run: 'sdk' },
  }).withResponse();
  assert.equal(data.object, 'response');
  assert.match(data.id, /^resp_/);
  assert.equal(data.status, 'completed');
  assert.equal(data.model, 'claude-sonnet-4-5');
  assert.equal(data.output_text, 'echo: hello responses');
  assert.equal(data.output[0].type, 'message');
  assert.equal(data.output[0].content[0].type, 'output_text');
  assert.equal(data.instructions, 'Be brief.');
  assert.deepEqual(data.metadata, { run: 'sdk' });
  assert.equal(data.usage.input_tokens, 11);
  assert.equal(data.usage.output_tokens, 4);
  assert.equal(data.usage.total_tokens, 15);
  assert.equal(response.headers.get('x-switchyard-route'), 'up/upstream-m1');
  const seen = upstreamRequests[upstreamRequests.length - 1];
  assert.deepEqual(seen.messages[0], { role: 'system', content: 'Be brief.' });
  assert.equal(seen.max_completion_tokens ?? seen.max_tokens, 64);
});

test('responses.stream: events in order with sequence numbers, and the final response', { timeout: 20_000 }, async () => {
  const stream = client().responses.stream({
    model: 'claude-sonnet-4-5',
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'stream me please' }] }],
  });
  const types = [];
  const seqs = [];
  let text = '';
  stream.on('event', (e) => { types.push(e.type); seqs.push(e.sequence_number); });
  stream.on('response.output_text.delta', (e) => { text += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(text, 'echo: stream me please');
  assert.equal(final.output[0].content[0].text, 'echo: stream me please');  // (this SDK's stream sets no output_text)
  assert.equal(final.status, 'completed');
  assert.deepEqual(seqs, seqs.map((_, i) => i));
  assert.equal(types[0], 'response.created');
  assert.equal(types[1], 'response.in_progress');
  assert.equal(types[types.length - 1], 'response.completed');
  for (const t of ['response.output_item.added', 'response.content_part.added', 'response.output_text.done',
                   'response.content_part.done', 'response.output_item.done']) {
    assert.ok(types.includes(t), t + ' in ' + types.join(','));
  }
});

const weatherTool = {
  type: 'function', name: 'get_weather', description: 'The weather in a city.',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
};

test('function calling with the follow-up sent as input items', { timeout: 20_000 }, async () => {
  const ask = { role: 'user', content: 'What is the weather in Paris?' };
  const first = await client().responses.create({ model: 'claude-sonnet-4-5', input: [ask], tools: [weatherTool] });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call, JSON.stringify(first.output));
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
  const second = await client().responses.create({
    model: 'claude-sonnet-4-5', tools: [weatherTool],
    input: [ask, { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
            { type: 'function_call_output', call_id: call.call_id, output: 'Sunny, 21 C' }],
  });
  assert.equal(second.output_text, 'echo: Sunny, 21 C');
  const seen = upstreamRequests[upstreamRequests.length - 1];
  const toolMsg = seen.messages.find((m) => m.role === 'tool');
  assert.equal(toolMsg.tool_call_id, call.call_id);
  assert.equal(toolMsg.content, 'Sunny, 21 C');
});

test('function calling with the follow-up through previous_response_id', { timeout: 20_000 }, async () => {
  const first = await client().responses.create({
    model: 'claude-sonnet-4-5', instructions: 'Answer briefly.', input: 'What is the weather in Paris?',
    tools: [weatherTool],
  });
  assert.equal(first.store, true);
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call, JSON.stringify(first.output));
  const second = await client().responses.create({
    model: 'claude-sonnet-4-5', tools: [weatherTool], previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'Sunny, 21 C' }],
  });
  assert.equal(second.previous_response_id, first.id);
  assert.equal(second.output_text, 'echo: Sunny, 21 C');
  const seen = upstreamRequests[upstreamRequests.length - 1];
  assert.deepEqual(seen.messages.map((m) => m.role), ['user', 'assistant', 'tool']);
  assert.equal(seen.messages[0].content, 'What is the weather in Paris?');
  assert.equal(seen.messages[1].tool_calls[0].id, call.call_id);
  assert.equal(seen.messages[2].tool_call_id, call.call_id);
});

test('responses.retrieve, inputItems.list and responses.del', { timeout: 20_000 }, async () => {
  const created = await client().responses.create({ model: 'claude-sonnet-4-5', input: 'keep me' });
  const got = await client().responses.retrieve(created.id);
  assert.equal(got.id, created.id);
  assert.deepEqual(got.output, created.output);
  const items = await client().responses.inputItems.list(created.id);
  assert.equal(items.data.length, 1);
  assert.equal(items.data[0].content, 'keep me');
  // This SDK version has no responses.cancel: the same POST by the client's own transport.
  await assert.rejects(client().post(`/responses/${created.id}/cancel`),
    (e) => e instanceof OpenAI.BadRequestError);
  await client().responses.del(created.id);
  await assert.rejects(client().responses.retrieve(created.id),
    (e) => e instanceof OpenAI.NotFoundError);
});

test('responses.stream with a function call: arguments deltas assembled', { timeout: 20_000 }, async () => {
  const stream = client().responses.stream({
    model: 'claude-sonnet-4-5', tools: [weatherTool], input: 'Weather in Paris, streamed?',
  });
  let args = '';
  stream.on('response.function_call_arguments.delta', (e) => { args += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(args, TOOL_ARGS.join(''));
  const call = final.output.find((o) => o.type === 'function_call');
  assert.equal(call.arguments, TOOL_ARGS.join(''));
  assert.equal(call.call_id, 'call_1');
});

test('the local engine answers the Responses API too', { timeout: 60_000 }, async () => {
  const r = await client().responses.create({ model: 'tiny', input: 'hi', max_output_tokens: 3 });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.usage.output_tokens, 3);
});

test('background: create, poll with responses.retrieve, and cancel once finished', { timeout: 30_000 }, async () => {
  const queued = await client().responses.create({
    model: 'claude-sonnet-4-5', input: 'in the background', background: true,
  });
  assert.equal(queued.status, 'queued');
  assert.equal(queued.background, true);
  let done = queued;
  for (let i = 0; i < 200 && (done.status === 'queued' || done.status === 'in_progress'); ++i) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    done = await client().responses.retrieve(queued.id);
  }
  assert.equal(done.status, 'completed');
  assert.equal(done.output[0].content[0].text, 'echo: in the background');
  // Cancelling a finished background response answers it as it stands (this SDK version has no
  // responses.cancel yet: its generic POST).
  const cancelled = await client().post(`/responses/${queued.id}/cancel`);
  assert.equal(cancelled.status, 'completed');
});

test('an unknown previous_response_id is a 404 naming it; a bad key a 401', { timeout: 20_000 }, async () => {
  await assert.rejects(
    client().responses.create({ model: 'claude-sonnet-4-5', input: 'x', previous_response_id: 'resp_123' }),
    (e) => e instanceof OpenAI.NotFoundError && e.param === 'previous_response_id');
  await assert.rejects(
    client('sk-not-a-key').responses.create({ model: 'claude-sonnet-4-5', input: 'x' }),
    (e) => e instanceof OpenAI.AuthenticationError);
});
