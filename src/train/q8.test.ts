import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { argMaxAbs, fillLoraB, finiteDifferenceError, paddedBatch, tinyLlama } from "../../test/engine.js";
import { haveSharedData, plainAdam, relDiff, sharedData, tempDir } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import { readGguf } from "../gguf/reader.js";
import { readGgufVocab } from "../gguf/vocab.js";
import { type LlamaConfig, resolveLlamaConfig } from "../model/config.js";
import { writeLlamaGguf } from "../model/llama-gguf.js";
import { loadLlamaGguf } from "../model/load.js";
import { LlamaModel } from "../model/model.js";
import { initLlamaWeights } from "../model/weights.js";
import { Rng } from "../util/rng.js";
import type { Batch } from "./batch.js";
import { Trainer } from "./trainer.js";

/** LoRA on a base whose frozen matrices are Q8_0 in ggml (forward: Q8_0×F32 GEMM; backward: a Q8_0 Wᵀ). */
const backend = new Backend(1);
const tmp = tempDir("steerlm-q8-");
afterAll(() => {
  backend.free();
  tmp.cleanup();
});

const B = 2;
const T = 8;
const targets = ["q", "k", "v", "o", "gate", "up", "down"] as const;

/** Every matrix dimension a multiple of 32 (the Q8_0 block), GQA and biases included. */
const tinyConfig = (over: Partial<LlamaConfig> = {}) =>
  tinyLlama({ vocabSize: 64, hiddenSize: 64, ffnSize: 96, ...over });

const batch = (cfg: LlamaConfig, rng: Rng): Batch => paddedBatch(cfg, B, T, rng);

const lora = { rank: 4, alpha: 8, targets };
const trainerFor = (model: LlamaModel, lr = 1e-3) =>
  new Trainer(backend, model, {
    batchSize: B,
    seqLen: T,
    optimizer: plainAdam({ lr }),
  });

/** A Q8_0-base LoRA model and an f32-base one holding exactly the Q8_0 model's dequantised values. */
async function pair(cfg: LlamaConfig) {
  const q8 = await LlamaModel.create(backend, cfg, null, { seed: 3, initStd: 0.1, lora, frozenType: "q8_0" });
  fillLoraB(q8);
  const values = new Map(q8.params.map((p) => [p.name, q8.getWeight(p.name)]));
  const ref = await LlamaModel.create(
    backend,
    cfg,
    { get: (n) => values.get(n) },
    { lora, frozenType: "f32" },
  );
  return { q8, ref };
}

describe("LoRA on a Q8_0 frozen base", () => {
  it("stores the frozen matrices as Q8_0 (f16 where a dimension is not a multiple of 32)", async () => {
    const m = await LlamaModel.create(backend, tinyConfig({ vocabSize: 50 }), null, {
      lora,
      frozenType: "q8_0",
    });
    expect(m.tensor("blk.0.attn_q.weight").type).toBe("q8_0");
    expect(m.tensor("blk.1.ffn_down.weight").type).toBe("q8_0");
    expect(m.tensor("output.weight").type).toBe("f16"); // [64, 50]: 50 rows cannot be transposed into blocks
    expect(m.tensor("token_embd.weight").type).toBe("f32");
    expect(m.tensor("blk.0.attn_q.lora_a").type).toBe("f32");
    // the stored values are the Q8_0 rounding of what was written: within half a quantisation step
    const w = new Rng(1).normalArray(64 * 64, 0.5);
    m.setWeight("blk.0.attn_q.weight", w);
    const back = m.getWeight("blk.0.attn_q.weight");
    for (let b = 0; b < w.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[b * 32 + j]!));
      for (let j = 0; j < 32; j++)
        expect(Math.abs(back[b * 32 + j]! - w[b * 32 + j]!)).toBeLessThanOrEqual(
          (amax / 127) * 0.57, // half a step, plus the f16 rounding of the block scale
        );
    }
    m.free();
  });

  it("LoRA gradients match the f32 base holding the dequantised weights, which match finite differences", async () => {
    const cfg = tinyConfig();
    const { q8, ref } = await pair(cfg);
    const b = batch(cfg, new Rng(5));
    const tq = trainerFor(q8);
    const tr = trainerFor(ref);
    const lq = tq.accumulate(b);
    const lr = tr.accumulate(b);
    // steerlm's GEMM widens the Q8_0 blocks exactly, forward and backward (Wᵀ is read from W's blocks where
    // they lie), so the gradients are the f32 base's up to the order of f32 sums. A wrong Wᵀ (layout, block
    // direction) would put layer 0's adapters, which see the loss only through layer 1's frozen
    // transposes, off by order 1; a requantised Wᵀ (as the host-made transposes are) by about 1%.
    expect(Math.abs(lq - lr)).toBeLessThan(1e-6 * lr);
    for (const name of tq.trainedTensors)
      expect(relDiff(tq.gradient(name), tr.gradient(name)), name).toBeLessThan(1e-5);

    // the f32 reference itself against central differences (float32 loss: eps trades curvature vs rounding)
    const rng = new Rng(6);
    for (const name of ["blk.0.attn_q.lora_a", "blk.0.ffn_down.lora_b", "blk.1.attn_k.lora_a"]) {
      const g = tr.gradient(name);
      for (const idx of [argMaxAbs(g), rng.int(0, g.length - 1)]) {
        const best = finiteDifferenceError(ref, tr, b, name, idx, g[idx]!);
        expect(best, `${name}[${idx}]`).toBeLessThan(3e-2);
      }
    }
    for (const x of [tq, tr]) x.free();
    for (const x of [q8, ref]) x.free();
  });

  it("a short LoRA run on the Q8_0 base converges like the f32 one", async () => {
    const cfg = tinyConfig({ qkvBias: false });
    const { q8, ref } = await pair(cfg);
    const b = batch(cfg, new Rng(9));
    const run = (m: LlamaModel) => {
      const t = trainerFor(m, 2e-2);
      const losses: number[] = [];
      for (let i = 0; i < 30; i++) losses.push(t.trainStep(b).loss);
      t.free();
      return losses;
    };
    const lq = run(q8);
    const lr = run(ref);
    expect(lq.every(Number.isFinite)).toBe(true);
    expect(lq[29]!).toBeLessThan(0.3 * lq[0]!);
    expect(Math.abs(lq[29]! - lr[29]!)).toBeLessThan(0.1 * lr[0]!);
    for (const x of [q8, ref]) x.free();
  });
});

describe.skipIf(!haveSharedData)("loading a Q8_0 GGUF for LoRA", () => {
  it("keeps the base Q8_0 in memory with the file's exact values", async () => {
    const vocab = readGgufVocab(await readGguf(sharedData("gguf", "llama-2-tiny-random.gguf")));
    const cfg = resolveLlamaConfig({
      vocabSize: vocab.tokens.length,
      hiddenSize: 64,
      numLayers: 1,
      numHeads: 4,
      ffnSize: 96,
      tiedEmbeddings: true,
    });
    const path = join(tmp.path, "base-q8.gguf");
    await writeLlamaGguf(path, {
      config: cfg,
      vocab,
      weights: initLlamaWeights(cfg, new Rng(2), 0.1),
      type: "Q8_0",
    });
    const { model, file } = await loadLlamaGguf(backend, path, { lora });
    expect(model.tensor("blk.0.ffn_up.weight").type).toBe("q8_0");
    // requantising the file's dequantised blocks reproduces them: same values as reading the file
    const { readTensorF32 } = await import("../gguf/reader.js");
    const fromFile = await readTensorF32(file, "blk.0.ffn_up.weight");
    expect(model.getWeight("blk.0.ffn_up.weight")).toEqual(fromFile);
    model.free();
    const full = await loadLlamaGguf(backend, path, { lora, frozenType: "f32" });
    expect(full.model.tensor("blk.0.ffn_up.weight").type).toBe("f32");
    full.model.free();
    // the other storages: the file's own where the engine keeps it frozen, bf16 for F32 (as a run does)
    for (const [type, frozen] of [
      ["F16", "f16"],
      ["BF16", "bf16"],
      ["F32", "bf16"],
    ] as const) {
      const other = join(tmp.path, `base-${type}.gguf`);
      await writeLlamaGguf(other, {
        config: cfg,
        vocab,
        weights: initLlamaWeights(cfg, new Rng(2), 0.1),
        type,
      });
      const loaded = await loadLlamaGguf(backend, other, { lora });
      expect(loaded.model.tensor("blk.0.ffn_up.weight").type, type).toBe(frozen);
      loaded.model.free();
    }
  });
});
