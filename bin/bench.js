#!/usr/bin/env node
// Benchmarks (not tests): `npm run bench -- train m10`, `npm run bench -- train smol135 --lora [--json]`,
// `npm run bench -- serve [--clients 32] [--seconds 30] [--json]`.
// Runs the compiled library (npm run build first).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const kindArg = process.argv[2];
const entry = new URL(
  kindArg === "serve" ? "../dist/serve/bench.js" : "../dist/train/bench.js",
  import.meta.url,
);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write("bench: dist/ is missing; run `npm run build` first.\n");
  process.exit(1);
}
if (kindArg === "serve") {
  // The load test parses its own options (--model, --clients, --seconds, --parallel, --max-tokens, --json).
  const { main } = await import(entry.href);
  process.exit(await main(process.argv.slice(3)));
}
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    lora: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    threads: { type: "string" },
    steps: { type: "string" },
    frozen: { type: "string" },
    backward: { type: "string" },
    bf16: { type: "boolean", default: false },
    replicas: { type: "string" },
  },
});
const [kind, name] = positionals;
const { BENCH_CONFIGS, benchTrain } = await import(entry.href);
if (kind !== "train" || !(name in BENCH_CONFIGS)) {
  process.stderr.write(
    `usage: npm run bench -- train <${Object.keys(BENCH_CONFIGS).join("|")}> [--lora] [--threads N] [--steps N] [--bf16] [--replicas R] [--frozen f32|f16|bf16|q8_0] [--backward manual|ggml] [--json]\n` +
      "       npm run bench -- serve [--model m.gguf] [--clients 32] [--seconds 30] [--parallel 4] [--max-tokens 32] [--json]\n",
  );
  process.exit(1);
}
const r = await benchTrain(name, {
  lora: values.lora,
  threads: values.threads ? Number(values.threads) : undefined,
  steps: values.steps ? Number(values.steps) : undefined,
  frozenType: values.frozen,
  backward: values.backward,
  computeType: values.bf16 ? "bf16" : "f32",
  replicas: values.replicas ? Number(values.replicas) : undefined,
});
if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
else {
  process.stdout.write(
    `train ${r.name} ${r.mode}${r.mode === "lora" ? ` on a ${r.frozen} base` : ""} (${r.backward} backward, ${r.compute} GEMMs): ${(r.params / 1e6).toFixed(2)}M params (${(r.trainable / 1e6).toFixed(2)}M trainable), ` +
      `B=${r.batch} T=${r.seq_len}, ${r.replicas > 1 ? `${r.replicas} replicas × 1 thread` : `${r.threads} threads`}, ggml-cpu-${r.cpu_variant}\n` +
      `  step ${r.step_ms.toFixed(0)} ms (cpu ${r.cpu_ms.toFixed(0)} ms) = ${r.tokens_per_s.toFixed(0)} tokens/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB, ` +
      `loss ${r.loss_first.toFixed(3)} -> ${r.loss_last.toFixed(3)}\n`,
  );
}
