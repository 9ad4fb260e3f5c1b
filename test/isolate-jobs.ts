// Jobs for src/train/isolate.test.ts, run inside the child process (test-only: not compiled into dist/).
import { Backend } from "../src/ggml/backend.js";
import { Context } from "../src/ggml/context.js";
import { abortInNativeCodeForTesting } from "../src/ggml/debug.js";
import { resolveLlamaConfig } from "../src/model/config.js";
import { LlamaModel } from "../src/model/model.js";
import type { JobContext } from "../src/train/isolate.js";
import { Trainer } from "../src/train/trainer.js";
import { plainAdam } from "./helpers.js";

export async function trainTiny(args: { steps: number }, ctx: JobContext) {
  const backend = new Backend(1);
  const cfg = resolveLlamaConfig({ vocabSize: 16, hiddenSize: 16, numLayers: 1, numHeads: 2, ffnSize: 16 });
  const model = await LlamaModel.create(backend, cfg, null, { seed: 1 });
  const tr = new Trainer(backend, model, {
    batchSize: 1,
    seqLen: 4,
    optimizer: plainAdam({ lr: 1e-2 }),
  });
  const tokens = Int32Array.from([1, 2, 3, 4]);
  let loss = Number.NaN;
  for (let i = 0; i < args.steps; i++) {
    loss = tr.trainStep({ tokens, labels: tokens }).loss;
    ctx.send({ step: i + 1, loss });
  }
  return { loss, steps: args.steps };
}

export function abortNative(): never {
  abortInNativeCodeForTesting();
}

export function badShape(): void {
  const c = new Context(4);
  c.mulMat(c.newTensor("f32", [3, 2]), c.newTensor("f32", [4, 2]));
}
