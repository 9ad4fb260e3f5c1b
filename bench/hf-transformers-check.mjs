#!/usr/bin/env node
// Makes the folder that bench/hf-transformers-check.py checks with the real Hugging Face stack (transformers and
// peft, which CI does not install). Not a test. The folder is committed, so the Python side needs nothing but
// the working tree: no node, no build, no network.
//
//   node bench/hf-transformers-check.mjs [--out bench/hf-transformers-check] [--run <sft-run> --lora-run <run>]
//   python3 bench/hf-transformers-check.py [bench/hf-transformers-check]
//
// Without --run it trains its own tiny model from SteerBench data (a full run, then a LoRA run on its GGUF;
// a few minutes on 2 cores). It writes model-hf/ (the LoRA run merged: `steerlm export hf`), base-hf/ (its
// base) and adapter/ (`export hf --lora`), and spec.json: steerlm's own prompts and their ids
// (SteerableModel.renderPrompt, as `steerlm serve` renders them), its greedy replies, and llama.cpp's
// log-probabilities on `steerlm export gguf` of the same run. Needs `npm run build`.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    run: { type: "string" },
    "lora-run": { type: "string" },
    out: { type: "string", default: new URL("hf-transformers-check", import.meta.url).pathname },
  },
});
if ((values.run === undefined) !== (values["lora-run"] === undefined)) {
  throw new Error("--run and --lora-run go together: a full run and a LoRA run on its GGUF (or neither)");
}
const root = new URL("..", import.meta.url).pathname;
const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const { exportGguf, readLoraCheckpoint } = await import(dist("run/export.js"));
const { exportHf, exportPeftAdapter } = await import(dist("run/export-hf.js"));
const { SteerableModel } = await import(dist("inference/model.js"));
const { getLlamaRuntime } = await import(dist("runtime/llama.js"));

const steerlm = (...args) =>
  execFileSync(process.execPath, [join(root, "bin", "steerlm.js"), "--quiet", ...args], {
    stdio: ["ignore", "ignore", "inherit"],
  });
const scratch = mkdtempSync(join(tmpdir(), "steerlm-hf-check-"));
let loraRun = values["lora-run"];
if (loraRun === undefined) {
  // A model small enough to commit (about 0.5 MB in all), trained on whole 256-token sequences so that its
  // prompts stay within the positions it saw; it ends some replies with <extra_id_1> (a few minutes on 2 cores).
  process.stderr.write(`training a tiny model and a LoRA run on it in ${scratch}\n`);
  const data = join(scratch, "data");
  steerlm("bench", "synth", "--n", "300", "--seed", "3", "-o", data);
  const init = join(scratch, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 2\nnumHeads: 2\nffnSize: 64\ncontextLength: 256\n");
  const common = ["--data", join(data, "train.jsonl"), "--val", join(data, "validation.jsonl")];
  const sizes = "--seq-len 256 --batch-size 4 --threads 2 --eval-every 0 --lr 0.01".split(" ");
  const base = join(scratch, "base");
  const fresh = "--tokenizer-vocab-size 320 --warmup-steps 5 --steps 300".split(" ");
  steerlm("sft", ...common, ...sizes, ...fresh, "--init", init, "-o", base);
  steerlm("export", "gguf", base, "-o", `${base}.gguf`);
  loraRun = join(scratch, "lora");
  const lora =
    "--lora --lora-rank 4 --lora-alpha 8 --lora-targets q,k,v,o,gate,up,down --warmup-steps 2 --steps 60";
  steerlm("sft", ...common, ...sizes, ...lora.split(" "), "--model", `${base}.gguf`, "-o", loraRun);
}

const out = resolve(values.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const gguf = join(scratch, "model.gguf");
await exportGguf(loraRun, gguf);
await exportHf(loraRun, join(out, "model-hf"));
const { baseModel } = await readLoraCheckpoint(loraRun);
await exportHf(baseModel, join(out, "base-hf"));
await exportPeftAdapter(loraRun, join(out, "adapter"), { baseModelName: "base-hf" });

// Short prompts in the style of the training data (the model saw 128-token sequences), and one with steerlm's
// default system prompt, which the template must render too.
const system = { role: "system", content: "Answer the user's question." };
const cases = [
  {
    messages: [system, { role: "user", content: "How many hours are in 2 days?" }],
    attributes: { humor: 4, verbosity: 1 },
  },
  {
    messages: [
      system,
      { role: "user", content: "Spell cat backwards." },
      { role: "assistant", content: "tac" },
      { role: "user", content: "And dog?" },
    ],
    attributes: { quality: 2 },
  },
  { messages: [system, { role: "user", content: "Convert 3 weeks to days." }], attributes: {} },
  { messages: [{ role: "user", content: "Sort 3, 1, 2." }], attributes: null },
];
const MAX_NEW_TOKENS = 48;
const steer = await SteerableModel.load({ modelPath: gguf, threads: 2 });
const model = await (await getLlamaRuntime()).loadModel({ modelPath: gguf });
const ctx = await model.createContext({
  contextSize: 256,
  threads: 2,
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const seq = ctx.getSequence();
const tc = JSON.parse(readFileSync(join(out, "model-hf", "tokenizer_config.json"), "utf8"));
// The template writes {{ bos_token }} exactly when the tokenizer prepends BOS; steerlm's text leaves it to the tokenizer.
const bos = tc.add_bos_token && tc.bos_token ? tc.bos_token : "";
const spec = {
  model: "model-hf",
  base: "base-hf",
  adapter: "adapter",
  max_new_tokens: MAX_NEW_TOKENS,
  cases: [],
};
for (const c of cases) {
  const prompt = steer.renderPrompt({ messages: c.messages, attributes: c.attributes ?? undefined });
  const reply = await steer.generate({ prompt, temperature: 0, maxTokens: MAX_NEW_TOKENS });
  await seq.clearHistory();
  const sampling = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 };
  const res = await seq.controlledEvaluate(
    prompt.tokens.map((t) => [t, { generateNext: { probabilities: true, options: sampling } }]),
  );
  const top1 = res.map((r) => [...(r?.next.probabilities ?? [])].reduce((a, b) => (b[1] > a[1] ? b : a))[0]);
  const last = res.at(-1)?.next.probabilities ?? new Map();
  spec.cases.push({
    ...c,
    expected_text: `${bos}${prompt.text}`,
    expected_ids: prompt.tokens,
    llama_cpp_top1: top1,
    llama_cpp_last_logprobs: Object.fromEntries([...last].map(([t, p]) => [t, Math.log(p)])),
    steerlm_greedy: { tokens: reply.tokens, finish_reason: reply.finishReason },
  });
}
await ctx.dispose();
await model.dispose();
await steer.dispose();
writeFileSync(join(out, "spec.json"), `${JSON.stringify(spec)}\n`);
rmSync(scratch, { recursive: true, force: true });
process.stderr.write(`wrote ${out}; check it with: python3 bench/hf-transformers-check.py ${out}\n`);
