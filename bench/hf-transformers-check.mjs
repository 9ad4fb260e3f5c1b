#!/usr/bin/env node
// `steerlm export hf` checked with the real Hugging Face stack (not a test: it needs transformers and peft,
// which CI does not install). Exports a run (merged) and, with --lora-run, a LoRA run's PEFT adapter and its
// base; writes what steerlm itself computes (its prompts, their ids, llama.cpp's log-probabilities on
// `export gguf`) to <out>/spec.json; then runs bench/hf-transformers-check.py on it, which prints one JSON line.
//   node bench/hf-transformers-check.mjs <sft-run> [--lora-run <run>] [--out dir] [--spec-only]
//   python3 bench/hf-transformers-check.py <out>/spec.json      # where transformers and peft are (no network)
// Needs `npm run build`.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "lora-run": { type: "string" },
    out: { type: "string", default: ".tmp/hf-transformers-check" },
    "spec-only": { type: "boolean", default: false },
  },
});
const [run] = positionals;
if (!run)
  throw new Error("usage: node bench/hf-transformers-check.mjs <sft-run> [--lora-run <run>] [--out dir]");
const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const { exportGguf, readLoraCheckpoint } = await import(dist("run/export.js"));
const { exportHf, exportPeftAdapter } = await import(dist("run/export-hf.js"));
const { formatValues, withDefaults } = await import(dist("data/attributes.js"));
const { renderConversation } = await import(dist("data/template.js"));
const { messagesToConversation } = await import(dist("inference/model.js"));
const { getLlamaRuntime } = await import(dist("runtime/llama.js"));

const out = resolve(values.out);
mkdirSync(out, { recursive: true });
const model = join(out, "model-hf");
const gguf = join(out, "model.gguf");
await exportHf(run, model);
await exportGguf(run, gguf);
// The schema the export carries: what steerlm's own server would steer with.
const schema = JSON.parse(readFileSync(join(model, "config.json"), "utf8")).steerlm.schema;

const cases = [
  {
    messages: [{ role: "user", content: "Tell me a joke about GPUs." }],
    attributes: { humor: 4, verbosity: 1 },
  },
  {
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is steering?" },
      { role: "assistant", content: "Choosing the attributes of a reply." },
      { role: "user", content: "And SteerLM?" },
    ],
    attributes: { quality: 2 },
  },
  { messages: [{ role: "user", content: "Hello" }], attributes: null },
];
const llama = await getLlamaRuntime();
const ggufModel = await llama.loadModel({ modelPath: gguf });
const ctx = await ggufModel.createContext({
  contextSize: 256,
  threads: 2,
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const seq = ctx.getSequence();
const tc = JSON.parse(readFileSync(join(model, "tokenizer_config.json"), "utf8"));
const bos = tc.add_bos_token && tc.bos_token ? tc.bos_token : "";
// Paths relative to the spec's folder, so that the folder can be copied to the machine that has transformers.
const spec = { model: relative(out, model), cases: [], base: null, adapter: null, merged: null };
for (const c of cases) {
  const vals = formatValues(schema, withDefaults(schema, c.attributes ?? {}));
  const text = renderConversation(messagesToConversation(c.messages, vals), "inference", {
    values: vals,
  }).text;
  const ids = Array.from(ggufModel.tokenize(`${bos}${text}`, true));
  const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
  await seq.clearHistory();
  const res = await seq.controlledEvaluate(
    ids.map((t) => [t, { generateNext: { probabilities: true, options: sampling } }]),
  );
  const last = res.at(-1)?.next.probabilities ?? new Map();
  spec.cases.push({
    ...c,
    expected_text: `${bos}${text}`,
    expected_ids: ids,
    llama_cpp_last_logprobs: Object.fromEntries([...last].map(([t, p]) => [t, Math.log(p)])),
  });
}
await ctx.dispose();
await ggufModel.dispose();

if (values["lora-run"]) {
  const r = await readLoraCheckpoint(values["lora-run"]);
  await exportHf(r.baseModel, join(out, "base-hf"));
  await exportPeftAdapter(values["lora-run"], join(out, "adapter"), { baseModelName: "base-hf" });
  await exportHf(values["lora-run"], join(out, "merged-hf"));
  Object.assign(spec, { base: "base-hf", adapter: "adapter", merged: "merged-hf" });
}
const specPath = join(out, "spec.json");
writeFileSync(specPath, JSON.stringify(spec));
process.stderr.write(`wrote ${specPath}\n`);
if (!values["spec-only"]) {
  const py = fileURLToPath(new URL("hf-transformers-check.py", import.meta.url));
  process.stdout.write(execFileSync("python3", [py, specPath], { encoding: "utf8" }));
}
