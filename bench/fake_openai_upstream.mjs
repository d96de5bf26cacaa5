// A loopback OpenAI Chat Completions server for the benches in bench/: non-streamed
// `chat.completion` answers, and streams in OpenAI's exact SSE chunk format (role chunk,
// content chunks, a finish chunk, then, when the request sets stream_options.include_usage,
// the usage chunk with `choices: []`, and `data: [DONE]`).
//
//   node bench/fake_openai_upstream.mjs [--port N] [--keep-alive-ms N]
//
// --port 0 (the default) picks a free port; --keep-alive-ms (default 5000, Node's own) is how
// long an idle keep-alive connection stays open before this server closes it.
//
// Prints {"port":N} on its first stdout line once listening. GET /stats returns counters
// (requests, streams finished, streams whose reader went away mid-way, bytes written).
// A stream whose prompt holds `tag=WORD` can be looked up with GET /stats/stream?tag=WORD:
// the port its reader (the gateway) connected from, chunks written, whether this server is
// waiting for the reader to drain, bytes buffered here, and whether it ended (the last 5,000
// tagged streams are kept).
//
// The shape of a stream is read from the last user message, as `key=value` words, so that a
// bench client picks it per request through any gateway that passes the prompt on:
//   chunks=N       content chunks (default 8); each is one completion token in the usage
//   gap_ms=N       pause before each content chunk (default 0)
//   chunk_bytes=N  bytes of content per chunk (default 6)
// Chunk i carries contentOf(i, chunk_bytes) (bench/sse_shape.mjs); clients rebuild the
// expected text with the same rule. Writes honour backpressure: a reader that stops reading
// stalls its own stream.
import http from 'node:http';

import {contentOf, expectedText} from './sse_shape.mjs';

const args = process.argv.slice(2);
const portArg = args.indexOf('--port');
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const keepAliveArg = args.indexOf('--keep-alive-ms');
const keepAliveMs = keepAliveArg >= 0 ? Number(args[keepAliveArg + 1]) : 5000;

const kMaxChunks = 100000;
const kMaxChunkBytes = 65536;
const kMaxGapMs = 60000;
const kCreated = 1700000000;

const stats = {requests: 0, completions: 0, streams_started: 0, streams_finished: 0,
               streams_abandoned: 0, bad_requests: 0, bytes_written: 0};

function clampInt(value, fallback, lo, hi) {
  const n = Number.parseInt(value, 10);
  if (!Number.isFinite(n)) return fallback;
  return Math.min(hi, Math.max(lo, n));
}

function lastUserText(messages) {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; --i) {
    const m = messages[i];
    if (m && m.role === 'user') {
      if (typeof m.content === 'string') return m.content;
      if (Array.isArray(m.content)) {
        return m.content.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join(' ');
      }
    }
  }
  return '';
}

function streamShape(text) {
  const kv = {};
  for (const m of text.matchAll(/\b(chunks|gap_ms|chunk_bytes)=(\d+)/g)) kv[m[1]] = m[2];
  return {
    chunks: clampInt(kv.chunks, 8, 1, kMaxChunks),
    gapMs: clampInt(kv.gap_ms, 0, 0, kMaxGapMs),
    chunkBytes: clampInt(kv.chunk_bytes, 6, 1, kMaxChunkBytes),
  };
}

function promptTokens(messages) {
  let bytes = 0;
  if (Array.isArray(messages)) {
    for (const m of messages) bytes += typeof m?.content === 'string' ? m.content.length : 16;
  }
  return Math.max(1, Math.ceil(bytes / 4));
}

function usageOf(prompt, completion) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: {cached_tokens: 0, audio_tokens: 0},
    completion_tokens_details: {reasoning_tokens: 0, audio_tokens: 0,
                                accepted_prediction_tokens: 0, rejected_prediction_tokens: 0},
  };
}

let nextId = 1;

const kMaxTracked = 5000;
const tracked = new Map();  // tag -> () => state of that stream

function track(tag, describe) {
  if (!tag) return;
  tracked.set(tag, describe);
  if (tracked.size > kMaxTracked) tracked.delete(tracked.keys().next().value);
}

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {'Content-Type': 'application/json',
                         'Content-Length': Buffer.byteLength(body)});
  res.end(body);
  stats.bytes_written += body.length;
}

function complete(res, req, model) {
  const shape = streamShape(lastUserText(req.messages));
  const text = expectedText(shape.chunks, shape.chunkBytes);
  stats.completions += 1;
  sendJson(res, 200, {
    id: `chatcmpl-fake${nextId++}`,
    object: 'chat.completion',
    created: kCreated,
    model,
    choices: [{index: 0, message: {role: 'assistant', content: text, refusal: null,
                                   annotations: []},
               logprobs: null, finish_reason: 'stop'}],
    usage: usageOf(promptTokens(req.messages), shape.chunks),
    service_tier: 'default',
    system_fingerprint: 'fp_fake',
  });
}

function stream(res, req, model) {
  const text = lastUserText(req.messages);
  const shape = streamShape(text);
  const n = clampInt(req.n, 1, 1, 8);
  const withUsage = req.stream_options?.include_usage === true;
  const id = `chatcmpl-fake${nextId++}`;
  stats.streams_started += 1;
  res.writeHead(200, {'Content-Type': 'text/event-stream; charset=utf-8',
                      'Cache-Control': 'no-cache'});
  // OpenAI puts "usage": null on every chunk but the last when usage was asked for.
  const chunk = (choices, usage) => {
    const c = {id, object: 'chat.completion.chunk', created: kCreated, model,
               service_tier: 'default', system_fingerprint: 'fp_fake', choices};
    if (withUsage) c.usage = usage;
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  const perChoice = (delta, finish) =>
    Array.from({length: n}, (_, index) => ({index, delta, logprobs: null, finish_reason: finish}));

  let closed = false;
  let timer = null;
  let i = 0;
  let waitingForDrain = false;
  const readerPort = res.socket?.remotePort;
  track((text.match(/\btag=([\w-]{1,64})/) || [])[1], () => ({
    reader_port: readerPort, chunks_written: i, of: shape.chunks,
    waiting_for_drain: waitingForDrain, buffered_here: res.writableLength,
    ended: res.writableEnded, finished: res.writableFinished, reader_gone: closed}));
  res.on('close', () => {
    if (!res.writableFinished) {
      closed = true;
      stats.streams_abandoned += 1;
      if (timer) clearTimeout(timer);
    }
  });
  const write = (s) => {
    stats.bytes_written += s.length;
    return res.write(s);
  };

  const step = () => {
    timer = null;
    if (closed) return;
    // Bounded: at most shape.chunks content chunks, then the tail and the end.
    while (i < shape.chunks) {
      const ok = write(chunk(perChoice({content: contentOf(i, shape.chunkBytes)}, null), null));
      i += 1;
      if (!ok) {
        waitingForDrain = true;
        res.once('drain', () => {
          waitingForDrain = false;
          if (shape.gapMs > 0) timer = setTimeout(step, shape.gapMs);
          else step();
        });
        return;
      }
      if (shape.gapMs > 0 && i < shape.chunks) {
        timer = setTimeout(step, shape.gapMs);
        return;
      }
    }
    write(chunk(perChoice({}, 'stop'), null));
    if (withUsage) write(chunk([], usageOf(promptTokens(req.messages), shape.chunks * n)));
    write('data: [DONE]\n\n');
    res.end();
    stats.streams_finished += 1;
  };
  write(chunk(perChoice({role: 'assistant', content: '', refusal: null}, null), null));
  if (shape.gapMs > 0) timer = setTimeout(step, shape.gapMs);
  else step();
}

const kMaxBody = 4 << 20;

const server = http.createServer((httpReq, res) => {
  stats.requests += 1;
  if (httpReq.method === 'GET' && httpReq.url === '/stats') return sendJson(res, 200, stats);
  if (httpReq.method === 'GET' && httpReq.url.startsWith('/stats/stream?tag=')) {
    const describe = tracked.get(decodeURIComponent(httpReq.url.slice(18)));
    return sendJson(res, describe ? 200 : 404, describe ? describe() : {error: 'unknown tag'});
  }
  if (httpReq.method === 'GET' && httpReq.url.endsWith('/models')) {
    return sendJson(res, 200, {object: 'list', data: []});
  }
  if (httpReq.method !== 'POST' || !httpReq.url.endsWith('/chat/completions')) {
    return sendJson(res, 404, {error: {message: 'not found', type: 'invalid_request_error'}});
  }
  const parts = [];
  let size = 0;
  httpReq.on('data', (d) => {
    size += d.length;
    if (size > kMaxBody) httpReq.destroy();
    else parts.push(d);
  });
  httpReq.on('end', () => {
    let req;
    try {
      req = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      stats.bad_requests += 1;
      return sendJson(res, 400, {error: {message: 'bad JSON', type: 'invalid_request_error'}});
    }
    const model = typeof req.model === 'string' ? req.model : 'fake-model';
    if (req.stream === true) stream(res, req, model);
    else complete(res, req, model);
  });
});
server.keepAliveTimeout = keepAliveMs;
server.headersTimeout = 30000;
server.maxConnections = 20000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({port: server.address().port})}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
