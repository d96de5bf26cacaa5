// The official OpenAI Node SDK's Responses API through the gateway's native pass-through: the
// real `switchyard` binary in front of a fake OpenAI that serves POST /v1/responses in the
// Responses API's wire format (a provider with `responses_api: true`). Checks that the SDK
// parses what comes back (the Response object, the typed event stream, function calls), that
// what the gateway does not model (reasoning, include, built-in tool fields) reaches the
// upstream unchanged, and that previous_response_id continues through the gateway's own store
// (the upstream gets the whole conversation with store: false).
//
//   SWITCHYARD_BIN=build/switchyard node tests/sdk/openai_responses_passthrough_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  keySha256, makeWorkDir, sseData, startGateway, startUpstream, startWatchdog, teardown, wordDeltas,
} from './harness.mjs';

const CLIENT_KEY = 'sk-responses-native-5d1b7a';
startWatchdog('openai_responses_passthrough_test', 120_000);

// --- the fake OpenAI Responses upstream ------------------------------------------------------

const requests = [];
const USAGE = {
  input_tokens: 21, input_tokens_details: { cached_tokens: 5 },
  output_tokens: 9, output_tokens_details: { reasoning_tokens: 3 }, total_tokens: 30,
};

function lastUserText(body) {
  if (typeof body.input === 'string') return body.input;
  const users = body.input.filter((i) => (i.type ?? 'message') === 'message' && i.role === 'user');
  const last = users[users.length - 1];
  if (typeof last.content === 'string') return last.content;
  return last.content.filter((p) => p.type === 'input_text').map((p) => p.text).join(' ');
}

function wantsCall(body) {
  return (body.tools ?? []).some((t) => t.type === 'function') &&
    !(Array.isArray(body.input) && body.input.some((i) => i.type === 'function_call_output'));
}

// The output items the fake answers with: a reasoning item, then a function call or a message.
function outputFor(body, n) {
  const reasoning = { id: `rs_${n}`, type: 'reasoning', summary: [], encrypted_content: `enc-${n}` };
  if (wantsCall(body)) {
    const tool = body.tools.find((t) => t.type === 'function');
    return [reasoning, {
      id: `fc_${n}`, type: 'function_call', status: 'completed', call_id: `call_${n}`,
      name: tool.name, arguments: '{"city":"Paris"}',
    }];
  }
  const text = 'native: ' + lastUserText(body);
  return [reasoning, {
    id: `msg_${n}`, type: 'message', status: 'completed', role: 'assistant',
    content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
  }];
}

function responseObject(body, n, status, output, usage) {
  return {
    id: `resp_upstream_${n}`, object: 'response', created_at: 1765000000 + n, status,
    error: null, incomplete_details: null, instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null, model: body.model, output,
    parallel_tool_calls: true, previous_response_id: null, reasoning: body.reasoning ?? null,
    store: body.store ?? true, temperature: 1, text: { format: { type: 'text' } },
    tool_choice: 'auto', tools: body.tools ?? [], top_p: 1, truncation: 'disabled', usage,
    metadata: body.metadata ?? {},
  };
}

// The stream of one answer, event for event as OpenAI sends them (event: line, then data:).
function streamEvents(body, n) {
  const out = outputFor(body, n);
  const events = [];
  const emit = (type, fields) => events.push({ type, sequence_number: events.length, ...fields });
  emit('response.created', { response: responseObject(body, n, 'in_progress', [], null) });
  emit('response.in_progress', { response: responseObject(body, n, 'in_progress', [], null) });
  emit('response.output_item.added', { output_index: 0, item: out[0] });
  emit('response.output_item.done', { output_index: 0, item: out[0] });
  const item = out[1];
  if (item.type === 'function_call') {
    emit('response.output_item.added', { output_index: 1, item: { ...item, arguments: '', status: 'in_progress' } });
    for (const delta of ['{"city":', '"Paris"}']) {
      emit('response.function_call_arguments.delta', { item_id: item.id, output_index: 1, delta });
    }
    emit('response.function_call_arguments.done', { item_id: item.id, output_index: 1, arguments: item.arguments });
  } else {
    const text = item.content[0].text;
    emit('response.output_item.added', { output_index: 1, item: { ...item, status: 'in_progress', content: [] } });
    const part = { type: 'output_text', text: '', annotations: [], logprobs: [] };
    emit('response.content_part.added', { item_id: item.id, output_index: 1, content_index: 0, part });
    for (const delta of wordDeltas(text)) {
      emit('response.output_text.delta', { item_id: item.id, output_index: 1, content_index: 0, delta, logprobs: [] });
    }
    emit('response.output_text.done', { item_id: item.id, output_index: 1, content_index: 0, text, logprobs: [] });
    emit('response.content_part.done', { item_id: item.id, output_index: 1, content_index: 0, part: { ...part, text } });
  }
  emit('response.output_item.done', { output_index: 1, item });
  emit('response.completed', { response: responseObject(body, n, 'completed', out, USAGE) });
  return events;
}

let failNext = null;  // { status, error }: the next request is answered with that error

function handle(req, res, raw) {
  if (failNext) {
    const { status, error } = failNext;
    failNext = null;
    requests.push(JSON.parse(raw));
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error }));
    return;
  }
  if (req.url !== '/v1/responses') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `no ${req.url} here`, type: 'invalid_request_error' } }));
    return;
  }
  const body = JSON.parse(raw);
  requests.push(body);
  const n = requests.length;
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(responseObject(body, n, 'completed', outputFor(body, n), USAGE)));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const ev of streamEvents(body, n)) res.write(`event: ${ev.type}\n` + sseData(ev));
  res.end();
}

// --- the gateway ---------------------------------------------------------------------------------

let started;  // { upstream, gateway, dir }
let client;

function config(port) {
  return `server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 5}
auth: {allow_unauthenticated: false}
teams:
  - name: sdk
    keys: [{id: sdk-native, sha256: ${keySha256(CLIENT_KEY)}}]
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:${port}/v1", api_key: sk-up, responses_api: true, retry: {max_attempts: 1}}
models:
  - {name: gpt-native, provider: oai, upstream_model: gpt-up}
pricing:
  oai: {gpt-up: {input: 1.0, cached_input: 0.5, output: 2.0}}
`;
}

before(async () => {
  started = { upstream: await startUpstream(handle), dir: makeWorkDir('switchyard-responses-native-') };
  started.gateway = await startGateway({
    config: config(started.upstream.address().port), dir: started.dir, timeoutMs: 30_000,
  });
  client = new OpenAI({
    baseURL: `http://127.0.0.1:${started.gateway.port}/v1`, apiKey: CLIENT_KEY, timeout: 30_000, maxRetries: 0,
  });
});

after(() => teardown(started));

const lastRequest = () => requests[requests.length - 1];

// --- tests ---------------------------------------------------------------------------------------

test('responses.create passes the body through and the SDK reads the Response', { timeout: 20_000 }, async () => {
  const { data, response } = await client.responses.create({
    model: 'gpt-native', input: 'hello native', reasoning: { effort: 'low', summary: 'auto' },
    include: ['reasoning.encrypted_content'], text: { verbosity: 'low' }, max_output_tokens: 200,
    metadata: { run: 'native' },
  }).withResponse();
  assert.equal(data.object, 'response');
  assert.match(data.id, /^resp_/);
  assert.notEqual(data.id, 'resp_upstream_1', 'the id is the gateway\'s, so retrieve finds it');
  assert.equal(data.model, 'gpt-native');
  assert.equal(data.status, 'completed');
  assert.equal(data.output_text, 'native: hello native');
  assert.equal(data.output[0].type, 'reasoning');
  assert.equal(data.output[0].encrypted_content, 'enc-1');
  assert.equal(data.usage.input_tokens_details.cached_tokens, 5);
  assert.equal(data.usage.output_tokens_details.reasoning_tokens, 3);
  assert.equal(response.headers.get('x-switchyard-route'), 'oai/gpt-up');

  const seen = lastRequest();
  assert.equal(seen.model, 'gpt-up');
  assert.equal(seen.store, false, 'the gateway keeps the conversation; OpenAI is told not to');
  assert.deepEqual(seen.reasoning, { effort: 'low', summary: 'auto' });
  assert.deepEqual(seen.include, ['reasoning.encrypted_content']);
  assert.deepEqual(seen.text, { verbosity: 'low' });
  assert.deepEqual(seen.metadata, { run: 'native' });

  const again = await client.responses.retrieve(data.id);
  assert.equal(again.id, data.id);
  assert.deepEqual(again.output, data.output);
});

test('responses.stream: typed events in order and the final Response', { timeout: 20_000 }, async () => {
  const stream = client.responses.stream({ model: 'gpt-native', input: 'stream me please' });
  const types = [];
  let text = '';
  let lastSequence = -1;
  for await (const event of stream) {
    types.push(event.type);
    assert.ok(event.sequence_number > lastSequence, `sequence numbers grow: ${event.type}`);
    lastSequence = event.sequence_number;
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(text, 'native: stream me please');
  // (this SDK's stream sets no output_text: the message is read from the output items)
  const message = final.output.find((i) => i.type === 'message');
  assert.equal(message.content[0].text, 'native: stream me please');
  assert.equal(final.output[0].type, 'reasoning');
  assert.equal(final.model, 'gpt-native');
  assert.equal(types[0], 'response.created');
  assert.equal(types[types.length - 1], 'response.completed');
  assert.ok(types.includes('response.content_part.done'));
  assert.equal(lastRequest().stream, true);
  assert.equal(lastRequest().store, false);
});

test('a function call, and its output sent through previous_response_id', { timeout: 20_000 }, async () => {
  const tools = [{
    type: 'function', name: 'get_weather', description: 'Weather of a city', strict: true,
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  }];
  const first = await client.responses.create({ model: 'gpt-native', input: 'weather in Paris?', tools });
  const call = first.output.find((i) => i.type === 'function_call');
  assert.ok(call, JSON.stringify(first.output));
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
  assert.deepEqual(lastRequest().tools, tools, 'tools reach OpenAI as the client wrote them');

  const second = await client.responses.create({
    model: 'gpt-native', previous_response_id: first.id, tools,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp_c":21}' }],
  });
  assert.equal(second.previous_response_id, first.id);
  const seen = lastRequest();
  assert.equal(seen.previous_response_id, undefined, 'the gateway expands the conversation itself');
  assert.equal(seen.store, false);
  const kinds = seen.input.map((i) => i.type ?? 'message');
  assert.deepEqual(kinds, ['message', 'reasoning', 'function_call', 'function_call_output']);
  assert.equal(seen.input[1].encrypted_content, 'enc-' + (requests.length - 1));
  assert.equal(seen.input[2].call_id, call.call_id);
  assert.equal(second.output_text, 'native: weather in Paris?');
});

test('an upstream error reaches the SDK as an APIError with OpenAI\'s shape', { timeout: 20_000 }, async () => {
  failNext = { status: 400, error: { message: 'Invalid value for include', type: 'invalid_request_error', param: 'include', code: 'invalid_value' } };
  await assert.rejects(
    client.responses.create({ model: 'gpt-native', input: 'x', include: ['nonsense'] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /include/.test(e.message),
  );
});
