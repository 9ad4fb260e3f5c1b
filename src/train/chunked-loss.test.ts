import { afterAll, describe, expect, it } from "vitest";
import { fillLoraB, paddedBatch, tinyLlama } from "../../test/engine.js";
import { plainAdam, relDiff } from "../../test/helpers.js";
import { Backend } from "../ggml/backend.js";
import type { LlamaConfig } from "../model/config.js";
import { logitChunk } from "../model/lm-head.js";
import { LlamaModel, type ModelOptions } from "../model/model.js";
import { Rng } from "../util/rng.js";
import type { Batch } from "./batch.js";
import { Trainer } from "./trainer.js";

const backend = new Backend(1);
afterAll(() => backend.free());

const B = 2;
const T = 6;

interface Run {
  loss: number;
  grads: Map<string, Float32Array>;
  logits: Float32Array;
  logProbs: Float32Array;
  computeBytes: number;
}

/** Loss, every gradient, logits and log-probabilities of one batch with `chunk` positions per logits chunk. */
async function run(
  cfg: LlamaConfig,
  opts: ModelOptions,
  b: Batch,
  chunk: number | undefined,
  shape = { B, T },
): Promise<Run> {
  const model = await LlamaModel.create(backend, cfg, null, { seed: 3, initStd: 0.3, ...opts });
  fillLoraB(model);
  const trainer = new Trainer(backend, model, {
    batchSize: shape.B,
    seqLen: shape.T,
    logitChunk: chunk,
    optimizer: plainAdam({ lr: 1e-3 }),
  });
  const loss = trainer.accumulate(b);
  const grads = new Map(trainer.trainedTensors.map((n) => [n, trainer.gradient(n)]));
  const out: Run = {
    loss,
    grads,
    logits: trainer.evaluate(b).output,
    logProbs: trainer.logProbs(b).tokens,
    computeBytes: trainer.computeBytes,
  };
  trainer.free();
  model.free();
  return out;
}

function expectSame(chunked: Run, whole: Run): void {
  expect(Math.abs(chunked.loss - whole.loss)).toBeLessThan(1e-6 * Math.abs(whole.loss));
  expect([...chunked.grads.keys()].sort()).toEqual([...whole.grads.keys()].sort());
  for (const [name, g] of whole.grads)
    expect(relDiff(chunked.grads.get(name) as Float32Array, g), name).toBeLessThan(1e-5);
  expect(relDiff(chunked.logits, whole.logits)).toBeLessThan(1e-6);
  expect(relDiff(chunked.logProbs, whole.logProbs)).toBeLessThan(1e-6);
}

describe("output projection + cross-entropy in chunks of positions", () => {
  it("the default chunk holds 2^24 logits: one chunk for smol135 at 256 tokens, five for Qwen2.5-0.5B at 512", () => {
    expect(logitChunk(256, 49152)).toBe(256);
    expect(logitChunk(512, 151936)).toBe(103);
    expect(logitChunk(12, 29, 100)).toBe(3);
  });

  for (const chunk of [1, 5]) {
    it(`full fine-tuning, untied output, padding and ignored labels: chunks of ${chunk} = unchunked`, async () => {
      const cfg = tinyLlama();
      const b = paddedBatch(cfg, B, T, new Rng(5));
      expectSame(await run(cfg, {}, b, chunk), await run(cfg, {}, b, undefined));
    });
  }

  it("tied embeddings with LoRA on q,v, f32 and bf16 GEMMs", async () => {
    const cfg = tinyLlama({ tiedEmbeddings: true, qkvBias: false, hiddenSize: 32 });
    const b = paddedBatch(cfg, B, T, new Rng(7));
    for (const computeType of ["f32", "bf16"] as const) {
      const opts: ModelOptions = { lora: { rank: 2, alpha: 4, targets: ["q", "v"] }, computeType };
      expectSame(await run(cfg, opts, b, 4), await run(cfg, opts, b, undefined));
    }
  });

  it("tied embeddings trained in full (the output's and the embedding's gradients add up)", async () => {
    const cfg = tinyLlama({ tiedEmbeddings: true });
    const b = paddedBatch(cfg, B, T, new Rng(9));
    expectSame(await run(cfg, {}, b, 7), await run(cfg, {}, b, undefined));
  });

  it("keeps a large vocabulary's logits, softmax and gradient off the whole sequence", async () => {
    // 4096 words × 256 positions: 4 MiB a full-sequence copy; chunks of 32 positions hold 0.5 MiB
    const cfg = tinyLlama({ vocabSize: 4096, tiedEmbeddings: true, numLayers: 1 });
    const shape = { B: 1, T: 256 };
    const rng = new Rng(11);
    const tokens = Int32Array.from({ length: 256 }, () => rng.int(0, 4095));
    const b = { tokens, labels: tokens };
    const lora: ModelOptions = { lora: { rank: 2, alpha: 4, targets: ["q", "v"] } };
    const whole = await run(cfg, lora, b, undefined, shape);
    const chunked = await run(cfg, lora, b, 32, shape);
    expectSame(chunked, whole);
    const full = 4096 * 256 * 4;
    // unchunked, the graph holds at least two full-sequence copies; chunked, less than one in all
    expect(whole.computeBytes).toBeGreaterThan(2 * full);
    expect(chunked.computeBytes).toBeLessThan(full);
  });
});
