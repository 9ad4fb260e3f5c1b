import { afterAll, describe, expect, it } from "vitest";
import { argMaxAbs, fillLoraB, finiteDifferenceError, paddedBatch, tinyLlama } from "../../test/engine.js";
import { plainAdam } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import type { LlamaConfig } from "../model/config.js";
import { loraNames } from "../model/lora.js";
import { LlamaModel, type ModelOptions } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { type Batch, IGNORE } from "./batch.js";
import { Trainer, type TrainerOptions } from "./trainer.js";

const backend = new Backend(1);
afterAll(() => backend.free());

const B = 2;
const T = 6;

const tinyConfig = tinyLlama;

/** Second sequence is right-padded by two tokens; some labels are ignored. */
function batch(cfg: LlamaConfig, rng: Rng): Batch {
  return { ...paddedBatch(cfg, B, T, rng), targets: new Float32Array([0.5, IGNORE, -1.25, 2]) };
}

async function setup(
  cfg: LlamaConfig,
  opts: ModelOptions,
  how: Pick<TrainerOptions, "task" | "backward"> = {},
) {
  const model = await LlamaModel.create(backend, cfg, null, { seed: 3, initStd: 0.3, ...opts });
  fillLoraB(model);
  const trainer = new Trainer(backend, model, {
    batchSize: B,
    seqLen: T,
    ...how,
    optimizer: plainAdam({ lr: 1e-3 }),
  });
  return { model, trainer };
}

/** Each tensor's gradient at its largest entry and two random ones, against finite differences. */
function checkGradients(model: LlamaModel, trainer: Trainer, b: Batch, names: string[], rng: Rng) {
  trainer.accumulate(b);
  const grads = new Map(names.map((n) => [n, trainer.gradient(n)]));
  let worst = 0;
  for (const name of names) {
    const g = grads.get(name) as Float32Array;
    for (const idx of [argMaxAbs(g), rng.int(0, g.length - 1), rng.int(0, g.length - 1)]) {
      const best = finiteDifferenceError(model, trainer, b, name, idx, g[idx]!);
      worst = Math.max(worst, best);
      expect(best, `${name}[${idx}] analytic ${g[idx]}`).toBeLessThan(3e-2);
    }
  }
  return worst;
}

describe("gradients match finite differences", () => {
  it("full fine-tuning: embeddings, norms, q/k/v weights and biases, output, MLP (GQA, padding, ignored labels)", async () => {
    const cfg = tinyConfig();
    const { model, trainer } = await setup(cfg, {});
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
    const { model, trainer } = await setup(cfg, {});
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
    const { model, trainer } = await setup(cfg, { lora: { rank: 3, alpha: 6, targets } });
    expect(trainer.trainedTensors.every((n) => n.includes(".lora_"))).toBe(true);
    const names = targets.flatMap((t) => [loraNames(0, t).a, loraNames(1, t).b]);
    checkGradients(model, trainer, batch(cfg, new Rng(9)), names, new Rng(10));
    trainer.free();
    model.free();
  });

  it("regression head on the last real token with masked MSE (-100 = missing)", async () => {
    const cfg = tinyConfig();
    const { model, trainer } = await setup(cfg, { regressionOutputs: 2 }, { task: "regression" });
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
  // head dim 4: attention as a graph of products and softmax; head dim 16: steerlm's attention kernels
  // (native/attention.c) where the CPU has AVX-512, the graph elsewhere
  for (const [what, over] of [
    ["head dim 4", {}],
    ["head dim 16", { hiddenSize: 32, numHeads: 2, numKvHeads: 1 }],
  ] as const)
    it(`agree on every trained tensor (GQA, biases, LoRA on all targets, padding; ${what})`, async () => {
      const cfg = tinyConfig(over);
      const targets = ["q", "k", "v", "o", "gate", "up", "down"] as const;
      const b = batch(cfg, new Rng(21));
      const grads = async (backward: "manual" | "ggml", lora: boolean) => {
        const { model, trainer: tr } = await setup(
          cfg,
          { lora: lora ? { rank: 2, alpha: 4, targets } : undefined, trainBase: true },
          { backward },
        );
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
            expect(Math.abs(ga[i]! - gg[i]!) / scale, name).toBeLessThan(1e-4);
        }
      }
    });
});
