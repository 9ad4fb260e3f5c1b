import { afterAll, describe, expect, it } from "vitest";
import { plainAdam } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { LlamaModel } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { type Batch, IGNORE } from "./batch.js";
import { Trainer } from "./trainer.js";

const backend = new Backend(1);
afterAll(() => backend.free());

const small = (over: Partial<LlamaConfig> = {}) =>
  resolveLlamaConfig({
    vocabSize: 32,
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    ffnSize: 48,
    ...over,
  });

function lmBatch(cfg: LlamaConfig, B: number, T: number, seed: number): Batch {
  const rng = new Rng(seed);
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, cfg.vocabSize - 1));
  return { tokens, labels: tokens };
}

const opt = plainAdam({ lr: 1e-2 });

/** Reference masked next-token CE computed in JS from the logits ggml returns. */
function referenceLoss(logits: Float32Array, b: Batch, B: number, T: number, V: number): number {
  let sum = 0;
  let n = 0;
  for (let s = 0; s < B; s++) {
    for (let t = 0; t + 1 < T; t++) {
      const i = s * T + t;
      const y = b.labels?.[i + 1] ?? IGNORE;
      if (y === IGNORE || (b.attention && !b.attention[i])) continue;
      const row = logits.subarray(i * V, (i + 1) * V);
      const m = Math.max(...row);
      let z = 0;
      for (const v of row) z += Math.exp(v - m);
      sum += m + Math.log(z) - row[y]!;
      n++;
    }
  }
  return sum / n;
}

describe("Trainer", () => {
  it("a tiny model overfits one batch (loss < 0.05)", async () => {
    const cfg = small();
    const model = await LlamaModel.create(backend, cfg, null, { seed: 1 });
    const tr = new Trainer(backend, model, {
      batchSize: 2,
      seqLen: 12,
      optimizer: { ...opt, warmupSteps: 5 },
    });
    const b = lmBatch(cfg, 2, 12, 2);
    let last = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 150 && last >= 0.05; i++) last = tr.trainStep(b).loss;
    expect(last).toBeLessThan(0.05);
    tr.free();
    model.free();
  });

  it("the loss is the masked mean CE of its own logits, with padding and ignored labels", async () => {
    const cfg = small();
    const model = await LlamaModel.create(backend, cfg, null, { seed: 4, initStd: 0.2 });
    const B = 3;
    const T = 7;
    const tr = new Trainer(backend, model, { batchSize: B, seqLen: T, optimizer: opt });
    const b = lmBatch(cfg, B, T, 5);
    b.attention = Uint8Array.from({ length: B * T }, (_, i) => (i % T >= T - (i < T ? 0 : 3) ? 0 : 1));
    b.labels = Int32Array.from(b.tokens, (t, i) => (b.attention?.[i] && i % 5 !== 1 ? t : IGNORE));
    const { loss, output } = tr.evaluate(b);
    expect(loss).toBeCloseTo(referenceLoss(output, b, B, T, cfg.vocabSize), 5);
    expect(tr.accumulate(b)).toBeCloseTo(loss, 6);
    tr.free();
    model.free();
  });

  it("padding on either side does not change the real tokens' logits", async () => {
    const cfg = small();
    const model = await LlamaModel.create(backend, cfg, null, { seed: 6, initStd: 0.2 });
    const V = cfg.vocabSize;
    const seq = [3, 17, 5, 9, 30];
    const alone = new Trainer(backend, model, { batchSize: 1, seqLen: 5, optimizer: opt });
    const ref = alone.evaluate({ tokens: Int32Array.from(seq), labels: Int32Array.from(seq) }).output;
    const T = 8;
    const padded = new Trainer(backend, model, { batchSize: 2, seqLen: T, optimizer: opt });
    const tokens = Int32Array.from([...seq, 0, 0, 0, 0, 0, 0, ...seq]);
    const attention = Uint8Array.from([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    const out = padded.evaluate({ tokens, attention, labels: tokens }).output;
    for (let t = 0; t < seq.length; t++) {
      for (let v = 0; v < V; v++) {
        const r = ref[t * V + v]!;
        expect(out[t * V + v]).toBeCloseTo(r, 4); // right-padded
        expect(out[(T + 3 + t) * V + v]).toBeCloseTo(r, 4); // left-padded
      }
    }
    alone.free();
    padded.free();
    model.free();
  });

  it("is deterministic given a seed", async () => {
    const run = async () => {
      const cfg = small();
      const model = await LlamaModel.create(backend, cfg, null, { seed: 9 });
      const tr = new Trainer(backend, model, { batchSize: 2, seqLen: 8, optimizer: opt });
      const losses = [1, 2, 3].map((s) => tr.trainStep(lmBatch(cfg, 2, 8, s)).loss);
      const w = model.getWeight("blk.1.ffn_up.weight");
      tr.free();
      model.free();
      return { losses, w };
    };
    const a = await run();
    const b = await run();
    expect(b.losses).toEqual(a.losses);
    expect(Buffer.from(b.w.buffer).equals(Buffer.from(a.w.buffer))).toBe(true);
  });

  it("accumulates gradients over micro-batches and applies clipped AdamW exactly", async () => {
    const cfg = small();
    const model = await LlamaModel.create(backend, cfg, null, { seed: 2, initStd: 0.1 });
    // eps large makes the AdamW update linear in the gradient, so clipping is visible in the weights
    const o = plainAdam({ lr: 0.5, eps: 10, maxGradNorm: 0.05 });
    const tr = new Trainer(backend, model, { batchSize: 2, seqLen: 6, optimizer: o });
    const b1 = lmBatch(cfg, 2, 6, 1);
    const b2 = lmBatch(cfg, 2, 6, 2);
    const name = "blk.0.attn_q.weight";
    const alone = new Trainer(backend, model, { batchSize: 2, seqLen: 6, optimizer: o });
    alone.accumulate(b2);
    const g2 = alone.gradient(name);
    alone.free();
    tr.accumulate(b1);
    const g1 = tr.gradient(name);
    tr.accumulate(b2);
    const g12 = tr.gradient(name); // second micro-batch added onto the first
    expect(Math.max(...g2.map(Math.abs))).toBeGreaterThan(0);
    for (let i = 0; i < g12.length; i++) expect(g12[i]).toBeCloseTo(g1[i]! + g2[i]!, 6);
    const w0 = model.getWeight(name);
    const res = tr.applyUpdate();
    const w1 = model.getWeight(name);
    expect(res.gradNorm).toBeGreaterThan(0.05);
    const factor = Math.min(1, 0.05 / (res.gradNorm + 1e-6));
    for (let i = 0; i < 20; i++) {
      const g = (g12[i]! / 2) * factor; // mean over the two micro-batches, clipped
      // first AdamW step: m̂ = g, v̂ = g² → Δw = -lr·g/(|g| + eps)
      const expected = w0[i]! - (o.lr * g) / (Math.abs(g) + o.eps);
      expect(w1[i]).toBeCloseTo(expected, 6);
    }
    // the next accumulation starts from zero: same gradient as a fresh trainer on the updated weights
    tr.accumulate(b2);
    const fresh = new Trainer(backend, model, { batchSize: 2, seqLen: 6, optimizer: o });
    fresh.accumulate(b2);
    expect(Array.from(tr.gradient(name))).toEqual(Array.from(fresh.gradient(name)));
    fresh.free();
    tr.free();
    model.free();
  });

  it("trainStepAsync matches trainStep and leaves the event loop free while computing", async () => {
    const run = async (asyncMode: boolean) => {
      const cfg = small();
      const model = await LlamaModel.create(backend, cfg, null, { seed: 12 });
      const tr = new Trainer(backend, model, { batchSize: 4, seqLen: 32, optimizer: opt });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 0);
      const losses: number[] = [];
      for (let s = 1; s <= 3; s++) {
        const b = lmBatch(cfg, 4, 32, s);
        losses.push(asyncMode ? (await tr.trainStepAsync(b)).loss : tr.trainStep(b).loss);
      }
      clearInterval(timer);
      tr.free();
      model.free();
      return { losses, ticks };
    };
    const sync = await run(false);
    const asy = await run(true);
    expect(asy.losses).toEqual(sync.losses);
    expect(asy.ticks).toBeGreaterThan(0);
  });

  it("data-parallel replicas give the single-graph loss and gradients (unequal valid counts per half)", async () => {
    const cfg = small();
    const B = 4;
    const T = 10;
    const b = lmBatch(cfg, B, T, 31);
    b.attention = Uint8Array.from({ length: B * T }, (_, i) => (i >= T && i < 2 * T && i % T > 5 ? 0 : 1));
    b.labels = Int32Array.from(b.tokens, (t, i) => (b.attention?.[i] && i % 7 !== 3 ? t : IGNORE));
    const run = async (replicas: number) => {
      const model = await LlamaModel.create(backend, cfg, null, { seed: 13, initStd: 0.1 });
      const tr = new Trainer(backend, model, { batchSize: B, seqLen: T, replicas, optimizer: opt });
      const loss = await tr.accumulateAsync(b);
      const g = tr.gradient("blk.0.attn_k.weight");
      const ev = tr.evaluate(b);
      const step = tr.applyUpdate();
      const w = model.getWeight("blk.1.ffn_down.weight");
      tr.free();
      model.free();
      return { loss, g, ev, step, w };
    };
    const one = await run(1);
    const two = await run(2);
    expect(two.loss).toBeCloseTo(one.loss, 5);
    expect(two.ev.loss).toBeCloseTo(one.ev.loss, 5);
    expect(two.ev.output.length).toBe(one.ev.output.length);
    for (let i = 0; i < one.ev.output.length; i += 97)
      expect(two.ev.output[i]).toBeCloseTo(one.ev.output[i]!, 4);
    for (let i = 0; i < one.g.length; i++) expect(two.g[i]).toBeCloseTo(one.g[i]!, 5);
    expect(two.step.gradNorm).toBeCloseTo(one.step.gradNorm, 4);
    for (let i = 0; i < one.w.length; i += 13) expect(two.w[i]).toBeCloseTo(one.w[i]!, 5);
  });

  it("logProbs gives each position's log-likelihood; lossWeights scale each sequence's loss and gradient", async () => {
    const cfg = small();
    const B = 4;
    const T = 12;
    const b = lmBatch(cfg, B, T, 41);
    b.labels = Int32Array.from(b.tokens, (t, i) => (i % T < 3 ? IGNORE : t)); // a prompt of 3 tokens
    const trainer = async (weights?: number[]) => {
      const model = await LlamaModel.create(backend, cfg, null, { seed: 5, initStd: 0.1 });
      const tr = new Trainer(backend, model, { batchSize: B, seqLen: T, optimizer: opt });
      const loss = tr.accumulate({ ...b, lossWeights: weights ? Float32Array.from(weights) : undefined });
      const g = tr.gradient("blk.1.ffn_up.weight");
      const lp = tr.logProbs(b);
      const logits = tr.evaluate(b).output;
      tr.free();
      model.free();
      return { loss, g, lp, logits };
    };
    const plain = await trainer();
    const valid = 4 * (T - 1 - 2); // positions 2..T-2 predict labels 3..T-1
    // the mean loss is minus the mean log-likelihood of the labelled positions
    const total = plain.lp.sequences.reduce((a, x) => a + x, 0);
    expect(plain.loss).toBeCloseTo(-total / valid, 5);
    expect(plain.lp.tokens.filter((x) => x !== 0).length).toBe(valid);
    for (let s = 0; s < B; s++) expect(plain.lp.tokens[s * T + 1]).toBe(0); // predicts a prompt token
    // each labelled position against a host log-softmax of the logits
    const V = cfg.vocabSize;
    for (let n = 0; n < B * T; n++) {
      if (plain.lp.tokens[n] === 0) continue;
      const row = plain.logits.subarray(n * V, (n + 1) * V);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      expect(plain.lp.tokens[n]).toBeCloseTo((row[b.labels[n + 1]!] as number) - lse, 5);
    }
    // weights: the loss is Σ w_s·(−log-likelihood of s) / n_valid and the gradient is linear in them
    const w = [2, -1, 0.5, 0];
    const weighted = await trainer(w);
    const want = w.reduce((a, ws, s) => a - ws * plain.lp.sequences[s]!, 0) / valid;
    expect(weighted.loss).toBeCloseTo(want, 5);
    const one = await Promise.all(w.map((_, s) => trainer(w.map((__, j) => (j === s ? 1 : 0)))));
    for (let i = 0; i < weighted.g.length; i += 7) {
      const lin = w.reduce((a, ws, s) => a + ws * (one[s] as { g: Float32Array }).g[i]!, 0);
      expect(weighted.g[i]).toBeCloseTo(lin, 5);
    }
    await expect(trainer([1, 2, Number.NaN, 0])).rejects.toThrow(/loss weight NaN of sequence 2/);
  });

  it("trains a 30-layer model (past ggml_opt's 2048-node static graph limit)", async () => {
    const cfg = resolveLlamaConfig({
      vocabSize: 32,
      hiddenSize: 16,
      numLayers: 30,
      numHeads: 2,
      ffnSize: 24,
    });
    const model = await LlamaModel.create(backend, cfg, null, { seed: 1 });
    const tr = new Trainer(backend, model, { batchSize: 1, seqLen: 8, optimizer: opt });
    const b = lmBatch(cfg, 1, 8, 3);
    const r1 = tr.trainStep(b);
    const r2 = tr.trainStep(b);
    expect(tr.graphNodes).toBeGreaterThan(2048);
    expect(Number.isFinite(r1.loss) && Number.isFinite(r2.loss)).toBe(true);
    expect(r2.loss).toBeLessThan(r1.loss);
    tr.free();
    model.free();
  });
});

describe("bfloat16 GEMMs", () => {
  // ffn 80: reductions over it are not multiples of 32 and run zero-padded to 96
  it.each([128, 80])(
    "track the f32 loss and gradients closely (full model and LoRA over a bf16 base, ffn %i)",
    async (ffnSize) => {
      const cfg = small({ numLayers: 2, hiddenSize: 64, ffnSize, vocabSize: 64 });
      const b = lmBatch(cfg, 2, 16, 4);
      const run = async (computeType: "f32" | "bf16", lora: boolean) => {
        const model = await LlamaModel.create(backend, cfg, null, {
          seed: 8,
          initStd: 0.1,
          computeType,
          frozenType: lora && computeType === "bf16" ? "bf16" : "f32",
          lora: lora ? { rank: 4, alpha: 8, targets: ["q", "v", "down"] } : undefined,
        });
        for (const p of model.params)
          if (p.name.endsWith(".lora_b"))
            model.setWeight(
              p.name,
              new Rng(3).normalArray(
                p.shape.reduce((x, y) => x * y),
                0.1,
              ),
            );
        const tr = new Trainer(backend, model, { batchSize: 2, seqLen: 16, optimizer: opt });
        const loss = tr.accumulate(b);
        const g = new Map(tr.trainedTensors.map((n) => [n, tr.gradient(n)]));
        tr.free();
        model.free();
        return { loss, g };
      };
      for (const lora of [false, true]) {
        const a = await run("f32", lora);
        const h = await run("bf16", lora);
        expect(Math.abs(h.loss - a.loss)).toBeLessThan(1e-2);
        for (const [name, ga] of a.g) {
          const gh = h.g.get(name) as Float32Array;
          let dot = 0;
          let na = 0;
          let nh = 0;
          for (let i = 0; i < ga.length; i++) {
            dot += ga[i]! * gh[i]!;
            na += ga[i]! ** 2;
            nh += gh[i]! ** 2;
          }
          expect(dot / Math.sqrt(na * nh), name).toBeGreaterThan(0.99);
        }
      }
    },
  );
});
