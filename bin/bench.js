#!/usr/bin/env node
// Benchmarks (not tests): `npm run bench -- train m10`, `npm run bench -- train smol135 --lora [--json]`,
// `npm run bench -- serve [--part load|stream|all] [--clients 32] [--seconds 30] [--json]`,
// `npm run bench -- guidance [--demo steerlm-demo] [--prompts 20] [--rounds 3] [--json]`,
// `npm run bench -- annotate [--threads N] [--json]`.
// Runs the compiled library (npm run build first).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const trainEntry = new URL("../dist/train/bench.js", import.meta.url);
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
    "         --threads N  --steps N  --replicas R  --backward manual|ggml  --json\n" +
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
const entry = Object.hasOwn(SELF_PARSED, kindArg) ? SELF_PARSED[kindArg] : trainEntry;
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
    },
  });
} catch (err) {
  if (isArgError(err)) await fail(argMessage(err));
  throw err;
}
const { values, positionals } = parsed;
const [kind, name] = positionals;
const { BENCH_CONFIGS, benchTrain } = await import(entry.href);
if (kind !== "train" || !(name in BENCH_CONFIGS) || positionals.length > 2) {
  await fail(
    kind === "train"
      ? `unknown training benchmark ${JSON.stringify(name ?? "")}`
      : `${["train", ...Object.keys(SELF_PARSED)].join(", ")}?`,
  );
}
const positiveInt = async (flag) => {
  const text = values[flag];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    await fail(`--${flag}: expected an integer ≥ 1, got ${JSON.stringify(text)}`);
  return n;
};
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
});
if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
else {
  process.stdout.write(
    `train ${r.name} ${r.mode}${r.mode === "lora" ? ` on a ${r.frozen} base` : ""} (${r.backward} backward${r.recompute ? ", recomputed" : ""}, ${r.compute} GEMMs): ${(r.params / 1e6).toFixed(2)}M params (${(r.trainable / 1e6).toFixed(2)}M trainable), ` +
      `B=${r.batch} T=${r.seq_len}, ${r.replicas > 1 ? `${r.replicas} replicas × 1 thread` : `${r.threads} threads`}, ggml-cpu-${r.cpu_variant}\n` +
      `  step ${r.step_ms.toFixed(0)} ms (cpu ${r.cpu_ms.toFixed(0)} ms) = ${r.tokens_per_s.toFixed(0)} tokens/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB, ` +
      `loss ${r.loss_first.toFixed(3)} -> ${r.loss_last.toFixed(3)}\n`,
  );
}
