// llama.cpp's side of bench/llama_cpp_side_by_side.sh: forward-pass speed of a GGUF file in
// llama.cpp (node-llama-cpp's prebuilt linux-x64 CPU build; nothing is downloaded or built), measured
// the way build/sy_engine_bench measures our engine:
//
//   node bench/llama_cpp_bench.mjs --gguf FILE [--threads 2] [--prefill 64] [--batch 1,4,8]
//        [--steps 16] [--seed 7]
//
// prefill: one sequence reads the whole prompt in one batch (the time includes the last token's
// logits, as in our bench). decode batch B: B sequences each read a 32-token prompt first, then
// `steps` timed steps (after two untimed ones) in which every sequence takes one token; the B evaluations of a step are queued
// together, so node-llama-cpp hands them to llama.cpp as one batch of B tokens (llama_decode),
// as our scheduler batches running sequences. Greedy, so the sequences follow the model.
// Prompts are random ids from `seed` (the speed of a dense model does not depend on them).
// Prints one JSON object: {prefill: [{tokens, seconds}], decode: [{batch, step_s}], ...}.
import { getLlama } from 'node-llama-cpp';
import path from 'node:path';

function parseArgs(argv) {
  const o = { threads: 2, prefill: [64], batch: [1, 4, 8], steps: 16, seed: 7 };
  const list = (s) => s.split(',').filter(Boolean).map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} wants a value`);
      return argv[++i];
    };
    if (a === '--gguf') o.file = path.resolve(v());
    else if (a === '--threads') o.threads = Number.parseInt(v(), 10);
    else if (a === '--prefill') o.prefill = list(v());
    else if (a === '--batch') o.batch = list(v());
    else if (a === '--steps') o.steps = Number.parseInt(v(), 10);
    else if (a === '--seed') o.seed = Number.parseInt(v(), 10);
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.file) throw new Error('--gguf FILE is required');
  for (const n of [o.threads, o.steps, ...o.prefill, ...o.batch]) {
    if (!Number.isInteger(n) || n < 1) throw new Error('counts must be positive integers');
  }
  return o;
}

// A small deterministic generator (xorshift32) for the prompt ids.
function randomIds(n, vocab, state, bos) {
  const ids = [];
  for (let i = 0; i < n; ++i) {
    state.x ^= state.x << 13; state.x >>>= 0;
    state.x ^= state.x >>> 17;
    state.x ^= state.x << 5; state.x >>>= 0;
    ids.push(3 + (state.x % (vocab - 3)));
  }
  if (bos !== null) ids[0] = bos;
  return ids;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const NEXT = { generateNext: { token: true } };
const WARM_STEPS = 2;  // untimed steps before each decode measurement

async function prefillRun(model, o, n, rng) {
  const ctx = await model.createContext({ contextSize: n + 8, sequences: 1, batchSize: n, threads: o.threads });
  try {
    const seq = ctx.getSequence();
    const ids = randomIds(n, model.tokens.vocabularySize ?? 262144, rng, model.tokens.bos);
    const items = ids.map((t, i) => (i + 1 === n ? [t, NEXT] : t));
    const t0 = now();
    await seq.controlledEvaluate(items);
    return { tokens: n, seconds: now() - t0 };
  } finally {
    await ctx.dispose();
  }
}

async function decodeRun(model, o, B, rng) {
  const prompt = 32;
  const per = prompt + o.steps + WARM_STEPS + 8;
  const ctx = await model.createContext({
    contextSize: per * B, sequences: B, batchSize: Math.max(prompt, B), threads: o.threads,
  });
  try {
    const seqs = [];
    const next = [];
    for (let s = 0; s < B; ++s) {
      const seq = ctx.getSequence();
      const ids = randomIds(prompt, model.tokens.vocabularySize ?? 262144, rng, model.tokens.bos);
      const r = await seq.controlledEvaluate(ids.map((t, i) => (i + 1 === prompt ? [t, NEXT] : t)));
      seqs.push(seq);
      next.push(r[prompt - 1].next.token);
    }
    const step = async () => {
      const results = await Promise.all(seqs.map((seq, s) => seq.controlledEvaluate([[next[s], NEXT]])));
      results.forEach((r, s) => { next[s] = r[0].next.token; });
    };
    for (let k = 0; k < WARM_STEPS; ++k) await step();  // llama.cpp sizes its graph for B here
    const t0 = now();
    for (let k = 0; k < o.steps; ++k) await step();
    return { batch: B, step_s: (now() - t0) / o.steps };
  } finally {
    await ctx.dispose();
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const llama = await getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true,
    logLevel: 'error', progressLogs: false,
  });
  const t0 = now();
  const model = await llama.loadModel({ modelPath: o.file, gpuLayers: 0, useMmap: true });
  const load_s = now() - t0;
  const rng = { x: o.seed >>> 0 || 1 };
  try {
    // Warm-up: fault the mapped weights in, as our bench's first forward pass does.
    await prefillRun(model, o, 8, rng);
    const prefill = [];
    for (const n of o.prefill) prefill.push(await prefillRun(model, o, n, rng));
    const decode = [];
    for (const B of o.batch) decode.push(await decodeRun(model, o, B, rng));
    process.stdout.write(`${JSON.stringify({
      file: o.file, description: model.typeDescription, load_s, threads: o.threads,
      cpu_variant: llama.buildType ?? null, prefill, decode,
    })}\n`);
  } finally {
    await model.dispose();
  }
}

main().catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
