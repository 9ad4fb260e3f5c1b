#!/usr/bin/env node
// Benchmarks (not tests): `npm run bench -- train m10`, `npm run bench -- train smol135 --lora [--json]`,
// `npm run bench -- serve [--part load|stream|all] [--clients 32] [--seconds 30] [--json]`,
// `npm run bench -- guidance [--demo steerlm-demo] [--prompts 20] [--rounds 3] [--json]`,
// `npm run bench -- annotate [--threads N] [--json]`, `npm run bench -- peak [--threads N] [--json]`.
// Runs the compiled library (npm run build first).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const trainEntry = new URL("../dist/train/bench.js", import.meta.url);
const peakEntry = new URL("../dist/ggml/peak.js", import.meta.url);
/** The benchmarks that parse their own options, by name: each module exports `main(argv) → exit status`. */
const SELF_PARSED = {
  serve: new URL("../dist/serve/bench.js", import.meta.url),
  guidance: new URL("../dist/inference/bench.js", import.meta.url),
  annotate: new URL("../dist/apm/bench.js", import.meta.url),
};

/** The training configurations by name, when dist/ is built (the usage text lists them). */
async function benchNames() {
  if (!existsSync(fileURLToPath(trainEntry))) return "name";
  const { BENCH_CONFIGS } = await import(trainEntry.href);
  return Object.keys(BENCH_CONFIGS).join("|");
}

async function usage() {
  return (
    `usage: npm run bench -- train <${await benchNames()}> [options]\n` +
    "         --lora                      LoRA on a frozen base instead of every weight\n" +
    "         --frozen f32|f16|bf16|q8_0  storage of the frozen base under --lora (default bf16)\n" +
    "         --recompute                 rebuild each block's activations in the backward pass\n" +
    "         --compute f32|bf16          GEMM precision (--bf16 = --compute bf16; f32 master weights)\n" +
    "         --threads N  --steps N  --seq N  --replicas R  --backward manual|ggml  --json\n" +
    "         --logit-chunk N             positions per output-projection chunk (default: 2^24 logits a chunk)\n" +
    "       npm run bench -- peak [--threads N] [--json]   f32 and bf16 FMA peak, GFLOP/s per core and on N threads\n" +
    "       npm run bench -- serve [--part load|stream|all] [--model m.gguf] [--clients 32] [--seconds 30]\n" +
    "                              [--parallel 4] [--max-tokens 32] [--json]\n" +
    "         load: concurrent clients; stream: first token with a cached 2,000-token system prompt, decode ÷ node-llama-cpp\n" +
    "       npm run bench -- guidance [--demo steerlm-demo] [--prompts 20] [--rounds 3] [--json]\n" +
    "       npm run bench -- annotate [--threads N] [--conversations 200] [--min-tokens 64] [--max-tokens 512] [--rounds 2] [--json]\n" +
    "       npm run bench -- --help\n"
  );
}

/** A usage mistake: the message and the usage text on stderr, exit status 1 (no stack trace). */
async function fail(message) {
  process.stderr.write(`bench: ${message}\n${await usage()}`);
  process.exit(1);
}

const argv = process.argv.slice(2);
const beforeDashes = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
if (beforeDashes.includes("--help") || beforeDashes.includes("-h")) {
  process.stdout.write(await usage());
  process.exit(0);
}
const kindArg = argv[0];
const entry = Object.hasOwn(SELF_PARSED, kindArg)
  ? SELF_PARSED[kindArg]
  : kindArg === "peak"
    ? peakEntry
    : trainEntry;
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write("bench: dist/ is missing; run `npm run build` first.\n");
  process.exit(1);
}
/** node:util parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown or malformed options. */
const isArgError = (err) => typeof err?.code === "string" && err.code.startsWith("ERR_PARSE_ARGS_");
// the first sentence: node's advice on positionals that start with "-" does not apply here
const argMessage = (err) => err.message.split(". To specify")[0];

if (Object.hasOwn(SELF_PARSED, kindArg)) {
  const { main } = await import(entry.href);
  try {
    process.exit(await main(argv.slice(1)));
  } catch (err) {
    if (isArgError(err)) await fail(argMessage(err));
    // what the user can fix (a missing file, a bad value): the message and its hint, not a stack
    const { SteerlmError } = await import(new URL("../dist/util/errors.js", import.meta.url).href);
    if (err instanceof SteerlmError) {
      process.stderr.write(`bench: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ""}`);
      process.exit(1);
    }
    throw err;
  }
}

let parsed;
try {
  parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      lora: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      threads: { type: "string" },
      steps: { type: "string" },
      frozen: { type: "string" },
      backward: { type: "string" },
      bf16: { type: "boolean", default: false },
      compute: { type: "string" },
      replicas: { type: "string" },
      recompute: { type: "boolean", default: false },
      seq: { type: "string" },
      "logit-chunk": { type: "string" },
    },
  });
} catch (err) {
  if (isArgError(err)) await fail(argMessage(err));
  throw err;
}
const { values, positionals } = parsed;
const [kind, name] = positionals;
const positiveInt = async (flag) => {
  const text = values[flag];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    await fail(`--${flag}: expected an integer ≥ 1, got ${JSON.stringify(text)}`);
  return n;
};
if (kind === "peak") {
  if (positionals.length > 1) await fail(`peak takes no name, got ${JSON.stringify(name)}`);
  const { peakReport } = await import(entry.href);
  const r = peakReport(await positiveInt("threads"));
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    const fmt = (x) => (x === null ? "n/a" : `${x.toFixed(1)} GFLOP/s`);
    process.stdout.write(
      `peak on ${r.cpu}, best of short runs:\n` +
        `  f32  ${r.isa.f32 ?? "no AVX-512F or AVX2"}: ${fmt(r.f32_gflops.per_core)} per core, ${fmt(r.f32_gflops.total)} on ${r.threads} threads\n` +
        `  bf16 ${r.isa.bf16 ?? "no AVX512_BF16"}: ${fmt(r.bf16_gflops.per_core)} per core, ${fmt(r.bf16_gflops.total)} on ${r.threads} threads\n`,
    );
  }
  process.exit(0);
}
const { BENCH_CONFIGS, benchTrain } = await import(entry.href);
if (kind !== "train" || !(name in BENCH_CONFIGS) || positionals.length > 2) {
  await fail(
    kind === "train"
      ? `unknown training benchmark ${JSON.stringify(name ?? "")}`
      : `${["train", "peak", ...Object.keys(SELF_PARSED)].join(", ")}?`,
  );
}
if (values.compute !== undefined && !["f32", "bf16"].includes(values.compute))
  await fail(`--compute: expected f32 or bf16, got ${JSON.stringify(values.compute)}`);
if (values.bf16 && values.compute === "f32") await fail("--bf16 contradicts --compute f32");
const r = await benchTrain(name, {
  lora: values.lora,
  threads: await positiveInt("threads"),
  steps: await positiveInt("steps"),
  frozenType: values.frozen,
  backward: values.backward,
  computeType: values.bf16 ? "bf16" : (values.compute ?? "f32"),
  replicas: await positiveInt("replicas"),
  recompute: values.recompute,
  seqLen: await positiveInt("seq"),
  logitChunk: await positiveInt("logit-chunk"),
});
if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
else {
  process.stdout.write(
    `train ${r.name} ${r.mode}${r.mode === "lora" ? ` on a ${r.frozen} base` : ""} (${r.backward} backward${r.recompute ? ", recomputed" : ""}, ${r.compute} GEMMs): ${(r.params / 1e6).toFixed(2)}M params (${(r.trainable / 1e6).toFixed(2)}M trainable), ` +
      `B=${r.batch} T=${r.seq_len} (logit chunk ${r.logit_chunk}), ${r.replicas > 1 ? `${r.replicas} replicas × 1 thread` : `${r.threads} threads`}, ggml-cpu-${r.cpu_variant}\n` +
      `  step ${r.step_ms.toFixed(0)} ms (cpu ${r.cpu_ms.toFixed(0)} ms) = ${r.tokens_per_s.toFixed(0)} tokens/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB, ` +
      `loss ${r.loss_first.toFixed(3)} -> ${r.loss_last.toFixed(3)}\n` +
      `  ${r.gflop_per_step.toFixed(1)} GFLOP a step (attention ${(100 * r.attention_share).toFixed(1)}%) = ${r.gflops.toFixed(1)} GFLOP/s; ` +
      `${r.compute} peak ${r.peak_gflops === null ? "n/a" : `${r.peak_gflops.toFixed(1)} GFLOP/s (measured in this run)`}, ` +
      `mfu ${r.mfu === null ? "n/a" : r.mfu.toFixed(2)} (per CPU-second ${r.mfu_cpu === null ? "n/a" : r.mfu_cpu.toFixed(2)})\n` +
      (r.amx_f32_products > 0
        ? `  ${r.amx_f32_products} f32 products a step ran on AMX tiles, their f32 operands split into exact bf16 parts (f32-accurate; mfu is against the f32 FMA peak)\n`
        : ""),
  );
}
