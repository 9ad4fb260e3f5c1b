import { afterAll, describe, expect, it } from "vitest";
import { fillLoraB, paddedBatch, tinyLlama } from "../../test/engine.js";
import { plainAdam, relDiff } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import type { LlamaConfig } from "../model/config.js";
import { LlamaModel, type ModelOptions } from "../model/model.js";
import type { WeightSource } from "../model/weights.js";
import { Rng } from "../util/rng.js";
import type { Batch } from "./batch.js";
import { Trainer, type TrainerOptions } from "./trainer.js";

const backend = new Backend(1);
afterAll(() => backend.free());

const B = 2;
const T = 32;
const lora = { rank: 4, alpha: 8, targets: ["q", "v", "down"] as const };
// dimensions that are multiples of 32, so every frozen matrix takes the low-precision paths
const cfg = tinyLlama({ vocabSize: 64, hiddenSize: 64, ffnSize: 96, numHeads: 4, numKvHeads: 2 });

async function gradients(
  model: LlamaModel,
  b: Batch,
  opts: Partial<TrainerOptions> = {},
): Promise<{ loss: number; grads: Map<string, Float32Array>; computeBytes: number }> {
  const trainer = new Trainer(backend, model, {
    batchSize: B,
    seqLen: T,
    optimizer: plainAdam({ lr: 1e-3 }),
    ...opts,
  });
  const loss = trainer.accumulate(b);
  const grads = new Map(trainer.trainedTensors.map((n) => [n, trainer.gradient(n)]));
  const computeBytes = trainer.computeBytes;
  trainer.free();
  return { loss, grads, computeBytes };
}

describe("a bf16 or f16 frozen base (f32 compute)", () => {
  for (const frozenType of ["bf16", "f16"] as const) {
    it(`${frozenType}: LoRA gradients equal an f32 base's holding the same rounded values, up to summation order`, async () => {
      const low = await LlamaModel.create(backend, cfg, null, { seed: 3, initStd: 0.1, lora, frozenType });
      fillLoraB(low);
      expect(low.tensor("blk.0.attn_q.weight").type).toBe(frozenType);
      const values = new Map(low.params.map((p) => [p.name, low.getWeight(p.name)]));
      const source: WeightSource = { get: (n) => values.get(n) };
      const ref = await LlamaModel.create(backend, cfg, source, { lora, frozenType: "f32" });
      const b = paddedBatch(cfg, B, T, new Rng(5));
      const a = await gradients(low, b);
      const r = await gradients(ref, b);
      // the kernels widen each stored value exactly to f32, so only the order of the f32 sums may differ
      expect(Math.abs(a.loss - r.loss)).toBeLessThan(1e-6 * r.loss);
      for (const [name, g] of r.grads)
        expect(relDiff(a.grads.get(name) as Float32Array, g), name).toBeLessThan(1e-5);
      low.free();
      ref.free();
    });
  }
});

describe("--recompute", () => {
  const deep = { ...cfg, numLayers: 4 };
  // LoRA: activations are most of the graph's memory, so it holds less; in full fine-tuning every weight
  // gradient lives until the accumulators at the end of the graph and dominates at this size
  const cases: Array<[string, LlamaConfig, ModelOptions, boolean]> = [
    ["full fine-tuning (GQA, biases)", deep, {}, false],
    ["LoRA on a bf16 base", deep, { lora, frozenType: "bf16" }, true],
    ["LoRA with bf16 GEMMs", deep, { lora, computeType: "bf16" }, true],
  ];
  for (const [what, c, opts, smaller] of cases) {
    it(`gives identical gradients${smaller ? " and holds less" : ""}: ${what}`, async () => {
      const model = await LlamaModel.create(backend, c, null, { seed: 3, initStd: 0.1, ...opts });
      fillLoraB(model);
      const b = paddedBatch(c, B, T, new Rng(7));
      const kept = await gradients(model, b);
      const again = await gradients(model, b, { recompute: true });
      expect(again.loss).toBe(kept.loss);
      expect([...again.grads.keys()].sort()).toEqual([...kept.grads.keys()].sort());
      for (const [name, g] of kept.grads) expect(again.grads.get(name), name).toEqual(g);
      if (smaller) expect(again.computeBytes).toBeLessThan(kept.computeBytes);
      model.free();
    });
  }

  it("is refused with ggml's autograd", async () => {
    const model = await LlamaModel.create(backend, cfg, null, { seed: 3 });
    expect(
      () =>
        new Trainer(backend, model, {
          batchSize: B,
          seqLen: T,
          optimizer: plainAdam({ lr: 1e-3 }),
          backward: "ggml",
          recompute: true,
        }),
    ).toThrow(/recompute needs the hand-written backward/);
    model.free();
  });
});
