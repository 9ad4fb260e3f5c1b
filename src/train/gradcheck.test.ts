import { afterAll, describe, expect, it } from "vitest";
import { plainAdam } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { LlamaModel, type ModelOptions } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { type Batch, IGNORE } from "./batch.js";
import { Trainer, type TrainTask } from "./trainer.js";

const backend = new Backend(1);
afterAll(() => backend.free());

const B = 2;
const T = 6;

function tinyConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return resolveLlamaConfig({
    vocabSize: 29,
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    ffnSize: 24,
    qkvBias: true,
    ...over,
  });
}

/** Second sequence is right-padded by two tokens; some labels are ignored. */
function batch(cfg: LlamaConfig, rng: Rng): Batch {
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, cfg.vocabSize - 1));
  const attention = Uint8Array.from({ length: B * T }, (_, i) => (i >= B * T - 2 ? 0 : 1));
  const labels = Int32Array.from(tokens, (t, i) => (attention[i] && i % T !== 2 ? t : IGNORE));
  return { tokens, attention, labels, targets: new Float32Array([0.5, IGNORE, -1.25, 2]) };
}

async function setup(cfg: LlamaConfig, opts: ModelOptions, task: TrainTask) {
  const model = await LlamaModel.create(backend, cfg, null, { seed: 3, initStd: 0.3, ...opts });
  // LoRA B starts at zero (so A's gradient would be zero): give it values for the check
  const rng = new Rng(11);
  for (const p of model.params)
    if (p.name.endsWith(".lora_b"))
      model.setWeight(
        p.name,
        rng.normalArray(
          p.shape.reduce((a, b) => a * b),
          0.3,
        ),
      );
  const trainer = new Trainer(backend, model, {
    batchSize: B,
    seqLen: T,
    task,
    optimizer: plainAdam({ lr: 1e-3 }),
  });
  return { model, trainer };
}

/**
 * Central finite differences in float32: a large eps suffers curvature error, a small one rounding
 * (ulp(loss)/2eps), so take the better of two; relative error is measured against |fd| + |analytic|.
 */
function checkGradients(model: LlamaModel, trainer: Trainer, b: Batch, names: string[], rng: Rng) {
  trainer.accumulate(b);
  const grads = new Map(names.map((n) => [n, trainer.gradient(n)]));
  let worst = 0;
  for (const name of names) {
    const w0 = model.getWeight(name);
    const g = grads.get(name) as Float32Array;
    // probe the largest-gradient entry plus two random ones
    let imax = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i] as number) > Math.abs(g[imax] as number)) imax = i;
    for (const idx of [imax, rng.int(0, g.length - 1), rng.int(0, g.length - 1)]) {
      let best = Number.POSITIVE_INFINITY;
      for (const eps of [1e-2, 2.5e-3]) {
        const w = Float32Array.from(w0);
        w[idx] = (w0[idx] as number) + eps;
        model.setWeight(name, w);
        const lp = trainer.evaluate(b).loss;
        w[idx] = (w0[idx] as number) - eps;
        model.setWeight(name, w);
        const lm = trainer.evaluate(b).loss;
        model.setWeight(name, w0);
        const fd = (lp - lm) / (2 * eps);
        const an = g[idx] as number;
        best = Math.min(best, Math.abs(fd - an) / Math.max(2e-3, Math.abs(fd) + Math.abs(an)));
      }
      worst = Math.max(worst, best);
      expect(best, `${name}[${idx}] analytic ${g[idx]}`).toBeLessThan(3e-2);
    }
  }
  return worst;
}

describe("gradients match finite differences", () => {
  it("full fine-tuning: embeddings, norms, q/k/v weights and biases, output, MLP (GQA, padding, ignored labels)", async () => {
    const cfg = tinyConfig();
    const { model, trainer } = await setup(cfg, {}, "lm");
    const names = [
      "token_embd.weight",
      "blk.0.attn_norm.weight",
      "blk.0.attn_q.weight",
      "blk.0.attn_k.weight",
      "blk.0.attn_v.weight",
      "blk.0.attn_q.bias",
      "blk.0.attn_k.bias",
      "blk.1.attn_v.bias",
      "blk.1.attn_output.weight",
      "blk.1.ffn_norm.weight",
      "blk.1.ffn_gate.weight",
      "blk.1.ffn_up.weight",
      "blk.1.ffn_down.weight",
      "output_norm.weight",
      "output.weight",
    ];
    checkGradients(model, trainer, batch(cfg, new Rng(5)), names, new Rng(6));
    trainer.free();
    model.free();
  });

  it("tied embeddings", async () => {
    const cfg = tinyConfig({ tiedEmbeddings: true, qkvBias: false, numKvHeads: 4 });
    const { model, trainer } = await setup(cfg, {}, "lm");
    checkGradients(
      model,
      trainer,
      batch(cfg, new Rng(7)),
      ["token_embd.weight", "blk.1.attn_q.weight"],
      new Rng(8),
    );
    trainer.free();
    model.free();
  });

  it("LoRA A and B on every target module, base frozen", async () => {
    const cfg = tinyConfig();
    const targets = ["q", "k", "v", "o", "gate", "up", "down"] as const;
    const { model, trainer } = await setup(cfg, { lora: { rank: 3, alpha: 6, targets } }, "lm");
    expect(trainer.trainedTensors.every((n) => n.includes(".lora_"))).toBe(true);
    const names = targets.flatMap((t) => {
      const part = {
        q: "attn_q",
        k: "attn_k",
        v: "attn_v",
        o: "attn_output",
        gate: "ffn_gate",
        up: "ffn_up",
        down: "ffn_down",
      }[t];
      return [`blk.0.${part}.lora_a`, `blk.1.${part}.lora_b`];
    });
    checkGradients(model, trainer, batch(cfg, new Rng(9)), names, new Rng(10));
    trainer.free();
    model.free();
  });

  it("regression head on the last real token with masked MSE (-100 = missing)", async () => {
    const cfg = tinyConfig();
    const { model, trainer } = await setup(cfg, { regressionOutputs: 2 }, "regression");
    expect(trainer.trainedTensors).not.toContain("output.weight");
    checkGradients(
      model,
      trainer,
      batch(cfg, new Rng(12)),
      ["reg_head.weight", "reg_head.bias", "blk.1.ffn_down.weight", "token_embd.weight"],
      new Rng(13),
    );
    trainer.free();
    model.free();
  });
});

describe("hand-written backward vs ggml's autograd", () => {
  it("agree on every trained tensor (GQA, biases, LoRA on all targets, padding)", async () => {
    const cfg = tinyConfig();
    const targets = ["q", "k", "v", "o", "gate", "up", "down"] as const;
    const b = batch(cfg, new Rng(21));
    const grads = async (backward: "manual" | "ggml", lora: boolean) => {
      const model = await LlamaModel.create(backend, cfg, null, {
        seed: 3,
        initStd: 0.3,
        lora: lora ? { rank: 2, alpha: 4, targets } : undefined,
        trainBase: true,
      });
      const rng = new Rng(11);
      for (const p of model.params)
        if (p.name.endsWith(".lora_b"))
          model.setWeight(
            p.name,
            rng.normalArray(
              p.shape.reduce((x, y) => x * y),
              0.3,
            ),
          );
      const tr = new Trainer(backend, model, {
        batchSize: B,
        seqLen: T,
        backward,
        optimizer: plainAdam({ lr: 1e-3 }),
      });
      tr.accumulate(b);
      const out = new Map(tr.trainedTensors.map((n) => [n, tr.gradient(n)]));
      tr.free();
      model.free();
      return out;
    };
    for (const lora of [false, true]) {
      const a = await grads("manual", lora);
      const g = await grads("ggml", lora);
      expect([...a.keys()].sort()).toEqual([...g.keys()].sort());
      for (const [name, ga] of a) {
        const gg = g.get(name) as Float32Array;
        let scale = 1e-6;
        for (const v of gg) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < ga.length; i++)
          expect(Math.abs((ga[i] as number) - (gg[i] as number)) / scale, name).toBeLessThan(1e-4);
      }
    }
  });
});
