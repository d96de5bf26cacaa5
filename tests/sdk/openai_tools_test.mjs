// The official OpenAI Node SDK calling tools and asking for structured outputs on the embedded
// engine: the real `switchyard` binary serving a random-weight Gemma 4 checkpoint (made with
// switchyard-cli, Google's Gemma 4 chat template beside it). The model's free text is noise;
// what the SDK gets must still be what its helpers expect, because tool_choice and
// response_format are enforced by constrained decoding.
//
//   SWITCHYARD_BIN=build/switchyard SWITCHYARD_CLI_BIN=build/switchyard-cli \
//     node tests/sdk/openai_tools_test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import {
  SOURCE_ROOT, startWatchdog, makeWorkDir, makeTestModel, keySha256, startGateway, teardown,
} from './harness.mjs';

const KEY = 'sk-sdk-tools-9c2e41';
const CALL_TIMEOUT_MS = 60_000;

startWatchdog('openai_tools_test', 170_000);

let gateway;
let baseURL;
let workDir;

const client = () => new OpenAI({ baseURL, apiKey: KEY, timeout: CALL_TIMEOUT_MS, maxRetries: 0 });

const Weather = z.object({
  city: z.enum(['Paris', 'Lima', 'Oslo']),
  days: z.number().int(),
  metric: z.boolean(),
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city for some days',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', enum: ['Paris', 'Lima', 'Oslo'] },
        days: { type: 'integer' },
        metric: { type: 'boolean' },
      },
      required: ['city', 'days', 'metric'],
      additionalProperties: false,
    },
    strict: true,
  },
};

const question = [{ role: 'user', content: 'What is the weather in Paris for the next 3 days?' }];

before(async () => {
  workDir = makeWorkDir('switchyard-sdk-tools-');
  const modelDir = path.join(workDir, 'gemma4');
  makeTestModel(modelDir, { preset: 'gemma-4-tiny', seed: 11, tokenizer: true });
  copyFileSync(path.join(SOURCE_ROOT, 'tests/fixtures/chat_template/gemma4_chat_template.jinja'),
               path.join(modelDir, 'chat_template.jinja'));
  const config = [
    'server: {listen: 127.0.0.1, port: 0, threads: 2, shutdown_grace_s: 1}',
    'auth: {allow_unauthenticated: false}',
    'teams:',
    '  - name: apps',
    `    keys: [{id: sdk, sha256: ${keySha256(KEY)}}]`,
    'providers:',
    '  local:',
    '    type: local',
    `    model_dir: "${modelDir}"`,
    '    backend: cpu',
    '    threads: 2',
    '    max_batch: 2',
    '    max_context: 2048',
    'models:',
    '  - {name: gemma4, provider: local}',
    '',
  ].join('\n');
  gateway = await startGateway({ config, dir: workDir, cwd: workDir, timeoutMs: 60_000 });
  baseURL = `http://127.0.0.1:${gateway.port}/v1`;
});

after(() => teardown({ gateway, dir: workDir, graceMs: 10_000, expectCleanExit: false }));

test('a tool call round trip: the call, the tool result, the answer', { timeout: 60_000 }, async () => {
  const first = await client().beta.chat.completions.parse({
    model: 'gemma4',
    messages: question,
    tools: [zodFunction({ name: 'get_weather', parameters: Weather })],
    tool_choice: 'required',
    max_tokens: 400,
    seed: 1,
  });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1, JSON.stringify(choice.message));
  const call = choice.message.tool_calls[0];
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, 'get_weather');
  // The SDK parsed the arguments with the zod schema: they validate.
  assert.deepEqual(Weather.parse(JSON.parse(call.function.arguments)), call.function.parsed_arguments);

  const second = await client().chat.completions.create({
    model: 'gemma4',
    messages: [
      ...question,
      { role: 'assistant', content: null, tool_calls: [{ id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } }] },
      { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ forecast: 'sunny', high: 21 }) },
    ],
    tools: [weatherTool],
    tool_choice: 'none',
    max_tokens: 8,
    seed: 2,
  });
  assert.equal(typeof second.choices[0].message.content, 'string');
  assert.ok(!second.choices[0].message.tool_calls, JSON.stringify(second.choices[0].message));
  assert.ok(['stop', 'length'].includes(second.choices[0].finish_reason));
});

test('streamed tool-call deltas through the SDK stream helper', { timeout: 60_000 }, async () => {
  const stream = client().beta.chat.completions.stream({
    model: 'gemma4',
    messages: question,
    tools: [weatherTool],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 400,
    seed: 3,
  });
  let deltas = '';
  let done;
  stream.on('tool_calls.function.arguments.delta', (e) => { deltas += e.arguments_delta; });
  stream.on('tool_calls.function.arguments.done', (e) => { done = e; });
  const final = await stream.finalChatCompletion();
  const message = final.choices[0].message;
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(message.tool_calls.length, 1);
  assert.equal(message.tool_calls[0].function.name, 'get_weather');
  assert.match(message.tool_calls[0].id, /^call_/);
  assert.equal(deltas, message.tool_calls[0].function.arguments);
  assert.ok(done, 'the helper saw the arguments end');
  assert.equal(done.name, 'get_weather');
  Weather.parse(JSON.parse(message.tool_calls[0].function.arguments));
});

test('beta.chat.completions.parse with zodResponseFormat', { timeout: 60_000 }, async () => {
  const Answer = z.object({
    level: z.enum(['low', 'mid', 'high']),
    count: z.number().int(),
    flags: z.array(z.boolean()).max(3),
    nested: z.object({ ok: z.boolean(), score: z.number() }),
  });
  const completion = await client().beta.chat.completions.parse({
    model: 'gemma4',
    messages: [{ role: 'user', content: 'Rate it as JSON.' }],
    response_format: zodResponseFormat(Answer, 'answer'),
    max_tokens: 400,
    seed: 4,
  });
  const message = completion.choices[0].message;
  assert.equal(completion.choices[0].finish_reason, 'stop');
  assert.ok(message.parsed, message.content);
  assert.deepEqual(Answer.parse(message.parsed), message.parsed);
});
