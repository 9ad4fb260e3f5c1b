#!/usr/bin/env node
// Verification of the CUDA backend against the CPU (the oracle). Not a test: CI has no GPU. It runs the
// compiled library (npm run build first) and needs only koffi and the ggml libraries at run time.
//
//   node bench/cuda-check.mjs [--device cuda|cpu] [--no-bench] [--cpu-bench] [--steps N] [--json FILE]
//
// 1. opens the device and prints what it is;  2. forward logits vs the CPU on random models (f32, GQA +
// q/k/v bias, tied embeddings, bf16 GEMMs, LoRA on a Q8_0 base);  3. gradients vs the CPU and against
// central finite differences on the device;  4. a few AdamW steps: losses vs the CPU's, step by step;
// 5. `npm run bench -- train m10` and `smol135 --lora` on the device (and on the CPU with --cpu-bench).
// Precision: ggml's CUDA backend runs f32 matrix products as TF32 on tensor cores (it sets cuBLAS's
// CUBLAS_TF32_TENSOR_OP_MATH), whose 10-bit mantissa moves logits by ~1e-3 relative and makes float32 finite
// differences meaningless; with NVIDIA_TF32_OVERRIDE=0 cuBLAS computes in full f32 and the strict tolerances
// and finite differences apply. Both modes are checked: run it once each way.
// `--device cpu` runs the same comparisons CPU against CPU: a dry run of this script on any machine.
// Exit status 1 when a check fails; every figure is printed, and written as JSON with --json.
import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    device: { type: "string", default: "cuda" },
    "no-bench": { type: "boolean", default: false },
    "cpu-bench": { type: "boolean", default: false },
    steps: { type: "string", default: "20" },
    json: { type: "string" },
  },
});
const lib = (p) => import(new URL(`../dist/${p}`, import.meta.url).href);
const { Backend } = await lib("ggml/backend.js");
const { resolveLlamaConfig } = await lib("model/config.js");
const { LlamaModel } = await lib("model/model.js");
const { forwardLogits } = await lib("model/infer.js");
const { Trainer } = await lib("train/trainer.js");
const { Rng } = await lib("util/rng.js");
const { benchTrain } = await lib("train/bench.js");
const { optimizerOptions } = await lib("run/config.js");
const { SFT_DEFAULTS } = await lib("run/settings.js");

const tf32 = opt.device !== "cpu" && process.env.NVIDIA_TF32_OVERRIDE !== "0";
const report = { device: null, precision: tf32 ? "tf32" : "f32", checks: [], bench: [] };
let failures = 0;
function check(name, ok, figures) {
  report.checks.push({ name, ok, ...figures });
  if (!ok) failures++;
  console.log(`${ok ? "PASS" : "FAIL"}  ${name}  ${JSON.stringify(figures)}`);
}

const threads = availableParallelism();
let dev;
try {
  dev = new Backend({ device: opt.device, threads });
} catch (e) {
  console.log(`cuda-check: cannot open the device: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ""}`);
  process.exit(2);
}
const cpu = new Backend({ device: "cpu", threads });
report.device = dev.info;
console.log(`device: ${JSON.stringify(dev.info)}`);
if (opt.device !== "cpu" && dev.isCpu) throw new Error(`asked for ${opt.device}, got the CPU`);

/** f32 tolerances: strict, or what TF32 products allow (10-bit mantissa: ~5e-4 per product). */
const F32_TOL = tf32 ? 2e-2 : 1e-3;
const base = { vocabSize: 512, hiddenSize: 128, numLayers: 3, numHeads: 8, numKvHeads: 2, ffnSize: 352 };
/** Model variants: each exercises other ops on the device (GQA + bias, tied output, bf16 GEMMs, Q8_0). */
const variants = {
  f32: { cfg: { ...base, qkvBias: true }, opts: {}, tol: F32_TOL },
  tied: { cfg: { ...base, tiedEmbeddings: true, numKvHeads: 8 }, opts: {}, tol: F32_TOL },
  bf16: { cfg: base, opts: { computeType: "bf16" }, tol: 3e-2 },
  lora: {
    cfg: base,
    opts: { lora: { rank: 8, alpha: 16, targets: ["q", "k", "v", "o", "gate", "up", "down"] } },
    tol: F32_TOL,
  },
  "lora-q8_0": {
    cfg: base,
    opts: {
      lora: { rank: 8, alpha: 16, targets: ["q", "k", "v", "o", "gate", "up", "down"] },
      frozenType: "q8_0",
    },
    tol: 3e-2,
  },
};

async function pair(v) {
  const cfg = resolveLlamaConfig(v.cfg);
  const make = (be) => LlamaModel.create(be, cfg, null, { seed: 7, initStd: 0.08, ...v.opts });
  const models = { cpu: await make(cpu), dev: await make(dev) };
  // LoRA B starts at zero, which would hide the adapters: give both the same non-zero values
  const rng = new Rng(11);
  for (const p of models.cpu.params) {
    if (!p.name.endsWith(".lora_b")) continue;
    const w = rng.normalArray(
      p.shape.reduce((a, b) => a * b, 1),
      0.05,
    );
    models.cpu.setWeight(p.name, w);
    models.dev.setWeight(p.name, w);
  }
  return { cfg, ...models };
}

function maxAbs(a) {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}
function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function argmaxRows(x, V) {
  const out = [];
  for (let r = 0; r < x.length / V; r++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (x[r * V + v] > x[r * V + best]) best = v;
    out.push(best);
  }
  return out;
}
function batchOf(cfg, B, T, seed) {
  const rng = new Rng(seed);
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, cfg.vocabSize - 1));
  // the last row is right-padded by 3 tokens: padding masks must agree too
  const attention = Uint8Array.from({ length: B * T }, (_, i) => (i >= B * T - 3 ? 0 : 1));
  const labels = Int32Array.from(tokens, (t, i) => (attention[i] ? t : -100));
  return { tokens, attention, labels };
}

// ---- 2. forward logits ----
for (const [name, v] of Object.entries(variants)) {
  const { cfg, cpu: mc, dev: md } = await pair(v);
  const rng = new Rng(3);
  const tokens = Array.from({ length: 64 }, () => rng.int(0, cfg.vocabSize - 1));
  const a = forwardLogits(cpu, mc, tokens);
  const t0 = performance.now();
  const b = forwardLogits(dev, md, tokens); // the first one includes the driver's PTX compilation
  const deviceMs = performance.now() - t0;
  const diff = maxAbsDiff(a, b);
  const top1a = argmaxRows(a, cfg.vocabSize);
  const top1b = argmaxRows(b, cfg.vocabSize);
  const agree = top1a.filter((t, i) => t === top1b[i]).length / top1a.length;
  const scale = maxAbs(a);
  check(`forward ${name}: logits vs CPU`, diff <= v.tol * Math.max(1, scale) && agree >= 0.95, {
    max_abs_diff: diff,
    max_abs_logit: scale,
    top1_agreement: agree,
    device_ms: Math.round(deviceMs),
  });
  mc.free();
  md.free();
}

/** The Trainer takes every optimiser value: the run defaults at a constant lr, the rest set per check. */
const adam = { ...optimizerOptions(SFT_DEFAULTS, 0), warmupSteps: 0 };

// ---- 3. gradients: vs the CPU, and finite differences on the device ----
// (finite differences only on f32 bases: a Q8_0 GEMM also rounds its activations, so the loss is not smooth)
for (const name of ["f32", "lora", "lora-q8_0"]) {
  const v = variants[name];
  const { cfg, cpu: mc, dev: md } = await pair(v);
  const B = 2;
  const T = 16;
  const topts = { batchSize: B, seqLen: T, optimizer: { ...adam, lr: 1e-3 } };
  const tc = new Trainer(cpu, mc, topts);
  const td = new Trainer(dev, md, topts);
  const b = batchOf(cfg, B, T, 5);
  tc.accumulate(b);
  td.accumulate(b);
  let worst = 0;
  for (const t of td.trainedTensors) {
    const gc = tc.gradient(t);
    worst = Math.max(worst, maxAbsDiff(gc, td.gradient(t)) / Math.max(1e-6, maxAbs(gc)));
  }
  check(`gradients ${name}: ${td.trainedTensors.length} tensors vs CPU`, worst <= v.tol, {
    max_rel_diff: worst,
  });
  // central differences in float32 on the device: the better of two step sizes (curvature vs rounding)
  const probe = {
    f32: ["blk.0.attn_q.weight", "blk.2.ffn_down.weight", "output.weight", "blk.1.attn_k.bias"],
    lora: ["blk.1.attn_v.lora_a", "blk.0.ffn_up.lora_b", "blk.2.attn_output.lora_a"],
    "lora-q8_0": [],
  }[name];
  const rng = new Rng(9);
  let fdWorst = 0;
  for (const t of tf32 ? [] : probe) {
    const g = td.gradient(t);
    const w0 = md.getWeight(t);
    let imax = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[imax])) imax = i;
    for (const idx of [imax, rng.int(0, g.length - 1)]) {
      let best = Number.POSITIVE_INFINITY;
      for (const eps of [1e-2, 2.5e-3]) {
        const w = Float32Array.from(w0);
        w[idx] = w0[idx] + eps;
        md.setWeight(t, w);
        const lp = td.evaluate(b).loss;
        w[idx] = w0[idx] - eps;
        md.setWeight(t, w);
        const lm = td.evaluate(b).loss;
        md.setWeight(t, w0);
        const fd = (lp - lm) / (2 * eps);
        best = Math.min(best, Math.abs(fd - g[idx]) / Math.max(2e-3, Math.abs(fd) + Math.abs(g[idx])));
      }
      fdWorst = Math.max(fdWorst, best);
    }
  }
  if (probe.length > 0 && tf32)
    console.log(`SKIP  gradients ${name}: finite differences need full f32 (NVIDIA_TF32_OVERRIDE=0)`);
  else if (probe.length > 0)
    check(`gradients ${name}: finite differences on the device`, fdWorst < 3e-2, {
      worst_rel_err: fdWorst,
      tensors: probe,
    });
  for (const x of [tc, td, mc, md]) x.free();
}

// ---- 4. training steps: the loss curve vs the CPU's ----
for (const name of ["f32", "bf16", "lora-q8_0"]) {
  const v = variants[name];
  const { cfg, cpu: mc, dev: md } = await pair(v);
  const topts = {
    batchSize: 4,
    seqLen: 32,
    optimizer: { ...adam, lr: 3e-3, maxGradNorm: 1, weightDecay: 0.1 },
  };
  const tc = new Trainer(cpu, mc, topts);
  const td = new Trainer(dev, md, topts);
  const losses = { cpu: [], dev: [] };
  for (let s = 0; s < 6; s++) {
    const b = batchOf(cfg, 4, 32, 100 + (s % 2));
    losses.cpu.push(tc.trainStep(b).loss);
    losses.dev.push((await td.trainStepAsync(b)).loss);
  }
  const rel = Math.max(...losses.cpu.map((l, i) => Math.abs(l - losses.dev[i]) / Math.abs(l)));
  const fell = losses.dev[losses.dev.length - 2] < losses.dev[0];
  check(`training ${name}: 6 AdamW steps, loss vs CPU`, rel <= v.tol && fell, {
    max_rel_diff: rel,
    cpu: losses.cpu,
    device: losses.dev,
  });
  for (const x of [tc, td, mc, md]) x.free();
}
dev.free();
cpu.free();

// ---- 5. m10 benchmark ----
if (!opt["no-bench"]) {
  const steps = Number(opt.steps);
  const runs = [
    { device: opt.device, shape: "m10", computeType: "f32" },
    { device: opt.device, shape: "m10", computeType: "bf16" },
    { device: opt.device, shape: "smol135", computeType: "f32", lora: true },
    { device: opt.device, shape: "smol135", computeType: "bf16", lora: true },
  ];
  if (opt["cpu-bench"] && opt.device !== "cpu")
    runs.push({ device: "cpu", shape: "m10", computeType: "f32" });
  for (const r of runs) {
    process.env.STEERLM_DEVICE = r.device; // benchTrain makes its own Backend: the device comes from here
    const res = await benchTrain(r.shape, { steps, computeType: r.computeType, threads, lora: r.lora });
    const row = {
      shape: r.lora ? `${r.shape} lora` : r.shape,
      device: r.device,
      compute: r.computeType,
      tokens_per_s: res.tokens_per_s,
      step_ms: res.step_ms,
      peak_rss_mb: res.peak_rss_mb,
      loss_first: res.loss_first,
      loss_last: res.loss_last,
    };
    report.bench.push(row);
    console.log(`bench ${JSON.stringify(row)}`);
  }
}

if (opt.json) writeFileSync(opt.json, `${JSON.stringify(report, null, 2)}\n`);
console.log(failures === 0 ? "cuda-check: all checks passed" : `cuda-check: ${failures} check(s) FAILED`);
process.exit(failures === 0 ? 0 : 1);
