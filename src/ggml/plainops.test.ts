import { afterAll, describe, expect, it } from "vitest";
import { resolveLlamaConfig } from "../model/config.js";
import { maskedCrossEntropy } from "../model/loss.js";
import { buildForward, LlamaModel } from "../model/model.js";
import { Tape } from "../model/tape.js";
import { prepareBatch } from "../train/batch.js";
import { uploadBatch } from "../train/replica.js";
import { Rng } from "../util/rng.js";
import { Backend, Graph, getF32, getScalar } from "./backend.js";
import { Context } from "./context.js";
import { loadKernels } from "./native-kernels.js";

/**
 * A non-CPU backend gets graphs built with `plainOps` (see Backend.isCpu): steerlm's kernels are CPU code
 * and CUDA would refuse them. This checks, on the CPU, that such a training graph (forward + the
 * hand-written backward, which makes transposes and bf16 operands) holds no custom node and gives the
 * same loss and gradients as the CPU graph with the kernels.
 */
const backend = new Backend(1);
afterAll(() => backend.free());

const B = 2;
const T = 8;
const cfg = resolveLlamaConfig({
  vocabSize: 40,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  ffnSize: 64,
});

async function trainingGraph(plainOps: boolean, computeType: "f32" | "bf16") {
  const model = await LlamaModel.create(backend, cfg, null, { seed: 5, initStd: 0.2, computeType });
  const s = new Context(8);
  const inp = {
    tokens: s.newTensor("i32", [B * T], "tokens"),
    positions: s.newTensor("i32", [B * T], "positions"),
    kqMask: s.newTensor("f32", [T, T, 1, B], "kq_mask"),
    flatIdx: s.newTensor("i32", [B * T], "target_idx"),
    lossMask: s.newTensor("f32", [1, B * T], "loss_mask"),
    negInvCount: s.newTensor("f32", [1], "neg_inv_count"),
  };
  const buf = backend.allocTensors(s);
  const size = 8192;
  const c = new Context(size * 3, size, { plainOps });
  const trainable = model.trainable().map((t) => t.tensor);
  const tape = new Tape(c, new Set(trainable));
  const attn = {
    positions: inp.positions,
    kqMask: inp.kqMask,
    seqLen: T,
    batch: B,
    ropeMode: model.options.ropeMode,
  };
  const { logits } = buildForward(c, model, inp.tokens, attn, true, tape);
  const loss = maskedCrossEntropy(
    c,
    logits as NonNullable<typeof logits>,
    inp.flatIdx,
    inp.lossMask,
    inp.negInvCount,
    tape,
  );
  c.setOutput(loss);
  const g = new Graph(c, size);
  g.expand(loss);
  tape.backward();
  const grads = trainable.map((w) => tape.paramGrads.get(w)).filter((x) => x !== undefined);
  for (const x of grads) {
    c.setOutput(x);
    g.expand(x);
  }
  const alloc = backend.newAllocator();
  alloc.alloc(g);
  const rng = new Rng(2);
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, cfg.vocabSize - 1));
  const p = prepareBatch({ tokens, labels: tokens }, B, T, cfg.vocabSize, 1);
  uploadBatch(inp, p);
  backend.compute(g);
  const result = { custom: g.customNodes, loss: getScalar(loss), grads: grads.map((x) => getF32(x)) };
  alloc.free();
  c.free();
  buf.free();
  s.free();
  model.free();
  return result;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / (den || 1);
}

describe("graphs for a non-CPU backend (plainOps)", () => {
  for (const computeType of ["f32", "bf16"] as const) {
    it(`${computeType} training graph: no custom node, same loss and gradients as with the kernels`, async () => {
      const plain = await trainingGraph(true, computeType);
      const kernels = await trainingGraph(false, computeType);
      expect(plain.custom).toBe(0);
      // the kernels make the transposes (and GEMMs): the CPU graph must contain some, or this proves nothing
      expect(loadKernels(), "build the kernels: npm run build:native").not.toBeNull();
      expect(kernels.custom).toBeGreaterThan(0);
      const tol = computeType === "f32" ? 1e-5 : 2e-2;
      expect(Math.abs(plain.loss - kernels.loss)).toBeLessThan(tol * Math.abs(kernels.loss));
      expect(plain.grads.length).toBe(kernels.grads.length);
      plain.grads.forEach((g, i) => {
        expect(maxRelDiff(g, kernels.grads[i] as Float32Array)).toBeLessThan(tol);
      });
    });
  }
});
